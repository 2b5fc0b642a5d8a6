/*
 * nudgel/pg.h — libpq helpers.
 */
#ifndef NUDGEL_PG_H
#define NUDGEL_PG_H

#include <stddef.h>

#include <libpq-fe.h>

#include "nudgel/error.h"

/**
 * @brief Connects with a bounded connect timeout and the given application
 * name. The DSN is never logged. @returns a connection the caller owns
 * (PQfinish), or NULL with a reason that does not contain the DSN.
 */
PGconn *nudgel_pg_connect(const char *dsn, const char *application_name, int connect_timeout_s,
                          char *errstr, size_t errstr_size);

/** @brief Runs a statement without results. @returns NUDGEL_OK or NUDGEL_ERR_PG. */
nudgel_err_t nudgel_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errstr_size);

#endif
