/*
 * test_deliverer_caches.c — the deliverer's two capped caches
 * (deliverer/endpoints.c, deliverer/guard.c, on nudgel/cache.h): the
 * endpoint cache drops the least recently used endpoint nothing holds (never
 * one a job holds, whose row is being read or whose lane is active) and may
 * exceed its cap only while nothing can go; the SSRF verdicts are reused per
 * host and the least recently used host goes first; a row is read again in
 * the last quarter of its time while it still serves, and is trusted from
 * when its read was sent. lookups_load() is replaced here: it only notes the
 * request (the row is then being read).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "deliverer.h"
#include "nudgel/timeutil.h"

static int loads;
static bool lookups_up = true;

/* The lookups connection, mocked (linked with --wrap=nudgel_pgconn_up). */
bool __wrap_nudgel_pgconn_up(const nudgel_pgconn_t *c);
bool __wrap_nudgel_pgconn_up(const nudgel_pgconn_t *c)
{
    (void)c;
    return lookups_up;
}

/* The lookups stage, replaced: the row is "being read" until the test says otherwise. */
void lookups_load(worker_t *w, endpoint_t *ep)
{
    loads++;
    endpoint_set_loading(w, ep, true);
}

/* The row has come: the endpoint does not exist (enough for the cache). */
static void row_came(worker_t *w, endpoint_t *ep)
{
    endpoint_not_found(ep);
    endpoint_set_loading(w, ep, false);
}

static worker_t *worker_new(size_t endpoints_max, size_t hosts_max)
{
    worker_t *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->s.endpoint_cache_max = endpoints_max;
    w->s.endpoint_cache_us = 3600LL * 1000000;
    w->s.ssrf_cache_max = hosts_max;
    w->s.ssrf_cache_us = 3600LL * 1000000;
    assert_true(endpoints_open(w));
    assert_true(guard_open(w));
    return w;
}

static const char *id(int i)
{
    static char ids[8][40];
    snprintf(ids[i], sizeof(ids[i]), "%08d-0000-4000-8000-000000000000", i);
    return ids[i];
}

static void test_endpoint_cache_evicts_what_nothing_holds(void **state)
{
    (void)state;
    worker_t *w = worker_new(3, 10);
    wjob_t job = {.w = w};
    endpoint_t *a = endpoint_get(w, id(0)), *b = endpoint_get(w, id(1)),
               *c = endpoint_get(w, id(2));
    assert_int_equal(loads, 3);
    assert_ptr_equal(endpoint_get(w, id(0)), a); /* cached, and now the most recent */
    assert_int_equal(loads, 3);                  /* its row is being read: not asked twice */
    row_came(w, a);
    row_came(w, b);
    endpoint_hold(b, &job); /* a job holds b; c's row is being read */
    endpoint_get(w, id(0));
    /* Use order, oldest first: b, c, a. b is held, c loading: a goes for d. */
    endpoint_t *d = endpoint_get(w, id(3));
    assert_int_equal(nudgel_cache_count(w->endpoints), 3);
    assert_null(endpoint_find(w, id(0)));
    assert_ptr_equal(endpoint_find(w, id(1)), b);
    assert_ptr_equal(endpoint_find(w, id(2)), c);
    assert_ptr_equal(endpoint_find(w, id(3)), d);
    /* Nothing can go (held, loading, loading): the cache exceeds its cap for e. */
    endpoint_get(w, id(4));
    assert_int_equal(nudgel_cache_count(w->endpoints), 4);
    /* Let go of b and finish every read: the two oldest go for f. */
    endpoint_drop(w, &job);
    assert_null(job.ep);
    assert_int_equal(b->refs, 0);
    row_came(w, c);
    row_came(w, d);
    row_came(w, endpoint_find(w, id(4)));
    endpoint_get(w, id(5));
    assert_int_equal(nudgel_cache_count(w->endpoints), 3);
    assert_null(endpoint_find(w, id(1)));
    assert_null(endpoint_find(w, id(2)));
    assert_non_null(endpoint_find(w, id(3)));
    /* A fresh row is not read again. */
    int before = loads;
    endpoint_get(w, id(3));
    assert_int_equal(loads, before);
    endpoints_free(w);
    assert_null(w->endpoints);
    guard_free(w);
    free(w);
}

static void test_endpoint_with_an_active_lane_stays(void **state)
{
    (void)state;
    worker_t *w = worker_new(2, 10);
    endpoint_t *a = endpoint_get(w, id(0));
    row_came(w, a);
    endpoint_set_active(w, a, true); /* its lane has queued jobs */
    row_came(w, endpoint_get(w, id(1)));
    /* a is the least recently used, but its lane is active: b goes for c. */
    endpoint_t *c = endpoint_get(w, id(2));
    assert_int_equal(nudgel_cache_count(w->endpoints), 2);
    assert_null(endpoint_find(w, id(1)));
    assert_ptr_equal(endpoint_find(w, id(0)), a);
    row_came(w, c);
    /* The lane drained: a was in use until now, so c (older) goes for d. */
    endpoint_set_active(w, a, false);
    endpoint_get(w, id(3));
    assert_null(endpoint_find(w, id(2)));
    assert_ptr_equal(endpoint_find(w, id(0)), a);
    endpoints_free(w);
    guard_free(w);
    free(w);
}

static void test_endpoint_row_read_again_ahead(void **state)
{
    (void)state;
    worker_t *w = worker_new(10, 10);
    w->s.endpoint_cache_us = 1000000; /* 1 s */
    loads = 0;
    endpoint_t *ep = endpoint_get(w, id(0));
    assert_int_equal(loads, 1);
    ep->load_sent_us = nudgel_mono_us() - 100000; /* its read went out 100 ms ago */
    row_came(w, ep);
    assert_int_equal(ep->loaded_us, ep->load_sent_us); /* trusted from the read, not the answer */
    assert_false(endpoint_expired(w, ep, nudgel_mono_us()));
    endpoint_get(w, id(0));
    assert_int_equal(loads, 1); /* fresh: not read again */
    /* In the last quarter of its time: read again, and it still serves meanwhile. */
    ep->loaded_us = nudgel_mono_us() - 800000;
    endpoint_get(w, id(0));
    assert_int_equal(loads, 2);
    assert_true(ep->load_queued);
    assert_false(endpoint_expired(w, ep, nudgel_mono_us()));
    endpoint_get(w, id(0));
    assert_int_equal(loads, 2); /* once */
    row_came(w, ep);
    /* The lookups connection down: a stale row is not asked for (the one we have serves). */
    lookups_up = false;
    ep->loaded_us = nudgel_mono_us() - 900000;
    endpoint_get(w, id(0));
    assert_int_equal(loads, 2);
    lookups_up = true;
    endpoint_get(w, id(0));
    assert_int_equal(loads, 3);
    /* Past its time with the new row not there yet: expired, its lane waits. */
    ep->loaded_us = nudgel_mono_us() - 1000000;
    assert_true(endpoint_expired(w, ep, nudgel_mono_us()));
    ep->load_sent_us = nudgel_mono_us();
    row_came(w, ep);
    assert_false(endpoint_expired(w, ep, nudgel_mono_us()));
    endpoints_free(w);
    guard_free(w);
    free(w);
}

/* The vetted host at @p place in the cache's use order (0: the least recently used). */
static const vetted_t *host_at(worker_t *w, size_t place)
{
    nudgel_cache_entry_t *e = nudgel_cache_next(w->vetted, NULL);
    for (size_t i = 0; e && i < place; i++)
        e = nudgel_cache_next(w->vetted, e);
    return e ? nudgel_cache_value(e) : NULL;
}

static void test_ssrf_cache_keeps_the_recent_hosts(void **state)
{
    (void)state;
    worker_t *w = worker_new(10, 2);
    char errstr[256];
    assert_int_equal(nudgel_ssrf_policy_new(true, "127.0.0.0/8", &w->ssrf, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    const vetted_t *one = guard_vet(w, "http://127.0.0.1:8080/a");
    assert_non_null(one);
    assert_int_equal(one->err, NUDGEL_OK);
    assert_true(one->verdict.allowed);
    const vetted_t *two = guard_vet(w, "http://127.0.0.2:8080/a");
    int64_t vetted_us = one->vetted_us;
    /* Another path on the same host: the same verdict, not vetted again; now the most recent. */
    assert_ptr_equal(guard_vet(w, "http://127.0.0.1:8080/b?x=1"), one);
    assert_int_equal(one->vetted_us, vetted_us);
    assert_non_null(two);
    /* A third host: the least recently used (127.0.0.2) goes. */
    const vetted_t *three = guard_vet(w, "http://127.0.0.3:8080/");
    assert_non_null(three);
    assert_int_equal(nudgel_cache_count(w->vetted), 2);
    assert_ptr_equal(host_at(w, 0), one); /* the least recently used */
    assert_ptr_equal(host_at(w, 1), three);
    /* Refused hosts are cached too (a literal address outside the allow-list). */
    const vetted_t *refused = guard_vet(w, "http://10.1.2.3/");
    assert_non_null(refused);
    assert_int_not_equal(refused->err, NUDGEL_OK);
    assert_int_equal(nudgel_cache_count(w->vetted), 2);
    guard_free(w);
    assert_null(w->vetted);
    endpoints_free(w);
    nudgel_ssrf_policy_destroy(w->ssrf);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_cache_evicts_what_nothing_holds),
        cmocka_unit_test(test_endpoint_with_an_active_lane_stays),
        cmocka_unit_test(test_endpoint_row_read_again_ahead),
        cmocka_unit_test(test_ssrf_cache_keeps_the_recent_hosts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
