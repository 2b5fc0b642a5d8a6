/*
 * nudgel/receipt_events.h — the status event of a receipt (DESIGN §4:
 * CloudEvents 1.0, type ai.nudgel.message.<status>, data with the receipt
 * fields), built the same way by every role that moves a receipt: the
 * messages worker (from its job) and nudgel-receipts (from the receipt row).
 * The event id is deterministic (nudgel_event_id(): subject, type, attempt),
 * so the same transition always yields the same id, whoever publishes it.
 *
 * Ownership: the fields are borrowed for the call; metadata is not stolen
 * (the data takes its own reference). Pure, any thread.
 */
#ifndef NUDGEL_RECEIPT_EVENTS_H
#define NUDGEL_RECEIPT_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

/** What a receipt's event says. NULL or "" strings are left out of data. */
typedef struct nudgel_receipt_event_fields {
    const char *message_id; /* required */
    const char *tenant_id;  /* required */
    const char *idempotency_key;
    const char *to;
    const char *country;
    const char *operator_name; /* predicted from the prefix */
    const char *gateway;
    const char *gateway_message_id;
    const char *status;        /* "sent", "delivered", ...: required */
    const char *error_code;    /* error present only with a code */
    const char *error_message; /* "" when NULL */
    bool error_permanent;
    const char *encoding; /* with segments; NULL: neither */
    int segments;
    const char *cost_amount; /* cost present only with both */
    const char *cost_currency;
    int attempt;
    json_t *metadata; /* borrowed; NULL: none */
} nudgel_receipt_event_fields_t;

/**
 * @brief The data object of a message status event (keys in the contract's
 * order). @returns a new reference, or NULL when out of memory.
 */
json_t *nudgel_receipt_event_data(const nudgel_receipt_event_fields_t *f);

/**
 * @brief The CloudEvent of @p status ("delivered" → type
 * ai.nudgel.message.delivered) about @p subject for @p tenant, from
 * @p source ("/nudgel/messages", "/nudgel/receipts"), id from (subject,
 * type, @p attempt). Steals @p data; @p traceparent may be NULL.
 * @returns a new reference, or NULL when out of memory.
 */
json_t *nudgel_receipt_event_build(const char *source, const char *status, const char *subject,
                                   const char *tenant, int attempt, int64_t time_ms,
                                   const char *traceparent, json_t *data);

#endif
