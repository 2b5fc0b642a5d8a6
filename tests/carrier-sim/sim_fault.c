/*
 * sim_fault.c — see sim_fault.h.
 */
#include "sim_fault.h"

#include <stdio.h>

const char *sim_fault_kind_name(sim_fault_kind_t kind)
{
    switch (kind) {
    case SIM_FAULT_NONE:
        return "none";
    case SIM_FAULT_5XX:
        return "5xx";
    case SIM_FAULT_429:
        return "429";
    case SIM_FAULT_TIMEOUT:
        return "timeout";
    case SIM_FAULT_THROTTLED:
        return "throttled";
    }
    return "none";
}

int sim_fault_profile_check(const sim_fault_profile_t *p, char *errstr, size_t errstr_size)
{
    const int shares[] = {p->error_5xx_permille, p->error_429_permille, p->timeout_permille};
    int sum = 0;
    for (size_t i = 0; i < 3; i++) {
        if (shares[i] < 0 || shares[i] > SIM_PERMILLE) {
            snprintf(errstr, errstr_size, "a share is outside [0, %d]", SIM_PERMILLE);
            return -1;
        }
        sum += shares[i];
    }
    if (sum > SIM_PERMILLE) {
        snprintf(errstr, errstr_size,
                 "5xx + 429 + timeout shares add up to %d permille, more than %d", sum,
                 SIM_PERMILLE);
        return -1;
    }
    if (p->latency_ms < 0 || p->jitter_ms < 0 || p->timeout_hold_ms < 0 || p->retry_after_s < 0) {
        snprintf(errstr, errstr_size, "times must not be negative");
        return -1;
    }
    return 0;
}

void sim_fault_decide(const sim_fault_profile_t *p, sim_rng_t *rng, sim_fault_decision_t *out)
{
    static const int statuses[] = {500, 502, 503};
    uint32_t draw = sim_rng_below(rng, SIM_PERMILLE);
    uint32_t timeout_end = (uint32_t)p->timeout_permille;
    uint32_t e5xx_end = timeout_end + (uint32_t)p->error_5xx_permille;
    uint32_t e429_end = e5xx_end + (uint32_t)p->error_429_permille;

    out->kind = SIM_FAULT_NONE;
    out->status = 0;
    out->retry_after_s = 0;
    out->delay_ms = p->latency_ms +
                    (p->jitter_ms > 0 ? (int)sim_rng_below(rng, (uint32_t)p->jitter_ms + 1) : 0);
    if (draw < timeout_end) {
        out->kind = SIM_FAULT_TIMEOUT;
        out->delay_ms = p->timeout_hold_ms;
    } else if (draw < e5xx_end) {
        out->kind = SIM_FAULT_5XX;
        out->status = statuses[sim_rng_below(rng, 3)];
    } else if (draw < e429_end) {
        out->kind = SIM_FAULT_429;
        out->status = 429;
        out->retry_after_s = p->retry_after_s;
    }
}

void sim_bucket_init(sim_bucket_t *b, int rate, int burst, int64_t now_us)
{
    b->rate = rate;
    b->burst = burst > 0 ? burst : (rate > 0 ? rate : 1);
    b->tokens = (double)b->burst;
    b->last_us = now_us;
}

bool sim_bucket_take(sim_bucket_t *b, int64_t now_us)
{
    if (b->rate <= 0)
        return true;
    if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) * (double)b->rate / 1e6;
        if (b->tokens > (double)b->burst)
            b->tokens = (double)b->burst;
        b->last_us = now_us;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    return false;
}
