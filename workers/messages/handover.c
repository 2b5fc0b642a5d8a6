/*
 * handover.c — the hand-over of a request to its gateway (issue 10, item 8;
 * DESIGN §5 "Idempotency by claim", "Unknown outcomes"). A claim is a lease
 * on a receipt in `accepted`: the job may wait behind its recipient, its
 * tenant's limits and its gateway's TPS for a long time, and a crash there
 * must leave no doubt. So a job that got its token and lane slot
 * (drain_lanes()) first has its receipt marked `submitting` (with the
 * gateway and handed_at) and only once that is durable is its request sent
 * (lane_submit()). A crash before the mark leaves `accepted`: the next owner
 * sends it without doubt. A crash after it leaves `submitting` with
 * handed_at: an unknown outcome, decided by the gateway's policy.
 *
 * Cost: no round trip per message. Every job that got its token in a turn
 * is marked by ONE statement (nudgel_receipts_mark_send()), sent on the
 * "outcomes" connection ahead of the next outcome batch (this hook runs
 * before outcomes_pump()), so a burst costs one extra batched statement,
 * and a request waits one Postgres round trip (plus at most one outcome
 * batch in flight) before it goes out. A row whose lease another worker took
 * over is not marked, and its job is not sent.
 *
 * unknown_outcome() is where an unknown outcome is decided, whether it was
 * seen live (a lost or unreadable answer after the request went out:
 * gateway_lanes.c) or found at claim time (a stale `submitting` claim with
 * its request out: claims.c).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "nudgel/log.h"

#include "messages.h"

void hand_over(worker_t *w, msg_t *m)
{
    if (nudgel_batchq_push(w->to_hand, m) != NUDGEL_OK) {
        lane_give_back(w, m);
        leave_gates(w, m);
        retry_or_give_up(m, "submit_failed", "out of memory queueing the hand-over", -1);
        return;
    }
    kick(w);
}

bool unknown_outcome(msg_t *m, const nudgel_gateway_t *gw, const char *gateway_name,
                     const char *detail)
{
    worker_t *w = m->w;
    const char *name = gw ? nudgel_gateway_name(gw) : gateway_name;
    nudgel_metric_add(w->m_unknown, name && *name ? name : "-", 1);
    /* A gateway no longer in the file: today's behaviour, send again. */
    if (!gw || nudgel_gateway_unknown_outcome(gw) != NUDGEL_GATEWAY_UNKNOWN_HOLD)
        return false;
    char why[256];
    snprintf(why, sizeof(why),
             "the outcome at %s is unknown (%s); not resent (unknown_outcome=hold)", name, detail);
    nudgel_metric_add(w->m_unknown_held, name, 1);
    nudgel_log_ctx_t ctx = msg_log_ctx(m);
    NUDGEL_LOG_CTX(NUDGEL_LOG_WARN, &ctx, "%s", why);
    finish(m, NUDGEL_RECEIPT_FAILED, NUDGEL_MSG_FAIL_OUTCOME_UNKNOWN, name, NULL, "outcome_unknown",
           why, NULL, NULL, "outcome unknown");
    return true;
}

static void on_marked(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                      nudgel_err_t err, const char *errstr);

/* The batch back to the front of the queue, in order: its fate is unknown (the mark is
 * idempotent, it is sent again once the connection is back). */
static void requeue(worker_t *w)
{
    hand_batch_t *b = w->hand;
    if (nudgel_batchq_unshift(w->to_hand, (void **)b->batch, b->n) != NUDGEL_OK) {
        for (size_t i = 0; i < b->n; i++) {
            lane_give_back(w, b->batch[i]);
            leave_gates(w, b->batch[i]);
            msg_fail(b->batch[i]);
            msg_release(b->batch[i]);
        }
    }
    b->n = 0;
    kick(w);
}

/* A statement error (not the connection): nothing was marked, nothing is sent. */
static void fail_batch(worker_t *w, const char *why)
{
    hand_batch_t *b = w->hand;
    size_t n = b->n;
    b->n = 0;
    nudgel_log_error("marking %zu hand-over(s): %s", n, why);
    for (size_t i = 0; i < n; i++) {
        msg_t *m = b->batch[i];
        lane_give_back(w, m);
        leave_gates(w, m);
        retry_or_give_up(m, "submit_failed", "the hand-over could not be recorded", -1);
    }
}

static void on_marked(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                      nudgel_err_t err, const char *errstr)
{
    worker_t *w = opaque;
    hand_batch_t *b = w->hand;
    char why[512];
    snprintf(why, sizeof(why), "%s", errstr);
    if (err == NUDGEL_OK) {
        err = nudgel_receipts_mark_read(nudgel_pgconn_conn(c), n ? results[0] : NULL, b->n,
                                        b->marked, why, sizeof(why));
        if (err == NUDGEL_ERR_PG_UNREACHABLE)
            nudgel_pgconn_lost(c, why); /* the server is going away */
    }
    if (err == NUDGEL_ERR_PG_UNREACHABLE) {
        requeue(w);
        return;
    }
    if (err != NUDGEL_OK) {
        fail_batch(w, why);
        kick(w);
        return;
    }
    size_t count = b->n;
    b->n = 0;
    for (size_t i = 0; i < count; i++) {
        msg_t *m = b->batch[i];
        if (!b->marked[i]) {
            /* Another worker took the lease over (this one was too slow): it sends. */
            m->leased = false;
            lane_give_back(w, m);
            leave_gates(w, m);
            wait_for_other_claim(m);
        } else if (w->draining) {
            lane_give_back(w, m); /* marked but not sent: the release ends the doubt */
            hand_back(m);
        } else {
            lane_submit(m);
        }
    }
    kick(w);
}

void handover_pump(void *opaque)
{
    worker_t *w = opaque;
    hand_batch_t *b = w->hand;
    nudgel_pgconn_t *pc = w->pg_outcomes.conn;
    char errstr[512];
    msg_t *m;
    if (w->draining) {
        /* Not marked yet, so surely not sent: back to the next owner. */
        while (nudgel_batchq_shift(w->to_hand, (void **)&m, 1) == 1) {
            lane_give_back(w, m);
            hand_back(m);
        }
        return;
    }
    if (nudgel_batchq_count(w->to_hand) == 0 || !pc || !nudgel_pgconn_up(pc) ||
        nudgel_pgconn_busy(pc) || b->n > 0)
        return;
    size_t waiting = nudgel_batchq_count(w->to_hand);
    b->n = nudgel_batchq_shift(w->to_hand, (void **)b->batch,
                               waiting < NUDGEL_RECEIPTS_BATCH_MAX ? waiting
                                                                   : NUDGEL_RECEIPTS_BATCH_MAX);
    for (size_t i = 0; i < b->n; i++)
        b->marks[i] = (nudgel_receipt_mark_t){.message_id = b->batch[i]->job.id,
                                              .gateway = nudgel_gateway_name(b->batch[i]->gateway)};
    nudgel_metric_observe(w->m_pg_batch, "handover", (double)b->n);
    nudgel_err_t err = nudgel_receipts_mark_send(nudgel_pgconn_conn(pc), b->marks, b->n,
                                                 w->worker_id, errstr, sizeof(errstr));
    if (err == NUDGEL_OK && nudgel_pgconn_sent(pc, 0, on_marked, w) == NUDGEL_OK)
        return;
    if (err == NUDGEL_OK || err == NUDGEL_ERR_PG_UNREACHABLE) {
        nudgel_pgconn_lost(pc,
                           err == NUDGEL_OK ? "handover: the statement could not be sent" : errstr);
        requeue(w);
        return;
    }
    fail_batch(w, errstr);
}
