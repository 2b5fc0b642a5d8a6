/*
 * auth.c — see auth.h.
 */
#define _GNU_SOURCE
#include "auth.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define BASIC_MAX 1024 /* bytes of a decoded "user:password" we look at */

bool dlr_secret_equal(const char *given, size_t given_len, const char *expected,
                      size_t expected_len)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    if (!given || !expected)
        return false;
    SHA256((const unsigned char *)given, given_len, a);
    SHA256((const unsigned char *)expected, expected_len, b);
    /* Both digests are always compared whole; the length check comes after. */
    int differ = CRYPTO_memcmp(a, b, sizeof(a));
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return differ == 0 && given_len == expected_len;
}

bool dlr_basic_ok(const char *header, const char *userpass, size_t userpass_len)
{
    unsigned char decoded[BASIC_MAX + 4];
    bool ok = false;
    if (!header || strncasecmp(header, "Basic ", 6) != 0)
        return false;
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    size_t len = strlen(b64);
    while (len > 0 && b64[len - 1] == ' ')
        len--;
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > BASIC_MAX)
        return false;
    int n = EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)len);
    if (n < 0)
        return false;
    /* EVP_DecodeBlock counts the '=' padding as zero bytes: drop them. */
    if (b64[len - 1] == '=')
        n--;
    if (b64[len - 2] == '=')
        n--;
    ok = n > 0 && dlr_secret_equal((const char *)decoded, (size_t)n, userpass, userpass_len);
    OPENSSL_cleanse(decoded, sizeof(decoded));
    return ok;
}

int dlr_cidr_parse(const char *text, dlr_cidr_t *out, char *errstr, size_t errstr_size)
{
    char buf[DLR_CIDR_TEXT_MAX];
    memset(out, 0, sizeof(*out));
    if (!text || strlen(text) >= sizeof(buf)) {
        snprintf(errstr, errstr_size, "not an address or CIDR range");
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", text);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash) {
        *slash = '\0';
        char *end = NULL;
        if (!slash[1] || slash[1] == '-' || slash[1] == '+') {
            snprintf(errstr, errstr_size, "\"%s\": bad prefix length", text);
            return -1;
        }
        prefix = strtol(slash + 1, &end, 10);
        if (*end) {
            snprintf(errstr, errstr_size, "\"%s\": bad prefix length", text);
            return -1;
        }
    }
    unsigned bits;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        bits = 128;
    } else {
        snprintf(errstr, errstr_size, "\"%s\": not an IPv4 or IPv6 address", text);
        return -1;
    }
    if (prefix < 0)
        prefix = bits;
    if (prefix > (long)bits) {
        snprintf(errstr, errstr_size, "\"%s\": prefix longer than %u bits", text, bits);
        return -1;
    }
    out->prefix = (unsigned)prefix;
    for (unsigned i = out->prefix; i < bits; i++)
        if (out->addr[i / 8] & (0x80u >> (i % 8))) {
            snprintf(errstr, errstr_size, "\"%s\": host bits set beyond /%u", text, out->prefix);
            return -1;
        }
    return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool dlr_cidr_match(const dlr_cidr_t *list, size_t n, const struct sockaddr *sa)
{
    uint8_t addr[16];
    int family;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(addr, &in->sin_addr, 4);
        family = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (memcmp(in6->sin6_addr.s6_addr, mapped, 12) == 0) {
            memcpy(addr, in6->sin6_addr.s6_addr + 12, 4);
            family = AF_INET;
        } else {
            memcpy(addr, in6->sin6_addr.s6_addr, 16);
            family = AF_INET6;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (list[i].family == family && prefix_equal(addr, list[i].addr, list[i].prefix))
            return true;
    return false;
}
