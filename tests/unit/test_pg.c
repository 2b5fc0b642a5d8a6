/*
 * test_pg.c — the one mapping of a failed statement to nudgel_err_t
 * (nudgel/pg.h), table-driven: which SQLSTATEs mean the server or the
 * connection is going away (reconnect and send again) and which are the
 * statement's own error, and how a result's status is read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "nudgel/pg.h"

static void test_sqlstate(void **state)
{
    (void)state;
    static const struct {
        const char *sqlstate;
        nudgel_err_t err;
    } cases[] = {
        {"08000", NUDGEL_ERR_PG_UNREACHABLE}, /* connection_exception */
        {"08003", NUDGEL_ERR_PG_UNREACHABLE}, /* connection_does_not_exist */
        {"08006", NUDGEL_ERR_PG_UNREACHABLE}, /* connection_failure */
        {"08P01", NUDGEL_ERR_PG_UNREACHABLE}, /* protocol_violation */
        {"57P01", NUDGEL_ERR_PG_UNREACHABLE}, /* admin_shutdown */
        {"57P02", NUDGEL_ERR_PG_UNREACHABLE}, /* crash_shutdown */
        {"57P03", NUDGEL_ERR_PG_UNREACHABLE}, /* cannot_connect_now */
        {"57P04", NUDGEL_ERR_PG},             /* database_dropped */
        {"57014", NUDGEL_ERR_PG},             /* query_canceled */
        {"23505", NUDGEL_ERR_PG},             /* unique_violation */
        {"40P01", NUDGEL_ERR_PG},             /* deadlock_detected */
        {"42P01", NUDGEL_ERR_PG},             /* undefined_table */
        {"80000", NUDGEL_ERR_PG},             /* "08" not at the start */
        {"08", NUDGEL_ERR_PG},                /* not a SQLSTATE */
        {"", NUDGEL_ERR_PG},
        {NULL, NUDGEL_ERR_PG}, /* an error without a code */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nudgel_err_t got = nudgel_pg_sqlstate_err(cases[i].sqlstate);
        if (got != cases[i].err)
            print_error("SQLSTATE %s: %s, want %s\n",
                        cases[i].sqlstate ? cases[i].sqlstate : "(null)", nudgel_err_name(got),
                        nudgel_err_name(cases[i].err));
        assert_int_equal(got, cases[i].err);
    }
}

/* Failures of the moment (run it again) against failures of the statement. */
static void test_sqlstate_transient(void **state)
{
    (void)state;
    static const struct {
        const char *sqlstate;
        bool transient;
    } cases[] = {
        {"40001", true},  /* serialization_failure */
        {"40P01", true},  /* deadlock_detected */
        {"53200", true},  /* out_of_memory */
        {"53300", true},  /* too_many_connections */
        {"55P03", true},  /* lock_not_available */
        {"57014", true},  /* query_canceled (statement_timeout) */
        {"23505", false}, /* unique_violation */
        {"22P02", false}, /* invalid_text_representation */
        {"42P01", false}, /* undefined_table */
        {"55000", false}, /* object_not_in_prerequisite_state */
        {"04000", false}, /* "40" not at the start */
        {"40", false},    /* not a SQLSTATE */
        {"", false},      {NULL, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = nudgel_pg_sqlstate_transient(cases[i].sqlstate);
        if (got != cases[i].transient)
            print_error("SQLSTATE %s: transient %d, want %d\n",
                        cases[i].sqlstate ? cases[i].sqlstate : "(null)", got, cases[i].transient);
        assert_int_equal(got, cases[i].transient);
    }
    assert_false(nudgel_pg_result_transient(NULL));
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR); /* no SQLSTATE */
    assert_false(nudgel_pg_result_transient(res));
    PQclear(res);
}

static void test_result(void **state)
{
    (void)state;
    static const struct {
        ExecStatusType status;
        nudgel_err_t err;
    } cases[] = {
        {PGRES_COMMAND_OK, NUDGEL_OK},
        {PGRES_TUPLES_OK, NUDGEL_OK},
        {PGRES_SINGLE_TUPLE, NUDGEL_OK},
        {PGRES_PIPELINE_SYNC, NUDGEL_OK},
        {PGRES_EMPTY_QUERY, NUDGEL_OK},
        {PGRES_FATAL_ERROR, NUDGEL_ERR_PG}, /* no SQLSTATE: the statement's own error */
        {PGRES_BAD_RESPONSE, NUDGEL_ERR_PG},
        {PGRES_PIPELINE_ABORTED, NUDGEL_ERR_PG},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        PGresult *res = PQmakeEmptyPGresult(NULL, cases[i].status);
        assert_non_null(res);
        assert_int_equal(nudgel_pg_result_err(NULL, res), cases[i].err);
        PQclear(res);
    }
    /* No result came: the connection is lost or the statement could not be sent. */
    assert_int_equal(nudgel_pg_result_err(NULL, NULL), NUDGEL_ERR_PG_UNREACHABLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlstate),
        cmocka_unit_test(test_sqlstate_transient),
        cmocka_unit_test(test_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
