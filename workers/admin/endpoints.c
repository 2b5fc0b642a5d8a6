/*
 * endpoints.c — see endpoints.h.
 *
 * Every statement is parameterised; values typed by operators never reach
 * SQL text. The secret exists in clear only between its generation and the
 * one-time print, in one buffer wiped right after.
 */
#define _GNU_SOURCE
#include "endpoints.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "nudgel/job.h"
#include "nudgel/log.h"
#include "nudgel/pg.h"
#include "nudgel/uuid.h"
#include "nudgel/webhooks/secretbox.h"
#include "nudgel/webhooks/signature.h"
#include "nudgel/webhooks/ssrf.h"

#define PROGRAM         "nudgel-admin"
#define URL_MAX         2048
#define DESCRIPTION_MAX 1024
#define EVENTS_MAX      64
#define EVENT_NAME_MAX  128
#define RATE_LIMIT_MAX  100000.0
#define CONCURRENCY_MAX 10000
#define REASON_MAX      512
#define EVENTS_TEXT_MAX (EVENTS_MAX * (EVENT_NAME_MAX + 3) + 3)

const nudgel_conf_entry_t nudgel_admin_webhooks_conf[] = {
    {"webhooks.rotation_overlap_s", NUDGEL_CONF_INT, "86400", 0, 2592000, NULL, 0,
     "After `endpoints rotate-secret`, how long the previous secret still signs (a second "
     "webhook-signature entry), so receivers can switch without dropping a delivery."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    nudgel_log_debug("postgres: %s", message);
}

PGconn *nudgel_admin_pg_connect(const nudgel_conf_t *conf, nudgel_err_t *err, char *errstr,
                                size_t errstr_size)
{
    const char *dsn = nudgel_conf_get_str(conf, "pg.dsn");
    char reason[512];
    if (!dsn || !*dsn) {
        snprintf(errstr, errstr_size, "pg.dsn: is not set (NUDGEL_PG_DSN or --pg-dsn)");
        *err = NUDGEL_ERR_CONFIG;
        return NULL;
    }
    PGconn *conn =
        nudgel_pg_connect(dsn, PROGRAM, (int)nudgel_conf_get_int(conf, "pg.connect_timeout_s"),
                          reason, sizeof(reason));
    if (!conn) {
        snprintf(errstr, errstr_size, "cannot connect to Postgres: %s", reason);
        *err = NUDGEL_ERR_PG_UNREACHABLE;
        return NULL;
    }
    PQsetNoticeProcessor(conn, notice_to_log, NULL);
    *err = NUDGEL_OK;
    return conn;
}

nudgel_err_t nudgel_admin_check_endpoint_id(const char *id, const char *flag, char *errstr,
                                            size_t errstr_size)
{
    uint8_t raw[16];
    if (!id || !*id) {
        snprintf(errstr, errstr_size, "%s: an endpoint id is required", flag);
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (strlen(id) != NUDGEL_UUID_STR_LEN || nudgel_uuid_parse(id, raw) != 0) {
        snprintf(errstr, errstr_size, "%s: \"%.64s\" is not an endpoint id (a UUID)", flag, id);
        return NUDGEL_ERR_INVALID_ARG;
    }
    return NUDGEL_OK;
}

/* A failed statement: unreachable when the connection dropped, else a statement error. */
static nudgel_err_t pg_failure(PGconn *pg, const char *what, char *errstr, size_t errstr_size)
{
    const char *msg = PQerrorMessage(pg);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    snprintf(errstr, errstr_size, "%s: %.*s", what, (int)n, msg);
    return PQstatus(pg) == CONNECTION_BAD ? NUDGEL_ERR_PG_UNREACHABLE : NUDGEL_ERR_PG;
}

/* "[a-z][a-z0-9_]*" */
static size_t segment_len(const char *p)
{
    if (!(*p >= 'a' && *p <= 'z'))
        return 0;
    size_t n = 1;
    while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '_')
        n++;
    return n;
}

/*
 * One event pattern: an exact type as in the webhook job schema
 * ("message.delivered": two or more dotted segments), or a prefix
 * ("message.*", "ai.nudgel.*": segments then ".*").
 */
static bool event_pattern_valid(const char *p)
{
    size_t segments = 0;
    if (strlen(p) > EVENT_NAME_MAX)
        return false;
    for (;;) {
        size_t n = segment_len(p);
        if (!n)
            return false;
        segments++;
        p += n;
        if (!*p)
            return segments >= 2;
        if (*p != '.')
            return false;
        p++;
        if (strcmp(p, "*") == 0)
            return true;
    }
}

/*
 * --events into a Postgres array literal ("{\"a\",\"b\"}") and a JSON
 * array, in the operator's order with duplicates dropped. "*" alone, or no
 * flag, means every event: the empty array.
 */
static nudgel_err_t parse_events(const char *events, char *literal, size_t literal_size,
                                 json_t *list, char *errstr, size_t errstr_size)
{
    size_t o = (size_t)snprintf(literal, literal_size, "{");
    if (!events || strcmp(events, "*") == 0) {
        snprintf(literal, literal_size, "{}");
        return NUDGEL_OK;
    }
    const char *p = events;
    for (size_t pos = 1;; pos++) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, ",");
        size_t tlen = len;
        while (tlen > 0 && p[tlen - 1] == ' ')
            tlen--;
        char one[EVENT_NAME_MAX + 2];
        if (tlen == 0 || tlen > EVENT_NAME_MAX) {
            snprintf(errstr, errstr_size, "--events: entry %zu is %s", pos,
                     tlen ? "longer than 128 characters" : "empty");
            return NUDGEL_ERR_INVALID_ARG;
        }
        memcpy(one, p, tlen);
        one[tlen] = '\0';
        if (!event_pattern_valid(one)) {
            snprintf(errstr, errstr_size,
                     "--events: \"%s\" is neither an event type (message.delivered) nor a prefix "
                     "(message.*): lower-case dotted names",
                     one);
            return NUDGEL_ERR_INVALID_ARG;
        }
        bool seen = false;
        for (size_t i = 0; i < json_array_size(list); i++)
            seen |= strcmp(json_string_value(json_array_get(list, i)), one) == 0;
        if (!seen) {
            if (json_array_size(list) == EVENTS_MAX) {
                snprintf(errstr, errstr_size, "--events: more than %d entries", EVENTS_MAX);
                return NUDGEL_ERR_INVALID_ARG;
            }
            json_array_append_new(list, json_string(one));
            o += (size_t)snprintf(literal + o, literal_size - o, "%s\"%s\"",
                                  json_array_size(list) > 1 ? "," : "", one);
        }
        if (!p[len])
            break;
        p += len + 1;
    }
    snprintf(literal + o, literal_size - o, "}");
    return NUDGEL_OK;
}

static nudgel_err_t check_url(const char *url, char *errstr, size_t errstr_size)
{
    nudgel_ssrf_verdict_t v;
    if (!url || !*url) {
        snprintf(errstr, errstr_size, "--url: required (the endpoint's http:// or https:// URL)");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (strlen(url) > URL_MAX) {
        snprintf(errstr, errstr_size, "--url: longer than %d characters", URL_MAX);
        return NUDGEL_ERR_INVALID_ARG;
    }
    for (const char *p = url; *p; p++) {
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) {
            snprintf(errstr, errstr_size, "--url: contains whitespace or control characters");
            return NUDGEL_ERR_INVALID_ARG;
        }
    }
    if (nudgel_ssrf_parse_url(url, &v) != NUDGEL_OK) {
        /* The reason starts "url: "; name the flag instead. */
        const char *why = strncmp(v.reason, "url: ", 5) == 0 ? v.reason + 5 : v.reason;
        snprintf(errstr, errstr_size, "--url: %s", why);
        return NUDGEL_ERR_INVALID_ARG;
    }
    /* Allowed (tests, private deployments allow-list it), but say what will happen. */
    nudgel_ssrf_class_t cls;
    if (v.host_is_literal && nudgel_ssrf_classify_text(v.host, &cls) == 0 &&
        cls != NUDGEL_SSRF_GLOBAL)
        fprintf(stderr,
                "%s: warning: --url: %s is %s: nudgel-webhooks refuses it unless "
                "webhooks.ssrf_allow_cidrs lists it\n",
                PROGRAM, v.host, nudgel_ssrf_class_name(cls));
    return NUDGEL_OK;
}

static nudgel_err_t check_add(const nudgel_admin_endpoint_opts_t *o, double *rate, long *conc,
                              char *errstr, size_t errstr_size)
{
    nudgel_err_t err;
    if (!o->tenant || !nudgel_tenant_id_valid(o->tenant)) {
        snprintf(errstr, errstr_size,
                 o->tenant
                     ? "--tenant: \"%.64s\" is not a tenant id ([A-Za-z0-9][A-Za-z0-9_-]{0,63})"
                     : "--tenant: required%.0s",
                 o->tenant ? o->tenant : "");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if ((err = check_url(o->url, errstr, errstr_size)))
        return err;
    *rate = 0;
    if (o->rate_limit) {
        char *end = NULL;
        errno = 0;
        double r = strtod(o->rate_limit, &end);
        if (!*o->rate_limit || *end || errno || !isfinite(r) || r <= 0 || r > RATE_LIMIT_MAX) {
            snprintf(errstr, errstr_size,
                     "--rate-limit: \"%.32s\" is not a number of requests per second above 0 and "
                     "at most %.0f",
                     o->rate_limit, RATE_LIMIT_MAX);
            return NUDGEL_ERR_INVALID_ARG;
        }
        *rate = r;
    }
    *conc = 0;
    if (o->concurrency) {
        char *end = NULL;
        errno = 0;
        long c = strtol(o->concurrency, &end, 10);
        if (!*o->concurrency || *end || errno || c < 1 || c > CONCURRENCY_MAX) {
            snprintf(errstr, errstr_size,
                     "--concurrency: \"%.32s\" is not a whole number from 1 to %d", o->concurrency,
                     CONCURRENCY_MAX);
            return NUDGEL_ERR_INVALID_ARG;
        }
        *conc = c;
    }
    if (o->description && strlen(o->description) > DESCRIPTION_MAX) {
        snprintf(errstr, errstr_size, "--description: longer than %d characters", DESCRIPTION_MAX);
        return NUDGEL_ERR_INVALID_ARG;
    }
    return NUDGEL_OK;
}

/*
 * A new secret sealed with the keyring: @p secret (clear text, for the
 * one-time print; the caller wipes it), @p *sealed (malloc'd) and the key id.
 */
static nudgel_err_t new_sealed_secret(const nudgel_secretbox_t *box,
                                      char secret[NUDGEL_WH_SECRET_TEXT_MAX],
                                      unsigned char **sealed, size_t *sealed_len,
                                      const char **key_id, char *errstr, size_t errstr_size)
{
    if (nudgel_wh_secret_generate(secret, NUDGEL_WH_SECRET_TEXT_MAX) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "no random bytes from OpenSSL for the secret");
        return NUDGEL_ERR_IO;
    }
    return nudgel_secretbox_seal(box, secret, strlen(secret), sealed, sealed_len, key_id, errstr,
                                 errstr_size);
}

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

static void print_secret_notice(FILE *out, const char *secret)
{
    fprintf(out,
            "  secret:      %s\n"
            "               (shown once: store it now; it cannot be shown again)\n",
            secret);
}

nudgel_err_t nudgel_admin_endpoints_add(const nudgel_conf_t *conf,
                                        const nudgel_admin_endpoint_opts_t *o, FILE *out,
                                        char *errstr, size_t errstr_size)
{
    char literal[EVENTS_TEXT_MAX], secret[NUDGEL_WH_SECRET_TEXT_MAX] = "",
                                   id[NUDGEL_UUID_STR_LEN + 1], rate_text[32], conc_text[16];
    json_t *events = json_array();
    nudgel_secretbox_t *box = NULL;
    unsigned char *sealed = NULL;
    size_t sealed_len = 0;
    const char *key_id = NULL;
    PGconn *pg = NULL;
    PGresult *res = NULL;
    nudgel_err_t err;
    double rate;
    long conc;

    if (!events) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    if ((err = check_add(o, &rate, &conc, errstr, errstr_size)) ||
        (err = parse_events(o->events, literal, sizeof(literal), events, errstr, errstr_size)) ||
        (err = nudgel_secretbox_from_conf(conf, &box, errstr, errstr_size)))
        goto out;
    if (!(pg = nudgel_admin_pg_connect(conf, &err, errstr, errstr_size)))
        goto out;
    if ((err = new_sealed_secret(box, secret, &sealed, &sealed_len, &key_id, errstr, errstr_size)))
        goto out;
    nudgel_uuid7_string(id);
    snprintf(rate_text, sizeof(rate_text), "%.17g", rate);
    snprintf(conc_text, sizeof(conc_text), "%ld", conc);
    const char *params[9] = {id,
                             o->tenant,
                             o->url,
                             o->description,
                             literal,
                             o->rate_limit ? rate_text : NULL,
                             o->concurrency ? conc_text : NULL,
                             (const char *)sealed,
                             key_id};
    int lengths[9] = {0, 0, 0, 0, 0, 0, 0, (int)sealed_len, 0};
    int formats[9] = {0, 0, 0, 0, 0, 0, 0, 1, 0};
    res = PQexecParams(pg,
                       "INSERT INTO nudgel.webhook_endpoints (endpoint_id, tenant_id, url, "
                       "description, event_types, rate_limit_per_second, max_concurrency, "
                       "secret_ciphertext, secret_key_id) "
                       "VALUES ($1::uuid, $2, $3, $4, $5::text[], $6::numeric, $7::integer, "
                       "$8::bytea, $9)",
                       9, NULL, params, lengths, formats, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = pg_failure(pg, "adding the endpoint", errstr, errstr_size);
        goto out;
    }
    if (o->json) {
        json_t *doc = json_pack("{s:s, s:s, s:s, s:O, s:s, s:s, s:b}", "endpoint_id", id,
                                "tenant_id", o->tenant, "url", o->url, "event_types", events,
                                "secret", secret, "secret_key_id", key_id, "enabled", 1);
        if (doc && o->description)
            json_object_set_new(doc, "description", json_string(o->description));
        if (doc && o->rate_limit)
            json_object_set_new(doc, "rate_limit_per_second", json_real(rate));
        if (doc && o->concurrency)
            json_object_set_new(doc, "max_concurrency", json_integer(conc));
        char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        if (text) {
            fprintf(out, "%s\n", text);
            OPENSSL_cleanse(text, strlen(text));
        }
        free(text);
        json_decref(doc); /* jansson's copy of the secret is freed here, not wiped */
    } else {
        fprintf(out, "endpoint %s added for tenant %s\n", id, o->tenant);
        fprintf(out, "  url:         %s\n", o->url);
        fprintf(out, "  events:      %s\n", json_array_size(events) ? literal : "(every event)");
        print_secret_notice(out, secret);
    }
    err = NUDGEL_OK;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    PQclear(res);
    if (pg)
        PQfinish(pg);
    free(sealed);
    nudgel_secretbox_destroy(box);
    json_decref(events);
    return err;
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
        err = pg_failure(pg, "listing endpoints", errstr, errstr_size);
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
            char evbuf[EVENTS_TEXT_MAX];
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
        return pg_failure(pg, "reading the endpoint", errstr, errstr_size);
    if (PQntuples(*res) != 1) {
        snprintf(errstr, errstr_size, "--endpoint: no endpoint %s", id);
        return NUDGEL_ERR_INVALID_FIELD;
    }
    return NUDGEL_OK;
}

static void print_endpoint(FILE *out, PGresult *res)
{
    char evbuf[EVENTS_TEXT_MAX];
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
        err = pg_failure(pg, enabled ? "enabling the endpoint" : "disabling the endpoint", errstr,
                         errstr_size);
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

nudgel_err_t nudgel_admin_endpoints_rotate_secret(const nudgel_conf_t *conf,
                                                  const nudgel_admin_endpoint_opts_t *o, FILE *out,
                                                  char *errstr, size_t errstr_size)
{
    char secret[NUDGEL_WH_SECRET_TEXT_MAX] = "", overlap[32];
    nudgel_secretbox_t *box = NULL;
    unsigned char *sealed = NULL;
    size_t sealed_len = 0;
    const char *key_id = NULL;
    PGconn *pg = NULL;
    PGresult *res = NULL;
    nudgel_err_t err;

    if ((err = nudgel_admin_check_endpoint_id(o->endpoint_id, "--endpoint", errstr, errstr_size)) ||
        (err = nudgel_secretbox_from_conf(conf, &box, errstr, errstr_size)))
        goto out;
    if (!(pg = nudgel_admin_pg_connect(conf, &err, errstr, errstr_size)))
        goto out;
    if ((err = new_sealed_secret(box, secret, &sealed, &sealed_len, &key_id, errstr, errstr_size)))
        goto out;
    snprintf(overlap, sizeof(overlap), "%lld",
             nudgel_conf_get_int(conf, "webhooks.rotation_overlap_s"));
    const char *params[4] = {o->endpoint_id, (const char *)sealed, key_id, overlap};
    int lengths[4] = {0, (int)sealed_len, 0, 0};
    int formats[4] = {0, 1, 0, 0};
    /* One statement: the right-hand sides see the old row, so the current
     * secret moves to previous_* and the new one takes its place atomically. */
    res = PQexecParams(pg,
                       "UPDATE nudgel.webhook_endpoints SET "
                       "previous_secret_ciphertext = secret_ciphertext, "
                       "previous_secret_key_id = secret_key_id, "
                       "previous_secret_expires_at = now() + make_interval(secs => $4::bigint), "
                       "secret_ciphertext = $2::bytea, secret_key_id = $3, updated_at = now() "
                       "WHERE endpoint_id = $1::uuid "
                       "RETURNING to_char(previous_secret_expires_at AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                       4, NULL, params, lengths, formats, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = pg_failure(pg, "rotating the secret", errstr, errstr_size);
        goto out;
    }
    if (PQntuples(res) != 1) {
        snprintf(errstr, errstr_size, "--endpoint: no endpoint %s", o->endpoint_id);
        err = NUDGEL_ERR_INVALID_FIELD;
        goto out;
    }
    if (o->json) {
        json_t *doc =
            json_pack("{s:s, s:s, s:s, s:s}", "endpoint_id", o->endpoint_id, "secret", secret,
                      "secret_key_id", key_id, "previous_secret_expires_at", PQgetvalue(res, 0, 0));
        char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        if (text) {
            fprintf(out, "%s\n", text);
            OPENSSL_cleanse(text, strlen(text));
        }
        free(text);
        json_decref(doc);
    } else {
        fprintf(out, "endpoint %s: secret rotated\n", o->endpoint_id);
        print_secret_notice(out, secret);
        fprintf(out, "  previous:    still signing until %s\n", PQgetvalue(res, 0, 0));
    }
    err = NUDGEL_OK;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    PQclear(res);
    if (pg)
        PQfinish(pg);
    free(sealed);
    nudgel_secretbox_destroy(box);
    return err;
}
