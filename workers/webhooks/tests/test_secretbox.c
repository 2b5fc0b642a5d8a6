/*
 * test_secretbox.c — webhook secrets at rest: round trips, tamper detection,
 * key rotation and keyring parsing.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nudgel/webhooks/secretbox.h"

#define KEY_A  "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KEY_B  "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="
#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

static nudgel_secretbox_t *box_of(const char *ring)
{
    nudgel_secretbox_t *box = NULL;
    char errstr[256];
    nudgel_err_t err = nudgel_secretbox_new(ring, &box, errstr, sizeof(errstr));
    if (err != NUDGEL_OK)
        fail_msg("%s: %s", ring, errstr);
    return box;
}

static void test_round_trip(void **state)
{
    (void)state;
    nudgel_secretbox_t *box = box_of("2026-11:" KEY_A);
    unsigned char *sealed = NULL, *sealed2 = NULL;
    size_t sealed_len = 0, sealed2_len = 0, plain_len = 0;
    const char *key_id = NULL;
    char *plain = NULL, errstr[256];

    assert_string_equal(nudgel_secretbox_active_key_id(box), "2026-11");
    assert_int_equal(nudgel_secretbox_seal(box, SECRET, strlen(SECRET), &sealed, &sealed_len,
                                           &key_id, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_string_equal(key_id, "2026-11");
    assert_int_equal(sealed_len, strlen(SECRET) + NUDGEL_SECRETBOX_OVERHEAD);
    assert_int_equal(sealed[0], NUDGEL_SECRETBOX_VERSION);
    /* The ciphertext does not contain the secret. */
    assert_null(memmem(sealed, sealed_len, SECRET, strlen(SECRET)));
    assert_null(memmem(sealed, sealed_len, "MfKQ9r8G", 8));

    assert_int_equal(nudgel_secretbox_open(box, key_id, sealed, sealed_len, &plain, &plain_len,
                                           errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(plain_len, strlen(SECRET));
    assert_string_equal(plain, SECRET);
    nudgel_secretbox_free_plain(plain, plain_len);

    /* Fresh nonce each time: the same secret seals to different bytes. */
    assert_int_equal(nudgel_secretbox_seal(box, SECRET, strlen(SECRET), &sealed2, &sealed2_len,
                                           NULL, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(sealed2_len, sealed_len);
    assert_memory_not_equal(sealed, sealed2, sealed_len);

    /* An empty plaintext is fine too. */
    free(sealed2);
    assert_int_equal(
        nudgel_secretbox_seal(box, "", 0, &sealed2, &sealed2_len, NULL, errstr, sizeof(errstr)),
        NUDGEL_OK);
    assert_int_equal(nudgel_secretbox_open(box, "2026-11", sealed2, sealed2_len, &plain, &plain_len,
                                           errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(plain_len, 0);
    assert_string_equal(plain, "");
    nudgel_secretbox_free_plain(plain, plain_len);
    free(sealed);
    free(sealed2);
    nudgel_secretbox_destroy(box);
}

static void expect_open_fails(const nudgel_secretbox_t *box, const char *key_id,
                              const unsigned char *sealed, size_t len, nudgel_err_t expected)
{
    char *plain = (char *)"untouched", errstr[256] = "";
    size_t plain_len = 99;
    assert_int_equal(
        nudgel_secretbox_open(box, key_id, sealed, len, &plain, &plain_len, errstr, sizeof(errstr)),
        expected);
    assert_null(plain);
    assert_int_equal(plain_len, 0);
    assert_true(errstr[0] != '\0');
    assert_null(strstr(errstr, SECRET));
}

static void test_tamper(void **state)
{
    (void)state;
    nudgel_secretbox_t *box = box_of("a:" KEY_A ",b:" KEY_B);
    nudgel_secretbox_t *wrong = box_of("a:" KEY_B);
    unsigned char *sealed = NULL;
    size_t len = 0;
    char errstr[256];
    assert_int_equal(nudgel_secretbox_seal(box, SECRET, strlen(SECRET), &sealed, &len, NULL, errstr,
                                           sizeof(errstr)),
                     NUDGEL_OK);
    /* Every single byte flipped, header, nonce, ciphertext and tag, is caught. */
    for (size_t i = 0; i < len; i++) {
        sealed[i] ^= 0x01;
        expect_open_fails(box, "a", sealed, len, NUDGEL_ERR_INVALID_FIELD);
        sealed[i] ^= 0x01;
    }
    /* Truncated by one byte, or to less than the overhead. */
    expect_open_fails(box, "a", sealed, len - 1, NUDGEL_ERR_INVALID_FIELD);
    expect_open_fails(box, "a", sealed, NUDGEL_SECRETBOX_OVERHEAD - 1, NUDGEL_ERR_INVALID_FIELD);
    /* The other key of the same ring: authentication (and the key id as AAD) fails. */
    expect_open_fails(box, "b", sealed, len, NUDGEL_ERR_INVALID_FIELD);
    /* Unknown key id. */
    expect_open_fails(box, "c", sealed, len, NUDGEL_ERR_CONFIG);
    /* Same key id, another key. */
    expect_open_fails(wrong, "a", sealed, len, NUDGEL_ERR_INVALID_FIELD);
    /* Untouched, it still opens. */
    char *plain = NULL;
    size_t plain_len = 0;
    assert_int_equal(
        nudgel_secretbox_open(box, "a", sealed, len, &plain, &plain_len, errstr, sizeof(errstr)),
        NUDGEL_OK);
    nudgel_secretbox_free_plain(plain, plain_len);
    free(sealed);
    nudgel_secretbox_destroy(box);
    nudgel_secretbox_destroy(wrong);
}

static void test_key_rotation(void **state)
{
    (void)state;
    /* Sealed under "old"; then "new" is prepended: new seals, old still opens. */
    nudgel_secretbox_t *before = box_of("old:" KEY_A);
    nudgel_secretbox_t *after = box_of(" new:" KEY_B " , old:" KEY_A " ");
    unsigned char *sealed = NULL;
    size_t len = 0, plain_len = 0;
    const char *id = NULL;
    char *plain = NULL, errstr[256];
    assert_int_equal(nudgel_secretbox_seal(before, SECRET, strlen(SECRET), &sealed, &len, &id,
                                           errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_string_equal(id, "old");
    assert_string_equal(nudgel_secretbox_active_key_id(after), "new");
    assert_int_equal(nudgel_secretbox_open(after, "old", sealed, len, &plain, &plain_len, errstr,
                                           sizeof(errstr)),
                     NUDGEL_OK);
    assert_string_equal(plain, SECRET);
    nudgel_secretbox_free_plain(plain, plain_len);
    free(sealed);
    assert_int_equal(nudgel_secretbox_seal(after, SECRET, strlen(SECRET), &sealed, &len, &id,
                                           errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_string_equal(id, "new");
    expect_open_fails(before, "new", sealed, len, NUDGEL_ERR_CONFIG);
    free(sealed);
    nudgel_secretbox_destroy(before);
    nudgel_secretbox_destroy(after);
}

static void test_keyring_errors(void **state)
{
    (void)state;
    static const struct {
        const char *ring;
        const char *needle; /* expected in the error */
    } cases[] = {
        {"", "entry 1 is empty"},
        {"a:" KEY_A ",", "entry 2 is empty"},
        {"a:" KEY_A ",,b:" KEY_B, "entry 2 is empty"},
        {KEY_A, "no ':'"},
        {":" KEY_A, "entry 1: the key id"},
        {"bad id:" KEY_A, "entry 1: the key id"},
        {"a:" KEY_A ",a:" KEY_B, "\"a\" appears twice"},
        {"a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", "exactly 32 bytes"}, /* 31 bytes */
        {"a:" KEY_A "AAAA", "exactly 32 bytes"},
        {"a:!!ECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "exactly 32 bytes"},
        {"a:" KEY_A ",b:short", "entry 2 (key id \"b\")"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nudgel_secretbox_t *box = (nudgel_secretbox_t *)&cases; /* must be reset to NULL */
        char errstr[256] = "";
        assert_int_equal(nudgel_secretbox_new(cases[i].ring, &box, errstr, sizeof(errstr)),
                         NUDGEL_ERR_CONFIG);
        assert_null(box);
        if (!strstr(errstr, cases[i].needle))
            fail_msg("case %zu: \"%s\" does not contain \"%s\"", i, errstr, cases[i].needle);
        /* Errors never carry key material. */
        assert_null(strstr(errstr, "AAECAwQF"));
        assert_null(strstr(errstr, "ZGVmZ2hp"));
    }
}

static void test_from_conf(void **state)
{
    (void)state;
    static const nudgel_conf_entry_t *const tables[] = {nudgel_secretbox_conf, NULL};
    char errstr[256], path[] = "/tmp/nudgel-test-keyring-XXXXXX";
    nudgel_secretbox_t *box = NULL;
    nudgel_conf_t *conf = nudgel_conf_new("test", tables);
    assert_non_null(conf);

    /* Neither set: the error names the key and the variable. */
    assert_int_equal(nudgel_secretbox_from_conf(conf, &box, errstr, sizeof(errstr)),
                     NUDGEL_ERR_CONFIG);
    assert_non_null(strstr(errstr, "secret.key"));
    assert_non_null(strstr(errstr, "NUDGEL_SECRET_KEY"));

    /* A key file, with a trailing newline. */
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "file:%s\n", KEY_A);
    fclose(f);
    assert_int_equal(nudgel_conf_set(conf, "secret.key_file", path, NUDGEL_CONF_FROM_FLAG, errstr,
                                     sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_secretbox_from_conf(conf, &box, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_string_equal(nudgel_secretbox_active_key_id(box), "file");
    nudgel_secretbox_destroy(box);
    unlink(path);
    assert_int_equal(nudgel_secretbox_from_conf(conf, &box, errstr, sizeof(errstr)), NUDGEL_ERR_IO);
    assert_non_null(strstr(errstr, "secret.key_file"));

    /* secret.key wins over the file. */
    assert_int_equal(nudgel_conf_set(conf, "secret.key", "env:" KEY_B, NUDGEL_CONF_FROM_ENV, errstr,
                                     sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_secretbox_from_conf(conf, &box, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_string_equal(nudgel_secretbox_active_key_id(box), "env");
    nudgel_secretbox_destroy(box);

    /* A bad value names the key. */
    assert_int_equal(nudgel_conf_set(conf, "secret.key", "env:nope", NUDGEL_CONF_FROM_ENV, errstr,
                                     sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(nudgel_secretbox_from_conf(conf, &box, errstr, sizeof(errstr)),
                     NUDGEL_ERR_CONFIG);
    assert_memory_equal(errstr, "secret.key: ", 12);
    nudgel_conf_destroy(conf);

    /* The environment variable is NUDGEL_SECRET_KEY, and the value is sensitive. */
    char env[64];
    nudgel_conf_env_name("secret.key", env, sizeof(env));
    assert_string_equal(env, "NUDGEL_SECRET_KEY");
    assert_true(nudgel_secretbox_conf[0].flags & NUDGEL_CONF_SENSITIVE);
    assert_true(nudgel_secretbox_conf[1].flags & NUDGEL_CONF_SENSITIVE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_key_rotation), cmocka_unit_test(test_keyring_errors),
        cmocka_unit_test(test_from_conf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
