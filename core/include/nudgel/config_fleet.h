/*
 * nudgel/config_fleet.h — the fleet's key registry: every configuration key
 * of every binary of the fleet, by name.
 *
 * One configuration file (and one set of NUDGEL_* variables) may serve every
 * role: a role validates the values of its own keys (its config table) and
 * knows every other role's keys by name only, so that
 * config/example.json loads in every role while a typo anywhere is caught.
 * A key or section that no binary of the fleet knows is an error naming it,
 * with the nearest fleet name as a suggestion.
 *
 * The environment rule (nudgel_conf_fleet_env_kind): a NUDGEL_* variable is
 * the variable of a fleet key, NUDGEL_CONFIG, a name reserved for tooling
 * (NUDGEL_TEST_*, NUDGEL_BENCH_*, NUDGEL_DEMO_*, NUDGEL_STACK_*,
 * NUDGEL_SIM_* — the carrier simulator's keys —, NUDGEL_BUILD_DIR,
 * NUDGEL_SOURCE_DIR), or a secret the role's configuration names
 * (api_key_env, token_env, basic_password_env of the gateways file; the
 * role says so through nudgel_conf_check_env_ref()). Anything else is a
 * mistake.
 *
 * When a role adds a key, it is added here too: tests/integration/
 * test_check_config.py fails while any binary refuses another's key.
 * Threads: pure functions over static data; any thread.
 */
#ifndef NUDGEL_CONFIG_FLEET_H
#define NUDGEL_CONFIG_FLEET_H

#include <stdbool.h>
#include <stddef.h>

/** @brief Whether @p key is a key of some binary of the fleet. */
bool nudgel_conf_fleet_has_key(const char *key);

/** @brief Whether the first @p len bytes of @p name are a section of the fleet ("messages"). */
bool nudgel_conf_fleet_has_section(const char *name, size_t len);

/**
 * @brief The fleet key (or, with @p section, the section) nearest to
 * @p name, at most two edits away, into @p out. @returns false (and @p out
 * "") when none is that near.
 */
bool nudgel_conf_fleet_suggest(const char *name, bool section, char *out, size_t out_size);

typedef enum nudgel_conf_env_kind {
    NUDGEL_CONF_ENV_KEY,      /* NUDGEL_<KEY> of a fleet key */
    NUDGEL_CONF_ENV_RESERVED, /* NUDGEL_CONFIG or a tooling name (see above) */
    NUDGEL_CONF_ENV_UNKNOWN,  /* none of those: a mistake unless the configuration names it */
} nudgel_conf_env_kind_t;

/** @brief What the NUDGEL_* variable @p name is (see the rule above). */
nudgel_conf_env_kind_t nudgel_conf_fleet_env_kind(const char *name);

/**
 * @brief The fleet variable nearest to @p name (at most two edits), into
 * @p out. @returns false (and @p out "") when none is that near.
 */
bool nudgel_conf_fleet_suggest_env(const char *name, char *out, size_t out_size);

#endif
