/*
 * fanout.c — one webhook job per subscribed endpoint (see dispatch.h).
 *
 * Owns building and producing the jobs of an event and their
 * acknowledgements:
 *   - Everything derived from an event is deterministic, so a redelivered
 *     event (a crash between the acks and the offset commit) makes
 *     byte-identical jobs: the job id (→ webhook_deliveries.delivery_id) and
 *     the event id (→ the webhook-id header) are hashes of the status event's
 *     id and the endpoint id, and created_at is the event's time. The
 *     deliverer dedupes on delivery_id.
 *   - Jobs are produced with libnudgel (validated, keyed by tenant, the
 *     contract headers, the event's traceparent passed through). Each job
 *     holds its event (nudgel_job_hold) until libnudgel's delivery report,
 *     served from the loop when the producer's event fd is readable; the
 *     event ends (its offset may move) when every job is acknowledged.
 *   - A job libnudgel refuses (a data object over the job cap, say) is
 *     counted, and its event goes to the webhooks dead-letter topic with the
 *     reason (once per event); any other produce error fails the event (handed
 *     back if it is the one just polled, else a fatal stop: it comes again).
 *   - The producer never waits inside the loop (queue_full_wait_ms=0): when
 *     its local queue is full, the event keeps its place and waits in the
 *     backlog with every later one, in order, intake pauses
 *     (NUDGEL_PAUSE_PRODUCER), and the next delivery reports resume them.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dispatch.h"

#define DIGEST_LEN 32

const char *const dispatch_failure_reasons[] = {"malformed",   "too_large", "job_too_large",
                                                "job_invalid", "other",     NULL};

/* SHA-256 of "label\na\nb" (a is at most 256 bytes, b a UUID). */
static void derive(const char *label, const char *a, const char *b, unsigned char out[DIGEST_LEN])
{
    char text[512];
    int n = snprintf(text, sizeof(text), "%s\n%s\n%s", label, a, b);
    unsigned int len = 0;
    EVP_Digest(text, (size_t)(n < (int)sizeof(text) ? n : (int)sizeof(text) - 1), out, &len,
               EVP_sha256(), NULL);
}

/* A UUID (version 8, RFC 9562 variant) made of the first bytes of a hash. */
static void hash_uuid(const unsigned char h[DIGEST_LEN], char out[NUDGEL_UUID_STR_LEN + 1])
{
    uint8_t u[16];
    memcpy(u, h, 16);
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x80);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    nudgel_uuid_format(u, out);
}

char *fanout_job_json(const char *tenant, const char *event_id, const char *endpoint_id,
                      const char *event_type, const char *time_text, json_t *data)
{
    unsigned char h[DIGEST_LEN];
    char job_id[NUDGEL_UUID_STR_LEN + 1], webhook_id[64];
    derive("webhook-job", event_id, endpoint_id, h);
    hash_uuid(h, job_id);
    derive("webhook-id", event_id, endpoint_id, h);
    int n = snprintf(webhook_id, sizeof(webhook_id), "evt_");
    for (int i = 0; i < 16; i++)
        n += snprintf(webhook_id + n, sizeof(webhook_id) - (size_t)n, "%02x", h[i]);
    json_t *payload =
        json_pack("{s:s, s:s, s:O}", "type", event_type, "timestamp", time_text, "data", data);
    json_t *job = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "id", job_id, "tenant_id",
                            tenant, "endpoint_id", endpoint_id, "event_type", event_type,
                            "event_id", webhook_id, "payload", payload, "created_at", time_text);
    if (!job)
        return NULL;
    char *bytes = json_dumps(job, JSON_COMPACT);
    json_decref(job);
    return bytes;
}

/* ---- producing ------------------------------------------------------------ */

/* One job of @p ev for @p e; held until its delivery report when queued. */
static nudgel_err_t produce(dispatcher_t *d, dispatch_event_t *ev, const dispatch_endpoint_t *e,
                            char *why, size_t why_size)
{
    char *bytes =
        fanout_job_json(ev->tenant, ev->id, e->id, ev->event_type, ev->time_text, ev->data);
    if (!bytes)
        return NUDGEL_ERR_NO_MEMORY;
    nudgel_enqueue_opts_t opts = {.traceparent = ev->traceparent[0] ? ev->traceparent : NULL,
                                  .opaque = ev};
    nudgel_enqueue_result_t result;
    nudgel_job_hold(&ev->life);
    nudgel_err_t err = nudgel_enqueue_webhook(d->producer, bytes, strlen(bytes), &opts, &result);
    if (err == NUDGEL_ERR_INVALID_FIELD && strcmp(result.error.field, "traceparent") == 0) {
        /* A trace context we cannot pass on is no reason to lose the job. */
        opts.traceparent = NULL;
        err = nudgel_enqueue_webhook(d->producer, bytes, strlen(bytes), &opts, &result);
    }
    free(bytes);
    if (err == NUDGEL_OK)
        return NUDGEL_OK;
    nudgel_job_unhold(&ev->life, NUDGEL_OK); /* not queued; intake's hold keeps ev alive */
    snprintf(why, why_size, "webhook job for endpoint %s refused: %s %s%s%s", e->id,
             nudgel_strerror(err), result.error.field, result.error.field[0] ? ": " : "",
             result.error.reason);
    if (err != NUDGEL_ERR_QUEUE_FULL) {
        nudgel_log_ctx_t ctx = intake_log_ctx(ev);
        NUDGEL_LOG_CTX(NUDGEL_LOG_ERROR, &ctx, "webhook job for endpoint %s refused: %s %s%s%s",
                       e->id, nudgel_strerror(err), result.error.field,
                       result.error.field[0] ? ": " : "", result.error.reason);
    }
    return err;
}

/* Fan-out of @p ev is over: drop what it needed, then intake's hold (@p ev may end). */
static void finish(dispatcher_t *d, dispatch_event_t *ev, bool failed)
{
    nudgel_metric_add(d->m_events, ev->made ? "dispatched" : "no_endpoint", 1);
    /* Its goal reached: a job for every endpoint that wants it (none wanting it is that
     * too). A dead-lettered one was counted failed; a failed one comes again. */
    if (!failed && !ev->dead_lettered)
        nudgel_job_succeeded(&ev->life);
    dispatch_endpoints_unref(ev->endpoints);
    ev->endpoints = NULL;
    json_decref(ev->doc);
    ev->doc = NULL;
    ev->data = NULL;
    ev->time_text = NULL;
    nudgel_job_unhold(&ev->life, failed ? NUDGEL_ERR_KAFKA : NUDGEL_OK);
}

/*
 * Produces @p ev's jobs from where it stopped. @returns false when the
 * producer's queue is full (@p ev keeps its place for later), true when its
 * fan-out is over (@p ev may have ended).
 */
static bool run(dispatcher_t *d, dispatch_event_t *ev)
{
    const dispatch_endpoints_t *eps = ev->endpoints;
    bool failed = false;
    char why[600];
    for (; ev->next_endpoint < eps->count; ev->next_endpoint++) {
        const dispatch_endpoint_t *e = &eps->items[ev->next_endpoint];
        if (!dispatch_endpoint_wants(e, ev->event_type))
            continue;
        nudgel_err_t err = produce(d, ev, e, why, sizeof(why));
        if (err == NUDGEL_ERR_QUEUE_FULL)
            return false;
        if (err == NUDGEL_ERR_INVALID_FIELD || err == NUDGEL_ERR_INVALID_JSON ||
            err == NUDGEL_ERR_TOO_LARGE) {
            /* e.g. a data object over the job cap: never dropped silently, the event
             * goes to the dead-letter topic with the reason (once, for its first). */
            nudgel_metric_add(d->m_jobs, "refused", 1);
            if (!ev->dead_lettered) {
                ev->dead_lettered = true;
                nudgel_metric_add(d->m_events, "dead_lettered", 1);
                nudgel_job_failed_because(&ev->life, err == NUDGEL_ERR_TOO_LARGE ? "job_too_large"
                                                                                 : "job_invalid");
                nudgel_job_publish_dlq(&ev->life, why);
            }
            continue;
        }
        if (err != NUDGEL_OK) {
            failed = true; /* the event must come again */
            break;
        }
        ev->made++;
    }
    finish(d, ev, failed);
    return true;
}

/* ---- the backlog (producer's queue full) ------------------------------------------ */

static void backlog_push_front(dispatcher_t *d, dispatch_event_t *ev)
{
    ev->queue_next = d->backlog_head;
    d->backlog_head = ev;
    if (!d->backlog_tail)
        d->backlog_tail = ev;
}

static void backlog_push_back(dispatcher_t *d, dispatch_event_t *ev)
{
    ev->queue_next = NULL;
    if (d->backlog_tail)
        d->backlog_tail->queue_next = ev;
    else
        d->backlog_head = ev;
    d->backlog_tail = ev;
}

static dispatch_event_t *backlog_pop(dispatcher_t *d)
{
    dispatch_event_t *ev = d->backlog_head;
    d->backlog_head = ev->queue_next;
    if (!d->backlog_head)
        d->backlog_tail = NULL;
    ev->queue_next = NULL;
    return ev;
}

/* The producer's queue is full with @p ev's fan-out unfinished: wait for room. */
static void blocked(dispatcher_t *d, dispatch_event_t *ev)
{
    if (!d->backlog_head) {
        nudgel_log_warn("the job producer's local queue is full (%d in flight); intake paused "
                        "until Kafka acknowledges",
                        nudgel_producer_in_flight(d->producer));
        nudgel_consumer_pause(d->consumer, NUDGEL_PAUSE_PRODUCER);
    }
    backlog_push_front(d, ev);
}

void fanout_submit(dispatcher_t *d, dispatch_event_t *ev, dispatch_endpoints_t *eps)
{
    eps->refs++;
    ev->endpoints = eps;
    ev->next_endpoint = 0;
    ev->made = 0;
    if (d->backlog_head) {
        backlog_push_back(d, ev); /* behind the ones already waiting */
        return;
    }
    if (!run(d, ev))
        blocked(d, ev);
}

/* Room may have come back: the backlog in order, until it is empty or full again. */
static void backlog_resume(dispatcher_t *d)
{
    if (!d->backlog_head)
        return;
    while (d->backlog_head) {
        dispatch_event_t *ev = backlog_pop(d);
        if (!run(d, ev)) {
            backlog_push_front(d, ev);
            return;
        }
    }
    nudgel_log_info("the job producer has room again; intake resumed");
    nudgel_consumer_resume(d->consumer, NUDGEL_PAUSE_PRODUCER);
    d->pump_wanted = true;
    nudgel_loop_again(d->loop);
}

void fanout_on_producer(void *opaque, int fd, unsigned events)
{
    dispatcher_t *d = opaque;
    (void)fd;
    (void)events;
    nudgel_producer_poll(d->producer, 0);
    backlog_resume(d);
}

void fanout_on_ack(const nudgel_delivery_report_t *report, void *cb_opaque)
{
    dispatcher_t *d = cb_opaque;
    dispatch_event_t *ev = report->opaque;
    if (report->err != NUDGEL_OK) {
        nudgel_log_ctx_t ctx = intake_log_ctx(ev);
        NUDGEL_LOG_CTX(NUDGEL_LOG_ERROR, &ctx, "webhook job %s not acknowledged: %s",
                       report->job_id, report->errstr);
        nudgel_metric_add(d->m_jobs, "failed", 1);
    } else {
        nudgel_metric_add(d->m_jobs, "produced", 1);
    }
    nudgel_job_unhold(&ev->life, report->err); /* may end ev */
}
