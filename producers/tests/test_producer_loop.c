/*
 * test_producer_loop.c — libnudgel on an event loop, without a broker
 * (bootstrap 127.0.0.1:1, so every job times out after message_timeout_ms):
 * the event fd turns readable when a delivery report (or an error) is due,
 * poll(p, 0) serves it and clears the fd; with queue_full_wait_ms=0 a full local queue
 * answers NUDGEL_ERR_QUEUE_FULL at once instead of waiting; the property's
 * range.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/producer.h"
#include "nudgel/timeutil.h"

static const char job[] =
    "{\"id\":\"0190f3a2-7b4c-7d1e-8f00-aabbccddeeff\",\"tenant_id\":\"acme\","
    "\"endpoint_id\":\"00000000-0000-4000-8000-0000000000a1\",\"event_type\":\"message.sent\","
    "\"event_id\":\"evt_1\",\"payload\":{\"type\":\"message.sent\",\"timestamp\":"
    "\"2026-11-29T05:00:00Z\",\"data\":{}},\"created_at\":\"2026-11-29T05:00:00Z\"}";

static int reports;
static nudgel_err_t last_err;
static void *last_opaque;

static void on_report(const nudgel_delivery_report_t *r, void *cb_opaque)
{
    (void)cb_opaque;
    reports++;
    last_err = r->err;
    last_opaque = r->opaque;
}

static nudgel_producer_t *producer(const char *const *props)
{
    char errstr[256];
    nudgel_producer_conf_t *conf = nudgel_producer_conf_new();
    assert_int_equal(
        nudgel_producer_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", errstr, sizeof(errstr)),
        NUDGEL_OK);
    assert_int_equal(
        nudgel_producer_conf_set(conf, "message_timeout_ms", "1000", errstr, sizeof(errstr)),
        NUDGEL_OK);
    for (size_t i = 0; props && props[i]; i += 2)
        assert_int_equal(
            nudgel_producer_conf_set(conf, props[i], props[i + 1], errstr, sizeof(errstr)),
            NUDGEL_OK);
    nudgel_producer_conf_set_delivery_cb(conf, on_report, NULL);
    nudgel_producer_t *p = nudgel_producer_new(conf, errstr, sizeof(errstr));
    assert_non_null(p);
    return p;
}

static bool readable(int fd, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLIN);
}

static void test_event_fd(void **state)
{
    (void)state;
    int token = 7;
    reports = 0;
    nudgel_producer_t *p = producer(NULL);
    int fd = nudgel_producer_event_fd(p);
    assert_true(fd >= 0);
    assert_int_equal(nudgel_producer_event_fd(p), fd); /* the same one again */
    assert_true(readable(fd, 0));                      /* the first poll is asked for */
    nudgel_producer_poll(p, 0);
    assert_false(readable(fd, 0)); /* poll cleared it */
    nudgel_enqueue_opts_t opts = {.opaque = &token};
    assert_int_equal(nudgel_enqueue_webhook(p, job, strlen(job), &opts, NULL), NUDGEL_OK);
    /* Poll only when the fd says so (errors about the broker wake it too);
     * the report comes when the job times out, and no wake-up is lost. */
    int wakeups = 0;
    int64_t deadline = nudgel_mono_us() + 10 * 1000 * 1000;
    while (reports == 0 && nudgel_mono_us() < deadline) {
        if (!readable(fd, 5000))
            continue;
        wakeups++;
        nudgel_producer_poll(p, 0);
    }
    assert_true(wakeups < 50); /* woken by events, not spinning */
    assert_int_equal(reports, 1);
    assert_int_not_equal(last_err, NUDGEL_OK);
    assert_ptr_equal(last_opaque, &token);
    assert_false(readable(fd, 0));
    nudgel_producer_destroy(p);
}

static void test_queue_full_at_once(void **state)
{
    (void)state;
    static const char *const props[] = {"queue.buffering.max.messages", "1", "queue_full_wait_ms",
                                        "0", NULL};
    reports = 0;
    nudgel_producer_t *p = producer(props);
    nudgel_enqueue_result_t result;
    assert_int_equal(nudgel_enqueue_webhook(p, job, strlen(job), NULL, &result), NUDGEL_OK);
    int64_t start = nudgel_mono_us();
    assert_int_equal(nudgel_enqueue_webhook(p, job, strlen(job), NULL, &result),
                     NUDGEL_ERR_QUEUE_FULL);
    assert_true(nudgel_mono_us() - start < 200 * 1000); /* did not wait */
    assert_int_equal(reports, 0);                       /* and served nothing meanwhile */
    nudgel_producer_destroy(p);
}

static void test_queue_full_wait_range(void **state)
{
    (void)state;
    char errstr[256];
    nudgel_producer_conf_t *conf = nudgel_producer_conf_new();
    assert_int_equal(
        nudgel_producer_conf_set(conf, "queue_full_wait_ms", "-1", errstr, sizeof(errstr)),
        NUDGEL_ERR_CONFIG);
    assert_non_null(strstr(errstr, "queue_full_wait_ms"));
    assert_int_equal(
        nudgel_producer_conf_set(conf, "queue_full_wait_ms", "600001", errstr, sizeof(errstr)),
        NUDGEL_ERR_CONFIG);
    assert_int_equal(
        nudgel_producer_conf_set(conf, "queue_full_wait_ms", "250", errstr, sizeof(errstr)),
        NUDGEL_OK);
    nudgel_producer_conf_destroy(conf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_fd),
        cmocka_unit_test(test_queue_full_at_once),
        cmocka_unit_test(test_queue_full_wait_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
