/*
 * endpoints.c — each tenant's enabled endpoints, cached, and read from
 * Postgres without ever blocking the loop (see dispatch.h).
 *
 * Owns the tenant cache and the "lookups" connection's statements:
 *   - A tenant's list is trusted for dispatch.endpoint_refresh_ms after it
 *     was read; a new, changed or disabled endpoint is seen within that time.
 *   - An event whose tenant has no list yet, a stale one, or events already
 *     waiting, joins the tenant's waiters (in poll order) and the tenant joins
 *     the lookup queue; the events of every other tenant go on meanwhile.
 *   - Lookups go out in order, up to LOOKUP_BATCH tenants in one statement,
 *     one statement at a time on the nudgel_pgconn "lookups". The answer
 *     replaces each tenant's list and hands its waiters to fan-out, in order.
 *   - A statement that fails (the server answered an error) puts its tenants
 *     back at the front and tries again after a back-off; a lost connection
 *     puts them back too, pauses intake (NUDGEL_PAUSE_POSTGRES) and fails the
 *     readiness condition "postgres:lookups" until the module reconnects.
 *     Nothing is dropped: the waiting events stay held.
 *   - The cache (the runtime's nudgel/cache.h) holds at most
 *     dispatch.endpoint_cache_max tenants: beyond it the least recently used
 *     tenant not in use (no lookup queued or in flight, nobody waiting: a
 *     tenant in use is pinned) is dropped. Tenants in use are at most the
 *     events in flight, so the overshoot is bounded and shrinks as they
 *     settle. Lists hold endpoint ids and event types only (no secrets).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "nudgel/cache.h"
#include "nudgel/timeutil.h"

#define LOOKUP_BATCH       100 /* tenants in one statement */
#define RETRY_MIN_US       (200 * 1000LL)
#define RETRY_MAX_US       (10 * 1000 * 1000LL)
#define ARRAY_LITERAL_SIZE (LOOKUP_BATCH * (NUDGEL_TENANT_ID_MAX + 3) + 3)

/* $1: the tenants as a text[] literal; rows come in the order of the array. */
static const char lookup_sql[] =
    "SELECT t.i, e.endpoint_id::text, array_to_json(e.event_types)::text "
    "FROM unnest($1::text[]) WITH ORDINALITY AS t(tenant_id, i) "
    "CROSS JOIN LATERAL (SELECT w.endpoint_id, w.event_types FROM nudgel.webhook_endpoints w "
    "WHERE w.tenant_id = t.tenant_id AND w.enabled ORDER BY w.endpoint_id LIMIT 1000) e "
    "ORDER BY t.i, e.endpoint_id";

typedef struct tenant {
    char id[NUDGEL_TENANT_ID_MAX + 1];
    dispatch_endpoints_t *eps; /* NULL until first read */
    int64_t loaded_us;         /* monotonic, when eps was read */
    bool queued;               /* in the lookup queue */
    bool reading;              /* in the statement in flight */
    dispatch_event_t *wait_head, *wait_tail;
    struct tenant *q_next;    /* lookup queue */
    nudgel_cache_entry_t *ce; /* its entry in the cache */
    bool pinned;              /* in use (tenant_in_use()): its entry is pinned */
} tenant_t;

struct dispatch_tenants {
    nudgel_cache_t *cache;       /* tenant id → tenant_t, capped at dispatch.endpoint_cache_max */
    uint64_t evictions_reported; /* of nudgel_cache_evictions(), added to the metric */
    tenant_t *q_head, *q_tail;
    tenant_t *batch[LOOKUP_BATCH]; /* the statement in flight */
    size_t batch_count;
    nudgel_timer_t *retry; /* after a failed statement */
    int64_t retry_us;
};

/* ---- endpoint lists -------------------------------------------------------- */

bool dispatch_endpoint_wants(const dispatch_endpoint_t *e, const char *event_type)
{
    if (e->pattern_count == 0)
        return true;
    for (size_t i = 0; i < e->pattern_count; i++) {
        const char *p = e->patterns[i];
        size_t len = strlen(p);
        if (strcmp(p, "*") == 0 || strcmp(p, event_type) == 0)
            return true;
        if (len >= 2 && strcmp(p + len - 2, ".*") == 0 && strncmp(p, event_type, len - 1) == 0)
            return true;
    }
    return false;
}

static void endpoints_destroy(dispatch_endpoints_t *eps)
{
    for (size_t i = 0; i < eps->count; i++) {
        for (size_t j = 0; j < eps->items[i].pattern_count; j++)
            free(eps->items[i].patterns[j]);
        free(eps->items[i].patterns);
    }
    free(eps->items);
    free(eps);
}

void dispatch_endpoints_unref(dispatch_endpoints_t *eps)
{
    if (eps && --eps->refs == 0)
        endpoints_destroy(eps);
}

dispatch_endpoints_t *dispatch_endpoints_build(const char *const *ids,
                                               const char *const *types_json, size_t n)
{
    dispatch_endpoints_t *eps = calloc(1, sizeof(*eps));
    if (!eps || (n && !(eps->items = calloc(n, sizeof(*eps->items))))) {
        free(eps);
        return NULL;
    }
    eps->refs = 1;
    for (size_t r = 0; r < n; r++) {
        dispatch_endpoint_t *e = &eps->items[eps->count++];
        snprintf(e->id, sizeof(e->id), "%s", ids[r]);
        json_t *types = types_json && types_json[r] ? json_loads(types_json[r], 0, NULL) : NULL;
        size_t m = json_is_array(types) ? json_array_size(types) : 0;
        if (m && !(e->patterns = calloc(m, sizeof(char *)))) {
            json_decref(types);
            endpoints_destroy(eps);
            return NULL;
        }
        for (size_t i = 0; i < m; i++) {
            const char *p = json_string_value(json_array_get(types, i));
            if (p && !(e->patterns[e->pattern_count++] = strdup(p))) {
                e->pattern_count--;
                json_decref(types);
                endpoints_destroy(eps);
                return NULL;
            }
        }
        json_decref(types);
    }
    return eps;
}

/* ---- the cache ---------------------------------------------------------- */

/* The cache's free callback: events fanning out keep their own reference to the list. */
static void tenant_free(void *opaque, void *value)
{
    tenant_t *t = value;
    (void)opaque;
    dispatch_endpoints_unref(t->eps);
    free(t);
}

/* The tenant @p id, added (not yet read) when missing; NULL when out of memory. */
static tenant_t *tenant_get(dispatcher_t *d, const char *id)
{
    dispatch_tenants_t *T = d->tenants;
    nudgel_cache_entry_t *e = nudgel_cache_get(T->cache, id, strlen(id));
    if (e)
        return nudgel_cache_value(e);
    tenant_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    snprintf(t->id, sizeof(t->id), "%s", id);
    nudgel_cache_set_max(T->cache, d->cache_max); /* SIGHUP may change it */
    if (nudgel_cache_insert(T->cache, t->id, strlen(t->id), t, &t->ce) != NUDGEL_OK) {
        free(t);
        return NULL;
    }
    return t;
}

static bool tenant_in_use(const tenant_t *t)
{
    return t->queued || t->reading || t->wait_head;
}

/* A tenant in use is pinned: never evicted while a lookup or an event needs it. */
static void tenant_repin(dispatch_tenants_t *T, tenant_t *t)
{
    nudgel_cache_pin_while(T->cache, t->ce, &t->pinned, tenant_in_use(t));
}

/* The evictions since the last report onto the counter, the cache's size onto the gauge. */
static void cache_metrics(dispatcher_t *d)
{
    dispatch_tenants_t *T = d->tenants;
    uint64_t evictions = nudgel_cache_evictions(T->cache);
    if (evictions > T->evictions_reported)
        nudgel_metric_add(d->m_cache_evictions, NULL, (double)(evictions - T->evictions_reported));
    T->evictions_reported = evictions;
    nudgel_metric_set(d->m_cache_tenants, NULL, (double)nudgel_cache_count(T->cache));
}

void endpoints_trim(dispatcher_t *d)
{
    nudgel_cache_set_max(d->tenants->cache, d->cache_max);
    nudgel_cache_trim(d->tenants->cache);
    cache_metrics(d);
}

size_t endpoints_cached(const dispatcher_t *d)
{
    return nudgel_cache_count(d->tenants->cache);
}

/* ---- lookups ---------------------------------------------------------- */

static void queue_push_back(dispatch_tenants_t *T, tenant_t *t)
{
    t->queued = true;
    t->q_next = NULL;
    if (T->q_tail)
        T->q_tail->q_next = t;
    else
        T->q_head = t;
    T->q_tail = t;
}

/* The batch in flight goes back to the front of the queue, in its order. */
static void batch_requeue(dispatch_tenants_t *T)
{
    for (size_t k = T->batch_count; k-- > 0;) {
        tenant_t *t = T->batch[k];
        t->reading = false;
        t->queued = true;
        t->q_next = T->q_head;
        T->q_head = t;
        if (!T->q_tail)
            T->q_tail = t;
    }
    T->batch_count = 0;
}

static void lookups_pump(dispatcher_t *d);

static void on_retry(void *opaque)
{
    lookups_pump(opaque);
}

static void retry_later(dispatcher_t *d)
{
    dispatch_tenants_t *T = d->tenants;
    T->retry_us = T->retry_us ? T->retry_us * 2 : RETRY_MIN_US;
    if (T->retry_us > RETRY_MAX_US)
        T->retry_us = RETRY_MAX_US;
    nudgel_timer_arm_in(T->retry, T->retry_us);
}

/* Hands @p t's waiters to fan-out with its fresh list, in order. */
static void waiters_release(dispatcher_t *d, tenant_t *t)
{
    while (t->wait_head) {
        dispatch_event_t *ev = t->wait_head;
        t->wait_head = ev->queue_next;
        if (!t->wait_head)
            t->wait_tail = NULL;
        ev->queue_next = NULL;
        fanout_submit(d, ev, t->eps); /* may end ev */
    }
}

/*
 * Applies one answer: for each tenant of the batch, its rows (contiguous,
 * column 0 its 1-based place in the batch) become its new list.
 * @returns false when out of memory (those tenants are read again).
 */
static bool apply_rows(dispatcher_t *d, PGresult *res)
{
    dispatch_tenants_t *T = d->tenants;
    int rows = PQntuples(res), r = 0;
    const char *ids[DISPATCH_MAX_ENDPOINTS], *types[DISPATCH_MAX_ENDPOINTS];
    bool ok = true;
    tenant_t *done[LOOKUP_BATCH];
    size_t done_count = 0, left = 0;
    int64_t now = nudgel_mono_us();
    for (size_t k = 0; k < T->batch_count; k++) {
        tenant_t *t = T->batch[k];
        size_t n = 0;
        for (; r < rows && atol(PQgetvalue(res, r, 0)) == (long)k + 1; r++) {
            if (n < DISPATCH_MAX_ENDPOINTS) {
                ids[n] = PQgetvalue(res, r, 1);
                types[n] = PQgetisnull(res, r, 2) ? NULL : PQgetvalue(res, r, 2);
                n++;
            }
        }
        dispatch_endpoints_t *eps = dispatch_endpoints_build(ids, types, n);
        if (!eps) {
            ok = false;
            T->batch[left++] = t; /* read again */
            continue;
        }
        dispatch_endpoints_unref(t->eps);
        t->eps = eps;
        t->loaded_us = now;
        t->reading = false;
        done[done_count++] = t;
    }
    T->batch_count = left;
    if (left)
        batch_requeue(T);
    /* Waiters last: fan-out may end events, never tenants. */
    for (size_t k = 0; k < done_count; k++) {
        waiters_release(d, done[k]);
        tenant_repin(T, done[k]);
    }
    return ok;
}

static void on_lookup_done(void *opaque, nudgel_pgconn_t *c, PGresult *const *results, size_t n,
                           nudgel_err_t err, const char *errstr)
{
    dispatcher_t *d = opaque;
    dispatch_tenants_t *T = d->tenants;
    (void)c;
    if (err == NUDGEL_ERR_PG_UNREACHABLE) {
        /* The state callback follows: intake pauses until the connection is back. */
        nudgel_metric_add(d->m_lookups, "lost", 1);
        batch_requeue(T);
        return;
    }
    PGresult *res = err == NUDGEL_OK && n > 0 ? results[0] : NULL;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *why = !res ? (errstr && *errstr ? errstr : nudgel_strerror(err))
                          : *PQresultErrorMessage(res) ? PQresultErrorMessage(res)
                                                       : PQresStatus(PQresultStatus(res));
        nudgel_metric_add(d->m_lookups, "failed", 1);
        retry_later(d);
        nudgel_log_error("reading the endpoints of %zu tenant(s) (first %s): %s; again in %lld ms",
                         T->batch_count, T->batch_count ? T->batch[0]->id : "-", why,
                         (long long)T->retry_us / 1000);
        batch_requeue(T);
        return;
    }
    nudgel_metric_add(d->m_lookups, "ok", 1);
    T->retry_us = 0;
    if (!apply_rows(d, res)) {
        nudgel_log_error("out of memory for endpoint lists; reading them again");
        retry_later(d);
        return;
    }
    endpoints_trim(d);
    lookups_pump(d);
}

/* "{"a","b"}": tenant ids are [A-Za-z0-9_-], quoted anyway. */
static void array_literal(dispatch_tenants_t *T, char *out, size_t out_size)
{
    size_t len = 0;
    out[len++] = '{';
    for (size_t k = 0; k < T->batch_count; k++)
        len +=
            (size_t)snprintf(out + len, out_size - len, "%s\"%s\"", k ? "," : "", T->batch[k]->id);
    snprintf(out + len, out_size - len, "}");
}

/* Sends the next batch when the connection is up and idle and no back-off runs. */
static void lookups_pump(dispatcher_t *d)
{
    dispatch_tenants_t *T = d->tenants;
    char literal[ARRAY_LITERAL_SIZE];
    if (!T->q_head || T->batch_count || !nudgel_pgconn_up(d->lookups) ||
        nudgel_pgconn_busy(d->lookups) || nudgel_timer_armed(T->retry, NULL))
        return;
    while (T->q_head && T->batch_count < LOOKUP_BATCH) {
        tenant_t *t = T->q_head;
        T->q_head = t->q_next;
        if (!T->q_head)
            T->q_tail = NULL;
        t->q_next = NULL;
        t->queued = false;
        t->reading = true;
        T->batch[T->batch_count++] = t;
    }
    array_literal(T, literal, sizeof(literal));
    const char *params[1] = {literal};
    PGconn *conn = nudgel_pgconn_conn(d->lookups);
    if (!PQsendQueryParams(conn, lookup_sql, 1, NULL, params, NULL, NULL, 0)) {
        batch_requeue(T);
        nudgel_pgconn_lost(d->lookups, PQerrorMessage(conn));
        return;
    }
    if (nudgel_pgconn_sent(d->lookups, 0, on_lookup_done, d) != NUDGEL_OK)
        batch_requeue(T); /* dropped as lost: the state callback brings it back */
}

void endpoints_on_pg_state(void *opaque, nudgel_pgconn_t *c, bool up)
{
    dispatcher_t *d = opaque;
    (void)c;
    if (!up) {
        nudgel_consumer_pause(d->consumer, NUDGEL_PAUSE_POSTGRES);
        nudgel_ready_fail(d->ready_pg, "connection lost; reconnecting");
        return;
    }
    nudgel_ready_ok(d->ready_pg);
    nudgel_consumer_resume(d->consumer, NUDGEL_PAUSE_POSTGRES);
    d->pump_wanted = true; /* resumed partitions: poll what is queued */
    nudgel_loop_again(d->loop);
    lookups_pump(d);
}

void endpoints_submit(dispatcher_t *d, dispatch_event_t *ev)
{
    dispatch_tenants_t *T = d->tenants;
    tenant_t *t = tenant_get(d, ev->tenant);
    if (!t) {
        nudgel_log_ctx_t ctx = intake_log_ctx(ev);
        NUDGEL_LOG_CTX(NUDGEL_LOG_ERROR, &ctx, "out of memory for the tenant cache");
        nudgel_job_unhold(&ev->life, NUDGEL_ERR_NO_MEMORY); /* fetched again, or a stop */
        return;
    }
    if (!t->wait_head && t->eps && nudgel_mono_us() - t->loaded_us < d->refresh_us) {
        fanout_submit(d, ev, t->eps);
    } else {
        ev->queue_next = NULL;
        if (t->wait_tail)
            t->wait_tail->queue_next = ev;
        else
            t->wait_head = ev;
        t->wait_tail = ev;
        if (!t->queued && !t->reading)
            queue_push_back(T, t);
        tenant_repin(T, t);
        lookups_pump(d);
    }
    if (nudgel_cache_count(T->cache) > d->cache_max)
        endpoints_trim(d);
    else
        cache_metrics(d);
}

nudgel_err_t endpoints_new(dispatcher_t *d)
{
    dispatch_tenants_t *T = calloc(1, sizeof(*T));
    if (!T)
        return NUDGEL_ERR_NO_MEMORY;
    d->tenants = T;
    if (nudgel_cache_new(d->cache_max, tenant_free, NULL, &T->cache) != NUDGEL_OK ||
        !(T->retry = nudgel_timer_new(d->loop, on_retry, d)))
        return NUDGEL_ERR_NO_MEMORY;
    return NUDGEL_OK;
}

void endpoints_free(dispatcher_t *d)
{
    dispatch_tenants_t *T = d->tenants;
    if (!T)
        return;
    nudgel_cache_free(T->cache);
    nudgel_timer_free(T->retry);
    free(T);
    d->tenants = NULL;
}
