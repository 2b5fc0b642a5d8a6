/* test_keyq.c — queues by key: FIFO per key, holders, the waiting list, growth. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/keyq.h"

static int items[10000];

/* One recipient: FIFO order, drop only when idle, keys with NULs are distinct. */
static void test_fifo_and_drop(void **state)
{
    (void)state;
    nudgel_keyq_t *q = nudgel_keyq_new();
    assert_non_null(q);
    static const char k1[] = "tenant-a\0+254722000000", k2[] = "tenant-a\0+254722000001";
    nudgel_keyq_entry_t *e = nudgel_keyq_get(q, k1, sizeof(k1), true);
    assert_non_null(e);
    assert_ptr_equal(nudgel_keyq_get(q, k1, sizeof(k1), false), e);
    assert_null(nudgel_keyq_get(q, k2, sizeof(k2), false));
    *nudgel_keyq_holders(e) = 1;
    for (int i = 0; i < 5; i++)
        assert_true(nudgel_keyq_push(q, e, &items[i]));
    assert_int_equal(nudgel_keyq_waiting(e), 5);
    assert_int_equal(nudgel_keyq_total_waiting(q), 5);
    assert_ptr_equal(nudgel_keyq_peek(e), &items[0]);
    for (int i = 0; i < 5; i++) {
        assert_false(nudgel_keyq_drop_if_idle(q, e));
        assert_ptr_equal(nudgel_keyq_pop(q, e), &items[i]);
    }
    assert_null(nudgel_keyq_pop(q, e));
    assert_null(nudgel_keyq_first_waiting(q));
    assert_false(nudgel_keyq_drop_if_idle(q, e)); /* still held */
    *nudgel_keyq_holders(e) = 0;
    assert_true(nudgel_keyq_drop_if_idle(q, e));
    assert_int_equal(nudgel_keyq_count(q), 0);
    assert_null(nudgel_keyq_get(q, k1, sizeof(k1), false));
    nudgel_keyq_free(q);
}

/* The waiting list holds exactly the entries with items, in order of first wait. */
static void test_waiting_list(void **state)
{
    (void)state;
    nudgel_keyq_t *q = nudgel_keyq_new();
    nudgel_keyq_entry_t *a = nudgel_keyq_get(q, "a", 1, true);
    nudgel_keyq_entry_t *b = nudgel_keyq_get(q, "b", 1, true);
    nudgel_keyq_entry_t *c = nudgel_keyq_get(q, "c", 1, true);
    nudgel_keyq_push(q, b, &items[0]);
    nudgel_keyq_push(q, a, &items[1]);
    nudgel_keyq_push(q, c, &items[2]);
    nudgel_keyq_push(q, a, &items[3]);
    assert_ptr_equal(nudgel_keyq_first_waiting(q), b);
    assert_ptr_equal(nudgel_keyq_next_waiting(b), a);
    assert_ptr_equal(nudgel_keyq_next_waiting(a), c);
    assert_null(nudgel_keyq_next_waiting(c));
    nudgel_keyq_pop(q, a); /* a still has one: stays */
    assert_ptr_equal(nudgel_keyq_next_waiting(b), a);
    nudgel_keyq_pop(q, a);
    assert_ptr_equal(nudgel_keyq_next_waiting(b), c);
    nudgel_keyq_pop(q, b);
    assert_ptr_equal(nudgel_keyq_first_waiting(q), c);
    *nudgel_keyq_not_before(c) = 42;
    assert_int_equal(*nudgel_keyq_not_before(c), 42);
    *nudgel_keyq_data(c) = strdup("cached");
    nudgel_keyq_free_with(q, free); /* frees c's data and waiting node (ASan checks) */
}

/* 10 000 keys through growth: every one found, every item back in order. */
static void test_many_keys(void **state)
{
    (void)state;
    nudgel_keyq_t *q = nudgel_keyq_new();
    char key[32];
    for (int i = 0; i < 10000; i++) {
        int len = snprintf(key, sizeof(key), "t%d", i % 2500);
        nudgel_keyq_entry_t *e = nudgel_keyq_get(q, key, (size_t)len, true);
        assert_non_null(e);
        assert_true(nudgel_keyq_push(q, e, &items[i]));
    }
    assert_int_equal(nudgel_keyq_count(q), 2500);
    assert_int_equal(nudgel_keyq_total_waiting(q), 10000);
    for (int k = 0; k < 2500; k++) {
        int len = snprintf(key, sizeof(key), "t%d", k);
        nudgel_keyq_entry_t *e = nudgel_keyq_get(q, key, (size_t)len, false);
        assert_non_null(e);
        for (int j = 0; j < 4; j++)
            assert_ptr_equal(nudgel_keyq_pop(q, e), &items[k + 2500 * j]);
        assert_true(nudgel_keyq_drop_if_idle(q, e));
    }
    assert_int_equal(nudgel_keyq_count(q), 0);
    assert_int_equal(nudgel_keyq_total_waiting(q), 0);
    nudgel_keyq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_drop),
        cmocka_unit_test(test_waiting_list),
        cmocka_unit_test(test_many_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
