/*
 * nudgel/retry_tiers.h — the delay-tier retry topics, decided once for every
 * role (DESIGN §5 "Retries"): which tier a retry hop is published to, and
 * what the consumer of a tier does with the job at the head of a partition.
 *
 * A tier is a topic with a fixed delay D and a granularity g (half of D, at
 * least NUDGEL_RETRY_GRANULARITY_MIN_MS). A tier serves the waits of its
 * band, D - g/2 .. D + g/2 (0.75 D .. 1.25 D): hops published to it one after
 * the other are then due in the order they were published, within g, so its
 * consumer may pause a partition until its head is due. The ±20% jitter of
 * the webhook ladder stays inside one band, so jittered hops never hop on.
 *
 * - Publishing: a hop goes to the tier of its real wait (jitter and
 *   Retry-After included): the largest tier whose band starts at or below
 *   the wait (nudgel_retry_tier_for_wait()); a wait below every band goes
 *   to the smallest tier.
 * - Consuming: a head due within its tier's band is waited on (the partition
 *   paused until then). A head due later than that — a Retry-After, a wait
 *   for another worker's claim, a wait between two bands — would hold back
 *   every hop behind it: it hops on instead, published again unchanged
 *   (same key, value and headers: attempt, not-before, first-seen, last
 *   error) to the tier of its remaining wait, possibly the same one, and the
 *   partition moves on. A hop-on is not a retry attempt. It happens only
 *   when the partition holds records behind the head (else the head is
 *   looked at again within g) and at most once per granularity per
 *   partition, so a job hops on at most (its wait / g) + 1 times.
 *
 * Threads: pure functions, except nudgel_retry_head_check() which reads and
 * updates the consumer's partition state (the consumer's loop thread).
 */
#ifndef NUDGEL_RETRY_TIERS_H
#define NUDGEL_RETRY_TIERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/consumer.h"

#define NUDGEL_RETRY_GRANULARITY_MIN_MS 500

/** A role's retry tiers; both arrays are borrowed and hold @p count entries. */
typedef struct nudgel_retry_tiers {
    size_t count;
    const char *const *topics; /* the tiers' topic names (namespaced) */
    const int64_t *delay_ms;   /* each tier's fixed delay */
} nudgel_retry_tiers_t;

/** What to do with the job at the head of a retry tier's partition. */
typedef enum nudgel_retry_head {
    NUDGEL_RETRY_HEAD_DUE,    /* due: handle it now */
    NUDGEL_RETRY_HEAD_WAIT,   /* hand it back (nudgel_consumer_defer) until the given time */
    NUDGEL_RETRY_HEAD_HOP_ON, /* publish it again, unchanged, to the given tier; done then */
} nudgel_retry_head_t;

/** What the decision about a head needs to know. */
typedef struct nudgel_retry_head_facts {
    int64_t now_ms;         /* wall clock */
    int64_t not_before_ms;  /* its nudgel-not-before; 0 when none */
    int64_t published_ms;   /* when it was published (the record's timestamp); <= 0 unknown */
    int64_t last_hop_on_ms; /* the partition's last hop-on; 0 when none */
    bool followed;          /* the partition holds records behind it */
} nudgel_retry_head_facts_t;

/** @brief The granularity of a tier of delay @p delay_ms: half of it, at least the minimum. */
int64_t nudgel_retry_granularity_ms(int64_t delay_ms);

/**
 * @brief The tier a hop waiting @p wait_ms goes to: the one of largest delay
 * whose band starts at or below the wait (delay - granularity / 2 <=
 * wait), else the one of smallest delay. Tiers need not be sorted.
 * @returns its index (0 when @p t has no tiers).
 */
size_t nudgel_retry_tier_for_wait(const nudgel_retry_tiers_t *t, int64_t wait_ms);

/** @brief The index of the tier named @p topic, or -1 when it is none of them. */
int nudgel_retry_tier_of(const nudgel_retry_tiers_t *t, const char *topic);

/**
 * @brief The decision for a head of tier @p tier (see the top of this file).
 * @returns DUE; WAIT with @p until_ms set; or HOP_ON with @p to_tier set.
 */
nudgel_retry_head_t nudgel_retry_head_decide(const nudgel_retry_tiers_t *t, size_t tier,
                                             const nudgel_retry_head_facts_t *facts,
                                             int64_t *until_ms, size_t *to_tier);

/**
 * @brief The decision for @p job, just polled from @p c (borrowed): its
 * not-before, its topic's tier, its record's timestamp, whether its
 * partition holds more records and the partition's last hop-on. A job of a
 * topic that is not one of @p t (a jobs topic) is DUE or waited on until its
 * not-before. On HOP_ON the hop-on is noted for the partition and
 * @p hop_topic gets the tier's topic (borrowed from @p t).
 */
nudgel_retry_head_t nudgel_retry_head_check(const nudgel_retry_tiers_t *t, nudgel_consumer_t *c,
                                            nudgel_job_ref_t *job, int64_t now_ms,
                                            int64_t *until_ms, const char **hop_topic);

#endif
