/*
 * nudgel/webhooks/signature.h — Standard Webhooks v1 signing.
 *
 * The signed content is "<webhook-id>.<webhook-timestamp>.<raw body>", the
 * MAC is HMAC-SHA256 keyed with the bytes of the endpoint secret
 * ("whsec_<base64>"), and the header value is "v1,<base64 MAC>". While a
 * secret is being rotated, the header carries one signature per live secret,
 * separated by spaces; a receiver accepts the message when any one matches.
 *
 * Key material lives in nudgel_wh_key_t values the caller owns; wipe them
 * with nudgel_wh_key_cleanse() when done. Nothing here logs.
 */
#ifndef NUDGEL_WEBHOOKS_SIGNATURE_H
#define NUDGEL_WEBHOOKS_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/error.h"

#define NUDGEL_WH_SECRET_PREFIX   "whsec_"
#define NUDGEL_WH_SECRET_BYTES    32  /* bytes of a newly generated secret */
#define NUDGEL_WH_KEY_MAX         64  /* longest secret (decoded) accepted */
#define NUDGEL_WH_SECRET_TEXT_MAX 128 /* "whsec_" + base64 of NUDGEL_WH_KEY_MAX, with NUL */
#define NUDGEL_WH_SIGNATURE_MAX   48  /* "v1," + 44 base64 characters + NUL */

/** The decoded bytes of one signing secret. A plain value: copy, then cleanse. */
typedef struct nudgel_wh_key {
    unsigned char bytes[NUDGEL_WH_KEY_MAX];
    size_t len;
} nudgel_wh_key_t;

/**
 * @brief Decodes a secret "whsec_<base64>" (the prefix is optional, as the
 * reference libraries accept) into key bytes.
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_FIELD with the reason in
 * @p errstr (never the secret itself): bad base64, empty, or longer than
 * NUDGEL_WH_KEY_MAX bytes.
 */
nudgel_err_t nudgel_wh_secret_decode(const char *secret, nudgel_wh_key_t *key, char *errstr,
                                     size_t errstr_size);

/**
 * @brief Generates a new secret: "whsec_" + base64 of NUDGEL_WH_SECRET_BYTES
 * bytes from OpenSSL's RAND_bytes, NUL-terminated in @p out.
 * @returns NUDGEL_OK, NUDGEL_ERR_INVALID_ARG when @p out_size is below
 * NUDGEL_WH_SECRET_TEXT_MAX, NUDGEL_ERR_IO when the random generator failed.
 * The caller should OPENSSL_cleanse() @p out once it is sealed and shown.
 */
nudgel_err_t nudgel_wh_secret_generate(char *out, size_t out_size);

/**
 * @brief One signature "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>"
 * into @p out. @p body may hold any bytes (@p body_len of them).
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_ARG for a NULL or empty key or id.
 */
nudgel_err_t nudgel_wh_sign(const nudgel_wh_key_t *key, const char *msg_id, int64_t timestamp_s,
                            const void *body, size_t body_len, char out[NUDGEL_WH_SIGNATURE_MAX]);

/**
 * @brief The webhook-signature header value for @p key_count keys (1 or
 * more; during rotation the current key first, then the previous one): the
 * signatures separated by single spaces, NUL-terminated in @p out.
 * @returns NUDGEL_OK, NUDGEL_ERR_INVALID_ARG for no keys, or
 * NUDGEL_ERR_TOO_LARGE when @p out_size cannot hold
 * key_count * NUDGEL_WH_SIGNATURE_MAX bytes.
 */
nudgel_err_t nudgel_wh_signature_header(const nudgel_wh_key_t *keys, size_t key_count,
                                        const char *msg_id, int64_t timestamp_s, const void *body,
                                        size_t body_len, char *out, size_t out_size);

/**
 * @brief What a receiver does (used by tests and the webhook sink): checks
 * that |@p now_s - @p timestamp_s| <= @p tolerance_s and that some "v1,"
 * signature of @p header matches some key of @p keys (constant-time compare).
 * Entries of other versions are skipped.
 * @returns NUDGEL_OK when verified; NUDGEL_ERR_TIMED_OUT when the timestamp
 * is outside the tolerance; NUDGEL_ERR_INVALID_FIELD when no signature
 * matches; the reason in @p errstr.
 */
nudgel_err_t nudgel_wh_verify(const char *header, const nudgel_wh_key_t *keys, size_t key_count,
                              const char *msg_id, int64_t timestamp_s, const void *body,
                              size_t body_len, int64_t now_s, int64_t tolerance_s, char *errstr,
                              size_t errstr_size);

/** @brief Wipes @p key (OPENSSL_cleanse) so no copy of the secret lingers. */
void nudgel_wh_key_cleanse(nudgel_wh_key_t *key);

#endif
