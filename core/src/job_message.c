/*
 * job_message.c — message jobs (nudgel/job.h): their fields and rules
 * (schemas/message.job.v1.schema.json), checked in a fixed order so the
 * first field at fault is the one reported, their canonical bytes, and the
 * jansson document API for workers. The scan, the field getters and the
 * canonical writer are job_codec.c.
 */
#define _GNU_SOURCE
#include "nudgel/job.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job_codec.h"
#include "nudgel/timeutil.h"

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

static bool sender_id_valid(const char *from)
{
    const char *digits = from[0] == '+' ? from + 1 : from;
    bool numeric = *digits != '\0';
    for (const char *p = digits; *p; p++)
        numeric = numeric && isdigit((unsigned char)*p);
    if (numeric)
        return strlen(digits) >= 3 && strlen(digits) <= 15;
    return from[0] != '+' && job_matches_charset(from, 1, 11, " ._-", false);
}

/* ---- message jobs ---- */

static const field_spec_t message_fields[] = {
    {"id", KIND_STRING},         {"tenant_id", KIND_STRING},       {"channel", KIND_STRING},
    {"to", KIND_STRING},         {"country", KIND_STRING},         {"from", KIND_STRING},
    {"body", KIND_STRING},       {"template", KIND_STRING},        {"locale", KIND_STRING},
    {"variables", KIND_OBJECT},  {"idempotency_key", KIND_STRING}, {"created_at", KIND_STRING},
    {"expires_at", KIND_STRING}, {"metadata", KIND_OBJECT},        {NULL, KIND_STRING},
};

nudgel_err_t nudgel_message_job_canonicalize(const char *bytes, size_t len,
                                             const nudgel_job_parse_opts_t *opts,
                                             nudgel_job_canonical_t *out,
                                             nudgel_field_error_t *ferr)
{
    workspace_t ws;
    scan_result_t r;
    jsonbuf_t doc = {NULL, 0, 0, false};
    const char *tenant, *channel, *to, *country, *from, *body, *template_name, *locale, *ikey;
    const field_slot_t *variables, *metadata;
    char id[NUDGEL_UUID_STR_LEN + 1];
    int64_t created_ms, expires_ms;
    size_t cap;
    nudgel_err_t err;

    memset(out, 0, sizeof(*out));
    if ((err = job_check_size(bytes, len, opts, &cap, ferr)))
        return err;
    memset(&r, 0, offsetof(scan_result_t, nested));
    r.specs = message_fields;
    if ((err = job_workspace_init(&ws, &r, len, ferr)))
        return err;
    if ((err = job_scan_fields(bytes, len, &r, ferr)) || (err = job_take_id(&r, opts, id, ferr)) ||
        (err = job_take_tenant(&r, &tenant, ferr)) ||
        (err = job_get_string(&r, "channel", true, &channel, ferr)))
        goto out;
    if (strcmp(channel, "sms") != 0) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "channel",
                              "unsupported channel \"%.32s\" (supported: sms)", channel);
        goto out;
    }
    if ((err = job_get_string(&r, "to", true, &to, ferr)) ||
        (err = job_get_string(&r, "country", false, &country, ferr)))
        goto out;
    if (country && !(strlen(country) == 2 && isupper((unsigned char)country[0]) &&
                     isupper((unsigned char)country[1]))) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "country",
                              "must be an ISO 3166-1 alpha-2 code such as KE");
        goto out;
    }
    if (opts && opts->normalise_to) {
        char reason[200];
        const char *hint = country ? country : opts->default_country;
        if (nudgel_phone_normalise(to, hint, &out->phone, reason, sizeof(reason)) != NUDGEL_OK) {
            err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "to", "%s", reason);
            goto out;
        }
        to = out->phone.e164;
    } else if (strlen(to) < 3 || strlen(to) > 32) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "to", "must be 3 to 32 characters");
        goto out;
    }
    if ((err = job_get_string(&r, "from", false, &from, ferr)))
        goto out;
    if (from && !sender_id_valid(from)) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "from",
                              "must be an alphanumeric sender id of 1 to 11 characters or a number "
                              "of 3 to 15 digits");
        goto out;
    }
    if ((err = job_get_string(&r, "body", false, &body, ferr)) ||
        (err = job_get_string(&r, "template", false, &template_name, ferr)) ||
        (err = job_get_string(&r, "locale", false, &locale, ferr)) ||
        (err = job_get_object(&r, "variables", false, &variables, ferr)))
        goto out;
    if (body && template_name) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "body",
                              "give either body or template, not both");
        goto out;
    }
    if (!body && !template_name) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "body",
                              "one of body or template is required");
        goto out;
    }
    if (body && (body[0] == '\0' || utf8_chars(body) > NUDGEL_BODY_MAX_CHARS)) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "body", "must be 1 to %d characters",
                              NUDGEL_BODY_MAX_CHARS);
        goto out;
    }
    if (template_name && !job_matches_charset(template_name, 1, 64, "_.-", true)) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "template",
                              "must be 1 to 64 of a-z 0-9 _ . -");
        goto out;
    }
    if (!template_name && (variables || locale)) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, variables ? "variables" : "locale",
                              "is only allowed with template");
        goto out;
    }
    if (locale && !job_matches_charset(locale, 2, 35, "-", false)) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "locale",
                              "must be a language tag such as en or sw-KE");
        goto out;
    }
    if (variables && variables->bad_member[0]) {
        char field[64];
        snprintf(field, sizeof(field), "variables.%.50s", variables->bad_member);
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field,
                              "must be a string, number or boolean");
        goto out;
    }
    if ((err = job_take_idempotency_key(&r, &ikey, ferr)))
        goto out;
    int64_t now = opts && opts->now_ms ? opts->now_ms : 0;
    int64_t fill = opts && opts->fill_defaults ? (now ? now : nudgel_now_unix_ms()) : 0;
    if ((err = job_take_time(&r, "created_at", true, fill, &created_ms, ferr)) ||
        (err = job_take_time(&r, "expires_at", false, 0, &expires_ms, ferr)) ||
        (err = job_take_metadata(&r, &metadata, ferr)))
        goto out;
    if (expires_ms && expires_ms <= created_ms) {
        err = job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "expires_at",
                              "must be after created_at");
        goto out;
    }

    if ((err = job_output_init(&doc, len, opts, ferr)))
        goto out;
    job_put_string_field(&doc, "id", id);
    job_put_string_field(&doc, "tenant_id", tenant);
    job_put_string_field(&doc, "channel", channel);
    job_put_string_field(&doc, "to", to);
    job_put_string_field(&doc, "country", country);
    job_put_string_field(&doc, "from", from);
    job_put_string_field(&doc, "body", body);
    job_put_string_field(&doc, "template", template_name);
    job_put_string_field(&doc, "locale", locale);
    job_put_object_field(&doc, "variables", &r, variables);
    job_put_string_field(&doc, "idempotency_key", ikey);
    job_put_time_field(&doc, "created_at", created_ms);
    job_put_time_field(&doc, "expires_at", expires_ms);
    job_put_object_field(&doc, "metadata", &r, metadata);
    if ((err = job_output_finish(&doc, cap, out, ferr)))
        goto out;
    job_set_result_ids(out, id, tenant, ikey);
out:
    free(doc.data);
    free(ws.heap);
    return err;
}

nudgel_err_t nudgel_message_job_parse(const char *bytes, size_t len,
                                      const nudgel_job_parse_opts_t *opts,
                                      nudgel_message_job_t *job, nudgel_field_error_t *ferr)
{
    nudgel_job_canonical_t c;
    memset(job, 0, sizeof(*job));
    nudgel_err_t err = nudgel_message_job_canonicalize(bytes, len, opts, &c, ferr);
    if (err)
        return err;
    job->doc = job_load_canonical(&c, ferr);
    free(c.bytes);
    if (!job->doc)
        return NUDGEL_ERR_NO_MEMORY;
    int64_t ms;
    job->id = job_str_of(job->doc, "id");
    job->tenant_id = job_str_of(job->doc, "tenant_id");
    job->channel = job_str_of(job->doc, "channel");
    job->to = job_str_of(job->doc, "to");
    job->country = job_str_of(job->doc, "country");
    job->from = job_str_of(job->doc, "from");
    job->body = job_str_of(job->doc, "body");
    job->template_name = job_str_of(job->doc, "template");
    job->locale = job_str_of(job->doc, "locale");
    job->variables = json_object_get(job->doc, "variables");
    job->idempotency_key = job_str_of(job->doc, "idempotency_key");
    job->created_at_ms =
        nudgel_rfc3339_parse(job_str_of(job->doc, "created_at"), &ms) == 0 ? ms : 0;
    job->expires_at_ms =
        nudgel_rfc3339_parse(job_str_of(job->doc, "expires_at"), &ms) == 0 ? ms : 0;
    job->metadata = json_object_get(job->doc, "metadata");
    job->phone = c.phone;
    return NUDGEL_OK;
}

char *nudgel_message_job_encode(const nudgel_message_job_t *job, size_t *len_out)
{
    return job ? job_encode_doc(job->doc, len_out) : NULL;
}

void nudgel_message_job_clear(nudgel_message_job_t *job)
{
    if (!job)
        return;
    json_decref(job->doc);
    memset(job, 0, sizeof(*job));
}
