/*
 * consumer_topics.c — whether the topics a consumer subscribes to exist yet
 * (private to the runtime; see consumer_internal.h).
 *
 * A worker may start before its topics exist (a rollout creating topics and
 * starting workers together): it must wait, not ready, until the broker's
 * metadata has them, and never exit for it. librdkafka waits quietly for a
 * subscribed topic that does not exist, but says nothing a readiness check
 * could read, and notices the topic only at its next metadata refresh
 * (topic.metadata.refresh.interval.ms, 5 minutes by default).
 *
 * So a small thread asks the broker for the metadata of every topic once a
 * second (librdkafka's own handle, whose consumer group then sees the new
 * topic at once and rejoins) while one of the subscribed topics is missing,
 * and stops for good once all of them exist: rd_kafka_metadata() blocks,
 * and the loop must not. What it learns (which topics are missing, each
 * topic's partition count) is read under a mutex from the loop's thread.
 * Each missing topic is logged once when first seen missing and once when
 * it appears.
 *
 * Owns the thread, its copies of the topic names and what it learnt.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consumer_internal.h"
#include "nudgel/log.h"

#define CHECK_EVERY_MS     1000
#define METADATA_TIMEOUT   5000
#define CHECKED_TOPICS_MAX 16

struct consumer_topics {
    rd_kafka_t *rk; /* borrowed: the consumer's handle outlives the thread */
    size_t count;
    char *names[CHECKED_TOPICS_MAX];
    int32_t partitions[CHECKED_TOPICS_MAX]; /* -1 unknown or missing */
    bool logged_missing[CHECKED_TOPICS_MAX];
    bool checked; /* one answer came */
    bool stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool started;
};

/* One metadata request for every topic; @returns whether all of ours exist. */
static bool check_once(consumer_topics_t *t)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(t->rk, 1, NULL, &md, METADATA_TIMEOUT);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        nudgel_log_debug("topic metadata: %s", rd_kafka_err2str(err));
        return false;
    }
    bool all = true;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->count; i++) {
        int32_t found = -1;
        for (int k = 0; k < md->topic_cnt; k++)
            if (!md->topics[k].err && md->topics[k].partition_cnt > 0 &&
                strcmp(md->topics[k].topic, t->names[i]) == 0)
                found = md->topics[k].partition_cnt;
        if (found < 0 && !t->logged_missing[i]) {
            t->logged_missing[i] = true;
            nudgel_log_warn("topic %s does not exist yet: not ready until it does (checking "
                            "every %d ms)",
                            t->names[i], CHECK_EVERY_MS);
        } else if (found > 0 && t->partitions[i] < 0 && t->logged_missing[i]) {
            nudgel_log_info("topic %s exists now (%d partitions)", t->names[i], (int)found);
        }
        t->partitions[i] = found;
        all = all && found > 0;
    }
    t->checked = true;
    pthread_mutex_unlock(&t->lock);
    rd_kafka_metadata_destroy(md);
    return all;
}

static void *run(void *opaque)
{
    consumer_topics_t *t = opaque;
    for (;;) {
        if (check_once(t))
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += CHECK_EVERY_MS / 1000;
        pthread_mutex_lock(&t->lock);
        while (!t->stop && pthread_cond_timedwait(&t->wake, &t->lock, &until) != ETIMEDOUT)
            ;
        bool stop = t->stop;
        pthread_mutex_unlock(&t->lock);
        if (stop)
            break;
    }
    return NULL;
}

consumer_topics_t *consumer_topics_start(rd_kafka_t *rk, const char *const *topics, size_t count)
{
    consumer_topics_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->rk = rk;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, NULL);
    for (size_t i = 0; i < count && i < CHECKED_TOPICS_MAX; i++) {
        if (!(t->names[i] = strdup(topics[i]))) {
            consumer_topics_stop(t);
            return NULL;
        }
        t->partitions[i] = -1;
        t->count++;
    }
    if (pthread_create(&t->thread, NULL, run, t) != 0) {
        consumer_topics_stop(t);
        return NULL;
    }
    t->started = true;
    return t;
}

int consumer_topics_missing(consumer_topics_t *t, char *first, size_t first_size)
{
    int missing = 0;
    if (first_size)
        first[0] = '\0';
    if (!t)
        return 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->count; i++) {
        if (t->partitions[i] > 0)
            continue;
        if (!missing++ && first_size)
            snprintf(first, first_size, "%s", t->checked ? t->names[i] : "(not checked yet)");
    }
    pthread_mutex_unlock(&t->lock);
    return missing;
}

int32_t consumer_topics_partitions(consumer_topics_t *t, const char *topic)
{
    int32_t n = -1;
    if (!t)
        return -1;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->names[i], topic) == 0)
            n = t->partitions[i];
    pthread_mutex_unlock(&t->lock);
    return n;
}

void consumer_topics_stop(consumer_topics_t *t)
{
    if (!t)
        return;
    if (t->started) {
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_cond_signal(&t->wake);
        pthread_mutex_unlock(&t->lock);
        pthread_join(t->thread, NULL);
    }
    for (size_t i = 0; i < t->count; i++)
        free(t->names[i]);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    free(t);
}
