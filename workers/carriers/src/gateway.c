/*
 * gateway.c — the entry points of a loaded gateway set: lookups and routes
 * (a short scan with no allocation: route names were resolved at load),
 * request building and answer classification.
 *
 * What every gateway shares lives here: the checks of a message before any
 * dialect sees it, the Content-Type and Accept headers, the rules for an
 * HTTP answer (transport error, 429 and 5xx transient, 3xx permanent, 4xx
 * as the dialect decides, Retry-After). What differs per carrier is asked
 * of the gateway's dialect (dialect.h) through its table of functions; no
 * entry point switches on the dialect. Loading is in gateway_load.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway_internal.h"

/* Indexed by nudgel_gateway_dialect_t. */
static const dialect_t *const dialects[GATEWAY_DIALECTS] = {
    [NUDGEL_GATEWAY_AFRICASTALKING] = &dialect_africastalking,
    [NUDGEL_GATEWAY_INFOBIP] = &dialect_infobip,
    [NUDGEL_GATEWAY_GENERIC] = &dialect_generic,
};

const dialect_t *gateway_dialect_ops(nudgel_gateway_dialect_t d)
{
    return (unsigned)d < GATEWAY_DIALECTS ? dialects[d] : NULL;
}

const char *nudgel_gateway_dialect_name(nudgel_gateway_dialect_t d)
{
    const dialect_t *ops = gateway_dialect_ops(d);
    return ops ? ops->name : "unknown";
}

const char *nudgel_gateway_receipt_name(nudgel_gateway_receipt_t r)
{
    switch (r) {
    case NUDGEL_GATEWAY_RECEIPT_NONE:
        return "none";
    case NUDGEL_GATEWAY_RECEIPT_SENT:
        return "sent";
    case NUDGEL_GATEWAY_RECEIPT_REJECTED:
        return "rejected";
    case NUDGEL_GATEWAY_RECEIPT_FAILED:
        return "failed";
    }
    return "unknown";
}

/* ---- the set ---------------------------------------------------------- */

static void gateway_clear(nudgel_gateway_t *g)
{
    if (g->key)
        dialect_wipe(g->key, g->key_len);
    free(g->key);
    if (g->dlr_token)
        dialect_wipe(g->dlr_token, g->dlr_token_len);
    free(g->dlr_token);
    free(g->url);
    free(g->base_url);
    free(g->sender_id);
    json_decref(g->dlr);
    if (g->ops)
        g->ops->free_cfg(g->cfg);
    memset(g, 0, sizeof(*g));
}

void nudgel_gateway_set_free(nudgel_gateway_set_t *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++)
        gateway_clear(&set->gw[i]);
    free(set->gw);
    free(set->routes);
    free(set);
}

size_t nudgel_gateway_set_count(const nudgel_gateway_set_t *set)
{
    return set ? set->n : 0;
}

const nudgel_gateway_t *nudgel_gateway_set_at(const nudgel_gateway_set_t *set, size_t i)
{
    return set && i < set->n ? &set->gw[i] : NULL;
}

int nudgel_gateway_callback_url(const nudgel_gateway_t *gw, const char *base, char *out,
                                size_t out_size)
{
    if (out_size)
        out[0] = '\0';
    if (!gw || !gw->dlr_token || !base || !*base)
        return -1;
    size_t blen = strlen(base);
    while (blen && base[blen - 1] == '/')
        blen--;
    int n = snprintf(out, out_size, "%.*s/v1/dlr/%s/%s", (int)blen, base, gw->name, gw->dlr_token);
    if (n < 0 || (size_t)n >= out_size || (size_t)n > NUDGEL_GATEWAY_URL_MAX) {
        if (out_size)
            dialect_wipe(out, out_size);
        return -1;
    }
    return 0;
}

const nudgel_gateway_t *nudgel_gateway_find(const nudgel_gateway_set_t *set, const char *name)
{
    if (!set || !name)
        return NULL;
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->gw[i].name, name) == 0)
            return &set->gw[i];
    return NULL;
}

const struct json_t *nudgel_gateway_dlr(const nudgel_gateway_t *gw)
{
    return gw ? gw->dlr : NULL;
}

const struct json_t *nudgel_gateway_json_pointer(const struct json_t *root, const char *ptr)
{
    return root && ptr ? dialect_pointer_get(root, ptr) : NULL;
}

const char *nudgel_gateway_name(const nudgel_gateway_t *gw)
{
    return gw->name;
}

nudgel_gateway_dialect_t nudgel_gateway_dialect(const nudgel_gateway_t *gw)
{
    return gw->dialect;
}

const char *nudgel_gateway_url(const nudgel_gateway_t *gw)
{
    return gw->url;
}

uint32_t nudgel_gateway_tps(const nudgel_gateway_t *gw)
{
    return gw->tps;
}

uint32_t nudgel_gateway_connect_timeout_ms(const nudgel_gateway_t *gw)
{
    return gw->connect_timeout_ms;
}

uint32_t nudgel_gateway_timeout_ms(const nudgel_gateway_t *gw)
{
    return gw->timeout_ms;
}

const char *nudgel_gateway_sender_id(const nudgel_gateway_t *gw)
{
    return gw->sender_id;
}

bool nudgel_gateway_dedupes(const nudgel_gateway_t *gw)
{
    return gw->ops->dedupes;
}

nudgel_gateway_unknown_policy_t nudgel_gateway_unknown_outcome(const nudgel_gateway_t *gw)
{
    return gw->unknown_outcome;
}

const char *nudgel_gateway_unknown_policy_name(nudgel_gateway_unknown_policy_t p)
{
    switch (p) {
    case NUDGEL_GATEWAY_UNKNOWN_RESUBMIT:
        return "resubmit";
    case NUDGEL_GATEWAY_UNKNOWN_HOLD:
        return "hold";
    }
    return "unknown";
}

uint32_t nudgel_gateway_validity_minutes(int64_t expires_at_unix_ms, int64_t now_unix_ms)
{
    int64_t left_min = (expires_at_unix_ms - now_unix_ms) / 60000;
    if (left_min < 1)
        return 1;
    if (left_min > NUDGEL_GATEWAY_VALIDITY_MINUTES_MAX)
        return NUDGEL_GATEWAY_VALIDITY_MINUTES_MAX;
    return (uint32_t)left_min;
}

nudgel_err_t nudgel_gateway_route(const nudgel_gateway_set_t *set, const char *country,
                                  const char *operator_name, nudgel_gateway_route_t *out,
                                  char *errstr, size_t errstr_size)
{
    const gateway_route_t *wild = NULL;
    if (!set || !out) {
        dialect_seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (country && *country) {
        for (size_t i = 0; i < set->nroutes; i++) {
            const gateway_route_t *r = &set->routes[i];
            if (strcmp(r->country, country) != 0)
                continue;
            if (strcmp(r->operator_name, "*") == 0)
                wild = r;
            else if (operator_name && dialect_ascii_casecmp(r->operator_name, operator_name) == 0) {
                *out = r->list;
                return NUDGEL_OK;
            }
        }
    }
    if (wild) {
        *out = wild->list;
        return NUDGEL_OK;
    }
    if (set->has_default) {
        *out = set->default_route;
        return NUDGEL_OK;
    }
    if (!country || !*country)
        dialect_seterr(errstr, errstr_size,
                       "no route: the number is outside KE, NG and UG and there is no default "
                       "route");
    else
        dialect_seterr(errstr, errstr_size,
                       "no route for country \"%s\" operator \"%s\" and no default "
                       "route",
                       country, operator_name ? operator_name : "(unknown)");
    return NUDGEL_ERR_INVALID_FIELD;
}

/* ---- requests --------------------------------------------------------- */

static bool e164_valid(const char *to)
{
    size_t n = 0;
    if (!to || to[0] != '+')
        return false;
    for (const char *p = to + 1; *p; p++, n++)
        if (*p < '0' || *p > '9')
            return false;
    return n >= 7 && n <= 15 && to[1] != '0';
}

static bool utf8_valid(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

void nudgel_gateway_request_clear(nudgel_gateway_request_t *req)
{
    if (!req)
        return;
    for (size_t i = 0; i < req->header_count && i < NUDGEL_GATEWAY_HEADERS_MAX; i++) {
        if (req->headers[i]) {
            dialect_wipe(req->headers[i], strlen(req->headers[i]));
            free(req->headers[i]);
        }
    }
    free(req->url);
    free(req->body);
    memset(req, 0, sizeof(*req));
}

/* The checks every dialect relies on; the sender to use into @p from. */
static bool message_valid(const nudgel_gateway_t *gw, const nudgel_gateway_message_t *msg,
                          const char **from, char *errstr, size_t errstr_size)
{
    if (!e164_valid(msg->to)) {
        dialect_seterr(errstr, errstr_size, "to: not an E.164 number (\"+\" and 7 to 15 digits)");
        return false;
    }
    size_t rlen = strlen(msg->client_ref);
    if (rlen == 0 || rlen >= NUDGEL_GATEWAY_CLIENT_REF_MAX || !dialect_printable(msg->client_ref)) {
        dialect_seterr(errstr, errstr_size, "client_ref: must be 1 to %d printable bytes",
                       NUDGEL_GATEWAY_CLIENT_REF_MAX - 1);
        return false;
    }
    size_t tlen = strlen(msg->text);
    if (tlen == 0 || tlen > NUDGEL_GATEWAY_TEXT_MAX) {
        dialect_seterr(errstr, errstr_size, "text: %zu bytes, must be 1 to %d", tlen,
                       NUDGEL_GATEWAY_TEXT_MAX);
        return false;
    }
    if (!utf8_valid(msg->text, tlen)) {
        dialect_seterr(errstr, errstr_size, "text: not valid UTF-8");
        return false;
    }
    *from = msg->from && *msg->from ? msg->from : gw->sender_id;
    if (*from && (strlen(*from) > NUDGEL_GATEWAY_SENDER_MAX || !utf8_valid(*from, strlen(*from)))) {
        dialect_seterr(errstr, errstr_size, "from: must be valid UTF-8 of at most %d bytes",
                       NUDGEL_GATEWAY_SENDER_MAX);
        return false;
    }
    if (msg->callback_url && (strlen(msg->callback_url) > NUDGEL_GATEWAY_URL_MAX ||
                              !dialect_printable(msg->callback_url))) {
        dialect_seterr(errstr, errstr_size, "callback_url: must be printable, at most %d bytes",
                       NUDGEL_GATEWAY_URL_MAX);
        return false;
    }
    return true;
}

nudgel_err_t nudgel_gateway_build_request(const nudgel_gateway_t *gw,
                                          const nudgel_gateway_message_t *msg,
                                          nudgel_gateway_request_t *out, char *errstr,
                                          size_t errstr_size)
{
    const char *from = NULL;

    if (!out) {
        dialect_seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (!gw || !gw->key || !msg || !msg->text || !msg->client_ref) {
        /* no key: a set loaded with NUDGEL_GATEWAY_LOAD_NO_KEYS */
        dialect_seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (!message_valid(gw, msg, &from, errstr, errstr_size))
        return NUDGEL_ERR_INVALID_FIELD;

    out->method = "POST";
    out->url = dialect_strdup(gw->url);
    if (!out->url || gw->ops->build(gw->cfg, gw->key, msg, from, out) < 0 ||
        dialect_add_header(out, dialect_header_line("Content-Type", NULL, out->content_type)) < 0 ||
        dialect_add_header(out, dialect_header_line("Accept", NULL, "application/json")) < 0) {
        dialect_seterr(errstr, errstr_size, "out of memory");
        nudgel_gateway_request_clear(out);
        return NUDGEL_ERR_NO_MEMORY;
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_gateway_build_probe(const nudgel_gateway_t *gw, nudgel_gateway_request_t *out,
                                        char *errstr, size_t errstr_size)
{
    if (!out || !gw || !gw->key) {
        dialect_seterr(errstr, errstr_size, "invalid argument");
        if (out)
            memset(out, 0, sizeof(*out));
        return NUDGEL_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (!gw->ops->probe) {
        dialect_seterr(errstr, errstr_size, "the %s dialect has no probe request", gw->ops->name);
        return NUDGEL_ERR_INVALID_ARG;
    }
    out->method = "GET";
    if (gw->ops->probe(gw->cfg, gw->base_url, gw->key, out) < 0 ||
        dialect_add_header(out, dialect_header_line("Accept", NULL, "application/json")) < 0) {
        dialect_seterr(errstr, errstr_size, "out of memory");
        nudgel_gateway_request_clear(out);
        return NUDGEL_ERR_NO_MEMORY;
    }
    return NUDGEL_OK;
}

const char *nudgel_gateway_key_source(const nudgel_gateway_t *gw)
{
    return gw->key_source;
}

bool nudgel_gateway_credentials_refused(const nudgel_gateway_t *gw, int status)
{
    return gw->ops->credentials_refused ? gw->ops->credentials_refused(gw->cfg, status)
                                        : status == 401 || status == 403;
}

/* ---- responses -------------------------------------------------------- */

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int64_t nudgel_gateway_retry_after_ms(const char *value, int64_t now_unix_ms)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const int64_t max_ms = (int64_t)NUDGEL_GATEWAY_RETRY_AFTER_MAX_S * 1000;
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        int64_t s = 0;
        const char *p = value;
        for (; *p >= '0' && *p <= '9'; p++)
            if (s <= NUDGEL_GATEWAY_RETRY_AFTER_MAX_S)
                s = s * 10 + (*p - '0');
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p)
            return -1;
        return s * 1000 > max_ms ? max_ms : s * 1000;
    }
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    char wday[4], mon[4];
    int day, year, hh, mm, ss, n = 0;
    if (sscanf(value, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &day, mon, &year,
               &hh, &mm, &ss, &n) != 7 ||
        n == 0)
        return -1;
    const char *mp = strstr(months, mon);
    if (strlen(mon) != 3 || !mp || (mp - months) % 3 != 0)
        return -1;
    if (day < 1 || day > 31 || year < 1970 || hh > 23 || mm > 59 || ss > 60 || hh < 0 || mm < 0 ||
        ss < 0)
        return -1;
    for (const char *p = value + n; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return -1;
    int64_t t = days_from_civil(year, (unsigned)((mp - months) / 3 + 1), (unsigned)day) * 86400 +
                hh * 3600 + mm * 60 + ss;
    int64_t delta = t * 1000 - now_unix_ms;
    if (delta < 0)
        return 0;
    return delta > max_ms ? max_ms : delta;
}

/* An account-level refusal of our key: the dialect's say, else 401 and 403. */
static bool credentials_refused(const nudgel_gateway_t *gw, int status)
{
    if (gw->ops->credentials_refused)
        return gw->ops->credentials_refused(gw->cfg, status);
    return status == 401 || status == 403;
}

static json_t *parse_body(const nudgel_gateway_response_t *r)
{
    if (!r->body || r->body_len == 0 || r->body_len > NUDGEL_GATEWAY_RESPONSE_MAX)
        return NULL;
    return json_loadb(r->body, r->body_len, 0, NULL);
}

/* The code and text of an error answer (non-2xx): the dialect's, else the status and body. */
static void error_detail(const nudgel_gateway_t *gw, const nudgel_gateway_response_t *r,
                         const json_t *root, nudgel_gateway_outcome_t *o)
{
    char code[64] = "", msg[256] = "";
    gw->ops->error_detail(gw->cfg, root, code, sizeof(code), msg, sizeof(msg));
    if (!msg[0] && !root && r->body)
        dialect_copy_text(msg, sizeof(msg), r->body, r->body_len < 200 ? r->body_len : 200);
    if (!code[0])
        snprintf(code, sizeof(code), "http_%d", r->http_status);
    dialect_error(o, code, "HTTP %d%s%s", r->http_status, msg[0] ? ": " : "", msg);
}

nudgel_err_t nudgel_gateway_classify(const nudgel_gateway_t *gw,
                                     const nudgel_gateway_response_t *resp,
                                     nudgel_gateway_outcome_t *out)
{
    json_t *root = NULL;
    if (!out)
        return NUDGEL_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    out->retry_after_ms = -1;
    if (!gw || !resp || (!resp->body && resp->body_len)) {
        dialect_transient(out);
        dialect_error(out, "invalid_argument", "classify called without a gateway or answer");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (resp->transport_error) {
        dialect_transient(out);
        /* Lost after the request went out: the carrier may have taken it. */
        out->maybe_accepted = resp->request_sent;
        dialect_error(out, "transport", "no answer from %s: %s", gw->name,
                      resp->transport_detail ? resp->transport_detail
                                             : "timeout or connection error");
        goto out;
    }
    int st = resp->http_status;
    out->http_status = st;
    if (st >= 200 && st <= 299) {
        root = parse_body(resp);
        if (!json_is_object(root)) {
            dialect_unreadable(out, resp->body_len > NUDGEL_GATEWAY_RESPONSE_MAX
                                        ? "body too large"
                                        : "not a JSON object");
            goto out;
        }
        gw->ops->classify(gw->cfg, root, out);
        goto out;
    }
    root = parse_body(resp);
    error_detail(gw, resp, root, out);
    if (st == 429 || (st >= 500 && st <= 599)) {
        dialect_transient(out);
    } else if (st >= 300 && st <= 399) {
        dialect_permanent(out, false);
        dialect_error(out, "http_redirect", "HTTP %d: redirects are never followed", st);
    } else if (st >= 400 && st <= 499 && credentials_refused(gw, st)) {
        dialect_transient(out);
        out->credentials_refused = true;
    } else if (st >= 400 && st <= 499) {
        gw->ops->refused(gw->cfg, out);
    } else {
        dialect_transient(out);
        dialect_error(out, "http_unexpected", "HTTP status %d is not a final answer", st);
    }
out:
    if (out->kind == NUDGEL_GATEWAY_TRANSIENT && resp->retry_after)
        out->retry_after_ms = nudgel_gateway_retry_after_ms(resp->retry_after, resp->now_unix_ms);
    json_decref(root);
    return NUDGEL_OK;
}
