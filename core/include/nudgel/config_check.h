/*
 * nudgel/config_check.h — --check-config: every problem of a configuration,
 * each one line naming its key and why, then one verdict.
 *
 * A check collects problems from every source a start would read: the
 * configuration's own load (type, range, unknown key, section or file,
 * collected by nudgel_conf_collect()), the NUDGEL_* environment (see the
 * rule in nudgel/config_fleet.h), the files and secrets a role names (its
 * check adds them), the DSN's syntax, and with --check-config=connect the
 * probes (Kafka, Postgres, the role's credentials). Nothing is started.
 *
 * A problem's text is "key: why". It never holds a secret's value: callers
 * name the key, the variable or the file, never what they hold (pg.dsn's
 * problems are libpq's words with every quoted fragment removed).
 *
 * Exit codes (the workers' convention): 0 no problem, 2 a configuration
 * problem, 3 only unreachable services (retriable: Kafka, Postgres, a
 * gateway down).
 *
 * Ownership: a check owns copies of its problems. Threads: one thread.
 */
#ifndef NUDGEL_CONFIG_CHECK_H
#define NUDGEL_CONFIG_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "nudgel/config.h"
#include "nudgel/error.h"

typedef struct nudgel_conf_check nudgel_conf_check_t;

/** @brief A new, empty check; NULL on allocation failure. */
nudgel_conf_check_t *nudgel_conf_check_new(void);

/** @brief Frees @p check; NULL is a no-op. */
void nudgel_conf_check_free(nudgel_conf_check_t *check);

/**
 * @brief Adds one problem, "key: why" from @p fmt. @p err says its class:
 * a retriable one (NUDGEL_ERR_KAFKA_UNREACHABLE, NUDGEL_ERR_PG_UNREACHABLE,
 * NUDGEL_ERR_TIMED_OUT, NUDGEL_ERR_IO ...) is "unreachable", any other a
 * configuration problem.
 */
void nudgel_conf_check_add(nudgel_conf_check_t *check, nudgel_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** @brief Adds @p why (already "key: why", a role's errstr after a failure) unless it is empty. */
void nudgel_conf_check_add_err(nudgel_conf_check_t *check, nudgel_err_t err, const char *why);

/** @brief A NUDGEL_* variable the configuration names (a secret's *_env): not unknown. */
void nudgel_conf_check_env_ref(nudgel_conf_check_t *check, const char *name);

/**
 * @brief Every "*_env" string of the JSON file @p path (api_key_env,
 * token_env, basic_password_env of a gateways file), as env refs. A file
 * that does not parse adds nothing (its loader reports it).
 */
void nudgel_conf_check_env_refs_json(nudgel_conf_check_t *check, const char *path);

/** @brief The problems @p conf's collecting load kept. */
void nudgel_conf_check_loaded(nudgel_conf_check_t *check, const nudgel_conf_t *conf);

/**
 * @brief Every NUDGEL_* variable of the environment that is neither a key
 * of @p conf, a fleet key's, reserved, nor an env ref of @p check: one
 * problem each, naming it (and the nearest fleet variable).
 */
void nudgel_conf_check_environment(nudgel_conf_check_t *check, const nudgel_conf_t *conf);

/**
 * @brief pg.dsn's syntax (PQconninfoParse), and with @p required that it is
 * set. The problem names pg.dsn and never contains the DSN.
 */
void nudgel_conf_check_dsn(nudgel_conf_check_t *check, const nudgel_conf_t *conf, bool required);

/** @brief Connect to pg.dsn and run SELECT 1 (problems name pg.dsn). */
void nudgel_conf_check_probe_postgres(nudgel_conf_check_t *check, const nudgel_conf_t *conf,
                                      const char *program);

/** @brief Broker metadata within @p timeout_ms (problems name kafka.bootstrap). */
void nudgel_conf_check_probe_kafka(nudgel_conf_check_t *check, const nudgel_conf_t *conf,
                                   int timeout_ms);

/** @brief Problems added so far. */
size_t nudgel_conf_check_count(const nudgel_conf_check_t *check);

/** @brief Problem @p i ("key: why"; borrowed), NULL past the end. */
const char *nudgel_conf_check_problem(const nudgel_conf_check_t *check, size_t i);

/**
 * @brief Prints the verdict: each problem as "program: key: why" on @p err
 * and a count, or "program: configuration OK (@p what)" on @p out.
 * @returns the exit code: 0, 2 (any configuration problem) or 3 (only
 * unreachable services).
 */
int nudgel_conf_check_report(const nudgel_conf_check_t *check, const char *program,
                             const char *what, FILE *out, FILE *err);

#endif
