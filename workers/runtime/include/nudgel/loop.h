/*
 * nudgel/loop.h — the one event loop of a worker process (DESIGN §8).
 *
 * A turn waits once for everything the process waits on — file descriptors
 * (Kafka queue event fds, curl sockets, libpq sockets, a signalfd) and the
 * earliest timer — then runs, in this order: the callbacks of the ready
 * fds, the timers that are due, and the turn hooks (the stages' pumps). It
 * sleeps exactly until the next fd event or timer, like Redis's
 * aeProcessEvents(): no fixed sleeps, no short polls. A hook that left work
 * for the same turn calls nudgel_loop_again() so the next wait does not
 * block.
 *
 * Timers are a binary min-heap on the monotonic clock (nudgel_mono_us()),
 * armed and disarmed in O(log n); a timer belongs to its owner, who frees it.
 * Fd watches are kept in a table indexed by fd: a callback may watch,
 * change or unwatch any fd, its own included, and an fd unwatched during a
 * turn gets no further callback in that turn.
 *
 * Threads: everything here runs on the loop's thread except
 * nudgel_loop_wake() and nudgel_loop_turns(), which any thread (or a signal
 * handler) may call.
 */
#ifndef NUDGEL_LOOP_H
#define NUDGEL_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/error.h"

typedef struct nudgel_loop nudgel_loop_t;
typedef struct nudgel_timer nudgel_timer_t;

#define NUDGEL_LOOP_READ  0x1u
#define NUDGEL_LOOP_WRITE 0x2u

/** An fd is ready: @p events holds NUDGEL_LOOP_READ and/or _WRITE (errors and hang-ups count as
 * both). */
typedef void(nudgel_loop_fd_fn)(void *opaque, int fd, unsigned events);
/** A timer is due (it is disarmed before the call; re-arm it inside if it repeats). */
typedef void(nudgel_loop_timer_fn)(void *opaque);
/** Runs once per turn, after the fd callbacks and timers. */
typedef void(nudgel_loop_hook_fn)(void *opaque);

/** @brief A new loop (epoll and a wake-up eventfd). @returns it, or NULL with a reason. */
nudgel_loop_t *nudgel_loop_new(char *errstr, size_t errstr_size);

/** @brief Frees the loop. Timers must have been freed by their owners. NULL is a no-op. */
void nudgel_loop_free(nudgel_loop_t *l);

/**
 * @brief Watches @p fd for @p events (NUDGEL_LOOP_READ | _WRITE; 0 keeps the
 * fd registered but asks for nothing), replacing any earlier watch of it.
 * Level-triggered. @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_ARG /
 * NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_loop_watch(nudgel_loop_t *l, int fd, unsigned events, nudgel_loop_fd_fn *fn,
                               void *opaque);

/** @brief Stops watching @p fd (call before closing it). Unknown fds are ignored. */
void nudgel_loop_unwatch(nudgel_loop_t *l, int fd);

/**
 * @brief Adds a hook run at the end of every turn, in the order added.
 * @returns NUDGEL_OK or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_loop_add_hook(nudgel_loop_t *l, nudgel_loop_hook_fn *fn, void *opaque);

/** @brief The next wait does not block (work was left for another turn). */
void nudgel_loop_again(nudgel_loop_t *l);

/**
 * @brief Runs one turn: waits until an fd is ready, a timer is due, a wake
 * arrives or @p max_wait_us passes (-1: no limit besides timers), then
 * dispatches. @returns the number of fd callbacks and timers run.
 */
int nudgel_loop_turn(nudgel_loop_t *l, int64_t max_wait_us);

/** @brief Ends the current (or the next) wait from any thread or a signal handler. */
void nudgel_loop_wake(nudgel_loop_t *l);

/** @brief Turns completed so far (any thread). */
uint64_t nudgel_loop_turns(const nudgel_loop_t *l);

/**
 * @brief How long the loop has been dispatching the current turn, in
 * microseconds; 0 while it waits (any thread). /healthz tells a loop stuck
 * in a callback from one that is idle: idle waiting is healthy.
 */
int64_t nudgel_loop_busy_us(const nudgel_loop_t *l);

/** @brief A timer of @p l calling @p fn; disarmed. NULL on allocation failure. */
nudgel_timer_t *nudgel_timer_new(nudgel_loop_t *l, nudgel_loop_timer_fn *fn, void *opaque);

/** @brief Arms (or re-arms) @p t for the monotonic time @p due_us (nudgel_mono_us()). */
void nudgel_timer_arm_at(nudgel_timer_t *t, int64_t due_us);

/** @brief Arms (or re-arms) @p t @p delay_us from now. */
void nudgel_timer_arm_in(nudgel_timer_t *t, int64_t delay_us);

/** @brief Arms @p t for @p due_us unless it is already armed for earlier. */
void nudgel_timer_arm_by(nudgel_timer_t *t, int64_t due_us);

/** @brief Disarms @p t (no-op when not armed). */
void nudgel_timer_disarm(nudgel_timer_t *t);

/** @brief Whether @p t is armed, and for when (@p due_us may be NULL). */
bool nudgel_timer_armed(const nudgel_timer_t *t, int64_t *due_us);

/** @brief Disarms and frees @p t. NULL is a no-op. */
void nudgel_timer_free(nudgel_timer_t *t);

#endif
