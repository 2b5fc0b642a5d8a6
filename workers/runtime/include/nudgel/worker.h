/*
 * nudgel/worker.h — the one skeleton every worker role runs on.
 *
 * A role is a const table (nudgel_role_t): its name, its configuration
 * tables and a handful of callbacks. nudgel_worker_main() owns everything a
 * role used to copy:
 *
 *   - the command line and the configuration: nudgel_conf_common first, the
 *     role's tables, then the runtime table every role shares
 *     (topics.namespace, metrics.address, metrics.port with the role's
 *     default port); --help (flags, the role's summary, the configuration
 *     reference), --version, --print-config, --print-config-doc;
 *   - signals, read from a signalfd on the loop. SIGTERM, SIGINT and SIGHUP
 *     are blocked in the main thread before the role's setup starts any
 *     thread (librdkafka, libmicrohttpd), so every thread inherits the mask;
 *     SIGPIPE is ignored;
 *   - SIGTERM/SIGINT: readiness "draining" fails, role->drain() stops intake,
 *     the loop keeps turning until role->in_flight() is 0 or the drain
 *     deadline (the role's drain_timeout_key, read when the drain starts)
 *     passes, then role->teardown(). A second SIGTERM during the drain is
 *     logged and changes nothing;
 *   - SIGHUP: the configuration is read again from the same sources (the
 *     -c file or NUDGEL_CONFIG, the environment, the same --set/-X flags)
 *     into a new configuration. A bad one is logged (naming the key) and the
 *     old one kept; a good one goes to role->reload(), then log.level
 *     applies. Never exits;
 *   - the operations endpoints: /metrics from the registry, /readyz from the
 *     readiness, /healthz 200 while the loop turns or waits, 503 when one
 *     turn has been dispatching for more than NUDGEL_WORKER_STUCK_US;
 *   - the main loop: nudgel_loop_turn(loop, -1), again and again — the
 *     role's stages are fds, timers and turn hooks it adds in setup;
 *   - --check-config[=connect]: the configuration loaded as a start would,
 *     every problem collected (nudgel/config_check.h): the load, the
 *     NUDGEL_* environment, pg.dsn's syntax (uses_postgres), the role's
 *     check(); with =connect Kafka, Postgres and the role's probe(). Prints
 *     each problem or one line OK; starts nothing. A normal start runs the
 *     same offline check first and stops (exit 2) on any problem, each named;
 *   - /metrics that cannot listen (metrics.port in use) stops the start
 *     (exit 2, naming metrics.port);
 *   - exit codes: 0 stopped by a signal (drained or at the deadline), 1 a
 *     fatal stop (nudgel_worker_fatal()), 2 a configuration or usage error
 *     (or a setup error that is not retriable), 3 a retriable start-up
 *     failure (Kafka or Postgres unreachable). Start-up errors go to stderr
 *     as "program: key: problem" and to the JSON log.
 *
 * Threads: nudgel_worker_main() and every role callback run on the main
 * (loop) thread. The accessors are for that thread, except
 * nudgel_worker_fatal(), which any thread may call.
 */
#ifndef NUDGEL_WORKER_H
#define NUDGEL_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/config.h"
#include "nudgel/config_check.h"
#include "nudgel/error.h"
#include "nudgel/fleet_metrics.h"
#include "nudgel/loop.h"
#include "nudgel/metrics.h"
#include "nudgel/readiness.h"

typedef struct nudgel_worker nudgel_worker_t;

/** A loop turn stuck in its callbacks this long makes /healthz answer 503. */
#define NUDGEL_WORKER_STUCK_US (10 * 1000 * 1000)

/** The name of the condition the skeleton registers first and fails during a drain. */
#define NUDGEL_WORKER_READY_DRAINING "draining"

typedef struct nudgel_role {
    /** "nudgel-messages": the command, the log component, kafka.client_id's default. */
    const char *program;
    /** What the role does, a paragraph for --help. */
    const char *summary;
    /**
     * The role's own tables (e.g. nudgel_consumer_conf, messages_table), in
     * the order of its configuration reference, NULL-terminated; borrowed,
     * static. Not nudgel_conf_common nor the runtime keys (topics.namespace,
     * metrics.*): the skeleton adds those, and refuses a key defined twice.
     */
    const nudgel_conf_entry_t *const *tables;
    /** metrics.port's default (9464 messages, 9465 webhooks, 9466 dispatch). */
    int metrics_port_default;
    /** An integer key of the role's tables: milliseconds a drain may take. */
    const char *drain_timeout_key;
    /** The role connects to Postgres: pg.dsn is required and probed by --check-config. */
    bool uses_postgres;

    /**
     * The offline check of what setup() will read beyond the keys' types
     * and ranges (files, secrets, lists): adds each problem to @p check
     * ("key: why", never a secret's value) and names the NUDGEL_* variables
     * its files reference (nudgel_conf_check_env_ref). Runs before setup()
     * at every start and for --check-config. No I/O but reading files and
     * the environment. May be NULL.
     */
    void (*check)(const nudgel_conf_t *conf, nudgel_conf_check_t *check);
    /**
     * --check-config=connect, after check() found nothing: probes the
     * role's own services (gateway credentials, the keyring against stored
     * secrets), each failure a problem naming its key; an unreachable
     * service is added with a retriable error. May be NULL.
     */
    void (*probe)(const nudgel_conf_t *conf, nudgel_conf_check_t *check);

    /**
     * Builds the role on @p w: reads the configuration, opens its clients,
     * registers metrics and readiness conditions, adds its fds, timers and
     * hooks to the loop. Stores its context in @p ctx. On failure returns the
     * error (its class picks the exit code: retriable 3, otherwise 2) with
     * "key: problem" in @p errstr. Whether it succeeds or not, teardown()
     * runs once it was called, with whatever it stored in @p ctx (NULL if
     * nothing), so a failed setup may leave its partial state to teardown.
     * Required.
     */
    nudgel_err_t (*setup)(nudgel_worker_t *w, void **ctx, char *errstr, size_t errstr_size);
    /** SIGTERM: stop taking new work (pause intake). Work in flight goes on. May be NULL. */
    void (*drain)(void *ctx);
    /** Work not yet finished; the drain ends when it is 0. NULL: always 0. */
    size_t (*in_flight)(void *ctx);
    /**
     * SIGHUP with a configuration that loaded: apply what can change at run
     * time from @p next (borrowed; it stays valid until the process exits,
     * so strings may be kept). An error keeps the current configuration
     * current and is logged. NULL: only log.level applies.
     */
    nudgel_err_t (*reload)(void *ctx, const nudgel_conf_t *next, char *errstr, size_t errstr_size);
    /**
     * Frees the role (its timers and fds on the loop included; the loop is
     * freed after). @p drained is true when in_flight() reached 0, false after
     * the deadline, a fatal stop or a failed setup. May be NULL.
     */
    void (*teardown)(void *ctx, bool drained);
} nudgel_role_t;

/**
 * @brief Runs @p role (borrowed, static) as a process from its command line.
 * @returns the exit code (see above); call it from main():
 * `return nudgel_worker_main(&messages_role, argc, argv);`.
 */
int nudgel_worker_main(const nudgel_role_t *role, int argc, char **argv);

/** @brief The process's event loop (borrowed; freed after teardown). */
nudgel_loop_t *nudgel_worker_loop(nudgel_worker_t *w);

/**
 * @brief The current configuration (borrowed): the start-up one, or the last
 * one a SIGHUP applied. Every configuration the worker loaded stays valid
 * until teardown has returned.
 */
const nudgel_conf_t *nudgel_worker_conf(const nudgel_worker_t *w);

/** @brief The metrics registry /metrics renders (borrowed; register in setup only). */
nudgel_metrics_t *nudgel_worker_metrics(nudgel_worker_t *w);

/** @brief The readiness /readyz answers from (borrowed). Its first condition is "draining". */
nudgel_readiness_t *nudgel_worker_readiness(nudgel_worker_t *w);

/**
 * @brief The families every role serves (nudgel/fleet_metrics.h), made
 * before the role's setup: pass it to the lifecycle, the consumers and the
 * Postgres connections, and name the role's failure reasons in it.
 */
nudgel_fleet_metrics_t *nudgel_worker_fleet_metrics(nudgel_worker_t *w);

/** @brief The role's program name (borrowed). */
const char *nudgel_worker_program(const nudgel_worker_t *w);

/**
 * @brief @p base (e.g. NUDGEL_TOPIC_MESSAGES) with topics.namespace of the
 * start-up configuration in front. @returns a string owned by the worker,
 * valid until nudgel_worker_main() returns (the same pointer for the same
 * @p base), or NULL on allocation failure.
 */
const char *nudgel_worker_topic(nudgel_worker_t *w, const char *base);

/** @brief Whether a SIGTERM/SIGINT started the drain. */
bool nudgel_worker_draining(const nudgel_worker_t *w);

/**
 * @brief Stops at once without a clean drain: for an outcome that cannot be
 * made durable. Logs the printf-style reason as an error; the loop ends
 * after the current turn, teardown(ctx, false) runs and the process exits
 * 1. Any thread (the loop is woken).
 */
void nudgel_worker_fatal(nudgel_worker_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
