/*
 * receipt_dlr_report.c — the pure half of nudgel/receipt_dlrs.h: a carrier
 * DLR v1 record parsed into its fixed-size struct, what it asks of a
 * receipt, the decision table (the C twin of nudgel.receipt_apply_report())
 * and the per-gateway expiry windows. The statements are receipt_dlrs.c.
 *
 * Text from outside (the record) is parsed into enums here, once; past this
 * point the updater decides by them.
 */
#include "nudgel/receipt_dlrs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nudgel/phone.h"
#include "nudgel/timeutil.h"
#include "nudgel/uuid.h"

static const char *const status_names[NUDGEL_DLR_STATUS_COUNT] = {
    [NUDGEL_DLR_SENT] = "sent",           [NUDGEL_DLR_BUFFERED] = "buffered",
    [NUDGEL_DLR_DELIVERED] = "delivered", [NUDGEL_DLR_UNDELIVERED] = "undelivered",
    [NUDGEL_DLR_EXPIRED] = "expired",     [NUDGEL_DLR_REJECTED] = "rejected",
    [NUDGEL_DLR_FAILED] = "failed",       [NUDGEL_DLR_UNKNOWN] = "unknown",
};

static const char *const outcome_names[NUDGEL_DLR_OUTCOME_COUNT] = {
    [NUDGEL_DLR_PENDING] = "pending", [NUDGEL_DLR_INTERMEDIATE] = "intermediate",
    [NUDGEL_DLR_APPLIED] = "applied", [NUDGEL_DLR_UNCHANGED] = "unchanged",
    [NUDGEL_DLR_REFUSED] = "refused", [NUDGEL_DLR_UNMATCHED] = "unmatched",
};

const char *nudgel_dlr_status_name(nudgel_dlr_status_t s)
{
    return (unsigned)s < NUDGEL_DLR_STATUS_COUNT ? status_names[s] : "unknown";
}

const char *nudgel_dlr_outcome_name(nudgel_dlr_outcome_t o)
{
    return (unsigned)o < NUDGEL_DLR_OUTCOME_COUNT ? outcome_names[o] : "unknown";
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (errstr_size)                                                                           \
            snprintf(errstr, errstr_size, __VA_ARGS__);                                            \
        err = NUDGEL_ERR_INVALID_FIELD;                                                            \
        goto out;                                                                                  \
    } while (0)

/* An optional string member into @p dst: -1 when present but not a string or too long. */
static int opt_str(const json_t *doc, const char *key, char *dst, size_t dst_size, bool required)
{
    const json_t *v = json_object_get(doc, key);
    dst[0] = '\0';
    if (!v)
        return required ? -1 : 0;
    if (!json_is_string(v) || json_string_length(v) >= dst_size ||
        strlen(json_string_value(v)) != json_string_length(v))
        return -1;
    if (required && json_string_length(v) == 0)
        return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static bool rfc3339_ok(const char *s)
{
    int64_t ms;
    return nudgel_rfc3339_parse(s, &ms) == 0;
}

/* A decimal that fits numeric(14,6): at most 8 integer digits; "" otherwise. */
static void price_text(const json_t *amount, char *dst, size_t dst_size)
{
    char buf[64] = "";
    if (json_is_string(amount))
        snprintf(buf, sizeof(buf), "%s", json_string_value(amount));
    else if (json_is_integer(amount))
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(amount));
    else if (json_is_real(amount))
        snprintf(buf, sizeof(buf), "%.6f", json_real_value(amount));
    const char *p = buf + (buf[0] == '-');
    size_t ints = strspn(p, "0123456789");
    size_t fracs = p[ints] == '.' ? strspn(p + ints + 1, "0123456789") : 0;
    bool ok = ints >= 1 && ints <= 8 &&
              (p[ints] == '\0' || (p[ints] == '.' && fracs >= 1 && p[ints + 1 + fracs] == '\0'));
    if (ok && fracs > 6) /* numeric(14,6) keeps six places: cut the text there */
        buf[(size_t)(p - buf) + ints + 7] = '\0';
    snprintf(dst, dst_size, "%s", ok ? buf : "");
}

nudgel_err_t nudgel_dlr_parse(const char *json, size_t len, nudgel_dlr_report_t *out, char *errstr,
                              size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_OK;
    json_error_t jerr;
    json_t *doc = NULL;
    char status[16];
    uint8_t uuid[16];

    memset(out, 0, sizeof(*out));
    out->error_permanent = -1;
    if (len > NUDGEL_DLR_MAX_BYTES) {
        if (errstr_size)
            snprintf(errstr, errstr_size, "(record): larger than %d bytes", NUDGEL_DLR_MAX_BYTES);
        return NUDGEL_ERR_TOO_LARGE;
    }
    doc = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        if (errstr_size)
            snprintf(errstr, errstr_size, "(json): %s", doc ? "not an object" : jerr.text);
        json_decref(doc);
        return NUDGEL_ERR_INVALID_JSON;
    }
    if (opt_str(doc, "gateway", out->gateway, sizeof(out->gateway), true) < 0)
        FAIL("gateway: required, a string of 1 to 64 bytes");
    if (opt_str(doc, "gateway_message_id", out->gateway_message_id, sizeof(out->gateway_message_id),
                true) < 0)
        FAIL("gateway_message_id: required, a string of 1 to 128 bytes");
    if (opt_str(doc, "status", status, sizeof(status), true) < 0)
        FAIL("status: required, a string");
    out->status = NUDGEL_DLR_STATUS_COUNT;
    for (unsigned i = 0; i < NUDGEL_DLR_STATUS_COUNT; i++)
        if (strcmp(status, status_names[i]) == 0)
            out->status = (nudgel_dlr_status_t)i;
    if (out->status == NUDGEL_DLR_STATUS_COUNT)
        FAIL("status: \"%s\" is not a carrier DLR v1 status", status);
    if (opt_str(doc, "received_at", out->received_at, sizeof(out->received_at), true) < 0 ||
        !rfc3339_ok(out->received_at))
        FAIL("received_at: required, an RFC 3339 date-time");
    if (opt_str(doc, "done_at", out->done_at, sizeof(out->done_at), false) < 0 ||
        (out->done_at[0] && !rfc3339_ok(out->done_at)))
        FAIL("done_at: not an RFC 3339 date-time");
    if (opt_str(doc, "message_id", out->message_id, sizeof(out->message_id), false) < 0 ||
        (out->message_id[0] && nudgel_uuid_parse(out->message_id, uuid) != 0))
        FAIL("message_id: not a UUID");
    if (opt_str(doc, "raw_status", out->raw_status, sizeof(out->raw_status), false) < 0)
        FAIL("raw_status: not a string of at most 63 bytes");
    if (opt_str(doc, "dialect", out->dialect, sizeof(out->dialect), false) < 0)
        FAIL("dialect: not a string");
    if (opt_str(doc, "to", out->to, sizeof(out->to), false) < 0)
        FAIL("to: not a string of at most 32 bytes");
    if (opt_str(doc, "network_code", out->network_code, sizeof(out->network_code), false) < 0 ||
        (out->network_code[0] &&
         (strlen(out->network_code) < 5 ||
          strspn(out->network_code, "0123456789") != strlen(out->network_code))))
        FAIL("network_code: not 5 or 6 digits");
    const json_t *e = json_object_get(doc, "error");
    if (e) {
        const json_t *perm = json_object_get(e, "permanent");
        if (!json_is_object(e) ||
            opt_str(e, "code", out->error_code, sizeof(out->error_code), true) < 0)
            FAIL("error.code: required in error, a string of 1 to 63 bytes");
        const json_t *msg = json_object_get(e, "message");
        if (msg && !json_is_string(msg))
            FAIL("error.message: not a string");
        if (msg) /* long texts are cut: they are data, not keys */
            snprintf(out->error_message, sizeof(out->error_message), "%s", json_string_value(msg));
        if (perm && !json_is_boolean(perm))
            FAIL("error.permanent: not a boolean");
        if (perm)
            out->error_permanent = json_is_true(perm) ? 1 : 0;
    }
    const json_t *cost = json_object_get(doc, "cost");
    if (cost) {
        char cur[8];
        if (!json_is_object(cost) || opt_str(cost, "currency", cur, sizeof(cur), true) < 0 ||
            strlen(cur) != 3 || strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
            FAIL("cost.currency: required in cost, three capital letters");
        const json_t *amount = json_object_get(cost, "amount");
        if (!json_is_string(amount) && !json_is_number(amount))
            FAIL("cost.amount: required in cost, a decimal string or a number");
        price_text(amount, out->price_amount, sizeof(out->price_amount));
        if (out->price_amount[0])
            memcpy(out->price_currency, cur, 4);
    }
    if (out->network_code[0]) {
        const char *op = nudgel_phone_network_operator(out->network_code, NULL);
        snprintf(out->operator_name, sizeof(out->operator_name), "%s", op ? op : "");
    }
out:
    json_decref(doc);
    return err;
}

/* Raw statuses carriers document as intermediate, whatever a normaliser made of them. */
static bool raw_intermediate(const nudgel_dlr_report_t *r)
{
    static const char *const at[] = {"Sent", "Submitted", "Buffered"};
    const char *raw = r->raw_status;
    if (!raw[0])
        return false;
    if (strcmp(r->dialect, "infobip") == 0 || !r->dialect[0]) {
        if (strncasecmp(raw, "PENDING", 7) == 0 || strcasecmp(raw, "DELIVERED_TO_OPERATOR") == 0)
            return true;
    }
    if (strcmp(r->dialect, "africastalking") == 0 || !r->dialect[0]) {
        for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
            if (strcasecmp(raw, at[i]) == 0)
                return true;
    }
    return false;
}

bool nudgel_dlr_target(const nudgel_dlr_report_t *r, nudgel_receipt_state_t *target)
{
    if (raw_intermediate(r))
        return false;
    switch (r->status) {
    case NUDGEL_DLR_DELIVERED:
        *target = NUDGEL_RECEIPT_DELIVERED;
        return true;
    case NUDGEL_DLR_UNDELIVERED:
    case NUDGEL_DLR_REJECTED:
    case NUDGEL_DLR_FAILED:
        *target = NUDGEL_RECEIPT_UNDELIVERED;
        return true;
    case NUDGEL_DLR_EXPIRED:
        *target = NUDGEL_RECEIPT_EXPIRED;
        return true;
    case NUDGEL_DLR_SENT:
    case NUDGEL_DLR_BUFFERED:
    case NUDGEL_DLR_UNKNOWN:
        return false;
    }
    return false;
}

nudgel_dlr_outcome_t nudgel_dlr_decide(bool found, nudgel_receipt_state_t current, bool final,
                                       nudgel_receipt_state_t target)
{
    if (!found || current == NUDGEL_RECEIPT_ACCEPTED || current == NUDGEL_RECEIPT_SUBMITTING)
        return NUDGEL_DLR_PENDING;
    if (!final)
        return NUDGEL_DLR_INTERMEDIATE;
    if (current == target)
        return NUDGEL_DLR_UNCHANGED;
    return nudgel_receipt_transition_allowed(current, target) ? NUDGEL_DLR_APPLIED
                                                              : NUDGEL_DLR_REFUSED;
}

static bool gateway_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

nudgel_err_t nudgel_dlr_expiry_parse(int64_t default_s, const char *spec, nudgel_dlr_expiry_t *out,
                                     char *errstr, size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    out->default_s = default_s;
    for (const char *p = spec ? spec : ""; *p;) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        char *num_end = NULL;
        long long v = eq ? strtoll(eq + 1, &num_end, 10) : 0;
        if (!eq || !gateway_name_ok(p, (size_t)(eq - p)) || num_end != end || v < 1 ||
            (comma && comma[1] == '\0') || v > 90LL * 86400 ||
            out->count == NUDGEL_DLR_EXPIRY_GW_MAX) {
            if (errstr_size)
                snprintf(errstr, errstr_size,
                         "expected gateway=seconds (1 to 7776000), comma-separated, at most %d, "
                         "at \"%.40s\"",
                         NUDGEL_DLR_EXPIRY_GW_MAX, p);
            return NUDGEL_ERR_CONFIG;
        }
        memcpy(out->items[out->count].gateway, p, (size_t)(eq - p));
        out->items[out->count].gateway[eq - p] = '\0';
        out->items[out->count++].window_s = v;
        p = comma ? comma + 1 : end;
    }
    return NUDGEL_OK;
}

int64_t nudgel_dlr_expiry_window_s(const nudgel_dlr_expiry_t *e, const char *gateway)
{
    for (size_t i = 0; gateway && i < e->count; i++)
        if (strcmp(e->items[i].gateway, gateway) == 0)
            return e->items[i].window_s;
    return e->default_s;
}

bool nudgel_dlr_expiry_due(const nudgel_dlr_expiry_t *e, const char *gateway,
                           nudgel_receipt_state_t status, int64_t submitted_at_ms, int64_t now_ms)
{
    if (status != NUDGEL_RECEIPT_SENT || submitted_at_ms <= 0)
        return false;
    return submitted_at_ms < now_ms - nudgel_dlr_expiry_window_s(e, gateway) * 1000;
}
