/*
 * topics.c — `nudgel-admin topics ensure|describe` on librdkafka's Admin API.
 *
 * ensure: one metadata request tells which contract topics exist, with their
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

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/topics.h"

#define TEXT_MAX 512

const nudgel_conf_entry_t nudgel_admin_topics_conf[] = {
    {"topics.partitions", NUDGEL_CONF_INT, "12", 1, 1024, NULL, 0,
     "Partitions of every contract topic. Partitions can be added later (topics ensure "
     "--alter) but never removed; the tenant-to-partition mapping changes when they are."},
    {"topics.replication_factor", NUDGEL_CONF_INT, "1", 1, 16, NULL, 0,
     "Replication factor of every contract topic; 1 suits the local stack, production uses 3."},
    {"topics.retention_ms.jobs", NUDGEL_CONF_INT, "604800000", 60000, 31536000000LL, NULL, 0,
     "retention.ms of the job topics nudgel.messages.v1 and nudgel.webhooks.v1 (7 days)."},
    {"topics.retention_ms.retry", NUDGEL_CONF_INT, "604800000", 60000, 31536000000LL, NULL, 0,
     "retention.ms of the retry-tier topics (7 days); must exceed the longest tier delay."},
    {"topics.retention_ms.dlq", NUDGEL_CONF_INT, "2592000000", 60000, 31536000000LL, NULL, 0,
     "retention.ms of the dead-letter topics (30 days), the window for a replay."},
    {"topics.retention_ms.status", NUDGEL_CONF_INT, "604800000", 60000, 31536000000LL, NULL, 0,
     "retention.ms of nudgel.delivery-status.v1 (7 days)."},
    {"topics.namespace", NUDGEL_CONF_STRING, "", 0, 0, NULL, 0,
     "Prefix for every topic name, e.g. \"staging.\" or \"bench-42.\": an isolated set of topics "
     "for a staging tenant or a benchmark. Empty in production."},
    {"topics.retention_ms.dlr", NUDGEL_CONF_INT, "259200000", 60000, 31536000000LL, NULL, 0,
     "retention.ms of nudgel.carrier-dlr.v1 (3 days)."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct topic_state {
    const nudgel_topic_spec_t *spec;
    char name[256]; /* topics.namespace + the contract name */
    int want_partitions, want_rf;
    long long want_retention_ms;
    bool exists, created;
    int partitions, rf;                         /* from metadata when it exists */
    long long retention_ms;                     /* -1 when unknown */
    const rd_kafka_ConfigResource_t *described; /* borrowed from admin_t.described_ev */
    bool fix_partitions, fix_retention;
    char drift[TEXT_MAX], altered[TEXT_MAX], error[TEXT_MAX];
} topic_state_t;

typedef struct admin {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int timeout_ms;
    topic_state_t *topics;
    size_t count;
    rd_kafka_event_t *described_ev; /* keeps DescribeConfigs results alive */
} admin_t;

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

static void admin_close(admin_t *a)
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
static nudgel_err_t admin_open(admin_t *a, const nudgel_conf_t *conf, char *errstr,
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
        admin_close(a);
    return err;
}

static rd_kafka_AdminOptions_t *admin_options(admin_t *a, rd_kafka_admin_op_t op, char *errstr,
                                              size_t errstr_size)
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
static rd_kafka_event_t *admin_wait(admin_t *a, const char *what, char *errstr, size_t errstr_size)
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

static topic_state_t *find_topic(admin_t *a, const char *name)
{
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->topics[i].name, name) == 0)
            return &a->topics[i];
    return NULL;
}

/* Existence, partition count and (smallest) replication factor of every topic. */
static nudgel_err_t load_metadata(admin_t *a, char *errstr, size_t errstr_size)
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
        topic_state_t *t = find_topic(a, mt->topic);
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

/*
 * CreateTopics for every missing topic. Sets @p raced when another run
 * created one first (its metadata must then be read again).
 */
static nudgel_err_t create_missing(admin_t *a, bool *raced, char *errstr, size_t errstr_size)
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
    opts = admin_options(a, RD_KAFKA_ADMIN_OP_CREATETOPICS, errstr, errstr_size);
    if (!opts) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    rd_kafka_CreateTopics(a->rk, nts, n, opts, a->queue);
    ev = admin_wait(a, "CreateTopics", errstr, errstr_size);
    if (!ev) {
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    size_t cnt;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        topic_state_t *t = find_topic(a, rd_kafka_topic_result_name(results[i]));
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

/* retention.ms (and the config resource, kept for AlterConfigs) of every existing topic. */
static nudgel_err_t describe_configs(admin_t *a, char *errstr, size_t errstr_size)
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
    opts = admin_options(a, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, errstr, errstr_size);
    if (!opts) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    rd_kafka_DescribeConfigs(a->rk, res, n, opts, a->queue);
    a->described_ev = admin_wait(a, "DescribeConfigs", errstr, errstr_size);
    if (!a->described_ev) {
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    size_t cnt;
    const rd_kafka_ConfigResource_t **results = rd_kafka_DescribeConfigs_result_resources(
        rd_kafka_event_DescribeConfigs_result(a->described_ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        topic_state_t *t = find_topic(a, rd_kafka_ConfigResource_name(results[i]));
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
static nudgel_err_t add_partitions(admin_t *a, char *errstr, size_t errstr_size)
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
    opts = admin_options(a, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS, errstr, errstr_size);
    if (!opts) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    rd_kafka_CreatePartitions(a->rk, nps, n, opts, a->queue);
    ev = admin_wait(a, "CreatePartitions", errstr, errstr_size);
    if (!ev) {
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    size_t cnt;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        topic_state_t *t = find_topic(a, rd_kafka_topic_result_name(results[i]));
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

static nudgel_err_t alter_retention(admin_t *a, char *errstr, size_t errstr_size)
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
    opts = admin_options(a, RD_KAFKA_ADMIN_OP_ALTERCONFIGS, errstr, errstr_size);
    if (!opts) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    rd_kafka_AlterConfigs(a->rk, res, n, opts, a->queue);
    ev = admin_wait(a, "AlterConfigs", errstr, errstr_size);
    if (!ev) {
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    size_t cnt;
    const rd_kafka_ConfigResource_t **results =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        topic_state_t *t = find_topic(a, rd_kafka_ConfigResource_name(results[i]));
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
    admin_t a;
    bool raced = false;
    size_t created = 0, ok = 0, altered = 0, drifted = 0, failed = 0;
    nudgel_err_t err = admin_open(&a, conf, errstr, errstr_size);
    *drift_remains = false;
    if (err != NUDGEL_OK)
        return err;
    err = load_metadata(&a, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    err = create_missing(&a, &raced, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    if (raced && (err = load_metadata(&a, errstr, errstr_size)) != NUDGEL_OK)
        goto out;
    err = describe_configs(&a, errstr, errstr_size);
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
    admin_close(&a);
    return err;
}

static void format_delay(long long ms, char *out, size_t out_size)
{
    if (ms <= 0)
        snprintf(out, out_size, "-");
    else if (ms % 3600000 == 0)
        snprintf(out, out_size, "%lldh", ms / 3600000);
    else if (ms % 60000 == 0)
        snprintf(out, out_size, "%lldm", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(out, out_size, "%llds", ms / 1000);
    else
        snprintf(out, out_size, "%lldms", ms);
}

static nudgel_err_t print_json(const admin_t *a, FILE *out, char *errstr, size_t errstr_size)
{
    json_t *arr = json_array();
    nudgel_err_t err = NUDGEL_OK;
    if (!arr)
        goto nomem;
    for (size_t i = 0; i < a->count; i++) {
        const topic_state_t *t = &a->topics[i];
        json_t *o = json_pack(
            "{s:s, s:b, s:o, s:o, s:o, s:s, s:I, s:{s:i, s:i, s:I}}", "topic", t->name, "exists",
            t->exists, "partitions", t->exists ? json_integer(t->partitions) : json_null(),
            "replication_factor", t->exists ? json_integer(t->rf) : json_null(), "retention_ms",
            t->retention_ms >= 0 ? json_integer(t->retention_ms) : json_null(), "class",
            nudgel_topic_class_name(t->spec->topic_class), "delay_ms",
            (json_int_t)t->spec->delay_ms, "configured", "partitions", t->want_partitions,
            "replication_factor", t->want_rf, "retention_ms", (json_int_t)t->want_retention_ms);
        if (!o || json_array_append_new(arr, o) != 0)
            goto nomem;
    }
    if (json_dumpf(arr, out, JSON_INDENT(2)) != 0) {
        snprintf(errstr, errstr_size, "writing JSON: %s", strerror(errno));
        err = NUDGEL_ERR_IO;
    }
    fputc('\n', out);
    json_decref(arr);
    return err;
nomem:
    json_decref(arr);
    snprintf(errstr, errstr_size, "out of memory");
    return NUDGEL_ERR_NO_MEMORY;
}

static void print_table(const admin_t *a, FILE *out)
{
    fprintf(out, "%-30s %-8s %10s %4s %13s %-7s %s\n", "TOPIC", "STATE", "PARTITIONS", "RF",
            "RETENTION_MS", "CLASS", "DELAY");
    for (size_t i = 0; i < a->count; i++) {
        const topic_state_t *t = &a->topics[i];
        char partitions[16] = "-", rf[16] = "-", retention[32] = "-", delay[24];
        if (t->exists) {
            snprintf(partitions, sizeof(partitions), "%d", t->partitions);
            snprintf(rf, sizeof(rf), "%d", t->rf);
        }
        if (t->retention_ms >= 0)
            snprintf(retention, sizeof(retention), "%lld", t->retention_ms);
        format_delay(t->spec->delay_ms, delay, sizeof(delay));
        fprintf(out, "%-30s %-8s %10s %4s %13s %-7s %s\n", t->name,
                t->exists ? "exists" : "missing", partitions, rf, retention,
                nudgel_topic_class_name(t->spec->topic_class), delay);
    }
}

nudgel_err_t nudgel_admin_topics_describe(const nudgel_conf_t *conf, bool json, FILE *out,
                                          char *errstr, size_t errstr_size)
{
    admin_t a;
    nudgel_err_t err = admin_open(&a, conf, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    err = load_metadata(&a, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    err = describe_configs(&a, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    for (size_t i = 0; i < a.count; i++)
        if (a.topics[i].error[0])
            nudgel_log_warn("topic %s: %s", a.topics[i].name, a.topics[i].error);
    if (json)
        err = print_json(&a, out, errstr, errstr_size);
    else
        print_table(&a, out);
out:
    admin_close(&a);
    return err;
}
