/*
 * test_kafka_ready.c — a consumer's health as readiness, table-driven: each
 * row is a health snapshot and the reason expected (NULL: ready).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/kafka_ready.h"

#define NOW (100 * 1000000LL)

typedef struct row {
    const char *name;
    nudgel_kafka_health_t h;
    const char *reason; /* a substring of the reason; NULL: ready */
} row_t;

static nudgel_kafka_health_t healthy(void)
{
    nudgel_kafka_health_t h = {.stats_at_us = NOW - 500000,
                               .brokers_up = 1,
                               .brokers_known = 1,
                               .group_up = true,
                               .group_steady = true,
                               .assigned = 3};
    strcpy(h.group_state, "up");
    strcpy(h.join_state, "steady");
    return h;
}

static void test_rows(void **state)
{
    (void)state;
    row_t rows[9];
    size_t n = 0;
    rows[n++] = (row_t){"healthy", healthy(), NULL};
    rows[n] = (row_t){"idle by design: steady with no partition", healthy(), NULL};
    rows[n++].h.assigned = 0;
    rows[n] = (row_t){"no statistics", healthy(), "no statistics from librdkafka yet"};
    rows[n++].h.stats_at_us = 0;
    rows[n] = (row_t){"stale statistics", healthy(), "no statistics for 20 s"};
    rows[n++].h.stats_at_us = NOW - 20 * 1000000LL;
    rows[n] = (row_t){"no broker up", healthy(), "no Kafka broker up (1 known)"};
    rows[n++].h.brokers_up = 0;
    rows[n] = (row_t){"all brokers down", healthy(), "no Kafka broker up"};
    rows[n++].h.all_brokers_down = true;
    rows[n] =
        (row_t){"no coordinator", healthy(), "group coordinator not known (state wait-coord)"};
    rows[n].h.group_up = false;
    strcpy(rows[n++].h.group_state, "wait-coord");
    rows[n] = (row_t){"joining", healthy(), "joining its group (wait-join)"};
    rows[n].h.group_steady = false;
    strcpy(rows[n++].h.join_state, "wait-join");
    rows[n] = (row_t){"no state names", healthy(), "joining its group (unknown)"};
    rows[n].h.group_steady = false;
    rows[n++].h.join_state[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char why[160] = "";
        bool ready = nudgel_kafka_consumer_ready(&rows[i].h, "jobs", NOW, why, sizeof(why));
        print_message("%s: %s\n", rows[i].name, ready ? "ready" : why);
        assert_int_equal(ready, rows[i].reason == NULL);
        if (rows[i].reason) {
            assert_non_null(strstr(why, rows[i].reason));
            assert_true(strncmp(why, "jobs consumer: ", 15) == 0);
        }
    }
}

static void test_condition_takes_the_first_failing_consumer(void **state)
{
    (void)state;
    nudgel_readiness_t *r = nudgel_readiness_new();
    nudgel_ready_cond_t *c = nudgel_readiness_add(r, "kafka", NULL);
    nudgel_kafka_health_t a = healthy(), b = healthy();
    const nudgel_kafka_health_t *both[2] = {&a, &b};
    const char *names[2] = {"jobs", "retry tiers"};
    char why[NUDGEL_READY_REASON_MAX];
    nudgel_kafka_ready_set(c, both, names, 2, NOW);
    assert_int_equal(nudgel_ready_get(c, NULL, 0), NUDGEL_READY_OK);
    b.brokers_up = 0;
    nudgel_kafka_ready_set(c, both, names, 2, NOW);
    assert_int_equal(nudgel_ready_get(c, why, sizeof(why)), NUDGEL_READY_NOT_OK);
    assert_string_equal(why, "retry tiers consumer: no Kafka broker up (1 known)");
    a.stats_at_us = 0;
    nudgel_kafka_ready_set(c, both, NULL, 2, NOW);
    nudgel_ready_get(c, why, sizeof(why));
    assert_string_equal(why, "no statistics from librdkafka yet");
    nudgel_readiness_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_condition_takes_the_first_failing_consumer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
