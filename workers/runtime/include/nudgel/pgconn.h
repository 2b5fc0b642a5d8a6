/*
 * nudgel/pgconn.h — one non-blocking Postgres connection on the event loop
 * (nudgel/loop.h), with at most one statement (or one pipeline) in flight.
 *
 * The module owns the connection's life: it connects at once, without ever
 * blocking the loop (PQconnectStartParams, then PQconnectPoll each time the
 * loop says the socket is ready; a loop timer enforces connect_timeout_ms),
 * and it replaces a lost connection by itself. The caller owns the
 * statements: while the connection is up and not busy it sends with its own
 * *_send() functions on nudgel_pgconn_conn() (PQsendQueryParams, or a
 * pipeline of them ended by PQpipelineSync), then hands the statement over
 * with nudgel_pgconn_sent(). The module flushes what libpq holds, reads what
 * the server answers, and calls the done callback once with every result.
 *
 * Loss policy (one for every role):
 *   - A connection is lost when libpq says so (sending, reading, or idle:
 *     the socket is watched for reads while idle too, so a terminated
 *     backend is noticed without waiting for the next statement), or when
 *     the caller says so (nudgel_pgconn_lost(): its *_send() failed).
 *   - On loss: one line at error (core's nudgel_log_ratelimit_t: one
 *     every 10 s per connection, then a line counting those suppressed;
 *     never the DSN),
 *     the statement in flight gets done(NUDGEL_ERR_PG_UNREACHABLE) — its
 *     fate on the server is unknown —, then the state callback (up=false),
 *     and the old connection is closed (PQfinish).
 *   - Reconnects open a NEW connection (never PQreset, which blocks) after a
 *     back-off: backoff_min_ms after the loss, doubling after each failed
 *     attempt up to backoff_max_ms; a successful connect resets it. The first
 *     connect follows the same rule when it fails. When it is back: one line
 *     at info, then the state callback (up=true).
 *   - Nothing is retried here: the caller decides what to do with a
 *     statement whose fate is unknown (its batch back to the queue, say).
 *
 * Callbacks run from the loop's dispatch (an fd or timer callback of this
 * module), never inside a call the caller makes into this module: after
 * nudgel_pgconn_sent() or nudgel_pgconn_lost(), the outcome comes on a later
 * dispatch (the same loop turn when possible). A callback may call anything
 * here, nudgel_pgconn_sent() (the next statement) and nudgel_pgconn_free()
 * included.
 *
 * Host names are resolved by libpq inside PQconnectPoll with a blocking
 * getaddrinfo(): give the DSN an IP address (host=127.0.0.1 or hostaddr=)
 * where a slow resolver must not stall the loop. COPY is not supported.
 *
 * Threads: every function here runs on the loop's thread only, and the
 * connection belongs to that thread.
 */
#ifndef NUDGEL_PGCONN_H
#define NUDGEL_PGCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "nudgel/error.h"
#include "nudgel/loop.h"

#define NUDGEL_PGCONN_RESULTS_MAX 65536 /* hard cap of the results one statement may return */

typedef struct nudgel_pgconn nudgel_pgconn_t;

/**
 * The statement handed over by nudgel_pgconn_sent() has ended, once:
 *   - NUDGEL_OK: every result arrived, in order. @p results holds them all,
 *     a failed statement's PGRES_FATAL_ERROR included (the connection is
 *     fine: the caller reads the statuses); for a pipeline, the
 *     PGRES_PIPELINE_SYNC results are included where they came, so the
 *     caller sees which statements each sync (transaction) covered;
 *   - NUDGEL_ERR_PG_UNREACHABLE: the connection was lost before the last
 *     result; whether the statement ran is unknown. @p results holds what
 *     came before the loss (usually nothing useful);
 *   - NUDGEL_ERR_TOO_LARGE / NUDGEL_ERR_NO_MEMORY: the statement ended, but
 *     more than NUDGEL_PGCONN_RESULTS_MAX results came (or memory ran out):
 *     the ones kept are in @p results, the rest were dropped.
 *   - NUDGEL_ERR_INVALID_ARG: a bug in the caller — the results did not
 *     match @p syncs (fewer syncs came, or statements followed the last
 *     one) or a COPY started; the connection was dropped (as a loss).
 * @p results, @p errstr ("" on NUDGEL_OK) are borrowed for the call only:
 * the module PQclears the results after it returns.
 */
typedef void(nudgel_pgconn_done_fn)(void *opaque, nudgel_pgconn_t *c, PGresult *const *results,
                                    size_t n, nudgel_err_t err, const char *errstr);

/** The connection came up (@p up) or was lost (!@p up; only after an up). */
typedef void(nudgel_pgconn_state_fn)(void *opaque, nudgel_pgconn_t *c, bool up);

typedef struct nudgel_pgconn_options {
    const char *dsn;                  /* a connection string or URI; copied; secret: never logged */
    const char *application_name;     /* copied; NULL: "nudgel" */
    const char *name;                 /* copied, for logs ("claims"); NULL: "postgres" */
    int64_t connect_timeout_ms;       /* one attempt's limit; 0: 10000 */
    int64_t backoff_min_ms;           /* 0: 100 */
    int64_t backoff_max_ms;           /* 0: 5000 (raised to backoff_min_ms when below it) */
    nudgel_pgconn_state_fn *on_state; /* may be NULL */
    void *opaque;                     /* for on_state */
    /* A histogram with one label (nudgel_fleet_metrics_pg_statements()): each
     * statement's send-to-done time is observed under the connection's name. */
    struct nudgel_metric *statement_seconds;
} nudgel_pgconn_options_t;

/** Counters and the last round trip, for metrics. */
typedef struct nudgel_pgconn_stats {
    uint64_t attempts;       /* connect attempts started */
    uint64_t connects;       /* attempts that succeeded */
    uint64_t reconnects;     /* connects after the first one */
    uint64_t losses;         /* up connections lost (or dropped for a caller's bug) */
    uint64_t statements;     /* done callbacks run */
    int64_t last_rtt_us;     /* the last statement's sent() to done; -1 before the first */
    int64_t last_attempt_us; /* nudgel_mono_us() when the last attempt started; 0: none */
} nudgel_pgconn_stats_t;

/**
 * @brief A connection on @p loop, connecting at once (the first attempt
 * starts before this returns; on_state(up=true) comes from the loop when it
 * succeeds). @p opts is copied.
 * @returns NUDGEL_OK and @p *out (the caller owns it:
 * nudgel_pgconn_free()); NUDGEL_ERR_CONFIG when the DSN is empty or not a
 * valid connection string (the reason never quotes it); NUDGEL_ERR_INVALID_ARG
 * or NUDGEL_ERR_NO_MEMORY. A server that cannot be reached is not an error
 * here: the module keeps trying.
 */
nudgel_err_t nudgel_pgconn_new(nudgel_loop_t *loop, const nudgel_pgconn_options_t *opts,
                               nudgel_pgconn_t **out, char *errstr, size_t errstr_size);

/**
 * @brief Closes the connection (PQfinish), stops watching its socket and
 * frees its timers. A pending done callback is not called. NULL is a no-op;
 * may be called from inside this module's callbacks.
 */
void nudgel_pgconn_free(nudgel_pgconn_t *c);

/** @brief Whether the connection is up (connected and not lost). */
bool nudgel_pgconn_up(const nudgel_pgconn_t *c);

/** @brief Whether a statement is in flight (between sent() and its done callback). */
bool nudgel_pgconn_busy(const nudgel_pgconn_t *c);

/**
 * @brief The libpq connection while up, or NULL. Borrowed: valid until the
 * connection is lost or freed (do not keep it across loop turns; never
 * PQfinish, PQreset or PQexec it). Send on it only while !busy.
 */
PGconn *nudgel_pgconn_conn(const nudgel_pgconn_t *c);

/**
 * @brief The caller has just sent a statement on nudgel_pgconn_conn():
 * @p syncs is 0 for a plain statement (results are collected until
 * PQgetResult returns NULL), or the number of PQpipelineSync() calls of a
 * pipeline (collected until that many PGRES_PIPELINE_SYNC results, then
 * PQexitPipelineMode). The module sends what libpq still holds and calls
 * @p done (with @p opaque) exactly once, from the loop — also when the
 * connection turns out lost while flushing. A pipeline must end with its
 * last PQpipelineSync(): the server does not answer a statement sent after
 * it, and the module would wait for that answer until the connection dies.
 * @returns NUDGEL_OK; NUDGEL_ERR_INVALID_ARG when @p done is NULL, the
 * connection is not up or is busy, or @p syncs does not match the pipeline
 * mode (the connection is then dropped as lost: it holds a statement nobody
 * collects). On error @p done is never called.
 */
nudgel_err_t nudgel_pgconn_sent(nudgel_pgconn_t *c, size_t syncs, nudgel_pgconn_done_fn *done,
                                void *opaque);

/**
 * @brief The caller's *_send() failed on a broken connection (@p why: its
 * reason, borrowed, for the log): the connection is treated as lost (see the
 * loss policy); a statement still in flight gets done(NUDGEL_ERR_PG_UNREACHABLE)
 * from the loop. No-op while not up.
 */
void nudgel_pgconn_lost(nudgel_pgconn_t *c, const char *why);

/** @brief The counters and the last round trip (inside done: the statement just ended). */
void nudgel_pgconn_stats(const nudgel_pgconn_t *c, nudgel_pgconn_stats_t *out);

/** @brief The last statement's round trip in microseconds, -1 before the first. */
int64_t nudgel_pgconn_last_rtt_us(const nudgel_pgconn_t *c);

/** @brief The name given in the options (for the caller's logs). */
const char *nudgel_pgconn_name(const nudgel_pgconn_t *c);

#endif
