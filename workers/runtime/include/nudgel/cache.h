/*
 * nudgel/cache.h — a capped map from a byte-string key to a caller's value,
 * in least-recently-used order: the template cache, the endpoint rows and
 * SSRF verdicts of the webhook deliverer, the dispatcher's per-tenant
 * endpoint lists.
 *
 * Each entry holds a copy of its key and a pointer to the caller's value.
 * nudgel_cache_get() finds an entry and makes it the most recently used;
 * nudgel_cache_peek() finds it without touching it. nudgel_cache_insert()
 * first makes room — while the cache holds its cap or more, the least
 * recently used entry not pinned is evicted — then adds the new entry as the
 * most recently used, so a new entry is never the one evicted for itself.
 *
 * Pins: an entry pinned (nudgel_cache_pin(), counted: as many unpins as
 * pins) is never evicted — one held by jobs, or whose row is being read.
 * While nothing can be evicted the cache goes over its cap; the next
 * insert or nudgel_cache_trim() brings it back as entries are unpinned. A
 * pinned entry is out of the use order; when its last pin goes it becomes
 * the most recently used (it was in use until then).
 *
 * Ownership: the cache owns its entries and their key copies; the values
 * are the caller's, handed to the free callback given to nudgel_cache_new()
 * (if any) when their entry is evicted, removed, or freed with the cache —
 * that is where a caller wipes secrets. Without a callback the cache never
 * touches a value. An entry handle stays valid until its entry is evicted
 * or removed: a caller who keeps one (to pin it later) must not keep it
 * past an insert or trim unless the entry is pinned.
 *
 * Memory and time: a hash table with chaining (FNV-1a, doubled as it
 * fills, never shrunk) and two intrusive doubly linked lists (the use
 * order of the unpinned entries, and the pinned ones): get, peek, insert,
 * remove, pin, unpin and each eviction are O(1) on average.
 *
 * Threads: no locking; a cache belongs to the one event loop thread that
 * owns its role's stage. The free callback must not call into the cache.
 */
#ifndef NUDGEL_CACHE_H
#define NUDGEL_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/error.h"

typedef struct nudgel_cache nudgel_cache_t;
typedef struct nudgel_cache_entry nudgel_cache_entry_t;

/** Called with the free callback's @p opaque and a value whose entry leaves the cache. */
typedef void nudgel_cache_free_fn(void *opaque, void *value);

/**
 * @brief An empty cache of at most @p max entries (0: no cap), calling
 * @p free_value (may be NULL) with @p opaque (borrowed) on each value that
 * leaves it.
 * @returns NUDGEL_OK and @p *out (the caller owns it: nudgel_cache_free()),
 * or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_cache_new(size_t max, nudgel_cache_free_fn *free_value, void *opaque,
                              nudgel_cache_t **out);

/** @brief Frees @p c (NULL is fine) and every entry, each value through the free callback. */
void nudgel_cache_free(nudgel_cache_t *c);

/**
 * @brief Sets the cap (0: none). Nothing is evicted now: the next insert or
 * nudgel_cache_trim() applies it.
 */
void nudgel_cache_set_max(nudgel_cache_t *c, size_t max);

/** @brief The entry of @p key (@p len bytes), made the most recently used; NULL when absent. */
nudgel_cache_entry_t *nudgel_cache_get(nudgel_cache_t *c, const void *key, size_t len);

/** @brief The entry of @p key, its place in the use order unchanged; NULL when absent. */
nudgel_cache_entry_t *nudgel_cache_peek(const nudgel_cache_t *c, const void *key, size_t len);

/**
 * @brief Adds @p key (copied) with @p value (the caller's until the entry
 * leaves: then the free callback's) as the most recently used entry, after
 * evicting the least recently used unpinned entries while the cache holds
 * its cap or more.
 * @returns NUDGEL_OK and, if @p out is not NULL, the new entry in @p *out;
 * NUDGEL_ERR_INVALID_ARG when @p key is already there, NUDGEL_ERR_NO_MEMORY
 * (nothing added or evicted either way; @p value stays the caller's).
 */
nudgel_err_t nudgel_cache_insert(nudgel_cache_t *c, const void *key, size_t len, void *value,
                                 nudgel_cache_entry_t **out);

/** @brief Makes @p e the most recently used (a pinned entry: no effect). */
void nudgel_cache_touch(nudgel_cache_t *c, nudgel_cache_entry_t *e);

/** @brief Takes @p e out (pinned or not); its value goes to the free callback. Not an eviction. */
void nudgel_cache_remove(nudgel_cache_t *c, nudgel_cache_entry_t *e);

/** @brief One more pin on @p e: it is not evicted until as many unpins. */
void nudgel_cache_pin(nudgel_cache_t *c, nudgel_cache_entry_t *e);

/**
 * @brief Takes one pin off @p e (none: no effect); without pins left it
 * becomes the most recently used and may be evicted again. Evicts nothing
 * itself.
 */
void nudgel_cache_unpin(nudgel_cache_t *c, nudgel_cache_entry_t *e);

/**
 * @brief One pin on @p e while @p *flag — a state of the caller's value
 * that must keep it cached (its row loading, its lane busy) — is true: sets
 * @p *flag to @p on, pinning @p e as it becomes true and unpinning it as it
 * becomes false (unchanged: nothing).
 */
void nudgel_cache_pin_while(nudgel_cache_t *c, nudgel_cache_entry_t *e, bool *flag, bool on);

/** @brief Whether @p e has a pin. */
bool nudgel_cache_pinned(const nudgel_cache_entry_t *e);

/**
 * @brief Evicts the least recently used unpinned entries while the cache
 * holds more than its cap. @returns how many.
 */
size_t nudgel_cache_trim(nudgel_cache_t *c);

/** @brief Entries in @p c, pinned ones included. */
size_t nudgel_cache_count(const nudgel_cache_t *c);

/** @brief Entries evicted for the cap since @p c was made (removals and the final free not). */
uint64_t nudgel_cache_evictions(const nudgel_cache_t *c);

/** @brief @p e's value (the caller's, as inserted). */
void *nudgel_cache_value(const nudgel_cache_entry_t *e);

/** @brief @p e's key (the cache's copy, borrowed while @p e lives) and its length in @p *len. */
const void *nudgel_cache_key(const nudgel_cache_entry_t *e, size_t *len);

/**
 * @brief Iteration: the entry after @p e (NULL: the first). The unpinned
 * entries come first, least recently used first (the next to be evicted),
 * then the pinned ones. The cache must not change during an iteration,
 * except for removing the entry just visited once its next one is taken.
 * @returns NULL after the last.
 */
nudgel_cache_entry_t *nudgel_cache_next(const nudgel_cache_t *c, const nudgel_cache_entry_t *e);

#endif
