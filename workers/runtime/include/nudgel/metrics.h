/*
 * nudgel/metrics.h — Prometheus metrics for workers.
 *
 * A registry holds counters, gauges and histograms, each with a fixed,
 * small set of label values chosen at registration (a series per label
 * value, e.g. one counter per gateway). Updates are lock-free atomics, so the
 * event loop and the HTTP thread that renders /metrics never block each
 * other. Registration is not thread-safe: register everything at start-up.
 */
#ifndef NUDGEL_METRICS_H
#define NUDGEL_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct nudgel_metrics nudgel_metrics_t;
typedef struct nudgel_metric nudgel_metric_t;

typedef enum nudgel_metric_type {
    NUDGEL_METRIC_COUNTER,
    NUDGEL_METRIC_GAUGE,
    NUDGEL_METRIC_HISTOGRAM,
} nudgel_metric_type_t;

/** @brief A new, empty registry. NULL on allocation failure. */
nudgel_metrics_t *nudgel_metrics_new(void);
void nudgel_metrics_destroy(nudgel_metrics_t *m);

/**
 * @brief Registers a metric. @p label_name may be NULL for an unlabelled
 * metric; otherwise series are created on first use of a label value, up to
 * NUDGEL_METRIC_MAX_SERIES (further values share the series "other").
 * @p buckets (histograms only) are upper bounds in ascending order.
 * @returns a handle owned by the registry, or NULL on a bad name or ENOMEM.
 */
nudgel_metric_t *nudgel_metrics_register(nudgel_metrics_t *m, nudgel_metric_type_t type,
                                         const char *name, const char *help, const char *label_name,
                                         const double *buckets, size_t bucket_count);

#define NUDGEL_METRIC_MAX_SERIES 64

/** @brief Adds @p delta to a counter (or gauge) series; @p label may be NULL. */
void nudgel_metric_add(nudgel_metric_t *metric, const char *label, double delta);

/** @brief Sets a gauge series. */
void nudgel_metric_set(nudgel_metric_t *metric, const char *label, double value);

/** @brief Records one observation in a histogram series. */
void nudgel_metric_observe(nudgel_metric_t *metric, const char *label, double value);

/** @brief Current value of a counter or gauge series (tests, health checks). */
double nudgel_metric_value(nudgel_metric_t *metric, const char *label);

/** @brief Writes the registry in Prometheus text format 0.0.4. */
void nudgel_metrics_render(nudgel_metrics_t *m, FILE *out);

#endif
