/*
 * intake.c — a job just polled: deferred until its not-before, parsed (a
 * malformed one ends at once: dead letter + failed event), skipped when the
 * same delivery is already in flight here, else queued for the next claim.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "deliverer.h"
#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

static void header_int(const rd_kafka_message_t *msg, const char *name, int64_t *out)
{
    char text[32];
    nudgel_message_header(msg, name, text, sizeof(text));
    if (text[0])
        *out = atoll(text);
}

/*
 * A malformed job: a dead letter with the reason and a failed event built
 * from whatever of the job is usable (ids derived from its position else).
 */
static void malformed(worker_t *w, wjob_t *j, const char *reason)
{
    const rd_kafka_message_t *km = nudgel_job_message(j->ref);
    char delivery_id[NUDGEL_UUID_STR_LEN + 1], event_id[64], tenant[72], event_type[140];
    nudgel_log_warn("malformed webhook job at %s[%d]@%lld: %s", rd_kafka_topic_name(km->rkt),
                    km->partition, (long long)km->offset, reason);
    nudgel_metric_add(w->m_outcomes, "malformed", 1);
    j->end = END_MALFORMED;
    j->stage = STAGE_PUBLISH;
    publish_dlq(j, reason);

    json_t *doc = json_loadb(km->payload ? km->payload : "", km->len, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *tid = json_string_value(json_object_get(doc, "tenant_id"));
    const char *et = json_string_value(json_object_get(doc, "event_type"));
    const char *eid = json_string_value(json_object_get(doc, "event_id"));
    uint8_t u[16];
    if (id && strlen(id) == NUDGEL_UUID_STR_LEN && nudgel_uuid_parse(id, u) == 0) {
        nudgel_uuid_format(u, delivery_id);
    } else {
        char origin[300];
        unsigned char h[32];
        unsigned int hl = 0;
        int n = snprintf(origin, sizeof(origin), "%s/%d/%lld", rd_kafka_topic_name(km->rkt),
                         km->partition, (long long)km->offset);
        EVP_Digest(origin, (size_t)n, h, &hl, EVP_sha256(), NULL);
        memcpy(u, h, 16);
        u[6] = (uint8_t)((u[6] & 0x0f) | 0x80);
        u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
        nudgel_uuid_format(u, delivery_id);
    }
    char key_tenant[72];
    nudgel_message_header(km, NUDGEL_HDR_TENANT, key_tenant, sizeof(key_tenant));
    snprintf(tenant, sizeof(tenant), "%s",
             tid && nudgel_tenant_id_valid(tid)   ? tid
             : nudgel_tenant_id_valid(key_tenant) ? key_tenant
                                                  : "unknown");
    bool et_ok = et && strlen(et) < sizeof(event_type) && strchr(et, '.') && et[0] >= 'a' &&
                 et[0] <= 'z' && strspn(et, "abcdefghijklmnopqrstuvwxyz0123456789_.") == strlen(et);
    snprintf(event_type, sizeof(event_type), "%s", et_ok ? et : "webhook.malformed");
    bool eid_ok =
        eid && *eid && strlen(eid) <= 128 &&
        strspn(eid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-") ==
            strlen(eid);
    snprintf(event_id, sizeof(event_id), "%.63s", eid_ok ? eid : "malformed");
    publish_event(j, "failed", "failed", 0, 0, "malformed_job", reason, true, NULL, delivery_id,
                  tenant, event_type, event_id);
    json_decref(doc);
    job_release(j);
}

/* Takes a job just polled: due? parseable? then into the claim batch. */
void handle(worker_t *w, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    int64_t now = nudgel_now_unix_ms(), not_before = 0, attempts = 0;
    header_int(km, NUDGEL_HDR_NOT_BEFORE, &not_before);
    if (not_before > now) {
        nudgel_consumer_defer(w->consumer, ref, not_before);
        return;
    }
    wjob_t *j = calloc(1, sizeof(*j));
    if (!j) {
        nudgel_consumer_defer(w->consumer, ref, now + 1000);
        return;
    }
    j->w = w;
    j->ref = ref;
    j->first_seen_ms = now;
    j->next_all = w->all;
    if (w->all)
        w->all->prev_all = j;
    w->all = j;
    w->current = j;
    header_int(km, NUDGEL_HDR_ATTEMPT, &attempts);
    header_int(km, NUDGEL_HDR_FIRST_SEEN, &j->first_seen_ms);
    j->header_attempts = attempts > 0 && attempts < 1000 ? (int)attempts : 0;
    nudgel_message_header(km, NUDGEL_HDR_TRACEPARENT, j->traceparent, sizeof(j->traceparent));

    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t popts = {0};
    if (nudgel_webhook_job_parse(km->payload, km->len, &popts, &j->job, &ferr) != NUDGEL_OK) {
        char reason[400];
        snprintf(reason, sizeof(reason), "%s: %s", ferr.field, ferr.reason);
        malformed(w, j, reason);
        return;
    }
    j->parsed = true;
    if (!j->job.endpoint_id) {
        /* A one-off url job has no signing secret: it cannot be delivered as Standard Webhooks. */
        malformed(w, j,
                  "endpoint_id: one-off url deliveries are not supported (no signing "
                  "secret); register an endpoint");
        return;
    }
    if (index_holds(w, j)) {
        /* The same delivery is already in flight here (a re-delivered copy): that one ends it. */
        nudgel_log_info("webhook job %s: event %s to endpoint %s is already in flight here; "
                        "skipped",
                        j->job.id, j->job.event_id, j->job.endpoint_id);
        j->end = END_NONE;
        job_publish(j);
        return;
    }
    j->stage = STAGE_CLAIM;
    w->claims[w->claim_count++] = j;
}
