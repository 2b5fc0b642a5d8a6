/*
 * sign_bench.c — the cost of Standard Webhooks signing per KiB of body:
 * nudgel_wh_signature_header() (the deliverer's call) over bodies of 1, 4,
 * 16 and 64 KiB, with one key and with two (rotation). Prints one JSON
 * object: ns per signature and ns per KiB for each case.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nudgel/webhooks/signature.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(void)
{
    static const size_t sizes_kib[] = {1, 4, 16, 64};
    nudgel_wh_key_t keys[2];
    char errstr[128], secret[NUDGEL_WH_SECRET_TEXT_MAX], header[4 * NUDGEL_WH_SIGNATURE_MAX];
    for (int k = 0; k < 2; k++) {
        if (nudgel_wh_secret_generate(secret, sizeof(secret)) != NUDGEL_OK ||
            nudgel_wh_secret_decode(secret, &keys[k], errstr, sizeof(errstr)) != NUDGEL_OK) {
            fprintf(stderr, "sign_bench: no key: %s\n", errstr);
            return 1;
        }
    }
    printf("{\"cases\":[");
    for (size_t s = 0; s < sizeof(sizes_kib) / sizeof(sizes_kib[0]); s++) {
        size_t len = sizes_kib[s] * 1024;
        char *body = malloc(len);
        for (size_t i = 0; i < len; i++)
            body[i] = (char)('a' + i % 26);
        for (size_t nkeys = 1; nkeys <= 2; nkeys++) {
            long iters = (long)(200000 / sizes_kib[s]);
            double t0 = now_ns();
            for (long i = 0; i < iters; i++)
                nudgel_wh_signature_header(keys, nkeys, "evt_0123456789abcdef0123456789abcdef",
                                           1795900000 + i, body, len, header, sizeof(header));
            double per = (now_ns() - t0) / (double)iters;
            printf("%s{\"body_kib\":%zu,\"keys\":%zu,\"ns_per_signature\":%.0f,"
                   "\"ns_per_kib\":%.1f}",
                   s || nkeys > 1 ? "," : "", sizes_kib[s], nkeys, per,
                   per / (double)sizes_kib[s]);
        }
        free(body);
    }
    printf("]}\n");
    for (int k = 0; k < 2; k++)
        nudgel_wh_key_cleanse(&keys[k]);
    return 0;
}
