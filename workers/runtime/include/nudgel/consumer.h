/*
 * nudgel/consumer.h — the Kafka consumer every worker role uses.
 *
 * At-least-once in, with many jobs of a partition in flight (DESIGN §5):
 * each polled message is a job the caller finishes in any order with
 * nudgel_consumer_done(); the offset stored for its partition advances only
 * to the end of the longest run of finished jobs (nudgel/offsets.h), and
 * librdkafka's auto-commit writes what is stored. So a crash re-delivers
 * exactly the unfinished jobs and the ones after them, never skips one.
 *
 * - enable.auto.offset.store=false, cooperative-sticky assignment.
 * - A partition whose window (jobs in flight) is full is paused and resumed
 *   when half of it has drained; nudgel_consumer_pause() pauses everything
 *   for backpressure (Postgres, a gateway or the producer slow), with
 *   reasons so independent causes do not resume each other.
 * - On revocation, stored offsets are committed before the partitions go;
 *   jobs of a revoked partition still finish, but their completion no
 *   longer moves an offset (the new owner re-delivers them).
 *
 * On the event loop (nudgel_consumer_attach()), the consumer is polled when
 * there is something to poll, never on a clock: librdkafka writes a wake-up
 * to an fd the loop watches when its queue goes from empty to non-empty,
 * and the role then polls with nudgel_consumer_poll(c, 0) until it returns
 * NULL. Rebalances, statistics (nudgel_consumer_health()) and errors are
 * served inside those polls, on the loop's thread.
 *
 * Threads: one event loop owns a consumer; nothing here is thread-safe.
 */
#ifndef NUDGEL_CONSUMER_H
#define NUDGEL_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "nudgel/config.h"
#include "nudgel/error.h"
#include "nudgel/kafka_health.h"
#include "nudgel/loop.h"

struct nudgel_fleet_metrics;

typedef struct nudgel_consumer nudgel_consumer_t;
typedef struct nudgel_job_ref nudgel_job_ref_t;

/** Configuration keys of the consumer, for a worker's config table. */
extern const nudgel_conf_entry_t nudgel_consumer_conf[];

/** What a role may tune of its consumer beyond its configuration. */
typedef struct nudgel_consumer_opts {
    /*
     * > 0: the broker holds each fetch up to this many milliseconds to gather
     * messages (fetch.wait.max.ms, with a fetch.min.bytes of 1 MiB), so at a
     * low or moderate rate a fetch, a wake-up and everything the role does
     * per wake-up serve a batch instead of a message or two, at the price of
     * up to that much latency, and an idle consumer fetches that often.
     * 0: librdkafka's defaults (a fetch comes back with the first message,
     * an idle one every 500 ms). kafka.fetch.wait.max.ms and
     * kafka.fetch.min.bytes, when set, win.
     */
    int fetch_wait_ms;
} nudgel_consumer_opts_t;

/**
 * @brief Creates a consumer in group @p group_id subscribed to @p topics
 * (borrowed for the call). Settings come from @p conf: kafka.* and
 * consumer.window. @returns the consumer, or NULL with a reason.
 */
nudgel_consumer_t *nudgel_consumer_new(const nudgel_conf_t *conf, const char *group_id,
                                       const char *const *topics, size_t topic_count, char *errstr,
                                       size_t errstr_size);

/** @brief nudgel_consumer_new() with @p opts (NULL: all zero). */
nudgel_consumer_t *nudgel_consumer_new_opts(const nudgel_conf_t *conf, const char *group_id,
                                            const char *const *topics, size_t topic_count,
                                            const nudgel_consumer_opts_t *opts, char *errstr,
                                            size_t errstr_size);

/**
 * @brief Waits up to @p timeout_ms for the next job. Rebalances, statistics
 * and errors are served inside; messages it drops (consumer errors, which
 * it logs, and messages of partitions revoked or paused meanwhile) do not
 * end the call. @returns a job the caller owns until nudgel_consumer_done(),
 * or NULL when librdkafka had nothing more to give within @p timeout_ms.
 */
nudgel_job_ref_t *nudgel_consumer_poll(nudgel_consumer_t *c, int timeout_ms);

/**
 * @brief Puts @p c on @p loop: from now on @p on_ready(@p opaque) runs on the
 * loop's thread when there is something to poll, and the role answers by
 * calling nudgel_consumer_poll(c, 0) until it returns NULL (or until it has
 * no room for more jobs).
 *
 * The wake-up contract is librdkafka's (rd_kafka_q_io_event() in
 * src/rdkafka_queue.h): a wake-up is written only when the queue goes from
 * empty to non-empty, and at most one until the next poll. A role that
 * stops polling while messages are still queued (it has no room) therefore
 * gets no new wake-up for them, nor for what arrives behind them: it must
 * poll again by itself when room frees up (a job done, a pause lifted),
 * until NULL, not wait for on_ready. on_ready also runs
 * without a wake-up: right after attaching, when a deferred partition is
 * due, when a poll stopped on its budget of dropped messages, and as a
 * keepalive (a third of max.poll.interval.ms) if nothing was polled that
 * long; a poll that finds nothing is cheap. Statistics (every second by
 * default) keep waking a quiet consumer, which keeps it in its group.
 *
 * The loop must outlive the consumer; nudgel_consumer_close() leaves the
 * loop. @returns NUDGEL_OK, NUDGEL_ERR_INVALID_ARG (already attached, NULL
 * arguments), NUDGEL_ERR_IO or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_consumer_attach(nudgel_consumer_t *c, nudgel_loop_t *loop,
                                    void (*on_ready)(void *opaque), void *opaque);

/**
 * @brief The consumer's health from its last statistics and errors (see
 * nudgel/kafka_health.h): brokers up, group and join state, assignment
 * size, per-partition lag and their total, and the subscribed topics that
 * do not exist yet (a worker started before its topics waits, not ready,
 * and goes on when they appear: checked once a second off the loop). The statistics are parsed
 * here, not when they arrive. The lags are borrowed until the next call or nudgel_consumer_close().
 * Loop thread.
 */
void nudgel_consumer_health(const nudgel_consumer_t *c, nudgel_kafka_health_t *out);

/**
 * @brief From now on each nudgel_consumer_health() also publishes the lags to
 * @p fm (nudgel_kafka_consumer_lag), and @p topics (the subscribed ones) are
 * announced in nudgel_jobs_consumed_total. Start-up, loop thread.
 */
void nudgel_consumer_report_to(nudgel_consumer_t *c, struct nudgel_fleet_metrics *fm,
                               const char *const *topics, size_t count);

/** @brief The Kafka message of a job (borrowed, valid until done). */
const rd_kafka_message_t *nudgel_job_message(const nudgel_job_ref_t *job);

/**
 * @brief Marks a job finished (its outcome durable), stores the partition's
 * new contiguous offset when it moved, resumes a window-paused partition, and
 * frees the job.
 */
void nudgel_consumer_done(nudgel_consumer_t *c, nudgel_job_ref_t *job);

/**
 * @brief Hands back a job that is not due yet (a retry tier's head whose
 * nudgel-not-before lies ahead): its partition is paused and rewound to the
 * job, and resumes at @p resume_at_ms (wall clock), when the job is fetched
 * again. Must be called for the job just polled, before the next poll; the
 * job is freed.
 */
void nudgel_consumer_defer(nudgel_consumer_t *c, nudgel_job_ref_t *job, int64_t resume_at_ms);

/**
 * @brief Lets go of a job that will not finish in this process (shutdown
 * after a drain timeout): nothing is stored for it, so it is re-delivered
 * after the next assignment. Frees the job. nudgel_consumer_close()
 * abandons whatever is still held (rd_kafka_destroy() would otherwise wait
 * for those messages for ever); abandoning first lets a worker free its own
 * state for each job.
 */
void nudgel_consumer_abandon(nudgel_consumer_t *c, nudgel_job_ref_t *job);

/**
 * @brief Whether @p job's partition holds records after it, from the
 * watermarks of the last fetch (no request is made; true when unknown).
 * Retry tiers decide with it whether a head due later holds anything back
 * (nudgel/retry_tiers.h).
 */
bool nudgel_consumer_job_followed(nudgel_consumer_t *c, const nudgel_job_ref_t *job);

/** @brief When a job of @p job's partition last hopped on (wall-clock ms; 0: never). */
int64_t nudgel_consumer_job_last_hop_on(const nudgel_job_ref_t *job);

/** @brief Notes that @p job hops on now (@p now_ms), for its partition. */
void nudgel_consumer_job_hopped_on(nudgel_job_ref_t *job, int64_t now_ms);

/** Reasons to pause every partition; each is lifted on its own. */
typedef enum nudgel_pause_reason {
    NUDGEL_PAUSE_POSTGRES = 1u << 0,
    NUDGEL_PAUSE_GATEWAY = 1u << 1,
    NUDGEL_PAUSE_PRODUCER = 1u << 2,
    NUDGEL_PAUSE_SHUTDOWN = 1u << 3,
    NUDGEL_PAUSE_IN_FLIGHT = 1u << 4,
} nudgel_pause_reason_t;

/** @brief Pauses every partition for @p reason (idempotent). */
void nudgel_consumer_pause(nudgel_consumer_t *c, nudgel_pause_reason_t reason);

/** @brief Lifts @p reason; partitions resume when nothing else holds them. */
void nudgel_consumer_resume(nudgel_consumer_t *c, nudgel_pause_reason_t reason);

/** @brief Jobs polled and not yet done. */
size_t nudgel_consumer_in_flight(const nudgel_consumer_t *c);

/** @brief Partitions currently assigned. */
size_t nudgel_consumer_assigned(const nudgel_consumer_t *c);

/** @brief Partitions of @p topic currently assigned to this consumer. */
int32_t nudgel_consumer_assigned_of(const nudgel_consumer_t *c, const char *topic);

/**
 * @brief Partitions the subscribed @p topic has, as last learnt by the
 * consumer's check that its topics exist (no request: it never blocks).
 * @returns the count, or -1 while unknown (the topic does not exist yet).
 */
int32_t nudgel_consumer_topic_partitions(const nudgel_consumer_t *c, const char *topic);

/**
 * @brief Partitions @p topic has in the cluster (a metadata request bounded
 * by @p timeout_ms). @returns the count, or -1 when unknown.
 */
int32_t nudgel_consumer_partition_count(nudgel_consumer_t *c, const char *topic, int timeout_ms);

/**
 * @brief Leaves the loop if attached, leaves the group: commits stored
 * offsets, closes and frees. Jobs still in flight are abandoned (they will
 * be re-delivered) and freed: their refs are invalid afterwards. Finish
 * them first for a clean drain. NULL is a no-op.
 */
void nudgel_consumer_close(nudgel_consumer_t *c);

#endif
