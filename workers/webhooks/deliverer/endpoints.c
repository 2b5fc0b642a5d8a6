/*
 * endpoints.c — registered endpoints and their lanes: each row cached for
 * endpoint_cache_ms with its signing secrets opened with the keyring; each
 * endpoint's lane holds the jobs waiting for it and lets them go within its
 * concurrency and token-bucket rate (a slow endpoint never holds back the
 * others).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliverer.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"

void endpoint_forget_secrets(endpoint_t *ep)
{
    for (size_t i = 0; i < 2; i++)
        nudgel_wh_key_cleanse(&ep->keys[i]);
    ep->key_count = 0;
}

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

/* Reads @p ep's row again. @returns NUDGEL_OK or a Postgres error. */
static nudgel_err_t endpoint_load(worker_t *w, endpoint_t *ep)
{
    wh_endpoint_row_t row;
    char errstr[512];
    nudgel_err_t err = wh_db_endpoint_load(w->pg, ep->id, &row, errstr, sizeof(errstr));
    if (err != NUDGEL_OK) {
        if (err == NUDGEL_ERR_PG_UNREACHABLE)
            postgres_down(w, errstr); /* logged there once; reconnects with the lanes */
        else
            nudgel_log_error("%s", errstr);
        return err;
    }
    endpoint_forget_secrets(ep);
    free(ep->url);
    ep->url = NULL;
    ep->loaded = true;
    ep->loaded_us = nudgel_mono_us();
    ep->found = row.found;
    ep->secret_broken = false;
    if (!row.found) {
        wh_endpoint_row_clear(&row);
        return NUDGEL_OK;
    }
    snprintf(ep->tenant_id, sizeof(ep->tenant_id), "%s", row.tenant_id);
    ep->url = row.url;
    row.url = NULL;
    ep->enabled = row.enabled;
    ep->max_concurrency =
        row.max_concurrency > 0 ? (size_t)row.max_concurrency : w->default_concurrency;
    double rate = row.rate_per_second > 0 ? row.rate_per_second : w->default_rate;
    if (rate != ep->rate) {
        ep->rate = rate;
        ep->tokens = rate > 1 ? rate : 1;
        ep->tokens_us = nudgel_mono_us();
    }
    if (open_secret(w, row.secret_key_id, row.secret, row.secret_len, &ep->keys[0], errstr,
                    sizeof(errstr)) != NUDGEL_OK) {
        ep->secret_broken = true;
        snprintf(ep->secret_error, sizeof(ep->secret_error), "signing secret: %s", errstr);
        nudgel_log_error("endpoint %s: %s", ep->id, ep->secret_error);
    } else {
        ep->key_count = 1;
        if (row.previous && open_secret(w, row.previous_key_id, row.previous, row.previous_len,
                                        &ep->keys[1], errstr, sizeof(errstr)) == NUDGEL_OK) {
            ep->key_count = 2;
            ep->previous_expires_ms = row.previous_expires_ms;
        }
    }
    wh_endpoint_row_clear(&row);
    return NUDGEL_OK;
}

/* The endpoint @p id, (re)loaded when missing or stale. NULL with *err on Postgres trouble. */
endpoint_t *endpoint_get(worker_t *w, const char *id, nudgel_err_t *err)
{
    uint32_t b = hash_str(id) % HASH_BUCKETS;
    endpoint_t *ep = w->endpoints[b];
    *err = NUDGEL_OK;
    while (ep && strcmp(ep->id, id) != 0)
        ep = ep->next;
    if (!ep) {
        if (!(ep = calloc(1, sizeof(*ep)))) {
            *err = NUDGEL_ERR_NO_MEMORY;
            return NULL;
        }
        snprintf(ep->id, sizeof(ep->id), "%s", id);
        ep->next = w->endpoints[b];
        w->endpoints[b] = ep;
    }
    if (!ep->loaded || nudgel_mono_us() - ep->loaded_us >= w->endpoint_cache_us) {
        if ((*err = endpoint_load(w, ep)) != NUDGEL_OK && !ep->loaded)
            return NULL;
        *err = NUDGEL_OK; /* a failed refresh keeps the row we had */
    }
    if (ep->key_count == 2 && ep->previous_expires_ms <= nudgel_now_unix_ms()) {
        nudgel_wh_key_cleanse(&ep->keys[1]);
        ep->key_count = 1;
    }
    return ep;
}

/* ---- lanes --------------------------------------------------------------- */

void lane_push(worker_t *w, endpoint_t *ep, wjob_t *j)
{
    j->stage = STAGE_LANE;
    j->ep = ep;
    j->next_in_lane = NULL;
    if (ep->tail)
        ep->tail->next_in_lane = j;
    else
        ep->head = j;
    ep->tail = j;
    ep->queued++;
    w->lane_waiting++;
    if (!ep->active) {
        ep->active = true;
        ep->next_active = w->active;
        w->active = ep;
    }
}

static wjob_t *lane_pop(worker_t *w, endpoint_t *ep)
{
    wjob_t *j = ep->head;
    if (!j)
        return NULL;
    ep->head = j->next_in_lane;
    if (!ep->head)
        ep->tail = NULL;
    ep->queued--;
    w->lane_waiting--;
    return j;
}

/* Refills @p ep's token bucket; true when a request may start now. */
static bool lane_may_send(endpoint_t *ep, int64_t now_us)
{
    if (ep->in_flight >= ep->max_concurrency)
        return false;
    if (ep->rate <= 0)
        return true;
    double burst = ep->rate > 1 ? ep->rate : 1;
    ep->tokens += (double)(now_us - ep->tokens_us) / 1e6 * ep->rate;
    ep->tokens_us = now_us;
    if (ep->tokens > burst)
        ep->tokens = burst;
    if (ep->tokens < 1)
        return false;
    ep->tokens -= 1;
    return true;
}

/* Starts what each lane allows now; drops lanes left empty from the active list. */
void drain_lanes(worker_t *w)
{
    int64_t now = nudgel_mono_us();
    endpoint_t **link = &w->active;
    while (*link) {
        endpoint_t *ep = *link;
        while (ep->head && (!ep->enabled || !ep->found || lane_may_send(ep, now)))
            submit(w, lane_pop(w, ep));
        if (!ep->head) {
            ep->active = false;
            *link = ep->next_active;
        } else {
            link = &ep->next_active;
        }
    }
}
