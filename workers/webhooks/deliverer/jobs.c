/*
 * jobs.c — a job's life in this process: the index of the jobs in flight by
 * (endpoint, event), its end once every publish of it is acknowledged (its
 * offset stored, or a stop when it cannot be finished durably), and the jobs
 * abandoned at exit.
 */
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"

/*
 * Jobs in flight are indexed by (endpoint, event): a copy of one (the same
 * job re-delivered) or a second job for the same event and endpoint is a
 * duplicate while the first is in flight, and the first decides.
 */
static uint32_t index_bucket(const wjob_t *j)
{
    return (hash_str(j->job.event_id) ^ hash_str(j->job.endpoint_id)) % HASH_BUCKETS;
}

/* Another job of this process already holds @p j's (endpoint, event)? Else @p j does now. */
bool index_holds(worker_t *w, wjob_t *j)
{
    wjob_t **head = &w->by_id[index_bucket(j)];
    for (wjob_t *o = *head; o; o = o->next_by_id)
        if (strcmp(o->job.event_id, j->job.event_id) == 0 &&
            strcmp(o->job.endpoint_id, j->job.endpoint_id) == 0)
            return true;
    j->next_by_id = *head;
    *head = j;
    j->indexed = true;
    return false;
}

void index_remove(worker_t *w, wjob_t *j)
{
    wjob_t **link = &w->by_id[index_bucket(j)];
    while (*link && *link != j)
        link = &(*link)->next_by_id;
    if (*link)
        *link = j->next_by_id;
    j->indexed = false;
}

static void job_free(wjob_t *j)
{
    worker_t *w = j->w;
    if (j->indexed)
        index_remove(w, j);
    if (j->prev_all)
        j->prev_all->next_all = j->next_all;
    else
        w->all = j->next_all;
    if (j->next_all)
        j->next_all->prev_all = j->prev_all;
    if (j->parsed)
        nudgel_webhook_job_clear(&j->job);
    free(j->snippet);
    free(j);
}

/* The job is finished once every publish of it is acknowledged. */
void job_release(wjob_t *j)
{
    if (j->pending > 0)
        return;
    worker_t *w = j->w;
    if (!j->publish_failed) {
        nudgel_consumer_done(w->consumer, j->ref);
    } else if (j == w->current) {
        nudgel_consumer_defer(w->consumer, j->ref, nudgel_now_unix_ms() + 1000);
    } else {
        nudgel_log_error("webhook job %s could not be finished durably; stopping so it is "
                         "re-delivered",
                         j->parsed ? j->job.id : "?");
        request_fatal_stop();
        return; /* its offset never moves past it */
    }
    job_free(j);
}

void on_published(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque)
{
    wjob_t *j = opaque;
    (void)cb_opaque;
    if (err) {
        nudgel_log_error("publish for webhook job %s failed: %s", j->parsed ? j->job.id : "?",
                         errstr);
        j->publish_failed = true;
    }
    j->pending--;
    job_release(j);
}

/* Jobs left after the drain: abandoned (re-delivered later), their memory freed. */
void abandon_jobs(worker_t *w)
{
    size_t n = 0;
    while (w->all) {
        if (w->all->ref)
            nudgel_consumer_abandon(w->consumer, w->all->ref);
        job_free(w->all);
        n++;
    }
    if (n)
        nudgel_log_warn("%zu job(s) unfinished at exit; they will be delivered again", n);
}
