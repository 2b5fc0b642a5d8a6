/*
 * receipts_pg.c — the libpq plumbing shared by the claims (receipt_claims.c)
 * and the records (receipt_records.c) of the receipts store: error text on
 * one line and the class of a failed statement, typed reads of result
 * fields, the uuid[] literal of a batch of message ids, and the one result
 * of a statement sent on a blocking connection. See receipts_pg.h.
 */
#include "receipts_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/pg.h"
#include "nudgel/uuid.h"

/* Sets errstr from libpq's message on one line; never quotes the DSN. */
void receipts_set_err(char *errstr, size_t errstr_size, const char *what, const char *message)
{
    if (!errstr_size)
        return;
    snprintf(errstr, errstr_size, "%s: %s", what, message && *message ? message : "unknown error");
    size_t len = strlen(errstr);
    while (len && (errstr[len - 1] == '\n' || errstr[len - 1] == ' '))
        errstr[--len] = '\0';
    for (char *p = errstr; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/*
 * Classifies a failed statement by the fleet's one mapping
 * (nudgel_pg_result_err(): a lost connection, no result, SQLSTATE class 08
 * or 57P01..57P03 → NUDGEL_ERR_PG_UNREACHABLE); a result that succeeded but
 * is not what was expected is NUDGEL_ERR_PG.
 */
nudgel_err_t receipts_pg_fail(PGconn *conn, const PGresult *res, const char *what, char *errstr,
                              size_t errstr_size)
{
    const char *message = res ? PQresultErrorMessage(res) : NULL;
    if (!message || !*message)
        message = PQerrorMessage(conn);
    receipts_set_err(errstr, errstr_size, what, message);
    nudgel_err_t err = nudgel_pg_result_err(conn, res);
    return err == NUDGEL_OK ? NUDGEL_ERR_PG : err;
}

void receipts_copy_field(char *dst, size_t dst_size, const PGresult *res, int row, int col)
{
    snprintf(dst, dst_size, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

int64_t receipts_int_field(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

nudgel_err_t receipts_state_field(const PGresult *res, int row, int col,
                                  nudgel_receipt_state_t *out, char *errstr, size_t errstr_size)
{
    char reason[96];
    if (nudgel_receipt_state_parse(PQgetvalue(res, row, col), out, reason, sizeof(reason)) !=
        NUDGEL_OK) {
        receipts_set_err(errstr, errstr_size, "receipts: stored status", reason);
        return NUDGEL_ERR_PG;
    }
    return NUDGEL_OK;
}

nudgel_err_t receipts_read_row(const PGresult *res, int row, int c, nudgel_receipt_t *r,
                               char *errstr, size_t errstr_size)
{
    memset(r, 0, sizeof(*r));
    receipts_copy_field(r->message_id, sizeof(r->message_id), res, row, c + 0);
    receipts_copy_field(r->tenant_id, sizeof(r->tenant_id), res, row, c + 1);
    receipts_copy_field(r->idempotency_key, sizeof(r->idempotency_key), res, row, c + 2);
    receipts_copy_field(r->to_e164, sizeof(r->to_e164), res, row, c + 3);
    receipts_copy_field(r->country, sizeof(r->country), res, row, c + 4);
    receipts_copy_field(r->operator_name, sizeof(r->operator_name), res, row, c + 5);
    nudgel_err_t err = receipts_state_field(res, row, c + 6, &r->status, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    r->attempt = (int)receipts_int_field(res, row, c + 7);
    receipts_copy_field(r->client_ref, sizeof(r->client_ref), res, row, c + 8);
    receipts_copy_field(r->claimed_by, sizeof(r->claimed_by), res, row, c + 9);
    receipts_copy_field(r->gateway, sizeof(r->gateway), res, row, c + 10);
    receipts_copy_field(r->gateway_message_id, sizeof(r->gateway_message_id), res, row, c + 11);
    receipts_copy_field(r->error_code, sizeof(r->error_code), res, row, c + 12);
    receipts_copy_field(r->error_message, sizeof(r->error_message), res, row, c + 13);
    receipts_copy_field(r->encoding, sizeof(r->encoding), res, row, c + 14);
    r->segments = (int)receipts_int_field(res, row, c + 15);
    receipts_copy_field(r->cost_amount, sizeof(r->cost_amount), res, row, c + 16);
    receipts_copy_field(r->cost_currency, sizeof(r->cost_currency), res, row, c + 17);
    receipts_copy_field(r->trace_id, sizeof(r->trace_id), res, row, c + 18);
    r->created_at_ms = receipts_int_field(res, row, c + 19);
    r->submitted_at_ms = receipts_int_field(res, row, c + 20);
    r->final_at_ms = receipts_int_field(res, row, c + 21);
    r->updated_at_ms = receipts_int_field(res, row, c + 22);
    receipts_copy_field(r->resent_from, sizeof(r->resent_from), res, row, c + 23);
    return NUDGEL_OK;
}

int receipts_set_opt(json_t *obj, const char *key, const char *value)
{
    return value ? json_object_set_new(obj, key, json_string(value)) : 0;
}

/* A Postgres uuid[] literal of @p n ids (checked to be UUID text); NULL on error. */
char *receipts_uuid_array(const char *const *ids, size_t n, char *errstr, size_t errstr_size)
{
    char *array = malloc(2 + n * (NUDGEL_UUID_STR_LEN + 1) + 1);
    size_t len = 0;
    if (!array) {
        receipts_set_err(errstr, errstr_size, "receipts", "out of memory");
        return NULL;
    }
    array[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        size_t l = ids[i] ? strlen(ids[i]) : 0;
        if (l != NUDGEL_UUID_STR_LEN || strspn(ids[i], "0123456789abcdefABCDEF-") != l) {
            free(array);
            receipts_set_err(errstr, errstr_size, "receipts", "not a UUID message id");
            return NULL;
        }
        if (i)
            array[len++] = ',';
        memcpy(array + len, ids[i], l);
        len += l;
    }
    array[len++] = '}';
    array[len] = '\0';
    return array;
}

/*
 * The result of the one statement sent on a blocking @p conn (waits for
 * it); the connection is drained so it is idle again. Caller clears it.
 */
PGresult *receipts_wait_result(PGconn *conn)
{
    PGresult *res = PQgetResult(conn), *extra;
    while ((extra = PQgetResult(conn)))
        PQclear(extra);
    return res;
}
