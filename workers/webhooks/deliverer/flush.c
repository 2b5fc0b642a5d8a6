/*
 * flush.c — the outcome batch: jobs whose attempt has ended wait here, and
 * are written (attempt rows, delivery rows, endpoint health) as one
 * transaction on the flush lane at most every flush_interval_ms or once
 * flush_max_rows have gathered; each job is published (events.c) only once
 * its rows are durable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"

void outcome_add(wjob_t *j)
{
    worker_t *w = j->w;
    j->stage = STAGE_FLUSH;
    if (w->outcome_count == w->outcome_cap) {
        size_t cap = w->outcome_cap ? w->outcome_cap * 2 : 256;
        wjob_t **grown = realloc(w->outcomes, cap * sizeof(*grown));
        if (!grown) {
            nudgel_log_error("out of memory queueing an outcome; stopping");
            request_fatal_stop();
            return;
        }
        w->outcomes = grown;
        w->outcome_cap = cap;
    }
    w->outcomes[w->outcome_count++] = j;
}

static json_t *nullable_str(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

/* Puts a batch that did not become durable back at the front of the outcomes. */
static void outcomes_unshift(worker_t *w, wjob_t **batch, size_t n)
{
    size_t need = w->outcome_count + n;
    if (need > w->outcome_cap) {
        wjob_t **grown = realloc(w->outcomes, need * sizeof(*grown));
        if (!grown) {
            nudgel_log_error("out of memory requeueing outcomes; stopping");
            request_fatal_stop();
            return; /* the jobs stay on w->all: abandoned at exit, delivered again */
        }
        w->outcomes = grown;
        w->outcome_cap = need;
    }
    memmove(w->outcomes + n, w->outcomes, w->outcome_count * sizeof(*w->outcomes));
    memcpy(w->outcomes, batch, n * sizeof(*batch));
    w->outcome_count = need;
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
        uint32_t b = hash_str(eid) % HASH_BUCKETS;
        for (endpoint_t *ep = w->endpoints[b]; ep; ep = ep->next)
            if (strcmp(ep->id, eid) == 0)
                ep->enabled = false;
        nudgel_log_warn("endpoint %s disabled: %s", eid,
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

/*
 * Sends the batch of outcomes as one transaction (a pipeline on the flush
 * lane); each job is published once it is durable (outcomes_pump). What
 * ends meanwhile waits for the next flush. Postgres trouble puts the batch
 * back (jobs stay in flight) and pauses intake until a reconnect works.
 */
static void flush_start(worker_t *w)
{
    char errstr[512];
    wh_lane_t *l = &w->flush_lane;
    w->last_flush_us = nudgel_mono_us();
    if (w->outcome_count == 0)
        return;
    wjob_t **batch = w->outcomes;
    size_t n = w->outcome_count;
    w->outcomes = NULL;
    w->outcome_count = w->outcome_cap = 0;
    json_t *attempts = json_array(), *deliveries = json_array(), *ok = json_array(),
           *bad = json_array();
    for (size_t i = 0; i < n; i++) {
        wjob_t *j = batch[i];
        if (!j->parsed || j->end == END_NONE || j->end == END_MALFORMED)
            continue;
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
            j->delivery_status, "attempts", j->record_attempt ? j->attempt : j->attempt - 1,
            "last_status_code", j->status_code > 0 ? json_integer(j->status_code) : json_null(),
            "last_error",
            j->error_class[0] ? json_sprintf("%s: %s", j->error_class, j->error_message)
                              : json_null(),
            "next_attempt_ms", j->end == END_RETRY ? json_integer(j->next_attempt_ms) : json_null(),
            "final", final);
        json_object_set_new(row, "tenant_id", json_string(j->job.tenant_id));
        json_object_set_new(row, "endpoint_id", json_string(j->job.endpoint_id));
        json_object_set_new(row, "event_type", json_string(j->job.event_type));
        json_object_set_new(row, "event_id", json_string(j->job.event_id));
        if (w->with_payload)
            json_object_set(row, "payload", j->job.payload);
        json_array_append_new(deliveries, row);
    }
    nudgel_err_t err = NUDGEL_OK;
    bool empty = !json_array_size(attempts) && !json_array_size(deliveries) &&
                 !json_array_size(ok) && !json_array_size(bad);
    if (!empty)
        err = wh_db_flush_send(l->conn, w->with_payload, attempts, deliveries, ok, bad,
                               w->failing_window_ms, &w->flush_call, errstr, sizeof(errstr));
    json_decref(attempts);
    json_decref(deliveries);
    json_decref(ok);
    json_decref(bad);
    if (empty) {
        flush_done(w, batch, n, json_array());
        free(batch);
        return;
    }
    if (err == NUDGEL_OK)
        err = lane_sent(l, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        l->broken = true;
        json_decref(w->flush_call.disabled);
        w->flush_call.disabled = NULL;
        outcomes_unshift(w, batch, n);
        free(batch);
        postgres_down(w, errstr);
        return;
    }
    w->flush_sent = batch;
    w->flush_sent_n = n;
}

/* The flush lane: its result when it has come, then the next flush when due. */
void outcomes_pump(worker_t *w, bool draining)
{
    wh_lane_t *l = &w->flush_lane;
    if (l->busy) {
        int st = lane_push_bytes(l);
        if (st == 1)
            return;
        if (st == 0)
            st = wh_db_flush_poll(l->conn, &w->flush_call);
        else
            st = -1;
        if (st == 0)
            return;
        l->busy = false;
        nudgel_metric_observe(w->m_flush_s, NULL, (double)(nudgel_mono_us() - l->sent_us) / 1e6);
        wjob_t **batch = w->flush_sent;
        size_t n = w->flush_sent_n;
        w->flush_sent = NULL;
        w->flush_sent_n = 0;
        json_t *disabled = w->flush_call.disabled;
        w->flush_call.disabled = NULL;
        if (st < 0 || w->flush_call.err != NUDGEL_OK) {
            char errstr[700];
            if (st < 0) {
                l->broken = true;
                snprintf(errstr, sizeof(errstr), "writing outcomes: %s", PQerrorMessage(l->conn));
            } else {
                snprintf(errstr, sizeof(errstr), "%s", w->flush_call.errstr);
            }
            json_decref(disabled);
            outcomes_unshift(w, batch, n);
            free(batch);
            postgres_down(w, errstr);
            return;
        }
        flush_done(w, batch, n, disabled);
        free(batch);
    }
    if (l->busy || !w->pg_ok)
        return;
    if (w->outcome_count >= w->flush_max || nudgel_mono_us() - w->last_flush_us >= w->flush_us ||
        (draining && w->outcome_count))
        flush_start(w);
}
