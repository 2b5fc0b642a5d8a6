/*
 * nudgel/receipt_dlrs.h — carrier delivery reports against the receipts
 * store (DESIGN §5, issue 11), for nudgel-receipts: the normalised record of
 * nudgel.carrier-dlr.v1 (schemas/carrier.dlr.v1.schema.json) parsed into a
 * fixed-size struct, what it asks of a receipt (a final state, or nothing:
 * an intermediate report), the decision table the SQL applies under the row
 * lock, the per-gateway expiry windows, and the updater's statements, each
 * as a send half and a read half for the event loop (nudgel/pgconn.h).
 *
 * The decisions live in SQL (schemas/postgres/004_receipts_dlr.sql:
 * nudgel.receipt_apply_report()), decided under the receipt's row lock;
 * nudgel_dlr_decide() and nudgel_dlr_expiry_due() are the same rules in C,
 * for the unit tests and for logs, kept equal to it.
 *
 * Errors: as nudgel/receipts.h (NUDGEL_ERR_PG_UNREACHABLE: the connection
 * went away, reconnect and send again; NUDGEL_ERR_PG: the statement's own
 * failure; NUDGEL_ERR_INVALID_ARG / _INVALID_FIELD with errstr).
 * Threads: pure functions any thread; a connection one thread at a time.
 */
#ifndef NUDGEL_RECEIPT_DLRS_H
#define NUDGEL_RECEIPT_DLRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "nudgel/error.h"
#include "nudgel/receipt_state.h"
#include "nudgel/receipts.h"

#define NUDGEL_DLR_MAX_BYTES     (16 * 1024) /* a carrier DLR v1 record larger is malformed */
#define NUDGEL_DLR_SOURCE_MAX    320         /* "topic/partition/offset" */
#define NUDGEL_DLR_EXPIRY_GW_MAX 64          /* gateways with their own expiry window */

/** The normalised status of carrier DLR v1. */
typedef enum nudgel_dlr_status {
    NUDGEL_DLR_SENT = 0,
    NUDGEL_DLR_BUFFERED,
    NUDGEL_DLR_DELIVERED,
    NUDGEL_DLR_UNDELIVERED,
    NUDGEL_DLR_EXPIRED,
    NUDGEL_DLR_REJECTED,
    NUDGEL_DLR_FAILED,
    NUDGEL_DLR_UNKNOWN,
} nudgel_dlr_status_t;

#define NUDGEL_DLR_STATUS_COUNT 8

/** @brief The schema's name of @p s ("delivered"); "unknown" outside the enum. */
const char *nudgel_dlr_status_name(nudgel_dlr_status_t s);

/** One report; strings are "" when absent. */
typedef struct nudgel_dlr_report {
    char gateway[65];
    char gateway_message_id[129];
    nudgel_dlr_status_t status;
    char raw_status[64];
    char dialect[16];
    char message_id[37];
    char error_code[64];
    char error_message[256];
    int error_permanent; /* 1, 0, or -1 when not said */
    char to[33];
    char network_code[7];
    char operator_name[64]; /* from network_code by the numbering plan; "" when unknown */
    char price_amount[24];  /* decimal text; "" when none or out of numeric(14,6) */
    char price_currency[4];
    char done_at[40];                   /* RFC 3339 as given */
    char received_at[40];               /* RFC 3339 as given */
    char source[NUDGEL_DLR_SOURCE_MAX]; /* the record's topic/partition/offset (the caller's) */
} nudgel_dlr_report_t;

/**
 * @brief Parses a carrier DLR v1 record (@p json, @p len bytes) into @p out.
 * Unknown keys are ignored (a newer receiver may add optional ones); the
 * required ones and every known key's type are checked.
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_FIELD / _INVALID_JSON /
 * _TOO_LARGE with "field: problem" in @p errstr. out->source is left "".
 */
nudgel_err_t nudgel_dlr_parse(const char *json, size_t len, nudgel_dlr_report_t *out, char *errstr,
                              size_t errstr_size);

/**
 * @brief What @p r asks of its receipt. @returns true with @p *target a
 * final state (delivered; undelivered for undelivered, rejected and failed;
 * expired), or false for an intermediate report that moves nothing: sent,
 * buffered, unknown — and, whatever the normalised status says, the raw
 * statuses carriers document as intermediate (Africa's Talking Sent,
 * Submitted, Buffered; Infobip PENDING_*, DELIVERED_TO_OPERATOR).
 */
bool nudgel_dlr_target(const nudgel_dlr_report_t *r, nudgel_receipt_state_t *target);

/** What a report did. */
typedef enum nudgel_dlr_outcome {
    NUDGEL_DLR_PENDING = 0,  /* no sent receipt yet: kept, applied when it lands */
    NUDGEL_DLR_INTERMEDIATE, /* no move; reported network and price recorded */
    NUDGEL_DLR_APPLIED,      /* moved, history row, event */
    NUDGEL_DLR_UNCHANGED,    /* already in that state (a replay): event again, same id */
    NUDGEL_DLR_REFUSED,      /* backwards or sideways (a late report): nothing moves */
    NUDGEL_DLR_UNMATCHED,    /* kept until its TTL and its receipt never came */
} nudgel_dlr_outcome_t;

#define NUDGEL_DLR_OUTCOME_COUNT 6

/** @brief "pending", "intermediate", "applied", "unchanged", "refused", "unmatched". */
const char *nudgel_dlr_outcome_name(nudgel_dlr_outcome_t o);

/**
 * @brief The decision of nudgel.receipt_apply_report(): @p found is whether
 * a receipt has the report's (gateway, gateway_message_id), @p current its
 * state, @p final / @p target what nudgel_dlr_target() said.
 */
nudgel_dlr_outcome_t nudgel_dlr_decide(bool found, nudgel_receipt_state_t current, bool final,
                                       nudgel_receipt_state_t target);

/** The expiry windows: a default and some gateways' own. */
typedef struct nudgel_dlr_expiry {
    int64_t default_s;
    size_t count;
    struct {
        char gateway[65];
        int64_t window_s;
    } items[NUDGEL_DLR_EXPIRY_GW_MAX];
} nudgel_dlr_expiry_t;

/**
 * @brief Windows from @p default_s and @p spec ("gw-a=3600,gw-b=86400"; NULL
 * or "": none). @returns NUDGEL_OK, or NUDGEL_ERR_CONFIG with the reason.
 */
nudgel_err_t nudgel_dlr_expiry_parse(int64_t default_s, const char *spec, nudgel_dlr_expiry_t *out,
                                     char *errstr, size_t errstr_size);

/** @brief The window of @p gateway (its own, else the default), in seconds. */
int64_t nudgel_dlr_expiry_window_s(const nudgel_dlr_expiry_t *e, const char *gateway);

/**
 * @brief Whether a receipt in @p status on @p gateway submitted at
 * @p submitted_at_ms is due to expire at @p now_ms: sent only, and its
 * window over (the sweep's rule).
 */
bool nudgel_dlr_expiry_due(const nudgel_dlr_expiry_t *e, const char *gateway,
                           nudgel_receipt_state_t status, int64_t submitted_at_ms, int64_t now_ms);

/* ---- statements (send, then read the one result; see nudgel/receipts.h) ---- */

/** One report's result, or one outbox row's receipt. */
typedef struct nudgel_dlr_applied {
    nudgel_dlr_outcome_t outcome;
    nudgel_receipt_state_t from; /* before (not for PENDING) */
    nudgel_receipt_t receipt;    /* after (not for PENDING) */
    json_t *metadata;            /* the receipt's metadata, owned; NULL when none */
} nudgel_dlr_applied_t;

/** @brief Drops what @p a owns (its metadata). */
void nudgel_dlr_applied_clear(nudgel_dlr_applied_t *a);

/**
 * @brief Sends nudgel.receipt_apply_dlrs() for @p n reports (1..
 * NUDGEL_RECEIPTS_BATCH_MAX; each with its source), in order; reports kept
 * pending expire after @p pending_ttl_s.
 */
nudgel_err_t nudgel_dlr_apply_send(PGconn *conn, const nudgel_dlr_report_t *const *reports,
                                   size_t n, int64_t pending_ttl_s, char *errstr,
                                   size_t errstr_size);

/** @brief Reads its result into @p out[0..n) (clear each with nudgel_dlr_applied_clear()). */
nudgel_err_t nudgel_dlr_apply_read(PGconn *conn, const PGresult *res, size_t n,
                                   nudgel_dlr_applied_t *out, char *errstr, size_t errstr_size);

/**
 * @brief Sends the pending sweep (nudgel.receipt_apply_pending(@p limit));
 * with @p count, also counts the reports kept (a scan of them all).
 */
nudgel_err_t nudgel_dlr_pending_send(PGconn *conn, int limit, bool count, char *errstr,
                                     size_t errstr_size);

/** Pending reports are counted up to this many (a bounded scan, however large the backlog). */
#define NUDGEL_DLR_PENDING_COUNT_MAX 1000000

/**
 * @brief Reads it: reports applied now, reports dropped unmatched after their
 * TTL, reports looked at (those due for a look, up to the limit: a full batch
 * means more may be due), and (@p waiting, may be NULL) the reports still
 * kept waiting for their sent outcome after this sweep (as of its start, at
 * most NUDGEL_DLR_PENDING_COUNT_MAX; -1 when the sweep did not count them).
 */
nudgel_err_t nudgel_dlr_pending_read(PGconn *conn, const PGresult *res, int *applied,
                                     int *unmatched, int *looked, int64_t *waiting, char *errstr,
                                     size_t errstr_size);

/**
 * @brief Sends the expiry sweep: up to @p limit sent receipts past their
 * gateway's window move to expired (error dlr_timeout), with history and
 * outbox rows, in one statement.
 */
nudgel_err_t nudgel_dlr_expire_send(PGconn *conn, const nudgel_dlr_expiry_t *e, int limit,
                                    char *errstr, size_t errstr_size);

/** @brief Reads it: receipts expired. */
nudgel_err_t nudgel_dlr_expire_read(PGconn *conn, const PGresult *res, int *expired, char *errstr,
                                    size_t errstr_size);

/**
 * @brief Sends the claim of up to @p limit outbox rows not claimed now (for
 * @p claim_s seconds), with their receipts.
 */
nudgel_err_t nudgel_dlr_outbox_claim_send(PGconn *conn, int limit, int claim_s, char *errstr,
                                          size_t errstr_size);

/**
 * @brief Reads it into @p out (at most @p cap rows; outcome APPLIED,
 * receipt.status the event's status). @returns NUDGEL_OK with @p *n.
 */
nudgel_err_t nudgel_dlr_outbox_claim_read(PGconn *conn, const PGresult *res,
                                          nudgel_dlr_applied_t *out, size_t cap, size_t *n,
                                          char *errstr, size_t errstr_size);

/** @brief Sends the delete of @p n published outbox rows (message id, status). */
nudgel_err_t nudgel_dlr_outbox_delete_send(PGconn *conn, const char *const *message_ids,
                                           const char *const *statuses, size_t n, char *errstr,
                                           size_t errstr_size);

/** @brief Reads it. */
nudgel_err_t nudgel_dlr_outbox_delete_read(PGconn *conn, const PGresult *res, char *errstr,
                                           size_t errstr_size);

#endif
