/*
 * test_pgconn_pg.c — the Postgres connection against the stack's real
 * Postgres (NUDGEL_PG_DSN; fails at once without it): a plain statement, a
 * failed one, one sent from inside the done callback; a pipeline of three
 * statements and two syncs in one done call (and one whose first
 * transaction fails); the loss of the backend mid-statement (terminated from
 * a second, blocking, test-side connection) and while idle; the caller's
 * lost(), idle and mid-statement; sent() told the wrong number of syncs;
 * wrong credentials; free with a statement in flight and from
 * inside done. A turn hook checks that no loop turn ever blocked.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/pg.h"
#include "nudgel/pgconn.h"
#include "nudgel/timeutil.h"

#define TURN_MAX_US 50000 /* generous: ASan on a shared machine */
#define MAX_RESULTS 16

static const char *dsn;

typedef struct ctx {
    nudgel_loop_t *loop;
    nudgel_pgconn_t *c;
    int64_t max_busy_us;
    int ups, downs;
    /* the last done call */
    int dones;
    nudgel_err_t err;
    char errstr[512];
    size_t n;
    ExecStatusType status[MAX_RESULTS];
    char value[MAX_RESULTS][32];
    char sqlstate[MAX_RESULTS][8];
    int64_t done_us, down_us, up_us;
    bool down_before_done; /* on_state(false) came before done */
    const char *chain_sql; /* sent from inside done when set */
    bool free_in_done;
} ctx_t;

static void on_turn(void *opaque)
{
    ctx_t *x = opaque;
    int64_t busy = nudgel_loop_busy_us(x->loop);
    if (busy > x->max_busy_us)
        x->max_busy_us = busy;
}

static void on_state(void *opaque, nudgel_pgconn_t *c, bool up)
{
    ctx_t *x = opaque;
    assert_ptr_equal(c, x->c);
    assert_int_equal(nudgel_pgconn_up(c), up);
    if (up) {
        x->ups++;
        x->up_us = nudgel_mono_us();
    } else {
        x->downs++;
        x->down_us = nudgel_mono_us();
    }
}

static void send_or_fail(ctx_t *x, const char *sql);

static void on_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                    nudgel_err_t err, const char *errstr)
{
    ctx_t *x = opaque;
    assert_ptr_equal(c, x->c);
    assert_false(nudgel_pgconn_busy(c));
    x->dones++;
    x->err = err;
    x->done_us = nudgel_mono_us();
    x->down_before_done = x->downs > 0 && x->down_us <= x->done_us && err != NUDGEL_OK;
    snprintf(x->errstr, sizeof(x->errstr), "%s", errstr);
    x->n = n;
    for (size_t i = 0; i < n && i < MAX_RESULTS; i++) {
        x->status[i] = PQresultStatus(results[i]);
        snprintf(x->value[i], sizeof(x->value[i]), "%s",
                 PQntuples(results[i]) > 0 ? PQgetvalue(results[i], 0, 0) : "");
        const char *st = PQresultErrorField(results[i], PG_DIAG_SQLSTATE);
        snprintf(x->sqlstate[i], sizeof(x->sqlstate[i]), "%s", st ? st : "");
    }
    if (x->free_in_done) {
        nudgel_pgconn_free(c);
        x->c = NULL;
        return;
    }
    if (x->chain_sql) {
        const char *sql = x->chain_sql;
        x->chain_sql = NULL;
        send_or_fail(x, sql);
    }
}

static void send_or_fail(ctx_t *x, const char *sql)
{
    PGconn *pg = nudgel_pgconn_conn(x->c);
    assert_non_null(pg);
    assert_false(nudgel_pgconn_busy(x->c));
    if (!PQsendQueryParams(pg, sql, 0, NULL, NULL, NULL, NULL, 0))
        fail_msg("send: %s", PQerrorMessage(pg));
    assert_int_equal(nudgel_pgconn_sent(x->c, 0, on_done, x), NUDGEL_OK);
    assert_true(nudgel_pgconn_busy(x->c));
}

/* Turns the loop until @p *counter reaches @p want, at most @p limit_ms. */
static void turn_until(ctx_t *x, const int *counter, int want, int64_t limit_ms)
{
    int64_t deadline = nudgel_mono_us() + limit_ms * 1000;
    while (*counter < want) {
        if (nudgel_mono_us() > deadline)
            fail_msg("waited %lld ms for %d (have %d)", (long long)limit_ms, want, *counter);
        nudgel_loop_turn(x->loop, 50000);
    }
}

static void turn_for(ctx_t *x, int64_t ms)
{
    int64_t until = nudgel_mono_us() + ms * 1000;
    while (nudgel_mono_us() < until)
        nudgel_loop_turn(x->loop, 20000);
}

static void ctx_open(ctx_t *x, const char *conninfo, int64_t backoff_min_ms)
{
    char errstr[256];
    memset(x, 0, sizeof(*x));
    x->loop = nudgel_loop_new(errstr, sizeof(errstr));
    assert_non_null(x->loop);
    assert_int_equal(nudgel_loop_add_hook(x->loop, on_turn, x), NUDGEL_OK);
    nudgel_pgconn_options_t o = {.dsn = conninfo,
                                 .application_name = "test_pgconn_pg",
                                 .name = "test",
                                 .connect_timeout_ms = 5000,
                                 .backoff_min_ms = backoff_min_ms,
                                 .backoff_max_ms = 1000,
                                 .on_state = on_state,
                                 .opaque = x};
    if (nudgel_pgconn_new(x->loop, &o, &x->c, errstr, sizeof(errstr)) != NUDGEL_OK)
        fail_msg("pgconn_new: %s", errstr);
}

static void ctx_close(ctx_t *x)
{
    printf("longest turn: %.1f ms\n", (double)x->max_busy_us / 1000);
    assert_true(x->max_busy_us < TURN_MAX_US);
    nudgel_pgconn_free(x->c);
    nudgel_loop_free(x->loop);
}

static void test_plain(void **state)
{
    (void)state;
    ctx_t x;
    ctx_open(&x, dsn, 100);
    turn_until(&x, &x.ups, 1, 10000);
    PGconn *pg = nudgel_pgconn_conn(x.c);
    const char *params[1] = {"41"};
    assert_true(PQsendQueryParams(pg, "SELECT $1::int + 1", 1, NULL, params, NULL, NULL, 0));
    assert_int_equal(nudgel_pgconn_sent(x.c, 0, on_done, &x), NUDGEL_OK);
    assert_int_equal(nudgel_pgconn_sent(x.c, 0, on_done, &x), NUDGEL_ERR_INVALID_ARG); /* busy */
    turn_until(&x, &x.dones, 1, 5000);
    assert_int_equal(x.err, NUDGEL_OK);
    assert_string_equal(x.errstr, "");
    assert_int_equal(x.n, 1);
    assert_int_equal(x.status[0], PGRES_TUPLES_OK);
    assert_string_equal(x.value[0], "42");
    assert_true(nudgel_pgconn_last_rtt_us(x.c) >= 0);

    /* A failed statement: its error result, the connection fine; the next
     * statement is sent from inside done. */
    x.chain_sql = "SELECT 'after'";
    send_or_fail(&x, "SELECT 1/0");
    turn_until(&x, &x.dones, 2, 5000);
    assert_int_equal(x.err, NUDGEL_OK);
    assert_int_equal(x.n, 1);
    assert_int_equal(x.status[0], PGRES_FATAL_ERROR);
    assert_string_equal(x.sqlstate[0], "22012");
    assert_true(nudgel_pgconn_busy(x.c));
    turn_until(&x, &x.dones, 3, 5000);
    assert_int_equal(x.err, NUDGEL_OK);
    assert_string_equal(x.value[0], "after");

    nudgel_pgconn_stats_t s;
    nudgel_pgconn_stats(x.c, &s);
    assert_int_equal(s.statements, 3);
    assert_int_equal(s.connects, 1);
    assert_int_equal(s.losses, 0);
    assert_int_equal(x.downs, 0);
    ctx_close(&x);
}

static void send_pipeline(ctx_t *x, const char *first)
{
    PGconn *pg = nudgel_pgconn_conn(x->c);
    assert_true(PQenterPipelineMode(pg));
    assert_true(PQsendQueryParams(pg, first, 0, NULL, NULL, NULL, NULL, 0));
    assert_true(PQsendQueryParams(pg, "SELECT 2", 0, NULL, NULL, NULL, NULL, 0));
    assert_true(PQpipelineSync(pg));
    assert_true(PQsendQueryParams(pg, "SELECT 3", 0, NULL, NULL, NULL, NULL, 0));
    assert_true(PQpipelineSync(pg));
    assert_int_equal(nudgel_pgconn_sent(x->c, 2, on_done, x), NUDGEL_OK);
}

static void test_pipeline(void **state)
{
    (void)state;
    ctx_t x;
    ctx_open(&x, dsn, 100);
    turn_until(&x, &x.ups, 1, 10000);

    send_pipeline(&x, "SELECT 1");
    turn_until(&x, &x.dones, 1, 5000);
    assert_int_equal(x.err, NUDGEL_OK);
    assert_int_equal(x.n, 5);
    static const ExecStatusType want[5] = {PGRES_TUPLES_OK, PGRES_TUPLES_OK, PGRES_PIPELINE_SYNC,
                                           PGRES_TUPLES_OK, PGRES_PIPELINE_SYNC};
    for (int i = 0; i < 5; i++)
        assert_int_equal(x.status[i], want[i]);
    assert_string_equal(x.value[0], "1");
    assert_string_equal(x.value[1], "2");
    assert_string_equal(x.value[3], "3");
    assert_int_equal(PQpipelineStatus(nudgel_pgconn_conn(x.c)), PQ_PIPELINE_OFF);

    /* The first transaction fails: the rest of it is aborted, the second runs. */
    send_pipeline(&x, "SELECT 1/0");
    turn_until(&x, &x.dones, 2, 5000);
    assert_int_equal(x.err, NUDGEL_OK);
    assert_int_equal(x.n, 5);
    static const ExecStatusType aborted[5] = {PGRES_FATAL_ERROR, PGRES_PIPELINE_ABORTED,
                                              PGRES_PIPELINE_SYNC, PGRES_TUPLES_OK,
                                              PGRES_PIPELINE_SYNC};
    for (int i = 0; i < 5; i++)
        assert_int_equal(x.status[i], aborted[i]);
    assert_string_equal(x.value[3], "3");
    assert_int_equal(PQpipelineStatus(nudgel_pgconn_conn(x.c)), PQ_PIPELINE_OFF);

    /* A plain statement after the pipelines. */
    send_or_fail(&x, "SELECT 'plain'");
    turn_until(&x, &x.dones, 3, 5000);
    assert_string_equal(x.value[0], "plain");

    /* syncs that do not match the pipeline mode: refused, the connection dropped. */
    PGconn *pg = nudgel_pgconn_conn(x.c);
    assert_true(PQsendQueryParams(pg, "SELECT 4", 0, NULL, NULL, NULL, NULL, 0));
    assert_int_equal(nudgel_pgconn_sent(x.c, 1, on_done, &x), NUDGEL_ERR_INVALID_ARG);
    assert_false(nudgel_pgconn_up(x.c));
    turn_until(&x, &x.ups, 2, 5000);
    assert_int_equal(x.downs, 1);
    assert_int_equal(x.dones, 3);

    /* Told of two syncs, one came: done says so, the connection is replaced. */
    pg = nudgel_pgconn_conn(x.c);
    assert_true(PQenterPipelineMode(pg));
    assert_true(PQsendQueryParams(pg, "SELECT 5", 0, NULL, NULL, NULL, NULL, 0));
    assert_true(PQpipelineSync(pg));
    assert_int_equal(nudgel_pgconn_sent(x.c, 2, on_done, &x), NUDGEL_OK);
    turn_until(&x, &x.dones, 4, 5000);
    assert_int_equal(x.err, NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(x.n, 2); /* SELECT 5 and its sync */
    assert_int_equal(x.status[1], PGRES_PIPELINE_SYNC);
    turn_until(&x, &x.ups, 3, 5000);
    assert_int_equal(x.downs, 2);
    ctx_close(&x);
}

/* Terminates backend @p pid from a separate, blocking connection (the test's, not the loop's). */
static void terminate(int pid)
{
    char errstr[256], sql[96];
    PGconn *side = nudgel_pg_connect(dsn, "test_pgconn_pg_side", 5, errstr, sizeof(errstr));
    if (!side)
        fail_msg("side connection: %s", errstr);
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d)", pid);
    PGresult *r = PQexec(side, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    PQfinish(side);
}

static void test_loss_mid_statement(void **state)
{
    (void)state;
    ctx_t x;
    ctx_open(&x, dsn, 200);
    turn_until(&x, &x.ups, 1, 10000);
    int pid1 = PQbackendPID(nudgel_pgconn_conn(x.c));
    assert_true(pid1 > 0);

    send_or_fail(&x, "SELECT pg_sleep(5)");
    turn_for(&x, 200); /* the statement is running on the server */
    assert_true(nudgel_pgconn_busy(x.c));
    int64_t killed_us = nudgel_mono_us();
    terminate(pid1);
    turn_until(&x, &x.dones, 1, 4000);
    printf("done %.1f ms after the terminate: %s\n", (double)(x.done_us - killed_us) / 1000,
           x.errstr);
    assert_int_equal(x.err, NUDGEL_ERR_PG_UNREACHABLE);
    assert_true(x.errstr[0] != '\0');
    assert_true(x.done_us - killed_us < 3000000); /* not after the 5 s sleep */
    assert_false(x.down_before_done);             /* done first, then on_state(false) */
    turn_until(&x, &x.downs, 1, 1000);
    assert_false(nudgel_pgconn_up(x.c));
    assert_null(nudgel_pgconn_conn(x.c));

    turn_until(&x, &x.ups, 2, 10000);
    assert_true(x.up_us - x.down_us >= 200000); /* after the back-off */
    int pid2 = PQbackendPID(nudgel_pgconn_conn(x.c));
    assert_true(pid2 > 0);
    assert_int_not_equal(pid1, pid2);
    send_or_fail(&x, "SELECT 'again'");
    turn_until(&x, &x.dones, 2, 5000);
    assert_int_equal(x.err, NUDGEL_OK);
    assert_string_equal(x.value[0], "again");

    nudgel_pgconn_stats_t s;
    nudgel_pgconn_stats(x.c, &s);
    assert_int_equal(s.losses, 1);
    assert_int_equal(s.reconnects, 1);
    assert_int_equal(s.connects, 2);
    ctx_close(&x);
}

static void test_loss_idle_and_caller_lost(void **state)
{
    (void)state;
    ctx_t x;
    ctx_open(&x, dsn, 100);
    turn_until(&x, &x.ups, 1, 10000);

    /* Idle: noticed from the socket, without a statement. */
    int pid1 = PQbackendPID(nudgel_pgconn_conn(x.c));
    terminate(pid1);
    turn_until(&x, &x.downs, 1, 3000);
    turn_until(&x, &x.ups, 2, 10000);
    int pid2 = PQbackendPID(nudgel_pgconn_conn(x.c));
    assert_int_not_equal(pid1, pid2);

    /* The caller says its send failed: down at once, on_state from the loop. */
    nudgel_pgconn_lost(x.c, "test: the send failed");
    assert_false(nudgel_pgconn_up(x.c));
    assert_int_equal(x.downs, 1);
    turn_until(&x, &x.downs, 2, 1000);
    turn_until(&x, &x.ups, 3, 10000);
    assert_int_not_equal(PQbackendPID(nudgel_pgconn_conn(x.c)), pid2);
    assert_int_equal(x.dones, 0);

    /* Said while a statement is in flight: its done comes from the loop, unreachable. */
    send_or_fail(&x, "SELECT pg_sleep(1)");
    nudgel_pgconn_lost(x.c, "test: given up");
    assert_int_equal(x.dones, 0);
    assert_false(nudgel_pgconn_up(x.c));
    turn_until(&x, &x.dones, 1, 1000);
    assert_int_equal(x.err, NUDGEL_ERR_PG_UNREACHABLE);
    assert_non_null(strstr(x.errstr, "given up"));
    turn_until(&x, &x.downs, 3, 1000);
    turn_until(&x, &x.ups, 4, 10000);
    ctx_close(&x);
}

/* NUDGEL_PG_DSN with a role that does not exist (and a wrong password). */
static void wrong_role_dsn(char *out, size_t size)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &msg);
    if (!opts)
        fail_msg("NUDGEL_PG_DSN does not parse");
    const char *host = "127.0.0.1", *port = "5432", *db = "nudgel";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
    }
    snprintf(out, size, "host=%s port=%s dbname=%s user=nudgel_no_such_role password=wrong", host,
             port, db);
    PQconninfoFree(opts);
}

static void test_wrong_credentials(void **state)
{
    (void)state;
    char bad[512];
    wrong_role_dsn(bad, sizeof(bad));
    ctx_t x;
    ctx_open(&x, bad, 100);
    turn_for(&x, 1000); /* attempts at 0, 100, 300, 700 ms */
    nudgel_pgconn_stats_t s;
    nudgel_pgconn_stats(x.c, &s);
    printf("%llu attempts in 1 s\n", (unsigned long long)s.attempts);
    assert_true(s.attempts >= 3 && s.attempts <= 5);
    assert_int_equal(s.connects, 0);
    assert_int_equal(x.ups + x.downs, 0);
    ctx_close(&x);
}

static void test_free_pending(void **state)
{
    (void)state;
    ctx_t x;
    ctx_open(&x, dsn, 100);
    turn_until(&x, &x.ups, 1, 10000);
    send_or_fail(&x, "SELECT pg_sleep(0.3)");
    turn_for(&x, 50);
    nudgel_pgconn_free(x.c); /* its done is never called */
    x.c = NULL;
    turn_for(&x, 600);
    assert_int_equal(x.dones, 0);

    /* Freed from inside done. */
    ctx_t y;
    ctx_open(&y, dsn, 100);
    turn_until(&y, &y.ups, 1, 10000);
    y.free_in_done = true;
    send_or_fail(&y, "SELECT 1");
    turn_until(&y, &y.dones, 1, 5000);
    assert_null(y.c);
    turn_for(&y, 100);
    assert_int_equal(y.dones, 1);
    ctx_close(&y);
    ctx_close(&x);
}

int main(void)
{
    dsn = getenv("NUDGEL_PG_DSN");
    if (!dsn || !*dsn) {
        fprintf(stderr, "NUDGEL_PG_DSN is not set\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_loss_mid_statement),
        cmocka_unit_test(test_loss_idle_and_caller_lost),
        cmocka_unit_test(test_wrong_credentials),
        cmocka_unit_test(test_free_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
