/*
 * http.c — the callback endpoint, POST /v1/dlr/<gateway>/<token>, served
 * by libmicrohttpd on the worker's event loop.
 *
 * MHD runs in external epoll mode: the loop watches MHD's epoll fd and
 * calls MHD_run() when it is readable or when MHD's own timeout (a loop
 * timer) is due, so every callback below runs on the loop thread, like the
 * producer's delivery reports. A request whose reports are produced is
 * suspended (MHD_suspend_connection) — the loop goes on serving others —
 * and resumed from the last delivery report or from its deadline
 * (dlr.ack_timeout_ms); MHD then calls the handler again and the answer is
 * queued.
 *
 * Checks, in order, each answered without detail and before any body is
 * read: the path (404), the gateway (404: unknown, or it takes no
 * reports), the source address against the gateway's allow_cidrs (403),
 * the token (401), the basic credentials when configured (401 with
 * WWW-Authenticate), the method (405), Content-Length against
 * dlr.max_body_bytes (413), draining or too many requests in hand (503).
 * Then the body (413 past the cap), its parse (400 with the reason), and
 * Kafka (200 or 503). The URL holds the token: it is never logged.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "dlr.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#define PATH_PREFIX  "/v1/dlr/"
#define SEGMENT_MAX  256
#define BODY_INITIAL 4096

struct dlr_request {
    dlr_request_t *prev, *next; /* rx->live */
    receiver_t *rx;
    struct MHD_Connection *conn; /* NULL once MHD completed it */
    const dlr_gateway_t *gw;
    char *body;
    size_t len, cap;
    size_t reports, pending; /* produced, not yet back from Kafka */
    bool failed;             /* a report was not taken */
    bool decided, suspended, started;
    unsigned status;
    char answer[300];
    nudgel_timer_t *deadline;
};

/* ---- the live list and a request's end ------------------------------- */

static void request_free(dlr_request_t *rq)
{
    receiver_t *rx = rq->rx;
    if (rq->prev)
        rq->prev->next = rq->next;
    else
        rx->live = rq->next;
    if (rq->next)
        rq->next->prev = rq->prev;
    rx->live_count--;
    nudgel_metric_set(rx->m_in_flight, NULL, (double)rx->live_count);
    nudgel_timer_free(rq->deadline);
    free(rq->body);
    free(rq);
}

static void mhd_wanted(receiver_t *rx)
{
    rx->mhd_run_wanted = true;
    nudgel_loop_again(rx->loop);
}

/* The answer of @p rq: status and body text; resumes the connection when suspended. */
static void decide(dlr_request_t *rq, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void decide(dlr_request_t *rq, unsigned status, const char *fmt, ...)
{
    va_list ap;
    if (rq->decided)
        return;
    rq->decided = true;
    rq->status = status;
    va_start(ap, fmt);
    vsnprintf(rq->answer, sizeof(rq->answer), fmt, ap);
    va_end(ap);
    nudgel_timer_disarm(rq->deadline);
    if (rq->gw && rq->reports) {
        bool ok = status == MHD_HTTP_OK;
        nudgel_metric_add(ok ? rq->rx->m_accepted : rq->rx->m_unavailable, rq->gw->name,
                          (double)rq->reports);
        nudgel_metric_add2(rq->rx->m_by_gateway, rq->gw->name,
                           ok ? DLR_RESULT_ACCEPTED : DLR_RESULT_UNAVAILABLE, (double)rq->reports);
    }
    if (rq->suspended && rq->conn) {
        rq->suspended = false;
        MHD_resume_connection(rq->conn);
        mhd_wanted(rq->rx);
    }
}

void http_report_done(dlr_request_t *rq, bool ok)
{
    if (!rq)
        return;
    if (!ok)
        rq->failed = true;
    if (rq->pending > 0)
        rq->pending--;
    if (rq->pending == 0 && !rq->decided)
        decide(rq, rq->failed ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
               rq->failed ? "unavailable: Kafka did not take every report; send it again\n"
                          : "ok\n");
    if (rq->pending == 0 && !rq->conn)
        request_free(rq);
}

static void on_deadline(void *opaque)
{
    dlr_request_t *rq = opaque;
    decide(rq, MHD_HTTP_SERVICE_UNAVAILABLE,
           "unavailable: Kafka did not acknowledge in time; send it again\n");
}

/* ---- answers --------------------------------------------------------- */

static enum MHD_Result queue_text(struct MHD_Connection *conn, unsigned status, const char *text,
                                  bool basic_challenge)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (basic_challenge)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Basic realm=\"nudgel-dlr\"");
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result refuse(receiver_t *rx, struct MHD_Connection *conn, unsigned status,
                              const char *reason_label, const char *text)
{
    nudgel_metric_add(rx->m_refused, reason_label, 1);
    return queue_text(conn, status, text, strcmp(reason_label, "basic") == 0);
}

/* ---- the first call: who is asking ----------------------------------- */

/* Splits "/v1/dlr/<gateway>/<token>" into its two segments. */
static bool split_path(const char *url, char gw[SEGMENT_MAX + 1], const char **token)
{
    size_t plen = strlen(PATH_PREFIX);
    if (strncmp(url, PATH_PREFIX, plen) != 0)
        return false;
    const char *g = url + plen;
    const char *slash = strchr(g, '/');
    if (!slash || slash == g || (size_t)(slash - g) > SEGMENT_MAX)
        return false;
    const char *t = slash + 1;
    if (!*t || strchr(t, '/') || strlen(t) > SEGMENT_MAX)
        return false;
    memcpy(gw, g, (size_t)(slash - g));
    gw[slash - g] = '\0';
    *token = t;
    return true;
}

/*
 * The checks before the body. @returns true when the request goes on (its
 * gateway in @p *gw_out); false when it was refused, the answer queued and
 * what the handler returns in @p *result.
 */
static bool admit(receiver_t *rx, struct MHD_Connection *conn, const char *url, const char *method,
                  const dlr_gateway_t **gw_out, enum MHD_Result *result)
{
    char name[SEGMENT_MAX + 1];
    const char *token;
    const dlr_gateway_t *gw;
    if (!split_path(url, name, &token) || !(gw = dlr_gateways_find(rx->gateways, name))) {
        *result = refuse(rx, conn, MHD_HTTP_NOT_FOUND, "not_found", "not found\n");
        return false;
    }
    if (gw->ncidrs) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (!ci || !dlr_cidr_match(gw->cidrs, gw->ncidrs, ci->client_addr)) {
            *result = refuse(rx, conn, MHD_HTTP_FORBIDDEN, "source", "forbidden\n");
            return false;
        }
    }
    size_t token_len = strlen(token);
    bool current = dlr_secret_equal(token, token_len, gw->token, gw->token_len);
    bool secondary = gw->secondary_token && dlr_secret_equal(token, token_len, gw->secondary_token,
                                                             gw->secondary_token_len);
    if (!current && !secondary) {
        *result = refuse(rx, conn, MHD_HTTP_UNAUTHORIZED, "token", "unauthorized\n");
        return false;
    }
    if (!current) /* a rotation's other token is still in use */
        nudgel_metric_add(rx->m_secondary_token, gw->name, 1);
    if (gw->userpass && !dlr_basic_ok(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                                  MHD_HTTP_HEADER_AUTHORIZATION),
                                      gw->userpass, gw->userpass_len)) {
        *result = refuse(rx, conn, MHD_HTTP_UNAUTHORIZED, "basic", "unauthorized\n");
        return false;
    }
    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
        *result = refuse(rx, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method", "method not allowed\n");
        return false;
    }
    const char *clen =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (clen && strtoull(clen, NULL, 10) > rx->max_body) {
        *result = refuse(rx, conn, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "body too large\n");
        return false;
    }
    if (rx->draining || rx->live_count >= rx->max_requests) {
        *result = refuse(rx, conn, MHD_HTTP_SERVICE_UNAVAILABLE, rx->draining ? "draining" : "busy",
                         "unavailable: send it again\n");
        return false;
    }
    *gw_out = gw;
    return true;
}

static int body_append(dlr_request_t *rq, const char *data, size_t n)
{
    if (rq->len + n > rq->rx->max_body)
        return -1;
    if (rq->len + n + 1 > rq->cap) {
        size_t cap = rq->cap ? rq->cap : BODY_INITIAL;
        while (cap < rq->len + n + 1)
            cap *= 2;
        if (cap > rq->rx->max_body + 1)
            cap = rq->rx->max_body + 1;
        char *b = realloc(rq->body, cap);
        if (!b)
            return -1;
        rq->body = b;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    rq->body[rq->len] = '\0';
    return 0;
}

/* The whole body is in: parse it, produce its reports, suspend until Kafka answers. */
static void start(dlr_request_t *rq)
{
    receiver_t *rx = rq->rx;
    char why[256];
    size_t n = 0;
    dlr_report_t *reports = malloc(sizeof(*reports) * DLR_BATCH_MAX);
    rq->started = true;
    if (!reports) {
        decide(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable: out of memory\n");
        return;
    }
    if (dlr_parse(rq->gw->dialect, &rq->gw->generic, rq->body ? rq->body : "", rq->len, reports, &n,
                  why, sizeof(why)) != 0) {
        nudgel_metric_add(rx->m_malformed, rq->gw->name, 1);
        nudgel_metric_add2(rx->m_by_gateway, rq->gw->name, DLR_RESULT_MALFORMED, 1);
        nudgel_log_warn("a delivery report of %s refused: %s", rq->gw->name, why);
        decide(rq, MHD_HTTP_BAD_REQUEST, "malformed: %s\n", why);
        free(reports);
        return;
    }
    rq->reports = n;
    rq->pending = n;
    size_t queued = produce_reports(rx, rq, rq->gw, reports, n);
    free(reports);
    if (queued < n) {
        rq->failed = true;
        rq->pending = queued; /* the rest never went: only the queued ones come back */
    }
    if (rq->pending == 0) {
        decide(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable: Kafka did not take the reports\n");
        return;
    }
    if (rq->failed)
        decide(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable: Kafka did not take every report\n");
    else {
        nudgel_timer_arm_in(rq->deadline, rx->ack_timeout_us);
        rq->suspended = true;
        MHD_suspend_connection(rq->conn);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    receiver_t *rx = cls;
    dlr_request_t *rq = *con_cls;
    (void)version;
    if (!rq) {
        const dlr_gateway_t *gw = NULL;
        enum MHD_Result result;
        if (!admit(rx, conn, url, method, &gw, &result))
            return result;
        if (!(rq = calloc(1, sizeof(*rq))) ||
            !(rq->deadline = nudgel_timer_new(rx->loop, on_deadline, rq))) {
            free(rq);
            return queue_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable\n", false);
        }
        rq->rx = rx;
        rq->conn = conn;
        rq->gw = gw;
        rq->next = rx->live;
        if (rx->live)
            rx->live->prev = rq;
        rx->live = rq;
        rx->live_count++;
        nudgel_metric_set(rx->m_in_flight, NULL, (double)rx->live_count);
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!rq->decided && body_append(rq, upload_data, *upload_data_size) != 0) {
            nudgel_metric_add(rx->m_refused, "too_large", 1);
            decide(rq, MHD_HTTP_CONTENT_TOO_LARGE, "body too large\n");
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!rq->decided && !rq->started)
        start(rq);
    if (!rq->decided)
        return MHD_YES; /* suspended until Kafka answers */
    return queue_text(conn, rq->status, rq->answer, false);
}

/* MHD is done with a request (answered, or the client went away). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    dlr_request_t *rq = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (!rq)
        return;
    *con_cls = NULL;
    rq->conn = NULL;
    rq->suspended = false;
    nudgel_timer_disarm(rq->deadline);
    if (rq->pending == 0)
        request_free(rq);
}

/* ---- MHD on the loop --------------------------------------------------- */

static void mhd_run(receiver_t *rx)
{
    MHD_UNSIGNED_LONG_LONG timeout_ms = 0;
    rx->mhd_run_wanted = false;
    MHD_run(rx->mhd);
    if (MHD_get_timeout(rx->mhd, &timeout_ms) == MHD_YES)
        nudgel_timer_arm_in(rx->mhd_timer, (int64_t)timeout_ms * 1000);
    else
        nudgel_timer_disarm(rx->mhd_timer);
}

static void on_mhd_fd(void *opaque, int fd, unsigned events)
{
    (void)fd;
    (void)events;
    mhd_run(opaque);
}

static void on_mhd_timer(void *opaque)
{
    mhd_run(opaque);
}

static void on_turn(void *opaque)
{
    receiver_t *rx = opaque;
    if (rx->mhd && rx->mhd_run_wanted)
        mhd_run(rx);
}

nudgel_err_t http_start(receiver_t *rx, const char *address, int port, int connection_limit,
                        int idle_timeout_s, char *errstr, size_t errstr_size)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, address, &addr.sin_addr) != 1) {
        snprintf(errstr, errstr_size, "dlr.listen_address: \"%s\" is not an IPv4 address", address);
        return NUDGEL_ERR_CONFIG;
    }
    rx->mhd_fd = -1;
    rx->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)port, NULL, NULL, on_request, rx,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        rx, MHD_OPTION_CONNECTION_LIMIT, (unsigned)connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)idle_timeout_s, MHD_OPTION_END);
    if (!rx->mhd) {
        snprintf(errstr, errstr_size, "dlr.port: cannot listen on %s:%d", address, port);
        return NUDGEL_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(rx->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *bound = MHD_get_daemon_info(rx->mhd, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || !(rx->mhd_timer = nudgel_timer_new(rx->loop, on_mhd_timer, rx)) ||
        nudgel_loop_watch(rx->loop, info->epoll_fd, NUDGEL_LOOP_READ, on_mhd_fd, rx) != NUDGEL_OK ||
        nudgel_loop_add_hook(rx->loop, on_turn, rx) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "the receiver cannot go on the event loop");
        return NUDGEL_ERR_IO;
    }
    rx->mhd_fd = info->epoll_fd;
    nudgel_log_info("receiving delivery reports on %s:%u (POST /v1/dlr/<gateway>/<token>)", address,
                    bound ? (unsigned)bound->port : (unsigned)port);
    mhd_run(rx);
    return NUDGEL_OK;
}

void http_drain(receiver_t *rx)
{
    rx->draining = true;
}

void http_stop(receiver_t *rx)
{
    if (!rx->mhd)
        return;
    for (dlr_request_t *rq = rx->live; rq; rq = rq->next)
        decide(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable: shutting down\n");
    /* Let MHD send those answers (resumed connections need a run or two). */
    for (int i = 0; i < 3; i++)
        MHD_run(rx->mhd);
    if (rx->mhd_fd >= 0)
        nudgel_loop_unwatch(rx->loop, rx->mhd_fd);
    MHD_stop_daemon(rx->mhd); /* completes every connection (on_completed) */
    rx->mhd = NULL;
    rx->mhd_fd = -1;
    nudgel_timer_free(rx->mhd_timer);
    rx->mhd_timer = NULL;
}

void http_forget(receiver_t *rx)
{
    while (rx->live) {
        rx->live->conn = NULL;
        request_free(rx->live);
    }
}
