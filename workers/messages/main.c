/*
 * nudgel-messages — the messages worker: its config table, the wiring of its
 * stages (setup()), and the event loop that drives them turn by turn. What
 * each stage does, and a job's path through them, is told in messages.h.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nudgel/http_admin.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

#include "messages.h"

static const char *const tier_suffix[TIERS] = {"5s", "30s", "2m", "10m"};

static const nudgel_conf_entry_t messages_table[] = {
    {"messages.group_id", NUDGEL_CONF_STRING, "nudgel-messages", 0, 0, NULL, 0,
     "Kafka consumer group of the messages workers on the jobs topic; the retry tiers are "
     "consumed in a second group named after it with \".retry\" appended."},
    {"messages.gateways_file", NUDGEL_CONF_STRING, "config/gateways.example.json", 0, 0, NULL, 0,
     "JSON file of gateways and routes (see config/gateways.example.json)."},
    {"messages.worker_id", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0,
     "Claim owner name; default host-pid-start time (must be unique per process)."},
    {"messages.claim_stale_ms", NUDGEL_CONF_INT, "30000", 1000, 3600000, NULL, 0,
     "A claim older than this is taken over (longer than the gateway timeout)."},
    {"messages.validity_ms", NUDGEL_CONF_INT, "3600000", 1000, 604800000, NULL, 0,
     "How long after created_at a job without expires_at may still be sent."},
    {"messages.max_in_flight", NUDGEL_CONF_INT, "2000", 1, 100000, NULL, 0,
     "Jobs in flight in this process; at the cap it takes no more until some finish."},
    {"messages.callback_url", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0,
     "Delivery-report URL given to gateways that take one."},
    {"messages.retry_delays_ms", NUDGEL_CONF_STRING, "5000,30000,120000,600000", 0, 0, NULL, 0,
     "Delays of the four retry tiers (topics nudgel.messages.retry.5s/30s/2m/10m); "
     "shorter only in tests."},
    {"messages.gateway_max_in_flight", NUDGEL_CONF_INT, "64", 1, 10000, NULL, 0,
     "Submissions awaiting an answer per gateway; bounds the damage before a breaker opens."},
    {"messages.breaker_window", NUDGEL_CONF_INT, "20", 1, 256, NULL, 0,
     "Outcomes per gateway the circuit breaker remembers."},
    {"messages.breaker_min_calls", NUDGEL_CONF_INT, "10", 1, 256, NULL, 0,
     "Outcomes needed before a gateway's breaker may open."},
    {"messages.breaker_failure_percent", NUDGEL_CONF_INT, "50", 1, 100, NULL, 0,
     "Share of transient failures in the window that opens the breaker."},
    {"messages.breaker_open_ms", NUDGEL_CONF_INT, "10000", 100, 3600000, NULL, 0,
     "How long an open breaker sends traffic to the route's next gateway before a probe."},
    {"messages.tenant_max_in_flight", NUDGEL_CONF_INT, "500", 1, 1000000, NULL, 0,
     "Submissions in flight per tenant unless nudgel.tenant_limits says otherwise; "
     "the tenant's further jobs wait so others sharing its partition keep moving."},
    {"messages.tenant_rate_per_second", NUDGEL_CONF_INT, "0", 0, 1000000, NULL, 0,
     "Sends per second per tenant unless nudgel.tenant_limits says otherwise; 0: no limit."},
    {"messages.tenant_limits_refresh_ms", NUDGEL_CONF_INT, "30000", 1000, 3600000, NULL, 0,
     "How often nudgel.tenant_limits is read again."},
    {"messages.template_cache_ms", NUDGEL_CONF_INT, "60000", 0, 3600000, NULL, 0,
     "How long a template (or its absence) is cached; an edit is seen within this time."},
    {"messages.pg_reconnect_max_ms", NUDGEL_CONF_INT, "5000", 100, 600000, NULL, 0,
     "Longest wait between reconnect attempts while Postgres is unreachable."},
    {"messages.drain_timeout_ms", NUDGEL_CONF_INT, "20000", 0, 600000, NULL, 0,
     "On SIGTERM, how long to finish jobs in flight before leaving the group."},
    {"topics.namespace", NUDGEL_CONF_STRING, "", 0, 0, NULL, 0,
     "Prefix of every topic name (an isolated set of topics); empty in production."},
    {"metrics.address", NUDGEL_CONF_STRING, "127.0.0.1", 0, 0, NULL, 0,
     "Address of /metrics, /healthz and /readyz (0.0.0.0 in a pod)."},
    {"metrics.port", NUDGEL_CONF_INT, "9464", 0, 65535, NULL, 0,
     "Port of /metrics, /healthz and /readyz; 0 picks a free one."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

/* SIGTERM or SIGINT: drain the jobs in flight, then leave. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static nudgel_err_t setup(worker_t *w, char *errstr, size_t errstr_size)
{
    const char *ns = nudgel_conf_get_str(w->conf, "topics.namespace");
    char hostname[64] = "host";
    gethostname(hostname, sizeof(hostname) - 1);
    const char *id = nudgel_conf_get_str(w->conf, "messages.worker_id");
    if (id)
        snprintf(w->worker_id, sizeof(w->worker_id), "%s", id);
    else
        snprintf(w->worker_id, sizeof(w->worker_id), "%.40s-%d-%lld", hostname, (int)getpid(),
                 (long long)nudgel_now_unix_ms());
    snprintf(w->topic_jobs, sizeof(w->topic_jobs), "%s%s", ns, NUDGEL_TOPIC_MESSAGES);
    snprintf(w->topic_status, sizeof(w->topic_status), "%s%s", ns, NUDGEL_TOPIC_STATUS);
    snprintf(w->topic_dlq, sizeof(w->topic_dlq), "%s%s", ns, NUDGEL_TOPIC_MESSAGES_DLQ);
    for (int i = 0; i < TIERS; i++)
        snprintf(w->topic_retry[i], sizeof(w->topic_retry[i]), "%snudgel.messages.retry.%s", ns,
                 tier_suffix[i]);
    const char *delays = nudgel_conf_get_str(w->conf, "messages.retry_delays_ms");
    char *end = NULL;
    for (int i = 0; i < TIERS; i++) {
        w->tier_delay_ms[i] = strtoll(delays, &end, 10);
        if (end == delays || w->tier_delay_ms[i] < 0 || (*end != ',' && *end != '\0') ||
            (*end == '\0' && i != TIERS - 1)) {
            snprintf(errstr, errstr_size,
                     "messages.retry_delays_ms: expected %d comma-separated milliseconds", TIERS);
            return NUDGEL_ERR_CONFIG;
        }
        delays = end + 1;
    }
    w->stale_ms = nudgel_conf_get_int(w->conf, "messages.claim_stale_ms");
    w->validity_ms = nudgel_conf_get_int(w->conf, "messages.validity_ms");
    w->max_in_flight = (size_t)nudgel_conf_get_int(w->conf, "messages.max_in_flight");
    w->gateway_max_in_flight =
        (size_t)nudgel_conf_get_int(w->conf, "messages.gateway_max_in_flight");
    w->callback_url = nudgel_conf_get_str(w->conf, "messages.callback_url");
    w->pg_backoff_max_ms = nudgel_conf_get_int(w->conf, "messages.pg_reconnect_max_ms");
    w->pg_backoff_ms = 250;
    w->template_ttl_us = nudgel_conf_get_int(w->conf, "messages.template_cache_ms") * 1000;
    w->tenant_limits_every_us =
        nudgel_conf_get_int(w->conf, "messages.tenant_limits_refresh_ms") * 1000;
    int64_t tenant_rate = nudgel_conf_get_int(w->conf, "messages.tenant_rate_per_second");
    w->tenant_defaults = (nudgel_tenant_limits_t){
        .max_in_flight = (uint32_t)nudgel_conf_get_int(w->conf, "messages.tenant_max_in_flight"),
        .rate = tenant_rate > 0 ? (double)tenant_rate : NUDGEL_THROTTLE_RATE_MAX,
        .burst = tenant_rate > 0 ? (uint32_t)tenant_rate : NUDGEL_THROTTLE_BURST_MAX,
    };
    if (!(w->recipients = nudgel_keyq_new()) || !(w->tenant_waits = nudgel_keyq_new()) ||
        !(w->templates = nudgel_keyq_new())) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    if (nudgel_throttle_tenants_new(w->max_in_flight * 2 + 1024, &w->tenant_defaults, &w->tenants,
                                    errstr, errstr_size) != NUDGEL_OK)
        return NUDGEL_ERR_CONFIG;

    nudgel_err_t err = gateway_lanes_open(w, errstr, errstr_size);
    if (err == NUDGEL_OK)
        err = postgres_open(w, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    if (!(w->http = nudgel_http_new(256, errstr, errstr_size)))
        return NUDGEL_ERR_NO_MEMORY;
    if (!(w->publisher = nudgel_publisher_new(w->conf, on_published, w, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    /* Two consumers, two groups: the jobs topic in messages.group_id, the
     * retry tiers in messages.group_id + ".retry". In one group the
     * assignor balances the total partition count over all five topics, so
     * a second worker could get only retry-tier partitions and no share of
     * the jobs topic (nor of the gateways' TPS). Apart, each set is balanced
     * on its own, and the jobs group's lag is what autoscaling watches. */
    const char *jobs_topic[1] = {w->topic_jobs};
    const char *tier_topics[TIERS];
    for (int i = 0; i < TIERS; i++)
        tier_topics[i] = w->topic_retry[i];
    const char *group = nudgel_conf_get_str(w->conf, "messages.group_id");
    char retry_group[256];
    snprintf(retry_group, sizeof(retry_group), "%s.retry", group);
    if (!(w->consumer = nudgel_consumer_new(w->conf, group, jobs_topic, 1, errstr, errstr_size)) ||
        !(w->retry_consumer =
              nudgel_consumer_new(w->conf, retry_group, tier_topics, TIERS, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    w->total_partitions = nudgel_consumer_partition_count(
        w->consumer, w->topic_jobs,
        (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s") * 1000);
    w->shared_with = -1;
    if (w->total_partitions < 1) {
        snprintf(errstr, errstr_size, "%s: cannot read its partition count", w->topic_jobs);
        return NUDGEL_ERR_KAFKA_UNREACHABLE;
    }
    static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    w->metrics = nudgel_metrics_new();
    w->m_outcomes =
        nudgel_metrics_register(w->metrics, NUDGEL_METRIC_COUNTER, "nudgel_messages_outcomes_total",
                                "Jobs by outcome.", "outcome", NULL, 0);
    w->m_in_flight =
        nudgel_metrics_register(w->metrics, NUDGEL_METRIC_GAUGE, "nudgel_messages_in_flight",
                                "Jobs in flight.", NULL, NULL, 0);
    w->m_submit_latency = nudgel_metrics_register(
        w->metrics, NUDGEL_METRIC_HISTOGRAM, "nudgel_messages_gateway_seconds",
        "Gateway submission latency.", NULL, buckets, sizeof(buckets) / sizeof(buckets[0]));
    static const double batch_sizes[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
    w->m_pg_batch = nudgel_metrics_register(
        w->metrics, NUDGEL_METRIC_HISTOGRAM, "nudgel_messages_postgres_batch_size",
        "Jobs per batched Postgres statement.", "statement", batch_sizes,
        sizeof(batch_sizes) / sizeof(batch_sizes[0]));
    w->m_waiting = nudgel_metrics_register(
        w->metrics, NUDGEL_METRIC_GAUGE, "nudgel_messages_waiting",
        "Jobs waiting: claim, recipient (behind an earlier job to the same number), tenant "
        "(at its limits), outcome (for the batched write).",
        "queue", NULL, 0);
    w->m_pg_up =
        nudgel_metrics_register(w->metrics, NUDGEL_METRIC_GAUGE, "nudgel_messages_postgres_up",
                                "1 while Postgres is reachable, 0 while intake is paused "
                                "for it.",
                                NULL, NULL, 0);
    nudgel_metric_set(w->m_pg_up, NULL, 1);
    return NUDGEL_OK;
}

/* Jobs polled and not yet done, from both consumers. */
static size_t in_flight(const worker_t *w)
{
    return nudgel_consumer_in_flight(w->consumer) + nudgel_consumer_in_flight(w->retry_consumer);
}

static bool ready(void *opaque, char *why, size_t why_size)
{
    worker_t *w = opaque;
    if (!postgres_ready(w)) {
        snprintf(why, why_size, "Postgres unreachable; intake paused");
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, nudgel_consumer_conf,
                                                        messages_table, NULL};
    worker_t w = {0};
    nudgel_http_admin_t *admin = NULL;
    char errstr[1024];
    int exit_code = 2;

    w.conf = nudgel_conf_new(PROGRAM, tables);
    switch (nudgel_conf_startup_args(w.conf, PROGRAM, argc, argv)) {
    case NUDGEL_CONF_STARTUP_RUN:
        break;
    case NUDGEL_CONF_STARTUP_DONE:
        exit_code = 0;
        goto out;
    case NUDGEL_CONF_STARTUP_FAIL:
        goto out;
    }
    nudgel_err_t err = setup(&w, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        exit_code = nudgel_err_class(err) == NUDGEL_ERRCLASS_RETRIABLE ? 3 : 2;
        goto out;
    }
    admin = nudgel_http_admin_start(nudgel_conf_get_str(w.conf, "metrics.address"),
                                    (int)nudgel_conf_get_int(w.conf, "metrics.port"), w.metrics,
                                    ready, &w, errstr, sizeof(errstr));
    if (!admin)
        nudgel_log_warn("%s; running without /metrics", errstr);
    else
        nudgel_log_info("worker %s; metrics on port %d", w.worker_id,
                        nudgel_http_admin_port(admin));
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    int64_t drain_deadline = 0, last_poll_us = 0;
    for (;;) {
        if ((stop_requested || w.fatal_stop) && !drain_deadline) {
            nudgel_consumer_pause(w.consumer, NUDGEL_PAUSE_SHUTDOWN);
            nudgel_consumer_pause(w.retry_consumer, NUDGEL_PAUSE_SHUTDOWN);
            drain_deadline =
                nudgel_mono_us() + nudgel_conf_get_int(w.conf, "messages.drain_timeout_ms") * 1000;
            nudgel_log_info("draining %zu job(s)", in_flight(&w));
        }
        if (w.fatal_stop)
            break;
        if (drain_deadline && (in_flight(&w) == 0 || nudgel_mono_us() > drain_deadline))
            break;
        /* Poll Kafka without waiting while HTTP or Postgres work is pending.
         * At the in-flight cap, stop taking jobs instead of pausing the
         * partitions (a pause drops what librdkafka prefetched, and the
         * refetch after resume stalls intake); one poll every 500 ms still
         * serves rebalances and keeps the group membership alive. */
        bool busy = nudgel_http_in_flight(w.http) > 0 || postgres_busy(&w);
        int64_t turn_us = nudgel_mono_us();
        bool at_cap = in_flight(&w) >= w.max_in_flight;
        int polls = !at_cap ? 256 : turn_us - last_poll_us > 500000 ? 1 : 0;
        nudgel_consumer_t *consumers[2] = {w.retry_consumer, w.consumer};
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < polls; i++) {
                /* Only the last consumer's first poll may wait, and only when idle. */
                int wait_ms = k == 1 && i == 0 && !busy ? 20 : 0;
                nudgel_job_ref_t *ref = nudgel_consumer_poll(consumers[k], wait_ms);
                last_poll_us = turn_us;
                if (!ref)
                    break;
                intake_handle(&w, consumers[k], ref);
                w.current = NULL;
                if (in_flight(&w) >= w.max_in_flight)
                    break;
            }
        }
        if (polls == 0 && !busy)
            usleep(1000); /* at the cap with nothing to wait on: do not spin */
        postgres_revive(&w);
        tenant_limits_refresh(&w);
        claims_pump(&w);
        update_fleet_share(&w);
        gates_tick(&w);
        drain_lanes(&w);
        /* Wait (briefly) for an HTTP answer or a Postgres result, whichever comes first. */
        int fds[2];
        size_t nfds = postgres_wait_fds(&w, fds, sizeof(fds) / sizeof(fds[0]));
        nudgel_http_poll_fds(w.http, busy ? 5 : 0, fds, nfds);
        outcomes_pump(&w);
        claims_pump(&w);
        nudgel_publisher_poll(w.publisher, 0);
        if (w.pg_down && !busy)
            usleep(5000); /* paused: nothing to poll for; wait for the reconnect */
        nudgel_metric_set(w.m_in_flight, NULL, (double)in_flight(&w));
        nudgel_metric_set(w.m_waiting, "claim", (double)w.to_claim.count);
        nudgel_metric_set(w.m_waiting, "recipient",
                          (double)nudgel_keyq_total_waiting(w.recipients));
        nudgel_metric_set(w.m_waiting, "tenant", (double)nudgel_keyq_total_waiting(w.tenant_waits));
        nudgel_metric_set(w.m_waiting, "outcome", (double)w.to_record.count);
    }
    exit_code = w.fatal_stop ? 1 : 0;
out:
    nudgel_http_admin_stop(admin);
    nudgel_http_destroy(w.http);
    nudgel_publisher_destroy(w.publisher, 10000);
    nudgel_consumer_close(w.consumer);
    nudgel_consumer_close(w.retry_consumer);
    gateway_lanes_close(&w);
    nudgel_keyq_free(w.recipients);
    nudgel_keyq_free(w.tenant_waits);
    nudgel_keyq_free_with(w.templates, cached_template_free);
    nudgel_throttle_tenants_free(w.tenants);
    free(w.tenant_limits);
    free(w.to_claim.items);
    free(w.to_record.items);
    free(w.recipient_ready.items);
    postgres_close(&w);
    nudgel_metrics_destroy(w.metrics);
    nudgel_conf_destroy(w.conf);
    return exit_code;
}
