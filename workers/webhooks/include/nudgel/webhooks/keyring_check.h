/*
 * nudgel/webhooks/keyring_check.h — does the keyring open the secrets
 * already stored?
 *
 * A keyring that parses can still be the wrong one (another environment's,
 * or one whose old key was dropped too early): every delivery to an
 * endpoint sealed under a missing or different key would then fail. The
 * check opens one stored secret per key id found in
 * nudgel.webhook_endpoints (current and previous secrets), so the
 * deliverer refuses to start, and --check-config=connect says so, naming
 * the keyring's key (secret.key or secret.key_file) and the key id —
 * never a key or a secret.
 *
 * Threads: the caller's; blocking libpq.
 */
#ifndef NUDGEL_WEBHOOKS_KEYRING_CHECK_H
#define NUDGEL_WEBHOOKS_KEYRING_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "nudgel/config.h"
#include "nudgel/config_check.h"
#include "nudgel/error.h"
#include "nudgel/webhooks/secretbox.h"

/** @brief "secret.key" when set in @p conf, else "secret.key_file" (static). */
const char *nudgel_keyring_conf_key(const nudgel_conf_t *conf);

/**
 * @brief Opens one sample secret per key id stored in
 * nudgel.webhook_endpoints with @p box, over @p conn (borrowed, connected).
 * @returns NUDGEL_OK (also when nothing is stored), NUDGEL_ERR_CONFIG with
 * "<key_name>: ..." in @p errstr (@p key_name: nudgel_keyring_conf_key())
 * when a key id of the keyring does not open the secrets sealed under it
 * (another key under the same id) or, unless @p missing_ok, a stored key id
 * is missing from the keyring (with @p missing_ok that is logged as an
 * error and the check goes on: a start-up shares its database with
 * secrets of other keyrings only in test stacks, but an old key dropped too
 * early must be seen), or the statement's error (NUDGEL_ERR_PG*: the table
 * could not be read; the caller decides).
 */
nudgel_err_t nudgel_keyring_check_stored(PGconn *conn, const nudgel_secretbox_t *box,
                                         const char *key_name, bool missing_ok, char *errstr,
                                         size_t errstr_size);

/**
 * @brief --check-config's offline part: the keyring of @p conf parses (ids
 * unique, keys of 32 bytes); with @p required, it is set. Problems name
 * secret.key or secret.key_file.
 */
void nudgel_keyring_check_conf(const nudgel_conf_t *conf, bool required,
                               nudgel_conf_check_t *check);

/**
 * @brief --check-config=connect: connects to pg.dsn and runs
 * nudgel_keyring_check_stored() with the keyring of @p conf. An unreachable
 * Postgres is reported by the Postgres probe, not here.
 */
void nudgel_keyring_probe(const nudgel_conf_t *conf, const char *program,
                          nudgel_conf_check_t *check);

#endif
