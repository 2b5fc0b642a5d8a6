/*
 * test_receipt_state.c — the receipt state machine, pair by pair against a
 * matrix written out by hand (not derived from the code under test), plus
 * finality, names and parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/receipt_state.h"

#define A NUDGEL_RECEIPT_ACCEPTED
#define S NUDGEL_RECEIPT_SUBMITTING
#define T NUDGEL_RECEIPT_SENT
#define F NUDGEL_RECEIPT_FAILED
#define R NUDGEL_RECEIPT_REJECTED
#define D NUDGEL_RECEIPT_DELIVERED
#define U NUDGEL_RECEIPT_UNDELIVERED
#define E NUDGEL_RECEIPT_EXPIRED

/* expected[from][to]: rows and columns in enum order A S T F R D U E. */
static const int expected[NUDGEL_RECEIPT_STATE_COUNT][NUDGEL_RECEIPT_STATE_COUNT] = {
    /*            A  S  T  F  R  D  U  E */
    [A] = {0, 1, 0, 1, 1, 0, 0, 1}, [S] = {0, 0, 1, 1, 1, 0, 0, 1}, [T] = {0, 0, 0, 0, 0, 1, 1, 1},
    [F] = {0, 0, 0, 0, 0, 0, 0, 0}, [R] = {0, 0, 0, 0, 0, 0, 0, 0}, [D] = {0, 0, 0, 0, 0, 0, 0, 0},
    [U] = {0, 0, 0, 0, 0, 0, 0, 0}, [E] = {0, 0, 0, 0, 0, 0, 0, 0},
};

static void test_every_pair(void **state)
{
    (void)state;
    unsigned allowed = 0;
    for (int from = 0; from < NUDGEL_RECEIPT_STATE_COUNT; from++) {
        for (int to = 0; to < NUDGEL_RECEIPT_STATE_COUNT; to++) {
            bool got = nudgel_receipt_transition_allowed((nudgel_receipt_state_t)from,
                                                         (nudgel_receipt_state_t)to);
            if (got != (expected[from][to] != 0))
                fail_msg("%s -> %s: got %d, want %d",
                         nudgel_receipt_state_name((nudgel_receipt_state_t)from),
                         nudgel_receipt_state_name((nudgel_receipt_state_t)to), got,
                         expected[from][to]);
            allowed += got;
        }
    }
    assert_int_equal(allowed, 11);
}

/* Forward-only: no cycle, so no sequence of allowed moves ever returns to a state. */
static void test_no_cycles(void **state)
{
    (void)state;
    /* reach[i] = states reachable from i in >= 1 step (transitive closure). */
    unsigned reach[NUDGEL_RECEIPT_STATE_COUNT] = {0};
    for (int i = 0; i < NUDGEL_RECEIPT_STATE_COUNT; i++)
        for (int j = 0; j < NUDGEL_RECEIPT_STATE_COUNT; j++)
            if (nudgel_receipt_transition_allowed((nudgel_receipt_state_t)i,
                                                  (nudgel_receipt_state_t)j))
                reach[i] |= 1u << j;
    for (int k = 0; k < NUDGEL_RECEIPT_STATE_COUNT; k++)
        for (int i = 0; i < NUDGEL_RECEIPT_STATE_COUNT; i++)
            if (reach[i] & (1u << k))
                reach[i] |= reach[k];
    for (int i = 0; i < NUDGEL_RECEIPT_STATE_COUNT; i++)
        assert_false(reach[i] & (1u << i));
    /* Every state is reachable from accepted. */
    assert_int_equal(reach[A] | (1u << A), (1u << NUDGEL_RECEIPT_STATE_COUNT) - 1);
}

static void test_finality(void **state)
{
    (void)state;
    static const struct {
        nudgel_receipt_state_t s;
        bool final;
        bool past_send;
    } cases[] = {
        {A, false, false}, {S, false, false}, {T, false, true}, {F, true, true},
        {R, true, true},   {D, true, true},   {U, true, true},  {E, true, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(nudgel_receipt_state_is_final(cases[i].s), cases[i].final);
        assert_int_equal(nudgel_receipt_state_is_past_send(cases[i].s), cases[i].past_send);
    }
    assert_false(nudgel_receipt_state_is_final((nudgel_receipt_state_t)99));
}

static void test_names_and_parse(void **state)
{
    (void)state;
    static const struct {
        nudgel_receipt_state_t s;
        const char *name;
    } cases[] = {
        {A, "accepted"}, {S, "submitting"}, {T, "sent"},        {F, "failed"},
        {R, "rejected"}, {D, "delivered"},  {U, "undelivered"}, {E, "expired"},
    };
    char errstr[128];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nudgel_receipt_state_t got = (nudgel_receipt_state_t)99;
        assert_string_equal(nudgel_receipt_state_name(cases[i].s), cases[i].name);
        assert_int_equal(nudgel_receipt_state_parse(cases[i].name, &got, errstr, sizeof(errstr)),
                         NUDGEL_OK);
        assert_int_equal(got, cases[i].s);
    }
    static const char *bad[] = {"", "Delivered", "deliver", "delivered ", "queued", "unknown"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nudgel_receipt_state_t got = S;
        errstr[0] = '\0';
        assert_int_equal(nudgel_receipt_state_parse(bad[i], &got, errstr, sizeof(errstr)),
                         NUDGEL_ERR_INVALID_FIELD);
        assert_int_equal(got, S);
        assert_true(errstr[0] != '\0');
    }
    assert_int_equal(nudgel_receipt_state_parse(NULL, NULL, NULL, 0), NUDGEL_ERR_INVALID_FIELD);
    assert_string_equal(nudgel_receipt_state_name((nudgel_receipt_state_t)8), "unknown");
    assert_false(nudgel_receipt_transition_allowed((nudgel_receipt_state_t)8, S));
    assert_false(nudgel_receipt_transition_allowed(A, (nudgel_receipt_state_t)-1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_pair),
        cmocka_unit_test(test_no_cycles),
        cmocka_unit_test(test_finality),
        cmocka_unit_test(test_names_and_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
