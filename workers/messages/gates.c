/*
 * gates.c — the two gates between a prepared job and its gateway's lane.
 * The recipient gate keeps one recipient's (tenant, to) jobs in poll order:
 * the first holds the recipient until its submission is answered. The tenant
 * gate keeps each tenant within its in-flight cap and send rate
 * (tenant_limits.c), parking the rest in the tenant's FIFO so that others
 * sharing its partitions keep moving. leave_gates() gives both places up.
 *
 * A parked tenant waits for a time (its rate: a loop timer is armed for the
 * earliest such time) or for one of its jobs to end (its in-flight cap:
 * leave_gates() lets it be looked at again). Nothing is retried on a clock.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nudgel/timeutil.h"

#include "messages.h"

static size_t recipient_key(const msg_t *m, char *key, size_t size)
{
    int n = snprintf(key, size, "%s%c%s", m->job.tenant_id, '\0', m->job.to);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/*
 * Until when a tenant refused by @p verdict stays parked: its rate's next
 * token, or until one of its jobs ends (its in-flight cap; leave_gates()),
 * or until any job ends (the tenant table full, which its size rules out).
 */
static int64_t parked_until(worker_t *w, nudgel_tenant_verdict_t verdict, int64_t retry_at)
{
    switch (verdict) {
    case NUDGEL_TENANT_RATE_LIMITED:
        return retry_at;
    case NUDGEL_TENANT_TABLE_FULL:
        w->tenant_table_full = true;
        return INT64_MAX;
    case NUDGEL_TENANT_IN_FLIGHT_CAP:
        return INT64_MAX;
    case NUDGEL_TENANT_OK:
        break;
    }
    return 0;
}

/*
 * Lets @p m go through its tenant's limits when it may, else parks it in
 * the tenant's queue (FIFO) until a job of the tenant ends or its rate
 * allows (gates_tick()).
 */
static void tenant_gate(worker_t *w, msg_t *m)
{
    nudgel_keyq_entry_t *e =
        nudgel_keyq_get(w->tenant_waits, m->job.tenant_id, strlen(m->job.tenant_id), true);
    if (!e) {
        msg_fail(m); /* out of memory: comes again */
        msg_release(m);
        return;
    }
    if (nudgel_keyq_waiting(e) == 0) {
        nudgel_tenant_verdict_t verdict;
        int64_t retry_at = -1;
        if (nudgel_throttle_tenants_acquire(w->tenants, m->job.tenant_id,
                                            limits_of(w, m->job.tenant_id), nudgel_mono_us(),
                                            &verdict, &retry_at) != NUDGEL_OK)
            verdict = NUDGEL_TENANT_OK; /* a tenant id the schema let through: no limit */
        else if (verdict == NUDGEL_TENANT_OK)
            m->holds_tenant = true;
        if (verdict == NUDGEL_TENANT_OK) {
            nudgel_keyq_drop_if_idle(w->tenant_waits, e);
            to_lane(w, m);
            return;
        }
        *nudgel_keyq_not_before(e) = parked_until(w, verdict, retry_at);
    }
    if (!nudgel_keyq_push(w->tenant_waits, e, m)) {
        msg_fail(m);
        msg_release(m);
    }
}

/*
 * Lets the parked jobs of the tenant of @p e go while its limits allow.
 * @returns false when none is left (and the entry was dropped).
 */
static bool tenant_admit(worker_t *w, nudgel_keyq_entry_t *e)
{
    int64_t now = nudgel_mono_us();
    if (*nudgel_keyq_not_before(e) > now)
        return true;
    msg_t *m;
    while ((m = nudgel_keyq_peek(e))) {
        nudgel_tenant_verdict_t verdict;
        int64_t retry_at = -1;
        if (nudgel_throttle_tenants_acquire(w->tenants, m->job.tenant_id,
                                            limits_of(w, m->job.tenant_id), now, &verdict,
                                            &retry_at) != NUDGEL_OK)
            verdict = NUDGEL_TENANT_OK;
        else if (verdict == NUDGEL_TENANT_OK)
            m->holds_tenant = true;
        if (verdict != NUDGEL_TENANT_OK) {
            *nudgel_keyq_not_before(e) = parked_until(w, verdict, retry_at);
            return true;
        }
        nudgel_keyq_pop(w->tenant_waits, e);
        to_lane(w, m);
    }
    return !nudgel_keyq_drop_if_idle(w->tenant_waits, e);
}

/*
 * Each turn: jobs whose recipient's turn came go to their tenant's gate, then
 * parked tenants get another look (a job of theirs ended, or their rate
 * allows one again). Done here, not from the callbacks that free a place, so
 * no gate is ever re-entered while it is being walked.
 */
void gates_tick(void *opaque)
{
    worker_t *w = opaque;
    msg_t *m;
    while (nudgel_batchq_shift(w->recipient_ready, (void **)&m, 1) == 1)
        tenant_gate(w, m);
    if (w->draining) {
        /* Parked tenants' jobs were never handed over: back to the next owner, limits or not. */
        for (nudgel_keyq_entry_t *e = nudgel_keyq_first_waiting(w->tenant_waits), *after; e;
             e = after) {
            after = nudgel_keyq_next_waiting(e);
            while ((m = nudgel_keyq_pop(w->tenant_waits, e)))
                hand_back(m);
            nudgel_keyq_drop_if_idle(w->tenant_waits, e);
        }
        return;
    }
    int64_t now = nudgel_mono_us(), next = INT64_MAX;
    for (nudgel_keyq_entry_t *e = nudgel_keyq_first_waiting(w->tenant_waits), *after; e;
         e = after) {
        after = nudgel_keyq_next_waiting(e);
        if (*nudgel_keyq_not_before(e) <= now && !tenant_admit(w, e))
            continue; /* its last job went on: the entry is gone */
        int64_t until = *nudgel_keyq_not_before(e);
        if (until > now && until < next)
            next = until;
    }
    if (next != INT64_MAX)
        nudgel_timer_arm_by(w->gates_timer, next);
}

/* A rate-limited tenant's time came: gates_tick(), a turn hook, runs after the timers. */
static void on_gates_timer(void *opaque)
{
    (void)opaque;
}

nudgel_err_t gates_open(worker_t *w, char *errstr, size_t errstr_size)
{
    if (!(w->gates_timer = nudgel_timer_new(w->loop, on_gates_timer, w))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    return NUDGEL_OK;
}

void gates_limits_changed(worker_t *w)
{
    for (nudgel_keyq_entry_t *e = nudgel_keyq_first_waiting(w->tenant_waits); e;
         e = nudgel_keyq_next_waiting(e))
        *nudgel_keyq_not_before(e) = 0;
    kick(w);
}

/*
 * DESIGN §5 ordering: jobs to one recipient (tenant, to) are submitted in
 * order. The first holds the recipient until its submission is answered;
 * later ones wait behind it in poll order. A job that leaves for a retry tier
 * gives up its place (it comes back later, as a new arrival).
 */
void recipient_gate(worker_t *w, msg_t *m)
{
    char key[NUDGEL_TENANT_ID_MAX + 40];
    size_t len = recipient_key(m, key, sizeof(key));
    nudgel_keyq_entry_t *e = len ? nudgel_keyq_get(w->recipients, key, len, true) : NULL;
    if (!e) {
        msg_fail(m);
        msg_release(m);
        return;
    }
    if (*nudgel_keyq_holders(e) == 0) {
        *nudgel_keyq_holders(e) = 1;
        m->holds_recipient = true;
        tenant_gate(w, m);
    } else if (!nudgel_keyq_push(w->recipients, e, m)) {
        msg_fail(m);
        msg_release(m);
    }
}

/* @p m's submission is over (answered, or abandoned before it): free its places. */
void leave_gates(worker_t *w, msg_t *m)
{
    if (m->holds_tenant) {
        m->holds_tenant = false;
        nudgel_throttle_tenants_release(w->tenants, m->job.tenant_id);
        nudgel_keyq_entry_t *e =
            nudgel_keyq_get(w->tenant_waits, m->job.tenant_id, strlen(m->job.tenant_id), false);
        if (e && nudgel_keyq_waiting(e)) {
            *nudgel_keyq_not_before(e) = 0; /* gates_tick() admits */
            kick(w);
        }
        if (w->tenant_table_full) {
            w->tenant_table_full = false;
            gates_limits_changed(w);
        }
    }
    if (m->holds_recipient) {
        m->holds_recipient = false;
        char key[NUDGEL_TENANT_ID_MAX + 40];
        size_t len = recipient_key(m, key, sizeof(key));
        nudgel_keyq_entry_t *e = nudgel_keyq_get(w->recipients, key, len, false);
        if (!e)
            return;
        msg_t *next = nudgel_keyq_pop(w->recipients, e);
        if (next) {
            next->holds_recipient = true; /* the place passes on; holders stays 1 */
            if (nudgel_batchq_push(w->recipient_ready, next) != NUDGEL_OK) {
                msg_fail(next);
                msg_release(next);
            }
            kick(w); /* gates_tick() takes it on */
        } else {
            *nudgel_keyq_holders(e) = 0;
            nudgel_keyq_drop_if_idle(w->recipients, e);
        }
    }
}
