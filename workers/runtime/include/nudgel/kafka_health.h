/*
 * nudgel/kafka_health.h — what a Kafka client knows of its own health, for
 * a worker's /healthz and /metrics.
 *
 * It comes from two librdkafka callbacks, both run inside the poll that
 * serves them (on the loop's thread):
 * - statistics (statistics.interval.ms; the workers' consumer and publisher
 *   default to 1000 ms, a kafka.statistics.interval.ms setting wins): one
 *   JSON document per interval (librdkafka's STATISTICS.md), from which we
 *   read brokers up, the group's state and join state, the assignment size
 *   and each assigned partition's consumer lag. The latest document is kept
 *   as it came and parsed when a snapshot is asked for, so the statistics
 *   of an idle worker cost it a wake-up per interval and nothing more;
 * - errors: ALL_BROKERS_DOWN sets all_brokers_down until statistics taken
 *   after it show a broker up again.
 *
 * A monitor is owned by one consumer or publisher; nothing here is
 * thread-safe.
 */
#ifndef NUDGEL_KAFKA_HEALTH_H
#define NUDGEL_KAFKA_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "nudgel/config.h"
#include "nudgel/error.h"

#define NUDGEL_KAFKA_STATS_INTERVAL_MS "1000" /* the workers' statistics.interval.ms */
#define NUDGEL_KAFKA_MAX_LAGS          4096   /* partitions whose lag one monitor keeps */

/** One assigned partition's consumer lag (hi_offset - max(app, committed)). */
typedef struct nudgel_partition_lag {
    const char *topic; /* borrowed from the monitor */
    int32_t partition;
    int64_t lag;
} nudgel_partition_lag_t;

/** A snapshot; every field is what the last statistics said unless noted. */
typedef struct nudgel_kafka_health {
    int64_t stats_at_us; /* nudgel_mono_us() when the last statistics arrived; 0: none yet */
    int brokers_up;      /* real brokers in state UP: the bootstrap placeholders
                            ("host:port/bootstrap", nodeid -1) and the logical
                            GroupCoordinator entry are left out */
    int brokers_known;   /* real brokers listed, whatever their state */
    /* Set by the error callback's ALL_BROKERS_DOWN, cleared by the next
     * statistics with a broker up; the time of the last such report. */
    bool all_brokers_down;
    int64_t all_brokers_down_at_us;
    /* Consumers (empty strings / -1 for a producer or before the first statistics). */
    char group_state[24]; /* cgrp.state: "up" once the coordinator is known */
    char join_state[40];  /* cgrp.join_state: "steady" once the assignment is settled */
    bool group_up;        /* group_state is "up" */
    bool group_steady;    /* join_state is "steady" */
    int32_t assigned;     /* cgrp.assignment_size */
    int64_t lag_total;    /* sum of the known lags */
    const nudgel_partition_lag_t *lags; /* partitions with a known lag (not -1, not the
                                           internal partition -1); borrowed, valid until the
                                           next snapshot of the same monitor */
    size_t lag_count;
    /* Publishers: messages and requests not yet acknowledged (rd_kafka_outq_len), read at the
     * time of the call; 0 for a consumer. */
    int64_t outq_len;
    /* Consumers: subscribed topics the broker's metadata does not have (yet), and the
     * first one's name (set by nudgel_consumer_health(); 0 and "" otherwise). */
    int topics_missing;
    char missing_topic[256];
} nudgel_kafka_health_t;

typedef struct nudgel_kafka_monitor nudgel_kafka_monitor_t;

/** @brief An empty monitor (no statistics yet). NULL on allocation failure. */
nudgel_kafka_monitor_t *nudgel_kafka_monitor_new(void);

/** @brief Frees @p m; snapshots taken from it become invalid. NULL is a no-op. */
void nudgel_kafka_monitor_free(nudgel_kafka_monitor_t *m);

/**
 * @brief Sets statistics.interval.ms on @p kconf to the workers' default
 * unless @p conf sets kafka.statistics.interval.ms. @returns NUDGEL_OK or
 * NUDGEL_ERR_CONFIG with a reason.
 */
nudgel_err_t nudgel_kafka_monitor_conf(rd_kafka_conf_t *kconf, const nudgel_conf_t *conf,
                                       char *errstr, size_t errstr_size);

/**
 * @brief Keeps @p json (@p len bytes, received at @p now_us), a document a
 * stats callback got from librdkafka and keeps by returning 1: the monitor
 * owns it now (freed with rd_kafka_mem_free()) and parses it at the next
 * nudgel_kafka_monitor_get(), dropping the one it kept before.
 */
void nudgel_kafka_monitor_keep_stats(nudgel_kafka_monitor_t *m, char *json, size_t len,
                                     int64_t now_us);

/**
 * @brief Reads one statistics document (@p json, @p len bytes, borrowed)
 * received at @p now_us, now. On a parse error the previous snapshot stays.
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_JSON with a reason.
 */
nudgel_err_t nudgel_kafka_monitor_stats(nudgel_kafka_monitor_t *m, const char *json, size_t len,
                                        int64_t now_us, char *errstr, size_t errstr_size);

/** @brief Notes an error from the error callback at @p now_us (ALL_BROKERS_DOWN counts). */
void nudgel_kafka_monitor_error(nudgel_kafka_monitor_t *m, int err, int64_t now_us);

/**
 * @brief The current snapshot into @p out, parsing the document kept since
 * the last one (a parse error is logged; the previous values stay). The
 * lags are borrowed from @p m until the next call.
 */
void nudgel_kafka_monitor_get(nudgel_kafka_monitor_t *m, nudgel_kafka_health_t *out);

struct nudgel_ready_cond;

/**
 * @brief The one readiness rule for a consumer, for every role (DESIGN §8):
 * sets @p cond ok when statistics have come, a broker is up, every
 * subscribed topic exists, and the group is joined with its partitions assigned (or none after a
 * completed join: more members than partitions, idle by design); else not ok with the reason. Loop
 * thread (the condition itself is thread-safe).
 */
void nudgel_kafka_health_readiness(const nudgel_kafka_health_t *h, struct nudgel_ready_cond *cond);

#endif
