/*
 * nudgel-admin — operations on the fleet's Postgres schema and Kafka topics,
 * run by SREs and by Helm hooks (migration and topic Jobs).
 *
 *   nudgel-admin [global flags] migrate [--status]
 *   nudgel-admin [global flags] topics ensure [--alter] [--fail-on-drift]
 *   nudgel-admin [global flags] topics describe [--json]
 *   nudgel-admin [global flags] dlq replay --topic messages|webhooks [--tenant T]
 *                [--reason TEXT] [--since TIME] [--until TIME] [--dry-run]
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

#include "dlq.h"
#include "migrate.h"
#include "nudgel/config.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "topics.h"

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
} command_t;

/* Subcommand flags; each is valid for one command only. */
typedef struct sub_flags {
    bool status, alter, fail_on_drift, json;
    bool dlq; /* any of the dlq replay flags was given */
    nudgel_admin_dlq_opts_t replay;
} sub_flags_t;

static void usage(FILE *out)
{
    fprintf(out,
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
            "      --reason TEXT       only those whose reason contains TEXT\n"
            "      --since TIME        dead-lettered at or after TIME (RFC 3339)\n"
            "      --until TIME        dead-lettered before TIME (RFC 3339)\n"
            "      --dry-run           count what would be replayed, send nothing\n"
            "\n"
            "Global flags:\n"
            "  -c, --config FILE       JSON config file (default: $NUDGEL_CONFIG)\n"
            "  -s, --set KEY=VALUE     set any configuration key\n"
            "  -X PROP=VALUE           librdkafka property\n"
            "  -b, --bootstrap HOSTS   Kafka bootstrap servers (kafka.bootstrap)\n"
            "      --pg-dsn DSN        Postgres connection string (pg.dsn)\n"
            "      --print-config      print the effective configuration (secrets redacted)\n"
            "      --print-config-doc  print the configuration reference (Markdown)\n"
            "  -h, --help              this text\n"
            "\n"
            "Exit status: 0 ok, 1 operation failed or drift (--fail-on-drift), 2 usage or\n"
            "configuration error, 3 Kafka or Postgres unreachable.\n");
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
 * errors rather than silently ignored.
 */
static command_t parse_command(int argc, char **argv, const sub_flags_t *sub)
{
    command_t cmd = CMD_NONE;
    const char *allowed = "";
    if (argc < 1) {
        fprintf(stderr, "%s: no command given\n", PROGRAM);
        return CMD_NONE;
    }
    if (strcmp(argv[0], "migrate") == 0 && argc == 1) {
        cmd = CMD_MIGRATE;
        allowed = "--status";
    } else if (strcmp(argv[0], "topics") == 0 && argc == 2 && strcmp(argv[1], "ensure") == 0) {
        cmd = CMD_TOPICS_ENSURE;
        allowed = "--alter --fail-on-drift";
    } else if (strcmp(argv[0], "topics") == 0 && argc == 2 && strcmp(argv[1], "describe") == 0) {
        cmd = CMD_TOPICS_DESCRIBE;
        allowed = "--json";
    } else if (strcmp(argv[0], "topics") == 0) {
        fprintf(stderr, "%s: topics takes ensure or describe\n", PROGRAM);
        return CMD_NONE;
    } else if (strcmp(argv[0], "dlq") == 0 && argc == 2 && strcmp(argv[1], "replay") == 0) {
        cmd = CMD_DLQ_REPLAY;
        allowed = "--topic --tenant --reason --since --until --dry-run";
        if (!sub->replay.kind) {
            fprintf(stderr, "%s: dlq replay needs --topic messages|webhooks\n", PROGRAM);
            return CMD_NONE;
        }
    } else {
        fprintf(stderr, "%s: unknown command \"", PROGRAM);
        for (int i = 0; i < argc; i++)
            fprintf(stderr, "%s%s", i ? " " : "", argv[i]);
        fprintf(stderr, "\"\n");
        return CMD_NONE;
    }
    if ((sub->status && cmd != CMD_MIGRATE) ||
        ((sub->alter || sub->fail_on_drift) && cmd != CMD_TOPICS_ENSURE) ||
        (sub->json && cmd != CMD_TOPICS_DESCRIBE) || (sub->dlq && cmd != CMD_DLQ_REPLAY)) {
        fprintf(stderr, "%s: %s%s takes only %s\n", PROGRAM, argv[0],
                argc > 1 ? (strcmp(argv[1], "ensure") == 0   ? " ensure"
                            : strcmp(argv[1], "replay") == 0 ? " replay"
                                                             : " describe")
                         : "",
                allowed);
        return CMD_NONE;
    }
    return cmd;
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, admin_table,
                                                        nudgel_admin_topics_conf, NULL};
    enum {
        OPT_PG_DSN = 256,
        OPT_PRINT_CONFIG,
        OPT_PRINT_DOC,
        OPT_STATUS,
        OPT_ALTER,
        OPT_FAIL_ON_DRIFT,
        OPT_JSON,
        OPT_TOPIC,
        OPT_TENANT,
        OPT_REASON,
        OPT_SINCE,
        OPT_UNTIL,
        OPT_DRY_RUN
    };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"bootstrap", required_argument, NULL, 'b'},
        {"pg-dsn", required_argument, NULL, OPT_PG_DSN},
        {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
        {"print-config-doc", no_argument, NULL, OPT_PRINT_DOC},
        {"help", no_argument, NULL, 'h'},
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
        {NULL, 0, NULL, 0},
    };
    nudgel_conf_t *conf = nudgel_conf_new(PROGRAM, tables);
    char *flag_sets[MAX_FLAG_SETS];
    size_t flag_set_count = 0;
    const char *config_path = NULL;
    bool print_config = false, print_doc = false, drift = false;
    sub_flags_t sub = {0};
    char errstr[1024] = "";
    int exit_code = EXIT_USAGE, opt;
    nudgel_err_t err;

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
        case OPT_STATUS:
            sub.status = true;
            break;
        case OPT_ALTER:
            sub.alter = true;
            break;
        case OPT_FAIL_ON_DRIFT:
            sub.fail_on_drift = true;
            break;
        case OPT_JSON:
            sub.json = true;
            break;
        case OPT_TOPIC:
            sub.dlq = true;
            sub.replay.kind = optarg;
            break;
        case OPT_TENANT:
            sub.dlq = true;
            sub.replay.tenant = optarg;
            break;
        case OPT_REASON:
            sub.dlq = true;
            sub.replay.reason = optarg;
            break;
        case OPT_SINCE:
        case OPT_UNTIL:
            sub.dlq = true;
            if (nudgel_rfc3339_parse(optarg, opt == OPT_SINCE ? &sub.replay.since_ms
                                                              : &sub.replay.until_ms) != 0) {
                fprintf(stderr, "%s: --%s: \"%s\" is not an RFC 3339 time\n", PROGRAM,
                        opt == OPT_SINCE ? "since" : "until", optarg);
                goto out;
            }
            break;
        case OPT_DRY_RUN:
            sub.dlq = true;
            sub.replay.dry_run = true;
            break;
        case 'h':
            usage(stdout);
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
    switch (nudgel_conf_startup(conf, PROGRAM, config_path, flag_sets, flag_set_count, print_config,
                                print_doc)) {
    case NUDGEL_CONF_STARTUP_RUN:
        break;
    case NUDGEL_CONF_STARTUP_DONE:
        exit_code = EXIT_OK;
        goto out;
    case NUDGEL_CONF_STARTUP_FAIL:
        goto out;
    }

    command_t cmd = parse_command(argc - optind, argv + optind, &sub);
    switch (cmd) {
    case CMD_NONE:
        usage(stderr);
        goto out;
    case CMD_MIGRATE:
        err = sub.status ? nudgel_admin_migrate_status(conf, stdout, errstr, sizeof(errstr))
                         : nudgel_admin_migrate(conf, stdout, errstr, sizeof(errstr));
        break;
    case CMD_TOPICS_ENSURE: {
        nudgel_admin_topics_opts_t topts = {.alter = sub.alter};
        err = nudgel_admin_topics_ensure(conf, &topts, stdout, &drift, errstr, sizeof(errstr));
        break;
    }
    case CMD_TOPICS_DESCRIBE:
        err = nudgel_admin_topics_describe(conf, sub.json, stdout, errstr, sizeof(errstr));
        break;
    case CMD_DLQ_REPLAY:
        err = nudgel_admin_dlq_replay(conf, &sub.replay, stdout, errstr, sizeof(errstr));
        break;
    }
    fflush(stdout);
    exit_code = exit_code_for(err);
    if (err != NUDGEL_OK) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr[0] ? errstr : nudgel_strerror(err));
    } else if (drift && sub.fail_on_drift) {
        fprintf(stderr, "%s: drift remains (--fail-on-drift)\n", PROGRAM);
        exit_code = EXIT_FAILED;
    }
out:
    for (size_t i = 0; i < flag_set_count; i++)
        free(flag_sets[i]);
    nudgel_conf_destroy(conf);
    return exit_code;
}
