/*
 * test_retry_schedule.c — the webhook retry ladder: parsing, values, jitter
 * bounds, the last attempt.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/webhooks/retry_schedule.h"

static void test_default_ladder(void **state)
{
    (void)state;
    static const int64_t expected[] = {5000,     300000,   1800000, 7200000,
                                       18000000, 36000000, 36000000};
    nudgel_retry_schedule_t s;
    char errstr[256];
    assert_int_equal(nudgel_retry_schedule_parse(NUDGEL_RETRY_SCHEDULE_DEFAULT,
                                                 NUDGEL_RETRY_JITTER_DEFAULT, &s, errstr,
                                                 sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(s.count, 7);
    assert_int_equal(nudgel_retry_schedule_attempts(&s), 8);
    const uint64_t mid = UINT64_MAX / 2;
    for (unsigned n = 1; n <= 7; n++) {
        assert_int_equal(s.delays_ms[n - 1], expected[n - 1]);
        int64_t lo = nudgel_retry_schedule_delay_ms(&s, n, 0);
        int64_t hi = nudgel_retry_schedule_delay_ms(&s, n, UINT64_MAX);
        int64_t m = nudgel_retry_schedule_delay_ms(&s, n, mid);
        /* Exactly ±20% at the ends of the random range, the base in the middle. */
        assert_int_equal(lo, expected[n - 1] * 8 / 10);
        assert_int_equal(hi, expected[n - 1] * 12 / 10);
        assert_true(m >= expected[n - 1] - 1 && m <= expected[n - 1] + 1);
        assert_false(nudgel_retry_schedule_is_last(&s, n));
    }
    assert_true(nudgel_retry_schedule_is_last(&s, 8));
    assert_int_equal(nudgel_retry_schedule_delay_ms(&s, 8, mid), -1);
    assert_int_equal(nudgel_retry_schedule_delay_ms(&s, 0, mid), -1);
}

static void test_jitter_bounds_sweep(void **state)
{
    (void)state;
    nudgel_retry_schedule_t s;
    char errstr[256];
    assert_int_equal(nudgel_retry_schedule_parse("10s", 0.2, &s, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    uint64_t r = 0x9e3779b97f4a7c15ULL;
    int64_t seen_lo = INT64_MAX, seen_hi = 0;
    for (int i = 0; i < 10000; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17; /* xorshift64 */
        int64_t d = nudgel_retry_schedule_delay_ms(&s, 1, r);
        assert_true(d >= 8000 && d <= 12000);
        seen_lo = d < seen_lo ? d : seen_lo;
        seen_hi = d > seen_hi ? d : seen_hi;
    }
    /* The spread is really used, not collapsed to the base. */
    assert_true(seen_lo < 8200);
    assert_true(seen_hi > 11800);

    /* No jitter: always the base. */
    assert_int_equal(nudgel_retry_schedule_parse("10s", 0, &s, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(nudgel_retry_schedule_delay_ms(&s, 1, 0), 10000);
    assert_int_equal(nudgel_retry_schedule_delay_ms(&s, 1, UINT64_MAX), 10000);
    /* Another fraction: ±50%. */
    assert_int_equal(nudgel_retry_schedule_parse("10s", 0.5, &s, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_retry_schedule_delay_ms(&s, 1, 0), 5000);
    assert_int_equal(nudgel_retry_schedule_delay_ms(&s, 1, UINT64_MAX), 15000);
}

static void test_units_and_spaces(void **state)
{
    (void)state;
    nudgel_retry_schedule_t s;
    char errstr[256];
    assert_int_equal(
        nudgel_retry_schedule_parse(" 250ms, 2s ,1m,1h , 1d", 0.2, &s, errstr, sizeof(errstr)),
        NUDGEL_OK);
    assert_int_equal(s.count, 5);
    assert_int_equal(s.delays_ms[0], 250);
    assert_int_equal(s.delays_ms[1], 2000);
    assert_int_equal(s.delays_ms[2], 60000);
    assert_int_equal(s.delays_ms[3], 3600000);
    assert_int_equal(s.delays_ms[4], 86400000);
    /* Empty: no retries, the first attempt is the last. */
    assert_int_equal(nudgel_retry_schedule_parse("", 0.2, &s, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(s.count, 0);
    assert_true(nudgel_retry_schedule_is_last(&s, 1));
    assert_int_equal(nudgel_retry_schedule_delay_ms(&s, 1, 0), -1);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *needle;
    } cases[] = {
        {"5s,,5m", "delay 2 \"\""},
        {"5", "delay 1 \"5\" is not a number with a unit"},
        {"5s,5x", "delay 2 \"5x\""},
        {"s", "delay 1"},
        {"-5s", "delay 1"},
        {"5 s", "delay 1"},
        {"0s", "must be above 0"},
        {"8d", "at most 7d"},
        {"5s,99999999999999999999h", "delay 2"},
        {"5s,", "delay 2"},
        {"1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,"
         "1s,1s,1s,1s,1s",
         "more than 32"},
    };
    nudgel_retry_schedule_t s;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char errstr[256] = "";
        assert_int_equal(
            nudgel_retry_schedule_parse(cases[i].text, 0.2, &s, errstr, sizeof(errstr)),
            NUDGEL_ERR_CONFIG);
        if (!strstr(errstr, cases[i].needle))
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", cases[i].text, errstr, cases[i].needle);
    }
    char errstr[256];
    assert_int_equal(nudgel_retry_schedule_parse("5s", 1.0, &s, errstr, sizeof(errstr)),
                     NUDGEL_ERR_CONFIG);
    assert_int_equal(nudgel_retry_schedule_parse("5s", -0.1, &s, errstr, sizeof(errstr)),
                     NUDGEL_ERR_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_ladder),
        cmocka_unit_test(test_jitter_bounds_sweep),
        cmocka_unit_test(test_units_and_spaces),
        cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
