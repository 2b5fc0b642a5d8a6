/*
 * guard.c — the SSRF guard's verdicts, per target host (scheme://authority):
 * a vetted resolution is reused (and pinned with CURLOPT_RESOLVE, so the
 * request connects to the addresses that were vetted) for
 * webhooks.ssrf_cache_ms; a failed lookup only for a second. At most
 * webhooks.ssrf_cache_max hosts are kept in the runtime's capped cache
 * (nudgel/cache.h), the least recently used going first.
 *
 * Vetting resolves the host with getaddrinfo(), which blocks the loop for
 * as long as the resolver takes: the cache keeps that to once per host and
 * ssrf_cache_ms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/timeutil.h"

/* The cache's free callback. */
static void vetted_free(void *opaque, void *value)
{
    (void)opaque;
    free(value);
}

bool guard_open(worker_t *w)
{
    return nudgel_cache_new(w->s.ssrf_cache_max, vetted_free, NULL, &w->vetted) == NUDGEL_OK;
}

void guard_free(worker_t *w)
{
    nudgel_cache_free(w->vetted);
    w->vetted = NULL;
}

/* The SSRF verdict for @p url, from the per-host cache or vetted now; NULL when out of memory. */
const vetted_t *guard_vet(worker_t *w, const char *url)
{
    const char *start = strstr(url, "://");
    start = start ? start + 3 : url;
    size_t alen = strcspn(start, "/?#");
    char key[512];
    snprintf(key, sizeof(key), "%.*s", (int)((size_t)(start - url) + alen), url);
    size_t len = strlen(key);
    nudgel_cache_entry_t *e = nudgel_cache_get(w->vetted, key, len);
    vetted_t *v = e ? nudgel_cache_value(e) : NULL;
    if (v) {
        if (nudgel_mono_us() - v->vetted_us < w->s.ssrf_cache_us)
            return v;
    } else {
        if (!(v = calloc(1, sizeof(*v))))
            return NULL;
        nudgel_cache_set_max(w->vetted, w->s.ssrf_cache_max); /* SIGHUP may change it */
        if (nudgel_cache_insert(w->vetted, key, len, v, NULL) != NUDGEL_OK) {
            free(v);
            return NULL;
        }
    }
    v->err = nudgel_ssrf_vet_url(w->ssrf, url, &v->verdict);
    v->vetted_us = nudgel_mono_us();
    if (v->err == NUDGEL_ERR_IO) /* a failed lookup is not cached for long */
        v->vetted_us -= w->s.ssrf_cache_us > 1000000 ? w->s.ssrf_cache_us - 1000000 : 0;
    return v;
}
