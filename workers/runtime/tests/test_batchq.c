/*
 * test_batchq.c — the batch queue: the cap, shift and unshift in order,
 * growth while the ring wraps, and 200 000 random push/shift/unshift/at
 * steps checked one by one against a plain-array model (seeded: the seed is
 * printed, so a failure can be replayed with NUDGEL_TEST_SEED).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/batchq.h"
#include "test_rng.h"

#define STEPS     200000
#define MODEL_MAX 4096

static void *item(uintptr_t v)
{
    return (void *)(v + 1); /* never NULL */
}

static nudgel_batchq_t *queue(size_t max)
{
    nudgel_batchq_t *q = NULL;
    assert_int_equal(nudgel_batchq_new(max, &q), NUDGEL_OK);
    assert_non_null(q);
    return q;
}

static void test_new_rejects(void **state)
{
    (void)state;
    nudgel_batchq_t *q = NULL;
    assert_int_equal(nudgel_batchq_new(0, &q), NUDGEL_ERR_INVALID_ARG);
    assert_null(q);
    assert_int_equal(nudgel_batchq_new(NUDGEL_BATCHQ_CAPACITY_MAX + 1, &q), NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_batchq_new(1, NULL), NUDGEL_ERR_INVALID_ARG);
    nudgel_batchq_free(NULL);
}

static void test_fifo_and_cap(void **state)
{
    (void)state;
    nudgel_batchq_t *q = queue(100);
    assert_int_equal(nudgel_batchq_count(q), 0);
    assert_null(nudgel_batchq_at(q, 0));
    assert_int_equal(nudgel_batchq_shift(q, NULL, 5), 0);
    for (uintptr_t i = 0; i < 100; i++)
        assert_int_equal(nudgel_batchq_push(q, item(i)), NUDGEL_OK);
    assert_int_equal(nudgel_batchq_push(q, item(100)), NUDGEL_ERR_TOO_LARGE);
    assert_int_equal(nudgel_batchq_count(q), 100);
    assert_ptr_equal(nudgel_batchq_at(q, 99), item(99));
    assert_null(nudgel_batchq_at(q, 100));

    void *batch[30];
    assert_int_equal(nudgel_batchq_shift(q, batch, 30), 30);
    for (uintptr_t i = 0; i < 30; i++)
        assert_ptr_equal(batch[i], item(i));
    assert_ptr_equal(nudgel_batchq_at(q, 0), item(30));

    /* Refilled to the cap meanwhile, the batch still goes back in front. */
    for (uintptr_t i = 100; i < 130; i++)
        assert_int_equal(nudgel_batchq_push(q, item(i)), NUDGEL_OK);
    assert_int_equal(nudgel_batchq_push(q, item(0)), NUDGEL_ERR_TOO_LARGE);
    assert_int_equal(nudgel_batchq_unshift(q, batch, 30), NUDGEL_OK);
    assert_int_equal(nudgel_batchq_count(q), 130);
    for (uintptr_t i = 0; i < 130; i++)
        assert_ptr_equal(nudgel_batchq_at(q, i), item(i));
    assert_int_equal(nudgel_batchq_push(q, item(0)), NUDGEL_ERR_TOO_LARGE);

    /* More asked than held: what there is. */
    void *all[200];
    assert_int_equal(nudgel_batchq_shift(q, all, 200), 130);
    for (uintptr_t i = 0; i < 130; i++)
        assert_ptr_equal(all[i], item(i));
    assert_int_equal(nudgel_batchq_count(q), 0);
    assert_int_equal(nudgel_batchq_unshift(q, all, 0), NUDGEL_OK);
    nudgel_batchq_free(q);
}

/* A typed batch (msg_t *batch[]) goes through as (void **). */
typedef struct fake_msg {
    int id;
} fake_msg_t;

static void test_typed_batch(void **state)
{
    (void)state;
    fake_msg_t msgs[5] = {{0}, {1}, {2}, {3}, {4}};
    fake_msg_t *batch[5];
    nudgel_batchq_t *q = queue(10);
    for (int i = 0; i < 5; i++)
        assert_int_equal(nudgel_batchq_push(q, &msgs[i]), NUDGEL_OK);
    assert_int_equal(nudgel_batchq_shift(q, (void **)batch, 3), 3);
    assert_int_equal(batch[2]->id, 2);
    assert_int_equal(nudgel_batchq_unshift(q, (void **)batch, 3), NUDGEL_OK);
    assert_int_equal(((fake_msg_t *)nudgel_batchq_at(q, 4))->id, 4);
    assert_int_equal(((fake_msg_t *)nudgel_batchq_at(q, 0))->id, 0);
    nudgel_batchq_free(q);
}

/* The model: a plain array, shifted with memmove. */
typedef struct model {
    void *items[MODEL_MAX * 2];
    size_t count;
} model_t;

static void check_same(const nudgel_batchq_t *q, const model_t *m)
{
    assert_int_equal(nudgel_batchq_count(q), m->count);
    for (size_t i = 0; i < m->count; i++)
        assert_ptr_equal(nudgel_batchq_at(q, i), m->items[i]);
    assert_null(nudgel_batchq_at(q, m->count));
}

static void test_random_against_model(void **state)
{
    (void)state;
    rng_seed("test_batchq", 0x5eed0b47c4ull);

    static model_t m;
    static void *batch[MODEL_MAX * 2];
    nudgel_batchq_t *q = queue(MODEL_MAX);
    uintptr_t next = 0;
    for (int step = 0; step < STEPS; step++) {
        uint64_t op = rng() % 100;
        if (op < 50) { /* pushes, sometimes up to the cap */
            size_t n = 1 + rng() % 40;
            for (size_t k = 0; k < n; k++) {
                nudgel_err_t err = nudgel_batchq_push(q, item(next));
                if (m.count >= MODEL_MAX) {
                    assert_int_equal(err, NUDGEL_ERR_TOO_LARGE);
                } else {
                    assert_int_equal(err, NUDGEL_OK);
                    m.items[m.count++] = item(next);
                }
                next++;
            }
        } else if (op < 80) { /* a batch taken out, maybe put back after more pushes */
            size_t want = rng() % 300;
            size_t got = nudgel_batchq_shift(q, batch, want);
            size_t expect = want < m.count ? want : m.count;
            assert_int_equal(got, expect);
            assert_memory_equal(batch, m.items, got * sizeof(void *));
            memmove(m.items, m.items + got, (m.count - got) * sizeof(void *));
            m.count -= got;
            if (rng() % 2) {
                for (size_t k = rng() % 20; k > 0 && m.count < MODEL_MAX; k--) {
                    assert_int_equal(nudgel_batchq_push(q, item(next)), NUDGEL_OK);
                    m.items[m.count++] = item(next++);
                }
                assert_int_equal(nudgel_batchq_unshift(q, batch, got), NUDGEL_OK);
                memmove(m.items + got, m.items, m.count * sizeof(void *));
                memcpy(m.items, batch, got * sizeof(void *));
                m.count += got;
            }
        } else if (op < 95) { /* dropped without a copy */
            size_t want = rng() % 50;
            size_t got = nudgel_batchq_shift(q, NULL, want);
            assert_int_equal(got, want < m.count ? want : m.count);
            memmove(m.items, m.items + got, (m.count - got) * sizeof(void *));
            m.count -= got;
        } else if (m.count > 0) { /* a random look */
            size_t i = rng() % m.count;
            assert_ptr_equal(nudgel_batchq_at(q, i), m.items[i]);
        }
        assert_int_equal(nudgel_batchq_count(q), m.count);
        if (step % 997 == 0)
            check_same(q, &m);
    }
    check_same(q, &m);
    nudgel_batchq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rejects),
        cmocka_unit_test(test_fifo_and_cap),
        cmocka_unit_test(test_typed_batch),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
