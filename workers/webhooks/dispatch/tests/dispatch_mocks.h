/*
 * dispatch_mocks.h — what test_dispatch.c shares with its link-time mocks
 * (dispatch_mocks.c): the fake messages it polls, the jobs enqueued, the
 * lookup in flight, and the counters of what the stages asked the consumer.
 */
#ifndef NUDGEL_DISPATCH_MOCKS_H
#define NUDGEL_DISPATCH_MOCKS_H

#include "../dispatch.h"

#define MAX_POLLED 1024
#define MAX_JOBS   64

typedef struct fake_ref {
    rd_kafka_message_t km; /* first: the message is the ref */
    char payload[1024];
    const char *schema, *tenant, *traceparent; /* its headers; NULL: absent */
} fake_ref_t;

/* A job enqueued: its endpoint, the "n" of its event's data, its event. */
typedef struct job_seen {
    char endpoint[40];
    char event_id[64];
    void *opaque;
} job_seen_t;

/* Messages to poll, in order, and how far polling went. */
extern fake_ref_t *to_poll[MAX_POLLED];
extern size_t to_poll_count, polled;
/* What the stages asked of the consumer (done_ids: the "id" of each event done, in order). */
extern int done_count, defer_count, abandon_count, fatal_count;
extern char done_ids[MAX_POLLED][64];
extern unsigned paused;
/* Jobs enqueued, and what the next enqueue answers. */
extern job_seen_t jobs[MAX_JOBS];
extern size_t job_count;
extern nudgel_err_t enqueue_answer;
/* The lookup sent last (its array literal), and the one in flight (done not yet called). */
extern char sent_literal[1024];
extern int sends;
extern nudgel_pgconn_done_fn *pending_done;
extern void *pending_opaque;
extern bool pg_up;
extern void *dlq_opaque; /* the last DLQ publish's, for nudgel_lifecycle_published() */

nudgel_job_ref_t *__wrap_nudgel_consumer_poll(nudgel_consumer_t *c, int timeout_ms);
void __wrap_nudgel_consumer_done(nudgel_consumer_t *c, nudgel_job_ref_t *job);
void __wrap_nudgel_consumer_defer(nudgel_consumer_t *c, nudgel_job_ref_t *job, int64_t at);
void __wrap_nudgel_consumer_abandon(nudgel_consumer_t *c, nudgel_job_ref_t *job);
void __wrap_nudgel_consumer_pause(nudgel_consumer_t *c, nudgel_pause_reason_t reason);
void __wrap_nudgel_consumer_resume(nudgel_consumer_t *c, nudgel_pause_reason_t reason);
void __wrap_nudgel_consumer_health(const nudgel_consumer_t *c, nudgel_kafka_health_t *out);
const rd_kafka_message_t *__wrap_nudgel_job_message(const nudgel_job_ref_t *job);
bool __wrap_nudgel_pgconn_up(const nudgel_pgconn_t *c);
bool __wrap_nudgel_pgconn_busy(const nudgel_pgconn_t *c);
PGconn *__wrap_nudgel_pgconn_conn(const nudgel_pgconn_t *c);
nudgel_err_t __wrap_nudgel_pgconn_sent(nudgel_pgconn_t *c, size_t syncs,
                                       nudgel_pgconn_done_fn *done, void *opaque);
void __wrap_nudgel_pgconn_lost(nudgel_pgconn_t *c, const char *why);
int __wrap_PQsendQueryParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                             const char *const *paramValues, const int *paramLengths,
                             const int *paramFormats, int resultFormat);
nudgel_err_t __wrap_nudgel_enqueue_webhook(nudgel_producer_t *p, const char *json, size_t len,
                                           const nudgel_enqueue_opts_t *opts,
                                           nudgel_enqueue_result_t *result);
int __wrap_nudgel_producer_poll(nudgel_producer_t *p, int timeout_ms);
int __wrap_nudgel_producer_in_flight(nudgel_producer_t *p);
nudgel_err_t __wrap_nudgel_publish_dlq(nudgel_publisher_t *p, const char *topic,
                                       const rd_kafka_message_t *job, const char *reason,
                                       void *opaque);
void __wrap_nudgel_message_header(const rd_kafka_message_t *msg, const char *name, char *out,
                                  size_t out_size);

#endif
