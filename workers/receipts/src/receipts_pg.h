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
#include "nudgel/receipts.h"

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

/* Epoch milliseconds of a timestamp column (0 when NULL). */
#define RECEIPTS_MS(col) "coalesce((extract(epoch from " col ") * 1000)::bigint, 0)"

/*
 * The columns of a message_receipts row @p r (a table alias, or a composite
 * "(x.receipt)"), in the order receipts_read_row() reads them: every
 * statement that hands a receipt back selects these, so one reader serves
 * the claims, the DLR application and the outbox.
 */
#define RECEIPTS_ROW_COLS(r)                                                                       \
    r ".message_id::text, " r ".tenant_id, coalesce(" r ".idempotency_key, ''), coalesce(" r       \
      ".to_e164, ''), coalesce(" r ".country, ''), coalesce(" r ".operator, ''), " r ".status, " r \
      ".attempt, coalesce(" r ".client_ref, ''), coalesce(" r ".claimed_by, ''), coalesce(" r      \
      ".gateway, ''), coalesce(" r ".gateway_message_id, ''), coalesce(" r ".error_code, ''), "    \
      "coalesce(" r ".error_message, ''), coalesce(" r ".encoding, ''), coalesce(" r               \
      ".segments, -1), coalesce(" r ".cost_amount::text, ''), coalesce(" r                         \
      ".cost_currency, ''), coalesce(" r                                                           \
      ".trace_id, ''), " RECEIPTS_MS(r ".created_at") ", " RECEIPTS_MS(                            \
          r                                                                                        \
          ".submitted_at") ", " RECEIPTS_MS(r                                                      \
                                            ".final_at") ", " RECEIPTS_MS(r                        \
                                                                          ".updated_at") ", "      \
                                                                                         "coalesc" \
                                                                                         "e(" r    \
                                                                                         ".resent" \
                                                                                         "_from::" \
                                                                                         "text, "  \
                                                                                         "'')"
#define RECEIPTS_ROW_NCOLS 24

/**
 * Reads RECEIPTS_ROW_COLS from column @p col of row @p row into @p r.
 * @returns NUDGEL_OK, or NUDGEL_ERR_PG with @p errstr (a status that is not one).
 */
nudgel_err_t receipts_read_row(const PGresult *res, int row, int col, nudgel_receipt_t *r,
                               char *errstr, size_t errstr_size);

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
