/*
 * retry_tiers.c — see nudgel/retry_tiers.h: the tier of a retry hop and the
 * decision about the head of a retry tier's partition (wait on it, or let it
 * hop on so that it never holds back hops due before it).
 */
#include "nudgel/retry_tiers.h"

#include <stdlib.h>
#include <string.h>

#include "nudgel/kafka.h"
#include "nudgel/topics.h"

int64_t nudgel_retry_granularity_ms(int64_t delay_ms)
{
    int64_t g = delay_ms / 2;
    return g > NUDGEL_RETRY_GRANULARITY_MIN_MS ? g : NUDGEL_RETRY_GRANULARITY_MIN_MS;
}

/* Where tier @p i's band starts: the shortest wait it serves. */
static int64_t band_start(const nudgel_retry_tiers_t *t, size_t i)
{
    return t->delay_ms[i] - nudgel_retry_granularity_ms(t->delay_ms[i]) / 2;
}

size_t nudgel_retry_tier_for_wait(const nudgel_retry_tiers_t *t, int64_t wait_ms)
{
    size_t best = 0, smallest = 0;
    bool found = false;
    for (size_t i = 0; i < t->count; i++) {
        if (t->delay_ms[i] < t->delay_ms[smallest])
            smallest = i;
        if (band_start(t, i) <= wait_ms && (!found || t->delay_ms[i] > t->delay_ms[best])) {
            best = i;
            found = true;
        }
    }
    return found ? best : smallest;
}

int nudgel_retry_tier_of(const nudgel_retry_tiers_t *t, const char *topic)
{
    for (size_t i = 0; i < t->count && topic; i++)
        if (t->topics[i] && strcmp(t->topics[i], topic) == 0)
            return (int)i;
    return -1;
}

nudgel_retry_head_t nudgel_retry_head_decide(const nudgel_retry_tiers_t *t, size_t tier,
                                             const nudgel_retry_head_facts_t *f, int64_t *until_ms,
                                             size_t *to_tier)
{
    int64_t now = f->now_ms, due = f->not_before_ms;
    if (due <= now)
        return NUDGEL_RETRY_HEAD_DUE;
    int64_t delay = t->delay_ms[tier], g = nudgel_retry_granularity_ms(delay);
    /* A record's timestamp ahead of our clock (another host's) counts as now. */
    int64_t published = f->published_ms > 0 && f->published_ms < now ? f->published_ms : now;
    /*
     * Everything behind the head was published after it, with a wait of at
     * least this tier's band start, so it is due no earlier than
     * published + delay - g/2: a head due by published + delay + g/2 holds
     * nothing back by more than g. Nor does one due within g from now.
     */
    if (due - now <= g || due <= published + delay + g / 2) {
        *until_ms = due;
        return NUDGEL_RETRY_HEAD_WAIT;
    }
    /* Nothing behind it to hold back: look again within g. */
    if (!f->followed) {
        *until_ms = due < now + g ? due : now + g;
        return NUDGEL_RETRY_HEAD_WAIT;
    }
    /* One hop-on per partition per granularity bounds the hops of a job. */
    if (f->last_hop_on_ms > 0 && now < f->last_hop_on_ms + g) {
        *until_ms = f->last_hop_on_ms + g;
        return NUDGEL_RETRY_HEAD_WAIT;
    }
    *to_tier = nudgel_retry_tier_for_wait(t, due - now);
    return NUDGEL_RETRY_HEAD_HOP_ON;
}

nudgel_retry_head_t nudgel_retry_head_check(const nudgel_retry_tiers_t *t, nudgel_consumer_t *c,
                                            nudgel_job_ref_t *job, int64_t now_ms,
                                            int64_t *until_ms, const char **hop_topic)
{
    const rd_kafka_message_t *km = nudgel_job_message(job);
    nudgel_retry_head_facts_t f = {.now_ms = now_ms};
    char text[32];
    nudgel_message_header(km, NUDGEL_HDR_NOT_BEFORE, text, sizeof(text));
    f.not_before_ms = text[0] ? strtoll(text, NULL, 10) : 0;
    if (f.not_before_ms <= now_ms)
        return NUDGEL_RETRY_HEAD_DUE;
    int tier = km->rkt ? nudgel_retry_tier_of(t, rd_kafka_topic_name(km->rkt)) : -1;
    if (tier < 0) {
        *until_ms = f.not_before_ms; /* not a tier: only its own time counts */
        return NUDGEL_RETRY_HEAD_WAIT;
    }
    f.published_ms = rd_kafka_message_timestamp(km, NULL);
    f.followed = nudgel_consumer_job_followed(c, job);
    f.last_hop_on_ms = nudgel_consumer_job_last_hop_on(job);
    size_t to = 0;
    nudgel_retry_head_t what = nudgel_retry_head_decide(t, (size_t)tier, &f, until_ms, &to);
    if (what == NUDGEL_RETRY_HEAD_HOP_ON) {
        nudgel_consumer_job_hopped_on(job, now_ms);
        *hop_topic = t->topics[to];
    }
    return what;
}
