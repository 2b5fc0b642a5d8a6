/*
 * claims.c — batched claims: the jobs polled meanwhile go to
 * webhook_deliveries in one statement on the "claims" connection, and what
 * the table says of each decides its way (its endpoint's lane, or ended at
 * once: already final, another tenant's delivery id (refused), another
 * delivery of the tenant of the same event (deduplicated); a delivery
 * cancelled for want of its endpoint and replayed from the dead letter topic
 * goes on as new). A claim that
 * does not come back (connection lost, statement failed) puts its batch back
 * at the front of the queue; it goes again once the connection is back.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/timeutil.h"

/* The event a delivery that ended in @p s published: its type's suffix. */
static const char *final_event_type(wh_delivery_status_t s)
{
    switch (s) {
    case WH_DELIVERY_DELIVERED:
        return "delivered";
    case WH_DELIVERY_EXHAUSTED:
        return "exhausted";
    case WH_DELIVERY_DEDUPLICATED: /* not a row's status: never read back */
    case WH_DELIVERY_FAILED:
    case WH_DELIVERY_CANCELLED:
    case WH_DELIVERY_PENDING: /* not final: never asked */
    case WH_DELIVERY_DELIVERING:
        return "failed";
    }
    return "failed";
}

/* What the claim said of each job of @p batch: to its endpoint's lane, or ended at once. */
static void claims_apply(worker_t *w, wjob_t **batch, const wh_claim_t *claims, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wjob_t *j = batch[i];
        const wh_claim_t *c = &claims[i];
        int made = c->attempts > j->header_attempts ? c->attempts : j->header_attempts;
        j->attempt = made + 1;
        if (c->foreign) {
            job_refuse(j, WH_DELIVERY_ID_CONFLICT,
                       "the delivery id is taken by another tenant's delivery");
            continue;
        }
        if (c->duplicate) {
            /* Another delivery of the tenant holds this (endpoint, event): nothing is sent; the
             * outcome is recorded (webhook_duplicates) and published as deduplicated. */
            nudgel_log_ctx_t ctx;
            job_log_ctx(j, &ctx);
            NUDGEL_LOG_CTX(NUDGEL_LOG_INFO, &ctx,
                           "webhook job %s: event %s already has delivery %s to endpoint %s; "
                           "deduplicated",
                           j->job.id, j->job.event_id, c->duplicate_of, j->job.endpoint_id);
            snprintf(j->duplicate_of, sizeof(j->duplicate_of), "%s", c->duplicate_of);
            j->attempt = 0; /* none made: the same event whichever way it was found */
            j->end = END_DEDUPLICATED;
            outcome_add(j);
            continue;
        }
        /* Cancelled for want of its endpoint, then replayed from the dead letter (the
         * endpoint may exist now): delivered as if new; its row is not final for this. */
        bool reopened = c->final && j->replayed && c->status == WH_DELIVERY_CANCELLED &&
                        strcmp(c->error_class, WH_ENDPOINT_NOT_FOUND) == 0;
        if (c->final && !reopened) {
            /* Ended before (a re-delivery): send nothing; its final event again, same id. */
            j->attempt = c->attempts > 0 ? c->attempts : 1;
            j->status_code = c->last_status_code;
            if (c->error_class[0]) {
                snprintf(j->error_class, sizeof(j->error_class), "%s", c->error_class);
                snprintf(j->error_message, sizeof(j->error_message), "%s", c->error_message);
            }
            j->delivery_status = c->status; /* final: delivered, failed, exhausted, cancelled */
            free(j->url);
            j->url = c->url[0] ? strdup(c->url) : NULL;
            j->stage = STAGE_PUBLISH;
            job_event(j, final_event_type(c->status), j->delivery_status);
            nudgel_metric_add(w->m_outcomes, "replayed", 1);
            job_release(j);
            continue;
        }
        endpoint_t *ep = endpoint_get(w, j->job.endpoint_id);
        if (!ep) {
            job_fail(j); /* out of memory: the job comes again */
            job_release(j);
            continue;
        }
        endpoint_hold(ep, j);
        if (endpoint_foreign(j)) {
            /* Known already: refused now, never queued in the other tenant's lane. */
            job_refuse(j, WH_ENDPOINT_TENANT_MISMATCH, NULL);
            continue;
        }
        if (ep->queued >= w->s.queue_max && lane_overflows(w, ep, nudgel_mono_us())) {
            /* A slow or failing endpoint's overflow: the first retry tier. A lane that is
             * merely busy keeps it (lanes.c). */
            j->end = END_REQUEUE;
            outcome_add(j);
            continue;
        }
        lane_push(w, ep, j); /* waits there while the endpoint's row loads */
    }
}

/* Puts @p n jobs that were not claimed back at the front of the queue, in order. */
static void claims_unshift(worker_t *w, wjob_t **batch, size_t n)
{
    if (n && nudgel_batchq_unshift(w->claimq, (void *const *)batch, n) != NUDGEL_OK)
        nudgel_worker_fatal(w->nw, "out of memory putting %zu claim(s) back", n);
}

/* The claim came back (or not): each job on its way, or the batch back in the queue. */
static void claims_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                        nudgel_err_t err, const char *errstr)
{
    worker_t *w = opaque;
    char why[600];
    size_t count = w->claim_sent_n;
    w->claim_sent_n = 0;
    nudgel_metric_observe(w->m_claim_s, NULL, (double)nudgel_pgconn_last_rtt_us(c) / 1e6);
    if (err == NUDGEL_OK)
        err = wh_db_claim_read(n ? results[0] : NULL, w->claim_rows, count, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "%s", errstr);
    if (err != NUDGEL_OK) {
        claims_unshift(w, w->claim_sent, count);
        /* A statement that failed on a live connection is retried on a new one after the
         * back-off (the loss policy's); a lost one is reconnecting already. */
        nudgel_pgconn_lost(c, why);
        return;
    }
    claims_apply(w, w->claim_sent, w->claim_rows, count);
}

/*
 * Sends the next claim when the connection is free: the jobs polled
 * meanwhile, up to CLAIM_BATCH_MAX, in one statement.
 */
void claims_pump(worker_t *w)
{
    char errstr[600];
    nudgel_pgconn_t *c = w->pg_claims;
    /*
     * Jobs already waiting in lanes are plenty: the polled ones wait here,
     * claimed later, rather than overflow a lane that is merely behind (an
     * overflow goes to the first retry tier; it is meant for a saturated
     * endpoint, which fills its own lane long before this bound).
     */
    if (w->claim_sent_n || nudgel_batchq_count(w->claimq) == 0 || !postgres_usable(c) ||
        w->lane_waiting >= w->s.max_in_flight / 2)
        return;
    size_t n = nudgel_batchq_shift(w->claimq, (void **)w->claim_sent, CLAIM_BATCH_MAX);
    json_t *rows = json_array();
    for (size_t i = 0; rows && i < n; i++) {
        const nudgel_webhook_job_t *jb = &w->claim_sent[i]->job;
        if (json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:s, s:I}", "delivery_id",
                                                  jb->id, "tenant_id", jb->tenant_id, "endpoint_id",
                                                  jb->endpoint_id, "event_id", jb->event_id, "n",
                                                  (json_int_t)(i + 1))) != 0) {
            json_decref(rows);
            rows = NULL;
        }
    }
    nudgel_err_t err = rows ? wh_db_claim_send(nudgel_pgconn_conn(c), w->with_payload, rows, errstr,
                                               sizeof(errstr))
                            : NUDGEL_ERR_NO_MEMORY;
    json_decref(rows);
    if (err == NUDGEL_ERR_NO_MEMORY) {
        claims_unshift(w, w->claim_sent, n); /* tried again next turn */
        return;
    }
    if (err == NUDGEL_OK && (err = nudgel_pgconn_sent(c, 0, claims_done, w)) != NUDGEL_OK)
        snprintf(errstr, sizeof(errstr), "claiming deliveries: not handed over (%s)",
                 nudgel_strerror(err));
    if (err != NUDGEL_OK) {
        claims_unshift(w, w->claim_sent, n);
        nudgel_pgconn_lost(c, errstr);
        return;
    }
    w->claim_sent_n = n;
}
