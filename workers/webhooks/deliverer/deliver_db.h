/*
 * deliver_db.h — the deliverer's Postgres statements (nudgel-webhooks only).
 *
 * Rows travel as one JSON array parameter per statement (jsonb_to_recordset),
 * so a batch of any size is one round trip and nothing is spliced into SQL.
 * Every statement comes in two halves for a non-blocking connection
 * (nudgel/pgconn.h): *_send() queues it on an idle connection (the caller
 * then hands it over with nudgel_pgconn_sent()), *_read() reads the results
 * the done callback got. A *_send() failure means the connection must be
 * replaced (nudgel_pgconn_lost()); a *_read() failure is the statement's
 * own error (NUDGEL_ERR_PG) on a connection that is still fine. The one
 * blocking call left, wh_db_has_payload_column(), runs once at start-up,
 * before the loop turns.
 */
#ifndef NUDGEL_DELIVER_DB_H
#define NUDGEL_DELIVER_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "nudgel/error.h"

/**
 * A delivery's status: webhook_deliveries.status (the CHECK of
 * 001_core.sql) and the "status" of the webhook events. Stored text is
 * parsed into it once, where a row is read (wh_db_claim_read()); the
 * deliverer decides by the enum, and writes and publishes its name.
 */
typedef enum wh_delivery_status {
    WH_DELIVERY_PENDING = 0,
    WH_DELIVERY_DELIVERING, /* attempts go on (a retry is scheduled) */
    WH_DELIVERY_DELIVERED,  /* final */
    WH_DELIVERY_FAILED,     /* final: a permanent failure */
    WH_DELIVERY_EXHAUSTED,  /* final: the last attempt failed */
    WH_DELIVERY_CANCELLED,  /* final: the endpoint is gone or disabled */
    /* Not a row's status: a second job for an (endpoint, event) another delivery holds ends so;
     * it is recorded in webhook_duplicates (migration 007), never in webhook_deliveries. */
    WH_DELIVERY_DEDUPLICATED,
} wh_delivery_status_t;

/** @brief The status's name as stored and published ("delivered"). @returns a static string. */
const char *wh_delivery_status_name(wh_delivery_status_t s);

/** @brief Whether no attempt follows @p s: delivered, failed, exhausted, cancelled. */
bool wh_delivery_status_is_final(wh_delivery_status_t s);

/** What the deliveries table says of one claimed job. */
typedef struct wh_claim {
    bool fresh;                  /* the row was created now, or exists and is not final */
    bool final;                  /* the delivery already ended: send nothing */
    bool duplicate;              /* another delivery of the same (endpoint, event) exists */
    bool foreign;                /* its delivery id is another tenant's row: refused */
    char duplicate_of[37];       /* the other delivery's id when duplicate */
    wh_delivery_status_t status; /* the row's status when it existed */
    int attempts;                /* attempts recorded so far */
    int last_status_code;
    /* The row's last_error ("class: message", as the flush writes it), split
     * at the first ": "; both "" when it has none. */
    char error_class[32];
    char error_message[640]; /* as wjob_t's: the event re-emitted from it is the same */
    char url[2049];          /* the url the delivery was (last) sent to; "" when none */
} wh_claim_t;

/**
 * @brief Sends the claim of @p jobs (array of {delivery_id, tenant_id,
 * endpoint_id, event_id, n}, n = 1-based position; borrowed): what the
 * deliveries table holds for each, its own row (and whether it is the same
 * tenant's) or another delivery of the same tenant of the same event to the
 * same endpoint. @p with_payload: the table has migration 003 (payload,
 * replay_of). @returns NUDGEL_OK, NUDGEL_ERR_NO_MEMORY or
 * NUDGEL_ERR_PG_UNREACHABLE with the reason.
 */
nudgel_err_t wh_db_claim_send(PGconn *pg, bool with_payload, json_t *jobs, char *errstr,
                              size_t errstr_size);

/**
 * @brief The claim's result @p res (borrowed; NULL when none came) read into
 * @p out (@p count entries, in the order of the jobs sent): each row's status
 * parsed into wh_delivery_status_t, its last_error split into class and
 * message. @returns NUDGEL_OK, or NUDGEL_ERR_PG with the reason (the
 * statement failed, or a stored status is not one of the enum's).
 */
nudgel_err_t wh_db_claim_read(const PGresult *res, wh_claim_t *out, size_t count, char *errstr,
                              size_t errstr_size);

/** The statements of one flush pipeline, to read its results. */
typedef struct wh_flush_call {
    int sent;       /* statements in the pipeline */
    int disable_at; /* index of the statement disabling endpoints; -1: none */
    const char *what[8];
} wh_flush_call_t;

/**
 * @brief One transaction, sent as a pipeline ended by one sync (the caller
 * hands it over with syncs = 1): delivery rows upserted on delivery_id
 * (array of {delivery_id, tenant_id, endpoint_id, event_type, event_id,
 * status, attempts, last_status_code|null, last_error|null,
 * next_attempt_ms|null, final, payload, url|null}; payload kept when @p with_payload;
 * url, the one the attempt went to, kept when null),
 * attempt rows (array of {delivery_id, attempt, status_code|null,
 * latency_ms, error_class|null, error_message|null, response_snippet|null}),
 * endpoints that succeeded and that failed (arrays of ids), deduplicated
 * jobs (array of {delivery_id, tenant_id, endpoint_id, event_type, event_id,
 * duplicate_of}; written only when @p with_duplicates). Endpoints
 * failing without a success for longer than @p failing_window_ms are
 * disabled. Final rows are never moved back. Every statement is idempotent,
 * so a flush whose fate is unknown may be sent again. Arrays are borrowed.
 * @returns NUDGEL_OK (@p call filled), or NUDGEL_ERR_PG_UNREACHABLE with the
 * reason (the connection must be replaced: it is in pipeline mode).
 */
nudgel_err_t wh_db_flush_send(PGconn *pg, bool with_payload, json_t *attempts, json_t *deliveries,
                              json_t *succeeded, json_t *failed, json_t *duplicates,
                              int64_t failing_window_ms, wh_flush_call_t *call, char *errstr,
                              size_t errstr_size);

/**
 * @brief The results of a wh_db_flush_send() pipeline (@p results, @p n as
 * the done callback got them, borrowed). @returns NUDGEL_OK and @p *disabled
 * (a new array of {endpoint_id, tenant_id, reason}: endpoints this flush
 * disabled; the caller decrefs), or NUDGEL_ERR_PG with the first statement's
 * error (the transaction was rolled back; @p *disabled is NULL).
 */
nudgel_err_t wh_db_flush_read(const wh_flush_call_t *call, PGresult *const *results, size_t n,
                              json_t **disabled, char *errstr, size_t errstr_size);

/** An endpoint row, secrets still sealed. */
typedef struct wh_endpoint_row {
    char endpoint_id[40];
    char tenant_id[72];
    char *url; /* malloc'd */
    bool enabled;
    double rate_per_second; /* 0: unset */
    int max_concurrency;    /* 0: unset */
    unsigned char *secret;  /* PQunescapeBytea; PQfreemem */
    size_t secret_len;
    char secret_key_id[72];
    unsigned char *previous; /* NULL when none or expired */
    size_t previous_len;
    char previous_key_id[72];
    int64_t previous_expires_ms;
} wh_endpoint_row_t;

/**
 * @brief Sends the read of the endpoints @p ids (array of endpoint id
 * strings; borrowed). @returns NUDGEL_OK, NUDGEL_ERR_NO_MEMORY or
 * NUDGEL_ERR_PG_UNREACHABLE with the reason.
 */
nudgel_err_t wh_db_endpoints_send(PGconn *pg, json_t *ids, char *errstr, size_t errstr_size);

/**
 * @brief Whether @p res (borrowed; NULL when none came) is the endpoints'
 * rows. @returns the number of rows (an endpoint without a row does not
 * exist), or -1 with the statement's error in @p errstr.
 */
int wh_db_endpoints_count(const PGresult *res, char *errstr, size_t errstr_size);

/**
 * @brief Row @p r of @p res into @p row (free with wh_endpoint_row_clear()).
 * @returns NUDGEL_OK or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t wh_db_endpoint_row(const PGresult *res, int r, wh_endpoint_row_t *row);

/** @brief Frees what @p row holds and zeroes it. */
void wh_endpoint_row_clear(wh_endpoint_row_t *row);

/**
 * @brief Sends the disabling of endpoint @p endpoint_id with @p reason
 * (borrowed). Idempotent for one reason: sent again after a loss it still
 * reports the change it made the first time. @returns as wh_db_endpoints_send().
 */
nudgel_err_t wh_db_endpoint_disable_send(PGconn *pg, const char *endpoint_id, const char *reason,
                                         char *errstr, size_t errstr_size);

/**
 * @brief The disabling's result @p res: @p *changed tells whether it disabled
 * the endpoint (false: it was disabled already, for another reason).
 * @returns NUDGEL_OK or NUDGEL_ERR_PG with the reason.
 */
nudgel_err_t wh_db_endpoint_disable_read(const PGresult *res, bool *changed, char *errstr,
                                         size_t errstr_size);

/**
 * @brief Whether webhook_deliveries has the payload column (migration 003).
 * Blocking: for the start-up only, before the loop turns.
 */
bool wh_db_has_payload_column(PGconn *pg);

/**
 * @brief Whether the table webhook_duplicates exists (migration 007).
 * Blocking: for the start-up only, before the loop turns.
 */
bool wh_db_has_duplicates_table(PGconn *pg);

/* The error class of a job whose endpoint does not exist: cancelled and dead-lettered; a
 * replay of it (nudgel-replay-of) may update its cancelled row (wh_db_flush_send). */
#define WH_ENDPOINT_NOT_FOUND "endpoint_not_found"

/* The error class of a job naming an endpoint of another tenant (DESIGN §5, tenant isolation):
 * refused before anything is sent, failed event + dead letter, no delivery row. */
#define WH_ENDPOINT_TENANT_MISMATCH "endpoint_tenant_mismatch"
/* The error class of a job whose delivery id is another tenant's delivery: refused likewise. */
#define WH_DELIVERY_ID_CONFLICT "delivery_id_conflict"

#endif
