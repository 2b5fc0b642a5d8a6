/*
 * dlq_resend.h — what `nudgel-admin dlq replay` asks Postgres about a
 * message's dead letter: its receipt (to match --reason against the last
 * error code, and to decide whether --resend sends it again), and the
 * resend itself (issue 10, item 6).
 *
 * A resend is a NEW message: its id is derived from the original's id and
 * a resend generation (nudgel_admin_resend_id(): replaying the same dead
 * letter twice makes the same id, and the worker's claim sends it once),
 * its receipt row is created here in `accepted` with resent_from naming the
 * original (the worker's claim moves it on like any accepted row), and its
 * job is the original's bytes with the new id, no idempotency key (the
 * original holds it) and created_at now (the validity window starts again;
 * an expires_at the caller gave still holds). The original's receipt is
 * never touched: its states stay forward-only.
 *
 * Threading: one thread. The handle owns its Postgres connection.
 */
#ifndef NUDGEL_ADMIN_DLQ_RESEND_H
#define NUDGEL_ADMIN_DLQ_RESEND_H

#include <stdbool.h>
#include <stddef.h>

#include "nudgel/config.h"
#include "nudgel/error.h"
#include "nudgel/uuid.h"

typedef struct dlq_pg dlq_pg_t;

/** What a dead letter's receipt says. */
typedef enum dlq_receipt_kind {
    DLQ_RECEIPT_NONE = 0,   /* no row (never claimed): a plain replay sends it */
    DLQ_RECEIPT_OPEN,       /* accepted or submitting: a plain replay goes on with it */
    DLQ_RECEIPT_RESENDABLE, /* failed, rejected or expired, never accepted by a carrier */
    DLQ_RECEIPT_SENT,       /* a carrier took it (sent, delivered, undelivered, expired after
                               sent): never resent */
} dlq_receipt_kind_t;

typedef struct dlq_receipt_info {
    dlq_receipt_kind_t kind;
    char status[16];
    char error_code[64]; /* the receipt's last error code, "" when none */
} dlq_receipt_info_t;

/** @brief A handle that connects on first use. @returns NULL when out of memory. */
dlq_pg_t *dlq_pg_new(const nudgel_conf_t *conf);

/** @brief Closes the connection and frees @p pg (NULL is fine). */
void dlq_pg_free(dlq_pg_t *pg);

/**
 * @brief The receipt of @p message_id (a UUID) into @p out.
 * @returns NUDGEL_OK, or NUDGEL_ERR_PG_UNREACHABLE / NUDGEL_ERR_CONFIG /
 * NUDGEL_ERR_PG with the reason.
 */
nudgel_err_t dlq_pg_receipt(dlq_pg_t *pg, const char *message_id, dlq_receipt_info_t *out,
                            char *errstr, size_t errstr_size);

/** @brief The id of resend @p generation (>= 1) of @p original: a UUIDv8 of their SHA-256. */
void nudgel_admin_resend_id(const char *original, int generation,
                            char out[NUDGEL_UUID_STR_LEN + 1]);

/**
 * @brief Prepares resend @p generation of the message job @p bytes (@p len
 * bytes, the dead letter's payload; its id is @p original): creates the new
 * receipt row (accepted, resent_from = @p original, copied recipient and
 * metadata; nothing when it exists already) with its history row, and
 * returns in @p *job (malloc'd, caller frees; @p *job_len bytes) the new
 * job's canonical bytes and in @p new_id its id.
 * @returns NUDGEL_OK, NUDGEL_ERR_INVALID_JSON / _INVALID_FIELD when the
 * dead letter is no valid job, or a Postgres error, with the reason.
 */
nudgel_err_t dlq_pg_resend(dlq_pg_t *pg, const char *bytes, size_t len, const char *original,
                           int generation, char **job, size_t *job_len,
                           char new_id[NUDGEL_UUID_STR_LEN + 1], char *errstr, size_t errstr_size);

#endif
