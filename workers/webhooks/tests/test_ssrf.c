/*
 * test_ssrf.c — the SSRF guard: the address table, the allow-list, and URL
 * vetting (resolution of "localhost" only: no network needed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "nudgel/webhooks/ssrf.h"

typedef struct addr_row {
    const char *ip;
    nudgel_ssrf_class_t cls;
} addr_row_t;

static const addr_row_t addr_table[] = {
    /* refused */
    {"127.0.0.1", NUDGEL_SSRF_LOOPBACK},
    {"127.255.255.254", NUDGEL_SSRF_LOOPBACK},
    {"::1", NUDGEL_SSRF_LOOPBACK},
    {"10.0.0.0", NUDGEL_SSRF_PRIVATE},
    {"10.0.0.1", NUDGEL_SSRF_PRIVATE},
    {"10.255.255.255", NUDGEL_SSRF_PRIVATE},
    {"172.16.0.0", NUDGEL_SSRF_PRIVATE},
    {"172.31.255.255", NUDGEL_SSRF_PRIVATE},
    {"192.168.0.1", NUDGEL_SSRF_PRIVATE},
    {"192.168.255.255", NUDGEL_SSRF_PRIVATE},
    {"169.254.169.254", NUDGEL_SSRF_LINK_LOCAL},
    {"169.254.0.1", NUDGEL_SSRF_LINK_LOCAL},
    {"100.64.0.0", NUDGEL_SSRF_SHARED},
    {"100.127.255.255", NUDGEL_SSRF_SHARED},
    {"fc00::1", NUDGEL_SSRF_UNIQUE_LOCAL},
    {"fd12:3456:789a::1", NUDGEL_SSRF_UNIQUE_LOCAL},
    {"fe80::1", NUDGEL_SSRF_LINK_LOCAL},
    {"febf:ffff::1", NUDGEL_SSRF_LINK_LOCAL},
    {"::ffff:10.0.0.1", NUDGEL_SSRF_PRIVATE},
    {"::ffff:127.0.0.1", NUDGEL_SSRF_LOOPBACK},
    {"::ffff:169.254.169.254", NUDGEL_SSRF_LINK_LOCAL},
    {"64:ff9b::7f00:1", NUDGEL_SSRF_LOOPBACK},
    {"64:ff9b::a00:1", NUDGEL_SSRF_PRIVATE},
    {"64:ff9b::a9fe:a9fe", NUDGEL_SSRF_LINK_LOCAL},
    {"::127.0.0.1", NUDGEL_SSRF_LOOPBACK},
    {"::8.8.8.8", NUDGEL_SSRF_RESERVED},
    {"2002:7f00:1::1", NUDGEL_SSRF_LOOPBACK},
    {"2002:a00:1::1", NUDGEL_SSRF_PRIVATE},
    {"0.0.0.0", NUDGEL_SSRF_UNSPECIFIED},
    {"0.1.2.3", NUDGEL_SSRF_UNSPECIFIED},
    {"::", NUDGEL_SSRF_UNSPECIFIED},
    {"224.0.0.1", NUDGEL_SSRF_MULTICAST},
    {"239.255.255.250", NUDGEL_SSRF_MULTICAST},
    {"ff02::1", NUDGEL_SSRF_MULTICAST},
    {"240.0.0.1", NUDGEL_SSRF_RESERVED},
    {"255.255.255.254", NUDGEL_SSRF_RESERVED},
    {"255.255.255.255", NUDGEL_SSRF_BROADCAST},
    {"192.0.0.8", NUDGEL_SSRF_RESERVED},
    {"192.0.2.1", NUDGEL_SSRF_DOCUMENTATION},
    {"198.51.100.7", NUDGEL_SSRF_DOCUMENTATION},
    {"203.0.113.200", NUDGEL_SSRF_DOCUMENTATION},
    {"2001:db8::1", NUDGEL_SSRF_DOCUMENTATION},
    {"198.18.0.1", NUDGEL_SSRF_BENCHMARKING},
    {"198.19.255.255", NUDGEL_SSRF_BENCHMARKING},
    {"2001::1", NUDGEL_SSRF_RESERVED}, /* Teredo */
    {"100::1", NUDGEL_SSRF_RESERVED},  /* discard */
    {"fec0::1", NUDGEL_SSRF_RESERVED}, /* site-local, deprecated */
    {"4000::1", NUDGEL_SSRF_RESERVED}, /* outside 2000::/3 */
    /* edges that pass */
    {"172.15.255.255", NUDGEL_SSRF_GLOBAL},
    {"172.32.0.0", NUDGEL_SSRF_GLOBAL},
    {"100.63.255.255", NUDGEL_SSRF_GLOBAL},
    {"100.128.0.0", NUDGEL_SSRF_GLOBAL},
    {"11.0.0.1", NUDGEL_SSRF_GLOBAL},
    {"9.255.255.255", NUDGEL_SSRF_GLOBAL},
    {"169.253.255.255", NUDGEL_SSRF_GLOBAL},
    {"192.167.255.255", NUDGEL_SSRF_GLOBAL},
    {"223.255.255.255", NUDGEL_SSRF_GLOBAL},
    /* public: must pass */
    {"8.8.8.8", NUDGEL_SSRF_GLOBAL},
    {"1.1.1.1", NUDGEL_SSRF_GLOBAL},
    {"41.90.64.1", NUDGEL_SSRF_GLOBAL},
    {"102.89.0.1", NUDGEL_SSRF_GLOBAL},
    {"196.201.214.1", NUDGEL_SSRF_GLOBAL},
    {"2001:4860:4860::8888", NUDGEL_SSRF_GLOBAL},
    {"2606:4700:4700::1111", NUDGEL_SSRF_GLOBAL},
    {"::ffff:8.8.8.8", NUDGEL_SSRF_GLOBAL},
    {"64:ff9b::808:808", NUDGEL_SSRF_GLOBAL},
};

static void test_address_table(void **state)
{
    (void)state;
    nudgel_ssrf_policy_t *policy = NULL;
    char errstr[256];
    assert_int_equal(nudgel_ssrf_policy_new(true, NULL, &policy, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_true(sizeof(addr_table) / sizeof(addr_table[0]) >= 30);
    for (size_t i = 0; i < sizeof(addr_table) / sizeof(addr_table[0]); i++) {
        const addr_row_t *r = &addr_table[i];
        nudgel_ssrf_class_t cls;
        if (nudgel_ssrf_classify_text(r->ip, &cls) != 0)
            fail_msg("%s does not parse", r->ip);
        if (cls != r->cls)
            fail_msg("%s: got %s, expected %s", r->ip, nudgel_ssrf_class_name(cls),
                     nudgel_ssrf_class_name(r->cls));
        /* The URL form agrees, and a refusal names the address and its class. */
        char url[128];
        nudgel_ssrf_verdict_t v;
        snprintf(url, sizeof(url), strchr(r->ip, ':') ? "https://[%s]:8443/hook" : "http://%s/hook",
                 r->ip);
        nudgel_err_t err = nudgel_ssrf_vet_url(policy, url, &v);
        if (r->cls == NUDGEL_SSRF_GLOBAL) {
            if (err != NUDGEL_OK || !v.allowed)
                fail_msg("%s refused: %s", url, v.reason);
            assert_true(v.host_is_literal);
            assert_string_equal(v.resolve, "");
        } else {
            if (err != NUDGEL_ERR_INVALID_FIELD || v.allowed)
                fail_msg("%s allowed", url);
            assert_int_equal(v.refused_class, r->cls);
            assert_non_null(strstr(v.reason, nudgel_ssrf_class_name(r->cls)));
            assert_non_null(strstr(v.reason, "not globally routable"));
        }
    }
    nudgel_ssrf_policy_destroy(policy);
    nudgel_ssrf_class_t cls;
    assert_int_equal(nudgel_ssrf_classify_text("localhost", &cls), -1);
    assert_int_equal(nudgel_ssrf_classify_text("127.1", &cls), -1);
}

static void test_reason_text(void **state)
{
    (void)state;
    nudgel_ssrf_policy_t *policy = NULL;
    nudgel_ssrf_verdict_t v;
    char errstr[256];
    assert_int_equal(nudgel_ssrf_policy_new(true, "", &policy, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://169.254.169.254/latest/meta-data", &v),
                     NUDGEL_ERR_INVALID_FIELD);
    assert_string_equal(v.reason, "169.254.169.254 is link-local, not globally routable");
    nudgel_ssrf_policy_destroy(policy);
}

static void test_allow_list(void **state)
{
    (void)state;
    nudgel_ssrf_policy_t *policy = NULL;
    nudgel_ssrf_verdict_t v;
    char errstr[256];
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    assert_int_equal(
        nudgel_ssrf_policy_new(true, " 127.0.0.0/8 , ::1 ", &policy, errstr, sizeof(errstr)),
        NUDGEL_OK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://127.0.0.1:8080/x", &v), NUDGEL_OK);
    assert_true(v.allowed);
    assert_int_equal(v.port, 8080);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://127.9.9.9/", &v), NUDGEL_OK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://[::1]:9/", &v), NUDGEL_OK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://[::ffff:127.0.0.1]/", &v), NUDGEL_OK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://10.0.0.1/", &v), NUDGEL_ERR_INVALID_FIELD);
    assert_non_null(strstr(v.reason, "10.0.0.1 is private (RFC 1918)"));
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://128.0.0.1/", &v), NUDGEL_OK);
    inet_pton(AF_INET, "127.3.2.1", &s4.sin_addr);
    assert_true(nudgel_ssrf_policy_allows(policy, (struct sockaddr *)&s4));
    inet_pton(AF_INET, "10.0.0.1", &s4.sin_addr);
    assert_false(nudgel_ssrf_policy_allows(policy, (struct sockaddr *)&s4));
    assert_false(nudgel_ssrf_check_addr(policy, (struct sockaddr *)&s4, errstr, sizeof(errstr)));
    assert_string_equal(errstr, "10.0.0.1 is private (RFC 1918), not globally routable");
    nudgel_ssrf_policy_destroy(policy);

    /* A narrow allow-list: 10.1.2.0/24 lets 10.1.2.3 through, not 10.1.3.1. */
    assert_int_equal(nudgel_ssrf_policy_new(true, "10.1.2.0/24", &policy, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://10.1.2.3/", &v), NUDGEL_OK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://10.1.3.1/", &v), NUDGEL_ERR_INVALID_FIELD);
    nudgel_ssrf_policy_destroy(policy);

    /* Disabled: everything through (tests only). */
    assert_int_equal(nudgel_ssrf_policy_new(false, NULL, &policy, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://10.0.0.1/", &v), NUDGEL_OK);
    /* ... but still http(s) only. */
    assert_int_equal(nudgel_ssrf_vet_url(policy, "ftp://10.0.0.1/", &v), NUDGEL_ERR_INVALID_FIELD);
    nudgel_ssrf_policy_destroy(policy);
}

static void test_allow_list_errors(void **state)
{
    (void)state;
    static const struct {
        const char *list;
        const char *needle;
    } cases[] = {
        {"10.0.0.0/33", "entry 1: \"10.0.0.0/33\": the prefix length must be 0 to 32"},
        {"127.0.0.0/8,fc00::/129", "entry 2: \"fc00::/129\": the prefix length must be 0 to 128"},
        {"localhost", "entry 1: \"localhost\" is not an IPv4 or IPv6 address"},
        {"10.0.0.1/8", "has bits set after the /8 prefix"},
        {"10.0.0.0/", "the prefix length"},
        {"10.0.0.0/x", "the prefix length"},
        {"10.0.0.0/-1", "the prefix length"},
        {"300.0.0.0/8", "is not an IPv4"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nudgel_ssrf_policy_t *policy = (nudgel_ssrf_policy_t *)&cases;
        char errstr[256] = "";
        assert_int_equal(
            nudgel_ssrf_policy_new(true, cases[i].list, &policy, errstr, sizeof(errstr)),
            NUDGEL_ERR_CONFIG);
        assert_null(policy);
        if (!strstr(errstr, cases[i].needle))
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", cases[i].list, errstr, cases[i].needle);
    }
}

static void test_vet_url(void **state)
{
    (void)state;
    nudgel_ssrf_policy_t *policy = NULL;
    nudgel_ssrf_verdict_t v;
    char errstr[256];
    assert_int_equal(nudgel_ssrf_policy_new(true, NULL, &policy, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    /* Refused by default. */
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://127.0.0.1:8080/x", &v),
                     NUDGEL_ERR_INVALID_FIELD);
    assert_int_equal(v.refused_class, NUDGEL_SSRF_LOOPBACK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://localhost/", &v),
                     NUDGEL_ERR_INVALID_FIELD);
    assert_int_equal(v.refused_class, NUDGEL_SSRF_LOOPBACK);
    assert_non_null(strstr(v.reason, "localhost resolves to "));
    assert_non_null(strstr(v.reason, "is loopback"));
    assert_string_equal(v.resolve, "");
    /* Number forms getaddrinfo accepts are caught by what they resolve to. */
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://127.1/", &v), NUDGEL_ERR_INVALID_FIELD);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://2130706433/", &v),
                     NUDGEL_ERR_INVALID_FIELD);
    assert_int_equal(v.refused_class, NUDGEL_SSRF_LOOPBACK);

    static const struct {
        const char *url;
        const char *needle;
    } bad[] = {
        {"ftp://example.com/", "only http:// and https://"},
        {"file:///etc/passwd", "only http:// and https://"},
        {"gopher://127.0.0.1/", "only http:// and https://"},
        {"example.com/hook", "only http:// and https://"},
        {"http://user:pw@example.com/", "credentials"},
        {"http://user@8.8.8.8/", "credentials"},
        {"https://8.8.8.8@127.0.0.1/", "credentials"},
        {"http:///path", "no host"},
        {"http://:80/", "no host"},
        {"http://8.8.8.8:0/", "port"},
        {"http://8.8.8.8:65536/", "port"},
        {"http://8.8.8.8:8x/", "port"},
        {"http://8.8.8.8:/", "port"},
        {"http://[::1/", "missing its ']'"},
        {"http://exa%6dple.com/", "refused"},
        {"http://exa mple.com/", "refused"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(nudgel_ssrf_vet_url(policy, bad[i].url, &v), NUDGEL_ERR_INVALID_FIELD);
        assert_false(v.allowed);
        if (!strstr(v.reason, bad[i].needle))
            fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].url, v.reason, bad[i].needle);
    }
    /* Parsing alone: the same refusals, no resolution. */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(nudgel_ssrf_parse_url(bad[i].url, &v), NUDGEL_ERR_INVALID_FIELD);
    assert_int_equal(nudgel_ssrf_parse_url("https://hooks.example.invalid:8443/x", &v), NUDGEL_OK);
    assert_string_equal(v.host, "hooks.example.invalid");
    assert_int_equal(v.port, 8443);
    assert_false(v.host_is_literal);
    assert_false(v.allowed);
    assert_int_equal(nudgel_ssrf_parse_url("http://[fe80::1]/", &v), NUDGEL_OK);
    assert_true(v.host_is_literal);

    /* A public literal: allowed, port by scheme, nothing to pin. */
    assert_int_equal(nudgel_ssrf_vet_url(policy, "HTTPS://8.8.8.8/hook?x=1", &v), NUDGEL_OK);
    assert_int_equal(v.port, 443);
    assert_string_equal(v.host, "8.8.8.8");
    assert_int_equal(v.addr_count, 1);
    assert_string_equal(v.addrs[0], "8.8.8.8");
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://[2001:4860:4860::8888]/", &v), NUDGEL_OK);
    assert_string_equal(v.host, "2001:4860:4860::8888");
    assert_int_equal(v.port, 80);
    nudgel_ssrf_policy_destroy(policy);

    /* Allow-listed loopback by name: the pinned entry names localhost's addresses. */
    assert_int_equal(
        nudgel_ssrf_policy_new(true, "127.0.0.0/8,::1", &policy, errstr, sizeof(errstr)),
        NUDGEL_OK);
    assert_int_equal(nudgel_ssrf_vet_url(policy, "http://localhost:18080/hook", &v), NUDGEL_OK);
    assert_false(v.host_is_literal);
    assert_true(v.addr_count >= 1);
    assert_memory_equal(v.resolve, "localhost:18080:", 16);
    assert_true(strstr(v.resolve, "127.0.0.1") != NULL || strstr(v.resolve, "[::1]") != NULL);
    nudgel_ssrf_policy_destroy(policy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_address_table), cmocka_unit_test(test_reason_text),
        cmocka_unit_test(test_allow_list),    cmocka_unit_test(test_allow_list_errors),
        cmocka_unit_test(test_vet_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
