/*
 * ssrf.c — see nudgel/webhooks/ssrf.h.
 *
 * The address tables follow the IANA IPv4 and IPv6 Special-Purpose Address
 * Registries (RFC 6890 and updates). Anything outside 2000::/3 is not global
 * unicast in IPv6, so the IPv6 side is "refuse unless proven global".
 */
#define _GNU_SOURCE
#include "nudgel/webhooks/ssrf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;
} cidr_t;

struct nudgel_ssrf_policy {
    bool enabled;
    size_t count;
    cidr_t allow[NUDGEL_SSRF_MAX_ALLOWED];
};

const char *nudgel_ssrf_class_name(nudgel_ssrf_class_t cls)
{
    switch (cls) {
    case NUDGEL_SSRF_GLOBAL:
        return "global";
    case NUDGEL_SSRF_UNSPECIFIED:
        return "unspecified (\"this network\")";
    case NUDGEL_SSRF_LOOPBACK:
        return "loopback";
    case NUDGEL_SSRF_PRIVATE:
        return "private (RFC 1918)";
    case NUDGEL_SSRF_LINK_LOCAL:
        return "link-local";
    case NUDGEL_SSRF_SHARED:
        return "shared address space (CGNAT, RFC 6598)";
    case NUDGEL_SSRF_UNIQUE_LOCAL:
        return "unique local (fc00::/7)";
    case NUDGEL_SSRF_MULTICAST:
        return "multicast";
    case NUDGEL_SSRF_BROADCAST:
        return "broadcast";
    case NUDGEL_SSRF_DOCUMENTATION:
        return "documentation";
    case NUDGEL_SSRF_BENCHMARKING:
        return "benchmarking";
    case NUDGEL_SSRF_RESERVED:
        return "reserved";
    }
    return "reserved";
}

static bool in4(uint32_t a, uint32_t net, unsigned prefix)
{
    uint32_t mask = prefix ? ~(uint32_t)0 << (32 - prefix) : 0;
    return (a & mask) == net;
}

#define V4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))

static nudgel_ssrf_class_t classify4(uint32_t a)
{
    if (in4(a, V4(0, 0, 0, 0), 8))
        return NUDGEL_SSRF_UNSPECIFIED;
    if (in4(a, V4(10, 0, 0, 0), 8) || in4(a, V4(172, 16, 0, 0), 12) ||
        in4(a, V4(192, 168, 0, 0), 16))
        return NUDGEL_SSRF_PRIVATE;
    if (in4(a, V4(100, 64, 0, 0), 10))
        return NUDGEL_SSRF_SHARED;
    if (in4(a, V4(127, 0, 0, 0), 8))
        return NUDGEL_SSRF_LOOPBACK;
    if (in4(a, V4(169, 254, 0, 0), 16))
        return NUDGEL_SSRF_LINK_LOCAL;
    if (in4(a, V4(192, 0, 2, 0), 24) || in4(a, V4(198, 51, 100, 0), 24) ||
        in4(a, V4(203, 0, 113, 0), 24))
        return NUDGEL_SSRF_DOCUMENTATION;
    if (in4(a, V4(198, 18, 0, 0), 15))
        return NUDGEL_SSRF_BENCHMARKING;
    if (in4(a, V4(192, 0, 0, 0), 24) || in4(a, V4(192, 88, 99, 0), 24))
        return NUDGEL_SSRF_RESERVED;
    if (in4(a, V4(224, 0, 0, 0), 4))
        return NUDGEL_SSRF_MULTICAST;
    if (a == V4(255, 255, 255, 255))
        return NUDGEL_SSRF_BROADCAST;
    if (in4(a, V4(240, 0, 0, 0), 4))
        return NUDGEL_SSRF_RESERVED;
    return NUDGEL_SSRF_GLOBAL;
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static bool in6(const unsigned char *a, const unsigned char *net, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

static nudgel_ssrf_class_t classify6(const unsigned char *a)
{
    static const unsigned char zero[16] = {0};
    static const unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char translated[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    static const unsigned char nat64[16] = {0, 0x64, 0xff, 0x9b};
    static const unsigned char nat64_local[16] = {0, 0x64, 0xff, 0x9b, 0, 1};
    static const unsigned char discard[16] = {0x01, 0x00};
    static const unsigned char teredo_ietf[16] = {0x20, 0x01};
    static const unsigned char bench[16] = {0x20, 0x01, 0x00, 0x02};
    static const unsigned char doc[16] = {0x20, 0x01, 0x0d, 0xb8};
    static const unsigned char doc2[16] = {0x3f, 0xff};
    static const unsigned char sixtofour[16] = {0x20, 0x02};
    static const unsigned char srv6[16] = {0x5f, 0x00};

    if (memcmp(a, zero, 16) == 0)
        return NUDGEL_SSRF_UNSPECIFIED;
    if (memcmp(a, zero, 15) == 0 && a[15] == 1)
        return NUDGEL_SSRF_LOOPBACK;
    if (in6(a, mapped, 96) || in6(a, translated, 96) || in6(a, nat64, 96))
        return classify4(be32(a + 12));
    if (in6(a, zero, 96)) {
        /* IPv4-compatible (deprecated): never routed, but name the embedded class when worse. */
        nudgel_ssrf_class_t c = classify4(be32(a + 12));
        return c == NUDGEL_SSRF_GLOBAL ? NUDGEL_SSRF_RESERVED : c;
    }
    if (in6(a, nat64_local, 48) || in6(a, discard, 64))
        return NUDGEL_SSRF_RESERVED;
    if (in6(a, doc, 32) || in6(a, doc2, 20))
        return NUDGEL_SSRF_DOCUMENTATION;
    if (in6(a, bench, 48))
        return NUDGEL_SSRF_BENCHMARKING;
    if (in6(a, teredo_ietf, 23)) /* IETF protocol assignments, Teredo included */
        return NUDGEL_SSRF_RESERVED;
    if (in6(a, sixtofour, 16))
        return classify4(be32(a + 2));
    if ((a[0] & 0xfe) == 0xfc)
        return NUDGEL_SSRF_UNIQUE_LOCAL;
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return NUDGEL_SSRF_LINK_LOCAL;
    if (a[0] == 0xff)
        return NUDGEL_SSRF_MULTICAST;
    if (in6(a, srv6, 16) || (a[0] & 0xe0) != 0x20) /* outside 2000::/3: not global unicast */
        return NUDGEL_SSRF_RESERVED;
    return NUDGEL_SSRF_GLOBAL;
}

nudgel_ssrf_class_t nudgel_ssrf_classify(const struct sockaddr *sa)
{
    if (!sa)
        return NUDGEL_SSRF_RESERVED;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        return classify4(ntohl(s4->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        return classify6(s6->sin6_addr.s6_addr);
    }
    return NUDGEL_SSRF_RESERVED;
}

/* A numeric address in text into a sockaddr (strict inet_pton forms only). */
static int parse_ip(const char *ip, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

int nudgel_ssrf_classify_text(const char *ip, nudgel_ssrf_class_t *cls)
{
    struct sockaddr_storage ss;
    if (!ip || parse_ip(ip, &ss) != 0)
        return -1;
    *cls = nudgel_ssrf_classify((const struct sockaddr *)&ss);
    return 0;
}

static nudgel_err_t parse_cidr(const char *text, cidr_t *c, char *errstr, size_t errstr_size)
{
    char buf[INET6_ADDRSTRLEN + 8];
    struct sockaddr_storage ss;
    if (strlen(text) >= sizeof(buf)) {
        snprintf(errstr, errstr_size, "\"%.64s...\" is too long for a CIDR", text);
        return NUDGEL_ERR_CONFIG;
    }
    strcpy(buf, text);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    if (parse_ip(buf, &ss) != 0) {
        snprintf(errstr, errstr_size, "\"%s\" is not an IPv4 or IPv6 address or CIDR", text);
        return NUDGEL_ERR_CONFIG;
    }
    c->family = ss.ss_family;
    unsigned max = c->family == AF_INET ? 32 : 128;
    if (c->family == AF_INET)
        memcpy(c->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    else
        memcpy(c->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    c->prefix = max;
    if (slash) {
        char *end = NULL;
        const char *digits = slash + 1;
        unsigned long p = isdigit((unsigned char)*digits) ? strtoul(digits, &end, 10) : max + 1;
        if (!end || *end || p > max) {
            snprintf(errstr, errstr_size, "\"%s\": the prefix length must be 0 to %u", text, max);
            return NUDGEL_ERR_CONFIG;
        }
        c->prefix = (unsigned)p;
    }
    /* Host bits must be zero: "10.0.0.1/8" is more likely a typo than a wish. */
    for (unsigned bit = c->prefix; bit < max; bit++) {
        if (c->addr[bit / 8] & (0x80 >> (bit % 8))) {
            snprintf(errstr, errstr_size, "\"%s\" has bits set after the /%u prefix", text,
                     c->prefix);
            return NUDGEL_ERR_CONFIG;
        }
    }
    return NUDGEL_OK;
}

nudgel_err_t nudgel_ssrf_policy_new(bool enabled, const char *allow_cidrs,
                                    nudgel_ssrf_policy_t **out, char *errstr, size_t errstr_size)
{
    nudgel_ssrf_policy_t *p = calloc(1, sizeof(*p));
    char *copy = NULL;
    nudgel_err_t err = NUDGEL_ERR_CONFIG;
    *out = NULL;
    if (!p || (allow_cidrs && !(copy = strdup(allow_cidrs)))) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    p->enabled = enabled;
    if (copy) {
        char *save = NULL;
        size_t pos = 0;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            pos++;
            while (isspace((unsigned char)*tok))
                tok++;
            char *end = tok + strlen(tok);
            while (end > tok && isspace((unsigned char)end[-1]))
                *--end = '\0';
            if (!*tok)
                continue;
            if (p->count == NUDGEL_SSRF_MAX_ALLOWED) {
                snprintf(errstr, errstr_size, "more than %d CIDRs in the allow-list",
                         NUDGEL_SSRF_MAX_ALLOWED);
                goto out;
            }
            char inner[256];
            if (parse_cidr(tok, &p->allow[p->count], inner, sizeof(inner)) != NUDGEL_OK) {
                snprintf(errstr, errstr_size, "allow-list entry %zu: %s", pos, inner);
                goto out;
            }
            p->count++;
        }
    }
    *out = p;
    p = NULL;
    err = NUDGEL_OK;
out:
    free(copy);
    free(p);
    return err;
}

void nudgel_ssrf_policy_destroy(nudgel_ssrf_policy_t *policy)
{
    free(policy);
}

bool nudgel_ssrf_policy_allows(const nudgel_ssrf_policy_t *policy, const struct sockaddr *sa)
{
    static const unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    unsigned char a[16];
    int family;
    if (!policy || !sa)
        return false;
    if (sa->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(a, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        family = AF_INET6;
        memcpy(a, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        if (in6(a, mapped, 96)) { /* ::ffff:a.b.c.d is matched as a.b.c.d */
            family = AF_INET;
            memmove(a, a + 12, 4);
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < policy->count; i++)
        if (policy->allow[i].family == family &&
            in6(a, policy->allow[i].addr, policy->allow[i].prefix))
            return true;
    return false;
}

static void addr_text(const struct sockaddr *sa, char *out, size_t out_size)
{
    const void *src =
        sa->sa_family == AF_INET
            ? (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr
            : (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (!inet_ntop(sa->sa_family, src, out, (socklen_t)out_size))
        snprintf(out, out_size, "(unprintable address)");
}

bool nudgel_ssrf_check_addr(const nudgel_ssrf_policy_t *policy, const struct sockaddr *sa,
                            char *reason, size_t reason_size)
{
    nudgel_ssrf_class_t cls = nudgel_ssrf_classify(sa);
    if (cls == NUDGEL_SSRF_GLOBAL || !policy->enabled || nudgel_ssrf_policy_allows(policy, sa))
        return true;
    if (reason && reason_size) {
        char text[INET6_ADDRSTRLEN];
        addr_text(sa, text, sizeof(text));
        snprintf(reason, reason_size, "%s is %s, not globally routable", text,
                 nudgel_ssrf_class_name(cls));
    }
    return false;
}

/* "http" or "https" (any case), then "://". Returns the default port or 0. */
static int scheme_port(const char *url, const char **rest)
{
    if (strncasecmp(url, "http://", 7) == 0) {
        *rest = url + 7;
        return 80;
    }
    if (strncasecmp(url, "https://", 8) == 0) {
        *rest = url + 8;
        return 443;
    }
    return 0;
}

static nudgel_err_t refuse(nudgel_ssrf_verdict_t *v, const char *why)
{
    v->allowed = false;
    snprintf(v->reason, sizeof(v->reason), "%s", why);
    return NUDGEL_ERR_INVALID_FIELD;
}

/* Splits the authority of @p url into host and port, refusing what curl might read otherwise. */
static nudgel_err_t parse_url(const char *url, nudgel_ssrf_verdict_t *v)
{
    const char *p = NULL;
    int port = scheme_port(url, &p);
    if (!port)
        return refuse(v, "url: only http:// and https:// URLs are delivered to");
    size_t alen = strcspn(p, "/?#");
    if (memchr(p, '@', alen))
        return refuse(v, "url: credentials in the URL (user@host) are refused");
    if (memchr(p, '\\', alen) || memchr(p, '%', alen))
        return refuse(v, "url: the host has characters that are refused ('\\' or '%')");
    const char *host = p, *host_end, *after;
    if (*p == '[') {
        const char *close = memchr(p, ']', alen);
        if (!close)
            return refuse(v, "url: an IPv6 host is missing its ']'");
        host = p + 1;
        host_end = close;
        after = close + 1;
    } else {
        host_end = memchr(p, ':', alen);
        if (!host_end)
            host_end = p + alen;
        after = host_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0)
        return refuse(v, "url: the URL has no host");
    if (hlen >= sizeof(v->host))
        return refuse(v, "url: the host is too long");
    memcpy(v->host, host, hlen);
    v->host[hlen] = '\0';
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)v->host[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_' && !(*p == '[' && c == ':'))
            return refuse(v, "url: the host has characters that are refused");
    }
    if (after < p + alen) {
        if (*after != ':')
            return refuse(v, "url: unexpected text after the host");
        const char *digits = after + 1;
        size_t dlen = (size_t)(p + alen - digits);
        if (dlen == 0 || dlen > 5)
            return refuse(v, "url: the port must be 1 to 65535");
        port = 0;
        for (size_t i = 0; i < dlen; i++) {
            if (!isdigit((unsigned char)digits[i]))
                return refuse(v, "url: the port must be 1 to 65535");
            port = port * 10 + (digits[i] - '0');
        }
        if (port < 1 || port > 65535)
            return refuse(v, "url: the port must be 1 to 65535");
    }
    v->port = port;
    return NUDGEL_OK;
}

static void pin(nudgel_ssrf_verdict_t *v, const struct sockaddr *sa)
{
    char text[INET6_ADDRSTRLEN];
    addr_text(sa, text, sizeof(text));
    for (size_t i = 0; i < v->addr_count; i++)
        if (strcmp(v->addrs[i], text) == 0)
            return;
    if (v->addr_count == NUDGEL_SSRF_MAX_ADDRS)
        return;
    snprintf(v->addrs[v->addr_count++], NUDGEL_SSRF_ADDR_MAX, "%s", text);
}

nudgel_err_t nudgel_ssrf_vet_url(const nudgel_ssrf_policy_t *policy, const char *url,
                                 nudgel_ssrf_verdict_t *v)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    struct sockaddr_storage literal;
    char reason[NUDGEL_SSRF_REASON_MAX];
    nudgel_err_t err;

    if (!v)
        return NUDGEL_ERR_INVALID_ARG;
    memset(v, 0, sizeof(*v));
    if (!policy || !url)
        return refuse(v, "url: no URL given");
    if ((err = parse_url(url, v)) != NUDGEL_OK)
        return err;

    if (parse_ip(v->host, &literal) == 0) {
        v->host_is_literal = true;
        if (!nudgel_ssrf_check_addr(policy, (struct sockaddr *)&literal, reason, sizeof(reason))) {
            v->refused_class = nudgel_ssrf_classify((struct sockaddr *)&literal);
            return refuse(v, reason);
        }
        pin(v, (struct sockaddr *)&literal);
        v->allowed = true;
        return NUDGEL_OK;
    }
    int rc = getaddrinfo(v->host, NULL, &hints, &res);
    if (rc != 0) {
        v->allowed = false;
        snprintf(v->reason, sizeof(v->reason), "%s does not resolve: %s", v->host,
                 gai_strerror(rc));
        return NUDGEL_ERR_IO;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (!nudgel_ssrf_check_addr(policy, ai->ai_addr, reason, sizeof(reason))) {
            v->refused_class = nudgel_ssrf_classify(ai->ai_addr);
            v->addr_count = 0;
            freeaddrinfo(res);
            v->allowed = false;
            snprintf(v->reason, sizeof(v->reason), "%.200s resolves to %.150s", v->host, reason);
            return NUDGEL_ERR_INVALID_FIELD;
        }
        pin(v, ai->ai_addr);
    }
    freeaddrinfo(res);
    if (v->addr_count == 0) {
        snprintf(v->reason, sizeof(v->reason), "%s has no IPv4 or IPv6 address", v->host);
        return NUDGEL_ERR_IO;
    }
    size_t o = (size_t)snprintf(v->resolve, sizeof(v->resolve), "%s:%d:", v->host, v->port);
    for (size_t i = 0; i < v->addr_count && o < sizeof(v->resolve); i++) {
        bool six = strchr(v->addrs[i], ':') != NULL;
        o += (size_t)snprintf(v->resolve + o, sizeof(v->resolve) - o, "%s%s%s%s", i ? "," : "",
                              six ? "[" : "", v->addrs[i], six ? "]" : "");
    }
    v->allowed = true;
    return NUDGEL_OK;
}

nudgel_err_t nudgel_ssrf_parse_url(const char *url, nudgel_ssrf_verdict_t *v)
{
    struct sockaddr_storage literal;
    if (!v)
        return NUDGEL_ERR_INVALID_ARG;
    memset(v, 0, sizeof(*v));
    if (!url)
        return refuse(v, "url: no URL given");
    nudgel_err_t err = parse_url(url, v);
    if (err == NUDGEL_OK)
        v->host_is_literal = parse_ip(v->host, &literal) == 0;
    return err;
}
