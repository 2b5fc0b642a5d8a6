/*
 * deliver_db.c — see deliver_db.h.
 */
#define _GNU_SOURCE
#include "deliver_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"

nudgel_err_t wh_db_err(PGconn *pg)
{
    return PQstatus(pg) == CONNECTION_OK ? NUDGEL_ERR_PG : NUDGEL_ERR_PG_UNREACHABLE;
}

static bool is_final(const char *status)
{
    return strcmp(status, "delivered") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "exhausted") == 0 || strcmp(status, "cancelled") == 0;
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
 * A read: the rows that exist for the batch's deliveries, and other
 * deliveries of the same event to the same endpoint. Two joins, not one with
 * OR: each uses its index (an OR join would scan). The row itself is written
 * with the first outcome (wh_db_flush), one write instead of two.
 */
static void claim_sql(char *sql, size_t size, bool with_payload)
{
    snprintf(sql, size,
             "WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(delivery_id uuid, "
             "endpoint_id uuid, event_id text, n bigint)) "
             "SELECT i.n, true, d.status, d.attempts, d.last_status_code, d.last_error FROM "
             "input i JOIN nudgel.webhook_deliveries d ON d.delivery_id = i.delivery_id "
             "UNION ALL SELECT i.n, false, d.status, d.attempts, d.last_status_code, d.last_error "
             "FROM input i JOIN nudgel.webhook_deliveries d ON d.endpoint_id = i.endpoint_id AND "
             "d.event_id = i.event_id AND d.delivery_id <> i.delivery_id%s ORDER BY 1, 2 DESC",
             with_payload ? " AND d.replay_of IS NULL" : "");
}

nudgel_err_t wh_db_claim_read(PGconn *pg, const PGresult *res, wh_claim_t *out, size_t count,
                              char *errstr, size_t errstr_size)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "claiming deliveries: %s",
                 res ? PQresultErrorMessage(res) : PQerrorMessage(pg));
        return wh_db_err(pg);
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
        snprintf(c->status, sizeof(c->status), "%s", PQgetvalue(res, r, 2));
        c->attempts = atoi(PQgetvalue(res, r, 3));
        c->last_status_code = PQgetisnull(res, r, 4) ? 0 : atoi(PQgetvalue(res, r, 4));
        snprintf(c->last_error, sizeof(c->last_error), "%s", PQgetvalue(res, r, 5));
        c->duplicate = !own;
        c->final = own && is_final(c->status);
        c->fresh = own && !c->final;
    }
    return NUDGEL_OK;
}

nudgel_err_t wh_db_claim_send(PGconn *pg, bool with_payload, json_t *jobs, char *errstr,
                              size_t errstr_size)
{
    char sql[1400];
    claim_sql(sql, sizeof(sql), with_payload);
    char *text = json_dumps(jobs, JSON_COMPACT);
    if (!text)
        return NUDGEL_ERR_NO_MEMORY;
    const char *params[1] = {text};
    int ok = PQsendQueryParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    free(text);
    if (!ok) {
        snprintf(errstr, errstr_size, "claiming deliveries: %s", PQerrorMessage(pg));
        return NUDGEL_ERR_PG_UNREACHABLE;
    }
    return NUDGEL_OK;
}

/*
 * A read: the rows that exist for the batch's deliveries, and other
 * deliveries of the same event to the same endpoint. Two joins, not one with
 * OR: each uses its index (an OR join would scan). The row itself is written
 * with the first outcome (wh_db_flush), one write instead of two.
 */
nudgel_err_t wh_db_claim(PGconn *pg, bool with_payload, json_t *jobs, wh_claim_t *out, size_t count,
                         char *errstr, size_t errstr_size)
{
    char sql[1400];
    claim_sql(sql, sizeof(sql), with_payload);
    char *text = json_dumps(jobs, JSON_COMPACT);
    if (!text)
        return NUDGEL_ERR_NO_MEMORY;
    const char *params[1] = {text};
    PGresult *res = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    free(text);
    nudgel_err_t err = wh_db_claim_read(pg, res, out, count, errstr, errstr_size);
    PQclear(res);
    return err;
}

static nudgel_err_t exec_json(PGconn *pg, const char *what, const char *sql, json_t *rows,
                              PGresult **result, char *errstr, size_t errstr_size)
{
    char *text = json_dumps(rows, JSON_COMPACT);
    if (!text)
        return NUDGEL_ERR_NO_MEMORY;
    const char *params[1] = {text};
    PGresult *res = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    free(text);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "%s: %s", what, PQerrorMessage(pg));
        PQclear(res);
        return wh_db_err(pg);
    }
    if (result)
        *result = res;
    else
        PQclear(res);
    return NUDGEL_OK;
}

/* The flush's statements (wh_db_flush, wh_db_flush_send). */
static const char update_sql[] =
    "UPDATE nudgel.webhook_deliveries d SET status = u.status, attempts = "
    "GREATEST(d.attempts, u.attempts), last_status_code = u.last_status_code, last_error = "
    "u.last_error, next_attempt_at = CASE WHEN u.next_attempt_ms IS NULL THEN NULL ELSE "
    "to_timestamp(u.next_attempt_ms / 1000.0) END, final_at = CASE WHEN u.final THEN now() "
    "END, updated_at = now() FROM jsonb_to_recordset($1::jsonb) AS u(delivery_id uuid, status "
    "text, attempts int, last_status_code int, last_error text, next_attempt_ms bigint, final "
    "boolean) WHERE d.delivery_id = u.delivery_id AND d.status NOT IN ('delivered', 'failed', "
    "'exhausted', 'cancelled')";

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

static const char succeeding_sql[] =
    "UPDATE nudgel.webhook_endpoints SET failing_since = NULL, "
    "last_success_at = now(), updated_at = now() WHERE endpoint_id IN "
    "(SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))";

static void insert_sql(char *sql, size_t size, bool with_payload)
{
    snprintf(sql, size,
             "INSERT INTO nudgel.webhook_deliveries (delivery_id, tenant_id, endpoint_id, "
             "event_type, event_id, status, attempts, last_status_code, last_error, "
             "next_attempt_at, final_at%s) SELECT DISTINCT ON (u.delivery_id) u.delivery_id, "
             "u.tenant_id, u.endpoint_id, u.event_type, u.event_id, u.status, u.attempts, "
             "u.last_status_code, u.last_error, CASE WHEN u.next_attempt_ms IS NULL THEN NULL "
             "ELSE to_timestamp(u.next_attempt_ms / 1000.0) END, CASE WHEN u.final THEN now() "
             "END%s FROM jsonb_to_recordset($1::jsonb) AS u(delivery_id uuid, tenant_id text, "
             "endpoint_id uuid, event_type text, event_id text, status text, attempts int, "
             "last_status_code int, last_error text, next_attempt_ms bigint, final boolean, "
             "payload jsonb) WHERE NOT EXISTS (SELECT 1 FROM nudgel.webhook_deliveries o WHERE "
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

nudgel_err_t wh_db_flush(PGconn *pg, bool with_payload, json_t *attempts, json_t *deliveries,
                         json_t *succeeded, json_t *failed, int64_t failing_window_ms,
                         json_t **disabled, char *errstr, size_t errstr_size)
{
    char sql[3072];
    nudgel_err_t err;
    PGresult *res = NULL;
    *disabled = json_array();
    res = PQexec(pg, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(errstr, errstr_size, "begin: %s", PQerrorMessage(pg));
        PQclear(res);
        return wh_db_err(pg);
    }
    PQclear(res);
    res = NULL;
    /*
     * The delivery rows first (the attempts reference them): updated when they
     * exist (never moved back from a final status), else created with this
     * first outcome; a row that would be a second delivery of an (endpoint,
     * event) is not created (ON CONFLICT DO NOTHING covers that index too).
     */
    insert_sql(sql, sizeof(sql), with_payload);
    if (json_array_size(deliveries) &&
        ((err = exec_json(pg, "updating deliveries", update_sql, deliveries, NULL, errstr,
                          errstr_size)) != NUDGEL_OK ||
         (err = exec_json(pg, "recording deliveries", sql, deliveries, NULL, errstr,
                          errstr_size)) != NUDGEL_OK))
        goto fail;
    if (json_array_size(attempts) &&
        (err = exec_json(pg, "recording attempts", attempts_sql, attempts, NULL, errstr,
                         errstr_size)) != NUDGEL_OK)
        goto fail;
    /* Failures first, successes last: an endpoint with both in one batch is not failing. */
    if (json_array_size(failed) &&
        (err = exec_json(pg, "marking failing endpoints", failing_sql, failed, NULL, errstr,
                         errstr_size)) != NUDGEL_OK)
        goto fail;
    if (json_array_size(succeeded) &&
        (err = exec_json(pg, "marking succeeding endpoints", succeeding_sql, succeeded, NULL,
                         errstr, errstr_size)) != NUDGEL_OK)
        goto fail;
    if (json_array_size(failed)) {
        disable_sql(sql, sizeof(sql), failing_window_ms);
        if ((err = exec_json(pg, "disabling failing endpoints", sql, failed, &res, errstr,
                             errstr_size)) != NUDGEL_OK)
            goto fail;
        for (int r = 0; r < PQntuples(res); r++)
            json_array_append_new(*disabled,
                                  json_pack("{s:s, s:s, s:s}", "endpoint_id", PQgetvalue(res, r, 0),
                                            "tenant_id", PQgetvalue(res, r, 1), "reason",
                                            PQgetvalue(res, r, 2)));
        PQclear(res);
        res = NULL;
    }
    res = PQexec(pg, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(errstr, errstr_size, "commit: %s", PQerrorMessage(pg));
        err = wh_db_err(pg);
        PQclear(res);
        json_array_clear(*disabled);
        return err;
    }
    PQclear(res);
    return NUDGEL_OK;
fail:
    PQclear(PQexec(pg, "ROLLBACK"));
    json_array_clear(*disabled);
    return err;
}

/* Queues one statement of the pipeline. */
static bool pipe_json(PGconn *pg, wh_flush_call_t *call, const char *what, const char *sql,
                      json_t *rows, char *errstr, size_t errstr_size)
{
    char *text = json_dumps(rows, JSON_COMPACT);
    if (!text) {
        snprintf(errstr, errstr_size, "%s: out of memory", what);
        return false;
    }
    const char *params[1] = {text};
    int ok = PQsendQueryParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    free(text);
    if (!ok) {
        snprintf(errstr, errstr_size, "%s: %s", what, PQerrorMessage(pg));
        return false;
    }
    call->what[call->sent++] = what;
    return true;
}

/*
 * The same statements as wh_db_flush(), in the same order, in one pipeline:
 * without BEGIN/COMMIT they form one implicit transaction up to the sync,
 * rolled back as a whole when one of them fails.
 */
nudgel_err_t wh_db_flush_send(PGconn *pg, bool with_payload, json_t *attempts, json_t *deliveries,
                              json_t *succeeded, json_t *failed, int64_t failing_window_ms,
                              wh_flush_call_t *call, char *errstr, size_t errstr_size)
{
    char sql[3072];
    memset(call, 0, sizeof(*call));
    call->disable_at = -1;
    if (!PQenterPipelineMode(pg)) {
        snprintf(errstr, errstr_size, "entering pipeline mode: %s", PQerrorMessage(pg));
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
        snprintf(errstr, errstr_size, "pipeline sync: %s", PQerrorMessage(pg));
        ok = false;
    }
    if (!ok)
        return NUDGEL_ERR_PG_UNREACHABLE;
    call->err = NUDGEL_OK;
    call->disabled = json_array();
    return NUDGEL_OK;
}

int wh_db_flush_poll(PGconn *pg, wh_flush_call_t *call)
{
    if (!PQconsumeInput(pg))
        return -1;
    while (!PQisBusy(pg)) {
        PGresult *res = PQgetResult(pg);
        if (!res) {
            if (call->last_null)
                break; /* nothing more yet */
            call->last_null = true;
            continue; /* the end of one statement's results */
        }
        call->last_null = false;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            if (call->got < call->sent && call->err == NUDGEL_OK) {
                snprintf(call->errstr, sizeof(call->errstr), "flush: %d of %d results", call->got,
                         call->sent);
                call->err = NUDGEL_ERR_PG;
            }
            if (call->err != NUDGEL_OK)
                json_array_clear(call->disabled);
            PQexitPipelineMode(pg);
            return 1;
        }
        int k = call->got++;
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            if (k == call->disable_at)
                for (int r = 0; r < PQntuples(res); r++)
                    json_array_append_new(call->disabled,
                                          json_pack("{s:s, s:s, s:s}", "endpoint_id",
                                                    PQgetvalue(res, r, 0), "tenant_id",
                                                    PQgetvalue(res, r, 1), "reason",
                                                    PQgetvalue(res, r, 2)));
        } else if (call->err == NUDGEL_OK) {
            snprintf(call->errstr, sizeof(call->errstr), "%s: %s",
                     k < call->sent && k >= 0 ? call->what[k] : "flush",
                     st == PGRES_PIPELINE_ABORTED ? "pipeline aborted" : PQresultErrorMessage(res));
            call->err = wh_db_err(pg);
        }
        PQclear(res);
    }
    return PQstatus(pg) == CONNECTION_OK ? 0 : -1;
}

nudgel_err_t wh_db_endpoint_load(PGconn *pg, const char *endpoint_id, wh_endpoint_row_t *row,
                                 char *errstr, size_t errstr_size)
{
    const char *params[1] = {endpoint_id};
    memset(row, 0, sizeof(*row));
    PGresult *res = PQexecParams(
        pg,
        "SELECT tenant_id, url, enabled, COALESCE(rate_limit_per_second, 0)::float8, "
        "COALESCE(max_concurrency, 0), secret_ciphertext, secret_key_id, "
        "CASE WHEN previous_secret_expires_at > now() THEN previous_secret_ciphertext END, "
        "COALESCE(previous_secret_key_id, ''), "
        "COALESCE((extract(epoch FROM previous_secret_expires_at) * 1000)::bigint, 0) "
        "FROM nudgel.webhook_endpoints WHERE endpoint_id = $1::uuid",
        1, NULL, params, NULL, NULL, 0);
    nudgel_err_t err = NUDGEL_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "loading endpoint %s: %s", endpoint_id, PQerrorMessage(pg));
        err = wh_db_err(pg);
        goto out;
    }
    if (PQntuples(res) == 0)
        goto out;
    row->found = true;
    snprintf(row->tenant_id, sizeof(row->tenant_id), "%s", PQgetvalue(res, 0, 0));
    row->url = strdup(PQgetvalue(res, 0, 1));
    row->enabled = PQgetvalue(res, 0, 2)[0] == 't';
    row->rate_per_second = atof(PQgetvalue(res, 0, 3));
    row->max_concurrency = atoi(PQgetvalue(res, 0, 4));
    row->secret = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 5), &row->secret_len);
    snprintf(row->secret_key_id, sizeof(row->secret_key_id), "%s", PQgetvalue(res, 0, 6));
    if (!PQgetisnull(res, 0, 7)) {
        row->previous =
            PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 7), &row->previous_len);
        snprintf(row->previous_key_id, sizeof(row->previous_key_id), "%s", PQgetvalue(res, 0, 8));
        row->previous_expires_ms = atoll(PQgetvalue(res, 0, 9));
    }
    if (!row->url || !row->secret) {
        wh_endpoint_row_clear(row);
        err = NUDGEL_ERR_NO_MEMORY;
    }
out:
    PQclear(res);
    return err;
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

nudgel_err_t wh_db_endpoint_disable(PGconn *pg, const char *endpoint_id, const char *reason,
                                    bool *changed, char *errstr, size_t errstr_size)
{
    const char *params[2] = {endpoint_id, reason};
    PGresult *res = PQexecParams(pg,
                                 "UPDATE nudgel.webhook_endpoints SET enabled = false, "
                                 "disabled_reason = $2, disabled_at = now(), updated_at = now() "
                                 "WHERE endpoint_id = $1::uuid AND enabled",
                                 2, NULL, params, NULL, NULL, 0);
    nudgel_err_t err = NUDGEL_OK;
    *changed = false;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(errstr, errstr_size, "disabling endpoint %s: %s", endpoint_id, PQerrorMessage(pg));
        err = wh_db_err(pg);
    } else {
        *changed = atoi(PQcmdTuples(res)) > 0;
    }
    PQclear(res);
    return err;
}
