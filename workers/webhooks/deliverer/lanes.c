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
 */
#include "deliverer.h"
#include "nudgel/timeutil.h"

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
