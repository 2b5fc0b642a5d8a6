/*
 * gateway_load.c — the gateways file: read with jansson, every key checked
 * (common keys here, a dialect's own keys by its parse function, keys of
 * another dialect refused by name), API keys read once from the environment
 * or a key file, route names resolved to gateways so that a lookup in
 * gateway.c is a short scan with no allocation. A route's operator must be
 * "*" or an operator the numbering plan (config/numbering.json) names for
 * its country: a misspelt name would otherwise never match a number.
 *
 * Errors are "key path: problem" ("gateways[1].dialect: ..."); an API key
 * never appears in one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nudgel/phone.h"

#include "gateway_internal.h"

/* Keys every gateway object may hold; a dialect lists its own in dialect_t.keys. */
static const char *const common_keys[] = {
    "name",        "dialect",      "base_url", "path",
    "api_key_env", "api_key_file", "tps",      "connect_timeout_ms",
    "timeout_ms",  "sender_id",    "dlr",      "unknown_outcome",
};

static bool list_has(const char *const *list, const char *key)
{
    for (; *list; list++)
        if (strcmp(*list, key) == 0)
            return true;
    return false;
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

/*
 * Reads a secret of the gateway object from the environment variable named
 * by @p env_key or the file named by @p file_key (exactly one when
 * @p required, at most one otherwise) into @p *out (malloc'd, @p *out_size
 * bytes to wipe; NULL when optional and absent). Trailing white space (the
 * newline of a secret file) is dropped. Errors name the variable or file,
 * never the value.
 */
static int read_secret(const dialect_ctx_t *c, const json_t *obj, const char *env_key,
                       const char *file_key, bool required, char **out, size_t *out_size)
{
    char *env = NULL, *file = NULL;
    char *buf = NULL;
    size_t bufsize = 0;
    FILE *f = NULL;
    int rc = -1;

    if (dialect_get_str(c, obj, env_key, 256, false, false, &env) < 0 ||
        dialect_get_str(c, obj, file_key, 4096, false, false, &file) < 0)
        goto out;
    if (!required && !env && !file) {
        rc = 0;
        goto out;
    }
    if ((env != NULL) == (file != NULL)) {
        dialect_cerr(c, env_key, "exactly one of %s and %s is %s", env_key, file_key,
                     required ? "required" : "allowed");
        goto out;
    }
    size_t len = 0;
    if (env) {
        const char *val = getenv(env);
        if (!val || !*val) {
            dialect_cerr(c, env_key, "environment variable %s is not set or empty", env);
            goto out;
        }
        len = strlen(val);
        if (len > NUDGEL_GATEWAY_KEY_MAX) {
            dialect_cerr(c, env_key, "the value of %s is longer than %d bytes", env,
                         NUDGEL_GATEWAY_KEY_MAX);
            goto out;
        }
        buf = dialect_strndup(val, len);
        bufsize = len + 1;
    } else {
        f = fopen(file, "rb");
        if (!f) {
            dialect_cerr(c, file_key, "cannot open %s: %s", file, strerror(errno));
            goto out;
        }
        buf = malloc(NUDGEL_GATEWAY_KEY_MAX + 2);
        bufsize = NUDGEL_GATEWAY_KEY_MAX + 2;
        if (buf) {
            len = fread(buf, 1, NUDGEL_GATEWAY_KEY_MAX + 1, f);
            if (ferror(f)) {
                dialect_cerr(c, file_key, "cannot read %s", file);
                goto out;
            }
            if (len > NUDGEL_GATEWAY_KEY_MAX) {
                dialect_cerr(c, file_key, "%s is longer than %d bytes", file,
                             NUDGEL_GATEWAY_KEY_MAX);
                goto out;
            }
            buf[len] = '\0';
        }
    }
    if (!buf) {
        dialect_cerr(c, env_key, "out of memory");
        goto out;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        buf[--len] = '\0';
    if (len == 0 || strlen(buf) != len || !dialect_printable(buf)) {
        dialect_cerr(c, env ? env_key : file_key,
                     "the secret in %s is empty or holds control characters", env ? env : file);
        goto out;
    }
    *out = buf;
    *out_size = bufsize;
    buf = NULL;
    rc = 0;
out:
    if (buf) {
        dialect_wipe(buf, bufsize);
        free(buf);
    }
    if (f)
        fclose(f);
    free(env);
    free(file);
    return rc;
}

/*
 * The API key: api_key_env or api_key_file, never written in the file. With
 * @p skip_keys (NUDGEL_GATEWAY_LOAD_NO_KEYS: nudgel-dlr) the key is named but
 * not read.
 */
static int read_key(const dialect_ctx_t *c, const json_t *obj, nudgel_gateway_t *g, bool skip_keys)
{
    if (json_object_get(obj, "api_key")) {
        dialect_cerr(c, "api_key",
                     "keys are never written in this file: name them with api_key_env or "
                     "api_key_file");
        return -1;
    }
    if (skip_keys) {
        if (!json_object_get(obj, "api_key_env") && !json_object_get(obj, "api_key_file")) {
            dialect_cerr(c, "api_key_env",
                         "exactly one of api_key_env and api_key_file is required");
            return -1;
        }
        return 0;
    }
    const json_t *env = json_object_get(obj, "api_key_env");
    const json_t *file = json_object_get(obj, "api_key_file");
    snprintf(g->key_source, sizeof(g->key_source), "%s %.*s",
             json_is_string(env) ? "api_key_env" : "api_key_file", NUDGEL_GATEWAY_NAME_MAX,
             json_is_string(env)    ? json_string_value(env)
             : json_is_string(file) ? json_string_value(file)
                                    : "");
    return read_secret(c, obj, "api_key_env", "api_key_file", true, &g->key, &g->key_len);
}

/*
 * The delivery-report token (the last segment of the receiver's URL,
 * /v1/dlr/{gateway}/{token}) from the gateway's "dlr" object: optional,
 * dlr.token_env or dlr.token_file, the same secret nudgel-dlr checks
 * (workers/dlr/gateways.c checks the rest of the object). URL-safe characters
 * only (letters, digits, '-', '_', '.', '~'), so it is sent as it is.
 */
static int read_dlr_token(const dialect_ctx_t *c, const json_t *obj, nudgel_gateway_t *g)
{
    const json_t *dlr = json_object_get(obj, "dlr");
    if (!dlr)
        return 0;
    if (!json_is_object(dlr)) {
        dialect_cerr(c, "dlr", "must be an object (the gateway's delivery-report settings)");
        return -1;
    }
    if (read_secret(c, dlr, "token_env", "token_file", false, &g->dlr_token, &g->dlr_token_len) < 0)
        return -1;
    const char *t = g->dlr_token;
    if (t &&
        (!*t || strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~") !=
                    strlen(t))) {
        dialect_cerr(c, "dlr", "token: must be letters, digits, '-', '_', '.' or '~'");
        return -1;
    }
    return 0;
}

/* The "dialect" member into g->dialect and g->ops. */
static int read_dialect(const dialect_ctx_t *c, const json_t *obj, nudgel_gateway_t *g)
{
    char *s = NULL;
    char names[128] = "";
    if (dialect_get_str(c, obj, "dialect", 64, false, true, &s) < 0)
        return -1;
    for (int d = 0; d < GATEWAY_DIALECTS; d++) {
        const dialect_t *ops = gateway_dialect_ops((nudgel_gateway_dialect_t)d);
        if (strcmp(s, ops->name) == 0) {
            g->dialect = (nudgel_gateway_dialect_t)d;
            g->ops = ops;
            free(s);
            return 0;
        }
        size_t used = strlen(names);
        snprintf(names + used, sizeof(names) - used, "%s%s", d ? ", " : "", ops->name);
    }
    dialect_cerr(c, "dialect", "\"%s\" is not one of %s", s, names);
    free(s);
    return -1;
}

/* Every key is a common key, one of the gateway's dialect, or a "_" comment. */
static int check_keys(const dialect_ctx_t *c, const json_t *obj, const nudgel_gateway_t *g)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool known = key[0] == '_' || strcmp(key, "api_key") == 0;
        for (size_t i = 0; !known && i < sizeof(common_keys) / sizeof(common_keys[0]); i++)
            known = strcmp(key, common_keys[i]) == 0;
        if (known || list_has(g->ops->keys, key))
            continue;
        for (int d = 0; d < GATEWAY_DIALECTS; d++) {
            const dialect_t *other = gateway_dialect_ops((nudgel_gateway_dialect_t)d);
            if (list_has(other->keys, key)) {
                dialect_cerr(c, key, "only applies to dialect %s", other->name);
                return -1;
            }
        }
        dialect_cerr(c, key, "unknown key");
        return -1;
    }
    return 0;
}

/* base_url (trailing '/' dropped) + path (the dialect's default when absent) into g->url. */
static int read_url(const dialect_ctx_t *c, const json_t *obj, nudgel_gateway_t *g)
{
    char *base = NULL, *path = NULL;
    int rc = -1;
    if (dialect_get_str(c, obj, "base_url", NUDGEL_GATEWAY_URL_MAX, false, true, &base) < 0)
        goto out;
    if ((strncmp(base, "https://", 8) != 0 && strncmp(base, "http://", 7) != 0) ||
        !dialect_printable(base) || strchr(base, ' ') || strchr(base, '?') || strchr(base, '#')) {
        dialect_cerr(c, "base_url", "\"%s\" is not an http:// or https:// URL without query", base);
        goto out;
    }
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        base[--blen] = '\0';
    if (dialect_get_str(c, obj, "path", NUDGEL_GATEWAY_URL_MAX, true, false, &path) < 0)
        goto out;
    if (path &&
        ((path[0] != '\0' && path[0] != '/') || !dialect_printable(path) || strchr(path, ' '))) {
        dialect_cerr(c, "path", "\"%s\" must be empty or start with '/'", path);
        goto out;
    }
    const char *p = path ? path : g->ops->default_path;
    g->url = malloc(blen + strlen(p) + 1);
    if (!g->url) {
        dialect_cerr(c, "base_url", "out of memory");
        goto out;
    }
    memcpy(g->url, base, blen);
    memcpy(g->url + blen, p, strlen(p) + 1);
    if (!(g->base_url = dialect_strdup(base))) {
        dialect_cerr(c, "base_url", "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(base);
    free(path);
    return rc;
}

/*
 * unknown_outcome: what a submission whose outcome is unknown (an answer
 * lost or unreadable after the request went out) becomes. Absent: hold
 * where the carrier cannot dedupe our client reference (Africa's Talking),
 * resubmit where it can (Infobip, generic).
 */
static int read_unknown_outcome(const dialect_ctx_t *c, const json_t *obj, nudgel_gateway_t *g)
{
    char *s = NULL;
    if (dialect_get_str(c, obj, "unknown_outcome", 16, false, false, &s) < 0)
        return -1;
    int rc = 0;
    if (!s)
        g->unknown_outcome =
            g->ops->dedupes ? NUDGEL_GATEWAY_UNKNOWN_RESUBMIT : NUDGEL_GATEWAY_UNKNOWN_HOLD;
    else if (strcmp(s, "resubmit") == 0)
        g->unknown_outcome = NUDGEL_GATEWAY_UNKNOWN_RESUBMIT;
    else if (strcmp(s, "hold") == 0)
        g->unknown_outcome = NUDGEL_GATEWAY_UNKNOWN_HOLD;
    else {
        dialect_cerr(c, "unknown_outcome", "\"%s\" is not one of resubmit, hold", s);
        rc = -1;
    }
    free(s);
    return rc;
}

static int load_gateway(const dialect_ctx_t *c, const json_t *obj, nudgel_gateway_set_t *set,
                        nudgel_gateway_t *g, unsigned flags)
{
    char *s = NULL;
    int rc = -1;

    if (!json_is_object(obj)) {
        dialect_cerr(c, NULL, "must be an object");
        goto out;
    }
    /* name and dialect first: later messages depend on them */
    if (dialect_get_str(c, obj, "name", NUDGEL_GATEWAY_NAME_MAX, false, true, &s) < 0)
        goto out;
    if (!name_valid(s)) {
        dialect_cerr(c, "name", "\"%s\" may only hold letters, digits, '-', '_' and '.'", s);
        goto out;
    }
    if (nudgel_gateway_find(set, s)) {
        dialect_cerr(c, "name", "\"%s\" is defined twice", s);
        goto out;
    }
    memcpy(g->name, s, strlen(s) + 1);
    if (read_dialect(c, obj, g) < 0 || check_keys(c, obj, g) < 0 || read_url(c, obj, g) < 0 ||
        read_key(c, obj, g, (flags & NUDGEL_GATEWAY_LOAD_NO_KEYS) != 0) < 0 ||
        ((flags & NUDGEL_GATEWAY_LOAD_DLR_TOKENS) && read_dlr_token(c, obj, g) < 0))
        goto out;
    if (dialect_get_uint(c, obj, "tps", 1, 1000000, 0, true, &g->tps) < 0 ||
        dialect_get_uint(c, obj, "connect_timeout_ms", 100, 60000, 3000, false,
                         &g->connect_timeout_ms) < 0 ||
        dialect_get_uint(c, obj, "timeout_ms", 100, 300000, 10000, false, &g->timeout_ms) < 0)
        goto out;
    if (g->connect_timeout_ms > g->timeout_ms) {
        dialect_cerr(c, "connect_timeout_ms", "%u is more than timeout_ms (%u)",
                     g->connect_timeout_ms, g->timeout_ms);
        goto out;
    }
    if (read_unknown_outcome(c, obj, g) < 0)
        goto out;
    if (dialect_get_str(c, obj, "sender_id", NUDGEL_GATEWAY_SENDER_MAX, false, false,
                        &g->sender_id) < 0)
        goto out;
    if (g->sender_id && !dialect_printable(g->sender_id)) {
        dialect_cerr(c, "sender_id", "must be printable");
        goto out;
    }
    if (g->ops->parse(c, obj, &g->cfg) < 0)
        goto out;
    /* Delivery-report settings: only their shape here; nudgel-dlr reads them (its
       gateways.c), so a worker that sends needs none of their secrets. */
    const json_t *dlr = json_object_get(obj, "dlr");
    if (dlr && !json_is_object(dlr)) {
        dialect_cerr(c, "dlr", "must be an object (see nudgel-dlr's gateway settings)");
        goto out;
    }
    if (dlr && !(g->dlr = json_deep_copy(dlr))) {
        dialect_cerr(c, "dlr", "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(s);
    return rc;
}

/* Resolves an array of gateway names into @p list. */
static int load_list(const dialect_ctx_t *c, const char *key, const json_t *arr,
                     const nudgel_gateway_set_t *set, nudgel_gateway_route_t *list)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        dialect_cerr(c, key, "must be a non-empty array of gateway names");
        return -1;
    }
    if (json_array_size(arr) > NUDGEL_GATEWAY_ROUTE_LEN_MAX) {
        dialect_cerr(c, key, "has %zu gateways, more than %d", json_array_size(arr),
                     NUDGEL_GATEWAY_ROUTE_LEN_MAX);
        return -1;
    }
    list->count = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        char k[64];
        snprintf(k, sizeof(k), "%s[%zu]", key, i);
        if (!json_is_string(e)) {
            dialect_cerr(c, k, "must be a gateway name");
            return -1;
        }
        const nudgel_gateway_t *g = nudgel_gateway_find(set, json_string_value(e));
        if (!g) {
            dialect_cerr(c, k, "\"%s\" is not a defined gateway", json_string_value(e));
            return -1;
        }
        for (size_t j = 0; j < list->count; j++)
            if (list->gateways[j] == g) {
                dialect_cerr(c, k, "\"%s\" is listed twice", g->name);
                return -1;
            }
        list->gateways[list->count++] = g;
    }
    return 0;
}

static int load_route(const dialect_ctx_t *c, const json_t *obj, nudgel_gateway_set_t *set,
                      gateway_route_t *r)
{
    const char *key;
    json_t *v;
    if (!json_is_object(obj)) {
        dialect_cerr(c, NULL, "must be an object");
        return -1;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        if (key[0] != '_' && strcmp(key, "country") != 0 && strcmp(key, "operator") != 0 &&
            strcmp(key, "gateways") != 0) {
            dialect_cerr(c, key, "unknown key");
            return -1;
        }
    }
    v = json_object_get(obj, "country");
    if (!v) {
        dialect_cerr(c, "country", "is required");
        return -1;
    }
    if (!json_is_string(v) || !nudgel_phone_country_known(json_string_value(v))) {
        dialect_cerr(c, "country",
                     "%s%s%s is not one of KE, NG, UG (other countries take the "
                     "default_route)",
                     json_is_string(v) ? "\"" : "",
                     json_is_string(v) ? json_string_value(v) : "value",
                     json_is_string(v) ? "\"" : "");
        return -1;
    }
    memcpy(r->country, json_string_value(v), 3);
    v = json_object_get(obj, "operator");
    if (!v) {
        dialect_cerr(c, "operator", "is required (an operator name, or \"*\" for any)");
        return -1;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > NUDGEL_GATEWAY_NAME_MAX ||
        !dialect_printable(json_string_value(v))) {
        dialect_cerr(c, "operator", "must be an operator name of 1 to %d bytes, or \"*\"",
                     NUDGEL_GATEWAY_NAME_MAX);
        return -1;
    }
    memcpy(r->operator_name, json_string_value(v), json_string_length(v) + 1);
    if (strcmp(r->operator_name, "*") != 0 &&
        !nudgel_phone_operator_known(r->country, r->operator_name)) {
        char known[192];
        nudgel_phone_operator_names(r->country, known, sizeof(known));
        dialect_cerr(c, "operator",
                     "\"%s\" is not an operator of %s in the numbering plan (%s; or \"*\" for "
                     "any)",
                     r->operator_name, r->country, known);
        return -1;
    }
    for (size_t i = 0; i < set->nroutes; i++)
        if (strcmp(set->routes[i].country, r->country) == 0 &&
            dialect_ascii_casecmp(set->routes[i].operator_name, r->operator_name) == 0) {
            dialect_cerr(c, "operator", "a route for %s/%s is already defined (routes[%zu])",
                         r->country, r->operator_name, i);
            return -1;
        }
    v = json_object_get(obj, "gateways");
    if (!v) {
        dialect_cerr(c, "gateways", "is required");
        return -1;
    }
    return load_list(c, "gateways", v, set, &r->list);
}

/* routes and default_route of @p root into @p set. */
static int load_routes(dialect_ctx_t *c, const json_t *root, nudgel_gateway_set_t *set)
{
    const json_t *routes = json_object_get(root, "routes");
    if (routes && !json_is_array(routes)) {
        dialect_seterr(c->errstr, c->errstr_size, "routes: must be an array");
        return -1;
    }
    if (json_array_size(routes) > NUDGEL_GATEWAY_ROUTES_MAX) {
        dialect_seterr(c->errstr, c->errstr_size, "routes: %zu routes, more than %d",
                       json_array_size(routes), NUDGEL_GATEWAY_ROUTES_MAX);
        return -1;
    }
    set->routes = calloc(json_array_size(routes) + 1, sizeof(*set->routes));
    if (!set->routes)
        return -2;
    for (size_t i = 0; i < json_array_size(routes); i++) {
        snprintf(c->where, sizeof(c->where), "routes[%zu]", i);
        if (load_route(c, json_array_get(routes, i), set, &set->routes[i]) < 0)
            return -1;
        set->nroutes = i + 1;
    }
    const json_t *dflt = json_object_get(root, "default_route");
    if (dflt) {
        c->where[0] = '\0';
        if (load_list(c, "default_route", dflt, set, &set->default_route) < 0)
            return -1;
        set->has_default = true;
    }
    if (set->nroutes == 0 && !set->has_default) {
        dialect_seterr(c->errstr, c->errstr_size,
                       "routes: no route and no default_route: nothing could be "
                       "sent");
        return -1;
    }
    return 0;
}

nudgel_err_t nudgel_gateway_set_parse(const char *json, size_t len, nudgel_gateway_set_t **out,
                                      char *errstr, size_t errstr_size)
{
    return nudgel_gateway_set_parse_flags(json, len, 0, out, errstr, errstr_size);
}

nudgel_err_t nudgel_gateway_set_parse_flags(const char *json, size_t len, unsigned flags,
                                            nudgel_gateway_set_t **out, char *errstr,
                                            size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_ERR_CONFIG;
    nudgel_gateway_set_t *set = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    dialect_ctx_t c = {.where = "", .errstr = errstr, .errstr_size = errstr_size};
    const char *key;
    json_t *v;

    if (!out || (!json && len)) {
        dialect_seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (len > NUDGEL_GATEWAY_FILE_MAX) {
        dialect_seterr(errstr, errstr_size, "gateway file is %zu bytes, more than %d", len,
                       NUDGEL_GATEWAY_FILE_MAX);
        err = NUDGEL_ERR_TOO_LARGE;
        goto out;
    }
    root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        dialect_seterr(errstr, errstr_size, "line %d column %d: %s", jerr.line, jerr.column,
                       jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        dialect_seterr(errstr, errstr_size, "the gateway file must hold a JSON object");
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        if (key[0] != '_' && strcmp(key, "gateways") != 0 && strcmp(key, "routes") != 0 &&
            strcmp(key, "default_route") != 0) {
            dialect_seterr(errstr, errstr_size, "%s: unknown key (gateways, routes, default_route)",
                           key);
            goto out;
        }
    }
    set = calloc(1, sizeof(*set));
    if (!set)
        goto oom;

    const json_t *gws = json_object_get(root, "gateways");
    if (!json_is_array(gws) || json_array_size(gws) == 0) {
        dialect_seterr(errstr, errstr_size, "gateways: %s",
                       gws ? "must be a non-empty array" : "is required");
        goto out;
    }
    if (json_array_size(gws) > NUDGEL_GATEWAY_MAX) {
        dialect_seterr(errstr, errstr_size, "gateways: %zu gateways, more than %d",
                       json_array_size(gws), NUDGEL_GATEWAY_MAX);
        goto out;
    }
    set->gw = calloc(json_array_size(gws), sizeof(*set->gw));
    if (!set->gw)
        goto oom;
    for (size_t i = 0; i < json_array_size(gws); i++) {
        snprintf(c.where, sizeof(c.where), "gateways[%zu]", i);
        int rc = load_gateway(&c, json_array_get(gws, i), set, &set->gw[i], flags);
        /* counted even on failure so that free clears what was read */
        set->n = i + 1;
        if (rc < 0)
            goto out;
    }
    int rc = load_routes(&c, root, set);
    if (rc == -2)
        goto oom;
    if (rc < 0)
        goto out;
    *out = set;
    set = NULL;
    err = NUDGEL_OK;
    goto out;
oom:
    dialect_seterr(errstr, errstr_size, "out of memory");
    err = NUDGEL_ERR_NO_MEMORY;
out:
    nudgel_gateway_set_free(set);
    json_decref(root);
    return err;
}

nudgel_err_t nudgel_gateway_set_load(const char *path, nudgel_gateway_set_t **out, char *errstr,
                                     size_t errstr_size)
{
    return nudgel_gateway_set_load_flags(path, 0, out, errstr, errstr_size);
}

nudgel_err_t nudgel_gateway_set_load_flags(const char *path, unsigned flags,
                                           nudgel_gateway_set_t **out, char *errstr,
                                           size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_ERR_IO;
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0;

    if (!path || !out) {
        dialect_seterr(errstr, errstr_size, "invalid argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    *out = NULL;
    f = fopen(path, "rb");
    if (!f) {
        dialect_seterr(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    buf = malloc(NUDGEL_GATEWAY_FILE_MAX + 1);
    if (!buf) {
        dialect_seterr(errstr, errstr_size, "%s: out of memory", path);
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    len = fread(buf, 1, NUDGEL_GATEWAY_FILE_MAX + 1, f);
    if (ferror(f)) {
        dialect_seterr(errstr, errstr_size, "%s: cannot read", path);
        goto out;
    }
    if (len > NUDGEL_GATEWAY_FILE_MAX) {
        dialect_seterr(errstr, errstr_size, "%s: more than %d bytes", path,
                       NUDGEL_GATEWAY_FILE_MAX);
        err = NUDGEL_ERR_TOO_LARGE;
        goto out;
    }
    char inner[384];
    err = nudgel_gateway_set_parse_flags(buf, len, flags, out, inner, sizeof(inner));
    if (err != NUDGEL_OK)
        dialect_seterr(errstr, errstr_size, "%s: %s", path, inner);
out:
    free(buf);
    if (f)
        fclose(f);
    return err;
}
