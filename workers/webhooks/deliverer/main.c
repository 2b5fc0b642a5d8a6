/*
 * nudgel-webhooks — the webhook deliverer (deliverer.h tells a job's path
 * through the stage files).
 *
 * main.c owns the config table, the set-up that wires the stages onto
 * Kafka, Postgres, curl and /metrics, and the one event loop: poll and
 * claim, the HTTP phase (lanes, answers, flushes), publishes, until SIGTERM
 * drains.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliverer.h"
#include "nudgel/http_admin.h"
#include "nudgel/log.h"
#include "nudgel/pg.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

#define HTTP_PHASE_US 10000 /* longest HTTP phase of one turn of the loop */

static const nudgel_conf_entry_t webhooks_table[] = {
    {"webhooks.group_id", NUDGEL_CONF_STRING, "nudgel-webhooks", 0, 0, NULL, 0,
     "Kafka consumer group of the deliverers."},
    {"webhooks.retry_schedule", NUDGEL_CONF_STRING, NUDGEL_RETRY_SCHEDULE_DEFAULT, 0, 0, NULL, 0,
     "Delays between attempts (ms, s, m, h, d units); after the last one the delivery is "
     "exhausted. Shorter only in tests."},
    {"webhooks.retry_jitter_percent", NUDGEL_CONF_INT, "20", 0, 99, NULL, 0,
     "Each retry delay is spread by ± this share."},
    {"webhooks.connect_timeout_ms", NUDGEL_CONF_INT, "5000", 100, 120000, NULL, 0,
     "Connect timeout of one attempt."},
    {"webhooks.total_timeout_ms", NUDGEL_CONF_INT, "15000", 100, 600000, NULL, 0,
     "Total timeout of one attempt (connect, send, response)."},
    {"webhooks.max_response_bytes", NUDGEL_CONF_INT, "65536", 1024, 1048576, NULL, 0,
     "Response body read at most; the first 1 KiB is kept in the attempt row."},
    {"webhooks.ssrf_guard", NUDGEL_CONF_BOOL, "true", 0, 0, NULL, 0,
     "Refuse targets that resolve to any address that is not globally routable (loopback, "
     "RFC 1918, link-local, CGNAT, ULA, ...). Never off in production."},
    {"webhooks.ssrf_allow_cidrs", NUDGEL_CONF_STRING, "", 0, 0, NULL, 0,
     "Comma-separated CIDRs allowed despite the guard (e.g. 127.0.0.0/8 in tests only)."},
    {"webhooks.ssrf_cache_ms", NUDGEL_CONF_INT, "30000", 0, 3600000, NULL, 0,
     "How long a vetted resolution of a host is reused (pinned) before it is resolved again."},
    {"webhooks.endpoint_cache_ms", NUDGEL_CONF_INT, "5000", 0, 3600000, NULL, 0,
     "How long an endpoint row (URL, secrets, limits, enabled) is trusted before it is read "
     "again."},
    {"webhooks.endpoint_max_concurrency", NUDGEL_CONF_INT, "16", 1, 1000, NULL, 0,
     "Requests in flight per endpoint when its row sets no max_concurrency."},
    {"webhooks.endpoint_rate_per_second", NUDGEL_CONF_INT, "0", 0, 100000, NULL, 0,
     "Requests per second per endpoint when its row sets no rate_limit_per_second; 0 = no "
     "limit."},
    {"webhooks.endpoint_queue_max", NUDGEL_CONF_INT, "1000", 1, 100000, NULL, 0,
     "Jobs waiting for a saturated endpoint; beyond it a job goes to the first retry tier "
     "(not counted as an attempt)."},
    {"webhooks.max_host_connections", NUDGEL_CONF_INT, "256", 1, 10000, NULL, 0,
     "Connections per host:port kept by the HTTP client."},
    {"webhooks.max_in_flight", NUDGEL_CONF_INT, "5000", 1, 100000, NULL, 0,
     "Jobs in flight in this process; above it every partition pauses."},
    {"webhooks.disable_after_failing_ms", NUDGEL_CONF_INT, "432000000", 1000, 31536000000LL, NULL,
     0, "An endpoint failing without a success for longer than this is disabled (default 5 days)."},
    {"webhooks.max_retry_after_ms", NUDGEL_CONF_INT, "86400000", 0, 604800000, NULL, 0,
     "Cap on how far a Retry-After header may push the next attempt."},
    {"webhooks.flush_interval_ms", NUDGEL_CONF_INT, "20", 1, 10000, NULL, 0,
     "Attempt and delivery rows are written in one transaction at most this often."},
    {"webhooks.flush_max_rows", NUDGEL_CONF_INT, "500", 1, 100000, NULL, 0,
     "A batch of outcomes this large is written at once."},
    {"webhooks.drain_timeout_ms", NUDGEL_CONF_INT, "20000", 0, 600000, NULL, 0,
     "On SIGTERM, how long to finish jobs in flight before leaving the group."},
    {"topics.namespace", NUDGEL_CONF_STRING, "", 0, 0, NULL, 0,
     "Prefix of every topic name (an isolated set of topics); empty in production."},
    {"metrics.address", NUDGEL_CONF_STRING, "127.0.0.1", 0, 0, NULL, 0,
     "Address of /metrics, /healthz and /readyz (0.0.0.0 in a pod)."},
    {"metrics.port", NUDGEL_CONF_INT, "9465", 0, 65535, NULL, 0,
     "Port of /metrics, /healthz and /readyz; 0 picks a free one."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

static volatile sig_atomic_t stop_requested;
static bool fatal_stop;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

void request_fatal_stop(void)
{
    fatal_stop = true;
    stop_requested = 1;
}

static nudgel_err_t setup(worker_t *w, char *errstr, size_t errstr_size)
{
    const char *ns = nudgel_conf_get_str(w->conf, "topics.namespace");
    snprintf(w->topic_jobs, sizeof(w->topic_jobs), "%s%s", ns, NUDGEL_TOPIC_WEBHOOKS);
    snprintf(w->topic_status, sizeof(w->topic_status), "%s%s", ns, NUDGEL_TOPIC_STATUS);
    snprintf(w->topic_dlq, sizeof(w->topic_dlq), "%s%s", ns, NUDGEL_TOPIC_WEBHOOKS_DLQ);
    for (int i = 0; i < TIERS; i++)
        snprintf(w->topic_retry[i], sizeof(w->topic_retry[i]), "%snudgel.webhooks.retry.%s", ns,
                 tier_suffix[i]);
    char inner[400];
    if (nudgel_retry_schedule_parse(
            nudgel_conf_get_str(w->conf, "webhooks.retry_schedule"),
            (double)nudgel_conf_get_int(w->conf, "webhooks.retry_jitter_percent") / 100.0,
            &w->schedule, inner, sizeof(inner)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "webhooks.retry_schedule: %s", inner);
        return NUDGEL_ERR_CONFIG;
    }
    if (nudgel_ssrf_policy_new(nudgel_conf_get_bool(w->conf, "webhooks.ssrf_guard"),
                               nudgel_conf_get_str(w->conf, "webhooks.ssrf_allow_cidrs"), &w->ssrf,
                               inner, sizeof(inner)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "webhooks.ssrf_allow_cidrs: %s", inner);
        return NUDGEL_ERR_CONFIG;
    }
    if (!nudgel_conf_get_bool(w->conf, "webhooks.ssrf_guard"))
        nudgel_log_warn("the SSRF guard is OFF (webhooks.ssrf_guard=false): never in production");
    nudgel_err_t err = nudgel_secretbox_from_conf(w->conf, &w->box, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    w->connect_ms = (long)nudgel_conf_get_int(w->conf, "webhooks.connect_timeout_ms");
    w->total_ms = (long)nudgel_conf_get_int(w->conf, "webhooks.total_timeout_ms");
    w->max_response = (size_t)nudgel_conf_get_int(w->conf, "webhooks.max_response_bytes");
    w->queue_max = (size_t)nudgel_conf_get_int(w->conf, "webhooks.endpoint_queue_max");
    w->max_in_flight = (size_t)nudgel_conf_get_int(w->conf, "webhooks.max_in_flight");
    w->default_concurrency =
        (size_t)nudgel_conf_get_int(w->conf, "webhooks.endpoint_max_concurrency");
    w->default_rate = (double)nudgel_conf_get_int(w->conf, "webhooks.endpoint_rate_per_second");
    w->endpoint_cache_us = nudgel_conf_get_int(w->conf, "webhooks.endpoint_cache_ms") * 1000;
    w->ssrf_cache_us = nudgel_conf_get_int(w->conf, "webhooks.ssrf_cache_ms") * 1000;
    w->failing_window_ms = nudgel_conf_get_int(w->conf, "webhooks.disable_after_failing_ms");
    w->max_retry_after_ms = nudgel_conf_get_int(w->conf, "webhooks.max_retry_after_ms");
    w->flush_us = nudgel_conf_get_int(w->conf, "webhooks.flush_interval_ms") * 1000;
    w->flush_max = (size_t)nudgel_conf_get_int(w->conf, "webhooks.flush_max_rows");

    w->pg = nudgel_pg_connect(nudgel_conf_get_str(w->conf, "pg.dsn"), PROGRAM,
                              (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s"), errstr,
                              errstr_size);
    if (!w->pg)
        return NUDGEL_ERR_PG_UNREACHABLE;
    w->with_payload = wh_db_has_payload_column(w->pg);
    w->claim_lane.name = "claiming deliveries";
    w->flush_lane.name = "writing outcomes";
    if (!(w->claim_lane.conn = lane_connect(w, errstr, errstr_size)) ||
        !(w->flush_lane.conn = lane_connect(w, errstr, errstr_size)))
        return NUDGEL_ERR_PG_UNREACHABLE;
    w->pg_ok = true;
    if (!(w->http =
              nudgel_http_new((long)nudgel_conf_get_int(w->conf, "webhooks.max_host_connections"),
                              errstr, errstr_size)))
        return NUDGEL_ERR_NO_MEMORY;
    if (!(w->publisher = nudgel_publisher_new(w->conf, on_published, w, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    const char *topics[1 + TIERS] = {w->topic_jobs};
    for (int i = 0; i < TIERS; i++)
        topics[1 + i] = w->topic_retry[i];
    if (!(w->consumer =
              nudgel_consumer_new(w->conf, nudgel_conf_get_str(w->conf, "webhooks.group_id"),
                                  topics, 1 + TIERS, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;

    static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15};
    w->metrics = nudgel_metrics_new();
    w->m_outcomes =
        nudgel_metrics_register(w->metrics, NUDGEL_METRIC_COUNTER, "nudgel_webhooks_outcomes_total",
                                "Webhook jobs by outcome.", "outcome", NULL, 0);
    w->m_attempts = nudgel_metrics_register(
        w->metrics, NUDGEL_METRIC_COUNTER, "nudgel_webhooks_attempts_total",
        "HTTP attempts by result (delivered or the error class).", "result", NULL, 0);
    w->m_latency = nudgel_metrics_register(
        w->metrics, NUDGEL_METRIC_HISTOGRAM, "nudgel_webhooks_attempt_seconds",
        "Latency of one attempt.", NULL, buckets, sizeof(buckets) / sizeof(buckets[0]));
    w->m_in_flight =
        nudgel_metrics_register(w->metrics, NUDGEL_METRIC_GAUGE, "nudgel_webhooks_in_flight",
                                "Jobs in flight.", NULL, NULL, 0);
    w->m_queued =
        nudgel_metrics_register(w->metrics, NUDGEL_METRIC_GAUGE, "nudgel_webhooks_lane_waiting",
                                "Jobs waiting in endpoint lanes.", NULL, NULL, 0);
    static const double pg_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
    w->m_claim_s = nudgel_metrics_register(w->metrics, NUDGEL_METRIC_HISTOGRAM,
                                           "nudgel_webhooks_claim_seconds",
                                           "Postgres round trip claiming a batch of jobs.", NULL,
                                           pg_buckets, sizeof(pg_buckets) / sizeof(pg_buckets[0]));
    w->m_flush_s = nudgel_metrics_register(
        w->metrics, NUDGEL_METRIC_HISTOGRAM, "nudgel_webhooks_flush_seconds",
        "Postgres transaction writing a batch of outcomes.", NULL, pg_buckets,
        sizeof(pg_buckets) / sizeof(pg_buckets[0]));
    return NUDGEL_OK;
}

static bool ready(void *opaque, char *why, size_t why_size)
{
    worker_t *w = opaque;
    if (PQstatus(w->pg) != CONNECTION_OK) {
        snprintf(why, why_size, "Postgres connection lost");
        return false;
    }
    return true;
}

static void worker_free(worker_t *w)
{
    for (size_t b = 0; b < HASH_BUCKETS; b++) {
        for (endpoint_t *ep = w->endpoints[b], *next; ep; ep = next) {
            next = ep->next;
            endpoint_forget_secrets(ep);
            free(ep->url);
            free(ep);
        }
        for (vetted_t *v = w->vetted[b], *next; v; v = next) {
            next = v->next;
            free(v->authority);
            free(v);
        }
    }
    free(w->outcomes);
    free(w->flush_sent);
    json_decref(w->flush_call.disabled);
    nudgel_ssrf_policy_destroy(w->ssrf);
    nudgel_secretbox_destroy(w->box);
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {
        nudgel_conf_common, nudgel_consumer_conf, nudgel_secretbox_conf, webhooks_table, NULL};
    static worker_t w; /* large (hash tables): not on the stack */
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
        nudgel_log_info("delivering %s; metrics on port %d", w.topic_jobs,
                        nudgel_http_admin_port(admin));
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    int64_t drain_deadline = 0;
    for (;;) {
        if (stop_requested && !drain_deadline) {
            nudgel_consumer_pause(w.consumer, NUDGEL_PAUSE_SHUTDOWN);
            drain_deadline =
                nudgel_mono_us() + nudgel_conf_get_int(w.conf, "webhooks.drain_timeout_ms") * 1000;
            nudgel_log_info("draining %zu job(s)", nudgel_consumer_in_flight(w.consumer));
        }
        if (fatal_stop)
            break;
        if (drain_deadline &&
            (nudgel_consumer_in_flight(w.consumer) == 0 || nudgel_mono_us() > drain_deadline))
            break;
        postgres_revive(&w);
        size_t in_flight = nudgel_consumer_in_flight(w.consumer);
        if (in_flight >= w.max_in_flight)
            nudgel_consumer_pause(w.consumer, NUDGEL_PAUSE_IN_FLIGHT);
        else if (in_flight < w.max_in_flight / 2)
            nudgel_consumer_resume(w.consumer, NUDGEL_PAUSE_IN_FLIGHT);
        bool busy = nudgel_http_in_flight(w.http) > 0 || w.outcome_count > 0 || w.claim_lane.busy ||
                    w.flush_lane.busy;
        if (w.pg_ok && !drain_deadline) {
            /* While a claim runs, what is polled waits and goes with the next one. */
            for (size_t i = 0; w.claim_count < CLAIM_BATCH_MAX; i++) {
                nudgel_job_ref_t *ref = nudgel_consumer_poll(w.consumer, i == 0 && !busy ? 20 : 0);
                if (!ref)
                    break;
                handle(&w, ref);
                w.current = NULL;
            }
        }
        claims_pump(&w);
        /*
         * The HTTP phase: answers free lane slots, so keep starting and
         * finishing requests for a few milliseconds rather than once per turn
         * of the loop (whose Kafka and Postgres steps cost milliseconds too).
         */
        int64_t http_until = nudgel_mono_us() + HTTP_PHASE_US;
        drain_lanes(&w);
        do {
            int fds[2];
            size_t nfds = lane_fds(&w, fds);
            int done = nudgel_http_poll_fds(w.http, busy ? 1 : 0, fds, nfds);
            outcomes_pump(&w, drain_deadline != 0);
            claims_pump(&w);
            drain_lanes(&w);
            if (done == 0 && w.lane_waiting == 0)
                break;
        } while (nudgel_http_in_flight(w.http) > 0 &&
                 (w.outcome_count < w.flush_max || w.flush_lane.busy) &&
                 nudgel_mono_us() < http_until);
        if (!busy && (!w.pg_ok || drain_deadline))
            usleep(5000); /* not polling Kafka: do not spin */
        outcomes_pump(&w, drain_deadline != 0);
        nudgel_publisher_poll(w.publisher, 0);
        nudgel_metric_set(w.m_in_flight, NULL, (double)nudgel_consumer_in_flight(w.consumer));
        nudgel_metric_set(w.m_queued, NULL, (double)w.lane_waiting);
    }
    exit_code = fatal_stop ? 1 : 0;
out:
    nudgel_http_admin_stop(admin);
    nudgel_http_destroy(w.http);
    nudgel_publisher_destroy(w.publisher, 10000);
    if (w.consumer)
        abandon_jobs(&w);
    nudgel_consumer_close(w.consumer);
    worker_free(&w);
    if (w.pg)
        PQfinish(w.pg);
    if (w.claim_lane.conn)
        PQfinish(w.claim_lane.conn);
    if (w.flush_lane.conn)
        PQfinish(w.flush_lane.conn);
    nudgel_metrics_destroy(w.metrics);
    nudgel_conf_destroy(w.conf);
    return exit_code;
}
