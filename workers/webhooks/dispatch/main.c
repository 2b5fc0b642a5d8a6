/*
 * nudgel-dispatch — status events to webhook jobs: the configuration, the
 * role table and the wiring on the shared runtime (nudgel/worker.h). The
 * stages are intake.c, endpoints.c and fanout.c; dispatch.h tells an
 * event's path through them.
 *
 * On the loop: the consumer of nudgel.delivery-status.v1 (its on_ready polls
 * intake), libnudgel's producer of webhook jobs (its event fd serves the
 * delivery reports, then the fan-out backlog), the DLQ publisher (its own fd,
 * acks to the lifecycle), the "lookups" Postgres connection (endpoint
 * lists), intake's turn hook. Readiness: "kafka" (the consumer's health) and
 * "postgres:lookups".
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "nudgel/log.h"
#include "nudgel/topics.h"

#define PROGRAM         "nudgel-dispatch"
#define DLQ_FLUSH_MS    10000
#define PRODUCER_LINGER "5"

static const nudgel_conf_entry_t dispatch_table[] = {
    {"dispatch.group_id", NUDGEL_CONF_STRING, "nudgel-dispatch", 0, 0, NULL, 0,
     "Kafka consumer group of the dispatchers."},
    {"dispatch.endpoint_refresh_ms", NUDGEL_CONF_INT, "3000", 0, 3600000, NULL, 0,
     "How long a tenant's endpoint list is trusted before it is read again; a new, changed or "
     "disabled endpoint is seen within this time."},
    {"dispatch.endpoint_cache_max", NUDGEL_CONF_INT, "10000", 1, 1000000, NULL, 0,
     "Tenants whose endpoint lists are cached at most; beyond it the least recently used one is "
     "dropped (a tenant whose list is being read, or whose events wait for it, stays until they "
     "are done)."},
    {"dispatch.max_in_flight", NUDGEL_CONF_INT, "5000", 1, 100000, NULL, 0,
     "Status events in flight (jobs not yet acknowledged); above it every partition pauses."},
    {"dispatch.drain_timeout_ms", NUDGEL_CONF_INT, "20000", 0, 600000, NULL, 0,
     "On SIGTERM, how long to wait for the acknowledgements of jobs in flight."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

static void settings_read(dispatcher_t *d, const nudgel_conf_t *conf)
{
    d->refresh_us = nudgel_conf_get_int(conf, "dispatch.endpoint_refresh_ms") * 1000;
    d->max_in_flight = (size_t)nudgel_conf_get_int(conf, "dispatch.max_in_flight");
    d->cache_max = (size_t)nudgel_conf_get_int(conf, "dispatch.endpoint_cache_max");
}

static void on_fatal(void *opaque, const char *why)
{
    dispatcher_t *d = opaque;
    nudgel_worker_fatal(d->w, "%s", why);
}

static int set_producer_prop(const char *prop, const char *value, void *opaque)
{
    char errstr[256];
    if (nudgel_producer_conf_set(opaque, prop, value, errstr, sizeof(errstr)) != NUDGEL_OK)
        nudgel_log_warn("kafka.%s not applied to the job producer: %s", prop, errstr);
    return 0;
}

/*
 * libnudgel's producer of webhook jobs: kafka.* as the consumer's, the
 * namespaced topic, never waiting inside the loop for queue room, and its
 * delivery reports served from the loop through its event fd.
 */
static nudgel_err_t producer_open(dispatcher_t *d, const nudgel_conf_t *conf, char *errstr,
                                  size_t errstr_size)
{
    nudgel_producer_conf_t *pc = nudgel_producer_conf_new();
    if (!pc) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    const char *bootstrap = nudgel_conf_get_str(conf, "kafka.bootstrap");
    const char *client_id = nudgel_conf_get_str(conf, "kafka.client_id");
    if ((bootstrap && nudgel_producer_conf_set(pc, "bootstrap.servers", bootstrap, errstr,
                                               errstr_size) != NUDGEL_OK) ||
        (client_id &&
         nudgel_producer_conf_set(pc, "client.id", client_id, errstr, errstr_size) != NUDGEL_OK) ||
        nudgel_producer_conf_set(pc, "webhooks_topic", d->topic_webhooks, errstr, errstr_size) !=
            NUDGEL_OK ||
        nudgel_producer_conf_set(pc, "linger.ms", PRODUCER_LINGER, errstr, errstr_size) !=
            NUDGEL_OK ||
        nudgel_producer_conf_set(pc, "queue_full_wait_ms", "0", errstr, errstr_size) != NUDGEL_OK) {
        nudgel_producer_conf_destroy(pc);
        return NUDGEL_ERR_CONFIG;
    }
    nudgel_conf_kafka_foreach(conf, set_producer_prop, pc);
    nudgel_producer_conf_set_delivery_cb(pc, fanout_on_ack, d);
    if (!(d->producer = nudgel_producer_new(pc, errstr, errstr_size))) {
        nudgel_producer_conf_destroy(pc);
        return NUDGEL_ERR_CONFIG;
    }
    if ((d->producer_fd = nudgel_producer_event_fd(d->producer)) < 0 ||
        nudgel_loop_watch(d->loop, d->producer_fd, NUDGEL_LOOP_READ, fanout_on_producer, d) !=
            NUDGEL_OK) {
        d->producer_fd = -1;
        snprintf(errstr, errstr_size, "the job producer cannot go on the event loop");
        return NUDGEL_ERR_IO;
    }
    return NUDGEL_OK;
}

/* The job producer's queue, for nudgel_kafka_producer_queue_messages (rendering thread). */
static int producer_queue(void *opaque)
{
    const dispatcher_t *d = opaque;
    return d->producer ? nudgel_producer_in_flight(d->producer) : 0;
}

static nudgel_err_t metrics_register(dispatcher_t *d, nudgel_metrics_t *m)
{
    d->m_events = nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "nudgel_dispatch_events_total",
                                          "Status events by outcome.", "outcome", NULL, 0);
    d->m_jobs = nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "nudgel_dispatch_jobs_total",
                                        "Webhook jobs by outcome.", "outcome", NULL, 0);
    d->m_in_flight = nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "nudgel_dispatch_in_flight",
                                             "Status events in flight.", NULL, NULL, 0);
    d->m_cache_tenants =
        nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "nudgel_dispatch_endpoint_cache_tenants",
                                "Tenants whose endpoint lists are cached.", NULL, NULL, 0);
    d->m_cache_evictions = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_dispatch_endpoint_cache_evictions_total",
        "Tenants dropped from the endpoint cache (dispatch.endpoint_cache_max).", NULL, NULL, 0);
    d->m_lookups = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_dispatch_endpoint_lookups_total",
        "Statements reading endpoint lists, by outcome (ok, failed, lost).", "outcome", NULL, 0);
    /* Every known series at zero from start-up. */
    static const char *const events[] = {"dispatched", "no_endpoint", "dead_lettered",
                                         "malformed",  "skipped",     NULL};
    static const char *const jobs[] = {"produced", "failed", "refused", NULL};
    static const char *const lookups[] = {"ok", "failed", "lost", NULL};
    for (size_t i = 0; events[i]; i++)
        nudgel_metric_touch(d->m_events, events[i]);
    for (size_t i = 0; jobs[i]; i++)
        nudgel_metric_touch(d->m_jobs, jobs[i]);
    for (size_t i = 0; lookups[i]; i++)
        nudgel_metric_touch(d->m_lookups, lookups[i]);
    nudgel_metric_set(d->m_cache_tenants, NULL, 0);
    nudgel_metric_touch(d->m_cache_evictions, NULL);
    return d->m_events && d->m_jobs && d->m_in_flight && d->m_cache_tenants &&
                   d->m_cache_evictions && d->m_lookups
               ? NUDGEL_OK
               : NUDGEL_ERR_NO_MEMORY;
}

static nudgel_err_t dispatch_setup(nudgel_worker_t *w, void **ctx, char *errstr, size_t errstr_size)
{
    const nudgel_conf_t *conf = nudgel_worker_conf(w);
    nudgel_readiness_t *ready = nudgel_worker_readiness(w);
    nudgel_fleet_metrics_t *fm = nudgel_worker_fleet_metrics(w);
    nudgel_err_t err;
    dispatcher_t *d = calloc(1, sizeof(*d));
    if (!d)
        goto no_memory;
    *ctx = d; /* teardown frees whatever is built, also after a failure */
    d->w = w;
    d->loop = nudgel_worker_loop(w);
    d->producer_fd = -1;
    d->gauge_in_flight = -1;
    settings_read(d, conf);
    d->topic_status = nudgel_worker_topic(w, NUDGEL_TOPIC_STATUS);
    d->topic_webhooks = nudgel_worker_topic(w, NUDGEL_TOPIC_WEBHOOKS);
    d->topic_dlq = nudgel_worker_topic(w, NUDGEL_TOPIC_WEBHOOKS_DLQ);
    if (!d->topic_status || !d->topic_webhooks || !d->topic_dlq ||
        metrics_register(d, nudgel_worker_metrics(w)) != NUDGEL_OK ||
        !(d->ready_kafka = nudgel_readiness_add(ready, "kafka", "no statistics yet")) ||
        !(d->ready_pg = nudgel_readiness_add(ready, "postgres:lookups", "connecting")) ||
        endpoints_new(d) != NUDGEL_OK)
        goto no_memory;

    const char *dsn = nudgel_conf_get_str(conf, "pg.dsn");
    if (!dsn || !*dsn) {
        snprintf(errstr, errstr_size, "pg.dsn: not set (NUDGEL_PG_DSN)");
        return NUDGEL_ERR_CONFIG;
    }
    if ((err = producer_open(d, conf, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    nudgel_fleet_metrics_watch_queue(fm, producer_queue, d);
    nudgel_fleet_metrics_reasons(fm, dispatch_failure_reasons);
    if (!(d->dlq =
              nudgel_publisher_new(conf, nudgel_lifecycle_published, NULL, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    if ((err = nudgel_publisher_attach(d->dlq, d->loop)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "the DLQ publisher cannot go on the event loop");
        return err;
    }
    nudgel_lifecycle_opts_t lopts = {.publisher = d->dlq,
                                     .status_topic = d->topic_status,
                                     .dlq_topic = d->topic_dlq,
                                     .finished = intake_event_finished,
                                     .fatal = on_fatal,
                                     .opaque = d,
                                     .metrics = fm};
    if (!(d->lc = nudgel_lifecycle_new(&lopts)))
        goto no_memory;

    const char *topics[1] = {d->topic_status};
    if (!(d->consumer = nudgel_consumer_new(conf, nudgel_conf_get_str(conf, "dispatch.group_id"),
                                            topics, 1, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    nudgel_consumer_report_to(d->consumer, fm, topics, 1);
    /* Nothing is taken in before the endpoint lists can be read. */
    nudgel_consumer_pause(d->consumer, NUDGEL_PAUSE_POSTGRES);
    nudgel_pgconn_options_t popts = {
        .dsn = dsn,
        .application_name = PROGRAM,
        .name = "lookups",
        .connect_timeout_ms = nudgel_conf_get_int(conf, "pg.connect_timeout_s") * 1000,
        .on_state = endpoints_on_pg_state,
        .opaque = d,
        .statement_seconds = nudgel_fleet_metrics_pg_statements(fm),
    };
    nudgel_metric_touch(popts.statement_seconds, popts.name); /* at zero from start-up */
    if ((err = nudgel_pgconn_new(d->loop, &popts, &d->lookups, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    if ((err = nudgel_consumer_attach(d->consumer, d->loop, intake_on_ready, d)) != NUDGEL_OK ||
        (err = nudgel_loop_add_hook(d->loop, intake_turn, d)) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "the consumer cannot go on the event loop: %s",
                 nudgel_strerror(err));
        return err;
    }
    nudgel_log_info("dispatching %s → %s", d->topic_status, d->topic_webhooks);
    return NUDGEL_OK;
no_memory:
    snprintf(errstr, errstr_size, "out of memory");
    return NUDGEL_ERR_NO_MEMORY;
}

static void dispatch_drain(void *ctx)
{
    intake_drain(ctx);
}

static size_t dispatch_in_flight(void *ctx)
{
    const dispatcher_t *d = ctx;
    return nudgel_lifecycle_live(d->lc);
}

static nudgel_err_t dispatch_reload(void *ctx, const nudgel_conf_t *next, char *errstr,
                                    size_t errstr_size)
{
    dispatcher_t *d = ctx;
    (void)errstr;
    (void)errstr_size;
    settings_read(d, next);
    endpoints_trim(d);
    if (d->full && nudgel_lifecycle_live(d->lc) < d->max_in_flight / 2) {
        d->full = false;
        nudgel_consumer_resume(d->consumer, NUDGEL_PAUSE_IN_FLIGHT);
    }
    d->pump_wanted = true; /* a raised cap: poll again now */
    nudgel_loop_again(d->loop);
    return NUDGEL_OK;
}

/*
 * Acknowledgements first (the producers' flushes finish what they can),
 * then every event still alive is let go of (nothing stored: it comes
 * again), then the consumer leaves its group.
 */
static void dispatch_teardown(void *ctx, bool drained)
{
    dispatcher_t *d = ctx;
    if (!d)
        return;
    if (!drained && nudgel_lifecycle_live(d->lc))
        nudgel_log_warn("stopping with %zu status event(s) unfinished; they come again",
                        nudgel_lifecycle_live(d->lc));
    if (d->producer_fd >= 0)
        nudgel_loop_unwatch(d->loop, d->producer_fd);
    nudgel_producer_destroy(d->producer);
    nudgel_publisher_destroy(d->dlq, DLQ_FLUSH_MS);
    nudgel_pgconn_free(d->lookups);
    endpoints_free(d);
    d->backlog_head = d->backlog_tail = NULL; /* those events are abandoned below */
    intake_abandon_all(d);
    nudgel_consumer_close(d->consumer);
    nudgel_lifecycle_free(d->lc);
    free(d);
}

static const nudgel_conf_entry_t *const dispatch_tables[] = {nudgel_consumer_conf, dispatch_table,
                                                             NULL};

static const nudgel_role_t dispatch_role = {
    .program = PROGRAM,
    .summary =
        "Status events (nudgel.delivery-status.v1) to webhook jobs (nudgel.webhooks.v1): one "
        "job per enabled endpoint of the tenant whose event_types match.",
    .tables = dispatch_tables,
    .metrics_port_default = 9466,
    .drain_timeout_key = "dispatch.drain_timeout_ms",
    .uses_postgres = true,
    .setup = dispatch_setup,
    .drain = dispatch_drain,
    .in_flight = dispatch_in_flight,
    .reload = dispatch_reload,
    .teardown = dispatch_teardown,
};

int main(int argc, char **argv)
{
    return nudgel_worker_main(&dispatch_role, argc, argv);
}
