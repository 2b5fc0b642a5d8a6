/*
 * nudgel/webhooks/retry_schedule.h — the webhook retry ladder.
 *
 * A schedule is the list of delays between attempts: with the default
 * "5s,5m,30m,2h,5h,10h,10h", attempt 1 happens at once, attempt 2 about 5 s
 * after attempt 1 failed, ..., attempt 8 about 10 h after attempt 7; when
 * attempt 8 fails the delivery is exhausted. Each delay is spread by a
 * jitter (default ±20%) so endpoints recovering from an outage are not hit
 * by every retry at the same instant. The randomness is an argument, so the
 * bounds are testable.
 */
#ifndef NUDGEL_WEBHOOKS_RETRY_SCHEDULE_H
#define NUDGEL_WEBHOOKS_RETRY_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/error.h"

#define NUDGEL_RETRY_SCHEDULE_DEFAULT "5s,5m,30m,2h,5h,10h,10h"
#define NUDGEL_RETRY_JITTER_DEFAULT   0.2
#define NUDGEL_RETRY_SCHEDULE_MAX     32 /* delays in a schedule */

/** A parsed schedule. A plain value: copy freely. */
typedef struct nudgel_retry_schedule {
    int64_t delays_ms[NUDGEL_RETRY_SCHEDULE_MAX];
    size_t count;  /* number of retries; attempts = count + 1 */
    double jitter; /* fraction in [0, 1): 0.2 means ±20% */
} nudgel_retry_schedule_t;

/**
 * @brief Parses "5s,5m,30m,2h" style text: comma-separated positive integers
 * with a unit ms, s, m, h or d (spaces around entries ignored), at most
 * NUDGEL_RETRY_SCHEDULE_MAX entries, each at most 7 days. @p jitter must be
 * in [0, 1). An empty schedule ("") means no retry at all.
 * @returns NUDGEL_OK, or NUDGEL_ERR_CONFIG with the entry's position and
 * text and the problem in @p errstr.
 */
nudgel_err_t nudgel_retry_schedule_parse(const char *text, double jitter,
                                         nudgel_retry_schedule_t *out, char *errstr,
                                         size_t errstr_size);

/**
 * @brief The delay before the next attempt after attempt @p failed_attempt
 * (1-based) failed: delays_ms[failed_attempt - 1] scaled by
 * 1 + jitter * (2u - 1), where u = @p random / UINT64_MAX, so random 0 gives
 * exactly -jitter and UINT64_MAX exactly +jitter.
 * @returns the delay in ms, or -1 when the schedule is exhausted (see below)
 * or @p failed_attempt is 0.
 */
int64_t nudgel_retry_schedule_delay_ms(const nudgel_retry_schedule_t *s, unsigned failed_attempt,
                                       uint64_t random);

/** @brief Whether attempt @p attempt (1-based) is the last one: no retry follows its failure. */
bool nudgel_retry_schedule_is_last(const nudgel_retry_schedule_t *s, unsigned attempt);

/** @brief The number of attempts in all (retries + 1). */
unsigned nudgel_retry_schedule_attempts(const nudgel_retry_schedule_t *s);

#endif
