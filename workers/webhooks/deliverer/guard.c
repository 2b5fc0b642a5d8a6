/*
 * guard.c — the SSRF guard's verdicts, per target host (scheme://authority):
 * a vetted resolution is reused (and pinned with CURLOPT_RESOLVE, so the
 * request connects to the addresses that were vetted) for
 * webhooks.ssrf_cache_ms; a failed lookup only for a second. At most
 * webhooks.ssrf_cache_max hosts are kept, the least recently used going
 * first.
 *
 * Vetting resolves the host with getaddrinfo(), which blocks the loop for
 * as long as the resolver takes: the cache keeps that to once per host and
 * ssrf_cache_ms.
 */
#define _GNU_SOURCE /* strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/timeutil.h"

static void vet_unlink(worker_t *w, vetted_t *v)
{
    if (v->lru_prev)
        v->lru_prev->lru_next = v->lru_next;
    else
        w->vet_head = v->lru_next;
    if (v->lru_next)
        v->lru_next->lru_prev = v->lru_prev;
    else
        w->vet_tail = v->lru_prev;
    v->lru_prev = v->lru_next = NULL;
}

static void vet_front(worker_t *w, vetted_t *v)
{
    if (w->vet_head == v)
        return;
    if (v->lru_prev || v->lru_next || w->vet_tail == v)
        vet_unlink(w, v);
    v->lru_next = w->vet_head;
    if (w->vet_head)
        w->vet_head->lru_prev = v;
    w->vet_head = v;
    if (!w->vet_tail)
        w->vet_tail = v;
}

static void vet_free(worker_t *w, vetted_t *v)
{
    vetted_t **link = &w->vetted[hash_str(v->authority) % HASH_BUCKETS];
    while (*link && *link != v)
        link = &(*link)->next;
    if (*link)
        *link = v->next;
    vet_unlink(w, v);
    free(v->authority);
    free(v);
    w->vetted_count--;
}

void guard_free(worker_t *w)
{
    while (w->vet_head)
        vet_free(w, w->vet_head);
}

/* The SSRF verdict for @p url, from the per-host cache or vetted now; NULL when out of memory. */
const vetted_t *guard_vet(worker_t *w, const char *url)
{
    const char *start = strstr(url, "://");
    start = start ? start + 3 : url;
    size_t alen = strcspn(start, "/?#");
    char key[512];
    snprintf(key, sizeof(key), "%.*s", (int)((size_t)(start - url) + alen), url);
    uint32_t b = hash_str(key) % HASH_BUCKETS;
    vetted_t *v = w->vetted[b];
    while (v && strcmp(v->authority, key) != 0)
        v = v->next;
    if (v) {
        vet_front(w, v);
        if (nudgel_mono_us() - v->vetted_us < w->s.ssrf_cache_us)
            return v;
    } else {
        while (w->vet_tail && w->vetted_count >= w->s.ssrf_cache_max)
            vet_free(w, w->vet_tail);
        if (!(v = calloc(1, sizeof(*v))) || !(v->authority = strdup(key))) {
            free(v);
            return NULL;
        }
        v->next = w->vetted[b];
        w->vetted[b] = v;
        w->vetted_count++;
        vet_front(w, v);
    }
    v->err = nudgel_ssrf_vet_url(w->ssrf, url, &v->verdict);
    v->vetted_us = nudgel_mono_us();
    if (v->err == NUDGEL_ERR_IO) /* a failed lookup is not cached for long */
        v->vetted_us -= w->s.ssrf_cache_us > 1000000 ? w->s.ssrf_cache_us - 1000000 : 0;
    return v;
}
