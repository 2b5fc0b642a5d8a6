/*
 * producer.c — libnudgel: validate, encode and append jobs to Kafka.
 *
 * For an event loop, nudgel_producer_event_fd() hands out the read end of a
 * non-blocking pipe whose write end librdkafka's main queue writes to when it
 * goes from empty to non-empty (rd_kafka_queue_io_event_enable);
 * nudgel_producer_poll() empties the pipe before it serves the queue, so a
 * report queued meanwhile leaves a wake-up of its own.
 */
#define _GNU_SOURCE
#include "nudgel/producer.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "nudgel/kafka.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

#define PROP_MAX 128

typedef struct sync_wait {
    int done;
    nudgel_err_t err;
    int32_t partition;
    int64_t offset;
    char errstr[256];
} sync_wait_t;

/*
 * One per queued job. It lives in the tail of the job's own payload buffer
 * (nudgel_job_canonical_t.tail), which librdkafka frees after the delivery
 * callback: one allocation per job instead of two.
 */
typedef struct job_ctx {
    void *user_opaque;
    sync_wait_t *waiter; /* sync calls only; cleared under p->lock on time-out */
    bool sync;           /* fixed at creation: only sync jobs need the lock */
    char job_id[NUDGEL_UUID_STR_LEN + 1];
} job_ctx_t;

struct nudgel_producer_conf {
    rd_kafka_conf_t *kconf;
    char default_country[3];
    size_t max_job_bytes;
    int message_timeout_ms;
    int queue_full_wait_ms; /* -1: message_timeout_ms */
    nudgel_delivery_cb_t *cb;
    void *cb_opaque;
    char messages_topic[250];
    char webhooks_topic[250];
};

struct nudgel_producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *messages, *webhooks;
    nudgel_producer_conf_t *conf;
    pthread_mutex_t lock;
    /* nudgel_producer_event_fd(): the main queue's wake-up pipe, once made. */
    rd_kafka_queue_t *main_queue;
    int event_fds[2]; /* read end, write end; -1 until made */
};

nudgel_producer_conf_t *nudgel_producer_conf_new(void)
{
    nudgel_producer_conf_t *conf = calloc(1, sizeof(*conf));
    char errstr[256];
    if (!conf)
        return NULL;
    conf->kconf = rd_kafka_conf_new();
    conf->max_job_bytes = NUDGEL_JOB_MAX_BYTES_DEFAULT;
    conf->message_timeout_ms = 30000;
    conf->queue_full_wait_ms = -1;
    snprintf(conf->messages_topic, sizeof(conf->messages_topic), "%s", NUDGEL_TOPIC_MESSAGES);
    snprintf(conf->webhooks_topic, sizeof(conf->webhooks_topic), "%s", NUDGEL_TOPIC_WEBHOOKS);
    /* Throughput defaults; callers may override any of these. */
    static const char *const defaults[][2] = {
        {"linger.ms", "5"},
        {"batch.num.messages", "10000"},
        {"queue.buffering.max.messages", "1000000"},
        {"queue.buffering.max.kbytes", "1048576"},
        {"client.id", "libnudgel"},
    };
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        rd_kafka_conf_set(conf->kconf, defaults[i][0], defaults[i][1], errstr, sizeof(errstr));
    /* The caller polls (delivery reports need it), so errors reach the error
     * callback as ops on the polled queue: each is logged once, not also as
     * librdkafka's own FAIL line. */
    nudgel_kafka_conf_set_error_cb(conf->kconf, NULL);
    return conf;
}

/* Properties the topic contract fixes; setting one to its fixed value is harmless. */
static bool contract_property(const char *name, const char *value, bool *matches)
{
    static const char *const fixed[][3] = {
        {"acks", "all", "-1"},
        {"request.required.acks", "all", "-1"},
        {"enable.idempotence", "true", "1"},
        {"partitioner", "murmur2_random", "murmur2_random"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (strcmp(fixed[i][0], name) == 0) {
            *matches = strcmp(fixed[i][1], value) == 0 || strcmp(fixed[i][2], value) == 0;
            return true;
        }
    }
    return false;
}

nudgel_err_t nudgel_producer_conf_set(nudgel_producer_conf_t *conf, const char *name,
                                      const char *value, char *errstr, size_t errstr_size)
{
    if (!conf || !name || !value)
        return NUDGEL_ERR_INVALID_ARG;
    if (strcmp(name, "default_country") == 0) {
        if (*value && !(strlen(value) == 2 && isupper((unsigned char)value[0]) &&
                        isupper((unsigned char)value[1]))) {
            snprintf(errstr, errstr_size, "default_country: \"%.16s\" is not an ISO alpha-2 code",
                     value);
            return NUDGEL_ERR_CONFIG;
        }
        snprintf(conf->default_country, sizeof(conf->default_country), "%s", value);
        return NUDGEL_OK;
    }
    if (strcmp(name, "messages_topic") == 0 || strcmp(name, "webhooks_topic") == 0) {
        char *dest = name[0] == 'm' ? conf->messages_topic : conf->webhooks_topic;
        size_t cap = sizeof(conf->messages_topic);
        if (!*value || strlen(value) >= cap ||
            strspn(value, "abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                          "0123456789._-") != strlen(value)) {
            snprintf(errstr, errstr_size, "%s: \"%.64s\" is not a valid Kafka topic name", name,
                     value);
            return NUDGEL_ERR_CONFIG;
        }
        snprintf(dest, cap, "%s", value);
        return NUDGEL_OK;
    }
    if (strcmp(name, "max_job_bytes") == 0 || strcmp(name, "message_timeout_ms") == 0 ||
        strcmp(name, "queue_full_wait_ms") == 0) {
        char *end;
        long v = strtol(value, &end, 10);
        bool bytes = name[0] == 'm' && name[1] == 'a', wait = name[0] == 'q';
        long lo = bytes ? 1024 : wait ? 0 : 1000, hi = bytes ? 1048576 : 600000;
        if (*end || end == value || v < lo || v > hi) {
            snprintf(errstr, errstr_size, "%s: expected an integer in [%ld, %ld], got \"%.32s\"",
                     name, lo, hi, value);
            return NUDGEL_ERR_CONFIG;
        }
        if (bytes)
            conf->max_job_bytes = (size_t)v;
        else if (wait)
            conf->queue_full_wait_ms = (int)v;
        else
            conf->message_timeout_ms = (int)v;
        return NUDGEL_OK;
    }
    bool matches = false;
    if (contract_property(name, value, &matches)) {
        if (matches)
            return NUDGEL_OK;
        snprintf(errstr, errstr_size,
                 "%s: fixed by the topic contract (acks=all, idempotence, murmur2)", name);
        return NUDGEL_ERR_CONFIG;
    }
    const char *prop = strcmp(name, "bootstrap") == 0 ? "bootstrap.servers" : name;
    char inner[256];
    if (rd_kafka_conf_set(conf->kconf, prop, value, inner, sizeof(inner)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "%s: %s", name, inner);
        return NUDGEL_ERR_CONFIG;
    }
    return NUDGEL_OK;
}

void nudgel_producer_conf_set_delivery_cb(nudgel_producer_conf_t *conf, nudgel_delivery_cb_t *cb,
                                          void *cb_opaque)
{
    conf->cb = cb;
    conf->cb_opaque = cb_opaque;
}

void nudgel_producer_conf_destroy(nudgel_producer_conf_t *conf)
{
    if (!conf)
        return;
    if (conf->kconf)
        rd_kafka_conf_destroy(conf->kconf);
    free(conf);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    nudgel_producer_t *p = opaque;
    job_ctx_t *ctx = m->_private;
    char tenant[NUDGEL_TENANT_ID_MAX + 1] = "";
    (void)rk;
    if (!ctx)
        return;
    nudgel_err_t err = nudgel_kafka_err(m->err);
    const char *errstr = m->err ? rd_kafka_err2str(m->err) : "";

    if (ctx->sync) {
        pthread_mutex_lock(&p->lock);
        sync_wait_t *w = ctx->waiter;
        if (w) {
            w->err = err;
            w->partition = m->partition;
            w->offset = m->err ? -1 : m->offset;
            snprintf(w->errstr, sizeof(w->errstr), "%s", errstr);
            w->done = 1;
        }
        pthread_mutex_unlock(&p->lock);
        return; /* a sync job's outcome goes to its caller, not the callback */
    }
    if (p->conf->cb) {
        if (m->key && m->key_len < sizeof(tenant)) {
            memcpy(tenant, m->key, m->key_len);
            tenant[m->key_len] = '\0';
        }
        nudgel_delivery_report_t report = {
            .job_id = ctx->job_id,
            .tenant_id = tenant,
            .topic = rd_kafka_topic_name(m->rkt),
            .partition = m->partition,
            .offset = m->err ? -1 : m->offset,
            .err = err,
            .errstr = errstr,
            .opaque = ctx->user_opaque,
        };
        p->conf->cb(&report, p->conf->cb_opaque);
    }
}

nudgel_producer_t *nudgel_producer_new(nudgel_producer_conf_t *conf, char *errstr,
                                       size_t errstr_size)
{
    nudgel_producer_t *p = calloc(1, sizeof(*p));
    char inner[512];
    char timeout[16];
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->event_fds[0] = p->event_fds[1] = -1;
    snprintf(timeout, sizeof(timeout), "%d", conf->message_timeout_ms);
    static const char *const contract[][2] = {
        {"acks", "all"},
        {"enable.idempotence", "true"},
        {"partitioner", "murmur2_random"},
    };
    for (size_t i = 0; i < sizeof(contract) / sizeof(contract[0]); i++) {
        if (rd_kafka_conf_set(conf->kconf, contract[i][0], contract[i][1], inner, sizeof(inner)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "%s: %s", contract[i][0], inner);
            goto fail;
        }
    }
    if (rd_kafka_conf_set(conf->kconf, "message.timeout.ms", timeout, inner, sizeof(inner)) !=
        RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "message.timeout.ms: %s", inner);
        goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf->kconf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf->kconf, p);
    /* rd_kafka_new takes the conf only on success: keep a copy to give back on failure. */
    rd_kafka_conf_t *kconf = rd_kafka_conf_dup(conf->kconf);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, inner, sizeof(inner));
    if (!p->rk) {
        rd_kafka_conf_destroy(kconf);
        snprintf(errstr, errstr_size, "cannot create the Kafka producer: %s", inner);
        goto fail;
    }
    rd_kafka_conf_destroy(conf->kconf);
    conf->kconf = NULL;
    p->messages = rd_kafka_topic_new(p->rk, conf->messages_topic, NULL);
    p->webhooks = rd_kafka_topic_new(p->rk, conf->webhooks_topic, NULL);
    if (!p->messages || !p->webhooks) {
        snprintf(errstr, errstr_size, "cannot create topic handles");
        goto fail;
    }
    p->conf = conf;
    return p;
fail:
    if (p->messages)
        rd_kafka_topic_destroy(p->messages);
    if (p->webhooks)
        rd_kafka_topic_destroy(p->webhooks);
    if (p->rk)
        rd_kafka_destroy(p->rk);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return NULL;
}

nudgel_err_t nudgel_producer_check(nudgel_producer_t *p, int timeout_ms, char *errstr,
                                   size_t errstr_size)
{
    return nudgel_kafka_check_reachable(p->rk, timeout_ms, errstr, errstr_size);
}

/* W3C trace context: 00-<32 hex>-<16 hex>-<2 hex>. */
static bool traceparent_valid(const char *tp)
{
    static const char shape[] = "xx-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-xxxxxxxxxxxxxxxx-xx";
    if (strlen(tp) != sizeof(shape) - 1)
        return false;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == '-' ? tp[i] != '-'
                            : !isxdigit((unsigned char)tp[i]) || isupper((unsigned char)tp[i]))
            return false;
    }
    return true;
}

/*
 * Produces already-encoded bytes. Takes ownership of @p value (freed by
 * librdkafka or here on failure). Waits for queue space up to
 * queue_full_wait_ms (by default the message timeout), serving callbacks
 * meanwhile; with 0, a full queue fails at once.
 */
static nudgel_err_t produce(nudgel_producer_t *p, rd_kafka_topic_t *rkt, const char *schema,
                            const char *tenant, const char *idempotency_key, char *value,
                            size_t len, const nudgel_enqueue_opts_t *opts, job_ctx_t *ctx,
                            nudgel_enqueue_result_t *result)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(5);
    rd_kafka_header_add(hdrs, NUDGEL_HDR_SCHEMA, -1, schema, -1);
    rd_kafka_header_add(hdrs, NUDGEL_HDR_TENANT, -1, tenant, -1);
    if (idempotency_key)
        rd_kafka_header_add(hdrs, NUDGEL_HDR_IDEMPOTENCY_KEY, -1, idempotency_key, -1);
    if (opts && opts->traceparent)
        rd_kafka_header_add(hdrs, NUDGEL_HDR_TRACEPARENT, -1, opts->traceparent, -1);
    rd_kafka_header_add(hdrs, NUDGEL_HDR_CONTENT_TYPE, -1, "application/json", -1);

    int64_t deadline = 0; /* read the clock only when the queue is full */
    for (;;) {
        rd_kafka_resp_err_t kerr = rd_kafka_producev(
            p->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(tenant, strlen(tenant)),
            RD_KAFKA_V_VALUE(value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(ctx), RD_KAFKA_V_END);
        if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR)
            return NUDGEL_OK;
        int wait_ms = p->conf->queue_full_wait_ms >= 0 ? p->conf->queue_full_wait_ms
                                                       : p->conf->message_timeout_ms;
        if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL && !deadline)
            deadline = nudgel_mono_us() + (int64_t)wait_ms * 1000;
        if (kerr != RD_KAFKA_RESP_ERR__QUEUE_FULL || wait_ms == 0 || nudgel_mono_us() > deadline) {
            rd_kafka_headers_destroy(hdrs);
            free(value); /* ctx lives in value's tail */
            if (result) {
                snprintf(result->error.field, sizeof(result->error.field), "(kafka)");
                snprintf(result->error.reason, sizeof(result->error.reason), "%s",
                         rd_kafka_err2str(kerr));
            }
            return nudgel_kafka_err(kerr);
        }
        rd_kafka_poll(p->rk, 10);
    }
}

typedef enum job_kind { JOB_MESSAGE, JOB_WEBHOOK } job_kind_t;

static nudgel_err_t enqueue(nudgel_producer_t *p, job_kind_t kind, const char *json, size_t len,
                            const nudgel_enqueue_opts_t *opts, nudgel_enqueue_result_t *result,
                            sync_wait_t *waiter, job_ctx_t **ctx_out)
{
    nudgel_enqueue_result_t local;
    if (!p || !json)
        return NUDGEL_ERR_INVALID_ARG;
    nudgel_job_parse_opts_t popts = {
        .max_bytes = p->conf->max_job_bytes,
        .fill_defaults = true,
        .normalise_to = true,
        .default_country = p->conf->default_country[0] ? p->conf->default_country : NULL,
        .reserve_tail = sizeof(job_ctx_t),
    };
    nudgel_job_canonical_t job;
    nudgel_err_t err;
    job_ctx_t *ctx = NULL;

    if (!result)
        result = &local;
    memset(result, 0, sizeof(*result));
    result->partition = -1;
    result->offset = -1;
    if (opts && opts->traceparent && !traceparent_valid(opts->traceparent)) {
        snprintf(result->error.field, sizeof(result->error.field), "traceparent");
        snprintf(result->error.reason, sizeof(result->error.reason),
                 "must be a W3C trace context such as 00-<32 hex>-<16 hex>-01");
        return NUDGEL_ERR_INVALID_FIELD;
    }
    if (kind == JOB_MESSAGE)
        err = nudgel_message_job_canonicalize(json, len, &popts, &job, &result->error);
    else
        err = nudgel_webhook_job_canonicalize(json, len, &popts, &job, &result->error);
    if (err != NUDGEL_OK)
        return err;
    memcpy(result->job_id, job.id, sizeof(result->job_id));
    ctx = job.tail;
    ctx->sync = waiter != NULL;
    ctx->user_opaque = opts ? opts->opaque : NULL;
    ctx->waiter = waiter;
    memcpy(ctx->job_id, job.id, sizeof(ctx->job_id));
    if (ctx_out)
        *ctx_out = ctx;
    /* produce() owns job.bytes and ctx from here on, on success and failure alike. */
    return produce(p, kind == JOB_MESSAGE ? p->messages : p->webhooks,
                   kind == JOB_MESSAGE ? NUDGEL_SCHEMA_MESSAGE_JOB_V1
                                       : NUDGEL_SCHEMA_WEBHOOK_JOB_V1,
                   job.tenant_id, job.idempotency_key[0] ? job.idempotency_key : NULL, job.bytes,
                   job.len, opts, ctx, result);
}

nudgel_err_t nudgel_enqueue_message(nudgel_producer_t *p, const char *json, size_t len,
                                    const nudgel_enqueue_opts_t *opts,
                                    nudgel_enqueue_result_t *result)
{
    return enqueue(p, JOB_MESSAGE, json, len, opts, result, NULL, NULL);
}

nudgel_err_t nudgel_enqueue_webhook(nudgel_producer_t *p, const char *json, size_t len,
                                    const nudgel_enqueue_opts_t *opts,
                                    nudgel_enqueue_result_t *result)
{
    return enqueue(p, JOB_WEBHOOK, json, len, opts, result, NULL, NULL);
}

/*
 * The sync path polls until this job's report arrives. On time-out the job
 * may still be delivered later: the waiter is detached under the lock so the
 * callback never writes into this returned stack frame.
 */
static nudgel_err_t enqueue_sync(nudgel_producer_t *p, job_kind_t kind, const char *json,
                                 size_t len, const nudgel_enqueue_opts_t *opts,
                                 nudgel_enqueue_result_t *result, int timeout_ms)
{
    sync_wait_t w = {0};
    job_ctx_t *ctx = NULL;
    nudgel_enqueue_result_t local;
    if (!result)
        result = &local;
    nudgel_err_t err = enqueue(p, kind, json, len, opts, result, &w, &ctx);
    if (err != NUDGEL_OK)
        return err;
    int64_t deadline = nudgel_mono_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int done = w.done, abandoned = 0;
        if (!done && nudgel_mono_us() > deadline) {
            ctx->waiter = NULL; /* still queued: its callback must not touch w */
            abandoned = 1;
        }
        pthread_mutex_unlock(&p->lock);
        if (done)
            break;
        if (abandoned) {
            snprintf(result->error.field, sizeof(result->error.field), "(kafka)");
            snprintf(result->error.reason, sizeof(result->error.reason),
                     "no acknowledgement within %d ms", timeout_ms);
            return NUDGEL_ERR_TIMED_OUT;
        }
        rd_kafka_poll(p->rk, 10);
    }
    result->partition = w.partition;
    result->offset = w.offset;
    if (w.err != NUDGEL_OK) {
        snprintf(result->error.field, sizeof(result->error.field), "(kafka)");
        snprintf(result->error.reason, sizeof(result->error.reason), "%s", w.errstr);
    }
    return w.err;
}

nudgel_err_t nudgel_enqueue_message_sync(nudgel_producer_t *p, const char *json, size_t len,
                                         const nudgel_enqueue_opts_t *opts,
                                         nudgel_enqueue_result_t *result, int timeout_ms)
{
    return enqueue_sync(p, JOB_MESSAGE, json, len, opts, result, timeout_ms);
}

nudgel_err_t nudgel_enqueue_webhook_sync(nudgel_producer_t *p, const char *json, size_t len,
                                         const nudgel_enqueue_opts_t *opts,
                                         nudgel_enqueue_result_t *result, int timeout_ms)
{
    return enqueue_sync(p, JOB_WEBHOOK, json, len, opts, result, timeout_ms);
}

/* Empties the wake-up pipe (what it holds is only a count of wake-ups). */
static void event_fd_clear(nudgel_producer_t *p)
{
    char sink[64];
    while (read(p->event_fds[0], sink, sizeof(sink)) > 0)
        ;
}

int nudgel_producer_poll(nudgel_producer_t *p, int timeout_ms)
{
    if (p->event_fds[0] >= 0)
        event_fd_clear(p);
    return rd_kafka_poll(p->rk, timeout_ms);
}

int nudgel_producer_event_fd(nudgel_producer_t *p)
{
    static const char one = 1; /* librdkafka copies the payload */
    if (!p) {
        errno = EINVAL;
        return -1;
    }
    if (p->event_fds[0] >= 0)
        return p->event_fds[0];
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    /* Both ends non-blocking: librdkafka's write must never block its thread,
     * and a full pipe already says "wake up". */
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) != 0 ||
            fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) {
            int saved = errno;
            close(fds[0]);
            close(fds[1]);
            errno = saved;
            return -1;
        }
    }
    if (!(p->main_queue = rd_kafka_queue_get_main(p->rk))) {
        close(fds[0]);
        close(fds[1]);
        errno = ENOMEM;
        return -1;
    }
    p->event_fds[0] = fds[0];
    p->event_fds[1] = fds[1];
    rd_kafka_queue_io_event_enable(p->main_queue, fds[1], &one, sizeof(one));
    /* Reports queued before now wrote no wake-up: make the first poll come
     * (an empty pipe cannot refuse one byte). */
    ssize_t n = write(fds[1], &one, sizeof(one));
    (void)n;
    return fds[0];
}

nudgel_err_t nudgel_producer_flush(nudgel_producer_t *p, int timeout_ms)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(p->rk, timeout_ms);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ? NUDGEL_OK : NUDGEL_ERR_TIMED_OUT;
}

int nudgel_producer_in_flight(nudgel_producer_t *p)
{
    return rd_kafka_outq_len(p->rk);
}

void nudgel_producer_destroy(nudgel_producer_t *p)
{
    if (!p)
        return;
    if (p->main_queue) {
        rd_kafka_queue_io_event_enable(p->main_queue, -1, NULL, 0);
        rd_kafka_queue_destroy(p->main_queue);
        close(p->event_fds[0]);
        close(p->event_fds[1]);
    }
    rd_kafka_flush(p->rk, p->conf->message_timeout_ms);
    rd_kafka_topic_destroy(p->messages);
    rd_kafka_topic_destroy(p->webhooks);
    rd_kafka_destroy(p->rk);
    nudgel_producer_conf_destroy(p->conf);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
