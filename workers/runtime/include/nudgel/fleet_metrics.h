/*
 * nudgel/fleet_metrics.h — the families every role serves on /metrics, the
 * same names in every role, so one alert or dashboard covers the fleet:
 *
 *   nudgel_build_info{role,version}                 1
 *   nudgel_ready, nudgel_readiness_transitions_total (from the readiness)
 *   nudgel_jobs_consumed_total{topic}               jobs polled, per topic
 *   nudgel_jobs_succeeded_total                     jobs that reached their goal
 *   nudgel_jobs_failed_total{reason}                jobs that ended failed
 *   nudgel_job_retries_total{tier}                  retries published, per tier
 *   nudgel_dead_letters_total{reason}               dead letters published
 *   nudgel_jobs_in_flight                           jobs begun and not ended
 *   nudgel_kafka_consumer_lag{topic,partition}      per assigned partition
 *   nudgel_kafka_consumer_lag_total                 their sum
 *   nudgel_kafka_producer_queue_messages            publishes not yet acknowledged
 *   nudgel_pg_statement_seconds{statement}          per Postgres connection's purpose
 *   process_cpu_seconds_total, process_resident_memory_bytes,
 *   process_virtual_memory_bytes, process_open_fds, process_max_fds,
 *   process_start_time_seconds                      from /proc/self
 *
 * The worker skeleton creates one per process before the role's setup
 * (nudgel_worker_fleet_metrics()); the lifecycle counts jobs through it, the
 * consumer publishes its lags to it, a pgconn observes its statements in it.
 * Known label sets are announced at zero: a role names its failure reasons
 * and its consumers name their topics at start-up.
 *
 * Threads: updates on the loop thread; the families are rendered on the
 * HTTP thread (lags are copied under a mutex; producer queues are read with
 * rd_kafka_outq_len(), which is thread-safe).
 */
#ifndef NUDGEL_FLEET_METRICS_H
#define NUDGEL_FLEET_METRICS_H

#include <stddef.h>

#include "nudgel/kafka_health.h"
#include "nudgel/metrics.h"

struct nudgel_readiness;
struct nudgel_publisher;

typedef struct nudgel_fleet_metrics nudgel_fleet_metrics_t;

/**
 * @brief Registers the families in @p registry (borrowed; it must outlive
 * the result) for @p role with the readiness @p readiness (borrowed; may be
 * NULL). NULL when out of memory or the names are taken.
 */
nudgel_fleet_metrics_t *nudgel_fleet_metrics_new(nudgel_metrics_t *registry, const char *role,
                                                 const char *version,
                                                 struct nudgel_readiness *readiness);

/**
 * @brief Frees @p fm. The registry's collector still points at it: free the
 * registry's server (stop rendering) first. NULL is a no-op.
 */
void nudgel_fleet_metrics_free(nudgel_fleet_metrics_t *fm);

/** @brief The registry the families live in (for a role's own families). */
nudgel_metrics_t *nudgel_fleet_metrics_registry(nudgel_fleet_metrics_t *fm);

/** @brief Announces consumed{topic} per topic, and retries{tier} for retry tiers among them. */
void nudgel_fleet_metrics_topics(nudgel_fleet_metrics_t *fm, const char *const *topics,
                                 size_t count);

/** @brief Announces failed{reason} and dead_letters{reason} for the NULL-terminated @p reasons. */
void nudgel_fleet_metrics_reasons(nudgel_fleet_metrics_t *fm, const char *const *reasons);

/* Job counters (loop thread). NULL @p fm is a no-op, so tests may leave it out. */
void nudgel_fleet_job_consumed(nudgel_fleet_metrics_t *fm, const char *topic);
void nudgel_fleet_job_succeeded(nudgel_fleet_metrics_t *fm);
void nudgel_fleet_job_failed(nudgel_fleet_metrics_t *fm, const char *reason);
/** @brief A retry published to @p retry_topic ("nudgel.messages.retry.30s" counts tier "30s"). */
void nudgel_fleet_job_retried(nudgel_fleet_metrics_t *fm, const char *retry_topic);
void nudgel_fleet_job_dead_lettered(nudgel_fleet_metrics_t *fm, const char *reason);
void nudgel_fleet_jobs_in_flight(nudgel_fleet_metrics_t *fm, double delta);

/**
 * @brief A slot for one consumer's lags: @returns its index, or -1 when all
 * NUDGEL_FLEET_LAG_SLOTS are taken. Start-up only.
 */
#define NUDGEL_FLEET_LAG_SLOTS 4
int nudgel_fleet_metrics_lag_slot(nudgel_fleet_metrics_t *fm);

/** @brief Replaces slot @p slot's lags with @p h's (its assigned partitions now). */
void nudgel_fleet_metrics_lags(nudgel_fleet_metrics_t *fm, int slot,
                               const nudgel_kafka_health_t *h);

/**
 * @brief Counts @p p's unacknowledged publishes in the producer queue gauge
 * (nudgel_fleet_metrics_watch_queue() with nudgel_publisher_in_flight()). Start-up only.
 */
void nudgel_fleet_metrics_watch_publisher(nudgel_fleet_metrics_t *fm, struct nudgel_publisher *p);

/**
 * @brief The length of one producer's queue (a nudgel_publisher, a role's
 * own rd_kafka_t, libnudgel's producer): called on the rendering
 * thread, so it must be thread-safe (rd_kafka_outq_len() is).
 */
typedef int nudgel_fleet_queue_fn(void *opaque);

/**
 * @brief Counts @p fn(@p opaque) in the producer queue gauge too. Start-up
 * only; what @p opaque points at must live until rendering stops (the
 * worker stops its admin server before the role's teardown).
 */
void nudgel_fleet_metrics_watch_queue(nudgel_fleet_metrics_t *fm, nudgel_fleet_queue_fn *fn,
                                      void *opaque);

/**
 * @brief The nudgel_pg_statement_seconds histogram (label: statement), for
 * nudgel_pgconn_options_t.statement_seconds. NULL @p fm gives NULL.
 */
nudgel_metric_t *nudgel_fleet_metrics_pg_statements(nudgel_fleet_metrics_t *fm);

#endif
