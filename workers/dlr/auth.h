/*
 * auth.h — who may post a delivery report: the secret path token and the
 * optional HTTP basic credentials (compared in constant time), and the
 * source CIDR allow-list of a gateway.
 *
 * Carriers do not sign their callbacks (Africa's Talking; Infobip offers
 * basic credentials at most), so a forged report is kept out by a secret
 * only the carrier knows (the token in the URL, and the credentials when
 * configured) and by where it comes from (the carrier's published ranges).
 *
 * Threads: every function is pure and reentrant.
 */
#ifndef NUDGEL_DLR_AUTH_H
#define NUDGEL_DLR_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DLR_CIDR_TEXT_MAX 64

typedef struct dlr_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} dlr_cidr_t;

/**
 * @brief Whether @p given (@p given_len bytes) equals @p expected
 * (@p expected_len bytes). The time taken does not depend on where they
 * differ nor on either length (both are hashed with SHA-256 first, then
 * compared with CRYPTO_memcmp). NULL @p given never matches.
 */
bool dlr_secret_equal(const char *given, size_t given_len, const char *expected,
                      size_t expected_len);

/**
 * @brief Whether the Authorization header value @p header ("Basic
 * base64(user:password)") carries @p userpass ("user:password"), compared
 * with dlr_secret_equal(). NULL or malformed @p header: false.
 */
bool dlr_basic_ok(const char *header, const char *userpass, size_t userpass_len);

/**
 * @brief Parses "a.b.c.d/n", "a.b.c.d" (/32), "x::y/n" or "x::y" (/128).
 * Host bits beyond the prefix must be zero. @returns 0, or -1 with the
 * reason in @p errstr.
 */
int dlr_cidr_parse(const char *text, dlr_cidr_t *out, char *errstr, size_t errstr_size);

/**
 * @brief Whether @p sa (an IPv4 or IPv6 socket address; an IPv4-mapped IPv6
 * address counts as its IPv4 address) is inside one of the @p n ranges of
 * @p list. n == 0: false.
 */
bool dlr_cidr_match(const dlr_cidr_t *list, size_t n, const struct sockaddr *sa);

#endif
