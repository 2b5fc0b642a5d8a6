/*
 * test_worker.c — the worker skeleton, end to end, through the toy role
 * (toy_role.c) run as a child process: --version and --help; the runtime
 * table's keys exactly as docs/CONFIGURATION.md documents them; /healthz,
 * /readyz and /metrics over HTTP; SIGTERM drains (in flight 3 → 0 over
 * timer ticks, /readyz 503 meanwhile) and exits 0; a second SIGTERM changes
 * nothing; the drain deadline; SIGHUP with a bad file keeps the old
 * configuration and names the key, with a good one applies log.level and
 * the same --set flags; /healthz 503 while the loop is stuck; a fatal stop
 * exits 1; start-up errors exit 2 or 3 with "program: key: problem" on
 * stderr and in the JSON log.
 *
 * NUDGEL_TOY_ROLE is the toy's path, NUDGEL_SOURCE_DIR the source tree
 * (both compile definitions), NUDGEL_TEST_TMPDIR a scratch folder.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "nudgel/version.h"

#define PROGRAM "nudgel-test-toy-role"

typedef struct child {
    pid_t pid;
    char err_path[256], out_path[256];
    int port;
} child_t;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

/* The whole file, NUL-terminated (empty if missing); the caller frees. */
static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    FILE *in = fopen(path, "r");
    FILE *out = open_memstream(&text, &len);
    if (in) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            fwrite(buf, 1, n, out);
        fclose(in);
    }
    fclose(out);
    return text;
}

static void write_file(const char *path, const char *text)
{
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0); /* the worker never reads half a file */
}

/* Starts the toy with @p args (NULL-terminated), stdout and stderr to files. */
static void spawn(child_t *c, const char *const *args)
{
    static int serial;
    char *argv[64];
    size_t n = 0;
    argv[n++] = (char *)NUDGEL_TOY_ROLE;
    for (; args && *args && n < 63; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    memset(c, 0, sizeof(*c));
    snprintf(c->err_path, sizeof(c->err_path), "%s/toy-%d-%d.err", NUDGEL_TEST_TMPDIR,
             (int)getpid(), serial);
    snprintf(c->out_path, sizeof(c->out_path), "%s/toy-%d-%d.out", NUDGEL_TEST_TMPDIR,
             (int)getpid(), serial++);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        int err = open(c->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int out = open(c->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (err < 0 || out < 0 || dup2(err, STDERR_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0)
            _exit(120);
        execv(argv[0], argv);
        _exit(121);
    }
}

/* Where @p needle first appears in the child's stderr at or after @p from; -1 if not yet. */
static long log_find(const child_t *c, const char *needle, long from)
{
    char *text = slurp(c->err_path);
    long at = -1;
    if ((long)strlen(text) >= from) {
        char *hit = strstr(text + from, needle);
        if (hit)
            at = hit - text;
    }
    free(text);
    return at;
}

static long log_wait(const child_t *c, const char *needle, long from, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    long at;
    while ((at = log_find(c, needle, from)) < 0 && now_ms() < deadline)
        sleep_ms(20);
    if (at < 0) {
        char *text = slurp(c->err_path);
        print_error("\"%s\" not in the log after %d ms:\n%s\n", needle, timeout_ms, text);
        free(text);
        fail();
    }
    return at;
}

static long log_size(const child_t *c)
{
    struct stat st;
    return stat(c->err_path, &st) == 0 ? (long)st.st_size : 0;
}

/* Waits for the child's exit code (-1 after a timeout, and then it is killed). */
static int wait_exit(child_t *c, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid)
            break;
        if (now_ms() > deadline) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &status, 0);
            char *text = slurp(c->err_path);
            print_error("the toy did not exit within %d ms:\n%s\n", timeout_ms, text);
            free(text);
            return -1;
        }
        sleep_ms(20);
    }
    c->pid = 0;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static void cleanup(child_t *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
    }
    unlink(c->err_path);
    unlink(c->out_path);
}

static bool alive(const child_t *c)
{
    return c->pid > 0 && waitpid(c->pid, NULL, WNOHANG) == 0;
}

static int start_port(child_t *c)
{
    long at = log_wait(c, "metrics on port ", 0, 30000);
    char *text = slurp(c->err_path);
    c->port = atoi(text + at + strlen("metrics on port "));
    free(text);
    assert_true(c->port > 0);
    return c->port;
}

typedef struct fetched {
    long status;
    char body[4096];
    size_t len;
} fetched_t;

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    fetched_t *f = arg;
    size_t take = size * n;
    if (f->len + take >= sizeof(f->body))
        take = sizeof(f->body) - f->len - 1;
    memcpy(f->body + f->len, data, take);
    f->len += take;
    f->body[f->len] = '\0';
    return size * n;
}

static fetched_t get(int port, const char *path)
{
    fetched_t f = {0, "", 0};
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    assert_int_equal(curl_easy_perform(curl), CURLE_OK);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &f.status);
    curl_easy_cleanup(curl);
    return f;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_version_and_help(void **state)
{
    (void)state;
    child_t c;
    char expected[256];
    const char *version[] = {"--version", NULL};
    spawn(&c, version);
    assert_int_equal(wait_exit(&c, 10000), 0);
    char *out = slurp(c.out_path);
    snprintf(expected, sizeof(expected), "%s %s\n", PROGRAM, nudgel_version());
    assert_string_equal(out, expected);
    assert_non_null(strstr(out, "0.")); /* the project version is in it */
    free(out);
    cleanup(&c);

    const char *help[] = {"--help", NULL};
    spawn(&c, help);
    assert_int_equal(wait_exit(&c, 10000), 0);
    out = slurp(c.out_path);
    const char *expect[] = {
        "usage: " PROGRAM,
        "--set KEY=VALUE",
        "--version",
        "A toy role for the skeleton's tests",
        "SIGHUP reads the configuration again",
        "Exit status: 0 stopped by a signal, 1 fatal stop",
        "## " PROGRAM,
        "| `log.level` |",
        "| `toy.drain_timeout_ms` |",
        "| `metrics.port` | `NUDGEL_METRICS_PORT` | integer | `9499` |",
    };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        if (!strstr(out, expect[i]))
            fail_msg("--help lacks \"%s\":\n%s", expect[i], out);
    /* flags, then the summary, then the reference */
    assert_true(strstr(out, "--set KEY") < strstr(out, "A toy role"));
    assert_true(strstr(out, "A toy role") < strstr(out, "## " PROGRAM));
    free(out);
    cleanup(&c);

    const char *bad[] = {"--no-such-flag", NULL};
    spawn(&c, bad);
    assert_int_equal(wait_exit(&c, 10000), 2);
    cleanup(&c);
}

/* Copies the Markdown row of @p key from @p section (the "## program" part) of @p doc. */
static void doc_row(const char *doc, const char *section, const char *key, char *out,
                    size_t out_size)
{
    char heading[128], cell[128];
    snprintf(heading, sizeof(heading), "## %s\n", section);
    snprintf(cell, sizeof(cell), "| `%s` |", key);
    const char *s = strstr(doc, heading);
    assert_non_null(s);
    const char *end = strstr(s + strlen(heading), "\n## ");
    const char *row = strstr(s, cell);
    assert_non_null(row);
    assert_true(!end || row < end);
    const char *nl = strchr(row, '\n');
    snprintf(out, out_size, "%.*s", (int)(nl - row), row);
}

/*
 * The shared runtime table documents topics.namespace and metrics.* exactly
 * as the roles' own tables did (docs/CONFIGURATION.md), the port aside.
 */
static void test_runtime_keys_match_the_docs(void **state)
{
    (void)state;
    static const struct {
        const char *program, *port;
    } roles[] = {
        {"nudgel-messages", "9464"}, {"nudgel-webhooks", "9465"}, {"nudgel-dispatch", "9466"}};
    static const char *const keys[] = {"topics.namespace", "metrics.address", "metrics.port"};
    child_t c;
    const char *args[] = {"--print-config-doc", NULL};
    spawn(&c, args);
    assert_int_equal(wait_exit(&c, 10000), 0);
    char *toy_doc = slurp(c.out_path);
    char *docs = slurp(NUDGEL_SOURCE_DIR "/docs/CONFIGURATION.md");
    assert_non_null(strstr(docs, "# Configuration reference"));
    for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]); r++) {
        for (size_t k = 0; k < 3; k++) {
            char want[512], got[512];
            doc_row(docs, roles[r].program, keys[k], want, sizeof(want));
            doc_row(toy_doc, PROGRAM, keys[k], got, sizeof(got));
            char *port = strstr(got, "`9499`");
            if (port)
                memcpy(port + 1, roles[r].port, 4);
            assert_string_equal(got, want);
        }
    }
    /* and they come last, after the role's own keys */
    assert_true(strstr(toy_doc, "| `toy.refuse_reload` |") <
                strstr(toy_doc, "| `topics.namespace` |"));
    free(docs);
    free(toy_doc);
    cleanup(&c);
}

static void test_endpoints_and_drain(void **state)
{
    (void)state;
    child_t c;
    const char *args[] = {"--set", "metrics.port=0",        "--set", "topics.namespace=t42.",
                          "--set", "toy.drain_tick_ms=400", NULL};
    spawn(&c, args);
    int port = start_port(&c);
    log_wait(&c, "toy topic t42.nudgel.messages.v1 (same pointer again: yes)", 0, 5000);

    fetched_t f = get(port, "/healthz");
    assert_int_equal(f.status, 200);
    assert_string_equal(f.body, "ok\n");
    f = get(port, "/readyz"); /* "partitions" does not apply to the toy: still ready */
    assert_int_equal(f.status, 200);
    assert_string_equal(f.body, "ready\n");
    f = get(port, "/metrics");
    assert_int_equal(f.status, 200);
    assert_non_null(strstr(f.body, "nudgel_toy_in_flight 3\n"));

    long mark = log_size(&c);
    assert_int_equal(kill(c.pid, SIGTERM), 0);
    log_wait(&c, "SIGTERM: draining 3 in flight", mark, 5000);
    f = get(port, "/readyz");
    assert_int_equal(f.status, 503);
    assert_string_equal(f.body, "not ready: draining: shutting down (SIGTERM)\n");
    f = get(port, "/healthz"); /* draining is alive */
    assert_int_equal(f.status, 200);
    assert_int_equal(wait_exit(&c, 10000), 0);
    long two = log_wait(&c, "toy finished one; 2 left", mark, 0);
    long one = log_wait(&c, "toy finished one; 1 left", two, 0);
    long zero = log_wait(&c, "toy finished one; 0 left", one, 0);
    long drained = log_wait(&c, "drained: nothing in flight", zero, 0);
    log_wait(&c, "toy teardown drained=true", drained, 0);
    cleanup(&c);
}

static void test_second_sigterm_and_deadline(void **state)
{
    (void)state;
    child_t c;
    /* a second SIGTERM during the drain is logged; the drain goes on */
    const char *slow[] = {"--set", "metrics.port=0", "--set", "toy.drain_tick_ms=300", NULL};
    spawn(&c, slow);
    start_port(&c);
    kill(c.pid, SIGTERM);
    log_wait(&c, "SIGTERM: draining 3", 0, 5000);
    kill(c.pid, SIGTERM);
    log_wait(&c, "SIGTERM during the drain: still draining", 0, 5000);
    assert_int_equal(wait_exit(&c, 10000), 0);
    log_wait(&c, "toy teardown drained=true", 0, 0);
    cleanup(&c);

    /* work that never finishes: the deadline ends the drain, exit 0 all the same */
    const char *stuck[] = {"--set", "metrics.port=0",           "--set", "toy.drain_tick_ms=60000",
                           "--set", "toy.drain_timeout_ms=300", NULL};
    spawn(&c, stuck);
    start_port(&c);
    long long t0 = now_ms();
    kill(c.pid, SIGINT);
    assert_int_equal(wait_exit(&c, 10000), 0);
    assert_true(now_ms() - t0 >= 250);
    log_wait(&c, "SIGINT: draining 3 in flight (at most 300 ms", 0, 0);
    log_wait(&c, "drain timeout (toy.drain_timeout_ms) reached with 3 in flight", 0, 0);
    log_wait(&c, "toy teardown drained=false", 0, 0);
    cleanup(&c);
}

static void test_sighup(void **state)
{
    (void)state;
    child_t c;
    char conf_path[256];
    snprintf(conf_path, sizeof(conf_path), "%s/toy-%d.json", NUDGEL_TEST_TMPDIR, (int)getpid());
    write_file(conf_path, "{\"toy\": {\"label\": \"first\"}}\n");
    const char *args[] = {"-c",    conf_path,         "--set", "metrics.port=0",
                          "--set", "toy.in_flight=2", NULL};
    spawn(&c, args);
    int port = start_port(&c);
    assert_true(log_find(&c, "toy tick", 0) < 0); /* info: no debug lines */

    /* A bad value: logged with its key, the process and its configuration stay. */
    long mark = log_size(&c);
    write_file(conf_path, "{\"toy\": {\"label\": \"second\"}, \"log\": {\"level\": \"loud\"}}\n");
    assert_int_equal(kill(c.pid, SIGHUP), 0);
    long at = log_wait(&c, "SIGHUP: configuration not reloaded: ", mark, 5000);
    char *text = slurp(c.err_path);
    char *line_end = strchr(text + at, '\n');
    assert_non_null(line_end);
    *line_end = '\0';
    char *line = text + at;
    while (line > text && line[-1] != '\n')
        line--;
    assert_non_null(strstr(line, "\"level\":\"error\""));
    assert_non_null(strstr(line, "log.level: \\\"loud\\\" is not one of debug|info|warn|error"));
    assert_non_null(strstr(line, conf_path));
    assert_non_null(strstr(line, "keeping the current one"));
    free(text);
    /* Broken JSON: the same. */
    write_file(conf_path, "{\"toy\": \n");
    kill(c.pid, SIGHUP);
    log_wait(&c, "SIGHUP: configuration not reloaded: ", at + 1, 5000);
    /* A role that refuses: the same. */
    write_file(conf_path, "{\"toy\": {\"refuse_reload\": true}}\n");
    kill(c.pid, SIGHUP);
    log_wait(&c, "SIGHUP: configuration not applied: toy.refuse_reload: the toy says no", mark,
             5000);
    sleep_ms(200);
    assert_true(alive(&c));
    assert_true(log_find(&c, "toy reload:", 0) < 0);
    assert_true(log_find(&c, "toy tick", 0) < 0);
    fetched_t f = get(port, "/readyz");
    assert_int_equal(f.status, 200);

    /* A good file: the role gets it (with the same --set), then log.level applies. */
    mark = log_size(&c);
    write_file(conf_path, "{\"toy\": {\"label\": \"second\"}, \"log\": {\"level\": \"debug\"}}\n");
    kill(c.pid, SIGHUP);
    long reloaded = log_wait(&c, "toy reload: label=second in_flight=2", mark, 5000);
    log_wait(&c, "SIGHUP: configuration reloaded; changed: log.level, toy.label", reloaded, 5000);
    log_wait(&c, "\"level\":\"debug\"", reloaded, 5000);
    log_wait(&c, "toy tick", reloaded, 5000);
    f = get(port, "/healthz");
    assert_int_equal(f.status, 200);

    /* A key only a restart applies: warned about, never an exit. */
    mark = log_size(&c);
    write_file(conf_path, "{\"toy\": {\"label\": \"third\"}, \"topics\": {\"namespace\": \"x.\"},"
                          " \"log\": {\"level\": \"info\"}}\n");
    kill(c.pid, SIGHUP);
    log_wait(&c, "SIGHUP: topics.namespace changes at the next restart", mark, 5000);
    log_wait(&c, "toy reload: label=third", mark, 5000);

    kill(c.pid, SIGTERM);
    assert_int_equal(wait_exit(&c, 10000), 0);
    unlink(conf_path);
    cleanup(&c);
}

static void test_healthz_when_stuck(void **state)
{
    (void)state;
    child_t c;
    const char *args[] = {"--set", "metrics.port=0", "--set", "toy.stall_ms=11500", NULL};
    spawn(&c, args);
    int port = start_port(&c);
    log_wait(&c, "toy stalls the loop", 0, 5000);
    fetched_t f = get(port, "/healthz");
    assert_int_equal(f.status, 200); /* not yet 10 s */
    long long deadline = now_ms() + 15000;
    do {
        sleep_ms(200);
        f = get(port, "/healthz");
    } while (f.status == 200 && now_ms() < deadline);
    assert_int_equal(f.status, 503);
    assert_non_null(strstr(f.body, "not alive: event loop stuck in one turn for 1"));
    log_wait(&c, "toy stall over", 0, 5000);
    sleep_ms(100);
    f = get(port, "/healthz");
    assert_int_equal(f.status, 200);
    kill(c.pid, SIGTERM);
    assert_int_equal(wait_exit(&c, 10000), 0);
    cleanup(&c);
}

static void test_fatal_stop(void **state)
{
    (void)state;
    child_t c;
    const char *args[] = {"--set", "metrics.port=0", "--set", "toy.fatal_after_ms=200", NULL};
    spawn(&c, args);
    assert_int_equal(wait_exit(&c, 10000), 1);
    log_wait(&c, "fatal: toy: asked to stop (toy.fatal_after_ms); stopping without a drain", 0, 0);
    log_wait(&c, "toy teardown drained=false", 0, 0);
    cleanup(&c);
}

static void test_startup_errors(void **state)
{
    (void)state;
    static const struct {
        const char *set;
        int code;
        const char *plain;
    } cases[] = {
        {"toy.setup_error=config", 2, PROGRAM ": toy.setup_error: asked to fail (config)\n"},
        {"toy.setup_error=retriable", 3, PROGRAM ": toy.setup_error: asked to fail (retriable)\n"},
        {"toy.in_flight=many", 2, PROGRAM ": toy.in_flight: expected an integer, got \"many\"\n"},
        {"no.such=1", 2, PROGRAM ": no.such: unknown configuration key for " PROGRAM "\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        child_t c;
        const char *args[] = {"--set", "metrics.port=0", "--set", cases[i].set, NULL};
        spawn(&c, args);
        assert_int_equal(wait_exit(&c, 10000), cases[i].code);
        char *err = slurp(c.err_path);
        /* the plain line (tests and people grep it) and the same text as a JSON error line */
        if (!strstr(err, cases[i].plain))
            fail_msg("no \"%s\" in:\n%s", cases[i].plain, err);
        char json[512];
        snprintf(json, sizeof(json),
                 "\"level\":\"error\",\"component\":\"%s\",\"msg\":\"%s: %.*s: ", PROGRAM, PROGRAM,
                 (int)strcspn(cases[i].set, "="), cases[i].set);
        if (!strstr(err, json))
            fail_msg("no JSON line \"%s\" in:\n%s", json, err);
        free(err);
        cleanup(&c);
    }
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_help),
        cmocka_unit_test(test_runtime_keys_match_the_docs),
        cmocka_unit_test(test_endpoints_and_drain),
        cmocka_unit_test(test_second_sigterm_and_deadline),
        cmocka_unit_test(test_sighup),
        cmocka_unit_test(test_healthz_when_stuck),
        cmocka_unit_test(test_fatal_stop),
        cmocka_unit_test(test_startup_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
