/*
 * consumer_loop.c — the consumer on the event loop (nudgel_consumer_attach(),
 * see nudgel/consumer.h; the consumer itself is consumer.c).
 *
 * On a loop, librdkafka writes to an eventfd when the consumer queue (the
 * main queue is forwarded to it) goes from empty to non-empty; one timer
 * covers what no wake-up announces: the due time of a deferred partition,
 * a poll that stopped on its discard budget with the queue not empty, and a
 * keepalive so that a quiet consumer is polled within max.poll.interval.ms
 * even with statistics off. Either calls the role's on_ready, and the role
 * polls with nudgel_consumer_poll().
 *
 * Owns the eventfd, the consumer queue reference that holds the IO event,
 * the timer and the keepalive period, all in the consumer's struct
 * (consumer_internal.h); consumer.c calls consumer_schedule() after each
 * poll and defer, and consumer_detach() at close.
 *
 * Threads: the loop's thread only, like the consumer.
 */
#define _GNU_SOURCE
#include "nudgel/consumer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "consumer_internal.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#define KEEPALIVE_MIN_US (1000 * 1000LL)

/*
 * Arms the timer for the earliest of: now (the last poll left messages),
 * the first deferred partition's due time, the keepalive. Runs after each
 * poll and defer, so it must stay cheap: one pass over the partitions
 * (resume_due() in consumer.c makes the same pass) and one heap update.
 */
void consumer_schedule(nudgel_consumer_t *c)
{
    int64_t now_us = nudgel_mono_us();
    int64_t due_us = c->more ? now_us : c->last_poll_us + c->keepalive_us;
    int64_t now_ms = 0;
    for (size_t i = 0; i < c->part_count && !c->more; i++) {
        part_state_t *p = c->parts[i];
        if (!p->deferred_until)
            continue;
        if (!now_ms)
            now_ms = nudgel_now_unix_ms();
        /* Wall-clock due time onto the monotonic clock; +1 ms so that the
         * poll it causes finds the partition due (resume_due() uses <=). */
        int64_t at = now_us + (p->deferred_until - now_ms + 1) * 1000;
        if (at < due_us)
            due_us = at;
    }
    int64_t armed_us;
    if (!nudgel_timer_armed(c->timer, &armed_us) || armed_us != due_us)
        nudgel_timer_arm_at(c->timer, due_us);
}

static void on_timer(void *opaque)
{
    nudgel_consumer_t *c = opaque;
    uint64_t polls = c->polls;
    c->on_ready(c->ready_opaque);
    /* A role that did not poll (no room) polls later by itself, and that
     * poll re-schedules; meanwhile only the keepalive, never a busy timer. */
    if (c->polls == polls)
        nudgel_timer_arm_in(c->timer, c->keepalive_us);
}

/* The queue's eventfd is readable: clear it first, so a message enqueued
 * while the role polls writes a wake-up of its own, then let the role poll. */
static void on_wake(void *opaque, int fd, unsigned events)
{
    nudgel_consumer_t *c = opaque;
    uint64_t count;
    (void)events;
    if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        nudgel_log_warn("consumer: reading its wake-up fd: %s", strerror(errno));
    c->on_ready(c->ready_opaque);
}

/* A third of max.poll.interval.ms, at least a second. */
static int64_t keepalive_us(nudgel_consumer_t *c)
{
    char value[32];
    size_t size = sizeof(value);
    int64_t ms = 300000;
    if (rd_kafka_conf_get(rd_kafka_conf(c->rk), "max.poll.interval.ms", value, &size) ==
        RD_KAFKA_CONF_OK)
        ms = atoll(value);
    int64_t us = ms * 1000 / 3;
    return us > KEEPALIVE_MIN_US ? us : KEEPALIVE_MIN_US;
}

void consumer_detach(nudgel_consumer_t *c)
{
    if (!c->loop)
        return;
    if (c->queue) {
        rd_kafka_queue_io_event_enable(c->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(c->queue);
    }
    if (c->wake_fd >= 0) {
        nudgel_loop_unwatch(c->loop, c->wake_fd);
        close(c->wake_fd);
    }
    nudgel_timer_free(c->timer);
    c->queue = NULL;
    c->wake_fd = -1;
    c->timer = NULL;
    c->loop = NULL;
}

nudgel_err_t nudgel_consumer_attach(nudgel_consumer_t *c, nudgel_loop_t *loop,
                                    void (*on_ready)(void *opaque), void *opaque)
{
    /* librdkafka copies the payload; an eventfd takes 8-byte writes. */
    static const uint64_t one = 1;
    if (!c || !loop || !on_ready || c->loop)
        return NUDGEL_ERR_INVALID_ARG;
    c->on_ready = on_ready;
    c->ready_opaque = opaque;
    c->keepalive_us = keepalive_us(c);
    c->loop = loop;
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    c->timer = nudgel_timer_new(loop, on_timer, c);
    nudgel_err_t err = NUDGEL_ERR_IO;
    if (c->wake_fd >= 0 && c->queue)
        err = c->timer ? nudgel_loop_watch(loop, c->wake_fd, NUDGEL_LOOP_READ, on_wake, c)
                       : NUDGEL_ERR_NO_MEMORY;
    if (err != NUDGEL_OK) {
        nudgel_log_error("consumer: cannot go on the event loop: %s", nudgel_strerror(err));
        consumer_detach(c);
        return err;
    }
    /* rd_kafka_poll_set_consumer() forwarded the main queue here: this is
     * the destination queue, where the IO event must be enabled. */
    rd_kafka_queue_io_event_enable(c->queue, c->wake_fd, &one, sizeof(one));
    /* What is queued already wrote no wake-up: have the role poll next turn. */
    nudgel_timer_arm_at(c->timer, nudgel_mono_us());
    return NUDGEL_OK;
}
