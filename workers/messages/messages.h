/*
 * messages.h — the messages worker's private header (nudgel-messages only):
 * its types, and the functions its stage files call across each other.
 *
 * The worker runs on the shared skeleton (nudgel/worker.h): main.c holds the
 * configuration table, the role table and the wiring; every stage below is
 * an fd, a timer or a turn hook of the one event loop, and nothing waits
 * anywhere but in the loop. A job's way through the stages:
 *   1. intake.c: the two consumers (jobs topic, retry tiers) say when there
 *      is something to poll; jobs are polled while there is room under
 *      messages.max_in_flight. A malformed one goes to the DLQ with a failed
 *      event, a retry not yet due is handed back;
 *   2. claims.c: every parsed job in hand is claimed in one statement on the
 *      "claims" connection (DESIGN §5 idempotency by claim), once the
 *      templates the batch needs are loaded (templates.c, on the "lookups"
 *      connection: the batch waits for its lookups);
 *   3. prepare.c: a claimed job's expiry, body (text or template), GSM-7/UCS-2
 *      segments, route; then two gates (gates.c): one recipient's (tenant, to)
 *      jobs in order, and the tenant's in-flight cap and send rate
 *      (tenant_limits.c); then its gateway's lane (gateway_lanes.c: token
 *      bucket at the fleet share of the gateway's TPS, in-flight cap, circuit
 *      breaker with fallback along the route); then the hand-over
 *      (handover.c): the claim, a lease on a row in `accepted` until now,
 *      becomes `submitting` in one batched statement on the "outcomes"
 *      connection, and only then does the request go out (HTTP on the loop);
 *   4. outcomes.c: the outcomes are written in one statement on the
 *      "outcomes" connection (receipt + history, released claims), and only
 *      then its status event, dead letter (events.c) or retry hop go out; a
 *      job's offset is stored once Kafka acknowledged them all (the job
 *      lifecycle, nudgel/lifecycle.h).
 * Postgres (postgres.c): three non-blocking connections (nudgel/pgconn.h).
 * While one is down, intake pauses, jobs in hand wait in their queues, a
 * statement whose fate is unknown goes back to the front of its queue;
 * nothing is published before it is durable.
 * SIGTERM (drain): intake stops; jobs not yet handed to a gateway are handed
 * back (their claims released, their offsets not stored: the next owner
 * sends them without doubt); requests already at a gateway are waited for,
 * their outcomes recorded and published, and only then does the worker go.
 *
 * Threading: one thread; everything below runs on the event loop. A msg_t is
 * allocated by intake and freed by the lifecycle's finished callback
 * (msg_finished()) only; in between, the queues, gates, lanes and callbacks
 * that hold it borrow it.
 */
#ifndef NUDGEL_MESSAGES_H
#define NUDGEL_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "nudgel/batchq.h"
#include "nudgel/breaker.h"
#include "nudgel/cache.h"
#include "nudgel/config.h"
#include "nudgel/consumer.h"
#include "nudgel/event.h"
#include "nudgel/gateway.h"
#include "nudgel/http_client.h"
#include "nudgel/job.h"
#include "nudgel/keyq.h"
#include "nudgel/lifecycle.h"
#include "nudgel/log.h"
#include "nudgel/metrics.h"
#include "nudgel/outcome_labels.h"
#include "nudgel/pgconn.h"
#include "nudgel/publisher.h"
#include "nudgel/receipt_event.h"
#include "nudgel/receipts.h"
#include "nudgel/sms_encoding.h"
#include "nudgel/throttle.h"
#include "nudgel/topics.h"
#include "nudgel/worker.h"

#define PROGRAM "nudgel-messages"
/* One lane per gateway the file may define: the carriers' own limit. */
#define MAX_GATEWAYS NUDGEL_GATEWAY_MAX
#define TIERS_MAX    NUDGEL_RETRY_TIERS_MAX

typedef struct worker worker_t;

/* What a job's turn ends with, once Postgres has it (see outcomes_pump()). */
typedef enum outcome_kind {
    OUTCOME_NONE = 0,
    OUTCOME_RECORD,    /* write the receipt state, then its event (and a dead letter) */
    OUTCOME_RETRY,     /* release our claim, then the next retry tier */
    OUTCOME_HAND_BACK, /* shutdown: release our claim (never sent), then let the job go
                          unfinished (not stored: the next owner of its partition sends it) */
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
    const char *dlq_reason;  /* static text; NULL: no dead letter */
    const char *fail_reason; /* static label (nudgel/outcome_labels.h) of a final state other
                                than sent; NULL for sent */
    /* OUTCOME_RETRY */
    const char *retry_topic;
    int retry_attempt;
    int64_t not_before_ms;
    bool release_claim; /* we hold the claim (not so for someone else's in-progress claim) */
} outcome_t;

/* What a template job took from the cache before its claim (templates.c). */
typedef enum template_state {
    TPL_NONE = 0, /* not taken yet (or the job has a body) */
    TPL_BODY,     /* tpl_text is the body */
    TPL_ABSENT,   /* no such template */
    TPL_FAILED,   /* the lookup failed; tpl_text is why */
} template_state_t;

/* One job from poll to done. */
typedef struct msg {
    nudgel_job_life_t life; /* its lifecycle: publishes held, done/defer/fatal */
    worker_t *w;
    int receipt_attempt; /* the receipt's attempt (claims) once claimed; 0 before */
    char resent_from[NUDGEL_UUID_STR_LEN + 1]; /* the claimed receipt's resent_from, or "" */
    bool leased; /* its claim is ours (released or recorded at its end) */
    nudgel_message_job_t job;
    bool parsed;
    char *compact; /* after msg_compact(): the job's strings; its metadata holds a ref of ours */
    int attempt;   /* retry hops so far (nudgel-attempt header) */
    int64_t first_seen_ms; /* nudgel-first-seen, or now */
    char traceparent[64];
    char trace_id[NUDGEL_LOG_TRACE_ID_LEN + 1]; /* for its log lines */
    template_state_t tpl;
    char *tpl_text;
    char *text;
    nudgel_sms_info_t sms;
    const nudgel_gateway_t *gateway;
    nudgel_gateway_route_t route; /* the gateways it may use, primary first */
    bool holds_recipient;         /* the head of its (tenant, to) queue */
    bool holds_tenant;            /* counted in its tenant's in-flight */
    bool probe;                   /* its submission is its gateway's half-open probe */
    outcome_t *out;           /* allocated when the job's turn ends (keeps jobs in flight small) */
    struct msg *next_waiting; /* in its gateway's token queue */
} msg_t;

typedef struct gateway_lane {
    const nudgel_gateway_t *gateway;
    nudgel_throttle_bucket_t *bucket;
    nudgel_breaker_t breaker;
    size_t in_flight;                   /* submissions awaiting an answer */
    double rate;                        /* this worker's share of the gateway's TPS */
    msg_t *head, *tail;                 /* jobs waiting for a token */
    nudgel_log_ratelimit_t answers_log; /* 4xx, 5xx and transport errors */
    nudgel_log_ratelimit_t breaker_log; /* circuit transitions */
    nudgel_log_ratelimit_t auth_log;    /* credentials refused */
    /* messages.callback_url + /v1/dlr/{gateway}/{dlr_token}; "" when none (holds a secret) */
    char callback_url[NUDGEL_GATEWAY_URL_MAX + 1];
} gateway_lane_t;

/* The claim statement in flight on the claims connection (claims.c). */
typedef struct claim_batch {
    msg_t *batch[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t n;
    int phase; /* 1 inserts the new ones; 2 runs the full protocol for the rest */
    nudgel_receipt_claim_t claims[NUDGEL_RECEIPTS_BATCH_MAX];
    bool claimed[NUDGEL_RECEIPTS_BATCH_MAX];
} claim_batch_t;

/* The hand-over mark in flight on the outcomes connection (handover.c). */
typedef struct hand_batch {
    msg_t *batch[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t n;
    nudgel_receipt_mark_t marks[NUDGEL_RECEIPTS_BATCH_MAX];
    bool marked[NUDGEL_RECEIPTS_BATCH_MAX];
} hand_batch_t;

/* The outcome statement in flight on the outcomes connection (outcomes.c). */
typedef struct record_batch {
    msg_t *batch[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t n;
    nudgel_receipt_result_t results[NUDGEL_RECEIPTS_BATCH_MAX];
    nudgel_receipt_applied_t applied[NUDGEL_RECEIPTS_BATCH_MAX];
    int result_of[NUDGEL_RECEIPTS_BATCH_MAX];
    char event_ids[NUDGEL_RECEIPTS_BATCH_MAX][NUDGEL_EVENT_ID_LEN + 1];
    char costs[NUDGEL_RECEIPTS_BATCH_MAX]
              [NUDGEL_RECEIPT_COST_TEXT_MAX]; /* normalised cost text of results[i] */
    const char *release_ids[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t nresults, nreleases;
} record_batch_t;

/*
 * One statement waiting for the lookups connection (postgres.c): a template,
 * the tenant limits, a claim of one job. A lookup is one malloc'd block that
 * starts with this struct; the stage that made it owns the rest.
 */
typedef struct lookup lookup_t;
struct lookup {
    lookup_t *next;
    const char *what; /* for logs: "loading a template" */
    /* Sends its statement on @p conn (PQsendQueryParams). An error other than
     * NUDGEL_ERR_PG_UNREACHABLE ends the lookup: done() gets it. */
    nudgel_err_t (*send)(worker_t *w, lookup_t *lk, PGconn *conn, char *errstr, size_t errstr_size);
    /* Its result (@p res NULL when @p err is not NUDGEL_OK); frees @p lk.
     * Never called with NUDGEL_ERR_PG_UNREACHABLE: a lookup whose connection
     * was lost stays queued and is sent again once it is back. */
    void (*done)(worker_t *w, lookup_t *lk, PGconn *conn, const PGresult *res, nudgel_err_t err,
                 const char *errstr);
};

/* A Postgres connection of the worker and its readiness condition (postgres.c). */
typedef struct pg_link {
    worker_t *w;
    const char *name; /* "claims", "outcomes", "lookups" */
    nudgel_pgconn_t *conn;
    nudgel_ready_cond_t *ready;
    bool up;
} pg_link_t;

/* A cached template body (templates.c), the value of an entry of w->templates. */
typedef struct cached_template cached_template_t;

/* A row of nudgel.tenant_limits. */
typedef struct tenant_limit_row {
    char tenant[NUDGEL_THROTTLE_TENANT_MAX + 1];
    nudgel_tenant_limits_t limits;
} tenant_limit_row_t;

struct worker {
    nudgel_worker_t *rt; /* the skeleton */
    nudgel_loop_t *loop;
    const nudgel_conf_t *conf; /* the start-up configuration */
    nudgel_lifecycle_t *lc;
    nudgel_consumer_t *consumer;       /* the jobs topic (group messages.group_id) */
    nudgel_consumer_t *retry_consumer; /* the retry tiers (group messages.group_id + ".retry") */
    nudgel_publisher_t *publisher;
    nudgel_http_t *http;

    /* intake.c */
    bool want_poll[2];                /* [0] retry tiers, [1] jobs: a poll may find something */
    nudgel_timer_t *at_cap;           /* at the in-flight cap: one poll every 500 ms still */
    nudgel_ready_cond_t *kafka_ready; /* the jobs consumer */
    nudgel_ready_cond_t *kafka_retry_ready; /* the retry tiers' consumer */
    nudgel_log_ratelimit_t malformed_log;

    /* gateway_lanes.c */
    nudgel_gateway_set_t *gateways;
    gateway_lane_t lanes[MAX_GATEWAYS];
    size_t lane_count;
    nudgel_timer_t *lanes_timer; /* the next token of a lane with jobs waiting */
    int32_t total_partitions;    /* of the jobs topic */
    int32_t shared_with;         /* assigned partitions the lane rates were computed for */

    /* postgres.c */
    pg_link_t pg_claims, pg_outcomes, pg_lookups;
    bool pg_ok; /* all three up and the tenant limits read: intake may run */
    lookup_t *lookups, *lookups_tail;
    size_t lookup_count;
    bool lookup_sent; /* the head lookup is in flight */

    /* claims.c */
    nudgel_batchq_t *to_claim; /* parsed jobs waiting for the batched claim */
    claim_batch_t *claim;
    size_t claims_one_pending;   /* single claims (the fallback) not yet answered */
    int64_t claim_wait_since_us; /* the head batch waits for template lookups since */
    bool claim_recheck;          /* a template lookup ended: look at the batch again */

    /* handover.c */
    nudgel_batchq_t *to_hand; /* jobs with a token and a lane slot, waiting for their mark */
    hand_batch_t *hand;

    /* outcomes.c */
    nudgel_batchq_t *to_record; /* outcomes waiting for the batched write */
    record_batch_t *record;
    nudgel_log_ratelimit_t dlq_log;

    /* gates.c */
    nudgel_keyq_t *recipients; /* (tenant, to) → jobs waiting for the one ahead */
    nudgel_keyq_t *tenant_waits;
    nudgel_throttle_tenants_t *tenants;
    nudgel_batchq_t *recipient_ready; /* jobs whose recipient's turn came: to the tenant gate */
    nudgel_timer_t *gates_timer;      /* a rate-limited tenant's next send */
    bool tenant_table_full;           /* a tenant waits for any job to end */

    /* tenant_limits.c */
    nudgel_tenant_limits_t tenant_defaults;
    tenant_limit_row_t *tenant_limits; /* sorted by tenant */
    size_t tenant_limit_count;
    int64_t tenant_limits_every_us;
    nudgel_timer_t *limits_timer;
    bool limits_loaded;  /* read once (or given up on with a statement error) */
    bool limits_pending; /* a read is queued on the lookups connection */

    /* templates.c */
    nudgel_cache_t *templates; /* "tenant\0name\0locale" → cached_template_t */
    size_t template_max;
    int64_t template_ttl_us;

    /* settings */
    char worker_id[128];
    const char *topic_jobs, *topic_status, *topic_dlq;
    const char *topic_retry[TIERS_MAX];
    int64_t tier_delay_ms[TIERS_MAX];
    int tiers;
    int64_t stale_ms, validity_ms;
    size_t max_in_flight;
    size_t gateway_max_in_flight;
    const char *callback_url;
    bool draining; /* SIGTERM: no more jobs, hand back what is not at a gateway */

    /* metrics */
    nudgel_metric_t *m_outcomes, *m_in_flight, *m_submit_latency, *m_waiting, *m_pg_up, *m_pg_batch;
    nudgel_metric_t *m_breaker_state, *m_auth_failures; /* per gateway */
    nudgel_metric_t *m_unknown, *m_unknown_held;        /* per gateway */
    nudgel_metric_t *m_gw_request;      /* {gateway,outcome}: each request's answer */
    nudgel_metric_t *m_end_to_end;      /* {gateway}: created_at to the recorded outcome */
    nudgel_metric_t *m_throttle_tokens; /* {gateway}: the lane's token-bucket level */
};

/* ---- main.c ---------------------------------------------------------------- */

/* A stage queued work for a stage whose hook may already have run this turn. */
void kick(worker_t *w);

/* ---- intake.c ------------------------------------------------------------ */

/* Opens both consumers and puts them on the loop, with the at-cap timer. */
nudgel_err_t intake_open(worker_t *w, char *errstr, size_t errstr_size);
/* Leaves the groups (what is still in flight is re-delivered). */
void intake_close(worker_t *w);
/* Turn hook: polls again when room freed up; Kafka readiness; the gauges. */
void intake_turn(void *opaque);
/* SIGTERM: no more jobs. */
void intake_drain(worker_t *w);
/* Jobs polled and not yet done, from both consumers. */
size_t intake_in_flight(const worker_t *w);
/* Postgres unreachable (pause) or back (resume): every partition of both consumers. */
void intake_pause(worker_t *w, bool pause);
/* A job that cannot be taken: a failed status event and a dead letter with @p reason, counted
 * failed for @p label (NUDGEL_MSG_FAIL_MALFORMED, NUDGEL_MSG_FAIL_CLAIM_FAILED). */
void reject_malformed(worker_t *w, msg_t *m, const char *label, const char *reason);

/* ---- claims.c ------------------------------------------------------------ */

/* Turn hook: sends the next batched claim when the claims connection is free. */
void claims_pump(void *opaque);

/* ---- templates.c --------------------------------------------------------- */

/* Makes the cache (capped at w->template_max). @returns false when out of memory. */
bool templates_open(worker_t *w);
/* Frees the cache (teardown). */
void templates_close(worker_t *w);
/*
 * Gives every template job of the first @p n jobs waiting for the claim its
 * template from the cache (fresh, or loaded since the batch began waiting),
 * asking the lookups connection for the missing ones. @returns true when
 * every one of them has its template; false: the batch waits.
 */
bool templates_take(worker_t *w, size_t n);
/* Evicts the least recently used entries beyond messages.template_cache_max. */
void templates_trim(worker_t *w);

/* ---- prepare.c ----------------------------------------------------------- */

/* A claimed job: expiry, body, segments, route, then the recipient gate. */
void prepare_and_route(worker_t *w, msg_t *m);
/** Unix ms after which @p m may not be sent: its expires_at, else created_at +
 * messages.validity_ms. */
int64_t msg_expires_at_ms(const worker_t *w, const msg_t *m);

/* ---- tenant_limits.c ----------------------------------------------------- */

/* Arms the refresh timer; the first read goes out when the lookups connection is up. */
nudgel_err_t tenant_limits_open(worker_t *w, char *errstr, size_t errstr_size);
/* Reads nudgel.tenant_limits now (unless a read is pending). */
void tenant_limits_refresh(worker_t *w);
/* @p tenant's limits (borrowed from the worker): its row, else the defaults. */
const nudgel_tenant_limits_t *limits_of(worker_t *w, const char *tenant);

/* ---- gates.c ------------------------------------------------------------- */

/* Makes the gates' timer (freed in teardown). */
nudgel_err_t gates_open(worker_t *w, char *errstr, size_t errstr_size);
/* Into the recipient gate: the head of its (tenant, to) queue goes on, others wait. */
void recipient_gate(worker_t *w, msg_t *m);
/* Turn hook: recipients whose turn came to their tenant's gate; parked tenants again. */
void gates_tick(void *opaque);
/* @p m's submission is over (answered, or abandoned before it): free its places. */
void leave_gates(worker_t *w, msg_t *m);
/* The tenant limits changed: every parked tenant gets another look. */
void gates_limits_changed(worker_t *w);

/* ---- gateway_lanes.c ----------------------------------------------------- */

/* Loads the gateways and makes their lanes; gateway_lanes_close() frees them. */
nudgel_err_t gateway_lanes_open(worker_t *w, char *errstr, size_t errstr_size);

/* gateway_probe.c: the gateways file checked offline; one probe per gateway (--check-config=connect
 * and messages.startup_probe: a refused key stops the start, an unreachable gateway does not). */
void gateway_check(const nudgel_conf_t *conf, nudgel_conf_check_t *check);
void gateway_probe_check(const nudgel_conf_t *conf, nudgel_conf_check_t *check);
nudgel_err_t gateway_probe_at_start(worker_t *w, char *errstr, size_t errstr_size);
void gateway_lanes_close(worker_t *w);
/* Onto its gateway's lane, or a retry hop when every circuit of its route is open. */
void to_lane(worker_t *w, msg_t *m);
/* Turn hook: sends what each gateway allows now (tokens, in-flight cap, circuit). */
void drain_lanes(void *opaque);
/* Lane rates at this worker's share of the jobs topic's partitions, when it changed. */
void update_fleet_share(worker_t *w);
/* SIGHUP: the breakers' settings that may change live. */
void gateway_lanes_reload(worker_t *w, const nudgel_conf_t *conf);
/* @p m (marked submitting) goes to its gateway now, on the slot drain_lanes() reserved. */
void lane_submit(msg_t *m);
/* @p m will not be sent after all: its lane slot (and a probe it carried) is given back. */
void lane_give_back(worker_t *w, msg_t *m);

/* ---- handover.c ---------------------------------------------------------- */

/* @p m (a token and a lane slot taken) waits for its `submitting` mark, then is sent. */
void hand_over(worker_t *w, msg_t *m);
/* Turn hook: sends the next batch of marks when the outcomes connection is free. */
void handover_pump(void *opaque);
/* Unknown outcome at @p gw (@p detail says why): counted, then held (final failed,
 * outcome_unknown) or sent again by the gateway's policy. @returns true when held. */
bool unknown_outcome(msg_t *m, const nudgel_gateway_t *gw, const char *gateway_name,
                     const char *detail);

/* ---- outcomes.c ---------------------------------------------------------- */

/* The final (or sent) outcome: written with the next batch, then its event. @p reason: the
 * failure label (NUDGEL_MSG_FAIL_*) of a state other than sent, counted once it is recorded. */
void finish(msg_t *m, nudgel_receipt_state_t state, const char *reason, const char *gateway,
            const char *gateway_message_id, const char *error_code, const char *error_message,
            const char *cost_amount, const char *currency, const char *dlq_reason);
/* A transient failure: the next retry tier, or failed at the end of the ladder. */
void retry_or_give_up(msg_t *m, const char *error_code, const char *error_message,
                      int64_t retry_after_ms);
/* Another worker holds a fresh claim: come back once it could be stale. */
void wait_for_other_claim(msg_t *m);
/* Turn hook: sends the next batch of outcomes when the outcomes connection is free. */
void outcomes_pump(void *opaque);
/* Shutdown: @p m is not sent here; its claim (if ours) is released, then it is let go. */
void hand_back(msg_t *m);

/* ---- jobs.c -------------------------------------------------------------- */

/* A new job of @p w (its lifecycle begun by the caller: the lifecycle lists the live jobs). */
void msg_track(worker_t *w, msg_t *m);
/* The job needs nothing more of the worker: it ends once its publishes are acknowledged. */
/* A prepared job's parsed document let go: the strings it still needs copied into one block,
 * its metadata kept, its variables (rendered already) dropped. Keeps 10 000 jobs in flight
 * small; on failure (out of memory) the document simply stays. */
void msg_compact(msg_t *m);
void msg_release(msg_t *m);
/* Something of the job could not be made durable: it must come again. */
void msg_fail(msg_t *m);
/* The lifecycle's callbacks: a job ended (frees it); a job cannot end durably (stops). */
void msg_finished(void *opaque, nudgel_job_life_t *life);
void msg_fatal(void *opaque, const char *why);
/* Teardown: lets go of every job still alive (re-delivered later), freeing each. */
void msg_abandon_all(worker_t *w);
/* The fields that tie a log line to @p m (borrowed from it). */
nudgel_log_ctx_t msg_log_ctx(const msg_t *m);

/* ---- events.c ------------------------------------------------------------ */

/* The attempt a status event speaks for (the receipt's, once claimed). */
int event_attempt(const msg_t *m);
/* The receipt result @p o writes for @p m (borrowed strings; @p cost: NUDGEL_RECEIPT_COST_TEXT_MAX
 * bytes). */
void outcome_result(const msg_t *m, const outcome_t *o, const char *event_id, char *cost,
                    nudgel_receipt_result_t *r);
/* Status event data (a new reference) about the receipt @p row (borrowed). */
json_t *event_data_of_row(const msg_t *m, const nudgel_receipt_t *row, const char *status);
/* Status event data of @p m's recorded outcome @p o: the row it wrote. */
json_t *outcome_event_data(const msg_t *m, const outcome_t *o);
/* Status event data about @p m with no receipt of its own (deduplicated). */
json_t *job_event_data(const msg_t *m, const char *status);
/* Publishes a status event about @p subject of @p tenant; steals @p data. */
void publish_event_for(msg_t *m, const char *subject, const char *tenant, const char *status,
                       json_t *data);
/* publish_event_for() about the job itself. */
void publish_event(msg_t *m, const char *status, json_t *data);
/* The job's bytes to the dead-letter topic with @p reason (logged, rate-limited, with
 * @p log_ctx, or the job's own fields when NULL). */
void publish_dlq(msg_t *m, const char *reason, const nudgel_log_ctx_t *log_ctx);

/* ---- postgres.c ---------------------------------------------------------- */

/* Opens the three connections (they connect on the loop); postgres_close() frees them. */
nudgel_err_t postgres_open(worker_t *w, char *errstr, size_t errstr_size);
void postgres_close(worker_t *w);
/* Intake may run: the connections are up and the tenant limits were read. */
void postgres_update(worker_t *w);
/* Queues @p lk (owned by the queue until its done callback) for the lookups connection. */
void lookups_push(worker_t *w, lookup_t *lk);
/* Turn hook: sends the head lookup when the lookups connection is free. */
void lookups_pump(void *opaque);

#endif
