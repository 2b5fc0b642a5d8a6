/*
 * lifecycle.c — see nudgel/lifecycle.h.
 */
#define _GNU_SOURCE
#include "nudgel/lifecycle.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/event.h"
#include "nudgel/job.h"
#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"
#include "nudgel/uuid.h"

#define DEFER_AFTER_FAILURE_MS 1000 /* a job handed back is fetched again this much later */

/* The topic name of @p km ("?" for a message without one, as in tests). */
static const char *topic_of(const rd_kafka_message_t *km)
{
    return km->rkt ? rd_kafka_topic_name(km->rkt) : "?";
}

struct nudgel_lifecycle {
    nudgel_lifecycle_opts_t opts;
    char *status_topic;
    char *dlq_topic;
    nudgel_job_life_t *current; /* the job just polled */
    nudgel_job_life_t *live;    /* begun and not ended, newest first */
    size_t live_count;
};

nudgel_lifecycle_t *nudgel_lifecycle_new(const nudgel_lifecycle_opts_t *opts)
{
    nudgel_lifecycle_t *lc = calloc(1, sizeof(*lc));
    if (!lc)
        return NULL;
    lc->opts = *opts;
    lc->status_topic = strdup(opts->status_topic ? opts->status_topic : "");
    lc->dlq_topic = strdup(opts->dlq_topic ? opts->dlq_topic : "");
    if (!lc->status_topic || !lc->dlq_topic) {
        nudgel_lifecycle_free(lc);
        return NULL;
    }
    nudgel_fleet_metrics_watch_publisher(opts->metrics, opts->publisher);
    return lc;
}

void nudgel_lifecycle_free(nudgel_lifecycle_t *lc)
{
    if (!lc)
        return;
    free(lc->status_topic);
    free(lc->dlq_topic);
    free(lc);
}

void nudgel_job_begin(nudgel_lifecycle_t *lc, nudgel_job_life_t *job, nudgel_consumer_t *from,
                      nudgel_job_ref_t *ref)
{
    *job = (nudgel_job_life_t){.lc = lc, .from = from, .ref = ref, .live_next = lc->live};
    if (lc->live)
        lc->live->live_prev = job;
    lc->live = job;
    lc->live_count++;
    lc->current = job;
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    nudgel_fleet_job_consumed(lc->opts.metrics, km ? topic_of(km) : "?");
    nudgel_fleet_jobs_in_flight(lc->opts.metrics, 1);
}

void nudgel_job_succeeded(nudgel_job_life_t *job)
{
    job->succeeded = true;
}

void nudgel_job_failed_because(nudgel_job_life_t *job, const char *reason)
{
    job->reason = reason && *reason ? reason : "other";
    nudgel_fleet_job_failed(job->lc->opts.metrics, job->reason);
}

size_t nudgel_lifecycle_live(const nudgel_lifecycle_t *lc)
{
    return lc->live_count;
}

size_t nudgel_lifecycle_abandon_all(nudgel_lifecycle_t *lc)
{
    size_t n = 0;
    for (; lc->live; n++)
        nudgel_job_abandon(lc->live); /* ends it: off the list */
    return n;
}

void nudgel_lifecycle_polled_end(nudgel_lifecycle_t *lc)
{
    lc->current = NULL;
}

bool nudgel_job_is_current(const nudgel_job_life_t *job)
{
    return job->lc->current == job;
}

const rd_kafka_message_t *nudgel_job_kafka(const nudgel_job_life_t *job)
{
    return nudgel_job_message(job->ref);
}

void nudgel_job_fail(nudgel_job_life_t *job)
{
    job->failed = true;
}

static void job_end(nudgel_job_life_t *job)
{
    nudgel_lifecycle_t *lc = job->lc;
    job->ended = true;
    if (job->live_prev)
        job->live_prev->live_next = job->live_next;
    else
        lc->live = job->live_next;
    if (job->live_next)
        job->live_next->live_prev = job->live_prev;
    job->live_prev = job->live_next = NULL;
    lc->live_count--;
    nudgel_fleet_jobs_in_flight(lc->opts.metrics, -1);
    free(job->dlq_reason);
    job->dlq_reason = NULL;
    if (lc->current == job)
        lc->current = NULL;
    lc->opts.finished(lc->opts.opaque, job);
}

void nudgel_job_release(nudgel_job_life_t *job)
{
    if (job->pending > 0 || job->ended)
        return;
    nudgel_lifecycle_t *lc = job->lc;
    if (!job->failed) {
        if (job->succeeded)
            nudgel_fleet_job_succeeded(lc->opts.metrics);
        nudgel_consumer_done(job->from, job->ref);
    } else if (lc->current == job) {
        nudgel_consumer_defer(job->from, job->ref, nudgel_now_unix_ms() + DEFER_AFTER_FAILURE_MS);
    } else {
        const rd_kafka_message_t *km = nudgel_job_message(job->ref);
        char why[400];
        snprintf(why, sizeof(why),
                 "the job at %s[%d]@%lld could not be finished durably; stopping so it is "
                 "re-delivered",
                 topic_of(km), (int)km->partition, (long long)km->offset);
        lc->opts.fatal(lc->opts.opaque, why);
        return; /* it stays unfinished: its offset never moves past it */
    }
    job_end(job);
}

void nudgel_job_hold(nudgel_job_life_t *job)
{
    job->pending++;
}

void nudgel_job_unhold(nudgel_job_life_t *job, nudgel_err_t err)
{
    if (err != NUDGEL_OK)
        job->failed = true;
    job->pending--;
    nudgel_job_release(job);
}

void nudgel_job_abandon(nudgel_job_life_t *job)
{
    if (job->ended)
        return;
    nudgel_consumer_abandon(job->from, job->ref);
    job_end(job);
}

void nudgel_lifecycle_published(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque)
{
    nudgel_job_life_t *job = opaque;
    (void)cb_opaque;
    if (err == NUDGEL_ERR_TOO_LARGE && job->dlq_reason && !job->dlq_shrunk) {
        /* The broker took less than we thought (a topic's max.message.bytes below
         * the producer's): the dead letter again, as a prefix every topic takes. */
        const rd_kafka_message_t *km = nudgel_job_message(job->ref);
        nudgel_log_warn("the dead letter of the job at %s[%d]@%lld is too large for %s; "
                        "publishing its first %d bytes",
                        topic_of(km), (int)km->partition, (long long)km->offset, job->lc->dlq_topic,
                        NUDGEL_DLQ_FALLBACK_BYTES);
        job->dlq_shrunk = true;
        err = nudgel_publish_dlq_capped(job->lc->opts.publisher, job->lc->dlq_topic, km,
                                        job->dlq_reason, NUDGEL_DLQ_FALLBACK_BYTES, job);
        if (err == NUDGEL_OK)
            return; /* still pending: this callback comes again */
        errstr = nudgel_strerror(err);
    }
    if (err) {
        const rd_kafka_message_t *km = nudgel_job_message(job->ref);
        nudgel_log_error("publishing for the job at %s[%d]@%lld failed: %s", topic_of(km),
                         (int)km->partition, (long long)km->offset, errstr);
        job->failed = true;
    }
    job->pending--;
    nudgel_job_release(job);
}

/* A publish was handed to the producer (or not): hold the job until it is acknowledged. */
static void held(nudgel_job_life_t *job, nudgel_err_t err)
{
    if (err == NUDGEL_OK)
        job->pending++;
    else
        job->failed = true;
}

void nudgel_job_publish_event(nudgel_job_life_t *job, const char *tenant_id, json_t *event,
                              const char *traceparent)
{
    if (!event) {
        job->failed = true;
        return;
    }
    nudgel_lifecycle_t *lc = job->lc;
    job->pending++; /* the callback may run before the call returns */
    nudgel_err_t err = nudgel_publish_event(lc->opts.publisher, lc->status_topic, tenant_id, event,
                                            traceparent && *traceparent ? traceparent : NULL, job);
    job->pending--;
    held(job, err);
}

void nudgel_job_publish_dlq(nudgel_job_life_t *job, const char *reason)
{
    nudgel_lifecycle_t *lc = job->lc;
    if (!job->dlq_reason)
        job->dlq_reason = strdup(reason ? reason : "");
    job->pending++;
    nudgel_err_t err = nudgel_publish_dlq(lc->opts.publisher, lc->dlq_topic,
                                          nudgel_job_message(job->ref), reason, job);
    job->pending--;
    held(job, err);
    if (err == NUDGEL_OK)
        nudgel_fleet_job_dead_lettered(lc->opts.metrics, job->reason ? job->reason : "other");
}

void nudgel_job_publish_hop_on(nudgel_job_life_t *job, const char *topic)
{
    nudgel_lifecycle_t *lc = job->lc;
    job->pending++;
    nudgel_err_t err =
        nudgel_publish_hop_on(lc->opts.publisher, topic, nudgel_job_message(job->ref), job);
    job->pending--;
    held(job, err);
}

void nudgel_job_publish_retry(nudgel_job_life_t *job, const char *topic, int attempt,
                              int64_t not_before_ms, int64_t first_seen_ms, const char *last_error)
{
    nudgel_lifecycle_t *lc = job->lc;
    job->pending++;
    nudgel_err_t err = nudgel_publish_retry(lc->opts.publisher, topic, nudgel_job_message(job->ref),
                                            attempt, not_before_ms, first_seen_ms, last_error, job);
    job->pending--;
    held(job, err);
    if (err == NUDGEL_OK)
        nudgel_fleet_job_retried(lc->opts.metrics, topic);
}

/* ---- malformed input ---------------------------------------------------- */

bool nudgel_job_envelope_ok(const rd_kafka_message_t *km, const char *schema, const char *tenant_id,
                            char *reason, size_t reason_size)
{
    char header[128];
    /* Required (DESIGN §4), checked once the job parsed (@p tenant_id known): a body that
     * does not parse is dead-lettered for what is wrong with it. */
    nudgel_message_header(km, NUDGEL_HDR_SCHEMA, header, sizeof(header));
    if (!header[0] && tenant_id) {
        snprintf(reason, reason_size, "nudgel-schema header missing (expected %s)", schema);
        return false;
    }
    if (header[0] && strcmp(header, schema) != 0) {
        snprintf(reason, reason_size, "nudgel-schema: expected %s, got \"%s\"", schema, header);
        return false;
    }
    if (!tenant_id)
        return true;
    nudgel_message_header(km, NUDGEL_HDR_TENANT, header, sizeof(header));
    if (header[0] && strcmp(header, tenant_id) != 0) {
        snprintf(reason, reason_size,
                 "nudgel-tenant header \"%s\" does not match tenant_id \"%s\" (mismatch)", header,
                 tenant_id);
        return false;
    }
    /* The key is the tenant (DESIGN §4): another key puts the job on another tenant's
     * partition, past its ordering and limits. A record without a key is let through. */
    if (km->key && km->key_len > 0 &&
        (km->key_len != strlen(tenant_id) || memcmp(km->key, tenant_id, km->key_len) != 0)) {
        snprintf(reason, reason_size,
                 "Kafka key \"%.*s\" does not match tenant_id \"%s\" (tenant mismatch)",
                 km->key_len < 72 ? (int)km->key_len : 72, (const char *)km->key, tenant_id);
        return false;
    }
    return true;
}

void nudgel_job_derived_ids(const rd_kafka_message_t *km, const json_t *doc, char subject[37],
                            char tenant[65])
{
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *t = json_string_value(json_object_get(doc, "tenant_id"));
    uint8_t raw[16];
    if (id && strlen(id) == NUDGEL_UUID_STR_LEN && nudgel_uuid_parse(id, raw) == 0) {
        nudgel_uuid_format(raw, subject);
    } else {
        char origin[320];
        snprintf(origin, sizeof(origin), "%s/%d/%lld", topic_of(km), (int)km->partition,
                 (long long)km->offset);
        nudgel_event_id(origin, "malformed", 0, subject);
    }
    char key[65] = "";
    if (km->key && km->key_len > 0 && km->key_len < sizeof(key)) {
        memcpy(key, km->key, km->key_len);
        key[km->key_len] = '\0';
    }
    char header[65];
    nudgel_message_header(km, NUDGEL_HDR_TENANT, header, sizeof(header));
    snprintf(tenant, 65, "%s",
             t && nudgel_tenant_id_valid(t)   ? t
             : nudgel_tenant_id_valid(header) ? header
             : nudgel_tenant_id_valid(key)    ? key
                                              : "unknown");
}

void nudgel_job_header_int(const rd_kafka_message_t *km, const char *name, int64_t *out)
{
    char text[32], *end = NULL;
    nudgel_message_header(km, name, text, sizeof(text));
    if (!text[0])
        return;
    long long v = strtoll(text, &end, 10);
    if (end != text && *end == '\0')
        *out = v;
}

void nudgel_job_trace_id(const char *traceparent, char out[33])
{
    out[0] = '\0';
    if (!traceparent || strlen(traceparent) < 55 || traceparent[2] != '-' || traceparent[35] != '-')
        return;
    for (int i = 3; i < 35; i++)
        if (!isxdigit((unsigned char)traceparent[i]))
            return;
    memcpy(out, traceparent + 3, 32);
    out[32] = '\0';
}
