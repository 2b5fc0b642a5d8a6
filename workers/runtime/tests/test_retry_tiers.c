/*
 * test_retry_tiers.c — the tier of a retry hop and the decision about a
 * retry tier's head (nudgel/retry_tiers.h), table-driven.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "nudgel/retry_tiers.h"

static const char *const msg_topics[] = {"m.5s", "m.30s", "m.2m", "m.10m"};
static const int64_t msg_delays[] = {5000, 30000, 120000, 600000};
static const nudgel_retry_tiers_t msg = {4, msg_topics, msg_delays};

static const char *const wh_topics[] = {"w.5s", "w.5m", "w.30m", "w.2h", "w.5h", "w.10h"};
static const int64_t wh_delays[] = {5000, 300000, 1800000, 7200000, 18000000, 36000000};
static const nudgel_retry_tiers_t wh = {6, wh_topics, wh_delays};

static void test_granularity(void **state)
{
    (void)state;
    assert_int_equal(nudgel_retry_granularity_ms(5000), 2500);
    assert_int_equal(nudgel_retry_granularity_ms(1000), 500);
    assert_int_equal(nudgel_retry_granularity_ms(200), NUDGEL_RETRY_GRANULARITY_MIN_MS);
    assert_int_equal(nudgel_retry_granularity_ms(0), NUDGEL_RETRY_GRANULARITY_MIN_MS);
}

static void test_tier_for_wait(void **state)
{
    (void)state;
    static const struct {
        const nudgel_retry_tiers_t *t;
        int64_t wait;
        size_t tier;
    } cases[] = {
        {&msg, 0, 0},
        {&msg, 1000, 0},
        {&msg, 5000, 0},
        {&msg, 20000, 0},
        {&msg, 22499, 0},
        {&msg, 22500, 1},
        {&msg, 30000, 1},
        {&msg, 89999, 1},
        {&msg, 90000, 2},
        {&msg, 3600000, 3},
        {&wh, 4000, 0},
        {&wh, 6000, 0},
        /* the ±20% jitter of a rung stays on its tier */
        {&wh, 240000, 1},
        {&wh, 360000, 1},
        {&wh, 1440000, 2},
        {&wh, 2160000, 2},
        {&wh, 28800000, 5},
        {&wh, 43200000, 5},
        {&wh, 14400000, 4},
        {&wh, 5760000, 3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t got = nudgel_retry_tier_for_wait(cases[i].t, cases[i].wait);
        if (got != cases[i].tier)
            fail_msg("case %zu: wait %lld → tier %zu, expected %zu", i, (long long)cases[i].wait,
                     got, cases[i].tier);
    }
    /* Unsorted tiers: the largest delay whose band starts at or below the wait. */
    static const char *const topics[] = {"b", "a", "c"};
    static const int64_t delays[] = {30000, 1000, 120000};
    nudgel_retry_tiers_t unsorted = {3, topics, delays};
    assert_int_equal(nudgel_retry_tier_for_wait(&unsorted, 100), 1);
    assert_int_equal(nudgel_retry_tier_for_wait(&unsorted, 25000), 0);
    assert_int_equal(nudgel_retry_tier_for_wait(&unsorted, 5000), 1);
    assert_int_equal(nudgel_retry_tier_of(&unsorted, "c"), 2);
    assert_int_equal(nudgel_retry_tier_of(&unsorted, "d"), -1);
}

enum { DUE = NUDGEL_RETRY_HEAD_DUE, WAIT = NUDGEL_RETRY_HEAD_WAIT, HOP = NUDGEL_RETRY_HEAD_HOP_ON };

static void test_head_decide(void **state)
{
    (void)state;
    /* Tier 0 of msg (5 s, g 2.5 s) unless said; now = 100000. */
    static const struct {
        const char *what;
        size_t tier;
        int64_t not_before, published, last_hop;
        bool followed;
        int want;
        int64_t until; /* WAIT */
        size_t to;     /* HOP */
    } cases[] = {
        {"due", 0, 100000, 95000, 0, true, DUE, 0, 0},
        {"no header", 0, 0, 95000, 0, true, DUE, 0, 0},
        {"in band, just published", 0, 105000, 100000, 0, true, WAIT, 105000, 0},
        {"in band +20%", 0, 106000, 100000, 0, true, WAIT, 106000, 0},
        {"within g of now", 0, 102000, 50000, 0, true, WAIT, 102000, 0},
        {"Retry-After 20 s, followed", 0, 120000, 100000, 0, true, HOP, 0, 0},
        {"Retry-After 20 s, alone", 0, 120000, 100000, 0, false, WAIT, 102500, 0},
        {"Retry-After 20 s, hopped 1 s ago", 0, 120000, 100000, 99000, true, WAIT, 101500, 0},
        {"Retry-After 20 s, hopped 3 s ago", 0, 120000, 100000, 97000, true, HOP, 0, 0},
        {"claim wait 30 s on the 5 s tier", 0, 130000, 100000, 0, true, HOP, 0, 1},
        {"10 min on the 30 s tier", 1, 700000, 100000, 0, true, HOP, 0, 3},
        {"30 s tier in band", 1, 130000, 100000, 0, true, WAIT, 130000, 0},
        {"published ahead of our clock", 0, 105000, 200000, 0, true, WAIT, 105000, 0},
        {"unknown timestamp", 0, 120000, -1, 0, true, HOP, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nudgel_retry_head_facts_t f = {.now_ms = 100000,
                                       .not_before_ms = cases[i].not_before,
                                       .published_ms = cases[i].published,
                                       .last_hop_on_ms = cases[i].last_hop,
                                       .followed = cases[i].followed};
        int64_t until = -1;
        size_t to = 99;
        int got = (int)nudgel_retry_head_decide(&msg, cases[i].tier, &f, &until, &to);
        if (got != cases[i].want)
            fail_msg("%s: decision %d, expected %d", cases[i].what, got, cases[i].want);
        if (got == WAIT && until != cases[i].until)
            fail_msg("%s: until %lld, expected %lld", cases[i].what, (long long)until,
                     (long long)cases[i].until);
        if (got == HOP && to != cases[i].to)
            fail_msg("%s: to tier %zu, expected %zu", cases[i].what, to, cases[i].to);
    }
}

/*
 * A head that hops on never comes back ahead of its time, and the hops of
 * one job are bounded: simulate a busy partition (always followed) where
 * the head is looked at every 100 ms.
 */
static void test_hop_count_bounded(void **state)
{
    (void)state;
    int64_t wait = 22000; /* the worst case: just under the 30 s tier's band */
    int64_t due = 100000 + wait, published = 100000, last_hop = 0;
    size_t tier = nudgel_retry_tier_for_wait(&msg, wait);
    int hops = 0;
    for (int64_t now = 100000; now < due + 1000; now += 100) {
        nudgel_retry_head_facts_t f = {.now_ms = now,
                                       .not_before_ms = due,
                                       .published_ms = published,
                                       .last_hop_on_ms = last_hop,
                                       .followed = true};
        int64_t until = 0;
        size_t to = 0;
        nudgel_retry_head_t what = nudgel_retry_head_decide(&msg, tier, &f, &until, &to);
        if (what == NUDGEL_RETRY_HEAD_DUE) {
            assert_true(now >= due);
            break;
        }
        if (what == NUDGEL_RETRY_HEAD_HOP_ON) {
            hops++;
            tier = to;
            published = now;
            last_hop = now;
        }
    }
    assert_true(hops >= 1);
    assert_true(hops <= wait / nudgel_retry_granularity_ms(msg_delays[0]) + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_granularity),
        cmocka_unit_test(test_tier_for_wait),
        cmocka_unit_test(test_head_decide),
        cmocka_unit_test(test_hop_count_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
