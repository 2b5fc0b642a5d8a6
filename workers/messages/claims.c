/*
 * claims.c — DESIGN §5 idempotency by claim: every parsed job in hand is
 * claimed in one statement on the claims lane (pg_lane.c) before anything is
 * sent, and what the claim says decides the job's way: prepare and send it,
 * wait for another worker's claim, replay a final receipt's event, or report
 * it deduplicated.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "nudgel/log.h"

#include "messages.h"

static void on_claimed(worker_t *w, msg_t *m, const nudgel_receipt_claim_t *claim)
{
    switch (claim->outcome) {
    case NUDGEL_RECEIPT_CLAIM_FRESH:
    case NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE:
        m->receipt_attempt = claim->receipt.attempt;
        prepare_and_route(w, m);
        return;
    case NUDGEL_RECEIPT_CLAIM_IN_PROGRESS:
        wait_for_other_claim(m);
        return;
    case NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL: {
        /* Sent before: re-emit its event with the same id, send nothing. */
        const nudgel_receipt_t *r = &claim->receipt;
        const char *status = nudgel_receipt_state_name(r->status);
        m->receipt_attempt = r->attempt;
        publish_event(m, status,
                      event_data(m, status, r->gateway, r->gateway_message_id,
                                 r->error_code[0] ? r->error_code : NULL, r->error_message, true,
                                 r->cost_amount, r->cost_currency));
        nudgel_metric_add(w->m_outcomes, "replayed", 1);
        msg_release(m);
        return;
    }
    case NUDGEL_RECEIPT_CLAIM_DEDUPLICATED:
        publish_event(m, "deduplicated",
                      event_data(m, "deduplicated", NULL, NULL, NULL, NULL, false, NULL, NULL));
        nudgel_metric_add(w->m_outcomes, "deduplicated", 1);
        msg_release(m);
        return;
    }
}

/* A batched claim failed as a statement: claim one by one so one bad job cannot hold the rest. */
static void claim_one_by_one(worker_t *w, msg_t **batch, size_t n, const char *why)
{
    char errstr[512];
    nudgel_log_warn("batched claim failed (%s); claiming one by one", why);
    for (size_t i = 0; i < n; i++) {
        msg_t *m = batch[i];
        nudgel_receipt_claim_t claim;
        nudgel_err_t err = nudgel_receipts_claim(w->pg, &m->job, m->traceparent, w->worker_id,
                                                 w->stale_ms, &claim, errstr, sizeof(errstr));
        if (pg_unreachable(err)) {
            /* The unclaimed rest goes back to the front of the queue, in order. */
            queue_unshift(&w->to_claim, batch + i, n - i);
            postgres_down(w, "claiming", errstr);
            return;
        }
        if (err != NUDGEL_OK) {
            char reason[600];
            snprintf(reason, sizeof(reason), "claim failed: %s", errstr);
            reject_malformed(w, m, reason);
            msg_release(m);
            continue;
        }
        on_claimed(w, m, &claim);
    }
}

/* Sends the claim statement of the lane's phase for its batch. */
static nudgel_err_t claims_send(worker_t *w, pg_lane_t *l, char *errstr, size_t errstr_size)
{
    nudgel_receipt_claim_request_t reqs[NUDGEL_RECEIPTS_BATCH_MAX];
    for (size_t i = 0; i < l->n; i++)
        reqs[i] = (nudgel_receipt_claim_request_t){.job = &l->batch[i]->job,
                                                   .trace_id = l->batch[i]->traceparent};
    nudgel_err_t err = l->phase == 1
                           ? nudgel_receipts_claim_fresh_send(l->conn, reqs, l->n, w->worker_id,
                                                              errstr, errstr_size)
                           : nudgel_receipts_claim_batch_send(l->conn, reqs, l->n, w->worker_id,
                                                              w->stale_ms, errstr, errstr_size);
    return err == NUDGEL_OK ? lane_sent(l, errstr, errstr_size) : err;
}

/*
 * Sends the lane's batch; when that fails, the batch goes back to the front
 * of the queue (lost connection: intake pauses) or is claimed one by one.
 */
static void claims_send_or_fall_back(worker_t *w, pg_lane_t *l)
{
    char errstr[512];
    nudgel_err_t err = claims_send(w, l, errstr, sizeof(errstr));
    if (err == NUDGEL_OK)
        return;
    size_t n = l->n;
    l->busy = false;
    l->n = 0;
    if (pg_unreachable(err)) {
        queue_unshift(&w->to_claim, l->batch, n);
        postgres_down(w, "claiming", errstr);
    } else {
        claim_one_by_one(w, l->batch, n, errstr);
    }
}

/*
 * The claims lane: collects the claim statement in flight, and sends the
 * next one with every parsed job in hand (up to NUDGEL_RECEIPTS_BATCH_MAX),
 * after loading the templates they need that are not cached. Two phases: a
 * set-based INSERT claims every new message at once (the common case, and
 * those go on at once: on_claimed()); the rest — seen before, key taken,
 * repeated — take the full claim protocol in a second statement. A lost
 * connection puts the jobs back in the queue (intake pauses until Postgres
 * is back); a statement error falls back to one claim per job.
 */
void claims_pump(worker_t *w)
{
    pg_lane_t *l = w->claim_lane;
    char errstr[512];
    if (l->busy) {
        PGresult *res = NULL;
        int st = lane_result(l, &res, errstr, sizeof(errstr));
        if (st == 0)
            return;
        nudgel_err_t err = NUDGEL_ERR_PG_UNREACHABLE;
        if (st > 0)
            err = l->phase == 1
                      ? nudgel_receipts_claim_fresh_read(l->conn, res, l->n, l->claims, l->claimed,
                                                         errstr, sizeof(errstr))
                      : nudgel_receipts_claim_batch_read(l->conn, res, l->n, l->claims, errstr,
                                                         sizeof(errstr));
        PQclear(res);
        size_t n = l->n;
        l->n = 0;
        if (pg_unreachable(err)) {
            queue_unshift(&w->to_claim, l->batch, n);
            postgres_down(w, "claiming", errstr);
            return;
        }
        if (err != NUDGEL_OK) {
            claim_one_by_one(w, l->batch, n, errstr);
        } else if (l->phase == 1) {
            size_t rest = 0;
            for (size_t i = 0; i < n; i++) {
                if (l->claimed[i])
                    on_claimed(w, l->batch[i], &l->claims[i]);
                else
                    l->batch[rest++] = l->batch[i]; /* order kept */
            }
            if (rest > 0) {
                l->phase = 2;
                l->n = rest;
                claims_send_or_fall_back(w, l);
                return;
            }
        } else {
            for (size_t i = 0; i < n; i++)
                on_claimed(w, l->batch[i], &l->claims[i]);
        }
    }
    if (l->busy || w->pg_down || w->to_claim.count == 0)
        return;
    size_t n = w->to_claim.count < NUDGEL_RECEIPTS_BATCH_MAX ? w->to_claim.count
                                                             : NUDGEL_RECEIPTS_BATCH_MAX;
    for (size_t i = 0; i < n; i++) {
        const nudgel_message_job_t *j = &w->to_claim.items[i]->job;
        if (j->body || template_cached(w, j))
            continue;
        nudgel_err_t err = template_load(w, j, errstr, sizeof(errstr));
        if (pg_unreachable(err)) {
            postgres_down(w, "loading a template", errstr);
            return;
        }
    }
    memcpy(l->batch, w->to_claim.items, n * sizeof(l->batch[0]));
    l->n = n;
    l->phase = 1;
    queue_shift(&w->to_claim, n);
    nudgel_metric_observe(w->m_pg_batch, "claim", (double)n);
    claims_send_or_fall_back(w, l);
}
