/*
 * fleet_metrics.c — see nudgel/fleet_metrics.h.
 *
 * The counters and histograms are ordinary registry metrics. What is read
 * at scrape time (readiness, lags, producer queues, /proc) is one collector:
 * lags are copied into fixed slots under a mutex by the loop thread when a
 * role reads its consumer's health, and rendered from there.
 */
#define _GNU_SOURCE
#include "nudgel/fleet_metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "nudgel/publisher.h"
#include "nudgel/readiness.h"

#define LAGS_PER_SLOT  1024
#define TOPIC_NAME_MAX 256
#define MAX_PUBLISHERS 8

static const double pg_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,   0.25,   0.5,   1,    2.5};

typedef struct lag_entry {
    char topic[TOPIC_NAME_MAX];
    int32_t partition;
    int64_t lag;
} lag_entry_t;

typedef struct lag_slot {
    lag_entry_t *entries; /* LAGS_PER_SLOT, allocated when the slot is taken */
    size_t count;
} lag_slot_t;

struct nudgel_fleet_metrics {
    nudgel_metrics_t *registry;
    nudgel_readiness_t *readiness;
    nudgel_metric_t *consumed, *succeeded, *failed, *retries, *dead_letters, *in_flight;
    nudgel_metric_t *pg_statements;
    pthread_mutex_t lag_mu;
    lag_slot_t slots[NUDGEL_FLEET_LAG_SLOTS];
    size_t slot_count;
    nudgel_fleet_queue_fn *queue_fns[MAX_PUBLISHERS]; /* one per producer watched */
    void *queue_opaques[MAX_PUBLISHERS];
    size_t queue_count;
    long clock_ticks;
    long page_size;
    double boot_time; /* seconds since the epoch, from /proc/stat btime */
};

static double read_boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[256];
    double btime = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %lf", &btime) == 1)
            break;
    if (f)
        fclose(f);
    return btime;
}

static void collect(void *opaque, FILE *out);

nudgel_fleet_metrics_t *nudgel_fleet_metrics_new(nudgel_metrics_t *registry, const char *role,
                                                 const char *version,
                                                 struct nudgel_readiness *readiness)
{
    static const char *const info_labels[] = {"role", "version", NULL};
    nudgel_fleet_metrics_t *fm = calloc(1, sizeof(*fm));
    if (!fm)
        return NULL;
    fm->registry = registry;
    fm->readiness = readiness;
    fm->clock_ticks = sysconf(_SC_CLK_TCK);
    fm->page_size = sysconf(_SC_PAGESIZE);
    fm->boot_time = read_boot_time();
    pthread_mutex_init(&fm->lag_mu, NULL);
    nudgel_metric_t *info = nudgel_metrics_register_labels(
        registry, NUDGEL_METRIC_GAUGE, "nudgel_build_info",
        "1, labelled with the role and the version it was built from.", info_labels, NULL, 0);
    fm->consumed =
        nudgel_metrics_register(registry, NUDGEL_METRIC_COUNTER, "nudgel_jobs_consumed_total",
                                "Jobs polled from Kafka, by topic.", "topic", NULL, 0);
    fm->succeeded = nudgel_metrics_register(
        registry, NUDGEL_METRIC_COUNTER, "nudgel_jobs_succeeded_total",
        "Jobs that reached their goal (sent to a carrier, delivered, fanned out, applied).", NULL,
        NULL, 0);
    fm->failed =
        nudgel_metrics_register(registry, NUDGEL_METRIC_COUNTER, "nudgel_jobs_failed_total",
                                "Jobs that ended failed, by reason.", "reason", NULL, 0);
    fm->retries =
        nudgel_metrics_register(registry, NUDGEL_METRIC_COUNTER, "nudgel_job_retries_total",
                                "Retries published, by retry tier.", "tier", NULL, 0);
    fm->dead_letters =
        nudgel_metrics_register(registry, NUDGEL_METRIC_COUNTER, "nudgel_dead_letters_total",
                                "Dead letters published, by reason.", "reason", NULL, 0);
    fm->in_flight = nudgel_metrics_register(registry, NUDGEL_METRIC_GAUGE, "nudgel_jobs_in_flight",
                                            "Jobs polled and not ended yet.", NULL, NULL, 0);
    fm->pg_statements = nudgel_metrics_register(
        registry, NUDGEL_METRIC_HISTOGRAM, "nudgel_pg_statement_seconds",
        "Postgres statements from send to last result, by the connection's purpose.", "statement",
        pg_buckets, sizeof(pg_buckets) / sizeof(pg_buckets[0]));
    if (!info || !fm->consumed || !fm->succeeded || !fm->failed || !fm->retries ||
        !fm->dead_letters || !fm->in_flight || !fm->pg_statements ||
        nudgel_metrics_add_collector(registry, collect, fm) != 0) {
        nudgel_fleet_metrics_free(fm);
        return NULL;
    }
    const char *info_values[] = {role, version};
    nudgel_metric_set_v(info, info_values, 1);
    nudgel_metric_touch(fm->succeeded, NULL);
    nudgel_metric_touch(fm->in_flight, NULL);
    return fm;
}

void nudgel_fleet_metrics_free(nudgel_fleet_metrics_t *fm)
{
    if (!fm)
        return;
    for (size_t i = 0; i < fm->slot_count; i++)
        free(fm->slots[i].entries);
    pthread_mutex_destroy(&fm->lag_mu);
    free(fm);
}

nudgel_metrics_t *nudgel_fleet_metrics_registry(nudgel_fleet_metrics_t *fm)
{
    return fm->registry;
}

/* The tier of a retry topic: what follows ".retry." ("30s"), or NULL. */
static const char *tier_of(const char *topic)
{
    const char *p = topic ? strstr(topic, ".retry.") : NULL;
    return p && p[7] ? p + 7 : NULL;
}

void nudgel_fleet_metrics_topics(nudgel_fleet_metrics_t *fm, const char *const *topics,
                                 size_t count)
{
    for (size_t i = 0; fm && i < count; i++) {
        nudgel_metric_touch(fm->consumed, topics[i]);
        if (tier_of(topics[i]))
            nudgel_metric_touch(fm->retries, tier_of(topics[i]));
    }
}

void nudgel_fleet_metrics_reasons(nudgel_fleet_metrics_t *fm, const char *const *reasons)
{
    for (size_t i = 0; fm && reasons && reasons[i]; i++) {
        nudgel_metric_touch(fm->failed, reasons[i]);
        nudgel_metric_touch(fm->dead_letters, reasons[i]);
    }
}

void nudgel_fleet_job_consumed(nudgel_fleet_metrics_t *fm, const char *topic)
{
    if (fm)
        nudgel_metric_add(fm->consumed, topic, 1);
}

void nudgel_fleet_job_succeeded(nudgel_fleet_metrics_t *fm)
{
    if (fm)
        nudgel_metric_add(fm->succeeded, NULL, 1);
}

void nudgel_fleet_job_failed(nudgel_fleet_metrics_t *fm, const char *reason)
{
    if (fm)
        nudgel_metric_add(fm->failed, reason && *reason ? reason : "other", 1);
}

void nudgel_fleet_job_retried(nudgel_fleet_metrics_t *fm, const char *retry_topic)
{
    const char *tier = tier_of(retry_topic);
    if (fm)
        nudgel_metric_add(fm->retries, tier ? tier : "other", 1);
}

void nudgel_fleet_job_dead_lettered(nudgel_fleet_metrics_t *fm, const char *reason)
{
    if (fm)
        nudgel_metric_add(fm->dead_letters, reason && *reason ? reason : "other", 1);
}

void nudgel_fleet_jobs_in_flight(nudgel_fleet_metrics_t *fm, double delta)
{
    if (fm)
        nudgel_metric_add(fm->in_flight, NULL, delta);
}

nudgel_metric_t *nudgel_fleet_metrics_pg_statements(nudgel_fleet_metrics_t *fm)
{
    return fm ? fm->pg_statements : NULL;
}

/* ---- Kafka ----------------------------------------------------------------- */

int nudgel_fleet_metrics_lag_slot(nudgel_fleet_metrics_t *fm)
{
    if (!fm || fm->slot_count == NUDGEL_FLEET_LAG_SLOTS)
        return -1;
    lag_slot_t *slot = &fm->slots[fm->slot_count];
    if (!(slot->entries = calloc(LAGS_PER_SLOT, sizeof(slot->entries[0]))))
        return -1;
    return (int)fm->slot_count++;
}

void nudgel_fleet_metrics_lags(nudgel_fleet_metrics_t *fm, int slot, const nudgel_kafka_health_t *h)
{
    if (!fm || slot < 0 || (size_t)slot >= fm->slot_count)
        return;
    lag_slot_t *s = &fm->slots[slot];
    pthread_mutex_lock(&fm->lag_mu);
    s->count = 0;
    for (size_t i = 0; i < h->lag_count && s->count < LAGS_PER_SLOT; i++) {
        lag_entry_t *e = &s->entries[s->count++];
        snprintf(e->topic, sizeof(e->topic), "%s", h->lags[i].topic);
        e->partition = h->lags[i].partition;
        e->lag = h->lags[i].lag;
    }
    pthread_mutex_unlock(&fm->lag_mu);
}

void nudgel_fleet_metrics_watch_queue(nudgel_fleet_metrics_t *fm, nudgel_fleet_queue_fn *fn,
                                      void *opaque)
{
    if (fm && fn && fm->queue_count < MAX_PUBLISHERS) {
        fm->queue_fns[fm->queue_count] = fn;
        fm->queue_opaques[fm->queue_count++] = opaque;
    }
}

static int publisher_queue(void *opaque)
{
    return nudgel_publisher_in_flight(opaque); /* rd_kafka_outq_len(): thread-safe */
}

void nudgel_fleet_metrics_watch_publisher(nudgel_fleet_metrics_t *fm, struct nudgel_publisher *p)
{
    if (p)
        nudgel_fleet_metrics_watch_queue(fm, publisher_queue, p);
}

static void collect_kafka(nudgel_fleet_metrics_t *fm, FILE *out)
{
    int64_t total = 0;
    nudgel_metrics_write_header(out, "nudgel_kafka_consumer_lag",
                                "Messages behind the committed offset, per assigned partition "
                                "(librdkafka statistics).",
                                NUDGEL_METRIC_GAUGE);
    pthread_mutex_lock(&fm->lag_mu);
    for (size_t i = 0; i < fm->slot_count; i++)
        for (size_t j = 0; j < fm->slots[i].count; j++) {
            const lag_entry_t *e = &fm->slots[i].entries[j];
            fputs("nudgel_kafka_consumer_lag{topic=\"", out);
            nudgel_metrics_write_label_value(out, e->topic);
            fprintf(out, "\",partition=\"%d\"} %lld\n", (int)e->partition, (long long)e->lag);
            total += e->lag;
        }
    pthread_mutex_unlock(&fm->lag_mu);
    nudgel_metrics_write_header(out, "nudgel_kafka_consumer_lag_total",
                                "Sum of nudgel_kafka_consumer_lag.", NUDGEL_METRIC_GAUGE);
    fprintf(out, "nudgel_kafka_consumer_lag_total %lld\n", (long long)total);
    int64_t queued = 0;
    for (size_t i = 0; i < fm->queue_count; i++)
        queued += fm->queue_fns[i](fm->queue_opaques[i]);
    nudgel_metrics_write_header(out, "nudgel_kafka_producer_queue_messages",
                                "Publishes not yet acknowledged by Kafka (rd_kafka_outq_len).",
                                NUDGEL_METRIC_GAUGE);
    fprintf(out, "nudgel_kafka_producer_queue_messages %lld\n", (long long)queued);
}

/* ---- readiness and process ---------------------------------------------------- */

static void gauge(FILE *out, const char *name, const char *help, nudgel_metric_type_t type,
                  double value)
{
    nudgel_metrics_write_header(out, name, help, type);
    fputs(name, out);
    fputc(' ', out);
    nudgel_metrics_write_number(out, value);
    fputc('\n', out);
}

static size_t open_fds(void)
{
    size_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d) {
        closedir(d);
        n--; /* the directory's own descriptor */
    }
    return n;
}

static void collect_process(nudgel_fleet_metrics_t *fm, FILE *out)
{
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t len = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[len] = '\0';
    /* Fields after the command name, which may hold spaces: from the last ')'. */
    const char *p = strrchr(buf, ')');
    if (p && sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                    "%*d %*d %llu %llu %lld",
                    &utime, &stime, &start, &vsize, &rss) == 5) {
        double ticks = fm->clock_ticks > 0 ? (double)fm->clock_ticks : 100.0;
        gauge(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
              NUDGEL_METRIC_COUNTER, (double)(utime + stime) / ticks);
        gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.",
              NUDGEL_METRIC_GAUGE, (double)rss * (double)fm->page_size);
        gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
              NUDGEL_METRIC_GAUGE, (double)vsize);
        gauge(out, "process_start_time_seconds",
              "Start time of the process since unix epoch in seconds.", NUDGEL_METRIC_GAUGE,
              fm->boot_time + (double)start / ticks);
    }
    struct rlimit lim;
    gauge(out, "process_open_fds", "Number of open file descriptors.", NUDGEL_METRIC_GAUGE,
          (double)open_fds());
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0)
        gauge(out, "process_max_fds", "Maximum number of open file descriptors.",
              NUDGEL_METRIC_GAUGE, lim.rlim_cur == RLIM_INFINITY ? -1 : (double)lim.rlim_cur);
}

static void collect(void *opaque, FILE *out)
{
    nudgel_fleet_metrics_t *fm = opaque;
    if (fm->readiness) {
        gauge(out, "nudgel_ready", "1 while /readyz answers 200, else 0.", NUDGEL_METRIC_GAUGE,
              nudgel_readiness_check(fm->readiness, NULL, 0) ? 1 : 0);
        gauge(out, "nudgel_readiness_transitions_total",
              "Changes between ready and not ready since start-up.", NUDGEL_METRIC_COUNTER,
              (double)nudgel_readiness_transitions(fm->readiness));
    }
    collect_kafka(fm, out);
    collect_process(fm, out);
}
