/*
 * parse.c — what the dialect parsers share (see parse.h): the contract's
 * status names, message-id normalisation, the small field readers
 * (recipient, network code, timestamps, cost) and the carrier DLR v1
 * record. The dialects' own knowledge lives in parse_<dialect>.c.
 */
#define _GNU_SOURCE
#include "parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *dlr_status_name(dlr_status_t s)
{
    switch (s) {
    case DLR_STATUS_SENT:
        return "sent";
    case DLR_STATUS_BUFFERED:
        return "buffered";
    case DLR_STATUS_DELIVERED:
        return "delivered";
    case DLR_STATUS_UNDELIVERED:
        return "undelivered";
    case DLR_STATUS_EXPIRED:
        return "expired";
    case DLR_STATUS_REJECTED:
        return "rejected";
    case DLR_STATUS_FAILED:
        return "failed";
    case DLR_STATUS_UNKNOWN:
        return "unknown";
    }
    return "unknown";
}

int dlr_fail(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errstr && errstr_size)
        vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
    return -1;
}

void dlr_report_init(dlr_report_t *r)
{
    memset(r, 0, sizeof(*r));
    r->status = DLR_STATUS_UNKNOWN;
    r->segments = -1;
}

void dlr_copy_text(char *dst, size_t size, const char *src, size_t n)
{
    size_t i = 0;
    if (!size)
        return;
    for (; src && i < n && i + 1 < size && src[i]; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = ch < 32 || ch == 127 ? '?' : (char)ch;
    }
    dst[i] = '\0';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool uuid_shaped(const char *s, size_t len)
{
    if (len != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return false;
    }
    return true;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static char ascii_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

int dlr_id_normalise(const char *in, size_t len, dlr_id_case_t id_case, char out[DLR_ID_MAX + 1],
                     char *errstr, size_t errstr_size)
{
    out[0] = '\0';
    if (!in)
        return dlr_fail(errstr, errstr_size, "missing");
    while (len > 0 && is_space(in[0])) {
        in++;
        len--;
    }
    while (len > 0 && is_space(in[len - 1]))
        len--;
    if (len == 0)
        return dlr_fail(errstr, errstr_size, "empty");
    if (len > DLR_ID_MAX)
        return dlr_fail(errstr, errstr_size, "longer than %d bytes", DLR_ID_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch < 32 || ch == 127)
            return dlr_fail(errstr, errstr_size, "holds a control character");
    }
    bool lower =
        id_case == DLR_ID_CASE_LOWER || (id_case == DLR_ID_CASE_UUID_LOWER && uuid_shaped(in, len));
    for (size_t i = 0; i < len; i++)
        out[i] = lower                          ? ascii_lower(in[i])
                 : id_case == DLR_ID_CASE_UPPER ? ascii_upper(in[i])
                                                : in[i];
    out[len] = '\0';
    return 0;
}

void dlr_take_uuid(dlr_report_t *r, const char *s)
{
    if (!s)
        return;
    size_t len = strlen(s);
    while (len > 0 && is_space(*s)) {
        s++;
        len--;
    }
    while (len > 0 && is_space(s[len - 1]))
        len--;
    if (!uuid_shaped(s, len))
        return;
    for (size_t i = 0; i < 36; i++)
        r->message_id[i] = ascii_lower(s[i]);
    r->message_id[36] = '\0';
}

bool dlr_take_network_code(dlr_report_t *r, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len < 5 || len > 6)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    memcpy(r->network_code, s, len + 1);
    return true;
}

bool dlr_take_time(dlr_report_t *r, const char *s)
{
    char buf[NUDGEL_RFC3339_MAX];
    int64_t ms;
    size_t len = s ? strlen(s) : 0;
    if (len < 20 || len + 2 > sizeof(buf))
        return false;
    memcpy(buf, s, len + 1);
    /* Infobip: "...+0000" → "...+00:00" */
    if ((buf[len - 5] == '+' || buf[len - 5] == '-') && buf[len - 3] != ':') {
        memmove(buf + len - 1, buf + len - 2, 3);
        buf[len - 2] = ':';
        len++;
    }
    if (nudgel_rfc3339_parse(buf, &ms) != 0)
        return false;
    /* Written again, in UTC: one form for every carrier. */
    nudgel_rfc3339_format(ms, r->done_at);
    return true;
}

static bool currency_valid(const char *c)
{
    if (!c || strlen(c) != 3)
        return false;
    for (int i = 0; i < 3; i++)
        if (c[i] < 'A' || c[i] > 'Z')
            return false;
    return true;
}

static bool decimal_valid(const char *s)
{
    size_t i = 0, digits = 0;
    if (s[i] == '-')
        i++;
    for (; s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (!digits)
        return false;
    if (s[i] == '.') {
        size_t frac = 0;
        for (i++; s[i] >= '0' && s[i] <= '9'; i++)
            frac++;
        if (!frac)
            return false;
    }
    return s[i] == '\0';
}

bool dlr_take_cost(dlr_report_t *r, const json_t *amount, const char *currency)
{
    char text[32];
    if (!currency_valid(currency))
        return false;
    if (json_is_string(amount)) {
        if (json_string_length(amount) >= sizeof(text) || !decimal_valid(json_string_value(amount)))
            return false;
        snprintf(text, sizeof(text), "%s", json_string_value(amount));
    } else if (json_is_integer(amount)) {
        snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(amount));
    } else if (json_is_real(amount)) {
        double v = json_real_value(amount);
        if (!(v > -1e12 && v < 1e12))
            return false;
        snprintf(text, sizeof(text), "%.6f", v);
        /* "0.800000" → "0.8"; "2.000000" → "2" */
        size_t n = strlen(text);
        while (n > 0 && text[n - 1] == '0')
            text[--n] = '\0';
        if (n > 0 && text[n - 1] == '.')
            text[--n] = '\0';
        if (strcmp(text, "-0") == 0)
            snprintf(text, sizeof(text), "0");
    } else {
        return false;
    }
    snprintf(r->cost_amount, sizeof(r->cost_amount), "%s", text);
    memcpy(r->cost_currency, currency, 4);
    r->has_cost = true;
    return true;
}

int dlr_parse(nudgel_gateway_dialect_t dialect, const dlr_generic_cfg_t *generic, const char *body,
              size_t len, dlr_report_t out[DLR_BATCH_MAX], size_t *n, char *errstr,
              size_t errstr_size)
{
    *n = 0;
    switch (dialect) {
    case NUDGEL_GATEWAY_AFRICASTALKING:
        return dlr_parse_africastalking(body, len, out, n, errstr, errstr_size);
    case NUDGEL_GATEWAY_INFOBIP:
        return dlr_parse_infobip(body, len, out, n, errstr, errstr_size);
    case NUDGEL_GATEWAY_GENERIC:
        if (!generic)
            return dlr_fail(errstr, errstr_size, "no generic settings");
        return dlr_parse_generic(generic, body, len, out, n, errstr, errstr_size);
    }
    return dlr_fail(errstr, errstr_size, "unknown dialect");
}

static int set_str(json_t *obj, const char *key, const char *value)
{
    return json_object_set_new(obj, key, json_string(value));
}

char *dlr_report_json(const dlr_report_t *r, const char *gateway, const char *dialect,
                      const char *received_at)
{
    json_t *o = json_object();
    char *text = NULL;
    int rc = 0;
    if (!o)
        return NULL;
    rc |= set_str(o, "gateway", gateway);
    rc |= set_str(o, "gateway_message_id", r->gateway_message_id);
    rc |= set_str(o, "status", dlr_status_name(r->status));
    rc |= set_str(o, "received_at", received_at);
    if (r->message_id[0])
        rc |= set_str(o, "message_id", r->message_id);
    if (r->raw_status[0])
        rc |= set_str(o, "raw_status", r->raw_status);
    if (r->has_error) {
        json_t *e = json_object();
        rc |= e ? 0 : -1;
        if (e) {
            rc |= set_str(e, "code", r->error_code);
            if (r->error_message[0])
                rc |= set_str(e, "message", r->error_message);
            if (r->has_permanent)
                rc |= json_object_set_new(e, "permanent", json_boolean(r->permanent));
            rc |= json_object_set_new(o, "error", e);
        }
    }
    if (r->to[0])
        rc |= set_str(o, "to", r->to);
    if (r->network_code[0])
        rc |= set_str(o, "network_code", r->network_code);
    if (r->done_at[0])
        rc |= set_str(o, "done_at", r->done_at);
    if (r->has_cost)
        rc |= json_object_set_new(
            o, "cost",
            json_pack("{s:s,s:s}", "amount", r->cost_amount, "currency", r->cost_currency));
    if (r->segments >= 0)
        rc |= json_object_set_new(o, "segments", json_integer(r->segments));
    rc |= set_str(o, "dialect", dialect);
    if (rc == 0)
        text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}
