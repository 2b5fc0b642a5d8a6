/* test_outcome_labels.c — gateway request outcomes and failure reasons: the mapping, closed lists.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/outcome_labels.h"

static bool listed(const char *const *list, const char *label)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], label) == 0)
            return true;
    return false;
}

static const char *of(nudgel_gateway_outcome_kind_t kind, nudgel_gateway_receipt_t receipt,
                      int http_status, bool maybe_accepted, bool credentials_refused,
                      bool timed_out)
{
    nudgel_gateway_outcome_t out = {
        .kind = kind,
        .receipt = receipt,
        .http_status = http_status,
        .maybe_accepted = maybe_accepted,
        .credentials_refused = credentials_refused,
    };
    const char *label = nudgel_gateway_request_outcome(&out, timed_out);
    assert_true(listed(nudgel_gateway_request_outcomes, label));
    return label;
}

static void test_request_outcomes(void **state)
{
    (void)state;
    assert_string_equal(
        of(NUDGEL_GATEWAY_SENT, NUDGEL_GATEWAY_RECEIPT_SENT, 200, false, false, false), "accepted");
    assert_string_equal(
        of(NUDGEL_GATEWAY_PERMANENT, NUDGEL_GATEWAY_RECEIPT_REJECTED, 200, false, false, false),
        "rejected");
    assert_string_equal(
        of(NUDGEL_GATEWAY_PERMANENT, NUDGEL_GATEWAY_RECEIPT_FAILED, 400, false, false, false),
        "failed");
    assert_string_equal(
        of(NUDGEL_GATEWAY_TRANSIENT, NUDGEL_GATEWAY_RECEIPT_NONE, 503, false, false, false),
        "retry");
    assert_string_equal(
        of(NUDGEL_GATEWAY_TRANSIENT, NUDGEL_GATEWAY_RECEIPT_NONE, 429, false, false, false),
        "throttled");
    assert_string_equal(
        of(NUDGEL_GATEWAY_TRANSIENT, NUDGEL_GATEWAY_RECEIPT_NONE, 401, false, true, false),
        "auth_failed");
    /* a timeout after the request went out is maybe accepted: still "timeout" */
    assert_string_equal(
        of(NUDGEL_GATEWAY_TRANSIENT, NUDGEL_GATEWAY_RECEIPT_NONE, 0, true, false, true), "timeout");
    assert_string_equal(
        of(NUDGEL_GATEWAY_TRANSIENT, NUDGEL_GATEWAY_RECEIPT_NONE, 200, true, false, false),
        "unknown");
    assert_string_equal(nudgel_gateway_request_outcome(NULL, false), "unknown");
}

static void test_failure_reasons(void **state)
{
    (void)state;
    assert_string_equal(nudgel_messages_gateway_failure(NUDGEL_GATEWAY_RECEIPT_REJECTED),
                        "rejected");
    assert_string_equal(nudgel_messages_gateway_failure(NUDGEL_GATEWAY_RECEIPT_FAILED),
                        "gateway_failed");
    size_t n = 0;
    for (; nudgel_messages_failure_reasons[n]; n++) {
        const char *r = nudgel_messages_failure_reasons[n];
        assert_true(strlen(r) > 0 && strlen(r) < 48);
        for (const char *p = r; *p; p++) /* snake_case */
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
        for (size_t k = 0; k < n; k++)
            assert_string_not_equal(nudgel_messages_failure_reasons[k], r);
    }
    assert_int_equal(n, 11);
    assert_true(listed(nudgel_messages_failure_reasons, "retries_exhausted"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_outcomes),
        cmocka_unit_test(test_failure_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
