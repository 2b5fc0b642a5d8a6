/*
 * dialect_generic.c — a configurable JSON REST carrier (dialect "generic"),
 * for gateways that have no dialect of their own.
 *
 * Facts it follows: the shape of REST SMS APIs such as Twilio's (POST one
 * message, answer 201 with an id, a status and a segment count; statuses
 * such as queued, sent, failed) and the idea of Kannel's generic HTTP SMSC
 * (the success, permanent-failure and temporary-failure answers are
 * configured, not coded). Concretely:
 * - Send: POST <base_url><path> (default path "/messages") with the JSON
 *   body {"to","from","text","client_ref","callback_url"} ("to" in E.164
 *   with the "+", "from" and "callback_url" only when known) and the header
 *   "<auth_header>: <auth_scheme> <key>" (default "Authorization: Bearer";
 *   an empty auth_scheme sends the key alone).
 * - The gateway is expected to dedupe client_ref, so a resubmission after a
 *   lost answer is safe (the dialect dedupes).
 * - Answers are read through RFC 6901 JSON pointers: message_id_pointer
 *   (default /id), status_pointer (/status; "" means every 2xx with an id
 *   is SENT), segments_pointer (/segments), error_code_pointer
 *   (/error/code), error_message_pointer (/error/message). A status is
 *   looked up in success_statuses (default accepted, queued, sent),
 *   permanent_statuses and transient_statuses (default none); a permanent
 *   status or error code in rejected_codes (default invalid_number,
 *   blacklisted, invalid_sender, dnd) is "rejected", not "failed". A 4xx
 *   whose error code is in transient_statuses is TRANSIENT.
 * - credential_statuses (default [401, 403]): the HTTP statuses (400-499,
 *   not 429) that mean the gateway refused our key. Such an answer is a
 *   fault of the gateway, not of the message: TRANSIENT with
 *   credentials_refused set. [] when the gateway answers per-message
 *   refusals with one of them.
 */
#include <stdlib.h>
#include <string.h>

#include "dialect.h"

#define GENERIC_CREDENTIAL_STATUSES_MAX 16

typedef struct generic_cfg {
    char *auth_header, *auth_scheme;
    char *message_id_pointer, *status_pointer, *segments_pointer;
    char *error_code_pointer, *error_message_pointer;
    dialect_list_t success, permanent, transient, rejected_codes;
    int credential_statuses[GENERIC_CREDENTIAL_STATUSES_MAX];
    size_t credential_count;
} generic_cfg_t;

static const char *const generic_keys[] = {"auth_header",
                                           "auth_scheme",
                                           "message_id_pointer",
                                           "status_pointer",
                                           "segments_pointer",
                                           "error_code_pointer",
                                           "error_message_pointer",
                                           "success_statuses",
                                           "permanent_statuses",
                                           "transient_statuses",
                                           "rejected_codes",
                                           "credential_statuses",
                                           NULL};

static void generic_free(void *cfg)
{
    generic_cfg_t *g = cfg;
    if (!g)
        return;
    free(g->auth_header);
    free(g->auth_scheme);
    free(g->message_id_pointer);
    free(g->status_pointer);
    free(g->segments_pointer);
    free(g->error_code_pointer);
    free(g->error_message_pointer);
    dialect_list_free(&g->success);
    dialect_list_free(&g->permanent);
    dialect_list_free(&g->transient);
    dialect_list_free(&g->rejected_codes);
    free(g);
}

/* No status in two lists: the answer would have two meanings. */
static int check_lists(const dialect_ctx_t *c, const generic_cfg_t *g)
{
    if (g->status_pointer[0] && g->success.n == 0) {
        dialect_cerr(c, "success_statuses", "must not be empty when status_pointer is set");
        return -1;
    }
    for (size_t i = 0; i < g->success.n; i++)
        if (dialect_list_has(&g->permanent, g->success.v[i]) ||
            dialect_list_has(&g->transient, g->success.v[i])) {
            dialect_cerr(c, "success_statuses", "\"%s\" is also in another status list",
                         g->success.v[i]);
            return -1;
        }
    for (size_t i = 0; i < g->permanent.n; i++)
        if (dialect_list_has(&g->transient, g->permanent.v[i])) {
            dialect_cerr(c, "permanent_statuses", "\"%s\" is also in transient_statuses",
                         g->permanent.v[i]);
            return -1;
        }
    return 0;
}

/* credential_statuses: HTTP 4xx statuses (not 429), default [401, 403]. */
static int get_credential_statuses(const dialect_ctx_t *c, const json_t *obj, generic_cfg_t *g)
{
    const json_t *v = json_object_get(obj, "credential_statuses");
    size_t i;
    const json_t *item;
    if (!v) {
        g->credential_statuses[0] = 401;
        g->credential_statuses[1] = 403;
        g->credential_count = 2;
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) > GENERIC_CREDENTIAL_STATUSES_MAX) {
        dialect_cerr(c, "credential_statuses", "must be an array of at most %d HTTP statuses",
                     GENERIC_CREDENTIAL_STATUSES_MAX);
        return -1;
    }
    json_array_foreach(v, i, item)
    {
        json_int_t st = json_is_integer(item) ? json_integer_value(item) : 0;
        if (st < 400 || st > 499 || st == 429) {
            dialect_cerr(c, "credential_statuses",
                         "item %zu must be an HTTP status 400-499 but 429", i);
            return -1;
        }
        g->credential_statuses[g->credential_count++] = (int)st;
    }
    return 0;
}

static int generic_parse(const dialect_ctx_t *c, const json_t *obj, void **cfg)
{
    static const char *const ok[] = {"accepted", "queued", "sent"};
    static const char *const rej[] = {"invalid_number", "blacklisted", "invalid_sender", "dnd"};
    generic_cfg_t *g = calloc(1, sizeof(*g));
    int rc = -1;

    *cfg = NULL;
    if (!g)
        goto oom;
    if (dialect_get_str(c, obj, "auth_header", 64, false, false, &g->auth_header) < 0 ||
        dialect_get_str(c, obj, "auth_scheme", 32, true, false, &g->auth_scheme) < 0)
        goto out;
    if (!g->auth_header && !(g->auth_header = dialect_strdup("Authorization")))
        goto oom;
    if (!g->auth_scheme && !(g->auth_scheme = dialect_strdup("Bearer")))
        goto oom;
    if (!dialect_token_valid(g->auth_header)) {
        dialect_cerr(c, "auth_header", "\"%s\" is not an HTTP header name", g->auth_header);
        goto out;
    }
    if (g->auth_scheme[0] && !dialect_token_valid(g->auth_scheme)) {
        dialect_cerr(c, "auth_scheme", "\"%s\" is not an HTTP auth scheme", g->auth_scheme);
        goto out;
    }
    if (dialect_get_pointer(c, obj, "message_id_pointer", "/id", &g->message_id_pointer) < 0 ||
        dialect_get_pointer(c, obj, "status_pointer", "/status", &g->status_pointer) < 0 ||
        dialect_get_pointer(c, obj, "segments_pointer", "/segments", &g->segments_pointer) < 0 ||
        dialect_get_pointer(c, obj, "error_code_pointer", "/error/code", &g->error_code_pointer) <
            0 ||
        dialect_get_pointer(c, obj, "error_message_pointer", "/error/message",
                            &g->error_message_pointer) < 0)
        goto out;
    if (g->message_id_pointer[0] == '\0') {
        dialect_cerr(c, "message_id_pointer", "must point inside the answer");
        goto out;
    }
    if (dialect_get_list(c, obj, "success_statuses", ok, 3, &g->success) < 0 ||
        dialect_get_list(c, obj, "permanent_statuses", NULL, 0, &g->permanent) < 0 ||
        dialect_get_list(c, obj, "transient_statuses", NULL, 0, &g->transient) < 0 ||
        dialect_get_list(c, obj, "rejected_codes", rej, 4, &g->rejected_codes) < 0)
        goto out;
    if (check_lists(c, g) < 0 || get_credential_statuses(c, obj, g) < 0)
        goto out;
    *cfg = g;
    g = NULL;
    rc = 0;
    goto out;
oom:
    dialect_cerr(c, NULL, "out of memory");
out:
    generic_free(g);
    return rc;
}

/* {"to","from","text","client_ref","callback_url"}, compact. */
static char *generic_body(const nudgel_gateway_message_t *m, const char *from, size_t *len)
{
    json_t *root = json_object();
    char *body = NULL;
    int rc = 0;
    if (!root)
        return NULL;
    rc |= dialect_json_set_str(root, "to", m->to);
    if (from)
        rc |= dialect_json_set_str(root, "from", from);
    rc |= dialect_json_set_str(root, "text", m->text);
    rc |= dialect_json_set_str(root, "client_ref", m->client_ref);
    if (m->callback_url)
        rc |= dialect_json_set_str(root, "callback_url", m->callback_url);
    if (rc == 0)
        body = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (body)
        *len = strlen(body);
    return body;
}

static int generic_build(const void *cfg, const char *key, const nudgel_gateway_message_t *msg,
                         const char *from, nudgel_gateway_request_t *out)
{
    const generic_cfg_t *g = cfg;
    out->content_type = "application/json";
    out->body = generic_body(msg, from, &out->body_len);
    if (dialect_add_header(out,
                           dialect_header_line(g->auth_header,
                                               g->auth_scheme[0] ? g->auth_scheme : NULL, key)) < 0)
        return -1;
    return out->body ? 0 : -1;
}

/*
 * A 2xx: the status at status_pointer is looked up in the configured lists;
 * with no status_pointer every 2xx with a message id is SENT. A 2xx without
 * a message id or with an unknown status is unreadable (a resubmission is
 * safe: the gateway dedupes client_ref).
 */
static void generic_classify(const void *cfg, const json_t *root, nudgel_gateway_outcome_t *o)
{
    const generic_cfg_t *g = cfg;
    char status[DIALECT_STATUS_MAX + 1] = "";
    char id[NUDGEL_GATEWAY_CLIENT_REF_MAX];
    const json_t *v;
    if (g->status_pointer[0]) {
        if (!dialect_scalar_text(dialect_pointer_get(root, g->status_pointer), status,
                                 sizeof(status))) {
            dialect_unreadable(o, "no status at the status pointer");
            return;
        }
        if (dialect_list_has(&g->permanent, status)) {
            char code[64] = "";
            dialect_scalar_text(dialect_pointer_get(root, g->error_code_pointer), code,
                                sizeof(code));
            dialect_permanent(o, dialect_list_has(&g->rejected_codes, status) ||
                                     dialect_list_has(&g->rejected_codes, code));
            dialect_error(o, code[0] ? code : status, "status \"%s\"", status);
            return;
        }
        if (dialect_list_has(&g->transient, status)) {
            dialect_transient(o);
            dialect_error(o, status, "status \"%s\"", status);
            return;
        }
        if (!dialect_list_has(&g->success, status)) {
            dialect_unreadable(o, "a status in none of the configured lists");
            return;
        }
    }
    if (!dialect_scalar_text(dialect_pointer_get(root, g->message_id_pointer), id, sizeof(id)) ||
        !id[0]) {
        dialect_unreadable(o, "no message id at the message id pointer");
        return;
    }
    dialect_sent(o, id);
    v = dialect_pointer_get(root, g->segments_pointer);
    if (g->segments_pointer[0] && json_is_integer(v) && json_integer_value(v) > 0 &&
        json_integer_value(v) < 1000)
        o->segments = (uint32_t)json_integer_value(v);
}

/* The code and text at the configured error pointers. */
static void generic_error_detail(const void *cfg, const json_t *root, char *code, size_t code_size,
                                 char *msg, size_t msg_size)
{
    const generic_cfg_t *g = cfg;
    if (!root)
        return;
    dialect_scalar_text(dialect_pointer_get(root, g->error_code_pointer), code, code_size);
    dialect_scalar_text(dialect_pointer_get(root, g->error_message_pointer), msg, msg_size);
}

/* A 4xx: transient when its code is a transient status, else rejected or failed. */
static void generic_refused(const void *cfg, nudgel_gateway_outcome_t *o)
{
    const generic_cfg_t *g = cfg;
    if (dialect_list_has(&g->transient, o->error_code))
        dialect_transient(o);
    else
        dialect_permanent(o, dialect_list_has(&g->rejected_codes, o->error_code));
}

static bool generic_credentials_refused(const void *cfg, int status)
{
    const generic_cfg_t *g = cfg;
    for (size_t i = 0; i < g->credential_count; i++)
        if (g->credential_statuses[i] == status)
            return true;
    return false;
}

const dialect_t dialect_generic = {
    .name = "generic",
    .default_path = "/messages",
    .dedupes = true,
    .keys = generic_keys,
    .parse = generic_parse,
    .build = generic_build,
    .classify = generic_classify,
    .error_detail = generic_error_detail,
    .refused = generic_refused,
    .credentials_refused = generic_credentials_refused,
    .free_cfg = generic_free,
};
