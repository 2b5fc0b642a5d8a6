/*
 * claims.c — batched claims: the jobs polled meanwhile go to
 * webhook_deliveries in one statement on the claim lane, and what the table
 * says of each decides its way (its endpoint's lane, or ended at once:
 * already final, another delivery of the same event, endpoint gone).
 */
#include <stdio.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"

/* What the claim said of each job of @p batch: to its endpoint's lane, or ended at once. */
static void claims_apply(worker_t *w, wjob_t **batch, const wh_claim_t *claims, size_t n)
{
    nudgel_err_t err;
    for (size_t i = 0; i < n; i++) {
        wjob_t *j = batch[i];
        const wh_claim_t *c = &claims[i];
        int made = c->attempts > j->header_attempts ? c->attempts : j->header_attempts;
        j->attempt = made + 1;
        if (c->duplicate) {
            nudgel_log_info("webhook job %s: event %s already has another delivery to endpoint "
                            "%s; skipped",
                            j->job.id, j->job.event_id, j->job.endpoint_id);
            j->end = END_NONE;
            job_publish(j);
            continue;
        }
        if (c->final) {
            /* Ended before (a re-delivery): send nothing; its final event again, same id. */
            j->attempt = c->attempts > 0 ? c->attempts : 1;
            j->status_code = c->last_status_code;
            const char *colon = strstr(c->last_error, ": ");
            if (colon) {
                snprintf(j->error_class, sizeof(j->error_class), "%.*s",
                         (int)(colon - c->last_error), c->last_error);
                snprintf(j->error_message, sizeof(j->error_message), "%s", colon + 2);
            }
            j->delivery_status = strcmp(c->status, "delivered") == 0   ? "delivered"
                                 : strcmp(c->status, "exhausted") == 0 ? "exhausted"
                                 : strcmp(c->status, "cancelled") == 0 ? "cancelled"
                                                                       : "failed";
            j->permanent = true;
            j->stage = STAGE_PUBLISH;
            job_event(j,
                      strcmp(c->status, "delivered") == 0   ? "delivered"
                      : strcmp(c->status, "exhausted") == 0 ? "exhausted"
                                                            : "failed",
                      j->delivery_status);
            nudgel_metric_add(w->m_outcomes, "replayed", 1);
            job_release(j);
            continue;
        }
        endpoint_t *ep = endpoint_get(w, j->job.endpoint_id, &err);
        if (!ep) {
            /* Postgres went away between the claim and here: the job comes again later. */
            j->publish_failed = true;
            job_release(j);
            continue;
        }
        j->ep = ep;
        if (ep->queued >= w->queue_max) {
            j->end = END_REQUEUE;
            outcome_add(j);
            continue;
        }
        lane_push(w, ep, j);
    }
}

/* Puts a claim batch that did not come back at the front of the waiting claims. */
static void claims_unshift(worker_t *w, wjob_t **batch, size_t n)
{
    memmove(w->claims + n, w->claims, w->claim_count * sizeof(w->claims[0]));
    memcpy(w->claims, batch, n * sizeof(batch[0]));
    w->claim_count += n;
}

/*
 * The claim lane: the statement in flight when its result has come (each
 * job to its lane, or ended at once: already final, duplicate, endpoint
 * gone), then the jobs polled meanwhile in one statement. Postgres trouble
 * puts the batch back in front and pauses intake until a reconnect works.
 */
void claims_pump(worker_t *w)
{
    char errstr[512];
    wh_lane_t *l = &w->claim_lane;
    if (l->busy) {
        PGresult *res = NULL;
        int st = lane_result(l, &res, errstr, sizeof(errstr));
        if (st == 0)
            return;
        size_t n = w->claim_sent_n;
        nudgel_err_t err =
            st < 0 ? NUDGEL_ERR_PG_UNREACHABLE
                   : wh_db_claim_read(l->conn, res, w->claim_rows, n, errstr, sizeof(errstr));
        PQclear(res);
        nudgel_metric_observe(w->m_claim_s, NULL, (double)(nudgel_mono_us() - l->sent_us) / 1e6);
        w->claim_sent_n = 0;
        if (err != NUDGEL_OK) {
            claims_unshift(w, w->claim_sent, n);
            postgres_down(w, errstr);
            return;
        }
        claims_apply(w, w->claim_sent, w->claim_rows, n);
    }
    /*
     * Jobs already waiting in lanes are plenty: the polled ones wait here,
     * claimed later, rather than overflow a lane that is merely behind (an
     * overflow goes to the first retry tier; it is meant for a saturated
     * endpoint, which fills its own lane long before this bound).
     */
    if (l->busy || !w->pg_ok || w->claim_count == 0 || w->lane_waiting >= w->max_in_flight / 2)
        return;
    size_t n = w->claim_count < CLAIM_BATCH_MAX ? w->claim_count : CLAIM_BATCH_MAX;
    json_t *rows = json_array();
    for (size_t i = 0; i < n; i++) {
        const nudgel_webhook_job_t *jb = &w->claims[i]->job;
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:I}", "delivery_id", jb->id,
                                              "endpoint_id", jb->endpoint_id, "event_id",
                                              jb->event_id, "n", (json_int_t)(i + 1)));
    }
    memcpy(w->claim_sent, w->claims, n * sizeof(w->claims[0]));
    w->claim_sent_n = n;
    w->claim_count -= n;
    memmove(w->claims, w->claims + n, w->claim_count * sizeof(w->claims[0]));
    nudgel_err_t err = wh_db_claim_send(l->conn, w->with_payload, rows, errstr, sizeof(errstr));
    json_decref(rows);
    if (err == NUDGEL_OK)
        err = lane_sent(l, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        l->broken = true;
        l->busy = false;
        w->claim_sent_n = 0;
        claims_unshift(w, w->claim_sent, n);
        postgres_down(w, errstr);
    }
}
