/*
 * kafka_ready.c — see nudgel/kafka_ready.h.
 */
#include "nudgel/kafka_ready.h"

#include <stdio.h>

bool nudgel_kafka_consumer_ready(const nudgel_kafka_health_t *h, const char *name, int64_t now_us,
                                 char *why, size_t why_size)
{
    char prefix[96] = "";
    if (name)
        snprintf(prefix, sizeof(prefix), "%s consumer: ", name);
    if (!h->stats_at_us)
        snprintf(why, why_size, "%sno statistics from librdkafka yet", prefix);
    else if (now_us - h->stats_at_us > NUDGEL_KAFKA_READY_STALE_US)
        snprintf(why, why_size, "%sno statistics for %lld s", prefix,
                 (long long)((now_us - h->stats_at_us) / 1000000));
    else if (h->all_brokers_down || h->brokers_up == 0)
        snprintf(why, why_size, "%sno Kafka broker up (%d known)", prefix, h->brokers_known);
    else if (!h->group_up)
        snprintf(why, why_size, "%sgroup coordinator not known (state %s)", prefix,
                 h->group_state[0] ? h->group_state : "unknown");
    else if (!h->group_steady)
        snprintf(why, why_size, "%sjoining its group (%s)", prefix,
                 h->join_state[0] ? h->join_state : "unknown");
    else
        return true;
    return false;
}

void nudgel_kafka_ready_set(nudgel_ready_cond_t *cond, const nudgel_kafka_health_t *const *h,
                            const char *const *names, size_t n, int64_t now_us)
{
    char why[NUDGEL_READY_REASON_MAX];
    for (size_t i = 0; i < n; i++) {
        if (!nudgel_kafka_consumer_ready(h[i], names ? names[i] : NULL, now_us, why, sizeof(why))) {
            nudgel_ready_set(cond, NUDGEL_READY_NOT_OK, why);
            return;
        }
    }
    nudgel_ready_ok(cond);
}
