/*
 * dialect_infobip.c — Infobip's SMS API v2 (dialect "infobip").
 *
 * Facts it follows (from Infobip's public API docs and SDKs):
 * - Send: POST <base_url>/sms/2/text/advanced (base_url is the account's
 *   https://<base>.api.infobip.com), header "Authorization: App <key>",
 *   JSON body {"messages":[{"from","destinations":[{"to","messageId"}],
 *   "text","notifyUrl","notifyContentType":"application/json",
 *   "callbackData","validityPeriod":<minutes>}]}. Numbers are written
 *   without the "+". validityPeriod is whole minutes; Infobip does not
 *   support more than 48 h (2880), so larger values are sent as 2880.
 * - Our message id goes in destinations[0].messageId: a client-supplied
 *   messageId is Infobip's idempotency handle, so a resubmission after a
 *   lost answer is deduped (the dialect dedupes). It is also sent as
 *   callbackData, which comes back on the DLR.
 * - Answer: {"bulkId","messages":[{"to","status":{"groupId":1,
 *   "groupName":"PENDING","id":26,"name":"PENDING_ACCEPTED",
 *   "description"},"messageId","smsCount":1}]}. It is an acceptance,
 *   never an outcome. Status groups: 1 PENDING, 2 UNDELIVERABLE,
 *   3 DELIVERED, 4 EXPIRED, 5 REJECTED.
 * - Error answers (4xx, 5xx) carry {"requestError":{"serviceException":
 *   {"messageId":"UNAUTHORIZED","text":"..."}}}: the code and text of the
 *   outcome. Every 4xx but 429 is a permanent failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect.h"

static const char *const infobip_keys[] = {NULL};

static int infobip_parse(const dialect_ctx_t *c, const json_t *obj, void **cfg)
{
    *cfg = NULL; /* nothing beyond the common keys */
    return 0;
}

static void infobip_free(void *cfg) {}

/* {"messages":[{"from","destinations":[{"to","messageId"}],"text",...}]} */
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
    rc |= dialect_json_set_str(dest, "messageId", m->client_ref);
    rc |= json_array_append_new(dests, dest);
    if (from)
        rc |= dialect_json_set_str(msg, "from", from);
    rc |= json_object_set_new(msg, "destinations", dests);
    rc |= dialect_json_set_str(msg, "text", m->text);
    if (m->callback_url) {
        rc |= dialect_json_set_str(msg, "notifyUrl", m->callback_url);
        rc |= dialect_json_set_str(msg, "notifyContentType", "application/json");
    }
    rc |= dialect_json_set_str(msg, "callbackData", m->client_ref);
    if (m->validity_minutes)
        rc |= json_object_set_new(
            msg, "validityPeriod",
            json_integer(m->validity_minutes < NUDGEL_GATEWAY_VALIDITY_MINUTES_MAX
                             ? m->validity_minutes
                             : NUDGEL_GATEWAY_VALIDITY_MINUTES_MAX));
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

static int infobip_build(const void *cfg, const char *key, const nudgel_gateway_message_t *msg,
                         const char *from, nudgel_gateway_request_t *out)
{
    out->content_type = "application/json";
    out->body = infobip_body(msg, from, &out->body_len);
    if (dialect_add_header(out, dialect_header_line("Authorization", "App", key)) < 0)
        return -1;
    return out->body ? 0 : -1;
}

/* REJECTED statuses that are about the number or sender: "rejected". */
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
 * A 2xx: messages[0].status.groupId 1 PENDING (and 3 DELIVERED) → SENT;
 * 5 REJECTED → PERMANENT; 2 UNDELIVERABLE, 4 EXPIRED → PERMANENT failed.
 * Anything else is unreadable: resubmitting is safe because Infobip dedupes
 * our messageId.
 */
static void infobip_classify(const void *cfg, const json_t *root, nudgel_gateway_outcome_t *o)
{
    const json_t *m = json_array_get(json_object_get(root, "messages"), 0);
    const json_t *st = json_object_get(m, "status");
    const json_t *gid = json_object_get(st, "groupId");
    const char *name = json_string_value(json_object_get(st, "name"));
    const char *desc = json_string_value(json_object_get(st, "description"));
    if (!json_is_integer(gid)) {
        dialect_unreadable(o, "no messages[0].status.groupId");
        return;
    }
    json_int_t smscount = json_integer_value(json_object_get(m, "smsCount"));
    switch (json_integer_value(gid)) {
    case 1:
    case 3:
        dialect_sent(o, json_string_value(json_object_get(m, "messageId")));
        if (smscount > 0 && smscount < 1000)
            o->segments = (uint32_t)smscount;
        return;
    case 5:
        dialect_permanent(o, infobip_rejected(name));
        break;
    case 2:
    case 4:
        dialect_permanent(o, false);
        break;
    default:
        dialect_unreadable(o, "an undocumented status groupId");
        return;
    }
    dialect_error(o, name ? name : "REJECTED", "Infobip %s: %s", name ? name : "status",
                  desc ? desc : "(no description)");
}

/* requestError.serviceException: messageId is the code, text the message. */
static void infobip_error_detail(const void *cfg, const json_t *root, char *code, size_t code_size,
                                 char *msg, size_t msg_size)
{
    const json_t *se = json_object_get(json_object_get(root, "requestError"), "serviceException");
    dialect_scalar_text(json_object_get(se, "messageId"), code, code_size);
    dialect_scalar_text(json_object_get(se, "text"), msg, msg_size);
}

/* GET <base_url>/account/1/balance: Infobip's account balance, {"balance":..,"currency":..}. */
static int infobip_probe(const void *cfg, const char *base_url, const char *key,
                         nudgel_gateway_request_t *out)
{
    size_t n = strlen(base_url) + sizeof("/account/1/balance");
    if (!(out->url = malloc(n)))
        return -1;
    snprintf(out->url, n, "%s/account/1/balance", base_url);
    return dialect_add_header(out, dialect_header_line("Authorization", "App", key));
}

const dialect_t dialect_infobip = {
    .name = "infobip",
    .default_path = "/sms/2/text/advanced",
    .dedupes = true,
    .keys = infobip_keys,
    .parse = infobip_parse,
    .build = infobip_build,
    .classify = infobip_classify,
    .error_detail = infobip_error_detail,
    .refused = dialect_refused_permanent,
    .probe = infobip_probe,
    .free_cfg = infobip_free,
};
