/*
 * test_config_fleet.c — the fleet key registry, the NUDGEL_* rule, the
 * "did you mean", a collecting load and the --check-config verdict
 * (core/src/config_fleet.c, config.c, config_check.c). Table-driven.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nudgel/config.h"
#include "nudgel/config_check.h"
#include "nudgel/config_fleet.h"

static const nudgel_conf_entry_t own[] = {
    {"worker.max_in_flight", NUDGEL_CONF_INT, "10", 1, 100, NULL, 0, "cap"},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};
static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, own, NULL};

static void test_registry(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        bool known;
    } keys[] = {
        {"topics.partitions", true},        {"messages.gateways_file", true},
        {"producer.default_country", true}, {"secret.key", true},
        {"topics.partitons", false},        {"mesages.group_id", false},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_int_equal(nudgel_conf_fleet_has_key(keys[i].key), keys[i].known);
    assert_true(nudgel_conf_fleet_has_section("messages", 8));
    assert_false(nudgel_conf_fleet_has_section("mesages", 7));
    char near[64];
    assert_true(nudgel_conf_fleet_suggest("topics.partitons", false, near, sizeof(near)));
    assert_string_equal(near, "topics.partitions");
    assert_true(nudgel_conf_fleet_suggest("mesages", true, near, sizeof(near)));
    assert_string_equal(near, "messages");
    assert_false(nudgel_conf_fleet_suggest("zzzzzzzzzz", true, near, sizeof(near)));
    assert_string_equal(near, "");
}

static void test_env_rule(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        nudgel_conf_env_kind_t kind;
    } vars[] = {
        {"NUDGEL_KAFKA_BOOTSTRAP", NUDGEL_CONF_ENV_KEY},
        {"NUDGEL_TOPICS_PARTITIONS", NUDGEL_CONF_ENV_KEY},
        {"NUDGEL_CONFIG", NUDGEL_CONF_ENV_RESERVED},
        {"NUDGEL_TEST_ANYTHING", NUDGEL_CONF_ENV_RESERVED},
        {"NUDGEL_SIM_PORT", NUDGEL_CONF_ENV_RESERVED},
        {"NUDGEL_KAFKA_BOOTSRAP", NUDGEL_CONF_ENV_UNKNOWN},
        {"NUDGEL_GW_AT_KEY", NUDGEL_CONF_ENV_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        assert_int_equal(nudgel_conf_fleet_env_kind(vars[i].name), vars[i].kind);
    char near[64];
    assert_true(nudgel_conf_fleet_suggest_env("NUDGEL_KAFKA_BOOTSRAP", near, sizeof(near)));
    assert_string_equal(near, "NUDGEL_KAFKA_BOOTSTRAP");
}

static void test_collecting_load_and_verdict(void **state)
{
    (void)state;
    char path[] = "/tmp/nudgel-fleet-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *json = "{\"topics\": {\"partitions\": 3, \"partitons\": 3},"
                       " \"mesages\": {\"x\": 1}, \"_comment\": \"ok\","
                       " \"worker\": {\"max_in_flight\": 500}}";
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    char *sets[] = {"log.level=loud", "worker.max_in_flight=5"};
    nudgel_conf_t *conf = nudgel_conf_new("test", tables);
    char errstr[512];
    /* Not collecting: the first problem stops the load. */
    assert_int_equal(nudgel_conf_load_file(conf, path, errstr, sizeof(errstr)), NUDGEL_ERR_CONFIG);
    assert_int_equal(nudgel_conf_problem_count(conf), 0);
    nudgel_conf_destroy(conf);

    conf = nudgel_conf_new("test", tables);
    nudgel_conf_collect(conf, true);
    assert_int_equal(nudgel_conf_load_file(conf, path, errstr, sizeof(errstr)), NUDGEL_ERR_CONFIG);
    assert_int_equal(nudgel_conf_set_assignments(conf, sets, 2, errstr, sizeof(errstr)),
                     NUDGEL_ERR_CONFIG);
    assert_int_equal(nudgel_conf_get_int(conf, "worker.max_in_flight"), 5); /* the good flag */
    static const char *const expected[] = {
        "topics.partitons: unknown configuration key", "mesages: unknown section",
        "worker.max_in_flight: 500 is out of range", "log.level: \"loud\""};
    assert_int_equal(nudgel_conf_problem_count(conf), 4);
    for (size_t i = 0; i < 4; i++) {
        bool found = false;
        for (size_t j = 0; j < 4; j++)
            found |= strstr(nudgel_conf_problem(conf, j), expected[i]) != NULL;
        if (!found)
            fail_msg("no problem mentions \"%s\"", expected[i]);
    }
    nudgel_conf_check_t *check = nudgel_conf_check_new();
    nudgel_conf_check_loaded(check, conf);
    nudgel_conf_check_add(check, NUDGEL_ERR_KAFKA_UNREACHABLE, "kafka.bootstrap: down");
    char *out_text = NULL, *err_text = NULL;
    size_t out_len = 0, err_len = 0;
    FILE *out = open_memstream(&out_text, &out_len), *err = open_memstream(&err_text, &err_len);
    assert_int_equal(nudgel_conf_check_report(check, "test", "offline", out, err), 2);
    fclose(out);
    fclose(err);
    assert_non_null(strstr(err_text, "test: kafka.bootstrap: down [unreachable]"));
    assert_non_null(strstr(err_text, "5 problem(s)"));
    free(out_text);
    free(err_text);
    nudgel_conf_check_free(check);

    /* Only unreachable problems: 3. None: 0 and one OK line. */
    check = nudgel_conf_check_new();
    nudgel_conf_check_add(check, NUDGEL_ERR_PG_UNREACHABLE, "pg.dsn: down");
    FILE *null = fopen("/dev/null", "w");
    assert_int_equal(nudgel_conf_check_report(check, "test", "x", null, null), 3);
    nudgel_conf_check_free(check);
    check = nudgel_conf_check_new();
    assert_int_equal(nudgel_conf_check_report(check, "test", "x", null, null), 0);
    nudgel_conf_check_free(check);
    fclose(null);
    nudgel_conf_destroy(conf);
    unlink(path);
}

static void test_dsn_never_printed(void **state)
{
    (void)state;
    static const char *const dsns[] = {"host=db password=sekrit-pw junk",
                                       "postgresql://u:sekrit-pw@db/x?bogus=1", "sekrit-pw"};
    for (size_t i = 0; i < sizeof(dsns) / sizeof(dsns[0]); i++) {
        nudgel_conf_t *conf = nudgel_conf_new("test", tables);
        char errstr[128];
        assert_int_equal(
            nudgel_conf_set(conf, "pg.dsn", dsns[i], NUDGEL_CONF_FROM_ENV, errstr, sizeof(errstr)),
            NUDGEL_OK);
        nudgel_conf_check_t *check = nudgel_conf_check_new();
        nudgel_conf_check_dsn(check, conf, true);
        assert_int_equal(nudgel_conf_check_count(check), 1);
        const char *p = nudgel_conf_check_problem(check, 0);
        assert_non_null(strstr(p, "pg.dsn: "));
        assert_null(strstr(p, "sekrit"));
        nudgel_conf_check_free(check);
        nudgel_conf_destroy(conf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_env_rule),
        cmocka_unit_test(test_collecting_load_and_verdict),
        cmocka_unit_test(test_dsn_never_printed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
