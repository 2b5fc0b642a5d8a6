/*
 * http_client.c — see nudgel/http_client.h.
 *
 * Two drivers for one multi handle. Polled: curl_multi_perform() and
 * curl_multi_poll(). On a loop: curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to call back (CURLMOPT_TIMERFUNCTION);
 * the loop's fd and timer callbacks call curl_multi_socket_action(), then
 * run the done callbacks of what finished. curl's callbacks only record
 * (watch, unwatch, arm): curl_multi_socket_action() is never entered from
 * inside curl, and done callbacks run after it returned, so they may submit.
 */
#define _GNU_SOURCE
#include "nudgel/http_client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "nudgel/log.h"

#define DEFAULT_CONNECT_MS   5000
#define DEFAULT_TOTAL_MS     15000
#define DEFAULT_MAX_RESPONSE 65536
#define RETRY_AFTER_MAX      64
#define RESPONSE_FIRST       1024 /* first allocation for a response body */

/* One request in flight; owns copies of everything curl reads later. */
typedef struct transfer {
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *resolve;
    char *body;
    char *response;
    size_t response_len, response_size; /* bytes kept, bytes allocated (+1 for a NUL) */
    size_t response_max;                /* the request's max_response_bytes */
    bool truncated;
    char retry_after[RETRY_AFTER_MAX];
    bool has_retry_after;
    char error[CURL_ERROR_SIZE];
    nudgel_http_done_fn *done;
    void *opaque;
    struct transfer *prev, *next; /* the client's list of transfers in flight */
} transfer_t;

struct nudgel_http {
    CURLM *multi;
    size_t in_flight;
    long idle_floor;       /* connections the cache keeps at least (max_host_connections) */
    long max_connects;     /* CURLMOPT_MAXCONNECTS as last set */
    transfer_t *transfers; /* libcurl 7.88 cannot list a multi's handles */
    /* On a loop (nudgel_http_attach), else loop is NULL. */
    nudgel_loop_t *loop;
    nudgel_timer_t *timer; /* curl's timeout */
    int *socks;            /* sockets watched for curl, unwatched on destroy */
    size_t sock_count, sock_cap;
};

static void list_remove(nudgel_http_t *h, transfer_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        h->transfers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

/*
 * Sizes curl's connection cache. Left alone, curl keeps at most 4 connections
 * per easy handle in the multi; ours come and go with each request, so at a
 * modest rate the cache shrinks to a few connections and every burst opens
 * new ones (connect, then close once the burst is over: about one request
 * in twelve paid a TCP handshake at 1,000/s over 64 connections). The same
 * 4x rule, but never below one host's worth of connections, keeps them.
 */
static void size_cache(nudgel_http_t *h)
{
    long want = (long)h->in_flight * 4;
    if (want < h->idle_floor)
        want = h->idle_floor;
    if (want != h->max_connects) {
        curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, want);
        h->max_connects = want;
    }
}

nudgel_http_t *nudgel_http_new(long max_host_connections, char *errstr, size_t errstr_size)
{
    static int global_ready; /* curl_global_init is not thread-safe: first use happens at start */
    if (!global_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(errstr, errstr_size, "curl_global_init failed");
            return NULL;
        }
        global_ready = 1;
    }
    nudgel_http_t *h = calloc(1, sizeof(*h));
    if (!h || !(h->multi = curl_multi_init())) {
        snprintf(errstr, errstr_size, "out of memory");
        free(h);
        return NULL;
    }
    h->idle_floor = max_host_connections > 0 ? max_host_connections : 64L;
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, h->idle_floor);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    size_cache(h);
    return h;
}

/*
 * Keeps the first response_max bytes of the body. The buffer grows as the
 * body comes (most webhook answers are empty or a few bytes): allocating
 * max_response_bytes (64 KiB by default) up front for each request cost a
 * large malloc and free per request, with the heap consolidation they bring.
 * When it cannot grow, what does not fit is dropped as past the cap.
 */
static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    transfer_t *t = arg;
    size_t len = size * n, room = t->response_max - t->response_len;
    if (len > room) {
        t->truncated = true;
        len = room;
    }
    if (t->response_len + len > t->response_size) {
        size_t want = t->response_size ? t->response_size * 2 : RESPONSE_FIRST;
        if (want < t->response_len + len)
            want = t->response_len + len;
        if (want > t->response_max)
            want = t->response_max;
        char *grown = realloc(t->response, want + 1);
        if (!grown) {
            t->truncated = true;
            len = t->response_size - t->response_len;
        } else {
            t->response = grown;
            t->response_size = want;
        }
    }
    if (len)
        memcpy(t->response + t->response_len, data, len);
    t->response_len += len;
    return size * n; /* keep reading past the cap so the connection stays reusable */
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    transfer_t *t = arg;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        const char *v = data + sizeof(name) - 1;
        const char *end = data + len;
        while (v < end && isspace((unsigned char)*v))
            v++;
        while (end > v && isspace((unsigned char)end[-1]))
            end--;
        size_t vlen =
            (size_t)(end - v) < RETRY_AFTER_MAX - 1 ? (size_t)(end - v) : RETRY_AFTER_MAX - 1;
        memcpy(t->retry_after, v, vlen);
        t->retry_after[vlen] = '\0';
        t->has_retry_after = true;
    }
    return len;
}

static void transfer_free(transfer_t *t)
{
    if (!t)
        return;
    if (t->easy)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    curl_slist_free_all(t->resolve);
    free(t->body);
    free(t->response);
    free(t);
}

nudgel_err_t nudgel_http_submit(nudgel_http_t *h, const nudgel_http_request_t *r,
                                nudgel_http_done_fn *done, void *opaque)
{
    if (!r || !r->url || !r->method || !done)
        return NUDGEL_ERR_INVALID_ARG;
    if (strncmp(r->url, "http://", 7) != 0 && strncmp(r->url, "https://", 8) != 0)
        return NUDGEL_ERR_INVALID_ARG;
    transfer_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NUDGEL_ERR_NO_MEMORY;
    t->done = done;
    t->opaque = opaque;
    t->response_max = r->max_response_bytes ? r->max_response_bytes : DEFAULT_MAX_RESPONSE;
    if (!(t->easy = curl_easy_init()))
        goto nomem;
    for (size_t i = 0; i < NUDGEL_HTTP_MAX_HEADERS && r->headers[i]; i++) {
        struct curl_slist *next = curl_slist_append(t->headers, r->headers[i]);
        if (!next)
            goto nomem;
        t->headers = next;
    }
    /* An empty Expect stops curl's 100-continue round trip on larger bodies. */
    struct curl_slist *next = curl_slist_append(t->headers, "Expect:");
    if (!next)
        goto nomem;
    t->headers = next;
    if (r->body && r->body_len) {
        if (!(t->body = malloc(r->body_len)))
            goto nomem;
        memcpy(t->body, r->body, r->body_len);
        curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->body);
        curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, "");
    }
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "POST") != 0)
        curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->resolve && *r->resolve) {
        if (!(t->resolve = curl_slist_append(NULL, r->resolve)))
            goto nomem;
        curl_easy_setopt(t->easy, CURLOPT_RESOLVE, t->resolve);
    }
    curl_easy_setopt(t->easy, CURLOPT_URL, r->url);
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     r->connect_timeout_ms > 0 ? r->connect_timeout_ms : DEFAULT_CONNECT_MS);
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS,
                     r->total_timeout_ms > 0 ? r->total_timeout_ms : DEFAULT_TOTAL_MS);
    curl_easy_setopt(t->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Waiting to learn whether a connection multiplexes only pays off where ALPN says so
     * (https): over plain http it holds every request to a host behind the first answer. */
    curl_easy_setopt(t->easy, CURLOPT_PIPEWAIT, strncmp(r->url, "https://", 8) == 0 ? 1L : 0L);
    curl_easy_setopt(t->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(h->multi, t->easy) != CURLM_OK)
        goto nomem;
    t->next = h->transfers;
    if (h->transfers)
        h->transfers->prev = t;
    h->transfers = t;
    h->in_flight++;
    size_cache(h);
    return NUDGEL_OK;
nomem:
    transfer_free(t);
    return NUDGEL_ERR_NO_MEMORY;
}

static int drain_finished(nudgel_http_t *h);

static void finish(nudgel_http_t *h, CURLMsg *msg)
{
    transfer_t *t = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    CURLcode code = msg->data.result;
    nudgel_http_response_t resp = {0};
    double total_s = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &resp.status);
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &total_s);
    resp.total_ms = total_s * 1000;
    resp.timed_out = code == CURLE_OPERATION_TIMEDOUT;
    long request_size = 0;
    curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &request_size);
    resp.request_sent = request_size > 0;
    resp.curl_code = (int)code;
    resp.transport_error = code != CURLE_OK;
    resp.error = code == CURLE_OK ? "" : (t->error[0] ? t->error : curl_easy_strerror(code));
    if (code != CURLE_OK)
        resp.status = 0;
    if (t->response)
        t->response[t->response_len] = '\0';
    resp.body = t->response ? t->response : "";
    resp.body_len = t->response_len;
    resp.body_truncated = t->truncated;
    resp.retry_after = t->has_retry_after ? t->retry_after : NULL;
    curl_multi_remove_handle(h->multi, t->easy);
    list_remove(h, t);
    h->in_flight--;
    t->done(t->opaque, &resp);
    transfer_free(t);
}

/* Runs the done callbacks of finished transfers. @returns how many. */
static int drain_finished(nudgel_http_t *h)
{
    int finished = 0, left;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg == CURLMSG_DONE) {
            finish(h, msg);
            finished++;
        }
    }
    return finished;
}

int nudgel_http_poll(nudgel_http_t *h, int timeout_ms)
{
    return nudgel_http_poll_fds(h, timeout_ms, NULL, 0);
}

int nudgel_http_poll_fds(nudgel_http_t *h, int timeout_ms, const int *fds, size_t nfds)
{
    int running = 0;
    struct curl_waitfd extra[8];
    if (h->loop) {
        nudgel_log_error("http: polled while on an event loop; the loop drives it");
        return 0;
    }
    if (nfds > sizeof(extra) / sizeof(extra[0]))
        nfds = sizeof(extra) / sizeof(extra[0]);
    for (size_t i = 0; i < nfds; i++)
        extra[i] = (struct curl_waitfd){.fd = fds[i], .events = CURL_WAIT_POLLIN, .revents = 0};
    curl_multi_perform(h->multi, &running);
    if ((running || nfds > 0) && timeout_ms > 0) {
        curl_multi_poll(h->multi, nfds ? extra : NULL, (unsigned)nfds, timeout_ms, NULL);
        curl_multi_perform(h->multi, &running);
    }
    return drain_finished(h);
}

/* ---- on the loop ---------------------------------------------------------- */

static void on_socket(void *opaque, int fd, unsigned events)
{
    nudgel_http_t *h = opaque;
    int running = 0;
    int mask = ((events & NUDGEL_LOOP_READ) ? CURL_CSELECT_IN : 0) |
               ((events & NUDGEL_LOOP_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(h->multi, fd, mask, &running);
    drain_finished(h);
}

/*
 * curl's timeout fired. curl reports a timeout in whole milliseconds,
 * truncated (7.88: Curl_timediff), so the timer can fire a fraction of a
 * millisecond before curl's own deadline; curl then finds nothing due, its
 * next deadline is unchanged and it does not call the timer callback again
 * (it only reports changes). Left disarmed, the transfer would wait for
 * socket activity that may never come: ask curl for its timeout instead
 * (at least 1 ms while a deadline is pending, so no busy loop).
 */
static void on_timeout(void *opaque)
{
    nudgel_http_t *h = opaque;
    int running = 0;
    long timeout_ms = -1;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (!nudgel_timer_armed(h->timer, NULL) &&
        curl_multi_timeout(h->multi, &timeout_ms) == CURLM_OK && timeout_ms >= 0)
        nudgel_timer_arm_in(h->timer, (int64_t)timeout_ms * 1000);
    drain_finished(h);
}

static void forget_socket(nudgel_http_t *h, int fd)
{
    for (size_t i = 0; i < h->sock_count; i++) {
        if (h->socks[i] == fd) {
            h->socks[i] = h->socks[--h->sock_count];
            return;
        }
    }
}

/* CURLMOPT_SOCKETFUNCTION: watch @p s as curl asks (runs inside curl). */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    nudgel_http_t *h = userp;
    (void)easy;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        nudgel_loop_unwatch(h->loop, s);
        forget_socket(h, s);
        return 0;
    }
    unsigned events = ((what & CURL_POLL_IN) ? NUDGEL_LOOP_READ : 0u) |
                      ((what & CURL_POLL_OUT) ? NUDGEL_LOOP_WRITE : 0u);
    bool known = false;
    for (size_t i = 0; i < h->sock_count && !known; i++)
        known = h->socks[i] == s;
    if (!known) {
        if (h->sock_count == h->sock_cap) {
            size_t cap = h->sock_cap ? h->sock_cap * 2 : 16;
            int *socks = realloc(h->socks, cap * sizeof(socks[0]));
            if (!socks)
                return -1; /* curl fails the transfers on this socket */
            h->socks = socks;
            h->sock_cap = cap;
        }
        h->socks[h->sock_count++] = s;
    }
    if (nudgel_loop_watch(h->loop, s, events, on_socket, h) != NUDGEL_OK) {
        nudgel_log_error("http: cannot watch socket %d", (int)s);
        forget_socket(h, s);
        return -1;
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: arm (or disarm, -1) the loop timer; 0 means "as
 * soon as possible", which is the next turn, outside curl. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    nudgel_http_t *h = userp;
    (void)multi;
    if (timeout_ms < 0)
        nudgel_timer_disarm(h->timer);
    else
        nudgel_timer_arm_in(h->timer, (int64_t)timeout_ms * 1000);
    return 0;
}

nudgel_err_t nudgel_http_attach(nudgel_http_t *h, nudgel_loop_t *loop)
{
    if (!h || !loop || h->loop || h->in_flight)
        return NUDGEL_ERR_INVALID_ARG;
    if (!(h->timer = nudgel_timer_new(loop, on_timeout, h)))
        return NUDGEL_ERR_NO_MEMORY;
    h->loop = loop;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return NUDGEL_OK;
}

size_t nudgel_http_in_flight(const nudgel_http_t *h)
{
    return h->in_flight;
}

void nudgel_http_destroy(nudgel_http_t *h)
{
    if (!h)
        return;
    if (h->loop) {
        /* Off the loop before curl closes anything: its sockets are still
         * open here, so their watches go cleanly, and curl's callbacks during
         * the teardown below find nothing to do. */
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, NULL);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, NULL);
        for (size_t i = 0; i < h->sock_count; i++)
            nudgel_loop_unwatch(h->loop, h->socks[i]);
        nudgel_timer_free(h->timer);
        free(h->socks);
    }
    while (h->transfers) {
        transfer_t *t = h->transfers;
        curl_multi_remove_handle(h->multi, t->easy);
        list_remove(h, t);
        transfer_free(t);
    }
    curl_multi_cleanup(h->multi);
    free(h);
}
