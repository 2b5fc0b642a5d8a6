/*
 * topics_ensure.c — `nudgel-admin topics ensure [--alter]`
 * (nudgel_admin_topics_ensure(), topics.h) on the Admin API client of
 * topics_admin.c.
 *
 * One metadata request tells which contract topics exist, with their
 * partition count and replication factor; CreateTopics makes the missing ones
 * (TOPIC_ALREADY_EXISTS from a concurrent run counts as existing);
 * DescribeConfigs reads retention.ms of the others. What differs from the
 * configuration is drift. Kafka can add partitions (CreatePartitions) and
 * change retention.ms, but never remove partitions; replication factor
 * changes need a reassignment plan, which is an operator's decision, so both
 * are only reported.
 *
 * librdkafka 2.0 has no IncrementalAlterConfigs: AlterConfigs replaces every
 * dynamic config of a topic, so an alteration carries over the topic's other
 * dynamic configs (and cleanup.policy) next to the new retention.ms.
 */
#define _GNU_SOURCE
#include "topics.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "nudgel/log.h"
#include "topics_admin.h"

/* Appends "; "-separated text to a fixed buffer (truncating, never overflowing). */
static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;
    if (len && len + 2 < size) {
        memcpy(buf + len, "; ", 3);
        len += 2;
    }
    if (len + 1 >= size)
        return;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

/*
 * CreateTopics for every missing topic. Sets @p raced when another run
 * created one first (its metadata must then be read again).
 */
static nudgel_err_t create_missing(topics_admin_t *a, bool *raced, char *errstr, size_t errstr_size)
{
    rd_kafka_NewTopic_t **nts = calloc(a->count, sizeof(*nts));
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_event_t *ev = NULL;
    size_t n = 0;
    char retention[32];
    nudgel_err_t err = NUDGEL_OK;

    *raced = false;
    if (!nts) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < a->count; i++) {
        topic_state_t *t = &a->topics[i];
        char inner[256];
        if (t->exists)
            continue;
        rd_kafka_NewTopic_t *nt =
            rd_kafka_NewTopic_new(t->name, t->want_partitions, t->want_rf, inner, sizeof(inner));
        if (!nt) {
            snprintf(errstr, errstr_size, "%s: %s", t->name, inner);
            err = NUDGEL_ERR_CONFIG;
            goto out;
        }
        nts[n++] = nt;
        snprintf(retention, sizeof(retention), "%lld", t->want_retention_ms);
        if (rd_kafka_NewTopic_set_config(nt, "retention.ms", retention) ||
            rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "delete")) {
            snprintf(errstr, errstr_size, "%s: cannot set topic configs", t->name);
            err = NUDGEL_ERR_NO_MEMORY;
            goto out;
        }
    }
    if (n == 0)
        goto out;
    opts = topics_admin_options(a, RD_KAFKA_ADMIN_OP_CREATETOPICS, errstr, errstr_size);
    if (!opts) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    rd_kafka_CreateTopics(a->rk, nts, n, opts, a->queue);
    ev = topics_admin_wait(a, "CreateTopics", errstr, errstr_size);
    if (!ev) {
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    size_t cnt;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        topic_state_t *t = topics_admin_find(a, rd_kafka_topic_result_name(results[i]));
        rd_kafka_resp_err_t kerr = rd_kafka_topic_result_error(results[i]);
        const char *msg = rd_kafka_topic_result_error_string(results[i]);
        if (!t)
            continue;
        if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            t->created = true;
            t->exists = true;
            t->partitions = t->want_partitions;
            t->rf = t->want_rf;
            t->retention_ms = t->want_retention_ms;
            nudgel_log_debug("created topic %s (%d partitions, replication factor %d)", t->name,
                             t->want_partitions, t->want_rf);
        } else if (kerr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            *raced = true;
        } else {
            snprintf(t->error, sizeof(t->error), "creating: %s",
                     msg ? msg : rd_kafka_err2str(kerr));
        }
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (nts)
        rd_kafka_NewTopic_destroy_array(nts, n);
    free(nts);
    return err;
}

/* Fills drift text and what --alter may fix for an existing, not just created topic. */
static void compute_drift(topic_state_t *t, bool alter)
{
    const char *hint = alter ? "" : " (topics ensure --alter adds them)";
    if (!t->exists || t->created || t->error[0])
        return;
    if (t->partitions < t->want_partitions) {
        t->fix_partitions = alter;
        if (!alter)
            append(t->drift, sizeof(t->drift), "partitions %d < %d configured%s", t->partitions,
                   t->want_partitions, hint);
    } else if (t->partitions > t->want_partitions) {
        append(t->drift, sizeof(t->drift),
               "partitions %d > %d configured (Kafka cannot remove partitions)", t->partitions,
               t->want_partitions);
    }
    if (t->rf != t->want_rf)
        append(t->drift, sizeof(t->drift),
               "replication factor %d != %d configured (needs a partition reassignment)", t->rf,
               t->want_rf);
    if (t->retention_ms < 0) {
        append(t->drift, sizeof(t->drift), "retention.ms unknown");
    } else if (t->retention_ms != t->want_retention_ms) {
        t->fix_retention = alter;
        if (!alter)
            append(t->drift, sizeof(t->drift),
                   "retention.ms %lld != %lld configured (topics ensure --alter sets it)",
                   t->retention_ms, t->want_retention_ms);
    }
}

/* CreatePartitions up to the configured count for every topic with fewer. */
static nudgel_err_t add_partitions(topics_admin_t *a, char *errstr, size_t errstr_size)
{
    rd_kafka_NewPartitions_t **nps = calloc(a->count, sizeof(*nps));
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_event_t *ev = NULL;
    size_t n = 0;
    nudgel_err_t err = NUDGEL_OK;

    if (!nps) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < a->count; i++) {
        topic_state_t *t = &a->topics[i];
        char inner[256];
        if (!t->fix_partitions)
            continue;
        nps[n] =
            rd_kafka_NewPartitions_new(t->name, (size_t)t->want_partitions, inner, sizeof(inner));
        if (!nps[n]) {
            snprintf(t->error, sizeof(t->error), "adding partitions: %s", inner);
            continue;
        }
        n++;
    }
    if (n == 0)
        goto out;
    opts = topics_admin_options(a, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS, errstr, errstr_size);
    if (!opts) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    rd_kafka_CreatePartitions(a->rk, nps, n, opts, a->queue);
    ev = topics_admin_wait(a, "CreatePartitions", errstr, errstr_size);
    if (!ev) {
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    size_t cnt;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        topic_state_t *t = topics_admin_find(a, rd_kafka_topic_result_name(results[i]));
        if (!t)
            continue;
        if (rd_kafka_topic_result_error(results[i])) {
            snprintf(t->error, sizeof(t->error), "adding partitions: %s",
                     rd_kafka_topic_result_error_string(results[i]));
            continue;
        }
        append(t->altered, sizeof(t->altered), "partitions %d -> %d", t->partitions,
               t->want_partitions);
        nudgel_log_debug("topic %s: partitions %d -> %d", t->name, t->partitions,
                         t->want_partitions);
        t->partitions = t->want_partitions;
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (nps)
        rd_kafka_NewPartitions_destroy_array(nps, n);
    free(nps);
    return err;
}

/*
 * The AlterConfigs resource of a topic: its current dynamic configs (which
 * AlterConfigs would otherwise drop), cleanup.policy, and the configured
 * retention.ms. NULL when a sensitive dynamic config cannot be carried over.
 */
static rd_kafka_ConfigResource_t *alter_resource(const topic_state_t *t, char *why, size_t why_size)
{
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, t->name);
    const char *cleanup_policy = "delete";
    size_t entries = 0;
    char retention[32];
    const rd_kafka_ConfigEntry_t **ce =
        t->described ? rd_kafka_ConfigResource_configs(t->described, &entries) : NULL;
    for (size_t e = 0; e < entries; e++) {
        const char *name = rd_kafka_ConfigEntry_name(ce[e]);
        const char *value = rd_kafka_ConfigEntry_value(ce[e]);
        if (strcmp(name, "cleanup.policy") == 0 && value)
            cleanup_policy = value;
        if (rd_kafka_ConfigEntry_source(ce[e]) != RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG ||
            strcmp(name, "retention.ms") == 0 || strcmp(name, "cleanup.policy") == 0)
            continue;
        if (!value) {
            snprintf(why, why_size,
                     "dynamic config %s is sensitive and would be lost by AlterConfigs", name);
            rd_kafka_ConfigResource_destroy(res);
            return NULL;
        }
        rd_kafka_ConfigResource_set_config(res, name, value);
    }
    snprintf(retention, sizeof(retention), "%lld", t->want_retention_ms);
    rd_kafka_ConfigResource_set_config(res, "retention.ms", retention);
    rd_kafka_ConfigResource_set_config(res, "cleanup.policy", cleanup_policy);
    return res;
}

static nudgel_err_t alter_retention(topics_admin_t *a, char *errstr, size_t errstr_size)
{
    rd_kafka_ConfigResource_t **res = calloc(a->count, sizeof(*res));
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_event_t *ev = NULL;
    size_t n = 0;
    nudgel_err_t err = NUDGEL_OK;

    if (!res) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < a->count; i++) {
        topic_state_t *t = &a->topics[i];
        char why[256];
        if (!t->fix_retention)
            continue;
        res[n] = alter_resource(t, why, sizeof(why));
        if (!res[n]) {
            snprintf(t->error, sizeof(t->error), "setting retention.ms: %s", why);
            continue;
        }
        n++;
    }
    if (n == 0)
        goto out;
    opts = topics_admin_options(a, RD_KAFKA_ADMIN_OP_ALTERCONFIGS, errstr, errstr_size);
    if (!opts) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    rd_kafka_AlterConfigs(a->rk, res, n, opts, a->queue);
    ev = topics_admin_wait(a, "AlterConfigs", errstr, errstr_size);
    if (!ev) {
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    size_t cnt;
    const rd_kafka_ConfigResource_t **results =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        topic_state_t *t = topics_admin_find(a, rd_kafka_ConfigResource_name(results[i]));
        if (!t)
            continue;
        if (rd_kafka_ConfigResource_error(results[i])) {
            snprintf(t->error, sizeof(t->error), "setting retention.ms: %s",
                     rd_kafka_ConfigResource_error_string(results[i]));
            continue;
        }
        append(t->altered, sizeof(t->altered), "retention.ms %lld -> %lld", t->retention_ms,
               t->want_retention_ms);
        nudgel_log_debug("topic %s: retention.ms %lld -> %lld", t->name, t->retention_ms,
                         t->want_retention_ms);
        t->retention_ms = t->want_retention_ms;
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (res)
        rd_kafka_ConfigResource_destroy_array(res, n);
    free(res);
    return err;
}

nudgel_err_t nudgel_admin_topics_ensure(const nudgel_conf_t *conf,
                                        const nudgel_admin_topics_opts_t *opts, FILE *out,
                                        bool *drift_remains, char *errstr, size_t errstr_size)
{
    topics_admin_t a;
    bool raced = false;
    size_t created = 0, ok = 0, altered = 0, drifted = 0, failed = 0;
    nudgel_err_t err = topics_admin_open(&a, conf, errstr, errstr_size);
    *drift_remains = false;
    if (err != NUDGEL_OK)
        return err;
    err = topics_admin_load_metadata(&a, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    err = create_missing(&a, &raced, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    if (raced && (err = topics_admin_load_metadata(&a, errstr, errstr_size)) != NUDGEL_OK)
        goto out;
    err = topics_admin_describe_configs(&a, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    for (size_t i = 0; i < a.count; i++)
        compute_drift(&a.topics[i], opts->alter);
    if (opts->alter) {
        err = add_partitions(&a, errstr, errstr_size);
        if (err != NUDGEL_OK)
            goto out;
        err = alter_retention(&a, errstr, errstr_size);
        if (err != NUDGEL_OK)
            goto out;
    }
    for (size_t i = 0; i < a.count; i++) {
        const topic_state_t *t = &a.topics[i];
        char line[4 * TEXT_MAX] = "";
        if (t->error[0]) {
            append(line, sizeof(line), "error: %s", t->error);
            failed++;
        }
        if (t->created) {
            append(line, sizeof(line),
                   "created (%d partitions, replication factor %d, retention.ms %lld)",
                   t->partitions, t->rf, t->retention_ms);
            created++;
        }
        if (t->altered[0]) {
            append(line, sizeof(line), "altered: %s", t->altered);
            altered++;
        }
        if (t->drift[0]) {
            append(line, sizeof(line), "drift: %s", t->drift);
            drifted++;
        }
        if (!line[0]) {
            append(line, sizeof(line), "ok");
            ok++;
        }
        fprintf(out, "%-30s %s\n", t->name, line);
    }
    fprintf(out,
            "topics: %zu total, %zu created, %zu ok, %zu altered, %zu with drift, %zu errors\n",
            a.count, created, ok, altered, drifted, failed);
    *drift_remains = drifted > 0;
    if (failed) {
        snprintf(errstr, errstr_size, "%zu topic%s could not be created or altered", failed,
                 failed == 1 ? "" : "s");
        err = NUDGEL_ERR_KAFKA;
    }
out:
    topics_admin_close(&a);
    return err;
}
