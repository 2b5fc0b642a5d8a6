/*
 * sim_common.h — pieces every part of the carrier simulator shares: the
 * dialect enum, a capped growable buffer, a small fast RNG, number
 * normalisation, segment counting, prices and ids.
 *
 * Nothing here touches the network or global state, so all of it is unit
 * tested (tests/carrier-sim/test_carrier_sim.c).
 */
#ifndef NUDGEL_SIM_COMMON_H
#define NUDGEL_SIM_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sim_dialect {
    SIM_DIALECT_AT = 0, /* Africa's Talking */
    SIM_DIALECT_INFOBIP,
    SIM_DIALECT_GENERIC,
    SIM_DIALECT_KANNEL,
    SIM_DIALECT_COUNT,
} sim_dialect_t;

/** @brief "at", "infobip", "generic" or "kannel" (the config section names). */
const char *sim_dialect_name(sim_dialect_t d);

/* A growable byte buffer with a hard cap; always NUL-terminated when len > 0. */
typedef struct sim_buf {
    char *data; /* owned */
    size_t len, size, cap;
    bool overflow; /* an append hit the cap; the buffer keeps what fitted */
} sim_buf_t;

void sim_buf_init(sim_buf_t *b, size_t cap);
void sim_buf_free(sim_buf_t *b);
/** @returns 0, or -1 when the cap or memory ran out (then b->overflow is set). */
int sim_buf_append(sim_buf_t *b, const void *data, size_t len);
int sim_buf_puts(sim_buf_t *b, const char *s);
int sim_buf_printf(sim_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** @brief Appends @p s with form-urlencoding (RFC 1866: space as '+'). */
int sim_buf_form_escape(sim_buf_t *b, const char *s);

/* splitmix64: tiny, fast, good enough for fault draws and ids; not for secrets. */
typedef struct sim_rng {
    uint64_t state;
} sim_rng_t;

void sim_rng_seed(sim_rng_t *rng, uint64_t seed);
uint64_t sim_rng_next(sim_rng_t *rng);
/** @brief Uniform in [0, n); 0 when n is 0. */
uint32_t sim_rng_below(sim_rng_t *rng, uint32_t n);
/** @brief A per-thread RNG seeded from OpenSSL's RAND_bytes on first use. */
sim_rng_t *sim_rng_thread(void);

/** @brief Writes @p prefix then @p hex_digits random lower-case hex digits (max 64). */
void sim_random_id(sim_rng_t *rng, const char *prefix, size_t hex_digits, char *out,
                   size_t out_size);

#define SIM_NUMBER_MAX 20 /* "+" + 15 digits + NUL, with room */

/**
 * @brief Normalises a destination to "+<digits>": an optional leading '+',
 * then 7 to 15 digits (ASCII spaces around are ignored). Infobip and Kannel
 * send numbers without '+'. @returns 0, or -1 if it is not a number at all.
 */
int sim_number_normalise(const char *in, char out[SIM_NUMBER_MAX]);

/** @brief "KES", "NGN", "UGX" by country code of an E.164 number, else "USD". */
const char *sim_number_currency(const char *e164);
/** @brief Price of one segment in the currency above (simulated tariff). */
double sim_number_price(const char *e164);
/** @brief MCC+MNC of the simulated home operator, e.g. "63902". */
const char *sim_number_mccmnc(const char *e164);

typedef enum sim_encoding {
    SIM_ENC_GSM7,
    SIM_ENC_UCS2,
} sim_encoding_t;

/**
 * @brief Counts the SMS segments of UTF-8 @p text: GSM-7 (extension characters
 * count two septets; 160 single, 153 per part) when every character is in
 * GSM 03.38, else UCS-2 (70 single, 67 per part). Invalid UTF-8 counts as
 * UCS-2, one unit per byte. An empty text is one segment.
 */
int sim_text_segments(const char *text, size_t len, sim_encoding_t *encoding);

/** @brief Lower-case hex SHA-256 of @p data into @p out (65 bytes). */
void sim_sha256_hex(const void *data, size_t len, char out[65]);

/** @brief Constant-time comparison of two NUL-terminated secrets. */
bool sim_secret_equal(const char *given, const char *expected);

#endif
