/*
 * queue.c — msg_queue_t, the growable arrays of jobs that wait for one
 * batched statement (claims, outcomes) or for the next turn (recipients whose
 * turn came). FIFO; items are borrowed (the queue never frees a job).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "messages.h"

bool queue_push(msg_queue_t *q, msg_t *m)
{
    if (q->count == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 256;
        msg_t **items = realloc(q->items, cap * sizeof(items[0]));
        if (!items)
            return false;
        q->items = items;
        q->cap = cap;
    }
    q->items[q->count++] = m;
    return true;
}

/* Drops the first @p n items, keeping the order of the rest. */
void queue_shift(msg_queue_t *q, size_t n)
{
    memmove(q->items, q->items + n, (q->count - n) * sizeof(q->items[0]));
    q->count -= n;
}

/* Puts @p n items back at the front, in order (they were shifted out just before). */
void queue_unshift(msg_queue_t *q, msg_t **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        queue_push(q, NULL); /* room; capacity never shrinks, so this cannot fail after a shift */
    memmove(q->items + n, q->items, (q->count - n) * sizeof(q->items[0]));
    memcpy(q->items, items, n * sizeof(q->items[0]));
}
