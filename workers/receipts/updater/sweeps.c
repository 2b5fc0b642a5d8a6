/*
 * sweeps.c — what nudgel-receipts does on a timer, on its "sweeps" Postgres
 * connection (see updater.h), one statement at a time, every
 * receipts.sweep_interval_ms (at once again while a statement hits its
 * limit of receipts.sweep_batch rows):
 *
 *   pending  reports kept because they beat their `sent` outcome (the
 *            Kannel/Jasmin race) are applied once their receipt has been
 *            sent (nudgel.receipt_apply_pending(): each report is looked at
 *            when due, again a tenth of its age later while its receipt is
 *            not sent, 1 s to 5 min, migration 010); those whose TTL
 *            (receipts.pending_ttl_s) passed are recorded unmatched.
 *            Race-free without touching the messages worker: a report is
 *            kept in the same transaction that found no sent receipt, and
 *            is looked at again until it is applied or its TTL ends, so a
 *            `sent` committed at any moment is seen by its next look.
 *   expiry   sent receipts with no final report past their gateway's window
 *            (receipts.expiry_s, receipts.expiry_by_gateway) move to
 *            expired, error dlr_timeout; each window is a range of an
 *            index of sent rows (receipt_dlrs.c).
 *   outbox   the events of those transitions (outbox.c).
 *
 * Nothing here blocks the loop: each statement is sent and its result comes
 * back through the connection's callback.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "nudgel/timeutil.h"
#include "updater.h"

#define PENDING_COUNT_EVERY_US 10000000 /* nudgel_receipts_pending_reports: counted this often */

static void cycle_start(void *opaque)
{
    updater_t *u = opaque;
    if (u->stage == SWEEP_IDLE)
        sweeps_next(u, SWEEP_PENDING);
}

nudgel_err_t sweeps_new(updater_t *u)
{
    if (!(u->sweep_timer = nudgel_timer_new(u->loop, cycle_start, u)) ||
        !(u->outbox = calloc(NUDGEL_RECEIPTS_BATCH_MAX, sizeof(u->outbox[0]))) ||
        !(u->outbox_acked = calloc(NUDGEL_RECEIPTS_BATCH_MAX, sizeof(u->outbox_acked[0]))))
        return NUDGEL_ERR_NO_MEMORY;
    return NUDGEL_OK;
}

void sweeps_free(updater_t *u)
{
    nudgel_timer_free(u->sweep_timer);
    if (u->outbox)
        outbox_reset(u);
    free(u->outbox);
    free(u->outbox_acked);
}

static void go_idle(updater_t *u)
{
    u->stage = SWEEP_IDLE;
    if (nudgel_pgconn_up(u->sweep_pg))
        nudgel_timer_arm_in(u->sweep_timer, u->sweep_again ? 0 : u->sweep_every_us);
    u->sweep_again = false;
}

static void on_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                    nudgel_err_t err, const char *errstr)
{
    updater_t *u = opaque;
    char why[512];
    int a = 0, b = 0, looked = 0;
    int64_t waiting = 0;
    (void)c;
    if (err != NUDGEL_OK || n == 0) {
        nudgel_metric_add(u->m_statements, "lost", 1);
        (void)errstr;
        outbox_reset(u);
        go_idle(u);
        return;
    }
    PGconn *conn = nudgel_pgconn_conn(u->sweep_pg);
    switch (u->stage) {
    case SWEEP_PENDING:
        err =
            nudgel_dlr_pending_read(conn, results[0], &a, &b, &looked, &waiting, why, sizeof(why));
        if (err != NUDGEL_OK)
            break;
        if (waiting >= 0)
            nudgel_metric_set(u->m_pending_now, NULL, (double)waiting);
        nudgel_metric_add(u->m_pending, "applied", a);
        nudgel_metric_add(u->m_pending, "unmatched", b);
        nudgel_metric_add(u->m_reports, "unmatched", b);
        if (b)
            nudgel_log_warn("%d pending report(s) reached receipts.pending_ttl_s without a sent "
                            "receipt: recorded unmatched (nudgel.message_receipt_reports)",
                            b);
        u->sweep_again |= looked >= u->sweep_batch || b >= u->sweep_batch;
        sweeps_next(u, SWEEP_EXPIRY);
        return;
    case SWEEP_EXPIRY:
        err = nudgel_dlr_expire_read(conn, results[0], &a, why, sizeof(why));
        if (err != NUDGEL_OK)
            break;
        nudgel_metric_add(u->m_expired, NULL, a);
        u->sweep_again |= a >= u->sweep_batch;
        sweeps_next(u, SWEEP_OUTBOX_CLAIM);
        return;
    case SWEEP_OUTBOX_CLAIM:
        err = outbox_claimed(u, results[0], why, sizeof(why));
        if (err != NUDGEL_OK)
            break;
        u->sweep_again |= u->outbox_n >= (size_t)u->sweep_batch;
        if (u->outbox_n == 0) {
            go_idle(u);
        } else {
            u->stage = SWEEP_OUTBOX_PUBLISH;
            if (u->outbox_waiting == 0)
                sweeps_next(u, SWEEP_OUTBOX_DELETE);
        }
        return;
    case SWEEP_OUTBOX_DELETE:
        err = nudgel_dlr_outbox_delete_read(conn, results[0], why, sizeof(why));
        outbox_reset(u);
        if (err != NUDGEL_OK)
            break;
        go_idle(u);
        return;
    case SWEEP_IDLE:
    case SWEEP_OUTBOX_PUBLISH:
        break;
    }
    NUDGEL_LOG_LIMITED(&u->pg_log, NUDGEL_LOG_ERROR, NULL, "sweep statement failed: %s", why);
    nudgel_metric_add(u->m_statements, "failed", 1);
    outbox_reset(u);
    u->sweep_again = false;
    go_idle(u);
}

/*
 * Whether this pending sweep also counts the kept reports for
 * nudgel_receipts_pending_reports: the count reads them all, so every
 * PENDING_COUNT_EVERY_US, not on every sweep.
 */
static bool pending_count_due(updater_t *u)
{
    int64_t now = nudgel_mono_us();
    if (u->pending_counted_us && now - u->pending_counted_us < PENDING_COUNT_EVERY_US)
        return false;
    u->pending_counted_us = now;
    return true;
}

void sweeps_next(updater_t *u, sweep_stage_t stage)
{
    char errstr[512];
    nudgel_err_t err = NUDGEL_OK;
    u->stage = stage;
    if (!nudgel_pgconn_up(u->sweep_pg) || nudgel_pgconn_busy(u->sweep_pg)) {
        outbox_reset(u);
        u->stage = SWEEP_IDLE; /* the connection's state callback starts again */
        return;
    }
    PGconn *conn = nudgel_pgconn_conn(u->sweep_pg);
    switch (stage) {
    case SWEEP_PENDING:
        err = nudgel_dlr_pending_send(conn, u->sweep_batch, pending_count_due(u), errstr,
                                      sizeof(errstr));
        break;
    case SWEEP_EXPIRY:
        err = nudgel_dlr_expire_send(conn, &u->expiry, u->sweep_batch, errstr, sizeof(errstr));
        break;
    case SWEEP_OUTBOX_CLAIM:
        err = outbox_claim_send(u, errstr, sizeof(errstr));
        break;
    case SWEEP_OUTBOX_DELETE:
        if (outbox_delete_send(u, errstr, sizeof(errstr)) != NUDGEL_OK) {
            outbox_reset(u); /* nothing acknowledged: claimed again later */
            go_idle(u);
            return;
        }
        break;
    case SWEEP_IDLE:
    case SWEEP_OUTBOX_PUBLISH:
        return;
    }
    if (err == NUDGEL_OK)
        err = nudgel_pgconn_sent(u->sweep_pg, 0, on_done, u);
    else
        nudgel_pgconn_lost(u->sweep_pg, errstr);
    if (err != NUDGEL_OK) {
        outbox_reset(u);
        u->stage = SWEEP_IDLE;
    }
}

void sweeps_on_pg_state(void *opaque, nudgel_pgconn_t *c, bool up)
{
    updater_t *u = opaque;
    (void)c;
    if (up) {
        nudgel_ready_ok(u->ready_sweeps);
        if (u->stage == SWEEP_IDLE)
            nudgel_timer_arm_in(u->sweep_timer, 0);
    } else {
        nudgel_ready_fail(u->ready_sweeps, "connection lost");
    }
}
