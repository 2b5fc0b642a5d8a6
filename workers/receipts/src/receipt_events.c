/*
 * receipt_events.c — the status event of a receipt, one builder for every
 * role that moves receipts (nudgel/receipt_events.h): the messages worker's
 * queued/sent/failed/... and nudgel-receipts' delivered/undelivered/expired
 * carry the same data shape and the same deterministic ids.
 */
#include "nudgel/receipt_events.h"

#include <stdio.h>

#include "nudgel/event.h"

static int set_str(json_t *o, const char *key, const char *value)
{
    return value && *value ? json_object_set_new(o, key, json_string(value)) : 0;
}

json_t *nudgel_receipt_event_data(const nudgel_receipt_event_fields_t *f)
{
    json_t *data = json_object();
    if (!data)
        return NULL;
    int rc = set_str(data, "message_id", f->message_id);
    rc |= set_str(data, "tenant_id", f->tenant_id);
    rc |= set_str(data, "idempotency_key", f->idempotency_key);
    rc |= set_str(data, "to", f->to);
    rc |= set_str(data, "country", f->country);
    rc |= set_str(data, "operator", f->operator_name);
    rc |= set_str(data, "gateway", f->gateway);
    rc |= set_str(data, "gateway_message_id", f->gateway_message_id);
    rc |= set_str(data, "status", f->status);
    if (f->error_code && *f->error_code)
        rc |= json_object_set_new(data, "error",
                                  json_pack("{s:s, s:s, s:b}", "code", f->error_code, "message",
                                            f->error_message ? f->error_message : "", "permanent",
                                            f->error_permanent));
    if (f->encoding && *f->encoding) {
        rc |= json_object_set_new(data, "encoding", json_string(f->encoding));
        rc |= json_object_set_new(data, "segments", json_integer(f->segments));
    }
    if (f->cost_amount && *f->cost_amount && f->cost_currency && *f->cost_currency)
        rc |= json_object_set_new(
            data, "cost",
            json_pack("{s:s, s:s}", "amount", f->cost_amount, "currency", f->cost_currency));
    rc |= json_object_set_new(data, "attempt", json_integer(f->attempt));
    if (f->metadata)
        rc |= json_object_set(data, "metadata", f->metadata);
    if (rc) {
        json_decref(data);
        return NULL;
    }
    return data;
}

json_t *nudgel_receipt_event_build(const char *source, const char *status, const char *subject,
                                   const char *tenant, int attempt, int64_t time_ms,
                                   const char *traceparent, json_t *data)
{
    char type[64];
    snprintf(type, sizeof(type), "ai.nudgel.message.%s", status);
    return nudgel_event_build(source, type, subject, tenant, attempt, time_ms, traceparent, data);
}
