/*
 * toy_role.c — nudgel-test-toy-role: the smallest role on the worker
 * skeleton, for test_worker.c. It holds toy.in_flight units of work that it
 * finishes one per toy.drain_tick_ms once drained; logs a debug line every
 * toy.tick_ms (to see log.level change on SIGHUP); logs what a reload gave
 * it; and can stall the loop, stop fatally or fail its setup on request.
 * Everything it does is logged so the test can read it from stderr.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nudgel/log.h"
#include "nudgel/topics.h"
#include "nudgel/worker.h"

static const nudgel_conf_entry_t toy_table[] = {
    {"toy.label", NUDGEL_CONF_STRING, "default", 0, 0, NULL, 0, "Logged on reload."},
    {"toy.in_flight", NUDGEL_CONF_INT, "3", 0, 1000, NULL, 0, "Work in hand until the drain."},
    {"toy.drain_tick_ms", NUDGEL_CONF_INT, "150", 1, 3600000, NULL, 0,
     "One unit finishes per tick once draining."},
    {"toy.drain_timeout_ms", NUDGEL_CONF_INT, "5000", 0, 600000, NULL, 0, "The drain deadline."},
    {"toy.tick_ms", NUDGEL_CONF_INT, "50", 1, 3600000, NULL, 0, "A debug line this often."},
    {"toy.stall_ms", NUDGEL_CONF_INT, "0", 0, 60000, NULL, 0,
     "Block the loop this long, 200 ms after start."},
    {"toy.fatal_after_ms", NUDGEL_CONF_INT, "0", 0, 60000, NULL, 0,
     "Call nudgel_worker_fatal() after this long; 0 never."},
    {"toy.setup_error", NUDGEL_CONF_ENUM, "none", 0, 0, "none|config|retriable", 0,
     "Fail the setup this way."},
    {"toy.refuse_reload", NUDGEL_CONF_BOOL, "false", 0, 0, NULL, 0, "reload() says no."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct toy {
    nudgel_worker_t *w;
    nudgel_timer_t *tick, *drain_tick, *stall, *fatal;
    long long in_flight, drain_tick_us, tick_us, stall_ms;
} toy_t;

static void on_tick(void *opaque)
{
    toy_t *t = opaque;
    nudgel_log_debug("toy tick");
    nudgel_timer_arm_in(t->tick, t->tick_us);
}

static void on_drain_tick(void *opaque)
{
    toy_t *t = opaque;
    if (t->in_flight > 0)
        t->in_flight--;
    nudgel_log_info("toy finished one; %lld left", t->in_flight);
    if (t->in_flight > 0)
        nudgel_timer_arm_in(t->drain_tick, t->drain_tick_us);
}

static void on_stall(void *opaque)
{
    toy_t *t = opaque;
    nudgel_log_info("toy stalls the loop for %lld ms", t->stall_ms);
    usleep((useconds_t)(t->stall_ms * 1000));
    nudgel_log_info("toy stall over");
}

static void on_fatal(void *opaque)
{
    toy_t *t = opaque;
    nudgel_worker_fatal(t->w, "toy: asked to stop (toy.fatal_after_ms)");
}

static nudgel_err_t toy_setup(nudgel_worker_t *w, void **ctx, char *errstr, size_t errstr_size)
{
    const nudgel_conf_t *conf = nudgel_worker_conf(w);
    nudgel_loop_t *loop = nudgel_worker_loop(w);
    toy_t *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    *ctx = t; /* teardown frees it, even after a failed setup */
    t->w = w;
    const char *fail = nudgel_conf_get_str(conf, "toy.setup_error");
    if (strcmp(fail, "none") != 0) {
        snprintf(errstr, errstr_size, "toy.setup_error: asked to fail (%s)", fail);
        return strcmp(fail, "retriable") == 0 ? NUDGEL_ERR_KAFKA_UNREACHABLE : NUDGEL_ERR_CONFIG;
    }
    t->in_flight = nudgel_conf_get_int(conf, "toy.in_flight");
    t->drain_tick_us = nudgel_conf_get_int(conf, "toy.drain_tick_ms") * 1000;
    t->tick_us = nudgel_conf_get_int(conf, "toy.tick_ms") * 1000;
    t->stall_ms = nudgel_conf_get_int(conf, "toy.stall_ms");
    if (!(t->tick = nudgel_timer_new(loop, on_tick, t)) ||
        !(t->drain_tick = nudgel_timer_new(loop, on_drain_tick, t)) ||
        !(t->stall = nudgel_timer_new(loop, on_stall, t)) ||
        !(t->fatal = nudgel_timer_new(loop, on_fatal, t))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    nudgel_timer_arm_in(t->tick, t->tick_us);
    if (t->stall_ms > 0)
        nudgel_timer_arm_in(t->stall, 200000);
    long long fatal_ms = nudgel_conf_get_int(conf, "toy.fatal_after_ms");
    if (fatal_ms > 0)
        nudgel_timer_arm_in(t->fatal, fatal_ms * 1000);

    nudgel_readiness_t *r = nudgel_worker_readiness(w);
    nudgel_ready_ok(nudgel_readiness_add(r, "toy", NULL));
    nudgel_ready_not_applicable(nudgel_readiness_add(r, "partitions", NULL), "idle by design");
    nudgel_metric_t *m =
        nudgel_metrics_register(nudgel_worker_metrics(w), NUDGEL_METRIC_GAUGE,
                                "nudgel_toy_in_flight", "Toy work.", NULL, NULL, 0);
    nudgel_metric_set(m, NULL, (double)t->in_flight);
    const char *topic = nudgel_worker_topic(w, NUDGEL_TOPIC_MESSAGES);
    nudgel_log_info("toy topic %s (same pointer again: %s)", topic,
                    topic == nudgel_worker_topic(w, NUDGEL_TOPIC_MESSAGES) ? "yes" : "no");
    return NUDGEL_OK;
}

static void toy_drain(void *ctx)
{
    toy_t *t = ctx;
    nudgel_log_info("toy drain: %lld in flight", t->in_flight);
    if (t->in_flight > 0)
        nudgel_timer_arm_in(t->drain_tick, t->drain_tick_us);
}

static size_t toy_in_flight(void *ctx)
{
    toy_t *t = ctx;
    return (size_t)t->in_flight;
}

static nudgel_err_t toy_reload(void *ctx, const nudgel_conf_t *next, char *errstr,
                               size_t errstr_size)
{
    (void)ctx;
    if (nudgel_conf_get_bool(next, "toy.refuse_reload")) {
        snprintf(errstr, errstr_size, "toy.refuse_reload: the toy says no");
        return NUDGEL_ERR_CONFIG;
    }
    nudgel_log_info("toy reload: label=%s in_flight=%lld", nudgel_conf_get_str(next, "toy.label"),
                    nudgel_conf_get_int(next, "toy.in_flight"));
    return NUDGEL_OK;
}

static void toy_teardown(void *ctx, bool drained)
{
    toy_t *t = ctx;
    nudgel_log_info("toy teardown drained=%s", drained ? "true" : "false");
    if (!t)
        return;
    nudgel_timer_free(t->tick);
    nudgel_timer_free(t->drain_tick);
    nudgel_timer_free(t->stall);
    nudgel_timer_free(t->fatal);
    free(t);
}

static const nudgel_conf_entry_t *const toy_tables[] = {toy_table, NULL};

static const nudgel_role_t toy_role = {
    .program = "nudgel-test-toy-role",
    .summary = "A toy role for the skeleton's tests: work in hand, drained one unit per tick.",
    .tables = toy_tables,
    .metrics_port_default = 9499,
    .drain_timeout_key = "toy.drain_timeout_ms",
    .setup = toy_setup,
    .drain = toy_drain,
    .in_flight = toy_in_flight,
    .reload = toy_reload,
    .teardown = toy_teardown,
};

int main(int argc, char **argv)
{
    return nudgel_worker_main(&toy_role, argc, argv);
}
