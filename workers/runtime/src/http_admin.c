/*
 * http_admin.c — /metrics, /healthz and /readyz with libmicrohttpd.
 */
#define _GNU_SOURCE
#include "nudgel/http_admin.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#define METRICS_MAX_BYTES (4 * 1024 * 1024)

struct nudgel_http_admin {
    struct MHD_Daemon *daemon;
    nudgel_metrics_t *metrics;
    nudgel_ready_fn *ready;
    void *ready_opaque;
    nudgel_ready_fn *live;
    void *live_opaque;
    int port;
};

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type,
                               char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* /healthz and /readyz: 200 "<ok>" or 503 "<not ok>: <why>". */
static enum MHD_Result respond_check(struct MHD_Connection *conn, nudgel_ready_fn *check,
                                     void *opaque, const char *ok, const char *not_ok)
{
    char why[200] = "", body[256];
    bool pass = !check || check(opaque, why, sizeof(why));
    int n = pass ? snprintf(body, sizeof(body), "%s\n", ok)
                 : snprintf(body, sizeof(body), "%s: %s\n", not_ok, why);
    if (n < 0)
        return MHD_NO;
    if ((size_t)n >= sizeof(body))
        n = (int)sizeof(body) - 1;
    return respond(conn, pass ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", body,
                   (size_t)n, MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    nudgel_http_admin_t *h = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n", 19,
                       MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/healthz") == 0)
        return respond_check(conn, h->live, h->live_opaque, "ok", "not alive");
    if (strcmp(url, "/readyz") == 0)
        return respond_check(conn, h->ready, h->ready_opaque, "ready", "not ready");
    if (strcmp(url, "/metrics") == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        if (!out)
            return MHD_NO;
        nudgel_metrics_render(h->metrics, out);
        fclose(out);
        if (len > METRICS_MAX_BYTES)
            len = METRICS_MAX_BYTES;
        return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", text, len,
                       MHD_RESPMEM_MUST_FREE);
    }
    return respond(conn, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n", 10,
                   MHD_RESPMEM_PERSISTENT);
}

nudgel_http_admin_t *nudgel_http_admin_start(const char *address, int port,
                                             nudgel_metrics_t *metrics, nudgel_ready_fn *ready,
                                             void *opaque, char *errstr, size_t errstr_size)
{
    nudgel_http_admin_opts_t opts = {.address = address,
                                     .port = port,
                                     .metrics = metrics,
                                     .ready = ready,
                                     .ready_opaque = opaque};
    return nudgel_http_admin_serve(&opts, errstr, errstr_size);
}

nudgel_http_admin_t *nudgel_http_admin_serve(const nudgel_http_admin_opts_t *opts, char *errstr,
                                             size_t errstr_size)
{
    const char *address = opts->address;
    int port = opts->port;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    nudgel_http_admin_t *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (inet_pton(AF_INET, address ? address : "127.0.0.1", &sa.sin_addr) != 1) {
        snprintf(errstr, errstr_size, "metrics.address: \"%s\" is not an IPv4 address",
                 address ? address : "");
        free(h);
        return NULL;
    }
    h->metrics = opts->metrics;
    h->ready = opts->ready;
    h->ready_opaque = opts->ready_opaque;
    h->live = opts->live;
    h->live_opaque = opts->live_opaque;
    h->daemon =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, on_request,
                         h, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(errstr, errstr_size, "cannot listen on %s:%d for /metrics",
                 address ? address : "127.0.0.1", port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : port;
    return h;
}

int nudgel_http_admin_port(const nudgel_http_admin_t *h)
{
    return h->port;
}

void nudgel_http_admin_stop(nudgel_http_admin_t *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
