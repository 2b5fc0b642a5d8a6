/*
 * dispatch.h — the dispatcher's private header: what its stages share.
 *
 * A status event's path through nudgel-dispatch, one stage per file:
 *
 *   intake.c     polled from nudgel.delivery-status.v1 (on the consumer's
 *                on_ready); size, JSON, fields and envelope checked; not
 *                ours (ai.nudgel.webhook.*, foreign types) → done at once;
 *                malformed → the webhooks DLQ; else the event is held and
 *                handed to
 *   endpoints.c  the tenant's enabled endpoints, cached per tenant (LRU,
 *                dispatch.endpoint_cache_max) and read on the "lookups"
 *                Postgres connection without blocking: an event whose
 *                tenant's list is missing or stale waits, in order, behind
 *                its tenant's lookup while other tenants go on; then
 *   fanout.c     one webhook job per matching endpoint, produced with
 *                libnudgel (deterministic ids); each job holds the event
 *                until its acknowledgement, and the event's offset is stored
 *                (lifecycle: done) once every job is acknowledged.
 *
 * main.c holds the configuration, the role table and the wiring.
 *
 * An event is a job of the shared lifecycle (nudgel/lifecycle.h): the DLQ
 * goes through nudgel_job_publish_dlq(); the wait for endpoints and each
 * produced job are nudgel_job_hold()s. Everything runs on the loop thread.
 */
#ifndef NUDGEL_DISPATCH_H
#define NUDGEL_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nudgel/consumer.h"
#include "nudgel/job.h"
#include "nudgel/lifecycle.h"
#include "nudgel/log.h"
#include "nudgel/loop.h"
#include "nudgel/metrics.h"
#include "nudgel/pgconn.h"
#include "nudgel/producer.h"
#include "nudgel/publisher.h"
#include "nudgel/readiness.h"
#include "nudgel/uuid.h"
#include "nudgel/worker.h"

#define DISPATCH_MAX_EVENT_BYTES (256 * 1024)
#define DISPATCH_EVENT_ID_MAX    256  /* bytes of a status event's id */
#define DISPATCH_EVENT_TYPE_MAX  128  /* bytes of an event type (after "ai.nudgel.") */
#define DISPATCH_MAX_ENDPOINTS   1000 /* endpoints of one tenant read at most */

typedef struct dispatch_tenants dispatch_tenants_t; /* endpoints.c */

/* One subscribed endpoint of a tenant. */
typedef struct dispatch_endpoint {
    char id[NUDGEL_UUID_STR_LEN + 1];
    char **patterns; /* event_types; none = every type */
    size_t pattern_count;
} dispatch_endpoint_t;

/*
 * A tenant's enabled endpoints as read at one time. Immutable once built and
 * shared: the cache holds one reference, each event fanning out another, so
 * a refresh or an eviction never pulls a list from under an event.
 */
typedef struct dispatch_endpoints {
    int refs;
    size_t count;
    dispatch_endpoint_t *items;
} dispatch_endpoints_t;

typedef struct dispatcher dispatcher_t;

/* One status event from its poll until it ends (lifecycle: done, defer, fatal, abandon). */
typedef struct dispatch_event {
    nudgel_job_life_t life; /* first: the lifecycle's finished callback hands it back */
    dispatcher_t *d;
    /* What fan-out needs; doc (the parsed event, owning data) is dropped when it ends. */
    json_t *doc;
    json_t *data;          /* borrowed from doc */
    const char *time_text; /* borrowed from doc */
    char id[DISPATCH_EVENT_ID_MAX + 1];
    char tenant[NUDGEL_TENANT_ID_MAX + 1];
    char event_type[DISPATCH_EVENT_TYPE_MAX + 1];
    char traceparent[64];
    char trace_id[33];
    /* Fan-out progress: the list it works through (a reference) and where it is. */
    dispatch_endpoints_t *endpoints;
    size_t next_endpoint;
    size_t made;
    bool dead_lettered; /* a job of it was refused: the event went to the DLQ */
    /* In at most one queue at a time: its tenant's waiters, or the fan-out backlog. */
    struct dispatch_event *queue_next;
} dispatch_event_t;

struct dispatcher {
    nudgel_worker_t *w;
    nudgel_loop_t *loop;
    nudgel_consumer_t *consumer;
    nudgel_producer_t *producer; /* webhook jobs (libnudgel) */
    int producer_fd;             /* its event fd on the loop, -1 before */
    nudgel_publisher_t *dlq;     /* malformed status events, through the lifecycle */
    nudgel_lifecycle_t *lc;
    nudgel_pgconn_t *lookups;
    const char *topic_status, *topic_webhooks, *topic_dlq; /* the worker's */

    /* Settings (SIGHUP may change them). */
    int64_t refresh_us;
    size_t max_in_flight;
    size_t cache_max;

    /* intake.c */
    bool full;              /* paused for max_in_flight (NUDGEL_PAUSE_IN_FLIGHT) */
    bool pump_wanted;       /* room came back: poll again from the turn hook */
    double gauge_in_flight; /* what nudgel_dispatch_in_flight shows */

    /* endpoints.c */
    dispatch_tenants_t *tenants;

    /* fanout.c: events whose fan-out waits for room in the producer's queue, in order. */
    dispatch_event_t *backlog_head, *backlog_tail;

    /* Readiness and metrics (registered in main.c, borrowed from the worker). */
    nudgel_ready_cond_t *ready_kafka, *ready_pg;
    nudgel_metric_t *m_events, *m_jobs, *m_in_flight, *m_cache_tenants, *m_cache_evictions,
        *m_lookups;
};

/*
 * Why an event ends failed (nudgel_jobs_failed_total{reason}, its dead
 * letter's label): malformed (fields, JSON, envelope), too_large (over
 * DISPATCH_MAX_EVENT_BYTES), or one of its jobs refused by libnudgel:
 * job_too_large, job_invalid. NULL-ended.
 */
extern const char *const dispatch_failure_reasons[];

/* ---- intake.c ---- */

/** The consumer's on_ready: polls while there is room. */
void intake_on_ready(void *opaque);
/** Turn hook: polls again when room came back; the in-flight gauge; "kafka" readiness. */
void intake_turn(void *opaque);
/** The lifecycle's finished callback: frees the event, maybe lets intake poll again. */
void intake_event_finished(void *opaque, nudgel_job_life_t *job);
/** SIGTERM: intake stops (the events in flight go on). */
void intake_drain(dispatcher_t *d);
/** Teardown: lets go of every event still alive (nothing stored; they come again). */
void intake_abandon_all(dispatcher_t *d);
/** The log context of @p ev's lines: tenant, event id, trace id. */
nudgel_log_ctx_t intake_log_ctx(const dispatch_event_t *ev);

/* ---- endpoints.c ---- */

/** The cache and the "lookups" connection's callbacks. @returns NUDGEL_OK or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t endpoints_new(dispatcher_t *d);
/** Frees the cache (waiting events are not touched: intake abandons them). */
void endpoints_free(dispatcher_t *d);
/** The "lookups" connection came up or went down (nudgel_pgconn_state_fn). */
void endpoints_on_pg_state(void *opaque, nudgel_pgconn_t *c, bool up);
/**
 * Hands @p ev (held by intake) to fan-out with its tenant's endpoints: at once
 * when the cached list is fresh and nobody of its tenant waits, else after its
 * tenant's lookup, in order.
 */
void endpoints_submit(dispatcher_t *d, dispatch_event_t *ev);
/** dispatch.endpoint_cache_max changed: trims the cache. */
void endpoints_trim(dispatcher_t *d);
/** Tenants cached now. */
size_t endpoints_cached(const dispatcher_t *d);
/** Whether @p e subscribes to @p event_type: exact, "prefix.*", "*", or no patterns = all. */
bool dispatch_endpoint_wants(const dispatch_endpoint_t *e, const char *event_type);
/**
 * A list from query rows: @p ids and @p types_json (a JSON array of strings,
 * or NULL) for @p n endpoints. @returns it with one reference, or NULL when out
 * of memory.
 */
dispatch_endpoints_t *dispatch_endpoints_build(const char *const *ids,
                                               const char *const *types_json, size_t n);
/** Drops one reference of @p eps (NULL: no-op). */
void dispatch_endpoints_unref(dispatch_endpoints_t *eps);

/* ---- fanout.c ---- */

/** The producer's event fd is readable: serves delivery reports, then the backlog. */
void fanout_on_producer(void *opaque, int fd, unsigned events);
/** libnudgel's delivery callback (nudgel_delivery_cb_t). */
void fanout_on_ack(const nudgel_delivery_report_t *report, void *cb_opaque);
/** Fans @p ev out over @p eps (takes a reference): the jobs, then intake's hold goes. */
void fanout_submit(dispatcher_t *d, dispatch_event_t *ev, dispatch_endpoints_t *eps);
/**
 * The webhook job of status event @p event_id for endpoint @p endpoint_id,
 * as compact JSON (malloc'd; NULL when out of memory). Deterministic: the
 * same event and endpoint give the same bytes, ids included.
 */
char *fanout_job_json(const char *tenant, const char *event_id, const char *endpoint_id,
                      const char *event_type, const char *time_text, json_t *data);

#endif
