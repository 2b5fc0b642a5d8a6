/*
 * test_sms_encoding.c — GSM-7 / UCS-2 choice, units and segments as a table
 * of bodies with their exact expected counts, the part boundaries of split,
 * every character of both GSM 03.38 sets one by one, and invalid UTF-8.
 *
 * Non-ASCII text is written with \u escapes so that what the compiler sees
 * cannot be changed by an editor's idea of the file's encoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/sms_encoding.h"

#define EURO  u8"\u20AC"
#define DELTA u8"\u03B4"     /* lowercase delta: not GSM */
#define EMOJI u8"\U0001F600" /* outside the BMP: a surrogate pair in UCS-2 */

/* A body is up to four runs of a piece repeated n times, so long cases stay readable. */
typedef struct run {
    const char *piece;
    size_t n;
} run_t;

typedef struct sms_case {
    const char *name;
    run_t runs[4];
    nudgel_sms_encoding_t encoding;
    size_t units;
    size_t segments;
} sms_case_t;

#define GSM NUDGEL_SMS_GSM7
#define UCS NUDGEL_SMS_UCS2
#define ONE(s)                                                                                     \
    {                                                                                              \
        {                                                                                          \
            s, 1                                                                                   \
        }                                                                                          \
    }

static const sms_case_t cases[] = {
    /* Empty body policy: 1 segment of 0 units (jobs cannot be empty). */
    {"empty", ONE(""), GSM, 0, 1},
    {"hello", ONE("Hello"), GSM, 5, 1},
    {"160 gsm", {{"a", 160}}, GSM, 160, 1},
    {"161 gsm", {{"a", 161}}, GSM, 161, 2},
    {"306 gsm", {{"a", 306}}, GSM, 306, 2},
    {"307 gsm", {{"a", 307}}, GSM, 307, 3},
    {"459 gsm", {{"a", 459}}, GSM, 459, 3},
    {"460 gsm", {{"a", 460}}, GSM, 460, 4},
    {"euro counts 2", ONE(EURO), GSM, 2, 1},
    {"80 euros fill one", {{EURO, 80}}, GSM, 160, 1},
    {"81 euros", {{EURO, 81}}, GSM, 162, 2},
    {"152a + euro single", {{"a", 152}, {EURO, 1}}, GSM, 154, 1},
    {"euro moves to part 2", {{"a", 152}, {EURO, 1}, {"a", 10}}, GSM, 164, 2},
    /* 306 septets would fit 2 x 153, but the escape pair cannot straddle. */
    {"escape pair forces 3rd part", {{"a", 152}, {EURO, 1}, {"a", 152}}, GSM, 306, 3},
    {"153a + euro + 10a", {{"a", 153}, {EURO, 1}, {"a", 10}}, GSM, 165, 2},
    {"brace is extension", ONE("{"), GSM, 2, 1},
    {"all extension chars", ONE("\f^{}\\[~]|" EURO), GSM, 20, 1},
    {"price with extensions", ONE(u8"Price: 10\u20AC ^_^"), GSM, 17, 1},
    {"form feed", ONE("\f"), GSM, 2, 1},
    {"70 ucs2", {{DELTA, 70}}, UCS, 70, 1},
    {"71 ucs2", {{DELTA, 71}}, UCS, 71, 2},
    {"134 ucs2", {{DELTA, 134}}, UCS, 134, 2},
    {"135 ucs2", {{DELTA, 135}}, UCS, 135, 3},
    {"one emoji", ONE(EMOJI), UCS, 2, 1},
    {"35 emoji fill one", {{EMOJI, 35}}, UCS, 70, 1},
    {"36 emoji", {{EMOJI, 36}}, UCS, 72, 2},
    /* 134 units would fit 2 x 67, but 33 pairs fill a part to 66. */
    {"67 emoji need 3 parts", {{EMOJI, 67}}, UCS, 134, 3},
    {"emoji at 67 boundary", {{DELTA, 66}, {EMOJI, 1}, {DELTA, 5}}, UCS, 73, 2},
    {"emoji boundary forces 3rd part", {{DELTA, 66}, {EMOJI, 1}, {DELTA, 66}}, UCS, 134, 3},
    {"ascii then emoji at boundary", {{"a", 66}, {EMOJI, 1}, {"a", 66}}, UCS, 134, 3},
    {"one non-gsm char turns all ucs2", {{"a", 159}, {u8"\u00E7", 1}}, UCS, 160, 3},
    {"swahili", ONE("Habari yako? Karibu sana!"), GSM, 25, 1},
    {"hausa hooked letters",
     ONE(u8"Ina kwana? \u0257an'uwa ya \u0199ara \u0253era, \u01B4a\u01B4a"), UCS, 37, 1},
    /* Tone mark as a combining acute (U+0301): one unit of its own. */
    {"yoruba subdots and tone", ONE(u8"\u1EB8 \u1E63\u00E9 o. \u1ECCj\u1ECD\u0301 rere"), UCS, 17,
     1},
    {"luganda eng", ONE(u8"\u014A\u014Baali ya Bakulu, webale nnyo"), UCS, 29, 1},
    {"naira sign",
     ONE(u8"Pay \u20A6"
         "5,000 now"),
     UCS, 14, 1},
    {"kenyan shilling", ONE("KSh 1,000"), GSM, 9, 1},
    {"capital delta is gsm", ONE(u8"\u0394"), GSM, 1, 1},
    {"lowercase delta is ucs2", ONE(DELTA), UCS, 1, 1},
    {"capital c cedilla is gsm", ONE(u8"\u00C7a va"), GSM, 5, 1},
    {"lowercase c cedilla is ucs2", ONE(u8"Gar\u00E7on"), UCS, 6, 1},
    {"backtick is ucs2", ONE("`ls`"), UCS, 4, 1},
    {"tab is ucs2", ONE("a\tb"), UCS, 3, 1},
    {"crlf", ONE("Line1\r\nLine2"), GSM, 12, 1},
    {"u acute is not gsm", ONE(u8"Caf\u00E9 \u00D1and\u00FA"), UCS, 10, 1},
    {"latin-1 all gsm", ONE(u8"\u00A3\u00A5\u00E8\u00E9\u00F9\u00EC\u00F2\u00D8\u00F8\u00C5\u00E5"),
     GSM, 11, 1},
};

static char *build(const sms_case_t *c, size_t *len)
{
    size_t total = 0, o = 0;
    for (size_t r = 0; r < 4 && c->runs[r].piece; r++)
        total += strlen(c->runs[r].piece) * c->runs[r].n;
    char *s = malloc(total + 1);
    assert_non_null(s);
    for (size_t r = 0; r < 4 && c->runs[r].piece; r++) {
        size_t pl = strlen(c->runs[r].piece);
        for (size_t i = 0; i < c->runs[r].n; i++, o += pl)
            memcpy(s + o, c->runs[r].piece, pl);
    }
    s[total] = '\0';
    *len = total;
    return s;
}

static void test_table(void **state)
{
    (void)state;
    char errstr[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const sms_case_t *c = &cases[i];
        size_t len;
        char *s = build(c, &len);
        nudgel_sms_info_t info;
        nudgel_err_t err = nudgel_sms_encoding_measure(s, len, &info, errstr, sizeof(errstr));
        if (err != NUDGEL_OK)
            fail_msg("%s: %s", c->name, errstr);
        if (info.encoding != c->encoding || info.units != c->units || info.segments != c->segments)
            fail_msg("%s: got %s/%zu/%zu, want %s/%zu/%zu", c->name,
                     nudgel_sms_encoding_name(info.encoding), info.units, info.segments,
                     nudgel_sms_encoding_name(c->encoding), c->units, c->segments);

        /* split agrees with measure, and its parts tile the text. */
        nudgel_sms_part_t parts[8];
        nudgel_sms_info_t info2;
        assert_int_equal(
            nudgel_sms_encoding_split(s, len, parts, 8, &info2, errstr, sizeof(errstr)), NUDGEL_OK);
        assert_int_equal(info2.segments, info.segments);
        size_t at = 0, units = 0;
        size_t part_max = c->encoding == GSM ? NUDGEL_SMS_GSM7_PART : NUDGEL_SMS_UCS2_PART;
        for (size_t p = 0; p < info2.segments; p++) {
            assert_int_equal(parts[p].offset, at);
            if (info2.segments > 1)
                assert_true(parts[p].units <= part_max && parts[p].units > 0);
            at += parts[p].len;
            units += parts[p].units;
        }
        assert_int_equal(at, len);
        assert_int_equal(units, info.units);
        free(s);
    }
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(nudgel_sms_encoding_name(NUDGEL_SMS_GSM7), "gsm7");
    assert_string_equal(nudgel_sms_encoding_name(NUDGEL_SMS_UCS2), "ucs2");
}

/* The exact basic set: all 127 characters together, then each alone. */
static const char *const gsm_basic[] = {
    "@",        u8"\u00A3", "$",        u8"\u00A5", u8"\u00E8", u8"\u00E9", u8"\u00F9", u8"\u00EC",
    u8"\u00F2", u8"\u00C7", "\n",       u8"\u00D8", u8"\u00F8", "\r",       u8"\u00C5", u8"\u00E5",
    u8"\u0394", "_",        u8"\u03A6", u8"\u0393", u8"\u039B", u8"\u03A9", u8"\u03A0", u8"\u03A8",
    u8"\u03A3", u8"\u0398", u8"\u039E", u8"\u00C6", u8"\u00E6", u8"\u00DF", u8"\u00C9", " ",
    "!",        "\"",       "#",        u8"\u00A4", "%",        "&",        "'",        "(",
    ")",        "*",        "+",        ",",        "-",        ".",        "/",        "0",
    "1",        "2",        "3",        "4",        "5",        "6",        "7",        "8",
    "9",        ":",        ";",        "<",        "=",        ">",        "?",        u8"\u00A1",
    "A",        "B",        "C",        "D",        "E",        "F",        "G",        "H",
    "I",        "J",        "K",        "L",        "M",        "N",        "O",        "P",
    "Q",        "R",        "S",        "T",        "U",        "V",        "W",        "X",
    "Y",        "Z",        u8"\u00C4", u8"\u00D6", u8"\u00D1", u8"\u00DC", u8"\u00A7", u8"\u00BF",
    "a",        "b",        "c",        "d",        "e",        "f",        "g",        "h",
    "i",        "j",        "k",        "l",        "m",        "n",        "o",        "p",
    "q",        "r",        "s",        "t",        "u",        "v",        "w",        "x",
    "y",        "z",        u8"\u00E4", u8"\u00F6", u8"\u00F1", u8"\u00FC", u8"\u00E0",
};

static const char *const gsm_ext[] = {"\f", "^", "{", "}", "\\", "[", "~", "]", "|", EURO};

/* Characters that look GSM-ish but are not in either set. */
static const char *const not_gsm[] = {
    "`",        "\t",       "\x1b",     "\x7f",     u8"\u00E7", u8"\u00E1", u8"\u00C0",
    u8"\u00EA", u8"\u00A2", u8"\u00A6", u8"\u00D0", u8"\u00C8", u8"\u00CD", u8"\u00FF",
    u8"\u03B4", u8"\u03B1", u8"\u0391", u8"\u20A6", u8"\u2019", u8"\u00A0", u8"\u014B",
    u8"\u0253", u8"\u0257", u8"\u0199", u8"\u01B4", u8"\u1EB9", u8"\u1ECD", u8"\u1E63",
};

static void expect(const char *s, nudgel_sms_encoding_t enc, size_t units)
{
    char errstr[128];
    nudgel_sms_info_t info;
    assert_int_equal(nudgel_sms_encoding_measure(s, strlen(s), &info, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    if (info.encoding != enc || info.units != units || info.segments != 1)
        fail_msg("\"%s\": got %s/%zu/%zu", s, nudgel_sms_encoding_name(info.encoding), info.units,
                 info.segments);
}

static void test_character_sets(void **state)
{
    (void)state;
    size_t nbasic = sizeof(gsm_basic) / sizeof(gsm_basic[0]);
    assert_int_equal(nbasic, 127);
    char all[512] = "";
    for (size_t i = 0; i < nbasic; i++) {
        expect(gsm_basic[i], NUDGEL_SMS_GSM7, 1);
        strcat(all, gsm_basic[i]);
    }
    expect(all, NUDGEL_SMS_GSM7, 127);
    for (size_t i = 0; i < sizeof(gsm_ext) / sizeof(gsm_ext[0]); i++)
        expect(gsm_ext[i], NUDGEL_SMS_GSM7, 2);
    for (size_t i = 0; i < sizeof(not_gsm) / sizeof(not_gsm[0]); i++)
        expect(not_gsm[i], NUDGEL_SMS_UCS2, 1);
    /* Every other code point below U+0100 is UCS-2 (guards the range checks). */
    size_t gsm_latin = 0;
    for (uint32_t cp = 1; cp < 0x100; cp++) {
        char buf[3];
        size_t n;
        if (cp < 0x80) {
            buf[0] = (char)cp;
            n = 1;
        } else {
            buf[0] = (char)(0xC0 | (cp >> 6));
            buf[1] = (char)(0x80 | (cp & 0x3F));
            n = 2;
        }
        nudgel_sms_info_t info;
        char errstr[64];
        assert_int_equal(nudgel_sms_encoding_measure(buf, n, &info, errstr, sizeof(errstr)),
                         NUDGEL_OK);
        if (info.encoding == NUDGEL_SMS_GSM7)
            gsm_latin++;
    }
    /* 127 basic minus 10 Greek capitals, plus the 9 extension chars below U+0100. */
    assert_int_equal(gsm_latin, 127 - 10 + 9);
}

static void test_split_boundaries(void **state)
{
    (void)state;
    char errstr[256];
    char text[512];
    nudgel_sms_part_t parts[4];
    nudgel_sms_info_t info;

    /* 152 'a', '€', 152 'a': the € opens part 2, which ends one 'a' short. */
    memset(text, 'a', 152);
    memcpy(text + 152, EURO, 3);
    memset(text + 155, 'a', 152);
    size_t len = 307;
    assert_int_equal(nudgel_sms_encoding_split(text, len, parts, 4, &info, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(info.segments, 3);
    assert_int_equal(parts[0].offset, 0);
    assert_int_equal(parts[0].len, 152);
    assert_int_equal(parts[0].units, 152);
    assert_int_equal(parts[1].offset, 152);
    assert_int_equal(parts[1].len, 3 + 151);
    assert_int_equal(parts[1].units, 153);
    assert_int_equal(parts[2].offset, 306);
    assert_int_equal(parts[2].len, 1);
    assert_int_equal(parts[2].units, 1);

    /* Too many parts for the caller's cap: an error, and info still complete. */
    memset(parts, 0xAB, sizeof(parts));
    assert_int_equal(nudgel_sms_encoding_split(text, len, parts, 2, &info, errstr, sizeof(errstr)),
                     NUDGEL_ERR_TOO_LARGE);
    assert_int_equal(info.segments, 3);
    assert_int_equal(info.units, 306);
    assert_non_null(strstr(errstr, "3 gsm7 parts"));
    assert_int_equal(parts[2].offset, (size_t)0xABABABABABABABABull); /* untouched */

    /* 66 δ + emoji: the surrogate pair opens part 2 whole (4 UTF-8 bytes). */
    size_t o = 0;
    for (int i = 0; i < 66; i++, o += 2)
        memcpy(text + o, DELTA, 2);
    memcpy(text + o, EMOJI, 4);
    o += 4;
    memcpy(text + o, "xyz", 3);
    o += 3;
    assert_int_equal(nudgel_sms_encoding_split(text, o, parts, 4, &info, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(info.encoding, NUDGEL_SMS_UCS2);
    assert_int_equal(info.segments, 2);
    assert_int_equal(parts[0].len, 132);
    assert_int_equal(parts[0].units, 66);
    assert_int_equal(parts[1].offset, 132);
    assert_int_equal(parts[1].len, 7);
    assert_int_equal(parts[1].units, 5);

    /* A single-part message is one part covering everything; empty too. */
    assert_int_equal(nudgel_sms_encoding_split("hi", 2, parts, 1, &info, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(parts[0].offset, 0);
    assert_int_equal(parts[0].len, 2);
    assert_int_equal(nudgel_sms_encoding_split("", 0, parts, 1, &info, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(info.segments, 1);
    assert_int_equal(parts[0].len, 0);
    assert_int_equal(nudgel_sms_encoding_split("hi", 2, parts, 0, &info, errstr, sizeof(errstr)),
                     NUDGEL_ERR_TOO_LARGE);
    assert_int_equal(nudgel_sms_encoding_split("hi", 2, NULL, 1, &info, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t at;
    } bad[] = {
        {"\xC3", 0},                /* truncated 2-byte */
        {"ab\xE2\x82", 2},          /* truncated euro */
        {"\x80", 0},                /* lone continuation */
        {"\xC0\xAF", 0},            /* overlong '/' */
        {"\xE0\x80\xAF", 0},        /* overlong 3-byte */
        {"\xF0\x80\x80\xAF", 0},    /* overlong 4-byte */
        {"\xED\xA0\x80", 0},        /* UTF-16 surrogate encoded */
        {"ok \xF4\x90\x80\x80", 3}, /* above U+10FFFF */
        {"\xFF", 0},                /* never valid */
        {"a\xC3(", 1},              /* bad continuation */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char errstr[128] = "";
        char want[64];
        nudgel_sms_info_t info;
        assert_int_equal(nudgel_sms_encoding_measure(bad[i].bytes, strlen(bad[i].bytes), &info,
                                                     errstr, sizeof(errstr)),
                         NUDGEL_ERR_INVALID_FIELD);
        snprintf(want, sizeof(want), "at byte %zu", bad[i].at);
        if (!strstr(errstr, want))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, errstr, want);
    }
    /* Embedded NUL is U+0000: valid UTF-8, not GSM. */
    nudgel_sms_info_t info;
    char errstr[64];
    assert_int_equal(nudgel_sms_encoding_measure("a\0b", 3, &info, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(info.encoding, NUDGEL_SMS_UCS2);
    assert_int_equal(nudgel_sms_encoding_measure(NULL, 1, &info, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),          cmocka_unit_test(test_names),
        cmocka_unit_test(test_character_sets), cmocka_unit_test(test_split_boundaries),
        cmocka_unit_test(test_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
