/*
 * nudgel/http_client.h — many HTTP requests in flight on one thread, with
 * libcurl's multi interface: keep-alive connections per host, HTTP/2 where
 * the server offers it, connect and total timeouts, redirects never
 * followed, response bodies read up to a hard cap.
 *
 * A request is described once (nudgel_http_request_t, copied on submit) and
 * its response comes back in a callback. Two ways to drive a client:
 * - on the worker's event loop (nudgel_http_attach()): curl's sockets are
 *   watched by the loop and curl's next timeout is a loop timer, so the
 *   client costs nothing while it waits; callbacks run from the loop's fd
 *   and timer callbacks;
 * - polled (code not on the loop yet): nudgel_http_poll() or
 *   nudgel_http_poll_fds(), callbacks run inside them.
 * A client uses one or the other, never both.
 *
 * Threads: one event loop owns a client.
 */
#ifndef NUDGEL_HTTP_CLIENT_H
#define NUDGEL_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "nudgel/error.h"
#include "nudgel/loop.h"

#define NUDGEL_HTTP_MAX_HEADERS 16

typedef struct nudgel_http nudgel_http_t;

typedef struct nudgel_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *url;
    const char *headers[NUDGEL_HTTP_MAX_HEADERS]; /* "Name: value"; NULL-terminated */
    const char *body;                             /* may be NULL */
    size_t body_len;
    long connect_timeout_ms;   /* 0: 5000 */
    long total_timeout_ms;     /* 0: 15000 */
    size_t max_response_bytes; /* 0: 65536; the rest is read and discarded */
    const char *resolve;       /* a CURLOPT_RESOLVE entry "host:port:addr[,addr]" pinning
                                  the addresses to connect to (no DNS lookup), or NULL */
} nudgel_http_request_t;

typedef struct nudgel_http_response {
    long status;          /* HTTP status, 0 when no response arrived */
    bool transport_error; /* connection refused, reset, DNS, TLS... */
    bool timed_out;       /* connect or total timeout */
    bool request_sent;    /* bytes of the request went out (CURLINFO_REQUEST_SIZE > 0): with a
                             transport error, the server may have acted on it */
    const char *error;    /* curl's message for transport errors, "" otherwise */
    const char *body;     /* first max_response_bytes bytes, NUL-terminated */
    size_t body_len;
    bool body_truncated;
    const char *retry_after; /* the Retry-After header, or NULL */
    double total_ms;
    int curl_code; /* libcurl's CURLcode of the transfer (0 when a response arrived) */
} nudgel_http_response_t;

/**
 * Runs once per request with everything borrowed for the call only. It may
 * submit new requests; it must not destroy the client.
 */
typedef void(nudgel_http_done_fn)(void *opaque, const nudgel_http_response_t *response);

/**
 * @brief A client keeping at most @p max_host_connections connections per
 * host (more requests queue inside curl), and at least that many idle ones
 * for reuse (more while many requests are in flight: 4 per request, curl's
 * rule), so a modest rate does not reconnect. @returns it, or NULL with a
 * reason.
 */
nudgel_http_t *nudgel_http_new(long max_host_connections, char *errstr, size_t errstr_size);

/**
 * @brief Starts @p request (copied: the caller's buffers may go at once).
 * @returns NUDGEL_OK, NUDGEL_ERR_INVALID_ARG (bad method/URL/too many headers)
 * or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_http_submit(nudgel_http_t *h, const nudgel_http_request_t *request,
                                nudgel_http_done_fn *done, void *opaque);

/**
 * @brief Puts @p h on @p loop, for good: from then on curl's sockets are
 * watched by the loop (CURLMOPT_SOCKETFUNCTION), curl's timeout is a loop
 * timer (CURLMOPT_TIMERFUNCTION), both calling curl_multi_socket_action(),
 * and done callbacks run from those loop callbacks. Nothing runs while no
 * socket is ready and no timeout is due (the connect and total timeouts of
 * each request are curl timeouts). Call it before the first submit. The
 * loop must outlive the client; nudgel_http_destroy() unwatches everything.
 * @returns NUDGEL_OK, NUDGEL_ERR_INVALID_ARG (already attached, transfers
 * in flight, NULL arguments) or NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_http_attach(nudgel_http_t *h, nudgel_loop_t *loop);

/**
 * @brief Moves transfers forward, waiting up to @p timeout_ms for activity,
 * and runs the callbacks of finished ones. @returns how many finished.
 * Not for an attached client (it logs an error and returns 0).
 */
int nudgel_http_poll(nudgel_http_t *h, int timeout_ms);

/**
 * @brief As nudgel_http_poll(), and the wait also ends when one of the
 * @p nfds sockets @p fds (e.g. a libpq connection's) is readable, so an
 * event loop can wait on its HTTP transfers and its database at once. It
 * waits even with no transfer running when @p nfds > 0.
 */
int nudgel_http_poll_fds(nudgel_http_t *h, int timeout_ms, const int *fds, size_t nfds);

/** @brief Requests submitted and not yet finished. */
size_t nudgel_http_in_flight(const nudgel_http_t *h);

/**
 * @brief Aborts what is in flight (no callbacks), unwatches the client's
 * sockets and disarms its timer if attached, and frees. NULL is a no-op.
 * Not from inside a done callback.
 */
void nudgel_http_destroy(nudgel_http_t *h);

#endif
