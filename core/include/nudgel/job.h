/*
 * nudgel/job.h — the JSON codec and validation of message and webhook jobs
 * (schemas/message.job.v1.schema.json, schemas/webhook.job.v1.schema.json).
 *
 * Parsing checks every field against the contract and reports the first
 * field at fault. Encoding writes compact JSON with keys in a fixed order,
 * so the same job always yields the same bytes.
 */
#ifndef NUDGEL_JOB_H
#define NUDGEL_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nudgel/error.h"
#include "nudgel/phone.h"
#include "nudgel/uuid.h"

#define NUDGEL_JOB_MAX_BYTES_DEFAULT (64 * 1024)
#define NUDGEL_TENANT_ID_MAX         64
#define NUDGEL_IDEMPOTENCY_KEY_MAX   255
#define NUDGEL_BODY_MAX_CHARS        1600

/** The field a job was refused for ("to", "variables.name", "(json)") and why. */
typedef struct nudgel_field_error {
    char field[64];
    char reason[256];
} nudgel_field_error_t;

typedef struct nudgel_job_parse_opts {
    size_t max_bytes;            /* hard cap of the raw job; 0 = NUDGEL_JOB_MAX_BYTES_DEFAULT */
    bool fill_defaults;          /* assign a UUIDv7 id and created_at when absent (producers) */
    bool normalise_to;           /* rewrite "to" as E.164 (producers; workers do it too) */
    const char *default_country; /* hint for national numbers when the job has no "country" */
    int64_t now_ms;              /* clock for created_at; 0 = now */
    size_t reserve_tail;         /* canonicalize: spare bytes allocated after the
                                    canonical bytes for the caller (aligned to 16) */
} nudgel_job_parse_opts_t;

/*
 * A parsed message job (the canonical document loaded with jansson, for
 * workers that need the fields). All pointers borrow from doc, which the job owns;
 * nudgel_message_job_clear() releases it. Optional fields are NULL/0 when absent.
 */
typedef struct nudgel_message_job {
    json_t *doc;
    const char *id;
    const char *tenant_id;
    const char *channel;
    const char *to;      /* E.164 when parsed with normalise_to */
    const char *country; /* the caller's hint, if any */
    const char *from;
    const char *body;
    const char *template_name;
    const char *locale;
    json_t *variables;
    const char *idempotency_key;
    int64_t created_at_ms;
    int64_t expires_at_ms;
    json_t *metadata;
    nudgel_phone_t phone; /* classification of "to" (filled when normalise_to) */
} nudgel_message_job_t;

typedef struct nudgel_webhook_job {
    json_t *doc;
    const char *id;
    const char *tenant_id;
    const char *endpoint_id;
    const char *url;
    const char *event_type;
    const char *event_id;
    json_t *payload;
    const char *idempotency_key;
    int64_t created_at_ms;
    json_t *metadata;
} nudgel_webhook_job_t;

/** A validated job in canonical bytes, with what a producer needs for key and headers. */
typedef struct nudgel_job_canonical {
    char *bytes; /* malloc'd, NUL-terminated canonical JSON; the caller frees it */
    size_t len;
    void *tail; /* opts->reserve_tail spare bytes inside the same allocation */
    char id[NUDGEL_UUID_STR_LEN + 1];
    char tenant_id[NUDGEL_TENANT_ID_MAX + 1];
    char idempotency_key[NUDGEL_IDEMPOTENCY_KEY_MAX + 1]; /* "" when absent */
    nudgel_phone_t phone; /* message jobs parsed with normalise_to */
} nudgel_job_canonical_t;

/**
 * @brief Validates a message job and writes its canonical bytes, in one pass
 * and without a document tree (the producer's hot path).
 * @returns as nudgel_message_job_parse(); on success @p out->bytes is owned
 * by the caller, on failure it is NULL.
 */
nudgel_err_t nudgel_message_job_canonicalize(const char *bytes, size_t len,
                                             const nudgel_job_parse_opts_t *opts,
                                             nudgel_job_canonical_t *out,
                                             nudgel_field_error_t *ferr);

/** @brief As nudgel_message_job_canonicalize() for webhook jobs. */
nudgel_err_t nudgel_webhook_job_canonicalize(const char *bytes, size_t len,
                                             const nudgel_job_parse_opts_t *opts,
                                             nudgel_job_canonical_t *out,
                                             nudgel_field_error_t *ferr);

/**
 * @brief Parses and validates a message job from raw bytes.
 * @returns NUDGEL_OK and a filled @p job (release with nudgel_message_job_clear),
 * or NUDGEL_ERR_INVALID_JSON / NUDGEL_ERR_INVALID_FIELD / NUDGEL_ERR_TOO_LARGE
 * with @p ferr naming the field; @p job is then left empty.
 */
nudgel_err_t nudgel_message_job_parse(const char *bytes, size_t len,
                                      const nudgel_job_parse_opts_t *opts,
                                      nudgel_message_job_t *job, nudgel_field_error_t *ferr);

/** @brief Compact canonical JSON of @p job; malloc'd, caller frees. NULL on ENOMEM. */
char *nudgel_message_job_encode(const nudgel_message_job_t *job, size_t *len_out);

void nudgel_message_job_clear(nudgel_message_job_t *job);

/** @brief As nudgel_message_job_parse() for webhook jobs. */
nudgel_err_t nudgel_webhook_job_parse(const char *bytes, size_t len,
                                      const nudgel_job_parse_opts_t *opts,
                                      nudgel_webhook_job_t *job, nudgel_field_error_t *ferr);

char *nudgel_webhook_job_encode(const nudgel_webhook_job_t *job, size_t *len_out);

void nudgel_webhook_job_clear(nudgel_webhook_job_t *job);

/** @brief Whether @p tenant_id matches ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$. */
bool nudgel_tenant_id_valid(const char *tenant_id);

#endif
