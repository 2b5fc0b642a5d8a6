/*
 * batchq.c — see nudgel/batchq.h.
 *
 * A ring: @c head is the index of the front item, the items run from there
 * for @c count slots, wrapping at @c cap. Growing doubles the ring and moves
 * the wrapped-around part to just after the old end, so the items stay
 * contiguous modulo the new capacity.
 */
#include "nudgel/batchq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_CAP 64

struct nudgel_batchq {
    void **items;
    size_t cap;   /* slots allocated */
    size_t head;  /* index of the front item */
    size_t count; /* items held */
    size_t max;   /* push() refuses at this count */
};

nudgel_err_t nudgel_batchq_new(size_t max_items, nudgel_batchq_t **out)
{
    if (!out)
        return NUDGEL_ERR_INVALID_ARG;
    *out = NULL;
    if (max_items < 1 || max_items > NUDGEL_BATCHQ_CAPACITY_MAX)
        return NUDGEL_ERR_INVALID_ARG;
    nudgel_batchq_t *q = calloc(1, sizeof(*q));
    if (!q)
        return NUDGEL_ERR_NO_MEMORY;
    q->max = max_items;
    *out = q;
    return NUDGEL_OK;
}

void nudgel_batchq_free(nudgel_batchq_t *q)
{
    if (!q)
        return;
    free(q->items);
    free(q);
}

/* Room for @p need items; the ring never shrinks. */
static nudgel_err_t grow(nudgel_batchq_t *q, size_t need)
{
    if (need <= q->cap)
        return NUDGEL_OK;
    size_t cap = q->cap ? q->cap : INITIAL_CAP;
    while (cap < need) {
        if (cap > SIZE_MAX / 2 / sizeof(void *))
            return NUDGEL_ERR_NO_MEMORY;
        cap *= 2;
    }
    void **items = realloc(q->items, cap * sizeof(items[0]));
    if (!items)
        return NUDGEL_ERR_NO_MEMORY;
    /* The part that wrapped around to the start moves to just after the old
     * end: cap >= 2 * old cap, so it fits there. */
    if (q->head + q->count > q->cap) {
        size_t wrapped = q->head + q->count - q->cap;
        memcpy(items + q->cap, items, wrapped * sizeof(items[0]));
    }
    q->items = items;
    q->cap = cap;
    return NUDGEL_OK;
}

nudgel_err_t nudgel_batchq_push(nudgel_batchq_t *q, void *item)
{
    if (q->count >= q->max)
        return NUDGEL_ERR_TOO_LARGE;
    nudgel_err_t err = grow(q, q->count + 1);
    if (err != NUDGEL_OK)
        return err;
    q->items[(q->head + q->count) % q->cap] = item;
    q->count++;
    return NUDGEL_OK;
}

size_t nudgel_batchq_count(const nudgel_batchq_t *q)
{
    return q->count;
}

void *nudgel_batchq_at(const nudgel_batchq_t *q, size_t i)
{
    return i < q->count ? q->items[(q->head + i) % q->cap] : NULL;
}

size_t nudgel_batchq_shift(nudgel_batchq_t *q, void **out, size_t n)
{
    if (n > q->count)
        n = q->count;
    if (n == 0)
        return 0;
    if (out) {
        /* At most two runs: up to the end of the ring, then from its start. */
        size_t first = q->cap - q->head < n ? q->cap - q->head : n;
        memcpy(out, q->items + q->head, first * sizeof(q->items[0]));
        memcpy(out + first, q->items, (n - first) * sizeof(q->items[0]));
    }
    q->head = (q->head + n) % q->cap;
    q->count -= n;
    if (q->count == 0)
        q->head = 0;
    return n;
}

nudgel_err_t nudgel_batchq_unshift(nudgel_batchq_t *q, void *const *items, size_t n)
{
    if (n == 0)
        return NUDGEL_OK;
    if (n > SIZE_MAX - q->count)
        return NUDGEL_ERR_NO_MEMORY;
    nudgel_err_t err = grow(q, q->count + n);
    if (err != NUDGEL_OK)
        return err;
    size_t head = (q->head + q->cap - n % q->cap) % q->cap;
    size_t first = q->cap - head < n ? q->cap - head : n;
    memcpy(q->items + head, items, first * sizeof(q->items[0]));
    memcpy(q->items, items + first, (n - first) * sizeof(q->items[0]));
    q->head = head;
    q->count += n;
    return NUDGEL_OK;
}
