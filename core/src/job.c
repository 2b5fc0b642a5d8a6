/*
 * job.c — validate and canonicalise message and webhook jobs.
 *
 * One validator serves producers and workers. canonicalize() scans the raw
 * bytes once (jsonscan.c): syntax and UTF-8 first, then each field in a fixed
 * order, reporting the first field at fault, and writes the canonical bytes
 * (fixed key order, E.164 "to", UTC millisecond timestamps, compact). parse()
 * is canonicalize() followed by loading the canonical bytes with jansson, for
 * code that wants the fields; so the bytes on the topic never depend on how
 * the caller ordered or spaced its JSON, and parse(encode(job)) is the same job.
 */
#define _GNU_SOURCE
#include "nudgel/job.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"
#include "nudgel/timeutil.h"
#include "nudgel/uuid.h"

#define METADATA_MAX_PROPERTIES 64
#define EVENT_ID_MAX            128
#define URL_MAX                 2048
#define MAX_FIELDS              16
#define STACK_SCRATCH           16384

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

/* ---- the scan: every top-level member into a slot ---- */

typedef enum field_kind { KIND_STRING, KIND_OBJECT } field_kind_t;

typedef struct field_spec {
    const char *name;
    field_kind_t kind;
} field_spec_t;

typedef struct field_slot {
    bool present;      /* the key appeared (possibly with null) */
    int type;          /* jsonscan_type_t of its value */
    const char *str;   /* KIND_STRING: decoded, NUL-terminated */
    size_t nested_off; /* KIND_OBJECT: canonical copy in the nested buffer */
    size_t nested_len;
    size_t member_count; /* KIND_OBJECT: members at its top level */
    char bad_member[64]; /* KIND_OBJECT "variables": first member of a non-scalar type */
} field_slot_t;

typedef struct scan_result {
    const field_spec_t *specs;
    field_slot_t slots[MAX_FIELDS];
    char unknown[64]; /* first unknown key */
    bool duplicate;
    char duplicate_key[64];
    jsonbuf_t nested;
    char *strings; /* decoded strings, one after another */
    size_t strings_len;
} scan_result_t;

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
static nudgel_err_t scan_fields(const char *bytes, size_t len, scan_result_t *r,
                                nudgel_field_error_t *ferr)
{
    jsonscan_t s;
    jsonbuf_t discard = {NULL, 0, 0, false};
    size_t n;
    jsonscan_init(&s, bytes, len);
    if (jsonscan_peek(&s) != JSONSCAN_OBJECT)
        return field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)",
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
        return field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)",
                           "unexpected data after the job at byte %zu", jsonscan_column(&s));
    if (r->duplicate)
        return field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)", "duplicate key \"%s\"",
                           r->duplicate_key);
    if (r->unknown[0])
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, r->unknown, "unknown field");
    return NUDGEL_OK;
syntax:
    return field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)", "%s",
                       s.error[0] ? s.error : "malformed JSON");
}

static const field_slot_t *slot_of(const scan_result_t *r, const char *name)
{
    /* Field names are literals of this file: the compiler merges equal literals,
     * so the pointer test almost always decides; strcmp keeps it correct. */
    for (int i = 0; r->specs[i].name; i++)
        if (r->specs[i].name == name)
            return &r->slots[i];
    for (int i = 0; r->specs[i].name; i++)
        if (strcmp(r->specs[i].name, name) == 0)
            return &r->slots[i];
    return NULL;
}

/* An optional (or required) string field; null counts as absent. */
static nudgel_err_t get_string(const scan_result_t *r, const char *field, bool required,
                               const char **out, nudgel_field_error_t *ferr)
{
    const field_slot_t *slot = slot_of(r, field);
    *out = NULL;
    if (!slot->present || slot->type == JSONSCAN_NULL) {
        if (required)
            return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "is required");
        return NUDGEL_OK;
    }
    if (slot->type != JSONSCAN_STRING)
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "must be a string");
    *out = slot->str;
    return NUDGEL_OK;
}

static nudgel_err_t get_object(const scan_result_t *r, const char *field, bool required,
                               const field_slot_t **out, nudgel_field_error_t *ferr)
{
    const field_slot_t *slot = slot_of(r, field);
    *out = NULL;
    if (!slot->present || slot->type == JSONSCAN_NULL) {
        if (required)
            return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "is required");
        return NUDGEL_OK;
    }
    if (slot->type != JSONSCAN_OBJECT)
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field, "must be a JSON object");
    *out = slot;
    return NUDGEL_OK;
}

static nudgel_err_t take_id(const scan_result_t *r, const nudgel_job_parse_opts_t *opts,
                            char out[NUDGEL_UUID_STR_LEN + 1], nudgel_field_error_t *ferr)
{
    const char *id;
    nudgel_err_t err = get_string(r, "id", !(opts && opts->fill_defaults), &id, ferr);
    if (err)
        return err;
    if (!id) {
        nudgel_uuid7_string(out);
        return NUDGEL_OK;
    }
    if (!is_lower_uuid(id))
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "id",
                           "must be a lower-case UUID (8-4-4-4-12 hex)");
    memcpy(out, id, NUDGEL_UUID_STR_LEN + 1);
    return NUDGEL_OK;
}

static nudgel_err_t take_tenant(const scan_result_t *r, const char **out,
                                nudgel_field_error_t *ferr)
{
    nudgel_err_t err = get_string(r, "tenant_id", true, out, ferr);
    if (err)
        return err;
    if (!nudgel_tenant_id_valid(*out))
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "tenant_id",
                           "must be 1 to 64 of A-Z a-z 0-9 _ - and start with a letter or digit");
    return NUDGEL_OK;
}

static nudgel_err_t take_time(const scan_result_t *r, const char *field, bool required,
                              int64_t fill_ms, int64_t *out, nudgel_field_error_t *ferr)
{
    const char *text;
    nudgel_err_t err = get_string(r, field, required && !fill_ms, &text, ferr);
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

static nudgel_err_t take_idempotency_key(const scan_result_t *r, const char **out,
                                         nudgel_field_error_t *ferr)
{
    nudgel_err_t err = get_string(r, "idempotency_key", false, out, ferr);
    if (err || !*out)
        return err;
    size_t len = strlen(*out);
    if (len == 0 || len > NUDGEL_IDEMPOTENCY_KEY_MAX)
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "idempotency_key",
                           "must be 1 to %d bytes", NUDGEL_IDEMPOTENCY_KEY_MAX);
    return NUDGEL_OK;
}

static nudgel_err_t take_metadata(const scan_result_t *r, const field_slot_t **out,
                                  nudgel_field_error_t *ferr)
{
    nudgel_err_t err = get_object(r, "metadata", false, out, ferr);
    if (err || !*out)
        return err;
    if ((*out)->member_count > METADATA_MAX_PROPERTIES)
        return field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "metadata",
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

static void put_string_field(jsonbuf_t *b, const char *key, const char *value)
{
    if (!value)
        return;
    put_key(b, key);
    jsonbuf_put_string(b, value, strlen(value));
}

static void put_time_field(jsonbuf_t *b, const char *key, int64_t ms)
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

static void put_object_field(jsonbuf_t *b, const char *key, const scan_result_t *r,
                             const field_slot_t *slot)
{
    if (!slot)
        return;
    put_key(b, key);
    jsonbuf_put(b, r->nested.data + slot->nested_off, slot->nested_len);
}

/*
 * Working memory of one canonicalisation: decoded strings and the nested
 * copies each need at most the input's size; small jobs stay on the stack.
 */
typedef struct workspace {
    char stack[STACK_SCRATCH];
    char *heap;
} workspace_t;

static nudgel_err_t workspace_init(workspace_t *ws, scan_result_t *r, size_t len,
                                   nudgel_field_error_t *ferr)
{
    size_t need = 2 * (len + 64);
    char *mem = ws->stack;
    ws->heap = NULL;
    if (need > sizeof(ws->stack)) {
        if (!(ws->heap = malloc(need)))
            return field_error(ferr, NUDGEL_ERR_NO_MEMORY, "(job)", "out of memory");
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

static nudgel_err_t check_size(const char *bytes, size_t len, const nudgel_job_parse_opts_t *opts,
                               size_t *cap_out, nudgel_field_error_t *ferr)
{
    size_t cap = opts && opts->max_bytes ? opts->max_bytes : NUDGEL_JOB_MAX_BYTES_DEFAULT;
    *cap_out = cap;
    if (!bytes)
        return field_error(ferr, NUDGEL_ERR_INVALID_JSON, "(json)", "no input");
    if (len > cap)
        return field_error(ferr, NUDGEL_ERR_TOO_LARGE, "(job)",
                           "job is %zu bytes; the limit is %zu", len, cap);
    return NUDGEL_OK;
}

/* Allocates the output: the input size plus room for what canonicalisation adds. */
static nudgel_err_t output_init(jsonbuf_t *out, size_t len, const nudgel_job_parse_opts_t *opts,
                                nudgel_field_error_t *ferr)
{
    size_t tail = opts ? opts->reserve_tail : 0;
    out->cap = len + 256;
    out->len = 0;
    out->overflow = false;
    /* The caller's tail starts at the first 16-byte boundary after cap + NUL. */
    if (!(out->data = malloc(((out->cap + 1 + 15) & ~(size_t)15) + tail)))
        return field_error(ferr, NUDGEL_ERR_NO_MEMORY, "(job)", "out of memory");
    return NUDGEL_OK;
}

static nudgel_err_t output_finish(jsonbuf_t *out, size_t cap, nudgel_job_canonical_t *result,
                                  nudgel_field_error_t *ferr)
{
    jsonbuf_putc(out, '}');
    if (out->overflow || out->len > cap) {
        free(out->data);
        out->data = NULL;
        return field_error(ferr, NUDGEL_ERR_TOO_LARGE, "(job)",
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
static void set_result_ids(nudgel_job_canonical_t *out, const char *id, const char *tenant,
                           const char *ikey)
{
    size_t tenant_len = strlen(tenant), ikey_len = ikey ? strlen(ikey) : 0;
    memcpy(out->id, id, sizeof(out->id));
    memcpy(out->tenant_id, tenant, tenant_len + 1);
    memcpy(out->idempotency_key, ikey ? ikey : "", ikey_len + 1);
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
    if ((err = check_size(bytes, len, opts, &cap, ferr)))
        return err;
    memset(&r, 0, offsetof(scan_result_t, nested));
    r.specs = message_fields;
    if ((err = workspace_init(&ws, &r, len, ferr)))
        return err;
    if ((err = scan_fields(bytes, len, &r, ferr)) || (err = take_id(&r, opts, id, ferr)) ||
        (err = take_tenant(&r, &tenant, ferr)) ||
        (err = get_string(&r, "channel", true, &channel, ferr)))
        goto out;
    if (strcmp(channel, "sms") != 0) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "channel",
                          "unsupported channel \"%.32s\" (supported: sms)", channel);
        goto out;
    }
    if ((err = get_string(&r, "to", true, &to, ferr)) ||
        (err = get_string(&r, "country", false, &country, ferr)))
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
        if (nudgel_phone_normalise(to, hint, &out->phone, reason, sizeof(reason)) != NUDGEL_OK) {
            err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "to", "%s", reason);
            goto out;
        }
        to = out->phone.e164;
    } else if (strlen(to) < 3 || strlen(to) > 32) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "to", "must be 3 to 32 characters");
        goto out;
    }
    if ((err = get_string(&r, "from", false, &from, ferr)))
        goto out;
    if (from && !sender_id_valid(from)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "from",
                          "must be an alphanumeric sender id of 1 to 11 characters or a number "
                          "of 3 to 15 digits");
        goto out;
    }
    if ((err = get_string(&r, "body", false, &body, ferr)) ||
        (err = get_string(&r, "template", false, &template_name, ferr)) ||
        (err = get_string(&r, "locale", false, &locale, ferr)) ||
        (err = get_object(&r, "variables", false, &variables, ferr)))
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
    if (variables && variables->bad_member[0]) {
        char field[64];
        snprintf(field, sizeof(field), "variables.%.50s", variables->bad_member);
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, field,
                          "must be a string, number or boolean");
        goto out;
    }
    if ((err = take_idempotency_key(&r, &ikey, ferr)))
        goto out;
    int64_t now = opts && opts->now_ms ? opts->now_ms : 0;
    int64_t fill = opts && opts->fill_defaults ? (now ? now : nudgel_now_unix_ms()) : 0;
    if ((err = take_time(&r, "created_at", true, fill, &created_ms, ferr)) ||
        (err = take_time(&r, "expires_at", false, 0, &expires_ms, ferr)) ||
        (err = take_metadata(&r, &metadata, ferr)))
        goto out;
    if (expires_ms && expires_ms <= created_ms) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "expires_at", "must be after created_at");
        goto out;
    }

    if ((err = output_init(&doc, len, opts, ferr)))
        goto out;
    put_string_field(&doc, "id", id);
    put_string_field(&doc, "tenant_id", tenant);
    put_string_field(&doc, "channel", channel);
    put_string_field(&doc, "to", to);
    put_string_field(&doc, "country", country);
    put_string_field(&doc, "from", from);
    put_string_field(&doc, "body", body);
    put_string_field(&doc, "template", template_name);
    put_string_field(&doc, "locale", locale);
    put_object_field(&doc, "variables", &r, variables);
    put_string_field(&doc, "idempotency_key", ikey);
    put_time_field(&doc, "created_at", created_ms);
    put_time_field(&doc, "expires_at", expires_ms);
    put_object_field(&doc, "metadata", &r, metadata);
    if ((err = output_finish(&doc, cap, out, ferr)))
        goto out;
    set_result_ids(out, id, tenant, ikey);
out:
    free(doc.data);
    free(ws.heap);
    return err;
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
    if ((err = check_size(bytes, len, opts, &cap, ferr)))
        return err;
    memset(&r, 0, offsetof(scan_result_t, nested));
    r.specs = webhook_fields;
    if ((err = workspace_init(&ws, &r, len, ferr)))
        return err;
    if ((err = scan_fields(bytes, len, &r, ferr)) || (err = take_id(&r, opts, id, ferr)) ||
        (err = take_tenant(&r, &tenant, ferr)) ||
        (err = get_string(&r, "endpoint_id", false, &endpoint_id, ferr)) ||
        (err = get_string(&r, "url", false, &url, ferr)))
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
    if ((err = get_string(&r, "event_type", true, &event_type, ferr)))
        goto out;
    if (!event_type_valid(event_type)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "event_type",
                          "must be dotted lower-case words such as message.delivered");
        goto out;
    }
    if ((err = get_string(&r, "event_id", true, &event_id, ferr)))
        goto out;
    if (!matches_charset(event_id, 1, EVENT_ID_MAX, "_.:-", false)) {
        err = field_error(ferr, NUDGEL_ERR_INVALID_FIELD, "event_id",
                          "must be 1 to %d of A-Z a-z 0-9 _ . : -", EVENT_ID_MAX);
        goto out;
    }
    int64_t now = opts && opts->now_ms ? opts->now_ms : 0;
    int64_t fill = opts && opts->fill_defaults ? (now ? now : nudgel_now_unix_ms()) : 0;
    if ((err = get_object(&r, "payload", true, &payload, ferr)) ||
        (err = take_idempotency_key(&r, &ikey, ferr)) ||
        (err = take_time(&r, "created_at", true, fill, &created_ms, ferr)) ||
        (err = take_metadata(&r, &metadata, ferr)))
        goto out;

    if ((err = output_init(&doc, len, opts, ferr)))
        goto out;
    put_string_field(&doc, "id", id);
    put_string_field(&doc, "tenant_id", tenant);
    put_string_field(&doc, "endpoint_id", endpoint_id);
    put_string_field(&doc, "url", url);
    put_string_field(&doc, "event_type", event_type);
    put_string_field(&doc, "event_id", event_id);
    put_object_field(&doc, "payload", &r, payload);
    put_string_field(&doc, "idempotency_key", ikey);
    put_time_field(&doc, "created_at", created_ms);
    put_object_field(&doc, "metadata", &r, metadata);
    if ((err = output_finish(&doc, cap, out, ferr)))
        goto out;
    set_result_ids(out, id, tenant, ikey);
out:
    free(doc.data);
    free(ws.heap);
    return err;
}

/* ---- the document API for workers ---- */

static const char *str_of(json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

/* Loads canonical bytes (always valid JSON) into a jansson document. */
static json_t *load_canonical(const nudgel_job_canonical_t *c, nudgel_field_error_t *ferr)
{
    json_error_t jerr;
    json_t *doc = json_loadb(c->bytes, c->len, 0, &jerr);
    if (!doc)
        field_error(ferr, NUDGEL_ERR_NO_MEMORY, "(job)", "%s", jerr.text);
    return doc;
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
    job->doc = load_canonical(&c, ferr);
    free(c.bytes);
    if (!job->doc)
        return NUDGEL_ERR_NO_MEMORY;
    int64_t ms;
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
    job->created_at_ms = nudgel_rfc3339_parse(str_of(job->doc, "created_at"), &ms) == 0 ? ms : 0;
    job->expires_at_ms = nudgel_rfc3339_parse(str_of(job->doc, "expires_at"), &ms) == 0 ? ms : 0;
    job->metadata = json_object_get(job->doc, "metadata");
    job->phone = c.phone;
    return NUDGEL_OK;
}

static char *encode_doc(json_t *doc, size_t *len_out)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text && len_out)
        *len_out = strlen(text);
    return text;
}

char *nudgel_message_job_encode(const nudgel_message_job_t *job, size_t *len_out)
{
    return job ? encode_doc(job->doc, len_out) : NULL;
}

void nudgel_message_job_clear(nudgel_message_job_t *job)
{
    if (!job)
        return;
    json_decref(job->doc);
    memset(job, 0, sizeof(*job));
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
    job->doc = load_canonical(&c, ferr);
    free(c.bytes);
    if (!job->doc)
        return NUDGEL_ERR_NO_MEMORY;
    int64_t ms;
    job->id = str_of(job->doc, "id");
    job->tenant_id = str_of(job->doc, "tenant_id");
    job->endpoint_id = str_of(job->doc, "endpoint_id");
    job->url = str_of(job->doc, "url");
    job->event_type = str_of(job->doc, "event_type");
    job->event_id = str_of(job->doc, "event_id");
    job->payload = json_object_get(job->doc, "payload");
    job->idempotency_key = str_of(job->doc, "idempotency_key");
    job->created_at_ms = nudgel_rfc3339_parse(str_of(job->doc, "created_at"), &ms) == 0 ? ms : 0;
    job->metadata = json_object_get(job->doc, "metadata");
    return NUDGEL_OK;
}

char *nudgel_webhook_job_encode(const nudgel_webhook_job_t *job, size_t *len_out)
{
    return job ? encode_doc(job->doc, len_out) : NULL;
}

void nudgel_webhook_job_clear(nudgel_webhook_job_t *job)
{
    if (!job)
        return;
    json_decref(job->doc);
    memset(job, 0, sizeof(*job));
}
