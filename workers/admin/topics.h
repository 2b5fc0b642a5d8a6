/*
 * topics.h — creating and checking the contract topics (DESIGN §4) with
 * librdkafka's Admin API.
 *
 * Partitions, replication factor and retention.ms per topic class come from
 * the configuration (topics.partitions, topics.replication_factor,
 * topics.retention_ms.<class>). Every admin request is bounded by
 * admin.timeout_ms.
 */
#ifndef NUDGEL_ADMIN_TOPICS_H
#define NUDGEL_ADMIN_TOPICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "nudgel/config.h"
#include "nudgel/error.h"

/** The configuration keys of this module, for nudgel-admin's config table. */
extern const nudgel_conf_entry_t nudgel_admin_topics_conf[];

typedef struct nudgel_admin_topics_opts {
    bool alter; /* fix what can be fixed: add partitions, set retention.ms */
} nudgel_admin_topics_opts_t;

/**
 * @brief Creates every missing contract topic, then compares the others with
 * the configuration and, with @p opts->alter, fixes what Kafka allows. Writes
 * one line per topic ("created", "ok", "altered: ...", "drift: ...",
 * "error: ...") and a summary to @p out. @p drift_remains is set when some
 * drift is left after the run.
 * @returns NUDGEL_OK; NUDGEL_ERR_CONFIG; NUDGEL_ERR_KAFKA_UNREACHABLE when no
 * broker answered within admin.timeout_ms; NUDGEL_ERR_KAFKA when a topic
 * could not be created or altered (its line says why).
 */
nudgel_err_t nudgel_admin_topics_ensure(const nudgel_conf_t *conf,
                                        const nudgel_admin_topics_opts_t *opts, FILE *out,
                                        bool *drift_remains, char *errstr, size_t errstr_size);

/**
 * @brief For each contract topic: exists or missing, partitions, replication
 * factor, retention.ms, class and retry-tier delay, as a table or (with
 * @p json) as a JSON array on @p out. Changes nothing.
 * @returns NUDGEL_OK, NUDGEL_ERR_CONFIG, NUDGEL_ERR_KAFKA_UNREACHABLE or NUDGEL_ERR_KAFKA.
 */
nudgel_err_t nudgel_admin_topics_describe(const nudgel_conf_t *conf, bool json, FILE *out,
                                          char *errstr, size_t errstr_size);

#endif
