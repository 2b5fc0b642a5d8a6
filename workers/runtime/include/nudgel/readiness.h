/*
 * nudgel/readiness.h — a worker's readiness, decided in one place.
 *
 * Readiness is a list of named conditions ("draining", "kafka",
 * "partitions", "postgres:claims", ...) registered at start-up. Each is ok,
 * not ok with a short reason, or does not apply (a role idle by design with
 * no partitions). The worker is ready when no condition is not ok; otherwise
 * /readyz answers 503 with the first failing condition, in registration
 * order, as "name: reason".
 *
 * Threads: the loop thread registers and sets conditions; /readyz calls
 * nudgel_readiness_check() on libmicrohttpd's thread. Every function here is
 * thread-safe (one mutex; setting a condition to the state it already has
 * costs a lock and a compare). Reasons are copied, cut at
 * NUDGEL_READY_REASON_MAX - 1 bytes.
 */
#ifndef NUDGEL_READINESS_H
#define NUDGEL_READINESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nudgel_readiness nudgel_readiness_t;
typedef struct nudgel_ready_cond nudgel_ready_cond_t;

#define NUDGEL_READY_REASON_MAX 160 /* bytes of a reason, NUL included */
#define NUDGEL_READY_MAX_CONDS  32  /* conditions one readiness holds */

typedef enum nudgel_ready_state {
    NUDGEL_READY_NOT_OK = 0, /* blocks readiness; its reason is what /readyz says */
    NUDGEL_READY_OK,
    NUDGEL_READY_NOT_APPLICABLE, /* does not apply to this process now: ignored */
} nudgel_ready_state_t;

/** @brief An empty readiness (ready: no condition fails). NULL on allocation failure. */
nudgel_readiness_t *nudgel_readiness_new(void);

/** @brief Frees @p r and its conditions (their handles become invalid). NULL is a no-op. */
void nudgel_readiness_free(nudgel_readiness_t *r);

/**
 * @brief Registers the condition @p name (copied), not ok with @p reason
 * (copied; NULL: "not yet known") until it is first set. Names are unique:
 * adding a name twice returns the existing condition unchanged.
 * @returns the condition, owned by @p r; NULL for a name of 64 bytes or more
 * or past NUDGEL_READY_MAX_CONDS.
 */
nudgel_ready_cond_t *nudgel_readiness_add(nudgel_readiness_t *r, const char *name,
                                          const char *reason);

/** @brief The condition named @p name, or NULL. */
nudgel_ready_cond_t *nudgel_readiness_find(nudgel_readiness_t *r, const char *name);

/**
 * @brief Sets @p c to @p state with @p reason (copied; may be NULL, meaning
 * "" for OK and NOT_APPLICABLE, the condition's name otherwise). NULL @p c is
 * a no-op, so a role may set a condition it did not register.
 */
void nudgel_ready_set(nudgel_ready_cond_t *c, nudgel_ready_state_t state, const char *reason);

/** @brief nudgel_ready_set(c, NUDGEL_READY_OK, NULL). */
void nudgel_ready_ok(nudgel_ready_cond_t *c);

/** @brief Not ok, with a printf-style reason. */
void nudgel_ready_fail(nudgel_ready_cond_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** @brief The condition does not apply (e.g. no partitions assigned by design). */
void nudgel_ready_not_applicable(nudgel_ready_cond_t *c, const char *reason);

/** @brief The current state of @p c, and its reason (copied into @p reason when not NULL). */
nudgel_ready_state_t nudgel_ready_get(const nudgel_ready_cond_t *c, char *reason,
                                      size_t reason_size);

/**
 * @brief Whether every condition is ok or does not apply. When not, @p why
 * (may be NULL) receives "name: reason" of the first failing condition in
 * registration order. Any thread; the signature fits nudgel_ready_fn
 * (pass the readiness as the opaque pointer).
 */
bool nudgel_readiness_check(void *readiness, char *why, size_t why_size);

/**
 * @brief How many times the worker went from ready to not ready or back
 * since start-up (registering a condition is not counted), for the
 * readiness-flapping alert. Any thread.
 */
uint64_t nudgel_readiness_transitions(nudgel_readiness_t *r);

#endif
