/*
 * publisher.c — see nudgel/publisher.h.
 *
 * On a loop, librdkafka writes to an eventfd when the producer's main queue
 * (delivery reports, statistics, errors) goes from empty to non-empty; the
 * loop then serves the whole queue with rd_kafka_poll(rk, 0).
 *
 * Our default linger.ms is LINGER_MS_DEFAULT (unless kafka.linger.ms or
 * kafka.queue.buffering.max.ms is set): nothing a worker publishes is on a
 * latency path (status events, retry hops, dead letters), and a short linger
 * costs CPU twice over. Each batch is a ProduceRequest and a wake-up of the
 * broker thread; and the idempotent producer sends nothing more to a
 * partition while 5 messages of it are in flight (librdkafka's
 * RD_KAFKA_IDEMP_MAX_INFLIGHT, counted in messages), so once the linger of
 * the next batch has run out before the acknowledgement comes, the broker
 * thread polls with a zero timeout until it does: 780 polls in 130 ms when
 * Kafka took 150 ms to acknowledge. A linger above the usual acknowledgement
 * time keeps that thread asleep.
 */
#define _GNU_SOURCE
#include "nudgel/publisher.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

#define HEADER_VALUE_MAX 1024 /* longest header value we write (last error, reason) */
/* A topic's max.message.bytes when the broker's is not known: Kafka's default. */
#define TOPIC_MAX_BYTES_DEFAULT 1048588
/* What a record adds to its key, value and headers in a batch, rounded up generously. */
#define RECORD_OVERHEAD   512
#define LINGER_MS_DEFAULT "50" /* see the top of this file */

struct nudgel_publisher {
    rd_kafka_t *rk;
    nudgel_publish_cb_t *cb;
    void *cb_opaque;
    nudgel_kafka_monitor_t *monitor; /* statistics and errors */
    size_t message_max;              /* the producer's message.max.bytes */
    /* On a loop (nudgel_publisher_attach), else loop is NULL. */
    nudgel_loop_t *loop;
    rd_kafka_queue_t *queue; /* the main queue, holding the IO event */
    int wake_fd;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    nudgel_publisher_t *p = opaque;
    (void)rk;
    p->cb(m->_private, nudgel_kafka_err(m->err), m->err ? rd_kafka_err2str(m->err) : "",
          p->cb_opaque);
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    nudgel_publisher_t *p = opaque;
    (void)rk;
    nudgel_kafka_monitor_keep_stats(p->monitor, json, json_len, nudgel_mono_us());
    return 1; /* the monitor keeps json and parses it when health is asked for */
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    nudgel_publisher_t *p = opaque;
    nudgel_kafka_monitor_error(p->monitor, err, nudgel_mono_us());
    nudgel_kafka_log_error(rk, err, reason);
}

/* nudgel_conf_kafka_foreach() callback: does kafka.* set the producer's linger (either name)? */
static int is_linger_prop(const char *prop, const char *value, void *opaque)
{
    (void)value;
    (void)opaque;
    return strcmp(prop, "linger.ms") == 0 || strcmp(prop, "queue.buffering.max.ms") == 0;
}

nudgel_publisher_t *nudgel_publisher_new(const nudgel_conf_t *conf, nudgel_publish_cb_t *cb,
                                         void *cb_opaque, char *errstr, size_t errstr_size)
{
    static const char *const contract[][2] = {
        {"acks", "all"},
        {"enable.idempotence", "true"},
        {"partitioner", "murmur2_random"},
    };
    nudgel_publisher_t *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *kconf = NULL;
    char inner[512];
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->cb = cb;
    p->cb_opaque = cb_opaque;
    p->wake_fd = -1;
    if (!(p->monitor = nudgel_kafka_monitor_new())) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (!(kconf = nudgel_kafka_conf_new(conf, errstr, errstr_size)) ||
        nudgel_kafka_monitor_conf(kconf, conf, errstr, errstr_size) != NUDGEL_OK)
        goto fail;
    for (size_t i = 0; i < sizeof(contract) / sizeof(contract[0]); i++) {
        if (rd_kafka_conf_set(kconf, contract[i][0], contract[i][1], inner, sizeof(inner)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "%s: %s", contract[i][0], inner);
            goto fail;
        }
    }
    if (!nudgel_conf_kafka_foreach(conf, is_linger_prop, NULL) &&
        rd_kafka_conf_set(kconf, "linger.ms", LINGER_MS_DEFAULT, inner, sizeof(inner)) !=
            RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "linger.ms: %s", inner);
        goto fail;
    }
    char max[32];
    size_t max_size = sizeof(max);
    p->message_max = 1000000;
    if (rd_kafka_conf_get(kconf, "message.max.bytes", max, &max_size) == RD_KAFKA_CONF_OK &&
        atoll(max) > 0)
        p->message_max = (size_t)atoll(max);
    rd_kafka_conf_set_dr_msg_cb(kconf, dr_msg_cb);
    rd_kafka_conf_set_stats_cb(kconf, stats_cb);
    nudgel_kafka_conf_set_error_cb(kconf, error_cb);
    rd_kafka_conf_set_opaque(kconf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, inner, sizeof(inner));
    if (!p->rk) {
        snprintf(errstr, errstr_size, "creating the Kafka producer: %s", inner);
        goto fail;
    }
    return p;
fail:
    if (kconf && !p->rk)
        rd_kafka_conf_destroy(kconf);
    nudgel_kafka_monitor_free(p->monitor);
    free(p);
    return NULL;
}

/* Produces, taking ownership of @p hdrs in every case. */
static nudgel_err_t produce(nudgel_publisher_t *p, const char *topic, const void *key,
                            size_t key_len, const void *value, size_t value_len, int msgflags,
                            rd_kafka_headers_t *hdrs, void *opaque)
{
    rd_kafka_resp_err_t err =
        rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
                          RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(msgflags),
                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(hdrs);
        nudgel_log_warn("publishing to %s: %s", topic, rd_kafka_err2str(err));
        return nudgel_kafka_err(err);
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_publish_event(nudgel_publisher_t *p, const char *topic, const char *tenant_id,
                                  json_t *event, const char *traceparent, void *opaque)
{
    char *value = json_dumps(event, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(event);
    if (!value)
        return NUDGEL_ERR_NO_MEMORY;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
    rd_kafka_header_add(hdrs, NUDGEL_HDR_SCHEMA, -1, NUDGEL_SCHEMA_STATUS_EVENT_V1, -1);
    rd_kafka_header_add(hdrs, NUDGEL_HDR_TENANT, -1, tenant_id, -1);
    if (traceparent && *traceparent)
        rd_kafka_header_add(hdrs, NUDGEL_HDR_TRACEPARENT, -1, traceparent, -1);
    rd_kafka_header_add(hdrs, NUDGEL_HDR_CONTENT_TYPE, -1, "application/cloudevents+json", -1);
    nudgel_err_t err = produce(p, topic, tenant_id, strlen(tenant_id), value, strlen(value),
                               RD_KAFKA_MSG_F_FREE, hdrs, opaque);
    if (err)
        free(value);
    return err;
}

static void add_number_header(rd_kafka_headers_t *hdrs, const char *name, int64_t value)
{
    char text[24];
    snprintf(text, sizeof(text), "%" PRId64, value);
    rd_kafka_header_add(hdrs, name, -1, text, -1);
}

/* Header values are single-line and capped: error texts can be long or multi-line. */
static void add_text_header(rd_kafka_headers_t *hdrs, const char *name, const char *value)
{
    char text[HEADER_VALUE_MAX];
    snprintf(text, sizeof(text), "%s", value ? value : "");
    for (char *c = text; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    rd_kafka_header_add(hdrs, name, -1, text, -1);
}

nudgel_err_t nudgel_publish_retry(nudgel_publisher_t *p, const char *topic,
                                  const rd_kafka_message_t *job, int attempt, int64_t not_before_ms,
                                  int64_t first_seen_ms, const char *last_error, void *opaque)
{
    static const char *const replaced[] = {NUDGEL_HDR_ATTEMPT, NUDGEL_HDR_NOT_BEFORE,
                                           NUDGEL_HDR_FIRST_SEEN, NUDGEL_HDR_LAST_ERROR, NULL};
    rd_kafka_headers_t *hdrs = nudgel_message_headers_except(job, replaced);
    add_number_header(hdrs, NUDGEL_HDR_ATTEMPT, attempt);
    add_number_header(hdrs, NUDGEL_HDR_NOT_BEFORE, not_before_ms);
    add_number_header(hdrs, NUDGEL_HDR_FIRST_SEEN, first_seen_ms);
    add_text_header(hdrs, NUDGEL_HDR_LAST_ERROR, last_error);
    return produce(p, topic, job->key, job->key_len, job->payload, job->len, RD_KAFKA_MSG_F_COPY,
                   hdrs, opaque);
}

nudgel_err_t nudgel_publish_hop_on(nudgel_publisher_t *p, const char *topic,
                                   const rd_kafka_message_t *job, void *opaque)
{
    static const char *const none[] = {NULL};
    rd_kafka_headers_t *hdrs = nudgel_message_headers_except(job, none);
    return produce(p, topic, job->key, job->key_len, job->payload, job->len, RD_KAFKA_MSG_F_COPY,
                   hdrs, opaque);
}

/* Bytes @p hdrs take in a record (names, values and their length fields). */
static size_t headers_size(const rd_kafka_headers_t *hdrs)
{
    size_t total = 0, size = 0;
    const char *name;
    const void *value;
    for (size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
        total += strlen(name) + size + 16;
    return total;
}

size_t nudgel_publisher_dlq_max_value(const nudgel_publisher_t *p)
{
    return p->message_max < TOPIC_MAX_BYTES_DEFAULT ? p->message_max : TOPIC_MAX_BYTES_DEFAULT;
}

nudgel_err_t nudgel_publish_dlq_capped(nudgel_publisher_t *p, const char *topic,
                                       const rd_kafka_message_t *job, const char *reason,
                                       size_t max_record, void *opaque)
{
    static const char *const replaced[] = {NUDGEL_HDR_DLQ_REASON, NUDGEL_HDR_ORIGIN,
                                           NUDGEL_HDR_DLQ_TRUNCATED, NULL};
    char origin[512];
    rd_kafka_headers_t *hdrs = nudgel_message_headers_except(job, replaced);
    add_text_header(hdrs, NUDGEL_HDR_DLQ_REASON, reason);
    snprintf(origin, sizeof(origin), "%s/%" PRId32 "/%" PRId64,
             job->rkt ? rd_kafka_topic_name(job->rkt) : "?", job->partition, job->offset);
    rd_kafka_header_add(hdrs, NUDGEL_HDR_ORIGIN, -1, origin, -1);
    /* What is left of the record for the value once key and headers are in. */
    size_t fixed = headers_size(hdrs) + job->key_len + RECORD_OVERHEAD + 64;
    size_t room = max_record > fixed ? max_record - fixed : 0;
    size_t len = job->len;
    if (len > room) {
        /* The original cannot travel whole: a prefix, and its size in a header. */
        add_number_header(hdrs, NUDGEL_HDR_DLQ_TRUNCATED, (int64_t)job->len);
        len = room;
    }
    return produce(p, topic, job->key, job->key_len, job->payload, len, RD_KAFKA_MSG_F_COPY, hdrs,
                   opaque);
}

nudgel_err_t nudgel_publish_dlq(nudgel_publisher_t *p, const char *topic,
                                const rd_kafka_message_t *job, const char *reason, void *opaque)
{
    nudgel_err_t err =
        nudgel_publish_dlq_capped(p, topic, job, reason, nudgel_publisher_dlq_max_value(p), opaque);
    if (err == NUDGEL_ERR_TOO_LARGE) /* our estimate of the limit was wrong: a small prefix */
        err = nudgel_publish_dlq_capped(p, topic, job, reason, NUDGEL_DLQ_FALLBACK_BYTES, opaque);
    return err;
}

int nudgel_publisher_poll(nudgel_publisher_t *p, int timeout_ms)
{
    return rd_kafka_poll(p->rk, timeout_ms);
}

int nudgel_publisher_in_flight(nudgel_publisher_t *p)
{
    return rd_kafka_outq_len(p->rk);
}

/* The main queue's eventfd is readable: clear it, then serve everything
 * queued (a report enqueued meanwhile writes a wake-up of its own). */
static void on_wake(void *opaque, int fd, unsigned events)
{
    nudgel_publisher_t *p = opaque;
    uint64_t count;
    (void)events;
    if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        nudgel_log_warn("publisher: reading its wake-up fd: %s", strerror(errno));
    rd_kafka_poll(p->rk, 0);
}

static void detach(nudgel_publisher_t *p)
{
    if (!p->loop)
        return;
    if (p->queue) {
        rd_kafka_queue_io_event_enable(p->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(p->queue);
    }
    if (p->wake_fd >= 0) {
        nudgel_loop_unwatch(p->loop, p->wake_fd);
        close(p->wake_fd);
    }
    p->queue = NULL;
    p->wake_fd = -1;
    p->loop = NULL;
}

nudgel_err_t nudgel_publisher_attach(nudgel_publisher_t *p, nudgel_loop_t *loop)
{
    static const uint64_t one = 1; /* an eventfd takes 8-byte writes; librdkafka copies it */
    if (!p || !loop || p->loop)
        return NUDGEL_ERR_INVALID_ARG;
    p->loop = loop;
    p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->queue = rd_kafka_queue_get_main(p->rk);
    nudgel_err_t err = NUDGEL_ERR_IO;
    if (p->wake_fd >= 0 && p->queue)
        err = nudgel_loop_watch(loop, p->wake_fd, NUDGEL_LOOP_READ, on_wake, p);
    if (err != NUDGEL_OK) {
        nudgel_log_error("publisher: cannot go on the event loop: %s", nudgel_strerror(err));
        detach(p);
        return err;
    }
    rd_kafka_queue_io_event_enable(p->queue, p->wake_fd, &one, sizeof(one));
    /* Reports queued before now wrote no wake-up: serve them on the next
     * turn (not here, so no callback runs inside this call). */
    eventfd_write(p->wake_fd, 1);
    return NUDGEL_OK;
}

void nudgel_publisher_health(const nudgel_publisher_t *p, nudgel_kafka_health_t *out)
{
    nudgel_kafka_monitor_get(p->monitor, out);
    out->outq_len = rd_kafka_outq_len(p->rk);
}

void nudgel_publisher_destroy(nudgel_publisher_t *p, int timeout_ms)
{
    if (!p)
        return;
    detach(p);
    if (rd_kafka_flush(p->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        nudgel_log_warn("%d publish(es) unacknowledged at shutdown", rd_kafka_outq_len(p->rk));
    rd_kafka_destroy(p->rk);
    nudgel_kafka_monitor_free(p->monitor);
    free(p);
}
