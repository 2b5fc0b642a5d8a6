/*
 * sim_dlr.c — see sim_dlr.h.
 *
 * One thread owns the curl multi handle. The request threads only touch the
 * heap under its mutex and poke the thread with curl_multi_wakeup(), so the
 * loop reads top to bottom: move due reports into transfers, run the multi
 * handle, account finished transfers, sleep until the next due time.
 */
#define _GNU_SOURCE
#include "sim_dlr.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#define DLR_MAX_WAIT_MS 1000

struct sim_dlr_item {
    int64_t due_us;
    int attempts; /* sent so far */
    sim_dialect_t dialect;
    char *url;          /* owned */
    char *body;         /* owned; NULL for GET */
    char *content_type; /* owned; NULL for GET */
};

struct sim_dlr {
    sim_ledger_t *ledger;
    pthread_mutex_t lock;
    sim_dlr_item_t **heap; /* min-heap on due_us, capacity queue_max */
    size_t count, queue_max;
    int concurrency, timeout_ms, active;
    int retries, backoff_ms, backoff_max_ms; /* under lock */
    bool stopping;
    CURLM *multi;
    struct transfer *transfers; /* owned by the thread */
    pthread_t thread;
    bool thread_started;
};

sim_dlr_item_t *sim_dlr_item_new(sim_dialect_t d, int64_t due_us, const char *url,
                                 const char *content_type, const char *body)
{
    sim_dlr_item_t *item = calloc(1, sizeof(*item));
    if (!item)
        return NULL;
    item->dialect = d;
    item->due_us = due_us;
    item->url = strdup(url);
    item->body = body ? strdup(body) : NULL;
    item->content_type = content_type ? strdup(content_type) : NULL;
    if (!item->url || (body && !item->body) || (content_type && !item->content_type)) {
        sim_dlr_item_free(item);
        return NULL;
    }
    return item;
}

void sim_dlr_item_free(sim_dlr_item_t *item)
{
    if (!item)
        return;
    free(item->url);
    free(item->body);
    free(item->content_type);
    free(item);
}

static void heap_push(sim_dlr_t *q, sim_dlr_item_t *item)
{
    size_t i = q->count++;
    q->heap[i] = item;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (q->heap[parent]->due_us <= q->heap[i]->due_us)
            break;
        sim_dlr_item_t *tmp = q->heap[parent];
        q->heap[parent] = q->heap[i];
        q->heap[i] = tmp;
        i = parent;
    }
}

static sim_dlr_item_t *heap_pop(sim_dlr_t *q)
{
    sim_dlr_item_t *top = q->heap[0];
    q->heap[0] = q->heap[--q->count];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->count && q->heap[l]->due_us < q->heap[m]->due_us)
            m = l;
        if (r < q->count && q->heap[r]->due_us < q->heap[m]->due_us)
            m = r;
        if (m == i)
            break;
        sim_dlr_item_t *tmp = q->heap[m];
        q->heap[m] = q->heap[i];
        q->heap[i] = tmp;
        i = m;
    }
    return top;
}

typedef struct transfer {
    struct transfer *prev, *next; /* the thread's list of transfers in flight */
    CURL *easy;
    sim_dlr_item_t *item;
    struct curl_slist *headers;
} transfer_t;

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

static void start_transfer(sim_dlr_t *q, sim_dlr_item_t *item)
{
    transfer_t *t = calloc(1, sizeof(*t));
    CURL *easy = curl_easy_init();
    if (!t || !easy) {
        free(t);
        if (easy)
            curl_easy_cleanup(easy);
        sim_ledger_count(q->ledger, item->dialect, SIM_C_DLR_FAILED, 1);
        sim_dlr_item_free(item);
        return;
    }
    t->item = item;
    t->easy = easy;
    t->next = q->transfers;
    if (q->transfers)
        q->transfers->prev = t;
    q->transfers = t;
    curl_easy_setopt(easy, CURLOPT_URL, item->url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)q->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)q->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "nudgel-carrier-sim");
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (item->body) {
        char header[256];
        snprintf(header, sizeof(header), "Content-Type: %s", item->content_type);
        t->headers = curl_slist_append(NULL, header);
        t->headers = curl_slist_append(t->headers, "Expect:");
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, item->body);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)strlen(item->body));
    }
    curl_multi_add_handle(q->multi, easy);
    q->active++;
}

static void transfer_free(sim_dlr_t *q, transfer_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        q->transfers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    curl_multi_remove_handle(q->multi, t->easy);
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    sim_dlr_item_free(t->item);
    free(t);
}

int64_t sim_dlr_backoff_ms(int attempt, int backoff_ms, int backoff_max_ms)
{
    int64_t delay = backoff_ms;
    for (int i = 1; i < attempt && delay < backoff_max_ms; i++)
        delay *= 2;
    return delay < backoff_max_ms ? delay : backoff_max_ms;
}

void sim_dlr_set_retry(sim_dlr_t *q, int retries, int backoff_ms, int backoff_max_ms)
{
    pthread_mutex_lock(&q->lock);
    q->retries = retries;
    q->backoff_ms = backoff_ms;
    q->backoff_max_ms = backoff_max_ms;
    pthread_mutex_unlock(&q->lock);
}

/* Puts a failed report back in the queue for a later attempt; false when it has none left. */
static bool retry_later(sim_dlr_t *q, sim_dlr_item_t *item)
{
    bool queued = false;
    pthread_mutex_lock(&q->lock);
    if (!q->stopping && item->attempts <= q->retries && q->count < q->queue_max) {
        item->due_us = nudgel_mono_us() +
                       sim_dlr_backoff_ms(item->attempts, q->backoff_ms, q->backoff_max_ms) * 1000;
        heap_push(q, item);
        queued = true;
    }
    pthread_mutex_unlock(&q->lock);
    return queued;
}

static void finish_transfers(sim_dlr_t *q)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(q->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        transfer_t *t = NULL;
        long status = 0;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        bool ok = msg->data.result == CURLE_OK && status >= 200 && status < 300;
        sim_dialect_t d = t->item->dialect;
        t->item->attempts++;
        if (ok) {
            sim_ledger_count(q->ledger, d, SIM_C_DLR_SENT, 1);
        } else if (retry_later(q, t->item)) {
            t->item = NULL; /* back in the queue */
            sim_ledger_count(q->ledger, d, SIM_C_DLR_RETRIED, 1);
        } else {
            sim_ledger_count(q->ledger, d, SIM_C_DLR_FAILED, 1);
            nudgel_log_warn("dlr callback to %s failed for good: %s, status %ld",
                            sim_dialect_name(d), curl_easy_strerror(msg->data.result), status);
        }
        transfer_free(q, t);
        pthread_mutex_lock(&q->lock);
        q->active--;
        pthread_mutex_unlock(&q->lock);
    }
}

static void *dlr_thread(void *arg)
{
    sim_dlr_t *q = arg;
    for (;;) {
        int running = 0, wait_ms = DLR_MAX_WAIT_MS;
        int64_t now = nudgel_mono_us();
        pthread_mutex_lock(&q->lock);
        if (q->stopping) {
            pthread_mutex_unlock(&q->lock);
            break;
        }
        while (q->count > 0 && q->active < q->concurrency && q->heap[0]->due_us <= now)
            start_transfer(q, heap_pop(q));
        if (q->count > 0 && q->active < q->concurrency) {
            int64_t until = (q->heap[0]->due_us - now + 999) / 1000;
            wait_ms = until < wait_ms ? (int)(until > 0 ? until : 0) : wait_ms;
        }
        pthread_mutex_unlock(&q->lock);

        curl_multi_perform(q->multi, &running);
        finish_transfers(q);
        curl_multi_poll(q->multi, NULL, 0, wait_ms, NULL);
    }
    return NULL;
}

sim_dlr_t *sim_dlr_start(sim_ledger_t *ledger, size_t queue_max, int concurrency, int timeout_ms,
                         char *errstr, size_t errstr_size)
{
    sim_dlr_t *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    q->ledger = ledger;
    q->queue_max = queue_max;
    q->concurrency = concurrency;
    q->timeout_ms = timeout_ms;
    pthread_mutex_init(&q->lock, NULL);
    q->heap = calloc(queue_max ? queue_max : 1, sizeof(*q->heap));
    q->multi = curl_multi_init();
    if (!q->heap || !q->multi) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    curl_multi_setopt(q->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)concurrency);
    if (pthread_create(&q->thread, NULL, dlr_thread, q) != 0) {
        snprintf(errstr, errstr_size, "cannot start the DLR thread");
        goto fail;
    }
    q->thread_started = true;
    return q;
fail:
    sim_dlr_stop(q);
    return NULL;
}

int sim_dlr_enqueue(sim_dlr_t *q, sim_dlr_item_t *item)
{
    sim_dialect_t d = item->dialect;
    pthread_mutex_lock(&q->lock);
    if (q->stopping || q->count >= q->queue_max) {
        pthread_mutex_unlock(&q->lock);
        sim_dlr_item_free(item);
        sim_ledger_count(q->ledger, d, SIM_C_DLR_DROPPED, 1);
        return -1;
    }
    heap_push(q, item);
    pthread_mutex_unlock(&q->lock);
    sim_ledger_count(q->ledger, d, SIM_C_DLR_QUEUED, 1);
    curl_multi_wakeup(q->multi);
    return 0;
}

size_t sim_dlr_pending(sim_dlr_t *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->count + (size_t)q->active;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void sim_dlr_stop(sim_dlr_t *q)
{
    if (!q)
        return;
    if (q->thread_started) {
        pthread_mutex_lock(&q->lock);
        q->stopping = true;
        pthread_mutex_unlock(&q->lock);
        curl_multi_wakeup(q->multi);
        pthread_join(q->thread, NULL);
    }
    if (q->multi) {
        while (q->transfers)
            transfer_free(q, q->transfers);
        curl_multi_cleanup(q->multi);
    }
    while (q->heap && q->count > 0)
        sim_dlr_item_free(heap_pop(q));
    free(q->heap);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
