/*
 * claims.c — DESIGN §5 idempotency by claim: every parsed job in hand is
 * claimed in one statement on the "claims" connection before anything is
 * sent, and what the claim says decides the job's way: prepare and send it,
 * wait for another worker's claim, replay a final receipt's event, or report
 * it deduplicated.
 *
 * A batch goes out once the templates its jobs need are in hand
 * (templates_take(): lookups on the "lookups" connection, the batch waits
 * for them). Two phases: a set-based INSERT claims every new message at once
 * (the common case, and those go on at once); the rest — seen before, key
 * taken, repeated — take the full claim protocol in a second statement. A
 * lost connection puts the batch back at the front of the queue (intake
 * pauses until Postgres is back: postgres.c); a statement error falls back
 * to one claim per job on the lookups connection, and no new batch goes out
 * before those are answered, so jobs keep their order.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#include "messages.h"

/*
 * What the claim says decides the job's way. A lease taken (fresh, a
 * resubmission, an unknown outcome) is ours to record or release; while the
 * worker drains, such a job is handed back at once instead of being sent.
 */
static void on_claimed(worker_t *w, msg_t *m, const nudgel_receipt_claim_t *claim)
{
    switch (claim->outcome) {
    case NUDGEL_RECEIPT_CLAIM_OUTCOME_UNKNOWN: {
        /* A crashed worker's request was at this gateway: its policy decides. */
        const nudgel_receipt_t *r = &claim->receipt;
        m->receipt_attempt = r->attempt;
        m->leased = true;
        if (unknown_outcome(m, nudgel_gateway_find(w->gateways, r->gateway), r->gateway,
                            "its claim went stale while the request was at the gateway"))
            return;
        if (w->draining)
            hand_back(m);
        else
            prepare_and_route(w, m);
        return;
    }
    case NUDGEL_RECEIPT_CLAIM_FRESH:
    case NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE:
        m->receipt_attempt = claim->receipt.attempt;
        snprintf(m->resent_from, sizeof(m->resent_from), "%s", claim->receipt.resent_from);
        m->leased = true;
        if (w->draining)
            hand_back(m);
        else
            prepare_and_route(w, m);
        return;
    case NUDGEL_RECEIPT_CLAIM_IN_PROGRESS:
        wait_for_other_claim(m);
        return;
    case NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL: {
        /* Sent before: re-emit its event with the same id, send nothing; its data from
         * the stored row, by the builder of the first emission (same id, same data). */
        const nudgel_receipt_t *r = &claim->receipt;
        const char *status = nudgel_receipt_state_name(r->status);
        m->receipt_attempt = r->attempt;
        publish_event(m, status, event_data_of_row(m, r, status));
        nudgel_metric_add(w->m_outcomes, "replayed", 1);
        msg_release(m);
        return;
    }
    case NUDGEL_RECEIPT_CLAIM_DEDUPLICATED:
        publish_event(m, "deduplicated", job_event_data(m, "deduplicated"));
        nudgel_metric_add(w->m_outcomes, "deduplicated", 1);
        msg_release(m);
        return;
    }
}

/* ---- the fallback: one claim per job, on the lookups connection ----------- */

typedef struct claim_one {
    lookup_t lk;
    msg_t *m;
    nudgel_receipt_claim_t claim;
} claim_one_t;

static nudgel_err_t claim_one_send(worker_t *w, lookup_t *lk, PGconn *conn, char *errstr,
                                   size_t errstr_size)
{
    claim_one_t *c = (claim_one_t *)lk;
    nudgel_receipt_claim_request_t req = {.job = &c->m->job, .trace_id = c->m->traceparent};
    return nudgel_receipts_claim_batch_send(conn, &req, 1, w->worker_id, w->stale_ms, errstr,
                                            errstr_size);
}

static void claim_one_done(worker_t *w, lookup_t *lk, PGconn *conn, const PGresult *res,
                           nudgel_err_t err, const char *errstr)
{
    claim_one_t *c = (claim_one_t *)lk;
    char why[512];
    snprintf(why, sizeof(why), "%s", errstr);
    if (err == NUDGEL_OK)
        err = nudgel_receipts_claim_batch_read(conn, res, 1, &c->claim, why, sizeof(why));
    w->claims_one_pending--;
    if (err == NUDGEL_OK) {
        on_claimed(w, c->m, &c->claim);
    } else {
        char reason[600];
        nudgel_log_ctx_t ctx = msg_log_ctx(c->m);
        NUDGEL_LOG_CTX(NUDGEL_LOG_WARN, &ctx, "claim failed: %s", why);
        snprintf(reason, sizeof(reason), "claim failed: %s", why);
        reject_malformed(w, c->m, NUDGEL_MSG_FAIL_CLAIM_FAILED, reason);
        msg_release(c->m);
    }
    free(c);
    kick(w); /* the claims lane may go on */
}

/* A batched claim failed as a statement: claim one by one so one bad job cannot hold the rest. */
static void claim_one_by_one(worker_t *w, msg_t **batch, size_t n, const char *why)
{
    nudgel_log_warn("batched claim of %zu job(s) failed (%s); claiming one by one", n, why);
    for (size_t i = 0; i < n; i++) {
        claim_one_t *c = calloc(1, sizeof(*c));
        if (!c) {
            msg_fail(batch[i]); /* comes again */
            msg_release(batch[i]);
            continue;
        }
        c->lk.what = "claiming one job";
        c->lk.send = claim_one_send;
        c->lk.done = claim_one_done;
        c->m = batch[i];
        w->claims_one_pending++;
        lookups_push(w, &c->lk);
    }
}

/* ---- the batched claim on the claims connection --------------------------- */

static void on_claims_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                           nudgel_err_t err, const char *errstr);

/* The batch back to the front of the queue, in order: its claim's fate is unknown. */
static void requeue(worker_t *w)
{
    claim_batch_t *b = w->claim;
    if (nudgel_batchq_unshift(w->to_claim, (void **)b->batch, b->n) != NUDGEL_OK) {
        for (size_t i = 0; i < b->n; i++) {
            msg_fail(b->batch[i]);
            msg_release(b->batch[i]);
        }
    }
    b->n = 0;
    kick(w);
}

/*
 * Sends the claim statement of the batch's phase; when that fails, the
 * batch goes back to the front of the queue (lost connection) or is
 * claimed one by one.
 */
static void claims_send(worker_t *w)
{
    claim_batch_t *b = w->claim;
    nudgel_pgconn_t *pc = w->pg_claims.conn;
    PGconn *conn = nudgel_pgconn_conn(pc);
    char errstr[512];
    nudgel_receipt_claim_request_t reqs[NUDGEL_RECEIPTS_BATCH_MAX];
    for (size_t i = 0; i < b->n; i++)
        reqs[i] = (nudgel_receipt_claim_request_t){.job = &b->batch[i]->job,
                                                   .trace_id = b->batch[i]->traceparent};
    nudgel_err_t err = b->phase == 1
                           ? nudgel_receipts_claim_fresh_send(conn, reqs, b->n, w->worker_id,
                                                              errstr, sizeof(errstr))
                           : nudgel_receipts_claim_batch_send(conn, reqs, b->n, w->worker_id,
                                                              w->stale_ms, errstr, sizeof(errstr));
    if (err == NUDGEL_OK && nudgel_pgconn_sent(pc, 0, on_claims_done, w) == NUDGEL_OK)
        return;
    if (err == NUDGEL_OK || err == NUDGEL_ERR_PG_UNREACHABLE) {
        nudgel_pgconn_lost(pc,
                           err == NUDGEL_OK ? "claims: the statement could not be sent" : errstr);
        requeue(w);
        return;
    }
    size_t n = b->n;
    b->n = 0;
    claim_one_by_one(w, b->batch, n, errstr);
}

static void on_claims_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                           nudgel_err_t err, const char *errstr)
{
    worker_t *w = opaque;
    claim_batch_t *b = w->claim;
    char why[512];
    snprintf(why, sizeof(why), "%s", errstr);
    if (err == NUDGEL_OK) {
        PGconn *conn = nudgel_pgconn_conn(c);
        const PGresult *res = n ? results[0] : NULL;
        err = b->phase == 1
                  ? nudgel_receipts_claim_fresh_read(conn, res, b->n, b->claims, b->claimed, why,
                                                     sizeof(why))
                  : nudgel_receipts_claim_batch_read(conn, res, b->n, b->claims, why, sizeof(why));
        if (err == NUDGEL_ERR_PG_UNREACHABLE)
            nudgel_pgconn_lost(c, why); /* the server is going away */
    }
    if (err == NUDGEL_ERR_PG_UNREACHABLE) {
        requeue(w);
        return;
    }
    size_t count = b->n;
    b->n = 0;
    if (err != NUDGEL_OK) {
        claim_one_by_one(w, b->batch, count, why);
    } else if (b->phase == 1) {
        size_t rest = 0;
        for (size_t i = 0; i < count; i++) {
            if (b->claimed[i])
                on_claimed(w, b->batch[i], &b->claims[i]);
            else
                b->batch[rest++] = b->batch[i]; /* order kept */
        }
        if (rest > 0) {
            b->phase = 2;
            b->n = rest;
            claims_send(w);
        }
    } else {
        for (size_t i = 0; i < count; i++)
            on_claimed(w, b->batch[i], &b->claims[i]);
    }
    kick(w);
}

void claims_pump(void *opaque)
{
    worker_t *w = opaque;
    nudgel_pgconn_t *pc = w->pg_claims.conn;
    if (w->draining) {
        /* Not claimed: nothing to release, they are delivered again. */
        msg_t *m;
        while (nudgel_batchq_shift(w->to_claim, (void **)&m, 1) == 1)
            hand_back(m);
        w->claim_wait_since_us = 0;
        return;
    }
    size_t waiting = nudgel_batchq_count(w->to_claim);
    if (waiting == 0 || w->claims_one_pending > 0 || !pc || !nudgel_pgconn_up(pc) ||
        nudgel_pgconn_busy(pc) || w->claim->n > 0)
        return;
    size_t n = waiting < NUDGEL_RECEIPTS_BATCH_MAX ? waiting : NUDGEL_RECEIPTS_BATCH_MAX;
    if (!w->claim_wait_since_us)
        w->claim_wait_since_us = nudgel_mono_us(); /* what is loaded from now on is fresh */
    else if (!w->claim_recheck)
        return; /* waiting for template lookups; each one that ends says so */
    w->claim_recheck = false;
    if (!templates_take(w, n))
        return;
    w->claim_wait_since_us = 0;
    claim_batch_t *b = w->claim;
    b->n = nudgel_batchq_shift(w->to_claim, (void **)b->batch, n);
    b->phase = 1;
    nudgel_metric_observe(w->m_pg_batch, "claim", (double)b->n);
    claims_send(w);
}
