/*
 * gateways.c — see gateways.h. The send-side file is loaded with the
 * carriers library (nudgel_gateway_set_load: common keys, dialects,
 * routes); this file reads the "dlr" object of each gateway.
 */
#define _GNU_SOURCE
#include "gateways.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

struct dlr_gateways {
    nudgel_gateway_set_t *set;
    dlr_gateway_t *v;
    size_t n;
};

static const char *const common_keys[] = {
    "token_env",  "token_file",         "secondary_token_env", "secondary_token_file",
    "basic_user", "basic_password_env", "basic_password_file", "allow_cidrs",
    NULL,
};

static bool list_has(const char *const *list, const char *key)
{
    for (; *list; list++)
        if (strcmp(*list, key) == 0)
            return true;
    return false;
}

static bool token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '~' || c == '-';
}

static const char *str_member(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/*
 * The secret named by "<base>_env" or "<base>_file" of @p obj into @p *out
 * (malloc'd). @p required: one of them must be there. Errors name the
 * variable or file, never the value.
 */
static int read_secret(const char *gw, const json_t *obj, const char *base, bool required,
                       char **out, size_t *out_len, char *errstr, size_t errstr_size)
{
    char kenv[48], kfile[48];
    char buf[DLR_SECRET_MAX + 2];
    size_t len = 0;
    int rc = -1;
    snprintf(kenv, sizeof(kenv), "%s_env", base);
    snprintf(kfile, sizeof(kfile), "%s_file", base);
    const json_t *jenv = json_object_get(obj, kenv), *jfile = json_object_get(obj, kfile);
    *out = NULL;
    *out_len = 0;
    if ((jenv && !json_is_string(jenv)) || (jfile && !json_is_string(jfile))) {
        snprintf(errstr, errstr_size, "%s: dlr.%s: must be a string", gw, jenv ? kenv : kfile);
        return -1;
    }
    if (jenv && jfile) {
        snprintf(errstr, errstr_size, "%s: dlr.%s: give one of %s and %s", gw, kenv, kenv, kfile);
        return -1;
    }
    if (!jenv && !jfile) {
        if (required)
            snprintf(errstr, errstr_size, "%s: dlr.%s: one of %s and %s is required", gw, kenv,
                     kenv, kfile);
        return required ? -1 : 0;
    }
    if (jenv) {
        const char *val = getenv(json_string_value(jenv));
        if (!val || !*val) {
            snprintf(errstr, errstr_size, "%s: dlr.%s: environment variable %s is not set or empty",
                     gw, kenv, json_string_value(jenv));
            goto out;
        }
        len = strlen(val);
        if (len > DLR_SECRET_MAX) {
            snprintf(errstr, errstr_size, "%s: dlr.%s: the value of %s is longer than %d bytes", gw,
                     kenv, json_string_value(jenv), DLR_SECRET_MAX);
            goto out;
        }
        memcpy(buf, val, len + 1);
    } else {
        FILE *f = fopen(json_string_value(jfile), "rb");
        if (!f) {
            snprintf(errstr, errstr_size, "%s: dlr.%s: cannot open %s: %s", gw, kfile,
                     json_string_value(jfile), strerror(errno));
            goto out;
        }
        len = fread(buf, 1, DLR_SECRET_MAX + 1, f);
        bool bad = ferror(f);
        fclose(f);
        if (bad || len > DLR_SECRET_MAX) {
            snprintf(errstr, errstr_size,
                     "%s: dlr.%s: cannot read %s or it is longer than %d bytes", gw, kfile,
                     json_string_value(jfile), DLR_SECRET_MAX);
            goto out;
        }
        buf[len] = '\0';
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        buf[--len] = '\0';
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 32 || buf[i] == 127) {
            len = 0;
            break;
        }
    if (len == 0 || strlen(buf) != len) {
        snprintf(errstr, errstr_size, "%s: dlr.%s: the secret is empty or holds control characters",
                 gw, jenv ? kenv : kfile);
        goto out;
    }
    if (!(*out = malloc(len + 1))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    memcpy(*out, buf, len + 1);
    *out_len = len;
    rc = 0;
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

static int read_cidrs(const char *gw, const json_t *obj, dlr_gateway_t *d, char *errstr,
                      size_t errstr_size)
{
    const json_t *list = json_object_get(obj, "allow_cidrs");
    if (!list)
        return 0;
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > DLR_CIDRS_MAX) {
        snprintf(errstr, errstr_size,
                 "%s: dlr.allow_cidrs: must be an array of 1 to %d ranges "
                 "(leave it out to take any source)",
                 gw, DLR_CIDRS_MAX);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *e = json_array_get(list, i);
        char why[128];
        if (!json_is_string(e) ||
            dlr_cidr_parse(json_string_value(e), &d->cidrs[i], why, sizeof(why)) != 0) {
            snprintf(errstr, errstr_size, "%s: dlr.allow_cidrs[%zu]: %s", gw, i,
                     json_is_string(e) ? why : "must be a string");
            return -1;
        }
        d->ncidrs = i + 1;
    }
    return 0;
}

/* A token is a URL path segment: 16 to DLR_SECRET_MAX bytes of [A-Za-z0-9._~-]. */
static int check_token(const char *gw, const char *key, const char *token, size_t len, char *errstr,
                       size_t errstr_size)
{
    bool ok = len >= 16;
    for (size_t i = 0; i < len; i++)
        ok &= token_char(token[i]);
    if (!ok)
        snprintf(errstr, errstr_size,
                 "%s: dlr.%s: must be 16 to %d bytes of A-Z a-z 0-9 . _ ~ - (it is a URL "
                 "path segment)",
                 gw, key, DLR_SECRET_MAX);
    return ok ? 0 : -1;
}

static int read_gateway(const nudgel_gateway_t *gw, const json_t *obj, dlr_gateway_t *d,
                        char *errstr, size_t errstr_size)
{
    const char *name = nudgel_gateway_name(gw);
    const char *key;
    const json_t *v;
    d->name = name;
    d->dialect = nudgel_gateway_dialect(gw);
    bool generic = d->dialect == NUDGEL_GATEWAY_GENERIC;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (key[0] == '_' || list_has(common_keys, key) ||
            (generic && list_has(dlr_generic_keys, key)))
            continue;
        snprintf(errstr, errstr_size, "%s: dlr.%s: %s", name, key,
                 list_has(dlr_generic_keys, key) ? "only applies to dialect generic"
                                                 : "unknown key");
        return -1;
    }
    if (read_secret(name, obj, "token", true, &d->token, &d->token_len, errstr, errstr_size) != 0 ||
        check_token(name, "token", d->token, d->token_len, errstr, errstr_size) != 0)
        return -1;
    if (read_secret(name, obj, "secondary_token", false, &d->secondary_token,
                    &d->secondary_token_len, errstr, errstr_size) != 0 ||
        (d->secondary_token && check_token(name, "secondary_token", d->secondary_token,
                                           d->secondary_token_len, errstr, errstr_size) != 0))
        return -1;
    const char *user = str_member(obj, "basic_user");
    char *password = NULL;
    size_t plen = 0;
    if (json_object_get(obj, "basic_user") && (!user || !*user || strchr(user, ':'))) {
        snprintf(errstr, errstr_size, "%s: dlr.basic_user: must be a non-empty string without ':'",
                 name);
        return -1;
    }
    if (read_secret(name, obj, "basic_password", user != NULL, &password, &plen, errstr,
                    errstr_size) != 0)
        return -1;
    if (password && !user) {
        OPENSSL_cleanse(password, plen);
        free(password);
        snprintf(errstr, errstr_size, "%s: dlr.basic_user: required with a basic password", name);
        return -1;
    }
    if (user) {
        d->userpass_len = strlen(user) + 1 + plen;
        d->userpass = malloc(d->userpass_len + 1);
        if (d->userpass)
            snprintf(d->userpass, d->userpass_len + 1, "%s:%s", user, password);
        OPENSSL_cleanse(password, plen);
        free(password);
        if (!d->userpass) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    if (read_cidrs(name, obj, d, errstr, errstr_size) != 0)
        return -1;
    if (generic) {
        char why[256];
        if (dlr_generic_cfg_parse(obj, &d->generic, why, sizeof(why)) != 0) {
            snprintf(errstr, errstr_size, "%s: %s", name, why);
            return -1;
        }
    }
    return 0;
}

static void gateway_clear(dlr_gateway_t *d)
{
    if (d->token)
        OPENSSL_cleanse(d->token, d->token_len);
    if (d->secondary_token)
        OPENSSL_cleanse(d->secondary_token, d->secondary_token_len);
    if (d->userpass)
        OPENSSL_cleanse(d->userpass, d->userpass_len);
    free(d->token);
    free(d->secondary_token);
    free(d->userpass);
    dlr_generic_cfg_clear(&d->generic);
}

void dlr_gateways_free(dlr_gateways_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++)
        gateway_clear(&g->v[i]);
    free(g->v);
    nudgel_gateway_set_free(g->set);
    free(g);
}

static nudgel_err_t build(nudgel_gateway_set_t *set, dlr_gateways_t **out, char *errstr,
                          size_t errstr_size)
{
    dlr_gateways_t *g = calloc(1, sizeof(*g));
    size_t total = nudgel_gateway_set_count(set);
    if (!g || !(g->v = calloc(total ? total : 1, sizeof(*g->v)))) {
        free(g);
        nudgel_gateway_set_free(set);
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    g->set = set;
    for (size_t i = 0; i < total; i++) {
        const nudgel_gateway_t *gw = nudgel_gateway_set_at(set, i);
        const json_t *obj = nudgel_gateway_dlr(gw);
        if (!obj)
            continue;
        int rc = read_gateway(gw, obj, &g->v[g->n], errstr, errstr_size);
        g->n++; /* counted even on failure, so that free clears it */
        if (rc != 0) {
            dlr_gateways_free(g);
            return NUDGEL_ERR_CONFIG;
        }
    }
    if (g->n == 0) {
        dlr_gateways_free(g);
        snprintf(errstr, errstr_size,
                 "no gateway has a \"dlr\" object: every report would be "
                 "refused");
        return NUDGEL_ERR_CONFIG;
    }
    *out = g;
    return NUDGEL_OK;
}

nudgel_err_t dlr_gateways_load(const char *path, dlr_gateways_t **out, char *errstr,
                               size_t errstr_size)
{
    nudgel_gateway_set_t *set = NULL;
    *out = NULL;
    nudgel_err_t err =
        nudgel_gateway_set_load_flags(path, NUDGEL_GATEWAY_LOAD_NO_KEYS, &set, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    char inner[384];
    err = build(set, out, inner, sizeof(inner));
    if (err != NUDGEL_OK)
        snprintf(errstr, errstr_size, "%s: %s", path, inner);
    return err;
}

nudgel_err_t dlr_gateways_parse(const char *json, size_t len, dlr_gateways_t **out, char *errstr,
                                size_t errstr_size)
{
    nudgel_gateway_set_t *set = NULL;
    *out = NULL;
    nudgel_err_t err = nudgel_gateway_set_parse_flags(json, len, NUDGEL_GATEWAY_LOAD_NO_KEYS, &set,
                                                      errstr, errstr_size);
    return err != NUDGEL_OK ? err : build(set, out, errstr, errstr_size);
}

const dlr_gateway_t *dlr_gateways_find(const dlr_gateways_t *g, const char *name)
{
    for (size_t i = 0; g && name && i < g->n; i++)
        if (strcmp(g->v[i].name, name) == 0)
            return &g->v[i];
    return NULL;
}

size_t dlr_gateways_count(const dlr_gateways_t *g)
{
    return g ? g->n : 0;
}

const dlr_gateway_t *dlr_gateways_at(const dlr_gateways_t *g, size_t i)
{
    return g && i < g->n ? &g->v[i] : NULL;
}
