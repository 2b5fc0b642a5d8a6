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
    void *opaque;
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
        return respond(conn, MHD_HTTP_OK, "text/plain", "ok\n", 3, MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/readyz") == 0) {
        char why[200] = "", body[256];
        bool ready = !h->ready || h->ready(h->opaque, why, sizeof(why));
        int n = snprintf(body, sizeof(body), ready ? "ready\n" : "not ready: %s\n", why);
        return respond(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", body,
                       (size_t)n, MHD_RESPMEM_MUST_COPY);
    }
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
    h->metrics = metrics;
    h->ready = ready;
    h->opaque = opaque;
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
