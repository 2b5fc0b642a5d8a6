/*
 * nudgel/event.h — CloudEvents 1.0 status events (schemas/status.event.v1.schema.json).
 *
 * Event ids are deterministic: the same (subject, type, attempt) always yields
 * the same id, so consumers can drop a redelivered event by id.
 */
#ifndef NUDGEL_EVENT_H
#define NUDGEL_EVENT_H

#include <stdint.h>

#include <jansson.h>

#define NUDGEL_EVENT_ID_LEN 36

/**
 * @brief Deterministic event id: a UUIDv8-shaped hex form of
 * SHA-256(subject "\n" type "\n" attempt). Writes a NUL-terminated string.
 */
void nudgel_event_id(const char *subject, const char *type, int attempt,
                     char out[NUDGEL_EVENT_ID_LEN + 1]);

/**
 * @brief Builds a structured-mode CloudEvent. Steals @p data.
 * @p traceparent may be NULL. @returns a new reference, NULL on ENOMEM.
 */
json_t *nudgel_event_build(const char *source, const char *type, const char *subject,
                           const char *tenant_id, int attempt, int64_t time_ms,
                           const char *traceparent, json_t *data);

#endif
