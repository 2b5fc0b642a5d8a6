/*
 * test_metrics.c — the registry renders valid Prometheus text, stays exact
 * under concurrent writers, bounds its series, and the operations endpoints
 * answer over loopback.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "nudgel/http_admin.h"
#include "nudgel/metrics.h"

static char *render(nudgel_metrics_t *m)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    nudgel_metrics_render(m, out);
    fclose(out);
    return text;
}

static void test_render(void **state)
{
    (void)state;
    static const double buckets[] = {0.005, 0.05, 0.5};
    nudgel_metrics_t *m = nudgel_metrics_new();
    nudgel_metric_t *sent = nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "nudgel_sent_total",
                                                    "Messages sent.", "gateway", NULL, 0);
    nudgel_metric_t *lag = nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "nudgel_in_flight",
                                                   "Jobs in flight.", NULL, NULL, 0);
    nudgel_metric_t *lat = nudgel_metrics_register(m, NUDGEL_METRIC_HISTOGRAM, "nudgel_latency",
                                                   "Latency.", NULL, buckets, 3);
    assert_null(nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "bad name", "", NULL, NULL, 0));
    assert_null(nudgel_metrics_register(m, NUDGEL_METRIC_HISTOGRAM, "h", "", NULL, NULL, 0));
    nudgel_metric_add(sent, "infobip", 2);
    nudgel_metric_add(sent, "africastalking", 1);
    nudgel_metric_add(sent, "infobip", 1);
    nudgel_metric_set(lag, NULL, 7);
    nudgel_metric_observe(lat, NULL, 0.001);
    nudgel_metric_observe(lat, NULL, 0.2);
    nudgel_metric_observe(lat, NULL, 3);
    char *text = render(m);
    const char *expected = "# HELP nudgel_sent_total Messages sent.\n"
                           "# TYPE nudgel_sent_total counter\n"
                           "nudgel_sent_total{gateway=\"infobip\"} 3\n"
                           "nudgel_sent_total{gateway=\"africastalking\"} 1\n"
                           "# HELP nudgel_in_flight Jobs in flight.\n"
                           "# TYPE nudgel_in_flight gauge\n"
                           "nudgel_in_flight 7\n"
                           "# HELP nudgel_latency Latency.\n"
                           "# TYPE nudgel_latency histogram\n"
                           "nudgel_latency_bucket{le=\"0.005\"} 1\n"
                           "nudgel_latency_bucket{le=\"0.05\"} 1\n"
                           "nudgel_latency_bucket{le=\"0.5\"} 2\n"
                           "nudgel_latency_bucket{le=\"+Inf\"} 3\n"
                           "nudgel_latency_sum 3.201\n"
                           "nudgel_latency_count 3\n";
    assert_string_equal(text, expected);
    assert_true(nudgel_metric_value(sent, "infobip") == 3);
    free(text);
    nudgel_metrics_destroy(m);
}

static void test_series_are_bounded(void **state)
{
    (void)state;
    nudgel_metrics_t *m = nudgel_metrics_new();
    nudgel_metric_t *c =
        nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "per_tenant", "", "tenant", NULL, 0);
    for (int i = 0; i < 1000; i++) {
        char tenant[32];
        snprintf(tenant, sizeof(tenant), "tenant-%d", i);
        nudgel_metric_add(c, tenant, 1);
    }
    char *text = render(m);
    size_t lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2 + NUDGEL_METRIC_MAX_SERIES);
    /* 255 named series of 1 each, the rest in "other". */
    assert_true(nudgel_metric_value(c, "other") == 1000 - (NUDGEL_METRIC_MAX_SERIES - 1));
    free(text);
    nudgel_metrics_destroy(m);
}

/* The numbers Prometheus' Go client prints for the same doubles. */
static void test_numbers_print_as_prometheus_prints_them(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0.005, "0.005"},
        {0.025, "0.025"},
        {0.1, "0.1"},
        {1, "1"},
        {2.5, "2.5"},
        {10, "10"},
        {100000, "100000"},
        {1e6, "1e+06"},
        {1234567, "1.234567e+06"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {3.201, "3.201"},
        {-2, "-2"},
        {0, "0"},
        {1.0 / 3, "0.3333333333333333"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {NAN, "NaN"},
        {123456.5, "123456.5"},
        {4.2e-7, "4.2e-07"},
        {1e21, "1e+21"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[48];
        nudgel_metrics_format_number(cases[i].v, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].text);
    }
}

static void write_text(void *opaque, FILE *out)
{
    fputs(opaque, out);
}

static void test_labels_touch_and_collectors(void **state)
{
    (void)state;
    static const double buckets[] = {0.1, 1};
    static const char *const names[] = {"gateway", "outcome", NULL};
    nudgel_metrics_t *m = nudgel_metrics_new();
    nudgel_metric_t *req = nudgel_metrics_register_labels(m, NUDGEL_METRIC_HISTOGRAM, "req_seconds",
                                                          "Requests.", names, buckets, 2);
    nudgel_metric_t *failed = nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "failed_total",
                                                      "Failed \\ jobs.", "reason", NULL, 0);
    assert_non_null(req);
    assert_null(nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "failed_total", "", NULL, NULL, 0));
    static const char *const too_many[] = {"a", "b", "c", "d", NULL};
    assert_null(nudgel_metrics_register_labels(m, NUDGEL_METRIC_GAUGE, "g", "", too_many, NULL, 0));
    static const char *const le[] = {"le", NULL};
    assert_null(nudgel_metrics_register_labels(m, NUDGEL_METRIC_GAUGE, "g", "", le, NULL, 0));
    nudgel_metric_touch(failed, "invalid_number");
    nudgel_metric_touch2(req, "infobip", "accepted");
    nudgel_metric_observe2(req, "infobip", "accepted", 0.05);
    nudgel_metric_observe2(req, "at", "retry\"\n", 5);
    nudgel_metrics_add_collector(m, write_text, "extra 1\n");
    char *text = render(m);
    const char *expected =
        "# HELP req_seconds Requests.\n"
        "# TYPE req_seconds histogram\n"
        "req_seconds_bucket{gateway=\"infobip\",outcome=\"accepted\",le=\"0.1\"} 1\n"
        "req_seconds_bucket{gateway=\"infobip\",outcome=\"accepted\",le=\"1\"} 1\n"
        "req_seconds_bucket{gateway=\"infobip\",outcome=\"accepted\",le=\"+Inf\"} 1\n"
        "req_seconds_sum{gateway=\"infobip\",outcome=\"accepted\"} 0.05\n"
        "req_seconds_count{gateway=\"infobip\",outcome=\"accepted\"} 1\n"
        "req_seconds_bucket{gateway=\"at\",outcome=\"retry\\\"\\n\",le=\"0.1\"} 0\n"
        "req_seconds_bucket{gateway=\"at\",outcome=\"retry\\\"\\n\",le=\"1\"} 0\n"
        "req_seconds_bucket{gateway=\"at\",outcome=\"retry\\\"\\n\",le=\"+Inf\"} 1\n"
        "req_seconds_sum{gateway=\"at\",outcome=\"retry\\\"\\n\"} 5\n"
        "req_seconds_count{gateway=\"at\",outcome=\"retry\\\"\\n\"} 1\n"
        "# HELP failed_total Failed \\\\ jobs.\n"
        "# TYPE failed_total counter\n"
        "failed_total{reason=\"invalid_number\"} 0\n"
        "extra 1\n";
    assert_string_equal(text, expected);
    free(text);
    nudgel_metrics_destroy(m);
}

static void *hammer(void *arg)
{
    for (int i = 0; i < 200000; i++)
        nudgel_metric_add(arg, "x", 1);
    return NULL;
}

static void test_concurrent_adds_are_exact(void **state)
{
    (void)state;
    nudgel_metrics_t *m = nudgel_metrics_new();
    nudgel_metric_t *c = nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "c", "", "l", NULL, 0);
    pthread_t a, b;
    pthread_create(&a, NULL, hammer, c);
    pthread_create(&b, NULL, hammer, c);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    assert_true(nudgel_metric_value(c, "x") == 400000);
    nudgel_metrics_destroy(m);
}

typedef struct fetched {
    long status;
    char body[8192];
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

static bool not_ready(void *opaque, char *why, size_t why_size)
{
    int *ready = opaque;
    if (!*ready)
        snprintf(why, why_size, "no partitions assigned");
    return *ready;
}

static void test_endpoints_over_loopback(void **state)
{
    (void)state;
    char errstr[256];
    int ready = 0;
    nudgel_metrics_t *m = nudgel_metrics_new();
    nudgel_metric_t *c =
        nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "jobs_total", "Jobs.", NULL, NULL, 0);
    nudgel_metric_add(c, NULL, 42);
    nudgel_http_admin_t *h =
        nudgel_http_admin_start("127.0.0.1", 0, m, not_ready, &ready, errstr, sizeof(errstr));
    assert_non_null(h);
    int port = nudgel_http_admin_port(h);
    assert_true(port > 0);

    fetched_t f = fetch(port, "/healthz");
    assert_int_equal(f.status, 200);
    f = fetch(port, "/readyz");
    assert_int_equal(f.status, 503);
    assert_non_null(strstr(f.body, "no partitions assigned"));
    ready = 1;
    f = fetch(port, "/readyz");
    assert_int_equal(f.status, 200);
    f = fetch(port, "/metrics");
    assert_int_equal(f.status, 200);
    assert_non_null(strstr(f.body, "jobs_total 42\n"));
    f = fetch(port, "/nope");
    assert_int_equal(f.status, 404);
    nudgel_http_admin_stop(h);

    assert_null(nudgel_http_admin_start("not-an-ip", 0, m, NULL, NULL, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "metrics.address"));
    nudgel_metrics_destroy(m);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_series_are_bounded),
        cmocka_unit_test(test_numbers_print_as_prometheus_prints_them),
        cmocka_unit_test(test_labels_touch_and_collectors),
        cmocka_unit_test(test_concurrent_adds_are_exact),
        cmocka_unit_test(test_endpoints_over_loopback),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
