/*
 * test_offsets.c — the contiguous-offset tracker: in order, reverse order,
 * gaps, a full window, reset, misuse, and random completion orders of
 * 10 000 offsets checked step by step against a plain-array model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/offsets.h"
#include "test_rng.h"

#define N 10000

static nudgel_offsets_t *tracker(size_t cap)
{
    nudgel_offsets_t *t = NULL;
    char errstr[128];
    assert_int_equal(nudgel_offsets_new(cap, &t, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_non_null(t);
    return t;
}

static void test_in_order(void **state)
{
    (void)state;
    nudgel_offsets_t *t = tracker(128);
    assert_int_equal(nudgel_offsets_committable(t), -1);
    for (int64_t o = 0; o < 100; o++)
        assert_int_equal(nudgel_offsets_started(t, o), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_in_flight(t), 100);
    for (int64_t o = 0; o < 100; o++) {
        assert_int_equal(nudgel_offsets_completed(t, o), NUDGEL_OK);
        assert_int_equal(nudgel_offsets_committable(t), o + 1);
        assert_int_equal(nudgel_offsets_committable(t), -1); /* nothing new */
        assert_int_equal(nudgel_offsets_position(t), o + 1);
    }
    assert_int_equal(nudgel_offsets_in_flight(t), 0);
    assert_int_equal(nudgel_offsets_window(t), 0);
    nudgel_offsets_free(t);
}

static void test_reverse_order(void **state)
{
    (void)state;
    nudgel_offsets_t *t = tracker(100);
    for (int64_t o = 1000; o < 1100; o++)
        assert_int_equal(nudgel_offsets_started(t, o), NUDGEL_OK);
    for (int64_t o = 1099; o > 1000; o--) {
        assert_int_equal(nudgel_offsets_completed(t, o), NUDGEL_OK);
        assert_int_equal(nudgel_offsets_committable(t), -1);
    }
    assert_int_equal(nudgel_offsets_in_flight(t), 1);
    assert_int_equal(nudgel_offsets_window(t), 100);
    assert_int_equal(nudgel_offsets_completed(t, 1000), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), 1100);
    assert_int_equal(nudgel_offsets_window(t), 0);
    nudgel_offsets_free(t);
}

static void test_gaps(void **state)
{
    (void)state;
    nudgel_offsets_t *t = tracker(8);
    /* 6, 7 and 9..19 never arrive (compaction, transaction markers). */
    assert_int_equal(nudgel_offsets_started(t, 5), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_started(t, 8), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_started(t, 20), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_completed(t, 8), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), -1); /* 5 still out */
    assert_int_equal(nudgel_offsets_completed(t, 5), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), 9); /* the gap does not block */
    assert_int_equal(nudgel_offsets_completed(t, 6), NUDGEL_ERR_INVALID_ARG); /* never started */
    assert_int_equal(nudgel_offsets_completed(t, 19), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_offsets_completed(t, 20), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), 21);
    /* A gap after everything completed: the next job starts far ahead. */
    assert_int_equal(nudgel_offsets_started(t, 1000000), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), -1);
    assert_int_equal(nudgel_offsets_completed(t, 1000000), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), 1000001);
    nudgel_offsets_free(t);
}

static void test_full_window(void **state)
{
    (void)state;
    nudgel_offsets_t *t = tracker(4);
    for (int64_t o = 0; o < 4; o++)
        assert_int_equal(nudgel_offsets_started(t, o), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_started(t, 4), NUDGEL_ERR_WINDOW_FULL);
    /* Completing behind a slow head frees nothing: the head holds the window. */
    for (int64_t o = 1; o < 4; o++)
        assert_int_equal(nudgel_offsets_completed(t, o), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_in_flight(t), 1);
    assert_int_equal(nudgel_offsets_window(t), 4);
    assert_int_equal(nudgel_offsets_started(t, 4), NUDGEL_ERR_WINDOW_FULL);
    assert_int_equal(nudgel_offsets_committable(t), -1);
    assert_int_equal(nudgel_offsets_completed(t, 0), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), 4);
    /* The refused 4 was not recorded; it can start now, and wrap the ring. */
    for (int64_t o = 4; o < 8; o++)
        assert_int_equal(nudgel_offsets_started(t, o), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_started(t, 8), NUDGEL_ERR_WINDOW_FULL);
    assert_int_equal(nudgel_offsets_completed(t, 6), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_completed(t, 4), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), 5);
    assert_int_equal(nudgel_offsets_started(t, 8), NUDGEL_OK);
    nudgel_offsets_free(t);
}

static void test_reset_and_misuse(void **state)
{
    (void)state;
    nudgel_offsets_t *t = tracker(16);
    assert_int_equal(nudgel_offsets_started(t, -1), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_offsets_completed(t, 0), NUDGEL_ERR_INVALID_ARG); /* empty */
    assert_int_equal(nudgel_offsets_started(t, 10), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_started(t, 10), NUDGEL_ERR_INVALID_ARG); /* not increasing */
    assert_int_equal(nudgel_offsets_started(t, 9), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_offsets_started(t, 11), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_completed(t, 11), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_completed(t, 11), NUDGEL_ERR_INVALID_ARG); /* twice */
    assert_int_equal(nudgel_offsets_completed(t, 12), NUDGEL_ERR_INVALID_ARG); /* beyond */
    assert_int_equal(nudgel_offsets_completed(t, 10), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_completed(t, 10), NUDGEL_ERR_INVALID_ARG); /* popped */
    assert_int_equal(nudgel_offsets_position(t), 12);
    assert_int_equal(nudgel_offsets_position(t), 12); /* peeking does not consume */
    assert_int_equal(nudgel_offsets_committable(t), 12);

    /* Revoked with work in flight: reset forgets all of it. */
    assert_int_equal(nudgel_offsets_started(t, 12), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_started(t, 13), NUDGEL_OK);
    nudgel_offsets_reset(t);
    assert_int_equal(nudgel_offsets_in_flight(t), 0);
    assert_int_equal(nudgel_offsets_window(t), 0);
    assert_int_equal(nudgel_offsets_committable(t), -1);
    assert_int_equal(nudgel_offsets_position(t), -1);
    assert_int_equal(nudgel_offsets_completed(t, 12), NUDGEL_ERR_INVALID_ARG);
    /* Re-assigned from the committed offset, which is below the old last start. */
    assert_int_equal(nudgel_offsets_started(t, 12), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_completed(t, 12), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), 13);
    nudgel_offsets_free(t);

    char errstr[128];
    nudgel_offsets_t *bad = (nudgel_offsets_t *)1;
    assert_int_equal(nudgel_offsets_new(0, &bad, errstr, sizeof(errstr)), NUDGEL_ERR_INVALID_ARG);
    assert_null(bad);
    assert_int_equal(
        nudgel_offsets_new(NUDGEL_OFFSETS_CAPACITY_MAX + 1, &bad, errstr, sizeof(errstr)),
        NUDGEL_ERR_INVALID_ARG);
    nudgel_offsets_free(NULL);
}

/*
 * The model: every started offset in a plain array with a done flag, and a
 * cursor that walks over the done prefix. Expected committable is the offset
 * after the cursor's last step when it moved, else -1.
 */
typedef struct model {
    int64_t *offs;
    bool *done;
    size_t started, cursor;
    int64_t position, reported;
} model_t;

static int64_t model_committable(model_t *m)
{
    while (m->cursor < m->started && m->done[m->cursor])
        m->position = m->offs[m->cursor++] + 1;
    if (m->position < 0 || m->position == m->reported)
        return -1;
    m->reported = m->position;
    return m->position;
}

static void shuffle(size_t *a, size_t n)
{
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(rng() % (i + 1));
        size_t x = a[i];
        a[i] = a[j];
        a[j] = x;
    }
}

/* Offsets 0..N-1 (or with random gaps), all started, completed in a random order. */
static void run_permutation(uint64_t seed, bool gaps)
{
    rng_state = seed;
    model_t m = {
        .offs = malloc(N * sizeof(int64_t)), .done = calloc(N, 1), .position = -1, .reported = -1};
    size_t *order = malloc(N * sizeof(size_t));
    assert_true(m.offs && m.done && order);
    nudgel_offsets_t *t = tracker(N);
    int64_t o = gaps ? 7 : 0;
    for (size_t i = 0; i < N; i++) {
        m.offs[i] = o;
        o += gaps ? 1 + (int64_t)(rng() % 4) : 1;
        order[i] = i;
        assert_int_equal(nudgel_offsets_started(t, m.offs[i]), NUDGEL_OK);
    }
    m.started = N;
    shuffle(order, N);
    for (size_t k = 0; k < N; k++) {
        size_t i = order[k];
        assert_int_equal(nudgel_offsets_completed(t, m.offs[i]), NUDGEL_OK);
        m.done[i] = true;
        int64_t want = model_committable(&m), got = nudgel_offsets_committable(t);
        if (got != want)
            fail_msg("seed %llu step %zu: committable %lld, model %lld", (unsigned long long)seed,
                     k, (long long)got, (long long)want);
        assert_int_equal(nudgel_offsets_in_flight(t), N - k - 1);
    }
    assert_int_equal(nudgel_offsets_position(t), m.offs[N - 1] + 1);
    nudgel_offsets_free(t);
    free(m.offs);
    free(m.done);
    free(order);
}

/* A job polled too early is taken back; fetched again later it starts anew. */
static void test_unstart(void **state)
{
    (void)state;
    nudgel_offsets_t *t;
    char errstr[128];
    assert_int_equal(nudgel_offsets_new(8, &t, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_started(t, 10), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_started(t, 11), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_unstart(t, 10), NUDGEL_ERR_INVALID_ARG); /* not the newest */
    assert_int_equal(nudgel_offsets_unstart(t, 11), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_in_flight(t), 1);
    assert_int_equal(nudgel_offsets_started(t, 11), NUDGEL_OK); /* fetched again */
    assert_int_equal(nudgel_offsets_completed(t, 11), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_unstart(t, 11), NUDGEL_ERR_INVALID_ARG); /* done */
    assert_int_equal(nudgel_offsets_completed(t, 10), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), 12);
    /* Empty window: taking back the only job lets it start again at the same offset. */
    assert_int_equal(nudgel_offsets_started(t, 12), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_unstart(t, 12), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_started(t, 12), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_completed(t, 12), NUDGEL_OK);
    assert_int_equal(nudgel_offsets_committable(t), 13);
    nudgel_offsets_free(t);
}

static void test_random_permutations(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 5; seed++) {
        run_permutation(seed * 0x9E3779B97F4A7C15ull, false);
        run_permutation(seed * 0xC2B2AE3D27D4EB4Full, true);
    }
}

/*
 * A small window with starts and completions interleaved at random, as a
 * consumer would: start when the window has room (WINDOW_FULL otherwise),
 * complete a random job in flight, compare with the model at every step.
 */
static void test_random_interleaved(void **state)
{
    (void)state;
    const size_t cap = 64;
    for (uint64_t seed = 11; seed <= 13; seed++) {
        rng_state = seed * 0x9E3779B97F4A7C15ull;
        model_t m = {.offs = malloc(N * sizeof(int64_t)),
                     .done = calloc(N, 1),
                     .position = -1,
                     .reported = -1};
        size_t *flying = malloc(N * sizeof(size_t)); /* model indexes in flight */
        size_t nflying = 0, fulls = 0;
        assert_true(m.offs && m.done && flying);
        nudgel_offsets_t *t = tracker(cap);
        int64_t next = 0;
        while (m.started < N || nflying > 0) {
            bool start = m.started < N && (nflying == 0 || rng() % 3 != 0);
            if (start) {
                nudgel_err_t err = nudgel_offsets_started(t, next);
                size_t window = m.started - m.cursor;
                if (window == cap) {
                    assert_int_equal(err, NUDGEL_ERR_WINDOW_FULL);
                    fulls++;
                    start = false; /* the consumer pauses; complete something instead */
                } else {
                    assert_int_equal(err, NUDGEL_OK);
                    m.offs[m.started] = next;
                    flying[nflying++] = m.started++;
                    next += 1 + (int64_t)(rng() % 3 == 0 ? rng() % 5 : 0);
                }
            }
            if (!start && nflying > 0) {
                size_t k = (size_t)(rng() % nflying);
                size_t i = flying[k];
                flying[k] = flying[--nflying];
                assert_int_equal(nudgel_offsets_completed(t, m.offs[i]), NUDGEL_OK);
                m.done[i] = true;
            }
            int64_t want = model_committable(&m), got = nudgel_offsets_committable(t);
            if (got != want)
                fail_msg("seed %llu: committable %lld, model %lld", (unsigned long long)seed,
                         (long long)got, (long long)want);
            assert_int_equal(nudgel_offsets_in_flight(t), nflying);
            assert_int_equal(nudgel_offsets_window(t), m.started - m.cursor);
        }
        assert_true(fulls > 0); /* the window did fill up along the way */
        nudgel_offsets_free(t);
        free(m.offs);
        free(m.done);
        free(flying);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_reverse_order),
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_full_window),
        cmocka_unit_test(test_reset_and_misuse),
        cmocka_unit_test(test_unstart),
        cmocka_unit_test(test_random_permutations),
        cmocka_unit_test(test_random_interleaved),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
