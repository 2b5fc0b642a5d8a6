/*
 * nudgel-dlr — carrier delivery reports in, normalised reports on
 * nudgel.carrier-dlr.v1 out: the configuration, the metrics, the role
 * table and the wiring on the shared runtime (nudgel/worker.h). dlr.h tells
 * a callback's path through the stages (http.c, parse*.c, produce.c).
 *
 * On the loop: libmicrohttpd's epoll fd and timer (the callbacks), the
 * producer's wake-up fd (delivery reports, statistics), a turn hook that
 * runs MHD after a connection was resumed. Readiness: "kafka" (a broker
 * up). No consumer and no Postgres: the role only receives and produces.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlr.h"
#include "nudgel/log.h"
#include "nudgel/topics.h"

#define PROGRAM          "nudgel-dlr"
#define PRODUCE_FLUSH_MS 5000

static const nudgel_conf_entry_t dlr_table[] = {
    {"dlr.gateways_file", NUDGEL_CONF_STRING, "config/gateways.example.json", 0, 0, NULL, 0,
     "The gateways file the messages worker sends with (messages.gateways_file); gateways with a "
     "\"dlr\" object take reports (token, basic credentials, source ranges; see README). Their "
     "API keys are not read."},
    {"dlr.listen_address", NUDGEL_CONF_STRING, "0.0.0.0", 0, 0, NULL, 0,
     "IPv4 address the callbacks are received on (carriers reach it through the ingress)."},
    {"dlr.port", NUDGEL_CONF_INT, "9480", 0, 65535, NULL, 0,
     "TCP port of POST /v1/dlr/<gateway>/<token>; 0 picks a free one (logged)."},
    {"dlr.max_body_bytes", NUDGEL_CONF_INT, "262144", 1024, 16777216, NULL, 0,
     "Largest callback body; a larger one is answered 413 (an Infobip callback of 100 reports "
     "is about 60 KiB)."},
    {"dlr.ack_timeout_ms", NUDGEL_CONF_INT, "4000", 100, 120000, NULL, 0,
     "How long a callback waits for Kafka to acknowledge its reports before it is answered 503 "
     "(the carrier sends it again); also the producer's message.timeout.ms unless kafka.* sets "
     "it. Keep it under the carriers' callback timeout."},
    {"dlr.max_requests", NUDGEL_CONF_INT, "10000", 1, 1000000, NULL, 0,
     "Callbacks in hand at once (waiting for Kafka); more are answered 503 at once."},
    {"dlr.connection_limit", NUDGEL_CONF_INT, "10000", 16, 1000000, NULL, 0,
     "Concurrent HTTP connections of the receiver."},
    {"dlr.idle_timeout_s", NUDGEL_CONF_INT, "30", 1, 3600, NULL, 0,
     "An idle keep-alive connection is closed after this many seconds."},
    {"dlr.drain_timeout_ms", NUDGEL_CONF_INT, "10000", 0, 600000, NULL, 0,
     "On SIGTERM, how long callbacks in hand may wait for Kafka (new ones are answered 503)."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

static void settings_read(receiver_t *rx, const nudgel_conf_t *conf)
{
    rx->max_body = (size_t)nudgel_conf_get_int(conf, "dlr.max_body_bytes");
    rx->ack_timeout_us = nudgel_conf_get_int(conf, "dlr.ack_timeout_ms") * 1000;
    rx->max_requests = (size_t)nudgel_conf_get_int(conf, "dlr.max_requests");
}

static nudgel_err_t metrics_register(receiver_t *rx, nudgel_metrics_t *m)
{
    rx->m_accepted = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_dlr_reports_accepted_total",
        "Reports Kafka acknowledged, answered 200, by gateway.", "gateway", NULL, 0);
    rx->m_unavailable = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_dlr_reports_unavailable_total",
        "Reports of callbacks answered 503 (Kafka did not take them all in time; the carrier "
        "sends them again), by gateway.",
        "gateway", NULL, 0);
    rx->m_malformed = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_dlr_requests_malformed_total",
        "Callbacks refused 400 (a body that does not read; nothing produced), by gateway.",
        "gateway", NULL, 0);
    rx->m_refused = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_dlr_requests_refused_total",
        "Callbacks refused before their body was read, by reason (not_found, source, token, "
        "basic, method, too_large, draining, busy).",
        "reason", NULL, 0);
    rx->m_secondary_token = nudgel_metrics_register(
        m, NUDGEL_METRIC_COUNTER, "nudgel_dlr_secondary_token_requests_total",
        "Callbacks admitted under the gateway's dlr secondary token (a rotation's other token), "
        "by gateway. Flat for longer than the carriers' report window: the secondary token can "
        "go.",
        "gateway", NULL, 0);
    rx->m_status =
        nudgel_metrics_register(m, NUDGEL_METRIC_COUNTER, "nudgel_dlr_reports_total",
                                "Reports produced, by normalised status.", "status", NULL, 0);
    rx->m_in_flight =
        nudgel_metrics_register(m, NUDGEL_METRIC_GAUGE, "nudgel_dlr_requests_in_flight",
                                "Callbacks in hand (waiting for Kafka).", NULL, NULL, 0);
    rx->m_by_gateway = nudgel_metrics_register_labels(
        m, NUDGEL_METRIC_COUNTER, "nudgel_dlr_reports_by_gateway_total",
        "Callbacks' reports by gateway and result: accepted (Kafka acknowledged them, answered "
        "200), unavailable (answered 503, the carrier sends them again); malformed counts "
        "callbacks refused 400 (their reports cannot be read).",
        (const char *[]){"gateway", "result", NULL}, NULL, 0);
    return rx->m_accepted && rx->m_unavailable && rx->m_malformed && rx->m_refused &&
                   rx->m_secondary_token && rx->m_status && rx->m_in_flight && rx->m_by_gateway
               ? NUDGEL_OK
               : NUDGEL_ERR_NO_MEMORY;
}

/* Every known label set at zero, so /metrics shows each series from start-up. */
static void metrics_touch(receiver_t *rx)
{
    static const char *const results[] = {DLR_RESULT_ACCEPTED, DLR_RESULT_UNAVAILABLE,
                                          DLR_RESULT_MALFORMED};
    static const char *const refusals[] = {"not_found", "source",    "token",    "basic",
                                           "method",    "too_large", "draining", "busy"};
    for (size_t i = 0; i < dlr_gateways_count(rx->gateways); i++) {
        const char *g = dlr_gateways_at(rx->gateways, i)->name;
        nudgel_metric_touch(rx->m_accepted, g);
        nudgel_metric_touch(rx->m_unavailable, g);
        nudgel_metric_touch(rx->m_malformed, g);
        nudgel_metric_touch(rx->m_secondary_token, g);
        for (size_t r = 0; r < sizeof(results) / sizeof(results[0]); r++)
            nudgel_metric_touch2(rx->m_by_gateway, g, results[r]);
    }
    for (size_t r = 0; r < sizeof(refusals) / sizeof(refusals[0]); r++)
        nudgel_metric_touch(rx->m_refused, refusals[r]);
    for (int s = 0; s < DLR_STATUS_COUNT; s++)
        nudgel_metric_touch(rx->m_status, dlr_status_name((dlr_status_t)s));
    nudgel_metric_set(rx->m_in_flight, NULL, 0);
}

/* The producer's queue, for nudgel_kafka_producer_queue_messages (rendering thread). */
static int producer_queue(void *opaque)
{
    const receiver_t *rx = opaque;
    return rx->rk ? rd_kafka_outq_len(rx->rk) : 0;
}

static nudgel_err_t dlr_setup(nudgel_worker_t *w, void **ctx, char *errstr, size_t errstr_size)
{
    const nudgel_conf_t *conf = nudgel_worker_conf(w);
    nudgel_err_t err;
    receiver_t *rx = calloc(1, sizeof(*rx));
    if (!rx) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    *ctx = rx; /* teardown frees whatever is built, also after a failure */
    rx->w = w;
    rx->loop = nudgel_worker_loop(w);
    rx->wake_fd = -1;
    rx->mhd_fd = -1;
    settings_read(rx, conf);
    if (!(rx->topic = nudgel_worker_topic(w, NUDGEL_TOPIC_CARRIER_DLR)) ||
        metrics_register(rx, nudgel_worker_metrics(w)) != NUDGEL_OK ||
        !(rx->ready_kafka =
              nudgel_readiness_add(nudgel_worker_readiness(w), "kafka", "no statistics yet"))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    const char *path = nudgel_conf_get_str(conf, "dlr.gateways_file");
    char inner[512];
    if ((err = dlr_gateways_load(path, &rx->gateways, inner, sizeof(inner))) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "dlr.gateways_file: %s", inner);
        return NUDGEL_ERR_CONFIG;
    }
    metrics_touch(rx);
    if ((err = produce_open(rx, conf, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    nudgel_fleet_metrics_watch_queue(nudgel_worker_fleet_metrics(w), producer_queue, rx);
    if ((err = http_start(rx, nudgel_conf_get_str(conf, "dlr.listen_address"),
                          (int)nudgel_conf_get_int(conf, "dlr.port"),
                          (int)nudgel_conf_get_int(conf, "dlr.connection_limit"),
                          (int)nudgel_conf_get_int(conf, "dlr.idle_timeout_s"), errstr,
                          errstr_size)) != NUDGEL_OK)
        return err;
    for (size_t i = 0; i < dlr_gateways_count(rx->gateways); i++) {
        const dlr_gateway_t *g = dlr_gateways_at(rx->gateways, i);
        nudgel_log_info("gateway %s (%s) takes reports%s%s", g->name,
                        nudgel_gateway_dialect_name(g->dialect),
                        g->userpass ? ", basic credentials required" : "",
                        g->ncidrs ? ", from its allowed sources only" : ", from any source");
    }
    nudgel_log_info("delivery reports → %s", rx->topic);
    return NUDGEL_OK;
}

static void dlr_drain(void *ctx)
{
    http_drain(ctx);
}

static size_t dlr_in_flight(void *ctx)
{
    const receiver_t *rx = ctx;
    return rx->live_count;
}

static nudgel_err_t dlr_reload(void *ctx, const nudgel_conf_t *next, char *errstr,
                               size_t errstr_size)
{
    (void)errstr;
    (void)errstr_size;
    settings_read(ctx, next);
    nudgel_log_info("SIGHUP: dlr.max_body_bytes, dlr.ack_timeout_ms and dlr.max_requests "
                    "applied; the gateways file and the listener wait for a restart");
    return NUDGEL_OK;
}

/* Every request in hand is answered (503 unless Kafka took it), then the producer flushes. */
static void dlr_teardown(void *ctx, bool drained)
{
    receiver_t *rx = ctx;
    if (!rx)
        return;
    if (!drained && rx->live_count)
        nudgel_log_warn("stopping with %zu callback(s) in hand; answered 503, the carriers send "
                        "them again",
                        rx->live_count);
    http_stop(rx);
    produce_close(rx, PRODUCE_FLUSH_MS);
    http_forget(rx);
    dlr_gateways_free(rx->gateways);
    free(rx);
}

/* --check-config and every start: the gateways' "dlr" objects, their tokens and credentials. */
static void dlr_check(const nudgel_conf_t *conf, nudgel_conf_check_t *check)
{
    const char *path = nudgel_conf_get_str(conf, "dlr.gateways_file");
    dlr_gateways_t *gateways = NULL;
    char inner[512];
    nudgel_conf_check_env_refs_json(check, path);
    if (dlr_gateways_load(path, &gateways, inner, sizeof(inner)) != NUDGEL_OK)
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG, "dlr.gateways_file: %s", inner);
    dlr_gateways_free(gateways);
}

static const nudgel_conf_entry_t *const dlr_tables[] = {dlr_table, NULL};

static const nudgel_role_t dlr_role = {
    .program = PROGRAM,
    .summary = "Carrier delivery reports (POST /v1/dlr/<gateway>/<token>: Africa's Talking, "
               "Infobip, generic JSON) normalised to carrier DLR v1 on nudgel.carrier-dlr.v1; a "
               "callback is answered 200 only once Kafka acknowledged every report of it, else "
               "503.",
    .tables = dlr_tables,
    .metrics_port_default = 9468,
    .drain_timeout_key = "dlr.drain_timeout_ms",
    .check = dlr_check,
    .setup = dlr_setup,
    .drain = dlr_drain,
    .in_flight = dlr_in_flight,
    .reload = dlr_reload,
    .teardown = dlr_teardown,
};

int main(int argc, char **argv)
{
    return nudgel_worker_main(&dlr_role, argc, argv);
}
