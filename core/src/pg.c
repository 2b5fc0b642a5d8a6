/*
 * pg.c — libpq helpers. The DSN is a secret: errors quote libpq's message,
 * which names host and port but never the password, and never the DSN.
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
        err = PQstatus(conn) == CONNECTION_OK ? NUDGEL_ERR_PG : NUDGEL_ERR_PG_UNREACHABLE;
    }
    PQclear(res);
    return err;
}
