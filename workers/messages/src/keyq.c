/*
 * keyq.c — queues by key (see nudgel/keyq.h).
 *
 * Chained hash map (FNV-1a, power-of-two buckets, doubled at load 1), each
 * entry with a singly linked FIFO of nodes and a place on a doubly linked
 * list of entries that have something waiting.
 */
#include "nudgel/keyq.h"

#include <stdlib.h>
#include <string.h>

typedef struct node {
    struct node *next;
    void *item;
} node_t;

struct nudgel_keyq_entry {
    nudgel_keyq_entry_t *chain; /* next in the bucket */
    nudgel_keyq_entry_t *wprev, *wnext;
    node_t *head, *tail;
    size_t waiting;
    uint32_t holders;
    int64_t not_before;
    void *data;
    uint64_t hash;
    size_t len;
    char key[]; /* len bytes */
};

struct nudgel_keyq {
    nudgel_keyq_entry_t **buckets;
    size_t nbuckets, count, total_waiting;
    nudgel_keyq_entry_t *whead, *wtail;
};

static uint64_t fnv1a(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

nudgel_keyq_t *nudgel_keyq_new(void)
{
    nudgel_keyq_t *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->nbuckets = 64;
    if (!(q->buckets = calloc(q->nbuckets, sizeof(q->buckets[0])))) {
        free(q);
        return NULL;
    }
    return q;
}

static void entry_free(nudgel_keyq_entry_t *e)
{
    for (node_t *n = e->head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    free(e);
}

void nudgel_keyq_free(nudgel_keyq_t *q)
{
    nudgel_keyq_free_with(q, NULL);
}

void nudgel_keyq_free_with(nudgel_keyq_t *q, void (*free_data)(void *data))
{
    if (!q)
        return;
    for (size_t b = 0; b < q->nbuckets; b++)
        for (nudgel_keyq_entry_t *e = q->buckets[b], *next; e; e = next) {
            next = e->chain;
            if (free_data && e->data)
                free_data(e->data);
            entry_free(e);
        }
    free(q->buckets);
    free(q);
}

static void grow(nudgel_keyq_t *q)
{
    size_t n = q->nbuckets * 2;
    nudgel_keyq_entry_t **b = calloc(n, sizeof(b[0]));
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < q->nbuckets; i++)
        for (nudgel_keyq_entry_t *e = q->buckets[i], *next; e; e = next) {
            next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(q->buckets);
    q->buckets = b;
    q->nbuckets = n;
}

nudgel_keyq_entry_t *nudgel_keyq_get(nudgel_keyq_t *q, const void *key, size_t len, bool create)
{
    uint64_t h = fnv1a(key, len);
    for (nudgel_keyq_entry_t *e = q->buckets[h & (q->nbuckets - 1)]; e; e = e->chain)
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    if (!create)
        return NULL;
    nudgel_keyq_entry_t *e = calloc(1, sizeof(*e) + len);
    if (!e)
        return NULL;
    memcpy(e->key, key, len);
    e->len = len;
    e->hash = h;
    if (q->count + 1 > q->nbuckets)
        grow(q);
    size_t b = h & (q->nbuckets - 1);
    e->chain = q->buckets[b];
    q->buckets[b] = e;
    q->count++;
    return e;
}

uint32_t *nudgel_keyq_holders(nudgel_keyq_entry_t *e)
{
    return &e->holders;
}

void **nudgel_keyq_data(nudgel_keyq_entry_t *e)
{
    return &e->data;
}

int64_t *nudgel_keyq_not_before(nudgel_keyq_entry_t *e)
{
    return &e->not_before;
}

static void waiting_link(nudgel_keyq_t *q, nudgel_keyq_entry_t *e)
{
    e->wnext = NULL;
    e->wprev = q->wtail;
    if (q->wtail)
        q->wtail->wnext = e;
    else
        q->whead = e;
    q->wtail = e;
}

static void waiting_unlink(nudgel_keyq_t *q, nudgel_keyq_entry_t *e)
{
    if (e->wprev)
        e->wprev->wnext = e->wnext;
    else
        q->whead = e->wnext;
    if (e->wnext)
        e->wnext->wprev = e->wprev;
    else
        q->wtail = e->wprev;
    e->wprev = e->wnext = NULL;
}

bool nudgel_keyq_push(nudgel_keyq_t *q, nudgel_keyq_entry_t *e, void *item)
{
    node_t *n = malloc(sizeof(*n));
    if (!n)
        return false;
    n->next = NULL;
    n->item = item;
    if (e->tail)
        e->tail->next = n;
    else
        e->head = n;
    e->tail = n;
    if (e->waiting++ == 0)
        waiting_link(q, e);
    q->total_waiting++;
    return true;
}

void *nudgel_keyq_peek(const nudgel_keyq_entry_t *e)
{
    return e->head ? e->head->item : NULL;
}

void *nudgel_keyq_pop(nudgel_keyq_t *q, nudgel_keyq_entry_t *e)
{
    node_t *n = e->head;
    if (!n)
        return NULL;
    void *item = n->item;
    e->head = n->next;
    if (!e->head)
        e->tail = NULL;
    free(n);
    q->total_waiting--;
    if (--e->waiting == 0)
        waiting_unlink(q, e);
    return item;
}

size_t nudgel_keyq_waiting(const nudgel_keyq_entry_t *e)
{
    return e->waiting;
}

bool nudgel_keyq_drop_if_idle(nudgel_keyq_t *q, nudgel_keyq_entry_t *e)
{
    if (e->holders || e->waiting)
        return false;
    nudgel_keyq_entry_t **pp = &q->buckets[e->hash & (q->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->chain;
    if (!*pp)
        return false;
    *pp = e->chain;
    q->count--;
    entry_free(e);
    return true;
}

size_t nudgel_keyq_count(const nudgel_keyq_t *q)
{
    return q->count;
}

size_t nudgel_keyq_total_waiting(const nudgel_keyq_t *q)
{
    return q->total_waiting;
}

nudgel_keyq_entry_t *nudgel_keyq_first_waiting(const nudgel_keyq_t *q)
{
    return q->whead;
}

nudgel_keyq_entry_t *nudgel_keyq_next_waiting(const nudgel_keyq_entry_t *e)
{
    return e->wnext;
}
