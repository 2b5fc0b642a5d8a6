/*
 * receipts_pg.h — the libpq plumbing shared by the claims and the records of
 * the receipts store (private to workers/receipts; receipts_pg.c). Errors
 * follow nudgel/receipts.h: NUDGEL_ERR_PG_UNREACHABLE for a lost connection
 * or a server going away, NUDGEL_ERR_PG for any other statement failure.
 */
#ifndef NUDGEL_RECEIPTS_PG_H
#define NUDGEL_RECEIPTS_PG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "nudgel/error.h"
#include "nudgel/receipt_state.h"

/** Sets @p errstr to "what: message" on one line (message from libpq; never the DSN). */
void receipts_set_err(char *errstr, size_t errstr_size, const char *what, const char *message);

/**
 * Classifies a failed statement with nudgel_pg_result_err() (@p res may be
 * NULL when it could not be sent) and sets @p errstr.
 * @returns NUDGEL_ERR_PG_UNREACHABLE or NUDGEL_ERR_PG.
 */
nudgel_err_t receipts_pg_fail(PGconn *conn, const PGresult *res, const char *what, char *errstr,
                              size_t errstr_size);

/** Copies a text field ("" when NULL) into @p dst, truncated to @p dst_size. */
void receipts_copy_field(char *dst, size_t dst_size, const PGresult *res, int row, int col);

/** An integer field; 0 when NULL. */
int64_t receipts_int_field(const PGresult *res, int row, int col);

/** A stored receipt status; NUDGEL_ERR_PG with @p errstr when it is not one. */
nudgel_err_t receipts_state_field(const PGresult *res, int row, int col,
                                  nudgel_receipt_state_t *out, char *errstr, size_t errstr_size);

/** Sets @p key to the string @p value when it is not NULL. @returns 0, or -1 (jansson). */
int receipts_set_opt(json_t *obj, const char *key, const char *value);

/**
 * A Postgres uuid[] literal of @p n ids, each checked to be UUID text.
 * @returns a malloc'd string the caller frees, or NULL with @p errstr.
 */
char *receipts_uuid_array(const char *const *ids, size_t n, char *errstr, size_t errstr_size);

/**
 * The result of the one statement sent on a blocking @p conn (waits for it);
 * the connection is drained so it is idle again. The caller PQclears it.
 */
PGresult *receipts_wait_result(PGconn *conn);

#endif
