/*
 * pgconn_internal.h — the Postgres connection's state, private to the
 * runtime: what pgconn_connect.c (its life: creation, connect attempts,
 * back-off, loss, free) and pgconn.c (the statement in flight: flush, read,
 * results, pipelines) share. Nothing outside these two files includes it;
 * roles see only nudgel/pgconn.h.
 *
 * Three states. WAITING: no connection, the timer is armed for the next
 * attempt. CONNECTING: PQconnectPoll is driven by the socket watch (READ or
 * WRITE, as it asks), the timer is armed for the attempt's deadline. UP:
 * the socket is watched for reads (and writes while libpq holds unsent
 * bytes of the statement in flight), the timer is idle.
 *
 * What is owed to the caller after a loss — the done callback of the
 * statement in flight, then on_state(false) — is not called from
 * pgconn_lose() (which may run inside the caller's own call,
 * nudgel_pgconn_sent() or nudgel_pgconn_lost()) but from the notify timer,
 * armed for "now": it runs in the same loop turn when the loss is seen in an
 * fd callback, and in the next one otherwise. Every caller callback runs
 * between c->depth++ and pgconn_leave(), so that nudgel_pgconn_free() inside
 * one only marks the connection, and the outermost frame frees it when the
 * callback returns.
 *
 * Ownership: a connection owns its PGconn, its socket watch, its two timers,
 * the results of the statement in flight and copies of its DSN (a secret),
 * application name and name. Threads: the loop's thread only.
 */
#ifndef NUDGEL_PGCONN_INTERNAL_H
#define NUDGEL_PGCONN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "nudgel/log.h"
#include "nudgel/loop.h"
#include "nudgel/metrics.h"
#include "nudgel/pgconn.h"

#define LOG_KIND_MAX 96
#define WHY_MAX      512

typedef enum conn_state {
    ST_WAITING,
    ST_CONNECTING,
    ST_UP,
} conn_state_t;

struct nudgel_pgconn {
    nudgel_loop_t *loop;
    char *dsn; /* secret: zeroed before it is freed, never logged */
    char *application_name;
    char *name;
    int64_t connect_timeout_us, backoff_min_us, backoff_max_us;
    nudgel_pgconn_state_fn *on_state;
    nudgel_metric_t *statement_seconds; /* may be NULL */
    void *state_opaque;

    conn_state_t state;
    PGconn *conn;
    int fd;                 /* the socket watched, -1 when none */
    unsigned watched;       /* the events asked of it */
    nudgel_timer_t *timer;  /* WAITING: the next attempt; CONNECTING: its deadline */
    nudgel_timer_t *notify; /* pays what a loss owes the caller, from the loop */
    int64_t backoff_us;     /* the wait after the next failure */

    /* The statement in flight (busy: between sent() and its done callback). */
    bool busy, flushing, last_null;
    size_t syncs, syncs_seen;
    PGresult **results;
    size_t nresults, results_cap;
    nudgel_err_t results_err; /* results dropped: NUDGEL_ERR_TOO_LARGE or _NO_MEMORY */
    nudgel_pgconn_done_fn *done;
    void *done_opaque;
    int64_t sent_us;

    /* Owed after a loss, paid by the notify timer. */
    bool owe_done, owe_down;
    nudgel_err_t owe_err;
    char owe_why[WHY_MAX];
    bool reported_up; /* the last on_state() said up */

    /* Logs: trouble since the last connect, and the limiters (core's) of the noisy kinds. */
    bool trouble;
    int64_t down_since_us;
    uint64_t failed_attempts;
    nudgel_log_ratelimit_t log_error, log_back, log_notice;
    char kind_error[LOG_KIND_MAX], kind_back[LOG_KIND_MAX], kind_notice[LOG_KIND_MAX];

    int depth;  /* caller callbacks running */
    bool freed; /* nudgel_pgconn_free() was called inside one */
    nudgel_pgconn_stats_t stats;
};

/* ---- pgconn_connect.c -------------------------------------------------- */

/* libpq's last error on one line. It names host and port, never the DSN or a password. */
void pgconn_pq_message(PGconn *conn, const char *what, char *out, size_t size);

/* After a caller callback: false when the caller freed @p c inside it (then it is gone). */
bool pgconn_leave(nudgel_pgconn_t *c);

/*
 * The connection is lost (or dropped for a bug: @p owe_err tells the done
 * callback which): closes it, owes the caller the statement's done and
 * on_state(false), and schedules the reconnect. Calls nothing of the caller.
 */
void pgconn_lose(nudgel_pgconn_t *c, const char *why, nudgel_err_t owe_err);

/* While up: reads, and writes while libpq holds unsent bytes. Loses the connection on failure. */
bool pgconn_update_watch(nudgel_pgconn_t *c);

/* ---- pgconn.c ---------------------------------------------------------- */

/*
 * The statement ended: its done callback with every result kept, which are
 * cleared after it returns (the results array is reused for the next one
 * unless the callback already sent it). @returns false when the caller
 * freed @p c inside the callback.
 */
bool pgconn_finish_statement(nudgel_pgconn_t *c, nudgel_err_t err, const char *errstr);

/* Up: the socket is ready. Sends, reads, and ends the statement when it is complete. */
void pgconn_io_step(nudgel_pgconn_t *c, unsigned events);

#endif
