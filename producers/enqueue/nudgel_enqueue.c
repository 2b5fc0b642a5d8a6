/*
 * nudgel-enqueue — JSON lines (one job per line) from a file or stdin to
 * nudgel.messages.v1 or nudgel.webhooks.v1 through libnudgel.
 *
 * Bad lines are reported with their line number and reason while good lines
 * are sent; the summary counts both. Exit status: 0 everything acknowledged,
 * 1 some line rejected or not acknowledged, 2 usage or configuration error,
 * 3 Kafka unreachable at start.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nudgel/config.h"
#include "nudgel/log.h"
#include "nudgel/producer.h"
#include "nudgel/timeutil.h"
#include "nudgel/version.h"

#define PROGRAM           "nudgel-enqueue"
#define MAX_REPORTED      10000 /* problems kept for the JSON summary; all are printed */
#define PROGRESS_EVERY_US 200000

static const nudgel_conf_entry_t enqueue_table[] = {
    {"producer.default_country", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0,
     "ISO alpha-2 country for numbers written in national format (KE, NG, UG)."},
    {"producer.message_timeout_ms", NUDGEL_CONF_INT, "30000", 1000, 600000, NULL, 0,
     "How long a job may wait for Kafka's acknowledgement before it counts as failed."},
    {"producer.max_job_bytes", NUDGEL_CONF_INT, "65536", 1024, 1048576, NULL, 0,
     "Hard cap of one job's JSON."},
    {"producer.messages_topic", NUDGEL_CONF_STRING, "nudgel.messages.v1", 0, 0, NULL, 0,
     "Topic for message jobs; change only for benchmarks or an isolated namespace."},
    {"producer.webhooks_topic", NUDGEL_CONF_STRING, "nudgel.webhooks.v1", 0, 0, NULL, 0,
     "Topic for webhook jobs; change only for benchmarks or an isolated namespace."},
    {"enqueue.connect_timeout_ms", NUDGEL_CONF_INT, "10000", 100, 600000, NULL, 0,
     "How long to wait for a broker at start before giving up."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct problem {
    long line;
    char field[64];
    char reason[256];
    const char *kind; /* "rejected" (validation) or "failed" (Kafka) */
} problem_t;

typedef struct run_state {
    long sent, acked, rejected, failed;
    problem_t *problems;
    size_t problem_count;
    bool json_summary;
} run_state_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void record_problem(run_state_t *st, long line, const char *kind, const char *field,
                           const char *reason)
{
    fprintf(stderr, "%s: line %ld %s: %s: %s\n", PROGRAM, line, kind, field, reason);
    if (st->problem_count < MAX_REPORTED) {
        problem_t *p = &st->problems[st->problem_count++];
        p->line = line;
        p->kind = kind;
        snprintf(p->field, sizeof(p->field), "%s", field);
        snprintf(p->reason, sizeof(p->reason), "%s", reason);
    }
}

static void on_delivery(const nudgel_delivery_report_t *report, void *opaque)
{
    run_state_t *st = opaque;
    if (report->err == NUDGEL_OK) {
        st->acked++;
        return;
    }
    st->failed++;
    record_problem(st, (long)(intptr_t)report->opaque, "failed", "(kafka)", report->errstr);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " PROGRAM " --topic messages|webhooks [options] [FILE|-]\n"
            "\n"
            "Reads one JSON job per line from FILE (or stdin) and appends each to Kafka.\n"
            "\n"
            "  -t, --topic T           messages or webhooks (required)\n"
            "  -r, --rate N            at most N jobs per second (default: as fast as possible)\n"
            "      --strict            stop at the first rejected line\n"
            "      --json              print the summary as JSON on stdout\n"
            "  -q, --quiet             no progress bar even on a terminal\n"
            "  -b, --bootstrap HOSTS   Kafka bootstrap servers (kafka.bootstrap)\n"
            "      --default-country C hint for national-format numbers (KE, NG, UG)\n"
            "  -c, --config FILE       JSON config file (default: $NUDGEL_CONFIG)\n"
            "  -s, --set KEY=VALUE     set any configuration key\n"
            "  -X PROP=VALUE           librdkafka producer property\n"
            "      --print-config      print the effective configuration (secrets redacted)\n"
            "      --print-config-doc  print the configuration reference (Markdown)\n"
            "      --version           print the version\n"
            "  -h, --help              this text\n");
}

static void draw_progress(const run_state_t *st, int64_t start_us, off_t done_bytes,
                          off_t total_bytes)
{
    double secs = (double)(nudgel_mono_us() - start_us) / 1e6;
    double rate = secs > 0 ? (double)st->sent / secs : 0;
    if (total_bytes > 0) {
        double frac = (double)done_bytes / (double)total_bytes;
        if (frac > 1)
            frac = 1;
        int filled = (int)(frac * 30);
        double eta = frac > 0 ? secs / frac - secs : 0;
        fprintf(stderr, "\r[%.*s%*s] %5.1f%% %ld sent %ld rejected %.0f/s ETA %.0fs  ", filled,
                "##############################", 30 - filled, "", frac * 100, st->sent,
                st->rejected, rate, eta);
    } else {
        fprintf(stderr, "\r%ld sent %ld rejected %.0f/s  ", st->sent, st->rejected, rate);
    }
}

static void print_summary(const run_state_t *st, double secs)
{
    fprintf(stderr, "%s: %ld sent, %ld acknowledged, %ld rejected, %ld failed in %.2fs\n", PROGRAM,
            st->sent, st->acked, st->rejected, st->failed, secs);
    if (!st->json_summary)
        return;
    printf("{\"sent\":%ld,\"acknowledged\":%ld,\"rejected\":%ld,\"failed\":%ld,\"seconds\":%.3f,"
           "\"problems\":[",
           st->sent, st->acked, st->rejected, st->failed, secs);
    for (size_t i = 0; i < st->problem_count; i++) {
        const problem_t *p = &st->problems[i];
        printf("%s{\"line\":%ld,\"kind\":\"%s\",\"field\":\"", i ? "," : "", p->line, p->kind);
        for (const char *c = p->field; *c; c++)
            printf((*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
        printf("\",\"reason\":\"");
        for (const char *c = p->reason; *c; c++) {
            if (*c == '"' || *c == '\\')
                printf("\\%c", *c);
            else if ((unsigned char)*c < 0x20)
                printf("\\u%04x", (unsigned char)*c);
            else
                putchar(*c);
        }
        printf("\"}");
    }
    printf("]}\n");
}

/* Sleeps until @p until_us (monotonic) while serving delivery callbacks. */
static void pace(nudgel_producer_t *p, int64_t until_us)
{
    for (;;) {
        int64_t now = nudgel_mono_us();
        if (now >= until_us || stop_requested)
            return;
        int64_t wait_ms = (until_us - now) / 1000;
        nudgel_producer_poll(p, wait_ms > 0 ? (int)(wait_ms < 100 ? wait_ms : 100) : 0);
        if (wait_ms == 0) {
            struct timespec ts = {0, (long)((until_us - now) * 1000)};
            nanosleep(&ts, NULL);
        }
    }
}

typedef struct kafka_copy {
    nudgel_producer_conf_t *pconf;
    char *errstr;
    size_t errstr_size;
} kafka_copy_t;

static int copy_kafka_prop(const char *prop, const char *value, void *opaque)
{
    kafka_copy_t *kc = opaque;
    return nudgel_producer_conf_set(kc->pconf, prop, value, kc->errstr, kc->errstr_size) ==
                   NUDGEL_OK
               ? 0
               : -1;
}

/* A producer configured from the fleet configuration. */
static nudgel_producer_t *make_producer(const nudgel_conf_t *conf, run_state_t *st, char *errstr,
                                        size_t errstr_size)
{
    nudgel_producer_conf_t *pconf = nudgel_producer_conf_new();
    kafka_copy_t kc = {pconf, errstr, errstr_size};
    const char *client_id = nudgel_conf_get_str(conf, "kafka.client_id");
    const char *country = nudgel_conf_get_str(conf, "producer.default_country");
    if (!pconf)
        return NULL;
    if (nudgel_producer_conf_set(pconf, "bootstrap.servers",
                                 nudgel_conf_get_str(conf, "kafka.bootstrap"), errstr,
                                 errstr_size) ||
        nudgel_producer_conf_set(pconf, "client.id", client_id ? client_id : PROGRAM, errstr,
                                 errstr_size) ||
        (country &&
         nudgel_producer_conf_set(pconf, "default_country", country, errstr, errstr_size)) ||
        nudgel_producer_conf_set(pconf, "message_timeout_ms",
                                 nudgel_conf_get_str(conf, "producer.message_timeout_ms"), errstr,
                                 errstr_size) ||
        nudgel_producer_conf_set(pconf, "messages_topic",
                                 nudgel_conf_get_str(conf, "producer.messages_topic"), errstr,
                                 errstr_size) ||
        nudgel_producer_conf_set(pconf, "webhooks_topic",
                                 nudgel_conf_get_str(conf, "producer.webhooks_topic"), errstr,
                                 errstr_size) ||
        nudgel_producer_conf_set(pconf, "max_job_bytes",
                                 nudgel_conf_get_str(conf, "producer.max_job_bytes"), errstr,
                                 errstr_size) ||
        nudgel_conf_kafka_foreach(conf, copy_kafka_prop, &kc) != 0)
        goto fail;
    nudgel_producer_conf_set_delivery_cb(pconf, on_delivery, st);
    nudgel_producer_t *p = nudgel_producer_new(pconf, errstr, errstr_size);
    if (p)
        return p;
fail:
    nudgel_producer_conf_destroy(pconf);
    return NULL;
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, enqueue_table, NULL};
    static const struct option options[] = {
        {"topic", required_argument, NULL, 't'},
        {"rate", required_argument, NULL, 'r'},
        {"strict", no_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'J'},
        {"quiet", no_argument, NULL, 'q'},
        {"bootstrap", required_argument, NULL, 'b'},
        {"default-country", required_argument, NULL, 'C'},
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"print-config", no_argument, NULL, 'P'},
        {"print-config-doc", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    run_state_t st = {0};
    nudgel_conf_t *conf = nudgel_conf_new(PROGRAM, tables);
    nudgel_producer_t *producer = NULL;
    FILE *in = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    char errstr[512];
    const char *topic = NULL, *config_path = NULL;
    double rate = 0;
    bool strict = false, quiet = false, print_config = false, print_doc = false;
    int exit_code = 2, opt;
    char *flag_sets[64];
    size_t flag_set_count = 0;

    st.problems = calloc(MAX_REPORTED, sizeof(*st.problems));
    if (!conf || !st.problems) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        goto out;
    }
    while ((opt = getopt_long(argc, argv, "t:r:qb:c:s:X:h", options, NULL)) != -1) {
        switch (opt) {
        case 't':
            topic = optarg;
            break;
        case 'r': {
            char *end;
            rate = strtod(optarg, &end);
            if (*end || rate <= 0) {
                fprintf(stderr, "%s: --rate: expected a positive number, got \"%s\"\n", PROGRAM,
                        optarg);
                goto out;
            }
            break;
        }
        case 'S':
            strict = true;
            break;
        case 'J':
            st.json_summary = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'P':
            print_config = true;
            break;
        case 'D':
            print_doc = true;
            break;
        case 'h':
            usage(stdout);
            exit_code = 0;
            goto out;
        case 'V':
            printf("%s %s\n", PROGRAM, nudgel_version());
            exit_code = 0;
            goto out;
        case 'b':
        case 'C':
        case 's':
        case 'X':
            /* Applied after file and environment: flags win. */
            if (flag_set_count == sizeof(flag_sets) / sizeof(flag_sets[0])) {
                fprintf(stderr, "%s: too many --set/-X flags\n", PROGRAM);
                goto out;
            }
            if (asprintf(&flag_sets[flag_set_count++], "%s%s%s",
                         opt == 'b'   ? "kafka.bootstrap="
                         : opt == 'C' ? "producer.default_country="
                         : opt == 'X' ? "kafka."
                                      : "",
                         optarg, "") < 0)
                goto out;
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
        exit_code = 0;
        goto out;
    case NUDGEL_CONF_STARTUP_FAIL:
    case NUDGEL_CONF_STARTUP_CHECK: /* only nudgel_conf_startup_check() returns it */
        goto out;
    }
    if (!topic || (strcmp(topic, "messages") != 0 && strcmp(topic, "webhooks") != 0)) {
        fprintf(stderr, "%s: --topic must be messages or webhooks\n", PROGRAM);
        usage(stderr);
        goto out;
    }
    if (optind < argc - 1) {
        fprintf(stderr, "%s: one input file at most\n", PROGRAM);
        goto out;
    }
    const char *path = optind < argc ? argv[optind] : "-";
    in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        fprintf(stderr, "%s: %s: %s\n", PROGRAM, path, strerror(errno));
        goto out;
    }

    producer = make_producer(conf, &st, errstr, sizeof(errstr));
    if (!producer) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        goto out;
    }
    int connect_ms = (int)nudgel_conf_get_int(conf, "enqueue.connect_timeout_ms");
    if (nudgel_producer_check(producer, connect_ms, errstr, sizeof(errstr)) != NUDGEL_OK) {
        fprintf(stderr, "%s: cannot reach Kafka at %s: %s\n", PROGRAM,
                nudgel_conf_get_str(conf, "kafka.bootstrap"), errstr);
        exit_code = 3;
        goto out;
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    struct stat sb;
    off_t total_bytes = fstat(fileno(in), &sb) == 0 && S_ISREG(sb.st_mode) ? sb.st_size : 0;
    off_t done_bytes = 0;
    bool progress = !quiet && isatty(STDERR_FILENO);
    bool messages = strcmp(topic, "messages") == 0;
    int64_t start_us = nudgel_mono_us(), next_send_us = start_us, last_draw_us = 0;
    int64_t interval_us = rate > 0 ? (int64_t)(1e6 / rate) : 0;
    long line_no = 0;
    ssize_t n;

    while (!stop_requested && (n = getline(&line, &line_cap, in)) != -1) {
        line_no++;
        done_bytes += n;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if (interval_us) {
            pace(producer, next_send_us);
            next_send_us += interval_us;
        }
        nudgel_enqueue_result_t res;
        nudgel_enqueue_opts_t eopts = {.traceparent = NULL, .opaque = (void *)(intptr_t)line_no};
        nudgel_err_t err = messages
                               ? nudgel_enqueue_message(producer, line, (size_t)n, &eopts, &res)
                               : nudgel_enqueue_webhook(producer, line, (size_t)n, &eopts, &res);
        if (err == NUDGEL_OK) {
            st.sent++;
        } else if (nudgel_err_class(err) == NUDGEL_ERRCLASS_PERMANENT) {
            st.rejected++;
            record_problem(&st, line_no, "rejected", res.error.field, res.error.reason);
            if (strict) {
                fprintf(stderr, "%s: --strict: stopping at line %ld\n", PROGRAM, line_no);
                break;
            }
        } else {
            st.failed++;
            record_problem(&st, line_no, "failed", res.error.field, nudgel_strerror(err));
        }
        nudgel_producer_poll(producer, 0);
        if (progress) {
            int64_t now = nudgel_mono_us();
            if (now - last_draw_us > PROGRESS_EVERY_US) {
                draw_progress(&st, start_us, done_bytes, total_bytes);
                last_draw_us = now;
            }
        }
    }
    if (ferror(in)) {
        fprintf(stderr, "%s: reading %s: %s\n", PROGRAM, path, strerror(errno));
        st.failed++;
    }
    int flush_ms = (int)nudgel_conf_get_int(conf, "producer.message_timeout_ms") + 5000;
    if (nudgel_producer_flush(producer, flush_ms) != NUDGEL_OK)
        fprintf(stderr, "%s: %d jobs still unacknowledged after %d ms\n", PROGRAM,
                nudgel_producer_in_flight(producer), flush_ms);
    long unacknowledged = st.sent - st.acked - st.failed;
    if (unacknowledged > 0)
        st.failed += unacknowledged;
    if (progress) {
        draw_progress(&st, start_us, done_bytes, total_bytes);
        fputc('\n', stderr);
    }
    print_summary(&st, (double)(nudgel_mono_us() - start_us) / 1e6);
    exit_code = (st.rejected || st.failed || stop_requested) ? 1 : 0;
out:
    for (size_t i = 0; i < flag_set_count; i++)
        free(flag_sets[i]);
    free(line);
    if (in && in != stdin)
        fclose(in);
    nudgel_producer_destroy(producer);
    nudgel_conf_destroy(conf);
    free(st.problems);
    return exit_code;
}
