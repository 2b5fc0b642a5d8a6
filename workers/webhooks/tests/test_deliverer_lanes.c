/*
 * test_deliverer_lanes.c — when an endpoint's lane overflows to the first
 * retry tier (deliverer/lanes.c): at once when it is failing or throttled,
 * when its rate cannot serve endpoint_queue_max jobs within the first retry
 * delay, when no answer has come for over a second, and when its latency
 * has said slow for a second; never for a moment's pause that delayed every
 * answer in flight at once (a healthy endpoint's burst went to the retry
 * tier that way). The stages lanes.c hands jobs to are replaced here: a
 * submitted job is counted as in flight, a shed one as requeued.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "deliverer.h"
#include "nudgel/timeutil.h"

#define MS          1000LL
#define QUEUE_MAX   1000
#define CONCURRENCY 16

static int submitted, requeued;

/* The stages around the lanes, replaced. */
void lookups_load(worker_t *w, endpoint_t *ep)
{
    (void)w;
    (void)ep;
    fail_msg("the endpoint's row is loaded in these tests");
}

bool endpoint_expired(const worker_t *w, const endpoint_t *ep, int64_t now_us)
{
    (void)w;
    (void)ep;
    (void)now_us;
    return false;
}

void endpoint_set_active(worker_t *w, endpoint_t *ep, bool active)
{
    (void)w;
    ep->active = active;
}

bool endpoint_foreign(const wjob_t *j)
{
    (void)j;
    return false;
}

void submit(worker_t *w, wjob_t *j)
{
    (void)w;
    j->ep->in_flight++;
    submitted++;
}

void outcome_add(wjob_t *j)
{
    assert_int_equal(j->end, END_REQUEUE);
    requeued++;
}

static worker_t worker;

/* A loaded, healthy endpoint with the default queue and concurrency, and a 5 s first retry. */
static endpoint_t endpoint(void)
{
    memset(&worker, 0, sizeof(worker));
    worker.s.queue_max = QUEUE_MAX;
    worker.s.schedule.count = 1;
    worker.s.schedule.delays_ms[0] = 5000;
    submitted = requeued = 0;
    return (endpoint_t){.loaded = true,
                        .found = true,
                        .enabled = true,
                        .max_concurrency = CONCURRENCY,
                        .in_flight = CONCURRENCY};
}

/* @p n answers at @p now_us, each after @p latency_ms. */
static void answers(endpoint_t *ep, int n, int64_t latency_ms, int64_t now_us)
{
    for (int i = 0; i < n; i++)
        lane_observe_latency(&worker, ep, latency_ms * MS, now_us);
}

static void test_a_pause_that_delays_every_answer_at_once_is_not_slow(void **state)
{
    (void)state;
    endpoint_t ep = endpoint();
    int64_t t = 1000 * MS;
    answers(&ep, 64, 20, t); /* 16 in flight at 20 ms: 800 a second */
    assert_false(lane_overflows(&worker, &ep, t));
    /* A 150 ms pause: the 16 answers in flight all arrive late, together. 1,000 jobs at
     * 150 ms / 16 would take 9.4 s, past the 5 s retry. */
    t += 150 * MS;
    answers(&ep, 16, 150, t);
    assert_true(ep.latency_us > 80 * MS);          /* the average says slow ... */
    assert_false(lane_overflows(&worker, &ep, t)); /* ... but only just now */
    for (int turn = 1; turn <= 40; turn++) {       /* then the pace it had, for the next 800 ms */
        answers(&ep, 16, 20, t + turn * 20 * MS);
        assert_false(lane_overflows(&worker, &ep, t + turn * 20 * MS));
    }
    assert_int_equal(ep.slow_since_us, 0);
    assert_false(lane_overflows(&worker, &ep, t + 1200 * MS));
}

static void test_a_latency_slow_for_a_second_overflows(void **state)
{
    (void)state;
    endpoint_t ep = endpoint();
    int64_t t = 1000 * MS;
    answers(&ep, 16, 120, t);
    int64_t slow_from = t;
    for (t += 120 * MS; t - slow_from < 1000 * MS; t += 120 * MS) {
        answers(&ep, 16, 120, t);
        assert_false(lane_overflows(&worker, &ep, t));
    }
    answers(&ep, 16, 120, t);
    assert_true(lane_overflows(&worker, &ep, t));
    /* Within a queue it can serve in time, the same endpoint is fine again. */
    answers(&ep, 64, 10, t + 10 * MS);
    assert_false(lane_overflows(&worker, &ep, t + 10 * MS));
}

static void test_a_stall_overflows_after_a_second_without_an_answer(void **state)
{
    (void)state;
    endpoint_t ep = endpoint();
    ep.max_concurrency = ep.in_flight = 2;
    worker.s.queue_max = 20;
    ep.progress_us = 1000 * MS; /* the first request, never answered */
    assert_false(lane_overflows(&worker, &ep, 1900 * MS));
    assert_true(lane_overflows(&worker, &ep, 2100 * MS)); /* 20 jobs at 1.1 s / 2: 11 s */
    ep.in_flight = 0;                                     /* nothing in flight: nothing can stall */
    assert_false(lane_overflows(&worker, &ep, 2100 * MS));
}

static void test_failing_throttled_or_rate_bound_overflow_at_once(void **state)
{
    (void)state;
    endpoint_t ep = endpoint();
    ep.in_flight = 0; /* idle: no stall */
    ep.failing = true;
    assert_true(lane_overflows(&worker, &ep, 1000 * MS));
    ep.failing = false;
    ep.throttled_until_us = 2000 * MS;
    assert_true(lane_overflows(&worker, &ep, 1000 * MS));
    assert_false(lane_overflows(&worker, &ep, 2000 * MS));
    ep.rate = 100; /* 1,000 jobs at 100 a second: 10 s */
    assert_true(lane_overflows(&worker, &ep, 2000 * MS));
    ep.rate = 500; /* 2 s */
    assert_false(lane_overflows(&worker, &ep, 2000 * MS));
    ep.loaded = false; /* its row not read yet: nothing known, nothing shed */
    ep.failing = true;
    assert_false(lane_overflows(&worker, &ep, 2000 * MS));
}

static void test_a_lane_that_turns_slow_sheds_beyond_the_queue(void **state)
{
    (void)state;
    endpoint_t ep = endpoint();
    ep.progress_us = nudgel_mono_us(); /* lanes_drain() reads the clock: just answered */
    wjob_t *jobs = calloc(QUEUE_MAX + 300, sizeof(*jobs));
    assert_non_null(jobs);
    for (int i = 0; i < QUEUE_MAX + 300; i++) {
        jobs[i].ep = &ep;
        lane_push(&worker, &ep, &jobs[i]);
    }
    lanes_drain(&worker); /* all 16 slots taken: nothing starts, nothing is shed */
    assert_int_equal(submitted, 0);
    assert_int_equal(requeued, 0);
    assert_int_equal(ep.queued, QUEUE_MAX + 300);
    ep.failing = true;
    lanes_drain(&worker);
    assert_int_equal(requeued, 300);
    assert_int_equal(ep.queued, QUEUE_MAX);
    assert_ptr_equal(ep.tail, &jobs[QUEUE_MAX - 1]); /* the first ones are kept, in order */
    free(jobs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_pause_that_delays_every_answer_at_once_is_not_slow),
        cmocka_unit_test(test_a_latency_slow_for_a_second_overflows),
        cmocka_unit_test(test_a_stall_overflows_after_a_second_without_an_answer),
        cmocka_unit_test(test_failing_throttled_or_rate_bound_overflow_at_once),
        cmocka_unit_test(test_a_lane_that_turns_slow_sheds_beyond_the_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
