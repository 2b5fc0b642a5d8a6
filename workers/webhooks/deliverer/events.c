/*
 * events.c — what a job publishes once its outcome is durable: webhook
 * status events (ai.nudgel.webhook.*), the retry hop on the tier of its
 * real wait (nudgel_retry_tier_for_wait(); the tiers come from the topic contract,
 * nudgel_topics_retry_tiers("webhooks")), and dead letters; each publish
 * holds the job until Kafka acknowledges it (nudgel/lifecycle.h).
 */
#include <stdio.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/event.h"
#include "nudgel/retry_tiers.h"
#include "nudgel/timeutil.h"

#define EVENT_SOURCE "/nudgel/webhooks"

const char *const wh_job_outcomes[] = {
    "delivered", "failed",  "retried",   "exhausted", "requeued", "deduplicated",
    "refused",   "skipped", "malformed", "hopped_on", "replayed", NULL,
};

const char *const wh_attempt_results[] = {
    "delivered",
    "http_3xx",
    "http_4xx",
    "http_5xx",
    "http_410",
    "http_429",
    "http_other",
    "timeout",
    "connect",
    "dns",
    "tls",
    "transport",
    "ssrf_refused",
    "bad_url",
    WH_ENDPOINT_TENANT_MISMATCH,
    WH_DELIVERY_ID_CONFLICT,
    NULL,
};

/* A job ends failed (nudgel_jobs_failed_total{reason}, its dead letter's label) for one of
 * these: malformed, retries exhausted, or the error class of a failure with no retry. */
const char *const wh_failure_reasons[] = {
    "malformed",
    "exhausted",
    WH_ENDPOINT_NOT_FOUND,
    "endpoint_disabled",
    WH_ENDPOINT_TENANT_MISMATCH,
    WH_DELIVERY_ID_CONFLICT,
    "ssrf_refused",
    "bad_url",
    "http_410",
    "other",
    NULL,
};

const char *wh_failure_reason(job_end_t end, const char *error_class)
{
    if (end == END_MALFORMED)
        return "malformed";
    if (end == END_EXHAUSTED)
        return "exhausted";
    for (size_t i = 0; error_class && wh_failure_reasons[i]; i++)
        if (strcmp(error_class, wh_failure_reasons[i]) == 0)
            return wh_failure_reasons[i];
    return "other";
}

/*
 * The fleet's view of @p j's end, before anything of it is published (its
 * dead letter carries the same reason): delivered is the goal reached (and
 * the event's time to it observed); failed, exhausted and refused end it
 * failed; retries, requeues and duplicates are neither.
 */
static void job_count_end(wjob_t *j)
{
    switch (j->end) {
    case END_DELIVERED:
        nudgel_job_succeeded(&j->life);
        if (j->parsed && j->job.created_at_ms > 0) {
            int64_t ms = nudgel_now_unix_ms() - j->job.created_at_ms;
            nudgel_metric_observe(j->w->m_end_to_end, NULL, ms > 0 ? (double)ms / 1000.0 : 0);
        }
        break;
    case END_FAILED:
    case END_EXHAUSTED:
    case END_REFUSED:
        nudgel_job_failed_because(&j->life, wh_failure_reason(j->end, j->error_class));
        break;
    case END_NONE:
    case END_RETRY:
    case END_REQUEUE:
    case END_MALFORMED: /* counted where it was found (intake.c) */
    case END_DEDUPLICATED:
        break;
    }
}

/*
 * A webhook status event for @p j: @p type_suffix "delivered", "failed",
 * "exhausted", "endpoint_disabled" or "deduplicated". Fields the job lacks (a malformed one)
 * come from the delivery_id .. event_id arguments.
 *
 * The one builder of every webhook event, first emission and re-emission
 * alike (issue 10, item 9: same id, same data): everything in it is what
 * the delivery row records — status, attempts, last status code, last error
 * (class and message), the url (j->url, written by flush.c and read back by
 * claims.c) — or the job's own fields; error.permanent follows from the
 * status (failed and cancelled are, exhausted is not).
 */
void publish_event(wjob_t *j, const char *type_suffix, const char *status, int attempt,
                   long status_code, const char *error_code, const char *error_message,
                   const char *disabled_reason, const char *delivery_id, const char *tenant_id,
                   const char *event_type, const char *event_id)
{
    bool permanent = strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0;
    char type[64];
    snprintf(type, sizeof(type), "ai.nudgel.webhook.%s", type_suffix);
    json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "delivery_id", delivery_id,
                             "tenant_id", tenant_id, "event_type", event_type, "event_id", event_id,
                             "status", status, "attempt", attempt);
    if (!data) {
        job_fail(j);
        return;
    }
    const char *endpoint_id = j->parsed ? j->job.endpoint_id : NULL;
    json_object_set_new(data, "endpoint_id", endpoint_id ? json_string(endpoint_id) : json_null());
    json_object_set_new(data, "status_code",
                        status_code >= 100 && status_code <= 599 ? json_integer(status_code)
                                                                 : json_null());
    if (error_code)
        json_object_set_new(data, "error",
                            json_pack("{s:s, s:s, s:b}", "code", error_code, "message",
                                      error_message ? error_message : "", "permanent", permanent));
    else
        json_object_set_new(data, "error", json_null());
    const char *url = j->url; /* never another tenant's: flush.c records only the job's own */
    if (url && strlen(url) <= 2048)
        json_object_set_new(data, "url", json_string(url));
    if (disabled_reason)
        json_object_set_new(data, "disabled_reason", json_string(disabled_reason));
    if (j->duplicate_of[0])
        json_object_set_new(data, "duplicate_of", json_string(j->duplicate_of));
    const char *tp = j->traceparent[0] ? j->traceparent : NULL;
    /* NULL (out of memory) marks the job failed inside. */
    nudgel_job_publish_event(&j->life, tenant_id,
                             nudgel_event_build(EVENT_SOURCE, type, delivery_id, tenant_id, attempt,
                                                nudgel_now_unix_ms(), tp, data),
                             tp);
}

void job_event(wjob_t *j, const char *type_suffix, wh_delivery_status_t status)
{
    publish_event(j, type_suffix, wh_delivery_status_name(status), j->attempt, j->status_code,
                  j->error_class[0] ? j->error_class : NULL, j->error_message,
                  j->endpoint_disabled_now ? j->disabled_reason : NULL, j->job.id, j->job.tenant_id,
                  j->job.event_type, j->job.event_id);
}

/* A dead letter, and a line saying so (rate-limited: a bad batch may dead-letter thousands). */
void publish_dlq(wjob_t *j, const char *reason)
{
    worker_t *w = j->w;
    job_log_limited(j, &w->log_dead, NUDGEL_LOG_WARN, "webhook job dead-lettered: %s", reason);
    nudgel_job_publish_dlq(&j->life, reason);
}

/* The retry tier of a hop waiting @p delay_ms (nudgel/retry_tiers.h). */
static size_t tier_for(const worker_t *w, int64_t delay_ms)
{
    nudgel_retry_tiers_t tiers = {w->tiers, w->topic_retry, w->tier_delay_ms};
    return nudgel_retry_tier_for_wait(&tiers, delay_ms);
}

static void publish_retry(wjob_t *j, int attempts_made, int64_t not_before_ms,
                          const char *last_error)
{
    worker_t *w = j->w;
    int64_t delay = not_before_ms - nudgel_now_unix_ms();
    nudgel_job_publish_retry(&j->life, w->topic_retry[tier_for(w, delay)], attempts_made,
                             not_before_ms, j->first_seen_ms, last_error);
}

/* Publishes what the job's (now durable) outcome calls for, then releases it. */
void job_publish(wjob_t *j)
{
    worker_t *w = j->w;
    char reason[800];
    j->stage = STAGE_PUBLISH;
    job_count_end(j);
    switch (j->end) {
    case END_NONE:
        break;
    case END_DELIVERED:
        job_event(j, "delivered", WH_DELIVERY_DELIVERED);
        break;
    case END_FAILED:
        job_event(j, "failed", j->delivery_status);
        if (strcmp(j->error_class, WH_ENDPOINT_NOT_FOUND) == 0) {
            /* Dead-lettered too: `nudgel-admin dlq replay` resends it once the endpoint
             * exists (claims.c reopens its cancelled row for the replay). */
            snprintf(reason, sizeof(reason), "%s: the endpoint %s does not exist",
                     WH_ENDPOINT_NOT_FOUND, j->job.endpoint_id);
            publish_dlq(j, reason);
        }
        break;
    case END_RETRY:
        snprintf(reason, sizeof(reason), "%s: %s", j->error_class, j->error_message);
        publish_retry(j, j->attempt, j->next_attempt_ms, reason);
        break;
    case END_EXHAUSTED:
        job_event(j, "exhausted", WH_DELIVERY_EXHAUSTED);
        snprintf(reason, sizeof(reason), "retries exhausted after %d attempts: %s: %s", j->attempt,
                 j->error_class, j->error_message);
        publish_dlq(j, reason);
        break;
    case END_REQUEUE:
        publish_retry(j, j->header_attempts,
                      nudgel_now_unix_ms() +
                          (w->s.schedule.count ? w->s.schedule.delays_ms[0] : 5000),
                      "endpoint_saturated: its queue is full");
        break;
    case END_MALFORMED:
        break; /* published where it was found */
    case END_DEDUPLICATED:
        job_event(j, "deduplicated", WH_DELIVERY_DEDUPLICATED);
        break;
    case END_REFUSED:
        job_event(j, "failed", j->delivery_status);
        snprintf(reason, sizeof(reason), "%s: %s", j->error_class, j->error_message);
        publish_dlq(j, reason);
        break;
    }
    if (j->endpoint_disabled_now)
        job_event(j, "endpoint_disabled", j->delivery_status);
    nudgel_metric_add(w->m_outcomes,
                      j->end == END_DELIVERED      ? "delivered"
                      : j->end == END_FAILED       ? "failed"
                      : j->end == END_RETRY        ? "retried"
                      : j->end == END_EXHAUSTED    ? "exhausted"
                      : j->end == END_REQUEUE      ? "requeued"
                      : j->end == END_DEDUPLICATED ? "deduplicated"
                      : j->end == END_REFUSED      ? "refused"
                                                   : "skipped",
                      1);
    job_release(j);
}
