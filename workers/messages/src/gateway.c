/*
 * gateway.c — gateway definitions and routes (the JSON file read with
 * jansson, every key checked against its dialect, API keys read once from
 * the environment or a key file, route names resolved to gateways at load
 * so a lookup is a short scan with no allocation), request building and
 * answer classification per dialect.
 */
#include "nudgel/gateway.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nudgel/phone.h"

/* ---- private layout --------------------------------------------------- */

typedef struct strlist {
    char **v;
    size_t n;
} strlist_t;

struct nudgel_gateway {
    char name[NUDGEL_GATEWAY_NAME_MAX + 1];
    nudgel_gateway_dialect_t dialect;
    char *url;      /* base_url + path */
    char *key;      /* the secret: wiped on free, never in an error */
    size_t key_len; /* bytes allocated for key, all wiped on free */
    char *username; /* AT */
    uint32_t tps, connect_timeout_ms, timeout_ms;
    char *sender_id; /* NULL when none */
    /* generic */
    char *auth_header, *auth_scheme;
    char *message_id_pointer, *status_pointer, *segments_pointer;
    char *error_code_pointer, *error_message_pointer;
    strlist_t success, permanent, transient, rejected_codes;
};

typedef struct route {
    char country[3];
    char operator_name[NUDGEL_GATEWAY_NAME_MAX + 1]; /* "*" for any */
    nudgel_gateway_route_t list;
} route_t;

struct nudgel_gateway_set {
    nudgel_gateway_t *gw;
    size_t n;
    route_t *routes;
    size_t nroutes;
    bool has_default;
    nudgel_gateway_route_t default_route;
};

#define POINTER_MAX     256
#define STATUS_LIST_MAX 32
#define STATUS_MAX      64

static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || errstr_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* memset that the compiler may not drop: for keys. */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *xstrdup(const char *s)
{
    return dupn(s, strlen(s));
}

static int ascii_casecmp(const char *a, const char *b)
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

static void strlist_free(strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static bool strlist_has(const strlist_t *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return true;
    return false;
}

static void gateway_clear(nudgel_gateway_t *g)
{
    if (g->key)
        wipe(g->key, g->key_len);
    free(g->key);
    free(g->url);
    free(g->username);
    free(g->sender_id);
    free(g->auth_header);
    free(g->auth_scheme);
    free(g->message_id_pointer);
    free(g->status_pointer);
    free(g->segments_pointer);
    free(g->error_code_pointer);
    free(g->error_message_pointer);
    strlist_free(&g->success);
    strlist_free(&g->permanent);
    strlist_free(&g->transient);
    strlist_free(&g->rejected_codes);
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

/* ---- loading ---------------------------------------------------------- */

static const char *const dialect_names[] = {"africastalking", "infobip", "generic"};

const char *nudgel_gateway_dialect_name(nudgel_gateway_dialect_t d)
{
    switch (d) {
    case NUDGEL_GATEWAY_AFRICASTALKING:
    case NUDGEL_GATEWAY_INFOBIP:
    case NUDGEL_GATEWAY_GENERIC:
        return dialect_names[d];
    }
    return "unknown";
}

static const char *default_path(nudgel_gateway_dialect_t d)
{
    switch (d) {
    case NUDGEL_GATEWAY_AFRICASTALKING:
        return "/version1/messaging";
    case NUDGEL_GATEWAY_INFOBIP:
        return "/sms/2/text/advanced";
    case NUDGEL_GATEWAY_GENERIC:
        return "/messages";
    }
    return "";
}

/* Keys a gateway object may hold; 'G' marks generic-only, 'A' AT-only. */
static const struct {
    const char *key;
    char only;
} gateway_keys[] = {
    {"name", 0},
    {"dialect", 0},
    {"base_url", 0},
    {"path", 0},
    {"api_key_env", 0},
    {"api_key_file", 0},
    {"username", 'A'},
    {"tps", 0},
    {"connect_timeout_ms", 0},
    {"timeout_ms", 0},
    {"sender_id", 0},
    {"auth_header", 'G'},
    {"auth_scheme", 'G'},
    {"message_id_pointer", 'G'},
    {"status_pointer", 'G'},
    {"segments_pointer", 'G'},
    {"error_code_pointer", 'G'},
    {"error_message_pointer", 'G'},
    {"success_statuses", 'G'},
    {"permanent_statuses", 'G'},
    {"transient_statuses", 'G'},
    {"rejected_codes", 'G'},
};

/* A loader's context: the key path of the object being read ("gateways[1]"). */
typedef struct ctx {
    char where[64];
    char *errstr;
    size_t errstr_size;
} ctx_t;

static void cerr(const ctx_t *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "where.key: problem" into the caller's errstr. */
static void cerr(const ctx_t *c, const char *key, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (key && c->where[0])
        seterr(c->errstr, c->errstr_size, "%s.%s: %s", c->where, key, msg);
    else
        seterr(c->errstr, c->errstr_size, "%s: %s", key ? key : c->where, msg);
}

/*
 * Reads the optional string member @p key of @p obj into a malloc'd copy
 * (@p *out stays NULL when absent). @p max caps its length; @p allow_empty
 * says whether "" is a value. Returns 0 or -1 with the error set.
 */
static int get_str(const ctx_t *c, const json_t *obj, const char *key, size_t max, bool allow_empty,
                   bool required, char **out)
{
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v) {
        if (required) {
            cerr(c, key, "is required");
            return -1;
        }
        return 0;
    }
    if (!json_is_string(v)) {
        cerr(c, key, "must be a string");
        return -1;
    }
    size_t len = json_string_length(v);
    if (len == 0 && !allow_empty) {
        cerr(c, key, "must not be empty");
        return -1;
    }
    if (len > max) {
        cerr(c, key, "is %zu bytes, more than %zu", len, max);
        return -1;
    }
    if (memchr(json_string_value(v), '\0', len)) {
        cerr(c, key, "must not contain NUL");
        return -1;
    }
    *out = dupn(json_string_value(v), len);
    if (!*out) {
        cerr(c, key, "out of memory");
        return -1;
    }
    return 0;
}

static int get_uint(const ctx_t *c, const json_t *obj, const char *key, uint32_t min, uint32_t max,
                    uint32_t dflt, bool required, uint32_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required) {
            cerr(c, key, "is required");
            return -1;
        }
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v)) {
        cerr(c, key, "must be an integer");
        return -1;
    }
    json_int_t i = json_integer_value(v);
    if (i < (json_int_t)min || i > (json_int_t)max) {
        cerr(c, key, "%" JSON_INTEGER_FORMAT " is outside %u to %u", i, min, max);
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

static int get_pointer(const ctx_t *c, const json_t *obj, const char *key, const char *dflt,
                       char **out)
{
    if (get_str(c, obj, key, POINTER_MAX, true, false, out) < 0)
        return -1;
    if (!*out) {
        *out = xstrdup(dflt);
        if (!*out) {
            cerr(c, key, "out of memory");
            return -1;
        }
        return 0;
    }
    if (!pointer_valid(*out)) {
        cerr(c, key, "\"%s\" is not a JSON pointer (RFC 6901: \"\" or \"/a/0/b\")", *out);
        return -1;
    }
    return 0;
}

static int get_list(const ctx_t *c, const json_t *obj, const char *key, const char *const *dflt,
                    size_t ndflt, strlist_t *out)
{
    const json_t *v = json_object_get(obj, key);
    size_t n = v ? json_array_size(v) : ndflt;
    if (v && !json_is_array(v)) {
        cerr(c, key, "must be an array of strings");
        return -1;
    }
    if (n > STATUS_LIST_MAX) {
        cerr(c, key, "has %zu values, more than %d", n, STATUS_LIST_MAX);
        return -1;
    }
    out->v = calloc(n ? n : 1, sizeof(char *));
    if (!out->v) {
        cerr(c, key, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s;
        if (v) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_string(e) || json_string_length(e) == 0 ||
                json_string_length(e) > STATUS_MAX) {
                char k[96];
                snprintf(k, sizeof(k), "%s[%zu]", key, i);
                cerr(c, k, "must be a string of 1 to %d bytes", STATUS_MAX);
                return -1;
            }
            s = json_string_value(e);
        } else {
            s = dflt[i];
        }
        out->v[i] = xstrdup(s);
        if (!out->v[i]) {
            cerr(c, key, "out of memory");
            return -1;
        }
        out->n = i + 1;
    }
    return 0;
}

static bool name_valid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

/* Header names are RFC 9110 tokens; no CR/LF can reach a header line. */
static bool token_valid(const char *s)
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

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 32 || (unsigned char)*s == 127)
            return false;
    return true;
}

/*
 * Reads the key of @p g from the environment variable or key file the
 * gateway object names. Trailing white space (the newline of a secret file)
 * is dropped. Errors name the variable or file, never the value.
 */
static int read_key(const ctx_t *c, const json_t *obj, nudgel_gateway_t *g)
{
    char *env = NULL, *file = NULL;
    char *buf = NULL;
    size_t bufsize = 0;
    FILE *f = NULL;
    int rc = -1;

    if (json_object_get(obj, "api_key")) {
        cerr(c, "api_key",
             "keys are never written in this file: name them with api_key_env or "
             "api_key_file");
        goto out;
    }
    if (get_str(c, obj, "api_key_env", 256, false, false, &env) < 0 ||
        get_str(c, obj, "api_key_file", 4096, false, false, &file) < 0)
        goto out;
    if ((env != NULL) == (file != NULL)) {
        cerr(c, "api_key_env", "exactly one of api_key_env and api_key_file is required");
        goto out;
    }
    size_t len = 0;
    if (env) {
        const char *val = getenv(env);
        if (!val || !*val) {
            cerr(c, "api_key_env", "environment variable %s is not set or empty", env);
            goto out;
        }
        len = strlen(val);
        if (len > NUDGEL_GATEWAY_KEY_MAX) {
            cerr(c, "api_key_env", "the value of %s is longer than %d bytes", env,
                 NUDGEL_GATEWAY_KEY_MAX);
            goto out;
        }
        buf = dupn(val, len);
        bufsize = len + 1;
    } else {
        f = fopen(file, "rb");
        if (!f) {
            cerr(c, "api_key_file", "cannot open %s: %s", file, strerror(errno));
            goto out;
        }
        buf = malloc(NUDGEL_GATEWAY_KEY_MAX + 2);
        bufsize = NUDGEL_GATEWAY_KEY_MAX + 2;
        if (buf) {
            len = fread(buf, 1, NUDGEL_GATEWAY_KEY_MAX + 1, f);
            if (ferror(f)) {
                cerr(c, "api_key_file", "cannot read %s", file);
                goto out;
            }
            if (len > NUDGEL_GATEWAY_KEY_MAX) {
                cerr(c, "api_key_file", "%s is longer than %d bytes", file, NUDGEL_GATEWAY_KEY_MAX);
                goto out;
            }
            buf[len] = '\0';
        }
    }
    if (!buf) {
        cerr(c, "api_key_env", "out of memory");
        goto out;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        buf[--len] = '\0';
    if (len == 0 || strlen(buf) != len || !printable(buf)) {
        cerr(c, env ? "api_key_env" : "api_key_file",
             "the key in %s is empty or holds control characters", env ? env : file);
        goto out;
    }
    g->key = buf;
    g->key_len = bufsize;
    buf = NULL;
    rc = 0;
out:
    if (buf) {
        wipe(buf, bufsize);
        free(buf);
    }
    if (f)
        fclose(f);
    free(env);
    free(file);
    return rc;
}

static int load_gateway(const ctx_t *c, const json_t *obj, nudgel_gateway_set_t *set,
                        nudgel_gateway_t *g)
{
    char *s = NULL, *base = NULL, *path = NULL;
    int rc = -1;
    const char *key;
    json_t *v;

    if (!json_is_object(obj)) {
        cerr(c, NULL, "must be an object");
        goto out;
    }
    /* name and dialect first: later messages depend on them */
    if (get_str(c, obj, "name", NUDGEL_GATEWAY_NAME_MAX, false, true, &s) < 0)
        goto out;
    if (!name_valid(s)) {
        cerr(c, "name", "\"%s\" may only hold letters, digits, '-', '_' and '.'", s);
        goto out;
    }
    if (nudgel_gateway_find(set, s)) {
        cerr(c, "name", "\"%s\" is defined twice", s);
        goto out;
    }
    memcpy(g->name, s, strlen(s) + 1);
    free(s);
    s = NULL;

    if (get_str(c, obj, "dialect", 64, false, true, &s) < 0)
        goto out;
    size_t d;
    for (d = 0; d < sizeof(dialect_names) / sizeof(dialect_names[0]); d++)
        if (strcmp(s, dialect_names[d]) == 0)
            break;
    if (d == sizeof(dialect_names) / sizeof(dialect_names[0])) {
        cerr(c, "dialect", "\"%s\" is not one of africastalking, infobip, generic", s);
        goto out;
    }
    g->dialect = (nudgel_gateway_dialect_t)d;
    free(s);
    s = NULL;

    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i, nk = sizeof(gateway_keys) / sizeof(gateway_keys[0]);
        if (key[0] == '_' || strcmp(key, "api_key") == 0)
            continue;
        for (i = 0; i < nk; i++)
            if (strcmp(key, gateway_keys[i].key) == 0)
                break;
        if (i == nk) {
            cerr(c, key, "unknown key");
            goto out;
        }
        if ((gateway_keys[i].only == 'G' && g->dialect != NUDGEL_GATEWAY_GENERIC) ||
            (gateway_keys[i].only == 'A' && g->dialect != NUDGEL_GATEWAY_AFRICASTALKING)) {
            cerr(c, key, "only applies to dialect %s",
                 gateway_keys[i].only == 'G' ? "generic" : "africastalking");
            goto out;
        }
    }

    if (get_str(c, obj, "base_url", NUDGEL_GATEWAY_URL_MAX, false, true, &base) < 0)
        goto out;
    if ((strncmp(base, "https://", 8) != 0 && strncmp(base, "http://", 7) != 0) ||
        !printable(base) || strchr(base, ' ') || strchr(base, '?') || strchr(base, '#')) {
        cerr(c, "base_url", "\"%s\" is not an http:// or https:// URL without query", base);
        goto out;
    }
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        base[--blen] = '\0';
    if (get_str(c, obj, "path", NUDGEL_GATEWAY_URL_MAX, true, false, &path) < 0)
        goto out;
    if (path && ((path[0] != '\0' && path[0] != '/') || !printable(path) || strchr(path, ' '))) {
        cerr(c, "path", "\"%s\" must be empty or start with '/'", path);
        goto out;
    }
    const char *p = path ? path : default_path(g->dialect);
    g->url = malloc(blen + strlen(p) + 1);
    if (!g->url) {
        cerr(c, "base_url", "out of memory");
        goto out;
    }
    memcpy(g->url, base, blen);
    memcpy(g->url + blen, p, strlen(p) + 1);

    if (read_key(c, obj, g) < 0)
        goto out;
    if (get_str(c, obj, "username", 128, false, g->dialect == NUDGEL_GATEWAY_AFRICASTALKING,
                &g->username) < 0)
        goto out;
    if (get_uint(c, obj, "tps", 1, 1000000, 0, true, &g->tps) < 0 ||
        get_uint(c, obj, "connect_timeout_ms", 100, 60000, 3000, false, &g->connect_timeout_ms) <
            0 ||
        get_uint(c, obj, "timeout_ms", 100, 300000, 10000, false, &g->timeout_ms) < 0)
        goto out;
    if (g->connect_timeout_ms > g->timeout_ms) {
        cerr(c, "connect_timeout_ms", "%u is more than timeout_ms (%u)", g->connect_timeout_ms,
             g->timeout_ms);
        goto out;
    }
    if (get_str(c, obj, "sender_id", NUDGEL_GATEWAY_SENDER_MAX, false, false, &g->sender_id) < 0)
        goto out;
    if (g->sender_id && !printable(g->sender_id)) {
        cerr(c, "sender_id", "must be printable");
        goto out;
    }

    if (g->dialect == NUDGEL_GATEWAY_GENERIC) {
        static const char *const ok[] = {"accepted", "queued", "sent"};
        static const char *const rej[] = {"invalid_number", "blacklisted", "invalid_sender", "dnd"};
        if (get_str(c, obj, "auth_header", 64, false, false, &g->auth_header) < 0 ||
            get_str(c, obj, "auth_scheme", 32, true, false, &g->auth_scheme) < 0)
            goto out;
        if (!g->auth_header && !(g->auth_header = xstrdup("Authorization")))
            goto oom;
        if (!g->auth_scheme && !(g->auth_scheme = xstrdup("Bearer")))
            goto oom;
        if (!token_valid(g->auth_header)) {
            cerr(c, "auth_header", "\"%s\" is not an HTTP header name", g->auth_header);
            goto out;
        }
        if (g->auth_scheme[0] && !token_valid(g->auth_scheme)) {
            cerr(c, "auth_scheme", "\"%s\" is not an HTTP auth scheme", g->auth_scheme);
            goto out;
        }
        if (get_pointer(c, obj, "message_id_pointer", "/id", &g->message_id_pointer) < 0 ||
            get_pointer(c, obj, "status_pointer", "/status", &g->status_pointer) < 0 ||
            get_pointer(c, obj, "segments_pointer", "/segments", &g->segments_pointer) < 0 ||
            get_pointer(c, obj, "error_code_pointer", "/error/code", &g->error_code_pointer) < 0 ||
            get_pointer(c, obj, "error_message_pointer", "/error/message",
                        &g->error_message_pointer) < 0)
            goto out;
        if (g->message_id_pointer[0] == '\0') {
            cerr(c, "message_id_pointer", "must point inside the answer");
            goto out;
        }
        if (get_list(c, obj, "success_statuses", ok, 3, &g->success) < 0 ||
            get_list(c, obj, "permanent_statuses", NULL, 0, &g->permanent) < 0 ||
            get_list(c, obj, "transient_statuses", NULL, 0, &g->transient) < 0 ||
            get_list(c, obj, "rejected_codes", rej, 4, &g->rejected_codes) < 0)
            goto out;
        if (g->status_pointer[0] && g->success.n == 0) {
            cerr(c, "success_statuses", "must not be empty when status_pointer is set");
            goto out;
        }
        for (size_t i = 0; i < g->success.n; i++)
            if (strlist_has(&g->permanent, g->success.v[i]) ||
                strlist_has(&g->transient, g->success.v[i])) {
                cerr(c, "success_statuses", "\"%s\" is also in another status list",
                     g->success.v[i]);
                goto out;
            }
        for (size_t i = 0; i < g->permanent.n; i++)
            if (strlist_has(&g->transient, g->permanent.v[i])) {
                cerr(c, "permanent_statuses", "\"%s\" is also in transient_statuses",
                     g->permanent.v[i]);
                goto out;
            }
    }
    rc = 0;
    goto out;
oom:
    cerr(c, NULL, "out of memory");
out:
    free(s);
    free(base);
    free(path);
    return rc;
}

/* Resolves an array of gateway names into @p list. */
static int load_list(const ctx_t *c, const char *key, const json_t *arr,
                     const nudgel_gateway_set_t *set, nudgel_gateway_route_t *list)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        cerr(c, key, "must be a non-empty array of gateway names");
        return -1;
    }
    if (json_array_size(arr) > NUDGEL_GATEWAY_ROUTE_LEN_MAX) {
        cerr(c, key, "has %zu gateways, more than %d", json_array_size(arr),
             NUDGEL_GATEWAY_ROUTE_LEN_MAX);
        return -1;
    }
    list->count = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        char k[64];
        snprintf(k, sizeof(k), "%s[%zu]", key, i);
        if (!json_is_string(e)) {
            cerr(c, k, "must be a gateway name");
            return -1;
        }
        const nudgel_gateway_t *g = nudgel_gateway_find(set, json_string_value(e));
        if (!g) {
            cerr(c, k, "\"%s\" is not a defined gateway", json_string_value(e));
            return -1;
        }
        for (size_t j = 0; j < list->count; j++)
            if (list->gateways[j] == g) {
                cerr(c, k, "\"%s\" is listed twice", g->name);
                return -1;
            }
        list->gateways[list->count++] = g;
    }
    return 0;
}

static int load_route(const ctx_t *c, const json_t *obj, nudgel_gateway_set_t *set, route_t *r)
{
    const char *key;
    json_t *v;
    if (!json_is_object(obj)) {
        cerr(c, NULL, "must be an object");
        return -1;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        if (key[0] != '_' && strcmp(key, "country") != 0 && strcmp(key, "operator") != 0 &&
            strcmp(key, "gateways") != 0) {
            cerr(c, key, "unknown key");
            return -1;
        }
    }
    v = json_object_get(obj, "country");
    if (!v) {
        cerr(c, "country", "is required");
        return -1;
    }
    if (!json_is_string(v) || !nudgel_phone_country_known(json_string_value(v))) {
        cerr(c, "country",
             "%s%s%s is not one of KE, NG, UG (other countries take the "
             "default_route)",
             json_is_string(v) ? "\"" : "", json_is_string(v) ? json_string_value(v) : "value",
             json_is_string(v) ? "\"" : "");
        return -1;
    }
    memcpy(r->country, json_string_value(v), 3);
    v = json_object_get(obj, "operator");
    if (!v) {
        cerr(c, "operator", "is required (an operator name, or \"*\" for any)");
        return -1;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > NUDGEL_GATEWAY_NAME_MAX || !printable(json_string_value(v))) {
        cerr(c, "operator", "must be an operator name of 1 to %d bytes, or \"*\"",
             NUDGEL_GATEWAY_NAME_MAX);
        return -1;
    }
    memcpy(r->operator_name, json_string_value(v), json_string_length(v) + 1);
    for (size_t i = 0; i < set->nroutes; i++)
        if (strcmp(set->routes[i].country, r->country) == 0 &&
            ascii_casecmp(set->routes[i].operator_name, r->operator_name) == 0) {
            cerr(c, "operator", "a route for %s/%s is already defined (routes[%zu])", r->country,
                 r->operator_name, i);
            return -1;
        }
    v = json_object_get(obj, "gateways");
    if (!v) {
        cerr(c, "gateways", "is required");
        return -1;
    }
    return load_list(c, "gateways", v, set, &r->list);
}

nudgel_err_t nudgel_gateway_set_parse(const char *json, size_t len, nudgel_gateway_set_t **out,
                                      char *errstr, size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_ERR_CONFIG;
    nudgel_gateway_set_t *set = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    ctx_t c = {.where = "", .errstr = errstr, .errstr_size = errstr_size};
    const char *key;
    json_t *v;

    if (!out || (!json && len)) {
        seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (len > NUDGEL_GATEWAY_FILE_MAX) {
        seterr(errstr, errstr_size, "gateway file is %zu bytes, more than %d", len,
               NUDGEL_GATEWAY_FILE_MAX);
        err = NUDGEL_ERR_TOO_LARGE;
        goto out;
    }
    root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        seterr(errstr, errstr_size, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        seterr(errstr, errstr_size, "the gateway file must hold a JSON object");
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        if (key[0] != '_' && strcmp(key, "gateways") != 0 && strcmp(key, "routes") != 0 &&
            strcmp(key, "default_route") != 0) {
            seterr(errstr, errstr_size, "%s: unknown key (gateways, routes, default_route)", key);
            goto out;
        }
    }
    set = calloc(1, sizeof(*set));
    if (!set)
        goto oom;

    const json_t *gws = json_object_get(root, "gateways");
    if (!json_is_array(gws) || json_array_size(gws) == 0) {
        seterr(errstr, errstr_size, "gateways: %s",
               gws ? "must be a non-empty array" : "is required");
        goto out;
    }
    if (json_array_size(gws) > NUDGEL_GATEWAY_MAX) {
        seterr(errstr, errstr_size, "gateways: %zu gateways, more than %d", json_array_size(gws),
               NUDGEL_GATEWAY_MAX);
        goto out;
    }
    set->gw = calloc(json_array_size(gws), sizeof(*set->gw));
    if (!set->gw)
        goto oom;
    for (size_t i = 0; i < json_array_size(gws); i++) {
        snprintf(c.where, sizeof(c.where), "gateways[%zu]", i);
        int rc = load_gateway(&c, json_array_get(gws, i), set, &set->gw[i]);
        /* counted even on failure so that free clears what was read */
        set->n = i + 1;
        if (rc < 0)
            goto out;
    }

    const json_t *routes = json_object_get(root, "routes");
    if (routes && !json_is_array(routes)) {
        seterr(errstr, errstr_size, "routes: must be an array");
        goto out;
    }
    if (json_array_size(routes) > NUDGEL_GATEWAY_ROUTES_MAX) {
        seterr(errstr, errstr_size, "routes: %zu routes, more than %d", json_array_size(routes),
               NUDGEL_GATEWAY_ROUTES_MAX);
        goto out;
    }
    set->routes = calloc(json_array_size(routes) + 1, sizeof(*set->routes));
    if (!set->routes)
        goto oom;
    for (size_t i = 0; i < json_array_size(routes); i++) {
        snprintf(c.where, sizeof(c.where), "routes[%zu]", i);
        if (load_route(&c, json_array_get(routes, i), set, &set->routes[i]) < 0)
            goto out;
        set->nroutes = i + 1;
    }
    const json_t *dflt = json_object_get(root, "default_route");
    if (dflt) {
        c.where[0] = '\0';
        if (load_list(&c, "default_route", dflt, set, &set->default_route) < 0)
            goto out;
        set->has_default = true;
    }
    if (set->nroutes == 0 && !set->has_default) {
        seterr(errstr, errstr_size,
               "routes: no route and no default_route: nothing could be "
               "sent");
        goto out;
    }
    *out = set;
    set = NULL;
    err = NUDGEL_OK;
    goto out;
oom:
    seterr(errstr, errstr_size, "out of memory");
    err = NUDGEL_ERR_NO_MEMORY;
out:
    nudgel_gateway_set_free(set);
    json_decref(root);
    return err;
}

nudgel_err_t nudgel_gateway_set_load(const char *path, nudgel_gateway_set_t **out, char *errstr,
                                     size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_ERR_IO;
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0;

    if (!path || !out) {
        seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    *out = NULL;
    f = fopen(path, "rb");
    if (!f) {
        seterr(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    buf = malloc(NUDGEL_GATEWAY_FILE_MAX + 1);
    if (!buf) {
        seterr(errstr, errstr_size, "%s: out of memory", path);
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    len = fread(buf, 1, NUDGEL_GATEWAY_FILE_MAX + 1, f);
    if (ferror(f)) {
        seterr(errstr, errstr_size, "%s: cannot read", path);
        goto out;
    }
    if (len > NUDGEL_GATEWAY_FILE_MAX) {
        seterr(errstr, errstr_size, "%s: more than %d bytes", path, NUDGEL_GATEWAY_FILE_MAX);
        err = NUDGEL_ERR_TOO_LARGE;
        goto out;
    }
    char inner[384];
    err = nudgel_gateway_set_parse(buf, len, out, inner, sizeof(inner));
    if (err != NUDGEL_OK)
        seterr(errstr, errstr_size, "%s: %s", path, inner);
out:
    free(buf);
    if (f)
        fclose(f);
    return err;
}

size_t nudgel_gateway_set_count(const nudgel_gateway_set_t *set)
{
    return set ? set->n : 0;
}

const nudgel_gateway_t *nudgel_gateway_set_at(const nudgel_gateway_set_t *set, size_t i)
{
    return set && i < set->n ? &set->gw[i] : NULL;
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
    return gw->dialect != NUDGEL_GATEWAY_AFRICASTALKING;
}

nudgel_err_t nudgel_gateway_route(const nudgel_gateway_set_t *set, const char *country,
                                  const char *operator_name, nudgel_gateway_route_t *out,
                                  char *errstr, size_t errstr_size)
{
    const route_t *wild = NULL;
    if (!set || !out) {
        seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (country && *country) {
        for (size_t i = 0; i < set->nroutes; i++) {
            const route_t *r = &set->routes[i];
            if (strcmp(r->country, country) != 0)
                continue;
            if (strcmp(r->operator_name, "*") == 0)
                wild = r;
            else if (operator_name && ascii_casecmp(r->operator_name, operator_name) == 0) {
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
        seterr(errstr, errstr_size,
               "no route: the number is outside KE, NG and UG and there is no default route");
    else
        seterr(errstr, errstr_size,
               "no route for country \"%s\" operator \"%s\" and no default "
               "route",
               country, operator_name ? operator_name : "(unknown)");
    return NUDGEL_ERR_INVALID_FIELD;
}

/* ---- requests --------------------------------------------------------- */

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

/* A malloc'd "name: value" or "name: scheme value" header line. */
static char *header_line(const char *name, const char *scheme, const char *value)
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

void nudgel_gateway_request_clear(nudgel_gateway_request_t *req)
{
    if (!req)
        return;
    for (size_t i = 0; i < req->header_count && i < NUDGEL_GATEWAY_HEADERS_MAX; i++) {
        if (req->headers[i]) {
            wipe(req->headers[i], strlen(req->headers[i]));
            free(req->headers[i]);
        }
    }
    free(req->url);
    free(req->body);
    memset(req, 0, sizeof(*req));
}

static int add_header(nudgel_gateway_request_t *req, char *line)
{
    if (!line || req->header_count >= NUDGEL_GATEWAY_HEADERS_MAX) {
        free(line);
        return -1;
    }
    req->headers[req->header_count++] = line;
    return 0;
}

/* AT: username=..&to=..&message=..[&from=..], every value form-encoded. */
static char *at_body(const nudgel_gateway_t *gw, const nudgel_gateway_message_t *m,
                     const char *from, size_t *len)
{
    char *u = nudgel_gateway_form_encode(gw->username, strlen(gw->username));
    char *t = nudgel_gateway_form_encode(m->to, strlen(m->to));
    char *x = nudgel_gateway_form_encode(m->text, strlen(m->text));
    char *f = from ? nudgel_gateway_form_encode(from, strlen(from)) : NULL;
    char *body = NULL;
    if (u && t && x && (!from || f)) {
        size_t n = strlen(u) + strlen(t) + strlen(x) + (f ? strlen(f) : 0) + 40;
        body = malloc(n);
        if (body) {
            int w = snprintf(body, n, "username=%s&to=%s&message=%s%s%s", u, t, x,
                             f ? "&from=" : "", f ? f : "");
            *len = (size_t)w;
        }
    }
    free(u);
    free(t);
    free(x);
    free(f);
    return body;
}

static int obj_set_str(json_t *obj, const char *key, const char *val)
{
    json_t *s = json_string(val);
    if (!s)
        return -1;
    return json_object_set_new(obj, key, s);
}

/* Infobip: {"messages":[{"from","destinations":[{"to","messageId"}],"text",...}]} */
static char *infobip_body(const nudgel_gateway_message_t *m, const char *from, size_t *len)
{
    json_t *root = json_object(), *msgs = json_array(), *msg = json_object();
    json_t *dests = json_array(), *dest = json_object();
    char *body = NULL;
    int rc = 0;
    if (!root || !msgs || !msg || !dests || !dest) {
        json_decref(msgs);
        json_decref(msg);
        json_decref(dests);
        json_decref(dest);
        goto out;
    }
    /* Infobip writes numbers without the "+" */
    rc |= json_object_set_new(dest, "to", json_string(m->to + 1));
    rc |= obj_set_str(dest, "messageId", m->client_ref);
    rc |= json_array_append_new(dests, dest);
    if (from)
        rc |= obj_set_str(msg, "from", from);
    rc |= json_object_set_new(msg, "destinations", dests);
    rc |= obj_set_str(msg, "text", m->text);
    if (m->callback_url) {
        rc |= obj_set_str(msg, "notifyUrl", m->callback_url);
        rc |= obj_set_str(msg, "notifyContentType", "application/json");
    }
    rc |= obj_set_str(msg, "callbackData", m->client_ref);
    if (m->validity_minutes)
        rc |= json_object_set_new(msg, "validityPeriod", json_integer(m->validity_minutes));
    rc |= json_array_append_new(msgs, msg);
    rc |= json_object_set_new(root, "messages", msgs);
    if (rc == 0)
        body = json_dumps(root, JSON_COMPACT);
out:
    json_decref(root);
    if (body)
        *len = strlen(body);
    return body;
}

static char *generic_body(const nudgel_gateway_message_t *m, const char *from, size_t *len)
{
    json_t *root = json_object();
    char *body = NULL;
    int rc = 0;
    if (!root)
        return NULL;
    rc |= obj_set_str(root, "to", m->to);
    if (from)
        rc |= obj_set_str(root, "from", from);
    rc |= obj_set_str(root, "text", m->text);
    rc |= obj_set_str(root, "client_ref", m->client_ref);
    if (m->callback_url)
        rc |= obj_set_str(root, "callback_url", m->callback_url);
    if (rc == 0)
        body = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (body)
        *len = strlen(body);
    return body;
}

static bool utf8_valid(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

nudgel_err_t nudgel_gateway_build_request(const nudgel_gateway_t *gw,
                                          const nudgel_gateway_message_t *msg,
                                          nudgel_gateway_request_t *out, char *errstr,
                                          size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_ERR_INVALID_FIELD;
    const char *from;
    size_t tlen;

    if (!out) {
        seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (!gw || !msg || !msg->text || !msg->client_ref) {
        seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (!e164_valid(msg->to)) {
        seterr(errstr, errstr_size, "to: not an E.164 number (\"+\" and 7 to 15 digits)");
        goto out;
    }
    size_t rlen = strlen(msg->client_ref);
    if (rlen == 0 || rlen >= NUDGEL_GATEWAY_CLIENT_REF_MAX || !printable(msg->client_ref)) {
        seterr(errstr, errstr_size, "client_ref: must be 1 to %d printable bytes",
               NUDGEL_GATEWAY_CLIENT_REF_MAX - 1);
        goto out;
    }
    tlen = strlen(msg->text);
    if (tlen == 0 || tlen > NUDGEL_GATEWAY_TEXT_MAX) {
        seterr(errstr, errstr_size, "text: %zu bytes, must be 1 to %d", tlen,
               NUDGEL_GATEWAY_TEXT_MAX);
        goto out;
    }
    if (!utf8_valid(msg->text, tlen)) {
        seterr(errstr, errstr_size, "text: not valid UTF-8");
        goto out;
    }
    from = msg->from && *msg->from ? msg->from : gw->sender_id;
    if (from && (strlen(from) > NUDGEL_GATEWAY_SENDER_MAX || !utf8_valid(from, strlen(from)))) {
        seterr(errstr, errstr_size, "from: must be valid UTF-8 of at most %d bytes",
               NUDGEL_GATEWAY_SENDER_MAX);
        goto out;
    }
    if (msg->callback_url &&
        (strlen(msg->callback_url) > NUDGEL_GATEWAY_URL_MAX || !printable(msg->callback_url))) {
        seterr(errstr, errstr_size, "callback_url: must be printable, at most %d bytes",
               NUDGEL_GATEWAY_URL_MAX);
        goto out;
    }

    err = NUDGEL_ERR_NO_MEMORY;
    out->method = "POST";
    out->url = xstrdup(gw->url);
    if (!out->url)
        goto oom;
    switch (gw->dialect) {
    case NUDGEL_GATEWAY_AFRICASTALKING:
        out->content_type = "application/x-www-form-urlencoded";
        out->body = at_body(gw, msg, from, &out->body_len);
        if (add_header(out, header_line("apiKey", NULL, gw->key)) < 0)
            goto oom;
        break;
    case NUDGEL_GATEWAY_INFOBIP:
        out->content_type = "application/json";
        out->body = infobip_body(msg, from, &out->body_len);
        if (add_header(out, header_line("Authorization", "App", gw->key)) < 0)
            goto oom;
        break;
    case NUDGEL_GATEWAY_GENERIC:
        out->content_type = "application/json";
        out->body = generic_body(msg, from, &out->body_len);
        if (add_header(out, header_line(gw->auth_header,
                                        gw->auth_scheme[0] ? gw->auth_scheme : NULL, gw->key)) < 0)
            goto oom;
        break;
    }
    if (!out->body)
        goto oom;
    if (add_header(out, header_line("Content-Type", NULL, out->content_type)) < 0 ||
        add_header(out, header_line("Accept", NULL, "application/json")) < 0)
        goto oom;
    return NUDGEL_OK;
oom:
    seterr(errstr, errstr_size, "out of memory");
out:
    nudgel_gateway_request_clear(out);
    return err;
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

/* Copies @p n bytes as printable ASCII (others become '?'), truncating. */
static void copy_text(char *dst, size_t size, const char *src, size_t n)
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
    copy_text(dst, size, src, src ? strlen(src) : 0);
}

static void out_error(nudgel_gateway_outcome_t *o, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void out_error(nudgel_gateway_outcome_t *o, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    copy_str(o->error_code, sizeof(o->error_code), code);
    copy_str(o->error_message, sizeof(o->error_message), msg);
}

static void sent(nudgel_gateway_outcome_t *o, const char *message_id)
{
    o->kind = NUDGEL_GATEWAY_SENT;
    o->receipt_status = "sent";
    copy_str(o->message_id, sizeof(o->message_id), message_id);
}

static void permanent(nudgel_gateway_outcome_t *o, bool rejected)
{
    o->kind = NUDGEL_GATEWAY_PERMANENT;
    o->receipt_status = rejected ? "rejected" : "failed";
}

static void transient(nudgel_gateway_outcome_t *o)
{
    o->kind = NUDGEL_GATEWAY_TRANSIENT;
    o->receipt_status = NULL;
}

/* A 2xx whose body cannot be read: the gateway may have taken the message. */
static void unreadable(nudgel_gateway_outcome_t *o, const char *what)
{
    transient(o);
    o->maybe_accepted = true;
    out_error(o, "unparseable_response", "HTTP %d with an unreadable body: %s", o->http_status,
              what);
}

/* RFC 6901 lookup; NULL when a token is missing or the pointer is bad. */
static const json_t *pointer_get(const json_t *root, const char *ptr)
{
    const json_t *cur = root;
    char tok[POINTER_MAX + 1];
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
            if (n >= POINTER_MAX)
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

/* The text of a string or integer value into @p buf; false for other types. */
static bool scalar_text(const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v)) {
        copy_text(buf, size, json_string_value(v), json_string_length(v));
        return true;
    }
    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    }
    return false;
}

static json_t *parse_body(const nudgel_gateway_response_t *r)
{
    if (!r->body || r->body_len == 0 || r->body_len > NUDGEL_GATEWAY_RESPONSE_MAX)
        return NULL;
    return json_loadb(r->body, r->body_len, 0, NULL);
}

/* "KES 0.8000" → currency KES, amount 0.8000; "0" or anything else → none. */
static void parse_cost(nudgel_gateway_outcome_t *o, const char *cost)
{
    const char *sp = cost ? strchr(cost, ' ') : NULL;
    if (!sp || sp == cost || (size_t)(sp - cost) >= sizeof(o->currency))
        return;
    for (const char *p = cost; p < sp; p++)
        if (*p < 'A' || *p > 'Z')
            return;
    const char *amt = sp + 1;
    if (!*amt || strlen(amt) >= sizeof(o->cost_amount))
        return;
    for (const char *p = amt; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            return;
    memcpy(o->currency, cost, (size_t)(sp - cost));
    o->currency[sp - cost] = '\0';
    memcpy(o->cost_amount, amt, strlen(amt) + 1);
    o->has_cost = true;
}

/*
 * Africa's Talking, 2xx. Recipients[0].statusCode decides (gateways.md):
 * 100 Processed, 101 Sent, 102 Queued → SENT; 401-409 → PERMANENT, of
 * which 402 InvalidSenderId, 403 InvalidPhoneNumber, 404
 * UnsupportedNumberType, 406 UserInBlacklist and 409 DoNotDisturbRejection
 * are "rejected" and 401 RiskHold, 405 InsufficientBalance, 407
 * CouldNotRoute are "failed"; 500-502 → TRANSIENT.
 *
 * Trade-off: AT takes no client reference, so a TRANSIENT outcome that is
 * resubmitted may become a second SMS if AT did take the first. An
 * unreadable 2xx body is still TRANSIENT (never assume a send we cannot
 * prove) but carries maybe_accepted, so the worker can choose to end such
 * an AT message instead of resubmitting it.
 */
static void classify_at_2xx(const json_t *root, nudgel_gateway_outcome_t *o)
{
    const json_t *data = json_object_get(root, "SMSMessageData");
    const json_t *recips = json_object_get(data, "Recipients");
    char code[32];
    if (!json_is_array(recips)) {
        unreadable(o, "no SMSMessageData.Recipients array");
        return;
    }
    if (json_array_size(recips) == 0) {
        /* AT answers a request-level refusal (e.g. InvalidSenderId) with
           an empty Recipients list and the reason in Message. */
        const char *m = json_string_value(json_object_get(data, "Message"));
        if (!m || !*m) {
            unreadable(o, "empty Recipients and no Message");
            return;
        }
        bool rej = strcmp(m, "InvalidSenderId") == 0 || strcmp(m, "InvalidPhoneNumber") == 0 ||
                   strcmp(m, "UserInBlacklist") == 0 || strcmp(m, "DoNotDisturbRejection") == 0;
        permanent(o, rej);
        out_error(o, m, "Africa's Talking sent to no recipient: %s", m);
        return;
    }
    const json_t *r = json_array_get(recips, 0);
    const json_t *sc = json_object_get(r, "statusCode");
    const char *status = json_string_value(json_object_get(r, "status"));
    json_int_t c;
    if (json_is_integer(sc)) {
        c = json_integer_value(sc);
    } else if (json_is_string(sc) && scalar_text(sc, code, sizeof(code)) && code[0] &&
               strspn(code, "0123456789") == strlen(code) && strlen(code) < 6) {
        c = strtol(code, NULL, 10);
    } else {
        unreadable(o, "Recipients[0].statusCode is not a number");
        return;
    }
    snprintf(code, sizeof(code), "%" JSON_INTEGER_FORMAT, c);
    const char *name = status && *status ? status : code;
    if (c >= 100 && c <= 102) {
        const char *id = json_string_value(json_object_get(r, "messageId"));
        if (!id || !*id || strcmp(id, "None") == 0) {
            unreadable(o, "an accepted recipient without messageId");
            return;
        }
        sent(o, id);
        parse_cost(o, json_string_value(json_object_get(r, "cost")));
    } else if (c >= 401 && c <= 409) {
        permanent(o, c == 402 || c == 403 || c == 404 || c == 406 || c == 409);
        out_error(o, name, "Africa's Talking statusCode %s (%s)", code, name);
    } else if (c >= 500 && c <= 599) {
        transient(o);
        out_error(o, name, "Africa's Talking statusCode %s (%s)", code, name);
    } else if (c >= 400 && c <= 499) {
        permanent(o, false);
        out_error(o, name, "Africa's Talking statusCode %s (%s), not a documented code", code,
                  name);
    } else {
        unreadable(o, "an undocumented Recipients[0].statusCode");
    }
}

/* Infobip REJECTED statuses that are about the number or sender: "rejected". */
static bool infobip_rejected(const char *name)
{
    static const char *const parts[] = {"DESTINATION", "SENDER", "DND",        "BLOCKLIST",
                                        "BLACKLIST",   "PREFIX", "MISSING_TO", "NETWORK"};
    for (size_t i = 0; name && i < sizeof(parts) / sizeof(parts[0]); i++)
        if (strstr(name, parts[i]))
            return true;
    return false;
}

/*
 * Infobip, 2xx: messages[0].status.groupId 1 PENDING (and 3 DELIVERED) →
 * SENT; 5 REJECTED → PERMANENT; 2 UNDELIVERABLE, 4 EXPIRED → PERMANENT
 * failed. Anything else is unreadable: resubmitting is safe because
 * Infobip dedupes our messageId.
 */
static void classify_infobip_2xx(const json_t *root, nudgel_gateway_outcome_t *o)
{
    const json_t *m = json_array_get(json_object_get(root, "messages"), 0);
    const json_t *st = json_object_get(m, "status");
    const json_t *gid = json_object_get(st, "groupId");
    const char *name = json_string_value(json_object_get(st, "name"));
    const char *desc = json_string_value(json_object_get(st, "description"));
    if (!json_is_integer(gid)) {
        unreadable(o, "no messages[0].status.groupId");
        return;
    }
    json_int_t smscount = json_integer_value(json_object_get(m, "smsCount"));
    switch (json_integer_value(gid)) {
    case 1:
    case 3:
        sent(o, json_string_value(json_object_get(m, "messageId")));
        if (smscount > 0 && smscount < 1000)
            o->segments = (uint32_t)smscount;
        return;
    case 5:
        permanent(o, infobip_rejected(name));
        break;
    case 2:
    case 4:
        permanent(o, false);
        break;
    default:
        unreadable(o, "an undocumented status groupId");
        return;
    }
    out_error(o, name ? name : "REJECTED", "Infobip %s: %s", name ? name : "status",
              desc ? desc : "(no description)");
}

/*
 * Generic, 2xx: the status at status_pointer is looked up in the configured
 * lists; with no status_pointer every 2xx with a message id is SENT. A 2xx
 * without a message id or with an unknown status is unreadable (a
 * resubmission is safe: the gateway dedupes client_ref).
 */
static void classify_generic_2xx(const nudgel_gateway_t *gw, const json_t *root,
                                 nudgel_gateway_outcome_t *o)
{
    char status[STATUS_MAX + 1] = "";
    char id[NUDGEL_GATEWAY_CLIENT_REF_MAX];
    const json_t *v;
    if (gw->status_pointer[0]) {
        if (!scalar_text(pointer_get(root, gw->status_pointer), status, sizeof(status))) {
            unreadable(o, "no status at the status pointer");
            return;
        }
        if (strlist_has(&gw->permanent, status)) {
            char code[64] = "";
            scalar_text(pointer_get(root, gw->error_code_pointer), code, sizeof(code));
            permanent(o, strlist_has(&gw->rejected_codes, status) ||
                             strlist_has(&gw->rejected_codes, code));
            out_error(o, code[0] ? code : status, "status \"%s\"", status);
            return;
        }
        if (strlist_has(&gw->transient, status)) {
            transient(o);
            out_error(o, status, "status \"%s\"", status);
            return;
        }
        if (!strlist_has(&gw->success, status)) {
            unreadable(o, "a status in none of the configured lists");
            return;
        }
    }
    if (!scalar_text(pointer_get(root, gw->message_id_pointer), id, sizeof(id)) || !id[0]) {
        unreadable(o, "no message id at the message id pointer");
        return;
    }
    sent(o, id);
    v = pointer_get(root, gw->segments_pointer);
    if (gw->segments_pointer[0] && json_is_integer(v) && json_integer_value(v) > 0 &&
        json_integer_value(v) < 1000)
        o->segments = (uint32_t)json_integer_value(v);
}

/* The code and text of an error answer (non-2xx), best effort. */
static void error_detail(const nudgel_gateway_t *gw, const nudgel_gateway_response_t *r,
                         const json_t *root, nudgel_gateway_outcome_t *o)
{
    char code[64] = "", msg[256] = "";
    switch (gw->dialect) {
    case NUDGEL_GATEWAY_INFOBIP: {
        const json_t *se =
            json_object_get(json_object_get(root, "requestError"), "serviceException");
        scalar_text(json_object_get(se, "messageId"), code, sizeof(code));
        scalar_text(json_object_get(se, "text"), msg, sizeof(msg));
        break;
    }
    case NUDGEL_GATEWAY_GENERIC:
        if (root) {
            scalar_text(pointer_get(root, gw->error_code_pointer), code, sizeof(code));
            scalar_text(pointer_get(root, gw->error_message_pointer), msg, sizeof(msg));
        }
        break;
    case NUDGEL_GATEWAY_AFRICASTALKING:
        break;
    }
    if (!msg[0] && !root && r->body)
        copy_text(msg, sizeof(msg), r->body, r->body_len < 200 ? r->body_len : 200);
    if (!code[0])
        snprintf(code, sizeof(code), "http_%d", r->http_status);
    out_error(o, code, "HTTP %d%s%s", r->http_status, msg[0] ? ": " : "", msg);
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
        transient(out);
        out_error(out, "invalid_argument", "classify called without a gateway or answer");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (resp->transport_error) {
        transient(out);
        out_error(out, "transport", "no answer from %s: %s", gw->name,
                  resp->transport_detail ? resp->transport_detail : "timeout or connection error");
        goto out;
    }
    int st = resp->http_status;
    out->http_status = st;
    if (st >= 200 && st <= 299) {
        root = parse_body(resp);
        if (!json_is_object(root)) {
            unreadable(out, resp->body_len > NUDGEL_GATEWAY_RESPONSE_MAX ? "body too large"
                                                                         : "not a JSON object");
            goto out;
        }
        switch (gw->dialect) {
        case NUDGEL_GATEWAY_AFRICASTALKING:
            classify_at_2xx(root, out);
            break;
        case NUDGEL_GATEWAY_INFOBIP:
            classify_infobip_2xx(root, out);
            break;
        case NUDGEL_GATEWAY_GENERIC:
            classify_generic_2xx(gw, root, out);
            break;
        }
        goto out;
    }
    root = parse_body(resp);
    error_detail(gw, resp, root, out);
    if (st == 429 || (st >= 500 && st <= 599)) {
        transient(out);
    } else if (st >= 300 && st <= 399) {
        permanent(out, false);
        out_error(out, "http_redirect", "HTTP %d: redirects are never followed", st);
    } else if (st >= 400 && st <= 499) {
        if (gw->dialect == NUDGEL_GATEWAY_GENERIC && strlist_has(&gw->transient, out->error_code))
            transient(out);
        else
            permanent(out, gw->dialect == NUDGEL_GATEWAY_GENERIC &&
                               strlist_has(&gw->rejected_codes, out->error_code));
    } else {
        transient(out);
        out_error(out, "http_unexpected", "HTTP status %d is not a final answer", st);
    }
out:
    if (out->kind == NUDGEL_GATEWAY_TRANSIENT && resp->retry_after)
        out->retry_after_ms = nudgel_gateway_retry_after_ms(resp->retry_after, resp->now_unix_ms);
    json_decref(root);
    return NUDGEL_OK;
}
