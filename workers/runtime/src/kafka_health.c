/*
 * kafka_health.c — see nudgel/kafka_health.h.
 *
 * librdkafka hands over each statistics document (the callback returns 1)
 * and the monitor keeps the latest, unparsed: it is parsed whole with
 * jansson only when a snapshot is asked for, so an idle worker whose
 * health nobody reads pays nothing per interval. The lags are rebuilt on
 * each parse into an array the monitor owns, with the topic names copied
 * once per topic, so a snapshot's pointers stay valid until the next one.
 */
#define _GNU_SOURCE
#include "nudgel/kafka_health.h"

#include "nudgel/readiness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nudgel/log.h"

struct nudgel_kafka_monitor {
    nudgel_kafka_health_t health; /* lags point into the arrays below */
    nudgel_partition_lag_t *lags;
    char **topics; /* one copy per topic of the last document */
    size_t topic_count;
    char *pending; /* the latest document, not parsed yet (librdkafka's memory) */
    size_t pending_len;
    int64_t pending_at_us;
};

nudgel_kafka_monitor_t *nudgel_kafka_monitor_new(void)
{
    nudgel_kafka_monitor_t *m = calloc(1, sizeof(*m));
    if (m)
        m->health.assigned = -1;
    return m;
}

static void free_lags(nudgel_partition_lag_t *lags, char **topics, size_t topic_count)
{
    for (size_t i = 0; i < topic_count; i++)
        free(topics[i]);
    free(topics);
    free(lags);
}

void nudgel_kafka_monitor_free(nudgel_kafka_monitor_t *m)
{
    if (!m)
        return;
    free_lags(m->lags, m->topics, m->topic_count);
    rd_kafka_mem_free(NULL, m->pending);
    free(m);
}

static int is_stats_prop(const char *prop, const char *value, void *opaque)
{
    (void)value;
    (void)opaque;
    return strcmp(prop, "statistics.interval.ms") == 0;
}

nudgel_err_t nudgel_kafka_monitor_conf(rd_kafka_conf_t *kconf, const nudgel_conf_t *conf,
                                       char *errstr, size_t errstr_size)
{
    char inner[256];
    if (nudgel_conf_kafka_foreach(conf, is_stats_prop, NULL))
        return NUDGEL_OK; /* kafka.statistics.interval.ms was set: it wins */
    if (rd_kafka_conf_set(kconf, "statistics.interval.ms", NUDGEL_KAFKA_STATS_INTERVAL_MS, inner,
                          sizeof(inner)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "statistics.interval.ms: %s", inner);
        return NUDGEL_ERR_CONFIG;
    }
    return NUDGEL_OK;
}

/* Real brokers only: the bootstrap placeholders have nodeid -1 (and a name
 * ending in "/bootstrap"), the logical GroupCoordinator entry mirrors a real
 * broker, and the internal broker is no broker. */
static void read_brokers(json_t *brokers, nudgel_kafka_health_t *h)
{
    const char *name;
    json_t *b;
    h->brokers_up = 0;
    h->brokers_known = 0;
    json_object_foreach(brokers, name, b)
    {
        const char *source = json_string_value(json_object_get(b, "source"));
        const char *state = json_string_value(json_object_get(b, "state"));
        json_t *nodeid = json_object_get(b, "nodeid");
        size_t len = strlen(name);
        if (!json_is_integer(nodeid) || json_integer_value(nodeid) < 0 ||
            (len >= 10 && strcmp(name + len - 10, "/bootstrap") == 0) ||
            (source && (strcmp(source, "logical") == 0 || strcmp(source, "internal") == 0)))
            continue;
        h->brokers_known++;
        h->brokers_up += state && strcmp(state, "UP") == 0;
    }
}

static void read_group(json_t *cgrp, nudgel_kafka_health_t *h)
{
    const char *state = json_string_value(json_object_get(cgrp, "state"));
    const char *join = json_string_value(json_object_get(cgrp, "join_state"));
    json_t *size = json_object_get(cgrp, "assignment_size");
    if (!join) /* STATISTICS.md spells it "joinstate"; 2.0 emits "join_state" */
        join = json_string_value(json_object_get(cgrp, "joinstate"));
    snprintf(h->group_state, sizeof(h->group_state), "%s", state ? state : "");
    snprintf(h->join_state, sizeof(h->join_state), "%s", join ? join : "");
    h->group_up = strcmp(h->group_state, "up") == 0;
    h->group_steady = strcmp(h->join_state, "steady") == 0;
    h->assigned = json_is_integer(size) ? (int32_t)json_integer_value(size) : -1;
}

static int64_t int_field(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

/*
 * A partition's lag: librdkafka's consumer_lag when it knows one; for a
 * partition assigned to us (desired) on which the group has committed
 * nothing yet, what is left from where consumption starts (the position,
 * else the log start) to the high watermark — 0 on an empty partition, so
 * an idle fresh group shows its lag as 0 rather than not at all. -1 when
 * unknown or not ours.
 */
static int64_t partition_lag(json_t *p)
{
    int64_t lag = int_field(p, "consumer_lag");
    if (lag >= 0)
        return lag;
    int64_t hi = int_field(p, "hi_offset"), app = int_field(p, "app_offset");
    int64_t lo = int_field(p, "lo_offset");
    if (!json_is_true(json_object_get(p, "desired")) || hi < 0)
        return -1;
    int64_t from = app >= 0 ? app : lo;
    return from >= 0 && from <= hi ? hi - from : -1;
}

/* The lags of @p topics into fresh arrays; on allocation failure, what was
 * read so far. */
static void read_lags(nudgel_kafka_monitor_t *m, json_t *topics)
{
    size_t topic_cap = json_object_size(topics), lag_count = 0, topic_count = 0;
    char **names = topic_cap ? calloc(topic_cap, sizeof(names[0])) : NULL;
    nudgel_partition_lag_t *lags = NULL;
    size_t lag_cap = 0;
    int64_t total = 0;
    const char *topic;
    json_t *t;
    json_object_foreach(topics, topic, t)
    {
        const char *key;
        json_t *p;
        char *name = NULL;
        if (!names)
            break;
        json_object_foreach(json_object_get(t, "partitions"), key, p)
        {
            json_t *partition = json_object_get(p, "partition");
            int64_t lag = partition_lag(p);
            if (!json_is_integer(partition) || json_integer_value(partition) < 0 || lag < 0 ||
                lag_count == NUDGEL_KAFKA_MAX_LAGS)
                continue;
            if (!name) {
                if (!(name = strdup(topic)))
                    break;
                names[topic_count++] = name;
            }
            if (lag_count == lag_cap) {
                size_t cap = lag_cap ? lag_cap * 2 : 16;
                nudgel_partition_lag_t *grown = realloc(lags, cap * sizeof(lags[0]));
                if (!grown)
                    break;
                lags = grown;
                lag_cap = cap;
            }
            lags[lag_count++] = (nudgel_partition_lag_t){
                .topic = name,
                .partition = (int32_t)json_integer_value(partition),
                .lag = lag,
            };
            total += lag;
        }
    }
    free_lags(m->lags, m->topics, m->topic_count);
    m->lags = lags;
    m->topics = names;
    m->topic_count = topic_count;
    m->health.lags = lags;
    m->health.lag_count = lag_count;
    m->health.lag_total = total;
}

nudgel_err_t nudgel_kafka_monitor_stats(nudgel_kafka_monitor_t *m, const char *json, size_t len,
                                        int64_t now_us, char *errstr, size_t errstr_size)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!json_is_object(root)) {
        snprintf(errstr, errstr_size, "statistics: %s (line %d, column %d)",
                 root ? "not an object" : jerr.text, jerr.line, jerr.column);
        json_decref(root);
        return NUDGEL_ERR_INVALID_JSON;
    }
    nudgel_kafka_health_t *h = &m->health;
    read_brokers(json_object_get(root, "brokers"), h);
    json_t *cgrp = json_object_get(root, "cgrp");
    if (json_is_object(cgrp))
        read_group(cgrp, h);
    read_lags(m, json_object_get(root, "topics"));
    if (h->brokers_up > 0 && now_us >= h->all_brokers_down_at_us)
        h->all_brokers_down = false;
    h->stats_at_us = now_us;
    json_decref(root);
    return NUDGEL_OK;
}

void nudgel_kafka_monitor_keep_stats(nudgel_kafka_monitor_t *m, char *json, size_t len,
                                     int64_t now_us)
{
    rd_kafka_mem_free(NULL, m->pending);
    m->pending = json;
    m->pending_len = len;
    m->pending_at_us = now_us;
}

void nudgel_kafka_monitor_error(nudgel_kafka_monitor_t *m, int err, int64_t now_us)
{
    if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        return;
    m->health.all_brokers_down = true;
    m->health.all_brokers_down_at_us = now_us;
}

void nudgel_kafka_monitor_get(nudgel_kafka_monitor_t *m, nudgel_kafka_health_t *out)
{
    if (m->pending) {
        char errstr[256];
        if (nudgel_kafka_monitor_stats(m, m->pending, m->pending_len, m->pending_at_us, errstr,
                                       sizeof(errstr)) != NUDGEL_OK)
            nudgel_log_warn("kafka %s", errstr);
        rd_kafka_mem_free(NULL, m->pending);
        m->pending = NULL;
    }
    *out = m->health;
}

void nudgel_kafka_health_readiness(const nudgel_kafka_health_t *h, struct nudgel_ready_cond *cond)
{
    if (!h->stats_at_us)
        nudgel_ready_fail(cond, "no statistics from the consumer yet");
    else if (h->all_brokers_down || h->brokers_up == 0)
        nudgel_ready_fail(cond, "no broker up (%d known)", h->brokers_known);
    else if (h->topics_missing > 0)
        nudgel_ready_fail(cond, "topic %s does not exist yet (%d missing)", h->missing_topic,
                          h->topics_missing);
    else if (!h->group_up)
        nudgel_ready_fail(cond, "consumer group not joined (state %s)", h->group_state);
    else if (h->assigned == 0 && !h->group_steady)
        nudgel_ready_fail(cond, "joining the consumer group (%s)", h->join_state);
    else
        nudgel_ready_ok(cond);
}
