/*
 * nudgel/kafka_ready.h — the one rule that turns a consumer's health
 * (nudgel/kafka_health.h) into readiness (nudgel/readiness.h), the same for
 * every role (DESIGN §8): ready once statistics have arrived (and are not
 * stale), a broker is up, the group's coordinator is known and the join has
 * settled. A settled join that assigned no partition is ready too: more
 * workers than partitions is idle by design.
 *
 * Threads: pure functions; any thread.
 */
#ifndef NUDGEL_KAFKA_READY_H
#define NUDGEL_KAFKA_READY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/kafka_health.h"
#include "nudgel/readiness.h"

/** Statistics older than this mean librdkafka (or the loop serving it) is stuck. */
#define NUDGEL_KAFKA_READY_STALE_US (15 * 1000000LL)

/**
 * @brief Whether the consumer whose health is @p h may be called ready at
 * @p now_us (nudgel_mono_us()). When not, @p why receives the reason,
 * prefixed with "@p name consumer: " when @p name is not NULL.
 */
bool nudgel_kafka_consumer_ready(const nudgel_kafka_health_t *h, const char *name, int64_t now_us,
                                 char *why, size_t why_size);

/**
 * @brief Sets @p cond from the health of @p n consumers (@p names may be
 * NULL): ok when every one is ready, else not ok with the first one's
 * reason.
 */
void nudgel_kafka_ready_set(nudgel_ready_cond_t *cond, const nudgel_kafka_health_t *const *h,
                            const char *const *names, size_t n, int64_t now_us);

#endif
