/*
 * test_pgconn.c — the Postgres connection without a Postgres: the back-off
 * against a refused port (attempts 100, 200, 400, 800 ms apart, then at the
 * cap), the connect timeout against a listener that never answers, DSN
 * checks that never quote the DSN, free in every state. Throughout, a turn
 * hook records how long each loop turn dispatched: a blocking libpq call
 * would show up there.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "nudgel/pgconn.h"
#include "nudgel/timeutil.h"

#define TURN_MAX_US 50000 /* a turn's dispatch never takes longer (generous: ASan, busy CI) */

typedef struct watch {
    nudgel_loop_t *loop;
    int64_t max_busy_us;
    int ups, downs;
} watch_t;

static void on_turn(void *opaque)
{
    watch_t *w = opaque;
    int64_t busy = nudgel_loop_busy_us(w->loop);
    if (busy > w->max_busy_us)
        w->max_busy_us = busy;
}

static void on_state(void *opaque, nudgel_pgconn_t *c, bool up)
{
    watch_t *w = opaque;
    (void)c;
    if (up)
        w->ups++;
    else
        w->downs++;
}

static nudgel_loop_t *new_loop(watch_t *w)
{
    char errstr[128];
    nudgel_loop_t *l = nudgel_loop_new(errstr, sizeof(errstr));
    assert_non_null(l);
    memset(w, 0, sizeof(*w));
    w->loop = l;
    assert_int_equal(nudgel_loop_add_hook(l, on_turn, w), NUDGEL_OK);
    return l;
}

static nudgel_pgconn_t *new_conn(nudgel_loop_t *l, watch_t *w, const char *dsn, int64_t timeout_ms,
                                 int64_t min_ms, int64_t max_ms)
{
    nudgel_pgconn_options_t o = {.dsn = dsn,
                                 .application_name = "test_pgconn",
                                 .name = "test",
                                 .connect_timeout_ms = timeout_ms,
                                 .backoff_min_ms = min_ms,
                                 .backoff_max_ms = max_ms,
                                 .on_state = on_state,
                                 .opaque = w};
    nudgel_pgconn_t *c = NULL;
    char errstr[256] = "";
    nudgel_err_t err = nudgel_pgconn_new(l, &o, &c, errstr, sizeof(errstr));
    if (err != NUDGEL_OK)
        fail_msg("pgconn_new: %s", errstr);
    return c;
}

/* Turns the loop until @p attempts connect attempts have started; their start times in @p at. */
static void record_attempts(nudgel_loop_t *l, nudgel_pgconn_t *c, int64_t *at, size_t attempts,
                            int64_t limit_ms)
{
    int64_t deadline = nudgel_mono_us() + limit_ms * 1000;
    nudgel_pgconn_stats_t s;
    nudgel_pgconn_stats(c, &s);
    assert_int_equal(s.attempts, 1); /* the first one starts inside new() */
    at[0] = s.last_attempt_us;
    size_t seen = 1;
    while (seen < attempts) {
        assert_true(nudgel_mono_us() < deadline);
        nudgel_loop_turn(l, 100000);
        nudgel_pgconn_stats(c, &s);
        assert_true(s.attempts <= seen + 1); /* never two in one turn */
        if (s.attempts == seen + 1)
            at[seen++] = s.last_attempt_us;
    }
}

static void no_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                    nudgel_err_t err, const char *errstr)
{
    fail_msg("done called on a connection that was never up");
}

static void test_backoff_refused(void **state)
{
    (void)state;
    watch_t w;
    nudgel_loop_t *l = new_loop(&w);
    /* Nobody listens on port 1: every attempt is refused at once. */
    nudgel_pgconn_t *c =
        new_conn(l, &w, "host=127.0.0.1 port=1 dbname=nudgel user=nudgel", 2000, 100, 1000);
    assert_false(nudgel_pgconn_up(c));
    assert_null(nudgel_pgconn_conn(c));
    assert_int_equal(nudgel_pgconn_sent(c, 0, no_done, NULL), NUDGEL_ERR_INVALID_ARG);
    nudgel_pgconn_lost(c, "no-op while down");

    static const int64_t expect_ms[] = {100, 200, 400, 800, 1000, 1000};
    int64_t at[7];
    record_attempts(l, c, at, 7, 10000);
    for (size_t i = 0; i < 6; i++) {
        int64_t gap_us = at[i + 1] - at[i];
        int64_t want_us = expect_ms[i] * 1000;
        printf("attempt %zu -> %zu: %.1f ms (back-off %lld ms)\n", i + 1, i + 2,
               (double)gap_us / 1000, (long long)expect_ms[i]);
        assert_true(gap_us >= want_us);
        assert_true(gap_us < want_us * 3 / 2 + 50000);
    }
    printf("longest turn: %.1f ms\n", (double)w.max_busy_us / 1000);
    assert_true(w.max_busy_us < TURN_MAX_US);
    assert_int_equal(w.ups + w.downs, 0);
    nudgel_pgconn_stats_t s;
    nudgel_pgconn_stats(c, &s);
    assert_int_equal(s.connects, 0);
    assert_int_equal(s.losses, 0);
    assert_int_equal(s.last_rtt_us, -1);
    nudgel_pgconn_free(c);
    nudgel_loop_free(l);
}

/* A TCP listener that never accepts: the kernel completes the handshake, nobody answers. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_connect_timeout(void **state)
{
    (void)state;
    watch_t w;
    int port;
    int lfd = silent_listener(&port);
    char dsn[128];
    snprintf(dsn, sizeof(dsn), "host=127.0.0.1 port=%d dbname=nudgel user=nudgel", port);
    nudgel_loop_t *l = new_loop(&w);
    nudgel_pgconn_t *c = new_conn(l, &w, dsn, 300, 50, 100);

    static const int64_t backoff_ms[] = {50, 100, 100};
    int64_t at[4];
    record_attempts(l, c, at, 4, 10000);
    for (size_t i = 0; i < 3; i++) {
        int64_t gap_us = at[i + 1] - at[i];
        int64_t want_us = (300 + backoff_ms[i]) * 1000;
        printf("attempt %zu -> %zu: %.1f ms (timeout 300 + back-off %lld ms)\n", i + 1, i + 2,
               (double)gap_us / 1000, (long long)backoff_ms[i]);
        assert_true(gap_us >= want_us);
        assert_true(gap_us < want_us * 3 / 2 + 50000);
    }
    printf("longest turn: %.1f ms\n", (double)w.max_busy_us / 1000);
    assert_true(w.max_busy_us < TURN_MAX_US);
    assert_int_equal(w.ups + w.downs, 0);

    /* Freed while an attempt is in progress: nothing fires afterwards. */
    nudgel_loop_turn(l, 10000);
    nudgel_pgconn_free(c);
    int64_t until = nudgel_mono_us() + 500000;
    while (nudgel_mono_us() < until)
        nudgel_loop_turn(l, 50000);
    assert_int_equal(w.ups + w.downs, 0);
    nudgel_loop_free(l);
    close(lfd);
}

static void test_dsn_checks(void **state)
{
    (void)state;
    watch_t w;
    nudgel_loop_t *l = new_loop(&w);
    nudgel_pgconn_t *c = (void *)1;
    char errstr[256];
    nudgel_pgconn_options_t o = {.dsn = ""};
    assert_int_equal(nudgel_pgconn_new(l, &o, &c, errstr, sizeof(errstr)), NUDGEL_ERR_CONFIG);
    assert_null(c);
    o.dsn = NULL;
    assert_int_equal(nudgel_pgconn_new(l, &o, &c, errstr, sizeof(errstr)), NUDGEL_ERR_CONFIG);

    /* A broken connection string: refused at once, and its text never quoted. */
    const char *const broken[] = {
        "host=127.0.0.1 password=s3cretword bogusword",
        "host=127.0.0.1 password=s3cretword bogusword=1",
        "postgresql://nudgel:s3cretword@127.0.0.1:5432/nudgel?bogusword=1",
    };
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        o.dsn = broken[i];
        errstr[0] = '\0';
        assert_int_equal(nudgel_pgconn_new(l, &o, &c, errstr, sizeof(errstr)), NUDGEL_ERR_CONFIG);
        assert_null(c);
        assert_null(strstr(errstr, "s3cret"));
        assert_null(strstr(errstr, "bogus"));
        assert_non_null(strstr(errstr, "not a valid connection string"));
    }
    o.dsn = "host=127.0.0.1 port=1";
    o.backoff_min_ms = -1;
    assert_int_equal(nudgel_pgconn_new(l, &o, &c, errstr, sizeof(errstr)), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_pgconn_new(NULL, &o, &c, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);

    /* A bare word is a database name, as libpq reads it: accepted. Freed at
     * once, nothing of it runs afterwards. */
    o = (nudgel_pgconn_options_t){.dsn = "nudgel", .on_state = on_state, .opaque = &w};
    assert_int_equal(nudgel_pgconn_new(l, &o, &c, errstr, sizeof(errstr)), NUDGEL_OK);
    nudgel_pgconn_free(c);
    nudgel_pgconn_free(NULL);
    for (int i = 0; i < 5; i++)
        nudgel_loop_turn(l, 20000);
    assert_int_equal(w.ups + w.downs, 0);
    nudgel_loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_refused),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_dsn_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
