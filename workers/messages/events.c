/*
 * events.c — what the worker tells the world: status events (CloudEvents on
 * the status topic, event ids stable over redeliveries) and dead letters
 * (logged, a few lines a second at most). Each publish holds the job through
 * its lifecycle (nudgel/lifecycle.h) until Kafka acknowledges it; a publish
 * that cannot even be queued marks the job so its offset never moves past
 * it.
 */
#define _GNU_SOURCE
#include <stdio.h>

#include "nudgel/log.h"
#include "nudgel/receipt_events.h"
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
 * Status event data from what we know of the job and its outcome, through
 * the one builder of receipt events (nudgel/receipt_events.h) that
 * nudgel-receipts uses too.
 */
json_t *event_data(const msg_t *m, const char *status, const char *gateway,
                   const char *gateway_message_id, const char *error_code,
                   const char *error_message, bool permanent, const char *cost_amount,
                   const char *currency)
{
    const nudgel_message_job_t *j = &m->job;
    nudgel_receipt_event_fields_t f = {
        .message_id = j->id,
        .tenant_id = j->tenant_id,
        .idempotency_key = j->idempotency_key,
        .to = j->to,
        .country = j->phone.country,
        .operator_name = j->phone.operator_name,
        .gateway = gateway,
        .gateway_message_id = gateway_message_id,
        .status = status,
        .error_code = error_code,
        .error_message = error_message,
        .error_permanent = permanent,
        .encoding = m->text ? nudgel_sms_encoding_name(m->sms.encoding) : NULL,
        .segments = m->text ? (int)m->sms.segments : 0,
        .cost_amount = cost_amount,
        .cost_currency = currency,
        .attempt = event_attempt(m),
        .metadata = j->metadata,
    };
    return nudgel_receipt_event_data(&f);
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
