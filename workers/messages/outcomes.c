/*
 * outcomes.c — how a job's turn ends. finish() (a receipt state: sent,
 * failed, rejected, expired), retry_or_give_up() (the next retry tier, or
 * failed at the end of the ladder) and wait_for_other_claim() record the
 * outcome on the job and queue it; hand_back() (shutdown) only releases
 * the job's claim and lets it go unfinished; outcomes_pump() writes every queued
 * outcome in one statement on the "outcomes" connection (receipts with
 * their history, released claims) and only once that is durable publishes
 * each job's status event, dead letter or retry hop. The job then ends
 * through its lifecycle (jobs.c) once Kafka acknowledged all its publishes,
 * so that its offset may move. A statement whose connection was lost goes
 * back to the front of the queue: it is written again once Postgres is back
 * (the write is idempotent), and nothing is published before.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"
#include "nudgel/retry_tiers.h"
#include "nudgel/timeutil.h"

#include "messages.h"

/* The job's outcome record, allocated on first use; NULL when out of memory. */
static outcome_t *outcome_of(msg_t *m)
{
    if (!m->out)
        m->out = calloc(1, sizeof(*m->out));
    else
        memset(m->out, 0, sizeof(*m->out));
    return m->out;
}

/* Queues @p m's outcome for the next batch; out of memory, the job comes again. */
static void to_record(msg_t *m)
{
    if (nudgel_batchq_push(m->w->to_record, m) != NUDGEL_OK) {
        nudgel_log_ctx_t ctx = msg_log_ctx(m);
        NUDGEL_LOG_CTX(NUDGEL_LOG_ERROR, &ctx, "out of memory queueing the outcome");
        msg_fail(m);
        msg_release(m);
        return;
    }
    kick(m->w);
}

static void copy_opt(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

/* The final (or sent) outcome: written with the next batch, then its event. */
void finish(msg_t *m, nudgel_receipt_state_t state, const char *reason, const char *gateway,
            const char *gateway_message_id, const char *error_code, const char *error_message,
            const char *cost_amount, const char *currency, const char *dlq_reason)
{
    outcome_t *o = outcome_of(m);
    if (!o) {
        msg_fail(m);
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
    o->fail_reason = reason;
    to_record(m);
}

/* The retry tier of a hop waiting @p delay_ms: the one its real wait calls for. */
static const char *retry_topic_for(const worker_t *w, int64_t delay_ms)
{
    nudgel_retry_tiers_t tiers = {(size_t)w->tiers, w->topic_retry, w->tier_delay_ms};
    return w->topic_retry[nudgel_retry_tier_for_wait(&tiers, delay_ms)];
}

/*
 * A transient failure: the next rung's delay (or a longer Retry-After), on the
 * retry tier of that wait (our claim is released first, so
 * the retried job takes it over at once), or the end of the ladder.
 */
void retry_or_give_up(msg_t *m, const char *error_code, const char *error_message,
                      int64_t retry_after_ms)
{
    worker_t *w = m->w;
    if (m->attempt >= w->tiers) {
        finish(m, NUDGEL_RECEIPT_FAILED, NUDGEL_MSG_FAIL_RETRIES_EXHAUSTED,
               m->gateway ? nudgel_gateway_name(m->gateway) : NULL, NULL, error_code, error_message,
               NULL, NULL, "retries exhausted");
        return;
    }
    int64_t delay = w->tier_delay_ms[m->attempt];
    if (retry_after_ms > delay)
        delay = retry_after_ms;
    outcome_t *o = outcome_of(m);
    if (!o) {
        msg_fail(m);
        msg_release(m);
        return;
    }
    o->kind = OUTCOME_RETRY;
    o->retry_topic = retry_topic_for(w, delay);
    o->retry_attempt = m->attempt + 1;
    o->not_before_ms = nudgel_now_unix_ms() + delay;
    o->release_claim = true;
    snprintf(o->error_code, sizeof(o->error_code), "%s", error_code);
    snprintf(o->error_message, sizeof(o->error_message), "%s", error_message);
    to_record(m);
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
    int tier = m->attempt < w->tiers ? m->attempt : w->tiers - 1;
    int64_t delay = w->tier_delay_ms[tier] > w->stale_ms ? w->tier_delay_ms[tier] : w->stale_ms;
    outcome_t *o = outcome_of(m);
    if (!o) {
        msg_fail(m);
        msg_release(m);
        return;
    }
    o->kind = OUTCOME_RETRY;
    o->retry_topic = retry_topic_for(w, delay);
    o->retry_attempt = m->attempt; /* unchanged */
    o->not_before_ms = nudgel_now_unix_ms() + delay;
    o->release_claim = false;
    snprintf(o->error_code, sizeof(o->error_code), "in_progress");
    snprintf(o->error_message, sizeof(o->error_message), "another worker holds the claim");
    to_record(m);
}

/*
 * Shutdown (DESIGN §5): @p m was never handed to a gateway here, so it is
 * handed back — its claim released (with the next outcome batch, so the
 * next owner takes it over at once and sends it without doubt), then the
 * job let go without storing its offset (it is delivered again). A job
 * holding no claim (not claimed yet, or someone else's) is let go at once.
 */
void hand_back(msg_t *m)
{
    worker_t *w = m->w;
    leave_gates(w, m);
    nudgel_metric_add(w->m_outcomes, "handed_back", 1);
    if (!m->leased) {
        nudgel_job_abandon(&m->life);
        return;
    }
    outcome_t *o = outcome_of(m);
    if (!o) {
        nudgel_job_abandon(&m->life); /* its lease goes stale: still no doubt (never sent) */
        return;
    }
    o->kind = OUTCOME_HAND_BACK;
    o->release_claim = true;
    if (nudgel_batchq_push(w->to_record, m) != NUDGEL_OK) {
        nudgel_job_abandon(&m->life);
        return;
    }
    kick(w);
}

/*
 * A recorded outcome of @p m (ours: not refused): nudgel_jobs_succeeded_total
 * when sent, else nudgel_jobs_failed_total{reason} (before its dead letter,
 * which takes the label); and, when it was at a gateway, its time from the
 * job's creation (created_at, else the Kafka timestamp) to now.
 */
static void count_recorded(msg_t *m, const outcome_t *o)
{
    worker_t *w = m->w;
    if (o->state == NUDGEL_RECEIPT_SENT)
        nudgel_job_succeeded(&m->life);
    else
        nudgel_job_failed_because(&m->life, o->fail_reason);
    int64_t created = m->job.created_at_ms;
    if (created <= 0) {
        rd_kafka_timestamp_type_t type;
        created = rd_kafka_message_timestamp(nudgel_job_kafka(&m->life), &type);
    }
    if (o->gateway[0] && created > 0) {
        int64_t took = nudgel_now_unix_ms() - created;
        nudgel_metric_observe(w->m_end_to_end, o->gateway, took > 0 ? (double)took / 1000.0 : 0);
    }
}

/* After the batch is durable: metrics, the event, a dead letter or a retry hop. */
static void publish_outcome(msg_t *m, const nudgel_receipt_applied_t *applied)
{
    worker_t *w = m->w;
    outcome_t *o = m->out;
    if (o->kind == OUTCOME_HAND_BACK) {
        nudgel_job_abandon(&m->life); /* frees m: not stored, delivered again */
        return;
    }
    if (o->kind == OUTCOME_RETRY) {
        char last_error[400];
        snprintf(last_error, sizeof(last_error), "%s: %s", o->error_code, o->error_message);
        nudgel_job_publish_retry(&m->life, o->retry_topic, o->retry_attempt, o->not_before_ms,
                                 m->first_seen_ms, last_error);
        nudgel_metric_add(w->m_outcomes, o->release_claim ? "retried" : "waiting_for_claim", 1);
        msg_release(m);
        return;
    }
    const char *status = nudgel_receipt_state_name(o->state);
    if (applied && (applied->outcome == NUDGEL_RECEIPT_REFUSED ||
                    applied->outcome == NUDGEL_RECEIPT_NOT_FOUND)) {
        /* Someone else moved the receipt on (a late worker, a DLR): their event stands. */
        nudgel_log_ctx_t ctx = msg_log_ctx(m);
        NUDGEL_LOG_CTX(NUDGEL_LOG_WARN, &ctx, "receipt %s: %s refused (%s, now %s)", m->job.id,
                       status, nudgel_receipt_apply_name(applied->outcome),
                       nudgel_receipt_state_name(applied->now));
        nudgel_metric_add(w->m_outcomes, "refused", 1);
        if (o->dlq_reason) /* its dead letter still goes: counted failed, with its label */
            nudgel_job_failed_because(&m->life, o->fail_reason);
    } else {
        nudgel_metric_add(w->m_outcomes, status, 1);
        count_recorded(m, o);
        publish_event(m, status, outcome_event_data(m, o));
    }
    if (o->dlq_reason)
        publish_dlq(m, o->dlq_reason, NULL);
    msg_release(m);
}

static void on_outcomes_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                             nudgel_err_t err, const char *errstr);

/* @p m's outcome could not be written: it must come again (a hand-back just goes). */
static void outcome_lost(msg_t *m)
{
    if (m->out && m->out->kind == OUTCOME_HAND_BACK) {
        nudgel_job_abandon(&m->life);
        return;
    }
    msg_fail(m);
    msg_release(m);
}

/* The batch back to the front of the queue, in order: written again once Postgres is back. */
static void requeue(worker_t *w)
{
    record_batch_t *b = w->record;
    if (nudgel_batchq_unshift(w->to_record, (void **)b->batch, b->n) != NUDGEL_OK) {
        for (size_t i = 0; i < b->n; i++)
            outcome_lost(b->batch[i]);
    }
    b->n = 0;
    kick(w);
}

/*
 * Fills the batch with the queued outcomes: the receipts and released claims
 * of up to NUDGEL_RECEIPTS_BATCH_MAX jobs, one receipt per message id (a
 * second outcome of the same id — a duplicate in the topic — waits for the
 * next statement).
 */
static void fill_batch(worker_t *w)
{
    record_batch_t *b = w->record;
    size_t waiting = nudgel_batchq_count(w->to_record);
    size_t n = waiting < NUDGEL_RECEIPTS_BATCH_MAX ? waiting : NUDGEL_RECEIPTS_BATCH_MAX;
    b->nresults = b->nreleases = 0;
    for (size_t i = 0; i < n; i++) {
        msg_t *m = nudgel_batchq_at(w->to_record, i);
        bool repeated = false;
        for (size_t k = 0; k < b->nresults && !repeated && m->out->kind == OUTCOME_RECORD; k++)
            repeated = strcmp(b->results[k].message_id, m->job.id) == 0;
        if (repeated) {
            n = i;
            break;
        }
        b->result_of[i] = -1;
        if (m->out->kind == OUTCOME_RETRY || m->out->kind == OUTCOME_HAND_BACK) {
            if (m->out->release_claim)
                b->release_ids[b->nreleases++] = m->job.id;
            continue;
        }
        outcome_t *o = m->out;
        char type[64];
        size_t r = b->nresults++;
        snprintf(type, sizeof(type), "ai.nudgel.message.%s", nudgel_receipt_state_name(o->state));
        nudgel_event_id(m->job.id, type, event_attempt(m), b->event_ids[r]);
        b->result_of[i] = (int)r;
        /* events.c builds the first emission's data from this same result. */
        outcome_result(m, o, b->event_ids[r], b->costs[r], &b->results[r]);
    }
    b->n = nudgel_batchq_shift(w->to_record, (void **)b->batch, n);
}

/*
 * A statement error (not the connection): the jobs come again, the claim
 * makes that safe. Logged, counted, never silent.
 */
static void fail_batch(worker_t *w, const char *why)
{
    record_batch_t *b = w->record;
    size_t n = b->n;
    b->n = 0;
    nudgel_log_error("writing %zu outcome(s): %s", n, why);
    for (size_t i = 0; i < n; i++)
        outcome_lost(b->batch[i]);
}

/* The batch is durable (or not): then each job's event, dead letter or retry hop. */
static void on_outcomes_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                             nudgel_err_t err, const char *errstr)
{
    worker_t *w = opaque;
    record_batch_t *b = w->record;
    char why[512];
    snprintf(why, sizeof(why), "%s", errstr);
    if (err == NUDGEL_OK) {
        err = nudgel_receipts_record_read(nudgel_pgconn_conn(c), n ? results[0] : NULL, b->results,
                                          b->nresults, b->applied, why, sizeof(why));
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
    for (size_t i = 0; i < count; i++)
        publish_outcome(b->batch[i], b->result_of[i] >= 0 ? &b->applied[b->result_of[i]] : NULL);
    kick(w);
}

void outcomes_pump(void *opaque)
{
    worker_t *w = opaque;
    record_batch_t *b = w->record;
    nudgel_pgconn_t *pc = w->pg_outcomes.conn;
    char errstr[512];
    if (nudgel_batchq_count(w->to_record) == 0 || !pc || !nudgel_pgconn_up(pc) ||
        nudgel_pgconn_busy(pc) || b->n > 0)
        return;
    fill_batch(w);
    nudgel_metric_observe(w->m_pg_batch, "record", (double)b->n);
    if (b->nresults == 0 && b->nreleases == 0) {
        /* Only retries of someone else's claim: nothing to write. */
        size_t n = b->n;
        b->n = 0;
        for (size_t i = 0; i < n; i++)
            publish_outcome(b->batch[i], NULL);
        kick(w);
        return;
    }
    nudgel_err_t err =
        nudgel_receipts_record_send(nudgel_pgconn_conn(pc), b->results, b->nresults, b->release_ids,
                                    b->nreleases, w->worker_id, errstr, sizeof(errstr));
    if (err == NUDGEL_OK && nudgel_pgconn_sent(pc, 0, on_outcomes_done, w) == NUDGEL_OK)
        return;
    if (err == NUDGEL_OK || err == NUDGEL_ERR_PG_UNREACHABLE) {
        nudgel_pgconn_lost(pc,
                           err == NUDGEL_OK ? "outcomes: the statement could not be sent" : errstr);
        requeue(w);
        return;
    }
    fail_batch(w, errstr);
}
