/*
 * receipt_records.c — the record side of the receipts store
 * (nudgel/receipts.h): the batched write of submission outcomes, with the
 * release of the claims of jobs going to a retry tier in the same
 * statement, and the application of carrier delivery reports, each move
 * with its history row. Claims are receipt_claims.c.
 *
 * Each operation is one parameterised statement (one round trip, one
 * transaction). Forward-only moves are decided in SQL under the row lock by
 * nudgel.receipt_transition_allowed(), never by reading a status first and
 * writing later from C: two writers racing on one row are serialised by the
 * lock and the second one sees the first one's status.
 */
#include "nudgel/receipts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "receipts_pg.h"

/* The final states, as nudgel.receipt_transition_allowed() has no way out of them. */
#define FINAL_STATES "('failed', 'rejected', 'delivered', 'undelivered', 'expired')"

/*
 * $1: a JSON array of {ord, message_id, status, gateway, ...}; absent keys
 * are NULL and keep the stored value. locked takes the row locks in message
 * id order (no deadlock between batches) and reads the status under the
 * lock; upd moves only the allowed rows; hist writes one row per move.
 * rel releases this worker's claims ($2 message ids, $3 worker) of jobs
 * going to a retry tier: a data-modifying CTE runs whether or not it is read,
 * so the outcomes of one turn are one statement, one transaction.
 */
static const char record_sql[] =
    "WITH rel AS ("
    " UPDATE nudgel.message_receipts SET claimed_by = NULL, claimed_at = NULL, handed_at = NULL,"
    "  updated_at = clock_timestamp()"
    "  WHERE message_id = ANY($2::uuid[]) AND status IN ('accepted', 'submitting')"
    "   AND claimed_by = $3::text),"
    " input AS ("
    " SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(ord int, message_id uuid, status text,"
    "  gateway text, gateway_message_id text, error_code text, error_message text,"
    "  encoding text, segments int, cost_amount numeric, cost_currency text, event_id text)),"
    " locked AS ("
    " SELECT r.message_id, r.status FROM nudgel.message_receipts r"
    "  WHERE r.message_id IN (SELECT message_id FROM input)"
    "  ORDER BY r.message_id FOR UPDATE),"
    " upd AS ("
    " UPDATE nudgel.message_receipts r SET status = i.status,"
    "  gateway = coalesce(i.gateway, r.gateway),"
    "  gateway_message_id = coalesce(i.gateway_message_id, r.gateway_message_id),"
    "  error_code = coalesce(i.error_code, r.error_code),"
    "  error_message = coalesce(i.error_message, r.error_message),"
    "  encoding = coalesce(i.encoding, r.encoding),"
    "  segments = coalesce(i.segments, r.segments),"
    "  cost_amount = coalesce(i.cost_amount, r.cost_amount),"
    "  cost_currency = coalesce(i.cost_currency, r.cost_currency),"
    "  submitted_at = CASE WHEN l.status = 'submitting' AND i.status IN ('sent', 'failed', "
    "'rejected')"
    "   THEN coalesce(r.submitted_at, clock_timestamp()) ELSE r.submitted_at END,"
    "  final_at = CASE WHEN i.status IN " FINAL_STATES
    "   THEN coalesce(r.final_at, clock_timestamp()) ELSE r.final_at END,"
    "  updated_at = clock_timestamp()"
    "  FROM input i JOIN locked l ON l.message_id = i.message_id"
    "  WHERE r.message_id = i.message_id"
    "   AND nudgel.receipt_transition_allowed(l.status, i.status)"
    "  RETURNING r.message_id, l.status AS from_status, r.status AS to_status, r.attempt,"
    "   r.gateway, r.gateway_message_id, r.error_code),"
    " hist AS ("
    " INSERT INTO nudgel.message_receipt_history (message_id, from_status, to_status, event_id,"
    "  detail)"
    " SELECT u.message_id, u.from_status, u.to_status, i.event_id,"
    "  jsonb_strip_nulls(jsonb_build_object('attempt', u.attempt, 'gateway', u.gateway,"
    "   'gateway_message_id', u.gateway_message_id, 'error_code', u.error_code))"
    "  FROM upd u JOIN input i ON i.message_id = u.message_id"
    " ON CONFLICT DO NOTHING)"
    " SELECT i.ord, CASE WHEN u.message_id IS NOT NULL THEN 'applied'"
    "  WHEN l.message_id IS NULL THEN 'not_found'"
    "  WHEN l.status = i.status THEN 'unchanged' ELSE 'refused' END,"
    "  coalesce(l.status, ''), coalesce(u.to_status, l.status, '')"
    " FROM input i LEFT JOIN locked l ON l.message_id = i.message_id"
    "  LEFT JOIN upd u ON u.message_id = i.message_id"
    " ORDER BY i.ord";

/* As record_sql, for the rows of one (gateway, gateway_message_id). */
static const char dlr_sql[] =
    "WITH locked AS ("
    " SELECT r.message_id, r.tenant_id, r.status FROM nudgel.message_receipts r"
    "  WHERE r.gateway = $1::text AND r.gateway_message_id = $2::text"
    "  ORDER BY r.message_id FOR UPDATE),"
    " upd AS ("
    " UPDATE nudgel.message_receipts r SET status = $3::text,"
    "  error_code = coalesce($4::text, r.error_code),"
    "  error_message = coalesce($5::text, r.error_message),"
    "  final_at = CASE WHEN $3::text IN " FINAL_STATES
    "   THEN coalesce(r.final_at, clock_timestamp()) ELSE r.final_at END,"
    "  updated_at = clock_timestamp()"
    "  FROM locked l WHERE r.message_id = l.message_id"
    "   AND nudgel.receipt_transition_allowed(l.status, $3::text)"
    "  RETURNING r.message_id, l.status AS from_status, r.status AS to_status, r.attempt),"
    " hist AS ("
    " INSERT INTO nudgel.message_receipt_history (message_id, from_status, to_status, event_id,"
    "  detail)"
    " SELECT u.message_id, u.from_status, u.to_status, $6::text,"
    "  jsonb_strip_nulls(jsonb_build_object('source', 'dlr', 'attempt', u.attempt,"
    "   'gateway', $1::text, 'gateway_message_id', $2::text, 'error_code', $4::text))"
    "  FROM upd u ON CONFLICT DO NOTHING)"
    " SELECT l.message_id::text, l.tenant_id,"
    "  CASE WHEN u.message_id IS NOT NULL THEN 'applied'"
    "   WHEN l.status = $3::text THEN 'unchanged' ELSE 'refused' END,"
    "  l.status, coalesce(u.to_status, l.status)"
    " FROM locked l LEFT JOIN upd u ON u.message_id = l.message_id"
    " ORDER BY l.message_id";
const char *nudgel_receipt_apply_name(nudgel_receipt_apply_t a)
{
    switch (a) {
    case NUDGEL_RECEIPT_APPLIED:
        return "applied";
    case NUDGEL_RECEIPT_UNCHANGED:
        return "unchanged";
    case NUDGEL_RECEIPT_REFUSED:
        return "refused";
    case NUDGEL_RECEIPT_NOT_FOUND:
        return "not_found";
    }
    return "unknown";
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks the batch; @p ids is scratch of n pointers. */
static nudgel_err_t check_batch(const nudgel_receipt_result_t *results, size_t n, const char **ids,
                                char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < n; i++) {
        if (!results[i].message_id || !nudgel_receipt_state_valid(results[i].status)) {
            char reason[64];
            snprintf(reason, sizeof(reason), "item %zu: no message_id or bad status", i);
            receipts_set_err(errstr, errstr_size, "receipts record", reason);
            return NUDGEL_ERR_INVALID_ARG;
        }
        ids[i] = results[i].message_id;
    }
    qsort(ids, n, sizeof(ids[0]), cmp_str_ptr);
    for (size_t i = 1; i < n; i++) {
        if (strcasecmp(ids[i - 1], ids[i]) == 0) {
            receipts_set_err(errstr, errstr_size, "receipts record: message id twice in one batch",
                             ids[i]);
            return NUDGEL_ERR_INVALID_ARG;
        }
    }
    return NUDGEL_OK;
}

/* The batch as the JSON array record_sql reads. @returns NULL on ENOMEM or bad UTF-8. */
static json_t *batch_json(const nudgel_receipt_result_t *results, size_t n)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const nudgel_receipt_result_t *r = &results[i];
        json_t *o = json_object();
        if (!o || json_array_append_new(arr, o) != 0)
            goto fail;
        int rc = json_object_set_new(o, "ord", json_integer((json_int_t)i));
        rc |= receipts_set_opt(o, "message_id", r->message_id);
        rc |= receipts_set_opt(o, "status", nudgel_receipt_state_name(r->status));
        rc |= receipts_set_opt(o, "gateway", r->gateway);
        rc |= receipts_set_opt(o, "gateway_message_id", r->gateway_message_id);
        rc |= receipts_set_opt(o, "error_code", r->error_code);
        rc |= receipts_set_opt(o, "error_message", r->error_message);
        rc |= receipts_set_opt(o, "encoding", r->encoding);
        if (r->segments >= 0)
            rc |= json_object_set_new(o, "segments", json_integer(r->segments));
        rc |= receipts_set_opt(o, "cost_amount", r->cost_amount);
        rc |= receipts_set_opt(o, "cost_currency", r->cost_currency);
        rc |= receipts_set_opt(o, "event_id", r->event_id);
        if (rc != 0)
            goto fail;
    }
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

static nudgel_err_t parse_apply(const char *name, nudgel_receipt_apply_t *out)
{
    if (strcmp(name, "applied") == 0)
        *out = NUDGEL_RECEIPT_APPLIED;
    else if (strcmp(name, "unchanged") == 0)
        *out = NUDGEL_RECEIPT_UNCHANGED;
    else if (strcmp(name, "refused") == 0)
        *out = NUDGEL_RECEIPT_REFUSED;
    else if (strcmp(name, "not_found") == 0)
        *out = NUDGEL_RECEIPT_NOT_FOUND;
    else
        return NUDGEL_ERR_PG;
    return NUDGEL_OK;
}

nudgel_err_t nudgel_receipts_record_send(PGconn *conn, const nudgel_receipt_result_t *results,
                                         size_t n, const char *const *release_ids,
                                         size_t release_count, const char *worker_id, char *errstr,
                                         size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_OK;
    const char **ids = NULL;
    json_t *batch = NULL;
    char *text = NULL, *released = NULL;

    if (!conn || (n && !results) || n > NUDGEL_RECEIPTS_BATCH_MAX ||
        release_count > NUDGEL_RECEIPTS_BATCH_MAX || (release_count && !release_ids) ||
        (n == 0 && release_count == 0) || (release_count && (!worker_id || !*worker_id))) {
        receipts_set_err(errstr, errstr_size, "receipts record", "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    ids = malloc((n ? n : 1) * sizeof(ids[0]));
    if (!ids) {
        receipts_set_err(errstr, errstr_size, "receipts record", "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    err = check_batch(results, n, ids, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    batch = batch_json(results, n);
    text = batch ? json_dumps(batch, JSON_COMPACT) : NULL;
    if (!text) {
        receipts_set_err(errstr, errstr_size, "receipts record",
                         "cannot encode the batch (memory or UTF-8)");
        err = NUDGEL_ERR_INVALID_ARG;
        goto out;
    }
    if (!(released = receipts_uuid_array(release_ids, release_count, errstr, errstr_size))) {
        err = NUDGEL_ERR_INVALID_ARG;
        goto out;
    }
    const char *values[3] = {text, released, worker_id ? worker_id : ""};
    if (!PQsendQueryParams(conn, record_sql, 3, NULL, values, NULL, NULL, 0))
        err = receipts_pg_fail(conn, NULL, "receipts record", errstr, errstr_size);
out:
    free(released);
    free(text);
    json_decref(batch);
    free(ids);
    return err;
}

nudgel_err_t nudgel_receipts_record_read(PGconn *conn, const PGresult *res,
                                         const nudgel_receipt_result_t *results, size_t n,
                                         nudgel_receipt_applied_t *outcomes, char *errstr,
                                         size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return receipts_pg_fail(conn, res, "receipts record", errstr, errstr_size);
    if ((size_t)PQntuples(res) != n || PQnfields(res) != 4) {
        receipts_set_err(errstr, errstr_size, "receipts record", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        size_t ord = (size_t)receipts_int_field(res, row, 0);
        nudgel_receipt_applied_t *o = &outcomes[ord < n ? ord : 0];
        if (ord >= n || parse_apply(PQgetvalue(res, row, 1), &o->outcome) != NUDGEL_OK) {
            receipts_set_err(errstr, errstr_size, "receipts record", "unexpected result row");
            return NUDGEL_ERR_PG;
        }
        if (o->outcome == NUDGEL_RECEIPT_NOT_FOUND) {
            o->from = o->now = results[ord].status;
            continue;
        }
        nudgel_err_t err = receipts_state_field(res, row, 2, &o->from, errstr, errstr_size);
        if (err == NUDGEL_OK)
            err = receipts_state_field(res, row, 3, &o->now, errstr, errstr_size);
        if (err != NUDGEL_OK)
            return err;
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_receipts_record(PGconn *conn, const nudgel_receipt_result_t *results, size_t n,
                                    nudgel_receipt_applied_t *outcomes, char *errstr,
                                    size_t errstr_size)
{
    if (!results || !outcomes || n == 0) {
        receipts_set_err(errstr, errstr_size, "receipts record", "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    nudgel_err_t err =
        nudgel_receipts_record_send(conn, results, n, NULL, 0, NULL, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    PGresult *res = receipts_wait_result(conn);
    err = nudgel_receipts_record_read(conn, res, results, n, outcomes, errstr, errstr_size);
    PQclear(res);
    return err;
}

nudgel_err_t nudgel_receipts_apply_dlr(PGconn *conn, const nudgel_receipt_dlr_t *dlr,
                                       nudgel_receipt_dlr_outcome_t *out, char *errstr,
                                       size_t errstr_size)
{
    if (!conn || !dlr || !dlr->gateway || !dlr->gateway_message_id ||
        !nudgel_receipt_state_valid(dlr->status) || !out) {
        receipts_set_err(errstr, errstr_size, "receipts dlr", "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    nudgel_err_t err = NUDGEL_OK;
    const char *values[6] = {
        dlr->gateway,    dlr->gateway_message_id, nudgel_receipt_state_name(dlr->status),
        dlr->error_code, dlr->error_message,      dlr->event_id,
    };
    memset(out, 0, sizeof(*out));
    out->from = out->now = dlr->status;
    out->outcome = NUDGEL_RECEIPT_NOT_FOUND;
    PGresult *res = PQexecParams(conn, dlr_sql, 6, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = receipts_pg_fail(conn, res, "receipts dlr", errstr, errstr_size);
        goto out;
    }
    if (PQnfields(res) != 5) {
        receipts_set_err(errstr, errstr_size, "receipts dlr", "unexpected result shape");
        err = NUDGEL_ERR_PG;
        goto out;
    }
    out->matched = PQntuples(res);
    if (out->matched == 0)
        goto out;
    receipts_copy_field(out->message_id, sizeof(out->message_id), res, 0, 0);
    receipts_copy_field(out->tenant_id, sizeof(out->tenant_id), res, 0, 1);
    if (parse_apply(PQgetvalue(res, 0, 2), &out->outcome) != NUDGEL_OK) {
        receipts_set_err(errstr, errstr_size, "receipts dlr", "unexpected result row");
        err = NUDGEL_ERR_PG;
        goto out;
    }
    err = receipts_state_field(res, 0, 3, &out->from, errstr, errstr_size);
    if (err == NUDGEL_OK)
        err = receipts_state_field(res, 0, 4, &out->now, errstr, errstr_size);
out:
    PQclear(res);
    return err;
}
