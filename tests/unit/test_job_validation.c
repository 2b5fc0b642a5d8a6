/*
 * test_job_validation.c — a table of good and bad jobs; every bad one must be
 * refused for the field the table names, every good one accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/job.h"

typedef struct job_case {
    const char *name;
    const char *json;
    nudgel_err_t expected;
    const char *field; /* expected field at fault; NULL for good jobs */
} job_case_t;

#define T  "\"tenant_id\":\"acme\",\"channel\":\"sms\","
#define ID "\"id\":\"01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e\","

static const job_case_t message_cases[] = {
    /* good */
    {"e164 body", "{" T "\"to\":\"+254722000000\",\"body\":\"hi\"}", NUDGEL_OK, NULL},
    {"api example",
     "{" T "\"to\":\"+254722000000\",\"template\":\"order-confirmation\","
     "\"variables\":{\"name\":\"Ada\",\"order_id\":\"AC-1042\"}}",
     NUDGEL_OK, NULL},
    {"national with default KE", "{" T "\"to\":\"0722 000 000\",\"body\":\"hi\"}", NUDGEL_OK, NULL},
    {"national with NG hint", "{" T "\"to\":\"0803 123 4567\",\"country\":\"NG\",\"body\":\"x\"}",
     NUDGEL_OK, NULL},
    {"UG e164", "{" T "\"to\":\"+256772123456\",\"body\":\"x\"}", NUDGEL_OK, NULL},
    {"other country e164", "{" T "\"to\":\"+447700900123\",\"body\":\"x\"}", NUDGEL_OK, NULL},
    {"given id", "{" ID T "\"to\":\"+254722000000\",\"body\":\"x\"}", NUDGEL_OK, NULL},
    {"alnum sender", "{" T "\"to\":\"+254722000000\",\"from\":\"NUDGEL\",\"body\":\"x\"}",
     NUDGEL_OK, NULL},
    {"numeric sender", "{" T "\"to\":\"+254722000000\",\"from\":\"22384\",\"body\":\"x\"}",
     NUDGEL_OK, NULL},
    {"all optional fields",
     "{" ID T
     "\"to\":\"+254722000000\",\"from\":\"ACME\",\"template\":\"otp\",\"locale\":\"sw-KE\","
     "\"variables\":{\"code\":4312,\"ok\":true},\"idempotency_key\":\"k-1\","
     "\"created_at\":\"2026-11-29T01:00:00Z\",\"expires_at\":\"2026-11-29T05:00:00+03:00\","
     "\"metadata\":{\"order\":{\"id\":7}}}",
     NUDGEL_OK, NULL},
    {"swahili body", "{" T "\"to\":\"+254722000000\",\"body\":\"Habari yako? Karibu sana!\"}",
     NUDGEL_OK, NULL},
    {"emoji body", "{" T "\"to\":\"+2348031234567\",\"body\":\"\\ud83d\\ude00 e\\u0301\"}",
     NUDGEL_OK, NULL},
    {"null optional", "{" T "\"to\":\"+254722000000\",\"body\":\"x\",\"metadata\":null}", NUDGEL_OK,
     NULL},
    /* bad: envelope */
    {"not json", "{\"tenant_id\":", NUDGEL_ERR_INVALID_JSON, "(json)"},
    {"array", "[1,2,3]", NUDGEL_ERR_INVALID_JSON, "(json)"},
    {"string", "\"hello\"", NUDGEL_ERR_INVALID_JSON, "(json)"},
    {"duplicate key", "{" T "\"to\":\"+254722000000\",\"to\":\"+254722000001\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_JSON, "(json)"},
    {"unknown field", "{" T "\"to\":\"+254722000000\",\"body\":\"x\",\"priority\":1}",
     NUDGEL_ERR_INVALID_FIELD, "priority"},
    /* bad: id */
    {"id not uuid", "{\"id\":\"abc\"," T "\"to\":\"+254722000000\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "id"},
    {"id upper case",
     "{\"id\":\"01937C9E-8F2A-7B3C-9D4E-5F6A7B8C9D0E\"," T
     "\"to\":\"+254722000000\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "id"},
    {"id number", "{\"id\":42," T "\"to\":\"+254722000000\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "id"},
    /* bad: tenant */
    {"missing tenant", "{\"channel\":\"sms\",\"to\":\"+254722000000\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "tenant_id"},
    {"empty tenant",
     "{\"tenant_id\":\"\",\"channel\":\"sms\",\"to\":\"+254722000000\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "tenant_id"},
    {"tenant charset",
     "{\"tenant_id\":\"ac me\",\"channel\":\"sms\",\"to\":\"+254722000000\","
     "\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "tenant_id"},
    {"tenant leading dash",
     "{\"tenant_id\":\"-acme\",\"channel\":\"sms\",\"to\":\"+254722000000\","
     "\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "tenant_id"},
    {"tenant too long",
     "{\"tenant_id\":\"a0123456789012345678901234567890123456789012345678901234567890123\","
     "\"channel\":\"sms\",\"to\":\"+254722000000\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "tenant_id"},
    {"tenant number",
     "{\"tenant_id\":7,\"channel\":\"sms\",\"to\":\"+254722000000\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "tenant_id"},
    /* bad: channel */
    {"missing channel", "{\"tenant_id\":\"acme\",\"to\":\"+254722000000\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "channel"},
    {"whatsapp channel",
     "{\"tenant_id\":\"acme\",\"channel\":\"whatsapp\",\"to\":\"+254722000000\","
     "\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "channel"},
    /* bad: to */
    {"missing to", "{" T "\"body\":\"x\"}", NUDGEL_ERR_INVALID_FIELD, "to"},
    {"to letters", "{" T "\"to\":\"+2547OO000000\",\"body\":\"x\"}", NUDGEL_ERR_INVALID_FIELD,
     "to"},
    {"to KE too short", "{" T "\"to\":\"+25472200000\",\"body\":\"x\"}", NUDGEL_ERR_INVALID_FIELD,
     "to"},
    {"to KE fixed line", "{" T "\"to\":\"+254202012345\",\"body\":\"x\"}", NUDGEL_ERR_INVALID_FIELD,
     "to"},
    {"to NG too long", "{" T "\"to\":\"+23480312345678\",\"body\":\"x\"}", NUDGEL_ERR_INVALID_FIELD,
     "to"},
    {"to national no hint (SN)", "{" T "\"to\":\"0722000000\",\"country\":\"SN\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "to"},
    {"to e164 too long", "{" T "\"to\":\"+4477009001234567\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "to"},
    {"to number type", "{" T "\"to\":254722000000,\"body\":\"x\"}", NUDGEL_ERR_INVALID_FIELD, "to"},
    {"country lower", "{" T "\"to\":\"0722000000\",\"country\":\"ke\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "country"},
    /* bad: from */
    {"sender too long", "{" T "\"to\":\"+254722000000\",\"from\":\"ACMEBANKLTDX\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "from"},
    {"sender symbols", "{" T "\"to\":\"+254722000000\",\"from\":\"AC$ME\",\"body\":\"x\"}",
     NUDGEL_ERR_INVALID_FIELD, "from"},
    /* bad: body and template */
    {"neither body nor template", "{" T "\"to\":\"+254722000000\"}", NUDGEL_ERR_INVALID_FIELD,
     "body"},
    {"both body and template",
     "{" T "\"to\":\"+254722000000\",\"body\":\"x\",\"template\":\"otp\"}",
     NUDGEL_ERR_INVALID_FIELD, "body"},
    {"empty body", "{" T "\"to\":\"+254722000000\",\"body\":\"\"}", NUDGEL_ERR_INVALID_FIELD,
     "body"},
    {"body not string", "{" T "\"to\":\"+254722000000\",\"body\":{\"text\":\"x\"}}",
     NUDGEL_ERR_INVALID_FIELD, "body"},
    {"template name charset", "{" T "\"to\":\"+254722000000\",\"template\":\"Order Confirm\"}",
     NUDGEL_ERR_INVALID_FIELD, "template"},
    {"variables without template",
     "{" T "\"to\":\"+254722000000\",\"body\":\"x\","
     "\"variables\":{\"a\":\"b\"}}",
     NUDGEL_ERR_INVALID_FIELD, "variables"},
    {"variables not object",
     "{" T "\"to\":\"+254722000000\",\"template\":\"otp\",\"variables\":[1]}",
     NUDGEL_ERR_INVALID_FIELD, "variables"},
    {"variable value object",
     "{" T "\"to\":\"+254722000000\",\"template\":\"otp\","
     "\"variables\":{\"name\":{\"first\":\"Ada\"}}}",
     NUDGEL_ERR_INVALID_FIELD, "variables.name"},
    {"locale without template", "{" T "\"to\":\"+254722000000\",\"body\":\"x\",\"locale\":\"en\"}",
     NUDGEL_ERR_INVALID_FIELD, "locale"},
    /* bad: idempotency, times, metadata */
    {"empty idempotency key",
     "{" T "\"to\":\"+254722000000\",\"body\":\"x\",\"idempotency_key\":\"\"}",
     NUDGEL_ERR_INVALID_FIELD, "idempotency_key"},
    {"created_at not rfc3339",
     "{" T "\"to\":\"+254722000000\",\"body\":\"x\","
     "\"created_at\":\"29/11/2026\"}",
     NUDGEL_ERR_INVALID_FIELD, "created_at"},
    {"created_at no zone",
     "{" T "\"to\":\"+254722000000\",\"body\":\"x\","
     "\"created_at\":\"2026-11-29T01:00:00\"}",
     NUDGEL_ERR_INVALID_FIELD, "created_at"},
    {"expires before created",
     "{" T "\"to\":\"+254722000000\",\"body\":\"x\","
     "\"created_at\":\"2026-11-29T01:00:00Z\","
     "\"expires_at\":\"2026-11-29T00:59:59Z\"}",
     NUDGEL_ERR_INVALID_FIELD, "expires_at"},
    {"expires bad date",
     "{" T "\"to\":\"+254722000000\",\"body\":\"x\","
     "\"expires_at\":\"2026-02-30T00:00:00Z\"}",
     NUDGEL_ERR_INVALID_FIELD, "expires_at"},
    {"metadata not object", "{" T "\"to\":\"+254722000000\",\"body\":\"x\",\"metadata\":\"m\"}",
     NUDGEL_ERR_INVALID_FIELD, "metadata"},
};

static void test_message_table(void **state)
{
    (void)state;
    nudgel_job_parse_opts_t opts = {
        .fill_defaults = true, .normalise_to = true, .default_country = "KE"};
    size_t good = 0, bad = 0;
    for (size_t i = 0; i < sizeof(message_cases) / sizeof(message_cases[0]); i++) {
        const job_case_t *c = &message_cases[i];
        nudgel_message_job_t job;
        nudgel_field_error_t ferr = {{0}, {0}};
        nudgel_err_t err = nudgel_message_job_parse(c->json, strlen(c->json), &opts, &job, &ferr);
        if (err != c->expected || (c->field && strcmp(ferr.field, c->field) != 0))
            fail_msg("case \"%s\": got %s field \"%s\" (%s); expected %s field \"%s\"", c->name,
                     nudgel_err_name(err), ferr.field, ferr.reason, nudgel_err_name(c->expected),
                     c->field ? c->field : "");
        if (err == NUDGEL_OK) {
            good++;
            assert_non_null(job.id);
            assert_int_equal(strlen(job.id), 36);
            assert_true(job.created_at_ms > 0);
            assert_int_equal(job.to[0], '+');
        } else {
            bad++;
            assert_true(ferr.reason[0] != '\0');
            assert_null(job.doc);
        }
        nudgel_message_job_clear(&job);
    }
    assert_true(good + bad >= 40);
    assert_true(good >= 10 && bad >= 30);
}

static void test_too_large(void **state)
{
    (void)state;
    static char big[70000];
    int n = snprintf(big, sizeof(big),
                     "{" T "\"to\":\"+254722000000\",\"body\":\"x\",\"metadata\":"
                     "{\"pad\":\"");
    memset(big + n, 'a', 66000);
    strcpy(big + n + 66000, "\"}}");
    nudgel_job_parse_opts_t opts = {.fill_defaults = true};
    nudgel_message_job_t job;
    nudgel_field_error_t ferr;
    assert_int_equal(nudgel_message_job_parse(big, strlen(big), &opts, &job, &ferr),
                     NUDGEL_ERR_TOO_LARGE);
    assert_string_equal(ferr.field, "(job)");
    /* A larger configured cap accepts the same job. */
    opts.max_bytes = 128 * 1024;
    assert_int_equal(nudgel_message_job_parse(big, strlen(big), &opts, &job, &ferr), NUDGEL_OK);
    nudgel_message_job_clear(&job);
}

static void test_body_length_in_characters(void **state)
{
    (void)state;
    /* 1600 two-byte characters are fine, 1601 are not: the cap counts characters. */
    static char json[8192];
    for (int chars = 1600; chars <= 1601; chars++) {
        int n = snprintf(json, sizeof(json), "{" T "\"to\":\"+254722000000\",\"body\":\"");
        for (int i = 0; i < chars; i++) {
            json[n++] = (char)0xc3; /* é */
            json[n++] = (char)0xa9;
        }
        strcpy(json + n, "\"}");
        nudgel_message_job_t job;
        nudgel_field_error_t ferr;
        nudgel_job_parse_opts_t opts = {.fill_defaults = true};
        nudgel_err_t err = nudgel_message_job_parse(json, strlen(json), &opts, &job, &ferr);
        assert_int_equal(err, chars == 1600 ? NUDGEL_OK : NUDGEL_ERR_INVALID_FIELD);
        nudgel_message_job_clear(&job);
    }
}

static void test_worker_mode_requires_id_and_created_at(void **state)
{
    (void)state;
    /* Workers parse without fill_defaults: a job without id is malformed. */
    const char *json = "{" T "\"to\":\"+254722000000\",\"body\":\"x\"}";
    nudgel_message_job_t job;
    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t opts = {0};
    assert_int_equal(nudgel_message_job_parse(json, strlen(json), &opts, &job, &ferr),
                     NUDGEL_ERR_INVALID_FIELD);
    assert_string_equal(ferr.field, "id");
    const char *with_id = "{" ID T "\"to\":\"+254722000000\",\"body\":\"x\"}";
    assert_int_equal(nudgel_message_job_parse(with_id, strlen(with_id), &opts, &job, &ferr),
                     NUDGEL_ERR_INVALID_FIELD);
    assert_string_equal(ferr.field, "created_at");
}

static const job_case_t webhook_cases[] = {
    {"endpoint",
     "{\"tenant_id\":\"acme\",\"endpoint_id\":\"01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e\","
     "\"event_type\":\"message.delivered\",\"event_id\":\"evt_1\",\"payload\":{}}",
     NUDGEL_OK, NULL},
    {"url",
     "{\"tenant_id\":\"acme\",\"url\":\"https://example.com/hook\","
     "\"event_type\":\"contact.created\",\"event_id\":\"e:1\",\"payload\":{\"a\":1}}",
     NUDGEL_OK, NULL},
    {"both targets",
     "{\"tenant_id\":\"acme\",\"url\":\"https://e.com\",\"endpoint_id\":"
     "\"01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0e\",\"event_type\":\"a.b\","
     "\"event_id\":\"e\",\"payload\":{}}",
     NUDGEL_ERR_INVALID_FIELD, "endpoint_id"},
    {"no target",
     "{\"tenant_id\":\"acme\",\"event_type\":\"a.b\",\"event_id\":\"e\",\"payload\":{}}",
     NUDGEL_ERR_INVALID_FIELD, "endpoint_id"},
    {"ftp url",
     "{\"tenant_id\":\"acme\",\"url\":\"ftp://e.com\",\"event_type\":\"a.b\","
     "\"event_id\":\"e\",\"payload\":{}}",
     NUDGEL_ERR_INVALID_FIELD, "url"},
    {"event type one word",
     "{\"tenant_id\":\"acme\",\"url\":\"https://e.com\",\"event_type\":"
     "\"delivered\",\"event_id\":\"e\",\"payload\":{}}",
     NUDGEL_ERR_INVALID_FIELD, "event_type"},
    {"event id spaces",
     "{\"tenant_id\":\"acme\",\"url\":\"https://e.com\",\"event_type\":\"a.b\","
     "\"event_id\":\"e 1\",\"payload\":{}}",
     NUDGEL_ERR_INVALID_FIELD, "event_id"},
    {"event id dot (webhook-id forbids it)",
     "{\"tenant_id\":\"acme\",\"url\":\"https://e.com\",\"event_type\":\"a.b\","
     "\"event_id\":\"evt.1\",\"payload\":{}}",
     NUDGEL_ERR_INVALID_FIELD, "event_id"},
    {"payload array",
     "{\"tenant_id\":\"acme\",\"url\":\"https://e.com\",\"event_type\":\"a.b\","
     "\"event_id\":\"e\",\"payload\":[]}",
     NUDGEL_ERR_INVALID_FIELD, "payload"},
    {"payload missing",
     "{\"tenant_id\":\"acme\",\"url\":\"https://e.com\",\"event_type\":\"a.b\","
     "\"event_id\":\"e\"}",
     NUDGEL_ERR_INVALID_FIELD, "payload"},
};

static void test_webhook_table(void **state)
{
    (void)state;
    nudgel_job_parse_opts_t opts = {.fill_defaults = true};
    for (size_t i = 0; i < sizeof(webhook_cases) / sizeof(webhook_cases[0]); i++) {
        const job_case_t *c = &webhook_cases[i];
        nudgel_webhook_job_t job;
        nudgel_field_error_t ferr = {{0}, {0}};
        nudgel_err_t err = nudgel_webhook_job_parse(c->json, strlen(c->json), &opts, &job, &ferr);
        if (err != c->expected || (c->field && strcmp(ferr.field, c->field) != 0))
            fail_msg("case \"%s\": got %s field \"%s\" (%s)", c->name, nudgel_err_name(err),
                     ferr.field, ferr.reason);
        nudgel_webhook_job_clear(&job);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_table),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_body_length_in_characters),
        cmocka_unit_test(test_worker_mode_requires_id_and_created_at),
        cmocka_unit_test(test_webhook_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
