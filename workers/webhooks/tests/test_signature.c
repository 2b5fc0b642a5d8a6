/*
 * test_signature.c — Standard Webhooks signing against the reference vectors
 * (tests/fixtures/webhooks/standard-webhooks-vectors.json), rotation, the
 * receiver's checks and secret generation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "nudgel/webhooks/signature.h"

#ifndef NUDGEL_WEBHOOK_VECTORS
#error "NUDGEL_WEBHOOK_VECTORS must name the vectors file"
#endif

static json_t *load_vectors(void)
{
    json_error_t jerr;
    json_t *doc = json_load_file(NUDGEL_WEBHOOK_VECTORS, 0, &jerr);
    if (!doc)
        fail_msg("%s:%d: %s", NUDGEL_WEBHOOK_VECTORS, jerr.line, jerr.text);
    return doc;
}

static void test_reference_vectors(void **state)
{
    (void)state;
    json_t *doc = load_vectors(), *vectors = json_object_get(doc, "vectors"), *v;
    size_t i;
    char errstr[256];
    assert_true(json_array_size(vectors) >= 2);
    json_array_foreach(vectors, i, v)
    {
        const char *secret = json_string_value(json_object_get(v, "secret"));
        const char *id = json_string_value(json_object_get(v, "webhook_id"));
        const char *payload = json_string_value(json_object_get(v, "payload"));
        const char *expected = json_string_value(json_object_get(v, "expected_signature"));
        int64_t ts = (int64_t)json_integer_value(json_object_get(v, "webhook_timestamp"));
        nudgel_wh_key_t key;
        char sig[NUDGEL_WH_SIGNATURE_MAX];
        assert_non_null(secret);
        assert_int_equal(nudgel_wh_secret_decode(secret, &key, errstr, sizeof(errstr)), NUDGEL_OK);
        assert_int_equal(nudgel_wh_sign(&key, id, ts, payload, strlen(payload), sig), NUDGEL_OK);
        assert_string_equal(sig, expected);
        /* The receiver's side accepts it, and refuses a one-byte change of the body. */
        assert_int_equal(nudgel_wh_verify(expected, &key, 1, id, ts, payload, strlen(payload), ts,
                                          300, errstr, sizeof(errstr)),
                         NUDGEL_OK);
        assert_int_equal(nudgel_wh_verify(expected, &key, 1, id, ts, payload, strlen(payload) - 1,
                                          ts, 300, errstr, sizeof(errstr)),
                         NUDGEL_ERR_INVALID_FIELD);
        /* The secret without its prefix decodes to the same key. */
        nudgel_wh_key_t bare;
        assert_int_equal(nudgel_wh_secret_decode(secret + strlen(NUDGEL_WH_SECRET_PREFIX), &bare,
                                                 errstr, sizeof(errstr)),
                         NUDGEL_OK);
        assert_int_equal(bare.len, key.len);
        assert_memory_equal(bare.bytes, key.bytes, key.len);
        nudgel_wh_key_cleanse(&key);
        assert_int_equal(key.len, 0);
    }
    json_decref(doc);
}

static void test_negative_vectors(void **state)
{
    (void)state;
    json_t *doc = load_vectors(), *v = json_array_get(json_object_get(doc, "vectors"), 0),
           *neg = json_object_get(doc, "negative");
    const char *secret = json_string_value(json_object_get(v, "secret"));
    const char *id = json_string_value(json_object_get(v, "webhook_id"));
    const char *payload = json_string_value(json_object_get(v, "payload"));
    const char *expected = json_string_value(json_object_get(v, "expected_signature"));
    const char *tampered = json_string_value(json_object_get(neg, "tampered_signature"));
    const char *decoy = json_string_value(json_object_get(neg, "decoy_in_list"));
    int64_t ts = (int64_t)json_integer_value(json_object_get(v, "webhook_timestamp"));
    nudgel_wh_key_t key;
    char errstr[256], header[512];
    size_t len = strlen(payload);
    assert_non_null(tampered);
    assert_non_null(decoy);
    assert_int_equal(nudgel_wh_secret_decode(secret, &key, errstr, sizeof(errstr)), NUDGEL_OK);

    assert_int_equal(
        nudgel_wh_verify(tampered, &key, 1, id, ts, payload, len, ts, 300, errstr, sizeof(errstr)),
        NUDGEL_ERR_INVALID_FIELD);
    assert_int_equal(
        nudgel_wh_verify(decoy, &key, 1, id, ts, payload, len, ts, 300, errstr, sizeof(errstr)),
        NUDGEL_ERR_INVALID_FIELD);
    /* A list with a decoy and the right one, in either order, verifies. */
    snprintf(header, sizeof(header), "%s %s", decoy, expected);
    assert_int_equal(
        nudgel_wh_verify(header, &key, 1, id, ts, payload, len, ts, 300, errstr, sizeof(errstr)),
        NUDGEL_OK);
    snprintf(header, sizeof(header), "%s %s", expected, decoy);
    assert_int_equal(
        nudgel_wh_verify(header, &key, 1, id, ts, payload, len, ts, 300, errstr, sizeof(errstr)),
        NUDGEL_OK);
    /* Another version tag with the same MAC is not a v1 signature. */
    snprintf(header, sizeof(header), "v2,%s", expected + 3);
    assert_int_equal(
        nudgel_wh_verify(header, &key, 1, id, ts, payload, len, ts, 300, errstr, sizeof(errstr)),
        NUDGEL_ERR_INVALID_FIELD);
    /* Other id or timestamp: no match. */
    assert_int_equal(nudgel_wh_verify(expected, &key, 1, "msg_other", ts, payload, len, ts, 300,
                                      errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_FIELD);
    /* Outside the tolerance, either way. */
    assert_int_equal(nudgel_wh_verify(expected, &key, 1, id, ts, payload, len, ts + 301, 300,
                                      errstr, sizeof(errstr)),
                     NUDGEL_ERR_TIMED_OUT);
    assert_int_equal(nudgel_wh_verify(expected, &key, 1, id, ts, payload, len, ts - 301, 300,
                                      errstr, sizeof(errstr)),
                     NUDGEL_ERR_TIMED_OUT);
    assert_int_equal(nudgel_wh_verify(expected, &key, 1, id, ts, payload, len, ts + 300, 300,
                                      errstr, sizeof(errstr)),
                     NUDGEL_OK);
    json_decref(doc);
}

static void test_rotation_two_signatures(void **state)
{
    (void)state;
    char s1[NUDGEL_WH_SECRET_TEXT_MAX], s2[NUDGEL_WH_SECRET_TEXT_MAX],
        s3[NUDGEL_WH_SECRET_TEXT_MAX], errstr[256], header[2 * NUDGEL_WH_SIGNATURE_MAX];
    nudgel_wh_key_t keys[2], other;
    const char *body = "{\"type\":\"message.delivered\"}";
    assert_int_equal(nudgel_wh_secret_generate(s1, sizeof(s1)), NUDGEL_OK);
    assert_int_equal(nudgel_wh_secret_generate(s2, sizeof(s2)), NUDGEL_OK);
    assert_int_equal(nudgel_wh_secret_generate(s3, sizeof(s3)), NUDGEL_OK);
    assert_int_equal(nudgel_wh_secret_decode(s1, &keys[0], errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(nudgel_wh_secret_decode(s2, &keys[1], errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(nudgel_wh_secret_decode(s3, &other, errstr, sizeof(errstr)), NUDGEL_OK);

    assert_int_equal(nudgel_wh_signature_header(keys, 2, "evt_1", 1700000000, body, strlen(body),
                                                header, sizeof(header)),
                     NUDGEL_OK);
    /* Two space-separated v1 signatures, current key first. */
    char *space = strchr(header, ' ');
    assert_non_null(space);
    assert_null(strchr(space + 1, ' '));
    assert_memory_equal(header, "v1,", 3);
    assert_memory_equal(space + 1, "v1,", 3);
    char one[NUDGEL_WH_SIGNATURE_MAX];
    assert_int_equal(nudgel_wh_sign(&keys[0], "evt_1", 1700000000, body, strlen(body), one),
                     NUDGEL_OK);
    assert_memory_equal(header, one, strlen(one));

    /* A receiver holding either secret accepts; one holding neither refuses. */
    for (int k = 0; k < 2; k++)
        assert_int_equal(nudgel_wh_verify(header, &keys[k], 1, "evt_1", 1700000000, body,
                                          strlen(body), 1700000000, 300, errstr, sizeof(errstr)),
                         NUDGEL_OK);
    assert_int_equal(nudgel_wh_verify(header, &other, 1, "evt_1", 1700000000, body, strlen(body),
                                      1700000000, 300, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_FIELD);
    /* Too small a buffer is refused rather than truncated. */
    assert_int_equal(nudgel_wh_signature_header(keys, 2, "evt_1", 1700000000, body, strlen(body),
                                                header, NUDGEL_WH_SIGNATURE_MAX),
                     NUDGEL_ERR_TOO_LARGE);
    assert_int_equal(
        nudgel_wh_signature_header(keys, 0, "evt_1", 1, body, strlen(body), header, sizeof(header)),
        NUDGEL_ERR_INVALID_ARG);
}

static void test_generate(void **state)
{
    (void)state;
    char a[NUDGEL_WH_SECRET_TEXT_MAX], b[NUDGEL_WH_SECRET_TEXT_MAX], errstr[256];
    nudgel_wh_key_t ka, kb;
    assert_int_equal(nudgel_wh_secret_generate(a, sizeof(a)), NUDGEL_OK);
    assert_int_equal(nudgel_wh_secret_generate(b, sizeof(b)), NUDGEL_OK);
    assert_memory_equal(a, "whsec_", 6);
    assert_int_equal(strlen(a), 6 + 44);
    assert_string_not_equal(a, b);
    assert_int_equal(nudgel_wh_secret_decode(a, &ka, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(nudgel_wh_secret_decode(b, &kb, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(ka.len, NUDGEL_WH_SECRET_BYTES);
    assert_int_equal(kb.len, NUDGEL_WH_SECRET_BYTES);
    assert_int_equal(nudgel_wh_secret_generate(a, 10), NUDGEL_ERR_INVALID_ARG);
}

static void test_decode_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "whsec_",
        "",
        "whsec_!!!!",
        "whsec_abcde",    /* 5 characters: not a base64 length */
        "whsec_QUJD====", /* too much padding */
        "whsec_QU JD",    /* whitespace */
        /* 66 bytes: over NUDGEL_WH_KEY_MAX */
        "whsec_"
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWkFCQ0RFRkdISUpLTE1O",
    };
    char errstr[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nudgel_wh_key_t key;
        errstr[0] = '\0';
        assert_int_equal(nudgel_wh_secret_decode(bad[i], &key, errstr, sizeof(errstr)),
                         NUDGEL_ERR_INVALID_FIELD);
        assert_true(errstr[0] != '\0');
        /* The reason never echoes the secret. */
        if (strlen(bad[i]) > 8)
            assert_null(strstr(errstr, bad[i] + 6));
    }
    nudgel_wh_key_t key;
    assert_int_equal(nudgel_wh_secret_decode("whsec_QUJD", &key, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(key.len, 3);
    assert_memory_equal(key.bytes, "ABC", 3);
    assert_int_equal(nudgel_wh_secret_decode("whsec_QUI=", &key, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(key.len, 2);
    assert_int_equal(nudgel_wh_secret_decode("whsec_QUI", &key, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(key.len, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),       cmocka_unit_test(test_negative_vectors),
        cmocka_unit_test(test_rotation_two_signatures), cmocka_unit_test(test_generate),
        cmocka_unit_test(test_decode_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
