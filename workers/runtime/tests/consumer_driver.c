/*
 * consumer_driver.c — nudgel-test-consumer, a worker without work, for the
 * consumer's integration tests: it polls jobs, holds up to --max-hold of
 * them and finishes them in random order (as a real worker's concurrent jobs
 * do), and prints one JSON line per job polled:
 *   {"t":"<topic>","p":<partition>,"o":<offset>}
 * It exits after --idle-ms with nothing polled and nothing held, or on
 * SIGTERM after finishing what it holds. --stuck P:O never finishes that
 * job, so a test can check that no offset passes an unfinished one;
 * --abandon leaves it unfinished at a clean exit too (the consumer's close
 * must release it, not wait for it).
 *
 * It runs on the event loop like a worker: the consumer is attached
 * (nudgel_consumer_attach), every poll happens in its on_ready callback and
 * the idle exit is a loop timer, so an idle driver sleeps in epoll_wait (the
 * tests measure its CPU). It prints "assigned N" when its assignment
 * changes and, at a clean exit, "health {...}" (nudgel_consumer_health).
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nudgel/config.h"
#include "nudgel/consumer.h"
#include "nudgel/log.h"
#include "nudgel/publisher.h"
#include "nudgel/timeutil.h"

#define PROGRAM           "nudgel-test-consumer"
#define MAX_HOLD          4096
#define UNASSIGNED_MAX_US (20 * 1000000LL)

typedef struct driver {
    nudgel_consumer_t *c;
    nudgel_loop_t *loop;
    nudgel_timer_t *idle;
    nudgel_job_ref_t *held[MAX_HOLD];
    size_t held_count, max_hold;
    nudgel_job_ref_t *stuck_job;
    int stuck_partition;
    long long stuck_offset;
    long idle_ms, finish_delay_us;
    bool honour_not_before;
    size_t assigned; /* last printed */
    int64_t last_activity, unassigned_since;
    bool done;
} driver_t;

static volatile sig_atomic_t stop;
static nudgel_loop_t *signal_loop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
    nudgel_loop_wake(signal_loop); /* async-signal-safe: a write to an eventfd */
}

/* Idle time counts only once partitions are ours (joining a group whose old
 * member died waits for that member's session to expire), but a member left
 * without partitions gives up after UNASSIGNED_MAX_US. */
static void note_assignment(driver_t *d, int64_t now_us)
{
    size_t assigned = nudgel_consumer_assigned(d->c);
    if (assigned != d->assigned) {
        d->assigned = assigned;
        printf("assigned %zu\n", assigned); /* not JSON: tests read "{" lines only */
    }
    if (assigned) {
        d->unassigned_since = 0;
    } else {
        if (!d->unassigned_since)
            d->unassigned_since = now_us;
        if (now_us - d->unassigned_since < UNASSIGNED_MAX_US)
            d->last_activity = now_us;
    }
}

static void finish(driver_t *d, size_t i)
{
    if (d->finish_delay_us)
        usleep((useconds_t)d->finish_delay_us); /* a slow worker, so a second one gets work */
    nudgel_consumer_done(d->c, d->held[i]);
    d->held[i] = d->held[--d->held_count];
}

/* The consumer has something: poll until it has nothing more. A random held
 * job is finished about every other job, one whenever the hold is full, and
 * everything held once the topic is quiet: completions come out of order. */
static void on_ready(void *opaque)
{
    driver_t *d = opaque;
    nudgel_job_ref_t *job;
    while ((job = nudgel_consumer_poll(d->c, 0))) {
        if (d->honour_not_before) {
            /* A retry tier's consumer: a job not yet due goes back until it is. */
            char not_before[32];
            nudgel_message_header(nudgel_job_message(job), "nudgel-not-before", not_before,
                                  sizeof(not_before));
            int64_t due = atoll(not_before);
            if (due > nudgel_now_unix_ms()) {
                nudgel_consumer_defer(d->c, job, due);
                continue;
            }
        }
        const rd_kafka_message_t *m = nudgel_job_message(job);
        printf("{\"t\":\"%s\",\"p\":%d,\"o\":%lld,\"at\":%lld}\n", rd_kafka_topic_name(m->rkt),
               m->partition, (long long)m->offset, (long long)nudgel_now_unix_ms());
        d->last_activity = nudgel_mono_us();
        if (m->partition == d->stuck_partition && m->offset == d->stuck_offset)
            d->stuck_job = job;
        else
            d->held[d->held_count++] = job;
        if (d->held_count && (d->held_count == d->max_hold || rand() % 2))
            finish(d, (size_t)rand() % d->held_count);
    }
    while (d->held_count)
        finish(d, (size_t)rand() % d->held_count);
    note_assignment(d, nudgel_mono_us());
}

/* Ends the run after --idle-ms with nothing polled and nothing held. */
static void on_idle_check(void *opaque)
{
    driver_t *d = opaque;
    int64_t now_us = nudgel_mono_us();
    note_assignment(d, now_us);
    if (!d->held_count && now_us - d->last_activity > d->idle_ms * 1000) {
        d->done = true;
        return;
    }
    nudgel_timer_arm_at(d->idle, d->last_activity + d->idle_ms * 1000 + 1000);
}

static void print_health(const nudgel_consumer_t *c)
{
    nudgel_kafka_health_t h;
    nudgel_consumer_health(c, &h);
    printf("health {\"brokers_up\":%d,\"group_up\":%s,\"steady\":%s,\"assigned\":%d,"
           "\"lag_total\":%lld,\"lags\":%zu,\"stats_age_ms\":%lld}\n",
           h.brokers_up, h.group_up ? "true" : "false", h.group_steady ? "true" : "false",
           (int)h.assigned, (long long)h.lag_total, h.lag_count,
           h.stats_at_us ? (long long)((nudgel_mono_us() - h.stats_at_us) / 1000) : -1LL);
}

int main(int argc, char **argv)
{
    static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, nudgel_consumer_conf,
                                                        NULL};
    static const struct option options[] = {
        {"topic", required_argument, NULL, 't'},
        {"group", required_argument, NULL, 'g'},
        {"idle-ms", required_argument, NULL, 'i'},
        {"max-hold", required_argument, NULL, 'm'},
        {"stuck", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 'r'},
        {"set", required_argument, NULL, 's'},
        {"finish-delay-us", required_argument, NULL, 'd'},
        {"honour-not-before", no_argument, NULL, 'n'},
        {"abandon", no_argument, NULL, 'a'},
        {NULL, 0, NULL, 0},
    };
    const char *topics[16];
    size_t topic_count = 0;
    const char *group = "nudgel-test";
    int opt, exit_code = 2;
    char *sets[16];
    size_t set_count = 0;
    unsigned seed = 1;
    bool abandon = false;
    static driver_t d = {
        .max_hold = 64, .stuck_partition = -1, .stuck_offset = -1, .idle_ms = 3000};
    nudgel_conf_t *conf = nudgel_conf_new(PROGRAM, tables);
    char errstr[512];

    setvbuf(stdout, NULL, _IOLBF, 0); /* every line survives a SIGKILL */
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 't':
            if (topic_count < 16)
                topics[topic_count++] = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 'i':
            d.idle_ms = atol(optarg);
            break;
        case 'm':
            d.max_hold = (size_t)atol(optarg);
            if (d.max_hold < 1 || d.max_hold > MAX_HOLD)
                d.max_hold = MAX_HOLD;
            break;
        case 'k':
            if (sscanf(optarg, "%d:%lld", &d.stuck_partition, &d.stuck_offset) != 2)
                goto out;
            break;
        case 'r':
            seed = (unsigned)atol(optarg);
            break;
        case 'd':
            d.finish_delay_us = atol(optarg);
            break;
        case 'n':
            d.honour_not_before = true;
            break;
        case 'a':
            abandon = true;
            break;
        case 's':
            if (set_count < 16)
                sets[set_count++] = optarg;
            break;
        default:
            goto out;
        }
    }
    if (nudgel_conf_startup(conf, PROGRAM, NULL, sets, set_count, false, false) !=
            NUDGEL_CONF_STARTUP_RUN ||
        topic_count == 0)
        goto out;
    d.c = nudgel_consumer_new(conf, group, topics, topic_count, errstr, sizeof(errstr));
    if (!d.c || !(d.loop = nudgel_loop_new(errstr, sizeof(errstr))) ||
        !(d.idle = nudgel_timer_new(d.loop, on_idle_check, &d)) ||
        nudgel_consumer_attach(d.c, d.loop, on_ready, &d) != NUDGEL_OK) {
        fprintf(stderr, "%s: %s\n", PROGRAM, d.c ? "cannot set up the event loop" : errstr);
        goto out;
    }
    signal_loop = d.loop;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    srand(seed);
    d.last_activity = nudgel_mono_us();
    nudgel_timer_arm_in(d.idle, d.idle_ms * 1000);
    /* Everything happens in the loop's callbacks; a turn waits for the next one. */
    while (!stop && !d.done)
        nudgel_loop_turn(d.loop, -1);
    print_health(d.c);
    while (d.held_count)
        nudgel_consumer_done(d.c, d.held[--d.held_count]);
    exit_code = 0;
out:
    /* The stuck job is finished on a clean exit only: a kill leaves it unfinished. */
    if (d.stuck_job && !abandon)
        nudgel_consumer_done(d.c, d.stuck_job);
    nudgel_consumer_close(d.c);
    nudgel_timer_free(d.idle);
    nudgel_loop_free(d.loop);
    nudgel_conf_destroy(conf);
    if (exit_code)
        fprintf(stderr,
                "usage: %s --topic T [--group G] [--idle-ms N] [--max-hold N] "
                "[--stuck P:O] [--abandon] [--seed N] [--finish-delay-us N] [--honour-not-before] "
                "[--set KEY=VALUE]\n",
                PROGRAM);
    return exit_code;
}
