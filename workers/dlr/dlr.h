/*
 * dlr.h — nudgel-dlr, the carrier delivery-report receiver: the path of a
 * callback through its stages, and the state they share.
 *
 *   http.c      libmicrohttpd on the worker's event loop (external epoll
 *               mode: MHD's epoll fd is watched by the loop, MHD_run() runs
 *               on the loop thread, a timer follows MHD_get_timeout()).
 *               POST /v1/dlr/<gateway>/<token>: gateway (404), source
 *               allow-list (403), token and basic credentials (401),
 *               method (405), body cap (413), then parse (400 with the
 *               reason); the connection is suspended while its reports are
 *               produced and resumed from their delivery reports: 200 once
 *               Kafka acknowledged every one, 503 when any failed or
 *               dlr.ack_timeout_ms passed.
 *   parse*.c    the body to normalised reports (parse.h: the status table
 *               and the id normalisation).
 *   produce.c   each report to nudgel.carrier-dlr.v1 (key
 *               gateway_message_id, acks=all, idempotence); delivery
 *               reports served from the loop; readiness "kafka".
 *   gateways.c  which gateways take reports, their secrets and sources.
 *   main.c      configuration, metrics, the role table and the wiring.
 *
 * A request lives until both its HTTP answer is done (MHD's completed
 * callback) and every report it produced came back from Kafka: it is
 * counted in in_flight() for the drain, and its memory is freed by
 * whichever comes last.
 *
 * Threads: everything runs on the loop thread.
 */
#ifndef NUDGEL_DLR_H
#define NUDGEL_DLR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "nudgel/kafka_health.h"
#include "nudgel/worker.h"

#include "gateways.h"
#include "parse.h"

struct MHD_Daemon;
struct MHD_Connection;

typedef struct dlr_request dlr_request_t;

typedef struct receiver {
    nudgel_worker_t *w;
    nudgel_loop_t *loop;
    const char *topic; /* nudgel.carrier-dlr.v1 with the namespace */
    dlr_gateways_t *gateways;

    /* settings */
    size_t max_body;
    int64_t ack_timeout_us;
    size_t max_requests; /* requests in hand at once; beyond: 503 */

    /* http.c */
    struct MHD_Daemon *mhd;
    int mhd_fd;
    nudgel_timer_t *mhd_timer;
    bool mhd_run_wanted; /* a connection was resumed: run MHD in this turn's hook */
    dlr_request_t *live; /* requests in hand (list) */
    size_t live_count;
    bool draining;

    /* produce.c */
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int wake_fd;
    nudgel_kafka_monitor_t *monitor;
    nudgel_ready_cond_t *ready_kafka;

    /* metrics (main.c registers them) */
    nudgel_metric_t *m_accepted;    /* {gateway}: reports Kafka acknowledged, answered 200 */
    nudgel_metric_t *m_unavailable; /* {gateway}: reports of requests answered 503 */
    nudgel_metric_t *m_malformed;   /* {gateway}: requests refused 400 */
    nudgel_metric_t *m_refused;     /* {reason}: requests refused before parsing */
    nudgel_metric_t
        *m_secondary_token;        /* {gateway}: callbacks admitted under dlr.secondary_token */
    nudgel_metric_t *m_status;     /* {status}: reports by normalised status */
    nudgel_metric_t *m_in_flight;  /* requests in hand */
    nudgel_metric_t *m_by_gateway; /* {gateway,result}: DLR_RESULT_* below */
} receiver_t;

/* The results of nudgel_dlr_reports_by_gateway_total. */
#define DLR_RESULT_ACCEPTED    "accepted"    /* reports Kafka acknowledged: 200 */
#define DLR_RESULT_UNAVAILABLE "unavailable" /* reports of a callback answered 503 */
#define DLR_RESULT_MALFORMED   "malformed"   /* callbacks refused 400 (reports unreadable) */

/* ---- http.c ---------------------------------------------------------- */

/**
 * Starts the HTTP receiver on @p address:@p port (0: any free port, logged)
 * on the loop. @returns NUDGEL_OK, or an error with the reason.
 */
nudgel_err_t http_start(receiver_t *rx, const char *address, int port, int connection_limit,
                        int idle_timeout_s, char *errstr, size_t errstr_size);

/** SIGTERM: new callbacks are answered 503; requests in hand finish. */
void http_drain(receiver_t *rx);

/** Answers every request in hand 503 and stops the daemon. */
void http_stop(receiver_t *rx);

/** Frees the requests still waiting for Kafka (after produce_close: no callback comes). */
void http_forget(receiver_t *rx);

/**
 * A report of @p rq came back from Kafka (@p ok: acknowledged). When it was
 * the last one, the answer is decided and the connection resumed.
 */
void http_report_done(dlr_request_t *rq, bool ok);

/* ---- produce.c ------------------------------------------------------- */

/** The producer from kafka.*, on the loop. @returns NUDGEL_OK or an error with the reason. */
nudgel_err_t produce_open(receiver_t *rx, const nudgel_conf_t *conf, char *errstr,
                          size_t errstr_size);

/**
 * Produces the @p n reports of @p rq (normalised, of gateway @p gw) to the
 * topic. Each report that Kafka takes into its queue comes back through
 * http_report_done(); @returns how many were queued (fewer than @p n when
 * the local queue refused one: the rest are not produced).
 */
size_t produce_reports(receiver_t *rx, dlr_request_t *rq, const dlr_gateway_t *gw,
                       const dlr_report_t *reports, size_t n);

/** Reports not yet acknowledged. */
size_t produce_in_flight(const receiver_t *rx);

/** Waits up to @p timeout_ms for acknowledgements (their callbacks run), then frees. */
void produce_close(receiver_t *rx, int timeout_ms);

#endif
