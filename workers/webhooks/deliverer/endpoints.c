/*
 * endpoints.c — the cache of registered endpoints: each row trusted for
 * webhooks.endpoint_cache_ms, its signing secrets opened with the keyring
 * and wiped when the row is replaced or the endpoint leaves the cache. At
 * most webhooks.endpoint_cache_max endpoints are kept, in the runtime's
 * capped cache (nudgel/cache.h): the least recently used one that nothing
 * holds goes first. A job holding it, its row being read and its lane
 * having queued jobs each pin it (never evicted meanwhile); while nothing
 * can go, the cache exceeds its cap until something is let go.
 *
 * Rows are read on the lookups connection (lookups.c), never here: a
 * missing row is queued, and the endpoint's lane (lanes.c) holds its jobs
 * until it has come. A row in the last quarter of its time is read again
 * ahead, while it still serves, so that a busy endpoint's jobs do not wait
 * for a lookup every endpoint_cache_ms; a row is trusted from when its read
 * was sent, so it never serves longer than endpoint_cache_ms after the
 * database said it, and once expired its jobs wait for the new one. A stale
 * row is not refreshed while the lookups connection is down: the row we had
 * serves meanwhile.
 */
#define _GNU_SOURCE /* explicit_bzero */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/timeutil.h"

static void forget_secrets(endpoint_t *ep)
{
    for (size_t i = 0; i < 2; i++)
        nudgel_wh_key_cleanse(&ep->keys[i]);
    ep->key_count = 0;
}

/* ---- the cache ------------------------------------------------------------ */

/* The cache's free callback: an endpoint evicted or freed, its secrets wiped first. */
static void endpoint_free(void *opaque, void *value)
{
    endpoint_t *ep = value;
    (void)opaque;
    forget_secrets(ep);
    free(ep->url);
    explicit_bzero(ep, sizeof(*ep));
    free(ep);
}

bool endpoints_open(worker_t *w)
{
    return nudgel_cache_new(w->s.endpoint_cache_max, endpoint_free, NULL, &w->endpoints) ==
           NUDGEL_OK;
}

endpoint_t *endpoint_find(worker_t *w, const char *id)
{
    nudgel_cache_entry_t *e = nudgel_cache_peek(w->endpoints, id, strlen(id));
    return e ? nudgel_cache_value(e) : NULL;
}

/*
 * The endpoint @p id, created when missing (the least recently used one
 * nothing holds may go for it); its row queued for reading when it has none
 * or a stale one. NULL when out of memory.
 */
endpoint_t *endpoint_get(worker_t *w, const char *id)
{
    nudgel_cache_entry_t *e = nudgel_cache_get(w->endpoints, id, strlen(id));
    endpoint_t *ep = e ? nudgel_cache_value(e) : NULL;
    if (!ep) {
        if (!(ep = calloc(1, sizeof(*ep))))
            return NULL;
        snprintf(ep->id, sizeof(ep->id), "%s", id);
        nudgel_cache_set_max(w->endpoints, w->s.endpoint_cache_max); /* SIGHUP may change it */
        if (nudgel_cache_insert(w->endpoints, ep->id, strlen(ep->id), ep, &ep->ce) != NUDGEL_OK) {
            free(ep);
            return NULL;
        }
    }
    /* Read again in the last quarter of its time (at once when the time is 0). */
    int64_t cache_us = w->s.endpoint_cache_us;
    bool stale = !ep->loaded || nudgel_mono_us() - ep->loaded_us >= cache_us - cache_us / 4;
    if (stale && !ep->load_queued && (!ep->loaded || nudgel_pgconn_up(w->pg_lookups)))
        lookups_load(w, ep);
    if (ep->key_count == 2 && ep->previous_expires_ms <= nudgel_now_unix_ms()) {
        nudgel_wh_key_cleanse(&ep->keys[1]);
        ep->key_count = 1;
    }
    return ep;
}

/* @p ep's row is past webhooks.endpoint_cache_ms: its lane waits for the one being read. */
bool endpoint_expired(const worker_t *w, const endpoint_t *ep, int64_t now_us)
{
    return !ep->loaded || now_us - ep->loaded_us >= w->s.endpoint_cache_us;
}

void endpoint_hold(endpoint_t *ep, wjob_t *j)
{
    j->ep = ep;
    ep->refs++;
    nudgel_cache_pin(j->w->endpoints, ep->ce);
}

void endpoint_drop(worker_t *w, wjob_t *j)
{
    if (j->ep) {
        j->ep->refs--;
        nudgel_cache_unpin(w->endpoints, j->ep->ce);
    }
    j->ep = NULL;
}

/* Each state that must keep @p ep cached holds a pin while it lasts. */
void endpoint_set_loading(worker_t *w, endpoint_t *ep, bool loading)
{
    nudgel_cache_pin_while(w->endpoints, ep->ce, &ep->load_queued, loading);
}

void endpoint_set_active(worker_t *w, endpoint_t *ep, bool active)
{
    nudgel_cache_pin_while(w->endpoints, ep->ce, &ep->active, active);
}

void endpoints_free(worker_t *w)
{
    nudgel_cache_free(w->endpoints);
    w->endpoints = NULL;
}

/* ---- rows ----------------------------------------------------------------- */

/* Opens a sealed secret and decodes it into @p key. */
static nudgel_err_t open_secret(worker_t *w, const char *key_id, const unsigned char *sealed,
                                size_t sealed_len, nudgel_wh_key_t *key, char *errstr,
                                size_t errstr_size)
{
    char *plain = NULL;
    size_t plain_len = 0;
    nudgel_err_t err = nudgel_secretbox_open(w->box, key_id, sealed, sealed_len, &plain, &plain_len,
                                             errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    err = nudgel_wh_secret_decode(plain, key, errstr, errstr_size);
    nudgel_secretbox_free_plain(plain, plain_len);
    return err;
}

/* The row says the endpoint does not exist (any more). */
void endpoint_not_found(endpoint_t *ep)
{
    forget_secrets(ep);
    free(ep->url);
    ep->url = NULL;
    ep->loaded = true;
    ep->loaded_us = ep->load_sent_us ? ep->load_sent_us : nudgel_mono_us();
    ep->found = false;
    ep->secret_broken = false;
}

/* @p ep from its row just read: URL, limits, secrets opened (the old ones wiped). */
void endpoint_apply_row(worker_t *w, endpoint_t *ep, const wh_endpoint_row_t *row)
{
    char errstr[512];
    endpoint_not_found(ep);
    ep->found = true;
    snprintf(ep->tenant_id, sizeof(ep->tenant_id), "%s", row->tenant_id);
    ep->url = strdup(row->url);
    ep->enabled = row->enabled;
    ep->max_concurrency =
        row->max_concurrency > 0 ? (size_t)row->max_concurrency : w->s.default_concurrency;
    double rate = row->rate_per_second > 0 ? row->rate_per_second : w->s.default_rate;
    if (rate != ep->rate) {
        ep->rate = rate;
        ep->tokens = rate > 1 ? rate : 1;
        ep->tokens_us = nudgel_mono_us();
    }
    if (!ep->url) {
        ep->secret_broken = true; /* retried, not cancelled */
        snprintf(ep->secret_error, sizeof(ep->secret_error), "out of memory reading the row");
        return;
    }
    if (open_secret(w, row->secret_key_id, row->secret, row->secret_len, &ep->keys[0], errstr,
                    sizeof(errstr)) != NUDGEL_OK) {
        ep->secret_broken = true;
        snprintf(ep->secret_error, sizeof(ep->secret_error), "signing secret: %s", errstr);
        nudgel_log_error("endpoint %s: %s", ep->id, ep->secret_error);
        return;
    }
    ep->key_count = 1;
    if (row->previous && open_secret(w, row->previous_key_id, row->previous, row->previous_len,
                                     &ep->keys[1], errstr, sizeof(errstr)) == NUDGEL_OK) {
        ep->key_count = 2;
        ep->previous_expires_ms = row->previous_expires_ms;
    }
}
