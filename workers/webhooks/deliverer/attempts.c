/*
 * attempts.c — one HTTP attempt: the SSRF verdict of the target (guard.c),
 * the Standard Webhooks signature over the exact body bytes, the POST on
 * curl multi (on the loop: the answer comes from a loop callback), and the
 * answer classified into the job's outcome (retry schedule, permanent
 * failure, 410 disabling the endpoint on the lookups connection first; a
 * 429/503 with Retry-After throttles the endpoint's lane until then).
 * Endpoint 4xx/5xx answers are logged, rate-limited.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "deliverer.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/webhooks/outcome.h"

#define SNIPPET_BYTES 1024

/* Copies at most SNIPPET_BYTES of @p body as valid UTF-8 without NULs (a text column). */
static char *make_snippet(const char *body, size_t len)
{
    if (!body || len == 0)
        return NULL;
    if (len > SNIPPET_BYTES)
        len = SNIPPET_BYTES;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)body;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        bool ok = n > 0 && i + n <= len && !(n == 1 && c == 0) && !(n == 2 && c < 0xc2);
        for (size_t k = 1; ok && k < n; k++)
            ok = (s[i + k] & 0xc0) == 0x80;
        if (!ok) {
            out[o++] = '?';
            i++;
            continue;
        }
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
    return out;
}

static uint64_t random_u64(void)
{
    uint64_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint64_t)nudgel_mono_us() * 0x9e3779b97f4a7c15ull;
    return r;
}

/*
 * A failed attempt (or a refusal before sending): retried on the schedule,
 * or exhausted after the last attempt; permanent failures end at once.
 */
void attempt_failed(wjob_t *j, nudgel_outcome_kind_t kind, int64_t not_before_ms)
{
    worker_t *w = j->w;
    if (kind == NUDGEL_OUTCOME_PERMANENT || kind == NUDGEL_OUTCOME_DISABLE_ENDPOINT) {
        j->end = END_FAILED;
        j->delivery_status = WH_DELIVERY_FAILED;
        j->permanent = true;
    } else if (nudgel_retry_schedule_is_last(&w->s.schedule, (unsigned)j->attempt)) {
        j->end = END_EXHAUSTED;
        j->delivery_status = WH_DELIVERY_EXHAUSTED;
    } else {
        int64_t delay =
            nudgel_retry_schedule_delay_ms(&w->s.schedule, (unsigned)j->attempt, random_u64());
        int64_t at = nudgel_now_unix_ms() + (delay > 0 ? delay : 0);
        if (kind == NUDGEL_OUTCOME_BACKOFF && not_before_ms > at)
            at = not_before_ms;
        j->end = END_RETRY;
        j->delivery_status = WH_DELIVERY_DELIVERING;
        j->next_attempt_ms = at;
    }
    outcome_add(j);
}

static void on_answer(void *opaque, const nudgel_http_response_t *r)
{
    wjob_t *j = opaque;
    worker_t *w = j->w;
    endpoint_t *ep = j->ep;
    ep->in_flight--;
    j->record_attempt = true;
    j->latency_ms = (int)(r->total_ms + 0.5);
    lane_observe_latency(w, ep, (int64_t)(r->total_ms * 1000.0), nudgel_mono_us());
    j->status_code = r->status;
    nudgel_attempt_result_t ar = {
        .transport = nudgel_outcome_transport_from_curl(r->curl_code),
        .http_status = r->transport_error ? 0 : r->status,
        .retry_after = r->retry_after,
        .now_ms = nudgel_now_unix_ms(),
        .max_retry_after_ms = w->s.max_retry_after_ms,
    };
    if (r->transport_error && ar.transport == NUDGEL_TRANSPORT_OK)
        ar.transport = NUDGEL_TRANSPORT_ERROR;
    nudgel_outcome_t out = nudgel_outcome_classify(&ar);
    nudgel_metric_observe(w->m_latency, nudgel_outcome_kind_name(out.kind), r->total_ms / 1000.0);
    if (!r->transport_error)
        j->snippet = make_snippet(r->body, r->body_len);
    if (out.error_class) {
        snprintf(j->error_class, sizeof(j->error_class), "%s", out.error_class);
        if (r->transport_error)
            snprintf(j->error_message, sizeof(j->error_message), "%s", r->error);
        else
            snprintf(j->error_message, sizeof(j->error_message), "HTTP %ld", r->status);
    }
    nudgel_metric_add(w->m_attempts, out.error_class ? out.error_class : "delivered", 1);
    if (!r->transport_error && r->status >= 400)
        job_log_limited(j, &w->log_answers, NUDGEL_LOG_WARN,
                        "endpoint %s answered HTTP %ld to delivery %s (attempt %d)", ep->id,
                        r->status, j->job.id, j->attempt);
    ep->failing = out.kind != NUDGEL_OUTCOME_DELIVERED;
    switch (out.kind) {
    case NUDGEL_OUTCOME_DELIVERED:
        j->end = END_DELIVERED;
        j->delivery_status = WH_DELIVERY_DELIVERED;
        outcome_add(j);
        break;
    case NUDGEL_OUTCOME_DISABLE_ENDPOINT:
        snprintf(j->disabled_reason, sizeof(j->disabled_reason),
                 "the endpoint answered 410 Gone (delivery %s, attempt %d)", j->job.id, j->attempt);
        ep->enabled = false; /* at once for the jobs behind it; the row follows */
        lookups_disable(w, j);
        break;
    case NUDGEL_OUTCOME_BACKOFF:
        if (out.not_before_ms > ar.now_ms) {
            /* Retry-After throttles the endpoint: no new request to it before then. */
            int64_t until = nudgel_mono_us() + (out.not_before_ms - ar.now_ms) * 1000;
            if (until > ep->throttled_until_us)
                ep->throttled_until_us = until;
        }
        attempt_failed(j, out.kind, out.not_before_ms);
        break;
    case NUDGEL_OUTCOME_RETRY:
    case NUDGEL_OUTCOME_PERMANENT:
        attempt_failed(j, out.kind, out.not_before_ms);
        break;
    }
}

/* @p j's endpoint row is loaded and names another tenant than the job's (DESIGN §5). */
bool endpoint_foreign(const wjob_t *j)
{
    const endpoint_t *ep = j->ep;
    return ep && ep->loaded && ep->found && strcmp(ep->tenant_id, j->job.tenant_id) != 0;
}

/*
 * Refuses @p j (tenant isolation): nothing is sent, no delivery row is
 * written (the (endpoint, event) pair and the delivery id stay the owner's),
 * a failed event and a dead letter follow (events.c). The error names only
 * what the job itself carries: never the other tenant, its URL or its
 * endpoint's state. @p message NULL: the endpoint-mismatch text.
 */
void job_refuse(wjob_t *j, const char *error_class, const char *message)
{
    snprintf(j->error_class, sizeof(j->error_class), "%s", error_class);
    if (message)
        snprintf(j->error_message, sizeof(j->error_message), "%s", message);
    else
        snprintf(j->error_message, sizeof(j->error_message),
                 "the endpoint %s does not belong to tenant %s", j->job.endpoint_id,
                 j->job.tenant_id);
    job_log_limited(j, &j->w->log_dead, NUDGEL_LOG_WARN, "webhook job %s refused: %s: %s",
                    j->job.id, j->error_class, j->error_message);
    nudgel_metric_add(j->w->m_attempts, error_class, 1);
    j->end = END_REFUSED;
    j->delivery_status = WH_DELIVERY_FAILED;
    j->permanent = true;
    j->attempt = 0; /* nothing was attempted */
    outcome_add(j);
}

/* Signs and sends @p j to its endpoint, or ends it when it cannot be sent. */
void submit(worker_t *w, wjob_t *j)
{
    endpoint_t *ep = j->ep;
    if (endpoint_foreign(j)) {
        job_refuse(j, WH_ENDPOINT_TENANT_MISMATCH, NULL);
        return;
    }
    if (!ep->found || !ep->enabled || ep->secret_broken) {
        snprintf(j->error_class, sizeof(j->error_class), "%s",
                 !ep->found     ? WH_ENDPOINT_NOT_FOUND
                 : !ep->enabled ? "endpoint_disabled"
                                : "secret_unavailable");
        snprintf(j->error_message, sizeof(j->error_message), "%.600s",
                 !ep->found     ? "the endpoint does not exist"
                 : !ep->enabled ? "the endpoint is disabled"
                                : ep->secret_error);
        if (ep->secret_broken) {
            /* Maybe the keyring lacks a key a newer deployment has: retry, not cancel. */
            j->record_attempt = true;
            attempt_failed(j, NUDGEL_OUTCOME_RETRY, 0);
            return;
        }
        j->end = END_FAILED;
        j->permanent = true;
        j->delivery_status = WH_DELIVERY_CANCELLED;
        outcome_add(j);
        return;
    }
    const vetted_t *v = guard_vet(w, ep->url);
    if (!v || v->err != NUDGEL_OK) {
        j->record_attempt = true;
        if (v && v->err == NUDGEL_ERR_IO) {
            snprintf(j->error_class, sizeof(j->error_class), "dns");
            snprintf(j->error_message, sizeof(j->error_message), "%s", v->verdict.reason);
            attempt_failed(j, NUDGEL_OUTCOME_RETRY, 0);
        } else {
            snprintf(j->error_class, sizeof(j->error_class), "ssrf_refused");
            snprintf(j->error_message, sizeof(j->error_message), "refused by the SSRF guard: %s",
                     v ? v->verdict.reason : "out of memory");
            nudgel_metric_add(w->m_attempts, "ssrf_refused", 1);
            attempt_failed(j, NUDGEL_OUTCOME_PERMANENT, 0);
        }
        return;
    }
    char *body = json_dumps(j->job.payload, JSON_COMPACT);
    if (!body) {
        j->record_attempt = true;
        snprintf(j->error_class, sizeof(j->error_class), "transport");
        snprintf(j->error_message, sizeof(j->error_message), "out of memory building the body");
        attempt_failed(j, NUDGEL_OUTCOME_RETRY, 0);
        return;
    }
    size_t body_len = strlen(body);
    int64_t ts = nudgel_now_unix_ms() / 1000;
    char signature[2 * NUDGEL_WH_SIGNATURE_MAX + 8];
    char h_id[200], h_ts[64], h_sig[sizeof(signature) + 32], h_tp[96];
    nudgel_wh_signature_header(ep->keys, ep->key_count, j->job.event_id, ts, body, body_len,
                               signature, sizeof(signature));
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", j->job.event_id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", (long long)ts);
    snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", signature);
    nudgel_http_request_t req = {
        .method = "POST",
        .url = ep->url,
        .headers = {"content-type: application/json", "user-agent: Nudgel-Webhooks/1", h_id, h_ts,
                    h_sig},
        .body = body,
        .body_len = body_len,
        .connect_timeout_ms = w->s.connect_ms,
        .total_timeout_ms = w->s.total_ms,
        .max_response_bytes = w->s.max_response,
        .resolve = v->verdict.resolve[0] ? v->verdict.resolve : NULL,
    };
    if (j->traceparent[0]) {
        snprintf(h_tp, sizeof(h_tp), "traceparent: %s", j->traceparent);
        req.headers[5] = h_tp;
    }
    j->stage = STAGE_HTTP;
    nudgel_err_t err = nudgel_http_submit(w->http, &req, on_answer, j);
    free(body);
    if (err != NUDGEL_OK) {
        j->record_attempt = true;
        snprintf(j->error_class, sizeof(j->error_class), "%s",
                 err == NUDGEL_ERR_INVALID_ARG ? "bad_url" : "transport");
        snprintf(j->error_message, sizeof(j->error_message), "request not started: %s",
                 nudgel_strerror(err));
        attempt_failed(
            j, err == NUDGEL_ERR_INVALID_ARG ? NUDGEL_OUTCOME_PERMANENT : NUDGEL_OUTCOME_RETRY, 0);
        return;
    }
    if (ep->in_flight++ == 0)
        ep->progress_us = nudgel_mono_us(); /* a stall is measured from here */
}
