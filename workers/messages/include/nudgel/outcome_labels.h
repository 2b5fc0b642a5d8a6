/*
 * nudgel/outcome_labels.h — the messages worker's fixed metric label sets,
 * and the one mapping from what happened to a label: the outcome of a
 * gateway request (nudgel_gateway_request_seconds{gateway,outcome}) and the
 * reason a job ends failed (nudgel_jobs_failed_total{reason}, the label of
 * its dead letter). The lists are closed: every configured gateway × every
 * outcome, and every reason, is announced at zero at start-up, so a label
 * never appears later that a dashboard or alert has not seen.
 *
 * Pure functions over the carriers' outcome (nudgel/gateway.h); the strings
 * are static. Any thread.
 */
#ifndef NUDGEL_OUTCOME_LABELS_H
#define NUDGEL_OUTCOME_LABELS_H

#include <stdbool.h>

#include "nudgel/gateway.h"

/* Gateway request outcomes. */
#define NUDGEL_GW_OUTCOME_ACCEPTED    "accepted"  /* SENT: the gateway took it */
#define NUDGEL_GW_OUTCOME_REJECTED    "rejected"  /* PERMANENT, receipt rejected (number, sender) */
#define NUDGEL_GW_OUTCOME_FAILED      "failed"    /* PERMANENT, any other reason */
#define NUDGEL_GW_OUTCOME_RETRY       "retry"     /* TRANSIENT: 5xx, transport error, AT 500-502 */
#define NUDGEL_GW_OUTCOME_THROTTLED   "throttled" /* TRANSIENT: HTTP 429 */
#define NUDGEL_GW_OUTCOME_AUTH_FAILED "auth_failed" /* TRANSIENT: credentials refused (401/403) */
#define NUDGEL_GW_OUTCOME_TIMEOUT     "timeout"     /* the request timed out (connect or total) */
#define NUDGEL_GW_OUTCOME_UNKNOWN     "unknown"     /* maybe accepted: the answer was lost */

/** The outcomes above, NULL-terminated (to announce them at start-up). */
extern const char *const nudgel_gateway_request_outcomes[];

/**
 * @brief The label of a classified answer @p out (borrowed); @p timed_out:
 * the HTTP client's connect or total timeout ended the request. Credentials
 * refused win over a timeout, a timeout over a lost answer, which wins over
 * 429. NULL @p out gives "unknown".
 */
const char *nudgel_gateway_request_outcome(const nudgel_gateway_outcome_t *out, bool timed_out);

/* Failure reasons of a messages job (a final state other than sent). */
#define NUDGEL_MSG_FAIL_MALFORMED       "malformed"       /* envelope or job fields */
#define NUDGEL_MSG_FAIL_CLAIM_FAILED    "claim_failed"    /* its claim statement failed alone */
#define NUDGEL_MSG_FAIL_EXPIRED         "expired"         /* validity ended before sending */
#define NUDGEL_MSG_FAIL_TEMPLATE        "template"        /* absent, or could not render */
#define NUDGEL_MSG_FAIL_ENCODING        "encoding"        /* the text could not be encoded */
#define NUDGEL_MSG_FAIL_NO_ROUTE        "no_route"        /* no gateway for the number */
#define NUDGEL_MSG_FAIL_INVALID_REQUEST "invalid_request" /* the request could not be built */
#define NUDGEL_MSG_FAIL_REJECTED        "rejected"        /* the gateway rejected it */
#define NUDGEL_MSG_FAIL_GATEWAY_FAILED  "gateway_failed"  /* the gateway failed it for good */
#define NUDGEL_MSG_FAIL_OUTCOME_UNKNOWN "outcome_unknown" /* held: never resent */
#define NUDGEL_MSG_FAIL_RETRIES_EXHAUSTED                                                          \
    "retries_exhausted" /* transient to the end of the ladder */

/** The reasons above, NULL-terminated (nudgel_fleet_metrics_reasons()). */
extern const char *const nudgel_messages_failure_reasons[];

/** @brief The failure reason of a PERMANENT gateway answer whose receipt is @p r. */
const char *nudgel_messages_gateway_failure(nudgel_gateway_receipt_t r);

#endif
