/*
 * nudgel/config.h — one config table per binary.
 *
 * The table is the single source of a key's type, default, range, flags and
 * description. File parsing (NUDGEL_CONFIG, a JSON file), NUDGEL_* environment
 * overrides, command-line --set overrides, --print-config (secrets redacted)
 * and docs/CONFIGURATION.md are all driven from it. Precedence: default <
 * file < environment < flags.
 *
 * Keys are dotted ("kafka.bootstrap"); a file may write them flat
 * ({"kafka.bootstrap": ...}) or nested ({"kafka": {"bootstrap": ...}}).
 * Keys under "kafka." that the table does not know are librdkafka properties
 * passed through verbatim ({"kafka": {"linger.ms": 5}} → linger.ms=5).
 */
#ifndef NUDGEL_CONFIG_H
#define NUDGEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "nudgel/error.h"

typedef enum nudgel_conf_type {
    NUDGEL_CONF_STRING,
    NUDGEL_CONF_INT,
    NUDGEL_CONF_BOOL,
    NUDGEL_CONF_ENUM,
} nudgel_conf_type_t;

#define NUDGEL_CONF_SENSITIVE 0x1u /* never printed or logged */

typedef struct nudgel_conf_entry {
    const char *name; /* dotted key; NULL ends the table */
    nudgel_conf_type_t type;
    const char *default_value; /* text form; NULL for "unset" */
    long long min, max;        /* inclusive range for NUDGEL_CONF_INT */
    const char *enum_values;   /* "a|b|c" for NUDGEL_CONF_ENUM */
    unsigned flags;
    const char *description;
} nudgel_conf_entry_t;

typedef enum nudgel_conf_source {
    NUDGEL_CONF_FROM_DEFAULT,
    NUDGEL_CONF_FROM_FILE,
    NUDGEL_CONF_FROM_ENV,
    NUDGEL_CONF_FROM_FLAG,
} nudgel_conf_source_t;

typedef struct nudgel_conf nudgel_conf_t;

/** Entries every binary shares: kafka.bootstrap, kafka.client_id, pg.dsn, log.level, ... */
extern const nudgel_conf_entry_t nudgel_conf_common[];

/**
 * @brief A configuration holding the defaults of @p tables (each ended by a
 * NULL name; later tables may not repeat a key) for program @p program.
 * @p tables is a NULL-terminated array; tables are borrowed and must outlive
 * the configuration. @returns a new configuration, NULL on allocation failure.
 */
nudgel_conf_t *nudgel_conf_new(const char *program, const nudgel_conf_entry_t *const *tables);

void nudgel_conf_destroy(nudgel_conf_t *conf);

/**
 * @brief Sets @p key from text, checking type and range. Keys "kafka.<prop>"
 * not in the table are stored as librdkafka pass-through properties.
 * @returns NUDGEL_OK or NUDGEL_ERR_CONFIG with "key: problem" in @p errstr.
 */
nudgel_err_t nudgel_conf_set(nudgel_conf_t *conf, const char *key, const char *value,
                             nudgel_conf_source_t source, char *errstr, size_t errstr_size);

/**
 * @brief Applies "key=value" assignments in order (command-line flags, which
 * win over file and environment). @returns NUDGEL_OK or NUDGEL_ERR_CONFIG
 * naming the assignment at fault.
 */
nudgel_err_t nudgel_conf_set_assignments(nudgel_conf_t *conf, char *const *assignments,
                                         size_t count, char *errstr, size_t errstr_size);

typedef enum nudgel_conf_startup {
    NUDGEL_CONF_STARTUP_RUN,   /* configuration loaded: go on */
    NUDGEL_CONF_STARTUP_DONE,  /* --print-config or --print-config-doc served: exit 0 */
    NUDGEL_CONF_STARTUP_FAIL,  /* a bad file, variable or flag, printed: exit 2 */
    NUDGEL_CONF_STARTUP_CHECK, /* --check-config: loaded collecting every problem (printed
                                  nowhere yet: see nudgel/config_check.h); logging off */
} nudgel_conf_startup_t;

/** What --check-config asked for. */
typedef enum nudgel_conf_check_mode {
    NUDGEL_CONF_CHECK_NONE = 0,
    NUDGEL_CONF_CHECK_OFFLINE, /* --check-config: everything that can be checked offline */
    NUDGEL_CONF_CHECK_CONNECT, /* --check-config=connect: and probes of Kafka, Postgres, ... */
} nudgel_conf_check_mode_t;

/**
 * @brief Collecting mode (--check-config): a load (file, environment,
 * assignments) that meets a problem keeps it and goes on, so that every
 * problem is known at once; the load still returns the first one. Off by
 * default: a load stops at its first problem.
 */
void nudgel_conf_collect(nudgel_conf_t *conf, bool collect);

/** @brief Problems a collecting load kept, "[file: ]key: problem" each (borrowed). */
size_t nudgel_conf_problem_count(const nudgel_conf_t *conf);
const char *nudgel_conf_problem(const nudgel_conf_t *conf, size_t i);

/** @brief The entries of the configuration's tables, in order (borrowed); NULL past the end. */
size_t nudgel_conf_entry_count(const nudgel_conf_t *conf);
const nudgel_conf_entry_t *nudgel_conf_entry_at(const nudgel_conf_t *conf, size_t i);

/**
 * @brief The start of every binary: serve --print-config-doc, load the file
 * (@p config_path, else NUDGEL_CONFIG) and the environment, apply the
 * "key=value" flag @p assignments, default kafka.client_id to @p program,
 * start JSON logging at log.level, serve --print-config. Problems are printed
 * on stderr as "program: key: problem".
 */
nudgel_conf_startup_t nudgel_conf_startup(nudgel_conf_t *conf, const char *program,
                                          const char *config_path, char *const *assignments,
                                          size_t count, bool print_config, bool print_doc);

/**
 * @brief The start of --check-config: the same sources as
 * nudgel_conf_startup(), loaded collecting every problem (none printed),
 * kafka.client_id defaulted, logging off. @returns NUDGEL_CONF_STARTUP_CHECK.
 */
nudgel_conf_startup_t nudgel_conf_startup_check(nudgel_conf_t *conf, const char *program,
                                                const char *config_path, char *const *assignments,
                                                size_t count);

/**
 * @brief The start of a long-running worker, from its command line: the
 * flags every worker takes (-c/--config FILE, -s/--set KEY=VALUE, -X PROP=VALUE
 * for kafka.PROP, --print-config, --print-config-doc, --version, -h/--help),
 * then nudgel_conf_startup(). --help prints the flags and the configuration
 * reference on stdout and is DONE; --version prints "program version" and is
 * DONE; an unknown flag prints the usage on stderr and is FAIL. Flags are read
 * with getopt_long (optind moves). Same as nudgel_conf_startup_cmdline()
 * without a summary and without keeping the command line.
 */
nudgel_conf_startup_t nudgel_conf_startup_args(nudgel_conf_t *conf, const char *program, int argc,
                                               char **argv);

/** What a command line said about the configuration, kept to read it again (SIGHUP). */
typedef struct nudgel_conf_cmdline {
    const char *config_path; /* -c FILE, borrowed from argv; NULL: NUDGEL_CONFIG */
    char **assignments;      /* "key=value" of --set and -X (kafka.PROP=...), in order; owned */
    size_t count;
    nudgel_conf_check_mode_t check; /* --check-config[=connect] */
    char error[1024];               /* after a FAIL: the problem as printed, without "program: " */
} nudgel_conf_cmdline_t;

/**
 * @brief nudgel_conf_startup_args() with @p summary (borrowed; may be NULL)
 * printed by --help between the flags and the configuration reference and,
 * when @p keep is not NULL, the command line (and after a FAIL its problem)
 * stored in @p keep whatever the result: the caller owns it and frees it with
 * nudgel_conf_cmdline_clear().
 */
nudgel_conf_startup_t nudgel_conf_startup_cmdline(nudgel_conf_t *conf, const char *program,
                                                  const char *summary, int argc, char **argv,
                                                  nudgel_conf_cmdline_t *keep);

/**
 * @brief Loads @p conf (fresh, from nudgel_conf_new()) from the same sources
 * as at start-up: the file of @p cmdline (or NUDGEL_CONFIG), the environment,
 * the command line's assignments, the librdkafka properties of
 * kafka.properties_file, then kafka.client_id defaulted to @p program. Prints and logs nothing.
 * @returns NUDGEL_OK, or NUDGEL_ERR_CONFIG with "[file: ]key: problem" in @p errstr.
 */
nudgel_err_t nudgel_conf_load_cmdline(nudgel_conf_t *conf, const char *program,
                                      const nudgel_conf_cmdline_t *cmdline, char *errstr,
                                      size_t errstr_size);

/** @brief Frees what @p cmdline owns and zeroes it. NULL is a no-op. */
void nudgel_conf_cmdline_clear(nudgel_conf_cmdline_t *cmdline);

/** @brief Applies a JSON file. Errors name the file, the key and the problem. */
nudgel_err_t nudgel_conf_load_file(nudgel_conf_t *conf, const char *path, char *errstr,
                                   size_t errstr_size);

/** @brief Applies NUDGEL_<KEY> environment variables ('.' → '_', upper case). */
nudgel_err_t nudgel_conf_load_env(nudgel_conf_t *conf, char *errstr, size_t errstr_size);

/**
 * @brief The usual start-up sequence: the file named by @p file_path (or by
 * NUDGEL_CONFIG when NULL; none is fine), then the environment.
 */
nudgel_err_t nudgel_conf_load(nudgel_conf_t *conf, const char *file_path, char *errstr,
                              size_t errstr_size);

/** @brief The value of @p key (borrowed), or NULL if unset. @p key must be in the table. */
const char *nudgel_conf_get_str(const nudgel_conf_t *conf, const char *key);
long long nudgel_conf_get_int(const nudgel_conf_t *conf, const char *key);
bool nudgel_conf_get_bool(const nudgel_conf_t *conf, const char *key);

/** @brief Where the current value of @p key came from. */
nudgel_conf_source_t nudgel_conf_source(const nudgel_conf_t *conf, const char *key);

/** @brief Calls @p fn for each librdkafka pass-through property, in the order set. */
int nudgel_conf_kafka_foreach(const nudgel_conf_t *conf,
                              int (*fn)(const char *prop, const char *value, void *opaque),
                              void *opaque);

/** @brief Writes "key = value  # source" lines; sensitive values print as "[redacted]". */
void nudgel_conf_print(const nudgel_conf_t *conf, FILE *out);

/** @brief Writes the Markdown reference of the configuration's tables. */
void nudgel_conf_print_doc(const nudgel_conf_t *conf, FILE *out);

/** @brief The environment variable of a key, e.g. NUDGEL_KAFKA_BOOTSTRAP. */
void nudgel_conf_env_name(const char *key, char *out, size_t out_size);

#endif
