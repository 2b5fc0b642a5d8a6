/*
 * config.c — the config table engine (see nudgel/config.h).
 *
 * Owns a configuration's values: one per table entry, each with the source
 * that set it (default, file, environment, flag), checked against its
 * entry's type, range or enum; the librdkafka pass-through properties
 * ("kafka.<prop>" keys the table does not know, capped at CONF_MAX_KAFKA);
 * loading a JSON file (flat or nested keys; keys of other binaries of the
 * fleet skipped, a key or section no binary knows refused: see
 * nudgel/config_fleet.h; keys starting with '_' are comments) and the
 * NUDGEL_* environment; the problems a load met, all of them when collecting
 * (--check-config); and the typed getters. The two printers the table
 * drives are in config_print.c.
 *
 * The command line, start-up and reload (nudgel_conf_startup*,
 * nudgel_conf_cmdline_*, nudgel_conf_load_cmdline) are in config_cmdline.c,
 * on top of the public functions here.
 *
 * Ownership: a configuration owns copies of every value it holds; the
 * tables it was made from are borrowed. Threads: none of it is
 * thread-safe; a configuration is built and read on one thread.
 */
#define _GNU_SOURCE
#include "nudgel/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "config_internal.h"
#include "nudgel/config_fleet.h"
#include "nudgel/log.h"

#define CONF_MAX_VALUE    4096 /* hard cap of one value's text */
#define CONF_MAX_KAFKA    256  /* hard cap of pass-through properties */
#define CONF_MAX_DEPTH    8    /* nesting of a config file */
#define CONF_MAX_PROBLEMS 64   /* problems one collecting load keeps */

const nudgel_conf_entry_t nudgel_conf_common[] = {
    {"kafka.bootstrap", NUDGEL_CONF_STRING, "127.0.0.1:59092", 0, 0, NULL, 0,
     "Kafka bootstrap servers, host:port[,host:port...]."},
    {"kafka.client_id", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0,
     "Kafka client.id; defaults to the program name."},
    {"kafka.properties_file", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0,
     "File of librdkafka properties, one name=value per line ('#' and '!' lines are comments), "
     "for the Kafka client's secrets (sasl.username, sasl.password, ssl.key.password), e.g. a "
     "mounted Kubernetes Secret. Applied after every other source (its properties win) when "
     "the Kafka clients are made, at start: a running process keeps the credentials it started "
     "with. None of its values is ever printed."},
    {"pg.dsn", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, NUDGEL_CONF_SENSITIVE,
     "Postgres connection string (libpq URI or key=value)."},
    {"pg.connect_timeout_s", NUDGEL_CONF_INT, "10", 1, 300, NULL, 0,
     "Seconds to wait for a Postgres connection."},
    {"log.level", NUDGEL_CONF_ENUM, "info", 0, 0, "debug|info|warn|error", 0,
     "Lowest level written to the JSON log on stderr."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct conf_value {
    const nudgel_conf_entry_t *entry;
    char *value; /* owned; NULL when unset */
    nudgel_conf_source_t source;
} conf_value_t;

typedef struct kafka_prop {
    char *name;
    char *value;
    bool hidden; /* from kafka.properties_file: never printed, wiped when freed */
} kafka_prop_t;

struct nudgel_conf {
    char *program;
    const nudgel_conf_entry_t *const *tables;
    conf_value_t *values;
    size_t value_count;
    kafka_prop_t kafka[CONF_MAX_KAFKA];
    size_t kafka_count;
    bool collect;                      /* go on after a problem (--check-config) */
    char *problems[CONF_MAX_PROBLEMS]; /* owned: every problem a collecting load met */
    size_t problem_count;
};

static conf_value_t *find_value(const nudgel_conf_t *conf, const char *key)
{
    for (size_t i = 0; i < conf->value_count; i++)
        if (strcmp(conf->values[i].entry->name, key) == 0)
            return &conf->values[i];
    return NULL;
}

nudgel_conf_t *nudgel_conf_new(const char *program, const nudgel_conf_entry_t *const *tables)
{
    nudgel_conf_t *conf = calloc(1, sizeof(*conf));
    size_t count = 0;
    if (!conf)
        return NULL;
    for (size_t t = 0; tables[t]; t++)
        for (const nudgel_conf_entry_t *e = tables[t]; e->name; e++)
            count++;
    conf->program = strdup(program ? program : "nudgel");
    conf->values = calloc(count ? count : 1, sizeof(*conf->values));
    conf->tables = tables;
    if (!conf->program || !conf->values)
        goto fail;
    for (size_t t = 0; tables[t]; t++) {
        for (const nudgel_conf_entry_t *e = tables[t]; e->name; e++) {
            conf_value_t *v = &conf->values[conf->value_count++];
            v->entry = e;
            v->source = NUDGEL_CONF_FROM_DEFAULT;
            if (e->default_value && !(v->value = strdup(e->default_value)))
                goto fail;
        }
    }
    return conf;
fail:
    nudgel_conf_destroy(conf);
    return NULL;
}

void nudgel_conf_destroy(nudgel_conf_t *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; i < conf->value_count; i++)
        free(conf->values[i].value);
    for (size_t i = 0; i < conf->kafka_count; i++) {
        if (conf->kafka[i].hidden)
            explicit_bzero(conf->kafka[i].value, strlen(conf->kafka[i].value));
        free(conf->kafka[i].name);
        free(conf->kafka[i].value);
    }
    for (size_t i = 0; i < conf->problem_count; i++)
        free(conf->problems[i]);
    free(conf->values);
    free(conf->program);
    free(conf);
}

void nudgel_conf_collect(nudgel_conf_t *conf, bool collect)
{
    conf->collect = collect;
}

size_t nudgel_conf_problem_count(const nudgel_conf_t *conf)
{
    return conf->problem_count;
}

const char *nudgel_conf_problem(const nudgel_conf_t *conf, size_t i)
{
    return i < conf->problem_count ? conf->problems[i] : NULL;
}

size_t nudgel_conf_entry_count(const nudgel_conf_t *conf)
{
    return conf->value_count;
}

const nudgel_conf_entry_t *nudgel_conf_entry_at(const nudgel_conf_t *conf, size_t i)
{
    return i < conf->value_count ? conf->values[i].entry : NULL;
}

/*
 * A load met @p problem (@p err): when collecting, it is kept and the load
 * goes on (@returns true); otherwise the load stops on it (false). Out of
 * memory always stops.
 */
bool conf_keep_going(nudgel_conf_t *conf, nudgel_err_t err, const char *problem)
{
    if (!conf->collect || err == NUDGEL_ERR_NO_MEMORY)
        return false;
    if (conf->problem_count < CONF_MAX_PROBLEMS) {
        char *copy = strdup(problem);
        if (!copy)
            return false;
        conf->problems[conf->problem_count++] = copy;
    }
    return true;
}

static bool enum_contains(const char *values, const char *candidate)
{
    size_t n = strlen(candidate);
    for (const char *p = values; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, candidate, n) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

static int parse_bool(const char *text, bool *out)
{
    static const char *truths[] = {"true", "1", "yes", "on"};
    static const char *falsehoods[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, truths[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, falsehoods[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Checks @p value against @p e; writes "key: problem" on failure. */
static nudgel_err_t check_value(const nudgel_conf_entry_t *e, const char *value, char *errstr,
                                size_t errstr_size)
{
    switch (e->type) {
    case NUDGEL_CONF_STRING:
        return NUDGEL_OK;
    case NUDGEL_CONF_INT: {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end != '\0') {
            snprintf(errstr, errstr_size, "%s: expected an integer, got \"%.64s\"", e->name, value);
            return NUDGEL_ERR_CONFIG;
        }
        if (v < e->min || v > e->max) {
            snprintf(errstr, errstr_size, "%s: %lld is out of range [%lld, %lld]", e->name, v,
                     e->min, e->max);
            return NUDGEL_ERR_CONFIG;
        }
        return NUDGEL_OK;
    }
    case NUDGEL_CONF_BOOL: {
        bool b;
        if (parse_bool(value, &b) != 0) {
            snprintf(errstr, errstr_size, "%s: expected true or false, got \"%.64s\"", e->name,
                     value);
            return NUDGEL_ERR_CONFIG;
        }
        return NUDGEL_OK;
    }
    case NUDGEL_CONF_ENUM:
        if (!enum_contains(e->enum_values, value)) {
            snprintf(errstr, errstr_size, "%s: \"%.64s\" is not one of %s", e->name, value,
                     e->enum_values);
            return NUDGEL_ERR_CONFIG;
        }
        return NUDGEL_OK;
    }
    return NUDGEL_ERR_CONFIG;
}

nudgel_err_t conf_set_kafka_prop(nudgel_conf_t *conf, const char *prop, const char *value,
                                 bool hidden, char *errstr, size_t errstr_size)
{
    kafka_prop_t *kp = NULL;
    for (size_t i = 0; i < conf->kafka_count && !kp; i++)
        if (strcmp(conf->kafka[i].name, prop) == 0)
            kp = &conf->kafka[i];
    if (!kp && conf->kafka_count == CONF_MAX_KAFKA) {
        snprintf(errstr, errstr_size, "kafka.%s: more than %d librdkafka properties", prop,
                 CONF_MAX_KAFKA);
        return NUDGEL_ERR_CONFIG;
    }
    char *copy = strdup(value);
    if (!copy)
        return NUDGEL_ERR_NO_MEMORY;
    if (!kp) {
        kp = &conf->kafka[conf->kafka_count];
        if (!(kp->name = strdup(prop))) {
            free(copy);
            return NUDGEL_ERR_NO_MEMORY;
        }
        conf->kafka_count++;
    } else {
        if (kp->hidden)
            explicit_bzero(kp->value, strlen(kp->value));
        free(kp->value);
    }
    kp->value = copy;
    kp->hidden = hidden;
    return NUDGEL_OK;
}

bool conf_kafka_prop_hidden(const nudgel_conf_t *conf, const char *prop)
{
    for (size_t i = 0; i < conf->kafka_count; i++)
        if (strcmp(conf->kafka[i].name, prop) == 0)
            return conf->kafka[i].hidden;
    return false;
}

/* Whether the first @p len bytes of @p name are a section of the fleet or of this table. */
static bool section_known(const nudgel_conf_t *conf, const char *name, size_t len)
{
    if (nudgel_conf_fleet_has_section(name, len))
        return true;
    for (size_t i = 0; i < conf->value_count; i++) {
        const char *key = conf->values[i].entry->name;
        if (strncmp(key, name, len) == 0 && key[len] == '.')
            return true;
    }
    return false;
}

/* "key: unknown configuration key" or "section: unknown section", with the nearest fleet name. */
static void unknown_key(const nudgel_conf_t *conf, const char *key, char *errstr,
                        size_t errstr_size)
{
    char near[160];
    size_t section_len = strcspn(key, ".");
    if (!section_known(conf, key, section_len)) {
        char section[160];
        snprintf(section, sizeof(section), "%.*s", (int)section_len, key);
        bool has = nudgel_conf_fleet_suggest(section, true, near, sizeof(near));
        if (key[section_len])
            snprintf(errstr, errstr_size, "%s: unknown section \"%s\"%s%s%s", key, section,
                     has ? " (did you mean \"" : "", has ? near : "", has ? "\"?)" : "");
        else
            snprintf(errstr, errstr_size, "%s: unknown section%s%s%s", key,
                     has ? " (did you mean \"" : "", has ? near : "", has ? "\"?)" : "");
        return;
    }
    bool has = nudgel_conf_fleet_suggest(key, false, near, sizeof(near));
    snprintf(errstr, errstr_size, "%s: unknown configuration key%s%s%s", key,
             has ? " (did you mean " : "", has ? near : "", has ? "?)" : "");
}

nudgel_err_t nudgel_conf_set(nudgel_conf_t *conf, const char *key, const char *value,
                             nudgel_conf_source_t source, char *errstr, size_t errstr_size)
{
    if (!conf || !key || !value)
        return NUDGEL_ERR_INVALID_ARG;
    if (strlen(value) > CONF_MAX_VALUE) {
        snprintf(errstr, errstr_size, "%s: value longer than %d bytes", key, CONF_MAX_VALUE);
        return NUDGEL_ERR_CONFIG;
    }
    conf_value_t *v = find_value(conf, key);
    if (!v) {
        size_t plen = strlen(CONF_KAFKA_PREFIX);
        if (strncmp(key, CONF_KAFKA_PREFIX, plen) == 0 && key[plen])
            return conf_set_kafka_prop(conf, key + plen, value, false, errstr, errstr_size);
        char near[160];
        if (nudgel_conf_fleet_has_key(key))
            snprintf(errstr, errstr_size, "%s: a key of another binary of the fleet, not of %s",
                     key, conf->program);
        else if (nudgel_conf_fleet_suggest(key, false, near, sizeof(near)))
            snprintf(errstr, errstr_size, "%s: unknown configuration key for %s (did you mean %s?)",
                     key, conf->program, near);
        else
            snprintf(errstr, errstr_size, "%s: unknown configuration key for %s", key,
                     conf->program);
        return NUDGEL_ERR_CONFIG;
    }
    nudgel_err_t err = check_value(v->entry, value, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    char *copy = strdup(value);
    if (!copy)
        return NUDGEL_ERR_NO_MEMORY;
    free(v->value);
    v->value = copy;
    v->source = source;
    return NUDGEL_OK;
}

nudgel_err_t nudgel_conf_set_assignments(nudgel_conf_t *conf, char *const *assignments,
                                         size_t count, char *errstr, size_t errstr_size)
{
    nudgel_err_t first = NUDGEL_OK;
    for (size_t i = 0; i < count; i++) {
        const char *eq = strchr(assignments[i], '=');
        char key[256];
        nudgel_err_t err;
        if (!eq || eq == assignments[i] || (size_t)(eq - assignments[i]) >= sizeof(key)) {
            snprintf(errstr, errstr_size, "expected KEY=VALUE, got \"%.64s\"", assignments[i]);
            err = NUDGEL_ERR_CONFIG;
        } else {
            memcpy(key, assignments[i], (size_t)(eq - assignments[i]));
            key[eq - assignments[i]] = '\0';
            err = nudgel_conf_set(conf, key, eq + 1, NUDGEL_CONF_FROM_FLAG, errstr, errstr_size);
        }
        if (err != NUDGEL_OK) {
            if (!conf_keep_going(conf, err, errstr))
                return err;
            first = first != NUDGEL_OK ? first : err;
        }
    }
    return first;
}

/* Text form of a JSON scalar (arrays of scalars join with ','); -1 if not representable. */
static int scalar_text(json_t *value, char *out, size_t out_size)
{
    switch (json_typeof(value)) {
    case JSON_STRING:
        snprintf(out, out_size, "%s", json_string_value(value));
        return json_string_length(value) < out_size ? 0 : -1;
    case JSON_INTEGER:
        snprintf(out, out_size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        return 0;
    case JSON_REAL:
        snprintf(out, out_size, "%.17g", json_real_value(value));
        return 0;
    case JSON_TRUE:
        snprintf(out, out_size, "true");
        return 0;
    case JSON_FALSE:
        snprintf(out, out_size, "false");
        return 0;
    case JSON_ARRAY: {
        size_t len = 0, i;
        json_t *item;
        out[0] = '\0';
        json_array_foreach(value, i, item)
        {
            char part[CONF_MAX_VALUE + 1];
            if (json_is_array(item) || json_is_object(item) ||
                scalar_text(item, part, sizeof(part)) != 0)
                return -1;
            int n = snprintf(out + len, out_size - len, "%s%s", i ? "," : "", part);
            if (n < 0 || (size_t)n >= out_size - len)
                return -1;
            len += (size_t)n;
        }
        return 0;
    }
    case JSON_NULL:
    case JSON_OBJECT:
        return -1;
    }
    return -1;
}

/*
 * A key of the file the table does not know: a librdkafka property
 * ("kafka.<prop>", set), another binary's key (skipped: @returns OK with
 * @p *skip), or a mistake (NUDGEL_ERR_CONFIG naming the key or its section).
 */
static nudgel_err_t foreign_key(const nudgel_conf_t *conf, const char *key, bool *skip,
                                char *errstr, size_t errstr_size)
{
    *skip = false;
    if (find_value(conf, key) || strncmp(key, CONF_KAFKA_PREFIX, strlen(CONF_KAFKA_PREFIX)) == 0)
        return NUDGEL_OK;
    if (nudgel_conf_fleet_has_key(key)) {
        nudgel_log_debug("config: key %s belongs to another binary of the fleet; ignored", key);
        *skip = true;
        return NUDGEL_OK;
    }
    unknown_key(conf, key, errstr, errstr_size);
    return NUDGEL_ERR_CONFIG;
}

/* @p problem met in @p path: stop (@returns the error) or, collecting, keep it and go on. */
static nudgel_err_t file_problem(nudgel_conf_t *conf, nudgel_err_t err, const char *path,
                                 const char *problem, nudgel_err_t *first, char *errstr,
                                 size_t errstr_size)
{
    char line[768];
    snprintf(line, sizeof(line), "%s: %s", path, problem);
    if (*first == NUDGEL_OK) {
        *first = err;
        snprintf(errstr, errstr_size, "%s", line);
    }
    return conf_keep_going(conf, err, line) ? NUDGEL_OK : err;
}

static nudgel_err_t apply_object(nudgel_conf_t *conf, json_t *obj, const char *prefix, int depth,
                                 const char *path, nudgel_err_t *first, char *errstr,
                                 size_t errstr_size)
{
    const char *name;
    json_t *value;
    char inner[512];
    if (depth > CONF_MAX_DEPTH) {
        snprintf(inner, sizeof(inner), "%s: nested deeper than %d levels", prefix, CONF_MAX_DEPTH);
        return file_problem(conf, NUDGEL_ERR_CONFIG, path, inner, first, errstr, errstr_size);
    }
    json_object_foreach(obj, name, value)
    {
        char key[256];
        nudgel_err_t err = NUDGEL_OK;
        bool skip = false;
        if (name[0] == '_')
            continue; /* a comment */
        int n = snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", name);
        if (n < 0 || (size_t)n >= sizeof(key)) {
            snprintf(inner, sizeof(inner), "key \"%.64s...\" is too long", key);
            err = NUDGEL_ERR_CONFIG;
        } else if (json_is_object(value)) {
            /* A whole section unknown to the fleet is one problem, not one per key. */
            if (!*prefix && !section_known(conf, key, strlen(key)) && strcmp(key, "kafka") != 0 &&
                !find_value(conf, key)) {
                unknown_key(conf, key, inner, sizeof(inner));
                err = NUDGEL_ERR_CONFIG;
            } else {
                err = apply_object(conf, value, key, depth + 1, path, first, errstr, errstr_size);
                if (err != NUDGEL_OK)
                    return err;
                continue;
            }
        } else if (json_is_null(value)) {
            continue; /* null keeps the default */
        } else if ((err = foreign_key(conf, key, &skip, inner, sizeof(inner))) != NUDGEL_OK ||
                   skip) {
            /* a mistake, or another binary's key */
        } else {
            char text[CONF_MAX_VALUE + 1];
            if (scalar_text(value, text, sizeof(text)) != 0) {
                snprintf(inner, sizeof(inner), "%s: expected a string, number or boolean", key);
                err = NUDGEL_ERR_CONFIG;
            } else {
                err = nudgel_conf_set(conf, key, text, NUDGEL_CONF_FROM_FILE, inner, sizeof(inner));
            }
        }
        if (err != NUDGEL_OK &&
            (err = file_problem(conf, err, path, inner, first, errstr, errstr_size)) != NUDGEL_OK)
            return err;
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_conf_load_file(nudgel_conf_t *conf, const char *path, char *errstr,
                                   size_t errstr_size)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    nudgel_err_t err;
    if (!root) {
        snprintf(errstr, errstr_size, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        conf_keep_going(conf, NUDGEL_ERR_CONFIG, errstr);
        return NUDGEL_ERR_CONFIG;
    }
    if (!json_is_object(root)) {
        snprintf(errstr, errstr_size, "%s: the configuration must be a JSON object", path);
        conf_keep_going(conf, NUDGEL_ERR_CONFIG, errstr);
        err = NUDGEL_ERR_CONFIG;
        goto out;
    }
    nudgel_err_t first = NUDGEL_OK;
    err = apply_object(conf, root, "", 0, path, &first, errstr, errstr_size);
    if (err == NUDGEL_OK)
        err = first; /* collecting: the first problem kept, the rest in the list */
out:
    json_decref(root);
    return err;
}

void nudgel_conf_env_name(const char *key, char *out, size_t out_size)
{
    size_t o = (size_t)snprintf(out, out_size, "NUDGEL_");
    for (const char *p = key; *p && o + 1 < out_size; p++)
        out[o++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    out[o < out_size ? o : out_size - 1] = '\0';
}

nudgel_err_t nudgel_conf_load_env(nudgel_conf_t *conf, char *errstr, size_t errstr_size)
{
    nudgel_err_t first = NUDGEL_OK;
    for (size_t i = 0; i < conf->value_count; i++) {
        char env[160];
        nudgel_conf_env_name(conf->values[i].entry->name, env, sizeof(env));
        const char *value = getenv(env);
        if (!value || !*value)
            continue;
        char inner[512], line[700];
        nudgel_err_t err = nudgel_conf_set(conf, conf->values[i].entry->name, value,
                                           NUDGEL_CONF_FROM_ENV, inner, sizeof(inner));
        if (err != NUDGEL_OK) {
            snprintf(line, sizeof(line), "environment %s: %s", env, inner);
            if (first == NUDGEL_OK)
                snprintf(errstr, errstr_size, "%s", line);
            first = first != NUDGEL_OK ? first : err;
            if (!conf_keep_going(conf, err, line))
                return err;
        }
    }
    return first;
}

nudgel_err_t nudgel_conf_load(nudgel_conf_t *conf, const char *file_path, char *errstr,
                              size_t errstr_size)
{
    const char *path = file_path ? file_path : getenv("NUDGEL_CONFIG");
    nudgel_err_t err = NUDGEL_OK;
    if (path && *path) {
        err = nudgel_conf_load_file(conf, path, errstr, errstr_size);
        if (err != NUDGEL_OK && !conf->collect)
            return err;
    }
    char env_err[1024];
    nudgel_err_t env = nudgel_conf_load_env(conf, env_err, sizeof(env_err));
    if (err == NUDGEL_OK && env != NUDGEL_OK)
        snprintf(errstr, errstr_size, "%s", env_err);
    return err != NUDGEL_OK ? err : env;
}

const char *nudgel_conf_get_str(const nudgel_conf_t *conf, const char *key)
{
    conf_value_t *v = find_value(conf, key);
    return v ? v->value : NULL;
}

long long nudgel_conf_get_int(const nudgel_conf_t *conf, const char *key)
{
    const char *s = nudgel_conf_get_str(conf, key);
    return s ? strtoll(s, NULL, 10) : 0;
}

bool nudgel_conf_get_bool(const nudgel_conf_t *conf, const char *key)
{
    const char *s = nudgel_conf_get_str(conf, key);
    bool b = false;
    if (s)
        parse_bool(s, &b);
    return b;
}

nudgel_conf_source_t nudgel_conf_source(const nudgel_conf_t *conf, const char *key)
{
    conf_value_t *v = find_value(conf, key);
    return v ? v->source : NUDGEL_CONF_FROM_DEFAULT;
}

int nudgel_conf_kafka_foreach(const nudgel_conf_t *conf,
                              int (*fn)(const char *prop, const char *value, void *opaque),
                              void *opaque)
{
    for (size_t i = 0; i < conf->kafka_count; i++) {
        int rc = fn(conf->kafka[i].name, conf->kafka[i].value, opaque);
        if (rc)
            return rc;
    }
    return 0;
}

const char *conf_program(const nudgel_conf_t *conf)
{
    return conf->program;
}
