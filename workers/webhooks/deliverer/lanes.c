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
 * to the first retry tier — only when its endpoint is slow (at its latency,
 * a stall included, or its rate, it cannot serve endpoint_queue_max jobs
 * within the first retry delay; no answer for a second is a stall), failing (its last answer was
 * not a success) or throttled (Retry-After). A lane that turns slow sheds what it holds beyond
 * endpoint_queue_max at once (lanes_drain).
 */
#include "deliverer.h"
#include "nudgel/timeutil.h"

#define STALL_US 1000000 /* an endpoint without an answer for this long is slow */

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

/*
 * Whether @p ep's jobs beyond endpoint_queue_max leave for the first retry
 * tier: throttled, failing, or too slow to serve endpoint_queue_max jobs
 * within the first retry delay. An endpoint whose row is not read yet, or
 * that sends nothing (missing, disabled: its jobs end at once), is not.
 */
bool lane_overflows(const worker_t *w, const endpoint_t *ep, int64_t now_us)
{
    if (!ep->loaded || !ep->found || !ep->enabled)
        return false;
    if (ep->throttled_until_us > now_us || ep->failing)
        return true;
    int64_t delay_us = (w->s.schedule.count ? w->s.schedule.delays_ms[0] : 5000) * 1000;
    double queue = (double)w->s.queue_max;
    int64_t latency = ep->latency_us;
    /* No answer for over a second (and longer than usual): a stall, counted as latency. Shorter
     * gaps are noise (a busy turn of our own loop, a receiver's pause). */
    int64_t stall = ep->in_flight > 0 ? now_us - ep->progress_us : 0;
    if (stall > STALL_US && stall > latency)
        latency = stall;
    double conc = ep->max_concurrency ? (double)ep->max_concurrency : 1;
    if (queue * (double)latency / conc > (double)delay_us)
        return true;
    return ep->rate > 0 && queue / ep->rate * 1e6 > (double)delay_us;
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
