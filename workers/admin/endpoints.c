/*
 * endpoints.c — `nudgel-admin endpoints add` and `rotate-secret`, the two
 * commands that make a signing secret: the checks of their flags (tenant,
 * URL, event patterns, limits), the secret generated, sealed with the
 * keyring and printed once; and the Postgres helpers the admin commands
 * share (nudgel_admin_pg_connect() and friends, endpoints.h). list, show,
 * enable and disable are endpoints_view.c.
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
#define RATE_LIMIT_MAX  100000.0
#define CONCURRENCY_MAX 10000

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
nudgel_err_t nudgel_admin_pg_failure(PGconn *pg, const char *what, char *errstr, size_t errstr_size)
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
    if (strlen(p) > NUDGEL_ADMIN_EVENT_NAME_MAX)
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
        char one[NUDGEL_ADMIN_EVENT_NAME_MAX + 2];
        if (tlen == 0 || tlen > NUDGEL_ADMIN_EVENT_NAME_MAX) {
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
            if (json_array_size(list) == NUDGEL_ADMIN_EVENTS_MAX) {
                snprintf(errstr, errstr_size, "--events: more than %d entries",
                         NUDGEL_ADMIN_EVENTS_MAX);
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
    char literal[NUDGEL_ADMIN_EVENTS_TEXT_MAX], secret[NUDGEL_WH_SECRET_TEXT_MAX] = "",
                                                id[NUDGEL_UUID_STR_LEN + 1], rate_text[32],
                                                conc_text[16];
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
        err = nudgel_admin_pg_failure(pg, "adding the endpoint", errstr, errstr_size);
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
        err = nudgel_admin_pg_failure(pg, "rotating the secret", errstr, errstr_size);
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
