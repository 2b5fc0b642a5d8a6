/*
 * pg.c — libpq helpers. The DSN is a secret: errors quote libpq's message,
 * which names host and port but never the password, and never the DSN.
 *
 * It also owns the classification of failed statements: the SQLSTATE a
 * result carries is read here, once, into a nudgel_err_t; callers decide
 * reconnect or fail by that code, never by libpq's text.
 */
#include "nudgel/pg.h"

#include <stdio.h>
#include <string.h>

static void copy_pg_message(const char *message, char *errstr, size_t errstr_size)
{
    snprintf(errstr, errstr_size, "%s", message ? message : "unknown error");
    size_t len = strlen(errstr);
    while (len && (errstr[len - 1] == '\n' || errstr[len - 1] == ' '))
        errstr[--len] = '\0';
    for (char *p = errstr; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

PGconn *nudgel_pg_connect(const char *dsn, const char *application_name, int connect_timeout_s,
                          char *errstr, size_t errstr_size)
{
    char timeout[16];
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *values[] = {dsn, application_name, timeout, NULL};
    if (!dsn || !*dsn) {
        snprintf(errstr, errstr_size, "pg.dsn is not set (NUDGEL_PG_DSN)");
        return NULL;
    }
    snprintf(timeout, sizeof(timeout), "%d", connect_timeout_s > 0 ? connect_timeout_s : 10);
    /* expand_dbname=1: "dbname" may hold a full connection string or URI. */
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (!conn) {
        snprintf(errstr, errstr_size, "out of memory creating a Postgres connection");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        copy_pg_message(PQerrorMessage(conn), errstr, errstr_size);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

nudgel_err_t nudgel_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errstr_size)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    nudgel_err_t err = NUDGEL_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        copy_pg_message(PQerrorMessage(conn), errstr, errstr_size);
        err = nudgel_pg_result_err(conn, res);
        if (err == NUDGEL_OK) /* a COPY or an empty query: not what was asked */
            err = NUDGEL_ERR_PG;
    }
    PQclear(res);
    return err;
}

nudgel_err_t nudgel_pg_sqlstate_err(const char *sqlstate)
{
    /* Class 08: connection_exception and its subclasses. */
    static const char *const going_away[] = {"57P01", "57P02", "57P03"};
    if (!sqlstate || strlen(sqlstate) != 5)
        return NUDGEL_ERR_PG;
    if (sqlstate[0] == '0' && sqlstate[1] == '8')
        return NUDGEL_ERR_PG_UNREACHABLE;
    for (size_t i = 0; i < sizeof(going_away) / sizeof(going_away[0]); i++)
        if (memcmp(sqlstate, going_away[i], 5) == 0)
            return NUDGEL_ERR_PG_UNREACHABLE;
    return NUDGEL_ERR_PG;
}

bool nudgel_pg_sqlstate_transient(const char *sqlstate)
{
    static const char *const momentary[] = {"55P03", "57014"};
    if (!sqlstate || strlen(sqlstate) != 5)
        return false;
    if ((sqlstate[0] == '4' && sqlstate[1] == '0') || (sqlstate[0] == '5' && sqlstate[1] == '3'))
        return true;
    for (size_t i = 0; i < sizeof(momentary) / sizeof(momentary[0]); i++)
        if (memcmp(sqlstate, momentary[i], 5) == 0)
            return true;
    return false;
}

bool nudgel_pg_result_transient(const PGresult *res)
{
    return res && nudgel_pg_sqlstate_transient(PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

nudgel_err_t nudgel_pg_result_err(const PGconn *conn, const PGresult *res)
{
    if (!res)
        return NUDGEL_ERR_PG_UNREACHABLE;
    /* Not a switch: libpq adds codes over versions (-Wswitch-enum would break the build). */
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE ||
        st == PGRES_PIPELINE_SYNC || st == PGRES_EMPTY_QUERY)
        return NUDGEL_OK;
    if (conn && PQstatus(conn) != CONNECTION_OK)
        return NUDGEL_ERR_PG_UNREACHABLE;
    return nudgel_pg_sqlstate_err(PQresultErrorField(res, PG_DIAG_SQLSTATE));
}
