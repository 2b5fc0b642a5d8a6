/*
 * throttle.c — token buckets, fleet share and the per-tenant table.
 *
 * A bucket counts micro-tokens in a double: rate (tokens/s) × elapsed (µs)
 * is then exactly the micro-tokens earned, integral whenever the rate is,
 * and fractional earnings are kept rather than rounded away, so a slow rate
 * polled often still refills.
 *
 * The tenant table is a fixed pool of entries chained from a power-of-two
 * hash array, plus a doubly linked list of the idle entries (no job in
 * flight), most recently used first; eviction takes the list's tail. All
 * memory is allocated by nudgel_throttle_tenants_new().
 */
#include "nudgel/throttle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MICRO 1000000.0

struct nudgel_throttle_bucket {
    double rate;     /* tokens per second */
    double tokens_u; /* micro-tokens available at last_us */
    double cap_u;    /* burst in micro-tokens */
    int64_t last_us;
    uint32_t burst;
};

/* ---- token bucket ----------------------------------------------------- */

static nudgel_err_t check_rate(double rate, uint32_t burst, char *errstr, size_t errstr_size)
{
    if (!(rate >= 0.0 && rate <= NUDGEL_THROTTLE_RATE_MAX)) { /* also refuses NaN */
        snprintf(errstr, errstr_size, "throttle rate %g is outside [0, %g]", rate,
                 NUDGEL_THROTTLE_RATE_MAX);
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (burst < 1 || burst > NUDGEL_THROTTLE_BURST_MAX) {
        snprintf(errstr, errstr_size, "throttle burst %u is outside [1, %u]", burst,
                 NUDGEL_THROTTLE_BURST_MAX);
        return NUDGEL_ERR_INVALID_ARG;
    }
    return NUDGEL_OK;
}

static void bucket_init(nudgel_throttle_bucket_t *b, double rate, uint32_t burst, int64_t now_us)
{
    b->rate = rate;
    b->burst = burst;
    b->cap_u = (double)burst * MICRO;
    b->tokens_u = b->cap_u;
    b->last_us = now_us;
}

/* Micro-tokens the bucket holds at @p now_us, without changing it. */
static double tokens_at(const nudgel_throttle_bucket_t *b, int64_t now_us)
{
    if (now_us <= b->last_us || b->tokens_u >= b->cap_u)
        return b->tokens_u;
    double t = b->tokens_u + (double)(now_us - b->last_us) * b->rate;
    return t < b->cap_u ? t : b->cap_u;
}

static void refill(nudgel_throttle_bucket_t *b, int64_t now_us)
{
    if (now_us <= b->last_us)
        return; /* no time passed, or the clock went back: earn nothing */
    b->tokens_u = tokens_at(b, now_us);
    b->last_us = now_us;
}

nudgel_err_t nudgel_throttle_bucket_new(double rate, uint32_t burst, int64_t now_us,
                                        nudgel_throttle_bucket_t **out, char *errstr,
                                        size_t errstr_size)
{
    nudgel_err_t err;
    if (!out) {
        snprintf(errstr, errstr_size, "throttle: NULL argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if ((err = check_rate(rate, burst, errstr, errstr_size)) != NUDGEL_OK)
        return err;
    nudgel_throttle_bucket_t *b = malloc(sizeof(*b));
    if (!b) {
        snprintf(errstr, errstr_size, "throttle: out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    bucket_init(b, rate, burst, now_us);
    *out = b;
    return NUDGEL_OK;
}

void nudgel_throttle_bucket_free(nudgel_throttle_bucket_t *b)
{
    free(b);
}

bool nudgel_throttle_bucket_try_take(nudgel_throttle_bucket_t *b, uint32_t n, int64_t now_us)
{
    refill(b, now_us);
    double need = (double)n * MICRO;
    if (b->tokens_u < need)
        return false;
    b->tokens_u -= need;
    return true;
}

/*
 * Returns @p now_us when n tokens are there, else the first microsecond at
 * which they will be (rounded up, so a timer firing then finds them), or
 * INT64_MAX when they never will.
 */
int64_t nudgel_throttle_bucket_next_available(const nudgel_throttle_bucket_t *b, uint32_t n,
                                              int64_t now_us)
{
    double need = (double)n * MICRO;
    if (n > b->burst)
        return INT64_MAX;
    int64_t base = now_us > b->last_us ? now_us : b->last_us;
    double missing = need - tokens_at(b, base);
    if (missing <= 0.0)
        return now_us;
    if (b->rate <= 0.0)
        return INT64_MAX;
    double wait = ceil(missing / b->rate);
    if (wait >= (double)(INT64_MAX - base))
        return INT64_MAX;
    return base + (int64_t)wait;
}

nudgel_err_t nudgel_throttle_bucket_set_rate(nudgel_throttle_bucket_t *b, double rate,
                                             uint32_t burst, int64_t now_us, char *errstr,
                                             size_t errstr_size)
{
    nudgel_err_t err = check_rate(rate, burst, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    refill(b, now_us); /* what was earned so far, at the old rate */
    b->rate = rate;
    b->burst = burst;
    b->cap_u = (double)burst * MICRO;
    if (b->tokens_u > b->cap_u)
        b->tokens_u = b->cap_u;
    return NUDGEL_OK;
}

double nudgel_throttle_bucket_tokens(const nudgel_throttle_bucket_t *b, int64_t now_us)
{
    return tokens_at(b, now_us) / MICRO;
}

/* ---- fleet share -------------------------------------------------------- */

nudgel_err_t nudgel_throttle_fleet_share(double gateway_tps, int32_t assigned, int32_t total,
                                         double *rate)
{
    if (!rate || total < 1 || assigned < 0 || assigned > total || !(gateway_tps >= 0.0) ||
        !isfinite(gateway_tps))
        return NUDGEL_ERR_INVALID_ARG;
    if (assigned == 0 || gateway_tps == 0.0) {
        *rate = 0.0;
        return NUDGEL_OK;
    }
    double share = gateway_tps * (double)assigned / (double)total;
    double floor_tps =
        NUDGEL_THROTTLE_MIN_SHARE_TPS < gateway_tps ? NUDGEL_THROTTLE_MIN_SHARE_TPS : gateway_tps;
    *rate = share > floor_tps ? share : floor_tps;
    return NUDGEL_OK;
}

/* ---- per-tenant limits -------------------------------------------------- */

#define NIL (-1)

typedef struct tenant {
    char id[NUDGEL_THROTTLE_TENANT_MAX + 1];
    uint64_t hash;
    int32_t chain;      /* next entry of the same hash slot, or of the free list */
    int32_t prev, next; /* idle list links, when in_flight == 0 */
    uint32_t in_flight;
    nudgel_tenant_limits_t limits;
    nudgel_throttle_bucket_t bucket;
} tenant_t;

struct nudgel_throttle_tenants {
    tenant_t *entries; /* max entries */
    size_t max, count;
    int32_t *slots; /* hash slots: index of the first entry, or NIL */
    size_t mask;
    int32_t free_list;
    int32_t idle_head, idle_tail; /* head: most recently used */
    nudgel_tenant_limits_t defaults;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static nudgel_err_t check_limits(const nudgel_tenant_limits_t *l, char *errstr, size_t errstr_size)
{
    if (l->max_in_flight < 1) {
        snprintf(errstr, errstr_size, "tenant max_in_flight must be at least 1");
        return NUDGEL_ERR_INVALID_ARG;
    }
    return check_rate(l->rate, l->burst, errstr, errstr_size);
}

static void idle_unlink(nudgel_throttle_tenants_t *t, int32_t i)
{
    tenant_t *e = &t->entries[i];
    if (e->prev != NIL)
        t->entries[e->prev].next = e->next;
    else
        t->idle_head = e->next;
    if (e->next != NIL)
        t->entries[e->next].prev = e->prev;
    else
        t->idle_tail = e->prev;
    e->prev = e->next = NIL;
}

static void idle_push_front(nudgel_throttle_tenants_t *t, int32_t i)
{
    tenant_t *e = &t->entries[i];
    e->prev = NIL;
    e->next = t->idle_head;
    if (t->idle_head != NIL)
        t->entries[t->idle_head].prev = i;
    else
        t->idle_tail = i;
    t->idle_head = i;
}

static int32_t find(const nudgel_throttle_tenants_t *t, const char *tenant, uint64_t h)
{
    for (int32_t i = t->slots[h & t->mask]; i != NIL; i = t->entries[i].chain)
        if (t->entries[i].hash == h && strcmp(t->entries[i].id, tenant) == 0)
            return i;
    return NIL;
}

/* Removes entry @p i (idle) from its hash chain and the idle list, freeing it. */
static void evict(nudgel_throttle_tenants_t *t, int32_t i)
{
    tenant_t *e = &t->entries[i];
    int32_t *link = &t->slots[e->hash & t->mask];
    while (*link != i)
        link = &t->entries[*link].chain;
    *link = e->chain;
    idle_unlink(t, i);
    e->chain = t->free_list;
    t->free_list = i;
    t->count--;
}

/*
 * Returns the entry of a new tenant (full bucket, idle, in its hash chain),
 * evicting the longest-idle tenant when the pool is used up; NIL when every
 * entry has jobs in flight.
 */
static int32_t insert(nudgel_throttle_tenants_t *t, const char *tenant, uint64_t h,
                      const nudgel_tenant_limits_t *l, int64_t now_us)
{
    if (t->free_list == NIL) {
        if (t->idle_tail == NIL)
            return NIL;
        evict(t, t->idle_tail);
    }
    int32_t i = t->free_list;
    tenant_t *e = &t->entries[i];
    t->free_list = e->chain;
    snprintf(e->id, sizeof(e->id), "%s", tenant);
    e->hash = h;
    e->in_flight = 0;
    e->limits = *l;
    bucket_init(&e->bucket, l->rate, l->burst, now_us);
    e->chain = t->slots[h & t->mask];
    t->slots[h & t->mask] = i;
    idle_push_front(t, i);
    t->count++;
    return i;
}

nudgel_err_t nudgel_throttle_tenants_new(size_t max_tenants, const nudgel_tenant_limits_t *defaults,
                                         nudgel_throttle_tenants_t **out, char *errstr,
                                         size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_OK;
    nudgel_throttle_tenants_t *t = NULL;

    if (!out || !defaults) {
        snprintf(errstr, errstr_size, "throttle: NULL argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (max_tenants < 1 || max_tenants > NUDGEL_THROTTLE_TENANTS_MAX) {
        snprintf(errstr, errstr_size, "tenant table size %zu is outside [1, %u]", max_tenants,
                 NUDGEL_THROTTLE_TENANTS_MAX);
        return NUDGEL_ERR_INVALID_ARG;
    }
    if ((err = check_limits(defaults, errstr, errstr_size)) != NUDGEL_OK)
        return err;

    size_t nslots = 1;
    while (nslots < 2 * max_tenants)
        nslots *= 2;
    t = calloc(1, sizeof(*t));
    if (!t) {
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    t->entries = calloc(max_tenants, sizeof(*t->entries));
    t->slots = malloc(nslots * sizeof(*t->slots));
    if (!t->entries || !t->slots) {
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < nslots; i++)
        t->slots[i] = NIL;
    for (size_t i = 0; i < max_tenants; i++)
        t->entries[i].chain = i + 1 < max_tenants ? (int32_t)(i + 1) : NIL;
    t->max = max_tenants;
    t->mask = nslots - 1;
    t->free_list = 0;
    t->idle_head = t->idle_tail = NIL;
    t->defaults = *defaults;

out:
    if (err != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "throttle: out of memory");
        nudgel_throttle_tenants_free(t);
        return err;
    }
    *out = t;
    return NUDGEL_OK;
}

void nudgel_throttle_tenants_free(nudgel_throttle_tenants_t *t)
{
    if (!t)
        return;
    free(t->entries);
    free(t->slots);
    free(t);
}

static bool tenant_id_ok(const char *tenant)
{
    return tenant && tenant[0] && strlen(tenant) <= NUDGEL_THROTTLE_TENANT_MAX;
}

nudgel_err_t nudgel_throttle_tenants_acquire(nudgel_throttle_tenants_t *t, const char *tenant,
                                             const nudgel_tenant_limits_t *limits, int64_t now_us,
                                             nudgel_tenant_verdict_t *verdict, int64_t *retry_at_us)
{
    char errstr[128];
    if (!t || !verdict || !tenant_id_ok(tenant))
        return NUDGEL_ERR_INVALID_ARG;
    const nudgel_tenant_limits_t *l = limits ? limits : &t->defaults;
    if (check_limits(l, errstr, sizeof(errstr)) != NUDGEL_OK)
        return NUDGEL_ERR_INVALID_ARG;
    if (retry_at_us)
        *retry_at_us = -1;

    uint64_t h = fnv1a(tenant);
    int32_t i = find(t, tenant, h);
    if (i == NIL)
        i = insert(t, tenant, h, l, now_us);
    if (i == NIL) {
        *verdict = NUDGEL_TENANT_TABLE_FULL;
        return NUDGEL_OK;
    }
    tenant_t *e = &t->entries[i];
    if (e->limits.rate != l->rate || e->limits.burst != l->burst)
        (void)nudgel_throttle_bucket_set_rate(&e->bucket, l->rate, l->burst, now_us, errstr,
                                              sizeof(errstr));
    e->limits = *l;
    if (e->in_flight == 0) { /* touched: now the most recently used idle tenant */
        idle_unlink(t, i);
        idle_push_front(t, i);
    }

    if (e->in_flight >= l->max_in_flight) {
        *verdict = NUDGEL_TENANT_IN_FLIGHT_CAP;
        return NUDGEL_OK;
    }
    if (!nudgel_throttle_bucket_try_take(&e->bucket, 1, now_us)) {
        *verdict = NUDGEL_TENANT_RATE_LIMITED;
        if (retry_at_us)
            *retry_at_us = nudgel_throttle_bucket_next_available(&e->bucket, 1, now_us);
        return NUDGEL_OK;
    }
    if (e->in_flight++ == 0)
        idle_unlink(t, i);
    *verdict = NUDGEL_TENANT_OK;
    return NUDGEL_OK;
}

nudgel_err_t nudgel_throttle_tenants_release(nudgel_throttle_tenants_t *t, const char *tenant)
{
    if (!t || !tenant_id_ok(tenant))
        return NUDGEL_ERR_INVALID_ARG;
    int32_t i = find(t, tenant, fnv1a(tenant));
    if (i == NIL || t->entries[i].in_flight == 0)
        return NUDGEL_ERR_INVALID_ARG;
    if (--t->entries[i].in_flight == 0)
        idle_push_front(t, i);
    return NUDGEL_OK;
}

uint32_t nudgel_throttle_tenants_in_flight(const nudgel_throttle_tenants_t *t, const char *tenant)
{
    if (!t || !tenant_id_ok(tenant))
        return 0;
    int32_t i = find(t, tenant, fnv1a(tenant));
    return i == NIL ? 0 : t->entries[i].in_flight;
}

size_t nudgel_throttle_tenants_count(const nudgel_throttle_tenants_t *t)
{
    return t ? t->count : 0;
}

const char *nudgel_tenant_verdict_name(nudgel_tenant_verdict_t verdict)
{
    switch (verdict) {
    case NUDGEL_TENANT_OK:
        return "ok";
    case NUDGEL_TENANT_IN_FLIGHT_CAP:
        return "in_flight_cap";
    case NUDGEL_TENANT_RATE_LIMITED:
        return "rate_limited";
    case NUDGEL_TENANT_TABLE_FULL:
        return "table_full";
    }
    return "unknown";
}
