/*
 * test_codec.c — jobs and events survive encode/parse round trips with the
 * same bytes; timestamps parse and print; event ids are deterministic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/event.h"
#include "nudgel/job.h"
#include "nudgel/timeutil.h"

static const char *const message_jobs[] = {
    "{\"tenant_id\":\"acme\",\"channel\":\"sms\",\"to\":\"+254722000000\",\"template\":"
    "\"order-confirmation\",\"variables\":{\"name\":\"Ada\",\"order_id\":\"AC-1042\"}}",
    "{\"metadata\":{\"k\":[1,2,{\"x\":null}]},\"body\":\"Habari \\u00e9\\ud83d\\ude00\",\"to\":"
    "\"0803 123 4567\",\"country\":\"NG\",\"channel\":\"sms\",\"tenant_id\":\"t-1\","
    "\"idempotency_key\":\"abc\",\"expires_at\":\"2030-01-01T00:00:00+01:00\",\"from\":\"SHOP\"}",
    "{\"id\":\"01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e\",\"tenant_id\":\"u\",\"channel\":\"sms\","
    "\"to\":\"+256772123456\",\"body\":\"a\\\"quoted\\\" \\\\ line\\nbreak\","
    "\"created_at\":\"2026-11-29T01:02:03.456789Z\"}",
};

static void test_message_round_trip(void **state)
{
    (void)state;
    nudgel_job_parse_opts_t produce = {
        .fill_defaults = true, .normalise_to = true, .default_country = "KE"};
    nudgel_job_parse_opts_t consume = {0}; /* as a worker reads it */
    for (size_t i = 0; i < sizeof(message_jobs) / sizeof(message_jobs[0]); i++) {
        nudgel_message_job_t a, b;
        nudgel_field_error_t ferr;
        size_t len_a, len_b;
        assert_int_equal(
            nudgel_message_job_parse(message_jobs[i], strlen(message_jobs[i]), &produce, &a, &ferr),
            NUDGEL_OK);
        char *bytes_a = nudgel_message_job_encode(&a, &len_a);
        assert_non_null(bytes_a);
        assert_int_equal(nudgel_message_job_parse(bytes_a, len_a, &consume, &b, &ferr), NUDGEL_OK);
        char *bytes_b = nudgel_message_job_encode(&b, &len_b);
        assert_string_equal(bytes_a, bytes_b);
        assert_string_equal(a.id, b.id);
        assert_string_equal(a.to, b.to);
        assert_int_equal(a.created_at_ms, b.created_at_ms);
        assert_int_equal(a.expires_at_ms, b.expires_at_ms);
        assert_true(json_equal(a.doc, b.doc));
        /* Canonical order: id first, tenant_id second, whatever the input order. */
        assert_memory_equal(bytes_a, "{\"id\":\"", 7);
        assert_non_null(strstr(bytes_a, "\",\"tenant_id\":"));
        free(bytes_a);
        free(bytes_b);
        nudgel_message_job_clear(&a);
        nudgel_message_job_clear(&b);
    }
}

static void test_message_normalises_to_and_keeps_fields(void **state)
{
    (void)state;
    nudgel_job_parse_opts_t opts = {
        .fill_defaults = true, .normalise_to = true, .now_ms = 1764378000123};
    nudgel_message_job_t job;
    nudgel_field_error_t ferr;
    assert_int_equal(
        nudgel_message_job_parse(message_jobs[1], strlen(message_jobs[1]), &opts, &job, &ferr),
        NUDGEL_OK);
    assert_string_equal(job.to, "+2348031234567");
    assert_string_equal(job.phone.country, "NG");
    assert_string_equal(job.phone.operator_name, "MTN");
    assert_string_equal(job.from, "SHOP");
    assert_string_equal(job.idempotency_key, "abc");
    assert_int_equal(job.created_at_ms, 1764378000123);
    assert_int_equal(job.expires_at_ms, 1893452400000); /* 2029-12-31T23:00:00Z */
    assert_string_equal(json_string_value(json_object_get(job.doc, "created_at")),
                        "2025-11-29T01:00:00.123Z");
    assert_non_null(job.metadata);
    nudgel_message_job_clear(&job);
}

static void test_webhook_round_trip(void **state)
{
    (void)state;
    const char *json = "{\"payload\":{\"type\":\"message.delivered\",\"data\":{\"n\":1.5}},"
                       "\"event_id\":\"evt_01\",\"event_type\":\"message.delivered\","
                       "\"endpoint_id\":\"01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e\","
                       "\"tenant_id\":\"acme\"}";
    nudgel_job_parse_opts_t produce = {.fill_defaults = true};
    nudgel_job_parse_opts_t consume = {0};
    nudgel_webhook_job_t a, b;
    nudgel_field_error_t ferr;
    size_t len_a, len_b;
    assert_int_equal(nudgel_webhook_job_parse(json, strlen(json), &produce, &a, &ferr), NUDGEL_OK);
    char *bytes_a = nudgel_webhook_job_encode(&a, &len_a);
    assert_int_equal(nudgel_webhook_job_parse(bytes_a, len_a, &consume, &b, &ferr), NUDGEL_OK);
    char *bytes_b = nudgel_webhook_job_encode(&b, &len_b);
    assert_string_equal(bytes_a, bytes_b);
    assert_string_equal(b.event_id, "evt_01");
    assert_true(json_equal(a.payload, b.payload));
    free(bytes_a);
    free(bytes_b);
    nudgel_webhook_job_clear(&a);
    nudgel_webhook_job_clear(&b);
}

static void test_rfc3339(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int ok;
        int64_t ms;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 1, 0},
        {"2026-11-29T01:56:15.123Z", 1, 1795917375123},
        {"2026-11-29T04:56:15.123+03:00", 1, 1795917375123},
        {"2026-11-28T22:56:15.1-03:00", 1, 1795917375100},
        {"2024-02-29T00:00:00Z", 1, 1709164800000},
        {"2023-02-29T00:00:00Z", 0, 0},
        {"2026-13-01T00:00:00Z", 0, 0},
        {"2026-11-29 01:56:15Z", 1, 1795917375000},
        {"2026-11-29T01:56:15", 0, 0},
        {"2026-11-29T25:00:00Z", 0, 0},
        {"2026-11-29T01:56:15Zjunk", 0, 0},
        {"", 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = -1;
        int rc = nudgel_rfc3339_parse(cases[i].text, &ms);
        if ((rc == 0) != cases[i].ok || (cases[i].ok && ms != cases[i].ms))
            fail_msg("\"%s\": rc %d ms %lld", cases[i].text, rc, (long long)ms);
    }
    char out[NUDGEL_RFC3339_MAX];
    nudgel_rfc3339_format(1795917375123, out);
    assert_string_equal(out, "2026-11-29T01:56:15.123Z");
}

static void test_event_ids_deterministic(void **state)
{
    (void)state;
    char a[NUDGEL_EVENT_ID_LEN + 1], b[NUDGEL_EVENT_ID_LEN + 1], c[NUDGEL_EVENT_ID_LEN + 1];
    nudgel_event_id("01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e", "ai.nudgel.message.sent", 1, a);
    nudgel_event_id("01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e", "ai.nudgel.message.sent", 1, b);
    nudgel_event_id("01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e", "ai.nudgel.message.sent", 2, c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(a[14], '8'); /* UUIDv8 */

    json_t *data = json_pack("{s:s, s:s}", "message_id", "m1", "status", "sent");
    json_t *ev = nudgel_event_build("/nudgel/messages", "ai.nudgel.message.sent", "m1", "acme", 1,
                                    1795917375123, NULL, data);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "specversion")), "1.0");
    assert_string_equal(json_string_value(json_object_get(ev, "tenantid")), "acme");
    assert_string_equal(json_string_value(json_object_get(ev, "time")), "2026-11-29T01:56:15.123Z");
    assert_null(json_object_get(ev, "traceparent"));
    nudgel_event_id("m1", "ai.nudgel.message.sent", 1, c);
    assert_string_equal(json_string_value(json_object_get(ev, "id")), c);
    json_decref(ev);
}

/*
 * Bodies built from awkward pieces (quotes, backslashes, control characters,
 * multi-byte UTF-8, \\u escapes, surrogate pairs) at every alignment: the
 * canonical bytes must load in jansson to exactly the text jansson wrote.
 */
static void test_string_escapes_survive(void **state)
{
    (void)state;
    static const char *const pieces[] = {"a",
                                         "\"",
                                         "\\",
                                         "\n",
                                         "\t",
                                         "\x01",
                                         "\x1f",
                                         "/",
                                         "\xc3\xa9",
                                         "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80",
                                         "abcdefgh",
                                         " ",
                                         "~",
                                         "\x7f"};
    unsigned seed = 12345;
    nudgel_job_parse_opts_t opts = {.fill_defaults = true};
    for (int round = 0; round < 3000; round++) {
        char body[512] = "";
        size_t len = 0;
        int count = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 40;
        for (int i = 0; i < count; i++) {
            const char *piece = pieces[((seed = seed * 1103515245u + 12345u) >> 16) % 15];
            size_t n = strlen(piece);
            memcpy(body + len, piece, n);
            len += n;
        }
        body[len] = '\0';
        json_t *job = json_pack("{s:s, s:s, s:s, s:s}", "tenant_id", "t", "channel", "sms", "to",
                                "+254722000000", "body", body);
        /* Alternate jansson's own escaping with \\u-escaping of every non-ASCII. */
        char *text = json_dumps(job, JSON_COMPACT | (round % 2 ? JSON_ENSURE_ASCII : 0));
        nudgel_job_canonical_t c;
        nudgel_field_error_t ferr;
        if (nudgel_message_job_canonicalize(text, strlen(text), &opts, &c, &ferr) != NUDGEL_OK)
            fail_msg("round %d: %s: %s (%s)", round, ferr.field, ferr.reason, text);
        json_error_t jerr;
        json_t *back = json_loads(c.bytes, 0, &jerr);
        assert_non_null(back);
        assert_string_equal(json_string_value(json_object_get(back, "body")), body);
        json_decref(back);
        json_decref(job);
        free(text);
        free(c.bytes);
    }
}

static void test_malformed_json_is_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"tenant_id\":\"t\",}",
        "{\"tenant_id\" \"t\"}",
        "{\"tenant_id\":\"t\"} x",
        "{\"body\":\"\\x\"}",
        "{\"body\":\"\\ud800\"}",
        "{\"body\":\"\\udc00x\"}",
        "{\"body\":\"\xc3\"}",
        "{\"body\":\"\xed\xa0\x80\"}",
        "{\"body\":\"tab\there\"}",
        "{\"metadata\":{\"n\":01}}",
        "{\"metadata\":{\"n\":1.}}",
        "{\"metadata\":{\"n\":-}}",
        "{\"metadata\":[1,]}",
        "{\"metadata\":{\"a\":tru}}",
        "{\"body\":\"\\u0000\"}",
        "",
        "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
    };
    nudgel_job_parse_opts_t opts = {.fill_defaults = true};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nudgel_job_canonical_t c;
        nudgel_field_error_t ferr;
        nudgel_err_t err =
            nudgel_message_job_canonicalize(bad[i], strlen(bad[i]), &opts, &c, &ferr);
        if (err != NUDGEL_ERR_INVALID_JSON || strcmp(ferr.field, "(json)") != 0)
            fail_msg("case %zu accepted or misfiled: %s %s", i, nudgel_err_name(err), ferr.field);
        assert_null(c.bytes);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_round_trip),
        cmocka_unit_test(test_message_normalises_to_and_keeps_fields),
        cmocka_unit_test(test_webhook_round_trip),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_event_ids_deterministic),
        cmocka_unit_test(test_string_escapes_survive),
        cmocka_unit_test(test_malformed_json_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
