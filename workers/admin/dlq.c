/*
 * dlq.c — see dlq.h.
 */
#define _GNU_SOURCE
#include "dlq.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "dlq_resend.h"
#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/topics.h"

#define HEADER_MAX 1024

typedef struct replay {
    rd_kafka_t *consumer, *producer;
    int timeout_ms;
    int64_t *ends; /* per partition: the end offset when the replay began */
    int partitions;
    long scanned, matched, replayed, resent, skipped;
    long truncated;     /* dead letters that kept only a prefix of the job: never replayed */
    long queued, acked; /* records handed to the producer, acknowledged by Kafka */
    long failed;        /* refused by the producer or Kafka, or no valid job to resend */
    bool progress;
    dlq_pg_t *pg; /* the receipts, asked only when a dead letter needs it */
} replay_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    replay_t *r = opaque;
    (void)rk;
    if (m->err)
        r->failed++;
    else
        r->acked++;
}

/*
 * The headers a job gets back: everything but the dead-letter and retry
 * ones, plus where it was replayed from; a resend (@p resent_from not NULL)
 * also loses the idempotency key (the original holds it) and names the
 * original.
 */
static rd_kafka_headers_t *replay_headers(const rd_kafka_message_t *m, const char *resent_from)
{
    static const char *const dropped[] = {NUDGEL_HDR_DLQ_REASON,
                                          NUDGEL_HDR_ORIGIN,
                                          NUDGEL_HDR_ATTEMPT,
                                          NUDGEL_HDR_NOT_BEFORE,
                                          NUDGEL_HDR_FIRST_SEEN,
                                          NUDGEL_HDR_LAST_ERROR,
                                          NULL,
                                          NULL};
    static const char *const dropped_resend[] = {NUDGEL_HDR_DLQ_REASON,      NUDGEL_HDR_ORIGIN,
                                                 NUDGEL_HDR_ATTEMPT,         NUDGEL_HDR_NOT_BEFORE,
                                                 NUDGEL_HDR_FIRST_SEEN,      NUDGEL_HDR_LAST_ERROR,
                                                 NUDGEL_HDR_IDEMPOTENCY_KEY, NULL};
    rd_kafka_headers_t *out =
        nudgel_message_headers_except(m, resent_from ? dropped_resend : dropped);
    char origin[512];
    snprintf(origin, sizeof(origin), "%s/%" PRId32 "/%" PRId64, rd_kafka_topic_name(m->rkt),
             m->partition, m->offset);
    rd_kafka_header_add(out, "nudgel-replay-of", -1, origin, -1);
    if (resent_from)
        rd_kafka_header_add(out, "nudgel-resent-from", -1, resent_from, -1);
    return out;
}

/* The filters a record's headers and timestamp decide (all but --reason). */
static bool matches(const rd_kafka_message_t *m, const nudgel_admin_dlq_opts_t *o)
{
    char text[HEADER_MAX];
    if (o->tenant) {
        nudgel_message_header(m, NUDGEL_HDR_TENANT, text, sizeof(text));
        if (strcmp(text, o->tenant) != 0)
            return false;
    }
    rd_kafka_timestamp_type_t type;
    int64_t ts = rd_kafka_message_timestamp(m, &type);
    if ((o->since_ms && ts < o->since_ms) || (o->until_ms && ts >= o->until_ms))
        return false;
    return true;
}

/* --reason in the dead-letter reason or the last retry error of the record itself. */
static bool reason_in_headers(const rd_kafka_message_t *m, const char *reason)
{
    char text[HEADER_MAX];
    nudgel_message_header(m, NUDGEL_HDR_DLQ_REASON, text, sizeof(text));
    if (strstr(text, reason))
        return true;
    nudgel_message_header(m, NUDGEL_HDR_LAST_ERROR, text, sizeof(text));
    return strstr(text, reason) != NULL;
}

/* The message id of a dead letter's payload, or "" when it has no valid one. */
static void letter_message_id(const rd_kafka_message_t *m, char id[NUDGEL_UUID_STR_LEN + 1])
{
    uint8_t raw[16];
    id[0] = '\0';
    json_t *doc = m->len ? json_loadb(m->payload, m->len, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(doc, "id"));
    if (text && nudgel_uuid_parse(text, raw) == 0)
        nudgel_uuid_format(raw, id);
    json_decref(doc);
}

static nudgel_err_t produce(replay_t *r, const char *dest, const rd_kafka_message_t *m,
                            const void *value, size_t len, const char *resent_from, char *errstr,
                            size_t errstr_size)
{
    rd_kafka_headers_t *hdrs = replay_headers(m, resent_from);
    rd_kafka_resp_err_t kerr =
        rd_kafka_producev(r->producer, RD_KAFKA_V_TOPIC(dest), RD_KAFKA_V_KEY(m->key, m->key_len),
                          RD_KAFKA_V_VALUE((void *)value, len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY | RD_KAFKA_MSG_F_BLOCK),
                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (kerr) {
        rd_kafka_headers_destroy(hdrs);
        snprintf(errstr, errstr_size, "producing to %s: %s", dest, rd_kafka_err2str(kerr));
        r->failed++;
        return NUDGEL_ERR_KAFKA;
    }
    r->queued++;
    return NUDGEL_OK;
}

/*
 * One dead letter that passed the header filters: --reason (the headers,
 * else the receipt's last error code), then a plain replay, a resend, or
 * nothing (--resend of a message a carrier took). Errors are Postgres's
 * (the replay stops); a record Kafka refuses is counted in r->failed.
 */
static nudgel_err_t handle(replay_t *r, const rd_kafka_message_t *m,
                           const nudgel_admin_dlq_opts_t *o, bool messages, const char *dest,
                           char *errstr, size_t errstr_size)
{
    char id[NUDGEL_UUID_STR_LEN + 1] = "", new_id[NUDGEL_UUID_STR_LEN + 1], why[512];
    dlq_receipt_info_t receipt = {.kind = DLQ_RECEIPT_NONE};
    nudgel_err_t err;
    bool header_reason = !o->reason || reason_in_headers(m, o->reason);
    if (messages && (o->resend || !header_reason)) {
        letter_message_id(m, id);
        if (id[0] && (err = dlq_pg_receipt(r->pg, id, &receipt, errstr, errstr_size)))
            return err;
    }
    if (!header_reason && !(receipt.error_code[0] && strstr(receipt.error_code, o->reason)))
        return NUDGEL_OK;
    r->matched++;
    char original_size[32] = "";
    nudgel_message_header(m, NUDGEL_HDR_DLQ_TRUNCATED, original_size, sizeof(original_size));
    if (original_size[0]) {
        /* Only a prefix of the job was kept (it was too large for the dead
         * letter topic): replaying it would send a broken job. */
        nudgel_log_warn("dead letter %s[%" PRId32 "]@%" PRId64 " not replayed: it keeps only "
                        "%zu of the job's %s bytes",
                        rd_kafka_topic_name(m->rkt), m->partition, m->offset, m->len,
                        original_size);
        r->truncated++;
        return NUDGEL_OK;
    }
    if (o->resend && receipt.kind == DLQ_RECEIPT_SENT) {
        r->skipped++;
        return NUDGEL_OK;
    }
    if (!(o->resend && receipt.kind == DLQ_RECEIPT_RESENDABLE)) {
        r->replayed++;
        if (!o->dry_run)
            produce(r, dest, m, m->payload, m->len, NULL, why, sizeof(why));
        return NUDGEL_OK;
    }
    r->resent++;
    if (o->dry_run)
        return NUDGEL_OK;
    char *job = NULL;
    size_t job_len = 0;
    err = dlq_pg_resend(r->pg, m->payload, m->len, id, o->generation > 0 ? o->generation : 1, &job,
                        &job_len, new_id, errstr, errstr_size);
    if (err == NUDGEL_ERR_INVALID_JSON || err == NUDGEL_ERR_INVALID_FIELD) {
        nudgel_log_warn("dead letter %s[%" PRId32 "]@%" PRId64 " (message %s) not resent: %s",
                        rd_kafka_topic_name(m->rkt), m->partition, m->offset, id, errstr);
        errstr[0] = '\0';
        r->failed++;
        return NUDGEL_OK;
    }
    if (err != NUDGEL_OK)
        return err;
    produce(r, dest, m, job, job_len, id, why, sizeof(why));
    free(job);
    return NUDGEL_OK;
}

static void draw(const replay_t *r, long total)
{
    if (!r->progress)
        return;
    double frac = total > 0 ? (double)r->scanned / (double)total : 1;
    int filled = (int)(frac * 30);
    fprintf(stderr, "\r[%.*s%*s] %ld/%ld scanned, %ld matched  ", filled,
            "##############################", 30 - filled, "", r->scanned, total, r->matched);
}

static void replay_close(replay_t *r)
{
    if (r->consumer) {
        rd_kafka_consumer_close(r->consumer);
        rd_kafka_destroy(r->consumer);
    }
    if (r->producer) {
        rd_kafka_flush(r->producer, r->timeout_ms);
        rd_kafka_destroy(r->producer);
    }
    free(r->ends);
}

nudgel_err_t nudgel_admin_dlq_replay(const nudgel_conf_t *conf, const nudgel_admin_dlq_opts_t *o,
                                     FILE *out, char *errstr, size_t errstr_size)
{
    replay_t r = {.timeout_ms = (int)nudgel_conf_get_int(conf, "admin.timeout_ms"),
                  .progress = isatty(STDERR_FILENO) != 0};
    char dlq[256], dest[256], inner[512];
    const char *ns = nudgel_conf_get_str(conf, "topics.namespace");
    rd_kafka_conf_t *cconf = NULL, *pconf = NULL;
    rd_kafka_topic_partition_list_t *assignment = NULL;
    const struct rd_kafka_metadata *md = NULL;
    nudgel_err_t err = NUDGEL_OK;
    long total = 0;

    bool messages = strcmp(o->kind, "messages") == 0;
    if (!messages && strcmp(o->kind, "webhooks") != 0) {
        snprintf(errstr, errstr_size, "--topic must be messages or webhooks");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (o->resend && !messages) {
        snprintf(errstr, errstr_size,
                 "--resend is for --topic messages (a webhook delivery is "
                 "sent again by a plain replay or `webhooks replay`)");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (!(r.pg = dlq_pg_new(conf))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    snprintf(dlq, sizeof(dlq), "%s%s", ns,
             messages ? NUDGEL_TOPIC_MESSAGES_DLQ : NUDGEL_TOPIC_WEBHOOKS_DLQ);
    snprintf(dest, sizeof(dest), "%s%s", ns,
             messages ? NUDGEL_TOPIC_MESSAGES : NUDGEL_TOPIC_WEBHOOKS);

    /* A consumer outside any group (assign, no commits): a replay leaves no trace. */
    if (!(cconf = nudgel_kafka_conf_new(conf, errstr, errstr_size)) ||
        !(pconf = nudgel_kafka_conf_new(conf, errstr, errstr_size))) {
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    rd_kafka_conf_set(cconf, "group.id", "nudgel-admin-dlq-replay", inner, sizeof(inner));
    rd_kafka_conf_set(cconf, "enable.auto.commit", "false", inner, sizeof(inner));
    rd_kafka_conf_set(cconf, "enable.auto.offset.store", "false", inner, sizeof(inner));
    if (!(r.consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, inner, sizeof(inner)))) {
        snprintf(errstr, errstr_size, "creating the consumer: %s", inner);
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    cconf = NULL;
    rd_kafka_conf_set(pconf, "acks", "all", inner, sizeof(inner));
    rd_kafka_conf_set(pconf, "enable.idempotence", "true", inner, sizeof(inner));
    rd_kafka_conf_set(pconf, "partitioner", "murmur2_random", inner, sizeof(inner));
    rd_kafka_conf_set_dr_msg_cb(pconf, dr_cb);
    rd_kafka_conf_set_opaque(pconf, &r);
    if (!(r.producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, inner, sizeof(inner)))) {
        snprintf(errstr, errstr_size, "creating the producer: %s", inner);
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    pconf = NULL;
    if ((err = nudgel_kafka_check_reachable(r.consumer, r.timeout_ms, inner, sizeof(inner)))) {
        snprintf(errstr, errstr_size, "%s", inner);
        goto out;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r.consumer, dlq, NULL);
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(r.consumer, 0, rkt, &md, r.timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (kerr || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, errstr_size, "%s: %s", dlq,
                 rd_kafka_err2str(kerr ? kerr
                                  : md ? md->topics[0].err
                                       : kerr));
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    r.partitions = md->topics[0].partition_cnt;
    r.ends = calloc((size_t)r.partitions, sizeof(*r.ends));
    assignment = rd_kafka_topic_partition_list_new(r.partitions);
    for (int p = 0; p < r.partitions; p++) {
        int64_t low = 0, high = 0;
        kerr = rd_kafka_query_watermark_offsets(r.consumer, dlq, p, &low, &high, r.timeout_ms);
        if (kerr) {
            snprintf(errstr, errstr_size, "%s[%d]: %s", dlq, p, rd_kafka_err2str(kerr));
            err = NUDGEL_ERR_KAFKA;
            goto out;
        }
        r.ends[p] = high;
        total += (long)(high - low);
        if (high > low)
            rd_kafka_topic_partition_list_add(assignment, dlq, p)->offset = low;
    }
    if (assignment->cnt && (kerr = rd_kafka_assign(r.consumer, assignment))) {
        snprintf(errstr, errstr_size, "assigning %s: %s", dlq, rd_kafka_err2str(kerr));
        err = NUDGEL_ERR_KAFKA;
        goto out;
    }
    int remaining = assignment->cnt;
    int64_t idle_deadline = nudgel_mono_us() + (int64_t)r.timeout_ms * 1000;
    while (remaining > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r.consumer, 100);
        rd_kafka_poll(r.producer, 0);
        if (!m) {
            if (nudgel_mono_us() > idle_deadline) {
                snprintf(errstr, errstr_size, "no record from %s within %d ms", dlq, r.timeout_ms);
                err = NUDGEL_ERR_TIMED_OUT;
                goto out;
            }
            continue;
        }
        idle_deadline = nudgel_mono_us() + (int64_t)r.timeout_ms * 1000;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->offset < r.ends[m->partition]) {
            r.scanned++;
            if (matches(m, o) &&
                (err = handle(&r, m, o, messages, dest, errstr, errstr_size)) != NUDGEL_OK) {
                rd_kafka_message_destroy(m);
                goto out;
            }
            if (r.scanned % 1000 == 0)
                draw(&r, total);
        }
        if (m->offset + 1 >= r.ends[m->partition])
            remaining--;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_flush(r.producer, r.timeout_ms);
    draw(&r, total);
    if (r.progress)
        fputc('\n', stderr);
    fprintf(out, "%s: %ld scanned, %ld matched, %ld %s to %s", dlq, r.scanned, r.matched,
            r.replayed, o->dry_run ? "would be replayed" : "replayed", dest);
    if (o->resend)
        fprintf(out, ", %ld %s as new messages, %ld skipped (a carrier took them)", r.resent,
                o->dry_run ? "would be resent" : "resent", r.skipped);
    if (r.truncated)
        fprintf(out, ", %ld not replayable (truncated: only a prefix of the job was kept)",
                r.truncated);
    fprintf(out, ", %ld failed\n", r.failed);
    if (r.failed || r.acked != r.queued) {
        snprintf(errstr, errstr_size, "%ld dead letter(s) not replayed",
                 r.replayed + r.resent - r.acked);
        err = NUDGEL_ERR_KAFKA;
    }
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (assignment)
        rd_kafka_topic_partition_list_destroy(assignment);
    if (cconf)
        rd_kafka_conf_destroy(cconf);
    if (pconf)
        rd_kafka_conf_destroy(pconf);
    replay_close(&r);
    dlq_pg_free(r.pg);
    return err;
}
