/*
 * dialect_util.c — the helpers the gateway loader and the three dialects
 * share: typed reads of the gateways file, header lines and JSON members of
 * a request, and the pieces of answer classification (printable copies of
 * carrier text, JSON pointers, outcome setters). See dialect_util.h.
 */
#include "dialect_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- plain helpers ----------------------------------------------------- */

void dialect_seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || errstr_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

void dialect_wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

char *dialect_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *dialect_strdup(const char *s)
{
    return dialect_strndup(s, strlen(s));
}

int dialect_ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca >= 'A' && ca <= 'Z')
            ca += 'a' - 'A';
        if (cb >= 'A' && cb <= 'Z')
            cb += 'a' - 'A';
        if (ca != cb || ca == 0)
            return ca - cb;
    }
}

bool dialect_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 32 || (unsigned char)*s == 127)
            return false;
    return true;
}

bool dialect_token_valid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return false;
    }
    return true;
}

/* ---- reading the gateways file ----------------------------------------- */

void dialect_cerr(const dialect_ctx_t *c, const char *key, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (key && c->where[0])
        dialect_seterr(c->errstr, c->errstr_size, "%s.%s: %s", c->where, key, msg);
    else
        dialect_seterr(c->errstr, c->errstr_size, "%s: %s", key ? key : c->where, msg);
}

/* The member @p key of @p obj into @p *v (NULL when absent); -1 when absent but required. */
static int member(const dialect_ctx_t *c, const json_t *obj, const char *key, bool required,
                  const json_t **v)
{
    *v = json_object_get(obj, key);
    if (!*v && required) {
        dialect_cerr(c, key, "is required");
        return -1;
    }
    return 0;
}

int dialect_get_str(const dialect_ctx_t *c, const json_t *obj, const char *key, size_t max,
                    bool allow_empty, bool required, char **out)
{
    const json_t *v;
    *out = NULL;
    if (member(c, obj, key, required, &v) < 0)
        return -1;
    if (!v)
        return 0;
    if (!json_is_string(v)) {
        dialect_cerr(c, key, "must be a string");
        return -1;
    }
    size_t len = json_string_length(v);
    if (len == 0 && !allow_empty) {
        dialect_cerr(c, key, "must not be empty");
        return -1;
    }
    if (len > max) {
        dialect_cerr(c, key, "is %zu bytes, more than %zu", len, max);
        return -1;
    }
    if (memchr(json_string_value(v), '\0', len)) {
        dialect_cerr(c, key, "must not contain NUL");
        return -1;
    }
    *out = dialect_strndup(json_string_value(v), len);
    if (!*out) {
        dialect_cerr(c, key, "out of memory");
        return -1;
    }
    return 0;
}

int dialect_get_uint(const dialect_ctx_t *c, const json_t *obj, const char *key, uint32_t min,
                     uint32_t max, uint32_t dflt, bool required, uint32_t *out)
{
    const json_t *v;
    if (member(c, obj, key, required, &v) < 0)
        return -1;
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v)) {
        dialect_cerr(c, key, "must be an integer");
        return -1;
    }
    json_int_t i = json_integer_value(v);
    if (i < (json_int_t)min || i > (json_int_t)max) {
        dialect_cerr(c, key, "%" JSON_INTEGER_FORMAT " is outside %u to %u", i, min, max);
        return -1;
    }
    *out = (uint32_t)i;
    return 0;
}

/* An RFC 6901 pointer: "" or "/" tokens with "~" only as "~0" or "~1". */
static bool pointer_valid(const char *p)
{
    if (*p == '\0')
        return true;
    if (*p != '/')
        return false;
    for (; *p; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return false;
    return true;
}

int dialect_get_pointer(const dialect_ctx_t *c, const json_t *obj, const char *key,
                        const char *dflt, char **out)
{
    if (dialect_get_str(c, obj, key, DIALECT_POINTER_MAX, true, false, out) < 0)
        return -1;
    if (!*out) {
        *out = dialect_strdup(dflt);
        if (!*out) {
            dialect_cerr(c, key, "out of memory");
            return -1;
        }
        return 0;
    }
    if (!pointer_valid(*out)) {
        dialect_cerr(c, key, "\"%s\" is not a JSON pointer (RFC 6901: \"\" or \"/a/0/b\")", *out);
        return -1;
    }
    return 0;
}

int dialect_get_list(const dialect_ctx_t *c, const json_t *obj, const char *key,
                     const char *const *dflt, size_t ndflt, dialect_list_t *out)
{
    const json_t *v = json_object_get(obj, key);
    size_t n = v ? json_array_size(v) : ndflt;
    if (v && !json_is_array(v)) {
        dialect_cerr(c, key, "must be an array of strings");
        return -1;
    }
    if (n > DIALECT_LIST_MAX) {
        dialect_cerr(c, key, "has %zu values, more than %d", n, DIALECT_LIST_MAX);
        return -1;
    }
    out->v = calloc(n ? n : 1, sizeof(char *));
    if (!out->v) {
        dialect_cerr(c, key, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s;
        if (v) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_string(e) || json_string_length(e) == 0 ||
                json_string_length(e) > DIALECT_STATUS_MAX) {
                char k[96];
                snprintf(k, sizeof(k), "%s[%zu]", key, i);
                dialect_cerr(c, k, "must be a string of 1 to %d bytes", DIALECT_STATUS_MAX);
                return -1;
            }
            s = json_string_value(e);
        } else {
            s = dflt[i];
        }
        out->v[i] = dialect_strdup(s);
        if (!out->v[i]) {
            dialect_cerr(c, key, "out of memory");
            return -1;
        }
        out->n = i + 1;
    }
    return 0;
}

bool dialect_list_has(const dialect_list_t *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return true;
    return false;
}

void dialect_list_free(dialect_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* ---- building requests ------------------------------------------------- */

char *nudgel_gateway_form_encode(const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s)
        len = 0;
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '*' || ch == '-' || ch == '.' || ch == '_') {
            *o++ = (char)ch;
        } else if (ch == ' ') {
            *o++ = '+';
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = '\0';
    return out;
}

char *dialect_header_line(const char *name, const char *scheme, const char *value)
{
    size_t n = strlen(name) + strlen(value) + (scheme ? strlen(scheme) + 1 : 0) + 3;
    char *h = malloc(n);
    if (!h)
        return NULL;
    if (scheme)
        snprintf(h, n, "%s: %s %s", name, scheme, value);
    else
        snprintf(h, n, "%s: %s", name, value);
    return h;
}

int dialect_add_header(nudgel_gateway_request_t *req, char *line)
{
    if (!line || req->header_count >= NUDGEL_GATEWAY_HEADERS_MAX) {
        free(line);
        return -1;
    }
    req->headers[req->header_count++] = line;
    return 0;
}

int dialect_json_set_str(json_t *obj, const char *key, const char *val)
{
    json_t *s = json_string(val);
    if (!s)
        return -1;
    return json_object_set_new(obj, key, s);
}

/* ---- reading answers --------------------------------------------------- */

void dialect_copy_text(char *dst, size_t size, const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; src && i < n && o + 1 < size; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[o++] = ch >= 32 && ch < 127 ? (char)ch : (ch == '\n' || ch == '\t' ? ' ' : '?');
    }
    dst[o] = '\0';
}

static void copy_str(char *dst, size_t size, const char *src)
{
    dialect_copy_text(dst, size, src, src ? strlen(src) : 0);
}

bool dialect_scalar_text(const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v)) {
        dialect_copy_text(buf, size, json_string_value(v), json_string_length(v));
        return true;
    }
    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    }
    return false;
}

const json_t *dialect_pointer_get(const json_t *root, const char *ptr)
{
    const json_t *cur = root;
    char tok[DIALECT_POINTER_MAX + 1];
    if (*ptr == '\0')
        return root;
    if (*ptr != '/')
        return NULL;
    const char *p = ptr + 1;
    for (;;) {
        size_t n = 0;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~') {
                if (*p != '0' && *p != '1')
                    return NULL;
                ch = *p++ == '0' ? '~' : '/';
            }
            if (n >= DIALECT_POINTER_MAX)
                return NULL;
            tok[n++] = ch;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            if (n == 0 || (n > 1 && tok[0] == '0') || n > 9)
                return NULL;
            size_t idx = 0;
            for (size_t i = 0; i < n; i++) {
                if (tok[i] < '0' || tok[i] > '9')
                    return NULL;
                idx = idx * 10 + (size_t)(tok[i] - '0');
            }
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
        if (!cur)
            return NULL;
        if (*p == '\0')
            return cur;
        p++;
    }
}

void dialect_error(nudgel_gateway_outcome_t *o, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    copy_str(o->error_code, sizeof(o->error_code), code);
    copy_str(o->error_message, sizeof(o->error_message), msg);
}

void dialect_sent(nudgel_gateway_outcome_t *o, const char *message_id)
{
    o->kind = NUDGEL_GATEWAY_SENT;
    o->receipt = NUDGEL_GATEWAY_RECEIPT_SENT;
    copy_str(o->message_id, sizeof(o->message_id), message_id);
}

void dialect_permanent(nudgel_gateway_outcome_t *o, bool rejected)
{
    o->kind = NUDGEL_GATEWAY_PERMANENT;
    o->receipt = rejected ? NUDGEL_GATEWAY_RECEIPT_REJECTED : NUDGEL_GATEWAY_RECEIPT_FAILED;
}

void dialect_transient(nudgel_gateway_outcome_t *o)
{
    o->kind = NUDGEL_GATEWAY_TRANSIENT;
    o->receipt = NUDGEL_GATEWAY_RECEIPT_NONE;
}

void dialect_unreadable(nudgel_gateway_outcome_t *o, const char *what)
{
    dialect_transient(o);
    o->maybe_accepted = true;
    dialect_error(o, "unparseable_response", "HTTP %d with an unreadable body: %s", o->http_status,
                  what);
}

void dialect_refused_permanent(const void *cfg, nudgel_gateway_outcome_t *o)
{
    (void)cfg;
    dialect_permanent(o, false);
}
