/*
 * topics.c — the topic contract. Retry tiers: messages 5 s, 30 s, 2 min,
 * 10 min; webhooks follow Svix's ladder 5 s, 5 min, 30 min, 2 h, 5 h, 10 h
 * (the second 10 h hop reuses the 10 h tier with a higher nudgel-attempt).
 */
#include "nudgel/topics.h"

static const nudgel_topic_spec_t topics[] = {
    {NUDGEL_TOPIC_MESSAGES, NUDGEL_TOPIC_CLASS_JOBS, 0},
    {NUDGEL_TOPIC_WEBHOOKS, NUDGEL_TOPIC_CLASS_JOBS, 0},
    {"nudgel.messages.retry.5s", NUDGEL_TOPIC_CLASS_RETRY, 5000},
    {"nudgel.messages.retry.30s", NUDGEL_TOPIC_CLASS_RETRY, 30000},
    {"nudgel.messages.retry.2m", NUDGEL_TOPIC_CLASS_RETRY, 120000},
    {"nudgel.messages.retry.10m", NUDGEL_TOPIC_CLASS_RETRY, 600000},
    {"nudgel.webhooks.retry.5s", NUDGEL_TOPIC_CLASS_RETRY, 5000},
    {"nudgel.webhooks.retry.5m", NUDGEL_TOPIC_CLASS_RETRY, 300000},
    {"nudgel.webhooks.retry.30m", NUDGEL_TOPIC_CLASS_RETRY, 1800000},
    {"nudgel.webhooks.retry.2h", NUDGEL_TOPIC_CLASS_RETRY, 7200000},
    {"nudgel.webhooks.retry.5h", NUDGEL_TOPIC_CLASS_RETRY, 18000000},
    {"nudgel.webhooks.retry.10h", NUDGEL_TOPIC_CLASS_RETRY, 36000000},
    {NUDGEL_TOPIC_MESSAGES_DLQ, NUDGEL_TOPIC_CLASS_DLQ, 0},
    {NUDGEL_TOPIC_WEBHOOKS_DLQ, NUDGEL_TOPIC_CLASS_DLQ, 0},
    {NUDGEL_TOPIC_STATUS, NUDGEL_TOPIC_CLASS_STATUS, 0},
    {NUDGEL_TOPIC_CARRIER_DLR, NUDGEL_TOPIC_CLASS_DLR, 0},
};

const nudgel_topic_spec_t *nudgel_topics_all(size_t *count)
{
    *count = sizeof(topics) / sizeof(topics[0]);
    return topics;
}

const char *nudgel_topic_class_name(nudgel_topic_class_t topic_class)
{
    switch (topic_class) {
    case NUDGEL_TOPIC_CLASS_JOBS:
        return "jobs";
    case NUDGEL_TOPIC_CLASS_RETRY:
        return "retry";
    case NUDGEL_TOPIC_CLASS_DLQ:
        return "dlq";
    case NUDGEL_TOPIC_CLASS_STATUS:
        return "status";
    case NUDGEL_TOPIC_CLASS_DLR:
        return "dlr";
    }
    return "jobs";
}
