/*
 * kafka.c — librdkafka configuration, logging and partitioning helpers.
 *
 * Errors are logged once. librdkafka reports a broker failure twice: a log
 * line (facility "FAIL", from the broker thread) and an error op on the
 * main queue, which reaches the error callback (or, without one, a second
 * log line, facility "ERROR") when the application polls. Handles whose
 * main queue is served (the workers' consumer and publisher) take the
 * error callback's line and drop the FAIL twin; other handles keep
 * librdkafka's lines, since nothing may ever poll their error ops.
 */
#define _GNU_SOURCE
#include "nudgel/kafka.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "nudgel/log.h"

typedef struct kafka_apply {
    rd_kafka_conf_t *kconf;
    char *errstr;
    size_t errstr_size;
} kafka_apply_t;

static int apply_prop(const char *prop, const char *value, void *opaque)
{
    kafka_apply_t *a = opaque;
    char inner[512];
    if (rd_kafka_conf_set(a->kconf, prop, value, inner, sizeof(inner)) != RD_KAFKA_CONF_OK) {
        snprintf(a->errstr, a->errstr_size, "kafka.%s: %s", prop, inner);
        return -1;
    }
    return 0;
}

#define SYSLOG_DEBUG 7

/* librdkafka syslog levels (0 emerg .. 7 debug) onto ours. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    nudgel_log_level_t ours = level <= 3   ? NUDGEL_LOG_ERROR
                              : level <= 4 ? NUDGEL_LOG_WARN
                              : level <= 6 ? NUDGEL_LOG_INFO
                                           : NUDGEL_LOG_DEBUG;
    NUDGEL_LOG_CTX(ours, NULL, "librdkafka %s %s: %s", rk ? rd_kafka_name(rk) : "", fac, buf);
}

/* As log_cb, without the broker-failure lines whose error op the error
 * callback logs (rd_kafka_broker_set_error() emits both, with one text).
 * Debug-level FAIL lines have no error op and stay. */
static void log_cb_errors_served(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level < SYSLOG_DEBUG && strcmp(fac, "FAIL") == 0)
        return;
    log_cb(rk, level, fac, buf);
}

void nudgel_kafka_conf_set_logger(rd_kafka_conf_t *kconf)
{
    rd_kafka_conf_set_log_cb(kconf, log_cb);
}

void nudgel_kafka_log_error(rd_kafka_t *rk, int err, const char *reason)
{
    char fatal[512];
    nudgel_log_level_t level = NUDGEL_LOG_WARN;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        /* The reason names the original error; ask for it once here. */
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        NUDGEL_LOG_CTX(NUDGEL_LOG_ERROR, NULL, "librdkafka %s fatal error: %s: %s",
                       rd_kafka_name(rk), rd_kafka_err2name(orig), orig ? fatal : reason);
        return;
    }
    /* A broker connection failing is retried by librdkafka (a warning);
     * every broker down, or an error that will not heal, is an error. */
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
        nudgel_err_class(nudgel_kafka_err((rd_kafka_resp_err_t)err)) != NUDGEL_ERRCLASS_RETRIABLE)
        level = NUDGEL_LOG_ERROR;
    NUDGEL_LOG_CTX(level, NULL, "librdkafka %s error %s: %s", rd_kafka_name(rk),
                   rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    nudgel_kafka_log_error(rk, err, reason);
}

void nudgel_kafka_conf_set_error_cb(rd_kafka_conf_t *kconf,
                                    void (*cb)(rd_kafka_t *rk, int err, const char *reason,
                                               void *opaque))
{
    rd_kafka_conf_set_error_cb(kconf, cb ? cb : error_cb);
    rd_kafka_conf_set_log_cb(kconf, log_cb_errors_served);
}

rd_kafka_conf_t *nudgel_kafka_conf_new(const nudgel_conf_t *conf, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *kconf = rd_kafka_conf_new();
    kafka_apply_t apply = {kconf, errstr, errstr_size};
    const char *bootstrap = nudgel_conf_get_str(conf, "kafka.bootstrap");
    const char *client_id = nudgel_conf_get_str(conf, "kafka.client_id");
    if (!bootstrap || !*bootstrap) {
        snprintf(errstr, errstr_size, "kafka.bootstrap: is not set (NUDGEL_KAFKA_BOOTSTRAP)");
        goto fail;
    }
    if (apply_prop("bootstrap.servers", bootstrap, &apply) ||
        (client_id && apply_prop("client.id", client_id, &apply)))
        goto fail;
    nudgel_kafka_conf_set_logger(kconf);
    if (nudgel_conf_kafka_foreach(conf, apply_prop, &apply) != 0)
        goto fail;
    return kconf;
fail:
    rd_kafka_conf_destroy(kconf);
    return NULL;
}

nudgel_err_t nudgel_kafka_check_reachable(rd_kafka_t *rk, int timeout_ms, char *errstr,
                                          size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "no Kafka broker answered within %d ms (%s)", timeout_ms,
                 rd_kafka_err2str(err));
        return NUDGEL_ERR_KAFKA_UNREACHABLE;
    }
    rd_kafka_metadata_destroy(md);
    return NUDGEL_OK;
}

int32_t nudgel_kafka_murmur2(const void *key, size_t len)
{
    const uint8_t *data = key;
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t k = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 | (uint32_t)data[i + 2] << 16 |
                     (uint32_t)data[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)data[i + 2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)data[i + 1] << 8;
        /* fall through */
    case 1:
        h ^= data[i];
        h *= m;
        break;
    default:
        break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

int32_t nudgel_kafka_partition_for_key(const void *key, size_t len, int32_t partition_count)
{
    uint32_t positive = (uint32_t)nudgel_kafka_murmur2(key, len) & 0x7fffffffu;
    return partition_count > 0 ? (int32_t)(positive % (uint32_t)partition_count) : -1;
}

nudgel_err_t nudgel_kafka_err(rd_kafka_resp_err_t err)
{
    /* (int): librdkafka's enum has hundreds of codes; the rest are retriable. */
    switch ((int)err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return NUDGEL_OK;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return NUDGEL_ERR_QUEUE_FULL;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
        return NUDGEL_ERR_TIMED_OUT;
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
        return NUDGEL_ERR_KAFKA_UNREACHABLE;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return NUDGEL_ERR_TOO_LARGE;
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return NUDGEL_ERR_KAFKA_FATAL;
    default:
        return NUDGEL_ERR_KAFKA;
    }
}

void nudgel_message_header(const rd_kafka_message_t *msg, const char *name, char *out,
                           size_t out_size)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *value = NULL;
    size_t size = 0;
    out[0] = '\0';
    if (rd_kafka_message_headers(msg, &hdrs) || rd_kafka_header_get_last(hdrs, name, &value, &size))
        return;
    if (size >= out_size)
        size = out_size - 1;
    memcpy(out, value, size);
    out[size] = '\0';
}

rd_kafka_headers_t *nudgel_message_headers_except(const rd_kafka_message_t *msg,
                                                  const char *const *drop)
{
    rd_kafka_headers_t *orig = NULL, *out = rd_kafka_headers_new(8);
    const char *name;
    const void *value;
    size_t size;
    if (rd_kafka_message_headers(msg, &orig) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return out;
    for (size_t i = 0; !rd_kafka_header_get_all(orig, i, &name, &value, &size); i++) {
        bool dropped = false;
        for (size_t d = 0; drop[d] && !dropped; d++)
            dropped = strcmp(drop[d], name) == 0;
        if (!dropped)
            rd_kafka_header_add(out, name, -1, value, (ssize_t)size);
    }
    return out;
}
