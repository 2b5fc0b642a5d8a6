/*
 * test_dispatch.c — the dispatcher's stages (intake.c, endpoints.c,
 * fanout.c) with the real lifecycle and loop, and the consumer, the
 * "lookups" connection, libpq's send and libnudgel's enqueue mocked at link
 * time (-Wl,--wrap): the test answers lookups with synthetic PGresults and
 * acknowledges jobs itself.
 *
 * Checked: endpoint matching (table); lists built from rows; the job's
 * bytes and derived ids (a fixed vector: a redelivered event, or one
 * dispatched before an upgrade, makes the same job); events of a tenant wait
 * for its lookup in poll order while another tenant's go on; one statement
 * at a time, tenants batched; a failed statement retried after a back-off, a
 * lost connection pausing intake until it is back; the cache capped (LRU,
 * tenants in use kept); a full producer queue parking fan-out in order and
 * pausing intake until room comes back; skips and the DLQ; the in-flight cap;
 * the poll budget of one loop turn.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dispatch_mocks.h"

/* ---- fixtures ------------------------------------------------------------ */

static dispatcher_t *d;
static nudgel_metrics_t *metrics;
static fake_ref_t refs[MAX_POLLED];

static void on_fatal(void *opaque, const char *why)
{
    (void)opaque;
    (void)why;
    fatal_count++;
}

static int setup(void **state)
{
    (void)state;
    char errstr[256];
    to_poll_count = polled = job_count = 0;
    done_count = defer_count = abandon_count = fatal_count = sends = 0;
    paused = 0;
    pending_done = NULL;
    pg_up = true;
    enqueue_answer = NUDGEL_OK;
    dlq_opaque = NULL;
    memset(refs, 0, sizeof(refs));
    d = calloc(1, sizeof(*d));
    metrics = nudgel_metrics_new();
    assert_non_null(d->loop = nudgel_loop_new(errstr, sizeof(errstr)));
    d->consumer = (nudgel_consumer_t *)&refs; /* opaque: every call is mocked */
    d->refresh_us = 3600LL * 1000 * 1000;
    d->max_in_flight = 100;
    d->cache_max = 100;
    d->gauge_in_flight = -1;
    d->m_events =
        nudgel_metrics_register(metrics, NUDGEL_METRIC_COUNTER, "e", "e", "outcome", NULL, 0);
    d->m_jobs =
        nudgel_metrics_register(metrics, NUDGEL_METRIC_COUNTER, "j", "j", "outcome", NULL, 0);
    d->m_in_flight = nudgel_metrics_register(metrics, NUDGEL_METRIC_GAUGE, "f", "f", NULL, NULL, 0);
    d->m_cache_tenants =
        nudgel_metrics_register(metrics, NUDGEL_METRIC_GAUGE, "t", "t", NULL, NULL, 0);
    d->m_cache_evictions =
        nudgel_metrics_register(metrics, NUDGEL_METRIC_COUNTER, "v", "v", NULL, NULL, 0);
    d->m_lookups =
        nudgel_metrics_register(metrics, NUDGEL_METRIC_COUNTER, "l", "l", "outcome", NULL, 0);
    nudgel_lifecycle_opts_t lopts = {.status_topic = "status",
                                     .dlq_topic = "dlq",
                                     .finished = intake_event_finished,
                                     .fatal = on_fatal,
                                     .opaque = d};
    assert_non_null(d->lc = nudgel_lifecycle_new(&lopts));
    assert_int_equal(endpoints_new(d), NUDGEL_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    endpoints_free(d);
    d->backlog_head = d->backlog_tail = NULL;
    intake_abandon_all(d);
    nudgel_lifecycle_free(d->lc);
    nudgel_loop_free(d->loop);
    nudgel_metrics_destroy(metrics);
    free(d);
    return 0;
}

/* Queues a status event of @p tenant for the next polls; "n" in data names it. */
static void event(const char *tenant, const char *n, const char *type)
{
    fake_ref_t *r = &refs[to_poll_count];
    snprintf(r->payload, sizeof(r->payload),
             "{\"id\":\"%s\",\"type\":\"%s\",\"tenantid\":\"%s\","
             "\"time\":\"2026-11-29T05:00:00.123Z\",\"data\":{\"n\":\"%s\"}}",
             n, type ? type : "ai.nudgel.message.sent", tenant, n);
    r->km.payload = r->payload;
    r->km.len = strlen(r->payload);
    r->km.offset = (int64_t)to_poll_count;
    r->schema = "status.event/v1";
    r->tenant = tenant;
    r->traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    to_poll[to_poll_count++] = r;
}

static void raw_event(const char *payload)
{
    fake_ref_t *r = &refs[to_poll_count];
    snprintf(r->payload, sizeof(r->payload), "%s", payload);
    r->km.payload = r->payload;
    r->km.len = strlen(r->payload);
    to_poll[to_poll_count++] = r;
}

/* A row of a lookup answer: the tenant's place in the batch (1-based), endpoint, types. */
typedef struct row {
    int i;
    const char *endpoint;
    const char *types;
} row_t;

/* Answers the lookup in flight with @p rows. */
static void answer(const row_t *rows, size_t n)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[3] = {{.name = (char *)"i", .typid = 20, .typlen = 8},
                             {.name = (char *)"endpoint_id", .typid = 25, .typlen = -1},
                             {.name = (char *)"event_types", .typid = 25, .typlen = -1}};
    assert_true(PQsetResultAttrs(res, 3, attrs));
    for (size_t r = 0; r < n; r++) {
        char i[16];
        snprintf(i, sizeof(i), "%d", rows[r].i);
        assert_true(PQsetvalue(res, (int)r, 0, i, (int)strlen(i)));
        assert_true(
            PQsetvalue(res, (int)r, 1, (char *)rows[r].endpoint, (int)strlen(rows[r].endpoint)));
        assert_true(PQsetvalue(res, (int)r, 2, (char *)rows[r].types, (int)strlen(rows[r].types)));
    }
    nudgel_pgconn_done_fn *done = pending_done;
    assert_non_null(done);
    pending_done = NULL;
    done(pending_opaque, NULL, &res, 1, NUDGEL_OK, "");
    PQclear(res);
}

/* Acknowledges the job at @p k. */
static void ack(size_t k, nudgel_err_t err)
{
    nudgel_delivery_report_t report = {
        .job_id = "j", .err = err, .errstr = err ? "nope" : "", .opaque = jobs[k].opaque};
    fanout_on_ack(&report, d);
}

#define EP_A1 "00000000-0000-4000-8000-0000000000a1"
#define EP_A2 "00000000-0000-4000-8000-0000000000a2"
#define EP_B1 "00000000-0000-4000-8000-0000000000b1"
#define EP_C1 "00000000-0000-4000-8000-0000000000c1"

/* ---- pure parts ------------------------------------------------------------ */

static void test_wants(void **state)
{
    (void)state;
    static const struct {
        const char *pattern; /* NULL: no patterns */
        const char *type;
        bool wants;
    } cases[] = {
        {NULL, "message.sent", true},
        {"*", "message.sent", true},
        {"message.sent", "message.sent", true},
        {"message.sent", "message.delivered", false},
        {"message.*", "message.delivered", true},
        {"message.*", "messages.delivered", false},
        {"message.*", "message", false},
        {"message", "message.sent", false},
        {"webhook.*", "message.sent", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *p = (char *)cases[i].pattern;
        dispatch_endpoint_t e = {.patterns = &p, .pattern_count = p ? 1 : 0};
        assert_int_equal(dispatch_endpoint_wants(&e, cases[i].type), cases[i].wants);
    }
}

static void test_build(void **state)
{
    (void)state;
    const char *ids[] = {EP_A1, EP_A2, EP_B1, EP_C1};
    const char *types[] = {"[\"message.*\",\"message.sent\"]", NULL, "[]", "not json"};
    dispatch_endpoints_t *eps = dispatch_endpoints_build(ids, types, 4);
    assert_non_null(eps);
    assert_int_equal(eps->refs, 1);
    assert_int_equal(eps->count, 4);
    assert_string_equal(eps->items[0].id, EP_A1);
    assert_int_equal(eps->items[0].pattern_count, 2);
    assert_string_equal(eps->items[0].patterns[1], "message.sent");
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(eps->items[i].pattern_count, 0); /* all types */
    eps->refs++;
    dispatch_endpoints_unref(eps);
    assert_int_equal(eps->refs, 1);
    dispatch_endpoints_unref(eps); /* freed: ASan would tell */
    dispatch_endpoints_t *none = dispatch_endpoints_build(NULL, NULL, 0);
    assert_non_null(none);
    assert_int_equal(none->count, 0);
    dispatch_endpoints_unref(none);
}

static void test_job_json(void **state)
{
    (void)state;
    json_t *data = json_pack("{s:i}", "a", 1);
    char *a = fanout_job_json("acme", "0123456789abcdef0123456789abcdef",
                              "0190f3a2-7b4c-7d1e-8f00-aabbccddeeff", "message.sent",
                              "2026-11-29T05:00:00.123Z", data);
    char *b = fanout_job_json("acme", "0123456789abcdef0123456789abcdef",
                              "0190f3a2-7b4c-7d1e-8f00-aabbccddeeff", "message.sent",
                              "2026-11-29T05:00:00.123Z", data);
    char *other = fanout_job_json("acme", "0123456789abcdef0123456789abcdef", EP_A1, "message.sent",
                                  "2026-11-29T05:00:00.123Z", data);
    /* The vector: sha256("webhook-job\n<event id>\n<endpoint>") as a v8 UUID, and
     * "evt_" + hex of sha256("webhook-id\n...")[0:16] (computed independently). */
    assert_string_equal(a, "{\"id\":\"36cebf8a-f042-8023-8f61-d57c7427fcfa\",\"tenant_id\":"
                           "\"acme\",\"endpoint_id\":\"0190f3a2-7b4c-7d1e-8f00-aabbccddeeff\","
                           "\"event_type\":\"message.sent\",\"event_id\":"
                           "\"evt_84a6bcd0ad92f444ccfbf0df35562d7c\",\"payload\":{\"type\":"
                           "\"message.sent\",\"timestamp\":\"2026-11-29T05:00:00.123Z\","
                           "\"data\":{\"a\":1}},\"created_at\":\"2026-11-29T05:00:00.123Z\"}");
    assert_string_equal(a, b);
    assert_null(strstr(other, "36cebf8a"));
    free(a);
    free(b);
    free(other);
    json_decref(data);
}

/* ---- the stages together ----------------------------------------------------------- */

static void test_tenant_waits_in_order_others_go_on(void **state)
{
    (void)state;
    event("a", "a1", NULL);
    event("b", "b1", NULL);
    event("a", "a2", NULL);
    intake_on_ready(d);
    assert_int_equal(polled, 3);
    assert_int_equal(sends, 1); /* one statement at a time: a's */
    assert_string_equal(sent_literal, "{\"a\"}");
    assert_int_equal(job_count, 0);
    row_t a_rows[] = {{1, EP_A1, "[\"message.*\"]"}, {1, EP_A2, "[\"message.delivered\"]"}};
    answer(a_rows, 2);
    /* a's events, in poll order, to the one endpoint that wants message.sent */
    assert_int_equal(job_count, 2);
    assert_string_equal(jobs[0].event_id, "a1");
    assert_string_equal(jobs[1].event_id, "a2");
    assert_string_equal(jobs[0].endpoint, EP_A1);
    assert_int_equal(sends, 2); /* then b's */
    assert_string_equal(sent_literal, "{\"b\"}");
    /* A later event of a goes on at once, though b's lookup is in flight. */
    event("a", "a3", NULL);
    intake_on_ready(d);
    assert_int_equal(job_count, 3);
    assert_string_equal(jobs[2].event_id, "a3");
    answer(NULL, 0); /* b has no endpoint: its event is done at once */
    assert_int_equal(done_count, 1);
    assert_string_equal(done_ids[0], "b1");
    /* a's events end at their jobs' acknowledgements, in any order. */
    ack(1, NUDGEL_OK);
    ack(2, NUDGEL_OK);
    ack(0, NUDGEL_OK);
    assert_int_equal(done_count, 4);
    assert_string_equal(done_ids[1], "a2");
    assert_string_equal(done_ids[3], "a1");
    assert_int_equal(nudgel_lifecycle_live(d->lc), 0);
    assert_int_equal(fatal_count, 0);
}

static void test_batched_lookups(void **state)
{
    (void)state;
    event("a", "a1", NULL);
    intake_on_ready(d); /* a's lookup in flight */
    event("b", "b1", NULL);
    event("c", "c1", NULL);
    event("b", "b2", NULL);
    intake_on_ready(d);
    answer(NULL, 0);
    assert_int_equal(sends, 2);
    assert_string_equal(sent_literal, "{\"b\",\"c\"}"); /* in order, once each */
    row_t rows[] = {{1, EP_B1, "[]"}, {2, EP_C1, "[\"message.sent\"]"}};
    answer(rows, 2);
    assert_int_equal(job_count, 3);
    assert_string_equal(jobs[0].event_id, "b1");
    assert_string_equal(jobs[1].event_id, "b2");
    assert_string_equal(jobs[2].event_id, "c1");
    assert_string_equal(jobs[2].endpoint, EP_C1);
}

static void test_failed_statement_retried(void **state)
{
    (void)state;
    event("a", "a1", NULL);
    intake_on_ready(d);
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    nudgel_pgconn_done_fn *done = pending_done;
    pending_done = NULL;
    done(pending_opaque, NULL, &res, 1, NUDGEL_OK, "");
    PQclear(res);
    assert_int_equal(sends, 1);
    event("a", "a2", NULL);
    intake_on_ready(d);
    assert_int_equal(sends, 1); /* backing off */
    nudgel_loop_turn(d->loop, 2 * 1000 * 1000);
    assert_int_equal(sends, 2);
    assert_string_equal(sent_literal, "{\"a\"}");
    row_t rows[] = {{1, EP_A1, "[]"}};
    answer(rows, 1);
    assert_int_equal(job_count, 2);
    assert_string_equal(jobs[0].event_id, "a1");
    assert_string_equal(jobs[1].event_id, "a2");
}

static void test_lost_connection_pauses_intake(void **state)
{
    (void)state;
    event("a", "a1", NULL);
    intake_on_ready(d);
    nudgel_pgconn_done_fn *done = pending_done;
    pending_done = NULL;
    done(pending_opaque, NULL, NULL, 0, NUDGEL_ERR_PG_UNREACHABLE, "gone");
    pg_up = false;
    endpoints_on_pg_state(d, NULL, false);
    assert_true(paused & NUDGEL_PAUSE_POSTGRES);
    event("b", "b1", NULL);
    intake_on_ready(d); /* paused: nothing more comes */
    assert_int_equal(polled, 1);
    pg_up = true;
    endpoints_on_pg_state(d, NULL, true);
    assert_false(paused & NUDGEL_PAUSE_POSTGRES);
    assert_int_equal(sends, 2); /* a again, first */
    assert_string_equal(sent_literal, "{\"a\"}");
    assert_true(d->pump_wanted);
    intake_turn(d);
    assert_int_equal(polled, 2);
    row_t rows[] = {{1, EP_A1, "[]"}};
    answer(rows, 1);
    assert_int_equal(job_count, 1);
    assert_string_equal(sent_literal, "{\"b\"}");
}

static void test_cache_capped(void **state)
{
    (void)state;
    d->cache_max = 2;
    const char *tenants[] = {"a", "b", "c"};
    for (size_t t = 0; t < 3; t++) {
        event(tenants[t], tenants[t], NULL);
        intake_on_ready(d);
        answer(NULL, 0);
    }
    assert_int_equal(endpoints_cached(d), 2);
    assert_int_equal(nudgel_metric_value(d->m_cache_evictions, NULL), 1);
    /* b and c are cached; a (least recently used) is read again. */
    event("c", "c2", NULL);
    event("a", "a2", NULL);
    intake_on_ready(d);
    assert_int_equal(sends, 4);
    assert_string_equal(sent_literal, "{\"a\"}");
    /* b is evicted now, not a, which is in use (its lookup in flight). */
    assert_int_equal(endpoints_cached(d), 2);
    answer(NULL, 0);
    assert_int_equal(done_count, 5);
}

static void test_queue_full_parks_fanout_in_order(void **state)
{
    (void)state;
    event("a", "a1", NULL);
    intake_on_ready(d);
    row_t rows[] = {{1, EP_A1, "[]"}, {1, EP_A2, "[]"}};
    answer(rows, 2);
    assert_int_equal(job_count, 2);
    enqueue_answer = NUDGEL_ERR_QUEUE_FULL;
    event("a", "a2", NULL);
    event("a", "a3", NULL);
    intake_on_ready(d);
    assert_true(paused & NUDGEL_PAUSE_PRODUCER);
    assert_int_equal(polled, 2); /* the pause holds intake */
    assert_int_equal(job_count, 2);
    enqueue_answer = NUDGEL_OK;
    fanout_on_producer(d, -1, NUDGEL_LOOP_READ);
    assert_false(paused & NUDGEL_PAUSE_PRODUCER);
    intake_turn(d); /* polls what waited */
    assert_int_equal(job_count, 6);
    assert_string_equal(jobs[2].event_id, "a2");
    assert_string_equal(jobs[3].event_id, "a2");
    assert_string_equal(jobs[4].event_id, "a3");
    for (size_t k = 0; k < job_count; k++)
        ack(k, NUDGEL_OK);
    assert_int_equal(done_count, 3);
    assert_int_equal(nudgel_lifecycle_live(d->lc), 0);
}

static void test_failed_ack_of_earlier_event_is_fatal(void **state)
{
    (void)state;
    event("a", "a1", NULL);
    intake_on_ready(d);
    row_t rows[] = {{1, EP_A1, "[]"}};
    answer(rows, 1);
    ack(0, NUDGEL_ERR_TIMED_OUT);
    assert_int_equal(fatal_count, 1);
    assert_int_equal(done_count, 0); /* its offset never moves past it */
    assert_int_equal(nudgel_lifecycle_live(d->lc), 1);
}

static void test_skip_and_dead_letter(void **state)
{
    (void)state;
    event("a", "w1", "ai.nudgel.webhook.delivered"); /* never dispatched: no loops */
    event("a", "x1", "com.example.other");
    raw_event("{not json");
    intake_on_ready(d);
    assert_int_equal(done_count, 2);
    assert_int_equal(sends, 0);
    assert_non_null(dlq_opaque);
    assert_int_equal(nudgel_lifecycle_live(d->lc), 1);
    nudgel_lifecycle_published(dlq_opaque, NUDGEL_OK, "", NULL);
    assert_int_equal(done_count, 3);
    /* The envelope: a tenant header that is not the event's tenant. */
    event("a", "m1", NULL);
    refs[to_poll_count - 1].tenant = "b";
    dlq_opaque = NULL;
    intake_on_ready(d);
    assert_non_null(dlq_opaque);
    assert_int_equal(sends, 0);
    nudgel_lifecycle_published(dlq_opaque, NUDGEL_OK, "", NULL);
    assert_int_equal(done_count, 4);
    assert_int_equal(nudgel_metric_value(d->m_events, "malformed"), 2);
    assert_int_equal(nudgel_metric_value(d->m_events, "skipped"), 2);
}

static void test_in_flight_cap(void **state)
{
    (void)state;
    d->max_in_flight = 4;
    for (int i = 0; i < 6; i++) {
        char n[8];
        snprintf(n, sizeof(n), "a%d", i);
        event("a", n, NULL);
    }
    intake_on_ready(d);
    assert_int_equal(polled, 4);
    assert_true(paused & NUDGEL_PAUSE_IN_FLIGHT);
    row_t rows[] = {{1, EP_A1, "[]"}};
    answer(rows, 1);
    ack(0, NUDGEL_OK);
    assert_true(paused & NUDGEL_PAUSE_IN_FLIGHT); /* 3 left: not under half */
    ack(1, NUDGEL_OK);
    ack(2, NUDGEL_OK);
    assert_false(paused & NUDGEL_PAUSE_IN_FLIGHT);
    intake_turn(d);
    assert_int_equal(polled, 6);
}

static void test_poll_budget(void **state)
{
    (void)state;
    for (int i = 0; i < 600; i++)
        event("a", "w", "ai.nudgel.webhook.delivered"); /* each done at once */
    intake_on_ready(d);
    assert_int_equal(polled, 512); /* then the loop turns */
    assert_true(d->pump_wanted);
    intake_turn(d);
    assert_int_equal(polled, 600);
    assert_int_equal(done_count, 600);
    assert_false(d->pump_wanted);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wants),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_job_json),
        cmocka_unit_test_setup_teardown(test_tenant_waits_in_order_others_go_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batched_lookups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_statement_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_connection_pauses_intake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full_parks_fanout_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_ack_of_earlier_event_is_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skip_and_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_budget, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
