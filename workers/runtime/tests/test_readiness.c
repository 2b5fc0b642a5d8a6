/*
 * test_readiness.c — a table of condition states and the answer /readyz
 * gives for each (200, or 503 with the first failing condition's reason);
 * one case through the real admin server on a free port; registration
 * limits; a reader thread while the loop thread flips states.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "nudgel/http_admin.h"
#include "nudgel/readiness.h"

#define CONDS 4
static const char *const names[CONDS] = {"draining", "kafka", "partitions", "postgres:claims"};

typedef struct state_case {
    const char *what;
    nudgel_ready_state_t states[CONDS];
    const char *reasons[CONDS];
    int status;         /* what /readyz would answer */
    const char *answer; /* "name: reason" of the first failing condition, or NULL */
} state_case_t;

#define OK NUDGEL_READY_OK
#define NO NUDGEL_READY_NOT_OK
#define NA NUDGEL_READY_NOT_APPLICABLE

static const state_case_t cases[] = {
    {"all ok", {OK, OK, OK, OK}, {0}, 200, NULL},
    {"idle role: no partitions by design", {OK, OK, NA, OK}, {0}, 200, NULL},
    {"nothing applies", {NA, NA, NA, NA}, {0}, 200, NULL},
    {"postgres down",
     {OK, OK, OK, NO},
     {NULL, NULL, NULL, "connection refused"},
     503,
     "postgres:claims: connection refused"},
    {"first failing wins",
     {OK, NO, NO, NO},
     {NULL, "no broker answered", "none assigned", "down"},
     503,
     "kafka: no broker answered"},
    {"draining before anything else",
     {NO, NO, OK, OK},
     {"draining", "no broker answered", NULL, NULL},
     503,
     "draining: draining"},
    {"not applicable never hides a failure",
     {NA, NA, NO, NA},
     {NULL, NULL, "waiting for an assignment", NULL},
     503,
     "partitions: waiting for an assignment"},
    {"no reason given: the name", {OK, OK, OK, NO}, {0}, 503, "postgres:claims: postgres:claims"},
};

static void test_state_table(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const state_case_t *tc = &cases[k];
        nudgel_readiness_t *r = nudgel_readiness_new();
        nudgel_ready_cond_t *c[CONDS];
        for (int i = 0; i < CONDS; i++)
            assert_non_null(c[i] = nudgel_readiness_add(r, names[i], NULL));
        for (int i = 0; i < CONDS; i++)
            nudgel_ready_set(c[i], tc->states[i], tc->reasons[i]);
        char why[256] = "";
        bool ready = nudgel_readiness_check(r, why, sizeof(why));
        print_message("case: %s -> %s\n", tc->what, ready ? "ready" : why);
        assert_int_equal(ready ? 200 : 503, tc->status);
        if (tc->answer)
            assert_string_equal(why, tc->answer);
        nudgel_readiness_free(r);
    }
}

static void test_registration(void **state)
{
    (void)state;
    char why[256], reason[NUDGEL_READY_REASON_MAX];
    nudgel_readiness_t *r = nudgel_readiness_new();
    assert_true(nudgel_readiness_check(r, why, sizeof(why))); /* nothing registered: ready */

    nudgel_ready_cond_t *kafka = nudgel_readiness_add(r, "kafka", NULL);
    assert_false(nudgel_readiness_check(r, why, sizeof(why))); /* not ok until first set */
    assert_string_equal(why, "kafka: not yet known");
    assert_ptr_equal(nudgel_readiness_add(r, "kafka", "other"), kafka); /* unique names */
    assert_ptr_equal(nudgel_readiness_find(r, "kafka"), kafka);
    assert_null(nudgel_readiness_find(r, "postgres"));
    assert_null(nudgel_readiness_add(r, "", NULL));

    nudgel_ready_fail(kafka, "%d of %d brokers down", 3, 3);
    assert_int_equal(nudgel_ready_get(kafka, reason, sizeof(reason)), NUDGEL_READY_NOT_OK);
    assert_string_equal(reason, "3 of 3 brokers down");
    nudgel_ready_ok(kafka);
    assert_true(nudgel_readiness_check(r, NULL, 0));
    nudgel_ready_not_applicable(kafka, "no Kafka in this role");
    assert_int_equal(nudgel_ready_get(kafka, reason, sizeof(reason)), NUDGEL_READY_NOT_APPLICABLE);
    assert_string_equal(reason, "no Kafka in this role");

    /* A long reason is cut, never overflows. */
    char long_reason[1000];
    memset(long_reason, 'x', sizeof(long_reason) - 1);
    long_reason[sizeof(long_reason) - 1] = '\0';
    nudgel_ready_set(kafka, NUDGEL_READY_NOT_OK, long_reason);
    assert_false(nudgel_readiness_check(r, why, sizeof(why)));
    assert_int_equal(strlen(why), strlen("kafka: ") + NUDGEL_READY_REASON_MAX - 1);

    nudgel_ready_ok(NULL); /* a condition never registered: no-op */
    for (int i = 1; i < NUDGEL_READY_MAX_CONDS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "c%d", i);
        assert_non_null(nudgel_readiness_add(r, name, NULL));
    }
    assert_null(nudgel_readiness_add(r, "one-too-many", NULL));
    nudgel_readiness_free(r);
}

typedef struct race {
    nudgel_readiness_t *r;
    atomic_bool stop;
    long checks;
} race_t;

static void *reader(void *arg)
{
    race_t *rc = arg;
    while (!atomic_load(&rc->stop)) {
        char why[256];
        if (!nudgel_readiness_check(rc->r, why, sizeof(why)))
            assert_true(strcmp(why, "kafka: down") == 0 || strcmp(why, "pg: down") == 0);
        rc->checks++;
    }
    return NULL;
}

/* The HTTP thread reads while the loop thread writes: answers are always whole. */
static void test_concurrent_reader(void **state)
{
    (void)state;
    race_t rc = {.r = nudgel_readiness_new()};
    nudgel_ready_cond_t *kafka = nudgel_readiness_add(rc.r, "kafka", "down");
    nudgel_ready_cond_t *pg = nudgel_readiness_add(rc.r, "pg", "down");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader, &rc), 0);
    for (int i = 0; i < 200000; i++) {
        nudgel_ready_set(kafka, (i & 1) ? NUDGEL_READY_OK : NUDGEL_READY_NOT_OK, "down");
        nudgel_ready_set(pg, (i & 2) ? NUDGEL_READY_NOT_APPLICABLE : NUDGEL_READY_NOT_OK, "down");
    }
    atomic_store(&rc.stop, true);
    pthread_join(t, NULL);
    assert_true(rc.checks > 0);
    nudgel_readiness_free(rc.r);
}

typedef struct fetched {
    long status;
    char body[512];
    size_t len;
} fetched_t;

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    fetched_t *f = arg;
    size_t take = size * n;
    if (f->len + take >= sizeof(f->body))
        take = sizeof(f->body) - f->len - 1;
    memcpy(f->body + f->len, data, take);
    f->len += take;
    f->body[f->len] = '\0';
    return size * n;
}

static fetched_t fetch(int port, const char *path)
{
    fetched_t f = {0, "", 0};
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    assert_int_equal(curl_easy_perform(curl), CURLE_OK);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &f.status);
    curl_easy_cleanup(curl);
    return f;
}

static bool stuck(void *opaque, char *why, size_t why_size)
{
    int *alive = opaque;
    if (!*alive)
        snprintf(why, why_size, "event loop stuck");
    return *alive;
}

/* The readiness is what /readyz says, over HTTP; /healthz follows its own check. */
static void test_through_admin_server(void **state)
{
    (void)state;
    char errstr[256];
    int alive = 1;
    nudgel_metrics_t *m = nudgel_metrics_new();
    nudgel_readiness_t *r = nudgel_readiness_new();
    nudgel_ready_cond_t *draining = nudgel_readiness_add(r, "draining", NULL);
    nudgel_ready_cond_t *pg = nudgel_readiness_add(r, "postgres:claims", NULL);
    nudgel_ready_ok(draining);
    nudgel_ready_fail(pg, "connection refused");
    nudgel_http_admin_opts_t opts = {.address = "127.0.0.1",
                                     .port = 0,
                                     .metrics = m,
                                     .ready = nudgel_readiness_check,
                                     .ready_opaque = r,
                                     .live = stuck,
                                     .live_opaque = &alive};
    nudgel_http_admin_t *h = nudgel_http_admin_serve(&opts, errstr, sizeof(errstr));
    assert_non_null(h);
    int port = nudgel_http_admin_port(h);

    fetched_t f = fetch(port, "/readyz");
    assert_int_equal(f.status, 503);
    assert_string_equal(f.body, "not ready: postgres:claims: connection refused\n");
    nudgel_ready_ok(pg);
    f = fetch(port, "/readyz");
    assert_int_equal(f.status, 200);
    assert_string_equal(f.body, "ready\n");
    nudgel_ready_set(draining, NUDGEL_READY_NOT_OK, "draining");
    f = fetch(port, "/readyz");
    assert_int_equal(f.status, 503);
    assert_string_equal(f.body, "not ready: draining: draining\n");

    f = fetch(port, "/healthz");
    assert_int_equal(f.status, 200);
    assert_string_equal(f.body, "ok\n");
    alive = 0;
    f = fetch(port, "/healthz");
    assert_int_equal(f.status, 503);
    assert_string_equal(f.body, "not alive: event loop stuck\n");

    nudgel_http_admin_stop(h);
    nudgel_readiness_free(r);
    nudgel_metrics_destroy(m);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_table),
        cmocka_unit_test(test_registration),
        cmocka_unit_test(test_concurrent_reader),
        cmocka_unit_test(test_through_admin_server),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
