/*
 * dlq.h — dead-letter replay: `nudgel-admin dlq replay`.
 *
 * Reads a DLQ topic from its start up to the end it had when the replay
 * began (so a replay never re-reads what it just wrote), keeps the records
 * that match the filters, and appends their original bytes and headers —
 * minus the dead-letter and retry headers — to the job topic they came from.
 * Kafka keeps the dead letters: replaying twice enqueues twice, and the
 * workers' claim (message id, tenant + idempotency key) makes the second
 * copy harmless for jobs that already ended: their event is re-emitted,
 * nothing is sent.
 *
 * --resend (messages): a dead letter whose receipt ended without a carrier
 * taking it (failed, rejected, expired) is sent again as a NEW message
 * linked to the original (dlq_resend.h): its id derives from the
 * original's and --generation, so the same resend run twice sends once.
 * Dead letters with no receipt, or one still open, are replayed as they
 * are; those a carrier took are skipped.
 */
#ifndef NUDGEL_ADMIN_DLQ_H
#define NUDGEL_ADMIN_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nudgel/config.h"
#include "nudgel/error.h"

typedef struct nudgel_admin_dlq_opts {
    const char *kind;   /* "messages" or "webhooks" */
    const char *tenant; /* only this tenant (nudgel-tenant header); NULL for all */
    const char *reason; /* only those whose dead-letter reason, last retry error or (messages)
                           receipt's last error code contains this text; NULL for all */
    int64_t since_ms;   /* dead-lettered at or after (record timestamp); 0: no bound */
    int64_t until_ms;   /* dead-lettered before; 0: no bound */
    bool dry_run;       /* count, write nothing */
    bool resend;        /* messages whose receipt failed: send again as new messages */
    int generation;     /* --resend: the resend's generation (its id); 0 means 1 */
} nudgel_admin_dlq_opts_t;

/**
 * @brief Replays the dead letters of @p opts->kind that match, printing a
 * summary to @p out and a progress bar on stderr when it is a terminal.
 * @returns NUDGEL_OK, NUDGEL_ERR_INVALID_ARG for a bad kind,
 * NUDGEL_ERR_KAFKA_UNREACHABLE, or NUDGEL_ERR_KAFKA when a replayed record
 * was not acknowledged.
 */
nudgel_err_t nudgel_admin_dlq_replay(const nudgel_conf_t *conf, const nudgel_admin_dlq_opts_t *opts,
                                     FILE *out, char *errstr, size_t errstr_size);

#endif
