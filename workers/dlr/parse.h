/*
 * parse.h — a carrier's delivery-report callback body to normalised
 * reports (carrier DLR v1, schemas/carrier.dlr.v1.schema.json). One parser
 * per dialect, each in a file named after it (parse_africastalking.c,
 * parse_infobip.c, parse_generic.c); parse.c holds what they share: the
 * report, the status names of the contract, message-id normalisation, the
 * record's JSON, and the dispatch by dialect.
 *
 * A body is taken whole or refused whole: any malformed report refuses the
 * request (400 with the reason), so nothing of a bad request is produced and
 * the carrier's retry of a fixed body cannot double half of it.
 *
 * Status table (the carrier's text is kept unchanged in raw_status):
 *
 *   Africa's Talking status   Success → delivered; Failed → undelivered;
 *                             Rejected → rejected; Sent, Submitted → sent;
 *                             Buffered → buffered (the last three are
 *                             intermediate, never final); anything else →
 *                             unknown.
 *   Infobip status.groupName  DELIVERED → delivered, except status id 2 /
 *   (else groupId)            DELIVERED_TO_OPERATOR → sent (intermediate);
 *                             PENDING (1) → sent; UNDELIVERABLE (2) →
 *                             undelivered; EXPIRED (4) → expired; REJECTED
 *                             (5) → rejected; anything else → unknown.
 *   generic                   the gateway's dlr.statuses lists (default:
 *                             each contract status maps from its own name,
 *                             plus accepted/queued → sent); else unknown.
 *
 * Message ids (the Kafka key and what receipts match on) are normalised per
 * dialect before use: surrounding white space is dropped everywhere;
 * Infobip ids shaped like a UUID (ours: we send our message id as
 * Infobip's messageId) are lower-cased; Africa's Talking ids keep their case
 * (ATXid_... is what the send answer stored); generic ids follow the
 * gateway's dlr.message_id_case (preserve, lower, upper). An id that is
 * empty, longer than DLR_ID_MAX bytes or holds a control character refuses
 * the request.
 *
 * Threads: every function is pure and reentrant.
 */
#ifndef NUDGEL_DLR_PARSE_H
#define NUDGEL_DLR_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nudgel/gateway.h"
#include "nudgel/timeutil.h"

#define DLR_ID_MAX        128 /* bytes of a gateway message id (the schema's maxLength) */
#define DLR_BATCH_MAX     100 /* reports in one callback (Infobip sends up to 100) */
#define DLR_STATUS_MAX    64  /* bytes of a raw status kept */
#define DLR_ERROR_MSG_MAX 256 /* bytes of an error text kept */
#define DLR_TO_MAX        32  /* bytes of a recipient (the schema's maxLength) */
#define DLR_FIELDS_MAX    32  /* form fields of one Africa's Talking callback */

typedef enum dlr_status {
    DLR_STATUS_SENT = 0,
    DLR_STATUS_BUFFERED,
    DLR_STATUS_DELIVERED,
    DLR_STATUS_UNDELIVERED,
    DLR_STATUS_EXPIRED,
    DLR_STATUS_REJECTED,
    DLR_STATUS_FAILED,
    DLR_STATUS_UNKNOWN,
} dlr_status_t;

#define DLR_STATUS_COUNT 8

typedef enum dlr_id_case {
    DLR_ID_CASE_PRESERVE = 0,
    DLR_ID_CASE_LOWER,
    DLR_ID_CASE_UPPER,
    DLR_ID_CASE_UUID_LOWER, /* lower-case only ids shaped like a UUID (Infobip) */
} dlr_id_case_t;

/** One normalised report. Empty strings mean "not given". */
typedef struct dlr_report {
    char gateway_message_id[DLR_ID_MAX + 1];
    char message_id[37]; /* ours (a lower-case UUID) when the carrier echoed it */
    dlr_status_t status;
    char raw_status[DLR_STATUS_MAX + 1];
    bool has_error;
    char error_code[DLR_STATUS_MAX + 1];
    char error_message[DLR_ERROR_MSG_MAX + 1];
    bool has_permanent, permanent;
    char to[DLR_TO_MAX + 1];
    char network_code[7]; /* 5 or 6 digits */
    char done_at[NUDGEL_RFC3339_MAX];
    bool has_cost;
    char cost_amount[32]; /* a decimal string */
    char cost_currency[4];
    int segments; /* -1: not given */
} dlr_report_t;

/** The generic dialect's delivery-report settings (from the gateway's "dlr" object). */
typedef struct dlr_generic_cfg {
    char *results_pointer; /* "": the body is one report; else the array of reports */
    char *message_id_pointer, *status_pointer, *to_pointer, *error_code_pointer;
    char *error_message_pointer, *network_code_pointer, *done_at_pointer, *client_ref_pointer;
    char **statuses[DLR_STATUS_COUNT]; /* NULL-terminated lists of carrier values */
    dlr_id_case_t id_case;
} dlr_generic_cfg_t;

/** @brief The contract's name of @p s ("delivered", ...). Static. */
const char *dlr_status_name(dlr_status_t s);

/**
 * @brief Normalises the message id @p in (@p len bytes) into @p out as
 * described on top. @returns 0, or -1 with the reason in @p errstr.
 */
int dlr_id_normalise(const char *in, size_t len, dlr_id_case_t id_case, char out[DLR_ID_MAX + 1],
                     char *errstr, size_t errstr_size);

/**
 * @brief Reads the generic dialect's keys of a gateway's "dlr" object @p obj
 * (borrowed) into @p cfg (owned by the caller: dlr_generic_cfg_clear).
 * @returns 0, or -1 with "dlr.key: problem" in @p errstr.
 */
int dlr_generic_cfg_parse(const json_t *obj, dlr_generic_cfg_t *cfg, char *errstr,
                          size_t errstr_size);
void dlr_generic_cfg_clear(dlr_generic_cfg_t *cfg);

/* The keys dlr_generic_cfg_parse() reads, NULL-terminated (for the unknown-key check). */
extern const char *const dlr_generic_keys[];

/**
 * @brief Parses a callback body of @p dialect. @p generic is the gateway's
 * generic settings (NULL for the other dialects). Fills up to
 * DLR_BATCH_MAX reports into @p out and their count into @p n.
 * @returns 0, or -1 with a reason fit for a 400 answer in @p errstr
 * (never a secret; it names the field and the report's index).
 */
int dlr_parse(nudgel_gateway_dialect_t dialect, const dlr_generic_cfg_t *generic, const char *body,
              size_t len, dlr_report_t out[DLR_BATCH_MAX], size_t *n, char *errstr,
              size_t errstr_size);

/* The dialects (same contract as dlr_parse). */
int dlr_parse_africastalking(const char *body, size_t len, dlr_report_t out[DLR_BATCH_MAX],
                             size_t *n, char *errstr, size_t errstr_size);
int dlr_parse_infobip(const char *body, size_t len, dlr_report_t out[DLR_BATCH_MAX], size_t *n,
                      char *errstr, size_t errstr_size);
int dlr_parse_generic(const dlr_generic_cfg_t *cfg, const char *body, size_t len,
                      dlr_report_t out[DLR_BATCH_MAX], size_t *n, char *errstr, size_t errstr_size);

/**
 * @brief The carrier DLR v1 record of @p r, compact JSON: @p gateway and
 * @p dialect (names), @p received_at (RFC 3339). @returns a malloc'd
 * NUL-terminated string the caller frees, or NULL on ENOMEM.
 */
char *dlr_report_json(const dlr_report_t *r, const char *gateway, const char *dialect,
                      const char *received_at);

/* ---- helpers the dialect parsers share (parse.c) ------------------------ */

/** A blank report (segments -1). */
void dlr_report_init(dlr_report_t *r);

/** Copies printable text (control bytes → '?'), cut at @p size - 1 bytes. */
void dlr_copy_text(char *dst, size_t size, const char *src, size_t n);

/** Sets r->message_id when @p s is a UUID (any case; stored lower-case). */
void dlr_take_uuid(dlr_report_t *r, const char *s);

/** Sets r->network_code when @p s is 5 or 6 digits; false otherwise (left empty). */
bool dlr_take_network_code(dlr_report_t *r, const char *s);

/**
 * Sets r->done_at from a carrier timestamp: RFC 3339, or Infobip's
 * "2019-08-09T17:00:00.000+0000" (offset without a colon). @returns false
 * (left empty) when it does not read as one.
 */
bool dlr_take_time(dlr_report_t *r, const char *s);

/** Sets r->cost from an amount (a JSON number or decimal string) and an ISO 4217 code. */
bool dlr_take_cost(dlr_report_t *r, const json_t *amount, const char *currency);

/** "where: fmt" into @p errstr; returns -1. */
int dlr_fail(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
