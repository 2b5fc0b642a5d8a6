/*
 * test_carrier_sim.c — unit tests of the simulator's pure parts: form
 * decoding, the ledger map, fault decisions from a seeded RNG, the token
 * bucket, number normalisation and segment counting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim_common.h"
#include "sim_dlr.h"
#include "sim_fault.h"
#include "sim_form.h"
#include "sim_ledger.h"

static void test_url_decode(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"", ""},
        {"plain", "plain"},
        {"a+b", "a b"},
        {"a%20b", "a b"},
        {"%2B254711000001", "+254711000001"},
        {"caf%C3%A9", "caf\xc3\xa9"},
        {"100%", "100%"},   /* a lone '%' stays */
        {"%4", "%4"},       /* short escape stays */
        {"%zz%41", "%zzA"}, /* bad escape stays, good one decodes */
        {"%3d%3D", "=="},   /* either case */
        {"http%3A%2F%2Fh%2Fp%3Fa%3D1%26b%3D2", "http://h/p?a=1&b=2"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s", cases[i].in);
        size_t n = sim_url_decode(buf, strlen(buf));
        assert_string_equal(buf, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
    }
}

static void test_form_parse(void **state)
{
    sim_form_t form;
    const char *body = "username=sandbox&to=%2B254711000001%2C%2B254711000002&message=Hello+"
                       "world%21&&from=&flag&to=second";
    (void)state;
    assert_int_equal(sim_form_parse(body, strlen(body), &form), 0);
    assert_int_equal(form.count, 6);
    assert_string_equal(sim_form_get(&form, "username"), "sandbox");
    assert_string_equal(sim_form_get(&form, "to"), "+254711000001,+254711000002"); /* first wins */
    assert_string_equal(sim_form_get(&form, "message"), "Hello world!");
    assert_string_equal(sim_form_get(&form, "from"), "");
    assert_string_equal(sim_form_get(&form, "flag"), "");
    assert_null(sim_form_get(&form, "missing"));
    sim_form_free(&form);

    /* Not NUL-terminated input: only len bytes count. */
    assert_int_equal(sim_form_parse("a=1&b=2XXXX", 7, &form), 0);
    assert_string_equal(sim_form_get(&form, "b"), "2");
    sim_form_free(&form);

    assert_int_equal(sim_form_parse("", 0, &form), 0);
    assert_int_equal(form.count, 0);
    sim_form_free(&form);
}

static void test_form_too_many_fields(void **state)
{
    sim_buf_t b;
    sim_form_t form;
    (void)state;
    sim_buf_init(&b, 1 << 16);
    for (int i = 0; i <= SIM_FORM_MAX_FIELDS; i++)
        sim_buf_printf(&b, "%sk%d=v", i ? "&" : "", i);
    assert_int_equal(sim_form_parse(b.data, b.len, &form), -1);
    sim_form_free(&form);
    sim_buf_free(&b);
}

static void test_buf_cap_and_escape(void **state)
{
    sim_buf_t b;
    (void)state;
    sim_buf_init(&b, 8);
    assert_int_equal(sim_buf_puts(&b, "12345678"), 0);
    assert_int_equal(sim_buf_puts(&b, "9"), -1);
    assert_true(b.overflow);
    assert_string_equal(b.data, "12345678");
    sim_buf_free(&b);

    sim_buf_init(&b, 256);
    sim_buf_form_escape(&b, "+254 7/a&b=c~");
    assert_string_equal(b.data, "%2B254+7%2Fa%26b%3Dc%7E");
    sim_buf_free(&b);
}

static void test_number_normalise(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: rejected */
    } cases[] = {
        {"+254711000001", "+254711000001"},
        {"254711000001", "+254711000001"},
        {" +2348031234567 ", "+2348031234567"},
        {"+256772123456", "+256772123456"},
        {"+123456", NULL},           /* 6 digits: too short */
        {"+1234567890123456", NULL}, /* 16 digits: too long */
        {"+25471100000a", NULL},
        {"++254711000001", NULL},
        {"", NULL},
        {"07110000001", "+07110000001"}, /* digits only: the regexes decide */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[SIM_NUMBER_MAX];
        int rc = sim_number_normalise(cases[i].in, out);
        if (!cases[i].out) {
            assert_int_equal(rc, -1);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_string_equal(out, cases[i].out);
    }
    assert_string_equal(sim_number_currency("+254711000001"), "KES");
    assert_string_equal(sim_number_currency("+2348031234567"), "NGN");
    assert_string_equal(sim_number_currency("+256772123456"), "UGX");
    assert_string_equal(sim_number_currency("+14155550100"), "USD");
}

static void test_segments(void **state)
{
    char text[400];
    sim_encoding_t enc;
    (void)state;
    assert_int_equal(sim_text_segments("", 0, &enc), 1);
    assert_int_equal(sim_text_segments("Hello", 5, &enc), 1);
    assert_int_equal(enc, SIM_ENC_GSM7);

    memset(text, 'a', sizeof(text));
    assert_int_equal(sim_text_segments(text, 160, &enc), 1);
    assert_int_equal(sim_text_segments(text, 161, &enc), 2);
    assert_int_equal(sim_text_segments(text, 306, &enc), 2);
    assert_int_equal(sim_text_segments(text, 307, &enc), 3);

    /* Extension characters count two septets: 80 '{' are 160 septets. */
    memset(text, '{', 81);
    assert_int_equal(sim_text_segments(text, 80, &enc), 1);
    assert_int_equal(sim_text_segments(text, 81, &enc), 2);
    assert_int_equal(enc, SIM_ENC_GSM7);

    /* é and € are GSM; a backtick is not. */
    assert_int_equal(sim_text_segments("caf\xc3\xa9 \xe2\x82\xac", 9, &enc), 1);
    assert_int_equal(enc, SIM_ENC_GSM7);
    assert_int_equal(sim_text_segments("`", 1, &enc), 1);
    assert_int_equal(enc, SIM_ENC_UCS2);

    /* UCS-2: 70 units single, 67 per part; an emoji is two units. */
    char ucs[400];
    size_t len = 0;
    for (int i = 0; i < 70; i++) {
        memcpy(ucs + len, "\xd0\x96", 2); /* Ж */
        len += 2;
    }
    assert_int_equal(sim_text_segments(ucs, len, &enc), 1);
    assert_int_equal(enc, SIM_ENC_UCS2);
    memcpy(ucs + len, "\xf0\x9f\x98\x80", 4); /* 😀 */
    assert_int_equal(sim_text_segments(ucs, len + 4, &enc), 2);
}

static void test_sha256(void **state)
{
    char hex[65];
    (void)state;
    sim_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_secret_equal(void **state)
{
    (void)state;
    assert_true(sim_secret_equal("key", "key"));
    assert_false(sim_secret_equal("kez", "key"));
    assert_false(sim_secret_equal("key1", "key"));
    assert_false(sim_secret_equal("", ""));
}

static void test_ledger_accept_and_duplicates(void **state)
{
    sim_ledger_t *l = sim_ledger_new(1000);
    sim_accept_result_t res;
    (void)state;
    assert_non_null(l);

    /* Infobip: idempotent by messageId, a repeat is an attempt not an SMS. */
    assert_int_equal(sim_ledger_accept(l, SIM_DIALECT_INFOBIP, "ref-1", "+254711000001", "ref-1",
                                       true, 1000, &res),
                     0);
    assert_int_equal(res.count, 1);
    assert_int_equal(sim_ledger_accept(l, SIM_DIALECT_INFOBIP, "ref-1", "+254711000001", "other",
                                       true, 2000, &res),
                     0);
    assert_int_equal(res.count, 2);
    assert_string_equal(res.message_id, "ref-1"); /* the first id is kept */

    /* AT: not idempotent, a repeat is another SMS. */
    sim_ledger_accept(l, SIM_DIALECT_AT, "+254711000002:abc", "+254711000002", "ATXid_1", false,
                      1000, &res);
    sim_ledger_accept(l, SIM_DIALECT_AT, "+254711000002:abc", "+254711000002", "ATXid_2", false,
                      1000, &res);
    sim_ledger_accept(l, SIM_DIALECT_AT, "+254711000002:abc", "+254711000002", "ATXid_3", false,
                      1000, &res);
    assert_int_equal(res.count, 3);
    sim_ledger_accept(l, SIM_DIALECT_AT, "+254711000003:abc", "+254711000003", "ATXid_4", false,
                      1000, &res);

    assert_int_equal(sim_ledger_total(l, SIM_C_ACCEPTED), 6);
    assert_int_equal(sim_ledger_total(l, SIM_C_SMS), 5);
    assert_int_equal(sim_ledger_total(l, SIM_C_DUPLICATE_ATTEMPTS), 3);
    assert_int_equal(sim_ledger_duplicates(l), 2); /* keys accepted more than once */
    assert_int_equal(sim_ledger_key_count(l), 3);

    json_t *one = sim_ledger_json(l, false, "ref-1", 10);
    json_t *entry = json_array_get(json_object_get(one, "entries"), 0);
    assert_non_null(entry);
    assert_int_equal(json_integer_value(json_object_get(entry, "count")), 2);
    assert_string_equal(json_string_value(json_object_get(entry, "dialect")), "infobip");
    assert_string_equal(json_string_value(json_object_get(entry, "number")), "+254711000001");
    json_decref(one);

    json_t *summary = sim_ledger_json(l, true, NULL, 10);
    assert_null(json_object_get(summary, "entries"));
    assert_int_equal(json_integer_value(json_object_get(summary, "duplicates")), 2);
    json_t *totals = json_object_get(summary, "totals");
    assert_int_equal(json_integer_value(json_object_get(totals, "sms")), 5);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(summary, "by_dialect"), "at"), "accepted")),
        4);
    json_decref(summary);

    sim_ledger_reset(l);
    assert_int_equal(sim_ledger_key_count(l), 0);
    assert_int_equal(sim_ledger_total(l, SIM_C_ACCEPTED), 0);
    assert_int_equal(sim_ledger_duplicates(l), 0);
    sim_ledger_destroy(l);
}

static void test_ledger_fault_then_accept(void **state)
{
    sim_ledger_t *l = sim_ledger_new(10);
    sim_accept_result_t res;
    (void)state;
    sim_ledger_fault(l, SIM_DIALECT_GENERIC, "job-1", "+256772123456", 1000);
    sim_ledger_fault(l, SIM_DIALECT_GENERIC, "job-1", "+256772123456", 1500);
    assert_int_equal(sim_ledger_total(l, SIM_C_ACCEPTED), 0);
    sim_ledger_accept(l, SIM_DIALECT_GENERIC, "job-1", "+256772123456", "gen_abc", true, 2000,
                      &res);
    assert_int_equal(res.count, 1);
    assert_string_equal(res.message_id, "gen_abc");
    json_t *j = sim_ledger_json(l, false, "job-1", 10);
    json_t *e = json_array_get(json_object_get(j, "entries"), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "faults")), 2);
    assert_int_equal(json_integer_value(json_object_get(e, "count")), 1);
    assert_string_equal(json_string_value(json_object_get(e, "message_id")), "gen_abc");
    json_decref(j);
    assert_int_equal(sim_ledger_duplicates(l), 0);
    sim_ledger_destroy(l);
}

static void test_ledger_full(void **state)
{
    sim_ledger_t *l = sim_ledger_new(3);
    sim_accept_result_t res;
    char key[32];
    (void)state;
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        int rc =
            sim_ledger_accept(l, SIM_DIALECT_KANNEL, key, "+254711000001", "id", false, 1, &res);
        assert_int_equal(rc, i < 3 ? 0 : -1);
    }
    /* An existing key still counts when full. */
    assert_int_equal(
        sim_ledger_accept(l, SIM_DIALECT_KANNEL, "k0", "+254711000001", "id", false, 2, &res), 0);
    assert_int_equal(res.count, 2);
    assert_int_equal(sim_ledger_key_count(l), 3);
    assert_int_equal(sim_ledger_total(l, SIM_C_LEDGER_FULL), 2);
    assert_int_equal(sim_ledger_total(l, SIM_C_SMS), 6);
    json_t *j = sim_ledger_json(l, true, NULL, 0);
    assert_true(json_is_true(json_object_get(j, "ledger_full")));
    json_decref(j);
    sim_ledger_destroy(l);
}

static void test_ledger_many_keys_and_limit(void **state)
{
    sim_ledger_t *l = sim_ledger_new(100000);
    sim_accept_result_t res;
    char key[32];
    (void)state;
    for (int i = 0; i < 20000; i++) { /* grows every shard several times */
        snprintf(key, sizeof(key), "key-%d", i);
        sim_ledger_accept(l, SIM_DIALECT_INFOBIP, key, "+254711000001", key, true, i, &res);
    }
    for (int i = 0; i < 20000; i += 1000) {
        snprintf(key, sizeof(key), "key-%d", i);
        sim_ledger_accept(l, SIM_DIALECT_INFOBIP, key, "+254711000001", key, true, i, &res);
        assert_int_equal(res.count, 2);
    }
    assert_int_equal(sim_ledger_key_count(l), 20000);
    assert_int_equal(sim_ledger_duplicates(l), 20);
    json_t *j = sim_ledger_json(l, false, NULL, 50);
    assert_int_equal(json_array_size(json_object_get(j, "entries")), 50);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    sim_ledger_destroy(l);
}

static void test_fault_decide_seeded(void **state)
{
    sim_fault_profile_t p = {.latency_ms = 100,
                             .jitter_ms = 50,
                             .error_5xx_permille = 100,
                             .error_429_permille = 200,
                             .retry_after_s = 7,
                             .timeout_permille = 50,
                             .timeout_hold_ms = 90000};
    sim_rng_t a, b;
    int counts[5] = {0};
    (void)state;
    sim_rng_seed(&a, 42);
    sim_rng_seed(&b, 42);
    for (int i = 0; i < 100000; i++) {
        sim_fault_decision_t da, db;
        sim_fault_decide(&p, &a, &da);
        sim_fault_decide(&p, &b, &db);
        assert_memory_equal(&da, &db, sizeof(da)); /* same seed, same faults */
        counts[da.kind]++;
        switch (da.kind) {
        case SIM_FAULT_NONE:
            assert_in_range(da.delay_ms, 100, 150);
            assert_int_equal(da.status, 0);
            break;
        case SIM_FAULT_5XX:
            assert_true(da.status == 500 || da.status == 502 || da.status == 503);
            assert_in_range(da.delay_ms, 100, 150);
            break;
        case SIM_FAULT_429:
            assert_int_equal(da.status, 429);
            assert_int_equal(da.retry_after_s, 7);
            break;
        case SIM_FAULT_TIMEOUT:
            assert_int_equal(da.delay_ms, 90000);
            break;
        case SIM_FAULT_THROTTLED:
            fail_msg("the draw never throttles; the bucket does");
        }
    }
    /* Shares within 10% of the configured thousandths over 100 000 draws. */
    assert_in_range(counts[SIM_FAULT_5XX], 9000, 11000);
    assert_in_range(counts[SIM_FAULT_429], 18000, 22000);
    assert_in_range(counts[SIM_FAULT_TIMEOUT], 4500, 5500);
    assert_in_range(counts[SIM_FAULT_NONE], 63000, 67000);
}

static void test_fault_extremes_and_check(void **state)
{
    sim_fault_profile_t p = {0};
    sim_fault_decision_t d;
    sim_rng_t rng;
    char err[128];
    (void)state;
    sim_rng_seed(&rng, 7);
    for (int i = 0; i < 1000; i++) {
        sim_fault_decide(&p, &rng, &d);
        assert_int_equal(d.kind, SIM_FAULT_NONE);
        assert_int_equal(d.delay_ms, 0);
    }
    p.error_5xx_permille = 1000;
    for (int i = 0; i < 1000; i++) {
        sim_fault_decide(&p, &rng, &d);
        assert_int_equal(d.kind, SIM_FAULT_5XX);
    }
    assert_int_equal(sim_fault_profile_check(&p, err, sizeof(err)), 0);
    p.error_429_permille = 1;
    assert_int_equal(sim_fault_profile_check(&p, err, sizeof(err)), -1);
    p.error_429_permille = 0;
    p.latency_ms = -1;
    assert_int_equal(sim_fault_profile_check(&p, err, sizeof(err)), -1);
}

static void test_bucket(void **state)
{
    sim_bucket_t b;
    int64_t t = 1000000;
    (void)state;
    sim_bucket_init(&b, 10, 10, t);
    for (int i = 0; i < 10; i++)
        assert_true(sim_bucket_take(&b, t));
    assert_false(sim_bucket_take(&b, t));
    assert_false(sim_bucket_take(&b, t + 50000)); /* half a token */
    assert_true(sim_bucket_take(&b, t + 100000)); /* one token after 100 ms */
    assert_false(sim_bucket_take(&b, t + 100000));
    /* Idle for a minute refills only to the burst. */
    t += 60000000;
    int allowed = 0;
    for (int i = 0; i < 100; i++)
        allowed += sim_bucket_take(&b, t);
    assert_int_equal(allowed, 10);
    /* A clock going backwards never adds tokens. */
    assert_false(sim_bucket_take(&b, t - 1000000));

    sim_bucket_init(&b, 0, 0, t);
    for (int i = 0; i < 1000; i++)
        assert_true(sim_bucket_take(&b, t));
}

static void test_rng_below_and_ids(void **state)
{
    sim_rng_t rng;
    char id[64];
    (void)state;
    sim_rng_seed(&rng, 1);
    for (int i = 0; i < 10000; i++)
        assert_true(sim_rng_below(&rng, 3) < 3);
    assert_int_equal(sim_rng_below(&rng, 0), 0);
    sim_random_id(&rng, "ATXid_", 32, id, sizeof(id));
    assert_int_equal(strlen(id), 38);
    assert_memory_equal(id, "ATXid_", 6);
    for (size_t i = 6; i < strlen(id); i++)
        assert_non_null(strchr("0123456789abcdef", id[i]));
}

/* The report decided for a key is on its entry; a key with none shows no "dlr". */
static void test_ledger_dlr_outcome(void **state)
{
    sim_ledger_t *l = sim_ledger_new(10);
    sim_accept_result_t res;
    (void)state;
    sim_ledger_accept(l, SIM_DIALECT_INFOBIP, "job-1", "+254711000001", "job-1", true, 1, &res);
    sim_ledger_accept(l, SIM_DIALECT_AT, "+254711000002:ab", "+254711000002", "ATXid_1", false, 1,
                      &res);
    sim_ledger_accept(l, SIM_DIALECT_AT, "+254711000003:ab", "+254711000003", "ATXid_2", false, 1,
                      &res);
    sim_ledger_dlr(l, "job-1", SIM_DLR_DELIVERED, 2, true);
    sim_ledger_dlr(l, "+254711000002:ab", SIM_DLR_NONE, 0, false);
    sim_ledger_dlr(l, "absent", SIM_DLR_FAILED, 1, false); /* no entry: nothing happens */
    assert_int_equal(sim_ledger_key_count(l), 3);

    json_t *j = sim_ledger_json(l, false, "job-1", 10);
    json_t *e = json_array_get(json_object_get(j, "entries"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "dlr")), "delivered");
    assert_int_equal(json_integer_value(json_object_get(e, "dlr_reports")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "dlr_url")), "request");
    json_decref(j);
    j = sim_ledger_json(l, false, "+254711000002:ab", 10);
    e = json_array_get(json_object_get(j, "entries"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "dlr")), "none");
    assert_int_equal(json_integer_value(json_object_get(e, "dlr_reports")), 0);
    assert_string_equal(json_string_value(json_object_get(e, "dlr_url")), "configured");
    json_decref(j);
    j = sim_ledger_json(l, false, "+254711000003:ab", 10);
    e = json_array_get(json_object_get(j, "entries"), 0);
    assert_null(json_object_get(e, "dlr"));
    json_decref(j);

    /* A second SMS of a non-idempotent key: its report is the latest, reports add up. */
    sim_ledger_dlr(l, "job-1", SIM_DLR_FAILED, 1, true);
    j = sim_ledger_json(l, false, "job-1", 10);
    e = json_array_get(json_object_get(j, "entries"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "dlr")), "failed");
    assert_int_equal(json_integer_value(json_object_get(e, "dlr_reports")), 3);
    json_decref(j);
    assert_null(sim_dlr_outcome_name(SIM_DLR_UNSET));
    sim_ledger_destroy(l);
}

/* A refused callback is sent again after a back-off doubling from the base up to the cap. */
static void test_dlr_backoff(void **state)
{
    (void)state;
    assert_int_equal(sim_dlr_backoff_ms(1, 500, 30000), 500);
    assert_int_equal(sim_dlr_backoff_ms(2, 500, 30000), 1000);
    assert_int_equal(sim_dlr_backoff_ms(4, 500, 30000), 4000);
    assert_int_equal(sim_dlr_backoff_ms(7, 500, 30000), 30000);
    assert_int_equal(sim_dlr_backoff_ms(1000, 500, 30000), 30000);
    assert_int_equal(sim_dlr_backoff_ms(3, 50, 60), 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_decode),
        cmocka_unit_test(test_form_parse),
        cmocka_unit_test(test_form_too_many_fields),
        cmocka_unit_test(test_buf_cap_and_escape),
        cmocka_unit_test(test_number_normalise),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_secret_equal),
        cmocka_unit_test(test_ledger_accept_and_duplicates),
        cmocka_unit_test(test_ledger_fault_then_accept),
        cmocka_unit_test(test_ledger_full),
        cmocka_unit_test(test_ledger_many_keys_and_limit),
        cmocka_unit_test(test_ledger_dlr_outcome),
        cmocka_unit_test(test_fault_decide_seeded),
        cmocka_unit_test(test_fault_extremes_and_check),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_rng_below_and_ids),
        cmocka_unit_test(test_dlr_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
