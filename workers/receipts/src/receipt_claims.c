/*
 * receipt_claims.c — the claim side of the receipts store (nudgel/receipts.h):
 * the idempotency claim of a job before its carrier submission, one job or a
 * batch (the set-based fast path for new messages, then
 * nudgel.receipt_claim() for the rest), and the release of a claim when its
 * job goes to a retry tier. Recording outcomes and DLRs is
 * receipt_records.c.
 *
 * Each operation is one parameterised statement (one round trip, one
 * transaction). The claim protocol is nudgel.receipt_claim() in SQL, which
 * decides under the row lock, so concurrent claims of one message yield
 * exactly one FRESH.
 */
#include "nudgel/receipts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "receipts_pg.h"

static const char claim_sql[] = "SELECT outcome, " RECEIPTS_ROW_COLS(
    "r") " FROM (SELECT c.outcome, (c.receipt).* "
         "FROM nudgel.receipt_claim($1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, "
         "$7::text, $8::jsonb, $9::text, $10::bigint) AS c) AS r";

/*
 * $1: a JSON array of {ord, message_id, tenant_id, ...} sorted by message id;
 * one nudgel.receipt_claim() per element, called in array order.
 */
static const char claim_batch_sql[] = "SELECT ord, outcome, " RECEIPTS_ROW_COLS(
    "r") " FROM (SELECT i.ord, c.outcome, (c.receipt).* "
         "FROM jsonb_to_recordset($1::jsonb) AS i(ord int, message_id uuid, tenant_id text,"
         " idempotency_key text, to_e164 text, country text, operator text, trace_id text,"
         " metadata jsonb) "
         "CROSS JOIN LATERAL nudgel.receipt_claim(i.message_id, i.tenant_id, i.idempotency_key,"
         " i.to_e164, i.country, i.operator, i.trace_id, i.metadata, $2::text, $3::bigint) AS c) "
         "AS r "
         "ORDER BY ord";

/*
 * The fast path of a batched claim: one set-based INSERT of every new
 * message (status accepted, attempt 1: a lease, nothing sent yet) with its
 * history row; returns the rows it inserted. A message that already has a
 * row, or whose tenant's idempotency key is taken, is not inserted and goes
 * to claim_batch_sql (the full protocol). $1 as claim_batch_sql's, without
 * repeated ids.
 *
 * Two jobs of the batch with one tenant + idempotency key: the first in
 * offset order (the lowest ord: the batch is in poll order) is the only one
 * offered to the INSERT, so it wins; the other goes to the full protocol and
 * is deduplicated. (Offering both and letting ON CONFLICT pick would make
 * the winner the one inserted first: the smallest message id, since rows
 * are inserted in id order for one lock order across batches.)
 */
static const char claim_fresh_sql[] =
    "WITH input AS ("
    " SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(ord int, message_id uuid, tenant_id text,"
    "  idempotency_key text, to_e164 text, country text, operator text, trace_id text,"
    "  metadata jsonb)),"
    " first AS ("
    " SELECT DISTINCT ON (tenant_id, idempotency_key,"
    "  CASE WHEN idempotency_key IS NULL THEN message_id END) * FROM input"
    "  ORDER BY tenant_id, idempotency_key, CASE WHEN idempotency_key IS NULL THEN message_id END,"
    "  ord),"
    " ins AS ("
    " INSERT INTO nudgel.message_receipts AS m (message_id, tenant_id, idempotency_key, to_e164,"
    "  country, operator, status, attempt, client_ref, claimed_by, claimed_at, trace_id, metadata,"
    "  created_at, updated_at)"
    " SELECT message_id, tenant_id, idempotency_key, to_e164, country, operator, 'accepted', 1,"
    "  message_id::text, $2::text, clock_timestamp(), trace_id, metadata, clock_timestamp(),"
    "  clock_timestamp() FROM first ORDER BY 1"
    " ON CONFLICT DO NOTHING RETURNING m.*),"
    " hist AS ("
    " INSERT INTO nudgel.message_receipt_history AS h (message_id, from_status, to_status, detail,"
    "  at)"
    " SELECT message_id, NULL, 'accepted', jsonb_build_object('attempt', 1, 'worker', $2::text),"
    "  claimed_at FROM ins ON CONFLICT DO NOTHING)"
    " SELECT ord, " RECEIPTS_ROW_COLS(
        "r") " FROM (SELECT i.ord, ins.* FROM input i"
             "  JOIN ins ON ins.message_id = i.message_id) AS r ORDER BY ord";

/* A release ends the lease and the doubt: what it releases was not sent, or failed for sure. */
static const char release_batch_sql[] =
    "UPDATE nudgel.message_receipts SET claimed_by = NULL, claimed_at = NULL, handed_at = NULL, "
    "updated_at = clock_timestamp() "
    "WHERE message_id = ANY($1::uuid[]) AND status IN ('accepted', 'submitting') "
    "AND claimed_by = $2::text";

static const char release_sql[] =
    "UPDATE nudgel.message_receipts SET claimed_by = NULL, claimed_at = NULL, handed_at = NULL, "
    "updated_at = clock_timestamp() "
    "WHERE message_id = $1::uuid AND status IN ('accepted', 'submitting') "
    "AND claimed_by = $2::text";

/*
 * The hand-over mark: $1 a JSON array of {ord, message_id, gateway} sorted by
 * message id; $2 the worker. Each row still leased by $2 (accepted or
 * submitting) becomes submitting with handed_at and the gateway, and an
 * accepted one gets its history row; a row whose lease another worker took
 * over is left alone and not returned (its job must not be sent). Returns
 * the ords marked.
 */
static const char mark_sql[] =
    "WITH input AS ("
    " SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(ord int, message_id uuid, gateway text)),"
    " locked AS ("
    " SELECT r.message_id, r.status FROM nudgel.message_receipts r"
    "  WHERE r.message_id IN (SELECT message_id FROM input) AND r.claimed_by = $2::text"
    "   AND r.status IN ('accepted', 'submitting')"
    "  ORDER BY r.message_id FOR UPDATE),"
    " upd AS ("
    " UPDATE nudgel.message_receipts r SET status = 'submitting', gateway = i.gateway,"
    "  handed_at = clock_timestamp(), updated_at = clock_timestamp()"
    "  FROM input i JOIN locked l ON l.message_id = i.message_id"
    "  WHERE r.message_id = i.message_id AND r.claimed_by = $2::text"
    "  RETURNING r.message_id, l.status AS from_status, r.attempt, r.gateway, r.handed_at),"
    " hist AS ("
    " INSERT INTO nudgel.message_receipt_history (message_id, from_status, to_status, detail, at)"
    " SELECT u.message_id, 'accepted', 'submitting',"
    "  jsonb_build_object('attempt', u.attempt, 'worker', $2::text, 'gateway', u.gateway),"
    "  u.handed_at FROM upd u WHERE u.from_status = 'accepted' ON CONFLICT DO NOTHING)"
    " SELECT i.ord FROM input i JOIN upd u ON u.message_id = i.message_id ORDER BY i.ord";

const char *nudgel_receipt_claim_outcome_name(nudgel_receipt_claim_outcome_t o)
{
    switch (o) {
    case NUDGEL_RECEIPT_CLAIM_FRESH:
        return "fresh";
    case NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE:
        return "resubmit_stale";
    case NUDGEL_RECEIPT_CLAIM_IN_PROGRESS:
        return "in_progress";
    case NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL:
        return "already_final";
    case NUDGEL_RECEIPT_CLAIM_DEDUPLICATED:
        return "deduplicated";
    case NUDGEL_RECEIPT_CLAIM_OUTCOME_UNKNOWN:
        return "outcome_unknown";
    }
    return "unknown";
}

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

static nudgel_err_t parse_claim_outcome(const char *name, nudgel_receipt_claim_outcome_t *out)
{
    static const struct {
        const char *name;
        nudgel_receipt_claim_outcome_t outcome;
    } outcomes[] = {
        {"fresh", NUDGEL_RECEIPT_CLAIM_FRESH},
        {"resubmit_stale", NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE},
        {"in_progress", NUDGEL_RECEIPT_CLAIM_IN_PROGRESS},
        {"already_final", NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL},
        {"deduplicated", NUDGEL_RECEIPT_CLAIM_DEDUPLICATED},
        {"outcome_unknown", NUDGEL_RECEIPT_CLAIM_OUTCOME_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++) {
        if (strcmp(name, outcomes[i].name) == 0) {
            *out = outcomes[i].outcome;
            return NUDGEL_OK;
        }
    }
    return NUDGEL_ERR_PG;
}

nudgel_err_t nudgel_receipts_claim(PGconn *conn, const nudgel_message_job_t *job,
                                   const char *trace_id, const char *worker_id,
                                   int64_t stale_after_ms, nudgel_receipt_claim_t *out,
                                   char *errstr, size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_OK;
    PGresult *res = NULL;
    char *metadata = NULL;
    char stale[24];

    if (!conn || !job || !job->id || !job->tenant_id || !worker_id || !*worker_id ||
        strlen(worker_id) > NUDGEL_RECEIPTS_WORKER_ID_MAX || stale_after_ms < 0 || !out) {
        receipts_set_err(errstr, errstr_size, "receipts claim", "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (job->metadata) {
        metadata = json_dumps(job->metadata, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!metadata) {
            receipts_set_err(errstr, errstr_size, "receipts claim",
                             "out of memory encoding metadata");
            err = NUDGEL_ERR_NO_MEMORY;
            goto out;
        }
    }
    snprintf(stale, sizeof(stale), "%lld", (long long)stale_after_ms);
    const char *to = nonempty(job->phone.e164) ? job->phone.e164 : nonempty(job->to);
    const char *country =
        nonempty(job->phone.country) ? job->phone.country : nonempty(job->country);
    const char *values[10] = {
        job->id,
        job->tenant_id,
        nonempty(job->idempotency_key),
        to,
        country,
        nonempty(job->phone.operator_name),
        nonempty(trace_id),
        metadata,
        worker_id,
        stale,
    };
    res = PQexecParams(conn, claim_sql, 10, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = receipts_pg_fail(conn, res, "receipts claim", errstr, errstr_size);
        goto out;
    }
    if (PQntuples(res) != 1 || PQnfields(res) != 1 + RECEIPTS_ROW_NCOLS) {
        receipts_set_err(errstr, errstr_size, "receipts claim", "unexpected result shape");
        err = NUDGEL_ERR_PG;
        goto out;
    }
    const char *name = PQgetvalue(res, 0, 0);
    if (parse_claim_outcome(name, &out->outcome) != NUDGEL_OK) {
        receipts_set_err(errstr, errstr_size, "receipts claim: unknown outcome", name);
        err = NUDGEL_ERR_PG;
        goto out;
    }
    err = receipts_read_row(res, 0, 1, &out->receipt, errstr, errstr_size);
out:
    PQclear(res);
    free(metadata);
    return err;
}

nudgel_err_t nudgel_receipts_release(PGconn *conn, const char *message_id, const char *worker_id,
                                     bool *released, char *errstr, size_t errstr_size)
{
    if (!conn || !message_id || !worker_id || !*worker_id) {
        receipts_set_err(errstr, errstr_size, "receipts release", "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    nudgel_err_t err = NUDGEL_OK;
    const char *values[2] = {message_id, worker_id};
    PGresult *res = PQexecParams(conn, release_sql, 2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = receipts_pg_fail(conn, res, "receipts release", errstr, errstr_size);
        goto out;
    }
    if (released)
        *released = strcmp(PQcmdTuples(res), "0") != 0;
out:
    PQclear(res);
    return err;
}

/* The claim request as one element of claim_batch_sql's array. */
static json_t *claim_item(size_t ord, const nudgel_receipt_claim_request_t *r)
{
    const nudgel_message_job_t *job = r->job;
    const char *to = nonempty(job->phone.e164) ? job->phone.e164 : nonempty(job->to);
    const char *country =
        nonempty(job->phone.country) ? job->phone.country : nonempty(job->country);
    json_t *o = json_object();
    if (!o)
        return NULL;
    int rc = json_object_set_new(o, "ord", json_integer((json_int_t)ord));
    rc |= receipts_set_opt(o, "message_id", job->id);
    rc |= receipts_set_opt(o, "tenant_id", job->tenant_id);
    rc |= receipts_set_opt(o, "idempotency_key", nonempty(job->idempotency_key));
    rc |= receipts_set_opt(o, "to_e164", to);
    rc |= receipts_set_opt(o, "country", country);
    rc |= receipts_set_opt(o, "operator", nonempty(job->phone.operator_name));
    rc |= receipts_set_opt(o, "trace_id", nonempty(r->trace_id));
    if (job->metadata)
        rc |= json_object_set(o, "metadata", job->metadata);
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

typedef struct claim_order {
    const char *id;
    size_t ord;
} claim_order_t;

static int cmp_claim_order(const void *a, const void *b)
{
    const claim_order_t *x = a, *y = b;
    int c = strcasecmp(x->id, y->id);
    return c ? c : (x->ord > y->ord) - (x->ord < y->ord);
}

/* Checks a claim batch; writes why not in errstr. */
static nudgel_err_t check_claims(PGconn *conn, const nudgel_receipt_claim_request_t *reqs, size_t n,
                                 const char *worker_id, int64_t stale_after_ms, char *errstr,
                                 size_t errstr_size)
{
    if (!conn || !reqs || n == 0 || n > NUDGEL_RECEIPTS_BATCH_MAX || !worker_id || !*worker_id ||
        strlen(worker_id) > NUDGEL_RECEIPTS_WORKER_ID_MAX || stale_after_ms < 0) {
        receipts_set_err(errstr, errstr_size, "receipts claim batch",
                         "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        if (!reqs[i].job || !reqs[i].job->id || !reqs[i].job->tenant_id) {
            receipts_set_err(errstr, errstr_size, "receipts claim batch",
                             "a job without id or tenant");
            return NUDGEL_ERR_INVALID_ARG;
        }
    }
    return NUDGEL_OK;
}

/*
 * The claim requests as the JSON array claim_batch_sql and claim_fresh_sql
 * read, sorted by message id (one lock order for every batch);
 * @p skip_repeats leaves out a message id already in the array.
 * @returns the text (free it), or NULL with @p *err and @p errstr.
 */
static char *claims_json(const nudgel_receipt_claim_request_t *reqs, size_t n, bool skip_repeats,
                         nudgel_err_t *err, char *errstr, size_t errstr_size)
{
    claim_order_t *order = malloc(n * sizeof(*order));
    json_t *arr = json_array();
    char *text = NULL;
    *err = NUDGEL_ERR_NO_MEMORY;
    if (!order || !arr) {
        receipts_set_err(errstr, errstr_size, "receipts claim", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = (claim_order_t){reqs[i].job->id, i};
    qsort(order, n, sizeof(*order), cmp_claim_order);
    for (size_t i = 0; i < n; i++) {
        if (skip_repeats && i > 0 && strcasecmp(order[i].id, order[i - 1].id) == 0)
            continue;
        json_t *item = claim_item(order[i].ord, &reqs[order[i].ord]);
        if (!item || json_array_append_new(arr, item) != 0) {
            receipts_set_err(errstr, errstr_size, "receipts claim",
                             "cannot encode the batch (memory or UTF-8)");
            *err = NUDGEL_ERR_INVALID_ARG;
            goto out;
        }
    }
    if (!(text = json_dumps(arr, JSON_COMPACT)))
        receipts_set_err(errstr, errstr_size, "receipts claim", "out of memory");
    else
        *err = NUDGEL_OK;
out:
    json_decref(arr);
    free(order);
    return text;
}

nudgel_err_t nudgel_receipts_claim_batch_send(PGconn *conn,
                                              const nudgel_receipt_claim_request_t *reqs, size_t n,
                                              const char *worker_id, int64_t stale_after_ms,
                                              char *errstr, size_t errstr_size)
{
    nudgel_err_t err = check_claims(conn, reqs, n, worker_id, stale_after_ms, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    char *text = claims_json(reqs, n, false, &err, errstr, errstr_size);
    if (!text)
        return err;
    char stale[24];
    snprintf(stale, sizeof(stale), "%lld", (long long)stale_after_ms);
    const char *values[3] = {text, worker_id, stale};
    if (!PQsendQueryParams(conn, claim_batch_sql, 3, NULL, values, NULL, NULL, 0))
        err = receipts_pg_fail(conn, NULL, "receipts claim batch", errstr, errstr_size);
    free(text);
    return err;
}

nudgel_err_t nudgel_receipts_claim_batch_read(PGconn *conn, const PGresult *res, size_t n,
                                              nudgel_receipt_claim_t *out, char *errstr,
                                              size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return receipts_pg_fail(conn, res, "receipts claim batch", errstr, errstr_size);
    if ((size_t)PQntuples(res) != n || PQnfields(res) != 2 + RECEIPTS_ROW_NCOLS) {
        receipts_set_err(errstr, errstr_size, "receipts claim batch", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        size_t ord = (size_t)receipts_int_field(res, row, 0);
        const char *name = PQgetvalue(res, row, 1);
        if (ord >= n || parse_claim_outcome(name, &out[ord].outcome) != NUDGEL_OK) {
            receipts_set_err(errstr, errstr_size, "receipts claim batch: unexpected row", name);
            return NUDGEL_ERR_PG;
        }
        nudgel_err_t err = receipts_read_row(res, row, 2, &out[ord].receipt, errstr, errstr_size);
        if (err != NUDGEL_OK)
            return err;
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_receipts_claim_fresh_send(PGconn *conn,
                                              const nudgel_receipt_claim_request_t *reqs, size_t n,
                                              const char *worker_id, char *errstr,
                                              size_t errstr_size)
{
    nudgel_err_t err = check_claims(conn, reqs, n, worker_id, 0, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    /* A repeated id is left to the full protocol (it sees the first's claim). */
    char *text = claims_json(reqs, n, true, &err, errstr, errstr_size);
    if (!text)
        return err;
    const char *values[2] = {text, worker_id};
    if (!PQsendQueryParams(conn, claim_fresh_sql, 2, NULL, values, NULL, NULL, 0))
        err = receipts_pg_fail(conn, NULL, "receipts claim", errstr, errstr_size);
    free(text);
    return err;
}

nudgel_err_t nudgel_receipts_claim_fresh_read(PGconn *conn, const PGresult *res, size_t n,
                                              nudgel_receipt_claim_t *out, bool *claimed,
                                              char *errstr, size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return receipts_pg_fail(conn, res, "receipts claim", errstr, errstr_size);
    if ((size_t)PQntuples(res) > n || PQnfields(res) != 1 + RECEIPTS_ROW_NCOLS) {
        receipts_set_err(errstr, errstr_size, "receipts claim", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    for (size_t i = 0; i < n; i++)
        claimed[i] = false;
    for (int row = 0; row < PQntuples(res); row++) {
        size_t ord = (size_t)receipts_int_field(res, row, 0);
        if (ord >= n || claimed[ord]) {
            receipts_set_err(errstr, errstr_size, "receipts claim", "unexpected result row");
            return NUDGEL_ERR_PG;
        }
        nudgel_err_t err = receipts_read_row(res, row, 1, &out[ord].receipt, errstr, errstr_size);
        if (err != NUDGEL_OK)
            return err;
        out[ord].outcome = NUDGEL_RECEIPT_CLAIM_FRESH;
        claimed[ord] = true;
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_receipts_claim_batch(PGconn *conn, const nudgel_receipt_claim_request_t *reqs,
                                         size_t n, const char *worker_id, int64_t stale_after_ms,
                                         nudgel_receipt_claim_t *out, char *errstr,
                                         size_t errstr_size)
{
    if (!out || n == 0 || n > NUDGEL_RECEIPTS_BATCH_MAX) {
        receipts_set_err(errstr, errstr_size, "receipts claim batch",
                         "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    bool claimed[NUDGEL_RECEIPTS_BATCH_MAX];
    nudgel_err_t err =
        nudgel_receipts_claim_fresh_send(conn, reqs, n, worker_id, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    PGresult *res = receipts_wait_result(conn);
    err = nudgel_receipts_claim_fresh_read(conn, res, n, out, claimed, errstr, errstr_size);
    PQclear(res);
    if (err != NUDGEL_OK)
        return err;
    /* The rest (already known, key taken, repeated): the full protocol. */
    nudgel_receipt_claim_request_t rest[NUDGEL_RECEIPTS_BATCH_MAX];
    nudgel_receipt_claim_t rest_out[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t where[NUDGEL_RECEIPTS_BATCH_MAX], m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!claimed[i]) {
            where[m] = i;
            rest[m++] = reqs[i];
        }
    }
    if (m == 0)
        return NUDGEL_OK;
    err = nudgel_receipts_claim_batch_send(conn, rest, m, worker_id, stale_after_ms, errstr,
                                           errstr_size);
    if (err != NUDGEL_OK)
        return err;
    res = receipts_wait_result(conn);
    err = nudgel_receipts_claim_batch_read(conn, res, m, rest_out, errstr, errstr_size);
    PQclear(res);
    for (size_t k = 0; err == NUDGEL_OK && k < m; k++)
        out[where[k]] = rest_out[k];
    return err;
}

nudgel_err_t nudgel_receipts_release_batch(PGconn *conn, const char *const *message_ids, size_t n,
                                           const char *worker_id, size_t *released, char *errstr,
                                           size_t errstr_size)
{
    if (!conn || !message_ids || n == 0 || !worker_id || !*worker_id) {
        receipts_set_err(errstr, errstr_size, "receipts release batch", "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    char *array = receipts_uuid_array(message_ids, n, errstr, errstr_size);
    if (!array)
        return NUDGEL_ERR_INVALID_ARG;
    nudgel_err_t err = NUDGEL_OK;
    const char *values[2] = {array, worker_id};
    PGresult *res = PQexecParams(conn, release_batch_sql, 2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = receipts_pg_fail(conn, res, "receipts release batch", errstr, errstr_size);
    else if (released)
        *released = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    free(array);
    return err;
}

/* ---- the hand-over mark ------------------------------------------------- */

typedef struct mark_order {
    const char *id;
    size_t ord;
} mark_order_t;

static int cmp_mark_order(const void *a, const void *b)
{
    const mark_order_t *x = a, *y = b;
    return strcasecmp(x->id, y->id);
}

nudgel_err_t nudgel_receipts_mark_send(PGconn *conn, const nudgel_receipt_mark_t *marks, size_t n,
                                       const char *worker_id, char *errstr, size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_ERR_NO_MEMORY;
    mark_order_t *order = NULL;
    json_t *arr = NULL;
    char *text = NULL;
    if (!conn || !marks || n == 0 || n > NUDGEL_RECEIPTS_BATCH_MAX || !worker_id || !*worker_id) {
        receipts_set_err(errstr, errstr_size, "receipts mark", "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        if (!marks[i].message_id || !marks[i].gateway) {
            receipts_set_err(errstr, errstr_size, "receipts mark", "a mark without id or gateway");
            return NUDGEL_ERR_INVALID_ARG;
        }
    }
    if (!(order = malloc(n * sizeof(*order))) || !(arr = json_array())) {
        receipts_set_err(errstr, errstr_size, "receipts mark", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = (mark_order_t){marks[i].message_id, i};
    qsort(order, n, sizeof(*order), cmp_mark_order); /* one lock order for every batch */
    for (size_t i = 0; i < n; i++) {
        const nudgel_receipt_mark_t *mk = &marks[order[i].ord];
        json_t *o = json_pack("{s:I, s:s, s:s}", "ord", (json_int_t)order[i].ord, "message_id",
                              mk->message_id, "gateway", mk->gateway);
        if (!o || json_array_append_new(arr, o) != 0) {
            receipts_set_err(errstr, errstr_size, "receipts mark",
                             "cannot encode the batch (memory or UTF-8)");
            err = NUDGEL_ERR_INVALID_ARG;
            goto out;
        }
    }
    if (!(text = json_dumps(arr, JSON_COMPACT))) {
        receipts_set_err(errstr, errstr_size, "receipts mark", "out of memory");
        goto out;
    }
    const char *values[2] = {text, worker_id};
    err = NUDGEL_OK;
    if (!PQsendQueryParams(conn, mark_sql, 2, NULL, values, NULL, NULL, 0))
        err = receipts_pg_fail(conn, NULL, "receipts mark", errstr, errstr_size);
out:
    free(text);
    json_decref(arr);
    free(order);
    return err;
}

nudgel_err_t nudgel_receipts_mark_read(PGconn *conn, const PGresult *res, size_t n, bool *marked,
                                       char *errstr, size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return receipts_pg_fail(conn, res, "receipts mark", errstr, errstr_size);
    if ((size_t)PQntuples(res) > n || PQnfields(res) != 1) {
        receipts_set_err(errstr, errstr_size, "receipts mark", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    for (size_t i = 0; i < n; i++)
        marked[i] = false;
    for (int row = 0; row < PQntuples(res); row++) {
        size_t ord = (size_t)receipts_int_field(res, row, 0);
        if (ord >= n || marked[ord]) {
            receipts_set_err(errstr, errstr_size, "receipts mark", "unexpected result row");
            return NUDGEL_ERR_PG;
        }
        marked[ord] = true;
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_receipts_mark(PGconn *conn, const nudgel_receipt_mark_t *marks, size_t n,
                                  const char *worker_id, bool *marked, char *errstr,
                                  size_t errstr_size)
{
    nudgel_err_t err = nudgel_receipts_mark_send(conn, marks, n, worker_id, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    PGresult *res = receipts_wait_result(conn);
    err = nudgel_receipts_mark_read(conn, res, n, marked, errstr, errstr_size);
    PQclear(res);
    return err;
}
