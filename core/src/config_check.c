/*
 * config_check.c — the problems of --check-config (see nudgel/config_check.h):
 * the list, the environment rule applied to the process's environment, the
 * DSN's syntax, the Kafka and Postgres probes, and the verdict.
 */
#define _GNU_SOURCE
#include "nudgel/config_check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "nudgel/config_fleet.h"
#include "nudgel/kafka.h"
#include "nudgel/pg.h"

#define CHECK_MAX_PROBLEMS 256
#define CHECK_MAX_REFS     256
#define CHECK_LINE_MAX     1024

extern char **environ;

typedef struct problem {
    char *text;
    bool unreachable;
} problem_t;

struct nudgel_conf_check {
    problem_t problems[CHECK_MAX_PROBLEMS];
    size_t count, dropped;
    char *refs[CHECK_MAX_REFS];
    size_t ref_count;
};

nudgel_conf_check_t *nudgel_conf_check_new(void)
{
    return calloc(1, sizeof(nudgel_conf_check_t));
}

void nudgel_conf_check_free(nudgel_conf_check_t *check)
{
    if (!check)
        return;
    for (size_t i = 0; i < check->count; i++)
        free(check->problems[i].text);
    for (size_t i = 0; i < check->ref_count; i++)
        free(check->refs[i]);
    free(check);
}

static bool is_unreachable(nudgel_err_t err)
{
    return nudgel_err_class(err) == NUDGEL_ERRCLASS_RETRIABLE;
}

static void add_text(nudgel_conf_check_t *check, bool unreachable, const char *text)
{
    if (check->count == CHECK_MAX_PROBLEMS) {
        check->dropped++;
        return;
    }
    char *copy = strdup(text);
    if (!copy) {
        check->dropped++;
        return;
    }
    check->problems[check->count++] = (problem_t){copy, unreachable};
}

void nudgel_conf_check_add(nudgel_conf_check_t *check, nudgel_err_t err, const char *fmt, ...)
{
    char line[CHECK_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    add_text(check, is_unreachable(err), line);
}

void nudgel_conf_check_add_err(nudgel_conf_check_t *check, nudgel_err_t err, const char *why)
{
    if (why && *why)
        add_text(check, is_unreachable(err), why);
}

void nudgel_conf_check_env_ref(nudgel_conf_check_t *check, const char *name)
{
    if (!name || check->ref_count == CHECK_MAX_REFS)
        return;
    for (size_t i = 0; i < check->ref_count; i++)
        if (strcmp(check->refs[i], name) == 0)
            return;
    char *copy = strdup(name);
    if (copy)
        check->refs[check->ref_count++] = copy;
}

static void refs_walk(nudgel_conf_check_t *check, json_t *v, int depth)
{
    const char *key;
    json_t *item;
    size_t i;
    if (depth > 16)
        return;
    if (json_is_array(v)) {
        json_array_foreach(v, i, item) refs_walk(check, item, depth + 1);
        return;
    }
    if (!json_is_object(v))
        return;
    json_object_foreach(v, key, item)
    {
        size_t len = strlen(key);
        if (json_is_string(item) && len > 4 && strcmp(key + len - 4, "_env") == 0)
            nudgel_conf_check_env_ref(check, json_string_value(item));
        else
            refs_walk(check, item, depth + 1);
    }
}

void nudgel_conf_check_env_refs_json(nudgel_conf_check_t *check, const char *path)
{
    json_t *root = path ? json_load_file(path, 0, NULL) : NULL;
    refs_walk(check, root, 0);
    json_decref(root);
}

void nudgel_conf_check_loaded(nudgel_conf_check_t *check, const nudgel_conf_t *conf)
{
    for (size_t i = 0; i < nudgel_conf_problem_count(conf); i++)
        add_text(check, false, nudgel_conf_problem(conf, i));
}

static bool own_variable(const nudgel_conf_t *conf, const char *name)
{
    for (size_t i = 0; i < nudgel_conf_entry_count(conf); i++) {
        char env[256];
        nudgel_conf_env_name(nudgel_conf_entry_at(conf, i)->name, env, sizeof(env));
        if (strcmp(env, name) == 0)
            return true;
    }
    return false;
}

void nudgel_conf_check_environment(nudgel_conf_check_t *check, const nudgel_conf_t *conf)
{
    for (char **e = environ; e && *e; e++) {
        char name[256], near[256];
        size_t len = strcspn(*e, "=");
        if (strncmp(*e, "NUDGEL_", 7) != 0 || len >= sizeof(name))
            continue;
        memcpy(name, *e, len);
        name[len] = '\0';
        bool referenced = false;
        for (size_t i = 0; i < check->ref_count && !referenced; i++)
            referenced = strcmp(check->refs[i], name) == 0;
        if (referenced || own_variable(conf, name) ||
            nudgel_conf_fleet_env_kind(name) != NUDGEL_CONF_ENV_UNKNOWN)
            continue;
        bool has = nudgel_conf_fleet_suggest_env(name, near, sizeof(near));
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG,
                              "%s: unknown environment variable: no configuration key has it and "
                              "the configuration does not name it%s%s%s",
                              name, has ? " (did you mean " : "", has ? near : "", has ? "?)" : "");
    }
}

/* libpq's words with every quoted fragment longer than one character (it may be part of the
 * DSN, a password even) replaced by "...". */
static void unquote(const char *in, char *out, size_t out_size)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 8 < out_size; p++) {
        const char *close = *p == '"' ? strchr(p + 1, '"') : NULL;
        if (close && close - p > 2) {
            memcpy(out + o, "\"...\"", 5);
            o += 5;
            p = close;
            continue;
        }
        if (close) { /* "" or "=": kept */
            while (p < close && o + 8 < out_size)
                out[o++] = *p++;
        }
        out[o++] = *p == '\n' ? ' ' : *p;
    }
    while (o && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

void nudgel_conf_check_dsn(nudgel_conf_check_t *check, const nudgel_conf_t *conf, bool required)
{
    const char *dsn = nudgel_conf_get_str(conf, "pg.dsn");
    char *msg = NULL, clean[512];
    if (!dsn || !*dsn) {
        if (required)
            nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG,
                                  "pg.dsn: not set (NUDGEL_PG_DSN or the file's pg.dsn)");
        return;
    }
    PQconninfoOption *opts = PQconninfoParse(dsn, &msg);
    if (!opts) {
        unquote(msg ? msg : "out of memory", clean, sizeof(clean));
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG,
                              "pg.dsn: not a libpq connection string (URI or key=value): %s",
                              clean);
    }
    PQfreemem(msg);
    PQconninfoFree(opts);
}

void nudgel_conf_check_probe_postgres(nudgel_conf_check_t *check, const nudgel_conf_t *conf,
                                      const char *program)
{
    char errstr[512];
    const char *dsn = nudgel_conf_get_str(conf, "pg.dsn");
    PQconninfoOption *opts = dsn ? PQconninfoParse(dsn, NULL) : NULL;
    if (!opts)
        return; /* not set or not parsed: reported offline */
    PQconninfoFree(opts);
    PGconn *conn =
        nudgel_pg_connect(dsn, program, (int)nudgel_conf_get_int(conf, "pg.connect_timeout_s"),
                          errstr, sizeof(errstr));
    if (!conn) {
        nudgel_conf_check_add(check, NUDGEL_ERR_PG_UNREACHABLE, "pg.dsn: cannot connect: %s",
                              errstr);
        return;
    }
    nudgel_err_t err = nudgel_pg_exec(conn, "SELECT 1", errstr, sizeof(errstr));
    if (err != NUDGEL_OK)
        nudgel_conf_check_add(check, err, "pg.dsn: connected, but SELECT 1 failed: %s", errstr);
    PQfinish(conn);
}

/* What the Kafka probe's client reported: a refused authentication, kept for the verdict. */
typedef struct kafka_probe {
    bool auth_failed;
    char reason[384];
} kafka_probe_t;

static void kafka_probe_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    kafka_probe_t *probe = opaque;
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
        err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED) {
        probe->auth_failed = true;
        snprintf(probe->reason, sizeof(probe->reason), "%s", reason);
    }
}

void nudgel_conf_check_probe_kafka(nudgel_conf_check_t *check, const nudgel_conf_t *conf,
                                   int timeout_ms)
{
    char errstr[512];
    kafka_probe_t probe = {0};
    rd_kafka_conf_t *kconf = nudgel_kafka_conf_new(conf, errstr, sizeof(errstr));
    if (!kconf) {
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG, "kafka: %s", errstr);
        return;
    }
    rd_kafka_conf_set_log_cb(kconf, NULL); /* quiet: the verdict says it */
    rd_kafka_conf_set(kconf, "log_level", "0", NULL, 0);
    rd_kafka_conf_set_error_cb(kconf, kafka_probe_error);
    rd_kafka_conf_set_opaque(kconf, &probe);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(kconf);
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG, "kafka: %s", errstr);
        return;
    }
    if (nudgel_kafka_check_reachable(rk, timeout_ms, errstr, sizeof(errstr)) != NUDGEL_OK) {
        rd_kafka_poll(rk, 0); /* serves the error ops: a refused authentication says why */
        const char *file = nudgel_conf_get_str(conf, "kafka.properties_file");
        if (probe.auth_failed)
            nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG, "%s: Kafka refused the credentials: %s",
                                  file && *file ? "kafka.properties_file" : "kafka.sasl.*",
                                  probe.reason);
        else
            nudgel_conf_check_add(check, NUDGEL_ERR_KAFKA_UNREACHABLE, "kafka.bootstrap: %s",
                                  errstr);
    }
    rd_kafka_destroy(rk);
}

size_t nudgel_conf_check_count(const nudgel_conf_check_t *check)
{
    return check->count + check->dropped;
}

const char *nudgel_conf_check_problem(const nudgel_conf_check_t *check, size_t i)
{
    return i < check->count ? check->problems[i].text : NULL;
}

int nudgel_conf_check_report(const nudgel_conf_check_t *check, const char *program,
                             const char *what, FILE *out, FILE *err)
{
    bool config = check->dropped > 0;
    if (!check->count && !check->dropped) {
        fprintf(out, "%s: configuration OK (%s)\n", program, what);
        return 0;
    }
    for (size_t i = 0; i < check->count; i++) {
        fprintf(err, "%s: %s%s\n", program, check->problems[i].text,
                check->problems[i].unreachable ? " [unreachable]" : "");
        config |= !check->problems[i].unreachable;
    }
    if (check->dropped)
        fprintf(err, "%s: ... and %zu more\n", program, check->dropped);
    fprintf(err, "%s: %zu problem(s) in the configuration\n", program,
            check->count + check->dropped);
    return config ? 2 : 3;
}
