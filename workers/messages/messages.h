/*
 * messages.h — the messages worker's private header (nudgel-messages only):
 * its types, and the functions its stage files call across each other.
 *
 * One event loop (main.c). Each turn:
 *   1. intake.c: poll up to 256 jobs (jobs topic and retry tiers); a
 *      malformed one goes to the DLQ with a failed event, a retry not yet due
 *      is handed back;
 *   2. claims.c: claim every parsed job in one Postgres statement (templates
 *      they need loaded into the cache first: templates.c) — DESIGN §5
 *      idempotency by claim;
 *   3. prepare.c: a claimed job's expiry, body (text or template), GSM-7/UCS-2
 *      segments, route; then two gates (gates.c): one recipient's (tenant, to)
 *      jobs in order, and the tenant's in-flight cap and send rate
 *      (tenant_limits.c); then its gateway's lane (gateway_lanes.c: token
 *      bucket at the fleet share of the gateway's TPS, in-flight cap, circuit
 *      breaker with fallback along the route);
 *   4. gateway_lanes.c: HTTP submissions on curl multi; answers classified;
 *   5. outcomes.c: every outcome of the turn written in one statement
 *      (receipt + history, released claims), and only then its status event,
 *      dead letter (events.c) or retry hop; a job's offset is stored once
 *      Kafka acknowledged them all.
 * Postgres unreachable (pg_lane.c): intake pauses, jobs in hand wait in their
 * queues, reconnects back off; nothing is published before it is durable.
 *
 * Threading: one thread; everything below runs on the event loop. A msg_t is
 * allocated by intake_handle() and freed by msg_release() only; in between,
 * the queues, gates, lanes and callbacks that hold it borrow it.
 */
#ifndef NUDGEL_MESSAGES_H
#define NUDGEL_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "nudgel/breaker.h"
#include "nudgel/config.h"
#include "nudgel/consumer.h"
#include "nudgel/event.h"
#include "nudgel/gateway.h"
#include "nudgel/http_client.h"
#include "nudgel/job.h"
#include "nudgel/keyq.h"
#include "nudgel/metrics.h"
#include "nudgel/publisher.h"
#include "nudgel/receipts.h"
#include "nudgel/sms_encoding.h"
#include "nudgel/throttle.h"

#define PROGRAM      "nudgel-messages"
#define TIERS        4
#define MAX_GATEWAYS 32

typedef struct worker worker_t;

/* What a job's turn ends with, once Postgres has it (see outcomes_pump()). */
typedef enum outcome_kind {
    OUTCOME_NONE = 0,
    OUTCOME_RECORD, /* write the receipt state, then its event (and a dead letter) */
    OUTCOME_RETRY,  /* release our claim, then the next retry tier */
} outcome_kind_t;

typedef struct outcome {
    outcome_kind_t kind;
    nudgel_receipt_state_t state;
    char gateway[64];
    char gateway_message_id[NUDGEL_GATEWAY_CLIENT_REF_MAX];
    char error_code[64];
    char error_message[256];
    char cost_amount[32];
    char currency[8];
    const char *dlq_reason; /* static text; NULL: no dead letter */
    /* OUTCOME_RETRY */
    const char *retry_topic;
    int retry_attempt;
    int64_t not_before_ms;
    bool release_claim; /* we hold the claim (not so for someone else's in-progress claim) */
} outcome_t;

/* One job from poll to done. */
typedef struct msg {
    worker_t *w;
    nudgel_consumer_t *from; /* the consumer that polled it */
    nudgel_job_ref_t *ref;
    int receipt_attempt; /* the receipt's attempt (claims) once claimed; 0 before */
    nudgel_message_job_t job;
    bool parsed;
    int attempt;           /* retry hops so far (nudgel-attempt header) */
    int64_t first_seen_ms; /* nudgel-first-seen, or now */
    char traceparent[64];
    char *text;
    nudgel_sms_info_t sms;
    const nudgel_gateway_t *gateway;
    nudgel_gateway_route_t route; /* the gateways it may use, primary first */
    bool holds_recipient;         /* the head of its (tenant, to) queue */
    bool holds_tenant;            /* counted in its tenant's in-flight */
    int pending;                  /* publishes not yet acknowledged */
    bool publish_failed;
    outcome_t *out;           /* allocated when the job's turn ends (keeps jobs in flight small) */
    struct msg *next_waiting; /* in its gateway's token queue */
} msg_t;

typedef struct gateway_lane {
    const nudgel_gateway_t *gateway;
    nudgel_throttle_bucket_t *bucket;
    nudgel_breaker_t breaker;
    size_t in_flight;   /* submissions awaiting an answer */
    double rate;        /* this worker's share of the gateway's TPS */
    msg_t *head, *tail; /* jobs waiting for a token */
} gateway_lane_t;

/* A growable array of jobs waiting for one Postgres statement. */
typedef struct msg_queue {
    msg_t **items;
    size_t count, cap;
} msg_queue_t;

/*
 * One Postgres connection driven by the event loop (non-blocking libpq): at
 * most one batched statement in flight; what arrives meanwhile waits in the
 * queue and goes with the next statement, so batches grow with the load.
 */
typedef struct pg_lane {
    const char *name; /* "claims", "outcomes" */
    PGconn *conn;
    bool busy;     /* a statement is in flight */
    bool flushing; /* its bytes are not all sent yet */
    msg_t *batch[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t n;
    /* claims: phase 1 inserts the new ones; phase 2 runs the full protocol for the rest */
    int phase;
    nudgel_receipt_claim_t claims[NUDGEL_RECEIPTS_BATCH_MAX];
    bool claimed[NUDGEL_RECEIPTS_BATCH_MAX];
    /* outcomes */
    nudgel_receipt_result_t results[NUDGEL_RECEIPTS_BATCH_MAX];
    nudgel_receipt_applied_t applied[NUDGEL_RECEIPTS_BATCH_MAX];
    int result_of[NUDGEL_RECEIPTS_BATCH_MAX];
    char event_ids[NUDGEL_RECEIPTS_BATCH_MAX][NUDGEL_EVENT_ID_LEN + 1];
    const char *release_ids[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t nresults, nreleases;
} pg_lane_t;

/* A cached template body (NULL: the template does not exist). */
typedef struct cached_template {
    char *body;
    int64_t loaded_us;
} cached_template_t;

/* A row of nudgel.tenant_limits. */
typedef struct tenant_limit_row {
    char tenant[NUDGEL_THROTTLE_TENANT_MAX + 1];
    nudgel_tenant_limits_t limits;
} tenant_limit_row_t;

struct worker {
    nudgel_conf_t *conf;
    nudgel_consumer_t *consumer;       /* the jobs topic (group messages.group_id) */
    nudgel_consumer_t *retry_consumer; /* the retry tiers (group messages.group_id + ".retry") */
    nudgel_publisher_t *publisher;
    nudgel_http_t *http;
    nudgel_gateway_set_t *gateways;
    gateway_lane_t lanes[MAX_GATEWAYS];
    size_t lane_count;
    PGconn *pg;                /* blocking: templates, tenant limits, single-claim fallback */
    pg_lane_t *claim_lane;     /* non-blocking: batched claims */
    pg_lane_t *record_lane;    /* non-blocking: batched outcomes */
    bool pg_down;              /* intake paused until a reconnect works */
    int64_t pg_retry_at_us;    /* next reconnect attempt */
    int64_t pg_backoff_ms;     /* doubles up to pg_backoff_max_ms */
    int64_t pg_backoff_max_ms; /* messages.pg_reconnect_max_ms */
    msg_queue_t to_claim;      /* parsed jobs waiting for the batched claim */
    msg_queue_t to_record;     /* outcomes waiting for the batched write */
    nudgel_keyq_t *recipients; /* (tenant, to) → jobs waiting for the one ahead */
    nudgel_keyq_t *tenant_waits;
    nudgel_throttle_tenants_t *tenants;
    nudgel_tenant_limits_t tenant_defaults;
    msg_queue_t recipient_ready;       /* jobs whose recipient's turn came: to the tenant gate */
    tenant_limit_row_t *tenant_limits; /* sorted by tenant */
    size_t tenant_limit_count;
    int64_t tenant_limits_at_us, tenant_limits_every_us;
    nudgel_keyq_t *templates; /* "tenant\0name\0locale" → cached_template_t */
    int64_t template_ttl_us;
    char worker_id[128];
    char topic_jobs[256], topic_status[256], topic_dlq[256], topic_retry[TIERS][256];
    int64_t stale_ms, validity_ms;
    int64_t tier_delay_ms[TIERS];
    size_t max_in_flight;
    size_t gateway_max_in_flight;
    const char *callback_url;
    nudgel_metrics_t *metrics;
    nudgel_metric_t *m_outcomes, *m_in_flight, *m_submit_latency, *m_waiting, *m_pg_up, *m_pg_batch;
    /* The job being handled right after its poll: the only one that can still be
     * handed back to the consumer (nudgel_consumer_defer) if it cannot finish. */
    msg_t *current;
    int32_t total_partitions; /* of the jobs topic */
    int32_t shared_with;      /* assigned partitions the lane rates were computed for */
    /* A job whose outcome could not be made durable once it was no longer the
     * newest polled: it cannot be handed back, so the process stops without
     * storing its offset and the job is re-delivered (the claim makes that safe). */
    bool fatal_stop;
};

/* ---- queue.c: msg_queue_t (items borrowed) ------------------------------ */

/* Appends @p m; false when out of memory (the queue is unchanged). */
bool queue_push(msg_queue_t *q, msg_t *m);
/* Drops the first @p n items, keeping the order of the rest. */
void queue_shift(msg_queue_t *q, size_t n);
/* Puts @p n items back at the front, in order (they were shifted out just before). */
void queue_unshift(msg_queue_t *q, msg_t **items, size_t n);

/* ---- intake.c ------------------------------------------------------------ */

/* A job just polled (@p ref from @p from): due? parseable? Then it waits for the claim. */
void intake_handle(worker_t *w, nudgel_consumer_t *from, nudgel_job_ref_t *ref);
/* A job that cannot be taken: a failed status event and a dead letter with @p reason. */
void reject_malformed(worker_t *w, msg_t *m, const char *reason);

/* ---- claims.c ------------------------------------------------------------ */

/* The claims lane: collects the statement in flight, sends the next batch. */
void claims_pump(worker_t *w);

/* ---- prepare.c ----------------------------------------------------------- */

/* A claimed job: expiry, body, segments, route, then the recipient gate. */
void prepare_and_route(worker_t *w, msg_t *m);

/* ---- templates.c --------------------------------------------------------- */

/* Frees a cache entry (nudgel_keyq_free_with() callback for w->templates). */
void cached_template_free(void *p);
/* The cache entry of @p j's template when fresh (borrowed); NULL when absent or stale. */
cached_template_t *template_cached(worker_t *w, const nudgel_message_job_t *j);
/* Loads @p j's template (by name and locale, else "en") into the cache. */
nudgel_err_t template_load(worker_t *w, const nudgel_message_job_t *j, char *errstr,
                           size_t errstr_size);

/* ---- tenant_limits.c ----------------------------------------------------- */

/* Reads nudgel.tenant_limits again when due (and Postgres is up). */
void tenant_limits_refresh(worker_t *w);
/* @p tenant's limits (borrowed from the worker): its row, else the defaults. */
const nudgel_tenant_limits_t *limits_of(worker_t *w, const char *tenant);

/* ---- gates.c ------------------------------------------------------------- */

/* Into the recipient gate: the head of its (tenant, to) queue goes on, others wait. */
void recipient_gate(worker_t *w, msg_t *m);
/* Each turn: recipients whose turn came to their tenant's gate; parked tenants again. */
void gates_tick(worker_t *w);
/* @p m's submission is over (answered, or abandoned before it): free its places. */
void leave_gates(worker_t *w, msg_t *m);

/* ---- gateway_lanes.c ----------------------------------------------------- */

/* Loads the gateways and makes their lanes; gateway_lanes_close() frees them. */
nudgel_err_t gateway_lanes_open(worker_t *w, char *errstr, size_t errstr_size);
void gateway_lanes_close(worker_t *w);
/* Onto its gateway's lane, or a retry hop when every circuit of its route is open. */
void to_lane(worker_t *w, msg_t *m);
/* Sends what each gateway allows now (tokens, in-flight cap, circuit). */
void drain_lanes(worker_t *w);
/* Lane rates at this worker's share of the jobs topic's partitions, when it changed. */
void update_fleet_share(worker_t *w);

/* ---- outcomes.c ---------------------------------------------------------- */

/* The final (or sent) outcome: written with the next batch, then its event. */
void finish(msg_t *m, nudgel_receipt_state_t state, const char *gateway,
            const char *gateway_message_id, const char *error_code, const char *error_message,
            const char *cost_amount, const char *currency, const char *dlq_reason);
/* A transient failure: the next retry tier, or failed at the end of the ladder. */
void retry_or_give_up(msg_t *m, const char *error_code, const char *error_message,
                      int64_t retry_after_ms);
/* Another worker holds a fresh claim: come back once it could be stale. */
void wait_for_other_claim(msg_t *m);
/* The outcomes lane: collects the statement in flight, sends the next batch. */
void outcomes_pump(worker_t *w);
/* The job is finished: freed once every publish is acknowledged. */
void msg_release(msg_t *m);
/* The publisher's delivery callback (opaque: the msg_t). */
void on_published(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque);

/* ---- events.c ------------------------------------------------------------ */

/* The attempt a status event speaks for (the receipt's, once claimed). */
int event_attempt(const msg_t *m);
/* Status event data (a new reference) from the job and its outcome. */
json_t *event_data(const msg_t *m, const char *status, const char *gateway,
                   const char *gateway_message_id, const char *error_code,
                   const char *error_message, bool permanent, const char *cost_amount,
                   const char *currency);
/* Publishes a status event about @p subject of @p tenant; steals @p data. */
void publish_event_for(msg_t *m, const char *subject, const char *tenant, const char *status,
                       json_t *data);
/* publish_event_for() about the job itself. */
void publish_event(msg_t *m, const char *status, json_t *data);
/* The job's bytes to the dead-letter topic with @p reason. */
void publish_dlq(msg_t *m, const char *reason);

/* ---- pg_lane.c ----------------------------------------------------------- */

/* Connects the blocking connection and both lanes; postgres_close() frees them. */
nudgel_err_t postgres_open(worker_t *w, char *errstr, size_t errstr_size);
void postgres_close(worker_t *w);
/* Postgres is unreachable: pause intake; jobs already in hand wait in their queues. */
void postgres_down(worker_t *w, const char *what, const char *errstr);
/* While down: one reconnect attempt when due (backoff up to pg_reconnect_max_ms). */
void postgres_revive(worker_t *w);
/* Up and connected (for /readyz). */
bool postgres_ready(const worker_t *w);
/* A lane's statement is in flight. */
bool postgres_busy(const worker_t *w);
/* The sockets of the lanes with a statement in flight (at most @p max) into @p fds. */
size_t postgres_wait_fds(const worker_t *w, int *fds, size_t max);
/* @p err says the connection is lost (not a statement error). */
bool pg_unreachable(nudgel_err_t err);
/* After a *_send(): in flight; flushing while libpq still holds unsent bytes. */
nudgel_err_t lane_sent(pg_lane_t *l, char *errstr, size_t errstr_size);
/* The lane's result: 1 and @p *res (the caller clears it), 0 while it runs, -1 when lost. */
int lane_result(pg_lane_t *l, PGresult **res, char *errstr, size_t errstr_size);

#endif
