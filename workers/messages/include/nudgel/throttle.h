/*
 * nudgel/throttle.h — send-rate limits of the messages worker (DESIGN §5):
 * a token bucket, the fleet share of a gateway's TPS, and per-tenant
 * in-flight and rate caps.
 *
 * Time is always the caller's: int64 microseconds of a monotonic clock
 * (nudgel_mono_us() in production, a counter in tests), so behaviour is
 * deterministic. A clock that goes backwards earns nothing and is otherwise
 * ignored.
 *
 * Ownership: *_new() returns an object the caller owns and releases with the
 * matching *_free() (which accepts NULL). Tenant ids are copied.
 *
 * Threads: none of these objects lock. Each belongs to one event loop
 * (one worker thread); sharing one between threads needs the caller's lock.
 */
#ifndef NUDGEL_THROTTLE_H
#define NUDGEL_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/error.h"

#define NUDGEL_THROTTLE_RATE_MAX    1000000.0 /* tokens per second */
#define NUDGEL_THROTTLE_BURST_MAX   1000000u
#define NUDGEL_THROTTLE_TENANTS_MAX (1u << 20) /* hard cap of a tenant table */
#define NUDGEL_THROTTLE_TENANT_MAX  64         /* bytes of a tenant id, as the job schema */
/* Least rate of a worker that holds at least one partition of a gateway whose
   TPS is not 0: one message per 100 s. It only bites when a gateway's TPS is
   smaller than total_partitions / 100, and can then let the fleet exceed that
   TPS by at most total_partitions × this floor. */
#define NUDGEL_THROTTLE_MIN_SHARE_TPS 0.01

/* ---- token bucket ----------------------------------------------------- */

typedef struct nudgel_throttle_bucket nudgel_throttle_bucket_t;

/**
 * @brief Creates a bucket earning @p rate tokens per second (0 allowed: it
 * then never refills), holding at most @p burst tokens, full at @p now_us.
 * @returns NUDGEL_OK and @p *out (caller frees with
 * nudgel_throttle_bucket_free), or NUDGEL_ERR_INVALID_ARG for a rate outside
 * [0, NUDGEL_THROTTLE_RATE_MAX] or a burst outside [1,
 * NUDGEL_THROTTLE_BURST_MAX], or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_throttle_bucket_new(double rate, uint32_t burst, int64_t now_us,
                                        nudgel_throttle_bucket_t **out, char *errstr,
                                        size_t errstr_size);

/** @brief Releases @p b (NULL is fine). */
void nudgel_throttle_bucket_free(nudgel_throttle_bucket_t *b);

/**
 * @brief Takes @p n tokens if all are available at @p now_us.
 * @returns true if taken, false (and nothing taken) otherwise. More than the
 * burst can never be taken at once.
 */
bool nudgel_throttle_bucket_try_take(nudgel_throttle_bucket_t *b, uint32_t n, int64_t now_us);

/**
 * @brief When @p n tokens will be available, for a timer.
 * @returns @p now_us if they are already there, a later monotonic time in
 * microseconds, or INT64_MAX if never (rate 0, or @p n above the burst).
 */
int64_t nudgel_throttle_bucket_next_available(const nudgel_throttle_bucket_t *b, uint32_t n,
                                              int64_t now_us);

/**
 * @brief Changes rate and burst at @p now_us. Tokens earned until now at the
 * old rate are kept (clipped to the new burst); later ones accrue at the new
 * rate, so a rebalance neither forgives nor forfeits anything.
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_ARG as nudgel_throttle_bucket_new().
 */
nudgel_err_t nudgel_throttle_bucket_set_rate(nudgel_throttle_bucket_t *b, double rate,
                                             uint32_t burst, int64_t now_us, char *errstr,
                                             size_t errstr_size);

/** @brief Tokens available at @p now_us (fractional), for metrics and tests. */
double nudgel_throttle_bucket_tokens(const nudgel_throttle_bucket_t *b, int64_t now_us);

/* ---- fleet share -------------------------------------------------------- */

/**
 * @brief This worker's share of a gateway's TPS: gateway_tps × assigned /
 * total partitions, recomputed on every rebalance so the fleet stays under
 * the carrier's cap without a coordinator.
 * @returns NUDGEL_OK and @p *rate: 0 when @p assigned is 0 or @p gateway_tps
 * is 0, otherwise at least NUDGEL_THROTTLE_MIN_SHARE_TPS (capped at
 * @p gateway_tps); NUDGEL_ERR_INVALID_ARG when @p total < 1, @p assigned is
 * negative or above @p total, or @p gateway_tps is negative or not finite.
 */
nudgel_err_t nudgel_throttle_fleet_share(double gateway_tps, int32_t assigned, int32_t total,
                                         double *rate);

/* ---- per-tenant limits -------------------------------------------------- */

typedef struct nudgel_throttle_tenants nudgel_throttle_tenants_t;

/** Limits of one tenant (a row of nudgel.tenant_limits, or the defaults). */
typedef struct nudgel_tenant_limits {
    uint32_t max_in_flight; /* >= 1 */
    double rate;            /* sends per second, [0, NUDGEL_THROTTLE_RATE_MAX] */
    uint32_t burst;         /* [1, NUDGEL_THROTTLE_BURST_MAX] */
} nudgel_tenant_limits_t;

typedef enum nudgel_tenant_verdict {
    NUDGEL_TENANT_OK = 0,        /* go; call release() when the job is done */
    NUDGEL_TENANT_IN_FLIGHT_CAP, /* the tenant has max_in_flight jobs out: wait for a release */
    NUDGEL_TENANT_RATE_LIMITED,  /* no token: retry at *retry_at_us */
    NUDGEL_TENANT_TABLE_FULL,    /* every tracked tenant has jobs in flight: wait for a release */
} nudgel_tenant_verdict_t;

/**
 * @brief Creates a table tracking at most @p max_tenants tenants
 * ([1, NUDGEL_THROTTLE_TENANTS_MAX]), with @p defaults for tenants acquired
 * without their own limits.
 *
 * When a new tenant arrives and the table is full, the tenant idle for
 * longest (no job in flight) is forgotten; when it comes back its bucket
 * starts full again, so keep the table larger than the tenants active within
 * a bucket's refill time. Tenants with jobs in flight are never forgotten:
 * size the table at least as the worker's in-flight cap and TABLE_FULL
 * cannot happen.
 * @returns NUDGEL_OK and @p *out (free with nudgel_throttle_tenants_free),
 * NUDGEL_ERR_INVALID_ARG, or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_throttle_tenants_new(size_t max_tenants, const nudgel_tenant_limits_t *defaults,
                                         nudgel_throttle_tenants_t **out, char *errstr,
                                         size_t errstr_size);

/** @brief Releases @p t (NULL is fine). */
void nudgel_throttle_tenants_free(nudgel_throttle_tenants_t *t);

/**
 * @brief Asks to start one job of @p tenant at @p now_us.
 *
 * @p limits are the tenant's own (NULL: the table's defaults); passing them
 * on each call keeps them right after an eviction, and a change takes effect
 * at once (rate changes as nudgel_throttle_bucket_set_rate()). The in-flight
 * cap is checked before the rate, so a refused job costs no token.
 * @returns NUDGEL_OK with @p *verdict, and @p *retry_at_us (may be NULL) set
 * for NUDGEL_TENANT_RATE_LIMITED (INT64_MAX when the rate is 0) and -1
 * otherwise; NUDGEL_ERR_INVALID_ARG for an empty or over-long tenant id or
 * bad limits.
 */
nudgel_err_t nudgel_throttle_tenants_acquire(nudgel_throttle_tenants_t *t, const char *tenant,
                                             const nudgel_tenant_limits_t *limits, int64_t now_us,
                                             nudgel_tenant_verdict_t *verdict,
                                             int64_t *retry_at_us);

/**
 * @brief Ends one job of @p tenant that acquire() let go.
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_ARG when the tenant has no job
 * in flight (a double release is a bug in the caller).
 */
nudgel_err_t nudgel_throttle_tenants_release(nudgel_throttle_tenants_t *t, const char *tenant);

/** @brief Jobs of @p tenant in flight (0 when not tracked). */
uint32_t nudgel_throttle_tenants_in_flight(const nudgel_throttle_tenants_t *t, const char *tenant);

/** @brief Tenants tracked now. */
size_t nudgel_throttle_tenants_count(const nudgel_throttle_tenants_t *t);

/** @brief "ok", "in_flight_cap", "rate_limited" or "table_full". */
const char *nudgel_tenant_verdict_name(nudgel_tenant_verdict_t verdict);

#endif
