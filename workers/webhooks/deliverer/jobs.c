/*
 * jobs.c — a job's life in this process, on the one lifecycle every role
 * shares (nudgel/lifecycle.h): the index of the jobs in flight by
 * (endpoint, event), its end once every publish of it is acknowledged (its
 * offset stored, handed back, or a fatal stop when it cannot be finished
 * durably), the jobs abandoned at exit, and what its log lines carry
 * (tenant, job id, trace id), the noisy kinds through core's rate limiter
 * (nudgel_log_ratelimit_t).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"

/*
 * Jobs in flight are indexed by (tenant, endpoint, event): a copy of one (the
 * same job re-delivered) or a second job of the tenant for the same event and
 * endpoint is a duplicate while the first is in flight, and the first
 * decides. Another tenant's job naming the endpoint is never a duplicate of
 * it (it is refused on its own, and must not make the owner's job skip).
 */
static uint32_t index_bucket(const wjob_t *j)
{
    return (hash_str(j->job.event_id) ^ hash_str(j->job.endpoint_id)) % HASH_BUCKETS;
}

wjob_t *index_holder(worker_t *w, wjob_t *j)
{
    wjob_t **head = &w->by_id[index_bucket(j)];
    for (wjob_t *o = *head; o; o = o->next_by_id)
        if (strcmp(o->job.event_id, j->job.event_id) == 0 &&
            strcmp(o->job.endpoint_id, j->job.endpoint_id) == 0 &&
            strcmp(o->job.tenant_id, j->job.tenant_id) == 0)
            return o;
    j->next_by_id = *head;
    *head = j;
    j->indexed = true;
    return NULL;
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

/* The lifecycle's `finished`: the job has ended (done, handed back or abandoned). */
void job_finished(void *opaque, nudgel_job_life_t *life)
{
    worker_t *w = opaque;
    wjob_t *j = (wjob_t *)life; /* life is the first member */
    if (j->indexed)
        index_remove(w, j);
    endpoint_drop(w, j);
    if (j->prev_all)
        j->prev_all->next_all = j->next_all;
    else
        w->all = j->next_all;
    if (j->next_all)
        j->next_all->prev_all = j->prev_all;
    if (j->parsed)
        nudgel_webhook_job_clear(&j->job);
    free(j->snippet);
    free(j->url);
    free(j);
}

/* The job needs nothing more of the role: it ends once its publishes are acknowledged. */
void job_release(wjob_t *j)
{
    nudgel_job_release(&j->life);
}

/* Something of @p j could not be made durable: it must come again. */
void job_fail(wjob_t *j)
{
    nudgel_job_fail(&j->life);
}

/* Jobs left after the drain: abandoned (re-delivered later), their memory freed. */
void abandon_jobs(worker_t *w)
{
    size_t n = 0;
    while (w->all) {
        nudgel_job_abandon(&w->all->life);
        n++;
    }
    if (n)
        nudgel_log_warn("%zu job(s) unfinished at exit; they will be delivered again", n);
}

void job_log_ctx(const wjob_t *j, nudgel_log_ctx_t *ctx)
{
    ctx->tenant = j->log_tenant[0] ? j->log_tenant : NULL;
    ctx->job_id = j->log_id[0] ? j->log_id : NULL;
    ctx->trace_id = j->trace_id[0] ? j->trace_id : NULL;
}

void job_log_limited(const wjob_t *j, nudgel_log_ratelimit_t *rl, nudgel_log_level_t level,
                     const char *fmt, ...)
{
    if (level < nudgel_log_threshold || !nudgel_log_ratelimit_allow(rl, level))
        return;
    char text[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    nudgel_log_ctx_t ctx;
    job_log_ctx(j, &ctx);
    nudgel_log_emit(level, &ctx, "%s", text);
}
