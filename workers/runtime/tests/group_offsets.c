/*
 * group_offsets.c — nudgel-test-group-offsets, what `kafka-consumer-groups
 * --describe` tells, for the integration tests: a consumer group's
 * committed offset next to each partition's watermarks, as one JSON line
 *   {"<topic>":[{"p":0,"committed":12,"low":0,"high":12},...],...}
 * (committed is -1 where the group has committed nothing). Tests poll it to
 * wait until a worker's commits have reached the end of its topics (lag 0)
 * instead of sleeping.
 *
 * It never joins the group: no subscribe, no assign, no commit, only the
 * OffsetFetch of rd_kafka_committed() and the watermark queries, so the
 * members under test see no rebalance. Exit codes: 0 printed, 1 Kafka did
 * not answer (the caller asks again), 2 usage or configuration.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/config.h"
#include "nudgel/kafka.h"

#define PROGRAM    "nudgel-test-group-offsets"
#define MAX_TOPICS 16
#define TIMEOUT_MS 10000

/* Prints the offsets of @p topics (@p count of them): 0, or 1 with the reason on stderr. */
static int print_offsets(rd_kafka_t *rk, const char *const *topics, size_t count)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(64);
    int ret = 1;
    for (size_t t = 0; t < count; t++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[t], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err =
            rkt ? rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS) : RD_KAFKA_RESP_ERR__FAIL;
        if (!err && (md->topic_cnt != 1 || md->topics[0].err))
            err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        if (err) {
            fprintf(stderr, "%s: %s: metadata: %s\n", PROGRAM, topics[t], rd_kafka_err2str(err));
        } else {
            for (int p = 0; p < md->topics[0].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(parts, topics[t], md->topics[0].partitions[p].id);
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
        if (err)
            goto out;
    }
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, TIMEOUT_MS);
    if (err) {
        fprintf(stderr, "%s: committed offsets: %s\n", PROGRAM, rd_kafka_err2str(err));
        goto out;
    }
    const char *topic = NULL;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int64_t low, high;
        err = tp->err ? tp->err
                      : rd_kafka_query_watermark_offsets(rk, tp->topic, tp->partition, &low, &high,
                                                         TIMEOUT_MS);
        if (err) {
            fprintf(stderr, "%s: %s [%d]: %s\n", PROGRAM, tp->topic, (int)tp->partition,
                    rd_kafka_err2str(err));
            goto out;
        }
        if (!topic || strcmp(topic, tp->topic) != 0) {
            /* Topic and partition names need no escaping: Kafka allows [a-zA-Z0-9._-] only. */
            printf("%s\"%s\":[", topic ? "]," : "{", tp->topic);
            topic = tp->topic;
        } else {
            printf(",");
        }
        printf("{\"p\":%d,\"committed\":%lld,\"low\":%lld,\"high\":%lld}", (int)tp->partition,
               tp->offset >= 0 ? (long long)tp->offset : -1LL, (long long)low, (long long)high);
    }
    printf("%s\n", topic ? "]}" : "{}");
    ret = 0;
out:
    rd_kafka_topic_partition_list_destroy(parts);
    return ret;
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, NULL};
    static const struct option options[] = {
        {"group", required_argument, NULL, 'g'},
        {"topic", required_argument, NULL, 't'},
        {"set", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    const char *topics[MAX_TOPICS];
    size_t topic_count = 0;
    const char *group = NULL;
    char *sets[16];
    size_t set_count = 0;
    int opt, exit_code = 2;
    char errstr[512];
    nudgel_conf_t *conf = nudgel_conf_new(PROGRAM, tables);
    rd_kafka_conf_t *kconf = NULL;
    rd_kafka_t *rk = NULL;

    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'g':
            group = optarg;
            break;
        case 't':
            if (topic_count == MAX_TOPICS)
                goto usage;
            topics[topic_count++] = optarg;
            break;
        case 's':
            if (set_count == sizeof(sets) / sizeof(sets[0]))
                goto usage;
            sets[set_count++] = optarg;
            break;
        default:
            goto usage;
        }
    }
    if (!group || topic_count == 0 || optind != argc)
        goto usage;
    if (!conf || nudgel_conf_startup(conf, PROGRAM, NULL, sets, set_count, false, false) !=
                     NUDGEL_CONF_STARTUP_RUN)
        goto out;
    if (!(kconf = nudgel_kafka_conf_new(conf, errstr, sizeof(errstr))) ||
        rd_kafka_conf_set(kconf, "group.id", group, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(kconf, "enable.auto.commit", "false", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        goto out;
    }
    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, kconf, errstr, sizeof(errstr)))) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        goto out;
    }
    kconf = NULL; /* rd_kafka_new() took it */
    exit_code = print_offsets(rk, topics, topic_count);
    goto out;
usage:
    fprintf(stderr, "usage: %s --group G --topic T [--topic T...] [--set KEY=VALUE]\n", PROGRAM);
out:
    if (rk) {
        rd_kafka_consumer_close(rk); /* never joined: nothing to leave */
        rd_kafka_destroy(rk);
    }
    if (kconf)
        rd_kafka_conf_destroy(kconf);
    nudgel_conf_destroy(conf);
    return exit_code;
}
