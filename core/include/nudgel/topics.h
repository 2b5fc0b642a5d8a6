/*
 * nudgel/topics.h — the topic contract of DESIGN §4.
 */
#ifndef NUDGEL_TOPICS_H
#define NUDGEL_TOPICS_H

#include <stddef.h>

#define NUDGEL_TOPIC_MESSAGES     "nudgel.messages.v1"
#define NUDGEL_TOPIC_WEBHOOKS     "nudgel.webhooks.v1"
#define NUDGEL_TOPIC_MESSAGES_DLQ "nudgel.messages.dlq.v1"
#define NUDGEL_TOPIC_WEBHOOKS_DLQ "nudgel.webhooks.dlq.v1"
#define NUDGEL_TOPIC_STATUS       "nudgel.delivery-status.v1"
#define NUDGEL_TOPIC_CARRIER_DLR  "nudgel.carrier-dlr.v1"

/* Header names (DESIGN §4). */
#define NUDGEL_HDR_SCHEMA          "nudgel-schema"
#define NUDGEL_HDR_TENANT          "nudgel-tenant"
#define NUDGEL_HDR_IDEMPOTENCY_KEY "idempotency-key"
#define NUDGEL_HDR_TRACEPARENT     "traceparent"
#define NUDGEL_HDR_CONTENT_TYPE    "content-type"
#define NUDGEL_HDR_ATTEMPT         "nudgel-attempt"
#define NUDGEL_HDR_NOT_BEFORE      "nudgel-not-before"
#define NUDGEL_HDR_FIRST_SEEN      "nudgel-first-seen"
#define NUDGEL_HDR_LAST_ERROR      "nudgel-last-error"
#define NUDGEL_HDR_DLQ_REASON      "nudgel-dlq-reason"
#define NUDGEL_HDR_ORIGIN          "nudgel-origin"
#define NUDGEL_HDR_DLQ_TRUNCATED   "nudgel-dlq-truncated" /* original bytes; value is a prefix */

#define NUDGEL_SCHEMA_MESSAGE_JOB_V1  "message.job/v1"
#define NUDGEL_SCHEMA_WEBHOOK_JOB_V1  "webhook.job/v1"
#define NUDGEL_SCHEMA_STATUS_EVENT_V1 "status.event/v1"
#define NUDGEL_SCHEMA_CARRIER_DLR_V1  "carrier.dlr/v1"

typedef enum nudgel_topic_class {
    NUDGEL_TOPIC_CLASS_JOBS,
    NUDGEL_TOPIC_CLASS_RETRY,
    NUDGEL_TOPIC_CLASS_DLQ,
    NUDGEL_TOPIC_CLASS_STATUS,
    NUDGEL_TOPIC_CLASS_DLR,
} nudgel_topic_class_t;

typedef struct nudgel_topic_spec {
    const char *name;
    nudgel_topic_class_t topic_class;
    long long delay_ms; /* retry tiers: the fixed delay of the tier; 0 otherwise */
} nudgel_topic_spec_t;

/** @brief Every topic of the contract, retry tiers included. @p count receives the length. */
const nudgel_topic_spec_t *nudgel_topics_all(size_t *count);

#define NUDGEL_RETRY_TIERS_MAX 8

/**
 * @brief The retry tiers of a job family ("messages" or "webhooks"), the one
 * place they are defined: @p tiers receives up to @p max of them in
 * ascending delay order. @returns how many there are (0 for an unknown family).
 */
size_t nudgel_topics_retry_tiers(const char *family, const nudgel_topic_spec_t **tiers, size_t max);

/** @brief "jobs", "retry", "dlq", "status" or "dlr". */
const char *nudgel_topic_class_name(nudgel_topic_class_t topic_class);

#endif
