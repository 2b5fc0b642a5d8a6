/*
 * nudgel/metrics.h — Prometheus metrics for workers.
 *
 * A registry holds counters, gauges and histograms. A metric has up to
 * NUDGEL_METRIC_MAX_LABELS label names fixed at registration; a series is one
 * combination of label values. A series exists once it is first used or
 * announced with nudgel_metric_touch*() — announce every known label set at
 * start-up so a dashboard sees zeros, not gaps. Updates are lock-free
 * atomics, so the event loop and the HTTP thread that renders /metrics never
 * block each other. Registration is not thread-safe: register everything at
 * start-up, on one thread.
 *
 * Collectors are functions called at render time (on the HTTP thread) that
 * write whole families of their own: values read from elsewhere on each
 * scrape, such as /proc for process_* or a consumer's latest statistics.
 *
 * Numbers are printed as Prometheus' own client prints them (Go's shortest
 * round-trip form: 0.005, 1e+06, +Inf), so `le` labels read as written.
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

#define NUDGEL_METRIC_MAX_LABELS 3
/* Series per metric; past it, new label sets share the series whose every
 * label value is "other", so a label explosion stays bounded. */
#define NUDGEL_METRIC_MAX_SERIES 256

/** @brief A new, empty registry. NULL on allocation failure. */
nudgel_metrics_t *nudgel_metrics_new(void);
void nudgel_metrics_destroy(nudgel_metrics_t *m);

/**
 * @brief Registers a metric with one label (@p label_name) or none (NULL).
 * @p buckets (histograms only) are upper bounds in ascending order, at most
 * 16 (more: NULL).
 * @returns a handle owned by the registry, or NULL on a bad or duplicate
 * name, or ENOMEM.
 */
nudgel_metric_t *nudgel_metrics_register(nudgel_metrics_t *m, nudgel_metric_type_t type,
                                         const char *name, const char *help, const char *label_name,
                                         const double *buckets, size_t bucket_count);

/**
 * @brief Registers a metric with the NULL-terminated list @p label_names (at
 * most NUDGEL_METRIC_MAX_LABELS; NULL or empty for none).
 */
nudgel_metric_t *nudgel_metrics_register_labels(nudgel_metrics_t *m, nudgel_metric_type_t type,
                                                const char *name, const char *help,
                                                const char *const *label_names,
                                                const double *buckets, size_t bucket_count);

/* One-label (or unlabelled: @p label NULL) updates. */
void nudgel_metric_add(nudgel_metric_t *metric, const char *label, double delta);
void nudgel_metric_set(nudgel_metric_t *metric, const char *label, double value);
void nudgel_metric_observe(nudgel_metric_t *metric, const char *label, double value);
/** @brief Creates the series for @p label at zero if it does not exist. */
void nudgel_metric_touch(nudgel_metric_t *metric, const char *label);
/** @brief Current value of a counter or gauge series (tests, health checks). */
double nudgel_metric_value(nudgel_metric_t *metric, const char *label);

/* Multi-label updates: @p values has one entry per label name, in order. */
void nudgel_metric_add_v(nudgel_metric_t *metric, const char *const *values, double delta);
void nudgel_metric_set_v(nudgel_metric_t *metric, const char *const *values, double value);
void nudgel_metric_observe_v(nudgel_metric_t *metric, const char *const *values, double value);
void nudgel_metric_touch_v(nudgel_metric_t *metric, const char *const *values);
double nudgel_metric_value_v(nudgel_metric_t *metric, const char *const *values);

/* Two-label shorthands. */
static inline void nudgel_metric_add2(nudgel_metric_t *metric, const char *a, const char *b,
                                      double delta)
{
    const char *values[] = {a, b};
    nudgel_metric_add_v(metric, values, delta);
}
static inline void nudgel_metric_observe2(nudgel_metric_t *metric, const char *a, const char *b,
                                          double value)
{
    const char *values[] = {a, b};
    nudgel_metric_observe_v(metric, values, value);
}
static inline void nudgel_metric_touch2(nudgel_metric_t *metric, const char *a, const char *b)
{
    const char *values[] = {a, b};
    nudgel_metric_touch_v(metric, values);
}

/**
 * @brief A function that writes whole families (HELP, TYPE, samples) at each
 * render. Called on the rendering thread: it must be thread-safe against the
 * code that updates what it reads.
 */
typedef void nudgel_metrics_collector_fn(void *opaque, FILE *out);

/** @brief Adds a collector, rendered after the registered metrics, in order. */
int nudgel_metrics_add_collector(nudgel_metrics_t *m, nudgel_metrics_collector_fn *fn,
                                 void *opaque);

/** @brief Writes "# HELP name help\n# TYPE name type\n". */
void nudgel_metrics_write_header(FILE *out, const char *name, const char *help,
                                 nudgel_metric_type_t type);

/** @brief Writes @p v the way Prometheus prints a sample value or bound. */
void nudgel_metrics_write_number(FILE *out, double v);

/** @brief Formats @p v into @p buf (at least 32 bytes) as above. */
void nudgel_metrics_format_number(double v, char *buf, size_t size);

/** @brief Writes @p value escaped for a label value (\\, \" and \n). */
void nudgel_metrics_write_label_value(FILE *out, const char *value);

/** @brief Writes the registry in Prometheus text format 0.0.4. */
void nudgel_metrics_render(nudgel_metrics_t *m, FILE *out);

#endif
