/*
 * test_receipt_dlrs.c — the pure half of nudgel/receipt_dlrs.h, table-driven:
 * what a carrier report asks of a receipt (every normalised status, and the
 * raw statuses carriers document as intermediate), the decision for every
 * (found, current state, report) triple against a model built from the
 * transition table, the expiry windows and their due rule, parsing of valid
 * and malformed records, and the operator of a network code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/phone.h"
#include "nudgel/receipt_dlrs.h"

#define S(x) NUDGEL_RECEIPT_##x

static nudgel_dlr_report_t report(nudgel_dlr_status_t st, const char *dialect, const char *raw)
{
    nudgel_dlr_report_t r;
    memset(&r, 0, sizeof(r));
    r.status = st;
    snprintf(r.dialect, sizeof(r.dialect), "%s", dialect);
    snprintf(r.raw_status, sizeof(r.raw_status), "%s", raw);
    return r;
}

static void test_target_table(void **state)
{
    (void)state;
    static const struct {
        nudgel_dlr_status_t st;
        const char *dialect, *raw;
        bool final;
        nudgel_receipt_state_t target;
    } cases[] = {
        {NUDGEL_DLR_DELIVERED, "generic", "", true, S(DELIVERED)},
        {NUDGEL_DLR_UNDELIVERED, "generic", "", true, S(UNDELIVERED)},
        {NUDGEL_DLR_REJECTED, "generic", "", true, S(UNDELIVERED)},
        {NUDGEL_DLR_FAILED, "generic", "", true, S(UNDELIVERED)},
        {NUDGEL_DLR_EXPIRED, "generic", "", true, S(EXPIRED)},
        {NUDGEL_DLR_SENT, "generic", "", false, 0},
        {NUDGEL_DLR_BUFFERED, "generic", "", false, 0},
        {NUDGEL_DLR_UNKNOWN, "generic", "", false, 0},
        /* Africa's Talking: Sent, Submitted, Buffered are never final */
        {NUDGEL_DLR_SENT, "africastalking", "Sent", false, 0},
        {NUDGEL_DLR_DELIVERED, "africastalking", "Submitted", false, 0},
        {NUDGEL_DLR_DELIVERED, "africastalking", "Buffered", false, 0},
        {NUDGEL_DLR_DELIVERED, "africastalking", "Success", true, S(DELIVERED)},
        {NUDGEL_DLR_FAILED, "africastalking", "Failed", true, S(UNDELIVERED)},
        {NUDGEL_DLR_REJECTED, "africastalking", "Rejected", true, S(UNDELIVERED)},
        /* Infobip: PENDING_* and DELIVERED_TO_OPERATOR are never final */
        {NUDGEL_DLR_DELIVERED, "infobip", "DELIVERED_TO_OPERATOR", false, 0},
        {NUDGEL_DLR_BUFFERED, "infobip", "PENDING_ENROUTE", false, 0},
        {NUDGEL_DLR_DELIVERED, "infobip", "PENDING_WAITING_DELIVERY", false, 0},
        {NUDGEL_DLR_DELIVERED, "infobip", "DELIVERED_TO_HANDSET", true, S(DELIVERED)},
        {NUDGEL_DLR_EXPIRED, "infobip", "EXPIRED_EXPIRED", true, S(EXPIRED)},
        {NUDGEL_DLR_UNDELIVERED, "infobip", "UNDELIVERABLE_NOT_DELIVERED", true, S(UNDELIVERED)},
        /* no dialect said: the documented raw statuses still hold */
        {NUDGEL_DLR_DELIVERED, "", "DELIVERED_TO_OPERATOR", false, 0},
        {NUDGEL_DLR_DELIVERED, "", "Buffered", false, 0},
        /* another dialect's words mean nothing to the generic one */
        {NUDGEL_DLR_DELIVERED, "generic", "DELIVERED_TO_OPERATOR", true, S(DELIVERED)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nudgel_dlr_report_t r = report(cases[i].st, cases[i].dialect, cases[i].raw);
        nudgel_receipt_state_t t = NUDGEL_RECEIPT_ACCEPTED;
        bool final = nudgel_dlr_target(&r, &t);
        if (final != cases[i].final || (final && t != cases[i].target))
            fail_msg("case %zu (%s %s/%s): final %d target %s", i,
                     nudgel_dlr_status_name(cases[i].st), cases[i].dialect, cases[i].raw, final,
                     nudgel_receipt_state_name(t));
    }
}

/* Every (found, current, intermediate or target) against the model. */
static void test_decide_every_pair(void **state)
{
    (void)state;
    for (int found = 0; found < 2; found++)
        for (int cur = 0; cur < NUDGEL_RECEIPT_STATE_COUNT; cur++)
            for (int t = -1; t < NUDGEL_RECEIPT_STATE_COUNT; t++) {
                bool final = t >= 0;
                nudgel_receipt_state_t c = (nudgel_receipt_state_t)cur;
                nudgel_receipt_state_t target = final ? (nudgel_receipt_state_t)t : S(SENT);
                nudgel_dlr_outcome_t want;
                if (!found || c == S(ACCEPTED) || c == S(SUBMITTING))
                    want = NUDGEL_DLR_PENDING; /* the report beat its sent outcome */
                else if (!final)
                    want = NUDGEL_DLR_INTERMEDIATE;
                else if (c == target)
                    want = NUDGEL_DLR_UNCHANGED;
                else if (c == S(SENT) && (target == S(DELIVERED) || target == S(UNDELIVERED) ||
                                          target == S(EXPIRED)))
                    want = NUDGEL_DLR_APPLIED;
                else
                    want = NUDGEL_DLR_REFUSED; /* never backwards, never sideways */
                nudgel_dlr_outcome_t got = nudgel_dlr_decide(found, c, final, target);
                if (got != want)
                    fail_msg("found %d current %s target %s: %s, want %s", found,
                             nudgel_receipt_state_name(c),
                             final ? nudgel_receipt_state_name(target) : "(intermediate)",
                             nudgel_dlr_outcome_name(got), nudgel_dlr_outcome_name(want));
            }
    /* a late report after a final one never moves it */
    assert_int_equal(nudgel_dlr_decide(true, S(DELIVERED), true, S(UNDELIVERED)),
                     NUDGEL_DLR_REFUSED);
    assert_int_equal(nudgel_dlr_decide(true, S(EXPIRED), true, S(DELIVERED)), NUDGEL_DLR_REFUSED);
    assert_int_equal(nudgel_dlr_decide(true, S(DELIVERED), false, S(SENT)),
                     NUDGEL_DLR_INTERMEDIATE);
}

static void test_expiry(void **state)
{
    (void)state;
    nudgel_dlr_expiry_t e;
    char err[256];
    assert_int_equal(nudgel_dlr_expiry_parse(172800, "", &e, err, sizeof(err)), NUDGEL_OK);
    assert_int_equal(e.count, 0);
    assert_int_equal(nudgel_dlr_expiry_window_s(&e, "any"), 172800);
    assert_int_equal(
        nudgel_dlr_expiry_parse(172800, "ib-ke=3600,at.ng=86400", &e, err, sizeof(err)), NUDGEL_OK);
    assert_int_equal(e.count, 2);
    assert_int_equal(nudgel_dlr_expiry_window_s(&e, "ib-ke"), 3600);
    assert_int_equal(nudgel_dlr_expiry_window_s(&e, "at.ng"), 86400);
    assert_int_equal(nudgel_dlr_expiry_window_s(&e, "other"), 172800);
    static const char *const bad[] = {"x",      "=60",    "gw=",    "gw=0",
                                      "gw=10x", "gw=60,", "g w=60", "gw=7776001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (nudgel_dlr_expiry_parse(60, bad[i], &e, err, sizeof(err)) != NUDGEL_ERR_CONFIG)
            fail_msg("\"%s\" accepted", bad[i]);
    assert_int_equal(nudgel_dlr_expiry_parse(172800, "ib-ke=3600", &e, err, sizeof(err)),
                     NUDGEL_OK);
    int64_t now = 1800000000000;
    /* due: sent only, and only once its own gateway's window is over */
    assert_true(nudgel_dlr_expiry_due(&e, "ib-ke", S(SENT), now - 3601000, now));
    assert_false(nudgel_dlr_expiry_due(&e, "ib-ke", S(SENT), now - 3599000, now));
    assert_false(nudgel_dlr_expiry_due(&e, "other", S(SENT), now - 3601000, now));
    assert_true(nudgel_dlr_expiry_due(&e, "other", S(SENT), now - 172801000, now));
    for (int s = 0; s < NUDGEL_RECEIPT_STATE_COUNT; s++)
        if (s != S(SENT))
            assert_false(
                nudgel_dlr_expiry_due(&e, "ib-ke", (nudgel_receipt_state_t)s, now - 1e9, now));
    assert_false(nudgel_dlr_expiry_due(&e, "ib-ke", S(SENT), 0, now)); /* never submitted */
}

static void test_parse_valid(void **state)
{
    (void)state;
    static const char full[] =
        "{\"gateway\":\"sim-infobip\",\"gateway_message_id\":\"abc-1\",\"status\":\"undelivered\","
        "\"received_at\":\"2026-01-02T03:04:05Z\",\"raw_status\":\"UNDELIVERABLE_NOT_DELIVERED\","
        "\"dialect\":\"infobip\",\"message_id\":\"0190a8a4-0000-7000-8000-000000000001\","
        "\"error\":{\"code\":\"EC_ABSENT\",\"message\":\"absent subscriber\",\"permanent\":false},"
        "\"to\":\"254722000000\",\"network_code\":\"63902\",\"done_at\":\"2026-01-02T03:04:04.5Z\","
        "\"cost\":{\"amount\":\"0.0123456789\",\"currency\":\"EUR\"},\"segments\":1,"
        "\"future_key\":true}";
    nudgel_dlr_report_t r;
    char err[256] = "";
    assert_int_equal(nudgel_dlr_parse(full, strlen(full), &r, err, sizeof(err)), NUDGEL_OK);
    assert_string_equal(r.gateway, "sim-infobip");
    assert_string_equal(r.gateway_message_id, "abc-1");
    assert_int_equal(r.status, NUDGEL_DLR_UNDELIVERED);
    assert_string_equal(r.error_code, "EC_ABSENT");
    assert_int_equal(r.error_permanent, 0);
    assert_string_equal(r.operator_name, "Safaricom");
    assert_string_equal(r.price_amount, "0.012345");
    assert_string_equal(r.price_currency, "EUR");
    static const char min[] = "{\"gateway\":\"g\",\"gateway_message_id\":\"1\",\"status\":"
                              "\"delivered\",\"received_at\":\"2026-01-02T03:04:05+03:00\","
                              "\"cost\":{\"amount\":0.8,\"currency\":\"KES\"}}";
    assert_int_equal(nudgel_dlr_parse(min, strlen(min), &r, err, sizeof(err)), NUDGEL_OK);
    assert_int_equal(r.error_permanent, -1);
    assert_string_equal(r.price_amount, "0.800000");
    assert_string_equal(r.operator_name, "");
    /* a price out of numeric(14,6) is dropped, the report kept */
    static const char big[] = "{\"gateway\":\"g\",\"gateway_message_id\":\"1\",\"status\":"
                              "\"delivered\",\"received_at\":\"2026-01-02T03:04:05Z\","
                              "\"cost\":{\"amount\":\"123456789.5\",\"currency\":\"KES\"}}";
    assert_int_equal(nudgel_dlr_parse(big, strlen(big), &r, err, sizeof(err)), NUDGEL_OK);
    assert_string_equal(r.price_amount, "");
    assert_string_equal(r.price_currency, "");
}

static void test_parse_malformed(void **state)
{
    (void)state;
#define OK_HEAD                                                                                    \
    "\"gateway\":\"g\",\"gateway_message_id\":\"1\",\"received_at\":\"2026-01-02T03:04:05Z\""
    static const char *const bad[] = {
        "",
        "[]",
        "{",
        "{\"gateway_message_id\":\"1\",\"status\":\"delivered\",\"received_at\":\"2026-01-02T03:04:"
        "05Z\"}",
        "{\"gateway\":\"\",\"gateway_message_id\":\"1\",\"status\":\"delivered\",\"received_at\":"
        "\"2026-01-02T03:04:05Z\"}",
        "{\"gateway\":\"g\",\"status\":\"delivered\",\"received_at\":\"2026-01-02T03:04:05Z\"}",
        "{\"gateway\":\"g\",\"gateway_message_id\":\"1\",\"status\":\"delivered\"}",
        "{\"gateway\":\"g\",\"gateway_message_id\":\"1\",\"status\":\"delivered\",\"received_at\":"
        "\"yesterday\"}",
        "{" OK_HEAD "}",
        "{" OK_HEAD ",\"status\":\"DELIVERED\"}",
        "{" OK_HEAD ",\"status\":7}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"message_id\":\"not-a-uuid\"}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"network_code\":\"6390\"}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"network_code\":\"63a02\"}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"error\":{}}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"error\":\"x\"}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"error\":{\"code\":\"x\",\"permanent\":\"yes\"}}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"cost\":{\"amount\":\"1\"}}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"cost\":{\"amount\":\"1\",\"currency\":\"kes\"}}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"cost\":{\"currency\":\"KES\"}}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"done_at\":\"2026-13-40\"}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"gateway\":\"dup\"}",
        "{" OK_HEAD ",\"status\":\"delivered\",\"raw_status\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nudgel_dlr_report_t r;
        char err[256] = "";
        if (nudgel_dlr_parse(bad[i], strlen(bad[i]), &r, err, sizeof(err)) == NUDGEL_OK)
            fail_msg("case %zu accepted: %s", i, bad[i]);
        assert_true(err[0] != '\0');
    }
    char huge[NUDGEL_DLR_MAX_BYTES + 2];
    memset(huge, ' ', sizeof(huge));
    nudgel_dlr_report_t r;
    char err[64];
    assert_int_equal(nudgel_dlr_parse(huge, sizeof(huge), &r, err, sizeof(err)),
                     NUDGEL_ERR_TOO_LARGE);
}

static void test_network_operator(void **state)
{
    (void)state;
    char cc[3];
    assert_string_equal(nudgel_phone_network_operator("63902", cc), "Safaricom");
    assert_string_equal(cc, "KE");
    assert_string_equal(nudgel_phone_network_operator("62130", cc), "MTN");
    assert_string_equal(cc, "NG");
    assert_string_equal(nudgel_phone_network_operator("62160", NULL), "9mobile (Etisalat)");
    assert_null(nudgel_phone_network_operator("99999", cc));
    assert_string_equal(cc, "");
    assert_null(nudgel_phone_network_operator(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_table),    cmocka_unit_test(test_decide_every_pair),
        cmocka_unit_test(test_expiry),          cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_malformed), cmocka_unit_test(test_network_operator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
