/*
 * pump.c — the deliverer's turn hook: after the fd callbacks and timers of
 * each loop turn (Kafka wake-ups, curl answers, libpq results), every stage
 * does what it can now, in the order a job travels: the in-flight cap and
 * a poll of our own when room freed up, the next claim, the next lookup,
 * the lanes, the next flush. Each step is a few comparisons when it has
 * nothing to do, and nothing here waits: what cannot go on now goes on
 * after the event it waits for (a result, an answer, a timer), which ends
 * a later turn and runs this hook again.
 *
 * It also keeps the "kafka" readiness condition (the runtime's rule,
 * nudgel_kafka_health_readiness()) and the gauges current.
 */
#include <stdio.h>

#include "deliverer.h"

/* "kafka" by the runtime's one rule, when the consumer's statistics or errors said something new.
 */
static void kafka_ready(worker_t *w)
{
    nudgel_kafka_health_t h;
    nudgel_consumer_health(w->consumer, &h);
    if (h.stats_at_us == w->kafka_stats_us && h.all_brokers_down == w->kafka_down_seen)
        return;
    w->kafka_stats_us = h.stats_at_us;
    w->kafka_down_seen = h.all_brokers_down;
    nudgel_kafka_health_readiness(&h, w->ready_kafka);
}

void pump(void *opaque)
{
    worker_t *w = opaque;
    if (w->tearing_down)
        return;
    intake_gate(w);
    if (w->intake_again)
        intake_poll(w);
    claims_pump(w);
    lookups_pump(w);
    if (w->active)
        lanes_drain(w);
    flush_maybe(w);
    kafka_ready(w);
    nudgel_metric_set(w->m_in_flight, NULL, (double)nudgel_consumer_in_flight(w->consumer));
    nudgel_metric_set(w->m_queued, NULL, (double)w->lane_waiting);
}
