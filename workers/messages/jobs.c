/*
 * jobs.c — a job's life in the worker: every msg_t alive is on one list
 * (so a teardown after a drain timeout can let go of each), its end goes
 * through the shared job lifecycle (nudgel/lifecycle.h: done once every
 * publish is acknowledged, handed back while it is the job just polled,
 * a fatal stop otherwise), and its log lines carry its tenant, id and
 * trace id.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"

#include "messages.h"

_Static_assert(offsetof(msg_t, life) == 0, "msg_finished() takes the lifecycle for the job");

void msg_track(worker_t *w, msg_t *m)
{
    m->w = w; /* the lifecycle keeps the list of live jobs (nudgel_job_begin()) */
}

void msg_compact(msg_t *m)
{
    nudgel_message_job_t *j = &m->job;
    const char **fields[] = {&j->id,     &j->tenant_id,     &j->channel,
                             &j->to,     &j->country,       &j->from,
                             &j->locale, &j->template_name, &j->idempotency_key};
    size_t n = sizeof(fields) / sizeof(fields[0]), total = 0;
    if (!m->parsed || m->compact || !j->doc)
        return;
    for (size_t i = 0; i < n; i++)
        total += *fields[i] ? strlen(*fields[i]) + 1 : 0;
    char *block = malloc(total ? total : 1), *at = block;
    if (!block)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!*fields[i])
            continue;
        size_t len = strlen(*fields[i]) + 1;
        memcpy(at, *fields[i], len);
        *fields[i] = at;
        at += len;
    }
    json_incref(j->metadata);
    j->body = j->body ? m->text : NULL; /* the text is the body, when it had one */
    j->variables = NULL;                /* rendered already */
    json_decref(j->doc);
    j->doc = NULL;
    m->compact = block;
}

static void msg_free(msg_t *m)
{
    if (m->compact) {
        json_decref(m->job.metadata);
        free(m->compact);
    }
    if (m->parsed)
        nudgel_message_job_clear(&m->job);
    free(m->tpl_text);
    free(m->text);
    free(m->out);
    free(m);
}

void msg_release(msg_t *m)
{
    nudgel_job_release(&m->life);
}

void msg_fail(msg_t *m)
{
    nudgel_job_fail(&m->life);
}

/* The lifecycle ended the job (done, handed back or abandoned): room for another. */
void msg_finished(void *opaque, nudgel_job_life_t *life)
{
    worker_t *w = opaque;
    msg_free((msg_t *)life); /* life is the first member */
    if (w->want_poll[0] || w->want_poll[1])
        kick(w); /* intake polls again this turn or the next */
}

void msg_fatal(void *opaque, const char *why)
{
    worker_t *w = opaque;
    nudgel_worker_fatal(w->rt, "%s", why);
}

void msg_abandon_all(worker_t *w)
{
    size_t n = nudgel_lifecycle_abandon_all(w->lc); /* each freed by msg_finished() */
    if (n)
        nudgel_log_warn("%zu job(s) left unfinished; they will be delivered again", n);
}

nudgel_log_ctx_t msg_log_ctx(const msg_t *m)
{
    return (nudgel_log_ctx_t){
        .tenant = m->parsed ? m->job.tenant_id : NULL,
        .job_id = m->parsed ? m->job.id : NULL,
        .trace_id = m->trace_id[0] ? m->trace_id : NULL,
    };
}
