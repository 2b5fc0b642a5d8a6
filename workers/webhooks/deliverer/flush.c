/*
 * flush.c — the outcome batch: jobs whose attempt has ended wait here, and
 * are written (attempt rows, delivery rows, endpoint health) as one
 * transaction — one pipeline — on the "outcomes" connection, at most every
 * webhooks.flush_interval_ms (a timer armed when the first outcome waits),
 * at once when webhooks.flush_max_rows have gathered or while draining. Each
 * job is published (events.c) only once its rows are durable. A flush that
 * does not come back puts its batch back at the front (every statement is
 * idempotent, so a flush whose fate is unknown is simply sent again).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/timeutil.h"

void outcome_add(wjob_t *j)
{
    worker_t *w = j->w;
    j->stage = STAGE_FLUSH;
    if (nudgel_batchq_push(w->outcomes, j) != NUDGEL_OK) {
        nudgel_worker_fatal(w->nw, "out of memory queueing an outcome");
        return; /* the job stays on w->all: abandoned at exit, delivered again */
    }
    flush_maybe(w);
}

static json_t *nullable_str(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

/* Puts a batch that did not become durable back at the front of the outcomes. */
static void outcomes_unshift(worker_t *w, wjob_t **batch, size_t n)
{
    if (nudgel_batchq_unshift(w->outcomes, (void *const *)batch, n) != NUDGEL_OK)
        nudgel_worker_fatal(w->nw, "out of memory putting %zu outcome(s) back", n);
}

/* The flush came back: on success, the endpoints it disabled, then each job published. */
static void flush_done(worker_t *w, wjob_t **batch, size_t n, json_t *disabled)
{
    /* Endpoints disabled for failing too long: one event each, on a job of theirs. */
    size_t di;
    json_t *d;
    json_array_foreach(disabled, di, d)
    {
        const char *eid = json_string_value(json_object_get(d, "endpoint_id"));
        endpoint_t *ep = eid ? endpoint_find(w, eid) : NULL;
        if (ep)
            ep->enabled = false;
        nudgel_log_ctx_t ctx = {.tenant = json_string_value(json_object_get(d, "tenant_id"))};
        NUDGEL_LOG_CTX(NUDGEL_LOG_WARN, &ctx, "endpoint %s disabled: %s", eid,
                       json_string_value(json_object_get(d, "reason")));
        for (size_t i = 0; i < n; i++) {
            wjob_t *j = batch[i];
            if (j->parsed && j->job.endpoint_id && strcmp(j->job.endpoint_id, eid) == 0 &&
                !j->endpoint_disabled_now) {
                j->endpoint_disabled_now = true;
                snprintf(j->disabled_reason, sizeof(j->disabled_reason), "%s",
                         json_string_value(json_object_get(d, "reason")));
                break;
            }
        }
    }
    json_decref(disabled);
    for (size_t i = 0; i < n; i++) {
        /* Its row is durable now: a copy (its own retry hop, say) may go by the row. */
        if (batch[i]->indexed)
            index_remove(w, batch[i]);
        job_publish(batch[i]);
    }
}

/* The flush's rows of @p batch into the four arrays (new references). @returns false when out of
 * memory. */
static bool flush_rows(worker_t *w, wjob_t **batch, size_t n, json_t **attempts_out,
                       json_t **deliveries_out, json_t **ok_out, json_t **bad_out,
                       json_t **dups_out)
{
    json_t *attempts = json_array(), *deliveries = json_array(), *ok = json_array(),
           *bad = json_array(), *dups = json_array();
    for (size_t i = 0; i < n; i++) {
        wjob_t *j = batch[i];
        if (!j->parsed || j->end == END_NONE || j->end == END_MALFORMED || j->end == END_REFUSED)
            continue; /* refused: no row of another tenant's endpoint or delivery id */
        if (j->end == END_DEDUPLICATED) {
            if (w->with_duplicates)
                json_array_append_new(
                    dups, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "delivery_id", j->job.id,
                                    "tenant_id", j->job.tenant_id, "endpoint_id",
                                    j->job.endpoint_id, "event_type", j->job.event_type, "event_id",
                                    j->job.event_id, "duplicate_of", j->duplicate_of));
            continue;
        }
        if (j->record_attempt) {
            json_array_append_new(
                attempts,
                json_pack("{s:s, s:i, s:o, s:i, s:o, s:o, s:o}", "delivery_id", j->job.id,
                          "attempt", j->attempt, "status_code",
                          j->status_code > 0 ? json_integer(j->status_code) : json_null(),
                          "latency_ms", j->latency_ms, "error_class", nullable_str(j->error_class),
                          "error_message", nullable_str(j->error_message), "response_snippet",
                          nullable_str(j->snippet)));
            /* Each endpoint once per flush; a success at most once a second. */
            endpoint_t *ep = j->ep;
            int64_t now_us = nudgel_mono_us();
            if (ep && j->end == END_DELIVERED && now_us - ep->success_noted_us >= 1000000) {
                ep->success_noted_us = now_us;
                json_array_append_new(ok, json_string(ep->id));
            } else if (ep && j->end != END_DELIVERED && ep->failure_noted_us != w->last_flush_us) {
                ep->failure_noted_us = w->last_flush_us;
                ep->success_noted_us = 0; /* the next success is written at once */
                json_array_append_new(bad, json_string(ep->id));
            }
        }
        if (j->end == END_REQUEUE)
            continue;
        bool final = j->end != END_RETRY;
        json_t *row = json_pack(
            "{s:s, s:s, s:i, s:o, s:o, s:o, s:b}", "delivery_id", j->job.id, "status",
            wh_delivery_status_name(j->delivery_status), "attempts",
            j->record_attempt ? j->attempt : j->attempt - 1, "last_status_code",
            j->status_code > 0 ? json_integer(j->status_code) : json_null(), "last_error",
            j->error_class[0] ? json_sprintf("%s: %s", j->error_class, j->error_message)
                              : json_null(),
            "next_attempt_ms", j->end == END_RETRY ? json_integer(j->next_attempt_ms) : json_null(),
            "final", final);
        /* The url the attempt went to, recorded so a re-emitted event carries it too. */
        const char *url = j->ep && j->ep->url && !endpoint_foreign(j) ? j->ep->url : j->job.url;
        if (url && (!j->url || strcmp(j->url, url) != 0)) {
            free(j->url);
            j->url = strdup(url);
        }
        json_object_set_new(row, "url", j->url ? json_string(j->url) : json_null());
        json_object_set_new(row, "tenant_id", json_string(j->job.tenant_id));
        json_object_set_new(row, "endpoint_id", json_string(j->job.endpoint_id));
        json_object_set_new(row, "event_type", json_string(j->job.event_type));
        json_object_set_new(row, "event_id", json_string(j->job.event_id));
        if (w->with_payload)
            json_object_set(row, "payload", j->job.payload);
        json_array_append_new(deliveries, row);
    }
    *attempts_out = attempts;
    *deliveries_out = deliveries;
    *ok_out = ok;
    *bad_out = bad;
    *dups_out = dups;
    return attempts && deliveries && ok && bad && dups;
}

static void flush_sent_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                            nudgel_err_t err, const char *errstr)
{
    worker_t *w = opaque;
    char why[600];
    json_t *disabled = NULL;
    wjob_t **batch = w->flush_sent;
    size_t count = w->flush_sent_n;
    w->flush_sent = NULL;
    w->flush_sent_n = 0;
    nudgel_metric_observe(w->m_flush_s, NULL, (double)nudgel_pgconn_last_rtt_us(c) / 1e6);
    if (err == NUDGEL_OK)
        err = wh_db_flush_read(&w->flush_call, results, n, &disabled, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "%s", errstr);
    if (err != NUDGEL_OK) {
        outcomes_unshift(w, batch, count);
        free(batch);
        /* A statement that failed (rolled back) goes again on a new connection after the
         * back-off; a lost one is reconnecting already. */
        nudgel_pgconn_lost(c, why);
        return;
    }
    flush_done(w, batch, count, disabled);
    free(batch);
    flush_maybe(w);
}

/*
 * Sends every outcome waiting as one transaction; each job is published
 * once it is durable (flush_sent_done). What ends meanwhile waits for the
 * next flush.
 */
static void flush_start(worker_t *w)
{
    char errstr[600];
    nudgel_pgconn_t *c = w->pg_outcomes;
    size_t n = nudgel_batchq_count(w->outcomes);
    wjob_t **batch = malloc(n * sizeof(*batch));
    json_t *attempts = NULL, *deliveries = NULL, *ok = NULL, *bad = NULL, *dups = NULL;
    nudgel_err_t err;
    if (!batch)
        return; /* tried again at the next outcome or timer */
    nudgel_batchq_shift(w->outcomes, (void **)batch, n);
    w->last_flush_us = nudgel_mono_us();
    nudgel_timer_disarm(w->flush_timer);
    if (!flush_rows(w, batch, n, &attempts, &deliveries, &ok, &bad, &dups)) {
        snprintf(errstr, sizeof(errstr), "writing outcomes: out of memory");
        goto put_back;
    }
    if (!json_array_size(attempts) && !json_array_size(deliveries) && !json_array_size(ok) &&
        !json_array_size(bad) && !json_array_size(dups)) {
        flush_done(w, batch, n, json_array()); /* nothing to write (requeues, skips) */
        free(batch);
        goto out;
    }
    err = wh_db_flush_send(nudgel_pgconn_conn(c), w->with_payload, attempts, deliveries, ok, bad,
                           dups, w->s.failing_window_ms, &w->flush_call, errstr, sizeof(errstr));
    if (err == NUDGEL_OK && (err = nudgel_pgconn_sent(c, 1, flush_sent_done, w)) != NUDGEL_OK)
        snprintf(errstr, sizeof(errstr), "writing outcomes: not handed over (%s)",
                 nudgel_strerror(err));
    if (err != NUDGEL_OK) {
        nudgel_pgconn_lost(c, errstr); /* in pipeline mode: replaced */
        goto put_back;
    }
    w->flush_sent = batch;
    w->flush_sent_n = n;
    goto out;
put_back:
    outcomes_unshift(w, batch, n);
    free(batch);
out:
    json_decref(attempts);
    json_decref(deliveries);
    json_decref(ok);
    json_decref(bad);
    json_decref(dups);
}

/*
 * The next flush: now when the batch is full, the interval since the last
 * one has passed or the worker drains; else the timer is armed for when
 * the interval ends. Nothing while a flush is in flight (its end calls
 * here) or the connection is down (its return calls here).
 */
void flush_maybe(worker_t *w)
{
    size_t n = nudgel_batchq_count(w->outcomes);
    if (n == 0 || w->flush_sent || !postgres_usable(w->pg_outcomes))
        return;
    int64_t due = w->last_flush_us + w->s.flush_us;
    if (n >= w->s.flush_max || w->draining || nudgel_mono_us() >= due)
        flush_start(w);
    else
        nudgel_timer_arm_by(w->flush_timer, due);
}

void flush_timer(void *opaque)
{
    flush_maybe(opaque);
}
