/*
 * test_gateway.c — carrier gateway adapters: answer classification as a
 * table over the three dialects (bodies as the carrier simulator and
 * gateways.md show them), Retry-After parsing, request building (form
 * encoding, JSON escaping, auth headers), gateway file loading (a good
 * file, the shipped example, and each kind of bad line naming its key) and
 * route lookup as a table.
 */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>

#include "nudgel/gateway.h"

#define AT_KEY      "test-at-key-0123"
#define INFOBIP_KEY "test-infobip-key-4567"
#define GENERIC_KEY "test-generic-key-89ab"

/* Three gateways pointing at the carrier simulator, as the worker would. */
static const char *const sim_file =
    "{\"gateways\":["
    "{\"name\":\"at\",\"dialect\":\"africastalking\",\"base_url\":\"http://127.0.0.1:18090/at/\","
    "\"api_key_env\":\"NUDGEL_TEST_AT_KEY\",\"username\":\"sandbox\",\"tps\":50,"
    "\"sender_id\":\"NUDGEL\"},"
    "{\"name\":\"ib\",\"dialect\":\"infobip\",\"base_url\":\"http://127.0.0.1:18090/infobip\","
    "\"api_key_env\":\"NUDGEL_TEST_INFOBIP_KEY\",\"tps\":100,\"connect_timeout_ms\":500,"
    "\"timeout_ms\":5000},"
    "{\"name\":\"gen\",\"dialect\":\"generic\",\"base_url\":\"http://127.0.0.1:18090/generic\","
    "\"api_key_env\":\"NUDGEL_TEST_GENERIC_KEY\",\"tps\":200,\"sender_id\":\"NUDGEL\","
    "\"permanent_statuses\":[\"rejected\"],\"transient_statuses\":[\"rate_limited\","
    "\"server_error\"]},"
    "{\"name\":\"gen2\",\"dialect\":\"generic\",\"base_url\":\"https://sms.example.com\","
    "\"path\":\"/v2/send\",\"api_key_env\":\"NUDGEL_TEST_GENERIC_KEY\",\"tps\":1,"
    "\"auth_header\":\"X-Api-Key\",\"auth_scheme\":\"\",\"message_id_pointer\":\"/data/0/sid\","
    "\"status_pointer\":\"\",\"credential_statuses\":[407]}"
    "],"
    "\"routes\":["
    "{\"country\":\"KE\",\"operator\":\"Safaricom\",\"gateways\":[\"at\",\"ib\"]},"
    "{\"country\":\"KE\",\"operator\":\"*\",\"gateways\":[\"ib\",\"at\"]},"
    "{\"country\":\"NG\",\"operator\":\"*\",\"gateways\":[\"ib\",\"gen\"]},"
    "{\"country\":\"UG\",\"operator\":\"MTN\",\"gateways\":[\"at\"]}"
    "],"
    "\"default_route\":[\"gen\"]}";

static void set_keys(void)
{
    setenv("NUDGEL_TEST_AT_KEY", AT_KEY, 1);
    setenv("NUDGEL_TEST_INFOBIP_KEY", INFOBIP_KEY, 1);
    setenv("NUDGEL_TEST_GENERIC_KEY", GENERIC_KEY "\n", 1); /* trailing newline trimmed */
}

static nudgel_gateway_set_t *load_sim(void)
{
    char err[512] = "";
    nudgel_gateway_set_t *set = NULL;
    set_keys();
    nudgel_err_t rc = nudgel_gateway_set_parse(sim_file, strlen(sim_file), &set, err, sizeof(err));
    if (rc != NUDGEL_OK)
        print_error("sim file: %s\n", err);
    assert_int_equal(rc, NUDGEL_OK);
    assert_non_null(set);
    return set;
}

/* ---- classification table -------------------------------------------- */

#define SENT NUDGEL_GATEWAY_SENT
#define PERM NUDGEL_GATEWAY_PERMANENT
#define TRAN NUDGEL_GATEWAY_TRANSIENT
#define NOW  784111747000LL /* Sun, 06 Nov 1994 08:49:07 GMT */

typedef struct cls_case {
    const char *name;
    const char *gw; /* "at", "ib", "gen", "gen2" */
    bool transport;
    int status;
    const char *body;
    const char *retry_after;
    nudgel_gateway_outcome_kind_t kind;
    const char *receipt;    /* "sent", "rejected", "failed", NULL */
    const char *id_or_code; /* SENT: message id; else error code */
    int64_t retry_ms;
    bool maybe;
    uint32_t segments;
    const char *cost; /* "KES 0.8000" or NULL for none */
    bool creds;       /* TRANSIENT: the gateway refused our credentials */
} cls_case_t;

#define AT_OK(code, status, id, cost)                                                              \
    "{\"SMSMessageData\":{\"Message\":\"Sent to 1/1 Total Cost: " cost                             \
    "\",\"Recipients\":[{\"statusCode\":" code ",\"number\":\"+254711000001\",\"cost\":\"" cost    \
    "\",\"status\":\"" status "\",\"messageId\":\"" id "\"}]}}"
#define AT_REJ(code, status)                                                                       \
    "{\"SMSMessageData\":{\"Message\":\"Sent to 0/1 Total Cost: 0\",\"Recipients\":[{"             \
    "\"statusCode\":" code ",\"number\":\"+254711000000\",\"cost\":\"0\",\"status\":\"" status     \
    "\",\"messageId\":\"None\"}]}}"
#define IB(gid, gname, id, name, count)                                                            \
    "{\"bulkId\":\"4cf7a1\",\"messages\":[{\"to\":\"254711000001\",\"status\":{\"groupId\":" gid   \
    ",\"groupName\":\"" gname "\",\"id\":" id ",\"name\":\"" name                                  \
    "\",\"description\":\"Message sent to next instance\"},\"messageId\":\"job-0001\","            \
    "\"smsCount\":" count "}]}"
#define IB_ERR(id, text)                                                                           \
    "{\"requestError\":{\"serviceException\":{\"messageId\":\"" id "\",\"text\":\"" text "\"}}}"
#define GEN_ERR(code, perm)                                                                        \
    "{\"error\":{\"code\":\"" code "\",\"message\":\"number rejected\",\"permanent\":" perm "}}"

static const cls_case_t cls_cases[] = {
    /* Africa's Talking */
    {"at 101 gateways.md", "at", false, 201, AT_OK("101", "Success", "ATXid_5c0f1e", "KES 0.8000"),
     NULL, SENT, "sent", "ATXid_5c0f1e", -1, false, 0, "KES 0.8000", false},
    {"at 101 NGN", "at", false, 201, AT_OK("101", "Success", "ATXid_91ab", "NGN 4.0000"), NULL,
     SENT, "sent", "ATXid_91ab", -1, false, 0, "NGN 4.0000", false},
    {"at 100 processed", "at", false, 201, AT_OK("100", "Processed", "ATXid_1", "UGX 30.0000"),
     NULL, SENT, "sent", "ATXid_1", -1, false, 0, "UGX 30.0000", false},
    {"at 102 queued", "at", false, 201, AT_OK("102", "Queued", "ATXid_2", "KES 0.8000"), NULL, SENT,
     "sent", "ATXid_2", -1, false, 0, "KES 0.8000", false},
    {"at statusCode as string", "at", false, 201,
     AT_OK("\"101\"", "Success", "ATXid_3", "KES 0.8000"), NULL, SENT, "sent", "ATXid_3", -1, false,
     0, "KES 0.8000", false},
    {"at 401 RiskHold", "at", false, 201, AT_REJ("401", "RiskHold"), NULL, PERM, "failed",
     "RiskHold", -1, false, 0, NULL, false},
    {"at 402 InvalidSenderId", "at", false, 201, AT_REJ("402", "InvalidSenderId"), NULL, PERM,
     "rejected", "InvalidSenderId", -1, false, 0, NULL, false},
    {"at 403 InvalidPhoneNumber (sim)", "at", false, 201, AT_REJ("403", "InvalidPhoneNumber"), NULL,
     PERM, "rejected", "InvalidPhoneNumber", -1, false, 0, NULL, false},
    {"at 404 UnsupportedNumberType", "at", false, 201, AT_REJ("404", "UnsupportedNumberType"), NULL,
     PERM, "rejected", "UnsupportedNumberType", -1, false, 0, NULL, false},
    {"at 405 InsufficientBalance", "at", false, 201, AT_REJ("405", "InsufficientBalance"), NULL,
     PERM, "failed", "InsufficientBalance", -1, false, 0, NULL, false},
    {"at 406 UserInBlacklist (sim)", "at", false, 201, AT_REJ("406", "UserInBlacklist"), NULL, PERM,
     "rejected", "UserInBlacklist", -1, false, 0, NULL, false},
    {"at 407 CouldNotRoute", "at", false, 201, AT_REJ("407", "CouldNotRoute"), NULL, PERM, "failed",
     "CouldNotRoute", -1, false, 0, NULL, false},
    {"at 409 DoNotDisturbRejection", "at", false, 201, AT_REJ("409", "DoNotDisturbRejection"), NULL,
     PERM, "rejected", "DoNotDisturbRejection", -1, false, 0, NULL, false},
    {"at 500 InternalServerError", "at", false, 201, AT_REJ("500", "InternalServerError"), NULL,
     TRAN, NULL, "InternalServerError", -1, false, 0, NULL, false},
    {"at 501 GatewayError", "at", false, 201, AT_REJ("501", "GatewayError"), NULL, TRAN, NULL,
     "GatewayError", -1, false, 0, NULL, false},
    {"at 502 RejectedByGateway", "at", false, 201, AT_REJ("502", "RejectedByGateway"), NULL, TRAN,
     NULL, "RejectedByGateway", -1, false, 0, NULL, false},
    {"at empty Recipients InvalidSenderId", "at", false, 201,
     "{\"SMSMessageData\":{\"Message\":\"InvalidSenderId\",\"Recipients\":[]}}", NULL, PERM,
     "rejected", "InvalidSenderId", -1, false, 0, NULL, false},
    {"at 101 messageId None", "at", false, 201, AT_OK("101", "Success", "None", "KES 0.8000"), NULL,
     TRAN, NULL, "unparseable_response", -1, true, 0, NULL, false},
    {"at undocumented statusCode", "at", false, 201, AT_REJ("999", "Mystery"), NULL, TRAN, NULL,
     "unparseable_response", -1, true, 0, NULL, false},
    {"at 201 not JSON", "at", false, 201, "Sent to 1/1", NULL, TRAN, NULL, "unparseable_response",
     -1, true, 0, NULL, false},
    {"at 201 truncated JSON", "at", false, 201, "{\"SMSMessageData\":{\"Message\":\"Sent", NULL,
     TRAN, NULL, "unparseable_response", -1, true, 0, NULL, false},
    {"at 201 empty body", "at", false, 201, "", NULL, TRAN, NULL, "unparseable_response", -1, true,
     0, NULL, false},
    /* An account-level 401/403 is the gateway's fault (issue 10): retried, failed over. */
    {"at HTTP 401 wrong key", "at", false, 401, "The supplied authentication is invalid", NULL,
     TRAN, NULL, "http_401", -1, false, 0, NULL, true},
    {"at HTTP 403 account refused", "at", false, 403, "Forbidden", NULL, TRAN, NULL, "http_403", -1,
     false, 0, NULL, true},
    {"at HTTP 400 missing field", "at", false, 400, "Request is missing required form field 'to'",
     NULL, PERM, "failed", "http_400", -1, false, 0, NULL, false},
    {"at HTTP 429 Retry-After 1", "at", false, 429, "Too Many Requests", "1", TRAN, NULL,
     "http_429", 1000, false, 0, NULL, false},
    {"at HTTP 503 Retry-After date", "at", false, 503, "", "Sun, 06 Nov 1994 08:49:37 GMT", TRAN,
     NULL, "http_503", 30000, false, 0, NULL, false},
    {"at HTTP 500", "at", false, 500, "Internal Server Error", NULL, TRAN, NULL, "http_500", -1,
     false, 0, NULL, false},
    {"at HTTP 302 not followed", "at", false, 302, "", NULL, PERM, "failed", "http_redirect", -1,
     false, 0, NULL, false},
    {"at timeout", "at", true, 0, NULL, NULL, TRAN, NULL, "transport", -1, false, 0, NULL, false},
    /* Infobip */
    {"ib PENDING_ACCEPTED (sim)", "ib", false, 200,
     IB("1", "PENDING", "26", "PENDING_ACCEPTED", "1"), NULL, SENT, "sent", "job-0001", -1, false,
     1, NULL, false},
    {"ib PENDING 3 parts", "ib", false, 200, IB("1", "PENDING", "7", "PENDING_ENROUTE", "3"), NULL,
     SENT, "sent", "job-0001", -1, false, 3, NULL, false},
    {"ib REJECTED_DESTINATION (sim)", "ib", false, 200,
     IB("5", "REJECTED", "52", "REJECTED_DESTINATION", "1"), NULL, PERM, "rejected",
     "REJECTED_DESTINATION", -1, false, 0, NULL, false},
    {"ib REJECTED_DESTINATION_BLOCKLISTED (sim)", "ib", false, 200,
     IB("5", "REJECTED", "87", "REJECTED_DESTINATION_BLOCKLISTED", "1"), NULL, PERM, "rejected",
     "REJECTED_DESTINATION_BLOCKLISTED", -1, false, 0, NULL, false},
    {"ib REJECTED_SENDER", "ib", false, 200, IB("5", "REJECTED", "14", "REJECTED_SENDER", "1"),
     NULL, PERM, "rejected", "REJECTED_SENDER", -1, false, 0, NULL, false},
    {"ib REJECTED_DND", "ib", false, 200, IB("5", "REJECTED", "10", "REJECTED_DND", "1"), NULL,
     PERM, "rejected", "REJECTED_DND", -1, false, 0, NULL, false},
    {"ib REJECTED_NOT_ENOUGH_CREDITS", "ib", false, 200,
     IB("5", "REJECTED", "12", "REJECTED_NOT_ENOUGH_CREDITS", "1"), NULL, PERM, "failed",
     "REJECTED_NOT_ENOUGH_CREDITS", -1, false, 0, NULL, false},
    {"ib EXPIRED group", "ib", false, 200, IB("4", "EXPIRED", "15", "EXPIRED_EXPIRED", "1"), NULL,
     PERM, "failed", "EXPIRED_EXPIRED", -1, false, 0, NULL, false},
    {"ib undocumented group", "ib", false, 200, IB("9", "MYSTERY", "1", "MYSTERY", "1"), NULL, TRAN,
     NULL, "unparseable_response", -1, true, 0, NULL, false},
    {"ib 200 empty object", "ib", false, 200, "{}", NULL, TRAN, NULL, "unparseable_response", -1,
     true, 0, NULL, false},
    {"ib 200 array", "ib", false, 200, "[]", NULL, TRAN, NULL, "unparseable_response", -1, true, 0,
     NULL, false},
    {"ib 401 UNAUTHORIZED (sim)", "ib", false, 401, IB_ERR("UNAUTHORIZED", "Invalid login details"),
     NULL, TRAN, NULL, "UNAUTHORIZED", -1, false, 0, NULL, true},
    {"ib 403 FORBIDDEN", "ib", false, 403, IB_ERR("FORBIDDEN", "Forbidden"), NULL, TRAN, NULL,
     "FORBIDDEN", -1, false, 0, NULL, true},
    {"ib 400 BAD_REQUEST (sim)", "ib", false, 400, IB_ERR("BAD_REQUEST", "Bad request"), NULL, PERM,
     "failed", "BAD_REQUEST", -1, false, 0, NULL, false},
    {"ib 429 TOO_MANY_REQUESTS (sim)", "ib", false, 429,
     IB_ERR("TOO_MANY_REQUESTS", "Too many requests"), "2", TRAN, NULL, "TOO_MANY_REQUESTS", 2000,
     false, 0, NULL, false},
    {"ib 500 GENERAL_ERROR (sim)", "ib", false, 500,
     IB_ERR("GENERAL_ERROR", "Something went wrong"), NULL, TRAN, NULL, "GENERAL_ERROR", -1, false,
     0, NULL, false},
    {"ib 502 no body", "ib", false, 502, "", NULL, TRAN, NULL, "http_502", -1, false, 0, NULL,
     false},
    {"ib 503 bad Retry-After", "ib", false, 503, "", "soon", TRAN, NULL, "http_503", -1, false, 0,
     NULL, false},
    {"ib 301 not followed", "ib", false, 301, "", NULL, PERM, "failed", "http_redirect", -1, false,
     0, NULL, false},
    {"ib connection refused", "ib", true, 0, NULL, NULL, TRAN, NULL, "transport", -1, false, 0,
     NULL, false},
    /* generic */
    {"gen 202 accepted (sim)", "gen", false, 202,
     "{\"id\":\"gen_4ded\",\"status\":\"accepted\",\"segments\":1,\"encoding\":\"GSM-7\"}", NULL,
     SENT, "sent", "gen_4ded", -1, false, 1, NULL, false},
    {"gen 202 queued 2 parts", "gen", false, 202,
     "{\"id\":\"gen_77\",\"status\":\"queued\",\"segments\":2,\"encoding\":\"UCS-2\"}", NULL, SENT,
     "sent", "gen_77", -1, false, 2, NULL, false},
    {"gen 400 invalid_number (sim)", "gen", false, 400, GEN_ERR("invalid_number", "true"), NULL,
     PERM, "rejected", "invalid_number", -1, false, 0, NULL, false},
    {"gen 400 blacklisted (sim)", "gen", false, 400, GEN_ERR("blacklisted", "true"), NULL, PERM,
     "rejected", "blacklisted", -1, false, 0, NULL, false},
    {"gen 400 bad_request (sim)", "gen", false, 400, GEN_ERR("bad_request", "true"), NULL, PERM,
     "failed", "bad_request", -1, false, 0, NULL, false},
    {"gen 401 unauthorized (sim)", "gen", false, 401, GEN_ERR("unauthorized", "true"), NULL, TRAN,
     NULL, "unauthorized", -1, false, 0, NULL, true},
    {"gen 403 forbidden (default credential_statuses)", "gen", false, 403,
     GEN_ERR("forbidden", "true"), NULL, TRAN, NULL, "forbidden", -1, false, 0, NULL, true},
    {"gen2 401 not a credential status there", "gen2", false, 401, GEN_ERR("unauthorized", "true"),
     NULL, PERM, "failed", "unauthorized", -1, false, 0, NULL, false},
    {"gen2 407 a credential status there", "gen2", false, 407, "", NULL, TRAN, NULL, "http_407", -1,
     false, 0, NULL, true},
    {"gen 500 server_error (sim)", "gen", false, 500, GEN_ERR("server_error", "false"), NULL, TRAN,
     NULL, "server_error", -1, false, 0, NULL, false},
    {"gen 429 rate_limited (sim)", "gen", false, 429, GEN_ERR("rate_limited", "false"), "1", TRAN,
     NULL, "rate_limited", 1000, false, 0, NULL, false},
    {"gen 400 code in transient list", "gen", false, 400, GEN_ERR("rate_limited", "false"), NULL,
     TRAN, NULL, "rate_limited", -1, false, 0, NULL, false},
    {"gen 503 Retry-After in the past", "gen", false, 503, "", "Sun, 06 Nov 1994 08:00:00 GMT",
     TRAN, NULL, "http_503", 0, false, 0, NULL, false},
    {"gen 200 permanent status", "gen", false, 200,
     "{\"id\":\"g1\",\"status\":\"rejected\",\"error\":{\"code\":\"invalid_number\"}}", NULL, PERM,
     "rejected", "invalid_number", -1, false, 0, NULL, false},
    {"gen 200 transient status", "gen", false, 200, "{\"id\":\"g1\",\"status\":\"rate_limited\"}",
     "3", TRAN, NULL, "rate_limited", 3000, false, 0, NULL, false},
    {"gen 202 unknown status", "gen", false, 202, "{\"id\":\"g1\",\"status\":\"pondering\"}", NULL,
     TRAN, NULL, "unparseable_response", -1, true, 0, NULL, false},
    {"gen 202 no id", "gen", false, 202, "{\"status\":\"accepted\"}", NULL, TRAN, NULL,
     "unparseable_response", -1, true, 0, NULL, false},
    {"gen 202 not JSON", "gen", false, 202, "accepted", NULL, TRAN, NULL, "unparseable_response",
     -1, true, 0, NULL, false},
    {"gen2 pointer into array, no status", "gen2", false, 201, "{\"data\":[{\"sid\":\"SM123\"}]}",
     NULL, SENT, "sent", "SM123", -1, false, 0, NULL, false},
    {"gen2 pointer misses", "gen2", false, 201, "{\"data\":[]}", NULL, TRAN, NULL,
     "unparseable_response", -1, true, 0, NULL, false},
    {"gen timeout", "gen", true, 0, NULL, NULL, TRAN, NULL, "transport", -1, false, 0, NULL, false},
    {"gen 101 not final", "gen", false, 101, "", NULL, TRAN, NULL, "http_unexpected", -1, false, 0,
     NULL, false},
};

static void test_classify_table(void **state)
{
    nudgel_gateway_set_t *set = load_sim();
    (void)state;
    for (size_t i = 0; i < sizeof(cls_cases) / sizeof(cls_cases[0]); i++) {
        const cls_case_t *c = &cls_cases[i];
        const nudgel_gateway_t *gw = nudgel_gateway_find(set, c->gw);
        nudgel_gateway_response_t r = {
            .transport_error = c->transport,
            .http_status = c->status,
            .body = c->body,
            .body_len = c->body ? strlen(c->body) : 0,
            .retry_after = c->retry_after,
            .now_unix_ms = NOW,
        };
        nudgel_gateway_outcome_t o;
        assert_non_null(gw);
        assert_int_equal(nudgel_gateway_classify(gw, &r, &o), NUDGEL_OK);
        if (o.kind != c->kind)
            print_error("%s: kind %d, want %d (%s: %s)\n", c->name, o.kind, c->kind, o.error_code,
                        o.error_message);
        assert_int_equal(o.kind, c->kind);
        if (c->receipt)
            assert_string_equal(nudgel_gateway_receipt_name(o.receipt), c->receipt);
        else
            assert_int_equal(o.receipt, NUDGEL_GATEWAY_RECEIPT_NONE);
        if (c->kind == SENT) {
            assert_string_equal(o.message_id, c->id_or_code);
            assert_string_equal(o.error_code, "");
        } else {
            assert_string_equal(o.error_code, c->id_or_code);
            assert_true(o.error_message[0] != '\0');
        }
        assert_int_equal(o.retry_after_ms, c->retry_ms);
        assert_int_equal(o.maybe_accepted, c->maybe);
        assert_int_equal(o.credentials_refused, c->creds);
        assert_int_equal(o.segments, c->segments);
        if (c->cost) {
            char cost[64];
            assert_true(o.has_cost);
            snprintf(cost, sizeof(cost), "%s %s", o.currency, o.cost_amount);
            assert_string_equal(cost, c->cost);
        } else {
            assert_false(o.has_cost);
        }
        assert_int_equal(o.http_status, c->transport ? 0 : c->status);
    }
    nudgel_gateway_set_free(set);
}

static void test_classify_details(void **state)
{
    nudgel_gateway_set_t *set = load_sim();
    nudgel_gateway_outcome_t o;
    (void)state;
    /* the error text carries the gateway's words, printable only */
    nudgel_gateway_response_t r = {.http_status = 401,
                                   .body = IB_ERR("UNAUTHORIZED", "Invalid login details"),
                                   .now_unix_ms = NOW};
    r.body_len = strlen(r.body);
    assert_int_equal(nudgel_gateway_classify(nudgel_gateway_find(set, "ib"), &r, &o), NUDGEL_OK);
    assert_string_equal(o.error_message, "HTTP 401: Invalid login details");
    /* transport detail is kept */
    nudgel_gateway_response_t t = {.transport_error = true,
                                   .transport_detail = "Timeout was reached"};
    assert_int_equal(nudgel_gateway_classify(nudgel_gateway_find(set, "at"), &t, &o), NUDGEL_OK);
    assert_non_null(strstr(o.error_message, "Timeout was reached"));
    assert_non_null(strstr(o.error_message, "at"));
    /* control bytes in a body never reach the message */
    const char ctl[] = "bad\x01\x1b[31mthing\r\n";
    nudgel_gateway_response_t b = {.http_status = 400, .body = ctl, .body_len = sizeof(ctl) - 1};
    assert_int_equal(nudgel_gateway_classify(nudgel_gateway_find(set, "at"), &b, &o), NUDGEL_OK);
    for (const char *p = o.error_message; *p; p++)
        assert_true(*p >= 32 && *p < 127);
    /* an oversized 2xx body is unreadable, not parsed */
    size_t big = NUDGEL_GATEWAY_RESPONSE_MAX + 10;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    nudgel_gateway_response_t h = {.http_status = 200, .body = huge, .body_len = big};
    assert_int_equal(nudgel_gateway_classify(nudgel_gateway_find(set, "ib"), &h, &o), NUDGEL_OK);
    assert_int_equal(o.kind, TRAN);
    assert_true(o.maybe_accepted);
    free(huge);
    /* NULL arguments */
    assert_int_equal(nudgel_gateway_classify(NULL, &r, &o), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_gateway_classify(nudgel_gateway_find(set, "ib"), &r, NULL),
                     NUDGEL_ERR_INVALID_ARG);
    nudgel_gateway_set_free(set);
}

typedef struct ra_case {
    const char *value;
    int64_t want;
} ra_case_t;

static void test_retry_after(void **state)
{
    static const ra_case_t cases[] = {
        {"0", 0},
        {"1", 1000},
        {"120", 120000},
        {" 5 ", 5000},
        {"7\r\n", 7000}, /* as a curl header callback hands it over */
        {"Sun, 06 Nov 1994 08:49:37 GMT\r\n", 30000},
        {"86400", 86400000},
        {"86401", 86400000},
        {"99999999999999999999", 86400000},
        {"Sun, 06 Nov 1994 08:49:37 GMT", 30000},
        {"Sun, 06 Nov 1994 08:49:07 GMT", 0},
        {"Sat, 05 Nov 1994 08:49:37 GMT", 0},
        {"Mon, 07 Nov 1994 08:49:07 GMT", 86400000},
        {"Sun, 06 Nov 1994 08:50:07 GMT", 60000},
        {"Sun, 06 Xyz 1994 08:49:37 GMT", -1},
        {"Sun, 06 Nov 1994 08:49:37 UTC", -1},
        {"Sun, 06 Nov 1994 25:49:37 GMT", -1},
        {"-1", -1},
        {"1.5", -1},
        {"soon", -1},
        {"", -1},
        {NULL, -1},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = nudgel_gateway_retry_after_ms(cases[i].value, NOW);
        if (got != cases[i].want)
            print_error("\"%s\": %lld, want %lld\n", cases[i].value ? cases[i].value : "(null)",
                        (long long)got, (long long)cases[i].want);
        assert_int_equal(got, cases[i].want);
    }
    /* 2026-11-29 00:00:00 GMT is 1795910400 */
    assert_int_equal(
        nudgel_gateway_retry_after_ms("Sun, 29 Nov 2026 00:00:10 GMT", 1795910400000LL), 10000);
}

/* ---- requests ---------------------------------------------------------- */

static void test_form_encode(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},
        {"abcXYZ019*-._", "abcXYZ019*-._"},
        {"a b", "a+b"},
        {"a+b&c=d?e/f~g#h", "a%2Bb%26c%3Dd%3Fe%2Ff%7Eg%23h"},
        {"+254711000001", "%2B254711000001"},
        {"Habari yako! Bei: KSh 1,000 & 50% punguzo +ziada",
         "Habari+yako%21+Bei%3A+KSh+1%2C000+%26+50%25+punguzo+%2Bziada"},
        {"Ẹ kú àárọ̀, ẹ jọ̀ọ́ ẹ wá", "%E1%BA%B8+k%C3%BA+%C3%A0%C3%A1r%E1%BB%8D%CC%80%2C+%E1%BA%B9+j%"
                                  "E1%BB%8D%CC%80%E1%BB%8D%CC%81+"
                                  "%E1%BA%B9+w%C3%A1"},
        {"line1\nline2\r", "line1%0Aline2%0D"},
        {"€ 😀", "%E2%82%AC+%F0%9F%98%80"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = nudgel_gateway_form_encode(cases[i].in, strlen(cases[i].in));
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

static void build(const nudgel_gateway_set_t *set, const char *gw,
                  const nudgel_gateway_message_t *m, nudgel_gateway_request_t *req)
{
    char err[256] = "";
    nudgel_err_t rc =
        nudgel_gateway_build_request(nudgel_gateway_find(set, gw), m, req, err, sizeof(err));
    if (rc != NUDGEL_OK)
        print_error("build %s: %s\n", gw, err);
    assert_int_equal(rc, NUDGEL_OK);
    assert_string_equal(req->method, "POST");
    assert_int_equal(req->body_len, strlen(req->body));
}

static void test_request_at(void **state)
{
    nudgel_gateway_set_t *set = load_sim();
    nudgel_gateway_request_t req;
    (void)state;
    nudgel_gateway_message_t m = {
        .client_ref = "0190a1b2-0000-7000-8000-000000000001",
        .to = "+254711000001",
        .text = "Habari yako! Bei: KSh 1,000 & 50% punguzo +ziada",
        .callback_url = "http://127.0.0.1:9000/dlr/at", /* AT: dashboard setting, ignored */
        .validity_minutes = 60,
    };
    build(set, "at", &m, &req);
    assert_string_equal(req.url, "http://127.0.0.1:18090/at/version1/messaging");
    assert_string_equal(req.content_type, "application/x-www-form-urlencoded");
    assert_int_equal(req.header_count, 3);
    assert_string_equal(req.headers[0], "apiKey: " AT_KEY);
    assert_string_equal(req.headers[1], "Content-Type: application/x-www-form-urlencoded");
    assert_string_equal(req.headers[2], "Accept: application/json");
    assert_string_equal(req.body,
                        "username=sandbox&to=%2B254711000001&message=Habari+yako%21+Bei%3A+KSh+1%"
                        "2C000+%26+50%25+punguzo+%2Bziada&from=NUDGEL");
    nudgel_gateway_request_clear(&req);
    assert_null(req.url);
    assert_null(req.body);
    assert_int_equal(req.header_count, 0);

    /* Yoruba text, explicit sender */
    m.text = "Ẹ kú àárọ̀, ẹ jọ̀ọ́ ẹ wá";
    m.from = "22384";
    build(set, "at", &m, &req);
    assert_string_equal(req.body,
                        "username=sandbox&to=%2B254711000001&message=%E1%BA%B8+k%C3%BA+%C3%A0%C3%"
                        "A1r%E1%BB%8D%CC%80%2C+%E1%BA%B9+j%E1%BB%8D%CC%80%E1%BB%8D%CC%81+%E1%BA%"
                        "B9+w%C3%A1&from=22384");
    nudgel_gateway_request_clear(&req);
    nudgel_gateway_set_free(set);
}

static void test_request_infobip(void **state)
{
    nudgel_gateway_set_t *set = load_sim();
    nudgel_gateway_request_t req;
    (void)state;
    nudgel_gateway_message_t m = {
        .client_ref = "job-0001",
        .to = "+254711000001",
        .from = "NUDGEL",
        .text = "Habari",
        .callback_url = "http://127.0.0.1:9000/dlr/infobip",
        .validity_minutes = 2880,
    };
    build(set, "ib", &m, &req);
    assert_string_equal(req.url, "http://127.0.0.1:18090/infobip/sms/2/text/advanced");
    assert_string_equal(req.headers[0], "Authorization: App " INFOBIP_KEY);
    assert_string_equal(req.headers[1], "Content-Type: application/json");
    assert_string_equal(req.body,
                        "{\"messages\":[{\"from\":\"NUDGEL\",\"destinations\":[{\"to\":"
                        "\"254711000001\",\"messageId\":\"job-0001\"}],\"text\":\"Habari\","
                        "\"notifyUrl\":\"http://127.0.0.1:9000/dlr/infobip\",\"notifyContentType\":"
                        "\"application/json\",\"callbackData\":\"job-0001\",\"validityPeriod\":"
                        "2880}]}");
    nudgel_gateway_request_clear(&req);

    /* escaping: quotes, backslash, control characters, non-ASCII kept as UTF-8;
       no sender anywhere → no "from"; no callback → no notifyUrl */
    m.text = "Say \"hi\"\\ \n\ttab \x01 Ẹ kú €";
    m.from = NULL;
    m.callback_url = NULL;
    m.validity_minutes = 0;
    build(set, "ib", &m, &req);
    assert_string_equal(req.body, "{\"messages\":[{\"destinations\":[{\"to\":\"254711000001\","
                                  "\"messageId\":\"job-0001\"}],\"text\":\"Say \\\"hi\\\"\\\\ "
                                  "\\n\\ttab \\u0001 Ẹ kú €\",\"callbackData\":\"job-0001\"}]}");
    json_t *doc = json_loadb(req.body, req.body_len, 0, NULL);
    assert_non_null(doc);
    const char *text = NULL;
    assert_int_equal(json_unpack(doc, "{s:[{s:s}]}", "messages", "text", &text), 0);
    assert_string_equal(text, m.text);
    json_decref(doc);
    nudgel_gateway_request_clear(&req);
    nudgel_gateway_set_free(set);
}

/* Infobip's validityPeriod: minutes left at submit time, at least 1, at most 48 h. */
static void test_validity_period(void **state)
{
    (void)state;
    const int64_t now = 1767225600000LL; /* 2026-01-01T00:00:00Z */
    assert_int_equal(nudgel_gateway_validity_minutes(now + 90 * 60000, now), 90);
    assert_int_equal(nudgel_gateway_validity_minutes(now + 90 * 60000 + 59999, now), 90);
    assert_int_equal(nudgel_gateway_validity_minutes(now + 30000, now), 1);
    assert_int_equal(nudgel_gateway_validity_minutes(now - 5000, now), 1);
    assert_int_equal(nudgel_gateway_validity_minutes(now + 7LL * 86400000, now),
                     NUDGEL_GATEWAY_VALIDITY_MINUTES_MAX);
    assert_int_equal(NUDGEL_GATEWAY_VALIDITY_MINUTES_MAX, 2880);

    /* the derived value is sent; more than Infobip's maximum is sent as the maximum */
    nudgel_gateway_set_t *set = load_sim();
    nudgel_gateway_request_t req;
    nudgel_gateway_message_t m = {
        .client_ref = "job-0001",
        .to = "+254711000001",
        .text = "Habari",
        .validity_minutes = nudgel_gateway_validity_minutes(now + 3600000, now),
    };
    build(set, "ib", &m, &req);
    json_t *doc = json_loadb(req.body, req.body_len, 0, NULL);
    json_int_t vp = 0;
    assert_int_equal(json_unpack(doc, "{s:[{s:I}]}", "messages", "validityPeriod", &vp), 0);
    assert_int_equal(vp, 60);
    json_decref(doc);
    nudgel_gateway_request_clear(&req);
    m.validity_minutes = 10000;
    build(set, "ib", &m, &req);
    assert_non_null(strstr(req.body, "\"validityPeriod\":2880}"));
    nudgel_gateway_request_clear(&req);
    nudgel_gateway_set_free(set);
}

static void test_request_generic(void **state)
{
    nudgel_gateway_set_t *set = load_sim();
    nudgel_gateway_request_t req;
    (void)state;
    nudgel_gateway_message_t m = {.client_ref = "job-0002", .to = "+256772123456", .text = "Hello"};
    build(set, "gen", &m, &req);
    assert_string_equal(req.url, "http://127.0.0.1:18090/generic/messages");
    assert_string_equal(req.headers[0], "Authorization: Bearer " GENERIC_KEY);
    /* the README's example body, sender from the gateway's sender_id */
    assert_string_equal(req.body,
                        "{\"to\":\"+256772123456\",\"from\":\"NUDGEL\",\"text\":\"Hello\","
                        "\"client_ref\":\"job-0002\"}");
    nudgel_gateway_request_clear(&req);

    m.callback_url = "http://127.0.0.1:9000/dlr/generic?t=a&b=c";
    build(set, "gen2", &m, &req);
    assert_string_equal(req.url, "https://sms.example.com/v2/send");
    assert_string_equal(req.headers[0], "X-Api-Key: " GENERIC_KEY);
    assert_string_equal(req.body, "{\"to\":\"+256772123456\",\"text\":\"Hello\",\"client_ref\":"
                                  "\"job-0002\",\"callback_url\":"
                                  "\"http://127.0.0.1:9000/dlr/generic?t=a&b=c\"}");
    nudgel_gateway_request_clear(&req);
    nudgel_gateway_set_free(set);
}

static void test_request_invalid(void **state)
{
    nudgel_gateway_set_t *set = load_sim();
    nudgel_gateway_request_t req;
    char err[256];
    char longtext[NUDGEL_GATEWAY_TEXT_MAX + 2];
    (void)state;
    memset(longtext, 'a', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    static const struct {
        const char *to, *text, *ref, *from, *want;
    } cases[] = {
        {"0711000001", "hi", "r1", NULL, "to: not an E.164"},
        {"+2547", "hi", "r1", NULL, "to: not an E.164"},
        {"+2547110000011234", "hi", "r1", NULL, "to: not an E.164"},
        {"+25471100000a", "hi", "r1", NULL, "to: not an E.164"},
        {"+254711000001", "", "r1", NULL, "text: 0 bytes"},
        {"+254711000001", "bad \xC3\x28 utf8", "r1", NULL, "text: not valid UTF-8"},
        {"+254711000001", "hi", "", NULL, "client_ref"},
        {"+254711000001", "hi", "r\n1", NULL, "client_ref"},
        {"+254711000001", "hi", "r1", "A-VERY-LONG-SENDER-ID", "from:"},
        {"+254711000001", NULL, "r1", NULL, "text: 6401 bytes"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nudgel_gateway_message_t m = {.client_ref = cases[i].ref,
                                      .to = cases[i].to,
                                      .from = cases[i].from,
                                      .text = cases[i].text ? cases[i].text : longtext};
        err[0] = '\0';
        assert_int_equal(nudgel_gateway_build_request(nudgel_gateway_find(set, "ib"), &m, &req, err,
                                                      sizeof(err)),
                         NUDGEL_ERR_INVALID_FIELD);
        if (!strstr(err, cases[i].want))
            print_error("case %zu: \"%s\" lacks \"%s\"\n", i, err, cases[i].want);
        assert_non_null(strstr(err, cases[i].want));
        assert_null(req.url);
        assert_null(req.body);
        assert_int_equal(req.header_count, 0);
    }
    nudgel_gateway_message_t ok = {.client_ref = "r", .to = "+254711000001", .text = "x"};
    assert_int_equal(nudgel_gateway_build_request(NULL, &ok, &req, err, sizeof(err)),
                     NUDGEL_ERR_INVALID_ARG);
    nudgel_gateway_set_free(set);
}

/* ---- loading ----------------------------------------------------------- */

static void test_load_good(void **state)
{
    nudgel_gateway_set_t *set = load_sim();
    (void)state;
    assert_int_equal(nudgel_gateway_set_count(set), 4);
    const nudgel_gateway_t *at = nudgel_gateway_set_at(set, 0);
    assert_string_equal(nudgel_gateway_name(at), "at");
    assert_int_equal(nudgel_gateway_dialect(at), NUDGEL_GATEWAY_AFRICASTALKING);
    assert_string_equal(nudgel_gateway_dialect_name(nudgel_gateway_dialect(at)), "africastalking");
    assert_int_equal(nudgel_gateway_tps(at), 50);
    assert_int_equal(nudgel_gateway_connect_timeout_ms(at), 3000); /* defaults */
    assert_int_equal(nudgel_gateway_timeout_ms(at), 10000);
    assert_string_equal(nudgel_gateway_sender_id(at), "NUDGEL");
    assert_false(nudgel_gateway_dedupes(at));
    const nudgel_gateway_t *ib = nudgel_gateway_find(set, "ib");
    assert_int_equal(nudgel_gateway_connect_timeout_ms(ib), 500);
    assert_int_equal(nudgel_gateway_timeout_ms(ib), 5000);
    assert_null(nudgel_gateway_sender_id(ib));
    assert_true(nudgel_gateway_dedupes(ib));
    assert_string_equal(nudgel_gateway_url(nudgel_gateway_find(set, "gen2")),
                        "https://sms.example.com/v2/send");
    assert_null(nudgel_gateway_set_at(set, 4));
    assert_null(nudgel_gateway_find(set, "nope"));
    nudgel_gateway_set_free(set);
    nudgel_gateway_set_free(NULL);
}

static char *write_temp(const char *content)
{
    char *path = strdup("/tmp/nudgel-gw-test-XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    return path;
}

static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    assert_non_null(at);
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return out;
}

#ifndef NUDGEL_SOURCE_DIR
#define NUDGEL_SOURCE_DIR "."
#endif

/* The shipped example loads once its key file path points at a real file. */
static void test_load_example_and_key_file(void **state)
{
    char err[512] = "";
    nudgel_gateway_set_t *set = NULL;
    FILE *f = fopen(NUDGEL_SOURCE_DIR "/config/gateways.example.json", "rb");
    char *text = calloc(1, 65536);
    (void)state;
    assert_non_null(f);
    assert_non_null(text);
    size_t n = fread(text, 1, 65535, f);
    fclose(f);
    assert_true(n > 0);
    char *keyfile = write_temp("  k8s-secret-key-value\n");
    char *patched = replace(text, "/var/run/secrets/nudgel/infobip-api-key", keyfile);
    char *path = write_temp(patched);
    setenv("NUDGEL_GW_AT_KEY", "example-at-key", 1);
    setenv("NUDGEL_GW_GENERIC_KEY", "example-generic-key", 1);
    nudgel_err_t rc = nudgel_gateway_set_load(path, &set, err, sizeof(err));
    if (rc != NUDGEL_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, NUDGEL_OK);
    assert_int_equal(nudgel_gateway_set_count(set), 3);
    /* the key file's value, leading spaces kept and newline trimmed */
    nudgel_gateway_request_t req;
    nudgel_gateway_message_t m = {.client_ref = "r1", .to = "+2348031234567", .text = "Hi"};
    assert_int_equal(nudgel_gateway_build_request(nudgel_gateway_find(set, "infobip"), &m, &req,
                                                  err, sizeof(err)),
                     NUDGEL_OK);
    assert_string_equal(req.headers[0], "Authorization: App   k8s-secret-key-value");
    assert_string_equal(req.url, "https://xyz123.api.infobip.com/sms/2/text/advanced");
    nudgel_gateway_request_clear(&req);
    nudgel_gateway_route_t route;
    assert_int_equal(nudgel_gateway_route(set, "KE", "Safaricom", &route, err, sizeof(err)),
                     NUDGEL_OK);
    assert_int_equal(route.count, 2);
    assert_string_equal(nudgel_gateway_name(route.gateways[0]), "at-ke");
    nudgel_gateway_set_free(set);

    /* a missing file names the path */
    assert_int_equal(nudgel_gateway_set_load("/nonexistent/gateways.json", &set, err, sizeof(err)),
                     NUDGEL_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/gateways.json: cannot open"));
    assert_null(set);
    /* an error inside the file is prefixed with the path */
    char *bad = replace(patched, "\"tps\": 50", "\"tps\": 0");
    char *badpath = write_temp(bad);
    assert_int_equal(nudgel_gateway_set_load(badpath, &set, err, sizeof(err)), NUDGEL_ERR_CONFIG);
    assert_non_null(strstr(err, badpath));
    assert_non_null(strstr(err, ": gateways[0].tps: 0 is outside 1 to 1000000"));

    unlink(keyfile);
    unlink(path);
    unlink(badpath);
    free(keyfile);
    free(path);
    free(badpath);
    free(bad);
    free(patched);
    free(text);
}

/* A gateway object with the required keys and @p extra appended. */
#define GW(dialect, extra)                                                                         \
    "{\"name\":\"g\",\"dialect\":\"" dialect "\",\"base_url\":\"https://x.example\","              \
    "\"api_key_env\":\"NUDGEL_TEST_AT_KEY\",\"tps\":5" extra "}"
#define ATGW(extra) GW("africastalking", ",\"username\":\"u\"" extra)
#define FILE1(gw)   "{\"gateways\":[" gw "],\"default_route\":[\"g\"]}"

typedef struct bad_case {
    const char *json;
    const char *want; /* substring of errstr */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"{\"gateways\":[" ATGW(
         "") ",{\"name\":\"h\",\"dialect\":\"smpp\"}],\"default_route\":[\"g\"]}",
     "gateways[1].dialect: \"smpp\" is not one of africastalking, infobip, generic"},
    {FILE1("{\"dialect\":\"infobip\"}"), "gateways[0].name: is required"},
    {FILE1("{\"name\":\"a b\",\"dialect\":\"infobip\"}"), "gateways[0].name: \"a b\" may only"},
    {"{\"gateways\":[" ATGW("") "," ATGW("") "],\"default_route\":[\"g\"]}",
     "gateways[1].name: \"g\" is defined twice"},
    {FILE1("{\"name\":\"g\"}"), "gateways[0].dialect: is required"},
    {FILE1("{\"name\":\"g\",\"dialect\":7}"), "gateways[0].dialect: must be a string"},
    {FILE1(ATGW(",\"timeout\":5")), "gateways[0].timeout: unknown key"},
    {FILE1(ATGW(",\"api_key\":\"sk_live_123\"")),
     "gateways[0].api_key: keys are never written in this file"},
    {FILE1(ATGW(",\"api_key_file\":\"/tmp/k\"")),
     "gateways[0].api_key_env: exactly one of api_key_env and api_key_file"},
    {FILE1("{\"name\":\"g\",\"dialect\":\"infobip\",\"base_url\":\"https://x.example\","
           "\"api_key_env\":\"NUDGEL_TEST_UNSET_KEY\",\"tps\":5}"),
     "gateways[0].api_key_env: environment variable NUDGEL_TEST_UNSET_KEY is not set or empty"},
    {FILE1("{\"name\":\"g\",\"dialect\":\"infobip\",\"base_url\":\"https://x.example\","
           "\"api_key_file\":\"/nonexistent/key\",\"tps\":5}"),
     "gateways[0].api_key_file: cannot open /nonexistent/key"},
    {FILE1(GW("africastalking", "")), "gateways[0].username: is required"},
    {FILE1(GW("infobip", ",\"username\":\"u\"")),
     "gateways[0].username: only applies to dialect africastalking"},
    {FILE1(GW("infobip", ",\"status_pointer\":\"/s\"")),
     "gateways[0].status_pointer: only applies to dialect generic"},
    {FILE1("{\"name\":\"g\",\"dialect\":\"infobip\",\"base_url\":\"https://x.example\","
           "\"api_key_env\":\"NUDGEL_TEST_AT_KEY\"}"),
     "gateways[0].tps: is required"},
    {FILE1(GW("infobip", ",\"tps\":0")), "duplicate"},
    {FILE1("{\"name\":\"g\",\"dialect\":\"infobip\",\"base_url\":\"https://x.example\","
           "\"api_key_env\":\"NUDGEL_TEST_AT_KEY\",\"tps\":0}"),
     "gateways[0].tps: 0 is outside 1 to 1000000"},
    {FILE1("{\"name\":\"g\",\"dialect\":\"infobip\",\"base_url\":\"https://x.example\","
           "\"api_key_env\":\"NUDGEL_TEST_AT_KEY\",\"tps\":\"fast\"}"),
     "gateways[0].tps: must be an integer"},
    {FILE1(GW("infobip", ",\"connect_timeout_ms\":5000,\"timeout_ms\":1000")),
     "gateways[0].connect_timeout_ms: 5000 is more than timeout_ms (1000)"},
    {FILE1(GW("infobip", ",\"timeout_ms\":10")),
     "gateways[0].timeout_ms: 10 is outside 100 to 300000"},
    {FILE1("{\"name\":\"g\",\"dialect\":\"infobip\",\"base_url\":\"ftp://x.example\","
           "\"api_key_env\":\"NUDGEL_TEST_AT_KEY\",\"tps\":5}"),
     "gateways[0].base_url: \"ftp://x.example\" is not an http:// or https:// URL"},
    {FILE1(GW("infobip", ",\"path\":\"sms\"")), "gateways[0].path: \"sms\" must be empty or start"},
    {FILE1(GW("infobip", ",\"sender_id\":\"THIS-SENDER-IS-TOO-LONG\"")),
     "gateways[0].sender_id: is 23 bytes, more than 16"},
    {FILE1(GW("generic", ",\"message_id_pointer\":\"id\"")),
     "gateways[0].message_id_pointer: \"id\" is not a JSON pointer"},
    {FILE1(GW("generic", ",\"status_pointer\":\"/a~2\"")),
     "gateways[0].status_pointer: \"/a~2\" is not a JSON pointer"},
    {FILE1(GW("generic", ",\"permanent_statuses\":[\"accepted\"]")),
     "gateways[0].success_statuses: \"accepted\" is also in another status list"},
    {FILE1(GW("generic", ",\"transient_statuses\":[\"\"]")),
     "gateways[0].transient_statuses[0]: must be a string of 1 to 64 bytes"},
    {FILE1(GW("generic", ",\"success_statuses\":\"ok\"")),
     "gateways[0].success_statuses: must be an array of strings"},
    {FILE1(GW("generic", ",\"credential_statuses\":[401,429]")),
     "gateways[0].credential_statuses: item 1 must be an HTTP status 400-499 but 429"},
    {FILE1(GW("generic", ",\"credential_statuses\":401")),
     "gateways[0].credential_statuses: must be an array of at most 16 HTTP statuses"},
    {FILE1(GW("infobip", ",\"credential_statuses\":[401]")),
     "gateways[0].credential_statuses: only applies to dialect generic"},
    {FILE1(GW("generic", ",\"auth_header\":\"X Api: Key\"")),
     "gateways[0].auth_header: \"X Api: Key\" is not an HTTP header name"},
    {"{\"gateways\":[" ATGW("") "],\"routes\":[{\"country\":\"US\",\"operator\":\"*\","
                                "\"gateways\":[\"g\"]}]}",
     "routes[0].country: \"US\" is not one of KE, NG, UG"},
    {"{\"gateways\":[" ATGW("") "],\"routes\":[{\"country\":\"KE\",\"operator\":\"*\","
                                "\"gateways\":[\"g\",\"nope\"]}]}",
     "routes[0].gateways[1]: \"nope\" is not a defined gateway"},
    {"{\"gateways\":[" ATGW("") "],\"routes\":[{\"country\":\"KE\",\"operator\":\"*\","
                                "\"gateways\":[\"g\",\"g\"]}]}",
     "routes[0].gateways[1]: \"g\" is listed twice"},
    {"{\"gateways\":[" ATGW("") "],\"routes\":[{\"country\":\"KE\",\"operator\":\"Safaricom\","
                                "\"gateways\":[\"g\"]},{\"country\":\"KE\",\"operator\":"
                                "\"safaricom\",\"gateways\":[\"g\"]}]}",
     "routes[1].operator: a route for KE/safaricom is already defined (routes[0])"},
    {"{\"gateways\":[" ATGW("") "],\"routes\":[{\"country\":\"KE\",\"gateways\":[\"g\"]}]}",
     "routes[0].operator: is required"},
    /* an operator the numbering plan does not know for the route's country */
    {"{\"gateways\":[" ATGW("") "],\"routes\":[{\"country\":\"KE\",\"operator\":\"*\","
                                "\"gateways\":[\"g\"]},{\"country\":\"KE\",\"operator\":"
                                "\"Safaricomm\",\"gateways\":[\"g\"]}]}",
     "routes[1].operator: \"Safaricomm\" is not an operator of KE in the numbering plan"},
    {"{\"gateways\":[" ATGW("") "],\"routes\":[{\"country\":\"NG\",\"operator\":"
                                "\"Safaricom\",\"gateways\":[\"g\"]}]}",
     "routes[0].operator: \"Safaricom\" is not an operator of NG in the numbering plan"},
    {"{\"gateways\":[" ATGW("") "],\"routes\":[{\"country\":\"KE\",\"operator\":\"*\","
                                "\"gateways\":[]}]}",
     "routes[0].gateways: must be a non-empty array"},
    {"{\"gateways\":[" ATGW("") "],\"routes\":[{\"country\":\"KE\",\"operator\":\"*\","
                                "\"gateway\":[\"g\"]}]}",
     "routes[0].gateway: unknown key"},
    {"{\"gateways\":[" ATGW("") "],\"default_route\":\"g\"}",
     "default_route: must be a non-empty array"},
    {"{\"gateways\":[" ATGW("") "]}", "routes: no route and no default_route"},
    {"{\"gateways\":[],\"default_route\":[\"g\"]}", "gateways: must be a non-empty array"},
    {"{\"default_route\":[\"g\"]}", "gateways: is required"},
    {"{\"gateways\":[" ATGW("") "],\"default_route\":[\"g\"],\"defaults\":1}",
     "defaults: unknown key"},
    {"{\"gateways\":[" ATGW("") "],", "line 1 column"},
    {"[]", "must hold a JSON object"},
};

static void test_load_bad(void **state)
{
    (void)state;
    set_keys();
    unsetenv("NUDGEL_TEST_UNSET_KEY");
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        char err[512] = "";
        nudgel_gateway_set_t *set = (nudgel_gateway_set_t *)1;
        nudgel_err_t rc =
            nudgel_gateway_set_parse(c->json, strlen(c->json), &set, err, sizeof(err));
        if (strcmp(c->want, "duplicate") == 0) {
            /* JSON_REJECT_DUPLICATES: a key written twice is an error too */
            assert_int_equal(rc, NUDGEL_ERR_CONFIG);
            assert_non_null(strstr(err, "duplicate"));
            continue;
        }
        if (rc != NUDGEL_ERR_CONFIG || !strstr(err, c->want))
            print_error("case %zu: rc %d \"%s\", want \"%s\"\n", i, rc, err, c->want);
        assert_int_equal(rc, NUDGEL_ERR_CONFIG);
        assert_null(set);
        assert_non_null(strstr(err, c->want));
        /* no key ever appears in an error */
        assert_null(strstr(err, AT_KEY));
    }
}

/*
 * Issue 10, item 8: the unknown-outcome policy per gateway — the dialect's
 * default (hold where the carrier cannot dedupe our client reference,
 * resubmit where it can), the file's key over it, a bad value refused — and
 * what counts as an unknown outcome: a lost answer only once the request went
 * out (a refused connection is a plain transient failure).
 */
static void test_unknown_outcome_policy(void **state)
{
    (void)state;
    set_keys();
    static const char file[] =
        "{\"gateways\": ["
        "{\"name\": \"at\", \"dialect\": \"africastalking\", \"base_url\": "
        "\"http://127.0.0.1:1/at\","
        " \"api_key_env\": \"NUDGEL_TEST_AT_KEY\", \"username\": \"sandbox\", \"tps\": 10},"
        "{\"name\": \"at-resubmit\", \"dialect\": \"africastalking\","
        " \"base_url\": \"http://127.0.0.1:1/at\", \"api_key_env\": \"NUDGEL_TEST_AT_KEY\","
        " \"username\": \"sandbox\", \"tps\": 10, \"unknown_outcome\": \"resubmit\"},"
        "{\"name\": \"ib\", \"dialect\": \"infobip\", \"base_url\": \"http://127.0.0.1:1/ib\","
        " \"api_key_env\": \"NUDGEL_TEST_INFOBIP_KEY\", \"tps\": 10},"
        "{\"name\": \"ib-hold\", \"dialect\": \"infobip\", \"base_url\": \"http://127.0.0.1:1/ib\","
        " \"api_key_env\": \"NUDGEL_TEST_INFOBIP_KEY\", \"tps\": 10, \"unknown_outcome\": "
        "\"hold\"}],"
        " \"routes\": [{\"country\": \"KE\", \"operator\": \"*\", \"gateways\": [\"at\"]}]}";
    char err[512] = "";
    nudgel_gateway_set_t *set = NULL;
    assert_int_equal(nudgel_gateway_set_parse(file, strlen(file), &set, err, sizeof(err)),
                     NUDGEL_OK);
    static const struct {
        const char *name;
        nudgel_gateway_unknown_policy_t want;
    } cases[] = {
        {"at", NUDGEL_GATEWAY_UNKNOWN_HOLD},
        {"at-resubmit", NUDGEL_GATEWAY_UNKNOWN_RESUBMIT},
        {"ib", NUDGEL_GATEWAY_UNKNOWN_RESUBMIT},
        {"ib-hold", NUDGEL_GATEWAY_UNKNOWN_HOLD},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(nudgel_gateway_unknown_outcome(nudgel_gateway_find(set, cases[i].name)),
                         cases[i].want);
    assert_string_equal(nudgel_gateway_unknown_policy_name(NUDGEL_GATEWAY_UNKNOWN_HOLD), "hold");
    assert_string_equal(nudgel_gateway_unknown_policy_name(NUDGEL_GATEWAY_UNKNOWN_RESUBMIT),
                        "resubmit");

    /* Lost answers: unknown only once the request went out. */
    nudgel_gateway_outcome_t o;
    const nudgel_gateway_t *at = nudgel_gateway_find(set, "at");
    nudgel_gateway_response_t refused = {.transport_error = true,
                                         .transport_detail = "Couldn't connect to server"};
    assert_int_equal(nudgel_gateway_classify(at, &refused, &o), NUDGEL_OK);
    assert_int_equal(o.kind, TRAN);
    assert_false(o.maybe_accepted);
    nudgel_gateway_response_t lost = {.transport_error = true,
                                      .request_sent = true,
                                      .transport_detail = "Empty reply from server"};
    assert_int_equal(nudgel_gateway_classify(at, &lost, &o), NUDGEL_OK);
    assert_int_equal(o.kind, TRAN);
    assert_true(o.maybe_accepted);
    /* A truncated 2xx: unknown too. */
    static const char cut[] = "{\"SMSMessageData\":{\"Message\":\"Sent to 1/1\",\"Reci";
    nudgel_gateway_response_t trunc = {
        .http_status = 201, .body = cut, .body_len = sizeof(cut) - 1};
    assert_int_equal(nudgel_gateway_classify(at, &trunc, &o), NUDGEL_OK);
    assert_int_equal(o.kind, TRAN);
    assert_true(o.maybe_accepted);
    nudgel_gateway_set_free(set);

    /* A value other than resubmit or hold is a config error naming the key. */
    static const char bad[] =
        "{\"gateways\": [{\"name\": \"at\", \"dialect\": \"africastalking\","
        " \"base_url\": \"http://127.0.0.1:1/at\", \"api_key_env\": \"NUDGEL_TEST_AT_KEY\","
        " \"username\": \"sandbox\", \"tps\": 10, \"unknown_outcome\": \"retry\"}],"
        " \"routes\": [{\"country\": \"KE\", \"operator\": \"*\", \"gateways\": [\"at\"]}]}";
    set = NULL;
    assert_int_equal(nudgel_gateway_set_parse(bad, strlen(bad), &set, err, sizeof(err)),
                     NUDGEL_ERR_CONFIG);
    assert_null(set);
    assert_non_null(strstr(err, "unknown_outcome"));
}

/* Secrets: errors after the key was read never show it. */
static void test_no_secret_in_errors(void **state)
{
    char err[512];
    nudgel_gateway_set_t *set = NULL;
    (void)state;
    setenv("NUDGEL_TEST_SECRET", "sk_live_TOPSECRET", 1);
    const char *json = "{\"gateways\":[{\"name\":\"g\",\"dialect\":\"infobip\",\"base_url\":"
                       "\"https://x.example\",\"api_key_env\":\"NUDGEL_TEST_SECRET\",\"tps\":-1}],"
                       "\"default_route\":[\"g\"]}";
    assert_int_equal(nudgel_gateway_set_parse(json, strlen(json), &set, err, sizeof(err)),
                     NUDGEL_ERR_CONFIG);
    assert_null(strstr(err, "TOPSECRET"));
    assert_non_null(strstr(err, "gateways[0].tps"));
    /* a key with a control character is refused without echoing it */
    setenv("NUDGEL_TEST_SECRET", "sk_live_\x01TOPSECRET", 1);
    const char *json2 = "{\"gateways\":[{\"name\":\"g\",\"dialect\":\"infobip\",\"base_url\":"
                        "\"https://x.example\",\"api_key_env\":\"NUDGEL_TEST_SECRET\",\"tps\":1}],"
                        "\"default_route\":[\"g\"]}";
    assert_int_equal(nudgel_gateway_set_parse(json2, strlen(json2), &set, err, sizeof(err)),
                     NUDGEL_ERR_CONFIG);
    assert_null(strstr(err, "TOPSECRET"));
    assert_non_null(strstr(err, "NUDGEL_TEST_SECRET"));
}

/* ---- routes ------------------------------------------------------------ */

typedef struct route_case {
    const char *country, *op;
    const char *want; /* "a,b" names in order, or NULL for no route */
} route_case_t;

static void check_routes(const nudgel_gateway_set_t *set, const route_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        nudgel_gateway_route_t r;
        char err[256] = "", got[256] = "";
        nudgel_err_t rc =
            nudgel_gateway_route(set, cases[i].country, cases[i].op, &r, err, sizeof(err));
        if (!cases[i].want) {
            assert_int_equal(rc, NUDGEL_ERR_INVALID_FIELD);
            assert_int_equal(r.count, 0);
            assert_true(err[0] != '\0');
            continue;
        }
        assert_int_equal(rc, NUDGEL_OK);
        for (size_t j = 0; j < r.count; j++) {
            strcat(got, j ? "," : "");
            strcat(got, nudgel_gateway_name(r.gateways[j]));
        }
        if (strcmp(got, cases[i].want) != 0)
            print_error("%s/%s: %s, want %s\n", cases[i].country ? cases[i].country : "(null)",
                        cases[i].op ? cases[i].op : "(null)", got, cases[i].want);
        assert_string_equal(got, cases[i].want);
    }
}

static void test_route_table(void **state)
{
    nudgel_gateway_set_t *set = load_sim();
    static const route_case_t cases[] = {
        {"KE", "Safaricom", "at,ib"},
        {"KE", "SAFARICOM", "at,ib"},
        {"KE", "Airtel", "ib,at"},
        {"KE", NULL, "ib,at"},
        {"KE", "Telkom KE", "ib,at"},
        {"NG", "MTN", "ib,gen"},
        {"NG", "Glo", "ib,gen"},
        {"UG", "MTN", "at"},
        {"UG", "Airtel", "gen"},
        {"UG", NULL, "gen"},
        {"", NULL, "gen"},
        {NULL, NULL, "gen"},
        {"US", "Verizon", "gen"},
    };
    (void)state;
    check_routes(set, cases, sizeof(cases) / sizeof(cases[0]));
    nudgel_gateway_set_free(set);

    /* without a default route, numbers outside the routes are rejected */
    const char *json = "{\"gateways\":[{\"name\":\"g\",\"dialect\":\"infobip\",\"base_url\":"
                       "\"https://x.example\",\"api_key_env\":\"NUDGEL_TEST_AT_KEY\",\"tps\":1}],"
                       "\"routes\":[{\"country\":\"KE\",\"operator\":\"*\",\"gateways\":[\"g\"]},"
                       "{\"country\":\"UG\",\"operator\":\"MTN\",\"gateways\":[\"g\"]}]}";
    char err[256];
    assert_int_equal(nudgel_gateway_set_parse(json, strlen(json), &set, err, sizeof(err)),
                     NUDGEL_OK);
    static const route_case_t nodefault[] = {
        {"KE", "Safaricom", "g"}, {"UG", "MTN", "g"}, {"UG", "Airtel", NULL},
        {"NG", "MTN", NULL},      {"", NULL, NULL},   {"US", NULL, NULL},
    };
    check_routes(set, nodefault, sizeof(nodefault) / sizeof(nodefault[0]));
    nudgel_gateway_route_t r;
    assert_int_equal(nudgel_gateway_route(set, "", NULL, &r, err, sizeof(err)),
                     NUDGEL_ERR_INVALID_FIELD);
    assert_string_equal(
        err, "no route: the number is outside KE, NG and UG and there is no default route");
    assert_int_equal(nudgel_gateway_route(set, "UG", "Airtel", &r, err, sizeof(err)),
                     NUDGEL_ERR_INVALID_FIELD);
    assert_string_equal(err,
                        "no route for country \"UG\" operator \"Airtel\" and no default route");
    nudgel_gateway_set_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_classify_details),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_form_encode),
        cmocka_unit_test(test_request_at),
        cmocka_unit_test(test_request_infobip),
        cmocka_unit_test(test_request_generic),
        cmocka_unit_test(test_request_invalid),
        cmocka_unit_test(test_load_good),
        cmocka_unit_test(test_load_example_and_key_file),
        cmocka_unit_test(test_load_bad),
        cmocka_unit_test(test_no_secret_in_errors),
        cmocka_unit_test(test_route_table),
        cmocka_unit_test(test_validity_period),
        cmocka_unit_test(test_unknown_outcome_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
