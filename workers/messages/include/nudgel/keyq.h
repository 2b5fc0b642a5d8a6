/*
 * nudgel/keyq.h — queues by key: a hash map from a string key (a recipient
 * "tenant\0+254...", a tenant id) to a FIFO of waiting items and a count of
 * items holding the key. The worker uses it to submit one recipient's jobs in
 * order (one holder at a time) and to park a tenant's jobs while the tenant
 * is at its in-flight cap or send rate (DESIGN §5: ordering, tenant
 * fairness). The caller decides what "holding" means; keyq only keeps the
 * books, so every decision stays visible in the worker.
 *
 * Entries with waiting items are also on a list (nudgel_keyq_first_waiting(),
 * nudgel_keyq_next_waiting()) so a timer can revisit them without a scan of
 * every key. An entry with no holder and nothing waiting should be dropped
 * (nudgel_keyq_drop_if_idle()) so the map stays as small as the work in
 * flight. Not thread-safe; nothing here blocks.
 */
#ifndef NUDGEL_KEYQ_H
#define NUDGEL_KEYQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nudgel_keyq nudgel_keyq_t;
typedef struct nudgel_keyq_entry nudgel_keyq_entry_t;

/** @brief A new, empty map; NULL when out of memory. */
nudgel_keyq_t *nudgel_keyq_new(void);

/** @brief Frees @p q and its entries (not the items; NULL is fine). */
void nudgel_keyq_free(nudgel_keyq_t *q);

/** @brief As nudgel_keyq_free(), calling @p free_data on each entry's data first. */
void nudgel_keyq_free_with(nudgel_keyq_t *q, void (*free_data)(void *data));

/**
 * @brief The entry of @p key (@p len bytes, may hold NULs), created with no
 * holder and nothing waiting when @p create and absent.
 * @returns the entry, or NULL when absent (or out of memory).
 */
nudgel_keyq_entry_t *nudgel_keyq_get(nudgel_keyq_t *q, const void *key, size_t len, bool create);

/** @brief Items holding the entry's key (the caller's count). */
uint32_t *nudgel_keyq_holders(nudgel_keyq_entry_t *e);

/** @brief Caller's time, e.g. when a rate-limited key may go again (0 at creation). */
int64_t *nudgel_keyq_not_before(nudgel_keyq_entry_t *e);

/** @brief The caller's pointer of the entry (NULL at creation), e.g. a cached value. */
void **nudgel_keyq_data(nudgel_keyq_entry_t *e);

/** @brief Appends @p item to the entry's FIFO. @returns false when out of memory. */
bool nudgel_keyq_push(nudgel_keyq_t *q, nudgel_keyq_entry_t *e, void *item);

/** @brief The oldest waiting item without removing it; NULL when none. */
void *nudgel_keyq_peek(const nudgel_keyq_entry_t *e);

/** @brief Removes and returns the oldest waiting item; NULL when none. */
void *nudgel_keyq_pop(nudgel_keyq_t *q, nudgel_keyq_entry_t *e);

/** @brief Items waiting in the entry's FIFO. */
size_t nudgel_keyq_waiting(const nudgel_keyq_entry_t *e);

/** @brief Drops the entry when it has no holder and nothing waiting. @returns true if dropped. */
bool nudgel_keyq_drop_if_idle(nudgel_keyq_t *q, nudgel_keyq_entry_t *e);

/** @brief Entries in the map. */
size_t nudgel_keyq_count(const nudgel_keyq_t *q);

/** @brief Items waiting across every entry. */
size_t nudgel_keyq_total_waiting(const nudgel_keyq_t *q);

/**
 * @brief The entries with waiting items, oldest first to wait: first, then
 * next until NULL. Popping or pushing while walking is fine if the walk
 * takes the next entry before touching the current one.
 */
nudgel_keyq_entry_t *nudgel_keyq_first_waiting(const nudgel_keyq_t *q);
nudgel_keyq_entry_t *nudgel_keyq_next_waiting(const nudgel_keyq_entry_t *e);

#endif
