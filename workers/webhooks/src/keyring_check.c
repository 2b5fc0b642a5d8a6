/*
 * keyring_check.c — see nudgel/webhooks/keyring_check.h.
 */
#define _GNU_SOURCE
#include "nudgel/webhooks/keyring_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"
#include "nudgel/pg.h"

/* One sealed secret per key id, current and previous, in binary (bytea as bytes). */
static const char sample_sql[] =
    "SELECT DISTINCT ON (key_id) key_id, sealed, n FROM ("
    "  SELECT secret_key_id AS key_id, secret_ciphertext AS sealed,"
    "         count(*) OVER (PARTITION BY secret_key_id) AS n"
    "    FROM nudgel.webhook_endpoints"
    "  UNION ALL"
    "  SELECT previous_secret_key_id, previous_secret_ciphertext,"
    "         count(*) OVER (PARTITION BY previous_secret_key_id)"
    "    FROM nudgel.webhook_endpoints"
    "   WHERE previous_secret_ciphertext IS NOT NULL AND previous_secret_key_id IS NOT NULL"
    "     AND (previous_secret_expires_at IS NULL OR previous_secret_expires_at > now())"
    ") s ORDER BY key_id";

const char *nudgel_keyring_conf_key(const nudgel_conf_t *conf)
{
    const char *text = nudgel_conf_get_str(conf, "secret.key");
    return text && *text ? "secret.key" : "secret.key_file";
}

/* A problem of the stored secrets: into @p check when given (and go on), else into errstr. */
static void stored_problem(nudgel_conf_check_t *check, char *errstr, size_t errstr_size,
                           const char *text)
{
    if (check)
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG, "%s", text);
    else
        snprintf(errstr, errstr_size, "%s", text);
}

static nudgel_err_t check_stored(PGconn *conn, const nudgel_secretbox_t *box, const char *key_name,
                                 bool missing_ok, nudgel_conf_check_t *check, char *errstr,
                                 size_t errstr_size)
{
    PGresult *res = PQexecParams(conn, sample_sql, 0, NULL, NULL, NULL, NULL, 1);
    nudgel_err_t err = NUDGEL_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "reading stored webhook secrets: %s",
                 PQresultErrorMessage(res));
        err = nudgel_pg_result_err(conn, res);
        if (err == NUDGEL_OK)
            err = NUDGEL_ERR_PG;
        goto out;
    }
    for (int i = 0; i < PQntuples(res) && (err == NUDGEL_OK || check); i++) {
        char key_id[NUDGEL_SECRETBOX_KEY_ID_MAX + 1], inner[256], line[512], *plain = NULL;
        size_t plain_len = 0;
        snprintf(key_id, sizeof(key_id), "%.*s", PQgetlength(res, i, 0), PQgetvalue(res, i, 0));
        long long n = 0;
        /* n is an int8 in binary: big-endian 8 bytes. */
        if (PQgetlength(res, i, 2) == 8) {
            const unsigned char *b = (const unsigned char *)PQgetvalue(res, i, 2);
            for (int k = 0; k < 8; k++)
                n = (n << 8) | b[k];
        }
        nudgel_err_t open = nudgel_secretbox_open(
            box, key_id, (const unsigned char *)PQgetvalue(res, i, 1),
            (size_t)PQgetlength(res, i, 1), &plain, &plain_len, inner, sizeof(inner));
        nudgel_secretbox_free_plain(plain, plain_len);
        if (open == NUDGEL_ERR_CONFIG && missing_ok) {
            nudgel_log_error("%s: the keyring has no key id \"%s\", which seals %lld stored "
                             "webhook secret(s): deliveries to those endpoints fail",
                             key_name, key_id, n);
        } else if (open == NUDGEL_ERR_CONFIG) {
            snprintf(line, sizeof(line),
                     "%s: the keyring has no key id \"%s\", which seals %lld stored webhook "
                     "secret(s): add that key (keep old keys until every secret is re-sealed)",
                     key_name, key_id, n);
            stored_problem(check, errstr, errstr_size, line);
            err = NUDGEL_ERR_CONFIG;
        } else if (open != NUDGEL_OK) {
            snprintf(line, sizeof(line),
                     "%s: key id \"%s\" does not open the stored webhook secrets sealed under it "
                     "(%lld): the keyring holds another key under that id",
                     key_name, key_id, n);
            stored_problem(check, errstr, errstr_size, line);
            err = NUDGEL_ERR_CONFIG;
        }
    }
out:
    PQclear(res);
    return err;
}

nudgel_err_t nudgel_keyring_check_stored(PGconn *conn, const nudgel_secretbox_t *box,
                                         const char *key_name, bool missing_ok, char *errstr,
                                         size_t errstr_size)
{
    return check_stored(conn, box, key_name, missing_ok, NULL, errstr, errstr_size);
}

void nudgel_keyring_check_conf(const nudgel_conf_t *conf, bool required, nudgel_conf_check_t *check)
{
    const char *text = nudgel_conf_get_str(conf, "secret.key");
    const char *path = nudgel_conf_get_str(conf, "secret.key_file");
    nudgel_secretbox_t *box = NULL;
    char errstr[512];
    if (!required && (!text || !*text) && (!path || !*path))
        return;
    nudgel_err_t err = nudgel_secretbox_from_conf(conf, &box, errstr, sizeof(errstr));
    if (err != NUDGEL_OK)
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG, "%s", errstr);
    nudgel_secretbox_destroy(box);
}

void nudgel_keyring_probe(const nudgel_conf_t *conf, const char *program,
                          nudgel_conf_check_t *check)
{
    nudgel_secretbox_t *box = NULL;
    char errstr[512];
    if (nudgel_secretbox_from_conf(conf, &box, errstr, sizeof(errstr)) != NUDGEL_OK)
        return; /* reported offline */
    PGconn *conn = nudgel_pg_connect(nudgel_conf_get_str(conf, "pg.dsn"), program,
                                     (int)nudgel_conf_get_int(conf, "pg.connect_timeout_s"), errstr,
                                     sizeof(errstr));
    if (conn) {
        /* Every key id: each one missing or wrong is its own problem. */
        nudgel_err_t err = check_stored(conn, box, nudgel_keyring_conf_key(conf), false, check,
                                        errstr, sizeof(errstr));
        if (err != NUDGEL_OK && err != NUDGEL_ERR_CONFIG)
            nudgel_conf_check_add(check, err, "%s: %s", nudgel_keyring_conf_key(conf), errstr);
        PQfinish(conn);
    }
    nudgel_secretbox_destroy(box);
}
