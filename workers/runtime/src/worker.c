/*
 * worker.c — the skeleton every role runs on (see nudgel/worker.h).
 *
 * Reads top to bottom like the process's life: the configuration tables
 * (common, the role's, the shared runtime table), the command line, the
 * offline check of the configuration (all of --check-config's problems stop
 * the start; --check-config itself ends there, after its probes with
 * =connect), the loop with the signalfd on it, the role's setup, the admin
 * server (a port that cannot listen stops the start), then
 * nothing but loop turns until a signal's drain or a fatal stop ends them,
 * then teardown. Signals never interrupt anything: they are read on the
 * loop like any fd, so a SIGHUP reload and a SIGTERM drain run between
 * stages, on the loop thread.
 */
#define _GNU_SOURCE
#include "nudgel/worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "nudgel/http_admin.h"
#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "nudgel/version.h"

#define EXIT_OK        0
#define EXIT_FATAL     1
#define EXIT_CONFIG    2
#define EXIT_RETRIABLE 3

#define MAX_ROLE_TABLES 16    /* tables one role may bring */
#define MAX_CONFS       256   /* configurations kept alive: start-up + reloads */
#define MAX_TOPICS      64    /* distinct nudgel_worker_topic() names */
#define CHANGED_MAX     512   /* bytes of the "changed keys" list a reload logs */
#define CHECK_KAFKA_MS  10000 /* --check-config=connect: broker metadata within this */

/* The keys every role has: names, defaults and text are contracts (docs/CONFIGURATION.md). */
enum { RT_NAMESPACE, RT_ADDRESS, RT_PORT, RT_KEYS };
static const nudgel_conf_entry_t runtime_template[RT_KEYS + 1] = {
    [RT_NAMESPACE] = {"topics.namespace", NUDGEL_CONF_STRING, "", 0, 0, NULL, 0,
                      "Prefix of every topic name (an isolated set of topics); empty in "
                      "production."},
    [RT_ADDRESS] = {"metrics.address", NUDGEL_CONF_STRING, "127.0.0.1", 0, 0, NULL, 0,
                    "Address of /metrics, /healthz and /readyz (0.0.0.0 in a pod)."},
    [RT_PORT] = {"metrics.port", NUDGEL_CONF_INT, NULL /* the role's */, 0, 65535, NULL, 0,
                 "Port of /metrics, /healthz and /readyz; 0 picks a free one."},
    [RT_KEYS] = {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

static const char skeleton_help[] =
    "SIGTERM or SIGINT stops intake and finishes the work in flight (for at most the drain\n"
    "timeout), SIGHUP reads the configuration again from the same file, environment and\n"
    "flags (a bad one is logged and the current one kept). /metrics, /healthz (503 when the\n"
    "event loop is stuck) and /readyz listen on metrics.address:metrics.port.\n"
    "--check-config checks the configuration (file, environment, flags, the files and\n"
    "secrets they name) without starting; --check-config=connect also probes Kafka,\n"
    "Postgres and the role's credentials. Every start runs the offline check first.\n"
    "Exit status: 0 stopped by a signal, 1 fatal stop (an outcome could not be made\n"
    "durable), 2 usage or configuration error, 3 Kafka or Postgres unreachable at start-up.";

typedef struct topic_name {
    char *base;
    char *name;
} topic_name_t;

struct nudgel_worker {
    const nudgel_role_t *role;
    void *ctx;
    bool set_up;
    /* Configuration: the tables outlive every conf (nudgel_conf_new borrows them). */
    nudgel_conf_entry_t runtime_table[RT_KEYS + 1];
    char port_default[16];
    const nudgel_conf_entry_t *tables[MAX_ROLE_TABLES + 3];
    nudgel_conf_cmdline_t cmdline;
    nudgel_conf_t *confs[MAX_CONFS]; /* all kept to the end: roles borrow strings */
    size_t conf_count;
    nudgel_conf_t *conf; /* the current one */
    /* Runtime. */
    nudgel_loop_t *loop;
    nudgel_metrics_t *metrics;
    nudgel_fleet_metrics_t *fleet_metrics;
    nudgel_readiness_t *readiness;
    nudgel_ready_cond_t *draining_cond;
    nudgel_http_admin_t *admin;
    nudgel_timer_t *deadline;
    int sigfd;
    topic_name_t topics[MAX_TOPICS];
    size_t topic_count;
    /* Stopping. */
    bool draining, drained;
    atomic_bool stop, fatal;
};

/* ---- start-up ------------------------------------------------------------ */

/* A start-up failure: the plain line existing tooling greps, and the JSON log line. */
static void startup_error(const char *program, const char *problem)
{
    fprintf(stderr, "%s: %s\n", program, problem);
    nudgel_log_error("%s: %s", program, problem);
}

static const nudgel_conf_entry_t *find_entry(const nudgel_worker_t *w, const char *key)
{
    for (size_t t = 0; w->tables[t]; t++)
        for (const nudgel_conf_entry_t *e = w->tables[t]; e->name; e++)
            if (strcmp(e->name, key) == 0)
                return e;
    return NULL;
}

/*
 * tables = common, the role's, the runtime table (metrics.port defaulting to
 * the role's port). A key defined twice, or a drain timeout key that is not
 * an integer key, is the role's bug: refused before anything runs.
 */
static nudgel_err_t build_tables(nudgel_worker_t *w, char *errstr, size_t errstr_size)
{
    const nudgel_role_t *role = w->role;
    size_t n = 0;
    w->tables[n++] = nudgel_conf_common;
    for (size_t i = 0; role->tables && role->tables[i]; i++) {
        if (i == MAX_ROLE_TABLES) {
            snprintf(errstr, errstr_size, "more than %d configuration tables", MAX_ROLE_TABLES);
            return NUDGEL_ERR_CONFIG;
        }
        w->tables[n++] = role->tables[i];
    }
    if (role->metrics_port_default < 0 || role->metrics_port_default > 65535) {
        snprintf(errstr, errstr_size, "metrics.port: default %d is not a port",
                 role->metrics_port_default);
        return NUDGEL_ERR_CONFIG;
    }
    memcpy(w->runtime_table, runtime_template, sizeof(runtime_template));
    snprintf(w->port_default, sizeof(w->port_default), "%d", role->metrics_port_default);
    w->runtime_table[RT_PORT].default_value = w->port_default;
    w->tables[n++] = w->runtime_table;
    w->tables[n] = NULL;

    for (size_t t = 0; w->tables[t]; t++)
        for (const nudgel_conf_entry_t *e = w->tables[t]; e->name; e++)
            if (find_entry(w, e->name) != e) {
                snprintf(errstr, errstr_size,
                         "%s: defined twice in the configuration tables (the runtime defines "
                         "topics.namespace and metrics.*)",
                         e->name);
                return NUDGEL_ERR_CONFIG;
            }
    const nudgel_conf_entry_t *drain =
        role->drain_timeout_key ? find_entry(w, role->drain_timeout_key) : NULL;
    if (!drain || drain->type != NUDGEL_CONF_INT) {
        snprintf(errstr, errstr_size, "%s: the drain timeout must be an integer key of the tables",
                 role->drain_timeout_key ? role->drain_timeout_key : "(no drain_timeout_key)");
        return NUDGEL_ERR_CONFIG;
    }
    return NUDGEL_OK;
}

/*
 * Blocks SIGTERM, SIGINT and SIGHUP in this (the main) thread before any
 * other thread exists, so they all inherit the mask and the signals wait
 * for the signalfd; SIGPIPE (a peer closing a socket) is ignored.
 * @returns the signalfd, or -1 with errno.
 */
static int signals_take(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/*
 * The offline check every start and --check-config run: the load's
 * problems, the role's check (which names the variables its files
 * reference), the environment, pg.dsn's syntax; with @p connect and nothing
 * wrong offline, the probes. @returns the check (NULL: out of memory).
 */
static nudgel_conf_check_t *check_config(const nudgel_worker_t *w, bool connect)
{
    const nudgel_role_t *role = w->role;
    nudgel_conf_check_t *check = nudgel_conf_check_new();
    if (!check)
        return NULL;
    nudgel_conf_check_loaded(check, w->conf);
    if (role->check)
        role->check(w->conf, check);
    nudgel_conf_check_environment(check, w->conf);
    nudgel_conf_check_dsn(check, w->conf, role->uses_postgres);
    if (!connect || nudgel_conf_check_count(check))
        return check;
    nudgel_conf_check_probe_kafka(check, w->conf, CHECK_KAFKA_MS);
    if (role->uses_postgres)
        nudgel_conf_check_probe_postgres(check, w->conf, role->program);
    if (role->probe)
        role->probe(w->conf, check);
    return check;
}

/* --check-config[=connect]: the verdict and its exit code. */
static int check_only(const nudgel_worker_t *w)
{
    bool connect = w->cmdline.check == NUDGEL_CONF_CHECK_CONNECT;
    nudgel_conf_check_t *check = check_config(w, connect);
    if (!check) {
        fprintf(stderr, "%s: out of memory\n", w->role->program);
        return EXIT_RETRIABLE;
    }
    int code = nudgel_conf_check_report(
        check, w->role->program,
        connect ? (w->role->uses_postgres ? "offline checks, Kafka, Postgres and the role's probes"
                                          : "offline checks, Kafka and the role's probes")
                : "offline checks",
        stdout, stderr);
    nudgel_conf_check_free(check);
    return code;
}

/* A start: the offline check first; any problem stops it, each one printed and logged. */
static bool check_at_start(const nudgel_worker_t *w)
{
    nudgel_conf_check_t *check = check_config(w, false);
    if (!check) {
        startup_error(w->role->program, "out of memory");
        return false;
    }
    size_t n = nudgel_conf_check_count(check);
    for (size_t i = 0; i < n && nudgel_conf_check_problem(check, i); i++)
        startup_error(w->role->program, nudgel_conf_check_problem(check, i));
    nudgel_conf_check_free(check);
    return n == 0;
}

/* ---- stopping ------------------------------------------------------------ */

static size_t in_flight(const nudgel_worker_t *w)
{
    return w->role->in_flight ? w->role->in_flight(w->ctx) : 0;
}

static void begin_drain(nudgel_worker_t *w, const char *signame)
{
    if (w->draining) {
        nudgel_log_warn("%s during the drain: still draining, %zu in flight", signame,
                        in_flight(w));
        return;
    }
    long long timeout_ms = nudgel_conf_get_int(w->conf, w->role->drain_timeout_key);
    w->draining = true;
    nudgel_ready_fail(w->draining_cond, "shutting down (%s)", signame);
    nudgel_log_info("%s: draining %zu in flight (at most %lld ms, %s)", signame, in_flight(w),
                    timeout_ms, w->role->drain_timeout_key);
    if (w->role->drain)
        w->role->drain(w->ctx);
    nudgel_timer_arm_in(w->deadline, timeout_ms * 1000);
    /* drain_check, the last hook of this turn, ends it if nothing is in flight. */
}

/* A turn hook, added after the role's: sees in_flight() as the turn left it. */
static void drain_check(void *opaque)
{
    nudgel_worker_t *w = opaque;
    if (!w->draining || atomic_load(&w->stop))
        return;
    if (in_flight(w) == 0) {
        w->drained = true;
        nudgel_log_info("drained: nothing in flight");
        atomic_store(&w->stop, true);
    }
}

static void on_deadline(void *opaque)
{
    nudgel_worker_t *w = opaque;
    if (atomic_load(&w->stop))
        return;
    nudgel_log_warn("drain timeout (%s) reached with %zu in flight: stopping",
                    w->role->drain_timeout_key, in_flight(w));
    atomic_store(&w->stop, true);
}

void nudgel_worker_fatal(nudgel_worker_t *w, const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    nudgel_log_error("fatal: %s; stopping without a drain", reason);
    atomic_store(&w->fatal, true);
    atomic_store(&w->stop, true);
    nudgel_loop_wake(w->loop);
}

/* ---- SIGHUP --------------------------------------------------------------- */

/* Appends to @p out the keys whose values differ between @p a and @p b. */
static void changed_keys(const nudgel_worker_t *w, const nudgel_conf_t *a, const nudgel_conf_t *b,
                         char *out, size_t out_size)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t t = 0; w->tables[t]; t++) {
        for (const nudgel_conf_entry_t *e = w->tables[t]; e->name; e++) {
            const char *x = nudgel_conf_get_str(a, e->name), *y = nudgel_conf_get_str(b, e->name);
            if ((!x && !y) || (x && y && strcmp(x, y) == 0))
                continue;
            int n = snprintf(out + len, out_size - len, "%s%s", len ? ", " : "", e->name);
            if (n < 0 || (size_t)n >= out_size - len) {
                snprintf(out + (out_size > 4 ? out_size - 4 : 0), 4, "...");
                return;
            }
            len += (size_t)n;
        }
    }
}

/*
 * Reads the configuration again into a new conf. Bad: logged (the problem
 * names the key), the current one stays. Good: the role applies it, then
 * log.level; it becomes current. Every conf loaded stays alive to the end.
 */
static void reload(nudgel_worker_t *w)
{
    const char *program = w->role->program;
    char errstr[1024], changed[CHANGED_MAX];
    if (w->conf_count == MAX_CONFS) {
        nudgel_log_error("SIGHUP: %d configurations loaded already; restart to load another",
                         MAX_CONFS);
        return;
    }
    nudgel_conf_t *next = nudgel_conf_new(program, w->tables);
    if (!next) {
        nudgel_log_error("SIGHUP: out of memory; keeping the current configuration");
        return;
    }
    if (nudgel_conf_load_cmdline(next, program, &w->cmdline, errstr, sizeof(errstr)) != NUDGEL_OK) {
        nudgel_log_error("SIGHUP: configuration not reloaded: %s; keeping the current one", errstr);
        nudgel_conf_destroy(next);
        return;
    }
    w->confs[w->conf_count++] = next;
    if (w->role->reload && w->role->reload(w->ctx, next, errstr, sizeof(errstr)) != NUDGEL_OK) {
        nudgel_log_error("SIGHUP: configuration not applied: %s; keeping the current one", errstr);
        return;
    }
    changed_keys(w, w->conf, next, changed, sizeof(changed));
    nudgel_log_info("SIGHUP: configuration reloaded; changed: %s", changed[0] ? changed : "none");
    for (int k = RT_NAMESPACE; k < RT_KEYS; k++) {
        const char *key = runtime_template[k].name;
        if (strcmp(nudgel_conf_get_str(w->conf, key), nudgel_conf_get_str(next, key)) != 0)
            nudgel_log_warn("SIGHUP: %s changes at the next restart", key);
    }
    nudgel_log_level_t level = NUDGEL_LOG_INFO;
    nudgel_log_level_parse(nudgel_conf_get_str(next, "log.level"), &level);
    nudgel_log_init(program, level);
    w->conf = next;
}

static void on_signal(void *opaque, int fd, unsigned events)
{
    nudgel_worker_t *w = opaque;
    struct signalfd_siginfo si;
    (void)events;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGTERM:
            begin_drain(w, "SIGTERM");
            break;
        case SIGINT:
            begin_drain(w, "SIGINT");
            break;
        case SIGHUP:
            reload(w);
            break;
        default:
            break;
        }
    }
}

/* /healthz: idle waiting is healthy; one turn dispatching for too long is not. */
static bool alive(void *opaque, char *why, size_t why_size)
{
    nudgel_worker_t *w = opaque;
    int64_t busy_us = nudgel_loop_busy_us(w->loop);
    if (busy_us <= NUDGEL_WORKER_STUCK_US)
        return true;
    snprintf(why, why_size, "event loop stuck in one turn for %.1f s", (double)busy_us / 1e6);
    return false;
}

/* ---- the process ---------------------------------------------------------- */

static void worker_free(nudgel_worker_t *w)
{
    nudgel_timer_free(w->deadline);
    if (w->sigfd >= 0) {
        if (w->loop)
            nudgel_loop_unwatch(w->loop, w->sigfd);
        close(w->sigfd);
    }
    nudgel_loop_free(w->loop);
    nudgel_fleet_metrics_free(w->fleet_metrics);
    nudgel_readiness_free(w->readiness);
    nudgel_metrics_destroy(w->metrics);
    for (size_t i = 0; i < w->topic_count; i++) {
        free(w->topics[i].base);
        free(w->topics[i].name);
    }
    for (size_t i = 0; i < w->conf_count; i++)
        nudgel_conf_destroy(w->confs[i]);
    nudgel_conf_cmdline_clear(&w->cmdline);
    free(w);
}

/* The role's name in metrics: the program's without "nudgel-". */
static const char *role_name(const char *program)
{
    return strncmp(program, "nudgel-", 7) == 0 ? program + 7 : program;
}

/* The runtime a role's setup finds: loop, signalfd on it, metrics, readiness. */
static nudgel_err_t runtime_new(nudgel_worker_t *w, char *errstr, size_t errstr_size)
{
    if (!(w->loop = nudgel_loop_new(errstr, errstr_size)))
        return NUDGEL_ERR_IO;
    w->metrics = nudgel_metrics_new();
    w->readiness = nudgel_readiness_new();
    w->deadline = nudgel_timer_new(w->loop, on_deadline, w);
    if (w->metrics && w->readiness)
        w->fleet_metrics = nudgel_fleet_metrics_new(w->metrics, role_name(w->role->program),
                                                    nudgel_version(), w->readiness);
    if (!w->metrics || !w->readiness || !w->deadline || !w->fleet_metrics ||
        !(w->draining_cond =
              nudgel_readiness_add(w->readiness, NUDGEL_WORKER_READY_DRAINING, NULL)) ||
        nudgel_loop_watch(w->loop, w->sigfd, NUDGEL_LOOP_READ, on_signal, w) != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    nudgel_ready_ok(w->draining_cond);
    return NUDGEL_OK;
}

int nudgel_worker_main(const nudgel_role_t *role, int argc, char **argv)
{
    const char *program = role->program;
    char errstr[1024], *help = NULL;
    int exit_code = EXIT_CONFIG;
    nudgel_worker_t *w = calloc(1, sizeof(*w));
    if (!w) {
        fprintf(stderr, "%s: out of memory\n", program);
        return EXIT_RETRIABLE;
    }
    w->role = role;
    w->sigfd = -1;
    nudgel_log_init(program, NUDGEL_LOG_INFO);
    if ((w->sigfd = signals_take()) < 0) {
        snprintf(errstr, sizeof(errstr), "signalfd: %s", strerror(errno));
        startup_error(program, errstr);
        exit_code = EXIT_RETRIABLE;
        goto out;
    }
    if (build_tables(w, errstr, sizeof(errstr)) != NUDGEL_OK) {
        startup_error(program, errstr);
        goto out;
    }
    if (!(w->conf = nudgel_conf_new(program, w->tables)) ||
        asprintf(&help, "%s%s%s", role->summary ? role->summary : "", role->summary ? "\n\n" : "",
                 skeleton_help) < 0) {
        help = NULL;
        startup_error(program, "out of memory");
        exit_code = EXIT_RETRIABLE;
        goto out;
    }
    w->confs[w->conf_count++] = w->conf;
    switch (nudgel_conf_startup_cmdline(w->conf, program, help, argc, argv, &w->cmdline)) {
    case NUDGEL_CONF_STARTUP_RUN:
        break;
    case NUDGEL_CONF_STARTUP_DONE:
        exit_code = EXIT_OK;
        goto out;
    case NUDGEL_CONF_STARTUP_FAIL:
        nudgel_log_error("%s: %s", program, w->cmdline.error); /* stderr has the plain line */
        goto out;
    case NUDGEL_CONF_STARTUP_CHECK:
        exit_code = check_only(w);
        goto out;
    }
    if (!check_at_start(w))
        goto out; /* EXIT_CONFIG */
    nudgel_err_t err = runtime_new(w, errstr, sizeof(errstr));
    if (err == NUDGEL_OK) {
        w->set_up = true;
        err = role->setup(w, &w->ctx, errstr, sizeof(errstr));
    }
    if (err == NUDGEL_OK && (err = nudgel_loop_add_hook(w->loop, drain_check, w)) != NUDGEL_OK)
        snprintf(errstr, sizeof(errstr), "out of memory");
    if (err != NUDGEL_OK) {
        /* Unreachable at start-up: name the key that says where (a retriable class). */
        const char *key = err == NUDGEL_ERR_PG_UNREACHABLE      ? "pg.dsn"
                          : err == NUDGEL_ERR_KAFKA_UNREACHABLE ? "kafka.bootstrap"
                                                                : NULL;
        char named[1200];
        size_t head = strcspn(errstr, ": ");
        bool names_key = errstr[head] == ':' && memchr(errstr, '.', head) != NULL;
        if (key && !names_key) {
            snprintf(named, sizeof(named), "%s: unreachable: %s", key, errstr);
            startup_error(program, named);
        } else {
            startup_error(program, errstr);
        }
        exit_code =
            nudgel_err_class(err) == NUDGEL_ERRCLASS_RETRIABLE ? EXIT_RETRIABLE : EXIT_CONFIG;
        goto out;
    }
    nudgel_http_admin_opts_t admin = {
        .address = nudgel_conf_get_str(w->conf, "metrics.address"),
        .port = (int)nudgel_conf_get_int(w->conf, "metrics.port"),
        .metrics = w->metrics,
        .ready = nudgel_readiness_check,
        .ready_opaque = w->readiness,
        .live = alive,
        .live_opaque = w,
    };
    if (!(w->admin = nudgel_http_admin_serve(&admin, errstr, sizeof(errstr)))) {
        /* Without /metrics and probes the pod is blind and never ready: not a state to run in. */
        char named[1200];
        snprintf(named, sizeof(named), "metrics.port: /metrics cannot listen on %s:%d: %s",
                 admin.address, admin.port, errstr);
        startup_error(program, named);
        exit_code = EXIT_CONFIG;
        goto out;
    }
    nudgel_log_info("%s %s running; metrics on port %d", program, nudgel_version(),
                    nudgel_http_admin_port(w->admin));

    while (!atomic_load(&w->stop))
        nudgel_loop_turn(w->loop, -1);

    exit_code = atomic_load(&w->fatal) ? EXIT_FATAL : EXIT_OK;
out:
    nudgel_http_admin_stop(w->admin);
    if (role->teardown && (w->ctx || w->set_up))
        role->teardown(w->ctx, w->drained && !atomic_load(&w->fatal));
    free(help);
    worker_free(w);
    return exit_code;
}

/* ---- accessors ------------------------------------------------------------ */

nudgel_loop_t *nudgel_worker_loop(nudgel_worker_t *w)
{
    return w->loop;
}

const nudgel_conf_t *nudgel_worker_conf(const nudgel_worker_t *w)
{
    return w->conf;
}

nudgel_metrics_t *nudgel_worker_metrics(nudgel_worker_t *w)
{
    return w->metrics;
}

nudgel_fleet_metrics_t *nudgel_worker_fleet_metrics(nudgel_worker_t *w)
{
    return w->fleet_metrics;
}

nudgel_readiness_t *nudgel_worker_readiness(nudgel_worker_t *w)
{
    return w->readiness;
}

const char *nudgel_worker_program(const nudgel_worker_t *w)
{
    return w->role->program;
}

bool nudgel_worker_draining(const nudgel_worker_t *w)
{
    return w->draining;
}

const char *nudgel_worker_topic(nudgel_worker_t *w, const char *base)
{
    for (size_t i = 0; i < w->topic_count; i++)
        if (strcmp(w->topics[i].base, base) == 0)
            return w->topics[i].name;
    if (w->topic_count == MAX_TOPICS)
        return NULL;
    /* The start-up configuration's namespace: topics do not move on SIGHUP. */
    const char *ns = nudgel_conf_get_str(w->confs[0], "topics.namespace");
    topic_name_t *t = &w->topics[w->topic_count];
    t->base = strdup(base);
    if (!t->base || asprintf(&t->name, "%s%s", ns ? ns : "", base) < 0) {
        free(t->base);
        *t = (topic_name_t){0};
        return NULL;
    }
    w->topic_count++;
    return t->name;
}
