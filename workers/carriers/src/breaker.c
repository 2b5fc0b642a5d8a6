/*
 * breaker.c — see nudgel/breaker.h.
 */
#include "nudgel/breaker.h"

#include <string.h>

void nudgel_breaker_init(nudgel_breaker_t *b, uint32_t window, uint32_t min_calls,
                         double failure_ratio, int64_t open_us)
{
    memset(b, 0, sizeof(*b));
    b->window = window < 1                           ? 1
                : window > NUDGEL_BREAKER_WINDOW_MAX ? NUDGEL_BREAKER_WINDOW_MAX
                                                     : window;
    b->min_calls = min_calls < 1 ? 1 : min_calls;
    b->failure_ratio = failure_ratio;
    b->open_us = open_us;
    b->state = NUDGEL_BREAKER_CLOSED;
}

static void reset_window(nudgel_breaker_t *b)
{
    b->count = b->next = b->failures = 0;
}

bool nudgel_breaker_allow(nudgel_breaker_t *b, int64_t now_us)
{
    switch (b->state) {
    case NUDGEL_BREAKER_CLOSED:
        return true;
    case NUDGEL_BREAKER_OPEN:
        if (now_us - b->opened_at_us < b->open_us)
            return false;
        b->state = NUDGEL_BREAKER_HALF_OPEN;
        b->probe_in_flight = false;
        /* fall through */
    case NUDGEL_BREAKER_HALF_OPEN:
        if (b->probe_in_flight)
            return false;
        b->probe_in_flight = true;
        return true;
    }
    return false;
}

bool nudgel_breaker_poll(nudgel_breaker_t *b, int64_t now_us)
{
    if (b->state != NUDGEL_BREAKER_OPEN || now_us - b->opened_at_us < b->open_us)
        return false;
    b->state = NUDGEL_BREAKER_HALF_OPEN;
    b->probe_in_flight = false;
    return true;
}

void nudgel_breaker_record(nudgel_breaker_t *b, bool failure, int64_t now_us)
{
    if (b->state == NUDGEL_BREAKER_HALF_OPEN) {
        b->probe_in_flight = false;
        reset_window(b);
        if (failure) {
            b->state = NUDGEL_BREAKER_OPEN;
            b->opened_at_us = now_us;
        } else {
            b->state = NUDGEL_BREAKER_CLOSED;
        }
        return;
    }
    if (b->state == NUDGEL_BREAKER_OPEN)
        return; /* a late answer of a request sent before it opened */
    if (b->count == b->window) {
        b->failures -= b->outcomes[b->next];
    } else {
        b->count++;
    }
    b->outcomes[b->next] = failure;
    b->failures += failure;
    b->next = (b->next + 1) % b->window;
    if (b->count >= b->min_calls && (double)b->failures >= b->failure_ratio * (double)b->count) {
        b->state = NUDGEL_BREAKER_OPEN;
        b->opened_at_us = now_us;
        reset_window(b);
    }
}

const char *nudgel_breaker_state_name(nudgel_breaker_state_t state)
{
    switch (state) {
    case NUDGEL_BREAKER_CLOSED:
        return "closed";
    case NUDGEL_BREAKER_OPEN:
        return "open";
    case NUDGEL_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "closed";
}
