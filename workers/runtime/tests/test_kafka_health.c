/*
 * test_kafka_health.c — reading librdkafka statistics into a health
 * snapshot, table-driven over documents shaped like librdkafka 2.0's (the
 * bootstrap placeholder, the logical GroupCoordinator entry, the internal
 * partition -1, unknown lags of -1), and the all-brokers-down flag between
 * the error callback and the statistics.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/kafka_health.h"

#define BOOTSTRAP_ONLY                                                                             \
    "\"brokers\":{\"127.0.0.1:59092/bootstrap\":{\"name\":\"127.0.0.1:59092/bootstrap\","          \
    "\"nodeid\":-1,\"source\":\"configured\",\"state\":\"UP\"}}"

#define TWO_BROKERS                                                                                \
    "\"brokers\":{\"127.0.0.1:59092/1\":{\"nodeid\":1,\"source\":\"configured\",\"state\":"        \
    "\"UP\"},\"127.0.0.1:59093/2\":{\"nodeid\":2,\"source\":\"learned\",\"state\":\"DOWN\"},"      \
    "\"GroupCoordinator\":{\"nodeid\":1,\"source\":\"logical\",\"state\":\"UP\"}}"

#define CGRP_STEADY "\"cgrp\":{\"state\":\"up\",\"join_state\":\"steady\",\"assignment_size\":3}"

#define TOPICS                                                                                     \
    "\"topics\":{\"jobs\":{\"partitions\":{"                                                       \
    "\"0\":{\"partition\":0,\"consumer_lag\":5},"                                                  \
    "\"1\":{\"partition\":1,\"consumer_lag\":-1},"                                                 \
    "\"2\":{\"partition\":2,\"consumer_lag\":0},"                                                  \
    "\"-1\":{\"partition\":-1,\"consumer_lag\":-1}}},"                                             \
    "\"retry\":{\"partitions\":{\"0\":{\"partition\":0,\"consumer_lag\":7}}}}"

typedef struct stats_case {
    const char *name;
    const char *json;
    int brokers_up, brokers_known;
    const char *group_state, *join_state;
    bool group_up, steady;
    int32_t assigned;
    size_t lag_count;
    int64_t lag_total;
} stats_case_t;

static const stats_case_t cases[] = {
    {"bootstrap placeholder only", "{" BOOTSTRAP_ONLY ",\"topics\":{}}", 0, 0, "", "", false, false,
     -1, 0, 0},
    {"producer: brokers, no group", "{" TWO_BROKERS ",\"topics\":{}}", 1, 2, "", "", false, false,
     -1, 0, 0},
    {"consumer, steady", "{" TWO_BROKERS "," CGRP_STEADY "," TOPICS "}", 1, 2, "up", "steady", true,
     true, 3, 3, 12},
    {"STATISTICS.md spelling joinstate",
     "{\"brokers\":{},\"cgrp\":{\"state\":\"query-coord\",\"joinstate\":\"init\","
     "\"assignment_size\":0},\"topics\":{}}",
     0, 0, "query-coord", "init", false, false, 0, 0, 0},
};

static void test_stats_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const stats_case_t *c = &cases[i];
        char errstr[256];
        nudgel_kafka_health_t h;
        nudgel_kafka_monitor_t *m = nudgel_kafka_monitor_new();
        print_message("%s\n", c->name);
        assert_int_equal(
            nudgel_kafka_monitor_stats(m, c->json, strlen(c->json), 42, errstr, sizeof(errstr)),
            NUDGEL_OK);
        nudgel_kafka_monitor_get(m, &h);
        assert_int_equal(h.stats_at_us, 42);
        assert_int_equal(h.brokers_up, c->brokers_up);
        assert_int_equal(h.brokers_known, c->brokers_known);
        assert_string_equal(h.group_state, c->group_state);
        assert_string_equal(h.join_state, c->join_state);
        assert_int_equal(h.group_up, c->group_up);
        assert_int_equal(h.group_steady, c->steady);
        assert_int_equal(h.assigned, c->assigned);
        assert_int_equal(h.lag_count, c->lag_count);
        assert_int_equal(h.lag_total, c->lag_total);
        nudgel_kafka_monitor_free(m);
    }
}

static void test_lags_listed(void **state)
{
    (void)state;
    static const char json[] = "{" TWO_BROKERS "," CGRP_STEADY "," TOPICS "}";
    char errstr[256];
    nudgel_kafka_health_t h;
    nudgel_kafka_monitor_t *m = nudgel_kafka_monitor_new();
    assert_int_equal(nudgel_kafka_monitor_stats(m, json, strlen(json), 1, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    nudgel_kafka_monitor_get(m, &h);
    int64_t jobs0 = -1, jobs2 = -1, retry0 = -1;
    for (size_t i = 0; i < h.lag_count; i++) {
        const nudgel_partition_lag_t *l = &h.lags[i];
        if (strcmp(l->topic, "jobs") == 0 && l->partition == 0)
            jobs0 = l->lag;
        else if (strcmp(l->topic, "jobs") == 0 && l->partition == 2)
            jobs2 = l->lag;
        else if (strcmp(l->topic, "retry") == 0 && l->partition == 0)
            retry0 = l->lag;
        else
            fail_msg("unexpected lag %s[%d]", l->topic, l->partition);
    }
    assert_int_equal(jobs0, 5);
    assert_int_equal(jobs2, 0);
    assert_int_equal(retry0, 7);
    nudgel_kafka_monitor_free(m);
}

static void test_bad_document_keeps_snapshot(void **state)
{
    (void)state;
    static const char good[] = "{" TWO_BROKERS "," CGRP_STEADY "," TOPICS "}";
    char errstr[256];
    nudgel_kafka_health_t h;
    nudgel_kafka_monitor_t *m = nudgel_kafka_monitor_new();
    assert_int_equal(nudgel_kafka_monitor_stats(m, good, strlen(good), 1, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_kafka_monitor_stats(m, "{\"brokers\":", 11, 2, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_JSON);
    assert_non_null(strstr(errstr, "statistics"));
    assert_int_equal(nudgel_kafka_monitor_stats(m, "[]", 2, 3, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_JSON);
    nudgel_kafka_monitor_get(m, &h);
    assert_int_equal(h.stats_at_us, 1);
    assert_int_equal(h.brokers_up, 1);
    assert_int_equal(h.lag_total, 12);
    nudgel_kafka_monitor_free(m);
}

/* A document librdkafka hands over is parsed only when a snapshot is taken. */
static void test_kept_document_parsed_on_get(void **state)
{
    (void)state;
    static const char json[] = "{" TWO_BROKERS "," CGRP_STEADY "," TOPICS "}";
    nudgel_kafka_health_t h;
    nudgel_kafka_monitor_t *m = nudgel_kafka_monitor_new();
    for (int i = 0; i < 3; i++) { /* each replaces (and frees) the one kept before */
        char *copy = rd_kafka_mem_malloc(NULL, sizeof(json));
        memcpy(copy, json, sizeof(json));
        nudgel_kafka_monitor_keep_stats(m, copy, sizeof(json) - 1, 10 + i);
    }
    nudgel_kafka_monitor_get(m, &h);
    assert_int_equal(h.stats_at_us, 12);
    assert_int_equal(h.lag_total, 12);
    nudgel_kafka_monitor_get(m, &h); /* nothing new: the same snapshot */
    assert_int_equal(h.stats_at_us, 12);
    char *unread = rd_kafka_mem_malloc(NULL, sizeof(json));
    memcpy(unread, json, sizeof(json));
    nudgel_kafka_monitor_keep_stats(m, unread, sizeof(json) - 1, 13);
    nudgel_kafka_monitor_free(m); /* frees what was never read (ASan checks) */
}

static void test_all_brokers_down(void **state)
{
    (void)state;
    static const char up[] = "{" TWO_BROKERS ",\"topics\":{}}";
    static const char none_up[] = "{" BOOTSTRAP_ONLY ",\"topics\":{}}";
    char errstr[256];
    nudgel_kafka_health_t h;
    nudgel_kafka_monitor_t *m = nudgel_kafka_monitor_new();
    nudgel_kafka_monitor_error(m, RD_KAFKA_RESP_ERR__TRANSPORT, 100); /* one broker: not all */
    nudgel_kafka_monitor_get(m, &h);
    assert_false(h.all_brokers_down);
    nudgel_kafka_monitor_error(m, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, 200);
    nudgel_kafka_monitor_get(m, &h);
    assert_true(h.all_brokers_down);
    assert_int_equal(h.all_brokers_down_at_us, 200);
    /* Statistics taken before the report, or showing no broker up, do not clear it. */
    nudgel_kafka_monitor_stats(m, up, strlen(up), 150, errstr, sizeof(errstr));
    nudgel_kafka_monitor_get(m, &h);
    assert_true(h.all_brokers_down);
    nudgel_kafka_monitor_stats(m, none_up, strlen(none_up), 300, errstr, sizeof(errstr));
    nudgel_kafka_monitor_get(m, &h);
    assert_true(h.all_brokers_down);
    nudgel_kafka_monitor_stats(m, up, strlen(up), 400, errstr, sizeof(errstr));
    nudgel_kafka_monitor_get(m, &h);
    assert_false(h.all_brokers_down);
    assert_int_equal(h.all_brokers_down_at_us, 200); /* when it last happened */
    nudgel_kafka_monitor_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_table),
        cmocka_unit_test(test_lags_listed),
        cmocka_unit_test(test_bad_document_keeps_snapshot),
        cmocka_unit_test(test_kept_document_parsed_on_get),
        cmocka_unit_test(test_all_brokers_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
