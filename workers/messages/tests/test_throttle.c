/*
 * test_throttle.c — token buckets over simulated time (rate, burst, rate
 * changes, slow rates polled often, a clock going back), the fleet share of
 * DESIGN §5, and the per-tenant table (caps, rate limits, LRU eviction of
 * idle tenants only).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/throttle.h"

#define MS  1000ll
#define SEC 1000000ll

static nudgel_throttle_bucket_t *bucket(double rate, uint32_t burst, int64_t now)
{
    nudgel_throttle_bucket_t *b = NULL;
    char errstr[128];
    assert_int_equal(nudgel_throttle_bucket_new(rate, burst, now, &b, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_non_null(b);
    return b;
}

/* Tries one token every @p step from @p from to @p to inclusive; returns how many it got. */
static unsigned drain(nudgel_throttle_bucket_t *b, int64_t from, int64_t to, int64_t step)
{
    unsigned got = 0;
    for (int64_t t = from; t <= to; t += step)
        while (nudgel_throttle_bucket_try_take(b, 1, t))
            got++;
    return got;
}

static void test_rate_over_time(void **state)
{
    (void)state;
    /* 10 tps for 10 s: 100 earned plus the 5 of the initial burst. */
    nudgel_throttle_bucket_t *b = bucket(10.0, 5, 0);
    unsigned got = drain(b, 0, 10 * SEC, 1 * MS);
    assert_true(got >= 100 && got <= 105);
    assert_int_equal(got, 105);
    nudgel_throttle_bucket_free(b);

    /* Polling coarsely (every 250 ms) loses nothing: tokens wait in the bucket. */
    b = bucket(10.0, 5, 0);
    assert_int_equal(drain(b, 0, 10 * SEC, 250 * MS), 105);
    nudgel_throttle_bucket_free(b);

    /* Polling more coarsely than the burst can hold does lose: the cap is the point. */
    b = bucket(10.0, 5, 0);
    assert_int_equal(drain(b, 0, 10 * SEC, 1 * SEC), 5 + 10 * 5);
    nudgel_throttle_bucket_free(b);

    /* 0.3 tps polled every 7 µs for 11 s: fractions are kept, 3 earned. */
    b = bucket(0.3, 1, 0);
    assert_int_equal(drain(b, 0, 11 * SEC, 7), 1 + 3);
    nudgel_throttle_bucket_free(b);
}

static void test_burst_and_next_available(void **state)
{
    (void)state;
    nudgel_throttle_bucket_t *b = bucket(10.0, 20, 0);
    assert_int_equal(nudgel_throttle_bucket_next_available(b, 1, 0), 0);
    assert_false(nudgel_throttle_bucket_try_take(b, 21, 0)); /* above burst: never */
    assert_int_equal(nudgel_throttle_bucket_next_available(b, 21, 0), INT64_MAX);
    assert_true(nudgel_throttle_bucket_try_take(b, 15, 0));
    assert_int_equal(drain(b, 0, 0, 1), 5);
    assert_false(nudgel_throttle_bucket_try_take(b, 1, 0));
    /* One token per 100 ms. */
    assert_int_equal(nudgel_throttle_bucket_next_available(b, 1, 0), 100 * MS);
    assert_int_equal(nudgel_throttle_bucket_next_available(b, 3, 0), 300 * MS);
    assert_int_equal(nudgel_throttle_bucket_next_available(b, 1, 40 * MS), 100 * MS);
    assert_false(nudgel_throttle_bucket_try_take(b, 1, 100 * MS - 1));
    assert_true(nudgel_throttle_bucket_try_take(b, 1, 100 * MS));
    assert_false(nudgel_throttle_bucket_try_take(b, 1, 100 * MS));
    /* A long idle refills to the burst, not beyond. */
    assert_true(fabs(nudgel_throttle_bucket_tokens(b, 3600 * SEC) - 20.0) < 1e-9);
    assert_int_equal(drain(b, 3600 * SEC, 3600 * SEC, 1), 20);
    nudgel_throttle_bucket_free(b);

    /* Rate 0: the burst, then never. */
    b = bucket(0.0, 2, 0);
    assert_int_equal(drain(b, 0, 10 * SEC, SEC), 2);
    assert_int_equal(nudgel_throttle_bucket_next_available(b, 1, 10 * SEC), INT64_MAX);
    nudgel_throttle_bucket_free(b);
}

static void test_set_rate_keeps_earned_tokens(void **state)
{
    (void)state;
    char errstr[128];
    /* 10 tps for 5 s, then 20 tps for 5 s: 1 + 50 + 100. */
    nudgel_throttle_bucket_t *b = bucket(10.0, 1, 0);
    unsigned got = drain(b, 0, 5 * SEC, 1 * MS);
    assert_int_equal(got, 51);
    assert_int_equal(nudgel_throttle_bucket_set_rate(b, 20.0, 1, 5 * SEC, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    got += drain(b, 5 * SEC + 1 * MS, 10 * SEC, 1 * MS);
    assert_int_equal(got, 151);
    nudgel_throttle_bucket_free(b);

    /* Tokens earned at the old rate survive the change, unrounded. */
    b = bucket(1.0, 10, 0);
    assert_true(nudgel_throttle_bucket_try_take(b, 10, 0));
    assert_int_equal(nudgel_throttle_bucket_set_rate(b, 100.0, 10, 3 * SEC, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_true(fabs(nudgel_throttle_bucket_tokens(b, 3 * SEC) - 3.0) < 1e-9);
    assert_true(fabs(nudgel_throttle_bucket_tokens(b, 3 * SEC + 50 * MS) - 8.0) < 1e-9);
    /* A smaller burst clips what is held. */
    assert_int_equal(
        nudgel_throttle_bucket_set_rate(b, 100.0, 2, 3 * SEC + 50 * MS, errstr, sizeof(errstr)),
        NUDGEL_OK);
    assert_true(fabs(nudgel_throttle_bucket_tokens(b, 3 * SEC + 50 * MS) - 2.0) < 1e-9);
    /* Bad values are refused and change nothing. */
    assert_int_equal(nudgel_throttle_bucket_set_rate(b, -1.0, 2, 4 * SEC, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_bucket_set_rate(b, NAN, 2, 4 * SEC, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_bucket_set_rate(b, 1.0, 0, 4 * SEC, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_non_null(strstr(errstr, "burst 0"));
    nudgel_throttle_bucket_free(b);
}

static void test_clock_going_back(void **state)
{
    (void)state;
    nudgel_throttle_bucket_t *b = bucket(10.0, 1, 1 * SEC);
    assert_true(nudgel_throttle_bucket_try_take(b, 1, 1 * SEC));
    assert_false(nudgel_throttle_bucket_try_take(b, 1, 0)); /* earns nothing */
    /* Still due 100 ms after the last time seen, not after the bogus one. */
    assert_int_equal(nudgel_throttle_bucket_next_available(b, 1, 0), 1 * SEC + 100 * MS);
    assert_false(nudgel_throttle_bucket_try_take(b, 1, 1 * SEC + 99 * MS));
    assert_true(nudgel_throttle_bucket_try_take(b, 1, 1 * SEC + 100 * MS));
    nudgel_throttle_bucket_free(b);
}

static void test_bucket_bad_arguments(void **state)
{
    (void)state;
    nudgel_throttle_bucket_t *b = (nudgel_throttle_bucket_t *)1;
    char errstr[128];
    assert_int_equal(nudgel_throttle_bucket_new(-0.5, 1, 0, &b, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_null(b);
    assert_int_equal(nudgel_throttle_bucket_new(NAN, 1, 0, &b, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_bucket_new(INFINITY, 1, 0, &b, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_bucket_new(1.0, 0, 0, &b, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_bucket_new(1.0, NUDGEL_THROTTLE_BURST_MAX + 1, 0, &b, errstr,
                                                sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    nudgel_throttle_bucket_free(NULL);
}

static void test_fleet_share(void **state)
{
    (void)state;
    static const struct {
        double tps;
        int32_t assigned, total;
        double want;
    } ok[] = {
        {100, 3, 12, 25.0},     {100, 0, 12, 0.0},       {100, 12, 12, 100.0},
        {100, 1, 3, 100.0 / 3}, {30, 1, 1, 30.0},        {0, 3, 12, 0.0},
        {0.5, 1, 1000, 0.01},   {0.005, 1, 1000, 0.005}, /* floor, capped at the gateway's TPS */
        {1, 1, 50, 0.02},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        double rate = -1;
        assert_int_equal(nudgel_throttle_fleet_share(ok[i].tps, ok[i].assigned, ok[i].total, &rate),
                         NUDGEL_OK);
        if (fabs(rate - ok[i].want) > 1e-12)
            fail_msg("case %zu: %g, want %g", i, rate, ok[i].want);
    }
    double rate;
    assert_int_equal(nudgel_throttle_fleet_share(100, 1, 0, &rate), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_fleet_share(100, 13, 12, &rate), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_fleet_share(100, -1, 12, &rate), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_fleet_share(-1, 1, 12, &rate), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_fleet_share(NAN, 1, 12, &rate), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_fleet_share(INFINITY, 1, 12, &rate), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_fleet_share(100, 1, 12, NULL), NUDGEL_ERR_INVALID_ARG);

    /* A fleet of 4 workers (5, 4, 2, 1 of 12 partitions) on a 120 TPS account,
       each sending flat out for 10 s, stays under 1200 + the bursts. */
    static const int32_t parts[] = {5, 4, 2, 1};
    unsigned total = 0;
    for (size_t w = 0; w < 4; w++) {
        assert_int_equal(nudgel_throttle_fleet_share(120, parts[w], 12, &rate), NUDGEL_OK);
        nudgel_throttle_bucket_t *b = bucket(rate, 1, 0);
        total += drain(b, 0, 10 * SEC, 1 * MS);
        nudgel_throttle_bucket_free(b);
    }
    assert_int_equal(total, 1200 + 4);
}

static const nudgel_tenant_limits_t defaults = {.max_in_flight = 2, .rate = 1.0, .burst = 3};

static nudgel_throttle_tenants_t *table(size_t max)
{
    nudgel_throttle_tenants_t *t = NULL;
    char errstr[128];
    assert_int_equal(nudgel_throttle_tenants_new(max, &defaults, &t, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    return t;
}

static nudgel_tenant_verdict_t acquire(nudgel_throttle_tenants_t *t, const char *tenant,
                                       int64_t now, int64_t *retry_at)
{
    nudgel_tenant_verdict_t v;
    int64_t r;
    assert_int_equal(nudgel_throttle_tenants_acquire(t, tenant, NULL, now, &v, &r), NUDGEL_OK);
    if (retry_at)
        *retry_at = r;
    return v;
}

static void test_tenant_in_flight_and_rate(void **state)
{
    (void)state;
    nudgel_throttle_tenants_t *t = table(8);
    int64_t retry;
    assert_int_equal(acquire(t, "acme", 0, &retry), NUDGEL_TENANT_OK);
    assert_int_equal(retry, -1);
    assert_int_equal(acquire(t, "acme", 0, NULL), NUDGEL_TENANT_OK);
    assert_int_equal(nudgel_throttle_tenants_in_flight(t, "acme"), 2);
    /* The in-flight cap is checked first and costs no token. */
    assert_int_equal(acquire(t, "acme", 0, &retry), NUDGEL_TENANT_IN_FLIGHT_CAP);
    assert_int_equal(retry, -1);
    assert_int_equal(acquire(t, "acme", 0, NULL), NUDGEL_TENANT_IN_FLIGHT_CAP);
    assert_int_equal(nudgel_throttle_tenants_release(t, "acme"), NUDGEL_OK);
    assert_int_equal(acquire(t, "acme", 0, NULL), NUDGEL_TENANT_OK); /* third token */
    assert_int_equal(nudgel_throttle_tenants_release(t, "acme"), NUDGEL_OK);
    /* Burst spent: the next token is due in 1 s. */
    assert_int_equal(acquire(t, "acme", 0, &retry), NUDGEL_TENANT_RATE_LIMITED);
    assert_int_equal(retry, 1 * SEC);
    assert_int_equal(acquire(t, "acme", retry - 1, NULL), NUDGEL_TENANT_RATE_LIMITED);
    assert_int_equal(acquire(t, "acme", retry, NULL), NUDGEL_TENANT_OK);
    /* Another tenant is not affected by acme's state. */
    assert_int_equal(acquire(t, "globex", retry, NULL), NUDGEL_TENANT_OK);
    assert_int_equal(nudgel_throttle_tenants_count(t), 2);

    /* Release of what was never acquired is the caller's bug. */
    assert_int_equal(nudgel_throttle_tenants_release(t, "initech"), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_tenants_release(t, "globex"), NUDGEL_OK);
    assert_int_equal(nudgel_throttle_tenants_release(t, "globex"), NUDGEL_ERR_INVALID_ARG);
    nudgel_throttle_tenants_free(t);
}

static void test_tenant_own_limits(void **state)
{
    (void)state;
    nudgel_throttle_tenants_t *t = table(8);
    nudgel_tenant_limits_t big = {.max_in_flight = 100, .rate = 50.0, .burst = 10};
    nudgel_tenant_limits_t bad = {.max_in_flight = 0, .rate = 1.0, .burst = 1};
    nudgel_tenant_verdict_t v;
    int64_t retry;
    unsigned ok = 0;
    /* 50/s with burst 10 over 1 s, trying every ms, never releasing: 60. */
    for (int64_t now = 0; now <= 1 * SEC; now += 1 * MS) {
        assert_int_equal(nudgel_throttle_tenants_acquire(t, "bulk", &big, now, &v, &retry),
                         NUDGEL_OK);
        if (v == NUDGEL_TENANT_OK)
            ok++;
        else
            assert_int_equal(v, NUDGEL_TENANT_RATE_LIMITED);
    }
    assert_int_equal(ok, 60);
    /* Lower limits apply at once: 60 in flight is above the new cap of 2. */
    assert_int_equal(nudgel_throttle_tenants_acquire(t, "bulk", NULL, 2 * SEC, &v, &retry),
                     NUDGEL_OK);
    assert_int_equal(v, NUDGEL_TENANT_IN_FLIGHT_CAP);
    assert_int_equal(nudgel_throttle_tenants_acquire(t, "bulk", &bad, 2 * SEC, &v, &retry),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_tenants_acquire(t, "", NULL, 2 * SEC, &v, &retry),
                     NUDGEL_ERR_INVALID_ARG);
    char longid[NUDGEL_THROTTLE_TENANT_MAX + 2];
    memset(longid, 't', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(nudgel_throttle_tenants_acquire(t, longid, NULL, 2 * SEC, &v, &retry),
                     NUDGEL_ERR_INVALID_ARG);
    longid[NUDGEL_THROTTLE_TENANT_MAX] = '\0'; /* exactly the maximum is fine */
    assert_int_equal(nudgel_throttle_tenants_acquire(t, longid, NULL, 2 * SEC, &v, &retry),
                     NUDGEL_OK);
    assert_int_equal(v, NUDGEL_TENANT_OK);

    /* Zero rate for a tenant: its burst, then never (retry INT64_MAX). */
    nudgel_tenant_limits_t frozen = {.max_in_flight = 10, .rate = 0.0, .burst = 1};
    assert_int_equal(nudgel_throttle_tenants_acquire(t, "frozen", &frozen, 0, &v, &retry),
                     NUDGEL_OK);
    assert_int_equal(v, NUDGEL_TENANT_OK);
    assert_int_equal(nudgel_throttle_tenants_acquire(t, "frozen", &frozen, 0, &v, &retry),
                     NUDGEL_OK);
    assert_int_equal(v, NUDGEL_TENANT_RATE_LIMITED);
    assert_int_equal(retry, INT64_MAX);
    nudgel_throttle_tenants_free(t);
}

static void test_tenant_fairness(void **state)
{
    (void)state;
    /* A tenant hammering every ms does not starve one asking every 100 ms. */
    nudgel_throttle_tenants_t *t = table(8);
    nudgel_tenant_limits_t l = {.max_in_flight = 1000, .rate = 10.0, .burst = 5};
    unsigned loud = 0, quiet = 0, quiet_asked = 0;
    nudgel_tenant_verdict_t v;
    for (int64_t now = 0; now < 10 * SEC; now += 1 * MS) {
        assert_int_equal(nudgel_throttle_tenants_acquire(t, "loud", &l, now, &v, NULL), NUDGEL_OK);
        loud += v == NUDGEL_TENANT_OK;
        if (now % (100 * MS) == 0) {
            quiet_asked++;
            assert_int_equal(nudgel_throttle_tenants_acquire(t, "quiet", &l, now, &v, NULL),
                             NUDGEL_OK);
            quiet += v == NUDGEL_TENANT_OK;
        }
    }
    assert_int_equal(quiet, quiet_asked);
    assert_true(loud >= 100 && loud <= 105);
    nudgel_throttle_tenants_free(t);
}

static void test_tenant_eviction(void **state)
{
    (void)state;
    nudgel_throttle_tenants_t *t = table(3);
    /* a, b, c used and done, in that order; then a again. */
    const char *ids[] = {"a", "b", "c", "a"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(acquire(t, ids[i], (int64_t)i, NULL), NUDGEL_TENANT_OK);
        assert_int_equal(nudgel_throttle_tenants_release(t, ids[i]), NUDGEL_OK);
    }
    assert_int_equal(nudgel_throttle_tenants_count(t), 3);
    /* d evicts b, the tenant idle for longest. */
    assert_int_equal(acquire(t, "d", 10, NULL), NUDGEL_TENANT_OK);
    assert_int_equal(nudgel_throttle_tenants_count(t), 3);
    /* a, c, d are known: a has spent 2 of its 3 tokens, so 1 left at t=10. */
    assert_int_equal(acquire(t, "a", 10, NULL), NUDGEL_TENANT_OK);
    assert_int_equal(nudgel_throttle_tenants_release(t, "a"), NUDGEL_OK);
    assert_int_equal(acquire(t, "a", 10, NULL), NUDGEL_TENANT_RATE_LIMITED);
    /* b comes back as new, with a full bucket (the documented cost of eviction),
       and evicts c, now the longest idle (d has a job in flight). */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(acquire(t, "b", 11, NULL), NUDGEL_TENANT_OK);
        assert_int_equal(nudgel_throttle_tenants_release(t, "b"), NUDGEL_OK);
    }
    assert_int_equal(nudgel_throttle_tenants_in_flight(t, "d"), 1);
    assert_int_equal(nudgel_throttle_tenants_count(t), 3);

    /* Tenants with jobs in flight are never evicted: with all three busy, a
       fourth gets TABLE_FULL until one of them is done. */
    assert_int_equal(acquire(t, "a", 5 * SEC, NULL), NUDGEL_TENANT_OK);
    assert_int_equal(acquire(t, "b", 5 * SEC, NULL), NUDGEL_TENANT_OK);
    int64_t retry;
    assert_int_equal(acquire(t, "e", 5 * SEC, &retry), NUDGEL_TENANT_TABLE_FULL);
    assert_int_equal(retry, -1);
    assert_int_equal(nudgel_throttle_tenants_in_flight(t, "e"), 0);
    assert_int_equal(nudgel_throttle_tenants_release(t, "b"), NUDGEL_OK);
    assert_int_equal(acquire(t, "e", 5 * SEC, NULL), NUDGEL_TENANT_OK);
    assert_int_equal(nudgel_throttle_tenants_in_flight(t, "b"), 0); /* evicted */
    assert_int_equal(nudgel_throttle_tenants_in_flight(t, "a"), 1);
    assert_int_equal(nudgel_throttle_tenants_in_flight(t, "d"), 1);
    assert_int_equal(nudgel_throttle_tenants_count(t), 3);
    nudgel_throttle_tenants_free(t);
}

/* Many tenants through a small table: counts stay bounded and consistent. */
static void test_tenant_churn(void **state)
{
    (void)state;
    nudgel_throttle_tenants_t *t = table(64);
    char id[32];
    unsigned held[64] = {0}; /* in flight of tenant i (the 64 busy ones) */
    for (unsigned round = 0; round < 20; round++) {
        for (unsigned i = 0; i < 5000; i++) {
            snprintf(id, sizeof(id), "tenant-%u", i);
            int64_t now = (int64_t)round * 10 * SEC + i;
            nudgel_tenant_verdict_t v = acquire(t, id, now, NULL);
            if (i < 32) { /* the first 32 keep one job in flight across a round */
                if (v == NUDGEL_TENANT_OK)
                    held[i]++;
            } else if (v == NUDGEL_TENANT_OK) {
                assert_int_equal(nudgel_throttle_tenants_release(t, id), NUDGEL_OK);
            } else {
                assert_int_equal(v, NUDGEL_TENANT_OK); /* 32 idle slots always free */
            }
            assert_true(nudgel_throttle_tenants_count(t) <= 64);
        }
        for (unsigned i = 0; i < 32; i++) {
            snprintf(id, sizeof(id), "tenant-%u", i);
            assert_int_equal(nudgel_throttle_tenants_in_flight(t, id), held[i]);
            while (held[i] > 0) {
                assert_int_equal(nudgel_throttle_tenants_release(t, id), NUDGEL_OK);
                held[i]--;
            }
        }
    }
    nudgel_throttle_tenants_free(t);
}

static void test_tenant_table_arguments(void **state)
{
    (void)state;
    nudgel_throttle_tenants_t *t = NULL;
    char errstr[128];
    nudgel_tenant_limits_t bad = {.max_in_flight = 1, .rate = 1.0, .burst = 0};
    assert_int_equal(nudgel_throttle_tenants_new(0, &defaults, &t, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_tenants_new(NUDGEL_THROTTLE_TENANTS_MAX + 1, &defaults, &t,
                                                 errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_tenants_new(4, &bad, &t, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_throttle_tenants_new(4, NULL, &t, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_null(t);
    nudgel_throttle_tenants_free(NULL);
    assert_string_equal(nudgel_tenant_verdict_name(NUDGEL_TENANT_OK), "ok");
    assert_string_equal(nudgel_tenant_verdict_name(NUDGEL_TENANT_IN_FLIGHT_CAP), "in_flight_cap");
    assert_string_equal(nudgel_tenant_verdict_name(NUDGEL_TENANT_RATE_LIMITED), "rate_limited");
    assert_string_equal(nudgel_tenant_verdict_name(NUDGEL_TENANT_TABLE_FULL), "table_full");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_over_time),
        cmocka_unit_test(test_burst_and_next_available),
        cmocka_unit_test(test_set_rate_keeps_earned_tokens),
        cmocka_unit_test(test_clock_going_back),
        cmocka_unit_test(test_bucket_bad_arguments),
        cmocka_unit_test(test_fleet_share),
        cmocka_unit_test(test_tenant_in_flight_and_rate),
        cmocka_unit_test(test_tenant_own_limits),
        cmocka_unit_test(test_tenant_fairness),
        cmocka_unit_test(test_tenant_eviction),
        cmocka_unit_test(test_tenant_churn),
        cmocka_unit_test(test_tenant_table_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
