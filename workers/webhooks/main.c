/*
 * nudgel-webhooks — the webhook deliverer.
 *
 * One event loop:
 *
 *   Kafka consumer (nudgel.webhooks.v1 + its six retry tiers)
 *     → parse (malformed: dead letter + failed event)
 *     → claim in webhook_deliveries, a batch per poll (final: send nothing,
 *       re-emit its event; another delivery of the same event: skip)
 *     → endpoint (cached: URL, secrets opened with the keyring, limits)
 *     → SSRF guard (vetted resolutions cached per host, pinned with
 *       CURLOPT_RESOLVE)
 *     → the endpoint's lane: at most max_concurrency requests in flight and
 *       rate_limit_per_second; jobs over that wait in the lane's bounded
 *       queue, beyond it they go to the first retry tier — a slow endpoint
 *       never holds back the others
 *     → sign the exact body bytes (Standard Webhooks; both signatures while
 *       a rotated-out secret lives) → POST on curl multi
 *     → classify → attempt row + delivery row (batched, one transaction)
 *     → status event, retry hop or dead letter
 *     → the job's offset is stored once Kafka acknowledged all of them.
 *
 * Retries: attempt n fails → the schedule's n-th delay (±jitter), or later
 * when Retry-After says so, on the retry tier whose fixed delay fits it;
 * the tier's consumer pauses the partition until the head is due. The
 * attempt number is max(the job's nudgel-attempt header, attempts recorded)
 * + 1, so a job re-delivered after a crash never reuses an attempt number.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "deliver_db.h"
#include "nudgel/config.h"
#include "nudgel/consumer.h"
#include "nudgel/event.h"
#include "nudgel/http_admin.h"
#include "nudgel/http_client.h"
#include "nudgel/job.h"
#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/metrics.h"
#include "nudgel/pg.h"
#include "nudgel/publisher.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"
#include "nudgel/uuid.h"
#include "nudgel/webhooks/outcome.h"
#include "nudgel/webhooks/retry_schedule.h"
#include "nudgel/webhooks/secretbox.h"
#include "nudgel/webhooks/signature.h"
#include "nudgel/webhooks/ssrf.h"

#define PROGRAM           "nudgel-webhooks"
#define TIERS             6
#define SNIPPET_BYTES     1024
#define CLAIM_BATCH_MAX   512
#define HASH_BUCKETS      4096
#define EVENT_SOURCE      "/nudgel/webhooks"
#define HTTP_PHASE_US     10000 /* longest HTTP phase of one turn of the loop */
#define PG_BACKOFF_MAX_MS 1000  /* longest wait between reconnect attempts */

/* The contract's retry-tier topics and their fixed delays (core/src/topics.c). */
static const char *const tier_suffix[TIERS] = {"5s", "5m", "30m", "2h", "5h", "10h"};
static const int64_t tier_delay_ms[TIERS] = {5000, 300000, 1800000, 7200000, 18000000, 36000000};

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

typedef struct worker worker_t;
typedef struct endpoint endpoint_t;

typedef enum job_stage {
    STAGE_CLAIM,   /* waiting for the batch claim */
    STAGE_LANE,    /* waiting in its endpoint's lane */
    STAGE_HTTP,    /* request in flight */
    STAGE_FLUSH,   /* outcome waiting to be written */
    STAGE_PUBLISH, /* publishes waiting for acknowledgements */
} job_stage_t;

/* What to publish once a job's rows are durable. */
typedef enum job_end {
    END_NONE,      /* nothing (a duplicate) */
    END_DELIVERED, /* delivered event */
    END_FAILED,    /* failed event (permanent) */
    END_RETRY,     /* retry hop */
    END_EXHAUSTED, /* exhausted event + dead letter */
    END_REQUEUE,   /* saturated endpoint: first retry tier, no attempt counted */
    END_MALFORMED, /* dead letter + failed event */
} job_end_t;

/* One job from poll to done. */
typedef struct wjob {
    worker_t *w;
    nudgel_job_ref_t *ref;
    nudgel_webhook_job_t job;
    bool parsed;
    job_stage_t stage;
    int header_attempts;   /* nudgel-attempt: attempts made before this hop */
    int attempt;           /* number of the attempt this job makes (1-based) */
    int64_t first_seen_ms; /* nudgel-first-seen, or now */
    char traceparent[64];
    endpoint_t *ep;
    /* outcome */
    job_end_t end;
    const char *delivery_status; /* row status after the outcome */
    long status_code;
    char error_class[32];
    char error_message[640];
    bool permanent;
    int64_t next_attempt_ms;
    bool endpoint_disabled_now; /* this job's answer disabled the endpoint */
    char disabled_reason[256];
    bool record_attempt;
    int latency_ms;
    char *snippet;
    /* publishing */
    int pending;
    bool publish_failed;
    struct wjob *next_in_lane;
    struct wjob *prev_all, *next_all; /* every job alive, to free at exit */
    struct wjob *next_by_id;          /* the worker's jobs by delivery id */
    bool indexed;
} wjob_t;

/* A registered endpoint: its row (cached) and its lane. */
struct endpoint {
    char id[NUDGEL_UUID_STR_LEN + 1];
    bool loaded, found, enabled;
    char tenant_id[72];
    char *url;
    nudgel_wh_key_t keys[2]; /* current, then the rotated-out one while it lives */
    size_t key_count;
    int64_t previous_expires_ms;
    bool secret_broken; /* the sealed secret does not open */
    char secret_error[600];
    int64_t loaded_us;
    int64_t success_noted_us; /* last success written to the row (at most once a second) */
    int64_t failure_noted_us; /* last failure in a flush (dedupes a batch's failures) */
    /* lane */
    size_t max_concurrency;
    double rate; /* requests per second; 0 = no limit */
    double tokens;
    int64_t tokens_us;
    size_t in_flight;
    wjob_t *head, *tail;
    size_t queued;
    bool active; /* on the worker's list of lanes with queued jobs */
    endpoint_t *next_active;
    endpoint_t *next; /* hash chain */
};

/* A vetted host (scheme://authority), reused for ssrf_cache_ms. */
typedef struct vetted {
    char *authority;
    nudgel_err_t err;
    nudgel_ssrf_verdict_t verdict;
    int64_t vetted_us;
    struct vetted *next;
} vetted_t;

/* A non-blocking Postgres connection with at most one statement (or pipeline) in flight. */
typedef struct wh_lane {
    const char *name;
    PGconn *conn;
    bool busy;     /* a statement is in flight */
    bool flushing; /* its bytes are not all sent yet */
    bool broken;   /* lost or left mid-statement: replaced at the next reconnect */
    int64_t sent_us;
} wh_lane_t;

struct worker {
    nudgel_conf_t *conf;
    nudgel_consumer_t *consumer;
    nudgel_publisher_t *publisher;
    nudgel_http_t *http;
    nudgel_secretbox_t *box;
    nudgel_ssrf_policy_t *ssrf;
    PGconn *pg;             /* blocking: endpoint rows, the payload column check */
    wh_lane_t claim_lane;   /* non-blocking: batched claims */
    wh_lane_t flush_lane;   /* non-blocking: batched outcomes (one pipeline) */
    bool pg_ok;             /* false: intake paused until a reconnect works */
    int64_t pg_retry_at_us; /* next reconnect attempt */
    int64_t pg_backoff_ms;  /* doubles up to PG_BACKOFF_MAX_MS */
    bool with_payload;
    char topic_jobs[256], topic_status[256], topic_dlq[256], topic_retry[TIERS][256];
    nudgel_retry_schedule_t schedule;
    long connect_ms, total_ms;
    size_t max_response, queue_max, max_in_flight, default_concurrency, flush_max;
    double default_rate;
    int64_t endpoint_cache_us, ssrf_cache_us, failing_window_ms, max_retry_after_ms, flush_us;
    endpoint_t *endpoints[HASH_BUCKETS];
    vetted_t *vetted[HASH_BUCKETS];
    endpoint_t *active; /* lanes with queued jobs */
    wjob_t
        *claims[2 * CLAIM_BATCH_MAX]; /* polled, waiting for the claim (a lost batch comes back) */
    size_t claim_count;
    wjob_t *claim_sent[CLAIM_BATCH_MAX]; /* the claim in flight */
    size_t claim_sent_n;
    wh_claim_t claim_rows[CLAIM_BATCH_MAX];
    wjob_t **flush_sent; /* the flush in flight */
    size_t flush_sent_n;
    wh_flush_call_t flush_call;
    wjob_t **outcomes; /* jobs waiting for the flush */
    size_t outcome_count, outcome_cap;
    int64_t last_flush_us;
    wjob_t *all;
    wjob_t *by_id[HASH_BUCKETS]; /* jobs in flight by (endpoint, event): each sent once */
    wjob_t *current;             /* the job just polled: the only one that may be handed back */
    size_t lane_waiting;
    nudgel_metrics_t *metrics;
    nudgel_metric_t *m_outcomes, *m_attempts, *m_latency, *m_in_flight, *m_queued, *m_claim_s,
        *m_flush_s;
};

static volatile sig_atomic_t stop_requested;
static bool fatal_stop;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* ---- jobs --------------------------------------------------------------- */

/*
 * Jobs in flight are indexed by (endpoint, event): a copy of one (the same
 * job re-delivered) or a second job for the same event and endpoint is a
 * duplicate while the first is in flight, and the first decides.
 */
static uint32_t index_bucket(const wjob_t *j)
{
    return (hash_str(j->job.event_id) ^ hash_str(j->job.endpoint_id)) % HASH_BUCKETS;
}

/* Another job of this process already holds @p j's (endpoint, event)? Else @p j does now. */
static bool index_holds(worker_t *w, wjob_t *j)
{
    wjob_t **head = &w->by_id[index_bucket(j)];
    for (wjob_t *o = *head; o; o = o->next_by_id)
        if (strcmp(o->job.event_id, j->job.event_id) == 0 &&
            strcmp(o->job.endpoint_id, j->job.endpoint_id) == 0)
            return true;
    j->next_by_id = *head;
    *head = j;
    j->indexed = true;
    return false;
}

static void index_remove(worker_t *w, wjob_t *j)
{
    wjob_t **link = &w->by_id[index_bucket(j)];
    while (*link && *link != j)
        link = &(*link)->next_by_id;
    if (*link)
        *link = j->next_by_id;
    j->indexed = false;
}

static void job_free(wjob_t *j)
{
    worker_t *w = j->w;
    if (j->indexed)
        index_remove(w, j);
    if (j->prev_all)
        j->prev_all->next_all = j->next_all;
    else
        w->all = j->next_all;
    if (j->next_all)
        j->next_all->prev_all = j->prev_all;
    if (j->parsed)
        nudgel_webhook_job_clear(&j->job);
    free(j->snippet);
    free(j);
}

/* The job is finished once every publish of it is acknowledged. */
static void job_release(wjob_t *j)
{
    if (j->pending > 0)
        return;
    worker_t *w = j->w;
    if (!j->publish_failed) {
        nudgel_consumer_done(w->consumer, j->ref);
    } else if (j == w->current) {
        nudgel_consumer_defer(w->consumer, j->ref, nudgel_now_unix_ms() + 1000);
    } else {
        nudgel_log_error("webhook job %s could not be finished durably; stopping so it is "
                         "re-delivered",
                         j->parsed ? j->job.id : "?");
        fatal_stop = true;
        stop_requested = 1;
        return; /* its offset never moves past it */
    }
    job_free(j);
}

static void on_published(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque)
{
    wjob_t *j = opaque;
    (void)cb_opaque;
    if (err) {
        nudgel_log_error("publish for webhook job %s failed: %s", j->parsed ? j->job.id : "?",
                         errstr);
        j->publish_failed = true;
    }
    j->pending--;
    job_release(j);
}

/* ---- events ------------------------------------------------------------- */

/*
 * A webhook status event for @p j: @p type_suffix "delivered", "failed",
 * "exhausted" or "endpoint_disabled". Fields the job lacks (a malformed one)
 * come from @p fallback_* arguments.
 */
static void publish_event(wjob_t *j, const char *type_suffix, const char *status, int attempt,
                          long status_code, const char *error_code, const char *error_message,
                          bool permanent, const char *disabled_reason, const char *delivery_id,
                          const char *tenant_id, const char *event_type, const char *event_id)
{
    worker_t *w = j->w;
    char type[64];
    snprintf(type, sizeof(type), "ai.nudgel.webhook.%s", type_suffix);
    json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "delivery_id", delivery_id,
                             "tenant_id", tenant_id, "event_type", event_type, "event_id", event_id,
                             "status", status, "attempt", attempt);
    if (!data) {
        j->publish_failed = true;
        return;
    }
    const char *endpoint_id = j->parsed ? j->job.endpoint_id : NULL;
    json_object_set_new(data, "endpoint_id", endpoint_id ? json_string(endpoint_id) : json_null());
    json_object_set_new(data, "status_code",
                        status_code >= 100 && status_code <= 599 ? json_integer(status_code)
                                                                 : json_null());
    if (error_code)
        json_object_set_new(data, "error",
                            json_pack("{s:s, s:s, s:b}", "code", error_code, "message",
                                      error_message ? error_message : "", "permanent", permanent));
    else
        json_object_set_new(data, "error", json_null());
    const char *url = j->ep && j->ep->url ? j->ep->url : (j->parsed ? j->job.url : NULL);
    if (url && strlen(url) <= 2048)
        json_object_set_new(data, "url", json_string(url));
    if (disabled_reason)
        json_object_set_new(data, "disabled_reason", json_string(disabled_reason));
    json_t *ev =
        nudgel_event_build(EVENT_SOURCE, type, delivery_id, tenant_id, attempt,
                           nudgel_now_unix_ms(), j->traceparent[0] ? j->traceparent : NULL, data);
    if (!ev) {
        j->publish_failed = true;
        return;
    }
    j->pending++;
    if (nudgel_publish_event(w->publisher, w->topic_status, tenant_id, ev,
                             j->traceparent[0] ? j->traceparent : NULL, j) != NUDGEL_OK) {
        j->pending--;
        j->publish_failed = true;
    }
}

static void job_event(wjob_t *j, const char *type_suffix, const char *status)
{
    publish_event(j, type_suffix, status, j->attempt, j->status_code,
                  j->error_class[0] ? j->error_class : NULL, j->error_message, j->permanent,
                  j->endpoint_disabled_now ? j->disabled_reason : NULL, j->job.id, j->job.tenant_id,
                  j->job.event_type, j->job.event_id);
}

static void publish_dlq(wjob_t *j, const char *reason)
{
    j->pending++;
    if (nudgel_publish_dlq(j->w->publisher, j->w->topic_dlq, nudgel_job_message(j->ref), reason,
                           j) != NUDGEL_OK) {
        j->pending--;
        j->publish_failed = true;
    }
}

/* The retry tier whose fixed delay is the largest not above @p delay_ms. */
static int tier_for(int64_t delay_ms)
{
    int t = 0;
    for (int i = 1; i < TIERS; i++)
        if (tier_delay_ms[i] <= delay_ms)
            t = i;
    return t;
}

static void publish_retry(wjob_t *j, int attempts_made, int64_t not_before_ms,
                          const char *last_error)
{
    worker_t *w = j->w;
    int64_t delay = not_before_ms - nudgel_now_unix_ms();
    j->pending++;
    if (nudgel_publish_retry(w->publisher, w->topic_retry[tier_for(delay)],
                             nudgel_job_message(j->ref), attempts_made, not_before_ms,
                             j->first_seen_ms, last_error, j) != NUDGEL_OK) {
        j->pending--;
        j->publish_failed = true;
    }
}

/* Publishes what the job's (now durable) outcome calls for, then releases it. */
static void job_publish(wjob_t *j)
{
    worker_t *w = j->w;
    char reason[800];
    j->stage = STAGE_PUBLISH;
    switch (j->end) {
    case END_NONE:
        break;
    case END_DELIVERED:
        job_event(j, "delivered", "delivered");
        break;
    case END_FAILED:
        job_event(j, "failed", j->delivery_status);
        break;
    case END_RETRY:
        snprintf(reason, sizeof(reason), "%s: %s", j->error_class, j->error_message);
        publish_retry(j, j->attempt, j->next_attempt_ms, reason);
        break;
    case END_EXHAUSTED:
        job_event(j, "exhausted", "exhausted");
        snprintf(reason, sizeof(reason), "retries exhausted after %d attempts: %s: %s", j->attempt,
                 j->error_class, j->error_message);
        publish_dlq(j, reason);
        break;
    case END_REQUEUE:
        publish_retry(j, j->header_attempts,
                      nudgel_now_unix_ms() + (w->schedule.count ? w->schedule.delays_ms[0] : 5000),
                      "endpoint_saturated: its queue is full");
        break;
    case END_MALFORMED:
        break; /* published where it was found */
    }
    if (j->endpoint_disabled_now)
        job_event(j, "endpoint_disabled", j->delivery_status);
    nudgel_metric_add(w->m_outcomes,
                      j->end == END_DELIVERED   ? "delivered"
                      : j->end == END_FAILED    ? "failed"
                      : j->end == END_RETRY     ? "retried"
                      : j->end == END_EXHAUSTED ? "exhausted"
                      : j->end == END_REQUEUE   ? "requeued"
                                                : "skipped",
                      1);
    job_release(j);
}

/* ---- the outcome batch -------------------------------------------------- */

static void outcome_add(wjob_t *j)
{
    worker_t *w = j->w;
    j->stage = STAGE_FLUSH;
    if (w->outcome_count == w->outcome_cap) {
        size_t cap = w->outcome_cap ? w->outcome_cap * 2 : 256;
        wjob_t **grown = realloc(w->outcomes, cap * sizeof(*grown));
        if (!grown) {
            nudgel_log_error("out of memory queueing an outcome; stopping");
            fatal_stop = true;
            stop_requested = 1;
            return;
        }
        w->outcomes = grown;
        w->outcome_cap = cap;
    }
    w->outcomes[w->outcome_count++] = j;
}

static json_t *nullable_str(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

/* ---- Postgres: lanes, outages ------------------------------------------ */

/* Postgres is unreachable (or a statement failed): pause intake; jobs in hand wait in their queues.
 */
static void postgres_down(worker_t *w, const char *errstr)
{
    if (w->pg_ok) {
        nudgel_log_error("%s; pausing intake", errstr);
        w->pg_backoff_ms = 100;
    }
    w->pg_ok = false;
    w->pg_retry_at_us = nudgel_mono_us() + w->pg_backoff_ms * 1000;
    nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_POSTGRES);
}

static PGconn *lane_connect(worker_t *w, char *errstr, size_t errstr_size)
{
    PGconn *c = nudgel_pg_connect(nudgel_conf_get_str(w->conf, "pg.dsn"), PROGRAM,
                                  (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s"), errstr,
                                  errstr_size);
    if (c && PQsetnonblocking(c, 1) != 0) {
        snprintf(errstr, errstr_size, "non-blocking mode: %s", PQerrorMessage(c));
        PQfinish(c);
        c = NULL;
    }
    return c;
}

/* While down: one reconnect attempt when due (back-off up to PG_BACKOFF_MAX_MS). */
static void postgres_revive(worker_t *w)
{
    char errstr[512];
    if (w->pg_ok || nudgel_mono_us() < w->pg_retry_at_us)
        return;
    if (PQstatus(w->pg) != CONNECTION_OK)
        PQreset(w->pg);
    bool all_ok = PQstatus(w->pg) == CONNECTION_OK;
    wh_lane_t *lanes[2] = {&w->claim_lane, &w->flush_lane};
    for (int i = 0; i < 2; i++) {
        wh_lane_t *l = lanes[i];
        /* A lane whose statement is still in flight on a live connection keeps it. */
        if (!l->busy && (l->broken || PQstatus(l->conn) != CONNECTION_OK)) {
            PQfinish(l->conn);
            l->conn = lane_connect(w, errstr, sizeof(errstr));
            l->broken = l->conn == NULL;
        }
        all_ok = all_ok && PQstatus(l->conn) == CONNECTION_OK;
    }
    if (!all_ok) {
        w->pg_backoff_ms =
            w->pg_backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : w->pg_backoff_ms * 2;
        w->pg_retry_at_us = nudgel_mono_us() + w->pg_backoff_ms * 1000;
        return;
    }
    w->pg_ok = true;
    nudgel_log_info("Postgres is back; resuming intake (%zu claim(s), %zu outcome(s) waiting)",
                    w->claim_count, w->outcome_count);
    nudgel_consumer_resume(w->consumer, NUDGEL_PAUSE_POSTGRES);
}

/* After a *_send(): in flight; flushing while libpq still holds unsent bytes. */
static nudgel_err_t lane_sent(wh_lane_t *l, char *errstr, size_t errstr_size)
{
    int r = PQflush(l->conn);
    if (r < 0) {
        snprintf(errstr, errstr_size, "%s: sending: %s", l->name, PQerrorMessage(l->conn));
        l->broken = true;
        return NUDGEL_ERR_PG_UNREACHABLE;
    }
    l->busy = true;
    l->flushing = r == 1;
    l->sent_us = nudgel_mono_us();
    return NUDGEL_OK;
}

/* Sends what libpq still holds: 0 when all is sent, 1 while some is left, -1 when lost. */
static int lane_push_bytes(wh_lane_t *l)
{
    if (!l->flushing)
        return 0;
    int r = PQflush(l->conn);
    if (r == 1)
        return 1;
    l->flushing = false;
    return r < 0 ? -1 : 0;
}

/*
 * The claim lane's result when it has arrived: 1 and @p *res, 0 while it
 * runs, -1 when the connection is lost.
 */
static int lane_result(wh_lane_t *l, PGresult **res, char *errstr, size_t errstr_size)
{
    int r = lane_push_bytes(l);
    if (r == 1)
        return 0;
    if (r < 0 || !PQconsumeInput(l->conn))
        goto lost;
    if (PQisBusy(l->conn))
        return 0;
    *res = PQgetResult(l->conn);
    for (PGresult *extra; (extra = PQgetResult(l->conn));)
        PQclear(extra);
    l->busy = false;
    return 1;
lost:
    snprintf(errstr, errstr_size, "%s: %s", l->name, PQerrorMessage(l->conn));
    l->busy = false;
    l->broken = true;
    return -1;
}

/* The lanes' sockets while a statement is in flight (to wait on with the HTTP transfers). */
static size_t lane_fds(worker_t *w, int *fds)
{
    size_t n = 0;
    if (w->claim_lane.busy && PQsocket(w->claim_lane.conn) >= 0)
        fds[n++] = PQsocket(w->claim_lane.conn);
    if (w->flush_lane.busy && PQsocket(w->flush_lane.conn) >= 0)
        fds[n++] = PQsocket(w->flush_lane.conn);
    return n;
}

/* ---- the flush -------------------------------------------------- */

/* Puts a batch that did not become durable back at the front of the outcomes. */
static void outcomes_unshift(worker_t *w, wjob_t **batch, size_t n)
{
    size_t need = w->outcome_count + n;
    if (need > w->outcome_cap) {
        wjob_t **grown = realloc(w->outcomes, need * sizeof(*grown));
        if (!grown) {
            nudgel_log_error("out of memory requeueing outcomes; stopping");
            fatal_stop = true;
            stop_requested = 1;
            return; /* the jobs stay on w->all: abandoned at exit, delivered again */
        }
        w->outcomes = grown;
        w->outcome_cap = need;
    }
    memmove(w->outcomes + n, w->outcomes, w->outcome_count * sizeof(*w->outcomes));
    memcpy(w->outcomes, batch, n * sizeof(*batch));
    w->outcome_count = need;
}

/* The flush came back: on success, the endpoints it disabled, then each job published. */
static void flush_done(worker_t *w, wjob_t **batch, size_t n, json_t *disabled)
{
    /* Endpoints disabled for failing too long: one event each, on a job of theirs. */
    size_t di;
    json_t *d;
    json_array_foreach(disabled, di, d)
    {
        const char *eid = json_string_value(json_object_get(d, "endpoint_id"));
        uint32_t b = hash_str(eid) % HASH_BUCKETS;
        for (endpoint_t *ep = w->endpoints[b]; ep; ep = ep->next)
            if (strcmp(ep->id, eid) == 0)
                ep->enabled = false;
        nudgel_log_warn("endpoint %s disabled: %s", eid,
                        json_string_value(json_object_get(d, "reason")));
        for (size_t i = 0; i < n; i++) {
            wjob_t *j = batch[i];
            if (j->parsed && j->job.endpoint_id && strcmp(j->job.endpoint_id, eid) == 0 &&
                !j->endpoint_disabled_now) {
                j->endpoint_disabled_now = true;
                snprintf(j->disabled_reason, sizeof(j->disabled_reason), "%s",
                         json_string_value(json_object_get(d, "reason")));
                break;
            }
        }
    }
    json_decref(disabled);
    for (size_t i = 0; i < n; i++) {
        /* Its row is durable now: a copy (its own retry hop, say) may go by the row. */
        if (batch[i]->indexed)
            index_remove(w, batch[i]);
        job_publish(batch[i]);
    }
}

/*
 * Sends the batch of outcomes as one transaction (a pipeline on the flush
 * lane); each job is published once it is durable (outcomes_pump). What
 * ends meanwhile waits for the next flush. Postgres trouble puts the batch
 * back (jobs stay in flight) and pauses intake until a reconnect works.
 */
static void flush_start(worker_t *w)
{
    char errstr[512];
    wh_lane_t *l = &w->flush_lane;
    w->last_flush_us = nudgel_mono_us();
    if (w->outcome_count == 0)
        return;
    wjob_t **batch = w->outcomes;
    size_t n = w->outcome_count;
    w->outcomes = NULL;
    w->outcome_count = w->outcome_cap = 0;
    json_t *attempts = json_array(), *deliveries = json_array(), *ok = json_array(),
           *bad = json_array();
    for (size_t i = 0; i < n; i++) {
        wjob_t *j = batch[i];
        if (!j->parsed || j->end == END_NONE || j->end == END_MALFORMED)
            continue;
        if (j->record_attempt) {
            json_array_append_new(
                attempts,
                json_pack("{s:s, s:i, s:o, s:i, s:o, s:o, s:o}", "delivery_id", j->job.id,
                          "attempt", j->attempt, "status_code",
                          j->status_code > 0 ? json_integer(j->status_code) : json_null(),
                          "latency_ms", j->latency_ms, "error_class", nullable_str(j->error_class),
                          "error_message", nullable_str(j->error_message), "response_snippet",
                          nullable_str(j->snippet)));
            /* Each endpoint once per flush; a success at most once a second. */
            endpoint_t *ep = j->ep;
            int64_t now_us = nudgel_mono_us();
            if (ep && j->end == END_DELIVERED && now_us - ep->success_noted_us >= 1000000) {
                ep->success_noted_us = now_us;
                json_array_append_new(ok, json_string(ep->id));
            } else if (ep && j->end != END_DELIVERED && ep->failure_noted_us != w->last_flush_us) {
                ep->failure_noted_us = w->last_flush_us;
                ep->success_noted_us = 0; /* the next success is written at once */
                json_array_append_new(bad, json_string(ep->id));
            }
        }
        if (j->end == END_REQUEUE)
            continue;
        bool final = j->end != END_RETRY;
        json_t *row = json_pack(
            "{s:s, s:s, s:i, s:o, s:o, s:o, s:b}", "delivery_id", j->job.id, "status",
            j->delivery_status, "attempts", j->record_attempt ? j->attempt : j->attempt - 1,
            "last_status_code", j->status_code > 0 ? json_integer(j->status_code) : json_null(),
            "last_error",
            j->error_class[0] ? json_sprintf("%s: %s", j->error_class, j->error_message)
                              : json_null(),
            "next_attempt_ms", j->end == END_RETRY ? json_integer(j->next_attempt_ms) : json_null(),
            "final", final);
        json_object_set_new(row, "tenant_id", json_string(j->job.tenant_id));
        json_object_set_new(row, "endpoint_id", json_string(j->job.endpoint_id));
        json_object_set_new(row, "event_type", json_string(j->job.event_type));
        json_object_set_new(row, "event_id", json_string(j->job.event_id));
        if (w->with_payload)
            json_object_set(row, "payload", j->job.payload);
        json_array_append_new(deliveries, row);
    }
    nudgel_err_t err = NUDGEL_OK;
    bool empty = !json_array_size(attempts) && !json_array_size(deliveries) &&
                 !json_array_size(ok) && !json_array_size(bad);
    if (!empty)
        err = wh_db_flush_send(l->conn, w->with_payload, attempts, deliveries, ok, bad,
                               w->failing_window_ms, &w->flush_call, errstr, sizeof(errstr));
    json_decref(attempts);
    json_decref(deliveries);
    json_decref(ok);
    json_decref(bad);
    if (empty) {
        flush_done(w, batch, n, json_array());
        free(batch);
        return;
    }
    if (err == NUDGEL_OK)
        err = lane_sent(l, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        l->broken = true;
        json_decref(w->flush_call.disabled);
        w->flush_call.disabled = NULL;
        outcomes_unshift(w, batch, n);
        free(batch);
        postgres_down(w, errstr);
        return;
    }
    w->flush_sent = batch;
    w->flush_sent_n = n;
}

/* The flush lane: its result when it has come, then the next flush when due. */
static void outcomes_pump(worker_t *w, bool draining)
{
    wh_lane_t *l = &w->flush_lane;
    if (l->busy) {
        int st = lane_push_bytes(l);
        if (st == 1)
            return;
        if (st == 0)
            st = wh_db_flush_poll(l->conn, &w->flush_call);
        else
            st = -1;
        if (st == 0)
            return;
        l->busy = false;
        nudgel_metric_observe(w->m_flush_s, NULL, (double)(nudgel_mono_us() - l->sent_us) / 1e6);
        wjob_t **batch = w->flush_sent;
        size_t n = w->flush_sent_n;
        w->flush_sent = NULL;
        w->flush_sent_n = 0;
        json_t *disabled = w->flush_call.disabled;
        w->flush_call.disabled = NULL;
        if (st < 0 || w->flush_call.err != NUDGEL_OK) {
            char errstr[700];
            if (st < 0) {
                l->broken = true;
                snprintf(errstr, sizeof(errstr), "writing outcomes: %s", PQerrorMessage(l->conn));
            } else {
                snprintf(errstr, sizeof(errstr), "%s", w->flush_call.errstr);
            }
            json_decref(disabled);
            outcomes_unshift(w, batch, n);
            free(batch);
            postgres_down(w, errstr);
            return;
        }
        flush_done(w, batch, n, disabled);
        free(batch);
    }
    if (l->busy || !w->pg_ok)
        return;
    if (w->outcome_count >= w->flush_max || nudgel_mono_us() - w->last_flush_us >= w->flush_us ||
        (draining && w->outcome_count))
        flush_start(w);
}

/* ---- endpoints and lanes ------------------------------------------------ */

static void endpoint_forget_secrets(endpoint_t *ep)
{
    for (size_t i = 0; i < 2; i++)
        nudgel_wh_key_cleanse(&ep->keys[i]);
    ep->key_count = 0;
}

/* Opens a sealed secret and decodes it into @p key. */
static nudgel_err_t open_secret(worker_t *w, const char *key_id, const unsigned char *sealed,
                                size_t sealed_len, nudgel_wh_key_t *key, char *errstr,
                                size_t errstr_size)
{
    char *plain = NULL;
    size_t plain_len = 0;
    nudgel_err_t err = nudgel_secretbox_open(w->box, key_id, sealed, sealed_len, &plain, &plain_len,
                                             errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    err = nudgel_wh_secret_decode(plain, key, errstr, errstr_size);
    nudgel_secretbox_free_plain(plain, plain_len);
    return err;
}

/* Reads @p ep's row again. @returns NUDGEL_OK or a Postgres error. */
static nudgel_err_t endpoint_load(worker_t *w, endpoint_t *ep)
{
    wh_endpoint_row_t row;
    char errstr[512];
    nudgel_err_t err = wh_db_endpoint_load(w->pg, ep->id, &row, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        if (err == NUDGEL_ERR_PG_UNREACHABLE)
            postgres_down(w, errstr); /* logged there once; reconnects with the lanes */
        else
            nudgel_log_error("%s", errstr);
        return err;
    }
    endpoint_forget_secrets(ep);
    free(ep->url);
    ep->url = NULL;
    ep->loaded = true;
    ep->loaded_us = nudgel_mono_us();
    ep->found = row.found;
    ep->secret_broken = false;
    if (!row.found) {
        wh_endpoint_row_clear(&row);
        return NUDGEL_OK;
    }
    snprintf(ep->tenant_id, sizeof(ep->tenant_id), "%s", row.tenant_id);
    ep->url = row.url;
    row.url = NULL;
    ep->enabled = row.enabled;
    ep->max_concurrency =
        row.max_concurrency > 0 ? (size_t)row.max_concurrency : w->default_concurrency;
    double rate = row.rate_per_second > 0 ? row.rate_per_second : w->default_rate;
    if (rate != ep->rate) {
        ep->rate = rate;
        ep->tokens = rate > 1 ? rate : 1;
        ep->tokens_us = nudgel_mono_us();
    }
    if (open_secret(w, row.secret_key_id, row.secret, row.secret_len, &ep->keys[0], errstr,
                    sizeof(errstr)) != NUDGEL_OK) {
        ep->secret_broken = true;
        snprintf(ep->secret_error, sizeof(ep->secret_error), "signing secret: %s", errstr);
        nudgel_log_error("endpoint %s: %s", ep->id, ep->secret_error);
    } else {
        ep->key_count = 1;
        if (row.previous && open_secret(w, row.previous_key_id, row.previous, row.previous_len,
                                        &ep->keys[1], errstr, sizeof(errstr)) == NUDGEL_OK) {
            ep->key_count = 2;
            ep->previous_expires_ms = row.previous_expires_ms;
        }
    }
    wh_endpoint_row_clear(&row);
    return NUDGEL_OK;
}

/* The endpoint @p id, (re)loaded when missing or stale. NULL with *err on Postgres trouble. */
static endpoint_t *endpoint_get(worker_t *w, const char *id, nudgel_err_t *err)
{
    uint32_t b = hash_str(id) % HASH_BUCKETS;
    endpoint_t *ep = w->endpoints[b];
    *err = NUDGEL_OK;
    while (ep && strcmp(ep->id, id) != 0)
        ep = ep->next;
    if (!ep) {
        if (!(ep = calloc(1, sizeof(*ep)))) {
            *err = NUDGEL_ERR_NO_MEMORY;
            return NULL;
        }
        snprintf(ep->id, sizeof(ep->id), "%s", id);
        ep->next = w->endpoints[b];
        w->endpoints[b] = ep;
    }
    if (!ep->loaded || nudgel_mono_us() - ep->loaded_us >= w->endpoint_cache_us) {
        if ((*err = endpoint_load(w, ep)) != NUDGEL_OK && !ep->loaded)
            return NULL;
        *err = NUDGEL_OK; /* a failed refresh keeps the row we had */
    }
    if (ep->key_count == 2 && ep->previous_expires_ms <= nudgel_now_unix_ms()) {
        nudgel_wh_key_cleanse(&ep->keys[1]);
        ep->key_count = 1;
    }
    return ep;
}

static void lane_push(worker_t *w, endpoint_t *ep, wjob_t *j)
{
    j->stage = STAGE_LANE;
    j->ep = ep;
    j->next_in_lane = NULL;
    if (ep->tail)
        ep->tail->next_in_lane = j;
    else
        ep->head = j;
    ep->tail = j;
    ep->queued++;
    w->lane_waiting++;
    if (!ep->active) {
        ep->active = true;
        ep->next_active = w->active;
        w->active = ep;
    }
}

static wjob_t *lane_pop(worker_t *w, endpoint_t *ep)
{
    wjob_t *j = ep->head;
    if (!j)
        return NULL;
    ep->head = j->next_in_lane;
    if (!ep->head)
        ep->tail = NULL;
    ep->queued--;
    w->lane_waiting--;
    return j;
}

/* ---- attempts ----------------------------------------------------------- */

/* Copies at most SNIPPET_BYTES of @p body as valid UTF-8 without NULs (a text column). */
static char *make_snippet(const char *body, size_t len)
{
    if (!body || len == 0)
        return NULL;
    if (len > SNIPPET_BYTES)
        len = SNIPPET_BYTES;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)body;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        bool ok = n > 0 && i + n <= len && !(n == 1 && c == 0) && !(n == 2 && c < 0xc2);
        for (size_t k = 1; ok && k < n; k++)
            ok = (s[i + k] & 0xc0) == 0x80;
        if (!ok) {
            out[o++] = '?';
            i++;
            continue;
        }
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
    return out;
}

static uint64_t random_u64(void)
{
    uint64_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint64_t)nudgel_mono_us() * 0x9e3779b97f4a7c15ull;
    return r;
}

/*
 * A failed attempt (or a refusal before sending): retried on the schedule,
 * or exhausted after the last attempt; permanent failures end at once.
 */
static void attempt_failed(wjob_t *j, nudgel_outcome_kind_t kind, int64_t not_before_ms)
{
    worker_t *w = j->w;
    if (kind == NUDGEL_OUTCOME_PERMANENT || kind == NUDGEL_OUTCOME_DISABLE_ENDPOINT) {
        j->end = END_FAILED;
        j->delivery_status = "failed";
        j->permanent = true;
    } else if (nudgel_retry_schedule_is_last(&w->schedule, (unsigned)j->attempt)) {
        j->end = END_EXHAUSTED;
        j->delivery_status = "exhausted";
    } else {
        int64_t delay =
            nudgel_retry_schedule_delay_ms(&w->schedule, (unsigned)j->attempt, random_u64());
        int64_t at = nudgel_now_unix_ms() + (delay > 0 ? delay : 0);
        if (kind == NUDGEL_OUTCOME_BACKOFF && not_before_ms > at)
            at = not_before_ms;
        j->end = END_RETRY;
        j->delivery_status = "delivering";
        j->next_attempt_ms = at;
    }
    outcome_add(j);
}

static void on_answer(void *opaque, const nudgel_http_response_t *r)
{
    wjob_t *j = opaque;
    worker_t *w = j->w;
    endpoint_t *ep = j->ep;
    ep->in_flight--;
    j->record_attempt = true;
    j->latency_ms = (int)(r->total_ms + 0.5);
    j->status_code = r->status;
    nudgel_metric_observe(w->m_latency, NULL, r->total_ms / 1000.0);
    nudgel_attempt_result_t ar = {
        .transport = nudgel_outcome_transport_from_curl(r->curl_code),
        .http_status = r->transport_error ? 0 : r->status,
        .retry_after = r->retry_after,
        .now_ms = nudgel_now_unix_ms(),
        .max_retry_after_ms = w->max_retry_after_ms,
    };
    if (r->transport_error && ar.transport == NUDGEL_TRANSPORT_OK)
        ar.transport = NUDGEL_TRANSPORT_ERROR;
    nudgel_outcome_t out = nudgel_outcome_classify(&ar);
    if (!r->transport_error)
        j->snippet = make_snippet(r->body, r->body_len);
    if (out.error_class) {
        snprintf(j->error_class, sizeof(j->error_class), "%s", out.error_class);
        if (r->transport_error)
            snprintf(j->error_message, sizeof(j->error_message), "%s", r->error);
        else
            snprintf(j->error_message, sizeof(j->error_message), "HTTP %ld", r->status);
    }
    nudgel_metric_add(w->m_attempts, out.error_class ? out.error_class : "delivered", 1);
    switch (out.kind) {
    case NUDGEL_OUTCOME_DELIVERED:
        j->end = END_DELIVERED;
        j->delivery_status = "delivered";
        outcome_add(j);
        break;
    case NUDGEL_OUTCOME_DISABLE_ENDPOINT: {
        char errstr[512];
        bool changed = false;
        snprintf(j->disabled_reason, sizeof(j->disabled_reason),
                 "the endpoint answered 410 Gone (delivery %s, attempt %d)", j->job.id, j->attempt);
        ep->enabled = false;
        nudgel_err_t derr = wh_db_endpoint_disable(w->pg, ep->id, j->disabled_reason, &changed,
                                                   errstr, sizeof(errstr));
        if (derr != NUDGEL_OK) {
            /* Not recorded: the job comes again after a restart; the cached flag holds meanwhile.
             */
            nudgel_log_error("%s", errstr);
            if (derr == NUDGEL_ERR_PG_UNREACHABLE)
                postgres_down(w, errstr);
            j->publish_failed = true;
        }
        j->endpoint_disabled_now = changed;
        if (changed)
            nudgel_log_warn("endpoint %s disabled: %s", ep->id, j->disabled_reason);
        attempt_failed(j, out.kind, 0);
        break;
    }
    case NUDGEL_OUTCOME_RETRY:
    case NUDGEL_OUTCOME_BACKOFF:
    case NUDGEL_OUTCOME_PERMANENT:
        attempt_failed(j, out.kind, out.not_before_ms);
        break;
    }
}

/* The SSRF verdict for @p url, from the per-host cache or vetted now. */
static const vetted_t *vet(worker_t *w, const char *url)
{
    const char *start = strstr(url, "://");
    start = start ? start + 3 : url;
    size_t alen = strcspn(start, "/?#");
    char key[512];
    snprintf(key, sizeof(key), "%.*s", (int)((size_t)(start - url) + alen), url);
    uint32_t b = hash_str(key) % HASH_BUCKETS;
    vetted_t *v = w->vetted[b];
    while (v && strcmp(v->authority, key) != 0)
        v = v->next;
    if (v && nudgel_mono_us() - v->vetted_us < w->ssrf_cache_us)
        return v;
    if (!v) {
        if (!(v = calloc(1, sizeof(*v))) || !(v->authority = strdup(key))) {
            free(v);
            return NULL;
        }
        v->next = w->vetted[b];
        w->vetted[b] = v;
    }
    v->err = nudgel_ssrf_vet_url(w->ssrf, url, &v->verdict);
    v->vetted_us = nudgel_mono_us();
    if (v->err == NUDGEL_ERR_IO) /* a failed lookup is not cached for long */
        v->vetted_us -= w->ssrf_cache_us > 1000000 ? w->ssrf_cache_us - 1000000 : 0;
    return v;
}

/* Signs and sends @p j to its endpoint, or ends it when it cannot be sent. */
static void submit(worker_t *w, wjob_t *j)
{
    endpoint_t *ep = j->ep;
    if (!ep->found || !ep->enabled || ep->secret_broken) {
        snprintf(j->error_class, sizeof(j->error_class), "%s",
                 !ep->found     ? "endpoint_not_found"
                 : !ep->enabled ? "endpoint_disabled"
                                : "secret_unavailable");
        snprintf(j->error_message, sizeof(j->error_message), "%.600s",
                 !ep->found     ? "the endpoint does not exist"
                 : !ep->enabled ? "the endpoint is disabled"
                                : ep->secret_error);
        if (ep->secret_broken) {
            /* Maybe the keyring lacks a key a newer deployment has: retry, not cancel. */
            j->record_attempt = true;
            attempt_failed(j, NUDGEL_OUTCOME_RETRY, 0);
            return;
        }
        j->end = END_FAILED;
        j->permanent = true;
        j->delivery_status = "cancelled";
        outcome_add(j);
        return;
    }
    const vetted_t *v = vet(w, ep->url);
    if (!v || v->err != NUDGEL_OK) {
        j->record_attempt = true;
        if (v && v->err == NUDGEL_ERR_IO) {
            snprintf(j->error_class, sizeof(j->error_class), "dns");
            snprintf(j->error_message, sizeof(j->error_message), "%s", v->verdict.reason);
            attempt_failed(j, NUDGEL_OUTCOME_RETRY, 0);
        } else {
            snprintf(j->error_class, sizeof(j->error_class), "ssrf_refused");
            snprintf(j->error_message, sizeof(j->error_message), "refused by the SSRF guard: %s",
                     v ? v->verdict.reason : "out of memory");
            nudgel_metric_add(w->m_attempts, "ssrf_refused", 1);
            attempt_failed(j, NUDGEL_OUTCOME_PERMANENT, 0);
        }
        return;
    }
    char *body = json_dumps(j->job.payload, JSON_COMPACT);
    if (!body) {
        j->record_attempt = true;
        snprintf(j->error_class, sizeof(j->error_class), "transport");
        snprintf(j->error_message, sizeof(j->error_message), "out of memory building the body");
        attempt_failed(j, NUDGEL_OUTCOME_RETRY, 0);
        return;
    }
    size_t body_len = strlen(body);
    int64_t ts = nudgel_now_unix_ms() / 1000;
    char signature[2 * NUDGEL_WH_SIGNATURE_MAX + 8];
    char h_id[200], h_ts[64], h_sig[sizeof(signature) + 32], h_tp[96];
    nudgel_wh_signature_header(ep->keys, ep->key_count, j->job.event_id, ts, body, body_len,
                               signature, sizeof(signature));
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", j->job.event_id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", (long long)ts);
    snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", signature);
    nudgel_http_request_t req = {
        .method = "POST",
        .url = ep->url,
        .headers = {"content-type: application/json", "user-agent: Nudgel-Webhooks/1", h_id, h_ts,
                    h_sig},
        .body = body,
        .body_len = body_len,
        .connect_timeout_ms = w->connect_ms,
        .total_timeout_ms = w->total_ms,
        .max_response_bytes = w->max_response,
        .resolve = v->verdict.resolve[0] ? v->verdict.resolve : NULL,
    };
    if (j->traceparent[0]) {
        snprintf(h_tp, sizeof(h_tp), "traceparent: %s", j->traceparent);
        req.headers[5] = h_tp;
    }
    j->stage = STAGE_HTTP;
    nudgel_err_t err = nudgel_http_submit(w->http, &req, on_answer, j);
    free(body);
    if (err != NUDGEL_OK) {
        j->record_attempt = true;
        snprintf(j->error_class, sizeof(j->error_class), "%s",
                 err == NUDGEL_ERR_INVALID_ARG ? "bad_url" : "transport");
        snprintf(j->error_message, sizeof(j->error_message), "request not started: %s",
                 nudgel_strerror(err));
        attempt_failed(
            j, err == NUDGEL_ERR_INVALID_ARG ? NUDGEL_OUTCOME_PERMANENT : NUDGEL_OUTCOME_RETRY, 0);
        return;
    }
    ep->in_flight++;
}

/* Refills @p ep's token bucket; true when a request may start now. */
static bool lane_may_send(endpoint_t *ep, int64_t now_us)
{
    if (ep->in_flight >= ep->max_concurrency)
        return false;
    if (ep->rate <= 0)
        return true;
    double burst = ep->rate > 1 ? ep->rate : 1;
    ep->tokens += (double)(now_us - ep->tokens_us) / 1e6 * ep->rate;
    ep->tokens_us = now_us;
    if (ep->tokens > burst)
        ep->tokens = burst;
    if (ep->tokens < 1)
        return false;
    ep->tokens -= 1;
    return true;
}

/* Starts what each lane allows now; drops lanes left empty from the active list. */
static void drain_lanes(worker_t *w)
{
    int64_t now = nudgel_mono_us();
    endpoint_t **link = &w->active;
    while (*link) {
        endpoint_t *ep = *link;
        while (ep->head && (!ep->enabled || !ep->found || lane_may_send(ep, now)))
            submit(w, lane_pop(w, ep));
        if (!ep->head) {
            ep->active = false;
            *link = ep->next_active;
        } else {
            link = &ep->next_active;
        }
    }
}

/* ---- intake ------------------------------------------------------------- */

static void header_int(const rd_kafka_message_t *msg, const char *name, int64_t *out)
{
    char text[32];
    nudgel_message_header(msg, name, text, sizeof(text));
    if (text[0])
        *out = atoll(text);
}

/*
 * A malformed job: a dead letter with the reason and a failed event built
 * from whatever of the job is usable (ids derived from its position else).
 */
static void malformed(worker_t *w, wjob_t *j, const char *reason)
{
    const rd_kafka_message_t *km = nudgel_job_message(j->ref);
    char delivery_id[NUDGEL_UUID_STR_LEN + 1], event_id[64], tenant[72], event_type[140];
    nudgel_log_warn("malformed webhook job at %s[%d]@%lld: %s", rd_kafka_topic_name(km->rkt),
                    km->partition, (long long)km->offset, reason);
    nudgel_metric_add(w->m_outcomes, "malformed", 1);
    j->end = END_MALFORMED;
    j->stage = STAGE_PUBLISH;
    publish_dlq(j, reason);

    json_t *doc = json_loadb(km->payload ? km->payload : "", km->len, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *tid = json_string_value(json_object_get(doc, "tenant_id"));
    const char *et = json_string_value(json_object_get(doc, "event_type"));
    const char *eid = json_string_value(json_object_get(doc, "event_id"));
    uint8_t u[16];
    if (id && strlen(id) == NUDGEL_UUID_STR_LEN && nudgel_uuid_parse(id, u) == 0) {
        nudgel_uuid_format(u, delivery_id);
    } else {
        char origin[300];
        unsigned char h[32];
        unsigned int hl = 0;
        int n = snprintf(origin, sizeof(origin), "%s/%d/%lld", rd_kafka_topic_name(km->rkt),
                         km->partition, (long long)km->offset);
        EVP_Digest(origin, (size_t)n, h, &hl, EVP_sha256(), NULL);
        memcpy(u, h, 16);
        u[6] = (uint8_t)((u[6] & 0x0f) | 0x80);
        u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
        nudgel_uuid_format(u, delivery_id);
    }
    char key_tenant[72];
    nudgel_message_header(km, NUDGEL_HDR_TENANT, key_tenant, sizeof(key_tenant));
    snprintf(tenant, sizeof(tenant), "%s",
             tid && nudgel_tenant_id_valid(tid)   ? tid
             : nudgel_tenant_id_valid(key_tenant) ? key_tenant
                                                  : "unknown");
    bool et_ok = et && strlen(et) < sizeof(event_type) && strchr(et, '.') && et[0] >= 'a' &&
                 et[0] <= 'z' && strspn(et, "abcdefghijklmnopqrstuvwxyz0123456789_.") == strlen(et);
    snprintf(event_type, sizeof(event_type), "%s", et_ok ? et : "webhook.malformed");
    bool eid_ok =
        eid && *eid && strlen(eid) <= 128 &&
        strspn(eid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-") ==
            strlen(eid);
    snprintf(event_id, sizeof(event_id), "%.63s", eid_ok ? eid : "malformed");
    publish_event(j, "failed", "failed", 0, 0, "malformed_job", reason, true, NULL, delivery_id,
                  tenant, event_type, event_id);
    json_decref(doc);
    job_release(j);
}

/* Takes a job just polled: due? parseable? then into the claim batch. */
static void handle(worker_t *w, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    int64_t now = nudgel_now_unix_ms(), not_before = 0, attempts = 0;
    header_int(km, NUDGEL_HDR_NOT_BEFORE, &not_before);
    if (not_before > now) {
        nudgel_consumer_defer(w->consumer, ref, not_before);
        return;
    }
    wjob_t *j = calloc(1, sizeof(*j));
    if (!j) {
        nudgel_consumer_defer(w->consumer, ref, now + 1000);
        return;
    }
    j->w = w;
    j->ref = ref;
    j->first_seen_ms = now;
    j->next_all = w->all;
    if (w->all)
        w->all->prev_all = j;
    w->all = j;
    w->current = j;
    header_int(km, NUDGEL_HDR_ATTEMPT, &attempts);
    header_int(km, NUDGEL_HDR_FIRST_SEEN, &j->first_seen_ms);
    j->header_attempts = attempts > 0 && attempts < 1000 ? (int)attempts : 0;
    nudgel_message_header(km, NUDGEL_HDR_TRACEPARENT, j->traceparent, sizeof(j->traceparent));

    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t popts = {0};
    if (nudgel_webhook_job_parse(km->payload, km->len, &popts, &j->job, &ferr) != NUDGEL_OK) {
        char reason[400];
        snprintf(reason, sizeof(reason), "%s: %s", ferr.field, ferr.reason);
        malformed(w, j, reason);
        return;
    }
    j->parsed = true;
    if (!j->job.endpoint_id) {
        /* A one-off url job has no signing secret: it cannot be delivered as Standard Webhooks. */
        malformed(w, j,
                  "endpoint_id: one-off url deliveries are not supported (no signing "
                  "secret); register an endpoint");
        return;
    }
    if (index_holds(w, j)) {
        /* The same delivery is already in flight here (a re-delivered copy): that one ends it. */
        nudgel_log_info("webhook job %s: event %s to endpoint %s is already in flight here; "
                        "skipped",
                        j->job.id, j->job.event_id, j->job.endpoint_id);
        j->end = END_NONE;
        job_publish(j);
        return;
    }
    j->stage = STAGE_CLAIM;
    w->claims[w->claim_count++] = j;
}

/* What the claim said of each job of @p batch: to its endpoint's lane, or ended at once. */
static void claims_apply(worker_t *w, wjob_t **batch, const wh_claim_t *claims, size_t n)
{
    nudgel_err_t err;
    for (size_t i = 0; i < n; i++) {
        wjob_t *j = batch[i];
        const wh_claim_t *c = &claims[i];
        int made = c->attempts > j->header_attempts ? c->attempts : j->header_attempts;
        j->attempt = made + 1;
        if (c->duplicate) {
            nudgel_log_info("webhook job %s: event %s already has another delivery to endpoint "
                            "%s; skipped",
                            j->job.id, j->job.event_id, j->job.endpoint_id);
            j->end = END_NONE;
            job_publish(j);
            continue;
        }
        if (c->final) {
            /* Ended before (a re-delivery): send nothing; its final event again, same id. */
            j->attempt = c->attempts > 0 ? c->attempts : 1;
            j->status_code = c->last_status_code;
            const char *colon = strstr(c->last_error, ": ");
            if (colon) {
                snprintf(j->error_class, sizeof(j->error_class), "%.*s",
                         (int)(colon - c->last_error), c->last_error);
                snprintf(j->error_message, sizeof(j->error_message), "%s", colon + 2);
            }
            j->delivery_status = strcmp(c->status, "delivered") == 0   ? "delivered"
                                 : strcmp(c->status, "exhausted") == 0 ? "exhausted"
                                 : strcmp(c->status, "cancelled") == 0 ? "cancelled"
                                                                       : "failed";
            j->permanent = true;
            j->stage = STAGE_PUBLISH;
            job_event(j,
                      strcmp(c->status, "delivered") == 0   ? "delivered"
                      : strcmp(c->status, "exhausted") == 0 ? "exhausted"
                                                            : "failed",
                      j->delivery_status);
            nudgel_metric_add(w->m_outcomes, "replayed", 1);
            job_release(j);
            continue;
        }
        endpoint_t *ep = endpoint_get(w, j->job.endpoint_id, &err);
        if (!ep) {
            /* Postgres went away between the claim and here: the job comes again later. */
            j->publish_failed = true;
            job_release(j);
            continue;
        }
        j->ep = ep;
        if (ep->queued >= w->queue_max) {
            j->end = END_REQUEUE;
            outcome_add(j);
            continue;
        }
        lane_push(w, ep, j);
    }
}

/* Puts a claim batch that did not come back at the front of the waiting claims. */
static void claims_unshift(worker_t *w, wjob_t **batch, size_t n)
{
    memmove(w->claims + n, w->claims, w->claim_count * sizeof(w->claims[0]));
    memcpy(w->claims, batch, n * sizeof(batch[0]));
    w->claim_count += n;
}

/*
 * The claim lane: the statement in flight when its result has come (each
 * job to its lane, or ended at once: already final, duplicate, endpoint
 * gone), then the jobs polled meanwhile in one statement. Postgres trouble
 * puts the batch back in front and pauses intake until a reconnect works.
 */
static void claims_pump(worker_t *w)
{
    char errstr[512];
    wh_lane_t *l = &w->claim_lane;
    if (l->busy) {
        PGresult *res = NULL;
        int st = lane_result(l, &res, errstr, sizeof(errstr));
        if (st == 0)
            return;
        size_t n = w->claim_sent_n;
        nudgel_err_t err =
            st < 0 ? NUDGEL_ERR_PG_UNREACHABLE
                   : wh_db_claim_read(l->conn, res, w->claim_rows, n, errstr, sizeof(errstr));
        PQclear(res);
        nudgel_metric_observe(w->m_claim_s, NULL, (double)(nudgel_mono_us() - l->sent_us) / 1e6);
        w->claim_sent_n = 0;
        if (err != NUDGEL_OK) {
            claims_unshift(w, w->claim_sent, n);
            postgres_down(w, errstr);
            return;
        }
        claims_apply(w, w->claim_sent, w->claim_rows, n);
    }
    /*
     * Jobs already waiting in lanes are plenty: the polled ones wait here,
     * claimed later, rather than overflow a lane that is merely behind (an
     * overflow goes to the first retry tier; it is meant for a saturated
     * endpoint, which fills its own lane long before this bound).
     */
    if (l->busy || !w->pg_ok || w->claim_count == 0 || w->lane_waiting >= w->max_in_flight / 2)
        return;
    size_t n = w->claim_count < CLAIM_BATCH_MAX ? w->claim_count : CLAIM_BATCH_MAX;
    json_t *rows = json_array();
    for (size_t i = 0; i < n; i++) {
        const nudgel_webhook_job_t *jb = &w->claims[i]->job;
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:I}", "delivery_id", jb->id,
                                              "endpoint_id", jb->endpoint_id, "event_id",
                                              jb->event_id, "n", (json_int_t)(i + 1)));
    }
    memcpy(w->claim_sent, w->claims, n * sizeof(w->claims[0]));
    w->claim_sent_n = n;
    w->claim_count -= n;
    memmove(w->claims, w->claims + n, w->claim_count * sizeof(w->claims[0]));
    nudgel_err_t err = wh_db_claim_send(l->conn, w->with_payload, rows, errstr, sizeof(errstr));
    json_decref(rows);
    if (err == NUDGEL_OK)
        err = lane_sent(l, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        l->broken = true;
        l->busy = false;
        w->claim_sent_n = 0;
        claims_unshift(w, w->claim_sent, n);
        postgres_down(w, errstr);
    }
}

/* ---- set-up and the loop ------------------------------------------------ */

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

/* Jobs left after the drain: abandoned (re-delivered later), their memory freed. */
static void abandon_jobs(worker_t *w)
{
    size_t n = 0;
    while (w->all) {
        if (w->all->ref)
            nudgel_consumer_abandon(w->consumer, w->all->ref);
        job_free(w->all);
        n++;
    }
    if (n)
        nudgel_log_warn("%zu job(s) unfinished at exit; they will be delivered again", n);
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
