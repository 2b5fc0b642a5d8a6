/*
 * job_webhook.c — webhook jobs (nudgel/job.h): their fields and rules
 * (schemas/webhook.job.v1.schema.json), checked in a fixed order so the
 * first field at fault is the one reported, their canonical bytes, and the
 * jansson document API for workers. The scan, the field getters and the
 * canonical writer are job_codec.c.
 */
#define _GNU_SOURCE
#include "nudgel/job.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "job_codec.h"
#include "nudgel/timeutil.h"

#define EVENT_ID_MAX 128
#define URL_MAX      2048

static bool event_type_valid(const char *s)
{
    /* ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$ */
    int dots = 0;
    bool start = true;
    size_t len = strlen(s);
    if (len == 0 || len > 128)
        return false;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (start) {
            if (!islower(c))
                return false;
            start = false;
        } else if (c == '.') {
            dots++;
            start = true;
        } else if (!islower(c) && !isdigit(c) && c != '_') {
            return false;
        }
    }
    return !start && dots > 0;
}

/* ---- webhook jobs ---- */

static const field_spec_t webhook_fields[] = {
    {"id", KIND_STRING},          {"tenant_id", KIND_STRING},
    {"endpoint_id", KIND_STRING}, {"url", KIND_STRING},
    {"event_type", KIND_STRING},  {"event_id", KIND_STRING},
    {"payload", KIND_OBJECT},     {"idempotency_key", KIND_STRING},
    {"created_at", KIND_STRING},  {"metadata", KIND_OBJECT},
    {NULL, KIND_STRING},
};

nudgel_err_t nudgel_webhook_job_canonicalize(const char *bytes, size_t len,
                                             const nudgel_job_parse_opts_t *opts,
                                             nudgel_job_canonical_t *out,
                                             nudgel_field_error_t *ferr)
{
    workspace_t ws;
    scan_result_t r;
    jsonbuf_t doc = {NULL, 0, 0, false};
    const char *tenant, *endpoint_id, *url, *event_type, *event_id, *ikey;
    const field_slot_t *payload, *metadata;
    char id[NUDGEL_UUID_STR_LEN + 1];
    int64_t created_ms;
    size_t cap;
    nudgel_err_t err;

    memset(out, 0, sizeof(*out));
    if ((err = job_check_size(bytes, len, opts, &cap, ferr)))
        return err;
    memset(&r, 0, offsetof(scan_result_t, nested));
    r.specs = webhook_fields;
    if ((err = job_workspace_init(&ws, &r, len, ferr)))
        return err;
    if ((err = job_scan_fields(bytes, len, &r, ferr)) || (err = job_take_id(&r, opts, id, ferr)) ||
        (err = job_take_tenant(&r, &tenant, ferr)) ||
        (err = job_get_string(&r, "endpoint_id", false, &endpoint_id, ferr)) ||
        (err = job_get_string(&r, "url", false, &url, ferr)))
        goto out;
    if (endpoint_id && url) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "endpoint_id",
                              "give either endpoint_id or url, not both");
        goto out;
    }
    if (!endpoint_id && !url) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "endpoint_id",
                              "one of endpoint_id or url is required");
        goto out;
    }
    if (endpoint_id && !job_is_lower_uuid(endpoint_id)) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "endpoint_id",
                              "must be a lower-case UUID");
        goto out;
    }
    if (url && ((strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) ||
                strlen(url) > URL_MAX || strpbrk(url, " \t\r\n"))) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "url",
                              "must be an http(s) URL of at most %d bytes without spaces", URL_MAX);
        goto out;
    }
    if ((err = job_get_string(&r, "event_type", true, &event_type, ferr)))
        goto out;
    if (!event_type_valid(event_type)) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "event_type",
                              "must be dotted lower-case words such as message.delivered");
        goto out;
    }
    if ((err = job_get_string(&r, "event_id", true, &event_id, ferr)))
        goto out;
    /* It is the webhook-id, which Standard Webhooks forbids to contain '.' (the signed
     * content is "id.timestamp.body"). */
    if (!job_matches_charset(event_id, 1, EVENT_ID_MAX, "_:-", false)) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "event_id",
                              "must be 1 to %d of A-Z a-z 0-9 _ : - (no '.': it is the "
                              "webhook-id)",
                              EVENT_ID_MAX);
        goto out;
    }
    int64_t now = opts && opts->now_ms ? opts->now_ms : 0;
    int64_t fill = opts && opts->fill_defaults ? (now ? now : nudgel_now_unix_ms()) : 0;
    if ((err = job_get_object(&r, "payload", true, &payload, ferr)) ||
        (err = job_take_idempotency_key(&r, &ikey, ferr)) ||
        (err = job_take_time(&r, "created_at", true, fill, &created_ms, ferr)) ||
        (err = job_take_metadata(&r, &metadata, ferr)))
        goto out;

    if ((err = job_output_init(&doc, len, opts, ferr)))
        goto out;
    job_put_string_field(&doc, "id", id);
    job_put_string_field(&doc, "tenant_id", tenant);
    job_put_string_field(&doc, "endpoint_id", endpoint_id);
    job_put_string_field(&doc, "url", url);
    job_put_string_field(&doc, "event_type", event_type);
    job_put_string_field(&doc, "event_id", event_id);
    job_put_object_field(&doc, "payload", &r, payload);
    job_put_string_field(&doc, "idempotency_key", ikey);
    job_put_time_field(&doc, "created_at", created_ms);
    job_put_object_field(&doc, "metadata", &r, metadata);
    if ((err = job_output_finish(&doc, cap, out, ferr)))
        goto out;
    job_set_result_ids(out, id, tenant, ikey);
out:
    free(doc.data);
    free(ws.heap);
    return err;
}

nudgel_err_t nudgel_webhook_job_parse(const char *bytes, size_t len,
                                      const nudgel_job_parse_opts_t *opts,
                                      nudgel_webhook_job_t *job, nudgel_field_error_t *ferr)
{
    nudgel_job_canonical_t c;
    memset(job, 0, sizeof(*job));
    nudgel_err_t err = nudgel_webhook_job_canonicalize(bytes, len, opts, &c, ferr);
    if (err)
        return err;
    job->doc = job_load_canonical(&c, ferr);
    free(c.bytes);
    if (!job->doc)
        return NUDGEL_ERR_NO_MEMORY;
    int64_t ms;
    job->id = job_str_of(job->doc, "id");
    job->tenant_id = job_str_of(job->doc, "tenant_id");
    job->endpoint_id = job_str_of(job->doc, "endpoint_id");
    job->url = job_str_of(job->doc, "url");
    job->event_type = job_str_of(job->doc, "event_type");
    job->event_id = job_str_of(job->doc, "event_id");
    job->payload = json_object_get(job->doc, "payload");
    job->idempotency_key = job_str_of(job->doc, "idempotency_key");
    job->created_at_ms =
        nudgel_rfc3339_parse(job_str_of(job->doc, "created_at"), &ms) == 0 ? ms : 0;
    job->metadata = json_object_get(job->doc, "metadata");
    return NUDGEL_OK;
}

char *nudgel_webhook_job_encode(const nudgel_webhook_job_t *job, size_t *len_out)
{
    return job ? job_encode_doc(job->doc, len_out) : NULL;
}

void nudgel_webhook_job_clear(nudgel_webhook_job_t *job)
{
    if (!job)
        return;
    json_decref(job->doc);
    memset(job, 0, sizeof(*job));
}
