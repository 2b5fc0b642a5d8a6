/*
 * test_dlr_auth.c — who may post a report: the token and basic
 * credentials comparison, the CIDR allow-list (parse and match, IPv4,
 * IPv6, mapped addresses), and the gateways file's "dlr" settings.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "gateways.h"

static void test_secret_equal(void **state)
{
    (void)state;
    const char *t = "0123456789abcdef-token";
    assert_true(dlr_secret_equal(t, strlen(t), t, strlen(t)));
    assert_false(dlr_secret_equal("0123456789abcdef-tokeN", strlen(t), t, strlen(t)));
    assert_false(dlr_secret_equal(t, strlen(t) - 1, t, strlen(t))); /* a prefix */
    assert_false(dlr_secret_equal("", 0, t, strlen(t)));
    assert_false(dlr_secret_equal(NULL, 0, t, strlen(t)));
    /* bytes past a NUL count: lengths are explicit */
    assert_false(dlr_secret_equal("ab\0c", 4, "ab\0d", 4));
    assert_true(dlr_secret_equal("ab\0c", 4, "ab\0c", 4));
}

static void test_basic(void **state)
{
    (void)state;
    const char *up = "infobip:s3cret";
    /* base64("infobip:s3cret") = aW5mb2JpcDpzM2NyZXQ= */
    assert_true(dlr_basic_ok("Basic aW5mb2JpcDpzM2NyZXQ=", up, strlen(up)));
    assert_true(dlr_basic_ok("basic   aW5mb2JpcDpzM2NyZXQ=  ", up, strlen(up)));
    assert_false(dlr_basic_ok("Basic aW5mb2JpcDpzM2NyZXU=", up, strlen(up)));
    assert_false(dlr_basic_ok("Bearer aW5mb2JpcDpzM2NyZXQ=", up, strlen(up)));
    assert_false(dlr_basic_ok("Basic !!!!", up, strlen(up)));
    assert_false(dlr_basic_ok("Basic aW5m", up, strlen(up)));
    assert_false(dlr_basic_ok("Basic ", up, strlen(up)));
    assert_false(dlr_basic_ok(NULL, up, strlen(up)));
    /* base64("a:b") = YTpi (no padding) */
    assert_true(dlr_basic_ok("Basic YTpi", "a:b", 3));
}

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1)
        in->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1)
        in6->sin6_family = AF_INET6;
    else
        fail_msg("bad test address %s", text);
    return ss;
}

static void test_cidr_parse(void **state)
{
    static const char *good[] = {"10.0.0.0/8",    "192.0.2.1", "0.0.0.0/0",
                                 "2001:db8::/32", "::1",       "196.201.214.0/24"};
    static const char *bad[] = {
        "10.0.0.1/8",     "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8x", "example.com",
        "2001:db8::1/32", "::/129",      "",          "1.2.3.4/+8"};
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        dlr_cidr_t c;
        char why[128];
        if (dlr_cidr_parse(good[i], &c, why, sizeof(why)) != 0)
            fail_msg("%s refused: %s", good[i], why);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dlr_cidr_t c;
        char why[128] = "";
        if (dlr_cidr_parse(bad[i], &c, why, sizeof(why)) == 0)
            fail_msg("%s taken", bad[i]);
        assert_true(why[0] != '\0');
    }
}

static void test_cidr_match(void **state)
{
    static const struct {
        const char *list; /* comma-separated */
        const char *addr;
        bool want;
    } cases[] = {
        {"10.0.0.0/8", "10.255.1.2", true},
        {"10.0.0.0/8", "11.0.0.1", false},
        {"192.0.2.0/25", "192.0.2.127", true},
        {"192.0.2.0/25", "192.0.2.128", false},
        {"192.0.2.0/24,127.0.0.0/8", "127.0.0.1", true},
        {"192.0.2.0/24", "127.0.0.1", false},
        {"192.0.2.0/24", "::ffff:192.0.2.9", true}, /* mapped counts as IPv4 */
        {"::ffff:0:0/96", "192.0.2.9", false},      /* but not the other way */
        {"2001:db8::/32", "2001:db8:1::5", true},
        {"2001:db8::/32", "2001:db9::5", false},
        {"0.0.0.0/0", "203.0.113.7", true},
        {"0.0.0.0/0", "2001:db8::1", false},
        {"::1", "::1", true},
        {"10.1.2.3", "10.1.2.4", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dlr_cidr_t list[4];
        size_t n = 0;
        char buf[128], why[128];
        snprintf(buf, sizeof(buf), "%s", cases[i].list);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
            assert_int_equal(dlr_cidr_parse(tok, &list[n++], why, sizeof(why)), 0);
        struct sockaddr_storage ss = addr(cases[i].addr);
        if (dlr_cidr_match(list, n, (struct sockaddr *)&ss) != cases[i].want)
            fail_msg("case %zu: %s in %s", i, cases[i].addr, cases[i].list);
    }
    struct sockaddr_storage ss = addr("10.0.0.1");
    assert_false(dlr_cidr_match(NULL, 0, (struct sockaddr *)&ss));
    assert_false(dlr_cidr_match(NULL, 0, NULL));
}

#define GW_HEAD                                                                                    \
    "{\"gateways\":[{\"name\":\"at-ke\",\"dialect\":\"africastalking\",\"base_url\":"              \
    "\"http://127.0.0.1:1\",\"api_key_env\":\"NO_SUCH_KEY_NEEDED\",\"username\":\"u\","            \
    "\"tps\":1"
#define GW_TAIL "}],\"default_route\":[\"at-ke\"]}"

static nudgel_err_t load(const char *dlr, dlr_gateways_t **out, char *why, size_t why_size)
{
    char json[2048];
    snprintf(json, sizeof(json), "%s%s%s%s", GW_HEAD, dlr ? ",\"dlr\":" : "", dlr ? dlr : "",
             GW_TAIL);
    return dlr_gateways_parse(json, strlen(json), out, why, why_size);
}

static void test_gateways(void **state)
{
    dlr_gateways_t *g = NULL;
    char why[512];
    (void)state;
    setenv("TEST_DLR_TOKEN", "tok_0123456789abcdef\n", 1);
    setenv("TEST_DLR_PASS", "pw", 1);
    /* the API key is named, not read: nudgel-dlr never sends */
    assert_int_equal(load("{\"token_env\":\"TEST_DLR_TOKEN\",\"basic_user\":\"ib\","
                          "\"basic_password_env\":\"TEST_DLR_PASS\",\"allow_cidrs\":"
                          "[\"10.0.0.0/8\"],\"_note\":\"comment\"}",
                          &g, why, sizeof(why)),
                     NUDGEL_OK);
    const dlr_gateway_t *gw = dlr_gateways_find(g, "at-ke");
    assert_non_null(gw);
    assert_null(dlr_gateways_find(g, "infobip"));
    assert_string_equal(gw->token, "tok_0123456789abcdef"); /* trailing newline dropped */
    assert_string_equal(gw->userpass, "ib:pw");
    assert_int_equal(gw->ncidrs, 1);
    dlr_gateways_free(g);

    static const struct {
        const char *dlr;
        const char *reason;
    } bad[] = {
        {NULL, "no gateway has a \"dlr\" object"},
        {"{}", "token_env and token_file is required"},
        {"{\"token_env\":\"TEST_DLR_UNSET\"}", "TEST_DLR_UNSET is not set"},
        {"{\"token_env\":\"TEST_DLR_PASS\"}", "16 to"},
        {"{\"token_env\":\"TEST_DLR_TOKEN\",\"token_file\":\"/x\"}", "give one of"},
        {"{\"token_file\":\"/nonexistent/token\"}", "cannot open"},
        {"{\"token_env\":\"TEST_DLR_TOKEN\",\"allow_cidrs\":[\"10.0.0.1/8\"]}", "allow_cidrs[0]"},
        {"{\"token_env\":\"TEST_DLR_TOKEN\",\"allow_cidrs\":[]}", "allow_cidrs"},
        {"{\"token_env\":\"TEST_DLR_TOKEN\",\"basic_user\":\"ib\"}", "basic_password_env"},
        {"{\"token_env\":\"TEST_DLR_TOKEN\",\"basic_password_env\":\"TEST_DLR_PASS\"}",
         "basic_user: required"},
        {"{\"token_env\":\"TEST_DLR_TOKEN\",\"status_pointer\":\"/s\"}",
         "only applies to dialect generic"},
        {"{\"token_env\":\"TEST_DLR_TOKEN\",\"tokne\":1}", "unknown key"},
        {"[]", "dlr: must be an object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        g = NULL;
        nudgel_err_t err = load(bad[i].dlr, &g, why, sizeof(why));
        if (err == NUDGEL_OK || g || !strstr(why, bad[i].reason))
            fail_msg("case %zu: err %d, \"%s\", wanted \"%s\"", i, (int)err, why, bad[i].reason);
        /* never the secret itself */
        assert_null(strstr(why, "tok_0123456789abcdef"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_equal), cmocka_unit_test(test_basic),
        cmocka_unit_test(test_cidr_parse),   cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_gateways),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
