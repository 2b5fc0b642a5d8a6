/*
 * consumer_internal.h — the consumer's state, private to the runtime: what
 * consumer.c (the consumer: partitions, jobs, offsets, rebalances) and
 * consumer_loop.c (its life on the event loop) share. Nothing outside these
 * two files includes it; roles see only nudgel/consumer.h.
 *
 * Ownership: a consumer owns its partition states, its live jobs (each
 * holding a librdkafka message) and, on a loop, its eventfd, queue
 * reference and timer. Threads: one event loop owns a consumer.
 */
#ifndef NUDGEL_CONSUMER_INTERNAL_H
#define NUDGEL_CONSUMER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "nudgel/consumer.h"
#include "nudgel/fleet_metrics.h"
#include "nudgel/kafka_health.h"
#include "nudgel/loop.h"
#include "nudgel/offsets.h"

#define MAX_PARTITIONS 4096 /* hard cap of partition states one consumer keeps */

/*
 * One per partition ever assigned, kept until the consumer closes so that a
 * job of a revoked partition can still point at it; generation tells the
 * job whether its partition was revoked since it was polled.
 */
typedef struct part_state {
    char *topic;
    int32_t partition;
    nudgel_offsets_t *offsets;
    uint64_t generation;
    bool assigned;
    bool window_paused;     /* paused because its window is full */
    int64_t deferred_until; /* wall-clock ms a deferred head is due; 0 when none */
    int64_t hop_on_ms;      /* wall-clock ms a retry-tier head last hopped on; 0 when none */
    bool paused;            /* what librdkafka was last told */
} part_state_t;

struct nudgel_job_ref {
    rd_kafka_message_t *msg;
    part_state_t *part;
    uint64_t generation;
    struct nudgel_job_ref *prev, *next; /* the consumer's live jobs */
};

/* Whether the subscribed topics exist yet (consumer_topics.c). */
typedef struct consumer_topics consumer_topics_t;

/* Starts checking @p topics (copied) on a thread of its own; NULL when out of memory. */
consumer_topics_t *consumer_topics_start(rd_kafka_t *rk, const char *const *topics, size_t count);
/* How many of them are not known to exist; the first one's name into @p first. */
int consumer_topics_missing(consumer_topics_t *t, char *first, size_t first_size);
/* @p topic's partition count as last seen; -1 when unknown or missing. */
int32_t consumer_topics_partitions(consumer_topics_t *t, const char *topic);
/* Stops the thread (at most one metadata timeout) and frees. NULL is a no-op. */
void consumer_topics_stop(consumer_topics_t *t);

struct nudgel_consumer {
    rd_kafka_t *rk;
    consumer_topics_t *topics_check; /* until every subscribed topic exists */
    part_state_t *parts[MAX_PARTITIONS];
    size_t part_count;
    size_t window;
    size_t in_flight;
    unsigned pause_reasons;
    /* Jobs polled and not yet done or deferred. Each holds a librdkafka
     * message, and rd_kafka_destroy() waits for every message to be destroyed:
     * close releases the ones a stopping worker abandoned. */
    nudgel_job_ref_t *live;
    nudgel_kafka_monitor_t *monitor;       /* statistics and errors, for nudgel_consumer_health() */
    nudgel_fleet_metrics_t *fleet_metrics; /* lags go there on each health read; may be NULL */
    int lag_slot;
    int64_t last_poll_us;
    uint64_t polls;
    /* On a loop (nudgel_consumer_attach), else loop is NULL. */
    nudgel_loop_t *loop;
    rd_kafka_queue_t *queue; /* the consumer queue, holding the IO event */
    int wake_fd;             /* eventfd librdkafka writes to */
    nudgel_timer_t *timer;   /* deferred due times, leftovers, keepalive */
    int64_t keepalive_us;
    bool more; /* the last poll stopped on its budget with messages left */
    void (*on_ready)(void *opaque);
    void *ready_opaque;
};

/*
 * Arms the consumer's timer for its next reason to poll (consumer_loop.c).
 * Call after each poll and defer when the consumer is on a loop.
 */
void consumer_schedule(nudgel_consumer_t *c);

/* Takes the consumer off its loop, if it is on one, and frees what that
 * needed (eventfd, queue reference, timer). Idempotent. */
void consumer_detach(nudgel_consumer_t *c);

#endif /* NUDGEL_CONSUMER_INTERNAL_H */
