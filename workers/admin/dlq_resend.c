/*
 * dlq_resend.c — see dlq_resend.h.
 */
#define _GNU_SOURCE
#include "dlq_resend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/sha.h>

#include "endpoints.h" /* nudgel_admin_pg_connect() */
#include "nudgel/job.h"
#include "nudgel/pg.h"
#include "nudgel/timeutil.h"

struct dlq_pg {
    const nudgel_conf_t *conf;
    PGconn *conn;
};

/* A carrier may have taken it: never resent. The rest of the final states, never sent. */
static const char receipt_sql[] =
    "SELECT status, coalesce(error_code, ''), gateway_message_id IS NOT NULL "
    "FROM nudgel.message_receipts WHERE message_id = $1::uuid";

/*
 * The new receipt, accepted, from the original's row (recipient, metadata,
 * trace), and its first history row; nothing when the resend exists.
 */
static const char resend_sql[] =
    "WITH o AS (SELECT * FROM nudgel.message_receipts WHERE message_id = $1::uuid),"
    " ins AS (INSERT INTO nudgel.message_receipts AS m (message_id, tenant_id, to_e164, country,"
    "  operator, status, attempt, trace_id, metadata, resent_from, created_at, updated_at)"
    " SELECT $2::uuid, tenant_id, to_e164, country, operator, 'accepted', 0, trace_id, metadata,"
    "  message_id, clock_timestamp(), clock_timestamp() FROM o"
    " ON CONFLICT DO NOTHING RETURNING m.message_id)"
    " INSERT INTO nudgel.message_receipt_history (message_id, from_status, to_status, detail)"
    " SELECT message_id, NULL, 'accepted', jsonb_build_object('resent_from', $1::text,"
    "  'generation', $3::int, 'by', 'nudgel-admin dlq replay --resend') FROM ins"
    " ON CONFLICT DO NOTHING";

dlq_pg_t *dlq_pg_new(const nudgel_conf_t *conf)
{
    dlq_pg_t *pg = calloc(1, sizeof(*pg));
    if (pg)
        pg->conf = conf;
    return pg;
}

void dlq_pg_free(dlq_pg_t *pg)
{
    if (!pg)
        return;
    if (pg->conn)
        PQfinish(pg->conn);
    free(pg);
}

static nudgel_err_t ensure(dlq_pg_t *pg, char *errstr, size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_OK;
    if (!pg->conn)
        pg->conn = nudgel_admin_pg_connect(pg->conf, &err, errstr, errstr_size);
    return err;
}

static nudgel_err_t failed(dlq_pg_t *pg, PGresult *res, const char *what, char *errstr,
                           size_t errstr_size)
{
    nudgel_err_t err = nudgel_pg_result_err(pg->conn, res);
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(pg->conn);
    snprintf(errstr, errstr_size, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    PQclear(res);
    return err == NUDGEL_OK ? NUDGEL_ERR_PG : err;
}

nudgel_err_t dlq_pg_receipt(dlq_pg_t *pg, const char *message_id, dlq_receipt_info_t *out,
                            char *errstr, size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    nudgel_err_t err = ensure(pg, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    const char *values[1] = {message_id};
    PGresult *res = PQexecParams(pg->conn, receipt_sql, 1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return failed(pg, res, "reading the receipt", errstr, errstr_size);
    if (PQntuples(res) == 1) {
        const char *status = PQgetvalue(res, 0, 0);
        bool carrier_took_it = PQgetvalue(res, 0, 2)[0] == 't';
        snprintf(out->status, sizeof(out->status), "%s", status);
        snprintf(out->error_code, sizeof(out->error_code), "%s", PQgetvalue(res, 0, 1));
        if (strcmp(status, "accepted") == 0 || strcmp(status, "submitting") == 0)
            out->kind = DLQ_RECEIPT_OPEN;
        else if (!carrier_took_it &&
                 (strcmp(status, "failed") == 0 || strcmp(status, "rejected") == 0 ||
                  strcmp(status, "expired") == 0))
            out->kind = DLQ_RECEIPT_RESENDABLE;
        else
            out->kind = DLQ_RECEIPT_SENT;
    }
    PQclear(res);
    return NUDGEL_OK;
}

void nudgel_admin_resend_id(const char *original, int generation, char out[NUDGEL_UUID_STR_LEN + 1])
{
    uint8_t digest[SHA256_DIGEST_LENGTH];
    char input[128];
    int n = snprintf(input, sizeof(input), "nudgel-resend\n%s\n%d", original, generation);
    SHA256((const unsigned char *)input, n > 0 ? (size_t)n : 0, digest);
    /* RFC 9562 UUIDv8: custom content, version 8, variant 10 (as event ids). */
    digest[6] = (uint8_t)(0x80 | (digest[6] & 0x0f));
    digest[8] = (uint8_t)(0x80 | (digest[8] & 0x3f));
    nudgel_uuid_format(digest, out);
}

/* The original job with the new id, no idempotency key, created now: canonical bytes. */
static nudgel_err_t rewrite_job(const char *bytes, size_t len, const char *new_id, char **job,
                                size_t *job_len, char *errstr, size_t errstr_size)
{
    json_error_t jerr;
    char when[NUDGEL_RFC3339_MAX];
    nudgel_job_canonical_t canon = {0};
    nudgel_field_error_t ferr = {{0}, {0}};
    nudgel_err_t err = NUDGEL_OK;
    char *text = NULL;
    json_t *doc = json_loadb(bytes, len, 0, &jerr);
    if (!json_is_object(doc)) {
        snprintf(errstr, errstr_size, "the dead letter is no message job: %s",
                 doc ? "not an object" : jerr.text);
        err = NUDGEL_ERR_INVALID_JSON;
        goto out;
    }
    nudgel_rfc3339_format(nudgel_now_unix_ms(), when);
    json_object_del(doc, "idempotency_key");
    if (json_object_set_new(doc, "id", json_string(new_id)) != 0 ||
        json_object_set_new(doc, "created_at", json_string(when)) != 0 ||
        !(text = json_dumps(doc, JSON_COMPACT))) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    nudgel_job_parse_opts_t opts = {.normalise_to = true};
    err = nudgel_message_job_canonicalize(text, strlen(text), &opts, &canon, &ferr);
    if (err != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "the dead letter is no valid message job: %s: %s", ferr.field,
                 ferr.reason);
        goto out;
    }
    *job = canon.bytes;
    *job_len = canon.len;
out:
    free(text);
    json_decref(doc);
    return err;
}

nudgel_err_t dlq_pg_resend(dlq_pg_t *pg, const char *bytes, size_t len, const char *original,
                           int generation, char **job, size_t *job_len,
                           char new_id[NUDGEL_UUID_STR_LEN + 1], char *errstr, size_t errstr_size)
{
    char gen[16];
    *job = NULL;
    *job_len = 0;
    nudgel_admin_resend_id(original, generation, new_id);
    nudgel_err_t err = rewrite_job(bytes, len, new_id, job, job_len, errstr, errstr_size);
    if (err == NUDGEL_OK)
        err = ensure(pg, errstr, errstr_size);
    if (err != NUDGEL_OK)
        goto fail;
    snprintf(gen, sizeof(gen), "%d", generation);
    const char *values[3] = {original, new_id, gen};
    PGresult *res = PQexecParams(pg->conn, resend_sql, 3, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = failed(pg, res, "creating the resend's receipt", errstr, errstr_size);
        goto fail;
    }
    PQclear(res);
    return NUDGEL_OK;
fail:
    free(*job);
    *job = NULL;
    return err;
}
