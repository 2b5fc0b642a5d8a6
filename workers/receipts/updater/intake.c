/*
 * intake.c — a carrier delivery report from its poll to its hand-over (see
 * updater.h).
 *
 * Owns the consumer's side of nudgel-receipts: polling while there is room
 * (receipts.max_in_flight reports alive: at the cap every partition pauses
 * and resumes once half of them have ended), the checks of one record — the
 * envelope (a nudgel-schema header naming another schema is not ours) and
 * the carrier DLR v1 shape (nudgel_dlr_parse()) — and what follows: a
 * malformed record is logged (rate-limited) and counted, and its offset
 * moves on (it can never apply; the receiver validates what it produces);
 * any other report is held and handed to apply.c. It also owns the reports'
 * memory, their log context, the drain and the "kafka" readiness.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/timeutil.h"
#include "nudgel/topics.h"
#include "updater.h"

#define DEFER_NO_MEMORY_MS 1000
#define POLL_BUDGET        512

static nudgel_log_ratelimit_t malformed_log =
    NUDGEL_LOG_RATELIMIT_INIT("malformed reports", 10, 1000);

static const char *topic_of(const rd_kafka_message_t *km)
{
    return km->rkt ? rd_kafka_topic_name(km->rkt) : "?";
}

nudgel_log_ctx_t intake_log_ctx(const dlr_job_t *j)
{
    return (nudgel_log_ctx_t){.job_id = j->report.message_id[0] ? j->report.message_id : NULL};
}

void intake_job_finished(void *opaque, nudgel_job_life_t *job)
{
    updater_t *u = opaque;
    dlr_job_t *j = (dlr_job_t *)job;
    free(j);
    if (u->full && nudgel_lifecycle_live(u->lc) < u->max_in_flight / 2) {
        /* Room again: poll by ourselves, no wake-up comes for what is queued. */
        u->full = false;
        nudgel_consumer_resume(u->consumer, NUDGEL_PAUSE_IN_FLIGHT);
        u->pump_wanted = true;
        nudgel_loop_again(u->loop);
    }
}

/* One record just polled. */
static void handle(updater_t *u, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    char reason[300];
    dlr_job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        nudgel_log_error("out of memory for a report at %s[%d]@%lld; fetched again later",
                         topic_of(km), (int)km->partition, (long long)km->offset);
        nudgel_consumer_defer(u->consumer, ref, nudgel_now_unix_ms() + DEFER_NO_MEMORY_MS);
        return;
    }
    j->u = u;
    nudgel_job_begin(u->lc, &j->life, u->consumer, ref);
    bool ok =
        nudgel_job_envelope_ok(km, NUDGEL_SCHEMA_CARRIER_DLR_V1, NULL, reason, sizeof(reason)) &&
        nudgel_dlr_parse(km->payload, km->len, &j->report, reason, sizeof(reason)) == NUDGEL_OK;
    if (!ok) {
        NUDGEL_LOG_LIMITED(&malformed_log, NUDGEL_LOG_WARN, NULL,
                           "malformed carrier report at %s[%d]@%lld, skipped: %s", topic_of(km),
                           (int)km->partition, (long long)km->offset, reason);
        nudgel_metric_add(u->m_reports, "malformed", 1);
        nudgel_job_failed_because(&j->life, UPDATER_FAIL_MALFORMED);
        nudgel_job_release(&j->life);
    } else {
        snprintf(j->report.source, sizeof(j->report.source), "%s/%d/%lld", topic_of(km),
                 (int)km->partition, (long long)km->offset);
        nudgel_job_hold(&j->life); /* until its statement is durable */
        apply_submit(u, j);
    }
    nudgel_lifecycle_polled_end(u->lc);
}

static void pump(updater_t *u)
{
    u->pump_wanted = false;
    for (int n = 0;; n++) {
        if (n == POLL_BUDGET) {
            u->pump_wanted = true;
            nudgel_loop_again(u->loop);
            break;
        }
        if (nudgel_lifecycle_live(u->lc) >= u->max_in_flight) {
            if (!u->full) {
                u->full = true;
                nudgel_consumer_pause(u->consumer, NUDGEL_PAUSE_IN_FLIGHT);
            }
            if (n > 0)
                break;
        }
        nudgel_job_ref_t *ref = nudgel_consumer_poll(u->consumer, 0);
        if (!ref)
            break;
        handle(u, ref);
    }
    nudgel_kafka_health_t h;
    nudgel_consumer_health(u->consumer, &h);
    nudgel_kafka_health_readiness(&h, u->ready_kafka);
}

void intake_on_ready(void *opaque)
{
    pump(opaque);
}

void intake_turn(void *opaque)
{
    updater_t *u = opaque;
    if (u->pump_wanted)
        pump(u);
    apply_pump(u);
    if ((double)nudgel_lifecycle_live(u->lc) != u->gauge_in_flight) {
        u->gauge_in_flight = (double)nudgel_lifecycle_live(u->lc);
        nudgel_metric_set(u->m_in_flight, NULL, u->gauge_in_flight);
    }
}

void intake_drain(updater_t *u)
{
    nudgel_consumer_pause(u->consumer, NUDGEL_PAUSE_SHUTDOWN);
}

void intake_abandon_all(updater_t *u)
{
    nudgel_lifecycle_abandon_all(u->lc);
}
