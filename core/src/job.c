/*
 * job.c — parse, validate and encode message and webhook jobs.
 *
 * Parsing produces a canonical document (fixed key order, E.164 "to",
 * RFC 3339 UTC timestamps), which is what encoding writes: the bytes on the
 * topic do not depend on how the caller ordered or spaced its JSON.
 */
#define _GNU_SOURCE
#include "nudgel/job.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nudgel/timeutil.h"
#include "nudgel/uuid.h"

#define METADATA_MAX_PROPERTIES 64
#define EVENT_ID_MAX            128
#define URL_MAX                 2048

static nudgel_err_t field_error(nudgel_field_error_t *ferr, nudgel_err_t err, const char *field,
                                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static nudgel_err_t field_error(nudgel_field_error_t *ferr, nudgel_err_t err, const char *field,
                                const char *fmt, ...)
{
    va_list ap;
    if (!ferr)
        return err;
    snprintf(ferr->field, sizeof(ferr->field), "%s", field);
    va_start(ap, fmt);
    vsnprintf(ferr->reason, sizeof(ferr->reason), fmt, ap);
    va_end(ap);
    return err;
}

bool nudgel_tenant_id_valid(const char *tenant_id)
{
    size_t len = tenant_id ? strlen(tenant_id) : 0;
    if (len == 0 || len > NUDGEL_TENANT_ID_MAX || !isalnum((unsigned char)tenant_id[0]))
        return false;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)tenant_id[i];
        if (!isalnum(c) && c != '_' && c != '-')
            return false;
    }
    return true;
}

static bool is_lower_uuid(const char *s)
{
    uint8_t raw[16];
    if (nudgel_uuid_parse(s, raw) != 0)
        return false;
    for (const char *p = s; *p; p++)
        if (isupper((unsigned char)*p))
            return false;
    return true;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

static bool matches_charset(const char *s, size_t min, size_t max, const char *extra, bool lower)
{
    size_t len = strlen(s);
    if (len < min || len > max)
        return false;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = lower ? (islower(c) || isdigit(c)) : isalnum(c);
        if (!ok && !strchr(extra, c))
            return false;
    }
    return true;
}

/* Parses bytes to a JSON object with the common size/JSON checks. */
static nudgel_err_t load_object(const char *bytes, size_t len, const nudgel_job_parse_opts_t *opts,
                                json_t **out, nudgel_field_error_t *ferr)
{
    size_t cap = opts && opts->max_bytes ? opts->max_bytes : NUDGEL_JOB_MAX_BYTES_DEFAULT;
    json_error_t jerr;
    *out = NULL;
    if (len > cap)
        return field_error(ferr, NUDGEL_ERR_TOO_LARGE, "(job)",
                           "job is %zu bytes; the limit is %zu", len, cap);
    json_t *root = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)", "column %d: %s", jerr.column,
                           jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)", "a job must be a JSON object");
    }
    *out = root;
    return NUDGEL_OK;
}

static nudgel_err_t check_known_fields(json_t *root, const char *const *known,
                                       nudgel_field_error_t *ferr)
{
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        bool found = false;
        for (size_t i = 0; known[i] && !found; i++)
            found = strcmp(known[i], key) == 0;
        if (!found)
            return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, key, "unknown field");
    }
    return NUDGEL_OK;
}

/* Fetches an optional string field; wrong type is an error. */
static nudgel_err_t get_string(json_t *root, const char *field, bool required, const char **out,
                               nudgel_field_error_t *ferr)
{
    json_t *v = json_object_get(root, field);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "is required");
        return NUDGEL_OK;
    }
    if (!json_is_string(v))
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "must be a string");
    *out = json_string_value(v);
    return NUDGEL_OK;
}

static nudgel_err_t get_object(json_t *root, const char *field, json_t **out,
                               nudgel_field_error_t *ferr)
{
    json_t *v = json_object_get(root, field);
    *out = NULL;
    if (!v || json_is_null(v))
        return NUDGEL_OK;
    if (!json_is_object(v))
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "must be a JSON object");
    *out = v;
    return NUDGEL_OK;
}

/* id: a UUID, or a new UUIDv7 when allowed. Writes the lower-case form to @p out. */
static nudgel_err_t take_id(json_t *root, const nudgel_job_parse_opts_t *opts,
                            char out[NUDGEL_UUID_STR_LEN + 1], nudgel_field_error_t *ferr)
{
    const char *id;
    nudgel_err_t err = get_string(root, "id", !(opts && opts->fill_defaults), &id, ferr);
    if (err)
        return err;
    if (!id) {
        nudgel_uuid7_string(out);
        return NUDGEL_OK;
    }
    if (!is_lower_uuid(id))
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "id",
                           "must be a lower-case UUID (8-4-4-4-12 hex)");
    snprintf(out, NUDGEL_UUID_STR_LEN + 1, "%s", id);
    return NUDGEL_OK;
}

static nudgel_err_t take_tenant(json_t *root, const char **out, nudgel_field_error_t *ferr)
{
    nudgel_err_t err = get_string(root, "tenant_id", true, out, ferr);
    if (err)
        return err;
    if (!nudgel_tenant_id_valid(*out))
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "tenant_id",
                           "must be 1 to 64 of A-Z a-z 0-9 _ - and start with a letter or digit");
    return NUDGEL_OK;
}

static nudgel_err_t take_time(json_t *root, const char *field, bool required, int64_t fill_ms,
                              int64_t *out, nudgel_field_error_t *ferr)
{
    const char *text;
    nudgel_err_t err = get_string(root, field, required && !fill_ms, &text, ferr);
    *out = 0;
    if (err)
        return err;
    if (!text) {
        *out = fill_ms;
        return NUDGEL_OK;
    }
    if (nudgel_rfc3339_parse(text, out) != 0)
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field,
                           "must be an RFC 3339 date-time such as 2026-01-31T09:30:00Z");
    return NUDGEL_OK;
}

static nudgel_err_t take_idempotency_key(json_t *root, const char **out, nudgel_field_error_t *ferr)
{
    nudgel_err_t err = get_string(root, "idempotency_key", false, out, ferr);
    if (err || !*out)
        return err;
    size_t len = strlen(*out);
    if (len == 0 || len > NUDGEL_IDEMPOTENCY_KEY_MAX)
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "idempotency_key",
                           "must be 1 to %d bytes", NUDGEL_IDEMPOTENCY_KEY_MAX);
    return NUDGEL_OK;
}

static nudgel_err_t take_metadata(json_t *root, json_t **out, nudgel_field_error_t *ferr)
{
    nudgel_err_t err = get_object(root, "metadata", out, ferr);
    if (err || !*out)
        return err;
    if (json_object_size(*out) > METADATA_MAX_PROPERTIES)
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "metadata",
                           "has more than %d properties", METADATA_MAX_PROPERTIES);
    return NUDGEL_OK;
}

static int set_string(json_t *doc, const char *key, const char *value)
{
    return value ? json_object_set_new(doc, key, json_string(value)) : 0;
}

static int set_time(json_t *doc, const char *key, int64_t ms)
{
    char text[NUDGEL_RFC3339_MAX];
    if (!ms)
        return 0;
    nudgel_rfc3339_format(ms, text);
    return json_object_set_new(doc, key, json_string(text));
}

static const char *str_of(json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

/* ---- message jobs ---- */

static bool sender_id_valid(const char *from)
{
    const char *digits = from[0] == '+' ? from + 1 : from;
    bool numeric = *digits != '\0';
    for (const char *p = digits; *p; p++)
        numeric = numeric && isdigit((unsigned char)*p);
    if (numeric)
        return strlen(digits) >= 3 && strlen(digits) <= 15;
    return from[0] != '+' && matches_charset(from, 1, 11, " ._-", false);
}

static nudgel_err_t validate_variables(json_t *variables, nudgel_field_error_t *ferr)
{
    const char *name;
    json_t *value;
    json_object_foreach(variables, name, value)
    {
        if (!json_is_string(value) && !json_is_number(value) && !json_is_boolean(value)) {
            char field[64];
            snprintf(field, sizeof(field), "variables.%.50s", name);
            return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field,
                               "must be a string, number or boolean");
        }
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_message_job_parse(const char *bytes, size_t len,
                                      const nudgel_job_parse_opts_t *opts,
                                      nudgel_message_job_t *job, nudgel_field_error_t *ferr)
{
    static const char *const known[] = {
        "id",         "tenant_id", "channel", "to",        "country",         "from",
        "body",       "template",  "locale",  "variables", "idempotency_key", "created_at",
        "expires_at", "metadata",  NULL};
    json_t *root = NULL, *doc = NULL, *variables, *metadata;
    const char *tenant, *channel, *to, *country, *from, *body, *template_name, *locale, *ikey;
    char id[NUDGEL_UUID_STR_LEN + 1];
    int64_t created_ms, expires_ms;
    int64_t now = opts && opts->now_ms ? opts->now_ms : 0;
    nudgel_phone_t phone;
    nudgel_err_t err;

    memset(job, 0, sizeof(*job));
    memset(&phone, 0, sizeof(phone));
    if ((err = load_object(bytes, len, opts, &root, ferr)))
        return err;
    if ((err = check_known_fields(root, known, ferr)) || (err = take_id(root, opts, id, ferr)) ||
        (err = take_tenant(root, &tenant, ferr)) ||
        (err = get_string(root, "channel", true, &channel, ferr)))
        goto out;
    if (strcmp(channel, "sms") != 0) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "channel",
                          "unsupported channel \"%.32s\" (supported: sms)", channel);
        goto out;
    }
    if ((err = get_string(root, "to", true, &to, ferr)) ||
        (err = get_string(root, "country", false, &country, ferr)))
        goto out;
    if (country && !(strlen(country) == 2 && isupper((unsigned char)country[0]) &&
                     isupper((unsigned char)country[1]))) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "country",
                          "must be an ISO 3166-1 alpha-2 code such as KE");
        goto out;
    }
    if (opts && opts->normalise_to) {
        char reason[200];
        const char *hint = country ? country : opts->default_country;
        if (nudgel_phone_normalise(to, hint, &phone, reason, sizeof(reason)) != NUDGEL_OK) {
            err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "to", "%s", reason);
            goto out;
        }
    } else if (strlen(to) < 3 || strlen(to) > 32) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "to", "must be 3 to 32 characters");
        goto out;
    }
    if ((err = get_string(root, "from", false, &from, ferr)))
        goto out;
    if (from && !sender_id_valid(from)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "from",
                          "must be an alphanumeric sender id of 1 to 11 characters or a number "
                          "of 3 to 15 digits");
        goto out;
    }
    if ((err = get_string(root, "body", false, &body, ferr)) ||
        (err = get_string(root, "template", false, &template_name, ferr)) ||
        (err = get_string(root, "locale", false, &locale, ferr)) ||
        (err = get_object(root, "variables", &variables, ferr)))
        goto out;
    if (body && template_name) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "body",
                          "give either body or template, not both");
        goto out;
    }
    if (!body && !template_name) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "body",
                          "one of body or template is required");
        goto out;
    }
    if (body && (body[0] == '\0' || utf8_chars(body) > NUDGEL_BODY_MAX_CHARS)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "body", "must be 1 to %d characters",
                          NUDGEL_BODY_MAX_CHARS);
        goto out;
    }
    if (template_name && !matches_charset(template_name, 1, 64, "_.-", true)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "template",
                          "must be 1 to 64 of a-z 0-9 _ . -");
        goto out;
    }
    if (!template_name && (variables || locale)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, variables ? "variables" : "locale",
                          "is only allowed with template");
        goto out;
    }
    if (locale && !matches_charset(locale, 2, 35, "-", false)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "locale",
                          "must be a language tag such as en or sw-KE");
        goto out;
    }
    if (variables && (err = validate_variables(variables, ferr)))
        goto out;
    if ((err = take_idempotency_key(root, &ikey, ferr)))
        goto out;
    int64_t fill = opts && opts->fill_defaults ? (now ? now : nudgel_now_unix_ms()) : 0;
    if ((err = take_time(root, "created_at", true, fill, &created_ms, ferr)) ||
        (err = take_time(root, "expires_at", false, 0, &expires_ms, ferr)) ||
        (err = take_metadata(root, &metadata, ferr)))
        goto out;
    if (expires_ms && expires_ms <= created_ms) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "expires_at", "must be after created_at");
        goto out;
    }

    doc = json_object();
    if (!doc || set_string(doc, "id", id) || set_string(doc, "tenant_id", tenant) ||
        set_string(doc, "channel", channel) ||
        set_string(doc, "to", phone.e164[0] ? phone.e164 : to) ||
        set_string(doc, "country", country) || set_string(doc, "from", from) ||
        set_string(doc, "body", body) || set_string(doc, "template", template_name) ||
        set_string(doc, "locale", locale) ||
        (variables && json_object_set(doc, "variables", variables)) ||
        set_string(doc, "idempotency_key", ikey) || set_time(doc, "created_at", created_ms) ||
        set_time(doc, "expires_at", expires_ms) ||
        (metadata && json_object_set(doc, "metadata", metadata))) {
        err = field_error(ferr, NUDGEL_ERR_NO_MEMORY, "(job)", "out of memory");
        goto out;
    }
    job->doc = doc;
    doc = NULL;
    job->id = str_of(job->doc, "id");
    job->tenant_id = str_of(job->doc, "tenant_id");
    job->channel = str_of(job->doc, "channel");
    job->to = str_of(job->doc, "to");
    job->country = str_of(job->doc, "country");
    job->from = str_of(job->doc, "from");
    job->body = str_of(job->doc, "body");
    job->template_name = str_of(job->doc, "template");
    job->locale = str_of(job->doc, "locale");
    job->variables = json_object_get(job->doc, "variables");
    job->idempotency_key = str_of(job->doc, "idempotency_key");
    job->created_at_ms = created_ms;
    job->expires_at_ms = expires_ms;
    job->metadata = json_object_get(job->doc, "metadata");
    job->phone = phone;
out:
    json_decref(doc);
    json_decref(root);
    return err;
}

char *nudgel_message_job_encode(const nudgel_message_job_t *job, size_t *len_out)
{
    char *text = job && job->doc ? json_dumps(job->doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text && len_out)
        *len_out = strlen(text);
    return text;
}

void nudgel_message_job_clear(nudgel_message_job_t *job)
{
    if (!job)
        return;
    json_decref(job->doc);
    memset(job, 0, sizeof(*job));
}

/* ---- webhook jobs ---- */

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

nudgel_err_t nudgel_webhook_job_parse(const char *bytes, size_t len,
                                      const nudgel_job_parse_opts_t *opts,
                                      nudgel_webhook_job_t *job, nudgel_field_error_t *ferr)
{
    static const char *const known[] = {"id",         "tenant_id", "endpoint_id", "url",
                                        "event_type", "event_id",  "payload",     "idempotency_key",
                                        "created_at", "metadata",  NULL};
    json_t *root = NULL, *doc = NULL, *payload, *metadata;
    const char *tenant, *endpoint_id, *url, *event_type, *event_id, *ikey;
    char id[NUDGEL_UUID_STR_LEN + 1];
    int64_t created_ms;
    int64_t now = opts && opts->now_ms ? opts->now_ms : 0;
    nudgel_err_t err;

    memset(job, 0, sizeof(*job));
    if ((err = load_object(bytes, len, opts, &root, ferr)))
        return err;
    if ((err = check_known_fields(root, known, ferr)) || (err = take_id(root, opts, id, ferr)) ||
        (err = take_tenant(root, &tenant, ferr)) ||
        (err = get_string(root, "endpoint_id", false, &endpoint_id, ferr)) ||
        (err = get_string(root, "url", false, &url, ferr)))
        goto out;
    if (endpoint_id && url) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "endpoint_id",
                          "give either endpoint_id or url, not both");
        goto out;
    }
    if (!endpoint_id && !url) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "endpoint_id",
                          "one of endpoint_id or url is required");
        goto out;
    }
    if (endpoint_id && !is_lower_uuid(endpoint_id)) {
        err =
            field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "endpoint_id", "must be a lower-case UUID");
        goto out;
    }
    if (url && ((strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) ||
                strlen(url) > URL_MAX || strpbrk(url, " \t\r\n"))) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "url",
                          "must be an http(s) URL of at most %d bytes without spaces", URL_MAX);
        goto out;
    }
    if ((err = get_string(root, "event_type", true, &event_type, ferr)))
        goto out;
    if (!event_type_valid(event_type)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "event_type",
                          "must be dotted lower-case words such as message.delivered");
        goto out;
    }
    if ((err = get_string(root, "event_id", true, &event_id, ferr)))
        goto out;
    if (!matches_charset(event_id, 1, EVENT_ID_MAX, "_.:-", false)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "event_id",
                          "must be 1 to %d of A-Z a-z 0-9 _ . : -", EVENT_ID_MAX);
        goto out;
    }
    if ((err = get_object(root, "payload", &payload, ferr)))
        goto out;
    if (!payload) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "payload", "is required");
        goto out;
    }
    int64_t fill = opts && opts->fill_defaults ? (now ? now : nudgel_now_unix_ms()) : 0;
    if ((err = take_idempotency_key(root, &ikey, ferr)) ||
        (err = take_time(root, "created_at", true, fill, &created_ms, ferr)) ||
        (err = take_metadata(root, &metadata, ferr)))
        goto out;

    doc = json_object();
    if (!doc || set_string(doc, "id", id) || set_string(doc, "tenant_id", tenant) ||
        set_string(doc, "endpoint_id", endpoint_id) || set_string(doc, "url", url) ||
        set_string(doc, "event_type", event_type) || set_string(doc, "event_id", event_id) ||
        json_object_set(doc, "payload", payload) || set_string(doc, "idempotency_key", ikey) ||
        set_time(doc, "created_at", created_ms) ||
        (metadata && json_object_set(doc, "metadata", metadata))) {
        err = field_error(ferr, NUDGEL_ERR_NO_MEMORY, "(job)", "out of memory");
        goto out;
    }
    job->doc = doc;
    doc = NULL;
    job->id = str_of(job->doc, "id");
    job->tenant_id = str_of(job->doc, "tenant_id");
    job->endpoint_id = str_of(job->doc, "endpoint_id");
    job->url = str_of(job->doc, "url");
    job->event_type = str_of(job->doc, "event_type");
    job->event_id = str_of(job->doc, "event_id");
    job->payload = json_object_get(job->doc, "payload");
    job->idempotency_key = str_of(job->doc, "idempotency_key");
    job->created_at_ms = created_ms;
    job->metadata = json_object_get(job->doc, "metadata");
out:
    json_decref(doc);
    json_decref(root);
    return err;
}

char *nudgel_webhook_job_encode(const nudgel_webhook_job_t *job, size_t *len_out)
{
    char *text = job && job->doc ? json_dumps(job->doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text && len_out)
        *len_out = strlen(text);
    return text;
}

void nudgel_webhook_job_clear(nudgel_webhook_job_t *job)
{
    if (!job)
        return;
    json_decref(job->doc);
    memset(job, 0, sizeof(*job));
}
