/*
 * uuid.c — UUIDv7 (RFC 9562).
 *
 * Layout: 48-bit Unix ms | ver 7 | 12-bit counter | var 10 | 62 random bits.
 * The counter starts from a random value below 2^11 each new millisecond
 * (leaving room to count up) and increments within the millisecond; when it
 * overflows, the timestamp moves one millisecond ahead of the clock. Ids are
 * therefore strictly increasing within a process, even if the clock steps back.
 */
#include "nudgel/uuid.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "nudgel/timeutil.h"

static pthread_mutex_t uuid_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t last_ms;
static uint16_t counter;
static uint8_t random_pool[4096];
static size_t random_used = sizeof(random_pool);

/* Caller holds uuid_lock. RAND_bytes in 4 KiB batches keeps ids cheap. */
static void random_take(uint8_t *out, size_t n)
{
    if (random_used + n > sizeof(random_pool)) {
        if (RAND_bytes(random_pool, sizeof(random_pool)) != 1) {
            /* OpenSSL's CSPRNG failing is not recoverable: ids must be unique. */
            fprintf(stderr, "nudgel: RAND_bytes failed; cannot generate ids\n");
            abort();
        }
        random_used = 0;
    }
    memcpy(out, random_pool + random_used, n);
    random_used += n;
}

void nudgel_uuid7_generate(uint8_t out[16])
{
    int64_t now = nudgel_now_unix_ms();
    pthread_mutex_lock(&uuid_lock);
    if (now > last_ms) {
        uint8_t r[2];
        random_take(r, 2);
        last_ms = now;
        counter = (uint16_t)(((r[0] << 8) | r[1]) & 0x07ff);
    } else if (++counter > 0x0fff) {
        last_ms++;
        counter = 0;
    }
    int64_t ms = last_ms;
    uint16_t seq = counter;
    random_take(out + 8, 8);
    pthread_mutex_unlock(&uuid_lock);

    out[0] = (uint8_t)(ms >> 40);
    out[1] = (uint8_t)(ms >> 32);
    out[2] = (uint8_t)(ms >> 24);
    out[3] = (uint8_t)(ms >> 16);
    out[4] = (uint8_t)(ms >> 8);
    out[5] = (uint8_t)ms;
    out[6] = (uint8_t)(0x70 | (seq >> 8));
    out[7] = (uint8_t)seq;
    out[8] = (uint8_t)(0x80 | (out[8] & 0x3f));
}

void nudgel_uuid_format(const uint8_t in[16], char out[NUDGEL_UUID_STR_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[in[i] >> 4];
        out[o++] = hex[in[i] & 15];
    }
    out[o] = '\0';
}

void nudgel_uuid7_string(char out[NUDGEL_UUID_STR_LEN + 1])
{
    uint8_t raw[16];
    nudgel_uuid7_generate(raw);
    nudgel_uuid_format(raw, out);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int nudgel_uuid_parse(const char *text, uint8_t out[16])
{
    if (!text || strlen(text) != NUDGEL_UUID_STR_LEN)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < NUDGEL_UUID_STR_LEN;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-')
                return -1;
            i++;
            continue;
        }
        int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[o++] = (uint8_t)((hi << 4) | lo);
        i += 2;
    }
    return 0;
}

int64_t nudgel_uuid7_unix_ms(const uint8_t in[16])
{
    int64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = (ms << 8) | in[i];
    return ms;
}
