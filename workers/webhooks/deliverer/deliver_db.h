/*
 * deliver_db.h — the deliverer's Postgres statements (nudgel-webhooks only).
 *
 * Rows travel as one JSON array parameter per statement (jsonb_to_recordset),
 * so a batch of any size is one round trip and nothing is spliced into SQL.
 * Claims and flushes come in send/read halves for a non-blocking connection
 * (one statement, or one pipeline, in flight per connection); the blocking
 * versions remain for the rest.
 */
#ifndef NUDGEL_DELIVER_DB_H
#define NUDGEL_DELIVER_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "nudgel/error.h"

/** What the deliveries table says of one claimed job. */
typedef struct wh_claim {
    bool fresh;      /* the row was created now, or exists and is not final */
    bool final;      /* the delivery already ended: send nothing */
    bool duplicate;  /* another delivery of the same (endpoint, event) exists */
    char status[16]; /* the row's status when it existed */
    int attempts;    /* attempts recorded so far */
    int last_status_code;
    char last_error[256];
} wh_claim_t;

/**
 * @brief Reads what the deliveries table holds for each job of @p jobs
 * (array of {delivery_id, endpoint_id, event_id, n}, n = 1-based position)
 * into @p out (same order, @p count entries): its own row, or another
 * delivery of the same event to the same endpoint. @p with_payload: the
 * table has migration 003 (payload, replay_of). @returns NUDGEL_OK,
 * NUDGEL_ERR_PG or NUDGEL_ERR_PG_UNREACHABLE with the reason.
 */
nudgel_err_t wh_db_claim(PGconn *pg, bool with_payload, json_t *jobs, wh_claim_t *out, size_t count,
                         char *errstr, size_t errstr_size);

/** @brief wh_db_claim()'s statement, sent (PQsendQueryParams); the caller flushes. */
nudgel_err_t wh_db_claim_send(PGconn *pg, bool with_payload, json_t *jobs, char *errstr,
                              size_t errstr_size);

/** @brief wh_db_claim()'s result @p res read into @p out (@p count entries). */
nudgel_err_t wh_db_claim_read(PGconn *pg, const PGresult *res, wh_claim_t *out, size_t count,
                              char *errstr, size_t errstr_size);

/**
 * @brief One transaction: delivery rows upserted on delivery_id (array of
 * {delivery_id, tenant_id, endpoint_id, event_type, event_id, status,
 * attempts, last_status_code|null, last_error|null, next_attempt_ms|null,
 * final, payload}; payload kept when @p with_payload), attempt rows (array of
 * {delivery_id, attempt, status_code|null, latency_ms, error_class|null,
 * error_message|null, response_snippet|null}), endpoints that succeeded and that failed (arrays of
 * ids). Endpoints failing without a success for longer than @p failing_window_ms are disabled;
 * their ids and tenants come back in @p *disabled (a new array of
 * {endpoint_id, tenant_id, reason}; the caller decrefs). Final rows are never
 * moved back. @returns NUDGEL_OK, NUDGEL_ERR_PG or NUDGEL_ERR_PG_UNREACHABLE.
 */
nudgel_err_t wh_db_flush(PGconn *pg, bool with_payload, json_t *attempts, json_t *deliveries,
                         json_t *succeeded, json_t *failed, int64_t failing_window_ms,
                         json_t **disabled, char *errstr, size_t errstr_size);

/** A wh_db_flush() sent as one pipeline (one implicit transaction up to its sync). */
typedef struct wh_flush_call {
    int sent;       /* statements in the pipeline */
    int got;        /* their results read so far */
    int disable_at; /* index of the statement disabling endpoints; -1: none */
    const char *what[8];
    bool last_null;   /* the previous PQgetResult() was NULL */
    nudgel_err_t err; /* the first statement error */
    char errstr[512];
    json_t *disabled; /* as wh_db_flush()'s, once done without error; the caller decrefs */
} wh_flush_call_t;

/**
 * @brief wh_db_flush()'s statements sent in pipeline mode on @p pg (idle,
 * non-blocking), then a sync; the caller flushes. On error the connection
 * must be replaced.
 */
nudgel_err_t wh_db_flush_send(PGconn *pg, bool with_payload, json_t *attempts, json_t *deliveries,
                              json_t *succeeded, json_t *failed, int64_t failing_window_ms,
                              wh_flush_call_t *call, char *errstr, size_t errstr_size);

/**
 * @brief Reads what has arrived of a wh_db_flush_send(): 1 when all of it
 * has (@p call->err, @p call->disabled; pipeline mode left), 0 while it
 * runs, -1 when the connection is lost (the transaction's fate unknown).
 */
int wh_db_flush_poll(PGconn *pg, wh_flush_call_t *call);

/** An endpoint row, secrets still sealed. */
typedef struct wh_endpoint_row {
    bool found;
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

/** @brief Reads endpoint @p endpoint_id. Free with wh_endpoint_row_clear(). */
nudgel_err_t wh_db_endpoint_load(PGconn *pg, const char *endpoint_id, wh_endpoint_row_t *row,
                                 char *errstr, size_t errstr_size);

void wh_endpoint_row_clear(wh_endpoint_row_t *row);

/**
 * @brief Disables an endpoint with @p reason (no-op when already disabled).
 * @p *changed tells whether this call disabled it.
 */
nudgel_err_t wh_db_endpoint_disable(PGconn *pg, const char *endpoint_id, const char *reason,
                                    bool *changed, char *errstr, size_t errstr_size);

/** @brief Whether webhook_deliveries has the payload column (migration 003). */
bool wh_db_has_payload_column(PGconn *pg);

/** @brief NUDGEL_ERR_PG or NUDGEL_ERR_PG_UNREACHABLE by the connection's state. */
nudgel_err_t wh_db_err(PGconn *pg);

#endif
