/*
 * nudgel/receipts.h — the Postgres receipts store (DESIGN §5; library
 * nudgel_receipts, used by the messages worker): the idempotency claim before
 * a carrier submission, the batched write of submission results, and DLR
 * updates, all forward-only.
 *
 * SQL: parameterised only. The claim is one call of
 * nudgel.receipt_claim() and the forward-only rule is
 * nudgel.receipt_transition_allowed(), both from
 * schemas/postgres/002_receipts_claim.sql, which also installs a trigger that
 * refuses a backwards status change from any writer.
 *
 * Connections: every function takes a connection the caller owns, idle and
 * outside a transaction block (each call is one statement, hence its own
 * transaction). Calls are synchronous (PQexecParams); the worker's event loop
 * may later send the same statements with PQsendQueryParams on a
 * non-blocking connection, which is why each operation is exactly one
 * statement. A connection is used by one thread at a time.
 *
 * Errors: NUDGEL_ERR_PG_UNREACHABLE when the connection is lost or the
 * server is going away (SQLSTATE class 08, 57P01..57P03, mapped by
 * nudgel_pg_result_err() in nudgel/pg.h): reconnect and retry.
 * NUDGEL_ERR_PG for any other statement failure (constraint, SQL,
 * deadlock). NUDGEL_ERR_INVALID_ARG for bad arguments. errstr never holds
 * the DSN.
 *
 * Ownership: nothing returned is allocated; results are copied into the
 * caller's fixed-size structs (long values are truncated to the field).
 */
#ifndef NUDGEL_RECEIPTS_H
#define NUDGEL_RECEIPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "nudgel/error.h"
#include "nudgel/job.h"
#include "nudgel/receipt_state.h"

#define NUDGEL_RECEIPTS_WORKER_ID_MAX 128  /* bytes of a worker id */
#define NUDGEL_RECEIPTS_BATCH_MAX     1000 /* items of one nudgel_receipts_record() */

/** A receipt row as stored (the fields a status event needs). */
typedef struct nudgel_receipt {
    char message_id[NUDGEL_UUID_STR_LEN + 1];
    char tenant_id[NUDGEL_TENANT_ID_MAX + 1];
    char idempotency_key[NUDGEL_IDEMPOTENCY_KEY_MAX + 1]; /* "" when none */
    char to_e164[24];
    char country[3];
    char operator_name[64];
    nudgel_receipt_state_t status;
    int attempt;
    char client_ref[64];
    char claimed_by[NUDGEL_RECEIPTS_WORKER_ID_MAX + 1];
    char gateway[64];
    char gateway_message_id[128];
    char error_code[64];
    char error_message[256];
    char encoding[8];     /* "gsm7", "ucs2" or "" */
    int segments;         /* -1 when unknown */
    char cost_amount[32]; /* decimal text, "" when unknown */
    char cost_currency[4];
    char trace_id[64];
    int64_t created_at_ms; /* epoch ms; 0 when NULL */
    int64_t submitted_at_ms;
    int64_t final_at_ms;
    int64_t updated_at_ms;
    char resent_from[NUDGEL_UUID_STR_LEN + 1]; /* the message this one resends; "" when none */
} nudgel_receipt_t;

/*
 * What a claim decided. A claim is a lease (claimed_by, claimed_at) on a row
 * in `accepted` — claimed, never handed to a gateway — until the worker marks
 * it `submitting` as its request goes out (nudgel_receipts_mark_send()), so
 * after a crash a stale lease tells whether the carrier may have the message.
 */
typedef enum nudgel_receipt_claim_outcome {
    NUDGEL_RECEIPT_CLAIM_FRESH = 0,       /* row accepted and leased, nothing sent yet: send (a
                                             new row, the API tier's, or a released or stale
                                             lease on one never handed to a gateway) */
    NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE,  /* submitting, released or stale with no request out:
                                             send again, same client_ref, attempt + 1 */
    NUDGEL_RECEIPT_CLAIM_IN_PROGRESS,     /* a fresh lease exists: retry later, do not send */
    NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL,   /* sent or final: do not send; re-emit the event */
    NUDGEL_RECEIPT_CLAIM_DEDUPLICATED,    /* key used by another message: do not send */
    NUDGEL_RECEIPT_CLAIM_OUTCOME_UNKNOWN, /* submitting, the lease went stale with a request at
                                             receipt.gateway: it may have been accepted. Ours
                                             now (attempt + 1); that gateway's unknown-outcome
                                             policy decides: resubmit or hold */
} nudgel_receipt_claim_outcome_t;

/** @brief "fresh", "resubmit_stale", "in_progress", "already_final", "deduplicated",
 * "outcome_unknown". */
const char *nudgel_receipt_claim_outcome_name(nudgel_receipt_claim_outcome_t o);

/** What a claim decided, and the row it decided on. */
typedef struct nudgel_receipt_claim {
    nudgel_receipt_claim_outcome_t outcome;
    /* The row after the claim. For DEDUPLICATED it is the *original*
       message's row: receipt.message_id is the original message id. */
    nudgel_receipt_t receipt;
} nudgel_receipt_claim_t;

/**
 * @brief Claims @p job for a carrier submission by @p worker_id, in one
 * round trip (see nudgel.receipt_claim()).
 *
 * Uses job->id, tenant_id, idempotency_key, to (and phone.country /
 * phone.operator_name when filled, else job->country) and metadata.
 * @p trace_id (may be NULL) is stored on a new row. A submitting row whose
 * claim is at least @p stale_after_ms old (set it to the gateway's HTTP
 * timeout plus a margin), or was released, is taken over. A fresh claim is
 * IN_PROGRESS even when @p worker_id holds it: @p worker_id must therefore be
 * unique per process incarnation (host, pid and start time, say).
 * Concurrent claims of one message yield exactly one FRESH.
 * @returns NUDGEL_OK and @p *out, or an error (see the file comment).
 */
nudgel_err_t nudgel_receipts_claim(PGconn *conn, const nudgel_message_job_t *job,
                                   const char *trace_id, const char *worker_id,
                                   int64_t stale_after_ms, nudgel_receipt_claim_t *out,
                                   char *errstr, size_t errstr_size);

/** One job of a batched claim (nudgel_receipts_claim_batch()). */
typedef struct nudgel_receipt_claim_request {
    const nudgel_message_job_t *job;
    const char *trace_id; /* may be NULL */
} nudgel_receipt_claim_request_t;

/**
 * @brief Claims @p n jobs (1..NUDGEL_RECEIPTS_BATCH_MAX) in one statement,
 * hence one round trip and one transaction: exactly as @p n calls of
 * nudgel_receipts_claim(), in message id order (so concurrent batches take
 * row locks in one order), with @p out[i] for @p reqs[i]. A message id
 * twice in one batch is claimed once; the second sees the first's claim
 * (IN_PROGRESS). All or nothing: on an error nothing is claimed, and a
 * statement error (NUDGEL_ERR_PG, not a lost connection) is worth retrying
 * item by item to find the culprit.
 */
nudgel_err_t nudgel_receipts_claim_batch(PGconn *conn, const nudgel_receipt_claim_request_t *reqs,
                                         size_t n, const char *worker_id, int64_t stale_after_ms,
                                         nudgel_receipt_claim_t *out, char *errstr,
                                         size_t errstr_size);

/**
 * @brief As nudgel_receipts_release() for @p n message ids at once (one
 * statement); @p *released (may be NULL) counts the claims released.
 */
nudgel_err_t nudgel_receipts_release_batch(PGconn *conn, const char *const *message_ids, size_t n,
                                           const char *worker_id, size_t *released, char *errstr,
                                           size_t errstr_size);

/**
 * @brief Releases @p worker_id's claim on an accepted or submitting row
 * (after a definite transient failure that goes to a retry topic, or a job
 * handed back unsent at shutdown), so the next claim takes it over at once
 * (FRESH or RESUBMIT_STALE) instead of waiting for staleness; the release
 * also clears handed_at: the next send is without doubt.
 * @returns NUDGEL_OK with @p *released (may be NULL) telling whether a claim
 * of @p worker_id was released, or an error.
 */
nudgel_err_t nudgel_receipts_release(PGconn *conn, const char *message_id, const char *worker_id,
                                     bool *released, char *errstr, size_t errstr_size);

/** One submission result to record. Strings may be NULL: the stored value is kept. */
typedef struct nudgel_receipt_result {
    const char *message_id;        /* required */
    nudgel_receipt_state_t status; /* the state to move to */
    const char *gateway;
    const char *gateway_message_id;
    const char *error_code;
    const char *error_message;
    const char *encoding;      /* "gsm7" or "ucs2" */
    int segments;              /* < 0: keep */
    const char *cost_amount;   /* decimal text, "0.8000" */
    const char *cost_currency; /* "KES", "NGN", "UGX", "USD" */
    const char *event_id;      /* deterministic status event id, stored on the history row */
} nudgel_receipt_result_t;

typedef enum nudgel_receipt_apply {
    NUDGEL_RECEIPT_APPLIED = 0, /* moved, history row written */
    NUDGEL_RECEIPT_UNCHANGED,   /* already in that state: a replay, nothing written */
    NUDGEL_RECEIPT_REFUSED,     /* a backwards or sideways move: nothing written */
    NUDGEL_RECEIPT_NOT_FOUND,   /* no such receipt */
} nudgel_receipt_apply_t;

/** @brief "applied", "unchanged", "refused", "not_found". */
const char *nudgel_receipt_apply_name(nudgel_receipt_apply_t a);

/** What happened to one item. */
typedef struct nudgel_receipt_applied {
    nudgel_receipt_apply_t outcome;
    nudgel_receipt_state_t from; /* status before (APPLIED) */
    nudgel_receipt_state_t now;  /* status after; for REFUSED the status that won */
} nudgel_receipt_applied_t;

/**
 * @brief Records @p n results (1..NUDGEL_RECEIPTS_BATCH_MAX, each message
 * id at most once) in one statement, so all or none are written. An item is
 * applied only if nudgel.receipt_transition_allowed(current, new) holds
 * under the row lock, so a late writer can never move a row backwards;
 * rows are locked in message id order, so concurrent batches do not
 * deadlock. Each applied item writes one history row (from, to) with
 * ON CONFLICT DO NOTHING. submitted_at is set when leaving submitting,
 * final_at when reaching a final state, updated_at always.
 * @returns NUDGEL_OK and @p outcomes[i] for @p results[i], or an error
 * (nothing written).
 */
nudgel_err_t nudgel_receipts_record(PGconn *conn, const nudgel_receipt_result_t *results, size_t n,
                                    nudgel_receipt_applied_t *outcomes, char *errstr,
                                    size_t errstr_size);

/* ---- the same statements, sent and read apart (event loops) ------------
 *
 * For a connection in non-blocking mode driven by an event loop:
 * *_send() queues the statement (PQsendQueryParams; the caller flushes
 * with PQflush() and waits for the socket), the loop collects the result
 * with PQconsumeInput()/PQisBusy()/PQgetResult() and passes it to *_read(),
 * then reads PQgetResult() until NULL. Errors as the blocking forms.
 */

/**
 * @brief Sends the fast path of a batched claim: one set-based INSERT of
 * every message that has no row yet and whose idempotency key is free
 * (FRESH, attempt 1). The others — already known, key taken, an id repeated
 * in the batch — are left unclaimed for the full protocol
 * (nudgel_receipts_claim_batch_send()). nudgel_receipts_claim_batch() is
 * the two in sequence.
 */
nudgel_err_t nudgel_receipts_claim_fresh_send(PGconn *conn,
                                              const nudgel_receipt_claim_request_t *reqs, size_t n,
                                              const char *worker_id, char *errstr,
                                              size_t errstr_size);

/** @brief Reads it: @p claimed[i] and @p out[i] (FRESH) for each job it inserted. */
nudgel_err_t nudgel_receipts_claim_fresh_read(PGconn *conn, const PGresult *res, size_t n,
                                              nudgel_receipt_claim_t *out, bool *claimed,
                                              char *errstr, size_t errstr_size);

/** @brief Sends the statement of the full protocol for every job (nudgel.receipt_claim()). */
nudgel_err_t nudgel_receipts_claim_batch_send(PGconn *conn,
                                              const nudgel_receipt_claim_request_t *reqs, size_t n,
                                              const char *worker_id, int64_t stale_after_ms,
                                              char *errstr, size_t errstr_size);

/** @brief Reads its result into @p out[0..n). */
nudgel_err_t nudgel_receipts_claim_batch_read(PGconn *conn, const PGresult *res, size_t n,
                                              nudgel_receipt_claim_t *out, char *errstr,
                                              size_t errstr_size);

/**
 * @brief Sends the statement of nudgel_receipts_record() for @p n results
 * (may be 0) and, in the same statement and transaction, releases
 * @p worker_id's claims on @p release_ids (may be 0 of them; not both 0).
 */
nudgel_err_t nudgel_receipts_record_send(PGconn *conn, const nudgel_receipt_result_t *results,
                                         size_t n, const char *const *release_ids,
                                         size_t release_count, const char *worker_id, char *errstr,
                                         size_t errstr_size);

/** @brief Reads its result into @p outcomes[0..n). */
nudgel_err_t nudgel_receipts_record_read(PGconn *conn, const PGresult *res,
                                         const nudgel_receipt_result_t *results, size_t n,
                                         nudgel_receipt_applied_t *outcomes, char *errstr,
                                         size_t errstr_size);

/** One job of a hand-over mark: its request goes to @p gateway now. */
typedef struct nudgel_receipt_mark {
    const char *message_id;
    const char *gateway;
} nudgel_receipt_mark_t;

/**
 * @brief Sends the hand-over mark of @p n jobs (1..NUDGEL_RECEIPTS_BATCH_MAX,
 * each id once) in one statement: each row still leased by @p worker_id
 * becomes `submitting` with handed_at = now and gateway = its gateway (an
 * accepted one with a history row accepted → submitting). Only a marked job
 * may be sent: a row whose lease another worker took over is not marked.
 * Written before the requests go out, so a crash after it leaves the doubt
 * on the row (NUDGEL_RECEIPT_CLAIM_OUTCOME_UNKNOWN), and one before it
 * leaves none (FRESH).
 */
nudgel_err_t nudgel_receipts_mark_send(PGconn *conn, const nudgel_receipt_mark_t *marks, size_t n,
                                       const char *worker_id, char *errstr, size_t errstr_size);

/** @brief Reads it: @p marked[i] for @p marks[i]. */
nudgel_err_t nudgel_receipts_mark_read(PGconn *conn, const PGresult *res, size_t n, bool *marked,
                                       char *errstr, size_t errstr_size);

/** @brief The two above in one blocking call (tests, tools). */
nudgel_err_t nudgel_receipts_mark(PGconn *conn, const nudgel_receipt_mark_t *marks, size_t n,
                                  const char *worker_id, bool *marked, char *errstr,
                                  size_t errstr_size);

/** A carrier delivery report, already normalised. */
typedef struct nudgel_receipt_dlr {
    const char *gateway;            /* required */
    const char *gateway_message_id; /* required */
    nudgel_receipt_state_t status;  /* delivered, undelivered or expired, usually */
    const char *error_code;         /* NULL: keep */
    const char *error_message;      /* NULL: keep */
    const char *event_id;           /* for the history row; may be NULL */
} nudgel_receipt_dlr_t;

typedef struct nudgel_receipt_dlr_outcome {
    nudgel_receipt_apply_t outcome; /* of the first matching row */
    nudgel_receipt_state_t from;
    nudgel_receipt_state_t now;
    int matched; /* rows with that (gateway, gateway_message_id); 0 = NOT_FOUND */
    char message_id[NUDGEL_UUID_STR_LEN + 1];
    char tenant_id[NUDGEL_TENANT_ID_MAX + 1];
} nudgel_receipt_dlr_outcome_t;

/**
 * @brief Applies a DLR to the receipt(s) with (gateway, gateway_message_id),
 * forward-only as nudgel_receipts_record(), in one statement.
 * @returns NUDGEL_OK and @p *out, or an error.
 */
nudgel_err_t nudgel_receipts_apply_dlr(PGconn *conn, const nudgel_receipt_dlr_t *dlr,
                                       nudgel_receipt_dlr_outcome_t *out, char *errstr,
                                       size_t errstr_size);

#endif
