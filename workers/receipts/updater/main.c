/*
 * nudgel-receipts — carrier delivery reports to receipts: the
 * configuration, the role table and the wiring on the shared runtime
 * (nudgel/worker.h). The stages are intake.c, apply.c, events.c, sweeps.c
 * and outbox.c; updater.h tells a report's path through them.
 *
 * On the loop: the consumer of nudgel.carrier-dlr.v1 (its on_ready polls
 * intake), two publishers of status events (reports' events through the
 * lifecycle; the outbox's own), the "apply" and "sweeps" Postgres
 * connections, the sweep timer, intake's turn hook. Readiness: "kafka",
 * "postgres:apply", "postgres:sweeps".
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/topics.h"
#include "updater.h"

#define PROGRAM         "nudgel-receipts"
#define PUBLISH_WAIT_MS 10000

static const nudgel_conf_entry_t receipts_table[] = {
    {"receipts.group_id", NUDGEL_CONF_STRING, "nudgel-receipts", 0, 0, NULL, 0,
     "Kafka consumer group of the receipts updaters on nudgel.carrier-dlr.v1."},
    {"receipts.max_in_flight", NUDGEL_CONF_INT, "5000", 1, 100000, NULL, 0,
     "Reports in flight (not yet written and acknowledged); above it every partition pauses."},
    {"receipts.batch_max", NUDGEL_CONF_INT, "500", 1, 1000, NULL, 0,
     "Reports applied in one statement at most (the batch grows with the load while one is in "
     "flight)."},
    {"receipts.pending_ttl_s", NUDGEL_CONF_INT, "604800", 60, 7776000, NULL, 0,
     "How long a report that arrived before its message's sent outcome is kept waiting for it; "
     "then it is recorded unmatched in nudgel.message_receipt_reports."},
    {"receipts.expiry_s", NUDGEL_CONF_INT, "172800", 1, 7776000, NULL, 0,
     "A sent receipt with no final report this long after its submission ends expired "
     "(error dlr_timeout)."},
    {"receipts.expiry_by_gateway", NUDGEL_CONF_STRING, "", 0, 0, NULL, 0,
     "Gateways with their own expiry window: gateway=seconds, comma-separated "
     "(\"infobip-ke=86400,at=172800\"); the others take receipts.expiry_s."},
    {"receipts.sweep_interval_ms", NUDGEL_CONF_INT, "1000", 50, 600000, NULL, 0,
     "How often pending reports are matched again, expired receipts ended and the event outbox "
     "published (at once again while a sweep hits receipts.sweep_batch)."},
    {"receipts.sweep_batch", NUDGEL_CONF_INT, "500", 1, 1000, NULL, 0,
     "Rows one sweep statement handles at most."},
    {"receipts.drain_timeout_ms", NUDGEL_CONF_INT, "20000", 0, 600000, NULL, 0,
     "On SIGTERM, how long to finish the reports in flight."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

/* The live settings, checked before any is applied. */
static nudgel_err_t settings_read(updater_t *u, const nudgel_conf_t *conf, char *errstr,
                                  size_t errstr_size)
{
    nudgel_dlr_expiry_t expiry;
    char why[256];
    if (nudgel_dlr_expiry_parse(nudgel_conf_get_int(conf, "receipts.expiry_s"),
                                nudgel_conf_get_str(conf, "receipts.expiry_by_gateway"), &expiry,
                                why, sizeof(why)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "receipts.expiry_by_gateway: %s", why);
        return NUDGEL_ERR_CONFIG;
    }
    u->expiry = expiry;
    u->max_in_flight = (size_t)nudgel_conf_get_int(conf, "receipts.max_in_flight");
    u->batch_max = (size_t)nudgel_conf_get_int(conf, "receipts.batch_max");
    u->pending_ttl_s = nudgel_conf_get_int(conf, "receipts.pending_ttl_s");
    u->sweep_every_us = nudgel_conf_get_int(conf, "receipts.sweep_interval_ms") * 1000;
    u->sweep_batch = (int)nudgel_conf_get_int(conf, "receipts.sweep_batch");
    return NUDGEL_OK;
}

static void on_fatal(void *opaque, const char *why)
{
    updater_t *u = opaque;
    nudgel_worker_fatal(u->w, "%s", why);
}

static nudgel_err_t metrics_register(updater_t *u, nudgel_metrics_t *m)
{
    u->m_reports = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_receipts_reports_total",
        "Carrier reports by outcome (applied, unchanged, refused, intermediate, pending, "
        "unmatched, malformed, failed).",
        "outcome", NULL, 0);
    u->m_events = nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "nudgel_receipts_events_total",
                                          "Status events published, by status.", "status", NULL, 0);
    u->m_in_flight = nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "nudgel_receipts_in_flight",
                                             "Reports in flight.", NULL, NULL, 0);
    u->m_pending = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_receipts_pending_total",
        "Kept reports leaving the pending table: applied once sent, or unmatched after their TTL.",
        "outcome", NULL, 0);
    u->m_expired =
        nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "nudgel_receipts_expired_total",
                                "Receipts ended expired with no final report.", NULL, NULL, 0);
    u->m_statements = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_receipts_statements_total",
        "Postgres statements by outcome (ok, failed, lost).", "outcome", NULL, 0);
    u->m_pending_now = nudgel_metrics_register(
        m, NUDGEL_METRIC_GAUGE, "nudgel_receipts_pending_reports",
        "Reports kept waiting for their message's sent outcome, as a pending sweep saw them "
        "(counted every 10 s, up to 1e+06).",
        NULL, NULL, 0);
    if (u->m_pending_now)
        nudgel_metric_set(u->m_pending_now, NULL, 0);
    return u->m_reports && u->m_events && u->m_in_flight && u->m_pending && u->m_expired &&
                   u->m_statements && u->m_pending_now
               ? NUDGEL_OK
               : NUDGEL_ERR_NO_MEMORY;
}

static nudgel_err_t pg_open(updater_t *u, const nudgel_conf_t *conf, const char *name,
                            nudgel_pgconn_state_fn *on_state, nudgel_pgconn_t **out, char *errstr,
                            size_t errstr_size)
{
    nudgel_pgconn_options_t popts = {
        .dsn = nudgel_conf_get_str(conf, "pg.dsn"),
        .application_name = PROGRAM,
        .name = name,
        .connect_timeout_ms = nudgel_conf_get_int(conf, "pg.connect_timeout_s") * 1000,
        .on_state = on_state,
        .opaque = u,
        .statement_seconds = nudgel_fleet_metrics_pg_statements(nudgel_worker_fleet_metrics(u->w)),
    };
    return nudgel_pgconn_new(u->loop, &popts, out, errstr, errstr_size);
}

static nudgel_err_t receipts_setup(nudgel_worker_t *w, void **ctx, char *errstr, size_t errstr_size)
{
    const nudgel_conf_t *conf = nudgel_worker_conf(w);
    nudgel_readiness_t *ready = nudgel_worker_readiness(w);
    nudgel_err_t err;
    updater_t *u = calloc(1, sizeof(*u));
    if (!u)
        goto no_memory;
    *ctx = u;
    u->w = w;
    u->loop = nudgel_worker_loop(w);
    u->gauge_in_flight = -1;
    u->pg_log = (nudgel_log_ratelimit_t)NUDGEL_LOG_RATELIMIT_INIT("postgres errors", 5, 10000);
    if ((err = settings_read(u, conf, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    nudgel_fleet_metrics_reasons(
        nudgel_worker_fleet_metrics(w),
        (const char *[]){UPDATER_FAIL_MALFORMED, UPDATER_FAIL_APPLY_FAILED, NULL});
    u->topic_dlr = nudgel_worker_topic(w, NUDGEL_TOPIC_CARRIER_DLR);
    u->topic_status = nudgel_worker_topic(w, NUDGEL_TOPIC_STATUS);
    u->topic_dlq = nudgel_worker_topic(w, NUDGEL_TOPIC_MESSAGES_DLQ);
    if (!u->topic_dlr || !u->topic_status || !u->topic_dlq ||
        metrics_register(u, nudgel_worker_metrics(w)) != NUDGEL_OK ||
        !(u->ready_kafka = nudgel_readiness_add(ready, "kafka", "no statistics yet")) ||
        !(u->ready_apply = nudgel_readiness_add(ready, "postgres:apply", "connecting")) ||
        !(u->ready_sweeps = nudgel_readiness_add(ready, "postgres:sweeps", "connecting")) ||
        apply_new(u) != NUDGEL_OK || sweeps_new(u) != NUDGEL_OK)
        goto no_memory;
    const char *dsn = nudgel_conf_get_str(conf, "pg.dsn");
    if (!dsn || !*dsn) {
        snprintf(errstr, errstr_size, "pg.dsn: not set (NUDGEL_PG_DSN)");
        return NUDGEL_ERR_CONFIG;
    }
    if (!(u->publisher =
              nudgel_publisher_new(conf, nudgel_lifecycle_published, NULL, errstr, errstr_size)) ||
        !(u->outbox_pub = nudgel_publisher_new(conf, outbox_on_ack, u, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    if ((err = nudgel_publisher_attach(u->publisher, u->loop)) != NUDGEL_OK ||
        (err = nudgel_publisher_attach(u->outbox_pub, u->loop)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "a publisher cannot go on the event loop");
        return err;
    }
    nudgel_lifecycle_opts_t lopts = {.publisher = u->publisher,
                                     .status_topic = u->topic_status,
                                     .dlq_topic = u->topic_dlq,
                                     .finished = intake_job_finished,
                                     .fatal = on_fatal,
                                     .opaque = u,
                                     .metrics = nudgel_worker_fleet_metrics(w)};
    if (!(u->lc = nudgel_lifecycle_new(&lopts)))
        goto no_memory;
    const char *topics[1] = {u->topic_dlr};
    if (!(u->consumer = nudgel_consumer_new(conf, nudgel_conf_get_str(conf, "receipts.group_id"),
                                            topics, 1, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    nudgel_consumer_report_to(u->consumer, nudgel_worker_fleet_metrics(w), topics, 1);
    nudgel_consumer_pause(u->consumer, NUDGEL_PAUSE_POSTGRES); /* until "apply" is up */
    if ((err = pg_open(u, conf, "apply", apply_on_pg_state, &u->apply_pg, errstr, errstr_size)) !=
            NUDGEL_OK ||
        (err = pg_open(u, conf, "sweeps", sweeps_on_pg_state, &u->sweep_pg, errstr, errstr_size)) !=
            NUDGEL_OK)
        return err;
    if ((err = nudgel_consumer_attach(u->consumer, u->loop, intake_on_ready, u)) != NUDGEL_OK ||
        (err = nudgel_loop_add_hook(u->loop, intake_turn, u)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "the consumer cannot go on the event loop: %s",
                 nudgel_strerror(err));
        return err;
    }
    nudgel_log_info("applying %s to receipts, events to %s (expiry %llds, %zu gateway "
                    "window(s))",
                    u->topic_dlr, u->topic_status, (long long)u->expiry.default_s, u->expiry.count);
    return NUDGEL_OK;
no_memory:
    snprintf(errstr, errstr_size, "out of memory");
    return NUDGEL_ERR_NO_MEMORY;
}

static void receipts_drain(void *ctx)
{
    intake_drain(ctx);
}

static size_t receipts_in_flight(void *ctx)
{
    const updater_t *u = ctx;
    return nudgel_lifecycle_live(u->lc) + outbox_in_flight(u);
}

static nudgel_err_t receipts_reload(void *ctx, const nudgel_conf_t *next, char *errstr,
                                    size_t errstr_size)
{
    updater_t *u = ctx;
    nudgel_err_t err = settings_read(u, next, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    if (u->full && nudgel_lifecycle_live(u->lc) < u->max_in_flight / 2) {
        u->full = false;
        nudgel_consumer_resume(u->consumer, NUDGEL_PAUSE_IN_FLIGHT);
    }
    u->pump_wanted = true;
    nudgel_loop_again(u->loop);
    return NUDGEL_OK;
}

static void receipts_teardown(void *ctx, bool drained)
{
    updater_t *u = ctx;
    if (!u)
        return;
    if (!drained && nudgel_lifecycle_live(u->lc))
        nudgel_log_warn("stopping with %zu report(s) unfinished; they come again",
                        nudgel_lifecycle_live(u->lc));
    nudgel_publisher_destroy(u->publisher, PUBLISH_WAIT_MS);
    nudgel_publisher_destroy(u->outbox_pub, PUBLISH_WAIT_MS);
    nudgel_pgconn_free(u->apply_pg);
    nudgel_pgconn_free(u->sweep_pg);
    intake_abandon_all(u);
    nudgel_consumer_close(u->consumer);
    nudgel_lifecycle_free(u->lc);
    apply_free(u);
    sweeps_free(u);
    free(u);
}

static const nudgel_conf_entry_t *const receipts_tables[] = {nudgel_consumer_conf, receipts_table,
                                                             NULL};

/* --check-config and every start: the per-gateway expiry list reads. */
static void receipts_check(const nudgel_conf_t *conf, nudgel_conf_check_t *check)
{
    updater_t *scratch = calloc(1, sizeof(*scratch)); /* large: not on the stack */
    char errstr[512];
    if (!scratch)
        nudgel_conf_check_add(check, NUDGEL_ERR_NO_MEMORY, "out of memory");
    else if (settings_read(scratch, conf, errstr, sizeof(errstr)) != NUDGEL_OK)
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG, "%s", errstr);
    free(scratch);
}

static const nudgel_role_t receipts_role = {
    .program = PROGRAM,
    .summary = "Carrier delivery reports (nudgel.carrier-dlr.v1) to receipts: forward-only "
               "(delivered, undelivered, expired), a history row per transition and a report row "
               "per report, reports that beat their sent outcome kept and applied when it lands, "
               "receipts with no final report expired after a window; status events "
               "ai.nudgel.message.delivered|undelivered|expired.",
    .tables = receipts_tables,
    .metrics_port_default = 9467,
    .drain_timeout_key = "receipts.drain_timeout_ms",
    .uses_postgres = true,
    .check = receipts_check,
    .setup = receipts_setup,
    .drain = receipts_drain,
    .in_flight = receipts_in_flight,
    .reload = receipts_reload,
    .teardown = receipts_teardown,
};

int main(int argc, char **argv)
{
    return nudgel_worker_main(&receipts_role, argc, argv);
}
