/*
 * postgres.c — the worker's Postgres: three non-blocking connections on the
 * event loop (nudgel/pgconn.h, which owns connecting, loss and reconnects
 * with back-off), each with its readiness condition ("postgres:claims",
 * "postgres:outcomes", "postgres:lookups"):
 *   - claims: the batched claims (claims.c);
 *   - outcomes: the batched outcome writes (outcomes.c);
 *   - lookups: a small FIFO of single statements — templates (templates.c),
 *     tenant limits (tenant_limits.c), the one-job claims of the fallback
 *     (claims.c) — sent one at a time.
 * While any of them is down, or before the tenant limits were first read,
 * intake is paused (both consumers, NUDGEL_PAUSE_POSTGRES) and the
 * nudgel_messages_postgres_up gauge is 0; jobs in hand wait in their queues,
 * and a statement whose connection was lost goes back to the front of its
 * queue (a lookup stays at the head of its own): nothing is failed or lost.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"
#include "nudgel/pg.h"

#include "messages.h"

#define BACKOFF_MIN_MS 250

/* ---- the lookups queue ---------------------------------------------------- */

static void on_lookup_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                           nudgel_err_t err, const char *errstr);

void lookups_push(worker_t *w, lookup_t *lk)
{
    lk->next = NULL;
    if (w->lookups_tail)
        w->lookups_tail->next = lk;
    else
        w->lookups = lk;
    w->lookups_tail = lk;
    w->lookup_count++;
    kick(w);
}

static lookup_t *lookups_pop(worker_t *w)
{
    lookup_t *lk = w->lookups;
    w->lookups = lk->next;
    if (!w->lookups)
        w->lookups_tail = NULL;
    w->lookup_count--;
    lk->next = NULL;
    return lk;
}

void lookups_pump(void *opaque)
{
    worker_t *w = opaque;
    nudgel_pgconn_t *pc = w->pg_lookups.conn;
    char errstr[512];
    while (w->lookups && !w->lookup_sent && pc && nudgel_pgconn_up(pc) && !nudgel_pgconn_busy(pc)) {
        lookup_t *lk = w->lookups;
        PGconn *conn = nudgel_pgconn_conn(pc);
        nudgel_err_t err = lk->send(w, lk, conn, errstr, sizeof(errstr));
        if (err == NUDGEL_OK) {
            if (nudgel_pgconn_sent(pc, 0, on_lookup_done, w) == NUDGEL_OK) {
                w->lookup_sent = true;
                return;
            }
            snprintf(errstr, sizeof(errstr), "%s: the statement could not be sent", lk->what);
            err = NUDGEL_ERR_PG_UNREACHABLE;
        }
        if (err == NUDGEL_ERR_PG_UNREACHABLE) {
            nudgel_pgconn_lost(pc, errstr); /* it stays at the head until the connection is back */
            return;
        }
        lookups_pop(w);
        lk->done(w, lk, conn, NULL, err, errstr);
    }
}

static void on_lookup_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                           nudgel_err_t err, const char *errstr)
{
    worker_t *w = opaque;
    const PGresult *res = n ? results[0] : NULL;
    w->lookup_sent = false;
    /* No result, or a SQLSTATE saying the server is going away (nudgel/pg.h's one mapping). */
    if (err == NUDGEL_OK && nudgel_pg_result_err(NULL, res) == NUDGEL_ERR_PG_UNREACHABLE) {
        char why[512];
        snprintf(why, sizeof(why), "%s: %s", w->lookups->what,
                 res ? PQresultErrorMessage(res) : "no result");
        nudgel_pgconn_lost(c, why); /* the server is going away */
        err = NUDGEL_ERR_PG_UNREACHABLE;
    }
    if (err == NUDGEL_ERR_PG_UNREACHABLE) {
        kick(w); /* it stays at the head: sent again once the connection is back */
        return;
    }
    lookup_t *lk = lookups_pop(w);
    lk->done(w, lk, nudgel_pgconn_conn(c), err == NUDGEL_OK ? res : NULL, err, errstr);
    lookups_pump(w);
}

/* ---- the connections ------------------------------------------------------ */

void postgres_update(worker_t *w)
{
    bool ok = w->pg_claims.up && w->pg_outcomes.up && w->pg_lookups.up && w->limits_loaded;
    if (w->pg_lookups.up && w->limits_loaded)
        nudgel_ready_ok(w->pg_lookups.ready);
    else if (w->pg_lookups.up)
        nudgel_ready_fail(w->pg_lookups.ready, "reading the tenant limits");
    if (ok == w->pg_ok)
        return;
    w->pg_ok = ok;
    nudgel_metric_set(w->m_pg_up, NULL, ok ? 1 : 0);
    intake_pause(w, !ok);
    if (ok) {
        nudgel_log_info("Postgres is up; intake runs (%zu claim(s), %zu outcome(s) waiting)",
                        nudgel_batchq_count(w->to_claim), nudgel_batchq_count(w->to_record));
        return;
    }
    const pg_link_t *down = !w->pg_claims.up     ? &w->pg_claims
                            : !w->pg_outcomes.up ? &w->pg_outcomes
                                                 : &w->pg_lookups;
    nudgel_log_error("Postgres connection \"%s\" lost; intake paused until it is back "
                     "(%zu claim(s), %zu outcome(s) waiting)",
                     down->name, nudgel_batchq_count(w->to_claim),
                     nudgel_batchq_count(w->to_record));
}

static void on_state(void *opaque, nudgel_pgconn_t *c, bool up)
{
    pg_link_t *link = opaque;
    worker_t *w = link->w;
    (void)c;
    link->up = up;
    if (up)
        nudgel_ready_ok(link->ready);
    else
        nudgel_ready_fail(link->ready, "connection lost; reconnecting");
    postgres_update(w); /* the lookups one is ready once the tenant limits were read */
    kick(w);            /* the stages send what waited for the connection */
}

static nudgel_err_t link_open(worker_t *w, pg_link_t *link, const char *name, char *errstr,
                              size_t errstr_size)
{
    char cond[64];
    snprintf(cond, sizeof(cond), "postgres:%s", name);
    link->w = w;
    link->name = name;
    if (!(link->ready = nudgel_readiness_add(nudgel_worker_readiness(w->rt), cond, "connecting"))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    nudgel_pgconn_options_t opts = {
        .dsn = nudgel_conf_get_str(w->conf, "pg.dsn"),
        .application_name = PROGRAM,
        .name = name,
        .connect_timeout_ms = nudgel_conf_get_int(w->conf, "pg.connect_timeout_s") * 1000,
        .backoff_min_ms = BACKOFF_MIN_MS,
        .backoff_max_ms = nudgel_conf_get_int(w->conf, "messages.pg_reconnect_max_ms"),
        .on_state = on_state,
        .opaque = link,
        .statement_seconds = nudgel_fleet_metrics_pg_statements(nudgel_worker_fleet_metrics(w->rt)),
    };
    return nudgel_pgconn_new(w->loop, &opts, &link->conn, errstr, errstr_size);
}

/*
 * One blocking connection first, to tell a Postgres that cannot be reached
 * at start-up (exit 3, retriable) from one lost later (the worker waits for
 * it); the loop is not turning yet. Then the three connections, which
 * connect on the loop. Intake starts paused (intake_open()).
 */
nudgel_err_t postgres_open(worker_t *w, char *errstr, size_t errstr_size)
{
    PGconn *probe = nudgel_pg_connect(nudgel_conf_get_str(w->conf, "pg.dsn"), PROGRAM,
                                      (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s"),
                                      errstr, errstr_size);
    if (!probe)
        return NUDGEL_ERR_PG_UNREACHABLE;
    PQfinish(probe);
    nudgel_metric_set(w->m_pg_up, NULL, 0);
    nudgel_err_t err = link_open(w, &w->pg_claims, "claims", errstr, errstr_size);
    if (err == NUDGEL_OK)
        err = link_open(w, &w->pg_outcomes, "outcomes", errstr, errstr_size);
    if (err == NUDGEL_OK)
        err = link_open(w, &w->pg_lookups, "lookups", errstr, errstr_size);
    return err;
}

void postgres_close(worker_t *w)
{
    nudgel_pgconn_free(w->pg_claims.conn);
    nudgel_pgconn_free(w->pg_outcomes.conn);
    nudgel_pgconn_free(w->pg_lookups.conn);
    w->pg_claims.conn = w->pg_outcomes.conn = w->pg_lookups.conn = NULL;
    while (w->lookups)
        free(lookups_pop(w)); /* a lookup is one block; its job (if any) is abandoned apart */
}
