/*
 * metrics.c — a small Prometheus registry (see nudgel/metrics.h).
 *
 * Values are doubles stored in 64-bit atomics (bit patterns), updated with a
 * compare-and-swap loop: correct under concurrent writers, cheap when there
 * is only one. A series is keyed by its label values joined with the unit
 * separator (0x1f, which no label value keeps: it is replaced by '?'). The
 * slot array of a metric is fixed; a new series is allocated whole and then
 * published by storing its pointer in the next free slot, so readers see
 * either no series or a complete one.
 */
#define _GNU_SOURCE
#include "nudgel/metrics.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_METRICS    160
#define MAX_COLLECTORS 16
#define MAX_BUCKETS    16
#define KEY_MAX        192
#define NAME_MAX_LEN   96
#define LABEL_NAME_MAX 48
#define SEPARATOR      '\x1f'

typedef struct series {
    uint64_t value; /* double bits: counter/gauge value or histogram sum */
    uint64_t count; /* histogram observations */
    uint64_t bucket_counts[MAX_BUCKETS];
    char key[KEY_MAX];
} series_t;

struct nudgel_metric {
    nudgel_metric_type_t type;
    char name[NAME_MAX_LEN];
    char help[320];
    char label_names[NUDGEL_METRIC_MAX_LABELS][LABEL_NAME_MAX];
    size_t label_count;
    double buckets[MAX_BUCKETS];
    size_t bucket_count;
    pthread_mutex_t create_lock; /* only taken to create a series */
    /* Allocated when first used, so a metric costs memory for the series it has. */
    _Atomic(series_t *) series[NUDGEL_METRIC_MAX_SERIES];
};

typedef struct collector {
    nudgel_metrics_collector_fn *fn;
    void *opaque;
} collector_t;

struct nudgel_metrics {
    nudgel_metric_t *metrics[MAX_METRICS];
    size_t count;
    collector_t collectors[MAX_COLLECTORS];
    size_t collector_count;
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
        for (size_t j = 0; j < NUDGEL_METRIC_MAX_SERIES; j++)
            free(atomic_load_explicit(&m->metrics[i]->series[j], memory_order_relaxed));
        pthread_mutex_destroy(&m->metrics[i]->create_lock);
        free(m->metrics[i]);
    }
    free(m);
}

static bool valid_name(const char *name, size_t max)
{
    if (!name || !(isalpha((unsigned char)name[0]) || name[0] == '_') || strlen(name) >= max)
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != ':')
            return false;
    return true;
}

static bool registered(const nudgel_metrics_t *m, const char *name)
{
    for (size_t i = 0; i < m->count; i++)
        if (strcmp(m->metrics[i]->name, name) == 0)
            return true;
    return false;
}

nudgel_metric_t *nudgel_metrics_register_labels(nudgel_metrics_t *m, nudgel_metric_type_t type,
                                                const char *name, const char *help,
                                                const char *const *label_names,
                                                const double *buckets, size_t bucket_count)
{
    size_t labels = 0;
    while (label_names && label_names[labels]) {
        if (labels == NUDGEL_METRIC_MAX_LABELS ||
            !valid_name(label_names[labels], LABEL_NAME_MAX) ||
            strcmp(label_names[labels], "le") == 0)
            return NULL;
        labels++;
    }
    if (!m || m->count == MAX_METRICS || !valid_name(name, NAME_MAX_LEN) || registered(m, name) ||
        bucket_count > MAX_BUCKETS || (type == NUDGEL_METRIC_HISTOGRAM && !bucket_count))
        return NULL;
    nudgel_metric_t *metric = calloc(1, sizeof(*metric));
    if (!metric)
        return NULL;
    metric->type = type;
    snprintf(metric->name, sizeof(metric->name), "%s", name);
    snprintf(metric->help, sizeof(metric->help), "%s", help ? help : "");
    for (size_t i = 0; i < labels; i++)
        snprintf(metric->label_names[i], LABEL_NAME_MAX, "%s", label_names[i]);
    metric->label_count = labels;
    for (size_t i = 0; i < bucket_count; i++)
        metric->buckets[i] = buckets[i];
    metric->bucket_count = bucket_count;
    pthread_mutex_init(&metric->create_lock, NULL);
    m->metrics[m->count++] = metric;
    return metric;
}

nudgel_metric_t *nudgel_metrics_register(nudgel_metrics_t *m, nudgel_metric_type_t type,
                                         const char *name, const char *help, const char *label_name,
                                         const double *buckets, size_t bucket_count)
{
    const char *names[] = {label_name, NULL};
    return nudgel_metrics_register_labels(m, type, name, help, names, buckets, bucket_count);
}

/* The key of @p values: joined by SEPARATOR, truncated to fit. */
static void make_key(const nudgel_metric_t *metric, const char *const *values, char *key)
{
    size_t used = 0;
    key[0] = '\0';
    for (size_t i = 0; i < metric->label_count; i++) {
        if (i && used + 1 < KEY_MAX)
            key[used++] = SEPARATOR;
        for (const char *p = values && values[i] ? values[i] : ""; *p && used + 1 < KEY_MAX; p++)
            key[used++] = *p == SEPARATOR ? '?' : *p;
    }
    key[used] = '\0';
}

static void other_key(const nudgel_metric_t *metric, char *key)
{
    const char *others[NUDGEL_METRIC_MAX_LABELS] = {"other", "other", "other"};
    make_key(metric, others, key);
}

/* The series of @p values, created on first use; NULL only when out of memory. */
static series_t *series_for(nudgel_metric_t *metric, const char *const *values)
{
    char want[KEY_MAX];
    make_key(metric, values, want);
    for (size_t i = 0; i < NUDGEL_METRIC_MAX_SERIES; i++) {
        series_t *s = atomic_load_explicit(&metric->series[i], memory_order_acquire);
        if (!s)
            break;
        if (strcmp(s->key, want) == 0)
            return s;
    }
    pthread_mutex_lock(&metric->create_lock);
    series_t *found = NULL;
    for (size_t i = 0; i < NUDGEL_METRIC_MAX_SERIES && !found; i++) {
        series_t *s = atomic_load_explicit(&metric->series[i], memory_order_acquire);
        if (s && strcmp(s->key, want) == 0) {
            found = s;
        } else if (!s) {
            if (!(s = calloc(1, sizeof(*s))))
                break;
            /* The last slot is kept for "other". */
            if (i == NUDGEL_METRIC_MAX_SERIES - 1)
                other_key(metric, s->key);
            else
                memcpy(s->key, want, sizeof(s->key));
            atomic_store_explicit(&metric->series[i], s, memory_order_release);
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

void nudgel_metric_add_v(nudgel_metric_t *metric, const char *const *values, double delta)
{
    series_t *s = metric ? series_for(metric, values) : NULL;
    if (s)
        atomic_add_double(&s->value, delta);
}

void nudgel_metric_set_v(nudgel_metric_t *metric, const char *const *values, double value)
{
    uint64_t bits;
    series_t *s = metric ? series_for(metric, values) : NULL;
    if (!s)
        return;
    memcpy(&bits, &value, sizeof(bits));
    __atomic_store_n(&s->value, bits, __ATOMIC_RELAXED);
}

void nudgel_metric_observe_v(nudgel_metric_t *metric, const char *const *values, double value)
{
    series_t *s =
        metric && metric->type == NUDGEL_METRIC_HISTOGRAM ? series_for(metric, values) : NULL;
    if (!s)
        return;
    for (size_t i = 0; i < metric->bucket_count; i++)
        if (value <= metric->buckets[i])
            __atomic_add_fetch(&s->bucket_counts[i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->count, 1, __ATOMIC_RELAXED);
    atomic_add_double(&s->value, value);
}

void nudgel_metric_touch_v(nudgel_metric_t *metric, const char *const *values)
{
    if (metric)
        (void)series_for(metric, values);
}

double nudgel_metric_value_v(nudgel_metric_t *metric, const char *const *values)
{
    double v = 0;
    series_t *s = metric ? series_for(metric, values) : NULL;
    uint64_t bits = s ? __atomic_load_n(&s->value, __ATOMIC_RELAXED) : 0;
    if (s)
        memcpy(&v, &bits, sizeof(v));
    return v;
}

void nudgel_metric_add(nudgel_metric_t *metric, const char *label, double delta)
{
    nudgel_metric_add_v(metric, &label, delta);
}

void nudgel_metric_set(nudgel_metric_t *metric, const char *label, double value)
{
    nudgel_metric_set_v(metric, &label, value);
}

void nudgel_metric_observe(nudgel_metric_t *metric, const char *label, double value)
{
    nudgel_metric_observe_v(metric, &label, value);
}

void nudgel_metric_touch(nudgel_metric_t *metric, const char *label)
{
    nudgel_metric_touch_v(metric, &label);
}

double nudgel_metric_value(nudgel_metric_t *metric, const char *label)
{
    return nudgel_metric_value_v(metric, &label);
}

int nudgel_metrics_add_collector(nudgel_metrics_t *m, nudgel_metrics_collector_fn *fn, void *opaque)
{
    if (!m || !fn || m->collector_count == MAX_COLLECTORS)
        return -1;
    m->collectors[m->collector_count++] = (collector_t){fn, opaque};
    return 0;
}

/* ---- text format -------------------------------------------------------- */

/*
 * Go's strconv.FormatFloat(v, 'g', -1, 64), which Prometheus' clients use:
 * the fewest significant digits that read back as @p v, in exponent form
 * when the decimal exponent is below -4 or at least 6 (0.005, 100000, 1e+06).
 */
void nudgel_metrics_format_number(double v, char *buf, size_t size)
{
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        snprintf(buf, size, signbit(v) ? "-0" : "0");
        return;
    }
    char e[40];
    int digits = 1;
    for (; digits < 17; digits++) {
        snprintf(e, sizeof(e), "%.*e", digits - 1, v);
        if (strtod(e, NULL) == v)
            break;
    }
    snprintf(e, sizeof(e), "%.*e", digits - 1, v);
    int exponent = atoi(strchr(e, 'e') + 1);
    if (exponent < -4 || exponent >= 6) {
        snprintf(buf, size, "%s", e);
        return;
    }
    int decimals = digits - (exponent + 1);
    snprintf(buf, size, "%.*f", decimals > 0 ? decimals : 0, v);
}

void nudgel_metrics_write_number(FILE *out, double v)
{
    char buf[48];
    nudgel_metrics_format_number(v, buf, sizeof(buf));
    fputs(buf, out);
}

void nudgel_metrics_write_label_value(FILE *out, const char *value)
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

void nudgel_metrics_write_header(FILE *out, const char *name, const char *help,
                                 nudgel_metric_type_t type)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    fprintf(out, "# HELP %s ", name);
    for (const char *p = help ? help : ""; *p; p++) { /* HELP escapes \ and newline only */
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
    fprintf(out, "\n# TYPE %s %s\n", name, type_names[type]);
}

static void write_series_name(FILE *out, const nudgel_metric_t *metric, const char *suffix,
                              const char *key, const char *le)
{
    fprintf(out, "%s%s", metric->name, suffix);
    if (!metric->label_count && !le)
        return;
    fputc('{', out);
    const char *value = key;
    for (size_t i = 0; i < metric->label_count; i++) {
        const char *end = strchr(value, SEPARATOR);
        size_t len = end ? (size_t)(end - value) : strlen(value);
        char one[KEY_MAX];
        memcpy(one, value, len);
        one[len] = '\0';
        fprintf(out, "%s%s=\"", i ? "," : "", metric->label_names[i]);
        nudgel_metrics_write_label_value(out, one);
        fputc('"', out);
        value = end ? end + 1 : value + len;
    }
    if (le)
        fprintf(out, "%sle=\"%s\"", metric->label_count ? "," : "", le);
    fputc('}', out);
}

static double bits_to_double(uint64_t bits)
{
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static void render_histogram_series(FILE *out, const nudgel_metric_t *metric, series_t *s,
                                    const char *key)
{
    uint64_t count = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
    for (size_t b = 0; b < metric->bucket_count; b++) {
        char le[48];
        nudgel_metrics_format_number(metric->buckets[b], le, sizeof(le));
        write_series_name(out, metric, "_bucket", key, le);
        fprintf(out, " %llu\n",
                (unsigned long long)__atomic_load_n(&s->bucket_counts[b], __ATOMIC_RELAXED));
    }
    write_series_name(out, metric, "_bucket", key, "+Inf");
    fprintf(out, " %llu\n", (unsigned long long)count);
    write_series_name(out, metric, "_sum", key, NULL);
    fputc(' ', out);
    nudgel_metrics_write_number(out, bits_to_double(__atomic_load_n(&s->value, __ATOMIC_RELAXED)));
    fputc('\n', out);
    write_series_name(out, metric, "_count", key, NULL);
    fprintf(out, " %llu\n", (unsigned long long)count);
}

void nudgel_metrics_render(nudgel_metrics_t *m, FILE *out)
{
    for (size_t i = 0; i < m->count; i++) {
        nudgel_metric_t *metric = m->metrics[i];
        nudgel_metrics_write_header(out, metric->name, metric->help, metric->type);
        for (size_t j = 0; j < NUDGEL_METRIC_MAX_SERIES; j++) {
            series_t *s = atomic_load_explicit(&metric->series[j], memory_order_acquire);
            if (!s)
                break;
            const char *key = s->key;
            if (metric->type == NUDGEL_METRIC_HISTOGRAM) {
                render_histogram_series(out, metric, s, key);
                continue;
            }
            write_series_name(out, metric, "", key, NULL);
            fputc(' ', out);
            nudgel_metrics_write_number(
                out, bits_to_double(__atomic_load_n(&s->value, __ATOMIC_RELAXED)));
            fputc('\n', out);
        }
    }
    for (size_t i = 0; i < m->collector_count; i++)
        m->collectors[i].fn(m->collectors[i].opaque, out);
}
