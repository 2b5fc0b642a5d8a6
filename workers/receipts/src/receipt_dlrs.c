/*
 * receipt_dlrs.c — the statements of nudgel-receipts (nudgel/receipt_dlrs.h),
 * each one parameterised statement sent on a non-blocking connection and
 * read apart: a batch of reports (nudgel.receipt_apply_dlrs(), which decides
 * under the row locks), the pending sweep (nudgel.receipt_apply_pending()),
 * the expiry sweep, and the event outbox (claim, delete). The SQL functions
 * are schemas/postgres/004_receipts_dlr.sql.
 *
 * Every statement that returns receipts returns the same columns as the
 * claims (RECEIPTS_ROW_COLS, receipts_pg.h) plus the job's metadata, read by
 * the one reader of a receipt row (receipts_read_row()).
 */
#include "nudgel/receipt_dlrs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "receipts_pg.h"

/* A receipt row and its job's metadata (the events echo it), from a row named r. */
#define RECEIPT_COLS(r) RECEIPTS_ROW_COLS(r) ", " r ".metadata::text"
#define RECEIPT_NCOLS   (RECEIPTS_ROW_NCOLS + 1)

static const char apply_sql[] =
    "SELECT a.ord, a.outcome, coalesce(a.from_status, ''), " RECEIPT_COLS(
        "(a.receipt)") " FROM nudgel.receipt_apply_dlrs($1::jsonb, $2::bigint) a ORDER BY a.ord";

/*
 * The sweep, and when asked ($2 > 0) how many reports were waiting: the count
 * reads the outer statement's snapshot, taken before the function ran (its
 * deletes come later in the transaction), so the reports still waiting are
 * that count less those applied and dropped now. Counted up to $2
 * (NUDGEL_DLR_PENDING_COUNT_MAX), so a huge backlog costs a bounded scan; it
 * is still a scan of every kept report, so the updater asks for it now and
 * then, not on every sweep.
 */
static const char pending_sql[] =
    "SELECT s.applied, s.unmatched, CASE WHEN $2::bigint > 0 THEN (SELECT count(*) FROM "
    "(SELECT 1 FROM nudgel.receipt_pending_reports LIMIT $2::bigint) c) END, s.looked "
    "FROM nudgel.receipt_apply_pending($1::int) s";

/*
 * Sent receipts past their gateway's window, oldest first, skipping rows
 * another sweep holds: $1 the default window (seconds), $2 and $3 the
 * gateways with a window of their own and those windows, $4 the batch.
 *
 * Each gateway with its own window is a range of the index on (gateway,
 * submitted_at) of sent rows (migration 009); the rest is one range of the
 * index on submitted_at past the default window, less those gateways. The
 * bounds use now(), fixed for the statement: a clock_timestamp() bound is
 * no index condition, so the scan walked every sent receipt from the oldest,
 * and with one short window (a test's 20 s, a fast carrier's hour) beside
 * the 48 h default, every sweep read the whole 48 h of sent receipts. The
 * arrays are bound as values, so the planner counts their gateways.
 */
static const char expire_sql[] =
    "WITH due AS ("
    " SELECT c.message_id, c.window_s FROM ("
    "  SELECT o.message_id, o.window_s, o.submitted_at"
    "   FROM unnest($2::text[], $3::bigint[]) AS g(gateway, window_s)"
    "   CROSS JOIN LATERAL ("
    "    SELECT m.message_id, g.window_s, m.submitted_at FROM nudgel.message_receipts m"
    "     WHERE m.status = 'sent' AND m.gateway = g.gateway"
    "      AND m.submitted_at < now() - make_interval(secs => g.window_s)"
    "     ORDER BY m.submitted_at LIMIT $4::int FOR UPDATE SKIP LOCKED) o"
    "  UNION ALL"
    "  SELECT d.message_id, d.window_s, d.submitted_at FROM ("
    "   SELECT m.message_id, $1::bigint AS window_s, m.submitted_at"
    "    FROM nudgel.message_receipts m"
    "    WHERE m.status = 'sent' AND m.submitted_at < now() - make_interval(secs => $1::bigint)"
    "     AND m.gateway <> ALL ($2::text[])"
    "    ORDER BY m.submitted_at LIMIT $4::int FOR UPDATE SKIP LOCKED) d"
    " ) c ORDER BY c.submitted_at LIMIT $4::int),"
    " upd AS ("
    " UPDATE nudgel.message_receipts m SET status = 'expired', error_code = 'dlr_timeout',"
    "  error_message = 'no final delivery report within ' || d.window_s || ' s of submission',"
    "  final_at = clock_timestamp(), updated_at = clock_timestamp()"
    "  FROM due d WHERE m.message_id = d.message_id AND m.status = 'sent'"
    "  RETURNING m.message_id, m.attempt, m.gateway, m.gateway_message_id, d.window_s,"
    "   nudgel.status_event_id(m.message_id::text, 'ai.nudgel.message.expired', m.attempt)"
    "   AS event_id),"
    " hist AS ("
    " INSERT INTO nudgel.message_receipt_history (message_id, from_status, to_status, event_id,"
    "  detail)"
    " SELECT u.message_id, 'sent', 'expired', u.event_id,"
    "  jsonb_build_object('source', 'expiry', 'attempt', u.attempt, 'gateway', u.gateway,"
    "   'window_s', u.window_s)"
    "  FROM upd u ON CONFLICT DO NOTHING),"
    " outbox AS ("
    " INSERT INTO nudgel.receipt_event_outbox (message_id, to_status, event_id)"
    " SELECT u.message_id, 'expired', u.event_id FROM upd u ON CONFLICT DO NOTHING)"
    " SELECT count(*) FROM upd";

static const char claim_sql[] =
    "WITH c AS ("
    " SELECT o.message_id, o.to_status FROM nudgel.receipt_event_outbox o"
    "  WHERE o.claimed_until < clock_timestamp()"
    "  ORDER BY o.claimed_until, o.created_at LIMIT $1::int FOR UPDATE SKIP LOCKED),"
    " u AS ("
    " UPDATE nudgel.receipt_event_outbox o"
    "  SET claimed_until = clock_timestamp() + make_interval(secs => $2::int)"
    "  FROM c WHERE o.message_id = c.message_id AND o.to_status = c.to_status"
    "  RETURNING o.message_id, o.to_status)"
    " SELECT u.to_status, " RECEIPT_COLS(
        "m") " FROM u JOIN nudgel.message_receipts m ON m.message_id = u.message_id";

static const char delete_sql[] = "DELETE FROM nudgel.receipt_event_outbox o"
                                 " USING unnest($1::uuid[], $2::text[]) AS d(message_id, to_status)"
                                 " WHERE o.message_id = d.message_id AND o.to_status = d.to_status";

void nudgel_dlr_applied_clear(nudgel_dlr_applied_t *a)
{
    if (!a)
        return;
    json_decref(a->metadata);
    a->metadata = NULL;
}

static int set_nonempty(json_t *o, const char *key, const char *value)
{
    return value[0] ? json_object_set_new(o, key, json_string(value)) : 0;
}

/* A report as nudgel.receipt_apply_report() reads it. @returns NULL when out of memory. */
static json_t *report_json(const nudgel_dlr_report_t *r, size_t ord)
{
    nudgel_receipt_state_t target;
    json_t *o = json_object();
    if (!o)
        return NULL;
    int rc = json_object_set_new(o, "ord", json_integer((json_int_t)ord));
    rc |= set_nonempty(o, "gateway", r->gateway);
    rc |= set_nonempty(o, "gateway_message_id", r->gateway_message_id);
    if (nudgel_dlr_target(r, &target))
        rc |= json_object_set_new(o, "target", json_string(nudgel_receipt_state_name(target)));
    rc |= json_object_set_new(o, "status", json_string(nudgel_dlr_status_name(r->status)));
    rc |= set_nonempty(o, "raw_status", r->raw_status);
    rc |= set_nonempty(o, "error_code", r->error_code);
    rc |= set_nonempty(o, "error_message", r->error_message);
    if (r->error_permanent >= 0)
        rc |= json_object_set_new(o, "error_permanent", json_boolean(r->error_permanent));
    rc |= set_nonempty(o, "network_code", r->network_code);
    rc |= set_nonempty(o, "operator", r->operator_name);
    rc |= set_nonempty(o, "price_amount", r->price_amount);
    rc |= set_nonempty(o, "price_currency", r->price_currency);
    rc |= set_nonempty(o, "done_at", r->done_at);
    rc |= set_nonempty(o, "received_at", r->received_at);
    rc |= set_nonempty(o, "source", r->source);
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

nudgel_err_t nudgel_dlr_apply_send(PGconn *conn, const nudgel_dlr_report_t *const *reports,
                                   size_t n, int64_t pending_ttl_s, char *errstr,
                                   size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_OK;
    char ttl[24];
    char *text = NULL;
    json_t *arr = NULL;
    if (!conn || !reports || n == 0 || n > NUDGEL_RECEIPTS_BATCH_MAX) {
        receipts_set_err(errstr, errstr_size, "receipts dlrs", "invalid argument or batch size");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (!(arr = json_array()))
        goto oom;
    for (size_t i = 0; i < n; i++) {
        if (!reports[i]->source[0] || !reports[i]->gateway[0] ||
            !reports[i]->gateway_message_id[0]) {
            receipts_set_err(errstr, errstr_size, "receipts dlrs",
                             "a report without source, gateway or gateway message id");
            err = NUDGEL_ERR_INVALID_ARG;
            goto out;
        }
        if (json_array_append_new(arr, report_json(reports[i], i)) != 0)
            goto oom;
    }
    if (!(text = json_dumps(arr, JSON_COMPACT)))
        goto oom;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)pending_ttl_s);
    const char *values[2] = {text, ttl};
    if (!PQsendQueryParams(conn, apply_sql, 2, NULL, values, NULL, NULL, 0))
        err = receipts_pg_fail(conn, NULL, "receipts dlrs", errstr, errstr_size);
    goto out;
oom:
    receipts_set_err(errstr, errstr_size, "receipts dlrs", "out of memory or bad UTF-8");
    err = NUDGEL_ERR_NO_MEMORY;
out:
    free(text);
    json_decref(arr);
    return err;
}

/* Row @p row's receipt and metadata from column @p col on (RECEIPT_COLS). */
static nudgel_err_t read_receipt(const PGresult *res, int row, int col, nudgel_receipt_t *r,
                                 json_t **metadata, char *errstr, size_t errstr_size)
{
    *metadata = NULL;
    nudgel_err_t err = receipts_read_row(res, row, col, r, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    if (!PQgetisnull(res, row, col + RECEIPTS_ROW_NCOLS)) {
        json_error_t jerr;
        *metadata = json_loads(PQgetvalue(res, row, col + RECEIPTS_ROW_NCOLS), 0, &jerr);
    }
    return NUDGEL_OK;
}

static nudgel_err_t parse_outcome(const char *name, nudgel_dlr_outcome_t *out)
{
    for (unsigned i = 0; i < NUDGEL_DLR_OUTCOME_COUNT; i++)
        if (strcmp(name, nudgel_dlr_outcome_name((nudgel_dlr_outcome_t)i)) == 0) {
            *out = (nudgel_dlr_outcome_t)i;
            return NUDGEL_OK;
        }
    return NUDGEL_ERR_PG;
}

nudgel_err_t nudgel_dlr_apply_read(PGconn *conn, const PGresult *res, size_t n,
                                   nudgel_dlr_applied_t *out, char *errstr, size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return receipts_pg_fail(conn, res, "receipts dlrs", errstr, errstr_size);
    if ((size_t)PQntuples(res) != n || PQnfields(res) != 3 + RECEIPT_NCOLS) {
        receipts_set_err(errstr, errstr_size, "receipts dlrs", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    for (size_t i = 0; i < n; i++)
        memset(&out[i], 0, sizeof(out[i]));
    for (int row = 0; row < PQntuples(res); row++) {
        size_t ord = (size_t)receipts_int_field(res, row, 0);
        if (ord >= n || parse_outcome(PQgetvalue(res, row, 1), &out[ord].outcome) != NUDGEL_OK) {
            receipts_set_err(errstr, errstr_size, "receipts dlrs", "unexpected result row");
            return NUDGEL_ERR_PG;
        }
        nudgel_dlr_applied_t *a = &out[ord];
        if (a->outcome == NUDGEL_DLR_PENDING)
            continue;
        nudgel_err_t err = receipts_state_field(res, row, 2, &a->from, errstr, errstr_size);
        if (err == NUDGEL_OK)
            err = read_receipt(res, row, 3, &a->receipt, &a->metadata, errstr, errstr_size);
        if (err != NUDGEL_OK)
            return err;
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_dlr_pending_send(PGconn *conn, int limit, bool count, char *errstr,
                                     size_t errstr_size)
{
    char lim[16], count_max[24];
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(count_max, sizeof(count_max), "%d", count ? NUDGEL_DLR_PENDING_COUNT_MAX : 0);
    const char *values[2] = {lim, count_max};
    if (!PQsendQueryParams(conn, pending_sql, 2, NULL, values, NULL, NULL, 0))
        return receipts_pg_fail(conn, NULL, "receipts pending", errstr, errstr_size);
    return NUDGEL_OK;
}

nudgel_err_t nudgel_dlr_pending_read(PGconn *conn, const PGresult *res, int *applied,
                                     int *unmatched, int *looked, int64_t *waiting, char *errstr,
                                     size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return receipts_pg_fail(conn, res, "receipts pending", errstr, errstr_size);
    if (PQntuples(res) != 1 || PQnfields(res) != 4) {
        receipts_set_err(errstr, errstr_size, "receipts pending", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    *applied = (int)receipts_int_field(res, 0, 0);
    *unmatched = (int)receipts_int_field(res, 0, 1);
    *looked = (int)receipts_int_field(res, 0, 3);
    if (waiting && PQgetisnull(res, 0, 2)) {
        *waiting = -1; /* not counted this time */
    } else if (waiting) {
        int64_t before = receipts_int_field(res, 0, 2);
        *waiting = before > *applied + *unmatched ? before - *applied - *unmatched : 0;
    }
    return NUDGEL_OK;
}

/* Appends @p item to the array literal in @p buf (quoted: gateway names are [A-Za-z0-9._-]). */
static void array_add(char *buf, size_t size, size_t *len, const char *item, bool quote)
{
    int n = snprintf(buf + *len, size - *len, "%s%s%s%s", *len > 1 ? "," : "", quote ? "\"" : "",
                     item, quote ? "\"" : "");
    if (n > 0)
        *len += (size_t)n < size - *len ? (size_t)n : size - *len - 1;
}

nudgel_err_t nudgel_dlr_expire_send(PGconn *conn, const nudgel_dlr_expiry_t *e, int limit,
                                    char *errstr, size_t errstr_size)
{
    /* At most NUDGEL_DLR_EXPIRY_GW_MAX names of 64 characters, quoted, and as many windows. */
    char gateways[NUDGEL_DLR_EXPIRY_GW_MAX * 68 + 3], windows[NUDGEL_DLR_EXPIRY_GW_MAX * 21 + 3];
    char dflt[24], lim[16], window[24];
    size_t glen = 1, wlen = 1;
    gateways[0] = windows[0] = '{';
    for (size_t i = 0; i < e->count; i++) {
        array_add(gateways, sizeof(gateways), &glen, e->items[i].gateway, true);
        snprintf(window, sizeof(window), "%lld", (long long)e->items[i].window_s);
        array_add(windows, sizeof(windows), &wlen, window, false);
    }
    snprintf(gateways + glen, sizeof(gateways) - glen, "}");
    snprintf(windows + wlen, sizeof(windows) - wlen, "}");
    snprintf(dflt, sizeof(dflt), "%lld", (long long)e->default_s);
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *values[4] = {dflt, gateways, windows, lim};
    if (!PQsendQueryParams(conn, expire_sql, 4, NULL, values, NULL, NULL, 0))
        return receipts_pg_fail(conn, NULL, "receipts expiry", errstr, errstr_size);
    return NUDGEL_OK;
}

nudgel_err_t nudgel_dlr_expire_read(PGconn *conn, const PGresult *res, int *expired, char *errstr,
                                    size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return receipts_pg_fail(conn, res, "receipts expiry", errstr, errstr_size);
    if (PQntuples(res) != 1 || PQnfields(res) != 1) {
        receipts_set_err(errstr, errstr_size, "receipts expiry", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    *expired = (int)receipts_int_field(res, 0, 0);
    return NUDGEL_OK;
}

nudgel_err_t nudgel_dlr_outbox_claim_send(PGconn *conn, int limit, int claim_s, char *errstr,
                                          size_t errstr_size)
{
    char lim[16], secs[16];
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(secs, sizeof(secs), "%d", claim_s);
    const char *values[2] = {lim, secs};
    if (!PQsendQueryParams(conn, claim_sql, 2, NULL, values, NULL, NULL, 0))
        return receipts_pg_fail(conn, NULL, "receipts outbox", errstr, errstr_size);
    return NUDGEL_OK;
}

nudgel_err_t nudgel_dlr_outbox_claim_read(PGconn *conn, const PGresult *res,
                                          nudgel_dlr_applied_t *out, size_t cap, size_t *n,
                                          char *errstr, size_t errstr_size)
{
    *n = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return receipts_pg_fail(conn, res, "receipts outbox", errstr, errstr_size);
    if (PQnfields(res) != 1 + RECEIPT_NCOLS || (size_t)PQntuples(res) > cap) {
        receipts_set_err(errstr, errstr_size, "receipts outbox", "unexpected result shape");
        return NUDGEL_ERR_PG;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        nudgel_dlr_applied_t *a = &out[row];
        memset(a, 0, sizeof(*a));
        a->outcome = NUDGEL_DLR_APPLIED;
        nudgel_err_t err =
            read_receipt(res, row, 1, &a->receipt, &a->metadata, errstr, errstr_size);
        /* the event is the outbox row's transition (the receipt cannot have moved on: final) */
        if (err == NUDGEL_OK)
            err = receipts_state_field(res, row, 0, &a->receipt.status, errstr, errstr_size);
        if (err != NUDGEL_OK) {
            for (int i = 0; i <= row; i++)
                nudgel_dlr_applied_clear(&out[i]);
            return err;
        }
        *n = (size_t)row + 1;
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_dlr_outbox_delete_send(PGconn *conn, const char *const *message_ids,
                                           const char *const *statuses, size_t n, char *errstr,
                                           size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_OK;
    char *ids = receipts_uuid_array(message_ids, n, errstr, errstr_size);
    char *sts = malloc(n * 16 + 3);
    if (!ids || !sts) {
        if (ids)
            receipts_set_err(errstr, errstr_size, "receipts outbox", "out of memory");
        err = ids ? NUDGEL_ERR_NO_MEMORY : NUDGEL_ERR_INVALID_ARG;
        goto out;
    }
    size_t len = 0;
    sts[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(sts + len, 16, "%s%.12s", i ? "," : "", statuses[i]);
    sts[len++] = '}';
    sts[len] = '\0';
    const char *values[2] = {ids, sts};
    if (!PQsendQueryParams(conn, delete_sql, 2, NULL, values, NULL, NULL, 0))
        err = receipts_pg_fail(conn, NULL, "receipts outbox", errstr, errstr_size);
out:
    free(ids);
    free(sts);
    return err;
}

nudgel_err_t nudgel_dlr_outbox_delete_read(PGconn *conn, const PGresult *res, char *errstr,
                                           size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return receipts_pg_fail(conn, res, "receipts outbox", errstr, errstr_size);
    return NUDGEL_OK;
}
