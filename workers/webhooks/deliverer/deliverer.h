/*
 * deliverer.h — nudgel-webhooks, the webhook deliverer: its types and the
 * functions its stage files share (private to workers/webhooks/deliverer/).
 *
 * One event loop (main.c); a job's path, stage by stage:
 *
 *   Kafka consumer (nudgel.webhooks.v1 + its six retry tiers)
 *     → intake.c: parse (malformed: dead letter + failed event)
 *     → claims.c: claim in webhook_deliveries, a batch per poll (final: send
 *       nothing, re-emit its event; another delivery of the same event: skip)
 *     → endpoints.c: endpoint (cached: URL, secrets opened with the keyring,
 *       limits), then the endpoint's lane: at most max_concurrency requests
 *       in flight and rate_limit_per_second; jobs over that wait in the
 *       lane's bounded queue, beyond it they go to the first retry tier — a
 *       slow endpoint never holds back the others
 *     → attempts.c: SSRF guard (vetted resolutions cached per host, pinned
 *       with CURLOPT_RESOLVE), sign the exact body bytes (Standard Webhooks;
 *       both signatures while a rotated-out secret lives) → POST on curl
 *       multi → classify
 *     → flush.c: attempt row + delivery row (batched, one transaction)
 *     → events.c: status event, retry hop or dead letter
 *     → jobs.c: the job's offset is stored once Kafka acknowledged all of
 *       them.
 *
 * pg_lane.c owns the two non-blocking Postgres connections (claims, flushes)
 * and what happens while Postgres is away (intake paused, reconnects with
 * back-off); deliver_db.c holds the SQL.
 *
 * Retries: attempt n fails → the schedule's n-th delay (±jitter), or later
 * when Retry-After says so, on the retry tier whose fixed delay fits it;
 * the tier's consumer pauses the partition until the head is due. The
 * attempt number is max(the job's nudgel-attempt header, attempts recorded)
 * + 1, so a job re-delivered after a crash never reuses an attempt number.
 *
 * Threading: everything runs on the loop's thread; nothing here locks.
 */
#ifndef NUDGEL_WEBHOOKS_DELIVERER_H
#define NUDGEL_WEBHOOKS_DELIVERER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "deliver_db.h"
#include "nudgel/config.h"
#include "nudgel/consumer.h"
#include "nudgel/http_client.h"
#include "nudgel/job.h"
#include "nudgel/metrics.h"
#include "nudgel/publisher.h"
#include "nudgel/uuid.h"
#include "nudgel/webhooks/retry_schedule.h"
#include "nudgel/webhooks/secretbox.h"
#include "nudgel/webhooks/signature.h"
#include "nudgel/webhooks/ssrf.h"

#define PROGRAM         "nudgel-webhooks"
#define TIERS           6
#define CLAIM_BATCH_MAX 512
#define HASH_BUCKETS    4096

typedef struct worker worker_t;
typedef struct endpoint endpoint_t;

typedef enum job_stage {
    STAGE_CLAIM,   /* waiting for the batch claim */
    STAGE_LANE,    /* waiting in its endpoint's lane */
    STAGE_HTTP,    /* request in flight */
    STAGE_FLUSH,   /* outcome waiting to be written */
    STAGE_PUBLISH, /* publishes waiting for acknowledgements */
} job_stage_t;

/* What to publish once a job's rows are durable. */
typedef enum job_end {
    END_NONE,      /* nothing (a duplicate) */
    END_DELIVERED, /* delivered event */
    END_FAILED,    /* failed event (permanent) */
    END_RETRY,     /* retry hop */
    END_EXHAUSTED, /* exhausted event + dead letter */
    END_REQUEUE,   /* saturated endpoint: first retry tier, no attempt counted */
    END_MALFORMED, /* dead letter + failed event */
} job_end_t;

/* One job from poll to done. */
typedef struct wjob {
    worker_t *w;
    nudgel_job_ref_t *ref;
    nudgel_webhook_job_t job;
    bool parsed;
    job_stage_t stage;
    int header_attempts;   /* nudgel-attempt: attempts made before this hop */
    int attempt;           /* number of the attempt this job makes (1-based) */
    int64_t first_seen_ms; /* nudgel-first-seen, or now */
    char traceparent[64];
    endpoint_t *ep;
    /* outcome */
    job_end_t end;
    const char *delivery_status; /* row status after the outcome */
    long status_code;
    char error_class[32];
    char error_message[640];
    bool permanent;
    int64_t next_attempt_ms;
    bool endpoint_disabled_now; /* this job's answer disabled the endpoint */
    char disabled_reason[256];
    bool record_attempt;
    int latency_ms;
    char *snippet;
    /* publishing */
    int pending;
    bool publish_failed;
    struct wjob *next_in_lane;
    struct wjob *prev_all, *next_all; /* every job alive, to free at exit */
    struct wjob *next_by_id;          /* the worker's jobs by delivery id */
    bool indexed;
} wjob_t;

/* A registered endpoint: its row (cached) and its lane. */
struct endpoint {
    char id[NUDGEL_UUID_STR_LEN + 1];
    bool loaded, found, enabled;
    char tenant_id[72];
    char *url;
    nudgel_wh_key_t keys[2]; /* current, then the rotated-out one while it lives */
    size_t key_count;
    int64_t previous_expires_ms;
    bool secret_broken; /* the sealed secret does not open */
    char secret_error[600];
    int64_t loaded_us;
    int64_t success_noted_us; /* last success written to the row (at most once a second) */
    int64_t failure_noted_us; /* last failure in a flush (dedupes a batch's failures) */
    /* lane */
    size_t max_concurrency;
    double rate; /* requests per second; 0 = no limit */
    double tokens;
    int64_t tokens_us;
    size_t in_flight;
    wjob_t *head, *tail;
    size_t queued;
    bool active; /* on the worker's list of lanes with queued jobs */
    endpoint_t *next_active;
    endpoint_t *next; /* hash chain */
};

/* A vetted host (scheme://authority), reused for ssrf_cache_ms. */
typedef struct vetted {
    char *authority;
    nudgel_err_t err;
    nudgel_ssrf_verdict_t verdict;
    int64_t vetted_us;
    struct vetted *next;
} vetted_t;

/* A non-blocking Postgres connection with at most one statement (or pipeline) in flight. */
typedef struct wh_lane {
    const char *name;
    PGconn *conn;
    bool busy;     /* a statement is in flight */
    bool flushing; /* its bytes are not all sent yet */
    bool broken;   /* lost or left mid-statement: replaced at the next reconnect */
    int64_t sent_us;
} wh_lane_t;

struct worker {
    nudgel_conf_t *conf;
    nudgel_consumer_t *consumer;
    nudgel_publisher_t *publisher;
    nudgel_http_t *http;
    nudgel_secretbox_t *box;
    nudgel_ssrf_policy_t *ssrf;
    PGconn *pg;             /* blocking: endpoint rows, the payload column check */
    wh_lane_t claim_lane;   /* non-blocking: batched claims */
    wh_lane_t flush_lane;   /* non-blocking: batched outcomes (one pipeline) */
    bool pg_ok;             /* false: intake paused until a reconnect works */
    int64_t pg_retry_at_us; /* next reconnect attempt */
    int64_t pg_backoff_ms;  /* doubles up to PG_BACKOFF_MAX_MS */
    bool with_payload;
    char topic_jobs[256], topic_status[256], topic_dlq[256], topic_retry[TIERS][256];
    nudgel_retry_schedule_t schedule;
    long connect_ms, total_ms;
    size_t max_response, queue_max, max_in_flight, default_concurrency, flush_max;
    double default_rate;
    int64_t endpoint_cache_us, ssrf_cache_us, failing_window_ms, max_retry_after_ms, flush_us;
    endpoint_t *endpoints[HASH_BUCKETS];
    vetted_t *vetted[HASH_BUCKETS];
    endpoint_t *active; /* lanes with queued jobs */
    wjob_t
        *claims[2 * CLAIM_BATCH_MAX]; /* polled, waiting for the claim (a lost batch comes back) */
    size_t claim_count;
    wjob_t *claim_sent[CLAIM_BATCH_MAX]; /* the claim in flight */
    size_t claim_sent_n;
    wh_claim_t claim_rows[CLAIM_BATCH_MAX];
    wjob_t **flush_sent; /* the flush in flight */
    size_t flush_sent_n;
    wh_flush_call_t flush_call;
    wjob_t **outcomes; /* jobs waiting for the flush */
    size_t outcome_count, outcome_cap;
    int64_t last_flush_us;
    wjob_t *all;
    wjob_t *by_id[HASH_BUCKETS]; /* jobs in flight by (endpoint, event): each sent once */
    wjob_t *current;             /* the job just polled: the only one that may be handed back */
    size_t lane_waiting;
    nudgel_metrics_t *metrics;
    nudgel_metric_t *m_outcomes, *m_attempts, *m_latency, *m_in_flight, *m_queued, *m_claim_s,
        *m_flush_s;
};

static inline uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* main.c */
/* Something cannot be made durable: stop the loop, exit 1 (jobs are re-delivered). */
void request_fatal_stop(void);

/* jobs.c — the jobs in flight by (endpoint, event), a job's end */
bool index_holds(worker_t *w, wjob_t *j);
void index_remove(worker_t *w, wjob_t *j);
void job_release(wjob_t *j);
void on_published(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque);
void abandon_jobs(worker_t *w);

/* events.c — status events, retry hops, dead letters */
extern const char *const tier_suffix[TIERS];
void publish_event(wjob_t *j, const char *type_suffix, const char *status, int attempt,
                   long status_code, const char *error_code, const char *error_message,
                   bool permanent, const char *disabled_reason, const char *delivery_id,
                   const char *tenant_id, const char *event_type, const char *event_id);
void job_event(wjob_t *j, const char *type_suffix, const char *status);
void publish_dlq(wjob_t *j, const char *reason);
void job_publish(wjob_t *j);

/* flush.c — the outcome batch */
void outcome_add(wjob_t *j);
void outcomes_pump(worker_t *w, bool draining);

/* pg_lane.c — Postgres lanes, outages */
void postgres_down(worker_t *w, const char *errstr);
void postgres_revive(worker_t *w);
PGconn *lane_connect(worker_t *w, char *errstr, size_t errstr_size);
nudgel_err_t lane_sent(wh_lane_t *l, char *errstr, size_t errstr_size);
int lane_push_bytes(wh_lane_t *l);
int lane_result(wh_lane_t *l, PGresult **res, char *errstr, size_t errstr_size);
size_t lane_fds(worker_t *w, int *fds);

/* endpoints.c — endpoint rows and lanes */
void endpoint_forget_secrets(endpoint_t *ep);
endpoint_t *endpoint_get(worker_t *w, const char *id, nudgel_err_t *err);
void lane_push(worker_t *w, endpoint_t *ep, wjob_t *j);
void drain_lanes(worker_t *w);

/* attempts.c — one HTTP attempt */
void submit(worker_t *w, wjob_t *j);

/* intake.c — a job just polled */
void handle(worker_t *w, nudgel_job_ref_t *ref);

/* claims.c — batched claims */
void claims_pump(worker_t *w);

#endif
