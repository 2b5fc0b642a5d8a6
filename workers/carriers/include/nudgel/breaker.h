/*
 * nudgel/breaker.h — a circuit breaker per gateway.
 *
 * Closed: traffic flows; every outcome is counted in a sliding window of the
 * last @p window outcomes. When at least @p min_calls outcomes are in the
 * window and the failure share reaches @p failure_ratio, the breaker opens:
 * the route passes traffic to its next gateway. After @p open_us it is
 * half-open: one probe at a time is let through; a success closes it, a
 * failure opens it again. Only transient failures count (timeouts, 5xx,
 * 429, a refused key): a permanent refusal is about the message, not the
 * gateway. The caller arms a timer for the end of the open interval and
 * calls nudgel_breaker_poll() then, so an open breaker half-opens even when
 * no job is routed to it.
 *
 * Time is passed in by the caller (monotonic microseconds) so tests are exact.
 * Threads: one event loop; no locking.
 */
#ifndef NUDGEL_BREAKER_H
#define NUDGEL_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#define NUDGEL_BREAKER_WINDOW_MAX 256

typedef enum nudgel_breaker_state {
    NUDGEL_BREAKER_CLOSED,
    NUDGEL_BREAKER_OPEN,
    NUDGEL_BREAKER_HALF_OPEN,
} nudgel_breaker_state_t;

typedef struct nudgel_breaker {
    /* settings */
    uint32_t window;    /* outcomes remembered, 1..NUDGEL_BREAKER_WINDOW_MAX */
    uint32_t min_calls; /* outcomes needed before it may open */
    double failure_ratio;
    int64_t open_us;
    /* state */
    nudgel_breaker_state_t state;
    bool outcomes[NUDGEL_BREAKER_WINDOW_MAX]; /* true = failure */
    uint32_t count, next, failures;
    int64_t opened_at_us;
    bool probe_in_flight;
} nudgel_breaker_t;

/** @brief A closed breaker with the given settings (window is clamped to the maximum). */
void nudgel_breaker_init(nudgel_breaker_t *b, uint32_t window, uint32_t min_calls,
                         double failure_ratio, int64_t open_us);

/**
 * @brief Whether a request may go through now. In half-open state this takes
 * the single probe slot, which nudgel_breaker_record() gives back.
 */
bool nudgel_breaker_allow(nudgel_breaker_t *b, int64_t now_us);

/**
 * @brief An open breaker whose open interval is over becomes half-open (its
 * probe slot free), so that a caller's timer can show and log the change
 * without taking the probe. @returns whether the state changed.
 */
bool nudgel_breaker_poll(nudgel_breaker_t *b, int64_t now_us);

/** @brief Records the outcome of a request that allow() let through. */
void nudgel_breaker_record(nudgel_breaker_t *b, bool failure, int64_t now_us);

/** @brief "closed", "open" or "half_open". */
const char *nudgel_breaker_state_name(nudgel_breaker_state_t state);

#endif
