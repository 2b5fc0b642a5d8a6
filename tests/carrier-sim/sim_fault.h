/*
 * sim_fault.h — what goes wrong with a request: latency, 5xx, 429,
 * timeouts, and the TPS cap (a token bucket).
 *
 * Decisions take the RNG and the clock as arguments so tests replay them
 * exactly from a seed.
 */
#ifndef NUDGEL_SIM_FAULT_H
#define NUDGEL_SIM_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "sim_common.h"

#define SIM_PERMILLE 1000 /* shares are in thousandths of requests */

typedef struct sim_fault_profile {
    int latency_ms;         /* fixed delay before every response */
    int jitter_ms;          /* plus uniform [0, jitter_ms] */
    int error_5xx_permille; /* 500, 502 or 503, equally likely */
    int error_429_permille;
    int retry_after_s; /* Retry-After of a drawn 429 */
    int timeout_permille;
    int timeout_hold_ms;  /* how long a "timeout" is held before the connection closes */
    bool timeout_accepts; /* a timed-out submission still counts as sent */
} sim_fault_profile_t;

typedef enum sim_fault_kind {
    SIM_FAULT_NONE = 0,
    SIM_FAULT_5XX,
    SIM_FAULT_429,
    SIM_FAULT_TIMEOUT,
    SIM_FAULT_THROTTLED, /* over the TPS cap */
} sim_fault_kind_t;

typedef struct sim_fault_decision {
    sim_fault_kind_t kind;
    int status;        /* HTTP status for 5XX and 429; 0 otherwise */
    int delay_ms;      /* before the response (or, for a timeout, before the close) */
    int retry_after_s; /* for 429 */
} sim_fault_decision_t;

/** @brief "5xx", "429", "timeout", "throttled" or "none" (ledger field names). */
const char *sim_fault_kind_name(sim_fault_kind_t kind);

/**
 * @brief Checks a profile: shares in [0, 1000] that together do not exceed
 * 1000, non-negative times. @returns 0, or -1 with the problem in @p errstr.
 */
int sim_fault_profile_check(const sim_fault_profile_t *p, char *errstr, size_t errstr_size);

/**
 * @brief Draws the fault of one request from @p p: one uniform draw in
 * [0, 1000) picks timeout, then 5xx, then 429 by cumulative share; a second
 * draw picks the jitter. Deterministic for a given RNG state.
 */
void sim_fault_decide(const sim_fault_profile_t *p, sim_rng_t *rng, sim_fault_decision_t *out);

/* A token bucket of @p rate tokens per second holding at most @p burst. */
typedef struct sim_bucket {
    double tokens;
    int64_t last_us;
    int rate; /* 0: unlimited */
    int burst;
} sim_bucket_t;

/** @brief (Re)configures; a full bucket at @p now_us. */
void sim_bucket_init(sim_bucket_t *b, int rate, int burst, int64_t now_us);

/** @brief Takes one token at @p now_us. @returns true if allowed. Caller serialises. */
bool sim_bucket_take(sim_bucket_t *b, int64_t now_us);

#endif
