/*
 * pg_lane.c — the deliverer's Postgres connections: two non-blocking lanes
 * (claims, flushes), each with at most one statement (or pipeline) in
 * flight, and outages: while Postgres is away intake is paused, jobs in hand
 * wait in their queues, and the connections are re-made with back-off.
 */
#include <stdio.h>

#include "deliverer.h"
#include "nudgel/log.h"
#include "nudgel/pg.h"
#include "nudgel/timeutil.h"

#define PG_BACKOFF_MAX_MS 1000 /* longest wait between reconnect attempts */

/* Postgres is unreachable (or a statement failed): pause intake; jobs in hand wait in their queues.
 */
void postgres_down(worker_t *w, const char *errstr)
{
    if (w->pg_ok) {
        nudgel_log_error("%s; pausing intake", errstr);
        w->pg_backoff_ms = 100;
    }
    w->pg_ok = false;
    w->pg_retry_at_us = nudgel_mono_us() + w->pg_backoff_ms * 1000;
    nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_POSTGRES);
}

PGconn *lane_connect(worker_t *w, char *errstr, size_t errstr_size)
{
    PGconn *c = nudgel_pg_connect(nudgel_conf_get_str(w->conf, "pg.dsn"), PROGRAM,
                                  (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s"), errstr,
                                  errstr_size);
    if (c && PQsetnonblocking(c, 1) != 0) {
        snprintf(errstr, errstr_size, "non-blocking mode: %s", PQerrorMessage(c));
        PQfinish(c);
        c = NULL;
    }
    return c;
}

/* While down: one reconnect attempt when due (back-off up to PG_BACKOFF_MAX_MS). */
void postgres_revive(worker_t *w)
{
    char errstr[512];
    if (w->pg_ok || nudgel_mono_us() < w->pg_retry_at_us)
        return;
    if (PQstatus(w->pg) != CONNECTION_OK)
        PQreset(w->pg);
    bool all_ok = PQstatus(w->pg) == CONNECTION_OK;
    wh_lane_t *lanes[2] = {&w->claim_lane, &w->flush_lane};
    for (int i = 0; i < 2; i++) {
        wh_lane_t *l = lanes[i];
        /* A lane whose statement is still in flight on a live connection keeps it. */
        if (!l->busy && (l->broken || PQstatus(l->conn) != CONNECTION_OK)) {
            PQfinish(l->conn);
            l->conn = lane_connect(w, errstr, sizeof(errstr));
            l->broken = l->conn == NULL;
        }
        all_ok = all_ok && PQstatus(l->conn) == CONNECTION_OK;
    }
    if (!all_ok) {
        w->pg_backoff_ms =
            w->pg_backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : w->pg_backoff_ms * 2;
        w->pg_retry_at_us = nudgel_mono_us() + w->pg_backoff_ms * 1000;
        return;
    }
    w->pg_ok = true;
    nudgel_log_info("Postgres is back; resuming intake (%zu claim(s), %zu outcome(s) waiting)",
                    w->claim_count, w->outcome_count);
    nudgel_consumer_resume(w->consumer, NUDGEL_PAUSE_POSTGRES);
}

/* After a *_send(): in flight; flushing while libpq still holds unsent bytes. */
nudgel_err_t lane_sent(wh_lane_t *l, char *errstr, size_t errstr_size)
{
    int r = PQflush(l->conn);
    if (r < 0) {
        snprintf(errstr, errstr_size, "%s: sending: %s", l->name, PQerrorMessage(l->conn));
        l->broken = true;
        return NUDGEL_ERR_PG_UNREACHABLE;
    }
    l->busy = true;
    l->flushing = r == 1;
    l->sent_us = nudgel_mono_us();
    return NUDGEL_OK;
}

/* Sends what libpq still holds: 0 when all is sent, 1 while some is left, -1 when lost. */
int lane_push_bytes(wh_lane_t *l)
{
    if (!l->flushing)
        return 0;
    int r = PQflush(l->conn);
    if (r == 1)
        return 1;
    l->flushing = false;
    return r < 0 ? -1 : 0;
}

/*
 * The claim lane's result when it has arrived: 1 and @p *res, 0 while it
 * runs, -1 when the connection is lost.
 */
int lane_result(wh_lane_t *l, PGresult **res, char *errstr, size_t errstr_size)
{
    int r = lane_push_bytes(l);
    if (r == 1)
        return 0;
    if (r < 0 || !PQconsumeInput(l->conn))
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
    l->broken = true;
    return -1;
}

/* The lanes' sockets while a statement is in flight (to wait on with the HTTP transfers). */
size_t lane_fds(worker_t *w, int *fds)
{
    size_t n = 0;
    if (w->claim_lane.busy && PQsocket(w->claim_lane.conn) >= 0)
        fds[n++] = PQsocket(w->claim_lane.conn);
    if (w->flush_lane.busy && PQsocket(w->flush_lane.conn) >= 0)
        fds[n++] = PQsocket(w->flush_lane.conn);
    return n;
}
