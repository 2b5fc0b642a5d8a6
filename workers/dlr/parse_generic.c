/*
 * parse_generic.c — delivery reports of a generic JSON gateway, read like
 * its send side (workers/carriers/src/dialect_generic.c): through RFC 6901
 * pointers and status lists in the gateway's "dlr" object.
 *
 * Keys (all optional; defaults fit the carrier simulator's generic shape
 * {"id","client_ref","to","status","timestamp","error_code"}):
 *   results_pointer        ""  — the body is one report; else the array
 *                               of up to DLR_BATCH_MAX reports
 *   message_id_pointer     "/id"  (inside a report; required to be there)
 *   status_pointer         "/status"  (required to be there)
 *   to_pointer             "/to"
 *   error_code_pointer     "/error_code"
 *   error_message_pointer  "/error_message"
 *   network_code_pointer   "/network_code"
 *   done_at_pointer        "/timestamp"  (RFC 3339)
 *   client_ref_pointer     "/client_ref" (our message id when echoed)
 *   statuses               {"delivered": [...], "undelivered": [...],
 *                           "expired", "rejected", "failed", "sent",
 *                           "buffered"}: the carrier's values of each
 *                           contract status; default each name maps from
 *                           itself, and "sent" also from accepted, queued.
 *                           Given, it replaces the default whole. Values
 *                           in no list → unknown.
 *   message_id_case        "preserve" (default), "lower", "upper"
 * A pointer is "" (not read) or starts with '/'. A value in two lists is
 * an error.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

#define STATUS_VALUES_MAX 32

const char *const dlr_generic_keys[] = {
    "results_pointer",      "message_id_pointer",
    "status_pointer",       "to_pointer",
    "error_code_pointer",   "error_message_pointer",
    "network_code_pointer", "done_at_pointer",
    "client_ref_pointer",   "statuses",
    "message_id_case",      NULL,
};

void dlr_generic_cfg_clear(dlr_generic_cfg_t *cfg)
{
    char **ptrs[] = {
        &cfg->results_pointer,      &cfg->message_id_pointer, &cfg->status_pointer,
        &cfg->to_pointer,           &cfg->error_code_pointer, &cfg->error_message_pointer,
        &cfg->network_code_pointer, &cfg->done_at_pointer,    &cfg->client_ref_pointer};
    for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++) {
        free(*ptrs[i]);
        *ptrs[i] = NULL;
    }
    for (int s = 0; s < DLR_STATUS_COUNT; s++) {
        for (char **v = cfg->statuses[s]; v && *v; v++)
            free(*v);
        free(cfg->statuses[s]);
        cfg->statuses[s] = NULL;
    }
}

static int get_pointer(const json_t *obj, const char *key, const char *dflt, char **out,
                       char *errstr, size_t errstr_size)
{
    const json_t *v = json_object_get(obj, key);
    const char *s = dflt;
    if (v) {
        if (!json_is_string(v))
            return dlr_fail(errstr, errstr_size, "dlr.%s: must be a string", key);
        s = json_string_value(v);
        if ((s[0] && s[0] != '/') || strlen(s) > 256)
            return dlr_fail(errstr, errstr_size,
                            "dlr.%s: \"%s\" is not a JSON pointer (\"\" or \"/...\")", key, s);
    }
    if (!(*out = strdup(s)))
        return dlr_fail(errstr, errstr_size, "dlr.%s: out of memory", key);
    return 0;
}

/* The values of status @p s: from @p list (a JSON array) or @p dflt (NULL-terminated). */
static int set_values(dlr_generic_cfg_t *cfg, int s, const json_t *list, const char *const *dflt,
                      char *errstr, size_t errstr_size)
{
    size_t n = list ? json_array_size(list) : 0;
    if (!list)
        while (dflt[n])
            n++;
    if (n > STATUS_VALUES_MAX)
        return dlr_fail(errstr, errstr_size, "dlr.statuses.%s: more than %d values",
                        dlr_status_name((dlr_status_t)s), STATUS_VALUES_MAX);
    if (!(cfg->statuses[s] = calloc(n + 1, sizeof(char *))))
        return dlr_fail(errstr, errstr_size, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *v = dflt ? dflt[i] : NULL;
        if (list) {
            const json_t *e = json_array_get(list, i);
            if (!json_is_string(e) || json_string_length(e) == 0 ||
                json_string_length(e) > DLR_STATUS_MAX)
                return dlr_fail(errstr, errstr_size,
                                "dlr.statuses.%s[%zu]: must be a string of 1 to %d bytes",
                                dlr_status_name((dlr_status_t)s), i, DLR_STATUS_MAX);
            v = json_string_value(e);
        }
        for (int o = 0; o < DLR_STATUS_COUNT; o++)
            for (char **w = cfg->statuses[o]; w && *w; w++)
                if (strcmp(*w, v) == 0)
                    return dlr_fail(
                        errstr, errstr_size, "dlr.statuses: \"%s\" is listed for %s and %s", v,
                        dlr_status_name((dlr_status_t)o), dlr_status_name((dlr_status_t)s));
        if (!(cfg->statuses[s][i] = strdup(v)))
            return dlr_fail(errstr, errstr_size, "out of memory");
    }
    return 0;
}

static int get_statuses(const json_t *obj, dlr_generic_cfg_t *cfg, char *errstr, size_t errstr_size)
{
    static const char *const sent[] = {"sent", "accepted", "queued", NULL};
    const json_t *given = json_object_get(obj, "statuses");
    const char *key;
    const json_t *v;
    if (given && !json_is_object(given))
        return dlr_fail(errstr, errstr_size, "dlr.statuses: must be an object");
    if (given) {
        json_object_foreach((json_t *)given, key, v)
        {
            bool known = false;
            for (int s = 0; s < DLR_STATUS_COUNT; s++)
                known |= s != DLR_STATUS_UNKNOWN && strcmp(key, dlr_status_name(s)) == 0;
            if (!known)
                return dlr_fail(errstr, errstr_size,
                                "dlr.statuses.%s: not a status (delivered, undelivered, expired, "
                                "rejected, failed, sent, buffered)",
                                key);
            if (!json_is_array(v))
                return dlr_fail(errstr, errstr_size, "dlr.statuses.%s: must be an array", key);
        }
    }
    for (int s = 0; s < DLR_STATUS_COUNT; s++) {
        if (s == DLR_STATUS_UNKNOWN)
            continue;
        const char *self[] = {dlr_status_name((dlr_status_t)s), NULL};
        const json_t *list = given ? json_object_get(given, dlr_status_name(s)) : NULL;
        static const char *const none[] = {NULL};
        const char *const *dflt = given ? none : s == DLR_STATUS_SENT ? sent : self;
        if (set_values(cfg, s, list, list ? NULL : dflt, errstr, errstr_size) != 0)
            return -1;
    }
    return 0;
}

int dlr_generic_cfg_parse(const json_t *obj, dlr_generic_cfg_t *cfg, char *errstr,
                          size_t errstr_size)
{
    memset(cfg, 0, sizeof(*cfg));
    if (get_pointer(obj, "results_pointer", "", &cfg->results_pointer, errstr, errstr_size) ||
        get_pointer(obj, "message_id_pointer", "/id", &cfg->message_id_pointer, errstr,
                    errstr_size) ||
        get_pointer(obj, "status_pointer", "/status", &cfg->status_pointer, errstr, errstr_size) ||
        get_pointer(obj, "to_pointer", "/to", &cfg->to_pointer, errstr, errstr_size) ||
        get_pointer(obj, "error_code_pointer", "/error_code", &cfg->error_code_pointer, errstr,
                    errstr_size) ||
        get_pointer(obj, "error_message_pointer", "/error_message", &cfg->error_message_pointer,
                    errstr, errstr_size) ||
        get_pointer(obj, "network_code_pointer", "/network_code", &cfg->network_code_pointer,
                    errstr, errstr_size) ||
        get_pointer(obj, "done_at_pointer", "/timestamp", &cfg->done_at_pointer, errstr,
                    errstr_size) ||
        get_pointer(obj, "client_ref_pointer", "/client_ref", &cfg->client_ref_pointer, errstr,
                    errstr_size))
        goto fail;
    if (!cfg->message_id_pointer[0] || !cfg->status_pointer[0]) {
        dlr_fail(errstr, errstr_size, "dlr.%s: must point inside a report",
                 cfg->message_id_pointer[0] ? "status_pointer" : "message_id_pointer");
        goto fail;
    }
    const json_t *c = json_object_get(obj, "message_id_case");
    const char *cs = json_is_string(c) ? json_string_value(c) : c ? "" : "preserve";
    if (strcmp(cs, "preserve") == 0)
        cfg->id_case = DLR_ID_CASE_PRESERVE;
    else if (strcmp(cs, "lower") == 0)
        cfg->id_case = DLR_ID_CASE_LOWER;
    else if (strcmp(cs, "upper") == 0)
        cfg->id_case = DLR_ID_CASE_UPPER;
    else {
        dlr_fail(errstr, errstr_size, "dlr.message_id_case: must be preserve, lower or upper");
        goto fail;
    }
    if (get_statuses(obj, cfg, errstr, errstr_size) != 0)
        goto fail;
    return 0;
fail:
    dlr_generic_cfg_clear(cfg);
    return -1;
}

/* The text of a string or integer at @p ptr ("" when not read), false when absent or another
 * type. */
static bool scalar_at(const json_t *report, const char *ptr, char *buf, size_t size)
{
    buf[0] = '\0';
    if (!ptr[0])
        return false;
    const json_t *v = nudgel_gateway_json_pointer(report, ptr);
    if (json_is_string(v)) {
        if (json_string_length(v) >= size)
            return false;
        memcpy(buf, json_string_value(v), json_string_length(v) + 1);
        return strlen(buf) == json_string_length(v); /* no NUL inside */
    }
    if (json_is_integer(v)) {
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
        return true;
    }
    return false;
}

static dlr_status_t map_status(const dlr_generic_cfg_t *cfg, const char *value)
{
    for (int s = 0; s < DLR_STATUS_COUNT; s++)
        for (char **w = cfg->statuses[s]; w && *w; w++)
            if (strcmp(*w, value) == 0)
                return (dlr_status_t)s;
    return DLR_STATUS_UNKNOWN;
}

static int read_report(const dlr_generic_cfg_t *cfg, const json_t *item, const char *where,
                       dlr_report_t *r, char *errstr, size_t errstr_size)
{
    char buf[512], why[128];
    dlr_report_init(r);
    if (!json_is_object(item))
        return dlr_fail(errstr, errstr_size, "%s: not an object", where);
    if (!scalar_at(item, cfg->message_id_pointer, buf, sizeof(buf)))
        return dlr_fail(errstr, errstr_size, "%s%s: no message id (a string or integer)", where,
                        cfg->message_id_pointer);
    if (dlr_id_normalise(buf, strlen(buf), cfg->id_case, r->gateway_message_id, why, sizeof(why)) !=
        0)
        return dlr_fail(errstr, errstr_size, "%s%s: %s", where, cfg->message_id_pointer, why);
    if (!scalar_at(item, cfg->status_pointer, buf, sizeof(buf)) || !buf[0] ||
        strlen(buf) > DLR_STATUS_MAX)
        return dlr_fail(errstr, errstr_size,
                        "%s%s: no status (a string or integer of 1 to %d "
                        "bytes)",
                        where, cfg->status_pointer, DLR_STATUS_MAX);
    r->status = map_status(cfg, buf);
    dlr_copy_text(r->raw_status, sizeof(r->raw_status), buf, strlen(buf));
    if (scalar_at(item, cfg->to_pointer, buf, sizeof(buf)) && strlen(buf) <= DLR_TO_MAX)
        dlr_copy_text(r->to, sizeof(r->to), buf, strlen(buf));
    if (scalar_at(item, cfg->network_code_pointer, buf, sizeof(buf)))
        dlr_take_network_code(r, buf);
    if (scalar_at(item, cfg->done_at_pointer, buf, sizeof(buf)))
        dlr_take_time(r, buf);
    if (scalar_at(item, cfg->error_code_pointer, buf, sizeof(buf)) && buf[0]) {
        r->has_error = true;
        dlr_copy_text(r->error_code, sizeof(r->error_code), buf, strlen(buf));
        if (scalar_at(item, cfg->error_message_pointer, buf, sizeof(buf)))
            dlr_copy_text(r->error_message, sizeof(r->error_message), buf, strlen(buf));
    }
    if (scalar_at(item, cfg->client_ref_pointer, buf, sizeof(buf)))
        dlr_take_uuid(r, buf);
    return 0;
}

int dlr_parse_generic(const dlr_generic_cfg_t *cfg, const char *body, size_t len,
                      dlr_report_t out[DLR_BATCH_MAX], size_t *n, char *errstr, size_t errstr_size)
{
    json_error_t jerr;
    int rc = -1;
    *n = 0;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        dlr_fail(errstr, errstr_size, "body: not JSON (line %d column %d: %s)", jerr.line,
                 jerr.column, jerr.text);
        goto out;
    }
    if (!cfg->results_pointer[0]) {
        if (read_report(cfg, root, "", &out[0], errstr, errstr_size) != 0)
            goto out;
        *n = 1;
        rc = 0;
        goto out;
    }
    const json_t *list = nudgel_gateway_json_pointer(root, cfg->results_pointer);
    if (!json_is_array(list)) {
        dlr_fail(errstr, errstr_size, "%s: missing or not an array", cfg->results_pointer);
        goto out;
    }
    size_t count = json_array_size(list);
    if (count == 0 || count > DLR_BATCH_MAX) {
        dlr_fail(errstr, errstr_size, "%s: %zu reports (1 to %d are taken)", cfg->results_pointer,
                 count, DLR_BATCH_MAX);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        char where[300];
        snprintf(where, sizeof(where), "%s/%zu", cfg->results_pointer, i);
        if (read_report(cfg, json_array_get(list, i), where, &out[i], errstr, errstr_size) != 0)
            goto out;
    }
    *n = count;
    rc = 0;
out:
    json_decref(root);
    return rc;
}
