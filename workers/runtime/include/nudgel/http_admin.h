/*
 * nudgel/http_admin.h — the operations endpoints every worker serves:
 * GET /metrics (Prometheus text), GET /healthz (liveness: the process
 * answers and, when a liveness check is given, e.g. "the event loop is not
 * stuck", passes it), GET /readyz (readiness: the worker's own check, e.g.
 * "partitions assigned and Postgres reachable"). Served by libmicrohttpd's
 * own thread so a busy event loop never makes a probe time out.
 */
#ifndef NUDGEL_HTTP_ADMIN_H
#define NUDGEL_HTTP_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "nudgel/metrics.h"

typedef struct nudgel_http_admin nudgel_http_admin_t;

/**
 * Readiness check, called on the HTTP thread: return true when ready, else
 * false with a short reason in @p why. Must be thread-safe and quick.
 */
typedef bool(nudgel_ready_fn)(void *opaque, char *why, size_t why_size);

/**
 * @brief Starts serving on @p address:@p port (port 0 picks a free one).
 * @p metrics and @p ready are borrowed and must outlive the server; @p ready
 * may be NULL (always ready). @returns the server, or NULL with a reason.
 */
nudgel_http_admin_t *nudgel_http_admin_start(const char *address, int port,
                                             nudgel_metrics_t *metrics, nudgel_ready_fn *ready,
                                             void *opaque, char *errstr, size_t errstr_size);

/** What nudgel_http_admin_serve() serves; every pointer is borrowed and must outlive the server. */
typedef struct nudgel_http_admin_opts {
    const char *address; /* IPv4; NULL: 127.0.0.1 */
    int port;            /* 0 picks a free one */
    nudgel_metrics_t *metrics;
    nudgel_ready_fn *ready; /* /readyz; NULL: always ready */
    void *ready_opaque;
    nudgel_ready_fn *live; /* /healthz; NULL: alive while the process answers */
    void *live_opaque;
} nudgel_http_admin_opts_t;

/**
 * @brief Starts serving as @p opts says (copied; what it points to is
 * borrowed). /healthz answers 503 "not alive: <why>" when @p opts->live
 * says false. @returns the server, or NULL with a reason.
 */
nudgel_http_admin_t *nudgel_http_admin_serve(const nudgel_http_admin_opts_t *opts, char *errstr,
                                             size_t errstr_size);

/** @brief The port actually bound. */
int nudgel_http_admin_port(const nudgel_http_admin_t *h);

/** @brief Stops serving and frees. NULL is a no-op. */
void nudgel_http_admin_stop(nudgel_http_admin_t *h);

#endif
