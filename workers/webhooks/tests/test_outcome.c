/*
 * test_outcome.c — what an attempt means: the classification table and
 * Retry-After parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "nudgel/webhooks/outcome.h"

/* 2026-11-29T05:00:00Z */
#define NOW_MS 1795928400000LL

typedef struct row {
    nudgel_transport_t transport;
    long status;
    const char *retry_after;
    nudgel_outcome_kind_t kind;
    int64_t not_before_ms; /* expected; 0 = none */
    const char *error_class;
} row_t;

static const row_t table[] = {
    {NUDGEL_TRANSPORT_OK, 200, NULL, NUDGEL_OUTCOME_DELIVERED, 0, NULL},
    {NUDGEL_TRANSPORT_OK, 201, NULL, NUDGEL_OUTCOME_DELIVERED, 0, NULL},
    {NUDGEL_TRANSPORT_OK, 202, NULL, NUDGEL_OUTCOME_DELIVERED, 0, NULL},
    {NUDGEL_TRANSPORT_OK, 204, NULL, NUDGEL_OUTCOME_DELIVERED, 0, NULL},
    {NUDGEL_TRANSPORT_OK, 299, NULL, NUDGEL_OUTCOME_DELIVERED, 0, NULL},
    {NUDGEL_TRANSPORT_OK, 100, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_other"},
    {NUDGEL_TRANSPORT_OK, 301, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_3xx"},
    {NUDGEL_TRANSPORT_OK, 302, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_3xx"},
    {NUDGEL_TRANSPORT_OK, 307, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_3xx"},
    {NUDGEL_TRANSPORT_OK, 308, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_3xx"},
    {NUDGEL_TRANSPORT_OK, 400, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_4xx"},
    {NUDGEL_TRANSPORT_OK, 401, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_4xx"},
    {NUDGEL_TRANSPORT_OK, 403, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_4xx"},
    {NUDGEL_TRANSPORT_OK, 404, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_4xx"},
    {NUDGEL_TRANSPORT_OK, 408, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_4xx"},
    {NUDGEL_TRANSPORT_OK, 410, NULL, NUDGEL_OUTCOME_DISABLE_ENDPOINT, 0, "http_410"},
    {NUDGEL_TRANSPORT_OK, 410, "60", NUDGEL_OUTCOME_DISABLE_ENDPOINT, 0, "http_410"},
    {NUDGEL_TRANSPORT_OK, 413, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_4xx"},
    {NUDGEL_TRANSPORT_OK, 429, NULL, NUDGEL_OUTCOME_BACKOFF, 0, "http_429"},
    {NUDGEL_TRANSPORT_OK, 429, "120", NUDGEL_OUTCOME_BACKOFF, NOW_MS + 120000, "http_429"},
    {NUDGEL_TRANSPORT_OK, 429, " 0 ", NUDGEL_OUTCOME_BACKOFF, NOW_MS, "http_429"},
    {NUDGEL_TRANSPORT_OK, 429, "Sun, 29 Nov 2026 05:10:00 GMT", NUDGEL_OUTCOME_BACKOFF,
     NOW_MS + 600000, "http_429"},
    /* A date in the past: retry as soon as the schedule allows. */
    {NUDGEL_TRANSPORT_OK, 429, "Sun, 29 Nov 2026 04:00:00 GMT", NUDGEL_OUTCOME_BACKOFF, NOW_MS,
     "http_429"},
    /* Unparseable: backoff on the schedule alone. */
    {NUDGEL_TRANSPORT_OK, 429, "soon", NUDGEL_OUTCOME_BACKOFF, 0, "http_429"},
    {NUDGEL_TRANSPORT_OK, 429, "-5", NUDGEL_OUTCOME_BACKOFF, 0, "http_429"},
    {NUDGEL_TRANSPORT_OK, 429, "1.5", NUDGEL_OUTCOME_BACKOFF, 0, "http_429"},
    {NUDGEL_TRANSPORT_OK, 500, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_5xx"},
    {NUDGEL_TRANSPORT_OK, 500, "30", NUDGEL_OUTCOME_RETRY, 0, "http_5xx"},
    {NUDGEL_TRANSPORT_OK, 501, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_5xx"},
    {NUDGEL_TRANSPORT_OK, 502, NULL, NUDGEL_OUTCOME_BACKOFF, 0, "http_5xx"},
    {NUDGEL_TRANSPORT_OK, 503, "30", NUDGEL_OUTCOME_BACKOFF, NOW_MS + 30000, "http_5xx"},
    {NUDGEL_TRANSPORT_OK, 503, "Sunday, 29-Nov-26 05:01:00 GMT", NUDGEL_OUTCOME_BACKOFF,
     NOW_MS + 60000, "http_5xx"},
    {NUDGEL_TRANSPORT_OK, 504, "Sun Nov 29 05:00:30 2026", NUDGEL_OUTCOME_BACKOFF, NOW_MS + 30000,
     "http_5xx"},
    {NUDGEL_TRANSPORT_OK, 504, NULL, NUDGEL_OUTCOME_BACKOFF, 0, "http_5xx"},
    {NUDGEL_TRANSPORT_OK, 599, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_5xx"},
    {NUDGEL_TRANSPORT_OK, 600, NULL, NUDGEL_OUTCOME_RETRY, 0, "http_other"},
    {NUDGEL_TRANSPORT_TIMEOUT, 0, NULL, NUDGEL_OUTCOME_RETRY, 0, "timeout"},
    {NUDGEL_TRANSPORT_CONNECT, 0, NULL, NUDGEL_OUTCOME_RETRY, 0, "connect"},
    {NUDGEL_TRANSPORT_DNS, 0, NULL, NUDGEL_OUTCOME_RETRY, 0, "dns"},
    {NUDGEL_TRANSPORT_TLS, 0, NULL, NUDGEL_OUTCOME_RETRY, 0, "tls"},
    {NUDGEL_TRANSPORT_ERROR, 0, NULL, NUDGEL_OUTCOME_RETRY, 0, "transport"},
    {NUDGEL_TRANSPORT_SSRF_REFUSED, 0, NULL, NUDGEL_OUTCOME_PERMANENT, 0, "ssrf_refused"},
    {NUDGEL_TRANSPORT_BAD_URL, 0, NULL, NUDGEL_OUTCOME_PERMANENT, 0, "bad_url"},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const row_t *r = &table[i];
        nudgel_attempt_result_t in = {.transport = r->transport,
                                      .http_status = r->status,
                                      .retry_after = r->retry_after,
                                      .now_ms = NOW_MS};
        nudgel_outcome_t o = nudgel_outcome_classify(&in);
        if (o.kind != r->kind || o.not_before_ms != r->not_before_ms ||
            (r->error_class == NULL) != (o.error_class == NULL) ||
            (r->error_class && strcmp(r->error_class, o.error_class) != 0))
            fail_msg("row %zu (status %ld, retry-after %s): got %s not_before %lld class %s", i,
                     r->status, r->retry_after ? r->retry_after : "-",
                     nudgel_outcome_kind_name(o.kind), (long long)o.not_before_ms,
                     o.error_class ? o.error_class : "NULL");
    }
}

static void test_retry_after_cap(void **state)
{
    (void)state;
    nudgel_attempt_result_t in = {.transport = NUDGEL_TRANSPORT_OK,
                                  .http_status = 503,
                                  .retry_after = "86400",
                                  .now_ms = NOW_MS,
                                  .max_retry_after_ms = 3600000};
    nudgel_outcome_t o = nudgel_outcome_classify(&in);
    assert_int_equal(o.kind, NUDGEL_OUTCOME_BACKOFF);
    assert_int_equal(o.not_before_ms, NOW_MS + 3600000);
    in.max_retry_after_ms = 0;
    o = nudgel_outcome_classify(&in);
    assert_int_equal(o.not_before_ms, NOW_MS + 86400000);
}

static void test_retry_after_parse(void **state)
{
    (void)state;
    int64_t nb = 0;
    assert_int_equal(nudgel_retry_after_parse("Thu, 01 Jan 1970 00:00:10 GMT", 0, &nb), 0);
    assert_int_equal(nb, 10000);
    assert_int_equal(
        nudgel_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480000LL - 5000, &nb), 0);
    assert_int_equal(nb, 1445412480000LL);
    static const char *const bad[] = {
        "",
        "   ",
        "12abc",
        "Wed, 21 Oct 2015 07:28:00 PST",
        "Wed, 21 Foo 2015 07:28:00 GMT",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 25:28:00 GMT",
        "Wed, 21 Oct 2015 07:28:00 GMT trailing",
        "99999999999999999999",
        "31536001",
        "Sun, 29 Nov 2099 05:00:00 GMT",
        NULL,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nb = 42;
        assert_int_equal(nudgel_retry_after_parse(bad[i], NOW_MS, &nb), -1);
        assert_int_equal(nb, 42);
    }
}

static void test_from_curl(void **state)
{
    (void)state;
    assert_int_equal(nudgel_outcome_transport_from_curl(CURLE_OK), NUDGEL_TRANSPORT_OK);
    assert_int_equal(nudgel_outcome_transport_from_curl(CURLE_OPERATION_TIMEDOUT),
                     NUDGEL_TRANSPORT_TIMEOUT);
    assert_int_equal(nudgel_outcome_transport_from_curl(CURLE_COULDNT_CONNECT),
                     NUDGEL_TRANSPORT_CONNECT);
    assert_int_equal(nudgel_outcome_transport_from_curl(CURLE_COULDNT_RESOLVE_HOST),
                     NUDGEL_TRANSPORT_DNS);
    assert_int_equal(nudgel_outcome_transport_from_curl(CURLE_PEER_FAILED_VERIFICATION),
                     NUDGEL_TRANSPORT_TLS);
    assert_int_equal(nudgel_outcome_transport_from_curl(CURLE_SSL_CONNECT_ERROR),
                     NUDGEL_TRANSPORT_TLS);
    assert_int_equal(nudgel_outcome_transport_from_curl(CURLE_UNSUPPORTED_PROTOCOL),
                     NUDGEL_TRANSPORT_BAD_URL);
    assert_int_equal(nudgel_outcome_transport_from_curl(CURLE_RECV_ERROR), NUDGEL_TRANSPORT_ERROR);
    assert_int_equal(nudgel_outcome_transport_from_curl(CURLE_GOT_NOTHING), NUDGEL_TRANSPORT_ERROR);
    /* A connection refused by a real socket classifies as connect, retried. */
    nudgel_attempt_result_t in = {
        .transport = nudgel_outcome_transport_from_curl(CURLE_COULDNT_CONNECT), .now_ms = NOW_MS};
    nudgel_outcome_t o = nudgel_outcome_classify(&in);
    assert_int_equal(o.kind, NUDGEL_OUTCOME_RETRY);
    assert_string_equal(o.error_class, "connect");
    assert_string_equal(nudgel_outcome_kind_name(NUDGEL_OUTCOME_DISABLE_ENDPOINT),
                        "disable_endpoint");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_retry_after_cap),
        cmocka_unit_test(test_retry_after_parse),
        cmocka_unit_test(test_from_curl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
