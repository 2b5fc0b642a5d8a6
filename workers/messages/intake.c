/*
 * intake.c — a job just polled: handed back when not yet due (a retry tier's
 * not-before), checked against the contract headers, parsed, then queued for
 * the batched claim (claims.c). A job that is not ours or cannot be parsed is
 * rejected here: a failed status event and a dead letter, no receipt.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"
#include "nudgel/uuid.h"

#include "messages.h"

static bool valid_tenant(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/*
 * A job that cannot be parsed: a dead letter with the reason, and a failed
 * status event so the caller hears of it. The event's subject is the job's
 * id when it has a valid one, else an id derived from where the bytes were
 * (topic/partition/offset), stable over redeliveries; its tenant is the
 * job's, else the Kafka key's, else "unknown". No receipt is written: with
 * no valid id there is no row to own it.
 */
void reject_malformed(worker_t *w, msg_t *m, const char *reason)
{
    const rd_kafka_message_t *km = nudgel_job_message(m->ref);
    char subject[NUDGEL_UUID_STR_LEN + 1] = "", tenant[65] = "unknown";
    uint8_t raw[16];
    json_t *doc = km->len ? json_loadb(km->payload, km->len, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *t = json_string_value(json_object_get(doc, "tenant_id"));
    if (id && strlen(id) == NUDGEL_UUID_STR_LEN && nudgel_uuid_parse(id, raw) == 0) {
        nudgel_uuid_format(raw, subject);
    } else {
        char origin[320], derived[NUDGEL_EVENT_ID_LEN + 1];
        snprintf(origin, sizeof(origin), "%s/%d/%lld", rd_kafka_topic_name(km->rkt),
                 (int)km->partition, (long long)km->offset);
        nudgel_event_id(origin, "malformed", 0, derived);
        snprintf(subject, sizeof(subject), "%s", derived);
    }
    if (valid_tenant(t)) {
        snprintf(tenant, sizeof(tenant), "%s", t);
    } else if (km->key && km->key_len > 0 && km->key_len < sizeof(tenant)) {
        char key[65];
        memcpy(key, km->key, km->key_len);
        key[km->key_len] = '\0';
        if (valid_tenant(key))
            snprintf(tenant, sizeof(tenant), "%s", key);
    }
    json_decref(doc);
    nudgel_log_warn("malformed job at %s[%d]@%lld: %s", rd_kafka_topic_name(km->rkt), km->partition,
                    (long long)km->offset, reason);
    nudgel_metric_add(w->m_outcomes, "malformed", 1);
    json_t *data = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:b}, s:i}", "message_id", subject,
                             "tenant_id", tenant, "status", "failed", "error", "code", "malformed",
                             "message", reason, "permanent", 1, "attempt", m->attempt + 1);
    publish_event_for(m, subject, tenant, "failed", data);
    publish_dlq(m, reason);
}

static void header_int(const rd_kafka_message_t *msg, const char *name, int64_t *out)
{
    char text[32];
    nudgel_message_header(msg, name, text, sizeof(text));
    if (text[0])
        *out = atoll(text);
}

/* A job just polled: due? parseable? Then it waits for the batched claim. */
void intake_handle(worker_t *w, nudgel_consumer_t *from, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    int64_t now = nudgel_now_unix_ms(), not_before = 0, attempt = 0;
    msg_t *m = calloc(1, sizeof(*m));
    if (!m) {
        nudgel_consumer_defer(from, ref, now + 1000);
        return;
    }
    m->w = w;
    m->from = from;
    m->ref = ref;
    m->first_seen_ms = now;
    w->current = m;
    header_int(km, NUDGEL_HDR_NOT_BEFORE, &not_before);
    header_int(km, NUDGEL_HDR_ATTEMPT, &attempt);
    header_int(km, NUDGEL_HDR_FIRST_SEEN, &m->first_seen_ms);
    if (not_before > now) {
        free(m);
        nudgel_consumer_defer(from, ref, not_before);
        return;
    }
    m->attempt = (int)attempt;
    nudgel_message_header(km, NUDGEL_HDR_TRACEPARENT, m->traceparent, sizeof(m->traceparent));

    /* The contract headers (DESIGN §4): a job of another schema, or one whose
     * nudgel-tenant header names another tenant, is not ours to send. */
    char header[128], reason[400];
    nudgel_message_header(km, NUDGEL_HDR_SCHEMA, header, sizeof(header));
    if (header[0] && strcmp(header, NUDGEL_SCHEMA_MESSAGE_JOB_V1) != 0) {
        snprintf(reason, sizeof(reason), "nudgel-schema: expected %s, got \"%s\"",
                 NUDGEL_SCHEMA_MESSAGE_JOB_V1, header);
        reject_malformed(w, m, reason);
        msg_release(m);
        return;
    }
    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t popts = {.normalise_to = true};
    if (nudgel_message_job_parse(km->payload, km->len, &popts, &m->job, &ferr) != NUDGEL_OK) {
        snprintf(reason, sizeof(reason), "%s: %s", ferr.field, ferr.reason);
        reject_malformed(w, m, reason);
        msg_release(m);
        return;
    }
    m->parsed = true;
    nudgel_message_header(km, NUDGEL_HDR_TENANT, header, sizeof(header));
    if (header[0] && strcmp(header, m->job.tenant_id) != 0) {
        snprintf(reason, sizeof(reason),
                 "nudgel-tenant header \"%s\" does not match tenant_id \"%s\" (mismatch)", header,
                 m->job.tenant_id);
        reject_malformed(w, m, reason);
        msg_release(m);
        return;
    }
    if (!queue_push(&w->to_claim, m)) {
        free(m);
        nudgel_consumer_defer(from, ref, now + 1000);
    }
}
