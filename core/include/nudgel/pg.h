/*
 * nudgel/pg.h — libpq helpers, and the one place libpq's SQLSTATE codes
 * become a nudgel_err_t (nudgel_pg_sqlstate_err(), nudgel_pg_result_err()):
 * no library or role reads PG_DIAG_SQLSTATE elsewhere, nor compares error
 * text to classify a failed statement.
 */
#ifndef NUDGEL_PG_H
#define NUDGEL_PG_H

#include <stdbool.h>
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

/**
 * @brief Runs a statement without results. @returns NUDGEL_OK, or as
 * nudgel_pg_result_err() with libpq's message (one line) in @p errstr.
 */
nudgel_err_t nudgel_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errstr_size);

/**
 * @brief The class of a SQLSTATE (@p sqlstate: five characters, or NULL when
 * the error carries none). @returns NUDGEL_ERR_PG_UNREACHABLE when the
 * server or the connection is going away — class 08 (connection exception),
 * 57P01 (admin_shutdown), 57P02 (crash_shutdown), 57P03
 * (cannot_connect_now): the same statement may succeed on a new connection;
 * NUDGEL_ERR_PG for any other code and for NULL (the statement's own error).
 */
nudgel_err_t nudgel_pg_sqlstate_err(const char *sqlstate);

/**
 * @brief Whether @p sqlstate (five characters, or NULL) names a failure of
 * the moment, not of the statement: class 40 (serialization failure,
 * deadlock detected), class 53 (insufficient resources), 55P03 (lock not
 * available) or 57014 (query canceled). The same statement, run again, may
 * succeed; a caller that gives up on a statement after some failures counts
 * only the others. Pure.
 */
bool nudgel_pg_sqlstate_transient(const char *sqlstate);

/** @brief nudgel_pg_sqlstate_transient() of @p res's SQLSTATE (borrowed, may be NULL). */
bool nudgel_pg_result_transient(const PGresult *res);

/**
 * @brief The class of a statement's result, the one mapping every role uses.
 * @p res is borrowed, NULL when no result came; @p conn (may be NULL: not
 * consulted) is the connection it came on.
 * @returns NUDGEL_OK for a successful result (command, tuples, single tuple,
 * pipeline sync, empty query); NUDGEL_ERR_PG_UNREACHABLE when no result came,
 * when @p conn is no longer CONNECTION_OK, or by the result's SQLSTATE
 * (nudgel_pg_sqlstate_err()); NUDGEL_ERR_PG otherwise. Thread-safe.
 */
nudgel_err_t nudgel_pg_result_err(const PGconn *conn, const PGresult *res);

#endif
