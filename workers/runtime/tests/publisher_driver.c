/*
 * publisher_driver.c — nudgel-test-publisher, for the publisher's
 * integration tests: consumes message jobs from --jobs, and for each one
 * publishes a "queued" status event to --status, plus a retry hop to --retry
 * when the job's metadata says {"route":"retry"} or a dead letter to --dlq
 * for {"route":"dlq"}; a job's offset is stored only when every publish of
 * it was acknowledged (the worker's rule). Malformed jobs go to --dlq with
 * their reason. Exits after --idle-ms with nothing in flight.
 *
 * Both run on the event loop like a worker's: the consumer's on_ready
 * callback polls and publishes, the publisher's delivery reports (and so
 * the offsets stored) are served by the loop, and the idle exit is a timer.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/config.h"
#include "nudgel/consumer.h"
#include "nudgel/event.h"
#include "nudgel/job.h"
#include "nudgel/log.h"
#include "nudgel/publisher.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

#define PROGRAM "nudgel-test-publisher"

typedef struct pending {
    nudgel_job_ref_t *job;
    int outstanding; /* publishes not yet acknowledged */
    nudgel_err_t err;
} pending_t;

typedef struct run {
    nudgel_consumer_t *consumer;
    nudgel_publisher_t *pub;
    const char *status, *retry, *dlq;
    nudgel_loop_t *loop;
    nudgel_timer_t *idle;
    long idle_ms;
    int64_t last_activity;
    bool done;
    long acked, failed;
} run_t;

static void on_published(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque)
{
    pending_t *pending = opaque;
    run_t *run = cb_opaque;
    if (err) {
        pending->err = err;
        nudgel_log_error("publish failed: %s", errstr);
    }
    if (--pending->outstanding > 0)
        return;
    if (pending->err == NUDGEL_OK) {
        run->acked++;
        nudgel_consumer_done(run->consumer, pending->job);
    } else {
        /* Not done: the offset stays, the job comes again after a restart. */
        run->failed++;
    }
    free(pending);
}

static json_t *queued_event(const nudgel_message_job_t *job, int64_t now_ms)
{
    json_t *data = json_pack(
        "{s:s, s:s, s:s?, s:s, s:s?, s:s, s:i}", "message_id", job->id, "tenant_id", job->tenant_id,
        "idempotency_key", job->idempotency_key, "to", job->to, "country",
        job->phone.country[0] ? job->phone.country : NULL, "status", "accepted", "attempt", 0);
    if (data && job->metadata)
        json_object_set(data, "metadata", job->metadata);
    return nudgel_event_build("/nudgel/messages", "ai.nudgel.message.queued", job->id,
                              job->tenant_id, 0, now_ms, NULL, data);
}

/* One job: a status event, plus a retry hop or a dead letter when its
 * metadata routes it so; malformed jobs go to the DLQ with their reason. */
static void publish(run_t *run, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *m = nudgel_job_message(ref);
    pending_t *pending = calloc(1, sizeof(*pending));
    nudgel_message_job_t job;
    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t popts = {.normalise_to = true};
    pending->job = ref;
    pending->outstanding = 1;
    if (nudgel_message_job_parse(m->payload, m->len, &popts, &job, &ferr) != NUDGEL_OK) {
        char reason[400];
        snprintf(reason, sizeof(reason), "%s: %s", ferr.field, ferr.reason);
        nudgel_publish_dlq(run->pub, run->dlq, m, reason, pending);
        return;
    }
    const char *route = json_string_value(json_object_get(job.metadata, "route"));
    char traceparent[64];
    nudgel_message_header(m, NUDGEL_HDR_TRACEPARENT, traceparent, sizeof(traceparent));
    pending->outstanding += route ? 1 : 0;
    nudgel_publish_event(run->pub, run->status, job.tenant_id,
                         queued_event(&job, job.created_at_ms), traceparent, pending);
    if (route && strcmp(route, "retry") == 0)
        nudgel_publish_retry(run->pub, run->retry, m, 1, job.created_at_ms + 5000,
                             job.created_at_ms, "HTTP 503 from gateway", pending);
    else if (route)
        nudgel_publish_dlq(run->pub, run->dlq, m, "routed to the DLQ by the test", pending);
    nudgel_message_job_clear(&job);
}

static void on_ready(void *opaque)
{
    run_t *run = opaque;
    nudgel_job_ref_t *ref;
    while ((ref = nudgel_consumer_poll(run->consumer, 0))) {
        run->last_activity = nudgel_mono_us();
        publish(run, ref);
    }
}

/* Done after --idle-ms assigned with nothing polled and nothing in flight. */
static void on_idle_check(void *opaque)
{
    run_t *run = opaque;
    int64_t now = nudgel_mono_us();
    if (!nudgel_consumer_assigned(run->consumer) || nudgel_consumer_in_flight(run->consumer))
        run->last_activity = now;
    if (now - run->last_activity > run->idle_ms * 1000) {
        run->done = true;
        return;
    }
    nudgel_timer_arm_at(run->idle, run->last_activity + run->idle_ms * 1000 + 1000);
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, nudgel_consumer_conf,
                                                        NULL};
    static const struct option options[] = {
        {"jobs", required_argument, NULL, 'j'},  {"status", required_argument, NULL, 's'},
        {"retry", required_argument, NULL, 'r'}, {"dlq", required_argument, NULL, 'd'},
        {"group", required_argument, NULL, 'g'}, {"idle-ms", required_argument, NULL, 'i'},
        {"set", required_argument, NULL, 'S'},   {NULL, 0, NULL, 0},
    };
    const char *jobs = NULL, *group = "pub-test";
    char *sets[16];
    size_t set_count = 0;
    int opt, exit_code = 2;
    char errstr[512];
    run_t run = {.idle_ms = 3000};
    nudgel_conf_t *conf = nudgel_conf_new(PROGRAM, tables);

    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'j':
            jobs = optarg;
            break;
        case 's':
            run.status = optarg;
            break;
        case 'r':
            run.retry = optarg;
            break;
        case 'd':
            run.dlq = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 'i':
            run.idle_ms = atol(optarg);
            break;
        case 'S':
            if (set_count < 16)
                sets[set_count++] = optarg;
            break;
        default:
            goto out;
        }
    }
    if (!jobs || !run.status || !run.retry || !run.dlq ||
        nudgel_conf_startup(conf, PROGRAM, NULL, sets, set_count, false, false) !=
            NUDGEL_CONF_STARTUP_RUN)
        goto out;
    run.consumer = nudgel_consumer_new(conf, group, &jobs, 1, errstr, sizeof(errstr));
    run.pub = run.consumer ? nudgel_publisher_new(conf, on_published, &run, errstr, sizeof(errstr))
                           : NULL;
    if (!run.pub) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        goto out;
    }
    if (!(run.loop = nudgel_loop_new(errstr, sizeof(errstr))) ||
        !(run.idle = nudgel_timer_new(run.loop, on_idle_check, &run)) ||
        nudgel_consumer_attach(run.consumer, run.loop, on_ready, &run) != NUDGEL_OK ||
        nudgel_publisher_attach(run.pub, run.loop) != NUDGEL_OK) {
        fprintf(stderr, "%s: cannot set up the event loop\n", PROGRAM);
        goto out;
    }
    run.last_activity = nudgel_mono_us();
    nudgel_timer_arm_in(run.idle, run.idle_ms * 1000);
    while (!run.done)
        nudgel_loop_turn(run.loop, -1);
    printf("{\"acked\":%ld,\"failed\":%ld}\n", run.acked, run.failed);
    exit_code = run.failed ? 1 : 0;
out:
    nudgel_publisher_destroy(run.pub, 10000);
    nudgel_consumer_close(run.consumer);
    nudgel_timer_free(run.idle);
    nudgel_loop_free(run.loop);
    nudgel_conf_destroy(conf);
    if (exit_code == 2)
        fprintf(stderr,
                "usage: %s --jobs T --status T --retry T --dlq T [--group G] "
                "[--idle-ms N] [--set KEY=VALUE]\n",
                PROGRAM);
    return exit_code;
}
