/*
 * test_cache.c — the capped LRU cache: the basics, pins, the free callback,
 * growth, and 200 000 random operations (get, peek, insert, remove, pin,
 * unpin, trim, a new cap) checked step by step against a plain-array model
 * of the use order. The seed is printed, so a failure can be replayed
 * (NUDGEL_TEST_SEED=<seed>).
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

#include "nudgel/cache.h"
#include "test_rng.h"

#define KEYS 300 /* distinct keys of the random test */
#define OPS  200000

/* ---- values and the free callback ------------------------------------------ */

typedef struct value {
    int id;
} value_t;

static int frees[KEYS]; /* values freed, per key */
static int free_calls;

static void free_value(void *opaque, void *v)
{
    value_t *val = v;
    assert_ptr_equal(opaque, frees);
    assert_true(val->id >= 0 && val->id < KEYS);
    frees[val->id]++;
    free_calls++;
    free(val);
}

static value_t *value_new(int id)
{
    value_t *v = calloc(1, sizeof(*v));
    assert_non_null(v);
    v->id = id;
    return v;
}

/*
 * Key @p id: 2 to 8 bytes ending with the id's two bytes (zeros inside
 * included), so keys of one length differ; id 0 is the empty key.
 */
static size_t key_of(int id, unsigned char key[16])
{
    if (id == 0)
        return 0;
    size_t len = 2 + (size_t)(id % 7);
    for (size_t i = 0; i < len; i++)
        key[i] = i == 0 ? 0 : (unsigned char)(id * 31 + (int)i * 7);
    key[len - 2] = (unsigned char)(id & 0xff);
    key[len - 1] = (unsigned char)(id >> 8);
    return len;
}

static nudgel_cache_t *cache_new(size_t max, bool with_free)
{
    nudgel_cache_t *c = NULL;
    assert_int_equal(nudgel_cache_new(max, with_free ? free_value : NULL, frees, &c), NUDGEL_OK);
    memset(frees, 0, sizeof(frees));
    free_calls = 0;
    return c;
}

static nudgel_cache_entry_t *put(nudgel_cache_t *c, const char *key, int id)
{
    nudgel_cache_entry_t *e = NULL;
    assert_int_equal(nudgel_cache_insert(c, key, strlen(key), value_new(id), &e), NUDGEL_OK);
    assert_non_null(e);
    return e;
}

static int id_at(nudgel_cache_t *c, const char *key)
{
    nudgel_cache_entry_t *e = nudgel_cache_peek(c, key, strlen(key));
    return e ? ((value_t *)nudgel_cache_value(e))->id : -1;
}

/* ---- by hand ------------------------------------------------------------------ */

static void test_lru_order(void **state)
{
    (void)state;
    nudgel_cache_t *c = cache_new(3, true);
    put(c, "a", 0);
    put(c, "b", 1);
    put(c, "c", 2);
    assert_non_null(nudgel_cache_get(c, "a", 1));  /* order now b, c, a */
    assert_non_null(nudgel_cache_peek(c, "b", 1)); /* a peek changes nothing */
    put(c, "d", 3);                                /* b goes */
    assert_int_equal(id_at(c, "b"), -1);
    assert_int_equal(frees[1], 1);
    assert_int_equal(nudgel_cache_count(c), 3);
    assert_int_equal(nudgel_cache_evictions(c), 1);
    /* Iteration: least recently used first. */
    const char *order[] = {"c", "a", "d"};
    size_t i = 0;
    for (nudgel_cache_entry_t *e = nudgel_cache_next(c, NULL); e; e = nudgel_cache_next(c, e)) {
        size_t len;
        const char *k = nudgel_cache_key(e, &len);
        assert_true(i < 3);
        assert_int_equal(len, 1);
        assert_memory_equal(k, order[i], 1);
        i++;
    }
    assert_int_equal(i, 3);
    /* A key already there is refused; nothing is evicted for it. */
    value_t *v = value_new(9);
    assert_int_equal(nudgel_cache_insert(c, "a", 1, v, NULL), NUDGEL_ERR_INVALID_ARG);
    free(v);
    assert_int_equal(nudgel_cache_evictions(c), 1);
    /* Removal is not an eviction; its value is freed. */
    nudgel_cache_remove(c, nudgel_cache_peek(c, "a", 1));
    assert_int_equal(frees[0], 1);
    assert_int_equal(nudgel_cache_evictions(c), 1);
    assert_int_equal(nudgel_cache_count(c), 2);
    nudgel_cache_free(c);
    assert_int_equal(frees[2], 1);
    assert_int_equal(frees[3], 1);
    assert_int_equal(free_calls, 4);
}

static void test_pins(void **state)
{
    (void)state;
    nudgel_cache_t *c = cache_new(2, true);
    nudgel_cache_entry_t *a = put(c, "a", 0), *b = put(c, "b", 1);
    nudgel_cache_pin(c, a);
    nudgel_cache_pin(c, a); /* pins are counted */
    nudgel_cache_pin(c, b);
    assert_true(nudgel_cache_pinned(a));
    /* Nothing can go: the cache goes over its cap. */
    nudgel_cache_entry_t *x = put(c, "x", 2);
    assert_int_equal(nudgel_cache_count(c), 3);
    assert_int_equal(nudgel_cache_evictions(c), 0);
    /* The unpinned one goes first; a pinned one is not evicted by trim either. */
    put(c, "y", 3);
    assert_int_equal(id_at(c, "x"), -1);
    (void)x;
    assert_int_equal(nudgel_cache_trim(c), 1); /* y */
    assert_int_equal(nudgel_cache_count(c), 2);
    nudgel_cache_unpin(c, a);
    assert_true(nudgel_cache_pinned(a));
    assert_int_equal(nudgel_cache_trim(c), 0);
    /* b unpinned, then a: a is the most recently used now, so b goes. */
    nudgel_cache_unpin(c, b);
    nudgel_cache_unpin(c, a);
    assert_false(nudgel_cache_pinned(a));
    nudgel_cache_unpin(c, a); /* no pin left: nothing happens */
    assert_int_equal(nudgel_cache_trim(c), 0);
    put(c, "z", 4);
    assert_int_equal(id_at(c, "b"), -1);
    assert_int_equal(id_at(c, "a"), 0);
    /* A pin tied to a flag: taken as it becomes true, let go as it becomes false. */
    bool loading = false;
    nudgel_cache_pin_while(c, a, &loading, true);
    nudgel_cache_pin_while(c, a, &loading, true);
    assert_true(loading);
    assert_true(nudgel_cache_pinned(a));
    nudgel_cache_pin_while(c, a, &loading, false);
    assert_false(loading);
    assert_false(nudgel_cache_pinned(a));
    /* A pinned entry can be removed. */
    nudgel_cache_pin(c, a);
    nudgel_cache_remove(c, a);
    assert_int_equal(frees[0], 1);
    assert_int_equal(nudgel_cache_count(c), 1);
    /* A lower cap applies at the next trim. */
    put(c, "p", 5);
    nudgel_cache_set_max(c, 1);
    assert_int_equal(nudgel_cache_count(c), 2);
    assert_int_equal(nudgel_cache_trim(c), 1);
    assert_int_equal(id_at(c, "p"), 5);
    nudgel_cache_free(c);
    for (int i = 0; i < 6; i++)
        assert_int_equal(frees[i], 1);
}

static void test_no_callback_no_cap(void **state)
{
    (void)state;
    nudgel_cache_t *c = cache_new(0, false);
    static int values[5000];
    for (int i = 0; i < 5000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        assert_int_equal(nudgel_cache_insert(c, k, strlen(k), &values[i], NULL), NUDGEL_OK);
    }
    assert_int_equal(nudgel_cache_count(c), 5000); /* no cap; the table grew */
    for (int i = 0; i < 5000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        nudgel_cache_entry_t *e = nudgel_cache_get(c, k, strlen(k));
        assert_non_null(e);
        assert_ptr_equal(nudgel_cache_value(e), &values[i]);
    }
    assert_int_equal(nudgel_cache_trim(c), 0);
    nudgel_cache_free(c); /* the values are not the cache's to free */
    assert_int_equal(free_calls, 0);
    nudgel_cache_free(NULL);
}

/* ---- against a model ------------------------------------------------------------ */

typedef struct model_entry {
    bool present;
    unsigned pins;
    uint64_t used; /* the model's clock at the last use; larger: more recent */
    nudgel_cache_entry_t *e;
} model_entry_t;

static model_entry_t model[KEYS];
static uint64_t clock_now;
static size_t model_count, model_max;
static uint64_t model_evictions;

/* The model's victim: the unpinned entry used longest ago; -1 when none. */
static int model_oldest(void)
{
    int best = -1;
    for (int i = 0; i < KEYS; i++)
        if (model[i].present && !model[i].pins && (best < 0 || model[i].used < model[best].used))
            best = i;
    return best;
}

static void model_evict_above(size_t keep)
{
    int v;
    while (model_count > keep && (v = model_oldest()) >= 0) {
        model[v].present = false;
        model[v].e = NULL;
        model_count--;
        model_evictions++;
        frees[v]--; /* expected: the callback brings it back to 0 */
    }
}

/* Everything the cache says matches the model: count, evictions, frees, contents, order. */
static void check(nudgel_cache_t *c)
{
    assert_int_equal(nudgel_cache_count(c), model_count);
    assert_int_equal(nudgel_cache_evictions(c), model_evictions);
    for (int i = 0; i < KEYS; i++)
        assert_int_equal(frees[i], 0);
    uint64_t last_used = 0;
    bool in_pinned = false;
    size_t seen = 0;
    for (nudgel_cache_entry_t *e = nudgel_cache_next(c, NULL); e; e = nudgel_cache_next(c, e)) {
        int id = ((value_t *)nudgel_cache_value(e))->id;
        assert_true(model[id].present);
        assert_ptr_equal(model[id].e, e);
        assert_int_equal(nudgel_cache_pinned(e), model[id].pins > 0);
        if (model[id].pins) {
            in_pinned = true;
        } else {
            assert_false(in_pinned); /* unpinned first */
            assert_true(model[id].used > last_used);
            last_used = model[id].used;
        }
        seen++;
    }
    assert_int_equal(seen, model_count);
}

static void random_op(nudgel_cache_t *c)
{
    int id = (int)(rng() % KEYS);
    unsigned char key[16];
    size_t len = key_of(id, key);
    model_entry_t *m = &model[id];
    switch (rng() % 9) {
    case 0:
    case 1: { /* get */
        nudgel_cache_entry_t *e = nudgel_cache_get(c, key, len);
        assert_ptr_equal(e, m->e);
        if (m->present && !m->pins)
            m->used = ++clock_now;
        break;
    }
    case 2: /* peek */
        assert_ptr_equal(nudgel_cache_peek(c, key, len), m->e);
        break;
    case 3:
    case 4: { /* insert */
        nudgel_cache_entry_t *e = NULL;
        value_t *v = value_new(id);
        nudgel_err_t err = nudgel_cache_insert(c, key, len, v, &e);
        if (m->present) {
            assert_int_equal(err, NUDGEL_ERR_INVALID_ARG);
            free(v);
            break;
        }
        assert_int_equal(err, NUDGEL_OK);
        if (model_max)
            model_evict_above(model_max - 1);
        *m = (model_entry_t){.present = true, .used = ++clock_now, .e = e};
        model_count++;
        break;
    }
    case 5: /* remove */
        if (m->present) {
            nudgel_cache_remove(c, m->e);
            frees[id]--;
            *m = (model_entry_t){0};
            model_count--;
        }
        break;
    case 6: /* pin */
        if (m->present && m->pins < 3) {
            nudgel_cache_pin(c, m->e);
            m->pins++;
        }
        break;
    case 7: /* unpin */
        if (m->present) {
            nudgel_cache_unpin(c, m->e);
            if (m->pins && --m->pins == 0)
                m->used = ++clock_now;
        }
        break;
    default: /* trim, now and then under a new cap */
        if (rng() % 8 == 0) {
            model_max = (size_t)(rng() % 60);
            nudgel_cache_set_max(c, model_max);
        }
        if (model_max)
            model_evict_above(model_max);
        nudgel_cache_trim(c);
        break;
    }
}

static void test_against_model(void **state)
{
    (void)state;
    rng_seed("test_cache", 0x5eedcafe1234ull);
    memset(model, 0, sizeof(model));
    clock_now = 0;
    model_count = 0;
    model_max = 40;
    model_evictions = 0;
    nudgel_cache_t *c = cache_new(model_max, true);
    for (int op = 0; op < OPS; op++) {
        random_op(c);
        if (op % 97 == 0 || op > OPS - 100)
            check(c);
    }
    check(c);
    for (int i = 0; i < KEYS; i++)
        if (model[i].present)
            frees[i]--;
    nudgel_cache_free(c);
    for (int i = 0; i < KEYS; i++)
        assert_int_equal(frees[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_pins),
        cmocka_unit_test(test_no_callback_no_cap),
        cmocka_unit_test(test_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
