/*
 * test_topics.c — the retry tiers of each family come from the one topic
 * table, in ascending delay order, with the contract's names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/topics.h"

static void expect_tiers(const char *family, const char *const *names, const long long *delays,
                         size_t n)
{
    const nudgel_topic_spec_t *tiers[NUDGEL_RETRY_TIERS_MAX];
    assert_int_equal(nudgel_topics_retry_tiers(family, tiers, NUDGEL_RETRY_TIERS_MAX), n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(tiers[i]->name, names[i]);
        assert_int_equal(tiers[i]->delay_ms, delays[i]);
        assert_int_equal(tiers[i]->topic_class, NUDGEL_TOPIC_CLASS_RETRY);
        if (i > 0)
            assert_true(tiers[i - 1]->delay_ms < tiers[i]->delay_ms);
    }
}

static void test_messages_tiers(void **state)
{
    (void)state;
    static const char *const names[] = {"nudgel.messages.retry.5s", "nudgel.messages.retry.30s",
                                        "nudgel.messages.retry.2m", "nudgel.messages.retry.10m"};
    static const long long delays[] = {5000, 30000, 120000, 600000};
    expect_tiers("messages", names, delays, 4);
}

static void test_webhooks_tiers(void **state)
{
    (void)state;
    static const char *const names[] = {"nudgel.webhooks.retry.5s",  "nudgel.webhooks.retry.5m",
                                        "nudgel.webhooks.retry.30m", "nudgel.webhooks.retry.2h",
                                        "nudgel.webhooks.retry.5h",  "nudgel.webhooks.retry.10h"};
    static const long long delays[] = {5000, 300000, 1800000, 7200000, 18000000, 36000000};
    expect_tiers("webhooks", names, delays, 6);
}

static void test_unknown_family_and_small_max(void **state)
{
    (void)state;
    const nudgel_topic_spec_t *tiers[2];
    assert_int_equal(nudgel_topics_retry_tiers("sms", tiers, 2), 0);
    assert_int_equal(nudgel_topics_retry_tiers(NULL, tiers, 2), 0);
    /* The count is the full count; only max are written. */
    assert_int_equal(nudgel_topics_retry_tiers("webhooks", tiers, 2), 6);
    assert_string_equal(tiers[1]->name, "nudgel.webhooks.retry.5m");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages_tiers),
        cmocka_unit_test(test_webhooks_tiers),
        cmocka_unit_test(test_unknown_family_and_small_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
