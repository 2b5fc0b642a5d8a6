/*
 * sim_common.c — see sim_common.h.
 */
#define _GNU_SOURCE
#include "sim_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

const char *sim_dialect_name(sim_dialect_t d)
{
    switch (d) {
    case SIM_DIALECT_AT:
        return "at";
    case SIM_DIALECT_INFOBIP:
        return "infobip";
    case SIM_DIALECT_GENERIC:
        return "generic";
    case SIM_DIALECT_KANNEL:
        return "kannel";
    case SIM_DIALECT_COUNT:
        break;
    }
    return "unknown";
}

void sim_buf_init(sim_buf_t *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->cap = cap;
}

void sim_buf_free(sim_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int sim_buf_append(sim_buf_t *b, const void *data, size_t len)
{
    if (b->overflow || len > b->cap || b->len + len > b->cap) {
        b->overflow = true;
        return -1;
    }
    if (b->len + len + 1 > b->size) {
        size_t size = b->size ? b->size : 256;
        while (size < b->len + len + 1)
            size *= 2;
        char *grown = realloc(b->data, size);
        if (!grown) {
            b->overflow = true;
            return -1;
        }
        b->data = grown;
        b->size = size;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int sim_buf_puts(sim_buf_t *b, const char *s)
{
    return sim_buf_append(b, s, strlen(s));
}

int sim_buf_printf(sim_buf_t *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return sim_buf_append(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = sim_buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

int sim_buf_form_escape(sim_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char enc[3];
        size_t n = 1;
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '*') {
            enc[0] = (char)*p;
        } else if (*p == ' ') {
            enc[0] = '+';
        } else {
            enc[0] = '%';
            enc[1] = hex[*p >> 4];
            enc[2] = hex[*p & 0xF];
            n = 3;
        }
        if (sim_buf_append(b, enc, n) != 0)
            return -1;
    }
    return 0;
}

void sim_rng_seed(sim_rng_t *rng, uint64_t seed)
{
    rng->state = seed;
}

uint64_t sim_rng_next(sim_rng_t *rng)
{
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint32_t sim_rng_below(sim_rng_t *rng, uint32_t n)
{
    if (n == 0)
        return 0;
    /* Lemire's multiply-shift; the bias at n ≤ 2^32 over 64 bits is negligible here. */
    return (uint32_t)(((sim_rng_next(rng) >> 32) * (uint64_t)n) >> 32);
}

sim_rng_t *sim_rng_thread(void)
{
    static _Thread_local sim_rng_t rng;
    static _Thread_local bool seeded;
    if (!seeded) {
        uint64_t seed;
        if (RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&rng;
        }
        sim_rng_seed(&rng, seed);
        seeded = true;
    }
    return &rng;
}

void sim_random_id(sim_rng_t *rng, const char *prefix, size_t hex_digits, char *out,
                   size_t out_size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = (size_t)snprintf(out, out_size, "%s", prefix);
    uint64_t bits = 0;
    if (hex_digits > 64)
        hex_digits = 64;
    for (size_t i = 0; i < hex_digits && o + 1 < out_size; i++) {
        if (i % 16 == 0)
            bits = sim_rng_next(rng);
        out[o++] = hex[bits & 0xF];
        bits >>= 4;
    }
    if (out_size)
        out[o < out_size ? o : out_size - 1] = '\0';
}

int sim_number_normalise(const char *in, char out[SIM_NUMBER_MAX])
{
    size_t digits = 0;
    const char *p = in;
    while (*p == ' ')
        p++;
    if (*p == '+')
        p++;
    out[0] = '+';
    for (; *p >= '0' && *p <= '9'; p++) {
        if (digits == 15)
            return -1;
        out[1 + digits++] = *p;
    }
    while (*p == ' ')
        p++;
    if (*p != '\0' || digits < 7)
        return -1;
    out[1 + digits] = '\0';
    return 0;
}

const char *sim_number_currency(const char *e164)
{
    if (strncmp(e164, "+254", 4) == 0)
        return "KES";
    if (strncmp(e164, "+234", 4) == 0)
        return "NGN";
    if (strncmp(e164, "+256", 4) == 0)
        return "UGX";
    return "USD";
}

double sim_number_price(const char *e164)
{
    if (strncmp(e164, "+254", 4) == 0)
        return 0.8;
    if (strncmp(e164, "+234", 4) == 0)
        return 4.0;
    if (strncmp(e164, "+256", 4) == 0)
        return 30.0;
    return 0.05;
}

const char *sim_number_mccmnc(const char *e164)
{
    if (strncmp(e164, "+254", 4) == 0)
        return "63902";
    if (strncmp(e164, "+234", 4) == 0)
        return "62130";
    if (strncmp(e164, "+256", 4) == 0)
        return "64110";
    return "00101";
}

/* Septets of one code point in GSM 03.38: 1 basic, 2 extension, 0 not GSM. */
static int gsm_septets(uint32_t cp)
{
    static const uint32_t basic_high[] = {
        0xA3,  0xA5,  0xE8,  0xE9,  0xF9,  0xEC,  0xF2,  0xC7,  0xD8,  0xF8, 0xC5, 0xE5, 0x394,
        0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398, 0x39E, 0xC6, 0xE6, 0xDF, 0xC9,
        0xA4,  0xA1,  0xC4,  0xD6,  0xD1,  0xDC,  0xA7,  0xBF,  0xE4,  0xF6, 0xF1, 0xFC, 0xE0,
    };
    if (cp == '\n' || cp == '\r')
        return 1;
    if (cp == 0x0C || cp == 0x20AC)
        return 2;
    if (cp < 0x80) {
        if (cp < 0x20 || cp == 0x7F || cp == '`')
            return 0;
        if (strchr("^{}\\[]~|", (int)cp))
            return 2;
        return 1;
    }
    for (size_t i = 0; i < sizeof(basic_high) / sizeof(basic_high[0]); i++)
        if (basic_high[i] == cp)
            return 1;
    return 0;
}

/* Decodes one UTF-8 sequence; @returns its length, or 0 if malformed. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t n = (s[0] & 0xE0) == 0xC0   ? 2
               : (s[0] & 0xF0) == 0xE0 ? 3
               : (s[0] & 0xF8) == 0xF0 ? 4
                                       : 0;
    if (n == 0 || n > len)
        return 0;
    uint32_t v = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return n;
}

int sim_text_segments(const char *text, size_t len, sim_encoding_t *encoding)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t septets = 0, units = 0;
    bool gsm = true;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(s + i, len - i, &cp);
        if (n == 0) {
            gsm = false;
            units++;
            i++;
            continue;
        }
        int sept = gsm_septets(cp);
        if (sept == 0)
            gsm = false;
        septets += (size_t)sept;
        units += cp > 0xFFFF ? 2 : 1;
        i += n;
    }
    if (encoding)
        *encoding = gsm ? SIM_ENC_GSM7 : SIM_ENC_UCS2;
    size_t count = gsm ? septets : units;
    size_t single = gsm ? 160 : 70, part = gsm ? 153 : 67;
    if (count <= single)
        return 1;
    return (int)((count + part - 1) / part);
}

void sim_sha256_hex(const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
        memset(md, 0, sizeof(md));
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xF];
    }
    out[64] = '\0';
}

bool sim_secret_equal(const char *given, const char *expected)
{
    size_t a = strlen(given), b = strlen(expected);
    if (a != b || b == 0)
        return false;
    return CRYPTO_memcmp(given, expected, a) == 0;
}
