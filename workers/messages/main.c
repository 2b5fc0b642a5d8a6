/*
 * nudgel-messages — the messages worker on the shared skeleton
 * (nudgel/worker.h): its configuration table, its role table, and the wiring
 * of its stages onto the event loop (setup, drain, reload, teardown). What
 * each stage does, and a job's path through them, is told in messages.h.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#include "messages.h"

static const nudgel_conf_entry_t messages_table[] = {
    {"messages.group_id", NUDGEL_CONF_STRING, "nudgel-messages", 0, 0, NULL, 0,
     "Kafka consumer group of the messages workers on the jobs topic; the retry tiers are "
     "consumed in a second group named after it with \".retry\" appended."},
    {"messages.gateways_file", NUDGEL_CONF_STRING, "config/gateways.example.json", 0, 0, NULL, 0,
     "JSON file of gateways and routes (see config/gateways.example.json)."},
    {"messages.worker_id", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0,
     "Claim owner name; default host-pid-start time (must be unique per process)."},
    {"messages.claim_stale_ms", NUDGEL_CONF_INT, "30000", 1000, 3600000, NULL, 0,
     "A claim older than this is taken over (longer than the gateway timeout): a job never "
     "handed to its gateway is then sent by the new owner without doubt, one whose request was "
     "out is an unknown outcome (the gateway's unknown_outcome)."},
    {"messages.validity_ms", NUDGEL_CONF_INT, "3600000", 1000, 604800000, NULL, 0,
     "How long after created_at a job without expires_at may still be sent."},
    {"messages.max_in_flight", NUDGEL_CONF_INT, "2000", 1, 100000, NULL, 0,
     "Jobs in flight in this process; at the cap it takes no more until some finish."},
    {"messages.callback_url", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0,
     "Base URL of the delivery-report receiver (nudgel-dlr), e.g. https://dlr.example.com: "
     "gateways that take a URL per message (Infobip: notifyUrl) get "
     "<base>/v1/dlr/<gateway>/<token>, the token of the gateway's \"dlr\" object (token_env "
     "or token_file, read only when this is set); a gateway without one gets none. "
     "Africa's Talking's callback URL is set in its dashboard."},
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
    {"messages.template_cache_max", NUDGEL_CONF_INT, "10000", 1000, 10000000, NULL, 0,
     "Templates (or their absence) cached at most; beyond it the least recently used one "
     "is dropped. At least a claim batch's worth (1000)."},
    {"messages.pg_reconnect_max_ms", NUDGEL_CONF_INT, "5000", 100, 600000, NULL, 0,
     "Longest wait between reconnect attempts while Postgres is unreachable."},
    {"messages.startup_probe", NUDGEL_CONF_BOOL, "true", 0, 0, NULL, 0,
     "At start-up, one authenticated account read per gateway (Infobip GET "
     "/account/1/balance, Africa's Talking GET /version1/user; generic gateways are not "
     "probed): a gateway that refuses its key (401/403) stops the start naming the key's "
     "source; one that cannot be reached is only logged."},
    {"messages.drain_timeout_ms", NUDGEL_CONF_INT, "20000", 0, 600000, NULL, 0,
     "On SIGTERM, how long to wait for the answers of requests already at a gateway (recorded "
     "and published) before leaving the group; jobs not yet sent are handed back at once. "
     "Keep it above the gateways' timeout_ms."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

/* Keys read once at start-up: a SIGHUP that changes them says so. */
static const char *const restart_keys[] = {
    "messages.group_id",
    "messages.gateways_file",
    "messages.worker_id",
    "messages.max_in_flight",
    "messages.callback_url",
    "messages.breaker_window",
    "messages.pg_reconnect_max_ms",
};

void kick(worker_t *w)
{
    nudgel_loop_again(w->loop);
}

/* messages.retry_delays_ms: one delay per retry tier, comma-separated. */
static nudgel_err_t parse_delays(const nudgel_conf_t *conf, int tiers, int64_t *out, char *errstr,
                                 size_t errstr_size)
{
    const char *delays = nudgel_conf_get_str(conf, "messages.retry_delays_ms");
    char *end = NULL;
    for (int i = 0; i < tiers; i++) {
        out[i] = strtoll(delays, &end, 10);
        if (end == delays || out[i] < 0 || (*end != ',' && *end != '\0') ||
            (*end == '\0' && i != tiers - 1) || (*end == ',' && i == tiers - 1)) {
            snprintf(errstr, errstr_size,
                     "messages.retry_delays_ms: expected %d comma-separated milliseconds", tiers);
            return NUDGEL_ERR_CONFIG;
        }
        delays = end + 1;
    }
    return NUDGEL_OK;
}

/* The settings a SIGHUP may change (validated first, then applied at once). */
static void apply_live_settings(worker_t *w, const nudgel_conf_t *conf, const int64_t *delays)
{
    memcpy(w->tier_delay_ms, delays, sizeof(w->tier_delay_ms[0]) * (size_t)w->tiers);
    w->stale_ms = nudgel_conf_get_int(conf, "messages.claim_stale_ms");
    w->validity_ms = nudgel_conf_get_int(conf, "messages.validity_ms");
    w->gateway_max_in_flight = (size_t)nudgel_conf_get_int(conf, "messages.gateway_max_in_flight");
    w->template_ttl_us = nudgel_conf_get_int(conf, "messages.template_cache_ms") * 1000;
    w->template_max = (size_t)nudgel_conf_get_int(conf, "messages.template_cache_max");
    w->tenant_limits_every_us =
        nudgel_conf_get_int(conf, "messages.tenant_limits_refresh_ms") * 1000;
    int64_t tenant_rate = nudgel_conf_get_int(conf, "messages.tenant_rate_per_second");
    w->tenant_defaults = (nudgel_tenant_limits_t){
        .max_in_flight = (uint32_t)nudgel_conf_get_int(conf, "messages.tenant_max_in_flight"),
        .rate = tenant_rate > 0 ? (double)tenant_rate : NUDGEL_THROTTLE_RATE_MAX,
        .burst = tenant_rate > 0 ? (uint32_t)tenant_rate : NUDGEL_THROTTLE_BURST_MAX,
    };
}

/* Everything read once from the start-up configuration. */
static nudgel_err_t read_settings(worker_t *w, char *errstr, size_t errstr_size)
{
    const nudgel_conf_t *conf = w->conf;
    char hostname[64] = "host";
    gethostname(hostname, sizeof(hostname) - 1);
    const char *id = nudgel_conf_get_str(conf, "messages.worker_id");
    if (id)
        snprintf(w->worker_id, sizeof(w->worker_id), "%s", id);
    else
        snprintf(w->worker_id, sizeof(w->worker_id), "%.40s-%d-%lld", hostname, (int)getpid(),
                 (long long)nudgel_now_unix_ms());
    const nudgel_topic_spec_t *tiers[TIERS_MAX];
    size_t n = nudgel_topics_retry_tiers("messages", tiers, TIERS_MAX);
    w->tiers = (int)(n < TIERS_MAX ? n : TIERS_MAX);
    w->topic_jobs = nudgel_worker_topic(w->rt, NUDGEL_TOPIC_MESSAGES);
    w->topic_status = nudgel_worker_topic(w->rt, NUDGEL_TOPIC_STATUS);
    w->topic_dlq = nudgel_worker_topic(w->rt, NUDGEL_TOPIC_MESSAGES_DLQ);
    bool named = w->tiers > 0 && w->topic_jobs && w->topic_status && w->topic_dlq;
    for (int i = 0; i < w->tiers && named; i++)
        named = (w->topic_retry[i] = nudgel_worker_topic(w->rt, tiers[i]->name)) != NULL;
    if (!named) {
        snprintf(errstr, errstr_size, "topics: out of memory naming them");
        return NUDGEL_ERR_NO_MEMORY;
    }
    int64_t delays[TIERS_MAX];
    if (parse_delays(conf, w->tiers, delays, errstr, errstr_size) != NUDGEL_OK)
        return NUDGEL_ERR_CONFIG;
    apply_live_settings(w, conf, delays);
    w->max_in_flight = (size_t)nudgel_conf_get_int(conf, "messages.max_in_flight");
    w->callback_url = nudgel_conf_get_str(conf, "messages.callback_url");
    return NUDGEL_OK;
}

static void register_metrics(worker_t *w)
{
    nudgel_metrics_t *m = nudgel_worker_metrics(w->rt);
    static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    static const double batch_sizes[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
    w->m_outcomes =
        nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "nudgel_messages_outcomes_total",
                                "Jobs by outcome.", "outcome", NULL, 0);
    w->m_in_flight = nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "nudgel_messages_in_flight",
                                             "Jobs in flight.", NULL, NULL, 0);
    w->m_submit_latency = nudgel_metrics_register(
        m, NUDGEL_METRIC_HISTOGRAM, "nudgel_messages_gateway_seconds",
        "Gateway submission latency.", NULL, buckets, sizeof(buckets) / sizeof(buckets[0]));
    w->m_pg_batch =
        nudgel_metrics_register(m, NUDGEL_METRIC_HISTOGRAM, "nudgel_messages_postgres_batch_size",
                                "Jobs per batched Postgres statement.", "statement", batch_sizes,
                                sizeof(batch_sizes) / sizeof(batch_sizes[0]));
    w->m_waiting = nudgel_metrics_register(
        m, NUDGEL_METRIC_GAUGE, "nudgel_messages_waiting",
        "Jobs waiting: claim, recipient (behind an earlier job to the same number), tenant "
        "(at its limits), outcome (for the batched write).",
        "queue", NULL, 0);
    w->m_breaker_state = nudgel_metrics_register(
        m, NUDGEL_METRIC_GAUGE, "nudgel_messages_breaker_state",
        "Circuit breaker per gateway: 0 closed, 1 open, 2 half-open (a probe may go).", "gateway",
        NULL, 0);
    w->m_auth_failures = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_messages_gateway_auth_failures_total",
        "Answers in which a gateway refused our credentials (account-level 401/403).", "gateway",
        NULL, 0);
    w->m_unknown = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_messages_outcome_unknown_total",
        "Submissions whose outcome is unknown (an answer lost or unreadable after the request "
        "went out, or a crashed worker's claim with its request at the gateway), by gateway.",
        "gateway", NULL, 0);
    w->m_unknown_held = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_messages_outcome_unknown_held_total",
        "Unknown outcomes held (unknown_outcome=hold): final failed with error outcome_unknown, "
        "never resent; the rest were sent again.",
        "gateway", NULL, 0);
    /* Per configured gateway, announced by gateway_lanes_open(). */
    static const char *const gw_outcome[] = {"gateway", "outcome", NULL};
    static const double e2e_buckets[] = {0.05, 0.1, 0.25, 0.5, 1,   2.5, 5,
                                         10,   30,  60,   300, 900, 3600};
    w->m_gw_request = nudgel_metrics_register_labels(
        m, NUDGEL_METRIC_HISTOGRAM, "nudgel_gateway_request_seconds",
        "Carrier requests by gateway and outcome (accepted, rejected, failed, retry, throttled, "
        "auth_failed, timeout, unknown), from the request to its answer.",
        gw_outcome, buckets, sizeof(buckets) / sizeof(buckets[0]));
    w->m_end_to_end = nudgel_metrics_register(
        m, NUDGEL_METRIC_HISTOGRAM, "nudgel_messages_end_to_end_seconds",
        "From a job's created_at to its outcome at a gateway recorded (sent or final), by gateway.",
        "gateway", e2e_buckets, sizeof(e2e_buckets) / sizeof(e2e_buckets[0]));
    w->m_throttle_tokens = nudgel_metrics_register(
        m, NUDGEL_METRIC_GAUGE, "nudgel_messages_throttle_tokens",
        "Tokens in each gateway lane's bucket (this worker's share of the gateway's TPS), as of "
        "the lanes' last turn.",
        "gateway", NULL, 0);
    w->m_pg_up = nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "nudgel_messages_postgres_up",
                                         "1 while Postgres is reachable, 0 while intake is paused "
                                         "for it.",
                                         NULL, NULL, 0);
    /* The outcomes the stages count, at zero from start-up. */
    static const char *const outcomes[] = {"sent",
                                           "failed",
                                           "rejected",
                                           "malformed",
                                           "deduplicated",
                                           "replayed",
                                           "retried",
                                           "waiting_for_claim",
                                           "handed_back",
                                           "hopped_on",
                                           "refused",
                                           "maybe_accepted",
                                           NULL};
    for (size_t i = 0; outcomes[i]; i++)
        nudgel_metric_touch(w->m_outcomes, outcomes[i]);
    nudgel_metric_touch(w->m_submit_latency, NULL);
    nudgel_metric_touch(w->m_in_flight, NULL);
}

/* The queues, maps and batches the stages share. */
static nudgel_err_t make_structures(worker_t *w, char *errstr, size_t errstr_size)
{
    size_t queue_max = w->max_in_flight * 4 + 4096;
    if (!(w->recipients = nudgel_keyq_new()) || !(w->tenant_waits = nudgel_keyq_new()) ||
        !templates_open(w) || !(w->claim = calloc(1, sizeof(*w->claim))) ||
        !(w->record = calloc(1, sizeof(*w->record))) || !(w->hand = calloc(1, sizeof(*w->hand))) ||
        nudgel_batchq_new(queue_max, &w->to_claim) != NUDGEL_OK ||
        nudgel_batchq_new(queue_max, &w->to_hand) != NUDGEL_OK ||
        nudgel_batchq_new(queue_max, &w->to_record) != NUDGEL_OK ||
        nudgel_batchq_new(queue_max, &w->recipient_ready) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    if (nudgel_throttle_tenants_new(w->max_in_flight * 2 + 1024, &w->tenant_defaults, &w->tenants,
                                    errstr, errstr_size) != NUDGEL_OK)
        return NUDGEL_ERR_CONFIG;
    return NUDGEL_OK;
}

/* The loop's hooks, in the order a job meets the stages within one turn. */
static nudgel_err_t add_hooks(worker_t *w, char *errstr, size_t errstr_size)
{
    /* handover_pump before outcomes_pump: a mark goes ahead of the next outcome batch. */
    nudgel_loop_hook_fn *const hooks[] = {intake_turn,   claims_pump,   gates_tick,  drain_lanes,
                                          handover_pump, outcomes_pump, lookups_pump};
    for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++) {
        if (nudgel_loop_add_hook(w->loop, hooks[i], w) != NUDGEL_OK) {
            snprintf(errstr, errstr_size, "out of memory");
            return NUDGEL_ERR_NO_MEMORY;
        }
    }
    return NUDGEL_OK;
}

static nudgel_err_t messages_setup(nudgel_worker_t *rt, void **ctx, char *errstr,
                                   size_t errstr_size)
{
    worker_t *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    *ctx = w; /* teardown frees what a failed setup leaves */
    w->rt = rt;
    w->loop = nudgel_worker_loop(rt);
    w->conf = nudgel_worker_conf(rt);
    w->malformed_log =
        (nudgel_log_ratelimit_t)NUDGEL_LOG_RATELIMIT_INIT("malformed jobs", 10, 1000);
    w->dlq_log = (nudgel_log_ratelimit_t)NUDGEL_LOG_RATELIMIT_INIT("dead letters", 10, 1000);
    nudgel_err_t err = read_settings(w, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    register_metrics(w);
    nudgel_fleet_metrics_reasons(nudgel_worker_fleet_metrics(rt), nudgel_messages_failure_reasons);
    /* Postgres before the consumers: a start-up without it ends before they join. */
    if ((err = make_structures(w, errstr, errstr_size)) != NUDGEL_OK ||
        (err = gates_open(w, errstr, errstr_size)) != NUDGEL_OK ||
        (err = gateway_lanes_open(w, errstr, errstr_size)) != NUDGEL_OK ||
        (err = gateway_probe_at_start(w, errstr, errstr_size)) != NUDGEL_OK ||
        (err = postgres_open(w, errstr, errstr_size)) != NUDGEL_OK ||
        (err = intake_open(w, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    if (!(w->http = nudgel_http_new(256, errstr, errstr_size)) ||
        nudgel_http_attach(w->http, w->loop) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "HTTP client: cannot go on the event loop");
        return NUDGEL_ERR_NO_MEMORY;
    }
    /* The lifecycle ignores the publisher's own opaque: each publish carries its job. */
    if (!(w->publisher =
              nudgel_publisher_new(w->conf, nudgel_lifecycle_published, NULL, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    if (nudgel_publisher_attach(w->publisher, w->loop) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "publisher: cannot go on the event loop");
        return NUDGEL_ERR_IO;
    }
    nudgel_lifecycle_opts_t lopts = {
        .publisher = w->publisher,
        .status_topic = w->topic_status,
        .dlq_topic = w->topic_dlq,
        .finished = msg_finished,
        .fatal = msg_fatal,
        .opaque = w,
        .metrics = nudgel_worker_fleet_metrics(w->rt),
    };
    if (!(w->lc = nudgel_lifecycle_new(&lopts))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    if ((err = tenant_limits_open(w, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    return add_hooks(w, errstr, errstr_size);
}

/*
 * SIGTERM (DESIGN §5 Shutdown): intake stops first; then every stage hands
 * back the jobs it holds that were never handed to a gateway (claims.c,
 * gates.c, gateway_lanes.c, handover.c: claims released, offsets not
 * stored) while the requests already at a gateway are waited for and their
 * outcomes recorded and published as usual. The skeleton ends the drain
 * when nothing is in flight, or at messages.drain_timeout_ms.
 */
static void messages_drain(void *ctx)
{
    worker_t *w = ctx;
    size_t at_gateways = 0;
    for (size_t i = 0; i < w->lane_count; i++)
        at_gateways += w->lanes[i].in_flight;
    w->draining = true;
    intake_drain(w);
    nudgel_log_info("draining: %zu request(s) at gateways or being handed over are waited for; "
                    "jobs not yet handed over go back to the next owner",
                    at_gateways);
    kick(w);
}

static size_t messages_in_flight(void *ctx)
{
    return intake_in_flight(ctx);
}

/*
 * SIGHUP: what can change while jobs are in flight — retry delays, claim
 * staleness, validity, the per-gateway in-flight cap, the breakers' ratio,
 * minimum and open time, the template cache, the tenant defaults and the
 * refresh period of nudgel.tenant_limits (read again at once). The rest is
 * read at start-up only; a change to it is named in the log.
 */
static nudgel_err_t messages_reload(void *ctx, const nudgel_conf_t *next, char *errstr,
                                    size_t errstr_size)
{
    worker_t *w = ctx;
    int64_t delays[TIERS_MAX];
    if (parse_delays(next, w->tiers, delays, errstr, errstr_size) != NUDGEL_OK)
        return NUDGEL_ERR_CONFIG;
    int64_t every_us = w->tenant_limits_every_us;
    apply_live_settings(w, next, delays);
    gateway_lanes_reload(w, next);
    templates_trim(w);
    if (every_us != w->tenant_limits_every_us)
        nudgel_timer_arm_in(w->limits_timer, w->tenant_limits_every_us);
    tenant_limits_refresh(w); /* rows without a value take the new defaults */
    gates_limits_changed(w);
    const nudgel_conf_t *now = nudgel_worker_conf(w->rt);
    for (size_t i = 0; i < sizeof(restart_keys) / sizeof(restart_keys[0]); i++) {
        const char *a = nudgel_conf_get_str(now, restart_keys[i]);
        const char *b = nudgel_conf_get_str(next, restart_keys[i]);
        if ((a || b) && (!a || !b || strcmp(a, b) != 0))
            nudgel_log_warn("SIGHUP: %s changes at the next restart", restart_keys[i]);
    }
    kick(w);
    return NUDGEL_OK;
}

static void messages_teardown(void *ctx, bool drained)
{
    worker_t *w = ctx;
    if (!w)
        return;
    (void)drained;
    /* What is in flight is let go, never waited for: curl and Postgres first
     * (no callbacks), then the publisher (its acknowledgements still finish
     * jobs), then every job left is abandoned and the groups are left. */
    nudgel_http_destroy(w->http);
    postgres_close(w);
    nudgel_publisher_destroy(w->publisher, 10000);
    if (w->lc)
        msg_abandon_all(w);
    intake_close(w);
    nudgel_lifecycle_free(w->lc);
    gateway_lanes_close(w);
    templates_close(w);
    nudgel_timer_free(w->gates_timer);
    nudgel_timer_free(w->limits_timer);
    nudgel_keyq_free(w->recipients);
    nudgel_keyq_free(w->tenant_waits);
    nudgel_throttle_tenants_free(w->tenants);
    nudgel_batchq_free(w->to_claim);
    nudgel_batchq_free(w->to_record);
    nudgel_batchq_free(w->to_hand);
    nudgel_batchq_free(w->recipient_ready);
    free(w->tenant_limits);
    free(w->claim);
    free(w->record);
    free(w->hand);
    nudgel_log_ratelimit_flush(&w->malformed_log, NUDGEL_LOG_WARN);
    nudgel_log_ratelimit_flush(&w->dlq_log, NUDGEL_LOG_WARN);
    free(w);
}

/* --check-config and every start: the gateways file and what it names, the retry delays. */
static void messages_check(const nudgel_conf_t *conf, nudgel_conf_check_t *check)
{
    const nudgel_topic_spec_t *tiers[TIERS_MAX];
    int64_t delays[TIERS_MAX];
    char errstr[256];
    size_t n = nudgel_topics_retry_tiers("messages", tiers, TIERS_MAX);
    if (parse_delays(conf, (int)(n < TIERS_MAX ? n : TIERS_MAX), delays, errstr, sizeof(errstr)) !=
        NUDGEL_OK)
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG, "%s", errstr);
    gateway_check(conf, check);
}

static const nudgel_conf_entry_t *const messages_tables[] = {nudgel_consumer_conf, messages_table,
                                                             NULL};

static const nudgel_role_t messages_role = {
    .program = PROGRAM,
    .summary = "The messages worker: claims each SMS job in Postgres, renders and routes it, "
               "submits it to its carrier gateway within the gateway's and the tenant's limits, "
               "records the outcome and publishes its status event (retry tiers and a "
               "dead-letter topic for the rest).",
    .tables = messages_tables,
    .metrics_port_default = 9464,
    .drain_timeout_key = "messages.drain_timeout_ms",
    .uses_postgres = true,
    .check = messages_check,
    .probe = gateway_probe_check,
    .setup = messages_setup,
    .drain = messages_drain,
    .in_flight = messages_in_flight,
    .reload = messages_reload,
    .teardown = messages_teardown,
};

int main(int argc, char **argv)
{
    return nudgel_worker_main(&messages_role, argc, argv);
}
