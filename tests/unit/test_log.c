/*
 * test_log.c — the log's rate limiter: N lines per interval, the rest
 * counted, and one "N more line(s) suppressed" line before the first line
 * of a later interval (or on flush). stderr is redirected to a file so the
 * lines written can be read back.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nudgel/log.h"

#define SEC 1000000LL

static FILE *captured;
static int saved_stderr = -1;

static int capture(void **state)
{
    (void)state;
    captured = tmpfile();
    assert_non_null(captured);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(dup2(fileno(captured), STDERR_FILENO) >= 0);
    nudgel_log_init("test-log", NUDGEL_LOG_INFO);
    return 0;
}

static int release(void **state)
{
    (void)state;
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    fclose(captured);
    return 0;
}

/* Every line written since the last call, joined; counts lines in @p lines. */
static char *drain(size_t *lines)
{
    static char buf[65536];
    fseek(captured, 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof(buf) - 1, captured);
    buf[n] = '\0';
    /* Start over for the next call (stderr shares the file offset). */
    assert_int_equal(ftruncate(fileno(captured), 0), 0);
    fseek(captured, 0, SEEK_SET);
    *lines = 0;
    for (char *p = buf; *p; p++)
        *lines += *p == '\n';
    return buf;
}

/* One line through the limiter at @p now_us, as NUDGEL_LOG_LIMITED does. */
static bool line_at(nudgel_log_ratelimit_t *rl, int64_t now_us, int i)
{
    if (!nudgel_log_ratelimit_allow_at(rl, NUDGEL_LOG_WARN, now_us))
        return false;
    nudgel_log_emit(NUDGEL_LOG_WARN, NULL, "gateway answered 503 (line %d)", i);
    return true;
}

static void test_n_lines_per_interval_then_a_count(void **state)
{
    (void)state;
    nudgel_log_ratelimit_t rl = NUDGEL_LOG_RATELIMIT_INIT("gateway answers", 3, 1000);
    size_t lines;
    int passed = 0;
    for (int i = 0; i < 10; i++)
        passed += line_at(&rl, 5 * SEC + i * 1000, i);
    assert_int_equal(passed, 3);
    char *text = drain(&lines);
    assert_int_equal(lines, 3);
    assert_non_null(strstr(text, "(line 2)"));
    assert_null(strstr(text, "(line 3)"));
    assert_null(strstr(text, "suppressed"));

    /* Still the same interval: held back, nothing written. */
    assert_false(line_at(&rl, 5 * SEC + 900000, 10));
    drain(&lines);
    assert_int_equal(lines, 0);

    /* The next interval: the count of the 8 held back, then the line. */
    assert_true(line_at(&rl, 6 * SEC + 1, 11));
    text = drain(&lines);
    assert_int_equal(lines, 2);
    char *count = strstr(text, "gateway answers: 8 more line(s) suppressed");
    char *line = strstr(text, "(line 11)");
    assert_non_null(count);
    assert_non_null(line);
    assert_true(count < line);
    assert_non_null(strstr(text, "\"level\":\"warn\""));

    /* Nothing held back since: no count line before the next interval's first line. */
    assert_true(line_at(&rl, 8 * SEC, 12));
    text = drain(&lines);
    assert_int_equal(lines, 1);
    assert_null(strstr(text, "suppressed"));
}

static void test_flush_reports_what_was_held_back(void **state)
{
    (void)state;
    nudgel_log_ratelimit_t rl = NUDGEL_LOG_RATELIMIT_INIT("dead letters", 1, 10000);
    size_t lines;
    assert_true(line_at(&rl, SEC, 0));
    assert_false(line_at(&rl, SEC + 1, 1));
    assert_false(line_at(&rl, SEC + 2, 2));
    drain(&lines);
    assert_int_equal(lines, 1);
    assert_int_equal(nudgel_log_ratelimit_flush(&rl, NUDGEL_LOG_WARN), 2);
    char *text = drain(&lines);
    assert_int_equal(lines, 1);
    assert_non_null(strstr(text, "dead letters: 2 more line(s) suppressed"));
    assert_int_equal(nudgel_log_ratelimit_flush(&rl, NUDGEL_LOG_WARN), 0);
    drain(&lines);
    assert_int_equal(lines, 0);
}

static void test_below_the_threshold_nothing_is_written(void **state)
{
    (void)state;
    nudgel_log_ratelimit_t rl = NUDGEL_LOG_RATELIMIT_INIT("quiet", 1, 1000);
    size_t lines;
    nudgel_log_init("test-log", NUDGEL_LOG_ERROR);
    for (int i = 0; i < 5; i++)
        NUDGEL_LOG_LIMITED(&rl, NUDGEL_LOG_WARN, NULL, "never %d", i);
    drain(&lines);
    assert_int_equal(lines, 0);
    /* Lines below the threshold never reach the limiter: nothing counted. */
    assert_int_equal(rl.suppressed, 0);
    nudgel_log_init("test-log", NUDGEL_LOG_INFO);
    nudgel_log_ctx_t ctx = {.tenant = "acme", .job_id = "j-1", .trace_id = "t-1"};
    NUDGEL_LOG_LIMITED(&rl, NUDGEL_LOG_WARN, &ctx, "once");
    NUDGEL_LOG_LIMITED(&rl, NUDGEL_LOG_WARN, &ctx, "twice");
    char *text = drain(&lines);
    assert_int_equal(lines, 1);
    assert_non_null(strstr(text, "\"tenant\":\"acme\""));
    assert_non_null(strstr(text, "\"job_id\":\"j-1\""));
    assert_int_equal(rl.suppressed, 1);
}

static void test_zero_lines_counts_as_one(void **state)
{
    (void)state;
    nudgel_log_ratelimit_t rl = NUDGEL_LOG_RATELIMIT_INIT("zero", 0, 1000);
    size_t lines;
    assert_true(line_at(&rl, SEC, 0));
    assert_false(line_at(&rl, SEC + 10, 1));
    drain(&lines);
    assert_int_equal(lines, 1);
}

static void test_trace_id_of_a_traceparent(void **state)
{
    (void)state;
    char id[NUDGEL_LOG_TRACE_ID_LEN + 1];
    nudgel_log_trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", id);
    assert_string_equal(id, "4bf92f3577b34da6a3ce929d0e0e4736");
    static const char *const bad[] = {
        NULL,
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nudgel_log_trace_id(bad[i], id);
        assert_string_equal(id, "");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_n_lines_per_interval_then_a_count),
        cmocka_unit_test(test_flush_reports_what_was_held_back),
        cmocka_unit_test(test_below_the_threshold_nothing_is_written),
        cmocka_unit_test(test_zero_lines_counts_as_one),
        cmocka_unit_test(test_trace_id_of_a_traceparent),
    };
    return cmocka_run_group_tests(tests, capture, release);
}
