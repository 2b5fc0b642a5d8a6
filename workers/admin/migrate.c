/*
 * migrate.c — applies the SQL migrations compiled into the binary.
 *
 * Concurrency: every run takes one session-level advisory lock before it
 * touches anything (even CREATE SCHEMA), so two pods of a Helm hook starting
 * together serialise: the second waits, then finds every migration recorded.
 * Each file runs in its own transaction together with the INSERT that
 * records it, so a file is either applied and recorded or neither.
 *
 * The DSN is a secret: it is never printed; libpq's messages name host and
 * port only.
 */
#define _GNU_SOURCE
#include "migrate.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/sha.h>

#include "nudgel/log.h"
#include "nudgel/pg.h"
#include "nudgel/timeutil.h"

#define PROGRAM "nudgel-admin"

/* "nudgelmg" as a big-endian int64: the one advisory lock key of migrations. */
#define MIGRATE_LOCK_KEY "7959378311693233511"

#define VERSION_MAX 16

/* From embedded_migrations.c (cmake/embed.cmake), sorted by file name. */
extern const size_t migrations_count;
extern const char *const migrations_names[];
extern const unsigned char *const migrations_data[];
extern const size_t migrations_sizes[];

typedef struct migration {
    const char *name;          /* file name, borrowed from the embedded table */
    const unsigned char *data; /* NUL-terminated SQL */
    size_t size;
    char version[VERSION_MAX]; /* the leading digits of the name */
    char checksum[SHA256_DIGEST_LENGTH * 2 + 1];
} migration_t;

static const char create_bookkeeping_sql[] = "CREATE SCHEMA IF NOT EXISTS nudgel;"
                                             "CREATE TABLE IF NOT EXISTS nudgel.schema_migrations ("
                                             " version text PRIMARY KEY,"
                                             " name text NOT NULL,"
                                             " checksum text NOT NULL,"
                                             " applied_at timestamptz NOT NULL DEFAULT now())";

static const char select_applied_sql[] =
    "SELECT version, name, checksum,"
    " to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    " FROM nudgel.schema_migrations ORDER BY version";

enum { COL_VERSION, COL_NAME, COL_CHECKSUM, COL_APPLIED_AT };

/* Postgres NOTICEs ("schema nudgel already exists, skipping") are noise for an operator. */
static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    nudgel_log_debug("postgres notice: %.*s", (int)strcspn(message, "\n"), message);
}

static void sha256_hex(const unsigned char *data, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(data, len, digest);
    for (size_t i = 0; i < sizeof(digest); i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0xf];
    }
    out[2 * sizeof(digest)] = '\0';
}

/* libpq's message on one line, without the trailing newline. */
static void pg_message(const char *message, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s", message && *message ? message : "unknown error");
    size_t len = strlen(out);
    while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
        out[--len] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

static nudgel_err_t pg_failure(PGconn *conn)
{
    return PQstatus(conn) == CONNECTION_OK ? NUDGEL_ERR_PG : NUDGEL_ERR_PG_UNREACHABLE;
}

/*
 * The embedded migrations with their versions and checksums, in a new array
 * the caller frees. Fails when a file name does not start with digits or two
 * files share a version (the primary key of schema_migrations).
 */
static nudgel_err_t load_embedded(migration_t **out, char *errstr, size_t errstr_size)
{
    migration_t *list = calloc(migrations_count ? migrations_count : 1, sizeof(*list));
    nudgel_err_t err = NUDGEL_OK;
    if (!list) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < migrations_count; i++) {
        migration_t *m = &list[i];
        size_t digits = strspn(migrations_names[i], "0123456789");
        m->name = migrations_names[i];
        m->data = migrations_data[i];
        m->size = migrations_sizes[i];
        if (digits == 0 || digits >= VERSION_MAX) {
            snprintf(errstr, errstr_size,
                     "%s: a migration file name must start with its number (NNN_name.sql)",
                     m->name);
            err = NUDGEL_ERR_MIGRATION;
            goto out;
        }
        memcpy(m->version, m->name, digits);
        m->version[digits] = '\0';
        sha256_hex(m->data, m->size, m->checksum);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(list[j].version, m->version) == 0) {
                snprintf(errstr, errstr_size, "%s and %s share version %s", list[j].name, m->name,
                         m->version);
                err = NUDGEL_ERR_MIGRATION;
                goto out;
            }
        }
    }
out:
    if (err != NUDGEL_OK) {
        free(list);
        list = NULL;
    }
    *out = list;
    return err;
}

static PGconn *connect_pg(const nudgel_conf_t *conf, nudgel_err_t *err, char *errstr,
                          size_t errstr_size)
{
    const char *dsn = nudgel_conf_get_str(conf, "pg.dsn");
    char reason[512];
    PGconn *conn;
    if (!dsn || !*dsn) {
        snprintf(errstr, errstr_size, "pg.dsn: is not set (NUDGEL_PG_DSN or --pg-dsn)");
        *err = NUDGEL_ERR_CONFIG;
        return NULL;
    }
    conn = nudgel_pg_connect(dsn, PROGRAM, (int)nudgel_conf_get_int(conf, "pg.connect_timeout_s"),
                             reason, sizeof(reason));
    if (!conn) {
        snprintf(errstr, errstr_size, "cannot connect to Postgres: %s", reason);
        *err = NUDGEL_ERR_PG_UNREACHABLE;
        return NULL;
    }
    PQsetNoticeProcessor(conn, notice_to_log, NULL);
    *err = NUDGEL_OK;
    return conn;
}

/* Runs a query that returns rows; @p *res is the caller's to PQclear. */
static nudgel_err_t query_rows(PGconn *conn, const char *sql, const char *what, PGresult **res,
                               char *errstr, size_t errstr_size)
{
    char reason[512];
    *res = PQexec(conn, sql);
    if (*res && PQresultStatus(*res) == PGRES_TUPLES_OK)
        return NUDGEL_OK;
    pg_message(PQerrorMessage(conn), reason, sizeof(reason));
    snprintf(errstr, errstr_size, "%s: %s", what, reason);
    PQclear(*res);
    *res = NULL;
    return pg_failure(conn);
}

/* The row of @p applied recording @p version, or -1. */
static int find_row(const PGresult *applied, const char *version)
{
    int rows = applied ? PQntuples(applied) : 0;
    for (int r = 0; r < rows; r++)
        if (strcmp(PQgetvalue(applied, r, COL_VERSION), version) == 0)
            return r;
    return -1;
}

/* Whether the embedded set knows @p version. */
static bool is_embedded(const migration_t *list, const char *version)
{
    for (size_t i = 0; i < migrations_count; i++)
        if (strcmp(list[i].version, version) == 0)
            return true;
    return false;
}

/*
 * "file line N: message" for a failed statement of a migration. Postgres
 * gives the error position in characters from the start of the whole
 * multi-statement string; count lines up to it so the operator can find it.
 */
static void describe_failure(const PGresult *res, PGconn *conn, const migration_t *m, char *errstr,
                             size_t errstr_size)
{
    char reason[512];
    const char *pos = res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *severity = res ? PQresultErrorField(res, PG_DIAG_SEVERITY) : NULL;
    if (primary)
        snprintf(reason, sizeof(reason), "%s: %s", severity ? severity : "ERROR", primary);
    else
        pg_message(PQerrorMessage(conn), reason, sizeof(reason));
    if (pos) {
        long target = strtol(pos, NULL, 10), chars = 0, line = 1;
        for (size_t i = 0; i < m->size && chars < target - 1; i++) {
            if ((m->data[i] & 0xC0) != 0x80)
                chars++;
            if (m->data[i] == '\n')
                line++;
        }
        snprintf(errstr, errstr_size, "%s line %ld: %s", m->name, line, reason);
    } else {
        snprintf(errstr, errstr_size, "%s: %s", m->name, reason);
    }
}

static void rollback(PGconn *conn)
{
    char ignored[256];
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE)
        nudgel_pg_exec(conn, "ROLLBACK", ignored, sizeof(ignored));
}

/* One migration and its schema_migrations row in one transaction. */
static nudgel_err_t apply_one(PGconn *conn, const migration_t *m, char *errstr, size_t errstr_size)
{
    const char *params[3] = {m->version, m->name, m->checksum};
    char reason[512];
    PGresult *res = NULL;
    nudgel_err_t err = nudgel_pg_exec(conn, "BEGIN", reason, sizeof(reason));
    if (err != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "%s: BEGIN: %s", m->name, reason);
        goto out;
    }
    /* PQexec (not PQexecParams) runs every statement of the file. */
    res = PQexec(conn, (const char *)m->data);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        describe_failure(res, conn, m, errstr, errstr_size);
        err = PQstatus(conn) == CONNECTION_OK ? NUDGEL_ERR_MIGRATION : NUDGEL_ERR_PG_UNREACHABLE;
        goto out;
    }
    if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
        /* A COMMIT inside the file would record nothing and break atomicity. */
        snprintf(errstr, errstr_size,
                 "%s: the file ended the transaction itself; migrations must not contain "
                 "BEGIN/COMMIT/ROLLBACK",
                 m->name);
        err = NUDGEL_ERR_MIGRATION;
        goto out;
    }
    PQclear(res);
    res = PQexecParams(conn,
                       "INSERT INTO nudgel.schema_migrations (version, name, checksum)"
                       " VALUES ($1, $2, $3)",
                       3, NULL, params, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_message(PQerrorMessage(conn), reason, sizeof(reason));
        snprintf(errstr, errstr_size, "%s: recording in nudgel.schema_migrations: %s", m->name,
                 reason);
        err = pg_failure(conn);
        goto out;
    }
    err = nudgel_pg_exec(conn, "COMMIT", reason, sizeof(reason));
    if (err != NUDGEL_OK)
        snprintf(errstr, errstr_size, "%s: COMMIT: %s", m->name, reason);
out:
    PQclear(res);
    if (err != NUDGEL_OK)
        rollback(conn);
    return err;
}

/*
 * Takes the migration lock, saying so when another run holds it: a Helm
 * hook that seems stuck is then explained by its log.
 */
static nudgel_err_t take_lock(PGconn *conn, char *errstr, size_t errstr_size)
{
    PGresult *res = NULL;
    nudgel_err_t err = query_rows(conn, "SELECT pg_try_advisory_lock(" MIGRATE_LOCK_KEY ")",
                                  "taking the migration lock", &res, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
        goto out;
    PQclear(res);
    nudgel_log_info("another nudgel-admin migrate holds the migration lock; waiting for it");
    err = query_rows(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")",
                     "waiting for the migration lock", &res, errstr, errstr_size);
out:
    PQclear(res);
    return err;
}

nudgel_err_t nudgel_admin_migrate(const nudgel_conf_t *conf, FILE *out, char *errstr,
                                  size_t errstr_size)
{
    migration_t *list = NULL;
    PGconn *conn = NULL;
    PGresult *applied = NULL;
    bool locked = false;
    size_t done = 0, skipped = 0, changed = 0;
    char reason[512];
    nudgel_err_t err = load_embedded(&list, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    conn = connect_pg(conf, &err, errstr, errstr_size);
    if (!conn)
        goto out;
    err = take_lock(conn, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    locked = true;
    err = nudgel_pg_exec(conn, create_bookkeeping_sql, reason, sizeof(reason));
    if (err != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "creating nudgel.schema_migrations: %s", reason);
        goto out;
    }
    err = query_rows(conn, select_applied_sql, "reading nudgel.schema_migrations", &applied, errstr,
                     errstr_size);
    if (err != NUDGEL_OK)
        goto out;

    /* Refuse to build on a history that differs from the files, before applying anything. */
    for (size_t i = 0; i < migrations_count; i++) {
        int row = find_row(applied, list[i].version);
        if (row < 0 || strcmp(PQgetvalue(applied, row, COL_CHECKSUM), list[i].checksum) == 0)
            continue;
        fprintf(out, "%-40s changed after it was applied (recorded sha256 %.12s, file %.12s)\n",
                list[i].name, PQgetvalue(applied, row, COL_CHECKSUM), list[i].checksum);
        if (!changed++)
            snprintf(errstr, errstr_size,
                     "%s changed after it was applied; add a new migration instead of editing "
                     "an applied one",
                     list[i].name);
    }
    if (changed) {
        err = NUDGEL_ERR_MIGRATION;
        goto out;
    }

    for (size_t i = 0; i < migrations_count; i++) {
        const migration_t *m = &list[i];
        if (find_row(applied, m->version) >= 0) {
            fprintf(out, "%-40s already applied\n", m->name);
            skipped++;
            continue;
        }
        int64_t start_us = nudgel_mono_us();
        err = apply_one(conn, m, errstr, errstr_size);
        if (err != NUDGEL_OK) {
            fprintf(out, "%-40s FAILED\n", m->name);
            goto out;
        }
        fprintf(out, "%-40s applied in %lld ms\n", m->name,
                (long long)((nudgel_mono_us() - start_us) / 1000));
        nudgel_log_debug("migration %s applied (version %s, sha256 %s)", m->name, m->version,
                         m->checksum);
        done++;
    }
    for (int r = 0; r < PQntuples(applied); r++)
        if (!is_embedded(list, PQgetvalue(applied, r, COL_VERSION)))
            fprintf(out,
                    "%-40s recorded but unknown to this binary (applied by a newer release?)\n",
                    PQgetvalue(applied, r, COL_NAME));
out:
    if (list && (err == NUDGEL_OK || done || skipped))
        fprintf(out, "migrations: %zu applied, %zu already applied, %zu total\n", done, skipped,
                migrations_count);
    if (locked && PQstatus(conn) == CONNECTION_OK)
        nudgel_pg_exec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", reason,
                       sizeof(reason));
    PQclear(applied);
    if (conn)
        PQfinish(conn);
    free(list);
    return err;
}

nudgel_err_t nudgel_admin_migrate_status(const nudgel_conf_t *conf, FILE *out, char *errstr,
                                         size_t errstr_size)
{
    migration_t *list = NULL;
    PGconn *conn = NULL;
    PGresult *exists = NULL, *applied = NULL;
    size_t done = 0, pending = 0, changed = 0;
    nudgel_err_t err = load_embedded(&list, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    conn = connect_pg(conf, &err, errstr, errstr_size);
    if (!conn)
        goto out;
    /* Read-only: a database never migrated has no table, and that means all pending. */
    err = query_rows(conn, "SELECT to_regclass('nudgel.schema_migrations') IS NOT NULL",
                     "looking for nudgel.schema_migrations", &exists, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto out;
    if (strcmp(PQgetvalue(exists, 0, 0), "t") == 0) {
        err = query_rows(conn, select_applied_sql, "reading nudgel.schema_migrations", &applied,
                         errstr, errstr_size);
        if (err != NUDGEL_OK)
            goto out;
    }
    for (size_t i = 0; i < migrations_count; i++) {
        const migration_t *m = &list[i];
        int row = find_row(applied, m->version);
        if (row < 0) {
            fprintf(out, "%-40s pending\n", m->name);
            pending++;
        } else if (strcmp(PQgetvalue(applied, row, COL_CHECKSUM), m->checksum) != 0) {
            fprintf(out, "%-40s changed after it was applied (applied %s)\n", m->name,
                    PQgetvalue(applied, row, COL_APPLIED_AT));
            if (!changed++)
                snprintf(errstr, errstr_size, "%s changed after it was applied", m->name);
        } else {
            fprintf(out, "%-40s applied %s\n", m->name, PQgetvalue(applied, row, COL_APPLIED_AT));
            done++;
        }
    }
    for (int r = 0; applied && r < PQntuples(applied); r++)
        if (!is_embedded(list, PQgetvalue(applied, r, COL_VERSION)))
            fprintf(out, "%-40s applied %s, unknown to this binary\n",
                    PQgetvalue(applied, r, COL_NAME), PQgetvalue(applied, r, COL_APPLIED_AT));
    fprintf(out, "migrations: %zu applied, %zu pending, %zu changed, %zu total\n", done, pending,
            changed, migrations_count);
    if (changed)
        err = NUDGEL_ERR_MIGRATION;
out:
    PQclear(exists);
    PQclear(applied);
    if (conn)
        PQfinish(conn);
    free(list);
    return err;
}
