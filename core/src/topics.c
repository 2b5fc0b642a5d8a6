/*
 * topics.c — the topic contract. Retry tiers: messages 5 s, 30 s, 2 min,
 * 10 min; webhooks follow Svix's ladder 5 s, 5 min, 30 min, 2 h, 5 h, 10 h
 * (the second 10 h hop reuses the 10 h tier with a higher nudgel-attempt).
 */
#include "nudgel/topics.h"

#include <stdio.h>
#include <string.h>

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

size_t nudgel_topics_retry_tiers(const char *family, const nudgel_topic_spec_t **tiers, size_t max)
{
    char prefix[64];
    int n = snprintf(prefix, sizeof(prefix), "nudgel.%s.retry.", family ? family : "");
    size_t count = 0;
    if (n <= 0 || (size_t)n >= sizeof(prefix))
        return 0;
    /* The table lists each family's tiers in ascending delay order. */
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        if (topics[i].topic_class != NUDGEL_TOPIC_CLASS_RETRY ||
            strncmp(topics[i].name, prefix, (size_t)n) != 0)
            continue;
        if (count < max)
            tiers[count] = &topics[i];
        count++;
    }
    return count;
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
