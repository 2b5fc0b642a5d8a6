/*
 * lanes.c — each endpoint's lane: the jobs waiting for it, let go within
 * its concurrency (max_concurrency requests in flight) and its token-bucket
 * rate (rate_limit_per_second, bursts up to one second's worth), so a slow
 * endpoint never holds back the others. A lane waits while its endpoint's
 * row is being read (lookups.c) and the row it had, if any, has expired, and until the time a
 * 429/503 answer's Retry-After names (attempts.c sets it: Standard Webhooks' throttle). Nothing
 * here polls: an answer frees a slot (the turn hook drains the lanes after it), a row read opens
 * a lane, and a lane short of tokens (or throttled) arms the lane timer for when it may send
 * again.
 *
 * Overflow (issue 10, item 18): a lane that is merely busy holds every job it
 * is given — the worker's in-flight cap (intake paused) and the claim gate
 * (claims.c) bound them, and the retry tier would only bring them back later
 * to the same lane. A lane overflows — its jobs beyond endpoint_queue_max go
 * to the first retry tier — only when its endpoint is slow (at its latency
 * or its rate it cannot serve endpoint_queue_max jobs within the first retry
 * delay), failing (its last answer was not a success) or throttled
 * (Retry-After). A lane that turns slow sheds what it holds beyond
 * endpoint_queue_max at once (lanes_drain).
 *
 * Slow at its latency means for a while, not for a moment: the average has
 * said so for SLOW_HOLD_US, or no answer has come for STALL_US. A pause of
 * the receiver's or of our own loop delays every request in flight at once,
 * and their answers, arriving together, pull the average up together: a
 * healthy endpoint serving 700 requests a second read as slow for a moment
 * under load, and shed thousands of a burst's jobs to the retry tier.
 */
#include "deliverer.h"
#include "nudgel/timeutil.h"

#define STALL_US     1000000 /* an endpoint without an answer for this long is slow */
#define SLOW_HOLD_US 1000000 /* a latency that says slow for this long is */

void lane_push(worker_t *w, endpoint_t *ep, wjob_t *j)
{
    j->stage = STAGE_LANE;
    j->next_in_lane = NULL;
    if (ep->tail)
        ep->tail->next_in_lane = j;
    else
        ep->head = j;
    ep->tail = j;
    ep->queued++;
    w->lane_waiting++;
    if (!ep->active) {
        endpoint_set_active(w, ep, true);
        ep->next_active = w->active;
        w->active = ep;
    }
}

static wjob_t *lane_pop(worker_t *w, endpoint_t *ep)
{
    wjob_t *j = ep->head;
    if (!j)
        return NULL;
    ep->head = j->next_in_lane;
    if (!ep->head)
        ep->tail = NULL;
    ep->queued--;
    w->lane_waiting--;
    return j;
}

/* The first retry delay: a lane that cannot be served within it is better off there. */
static double retry_delay_us(const worker_t *w)
{
    return (double)(w->s.schedule.count ? w->s.schedule.delays_ms[0] : 5000) * 1000.0;
}

/* Whether @p ep, answering in @p latency_us, serves endpoint_queue_max jobs after the first retry
 * delay. */
static bool too_slow_for_queue(const worker_t *w, const endpoint_t *ep, int64_t latency_us)
{
    double conc = ep->max_concurrency ? (double)ep->max_concurrency : 1;
    return (double)w->s.queue_max * (double)latency_us / conc > retry_delay_us(w);
}

/*
 * Takes one answer's latency into @p ep's moving average, and notes since when
 * that average has said slow.
 */
void lane_observe_latency(const worker_t *w, endpoint_t *ep, int64_t sample_us, int64_t now_us)
{
    ep->latency_us = ep->latency_us ? (ep->latency_us * 7 + sample_us) / 8 : sample_us;
    ep->progress_us = now_us;
    if (!too_slow_for_queue(w, ep, ep->latency_us))
        ep->slow_since_us = 0;
    else if (!ep->slow_since_us)
        ep->slow_since_us = now_us;
}

/*
 * Whether @p ep's jobs beyond endpoint_queue_max leave for the first retry
 * tier: throttled, failing, slow for SLOW_HOLD_US, stalled, or held by its
 * rate longer than the first retry delay. An endpoint whose row is not read
 * yet, or that sends nothing (missing, disabled: its jobs end at once), is not.
 */
bool lane_overflows(const worker_t *w, const endpoint_t *ep, int64_t now_us)
{
    if (!ep->loaded || !ep->found || !ep->enabled)
        return false;
    if (ep->throttled_until_us > now_us || ep->failing)
        return true;
    if (ep->slow_since_us && now_us - ep->slow_since_us >= SLOW_HOLD_US)
        return true;
    /* No answer for over a second (and longer than usual): a stall, counted as latency. Shorter
     * gaps are noise (a busy turn of our own loop, a receiver's pause). */
    int64_t stall = ep->in_flight > 0 ? now_us - ep->progress_us : 0;
    if (stall > STALL_US && stall > ep->latency_us && too_slow_for_queue(w, ep, stall))
        return true;
    return ep->rate > 0 && (double)w->s.queue_max / ep->rate * 1e6 > retry_delay_us(w);
}

/*
 * A slow or failing lane sheds its jobs beyond endpoint_queue_max to the
 * first retry tier (not counted as attempts); it keeps the first ones.
 */
static void lane_shed(worker_t *w, endpoint_t *ep)
{
    wjob_t *keep = ep->head;
    for (size_t i = 1; keep && i < w->s.queue_max; i++)
        keep = keep->next_in_lane;
    if (!keep || !keep->next_in_lane)
        return;
    wjob_t *j = keep->next_in_lane;
    keep->next_in_lane = NULL;
    ep->tail = keep;
    while (j) {
        wjob_t *next = j->next_in_lane;
        ep->queued--;
        w->lane_waiting--;
        j->end = END_REQUEUE;
        outcome_add(j);
        j = next;
    }
}

/*
 * Refills @p ep's token bucket; true when a request may start now. When the
 * rate holds it back, @p *due_us receives when the next token is due.
 */
static bool lane_may_send(endpoint_t *ep, int64_t now_us, int64_t *due_us)
{
    if (ep->in_flight >= ep->max_concurrency)
        return false; /* an answer frees a slot */
    if (ep->rate <= 0)
        return true;
    double burst = ep->rate > 1 ? ep->rate : 1;
    ep->tokens += (double)(now_us - ep->tokens_us) / 1e6 * ep->rate;
    ep->tokens_us = now_us;
    if (ep->tokens > burst)
        ep->tokens = burst;
    if (ep->tokens < 1) {
        *due_us = now_us + (int64_t)((1 - ep->tokens) / ep->rate * 1e6) + 1;
        return false;
    }
    ep->tokens -= 1;
    return true;
}

/*
 * Starts what each lane allows now; drops lanes left empty from the active
 * list; arms the lane timer for the earliest token a lane waits for.
 */
void lanes_drain(worker_t *w)
{
    int64_t now = nudgel_mono_us(), next_token = 0;
    endpoint_t **link = &w->active;
    while (*link) {
        endpoint_t *ep = *link;
        /* A row read again ahead serves until it expires (endpoints.c). */
        if (!ep->loaded || (ep->load_queued && endpoint_expired(w, ep, now))) {
            if (!ep->load_queued) {
                lookups_load(w, ep); /* queueing it failed before */
                nudgel_loop_again(w->loop);
            }
            link = &ep->next_active;
            continue; /* its row is coming */
        }
        int64_t due = 0;
        /* Throttled by a Retry-After: nothing is sent before then (jobs that cannot be sent
         * at all still end now). */
        bool throttled = ep->enabled && ep->found && ep->throttled_until_us > now;
        if (throttled)
            due = ep->throttled_until_us;
        /* Jobs that will not be sent (another tenant's, a missing or disabled endpoint) end
         * without taking a slot or a token. */
        while (!throttled && ep->head &&
               (!ep->enabled || !ep->found || endpoint_foreign(ep->head) ||
                lane_may_send(ep, now, &due)))
            submit(w, lane_pop(w, ep));
        if (ep->queued > w->s.queue_max && lane_overflows(w, ep, now))
            lane_shed(w, ep);
        if (due && (!next_token || due < next_token))
            next_token = due;
        if (!ep->head) {
            *link = ep->next_active;
            endpoint_set_active(w, ep, false);
        } else {
            link = &ep->next_active;
        }
    }
    if (next_token)
        nudgel_timer_arm_by(w->lane_timer, next_token);
}

void lanes_timer(void *opaque)
{
    lanes_drain(opaque);
}
