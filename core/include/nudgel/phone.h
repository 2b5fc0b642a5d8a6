/*
 * nudgel/phone.h — E.164 normalisation and operator lookup for KE, NG, UG.
 *
 * The numbering plan (national significant number patterns and carriers by
 * prefix, from libphonenumber) is config/numbering.json, compiled into the
 * library at build time so neither producers nor workers read a file for it.
 */
#ifndef NUDGEL_PHONE_H
#define NUDGEL_PHONE_H

#include <stddef.h>

#include "nudgel/error.h"

#define NUDGEL_E164_MAX 16 /* '+' and at most 15 digits */

typedef enum nudgel_line_type {
    NUDGEL_LINE_UNKNOWN = 0, /* a country outside our plan: only E.164 shape checked */
    NUDGEL_LINE_MOBILE,
    NUDGEL_LINE_FIXED,
} nudgel_line_type_t;

typedef struct nudgel_phone {
    char e164[NUDGEL_E164_MAX + 1]; /* "+254722000000" */
    char country[3];                /* "KE", "NG", "UG", or "" outside the plan */
    const char *operator_name;      /* static; NULL when unknown */
    nudgel_line_type_t line_type;
} nudgel_phone_t;

/**
 * @brief Normalises a number written in E.164, international (00...) or
 * national format to E.164 and classifies it.
 *
 * @p default_country (ISO alpha-2, may be NULL) is needed for national
 * formats. For KE, NG and UG the number must be a mobile number of the plan
 * (SMS cannot reach fixed lines); other countries only need the E.164 shape.
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_FIELD with a reason in @p errstr.
 */
nudgel_err_t nudgel_phone_normalise(const char *input, const char *default_country,
                                    nudgel_phone_t *out, char *errstr, size_t errstr_size);

/** @brief Whether @p country is one of the plan's countries ("KE", "NG", "UG"). */
int nudgel_phone_country_known(const char *country);

/**
 * @brief Whether the plan names @p operator_name (compared without regard to
 * ASCII case) as an operator of @p country ("Safaricom" for "KE").
 * @returns 1 when it does, 0 otherwise (also for a country outside the plan).
 */
int nudgel_phone_operator_known(const char *country, const char *operator_name);

/**
 * @brief Writes the distinct operator names of @p country, comma-separated
 * ("Airtel, Safaricom, ..."), into @p buf (truncated to @p size, always
 * NUL-terminated when @p size > 0), for error messages.
 * @returns the length the full list needs, as snprintf does.
 */
size_t nudgel_phone_operator_names(const char *country, char *buf, size_t size);

/**
 * @brief The operator of a mobile network code (MCC+MNC, "63902", as a
 * carrier's delivery report gives it) by the plan's table of network codes:
 * "Safaricom", with its country ("KE") in @p country (may be NULL; "" when
 * unknown). @returns a static name, or NULL for a code the plan does not
 * know. Any thread.
 */
const char *nudgel_phone_network_operator(const char *mcc_mnc, char country[3]);

#endif
