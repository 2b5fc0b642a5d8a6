/*
 * signature.c — see nudgel/webhooks/signature.h.
 */
#include "nudgel/webhooks/signature.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>

#define SHA256_LEN 32
#define B64_SHA256 44 /* base64 of 32 bytes, with padding */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
    const char *p = c ? strchr(b64_alphabet, c) : NULL;
    return p ? (int)(p - b64_alphabet) : -1;
}

/*
 * Standard base64 decoding, padding optional, no whitespace. Written out
 * rather than EVP_DecodeBlock because that one cannot tell the caller how
 * many bytes the padding removed, and silently accepts junk after it.
 * Returns the decoded length, or -1 when malformed or longer than @p cap.
 */
static long b64_decode(const char *in, unsigned char *out, size_t cap)
{
    size_t len = strlen(in), o = 0;
    while (len > 0 && in[len - 1] == '=')
        len--;
    if (strlen(in) - len > 2 || len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

nudgel_err_t nudgel_wh_secret_decode(const char *secret, nudgel_wh_key_t *key, char *errstr,
                                     size_t errstr_size)
{
    if (!secret || !key) {
        snprintf(errstr, errstr_size, "no secret given");
        return NUDGEL_ERR_INVALID_ARG;
    }
    size_t plen = strlen(NUDGEL_WH_SECRET_PREFIX);
    if (strncmp(secret, NUDGEL_WH_SECRET_PREFIX, plen) == 0)
        secret += plen;
    if (!*secret) {
        snprintf(errstr, errstr_size, "the secret is empty");
        return NUDGEL_ERR_INVALID_FIELD;
    }
    long n = b64_decode(secret, key->bytes, sizeof(key->bytes));
    if (n <= 0) {
        OPENSSL_cleanse(key->bytes, sizeof(key->bytes));
        key->len = 0;
        snprintf(errstr, errstr_size,
                 "the secret is not \"" NUDGEL_WH_SECRET_PREFIX
                 "\" followed by base64 of 1 to %d bytes",
                 NUDGEL_WH_KEY_MAX);
        return NUDGEL_ERR_INVALID_FIELD;
    }
    key->len = (size_t)n;
    return NUDGEL_OK;
}

nudgel_err_t nudgel_wh_secret_generate(char *out, size_t out_size)
{
    unsigned char raw[NUDGEL_WH_SECRET_BYTES];
    size_t plen = strlen(NUDGEL_WH_SECRET_PREFIX);
    if (!out || out_size < NUDGEL_WH_SECRET_TEXT_MAX)
        return NUDGEL_ERR_INVALID_ARG;
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        OPENSSL_cleanse(raw, sizeof(raw));
        return NUDGEL_ERR_IO;
    }
    memcpy(out, NUDGEL_WH_SECRET_PREFIX, plen);
    EVP_EncodeBlock((unsigned char *)out + plen, raw, (int)sizeof(raw));
    OPENSSL_cleanse(raw, sizeof(raw));
    return NUDGEL_OK;
}

/* The HMAC implementation, fetched once: a fetch per signature costs more than the MAC. */
static EVP_MAC *hmac_impl;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void)
{
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

nudgel_err_t nudgel_wh_sign(const nudgel_wh_key_t *key, const char *msg_id, int64_t timestamp_s,
                            const void *body, size_t body_len, char out[NUDGEL_WH_SIGNATURE_MAX])
{
    unsigned char mac[SHA256_LEN];
    char prefix[32];
    nudgel_err_t err = NUDGEL_ERR_INVALID_ARG;
    EVP_MAC_CTX *ctx = NULL;
    size_t mac_len = 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};

    out[0] = '\0';
    if (!key || key->len == 0 || !msg_id || !*msg_id || (!body && body_len))
        return NUDGEL_ERR_INVALID_ARG;
    int plen = snprintf(prefix, sizeof(prefix), ".%" PRId64 ".", timestamp_s);
    pthread_once(&hmac_once, hmac_fetch);
    if (!hmac_impl)
        return NUDGEL_ERR_IO;
    if (!(ctx = EVP_MAC_CTX_new(hmac_impl)))
        return NUDGEL_ERR_NO_MEMORY;
    if (EVP_MAC_init(ctx, key->bytes, key->len, params) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)msg_id, strlen(msg_id)) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)prefix, (size_t)plen) != 1 ||
        (body_len && EVP_MAC_update(ctx, body, body_len) != 1) ||
        EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) != 1 || mac_len != SHA256_LEN) {
        err = NUDGEL_ERR_IO;
        goto out;
    }
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, SHA256_LEN);
    err = NUDGEL_OK;
out:
    EVP_MAC_CTX_free(ctx);
    OPENSSL_cleanse(mac, sizeof(mac));
    return err;
}

nudgel_err_t nudgel_wh_signature_header(const nudgel_wh_key_t *keys, size_t key_count,
                                        const char *msg_id, int64_t timestamp_s, const void *body,
                                        size_t body_len, char *out, size_t out_size)
{
    if (!keys || key_count == 0 || !out)
        return NUDGEL_ERR_INVALID_ARG;
    if (out_size < key_count * NUDGEL_WH_SIGNATURE_MAX)
        return NUDGEL_ERR_TOO_LARGE;
    size_t o = 0;
    for (size_t i = 0; i < key_count; i++) {
        char sig[NUDGEL_WH_SIGNATURE_MAX];
        nudgel_err_t err = nudgel_wh_sign(&keys[i], msg_id, timestamp_s, body, body_len, sig);
        if (err != NUDGEL_OK) {
            out[0] = '\0';
            return err;
        }
        if (i)
            out[o++] = ' ';
        size_t n = strlen(sig);
        memcpy(out + o, sig, n);
        o += n;
    }
    out[o] = '\0';
    return NUDGEL_OK;
}

nudgel_err_t nudgel_wh_verify(const char *header, const nudgel_wh_key_t *keys, size_t key_count,
                              const char *msg_id, int64_t timestamp_s, const void *body,
                              size_t body_len, int64_t now_s, int64_t tolerance_s, char *errstr,
                              size_t errstr_size)
{
    char expected[NUDGEL_WH_SIGNATURE_MAX];
    if (!header || !keys || key_count == 0 || !msg_id) {
        snprintf(errstr, errstr_size, "missing header, keys or message id");
        return NUDGEL_ERR_INVALID_ARG;
    }
    int64_t skew = now_s - timestamp_s;
    if (skew > tolerance_s || -skew > tolerance_s) {
        snprintf(errstr, errstr_size,
                 "timestamp %" PRId64 " is %" PRId64 " s from now (tolerance %" PRId64 " s)",
                 timestamp_s, skew, tolerance_s);
        return NUDGEL_ERR_TIMED_OUT;
    }
    for (size_t k = 0; k < key_count; k++) {
        if (nudgel_wh_sign(&keys[k], msg_id, timestamp_s, body, body_len, expected) != NUDGEL_OK)
            continue;
        size_t elen = strlen(expected);
        for (const char *p = header; *p;) {
            while (*p == ' ')
                p++;
            size_t n = strcspn(p, " ");
            if (n == elen && CRYPTO_memcmp(p, expected, elen) == 0) {
                OPENSSL_cleanse(expected, sizeof(expected));
                return NUDGEL_OK;
            }
            p += n;
        }
    }
    OPENSSL_cleanse(expected, sizeof(expected));
    snprintf(errstr, errstr_size, "no v1 signature matches");
    return NUDGEL_ERR_INVALID_FIELD;
}

void nudgel_wh_key_cleanse(nudgel_wh_key_t *key)
{
    if (key) {
        OPENSSL_cleanse(key->bytes, sizeof(key->bytes));
        key->len = 0;
    }
}
