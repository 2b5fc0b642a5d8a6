/*
 * nudgel/kafka.h — librdkafka helpers shared by producers and workers:
 * configuration from the fleet's, logging (librdkafka's lines through
 * nudgel_log, each error once), partitioning, headers, error mapping.
 */
#ifndef NUDGEL_KAFKA_H
#define NUDGEL_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "nudgel/config.h"
#include "nudgel/error.h"

/**
 * @brief A librdkafka configuration from the fleet configuration:
 * bootstrap.servers, client.id, JSON logging of librdkafka's own logs, then the
 * kafka.* pass-through properties (which win). @returns a new conf or NULL with
 * "property: problem" in @p errstr.
 */
rd_kafka_conf_t *nudgel_kafka_conf_new(const nudgel_conf_t *conf, char *errstr, size_t errstr_size);

/** @brief Routes librdkafka's log lines through nudgel_log (set on @p kconf). */
void nudgel_kafka_conf_set_logger(rd_kafka_conf_t *kconf);

/**
 * @brief For a handle whose main queue is polled: errors go to @p cb (NULL:
 * one that calls nudgel_kafka_log_error()), and librdkafka's own log line
 * for a broker failure is dropped, since the error op carrying the same
 * text reaches @p cb: each error is logged once, by the error callback.
 * Other log lines stay. @p cb runs inside the poll that serves the error
 * op, on the polling thread, and should end in nudgel_kafka_log_error().
 */
void nudgel_kafka_conf_set_error_cb(rd_kafka_conf_t *kconf,
                                    void (*cb)(rd_kafka_t *rk, int err, const char *reason,
                                               void *opaque));

/**
 * @brief Logs one error reported by librdkafka's error callback, once: an
 * error line for fatal errors (with the original error) and for every
 * broker down, a warning for what librdkafka retries by itself.
 */
void nudgel_kafka_log_error(rd_kafka_t *rk, int err, const char *reason);

/**
 * @brief Waits up to @p timeout_ms for broker metadata.
 * @returns NUDGEL_OK or NUDGEL_ERR_KAFKA_UNREACHABLE with a reason.
 */
nudgel_err_t nudgel_kafka_check_reachable(rd_kafka_t *rk, int timeout_ms, char *errstr,
                                          size_t errstr_size);

/** @brief Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed int. */
int32_t nudgel_kafka_murmur2(const void *key, size_t len);

/** @brief The partition Java's default partitioner picks for a non-empty key. */
int32_t nudgel_kafka_partition_for_key(const void *key, size_t len, int32_t partition_count);

/** @brief A header of @p msg as a NUL-terminated copy in @p out; "" when absent. */
void nudgel_message_header(const rd_kafka_message_t *msg, const char *name, char *out,
                           size_t out_size);

/**
 * @brief A copy of @p msg's headers without those named in @p drop
 * (NULL-terminated). @returns a new list the caller owns (or hands to
 * rd_kafka_producev), never NULL.
 */
rd_kafka_headers_t *nudgel_message_headers_except(const rd_kafka_message_t *msg,
                                                  const char *const *drop);

/** @brief Maps a librdkafka error to the fleet's error enum (and so to its class). */
nudgel_err_t nudgel_kafka_err(rd_kafka_resp_err_t err);

#endif
