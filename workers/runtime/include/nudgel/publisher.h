/*
 * nudgel/publisher.h — what workers write to Kafka: status events
 * (CloudEvents on nudgel.delivery-status.v1), retry hops (the job again on a
 * delay-tier topic) and dead letters (the original bytes on a DLQ topic).
 *
 * Each publish carries an opaque pointer that comes back in the callback
 * once Kafka has acknowledged (acks=all) or failed it: a worker stores a
 * job's offset only after that callback, so an outcome is never lost between
 * the receipt and the event.
 *
 * Headers (DESIGN §4): events carry nudgel-schema, nudgel-tenant,
 * traceparent, content-type; retry hops keep the job's headers and set
 * nudgel-attempt, nudgel-not-before, nudgel-first-seen, nudgel-last-error;
 * dead letters keep the job's headers and add nudgel-dlq-reason and
 * nudgel-origin (topic/partition/offset), and nudgel-dlq-truncated (the
 * original size) when only a prefix of the original fits.
 *
 * On the event loop (nudgel_publisher_attach()), delivery reports are
 * served when librdkafka has some: it writes a wake-up to an fd the loop
 * watches and the loop serves the whole main queue, so publish callbacks,
 * statistics (nudgel_publisher_health()) and errors run from the loop.
 *
 * Threads: one event loop; callbacks run inside nudgel_publisher_poll(), or
 * from the loop once attached.
 */
#ifndef NUDGEL_PUBLISHER_H
#define NUDGEL_PUBLISHER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "nudgel/config.h"
#include "nudgel/error.h"
#include "nudgel/kafka.h" /* nudgel_message_header(), kept for callers */
#include "nudgel/kafka_health.h"
#include "nudgel/loop.h"

typedef struct nudgel_publisher nudgel_publisher_t;

/** Outcome of one publish; @p errstr is "" on success. */
typedef void(nudgel_publish_cb_t)(void *opaque, nudgel_err_t err, const char *errstr,
                                  void *cb_opaque);

/**
 * @brief A producer (acks=all, idempotence, murmur2) configured from @p conf
 * (kafka.*), lingering 50 ms unless kafka.linger.ms says otherwise (what is
 * published is never on a latency path; see publisher.c). @returns it, or
 * NULL with a reason.
 */
nudgel_publisher_t *nudgel_publisher_new(const nudgel_conf_t *conf, nudgel_publish_cb_t *cb,
                                         void *cb_opaque, char *errstr, size_t errstr_size);

/**
 * @brief Publishes a status event keyed by @p tenant_id to @p topic. Takes
 * a reference-stealing @p event (jansson); @p traceparent may be NULL.
 */
nudgel_err_t nudgel_publish_event(nudgel_publisher_t *p, const char *topic, const char *tenant_id,
                                  json_t *event, const char *traceparent, void *opaque);

/**
 * @brief Publishes @p job again to the retry tier @p topic with the same key,
 * value and headers, plus the retry headers.
 */
nudgel_err_t nudgel_publish_retry(nudgel_publisher_t *p, const char *topic,
                                  const rd_kafka_message_t *job, int attempt, int64_t not_before_ms,
                                  int64_t first_seen_ms, const char *last_error, void *opaque);

/**
 * @brief Publishes @p job's original bytes and headers to the dead-letter
 * @p topic, with nudgel-dlq-reason and nudgel-origin. A dead letter must
 * never be refused for its size (no input may stop a worker): when the
 * original does not fit the record limit (the producer's message.max.bytes,
 * and Kafka's default max.message.bytes of the topic, whichever is smaller),
 * only a prefix of it is published, with nudgel-dlq-truncated set to the
 * original's size in bytes; when the producer still refuses it as too
 * large, a prefix of NUDGEL_DLQ_FALLBACK_BYTES. nudgel_publish_dlq_capped()
 * takes the record limit from the caller (a broker that refused the first
 * dead letter: see lifecycle.c).
 */
nudgel_err_t nudgel_publish_dlq(nudgel_publisher_t *p, const char *topic,
                                const rd_kafka_message_t *job, const char *reason, void *opaque);

#define NUDGEL_DLQ_FALLBACK_BYTES (64 * 1024) /* a record every topic takes */

/** @brief nudgel_publish_dlq() within a record of at most @p max_record bytes. */
nudgel_err_t nudgel_publish_dlq_capped(nudgel_publisher_t *p, const char *topic,
                                       const rd_kafka_message_t *job, const char *reason,
                                       size_t max_record, void *opaque);

/** @brief The largest dead-letter record @p p publishes whole (see nudgel_publish_dlq()). */
size_t nudgel_publisher_dlq_max_value(const nudgel_publisher_t *p);

/**
 * @brief Publishes @p job again, unchanged (key, value and every header), to
 * the retry tier @p topic: a hop-on (nudgel/retry_tiers.h), not a retry.
 */
nudgel_err_t nudgel_publish_hop_on(nudgel_publisher_t *p, const char *topic,
                                   const rd_kafka_message_t *job, void *opaque);

/**
 * @brief Serves callbacks for up to @p timeout_ms. @returns how many ran.
 * Still allowed once attached (it serves the same queue), but not needed.
 */
int nudgel_publisher_poll(nudgel_publisher_t *p, int timeout_ms);

/**
 * @brief Puts @p p on @p loop: whenever librdkafka queues a delivery report
 * (or statistics, an error) on the producer's main queue, the loop serves
 * the queue (rd_kafka_poll(rk, 0)), so publish callbacks run from the
 * loop's fd callbacks, on its thread. librdkafka writes one wake-up when
 * the queue goes from empty to non-empty; each serve empties it. The loop
 * must outlive the publisher; nudgel_publisher_destroy() leaves it.
 * @returns NUDGEL_OK, NUDGEL_ERR_INVALID_ARG (already attached, NULL
 * arguments), NUDGEL_ERR_IO or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_publisher_attach(nudgel_publisher_t *p, nudgel_loop_t *loop);

/**
 * @brief The producer's health (nudgel/kafka_health.h): brokers up from the
 * last statistics, all_brokers_down from the error callback, and outq_len
 * (rd_kafka_outq_len(), read now). Loop thread.
 */
void nudgel_publisher_health(const nudgel_publisher_t *p, nudgel_kafka_health_t *out);

/** @brief Publishes not yet acknowledged. */
int nudgel_publisher_in_flight(nudgel_publisher_t *p);

/**
 * @brief Leaves the loop if attached, waits up to @p timeout_ms for every
 * publish (callbacks run inside), then frees. NULL is a no-op.
 */
void nudgel_publisher_destroy(nudgel_publisher_t *p, int timeout_ms);

#endif
