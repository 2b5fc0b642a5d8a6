/*
 * migrate.h — the Postgres schema migrations compiled into nudgel-admin.
 *
 * The SQL files of schemas/postgres/ (NNN_name.sql) are embedded at build
 * time, sorted by file name. Each is applied once, in its own transaction,
 * and recorded in nudgel.schema_migrations (version = NNN, name = file name,
 * checksum = SHA-256 hex of the file's bytes).
 */
#ifndef NUDGEL_ADMIN_MIGRATE_H
#define NUDGEL_ADMIN_MIGRATE_H

#include <stddef.h>
#include <stdio.h>

#include "nudgel/config.h"
#include "nudgel/error.h"

/**
 * @brief Applies every pending migration under a session advisory lock, so
 * that several copies may run at once: the first applies, the others wait and
 * then find nothing to do. Writes one line per migration and a total to
 * @p out. A migration whose recorded checksum differs from the embedded file
 * stops the run before anything is applied.
 * @returns NUDGEL_OK; NUDGEL_ERR_CONFIG (pg.dsn unset); NUDGEL_ERR_PG_UNREACHABLE;
 * NUDGEL_ERR_MIGRATION (a changed or failing migration, named in @p errstr);
 * NUDGEL_ERR_PG (bookkeeping statements).
 */
nudgel_err_t nudgel_admin_migrate(const nudgel_conf_t *conf, FILE *out, char *errstr,
                                  size_t errstr_size);

/**
 * @brief Lists each migration as applied (with its time), pending or changed,
 * without changing the database.
 * @returns as nudgel_admin_migrate(); NUDGEL_ERR_MIGRATION when a recorded
 * checksum differs from the embedded file.
 */
nudgel_err_t nudgel_admin_migrate_status(const nudgel_conf_t *conf, FILE *out, char *errstr,
                                         size_t errstr_size);

#endif
