/*
 * nudgel/producer.h — libnudgel, the producer library the API tier links.
 *
 * A producer validates a job (naming the field at fault), assigns a UUIDv7
 * id and created_at when the caller gave none, normalises "to" to E.164 and
 * appends the job to its topic keyed by tenant_id, with the headers of the
 * topic contract. Partitioning is murmur2, as Java and Node producers do, so
 * a tenant's jobs land in one partition whichever language enqueued them.
 *
 * Asynchronous use: nudgel_enqueue_message() returns once the job is queued;
 * its outcome arrives in the delivery callback, served by
 * nudgel_producer_poll() / nudgel_producer_flush().
 * Synchronous use: nudgel_enqueue_message_sync() returns the outcome.
 * On an event loop (epoll, poll, libuv, ...): watch nudgel_producer_event_fd()
 * for reads and call nudgel_producer_poll(p, 0) when it is readable, so
 * delivery callbacks are served when they are due instead of on a clock; set
 * "queue_full_wait_ms" to 0 so that an enqueue never waits inside the loop.
 *
 * Thread safety: enqueue functions may be called from several threads;
 * callbacks run in the thread that calls poll or flush.
 *
 * Minimal use:
 *
 *     char errstr[512];
 *     nudgel_producer_conf_t *conf = nudgel_producer_conf_new();
 *     nudgel_producer_conf_set(conf, "bootstrap.servers", "127.0.0.1:59092", errstr, sizeof
 * errstr); nudgel_producer_t *p = nudgel_producer_new(conf, errstr, sizeof errstr);
 *     nudgel_enqueue_result_t res;
 *     nudgel_err_t err = nudgel_enqueue_message_sync(p, json, strlen(json), NULL, &res, 10000);
 *     if (err == NUDGEL_ERR_INVALID_FIELD) printf("%s: %s\n", res.error.field, res.error.reason);
 *     nudgel_producer_destroy(p);
 */
#ifndef NUDGEL_PRODUCER_H
#define NUDGEL_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

#include "nudgel/error.h"
#include "nudgel/job.h"
#include "nudgel/uuid.h"

typedef struct nudgel_producer nudgel_producer_t;
typedef struct nudgel_producer_conf nudgel_producer_conf_t;

/** What became of one enqueued job. Every pointer is borrowed for the callback only. */
typedef struct nudgel_delivery_report {
    const char *job_id;
    const char *tenant_id;
    const char *topic;
    int32_t partition;
    int64_t offset;     /* -1 on failure */
    nudgel_err_t err;   /* NUDGEL_OK when Kafka acknowledged the job (acks=all) */
    const char *errstr; /* "" on success */
    void *opaque;       /* nudgel_enqueue_opts_t.opaque */
} nudgel_delivery_report_t;

typedef void(nudgel_delivery_cb_t)(const nudgel_delivery_report_t *report, void *cb_opaque);

typedef struct nudgel_enqueue_opts {
    const char *traceparent; /* W3C trace context to carry; NULL for none */
    void *opaque;            /* handed back in the delivery report */
} nudgel_enqueue_opts_t;

typedef struct nudgel_enqueue_result {
    char job_id[NUDGEL_UUID_STR_LEN + 1]; /* the job's id, assigned if the caller gave none */
    int32_t partition;                    /* sync calls only; -1 otherwise */
    int64_t offset;                       /* sync calls only; -1 otherwise */
    nudgel_field_error_t error;           /* field and reason when the job was refused */
} nudgel_enqueue_result_t;

/** @brief A new producer configuration with the fleet defaults. */
nudgel_producer_conf_t *nudgel_producer_conf_new(void);

/**
 * @brief Sets a property. Ours: "bootstrap.servers", "client.id",
 * "default_country" (ISO alpha-2 hint for national numbers), "max_job_bytes"
 * (default 65536), "message_timeout_ms" (default 30000), "messages_topic" and
 * "webhooks_topic" (the contract's topics by default; override only for
 * benchmarks or an isolated namespace), "queue_full_wait_ms" (how long an
 * enqueue waits for room when the local queue is full, serving delivery
 * callbacks meanwhile; 0 to 600000, default message_timeout_ms; 0 returns
 * NUDGEL_ERR_QUEUE_FULL at once, for callers on an event loop). Anything else is a
 * librdkafka producer property. acks=all, enable.idempotence=true and
 * partitioner=murmur2_random are fixed by the contract and cannot be changed.
 * @returns NUDGEL_OK or NUDGEL_ERR_CONFIG with "name: problem" in @p errstr.
 */
nudgel_err_t nudgel_producer_conf_set(nudgel_producer_conf_t *conf, const char *name,
                                      const char *value, char *errstr, size_t errstr_size);

/** @brief Sets the delivery callback (async use). */
void nudgel_producer_conf_set_delivery_cb(nudgel_producer_conf_t *conf, nudgel_delivery_cb_t *cb,
                                          void *cb_opaque);

void nudgel_producer_conf_destroy(nudgel_producer_conf_t *conf);

/**
 * @brief Creates a producer. Takes ownership of @p conf on success (on
 * failure the caller still owns it). @returns NULL with a reason on failure.
 */
nudgel_producer_t *nudgel_producer_new(nudgel_producer_conf_t *conf, char *errstr,
                                       size_t errstr_size);

/**
 * @brief Waits up to @p timeout_ms for a broker to answer.
 * @returns NUDGEL_OK or NUDGEL_ERR_KAFKA_UNREACHABLE.
 */
nudgel_err_t nudgel_producer_check(nudgel_producer_t *p, int timeout_ms, char *errstr,
                                   size_t errstr_size);

/**
 * @brief Validates and queues a message job (bytes of one JSON object).
 * @returns NUDGEL_OK when queued; NUDGEL_ERR_INVALID_JSON, _INVALID_FIELD or
 * _TOO_LARGE (permanent: @p result->error names the field); NUDGEL_ERR_QUEUE_FULL
 * when the local queue stayed full for queue_full_wait_ms (retriable; by
 * default message_timeout_ms, during which delivery callbacks may run inside
 * this call). @p result may be NULL.
 */
nudgel_err_t nudgel_enqueue_message(nudgel_producer_t *p, const char *json, size_t len,
                                    const nudgel_enqueue_opts_t *opts,
                                    nudgel_enqueue_result_t *result);

/** @brief As nudgel_enqueue_message() for webhook jobs (topic nudgel.webhooks.v1). */
nudgel_err_t nudgel_enqueue_webhook(nudgel_producer_t *p, const char *json, size_t len,
                                    const nudgel_enqueue_opts_t *opts,
                                    nudgel_enqueue_result_t *result);

/** @brief Queues, then waits up to @p timeout_ms for Kafka's acknowledgement. */
nudgel_err_t nudgel_enqueue_message_sync(nudgel_producer_t *p, const char *json, size_t len,
                                         const nudgel_enqueue_opts_t *opts,
                                         nudgel_enqueue_result_t *result, int timeout_ms);

nudgel_err_t nudgel_enqueue_webhook_sync(nudgel_producer_t *p, const char *json, size_t len,
                                         const nudgel_enqueue_opts_t *opts,
                                         nudgel_enqueue_result_t *result, int timeout_ms);

/**
 * @brief Serves delivery callbacks for up to @p timeout_ms (0: those already
 * due, without waiting). Also clears nudgel_producer_event_fd(). @returns
 * callbacks served.
 */
int nudgel_producer_poll(nudgel_producer_t *p, int timeout_ms);

/**
 * @brief A file descriptor for an event loop: it becomes readable when
 * delivery callbacks (or librdkafka errors and statistics) wait to be served.
 * Watch it for reads (level-triggered) and answer with
 * nudgel_producer_poll(p, 0), which empties it before serving; a wake-up
 * that finds nothing to serve is harmless. librdkafka writes to it when its
 * queue goes from empty to non-empty, and not again until the next poll:
 * an event loop must not skip a poll after a wake-up. Made on the first call
 * (later calls return the same fd); callbacks already due then are served by
 * the next poll. Owned by the producer: do not read or close it;
 * nudgel_producer_destroy() closes it (unwatch it first). Linux and the BSDs
 * (a non-blocking pipe). Call it from the thread that polls.
 * @returns the fd, or -1 (errno set) when it cannot be made.
 */
int nudgel_producer_event_fd(nudgel_producer_t *p);

/** @brief Waits until every queued job is acknowledged or failed. */
nudgel_err_t nudgel_producer_flush(nudgel_producer_t *p, int timeout_ms);

/** @brief Jobs queued but not yet acknowledged or failed. */
int nudgel_producer_in_flight(nudgel_producer_t *p);

/** @brief Flushes (up to message_timeout_ms) and frees. NULL is a no-op. */
void nudgel_producer_destroy(nudgel_producer_t *p);

#endif
