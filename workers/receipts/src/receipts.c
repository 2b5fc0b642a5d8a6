/*
 * receipts.c — the receipts store: claim, release, record, apply_dlr.
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

/* The receipt columns, in the order read_receipt() expects. */
#define MS(col) "coalesce((extract(epoch from " col ") * 1000)::bigint, 0)"
#define RECEIPT_COLS                                                                               \
    "message_id::text, tenant_id, coalesce(idempotency_key, ''), coalesce(to_e164, ''), "          \
    "coalesce(country, ''), coalesce(operator, ''), status, attempt, coalesce(client_ref, ''), "   \
    "coalesce(claimed_by, ''), coalesce(gateway, ''), coalesce(gateway_message_id, ''), "          \
    "coalesce(error_code, ''), coalesce(error_message, ''), coalesce(encoding, ''), "              \
    "coalesce(segments, -1), coalesce(cost_amount::text, ''), coalesce(cost_currency, ''), "       \
    "coalesce(trace_id, ''), " MS("created_at") ", " MS("submitted_at") ", " MS(                   \
        "final_at") ", " MS("updated_at")
#define RECEIPT_NCOLS 23

/* The final states, as nudgel.receipt_transition_allowed() has no way out of them. */
#define FINAL_STATES "('failed', 'rejected', 'delivered', 'undelivered', 'expired')"

static const char claim_sql[] =
    "SELECT outcome, " RECEIPT_COLS " FROM (SELECT c.outcome, (c.receipt).* "
    "FROM nudgel.receipt_claim($1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, "
    "$7::text, $8::jsonb, $9::text, $10::bigint) AS c) AS r";

/*
 * $1: a JSON array of {ord, message_id, tenant_id, ...} sorted by message id;
 * one nudgel.receipt_claim() per element, called in array order.
 */
static const char claim_batch_sql[] =
    "SELECT ord, outcome, " RECEIPT_COLS " FROM (SELECT i.ord, c.outcome, (c.receipt).* "
    "FROM jsonb_to_recordset($1::jsonb) AS i(ord int, message_id uuid, tenant_id text,"
    " idempotency_key text, to_e164 text, country text, operator text, trace_id text,"
    " metadata jsonb) "
    "CROSS JOIN LATERAL nudgel.receipt_claim(i.message_id, i.tenant_id, i.idempotency_key,"
    " i.to_e164, i.country, i.operator, i.trace_id, i.metadata, $2::text, $3::bigint) AS c) AS r "
    "ORDER BY ord";

/*
 * The fast path of a batched claim: one set-based INSERT of every new
 * message (status submitting, attempt 1) with its history row; returns the
 * rows it inserted. A message that already has a row, or whose tenant's
 * idempotency key is taken, is not inserted and goes to claim_batch_sql
 * (the full protocol). $1 as claim_batch_sql's, without repeated ids.
 */
static const char claim_fresh_sql[] =
    "WITH input AS ("
    " SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(ord int, message_id uuid, tenant_id text,"
    "  idempotency_key text, to_e164 text, country text, operator text, trace_id text,"
    "  metadata jsonb)),"
    " ins AS ("
    " INSERT INTO nudgel.message_receipts AS m (message_id, tenant_id, idempotency_key, to_e164,"
    "  country, operator, status, attempt, client_ref, claimed_by, claimed_at, trace_id, metadata,"
    "  created_at, updated_at)"
    " SELECT message_id, tenant_id, idempotency_key, to_e164, country, operator, 'submitting', 1,"
    "  message_id::text, $2::text, clock_timestamp(), trace_id, metadata, clock_timestamp(),"
    "  clock_timestamp() FROM input ORDER BY 1"
    " ON CONFLICT DO NOTHING RETURNING m.*),"
    " hist AS ("
    " INSERT INTO nudgel.message_receipt_history AS h (message_id, from_status, to_status, detail,"
    "  at)"
    " SELECT message_id, NULL, 'submitting', jsonb_build_object('attempt', 1, 'worker', $2::text),"
    "  claimed_at FROM ins ON CONFLICT DO NOTHING)"
    " SELECT ord, " RECEIPT_COLS " FROM (SELECT i.ord, ins.* FROM input i"
    "  JOIN ins ON ins.message_id = i.message_id) AS r ORDER BY ord";

static const char release_batch_sql[] =
    "UPDATE nudgel.message_receipts SET claimed_by = NULL, claimed_at = NULL, "
    "updated_at = clock_timestamp() "
    "WHERE message_id = ANY($1::uuid[]) AND status = 'submitting' AND claimed_by = $2::text";

static const char release_sql[] =
    "UPDATE nudgel.message_receipts SET claimed_by = NULL, claimed_at = NULL, "
    "updated_at = clock_timestamp() "
    "WHERE message_id = $1::uuid AND status = 'submitting' AND claimed_by = $2::text";

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
    " UPDATE nudgel.message_receipts SET claimed_by = NULL, claimed_at = NULL,"
    "  updated_at = clock_timestamp()"
    "  WHERE message_id = ANY($2::uuid[]) AND status = 'submitting' AND claimed_by = $3::text),"
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
    }
    return "unknown";
}

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

/* Sets errstr from libpq's message on one line; never quotes the DSN. */
static void set_err(char *errstr, size_t errstr_size, const char *what, const char *message)
{
    if (!errstr_size)
        return;
    snprintf(errstr, errstr_size, "%s: %s", what, message && *message ? message : "unknown error");
    size_t len = strlen(errstr);
    while (len && (errstr[len - 1] == '\n' || errstr[len - 1] == ' '))
        errstr[--len] = '\0';
    for (char *p = errstr; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/*
 * Classifies a failed statement: a lost connection, a connection-level
 * SQLSTATE (class 08) or a server shutting down (57P01..57P03) is
 * NUDGEL_ERR_PG_UNREACHABLE; anything else NUDGEL_ERR_PG.
 */
static nudgel_err_t pg_fail(PGconn *conn, const PGresult *res, const char *what, char *errstr,
                            size_t errstr_size)
{
    const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *message = res ? PQresultErrorMessage(res) : NULL;
    if (!message || !*message)
        message = PQerrorMessage(conn);
    set_err(errstr, errstr_size, what, message);
    if (PQstatus(conn) != CONNECTION_OK)
        return NUDGEL_ERR_PG_UNREACHABLE;
    if (!sqlstate)
        return res ? NUDGEL_ERR_PG : NUDGEL_ERR_PG_UNREACHABLE;
    if (strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 ||
        strcmp(sqlstate, "57P02") == 0 || strcmp(sqlstate, "57P03") == 0)
        return NUDGEL_ERR_PG_UNREACHABLE;
    return NUDGEL_ERR_PG;
}

static void copy_field(char *dst, size_t dst_size, const PGresult *res, int row, int col)
{
    snprintf(dst, dst_size, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

static int64_t int_field(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static nudgel_err_t state_field(const PGresult *res, int row, int col, nudgel_receipt_state_t *out,
                                char *errstr, size_t errstr_size)
{
    char reason[96];
    if (nudgel_receipt_state_parse(PQgetvalue(res, row, col), out, reason, sizeof(reason)) !=
        NUDGEL_OK) {
        set_err(errstr, errstr_size, "receipts: stored status", reason);
        return NUDGEL_ERR_PG;
    }
    return NUDGEL_OK;
}

/* Reads RECEIPT_COLS starting at column @p c. */
static nudgel_err_t read_receipt(const PGresult *res, int row, int c, nudgel_receipt_t *r,
                                 char *errstr, size_t errstr_size)
{
    memset(r, 0, sizeof(*r));
    copy_field(r->message_id, sizeof(r->message_id), res, row, c + 0);
    copy_field(r->tenant_id, sizeof(r->tenant_id), res, row, c + 1);
    copy_field(r->idempotency_key, sizeof(r->idempotency_key), res, row, c + 2);
    copy_field(r->to_e164, sizeof(r->to_e164), res, row, c + 3);
    copy_field(r->country, sizeof(r->country), res, row, c + 4);
    copy_field(r->operator_name, sizeof(r->operator_name), res, row, c + 5);
    nudgel_err_t err = state_field(res, row, c + 6, &r->status, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    r->attempt = (int)int_field(res, row, c + 7);
    copy_field(r->client_ref, sizeof(r->client_ref), res, row, c + 8);
    copy_field(r->claimed_by, sizeof(r->claimed_by), res, row, c + 9);
    copy_field(r->gateway, sizeof(r->gateway), res, row, c + 10);
    copy_field(r->gateway_message_id, sizeof(r->gateway_message_id), res, row, c + 11);
    copy_field(r->error_code, sizeof(r->error_code), res, row, c + 12);
    copy_field(r->error_message, sizeof(r->error_message), res, row, c + 13);
    copy_field(r->encoding, sizeof(r->encoding), res, row, c + 14);
    r->segments = (int)int_field(res, row, c + 15);
    copy_field(r->cost_amount, sizeof(r->cost_amount), res, row, c + 16);
    copy_field(r->cost_currency, sizeof(r->cost_currency), res, row, c + 17);
    copy_field(r->trace_id, sizeof(r->trace_id), res, row, c + 18);
    r->created_at_ms = int_field(res, row, c + 19);
    r->submitted_at_ms = int_field(res, row, c + 20);
    r->final_at_ms = int_field(res, row, c + 21);
    r->updated_at_ms = int_field(res, row, c + 22);
    return NUDGEL_OK;
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
        set_err(errstr, errstr_size, "receipts claim", "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (job->metadata) {
        metadata = json_dumps(job->metadata, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!metadata) {
            set_err(errstr, errstr_size, "receipts claim", "out of memory encoding metadata");
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
        err = pg_fail(conn, res, "receipts claim", errstr, errstr_size);
        goto out;
    }
    if (PQntuples(res) != 1 || PQnfields(res) != 1 + RECEIPT_NCOLS) {
        set_err(errstr, errstr_size, "receipts claim", "unexpected result shape");
        err = NUDGEL_ERR_PG;
        goto out;
    }
    const char *name = PQgetvalue(res, 0, 0);
    if (parse_claim_outcome(name, &out->outcome) != NUDGEL_OK) {
        set_err(errstr, errstr_size, "receipts claim: unknown outcome", name);
        err = NUDGEL_ERR_PG;
        goto out;
    }
    err = read_receipt(res, 0, 1, &out->receipt, errstr, errstr_size);
out:
    PQclear(res);
    free(metadata);
    return err;
}

nudgel_err_t nudgel_receipts_release(PGconn *conn, const char *message_id, const char *worker_id,
                                     bool *released, char *errstr, size_t errstr_size)
{
    if (!conn || !message_id || !worker_id || !*worker_id) {
        set_err(errstr, errstr_size, "receipts release", "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    nudgel_err_t err = NUDGEL_OK;
    const char *values[2] = {message_id, worker_id};
    PGresult *res = PQexecParams(conn, release_sql, 2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = pg_fail(conn, res, "receipts release", errstr, errstr_size);
        goto out;
    }
    if (released)
        *released = strcmp(PQcmdTuples(res), "0") != 0;
out:
    PQclear(res);
    return err;
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
            set_err(errstr, errstr_size, "receipts record", reason);
            return NUDGEL_ERR_INVALID_ARG;
        }
        ids[i] = results[i].message_id;
    }
    qsort(ids, n, sizeof(ids[0]), cmp_str_ptr);
    for (size_t i = 1; i < n; i++) {
        if (strcasecmp(ids[i - 1], ids[i]) == 0) {
            set_err(errstr, errstr_size, "receipts record: message id twice in one batch", ids[i]);
            return NUDGEL_ERR_INVALID_ARG;
        }
    }
    return NUDGEL_OK;
}

static int set_opt(json_t *obj, const char *key, const char *value)
{
    return value ? json_object_set_new(obj, key, json_string(value)) : 0;
}

/* A Postgres uuid[] literal of @p n ids (checked to be UUID text); NULL on error. */
static char *uuid_array(const char *const *ids, size_t n, char *errstr, size_t errstr_size)
{
    char *array = malloc(2 + n * (NUDGEL_UUID_STR_LEN + 1) + 1);
    size_t len = 0;
    if (!array) {
        set_err(errstr, errstr_size, "receipts", "out of memory");
        return NULL;
    }
    array[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        size_t l = ids[i] ? strlen(ids[i]) : 0;
        if (l != NUDGEL_UUID_STR_LEN || strspn(ids[i], "0123456789abcdefABCDEF-") != l) {
            free(array);
            set_err(errstr, errstr_size, "receipts", "not a UUID message id");
            return NULL;
        }
        if (i)
            array[len++] = ',';
        memcpy(array + len, ids[i], l);
        len += l;
    }
    array[len++] = '}';
    array[len] = '\0';
    return array;
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
    rc |= set_opt(o, "message_id", job->id);
    rc |= set_opt(o, "tenant_id", job->tenant_id);
    rc |= set_opt(o, "idempotency_key", nonempty(job->idempotency_key));
    rc |= set_opt(o, "to_e164", to);
    rc |= set_opt(o, "country", country);
    rc |= set_opt(o, "operator", nonempty(job->phone.operator_name));
    rc |= set_opt(o, "trace_id", nonempty(r->trace_id));
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
        set_err(errstr, errstr_size, "receipts claim batch", "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        if (!reqs[i].job || !reqs[i].job->id || !reqs[i].job->tenant_id) {
            set_err(errstr, errstr_size, "receipts claim batch", "a job without id or tenant");
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
        set_err(errstr, errstr_size, "receipts claim", "out of memory");
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
            set_err(errstr, errstr_size, "receipts claim",
                    "cannot encode the batch (memory or UTF-8)");
            *err = NUDGEL_ERR_INVALID_ARG;
            goto out;
        }
    }
    if (!(text = json_dumps(arr, JSON_COMPACT)))
        set_err(errstr, errstr_size, "receipts claim", "out of memory");
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
        err = pg_fail(conn, NULL, "receipts claim batch", errstr, errstr_size);
    free(text);
    return err;
}

nudgel_err_t nudgel_receipts_claim_batch_read(PGconn *conn, const PGresult *res, size_t n,
                                              nudgel_receipt_claim_t *out, char *errstr,
                                              size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(conn, res, "receipts claim batch", errstr, errstr_size);
    if ((size_t)PQntuples(res) != n || PQnfields(res) != 2 + RECEIPT_NCOLS) {
        set_err(errstr, errstr_size, "receipts claim batch", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        size_t ord = (size_t)int_field(res, row, 0);
        const char *name = PQgetvalue(res, row, 1);
        if (ord >= n || parse_claim_outcome(name, &out[ord].outcome) != NUDGEL_OK) {
            set_err(errstr, errstr_size, "receipts claim batch: unexpected row", name);
            return NUDGEL_ERR_PG;
        }
        nudgel_err_t err = read_receipt(res, row, 2, &out[ord].receipt, errstr, errstr_size);
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
        err = pg_fail(conn, NULL, "receipts claim", errstr, errstr_size);
    free(text);
    return err;
}

nudgel_err_t nudgel_receipts_claim_fresh_read(PGconn *conn, const PGresult *res, size_t n,
                                              nudgel_receipt_claim_t *out, bool *claimed,
                                              char *errstr, size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(conn, res, "receipts claim", errstr, errstr_size);
    if ((size_t)PQntuples(res) > n || PQnfields(res) != 1 + RECEIPT_NCOLS) {
        set_err(errstr, errstr_size, "receipts claim", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    for (size_t i = 0; i < n; i++)
        claimed[i] = false;
    for (int row = 0; row < PQntuples(res); row++) {
        size_t ord = (size_t)int_field(res, row, 0);
        if (ord >= n || claimed[ord]) {
            set_err(errstr, errstr_size, "receipts claim", "unexpected result row");
            return NUDGEL_ERR_PG;
        }
        nudgel_err_t err = read_receipt(res, row, 1, &out[ord].receipt, errstr, errstr_size);
        if (err != NUDGEL_OK)
            return err;
        out[ord].outcome = NUDGEL_RECEIPT_CLAIM_FRESH;
        claimed[ord] = true;
    }
    return NUDGEL_OK;
}

/*
 * The result of the one statement sent on a blocking @p conn (waits for
 * it); the connection is drained so it is idle again. Caller clears it.
 */
static PGresult *wait_result(PGconn *conn)
{
    PGresult *res = PQgetResult(conn), *extra;
    while ((extra = PQgetResult(conn)))
        PQclear(extra);
    return res;
}

nudgel_err_t nudgel_receipts_claim_batch(PGconn *conn, const nudgel_receipt_claim_request_t *reqs,
                                         size_t n, const char *worker_id, int64_t stale_after_ms,
                                         nudgel_receipt_claim_t *out, char *errstr,
                                         size_t errstr_size)
{
    if (!out || n == 0 || n > NUDGEL_RECEIPTS_BATCH_MAX) {
        set_err(errstr, errstr_size, "receipts claim batch", "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    bool claimed[NUDGEL_RECEIPTS_BATCH_MAX];
    nudgel_err_t err =
        nudgel_receipts_claim_fresh_send(conn, reqs, n, worker_id, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    PGresult *res = wait_result(conn);
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
    res = wait_result(conn);
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
        set_err(errstr, errstr_size, "receipts release batch", "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    char *array = uuid_array(message_ids, n, errstr, errstr_size);
    if (!array)
        return NUDGEL_ERR_INVALID_ARG;
    nudgel_err_t err = NUDGEL_OK;
    const char *values[2] = {array, worker_id};
    PGresult *res = PQexecParams(conn, release_batch_sql, 2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = pg_fail(conn, res, "receipts release batch", errstr, errstr_size);
    else if (released)
        *released = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    free(array);
    return err;
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
        rc |= set_opt(o, "message_id", r->message_id);
        rc |= set_opt(o, "status", nudgel_receipt_state_name(r->status));
        rc |= set_opt(o, "gateway", r->gateway);
        rc |= set_opt(o, "gateway_message_id", r->gateway_message_id);
        rc |= set_opt(o, "error_code", r->error_code);
        rc |= set_opt(o, "error_message", r->error_message);
        rc |= set_opt(o, "encoding", r->encoding);
        if (r->segments >= 0)
            rc |= json_object_set_new(o, "segments", json_integer(r->segments));
        rc |= set_opt(o, "cost_amount", r->cost_amount);
        rc |= set_opt(o, "cost_currency", r->cost_currency);
        rc |= set_opt(o, "event_id", r->event_id);
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
        set_err(errstr, errstr_size, "receipts record", "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    ids = malloc((n ? n : 1) * sizeof(ids[0]));
    if (!ids) {
        set_err(errstr, errstr_size, "receipts record", "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    err = check_batch(results, n, ids, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    batch = batch_json(results, n);
    text = batch ? json_dumps(batch, JSON_COMPACT) : NULL;
    if (!text) {
        set_err(errstr, errstr_size, "receipts record",
                "cannot encode the batch (memory or UTF-8)");
        err = NUDGEL_ERR_INVALID_ARG;
        goto out;
    }
    if (!(released = uuid_array(release_ids, release_count, errstr, errstr_size))) {
        err = NUDGEL_ERR_INVALID_ARG;
        goto out;
    }
    const char *values[3] = {text, released, worker_id ? worker_id : ""};
    if (!PQsendQueryParams(conn, record_sql, 3, NULL, values, NULL, NULL, 0))
        err = pg_fail(conn, NULL, "receipts record", errstr, errstr_size);
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
        return pg_fail(conn, res, "receipts record", errstr, errstr_size);
    if ((size_t)PQntuples(res) != n || PQnfields(res) != 4) {
        set_err(errstr, errstr_size, "receipts record", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        size_t ord = (size_t)int_field(res, row, 0);
        nudgel_receipt_applied_t *o = &outcomes[ord < n ? ord : 0];
        if (ord >= n || parse_apply(PQgetvalue(res, row, 1), &o->outcome) != NUDGEL_OK) {
            set_err(errstr, errstr_size, "receipts record", "unexpected result row");
            return NUDGEL_ERR_PG;
        }
        if (o->outcome == NUDGEL_RECEIPT_NOT_FOUND) {
            o->from = o->now = results[ord].status;
            continue;
        }
        nudgel_err_t err = state_field(res, row, 2, &o->from, errstr, errstr_size);
        if (err == NUDGEL_OK)
            err = state_field(res, row, 3, &o->now, errstr, errstr_size);
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
        set_err(errstr, errstr_size, "receipts record", "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    nudgel_err_t err =
        nudgel_receipts_record_send(conn, results, n, NULL, 0, NULL, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    PGresult *res = wait_result(conn);
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
        set_err(errstr, errstr_size, "receipts dlr", "invalid argument");
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
        err = pg_fail(conn, res, "receipts dlr", errstr, errstr_size);
        goto out;
    }
    if (PQnfields(res) != 5) {
        set_err(errstr, errstr_size, "receipts dlr", "unexpected result shape");
        err = NUDGEL_ERR_PG;
        goto out;
    }
    out->matched = PQntuples(res);
    if (out->matched == 0)
        goto out;
    copy_field(out->message_id, sizeof(out->message_id), res, 0, 0);
    copy_field(out->tenant_id, sizeof(out->tenant_id), res, 0, 1);
    if (parse_apply(PQgetvalue(res, 0, 2), &out->outcome) != NUDGEL_OK) {
        set_err(errstr, errstr_size, "receipts dlr", "unexpected result row");
        err = NUDGEL_ERR_PG;
        goto out;
    }
    err = state_field(res, 0, 3, &out->from, errstr, errstr_size);
    if (err == NUDGEL_OK)
        err = state_field(res, 0, 4, &out->now, errstr, errstr_size);
out:
    PQclear(res);
    return err;
}
