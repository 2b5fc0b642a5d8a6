/*
 * webhook_replay.c — see webhook_replay.h.
 */
#define _GNU_SOURCE
#include "webhook_replay.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "endpoints.h"
#include "nudgel/job.h"
#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"
#include "nudgel/uuid.h"

#define BATCH           500
#define HDR_REPLAY_OF   "nudgel-replay-of"
#define LAST_ERROR_SIZE 256

enum { R_ID, R_TENANT, R_EVENT_TYPE, R_EVENT_ID, R_PAYLOAD, R_METADATA };

/* One replayed delivery: the new job and what became of it. */
typedef struct item {
    int row;
    char new_id[NUDGEL_UUID_STR_LEN + 1];
    char *job; /* canonical bytes, malloc'd */
    size_t job_len;
    bool acked, failed;
    char error[LAST_ERROR_SIZE];
} item_t;

typedef struct replay {
    rd_kafka_t *producer;
    int timeout_ms;
    bool progress;
    long matched, skipped, replayed, failed;
} replay_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    item_t *it = m->_private;
    if (!it)
        return;
    if (m->err) {
        it->failed = true;
        snprintf(it->error, sizeof(it->error), "replay not enqueued: %s", rd_kafka_err2str(m->err));
    } else {
        it->acked = true;
    }
}

static void draw(const replay_t *r, long done, long total)
{
    if (!r->progress)
        return;
    double frac = total > 0 ? (double)done / (double)total : 1;
    int filled = (int)(frac * 30);
    fprintf(stderr, "\r[%.*s%*s] %ld/%ld replayed  ", filled, "##############################",
            30 - filled, "", done, total);
}

/*
 * The replay job of row @p r: new id, same tenant, endpoint, event type,
 * event id and payload, created now, the original metadata when it was kept.
 * Canonicalised with the contract's validator so nothing malformed is sent.
 */
static nudgel_err_t build_job(PGresult *res, int r, const char *endpoint_id, item_t *it,
                              char *errstr, size_t errstr_size)
{
    char created[NUDGEL_RFC3339_MAX];
    json_error_t jerr;
    nudgel_field_error_t ferr;
    nudgel_job_canonical_t canon = {0};
    nudgel_err_t err = NUDGEL_ERR_INVALID_FIELD;

    json_t *payload = json_loads(PQgetvalue(res, r, R_PAYLOAD), 0, &jerr);
    json_t *metadata = PQgetisnull(res, r, R_METADATA)
                           ? NULL
                           : json_loads(PQgetvalue(res, r, R_METADATA), 0, &jerr);
    nudgel_uuid7_string(it->new_id);
    nudgel_rfc3339_format(nudgel_now_unix_ms(), created);
    json_t *job =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:s}", "id", it->new_id, "tenant_id",
                  PQgetvalue(res, r, R_TENANT), "endpoint_id", endpoint_id, "event_type",
                  PQgetvalue(res, r, R_EVENT_TYPE), "event_id", PQgetvalue(res, r, R_EVENT_ID),
                  "payload", payload ? payload : json_null(), "created_at", created);
    if (job && json_is_object(metadata))
        json_object_set(job, "metadata", metadata);
    char *text = job ? json_dumps(job, JSON_COMPACT) : NULL;
    if (!text) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    err = nudgel_webhook_job_canonicalize(text, strlen(text), NULL, &canon, &ferr);
    if (err != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "delivery %s cannot be replayed: %s: %s",
                 PQgetvalue(res, r, R_ID), ferr.field, ferr.reason);
        goto out;
    }
    it->job = canon.bytes;
    it->job_len = canon.len;
out:
    free(text);
    json_decref(job);
    json_decref(payload);
    json_decref(metadata);
    return err;
}

/*
 * Writes the pending delivery rows of @p items in one statement (replay_of
 * the old delivery, the new job kept for a later replay).
 */
static nudgel_err_t insert_rows(PGconn *pg, PGresult *res, const char *endpoint_id, item_t *items,
                                size_t n, char *errstr, size_t errstr_size)
{
    json_t *rows = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *job = json_loadb(items[i].job, items[i].job_len, 0, NULL);
        json_array_append_new(
            rows,
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:O?, s:o?, s:s}", "delivery_id", items[i].new_id,
                      "tenant_id", PQgetvalue(res, items[i].row, R_TENANT), "endpoint_id",
                      endpoint_id, "event_type", PQgetvalue(res, items[i].row, R_EVENT_TYPE),
                      "event_id", PQgetvalue(res, items[i].row, R_EVENT_ID), "payload",
                      job ? json_object_get(job, "payload") : NULL, "job", job, "replay_of",
                      PQgetvalue(res, items[i].row, R_ID)));
    }
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    if (!text) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    const char *params[1] = {text};
    PGresult *ins = PQexecParams(
        pg,
        "INSERT INTO nudgel.webhook_deliveries (delivery_id, tenant_id, endpoint_id, event_type, "
        "event_id, status, payload, job, replay_of) "
        "SELECT delivery_id, tenant_id, endpoint_id, event_type, event_id, 'pending', payload, "
        "job, replay_of FROM jsonb_to_recordset($1::jsonb) AS r(delivery_id uuid, tenant_id text, "
        "endpoint_id uuid, event_type text, event_id text, payload jsonb, job jsonb, "
        "replay_of uuid)",
        1, NULL, params, NULL, NULL, 0);
    free(text);
    nudgel_err_t err = NUDGEL_OK;
    if (PQresultStatus(ins) != PGRES_COMMAND_OK) {
        snprintf(errstr, errstr_size, "writing the replayed deliveries: %s", PQerrorMessage(pg));
        err = PQstatus(pg) == CONNECTION_BAD ? NUDGEL_ERR_PG_UNREACHABLE : NUDGEL_ERR_PG;
    }
    PQclear(ins);
    return err;
}

/* Rows whose job Kafka refused: cancelled, with why, so they do not wait forever as pending. */
static void cancel_failed(PGconn *pg, item_t *items, size_t n)
{
    json_t *rows = json_array();
    for (size_t i = 0; i < n; i++)
        if (!items[i].acked)
            json_array_append_new(
                rows, json_pack("{s:s, s:s}", "delivery_id", items[i].new_id, "error",
                                items[i].error[0] ? items[i].error : "replay not enqueued"));
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return;
    }
    char *text = json_dumps(rows, JSON_COMPACT);
    const char *params[1] = {text};
    PGresult *res = PQexecParams(
        pg,
        "UPDATE nudgel.webhook_deliveries d SET status = 'cancelled', last_error = r.error, "
        "final_at = now(), updated_at = now() FROM jsonb_to_recordset($1::jsonb) AS "
        "r(delivery_id uuid, error text) WHERE d.delivery_id = r.delivery_id AND d.status = "
        "'pending' AND d.attempts = 0",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        nudgel_log_error("cancelling replayed deliveries that were not enqueued: %s",
                         PQerrorMessage(pg));
    PQclear(res);
    free(text);
    json_decref(rows);
}

static nudgel_err_t produce_batch(replay_t *r, const char *topic, PGresult *res, item_t *items,
                                  size_t n, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < n; i++) {
        const char *tenant = PQgetvalue(res, items[i].row, R_TENANT);
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
        rd_kafka_header_add(hdrs, NUDGEL_HDR_SCHEMA, -1, NUDGEL_SCHEMA_WEBHOOK_JOB_V1, -1);
        rd_kafka_header_add(hdrs, NUDGEL_HDR_TENANT, -1, tenant, -1);
        rd_kafka_header_add(hdrs, NUDGEL_HDR_CONTENT_TYPE, -1, "application/json", -1);
        rd_kafka_header_add(hdrs, HDR_REPLAY_OF, -1, PQgetvalue(res, items[i].row, R_ID), -1);
        rd_kafka_resp_err_t kerr = rd_kafka_producev(
            r->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(tenant, strlen(tenant)),
            RD_KAFKA_V_VALUE(items[i].job, items[i].job_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY | RD_KAFKA_MSG_F_BLOCK),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&items[i]), RD_KAFKA_V_END);
        if (kerr) {
            rd_kafka_headers_destroy(hdrs);
            items[i].failed = true;
            snprintf(items[i].error, sizeof(items[i].error), "replay not enqueued: %s",
                     rd_kafka_err2str(kerr));
        }
        rd_kafka_poll(r->producer, 0);
    }
    rd_kafka_flush(r->producer, r->timeout_ms);
    long acked = 0;
    for (size_t i = 0; i < n; i++)
        acked += items[i].acked;
    r->replayed += acked;
    r->failed += (long)n - acked;
    if (acked != (long)n) {
        snprintf(errstr, errstr_size, "%ld replayed job(s) not acknowledged by Kafka",
                 (long)n - acked);
        return NUDGEL_ERR_KAFKA;
    }
    return NUDGEL_OK;
}

static nudgel_err_t check_opts(const nudgel_admin_webhook_replay_opts_t *o, char *errstr,
                               size_t errstr_size)
{
    nudgel_err_t err =
        nudgel_admin_check_endpoint_id(o->endpoint_id, "--endpoint", errstr, errstr_size);
    if (err)
        return err;
    if (!o->since_ms) {
        snprintf(errstr, errstr_size, "--since: required (RFC 3339, e.g. 2026-11-28T00:00:00Z)");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (o->until_ms && o->until_ms <= o->since_ms) {
        snprintf(errstr, errstr_size, "--until: must be after --since");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (o->status && strcmp(o->status, "failed") != 0 && strcmp(o->status, "exhausted") != 0) {
        snprintf(errstr, errstr_size, "--status: \"%.32s\" is not failed or exhausted", o->status);
        return NUDGEL_ERR_INVALID_ARG;
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_admin_webhook_replay(const nudgel_conf_t *conf,
                                         const nudgel_admin_webhook_replay_opts_t *o, FILE *out,
                                         char *errstr, size_t errstr_size)
{
    replay_t r = {.timeout_ms = (int)nudgel_conf_get_int(conf, "admin.timeout_ms"),
                  .progress = isatty(STDERR_FILENO) != 0};
    char topic[256], since[NUDGEL_RFC3339_MAX], until[NUDGEL_RFC3339_MAX], inner[512];
    rd_kafka_conf_t *pconf = NULL;
    PGconn *pg = NULL;
    PGresult *ep = NULL, *rows = NULL;
    item_t *items = NULL;
    nudgel_err_t err;

    if ((err = check_opts(o, errstr, errstr_size)))
        return err;
    snprintf(topic, sizeof(topic), "%s%s", nudgel_conf_get_str(conf, "topics.namespace"),
             NUDGEL_TOPIC_WEBHOOKS);
    nudgel_rfc3339_format(o->since_ms, since);
    nudgel_rfc3339_format(o->until_ms, until);
    if (!(pg = nudgel_admin_pg_connect(conf, &err, errstr, errstr_size)))
        goto out;

    const char *ep_params[1] = {o->endpoint_id};
    ep = PQexecParams(pg,
                      "SELECT enabled FROM nudgel.webhook_endpoints WHERE endpoint_id = $1::uuid",
                      1, NULL, ep_params, NULL, NULL, 0);
    if (PQresultStatus(ep) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "reading the endpoint: %s", PQerrorMessage(pg));
        err = NUDGEL_ERR_PG;
        goto out;
    }
    if (PQntuples(ep) != 1) {
        snprintf(errstr, errstr_size, "--endpoint: no endpoint %s", o->endpoint_id);
        err = NUDGEL_ERR_INVALID_FIELD;
        goto out;
    }
    if (PQgetvalue(ep, 0, 0)[0] != 't')
        fprintf(stderr,
                "nudgel-admin: warning: endpoint %s is disabled: replayed deliveries wait "
                "until it is enabled (endpoints enable)\n",
                o->endpoint_id);

    /* The latest delivery of each event to the endpoint, if it ended as asked. */
    const char *params[4] = {o->endpoint_id, since, o->until_ms ? until : NULL,
                             o->status ? o->status : NULL};
    rows = PQexecParams(
        pg,
        "SELECT d.delivery_id::text, d.tenant_id, d.event_type, d.event_id, d.payload::text, "
        "(d.job -> 'metadata')::text FROM nudgel.webhook_deliveries d "
        "WHERE d.endpoint_id = $1::uuid AND d.created_at >= $2::timestamptz "
        "AND ($3::timestamptz IS NULL OR d.created_at < $3::timestamptz) "
        "AND (CASE WHEN $4::text IS NULL THEN d.status IN ('failed', 'exhausted') "
        "ELSE d.status = $4::text END) "
        "AND NOT EXISTS (SELECT 1 FROM nudgel.webhook_deliveries n WHERE n.endpoint_id = "
        "d.endpoint_id AND n.event_id = d.event_id AND n.delivery_id <> d.delivery_id "
        "AND (n.created_at, n.delivery_id) > (d.created_at, d.delivery_id)) "
        "ORDER BY d.created_at, d.delivery_id",
        4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(rows) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "selecting deliveries: %s", PQerrorMessage(pg));
        err = PQstatus(pg) == CONNECTION_BAD ? NUDGEL_ERR_PG_UNREACHABLE : NUDGEL_ERR_PG;
        goto out;
    }
    int total = PQntuples(rows);
    long replayable = 0;
    for (int i = 0; i < total; i++)
        replayable += !PQgetisnull(rows, i, R_PAYLOAD);
    r.matched = total;
    r.skipped = total - replayable;

    if (!o->dry_run && replayable > 0) {
        if (!(pconf = nudgel_kafka_conf_new(conf, errstr, errstr_size))) {
            err = NUDGEL_ERR_CONFIG;
            goto out;
        }
        rd_kafka_conf_set(pconf, "acks", "all", inner, sizeof(inner));
        rd_kafka_conf_set(pconf, "enable.idempotence", "true", inner, sizeof(inner));
        rd_kafka_conf_set(pconf, "partitioner", "murmur2_random", inner, sizeof(inner));
        rd_kafka_conf_set_dr_msg_cb(pconf, dr_cb);
        if (!(r.producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, inner, sizeof(inner)))) {
            snprintf(errstr, errstr_size, "creating the producer: %s", inner);
            err = NUDGEL_ERR_CONFIG;
            goto out;
        }
        pconf = NULL;
        if ((err = nudgel_kafka_check_reachable(r.producer, r.timeout_ms, inner, sizeof(inner)))) {
            snprintf(errstr, errstr_size, "%s", inner);
            goto out;
        }
        if (!(items = calloc(BATCH, sizeof(*items)))) {
            snprintf(errstr, errstr_size, "out of memory");
            err = NUDGEL_ERR_NO_MEMORY;
            goto out;
        }
        int row = 0;
        while (row < total && err == NUDGEL_OK) {
            size_t n = 0;
            for (; row < total && n < BATCH; row++) {
                if (PQgetisnull(rows, row, R_PAYLOAD))
                    continue;
                memset(&items[n], 0, sizeof(items[n]));
                items[n].row = row;
                if ((err = build_job(rows, row, o->endpoint_id, &items[n], errstr, errstr_size)))
                    break;
                n++;
            }
            if (err == NUDGEL_OK)
                err = insert_rows(pg, rows, o->endpoint_id, items, n, errstr, errstr_size);
            if (err == NUDGEL_OK) {
                err = produce_batch(&r, topic, rows, items, n, errstr, errstr_size);
                if (err != NUDGEL_OK)
                    cancel_failed(pg, items, n);
            }
            for (size_t i = 0; i < n; i++)
                free(items[i].job);
            draw(&r, r.replayed, replayable);
        }
        if (r.progress)
            fputc('\n', stderr);
        if (err != NUDGEL_OK)
            goto summary;
    }
    err = NUDGEL_OK;
summary:
    fprintf(out,
            "endpoint %s: %ld matched, %ld %s to %s, %ld failed, %ld skipped (no stored payload)\n",
            o->endpoint_id, r.matched, o->dry_run ? (long)replayable : r.replayed,
            o->dry_run ? "would be replayed" : "replayed", topic, r.failed, r.skipped);
out:
    free(items);
    PQclear(ep);
    PQclear(rows);
    if (pg)
        PQfinish(pg);
    if (pconf)
        rd_kafka_conf_destroy(pconf);
    if (r.producer) {
        rd_kafka_flush(r.producer, r.timeout_ms);
        rd_kafka_destroy(r.producer);
    }
    return err;
}
