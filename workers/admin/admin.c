/*
 * nudgel-admin — operations on the fleet's Postgres schema and Kafka topics,
 * run by SREs and by Helm hooks (migration and topic Jobs).
 *
 *   nudgel-admin [global flags] migrate [--status]
 *   nudgel-admin [global flags] topics ensure [--alter] [--fail-on-drift]
 *   nudgel-admin [global flags] topics describe [--json]
 *   nudgel-admin [global flags] dlq replay --topic messages|webhooks [--tenant T]
 *                [--reason TEXT] [--since TIME] [--until TIME] [--dry-run]
 *                [--resend [--generation N]]
 *   nudgel-admin [global flags] endpoints add --tenant T --url URL [--events LIST]
 *                [--rate-limit N] [--concurrency N] [--description TEXT] [--json]
 *   nudgel-admin [global flags] endpoints list [--tenant T] [--json]
 *   nudgel-admin [global flags] endpoints show|disable|enable|rotate-secret ID
 *                (or --endpoint ID) [--reason TEXT] [--json]
 *   nudgel-admin [global flags] webhooks replay --endpoint ID --since TIME [--until TIME]
 *                [--status failed|exhausted] [--dry-run]
 *
 * Results go to stdout (one line per migration or topic, then a total);
 * problems to stderr. Exit status: 0 ok, 1 operation failed or drift left
 * with --fail-on-drift, 2 usage or configuration error, 3 Kafka or Postgres
 * unreachable.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dlq.h"
#include "endpoints.h"
#include "migrate.h"
#include "nudgel/config.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/version.h"
#include "nudgel/webhooks/secretbox.h"
#include "topics.h"
#include "webhook_replay.h"

#define PROGRAM        "nudgel-admin"
#define MAX_FLAG_SETS  64
#define EXIT_OK        0
#define EXIT_FAILED    1
#define EXIT_USAGE     2
#define EXIT_NO_SERVER 3

static const nudgel_conf_entry_t admin_table[] = {
    {"admin.timeout_ms", NUDGEL_CONF_INT, "30000", 1000, 600000, NULL, 0,
     "Bound of every Kafka admin request (and of the first broker contact)."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

typedef enum command {
    CMD_NONE,
    CMD_MIGRATE,
    CMD_TOPICS_ENSURE,
    CMD_TOPICS_DESCRIBE,
    CMD_DLQ_REPLAY,
    CMD_ENDPOINTS_ADD,
    CMD_ENDPOINTS_LIST,
    CMD_ENDPOINTS_SHOW,
    CMD_ENDPOINTS_DISABLE,
    CMD_ENDPOINTS_ENABLE,
    CMD_ENDPOINTS_ROTATE,
    CMD_WEBHOOKS_REPLAY,
} command_t;

/* Subcommand flags, as bits: each command accepts its own set. */
enum {
    F_STATUS = 1u << 0, /* migrate --status (no value) */
    F_ALTER = 1u << 1,
    F_FAIL_ON_DRIFT = 1u << 2,
    F_JSON = 1u << 3,
    F_TOPIC = 1u << 4,
    F_TENANT = 1u << 5,
    F_REASON = 1u << 6,
    F_SINCE = 1u << 7,
    F_UNTIL = 1u << 8,
    F_DRY_RUN = 1u << 9,
    F_URL = 1u << 10,
    F_EVENTS = 1u << 11,
    F_RATE_LIMIT = 1u << 12,
    F_CONCURRENCY = 1u << 13,
    F_DESCRIPTION = 1u << 14,
    F_ENDPOINT = 1u << 15,
    F_STATUS_VALUE = 1u << 16, /* webhooks replay --status failed|exhausted */
    F_RESEND = 1u << 17,
    F_GENERATION = 1u << 18,
};

static const char *const flag_names[] = {
    "--status",   "--alter",  "--fail-on-drift", "--json",        "--topic",
    "--tenant",   "--reason", "--since",         "--until",       "--dry-run",
    "--url",      "--events", "--rate-limit",    "--concurrency", "--description",
    "--endpoint", "--status", "--resend",        "--generation",
};

/* Subcommand flag values. */
typedef struct sub_flags {
    unsigned given; /* F_* bits */
    const char *topic, *tenant, *reason, *status, *url, *events, *rate_limit, *concurrency,
        *description, *endpoint;
    int64_t since_ms, until_ms;
    int generation;
} sub_flags_t;

/* The words of every command: a word after --status that is one of these is not its value. */
static bool is_command_word(const char *w)
{
    static const char *const words[] = {"migrate", "topics",    "ensure",        "describe", "dlq",
                                        "replay",  "endpoints", "add",           "list",     "show",
                                        "disable", "enable",    "rotate-secret", "webhooks", NULL};
    for (size_t i = 0; words[i]; i++)
        if (strcmp(w, words[i]) == 0)
            return true;
    return false;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: " PROGRAM " [global flags] COMMAND [command flags]\n"
        "\n"
        "Commands:\n"
        "  migrate                 apply pending Postgres migrations (safe to run twice or\n"
        "                          from several pods at once)\n"
        "  migrate --status        list migrations as applied (with time) or pending\n"
        "  topics ensure           create missing contract topics, report drift\n"
        "      --alter             also add partitions and set retention.ms where they differ\n"
        "      --fail-on-drift     exit 1 when drift remains\n"
        "  topics describe         partitions, replication factor, retention of each topic\n"
        "      --json              as a JSON array\n"
        "  dlq replay              send dead letters back to their job topic\n"
        "      --topic T           messages or webhooks (required)\n"
        "      --tenant T          only this tenant's\n"
        "      --reason TEXT       only those whose dead-letter reason, last retry error or\n"
        "                          (messages) receipt's last error code contains TEXT\n"
        "                          (e.g. exhausted, circuit_open, http_503, http_401)\n"
        "      --since TIME        dead-lettered at or after TIME (RFC 3339)\n"
        "      --until TIME        dead-lettered before TIME (RFC 3339)\n"
        "      --dry-run           count what would be replayed, send nothing\n"
        "      --resend            messages only: a message whose receipt is failed, rejected\n"
        "                          or expired (no carrier took it) is sent again as a NEW\n"
        "                          message, its receipt and events naming the original\n"
        "                          (resent_from); its id derives from the original's and the\n"
        "                          generation, so running it twice sends once. The original\n"
        "                          receipt is left as it is. Without --resend, a replayed\n"
        "                          message that already ended only re-emits its event.\n"
        "      --generation N      --resend: the Nth resend of the same messages (default 1;\n"
        "                          2 sends them once more)\n"
        "  endpoints add           register a webhook endpoint; prints its id and its\n"
        "                          signing secret, once\n"
        "      --tenant T          owning tenant (required)\n"
        "      --url URL           http:// or https:// target (required)\n"
        "      --events LIST       event types and prefixes, e.g. message.delivered,message.*\n"
        "                          (default: every event)\n"
        "      --rate-limit N      requests per second to this endpoint\n"
        "      --concurrency N     requests in flight to this endpoint\n"
        "      --description TEXT  free text\n"
        "      --json              the result as JSON (the secret included, once)\n"
        "  endpoints list          endpoints, without secrets (--tenant T, --json)\n"
        "  endpoints show ID       one endpoint, without its secret (--json)\n"
        "  endpoints disable ID    stop deliveries to it (--reason TEXT)\n"
        "  endpoints enable ID     resume deliveries to it\n"
        "  endpoints rotate-secret ID  new secret, printed once; the previous one keeps\n"
        "                          signing for webhooks.rotation_overlap_s (--json)\n"
        "  webhooks replay         re-enqueue an endpoint's failed deliveries (same webhook-id)\n"
        "      --endpoint ID       the endpoint (required)\n"
        "      --since TIME        deliveries created at or after TIME (RFC 3339, required)\n"
        "      --until TIME        deliveries created before TIME\n"
        "      --status S          failed or exhausted (default: both)\n"
        "      --dry-run           count what would be replayed, send nothing\n"
        "\n"
        "Global flags:\n"
        "  -c, --config FILE       JSON config file (default: $NUDGEL_CONFIG)\n"
        "  -s, --set KEY=VALUE     set any configuration key\n"
        "  -X PROP=VALUE           librdkafka property\n"
        "  -b, --bootstrap HOSTS   Kafka bootstrap servers (kafka.bootstrap)\n"
        "      --pg-dsn DSN        Postgres connection string (pg.dsn)\n"
        "      --check-config      check the configuration (keys, environment, pg.dsn syntax,\n"
        "                          keyring) and run no command: each problem, or one line OK\n"
        "      --check-config=connect  also probe Kafka, Postgres and the keyring against\n"
        "                          the stored secrets\n"
        "      --print-config      print the effective configuration (secrets redacted)\n"
        "      --print-config-doc  print the configuration reference (Markdown)\n"
        "      --version           print the version\n"
        "  -h, --help              this text\n"
        "\n"
        "Exit status: 0 ok, 1 operation failed or drift (--fail-on-drift), 2 usage or\n"
        "configuration error, 3 Kafka or Postgres unreachable.\n"
        "The secret keyring (endpoints add, rotate-secret) comes from NUDGEL_SECRET_KEY or\n"
        "secret.key_file; it is never printed.\n");
}

static int exit_code_for(nudgel_err_t err)
{
    switch (err) {
    case NUDGEL_OK:
        return EXIT_OK;
    case NUDGEL_ERR_INVALID_ARG:
    case NUDGEL_ERR_CONFIG:
        return EXIT_USAGE;
    case NUDGEL_ERR_KAFKA_UNREACHABLE:
    case NUDGEL_ERR_PG_UNREACHABLE:
        return EXIT_NO_SERVER;
    case NUDGEL_ERR_NO_MEMORY:
    case NUDGEL_ERR_INVALID_JSON:
    case NUDGEL_ERR_INVALID_FIELD:
    case NUDGEL_ERR_TOO_LARGE:
    case NUDGEL_ERR_IO:
    case NUDGEL_ERR_KAFKA:
    case NUDGEL_ERR_KAFKA_FATAL:
    case NUDGEL_ERR_QUEUE_FULL:
    case NUDGEL_ERR_WINDOW_FULL:
    case NUDGEL_ERR_TIMED_OUT:
    case NUDGEL_ERR_PG:
    case NUDGEL_ERR_MIGRATION:
        return EXIT_FAILED;
    }
    return EXIT_FAILED;
}

/*
 * The command named by the words left after the flags, or CMD_NONE with the
 * problem printed. Subcommand flags given to the wrong command are usage
 * errors rather than silently ignored. `endpoints show|disable|enable|
 * rotate-secret` take the endpoint id as a word or as --endpoint.
 */
static command_t parse_command(int argc, char **argv, sub_flags_t *sub)
{
    static const struct {
        const char *w1, *w2;
        command_t cmd;
        unsigned allowed;
        bool takes_id;
    } commands[] = {
        {"migrate", NULL, CMD_MIGRATE, F_STATUS, false},
        {"topics", "ensure", CMD_TOPICS_ENSURE, F_ALTER | F_FAIL_ON_DRIFT, false},
        {"topics", "describe", CMD_TOPICS_DESCRIBE, F_JSON, false},
        {"dlq", "replay", CMD_DLQ_REPLAY,
         F_TOPIC | F_TENANT | F_REASON | F_SINCE | F_UNTIL | F_DRY_RUN | F_RESEND | F_GENERATION,
         false},
        {"endpoints", "add", CMD_ENDPOINTS_ADD,
         F_TENANT | F_URL | F_EVENTS | F_RATE_LIMIT | F_CONCURRENCY | F_DESCRIPTION | F_JSON,
         false},
        {"endpoints", "list", CMD_ENDPOINTS_LIST, F_TENANT | F_JSON, false},
        {"endpoints", "show", CMD_ENDPOINTS_SHOW, F_ENDPOINT | F_JSON, true},
        {"endpoints", "disable", CMD_ENDPOINTS_DISABLE, F_ENDPOINT | F_REASON, true},
        {"endpoints", "enable", CMD_ENDPOINTS_ENABLE, F_ENDPOINT, true},
        {"endpoints", "rotate-secret", CMD_ENDPOINTS_ROTATE, F_ENDPOINT | F_JSON, true},
        {"webhooks", "replay", CMD_WEBHOOKS_REPLAY,
         F_ENDPOINT | F_SINCE | F_UNTIL | F_STATUS_VALUE | F_DRY_RUN, false},
    };
    if (argc < 1) {
        fprintf(stderr, "%s: no command given\n", PROGRAM);
        return CMD_NONE;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[0], commands[i].w1) != 0)
            continue;
        int words = commands[i].w2 ? 2 : 1;
        if (commands[i].w2 && (argc < 2 || strcmp(argv[1], commands[i].w2) != 0))
            continue;
        if (argc > words + (commands[i].takes_id ? 1 : 0))
            break;
        if (argc == words + 1) { /* the id as a word */
            if (sub->endpoint) {
                fprintf(stderr, "%s: give the endpoint id once (a word or --endpoint)\n", PROGRAM);
                return CMD_NONE;
            }
            sub->endpoint = argv[words];
            sub->given |= F_ENDPOINT;
        }
        unsigned wrong = sub->given & ~commands[i].allowed;
        if (wrong) {
            fprintf(stderr, "%s: %s%s%s takes only", PROGRAM, commands[i].w1,
                    commands[i].w2 ? " " : "", commands[i].w2 ? commands[i].w2 : "");
            for (size_t b = 0; b < sizeof(flag_names) / sizeof(flag_names[0]); b++)
                if (commands[i].allowed & (1u << b))
                    fprintf(stderr, " %s%s", flag_names[b],
                            (1u << b) == F_STATUS_VALUE ? " failed|exhausted" : "");
            if (!commands[i].allowed)
                fprintf(stderr, " no flags");
            for (size_t b = 0; b < sizeof(flag_names) / sizeof(flag_names[0]); b++)
                if (wrong & (1u << b)) {
                    fprintf(stderr, " (not %s%s)", flag_names[b],
                            (1u << b) == F_STATUS         ? " without a value"
                            : (1u << b) == F_STATUS_VALUE ? " with a value"
                                                          : "");
                    break;
                }
            fprintf(stderr, "\n");
            return CMD_NONE;
        }
        if (commands[i].cmd == CMD_DLQ_REPLAY && !sub->topic) {
            fprintf(stderr, "%s: dlq replay needs --topic messages|webhooks\n", PROGRAM);
            return CMD_NONE;
        }
        if ((sub->given & F_GENERATION) && !(sub->given & F_RESEND)) {
            fprintf(stderr, "%s: --generation goes with --resend\n", PROGRAM);
            return CMD_NONE;
        }
        return commands[i].cmd;
    }
    if (strcmp(argv[0], "topics") == 0) {
        fprintf(stderr, "%s: topics takes ensure or describe\n", PROGRAM);
        return CMD_NONE;
    }
    if (strcmp(argv[0], "endpoints") == 0 && argc == 1) {
        fprintf(stderr, "%s: endpoints takes add, list, show, disable, enable or rotate-secret\n",
                PROGRAM);
        return CMD_NONE;
    }
    fprintf(stderr, "%s: unknown command \"", PROGRAM);
    for (int i = 0; i < argc; i++)
        fprintf(stderr, "%s%s", i ? " " : "", argv[i]);
    fprintf(stderr, "\"\n");
    return CMD_NONE;
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {
        nudgel_conf_common,         admin_table,           nudgel_admin_topics_conf,
        nudgel_admin_webhooks_conf, nudgel_secretbox_conf, NULL};
    enum {
        OPT_PG_DSN = 256,
        OPT_PRINT_CONFIG,
        OPT_PRINT_DOC,
        OPT_VERSION,
        OPT_STATUS,
        OPT_ALTER,
        OPT_FAIL_ON_DRIFT,
        OPT_JSON,
        OPT_TOPIC,
        OPT_TENANT,
        OPT_REASON,
        OPT_SINCE,
        OPT_UNTIL,
        OPT_DRY_RUN,
        OPT_URL,
        OPT_EVENTS,
        OPT_RATE_LIMIT,
        OPT_CONCURRENCY,
        OPT_DESCRIPTION,
        OPT_ENDPOINT,
        OPT_RESEND,
        OPT_GENERATION,
        OPT_CHECK,
    };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"bootstrap", required_argument, NULL, 'b'},
        {"pg-dsn", required_argument, NULL, OPT_PG_DSN},
        {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
        {"print-config-doc", no_argument, NULL, OPT_PRINT_DOC},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {"status", no_argument, NULL, OPT_STATUS},
        {"alter", no_argument, NULL, OPT_ALTER},
        {"fail-on-drift", no_argument, NULL, OPT_FAIL_ON_DRIFT},
        {"json", no_argument, NULL, OPT_JSON},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"reason", required_argument, NULL, OPT_REASON},
        {"since", required_argument, NULL, OPT_SINCE},
        {"until", required_argument, NULL, OPT_UNTIL},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"url", required_argument, NULL, OPT_URL},
        {"events", required_argument, NULL, OPT_EVENTS},
        {"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
        {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
        {"description", required_argument, NULL, OPT_DESCRIPTION},
        {"endpoint", required_argument, NULL, OPT_ENDPOINT},
        {"resend", no_argument, NULL, OPT_RESEND},
        {"generation", required_argument, NULL, OPT_GENERATION},
        {"check-config", optional_argument, NULL, OPT_CHECK},
        {NULL, 0, NULL, 0},
    };
    nudgel_conf_t *conf = nudgel_conf_new(PROGRAM, tables);
    char *flag_sets[MAX_FLAG_SETS];
    size_t flag_set_count = 0;
    const char *config_path = NULL;
    bool print_config = false, print_doc = false, drift = false;
    nudgel_conf_check_mode_t check = NUDGEL_CONF_CHECK_NONE;
    sub_flags_t sub = {0};
    char errstr[1024] = "";
    int exit_code = EXIT_USAGE, opt;
    nudgel_err_t err = NUDGEL_OK; /* every command sets it (switch without default) */

    if (!conf) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        goto out;
    }
    /* Flags may come before or after the command words; getopt moves the words last. */
    while ((opt = getopt_long(argc, argv, "c:s:X:b:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_PRINT_CONFIG:
            print_config = true;
            break;
        case OPT_PRINT_DOC:
            print_doc = true;
            break;
        case OPT_CHECK:
            if (optarg && strcmp(optarg, "connect") != 0) {
                fprintf(stderr, "%s: --check-config takes no value or \"connect\"\n", PROGRAM);
                goto out;
            }
            check = optarg ? NUDGEL_CONF_CHECK_CONNECT : NUDGEL_CONF_CHECK_OFFLINE;
            break;
        case OPT_STATUS:
            /* migrate --status has no value, webhooks replay --status has one: a word
             * after it that is no command word is its value. */
            if (optind < argc && argv[optind][0] != '-' && !is_command_word(argv[optind])) {
                sub.status = argv[optind++];
                sub.given |= F_STATUS_VALUE;
            } else {
                sub.given |= F_STATUS;
            }
            break;
        case OPT_ALTER:
            sub.given |= F_ALTER;
            break;
        case OPT_FAIL_ON_DRIFT:
            sub.given |= F_FAIL_ON_DRIFT;
            break;
        case OPT_JSON:
            sub.given |= F_JSON;
            break;
        case OPT_TOPIC:
            sub.given |= F_TOPIC;
            sub.topic = optarg;
            break;
        case OPT_TENANT:
            sub.given |= F_TENANT;
            sub.tenant = optarg;
            break;
        case OPT_REASON:
            sub.given |= F_REASON;
            sub.reason = optarg;
            break;
        case OPT_SINCE:
        case OPT_UNTIL:
            sub.given |= opt == OPT_SINCE ? F_SINCE : F_UNTIL;
            if (nudgel_rfc3339_parse(optarg, opt == OPT_SINCE ? &sub.since_ms : &sub.until_ms) !=
                0) {
                fprintf(stderr, "%s: --%s: \"%s\" is not an RFC 3339 time\n", PROGRAM,
                        opt == OPT_SINCE ? "since" : "until", optarg);
                goto out;
            }
            break;
        case OPT_DRY_RUN:
            sub.given |= F_DRY_RUN;
            break;
        case OPT_URL:
            sub.given |= F_URL;
            sub.url = optarg;
            break;
        case OPT_EVENTS:
            sub.given |= F_EVENTS;
            sub.events = optarg;
            break;
        case OPT_RATE_LIMIT:
            sub.given |= F_RATE_LIMIT;
            sub.rate_limit = optarg;
            break;
        case OPT_CONCURRENCY:
            sub.given |= F_CONCURRENCY;
            sub.concurrency = optarg;
            break;
        case OPT_DESCRIPTION:
            sub.given |= F_DESCRIPTION;
            sub.description = optarg;
            break;
        case OPT_ENDPOINT:
            sub.given |= F_ENDPOINT;
            sub.endpoint = optarg;
            break;
        case OPT_RESEND:
            sub.given |= F_RESEND;
            break;
        case OPT_GENERATION: {
            char *end = NULL;
            long g = strtol(optarg, &end, 10);
            if (!*optarg || *end || g < 1 || g > 1000000) {
                fprintf(stderr, "%s: --generation: \"%s\" is not a number from 1 to 1000000\n",
                        PROGRAM, optarg);
                goto out;
            }
            sub.given |= F_GENERATION;
            sub.generation = (int)g;
            break;
        }
        case 'h':
            usage(stdout);
            exit_code = EXIT_OK;
            goto out;
        case OPT_VERSION:
            printf("%s %s\n", PROGRAM, nudgel_version());
            exit_code = EXIT_OK;
            goto out;
        case 's':
        case 'X':
        case 'b':
        case OPT_PG_DSN:
            if (flag_set_count == MAX_FLAG_SETS) {
                fprintf(stderr, "%s: more than %d --set/-X flags\n", PROGRAM, MAX_FLAG_SETS);
                goto out;
            }
            if (asprintf(&flag_sets[flag_set_count], "%s%s",
                         opt == 'b'          ? "kafka.bootstrap="
                         : opt == OPT_PG_DSN ? "pg.dsn="
                         : opt == 'X'        ? "kafka."
                                             : "",
                         optarg) < 0) {
                fprintf(stderr, "%s: out of memory\n", PROGRAM);
                goto out;
            }
            flag_set_count++;
            break;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (check && !print_config && !print_doc) {
        nudgel_conf_startup_check(conf, PROGRAM, config_path, flag_sets, flag_set_count);
        exit_code = nudgel_admin_check_config(conf, PROGRAM, check == NUDGEL_CONF_CHECK_CONNECT);
        goto out;
    }
    switch (nudgel_conf_startup(conf, PROGRAM, config_path, flag_sets, flag_set_count, print_config,
                                print_doc)) {
    case NUDGEL_CONF_STARTUP_RUN:
        break;
    case NUDGEL_CONF_STARTUP_DONE:
        exit_code = EXIT_OK;
        goto out;
    case NUDGEL_CONF_STARTUP_FAIL:
    case NUDGEL_CONF_STARTUP_CHECK: /* only nudgel_conf_startup_check() returns it */
        goto out;
    }

    command_t cmd = parse_command(argc - optind, argv + optind, &sub);
    nudgel_admin_endpoint_opts_t eopts = {.endpoint_id = sub.endpoint,
                                          .tenant = sub.tenant,
                                          .url = sub.url,
                                          .events = sub.events,
                                          .rate_limit = sub.rate_limit,
                                          .concurrency = sub.concurrency,
                                          .description = sub.description,
                                          .reason = sub.reason,
                                          .json = (sub.given & F_JSON) != 0};
    switch (cmd) {
    case CMD_NONE:
        usage(stderr);
        goto out;
    case CMD_MIGRATE:
        err = (sub.given & F_STATUS)
                  ? nudgel_admin_migrate_status(conf, stdout, errstr, sizeof(errstr))
                  : nudgel_admin_migrate(conf, stdout, errstr, sizeof(errstr));
        break;
    case CMD_TOPICS_ENSURE: {
        nudgel_admin_topics_opts_t topts = {.alter = (sub.given & F_ALTER) != 0};
        err = nudgel_admin_topics_ensure(conf, &topts, stdout, &drift, errstr, sizeof(errstr));
        break;
    }
    case CMD_TOPICS_DESCRIBE:
        err = nudgel_admin_topics_describe(conf, (sub.given & F_JSON) != 0, stdout, errstr,
                                           sizeof(errstr));
        break;
    case CMD_DLQ_REPLAY: {
        nudgel_admin_dlq_opts_t dopts = {.kind = sub.topic,
                                         .tenant = sub.tenant,
                                         .reason = sub.reason,
                                         .since_ms = sub.since_ms,
                                         .until_ms = sub.until_ms,
                                         .dry_run = (sub.given & F_DRY_RUN) != 0,
                                         .resend = (sub.given & F_RESEND) != 0,
                                         .generation = sub.generation};
        err = nudgel_admin_dlq_replay(conf, &dopts, stdout, errstr, sizeof(errstr));
        break;
    }
    case CMD_ENDPOINTS_ADD:
        err = nudgel_admin_endpoints_add(conf, &eopts, stdout, errstr, sizeof(errstr));
        break;
    case CMD_ENDPOINTS_LIST:
        err = nudgel_admin_endpoints_list(conf, &eopts, stdout, errstr, sizeof(errstr));
        break;
    case CMD_ENDPOINTS_SHOW:
        err = nudgel_admin_endpoints_show(conf, &eopts, stdout, errstr, sizeof(errstr));
        break;
    case CMD_ENDPOINTS_DISABLE:
    case CMD_ENDPOINTS_ENABLE:
        err = nudgel_admin_endpoints_set_enabled(conf, &eopts, cmd == CMD_ENDPOINTS_ENABLE, stdout,
                                                 errstr, sizeof(errstr));
        break;
    case CMD_ENDPOINTS_ROTATE:
        err = nudgel_admin_endpoints_rotate_secret(conf, &eopts, stdout, errstr, sizeof(errstr));
        break;
    case CMD_WEBHOOKS_REPLAY: {
        nudgel_admin_webhook_replay_opts_t ropts = {.endpoint_id = sub.endpoint,
                                                    .since_ms = sub.since_ms,
                                                    .until_ms = sub.until_ms,
                                                    .status = sub.status,
                                                    .dry_run = (sub.given & F_DRY_RUN) != 0};
        err = nudgel_admin_webhook_replay(conf, &ropts, stdout, errstr, sizeof(errstr));
        break;
    }
    }
    fflush(stdout);
    exit_code = exit_code_for(err);
    if (err != NUDGEL_OK) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr[0] ? errstr : nudgel_strerror(err));
    } else if (drift && (sub.given & F_FAIL_ON_DRIFT)) {
        fprintf(stderr, "%s: drift remains (--fail-on-drift)\n", PROGRAM);
        exit_code = EXIT_FAILED;
    }
out:
    for (size_t i = 0; i < flag_set_count; i++)
        free(flag_sets[i]);
    nudgel_conf_destroy(conf);
    return exit_code;
}
