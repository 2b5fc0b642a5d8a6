/*
 * sim_dlr.h — delivery-report callbacks: a bounded queue ordered by due time
 * and one background thread sending them with libcurl multi.
 *
 * Reports are built by the request thread (sim_dlr_item_new) and owned by
 * the queue once enqueued. A full queue drops the report and counts it
 * (dlr.dropped); a callback answered with 2xx counts as dlr.sent; anything
 * else (status, refused, timed out) is sent again after a back-off
 * (dlr.retried, sim_dlr_set_retry()) and counts as dlr.failed once it has
 * no retry left.
 */
#ifndef NUDGEL_SIM_DLR_H
#define NUDGEL_SIM_DLR_H

#include <stddef.h>
#include <stdint.h>

#include "sim_common.h"
#include "sim_ledger.h"

typedef struct sim_dlr sim_dlr_t;
typedef struct sim_dlr_item sim_dlr_item_t;

/**
 * @brief A report to send at monotonic @p due_us: a GET of @p url when
 * @p body is NULL, else a POST of @p body with @p content_type. Strings are
 * copied. @returns the item (owned by the caller until enqueued), or NULL.
 */
sim_dlr_item_t *sim_dlr_item_new(sim_dialect_t d, int64_t due_us, const char *url,
                                 const char *content_type, const char *body);
void sim_dlr_item_free(sim_dlr_item_t *item);

/**
 * @brief Starts the sender thread. Counters go to @p ledger (borrowed).
 * @returns the sender, or NULL with the reason in @p errstr.
 */
sim_dlr_t *sim_dlr_start(sim_ledger_t *ledger, size_t queue_max, int concurrency, int timeout_ms,
                         char *errstr, size_t errstr_size);

/**
 * @brief Sets the retry policy of callbacks that fail (any thread; applies
 * to the next failure): at most @p retries more attempts, the first after
 * @p backoff_ms, doubling up to @p backoff_max_ms.
 */
void sim_dlr_set_retry(sim_dlr_t *dlr, int retries, int backoff_ms, int backoff_max_ms);

/** @brief The back-off before retry number @p attempt (1-based), in milliseconds. Pure. */
int64_t sim_dlr_backoff_ms(int attempt, int backoff_ms, int backoff_max_ms);

/** @brief Queues @p item (always consumed). @returns 0, or -1 when dropped (counted). */
int sim_dlr_enqueue(sim_dlr_t *dlr, sim_dlr_item_t *item);

/**
 * @brief Reports queued or in flight. A report leaves this count only after
 * its outcome (dlr.sent, dlr.failed) is counted in the ledger, so a 0 read
 * before the ledger's totals means those totals hold every report queued
 * before the read.
 */
size_t sim_dlr_pending(sim_dlr_t *dlr);

/** @brief Stops the thread; reports still queued are discarded. NULL is fine. */
void sim_dlr_stop(sim_dlr_t *dlr);

#endif
