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

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
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
    size_t topic_count = 0, max_hold = 64;
    const char *group = "nudgel-test";
    long idle_ms = 3000;
    int stuck_partition = -1, opt, exit_code = 2;
    long long stuck_offset = -1;
    char *sets[16];
    size_t set_count = 0;
    unsigned seed = 1;
    long finish_delay_us = 0;
    bool honour_not_before = false, abandon = false;
    nudgel_job_ref_t *held[MAX_HOLD];
    size_t held_count = 0;
    nudgel_job_ref_t *stuck_job = NULL;
    nudgel_consumer_t *c = NULL;
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
            idle_ms = atol(optarg);
            break;
        case 'm':
            max_hold = (size_t)atol(optarg);
            if (max_hold < 1 || max_hold > MAX_HOLD)
                max_hold = MAX_HOLD;
            break;
        case 'k':
            if (sscanf(optarg, "%d:%lld", &stuck_partition, &stuck_offset) != 2)
                goto out;
            break;
        case 'r':
            seed = (unsigned)atol(optarg);
            break;
        case 'd':
            finish_delay_us = atol(optarg);
            break;
        case 'n':
            honour_not_before = true;
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
    c = nudgel_consumer_new(conf, group, topics, topic_count, errstr, sizeof(errstr));
    if (!c) {
        fprintf(stderr, "%s: %s\n", PROGRAM, errstr);
        goto out;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    srand(seed);
    int64_t last_activity = nudgel_mono_us(), unassigned_since = 0;
    while (!stop) {
        nudgel_job_ref_t *job = held_count < max_hold ? nudgel_consumer_poll(c, 100) : NULL;
        if (job && honour_not_before) {
            /* A retry tier's consumer: a job not yet due goes back until it is. */
            char not_before[32];
            nudgel_message_header(nudgel_job_message(job), "nudgel-not-before", not_before,
                                  sizeof(not_before));
            int64_t due = atoll(not_before);
            if (due > nudgel_now_unix_ms()) {
                nudgel_consumer_defer(c, job, due);
                continue;
            }
        }
        if (job) {
            const rd_kafka_message_t *m = nudgel_job_message(job);
            printf("{\"t\":\"%s\",\"p\":%d,\"o\":%lld,\"at\":%lld}\n", rd_kafka_topic_name(m->rkt),
                   m->partition, (long long)m->offset, (long long)nudgel_now_unix_ms());
            last_activity = nudgel_mono_us();
            if (m->partition == stuck_partition && m->offset == stuck_offset)
                stuck_job = job;
            else
                held[held_count++] = job;
        }
        /* Finish a random held job about every other turn, and everything held
         * when the topic is quiet: completions come out of order. */
        while (held_count && (held_count == max_hold || !job || rand() % 2)) {
            size_t i = (size_t)rand() % held_count;
            if (finish_delay_us)
                usleep((useconds_t)finish_delay_us); /* a slow worker, so a second one gets work */
            nudgel_consumer_done(c, held[i]);
            held[i] = held[--held_count];
            if (job)
                break;
        }
        /* Idle time counts only once partitions are ours (joining a group whose
         * old member died waits for that member's session to expire), but a
         * member left without partitions gives up after UNASSIGNED_MAX_US. */
        int64_t now_us = nudgel_mono_us();
        if (nudgel_consumer_assigned(c)) {
            unassigned_since = 0;
        } else {
            if (!unassigned_since)
                unassigned_since = now_us;
            if (now_us - unassigned_since < UNASSIGNED_MAX_US)
                last_activity = now_us;
        }
        if (!job && !held_count && now_us - last_activity > idle_ms * 1000)
            break;
    }
    while (held_count)
        nudgel_consumer_done(c, held[--held_count]);
    exit_code = 0;
out:
    if (stuck_job && !abandon)
        nudgel_consumer_done(c, stuck_job); /* on a clean exit only: a kill leaves it unfinished */
    nudgel_consumer_close(c);
    nudgel_conf_destroy(conf);
    if (exit_code)
        fprintf(stderr,
                "usage: %s --topic T [--group G] [--idle-ms N] [--max-hold N] "
                "[--stuck P:O] [--abandon] [--seed N] [--finish-delay-us N] [--honour-not-before] "
                "[--set KEY=VALUE]\n",
                PROGRAM);
    return exit_code;
}
