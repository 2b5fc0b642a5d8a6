/*
 * deliverer.h — nudgel-webhooks, the webhook deliverer: its types and the
 * functions its stage files share (private to workers/webhooks/deliverer/).
 *
 * A role on the worker skeleton (nudgel/worker.h): main.c holds its
 * configuration, its role table and the wiring; everything runs on the one
 * event loop, moved by fd callbacks (Kafka, curl, libpq sockets), timers
 * and one turn hook (pump.c). A job's path, stage by stage:
 *
 *   Kafka consumer (nudgel.webhooks.v1 + its retry tiers), on the loop
 *     → intake.c: due? envelope and parse (malformed: dead letter + failed
 *       event), then the claim queue
 *     → claims.c: claim in webhook_deliveries, a batch per statement on the
 *       "claims" connection (final: send nothing, re-emit its event; another
 *       delivery of the same tenant of the same event to the endpoint:
 *       deduplicated, recorded in webhook_duplicates, a deduplicated event)
 *     → endpoints.c: the endpoint (cached, capped, secrets opened with the
 *       keyring), its row read on the "lookups" connection (lookups.c) while
 *       its jobs wait in its lane
 *     → lanes.c: the endpoint's lane: at most max_concurrency requests in
 *       flight and rate_limit_per_second (a timer for the next token); jobs
 *       over that wait in the lane. A lane that is merely busy (it answers
 *       well and fast enough to serve endpoint_queue_max jobs within the
 *       first retry delay) keeps them all: backpressure comes from the
 *       in-flight cap and the claim gate, not from the retry tier. Only a
 *       slow, failing or throttled endpoint's jobs beyond endpoint_queue_max
 *       go to the first retry tier — a slow endpoint never holds back the
 *       others; a 429/503 with Retry-After holds the whole lane until then
 *     → tenant isolation: a job naming another tenant's endpoint (or
 *       delivery id) is refused (attempts.c: failed event, dead letter, no
 *       row; nothing of the other tenant's endpoint in its event or logs)
 *     → guard.c: the SSRF verdict of the target host (cached, capped, pinned)
 *     → attempts.c: sign the exact body bytes (Standard Webhooks; both
 *       signatures while a rotated-out secret lives) → POST on curl multi →
 *       classify (a 410 disables the endpoint on the "lookups" connection)
 *     → flush.c: attempt row + delivery row, batched, one transaction on the
 *       "outcomes" connection
 *     → events.c: status event, retry hop or dead letter
 *     → jobs.c: the job's life (nudgel/lifecycle.h): its offset is stored
 *       once Kafka acknowledged all of them; its log context.
 *
 * postgres.c owns the three connections' state: one down pauses intake and
 * fails its readiness condition, nothing in hand is lost (each stage puts
 * its batch back), all up resumes; deliver_db.c holds the SQL.
 *
 * Retries: attempt n fails → the schedule's n-th delay (±jitter), or later
 * when Retry-After says so, on the retry tier whose fixed delay fits it
 * (nudgel_topics_retry_tiers("webhooks"), nudgel/retry_tiers.h); the tier's
 * consumer pauses the partition until the head is due, or lets a head due
 * much later hop on so that it holds back no hop due before it. The attempt number is max(the job's
 * nudgel-attempt header, attempts recorded) + 1, so a job re-delivered after
 * a crash never reuses an attempt number.
 *
 * Threading: everything runs on the loop's thread; nothing here locks.
 */
#ifndef NUDGEL_WEBHOOKS_DELIVERER_H
#define NUDGEL_WEBHOOKS_DELIVERER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "deliver_db.h"
#include "nudgel/batchq.h"
#include "nudgel/cache.h"
#include "nudgel/config.h"
#include "nudgel/consumer.h"
#include "nudgel/http_client.h"
#include "nudgel/job.h"
#include "nudgel/lifecycle.h"
#include "nudgel/log.h"
#include "nudgel/metrics.h"
#include "nudgel/pgconn.h"
#include "nudgel/publisher.h"
#include "nudgel/readiness.h"
#include "nudgel/topics.h"
#include "nudgel/uuid.h"
#include "nudgel/webhooks/outcome.h"
#include "nudgel/webhooks/retry_schedule.h"
#include "nudgel/webhooks/secretbox.h"
#include "nudgel/webhooks/signature.h"
#include "nudgel/webhooks/ssrf.h"
#include "nudgel/worker.h"

#define PROGRAM          "nudgel-webhooks"
#define CLAIM_BATCH_MAX  512 /* jobs in one claim statement; the claim queue holds as many */
#define LOOKUP_BATCH_MAX 256 /* endpoint rows read by one statement */
#define HASH_BUCKETS     4096

typedef struct worker worker_t;
typedef struct endpoint endpoint_t;

typedef enum job_stage {
    STAGE_CLAIM,   /* waiting for the batch claim */
    STAGE_LANE,    /* waiting in its endpoint's lane (its row may be loading) */
    STAGE_HTTP,    /* request in flight */
    STAGE_DISABLE, /* its 410 disables the endpoint (lookups) */
    STAGE_FLUSH,   /* outcome waiting to be written */
    STAGE_PUBLISH, /* publishes waiting for acknowledgements */
} job_stage_t;

/* What to publish once a job's rows are durable. */
typedef enum job_end {
    END_NONE,         /* nothing (a duplicate) */
    END_DELIVERED,    /* delivered event */
    END_FAILED,       /* failed event (permanent) */
    END_RETRY,        /* retry hop */
    END_EXHAUSTED,    /* exhausted event + dead letter */
    END_REQUEUE,      /* saturated endpoint: first retry tier, no attempt counted */
    END_MALFORMED,    /* dead letter + failed event */
    END_DEDUPLICATED, /* another delivery holds its (endpoint, event): recorded + deduplicated event
                       */
    END_REFUSED, /* another tenant's endpoint or delivery: failed event + dead letter, no row */
} job_end_t;

/* One job from poll to done. */
typedef struct wjob {
    nudgel_job_life_t life; /* first: the lifecycle hands back &j->life */
    worker_t *w;
    nudgel_webhook_job_t job;
    bool parsed;
    job_stage_t stage;
    int header_attempts;   /* nudgel-attempt: attempts made before this hop */
    int attempt;           /* number of the attempt this job makes (1-based) */
    int64_t first_seen_ms; /* nudgel-first-seen, or now */
    bool replayed;         /* nudgel-replay-of: sent again by an operator (dlq replay) */
    char traceparent[64];
    char trace_id[33];                    /* the traceparent's trace-id, for logs; "" when none */
    char log_id[NUDGEL_UUID_STR_LEN + 1]; /* job id for logs (derived when malformed) */
    char log_tenant[72];                  /* tenant for logs (derived when malformed) */
    endpoint_t *ep;                       /* holds a reference (ep->refs) */
    /* outcome */
    job_end_t end;
    wh_delivery_status_t delivery_status; /* row status after the outcome */
    long status_code;
    char error_class[32];
    char error_message[640];
    bool permanent;
    int64_t next_attempt_ms;
    bool endpoint_disabled_now;                 /* this job's answer disabled the endpoint */
    char duplicate_of[NUDGEL_UUID_STR_LEN + 1]; /* END_DEDUPLICATED: the delivery that holds it */
    char disabled_reason[256];
    bool record_attempt;
    int latency_ms;
    char *snippet;
    char *url; /* malloc'd: the url its delivery row records (flush.c), or read back from it
                  (claims.c); its events carry this one. NULL: none */
    struct wjob *next_in_lane;
    struct wjob *prev_all, *next_all; /* every job alive, to free at exit */
    struct wjob *next_by_id;          /* the worker's jobs by (endpoint, event) */
    bool indexed;
} wjob_t;

/* A registered endpoint: its row (cached) and its lane. */
struct endpoint {
    char id[NUDGEL_UUID_STR_LEN + 1];
    bool loaded, found, enabled;
    bool load_queued; /* its row is queued or being read (endpoint_set_loading()) */
    char tenant_id[72];
    char *url;
    nudgel_wh_key_t keys[2]; /* current, then the rotated-out one while it lives */
    size_t key_count;
    int64_t previous_expires_ms;
    bool secret_broken; /* the sealed secret does not open */
    char secret_error[600];
    int64_t loaded_us;        /* when the read of the row it has was sent: trusted from then on */
    int64_t load_sent_us;     /* when the read in flight (or the last one) was sent */
    int64_t success_noted_us; /* last success written to the row (at most once a second) */
    int64_t failure_noted_us; /* last failure in a flush (dedupes a batch's failures) */
    size_t refs;              /* jobs pointing at it (each one a pin of its cache entry) */
    /* lane */
    size_t max_concurrency;
    double rate; /* requests per second; 0 = no limit */
    double tokens;
    int64_t tokens_us;
    size_t in_flight;
    int64_t throttled_until_us; /* no new request before (a 429/503's Retry-After), mono */
    int64_t latency_us;         /* answers' latency, moving average (0: none yet) */
    int64_t slow_since_us;      /* since when that average has said slow (0: it does not), mono */
    int64_t progress_us;        /* the last answer, or the first request after an idle spell */
    bool failing;               /* its last answer was not a success */
    wjob_t *head, *tail;
    size_t queued;
    bool active; /* on the worker's list of lanes with queued jobs (endpoint_set_active()) */
    endpoint_t *next_active;
    nudgel_cache_entry_t *ce; /* its entry in w->endpoints: pinned while held, loading or active */
};

/* A vetted host (scheme://authority, its key in w->vetted), reused for ssrf_cache_ms. */
typedef struct vetted {
    nudgel_err_t err;
    nudgel_ssrf_verdict_t verdict;
    int64_t vetted_us;
} vetted_t;

/* What can change on SIGHUP (main.c reads it from a configuration). */
typedef struct settings {
    nudgel_retry_schedule_t schedule;
    long connect_ms, total_ms;
    size_t max_response, queue_max, max_in_flight, default_concurrency, flush_max;
    size_t endpoint_cache_max, ssrf_cache_max;
    double default_rate;
    int64_t endpoint_cache_us, ssrf_cache_us, failing_window_ms, max_retry_after_ms, flush_us;
} settings_t;

/* Lines of a noisy kind (nudgel_log_ratelimit_t): at most LOG_LIMIT_PER_S a second. */
#define LOG_LIMIT_PER_S 5

struct worker {
    nudgel_worker_t *nw;
    nudgel_loop_t *loop;
    settings_t s;
    nudgel_consumer_t *consumer;
    nudgel_publisher_t *publisher;
    nudgel_lifecycle_t *lifecycle;
    nudgel_http_t *http;
    nudgel_secretbox_t *box;
    nudgel_ssrf_policy_t *ssrf;
    bool with_payload;
    bool with_duplicates; /* the table webhook_duplicates exists (migration 007) */
    bool draining, tearing_down;
    const char *topic_retry[NUDGEL_RETRY_TIERS_MAX]; /* owned by the skeleton */
    int64_t tier_delay_ms[NUDGEL_RETRY_TIERS_MAX];
    size_t tiers;

    /* Postgres (postgres.c): one connection per stage; a bit per connection down. */
    nudgel_pgconn_t *pg_claims, *pg_outcomes, *pg_lookups;
    nudgel_ready_cond_t *ready_claims, *ready_outcomes, *ready_lookups, *ready_kafka;
    unsigned pg_down;
    bool pg_was_up;         /* every connection has been up once (the start-up is not an outage) */
    int64_t kafka_stats_us; /* the consumer statistics "kafka" was last set from */
    bool kafka_down_seen;

    /* intake.c */
    bool intake_again;     /* poll without a wake-up (room freed, a pause lifted) */
    bool in_flight_paused; /* NUDGEL_PAUSE_IN_FLIGHT is on */

    /* claims.c */
    nudgel_batchq_t *claimq;             /* polled, waiting for the claim */
    wjob_t *claim_sent[CLAIM_BATCH_MAX]; /* the claim in flight */
    size_t claim_sent_n;
    wh_claim_t claim_rows[CLAIM_BATCH_MAX];

    /* endpoints.c, lookups.c */
    nudgel_cache_t *endpoints; /* id → endpoint_t, capped at s.endpoint_cache_max */
    nudgel_batchq_t *loadq;    /* endpoints whose row is to be read */
    nudgel_batchq_t *disableq; /* jobs whose 410 is to disable their endpoint */
    endpoint_t *load_sent[LOOKUP_BATCH_MAX];
    size_t load_sent_n;
    wjob_t *disable_sent;

    /* lanes.c */
    endpoint_t *active; /* lanes with queued jobs */
    size_t lane_waiting;
    nudgel_timer_t *lane_timer; /* the next token of a rate-limited lane */

    /* guard.c */
    nudgel_cache_t *vetted; /* scheme://authority → vetted_t, capped at s.ssrf_cache_max */

    /* flush.c */
    nudgel_batchq_t *outcomes; /* jobs waiting for the flush */
    wjob_t **flush_sent;       /* the flush in flight */
    size_t flush_sent_n;
    wh_flush_call_t flush_call;
    int64_t last_flush_us;
    nudgel_timer_t *flush_timer;

    /* jobs.c */
    wjob_t *all;
    wjob_t *by_id[HASH_BUCKETS]; /* jobs in flight by (endpoint, event): each sent once */
    nudgel_log_ratelimit_t log_answers, log_dead;

    nudgel_metric_t *m_outcomes, *m_attempts, *m_latency, *m_in_flight, *m_queued, *m_claim_s,
        *m_flush_s, *m_end_to_end;
};

static inline uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* main.c — reads what SIGHUP may change. */
nudgel_err_t settings_read(const nudgel_conf_t *conf, settings_t *s, char *errstr,
                           size_t errstr_size);

/* pump.c — the turn hook: what each stage can do now; Kafka readiness, gauges. */
void pump(void *opaque);

/* postgres.c — the three connections, their readiness, intake paused while one is down. */
nudgel_err_t postgres_open(worker_t *w, const nudgel_conf_t *conf, char *errstr,
                           size_t errstr_size);
void postgres_close(worker_t *w);
bool postgres_usable(nudgel_pgconn_t *c); /* up and idle: a statement may be sent */

/* jobs.c — a job's life, the index by (tenant, endpoint, event), its log context */
wjob_t *index_holder(worker_t *w, wjob_t *j); /* the job holding it, else NULL and j does now */
void index_remove(worker_t *w, wjob_t *j);
void job_release(wjob_t *j);
void job_fail(wjob_t *j);
void job_finished(void *opaque, nudgel_job_life_t *life); /* the lifecycle's `finished` */
void abandon_jobs(worker_t *w);
void job_log_ctx(const wjob_t *j, nudgel_log_ctx_t *ctx);
/* A line about @p j of a noisy kind, through the limiter @p rl (checked before formatting). */
void job_log_limited(const wjob_t *j, nudgel_log_ratelimit_t *rl, nudgel_log_level_t level,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* events.c — status events, retry hops, dead letters */
/* The labels of nudgel_webhooks_outcomes_total and of nudgel_jobs_failed_total (NULL-ended). */
extern const char *const wh_job_outcomes[];
extern const char *const wh_failure_reasons[];
/* The labels of nudgel_webhooks_attempts_total: delivered, each error class (NULL-ended). */
extern const char *const wh_attempt_results[];
/* The failure reason of a job that ended failed as @p end with @p error_class ("other" if unknown).
 */
const char *wh_failure_reason(job_end_t end, const char *error_class);
void publish_event(wjob_t *j, const char *type_suffix, const char *status, int attempt,
                   long status_code, const char *error_code, const char *error_message,
                   const char *disabled_reason, const char *delivery_id, const char *tenant_id,
                   const char *event_type, const char *event_id);
void job_event(wjob_t *j, const char *type_suffix, wh_delivery_status_t status);
void publish_dlq(wjob_t *j, const char *reason);
void job_publish(wjob_t *j);

/* intake.c — jobs just polled */
void intake_ready(void *opaque); /* the consumer's on_ready */
void intake_poll(worker_t *w);
void intake_gate(worker_t *w); /* the in-flight cap */

/* claims.c — batched claims */
void claims_pump(worker_t *w);

/* endpoints.c — the endpoint cache */
bool endpoints_open(worker_t *w); /* false: out of memory */
bool endpoint_expired(const worker_t *w, const endpoint_t *ep, int64_t now_us);
endpoint_t *endpoint_get(worker_t *w, const char *id);
endpoint_t *endpoint_find(worker_t *w, const char *id);
void endpoint_hold(endpoint_t *ep, wjob_t *j);
void endpoint_drop(worker_t *w, wjob_t *j);
void endpoint_apply_row(worker_t *w, endpoint_t *ep, const wh_endpoint_row_t *row);
void endpoint_not_found(endpoint_t *ep);
void endpoint_set_loading(worker_t *w, endpoint_t *ep, bool loading); /* ep->load_queued */
void endpoint_set_active(worker_t *w, endpoint_t *ep, bool active);   /* ep->active */
void endpoints_free(worker_t *w);

/* lookups.c — endpoint rows and 410 disables on the lookups connection */
void lookups_load(worker_t *w, endpoint_t *ep);
void lookups_disable(worker_t *w, wjob_t *j);
void lookups_pump(worker_t *w);
void lookups_down(worker_t *w);

/* lanes.c — each endpoint's queue, concurrency and rate; overflow only when slow or failing */
void lane_push(worker_t *w, endpoint_t *ep, wjob_t *j);
bool lane_overflows(const worker_t *w, const endpoint_t *ep, int64_t now_us);
void lane_observe_latency(const worker_t *w, endpoint_t *ep, int64_t sample_us, int64_t now_us);
void lanes_drain(worker_t *w);
void lanes_timer(void *opaque);

/* guard.c — SSRF verdicts per host */
bool guard_open(worker_t *w); /* false: out of memory */
const vetted_t *guard_vet(worker_t *w, const char *url);
void guard_free(worker_t *w);

/* attempts.c — one HTTP attempt; tenant isolation */
bool endpoint_foreign(const wjob_t *j); /* its endpoint's row says another tenant owns it */
void job_refuse(wjob_t *j, const char *error_class, const char *message);
void submit(worker_t *w, wjob_t *j);
void attempt_failed(wjob_t *j, nudgel_outcome_kind_t kind, int64_t not_before_ms);

/* flush.c — the outcome batch */
void outcome_add(wjob_t *j);
void flush_maybe(worker_t *w);
void flush_timer(void *opaque);

#endif
