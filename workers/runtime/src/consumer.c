/*
 * consumer.c — the Kafka consumer (see nudgel/consumer.h).
 *
 * Owns the librdkafka consumer handle and its settings (the contract ones
 * and our defaults), the state of every partition ever assigned (its
 * offset tracker, its window, its pauses, a deferred head's due time), the
 * rebalance callback (a partition starts unpaused on assign; what is stored
 * is committed before a revocation), the jobs polled and not yet finished,
 * and the storing of each partition's contiguous offset as jobs finish. The
 * handle's statistics and errors go to a kafka_health monitor, read back by
 * nudgel_consumer_health(), with whether every subscribed topic exists yet
 * (consumer_topics.c).
 *
 * Its life on the event loop (the wake-up eventfd, the due/keepalive timer,
 * on_ready) is in consumer_loop.c; both share the state declared in
 * consumer_internal.h.
 *
 * Threads: one event loop (or one thread) owns a consumer; nothing here is
 * thread-safe.
 */
#define _GNU_SOURCE
#include "nudgel/consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer_internal.h"
#include "nudgel/kafka.h"
#include "nudgel/log.h"
#include "nudgel/offsets.h"
#include "nudgel/timeutil.h"

#define DISCARD_MAX 1024 /* messages one poll drops (errors, revoked, window full) at most */
/* fetch.min.bytes with nudgel_consumer_opts_t.fetch_wait_ms: more than arrives in that time
 * below full speed, so the wait bounds a fetch; a backlog fills it at once. */
#define FETCH_MIN_BYTES "1048576"

const nudgel_conf_entry_t nudgel_consumer_conf[] = {
    {"consumer.window", NUDGEL_CONF_INT, "5000", 1, 100000, NULL, 0,
     "Jobs of one partition in flight at most; a full window pauses the partition (and a "
     "pause drops what librdkafka prefetched, so keep it above a worker's own in-flight cap)."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

static void job_link(nudgel_consumer_t *c, nudgel_job_ref_t *job)
{
    job->prev = NULL;
    job->next = c->live;
    if (c->live)
        c->live->prev = job;
    c->live = job;
}

static void job_unlink(nudgel_consumer_t *c, nudgel_job_ref_t *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        c->live = job->next;
    if (job->next)
        job->next->prev = job->prev;
}

static part_state_t *find_part(nudgel_consumer_t *c, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < c->part_count; i++)
        if (c->parts[i]->partition == partition && strcmp(c->parts[i]->topic, topic) == 0)
            return c->parts[i];
    return NULL;
}

/* The state of a newly assigned partition: reused if it was ours before. */
static part_state_t *attach_part(nudgel_consumer_t *c, const char *topic, int32_t partition)
{
    char errstr[256];
    part_state_t *p = find_part(c, topic, partition);
    if (!p) {
        if (c->part_count == MAX_PARTITIONS) {
            nudgel_log_error("more than %d partitions assigned; %s[%d] is not tracked",
                             MAX_PARTITIONS, topic, partition);
            return NULL;
        }
        p = calloc(1, sizeof(*p));
        if (!p || !(p->topic = strdup(topic)) ||
            nudgel_offsets_new(c->window, &p->offsets, errstr, sizeof(errstr)) != NUDGEL_OK) {
            nudgel_log_error("tracking %s[%d]: out of memory", topic, partition);
            if (p)
                free(p->topic);
            free(p);
            return NULL;
        }
        p->partition = partition;
        c->parts[c->part_count++] = p;
    } else {
        nudgel_offsets_reset(p->offsets);
    }
    p->assigned = true;
    p->window_paused = false;
    p->deferred_until = 0;
    p->hop_on_ms = 0;
    p->paused = false;
    return p;
}

/* Tells librdkafka to pause or resume @p p when its wanted state changed. */
static void apply_pause(nudgel_consumer_t *c, part_state_t *p)
{
    bool want =
        p->assigned && (p->window_paused || p->deferred_until != 0 || c->pause_reasons != 0);
    if (!p->assigned || want == p->paused)
        return;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
    rd_kafka_resp_err_t err =
        want ? rd_kafka_pause_partitions(c->rk, list) : rd_kafka_resume_partitions(c->rk, list);
    if (err)
        nudgel_log_warn("%s %s[%d]: %s", want ? "pausing" : "resuming", p->topic, p->partition,
                        rd_kafka_err2str(err));
    else
        p->paused = want;
    rd_kafka_topic_partition_list_destroy(list);
}

/* Stores @p p's contiguous offset when it moved. Returns whether it did. */
static bool store_offset(nudgel_consumer_t *c, part_state_t *p)
{
    int64_t next = nudgel_offsets_committable(p->offsets);
    if (next < 0)
        return false;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = next;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, list);
    if (err || list->elems[0].err)
        nudgel_log_warn("storing offset %lld of %s[%d]: %s", (long long)next, p->topic,
                        p->partition, rd_kafka_err2str(err ? err : list->elems[0].err));
    rd_kafka_topic_partition_list_destroy(list);
    return true;
}

static void on_assign(nudgel_consumer_t *c, rd_kafka_topic_partition_list_t *parts,
                      bool incremental)
{
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (incremental)
        error = rd_kafka_incremental_assign(c->rk, parts);
    else
        err = rd_kafka_assign(c->rk, parts);
    if (error || err) {
        nudgel_log_error("assigning partitions: %s",
                         error ? rd_kafka_error_string(error) : rd_kafka_err2str(err));
        if (error)
            rd_kafka_error_destroy(error);
        return;
    }
    /*
     * librdkafka keeps a partition's application pause across unassign and
     * assign (it only lifts its own pause when a partition is removed), so a
     * partition revoked or lost while we had it paused (in-flight
     * backpressure, a full window, a deferred retry-tier head) would come
     * back paused for good while we believe it runs: after a broker restart
     * the session timed out with every partition paused, and the reassigned
     * partitions never fetched again. Start every assigned partition
     * unpaused; apply_pause() then pauses what should be paused now.
     */
    rd_kafka_resp_err_t rerr = rd_kafka_resume_partitions(c->rk, parts);
    if (rerr)
        nudgel_log_warn("resuming newly assigned partitions: %s", rd_kafka_err2str(rerr));
    for (int i = 0; i < parts->cnt; i++) {
        part_state_t *p = attach_part(c, parts->elems[i].topic, parts->elems[i].partition);
        if (p)
            apply_pause(c, p);
    }
    nudgel_log_info("assigned %d partition(s); %zu in all", parts->cnt,
                    nudgel_consumer_assigned(c));
}

/*
 * Revocation: every finished prefix is already stored; commit it now, while
 * the partitions are still ours, then let them go. Unfinished jobs of these
 * partitions will be re-delivered to the next owner.
 */
static void on_revoke(nudgel_consumer_t *c, rd_kafka_topic_partition_list_t *parts,
                      bool incremental)
{
    size_t unfinished = 0;
    for (int i = 0; i < parts->cnt; i++) {
        part_state_t *p = find_part(c, parts->elems[i].topic, parts->elems[i].partition);
        if (p && p->assigned)
            unfinished += nudgel_offsets_in_flight(p->offsets);
    }
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        nudgel_log_warn("committing before revocation: %s", rd_kafka_err2str(err));
    for (int i = 0; i < parts->cnt; i++) {
        part_state_t *p = find_part(c, parts->elems[i].topic, parts->elems[i].partition);
        if (!p)
            continue;
        p->assigned = false;
        p->paused = false;
        p->window_paused = false;
        p->deferred_until = 0;
        p->generation++;
        nudgel_offsets_reset(p->offsets);
    }
    if (incremental) {
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(c->rk, parts);
        if (error) {
            nudgel_log_error("unassigning: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    } else {
        rd_kafka_assign(c->rk, NULL);
    }
    nudgel_log_info("revoked %d partition(s) with %zu job(s) unfinished; %zu assigned", parts->cnt,
                    unfinished, nudgel_consumer_assigned(c));
}

/* Statistics, served inside a poll: kept for nudgel_consumer_health(). */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    nudgel_consumer_t *c = opaque;
    (void)rk;
    nudgel_kafka_monitor_keep_stats(c->monitor, json, json_len, nudgel_mono_us());
    return 1; /* the monitor keeps json and parses it when health is asked for */
}

/* Errors of the handle, served inside a poll: logged here once (see kafka.h). */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    nudgel_consumer_t *c = opaque;
    nudgel_kafka_monitor_error(c->monitor, err, nudgel_mono_us());
    nudgel_kafka_log_error(rk, err, reason);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    nudgel_consumer_t *c = opaque;
    /* NULL while no protocol is agreed (a revoke while closing before the first join). */
    const char *protocol = rd_kafka_rebalance_protocol(rk);
    bool incremental = protocol && strcmp(protocol, "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(c, parts, incremental);
    else
        on_revoke(c, parts, incremental);
}

/* nudgel_conf_kafka_foreach() callback: is @p prop the one named by @p opaque? */
static int is_prop(const char *prop, const char *value, void *opaque)
{
    (void)value;
    return strcmp(prop, (const char *)opaque) == 0;
}

/*
 * Our defaults for librdkafka properties, each applied unless kafka.* sets
 * it. The prefetch queue is capped at 16 MiB (librdkafka's default is 64 MiB
 * per consumer): a worker's memory is bounded by its jobs in flight, not by
 * how far ahead librdkafka reads. A new group starts from the beginning
 * (jobs enqueued before the first worker count).
 */
static const char *const kafka_defaults[][2] = {
    {"auto.offset.reset", "earliest"},
    {"queued.max.messages.kbytes", "16384"},
};

/* Sets @p prop to @p value unless kafka.* sets it. @returns false (with @p inner) on failure. */
static bool default_prop(rd_kafka_conf_t *kconf, const nudgel_conf_t *conf, const char *prop,
                         const char *value, char *inner, size_t inner_size)
{
    return nudgel_conf_kafka_foreach(conf, is_prop, (void *)prop) ||
           rd_kafka_conf_set(kconf, prop, value, inner, inner_size) == RD_KAFKA_CONF_OK;
}

nudgel_consumer_t *nudgel_consumer_new(const nudgel_conf_t *conf, const char *group_id,
                                       const char *const *topics, size_t topic_count, char *errstr,
                                       size_t errstr_size)
{
    return nudgel_consumer_new_opts(conf, group_id, topics, topic_count, NULL, errstr, errstr_size);
}

nudgel_consumer_t *nudgel_consumer_new_opts(const nudgel_conf_t *conf, const char *group_id,
                                            const char *const *topics, size_t topic_count,
                                            const nudgel_consumer_opts_t *opts, char *errstr,
                                            size_t errstr_size)
{
    nudgel_consumer_t *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *kconf = NULL;
    rd_kafka_topic_partition_list_t *subscription = NULL;
    char inner[512];
    if (!c) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    c->window = (size_t)nudgel_conf_get_int(conf, "consumer.window");
    c->wake_fd = -1;
    if (!(c->monitor = nudgel_kafka_monitor_new())) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (!(kconf = nudgel_kafka_conf_new(conf, errstr, errstr_size)) ||
        nudgel_kafka_monitor_conf(kconf, conf, errstr, errstr_size) != NUDGEL_OK)
        goto fail;
    /* Contract settings first; kafka.* pass-through came before and is overridden only here. */
    static const char *const fixed[][2] = {
        {"enable.auto.offset.store", "false"},
        {"enable.auto.commit", "true"},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"enable.partition.eof", "false"},
    };
    if (rd_kafka_conf_set(kconf, "group.id", group_id, inner, sizeof(inner)) != RD_KAFKA_CONF_OK)
        goto conf_fail;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (rd_kafka_conf_set(kconf, fixed[i][0], fixed[i][1], inner, sizeof(inner)) !=
            RD_KAFKA_CONF_OK)
            goto conf_fail;
    for (size_t i = 0; i < sizeof(kafka_defaults) / sizeof(kafka_defaults[0]); i++)
        if (!default_prop(kconf, conf, kafka_defaults[i][0], kafka_defaults[i][1], inner,
                          sizeof(inner)))
            goto conf_fail;
    if (opts && opts->fetch_wait_ms > 0) {
        char wait[16];
        snprintf(wait, sizeof(wait), "%d", opts->fetch_wait_ms);
        if (!default_prop(kconf, conf, "fetch.wait.max.ms", wait, inner, sizeof(inner)) ||
            !default_prop(kconf, conf, "fetch.min.bytes", FETCH_MIN_BYTES, inner, sizeof(inner)))
            goto conf_fail;
    }
    rd_kafka_conf_set_rebalance_cb(kconf, rebalance_cb);
    rd_kafka_conf_set_stats_cb(kconf, stats_cb);
    nudgel_kafka_conf_set_error_cb(kconf, error_cb);
    rd_kafka_conf_set_opaque(kconf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kconf, inner, sizeof(inner));
    if (!c->rk) {
        snprintf(errstr, errstr_size, "creating the Kafka consumer: %s", inner);
        goto fail;
    }
    kconf = NULL;
    rd_kafka_poll_set_consumer(c->rk);
    subscription = rd_kafka_topic_partition_list_new((int)topic_count);
    for (size_t i = 0; i < topic_count; i++)
        rd_kafka_topic_partition_list_add(subscription, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, subscription);
    rd_kafka_topic_partition_list_destroy(subscription);
    if (err) {
        snprintf(errstr, errstr_size, "subscribing: %s", rd_kafka_err2str(err));
        goto fail;
    }
    if (!(c->topics_check = consumer_topics_start(c->rk, topics, topic_count))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    return c;
conf_fail:
    snprintf(errstr, errstr_size, "consumer configuration: %s", inner);
fail:
    if (kconf)
        rd_kafka_conf_destroy(kconf);
    if (c->rk)
        rd_kafka_destroy(c->rk);
    nudgel_kafka_monitor_free(c->monitor);
    free(c);
    return NULL;
}

/* Resumes partitions whose deferred head is due. */
static void resume_due(nudgel_consumer_t *c)
{
    int64_t now = 0;
    for (size_t i = 0; i < c->part_count; i++) {
        part_state_t *p = c->parts[i];
        if (!p->deferred_until)
            continue;
        if (!now)
            now = nudgel_now_unix_ms();
        if (p->deferred_until <= now) {
            p->deferred_until = 0;
            apply_pause(c, p);
        }
    }
}

void nudgel_consumer_defer(nudgel_consumer_t *c, nudgel_job_ref_t *job, int64_t resume_at_ms)
{
    part_state_t *p = job->part;
    c->in_flight--;
    if (p->assigned && job->generation == p->generation &&
        nudgel_offsets_unstart(p->offsets, job->msg->offset) == NUDGEL_OK) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = job->msg->offset;
        p->deferred_until = resume_at_ms > 0 ? resume_at_ms : 1;
        apply_pause(c, p);
        rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, list, 5000);
        if (error) {
            nudgel_log_warn("rewinding %s[%d] to %lld: %s", p->topic, p->partition,
                            (long long)job->msg->offset, rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
        rd_kafka_topic_partition_list_destroy(list);
    } else {
        nudgel_log_warn("defer of %s[%d]@%lld ignored: not the newest job polled", p->topic,
                        p->partition, (long long)job->msg->offset);
    }
    job_unlink(c, job);
    rd_kafka_message_destroy(job->msg);
    free(job);
    if (c->loop)
        consumer_schedule(c);
}

/*
 * A job for @p msg, or NULL when the message is dropped (an error, a
 * partition revoked meanwhile, a full window); @p msg is taken either way.
 */
static nudgel_job_ref_t *take(nudgel_consumer_t *c, rd_kafka_message_t *msg)
{
    if (msg->err) {
        NUDGEL_LOG_CTX(msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ? NUDGEL_LOG_DEBUG
                                                                    : NUDGEL_LOG_WARN,
                       NULL, "consumer: %s", rd_kafka_message_errstr(msg));
        rd_kafka_message_destroy(msg);
        return NULL;
    }
    part_state_t *p = find_part(c, rd_kafka_topic_name(msg->rkt), msg->partition);
    if (!p || !p->assigned) {
        /* Fetched before a revocation took effect: the next owner has it. */
        rd_kafka_message_destroy(msg);
        return NULL;
    }
    nudgel_err_t err = nudgel_offsets_started(p->offsets, msg->offset);
    if (err != NUDGEL_OK) {
        /* Window full (pause arrived late) or a re-fetch after resume: hand the
         * message back by seeking to it; it comes again when there is room. */
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = msg->offset;
        if (err == NUDGEL_ERR_WINDOW_FULL) {
            p->window_paused = true;
            apply_pause(c, p);
            rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, list, 5000);
            if (error)
                rd_kafka_error_destroy(error);
        } else {
            nudgel_log_debug("%s[%d]@%lld polled again; already in flight", p->topic, p->partition,
                             (long long)msg->offset);
        }
        rd_kafka_topic_partition_list_destroy(list);
        rd_kafka_message_destroy(msg);
        return NULL;
    }
    nudgel_job_ref_t *job = malloc(sizeof(*job));
    if (!job) {
        nudgel_log_error("out of memory holding a job; it will be re-delivered");
        rd_kafka_message_destroy(msg);
        return NULL;
    }
    job->msg = msg;
    job->part = p;
    job->generation = p->generation;
    job_link(c, job);
    c->in_flight++;
    if (nudgel_offsets_in_flight(p->offsets) >= c->window) {
        p->window_paused = true;
        apply_pause(c, p);
    }
    return job;
}

nudgel_job_ref_t *nudgel_consumer_poll(nudgel_consumer_t *c, int timeout_ms)
{
    nudgel_job_ref_t *job = NULL;
    resume_due(c);
    c->last_poll_us = nudgel_mono_us();
    c->polls++;
    c->more = false;
    /* A dropped message is no reason to stop: NULL means librdkafka had
     * nothing more (what the loop's wake-up contract needs), or the budget
     * ran out, and then the timer calls on_ready again. */
    for (int i = 0; !job; i++) {
        if (i == DISCARD_MAX) {
            c->more = true;
            break;
        }
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(c->rk, i == 0 ? timeout_ms : 0);
        if (!msg)
            break;
        job = take(c, msg);
    }
    if (c->loop)
        consumer_schedule(c);
    return job;
}

const rd_kafka_message_t *nudgel_job_message(const nudgel_job_ref_t *job)
{
    return job->msg;
}

void nudgel_consumer_done(nudgel_consumer_t *c, nudgel_job_ref_t *job)
{
    part_state_t *p = job->part;
    c->in_flight--;
    if (p->assigned && job->generation == p->generation) {
        if (nudgel_offsets_completed(p->offsets, job->msg->offset) == NUDGEL_OK)
            store_offset(c, p);
        if (p->window_paused && nudgel_offsets_in_flight(p->offsets) <= c->window / 2) {
            p->window_paused = false;
            apply_pause(c, p);
        }
    }
    job_unlink(c, job);
    rd_kafka_message_destroy(job->msg);
    free(job);
}

bool nudgel_consumer_job_followed(nudgel_consumer_t *c, const nudgel_job_ref_t *job)
{
    int64_t low = -1, high = -1;
    if (rd_kafka_get_watermark_offsets(c->rk, job->part->topic, job->part->partition, &low,
                                       &high) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0)
        return true;
    return high > job->msg->offset + 1;
}

int64_t nudgel_consumer_job_last_hop_on(const nudgel_job_ref_t *job)
{
    return job->part->hop_on_ms;
}

void nudgel_consumer_job_hopped_on(nudgel_job_ref_t *job, int64_t now_ms)
{
    job->part->hop_on_ms = now_ms;
}

void nudgel_consumer_abandon(nudgel_consumer_t *c, nudgel_job_ref_t *job)
{
    c->in_flight--;
    job_unlink(c, job);
    rd_kafka_message_destroy(job->msg); /* its offset never moves past it */
    free(job);
}

void nudgel_consumer_pause(nudgel_consumer_t *c, nudgel_pause_reason_t reason)
{
    c->pause_reasons |= (unsigned)reason;
    for (size_t i = 0; i < c->part_count; i++)
        apply_pause(c, c->parts[i]);
}

void nudgel_consumer_resume(nudgel_consumer_t *c, nudgel_pause_reason_t reason)
{
    c->pause_reasons &= ~(unsigned)reason;
    for (size_t i = 0; i < c->part_count; i++)
        apply_pause(c, c->parts[i]);
}

size_t nudgel_consumer_in_flight(const nudgel_consumer_t *c)
{
    return c->in_flight;
}

size_t nudgel_consumer_assigned(const nudgel_consumer_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->part_count; i++)
        n += c->parts[i]->assigned;
    return n;
}

int32_t nudgel_consumer_assigned_of(const nudgel_consumer_t *c, const char *topic)
{
    int32_t n = 0;
    for (size_t i = 0; i < c->part_count; i++)
        n += c->parts[i]->assigned && strcmp(c->parts[i]->topic, topic) == 0;
    return n;
}

int32_t nudgel_consumer_partition_count(nudgel_consumer_t *c, const char *topic, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, topic, NULL);
    int32_t count = -1;
    if (!rkt)
        return -1;
    if (rd_kafka_metadata(c->rk, 0, rkt, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && !md->topics[0].err)
        count = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return count;
}

void nudgel_consumer_report_to(nudgel_consumer_t *c, nudgel_fleet_metrics_t *fm,
                               const char *const *topics, size_t count)
{
    c->fleet_metrics = fm;
    c->lag_slot = nudgel_fleet_metrics_lag_slot(fm);
    nudgel_fleet_metrics_topics(fm, topics, count);
}

void nudgel_consumer_health(const nudgel_consumer_t *c, nudgel_kafka_health_t *out)
{
    nudgel_kafka_monitor_get(c->monitor, out);
    nudgel_fleet_metrics_lags(c->fleet_metrics, c->lag_slot, out);
    out->topics_missing =
        consumer_topics_missing(c->topics_check, out->missing_topic, sizeof(out->missing_topic));
}

int32_t nudgel_consumer_topic_partitions(const nudgel_consumer_t *c, const char *topic)
{
    return consumer_topics_partitions(c->topics_check, topic);
}

void nudgel_consumer_close(nudgel_consumer_t *c)
{
    if (!c)
        return;
    consumer_detach(c);
    consumer_topics_stop(c->topics_check);
    c->topics_check = NULL;
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        nudgel_log_warn("final commit: %s", rd_kafka_err2str(err));
    err = rd_kafka_consumer_close(c->rk);
    if (err)
        nudgel_log_warn("closing the consumer: %s", rd_kafka_err2str(err));
    /* Abandoned jobs: their offsets were never stored, so they come again;
     * their messages must go before rd_kafka_destroy(), which otherwise
     * waits for them for ever (a worker stopping on a fatal error hung). */
    size_t abandoned = 0;
    while (c->live) {
        nudgel_job_ref_t *job = c->live;
        job_unlink(c, job);
        rd_kafka_message_destroy(job->msg);
        free(job);
        abandoned++;
    }
    if (abandoned)
        nudgel_log_warn("%zu unfinished job(s) abandoned at close; they will be re-delivered",
                        abandoned);
    rd_kafka_destroy(c->rk);
    for (size_t i = 0; i < c->part_count; i++) {
        nudgel_offsets_free(c->parts[i]->offsets);
        free(c->parts[i]->topic);
        free(c->parts[i]);
    }
    nudgel_kafka_monitor_free(c->monitor);
    free(c);
}
