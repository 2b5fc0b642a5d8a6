/*
 * nudgel/lifecycle.h — one job's life from poll to done, the same in every
 * role (DESIGN §5: an offset is stored only once the outcome is durable).
 *
 * A role embeds a nudgel_job_life_t in its own job struct. Every publish
 * made for the job (status event, retry hop, dead letter) holds it; the
 * publisher's acknowledgement releases the hold. When nothing is pending
 * any more the job ends in one of three ways:
 *   - done: every publish was acknowledged → nudgel_consumer_done() (its
 *     offset may move);
 *   - defer: something could not be made durable, but the job is the one
 *     just polled, so it is handed back to the consumer and fetched again;
 *   - fatal: something could not be made durable for a job polled earlier:
 *     it cannot be handed back, so the process stops without storing its
 *     offset and the job is re-delivered (the claims make that safe).
 * Then the role's `finished` callback frees the role's job.
 *
 * Work the lifecycle does not publish itself holds the job the same way:
 * nudgel_job_hold() while the job waits across loop turns (a lookup) or for
 * a publish made with another producer (libnudgel's jobs, acknowledged in
 * that producer's own callback), nudgel_job_unhold() when it is over.
 *
 * Malformed input is everyone's problem, handled once here: the envelope
 * check (the contract headers against the job's own fields) and the ids a
 * failed event needs when a job has no usable id of its own (derived from
 * where the bytes were: topic/partition/offset, stable over redeliveries).
 *
 * Threads: the loop's thread only.
 */
#ifndef NUDGEL_LIFECYCLE_H
#define NUDGEL_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nudgel/consumer.h"
#include "nudgel/error.h"
#include "nudgel/fleet_metrics.h"
#include "nudgel/publisher.h"

typedef struct nudgel_lifecycle nudgel_lifecycle_t;

/** Embedded in a role's job; all fields are the lifecycle's. */
typedef struct nudgel_job_life {
    nudgel_lifecycle_t *lc;
    nudgel_consumer_t *from;
    nudgel_job_ref_t *ref;
    int pending;        /* publishes not yet acknowledged */
    bool failed;        /* something of it could not be made durable */
    bool ended;         /* done, deferred or abandoned: the ref is gone */
    bool succeeded;     /* nudgel_job_succeeded(): counted if it ends done */
    char *dlq_reason;   /* a dead letter in flight: its reason, to send it smaller if refused */
    bool dlq_shrunk;    /* ... which was done already */
    const char *reason; /* nudgel_job_failed_because()'s label (static): its dead letter's too */
    struct nudgel_job_life *live_prev, *live_next; /* the lifecycle's list of live jobs */
} nudgel_job_life_t;

typedef struct nudgel_lifecycle_opts {
    nudgel_publisher_t *publisher; /* borrowed; its callback must be nudgel_lifecycle_published */
    const char *status_topic;      /* copied */
    const char *dlq_topic;         /* copied */
    /** The job has ended (done, deferred or abandoned): free the role's job. */
    void (*finished)(void *opaque, nudgel_job_life_t *job);
    /** A job could not be finished durably: stop the process (exit 1) without storing it. */
    void (*fatal)(void *opaque, const char *why);
    void *opaque;
    /** Counts jobs consumed, in flight, retried and dead-lettered, and the
     * publisher's queue (nudgel_worker_fleet_metrics()); NULL: not counted. */
    nudgel_fleet_metrics_t *metrics;
} nudgel_lifecycle_opts_t;

/** @brief A lifecycle for one role. @returns it, or NULL when out of memory. */
nudgel_lifecycle_t *nudgel_lifecycle_new(const nudgel_lifecycle_opts_t *opts);

/** @brief Frees it (jobs must have ended). NULL is a no-op. */
void nudgel_lifecycle_free(nudgel_lifecycle_t *lc);

/**
 * @brief How many jobs are live: begun (nudgel_job_begin()) and not yet
 * ended (done, deferred or abandoned). A role's in-flight count and cap read
 * it instead of keeping a list of their own.
 */
size_t nudgel_lifecycle_live(const nudgel_lifecycle_t *lc);

/**
 * @brief Teardown: abandons every live job (nudgel_job_abandon(): nothing
 * stored, each comes again), each through the finished callback.
 * @returns how many there were.
 */
size_t nudgel_lifecycle_abandon_all(nudgel_lifecycle_t *lc);

/**
 * @brief The publisher's callback (pass it to nudgel_publisher_new() with
 * the lifecycle as its cb_opaque): releases the hold of the job whose
 * publish was acknowledged or failed.
 */
void nudgel_lifecycle_published(void *opaque, nudgel_err_t err, const char *errstr,
                                void *cb_opaque);

/**
 * @brief Starts @p job's life for @p ref just polled from @p from. Until
 * nudgel_lifecycle_polled_end(), it is the "current" job: the only one that
 * can still be handed back to the consumer.
 */
void nudgel_job_begin(nudgel_lifecycle_t *lc, nudgel_job_life_t *job, nudgel_consumer_t *from,
                      nudgel_job_ref_t *ref);

/** @brief The job just polled has been handled as far as it goes now. */
void nudgel_lifecycle_polled_end(nudgel_lifecycle_t *lc);

/** @brief The Kafka message of a job (borrowed, valid until it ends). */
const rd_kafka_message_t *nudgel_job_kafka(const nudgel_job_life_t *job);

/** @brief Publishes a status event for @p job (steals @p event). A failure marks the job failed. */
void nudgel_job_publish_event(nudgel_job_life_t *job, const char *tenant_id, json_t *event,
                              const char *traceparent);

/**
 * @brief Publishes @p job's original bytes to the dead-letter topic with
 * @p reason (nudgel_publish_dlq(): a prefix when the original is too large).
 * When the broker still refuses it as too large, it is published once more
 * as a prefix of NUDGEL_DLQ_FALLBACK_BYTES, so that no input can keep a
 * job from ending.
 */
void nudgel_job_publish_dlq(nudgel_job_life_t *job, const char *reason);

/** @brief Publishes @p job again to the retry tier @p topic (nudgel_publish_retry()). */
void nudgel_job_publish_retry(nudgel_job_life_t *job, const char *topic, int attempt,
                              int64_t not_before_ms, int64_t first_seen_ms, const char *last_error);

/**
 * @brief Publishes @p job again, unchanged, to the retry tier @p topic: a
 * hop-on (nudgel/retry_tiers.h). The job then ends once it is acknowledged.
 */
void nudgel_job_publish_hop_on(nudgel_job_life_t *job, const char *topic);

/**
 * @brief Holds @p job open for work of the role's own: the job does not end
 * (done, defer or fatal) before the matching nudgel_job_unhold(), even when
 * every publish is acknowledged meanwhile. Holds count like publishes.
 */
void nudgel_job_hold(nudgel_job_life_t *job);

/**
 * @brief Ends one nudgel_job_hold() of @p job: @p err other than NUDGEL_OK
 * means what it stood for could not be made durable (the job is marked
 * failed, as by nudgel_job_fail()). Then as nudgel_job_release(): the job
 * ends when nothing else is pending, and the role's job may be freed before
 * this returns.
 */
void nudgel_job_unhold(nudgel_job_life_t *job, nudgel_err_t err);

/**
 * @brief The job reached its goal (sent to a carrier, delivered, fanned
 * out, applied): nudgel_jobs_succeeded_total, counted when the job ends
 * done, every publish and hold of it acknowledged. A job that ends handed
 * back (a publish failed: it comes again) is not counted, so its next
 * attempt is not counted twice. By the role, while the job is live.
 */
void nudgel_job_succeeded(nudgel_job_life_t *job);
/**
 * @brief The job ended failed for @p reason (a short label from the role's
 * declared list, e.g. "malformed", "invalid_number"; static: it is kept, not
 * copied): nudgel_jobs_failed_total, and the label of the job's dead letter
 * if one is published. Once per job.
 */
void nudgel_job_failed_because(nudgel_job_life_t *job, const char *reason);
/** @brief Something of @p job could not be made durable: it must come again. */
void nudgel_job_fail(nudgel_job_life_t *job);

/**
 * @brief The job needs nothing more of the role: it ends once its
 * publishes are acknowledged (done, defer or fatal, see above). Safe to call
 * more than once; after the last call the role's job may already be freed.
 */
void nudgel_job_release(nudgel_job_life_t *job);

/**
 * @brief Lets go of a job that will not finish in this process (shutdown
 * after a drain timeout): nothing is stored, it is re-delivered later.
 */
void nudgel_job_abandon(nudgel_job_life_t *job);

/** @brief Whether @p job is the one just polled (it can still be handed back). */
bool nudgel_job_is_current(const nudgel_job_life_t *job);

/**
 * @brief The envelope check every role applies before parsing (with
 * @p tenant_id NULL) and again once the job's tenant is known: a job whose
 * nudgel-schema header names another schema than @p schema, or (with
 * @p tenant_id known) that has no nudgel-schema header or whose
 * nudgel-tenant header or Kafka key names another tenant, is not this
 * role's to handle (a missing nudgel-tenant header or key is let through). @returns true when
 * acceptable; else false with the reason in @p reason (it names the header
 * or the key).
 */
bool nudgel_job_envelope_ok(const rd_kafka_message_t *km, const char *schema, const char *tenant_id,
                            char *reason, size_t reason_size);

/**
 * @brief Ids for a failed event about a job that may have none usable:
 * @p subject is the job's "id" when it is a valid UUID, else an id derived
 * from topic/partition/offset (stable over redeliveries); @p tenant is its
 * "tenant_id" when valid, else the nudgel-tenant header's or the Kafka
 * key's when valid, else "unknown". @p doc is the parsed job or NULL.
 */
void nudgel_job_derived_ids(const rd_kafka_message_t *km, const json_t *doc, char subject[37],
                            char tenant[65]);

/**
 * @brief The trace-id part of a W3C @p traceparent ("00-<32 hex>-<16 hex>-<2
 * hex>") into @p out, for the trace_id of log lines (nudgel_log_ctx_t);
 * "" when @p traceparent is NULL or not of that shape.
 */
void nudgel_job_trace_id(const char *traceparent, char out[33]);

/** @brief Reads an integer header of @p km into @p *out (unchanged when absent or not a number). */
void nudgel_job_header_int(const rd_kafka_message_t *km, const char *name, int64_t *out);

#endif
