/*
 * outcome_labels.c — the messages worker's fixed label sets and the mapping
 * of a gateway's classified answer onto them (nudgel/outcome_labels.h).
 */
#include <stddef.h>

#include "nudgel/outcome_labels.h"

const char *const nudgel_gateway_request_outcomes[] = {
    NUDGEL_GW_OUTCOME_ACCEPTED, NUDGEL_GW_OUTCOME_REJECTED,  NUDGEL_GW_OUTCOME_FAILED,
    NUDGEL_GW_OUTCOME_RETRY,    NUDGEL_GW_OUTCOME_THROTTLED, NUDGEL_GW_OUTCOME_AUTH_FAILED,
    NUDGEL_GW_OUTCOME_TIMEOUT,  NUDGEL_GW_OUTCOME_UNKNOWN,   NULL,
};

const char *const nudgel_messages_failure_reasons[] = {
    NUDGEL_MSG_FAIL_MALFORMED,         NUDGEL_MSG_FAIL_CLAIM_FAILED,
    NUDGEL_MSG_FAIL_EXPIRED,           NUDGEL_MSG_FAIL_TEMPLATE,
    NUDGEL_MSG_FAIL_ENCODING,          NUDGEL_MSG_FAIL_NO_ROUTE,
    NUDGEL_MSG_FAIL_INVALID_REQUEST,   NUDGEL_MSG_FAIL_REJECTED,
    NUDGEL_MSG_FAIL_GATEWAY_FAILED,    NUDGEL_MSG_FAIL_OUTCOME_UNKNOWN,
    NUDGEL_MSG_FAIL_RETRIES_EXHAUSTED, NULL,
};

const char *nudgel_gateway_request_outcome(const nudgel_gateway_outcome_t *out, bool timed_out)
{
    if (!out)
        return NUDGEL_GW_OUTCOME_UNKNOWN;
    switch (out->kind) {
    case NUDGEL_GATEWAY_SENT:
        return NUDGEL_GW_OUTCOME_ACCEPTED;
    case NUDGEL_GATEWAY_PERMANENT:
        return out->receipt == NUDGEL_GATEWAY_RECEIPT_REJECTED ? NUDGEL_GW_OUTCOME_REJECTED
                                                               : NUDGEL_GW_OUTCOME_FAILED;
    case NUDGEL_GATEWAY_TRANSIENT:
        if (out->credentials_refused)
            return NUDGEL_GW_OUTCOME_AUTH_FAILED;
        if (timed_out)
            return NUDGEL_GW_OUTCOME_TIMEOUT;
        if (out->maybe_accepted)
            return NUDGEL_GW_OUTCOME_UNKNOWN;
        if (out->http_status == 429)
            return NUDGEL_GW_OUTCOME_THROTTLED;
        return NUDGEL_GW_OUTCOME_RETRY;
    }
    return NUDGEL_GW_OUTCOME_UNKNOWN;
}

const char *nudgel_messages_gateway_failure(nudgel_gateway_receipt_t r)
{
    return r == NUDGEL_GATEWAY_RECEIPT_REJECTED ? NUDGEL_MSG_FAIL_REJECTED
                                                : NUDGEL_MSG_FAIL_GATEWAY_FAILED;
}
