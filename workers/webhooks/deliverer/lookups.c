/*
 * lookups.c — the "lookups" Postgres connection: endpoint rows read in
 * batches (up to LOOKUP_BATCH_MAX endpoints per statement) and the 410
 * disables, one statement at a time, never blocking the loop.
 *
 * Two small queues wait for the connection: endpoints whose row is to be
 * read (their jobs wait in their lanes) and jobs whose 410 answer is to
 * disable their endpoint (the job's outcome waits for it, so its
 * endpoint_disabled event says whether this answer did it). A disable goes
 * before the reads. When a statement does not come back, what it carried
 * goes back to the front of its queue: a row the cache already had is not
 * read again (the old one serves until the next refresh), everything else
 * waits for the connection to come back.
 */
#include <stdio.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/timeutil.h"

/* Queues the reading of @p ep's row (once). */
void lookups_load(worker_t *w, endpoint_t *ep)
{
    if (ep->load_queued)
        return;
    /* Out of memory: not queued; the lane asks again (lanes_drain). */
    if (nudgel_batchq_push(w->loadq, ep) == NUDGEL_OK)
        endpoint_set_loading(w, ep, true);
}

/* @p j's 410 answer disables its endpoint: its outcome waits for the row to say so. */
void lookups_disable(worker_t *w, wjob_t *j)
{
    j->stage = STAGE_DISABLE;
    if (nudgel_batchq_push(w->disableq, j) != NUDGEL_OK) {
        /* Not recorded: the job must come again; the cached flag holds meanwhile. */
        job_fail(j);
        attempt_failed(j, NUDGEL_OUTCOME_DISABLE_ENDPOINT, 0);
    }
}

/* The connection is gone: refreshes of rows the cache has are dropped (the old row serves). */
void lookups_down(worker_t *w)
{
    size_t n = nudgel_batchq_count(w->loadq);
    for (size_t i = 0; i < n; i++) {
        endpoint_t *ep = NULL;
        nudgel_batchq_shift(w->loadq, (void **)&ep, 1);
        if (ep->loaded)
            endpoint_set_loading(w, ep, false);
        else if (nudgel_batchq_push(w->loadq, ep) != NUDGEL_OK)
            endpoint_set_loading(w, ep, false); /* asked again by its lane */
    }
}

static void disable_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                         nudgel_err_t err, const char *errstr)
{
    worker_t *w = opaque;
    wjob_t *j = w->disable_sent;
    char why[600];
    bool changed = false;
    w->disable_sent = NULL;
    if (err == NUDGEL_OK)
        err = wh_db_endpoint_disable_read(n ? results[0] : NULL, &changed, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "%s", errstr);
    if (err != NUDGEL_OK) {
        /* Sent again on the next connection: the statement reports the same change. */
        if (nudgel_batchq_unshift(w->disableq, (void *const *)&j, 1) != NUDGEL_OK) {
            job_fail(j);
            attempt_failed(j, NUDGEL_OUTCOME_DISABLE_ENDPOINT, 0);
        }
        nudgel_pgconn_lost(c, why);
        return;
    }
    j->endpoint_disabled_now = changed;
    if (changed) {
        nudgel_log_ctx_t ctx;
        job_log_ctx(j, &ctx);
        NUDGEL_LOG_CTX(NUDGEL_LOG_WARN, &ctx, "endpoint %s disabled: %s", j->ep->id,
                       j->disabled_reason);
    }
    attempt_failed(j, NUDGEL_OUTCOME_DISABLE_ENDPOINT, 0);
}

/* Rows read: each endpoint of the batch has its row now, or none (it does not exist). */
static void loads_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                       nudgel_err_t err, const char *errstr)
{
    worker_t *w = opaque;
    endpoint_t **sent = w->load_sent;
    size_t count = w->load_sent_n;
    char why[600];
    int rows = -1;
    w->load_sent_n = 0;
    if (err == NUDGEL_OK)
        rows = wh_db_endpoints_count(n ? results[0] : NULL, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "%s", errstr);
    if (rows < 0) {
        size_t back = 0;
        for (size_t i = 0; i < count; i++) {
            if (sent[i]->loaded)
                endpoint_set_loading(w, sent[i], false); /* the row we had serves meanwhile */
            else
                sent[back++] = sent[i];
        }
        if (back && nudgel_batchq_unshift(w->loadq, (void *const *)sent, back) != NUDGEL_OK)
            for (size_t i = 0; i < back; i++)
                endpoint_set_loading(w, sent[i], false); /* asked again by their lanes */
        nudgel_pgconn_lost(c, why);
        return;
    }
    bool seen[LOOKUP_BATCH_MAX] = {false};
    for (int r = 0; r < rows; r++) {
        wh_endpoint_row_t row;
        if (wh_db_endpoint_row(results[0], r, &row) != NUDGEL_OK)
            continue; /* out of memory: left unread, asked again */
        for (size_t i = 0; i < count; i++) {
            if (!seen[i] && strcmp(sent[i]->id, row.endpoint_id) == 0) {
                endpoint_apply_row(w, sent[i], &row);
                seen[i] = true;
                break;
            }
        }
        wh_endpoint_row_clear(&row);
    }
    for (size_t i = 0; i < count; i++) {
        if (!seen[i])
            endpoint_not_found(sent[i]);
        endpoint_set_loading(w, sent[i], false);
    }
}

static void send_failed(nudgel_pgconn_t *c, nudgel_err_t err, char *errstr, size_t errstr_size)
{
    if (err != NUDGEL_ERR_PG_UNREACHABLE)
        snprintf(errstr, errstr_size, "lookups: statement not handed over (%s)",
                 nudgel_strerror(err));
    nudgel_pgconn_lost(c, errstr);
}

/* The next disable, else the next batch of rows, when the connection is free. */
void lookups_pump(worker_t *w)
{
    char errstr[600];
    nudgel_pgconn_t *c = w->pg_lookups;
    if (w->load_sent_n || w->disable_sent || !postgres_usable(c))
        return;
    nudgel_err_t err;
    if (nudgel_batchq_count(w->disableq)) {
        wjob_t *j = NULL;
        nudgel_batchq_shift(w->disableq, (void **)&j, 1);
        err = wh_db_endpoint_disable_send(nudgel_pgconn_conn(c), j->ep->id, j->disabled_reason,
                                          errstr, sizeof(errstr));
        if (err == NUDGEL_OK)
            err = nudgel_pgconn_sent(c, 0, disable_done, w);
        if (err != NUDGEL_OK) {
            if (nudgel_batchq_unshift(w->disableq, (void *const *)&j, 1) != NUDGEL_OK) {
                job_fail(j);
                attempt_failed(j, NUDGEL_OUTCOME_DISABLE_ENDPOINT, 0);
            }
            send_failed(c, err, errstr, sizeof(errstr));
            return;
        }
        w->disable_sent = j;
        return;
    }
    size_t n = nudgel_batchq_shift(w->loadq, (void **)w->load_sent, LOOKUP_BATCH_MAX);
    if (n == 0)
        return;
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < n; i++)
        if (json_array_append_new(ids, json_string(w->load_sent[i]->id)) != 0) {
            json_decref(ids);
            ids = NULL;
        }
    err = ids ? wh_db_endpoints_send(nudgel_pgconn_conn(c), ids, errstr, sizeof(errstr))
              : NUDGEL_ERR_NO_MEMORY;
    json_decref(ids);
    if (err == NUDGEL_OK)
        err = nudgel_pgconn_sent(c, 0, loads_done, w);
    if (err != NUDGEL_OK) {
        if (nudgel_batchq_unshift(w->loadq, (void *const *)w->load_sent, n) != NUDGEL_OK)
            for (size_t i = 0; i < n; i++)
                endpoint_set_loading(w, w->load_sent[i], false);
        if (err != NUDGEL_ERR_NO_MEMORY)
            send_failed(c, err, errstr, sizeof(errstr));
        return;
    }
    int64_t now = nudgel_mono_us();
    for (size_t i = 0; i < n; i++)
        w->load_sent[i]->load_sent_us = now; /* the rows are trusted from here */
    w->load_sent_n = n;
}
