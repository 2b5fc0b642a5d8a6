/*
 * produce.c — the reports to Kafka, on the event loop.
 *
 * A producer of its own (the runtime's publisher writes status events,
 * retry hops and dead letters; a report is none of those): acks=all,
 * idempotence, murmur2 partitioner (DESIGN §4), key gateway_message_id,
 * headers nudgel-schema (carrier.dlr/v1) and content-type. A carrier waits
 * on the answer, so linger.ms defaults to 5 ms, and message.timeout.ms to
 * dlr.ack_timeout_ms, so a report Kafka cannot take comes back failed by
 * the time the request answers 503 (unless kafka.* sets either).
 *
 * Delivery reports, statistics and errors are served from the loop:
 * librdkafka writes to an eventfd when its main queue goes non-empty, the
 * loop serves the queue (as the runtime's publisher does). After each
 * serve the readiness condition "kafka" is set from the statistics: ready
 * while a broker is up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dlr.h"
#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

#define LINGER_MS_DEFAULT "5"

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        nudgel_log_warn("a report was not taken by Kafka: %s", rd_kafka_err2str(m->err));
    http_report_done(m->_private, m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    receiver_t *rx = opaque;
    (void)rk;
    nudgel_kafka_monitor_keep_stats(rx->monitor, json, json_len, nudgel_mono_us());
    return 1; /* the monitor keeps json */
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    receiver_t *rx = opaque;
    nudgel_kafka_monitor_error(rx->monitor, err, nudgel_mono_us());
    nudgel_kafka_log_error(rk, err, reason);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[256];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        nudgel_worker_fatal(rx->w, "the report producer failed: %s", why);
    }
}

static void readiness_update(receiver_t *rx)
{
    nudgel_kafka_health_t h;
    nudgel_kafka_monitor_get(rx->monitor, &h);
    if (h.stats_at_us == 0)
        nudgel_ready_fail(rx->ready_kafka, "no statistics yet");
    else if (h.all_brokers_down || h.brokers_up == 0)
        nudgel_ready_fail(rx->ready_kafka, "no broker up");
    else
        nudgel_ready_ok(rx->ready_kafka);
}

static void on_wake(void *opaque, int fd, unsigned events)
{
    receiver_t *rx = opaque;
    uint64_t count;
    (void)events;
    if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        nudgel_log_warn("producer: reading its wake-up fd: %s", strerror(errno));
    rd_kafka_poll(rx->rk, 0);
    readiness_update(rx);
}

typedef struct prop_seen {
    const char *a, *b;
} prop_seen_t;

static int prop_is(const char *prop, const char *value, void *opaque)
{
    const prop_seen_t *s = opaque;
    (void)value;
    return strcmp(prop, s->a) == 0 || (s->b && strcmp(prop, s->b) == 0);
}

static nudgel_err_t conf_set(rd_kafka_conf_t *kconf, const char *prop, const char *value,
                             char *errstr, size_t errstr_size)
{
    char inner[256];
    if (rd_kafka_conf_set(kconf, prop, value, inner, sizeof(inner)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka.%s: %s", prop, inner);
        return NUDGEL_ERR_CONFIG;
    }
    return NUDGEL_OK;
}

nudgel_err_t produce_open(receiver_t *rx, const nudgel_conf_t *conf, char *errstr,
                          size_t errstr_size)
{
    static const uint64_t one = 1;
    char timeout[32], inner[512];
    rd_kafka_conf_t *kconf = NULL;
    prop_seen_t linger = {"linger.ms", "queue.buffering.max.ms"};
    prop_seen_t msg_timeout = {"message.timeout.ms", "delivery.timeout.ms"};

    rx->wake_fd = -1;
    if (!(rx->monitor = nudgel_kafka_monitor_new())) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    if (!(kconf = nudgel_kafka_conf_new(conf, errstr, errstr_size)) ||
        nudgel_kafka_monitor_conf(kconf, conf, errstr, errstr_size) != NUDGEL_OK)
        goto fail;
    snprintf(timeout, sizeof(timeout), "%lld", (long long)(rx->ack_timeout_us / 1000));
    if (conf_set(kconf, "acks", "all", errstr, errstr_size) ||
        conf_set(kconf, "enable.idempotence", "true", errstr, errstr_size) ||
        conf_set(kconf, "partitioner", "murmur2_random", errstr, errstr_size) ||
        (!nudgel_conf_kafka_foreach(conf, prop_is, &linger) &&
         conf_set(kconf, "linger.ms", LINGER_MS_DEFAULT, errstr, errstr_size)) ||
        (!nudgel_conf_kafka_foreach(conf, prop_is, &msg_timeout) &&
         conf_set(kconf, "message.timeout.ms", timeout, errstr, errstr_size)))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(kconf, dr_msg_cb);
    rd_kafka_conf_set_stats_cb(kconf, stats_cb);
    nudgel_kafka_conf_set_error_cb(kconf, error_cb);
    rd_kafka_conf_set_opaque(kconf, rx);
    if (!(rx->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, inner, sizeof(inner)))) {
        snprintf(errstr, errstr_size, "creating the Kafka producer: %s", inner);
        goto fail;
    }
    kconf = NULL; /* the producer owns it */
    rx->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    rx->queue = rd_kafka_queue_get_main(rx->rk);
    if (rx->wake_fd < 0 || !rx->queue ||
        nudgel_loop_watch(rx->loop, rx->wake_fd, NUDGEL_LOOP_READ, on_wake, rx) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "the producer cannot go on the event loop");
        return NUDGEL_ERR_IO;
    }
    rd_kafka_queue_io_event_enable(rx->queue, rx->wake_fd, &one, sizeof(one));
    eventfd_write(rx->wake_fd, 1); /* anything queued before now: served next turn */
    return NUDGEL_OK;
fail:
    if (kconf)
        rd_kafka_conf_destroy(kconf);
    return NUDGEL_ERR_CONFIG;
}

size_t produce_reports(receiver_t *rx, dlr_request_t *rq, const dlr_gateway_t *gw,
                       const dlr_report_t *reports, size_t n)
{
    char received_at[NUDGEL_RFC3339_MAX];
    nudgel_rfc3339_format(nudgel_now_unix_ms(), received_at);
    const char *dialect = nudgel_gateway_dialect_name(gw->dialect);
    for (size_t i = 0; i < n; i++) {
        const dlr_report_t *r = &reports[i];
        char *value = dlr_report_json(r, gw->name, dialect, received_at);
        if (!value) {
            nudgel_log_error("report of %s: out of memory", gw->name);
            return i;
        }
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
        rd_kafka_header_add(hdrs, NUDGEL_HDR_SCHEMA, -1, NUDGEL_SCHEMA_CARRIER_DLR_V1, -1);
        rd_kafka_header_add(hdrs, NUDGEL_HDR_CONTENT_TYPE, -1, "application/json", -1);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rx->rk, RD_KAFKA_V_TOPIC(rx->topic),
            RD_KAFKA_V_KEY(r->gateway_message_id, strlen(r->gateway_message_id)),
            RD_KAFKA_V_VALUE(value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(rq), RD_KAFKA_V_END);
        if (err) {
            rd_kafka_headers_destroy(hdrs);
            free(value);
            nudgel_log_warn("report of %s not queued: %s", gw->name, rd_kafka_err2str(err));
            return i;
        }
        nudgel_metric_add(rx->m_status, dlr_status_name(r->status), 1);
    }
    return n;
}

size_t produce_in_flight(const receiver_t *rx)
{
    return rx->rk ? (size_t)rd_kafka_outq_len(rx->rk) : 0;
}

void produce_close(receiver_t *rx, int timeout_ms)
{
    if (rx->queue) {
        rd_kafka_queue_io_event_enable(rx->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(rx->queue);
        rx->queue = NULL;
    }
    if (rx->wake_fd >= 0) {
        nudgel_loop_unwatch(rx->loop, rx->wake_fd);
        close(rx->wake_fd);
        rx->wake_fd = -1;
    }
    if (rx->rk) {
        if (rd_kafka_flush(rx->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
            nudgel_log_warn("%d report(s) unacknowledged at shutdown", rd_kafka_outq_len(rx->rk));
        rd_kafka_destroy(rx->rk);
        rx->rk = NULL;
    }
    nudgel_kafka_monitor_free(rx->monitor);
    rx->monitor = NULL;
}
