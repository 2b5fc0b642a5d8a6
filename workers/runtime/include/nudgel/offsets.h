/*
 * nudgel/offsets.h — the contiguous-offset tracker of one partition
 * (DESIGN §5): many jobs of a partition run at once, and the offset stored
 * for it only advances past jobs whose outcome is durable.
 *
 * Jobs are started in fetch order (offsets strictly increasing, gaps
 * allowed: compacted topics and transaction markers skip offsets) and
 * completed in any order. The committable offset is the one after the last
 * job of the longest completed prefix of started jobs, which is what
 * rd_kafka_offsets_store() wants. Offsets never started (a gap) do not hold
 * it back.
 *
 * Memory is one ring of @p capacity slots allocated up front: it holds the
 * window from the oldest job not yet completed to the newest started, so a
 * slow job at the head keeps up to @p capacity - 1 completed jobs behind it
 * in memory. When the ring is full, started() refuses with
 * NUDGEL_ERR_WINDOW_FULL and the caller pauses the partition until the head
 * completes.
 *
 * Ownership: nudgel_offsets_new() returns a tracker the caller owns and
 * frees with nudgel_offsets_free(). Threads: no locking; a tracker belongs
 * to the one event loop that consumes its partition.
 */
#ifndef NUDGEL_OFFSETS_H
#define NUDGEL_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#include "nudgel/error.h"

#define NUDGEL_OFFSETS_CAPACITY_MAX (1u << 20) /* hard cap of a ring */

typedef struct nudgel_offsets nudgel_offsets_t;

/**
 * @brief Creates a tracker whose window holds at most @p capacity jobs
 * ([1, NUDGEL_OFFSETS_CAPACITY_MAX]).
 * @returns NUDGEL_OK and @p *out, NUDGEL_ERR_INVALID_ARG, or
 * NUDGEL_ERR_NO_MEMORY (with a reason in @p errstr).
 */
nudgel_err_t nudgel_offsets_new(size_t capacity, nudgel_offsets_t **out, char *errstr,
                                size_t errstr_size);

/** @brief Releases @p t (NULL is fine). */
void nudgel_offsets_free(nudgel_offsets_t *t);

/**
 * @brief Records that the job at @p offset has started.
 * @returns NUDGEL_OK; NUDGEL_ERR_WINDOW_FULL (retriable) when the window is
 * full — pause the partition, nothing was recorded; NUDGEL_ERR_INVALID_ARG
 * when @p offset is negative or not above the last started offset (a bug in
 * the caller, or a seek that needs nudgel_offsets_reset() first).
 */
nudgel_err_t nudgel_offsets_started(nudgel_offsets_t *t, int64_t offset);

/**
 * @brief Takes back the newest started job, not yet completed (a job polled
 * too early, which the consumer seeks back to and fetches again later).
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_ARG when @p offset is not the
 * newest started job or is already completed.
 */
nudgel_err_t nudgel_offsets_unstart(nudgel_offsets_t *t, int64_t offset);

/**
 * @brief Records that the job at @p offset is done (its outcome durable).
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_ARG when @p offset is not a
 * started job still in the window, or was already completed.
 */
nudgel_err_t nudgel_offsets_completed(nudgel_offsets_t *t, int64_t offset);

/**
 * @brief The offset to store next: the highest contiguous completed offset
 * + 1, returned once each time it advances.
 * @returns that offset, or -1 when it has not moved since the last call (or
 * nothing has completed since the last reset).
 */
int64_t nudgel_offsets_committable(nudgel_offsets_t *t);

/**
 * @brief As nudgel_offsets_committable() without marking it returned.
 * @returns the highest contiguous completed offset + 1, or -1 when nothing
 * has completed since the last reset.
 */
int64_t nudgel_offsets_position(const nudgel_offsets_t *t);

/** @brief Jobs started and not yet completed. */
size_t nudgel_offsets_in_flight(const nudgel_offsets_t *t);

/** @brief Slots of the window in use (in flight + completed behind the head). */
size_t nudgel_offsets_window(const nudgel_offsets_t *t);

/**
 * @brief Forgets everything (the partition was revoked or is being
 * re-seeked); the next started() may use any offset.
 */
void nudgel_offsets_reset(nudgel_offsets_t *t);

#endif
