/*
 * nudgel/receipt_event.h — the one builder of a message status event's data
 * (DESIGN §4: ai.nudgel.message.*), from a receipt row (nudgel_receipt_t).
 *
 * Every emission of a message event goes through it: the first one (the row
 * the worker just wrote, composed with nudgel_receipt_from_job() and
 * nudgel_receipt_apply_result() from exactly what it sent to Postgres) and
 * every re-emission (the row read back by a claim: a redelivery after a
 * crash, `nudgel-admin dlq replay`). So the same event id always carries
 * the same data (issue 10, item 9): nothing in it may come from anything
 * but the row, the event's attempt and the job's metadata.
 *
 * The cost is decimal text normalised once, here, the way the column stores
 * it: rounded to 6 decimal places (numeric(14,6), half away from zero), then
 * written without trailing zeros ("0.8000" and "0.800000" are both "0.8").
 *
 * Threading: pure functions, any thread. Ownership on each function.
 */
#ifndef NUDGEL_RECEIPT_EVENT_H
#define NUDGEL_RECEIPT_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nudgel/job.h"
#include "nudgel/receipts.h"

/** Decimal places of message_receipts.cost_amount. */
#define NUDGEL_RECEIPT_COST_SCALE 6
/** Bytes of a normalised cost with its NUL (as nudgel_receipt_t.cost_amount). */
#define NUDGEL_RECEIPT_COST_TEXT_MAX 32

/**
 * @brief Normalises the decimal text @p in ("0.8000", "+12", "0.800000")
 * into @p out: rounded to NUDGEL_RECEIPT_COST_SCALE places, half away from
 * zero, no trailing zeros, no "+", no "-" on zero ("0.8", "12", "0").
 * @returns false (and @p out "") when @p in is not a decimal as Postgres
 * reads one ([+-]digits[.digits]; ".5" and "1." too) or
 * @p out is too small.
 */
bool nudgel_receipt_cost_normalize(const char *in, char *out, size_t out_size);

/**
 * @brief The row a claim of @p job (borrowed) creates: message id, tenant,
 * idempotency key, to/country/operator as the claim stores them
 * (phone.e164, else to; phone.country, else the country hint), status
 * submitting, no outcome yet (segments -1). @p resent_from (may be NULL or
 * ""): the claimed row's link to an original message.
 */
void nudgel_receipt_from_job(const nudgel_message_job_t *job, const char *resent_from,
                             nudgel_receipt_t *row);

/**
 * @brief Applies @p result to @p row as nudgel_receipts_record() applies it
 * to the stored row: the status, and every non-NULL field (segments when
 * >= 0); the cost normalised (nudgel_receipt_cost_normalize()).
 */
void nudgel_receipt_apply_result(nudgel_receipt_t *row, const nudgel_receipt_result_t *result);

/**
 * @brief The data of the status event @p status ("sent", "failed",
 * "deduplicated", ...) about @p row, as a new object (NULL when out of
 * memory): message_id, tenant_id, idempotency_key, to, country, operator,
 * gateway, gateway_message_id, status, error {code, message, permanent},
 * encoding, segments, cost {amount, currency}, attempt, resent_from,
 * metadata — each only when known. error.permanent follows from the status
 * (failed, rejected, expired, undelivered). @p metadata (borrowed, may be
 * NULL) is the job's, copied by reference.
 */
json_t *nudgel_receipt_event_data(const nudgel_receipt_t *row, const char *status, int attempt,
                                  json_t *metadata);

/**
 * @brief The CloudEvent of @p status ("delivered" → type
 * ai.nudgel.message.delivered) about @p subject for @p tenant, from
 * @p source ("/nudgel/messages", "/nudgel/receipts"), id from (subject,
 * type, @p attempt): every role that moves a receipt (the messages worker,
 * nudgel-receipts) publishes through it, so the same transition yields the
 * same id whoever publishes it. Steals @p data; @p traceparent may be NULL.
 * @returns a new reference, or NULL when out of memory.
 */
json_t *nudgel_receipt_event_build(const char *source, const char *status, const char *subject,
                                   const char *tenant, int attempt, int64_t time_ms,
                                   const char *traceparent, json_t *data);

#endif
