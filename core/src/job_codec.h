/*
 * job_codec.h — what the message and the webhook job codecs share (private
 * to core/; job_codec.c): the single-pass scan of a job's top-level members
 * into slots, the typed getters that check one field each and name it in a
 * nudgel_field_error_t, the writer of the canonical document, the working
 * memory of one canonicalisation, and the jansson helpers of the document
 * API. job_message.c and job_webhook.c hold the fields and rules of each
 * kind (nudgel/job.h).
 *
 * Ownership: slot strings and nested copies borrow from the workspace of the
 * canonicalisation; nothing here outlives one call but the canonical bytes
 * handed to the caller by job_output_finish().
 */
#ifndef NUDGEL_JOB_CODEC_H
#define NUDGEL_JOB_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "jsonscan.h"
#include "nudgel/job.h"

#define MAX_FIELDS    16
#define STACK_SCRATCH 16384

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

/*
 * Working memory of one canonicalisation: decoded strings and the nested
 * copies each need at most the input's size; small jobs stay on the stack.
 */
typedef struct workspace {
    char stack[STACK_SCRATCH];
    char *heap;
} workspace_t;

/** Fills @p ferr (may be NULL) with @p field and the formatted reason. @returns @p err. */
nudgel_err_t job_field_error(nudgel_field_error_t *ferr, nudgel_err_t err, const char *field,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- value checks shared by both job kinds ---- */

/** Whether @p s is a UUID in lower case. */
bool job_is_lower_uuid(const char *s);
/**
 * Whether @p s has @p min to @p max bytes, each alphanumeric (lower-case
 * letters and digits with @p lower) or in @p extra.
 */
bool job_matches_charset(const char *s, size_t min, size_t max, const char *extra, bool lower);

/* ---- the scan and the fields ---- */

/**
 * Scans the top-level object into @p r's slots (r->specs set, the rest
 * zeroed, the workspace initialised). Syntax errors return
 * NUDGEL_ERR_INVALID_JSON at once; field problems are left in the slots for
 * the getters below, which the caller calls in its fixed order.
 */
nudgel_err_t job_scan_fields(const char *bytes, size_t len, scan_result_t *r,
                             nudgel_field_error_t *ferr);
/** A string field (@p field a literal of r->specs); null counts as absent. */
nudgel_err_t job_get_string(const scan_result_t *r, const char *field, bool required,
                            const char **out, nudgel_field_error_t *ferr);
/** An object field; null counts as absent. */
nudgel_err_t job_get_object(const scan_result_t *r, const char *field, bool required,
                            const field_slot_t **out, nudgel_field_error_t *ferr);
/** "id": a lower-case UUID, or a new UUIDv7 with opts->fill_defaults. */
nudgel_err_t job_take_id(const scan_result_t *r, const nudgel_job_parse_opts_t *opts,
                         char out[NUDGEL_UUID_STR_LEN + 1], nudgel_field_error_t *ferr);
/** "tenant_id", required and valid. */
nudgel_err_t job_take_tenant(const scan_result_t *r, const char **out, nudgel_field_error_t *ferr);
/** An RFC 3339 time field into epoch ms; @p fill_ms when absent and non-zero. */
nudgel_err_t job_take_time(const scan_result_t *r, const char *field, bool required,
                           int64_t fill_ms, int64_t *out, nudgel_field_error_t *ferr);
/** "idempotency_key", optional, 1 to NUDGEL_IDEMPOTENCY_KEY_MAX bytes. */
nudgel_err_t job_take_idempotency_key(const scan_result_t *r, const char **out,
                                      nudgel_field_error_t *ferr);
/** "metadata", an optional object of a bounded number of properties. */
nudgel_err_t job_take_metadata(const scan_result_t *r, const field_slot_t **out,
                               nudgel_field_error_t *ferr);

/* ---- writing the canonical document ---- */

/** Writes @p key and @p value when @p value is not NULL. */
void job_put_string_field(jsonbuf_t *b, const char *key, const char *value);
/** Writes @p key and @p ms as RFC 3339 UTC when @p ms is not 0. */
void job_put_time_field(jsonbuf_t *b, const char *key, int64_t ms);
/** Writes @p key and the canonical copy of @p slot when @p slot is not NULL. */
void job_put_object_field(jsonbuf_t *b, const char *key, const scan_result_t *r,
                          const field_slot_t *slot);

/** Points @p r's strings and nested buffer into @p ws (heap when @p len is large). */
nudgel_err_t job_workspace_init(workspace_t *ws, scan_result_t *r, size_t len,
                                nudgel_field_error_t *ferr);
/** Refuses a NULL or oversized input; @p *cap_out is the size limit. */
nudgel_err_t job_check_size(const char *bytes, size_t len, const nudgel_job_parse_opts_t *opts,
                            size_t *cap_out, nudgel_field_error_t *ferr);
/** Allocates the output document (and opts->reserve_tail). */
nudgel_err_t job_output_init(jsonbuf_t *out, size_t len, const nudgel_job_parse_opts_t *opts,
                             nudgel_field_error_t *ferr);
/** Closes the document and hands its bytes to @p result, or refuses it when over @p cap. */
nudgel_err_t job_output_finish(jsonbuf_t *out, size_t cap, nudgel_job_canonical_t *result,
                               nudgel_field_error_t *ferr);
/** Copies the ids a producer needs for key and headers into @p out. */
void job_set_result_ids(nudgel_job_canonical_t *out, const char *id, const char *tenant,
                        const char *ikey);

/* ---- the document API for workers ---- */

/** The string member @p key of @p doc, borrowed; NULL when absent. */
const char *job_str_of(json_t *doc, const char *key);
/** Loads canonical bytes into a new jansson document (the caller decrefs it). */
json_t *job_load_canonical(const nudgel_job_canonical_t *c, nudgel_field_error_t *ferr);
/** Compact JSON of @p doc in its key order; malloc'd, the caller frees it. */
char *job_encode_doc(json_t *doc, size_t *len_out);

#endif
