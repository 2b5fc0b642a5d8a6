/*
 * postgres.c — the deliverer's three Postgres connections (nudgel/pgconn.h:
 * non-blocking, one loss and back-off policy), one per stage so that none
 * waits behind another's statement: "claims" (claims.c), "outcomes"
 * (flush.c) and "lookups" (lookups.c: endpoint rows, 410 disables).
 *
 * Each has its readiness condition (postgres:claims, ...). While any of
 * them is down, intake is paused (NUDGEL_PAUSE_POSTGRES) and what is in
 * hand waits: each stage has put its batch back at the front of its queue
 * (nothing is lost, nothing published before it is durable); once all are
 * up again, intake resumes. An outage is logged once, when the first
 * connection goes (pgconn logs each connection's own loss, rate-limited).
 *
 * The start-up also reads, with one blocking connection before the loop
 * turns, whether webhook_deliveries has the payload column (migration
 * 003); Postgres unreachable then is a retriable start-up failure (exit 3).
 */
#include <stdio.h>

#include "deliverer.h"
#include "nudgel/pg.h"

enum { PG_CLAIMS, PG_OUTCOMES, PG_LOOKUPS, PG_CONNS };

static const char *const conn_names[PG_CONNS] = {"claims", "outcomes", "lookups"};
static const char *const cond_names[PG_CONNS] = {"postgres:claims", "postgres:outcomes",
                                                 "postgres:lookups"};

bool postgres_usable(nudgel_pgconn_t *c)
{
    return nudgel_pgconn_up(c) && !nudgel_pgconn_busy(c);
}

static nudgel_ready_cond_t *cond_of(worker_t *w, int i)
{
    return i == PG_CLAIMS     ? w->ready_claims
           : i == PG_OUTCOMES ? w->ready_outcomes
                              : w->ready_lookups;
}

static void on_state(void *opaque, nudgel_pgconn_t *c, bool up)
{
    worker_t *w = opaque;
    int i = c == w->pg_claims ? PG_CLAIMS : c == w->pg_outcomes ? PG_OUTCOMES : PG_LOOKUPS;
    unsigned bit = 1u << i;
    if (!up) {
        nudgel_ready_fail(cond_of(w, i), "connection lost; reconnecting");
        if (w->pg_down == 0) {
            nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_POSTGRES);
            nudgel_log_error("Postgres connection %s lost; pausing intake (%zu claim(s), %zu "
                             "outcome(s) waiting)",
                             conn_names[i], nudgel_batchq_count(w->claimq),
                             nudgel_batchq_count(w->outcomes));
        }
        w->pg_down |= bit;
        if (i == PG_LOOKUPS)
            lookups_down(w);
        return;
    }
    nudgel_ready_ok(cond_of(w, i));
    w->pg_down &= ~bit;
    if (w->pg_down != 0)
        return;
    nudgel_consumer_resume(w->consumer, NUDGEL_PAUSE_POSTGRES);
    w->intake_again = true; /* what librdkafka still holds writes no wake-up */
    if (w->pg_was_up)
        nudgel_log_info("Postgres is back; resuming intake (%zu claim(s), %zu outcome(s) waiting)",
                        nudgel_batchq_count(w->claimq), nudgel_batchq_count(w->outcomes));
    w->pg_was_up = true;
    /* The stages send what waits from the turn hook, later in this turn. */
}

/*
 * The payload column and duplicates table probes (blocking, once), then the three connections,
 * connecting on the loop. Intake starts paused until all three are up.
 */
nudgel_err_t postgres_open(worker_t *w, const nudgel_conf_t *conf, char *errstr, size_t errstr_size)
{
    const char *dsn = nudgel_conf_get_str(conf, "pg.dsn");
    long long timeout_s = nudgel_conf_get_int(conf, "pg.connect_timeout_s");
    PGconn *probe = nudgel_pg_connect(dsn, PROGRAM, (int)timeout_s, errstr, errstr_size);
    if (!probe)
        return NUDGEL_ERR_PG_UNREACHABLE;
    w->with_payload = wh_db_has_payload_column(probe);
    w->with_duplicates = wh_db_has_duplicates_table(probe);
    if (!w->with_duplicates)
        nudgel_log_warn("nudgel.webhook_duplicates is missing (migration 007): deduplicated "
                        "jobs are evented but not recorded; run nudgel-admin migrate");
    PQfinish(probe);

    nudgel_readiness_t *r = nudgel_worker_readiness(w->nw);
    nudgel_pgconn_t **conns[PG_CONNS] = {&w->pg_claims, &w->pg_outcomes, &w->pg_lookups};
    nudgel_ready_cond_t **conds[PG_CONNS] = {&w->ready_claims, &w->ready_outcomes,
                                             &w->ready_lookups};
    w->pg_down = (1u << PG_CONNS) - 1;
    nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_POSTGRES);
    for (int i = 0; i < PG_CONNS; i++) {
        *conds[i] = nudgel_readiness_add(r, cond_names[i], "connecting");
        nudgel_pgconn_options_t opts = {
            .dsn = dsn,
            .application_name = PROGRAM,
            .name = conn_names[i],
            .connect_timeout_ms = timeout_s * 1000,
            .backoff_min_ms = 100,
            .backoff_max_ms = 1000,
            .on_state = on_state,
            .opaque = w,
            .statement_seconds =
                nudgel_fleet_metrics_pg_statements(nudgel_worker_fleet_metrics(w->nw)),
        };
        nudgel_metric_touch(opts.statement_seconds, conn_names[i]); /* at zero from start-up */
        nudgel_err_t err = nudgel_pgconn_new(w->loop, &opts, conns[i], errstr, errstr_size);
        if (err != NUDGEL_OK)
            return err;
    }
    return NUDGEL_OK;
}

void postgres_close(worker_t *w)
{
    nudgel_pgconn_free(w->pg_claims);
    nudgel_pgconn_free(w->pg_outcomes);
    nudgel_pgconn_free(w->pg_lookups);
    w->pg_claims = w->pg_outcomes = w->pg_lookups = NULL;
}
