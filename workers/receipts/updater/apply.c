/*
 * apply.c — reports to receipts, in batches, on the "apply" Postgres
 * connection (see updater.h).
 *
 * Reports wait in a FIFO (nudgel/batchq.h) while a statement is in flight;
 * the next statement takes up to receipts.batch_max of them, so the batch
 * grows with the load and a lone report goes at once. The statement
 * (nudgel_dlr_apply_send(): nudgel.receipt_apply_dlrs()) decides every
 * report under its receipt's row lock and writes it all in one transaction;
 * only then does each report get its event (events.c) and lose its hold, so
 * its offset moves only after the write and the event's acknowledgement.
 *
 * Failures: a lost connection (fate unknown) puts the batch back in front,
 * in order, and intake pauses until the connection is back (the statement
 * is safe to repeat: a replayed report is unchanged, its rows are keyed by
 * its source). A statement that fails by itself (a deadlock, a bad value)
 * is tried again after a back-off, then one report per statement, so one
 * bad report cannot hold the others; a report failing
 * APPLY_ATTEMPTS_MAX times alone is logged as an error, counted (failed)
 * and let go.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/pg.h"
#include "nudgel/timeutil.h"
#include "updater.h"

#define QUEUE_CAP          ((size_t)1 << 20)
#define APPLY_ATTEMPTS_MAX 5
#define RETRY_MIN_US       (100 * 1000)
#define RETRY_MAX_US       (5 * 1000 * 1000)

static nudgel_dlr_applied_t applied[NUDGEL_RECEIPTS_BATCH_MAX];
static size_t singles_left; /* reports still to send one per statement after a failure */

static void on_retry(void *opaque)
{
    apply_pump(opaque);
}

nudgel_err_t apply_new(updater_t *u)
{
    if (nudgel_batchq_new(QUEUE_CAP, &u->queue) != NUDGEL_OK ||
        !(u->batch = calloc(NUDGEL_RECEIPTS_BATCH_MAX, sizeof(u->batch[0]))) ||
        !(u->retry_timer = nudgel_timer_new(u->loop, on_retry, u)))
        return NUDGEL_ERR_NO_MEMORY;
    return NUDGEL_OK;
}

void apply_free(updater_t *u)
{
    nudgel_timer_free(u->retry_timer);
    nudgel_batchq_free(u->queue);
    free(u->batch);
}

void apply_submit(updater_t *u, dlr_job_t *j)
{
    if (nudgel_batchq_push(u->queue, j) != NUDGEL_OK) {
        /* Cannot happen under max_in_flight; if it does, the report comes again. */
        nudgel_job_unhold(&j->life, NUDGEL_ERR_NO_MEMORY);
        return;
    }
    nudgel_loop_again(u->loop); /* the turn hook sends */
}

/* The batch in flight goes back in front of the queue, in order. */
static void put_back(updater_t *u)
{
    if (u->batch_n &&
        nudgel_batchq_unshift(u->queue, (void *const *)u->batch, u->batch_n) != NUDGEL_OK)
        nudgel_worker_fatal(u->w, "out of memory putting %zu reports back", u->batch_n);
    u->batch_n = 0;
}

static void backoff(updater_t *u)
{
    u->retry_us = u->retry_us ? u->retry_us * 2 : RETRY_MIN_US;
    if (u->retry_us > RETRY_MAX_US)
        u->retry_us = RETRY_MAX_US;
    nudgel_timer_arm_in(u->retry_timer, u->retry_us);
}

/*
 * The statement failed by itself: again later, alone after the first time. A
 * report alone is let go after APPLY_ATTEMPTS_MAX failures of its own; a
 * @p transient one (deadlock, serialization, lock timeout:
 * nudgel_pg_result_transient()) never counts towards that.
 */
static void failed(updater_t *u, const char *errstr, bool transient)
{
    NUDGEL_LOG_LIMITED(&u->pg_log, NUDGEL_LOG_ERROR, NULL,
                       "applying %zu report(s) failed, trying again: %s", u->batch_n, errstr);
    nudgel_metric_add(u->m_statements, "failed", 1);
    if (u->batch_n == 1) {
        dlr_job_t *j = u->batch[0];
        if (!transient && ++j->attempts >= APPLY_ATTEMPTS_MAX) {
            nudgel_log_ctx_t ctx = intake_log_ctx(j);
            NUDGEL_LOG_CTX(NUDGEL_LOG_ERROR, &ctx,
                           "report %s of %s/%s could not be applied %d times, let go: %s",
                           j->report.source, j->report.gateway, j->report.gateway_message_id,
                           APPLY_ATTEMPTS_MAX, errstr);
            nudgel_metric_add(u->m_reports, "failed", 1);
            nudgel_job_failed_because(&j->life, UPDATER_FAIL_APPLY_FAILED);
            u->batch_n = 0;
            if (singles_left)
                singles_left--;
            nudgel_job_unhold(&j->life, NUDGEL_OK);
            backoff(u);
            return;
        }
    } else if (!singles_left) {
        singles_left = u->batch_n;
    }
    put_back(u);
    backoff(u);
}

static void on_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                    nudgel_err_t err, const char *errstr)
{
    updater_t *u = opaque;
    char why[512];
    (void)c;
    if (err != NUDGEL_OK || n == 0) {
        nudgel_metric_add(u->m_statements, "lost", 1);
        put_back(u); /* the connection's state callback pauses intake */
        return;
    }
    err = nudgel_dlr_apply_read(nudgel_pgconn_conn(u->apply_pg), results[0], u->batch_n, applied,
                                why, sizeof(why));
    if (err != NUDGEL_OK) {
        for (size_t i = 0; i < u->batch_n; i++)
            nudgel_dlr_applied_clear(&applied[i]);
        failed(u, why, nudgel_pg_result_transient(results[0]));
        return;
    }
    nudgel_metric_add(u->m_statements, "ok", 1);
    u->retry_us = 0;
    if (singles_left)
        singles_left = singles_left > u->batch_n ? singles_left - u->batch_n : 0;
    size_t count = u->batch_n;
    u->batch_n = 0;
    for (size_t i = 0; i < count; i++) {
        dlr_job_t *j = u->batch[i];
        nudgel_dlr_applied_t *a = &applied[i];
        nudgel_metric_add(u->m_reports, nudgel_dlr_outcome_name(a->outcome), 1);
        /* Reached its goal: it moved the receipt, or recorded what it reported. A replay
         * (unchanged), a late one (refused) or one kept waiting (pending) is neither. */
        if (a->outcome == NUDGEL_DLR_APPLIED || a->outcome == NUDGEL_DLR_INTERMEDIATE)
            nudgel_job_succeeded(&j->life);
        if (a->outcome == NUDGEL_DLR_APPLIED || a->outcome == NUDGEL_DLR_UNCHANGED)
            events_publish_for(u, j, a);
        nudgel_dlr_applied_clear(a);
        nudgel_job_unhold(&j->life, NUDGEL_OK); /* may end (and free) it */
    }
    apply_pump(u);
}

void apply_pump(updater_t *u)
{
    char errstr[512];
    if (u->batch_n || nudgel_timer_armed(u->retry_timer, NULL) || !nudgel_pgconn_up(u->apply_pg) ||
        nudgel_pgconn_busy(u->apply_pg) || nudgel_batchq_count(u->queue) == 0)
        return;
    size_t max = singles_left ? 1 : u->batch_max;
    u->batch_n = nudgel_batchq_shift(u->queue, (void **)u->batch, max);
    const nudgel_dlr_report_t *reports[NUDGEL_RECEIPTS_BATCH_MAX];
    for (size_t i = 0; i < u->batch_n; i++)
        reports[i] = &u->batch[i]->report;
    PGconn *conn = nudgel_pgconn_conn(u->apply_pg);
    nudgel_err_t err =
        nudgel_dlr_apply_send(conn, reports, u->batch_n, u->pending_ttl_s, errstr, sizeof(errstr));
    if (err == NUDGEL_OK)
        err = nudgel_pgconn_sent(u->apply_pg, 0, on_done, u);
    else
        nudgel_pgconn_lost(u->apply_pg, errstr);
    if (err != NUDGEL_OK)
        put_back(u);
}

void apply_on_pg_state(void *opaque, nudgel_pgconn_t *c, bool up)
{
    updater_t *u = opaque;
    (void)c;
    if (up) {
        nudgel_ready_ok(u->ready_apply);
        nudgel_consumer_resume(u->consumer, NUDGEL_PAUSE_POSTGRES);
        apply_pump(u);
    } else {
        nudgel_ready_fail(u->ready_apply, "connection lost");
        nudgel_consumer_pause(u->consumer, NUDGEL_PAUSE_POSTGRES);
    }
}
