/*
 * nudgel/webhooks/outcome.h — what one HTTP attempt means for a delivery.
 *
 *   2xx                   delivered
 *   3xx                   failure, retried (redirects are never followed)
 *   410 Gone              the endpoint is disabled, the delivery ends
 *   429, 502, 503, 504    back off: retried no earlier than Retry-After
 *                         (delta-seconds or HTTP-date) when the endpoint gave one
 *   any other status      failure, retried
 *   timeout, connection   failure, retried
 *   SSRF refusal, bad URL permanent failure, no retry
 *
 * Whether a retry is left is the retry schedule's business, not this one's.
 */
#ifndef NUDGEL_WEBHOOKS_OUTCOME_H
#define NUDGEL_WEBHOOKS_OUTCOME_H

#include <stdbool.h>
#include <stdint.h>

typedef enum nudgel_outcome_kind {
    NUDGEL_OUTCOME_DELIVERED,
    NUDGEL_OUTCOME_RETRY,            /* retry on the schedule */
    NUDGEL_OUTCOME_BACKOFF,          /* retry on the schedule, and not before not_before_ms */
    NUDGEL_OUTCOME_DISABLE_ENDPOINT, /* 410: end the delivery and disable the endpoint */
    NUDGEL_OUTCOME_PERMANENT,        /* end the delivery as failed, no retry */
} nudgel_outcome_kind_t;

/** How an attempt ended below HTTP. */
typedef enum nudgel_transport {
    NUDGEL_TRANSPORT_OK = 0,       /* a response arrived (its status decides) */
    NUDGEL_TRANSPORT_TIMEOUT,      /* connect or total timeout */
    NUDGEL_TRANSPORT_CONNECT,      /* refused, reset, unreachable */
    NUDGEL_TRANSPORT_DNS,          /* the host did not resolve */
    NUDGEL_TRANSPORT_TLS,          /* handshake or certificate failure */
    NUDGEL_TRANSPORT_ERROR,        /* any other transport error (send, receive, ...) */
    NUDGEL_TRANSPORT_SSRF_REFUSED, /* the SSRF guard refused the target */
    NUDGEL_TRANSPORT_BAD_URL,      /* the URL cannot be used at all */
} nudgel_transport_t;

/** One attempt as seen by the client. Borrowed for the call. */
typedef struct nudgel_attempt_result {
    nudgel_transport_t transport;
    long http_status;           /* with NUDGEL_TRANSPORT_OK; 0 otherwise */
    const char *retry_after;    /* the Retry-After header value, or NULL */
    int64_t now_ms;             /* when the response arrived (Unix ms) */
    int64_t max_retry_after_ms; /* cap on a Retry-After delay; 0: no cap */
} nudgel_attempt_result_t;

typedef struct nudgel_outcome {
    nudgel_outcome_kind_t kind;
    /* BACKOFF: earliest next attempt (Unix ms) from Retry-After; 0 when the
     * endpoint gave none (or an unparseable one): then the schedule alone. */
    int64_t not_before_ms;
    /* Stable class for webhook_attempts.error_class and metrics: NULL when
     * delivered; "http_3xx", "http_4xx", "http_5xx", "http_410", "http_429",
     * "http_other", "timeout", "connect", "dns", "tls", "transport",
     * "ssrf_refused", "bad_url". Static. */
    const char *error_class;
} nudgel_outcome_t;

/** @brief Classifies one attempt (see the table above). */
nudgel_outcome_t nudgel_outcome_classify(const nudgel_attempt_result_t *result);

/** @brief "delivered", "retry", "backoff", "disable_endpoint", "permanent". */
const char *nudgel_outcome_kind_name(nudgel_outcome_kind_t kind);

/**
 * @brief Maps a libcurl CURLcode (as an int, so callers need not include
 * curl) to a transport class: CURLE_OK → OK, CURLE_OPERATION_TIMEDOUT →
 * TIMEOUT, CURLE_COULDNT_CONNECT → CONNECT, CURLE_COULDNT_RESOLVE_HOST →
 * DNS, SSL errors → TLS, CURLE_URL_MALFORMAT / UNSUPPORTED_PROTOCOL →
 * BAD_URL, anything else → ERROR.
 */
nudgel_transport_t nudgel_outcome_transport_from_curl(int curl_code);

/**
 * @brief Parses a Retry-After value: delta-seconds ("120") or an HTTP-date
 * ("Wed, 21 Oct 2015 07:28:00 GMT", also the obsolete RFC 850 and asctime
 * forms), relative to @p now_ms.
 * @returns 0 and the earliest retry time (Unix ms; a date in the past gives
 * @p now_ms) in @p not_before_ms, or -1 when @p value is malformed.
 */
int nudgel_retry_after_parse(const char *value, int64_t now_ms, int64_t *not_before_ms);

#endif
