/*
 * endpoints_view.c — `nudgel-admin endpoints list|show|enable|disable`:
 * the endpoint row as list and show read it (every column but the secrets;
 * only whether a previous secret still signs), printed as text or as JSON,
 * and the change of its enabled state. add and rotate-secret are
 * endpoints.c.
 *
 * Every statement is parameterised; values typed by operators never reach
 * SQL text. Nothing here reads, prints or logs a secret.
 */
#define _GNU_SOURCE
#include "endpoints.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nudgel/job.h"

#define REASON_MAX 512

/* A JSON array of event patterns as "a, b", or "(every event)" when empty. */
static const char *events_text(const char *json_array_text, char *buf, size_t size)
{
    json_t *list = json_loads(json_array_text, 0, NULL);
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < json_array_size(list) && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? ", " : "",
                              json_string_value(json_array_get(list, i)));
    json_decref(list);
    return buf[0] ? buf : "(every event)";
}

/* Columns shown by list and show: never the secrets, only whether a previous one is live. */
#define ENDPOINT_COLUMNS                                                                           \
    "endpoint_id::text, tenant_id, url, enabled, coalesce(description, ''), "                      \
    "array_to_json(event_types)::text, rate_limit_per_second::float8, max_concurrency, "           \
    "coalesce(disabled_reason, ''), "                                                              \
    "to_char(disabled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "                  \
    "secret_key_id, "                                                                              \
    "to_char(previous_secret_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "   \
    "(previous_secret_ciphertext IS NOT NULL AND previous_secret_expires_at > now()), "            \
    "to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "                \
    "to_char(last_success_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "              \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "                   \
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

enum {
    C_ID,
    C_TENANT,
    C_URL,
    C_ENABLED,
    C_DESCRIPTION,
    C_EVENTS,
    C_RATE,
    C_CONC,
    C_DISABLED_REASON,
    C_DISABLED_AT,
    C_KEY_ID,
    C_PREV_EXPIRES,
    C_PREV_LIVE,
    C_FAILING_SINCE,
    C_LAST_SUCCESS,
    C_CREATED,
    C_UPDATED,
};

static json_t *nullable(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? json_null() : json_string(PQgetvalue(res, row, col));
}

static json_t *endpoint_json(PGresult *res, int r)
{
    json_t *events = json_loads(PQgetvalue(res, r, C_EVENTS), 0, NULL);
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:b, s:o, s:o, s:o, s:s, s:s}",
        "endpoint_id", PQgetvalue(res, r, C_ID), "tenant_id", PQgetvalue(res, r, C_TENANT), "url",
        PQgetvalue(res, r, C_URL), "enabled", PQgetvalue(res, r, C_ENABLED)[0] == 't',
        "description", nullable(res, r, C_DESCRIPTION), "event_types",
        events ? events : json_array(), "rate_limit_per_second",
        PQgetisnull(res, r, C_RATE) ? json_null() : json_real(atof(PQgetvalue(res, r, C_RATE))),
        "max_concurrency",
        PQgetisnull(res, r, C_CONC) ? json_null() : json_integer(atoll(PQgetvalue(res, r, C_CONC))),
        "disabled_reason",
        PQgetvalue(res, r, C_DISABLED_REASON)[0]
            ? json_string(PQgetvalue(res, r, C_DISABLED_REASON))
            : json_null(),
        "disabled_at", nullable(res, r, C_DISABLED_AT), "secret_key_id",
        PQgetvalue(res, r, C_KEY_ID), "previous_secret_live",
        PQgetvalue(res, r, C_PREV_LIVE)[0] == 't', "previous_secret_expires_at",
        nullable(res, r, C_PREV_EXPIRES), "failing_since", nullable(res, r, C_FAILING_SINCE),
        "last_success_at", nullable(res, r, C_LAST_SUCCESS), "created_at",
        PQgetvalue(res, r, C_CREATED), "updated_at", PQgetvalue(res, r, C_UPDATED));
    if (doc && !PQgetvalue(res, r, C_DESCRIPTION)[0])
        json_object_set_new(doc, "description", json_null());
    return doc;
}

static void print_json(FILE *out, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text)
        fprintf(out, "%s\n", text);
    free(text);
}

nudgel_err_t nudgel_admin_endpoints_list(const nudgel_conf_t *conf,
                                         const nudgel_admin_endpoint_opts_t *o, FILE *out,
                                         char *errstr, size_t errstr_size)
{
    nudgel_err_t err;
    PGresult *res = NULL;
    if (o->tenant && !nudgel_tenant_id_valid(o->tenant)) {
        snprintf(errstr, errstr_size, "--tenant: \"%.64s\" is not a tenant id", o->tenant);
        return NUDGEL_ERR_INVALID_ARG;
    }
    PGconn *pg = nudgel_admin_pg_connect(conf, &err, errstr, errstr_size);
    if (!pg)
        return err;
    const char *params[1] = {o->tenant};
    res = PQexecParams(pg,
                       "SELECT " ENDPOINT_COLUMNS " FROM nudgel.webhook_endpoints"
                       " WHERE $1::text IS NULL OR tenant_id = $1"
                       " ORDER BY tenant_id, created_at, endpoint_id",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = nudgel_admin_pg_failure(pg, "listing endpoints", errstr, errstr_size);
        goto out;
    }
    int n = PQntuples(res);
    if (o->json) {
        json_t *list = json_array();
        for (int r = 0; r < n; r++)
            json_array_append_new(list, endpoint_json(res, r));
        print_json(out, list);
        json_decref(list);
    } else {
        fprintf(out, "%-36s  %-16s  %-8s  %-24s  %s\n", "ENDPOINT", "TENANT", "STATE", "EVENTS",
                "URL");
        for (int r = 0; r < n; r++) {
            char evbuf[NUDGEL_ADMIN_EVENTS_TEXT_MAX];
            const char *ev = events_text(PQgetvalue(res, r, C_EVENTS), evbuf, sizeof(evbuf));
            fprintf(out, "%-36s  %-16s  %-8s  %-24s  %s\n", PQgetvalue(res, r, C_ID),
                    PQgetvalue(res, r, C_TENANT),
                    PQgetvalue(res, r, C_ENABLED)[0] == 't' ? "enabled" : "disabled", ev,
                    PQgetvalue(res, r, C_URL));
        }
        fprintf(out, "%d endpoint%s\n", n, n == 1 ? "" : "s");
    }
    err = NUDGEL_OK;
out:
    PQclear(res);
    PQfinish(pg);
    return err;
}

/* The endpoint row of @p id in @p *res, or NUDGEL_ERR_INVALID_FIELD when there is none. */
static nudgel_err_t load_endpoint(PGconn *pg, const char *id, PGresult **res, char *errstr,
                                  size_t errstr_size)
{
    const char *params[1] = {id};
    *res = PQexecParams(pg,
                        "SELECT " ENDPOINT_COLUMNS
                        " FROM nudgel.webhook_endpoints WHERE endpoint_id = $1::uuid",
                        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(*res) != PGRES_TUPLES_OK)
        return nudgel_admin_pg_failure(pg, "reading the endpoint", errstr, errstr_size);
    if (PQntuples(*res) != 1) {
        snprintf(errstr, errstr_size, "--endpoint: no endpoint %s", id);
        return NUDGEL_ERR_INVALID_FIELD;
    }
    return NUDGEL_OK;
}

static void print_endpoint(FILE *out, PGresult *res)
{
    char evbuf[NUDGEL_ADMIN_EVENTS_TEXT_MAX];
    const char *ev = events_text(PQgetvalue(res, 0, C_EVENTS), evbuf, sizeof(evbuf));
    fprintf(out, "endpoint %s\n", PQgetvalue(res, 0, C_ID));
    fprintf(out, "  tenant:      %s\n", PQgetvalue(res, 0, C_TENANT));
    fprintf(out, "  url:         %s\n", PQgetvalue(res, 0, C_URL));
    if (PQgetvalue(res, 0, C_DESCRIPTION)[0])
        fprintf(out, "  description: %s\n", PQgetvalue(res, 0, C_DESCRIPTION));
    fprintf(out, "  events:      %s\n", ev);
    if (PQgetvalue(res, 0, C_ENABLED)[0] == 't')
        fprintf(out, "  state:       enabled\n");
    else
        fprintf(out, "  state:       disabled since %s (%s)\n", PQgetvalue(res, 0, C_DISABLED_AT),
                PQgetvalue(res, 0, C_DISABLED_REASON));
    fprintf(out, "  rate limit:  %s\n",
            PQgetisnull(res, 0, C_RATE) ? "(worker default)" : PQgetvalue(res, 0, C_RATE));
    fprintf(out, "  concurrency: %s\n",
            PQgetisnull(res, 0, C_CONC) ? "(worker default)" : PQgetvalue(res, 0, C_CONC));
    fprintf(out, "  secret:      sealed with key %s\n", PQgetvalue(res, 0, C_KEY_ID));
    if (PQgetvalue(res, 0, C_PREV_LIVE)[0] == 't')
        fprintf(out, "  previous:    still signing until %s\n", PQgetvalue(res, 0, C_PREV_EXPIRES));
    if (!PQgetisnull(res, 0, C_FAILING_SINCE))
        fprintf(out, "  failing:     since %s\n", PQgetvalue(res, 0, C_FAILING_SINCE));
    if (!PQgetisnull(res, 0, C_LAST_SUCCESS))
        fprintf(out, "  last success: %s\n", PQgetvalue(res, 0, C_LAST_SUCCESS));
    fprintf(out, "  created:     %s\n", PQgetvalue(res, 0, C_CREATED));
}

nudgel_err_t nudgel_admin_endpoints_show(const nudgel_conf_t *conf,
                                         const nudgel_admin_endpoint_opts_t *o, FILE *out,
                                         char *errstr, size_t errstr_size)
{
    nudgel_err_t err;
    PGresult *res = NULL;
    if ((err = nudgel_admin_check_endpoint_id(o->endpoint_id, "--endpoint", errstr, errstr_size)))
        return err;
    PGconn *pg = nudgel_admin_pg_connect(conf, &err, errstr, errstr_size);
    if (!pg)
        return err;
    if ((err = load_endpoint(pg, o->endpoint_id, &res, errstr, errstr_size)))
        goto out;
    if (o->json) {
        json_t *doc = endpoint_json(res, 0);
        print_json(out, doc);
        json_decref(doc);
    } else {
        print_endpoint(out, res);
    }
out:
    PQclear(res);
    PQfinish(pg);
    return err;
}

nudgel_err_t nudgel_admin_endpoints_set_enabled(const nudgel_conf_t *conf,
                                                const nudgel_admin_endpoint_opts_t *o, bool enabled,
                                                FILE *out, char *errstr, size_t errstr_size)
{
    nudgel_err_t err;
    PGresult *res = NULL;
    if ((err = nudgel_admin_check_endpoint_id(o->endpoint_id, "--endpoint", errstr, errstr_size)))
        return err;
    if (o->reason && strlen(o->reason) > REASON_MAX) {
        snprintf(errstr, errstr_size, "--reason: longer than %d characters", REASON_MAX);
        return NUDGEL_ERR_INVALID_ARG;
    }
    PGconn *pg = nudgel_admin_pg_connect(conf, &err, errstr, errstr_size);
    if (!pg)
        return err;
    const char *params[2] = {o->endpoint_id, o->reason ? o->reason : "disabled by an operator"};
    /* Only a change of state is written, so disabled_at keeps the first disable's time. */
    res = enabled
              ? PQexecParams(pg,
                             "UPDATE nudgel.webhook_endpoints SET enabled = true, "
                             "disabled_reason = NULL, disabled_at = NULL, failing_since = NULL, "
                             "updated_at = now() WHERE endpoint_id = $1::uuid AND NOT enabled",
                             1, NULL, params, NULL, NULL, 0)
              : PQexecParams(pg,
                             "UPDATE nudgel.webhook_endpoints SET enabled = false, "
                             "disabled_reason = $2, disabled_at = now(), updated_at = now() "
                             "WHERE endpoint_id = $1::uuid AND enabled",
                             2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = nudgel_admin_pg_failure(
            pg, enabled ? "enabling the endpoint" : "disabling the endpoint", errstr, errstr_size);
        goto out;
    }
    bool changed = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    res = NULL;
    if (!changed && (err = load_endpoint(pg, o->endpoint_id, &res, errstr, errstr_size)))
        goto out;
    fprintf(out, "endpoint %s %s%s\n", o->endpoint_id, changed ? "" : "was already ",
            enabled ? "enabled" : "disabled");
    err = NUDGEL_OK;
out:
    PQclear(res);
    PQfinish(pg);
    return err;
}
