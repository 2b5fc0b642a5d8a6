/*
 * test_deliver_db.c — the read halves of the deliverer's statements
 * (deliver_db.c) on results built by hand (PQmakeEmptyPGresult): what a
 * claim says of each job, a flush pipeline's results (the endpoints it
 * disabled, the first failing statement, a missing sync), endpoint rows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "deliver_db.h"

/* A text-format result of @p status with @p ncols columns and @p nrows rows of @p cells. */
static PGresult *result(ExecStatusType status, int ncols, int nrows, const char *const *cells)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, status);
    assert_non_null(res);
    if (ncols == 0)
        return res;
    PGresAttDesc attrs[16];
    char names[16][16];
    assert_true(ncols <= 16);
    for (int c = 0; c < ncols; c++) {
        snprintf(names[c], sizeof(names[c]), "c%d", c);
        attrs[c] = (PGresAttDesc){.name = names[c], .typid = 25 /* text */, .typlen = -1};
    }
    assert_true(PQsetResultAttrs(res, ncols, attrs));
    for (int r = 0; r < nrows; r++)
        for (int c = 0; c < ncols; c++) {
            const char *v = cells[r * ncols + c];
            assert_true(PQsetvalue(res, r, c, (char *)v, v ? (int)strlen(v) : -1));
        }
    return res;
}

static void test_claim_read(void **state)
{
    (void)state;
    /* n, own, status, attempts, last_status_code, last_error, url, same tenant, delivery id —
     * ORDER BY n, own DESC */
#define D1 "01890a5d-ac96-774b-bcce-b302099a9001"
#define D2 "01890a5d-ac96-774b-bcce-b302099a9002"
    static const char *const cells[] = {
        "1",
        "t",
        "delivered",
        "2",
        "200",
        "",
        "https://a.example/h",
        "t",
        D1, /* final */
        "2",
        "f",
        "delivering",
        "1",
        NULL,
        "http_5xx: HTTP 500",
        "https://a.example/h",
        "t",
        D2, /* duplicate */
        "4",
        "t",
        "delivering",
        "3",
        "503",
        "http_5xx: HTTP 503",
        NULL,
        "t",
        D1, /* own row... */
        "4",
        "f",
        "delivered",
        "1",
        "200",
        "",
        "https://a.example/h",
        "t",
        D2, /* ...wins */
        "5",
        "t",
        "delivered",
        "1",
        "200",
        "",
        "https://b.example/h",
        "f",
        D1, /* another tenant's */
        "9",
        "t",
        "delivered",
        "1",
        "200",
        "",
        "https://a.example/h",
        "t",
        D1, /* out of range */
    };
    PGresult *res = result(PGRES_TUPLES_OK, 9, 6, cells);
    wh_claim_t out[5];
    char errstr[256];
    assert_int_equal(wh_db_claim_read(res, out, 5, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_true(out[0].final && !out[0].fresh && !out[0].duplicate && !out[0].foreign);
    assert_string_equal(out[0].url, "https://a.example/h"); /* the url the row records */
    assert_string_equal(out[3].url, "");                    /* none recorded yet */
    assert_string_equal(out[1].duplicate_of, D2);
    assert_string_equal(out[0].duplicate_of, "");
    assert_true(out[4].foreign && !out[4].duplicate); /* its delivery id is another's row */
    assert_int_equal(out[0].status, WH_DELIVERY_DELIVERED);
    assert_string_equal(wh_delivery_status_name(out[0].status), "delivered");
    assert_string_equal(out[0].error_class, "");
    assert_int_equal(out[0].attempts, 2);
    assert_int_equal(out[0].last_status_code, 200);
    assert_true(out[1].duplicate && !out[1].final && !out[1].fresh);
    assert_int_equal(out[1].last_status_code, 0);
    assert_true(out[2].fresh && !out[2].final && !out[2].duplicate && out[2].attempts == 0);
    assert_true(out[3].fresh && !out[3].duplicate && !out[3].final);
    assert_int_equal(out[3].attempts, 3);
    assert_int_equal(out[3].status, WH_DELIVERY_DELIVERING);
    assert_string_equal(out[3].error_class, "http_5xx"); /* "http_5xx: HTTP 503" */
    assert_string_equal(out[3].error_message, "HTTP 503");
    PQclear(res);

    /* Stored text is parsed once, here: a status the enum does not know is an error. */
    static const char *const odd[] = {"1",        "t",  "delivered ", "1", "200",
                                      "no colon", NULL, "t",          D1};
    res = result(PGRES_TUPLES_OK, 9, 1, odd);
    assert_int_equal(wh_db_claim_read(res, out, 1, errstr, sizeof(errstr)), NUDGEL_ERR_PG);
    assert_non_null(strstr(errstr, "is not a delivery status"));
    PQclear(res);

    /* Every final status is final; a last_error without ": " has no class. */
    static const struct {
        const char *text;
        wh_delivery_status_t status;
        bool final;
    } statuses[] = {
        {"pending", WH_DELIVERY_PENDING, false},    {"delivering", WH_DELIVERY_DELIVERING, false},
        {"delivered", WH_DELIVERY_DELIVERED, true}, {"failed", WH_DELIVERY_FAILED, true},
        {"exhausted", WH_DELIVERY_EXHAUSTED, true}, {"cancelled", WH_DELIVERY_CANCELLED, true},
    };
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        const char *row[] = {"1", "t", statuses[i].text, "1", NULL, "no colon", NULL, "t", D1};
        res = result(PGRES_TUPLES_OK, 9, 1, row);
        assert_int_equal(wh_db_claim_read(res, out, 1, errstr, sizeof(errstr)), NUDGEL_OK);
        assert_int_equal(out[0].status, statuses[i].status);
        assert_string_equal(wh_delivery_status_name(out[0].status), statuses[i].text);
        assert_int_equal(out[0].final, statuses[i].final);
        assert_int_equal(out[0].fresh, !statuses[i].final);
        assert_string_equal(out[0].error_class, "");
        assert_string_equal(out[0].error_message, "");
        PQclear(res);
    }

    res = result(PGRES_FATAL_ERROR, 0, 0, NULL);
    assert_int_equal(wh_db_claim_read(res, out, 4, errstr, sizeof(errstr)), NUDGEL_ERR_PG);
    assert_non_null(strstr(errstr, "claiming deliveries"));
    PQclear(res);
    assert_int_equal(wh_db_claim_read(NULL, out, 4, errstr, sizeof(errstr)), NUDGEL_ERR_PG);
}

/* A flush call of @p sent statements, the disabling one at @p disable_at. */
static wh_flush_call_t call_of(int sent, int disable_at)
{
    static const char *const what[] = {
        "updating deliveries",       "recording deliveries",         "recording attempts",
        "marking failing endpoints", "marking succeeding endpoints", "disabling failing endpoints"};
    wh_flush_call_t call = {.sent = sent, .disable_at = disable_at};
    for (int i = 0; i < sent; i++)
        call.what[i] = what[i];
    return call;
}

static void test_flush_read(void **state)
{
    (void)state;
    static const char *const disabled_rows[] = {
        "11111111-1111-4111-8111-111111111111", "t1", "failing without a success since x",
        "22222222-2222-4222-8222-222222222222", "t2", "failing without a success since y",
    };
    char errstr[256];
    json_t *disabled = NULL;

    /* Six statements and the sync: the last one's rows are the endpoints disabled. */
    PGresult *ok[7];
    for (int i = 0; i < 5; i++)
        ok[i] = result(PGRES_COMMAND_OK, 0, 0, NULL);
    ok[5] = result(PGRES_TUPLES_OK, 3, 2, disabled_rows);
    ok[6] = result(PGRES_PIPELINE_SYNC, 0, 0, NULL);
    wh_flush_call_t call = call_of(6, 5);
    assert_int_equal(wh_db_flush_read(&call, ok, 7, &disabled, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(json_array_size(disabled), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(disabled, 1), "tenant_id")), "t2");
    json_decref(disabled);

    /* No sync among the results, or fewer results than statements: not durable. */
    assert_int_equal(wh_db_flush_read(&call, ok, 6, &disabled, errstr, sizeof(errstr)),
                     NUDGEL_ERR_PG);
    assert_null(disabled);
    wh_flush_call_t more = call_of(6, -1);
    PGresult *short_run[2] = {ok[0], ok[6]};
    assert_int_equal(wh_db_flush_read(&more, short_run, 2, &disabled, errstr, sizeof(errstr)),
                     NUDGEL_ERR_PG);
    assert_non_null(strstr(errstr, "1 of 6"));
    for (int i = 0; i < 7; i++)
        PQclear(ok[i]);

    /* The second statement fails, the rest of the pipeline is aborted: its name is the reason. */
    PGresult *failed[4] = {
        result(PGRES_COMMAND_OK, 0, 0, NULL), result(PGRES_FATAL_ERROR, 0, 0, NULL),
        result(PGRES_PIPELINE_ABORTED, 0, 0, NULL), result(PGRES_PIPELINE_SYNC, 0, 0, NULL)};
    wh_flush_call_t three = call_of(3, -1);
    assert_int_equal(wh_db_flush_read(&three, failed, 4, &disabled, errstr, sizeof(errstr)),
                     NUDGEL_ERR_PG);
    assert_null(disabled);
    assert_non_null(strstr(errstr, "recording deliveries"));
    for (int i = 0; i < 4; i++)
        PQclear(failed[i]);
}

static void test_endpoint_rows(void **state)
{
    (void)state;
    /* endpoint_id, tenant, url, enabled, rate, concurrency, secret, key id, previous, its key
     * id, its expiry (ms) */
    static const char *const cells[] = {
        "11111111-1111-4111-8111-111111111111",
        "t1",
        "https://a.example/h",
        "t",
        "2.5",
        "4",
        "\\x0102ff",
        "k1",
        "\\x0a0b",
        "k0",
        "1795928400000",
        "22222222-2222-4222-8222-222222222222",
        "t2",
        "https://b.example/h",
        "f",
        "0",
        "0",
        "\\x00",
        "k1",
        NULL,
        "",
        "0",
    };
    PGresult *res = result(PGRES_TUPLES_OK, 11, 2, cells);
    char errstr[256];
    assert_int_equal(wh_db_endpoints_count(res, errstr, sizeof(errstr)), 2);
    wh_endpoint_row_t row;
    assert_int_equal(wh_db_endpoint_row(res, 0, &row), NUDGEL_OK);
    assert_string_equal(row.endpoint_id, "11111111-1111-4111-8111-111111111111");
    assert_string_equal(row.url, "https://a.example/h");
    assert_true(row.enabled);
    assert_true(row.rate_per_second == 2.5);
    assert_int_equal(row.max_concurrency, 4);
    assert_int_equal(row.secret_len, 3);
    assert_memory_equal(row.secret, "\x01\x02\xff", 3);
    assert_non_null(row.previous);
    assert_int_equal(row.previous_len, 2);
    assert_string_equal(row.previous_key_id, "k0");
    assert_int_equal(row.previous_expires_ms, 1795928400000LL);
    wh_endpoint_row_clear(&row);
    assert_null(row.url);
    assert_int_equal(wh_db_endpoint_row(res, 1, &row), NUDGEL_OK);
    assert_false(row.enabled);
    assert_null(row.previous);
    wh_endpoint_row_clear(&row);
    PQclear(res);

    res = result(PGRES_FATAL_ERROR, 0, 0, NULL);
    assert_int_equal(wh_db_endpoints_count(res, errstr, sizeof(errstr)), -1);
    assert_non_null(strstr(errstr, "reading endpoint rows"));
    PQclear(res);
    bool changed = true;
    assert_int_equal(wh_db_endpoint_disable_read(NULL, &changed, errstr, sizeof(errstr)),
                     NUDGEL_ERR_PG);
    assert_false(changed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_read),
        cmocka_unit_test(test_flush_read),
        cmocka_unit_test(test_endpoint_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
