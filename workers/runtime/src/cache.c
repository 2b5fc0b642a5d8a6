/*
 * cache.c — see nudgel/cache.h.
 *
 * An entry is one allocation: its links, its value pointer and its key
 * bytes. It is in one hash chain (by the key's FNV-1a hash) and in exactly
 * one of two doubly linked lists: `lru`, the unpinned entries from the
 * least recently used (head) to the most recently used (tail), or `pinned`.
 * Eviction takes the head of `lru`, so it never has to skip a pinned entry.
 * The table doubles when the entries outnumber its buckets; a failed growth
 * only leaves the chains longer.
 */
#include "nudgel/cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS_MIN 64
#define BUCKETS_MAX ((size_t)1 << 26)

struct nudgel_cache_entry {
    nudgel_cache_entry_t *chain;       /* next in its bucket */
    nudgel_cache_entry_t *prev, *next; /* in `lru` (towards the head: older) or `pinned` */
    void *value;
    uint64_t hash;
    unsigned pins;
    size_t len;
    unsigned char key[];
};

typedef struct list {
    nudgel_cache_entry_t *head, *tail;
} list_t;

struct nudgel_cache {
    nudgel_cache_entry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count, max;
    uint64_t evictions;
    list_t lru, pinned;
    nudgel_cache_free_fn *free_value;
    void *opaque;
};

static uint64_t hash_key(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 32); /* the high bits into the ones the mask keeps */
}

/* ---- the lists ------------------------------------------------------------ */

static void list_unlink(list_t *l, nudgel_cache_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_append(list_t *l, nudgel_cache_entry_t *e)
{
    e->next = NULL;
    e->prev = l->tail;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
}

static list_t *list_of(nudgel_cache_t *c, const nudgel_cache_entry_t *e)
{
    return e->pins ? &c->pinned : &c->lru;
}

/* ---- the table ------------------------------------------------------------ */

static nudgel_cache_entry_t **bucket_of(const nudgel_cache_t *c, uint64_t hash)
{
    return &c->buckets[hash & (c->nbuckets - 1)];
}

static void grow(nudgel_cache_t *c)
{
    size_t n = c->nbuckets * 2;
    if (n > BUCKETS_MAX)
        return;
    nudgel_cache_entry_t **b = calloc(n, sizeof(b[0]));
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (nudgel_cache_entry_t *e = c->buckets[i], *next; e; e = next) {
            next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

/* Takes @p e out of its chain and list and frees it, its value through the callback. */
static void drop(nudgel_cache_t *c, nudgel_cache_entry_t *e)
{
    nudgel_cache_entry_t **link = bucket_of(c, e->hash);
    while (*link != e)
        link = &(*link)->chain;
    *link = e->chain;
    list_unlink(list_of(c, e), e);
    c->count--;
    void *value = e->value;
    free(e);
    if (c->free_value)
        c->free_value(c->opaque, value);
}

/* Evicts the least recently used unpinned entries while more than @p keep are left. */
static size_t evict_above(nudgel_cache_t *c, size_t keep)
{
    size_t n = 0;
    while (c->count > keep && c->lru.head) {
        drop(c, c->lru.head);
        n++;
    }
    c->evictions += n;
    return n;
}

/* ---- the interface ---------------------------------------------------------- */

nudgel_err_t nudgel_cache_new(size_t max, nudgel_cache_free_fn *free_value, void *opaque,
                              nudgel_cache_t **out)
{
    nudgel_cache_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->buckets = calloc(BUCKETS_MIN, sizeof(c->buckets[0])))) {
        free(c);
        return NUDGEL_ERR_NO_MEMORY;
    }
    c->nbuckets = BUCKETS_MIN;
    c->max = max;
    c->free_value = free_value;
    c->opaque = opaque;
    *out = c;
    return NUDGEL_OK;
}

void nudgel_cache_free(nudgel_cache_t *c)
{
    if (!c)
        return;
    while (c->lru.head)
        drop(c, c->lru.head);
    while (c->pinned.head)
        drop(c, c->pinned.head);
    free(c->buckets);
    free(c);
}

void nudgel_cache_set_max(nudgel_cache_t *c, size_t max)
{
    c->max = max;
}

nudgel_cache_entry_t *nudgel_cache_peek(const nudgel_cache_t *c, const void *key, size_t len)
{
    uint64_t h = hash_key(key, len);
    for (nudgel_cache_entry_t *e = *bucket_of(c, h); e; e = e->chain)
        if (e->hash == h && e->len == len && (len == 0 || memcmp(e->key, key, len) == 0))
            return e;
    return NULL;
}

nudgel_cache_entry_t *nudgel_cache_get(nudgel_cache_t *c, const void *key, size_t len)
{
    nudgel_cache_entry_t *e = nudgel_cache_peek(c, key, len);
    if (e)
        nudgel_cache_touch(c, e);
    return e;
}

nudgel_err_t nudgel_cache_insert(nudgel_cache_t *c, const void *key, size_t len, void *value,
                                 nudgel_cache_entry_t **out)
{
    if (nudgel_cache_peek(c, key, len))
        return NUDGEL_ERR_INVALID_ARG;
    if (len > SIZE_MAX - sizeof(nudgel_cache_entry_t))
        return NUDGEL_ERR_NO_MEMORY;
    nudgel_cache_entry_t *e = malloc(sizeof(*e) + len);
    if (!e)
        return NUDGEL_ERR_NO_MEMORY;
    /* Room first, so the new entry is never the one evicted. */
    if (c->max)
        evict_above(c, c->max - 1);
    memset(e, 0, sizeof(*e));
    e->value = value;
    e->hash = hash_key(key, len);
    e->len = len;
    if (len)
        memcpy(e->key, key, len);
    if (c->count >= c->nbuckets)
        grow(c);
    nudgel_cache_entry_t **b = bucket_of(c, e->hash);
    e->chain = *b;
    *b = e;
    list_append(&c->lru, e);
    c->count++;
    if (out)
        *out = e;
    return NUDGEL_OK;
}

void nudgel_cache_touch(nudgel_cache_t *c, nudgel_cache_entry_t *e)
{
    if (e->pins || c->lru.tail == e)
        return;
    list_unlink(&c->lru, e);
    list_append(&c->lru, e);
}

void nudgel_cache_remove(nudgel_cache_t *c, nudgel_cache_entry_t *e)
{
    drop(c, e);
}

void nudgel_cache_pin(nudgel_cache_t *c, nudgel_cache_entry_t *e)
{
    if (e->pins++ == 0) {
        list_unlink(&c->lru, e);
        list_append(&c->pinned, e);
    }
}

void nudgel_cache_unpin(nudgel_cache_t *c, nudgel_cache_entry_t *e)
{
    if (e->pins == 0 || --e->pins > 0)
        return;
    list_unlink(&c->pinned, e);
    list_append(&c->lru, e);
}

void nudgel_cache_pin_while(nudgel_cache_t *c, nudgel_cache_entry_t *e, bool *flag, bool on)
{
    if (*flag == on)
        return;
    *flag = on;
    if (on)
        nudgel_cache_pin(c, e);
    else
        nudgel_cache_unpin(c, e);
}

bool nudgel_cache_pinned(const nudgel_cache_entry_t *e)
{
    return e->pins > 0;
}

size_t nudgel_cache_trim(nudgel_cache_t *c)
{
    return c->max ? evict_above(c, c->max) : 0;
}

size_t nudgel_cache_count(const nudgel_cache_t *c)
{
    return c->count;
}

uint64_t nudgel_cache_evictions(const nudgel_cache_t *c)
{
    return c->evictions;
}

void *nudgel_cache_value(const nudgel_cache_entry_t *e)
{
    return e->value;
}

const void *nudgel_cache_key(const nudgel_cache_entry_t *e, size_t *len)
{
    *len = e->len;
    return e->key;
}

nudgel_cache_entry_t *nudgel_cache_next(const nudgel_cache_t *c, const nudgel_cache_entry_t *e)
{
    if (!e)
        return c->lru.head ? c->lru.head : c->pinned.head;
    if (e->next)
        return e->next;
    return e->pins ? NULL : c->pinned.head;
}
