/*
 * test_dlr_parse.c — delivery-report parsing per dialect: valid bodies
 * (statuses, batches, optional fields), a table of malformed bodies that
 * must be refused with a reason, message-id normalisation, the generic
 * dialect's settings, and the carrier DLR v1 record.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parse.h"

static dlr_report_t out[DLR_BATCH_MAX];

static int parse(nudgel_gateway_dialect_t d, const dlr_generic_cfg_t *g, const char *body,
                 size_t *n, char *why, size_t why_size)
{
    return dlr_parse(d, g, body, strlen(body), out, n, why, why_size);
}

static void default_generic(dlr_generic_cfg_t *g)
{
    json_t *obj = json_object();
    char why[256];
    assert_int_equal(dlr_generic_cfg_parse(obj, g, why, sizeof(why)), 0);
    json_decref(obj);
}

/* ---- Africa's Talking ------------------------------------------------- */

static void test_at_statuses(void **state)
{
    static const struct {
        const char *status;
        dlr_status_t want;
    } cases[] = {
        {"Success", DLR_STATUS_DELIVERED},  {"Failed", DLR_STATUS_UNDELIVERED},
        {"Rejected", DLR_STATUS_REJECTED},  {"Sent", DLR_STATUS_SENT},
        {"Submitted", DLR_STATUS_SENT},     {"Buffered", DLR_STATUS_BUFFERED},
        {"Teleported", DLR_STATUS_UNKNOWN},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256], why[256];
        size_t n = 0;
        snprintf(body, sizeof(body), "id=ATXid_abc&status=%s&phoneNumber=%%2B254711000001",
                 cases[i].status);
        assert_int_equal(parse(NUDGEL_GATEWAY_AFRICASTALKING, NULL, body, &n, why, sizeof(why)), 0);
        assert_int_equal(n, 1);
        assert_int_equal(out[0].status, cases[i].want);
        assert_string_equal(out[0].raw_status, cases[i].status);
        assert_string_equal(out[0].gateway_message_id, "ATXid_abc");
        assert_string_equal(out[0].to, "+254711000001");
    }
}

static void test_at_full(void **state)
{
    char why[256];
    size_t n = 0;
    (void)state;
    assert_int_equal(parse(NUDGEL_GATEWAY_AFRICASTALKING, NULL,
                           "phoneNumber=%2B254711000001&id=++ATXid_Ab9%20&status=Failed&"
                           "networkCode=63902&failureReason=DeliveryFailure&retryCount=2&extra=x",
                           &n, why, sizeof(why)),
                     0);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].gateway_message_id, "ATXid_Ab9"); /* trimmed, case kept */
    assert_int_equal(out[0].status, DLR_STATUS_UNDELIVERED);
    assert_true(out[0].has_error);
    assert_string_equal(out[0].error_code, "DeliveryFailure");
    assert_string_equal(out[0].network_code, "63902");
    assert_string_equal(out[0].message_id, "");
    /* a networkCode that does not read is left out, not refused */
    assert_int_equal(parse(NUDGEL_GATEWAY_AFRICASTALKING, NULL,
                           "id=ATXid_1&status=Rejected&networkCode=abc", &n, why, sizeof(why)),
                     0);
    assert_string_equal(out[0].network_code, "");
    assert_true(out[0].has_error);
    assert_string_equal(out[0].error_code, "Rejected");
}

/* ---- Infobip ---------------------------------------------------------- */

static const char *IB_ONE =
    "{\"results\":[{\"bulkId\":\"b1\",\"messageId\":\"0190A8E2-7C4B-7D1E-9F00-0123456789AB\","
    "\"to\":\"254711000001\",\"sentAt\":\"2019-08-09T16:59:59.000+0000\","
    "\"doneAt\":\"2019-08-09T17:00:00.000+0300\",\"smsCount\":2,\"mccMnc\":\"63902\","
    "\"callbackData\":\"x\",\"price\":{\"pricePerMessage\":0.8,\"currency\":\"KES\"},"
    "\"status\":{\"groupId\":2,\"groupName\":\"UNDELIVERABLE\",\"id\":9,"
    "\"name\":\"UNDELIVERABLE_NOT_DELIVERED\",\"description\":\"d\"},"
    "\"error\":{\"groupId\":1,\"groupName\":\"HANDSET_ERRORS\",\"id\":27,"
    "\"name\":\"EC_ABSENT_SUBSCRIBER\",\"description\":\"Absent Subscriber\","
    "\"permanent\":false}}]}";

static void test_infobip_one(void **state)
{
    char why[256];
    size_t n = 0;
    (void)state;
    assert_int_equal(parse(NUDGEL_GATEWAY_INFOBIP, NULL, IB_ONE, &n, why, sizeof(why)), 0);
    assert_int_equal(n, 1);
    dlr_report_t *r = &out[0];
    assert_string_equal(r->gateway_message_id, "0190a8e2-7c4b-7d1e-9f00-0123456789ab");
    assert_string_equal(r->message_id, "0190a8e2-7c4b-7d1e-9f00-0123456789ab");
    assert_int_equal(r->status, DLR_STATUS_UNDELIVERED);
    assert_string_equal(r->raw_status, "UNDELIVERABLE_NOT_DELIVERED");
    assert_true(r->has_error);
    assert_string_equal(r->error_code, "EC_ABSENT_SUBSCRIBER");
    assert_string_equal(r->error_message, "Absent Subscriber");
    assert_true(r->has_permanent);
    assert_false(r->permanent);
    assert_string_equal(r->network_code, "63902");
    assert_string_equal(r->done_at, "2019-08-09T14:00:00.000Z");
    assert_true(r->has_cost);
    assert_string_equal(r->cost_amount, "0.8");
    assert_string_equal(r->cost_currency, "KES");
    assert_int_equal(r->segments, 2);
    assert_string_equal(r->to, "254711000001");
}

static void test_infobip_groups(void **state)
{
    static const struct {
        const char *status;
        dlr_status_t want;
    } cases[] = {
        {"{\"groupName\":\"DELIVERED\",\"id\":5,\"name\":\"DELIVERED_TO_HANDSET\"}",
         DLR_STATUS_DELIVERED},
        {"{\"groupName\":\"DELIVERED\",\"id\":2,\"name\":\"DELIVERED_TO_OPERATOR\"}",
         DLR_STATUS_SENT},
        {"{\"groupName\":\"PENDING\",\"id\":7,\"name\":\"PENDING_ENROUTE\"}", DLR_STATUS_SENT},
        {"{\"groupName\":\"EXPIRED\",\"id\":15,\"name\":\"EXPIRED_EXPIRED\"}", DLR_STATUS_EXPIRED},
        {"{\"groupName\":\"REJECTED\",\"id\":6,\"name\":\"REJECTED_NETWORK\"}",
         DLR_STATUS_REJECTED},
        {"{\"groupName\":\"UNDELIVERABLE\"}", DLR_STATUS_UNDELIVERED},
        {"{\"groupId\":3}", DLR_STATUS_DELIVERED},
        {"{\"groupId\":4}", DLR_STATUS_EXPIRED},
        {"{\"groupName\":\"MYSTERY\"}", DLR_STATUS_UNKNOWN},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[512], why[256];
        size_t n = 0;
        snprintf(body, sizeof(body),
                 "{\"results\":[{\"messageId\":\"m-%zu\",\"status\":%s,"
                 "\"error\":{\"groupId\":0,\"name\":\"NO_ERROR\",\"permanent\":false}}]}",
                 i, cases[i].status);
        assert_int_equal(parse(NUDGEL_GATEWAY_INFOBIP, NULL, body, &n, why, sizeof(why)), 0);
        assert_int_equal(out[0].status, cases[i].want);
        assert_false(out[0].has_error); /* NO_ERROR is no error */
    }
}

static void test_infobip_batch_of_100(void **state)
{
    char *body = malloc(64 * 1024);
    size_t len = 0, n = 0;
    char why[256];
    (void)state;
    len += (size_t)sprintf(body + len, "{\"results\":[");
    for (int i = 0; i < 100; i++)
        len += (size_t)sprintf(body + len,
                               "%s{\"messageId\":\"MID-%03d\",\"status\":{\"groupId\":3,"
                               "\"groupName\":\"DELIVERED\",\"id\":5,"
                               "\"name\":\"DELIVERED_TO_HANDSET\"},\"callbackData\":"
                               "\"0190a8e2-7c4b-7d1e-9f00-%012d\"}",
                               i ? "," : "", i, i);
    sprintf(body + len, "]}");
    assert_int_equal(parse(NUDGEL_GATEWAY_INFOBIP, NULL, body, &n, why, sizeof(why)), 0);
    assert_int_equal(n, 100);
    assert_string_equal(out[99].gateway_message_id, "MID-099"); /* not a UUID: case kept */
    assert_string_equal(out[99].message_id, "0190a8e2-7c4b-7d1e-9f00-000000000099");
    free(body);
}

/* ---- generic ---------------------------------------------------------- */

static void test_generic_defaults(void **state)
{
    dlr_generic_cfg_t g;
    char why[256];
    size_t n = 0;
    (void)state;
    default_generic(&g);
    assert_int_equal(
        parse(NUDGEL_GATEWAY_GENERIC, &g,
              "{\"id\":\"gen-1\",\"client_ref\":\"0190A8E2-7C4B-7D1E-9F00-0123456789AB\","
              "\"to\":\"+256772000014\",\"status\":\"undelivered\","
              "\"timestamp\":\"2026-01-02T03:04:05Z\",\"error_code\":\"absent_subscriber\"}",
              &n, why, sizeof(why)),
        0);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].gateway_message_id, "gen-1");
    assert_string_equal(out[0].message_id, "0190a8e2-7c4b-7d1e-9f00-0123456789ab");
    assert_int_equal(out[0].status, DLR_STATUS_UNDELIVERED);
    assert_string_equal(out[0].error_code, "absent_subscriber");
    assert_string_equal(out[0].done_at, "2026-01-02T03:04:05.000Z");
    assert_int_equal(parse(NUDGEL_GATEWAY_GENERIC, &g, "{\"id\":42,\"status\":\"queued\"}", &n, why,
                           sizeof(why)),
                     0);
    assert_string_equal(out[0].gateway_message_id, "42");
    assert_int_equal(out[0].status, DLR_STATUS_SENT);
    dlr_generic_cfg_clear(&g);
}

static void test_generic_configured(void **state)
{
    dlr_generic_cfg_t g;
    char why[256];
    size_t n = 0;
    (void)state;
    json_t *obj = json_loads("{\"results_pointer\":\"/data/reports\","
                             "\"message_id_pointer\":\"/ref/id\",\"status_pointer\":\"/state\","
                             "\"statuses\":{\"delivered\":[\"DELIVRD\"],\"undelivered\":"
                             "[\"UNDELIV\"],\"expired\":[\"EXPIRED\"]},"
                             "\"message_id_case\":\"upper\"}",
                             0, NULL);
    assert_int_equal(dlr_generic_cfg_parse(obj, &g, why, sizeof(why)), 0);
    json_decref(obj);
    assert_int_equal(parse(NUDGEL_GATEWAY_GENERIC, &g,
                           "{\"data\":{\"reports\":[{\"ref\":{\"id\":\"ab-1\"},\"state\":"
                           "\"DELIVRD\"},{\"ref\":{\"id\":\"ab-2\"},\"state\":\"EXPIRED\"},"
                           "{\"ref\":{\"id\":\"ab-3\"},\"state\":\"delivered\"}]}}",
                           &n, why, sizeof(why)),
                     0);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].gateway_message_id, "AB-1");
    assert_int_equal(out[0].status, DLR_STATUS_DELIVERED);
    assert_int_equal(out[1].status, DLR_STATUS_EXPIRED);
    assert_int_equal(out[2].status, DLR_STATUS_UNKNOWN); /* the default lists were replaced */
    dlr_generic_cfg_clear(&g);
}

static void test_generic_bad_settings(void **state)
{
    static const char *bad[] = {
        "{\"message_id_pointer\":\"id\"}",
        "{\"status_pointer\":\"\"}",
        "{\"statuses\":{\"delivered\":[\"x\"],\"undelivered\":[\"x\"]}}",
        "{\"statuses\":{\"arrived\":[\"x\"]}}",
        "{\"statuses\":[]}",
        "{\"message_id_case\":\"title\"}",
        "{\"to_pointer\":7}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dlr_generic_cfg_t g;
        char why[256] = "";
        json_t *obj = json_loads(bad[i], 0, NULL);
        assert_non_null(obj);
        assert_int_equal(dlr_generic_cfg_parse(obj, &g, why, sizeof(why)), -1);
        assert_true(strncmp(why, "dlr.", 4) == 0);
        json_decref(obj);
    }
}

/* ---- malformed bodies: refused whole, with a reason ------------------- */

static void test_malformed(void **state)
{
    static const struct {
        nudgel_gateway_dialect_t d;
        const char *body;
        const char *reason; /* a part of the reason */
    } cases[] = {
        {NUDGEL_GATEWAY_AFRICASTALKING, "", "empty"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "status=Success", "id: missing"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "id=ATXid_1", "status: missing"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "id=ATXid_1&status=", "status: missing"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "id=&status=Success", "id: empty"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "id=%20%20&status=Success", "id: empty"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "id=AT%0Aid&status=Success", "control"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "id=AT%zzid&status=Success", "escape"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "id=AT%2&status=Success", "escape"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "id=a%00b&status=Success", "escape"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "id=1&id=2&status=Success", "twice"},
        {NUDGEL_GATEWAY_AFRICASTALKING, "{\"id\":\"1\",\"status\":\"Success\"}", "not a form"},
        {NUDGEL_GATEWAY_INFOBIP, "", "not JSON"},
        {NUDGEL_GATEWAY_INFOBIP, "{\"results\":[", "not JSON"},
        {NUDGEL_GATEWAY_INFOBIP, "[]", "results"},
        {NUDGEL_GATEWAY_INFOBIP, "{}", "results: missing"},
        {NUDGEL_GATEWAY_INFOBIP, "{\"results\":{}}", "not an array"},
        {NUDGEL_GATEWAY_INFOBIP, "{\"results\":[]}", "0 reports"},
        {NUDGEL_GATEWAY_INFOBIP, "{\"results\":[7]}", "results[0]: not an object"},
        {NUDGEL_GATEWAY_INFOBIP, "{\"results\":[{\"status\":{\"groupId\":3}}]}",
         "messageId: missing"},
        {NUDGEL_GATEWAY_INFOBIP, "{\"results\":[{\"messageId\":5,\"status\":{\"groupId\":3}}]}",
         "messageId: not a string"},
        {NUDGEL_GATEWAY_INFOBIP, "{\"results\":[{\"messageId\":\"m\"}]}", "status: missing"},
        {NUDGEL_GATEWAY_INFOBIP, "{\"results\":[{\"messageId\":\"m\",\"status\":{}}]}",
         "no groupName or groupId"},
        {NUDGEL_GATEWAY_INFOBIP,
         "{\"results\":[{\"messageId\":\"m\",\"status\":{\"groupName\":3}}]}", "not a string"},
        {NUDGEL_GATEWAY_INFOBIP,
         "{\"results\":[{\"messageId\":\"m\",\"status\":{\"groupId\":\"3\"}}]}", "not an integer"},
        {NUDGEL_GATEWAY_INFOBIP,
         "{\"results\":[{\"messageId\":\"m\",\"status\":{\"groupId\":3}},{\"messageId\":\"\","
         "\"status\":{\"groupId\":3}}]}",
         "results[1].messageId: empty"},
        {NUDGEL_GATEWAY_INFOBIP,
         "{\"results\":[{\"messageId\":\"m\",\"messageId\":\"n\",\"status\":{\"groupId\":3}}]}",
         "not JSON"},
        {NUDGEL_GATEWAY_GENERIC, "{\"status\":\"delivered\"}", "/id: no message id"},
        {NUDGEL_GATEWAY_GENERIC, "{\"id\":\"g\"}", "/status: no status"},
        {NUDGEL_GATEWAY_GENERIC, "{\"id\":\"g\",\"status\":true}", "/status: no status"},
        {NUDGEL_GATEWAY_GENERIC, "{\"id\":{},\"status\":\"delivered\"}", "no message id"},
        {NUDGEL_GATEWAY_GENERIC, "[{\"id\":\"g\",\"status\":\"sent\"}]", ": not an object"},
        {NUDGEL_GATEWAY_GENERIC, "id=1&status=delivered", "not JSON"},
    };
    dlr_generic_cfg_t g;
    (void)state;
    default_generic(&g);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char why[256] = "";
        size_t n = 99;
        int rc = dlr_parse(cases[i].d, &g, cases[i].body, strlen(cases[i].body), out, &n, why,
                           sizeof(why));
        if (rc != -1 || n != 0 || !strstr(why, cases[i].reason))
            fail_msg("case %zu (%s): rc %d, n %zu, reason \"%s\", wanted \"%s\"", i, cases[i].body,
                     rc, n, why, cases[i].reason);
    }
    dlr_generic_cfg_clear(&g);
}

static void test_too_many_reports(void **state)
{
    char *body = malloc(64 * 1024);
    size_t len = 0, n = 0;
    char why[256];
    (void)state;
    len += (size_t)sprintf(body + len, "{\"results\":[");
    for (int i = 0; i < 101; i++)
        len += (size_t)sprintf(body + len, "%s{\"messageId\":\"m%d\",\"status\":{\"groupId\":3}}",
                               i ? "," : "", i);
    sprintf(body + len, "]}");
    assert_int_equal(parse(NUDGEL_GATEWAY_INFOBIP, NULL, body, &n, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "101 reports"));
    free(body);
}

/* ---- ids and the record ------------------------------------------------ */

static void test_id_normalise(void **state)
{
    static const struct {
        const char *in;
        dlr_id_case_t c;
        const char *want; /* NULL: refused */
    } cases[] = {
        {"ATXid_AbC", DLR_ID_CASE_PRESERVE, "ATXid_AbC"},
        {"  ATXid_AbC\t\r\n", DLR_ID_CASE_PRESERVE, "ATXid_AbC"},
        {"0190A8E2-7C4B-7D1E-9F00-0123456789AB", DLR_ID_CASE_UUID_LOWER,
         "0190a8e2-7c4b-7d1e-9f00-0123456789ab"},
        {"MID-ABC", DLR_ID_CASE_UUID_LOWER, "MID-ABC"},
        {"0190A8E2-7C4B-7D1E-9F00-0123456789AZ", DLR_ID_CASE_UUID_LOWER,
         "0190A8E2-7C4B-7D1E-9F00-0123456789AZ"},
        {"Ab-1", DLR_ID_CASE_LOWER, "ab-1"},
        {"Ab-1", DLR_ID_CASE_UPPER, "AB-1"},
        {"", DLR_ID_CASE_PRESERVE, NULL},
        {"   ", DLR_ID_CASE_PRESERVE, NULL},
        {"a\x01b", DLR_ID_CASE_PRESERVE, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char id[DLR_ID_MAX + 1], why[128];
        int rc =
            dlr_id_normalise(cases[i].in, strlen(cases[i].in), cases[i].c, id, why, sizeof(why));
        if (cases[i].want) {
            assert_int_equal(rc, 0);
            assert_string_equal(id, cases[i].want);
        } else {
            assert_int_equal(rc, -1);
        }
    }
    char longid[DLR_ID_MAX + 2], id[DLR_ID_MAX + 1], why[128];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(
        dlr_id_normalise(longid, DLR_ID_MAX, DLR_ID_CASE_PRESERVE, id, why, sizeof(why)), 0);
    assert_int_equal(
        dlr_id_normalise(longid, DLR_ID_MAX + 1, DLR_ID_CASE_PRESERVE, id, why, sizeof(why)), -1);
}

static void test_record_json(void **state)
{
    char why[256];
    size_t n = 0;
    (void)state;
    assert_int_equal(parse(NUDGEL_GATEWAY_INFOBIP, NULL, IB_ONE, &n, why, sizeof(why)), 0);
    char *text = dlr_report_json(&out[0], "infobip", "infobip", "2026-01-01T00:00:00.000Z");
    assert_non_null(text);
    json_t *o = json_loads(text, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "gateway")), "infobip");
    assert_string_equal(json_string_value(json_object_get(o, "status")), "undelivered");
    assert_string_equal(json_string_value(json_object_get(o, "dialect")), "infobip");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "cost"), "amount")),
                        "0.8");
    assert_true(json_is_false(json_object_get(json_object_get(o, "error"), "permanent")));
    assert_int_equal(json_integer_value(json_object_get(o, "segments")), 2);
    json_decref(o);
    free(text);
    /* the minimum: required fields only */
    dlr_report_t r;
    dlr_report_init(&r);
    snprintf(r.gateway_message_id, sizeof(r.gateway_message_id), "x");
    r.status = DLR_STATUS_BUFFERED;
    text = dlr_report_json(&r, "at-ke", "africastalking", "2026-01-01T00:00:00.000Z");
    assert_string_equal(text, "{\"gateway\":\"at-ke\",\"gateway_message_id\":\"x\","
                              "\"status\":\"buffered\",\"received_at\":"
                              "\"2026-01-01T00:00:00.000Z\",\"dialect\":\"africastalking\"}");
    free(text);
}

static void test_cost_and_time(void **state)
{
    dlr_report_t r;
    (void)state;
    dlr_report_init(&r);
    json_t *v = json_string("12.50");
    assert_true(dlr_take_cost(&r, v, "NGN"));
    assert_string_equal(r.cost_amount, "12.50");
    json_decref(v);
    v = json_string("1e3");
    assert_false(dlr_take_cost(&r, v, "NGN"));
    json_decref(v);
    v = json_integer(2);
    assert_false(dlr_take_cost(&r, v, "kes"));
    assert_true(dlr_take_cost(&r, v, "UGX"));
    assert_string_equal(r.cost_amount, "2");
    json_decref(v);
    assert_false(dlr_take_time(&r, "yesterday"));
    assert_true(dlr_take_time(&r, "2019-08-09T17:00:00.000-0130"));
    assert_string_equal(r.done_at, "2019-08-09T18:30:00.000Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_statuses),
        cmocka_unit_test(test_at_full),
        cmocka_unit_test(test_infobip_one),
        cmocka_unit_test(test_infobip_groups),
        cmocka_unit_test(test_infobip_batch_of_100),
        cmocka_unit_test(test_generic_defaults),
        cmocka_unit_test(test_generic_configured),
        cmocka_unit_test(test_generic_bad_settings),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_too_many_reports),
        cmocka_unit_test(test_id_normalise),
        cmocka_unit_test(test_record_json),
        cmocka_unit_test(test_cost_and_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
