/*
 * dialect_africastalking.c — Africa's Talking, the aggregator for Kenya,
 * Nigeria and Uganda (dialect "africastalking").
 *
 * Facts it follows (from AT's public API docs and SDKs):
 * - Send: POST <base_url>/version1/messaging (sandbox host
 *   api.sandbox.africastalking.com), body application/x-www-form-urlencoded
 *   with username (required, the "username" key of the gateways file), to
 *   (E.164), message and from (sender id or short code); headers
 *   "apiKey: <key>" and "Accept: application/json". Success is HTTP 201.
 * - Answer: {"SMSMessageData":{"Message":"Sent to 1/1 Total Cost: KES
 *   0.8000","Recipients":[{"statusCode":101,"number":"+2547...",
 *   "cost":"KES 0.8000","status":"Success","messageId":"ATXid_..."}]}}.
 *   Per-recipient statusCode: 100 Processed, 101 Sent, 102 Queued; 401
 *   RiskHold, 402 InvalidSenderId, 403 InvalidPhoneNumber, 404
 *   UnsupportedNumberType, 405 InsufficientBalance, 406 UserInBlacklist,
 *   407 CouldNotRoute, 409 DoNotDisturbRejection (4xx: permanent for that
 *   message); 500 InternalServerError, 501 GatewayError, 502
 *   RejectedByGateway (5xx: temporary). The list is unverified, so any
 *   other 4xx is permanent and any other 5xx transient.
 * - No client reference field: a resubmission after a lost answer is a
 *   second SMS (the dialect does not dedupe; the claim protocol matters
 *   most here). The DLR URL is set in the AT dashboard, so the message's
 *   callback_url is not sent. Error bodies carry nothing we read: a non-2xx
 *   is described by its HTTP status. An HTTP 401 (or 403) is AT refusing
 *   the apiKey or username, not a recipient (those come per recipient in a
 *   201): a fault of the gateway (gateway.c, credentials_refused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect.h"

typedef struct at_cfg {
    char *username;
} at_cfg_t;

static const char *const at_keys[] = {"username", NULL};

static void at_free(void *cfg)
{
    at_cfg_t *at = cfg;
    if (!at)
        return;
    free(at->username);
    free(at);
}

static int at_parse(const dialect_ctx_t *c, const json_t *obj, void **cfg)
{
    at_cfg_t *at = calloc(1, sizeof(*at));
    *cfg = NULL;
    if (!at) {
        dialect_cerr(c, NULL, "out of memory");
        return -1;
    }
    if (dialect_get_str(c, obj, "username", 128, false, true, &at->username) < 0) {
        at_free(at);
        return -1;
    }
    *cfg = at;
    return 0;
}

/* username=..&to=..&message=..[&from=..], every value form-encoded. */
static char *at_body(const at_cfg_t *at, const nudgel_gateway_message_t *m, const char *from,
                     size_t *len)
{
    char *u = nudgel_gateway_form_encode(at->username, strlen(at->username));
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

static int at_build(const void *cfg, const char *key, const nudgel_gateway_message_t *msg,
                    const char *from, nudgel_gateway_request_t *out)
{
    out->content_type = "application/x-www-form-urlencoded";
    out->body = at_body(cfg, msg, from, &out->body_len);
    if (dialect_add_header(out, dialect_header_line("apiKey", NULL, key)) < 0)
        return -1;
    return out->body ? 0 : -1;
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
 * A 2xx: Recipients[0].statusCode decides. 100 Processed, 101 Sent, 102
 * Queued → SENT; 401-409 → PERMANENT, of which 402 InvalidSenderId, 403
 * InvalidPhoneNumber, 404 UnsupportedNumberType, 406 UserInBlacklist and
 * 409 DoNotDisturbRejection are "rejected" and 401 RiskHold, 405
 * InsufficientBalance, 407 CouldNotRoute are "failed"; 500-502 → TRANSIENT.
 *
 * Trade-off: AT takes no client reference, so a TRANSIENT outcome that is
 * resubmitted may become a second SMS if AT did take the first. An
 * unreadable 2xx body is still TRANSIENT (never assume a send we cannot
 * prove) but carries maybe_accepted, so the worker can choose to end such
 * an AT message instead of resubmitting it.
 */
static void at_classify(const void *cfg, const json_t *root, nudgel_gateway_outcome_t *o)
{
    const json_t *data = json_object_get(root, "SMSMessageData");
    const json_t *recips = json_object_get(data, "Recipients");
    char code[32];
    if (!json_is_array(recips)) {
        dialect_unreadable(o, "no SMSMessageData.Recipients array");
        return;
    }
    if (json_array_size(recips) == 0) {
        /* AT answers a request-level refusal (e.g. InvalidSenderId) with
           an empty Recipients list and the reason in Message. */
        const char *m = json_string_value(json_object_get(data, "Message"));
        if (!m || !*m) {
            dialect_unreadable(o, "empty Recipients and no Message");
            return;
        }
        bool rej = strcmp(m, "InvalidSenderId") == 0 || strcmp(m, "InvalidPhoneNumber") == 0 ||
                   strcmp(m, "UserInBlacklist") == 0 || strcmp(m, "DoNotDisturbRejection") == 0;
        dialect_permanent(o, rej);
        dialect_error(o, m, "Africa's Talking sent to no recipient: %s", m);
        return;
    }
    const json_t *r = json_array_get(recips, 0);
    const json_t *sc = json_object_get(r, "statusCode");
    const char *status = json_string_value(json_object_get(r, "status"));
    json_int_t c;
    if (json_is_integer(sc)) {
        c = json_integer_value(sc);
    } else if (json_is_string(sc) && dialect_scalar_text(sc, code, sizeof(code)) && code[0] &&
               strspn(code, "0123456789") == strlen(code) && strlen(code) < 6) {
        c = strtol(code, NULL, 10);
    } else {
        dialect_unreadable(o, "Recipients[0].statusCode is not a number");
        return;
    }
    snprintf(code, sizeof(code), "%" JSON_INTEGER_FORMAT, c);
    const char *name = status && *status ? status : code;
    if (c >= 100 && c <= 102) {
        const char *id = json_string_value(json_object_get(r, "messageId"));
        if (!id || !*id || strcmp(id, "None") == 0) {
            dialect_unreadable(o, "an accepted recipient without messageId");
            return;
        }
        dialect_sent(o, id);
        parse_cost(o, json_string_value(json_object_get(r, "cost")));
    } else if (c >= 401 && c <= 409) {
        dialect_permanent(o, c == 402 || c == 403 || c == 404 || c == 406 || c == 409);
        dialect_error(o, name, "Africa's Talking statusCode %s (%s)", code, name);
    } else if (c >= 500 && c <= 599) {
        dialect_transient(o);
        dialect_error(o, name, "Africa's Talking statusCode %s (%s)", code, name);
    } else if (c >= 400 && c <= 499) {
        dialect_permanent(o, false);
        dialect_error(o, name, "Africa's Talking statusCode %s (%s), not a documented code", code,
                      name);
    } else {
        dialect_unreadable(o, "an undocumented Recipients[0].statusCode");
    }
}

/* AT error bodies carry no code we rely on: the HTTP status describes them. */
static void at_error_detail(const void *cfg, const json_t *root, char *code, size_t code_size,
                            char *msg, size_t msg_size)
{
}

/* GET <base_url>/version1/user?username=<u>: the account's data, {"UserData":{"balance":..}}. */
static int at_probe(const void *cfg, const char *base_url, const char *key,
                    nudgel_gateway_request_t *out)
{
    const at_cfg_t *at = cfg;
    char *u = nudgel_gateway_form_encode(at->username, strlen(at->username));
    int rc = -1;
    if (u) {
        size_t n = strlen(base_url) + strlen(u) + sizeof("/version1/user?username=");
        if ((out->url = malloc(n))) {
            snprintf(out->url, n, "%s/version1/user?username=%s", base_url, u);
            rc = dialect_add_header(out, dialect_header_line("apiKey", NULL, key));
        }
    }
    free(u);
    return rc;
}

const dialect_t dialect_africastalking = {
    .name = "africastalking",
    .default_path = "/version1/messaging",
    .dedupes = false,
    .keys = at_keys,
    .parse = at_parse,
    .build = at_build,
    .classify = at_classify,
    .error_detail = at_error_detail,
    .refused = dialect_refused_permanent,
    .probe = at_probe,
    .free_cfg = at_free,
};
