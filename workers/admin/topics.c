/*
 * topics.c — the configuration of the contract topics (topics.*: partitions,
 * replication factor, retention.ms per topic class, namespace) and
 * `nudgel-admin topics describe`, which reads what exists and changes
 * nothing. ensure is topics_ensure.c; the Admin API client both use is
 * topics_admin.c.
 */
#define _GNU_SOURCE
#include "topics.h"

#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "nudgel/log.h"
#include "nudgel/topics.h"
#include "topics_admin.h"

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

static nudgel_err_t print_json(const topics_admin_t *a, FILE *out, char *errstr, size_t errstr_size)
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

static void print_table(const topics_admin_t *a, FILE *out)
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
    topics_admin_t a;
    nudgel_err_t err = topics_admin_open(&a, conf, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    err = topics_admin_load_metadata(&a, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    err = topics_admin_describe_configs(&a, errstr, errstr_size);
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
    topics_admin_close(&a);
    return err;
}
