/*
 * intake.c — a status event from its poll to its hand-over (see dispatch.h).
 *
 * Owns the consumer's side of the dispatcher: polling while there is room
 * (dispatch.max_in_flight events alive: at the cap every partition pauses,
 * and resumes once half of them have ended), the checks of one event — size,
 * JSON, fields, the envelope (nudgel-schema status.event/v1 and nudgel-tenant
 * against tenantid) — and what follows from them: an event that is not for
 * webhooks (another source's type, or ai.nudgel.webhook.*: a delivery must
 * not cause another delivery) is done at once, a malformed one goes to the
 * webhooks DLQ, any other is held and handed to endpoints.c. It also owns
 * the events' memory and their log context (tenant, event id, trace id), the
 * drain, and the "kafka" readiness condition, read from the consumer's
 * statistics after each poll.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "nudgel/kafka.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

#define TYPE_PREFIX        "ai.nudgel."
#define TYPE_PREFIX_LEN    (sizeof(TYPE_PREFIX) - 1)
#define WEBHOOK_PREFIX     "ai.nudgel.webhook."
#define DEFER_NO_MEMORY_MS 1000
#define POLL_BUDGET        512 /* events one pump takes before the loop turns again */

typedef enum verdict {
    VERDICT_DISPATCH, /* ours: find its endpoints */
    VERDICT_SKIP,     /* not for webhooks: done */
    VERDICT_MALFORMED,
} verdict_t;

/* The topic name of @p km, for log lines ("?" without one). */
static const char *topic_of(const rd_kafka_message_t *km)
{
    return km->rkt ? rd_kafka_topic_name(km->rkt) : "?";
}

nudgel_log_ctx_t intake_log_ctx(const dispatch_event_t *ev)
{
    return (nudgel_log_ctx_t){.tenant = ev->tenant[0] ? ev->tenant : NULL,
                              .job_id = ev->id[0] ? ev->id : NULL,
                              .trace_id = ev->trace_id[0] ? ev->trace_id : NULL};
}

void intake_event_finished(void *opaque, nudgel_job_life_t *job)
{
    dispatcher_t *d = opaque;
    dispatch_event_t *ev = (dispatch_event_t *)job;
    json_decref(ev->doc);
    dispatch_endpoints_unref(ev->endpoints);
    free(ev);
    if (d->full && nudgel_lifecycle_live(d->lc) < d->max_in_flight / 2) {
        /* Room again: the consumer's queue may hold messages that wrote
         * their wake-up long ago, so poll by ourselves (the turn hook). */
        d->full = false;
        nudgel_consumer_resume(d->consumer, NUDGEL_PAUSE_IN_FLIGHT);
        d->pump_wanted = true;
        nudgel_loop_again(d->loop);
    }
}

/*
 * Checks @p km and fills @p ev from it. @returns the verdict; for
 * VERDICT_MALFORMED the reason (which part, what is wrong) is in @p reason.
 */
static verdict_t check(dispatch_event_t *ev, const rd_kafka_message_t *km, char *reason,
                       size_t reason_size)
{
    json_error_t jerr;
    int64_t when;
    nudgel_message_header(km, NUDGEL_HDR_TRACEPARENT, ev->traceparent, sizeof(ev->traceparent));
    nudgel_job_trace_id(ev->traceparent, ev->trace_id);
    if (km->len > DISPATCH_MAX_EVENT_BYTES) {
        snprintf(reason, reason_size, "(event): larger than %d bytes", DISPATCH_MAX_EVENT_BYTES);
        return VERDICT_MALFORMED;
    }
    ev->doc = json_loadb(km->payload ? km->payload : "", km->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(ev->doc)) {
        snprintf(reason, reason_size, "(json): %s", ev->doc ? "not an object" : jerr.text);
        return VERDICT_MALFORMED;
    }
    const char *id = json_string_value(json_object_get(ev->doc, "id"));
    const char *type = json_string_value(json_object_get(ev->doc, "type"));
    const char *tenant = json_string_value(json_object_get(ev->doc, "tenantid"));
    if (!id || !*id || strlen(id) > DISPATCH_EVENT_ID_MAX || !type) {
        snprintf(reason, reason_size, "%s: missing or not a string", !type ? "type" : "id");
        return VERDICT_MALFORMED;
    }
    snprintf(ev->id, sizeof(ev->id), "%s", id);
    if (tenant && nudgel_tenant_id_valid(tenant))
        snprintf(ev->tenant, sizeof(ev->tenant), "%s", tenant);
    if (!ev->traceparent[0]) {
        const char *tp = json_string_value(json_object_get(ev->doc, "traceparent"));
        snprintf(ev->traceparent, sizeof(ev->traceparent), "%s", tp ? tp : "");
        nudgel_job_trace_id(ev->traceparent, ev->trace_id);
    }
    /* Only our own types, and never webhook events (no loops). */
    if (strncmp(type, TYPE_PREFIX, TYPE_PREFIX_LEN) != 0 ||
        strncmp(type, WEBHOOK_PREFIX, sizeof(WEBHOOK_PREFIX) - 1) == 0)
        return VERDICT_SKIP;
    if (!ev->tenant[0]) {
        snprintf(reason, reason_size, "tenantid: missing or not a valid tenant id");
        return VERDICT_MALFORMED;
    }
    if (!nudgel_job_envelope_ok(km, NUDGEL_SCHEMA_STATUS_EVENT_V1, ev->tenant, reason, reason_size))
        return VERDICT_MALFORMED;
    ev->time_text = json_string_value(json_object_get(ev->doc, "time"));
    if (!ev->time_text || nudgel_rfc3339_parse(ev->time_text, &when) != 0) {
        snprintf(reason, reason_size, "time: missing or not an RFC 3339 date-time");
        return VERDICT_MALFORMED;
    }
    ev->data = json_object_get(ev->doc, "data");
    if (!json_is_object(ev->data)) {
        snprintf(reason, reason_size, "data: missing or not an object");
        return VERDICT_MALFORMED;
    }
    if (strlen(type + TYPE_PREFIX_LEN) > DISPATCH_EVENT_TYPE_MAX) {
        snprintf(reason, reason_size, "type: too long");
        return VERDICT_MALFORMED;
    }
    snprintf(ev->event_type, sizeof(ev->event_type), "%s", type + TYPE_PREFIX_LEN);
    return VERDICT_DISPATCH;
}

/* A malformed event: one warning line with whatever ids it has, then the DLQ. */
static void dead_letter(dispatcher_t *d, dispatch_event_t *ev, const rd_kafka_message_t *km,
                        const char *reason)
{
    char subject[NUDGEL_UUID_STR_LEN + 1], tenant[NUDGEL_TENANT_ID_MAX + 1];
    nudgel_job_derived_ids(km, ev->doc, subject, tenant);
    nudgel_log_ctx_t ctx = intake_log_ctx(ev);
    if (!ctx.tenant)
        ctx.tenant = tenant;
    if (!ctx.job_id)
        ctx.job_id = subject;
    NUDGEL_LOG_CTX(NUDGEL_LOG_WARN, &ctx, "malformed status event at %s[%d]@%lld: %s", topic_of(km),
                   (int)km->partition, (long long)km->offset, reason);
    nudgel_metric_add(d->m_events, "malformed", 1);
    nudgel_job_failed_because(&ev->life,
                              km->len > DISPATCH_MAX_EVENT_BYTES ? "too_large" : "malformed");
    nudgel_job_publish_dlq(&ev->life, reason);
    nudgel_job_release(&ev->life); /* ends at the DLQ's acknowledgement */
}

/* One event just polled. @p ev may be freed by the time this returns. */
static void handle(dispatcher_t *d, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    char reason[400];
    dispatch_event_t *ev = calloc(1, sizeof(*ev));
    if (!ev) {
        nudgel_log_error("out of memory for a status event at %s[%d]@%lld; fetched again later",
                         topic_of(km), (int)km->partition, (long long)km->offset);
        nudgel_consumer_defer(d->consumer, ref, nudgel_now_unix_ms() + DEFER_NO_MEMORY_MS);
        return;
    }
    ev->d = d;
    nudgel_job_begin(d->lc, &ev->life, d->consumer, ref);
    switch (check(ev, km, reason, sizeof(reason))) {
    case VERDICT_SKIP:
        nudgel_metric_add(d->m_events, "skipped", 1);
        nudgel_job_release(&ev->life);
        break;
    case VERDICT_MALFORMED:
        dead_letter(d, ev, km, reason);
        break;
    case VERDICT_DISPATCH:
        nudgel_job_hold(&ev->life); /* until fan-out has made every job */
        endpoints_submit(d, ev);
        break;
    }
    nudgel_lifecycle_polled_end(d->lc);
}

/* "kafka": the runtime's one rule (brokers up, group joined). */
static void kafka_readiness(dispatcher_t *d)
{
    nudgel_kafka_health_t h;
    nudgel_consumer_health(d->consumer, &h);
    nudgel_kafka_health_readiness(&h, d->ready_kafka);
}

/*
 * Polls until the consumer has nothing more or the cap is reached. At the
 * cap it pauses every partition and still polls once, so that rebalances,
 * statistics and the group's max.poll.interval.ms are served while events
 * wait (a paused consumer returns nothing new; what it still returns is
 * handled, a bounded overshoot). At most POLL_BUDGET events per call: a long
 * run of events that end at once (skipped ones) must not keep the loop from
 * acknowledgements and lookups; the next turn goes on.
 */
static void pump(dispatcher_t *d)
{
    d->pump_wanted = false;
    for (int n = 0;; n++) {
        bool once = n == 0;
        if (n == POLL_BUDGET) {
            d->pump_wanted = true;
            nudgel_loop_again(d->loop);
            break;
        }
        if (nudgel_lifecycle_live(d->lc) >= d->max_in_flight) {
            if (!d->full) {
                d->full = true;
                nudgel_consumer_pause(d->consumer, NUDGEL_PAUSE_IN_FLIGHT);
            }
            if (!once)
                break;
        }
        nudgel_job_ref_t *ref = nudgel_consumer_poll(d->consumer, 0);
        if (!ref)
            break;
        handle(d, ref);
    }
    kafka_readiness(d);
}

void intake_on_ready(void *opaque)
{
    pump(opaque);
}

void intake_turn(void *opaque)
{
    dispatcher_t *d = opaque;
    if (d->pump_wanted)
        pump(d);
    if ((double)nudgel_lifecycle_live(d->lc) != d->gauge_in_flight) {
        d->gauge_in_flight = (double)nudgel_lifecycle_live(d->lc);
        nudgel_metric_set(d->m_in_flight, NULL, d->gauge_in_flight);
    }
}

void intake_drain(dispatcher_t *d)
{
    nudgel_consumer_pause(d->consumer, NUDGEL_PAUSE_SHUTDOWN);
}

void intake_abandon_all(dispatcher_t *d)
{
    nudgel_lifecycle_abandon_all(d->lc);
}
