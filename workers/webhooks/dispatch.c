/*
 * nudgel-dispatch — status events to webhook jobs.
 *
 * One event loop: Kafka consumer on nudgel.delivery-status.v1 → parse the
 * CloudEvent → the tenant's enabled endpoints whose event_types match
 * (cached per tenant, refreshed every dispatch.endpoint_refresh_ms) → one
 * webhook job per endpoint on nudgel.webhooks.v1 (libnudgel: validated,
 * keyed by tenant, the contract headers, traceparent passed through) → the
 * event's offset is stored only once Kafka acknowledged every job made from it.
 *
 * Everything derived from an event is deterministic, so a redelivered event
 * (a crash between the acks and the offset commit) makes byte-identical
 * jobs: the job id (→ webhook_deliveries.delivery_id) and the event id (→
 * the webhook-id header) are hashes of the event id and the endpoint id, and
 * created_at is the event's time. The deliverer then dedupes on delivery_id.
 *
 * Webhook status events (ai.nudgel.webhook.*) are never dispatched: a
 * delivery must not cause another delivery.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>

#include "nudgel/config.h"
#include "nudgel/consumer.h"
#include "nudgel/http_admin.h"
#include "nudgel/job.h"
#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/metrics.h"
#include "nudgel/pg.h"
#include "nudgel/producer.h"
#include "nudgel/publisher.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"
#include "nudgel/uuid.h"

#define PROGRAM         "nudgel-dispatch"
#define MAX_EVENT_BYTES (256 * 1024)
#define MAX_TENANTS     100000
#define MAX_ENDPOINTS   1000 /* per tenant */
#define EVENT_TYPE_MAX  128

static const nudgel_conf_entry_t dispatch_table[] = {
    {"dispatch.group_id", NUDGEL_CONF_STRING, "nudgel-dispatch", 0, 0, NULL, 0,
     "Kafka consumer group of the dispatchers."},
    {"dispatch.endpoint_refresh_ms", NUDGEL_CONF_INT, "3000", 0, 3600000, NULL, 0,
     "How long a tenant's endpoint list is trusted before it is read again; a new, changed or "
     "disabled endpoint is seen within this time."},
    {"dispatch.max_in_flight", NUDGEL_CONF_INT, "5000", 1, 100000, NULL, 0,
     "Status events in flight (jobs not yet acknowledged); above it every partition pauses."},
    {"dispatch.drain_timeout_ms", NUDGEL_CONF_INT, "20000", 0, 600000, NULL, 0,
     "On SIGTERM, how long to wait for the acknowledgements of jobs in flight."},
    {"topics.namespace", NUDGEL_CONF_STRING, "", 0, 0, NULL, 0,
     "Prefix of every topic name (an isolated set of topics); empty in production."},
    {"metrics.address", NUDGEL_CONF_STRING, "127.0.0.1", 0, 0, NULL, 0,
     "Address of /metrics, /healthz and /readyz (0.0.0.0 in a pod)."},
    {"metrics.port", NUDGEL_CONF_INT, "9466", 0, 65535, NULL, 0,
     "Port of /metrics, /healthz and /readyz; 0 picks a free one."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

/* One subscribed endpoint of a tenant. */
typedef struct endpoint {
    char id[NUDGEL_UUID_STR_LEN + 1];
    char **patterns; /* event_types; none = every type */
    size_t pattern_count;
} endpoint_t;

/* A tenant's enabled endpoints as last read, in a hash table by tenant id. */
typedef struct tenant {
    char *tenant_id;
    endpoint_t *endpoints;
    size_t count;
    int64_t loaded_us; /* monotonic */
    struct tenant *next;
} tenant_t;

#define TENANT_BUCKETS 4096

typedef struct dispatcher {
    nudgel_conf_t *conf;
    nudgel_consumer_t *consumer;
    nudgel_producer_t *producer;
    nudgel_publisher_t *dlq; /* malformed status events */
    PGconn *pg;
    char topic_status[256], topic_webhooks[256], topic_dlq[256];
    int64_t refresh_us;
    size_t max_in_flight;
    tenant_t *tenants[TENANT_BUCKETS];
    size_t tenant_count;
    nudgel_metrics_t *metrics;
    nudgel_metric_t *m_events, *m_jobs, *m_in_flight;
    bool pg_ok;
    struct pending_event *live;
} dispatcher_t;

/* One status event from poll until every job made from it is acknowledged. */
typedef struct pending_event {
    dispatcher_t *d;
    nudgel_job_ref_t *ref;
    int pending;
    bool failed;
    struct pending_event *prev, *next; /* every event alive, to let go of at exit */
} pending_event_t;

static volatile sig_atomic_t stop_requested;
static bool fatal_stop;

static pending_event_t *pe_new(dispatcher_t *d, nudgel_job_ref_t *ref)
{
    pending_event_t *pe = calloc(1, sizeof(*pe));
    if (!pe)
        return NULL;
    pe->d = d;
    pe->ref = ref;
    pe->next = d->live;
    if (d->live)
        d->live->prev = pe;
    d->live = pe;
    return pe;
}

static void pe_free(pending_event_t *pe)
{
    dispatcher_t *d = pe->d;
    if (pe->prev)
        pe->prev->next = pe->next;
    else
        d->live = pe->next;
    if (pe->next)
        pe->next->prev = pe->prev;
    free(pe);
}

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

static void tenant_clear_endpoints(tenant_t *t)
{
    for (size_t i = 0; i < t->count; i++) {
        for (size_t j = 0; j < t->endpoints[i].pattern_count; j++)
            free(t->endpoints[i].patterns[j]);
        free(t->endpoints[i].patterns);
    }
    free(t->endpoints);
    t->endpoints = NULL;
    t->count = 0;
}

/*
 * Reads @p t's enabled endpoints. @returns NUDGEL_OK, or NUDGEL_ERR_PG /
 * NUDGEL_ERR_PG_UNREACHABLE (the old list is kept).
 */
static nudgel_err_t tenant_load(dispatcher_t *d, tenant_t *t)
{
    const char *params[1] = {t->tenant_id};
    PGresult *res = PQexecParams(d->pg,
                                 "SELECT endpoint_id::text, array_to_json(event_types)::text "
                                 "FROM nudgel.webhook_endpoints WHERE tenant_id = $1 AND enabled "
                                 "ORDER BY endpoint_id LIMIT 1000",
                                 1, NULL, params, NULL, NULL, 0);
    nudgel_err_t err = NUDGEL_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        nudgel_log_error("reading endpoints of tenant %s: %s", t->tenant_id, PQerrorMessage(d->pg));
        err = PQstatus(d->pg) == CONNECTION_OK ? NUDGEL_ERR_PG : NUDGEL_ERR_PG_UNREACHABLE;
        goto out;
    }
    tenant_clear_endpoints(t);
    int rows = PQntuples(res);
    if (rows > 0 && !(t->endpoints = calloc((size_t)rows, sizeof(endpoint_t)))) {
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    for (int r = 0; r < rows; r++) {
        endpoint_t *e = &t->endpoints[t->count++];
        snprintf(e->id, sizeof(e->id), "%s", PQgetvalue(res, r, 0));
        json_t *types = json_loads(PQgetvalue(res, r, 1), 0, NULL);
        size_t n = json_is_array(types) ? json_array_size(types) : 0;
        if (n && (e->patterns = calloc(n, sizeof(char *)))) {
            for (size_t i = 0; i < n; i++) {
                const char *p = json_string_value(json_array_get(types, i));
                if (p && (e->patterns[e->pattern_count] = strdup(p)))
                    e->pattern_count++;
            }
        }
        json_decref(types);
    }
    t->loaded_us = nudgel_mono_us();
out:
    PQclear(res);
    return err;
}

/* The cache entry of @p tenant_id, read from Postgres when missing or stale. */
static nudgel_err_t tenant_get(dispatcher_t *d, const char *tenant_id, tenant_t **out)
{
    uint32_t b = hash_str(tenant_id) % TENANT_BUCKETS;
    tenant_t *t = d->tenants[b];
    while (t && strcmp(t->tenant_id, tenant_id) != 0)
        t = t->next;
    if (!t) {
        if (d->tenant_count >= MAX_TENANTS)
            return NUDGEL_ERR_TOO_LARGE;
        if (!(t = calloc(1, sizeof(*t))) || !(t->tenant_id = strdup(tenant_id))) {
            free(t);
            return NUDGEL_ERR_NO_MEMORY;
        }
        t->loaded_us = -1;
        t->next = d->tenants[b];
        d->tenants[b] = t;
        d->tenant_count++;
    }
    if (t->loaded_us < 0 || nudgel_mono_us() - t->loaded_us >= d->refresh_us) {
        nudgel_err_t err = tenant_load(d, t);
        if (err != NUDGEL_OK)
            return err;
    }
    *out = t;
    return NUDGEL_OK;
}

/* Exact names ("message.sent"), prefixes ("message.*", "*"); no patterns = all. */
static bool endpoint_wants(const endpoint_t *e, const char *event_type)
{
    if (e->pattern_count == 0)
        return true;
    for (size_t i = 0; i < e->pattern_count; i++) {
        const char *p = e->patterns[i];
        size_t len = strlen(p);
        if (strcmp(p, "*") == 0 || strcmp(p, event_type) == 0)
            return true;
        if (len >= 2 && strcmp(p + len - 2, ".*") == 0 && strncmp(p, event_type, len - 1) == 0)
            return true;
    }
    return false;
}

#define DIGEST_LEN 32

/* SHA-256 of "label\na\nb" (a is at most 256 bytes, b a UUID). */
static void derive(const char *label, const char *a, const char *b, unsigned char out[DIGEST_LEN])
{
    char text[512];
    int n = snprintf(text, sizeof(text), "%s\n%s\n%s", label, a, b);
    unsigned int len = 0;
    EVP_Digest(text, (size_t)(n < (int)sizeof(text) ? n : (int)sizeof(text) - 1), out, &len,
               EVP_sha256(), NULL);
}

/* A UUID (version 8, RFC 9562 variant) made of the first bytes of a hash. */
static void hash_uuid(const unsigned char h[DIGEST_LEN], char out[NUDGEL_UUID_STR_LEN + 1])
{
    uint8_t u[16];
    memcpy(u, h, 16);
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x80);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    nudgel_uuid_format(u, out);
}

/* One job of @p pe is settled: the event is done once all are. */
static void event_release(pending_event_t *pe)
{
    if (--pe->pending > 0)
        return;
    if (pe->failed) {
        /* Its offset must not move: stop, and the event comes again after the restart. */
        nudgel_log_error("a status event could not be dispatched durably; stopping");
        fatal_stop = true;
        stop_requested = 1;
        return;
    }
    nudgel_consumer_done(pe->d->consumer, pe->ref);
    pe_free(pe);
}

static void on_job_acked(const nudgel_delivery_report_t *report, void *cb_opaque)
{
    pending_event_t *pe = report->opaque;
    (void)cb_opaque;
    if (report->err != NUDGEL_OK) {
        nudgel_log_error("webhook job %s not acknowledged: %s", report->job_id, report->errstr);
        pe->failed = true;
    } else {
        nudgel_metric_add(pe->d->m_jobs, "produced", 1);
    }
    event_release(pe);
}

static void on_dlq_acked(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque)
{
    pending_event_t *pe = opaque;
    (void)cb_opaque;
    if (err) {
        nudgel_log_error("dead letter not acknowledged: %s; stopping", errstr);
        fatal_stop = true;
        stop_requested = 1;
        return;
    }
    nudgel_consumer_done(pe->d->consumer, pe->ref);
    pe_free(pe);
}

static void dead_letter(dispatcher_t *d, pending_event_t *pe, const char *reason)
{
    const rd_kafka_message_t *km = nudgel_job_message(pe->ref);
    nudgel_log_warn("malformed status event at %s[%d]@%lld: %s", rd_kafka_topic_name(km->rkt),
                    km->partition, (long long)km->offset, reason);
    nudgel_metric_add(d->m_events, "malformed", 1);
    if (nudgel_publish_dlq(d->dlq, d->topic_dlq, km, reason, pe) != NUDGEL_OK) {
        nudgel_consumer_defer(d->consumer, pe->ref, nudgel_now_unix_ms() + 1000);
        pe_free(pe);
    }
}

/* One job for @p e; @p pe->pending counts it until its acknowledgement. */
static nudgel_err_t produce_job(dispatcher_t *d, pending_event_t *pe, const endpoint_t *e,
                                const char *tenant, const char *event_id, const char *event_type,
                                const char *time_text, json_t *data, const char *traceparent)
{
    unsigned char h[DIGEST_LEN];
    char job_id[NUDGEL_UUID_STR_LEN + 1], webhook_id[64];
    derive("webhook-job", event_id, e->id, h);
    hash_uuid(h, job_id);
    derive("webhook-id", event_id, e->id, h);
    int n = snprintf(webhook_id, sizeof(webhook_id), "evt_");
    for (int i = 0; i < 16; i++)
        n += snprintf(webhook_id + n, sizeof(webhook_id) - (size_t)n, "%02x", h[i]);
    json_t *payload =
        json_pack("{s:s, s:s, s:O}", "type", event_type, "timestamp", time_text, "data", data);
    json_t *job = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "id", job_id, "tenant_id",
                            tenant, "endpoint_id", e->id, "event_type", event_type, "event_id",
                            webhook_id, "payload", payload, "created_at", time_text);
    if (!job)
        return NUDGEL_ERR_NO_MEMORY;
    char *bytes = json_dumps(job, JSON_COMPACT);
    json_decref(job);
    if (!bytes)
        return NUDGEL_ERR_NO_MEMORY;
    nudgel_enqueue_opts_t opts = {.traceparent = traceparent && *traceparent ? traceparent : NULL,
                                  .opaque = pe};
    nudgel_enqueue_result_t result;
    pe->pending++;
    nudgel_err_t err = nudgel_enqueue_webhook(d->producer, bytes, strlen(bytes), &opts, &result);
    free(bytes);
    if (err != NUDGEL_OK) {
        pe->pending--;
        nudgel_log_error("webhook job for endpoint %s refused: %s %s%s%s", e->id,
                         nudgel_strerror(err), result.error.field,
                         result.error.field[0] ? ": " : "", result.error.reason);
    }
    return err;
}

/*
 * Handles one status event just polled: skips what is not for webhooks,
 * dead-letters what is malformed, else produces its jobs. A Postgres problem
 * hands the event back (it is the newest polled) and pauses intake briefly.
 */
static void handle(dispatcher_t *d, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    pending_event_t *pe = pe_new(d, ref);
    json_t *ev = NULL;
    json_error_t jerr;
    char reason[300], traceparent[64], event_type[EVENT_TYPE_MAX + 1];
    if (!pe) {
        nudgel_consumer_defer(d->consumer, ref, nudgel_now_unix_ms() + 1000);
        return;
    }
    if (km->len > MAX_EVENT_BYTES) {
        snprintf(reason, sizeof(reason), "(event): larger than %d bytes", MAX_EVENT_BYTES);
        dead_letter(d, pe, reason);
        return;
    }
    ev = json_loadb(km->payload ? km->payload : "", km->len, JSON_REJECT_DUPLICATES, &jerr);
    const char *id = json_string_value(json_object_get(ev, "id"));
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *tenant = json_string_value(json_object_get(ev, "tenantid"));
    const char *time_text = json_string_value(json_object_get(ev, "time"));
    json_t *data = json_object_get(ev, "data");
    int64_t when;
    if (!json_is_object(ev)) {
        snprintf(reason, sizeof(reason), "(json): %s", ev ? "not an object" : jerr.text);
        dead_letter(d, pe, reason);
        goto out;
    }
    if (!id || !*id || strlen(id) > 256 || !type) {
        snprintf(reason, sizeof(reason), "%s: missing or not a string", !type ? "type" : "id");
        dead_letter(d, pe, reason);
        goto out;
    }
    /* Only our own types, and never webhook events (no loops). */
    if (strncmp(type, "ai.nudgel.", 10) != 0 || strncmp(type, "ai.nudgel.webhook.", 18) == 0) {
        nudgel_metric_add(d->m_events, "skipped", 1);
        nudgel_consumer_done(d->consumer, ref);
        pe_free(pe);
        goto out;
    }
    if (!tenant || !nudgel_tenant_id_valid(tenant)) {
        dead_letter(d, pe, "tenantid: missing or not a valid tenant id");
        goto out;
    }
    if (!time_text || nudgel_rfc3339_parse(time_text, &when) != 0) {
        dead_letter(d, pe, "time: missing or not an RFC 3339 date-time");
        goto out;
    }
    if (!json_is_object(data)) {
        dead_letter(d, pe, "data: missing or not an object");
        goto out;
    }
    if (strlen(type + 10) > EVENT_TYPE_MAX) {
        dead_letter(d, pe, "type: too long");
        goto out;
    }
    snprintf(event_type, sizeof(event_type), "%s", type + 10);
    nudgel_message_header(km, NUDGEL_HDR_TRACEPARENT, traceparent, sizeof(traceparent));
    if (!traceparent[0]) {
        const char *tp = json_string_value(json_object_get(ev, "traceparent"));
        snprintf(traceparent, sizeof(traceparent), "%s", tp ? tp : "");
    }

    tenant_t *t = NULL;
    nudgel_err_t err = tenant_get(d, tenant, &t);
    if (err == NUDGEL_ERR_PG || err == NUDGEL_ERR_PG_UNREACHABLE) {
        d->pg_ok = false;
        nudgel_consumer_pause(d->consumer, NUDGEL_PAUSE_POSTGRES);
        nudgel_consumer_defer(d->consumer, ref, nudgel_now_unix_ms() + 1000);
        pe_free(pe);
        goto out;
    } else if (err != NUDGEL_OK) {
        nudgel_log_error("tenant cache: %s", nudgel_strerror(err));
        nudgel_consumer_defer(d->consumer, ref, nudgel_now_unix_ms() + 1000);
        pe_free(pe);
        goto out;
    }
    pe->pending++; /* held while producing, so an early ack cannot finish the event */
    size_t made = 0;
    for (size_t i = 0; i < t->count; i++) {
        if (!endpoint_wants(&t->endpoints[i], event_type))
            continue;
        err = produce_job(d, pe, &t->endpoints[i], tenant, id, event_type, time_text, data,
                          traceparent);
        if (err == NUDGEL_ERR_INVALID_FIELD || err == NUDGEL_ERR_INVALID_JSON ||
            err == NUDGEL_ERR_TOO_LARGE) {
            nudgel_metric_add(d->m_jobs, "refused", 1); /* e.g. a data object over the job cap */
            continue;
        }
        if (err != NUDGEL_OK) {
            /* Kafka's local queue stayed full: stop; the event comes again. */
            pe->failed = true;
            break;
        }
        made++;
    }
    nudgel_metric_add(d->m_events, made ? "dispatched" : "no_endpoint", 1);
    if (pe->pending == 1 && pe->failed) {
        /* Nothing in flight and this very event is the newest polled: hand it back. */
        nudgel_consumer_defer(d->consumer, ref, nudgel_now_unix_ms() + 1000);
        pe_free(pe);
        goto out;
    }
    event_release(pe); /* drops the hold; finishes now when no job was made */
out:
    json_decref(ev);
}

static void dispatcher_free(dispatcher_t *d)
{
    for (size_t b = 0; b < TENANT_BUCKETS; b++) {
        tenant_t *t = d->tenants[b];
        while (t) {
            tenant_t *next = t->next;
            tenant_clear_endpoints(t);
            free(t->tenant_id);
            free(t);
            t = next;
        }
    }
}

static int set_producer_prop(const char *prop, const char *value, void *opaque)
{
    char errstr[256];
    if (nudgel_producer_conf_set(opaque, prop, value, errstr, sizeof(errstr)) != NUDGEL_OK)
        nudgel_log_warn("kafka.%s not applied to the job producer: %s", prop, errstr);
    return 0;
}

static nudgel_err_t setup(dispatcher_t *d, char *errstr, size_t errstr_size)
{
    const char *ns = nudgel_conf_get_str(d->conf, "topics.namespace");
    snprintf(d->topic_status, sizeof(d->topic_status), "%s%s", ns, NUDGEL_TOPIC_STATUS);
    snprintf(d->topic_webhooks, sizeof(d->topic_webhooks), "%s%s", ns, NUDGEL_TOPIC_WEBHOOKS);
    snprintf(d->topic_dlq, sizeof(d->topic_dlq), "%s%s", ns, NUDGEL_TOPIC_WEBHOOKS_DLQ);
    d->refresh_us = nudgel_conf_get_int(d->conf, "dispatch.endpoint_refresh_ms") * 1000;
    d->max_in_flight = (size_t)nudgel_conf_get_int(d->conf, "dispatch.max_in_flight");

    d->pg = nudgel_pg_connect(nudgel_conf_get_str(d->conf, "pg.dsn"), PROGRAM,
                              (int)nudgel_conf_get_int(d->conf, "pg.connect_timeout_s"), errstr,
                              errstr_size);
    if (!d->pg)
        return NUDGEL_ERR_PG_UNREACHABLE;
    d->pg_ok = true;

    nudgel_producer_conf_t *pc = nudgel_producer_conf_new();
    if (!pc)
        return NUDGEL_ERR_NO_MEMORY;
    const char *bootstrap = nudgel_conf_get_str(d->conf, "kafka.bootstrap");
    const char *client_id = nudgel_conf_get_str(d->conf, "kafka.client_id");
    if ((bootstrap && nudgel_producer_conf_set(pc, "bootstrap.servers", bootstrap, errstr,
                                               errstr_size) != NUDGEL_OK) ||
        (client_id &&
         nudgel_producer_conf_set(pc, "client.id", client_id, errstr, errstr_size) != NUDGEL_OK) ||
        nudgel_producer_conf_set(pc, "webhooks_topic", d->topic_webhooks, errstr, errstr_size) !=
            NUDGEL_OK ||
        nudgel_producer_conf_set(pc, "linger.ms", "5", errstr, errstr_size) != NUDGEL_OK) {
        nudgel_producer_conf_destroy(pc);
        return NUDGEL_ERR_CONFIG;
    }
    nudgel_conf_kafka_foreach(d->conf, set_producer_prop, pc);
    nudgel_producer_conf_set_delivery_cb(pc, on_job_acked, d);
    if (!(d->producer = nudgel_producer_new(pc, errstr, errstr_size))) {
        nudgel_producer_conf_destroy(pc);
        return NUDGEL_ERR_CONFIG;
    }
    if (!(d->dlq = nudgel_publisher_new(d->conf, on_dlq_acked, d, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    const char *topics[1] = {d->topic_status};
    if (!(d->consumer =
              nudgel_consumer_new(d->conf, nudgel_conf_get_str(d->conf, "dispatch.group_id"),
                                  topics, 1, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;

    d->metrics = nudgel_metrics_new();
    d->m_events =
        nudgel_metrics_register(d->metrics, NUDGEL_METRIC_COUNTER, "nudgel_dispatch_events_total",
                                "Status events by outcome.", "outcome", NULL, 0);
    d->m_jobs =
        nudgel_metrics_register(d->metrics, NUDGEL_METRIC_COUNTER, "nudgel_dispatch_jobs_total",
                                "Webhook jobs by outcome.", "outcome", NULL, 0);
    d->m_in_flight =
        nudgel_metrics_register(d->metrics, NUDGEL_METRIC_GAUGE, "nudgel_dispatch_in_flight",
                                "Status events in flight.", NULL, NULL, 0);
    return NUDGEL_OK;
}

static bool ready(void *opaque, char *why, size_t why_size)
{
    dispatcher_t *d = opaque;
    if (PQstatus(d->pg) != CONNECTION_OK) {
        snprintf(why, why_size, "Postgres connection lost");
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, nudgel_consumer_conf,
                                                        dispatch_table, NULL};
    dispatcher_t d = {0};
    nudgel_http_admin_t *admin = NULL;
    char errstr[1024];
    int exit_code = 2;

    d.conf = nudgel_conf_new(PROGRAM, tables);
    switch (nudgel_conf_startup_args(d.conf, PROGRAM, argc, argv)) {
    case NUDGEL_CONF_STARTUP_RUN:
        break;
    case NUDGEL_CONF_STARTUP_DONE:
        exit_code = 0;
        goto out;
    case NUDGEL_CONF_STARTUP_FAIL:
        goto out;
    }
    nudgel_err_t err = setup(&d, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        exit_code = nudgel_err_class(err) == NUDGEL_ERRCLASS_RETRIABLE ? 3 : 2;
        goto out;
    }
    admin = nudgel_http_admin_start(nudgel_conf_get_str(d.conf, "metrics.address"),
                                    (int)nudgel_conf_get_int(d.conf, "metrics.port"), d.metrics,
                                    ready, &d, errstr, sizeof(errstr));
    if (!admin)
        nudgel_log_warn("%s; running without /metrics", errstr);
    else
        nudgel_log_info("dispatching %s → %s; metrics on port %d", d.topic_status, d.topic_webhooks,
                        nudgel_http_admin_port(admin));
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    int64_t drain_deadline = 0, pg_retry_us = 0;
    for (;;) {
        if (stop_requested && !drain_deadline) {
            nudgel_consumer_pause(d.consumer, NUDGEL_PAUSE_SHUTDOWN);
            drain_deadline =
                nudgel_mono_us() + nudgel_conf_get_int(d.conf, "dispatch.drain_timeout_ms") * 1000;
            nudgel_log_info("draining %zu event(s)", nudgel_consumer_in_flight(d.consumer));
        }
        if (fatal_stop)
            break;
        if (drain_deadline &&
            (nudgel_consumer_in_flight(d.consumer) == 0 || nudgel_mono_us() > drain_deadline))
            break;
        if (!d.pg_ok && nudgel_mono_us() >= pg_retry_us) {
            if (PQstatus(d.pg) != CONNECTION_OK)
                PQreset(d.pg);
            d.pg_ok = PQstatus(d.pg) == CONNECTION_OK;
            if (d.pg_ok)
                nudgel_consumer_resume(d.consumer, NUDGEL_PAUSE_POSTGRES);
            else
                pg_retry_us = nudgel_mono_us() + 1000000;
        }
        size_t in_flight = nudgel_consumer_in_flight(d.consumer);
        if (in_flight >= d.max_in_flight)
            nudgel_consumer_pause(d.consumer, NUDGEL_PAUSE_IN_FLIGHT);
        else if (in_flight < d.max_in_flight / 2)
            nudgel_consumer_resume(d.consumer, NUDGEL_PAUSE_IN_FLIGHT);
        bool busy = nudgel_producer_in_flight(d.producer) > 0;
        for (int i = 0; i < 512; i++) {
            nudgel_job_ref_t *ref = nudgel_consumer_poll(d.consumer, i == 0 && !busy ? 50 : 0);
            if (!ref)
                break;
            handle(&d, ref);
            if (fatal_stop)
                break;
        }
        nudgel_producer_poll(d.producer, busy ? 1 : 0);
        nudgel_publisher_poll(d.dlq, 0);
        nudgel_metric_set(d.m_in_flight, NULL, (double)nudgel_consumer_in_flight(d.consumer));
    }
    exit_code = fatal_stop ? 1 : 0;
out:
    nudgel_http_admin_stop(admin);
    nudgel_producer_destroy(d.producer);
    nudgel_publisher_destroy(d.dlq, 10000);
    while (d.live) { /* not finished: nothing stored, so they come again */
        nudgel_consumer_abandon(d.consumer, d.live->ref);
        pe_free(d.live);
    }
    nudgel_consumer_close(d.consumer);
    dispatcher_free(&d);
    if (d.pg)
        PQfinish(d.pg);
    nudgel_metrics_destroy(d.metrics);
    nudgel_conf_destroy(d.conf);
    return exit_code;
}
