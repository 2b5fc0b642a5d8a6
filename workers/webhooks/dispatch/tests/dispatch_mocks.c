/*
 * dispatch_mocks.c — link-time mocks (-Wl,--wrap) for test_dispatch.c: the
 * consumer polls fake messages, the "lookups" connection and libpq's send
 * record the lookup for the test to answer, libnudgel's enqueue records jobs
 * (or answers enqueue_answer), the DLQ publish records its opaque.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dispatch_mocks.h"

fake_ref_t *to_poll[MAX_POLLED];
size_t to_poll_count, polled;
int done_count, defer_count, abandon_count, fatal_count;
char done_ids[MAX_POLLED][64];
unsigned paused;
job_seen_t jobs[MAX_JOBS];
size_t job_count;
nudgel_err_t enqueue_answer = NUDGEL_OK;
char sent_literal[1024];
int sends;
nudgel_pgconn_done_fn *pending_done;
void *pending_opaque;
bool pg_up = true;
void *dlq_opaque;

void __wrap_nudgel_message_header(const rd_kafka_message_t *msg, const char *name, char *out,
                                  size_t out_size)
{
    const fake_ref_t *r = (const fake_ref_t *)msg;
    const char *v = strcmp(name, "nudgel-schema") == 0   ? r->schema
                    : strcmp(name, "nudgel-tenant") == 0 ? r->tenant
                    : strcmp(name, "traceparent") == 0   ? r->traceparent
                                                         : NULL;
    snprintf(out, out_size, "%s", v ? v : "");
}

nudgel_job_ref_t *__wrap_nudgel_consumer_poll(nudgel_consumer_t *c, int timeout_ms)
{
    (void)c;
    (void)timeout_ms;
    if (polled == to_poll_count || paused) /* a pause drops what was fetched */
        return NULL;
    return (nudgel_job_ref_t *)to_poll[polled++];
}

void __wrap_nudgel_consumer_done(nudgel_consumer_t *c, nudgel_job_ref_t *job)
{
    (void)c;
    json_t *doc = json_loads(((fake_ref_t *)job)->payload, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    snprintf(done_ids[done_count++], sizeof(done_ids[0]), "%s", id ? id : "?");
    json_decref(doc);
}

void __wrap_nudgel_consumer_defer(nudgel_consumer_t *c, nudgel_job_ref_t *job, int64_t at)
{
    (void)c;
    (void)job;
    (void)at;
    defer_count++;
}

void __wrap_nudgel_consumer_abandon(nudgel_consumer_t *c, nudgel_job_ref_t *job)
{
    (void)c;
    (void)job;
    abandon_count++;
}

void __wrap_nudgel_consumer_pause(nudgel_consumer_t *c, nudgel_pause_reason_t reason)
{
    (void)c;
    paused |= (unsigned)reason;
}

void __wrap_nudgel_consumer_resume(nudgel_consumer_t *c, nudgel_pause_reason_t reason)
{
    (void)c;
    paused &= ~(unsigned)reason;
}

void __wrap_nudgel_consumer_health(const nudgel_consumer_t *c, nudgel_kafka_health_t *out)
{
    (void)c;
    *out = (nudgel_kafka_health_t){.stats_at_us = 1,
                                   .brokers_up = 1,
                                   .brokers_known = 1,
                                   .group_up = true,
                                   .group_steady = true,
                                   .assigned = 1};
}

const rd_kafka_message_t *__wrap_nudgel_job_message(const nudgel_job_ref_t *job)
{
    return &((const fake_ref_t *)job)->km;
}

bool __wrap_nudgel_pgconn_up(const nudgel_pgconn_t *c)
{
    (void)c;
    return pg_up;
}

bool __wrap_nudgel_pgconn_busy(const nudgel_pgconn_t *c)
{
    (void)c;
    return pending_done != NULL;
}

PGconn *__wrap_nudgel_pgconn_conn(const nudgel_pgconn_t *c)
{
    (void)c;
    return (PGconn *)&sends; /* never dereferenced: PQsendQueryParams is mocked */
}

nudgel_err_t __wrap_nudgel_pgconn_sent(nudgel_pgconn_t *c, size_t syncs,
                                       nudgel_pgconn_done_fn *done, void *opaque)
{
    (void)c;
    assert_int_equal(syncs, 0);
    assert_null(pending_done); /* one statement at a time */
    pending_done = done;
    pending_opaque = opaque;
    return NUDGEL_OK;
}

void __wrap_nudgel_pgconn_lost(nudgel_pgconn_t *c, const char *why)
{
    (void)c;
    (void)why;
    fail_msg("lost() not expected");
}

int __wrap_PQsendQueryParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                             const char *const *paramValues, const int *paramLengths,
                             const int *paramFormats, int resultFormat)
{
    (void)conn;
    (void)paramTypes;
    (void)paramLengths;
    (void)paramFormats;
    (void)resultFormat;
    assert_non_null(strstr(command, "nudgel.webhook_endpoints"));
    assert_int_equal(nParams, 1);
    snprintf(sent_literal, sizeof(sent_literal), "%s", paramValues[0]);
    sends++;
    return 1;
}

nudgel_err_t __wrap_nudgel_enqueue_webhook(nudgel_producer_t *p, const char *json, size_t len,
                                           const nudgel_enqueue_opts_t *opts,
                                           nudgel_enqueue_result_t *result)
{
    (void)p;
    memset(result, 0, sizeof(*result));
    if (enqueue_answer != NUDGEL_OK)
        return enqueue_answer;
    assert_true(job_count < MAX_JOBS);
    json_t *job = json_loadb(json, len, 0, NULL);
    assert_non_null(job);
    job_seen_t *j = &jobs[job_count++];
    snprintf(j->endpoint, sizeof(j->endpoint), "%s",
             json_string_value(json_object_get(job, "endpoint_id")));
    /* the status event's id is in the payload's data for these tests */
    json_t *data = json_object_get(json_object_get(job, "payload"), "data");
    snprintf(j->event_id, sizeof(j->event_id), "%s", json_string_value(json_object_get(data, "n")));
    j->opaque = opts->opaque;
    json_decref(job);
    return NUDGEL_OK;
}

int __wrap_nudgel_producer_poll(nudgel_producer_t *p, int timeout_ms)
{
    (void)p;
    (void)timeout_ms;
    return 0;
}

int __wrap_nudgel_producer_in_flight(nudgel_producer_t *p)
{
    (void)p;
    return 0;
}

nudgel_err_t __wrap_nudgel_publish_dlq(nudgel_publisher_t *p, const char *topic,
                                       const rd_kafka_message_t *job, const char *reason,
                                       void *opaque)
{
    (void)p;
    (void)job;
    assert_string_equal(topic, "dlq");
    assert_non_null(reason);
    dlq_opaque = opaque;
    return NUDGEL_OK;
}
