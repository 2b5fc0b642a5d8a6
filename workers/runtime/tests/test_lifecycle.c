/*
 * test_lifecycle.c — a job's end, with the consumer and publisher mocked
 * at link time (-Wl,--wrap): done once every publish is acknowledged;
 * deferred when a publish fails for the job just polled; a fatal stop (and
 * no done) when it fails for a job polled earlier; a publish refused at
 * once counts as a failure; holds (a job held across turns, or for a
 * publish of another producer, ends only after its last unhold, whatever
 * the order of acks); the envelope check; derived ids; trace ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/lifecycle.h"

/* ---- link-time mocks ---------------------------------------------------- */

void __wrap_nudgel_consumer_done(nudgel_consumer_t *c, nudgel_job_ref_t *job);
void __wrap_nudgel_consumer_defer(nudgel_consumer_t *c, nudgel_job_ref_t *job, int64_t at);
void __wrap_nudgel_consumer_abandon(nudgel_consumer_t *c, nudgel_job_ref_t *job);
const rd_kafka_message_t *__wrap_nudgel_job_message(const nudgel_job_ref_t *job);
nudgel_err_t __wrap_nudgel_publish_event(nudgel_publisher_t *p, const char *topic,
                                         const char *tenant_id, json_t *event,
                                         const char *traceparent, void *opaque);
nudgel_err_t __wrap_nudgel_publish_dlq(nudgel_publisher_t *p, const char *topic,
                                       const rd_kafka_message_t *job, const char *reason,
                                       void *opaque);
void __wrap_nudgel_message_header(const rd_kafka_message_t *msg, const char *name, char *out,
                                  size_t out_size);
void __wrap_nudgel_fleet_job_succeeded(nudgel_fleet_metrics_t *fm);

static int succeeded_calls;

void __wrap_nudgel_fleet_job_succeeded(nudgel_fleet_metrics_t *fm)
{
    (void)fm;
    succeeded_calls++;
}

/* The headers of the fake message: name → value (NULL: absent). */
static const char *header_schema, *header_tenant;

void __wrap_nudgel_message_header(const rd_kafka_message_t *msg, const char *name, char *out,
                                  size_t out_size)
{
    (void)msg;
    const char *v = strcmp(name, "nudgel-schema") == 0   ? header_schema
                    : strcmp(name, "nudgel-tenant") == 0 ? header_tenant
                                                         : NULL;
    snprintf(out, out_size, "%s", v ? v : "");
}

static int done_calls, defer_calls, abandon_calls;
static nudgel_err_t publish_result = NUDGEL_OK;
static void *last_publish_opaque;
static rd_kafka_message_t fake_msg;

void __wrap_nudgel_consumer_done(nudgel_consumer_t *c, nudgel_job_ref_t *job)
{
    (void)c;
    (void)job;
    done_calls++;
}

void __wrap_nudgel_consumer_defer(nudgel_consumer_t *c, nudgel_job_ref_t *job, int64_t at)
{
    (void)c;
    (void)job;
    (void)at;
    defer_calls++;
}

void __wrap_nudgel_consumer_abandon(nudgel_consumer_t *c, nudgel_job_ref_t *job)
{
    (void)c;
    (void)job;
    abandon_calls++;
}

const rd_kafka_message_t *__wrap_nudgel_job_message(const nudgel_job_ref_t *job)
{
    (void)job;
    return &fake_msg;
}

nudgel_err_t __wrap_nudgel_publish_event(nudgel_publisher_t *p, const char *topic,
                                         const char *tenant_id, json_t *event,
                                         const char *traceparent, void *opaque)
{
    (void)p;
    (void)topic;
    (void)tenant_id;
    (void)traceparent;
    json_decref(event);
    last_publish_opaque = opaque;
    return publish_result;
}

nudgel_err_t __wrap_nudgel_publish_dlq(nudgel_publisher_t *p, const char *topic,
                                       const rd_kafka_message_t *job, const char *reason,
                                       void *opaque)
{
    (void)p;
    (void)topic;
    (void)job;
    (void)reason;
    last_publish_opaque = opaque;
    return publish_result;
}

/* ---- the role side ------------------------------------------------------ */

typedef struct role_job {
    nudgel_job_life_t life;
    bool freed;
} role_job_t;

static int finished_calls, fatal_calls;

static void on_finished(void *opaque, nudgel_job_life_t *job)
{
    (void)opaque;
    ((role_job_t *)job)->freed = true;
    finished_calls++;
}

static void on_fatal(void *opaque, const char *why)
{
    (void)opaque;
    assert_non_null(strstr(why, "could not be finished durably"));
    fatal_calls++;
}

static nudgel_lifecycle_t *lifecycle(void)
{
    done_calls = defer_calls = abandon_calls = finished_calls = fatal_calls = succeeded_calls = 0;
    publish_result = NUDGEL_OK;
    nudgel_lifecycle_opts_t opts = {
        .status_topic = "status", .dlq_topic = "dlq", .finished = on_finished, .fatal = on_fatal};
    nudgel_lifecycle_t *lc = nudgel_lifecycle_new(&opts);
    assert_non_null(lc);
    return lc;
}

static void ack(nudgel_err_t err)
{
    nudgel_lifecycle_published(last_publish_opaque, err, err ? "broker said no" : "", NULL);
}

static void test_done_after_every_ack(void **state)
{
    (void)state;
    nudgel_lifecycle_t *lc = lifecycle();
    role_job_t j = {0};
    nudgel_job_begin(lc, &j.life, NULL, NULL);
    nudgel_lifecycle_polled_end(lc);
    nudgel_job_publish_event(&j.life, "acme", json_object(), NULL);
    void *first = last_publish_opaque;
    nudgel_job_publish_dlq(&j.life, "bad");
    nudgel_job_release(&j.life);
    assert_int_equal(done_calls, 0); /* two publishes pending */
    nudgel_lifecycle_published(first, NUDGEL_OK, "", NULL);
    assert_int_equal(done_calls, 0);
    ack(NUDGEL_OK);
    assert_int_equal(done_calls, 1);
    assert_int_equal(finished_calls, 1);
    assert_true(j.freed);
    nudgel_job_release(&j.life); /* ended: a no-op */
    assert_int_equal(done_calls, 1);
    nudgel_lifecycle_free(lc);
}

static void test_failure_of_current_defers(void **state)
{
    (void)state;
    nudgel_lifecycle_t *lc = lifecycle();
    role_job_t j = {0};
    nudgel_job_begin(lc, &j.life, NULL, NULL);
    assert_true(nudgel_job_is_current(&j.life));
    publish_result = NUDGEL_ERR_QUEUE_FULL; /* refused at once */
    nudgel_job_publish_event(&j.life, "acme", json_object(), NULL);
    nudgel_job_release(&j.life);
    assert_int_equal(defer_calls, 1);
    assert_int_equal(done_calls, 0);
    assert_int_equal(fatal_calls, 0);
    assert_int_equal(finished_calls, 1);
    nudgel_lifecycle_free(lc);
}

static void test_failure_of_earlier_job_is_fatal(void **state)
{
    (void)state;
    nudgel_lifecycle_t *lc = lifecycle();
    role_job_t j = {0};
    nudgel_job_begin(lc, &j.life, NULL, NULL);
    nudgel_lifecycle_polled_end(lc);
    assert_false(nudgel_job_is_current(&j.life));
    nudgel_job_publish_event(&j.life, "acme", json_object(), NULL);
    nudgel_job_release(&j.life);
    ack(NUDGEL_ERR_KAFKA);
    assert_int_equal(fatal_calls, 1);
    assert_int_equal(done_calls, 0); /* its offset never moves past it */
    assert_int_equal(defer_calls, 0);
    assert_int_equal(finished_calls, 0);
    nudgel_job_abandon(&j.life); /* at exit */
    assert_int_equal(abandon_calls, 1);
    assert_int_equal(finished_calls, 1);
    nudgel_lifecycle_free(lc);
}

static void test_hold_keeps_job_until_unhold(void **state)
{
    (void)state;
    nudgel_lifecycle_t *lc = lifecycle();
    role_job_t j = {0};
    nudgel_job_begin(lc, &j.life, NULL, NULL);
    nudgel_job_hold(&j.life); /* waiting for a lookup */
    nudgel_lifecycle_polled_end(lc);
    nudgel_job_release(&j.life);
    assert_int_equal(finished_calls, 0);
    nudgel_job_hold(&j.life); /* two jobs of another producer */
    nudgel_job_hold(&j.life);
    nudgel_job_unhold(&j.life, NUDGEL_OK); /* one acknowledged before the lookup's end */
    nudgel_job_unhold(&j.life, NUDGEL_OK); /* the lookup's hold */
    assert_int_equal(finished_calls, 0);
    nudgel_job_unhold(&j.life, NUDGEL_OK); /* the last ack */
    assert_int_equal(done_calls, 1);
    assert_int_equal(finished_calls, 1);
    nudgel_lifecycle_free(lc);
}

static void test_failed_hold(void **state)
{
    (void)state;
    nudgel_lifecycle_t *lc = lifecycle();
    role_job_t a = {0}, b = {0};
    /* The current job: handed back. */
    nudgel_job_begin(lc, &a.life, NULL, NULL);
    nudgel_job_hold(&a.life);
    nudgel_job_unhold(&a.life, NUDGEL_ERR_KAFKA);
    assert_int_equal(defer_calls, 1);
    assert_int_equal(finished_calls, 1);
    /* An earlier one: fatal, and its offset stays. */
    nudgel_job_begin(lc, &b.life, NULL, NULL);
    nudgel_job_hold(&b.life);
    nudgel_job_hold(&b.life);
    nudgel_lifecycle_polled_end(lc);
    nudgel_job_unhold(&b.life, NUDGEL_ERR_TIMED_OUT);
    assert_int_equal(fatal_calls, 0);
    nudgel_job_unhold(&b.life, NUDGEL_OK);
    assert_int_equal(fatal_calls, 1);
    assert_int_equal(done_calls, 0);
    nudgel_job_abandon(&b.life);
    assert_int_equal(finished_calls, 2);
    nudgel_lifecycle_free(lc);
}

/* nudgel_jobs_succeeded_total counts a job that reached its goal once it ends done: not when a
 * publish of it failed (it comes again), not twice over two attempts. */
static void test_success_counted_when_done(void **state)
{
    (void)state;
    nudgel_lifecycle_t *lc = lifecycle();
    role_job_t a = {0}, b = {0}, c = {0};
    /* First attempt: its goal reached, then a publish fails: handed back, not counted. */
    nudgel_job_begin(lc, &a.life, NULL, NULL);
    nudgel_job_hold(&a.life);
    nudgel_job_succeeded(&a.life);
    nudgel_job_unhold(&a.life, NUDGEL_ERR_KAFKA);
    assert_int_equal(defer_calls, 1);
    assert_int_equal(succeeded_calls, 0);
    /* Its second attempt ends done: counted once, when its last publish is acknowledged. */
    nudgel_job_begin(lc, &b.life, NULL, NULL);
    nudgel_lifecycle_polled_end(lc);
    nudgel_job_succeeded(&b.life);
    nudgel_job_publish_event(&b.life, "acme", json_object(), NULL);
    nudgel_job_release(&b.life);
    assert_int_equal(succeeded_calls, 0);
    ack(NUDGEL_OK);
    assert_int_equal(done_calls, 1);
    assert_int_equal(succeeded_calls, 1);
    /* A job that ends done without reaching its goal (a replay, say) is not a success. */
    nudgel_job_begin(lc, &c.life, NULL, NULL);
    nudgel_job_release(&c.life);
    assert_int_equal(done_calls, 2);
    assert_int_equal(succeeded_calls, 1);
    nudgel_lifecycle_free(lc);
}

/* The lifecycle counts its live jobs, whatever order they end in, and lets go of the rest. */
static void test_live_jobs(void **state)
{
    (void)state;
    nudgel_lifecycle_t *lc = lifecycle();
    role_job_t jobs[5] = {0};
    for (int i = 0; i < 5; i++)
        nudgel_job_begin(lc, &jobs[i].life, NULL, NULL);
    nudgel_lifecycle_polled_end(lc);
    assert_int_equal(nudgel_lifecycle_live(lc), 5);
    nudgel_job_release(&jobs[2].life); /* the middle of the list */
    nudgel_job_release(&jobs[4].life); /* its head (newest first) */
    nudgel_job_release(&jobs[0].life); /* its tail */
    assert_int_equal(nudgel_lifecycle_live(lc), 2);
    assert_int_equal(finished_calls, 3);
    nudgel_job_release(&jobs[2].life); /* ended already: no change */
    assert_int_equal(nudgel_lifecycle_live(lc), 2);
    int before = abandon_calls;
    assert_int_equal(nudgel_lifecycle_abandon_all(lc), 2);
    assert_int_equal(abandon_calls - before, 2);
    assert_true(jobs[1].life.ended && jobs[3].life.ended);
    assert_int_equal(nudgel_lifecycle_live(lc), 0);
    assert_int_equal(finished_calls, 5);
    assert_int_equal(nudgel_lifecycle_abandon_all(lc), 0);
    nudgel_lifecycle_free(lc);
}

static void test_trace_id(void **state)
{
    (void)state;
    char out[33];
    nudgel_job_trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", out);
    assert_string_equal(out, "4bf92f3577b34da6a3ce929d0e0e4736");
    static const char *const bad[] = {NULL, "", "00-4bf92f3577b34da6a3ce929d0e0e4736",
                                      "not a traceparent at all, but long enough",
                                      "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nudgel_job_trace_id(bad[i], out);
        assert_string_equal(out, "");
    }
}

static void test_envelope(void **state)
{
    (void)state;
    char reason[256];
    rd_kafka_message_t km = {0};
    header_schema = header_tenant = NULL; /* no nudgel-schema: refused (issue 10, item 12) */
    assert_false(nudgel_job_envelope_ok(&km, "message.job/v1", "acme", reason, sizeof(reason)));
    assert_non_null(strstr(reason, "nudgel-schema"));
    /* ... once the job parsed: before, its body's faults are the reason. */
    assert_true(nudgel_job_envelope_ok(&km, "message.job/v1", NULL, reason, sizeof(reason)));
    header_schema = "message.job/v1"; /* no nudgel-tenant header, no key: acceptable */
    assert_true(nudgel_job_envelope_ok(&km, "message.job/v1", "acme", reason, sizeof(reason)));
    header_tenant = "acme";
    assert_true(nudgel_job_envelope_ok(&km, "message.job/v1", "acme", reason, sizeof(reason)));
    km.key = "acme";
    km.key_len = 4;
    assert_true(nudgel_job_envelope_ok(&km, "message.job/v1", "acme", reason, sizeof(reason)));
    km.key = "acme-other"; /* the key names another tenant */
    km.key_len = 10;
    assert_false(nudgel_job_envelope_ok(&km, "message.job/v1", "acme", reason, sizeof(reason)));
    assert_non_null(strstr(reason, "key"));
    km.key = "acm"; /* a prefix is not the tenant either */
    km.key_len = 3;
    assert_false(nudgel_job_envelope_ok(&km, "message.job/v1", "acme", reason, sizeof(reason)));
    km.key = NULL;
    km.key_len = 0;
    header_schema = "webhook.job/v1";
    assert_false(nudgel_job_envelope_ok(&km, "message.job/v1", "acme", reason, sizeof(reason)));
    assert_non_null(strstr(reason, "nudgel-schema"));
    header_schema = "message.job/v1";
    header_tenant = "beta";
    assert_false(nudgel_job_envelope_ok(&km, "message.job/v1", "acme", reason, sizeof(reason)));
    assert_non_null(strstr(reason, "nudgel-tenant"));
    header_tenant = NULL;
}

static void test_derived_ids(void **state)
{
    (void)state;
    char subject[37], tenant[65];
    rd_kafka_message_t km = {.partition = 3, .offset = 42, .key = "beta", .key_len = 4};
    json_t *doc =
        json_pack("{s:s, s:s}", "id", "0190f3a2-7b4c-7d1e-8f00-aabbccddeeff", "tenant_id", "acme");
    nudgel_job_derived_ids(&km, doc, subject, tenant);
    assert_string_equal(subject, "0190f3a2-7b4c-7d1e-8f00-aabbccddeeff");
    assert_string_equal(tenant, "acme");
    json_decref(doc);
    /* No usable id or tenant: derived from the position, tenant from the key. */
    doc = json_pack("{s:s, s:s}", "id", "nope", "tenant_id", "not a tenant!");
    char again[37];
    nudgel_job_derived_ids(&km, doc, subject, tenant);
    nudgel_job_derived_ids(&km, NULL, again, tenant);
    assert_int_equal(strlen(subject), 36);
    assert_string_equal(subject, again); /* stable */
    assert_string_equal(tenant, "beta");
    km.offset = 43;
    nudgel_job_derived_ids(&km, NULL, again, tenant);
    assert_string_not_equal(subject, again);
    km.key = NULL;
    km.key_len = 0;
    nudgel_job_derived_ids(&km, NULL, again, tenant);
    assert_string_equal(tenant, "unknown");
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_done_after_every_ack),
        cmocka_unit_test(test_failure_of_current_defers),
        cmocka_unit_test(test_failure_of_earlier_job_is_fatal),
        cmocka_unit_test(test_hold_keeps_job_until_unhold),
        cmocka_unit_test(test_failed_hold),
        cmocka_unit_test(test_success_counted_when_done),
        cmocka_unit_test(test_live_jobs),
        cmocka_unit_test(test_trace_id),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_derived_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
