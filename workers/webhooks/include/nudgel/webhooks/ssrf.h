/*
 * nudgel/webhooks/ssrf.h — the guard against server-side request forgery.
 *
 * A webhook URL is chosen by a tenant, so before connecting the deliverer
 * resolves the host and refuses the target if ANY resolved address is not
 * globally routable (loopback, RFC 1918, link-local with 169.254.169.254,
 * CGNAT, unique-local, multicast, reserved, documentation, ... and the
 * IPv4-mapped, IPv4-compatible, 6to4 and NAT64 forms of those), unless the
 * address is in the policy's allow-list. The vetted addresses are then pinned
 * for the connection (a CURLOPT_RESOLVE entry), so a second DNS answer cannot
 * swap in another address (DNS rebinding).
 */
#ifndef NUDGEL_WEBHOOKS_SSRF_H
#define NUDGEL_WEBHOOKS_SSRF_H

#include <stdbool.h>
#include <stddef.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "nudgel/error.h"

#define NUDGEL_SSRF_HOST_MAX  256
#define NUDGEL_SSRF_ADDR_MAX  48 /* INET6_ADDRSTRLEN + brackets */
#define NUDGEL_SSRF_MAX_ADDRS 8  /* addresses pinned per host */
#define NUDGEL_SSRF_RESOLVE_MAX                                                                    \
    (NUDGEL_SSRF_HOST_MAX + 8 + NUDGEL_SSRF_MAX_ADDRS * NUDGEL_SSRF_ADDR_MAX)
#define NUDGEL_SSRF_REASON_MAX  384
#define NUDGEL_SSRF_MAX_ALLOWED 32 /* CIDRs in an allow-list */

/** What an address is. Everything but GLOBAL is refused unless allow-listed. */
typedef enum nudgel_ssrf_class {
    NUDGEL_SSRF_GLOBAL = 0,    /* globally routable unicast */
    NUDGEL_SSRF_UNSPECIFIED,   /* 0.0.0.0/8 ("this network"), :: */
    NUDGEL_SSRF_LOOPBACK,      /* 127.0.0.0/8, ::1 */
    NUDGEL_SSRF_PRIVATE,       /* RFC 1918: 10/8, 172.16/12, 192.168/16 */
    NUDGEL_SSRF_LINK_LOCAL,    /* 169.254/16 (cloud metadata), fe80::/10 */
    NUDGEL_SSRF_SHARED,        /* CGNAT 100.64.0.0/10 (RFC 6598) */
    NUDGEL_SSRF_UNIQUE_LOCAL,  /* fc00::/7 */
    NUDGEL_SSRF_MULTICAST,     /* 224.0.0.0/4, ff00::/8 */
    NUDGEL_SSRF_BROADCAST,     /* 255.255.255.255 */
    NUDGEL_SSRF_DOCUMENTATION, /* 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
                                */
    NUDGEL_SSRF_BENCHMARKING,  /* 198.18.0.0/15, 2001:2::/48 */
    NUDGEL_SSRF_RESERVED,      /* 240/4, 192.0.0/24, 192.88.99/24, outside 2000::/3, ... */
} nudgel_ssrf_class_t;

/** @brief "global", "loopback", "private (RFC 1918)", ... for reasons and logs. */
const char *nudgel_ssrf_class_name(nudgel_ssrf_class_t cls);

/**
 * @brief The class of an AF_INET or AF_INET6 address (other families are
 * RESERVED). Embedded IPv4 addresses (::ffff:a.b.c.d, ::a.b.c.d,
 * 64:ff9b::/96, 2002:aabb:ccdd::/48) are classified by the IPv4 address.
 */
nudgel_ssrf_class_t nudgel_ssrf_classify(const struct sockaddr *sa);

/**
 * @brief As nudgel_ssrf_classify() for a numeric address in text.
 * @returns 0, or -1 when @p ip is not a numeric IPv4 or IPv6 address.
 */
int nudgel_ssrf_classify_text(const char *ip, nudgel_ssrf_class_t *cls);

/** The guard's settings: opaque, built from configuration text. */
typedef struct nudgel_ssrf_policy nudgel_ssrf_policy_t;

/**
 * @brief A policy. @p enabled false lets every address through (for tests
 * only; the configuration default is on). @p allow_cidrs is a comma-separated
 * list of CIDRs ("127.0.0.0/8,::1/128"; a bare address means /32 or /128;
 * spaces around entries are ignored; NULL or "" for none).
 * @returns NUDGEL_OK and a new policy in @p out (destroy it), or
 * NUDGEL_ERR_CONFIG with the faulty entry and why in @p errstr.
 */
nudgel_err_t nudgel_ssrf_policy_new(bool enabled, const char *allow_cidrs,
                                    nudgel_ssrf_policy_t **out, char *errstr, size_t errstr_size);

void nudgel_ssrf_policy_destroy(nudgel_ssrf_policy_t *policy);

/** @brief Whether @p sa is in the policy's allow-list. */
bool nudgel_ssrf_policy_allows(const nudgel_ssrf_policy_t *policy, const struct sockaddr *sa);

/**
 * @brief Whether one address may be connected to under @p policy: global, or
 * allow-listed, or the guard is off. On refusal, @p reason (if not NULL)
 * names the address and its class, e.g. "10.0.0.1 is private (RFC 1918)".
 */
bool nudgel_ssrf_check_addr(const nudgel_ssrf_policy_t *policy, const struct sockaddr *sa,
                            char *reason, size_t reason_size);

/** The result of vetting a URL. */
typedef struct nudgel_ssrf_verdict {
    bool allowed;
    nudgel_ssrf_class_t refused_class; /* class of the refused address; GLOBAL otherwise */
    char host[NUDGEL_SSRF_HOST_MAX];   /* the URL's host, without IPv6 brackets */
    int port;                          /* the URL's port, or 80/443 by scheme */
    bool host_is_literal;              /* the URL names an IP address */
    size_t addr_count;                 /* vetted addresses, at most NUDGEL_SSRF_MAX_ADDRS */
    char addrs[NUDGEL_SSRF_MAX_ADDRS][NUDGEL_SSRF_ADDR_MAX]; /* numeric, IPv6 without brackets */
    /*
     * CURLOPT_RESOLVE entry pinning the vetted addresses, "host:port:a1,a2"
     * (IPv6 addresses in brackets); "" when the host is a literal address
     * (curl does no lookup then, so there is nothing to pin).
     */
    char resolve[NUDGEL_SSRF_RESOLVE_MAX];
    char reason[NUDGEL_SSRF_REASON_MAX]; /* why it was refused; "" when allowed */
} nudgel_ssrf_verdict_t;

/**
 * @brief Vets @p url: parses it (http or https only; userinfo, a missing
 * host, a bad port are refused), resolves the host with getaddrinfo(), and
 * refuses it when any address is not allowed by @p policy. With the guard
 * disabled, the URL is still parsed and resolved, and the addresses pinned.
 *
 * Blocks on DNS: call it outside the event loop or cache the verdict per
 * (host, port) for a short time (the deliverer does).
 *
 * @returns NUDGEL_OK with @p v->allowed true and the pinning entry filled;
 * NUDGEL_ERR_INVALID_FIELD when refused (a bad URL or a forbidden address:
 * permanent) with @p v->reason; NUDGEL_ERR_IO when the name does not resolve
 * (the reason carries gai_strerror; retriable, DNS may come back);
 * NUDGEL_ERR_INVALID_ARG for NULL arguments.
 */
nudgel_err_t nudgel_ssrf_vet_url(const nudgel_ssrf_policy_t *policy, const char *url,
                                 nudgel_ssrf_verdict_t *v);

/**
 * @brief The URL checks of nudgel_ssrf_vet_url() alone, without resolving
 * (for validating input, e.g. `nudgel-admin endpoints add --url`): fills
 * @p v->host, @p v->port and @p v->host_is_literal; @p v->allowed stays
 * false because nothing was vetted.
 * @returns NUDGEL_OK, or NUDGEL_ERR_INVALID_FIELD with @p v->reason.
 */
nudgel_err_t nudgel_ssrf_parse_url(const char *url, nudgel_ssrf_verdict_t *v);

#endif
