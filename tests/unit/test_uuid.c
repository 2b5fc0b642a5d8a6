/*
 * test_uuid.c — UUIDv7: version and variant bits, the clock in the first 48
 * bits, and one million ids unique and strictly increasing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/timeutil.h"
#include "nudgel/uuid.h"

#define MILLION 1000000

static void test_layout(void **state)
{
    (void)state;
    uint8_t raw[16], back[16];
    char text[NUDGEL_UUID_STR_LEN + 1];
    int64_t before = nudgel_now_unix_ms();
    nudgel_uuid7_generate(raw);
    int64_t after = nudgel_now_unix_ms();
    assert_int_equal(raw[6] >> 4, 7);       /* version 7 */
    assert_int_equal(raw[8] >> 6, 2);       /* variant 10 */
    int64_t ms = nudgel_uuid7_unix_ms(raw); /* may run ahead by the counter borrow only */
    assert_true(ms >= before && ms <= after + 1);
    nudgel_uuid_format(raw, text);
    assert_int_equal(strlen(text), 36);
    assert_int_equal(text[14], '7');
    assert_int_equal(nudgel_uuid_parse(text, back), 0);
    assert_memory_equal(raw, back, 16);
    assert_int_equal(nudgel_uuid_parse("not-a-uuid", back), -1);
    assert_int_equal(nudgel_uuid_parse("01937c9e-8f2a-7b3c-9d4e-5f6a7b8c9d0", back), -1);
    assert_int_equal(nudgel_uuid_parse("01937c9e-8f2a-7b3c-9d4e_5f6a7b8c9d0e", back), -1);
}

static void test_million_unique_and_ordered(void **state)
{
    (void)state;
    uint8_t *ids = malloc((size_t)MILLION * 16);
    assert_non_null(ids);
    for (size_t i = 0; i < MILLION; i++)
        nudgel_uuid7_generate(ids + i * 16);
    /* Strictly increasing byte order implies unique, and sorts by time. */
    for (size_t i = 1; i < MILLION; i++) {
        if (memcmp(ids + (i - 1) * 16, ids + i * 16, 16) >= 0)
            fail_msg("id %zu is not greater than id %zu", i, i - 1);
    }
    /* Their text forms sort the same way (lower-case hex). */
    char a[NUDGEL_UUID_STR_LEN + 1], b[NUDGEL_UUID_STR_LEN + 1];
    nudgel_uuid_format(ids, a);
    nudgel_uuid_format(ids + (size_t)(MILLION - 1) * 16, b);
    assert_true(strcmp(a, b) < 0);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_million_unique_and_ordered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
