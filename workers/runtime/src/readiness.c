/*
 * readiness.c — see nudgel/readiness.h.
 *
 * The conditions live in a fixed array inside the readiness, so a handle is
 * a stable pointer for the readiness's lifetime and registration never moves
 * a condition another thread is reading. One mutex guards every state and
 * reason: a check copies one reason under it, a set compares and copies.
 */
#define _GNU_SOURCE
#include "nudgel/readiness.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COND_NAME_MAX 64

struct nudgel_ready_cond {
    nudgel_readiness_t *owner;
    char name[COND_NAME_MAX];
    nudgel_ready_state_t state;
    char reason[NUDGEL_READY_REASON_MAX];
};

struct nudgel_readiness {
    pthread_mutex_t mu;
    nudgel_ready_cond_t conds[NUDGEL_READY_MAX_CONDS];
    size_t count;
    bool ready;           /* no condition not ok, as of the last change */
    uint64_t transitions; /* changes of ready, for nudgel_readiness_transitions */
};

/* Recomputes ready after a change (under the mutex) and counts a flip. */
static void note_change_locked(nudgel_readiness_t *r)
{
    bool ready = true;
    for (size_t i = 0; i < r->count && ready; i++)
        ready = r->conds[i].state != NUDGEL_READY_NOT_OK;
    if (ready != r->ready) {
        r->ready = ready;
        r->transitions++;
    }
}

nudgel_readiness_t *nudgel_readiness_new(void)
{
    nudgel_readiness_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return NULL;
    }
    r->ready = true;
    return r;
}

void nudgel_readiness_free(nudgel_readiness_t *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static nudgel_ready_cond_t *find_locked(nudgel_readiness_t *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->conds[i].name, name) == 0)
            return &r->conds[i];
    return NULL;
}

nudgel_ready_cond_t *nudgel_readiness_add(nudgel_readiness_t *r, const char *name,
                                          const char *reason)
{
    nudgel_ready_cond_t *c = NULL;
    if (!r || !name || !*name || strlen(name) >= COND_NAME_MAX)
        return NULL;
    pthread_mutex_lock(&r->mu);
    if ((c = find_locked(r, name)) || r->count == NUDGEL_READY_MAX_CONDS)
        goto out;
    c = &r->conds[r->count];
    c->owner = r;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->state = NUDGEL_READY_NOT_OK;
    snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "not yet known");
    r->count++;       /* last: a concurrent check sees a condition only once it is whole */
    r->ready = false; /* registering at start-up is not a flip */
out:
    pthread_mutex_unlock(&r->mu);
    return c;
}

nudgel_ready_cond_t *nudgel_readiness_find(nudgel_readiness_t *r, const char *name)
{
    if (!r || !name)
        return NULL;
    pthread_mutex_lock(&r->mu);
    nudgel_ready_cond_t *c = find_locked(r, name);
    pthread_mutex_unlock(&r->mu);
    return c;
}

void nudgel_ready_set(nudgel_ready_cond_t *c, nudgel_ready_state_t state, const char *reason)
{
    if (!c)
        return;
    if (!reason)
        reason = state == NUDGEL_READY_NOT_OK ? c->name : "";
    pthread_mutex_lock(&c->owner->mu);
    if (c->state != state || strncmp(c->reason, reason, sizeof(c->reason) - 1) != 0) {
        c->state = state;
        snprintf(c->reason, sizeof(c->reason), "%s", reason);
        note_change_locked(c->owner);
    }
    pthread_mutex_unlock(&c->owner->mu);
}

void nudgel_ready_ok(nudgel_ready_cond_t *c)
{
    nudgel_ready_set(c, NUDGEL_READY_OK, NULL);
}

void nudgel_ready_fail(nudgel_ready_cond_t *c, const char *fmt, ...)
{
    char reason[NUDGEL_READY_REASON_MAX];
    va_list ap;
    if (!c)
        return;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    nudgel_ready_set(c, NUDGEL_READY_NOT_OK, reason);
}

void nudgel_ready_not_applicable(nudgel_ready_cond_t *c, const char *reason)
{
    nudgel_ready_set(c, NUDGEL_READY_NOT_APPLICABLE, reason);
}

nudgel_ready_state_t nudgel_ready_get(const nudgel_ready_cond_t *c, char *reason,
                                      size_t reason_size)
{
    pthread_mutex_lock(&c->owner->mu);
    nudgel_ready_state_t state = c->state;
    if (reason && reason_size)
        snprintf(reason, reason_size, "%s", c->reason);
    pthread_mutex_unlock(&c->owner->mu);
    return state;
}

bool nudgel_readiness_check(void *readiness, char *why, size_t why_size)
{
    nudgel_readiness_t *r = readiness;
    bool ready = true;
    if (!r)
        return true;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->count; i++) {
        const nudgel_ready_cond_t *c = &r->conds[i];
        if (c->state != NUDGEL_READY_NOT_OK)
            continue;
        ready = false;
        if (why && why_size)
            snprintf(why, why_size, "%s: %s", c->name, c->reason);
        break;
    }
    pthread_mutex_unlock(&r->mu);
    return ready;
}

uint64_t nudgel_readiness_transitions(nudgel_readiness_t *r)
{
    pthread_mutex_lock(&r->mu);
    uint64_t n = r->transitions;
    pthread_mutex_unlock(&r->mu);
    return n;
}
