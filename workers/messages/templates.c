/*
 * templates.c — the template cache: nudgel.message_templates bodies (or
 * their absence) per tenant, name and locale, read on the "lookups"
 * connection (postgres.c) and kept for messages.template_cache_ms, at most
 * messages.template_cache_max of them in the runtime's capped cache
 * (nudgel/cache.h: the least recently used goes first, when a new one comes
 * in; one with a lookup pending is pinned, never dropped).
 *
 * The claims stage (claims.c) calls templates_take() for the batch it is
 * about to send: each template job takes a copy of its template (fresh, or
 * loaded since the batch began waiting), the missing ones are asked for,
 * and the batch waits until every job has its own. Preparing a job
 * (prepare.c) then uses that copy and never waits on Postgres; a job never
 * depends on the cache keeping an entry.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#include "messages.h"

#define KEY_MAX 512

struct cached_template {
    nudgel_cache_entry_t *entry; /* its entry in w->templates (pinned while loading) */
    char *body;                  /* NULL: no such template (or failed) */
    char *error;                 /* the last lookup failed: why */
    int64_t loaded_us;           /* 0: never loaded */
    bool loading;                /* a lookup is queued or in flight */
};

typedef struct template_lookup {
    lookup_t lk;
    size_t len;
    char key[KEY_MAX]; /* tenant \0 name \0 locale */
} template_lookup_t;

static size_t template_key(const nudgel_message_job_t *j, char *key, size_t size)
{
    int n = snprintf(key, size, "%s%c%s%c%s", j->tenant_id, '\0', j->template_name, '\0',
                     j->locale ? j->locale : "en");
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* ---- the cache ------------------------------------------------------------ */

/* The cache's free callback: an entry evicted, or the cache freed. */
static void template_free(void *opaque, void *value)
{
    cached_template_t *t = value;
    (void)opaque;
    free(t->body);
    free(t->error);
    free(t);
}

bool templates_open(worker_t *w)
{
    return nudgel_cache_new(w->template_max, template_free, NULL, &w->templates) == NUDGEL_OK;
}

void templates_trim(worker_t *w)
{
    nudgel_cache_set_max(w->templates, w->template_max);
    nudgel_cache_trim(w->templates);
}

/* The entry of @p key, made the most recently used; created when absent (NULL: out of memory). */
static cached_template_t *entry_of(worker_t *w, const char *key, size_t len)
{
    nudgel_cache_entry_t *e = nudgel_cache_get(w->templates, key, len);
    if (e)
        return nudgel_cache_value(e);
    cached_template_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (nudgel_cache_insert(w->templates, key, len, t, &t->entry) != NUDGEL_OK) {
        free(t);
        return NULL;
    }
    return t;
}

/* A lookup is queued for @p t (true) or has come back (false): it is not evicted meanwhile. */
static void set_loading(worker_t *w, cached_template_t *t, bool loading)
{
    nudgel_cache_pin_while(w->templates, t->entry, &t->loading, loading);
}

void templates_close(worker_t *w)
{
    nudgel_cache_free(w->templates);
    w->templates = NULL;
}

/* ---- lookups ---------------------------------------------------------------- */

static nudgel_err_t template_send(worker_t *w, lookup_t *lk, PGconn *conn, char *errstr,
                                  size_t errstr_size)
{
    template_lookup_t *tl = (template_lookup_t *)lk;
    (void)w;
    const char *tenant = tl->key;
    const char *name = tenant + strlen(tenant) + 1;
    const char *locale = name + strlen(name) + 1;
    const char *params[3] = {tenant, name, locale};
    if (PQsendQueryParams(conn,
                          "SELECT body FROM nudgel.message_templates WHERE tenant_id = $1 AND "
                          "name = $2 AND locale IN ($3, 'en') ORDER BY (locale = $3) DESC LIMIT 1",
                          3, NULL, params, NULL, NULL, 0))
        return NUDGEL_OK;
    snprintf(errstr, errstr_size, "loading a template: %s", PQerrorMessage(conn));
    return NUDGEL_ERR_PG_UNREACHABLE;
}

static void template_done(worker_t *w, lookup_t *lk, PGconn *conn, const PGresult *res,
                          nudgel_err_t err, const char *errstr)
{
    template_lookup_t *tl = (template_lookup_t *)lk;
    char why[512];
    (void)conn;
    if (err == NUDGEL_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = NUDGEL_ERR_PG;
        snprintf(why, sizeof(why), "loading template: %s", PQresultErrorMessage(res));
    } else {
        snprintf(why, sizeof(why), "%s", errstr);
    }
    cached_template_t *t = entry_of(w, tl->key, tl->len);
    if (t) {
        set_loading(w, t, false);
        t->loaded_us = nudgel_mono_us();
        free(t->body);
        free(t->error);
        t->body = NULL;
        t->error = NULL;
        if (err != NUDGEL_OK) {
            static nudgel_log_ratelimit_t failures =
                NUDGEL_LOG_RATELIMIT_INIT("template lookup failures", 5, 10000);
            NUDGEL_LOG_LIMITED(&failures, NUDGEL_LOG_WARN, NULL, "%s", why);
            t->error = strdup(why);
        } else if (PQntuples(res) > 0) {
            t->body = strdup(PQgetvalue(res, 0, 0));
            if (!t->body)
                t->error = strdup("out of memory caching a template");
        }
    }
    free(tl);
    w->claim_recheck = true;
    kick(w);
}

/* Asks for @p key's template unless a lookup is pending. @returns false when out of memory. */
static bool request(worker_t *w, cached_template_t *t, const char *key, size_t len)
{
    if (t->loading)
        return true;
    template_lookup_t *tl = calloc(1, sizeof(*tl));
    if (!tl)
        return false;
    tl->lk.what = "loading a template";
    tl->lk.send = template_send;
    tl->lk.done = template_done;
    memcpy(tl->key, key, len);
    tl->len = len;
    set_loading(w, t, true);
    lookups_push(w, &tl->lk);
    return true;
}

/* The job takes a copy of what the cache has; the copy is its own from now on. */
static void take(msg_t *m, const cached_template_t *t)
{
    const char *text = t->body ? t->body : t->error;
    m->tpl = t->body ? TPL_BODY : t->error ? TPL_FAILED : TPL_ABSENT;
    if (text && !(m->tpl_text = strdup(text)))
        m->tpl = TPL_FAILED; /* tpl_text NULL: prepare.c says "out of memory" */
}

bool templates_take(worker_t *w, size_t n)
{
    int64_t now = nudgel_mono_us();
    bool all = true;
    for (size_t i = 0; i < n; i++) {
        msg_t *m = nudgel_batchq_at(w->to_claim, i);
        if (m->job.body || m->tpl != TPL_NONE)
            continue;
        char key[KEY_MAX];
        size_t len = template_key(&m->job, key, sizeof(key));
        if (!len) {
            m->tpl = TPL_FAILED; /* tpl_text NULL */
            continue;
        }
        cached_template_t *t = entry_of(w, key, len);
        if (!t) {
            m->tpl = TPL_FAILED;
            continue;
        }
        /* Fresh: within the TTL (a failure never is), or loaded for this batch. */
        bool loaded_for_us = t->loaded_us && t->loaded_us >= w->claim_wait_since_us;
        bool fresh = t->loaded_us && !t->error && now - t->loaded_us < w->template_ttl_us;
        if (!t->loading && (fresh || loaded_for_us)) {
            take(m, t);
            continue;
        }
        if (!request(w, t, key, len)) {
            m->tpl = TPL_FAILED;
            continue;
        }
        all = false;
    }
    return all;
}
