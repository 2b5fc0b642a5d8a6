/*
 * gateway_lanes.c — one lane per gateway: a token bucket at this worker's
 * fleet share of the gateway's TPS, a cap on submissions awaiting an answer,
 * and a circuit breaker whose open circuit sends jobs on along their route.
 * Jobs wait on a lane for a token (a loop timer is armed for the earliest
 * next token of a lane with jobs waiting) or for an answer (the in-flight
 * cap); a job with a token takes a slot under the cap and goes to its
 * hand-over (handover.c: its receipt marked `submitting`), then
 * lane_submit() sends it with the HTTP client on the loop and
 * on_gateway_answer() classifies the answer into an outcome (outcomes.c).
 * An answer lost or unreadable after the request went out is an unknown
 * outcome: the gateway's unknown_outcome policy holds it (final failed,
 * outcome_unknown) or sends it again (unknown_outcome(), handover.c).
 * While the worker drains, jobs still waiting on a lane are handed back.
 * A gateway's error answers and its breaker's transitions are logged, at
 * most a few lines a second per gateway.
 *
 * An open breaker closes again: the lanes' timer is also armed for the end
 * of each open interval, when the breaker turns half-open (a gauge per
 * gateway shows it); the next job routed to it is the probe, and jobs with
 * no other open gateway wait on the lane for the probe's answer. While every
 * gateway of a route is open, its jobs wait on the retry tiers and end
 * failed only at the end of the ladder. An answer refusing our credentials
 * (an account-level 401/403) is the gateway's fault: it counts against the
 * breaker, is logged at error and counted, and the job moves on at once to
 * the next gateway of its route (a retry tier when there is none).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#include "messages.h"

#define ANSWERS_LOG_LINES 5 /* per gateway per second: 4xx, 5xx, transport errors */
#define BREAKER_LOG_LINES 5 /* per gateway per second: circuit transitions */
#define AUTH_LOG_LINES    2 /* per gateway per second: credentials refused */

static gateway_lane_t *lane_for(worker_t *w, const nudgel_gateway_t *gw)
{
    for (size_t i = 0; i < w->lane_count; i++)
        if (w->lanes[i].gateway == gw)
            return &w->lanes[i];
    return NULL;
}

static void enqueue_on_lane(gateway_lane_t *lane, msg_t *m)
{
    m->gateway = lane->gateway;
    m->next_waiting = NULL;
    if (lane->tail)
        lane->tail->next_waiting = m;
    else
        lane->head = m;
    lane->tail = m;
}

/* Whether @p lane's circuit is open and not yet due for a probe. */
static bool circuit_open(const gateway_lane_t *lane, int64_t now_us)
{
    return lane->breaker.state == NUDGEL_BREAKER_OPEN &&
           now_us - lane->breaker.opened_at_us < lane->breaker.open_us;
}

/* The gauge's value of a breaker state: 0 closed, 1 open, 2 half-open. */
static double state_gauge(nudgel_breaker_state_t state)
{
    switch (state) {
    case NUDGEL_BREAKER_CLOSED:
        return 0;
    case NUDGEL_BREAKER_OPEN:
        return 1;
    case NUDGEL_BREAKER_HALF_OPEN:
        return 2;
    }
    return 0;
}

/* Logs a change of @p lane's circuit (rate-limited per gateway) and sets its gauge. */
static void breaker_changed(worker_t *w, gateway_lane_t *lane, nudgel_breaker_state_t before)
{
    if (lane->breaker.state == before)
        return;
    nudgel_metric_set(w->m_breaker_state, nudgel_gateway_name(lane->gateway),
                      state_gauge(lane->breaker.state));
    NUDGEL_LOG_LIMITED(&lane->breaker_log, NUDGEL_LOG_WARN, NULL, "gateway %s: circuit %s (was %s)",
                       nudgel_gateway_name(lane->gateway),
                       nudgel_breaker_state_name(lane->breaker.state),
                       nudgel_breaker_state_name(before));
}

/*
 * The first gateway of @p m's route, after @p after (NULL: from the start),
 * whose circuit is not open (an open one whose time is up takes a probe);
 * NULL when every one is.
 */
static gateway_lane_t *next_open_lane(worker_t *w, const msg_t *m, const nudgel_gateway_t *after)
{
    size_t i = 0;
    if (after)
        while (i < m->route.count && m->route.gateways[i] != after)
            i++;
    int64_t now = nudgel_mono_us();
    for (i = after ? i + 1 : 0; i < m->route.count; i++) {
        gateway_lane_t *lane = lane_for(w, m->route.gateways[i]);
        if (lane && !circuit_open(lane, now))
            return lane;
    }
    return NULL;
}

/* Milliseconds until the first of @p m's gateways may take a probe again. */
static int64_t until_a_circuit_half_opens(worker_t *w, const msg_t *m)
{
    int64_t now = nudgel_mono_us(), best = -1;
    for (size_t i = 0; i < m->route.count; i++) {
        gateway_lane_t *lane = lane_for(w, m->route.gateways[i]);
        if (!lane)
            continue;
        int64_t left = lane->breaker.opened_at_us + lane->breaker.open_us - now;
        left = left > 0 ? left / 1000 : 0;
        if (best < 0 || left < best)
            best = left;
    }
    return best;
}

/* Onto its gateway's lane, or a retry hop when every circuit of its route is open. */
void to_lane(worker_t *w, msg_t *m)
{
    if (w->draining) {
        hand_back(m);
        return;
    }
    gateway_lane_t *lane = next_open_lane(w, m, NULL);
    if (lane) {
        enqueue_on_lane(lane, m);
        return;
    }
    leave_gates(w, m);
    retry_or_give_up(m, "circuit_open", "every gateway of the route has an open circuit",
                     until_a_circuit_half_opens(w, m));
}

/*
 * The receipt state a final gateway outcome leaves: the one mapping of the
 * carriers' nudgel_gateway_receipt_t onto nudgel_receipt_state_t.
 */
static nudgel_receipt_state_t receipt_state_of(nudgel_gateway_receipt_t r)
{
    switch (r) {
    case NUDGEL_GATEWAY_RECEIPT_SENT:
        return NUDGEL_RECEIPT_SENT;
    case NUDGEL_GATEWAY_RECEIPT_REJECTED:
        return NUDGEL_RECEIPT_REJECTED;
    case NUDGEL_GATEWAY_RECEIPT_FAILED:
    case NUDGEL_GATEWAY_RECEIPT_NONE: /* TRANSIENT: never asked, it ends no job */
        return NUDGEL_RECEIPT_FAILED;
    }
    return NUDGEL_RECEIPT_FAILED;
}

static void on_gateway_answer(void *opaque, const nudgel_http_response_t *r)
{
    msg_t *m = opaque;
    worker_t *w = m->w;
    nudgel_gateway_response_t resp = {
        .transport_error = r->transport_error,
        .request_sent = r->request_sent,
        .transport_detail = r->error,
        .http_status = (int)r->status,
        .body = r->body,
        .body_len = r->body_len,
        .retry_after = r->retry_after,
        .now_unix_ms = nudgel_now_unix_ms(),
    };
    nudgel_gateway_outcome_t out;
    nudgel_metric_observe(w->m_submit_latency, NULL, r->total_ms / 1000.0);
    nudgel_gateway_classify(m->gateway, &resp, &out);
    const char *gw = nudgel_gateway_name(m->gateway);
    nudgel_metric_observe2(w->m_gw_request, gw, nudgel_gateway_request_outcome(&out, r->timed_out),
                           r->total_ms / 1000.0);
    gateway_lane_t *lane = lane_for(w, m->gateway);
    lane->in_flight--;
    if (out.kind == NUDGEL_GATEWAY_TRANSIENT && out.credentials_refused) {
        nudgel_log_ctx_t ctx = msg_log_ctx(m);
        nudgel_metric_add(w->m_auth_failures, gw, 1);
        NUDGEL_LOG_LIMITED(&lane->auth_log, NUDGEL_LOG_ERROR, &ctx,
                           "gateway %s: credentials refused (HTTP %ld, %s: %s): check its API key; "
                           "messages go on along their route",
                           gw, r->status, out.error_code, out.error_message);
    } else if (r->transport_error || r->status >= 400) {
        nudgel_log_ctx_t ctx = msg_log_ctx(m);
        char answer[64];
        if (r->transport_error || r->status == 0)
            snprintf(answer, sizeof(answer), "%s", r->timed_out ? "timed out" : "no answer");
        else
            snprintf(answer, sizeof(answer), "HTTP %ld", r->status);
        NUDGEL_LOG_LIMITED(&lane->answers_log, NUDGEL_LOG_WARN, &ctx,
                           "gateway %s: %s after %.0f ms (%s: %s)%s", gw, answer, r->total_ms,
                           out.error_code[0] ? out.error_code : "-",
                           out.error_message[0] ? out.error_message : r->error,
                           out.kind == NUDGEL_GATEWAY_TRANSIENT ? "; will retry" : "");
    }
    nudgel_breaker_state_t before = lane->breaker.state;
    /* Half-open, only the probe's answer decides (not a late one sent before it opened). */
    if (before != NUDGEL_BREAKER_HALF_OPEN || m->probe)
        nudgel_breaker_record(&lane->breaker, out.kind == NUDGEL_GATEWAY_TRANSIENT,
                              nudgel_mono_us());
    m->probe = false;
    breaker_changed(w, lane, before);
    if (out.kind == NUDGEL_GATEWAY_TRANSIENT && out.credentials_refused) {
        gateway_lane_t *other = next_open_lane(w, m, m->gateway);
        if (other) {
            enqueue_on_lane(other, m); /* its gates stay held: it is still being sent */
            return;
        }
    }
    leave_gates(w, m);
    switch (out.kind) {
    case NUDGEL_GATEWAY_SENT:
        finish(m, receipt_state_of(out.receipt), NULL, gw, out.message_id, NULL, NULL,
               out.has_cost ? out.cost_amount : NULL, out.has_cost ? out.currency : NULL, NULL);
        break;
    case NUDGEL_GATEWAY_PERMANENT:
        finish(m, receipt_state_of(out.receipt), nudgel_messages_gateway_failure(out.receipt), gw,
               NULL, out.error_code, out.error_message, NULL, NULL, NULL);
        break;
    case NUDGEL_GATEWAY_TRANSIENT:
        if (out.maybe_accepted) {
            nudgel_metric_add(w->m_outcomes, "maybe_accepted", 1);
            if (unknown_outcome(m, m->gateway, gw, out.error_message))
                break;
        }
        retry_or_give_up(m, out.error_code, out.error_message, out.retry_after_ms);
        break;
    }
}

/* A probe that never reached the gateway (the request could not be built or sent). */
static void give_back_probe(worker_t *w, msg_t *m)
{
    if (!m->probe)
        return;
    m->probe = false;
    lane_for(w, m->gateway)->breaker.probe_in_flight = false;
}

void lane_give_back(worker_t *w, msg_t *m)
{
    give_back_probe(w, m);
    gateway_lane_t *lane = lane_for(w, m->gateway);
    if (lane && lane->in_flight > 0)
        lane->in_flight--;
    kick(w); /* the slot may take the lane's next job */
}

void lane_submit(msg_t *m)
{
    worker_t *w = m->w;
    char errstr[256];
    nudgel_gateway_request_t req;
    nudgel_gateway_message_t gm = {
        .client_ref = m->job.id,
        .to = m->job.to,
        .from = m->job.from,
        .text = m->text,
        .callback_url =
            lane_for(w, m->gateway)->callback_url[0] ? lane_for(w, m->gateway)->callback_url : NULL,
        /* what is left of its validity now (Infobip's validityPeriod) */
        .validity_minutes =
            nudgel_gateway_validity_minutes(msg_expires_at_ms(w, m), nudgel_now_unix_ms()),
    };
    if (nudgel_gateway_build_request(m->gateway, &gm, &req, errstr, sizeof(errstr)) != NUDGEL_OK) {
        lane_give_back(w, m);
        leave_gates(w, m);
        finish(m, NUDGEL_RECEIPT_FAILED, NUDGEL_MSG_FAIL_INVALID_REQUEST,
               nudgel_gateway_name(m->gateway), NULL, "invalid_request", errstr, NULL, NULL, NULL);
        return;
    }
    /* the gateway's own limits (gateways file: connect_timeout_ms, timeout_ms) */
    nudgel_http_request_t hr = {
        .method = req.method,
        .url = req.url,
        .body = req.body,
        .body_len = req.body_len,
        .connect_timeout_ms = (long)nudgel_gateway_connect_timeout_ms(m->gateway),
        .total_timeout_ms = (long)nudgel_gateway_timeout_ms(m->gateway),
    };
    for (size_t i = 0; i < req.header_count && i < NUDGEL_HTTP_MAX_HEADERS - 1; i++)
        hr.headers[i] = req.headers[i];
    nudgel_err_t err = nudgel_http_submit(w->http, &hr, on_gateway_answer, m);
    nudgel_gateway_request_clear(&req);
    if (err == NUDGEL_OK)
        return; /* its slot was taken by drain_lanes() */
    lane_give_back(w, m);
    leave_gates(w, m);
    retry_or_give_up(m, "submit_failed", nudgel_strerror(err), -1);
}

/*
 * Sends what each gateway allows now (its token bucket, its in-flight cap,
 * its circuit); a job whose gateway's circuit opened while it waited moves to
 * the next gateway of its route, or to a retry tier when none is left. A lane
 * left waiting for a token arms the lanes' timer for it; one waiting for an
 * answer goes on when the answer comes (this hook runs again).
 */
void drain_lanes(void *opaque)
{
    worker_t *w = opaque;
    int64_t now = nudgel_mono_us(), next = INT64_MAX;
    for (size_t i = 0; i < w->lane_count; i++) {
        gateway_lane_t *lane = &w->lanes[i];
        nudgel_breaker_state_t was = lane->breaker.state;
        if (nudgel_breaker_poll(&lane->breaker, now))
            breaker_changed(w, lane, was);
    }
    for (size_t i = 0; i < w->lane_count && w->draining; i++) {
        gateway_lane_t *lane = &w->lanes[i];
        while (lane->head) { /* not handed over: back to the next owner */
            msg_t *m = lane->head;
            lane->head = m->next_waiting;
            if (!lane->head)
                lane->tail = NULL;
            hand_back(m);
        }
    }
    for (size_t i = 0; i < w->lane_count; i++) {
        gateway_lane_t *lane = &w->lanes[i];
        while (lane->head && lane->in_flight < w->gateway_max_in_flight) {
            msg_t *m = lane->head;
            if (nudgel_throttle_bucket_tokens(lane->bucket, now) < 1) {
                int64_t due = nudgel_throttle_bucket_next_available(lane->bucket, 1, now);
                if (due < next)
                    next = due;
                break;
            }
            nudgel_breaker_state_t before = lane->breaker.state;
            bool allowed = nudgel_breaker_allow(&lane->breaker, now);
            breaker_changed(w, lane, before);
            gateway_lane_t *other = allowed ? NULL : next_open_lane(w, m, lane->gateway);
            if (!allowed && !other && lane->breaker.state == NUDGEL_BREAKER_HALF_OPEN)
                break; /* the probe is out: its answer decides, and runs this hook again */
            if (allowed)
                nudgel_throttle_bucket_try_take(lane->bucket, 1, now);
            lane->head = m->next_waiting;
            if (!lane->head)
                lane->tail = NULL;
            if (allowed) {
                m->probe = before != NUDGEL_BREAKER_CLOSED;
                lane->in_flight++; /* its slot, held from the hand-over to the answer */
                hand_over(w, m);
                continue;
            }
            if (other) {
                enqueue_on_lane(other, m);
            } else {
                leave_gates(w, m);
                retry_or_give_up(m, "circuit_open",
                                 "every gateway of the route has an open circuit",
                                 until_a_circuit_half_opens(w, m));
            }
        }
    }
    for (size_t i = 0; i < w->lane_count; i++) {
        const nudgel_breaker_t *b = &w->lanes[i].breaker;
        nudgel_metric_set(w->m_throttle_tokens, nudgel_gateway_name(w->lanes[i].gateway),
                          nudgel_throttle_bucket_tokens(w->lanes[i].bucket, now));
        if (b->state == NUDGEL_BREAKER_OPEN && b->opened_at_us + b->open_us < next)
            next = b->opened_at_us + b->open_us; /* it half-opens then */
    }
    if (next != INT64_MAX)
        nudgel_timer_arm_by(w->lanes_timer, next);
}

/*
 * DESIGN §5: a worker's bucket for a gateway runs at gateway_tps ×
 * assigned / total partitions of the jobs topic, so the fleet stays under the
 * carrier's cap without a coordinator. Recomputed when the assignment changes.
 */
void update_fleet_share(worker_t *w)
{
    int32_t assigned = nudgel_consumer_assigned_of(w->consumer, w->topic_jobs);
    if (assigned == w->shared_with || w->total_partitions < 1)
        return;
    w->shared_with = assigned;
    for (size_t i = 0; i < w->lane_count; i++) {
        gateway_lane_t *lane = &w->lanes[i];
        char errstr[128];
        double rate = 0;
        if (nudgel_throttle_fleet_share(nudgel_gateway_tps(lane->gateway), assigned,
                                        w->total_partitions, &rate) != NUDGEL_OK)
            continue;
        /* Rate 0 (no partitions) still lets retry-tier stragglers out, slowly. */
        double effective = rate > 0 ? rate : NUDGEL_THROTTLE_MIN_SHARE_TPS;
        if (nudgel_throttle_bucket_set_rate(lane->bucket, effective,
                                            (uint32_t)(effective < 1 ? 1 : effective),
                                            nudgel_mono_us(), errstr, sizeof(errstr)) != NUDGEL_OK)
            continue;
        lane->rate = effective;
        nudgel_log_info("gateway %s: %.2f TPS (%d of %d partitions of %u TPS)",
                        nudgel_gateway_name(lane->gateway), effective, assigned,
                        w->total_partitions, nudgel_gateway_tps(lane->gateway));
    }
}

/* Every per-gateway series of @p lane at start-up: a dashboard sees zeros, not gaps. */
static void announce_gateway(worker_t *w, const gateway_lane_t *lane)
{
    const char *name = nudgel_gateway_name(lane->gateway);
    nudgel_metric_set(w->m_breaker_state, name, state_gauge(lane->breaker.state));
    nudgel_metric_set(w->m_throttle_tokens, name,
                      nudgel_throttle_bucket_tokens(lane->bucket, nudgel_mono_us()));
    nudgel_metric_touch(w->m_end_to_end, name);
    nudgel_metric_touch(w->m_auth_failures, name);
    nudgel_metric_touch(w->m_unknown, name);
    nudgel_metric_touch(w->m_unknown_held, name);
    for (size_t k = 0; nudgel_gateway_request_outcomes[k]; k++)
        nudgel_metric_touch2(w->m_gw_request, name, nudgel_gateway_request_outcomes[k]);
}

/*
 * A lane's next token is due, or a breaker's open interval ended:
 * drain_lanes(), a turn hook, runs after the timers.
 */
static void on_lanes_timer(void *opaque)
{
    (void)opaque;
}

/*
 * Loads messages.gateways_file and makes one lane per gateway (the file
 * holds at most NUDGEL_GATEWAY_MAX = MAX_GATEWAYS, so every gateway has
 * one), each bucket at the gateway's full TPS until the first assignment
 * (update_fleet_share()).
 */
nudgel_err_t gateway_lanes_open(worker_t *w, char *errstr, size_t errstr_size)
{
    if (!(w->lanes_timer = nudgel_timer_new(w->loop, on_lanes_timer, w))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    /* A callback URL names each gateway's delivery-report token: read them then. */
    unsigned flags = w->callback_url && *w->callback_url ? NUDGEL_GATEWAY_LOAD_DLR_TOKENS : 0;
    if (nudgel_gateway_set_load_flags(nudgel_conf_get_str(w->conf, "messages.gateways_file"), flags,
                                      &w->gateways, errstr, errstr_size) != NUDGEL_OK)
        return NUDGEL_ERR_CONFIG;
    if (nudgel_gateway_set_count(w->gateways) > MAX_GATEWAYS) {
        snprintf(errstr, errstr_size, "%zu gateways, more than %d",
                 nudgel_gateway_set_count(w->gateways), MAX_GATEWAYS);
        return NUDGEL_ERR_CONFIG;
    }
    for (size_t i = 0; i < nudgel_gateway_set_count(w->gateways); i++) {
        gateway_lane_t *lane = &w->lanes[w->lane_count++];
        lane->gateway = nudgel_gateway_set_at(w->gateways, i);
        lane->answers_log = (nudgel_log_ratelimit_t)NUDGEL_LOG_RATELIMIT_INIT(
            "gateway error answers", ANSWERS_LOG_LINES, 1000);
        lane->breaker_log = (nudgel_log_ratelimit_t)NUDGEL_LOG_RATELIMIT_INIT(
            "gateway circuit transitions", BREAKER_LOG_LINES, 1000);
        lane->auth_log = (nudgel_log_ratelimit_t)NUDGEL_LOG_RATELIMIT_INIT(
            "gateway credentials refused", AUTH_LOG_LINES, 1000);
        /* Delivery reports: gateways that take a URL per message (Infobip's notifyUrl) get
           the receiver's; Africa's Talking's is set in its dashboard. */
        if (w->callback_url && *w->callback_url &&
            nudgel_gateway_callback_url(lane->gateway, w->callback_url, lane->callback_url,
                                        sizeof(lane->callback_url)) != 0)
            nudgel_log_warn(
                "gateway %s has no \"dlr\" token: no delivery-report URL is sent for it",
                nudgel_gateway_name(lane->gateway));
        nudgel_breaker_init(
            &lane->breaker, (uint32_t)nudgel_conf_get_int(w->conf, "messages.breaker_window"),
            (uint32_t)nudgel_conf_get_int(w->conf, "messages.breaker_min_calls"),
            (double)nudgel_conf_get_int(w->conf, "messages.breaker_failure_percent") / 100.0,
            nudgel_conf_get_int(w->conf, "messages.breaker_open_ms") * 1000);
        double tps = nudgel_gateway_tps(lane->gateway);
        if (nudgel_throttle_bucket_new(tps, (uint32_t)(tps < 1 ? 1 : tps), nudgel_mono_us(),
                                       &lane->bucket, errstr, errstr_size) != NUDGEL_OK)
            return NUDGEL_ERR_CONFIG;
        announce_gateway(w, lane);
    }
    return NUDGEL_OK;
}

void gateway_lanes_reload(worker_t *w, const nudgel_conf_t *conf)
{
    uint32_t min_calls = (uint32_t)nudgel_conf_get_int(conf, "messages.breaker_min_calls");
    double ratio = (double)nudgel_conf_get_int(conf, "messages.breaker_failure_percent") / 100.0;
    int64_t open_us = nudgel_conf_get_int(conf, "messages.breaker_open_ms") * 1000;
    for (size_t i = 0; i < w->lane_count; i++) {
        nudgel_breaker_t *b = &w->lanes[i].breaker;
        b->min_calls = min_calls;
        b->failure_ratio = ratio;
        b->open_us = open_us;
    }
}

void gateway_lanes_close(worker_t *w)
{
    for (size_t i = 0; i < w->lane_count; i++) {
        nudgel_throttle_bucket_free(w->lanes[i].bucket);
        nudgel_log_ratelimit_flush(&w->lanes[i].answers_log, NUDGEL_LOG_WARN);
        nudgel_log_ratelimit_flush(&w->lanes[i].breaker_log, NUDGEL_LOG_WARN);
        nudgel_log_ratelimit_flush(&w->lanes[i].auth_log, NUDGEL_LOG_ERROR);
    }
    w->lane_count = 0;
    nudgel_gateway_set_free(w->gateways);
    w->gateways = NULL;
    nudgel_timer_free(w->lanes_timer);
    w->lanes_timer = NULL;
}
