/*
 * templates.c — the template cache: nudgel.message_templates bodies (or
 * their absence) per tenant, name and locale, read on the blocking connection
 * and kept for messages.template_cache_ms. Filled before a batch is claimed
 * (claims.c) so that preparing a job (prepare.c) rarely waits on Postgres.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/timeutil.h"

#include "messages.h"

void cached_template_free(void *p)
{
    cached_template_t *t = p;
    free(t->body);
    free(t);
}

static size_t template_key(const nudgel_message_job_t *j, char *key, size_t size)
{
    int n = snprintf(key, size, "%s%c%s%c%s", j->tenant_id, '\0', j->template_name, '\0',
                     j->locale ? j->locale : "en");
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* The cache entry of @p j's template when fresh; NULL when absent or stale. */
cached_template_t *template_cached(worker_t *w, const nudgel_message_job_t *j)
{
    char key[512];
    size_t len = template_key(j, key, sizeof(key));
    nudgel_keyq_entry_t *e = len ? nudgel_keyq_get(w->templates, key, len, false) : NULL;
    cached_template_t *t = e ? *nudgel_keyq_data(e) : NULL;
    return t && nudgel_mono_us() - t->loaded_us < w->template_ttl_us ? t : NULL;
}

/* Loads @p j's template (by name and locale, else "en") into the cache. */
nudgel_err_t template_load(worker_t *w, const nudgel_message_job_t *j, char *errstr,
                           size_t errstr_size)
{
    char key[512];
    size_t len = template_key(j, key, sizeof(key));
    if (!len) {
        snprintf(errstr, errstr_size, "template name or locale too long");
        return NUDGEL_ERR_INVALID_FIELD;
    }
    const char *params[3] = {j->tenant_id, j->template_name, j->locale ? j->locale : "en"};
    PGresult *res =
        PQexecParams(w->pg,
                     "SELECT body FROM nudgel.message_templates WHERE tenant_id = $1 AND name = $2 "
                     "AND locale IN ($3, 'en') ORDER BY (locale = $3) DESC LIMIT 1",
                     3, NULL, params, NULL, NULL, 0);
    nudgel_err_t err = NUDGEL_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "loading template: %s", PQerrorMessage(w->pg));
        err = PQstatus(w->pg) == CONNECTION_OK ? NUDGEL_ERR_PG : NUDGEL_ERR_PG_UNREACHABLE;
        PQclear(res);
        return err;
    }
    nudgel_keyq_entry_t *e = nudgel_keyq_get(w->templates, key, len, true);
    cached_template_t *t = e ? *nudgel_keyq_data(e) : NULL;
    if (e && !t && (t = calloc(1, sizeof(*t))))
        *nudgel_keyq_data(e) = t;
    if (!t) {
        PQclear(res);
        snprintf(errstr, errstr_size, "out of memory caching a template");
        return NUDGEL_ERR_NO_MEMORY;
    }
    free(t->body);
    t->body = PQntuples(res) > 0 ? strdup(PQgetvalue(res, 0, 0)) : NULL;
    t->loaded_us = nudgel_mono_us();
    PQclear(res);
    return NUDGEL_OK;
}
