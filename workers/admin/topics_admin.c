/*
 * topics_admin.c — the Admin API client of `nudgel-admin topics` (see
 * topics_admin.h): opening it once a broker answers, the wanted state of
 * each contract topic from the configuration, bounded requests and waits,
 * and what both commands read: one metadata request for existence,
 * partitions and replication factor, and DescribeConfigs for retention.ms.
 */
#define _GNU_SOURCE
#include "topics_admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/kafka.h"

static const char *retention_key(nudgel_topic_class_t topic_class)
{
    switch (topic_class) {
    case NUDGEL_TOPIC_CLASS_JOBS:
        return "topics.retention_ms.jobs";
    case NUDGEL_TOPIC_CLASS_RETRY:
        return "topics.retention_ms.retry";
    case NUDGEL_TOPIC_CLASS_DLQ:
        return "topics.retention_ms.dlq";
    case NUDGEL_TOPIC_CLASS_STATUS:
        return "topics.retention_ms.status";
    case NUDGEL_TOPIC_CLASS_DLR:
        return "topics.retention_ms.dlr";
    }
    return "topics.retention_ms.jobs";
}

void topics_admin_close(topics_admin_t *a)
{
    if (a->described_ev)
        rd_kafka_event_destroy(a->described_ev);
    if (a->queue)
        rd_kafka_queue_destroy(a->queue);
    if (a->rk)
        rd_kafka_destroy(a->rk);
    free(a->topics);
    memset(a, 0, sizeof(*a));
}

/*
 * A client, its result queue and the wanted state of every contract topic,
 * once a broker has answered. On failure everything is released.
 */
nudgel_err_t topics_admin_open(topics_admin_t *a, const nudgel_conf_t *conf, char *errstr,
                               size_t errstr_size)
{
    size_t count;
    const nudgel_topic_spec_t *specs = nudgel_topics_all(&count);
    char inner[512];
    rd_kafka_conf_t *kconf = NULL;
    nudgel_err_t err = NUDGEL_OK;

    memset(a, 0, sizeof(*a));
    a->timeout_ms = (int)nudgel_conf_get_int(conf, "admin.timeout_ms");
    a->topics = calloc(count, sizeof(*a->topics));
    if (!a->topics) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    a->count = count;
    for (size_t i = 0; i < count; i++) {
        topic_state_t *t = &a->topics[i];
        t->spec = &specs[i];
        snprintf(t->name, sizeof(t->name), "%s%s", nudgel_conf_get_str(conf, "topics.namespace"),
                 specs[i].name);
        t->want_partitions = (int)nudgel_conf_get_int(conf, "topics.partitions");
        t->want_rf = (int)nudgel_conf_get_int(conf, "topics.replication_factor");
        t->want_retention_ms = nudgel_conf_get_int(conf, retention_key(specs[i].topic_class));
        t->retention_ms = -1;
    }
    kconf = nudgel_kafka_conf_new(conf, errstr, errstr_size);
    if (!kconf) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    a->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, inner, sizeof(inner));
    if (!a->rk) {
        snprintf(errstr, errstr_size, "creating the Kafka client: %s", inner);
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    kconf = NULL; /* owned by rk now */
    a->queue = rd_kafka_queue_new(a->rk);
    if (!a->queue) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    err = nudgel_kafka_check_reachable(a->rk, a->timeout_ms, inner, sizeof(inner));
    if (err != NUDGEL_OK)
        snprintf(errstr, errstr_size, "cannot reach Kafka at %s: %s",
                 nudgel_conf_get_str(conf, "kafka.bootstrap"), inner);
out:
    if (kconf)
        rd_kafka_conf_destroy(kconf);
    if (err != NUDGEL_OK)
        topics_admin_close(a);
    return err;
}

rd_kafka_AdminOptions_t *topics_admin_options(topics_admin_t *a, rd_kafka_admin_op_t op,
                                              char *errstr, size_t errstr_size)
{
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(a->rk, op);
    if (!opts) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (rd_kafka_AdminOptions_set_request_timeout(opts, a->timeout_ms, errstr, errstr_size))
        goto fail;
    /* The broker waits this long for creations to complete before it answers. */
    if ((op == RD_KAFKA_ADMIN_OP_CREATETOPICS || op == RD_KAFKA_ADMIN_OP_CREATEPARTITIONS) &&
        rd_kafka_AdminOptions_set_operation_timeout(opts, a->timeout_ms, errstr, errstr_size))
        goto fail;
    return opts;
fail:
    rd_kafka_AdminOptions_destroy(opts);
    return NULL;
}

/*
 * The result event of the request just sent, or NULL with a reason when the
 * request as a whole failed (per-topic errors are the caller's to read).
 * librdkafka enforces the request timeout; the extra second only guards
 * against waiting forever should no event come.
 */
rd_kafka_event_t *topics_admin_wait(topics_admin_t *a, const char *what, char *errstr,
                                    size_t errstr_size)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(a->queue, a->timeout_ms + 1000);
    if (!ev) {
        snprintf(errstr, errstr_size, "%s: no answer within %d ms", what, a->timeout_ms);
        return NULL;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "%s: %s", what, rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

topic_state_t *topics_admin_find(topics_admin_t *a, const char *name)
{
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->topics[i].name, name) == 0)
            return &a->topics[i];
    return NULL;
}

/* Existence, partition count and (smallest) replication factor of every topic. */
nudgel_err_t topics_admin_load_metadata(topics_admin_t *a, char *errstr, size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(a->rk, 1, NULL, &md, a->timeout_ms);
    if (kerr) {
        snprintf(errstr, errstr_size, "reading topic metadata: %s", rd_kafka_err2str(kerr));
        return nudgel_kafka_err(kerr) == NUDGEL_ERR_KAFKA_UNREACHABLE ? NUDGEL_ERR_KAFKA_UNREACHABLE
                                                                      : NUDGEL_ERR_KAFKA;
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[i];
        topic_state_t *t = topics_admin_find(a, mt->topic);
        if (!t || mt->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            continue;
        t->exists = true;
        t->partitions = mt->partition_cnt;
        t->rf = 0;
        for (int p = 0; p < mt->partition_cnt; p++)
            if (p == 0 || mt->partitions[p].replica_cnt < t->rf)
                t->rf = mt->partitions[p].replica_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return NUDGEL_OK;
}

/* retention.ms (and the config resource, kept for AlterConfigs) of every existing topic. */
nudgel_err_t topics_admin_describe_configs(topics_admin_t *a, char *errstr, size_t errstr_size)
{
    rd_kafka_ConfigResource_t **res = calloc(a->count, sizeof(*res));
    rd_kafka_AdminOptions_t *opts = NULL;
    size_t n = 0;
    nudgel_err_t err = NUDGEL_OK;

    if (!res) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < a->count; i++)
        if (a->topics[i].exists && !a->topics[i].created && !a->topics[i].error[0])
            res[n++] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, a->topics[i].name);
    if (n == 0)
        goto out;
    opts = topics_admin_options(a, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, errstr, errstr_size);
    if (!opts) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    rd_kafka_DescribeConfigs(a->rk, res, n, opts, a->queue);
    a->described_ev = topics_admin_wait(a, "DescribeConfigs", errstr, errstr_size);
    if (!a->described_ev) {
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    size_t cnt;
    const rd_kafka_ConfigResource_t **results = rd_kafka_DescribeConfigs_result_resources(
        rd_kafka_event_DescribeConfigs_result(a->described_ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        topic_state_t *t = topics_admin_find(a, rd_kafka_ConfigResource_name(results[i]));
        if (!t)
            continue;
        if (rd_kafka_ConfigResource_error(results[i])) {
            snprintf(t->error, sizeof(t->error), "describing configs: %s",
                     rd_kafka_ConfigResource_error_string(results[i]));
            continue;
        }
        t->described = results[i];
        size_t entries;
        const rd_kafka_ConfigEntry_t **ce = rd_kafka_ConfigResource_configs(results[i], &entries);
        for (size_t e = 0; e < entries; e++) {
            const char *value = rd_kafka_ConfigEntry_value(ce[e]);
            if (strcmp(rd_kafka_ConfigEntry_name(ce[e]), "retention.ms") == 0 && value)
                t->retention_ms = strtoll(value, NULL, 10);
        }
    }
out:
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (res)
        rd_kafka_ConfigResource_destroy_array(res, n);
    free(res);
    return err;
}
