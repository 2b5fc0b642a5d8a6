/*
 * nudgel-messages — the messages worker, first end-to-end cut.
 *
 * One event loop: Kafka consumer (jobs and retry tiers) → parse → claim in
 * Postgres → body (text or template) → GSM-7/UCS-2 segments → route →
 * gateway token bucket → HTTP submit on curl multi → classify → receipt and
 * history → status event (and a retry hop or a dead letter) → the job's
 * offset is stored only once Kafka acknowledged every publish of it.
 *
 * Not yet here (see the issue): circuit breakers and fallback gateways,
 * per-recipient ordering, the fleet share of gateway TPS, tenant limits,
 * asynchronous libpq and batched receipt writes, template caching.
 */
#define _GNU_SOURCE
#include <getopt.h>
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
#include "nudgel/log.h"
#include "nudgel/metrics.h"
#include "nudgel/pg.h"
#include "nudgel/publisher.h"
#include "nudgel/receipts.h"
#include "nudgel/sms_encoding.h"
#include "nudgel/template.h"
#include "nudgel/throttle.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

#define PROGRAM      "nudgel-messages"
#define TIERS        4
#define MAX_GATEWAYS 32

static const char *const tier_suffix[TIERS] = {"5s", "30s", "2m", "10m"};

static const nudgel_conf_entry_t messages_table[] = {
    {"messages.group_id", NUDGEL_CONF_STRING, "nudgel-messages", 0, 0, NULL, 0,
     "Kafka consumer group of the messages workers."},
    {"messages.gateways_file", NUDGEL_CONF_STRING, "config/gateways.example.json", 0, 0, NULL, 0,
     "JSON file of gateways and routes (see config/gateways.example.json)."},
    {"messages.worker_id", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0,
     "Claim owner name; default host-pid-start time (must be unique per process)."},
    {"messages.claim_stale_ms", NUDGEL_CONF_INT, "30000", 1000, 3600000, NULL, 0,
     "A claim older than this is taken over (longer than the gateway timeout)."},
    {"messages.validity_ms", NUDGEL_CONF_INT, "3600000", 1000, 604800000, NULL, 0,
     "How long after created_at a job without expires_at may still be sent."},
    {"messages.max_in_flight", NUDGEL_CONF_INT, "2000", 1, 100000, NULL, 0,
     "Jobs in flight in this process; above it every partition pauses."},
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

/* One job from poll to done. */
typedef struct msg {
    worker_t *w;
    nudgel_job_ref_t *ref;
    nudgel_message_job_t job;
    bool parsed;
    int attempt;           /* retry hops so far (nudgel-attempt header) */
    int64_t first_seen_ms; /* nudgel-first-seen, or now */
    char traceparent[64];
    char *text;
    nudgel_sms_info_t sms;
    const nudgel_gateway_t *gateway;
    nudgel_gateway_route_t route; /* the gateways it may use, primary first */
    int pending;                  /* publishes not yet acknowledged */
    bool publish_failed;
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

struct worker {
    nudgel_conf_t *conf;
    nudgel_consumer_t *consumer;
    nudgel_publisher_t *publisher;
    nudgel_http_t *http;
    nudgel_gateway_set_t *gateways;
    gateway_lane_t lanes[MAX_GATEWAYS];
    size_t lane_count;
    PGconn *pg;
    char worker_id[128];
    char topic_jobs[256], topic_status[256], topic_dlq[256], topic_retry[TIERS][256];
    int64_t stale_ms, validity_ms;
    int64_t tier_delay_ms[TIERS];
    size_t max_in_flight;
    size_t gateway_max_in_flight;
    const char *callback_url;
    nudgel_metrics_t *metrics;
    nudgel_metric_t *m_outcomes, *m_in_flight, *m_submit_latency;
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
    free(m);
}

/* The job is finished: its offset may move once every publish is acknowledged. */
static void msg_release(msg_t *m)
{
    if (m->pending > 0)
        return;
    worker_t *w = m->w;
    if (!m->publish_failed) {
        nudgel_consumer_done(w->consumer, m->ref);
    } else if (m == w->current) {
        nudgel_consumer_defer(w->consumer, m->ref, nudgel_now_unix_ms() + 1000);
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
    if (gateway)
        json_object_set_new(data, "gateway", json_string(gateway));
    if (gateway_message_id && *gateway_message_id)
        json_object_set_new(data, "gateway_message_id", json_string(gateway_message_id));
    json_object_set_new(data, "status", json_string(status));
    if (error_code)
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
    json_object_set_new(data, "attempt", json_integer(m->attempt + 1));
    if (j->metadata)
        json_object_set(data, "metadata", j->metadata);
    return data;
}

static void publish_event(msg_t *m, const char *status, json_t *data)
{
    char type[64];
    snprintf(type, sizeof(type), "ai.nudgel.message.%s", status);
    json_t *ev =
        nudgel_event_build("/nudgel/messages", type, m->job.id, m->job.tenant_id, m->attempt + 1,
                           nudgel_now_unix_ms(), m->traceparent[0] ? m->traceparent : NULL, data);
    m->pending++;
    if (nudgel_publish_event(m->w->publisher, m->w->topic_status, m->job.tenant_id, ev,
                             m->traceparent, m) != NUDGEL_OK) {
        m->pending--;
        m->publish_failed = true;
    }
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

/* Records the final (or sent) outcome, then its event. */
static void finish(msg_t *m, nudgel_receipt_state_t state, const char *gateway,
                   const char *gateway_message_id, const char *error_code,
                   const char *error_message, const char *cost_amount, const char *currency)
{
    worker_t *w = m->w;
    const char *status = nudgel_receipt_state_name(state);
    char event_id[NUDGEL_EVENT_ID_LEN + 1], type[64], errstr[512];
    snprintf(type, sizeof(type), "ai.nudgel.message.%s", status);
    nudgel_event_id(m->job.id, type, m->attempt + 1, event_id);
    nudgel_receipt_result_t result = {
        .message_id = m->job.id,
        .status = state,
        .gateway = gateway,
        .gateway_message_id = gateway_message_id && *gateway_message_id ? gateway_message_id : NULL,
        .error_code = error_code,
        .error_message = error_message,
        .encoding = m->text ? nudgel_sms_encoding_name(m->sms.encoding) : NULL,
        .segments = m->text ? (int)m->sms.segments : -1,
        .cost_amount = cost_amount && *cost_amount ? cost_amount : NULL,
        .cost_currency = currency && *currency ? currency : NULL,
        .event_id = event_id,
    };
    nudgel_receipt_applied_t applied;
    if (nudgel_receipts_record(w->pg, &result, 1, &applied, errstr, sizeof(errstr)) != NUDGEL_OK) {
        nudgel_log_error("recording %s for %s: %s", status, m->job.id, errstr);
        m->publish_failed = true; /* comes again; the claim makes that safe */
        return;
    }
    nudgel_metric_add(w->m_outcomes, status, 1);
    bool permanent = state == NUDGEL_RECEIPT_FAILED || state == NUDGEL_RECEIPT_REJECTED ||
                     state == NUDGEL_RECEIPT_EXPIRED;
    publish_event(m, status,
                  event_data(m, status, gateway, gateway_message_id, error_code, error_message,
                             permanent, cost_amount, currency));
}

/* A transient failure: the next retry tier, or the end of the ladder. */
static void retry_or_give_up(msg_t *m, const char *error_code, const char *error_message,
                             int64_t retry_after_ms)
{
    worker_t *w = m->w;
    char errstr[256], last_error[400];
    bool released;
    snprintf(last_error, sizeof(last_error), "%s: %s", error_code, error_message);
    if (m->attempt >= TIERS) {
        finish(m, NUDGEL_RECEIPT_FAILED, m->gateway ? nudgel_gateway_name(m->gateway) : NULL, NULL,
               error_code, error_message, NULL, NULL);
        publish_dlq(m, "retries exhausted");
        return;
    }
    nudgel_receipts_release(w->pg, m->job.id, w->worker_id, &released, errstr, sizeof(errstr));
    int64_t delay = w->tier_delay_ms[m->attempt];
    if (retry_after_ms > delay)
        delay = retry_after_ms;
    int64_t now = nudgel_now_unix_ms();
    m->pending++;
    if (nudgel_publish_retry(w->publisher, w->topic_retry[m->attempt], nudgel_job_message(m->ref),
                             m->attempt + 1, now + delay, m->first_seen_ms, last_error,
                             m) != NUDGEL_OK) {
        m->pending--;
        m->publish_failed = true;
    }
    nudgel_metric_add(w->m_outcomes, "retried", 1);
}

static void on_gateway_answer(void *opaque, const nudgel_http_response_t *r)
{
    msg_t *m = opaque;
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
    nudgel_metric_observe(m->w->m_submit_latency, NULL, r->total_ms / 1000.0);
    nudgel_gateway_classify(m->gateway, &resp, &out);
    const char *gw = nudgel_gateway_name(m->gateway);
    gateway_lane_t *lane = lane_for(m->w, m->gateway);
    lane->in_flight--;
    nudgel_breaker_state_t before = lane->breaker.state;
    nudgel_breaker_record(&lane->breaker, out.kind == NUDGEL_GATEWAY_TRANSIENT, nudgel_mono_us());
    if (lane->breaker.state != before)
        nudgel_log_warn("gateway %s: circuit %s", gw,
                        nudgel_breaker_state_name(lane->breaker.state));
    switch (out.kind) {
    case NUDGEL_GATEWAY_SENT:
        finish(m, NUDGEL_RECEIPT_SENT, gw, out.message_id, NULL, NULL,
               out.has_cost ? out.cost_amount : NULL, out.has_cost ? out.currency : NULL);
        break;
    case NUDGEL_GATEWAY_PERMANENT:
        finish(m,
               strcmp(out.receipt_status, "rejected") == 0 ? NUDGEL_RECEIPT_REJECTED
                                                           : NUDGEL_RECEIPT_FAILED,
               gw, NULL, out.error_code, out.error_message, NULL, NULL);
        break;
    case NUDGEL_GATEWAY_TRANSIENT:
        retry_or_give_up(m, out.error_code, out.error_message, out.retry_after_ms);
        break;
    }
    msg_release(m);
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
        finish(m, NUDGEL_RECEIPT_FAILED, nudgel_gateway_name(m->gateway), NULL, "invalid_request",
               errstr, NULL, NULL);
        msg_release(m);
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
    if (err == NUDGEL_OK)
        lane_for(w, m->gateway)->in_flight++;
    if (err != NUDGEL_OK) {
        retry_or_give_up(m, "submit_failed", nudgel_strerror(err), -1);
        msg_release(m);
    }
}

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
                retry_or_give_up(m, "circuit_open",
                                 "every gateway of the route has an open circuit",
                                 until_a_circuit_half_opens(w, m));
                msg_release(m);
            }
        }
    }
}

/* A template body: the tenant's template by name and locale (else "en"). */
static nudgel_err_t load_template(worker_t *w, const nudgel_message_job_t *j, char **body,
                                  char *errstr, size_t errstr_size)
{
    const char *params[3] = {j->tenant_id, j->template_name, j->locale ? j->locale : "en"};
    PGresult *res =
        PQexecParams(w->pg,
                     "SELECT body FROM nudgel.message_templates WHERE tenant_id = $1 AND name = $2 "
                     "AND locale IN ($3, 'en') ORDER BY (locale = $3) DESC LIMIT 1",
                     3, NULL, params, NULL, NULL, 0);
    nudgel_err_t err = NUDGEL_OK;
    *body = NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "loading template: %s", PQerrorMessage(w->pg));
        err = PQstatus(w->pg) == CONNECTION_OK ? NUDGEL_ERR_PG : NUDGEL_ERR_PG_UNREACHABLE;
    } else if (PQntuples(res) == 0) {
        snprintf(errstr, errstr_size, "template \"%s\" (%s) does not exist for tenant %s",
                 j->template_name, params[2], j->tenant_id);
        err = NUDGEL_ERR_INVALID_FIELD;
    } else if (!(*body = strdup(PQgetvalue(res, 0, 0)))) {
        err = NUDGEL_ERR_NO_MEMORY;
    }
    PQclear(res);
    return err;
}

/* Postgres trouble: hand the job back for a second and pause intake. */
static void postgres_trouble(worker_t *w, msg_t *m, const char *what, const char *errstr)
{
    nudgel_log_error("%s: %s; pausing intake", what, errstr);
    nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_POSTGRES);
    if (PQstatus(w->pg) != CONNECTION_OK)
        PQreset(w->pg);
    if (PQstatus(w->pg) == CONNECTION_OK)
        nudgel_consumer_resume(w->consumer, NUDGEL_PAUSE_POSTGRES);
    m->publish_failed = true;
}

static void header_int(const rd_kafka_message_t *msg, const char *name, int64_t *out)
{
    char text[32];
    nudgel_message_header(msg, name, text, sizeof(text));
    if (text[0])
        *out = atoll(text);
}

static void handle(worker_t *w, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    int64_t now = nudgel_now_unix_ms(), not_before = 0, attempt = 0;
    char errstr[512];
    msg_t *m = calloc(1, sizeof(*m));
    if (!m) {
        nudgel_consumer_defer(w->consumer, ref, now + 1000);
        return;
    }
    m->w = w;
    m->ref = ref;
    m->first_seen_ms = now;
    w->current = m;
    header_int(km, NUDGEL_HDR_NOT_BEFORE, &not_before);
    header_int(km, NUDGEL_HDR_ATTEMPT, &attempt);
    header_int(km, NUDGEL_HDR_FIRST_SEEN, &m->first_seen_ms);
    if (not_before > now) {
        free(m);
        nudgel_consumer_defer(w->consumer, ref, not_before);
        return;
    }
    m->attempt = (int)attempt;
    nudgel_message_header(km, NUDGEL_HDR_TRACEPARENT, m->traceparent, sizeof(m->traceparent));

    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t popts = {.normalise_to = true};
    if (nudgel_message_job_parse(km->payload, km->len, &popts, &m->job, &ferr) != NUDGEL_OK) {
        /* Malformed: a dead letter with the reason; no receipt (no valid id). */
        char reason[400];
        snprintf(reason, sizeof(reason), "%s: %s", ferr.field, ferr.reason);
        nudgel_log_warn("malformed job at %s[%d]@%lld: %s", rd_kafka_topic_name(km->rkt),
                        km->partition, (long long)km->offset, reason);
        nudgel_metric_add(w->m_outcomes, "malformed", 1);
        publish_dlq(m, reason);
        msg_release(m);
        return;
    }
    m->parsed = true;

    nudgel_receipt_claim_t claim;
    nudgel_err_t err = nudgel_receipts_claim(w->pg, &m->job, m->traceparent, w->worker_id,
                                             w->stale_ms, &claim, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        postgres_trouble(w, m, "claiming", errstr);
        msg_release(m);
        return;
    }
    switch (claim.outcome) {
    case NUDGEL_RECEIPT_CLAIM_FRESH:
    case NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE:
        break;
    case NUDGEL_RECEIPT_CLAIM_IN_PROGRESS:
        retry_or_give_up(m, "in_progress", "another worker holds the claim", -1);
        msg_release(m);
        return;
    case NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL: {
        /* Sent before: re-emit its event with the same id, send nothing. */
        const char *status = nudgel_receipt_state_name(claim.receipt.status);
        m->attempt = claim.receipt.attempt > 0 ? claim.receipt.attempt - 1 : 0;
        publish_event(m, status,
                      event_data(m, status, claim.receipt.gateway, claim.receipt.gateway_message_id,
                                 claim.receipt.error_code[0] ? claim.receipt.error_code : NULL,
                                 claim.receipt.error_message, true, claim.receipt.cost_amount,
                                 claim.receipt.cost_currency));
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

    int64_t expires =
        m->job.expires_at_ms ? m->job.expires_at_ms : m->job.created_at_ms + w->validity_ms;
    if (now >= expires) {
        finish(m, NUDGEL_RECEIPT_EXPIRED, NULL, NULL, "expired", "validity ended before sending",
               NULL, NULL);
        publish_dlq(m, "expired before it could be sent");
        msg_release(m);
        return;
    }

    if (m->job.body) {
        m->text = strdup(m->job.body);
    } else {
        char *tmpl = NULL;
        err = load_template(w, &m->job, &tmpl, errstr, sizeof(errstr));
        if (err == NUDGEL_OK) {
            err = nudgel_template_render(tmpl, m->job.variables ? m->job.variables : json_object(),
                                         0, &m->text, NULL, errstr, sizeof(errstr));
            free(tmpl);
        }
        if (err == NUDGEL_ERR_PG || err == NUDGEL_ERR_PG_UNREACHABLE) {
            postgres_trouble(w, m, "loading a template", errstr);
            msg_release(m);
            return;
        }
        if (err != NUDGEL_OK) {
            finish(m, NUDGEL_RECEIPT_FAILED, NULL, NULL, "template", errstr, NULL, NULL);
            msg_release(m);
            return;
        }
    }
    if (!m->text || nudgel_sms_encoding_measure(m->text, strlen(m->text), &m->sms, errstr,
                                                sizeof(errstr)) != NUDGEL_OK) {
        free(m->text);
        m->text = NULL;
        finish(m, NUDGEL_RECEIPT_FAILED, NULL, NULL, "encoding", errstr, NULL, NULL);
        msg_release(m);
        return;
    }

    nudgel_gateway_route_t route;
    if (nudgel_gateway_route(w->gateways, m->job.phone.country, m->job.phone.operator_name, &route,
                             errstr, sizeof(errstr)) != NUDGEL_OK ||
        route.count == 0) {
        finish(m, NUDGEL_RECEIPT_REJECTED, NULL, NULL, "no_route", errstr, NULL, NULL);
        msg_release(m);
        return;
    }
    m->route = route;
    gateway_lane_t *lane = next_open_lane(w, m, NULL);
    if (!lane) {
        retry_or_give_up(m, "circuit_open", "every gateway of the route has an open circuit",
                         until_a_circuit_half_opens(w, m));
        msg_release(m);
        return;
    }
    enqueue_on_lane(lane, m);
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
    if (!(w->http = nudgel_http_new(256, errstr, errstr_size)))
        return NUDGEL_ERR_NO_MEMORY;
    if (!(w->publisher = nudgel_publisher_new(w->conf, on_published, w, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    const char *topics[1 + TIERS] = {w->topic_jobs};
    for (int i = 0; i < TIERS; i++)
        topics[1 + i] = w->topic_retry[i];
    if (!(w->consumer =
              nudgel_consumer_new(w->conf, nudgel_conf_get_str(w->conf, "messages.group_id"),
                                  topics, 1 + TIERS, errstr, errstr_size)))
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

static bool ready(void *opaque, char *why, size_t why_size)
{
    worker_t *w = opaque;
    if (PQstatus(w->pg) != CONNECTION_OK) {
        snprintf(why, why_size, "Postgres connection lost");
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, nudgel_consumer_conf,
                                                        messages_table, NULL};
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"print-config", no_argument, NULL, 'P'}, {"print-config-doc", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    worker_t w = {0};
    nudgel_http_admin_t *admin = NULL;
    char *sets[64];
    size_t set_count = 0;
    const char *config_path = NULL;
    bool print_config = false, print_doc = false;
    char errstr[1024];
    int opt, exit_code = 2;

    w.conf = nudgel_conf_new(PROGRAM, tables);
    while ((opt = getopt_long(argc, argv, "c:s:X:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 's':
        case 'X':
            if (set_count < 64 &&
                asprintf(&sets[set_count], "%s%s", opt == 'X' ? "kafka." : "", optarg) >= 0)
                set_count++;
            break;
        case 'P':
            print_config = true;
            break;
        case 'D':
            print_doc = true;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [--config FILE] [--set KEY=VALUE] [-X PROP=VALUE] "
                    "[--print-config] [--print-config-doc]\n",
                    PROGRAM);
            exit_code = opt == 'h' ? 0 : 2;
            goto out;
        }
    }
    switch (nudgel_conf_startup(w.conf, PROGRAM, config_path, sets, set_count, print_config,
                                print_doc)) {
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

    int64_t drain_deadline = 0;
    for (;;) {
        if (stop_requested && !drain_deadline) {
            nudgel_consumer_pause(w.consumer, NUDGEL_PAUSE_SHUTDOWN);
            drain_deadline =
                nudgel_mono_us() + nudgel_conf_get_int(w.conf, "messages.drain_timeout_ms") * 1000;
            nudgel_log_info("draining %zu job(s)", nudgel_consumer_in_flight(w.consumer));
        }
        if (fatal_stop)
            break;
        if (drain_deadline &&
            (nudgel_consumer_in_flight(w.consumer) == 0 || nudgel_mono_us() > drain_deadline))
            break;
        size_t in_flight = nudgel_consumer_in_flight(w.consumer);
        if (in_flight >= w.max_in_flight)
            nudgel_consumer_pause(w.consumer, NUDGEL_PAUSE_IN_FLIGHT);
        else if (in_flight < w.max_in_flight / 2)
            nudgel_consumer_resume(w.consumer, NUDGEL_PAUSE_IN_FLIGHT);
        /* Poll Kafka without waiting while HTTP work is pending. */
        bool busy = nudgel_http_in_flight(w.http) > 0;
        for (int i = 0; i < 256; i++) {
            nudgel_job_ref_t *ref = nudgel_consumer_poll(w.consumer, i == 0 && !busy ? 20 : 0);
            if (!ref)
                break;
            handle(&w, ref);
            w.current = NULL;
        }
        update_fleet_share(&w);
        drain_lanes(&w);
        nudgel_http_poll(w.http, busy ? 5 : 0);
        nudgel_publisher_poll(w.publisher, 0);
        nudgel_metric_set(w.m_in_flight, NULL, (double)nudgel_consumer_in_flight(w.consumer));
    }
    exit_code = fatal_stop ? 1 : 0;
out:
    nudgel_http_admin_stop(admin);
    nudgel_http_destroy(w.http);
    nudgel_publisher_destroy(w.publisher, 10000);
    nudgel_consumer_close(w.consumer);
    for (size_t i = 0; i < w.lane_count; i++)
        nudgel_throttle_bucket_free(w.lanes[i].bucket);
    nudgel_gateway_set_free(w.gateways);
    if (w.pg)
        PQfinish(w.pg);
    nudgel_metrics_destroy(w.metrics);
    nudgel_conf_destroy(w.conf);
    for (size_t i = 0; i < set_count; i++)
        free(sets[i]);
    return exit_code;
}
