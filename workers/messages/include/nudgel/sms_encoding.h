/*
 * nudgel/sms_encoding.h — GSM-7 or UCS-2 for a UTF-8 body, its length in
 * septets or code units, and its segments (DESIGN §6, gateways.md "GSM 03.38
 * and segments").
 *
 * A body is GSM-7 when every character is in the GSM 03.38 basic set (one
 * septet) or extension set (ESC + code, two septets); otherwise it is UCS-2,
 * counted in UTF-16 code units (two for a character outside the BMP). One
 * message holds 160 septets / 70 units; a concatenated part holds 153 / 67.
 * Parts are packed character by character: an escape pair or a surrogate pair
 * never straddles two parts, so a part may hold one unit less than its limit
 * and the segment count is that of the actual packing, not units / 153.
 * Nothing is ever truncated or dropped.
 *
 * Empty body: 1 segment of 0 units, GSM-7 (a job cannot have an empty body;
 * this only keeps the function total).
 *
 * Combining marks (Yoruba tone marks, for example) are separate code points
 * and may land in another part than their base letter; handsets join them.
 *
 * Memory and threads: nothing is allocated; the functions are pure and safe
 * to call from any thread.
 */
#ifndef NUDGEL_SMS_ENCODING_H
#define NUDGEL_SMS_ENCODING_H

#include <stddef.h>

#include "nudgel/error.h"

#define NUDGEL_SMS_GSM7_SINGLE 160 /* septets in a one-part message */
#define NUDGEL_SMS_GSM7_PART   153 /* septets in each part of a concatenated message */
#define NUDGEL_SMS_UCS2_SINGLE 70  /* UTF-16 code units in a one-part message */
#define NUDGEL_SMS_UCS2_PART   67  /* UTF-16 code units in each concatenated part */

typedef enum nudgel_sms_encoding {
    NUDGEL_SMS_GSM7 = 0,
    NUDGEL_SMS_UCS2,
} nudgel_sms_encoding_t;

/** What a body costs on the air. */
typedef struct nudgel_sms_info {
    nudgel_sms_encoding_t encoding;
    size_t units;    /* septets (GSM-7) or UTF-16 code units (UCS-2) */
    size_t segments; /* parts the carrier bills; >= 1 */
} nudgel_sms_info_t;

/** One part of a body: bytes [offset, offset + len) of the UTF-8 text. */
typedef struct nudgel_sms_part {
    size_t offset;
    size_t len;
    size_t units; /* septets or code units in this part */
} nudgel_sms_part_t;

/** @brief "gsm7" or "ucs2". @returns a static string, never NULL. */
const char *nudgel_sms_encoding_name(nudgel_sms_encoding_t encoding);

/**
 * @brief Chooses the encoding of the UTF-8 text @p text (@p len bytes, no NUL
 * needed) and counts its units and segments.
 * @returns NUDGEL_OK and @p out filled; NUDGEL_ERR_INVALID_FIELD (permanent)
 * with the byte offset in @p errstr when the text is not valid UTF-8;
 * NUDGEL_ERR_INVALID_ARG for NULL arguments.
 */
nudgel_err_t nudgel_sms_encoding_measure(const char *text, size_t len, nudgel_sms_info_t *out,
                                         char *errstr, size_t errstr_size);

/**
 * @brief As nudgel_sms_encoding_measure(), and also writes where each part
 * starts and ends, for a gateway adapter that splits itself.
 *
 * @p parts is the caller's array of @p max_parts entries; on success
 * @p info->segments entries are filled (one for a single-part message).
 * @returns NUDGEL_OK; NUDGEL_ERR_TOO_LARGE (permanent) when the text needs
 * more than @p max_parts parts (nothing is truncated; @p info still holds
 * the full counts); otherwise as nudgel_sms_encoding_measure().
 */
nudgel_err_t nudgel_sms_encoding_split(const char *text, size_t len, nudgel_sms_part_t *parts,
                                       size_t max_parts, nudgel_sms_info_t *info, char *errstr,
                                       size_t errstr_size);

#endif
