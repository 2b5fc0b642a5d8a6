/*
 * webhook_replay.h — `nudgel-admin webhooks replay`: deliver an endpoint's
 * failed webhooks again.
 *
 * Picks the deliveries of one endpoint created in [since, until) whose
 * status matches and that are the latest delivery of their event to that
 * endpoint (so an event already replayed, or delivered by a later replay, is
 * not sent twice), and re-enqueues each as a new webhook job on
 * nudgel.webhooks.v1 (under topics.namespace): a new job id, the same
 * event_id (so receivers see the same webhook-id and can dedupe), the stored
 * payload, and the header nudgel-replay-of: <old delivery id>.
 *
 * Before a job is produced its delivery row is written (status pending,
 * replay_of = the old delivery), so the deliverer's claim finds it as its
 * own rather than as a duplicate of the old delivery; a row whose job Kafka
 * did not acknowledge is cancelled with the reason. Deliveries stored
 * without a payload (written before migration 003) are counted as skipped.
 */
#ifndef NUDGEL_ADMIN_WEBHOOK_REPLAY_H
#define NUDGEL_ADMIN_WEBHOOK_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nudgel/config.h"
#include "nudgel/error.h"

typedef struct nudgel_admin_webhook_replay_opts {
    const char *endpoint_id; /* required */
    int64_t since_ms;        /* created at or after; required (non-zero) */
    int64_t until_ms;        /* created before; 0: no bound */
    const char *status;      /* "failed" or "exhausted"; NULL: both */
    bool dry_run;            /* count, write nothing */
} nudgel_admin_webhook_replay_opts_t;

/**
 * @brief Replays as described above, printing a summary to @p out and a
 * progress bar on stderr when it is a terminal.
 * @returns NUDGEL_OK; NUDGEL_ERR_INVALID_ARG for a bad flag (named);
 * NUDGEL_ERR_INVALID_FIELD when the endpoint does not exist;
 * NUDGEL_ERR_PG(_UNREACHABLE), NUDGEL_ERR_KAFKA(_UNREACHABLE) when a job was
 * not acknowledged.
 */
nudgel_err_t nudgel_admin_webhook_replay(const nudgel_conf_t *conf,
                                         const nudgel_admin_webhook_replay_opts_t *opts, FILE *out,
                                         char *errstr, size_t errstr_size);

#endif
