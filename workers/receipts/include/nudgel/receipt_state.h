/*
 * nudgel/receipt_state.h — the forward-only state machine of message receipts
 * (DESIGN §5). Pure: no I/O, no allocation.
 *
 *   accepted   -> submitting | failed | rejected | expired
 *   submitting -> sent | failed | rejected | expired
 *   sent       -> delivered | undelivered | expired
 *   failed, rejected, delivered, undelivered, expired: final
 *
 * Decisions beyond the design's one-line arrow:
 * - accepted is a claimed message never handed to a gateway (the messages
 *   worker's lease); it may end failed or rejected before any submission
 *   (no route, a missing template, every circuit open to the end of its
 *   retries), as well as expired. submitting means a request went out.
 * - expired is reachable from accepted and submitting (the job's expires_at
 *   passed before it was sent) as well as from sent (a carrier's DLR).
 * - failed and rejected are final: a carrier that refuses after the gateway
 *   accepted reports it by DLR, which the DLR normaliser maps to undelivered.
 * - No state moves to itself: a repeat is a replay, which callers report as
 *   "unchanged", not as a transition (and it writes no history row).
 * - sent is not final but is past the point of sending: a claim on a sent
 *   row does not send again.
 *
 * The same table lives in SQL as nudgel.receipt_transition_allowed()
 * (schemas/postgres/002_receipts_claim.sql); the integration test checks
 * the two agree on every pair.
 */
#ifndef NUDGEL_RECEIPT_STATE_H
#define NUDGEL_RECEIPT_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include "nudgel/error.h"

typedef enum nudgel_receipt_state {
    NUDGEL_RECEIPT_ACCEPTED = 0,
    NUDGEL_RECEIPT_SUBMITTING,
    NUDGEL_RECEIPT_SENT,
    NUDGEL_RECEIPT_FAILED,
    NUDGEL_RECEIPT_REJECTED,
    NUDGEL_RECEIPT_DELIVERED,
    NUDGEL_RECEIPT_UNDELIVERED,
    NUDGEL_RECEIPT_EXPIRED,
} nudgel_receipt_state_t;

#define NUDGEL_RECEIPT_STATE_COUNT 8

/** @brief Whether @p s is one of the enum's values. */
bool nudgel_receipt_state_valid(nudgel_receipt_state_t s);

/**
 * @brief Whether a receipt may move from @p from to @p to.
 * @returns false for a state to itself, for any backwards or sideways move,
 * and for values outside the enum.
 */
bool nudgel_receipt_transition_allowed(nudgel_receipt_state_t from, nudgel_receipt_state_t to);

/** @brief Whether no transition leaves @p s (failed, rejected, delivered, undelivered, expired). */
bool nudgel_receipt_state_is_final(nudgel_receipt_state_t s);

/**
 * @brief Whether a claim on a receipt in @p s must not send again: sent or
 * final.
 */
bool nudgel_receipt_state_is_past_send(nudgel_receipt_state_t s);

/**
 * @brief The state's name as stored in nudgel.message_receipts.status and
 * used in event types ("delivered"). @returns a static string; "unknown" for
 * a value outside the enum.
 */
const char *nudgel_receipt_state_name(nudgel_receipt_state_t s);

/**
 * @brief Parses a stored name (exact, lower case).
 * @returns NUDGEL_OK and @p *out, or NUDGEL_ERR_INVALID_FIELD with a reason
 * in @p errstr (which may be NULL when @p errstr_size is 0).
 */
nudgel_err_t nudgel_receipt_state_parse(const char *name, nudgel_receipt_state_t *out, char *errstr,
                                        size_t errstr_size);

#endif
