/*
 * intake.c — where jobs enter: the two consumers (the jobs topic in group
 * messages.group_id, the retry tiers in a second group), polled on the
 * event loop only when they say there is something to poll, and only while
 * there is room under messages.max_in_flight. A retry-tier job just polled
 * is handed back when not yet due, or hops on when it is due so much later
 * that it would hold back the hops behind it (nudgel/retry_tiers.h); a due
 * one is checked against the
 * contract headers, parsed, then queued for the batched claim (claims.c). A
 * job that is not ours or cannot be parsed is rejected here: a failed status
 * event and a dead letter, no receipt.
 *
 * Polling follows the consumer's wake-up contract (nudgel/consumer.h): a
 * wake-up comes when its queue goes from empty to non-empty, so a consumer
 * that said "ready" is polled until it has nothing more; at the cap it is
 * not, and it is polled again as soon as a job ends (the turn hook), and
 * once every 500 ms meanwhile, one job at a time, which serves rebalances
 * as before. The Kafka readiness conditions ("kafka" for the jobs topic,
 * "kafka:retry" for the retry tiers) follow the consumers' health after each
 * round of polls (statistics arrive inside polls), by the runtime's one rule
 * (not ready while a topic does not exist yet: a worker started before its
 * topics waits for them, and learns the jobs topic's partition count then).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/retry_tiers.h"
#include "nudgel/timeutil.h"

#include "messages.h"

#define AT_CAP_POLL_US 500000 /* at the in-flight cap, one poll this often still */
#define POLL_BUDGET    256    /* jobs one consumer gives per turn */
#define STATS_STALE_US (15 * 1000000LL)
#define SOURCE_RETRY   0
#define SOURCE_JOBS    1

static nudgel_consumer_t *source(const worker_t *w, int k)
{
    return k == SOURCE_RETRY ? w->retry_consumer : w->consumer;
}

size_t intake_in_flight(const worker_t *w)
{
    return (w->consumer ? nudgel_consumer_in_flight(w->consumer) : 0) +
           (w->retry_consumer ? nudgel_consumer_in_flight(w->retry_consumer) : 0);
}

static bool room(const worker_t *w)
{
    return intake_in_flight(w) < w->max_in_flight;
}

/*
 * A job that cannot be parsed: a dead letter with the reason, and a failed
 * status event so the caller hears of it. The event's subject is the job's
 * id when it has a valid one, else an id derived from where the bytes were
 * (topic/partition/offset), stable over redeliveries; its tenant is the
 * job's, else the header's or the Kafka key's, else "unknown"
 * (nudgel_job_derived_ids()). No receipt is written: with no valid id there
 * is no row to own it.
 */
void reject_malformed(worker_t *w, msg_t *m, const char *label, const char *reason)
{
    const rd_kafka_message_t *km = nudgel_job_kafka(&m->life);
    char subject[NUDGEL_UUID_STR_LEN + 1], tenant[65];
    json_t *doc = km->len ? json_loadb(km->payload, km->len, 0, NULL) : NULL;
    nudgel_job_derived_ids(km, doc, subject, tenant);
    json_decref(doc);
    nudgel_log_ctx_t ctx = {.tenant = tenant, .job_id = subject, .trace_id = m->trace_id};
    NUDGEL_LOG_LIMITED(&w->malformed_log, NUDGEL_LOG_WARN, &ctx, "malformed job at %s[%d]@%lld: %s",
                       rd_kafka_topic_name(km->rkt), km->partition, (long long)km->offset, reason);
    nudgel_metric_add(w->m_outcomes, "malformed", 1);
    json_t *data = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:b}, s:i}", "message_id", subject,
                             "tenant_id", tenant, "status", "failed", "error", "code", "malformed",
                             "message", reason, "permanent", 1, "attempt", m->attempt + 1);
    publish_event_for(m, subject, tenant, "failed", data);
    nudgel_job_failed_because(&m->life, label); /* before the dead letter: it takes the label */
    publish_dlq(m, reason, &ctx);
}

/* A job just polled: due? ours? parseable? Then it waits for the batched claim. */
static void intake_handle(worker_t *w, nudgel_consumer_t *from, nudgel_job_ref_t *ref)
{
    const rd_kafka_message_t *km = nudgel_job_message(ref);
    int64_t now = nudgel_now_unix_ms(), until = 0, attempt = 0;
    const char *hop_topic = NULL;
    nudgel_retry_tiers_t tiers = {(size_t)w->tiers, w->topic_retry, w->tier_delay_ms};
    nudgel_retry_head_t head = nudgel_retry_head_check(&tiers, from, ref, now, &until, &hop_topic);
    if (head == NUDGEL_RETRY_HEAD_WAIT) {
        nudgel_consumer_defer(from, ref, until);
        return;
    }
    msg_t *m = calloc(1, sizeof(*m));
    if (!m) {
        nudgel_consumer_defer(from, ref, now + 1000);
        return;
    }
    nudgel_job_begin(w->lc, &m->life, from, ref);
    msg_track(w, m);
    if (head == NUDGEL_RETRY_HEAD_HOP_ON) {
        /* Due much later than the hops behind it: on to the tier of its remaining
         * wait, unchanged (not an attempt), so the partition moves on. */
        nudgel_log_debug("retry hop at %s[%d]@%lld hops on to %s", rd_kafka_topic_name(km->rkt),
                         (int)km->partition, (long long)km->offset, hop_topic);
        nudgel_metric_add(w->m_outcomes, "hopped_on", 1);
        nudgel_job_publish_hop_on(&m->life, hop_topic);
        msg_release(m);
        return;
    }
    m->first_seen_ms = now;
    nudgel_job_header_int(km, NUDGEL_HDR_ATTEMPT, &attempt);
    nudgel_job_header_int(km, NUDGEL_HDR_FIRST_SEEN, &m->first_seen_ms);
    m->attempt = (int)attempt;
    nudgel_message_header(km, NUDGEL_HDR_TRACEPARENT, m->traceparent, sizeof(m->traceparent));
    nudgel_log_trace_id(m->traceparent, m->trace_id);

    /* The contract headers (DESIGN §4): a job of another schema, or one whose
     * nudgel-tenant header names another tenant, is not ours to send. */
    char reason[400];
    nudgel_field_error_t ferr;
    nudgel_job_parse_opts_t popts = {.normalise_to = true};
    if (!nudgel_job_envelope_ok(km, NUDGEL_SCHEMA_MESSAGE_JOB_V1, NULL, reason, sizeof(reason))) {
        reject_malformed(w, m, NUDGEL_MSG_FAIL_MALFORMED, reason);
        msg_release(m);
        return;
    }
    if (nudgel_message_job_parse(km->payload, km->len, &popts, &m->job, &ferr) != NUDGEL_OK) {
        snprintf(reason, sizeof(reason), "%s: %s", ferr.field, ferr.reason);
        reject_malformed(w, m, NUDGEL_MSG_FAIL_MALFORMED, reason);
        msg_release(m);
        return;
    }
    m->parsed = true;
    if (!nudgel_job_envelope_ok(km, NUDGEL_SCHEMA_MESSAGE_JOB_V1, m->job.tenant_id, reason,
                                sizeof(reason))) {
        reject_malformed(w, m, NUDGEL_MSG_FAIL_MALFORMED, reason);
        msg_release(m);
        return;
    }
    if (nudgel_batchq_push(w->to_claim, m) != NUDGEL_OK) {
        msg_fail(m); /* the job just polled: handed back, fetched again in a second */
        msg_release(m);
    }
}

/*
 * Polls consumer @p k for up to @p max jobs while it has some and (unless
 * @p at_cap) there is room. A poll that finds nothing means the consumer
 * will say when it has more.
 */
static void poll_source(worker_t *w, int k, int max, bool at_cap)
{
    nudgel_consumer_t *c = source(w, k);
    for (int i = 0; i < max && (at_cap || room(w)); i++) {
        nudgel_job_ref_t *ref = nudgel_consumer_poll(c, 0);
        if (!ref) {
            w->want_poll[k] = false;
            return;
        }
        intake_handle(w, c, ref);
        nudgel_lifecycle_polled_end(w->lc);
    }
}

/* After polls: the assignment may have changed, and new statistics arrived. */
static void after_polls(worker_t *w)
{
    nudgel_kafka_health_t h;
    if (w->total_partitions < 1) /* the topic did not exist at start: known once it does */
        w->total_partitions = nudgel_consumer_topic_partitions(w->consumer, w->topic_jobs);
    update_fleet_share(w);
    nudgel_consumer_health(w->consumer, &h);
    nudgel_kafka_health_readiness(&h, w->kafka_ready);
    nudgel_consumer_health(w->retry_consumer, &h);
    nudgel_kafka_health_readiness(&h, w->kafka_retry_ready);
    if (!w->want_poll[SOURCE_RETRY] && !w->want_poll[SOURCE_JOBS])
        return;
    if (room(w))
        kick(w); /* the budget ran out: more next turn */
    else if (!nudgel_timer_armed(w->at_cap, NULL))
        nudgel_timer_arm_in(w->at_cap, AT_CAP_POLL_US);
}

/* At the cap: one poll of each consumer that has something, as a keepalive of intake. */
static void on_at_cap(void *opaque)
{
    worker_t *w = opaque;
    for (int k = 0; k < 2; k++)
        if (w->want_poll[k])
            poll_source(w, k, 1, true);
    after_polls(w);
}

void intake_turn(void *opaque)
{
    worker_t *w = opaque;
    bool want = w->want_poll[SOURCE_RETRY] || w->want_poll[SOURCE_JOBS];
    if (want && room(w)) {
        for (int k = 0; k < 2; k++)
            if (w->want_poll[k])
                poll_source(w, k, POLL_BUDGET, false);
        after_polls(w);
    } else if (want && !nudgel_timer_armed(w->at_cap, NULL)) {
        nudgel_timer_arm_in(w->at_cap, AT_CAP_POLL_US);
    }
    nudgel_metric_set(w->m_in_flight, NULL, (double)intake_in_flight(w));
    nudgel_metric_set(w->m_waiting, "claim", (double)nudgel_batchq_count(w->to_claim));
    nudgel_metric_set(w->m_waiting, "recipient", (double)nudgel_keyq_total_waiting(w->recipients));
    nudgel_metric_set(w->m_waiting, "tenant", (double)nudgel_keyq_total_waiting(w->tenant_waits));
    nudgel_metric_set(w->m_waiting, "outcome", (double)nudgel_batchq_count(w->to_record));
}

/* The consumers' wake-ups: the turn hook polls (this turn: hooks run after fds and timers). */
static void on_retry_ready(void *opaque)
{
    worker_t *w = opaque;
    w->want_poll[SOURCE_RETRY] = true;
}

static void on_jobs_ready(void *opaque)
{
    worker_t *w = opaque;
    w->want_poll[SOURCE_JOBS] = true;
}

void intake_pause(worker_t *w, bool pause)
{
    for (int k = 0; k < 2; k++) {
        if (!source(w, k))
            continue;
        if (pause)
            nudgel_consumer_pause(source(w, k), NUDGEL_PAUSE_POSTGRES);
        else
            nudgel_consumer_resume(source(w, k), NUDGEL_PAUSE_POSTGRES);
    }
    kick(w);
}

void intake_drain(worker_t *w)
{
    nudgel_consumer_pause(w->consumer, NUDGEL_PAUSE_SHUTDOWN);
    nudgel_consumer_pause(w->retry_consumer, NUDGEL_PAUSE_SHUTDOWN);
}

/*
 * Two consumers, two groups: the jobs topic in messages.group_id, the retry
 * tiers in messages.group_id + ".retry". In one group the assignor balances
 * the total partition count over all five topics, so a second worker could
 * get only retry-tier partitions and no share of the jobs topic (nor of the
 * gateways' TPS). Apart, each set is balanced on its own, and the jobs
 * group's lag is what autoscaling watches. Both start paused for Postgres:
 * postgres_update() lets them go once the connections are up.
 */
nudgel_err_t intake_open(worker_t *w, char *errstr, size_t errstr_size)
{
    const char *jobs_topic[1] = {w->topic_jobs};
    const char *group = nudgel_conf_get_str(w->conf, "messages.group_id");
    char retry_group[256];
    snprintf(retry_group, sizeof(retry_group), "%s.retry", group);
    if (!(w->consumer = nudgel_consumer_new(w->conf, group, jobs_topic, 1, errstr, errstr_size)) ||
        !(w->retry_consumer = nudgel_consumer_new(w->conf, retry_group, w->topic_retry,
                                                  (size_t)w->tiers, errstr, errstr_size)))
        return NUDGEL_ERR_CONFIG;
    nudgel_fleet_metrics_t *fm = nudgel_worker_fleet_metrics(w->rt);
    nudgel_consumer_report_to(w->consumer, fm, jobs_topic, 1);
    nudgel_consumer_report_to(w->retry_consumer, fm, w->topic_retry, (size_t)w->tiers);
    w->total_partitions = nudgel_consumer_partition_count(
        w->consumer, w->topic_jobs,
        (int)nudgel_conf_get_int(w->conf, "pg.connect_timeout_s") * 1000);
    w->shared_with = -1;
    if (w->total_partitions < 1)
        nudgel_log_warn("%s: partition count unknown (the topic may not exist yet); the fleet "
                        "share of each gateway's TPS waits for it",
                        w->topic_jobs);
    intake_pause(w, true);
    nudgel_readiness_t *ready = nudgel_worker_readiness(w->rt);
    w->kafka_ready = nudgel_readiness_add(ready, "kafka", "group not joined yet");
    w->kafka_retry_ready = nudgel_readiness_add(ready, "kafka:retry", "group not joined yet");
    if (!(w->at_cap = nudgel_timer_new(w->loop, on_at_cap, w)) ||
        nudgel_consumer_attach(w->retry_consumer, w->loop, on_retry_ready, w) != NUDGEL_OK ||
        nudgel_consumer_attach(w->consumer, w->loop, on_jobs_ready, w) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "Kafka consumers: cannot go on the event loop");
        return NUDGEL_ERR_IO;
    }
    return NUDGEL_OK;
}

void intake_close(worker_t *w)
{
    nudgel_timer_free(w->at_cap);
    w->at_cap = NULL;
    nudgel_consumer_close(w->consumer);
    nudgel_consumer_close(w->retry_consumer);
    w->consumer = w->retry_consumer = NULL;
}
