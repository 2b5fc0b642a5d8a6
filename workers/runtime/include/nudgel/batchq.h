/*
 * nudgel/batchq.h — a FIFO of pointers waiting for one batched statement
 * (jobs to claim, outcomes to record).
 *
 * A stage pushes what arrives; when its statement can go, it shifts the
 * first n items out (in order) into the batch it sends; when the statement
 * could not be made durable, it unshifts the batch back to the front (in
 * order), so nothing is lost or reordered. Items are borrowed: the queue
 * never frees or dereferences them.
 *
 * Memory is a ring that grows by doubling and never shrinks; push() refuses
 * at the hard cap given to nudgel_batchq_new(). unshift() may take the
 * queue above its cap — the items were in it before — so putting a batch
 * back fails only when memory runs out.
 *
 * Item arrays are copied with memcpy, so a caller's `msg_t *batch[]` may be
 * passed as `(void **)batch`.
 *
 * Threads: no locking; a queue belongs to the one event loop that owns its
 * stage.
 */
#ifndef NUDGEL_BATCHQ_H
#define NUDGEL_BATCHQ_H

#include <stddef.h>

#include "nudgel/error.h"

#define NUDGEL_BATCHQ_CAPACITY_MAX ((size_t)1 << 24) /* hard cap of any queue */

typedef struct nudgel_batchq nudgel_batchq_t;

/**
 * @brief An empty queue holding at most @p max_items
 * ([1, NUDGEL_BATCHQ_CAPACITY_MAX]) pushed items.
 * @returns NUDGEL_OK and @p *out (the caller owns it: nudgel_batchq_free()),
 * NUDGEL_ERR_INVALID_ARG or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_batchq_new(size_t max_items, nudgel_batchq_t **out);

/** @brief Frees @p q (NULL is fine); the items themselves are the caller's. */
void nudgel_batchq_free(nudgel_batchq_t *q);

/**
 * @brief Appends @p item (borrowed) at the back.
 * @returns NUDGEL_OK; NUDGEL_ERR_TOO_LARGE at the cap or NUDGEL_ERR_NO_MEMORY
 * (nothing was added either way).
 */
nudgel_err_t nudgel_batchq_push(nudgel_batchq_t *q, void *item);

/** @brief Items in the queue. */
size_t nudgel_batchq_count(const nudgel_batchq_t *q);

/** @brief The item at position @p i (0: the front), or NULL when @p i >= count. */
void *nudgel_batchq_at(const nudgel_batchq_t *q, size_t i);

/**
 * @brief Takes the first min(@p n, count) items out, in order, into @p out
 * (an array of at least that many pointers; NULL drops them).
 * @returns how many were taken.
 */
size_t nudgel_batchq_shift(nudgel_batchq_t *q, void **out, size_t n);

/**
 * @brief Puts @p n items back at the front, in order: @p items[0] becomes
 * the front. May exceed the cap (see above).
 * @returns NUDGEL_OK, or NUDGEL_ERR_NO_MEMORY (nothing was added).
 */
nudgel_err_t nudgel_batchq_unshift(nudgel_batchq_t *q, void *const *items, size_t n);

#endif
