/*
 * receipt_event.c — see nudgel/receipt_event.h: the data of a message status
 * event from a receipt row, the row a claim and a record make (so the first
 * emission is built from what was written, exactly as a re-emission is built
 * from what is read back), and the one normalisation of a cost.
 */
#include "nudgel/receipt_event.h"

#include <stdio.h>
#include <string.h>

#include "nudgel/event.h"
#include "nudgel/receipt_state.h"

#define COST_DIGITS_MAX 40 /* integer digits of a cost we handle (numeric(14,6) has 8) */

bool nudgel_receipt_cost_normalize(const char *in, char *out, size_t out_size)
{
    /* digits[0..n): the integer part then NUDGEL_RECEIPT_COST_SCALE fraction digits;
     * one spare digit in front for the carry of rounding. */
    char digits[1 + COST_DIGITS_MAX + NUDGEL_RECEIPT_COST_SCALE];
    size_t n = 1, nint = 0, nfrac = 0;
    bool neg = false, any = false, round_up = false;
    const char *p = in;

    if (out_size)
        out[0] = '\0';
    if (!in || !out || out_size < 2)
        return false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    digits[0] = '0';
    for (; *p >= '0' && *p <= '9'; p++, any = true) {
        if (nint == 0 && *p == '0')
            continue; /* leading zeros */
        if (nint == COST_DIGITS_MAX)
            return false;
        digits[n++] = *p;
        nint++;
    }
    if (*p == '.') {
        p++; /* ".5" and "1." are numbers to Postgres too */
        for (; *p >= '0' && *p <= '9'; p++, any = true) {
            if (nfrac < NUDGEL_RECEIPT_COST_SCALE)
                digits[n + nfrac++] = *p;
            else if (nfrac++ == NUDGEL_RECEIPT_COST_SCALE)
                round_up = *p >= '5'; /* the first dropped digit decides */
        }
    }
    if (*p || !any)
        return false;
    for (size_t k = nfrac < NUDGEL_RECEIPT_COST_SCALE ? nfrac : NUDGEL_RECEIPT_COST_SCALE;
         k < NUDGEL_RECEIPT_COST_SCALE; k++)
        digits[n + k] = '0';
    size_t total = n + NUDGEL_RECEIPT_COST_SCALE;
    if (round_up) {
        size_t k = total;
        while (k-- > 0) {
            if (digits[k] == '9') {
                digits[k] = '0';
                continue;
            }
            digits[k]++;
            break;
        }
    }
    /* Integer part: digits[0..n), without leading zeros (at least one digit). */
    size_t first = 0;
    while (first + 1 < n && digits[first] == '0')
        first++;
    size_t last = total; /* one past the last fraction digit that is not a trailing zero */
    while (last > n && digits[last - 1] == '0')
        last--;
    bool zero = true;
    for (size_t k = first; k < total; k++)
        zero = zero && digits[k] == '0';
    int len = snprintf(out, out_size, "%s%.*s%s%.*s", neg && !zero ? "-" : "", (int)(n - first),
                       digits + first, last > n ? "." : "", (int)(last - n), digits + n);
    if (len < 0 || (size_t)len >= out_size) {
        out[0] = '\0';
        return false;
    }
    return true;
}

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

void nudgel_receipt_from_job(const nudgel_message_job_t *job, const char *resent_from,
                             nudgel_receipt_t *row)
{
    memset(row, 0, sizeof(*row));
    copy(row->message_id, sizeof(row->message_id), job->id);
    copy(row->tenant_id, sizeof(row->tenant_id), job->tenant_id);
    copy(row->idempotency_key, sizeof(row->idempotency_key), job->idempotency_key);
    copy(row->to_e164, sizeof(row->to_e164), job->phone.e164[0] ? job->phone.e164 : job->to);
    copy(row->country, sizeof(row->country),
         job->phone.country[0] ? job->phone.country : job->country);
    copy(row->operator_name, sizeof(row->operator_name), job->phone.operator_name);
    copy(row->resent_from, sizeof(row->resent_from), resent_from);
    row->status = NUDGEL_RECEIPT_SUBMITTING;
    row->segments = -1;
}

void nudgel_receipt_apply_result(nudgel_receipt_t *row, const nudgel_receipt_result_t *r)
{
    row->status = r->status;
    if (r->gateway)
        copy(row->gateway, sizeof(row->gateway), r->gateway);
    if (r->gateway_message_id)
        copy(row->gateway_message_id, sizeof(row->gateway_message_id), r->gateway_message_id);
    if (r->error_code)
        copy(row->error_code, sizeof(row->error_code), r->error_code);
    if (r->error_message)
        copy(row->error_message, sizeof(row->error_message), r->error_message);
    if (r->encoding)
        copy(row->encoding, sizeof(row->encoding), r->encoding);
    if (r->segments >= 0)
        row->segments = r->segments;
    if (r->cost_amount)
        nudgel_receipt_cost_normalize(r->cost_amount, row->cost_amount, sizeof(row->cost_amount));
    if (r->cost_currency)
        copy(row->cost_currency, sizeof(row->cost_currency), r->cost_currency);
}

/* Whether an event of @p status reports a failure that trying again does not cure. */
static bool permanent_status(const char *status)
{
    nudgel_receipt_state_t s;
    char why[64];
    if (nudgel_receipt_state_parse(status, &s, why, sizeof(why)) != NUDGEL_OK)
        return false; /* deduplicated and other non-receipt statuses */
    switch (s) {
    case NUDGEL_RECEIPT_FAILED:
    case NUDGEL_RECEIPT_REJECTED:
    case NUDGEL_RECEIPT_EXPIRED:
    case NUDGEL_RECEIPT_UNDELIVERED:
        return true;
    case NUDGEL_RECEIPT_ACCEPTED:
    case NUDGEL_RECEIPT_SUBMITTING:
    case NUDGEL_RECEIPT_SENT:
    case NUDGEL_RECEIPT_DELIVERED:
        return false;
    }
    return false;
}

static int set_str(json_t *o, const char *key, const char *v)
{
    return v && *v ? json_object_set_new(o, key, json_string(v)) : 0;
}

json_t *nudgel_receipt_event_data(const nudgel_receipt_t *row, const char *status, int attempt,
                                  json_t *metadata)
{
    char cost[sizeof(row->cost_amount)];
    json_t *data = json_object();
    if (!data)
        return NULL;
    int rc = set_str(data, "message_id", row->message_id);
    rc |= set_str(data, "tenant_id", row->tenant_id);
    rc |= set_str(data, "idempotency_key", row->idempotency_key);
    rc |= json_object_set_new(data, "to", json_string(row->to_e164));
    rc |= set_str(data, "country", row->country);
    rc |= set_str(data, "operator", row->operator_name);
    rc |= set_str(data, "gateway", row->gateway);
    rc |= set_str(data, "gateway_message_id", row->gateway_message_id);
    rc |= json_object_set_new(data, "status", json_string(status));
    if (row->error_code[0])
        rc |= json_object_set_new(data, "error",
                                  json_pack("{s:s, s:s, s:b}", "code", row->error_code, "message",
                                            row->error_message, "permanent",
                                            permanent_status(status)));
    if (row->encoding[0] && row->segments >= 0) {
        rc |= json_object_set_new(data, "encoding", json_string(row->encoding));
        rc |= json_object_set_new(data, "segments", json_integer((json_int_t)row->segments));
    }
    if (row->cost_currency[0] &&
        nudgel_receipt_cost_normalize(row->cost_amount, cost, sizeof(cost)))
        rc |= json_object_set_new(
            data, "cost", json_pack("{s:s, s:s}", "amount", cost, "currency", row->cost_currency));
    rc |= json_object_set_new(data, "attempt", json_integer(attempt));
    rc |= set_str(data, "resent_from", row->resent_from);
    if (metadata)
        rc |= json_object_set(data, "metadata", metadata);
    if (rc != 0) {
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
