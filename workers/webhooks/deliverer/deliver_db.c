/*
 * deliver_db.c — see deliver_db.h. The boundary of the deliveries table:
 * a row's status text becomes a wh_delivery_status_t here (and its name is
 * written from the enum), its last_error is split here, so nothing past the
 * read compares stored text.
 */
#define _GNU_SOURCE
#include "deliver_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *wh_delivery_status_name(wh_delivery_status_t s)
{
    switch (s) {
    case WH_DELIVERY_PENDING:
        return "pending";
    case WH_DELIVERY_DELIVERING:
        return "delivering";
    case WH_DELIVERY_DELIVERED:
        return "delivered";
    case WH_DELIVERY_FAILED:
        return "failed";
    case WH_DELIVERY_EXHAUSTED:
        return "exhausted";
    case WH_DELIVERY_CANCELLED:
        return "cancelled";
    case WH_DELIVERY_DEDUPLICATED:
        return "deduplicated";
    }
    return "unknown";
}

bool wh_delivery_status_is_final(wh_delivery_status_t s)
{
    switch (s) {
    case WH_DELIVERY_PENDING:
    case WH_DELIVERY_DELIVERING:
        return false;
    case WH_DELIVERY_DELIVERED:
    case WH_DELIVERY_FAILED:
    case WH_DELIVERY_EXHAUSTED:
    case WH_DELIVERY_CANCELLED:
    case WH_DELIVERY_DEDUPLICATED:
        return true;
    }
    return false;
}

/* A stored status into the enum: the one place its text is read (never "deduplicated"). */
static bool status_parse(const char *text, wh_delivery_status_t *out)
{
    for (int s = WH_DELIVERY_PENDING; s <= WH_DELIVERY_CANCELLED; s++) {
        if (strcmp(text, wh_delivery_status_name((wh_delivery_status_t)s)) == 0) {
            *out = (wh_delivery_status_t)s;
            return true;
        }
    }
    return false;
}

/* A stored last_error, "class: message" (flush.c writes it so), into its two parts. */
static void last_error_split(const char *text, wh_claim_t *c)
{
    const char *colon = strstr(text, ": ");
    c->error_class[0] = c->error_message[0] = '\0';
    if (!colon)
        return;
    snprintf(c->error_class, sizeof(c->error_class), "%.*s", (int)(colon - text), text);
    snprintf(c->error_message, sizeof(c->error_message), "%s", colon + 2);
}

/* @p text on one line: libpq's messages span several, with tabs. */
static void one_line(char *text)
{
    size_t o = 0;
    bool space = false;
    for (size_t i = 0; text[i]; i++) {
        bool blank = text[i] == '\n' || text[i] == '\r' || text[i] == '\t' || text[i] == ' ';
        if (blank) {
            space = o > 0;
            continue;
        }
        if (space)
            text[o++] = ' ';
        space = false;
        text[o++] = text[i];
    }
    text[o] = '\0';
}

/* "what: libpq's last error", on one line. */
static void conn_error(const char *what, PGconn *pg, char *errstr, size_t errstr_size)
{
    snprintf(errstr, errstr_size, "%s: %s", what, PQerrorMessage(pg));
    one_line(errstr);
}

/* The statement's error on one line. */
static void result_error(const char *what, const PGresult *res, char *errstr, size_t errstr_size)
{
    const char *m = res ? PQresultErrorMessage(res) : "";
    snprintf(errstr, errstr_size, "%s: %s", what,
             !m || !*m ? (res ? PQresStatus(PQresultStatus(res)) : "no result") : m);
    one_line(errstr);
}

/* Queues @p sql with the JSON text of @p rows as its one parameter. */
static nudgel_err_t send_json(PGconn *pg, const char *what, const char *sql, json_t *rows,
                              char *errstr, size_t errstr_size)
{
    char *text = json_dumps(rows, JSON_COMPACT);
    if (!text) {
        snprintf(errstr, errstr_size, "%s: out of memory", what);
        return NUDGEL_ERR_NO_MEMORY;
    }
    const char *params[1] = {text};
    int ok = PQsendQueryParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    free(text);
    if (!ok) {
        conn_error(what, pg, errstr, errstr_size);
        return NUDGEL_ERR_PG_UNREACHABLE;
    }
    return NUDGEL_OK;
}

bool wh_db_has_duplicates_table(PGconn *pg)
{
    PGresult *res = PQexec(pg, "SELECT 1 FROM information_schema.tables WHERE table_schema = "
                               "'nudgel' AND table_name = 'webhook_duplicates'");
    bool has = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    PQclear(res);
    return has;
}

bool wh_db_has_payload_column(PGconn *pg)
{
    PGresult *res = PQexec(pg, "SELECT 1 FROM information_schema.columns WHERE table_schema = "
                               "'nudgel' AND table_name = 'webhook_deliveries' AND column_name = "
                               "'payload'");
    bool has = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    PQclear(res);
    return has;
}

/*
 * A read: the rows that exist for the batch's deliveries (with whether the
 * row is the job's tenant's), and other deliveries of the same tenant of the
 * same event to the same endpoint (another tenant's job naming that endpoint
 * is not its duplicate: it is refused as foreign later, and must not learn of
 * the other's delivery). Two joins, not one with OR: each uses its index (an
 * OR join would scan). The row itself is written with the first outcome (the
 * flush), one write instead of two.
 */
static void claim_sql(char *sql, size_t size, bool with_payload)
{
    snprintf(sql, size,
             "WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(delivery_id uuid, "
             "tenant_id text, endpoint_id uuid, event_id text, n bigint)) "
             "SELECT i.n, true, d.status, d.attempts, d.last_status_code, d.last_error, d.url, "
             "d.tenant_id = i.tenant_id, d.delivery_id::text FROM input i JOIN "
             "nudgel.webhook_deliveries d ON d.delivery_id = i.delivery_id "
             "UNION ALL SELECT i.n, false, d.status, d.attempts, d.last_status_code, d.last_error, "
             "d.url, true, d.delivery_id::text FROM input i JOIN nudgel.webhook_deliveries d ON "
             "d.endpoint_id = i.endpoint_id AND d.event_id = i.event_id AND d.delivery_id <> "
             "i.delivery_id AND d.tenant_id = i.tenant_id%s ORDER BY 1, 2 DESC",
             with_payload ? " AND d.replay_of IS NULL" : "");
}

nudgel_err_t wh_db_claim_send(PGconn *pg, bool with_payload, json_t *jobs, char *errstr,
                              size_t errstr_size)
{
    char sql[1400];
    claim_sql(sql, sizeof(sql), with_payload);
    return send_json(pg, "claiming deliveries", sql, jobs, errstr, errstr_size);
}

nudgel_err_t wh_db_claim_read(const PGresult *res, wh_claim_t *out, size_t count, char *errstr,
                              size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        result_error("claiming deliveries", res, errstr, errstr_size);
        return NUDGEL_ERR_PG;
    }
    for (size_t i = 0; i < count; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        out[i].fresh = true;
    }
    for (int r = PQntuples(res) - 1; r >= 0; r--) { /* own row last, so it wins */
        long long n = atoll(PQgetvalue(res, r, 0));
        if (n < 1 || (size_t)n > count)
            continue;
        wh_claim_t *c = &out[n - 1];
        bool own = PQgetvalue(res, r, 1)[0] == 't';
        if (!status_parse(PQgetvalue(res, r, 2), &c->status)) {
            snprintf(errstr, errstr_size,
                     "claiming deliveries: stored status \"%.32s\" is not a delivery status",
                     PQgetvalue(res, r, 2));
            return NUDGEL_ERR_PG;
        }
        c->attempts = atoi(PQgetvalue(res, r, 3));
        c->last_status_code = PQgetisnull(res, r, 4) ? 0 : atoi(PQgetvalue(res, r, 4));
        last_error_split(PQgetvalue(res, r, 5), c);
        snprintf(c->url, sizeof(c->url), "%s", PQgetvalue(res, r, 6)); /* "" when NULL */
        c->duplicate = !own;
        c->foreign = own && PQgetvalue(res, r, 7)[0] != 't';
        snprintf(c->duplicate_of, sizeof(c->duplicate_of), "%s", own ? "" : PQgetvalue(res, r, 8));
        c->final = own && wh_delivery_status_is_final(c->status);
        c->fresh = own && !c->final;
    }
    return NUDGEL_OK;
}

/* The flush's statements (wh_db_flush_send). */
static const char update_sql[] =
    "UPDATE nudgel.webhook_deliveries d SET status = u.status, attempts = "
    "GREATEST(d.attempts, u.attempts), last_status_code = u.last_status_code, last_error = "
    "u.last_error, url = coalesce(u.url, d.url), next_attempt_at = CASE WHEN u.next_attempt_ms IS "
    "NULL THEN NULL ELSE "
    "to_timestamp(u.next_attempt_ms / 1000.0) END, final_at = CASE WHEN u.final THEN now() "
    "END, updated_at = now() FROM jsonb_to_recordset($1::jsonb) AS u(delivery_id uuid, "
    "tenant_id text, status text, attempts int, last_status_code int, last_error text, "
    "next_attempt_ms bigint, final boolean, url text) WHERE d.delivery_id = u.delivery_id AND "
    "d.tenant_id = u.tenant_id AND (d.status NOT IN ('delivered', 'failed', "
    "'exhausted', 'cancelled') OR (d.status = 'cancelled' AND d.last_error LIKE "
    "'endpoint\\_not\\_found:%'))";

static const char attempts_sql[] =
    "INSERT INTO nudgel.webhook_attempts (delivery_id, attempt, status_code, latency_ms, "
    "error_class, error_message, response_snippet) SELECT delivery_id, attempt, "
    "status_code, latency_ms, error_class, error_message, response_snippet FROM "
    "jsonb_to_recordset($1::jsonb) AS a(delivery_id uuid, attempt int, status_code int, "
    "latency_ms int, error_class text, error_message text, response_snippet text) "
    "WHERE EXISTS (SELECT 1 FROM nudgel.webhook_deliveries d WHERE d.delivery_id = "
    "a.delivery_id) ON CONFLICT (delivery_id, attempt) DO NOTHING";

static const char failing_sql[] =
    "UPDATE nudgel.webhook_endpoints SET failing_since = now(), updated_at = "
    "now() WHERE endpoint_id IN (SELECT value::uuid FROM "
    "jsonb_array_elements_text($1::jsonb)) AND failing_since IS NULL";

/* Jobs ended deduplicated (webhook_duplicates, migration 007); a re-delivered one is a no-op. */
static const char duplicates_sql[] =
    "INSERT INTO nudgel.webhook_duplicates (delivery_id, tenant_id, endpoint_id, event_type, "
    "event_id, duplicate_of) SELECT delivery_id, tenant_id, endpoint_id, event_type, event_id, "
    "duplicate_of FROM jsonb_to_recordset($1::jsonb) AS u(delivery_id uuid, tenant_id text, "
    "endpoint_id uuid, event_type text, event_id text, duplicate_of uuid) ON CONFLICT "
    "(delivery_id) DO NOTHING";

static const char succeeding_sql[] =
    "UPDATE nudgel.webhook_endpoints SET failing_since = NULL, "
    "last_success_at = now(), updated_at = now() WHERE endpoint_id IN "
    "(SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))";

static void insert_sql(char *sql, size_t size, bool with_payload)
{
    snprintf(
        sql, size,
        "INSERT INTO nudgel.webhook_deliveries (delivery_id, tenant_id, endpoint_id, "
        "event_type, event_id, status, attempts, last_status_code, last_error, url, "
        "next_attempt_at, final_at%s) SELECT DISTINCT ON (u.delivery_id) u.delivery_id, "
        "u.tenant_id, u.endpoint_id, u.event_type, u.event_id, u.status, u.attempts, "
        "u.last_status_code, u.last_error, u.url, CASE WHEN u.next_attempt_ms IS NULL THEN NULL "
        "ELSE to_timestamp(u.next_attempt_ms / 1000.0) END, CASE WHEN u.final THEN now() "
        "END%s FROM jsonb_to_recordset($1::jsonb) AS u(delivery_id uuid, tenant_id text, "
        "endpoint_id uuid, event_type text, event_id text, status text, attempts int, "
        "last_status_code int, last_error text, next_attempt_ms bigint, final boolean, "
        "payload jsonb, url text) WHERE NOT EXISTS (SELECT 1 FROM nudgel.webhook_deliveries o "
        "WHERE "
        "o.delivery_id = u.delivery_id) ORDER BY u.delivery_id, u.attempts DESC ON CONFLICT "
        "DO NOTHING",
        with_payload ? ", payload" : "", with_payload ? ", u.payload" : "");
}

static void disable_sql(char *sql, size_t size, int64_t failing_window_ms)
{
    snprintf(sql, size,
             "UPDATE nudgel.webhook_endpoints SET enabled = false, disabled_at = now(), "
             "disabled_reason = format('failing without a success since %%s (longer than "
             "%%s)', failing_since, make_interval(secs => %lld / 1000.0)), updated_at = "
             "now() WHERE endpoint_id IN (SELECT value::uuid FROM "
             "jsonb_array_elements_text($1::jsonb)) AND enabled AND failing_since IS NOT NULL "
             "AND failing_since < now() - make_interval(secs => %lld / 1000.0) RETURNING "
             "endpoint_id::text, tenant_id, disabled_reason",
             (long long)failing_window_ms, (long long)failing_window_ms);
}

/* Queues one statement of the pipeline. */
static bool pipe_json(PGconn *pg, wh_flush_call_t *call, const char *what, const char *sql,
                      json_t *rows, char *errstr, size_t errstr_size)
{
    if (send_json(pg, what, sql, rows, errstr, errstr_size) != NUDGEL_OK)
        return false;
    call->what[call->sent++] = what;
    return true;
}

/*
 * The delivery rows first (the attempts reference them): updated when they
 * exist (never moved back from a final status, but for a cancelled
 * endpoint_not_found one: its dead letter's replay reopens it), else created with this
 * first outcome; a row that would be a second delivery of an (endpoint,
 * event) is not created (ON CONFLICT DO NOTHING covers that index too).
 * Without BEGIN/COMMIT the statements form one implicit transaction up to
 * the sync, rolled back as a whole when one of them fails.
 */
nudgel_err_t wh_db_flush_send(PGconn *pg, bool with_payload, json_t *attempts, json_t *deliveries,
                              json_t *succeeded, json_t *failed, json_t *duplicates,
                              int64_t failing_window_ms, wh_flush_call_t *call, char *errstr,
                              size_t errstr_size)
{
    char sql[3072];
    memset(call, 0, sizeof(*call));
    call->disable_at = -1;
    if (!PQenterPipelineMode(pg)) {
        conn_error("entering pipeline mode", pg, errstr, errstr_size);
        return NUDGEL_ERR_PG_UNREACHABLE;
    }
    insert_sql(sql, sizeof(sql), with_payload);
    bool ok = true;
    if (json_array_size(deliveries))
        ok = pipe_json(pg, call, "updating deliveries", update_sql, deliveries, errstr,
                       errstr_size) &&
             pipe_json(pg, call, "recording deliveries", sql, deliveries, errstr, errstr_size);
    if (ok && json_array_size(attempts))
        ok = pipe_json(pg, call, "recording attempts", attempts_sql, attempts, errstr, errstr_size);
    if (ok && json_array_size(duplicates))
        ok = pipe_json(pg, call, "recording duplicates", duplicates_sql, duplicates, errstr,
                       errstr_size);
    /* Failures first, successes last: an endpoint with both in one batch is not failing. */
    if (ok && json_array_size(failed))
        ok = pipe_json(pg, call, "marking failing endpoints", failing_sql, failed, errstr,
                       errstr_size);
    if (ok && json_array_size(succeeded))
        ok = pipe_json(pg, call, "marking succeeding endpoints", succeeding_sql, succeeded, errstr,
                       errstr_size);
    if (ok && json_array_size(failed)) {
        disable_sql(sql, sizeof(sql), failing_window_ms);
        call->disable_at = call->sent;
        ok = pipe_json(pg, call, "disabling failing endpoints", sql, failed, errstr, errstr_size);
    }
    if (ok && !PQpipelineSync(pg)) {
        conn_error("pipeline sync", pg, errstr, errstr_size);
        ok = false;
    }
    return ok ? NUDGEL_OK : NUDGEL_ERR_PG_UNREACHABLE;
}

nudgel_err_t wh_db_flush_read(const wh_flush_call_t *call, PGresult *const *results, size_t n,
                              json_t **disabled, char *errstr, size_t errstr_size)
{
    json_t *out = json_array();
    int k = 0;
    bool synced = false;
    *disabled = NULL;
    if (!out) {
        snprintf(errstr, errstr_size, "flush: out of memory");
        return NUDGEL_ERR_PG;
    }
    for (size_t i = 0; i < n && !synced; i++) {
        ExecStatusType st = PQresultStatus(results[i]);
        if (st == PGRES_PIPELINE_SYNC) {
            synced = true;
            continue;
        }
        const char *what = k < call->sent ? call->what[k] : "flush";
        if (st == PGRES_PIPELINE_ABORTED) {
            snprintf(errstr, errstr_size, "%s: pipeline aborted", what);
            goto fail;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            result_error(what, results[i], errstr, errstr_size);
            goto fail;
        }
        if (k == call->disable_at)
            for (int r = 0; r < PQntuples(results[i]); r++)
                json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "endpoint_id",
                                                     PQgetvalue(results[i], r, 0), "tenant_id",
                                                     PQgetvalue(results[i], r, 1), "reason",
                                                     PQgetvalue(results[i], r, 2)));
        k++;
    }
    if (!synced || k != call->sent) {
        snprintf(errstr, errstr_size, "flush: %d of %d results", k, call->sent);
        goto fail;
    }
    *disabled = out;
    return NUDGEL_OK;
fail:
    json_decref(out);
    return NUDGEL_ERR_PG;
}

/* ---- endpoints ----------------------------------------------------------- */

nudgel_err_t wh_db_endpoints_send(PGconn *pg, json_t *ids, char *errstr, size_t errstr_size)
{
    return send_json(
        pg, "reading endpoint rows",
        "SELECT endpoint_id::text, tenant_id, url, enabled, "
        "COALESCE(rate_limit_per_second, 0)::float8, COALESCE(max_concurrency, 0), "
        "secret_ciphertext, secret_key_id, "
        "CASE WHEN previous_secret_expires_at > now() THEN previous_secret_ciphertext END, "
        "COALESCE(previous_secret_key_id, ''), "
        "COALESCE((extract(epoch FROM previous_secret_expires_at) * 1000)::bigint, 0) "
        "FROM nudgel.webhook_endpoints WHERE endpoint_id IN "
        "(SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))",
        ids, errstr, errstr_size);
}

int wh_db_endpoints_count(const PGresult *res, char *errstr, size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        result_error("reading endpoint rows", res, errstr, errstr_size);
        return -1;
    }
    return PQntuples(res);
}

nudgel_err_t wh_db_endpoint_row(const PGresult *res, int r, wh_endpoint_row_t *row)
{
    memset(row, 0, sizeof(*row));
    snprintf(row->endpoint_id, sizeof(row->endpoint_id), "%s", PQgetvalue(res, r, 0));
    snprintf(row->tenant_id, sizeof(row->tenant_id), "%s", PQgetvalue(res, r, 1));
    row->url = strdup(PQgetvalue(res, r, 2));
    row->enabled = PQgetvalue(res, r, 3)[0] == 't';
    row->rate_per_second = atof(PQgetvalue(res, r, 4));
    row->max_concurrency = atoi(PQgetvalue(res, r, 5));
    row->secret = PQunescapeBytea((const unsigned char *)PQgetvalue(res, r, 6), &row->secret_len);
    snprintf(row->secret_key_id, sizeof(row->secret_key_id), "%s", PQgetvalue(res, r, 7));
    if (!PQgetisnull(res, r, 8)) {
        row->previous =
            PQunescapeBytea((const unsigned char *)PQgetvalue(res, r, 8), &row->previous_len);
        snprintf(row->previous_key_id, sizeof(row->previous_key_id), "%s", PQgetvalue(res, r, 9));
        row->previous_expires_ms = atoll(PQgetvalue(res, r, 10));
    }
    if (!row->url || !row->secret) {
        wh_endpoint_row_clear(row);
        return NUDGEL_ERR_NO_MEMORY;
    }
    return NUDGEL_OK;
}

void wh_endpoint_row_clear(wh_endpoint_row_t *row)
{
    free(row->url);
    if (row->secret)
        PQfreemem(row->secret);
    if (row->previous)
        PQfreemem(row->previous);
    memset(row, 0, sizeof(*row));
}

nudgel_err_t wh_db_endpoint_disable_send(PGconn *pg, const char *endpoint_id, const char *reason,
                                         char *errstr, size_t errstr_size)
{
    const char *params[2] = {endpoint_id, reason};
    /* "OR disabled_reason = $2": the reason names the delivery and attempt, so a
     * disable sent again after a loss still reports the change it made. */
    if (!PQsendQueryParams(pg,
                           "UPDATE nudgel.webhook_endpoints SET enabled = false, "
                           "disabled_reason = $2, disabled_at = now(), updated_at = now() "
                           "WHERE endpoint_id = $1::uuid AND (enabled OR disabled_reason = $2)",
                           2, NULL, params, NULL, NULL, 0)) {
        conn_error("disabling an endpoint", pg, errstr, errstr_size);
        return NUDGEL_ERR_PG_UNREACHABLE;
    }
    return NUDGEL_OK;
}

nudgel_err_t wh_db_endpoint_disable_read(const PGresult *res, bool *changed, char *errstr,
                                         size_t errstr_size)
{
    *changed = false;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        result_error("disabling an endpoint", res, errstr, errstr_size);
        return NUDGEL_ERR_PG;
    }
    *changed = atoi(PQcmdTuples((PGresult *)res)) > 0;
    return NUDGEL_OK;
}
