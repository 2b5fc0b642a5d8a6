/*
 * test_kafka_partition.c — murmur2 equals Kafka's Java implementation
 * (vectors from org.apache.kafka.common.utils.UtilsTest#testMurmur2), so a
 * tenant's partition is the same from C, Java and Node producers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/kafka.h"

static void test_java_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        int32_t expected;
    } vectors[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        int32_t got = nudgel_kafka_murmur2(vectors[i].key, strlen(vectors[i].key));
        if (got != vectors[i].expected)
            fail_msg("murmur2(\"%s\") = %d, Java says %d", vectors[i].key, got,
                     vectors[i].expected);
    }
}

static void test_partition_is_positive_modulo(void **state)
{
    (void)state;
    /* toPositive(murmur2) % n: "21" hashes negative, so the sign bit must be masked. */
    int32_t h = nudgel_kafka_murmur2("21", 2);
    assert_true(h < 0);
    assert_int_equal(nudgel_kafka_partition_for_key("21", 2, 12),
                     (int32_t)(((uint32_t)h & 0x7fffffffu) % 12));
    for (int n = 1; n <= 64; n++) {
        int32_t p = nudgel_kafka_partition_for_key("tenant-42", 9, n);
        assert_true(p >= 0 && p < n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_java_vectors),
        cmocka_unit_test(test_partition_is_positive_modulo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
