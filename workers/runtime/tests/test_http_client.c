/*
 * test_http_client.c — the multi client against a libmicrohttpd server on
 * loopback in the same process: many requests in flight at once, status,
 * body cap, Retry-After, redirects not followed, timeouts, refused
 * connections, and destroy with transfers in flight; then the same client
 * driven by the event loop alone: 200 requests at once, a total timeout
 * against a server that never answers, callbacks that submit, destroy with
 * transfers in flight, and a loop that only turns on events (no short
 * polls).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <microhttpd.h>

#include "nudgel/http_client.h"
#include "nudgel/loop.h"
#include "nudgel/timeutil.h"

static char big_body[100000];

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **state)
{
    (void)cls;
    (void)version;
    (void)method;
    if (!*state) { /* first call: headers only */
        *state = conn;
        return MHD_YES;
    }
    if (*upload_size) { /* consume the body */
        *upload_size = 0;
        return MHD_YES;
    }
    (void)upload;
    unsigned status = MHD_HTTP_OK;
    const char *body = "ok";
    struct MHD_Response *resp;
    if (strcmp(url, "/slow") == 0)
        usleep(300000);
    if (strcmp(url, "/d200") == 0)
        usleep(200000);
    if (strcmp(url, "/busy") == 0)
        status = MHD_HTTP_TOO_MANY_REQUESTS;
    if (strcmp(url, "/redirect") == 0)
        status = MHD_HTTP_MOVED_PERMANENTLY;
    if (strcmp(url, "/big") == 0)
        resp = MHD_create_response_from_buffer(sizeof(big_body), big_body, MHD_RESPMEM_PERSISTENT);
    else
        resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (status == MHD_HTTP_TOO_MANY_REQUESTS)
        MHD_add_response_header(resp, "Retry-After", "7");
    if (status == MHD_HTTP_MOVED_PERMANENTLY)
        MHD_add_response_header(resp, "Location", "/never");
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

typedef struct result {
    int count;
    long status[256];
    bool timed_out, transport_error, truncated;
    char retry_after[16];
    size_t body_len;
} result_t;

static void done(void *opaque, const nudgel_http_response_t *r)
{
    result_t *res = opaque;
    res->status[res->count++ % 256] = r->status;
    res->timed_out |= r->timed_out;
    res->transport_error |= r->transport_error;
    res->truncated |= r->body_truncated;
    res->body_len = r->body_len;
    if (r->retry_after)
        snprintf(res->retry_after, sizeof(res->retry_after), "%s", r->retry_after);
}

static struct MHD_Daemon *server;
static int port;

static int start_server(void **state)
{
    (void)state;
    memset(big_body, 'x', sizeof(big_body));
    server = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                              NULL, NULL, handler, NULL, MHD_OPTION_END);
    if (!server)
        return -1;
    port = MHD_get_daemon_info(server, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static int stop_server(void **state)
{
    (void)state;
    MHD_stop_daemon(server);
    return 0;
}

static void run_until(nudgel_http_t *h, result_t *res, int want)
{
    int64_t deadline = nudgel_mono_us() + 10 * 1000000LL;
    while (res->count < want && nudgel_mono_us() < deadline)
        nudgel_http_poll(h, 50);
    assert_int_equal(res->count, want);
}

static nudgel_http_request_t request(const char *path)
{
    static char url[128];
    nudgel_http_request_t r = {.method = "POST", .url = url, .body = "{}", .body_len = 2};
    r.headers[0] = "Content-Type: application/json";
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    return r;
}

static void test_many_in_flight(void **state)
{
    (void)state;
    char errstr[128];
    result_t res = {0};
    nudgel_http_t *h = nudgel_http_new(64, errstr, sizeof(errstr));
    int64_t start = nudgel_mono_us();
    for (int i = 0; i < 50; i++) {
        nudgel_http_request_t r = request("/slow");
        assert_int_equal(nudgel_http_submit(h, &r, done, &res), NUDGEL_OK);
    }
    assert_int_equal(nudgel_http_in_flight(h), 50);
    run_until(h, &res, 50);
    /* 50 requests of 300 ms each, concurrently: far less than 50 x 300 ms. */
    assert_true(nudgel_mono_us() - start < 5 * 1000000LL);
    for (int i = 0; i < 50; i++)
        assert_int_equal(res.status[i], 200);
    assert_int_equal(nudgel_http_in_flight(h), 0);
    nudgel_http_destroy(h);
}

static void test_statuses_and_headers(void **state)
{
    (void)state;
    char errstr[128];
    nudgel_http_t *h = nudgel_http_new(8, errstr, sizeof(errstr));
    result_t busy = {0}, redirect = {0}, big = {0};
    nudgel_http_request_t r = request("/busy");
    nudgel_http_submit(h, &r, done, &busy);
    r = request("/redirect");
    nudgel_http_submit(h, &r, done, &redirect);
    r = request("/big");
    r.max_response_bytes = 1024;
    nudgel_http_submit(h, &r, done, &big);
    run_until(h, &busy, 1);
    run_until(h, &redirect, 1);
    run_until(h, &big, 1);
    assert_int_equal(busy.status[0], 429);
    assert_string_equal(busy.retry_after, "7");
    assert_int_equal(redirect.status[0], 301); /* not followed */
    assert_int_equal(big.status[0], 200);
    assert_true(big.truncated);
    assert_int_equal(big.body_len, 1024);
    nudgel_http_destroy(h);
}

static void test_timeouts_and_refusals(void **state)
{
    (void)state;
    char errstr[128];
    nudgel_http_t *h = nudgel_http_new(8, errstr, sizeof(errstr));
    result_t slow = {0}, refused = {0};
    nudgel_http_request_t r = request("/slow");
    r.total_timeout_ms = 100;
    nudgel_http_submit(h, &r, done, &slow);
    nudgel_http_request_t closed = {.method = "GET", .url = "http://127.0.0.1:1/"};
    nudgel_http_submit(h, &closed, done, &refused);
    run_until(h, &slow, 1);
    run_until(h, &refused, 1);
    assert_true(slow.timed_out);
    assert_int_equal(slow.status[0], 0);
    assert_true(refused.transport_error);
    assert_false(refused.timed_out);
    nudgel_http_request_t bad = {.method = "GET", .url = "ftp://127.0.0.1/"};
    assert_int_equal(nudgel_http_submit(h, &bad, done, &refused), NUDGEL_ERR_INVALID_ARG);
    /* Destroy with a transfer in flight: no callback, no leak (ASan checks). */
    r = request("/slow");
    nudgel_http_submit(h, &r, done, &slow);
    nudgel_http_poll(h, 10);
    nudgel_http_destroy(h);
    assert_int_equal(slow.count, 1);
}

/* ---- on the event loop ---------------------------------------------------- */

typedef struct looped {
    nudgel_loop_t *loop;
    nudgel_http_t *h;
} looped_t;

static looped_t on_loop(long max_host_connections)
{
    char errstr[128];
    looped_t l = {nudgel_loop_new(errstr, sizeof(errstr)),
                  nudgel_http_new(max_host_connections, errstr, sizeof(errstr))};
    assert_non_null(l.loop);
    assert_non_null(l.h);
    assert_int_equal(nudgel_http_attach(l.h, l.loop), NUDGEL_OK);
    assert_int_equal(nudgel_http_attach(l.h, l.loop), NUDGEL_ERR_INVALID_ARG);
    return l;
}

static void off_loop(looped_t *l)
{
    nudgel_http_destroy(l->h);
    nudgel_loop_free(l->loop);
}

/* Turns the loop (never nudgel_http_poll) until @p res has @p want answers
 * or 10 s pass. @returns the turns taken. */
static int turn_until(looped_t *l, const result_t *res, int want)
{
    int turns = 0;
    int64_t deadline = nudgel_mono_us() + 10 * 1000000LL;
    while (res->count < want && nudgel_mono_us() < deadline) {
        nudgel_loop_turn(l->loop, -1);
        turns++;
    }
    assert_int_equal(res->count, want);
    return turns;
}

static void test_loop_many_at_once(void **state)
{
    (void)state;
    looped_t l = on_loop(64);
    result_t res = {0};
    int64_t start = nudgel_mono_us();
    for (int i = 0; i < 200; i++) {
        nudgel_http_request_t r = request("/d200");
        assert_int_equal(nudgel_http_submit(l.h, &r, done, &res), NUDGEL_OK);
    }
    turn_until(&l, &res, 200);
    /* 200 requests of 200 ms on 64 connections: about four rounds, not 200. */
    assert_true(nudgel_mono_us() - start < 5 * 1000000LL);
    for (int i = 0; i < 200; i++)
        assert_int_equal(res.status[i % 256], 200);
    assert_false(res.transport_error);
    assert_int_equal(nudgel_http_in_flight(l.h), 0);
    assert_int_equal(nudgel_http_poll(l.h, 0), 0); /* refused once attached */
    off_loop(&l);
}

/* A listening socket nobody accepts on: connections complete in the
 * kernel's backlog, requests are never answered. */
static int silent_server(int *port_out)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    *port_out = ntohs(addr.sin_port);
    return fd;
}

static void test_loop_total_timeout(void **state)
{
    (void)state;
    looped_t l = on_loop(8);
    result_t res = {0};
    int silent_port, fd = silent_server(&silent_port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/never", silent_port);
    nudgel_http_request_t r = {.method = "GET", .url = url, .total_timeout_ms = 300};
    int64_t start = nudgel_mono_us();
    assert_int_equal(nudgel_http_submit(l.h, &r, done, &res), NUDGEL_OK);
    int turns = turn_until(&l, &res, 1);
    int64_t took_ms = (nudgel_mono_us() - start) / 1000;
    print_message("total timeout of 300 ms: answered after %lld ms, %d turns\n", (long long)took_ms,
                  turns);
    assert_true(res.timed_out);
    assert_int_equal(res.status[0], 0);
    assert_true(took_ms >= 290 && took_ms < 1500); /* curl's timer, not a 10 s poll */
    assert_true(turns < 50);
    off_loop(&l);
    close(fd);
}

/* One request of 200 ms: the loop sleeps between events instead of polling
 * every millisecond, so it turns a handful of times, not ~200. */
static void test_loop_idle_between_events(void **state)
{
    (void)state;
    looped_t l = on_loop(8);
    result_t res = {0};
    nudgel_http_request_t r = request("/d200");
    int64_t start = nudgel_mono_us();
    assert_int_equal(nudgel_http_submit(l.h, &r, done, &res), NUDGEL_OK);
    uint64_t before = nudgel_loop_turns(l.loop);
    turn_until(&l, &res, 1);
    uint64_t turns = nudgel_loop_turns(l.loop) - before;
    print_message("one 200 ms request: %llu turns\n", (unsigned long long)turns);
    assert_int_equal(res.status[0], 200);
    assert_true(nudgel_mono_us() - start >= 200000);
    assert_true(turns < 50);
    off_loop(&l);
}

typedef struct chain {
    looped_t *l;
    result_t res;
    int left;
} chain_t;

/* A done callback submitting the next request: no re-entry into curl. */
static void chain_done(void *opaque, const nudgel_http_response_t *r)
{
    chain_t *c = opaque;
    done(&c->res, r);
    if (c->left-- > 0) {
        nudgel_http_request_t next = request("/");
        assert_int_equal(nudgel_http_submit(c->l->h, &next, chain_done, c), NUDGEL_OK);
    }
}

static void test_loop_submit_from_callback(void **state)
{
    (void)state;
    looped_t l = on_loop(8);
    chain_t chain = {.l = &l, .left = 9};
    nudgel_http_request_t r = request("/");
    assert_int_equal(nudgel_http_submit(l.h, &r, chain_done, &chain), NUDGEL_OK);
    turn_until(&l, &chain.res, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(chain.res.status[i], 200);
    off_loop(&l);
}

static void test_loop_destroy_in_flight(void **state)
{
    (void)state;
    char errstr[128];
    nudgel_loop_t *loop = nudgel_loop_new(errstr, sizeof(errstr));
    nudgel_http_t *h = nudgel_http_new(8, errstr, sizeof(errstr));
    result_t res = {0};
    assert_int_equal(nudgel_http_attach(h, loop), NUDGEL_OK);
    for (int i = 0; i < 4; i++) {
        nudgel_http_request_t r = request("/slow");
        assert_int_equal(nudgel_http_submit(h, &r, done, &res), NUDGEL_OK);
    }
    for (int i = 0; i < 5; i++)
        nudgel_loop_turn(loop, 20000); /* connected and waiting */
    nudgel_http_destroy(h);
    /* Nothing of the client is left on the loop: no callback (ASan would see
     * one run on freed memory), nothing armed, an empty turn. */
    assert_int_equal(nudgel_loop_turn(loop, 50000), 0);
    assert_int_equal(res.count, 0);
    nudgel_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_in_flight),
        cmocka_unit_test(test_statuses_and_headers),
        cmocka_unit_test(test_timeouts_and_refusals),
        cmocka_unit_test(test_loop_many_at_once),
        cmocka_unit_test(test_loop_total_timeout),
        cmocka_unit_test(test_loop_idle_between_events),
        cmocka_unit_test(test_loop_submit_from_callback),
        cmocka_unit_test(test_loop_destroy_in_flight),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
