/*
 * pg_lane.c — the worker's Postgres connections: one blocking (templates,
 * tenant limits, the single-claim fallback) and two pg_lane_t driven by the
 * event loop (non-blocking libpq: batched claims, batched outcomes); Postgres
 * going down (intake pauses) and coming back (reconnects with backoff).
 * Everything that knows how a lane's statement is sent and collected is here,
 * so the file can be swapped for a shared Postgres module without touching
 * the stages that fill the batches (claims.c, outcomes.c).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "nudgel/log.h"
#include "nudgel/pg.h"
#include "nudgel/timeutil.h"

#include "messages.h"

/* Postgres is unreachable: pause intake; jobs already in hand wait in their queues. */
void postgres_down(worker_t *w, const char *what, const char *errstr)
{
    if (!w->pg_down) {
        nudgel_log_error("%s: %s; pausing intake until Postgres is back", what, errstr);
        w->pg_backoff_ms = 250;
    }
    w->pg_down = true;
    w->pg_retry_at_us = nudgel_mono_us() + w->pg_backoff_ms * 1000;
    nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_POSTGRES);
    nudgel_consumer_pause(w->retry_consumer, NUDGEL_PAUSE_POSTGRES);
    nudgel_metric_set(w->m_pg_up, NULL, 0);
}

/* While down: one reconnect attempt when due (backoff up to pg_reconnect_max_ms). */
void postgres_revive(worker_t *w)
{
    if (!w->pg_down || nudgel_mono_us() < w->pg_retry_at_us)
        return;
    /* A lane whose statement is still in flight on a live connection keeps it. */
    PGconn *conns[3] = {w->pg, w->claim_lane->conn, w->record_lane->conn};
    bool all_ok = true;
    for (int i = 0; i < 3; i++) {
        if (PQstatus(conns[i]) != CONNECTION_OK) {
            PQreset(conns[i]);
            if (i > 0)
                PQsetnonblocking(conns[i], 1);
        }
        all_ok = all_ok && PQstatus(conns[i]) == CONNECTION_OK;
    }
    if (!all_ok) {
        w->pg_backoff_ms = w->pg_backoff_ms * 2 > w->pg_backoff_max_ms ? w->pg_backoff_max_ms
                                                                       : w->pg_backoff_ms * 2;
        w->pg_retry_at_us = nudgel_mono_us() + w->pg_backoff_ms * 1000;
        return;
    }
    nudgel_log_info("Postgres is back; resuming intake (%zu claim(s), %zu outcome(s) waiting)",
                    w->to_claim.count, w->to_record.count);
    w->pg_down = false;
    nudgel_consumer_resume(w->consumer, NUDGEL_PAUSE_POSTGRES);
    nudgel_consumer_resume(w->retry_consumer, NUDGEL_PAUSE_POSTGRES);
    nudgel_metric_set(w->m_pg_up, NULL, 1);
}

bool pg_unreachable(nudgel_err_t err)
{
    return err == NUDGEL_ERR_PG_UNREACHABLE;
}

/* After a *_send(): in flight; flushing while libpq still holds unsent bytes. */
nudgel_err_t lane_sent(pg_lane_t *l, char *errstr, size_t errstr_size)
{
    int r = PQflush(l->conn);
    if (r < 0) {
        snprintf(errstr, errstr_size, "%s: sending: %s", l->name, PQerrorMessage(l->conn));
        return NUDGEL_ERR_PG_UNREACHABLE;
    }
    l->busy = true;
    l->flushing = r == 1;
    return NUDGEL_OK;
}

/*
 * The lane's statement result when it has arrived: 1 and @p *res, 0 while
 * it runs, -1 when the connection is lost (the statement's fate unknown).
 */
int lane_result(pg_lane_t *l, PGresult **res, char *errstr, size_t errstr_size)
{
    if (l->flushing) {
        int r = PQflush(l->conn);
        if (r == 1)
            return 0;
        l->flushing = false;
        if (r < 0)
            goto lost;
    }
    if (!PQconsumeInput(l->conn))
        goto lost;
    if (PQisBusy(l->conn))
        return 0;
    *res = PQgetResult(l->conn);
    for (PGresult *extra; (extra = PQgetResult(l->conn));)
        PQclear(extra);
    l->busy = false;
    return 1;
lost:
    snprintf(errstr, errstr_size, "%s: %s", l->name, PQerrorMessage(l->conn));
    l->busy = false;
    return -1;
}

/*
 * Connects the blocking connection and the two lanes (claims, outcomes) to
 * pg.dsn. On failure the worker keeps what was opened; postgres_close()
 * frees it.
 */
nudgel_err_t postgres_open(worker_t *w, char *errstr, size_t errstr_size)
{
    w->pg = nudgel_pg_connect(nudgel_conf_get_str(w->conf, "pg.dsn"), PROGRAM,
                              (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s"), errstr,
                              errstr_size);
    if (!w->pg)
        return NUDGEL_ERR_PG_UNREACHABLE;
    static const char *const lane_names[2] = {"claims", "outcomes"};
    pg_lane_t **lanes[2] = {&w->claim_lane, &w->record_lane};
    for (int i = 0; i < 2; i++) {
        if (!(*lanes[i] = calloc(1, sizeof(pg_lane_t)))) {
            snprintf(errstr, errstr_size, "out of memory");
            return NUDGEL_ERR_NO_MEMORY;
        }
        (*lanes[i])->name = lane_names[i];
        (*lanes[i])->conn = nudgel_pg_connect(
            nudgel_conf_get_str(w->conf, "pg.dsn"), PROGRAM,
            (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s"), errstr, errstr_size);
        if (!(*lanes[i])->conn)
            return NUDGEL_ERR_PG_UNREACHABLE;
        PQsetnonblocking((*lanes[i])->conn, 1);
    }
    return NUDGEL_OK;
}

void postgres_close(worker_t *w)
{
    if (w->pg)
        PQfinish(w->pg);
    pg_lane_t *pg_lanes[2] = {w->claim_lane, w->record_lane};
    for (int i = 0; i < 2; i++) {
        if (pg_lanes[i] && pg_lanes[i]->conn)
            PQfinish(pg_lanes[i]->conn);
        free(pg_lanes[i]);
    }
}

bool postgres_busy(const worker_t *w)
{
    return w->claim_lane->busy || w->record_lane->busy;
}

size_t postgres_wait_fds(const worker_t *w, int *fds, size_t max)
{
    size_t nfds = 0;
    if (nfds < max && w->claim_lane->busy && PQsocket(w->claim_lane->conn) >= 0)
        fds[nfds++] = PQsocket(w->claim_lane->conn);
    if (nfds < max && w->record_lane->busy && PQsocket(w->record_lane->conn) >= 0)
        fds[nfds++] = PQsocket(w->record_lane->conn);
    return nfds;
}

bool postgres_ready(const worker_t *w)
{
    return !w->pg_down && PQstatus(w->pg) == CONNECTION_OK;
}
