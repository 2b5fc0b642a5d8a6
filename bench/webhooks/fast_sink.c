/*
 * fast_sink.c — the benchmark's webhook receiver: libmicrohttpd on one epoll
 * thread, answers every POST 204 at once, counts requests, and for bodies
 * carrying "t":<unix ms> (the bench's jobs) records arrival minus t, the end
 * to end latency. GET /stats returns {"requests":N,"first_ms":..,"last_ms":..,
 * "latency_ms":{"count":..,"p50":..,"p99":..,"max":..}}; POST /reset clears.
 * Loopback only. Usage: fast_sink [port]; prints {"listening":PORT}.
 */
#define _GNU_SOURCE
#include <microhttpd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define MAX_SAMPLES 2000000

static atomic_long requests;
static atomic_llong first_ms, last_ms;
static long long *samples;
static atomic_long sample_count;
static volatile sig_atomic_t stop;

static long long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int cmp(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

typedef struct upload {
    long long t;
    int seen;
} upload_t;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *size, void **ptr)
{
    (void)cls, (void)version;
    if (strcmp(method, "GET") == 0 && strcmp(url, "/stats") == 0) {
        long n = atomic_load(&sample_count);
        if (n > MAX_SAMPLES)
            n = MAX_SAMPLES;
        long long *copy = malloc(sizeof(long long) * (size_t)(n ? n : 1));
        memcpy(copy, samples, sizeof(long long) * (size_t)n);
        qsort(copy, (size_t)n, sizeof(long long), cmp);
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"requests\":%ld,\"first_ms\":%lld,\"last_ms\":%lld,\"latency_ms\":{\"count\":"
                 "%ld,\"p50\":%lld,\"p99\":%lld,\"max\":%lld}}",
                 atomic_load(&requests), atomic_load(&first_ms), atomic_load(&last_ms), n,
                 n ? copy[n / 2] : 0, n ? copy[(n * 99) / 100] : 0, n ? copy[n - 1] : 0);
        free(copy);
        return reply(c, 200, body);
    }
    if (strcmp(method, "POST") == 0 && strcmp(url, "/reset") == 0) {
        atomic_store(&requests, 0);
        atomic_store(&sample_count, 0);
        atomic_store(&first_ms, 0);
        atomic_store(&last_ms, 0);
        return reply(c, 200, "{}");
    }
    upload_t *u = *ptr;
    if (!u) {
        u = calloc(1, sizeof(*u));
        *ptr = u;
        return MHD_YES;
    }
    if (*size) {
        if (!u->seen) {
            const char *p = memmem(data, *size, "\"t\":", 4);
            if (p) {
                u->t = atoll(p + 4);
                u->seen = 1;
            }
        }
        *size = 0;
        return MHD_YES;
    }
    long long now = now_ms();
    long long zero = 0;
    atomic_compare_exchange_strong(&first_ms, &zero, now);
    atomic_store(&last_ms, now);
    atomic_fetch_add(&requests, 1);
    if (u->seen && u->t > 0) {
        long i = atomic_fetch_add(&sample_count, 1);
        if (i < MAX_SAMPLES)
            samples[i] = now - u->t;
    }
    free(u);
    *ptr = NULL;
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return ret;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(argc > 1 ? (uint16_t)atoi(argv[1]) : 0)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    samples = malloc(sizeof(long long) * MAX_SAMPLES);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO, 0, NULL, NULL, handler, NULL,
        MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_CONNECTION_LIMIT, 4096,
        MHD_OPTION_CONNECTION_TIMEOUT, 120, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "fast_sink: cannot listen\n");
        return 1;
    }
    printf("{\"listening\":%u}\n", MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    fflush(stdout);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    while (!stop)
        pause();
    MHD_stop_daemon(d);
    free(samples);
    return 0;
}
