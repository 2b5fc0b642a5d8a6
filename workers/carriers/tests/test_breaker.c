/*
 * test_breaker.c — the circuit breaker over simulated time: opens on the
 * failure share once enough calls were seen, stays open for its period,
 * lets one probe through half-open, closes on a good probe and re-opens on
 * a bad one; successes keep it closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "nudgel/breaker.h"

#define SEC 1000000LL

static void test_opens_on_failure_share(void **state)
{
    (void)state;
    nudgel_breaker_t b;
    nudgel_breaker_init(&b, 20, 10, 0.5, 10 * SEC);
    for (int i = 0; i < 9; i++) { /* below min_calls: stays closed even at 100% failures */
        assert_true(nudgel_breaker_allow(&b, 0));
        nudgel_breaker_record(&b, true, 0);
    }
    assert_int_equal(b.state, NUDGEL_BREAKER_CLOSED);
    nudgel_breaker_record(&b, true, 0);
    assert_int_equal(b.state, NUDGEL_BREAKER_OPEN);
    assert_false(nudgel_breaker_allow(&b, 5 * SEC));
}

static void test_successes_keep_it_closed(void **state)
{
    (void)state;
    nudgel_breaker_t b;
    nudgel_breaker_init(&b, 20, 10, 0.5, 10 * SEC);
    for (int i = 0; i < 1000; i++) {
        assert_true(nudgel_breaker_allow(&b, i));
        nudgel_breaker_record(&b, i % 3 == 0, i); /* 33% failures < 50% */
    }
    assert_int_equal(b.state, NUDGEL_BREAKER_CLOSED);
}

static void test_window_forgets_old_failures(void **state)
{
    (void)state;
    nudgel_breaker_t b;
    nudgel_breaker_init(&b, 10, 10, 0.6, SEC);
    for (int i = 0; i < 5; i++)
        nudgel_breaker_record(&b, true, 0);
    for (int i = 0; i < 10; i++) /* pushes the failures out of the window */
        nudgel_breaker_record(&b, false, 0);
    for (int i = 0; i < 5; i++)
        nudgel_breaker_record(&b, true, 0);
    assert_int_equal(b.state, NUDGEL_BREAKER_CLOSED); /* 5 of the last 10 < 60% */
    nudgel_breaker_record(&b, true, 0);
    assert_int_equal(b.state, NUDGEL_BREAKER_OPEN); /* 6 of the last 10 */
}

/* The worker's timer half-opens it when the interval ends, without taking the probe. */
static void test_poll_half_opens_when_due(void **state)
{
    (void)state;
    nudgel_breaker_t b;
    nudgel_breaker_init(&b, 10, 2, 0.5, 2 * SEC);
    assert_false(nudgel_breaker_poll(&b, 0)); /* closed: nothing to do */
    nudgel_breaker_record(&b, true, 0);
    nudgel_breaker_record(&b, true, 0);
    assert_int_equal(b.state, NUDGEL_BREAKER_OPEN);
    assert_false(nudgel_breaker_poll(&b, 2 * SEC - 1));
    assert_int_equal(b.state, NUDGEL_BREAKER_OPEN);
    assert_true(nudgel_breaker_poll(&b, 2 * SEC));
    assert_int_equal(b.state, NUDGEL_BREAKER_HALF_OPEN);
    assert_false(nudgel_breaker_poll(&b, 3 * SEC));  /* already half-open */
    assert_true(nudgel_breaker_allow(&b, 3 * SEC));  /* the probe */
    assert_false(nudgel_breaker_allow(&b, 3 * SEC)); /* one at a time */
    nudgel_breaker_record(&b, false, 3 * SEC);
    assert_int_equal(b.state, NUDGEL_BREAKER_CLOSED);
}

static void test_half_open_probe(void **state)
{
    (void)state;
    nudgel_breaker_t b;
    nudgel_breaker_init(&b, 4, 4, 0.5, 10 * SEC);
    for (int i = 0; i < 4; i++)
        nudgel_breaker_record(&b, true, 0);
    assert_false(nudgel_breaker_allow(&b, 9 * SEC));
    assert_true(nudgel_breaker_allow(&b, 10 * SEC)); /* the one probe */
    assert_int_equal(b.state, NUDGEL_BREAKER_HALF_OPEN);
    assert_false(nudgel_breaker_allow(&b, 10 * SEC)); /* no second probe */
    nudgel_breaker_record(&b, true, 11 * SEC);        /* bad probe: open again */
    assert_int_equal(b.state, NUDGEL_BREAKER_OPEN);
    assert_false(nudgel_breaker_allow(&b, 20 * SEC));
    assert_true(nudgel_breaker_allow(&b, 21 * SEC));
    nudgel_breaker_record(&b, false, 21 * SEC); /* good probe: closed */
    assert_int_equal(b.state, NUDGEL_BREAKER_CLOSED);
    assert_true(nudgel_breaker_allow(&b, 21 * SEC));
    assert_string_equal(nudgel_breaker_state_name(b.state), "closed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_on_failure_share),
        cmocka_unit_test(test_successes_keep_it_closed),
        cmocka_unit_test(test_window_forgets_old_failures),
        cmocka_unit_test(test_half_open_probe),
        cmocka_unit_test(test_poll_half_opens_when_due),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
