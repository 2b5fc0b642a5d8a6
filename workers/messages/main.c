/*
 * nudgel-messages — the messages worker.
 *
 * One event loop. Each turn:
 *   1. poll up to 256 jobs (jobs topic and retry tiers); a malformed one goes
 *      to the DLQ with a failed event, a retry not yet due is handed back;
 *   2. claim every parsed job in one Postgres statement (templates they need
 *      loaded into the cache first) — DESIGN §5 idempotency by claim;
 *   3. a claimed job: expiry, body (text or template), GSM-7/UCS-2 segments,
 *      route; then two gates: one recipient's (tenant, to) jobs in order, and
 *      the tenant's in-flight cap and send rate; then its gateway's lane
 *      (token bucket at the fleet share of the gateway's TPS, in-flight cap,
 *      circuit breaker with fallback along the route);
 *   4. HTTP submissions on curl multi; answers classified;
 *   5. every outcome of the turn written in one statement (receipt + history,
 *      released claims), and only then its status event, dead letter or
 *      retry hop; a job's offset is stored once Kafka acknowledged them all.
 * Postgres unreachable: intake pauses, jobs in hand wait in their queues,
 * reconnects back off; nothing is published before it is durable.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "nudgel/breaker.h"
#include "nudgel/config.h"
#include "nudgel/consumer.h"
#include "nudgel/event.h"
#include "nudgel/gateway.h"
#include "nudgel/http_admin.h"
#include "nudgel/http_client.h"
#include "nudgel/job.h"
#include "nudgel/keyq.h"
#include "nudgel/log.h"
#include "nudgel/metrics.h"
#include "nudgel/pg.h"
#include "nudgel/publisher.h"
#include "nudgel/receipts.h"
#include "nudgel/sms_encoding.h"
#include "nudgel/template.h"
#include "nudgel/throttle.h"
#include "nudgel/timeutil.h"
#include "nudgel/uuid.h"
#include "nudgel/topics.h"

#define PROGRAM      "nudgel-messages"
#define TIERS        4
#define MAX_GATEWAYS 32

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

typedef struct worker worker_t;

/* What a job's turn ends with, once Postgres has it (see outcomes_pump()). */
typedef enum outcome_kind {
    OUTCOME_NONE = 0,
    OUTCOME_RECORD, /* write the receipt state, then its event (and a dead letter) */
    OUTCOME_RETRY,  /* release our claim, then the next retry tier */
} outcome_kind_t;

typedef struct outcome {
    outcome_kind_t kind;
    nudgel_receipt_state_t state;
    char gateway[64];
    char gateway_message_id[NUDGEL_GATEWAY_CLIENT_REF_MAX];
    char error_code[64];
    char error_message[256];
    char cost_amount[32];
    char currency[8];
    const char *dlq_reason; /* static text; NULL: no dead letter */
    /* OUTCOME_RETRY */
    const char *retry_topic;
    int retry_attempt;
    int64_t not_before_ms;
    bool release_claim; /* we hold the claim (not so for someone else's in-progress claim) */
} outcome_t;

/* One job from poll to done. */
typedef struct msg {
    worker_t *w;
    nudgel_consumer_t *from; /* the consumer that polled it */
    nudgel_job_ref_t *ref;
    int receipt_attempt; /* the receipt's attempt (claims) once claimed; 0 before */
    nudgel_message_job_t job;
    bool parsed;
    int attempt;           /* retry hops so far (nudgel-attempt header) */
    int64_t first_seen_ms; /* nudgel-first-seen, or now */
    char traceparent[64];
    char *text;
    nudgel_sms_info_t sms;
    const nudgel_gateway_t *gateway;
    nudgel_gateway_route_t route; /* the gateways it may use, primary first */
    bool holds_recipient;         /* the head of its (tenant, to) queue */
    bool holds_tenant;            /* counted in its tenant's in-flight */
    int pending;                  /* publishes not yet acknowledged */
    bool publish_failed;
    outcome_t *out;           /* allocated when the job's turn ends (keeps jobs in flight small) */
    struct msg *next_waiting; /* in its gateway's token queue */
} msg_t;

typedef struct gateway_lane {
    const nudgel_gateway_t *gateway;
    nudgel_throttle_bucket_t *bucket;
    nudgel_breaker_t breaker;
    size_t in_flight;   /* submissions awaiting an answer */
    double rate;        /* this worker's share of the gateway's TPS */
    msg_t *head, *tail; /* jobs waiting for a token */
} gateway_lane_t;

/* A growable array of jobs waiting for one Postgres statement. */
typedef struct msg_queue {
    msg_t **items;
    size_t count, cap;
} msg_queue_t;

/*
 * One Postgres connection driven by the event loop (non-blocking libpq): at
 * most one batched statement in flight; what arrives meanwhile waits in the
 * queue and goes with the next statement, so batches grow with the load.
 */
typedef struct pg_lane {
    const char *name; /* "claims", "outcomes" */
    PGconn *conn;
    bool busy;     /* a statement is in flight */
    bool flushing; /* its bytes are not all sent yet */
    msg_t *batch[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t n;
    /* claims: phase 1 inserts the new ones; phase 2 runs the full protocol for the rest */
    int phase;
    nudgel_receipt_claim_t claims[NUDGEL_RECEIPTS_BATCH_MAX];
    bool claimed[NUDGEL_RECEIPTS_BATCH_MAX];
    /* outcomes */
    nudgel_receipt_result_t results[NUDGEL_RECEIPTS_BATCH_MAX];
    nudgel_receipt_applied_t applied[NUDGEL_RECEIPTS_BATCH_MAX];
    int result_of[NUDGEL_RECEIPTS_BATCH_MAX];
    char event_ids[NUDGEL_RECEIPTS_BATCH_MAX][NUDGEL_EVENT_ID_LEN + 1];
    const char *release_ids[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t nresults, nreleases;
} pg_lane_t;

/* A cached template body (NULL: the template does not exist). */
typedef struct cached_template {
    char *body;
    int64_t loaded_us;
} cached_template_t;

/* A row of nudgel.tenant_limits. */
typedef struct tenant_limit_row {
    char tenant[NUDGEL_THROTTLE_TENANT_MAX + 1];
    nudgel_tenant_limits_t limits;
} tenant_limit_row_t;

struct worker {
    nudgel_conf_t *conf;
    nudgel_consumer_t *consumer;       /* the jobs topic (group messages.group_id) */
    nudgel_consumer_t *retry_consumer; /* the retry tiers (group messages.group_id + ".retry") */
    nudgel_publisher_t *publisher;
    nudgel_http_t *http;
    nudgel_gateway_set_t *gateways;
    gateway_lane_t lanes[MAX_GATEWAYS];
    size_t lane_count;
    PGconn *pg;                /* blocking: templates, tenant limits, single-claim fallback */
    pg_lane_t *claim_lane;     /* non-blocking: batched claims */
    pg_lane_t *record_lane;    /* non-blocking: batched outcomes */
    bool pg_down;              /* intake paused until a reconnect works */
    int64_t pg_retry_at_us;    /* next reconnect attempt */
    int64_t pg_backoff_ms;     /* doubles up to pg_backoff_max_ms */
    int64_t pg_backoff_max_ms; /* messages.pg_reconnect_max_ms */
    msg_queue_t to_claim;      /* parsed jobs waiting for the batched claim */
    msg_queue_t to_record;     /* outcomes waiting for the batched write */
    nudgel_keyq_t *recipients; /* (tenant, to) → jobs waiting for the one ahead */
    nudgel_keyq_t *tenant_waits;
    nudgel_throttle_tenants_t *tenants;
    nudgel_tenant_limits_t tenant_defaults;
    msg_queue_t recipient_ready;       /* jobs whose recipient's turn came: to the tenant gate */
    tenant_limit_row_t *tenant_limits; /* sorted by tenant */
    size_t tenant_limit_count;
    int64_t tenant_limits_at_us, tenant_limits_every_us;
    nudgel_keyq_t *templates; /* "tenant\0name\0locale" → cached_template_t */
    int64_t template_ttl_us;
    char worker_id[128];
    char topic_jobs[256], topic_status[256], topic_dlq[256], topic_retry[TIERS][256];
    int64_t stale_ms, validity_ms;
    int64_t tier_delay_ms[TIERS];
    size_t max_in_flight;
    size_t gateway_max_in_flight;
    const char *callback_url;
    nudgel_metrics_t *metrics;
    nudgel_metric_t *m_outcomes, *m_in_flight, *m_submit_latency, *m_waiting, *m_pg_up, *m_pg_batch;
    /* The job being handled right after its poll: the only one that can still be
     * handed back to the consumer (nudgel_consumer_defer) if it cannot finish. */
    msg_t *current;
    int32_t total_partitions; /* of the jobs topic */
    int32_t shared_with;      /* assigned partitions the lane rates were computed for */
};

static volatile sig_atomic_t stop_requested;
/* A job whose outcome could not be made durable once it was no longer the
 * newest polled: it cannot be handed back, so the process stops without
 * storing its offset and the job is re-delivered (the claim makes that safe). */
static bool fatal_stop;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static bool queue_push(msg_queue_t *q, msg_t *m)
{
    if (q->count == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 256;
        msg_t **items = realloc(q->items, cap * sizeof(items[0]));
        if (!items)
            return false;
        q->items = items;
        q->cap = cap;
    }
    q->items[q->count++] = m;
    return true;
}

/* Drops the first @p n items, keeping the order of the rest. */
static void queue_shift(msg_queue_t *q, size_t n)
{
    memmove(q->items, q->items + n, (q->count - n) * sizeof(q->items[0]));
    q->count -= n;
}

/* Puts @p n items back at the front, in order (they were shifted out just before). */
static void queue_unshift(msg_queue_t *q, msg_t **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        queue_push(q, NULL); /* room; capacity never shrinks, so this cannot fail after a shift */
    memmove(q->items + n, q->items, (q->count - n) * sizeof(q->items[0]));
    memcpy(q->items, items, n * sizeof(q->items[0]));
}

static gateway_lane_t *lane_for(worker_t *w, const nudgel_gateway_t *gw)
{
    for (size_t i = 0; i < w->lane_count; i++)
        if (w->lanes[i].gateway == gw)
            return &w->lanes[i];
    return NULL;
}

static void msg_free(msg_t *m)
{
    if (m->parsed)
        nudgel_message_job_clear(&m->job);
    free(m->text);
    free(m->out);
    free(m);
}

/* The job's outcome record, allocated on first use; NULL when out of memory. */
static outcome_t *outcome_of(msg_t *m)
{
    if (!m->out)
        m->out = calloc(1, sizeof(*m->out));
    else
        memset(m->out, 0, sizeof(*m->out));
    return m->out;
}

/* The job is finished: its offset may move once every publish is acknowledged. */
static void msg_release(msg_t *m)
{
    if (m->pending > 0)
        return;
    worker_t *w = m->w;
    if (!m->publish_failed) {
        nudgel_consumer_done(m->from, m->ref);
    } else if (m == w->current) {
        nudgel_consumer_defer(m->from, m->ref, nudgel_now_unix_ms() + 1000);
    } else {
        nudgel_log_error("job %s could not be finished durably; stopping so it is re-delivered",
                         m->parsed ? m->job.id : "?");
        fatal_stop = true;
        stop_requested = 1;
        return; /* the job stays unfinished: its offset never moves past it */
    }
    msg_free(m);
}

static void on_published(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque)
{
    msg_t *m = opaque;
    (void)cb_opaque;
    if (err) {
        /* Not acknowledged: the job must come again, so its offset stays. */
        nudgel_log_error("publish for job %s failed: %s", m->parsed ? m->job.id : "?", errstr);
        m->publish_failed = true;
    }
    m->pending--;
    msg_release(m);
}

/* ---- Postgres: down, back, and the batched statements ------------------- */

/* Puts @p n items back at the front, in order (they were shifted out just before). */
static void queue_unshift(msg_queue_t *q, msg_t **items, size_t n);

/* Postgres is unreachable: pause intake; jobs already in hand wait in their queues. */
static void postgres_down(worker_t *w, const char *what, const char *errstr)
{
    if (!w->pg_down) {
        nudgel_log_error("%s: %s; pausing intake until Postgres is back", what, errstr);
        w->pg_backoff_ms = 250;
    }
    w->pg_down = true;
    w->pg_retry_at_us = nudgel_mono_us() + w->pg_backoff_ms * 1000;
    nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_POSTGRES);
    nudgel_consumer_pause(w->retry_consumer, NUDGEL_PAUSE_POSTGRES);
    nudgel_metric_set(w->m_pg_up, NULL, 0);
}

/* While down: one reconnect attempt when due (backoff up to pg_reconnect_max_ms). */
static void postgres_revive(worker_t *w)
{
    if (!w->pg_down || nudgel_mono_us() < w->pg_retry_at_us)
        return;
    /* A lane whose statement is still in flight on a live connection keeps it. */
    PGconn *conns[3] = {w->pg, w->claim_lane->conn, w->record_lane->conn};
    bool all_ok = true;
    for (int i = 0; i < 3; i++) {
        if (PQstatus(conns[i]) != CONNECTION_OK) {
            PQreset(conns[i]);
            if (i > 0)
                PQsetnonblocking(conns[i], 1);
        }
        all_ok = all_ok && PQstatus(conns[i]) == CONNECTION_OK;
    }
    if (!all_ok) {
        w->pg_backoff_ms = w->pg_backoff_ms * 2 > w->pg_backoff_max_ms ? w->pg_backoff_max_ms
                                                                       : w->pg_backoff_ms * 2;
        w->pg_retry_at_us = nudgel_mono_us() + w->pg_backoff_ms * 1000;
        return;
    }
    nudgel_log_info("Postgres is back; resuming intake (%zu claim(s), %zu outcome(s) waiting)",
                    w->to_claim.count, w->to_record.count);
    w->pg_down = false;
    nudgel_consumer_resume(w->consumer, NUDGEL_PAUSE_POSTGRES);
    nudgel_consumer_resume(w->retry_consumer, NUDGEL_PAUSE_POSTGRES);
    nudgel_metric_set(w->m_pg_up, NULL, 1);
}

static bool unreachable(nudgel_err_t err)
{
    return err == NUDGEL_ERR_PG_UNREACHABLE;
}

/* After a *_send(): in flight; flushing while libpq still holds unsent bytes. */
static nudgel_err_t lane_sent(pg_lane_t *l, char *errstr, size_t errstr_size)
{
    int r = PQflush(l->conn);
    if (r < 0) {
        snprintf(errstr, errstr_size, "%s: sending: %s", l->name, PQerrorMessage(l->conn));
        return NUDGEL_ERR_PG_UNREACHABLE;
    }
    l->busy = true;
    l->flushing = r == 1;
    return NUDGEL_OK;
}

/*
 * The lane's statement result when it has arrived: 1 and @p *res, 0 while
 * it runs, -1 when the connection is lost (the statement's fate unknown).
 */
static int lane_result(pg_lane_t *l, PGresult **res, char *errstr, size_t errstr_size)
{
    if (l->flushing) {
        int r = PQflush(l->conn);
        if (r == 1)
            return 0;
        l->flushing = false;
        if (r < 0)
            goto lost;
    }
    if (!PQconsumeInput(l->conn))
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
    return -1;
}

/* ---- status events and dead letters ----------------------------------- */

/*
 * The attempt a status event speaks for: the receipt's attempt (its claims)
 * once the job was claimed, so that the same transition always yields the
 * same event id — a sent event re-emitted after a redelivery repeats the id
 * written with the transition, whatever retry hops the job took. Before a
 * claim (malformed, deduplicated): its retry hops + 1.
 */
static int event_attempt(const msg_t *m)
{
    return m->receipt_attempt > 0 ? m->receipt_attempt : m->attempt + 1;
}

/* Status event data from what we know of the job and its outcome. */
static json_t *event_data(const msg_t *m, const char *status, const char *gateway,
                          const char *gateway_message_id, const char *error_code,
                          const char *error_message, bool permanent, const char *cost_amount,
                          const char *currency)
{
    const nudgel_message_job_t *j = &m->job;
    json_t *data = json_object();
    json_object_set_new(data, "message_id", json_string(j->id));
    json_object_set_new(data, "tenant_id", json_string(j->tenant_id));
    if (j->idempotency_key)
        json_object_set_new(data, "idempotency_key", json_string(j->idempotency_key));
    json_object_set_new(data, "to", json_string(j->to));
    if (j->phone.country[0])
        json_object_set_new(data, "country", json_string(j->phone.country));
    if (j->phone.operator_name)
        json_object_set_new(data, "operator", json_string(j->phone.operator_name));
    if (gateway && *gateway)
        json_object_set_new(data, "gateway", json_string(gateway));
    if (gateway_message_id && *gateway_message_id)
        json_object_set_new(data, "gateway_message_id", json_string(gateway_message_id));
    json_object_set_new(data, "status", json_string(status));
    if (error_code && *error_code)
        json_object_set_new(data, "error",
                            json_pack("{s:s, s:s, s:b}", "code", error_code, "message",
                                      error_message ? error_message : "", "permanent", permanent));
    if (m->text) {
        json_object_set_new(data, "encoding",
                            json_string(nudgel_sms_encoding_name(m->sms.encoding)));
        json_object_set_new(data, "segments", json_integer((json_int_t)m->sms.segments));
    }
    if (cost_amount && *cost_amount && currency && *currency)
        json_object_set_new(data, "cost",
                            json_pack("{s:s, s:s}", "amount", cost_amount, "currency", currency));
    json_object_set_new(data, "attempt", json_integer(event_attempt(m)));
    if (j->metadata)
        json_object_set(data, "metadata", j->metadata);
    return data;
}

static void publish_event_for(msg_t *m, const char *subject, const char *tenant, const char *status,
                              json_t *data)
{
    char type[64];
    snprintf(type, sizeof(type), "ai.nudgel.message.%s", status);
    json_t *ev =
        nudgel_event_build("/nudgel/messages", type, subject, tenant, event_attempt(m),
                           nudgel_now_unix_ms(), m->traceparent[0] ? m->traceparent : NULL, data);
    m->pending++;
    if (nudgel_publish_event(m->w->publisher, m->w->topic_status, tenant, ev, m->traceparent, m) !=
        NUDGEL_OK) {
        m->pending--;
        m->publish_failed = true;
    }
}

static void publish_event(msg_t *m, const char *status, json_t *data)
{
    publish_event_for(m, m->job.id, m->job.tenant_id, status, data);
}

static void publish_dlq(msg_t *m, const char *reason)
{
    m->pending++;
    if (nudgel_publish_dlq(m->w->publisher, m->w->topic_dlq, nudgel_job_message(m->ref), reason,
                           m) != NUDGEL_OK) {
        m->pending--;
        m->publish_failed = true;
    }
}

static bool valid_tenant(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/*
 * A job that cannot be parsed: a dead letter with the reason, and a failed
 * status event so the caller hears of it. The event's subject is the job's
 * id when it has a valid one, else an id derived from where the bytes were
 * (topic/partition/offset), stable over redeliveries; its tenant is the
 * job's, else the Kafka key's, else "unknown". No receipt is written: with
 * no valid id there is no row to own it.
 */
static void reject_malformed(worker_t *w, msg_t *m, const char *reason)
{
    const rd_kafka_message_t *km = nudgel_job_message(m->ref);
    char subject[NUDGEL_UUID_STR_LEN + 1] = "", tenant[65] = "unknown";
    uint8_t raw[16];
    json_t *doc = km->len ? json_loadb(km->payload, km->len, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *t = json_string_value(json_object_get(doc, "tenant_id"));
    if (id && strlen(id) == NUDGEL_UUID_STR_LEN && nudgel_uuid_parse(id, raw) == 0) {
        nudgel_uuid_format(raw, subject);
    } else {
        char origin[320], derived[NUDGEL_EVENT_ID_LEN + 1];
        snprintf(origin, sizeof(origin), "%s/%d/%lld", rd_kafka_topic_name(km->rkt),
                 (int)km->partition, (long long)km->offset);
        nudgel_event_id(origin, "malformed", 0, derived);
        snprintf(subject, sizeof(subject), "%s", derived);
    }
    if (valid_tenant(t)) {
        snprintf(tenant, sizeof(tenant), "%s", t);
    } else if (km->key && km->key_len > 0 && km->key_len < sizeof(tenant)) {
        char key[65];
        memcpy(key, km->key, km->key_len);
        key[km->key_len] = '\0';
        if (valid_tenant(key))
            snprintf(tenant, sizeof(tenant), "%s", key);
    }
    json_decref(doc);
    nudgel_log_warn("malformed job at %s[%d]@%lld: %s", rd_kafka_topic_name(km->rkt), km->partition,
                    (long long)km->offset, reason);
    nudgel_metric_add(w->m_outcomes, "malformed", 1);
    json_t *data = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:b}, s:i}", "message_id", subject,
                             "tenant_id", tenant, "status", "failed", "error", "code", "malformed",
                             "message", reason, "permanent", 1, "attempt", m->attempt + 1);
    publish_event_for(m, subject, tenant, "failed", data);
    publish_dlq(m, reason);
}

/* ---- outcomes: queued, written in one statement, then published ------- */

static void copy_opt(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

/* The final (or sent) outcome: written with the next batch, then its event. */
static void finish(msg_t *m, nudgel_receipt_state_t state, const char *gateway,
                   const char *gateway_message_id, const char *error_code,
                   const char *error_message, const char *cost_amount, const char *currency,
                   const char *dlq_reason)
{
    outcome_t *o = outcome_of(m);
    if (!o) {
        nudgel_log_error("out of memory recording the outcome of %s", m->job.id);
        m->publish_failed = true;
        msg_release(m);
        return;
    }
    o->kind = OUTCOME_RECORD;
    o->state = state;
    copy_opt(o->gateway, sizeof(o->gateway), gateway);
    copy_opt(o->gateway_message_id, sizeof(o->gateway_message_id), gateway_message_id);
    copy_opt(o->error_code, sizeof(o->error_code), error_code);
    copy_opt(o->error_message, sizeof(o->error_message), error_message);
    copy_opt(o->cost_amount, sizeof(o->cost_amount), cost_amount);
    copy_opt(o->currency, sizeof(o->currency), currency);
    o->dlq_reason = dlq_reason;
    if (!queue_push(&m->w->to_record, m)) {
        nudgel_log_error("out of memory queueing the outcome of %s", m->job.id);
        m->publish_failed = true;
        msg_release(m);
    }
}

/*
 * A transient failure: the next retry tier (our claim is released first, so
 * the retried job takes it over at once), or the end of the ladder.
 */
static void retry_or_give_up(msg_t *m, const char *error_code, const char *error_message,
                             int64_t retry_after_ms)
{
    worker_t *w = m->w;
    if (m->attempt >= TIERS) {
        finish(m, NUDGEL_RECEIPT_FAILED, m->gateway ? nudgel_gateway_name(m->gateway) : NULL, NULL,
               error_code, error_message, NULL, NULL, "retries exhausted");
        return;
    }
    int64_t delay = w->tier_delay_ms[m->attempt];
    if (retry_after_ms > delay)
        delay = retry_after_ms;
    outcome_t *o = outcome_of(m);
    if (!o) {
        m->publish_failed = true;
        msg_release(m);
        return;
    }
    o->kind = OUTCOME_RETRY;
    o->retry_topic = w->topic_retry[m->attempt];
    o->retry_attempt = m->attempt + 1;
    o->not_before_ms = nudgel_now_unix_ms() + delay;
    o->release_claim = true;
    snprintf(o->error_code, sizeof(o->error_code), "%s", error_code);
    snprintf(o->error_message, sizeof(o->error_message), "%s", error_message);
    if (!queue_push(&w->to_record, m)) {
        m->publish_failed = true;
        msg_release(m);
    }
}

/*
 * Another worker holds a fresh claim on this message (a rebalance hand-over,
 * or a duplicate in the topic): come back once that claim could be stale. It
 * is not our failure, so it uses no rung of the ladder and can never end the
 * message as failed while the other worker may still be sending it.
 */
static void wait_for_other_claim(msg_t *m)
{
    worker_t *w = m->w;
    int tier = m->attempt < TIERS ? m->attempt : TIERS - 1;
    int64_t delay = w->tier_delay_ms[tier] > w->stale_ms ? w->tier_delay_ms[tier] : w->stale_ms;
    outcome_t *o = outcome_of(m);
    if (!o) {
        m->publish_failed = true;
        msg_release(m);
        return;
    }
    o->kind = OUTCOME_RETRY;
    o->retry_topic = w->topic_retry[tier];
    o->retry_attempt = m->attempt; /* unchanged */
    o->not_before_ms = nudgel_now_unix_ms() + delay;
    o->release_claim = false;
    snprintf(o->error_code, sizeof(o->error_code), "in_progress");
    snprintf(o->error_message, sizeof(o->error_message), "another worker holds the claim");
    if (!queue_push(&w->to_record, m)) {
        m->publish_failed = true;
        msg_release(m);
    }
}

/* After the batch is durable: metrics, the event, a dead letter or a retry hop. */
static void publish_outcome(msg_t *m, const nudgel_receipt_applied_t *applied)
{
    worker_t *w = m->w;
    outcome_t *o = m->out;
    if (o->kind == OUTCOME_RETRY) {
        char last_error[400];
        snprintf(last_error, sizeof(last_error), "%s: %s", o->error_code, o->error_message);
        m->pending++;
        if (nudgel_publish_retry(w->publisher, o->retry_topic, nudgel_job_message(m->ref),
                                 o->retry_attempt, o->not_before_ms, m->first_seen_ms, last_error,
                                 m) != NUDGEL_OK) {
            m->pending--;
            m->publish_failed = true;
        }
        nudgel_metric_add(w->m_outcomes, o->release_claim ? "retried" : "waiting_for_claim", 1);
        msg_release(m);
        return;
    }
    const char *status = nudgel_receipt_state_name(o->state);
    if (applied && (applied->outcome == NUDGEL_RECEIPT_REFUSED ||
                    applied->outcome == NUDGEL_RECEIPT_NOT_FOUND)) {
        /* Someone else moved the receipt on (a late worker, a DLR): their event stands. */
        nudgel_log_warn("receipt %s: %s refused (%s, now %s)", m->job.id, status,
                        nudgel_receipt_apply_name(applied->outcome),
                        nudgel_receipt_state_name(applied->now));
        nudgel_metric_add(w->m_outcomes, "refused", 1);
    } else {
        nudgel_metric_add(w->m_outcomes, status, 1);
        bool permanent = o->state == NUDGEL_RECEIPT_FAILED || o->state == NUDGEL_RECEIPT_REJECTED ||
                         o->state == NUDGEL_RECEIPT_EXPIRED;
        publish_event(m, status,
                      event_data(m, status, o->gateway, o->gateway_message_id, o->error_code,
                                 o->error_message, permanent, o->cost_amount, o->currency));
    }
    if (o->dlq_reason)
        publish_dlq(m, o->dlq_reason);
    msg_release(m);
}

/*
 * The outcomes lane: collects the statement in flight (then publishes each
 * job's event, dead letter or retry hop), and sends the next one with every
 * queued outcome: the receipts and released claims of up to
 * NUDGEL_RECEIPTS_BATCH_MAX jobs in one statement. When Postgres is
 * unreachable the outcomes go back to the queue (and intake pauses) until it
 * is back: nothing is published before it is durable.
 */
static void outcomes_pump(worker_t *w)
{
    pg_lane_t *l = w->record_lane;
    char errstr[512];
    if (l->busy) {
        PGresult *res = NULL;
        int st = lane_result(l, &res, errstr, sizeof(errstr));
        if (st == 0)
            return;
        nudgel_err_t err = st < 0
                               ? NUDGEL_ERR_PG_UNREACHABLE
                               : nudgel_receipts_record_read(l->conn, res, l->results, l->nresults,
                                                             l->applied, errstr, sizeof(errstr));
        PQclear(res);
        size_t n = l->n;
        l->n = 0;
        if (unreachable(err)) {
            queue_unshift(&w->to_record, l->batch, n);
            postgres_down(w, "writing outcomes", errstr);
            return;
        }
        if (err != NUDGEL_OK) {
            /* A statement error (not the connection): the jobs come again, the
             * claim makes that safe. Logged, counted, never silent. */
            nudgel_log_error("writing %zu outcome(s): %s", n, errstr);
            for (size_t i = 0; i < n; i++) {
                l->batch[i]->publish_failed = true;
                msg_release(l->batch[i]);
            }
        } else {
            for (size_t i = 0; i < n; i++)
                publish_outcome(l->batch[i],
                                l->result_of[i] >= 0 ? &l->applied[l->result_of[i]] : NULL);
        }
    }
    if (l->busy || w->pg_down || w->to_record.count == 0)
        return;
    size_t n = w->to_record.count < NUDGEL_RECEIPTS_BATCH_MAX ? w->to_record.count
                                                              : NUDGEL_RECEIPTS_BATCH_MAX;
    l->nresults = l->nreleases = 0;
    for (size_t i = 0; i < n; i++) {
        msg_t *m = w->to_record.items[i];
        /* One receipt per message id per statement: a second outcome of the
         * same id (a duplicate in the topic) waits for the next statement. */
        bool repeated = false;
        for (size_t k = 0; k < l->nresults && !repeated && m->out->kind == OUTCOME_RECORD; k++)
            repeated = strcmp(l->results[k].message_id, m->job.id) == 0;
        if (repeated) {
            n = i;
            break;
        }
        l->result_of[i] = -1;
        if (m->out->kind == OUTCOME_RETRY) {
            if (m->out->release_claim)
                l->release_ids[l->nreleases++] = m->job.id;
            continue;
        }
        outcome_t *o = m->out;
        char type[64];
        size_t r = l->nresults++;
        snprintf(type, sizeof(type), "ai.nudgel.message.%s", nudgel_receipt_state_name(o->state));
        nudgel_event_id(m->job.id, type, event_attempt(m), l->event_ids[r]);
        l->result_of[i] = (int)r;
        l->results[r] = (nudgel_receipt_result_t){
            .message_id = m->job.id,
            .status = o->state,
            .gateway = o->gateway[0] ? o->gateway : NULL,
            .gateway_message_id = o->gateway_message_id[0] ? o->gateway_message_id : NULL,
            .error_code = o->error_code[0] ? o->error_code : NULL,
            .error_message = o->error_message[0] ? o->error_message : NULL,
            .encoding = m->text ? nudgel_sms_encoding_name(m->sms.encoding) : NULL,
            .segments = m->text ? (int)m->sms.segments : -1,
            .cost_amount = o->cost_amount[0] ? o->cost_amount : NULL,
            .cost_currency = o->currency[0] ? o->currency : NULL,
            .event_id = l->event_ids[r],
        };
    }
    memcpy(l->batch, w->to_record.items, n * sizeof(l->batch[0]));
    l->n = n;
    queue_shift(&w->to_record, n);
    nudgel_metric_observe(w->m_pg_batch, "record", (double)n);
    if (l->nresults == 0 && l->nreleases == 0) {
        /* Only retries of someone else's claim: nothing to write. */
        l->n = 0;
        for (size_t i = 0; i < n; i++)
            publish_outcome(l->batch[i], NULL);
        return;
    }
    nudgel_err_t err =
        nudgel_receipts_record_send(l->conn, l->results, l->nresults, l->release_ids, l->nreleases,
                                    w->worker_id, errstr, sizeof(errstr));
    if (err == NUDGEL_OK)
        err = lane_sent(l, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        queue_unshift(&w->to_record, l->batch, n);
        l->n = 0;
        l->busy = false;
        postgres_down(w, "writing outcomes", errstr);
    }
}

/* ---- templates (cached per tenant, name and locale) ------------------- */

static void cached_template_free(void *p)
{
    cached_template_t *t = p;
    free(t->body);
    free(t);
}

static size_t template_key(const nudgel_message_job_t *j, char *key, size_t size)
{
    int n = snprintf(key, size, "%s%c%s%c%s", j->tenant_id, '\0', j->template_name, '\0',
                     j->locale ? j->locale : "en");
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* The cache entry of @p j's template when fresh; NULL when absent or stale. */
static cached_template_t *template_cached(worker_t *w, const nudgel_message_job_t *j)
{
    char key[512];
    size_t len = template_key(j, key, sizeof(key));
    nudgel_keyq_entry_t *e = len ? nudgel_keyq_get(w->templates, key, len, false) : NULL;
    cached_template_t *t = e ? *nudgel_keyq_data(e) : NULL;
    return t && nudgel_mono_us() - t->loaded_us < w->template_ttl_us ? t : NULL;
}

/* Loads @p j's template (by name and locale, else "en") into the cache. */
static nudgel_err_t template_load(worker_t *w, const nudgel_message_job_t *j, char *errstr,
                                  size_t errstr_size)
{
    char key[512];
    size_t len = template_key(j, key, sizeof(key));
    if (!len) {
        snprintf(errstr, errstr_size, "template name or locale too long");
        return NUDGEL_ERR_INVALID_FIELD;
    }
    const char *params[3] = {j->tenant_id, j->template_name, j->locale ? j->locale : "en"};
    PGresult *res =
        PQexecParams(w->pg,
                     "SELECT body FROM nudgel.message_templates WHERE tenant_id = $1 AND name = $2 "
                     "AND locale IN ($3, 'en') ORDER BY (locale = $3) DESC LIMIT 1",
                     3, NULL, params, NULL, NULL, 0);
    nudgel_err_t err = NUDGEL_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "loading template: %s", PQerrorMessage(w->pg));
        err = PQstatus(w->pg) == CONNECTION_OK ? NUDGEL_ERR_PG : NUDGEL_ERR_PG_UNREACHABLE;
        PQclear(res);
        return err;
    }
    nudgel_keyq_entry_t *e = nudgel_keyq_get(w->templates, key, len, true);
    cached_template_t *t = e ? *nudgel_keyq_data(e) : NULL;
    if (e && !t && (t = calloc(1, sizeof(*t))))
        *nudgel_keyq_data(e) = t;
    if (!t) {
        PQclear(res);
        snprintf(errstr, errstr_size, "out of memory caching a template");
        return NUDGEL_ERR_NO_MEMORY;
    }
    free(t->body);
    t->body = PQntuples(res) > 0 ? strdup(PQgetvalue(res, 0, 0)) : NULL;
    t->loaded_us = nudgel_mono_us();
    PQclear(res);
    return NUDGEL_OK;
}

/* ---- tenant limits (nudgel.tenant_limits, refreshed) ------------------ */

static int cmp_limit_row(const void *a, const void *b)
{
    return strcmp(((const tenant_limit_row_t *)a)->tenant, ((const tenant_limit_row_t *)b)->tenant);
}

static void tenant_limits_refresh(worker_t *w)
{
    int64_t now = nudgel_mono_us();
    if (w->pg_down || now < w->tenant_limits_at_us)
        return;
    w->tenant_limits_at_us = now + w->tenant_limits_every_us;
    PGresult *res = PQexec(w->pg, "SELECT tenant_id, coalesce(max_in_flight, 0), "
                                  "coalesce(send_rate_per_second, 0)::float8, coalesce(burst, 0) "
                                  "FROM nudgel.tenant_limits");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char errstr[256];
        snprintf(errstr, sizeof(errstr), "%s", PQerrorMessage(w->pg));
        PQclear(res);
        if (PQstatus(w->pg) != CONNECTION_OK)
            postgres_down(w, "loading tenant limits", errstr);
        else
            nudgel_log_warn("loading tenant limits: %s; keeping the last ones", errstr);
        return;
    }
    size_t n = (size_t)PQntuples(res);
    tenant_limit_row_t *rows = n ? calloc(n, sizeof(*rows)) : NULL;
    if (n && !rows) {
        PQclear(res);
        return;
    }
    const nudgel_tenant_limits_t *d = &w->tenant_defaults;
    for (size_t i = 0; i < n; i++) {
        snprintf(rows[i].tenant, sizeof(rows[i].tenant), "%s", PQgetvalue(res, (int)i, 0));
        long cap = atol(PQgetvalue(res, (int)i, 1));
        double rate = atof(PQgetvalue(res, (int)i, 2));
        long burst = atol(PQgetvalue(res, (int)i, 3));
        rows[i].limits.max_in_flight = cap > 0 ? (uint32_t)cap : d->max_in_flight;
        rows[i].limits.rate =
            rate > 0 ? (rate > NUDGEL_THROTTLE_RATE_MAX ? NUDGEL_THROTTLE_RATE_MAX : rate)
                     : d->rate;
        rows[i].limits.burst = burst > 0 ? (uint32_t)(burst > (long)NUDGEL_THROTTLE_BURST_MAX
                                                          ? NUDGEL_THROTTLE_BURST_MAX
                                                          : (uint32_t)burst)
                                         : (rate > 0 ? (uint32_t)(rate < 1 ? 1 : rate) : d->burst);
    }
    PQclear(res);
    if (n > 1)
        qsort(rows, n, sizeof(*rows), cmp_limit_row);
    free(w->tenant_limits);
    w->tenant_limits = rows;
    w->tenant_limit_count = n;
}

static const nudgel_tenant_limits_t *limits_of(worker_t *w, const char *tenant)
{
    tenant_limit_row_t key;
    snprintf(key.tenant, sizeof(key.tenant), "%s", tenant);
    tenant_limit_row_t *row =
        w->tenant_limit_count
            ? bsearch(&key, w->tenant_limits, w->tenant_limit_count, sizeof(key), cmp_limit_row)
            : NULL;
    return row ? &row->limits : &w->tenant_defaults;
}

/* ---- lanes: gateway buckets, circuits, in-flight caps ------------------ */

static void enqueue_on_lane(gateway_lane_t *lane, msg_t *m)
{
    m->gateway = lane->gateway;
    m->next_waiting = NULL;
    if (lane->tail)
        lane->tail->next_waiting = m;
    else
        lane->head = m;
    lane->tail = m;
}

/*
 * The first gateway of @p m's route, after @p after (NULL: from the start),
 * whose circuit is not open; NULL when every one is.
 */
static gateway_lane_t *next_open_lane(worker_t *w, const msg_t *m, const nudgel_gateway_t *after)
{
    size_t i = 0;
    if (after)
        while (i < m->route.count && m->route.gateways[i] != after)
            i++;
    for (i = after ? i + 1 : 0; i < m->route.count; i++) {
        gateway_lane_t *lane = lane_for(w, m->route.gateways[i]);
        if (lane && lane->breaker.state != NUDGEL_BREAKER_OPEN)
            return lane;
    }
    return NULL;
}

/* Milliseconds until the first of @p m's gateways may take a probe again. */
static int64_t until_a_circuit_half_opens(worker_t *w, const msg_t *m)
{
    int64_t now = nudgel_mono_us(), best = -1;
    for (size_t i = 0; i < m->route.count; i++) {
        gateway_lane_t *lane = lane_for(w, m->route.gateways[i]);
        if (!lane)
            continue;
        int64_t left = lane->breaker.opened_at_us + lane->breaker.open_us - now;
        left = left > 0 ? left / 1000 : 0;
        if (best < 0 || left < best)
            best = left;
    }
    return best;
}

/* ---- gates: one recipient's jobs in order, each tenant within its limits */

static void tenant_gate(worker_t *w, msg_t *m);

static size_t recipient_key(const msg_t *m, char *key, size_t size)
{
    int n = snprintf(key, size, "%s%c%s", m->job.tenant_id, '\0', m->job.to);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* Onto its gateway's lane, or a retry hop when every circuit of its route is open. */
static void to_lane(worker_t *w, msg_t *m);

/*
 * Lets @p m go through its tenant's limits when it may, else parks it in
 * the tenant's queue (FIFO) until a job of the tenant ends or its rate
 * allows (gates_tick()).
 */
static void tenant_gate(worker_t *w, msg_t *m)
{
    nudgel_keyq_entry_t *e =
        nudgel_keyq_get(w->tenant_waits, m->job.tenant_id, strlen(m->job.tenant_id), true);
    if (!e) {
        m->publish_failed = true; /* out of memory: comes again */
        msg_release(m);
        return;
    }
    if (nudgel_keyq_waiting(e) == 0) {
        nudgel_tenant_verdict_t verdict;
        int64_t retry_at = -1;
        if (nudgel_throttle_tenants_acquire(w->tenants, m->job.tenant_id,
                                            limits_of(w, m->job.tenant_id), nudgel_mono_us(),
                                            &verdict, &retry_at) != NUDGEL_OK)
            verdict = NUDGEL_TENANT_OK; /* a tenant id the schema let through: no limit */
        else if (verdict == NUDGEL_TENANT_OK)
            m->holds_tenant = true;
        if (verdict == NUDGEL_TENANT_OK) {
            nudgel_keyq_drop_if_idle(w->tenant_waits, e);
            to_lane(w, m);
            return;
        }
        *nudgel_keyq_not_before(e) = verdict == NUDGEL_TENANT_RATE_LIMITED ? retry_at : 0;
    }
    if (!nudgel_keyq_push(w->tenant_waits, e, m)) {
        m->publish_failed = true;
        msg_release(m);
    }
}

/* Lets the parked jobs of the tenant of @p e go while its limits allow. */
static void tenant_admit(worker_t *w, nudgel_keyq_entry_t *e)
{
    int64_t now = nudgel_mono_us();
    if (*nudgel_keyq_not_before(e) > now)
        return;
    msg_t *m;
    while ((m = nudgel_keyq_peek(e))) {
        nudgel_tenant_verdict_t verdict;
        int64_t retry_at = -1;
        if (nudgel_throttle_tenants_acquire(w->tenants, m->job.tenant_id,
                                            limits_of(w, m->job.tenant_id), now, &verdict,
                                            &retry_at) != NUDGEL_OK)
            verdict = NUDGEL_TENANT_OK;
        else if (verdict == NUDGEL_TENANT_OK)
            m->holds_tenant = true;
        if (verdict != NUDGEL_TENANT_OK) {
            *nudgel_keyq_not_before(e) = verdict == NUDGEL_TENANT_RATE_LIMITED ? retry_at : 0;
            return;
        }
        nudgel_keyq_pop(w->tenant_waits, e);
        to_lane(w, m);
    }
    nudgel_keyq_drop_if_idle(w->tenant_waits, e);
}

/*
 * Each turn: jobs whose recipient's turn came go to their tenant's gate, then
 * parked tenants get another look (a job of theirs ended, or their rate
 * allows one again). Done here, not from the callbacks that free a place, so
 * no gate is ever re-entered while it is being walked.
 */
static void gates_tick(worker_t *w)
{
    for (size_t i = 0; i < w->recipient_ready.count; i++)
        tenant_gate(w, w->recipient_ready.items[i]);
    w->recipient_ready.count = 0;
    int64_t now = nudgel_mono_us();
    for (nudgel_keyq_entry_t *e = nudgel_keyq_first_waiting(w->tenant_waits), *next; e; e = next) {
        next = nudgel_keyq_next_waiting(e);
        if (*nudgel_keyq_not_before(e) <= now)
            tenant_admit(w, e);
    }
}

/*
 * DESIGN §5 ordering: jobs to one recipient (tenant, to) are submitted in
 * order. The first holds the recipient until its submission is answered;
 * later ones wait behind it in poll order. A job that leaves for a retry tier
 * gives up its place (it comes back later, as a new arrival).
 */
static void recipient_gate(worker_t *w, msg_t *m)
{
    char key[NUDGEL_TENANT_ID_MAX + 40];
    size_t len = recipient_key(m, key, sizeof(key));
    nudgel_keyq_entry_t *e = len ? nudgel_keyq_get(w->recipients, key, len, true) : NULL;
    if (!e) {
        m->publish_failed = true;
        msg_release(m);
        return;
    }
    if (*nudgel_keyq_holders(e) == 0) {
        *nudgel_keyq_holders(e) = 1;
        m->holds_recipient = true;
        tenant_gate(w, m);
    } else if (!nudgel_keyq_push(w->recipients, e, m)) {
        m->publish_failed = true;
        msg_release(m);
    }
}

/* @p m's submission is over (answered, or abandoned before it): free its places. */
static void leave_gates(worker_t *w, msg_t *m)
{
    if (m->holds_tenant) {
        m->holds_tenant = false;
        nudgel_throttle_tenants_release(w->tenants, m->job.tenant_id);
        nudgel_keyq_entry_t *e =
            nudgel_keyq_get(w->tenant_waits, m->job.tenant_id, strlen(m->job.tenant_id), false);
        if (e)
            *nudgel_keyq_not_before(e) = 0; /* gates_tick() admits, later this turn */
    }
    if (m->holds_recipient) {
        m->holds_recipient = false;
        char key[NUDGEL_TENANT_ID_MAX + 40];
        size_t len = recipient_key(m, key, sizeof(key));
        nudgel_keyq_entry_t *e = nudgel_keyq_get(w->recipients, key, len, false);
        if (!e)
            return;
        msg_t *next = nudgel_keyq_pop(w->recipients, e);
        if (next) {
            next->holds_recipient = true; /* the place passes on; holders stays 1 */
            if (!queue_push(&w->recipient_ready, next)) {
                next->publish_failed = true;
                msg_release(next);
            }
        } else {
            *nudgel_keyq_holders(e) = 0;
            nudgel_keyq_drop_if_idle(w->recipients, e);
        }
    }
}

static void to_lane(worker_t *w, msg_t *m)
{
    gateway_lane_t *lane = next_open_lane(w, m, NULL);
    if (lane) {
        enqueue_on_lane(lane, m);
        return;
    }
    leave_gates(w, m);
    retry_or_give_up(m, "circuit_open", "every gateway of the route has an open circuit",
                     until_a_circuit_half_opens(w, m));
}

/* ---- the gateway submission ------------------------------------------- */

static void on_gateway_answer(void *opaque, const nudgel_http_response_t *r)
{
    msg_t *m = opaque;
    worker_t *w = m->w;
    nudgel_gateway_response_t resp = {
        .transport_error = r->transport_error,
        .transport_detail = r->error,
        .http_status = (int)r->status,
        .body = r->body,
        .body_len = r->body_len,
        .retry_after = r->retry_after,
        .now_unix_ms = nudgel_now_unix_ms(),
    };
    nudgel_gateway_outcome_t out;
    nudgel_metric_observe(w->m_submit_latency, NULL, r->total_ms / 1000.0);
    nudgel_gateway_classify(m->gateway, &resp, &out);
    const char *gw = nudgel_gateway_name(m->gateway);
    gateway_lane_t *lane = lane_for(w, m->gateway);
    lane->in_flight--;
    nudgel_breaker_state_t before = lane->breaker.state;
    nudgel_breaker_record(&lane->breaker, out.kind == NUDGEL_GATEWAY_TRANSIENT, nudgel_mono_us());
    if (lane->breaker.state != before)
        nudgel_log_warn("gateway %s: circuit %s", gw,
                        nudgel_breaker_state_name(lane->breaker.state));
    leave_gates(w, m);
    switch (out.kind) {
    case NUDGEL_GATEWAY_SENT:
        finish(m, NUDGEL_RECEIPT_SENT, gw, out.message_id, NULL, NULL,
               out.has_cost ? out.cost_amount : NULL, out.has_cost ? out.currency : NULL, NULL);
        break;
    case NUDGEL_GATEWAY_PERMANENT:
        finish(m,
               strcmp(out.receipt_status, "rejected") == 0 ? NUDGEL_RECEIPT_REJECTED
                                                           : NUDGEL_RECEIPT_FAILED,
               gw, NULL, out.error_code, out.error_message, NULL, NULL, NULL);
        break;
    case NUDGEL_GATEWAY_TRANSIENT:
        if (out.maybe_accepted)
            nudgel_metric_add(w->m_outcomes, "maybe_accepted", 1);
        retry_or_give_up(m, out.error_code, out.error_message, out.retry_after_ms);
        break;
    }
}

static void submit(msg_t *m)
{
    worker_t *w = m->w;
    char errstr[256];
    nudgel_gateway_request_t req;
    nudgel_gateway_message_t gm = {
        .client_ref = m->job.id,
        .to = m->job.to,
        .from = m->job.from,
        .text = m->text,
        .callback_url = w->callback_url,
        .validity_minutes = 0,
    };
    if (nudgel_gateway_build_request(m->gateway, &gm, &req, errstr, sizeof(errstr)) != NUDGEL_OK) {
        leave_gates(w, m);
        finish(m, NUDGEL_RECEIPT_FAILED, nudgel_gateway_name(m->gateway), NULL, "invalid_request",
               errstr, NULL, NULL, NULL);
        return;
    }
    nudgel_http_request_t hr = {.method = req.method,
                                .url = req.url,
                                .body = req.body,
                                .body_len = req.body_len,
                                .total_timeout_ms = 10000};
    for (size_t i = 0; i < req.header_count && i < NUDGEL_HTTP_MAX_HEADERS - 1; i++)
        hr.headers[i] = req.headers[i];
    nudgel_err_t err = nudgel_http_submit(w->http, &hr, on_gateway_answer, m);
    nudgel_gateway_request_clear(&req);
    if (err == NUDGEL_OK) {
        lane_for(w, m->gateway)->in_flight++;
        return;
    }
    leave_gates(w, m);
    retry_or_give_up(m, "submit_failed", nudgel_strerror(err), -1);
}

/*
 * Sends what each gateway allows now (its token bucket, its in-flight cap,
 * its circuit); a job whose gateway's circuit opened while it waited moves to
 * the next gateway of its route, or to a retry tier when none is left.
 */
static void drain_lanes(worker_t *w)
{
    int64_t now = nudgel_mono_us();
    for (size_t i = 0; i < w->lane_count; i++) {
        gateway_lane_t *lane = &w->lanes[i];
        while (lane->head && lane->in_flight < w->gateway_max_in_flight) {
            msg_t *m = lane->head;
            if (nudgel_throttle_bucket_tokens(lane->bucket, now) < 1)
                break;
            bool allowed = nudgel_breaker_allow(&lane->breaker, now);
            if (allowed)
                nudgel_throttle_bucket_try_take(lane->bucket, 1, now);
            lane->head = m->next_waiting;
            if (!lane->head)
                lane->tail = NULL;
            if (allowed) {
                submit(m);
                continue;
            }
            gateway_lane_t *next = next_open_lane(w, m, lane->gateway);
            if (next) {
                enqueue_on_lane(next, m);
            } else {
                leave_gates(w, m);
                retry_or_give_up(m, "circuit_open",
                                 "every gateway of the route has an open circuit",
                                 until_a_circuit_half_opens(w, m));
            }
        }
    }
}

/* ---- a claimed job: body, segments, route, then the gates -------------- */

static void prepare_and_route(worker_t *w, msg_t *m)
{
    char errstr[512];
    int64_t now = nudgel_now_unix_ms();
    int64_t expires =
        m->job.expires_at_ms ? m->job.expires_at_ms : m->job.created_at_ms + w->validity_ms;
    if (now >= expires) {
        finish(m, NUDGEL_RECEIPT_EXPIRED, NULL, NULL, "expired", "validity ended before sending",
               NULL, NULL, "expired before it could be sent");
        return;
    }
    if (m->job.body) {
        m->text = strdup(m->job.body);
    } else {
        cached_template_t *t = template_cached(w, &m->job);
        if (!t) {
            /* Prefetched before the claim; only a tiny cache TTL gets here. */
            nudgel_err_t err = template_load(w, &m->job, errstr, sizeof(errstr));
            if (err != NUDGEL_OK) {
                if (unreachable(err))
                    postgres_down(w, "loading a template", errstr);
                retry_or_give_up(m, "template_unavailable", errstr, -1);
                return;
            }
            t = template_cached(w, &m->job);
        }
        if (!t || !t->body) {
            snprintf(errstr, sizeof(errstr), "template \"%s\" (%s) does not exist for tenant %s",
                     m->job.template_name, m->job.locale ? m->job.locale : "en", m->job.tenant_id);
            finish(m, NUDGEL_RECEIPT_FAILED, NULL, NULL, "template", errstr, NULL, NULL,
                   "template does not exist");
            return;
        }
        json_t *empty = m->job.variables ? NULL : json_object();
        nudgel_err_t err =
            nudgel_template_render(t->body, m->job.variables ? m->job.variables : empty, 0,
                                   &m->text, NULL, errstr, sizeof(errstr));
        json_decref(empty);
        if (err != NUDGEL_OK) {
            finish(m, NUDGEL_RECEIPT_FAILED, NULL, NULL, "template", errstr, NULL, NULL,
                   "template could not be rendered");
            return;
        }
    }
    if (!m->text || nudgel_sms_encoding_measure(m->text, strlen(m->text), &m->sms, errstr,
                                                sizeof(errstr)) != NUDGEL_OK) {
        free(m->text);
        m->text = NULL;
        finish(m, NUDGEL_RECEIPT_FAILED, NULL, NULL, "encoding", errstr, NULL, NULL,
               "text could not be encoded");
        return;
    }
    nudgel_gateway_route_t route;
    if (nudgel_gateway_route(w->gateways, m->job.phone.country, m->job.phone.operator_name, &route,
                             errstr, sizeof(errstr)) != NUDGEL_OK ||
        route.count == 0) {
        finish(m, NUDGEL_RECEIPT_REJECTED, NULL, NULL, "no_route", errstr, NULL, NULL,
               "no route for the number");
        return;
    }
    m->route = route;
    recipient_gate(w, m);
}

static void on_claimed(worker_t *w, msg_t *m, const nudgel_receipt_claim_t *claim)
{
    switch (claim->outcome) {
    case NUDGEL_RECEIPT_CLAIM_FRESH:
    case NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE:
        m->receipt_attempt = claim->receipt.attempt;
        prepare_and_route(w, m);
        return;
    case NUDGEL_RECEIPT_CLAIM_IN_PROGRESS:
        wait_for_other_claim(m);
        return;
    case NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL: {
        /* Sent before: re-emit its event with the same id, send nothing. */
        const nudgel_receipt_t *r = &claim->receipt;
        const char *status = nudgel_receipt_state_name(r->status);
        m->receipt_attempt = r->attempt;
        publish_event(m, status,
                      event_data(m, status, r->gateway, r->gateway_message_id,
                                 r->error_code[0] ? r->error_code : NULL, r->error_message, true,
                                 r->cost_amount, r->cost_currency));
        nudgel_metric_add(w->m_outcomes, "replayed", 1);
        msg_release(m);
        return;
    }
    case NUDGEL_RECEIPT_CLAIM_DEDUPLICATED:
        publish_event(m, "deduplicated",
                      event_data(m, "deduplicated", NULL, NULL, NULL, NULL, false, NULL, NULL));
        nudgel_metric_add(w->m_outcomes, "deduplicated", 1);
        msg_release(m);
        return;
    }
}

/* A batched claim failed as a statement: claim one by one so one bad job cannot hold the rest. */
static void claim_one_by_one(worker_t *w, msg_t **batch, size_t n, const char *why)
{
    char errstr[512];
    nudgel_log_warn("batched claim failed (%s); claiming one by one", why);
    for (size_t i = 0; i < n; i++) {
        msg_t *m = batch[i];
        nudgel_receipt_claim_t claim;
        nudgel_err_t err = nudgel_receipts_claim(w->pg, &m->job, m->traceparent, w->worker_id,
                                                 w->stale_ms, &claim, errstr, sizeof(errstr));
        if (unreachable(err)) {
            /* The unclaimed rest goes back to the front of the queue, in order. */
            queue_unshift(&w->to_claim, batch + i, n - i);
            postgres_down(w, "claiming", errstr);
            return;
        }
        if (err != NUDGEL_OK) {
            char reason[600];
            snprintf(reason, sizeof(reason), "claim failed: %s", errstr);
            reject_malformed(w, m, reason);
            msg_release(m);
            continue;
        }
        on_claimed(w, m, &claim);
    }
}

/* Sends the claim statement of the lane's phase for its batch. */
static nudgel_err_t claims_send(worker_t *w, pg_lane_t *l, char *errstr, size_t errstr_size)
{
    nudgel_receipt_claim_request_t reqs[NUDGEL_RECEIPTS_BATCH_MAX];
    for (size_t i = 0; i < l->n; i++)
        reqs[i] = (nudgel_receipt_claim_request_t){.job = &l->batch[i]->job,
                                                   .trace_id = l->batch[i]->traceparent};
    nudgel_err_t err = l->phase == 1
                           ? nudgel_receipts_claim_fresh_send(l->conn, reqs, l->n, w->worker_id,
                                                              errstr, errstr_size)
                           : nudgel_receipts_claim_batch_send(l->conn, reqs, l->n, w->worker_id,
                                                              w->stale_ms, errstr, errstr_size);
    return err == NUDGEL_OK ? lane_sent(l, errstr, errstr_size) : err;
}

/*
 * Sends the lane's batch; when that fails, the batch goes back to the front
 * of the queue (lost connection: intake pauses) or is claimed one by one.
 */
static void claims_send_or_fall_back(worker_t *w, pg_lane_t *l)
{
    char errstr[512];
    nudgel_err_t err = claims_send(w, l, errstr, sizeof(errstr));
    if (err == NUDGEL_OK)
        return;
    size_t n = l->n;
    l->busy = false;
    l->n = 0;
    if (unreachable(err)) {
        queue_unshift(&w->to_claim, l->batch, n);
        postgres_down(w, "claiming", errstr);
    } else {
        claim_one_by_one(w, l->batch, n, errstr);
    }
}

/*
 * The claims lane: collects the claim statement in flight, and sends the
 * next one with every parsed job in hand (up to NUDGEL_RECEIPTS_BATCH_MAX),
 * after loading the templates they need that are not cached. Two phases: a
 * set-based INSERT claims every new message at once (the common case, and
 * those go on at once: on_claimed()); the rest — seen before, key taken,
 * repeated — take the full claim protocol in a second statement. A lost
 * connection puts the jobs back in the queue (intake pauses until Postgres
 * is back); a statement error falls back to one claim per job.
 */
static void claims_pump(worker_t *w)
{
    pg_lane_t *l = w->claim_lane;
    char errstr[512];
    if (l->busy) {
        PGresult *res = NULL;
        int st = lane_result(l, &res, errstr, sizeof(errstr));
        if (st == 0)
            return;
        nudgel_err_t err = NUDGEL_ERR_PG_UNREACHABLE;
        if (st > 0)
            err = l->phase == 1
                      ? nudgel_receipts_claim_fresh_read(l->conn, res, l->n, l->claims, l->claimed,
                                                         errstr, sizeof(errstr))
                      : nudgel_receipts_claim_batch_read(l->conn, res, l->n, l->claims, errstr,
                                                         sizeof(errstr));
        PQclear(res);
        size_t n = l->n;
        l->n = 0;
        if (unreachable(err)) {
            queue_unshift(&w->to_claim, l->batch, n);
            postgres_down(w, "claiming", errstr);
            return;
        }
        if (err != NUDGEL_OK) {
            claim_one_by_one(w, l->batch, n, errstr);
        } else if (l->phase == 1) {
            size_t rest = 0;
            for (size_t i = 0; i < n; i++) {
                if (l->claimed[i])
                    on_claimed(w, l->batch[i], &l->claims[i]);
                else
                    l->batch[rest++] = l->batch[i]; /* order kept */
            }
            if (rest > 0) {
                l->phase = 2;
                l->n = rest;
                claims_send_or_fall_back(w, l);
                return;
            }
        } else {
            for (size_t i = 0; i < n; i++)
                on_claimed(w, l->batch[i], &l->claims[i]);
        }
    }
    if (l->busy || w->pg_down || w->to_claim.count == 0)
        return;
    size_t n = w->to_claim.count < NUDGEL_RECEIPTS_BATCH_MAX ? w->to_claim.count
                                                             : NUDGEL_RECEIPTS_BATCH_MAX;
    for (size_t i = 0; i < n; i++) {
        const nudgel_message_job_t *j = &w->to_claim.items[i]->job;
        if (j->body || template_cached(w, j))
            continue;
        nudgel_err_t err = template_load(w, j, errstr, sizeof(errstr));
        if (unreachable(err)) {
            postgres_down(w, "loading a template", errstr);
            return;
        }
    }
    memcpy(l->batch, w->to_claim.items, n * sizeof(l->batch[0]));
    l->n = n;
    l->phase = 1;
    queue_shift(&w->to_claim, n);
    nudgel_metric_observe(w->m_pg_batch, "claim", (double)n);
    claims_send_or_fall_back(w, l);
}

static void header_int(const rd_kafka_message_t *msg, const char *name, int64_t *out)
{
    char text[32];
    nudgel_message_header(msg, name, text, sizeof(text));
    if (text[0])
        *out = atoll(text);
}

/* A job just polled: due? parseable? Then it waits for the batched claim. */
static void handle(worker_t *w, nudgel_consumer_t *from, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    int64_t now = nudgel_now_unix_ms(), not_before = 0, attempt = 0;
    msg_t *m = calloc(1, sizeof(*m));
    if (!m) {
        nudgel_consumer_defer(from, ref, now + 1000);
        return;
    }
    m->w = w;
    m->from = from;
    m->ref = ref;
    m->first_seen_ms = now;
    w->current = m;
    header_int(km, NUDGEL_HDR_NOT_BEFORE, &not_before);
    header_int(km, NUDGEL_HDR_ATTEMPT, &attempt);
    header_int(km, NUDGEL_HDR_FIRST_SEEN, &m->first_seen_ms);
    if (not_before > now) {
        free(m);
        nudgel_consumer_defer(from, ref, not_before);
        return;
    }
    m->attempt = (int)attempt;
    nudgel_message_header(km, NUDGEL_HDR_TRACEPARENT, m->traceparent, sizeof(m->traceparent));

    /* The contract headers (DESIGN §4): a job of another schema, or one whose
     * nudgel-tenant header names another tenant, is not ours to send. */
    char header[128], reason[400];
    nudgel_message_header(km, NUDGEL_HDR_SCHEMA, header, sizeof(header));
    if (header[0] && strcmp(header, NUDGEL_SCHEMA_MESSAGE_JOB_V1) != 0) {
        snprintf(reason, sizeof(reason), "nudgel-schema: expected %s, got \"%s\"",
                 NUDGEL_SCHEMA_MESSAGE_JOB_V1, header);
        reject_malformed(w, m, reason);
        msg_release(m);
        return;
    }
    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t popts = {.normalise_to = true};
    if (nudgel_message_job_parse(km->payload, km->len, &popts, &m->job, &ferr) != NUDGEL_OK) {
        snprintf(reason, sizeof(reason), "%s: %s", ferr.field, ferr.reason);
        reject_malformed(w, m, reason);
        msg_release(m);
        return;
    }
    m->parsed = true;
    nudgel_message_header(km, NUDGEL_HDR_TENANT, header, sizeof(header));
    if (header[0] && strcmp(header, m->job.tenant_id) != 0) {
        snprintf(reason, sizeof(reason),
                 "nudgel-tenant header \"%s\" does not match tenant_id \"%s\" (mismatch)", header,
                 m->job.tenant_id);
        reject_malformed(w, m, reason);
        msg_release(m);
        return;
    }
    if (!queue_push(&w->to_claim, m)) {
        free(m);
        nudgel_consumer_defer(from, ref, now + 1000);
    }
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

    if (nudgel_gateway_set_load(nudgel_conf_get_str(w->conf, "messages.gateways_file"),
                                &w->gateways, errstr, errstr_size) != NUDGEL_OK)
        return NUDGEL_ERR_CONFIG;
    for (size_t i = 0; i < nudgel_gateway_set_count(w->gateways) && i < MAX_GATEWAYS; i++) {
        gateway_lane_t *lane = &w->lanes[w->lane_count++];
        lane->gateway = nudgel_gateway_set_at(w->gateways, i);
        nudgel_breaker_init(
            &lane->breaker, (uint32_t)nudgel_conf_get_int(w->conf, "messages.breaker_window"),
            (uint32_t)nudgel_conf_get_int(w->conf, "messages.breaker_min_calls"),
            (double)nudgel_conf_get_int(w->conf, "messages.breaker_failure_percent") / 100.0,
            nudgel_conf_get_int(w->conf, "messages.breaker_open_ms") * 1000);
        double tps = nudgel_gateway_tps(lane->gateway);
        if (nudgel_throttle_bucket_new(tps, (uint32_t)(tps < 1 ? 1 : tps), nudgel_mono_us(),
                                       &lane->bucket, errstr, errstr_size) != NUDGEL_OK)
            return NUDGEL_ERR_CONFIG;
    }
    w->pg = nudgel_pg_connect(nudgel_conf_get_str(w->conf, "pg.dsn"), PROGRAM,
                              (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s"), errstr,
                              errstr_size);
    if (!w->pg)
        return NUDGEL_ERR_PG_UNREACHABLE;
    static const char *const lane_names[2] = {"claims", "outcomes"};
    pg_lane_t **lanes[2] = {&w->claim_lane, &w->record_lane};
    for (int i = 0; i < 2; i++) {
        if (!(*lanes[i] = calloc(1, sizeof(pg_lane_t)))) {
            snprintf(errstr, errstr_size, "out of memory");
            return NUDGEL_ERR_NO_MEMORY;
        }
        (*lanes[i])->name = lane_names[i];
        (*lanes[i])->conn = nudgel_pg_connect(
            nudgel_conf_get_str(w->conf, "pg.dsn"), PROGRAM,
            (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s"), errstr, errstr_size);
        if (!(*lanes[i])->conn)
            return NUDGEL_ERR_PG_UNREACHABLE;
        PQsetnonblocking((*lanes[i])->conn, 1);
    }
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

/*
 * DESIGN §5: a worker's bucket for a gateway runs at gateway_tps ×
 * assigned / total partitions of the jobs topic, so the fleet stays under the
 * carrier's cap without a coordinator. Recomputed when the assignment changes.
 */
static void update_fleet_share(worker_t *w)
{
    int32_t assigned = nudgel_consumer_assigned_of(w->consumer, w->topic_jobs);
    if (assigned == w->shared_with || w->total_partitions < 1)
        return;
    w->shared_with = assigned;
    for (size_t i = 0; i < w->lane_count; i++) {
        gateway_lane_t *lane = &w->lanes[i];
        char errstr[128];
        double rate = 0;
        if (nudgel_throttle_fleet_share(nudgel_gateway_tps(lane->gateway), assigned,
                                        w->total_partitions, &rate) != NUDGEL_OK)
            continue;
        /* Rate 0 (no partitions) still lets retry-tier stragglers out, slowly. */
        double effective = rate > 0 ? rate : NUDGEL_THROTTLE_MIN_SHARE_TPS;
        if (nudgel_throttle_bucket_set_rate(lane->bucket, effective,
                                            (uint32_t)(effective < 1 ? 1 : effective),
                                            nudgel_mono_us(), errstr, sizeof(errstr)) != NUDGEL_OK)
            continue;
        lane->rate = effective;
        nudgel_log_info("gateway %s: %.2f TPS (%d of %d partitions of %u TPS)",
                        nudgel_gateway_name(lane->gateway), effective, assigned,
                        w->total_partitions, nudgel_gateway_tps(lane->gateway));
    }
}

/* Jobs polled and not yet done, from both consumers. */
static size_t in_flight(const worker_t *w)
{
    return nudgel_consumer_in_flight(w->consumer) + nudgel_consumer_in_flight(w->retry_consumer);
}

static bool ready(void *opaque, char *why, size_t why_size)
{
    worker_t *w = opaque;
    if (w->pg_down || PQstatus(w->pg) != CONNECTION_OK) {
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
        if (stop_requested && !drain_deadline) {
            nudgel_consumer_pause(w.consumer, NUDGEL_PAUSE_SHUTDOWN);
            nudgel_consumer_pause(w.retry_consumer, NUDGEL_PAUSE_SHUTDOWN);
            drain_deadline =
                nudgel_mono_us() + nudgel_conf_get_int(w.conf, "messages.drain_timeout_ms") * 1000;
            nudgel_log_info("draining %zu job(s)", in_flight(&w));
        }
        if (fatal_stop)
            break;
        if (drain_deadline && (in_flight(&w) == 0 || nudgel_mono_us() > drain_deadline))
            break;
        /* Poll Kafka without waiting while HTTP or Postgres work is pending.
         * At the in-flight cap, stop taking jobs instead of pausing the
         * partitions (a pause drops what librdkafka prefetched, and the
         * refetch after resume stalls intake); one poll every 500 ms still
         * serves rebalances and keeps the group membership alive. */
        bool busy = nudgel_http_in_flight(w.http) > 0 || w.claim_lane->busy || w.record_lane->busy;
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
                handle(&w, consumers[k], ref);
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
        size_t nfds = 0;
        if (w.claim_lane->busy && PQsocket(w.claim_lane->conn) >= 0)
            fds[nfds++] = PQsocket(w.claim_lane->conn);
        if (w.record_lane->busy && PQsocket(w.record_lane->conn) >= 0)
            fds[nfds++] = PQsocket(w.record_lane->conn);
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
    exit_code = fatal_stop ? 1 : 0;
out:
    nudgel_http_admin_stop(admin);
    nudgel_http_destroy(w.http);
    nudgel_publisher_destroy(w.publisher, 10000);
    nudgel_consumer_close(w.consumer);
    nudgel_consumer_close(w.retry_consumer);
    for (size_t i = 0; i < w.lane_count; i++)
        nudgel_throttle_bucket_free(w.lanes[i].bucket);
    nudgel_gateway_set_free(w.gateways);
    nudgel_keyq_free(w.recipients);
    nudgel_keyq_free(w.tenant_waits);
    nudgel_keyq_free_with(w.templates, cached_template_free);
    nudgel_throttle_tenants_free(w.tenants);
    free(w.tenant_limits);
    free(w.to_claim.items);
    free(w.to_record.items);
    free(w.recipient_ready.items);
    if (w.pg)
        PQfinish(w.pg);
    pg_lane_t *pg_lanes[2] = {w.claim_lane, w.record_lane};
    for (int i = 0; i < 2; i++) {
        if (pg_lanes[i] && pg_lanes[i]->conn)
            PQfinish(pg_lanes[i]->conn);
        free(pg_lanes[i]);
    }
    nudgel_metrics_destroy(w.metrics);
    nudgel_conf_destroy(w.conf);
    return exit_code;
}
