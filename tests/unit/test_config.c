/*
 * test_config.c — the config table: defaults, types and ranges, JSON files
 * (flat and nested), environment overrides, precedence, librdkafka
 * pass-through, errors naming the key, and secrets never printed.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/config.h"

static const nudgel_conf_entry_t test_table[] = {
    {"worker.max_in_flight", NUDGEL_CONF_INT, "1000", 1, 100000, NULL, 0, "In-flight cap."},
    {"worker.dry_run", NUDGEL_CONF_BOOL, "false", 0, 0, NULL, 0, "Do nothing."},
    {"worker.mode", NUDGEL_CONF_ENUM, "fast", 0, 0, "fast|safe", 0, "Mode."},
    {"worker.api_key", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, NUDGEL_CONF_SENSITIVE, "Secret."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};
static const nudgel_conf_entry_t *const tables[] = {nudgel_conf_common, test_table, NULL};

static char *write_temp(const char *name, const char *content)
{
    char *path;
    if (asprintf(&path, "%s/%s", NUDGEL_TEST_TMPDIR, name) < 0)
        return NULL;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

static int clear_env(void **state)
{
    (void)state;
    unsetenv("NUDGEL_WORKER_MAX_IN_FLIGHT");
    unsetenv("NUDGEL_KAFKA_BOOTSTRAP");
    unsetenv("NUDGEL_PG_DSN");
    unsetenv("NUDGEL_CONFIG");
    unsetenv("NUDGEL_WORKER_MODE");
    return 0;
}

static void test_defaults_and_types(void **state)
{
    (void)state;
    nudgel_conf_t *conf = nudgel_conf_new("test", tables);
    char errstr[256];
    assert_int_equal(nudgel_conf_get_int(conf, "worker.max_in_flight"), 1000);
    assert_false(nudgel_conf_get_bool(conf, "worker.dry_run"));
    assert_string_equal(nudgel_conf_get_str(conf, "log.level"), "info");
    assert_null(nudgel_conf_get_str(conf, "pg.dsn"));
    assert_int_equal(nudgel_conf_source(conf, "worker.mode"), NUDGEL_CONF_FROM_DEFAULT);

    static const struct {
        const char *key, *value;
        nudgel_err_t expected;
        const char *mentions;
    } sets[] = {
        {"worker.max_in_flight", "5000", NUDGEL_OK, NULL},
        {"worker.max_in_flight", "0", NUDGEL_ERR_CONFIG, "out of range"},
        {"worker.max_in_flight", "100001", NUDGEL_ERR_CONFIG, "out of range"},
        {"worker.max_in_flight", "12abc", NUDGEL_ERR_CONFIG, "expected an integer"},
        {"worker.max_in_flight", "", NUDGEL_ERR_CONFIG, "expected an integer"},
        {"worker.dry_run", "yes", NUDGEL_OK, NULL},
        {"worker.dry_run", "maybe", NUDGEL_ERR_CONFIG, "true or false"},
        {"worker.mode", "safe", NUDGEL_OK, NULL},
        {"worker.mode", "reckless", NUDGEL_ERR_CONFIG, "fast|safe"},
        {"log.level", "verbose", NUDGEL_ERR_CONFIG, "debug|info|warn|error"},
        {"worker.unknown", "1", NUDGEL_ERR_CONFIG, "unknown configuration key"},
        {"kafka.linger.ms", "7", NUDGEL_OK, NULL},
    };
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        errstr[0] = '\0';
        nudgel_err_t err = nudgel_conf_set(conf, sets[i].key, sets[i].value, NUDGEL_CONF_FROM_FLAG,
                                           errstr, sizeof(errstr));
        if (err != sets[i].expected)
            fail_msg("set %s=%s: %s", sets[i].key, sets[i].value, errstr);
        if (sets[i].mentions) {
            /* The error names the key and says what is wrong. */
            assert_non_null(strstr(errstr, sets[i].key));
            assert_non_null(strstr(errstr, sets[i].mentions));
        }
    }
    assert_int_equal(nudgel_conf_get_int(conf, "worker.max_in_flight"), 5000);
    assert_true(nudgel_conf_get_bool(conf, "worker.dry_run"));
    assert_string_equal(nudgel_conf_get_str(conf, "worker.mode"), "safe");
    nudgel_conf_destroy(conf);
}

static int collect_prop(const char *prop, const char *value, void *opaque)
{
    char *out = opaque;
    strcat(out, prop);
    strcat(out, "=");
    strcat(out, value);
    strcat(out, ";");
    return 0;
}

static void test_file_nested_and_flat(void **state)
{
    (void)state;
    char *path = write_temp(
        "nested.json", "{\"kafka\": {\"bootstrap\": \"10.0.0.1:9092\", \"linger.ms\": 20,\n"
                       "            \"enable.idempotence\": true},\n"
                       " \"worker.mode\": \"safe\",\n"
                       " \"worker\": {\"max_in_flight\": 42},\n"
                       " \"webhooks\": {\"ssrf_allow_cidrs\": [\"10.0.0.0/8\", \"::1/128\"]},\n"
                       " \"_comment\": \"keys starting with _ are comments\",\n"
                       " \"log\": {\"level\": null}}");
    nudgel_conf_t *conf = nudgel_conf_new("test", tables);
    char errstr[256], props[256] = "";
    assert_int_equal(nudgel_conf_load_file(conf, path, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_string_equal(nudgel_conf_get_str(conf, "kafka.bootstrap"), "10.0.0.1:9092");
    assert_int_equal(nudgel_conf_get_int(conf, "worker.max_in_flight"), 42);
    assert_string_equal(nudgel_conf_get_str(conf, "worker.mode"), "safe");
    assert_string_equal(nudgel_conf_get_str(conf, "log.level"), "info"); /* null keeps default */
    assert_int_equal(nudgel_conf_source(conf, "worker.mode"), NUDGEL_CONF_FROM_FILE);
    nudgel_conf_kafka_foreach(conf, collect_prop, props);
    assert_string_equal(props, "linger.ms=20;enable.idempotence=true;");
    nudgel_conf_destroy(conf);
    free(path);
}

static void test_file_errors_name_key(void **state)
{
    (void)state;
    static const struct {
        const char *content, *mentions;
    } bad[] = {
        {"{\"worker\": {\"max_in_flight\": \"lots\"}}",
         "worker.max_in_flight: expected an integer"},
        {"{\"worker\": {\"max_in_flight\": 0}}", "worker.max_in_flight: 0 is out of range"},
        {"{\"worker\": {\"mdoe\": \"safe\"}}", "worker.mdoe: unknown configuration key"},
        {"{\"worker\": {\"mode\": {\"x\": {\"y\": 1}}}}", "worker.mode.x.y"},
        {"{\"log\": {\"level\": [\"info\", {}]}}", "log.level: expected a string"},
        {"{\"worker\": {\"mode\": \"safe\",}}", ":1:"},
        {"[1, 2]", "must be a JSON object"},
        {"{\"worker.mode\": \"safe\", \"worker.mode\": \"fast\"}", "duplicate"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *path = write_temp("bad.json", bad[i].content);
        nudgel_conf_t *conf = nudgel_conf_new("test", tables);
        char errstr[512] = "";
        assert_int_equal(nudgel_conf_load_file(conf, path, errstr, sizeof(errstr)),
                         NUDGEL_ERR_CONFIG);
        if (!strstr(errstr, bad[i].mentions) || !strstr(errstr, "bad.json"))
            fail_msg("case %zu: \"%s\" does not mention \"%s\" and the file", i, errstr,
                     bad[i].mentions);
        nudgel_conf_destroy(conf);
        free(path);
    }
}

static void test_precedence_file_env_flag(void **state)
{
    (void)state;
    char *path = write_temp("prec.json", "{\"worker\": {\"max_in_flight\": 10, \"mode\": \"safe\"},"
                                         " \"kafka\": {\"bootstrap\": \"file:1\"}}");
    setenv("NUDGEL_CONFIG", path, 1);
    setenv("NUDGEL_WORKER_MAX_IN_FLIGHT", "20", 1);
    setenv("NUDGEL_KAFKA_BOOTSTRAP", "env:2", 1);
    nudgel_conf_t *conf = nudgel_conf_new("test", tables);
    char errstr[256];
    assert_int_equal(nudgel_conf_load(conf, NULL, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(nudgel_conf_get_int(conf, "worker.max_in_flight"), 20); /* env > file */
    assert_string_equal(nudgel_conf_get_str(conf, "worker.mode"), "safe");   /* file > default */
    assert_string_equal(nudgel_conf_get_str(conf, "kafka.bootstrap"), "env:2");
    assert_int_equal(nudgel_conf_source(conf, "worker.max_in_flight"), NUDGEL_CONF_FROM_ENV);
    assert_int_equal(nudgel_conf_set(conf, "worker.max_in_flight", "30", NUDGEL_CONF_FROM_FLAG,
                                     errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_conf_get_int(conf, "worker.max_in_flight"), 30); /* flag > env */
    nudgel_conf_destroy(conf);

    setenv("NUDGEL_WORKER_MODE", "turbo", 1);
    conf = nudgel_conf_new("test", tables);
    assert_int_equal(nudgel_conf_load(conf, NULL, errstr, sizeof(errstr)), NUDGEL_ERR_CONFIG);
    assert_non_null(strstr(errstr, "NUDGEL_WORKER_MODE"));
    nudgel_conf_destroy(conf);
    free(path);
}

static void test_secrets_redacted(void **state)
{
    (void)state;
    nudgel_conf_t *conf = nudgel_conf_new("test", tables);
    char errstr[256], *text = NULL;
    size_t size = 0;
    assert_int_equal(nudgel_conf_set(conf, "pg.dsn", "postgresql://u:hunter2@db/x",
                                     NUDGEL_CONF_FROM_ENV, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_conf_set(conf, "worker.api_key", "sk_live_123", NUDGEL_CONF_FROM_FILE,
                                     errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_conf_set(conf, "kafka.sasl.password", "pw-42", NUDGEL_CONF_FROM_FILE,
                                     errstr, sizeof(errstr)),
                     NUDGEL_OK);
    FILE *out = open_memstream(&text, &size);
    nudgel_conf_print(conf, out);
    nudgel_conf_print_doc(conf, out);
    fclose(out);
    assert_null(strstr(text, "hunter2"));
    assert_null(strstr(text, "sk_live_123"));
    assert_null(strstr(text, "pw-42"));
    assert_non_null(strstr(text, "pg.dsn = [redacted]"));
    assert_non_null(strstr(text, "| `worker.max_in_flight` | `NUDGEL_WORKER_MAX_IN_FLIGHT` |"));
    free(text);
    nudgel_conf_destroy(conf);
}

/* A worker's command line: --set and -X applied, a bad flag or assignment refused. */
static void test_startup_from_args(void **state)
{
    (void)state;
    char *ok_argv[] = {
        "test",        "-s", "worker.max_in_flight=7", "--set", "worker.mode=safe", "-X",
        "linger.ms=3", NULL};
    nudgel_conf_t *conf = nudgel_conf_new("test", tables);
    optind = 0; /* glibc: start getopt afresh */
    assert_int_equal(nudgel_conf_startup_args(conf, "test", 7, ok_argv), NUDGEL_CONF_STARTUP_RUN);
    assert_int_equal(nudgel_conf_get_int(conf, "worker.max_in_flight"), 7);
    assert_int_equal(nudgel_conf_source(conf, "worker.max_in_flight"), NUDGEL_CONF_FROM_FLAG);
    assert_string_equal(nudgel_conf_get_str(conf, "worker.mode"), "safe");
    nudgel_conf_destroy(conf);

    char *bad_flag[] = {"test", "--no-such-flag", NULL};
    conf = nudgel_conf_new("test", tables);
    optind = 0;
    assert_int_equal(nudgel_conf_startup_args(conf, "test", 2, bad_flag), NUDGEL_CONF_STARTUP_FAIL);
    nudgel_conf_destroy(conf);

    char *bad_value[] = {"test", "-s", "worker.max_in_flight=0", NULL};
    conf = nudgel_conf_new("test", tables);
    optind = 0;
    assert_int_equal(nudgel_conf_startup_args(conf, "test", 3, bad_value),
                     NUDGEL_CONF_STARTUP_FAIL); /* below the range's minimum of 1 */
    nudgel_conf_destroy(conf);

    char *help[] = {"test", "--help", NULL};
    conf = nudgel_conf_new("test", tables);
    optind = 0;
    assert_int_equal(nudgel_conf_startup_args(conf, "test", 2, help), NUDGEL_CONF_STARTUP_DONE);
    nudgel_conf_destroy(conf);
}

/* The command line kept at start-up reads the same sources again (a SIGHUP reload). */
static void test_cmdline_kept_for_reload(void **state)
{
    (void)state;
    char errstr[512];
    char *path = write_temp("reload.json", "{\"worker\": {\"mode\": \"safe\"}}\n");
    char *argv[] = {"test", "-c", path, "-s", "worker.max_in_flight=7", "-X", "linger.ms=3", NULL};
    nudgel_conf_cmdline_t cmd;
    nudgel_conf_t *conf = nudgel_conf_new("test", tables);
    optind = 0;
    assert_int_equal(nudgel_conf_startup_cmdline(conf, "test", "Summary.", 7, argv, &cmd),
                     NUDGEL_CONF_STARTUP_RUN);
    assert_string_equal(cmd.config_path, path);
    assert_int_equal(cmd.count, 2);
    assert_string_equal(cmd.assignments[0], "worker.max_in_flight=7");
    assert_string_equal(cmd.assignments[1], "kafka.linger.ms=3");
    assert_string_equal(cmd.error, "");

    /* the file changes: a new configuration sees it, and the same flags still win */
    free(write_temp("reload.json", "{\"worker\": {\"mode\": \"fast\", \"max_in_flight\": 9}}\n"));
    nudgel_conf_t *next = nudgel_conf_new("test", tables);
    assert_int_equal(nudgel_conf_load_cmdline(next, "test", &cmd, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_string_equal(nudgel_conf_get_str(next, "worker.mode"), "fast");
    assert_int_equal(nudgel_conf_get_int(next, "worker.max_in_flight"), 7);
    assert_string_equal(nudgel_conf_get_str(next, "kafka.client_id"), "test");
    nudgel_conf_destroy(next);

    /* a bad file: the error names the file and the key */
    free(write_temp("reload.json", "{\"worker\": {\"mode\": \"reckless\"}}\n"));
    next = nudgel_conf_new("test", tables);
    assert_int_equal(nudgel_conf_load_cmdline(next, "test", &cmd, errstr, sizeof(errstr)),
                     NUDGEL_ERR_CONFIG);
    assert_non_null(strstr(errstr, path));
    assert_non_null(strstr(errstr, "worker.mode: \"reckless\" is not one of fast|safe"));
    nudgel_conf_destroy(next);
    nudgel_conf_cmdline_clear(&cmd);
    nudgel_conf_destroy(conf);

    /* a FAIL keeps its problem for the JSON log */
    char *bad[] = {"test", "-s", "worker.max_in_flight=0", NULL};
    conf = nudgel_conf_new("test", tables);
    optind = 0;
    assert_int_equal(nudgel_conf_startup_cmdline(conf, "test", NULL, 3, bad, &cmd),
                     NUDGEL_CONF_STARTUP_FAIL);
    assert_string_equal(cmd.error, "worker.max_in_flight: 0 is out of range [1, 100000]");
    nudgel_conf_cmdline_clear(&cmd);
    nudgel_conf_destroy(conf);

    char *version[] = {"test", "--version", NULL};
    conf = nudgel_conf_new("test", tables);
    optind = 0;
    assert_int_equal(nudgel_conf_startup_args(conf, "test", 2, version), NUDGEL_CONF_STARTUP_DONE);
    nudgel_conf_destroy(conf);
    free(path);
}

static int find_prop(const char *prop, const char *value, void *opaque)
{
    const char **want = opaque; /* {name, found value} */
    if (strcmp(prop, want[0]) == 0)
        want[1] = value;
    return 0;
}

static const char *kafka_prop(const nudgel_conf_t *conf, const char *name)
{
    const char *want[2] = {name, NULL};
    nudgel_conf_kafka_foreach(conf, find_prop, want);
    return want[1];
}

/* kafka.properties_file: read after every other source (its properties win), comments and
 * blanks skipped, values trimmed; printed redacted; a bad line named without its text. */
static void test_kafka_properties_file(void **state)
{
    (void)state;
    char errstr[512], *text = NULL;
    size_t size = 0;
    char *props = write_temp("client.properties", "# the Kafka client's secrets\n"
                                                  "  security.protocol = sasl_plaintext\r\n"
                                                  "\n"
                                                  "! a comment too\n"
                                                  "sasl.mechanism=PLAIN\n"
                                                  "sasl.username=nudgel\n"
                                                  "sasl.password= pw=with=equals \n");
    char *set = NULL;
    assert_true(asprintf(&set, "kafka.properties_file=%s", props) > 0);
    char *argv[] = {"test", "-X", "sasl.username=from-flag", "-X", "linger.ms=3", "-s", set, NULL};
    nudgel_conf_t *conf = nudgel_conf_new("test", tables);
    optind = 0;
    assert_int_equal(nudgel_conf_startup_args(conf, "test", 7, argv), NUDGEL_CONF_STARTUP_RUN);
    assert_string_equal(kafka_prop(conf, "security.protocol"), "sasl_plaintext");
    assert_string_equal(kafka_prop(conf, "sasl.mechanism"), "PLAIN");
    assert_string_equal(kafka_prop(conf, "sasl.username"), "nudgel"); /* the file wins */
    assert_string_equal(kafka_prop(conf, "sasl.password"), "pw=with=equals");
    assert_string_equal(kafka_prop(conf, "linger.ms"), "3");
    FILE *out = open_memstream(&text, &size);
    nudgel_conf_print(conf, out);
    fclose(out);
    assert_null(strstr(text, "pw=with=equals"));
    assert_null(strstr(text, "nudgel "));
    assert_non_null(strstr(text, "kafka.sasl.username = [redacted]  # librdkafka, "
                                 "kafka.properties_file"));
    assert_non_null(strstr(text, "kafka.linger.ms = 3  # librdkafka\n"));
    free(text);
    nudgel_conf_destroy(conf);

    /* Every bad line named (collecting), none of their text shown. */
    free(write_temp("client.properties", "sasl.pasword=hunter2\n"
                                         "security.protocol=hunter3\n"
                                         "hunter4\n"
                                         "sasl.username=ok\n"));
    char *check_argv[] = {"test", "-s", set, NULL};
    nudgel_conf_cmdline_t cmd;
    conf = nudgel_conf_new("test", tables);
    optind = 0;
    assert_int_equal(nudgel_conf_startup_cmdline(conf, "test", NULL, 3, check_argv, &cmd),
                     NUDGEL_CONF_STARTUP_FAIL);
    assert_non_null(strstr(cmd.error, "kafka.properties_file: "));
    assert_non_null(strstr(cmd.error, "line 1: \"sasl.pasword\": not a librdkafka property"));
    nudgel_conf_cmdline_clear(&cmd);
    nudgel_conf_destroy(conf);

    conf = nudgel_conf_new("test", tables);
    nudgel_conf_collect(conf, true);
    assert_int_equal(nudgel_conf_load_cmdline(
                         conf, "test", &(nudgel_conf_cmdline_t){.assignments = &set, .count = 1},
                         errstr, sizeof(errstr)),
                     NUDGEL_ERR_CONFIG);
    assert_int_equal(nudgel_conf_problem_count(conf), 3);
    assert_non_null(strstr(nudgel_conf_problem(conf, 0), "line 1: \"sasl.pasword\""));
    assert_non_null(strstr(nudgel_conf_problem(conf, 1),
                           "line 2: \"security.protocol\": librdkafka refuses its value"));
    assert_non_null(strstr(nudgel_conf_problem(conf, 2), "line 3: not name=value"));
    for (size_t i = 0; i < 3; i++)
        assert_null(strstr(nudgel_conf_problem(conf, i), "hunter"));
    nudgel_conf_destroy(conf);

    /* A file that cannot be read names the key. */
    conf = nudgel_conf_new("test", tables);
    assert_int_equal(nudgel_conf_set(conf, "kafka.properties_file",
                                     "/nonexistent/client.properties", NUDGEL_CONF_FROM_ENV, errstr,
                                     sizeof(errstr)),
                     NUDGEL_OK);
    nudgel_conf_cmdline_t none = {0};
    assert_int_equal(nudgel_conf_load_cmdline(conf, "test", &none, errstr, sizeof(errstr)),
                     NUDGEL_ERR_CONFIG);
    assert_non_null(strstr(errstr, "kafka.properties_file: cannot read /nonexistent/"));
    nudgel_conf_destroy(conf);
    free(set);
    free(props);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_and_types, clear_env),
        cmocka_unit_test_setup(test_file_nested_and_flat, clear_env),
        cmocka_unit_test_setup(test_file_errors_name_key, clear_env),
        cmocka_unit_test_setup(test_precedence_file_env_flag, clear_env),
        cmocka_unit_test_setup(test_secrets_redacted, clear_env),
        cmocka_unit_test_setup(test_startup_from_args, clear_env),
        cmocka_unit_test_setup(test_cmdline_kept_for_reload, clear_env),
        cmocka_unit_test_setup(test_kafka_properties_file, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
