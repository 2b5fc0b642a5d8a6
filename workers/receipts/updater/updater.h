/*
 * updater.h — nudgel-receipts' private header: what its stages share.
 *
 * A carrier delivery report's path through nudgel-receipts, one stage per
 * file:
 *
 *   intake.c   polled from nudgel.carrier-dlr.v1 while under
 *              receipts.max_in_flight; parsed (workers/receipts:
 *              nudgel_dlr_parse(): malformed → logged, counted, done);
 *              held and queued for
 *   apply.c    batches of reports in ONE statement on the "apply" Postgres
 *              connection (nudgel.receipt_apply_dlrs(): forward-only under
 *              the row locks, history and report rows, pending reports kept);
 *              a lost connection puts the batch back in front, in order; then
 *   events.c   the status event of each applied (or replayed) final state,
 *              built by workers/receipts' receipt_event.c like the messages
 *              worker's, published through the job's lifecycle: the report's
 *              offset is stored after the DB write and the event's ack.
 *
 * Beside the reports, on the "sweeps" connection and a timer (sweeps.c):
 * pending reports whose receipt has been sent meanwhile, receipts with no
 * final report past their gateway's window (expired), and the event outbox
 * those two fill (outbox.c: claim, publish with its own publisher, delete
 * after the acks; a crash leaves rows that are published again).
 *
 * Everything runs on the loop thread.
 */
#ifndef NUDGEL_UPDATER_H
#define NUDGEL_UPDATER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/batchq.h"
#include "nudgel/consumer.h"
#include "nudgel/lifecycle.h"
#include "nudgel/log.h"
#include "nudgel/loop.h"
#include "nudgel/metrics.h"
#include "nudgel/pgconn.h"
#include "nudgel/publisher.h"
#include "nudgel/readiness.h"
#include "nudgel/receipt_dlrs.h"
#include "nudgel/worker.h"

#define UPDATER_SOURCE "/nudgel/receipts" /* CloudEvents source of its events */

typedef struct updater updater_t;

/* One report from its poll until it ends (lifecycle: done, defer, fatal, abandon). */
typedef struct dlr_job {
    nudgel_job_life_t life; /* first: the lifecycle's finished callback hands it back */
    updater_t *u;
    nudgel_dlr_report_t report;
    int attempts; /* statements that failed for it (NUDGEL_ERR_PG) */
} dlr_job_t;

/* A sweep's stage (sweeps.c). */
typedef enum sweep_stage {
    SWEEP_IDLE = 0,
    SWEEP_PENDING,
    SWEEP_EXPIRY,
    SWEEP_OUTBOX_CLAIM,
    SWEEP_OUTBOX_PUBLISH,
    SWEEP_OUTBOX_DELETE,
} sweep_stage_t;

struct updater {
    nudgel_worker_t *w;
    nudgel_loop_t *loop;
    nudgel_consumer_t *consumer;
    nudgel_publisher_t *publisher;  /* events of reports, through the lifecycle */
    nudgel_publisher_t *outbox_pub; /* events of sweeps, acks to outbox.c */
    nudgel_lifecycle_t *lc;
    nudgel_pgconn_t *apply_pg, *sweep_pg;
    const char *topic_dlr, *topic_status, *topic_dlq;

    /* Settings (SIGHUP may change those marked live). */
    size_t max_in_flight;       /* live */
    size_t batch_max;           /* live */
    int64_t pending_ttl_s;      /* live */
    int64_t sweep_every_us;     /* live */
    int sweep_batch;            /* live */
    nudgel_dlr_expiry_t expiry; /* live */

    /* intake.c */
    bool full, pump_wanted;
    double gauge_in_flight;

    /* apply.c */
    nudgel_batchq_t *queue;
    dlr_job_t **batch; /* the statement in flight (batch_n items), NUDGEL_RECEIPTS_BATCH_MAX */
    size_t batch_n;
    nudgel_timer_t *retry_timer; /* after a failed statement */
    int64_t retry_us;            /* its back-off */
    bool singles;                /* after a failed batch: one report per statement */

    /* sweeps.c, outbox.c */
    nudgel_timer_t *sweep_timer;
    sweep_stage_t stage;
    bool sweep_again;             /* a sweep hit its limit: go on without waiting for the timer */
    int64_t pending_counted_us;   /* when a pending sweep last counted the kept reports, mono */
    nudgel_dlr_applied_t *outbox; /* claimed rows, sweep_batch of them */
    bool *outbox_acked;
    size_t outbox_n, outbox_waiting;

    nudgel_log_ratelimit_t pg_log;

    /* Readiness and metrics (registered in main.c). */
    nudgel_ready_cond_t *ready_kafka, *ready_apply, *ready_sweeps;
    nudgel_metric_t *m_reports, *m_events, *m_in_flight, *m_pending, *m_expired, *m_statements;
    nudgel_metric_t *m_pending_now; /* nudgel_receipts_pending_reports, counted every 10 s */
};

/* Failure reasons of a report (nudgel_jobs_failed_total{reason}), declared at start-up. */
#define UPDATER_FAIL_MALFORMED    "malformed"    /* envelope or carrier DLR v1 shape */
#define UPDATER_FAIL_APPLY_FAILED "apply_failed" /* its statement failed alone, let go */

/* ---- intake.c ---- */
void intake_on_ready(void *opaque);
/** Turn hook: polls again when room came back, sends what apply.c can, the gauge, readiness. */
void intake_turn(void *opaque);
void intake_job_finished(void *opaque, nudgel_job_life_t *job);
void intake_drain(updater_t *u);
void intake_abandon_all(updater_t *u);
nudgel_log_ctx_t intake_log_ctx(const dlr_job_t *j);

/* ---- apply.c ---- */
nudgel_err_t apply_new(updater_t *u);
void apply_free(updater_t *u);
/** A parsed report, held by intake: queued for the next statement. */
void apply_submit(updater_t *u, dlr_job_t *j);
/** Sends the next batch when the "apply" connection is up and idle. */
void apply_pump(updater_t *u);
/** The "apply" connection came up or went down (nudgel_pgconn_state_fn). */
void apply_on_pg_state(void *opaque, nudgel_pgconn_t *c, bool up);

/* ---- events.c ---- */
/** The status event of @p a's receipt, from its row (the same data on every emission). */
json_t *events_build(const nudgel_dlr_applied_t *a);
/** Publishes the event of an applied or replayed report through @p j's lifecycle. */
void events_publish_for(updater_t *u, dlr_job_t *j, const nudgel_dlr_applied_t *a);

/* ---- sweeps.c ---- */
nudgel_err_t sweeps_new(updater_t *u);
void sweeps_free(updater_t *u);
void sweeps_on_pg_state(void *opaque, nudgel_pgconn_t *c, bool up);
/** The cycle goes on (after the outbox's acks). */
void sweeps_next(updater_t *u, sweep_stage_t stage);

/* ---- outbox.c ---- */
nudgel_err_t outbox_claim_send(updater_t *u, char *errstr, size_t errstr_size);
/** The claim's result: publishes the rows; SWEEP_OUTBOX_DELETE once every ack is in. */
nudgel_err_t outbox_claimed(updater_t *u, const PGresult *res, char *errstr, size_t errstr_size);
nudgel_err_t outbox_delete_send(updater_t *u, char *errstr, size_t errstr_size);
/** Drops the claimed rows (after the delete, or on a loss: they are claimed again later). */
void outbox_reset(updater_t *u);
/** The outbox publisher's callback (nudgel_publish_cb_t). */
void outbox_on_ack(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque);
/** Events published and not yet acknowledged. */
size_t outbox_in_flight(const updater_t *u);

#endif
