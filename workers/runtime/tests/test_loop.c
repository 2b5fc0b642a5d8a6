/*
 * test_loop.c — the event loop: timers fire in due order (a random set
 * checked against a sorted model, with re-arms and disarms), an fd wakes a
 * loop that would otherwise sleep for a minute, an fd unwatched by an
 * earlier callback of the same turn gets no callback, a wake from another
 * thread ends the wait, hooks run once per turn, nudgel_loop_again() makes
 * the next wait non-blocking.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nudgel/loop.h"
#include "nudgel/timeutil.h"
#include "test_rng.h"

#define TIMERS 500

static nudgel_loop_t *new_loop(void)
{
    char errstr[128];
    nudgel_loop_t *l = nudgel_loop_new(errstr, sizeof(errstr));
    assert_non_null(l);
    return l;
}

typedef struct fired {
    int64_t due[TIMERS];
    int order[TIMERS];
    size_t count;
} fired_t;

typedef struct timer_ctx {
    fired_t *log;
    int id;
    int64_t due;
} timer_ctx_t;

static void on_timer(void *opaque)
{
    timer_ctx_t *c = opaque;
    assert_true(nudgel_mono_us() >= c->due); /* never early */
    c->log->due[c->log->count] = c->due;
    c->log->order[c->log->count++] = c->id;
}

static void test_timers_fire_in_order(void **state)
{
    (void)state;
    nudgel_loop_t *l = new_loop();
    static fired_t log;
    static timer_ctx_t ctx[TIMERS];
    nudgel_timer_t *timers[TIMERS];
    bool armed[TIMERS];
    int64_t base = nudgel_mono_us() + 20000;
    for (int i = 0; i < TIMERS; i++) {
        ctx[i] = (timer_ctx_t){.log = &log, .id = i, .due = base + (int64_t)(rng() % 200000)};
        timers[i] = nudgel_timer_new(l, on_timer, &ctx[i]);
        assert_non_null(timers[i]);
        nudgel_timer_arm_at(timers[i], ctx[i].due);
        armed[i] = true;
    }
    /* Re-arm a third (earlier or later), disarm a tenth. */
    for (int i = 0; i < TIMERS; i += 3) {
        ctx[i].due = base + (int64_t)(rng() % 200000);
        nudgel_timer_arm_at(timers[i], ctx[i].due);
    }
    size_t expected = 0;
    for (int i = 0; i < TIMERS; i++) {
        if (i % 10 == 7) {
            nudgel_timer_disarm(timers[i]);
            armed[i] = false;
        }
        expected += armed[i];
    }
    int64_t deadline = nudgel_mono_us() + 5000000;
    while (log.count < expected && nudgel_mono_us() < deadline)
        nudgel_loop_turn(l, -1);
    assert_int_equal(log.count, expected);
    for (size_t i = 1; i < log.count; i++)
        assert_true(log.due[i - 1] <= log.due[i]);
    for (size_t i = 0; i < log.count; i++)
        assert_true(armed[log.order[i]]);
    for (int i = 0; i < TIMERS; i++) {
        assert_false(nudgel_timer_armed(timers[i], NULL));
        nudgel_timer_free(timers[i]);
    }
    nudgel_loop_free(l);
}

static void test_arm_by_keeps_earlier(void **state)
{
    (void)state;
    nudgel_loop_t *l = new_loop();
    fired_t log = {0};
    timer_ctx_t c = {.log = &log, .id = 1};
    nudgel_timer_t *t = nudgel_timer_new(l, on_timer, &c);
    int64_t now = nudgel_mono_us(), due = 0;
    nudgel_timer_arm_at(t, now + 1000000);
    nudgel_timer_arm_by(t, now + 5000000); /* later: ignored */
    assert_true(nudgel_timer_armed(t, &due));
    assert_int_equal(due, now + 1000000);
    nudgel_timer_arm_by(t, now + 10000); /* earlier: taken */
    assert_true(nudgel_timer_armed(t, &due));
    assert_int_equal(due, now + 10000);
    c.due = now + 10000;
    while (log.count == 0)
        nudgel_loop_turn(l, -1);
    assert_int_equal(log.count, 1);
    nudgel_timer_free(t);
    nudgel_loop_free(l);
}

typedef struct fd_ctx {
    nudgel_loop_t *loop;
    int calls;
    int other_fd; /* unwatched by this callback */
    int64_t woke_us;
} fd_ctx_t;

static void on_readable(void *opaque, int fd, unsigned events)
{
    fd_ctx_t *c = opaque;
    char buf[16];
    assert_true(events & NUDGEL_LOOP_READ);
    assert_true(read(fd, buf, sizeof(buf)) > 0);
    c->calls++;
    c->woke_us = nudgel_mono_us();
    if (c->other_fd >= 0)
        nudgel_loop_unwatch(c->loop, c->other_fd);
}

static void *write_later(void *arg)
{
    int fd = *(int *)arg;
    usleep(50000);
    assert_int_equal(write(fd, "x", 1), 1);
    return NULL;
}

static void test_fd_wakes_the_loop(void **state)
{
    (void)state;
    nudgel_loop_t *l = new_loop();
    int p[2];
    assert_int_equal(pipe(p), 0);
    fd_ctx_t c = {.loop = l, .other_fd = -1};
    assert_int_equal(nudgel_loop_watch(l, p[0], NUDGEL_LOOP_READ, on_readable, &c), NUDGEL_OK);
    pthread_t th;
    int64_t start = nudgel_mono_us();
    assert_int_equal(pthread_create(&th, NULL, write_later, &p[1]), 0);
    assert_int_equal(nudgel_loop_turn(l, -1), 1); /* would sleep 60 s without the fd */
    pthread_join(th, NULL);
    assert_int_equal(c.calls, 1);
    assert_true(c.woke_us - start >= 40000);
    assert_true(c.woke_us - start < 2000000);
    /* Nothing more to read: a bounded turn runs no callback. */
    assert_int_equal(nudgel_loop_turn(l, 10000), 0);
    nudgel_loop_unwatch(l, p[0]);
    close(p[0]);
    close(p[1]);
    nudgel_loop_free(l);
}

static void test_unwatch_during_turn(void **state)
{
    (void)state;
    nudgel_loop_t *l = new_loop();
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    fd_ctx_t ca = {.loop = l, .other_fd = b[0]}, cb = {.loop = l, .other_fd = a[0]};
    assert_int_equal(nudgel_loop_watch(l, a[0], NUDGEL_LOOP_READ, on_readable, &ca), NUDGEL_OK);
    assert_int_equal(nudgel_loop_watch(l, b[0], NUDGEL_LOOP_READ, on_readable, &cb), NUDGEL_OK);
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    /* Both are ready in one turn; whichever runs first unwatches the other. */
    assert_int_equal(nudgel_loop_turn(l, 100000), 1);
    assert_int_equal(ca.calls + cb.calls, 1);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
    nudgel_loop_free(l);
}

static void *wake_later(void *arg)
{
    usleep(50000);
    nudgel_loop_wake(arg);
    return NULL;
}

static void count_hook(void *opaque)
{
    (*(int *)opaque)++;
}

static void test_wake_hooks_again(void **state)
{
    (void)state;
    nudgel_loop_t *l = new_loop();
    int hooks = 0;
    assert_int_equal(nudgel_loop_add_hook(l, count_hook, &hooks), NUDGEL_OK);
    pthread_t th;
    int64_t start = nudgel_mono_us();
    assert_int_equal(pthread_create(&th, NULL, wake_later, l), 0);
    nudgel_loop_turn(l, -1);
    pthread_join(th, NULL);
    int64_t took = nudgel_mono_us() - start;
    assert_true(took >= 40000 && took < 2000000);
    assert_int_equal(hooks, 1);
    assert_int_equal(nudgel_loop_turns(l), 1);
    /* again: the next turn does not wait for its 10 s limit. */
    nudgel_loop_again(l);
    start = nudgel_mono_us();
    nudgel_loop_turn(l, 10000000);
    assert_true(nudgel_mono_us() - start < 1000000);
    assert_int_equal(hooks, 2);
    nudgel_loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_order), cmocka_unit_test(test_arm_by_keeps_earlier),
        cmocka_unit_test(test_fd_wakes_the_loop),    cmocka_unit_test(test_unwatch_during_turn),
        cmocka_unit_test(test_wake_hooks_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
