/*
 * offsets.c — a ring of started offsets in increasing order with a done flag
 * each. completed() finds its slot by binary search (the ring is sorted),
 * then pops every done slot off the head; the last popped offset + 1 is the
 * new position.
 */
#include "nudgel/offsets.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct slot {
    int64_t offset;
    bool done;
} slot_t;

struct nudgel_offsets {
    slot_t *ring;
    size_t cap;
    size_t head;        /* index of the oldest slot */
    size_t len;         /* slots in use */
    size_t in_flight;   /* slots not done */
    int64_t last_start; /* newest started offset, -1 after reset */
    int64_t position;   /* highest contiguous completed + 1, -1 when none */
    int64_t reported;   /* last value committable() returned, -1 when none */
};

nudgel_err_t nudgel_offsets_new(size_t capacity, nudgel_offsets_t **out, char *errstr,
                                size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_OK;
    nudgel_offsets_t *t = NULL;

    if (!out) {
        snprintf(errstr, errstr_size, "offsets: NULL argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (capacity < 1 || capacity > NUDGEL_OFFSETS_CAPACITY_MAX) {
        snprintf(errstr, errstr_size, "offsets capacity %zu is outside [1, %u]", capacity,
                 NUDGEL_OFFSETS_CAPACITY_MAX);
        return NUDGEL_ERR_INVALID_ARG;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    t->ring = malloc(capacity * sizeof(*t->ring));
    if (!t->ring) {
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    t->cap = capacity;
    nudgel_offsets_reset(t);

out:
    if (err != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "offsets: out of memory");
        nudgel_offsets_free(t);
        return err;
    }
    *out = t;
    return NUDGEL_OK;
}

void nudgel_offsets_free(nudgel_offsets_t *t)
{
    if (!t)
        return;
    free(t->ring);
    free(t);
}

static slot_t *at(const nudgel_offsets_t *t, size_t i)
{
    return &t->ring[(t->head + i) % t->cap];
}

nudgel_err_t nudgel_offsets_started(nudgel_offsets_t *t, int64_t offset)
{
    if (!t || offset < 0 || offset <= t->last_start)
        return NUDGEL_ERR_INVALID_ARG;
    if (t->len == t->cap)
        return NUDGEL_ERR_WINDOW_FULL;
    *at(t, t->len) = (slot_t){.offset = offset, .done = false};
    t->len++;
    t->in_flight++;
    t->last_start = offset;
    return NUDGEL_OK;
}

/*
 * Returns NUDGEL_OK once the slot of @p offset is marked done and the head
 * popped past every done slot; NUDGEL_ERR_INVALID_ARG when no slot holds
 * @p offset (never started, a gap, already popped) or it is already done.
 */
nudgel_err_t nudgel_offsets_unstart(nudgel_offsets_t *t, int64_t offset)
{
    if (!t || t->len == 0 || at(t, t->len - 1)->offset != offset || at(t, t->len - 1)->done)
        return NUDGEL_ERR_INVALID_ARG;
    t->len--;
    t->in_flight--;
    t->last_start = t->len ? at(t, t->len - 1)->offset : (t->position >= 0 ? t->position - 1 : -1);
    return NUDGEL_OK;
}

nudgel_err_t nudgel_offsets_completed(nudgel_offsets_t *t, int64_t offset)
{
    if (!t || t->len == 0)
        return NUDGEL_ERR_INVALID_ARG;
    size_t lo = 0, hi = t->len; /* find the first slot with offset >= @p offset */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at(t, mid)->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->len || at(t, lo)->offset != offset || at(t, lo)->done)
        return NUDGEL_ERR_INVALID_ARG;
    at(t, lo)->done = true;
    t->in_flight--;
    while (t->len > 0 && at(t, 0)->done) {
        t->position = at(t, 0)->offset + 1;
        t->head = (t->head + 1) % t->cap;
        t->len--;
    }
    return NUDGEL_OK;
}

int64_t nudgel_offsets_committable(nudgel_offsets_t *t)
{
    if (!t || t->position < 0 || t->position == t->reported)
        return -1;
    t->reported = t->position;
    return t->position;
}

int64_t nudgel_offsets_position(const nudgel_offsets_t *t)
{
    return t ? t->position : -1;
}

size_t nudgel_offsets_in_flight(const nudgel_offsets_t *t)
{
    return t ? t->in_flight : 0;
}

size_t nudgel_offsets_window(const nudgel_offsets_t *t)
{
    return t ? t->len : 0;
}

void nudgel_offsets_reset(nudgel_offsets_t *t)
{
    if (!t)
        return;
    t->head = t->len = t->in_flight = 0;
    t->last_start = t->position = t->reported = -1;
}
