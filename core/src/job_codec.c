/*
 * job_codec.c — the codec shared by message and webhook jobs (see
 * job_codec.h): one validator serves producers and workers.
 *
 * canonicalize() (job_message.c, job_webhook.c) scans the raw bytes once
 * (jsonscan.c): syntax and UTF-8 first, then each field in a fixed order,
 * reporting the first field at fault, and writes the canonical bytes (fixed
 * key order, E.164 "to", UTC millisecond timestamps, compact). parse() is
 * canonicalize() followed by loading the canonical bytes with jansson, for
 * code that wants the fields; so the bytes on the topic never depend on how
 * the caller ordered or spaced its JSON, and parse(encode(job)) is the same job.
 * This file holds the scan, the field getters, the canonical writer and the
 * value checks both kinds use.
 */
#define _GNU_SOURCE
#include "job_codec.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/timeutil.h"
#include "nudgel/uuid.h"

#define METADATA_MAX_PROPERTIES 64

nudgel_err_t job_field_error(nudgel_field_error_t *ferr, nudgel_err_t err, const char *field,
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

/* ---- value checks shared by both job kinds ---- */

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

bool job_is_lower_uuid(const char *s)
{
    uint8_t raw[16];
    if (nudgel_uuid_parse(s, raw) != 0)
        return false;
    for (const char *p = s; *p; p++)
        if (isupper((unsigned char)*p))
            return false;
    return true;
}

bool job_matches_charset(const char *s, size_t min, size_t max, const char *extra, bool lower)
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

/* ---- the scan: every top-level member into a slot ---- */

static int spec_index(const field_spec_t *specs, const char *key, size_t key_len)
{
    for (int i = 0; specs[i].name; i++)
        if (strlen(specs[i].name) == key_len && memcmp(specs[i].name, key, key_len) == 0)
            return i;
    return -1;
}

typedef struct member_check {
    field_slot_t *slot;
    bool scalars_only;
} member_check_t;

static int on_member(const char *key, size_t key_len, jsonscan_type_t type, void *opaque)
{
    member_check_t *mc = opaque;
    mc->slot->member_count++;
    if (mc->scalars_only && !mc->slot->bad_member[0] &&
        (type == JSONSCAN_OBJECT || type == JSONSCAN_ARRAY || type == JSONSCAN_NULL))
        snprintf(mc->slot->bad_member, sizeof(mc->slot->bad_member), "%.*s",
                 (int)(key_len < 50 ? key_len : 50), key);
    return 0;
}

/*
 * Scans the top-level object into slots. Syntax errors return
 * NUDGEL_ERR_INVALID_JSON at once; field problems are left in the slots for
 * the validator, which reports them in a fixed order.
 */
nudgel_err_t job_scan_fields(const char *bytes, size_t len, scan_result_t *r,
                             nudgel_field_error_t *ferr)
{
    jsonscan_t s;
    jsonbuf_t discard = {NULL, 0, 0, false};
    size_t n;
    jsonscan_init(&s, bytes, len);
    if (jsonscan_peek(&s) != JSONSCAN_OBJECT)
        return job_field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)",
                               s.error[0] ? "%s" : "a job must be a JSON object", s.error);
    s.p++;
    jsonscan_skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
        goto tail;
    }
    for (;;) {
        char *key = r->strings + r->strings_len;
        if (jsonscan_peek(&s) != JSONSCAN_STRING || jsonscan_string(&s, key, &n) ||
            jsonscan_expect(&s, ':'))
            goto syntax;
        int idx = spec_index(r->specs, key, n);
        int type = jsonscan_peek(&s);
        if (type < 0)
            goto syntax;
        field_slot_t *slot = idx >= 0 ? &r->slots[idx] : NULL;
        if (slot && slot->present && !r->duplicate) {
            r->duplicate = true;
            snprintf(r->duplicate_key, sizeof(r->duplicate_key), "%.60s", key);
        }
        if (!slot && !r->unknown[0])
            snprintf(r->unknown, sizeof(r->unknown), "%.60s", key);
        if (slot) {
            slot->present = true;
            slot->type = type;
        }
        if (slot && type == JSONSCAN_STRING && r->specs[idx].kind == KIND_STRING) {
            char *value = r->strings + r->strings_len;
            if (jsonscan_string(&s, value, &n))
                goto syntax;
            slot->str = value;
            r->strings_len += n + 1;
        } else if (slot && type == JSONSCAN_OBJECT && r->specs[idx].kind == KIND_OBJECT) {
            member_check_t mc = {slot, strcmp(r->specs[idx].name, "variables") == 0};
            slot->nested_off = r->nested.len;
            slot->member_count = 0;
            if (jsonscan_copy_value(&s, &r->nested, r->strings + r->strings_len, on_member, &mc))
                goto syntax;
            slot->nested_len = r->nested.len - slot->nested_off;
        } else {
            /* Unknown key or wrong type: check the syntax, keep nothing. */
            discard.overflow = false;
            if (jsonscan_copy_value(&s, &discard, r->strings + r->strings_len, NULL, NULL))
                goto syntax;
        }
        jsonscan_skip_ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        if (jsonscan_expect(&s, '}'))
            goto syntax;
        break;
    }
tail:
    jsonscan_skip_ws(&s);
    if (s.p != s.end)
        return job_field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)",
                               "unexpected data after the job at byte %zu", jsonscan_column(&s));
    if (r->duplicate)
        return job_field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)", "duplicate key \"%s\"",
                               r->duplicate_key);
    if (r->unknown[0])
        return job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, r->unknown, "unknown field");
    return NUDGEL_OK;
syntax:
    return job_field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)", "%s",
                           s.error[0] ? s.error : "malformed JSON");
}

static const field_slot_t *slot_of(const scan_result_t *r, const char *name)
{
    /* Field names are literals of the job files: equal literals are merged (by the
     * compiler in a file, by the linker across files), so the pointer test almost
     * always decides; strcmp keeps it correct. */
    for (int i = 0; r->specs[i].name; i++)
        if (r->specs[i].name == name)
            return &r->slots[i];
    for (int i = 0; r->specs[i].name; i++)
        if (strcmp(r->specs[i].name, name) == 0)
            return &r->slots[i];
    return NULL;
}

/* An optional (or required) string field; null counts as absent. */
nudgel_err_t job_get_string(const scan_result_t *r, const char *field, bool required,
                            const char **out, nudgel_field_error_t *ferr)
{
    const field_slot_t *slot = slot_of(r, field);
    *out = NULL;
    if (!slot->present || slot->type == JSONSCAN_NULL) {
        if (required)
            return job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "is required");
        return NUDGEL_OK;
    }
    if (slot->type != JSONSCAN_STRING)
        return job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "must be a string");
    *out = slot->str;
    return NUDGEL_OK;
}

nudgel_err_t job_get_object(const scan_result_t *r, const char *field, bool required,
                            const field_slot_t **out, nudgel_field_error_t *ferr)
{
    const field_slot_t *slot = slot_of(r, field);
    *out = NULL;
    if (!slot->present || slot->type == JSONSCAN_NULL) {
        if (required)
            return job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "is required");
        return NUDGEL_OK;
    }
    if (slot->type != JSONSCAN_OBJECT)
        return job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "must be a JSON object");
    *out = slot;
    return NUDGEL_OK;
}

nudgel_err_t job_take_id(const scan_result_t *r, const nudgel_job_parse_opts_t *opts,
                         char out[NUDGEL_UUID_STR_LEN + 1], nudgel_field_error_t *ferr)
{
    const char *id;
    nudgel_err_t err = job_get_string(r, "id", !(opts && opts->fill_defaults), &id, ferr);
    if (err)
        return err;
    if (!id) {
        nudgel_uuid7_string(out);
        return NUDGEL_OK;
    }
    if (!job_is_lower_uuid(id))
        return job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "id",
                               "must be a lower-case UUID (8-4-4-4-12 hex)");
    memcpy(out, id, NUDGEL_UUID_STR_LEN + 1);
    return NUDGEL_OK;
}

nudgel_err_t job_take_tenant(const scan_result_t *r, const char **out, nudgel_field_error_t *ferr)
{
    nudgel_err_t err = job_get_string(r, "tenant_id", true, out, ferr);
    if (err)
        return err;
    if (!nudgel_tenant_id_valid(*out))
        return job_field_error(
            ferr, NUDGEL_ERR_INVALID_FIELD, "tenant_id",
            "must be 1 to 64 of A-Z a-z 0-9 _ - and start with a letter or digit");
    return NUDGEL_OK;
}

nudgel_err_t job_take_time(const scan_result_t *r, const char *field, bool required,
                           int64_t fill_ms, int64_t *out, nudgel_field_error_t *ferr)
{
    const char *text;
    nudgel_err_t err = job_get_string(r, field, required && !fill_ms, &text, ferr);
    *out = 0;
    if (err)
        return err;
    if (!text) {
        *out = fill_ms;
        return NUDGEL_OK;
    }
    if (nudgel_rfc3339_parse(text, out) != 0)
        return job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field,
                               "must be an RFC 3339 date-time such as 2026-01-31T09:30:00Z");
    return NUDGEL_OK;
}

nudgel_err_t job_take_idempotency_key(const scan_result_t *r, const char **out,
                                      nudgel_field_error_t *ferr)
{
    nudgel_err_t err = job_get_string(r, "idempotency_key", false, out, ferr);
    if (err || !*out)
        return err;
    size_t len = strlen(*out);
    if (len == 0 || len > NUDGEL_IDEMPOTENCY_KEY_MAX)
        return job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "idempotency_key",
                               "must be 1 to %d bytes", NUDGEL_IDEMPOTENCY_KEY_MAX);
    return NUDGEL_OK;
}

nudgel_err_t job_take_metadata(const scan_result_t *r, const field_slot_t **out,
                               nudgel_field_error_t *ferr)
{
    nudgel_err_t err = job_get_object(r, "metadata", false, out, ferr);
    if (err || !*out)
        return err;
    if ((*out)->member_count > METADATA_MAX_PROPERTIES)
        return job_field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "metadata",
                               "has more than %d properties", METADATA_MAX_PROPERTIES);
    return NUDGEL_OK;
}

/* ---- writing the canonical document ---- */

static void put_key(jsonbuf_t *b, const char *key)
{
    jsonbuf_putc(b, b->len > 1 ? ',' : '{');
    jsonbuf_putc(b, '"');
    jsonbuf_put(b, key, strlen(key));
    jsonbuf_put(b, "\":", 2);
}

void job_put_string_field(jsonbuf_t *b, const char *key, const char *value)
{
    if (!value)
        return;
    put_key(b, key);
    jsonbuf_put_string(b, value, strlen(value));
}

void job_put_time_field(jsonbuf_t *b, const char *key, int64_t ms)
{
    char text[NUDGEL_RFC3339_MAX];
    if (!ms)
        return;
    nudgel_rfc3339_format(ms, text);
    put_key(b, key);
    jsonbuf_putc(b, '"');
    jsonbuf_put(b, text, strlen(text));
    jsonbuf_putc(b, '"');
}

void job_put_object_field(jsonbuf_t *b, const char *key, const scan_result_t *r,
                          const field_slot_t *slot)
{
    if (!slot)
        return;
    put_key(b, key);
    jsonbuf_put(b, r->nested.data + slot->nested_off, slot->nested_len);
}

nudgel_err_t job_workspace_init(workspace_t *ws, scan_result_t *r, size_t len,
                                nudgel_field_error_t *ferr)
{
    size_t need = 2 * (len + 64);
    char *mem = ws->stack;
    ws->heap = NULL;
    if (need > sizeof(ws->stack)) {
        if (!(ws->heap = malloc(need)))
            return job_field_error(ferr, NUDGEL_ERR_NO_MEMORY, "(job)", "out of memory");
        mem = ws->heap;
    }
    r->strings = mem;
    r->strings_len = 0;
    r->nested.data = mem + len + 64;
    r->nested.len = 0;
    r->nested.cap = len + 64;
    r->nested.overflow = false;
    return NUDGEL_OK;
}

nudgel_err_t job_check_size(const char *bytes, size_t len, const nudgel_job_parse_opts_t *opts,
                            size_t *cap_out, nudgel_field_error_t *ferr)
{
    size_t cap = opts && opts->max_bytes ? opts->max_bytes : NUDGEL_JOB_MAX_BYTES_DEFAULT;
    *cap_out = cap;
    if (!bytes)
        return job_field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)", "no input");
    if (len > cap)
        return job_field_error(ferr, NUDGEL_ERR_TOO_LARGE, "(job)",
                               "job is %zu bytes; the limit is %zu", len, cap);
    return NUDGEL_OK;
}

/* Allocates the output: the input size plus room for what canonicalisation adds. */
nudgel_err_t job_output_init(jsonbuf_t *out, size_t len, const nudgel_job_parse_opts_t *opts,
                             nudgel_field_error_t *ferr)
{
    size_t tail = opts ? opts->reserve_tail : 0;
    out->cap = len + 256;
    out->len = 0;
    out->overflow = false;
    /* The caller's tail starts at the first 16-byte boundary after cap + NUL. */
    if (!(out->data = malloc(((out->cap + 1 + 15) & ~(size_t)15) + tail)))
        return job_field_error(ferr, NUDGEL_ERR_NO_MEMORY, "(job)", "out of memory");
    return NUDGEL_OK;
}

nudgel_err_t job_output_finish(jsonbuf_t *out, size_t cap, nudgel_job_canonical_t *result,
                               nudgel_field_error_t *ferr)
{
    jsonbuf_putc(out, '}');
    if (out->overflow || out->len > cap) {
        free(out->data);
        out->data = NULL;
        return job_field_error(ferr, NUDGEL_ERR_TOO_LARGE, "(job)",
                               "the canonical job exceeds the limit of %zu bytes", cap);
    }
    out->data[out->len] = '\0';
    result->bytes = out->data;
    result->len = out->len;
    result->tail = out->data + ((out->cap + 1 + 15) & ~(size_t)15);
    out->data = NULL;
    return NUDGEL_OK;
}

/* The ids a producer needs for key and headers; lengths were validated. */
void job_set_result_ids(nudgel_job_canonical_t *out, const char *id, const char *tenant,
                        const char *ikey)
{
    size_t tenant_len = strlen(tenant), ikey_len = ikey ? strlen(ikey) : 0;
    memcpy(out->id, id, sizeof(out->id));
    memcpy(out->tenant_id, tenant, tenant_len + 1);
    memcpy(out->idempotency_key, ikey ? ikey : "", ikey_len + 1);
}

/* ---- the document API for workers ---- */

const char *job_str_of(json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

/* Loads canonical bytes (always valid JSON) into a jansson document. */
json_t *job_load_canonical(const nudgel_job_canonical_t *c, nudgel_field_error_t *ferr)
{
    json_error_t jerr;
    json_t *doc = json_loadb(c->bytes, c->len, 0, &jerr);
    if (!doc)
        job_field_error(ferr, NUDGEL_ERR_NO_MEMORY, "(job)", "%s", jerr.text);
    return doc;
}

char *job_encode_doc(json_t *doc, size_t *len_out)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text && len_out)
        *len_out = strlen(text);
    return text;
}
