/*
 * nudgel-webhooks — the webhook deliverer, a role on the worker skeleton
 * (deliverer.h tells a job's path through the stage files).
 *
 * main.c holds the configuration table, the role table and the wiring:
 * setup puts the consumer, the publisher, curl and the three Postgres
 * connections on the skeleton's loop with the stages' callbacks, timers
 * and turn hook; drain, reload and teardown are the role's answers to
 * SIGTERM, SIGHUP and the exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/pg.h"
#include "nudgel/webhooks/keyring_check.h"

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
    {"webhooks.ssrf_cache_max", NUDGEL_CONF_INT, "10000", 1, 10000000, NULL, 0,
     "Target hosts whose vetted resolution is kept at most; beyond it the least recently used "
     "one is dropped."},
    {"webhooks.endpoint_cache_ms", NUDGEL_CONF_INT, "5000", 0, 3600000, NULL, 0,
     "How long an endpoint row (URL, secrets, limits, enabled) is trusted before it is read "
     "again."},
    {"webhooks.endpoint_cache_max", NUDGEL_CONF_INT, "10000", 1, 10000000, NULL, 0,
     "Endpoints kept in the cache at most (their rows and opened secrets); beyond it the least "
     "recently used one that no job holds is dropped and its secrets wiped."},
    {"webhooks.endpoint_max_concurrency", NUDGEL_CONF_INT, "16", 1, 1000, NULL, 0,
     "Requests in flight per endpoint when its row sets no max_concurrency."},
    {"webhooks.endpoint_rate_per_second", NUDGEL_CONF_INT, "0", 0, 100000, NULL, 0,
     "Requests per second per endpoint when its row sets no rate_limit_per_second; 0 = no "
     "limit."},
    {"webhooks.endpoint_queue_max", NUDGEL_CONF_INT, "1000", 1, 100000, NULL, 0,
     "Jobs a slow, failing or throttled endpoint's lane keeps; beyond it a job goes to the "
     "first retry tier (not counted as an attempt). A lane that is merely busy (fast enough to "
     "serve this many jobs within the first retry delay) keeps every job; the in-flight cap "
     "pauses intake instead. Slow means for a while: its answers' average latency has said so "
     "for a second, or no answer has come for a second."},
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
    {"webhooks.fetch_wait_ms", NUDGEL_CONF_INT, "25", 0, 1000, NULL, 0,
     "How long Kafka may hold a fetch to gather jobs: below full speed, jobs then come in "
     "batches (one fetch, one wake-up and one claim for many), at the price of up to this much "
     "latency; an idle deliverer fetches this often. 0: each fetch comes back with the first "
     "job (lowest latency, several times the CPU per job at a moderate rate). "
     "kafka.fetch.wait.max.ms and kafka.fetch.min.bytes, when set, win."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

static const char summary[] =
    "Delivers webhook jobs (nudgel.webhooks.v1 and its retry tiers) to registered endpoints, "
    "signed with Standard Webhooks, each endpoint within its own concurrency and rate; records "
    "every attempt and delivery in Postgres before publishing its status event, retry hop or "
    "dead letter.";

/* Keys a SIGHUP does not apply: they change at the next restart. */
static const char *const restart_keys[] = {
    "webhooks.group_id",
    "webhooks.ssrf_guard",
    "webhooks.ssrf_allow_cidrs",
    "webhooks.max_host_connections",
    "webhooks.fetch_wait_ms", /* the consumer's librdkafka settings */
    "pg.dsn",
    "pg.connect_timeout_s",
    NULL,
};

nudgel_err_t settings_read(const nudgel_conf_t *conf, settings_t *s, char *errstr,
                           size_t errstr_size)
{
    char inner[400];
    if (nudgel_retry_schedule_parse(
            nudgel_conf_get_str(conf, "webhooks.retry_schedule"),
            (double)nudgel_conf_get_int(conf, "webhooks.retry_jitter_percent") / 100.0,
            &s->schedule, inner, sizeof(inner)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "webhooks.retry_schedule: %s", inner);
        return NUDGEL_ERR_CONFIG;
    }
    s->connect_ms = (long)nudgel_conf_get_int(conf, "webhooks.connect_timeout_ms");
    s->total_ms = (long)nudgel_conf_get_int(conf, "webhooks.total_timeout_ms");
    s->max_response = (size_t)nudgel_conf_get_int(conf, "webhooks.max_response_bytes");
    s->queue_max = (size_t)nudgel_conf_get_int(conf, "webhooks.endpoint_queue_max");
    s->max_in_flight = (size_t)nudgel_conf_get_int(conf, "webhooks.max_in_flight");
    s->default_concurrency = (size_t)nudgel_conf_get_int(conf, "webhooks.endpoint_max_concurrency");
    s->default_rate = (double)nudgel_conf_get_int(conf, "webhooks.endpoint_rate_per_second");
    s->endpoint_cache_us = nudgel_conf_get_int(conf, "webhooks.endpoint_cache_ms") * 1000;
    s->endpoint_cache_max = (size_t)nudgel_conf_get_int(conf, "webhooks.endpoint_cache_max");
    s->ssrf_cache_us = nudgel_conf_get_int(conf, "webhooks.ssrf_cache_ms") * 1000;
    s->ssrf_cache_max = (size_t)nudgel_conf_get_int(conf, "webhooks.ssrf_cache_max");
    s->failing_window_ms = nudgel_conf_get_int(conf, "webhooks.disable_after_failing_ms");
    s->max_retry_after_ms = nudgel_conf_get_int(conf, "webhooks.max_retry_after_ms");
    s->flush_us = nudgel_conf_get_int(conf, "webhooks.flush_interval_ms") * 1000;
    s->flush_max = (size_t)nudgel_conf_get_int(conf, "webhooks.flush_max_rows");
    return NUDGEL_OK;
}

/* The lifecycle's `fatal`: a job polled earlier could not be finished durably. */
static void on_fatal(void *opaque, const char *why)
{
    worker_t *w = opaque;
    if (w->tearing_down)
        nudgel_log_warn("%s (at exit)", why); /* it is abandoned: delivered again */
    else
        nudgel_worker_fatal(w->nw, "%s", why);
}

/* @returns false when a family cannot be registered (out of memory, a bad definition). */
static bool register_metrics(worker_t *w, nudgel_metrics_t *m)
{
    static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15};
    static const double pg_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
    /* Retries stretch a delivery over hours (the schedule reaches 10h tiers). */
    static const double e2e_buckets[] = {0.1, 0.25, 0.5, 1,    2.5,  5,    10,    30,
                                         60,  300,  900, 1800, 3600, 7200, 21600, 86400};
    w->m_outcomes =
        nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "nudgel_webhooks_outcomes_total",
                                "Webhook jobs by outcome.", "outcome", NULL, 0);
    w->m_attempts = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_webhooks_attempts_total",
        "HTTP attempts by result (delivered or the error class).", "result", NULL, 0);
    w->m_latency = nudgel_metrics_register(
        m, NUDGEL_METRIC_HISTOGRAM, "nudgel_webhooks_attempt_seconds",
        "Latency of one attempt, by outcome (delivered, retry, backoff, disable_endpoint, "
        "permanent).",
        "outcome", buckets, sizeof(buckets) / sizeof(buckets[0]));
    w->m_end_to_end = nudgel_metrics_register(
        m, NUDGEL_METRIC_HISTOGRAM, "nudgel_webhooks_end_to_end_seconds",
        "From the job's created_at (the event's time) to its delivery recorded as delivered.", NULL,
        e2e_buckets, sizeof(e2e_buckets) / sizeof(e2e_buckets[0]));
    w->m_in_flight = nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "nudgel_webhooks_in_flight",
                                             "Jobs in flight.", NULL, NULL, 0);
    w->m_queued = nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "nudgel_webhooks_lane_waiting",
                                          "Jobs waiting in endpoint lanes.", NULL, NULL, 0);
    w->m_claim_s =
        nudgel_metrics_register(m, NUDGEL_METRIC_HISTOGRAM, "nudgel_webhooks_claim_seconds",
                                "Postgres round trip claiming a batch of jobs.", NULL, pg_buckets,
                                sizeof(pg_buckets) / sizeof(pg_buckets[0]));
    w->m_flush_s =
        nudgel_metrics_register(m, NUDGEL_METRIC_HISTOGRAM, "nudgel_webhooks_flush_seconds",
                                "Postgres transaction writing a batch of outcomes.", NULL,
                                pg_buckets, sizeof(pg_buckets) / sizeof(pg_buckets[0]));
    /* Every known series at zero from start-up. */
    for (int k = NUDGEL_OUTCOME_DELIVERED; k <= NUDGEL_OUTCOME_PERMANENT; k++)
        nudgel_metric_touch(w->m_latency, nudgel_outcome_kind_name((nudgel_outcome_kind_t)k));
    for (size_t i = 0; wh_job_outcomes[i]; i++)
        nudgel_metric_touch(w->m_outcomes, wh_job_outcomes[i]);
    for (size_t i = 0; wh_attempt_results[i]; i++)
        nudgel_metric_touch(w->m_attempts, wh_attempt_results[i]);
    nudgel_metric_touch(w->m_end_to_end, NULL);
    nudgel_metric_touch(w->m_claim_s, NULL);
    nudgel_metric_touch(w->m_flush_s, NULL);
    nudgel_fleet_metrics_reasons(nudgel_worker_fleet_metrics(w->nw), wh_failure_reasons);
    return w->m_outcomes && w->m_attempts && w->m_latency && w->m_end_to_end && w->m_in_flight &&
           w->m_queued && w->m_claim_s && w->m_flush_s;
}

/* The topics: the jobs topic and the retry tiers of the contract, namespaced. */
static nudgel_err_t topics(worker_t *w, const char **subscribed, size_t *count, char *errstr,
                           size_t errstr_size)
{
    const nudgel_topic_spec_t *tiers[NUDGEL_RETRY_TIERS_MAX];
    w->tiers = nudgel_topics_retry_tiers("webhooks", tiers, NUDGEL_RETRY_TIERS_MAX);
    subscribed[0] = nudgel_worker_topic(w->nw, NUDGEL_TOPIC_WEBHOOKS);
    bool ok = w->tiers > 0 && subscribed[0];
    for (size_t i = 0; ok && i < w->tiers; i++) {
        w->topic_retry[i] = subscribed[1 + i] = nudgel_worker_topic(w->nw, tiers[i]->name);
        w->tier_delay_ms[i] = tiers[i]->delay_ms;
        ok = w->topic_retry[i] != NULL;
    }
    *count = 1 + w->tiers;
    if (!ok) {
        snprintf(errstr, errstr_size, "topics: out of memory or no webhook retry tiers");
        return NUDGEL_ERR_NO_MEMORY;
    }
    return NUDGEL_OK;
}

/* Kafka: the publisher and the lifecycle every publish goes through, then the consumer. */
static nudgel_err_t kafka_open(worker_t *w, const nudgel_conf_t *conf, char *errstr,
                               size_t errstr_size)
{
    const char *subscribed[1 + NUDGEL_RETRY_TIERS_MAX];
    size_t count = 0;
    nudgel_err_t err = topics(w, subscribed, &count, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    /* The lifecycle reads nothing of cb_opaque: the job comes as each publish's opaque. */
    if (!(w->publisher =
              nudgel_publisher_new(conf, nudgel_lifecycle_published, NULL, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    nudgel_lifecycle_opts_t lo = {
        .publisher = w->publisher,
        .status_topic = nudgel_worker_topic(w->nw, NUDGEL_TOPIC_STATUS),
        .dlq_topic = nudgel_worker_topic(w->nw, NUDGEL_TOPIC_WEBHOOKS_DLQ),
        .finished = job_finished,
        .fatal = on_fatal,
        .opaque = w,
        .metrics = nudgel_worker_fleet_metrics(w->nw),
    };
    if (!lo.status_topic || !lo.dlq_topic || !(w->lifecycle = nudgel_lifecycle_new(&lo))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    if ((err = nudgel_publisher_attach(w->publisher, w->loop)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "publisher: cannot go on the loop: %s", nudgel_strerror(err));
        return err;
    }
    w->ready_kafka = nudgel_readiness_add(nudgel_worker_readiness(w->nw), "kafka",
                                          "no statistics from the consumer yet");
    nudgel_consumer_opts_t copts = {
        .fetch_wait_ms = (int)nudgel_conf_get_int(conf, "webhooks.fetch_wait_ms"),
    };
    if (!(w->consumer =
              nudgel_consumer_new_opts(conf, nudgel_conf_get_str(conf, "webhooks.group_id"),
                                       subscribed, count, &copts, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    nudgel_consumer_report_to(w->consumer, nudgel_worker_fleet_metrics(w->nw), subscribed, count);
    return NUDGEL_OK;
}

/*
 * A keyring that cannot open the secrets already stored would fail every
 * delivery: refused before Kafka is joined. Postgres down or the table not
 * readable: the check waits for the next start (postgres_open() decides
 * about Postgres).
 */
static nudgel_err_t keyring_check_at_start(worker_t *w, const nudgel_conf_t *conf, char *errstr,
                                           size_t errstr_size)
{
    char inner[512];
    PGconn *conn = nudgel_pg_connect(nudgel_conf_get_str(conf, "pg.dsn"), PROGRAM,
                                     (int)nudgel_conf_get_int(conf, "pg.connect_timeout_s"), inner,
                                     sizeof(inner));
    if (!conn)
        return NUDGEL_OK;
    nudgel_err_t err = nudgel_keyring_check_stored(conn, w->box, nudgel_keyring_conf_key(conf),
                                                   true, inner, sizeof(inner));
    PQfinish(conn);
    if (err == NUDGEL_ERR_CONFIG) {
        snprintf(errstr, errstr_size, "%s", inner);
        return err;
    }
    if (err != NUDGEL_OK)
        nudgel_log_warn("the keyring is not checked against stored secrets: %s", inner);
    return NUDGEL_OK;
}

static nudgel_err_t setup(nudgel_worker_t *nw, void **ctx, char *errstr, size_t errstr_size)
{
    const nudgel_conf_t *conf = nudgel_worker_conf(nw);
    char inner[400];
    nudgel_err_t err;
    worker_t *w = calloc(1, sizeof(*w)); /* large (hash tables): not on the stack */
    if (!w) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    *ctx = w; /* teardown frees what a failed setup leaves */
    w->nw = nw;
    w->loop = nudgel_worker_loop(nw);
    if ((err = settings_read(conf, &w->s, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    w->log_answers = (nudgel_log_ratelimit_t)NUDGEL_LOG_RATELIMIT_INIT("webhook error answers",
                                                                       LOG_LIMIT_PER_S, 1000);
    w->log_dead = (nudgel_log_ratelimit_t)NUDGEL_LOG_RATELIMIT_INIT("webhook dead letters",
                                                                    LOG_LIMIT_PER_S, 1000);
    if (!endpoints_open(w) || !guard_open(w)) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    if (nudgel_ssrf_policy_new(nudgel_conf_get_bool(conf, "webhooks.ssrf_guard"),
                               nudgel_conf_get_str(conf, "webhooks.ssrf_allow_cidrs"), &w->ssrf,
                               inner, sizeof(inner)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "webhooks.ssrf_allow_cidrs: %s", inner);
        return NUDGEL_ERR_CONFIG;
    }
    if (!nudgel_conf_get_bool(conf, "webhooks.ssrf_guard"))
        nudgel_log_warn("the SSRF guard is OFF (webhooks.ssrf_guard=false): never in production");
    if ((err = nudgel_secretbox_from_conf(conf, &w->box, errstr, errstr_size)) != NUDGEL_OK ||
        (err = keyring_check_at_start(w, conf, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    if (!register_metrics(w, nudgel_worker_metrics(nw))) {
        snprintf(errstr, errstr_size, "metrics: cannot register the families");
        return NUDGEL_ERR_NO_MEMORY;
    }
    if ((err = kafka_open(w, conf, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    if (!(w->http =
              nudgel_http_new((long)nudgel_conf_get_int(conf, "webhooks.max_host_connections"),
                              errstr, errstr_size)))
        return NUDGEL_ERR_NO_MEMORY;
    if ((err = nudgel_http_attach(w->http, w->loop)) != NUDGEL_OK ||
        (err = nudgel_batchq_new(CLAIM_BATCH_MAX, &w->claimq)) != NUDGEL_OK ||
        (err = nudgel_batchq_new(NUDGEL_BATCHQ_CAPACITY_MAX, &w->outcomes)) != NUDGEL_OK ||
        (err = nudgel_batchq_new(NUDGEL_BATCHQ_CAPACITY_MAX, &w->loadq)) != NUDGEL_OK ||
        (err = nudgel_batchq_new(NUDGEL_BATCHQ_CAPACITY_MAX, &w->disableq)) != NUDGEL_OK ||
        !(w->flush_timer = nudgel_timer_new(w->loop, flush_timer, w)) ||
        !(w->lane_timer = nudgel_timer_new(w->loop, lanes_timer, w))) {
        snprintf(errstr, errstr_size, "setting up: %s",
                 nudgel_strerror(err != NUDGEL_OK ? err : NUDGEL_ERR_NO_MEMORY));
        return err != NUDGEL_OK ? err : NUDGEL_ERR_NO_MEMORY;
    }
    /* Postgres pauses intake until its three connections are up. */
    if ((err = postgres_open(w, conf, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    if ((err = nudgel_consumer_attach(w->consumer, w->loop, intake_ready, w)) != NUDGEL_OK ||
        (err = nudgel_loop_add_hook(w->loop, pump, w)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "setting up the loop: %s", nudgel_strerror(err));
        return err;
    }
    nudgel_log_info("delivering %s", nudgel_worker_topic(nw, NUDGEL_TOPIC_WEBHOOKS));
    return NUDGEL_OK;
}

/* SIGTERM: no new jobs; what is in hand goes on, outcomes are written at once. */
static void drain(void *ctx)
{
    worker_t *w = ctx;
    w->draining = true;
    nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_SHUTDOWN);
    flush_maybe(w);
}

static size_t in_flight(void *ctx)
{
    worker_t *w = ctx;
    return nudgel_consumer_in_flight(w->consumer);
}

/* SIGHUP: the settings (timeouts, caches, limits, schedule); the rest at the next restart. */
static nudgel_err_t reload(void *ctx, const nudgel_conf_t *next, char *errstr, size_t errstr_size)
{
    worker_t *w = ctx;
    settings_t s;
    nudgel_err_t err = settings_read(next, &s, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    const nudgel_conf_t *cur = nudgel_worker_conf(w->nw);
    for (size_t i = 0; restart_keys[i]; i++) {
        const char *a = nudgel_conf_get_str(cur, restart_keys[i]);
        const char *b = nudgel_conf_get_str(next, restart_keys[i]);
        if ((a || b) && (!a || !b || strcmp(a, b) != 0))
            nudgel_log_warn("SIGHUP: %s changes at the next restart", restart_keys[i]);
    }
    w->s = s; /* endpoint defaults apply as rows are read again; caches shrink as they fill */
    return NUDGEL_OK;
}

static void teardown(void *ctx, bool drained)
{
    worker_t *w = ctx;
    (void)drained;
    if (!w)
        return;
    w->tearing_down = true;
    nudgel_http_destroy(w->http); /* requests in flight end here, unrecorded */
    postgres_close(w);
    nudgel_publisher_destroy(w->publisher, 10000); /* acknowledgements still finish jobs */
    if (w->consumer)
        abandon_jobs(w);
    nudgel_consumer_close(w->consumer);
    nudgel_timer_free(w->flush_timer);
    nudgel_timer_free(w->lane_timer);
    endpoints_free(w);
    guard_free(w);
    nudgel_log_ratelimit_flush(&w->log_answers, NUDGEL_LOG_WARN);
    nudgel_log_ratelimit_flush(&w->log_dead, NUDGEL_LOG_WARN);
    nudgel_batchq_free(w->claimq);
    nudgel_batchq_free(w->outcomes);
    nudgel_batchq_free(w->loadq);
    nudgel_batchq_free(w->disableq);
    free(w->flush_sent);
    nudgel_lifecycle_free(w->lifecycle);
    nudgel_ssrf_policy_destroy(w->ssrf);
    nudgel_secretbox_destroy(w->box);
    free(w);
}

/* --check-config and every start: the schedule, the SSRF allow list, the keyring. */
static void check(const nudgel_conf_t *conf, nudgel_conf_check_t *chk)
{
    settings_t s;
    char errstr[512];
    nudgel_ssrf_policy_t *ssrf = NULL;
    if (settings_read(conf, &s, errstr, sizeof(errstr)) != NUDGEL_OK)
        nudgel_conf_check_add(chk, NUDGEL_ERR_CONFIG, "%s", errstr);
    if (nudgel_ssrf_policy_new(nudgel_conf_get_bool(conf, "webhooks.ssrf_guard"),
                               nudgel_conf_get_str(conf, "webhooks.ssrf_allow_cidrs"), &ssrf,
                               errstr, sizeof(errstr)) != NUDGEL_OK)
        nudgel_conf_check_add(chk, NUDGEL_ERR_CONFIG, "webhooks.ssrf_allow_cidrs: %s", errstr);
    nudgel_ssrf_policy_destroy(ssrf);
    nudgel_keyring_check_conf(conf, true, chk);
}

/* --check-config=connect: the keyring opens a stored secret of every key id. */
static void probe(const nudgel_conf_t *conf, nudgel_conf_check_t *chk)
{
    nudgel_keyring_probe(conf, PROGRAM, chk);
}

static const nudgel_conf_entry_t *const tables[] = {nudgel_consumer_conf, nudgel_secretbox_conf,
                                                    webhooks_table, NULL};

static const nudgel_role_t role = {
    .program = PROGRAM,
    .summary = summary,
    .tables = tables,
    .metrics_port_default = 9465,
    .drain_timeout_key = "webhooks.drain_timeout_ms",
    .uses_postgres = true,
    .check = check,
    .probe = probe,
    .setup = setup,
    .drain = drain,
    .in_flight = in_flight,
    .reload = reload,
    .teardown = teardown,
};

int main(int argc, char **argv)
{
    return nudgel_worker_main(&role, argc, argv);
}
