/*
 * intake.c — jobs from the consumer on the loop: polled when the consumer
 * says there is something (its on_ready) and by ourselves when room frees
 * up (the wake-up contract of nudgel/consumer.h); a retry-tier job deferred
 * until its not-before, or hopped on when it would hold back the hops
 * behind it (nudgel/retry_tiers.h); a due one checked (envelope, parse; a
 * malformed one ends at once: dead letter + failed event), skipped when the
 * same job is already in flight here, deduplicated when another job of the
 * tenant delivers the same event to the same endpoint here, else queued for
 * the next claim. The in-flight cap pauses every partition above
 * webhooks.max_in_flight and resumes below half.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/kafka.h"
#include "nudgel/retry_tiers.h"
#include "nudgel/timeutil.h"

/* The claim queue has room for one more job. */
static bool room(const worker_t *w)
{
    return nudgel_batchq_count(w->claimq) < CLAIM_BATCH_MAX;
}

/*
 * A malformed job: a dead letter with the reason and a failed event built
 * from whatever of the job is usable (ids derived from its position else).
 */
static void malformed(worker_t *w, wjob_t *j, const char *reason)
{
    const rd_kafka_message_t *km = nudgel_job_kafka(&j->life);
    char delivery_id[NUDGEL_UUID_STR_LEN + 1], tenant[65], event_id[64], event_type[140];
    json_t *doc = json_loadb(km->payload ? km->payload : "", km->len, 0, NULL);
    const char *et = json_string_value(json_object_get(doc, "event_type"));
    const char *eid = json_string_value(json_object_get(doc, "event_id"));

    nudgel_job_derived_ids(km, doc, delivery_id, tenant);
    snprintf(j->log_id, sizeof(j->log_id), "%s", delivery_id);
    snprintf(j->log_tenant, sizeof(j->log_tenant), "%s", tenant);
    job_log_limited(j, &w->log_dead, NUDGEL_LOG_WARN,
                    "malformed webhook job at %s[%d]@%lld: %s; dead-lettered",
                    rd_kafka_topic_name(km->rkt), km->partition, (long long)km->offset, reason);
    nudgel_metric_add(w->m_outcomes, "malformed", 1);
    j->end = END_MALFORMED;
    j->stage = STAGE_PUBLISH;
    nudgel_job_failed_because(&j->life, wh_failure_reason(END_MALFORMED, NULL));
    nudgel_job_publish_dlq(&j->life, reason);

    bool et_ok = et && strlen(et) < sizeof(event_type) && strchr(et, '.') && et[0] >= 'a' &&
                 et[0] <= 'z' && strspn(et, "abcdefghijklmnopqrstuvwxyz0123456789_.") == strlen(et);
    snprintf(event_type, sizeof(event_type), "%s", et_ok ? et : "webhook.malformed");
    bool eid_ok =
        eid && *eid && strlen(eid) <= 128 &&
        strspn(eid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-") ==
            strlen(eid);
    snprintf(event_id, sizeof(event_id), "%.63s", eid_ok ? eid : "malformed");
    publish_event(j, "failed", wh_delivery_status_name(WH_DELIVERY_FAILED), 0, 0, "malformed_job",
                  reason, NULL, delivery_id, tenant, event_type, event_id);
    json_decref(doc);
    job_release(j);
}

/* A new job for @p ref, on the lifecycle and the list of jobs alive; NULL when out of memory. */
static wjob_t *job_new(worker_t *w, nudgel_job_ref_t *ref, int64_t now_ms)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    int64_t attempts = 0;
    wjob_t *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->w = w;
    nudgel_job_begin(w->lifecycle, &j->life, w->consumer, ref);
    j->first_seen_ms = now_ms;
    j->next_all = w->all;
    if (w->all)
        w->all->prev_all = j;
    w->all = j;
    nudgel_job_header_int(km, NUDGEL_HDR_ATTEMPT, &attempts);
    nudgel_job_header_int(km, NUDGEL_HDR_FIRST_SEEN, &j->first_seen_ms);
    j->header_attempts = attempts > 0 && attempts < 1000 ? (int)attempts : 0;
    nudgel_message_header(km, NUDGEL_HDR_TRACEPARENT, j->traceparent, sizeof(j->traceparent));
    char replay_of[8];
    nudgel_message_header(km, "nudgel-replay-of", replay_of, sizeof(replay_of));
    j->replayed = replay_of[0] != '\0';
    nudgel_job_trace_id(j->traceparent, j->trace_id);
    return j;
}

/* Takes a job just polled: due? well-formed? then into the claim queue. */
static void handle(worker_t *w, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    int64_t now = nudgel_now_unix_ms(), until = 0;
    char reason[400];
    const char *hop_topic = NULL;
    nudgel_retry_tiers_t tiers = {w->tiers, w->topic_retry, w->tier_delay_ms};
    nudgel_retry_head_t head =
        nudgel_retry_head_check(&tiers, w->consumer, ref, now, &until, &hop_topic);
    if (head == NUDGEL_RETRY_HEAD_WAIT) {
        nudgel_consumer_defer(w->consumer, ref, until);
        return;
    }
    wjob_t *j = job_new(w, ref, now);
    if (!j) {
        nudgel_consumer_defer(w->consumer, ref, now + 1000);
        return;
    }
    if (head == NUDGEL_RETRY_HEAD_HOP_ON) {
        /* Due much later than the hops behind it: on to the tier of its remaining
         * wait, unchanged (not an attempt), so the partition moves on. */
        nudgel_metric_add(w->m_outcomes, "hopped_on", 1);
        j->stage = STAGE_PUBLISH;
        nudgel_job_publish_hop_on(&j->life, hop_topic);
        job_release(j);
        return;
    }
    if (!nudgel_job_envelope_ok(km, NUDGEL_SCHEMA_WEBHOOK_JOB_V1, NULL, reason, sizeof(reason))) {
        malformed(w, j, reason);
        return;
    }
    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t popts = {0};
    if (nudgel_webhook_job_parse(km->payload, km->len, &popts, &j->job, &ferr) != NUDGEL_OK) {
        snprintf(reason, sizeof(reason), "%s: %s", ferr.field, ferr.reason);
        malformed(w, j, reason);
        return;
    }
    j->parsed = true;
    snprintf(j->log_id, sizeof(j->log_id), "%s", j->job.id);
    snprintf(j->log_tenant, sizeof(j->log_tenant), "%s", j->job.tenant_id);
    if (!nudgel_job_envelope_ok(km, NUDGEL_SCHEMA_WEBHOOK_JOB_V1, j->job.tenant_id, reason,
                                sizeof(reason))) {
        malformed(w, j, reason);
        return;
    }
    if (!j->job.endpoint_id) {
        /* A one-off url job has no signing secret: it cannot be delivered as Standard Webhooks. */
        malformed(w, j,
                  "endpoint_id: one-off url deliveries are not supported (no signing "
                  "secret); register an endpoint");
        return;
    }
    wjob_t *holder = index_holder(w, j);
    if (holder && strcmp(holder->job.id, j->job.id) == 0) {
        /* The same job is already in flight here (a re-delivered copy): that one ends it. */
        nudgel_log_ctx_t ctx;
        job_log_ctx(j, &ctx);
        NUDGEL_LOG_CTX(NUDGEL_LOG_INFO, &ctx,
                       "webhook job %s: event %s to endpoint %s is already in flight here; "
                       "skipped",
                       j->job.id, j->job.event_id, j->job.endpoint_id);
        j->end = END_NONE;
        job_publish(j);
        return;
    }
    if (holder) {
        /* Another job of the tenant delivers the same event to the same endpoint: this one is
         * deduplicated (recorded, evented), as the claim would say once the other's row is in. */
        snprintf(j->duplicate_of, sizeof(j->duplicate_of), "%s", holder->job.id);
        j->end = END_DEDUPLICATED;
        outcome_add(j);
        return;
    }
    j->stage = STAGE_CLAIM;
    if (nudgel_batchq_push(w->claimq, j) != NUDGEL_OK) {
        job_fail(j); /* out of memory: handed back, fetched again */
        job_release(j);
    }
}

/*
 * Pauses every partition while the jobs in flight reach max_in_flight and
 * resumes below half of it; a resume needs a poll of our own (no wake-up
 * comes for what is already queued).
 */
void intake_gate(worker_t *w)
{
    size_t in_flight = nudgel_consumer_in_flight(w->consumer);
    if (!w->in_flight_paused && in_flight >= w->s.max_in_flight) {
        w->in_flight_paused = true;
        nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_IN_FLIGHT);
    } else if (w->in_flight_paused && in_flight < w->s.max_in_flight / 2) {
        w->in_flight_paused = false;
        nudgel_consumer_resume(w->consumer, NUDGEL_PAUSE_IN_FLIGHT);
        w->intake_again = true;
    }
}

/* Polls until the consumer has nothing more or the claim queue is full (then we poll again). */
void intake_poll(worker_t *w)
{
    w->intake_again = false;
    while (room(w)) {
        nudgel_job_ref_t *ref = nudgel_consumer_poll(w->consumer, 0);
        if (!ref)
            return;
        handle(w, ref);
        nudgel_lifecycle_polled_end(w->lifecycle);
        intake_gate(w);
    }
    w->intake_again = true; /* what is left in librdkafka's queue writes no new wake-up */
}

void intake_ready(void *opaque)
{
    intake_poll(opaque);
}
