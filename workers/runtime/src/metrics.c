/*
 * metrics.c — a small Prometheus registry (see nudgel/metrics.h).
 *
 * Values are doubles stored in 64-bit atomics (bit patterns), updated with a
 * compare-and-swap loop: correct under concurrent writers, cheap when there
 * is only one. Series of a labelled metric are created on first use; the
 * slot array is fixed, and a new label value is published by storing its
 * name last, so readers see either no series or a complete one.
 */
#define _GNU_SOURCE
#include "nudgel/metrics.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_METRICS     128
#define MAX_BUCKETS     16
#define LABEL_VALUE_MAX 64

typedef struct series {
    char label[LABEL_VALUE_MAX];
    _Atomic(const char *) published; /* == label once the series exists */
    uint64_t value;                  /* double bits: counter/gauge value or histogram sum */
    uint64_t count;                  /* histogram observations */
    uint64_t bucket_counts[MAX_BUCKETS];
} series_t;

struct nudgel_metric {
    nudgel_metric_type_t type;
    char name[96];
    char help[256];
    char label_name[48];
    double buckets[MAX_BUCKETS];
    size_t bucket_count;
    series_t series[NUDGEL_METRIC_MAX_SERIES];
    pthread_mutex_t create_lock; /* only taken to create a series */
};

struct nudgel_metrics {
    nudgel_metric_t *metrics[MAX_METRICS];
    size_t count;
};

nudgel_metrics_t *nudgel_metrics_new(void)
{
    return calloc(1, sizeof(nudgel_metrics_t));
}

void nudgel_metrics_destroy(nudgel_metrics_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->count; i++) {
        pthread_mutex_destroy(&m->metrics[i]->create_lock);
        free(m->metrics[i]);
    }
    free(m);
}

static bool valid_name(const char *name)
{
    if (!name || !(isalpha((unsigned char)name[0]) || name[0] == '_'))
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != ':')
            return false;
    return true;
}

nudgel_metric_t *nudgel_metrics_register(nudgel_metrics_t *m, nudgel_metric_type_t type,
                                         const char *name, const char *help, const char *label_name,
                                         const double *buckets, size_t bucket_count)
{
    if (!m || m->count == MAX_METRICS || !valid_name(name) || strlen(name) >= 96 ||
        (label_name && (!valid_name(label_name) || strlen(label_name) >= 48)) ||
        bucket_count > MAX_BUCKETS || (type == NUDGEL_METRIC_HISTOGRAM && !bucket_count))
        return NULL;
    nudgel_metric_t *metric = calloc(1, sizeof(*metric));
    if (!metric)
        return NULL;
    metric->type = type;
    snprintf(metric->name, sizeof(metric->name), "%s", name);
    snprintf(metric->help, sizeof(metric->help), "%s", help ? help : "");
    snprintf(metric->label_name, sizeof(metric->label_name), "%s", label_name ? label_name : "");
    for (size_t i = 0; i < bucket_count; i++)
        metric->buckets[i] = buckets[i];
    metric->bucket_count = bucket_count;
    pthread_mutex_init(&metric->create_lock, NULL);
    m->metrics[m->count++] = metric;
    return metric;
}

/* The series of @p label, created on first use; "" for an unlabelled metric. */
static series_t *series_for(nudgel_metric_t *metric, const char *label)
{
    const char *want = metric->label_name[0] ? (label ? label : "") : "";
    for (size_t i = 0; i < NUDGEL_METRIC_MAX_SERIES; i++) {
        series_t *s = &metric->series[i];
        const char *pub = atomic_load_explicit(&s->published, memory_order_acquire);
        if (!pub)
            break;
        if (strcmp(pub, want) == 0)
            return s;
    }
    pthread_mutex_lock(&metric->create_lock);
    series_t *found = NULL;
    for (size_t i = 0; i < NUDGEL_METRIC_MAX_SERIES && !found; i++) {
        series_t *s = &metric->series[i];
        const char *pub = atomic_load_explicit(&s->published, memory_order_acquire);
        if (pub && strcmp(pub, want) == 0) {
            found = s;
        } else if (!pub) {
            /* The last slot is kept for "other" so a label explosion stays bounded. */
            bool last = i == NUDGEL_METRIC_MAX_SERIES - 1;
            snprintf(s->label, sizeof(s->label), "%s", last ? "other" : want);
            atomic_store_explicit(&s->published, s->label, memory_order_release);
            found = s;
        } else if (i == NUDGEL_METRIC_MAX_SERIES - 1) {
            found = s; /* "other" */
        }
    }
    pthread_mutex_unlock(&metric->create_lock);
    return found;
}

static void atomic_add_double(uint64_t *slot, double delta)
{
    uint64_t old = __atomic_load_n(slot, __ATOMIC_RELAXED), new_bits;
    do {
        double v;
        memcpy(&v, &old, sizeof(v));
        v += delta;
        memcpy(&new_bits, &v, sizeof(v));
    } while (!__atomic_compare_exchange_n(slot, &old, new_bits, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
}

void nudgel_metric_add(nudgel_metric_t *metric, const char *label, double delta)
{
    if (metric)
        atomic_add_double(&series_for(metric, label)->value, delta);
}

void nudgel_metric_set(nudgel_metric_t *metric, const char *label, double value)
{
    uint64_t bits;
    if (!metric)
        return;
    memcpy(&bits, &value, sizeof(bits));
    __atomic_store_n(&series_for(metric, label)->value, bits, __ATOMIC_RELAXED);
}

void nudgel_metric_observe(nudgel_metric_t *metric, const char *label, double value)
{
    if (!metric || metric->type != NUDGEL_METRIC_HISTOGRAM)
        return;
    series_t *s = series_for(metric, label);
    for (size_t i = 0; i < metric->bucket_count; i++)
        if (value <= metric->buckets[i])
            __atomic_add_fetch(&s->bucket_counts[i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->count, 1, __ATOMIC_RELAXED);
    atomic_add_double(&s->value, value);
}

double nudgel_metric_value(nudgel_metric_t *metric, const char *label)
{
    double v;
    uint64_t bits = __atomic_load_n(&series_for(metric, label)->value, __ATOMIC_RELAXED);
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static void write_label_value(FILE *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', out);
        if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

static void write_series_name(FILE *out, const nudgel_metric_t *metric, const char *suffix,
                              const char *label, const char *le)
{
    fprintf(out, "%s%s", metric->name, suffix);
    bool labelled = metric->label_name[0] != '\0';
    if (!labelled && !le)
        return;
    fputc('{', out);
    if (labelled) {
        fprintf(out, "%s=\"", metric->label_name);
        write_label_value(out, label);
        fputc('"', out);
    }
    if (le)
        fprintf(out, "%sle=\"%s\"", labelled ? "," : "", le);
    fputc('}', out);
}

static double bits_to_double(uint64_t bits)
{
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

void nudgel_metrics_render(nudgel_metrics_t *m, FILE *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    for (size_t i = 0; i < m->count; i++) {
        nudgel_metric_t *metric = m->metrics[i];
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", metric->name, metric->help, metric->name,
                type_names[metric->type]);
        for (size_t j = 0; j < NUDGEL_METRIC_MAX_SERIES; j++) {
            series_t *s = &metric->series[j];
            const char *label = atomic_load_explicit(&s->published, memory_order_acquire);
            if (!label)
                break;
            double value = bits_to_double(__atomic_load_n(&s->value, __ATOMIC_RELAXED));
            if (metric->type != NUDGEL_METRIC_HISTOGRAM) {
                write_series_name(out, metric, "", label, NULL);
                fprintf(out, " %.17g\n", value);
                continue;
            }
            uint64_t count = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
            for (size_t b = 0; b < metric->bucket_count; b++) {
                char le[32];
                snprintf(le, sizeof(le), "%.17g", metric->buckets[b]);
                write_series_name(out, metric, "_bucket", label, le);
                fprintf(
                    out, " %llu\n",
                    (unsigned long long)__atomic_load_n(&s->bucket_counts[b], __ATOMIC_RELAXED));
            }
            write_series_name(out, metric, "_bucket", label, "+Inf");
            fprintf(out, " %llu\n", (unsigned long long)count);
            write_series_name(out, metric, "_sum", label, NULL);
            fprintf(out, " %.17g\n", value);
            write_series_name(out, metric, "_count", label, NULL);
            fprintf(out, " %llu\n", (unsigned long long)count);
        }
    }
}
