/*
 * test_receipt_event.c — a message status event's data is the same whether
 * it is built at first emission (the row the worker composes from what it
 * writes) or rebuilt from the row as Postgres stores and returns it (the
 * re-emission of a claim that finds the receipt final): compared field by
 * field and as canonical JSON, cost formatting included (issue 10, item 9).
 * Plus the cost normalisation, table-driven.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/receipt_event.h"

static void test_cost_normalize(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"0.8000", "0.8"},
        {"0.800000", "0.8"}, /* numeric(14,6) as Postgres prints it */
        {"0.8", "0.8"},
        {"4.0000", "4"},
        {"4", "4"},
        {"+12.50", "12.5"},
        {"007.0100", "7.01"},
        {"0", "0"},
        {"0.000000", "0"},
        {"-0.0000001", "0"},
        {"-1.25", "-1.25"},
        {"0.1234564", "0.123456"},
        {"0.1234565", "0.123457"}, /* half away from zero, as numeric rounds */
        {"-0.1234565", "-0.123457"},
        {"9.9999995", "10"},
        {"99999999.999999", "99999999.999999"},
        {"", NULL},
        {".5", "0.5"}, /* numbers to Postgres too */
        {"1.", "1"},
        {".", NULL},
        {"1e3", NULL},
        {"KES 0.8", NULL},
        {"0.8 ", NULL},
        {"-", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[NUDGEL_RECEIPT_COST_TEXT_MAX];
        bool ok = nudgel_receipt_cost_normalize(cases[i].in, out, sizeof(out));
        if (!cases[i].out) {
            if (ok)
                fail_msg("\"%s\" accepted as \"%s\"", cases[i].in, out);
            assert_string_equal(out, "");
            continue;
        }
        if (!ok)
            fail_msg("\"%s\" refused", cases[i].in);
        assert_string_equal(out, cases[i].out);
    }
    char small[3];
    assert_false(nudgel_receipt_cost_normalize("12.5", small, sizeof(small)));
}

static const char job_json[] =
    "{\"id\":\"01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e\",\"tenant_id\":\"acme\",\"channel\":\"sms\","
    "\"to\":\"+254711000001\",\"body\":\"Habari\",\"idempotency_key\":\"order-1\","
    "\"created_at\":\"2026-11-29T05:00:00.000Z\",\"metadata\":{\"order\":\"AC-1\",\"n\":1}}";

/* The stored row as nudgel.receipt_claim() hands it back (receipt_claims.c reads it so). */
static void stored_row(nudgel_receipt_t *r, nudgel_receipt_state_t status, const char *resent_from)
{
    memset(r, 0, sizeof(*r));
    strcpy(r->message_id, "01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e");
    strcpy(r->tenant_id, "acme");
    strcpy(r->idempotency_key, "order-1");
    strcpy(r->to_e164, "+254711000001");
    strcpy(r->country, "KE");
    strcpy(r->operator_name, "Safaricom");
    r->status = status;
    r->attempt = 2;
    strcpy(r->client_ref, r->message_id);
    strcpy(r->claimed_by, "worker-1");
    strcpy(r->gateway, "sim-at");
    strcpy(r->encoding, "gsm7");
    r->segments = 1;
    if (status == NUDGEL_RECEIPT_SENT) {
        strcpy(r->gateway_message_id, "ATXid_1");
        strcpy(r->cost_amount, "0.800000"); /* numeric(14,6)::text */
        strcpy(r->cost_currency, "KES");
    } else {
        strcpy(r->error_code, "http_503");
        strcpy(r->error_message, "HTTP 503: Service Unavailable");
    }
    strcpy(r->trace_id, "0af7651916cd43dd8448eb211c80319c");
    r->created_at_ms = 1700000000000;
    r->submitted_at_ms = 1700000000100;
    r->final_at_ms = status == NUDGEL_RECEIPT_SENT ? 0 : 1700000000100;
    r->updated_at_ms = 1700000000100;
    snprintf(r->resent_from, sizeof(r->resent_from), "%s", resent_from ? resent_from : "");
}

static char *canonical(const json_t *data)
{
    char *s = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(s);
    return s;
}

static void compare(nudgel_receipt_state_t status, const char *resent_from)
{
    nudgel_message_job_t job;
    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t opts = {.normalise_to = true};
    assert_int_equal(nudgel_message_job_parse(job_json, strlen(job_json), &opts, &job, &ferr),
                     NUDGEL_OK);

    /* First emission: the row the claim made, with the result the worker writes. */
    nudgel_receipt_t first;
    nudgel_receipt_from_job(&job, resent_from, &first);
    nudgel_receipt_result_t result = {
        .message_id = job.id,
        .status = status,
        .gateway = "sim-at",
        .gateway_message_id = status == NUDGEL_RECEIPT_SENT ? "ATXid_1" : NULL,
        .error_code = status == NUDGEL_RECEIPT_SENT ? NULL : "http_503",
        .error_message = status == NUDGEL_RECEIPT_SENT ? NULL : "HTTP 503: Service Unavailable",
        .encoding = "gsm7",
        .segments = 1,
        .cost_amount = status == NUDGEL_RECEIPT_SENT ? "0.8000" : NULL, /* the carrier's text */
        .cost_currency = status == NUDGEL_RECEIPT_SENT ? "KES" : NULL,
    };
    nudgel_receipt_apply_result(&first, &result);
    const char *name = nudgel_receipt_state_name(status);
    json_t *a = nudgel_receipt_event_data(&first, name, 2, job.metadata);

    /* Re-emission: the row read back. */
    nudgel_receipt_t stored;
    stored_row(&stored, status, resent_from);
    json_t *b = nudgel_receipt_event_data(&stored, name, stored.attempt, job.metadata);
    assert_non_null(a);
    assert_non_null(b);

    /* Field by field, so a failure names the field. */
    const char *key;
    json_t *value;
    json_object_foreach(a, key, value)
    {
        json_t *other = json_object_get(b, key);
        if (!other || !json_equal(value, other)) {
            char *x = json_dumps(value, JSON_ENCODE_ANY), *y = json_dumps(other, JSON_ENCODE_ANY);
            fail_msg("data.%s: first %s, re-emitted %s", key, x, y ? y : "(absent)");
        }
    }
    json_object_foreach(b, key, value)
    {
        if (!json_object_get(a, key))
            fail_msg("data.%s only in the re-emitted event", key);
    }
    char *ca = canonical(a), *cb = canonical(b);
    assert_string_equal(ca, cb);

    /* And what the fields are. */
    assert_string_equal(json_string_value(json_object_get(a, "encoding")), "gsm7");
    assert_int_equal(json_integer_value(json_object_get(a, "segments")), 1);
    assert_string_equal(json_string_value(json_object_get(a, "to")), "+254711000001");
    if (status == NUDGEL_RECEIPT_SENT) {
        json_t *cost = json_object_get(a, "cost");
        assert_string_equal(json_string_value(json_object_get(cost, "amount")), "0.8");
        assert_string_equal(json_string_value(json_object_get(cost, "currency")), "KES");
        assert_null(json_object_get(a, "error"));
    } else {
        assert_null(json_object_get(a, "cost"));
        assert_true(json_is_true(json_object_get(json_object_get(a, "error"), "permanent")));
    }
    if (resent_from)
        assert_string_equal(json_string_value(json_object_get(a, "resent_from")), resent_from);
    else
        assert_null(json_object_get(a, "resent_from"));
    free(ca);
    free(cb);
    json_decref(a);
    json_decref(b);
    nudgel_message_job_clear(&job);
}

static void test_sent_first_equals_reemitted(void **state)
{
    (void)state;
    compare(NUDGEL_RECEIPT_SENT, NULL);
}

static void test_failed_first_equals_reemitted(void **state)
{
    (void)state;
    compare(NUDGEL_RECEIPT_FAILED, NULL);
}

static void test_resent_first_equals_reemitted(void **state)
{
    (void)state;
    compare(NUDGEL_RECEIPT_SENT, "01937c9e-0000-7000-8000-000000000001");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost_normalize),
        cmocka_unit_test(test_sent_first_equals_reemitted),
        cmocka_unit_test(test_failed_first_equals_reemitted),
        cmocka_unit_test(test_resent_first_equals_reemitted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
