/*
 * events.c — what the worker tells the world: status events (CloudEvents on
 * the status topic, event ids stable over redeliveries) and dead letters
 * (logged, a few lines a second at most). Every event's data is built from
 * a receipt row by nudgel_receipt_event_data(): at first emission the row
 * the outcome wrote, at a re-emission the row a claim read back, so the
 * same event id always carries the same data. Each publish holds the job through
 * its lifecycle (nudgel/lifecycle.h) until Kafka acknowledges it; a publish
 * that cannot even be queued marks the job so its offset never moves past
 * it.
 */
#define _GNU_SOURCE
#include <stdio.h>

#include "nudgel/log.h"
#include "nudgel/receipt_event.h"
#include "nudgel/timeutil.h"

#include "messages.h"

/*
 * The attempt a status event speaks for: the receipt's attempt (its claims)
 * once the job was claimed, so that the same transition always yields the
 * same event id — a sent event re-emitted after a redelivery repeats the id
 * written with the transition, whatever retry hops the job took. Before a
 * claim (malformed, deduplicated): its retry hops + 1.
 */
int event_attempt(const msg_t *m)
{
    return m->receipt_attempt > 0 ? m->receipt_attempt : m->attempt + 1;
}

/*
 * The receipt result @p o writes for @p m (outcomes.c sends exactly this to
 * Postgres): the outcome's fields, the job's encoding and segments once its
 * text is known, and the cost normalised as the column stores it.
 * @p event_id (may be NULL) is stored on the history row. The strings are
 * borrowed from @p m, @p o and @p cost (nudgel_receipt_cost_normalize()'s
 * output, NUDGEL_RECEIPT_COST_TEXT_MAX bytes).
 */
void outcome_result(const msg_t *m, const outcome_t *o, const char *event_id, char *cost,
                    nudgel_receipt_result_t *r)
{
    bool has_cost = o->cost_amount[0] && nudgel_receipt_cost_normalize(
                                             o->cost_amount, cost, NUDGEL_RECEIPT_COST_TEXT_MAX);
    *r = (nudgel_receipt_result_t){
        .message_id = m->job.id,
        .status = o->state,
        .gateway = o->gateway[0] ? o->gateway : NULL,
        .gateway_message_id = o->gateway_message_id[0] ? o->gateway_message_id : NULL,
        .error_code = o->error_code[0] ? o->error_code : NULL,
        .error_message = o->error_message[0] ? o->error_message : NULL,
        .encoding = m->text ? nudgel_sms_encoding_name(m->sms.encoding) : NULL,
        .segments = m->text ? (int)m->sms.segments : -1,
        .cost_amount = has_cost ? cost : NULL,
        .cost_currency = has_cost && o->currency[0] ? o->currency : NULL,
        .event_id = event_id,
    };
}

/*
 * Status event data (DESIGN §4) about the receipt @p row, by the one builder
 * every emission shares (nudgel/receipt_event.h): same id, same data.
 */
json_t *event_data_of_row(const msg_t *m, const nudgel_receipt_t *row, const char *status)
{
    return nudgel_receipt_event_data(row, status, event_attempt(m), m->job.metadata);
}

/* The data of the event of @p m's outcome: its receipt row as the outcome wrote it. */
json_t *outcome_event_data(const msg_t *m, const outcome_t *o)
{
    nudgel_receipt_t row;
    nudgel_receipt_result_t r;
    char cost[NUDGEL_RECEIPT_COST_TEXT_MAX];
    nudgel_receipt_from_job(&m->job, m->resent_from, &row);
    outcome_result(m, o, NULL, cost, &r);
    nudgel_receipt_apply_result(&row, &r);
    return event_data_of_row(m, &row, nudgel_receipt_state_name(o->state));
}

/* The data of an event about @p m with no receipt of its own (deduplicated). */
json_t *job_event_data(const msg_t *m, const char *status)
{
    nudgel_receipt_t row;
    nudgel_receipt_from_job(&m->job, NULL, &row);
    return event_data_of_row(m, &row, status);
}

void publish_event_for(msg_t *m, const char *subject, const char *tenant, const char *status,
                       json_t *data)
{
    json_t *ev = nudgel_receipt_event_build("/nudgel/messages", status, subject, tenant,
                                            event_attempt(m), nudgel_now_unix_ms(),
                                            m->traceparent[0] ? m->traceparent : NULL, data);
    nudgel_job_publish_event(&m->life, tenant, ev, m->traceparent);
}

void publish_event(msg_t *m, const char *status, json_t *data)
{
    publish_event_for(m, m->job.id, m->job.tenant_id, status, data);
}

void publish_dlq(msg_t *m, const char *reason, const nudgel_log_ctx_t *log_ctx)
{
    const rd_kafka_message_t *km = nudgel_job_kafka(&m->life);
    nudgel_log_ctx_t ctx = log_ctx ? *log_ctx : msg_log_ctx(m);
    NUDGEL_LOG_LIMITED(&m->w->dlq_log, NUDGEL_LOG_WARN, &ctx,
                       "dead letter to %s: the job at %s[%d]@%lld: %s", m->w->topic_dlq,
                       rd_kafka_topic_name(km->rkt), (int)km->partition, (long long)km->offset,
                       reason);
    nudgel_job_publish_dlq(&m->life, reason);
}
