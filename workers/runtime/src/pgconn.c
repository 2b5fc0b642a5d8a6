/*
 * pgconn.c — the statement in flight on the Postgres connection (see
 * nudgel/pgconn.h; the state and its invariants are in pgconn_internal.h):
 * nudgel_pgconn_sent() hands it over, the module flushes what libpq holds,
 * reads and keeps every result (capped), counts the syncs of a pipeline, and
 * calls the done callback once. Connecting, back-off and loss are
 * pgconn_connect.c.
 *
 * Threads: the loop's thread only.
 */
#include "nudgel/pgconn.h"

#include <stdio.h>
#include <stdlib.h>

#include "nudgel/timeutil.h"
#include "pgconn_internal.h"

/* ---- the statement in flight ------------------------------------------- */

bool pgconn_finish_statement(nudgel_pgconn_t *c, nudgel_err_t err, const char *errstr)
{
    char why[WHY_MAX];
    PGresult **results = c->results;
    size_t n = c->nresults, cap = c->results_cap;
    nudgel_pgconn_done_fn *done = c->done;
    void *opaque = c->done_opaque;

    snprintf(why, sizeof(why), "%s", errstr);
    if (err == NUDGEL_OK && c->results_err != NUDGEL_OK) {
        err = c->results_err;
        snprintf(why, sizeof(why), "%s: results dropped past %zu (%s)", c->name, n,
                 nudgel_strerror(err));
    }
    c->results = NULL;
    c->nresults = c->results_cap = 0;
    c->done = NULL;
    c->done_opaque = NULL;
    c->busy = c->flushing = false;
    c->stats.statements++;
    c->stats.last_rtt_us = nudgel_mono_us() - c->sent_us;
    nudgel_metric_observe(c->statement_seconds, c->name, (double)c->stats.last_rtt_us / 1e6);
    if (c->state == ST_UP)
        pgconn_update_watch(c); /* reads only now; a failure there is a loss, reported apart */

    c->depth++;
    done(opaque, c, results, n, err, why);
    bool alive = pgconn_leave(c);

    for (size_t i = 0; i < n; i++)
        PQclear(results[i]);
    if (alive && !c->results) {
        c->results = results;
        c->results_cap = cap;
    } else {
        free(results);
    }
    return alive;
}

/* Keeps @p r for the done callback; past the cap (or memory) it is dropped and counted. */
static void keep_result(nudgel_pgconn_t *c, PGresult *r)
{
    if (c->nresults == c->results_cap) {
        size_t cap = c->results_cap ? c->results_cap * 2 : 8;
        if (cap > NUDGEL_PGCONN_RESULTS_MAX)
            cap = NUDGEL_PGCONN_RESULTS_MAX;
        PGresult **grown = cap > c->results_cap ? realloc(c->results, cap * sizeof(*grown)) : NULL;
        if (!grown) {
            if (c->results_err == NUDGEL_OK)
                c->results_err = cap > c->results_cap ? NUDGEL_ERR_NO_MEMORY : NUDGEL_ERR_TOO_LARGE;
            PQclear(r);
            return;
        }
        c->results = grown;
        c->results_cap = cap;
    }
    c->results[c->nresults++] = r;
}

/*
 * Takes every result that has arrived. @returns 1 when the statement is
 * complete, 0 while more is to come, -1 when the connection is lost
 * (@p why), -2 when the statement does not match what sent() was told
 * (@p why; a bug in the caller).
 */
static int collect(nudgel_pgconn_t *c, char *why, size_t why_size)
{
    while (!PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            if (PQstatus(c->conn) == CONNECTION_BAD)
                break;
            if (c->syncs == 0)
                return 1;
            /* In a pipeline a NULL ends each statement's results; a second
             * one in a row means libpq has nothing queued at all. */
            if (c->last_null) {
                snprintf(why, why_size, "%zu sync result(s) came, sent() was told of %zu",
                         c->syncs_seen, c->syncs);
                return -2;
            }
            c->last_null = true;
            continue;
        }
        c->last_null = false;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            snprintf(why, why_size, "COPY is not supported");
            return -2;
        }
        keep_result(c, r);
        if (st == PGRES_PIPELINE_SYNC && ++c->syncs_seen == c->syncs) {
            if (!PQexitPipelineMode(c->conn)) {
                pgconn_pq_message(c->conn, "statements left after the last sync", why, why_size);
                return -2;
            }
            return 1;
        }
    }
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        pgconn_pq_message(c->conn, NULL, why, why_size);
        return -1;
    }
    return 0;
}

void pgconn_io_step(nudgel_pgconn_t *c, unsigned events)
{
    char why[WHY_MAX];
    if ((events & NUDGEL_LOOP_READ) && !PQconsumeInput(c->conn))
        goto lost;
    if (c->busy && c->flushing) {
        int r = PQflush(c->conn);
        if (r < 0)
            goto lost;
        c->flushing = r == 1;
    }
    if (PQstatus(c->conn) == CONNECTION_BAD)
        goto lost;
    if (!c->busy) {
        /* Idle: what the server says unasked (notices, parameter changes) is parsed and dropped. */
        (void)PQisBusy(c->conn);
        for (PGnotify *n; (n = PQnotifies(c->conn));)
            PQfreemem(n);
        pgconn_update_watch(c);
        return;
    }
    switch (collect(c, why, sizeof(why))) {
    case 0:
        pgconn_update_watch(c);
        return;
    case 1:
        pgconn_finish_statement(c, NUDGEL_OK, "");
        return;
    case -2:
        pgconn_lose(c, why, NUDGEL_ERR_INVALID_ARG);
        return;
    default:
        pgconn_lose(c, why, NUDGEL_ERR_PG_UNREACHABLE);
        return;
    }
lost:
    pgconn_pq_message(c->conn, NULL, why, sizeof(why));
    pgconn_lose(c, why, NUDGEL_ERR_PG_UNREACHABLE);
}

/* ---- the API ----------------------------------------------------------- */

bool nudgel_pgconn_up(const nudgel_pgconn_t *c)
{
    return c->state == ST_UP && !c->freed;
}

bool nudgel_pgconn_busy(const nudgel_pgconn_t *c)
{
    return c->busy;
}

PGconn *nudgel_pgconn_conn(const nudgel_pgconn_t *c)
{
    return nudgel_pgconn_up(c) ? c->conn : NULL;
}

nudgel_err_t nudgel_pgconn_sent(nudgel_pgconn_t *c, size_t syncs, nudgel_pgconn_done_fn *done,
                                void *opaque)
{
    char why[WHY_MAX];
    if (!c || !done || !nudgel_pgconn_up(c) || c->busy)
        return NUDGEL_ERR_INVALID_ARG;
    bool pipeline = PQpipelineStatus(c->conn) != PQ_PIPELINE_OFF;
    if (pipeline != (syncs > 0)) {
        snprintf(why, sizeof(why),
                 "sent() was told of %zu sync(s) on a connection %s pipeline mode", syncs,
                 pipeline ? "in" : "not in");
        pgconn_lose(c, why, NUDGEL_ERR_INVALID_ARG);
        return NUDGEL_ERR_INVALID_ARG;
    }
    c->busy = true;
    c->flushing = c->last_null = false;
    c->syncs = syncs;
    c->syncs_seen = 0;
    c->nresults = 0;
    c->results_err = NUDGEL_OK;
    c->done = done;
    c->done_opaque = opaque;
    c->sent_us = nudgel_mono_us();
    int r = PQflush(c->conn);
    if (r < 0) {
        /* done comes from the loop, like every other outcome. */
        pgconn_pq_message(c->conn, "sending", why, sizeof(why));
        pgconn_lose(c, why, NUDGEL_ERR_PG_UNREACHABLE);
        return NUDGEL_OK;
    }
    c->flushing = r == 1;
    pgconn_update_watch(c);
    return NUDGEL_OK;
}

void nudgel_pgconn_lost(nudgel_pgconn_t *c, const char *why)
{
    if (c && nudgel_pgconn_up(c))
        pgconn_lose(c, why && *why ? why : "the caller's send failed", NUDGEL_ERR_PG_UNREACHABLE);
}

void nudgel_pgconn_stats(const nudgel_pgconn_t *c, nudgel_pgconn_stats_t *out)
{
    *out = c->stats;
}

int64_t nudgel_pgconn_last_rtt_us(const nudgel_pgconn_t *c)
{
    return c->stats.last_rtt_us;
}

const char *nudgel_pgconn_name(const nudgel_pgconn_t *c)
{
    return c->name;
}
