/*
 * outcomes.c — how a job's turn ends. finish() (a receipt state: sent,
 * failed, rejected, expired), retry_or_give_up() (the next retry tier, or
 * failed at the end of the ladder) and wait_for_other_claim() record the
 * outcome on the job and queue it; outcomes_pump() writes every queued
 * outcome in one statement on the outcomes lane (receipts with their
 * history, released claims) and only once that is durable publishes each
 * job's status event, dead letter or retry hop. msg_release() frees a job
 * once Kafka acknowledged all its publishes, so that its offset may move.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#include "messages.h"

static void msg_free(msg_t *m)
{
    if (m->parsed)
        nudgel_message_job_clear(&m->job);
    free(m->text);
    free(m->out);
    free(m);
}

/* The job's outcome record, allocated on first use; NULL when out of memory. */
static outcome_t *outcome_of(msg_t *m)
{
    if (!m->out)
        m->out = calloc(1, sizeof(*m->out));
    else
        memset(m->out, 0, sizeof(*m->out));
    return m->out;
}

/* The job is finished: its offset may move once every publish is acknowledged. */
void msg_release(msg_t *m)
{
    if (m->pending > 0)
        return;
    worker_t *w = m->w;
    if (!m->publish_failed) {
        nudgel_consumer_done(m->from, m->ref);
    } else if (m == w->current) {
        nudgel_consumer_defer(m->from, m->ref, nudgel_now_unix_ms() + 1000);
    } else {
        nudgel_log_error("job %s could not be finished durably; stopping so it is re-delivered",
                         m->parsed ? m->job.id : "?");
        w->fatal_stop = true; /* the loop stops (main.c) */
        return;               /* the job stays unfinished: its offset never moves past it */
    }
    msg_free(m);
}

void on_published(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque)
{
    msg_t *m = opaque;
    (void)cb_opaque;
    if (err) {
        /* Not acknowledged: the job must come again, so its offset stays. */
        nudgel_log_error("publish for job %s failed: %s", m->parsed ? m->job.id : "?", errstr);
        m->publish_failed = true;
    }
    m->pending--;
    msg_release(m);
}

static void copy_opt(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

/* The final (or sent) outcome: written with the next batch, then its event. */
void finish(msg_t *m, nudgel_receipt_state_t state, const char *gateway,
            const char *gateway_message_id, const char *error_code, const char *error_message,
            const char *cost_amount, const char *currency, const char *dlq_reason)
{
    outcome_t *o = outcome_of(m);
    if (!o) {
        nudgel_log_error("out of memory recording the outcome of %s", m->job.id);
        m->publish_failed = true;
        msg_release(m);
        return;
    }
    o->kind = OUTCOME_RECORD;
    o->state = state;
    copy_opt(o->gateway, sizeof(o->gateway), gateway);
    copy_opt(o->gateway_message_id, sizeof(o->gateway_message_id), gateway_message_id);
    copy_opt(o->error_code, sizeof(o->error_code), error_code);
    copy_opt(o->error_message, sizeof(o->error_message), error_message);
    copy_opt(o->cost_amount, sizeof(o->cost_amount), cost_amount);
    copy_opt(o->currency, sizeof(o->currency), currency);
    o->dlq_reason = dlq_reason;
    if (!queue_push(&m->w->to_record, m)) {
        nudgel_log_error("out of memory queueing the outcome of %s", m->job.id);
        m->publish_failed = true;
        msg_release(m);
    }
}

/*
 * A transient failure: the next retry tier (our claim is released first, so
 * the retried job takes it over at once), or the end of the ladder.
 */
void retry_or_give_up(msg_t *m, const char *error_code, const char *error_message,
                      int64_t retry_after_ms)
{
    worker_t *w = m->w;
    if (m->attempt >= TIERS) {
        finish(m, NUDGEL_RECEIPT_FAILED, m->gateway ? nudgel_gateway_name(m->gateway) : NULL, NULL,
               error_code, error_message, NULL, NULL, "retries exhausted");
        return;
    }
    int64_t delay = w->tier_delay_ms[m->attempt];
    if (retry_after_ms > delay)
        delay = retry_after_ms;
    outcome_t *o = outcome_of(m);
    if (!o) {
        m->publish_failed = true;
        msg_release(m);
        return;
    }
    o->kind = OUTCOME_RETRY;
    o->retry_topic = w->topic_retry[m->attempt];
    o->retry_attempt = m->attempt + 1;
    o->not_before_ms = nudgel_now_unix_ms() + delay;
    o->release_claim = true;
    snprintf(o->error_code, sizeof(o->error_code), "%s", error_code);
    snprintf(o->error_message, sizeof(o->error_message), "%s", error_message);
    if (!queue_push(&w->to_record, m)) {
        m->publish_failed = true;
        msg_release(m);
    }
}

/*
 * Another worker holds a fresh claim on this message (a rebalance hand-over,
 * or a duplicate in the topic): come back once that claim could be stale. It
 * is not our failure, so it uses no rung of the ladder and can never end the
 * message as failed while the other worker may still be sending it.
 */
void wait_for_other_claim(msg_t *m)
{
    worker_t *w = m->w;
    int tier = m->attempt < TIERS ? m->attempt : TIERS - 1;
    int64_t delay = w->tier_delay_ms[tier] > w->stale_ms ? w->tier_delay_ms[tier] : w->stale_ms;
    outcome_t *o = outcome_of(m);
    if (!o) {
        m->publish_failed = true;
        msg_release(m);
        return;
    }
    o->kind = OUTCOME_RETRY;
    o->retry_topic = w->topic_retry[tier];
    o->retry_attempt = m->attempt; /* unchanged */
    o->not_before_ms = nudgel_now_unix_ms() + delay;
    o->release_claim = false;
    snprintf(o->error_code, sizeof(o->error_code), "in_progress");
    snprintf(o->error_message, sizeof(o->error_message), "another worker holds the claim");
    if (!queue_push(&w->to_record, m)) {
        m->publish_failed = true;
        msg_release(m);
    }
}

/* After the batch is durable: metrics, the event, a dead letter or a retry hop. */
static void publish_outcome(msg_t *m, const nudgel_receipt_applied_t *applied)
{
    worker_t *w = m->w;
    outcome_t *o = m->out;
    if (o->kind == OUTCOME_RETRY) {
        char last_error[400];
        snprintf(last_error, sizeof(last_error), "%s: %s", o->error_code, o->error_message);
        m->pending++;
        if (nudgel_publish_retry(w->publisher, o->retry_topic, nudgel_job_message(m->ref),
                                 o->retry_attempt, o->not_before_ms, m->first_seen_ms, last_error,
                                 m) != NUDGEL_OK) {
            m->pending--;
            m->publish_failed = true;
        }
        nudgel_metric_add(w->m_outcomes, o->release_claim ? "retried" : "waiting_for_claim", 1);
        msg_release(m);
        return;
    }
    const char *status = nudgel_receipt_state_name(o->state);
    if (applied && (applied->outcome == NUDGEL_RECEIPT_REFUSED ||
                    applied->outcome == NUDGEL_RECEIPT_NOT_FOUND)) {
        /* Someone else moved the receipt on (a late worker, a DLR): their event stands. */
        nudgel_log_warn("receipt %s: %s refused (%s, now %s)", m->job.id, status,
                        nudgel_receipt_apply_name(applied->outcome),
                        nudgel_receipt_state_name(applied->now));
        nudgel_metric_add(w->m_outcomes, "refused", 1);
    } else {
        nudgel_metric_add(w->m_outcomes, status, 1);
        bool permanent = o->state == NUDGEL_RECEIPT_FAILED || o->state == NUDGEL_RECEIPT_REJECTED ||
                         o->state == NUDGEL_RECEIPT_EXPIRED;
        publish_event(m, status,
                      event_data(m, status, o->gateway, o->gateway_message_id, o->error_code,
                                 o->error_message, permanent, o->cost_amount, o->currency));
    }
    if (o->dlq_reason)
        publish_dlq(m, o->dlq_reason);
    msg_release(m);
}

/*
 * The outcomes lane: collects the statement in flight (then publishes each
 * job's event, dead letter or retry hop), and sends the next one with every
 * queued outcome: the receipts and released claims of up to
 * NUDGEL_RECEIPTS_BATCH_MAX jobs in one statement. When Postgres is
 * unreachable the outcomes go back to the queue (and intake pauses) until it
 * is back: nothing is published before it is durable.
 */
void outcomes_pump(worker_t *w)
{
    pg_lane_t *l = w->record_lane;
    char errstr[512];
    if (l->busy) {
        PGresult *res = NULL;
        int st = lane_result(l, &res, errstr, sizeof(errstr));
        if (st == 0)
            return;
        nudgel_err_t err = st < 0
                               ? NUDGEL_ERR_PG_UNREACHABLE
                               : nudgel_receipts_record_read(l->conn, res, l->results, l->nresults,
                                                             l->applied, errstr, sizeof(errstr));
        PQclear(res);
        size_t n = l->n;
        l->n = 0;
        if (pg_unreachable(err)) {
            queue_unshift(&w->to_record, l->batch, n);
            postgres_down(w, "writing outcomes", errstr);
            return;
        }
        if (err != NUDGEL_OK) {
            /* A statement error (not the connection): the jobs come again, the
             * claim makes that safe. Logged, counted, never silent. */
            nudgel_log_error("writing %zu outcome(s): %s", n, errstr);
            for (size_t i = 0; i < n; i++) {
                l->batch[i]->publish_failed = true;
                msg_release(l->batch[i]);
            }
        } else {
            for (size_t i = 0; i < n; i++)
                publish_outcome(l->batch[i],
                                l->result_of[i] >= 0 ? &l->applied[l->result_of[i]] : NULL);
        }
    }
    if (l->busy || w->pg_down || w->to_record.count == 0)
        return;
    size_t n = w->to_record.count < NUDGEL_RECEIPTS_BATCH_MAX ? w->to_record.count
                                                              : NUDGEL_RECEIPTS_BATCH_MAX;
    l->nresults = l->nreleases = 0;
    for (size_t i = 0; i < n; i++) {
        msg_t *m = w->to_record.items[i];
        /* One receipt per message id per statement: a second outcome of the
         * same id (a duplicate in the topic) waits for the next statement. */
        bool repeated = false;
        for (size_t k = 0; k < l->nresults && !repeated && m->out->kind == OUTCOME_RECORD; k++)
            repeated = strcmp(l->results[k].message_id, m->job.id) == 0;
        if (repeated) {
            n = i;
            break;
        }
        l->result_of[i] = -1;
        if (m->out->kind == OUTCOME_RETRY) {
            if (m->out->release_claim)
                l->release_ids[l->nreleases++] = m->job.id;
            continue;
        }
        outcome_t *o = m->out;
        char type[64];
        size_t r = l->nresults++;
        snprintf(type, sizeof(type), "ai.nudgel.message.%s", nudgel_receipt_state_name(o->state));
        nudgel_event_id(m->job.id, type, event_attempt(m), l->event_ids[r]);
        l->result_of[i] = (int)r;
        l->results[r] = (nudgel_receipt_result_t){
            .message_id = m->job.id,
            .status = o->state,
            .gateway = o->gateway[0] ? o->gateway : NULL,
            .gateway_message_id = o->gateway_message_id[0] ? o->gateway_message_id : NULL,
            .error_code = o->error_code[0] ? o->error_code : NULL,
            .error_message = o->error_message[0] ? o->error_message : NULL,
            .encoding = m->text ? nudgel_sms_encoding_name(m->sms.encoding) : NULL,
            .segments = m->text ? (int)m->sms.segments : -1,
            .cost_amount = o->cost_amount[0] ? o->cost_amount : NULL,
            .cost_currency = o->currency[0] ? o->currency : NULL,
            .event_id = l->event_ids[r],
        };
    }
    memcpy(l->batch, w->to_record.items, n * sizeof(l->batch[0]));
    l->n = n;
    queue_shift(&w->to_record, n);
    nudgel_metric_observe(w->m_pg_batch, "record", (double)n);
    if (l->nresults == 0 && l->nreleases == 0) {
        /* Only retries of someone else's claim: nothing to write. */
        l->n = 0;
        for (size_t i = 0; i < n; i++)
            publish_outcome(l->batch[i], NULL);
        return;
    }
    nudgel_err_t err =
        nudgel_receipts_record_send(l->conn, l->results, l->nresults, l->release_ids, l->nreleases,
                                    w->worker_id, errstr, sizeof(errstr));
    if (err == NUDGEL_OK)
        err = lane_sent(l, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        queue_unshift(&w->to_record, l->batch, n);
        l->n = 0;
        l->busy = false;
        postgres_down(w, "writing outcomes", errstr);
    }
}
