/*
 * nudgel-carrier-sim — a local sandbox SMS carrier speaking the dialects of
 * Africa's Talking, Infobip, a generic JSON REST gateway and Kannel's generic
 * HTTP SMSC, with injectable faults, a ledger of what it was asked to send,
 * and delivery-report callbacks.
 *
 * Threads: MHD's internal pool (epoll) serves requests; one timer thread
 * resumes suspended connections when their simulated latency is over (so a
 * slow response never blocks a worker thread); one DLR thread sends
 * callbacks with libcurl multi; main waits for SIGTERM/SIGINT.
 *
 * Exit status: 0 clean stop, 1 could not start (port taken, ...), 2 usage or
 * configuration error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>

#include "nudgel/config.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/version.h"
#include "sim_common.h"
#include "sim_dlr.h"
#include "sim_fault.h"
#include "sim_form.h"
#include "sim_ledger.h"

#define PROGRAM           "nudgel-carrier-sim"
#define MAX_FLAG_SETS     256
#define MAX_RECIPIENTS    10000 /* per request, all dialects */
#define MAX_SECRET        256
#define MAX_URL           2048
#define SHUTDOWN_DRAIN_US 3000000
#define REPLY_BODY_CAP    (64u * 1024 * 1024)
#define ADMIN_BODY_CAP    (64u * 1024)

/* Keys every dialect has: "sim.<dialect>.<suffix>". */
#define DIALECT_TABLE(d, key_default, key_doc)                                                     \
    {"sim." d ".api_key",                                                                          \
     NUDGEL_CONF_STRING,                                                                           \
     key_default,                                                                                  \
     0,                                                                                            \
     0,                                                                                            \
     NULL,                                                                                         \
     NUDGEL_CONF_SENSITIVE,                                                                        \
     key_doc},                                                                                     \
        {"sim." d ".latency_ms",                                                                   \
         NUDGEL_CONF_INT,                                                                          \
         "0",                                                                                      \
         0,                                                                                        \
         600000,                                                                                   \
         NULL,                                                                                     \
         0,                                                                                        \
         "Fixed delay before every " d " response (served without blocking other requests)."},     \
        {"sim." d ".jitter_ms",                                                                    \
         NUDGEL_CONF_INT,                                                                          \
         "0",                                                                                      \
         0,                                                                                        \
         600000,                                                                                   \
         NULL,                                                                                     \
         0,                                                                                        \
         "Uniform extra delay in [0, jitter] added to latency_ms."},                               \
        {"sim." d ".error_5xx_permille",                                                           \
         NUDGEL_CONF_INT,                                                                          \
         "0",                                                                                      \
         0,                                                                                        \
         1000,                                                                                     \
         NULL,                                                                                     \
         0,                                                                                        \
         "Thousandths of " d " submissions answered 500, 502 or 503 (not sent)."},                 \
        {"sim." d ".error_429_permille",                                                           \
         NUDGEL_CONF_INT,                                                                          \
         "0",                                                                                      \
         0,                                                                                        \
         1000,                                                                                     \
         NULL,                                                                                     \
         0,                                                                                        \
         "Thousandths of " d " submissions answered 429 with Retry-After (not sent)."},            \
        {"sim." d ".retry_after_s",                                                                \
         NUDGEL_CONF_INT,                                                                          \
         "1",                                                                                      \
         0,                                                                                        \
         86400,                                                                                    \
         NULL,                                                                                     \
         0,                                                                                        \
         "Retry-After seconds of a drawn 429."},                                                   \
        {"sim." d ".timeout_permille",                                                             \
         NUDGEL_CONF_INT,                                                                          \
         "0",                                                                                      \
         0,                                                                                        \
         1000,                                                                                     \
         NULL,                                                                                     \
         0,                                                                                        \
         "Thousandths of " d " submissions held for timeout_hold_ms, then closed unanswered."},    \
        {"sim." d ".timeout_hold_ms",                                                              \
         NUDGEL_CONF_INT,                                                                          \
         "120000",                                                                                 \
         0,                                                                                        \
         3600000,                                                                                  \
         NULL,                                                                                     \
         0,                                                                                        \
         "How long a simulated timeout holds the connection before closing it."},                  \
        {"sim." d ".timeout_accepts",                                                              \
         NUDGEL_CONF_BOOL,                                                                         \
         "false",                                                                                  \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         0,                                                                                        \
         "Whether a timed-out submission still counts as sent (the carrier took it but the "       \
         "answer was lost): the case that makes duplicates."},                                     \
        {"sim." d ".reject_regex",                                                                 \
         NUDGEL_CONF_STRING,                                                                       \
         "",                                                                                       \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         0,                                                                                        \
         "POSIX ERE on the +E.164 number: matching recipients are rejected permanently as "        \
         "invalid numbers. Empty: none."},                                                         \
        {"sim." d ".blacklist_regex",                                                              \
         NUDGEL_CONF_STRING,                                                                       \
         "",                                                                                       \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         0,                                                                                        \
         "POSIX ERE on the +E.164 number: matching recipients are rejected permanently as "        \
         "blacklisted. Empty: none."},                                                             \
        {"sim." d ".tps_limit",                                                                    \
         NUDGEL_CONF_INT,                                                                          \
         "0",                                                                                      \
         0,                                                                                        \
         10000000,                                                                                 \
         NULL,                                                                                     \
         0,                                                                                        \
         "Submissions per second before 429 with Retry-After: 1 (token bucket, burst one "         \
         "second). 0: unlimited."},                                                                \
    {                                                                                              \
        "sim." d ".dlr_url", NUDGEL_CONF_STRING, "", 0, 0, NULL, 0,                                \
            "Where " d " delivery reports go when sim.dlr.enabled (a URL in the request wins)."    \
    }

static const nudgel_conf_entry_t sim_table[] = {
    {"sim.listen_address", NUDGEL_CONF_STRING, "127.0.0.1", 0, 0, NULL, 0,
     "IPv4 address to listen on. Keep it on loopback: this is a test tool."},
    {"sim.port", NUDGEL_CONF_INT, "18090", 0, 65535, NULL, 0,
     "TCP port; 0 picks a free one (printed as {\"listening\":PORT} on stdout)."},
    {"sim.threads", NUDGEL_CONF_INT, "2", 1, 64, NULL, 0, "HTTP worker threads (MHD pool, epoll)."},
    {"sim.connection_limit", NUDGEL_CONF_INT, "20000", 16, 1000000, NULL, 0,
     "Concurrent connections, held (delayed) ones included."},
    {"sim.idle_timeout_s", NUDGEL_CONF_INT, "60", 1, 3600, NULL, 0,
     "Idle keep-alive connections are closed after this many seconds."},
    {"sim.max_body_bytes", NUDGEL_CONF_INT, "1048576", 1024, 67108864, NULL, 0,
     "Largest request body; larger ones get 413."},
    {"sim.ledger.max_keys", NUDGEL_CONF_INT, "5000000", 1, 100000000, NULL, 0,
     "Keys the ledger holds; past it new keys are counted as ledger_full, not stored."},
    {"sim.ledger.list_limit", NUDGEL_CONF_INT, "100000", 1, 100000000, NULL, 0,
     "Default number of entries GET /ledger returns (?limit=N overrides)."},
    {"sim.dlr.enabled", NUDGEL_CONF_BOOL, "false", 0, 0, NULL, 0,
     "Send a delivery report for every accepted message."},
    {"sim.dlr.delay_ms", NUDGEL_CONF_INT, "200", 0, 3600000, NULL, 0,
     "Delay between the submission's response and its delivery report."},
    {"sim.dlr.jitter_ms", NUDGEL_CONF_INT, "0", 0, 3600000, NULL, 0,
     "Uniform extra delay in [0, jitter] added to sim.dlr.delay_ms."},
    {"sim.dlr.none_permille", NUDGEL_CONF_INT, "0", 0, 1000, NULL, 0,
     "Thousandths of accepted messages that get no delivery report at all (counted as "
     "dlr.withheld)."},
    {"sim.dlr.duplicate_permille", NUDGEL_CONF_INT, "0", 0, 1000, NULL, 0,
     "Thousandths of delivery reports sent twice, each copy with its own delay (counted as "
     "dlr.duplicated)."},
    {"sim.dlr.early_permille", NUDGEL_CONF_INT, "0", 0, 1000, NULL, 0,
     "Thousandths of delivery reports whose delay starts when the submission arrives, not "
     "when it is answered: with latency_ms above sim.dlr.delay_ms the report comes before the "
     "submit answer (the race that loses reports in Kannel and Jasmin)."},
    {"sim.dlr.retries", NUDGEL_CONF_INT, "8", 0, 1000, NULL, 0,
     "Times a callback answered non-2xx (or not at all) is sent again, as carriers do; then it "
     "counts as dlr.failed."},
    {"sim.dlr.retry_backoff_ms", NUDGEL_CONF_INT, "500", 1, 3600000, NULL, 0,
     "Delay before the first retry of a callback; it doubles with each retry."},
    {"sim.dlr.retry_backoff_max_ms", NUDGEL_CONF_INT, "30000", 1, 3600000, NULL, 0,
     "Longest delay between two attempts of a callback."},
    {"sim.dlr.failure_permille", NUDGEL_CONF_INT, "0", 0, 1000, NULL, 0,
     "Thousandths of delivery reports that say failed / undelivered."},
    {"sim.dlr.queue_max", NUDGEL_CONF_INT, "100000", 1, 10000000, NULL, 0,
     "Reports waiting to be sent; past it they are dropped and counted."},
    {"sim.dlr.concurrency", NUDGEL_CONF_INT, "64", 1, 10000, NULL, 0,
     "Callbacks in flight at once."},
    {"sim.dlr.timeout_ms", NUDGEL_CONF_INT, "5000", 100, 600000, NULL, 0,
     "Connect and total timeout of one callback."},
    {"sim.at.username", NUDGEL_CONF_STRING, "", 0, 0, NULL, 0,
     "Africa's Talking username the requests must carry; empty accepts any (it is still "
     "required)."},
    DIALECT_TABLE("at", "sandbox-at-key",
                  "Africa's Talking apiKey header value; empty accepts any key."),
    DIALECT_TABLE("infobip", "sandbox-infobip-key",
                  "Infobip key (Authorization: App <key>); empty accepts any key."),
    DIALECT_TABLE("generic", "sandbox-generic-key",
                  "Generic gateway key (Authorization: Bearer <key>); empty accepts any key."),
    DIALECT_TABLE("kannel", "",
                  "Kannel send-url query parameter key=<value> when set; empty: no check "
                  "(Kannel's generic SMSC usually carries no credentials)."),
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

/* Keys that only take effect at start; POST /admin/config refuses them. */
static const char *const static_keys[] = {
    "sim.listen_address", "sim.port",
    "sim.threads",        "sim.connection_limit",
    "sim.idle_timeout_s", "sim.ledger.max_keys",
    "sim.dlr.queue_max",  "sim.dlr.concurrency",
    "sim.dlr.timeout_ms", NULL,
};

/* Settings a request reads; rebuilt whole and swapped on a config change. */
typedef struct dialect_rt {
    sim_fault_profile_t fault;
    char api_key[MAX_SECRET];
    char dlr_url[MAX_URL];
    bool has_reject, has_blacklist;
    regex_t reject, blacklist;
    int tps_limit;
} dialect_rt_t;

typedef struct runtime {
    dialect_rt_t d[SIM_DIALECT_COUNT];
    char at_username[128];
    bool dlr_enabled;
    int dlr_delay_ms, dlr_jitter_ms, dlr_failure_permille;
    int dlr_none_permille, dlr_duplicate_permille, dlr_early_permille;
    int dlr_retries, dlr_retry_backoff_ms, dlr_retry_backoff_max_ms;
    size_t list_limit, max_body;
} runtime_t;

typedef struct bucket_slot {
    pthread_mutex_t lock;
    sim_bucket_t bucket;
} bucket_slot_t;

/* One HTTP request's state, from the first call of the handler to completion. */
typedef struct req {
    sim_buf_t body;
    enum { REQ_NEW = 0, REQ_READING, REQ_WAITING, REQ_READY } state;
    struct MHD_Response *response; /* prepared while the connection is suspended */
    unsigned status;
    bool drop; /* close without answering (a simulated timeout) */
    bool held; /* counted in sim->suspended */
} req_t;

typedef struct timer_item {
    int64_t due_us;
    struct MHD_Connection *conn;
    req_t *rq;
} timer_item_t;

typedef struct sim {
    nudgel_conf_t *conf;
    pthread_mutex_t conf_lock; /* serialises config changes */
    pthread_rwlock_t rt_lock;
    runtime_t *rt;
    bucket_slot_t buckets[SIM_DIALECT_COUNT];
    sim_ledger_t *ledger;
    sim_dlr_t *dlr;
    struct MHD_Daemon *daemon;
    atomic_bool stopping;
    atomic_long suspended;

    pthread_mutex_t timer_lock;
    pthread_cond_t timer_cond;
    timer_item_t *timer_heap;
    size_t timer_count, timer_size;
    bool timer_stop;
    pthread_t timer_thread;
} sim_t;

/* ---------------------------------------------------------------- runtime */

static void runtime_free(runtime_t *rt)
{
    if (!rt)
        return;
    for (int d = 0; d < SIM_DIALECT_COUNT; d++) {
        if (rt->d[d].has_reject)
            regfree(&rt->d[d].reject);
        if (rt->d[d].has_blacklist)
            regfree(&rt->d[d].blacklist);
    }
    free(rt);
}

static const char *dkey(sim_dialect_t d, const char *suffix, char *buf, size_t size)
{
    snprintf(buf, size, "sim.%s.%s", sim_dialect_name(d), suffix);
    return buf;
}

static int compile_regex(const char *key, const char *pattern, regex_t *re, bool *has, char *errstr,
                         size_t errstr_size)
{
    *has = false;
    if (!pattern || !*pattern)
        return 0;
    int rc = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[128];
        regerror(rc, re, why, sizeof(why));
        snprintf(errstr, errstr_size, "%s: bad regular expression: %s", key, why);
        return -1;
    }
    *has = true;
    return 0;
}

/* Builds the request-time settings from the table. @returns NULL with errstr on a bad value. */
static runtime_t *runtime_build(const nudgel_conf_t *conf, char *errstr, size_t errstr_size)
{
    runtime_t *rt = calloc(1, sizeof(*rt));
    char k[96];
    if (!rt) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (int i = 0; i < SIM_DIALECT_COUNT; i++) {
        sim_dialect_t d = (sim_dialect_t)i;
        dialect_rt_t *x = &rt->d[i];
        x->fault.latency_ms = (int)nudgel_conf_get_int(conf, dkey(d, "latency_ms", k, sizeof(k)));
        x->fault.jitter_ms = (int)nudgel_conf_get_int(conf, dkey(d, "jitter_ms", k, sizeof(k)));
        x->fault.error_5xx_permille =
            (int)nudgel_conf_get_int(conf, dkey(d, "error_5xx_permille", k, sizeof(k)));
        x->fault.error_429_permille =
            (int)nudgel_conf_get_int(conf, dkey(d, "error_429_permille", k, sizeof(k)));
        x->fault.retry_after_s =
            (int)nudgel_conf_get_int(conf, dkey(d, "retry_after_s", k, sizeof(k)));
        x->fault.timeout_permille =
            (int)nudgel_conf_get_int(conf, dkey(d, "timeout_permille", k, sizeof(k)));
        x->fault.timeout_hold_ms =
            (int)nudgel_conf_get_int(conf, dkey(d, "timeout_hold_ms", k, sizeof(k)));
        x->fault.timeout_accepts =
            nudgel_conf_get_bool(conf, dkey(d, "timeout_accepts", k, sizeof(k)));
        x->tps_limit = (int)nudgel_conf_get_int(conf, dkey(d, "tps_limit", k, sizeof(k)));
        const char *v = nudgel_conf_get_str(conf, dkey(d, "api_key", k, sizeof(k)));
        snprintf(x->api_key, sizeof(x->api_key), "%s", v ? v : "");
        v = nudgel_conf_get_str(conf, dkey(d, "dlr_url", k, sizeof(k)));
        snprintf(x->dlr_url, sizeof(x->dlr_url), "%s", v ? v : "");
        char why[160];
        if (sim_fault_profile_check(&x->fault, why, sizeof(why)) != 0) {
            snprintf(errstr, errstr_size, "sim.%s: %s", sim_dialect_name(d), why);
            goto fail;
        }
        dkey(d, "reject_regex", k, sizeof(k));
        if (compile_regex(k, nudgel_conf_get_str(conf, k), &x->reject, &x->has_reject, errstr,
                          errstr_size) != 0)
            goto fail;
        dkey(d, "blacklist_regex", k, sizeof(k));
        if (compile_regex(k, nudgel_conf_get_str(conf, k), &x->blacklist, &x->has_blacklist, errstr,
                          errstr_size) != 0)
            goto fail;
    }
    const char *user = nudgel_conf_get_str(conf, "sim.at.username");
    snprintf(rt->at_username, sizeof(rt->at_username), "%s", user ? user : "");
    rt->dlr_enabled = nudgel_conf_get_bool(conf, "sim.dlr.enabled");
    rt->dlr_delay_ms = (int)nudgel_conf_get_int(conf, "sim.dlr.delay_ms");
    rt->dlr_jitter_ms = (int)nudgel_conf_get_int(conf, "sim.dlr.jitter_ms");
    rt->dlr_failure_permille = (int)nudgel_conf_get_int(conf, "sim.dlr.failure_permille");
    rt->dlr_none_permille = (int)nudgel_conf_get_int(conf, "sim.dlr.none_permille");
    rt->dlr_duplicate_permille = (int)nudgel_conf_get_int(conf, "sim.dlr.duplicate_permille");
    rt->dlr_early_permille = (int)nudgel_conf_get_int(conf, "sim.dlr.early_permille");
    rt->dlr_retries = (int)nudgel_conf_get_int(conf, "sim.dlr.retries");
    rt->dlr_retry_backoff_ms = (int)nudgel_conf_get_int(conf, "sim.dlr.retry_backoff_ms");
    rt->dlr_retry_backoff_max_ms = (int)nudgel_conf_get_int(conf, "sim.dlr.retry_backoff_max_ms");
    if (rt->dlr_none_permille + rt->dlr_failure_permille > SIM_PERMILLE) {
        snprintf(errstr, errstr_size,
                 "sim.dlr.none_permille + sim.dlr.failure_permille: more than 1000");
        goto fail;
    }
    rt->list_limit = (size_t)nudgel_conf_get_int(conf, "sim.ledger.list_limit");
    rt->max_body = (size_t)nudgel_conf_get_int(conf, "sim.max_body_bytes");
    return rt;
fail:
    runtime_free(rt);
    return NULL;
}

/* Installs @p rt (taking it) and re-arms buckets whose limit changed. */
static void runtime_install(sim_t *sim, runtime_t *rt)
{
    pthread_rwlock_wrlock(&sim->rt_lock);
    runtime_t *old = sim->rt;
    sim->rt = rt;
    pthread_rwlock_unlock(&sim->rt_lock);
    if (sim->dlr)
        sim_dlr_set_retry(sim->dlr, rt->dlr_retries, rt->dlr_retry_backoff_ms,
                          rt->dlr_retry_backoff_max_ms);
    for (int d = 0; d < SIM_DIALECT_COUNT; d++) {
        bucket_slot_t *b = &sim->buckets[d];
        pthread_mutex_lock(&b->lock);
        if (!old || b->bucket.rate != rt->d[d].tps_limit)
            sim_bucket_init(&b->bucket, rt->d[d].tps_limit, rt->d[d].tps_limit, nudgel_mono_us());
        pthread_mutex_unlock(&b->lock);
    }
    runtime_free(old);
}

/* ------------------------------------------------------------------ timer */

static void timer_swap(timer_item_t *a, timer_item_t *b)
{
    timer_item_t t = *a;
    *a = *b;
    *b = t;
}

/* Holds the connection until @p due_us. Caller has suspended it. @returns 0 or -1 (no memory). */
static int timer_add(sim_t *sim, int64_t due_us, struct MHD_Connection *conn, req_t *rq)
{
    pthread_mutex_lock(&sim->timer_lock);
    if (sim->timer_count == sim->timer_size) {
        size_t size = sim->timer_size ? sim->timer_size * 2 : 1024;
        timer_item_t *grown = realloc(sim->timer_heap, size * sizeof(*grown));
        if (!grown) {
            pthread_mutex_unlock(&sim->timer_lock);
            return -1;
        }
        sim->timer_heap = grown;
        sim->timer_size = size;
    }
    size_t i = sim->timer_count++;
    sim->timer_heap[i] = (timer_item_t){due_us, conn, rq};
    while (i > 0 && sim->timer_heap[(i - 1) / 2].due_us > sim->timer_heap[i].due_us) {
        timer_swap(&sim->timer_heap[(i - 1) / 2], &sim->timer_heap[i]);
        i = (i - 1) / 2;
    }
    if (i == 0)
        pthread_cond_signal(&sim->timer_cond);
    pthread_mutex_unlock(&sim->timer_lock);
    return 0;
}

static timer_item_t timer_pop(sim_t *sim)
{
    timer_item_t top = sim->timer_heap[0];
    sim->timer_heap[0] = sim->timer_heap[--sim->timer_count];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < sim->timer_count && sim->timer_heap[l].due_us < sim->timer_heap[m].due_us)
            m = l;
        if (r < sim->timer_count && sim->timer_heap[r].due_us < sim->timer_heap[m].due_us)
            m = r;
        if (m == i)
            break;
        timer_swap(&sim->timer_heap[i], &sim->timer_heap[m]);
        i = m;
    }
    return top;
}

/* Resumes each held connection when its time comes; all of them at once when stopping. */
static void *timer_main(void *arg)
{
    sim_t *sim = arg;
    pthread_mutex_lock(&sim->timer_lock);
    for (;;) {
        bool stopping = atomic_load(&sim->stopping);
        int64_t now = nudgel_mono_us();
        while (sim->timer_count > 0 && (stopping || sim->timer_heap[0].due_us <= now)) {
            timer_item_t it = timer_pop(sim);
            it.rq->state = REQ_READY;
            MHD_resume_connection(it.conn);
        }
        if (sim->timer_stop)
            break;
        if (sim->timer_count == 0 || stopping) {
            pthread_cond_wait(&sim->timer_cond, &sim->timer_lock);
        } else {
            int64_t due = sim->timer_heap[0].due_us;
            struct timespec ts = {(time_t)(due / 1000000), (long)(due % 1000000) * 1000};
            pthread_cond_timedwait(&sim->timer_cond, &sim->timer_lock, &ts);
        }
    }
    pthread_mutex_unlock(&sim->timer_lock);
    return NULL;
}

/* ------------------------------------------------------------------ replies */

typedef struct reply {
    unsigned status;
    const char *content_type;
    sim_buf_t body;
    int retry_after_s; /* -1: no header */
    int delay_ms;
    bool drop;
    const char *fault; /* for the debug log */
} reply_t;

static void reply_init(reply_t *r)
{
    memset(r, 0, sizeof(*r));
    sim_buf_init(&r->body, REPLY_BODY_CAP);
    r->retry_after_s = -1;
    r->status = 500;
    r->content_type = "text/plain";
}

static void reply_text(reply_t *r, unsigned status, const char *text)
{
    r->status = status;
    r->content_type = "text/plain";
    r->body.len = 0;
    sim_buf_puts(&r->body, text);
}

/* Takes @p json (a new reference) as the body. */
static void reply_json(reply_t *r, unsigned status, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    r->status = status;
    r->content_type = "application/json";
    r->body.len = 0;
    if (text) {
        sim_buf_puts(&r->body, text);
        free(text);
    } else {
        r->status = 500;
        sim_buf_puts(&r->body, "{}");
    }
    json_decref(json);
}

static struct MHD_Response *reply_response(reply_t *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        r->body.len, r->body.len ? r->body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return NULL;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (r->retry_after_s >= 0) {
        char v[24];
        snprintf(v, sizeof(v), "%d", r->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    return resp;
}

/* ----------------------------------------------------------- submissions */

enum { OUT_ACCEPTED = 0, OUT_INVALID, OUT_BLACKLISTED };

/* One destination of a submission, whatever the dialect. */
typedef struct dest {
    const char *to;   /* as the client wrote it (borrowed) */
    const char *text; /* borrowed */
    size_t text_len;
    char number[SIM_NUMBER_MAX];
    bool number_ok;
    char key[600];
    char message_id[96]; /* in: the id to give; out: the id stored (a repeat gets the first) */
    bool idempotent;
    int outcome;
    int segments;
    sim_encoding_t encoding;
    uint32_t count; /* accepted submissions of the key after this one */
    /* for the delivery report */
    const char *dlr_url; /* borrowed; NULL: the dialect's configured URL */
    const char *client_ref;
    const char *bulk_id;
    const char *callback_data;
} dest_t;

/* Fills number, key (when not set), segments. */
static void dest_prepare(dest_t *x, const char *text_sha)
{
    x->number_ok = sim_number_normalise(x->to ? x->to : "", x->number) == 0;
    if (!x->number_ok)
        snprintf(x->number, sizeof(x->number), "%.19s", x->to ? x->to : "");
    if (!x->key[0])
        snprintf(x->key, sizeof(x->key), "%s:%s", x->number, text_sha);
    x->segments = sim_text_segments(x->text ? x->text : "", x->text_len, &x->encoding);
}

/* Builds and queues the delivery report of an accepted destination. rt read-locked. */
static void dlr_schedule(sim_t *sim, const runtime_t *rt, sim_dialect_t d, const dest_t *x,
                         int response_delay_ms)
{
    bool from_request = x->dlr_url && *x->dlr_url;
    const char *url = from_request ? x->dlr_url : rt->d[d].dlr_url;
    sim_rng_t *rng = sim_rng_thread();
    /* The mix: none_permille get no report, failure_permille a failure, the rest delivered. */
    int draw = (int)sim_rng_below(rng, SIM_PERMILLE);
    if (url && *url && draw < rt->dlr_none_permille) {
        sim_ledger_count(sim->ledger, d, SIM_C_DLR_WITHHELD, 1);
        sim_ledger_dlr(sim->ledger, x->key, SIM_DLR_NONE, 0, from_request);
        return;
    }
    bool delivered = draw >= rt->dlr_none_permille + rt->dlr_failure_permille;
    bool early = (int)sim_rng_below(rng, SIM_PERMILLE) < rt->dlr_early_permille;
    int copies = (int)sim_rng_below(rng, SIM_PERMILLE) < rt->dlr_duplicate_permille ? 2 : 1;
    int64_t due_of[2];
    for (int i = 0; i < copies; i++) {
        /* Each copy draws its own jitter: with jitter, reports arrive out of order. */
        int delay =
            (early ? 0 : response_delay_ms) + rt->dlr_delay_ms +
            (rt->dlr_jitter_ms > 0 ? (int)sim_rng_below(rng, (uint32_t)rt->dlr_jitter_ms + 1) : 0);
        due_of[i] = nudgel_mono_us() + (int64_t)delay * 1000;
    }
    int64_t due = due_of[0];
    char now_text[NUDGEL_RFC3339_MAX];
    sim_buf_t body, full_url;
    const char *content_type = NULL;
    json_t *json = NULL;

    if (!url || !*url)
        return;
    sim_buf_init(&body, 64 * 1024);
    sim_buf_init(&full_url, MAX_URL + 16);
    sim_buf_puts(&full_url, url);
    nudgel_rfc3339_format(nudgel_now_unix_ms(), now_text);
    switch (d) {
    case SIM_DIALECT_AT:
        content_type = "application/x-www-form-urlencoded";
        sim_buf_puts(&body, "id=");
        sim_buf_form_escape(&body, x->message_id);
        sim_buf_puts(&body, delivered ? "&status=Success" : "&status=Failed");
        sim_buf_puts(&body, "&phoneNumber=");
        sim_buf_form_escape(&body, x->number);
        sim_buf_printf(&body, "&networkCode=%s", sim_number_mccmnc(x->number));
        if (!delivered)
            sim_buf_puts(&body, "&failureReason=DeliveryFailure");
        sim_buf_puts(&body, "&retryCount=0");
        break;
    case SIM_DIALECT_INFOBIP: {
        content_type = "application/json";
        json_t *status =
            delivered ? json_pack("{s:i,s:s,s:i,s:s,s:s}", "groupId", 3, "groupName", "DELIVERED",
                                  "id", 5, "name", "DELIVERED_TO_HANDSET", "description",
                                  "Message delivered to handset")
                      : json_pack("{s:i,s:s,s:i,s:s,s:s}", "groupId", 2, "groupName",
                                  "UNDELIVERABLE", "id", 9, "name", "UNDELIVERABLE_NOT_DELIVERED",
                                  "description", "Message sent not delivered");
        json_t *error =
            delivered
                ? json_pack("{s:i,s:s,s:i,s:s,s:s,s:b}", "groupId", 0, "groupName", "OK", "id", 0,
                            "name", "NO_ERROR", "description", "No Error", "permanent", 0)
                : json_pack("{s:i,s:s,s:i,s:s,s:s,s:b}", "groupId", 1, "groupName",
                            "HANDSET_ERRORS", "id", 27, "name", "EC_ABSENT_SUBSCRIBER",
                            "description", "Absent Subscriber", "permanent", 0);
        json_t *result =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:{s:f, s:s}, s:o, s:o}", "bulkId",
                      x->bulk_id ? x->bulk_id : "", "messageId", x->message_id, "to",
                      x->to ? x->to : "", "sentAt", now_text, "doneAt", now_text, "smsCount",
                      x->segments, "mccMnc", sim_number_mccmnc(x->number), "price",
                      "pricePerMessage", sim_number_price(x->number) * x->segments, "currency",
                      sim_number_currency(x->number), "status", status, "error", error);
        if (result && x->callback_data)
            json_object_set_new(result, "callbackData", json_string(x->callback_data));
        json = json_pack("{s:[o]}", "results", result);
        break;
    }
    case SIM_DIALECT_GENERIC:
        content_type = "application/json";
        json = json_pack("{s:s, s:s?, s:s, s:s, s:s}", "id", x->message_id, "client_ref",
                         x->client_ref, "to", x->number, "status",
                         delivered ? "delivered" : "undelivered", "timestamp", now_text);
        if (json && !delivered)
            json_object_set_new(json, "error_code", json_string("absent_subscriber"));
        break;
    case SIM_DIALECT_KANNEL: {
        /* Kannel already substituted its %-codes; we only add the DLR type. */
        const char *query = strchr(url, '?');
        bool has_type = query && (strstr(query, "?type=") || strstr(query, "&type="));
        if (!has_type)
            sim_buf_printf(&full_url, "%stype=%d", query ? "&" : "?", delivered ? 1 : 2);
        break;
    }
    case SIM_DIALECT_COUNT:
        break;
    }
    if (json) {
        char *text = json_dumps(json, JSON_COMPACT);
        if (text)
            sim_buf_puts(&body, text);
        free(text);
        json_decref(json);
    }
    int queued = 0;
    if (!full_url.overflow && !body.overflow) {
        for (int i = 0; i < copies; i++) {
            sim_dlr_item_t *item =
                sim_dlr_item_new(d, i ? due_of[i] : due, full_url.data, content_type,
                                 content_type ? (body.data ? body.data : "") : NULL);
            if (item)
                queued += sim_dlr_enqueue(sim->dlr, item) == 0;
            else
                sim_ledger_count(sim->ledger, d, SIM_C_DLR_DROPPED, 1);
            if (i)
                sim_ledger_count(sim->ledger, d, SIM_C_DLR_DUPLICATED, 1);
        }
    }
    /* What the carrier reported, for tests to compare final states with (GET /ledger). */
    sim_ledger_dlr(sim->ledger, x->key, delivered ? SIM_DLR_DELIVERED : SIM_DLR_FAILED, queued,
                   from_request);
    sim_buf_free(&body);
    sim_buf_free(&full_url);
}

/*
 * The part every dialect shares: TPS cap, fault draw, per-recipient
 * rejections, ledger, delivery reports. rt is read-locked by the caller.
 * @returns the fault decided (SIM_FAULT_NONE: answer each dest by outcome;
 * a timeout that accepts also has outcomes, and r->drop set).
 */
static sim_fault_kind_t submit(sim_t *sim, const runtime_t *rt, sim_dialect_t d, dest_t *dests,
                               size_t n, reply_t *r)
{
    const dialect_rt_t *x = &rt->d[d];
    sim_fault_decision_t fd;
    int64_t now_ms = nudgel_now_unix_ms();

    sim_ledger_count(sim->ledger, d, SIM_C_MESSAGES, n);
    sim_fault_decide(&x->fault, sim_rng_thread(), &fd);
    if (x->tps_limit > 0) {
        bucket_slot_t *b = &sim->buckets[d];
        pthread_mutex_lock(&b->lock);
        bool allowed = sim_bucket_take(&b->bucket, nudgel_mono_us());
        pthread_mutex_unlock(&b->lock);
        if (!allowed) {
            fd.kind = SIM_FAULT_THROTTLED;
            fd.status = 429;
            fd.retry_after_s = 1;
        }
    }
    r->delay_ms = fd.delay_ms;
    switch (fd.kind) {
    case SIM_FAULT_NONE:
        break;
    case SIM_FAULT_THROTTLED:
    case SIM_FAULT_5XX:
    case SIM_FAULT_429:
        sim_ledger_count(sim->ledger, d,
                         fd.kind == SIM_FAULT_5XX   ? SIM_C_FAULT_5XX
                         : fd.kind == SIM_FAULT_429 ? SIM_C_FAULT_429
                                                    : SIM_C_FAULT_THROTTLED,
                         1);
        for (size_t i = 0; i < n; i++)
            sim_ledger_fault(sim->ledger, d, dests[i].key, dests[i].number, now_ms);
        r->status = (unsigned)fd.status;
        r->retry_after_s = fd.kind == SIM_FAULT_5XX ? -1 : fd.retry_after_s;
        r->fault = sim_fault_kind_name(fd.kind);
        return fd.kind;
    case SIM_FAULT_TIMEOUT:
        sim_ledger_count(sim->ledger, d, SIM_C_FAULT_TIMEOUT, 1);
        r->drop = true;
        r->fault = "timeout";
        if (!x->fault.timeout_accepts) {
            for (size_t i = 0; i < n; i++)
                sim_ledger_fault(sim->ledger, d, dests[i].key, dests[i].number, now_ms);
            return fd.kind;
        }
        break;
    }

    for (size_t i = 0; i < n; i++) {
        dest_t *dst = &dests[i];
        if (!dst->number_ok || (x->has_reject && regexec(&x->reject, dst->number, 0, NULL, 0) == 0))
            dst->outcome = OUT_INVALID;
        else if (x->has_blacklist && regexec(&x->blacklist, dst->number, 0, NULL, 0) == 0)
            dst->outcome = OUT_BLACKLISTED;
        else
            dst->outcome = OUT_ACCEPTED;
        if (dst->outcome != OUT_ACCEPTED) {
            sim_ledger_count(sim->ledger, d, SIM_C_REJECTED, 1);
            continue;
        }
        sim_accept_result_t res;
        sim_ledger_accept(sim->ledger, d, dst->key, dst->number, dst->message_id, dst->idempotent,
                          now_ms, &res);
        dst->count = res.count;
        if (dst->idempotent && res.message_id[0])
            snprintf(dst->message_id, sizeof(dst->message_id), "%s", res.message_id);
        /* An idempotent repeat is not a second SMS, so it gets no second report. */
        if (rt->dlr_enabled && sim->dlr && (!dst->idempotent || res.count <= 1))
            dlr_schedule(sim, rt, d, dst, fd.delay_ms);
    }
    return fd.kind;
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Whether the credentials fit: @p given after @p scheme ("App ", "Bearer ", or "" for raw). */
static bool authorised(const dialect_rt_t *x, const char *given, const char *scheme)
{
    if (!x->api_key[0])
        return true;
    if (!given)
        return false;
    size_t n = strlen(scheme);
    if (n && strncasecmp(given, scheme, n) != 0)
        return false;
    return sim_secret_equal(given + n, x->api_key);
}

static const char *recipient_status_at(int outcome, int *code)
{
    switch (outcome) {
    case OUT_INVALID:
        *code = 403;
        return "InvalidPhoneNumber";
    case OUT_BLACKLISTED:
        *code = 406;
        return "UserInBlacklist";
    default:
        *code = 101;
        return "Success";
    }
}

/* POST /at/version1/messaging — form body, apiKey header, 201 SMSMessageData. */
static void handle_at(sim_t *sim, const runtime_t *rt, struct MHD_Connection *c, req_t *rq,
                      reply_t *r)
{
    const dialect_rt_t *x = &rt->d[SIM_DIALECT_AT];
    sim_form_t form;
    dest_t *dests = NULL;
    size_t n = 0;

    if (!authorised(x, header(c, "apiKey"), "")) {
        sim_ledger_count(sim->ledger, SIM_DIALECT_AT, SIM_C_UNAUTHORIZED, 1);
        reply_text(r, 401, "The supplied authentication is invalid");
        return;
    }
    int rc = sim_form_parse(rq->body.data ? rq->body.data : "", rq->body.len, &form);
    const char *username = sim_form_get(&form, "username");
    const char *to = sim_form_get(&form, "to");
    const char *message = sim_form_get(&form, "message");
    if (rc != 0 || !username || !*username || !to || !*to || !message) {
        sim_ledger_count(sim->ledger, SIM_DIALECT_AT, SIM_C_BAD_REQUEST, 1);
        reply_text(r, 400,
                   rc != 0                     ? "Too many fields"
                   : (!username || !*username) ? "Missing username"
                   : (!to || !*to)             ? "Missing recipients (to)"
                                               : "Missing message");
        goto out;
    }
    if (rt->at_username[0] && strcmp(username, rt->at_username) != 0) {
        sim_ledger_count(sim->ledger, SIM_DIALECT_AT, SIM_C_UNAUTHORIZED, 1);
        reply_text(r, 401, "The supplied authentication is invalid");
        goto out;
    }
    size_t cap = 1;
    for (const char *p = to; *p; p++)
        cap += *p == ',';
    if (cap > MAX_RECIPIENTS || !(dests = calloc(cap, sizeof(*dests)))) {
        sim_ledger_count(sim->ledger, SIM_DIALECT_AT, SIM_C_BAD_REQUEST, 1);
        reply_text(r, 400, "Too many recipients");
        goto out;
    }
    char sha[65];
    size_t message_len = strlen(message);
    sim_sha256_hex(message, message_len, sha);
    for (char *p = (char *)to; p;) { /* form storage is ours to cut */
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        while (*p == ' ')
            p++;
        if (*p) {
            dest_t *dst = &dests[n++];
            dst->to = p;
            dst->text = message;
            dst->text_len = message_len;
            sim_random_id(sim_rng_thread(), "ATXid_", 32, dst->message_id, sizeof(dst->message_id));
            dest_prepare(dst, sha);
        }
        p = comma ? comma + 1 : NULL;
    }

    if (submit(sim, rt, SIM_DIALECT_AT, dests, n, r) != SIM_FAULT_NONE && !r->drop) {
        reply_text(r, r->status, r->status == 429 ? "Too Many Requests" : "Internal Server Error");
        goto out;
    }
    json_t *recipients = json_array();
    size_t sent = 0;
    double total = 0;
    const char *currency = NULL;
    for (size_t i = 0; i < n; i++) {
        int code;
        const char *status = recipient_status_at(dests[i].outcome, &code);
        char cost[48] = "0";
        if (dests[i].outcome == OUT_ACCEPTED) {
            double price = sim_number_price(dests[i].number) * dests[i].segments;
            snprintf(cost, sizeof(cost), "%s %.4f", sim_number_currency(dests[i].number), price);
            if (!currency)
                currency = sim_number_currency(dests[i].number);
            if (strcmp(currency, sim_number_currency(dests[i].number)) == 0)
                total += price; /* the summary is in the first recipient's currency */
            sent++;
        }
        json_array_append_new(
            recipients, json_pack("{s:i, s:s, s:s, s:s, s:s}", "statusCode", code, "number",
                                  dests[i].number, "cost", cost, "status", status, "messageId",
                                  dests[i].outcome == OUT_ACCEPTED ? dests[i].message_id : "None"));
    }
    char summary[160];
    if (currency)
        snprintf(summary, sizeof(summary), "Sent to %zu/%zu Total Cost: %s %.4f", sent, n, currency,
                 total);
    else
        snprintf(summary, sizeof(summary), "Sent to 0/%zu Total Cost: 0", n);
    reply_json(r, 201,
               json_pack("{s:{s:s, s:o}}", "SMSMessageData", "Message", summary, "Recipients",
                         recipients));
out:
    free(dests);
    sim_form_free(&form);
}

static json_t *infobip_error(const char *id, const char *text)
{
    return json_pack("{s:{s:{s:s, s:s}}}", "requestError", "serviceException", "messageId", id,
                     "text", text);
}

/* POST /infobip/sms/2/text/advanced — JSON, Authorization: App <key>, 200 with PENDING. */
static void handle_infobip(sim_t *sim, const runtime_t *rt, struct MHD_Connection *c, req_t *rq,
                           reply_t *r)
{
    const dialect_rt_t *x = &rt->d[SIM_DIALECT_INFOBIP];
    json_error_t jerr;
    json_t *root = NULL, *messages, *msg, *dst_json;
    dest_t *dests = NULL;
    char(*shas)[65] = NULL;
    size_t n = 0, i, j;
    char bulk_id[64];
    const char *why = NULL;

    if (!authorised(x, header(c, MHD_HTTP_HEADER_AUTHORIZATION), "App ")) {
        sim_ledger_count(sim->ledger, SIM_DIALECT_INFOBIP, SIM_C_UNAUTHORIZED, 1);
        reply_json(r, 401, infobip_error("UNAUTHORIZED", "Invalid login details"));
        return;
    }
    root = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, 0, &jerr);
    messages = root ? json_object_get(root, "messages") : NULL;
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        why = "messages: expected a non-empty array";
        goto bad;
    }
    json_array_foreach(messages, i, msg)
    {
        json_t *dsts = json_object_get(msg, "destinations");
        if (!json_is_array(dsts) || json_array_size(dsts) == 0) {
            why = "destinations: expected a non-empty array";
            goto bad;
        }
        n += json_array_size(dsts);
    }
    if (n > MAX_RECIPIENTS) {
        why = "too many destinations";
        goto bad;
    }
    dests = calloc(n, sizeof(*dests));
    shas = calloc(json_array_size(messages), sizeof(*shas));
    if (!dests || !shas) {
        why = "out of memory";
        goto bad;
    }
    const char *given_bulk = json_string_value(json_object_get(root, "bulkId"));
    if (given_bulk)
        snprintf(bulk_id, sizeof(bulk_id), "%s", given_bulk);
    else
        sim_random_id(sim_rng_thread(), "", 32, bulk_id, sizeof(bulk_id));
    n = 0;
    json_array_foreach(messages, i, msg)
    {
        const char *text = json_string_value(json_object_get(msg, "text"));
        size_t text_len = text ? strlen(text) : 0;
        sim_sha256_hex(text ? text : "", text_len, shas[i]);
        json_array_foreach(json_object_get(msg, "destinations"), j, dst_json)
        {
            dest_t *dst = &dests[n++];
            const char *to = json_string_value(json_object_get(dst_json, "to"));
            const char *ref = json_string_value(json_object_get(dst_json, "messageId"));
            if (!to) {
                why = "destinations[].to: expected a string";
                goto bad;
            }
            dst->to = to;
            dst->text = text;
            dst->text_len = text_len;
            dst->bulk_id = bulk_id;
            dst->dlr_url = json_string_value(json_object_get(msg, "notifyUrl"));
            dst->callback_data = json_string_value(json_object_get(msg, "callbackData"));
            if (ref && *ref) {
                snprintf(dst->message_id, sizeof(dst->message_id), "%s", ref);
                snprintf(dst->key, sizeof(dst->key), "%s", ref);
                dst->client_ref = ref;
                dst->idempotent = true;
            } else {
                sim_random_id(sim_rng_thread(), "", 32, dst->message_id, sizeof(dst->message_id));
                snprintf(dst->key, sizeof(dst->key), "%s", dst->message_id);
            }
            dest_prepare(dst, shas[i]);
        }
    }

    if (submit(sim, rt, SIM_DIALECT_INFOBIP, dests, n, r) != SIM_FAULT_NONE && !r->drop) {
        reply_json(r, r->status,
                   r->status == 429 ? infobip_error("TOO_MANY_REQUESTS", "Too many requests")
                                    : infobip_error("GENERAL_ERROR", "Something went wrong"));
        goto out;
    }
    json_t *out_msgs = json_array();
    for (i = 0; i < n; i++) {
        json_t *status;
        switch (dests[i].outcome) {
        case OUT_INVALID:
            status = json_pack("{s:i,s:s,s:i,s:s,s:s}", "groupId", 5, "groupName", "REJECTED", "id",
                               52, "name", "REJECTED_DESTINATION", "description",
                               "Invalid destination address");
            break;
        case OUT_BLACKLISTED:
            status = json_pack("{s:i,s:s,s:i,s:s,s:s}", "groupId", 5, "groupName", "REJECTED", "id",
                               87, "name", "REJECTED_DESTINATION_BLOCKLISTED", "description",
                               "Destination is on a blocklist");
            break;
        default:
            status = json_pack("{s:i,s:s,s:i,s:s,s:s}", "groupId", 1, "groupName", "PENDING", "id",
                               26, "name", "PENDING_ACCEPTED", "description",
                               "Message sent to next instance");
            break;
        }
        json_array_append_new(
            out_msgs, json_pack("{s:s, s:o, s:s, s:i}", "to", dests[i].to, "status", status,
                                "messageId", dests[i].message_id, "smsCount", dests[i].segments));
    }
    reply_json(r, 200, json_pack("{s:s, s:o}", "bulkId", bulk_id, "messages", out_msgs));
    goto out;
bad:
    sim_ledger_count(sim->ledger, SIM_DIALECT_INFOBIP, SIM_C_BAD_REQUEST, 1);
    reply_json(r, 400, infobip_error("BAD_REQUEST", root ? why : "Invalid JSON"));
out:
    free(dests);
    free(shas);
    json_decref(root);
}

static json_t *generic_error(const char *code, const char *message, bool permanent)
{
    return json_pack("{s:{s:s, s:s, s:b}}", "error", "code", code, "message", message, "permanent",
                     permanent);
}

/* POST /generic/messages — JSON, Authorization: Bearer <key>, 202 accepted. */
static void handle_generic(sim_t *sim, const runtime_t *rt, struct MHD_Connection *c, req_t *rq,
                           reply_t *r)
{
    const dialect_rt_t *x = &rt->d[SIM_DIALECT_GENERIC];
    json_error_t jerr;
    json_t *root = NULL;
    dest_t dst;
    char sha[65];

    if (!authorised(x, header(c, MHD_HTTP_HEADER_AUTHORIZATION), "Bearer ")) {
        sim_ledger_count(sim->ledger, SIM_DIALECT_GENERIC, SIM_C_UNAUTHORIZED, 1);
        reply_json(r, 401, generic_error("unauthorized", "invalid API key", true));
        return;
    }
    root = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, 0, &jerr);
    const char *to = json_string_value(json_object_get(root, "to"));
    const char *text = json_string_value(json_object_get(root, "text"));
    const char *ref = json_string_value(json_object_get(root, "client_ref"));
    if (!json_is_object(root) || !to || !text) {
        sim_ledger_count(sim->ledger, SIM_DIALECT_GENERIC, SIM_C_BAD_REQUEST, 1);
        reply_json(r, 400,
                   generic_error("bad_request",
                                 !json_is_object(root) ? "body is not a JSON object"
                                 : !to                 ? "to is required"
                                                       : "text is required",
                                 true));
        goto out;
    }
    memset(&dst, 0, sizeof(dst));
    dst.to = to;
    dst.text = text;
    dst.text_len = strlen(text);
    dst.client_ref = ref;
    dst.dlr_url = json_string_value(json_object_get(root, "callback_url"));
    sim_random_id(sim_rng_thread(), "gen_", 24, dst.message_id, sizeof(dst.message_id));
    if (ref && *ref) {
        snprintf(dst.key, sizeof(dst.key), "%s", ref);
        dst.idempotent = true;
    }
    sim_sha256_hex(text, dst.text_len, sha);
    dest_prepare(&dst, sha);

    if (submit(sim, rt, SIM_DIALECT_GENERIC, &dst, 1, r) != SIM_FAULT_NONE && !r->drop) {
        reply_json(r, r->status,
                   r->status == 429 ? generic_error("rate_limited", "too many requests", false)
                                    : generic_error("server_error", "temporary failure", false));
        goto out;
    }
    switch (dst.outcome) {
    case OUT_INVALID:
        reply_json(r, 400,
                   generic_error("invalid_number", "the destination is not a valid number", true));
        break;
    case OUT_BLACKLISTED:
        reply_json(r, 400, generic_error("blacklisted", "the destination has opted out", true));
        break;
    default:
        reply_json(r, 202,
                   json_pack("{s:s, s:s, s:i, s:s}", "id", dst.message_id, "status", "accepted",
                             "segments", dst.segments, "encoding",
                             dst.encoding == SIM_ENC_GSM7 ? "GSM-7" : "UCS-2"));
        break;
    }
out:
    json_decref(root);
}

static const char *query_arg(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

/* GET /kannel/send?to=&text=&from=&dlr-url= — Kannel's generic HTTP SMSC. */
static void handle_kannel(sim_t *sim, const runtime_t *rt, struct MHD_Connection *c, reply_t *r)
{
    const dialect_rt_t *x = &rt->d[SIM_DIALECT_KANNEL];
    dest_t dst;
    char sha[65];

    if (!authorised(x, query_arg(c, "key"), "")) {
        sim_ledger_count(sim->ledger, SIM_DIALECT_KANNEL, SIM_C_UNAUTHORIZED, 1);
        reply_text(r, 401, "fail: unauthorized");
        return;
    }
    const char *to = query_arg(c, "to");
    const char *text = query_arg(c, "text");
    if (!to || !*to || !text) {
        sim_ledger_count(sim->ledger, SIM_DIALECT_KANNEL, SIM_C_BAD_REQUEST, 1);
        reply_text(r, 400, !to || !*to ? "fail: missing to" : "fail: missing text");
        return;
    }
    memset(&dst, 0, sizeof(dst));
    dst.to = to;
    dst.text = text;
    dst.text_len = strlen(text);
    dst.dlr_url = query_arg(c, "dlr-url");
    sim_random_id(sim_rng_thread(), "", 20, dst.message_id, sizeof(dst.message_id));
    sim_sha256_hex(text, dst.text_len, sha);
    dest_prepare(&dst, sha);

    if (submit(sim, rt, SIM_DIALECT_KANNEL, &dst, 1, r) != SIM_FAULT_NONE && !r->drop) {
        reply_text(r, r->status,
                   r->status == 429 ? "retry: throttled" : "retry: temporary failure");
        return;
    }
    switch (dst.outcome) {
    case OUT_INVALID:
        reply_text(r, 400, "fail: invalid number");
        break;
    case OUT_BLACKLISTED:
        reply_text(r, 400, "fail: blacklisted number");
        break;
    default: {
        char body[128];
        snprintf(body, sizeof(body), "ok id:%s", dst.message_id);
        reply_text(r, 200, body);
        break;
    }
    }
}

/* --------------------------------------------------------- ledger, admin */

static void handle_ledger(sim_t *sim, const runtime_t *rt, struct MHD_Connection *c, reply_t *r)
{
    const char *summary = query_arg(c, "summary");
    const char *key = query_arg(c, "key");
    const char *limit_text = query_arg(c, "limit");
    size_t limit = rt->list_limit;
    if (limit_text) {
        char *end;
        unsigned long long v = strtoull(limit_text, &end, 10);
        if (*end == '\0')
            limit = (size_t)v;
    }
    bool only_summary = summary && (strcmp(summary, "1") == 0 || strcmp(summary, "true") == 0);
    /* Pending first, then the counters: a report is counted sent or failed before it stops
     * being pending, so a reader that sees dlr_pending 0 sees every report's count. */
    size_t dlr_pending = sim->dlr ? sim_dlr_pending(sim->dlr) : 0;
    json_t *json = sim_ledger_json(sim->ledger, only_summary, key, limit);
    if (json && sim->dlr)
        json_object_set_new(json_object_get(json, "totals"), "dlr_pending",
                            json_integer((json_int_t)dlr_pending));
    reply_json(r, 200, json);
}

static bool key_is_static(const char *key)
{
    for (size_t i = 0; static_keys[i]; i++)
        if (strcmp(static_keys[i], key) == 0)
            return true;
    return false;
}

static bool key_is_sensitive(const char *key)
{
    for (const nudgel_conf_entry_t *e = sim_table; e->name; e++)
        if (strcmp(e->name, key) == 0)
            return (e->flags & NUDGEL_CONF_SENSITIVE) != 0;
    return false;
}

/* GET /admin/config: the simulator's keys and values, secrets redacted. */
static json_t *config_json(sim_t *sim)
{
    json_t *out = json_object();
    pthread_mutex_lock(&sim->conf_lock);
    for (const nudgel_conf_entry_t *e = sim_table; e->name; e++) {
        const char *v = nudgel_conf_get_str(sim->conf, e->name);
        json_t *value;
        if (e->flags & NUDGEL_CONF_SENSITIVE)
            value = json_string(v && *v ? "[redacted]" : "");
        else if (e->type == NUDGEL_CONF_INT)
            value = json_integer((json_int_t)nudgel_conf_get_int(sim->conf, e->name));
        else if (e->type == NUDGEL_CONF_BOOL)
            value = json_boolean(nudgel_conf_get_bool(sim->conf, e->name));
        else
            value = json_string(v ? v : "");
        json_object_set_new(out, e->name, value);
    }
    pthread_mutex_unlock(&sim->conf_lock);
    return out;
}

/* Flattens {"sim":{"at":{"latency_ms":5}}} into ("sim.at.latency_ms", "5") pairs. */
static int flatten(json_t *obj, const char *prefix, char keys[][128], char values[][1024],
                   size_t *count, size_t max, char *errstr, size_t errstr_size)
{
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v)
    {
        char key[128];
        snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", name);
        if (json_is_object(v)) {
            if (flatten(v, key, keys, values, count, max, errstr, errstr_size) != 0)
                return -1;
            continue;
        }
        if (*count == max) {
            snprintf(errstr, errstr_size, "more than %zu keys", max);
            return -1;
        }
        switch (json_typeof(v)) {
        case JSON_STRING:
            snprintf(values[*count], 1024, "%s", json_string_value(v));
            break;
        case JSON_INTEGER:
            snprintf(values[*count], 1024, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            break;
        case JSON_REAL:
            snprintf(values[*count], 1024, "%.0f", json_real_value(v));
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            snprintf(values[*count], 1024, "%s", json_is_true(v) ? "true" : "false");
            break;
        case JSON_NULL:
        case JSON_ARRAY:
        case JSON_OBJECT:
            snprintf(errstr, errstr_size, "%s: expected a string, number or boolean", key);
            return -1;
        }
        snprintf(keys[(*count)++], 128, "%s", key);
    }
    return 0;
}

#define ADMIN_MAX_KEYS 128

/*
 * POST /admin/config: applies every key or none. Values are checked by the
 * table, then the whole runtime is rebuilt (regexes compiled, shares summed)
 * before anything is swapped in; on any failure the old values are put back.
 */
static void handle_admin_config(sim_t *sim, req_t *rq, reply_t *r)
{
    static char keys[ADMIN_MAX_KEYS][128];
    static char values[ADMIN_MAX_KEYS][1024];
    static char *old_values[ADMIN_MAX_KEYS];
    char errstr[512] = "";
    size_t count = 0, applied = 0;
    json_error_t jerr;
    json_t *root = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, 0, &jerr);
    runtime_t *rt = NULL;

    pthread_mutex_lock(&sim->conf_lock); /* also guards the static scratch arrays */
    if (!json_is_object(root)) {
        snprintf(errstr, sizeof(errstr), "the body must be a JSON object of configuration keys");
        goto fail;
    }
    if (flatten(root, "", keys, values, &count, ADMIN_MAX_KEYS, errstr, sizeof(errstr)) != 0)
        goto fail;
    for (size_t i = 0; i < count; i++) {
        if (strncmp(keys[i], "sim.", 4) != 0 || key_is_static(keys[i])) {
            snprintf(errstr, sizeof(errstr), "%s: cannot be changed at run time", keys[i]);
            goto fail;
        }
        const char *old = nudgel_conf_get_str(sim->conf, keys[i]);
        old_values[i] = old ? strdup(old) : NULL;
        if (nudgel_conf_set(sim->conf, keys[i], values[i], NUDGEL_CONF_FROM_FLAG, errstr,
                            sizeof(errstr)) != NUDGEL_OK) {
            free(old_values[i]);
            goto fail;
        }
        applied++;
    }
    rt = runtime_build(sim->conf, errstr, sizeof(errstr));
    if (!rt)
        goto fail;
    runtime_install(sim, rt);
    json_t *changed = json_object();
    for (size_t i = 0; i < count; i++) {
        bool secret = key_is_sensitive(keys[i]);
        json_object_set_new(changed, keys[i], json_string(secret ? "[redacted]" : values[i]));
        nudgel_log_info("config %s = %s (POST /admin/config)", keys[i],
                        secret ? "[redacted]" : values[i]);
        free(old_values[i]);
    }
    pthread_mutex_unlock(&sim->conf_lock);
    reply_json(r, 200, json_pack("{s:o}", "applied", changed));
    json_decref(root);
    return;
fail:
    for (size_t i = applied; i-- > 0;) {
        char ignored[64];
        if (old_values[i])
            nudgel_conf_set(sim->conf, keys[i], old_values[i], NUDGEL_CONF_FROM_FLAG, ignored,
                            sizeof(ignored));
        free(old_values[i]);
    }
    pthread_mutex_unlock(&sim->conf_lock);
    nudgel_log_warn("POST /admin/config refused: %s", errstr);
    reply_json(r, 400, json_pack("{s:s}", "error", errstr));
    json_decref(root);
}

/* ------------------------------------------------------------------ routing */

static enum MHD_Result queue_reply(struct MHD_Connection *c, reply_t *r)
{
    struct MHD_Response *resp = reply_response(r);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(c, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Fills @p r for a complete request. @returns the dialect served, or SIM_DIALECT_COUNT. */
/*
 * The carriers' account reads, which nudgel-messages sends as a credential
 * probe (--check-config=connect, messages.startup_probe): Africa's Talking
 * GET /version1/user?username=U (200 {"UserData":{"balance":"KES ..."}}),
 * Infobip GET /account/1/balance (200 {"balance":..,"currency":..}). A wrong
 * key (or AT username) is 401 as on a send. Neither counts in the ledger
 * nor meets a fault: they send no message.
 */
static void handle_probe(const runtime_t *rt, struct MHD_Connection *c, sim_dialect_t d, reply_t *r)
{
    const dialect_rt_t *x = &rt->d[d];
    if (d == SIM_DIALECT_AT) {
        const char *user = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "username");
        if (!authorised(x, header(c, "apiKey"), "") || !user || !*user ||
            (rt->at_username[0] && strcmp(user, rt->at_username) != 0))
            reply_text(r, 401, "The supplied authentication is invalid");
        else
            reply_json(r, 200, json_pack("{s:{s:s}}", "UserData", "balance", "KES 1785.5000"));
        return;
    }
    if (!authorised(x, header(c, "Authorization"), "App "))
        reply_json(r, 401, infobip_error("UNAUTHORIZED", "Invalid login details"));
    else
        reply_json(r, 200, json_pack("{s:f,s:s}", "balance", 47.79134, "currency", "EUR"));
}

static sim_dialect_t route(sim_t *sim, struct MHD_Connection *c, const char *url,
                           const char *method, req_t *rq, reply_t *r)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;
    sim_dialect_t d = SIM_DIALECT_COUNT;

    if (strcmp(url, "/healthz") == 0) {
        reply_text(r, 200, "ok");
        return d;
    }
    pthread_rwlock_rdlock(&sim->rt_lock);
    const runtime_t *rt = sim->rt;
    if (rq->body.overflow) {
        reply_text(r, 413, "request body too large");
    } else if (strcmp(url, "/at/version1/messaging") == 0 && post) {
        d = SIM_DIALECT_AT;
    } else if (strcmp(url, "/infobip/sms/2/text/advanced") == 0 && post) {
        d = SIM_DIALECT_INFOBIP;
    } else if (strcmp(url, "/generic/messages") == 0 && post) {
        d = SIM_DIALECT_GENERIC;
    } else if (strcmp(url, "/kannel/send") == 0 && (get || post)) {
        d = SIM_DIALECT_KANNEL;
    } else if (strcmp(url, "/at/version1/user") == 0 && get) {
        handle_probe(rt, c, SIM_DIALECT_AT, r);
    } else if (strcmp(url, "/infobip/account/1/balance") == 0 && get) {
        handle_probe(rt, c, SIM_DIALECT_INFOBIP, r);
    } else if (strcmp(url, "/ledger") == 0 && get) {
        handle_ledger(sim, rt, c, r);
    } else if (strcmp(url, "/ledger/reset") == 0 && post) {
        sim_ledger_reset(sim->ledger);
        nudgel_log_info("ledger reset");
        reply_json(r, 200, json_pack("{s:b}", "reset", 1));
    } else if (strcmp(url, "/admin/config") == 0 && get) {
        pthread_rwlock_unlock(&sim->rt_lock); /* conf_lock is never taken under rt_lock */
        reply_json(r, 200, config_json(sim));
        return d;
    } else if (strcmp(url, "/admin/config") == 0 && post) {
        pthread_rwlock_unlock(&sim->rt_lock); /* the change takes the write lock */
        handle_admin_config(sim, rq, r);
        return d;
    } else if (strcmp(url, "/at/version1/messaging") == 0 ||
               strcmp(url, "/infobip/sms/2/text/advanced") == 0 ||
               strcmp(url, "/generic/messages") == 0 || strcmp(url, "/ledger") == 0 ||
               strcmp(url, "/ledger/reset") == 0 || strcmp(url, "/admin/config") == 0) {
        reply_text(r, 405, "method not allowed");
    } else {
        reply_text(r, 404, "not found");
    }
    if (d != SIM_DIALECT_COUNT) {
        sim_ledger_count(sim->ledger, d, SIM_C_REQUESTS, 1);
        switch (d) {
        case SIM_DIALECT_AT:
            handle_at(sim, rt, c, rq, r);
            break;
        case SIM_DIALECT_INFOBIP:
            handle_infobip(sim, rt, c, rq, r);
            break;
        case SIM_DIALECT_GENERIC:
            handle_generic(sim, rt, c, rq, r);
            break;
        case SIM_DIALECT_KANNEL:
            handle_kannel(sim, rt, c, r);
            break;
        case SIM_DIALECT_COUNT:
            break;
        }
    }
    pthread_rwlock_unlock(&sim->rt_lock);
    return d;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    sim_t *sim = cls;
    req_t *rq = *req_cls;
    (void)version;

    if (!rq) {
        if (!(rq = calloc(1, sizeof(*rq))))
            return MHD_NO;
        pthread_rwlock_rdlock(&sim->rt_lock);
        sim_buf_init(&rq->body, sim->rt->max_body);
        pthread_rwlock_unlock(&sim->rt_lock);
        rq->state = REQ_READING;
        *req_cls = rq;
        return MHD_YES;
    }
    if (rq->state == REQ_READY) { /* back from the timer */
        if (rq->held) {
            rq->held = false;
            atomic_fetch_sub(&sim->suspended, 1);
        }
        if (rq->drop || !rq->response)
            return MHD_NO;
        enum MHD_Result ret = MHD_queue_response(c, rq->status, rq->response);
        MHD_destroy_response(rq->response);
        rq->response = NULL;
        return ret;
    }
    if (*upload_data_size) {
        sim_buf_append(&rq->body, upload_data, *upload_data_size); /* over the cap: 413 later */
        *upload_data_size = 0;
        return MHD_YES;
    }

    reply_t r;
    reply_init(&r);
    sim_dialect_t d = route(sim, c, url, method, rq, &r);
    if (d != SIM_DIALECT_COUNT)
        nudgel_log_debug("%s %s %s -> %u%s%s (delay %d ms)", sim_dialect_name(d), method, url,
                         r.status, r.fault ? " fault " : "", r.fault ? r.fault : "", r.delay_ms);
    enum MHD_Result ret;
    if ((r.delay_ms > 0 || r.drop) && !atomic_load(&sim->stopping)) {
        rq->drop = r.drop;
        rq->status = r.status;
        rq->response = r.drop ? NULL : reply_response(&r);
        rq->state = REQ_WAITING;
        rq->held = true;
        atomic_fetch_add(&sim->suspended, 1);
        MHD_suspend_connection(c);
        if (timer_add(sim, nudgel_mono_us() + (int64_t)r.delay_ms * 1000, c, rq) != 0) {
            rq->state = REQ_READY;
            MHD_resume_connection(c);
        }
        ret = MHD_YES;
    } else if (r.drop) {
        ret = MHD_NO;
    } else {
        ret = queue_reply(c, &r);
    }
    sim_buf_free(&r.body);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    sim_t *sim = cls;
    req_t *rq = *req_cls;
    (void)c;
    (void)toe;
    if (!rq)
        return;
    if (rq->held) /* the client left while we held it */
        atomic_fetch_sub(&sim->suspended, 1);
    if (rq->response)
        MHD_destroy_response(rq->response);
    sim_buf_free(&rq->body);
    free(rq);
    *req_cls = NULL;
}

/* Decodes query arguments the way Kannel and browsers encode them ('+' is a space). */
static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return sim_url_decode(s, strlen(s));
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    nudgel_log_warn("microhttpd: %s", line);
}

/* -------------------------------------------------------------------- main */

static void usage(FILE *out)
{
    fprintf(out, "usage: " PROGRAM " [options]\n"
                 "\n"
                 "A local sandbox SMS carrier: Africa's Talking, Infobip, generic JSON and Kannel\n"
                 "HTTP dialects with injectable latency, errors, 429s and timeouts, a ledger of\n"
                 "submissions and delivery-report callbacks. See tests/carrier-sim/README.md.\n"
                 "\n"
                 "  -p, --port N            TCP port (sim.port); 0 picks a free one\n"
                 "  -c, --config FILE       JSON config file (default: $NUDGEL_CONFIG)\n"
                 "  -s, --set KEY=VALUE     set any configuration key\n"
                 "      --print-config      print the effective configuration (secrets redacted)\n"
                 "      --print-config-doc  print the configuration reference (Markdown)\n"
                 "      --version           print the version\n"
                 "  -h, --help              this text\n"
                 "\n"
                 "Prints {\"listening\":PORT} on stdout once it accepts connections.\n"
                 "Exit status: 0 stopped by SIGTERM/SIGINT, 1 could not start, 2 usage or\n"
                 "configuration error.\n");
}

static int apply_flag_sets(nudgel_conf_t *conf, char **sets, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        char errstr[512];
        char *eq = strchr(sets[i], '=');
        if (!eq || eq == sets[i]) {
            fprintf(stderr, "%s: expected KEY=VALUE, got \"%s\"\n", PROGRAM, sets[i]);
            return -1;
        }
        *eq = '\0';
        nudgel_err_t err =
            nudgel_conf_set(conf, sets[i], eq + 1, NUDGEL_CONF_FROM_FLAG, errstr, sizeof(errstr));
        *eq = '=';
        if (err != NUDGEL_OK) {
            fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
            return -1;
        }
    }
    return 0;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static struct MHD_Daemon *start_daemon(sim_t *sim, int *port_out, char *errstr, size_t errstr_size)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)nudgel_conf_get_int(sim->conf, "sim.port"));
    if (inet_pton(AF_INET, nudgel_conf_get_str(sim->conf, "sim.listen_address"), &addr.sin_addr) !=
        1) {
        snprintf(errstr, errstr_size, "sim.listen_address: not an IPv4 address");
        return NULL;
    }
    unsigned threads = (unsigned)nudgel_conf_get_int(sim->conf, "sim.threads");
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, sim, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, sim,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)nudgel_conf_get_int(sim->conf, "sim.connection_limit"),
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)nudgel_conf_get_int(sim->conf, "sim.idle_timeout_s"), MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, sim, MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, sim,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u, MHD_OPTION_END);
    if (!daemon) {
        snprintf(errstr, errstr_size, "cannot listen on %s:%lld (port taken?)",
                 nudgel_conf_get_str(sim->conf, "sim.listen_address"),
                 nudgel_conf_get_int(sim->conf, "sim.port"));
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_in bound;
    socklen_t len = sizeof(bound);
    if (!info || getsockname(info->listen_fd, (struct sockaddr *)&bound, &len) != 0) {
        snprintf(errstr, errstr_size, "cannot read the listening port: %s", strerror(errno));
        MHD_stop_daemon(daemon);
        return NULL;
    }
    *port_out = ntohs(bound.sin_port);
    return daemon;
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, sim_table, NULL};
    enum { OPT_PRINT_CONFIG = 256, OPT_PRINT_DOC, OPT_VERSION };
    static const struct option options[] = {
        {"port", required_argument, NULL, 'p'},
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
        {"print-config-doc", no_argument, NULL, OPT_PRINT_DOC},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    sim_t sim;
    char errstr[512];
    char *flag_sets[MAX_FLAG_SETS];
    size_t flag_set_count = 0;
    const char *config_path = NULL, *port_flag = NULL;
    bool print_config = false, print_doc = false, timer_started = false, curl_ready = false;
    int opt, status = 2, port = 0;

    memset(&sim, 0, sizeof(sim));
    sim.conf = nudgel_conf_new(PROGRAM, tables);
    if (!sim.conf) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        return 2;
    }
    while ((opt = getopt_long(argc, argv, "p:c:s:h", options, NULL)) != -1) {
        switch (opt) {
        case 'p':
            port_flag = optarg;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 's':
            if (flag_set_count == MAX_FLAG_SETS) {
                fprintf(stderr, "%s: more than %d --set flags\n", PROGRAM, MAX_FLAG_SETS);
                goto out;
            }
            flag_sets[flag_set_count++] = optarg;
            break;
        case OPT_PRINT_CONFIG:
            print_config = true;
            break;
        case OPT_PRINT_DOC:
            print_doc = true;
            break;
        case 'h':
            usage(stdout);
            status = 0;
            goto out;
        case OPT_VERSION:
            printf("%s %s\n", PROGRAM, nudgel_version());
            status = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n", PROGRAM, argv[optind]);
        goto out;
    }
    if (print_doc) {
        nudgel_conf_print_doc(sim.conf, stdout);
        status = 0;
        goto out;
    }
    if (nudgel_conf_load(sim.conf, config_path, errstr, sizeof(errstr)) != NUDGEL_OK) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        goto out;
    }
    if (apply_flag_sets(sim.conf, flag_sets, flag_set_count) != 0)
        goto out;
    if (port_flag && nudgel_conf_set(sim.conf, "sim.port", port_flag, NUDGEL_CONF_FROM_FLAG, errstr,
                                     sizeof(errstr)) != NUDGEL_OK) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        goto out;
    }
    nudgel_log_level_t level = NUDGEL_LOG_INFO;
    nudgel_log_level_parse(nudgel_conf_get_str(sim.conf, "log.level"), &level);
    nudgel_log_init(PROGRAM, level);
    if (print_config) {
        nudgel_conf_print(sim.conf, stdout);
        status = 0;
        goto out;
    }
    runtime_t *rt = runtime_build(sim.conf, errstr, sizeof(errstr));
    if (!rt) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        goto out;
    }

    status = 1;
    pthread_mutex_init(&sim.conf_lock, NULL);
    pthread_rwlockattr_t rwattr;
    pthread_rwlockattr_init(&rwattr);
    /* Config changes must get through under full load. */
    pthread_rwlockattr_setkind_np(&rwattr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&sim.rt_lock, &rwattr);
    pthread_rwlockattr_destroy(&rwattr);
    for (int d = 0; d < SIM_DIALECT_COUNT; d++)
        pthread_mutex_init(&sim.buckets[d].lock, NULL);
    runtime_install(&sim, rt);
    pthread_mutex_init(&sim.timer_lock, NULL);
    pthread_condattr_t cattr;
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&sim.timer_cond, &cattr);
    pthread_condattr_destroy(&cattr);

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL); /* every thread started below inherits it */

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        nudgel_log_error("curl_global_init failed");
        goto out;
    }
    curl_ready = true;
    sim.ledger = sim_ledger_new((size_t)nudgel_conf_get_int(sim.conf, "sim.ledger.max_keys"));
    if (!sim.ledger) {
        nudgel_log_error("out of memory for the ledger");
        goto out;
    }
    sim.dlr = sim_dlr_start(sim.ledger, (size_t)nudgel_conf_get_int(sim.conf, "sim.dlr.queue_max"),
                            (int)nudgel_conf_get_int(sim.conf, "sim.dlr.concurrency"),
                            (int)nudgel_conf_get_int(sim.conf, "sim.dlr.timeout_ms"), errstr,
                            sizeof(errstr));
    if (!sim.dlr) {
        nudgel_log_error("%s", errstr);
        goto out;
    }
    pthread_rwlock_rdlock(&sim.rt_lock);
    sim_dlr_set_retry(sim.dlr, sim.rt->dlr_retries, sim.rt->dlr_retry_backoff_ms,
                      sim.rt->dlr_retry_backoff_max_ms);
    pthread_rwlock_unlock(&sim.rt_lock);
    if (pthread_create(&sim.timer_thread, NULL, timer_main, &sim) != 0) {
        nudgel_log_error("cannot start the timer thread");
        goto out;
    }
    timer_started = true;
    sim.daemon = start_daemon(&sim, &port, errstr, sizeof(errstr));
    if (!sim.daemon) {
        nudgel_log_error("%s", errstr);
        goto out;
    }
    printf("{\"listening\":%d}\n", port);
    fflush(stdout);
    nudgel_log_info("listening on %s:%d with %lld threads",
                    nudgel_conf_get_str(sim.conf, "sim.listen_address"), port,
                    nudgel_conf_get_int(sim.conf, "sim.threads"));

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {
    }
    nudgel_log_info("signal %d: stopping", sig);

    /* Answer (or drop) every held connection before MHD stops: it must not see suspended ones. */
    atomic_store(&sim.stopping, true);
    pthread_mutex_lock(&sim.timer_lock);
    pthread_cond_signal(&sim.timer_cond);
    pthread_mutex_unlock(&sim.timer_lock);
    int64_t give_up = nudgel_mono_us() + SHUTDOWN_DRAIN_US;
    while (atomic_load(&sim.suspended) > 0 && nudgel_mono_us() < give_up) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    status = 0;
out:
    if (sim.daemon)
        MHD_stop_daemon(sim.daemon);
    if (timer_started) {
        pthread_mutex_lock(&sim.timer_lock);
        sim.timer_stop = true;
        atomic_store(&sim.stopping, true);
        pthread_cond_signal(&sim.timer_cond);
        pthread_mutex_unlock(&sim.timer_lock);
        pthread_join(sim.timer_thread, NULL);
    }
    sim_dlr_stop(sim.dlr);
    sim_ledger_destroy(sim.ledger);
    runtime_free(sim.rt);
    if (curl_ready)
        curl_global_cleanup();
    free(sim.timer_heap);
    nudgel_conf_destroy(sim.conf);
    if (status == 0 && sim.daemon)
        nudgel_log_info("stopped");
    return status;
}
