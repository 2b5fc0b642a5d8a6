/*
 * test_phone.c — E.164 normalisation and operator lookup for KE, NG and UG,
 * table-driven: each row is an input, a default country, and either the
 * E.164 number, country and operator, or a refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nudgel/phone.h"

typedef struct phone_case {
    const char *input;
    const char *default_country;
    const char *e164; /* NULL: must be refused */
    const char *country;
    const char *operator_name;
} phone_case_t;

static const phone_case_t cases[] = {
    /* Kenya: the forms */
    {"0722 000 000", "KE", "+254722000000", "KE", "Safaricom"},
    {"722000000", "KE", "+254722000000", "KE", "Safaricom"},
    {"+254 722-000-000", NULL, "+254722000000", "KE", "Safaricom"},
    {"00254722000000", NULL, "+254722000000", "KE", "Safaricom"},
    {"000254722000000", "KE", "+254722000000", "KE", "Safaricom"},
    {"254722000000", "KE", "+254722000000", "KE", "Safaricom"},
    {"254722000000", NULL, "+254722000000", "KE", "Safaricom"},
    {"(0733) 123456", "KE", "+254733123456", "KE", "Airtel"},
    {"+254 110 123456", NULL, "+254110123456", "KE", "Safaricom"},
    {"+254 100 123456", NULL, "+254100123456", "KE", "Airtel"},
    {"+254 770 123456", NULL, "+254770123456", "KE", "Telkom"},
    {"+254 747 123456", NULL, "+254747123456", "KE", "JTL"}, /* 747 beats 74 */
    {"+254 744 123456", NULL, "+254744123456", "KE", "Homeland Media"},
    {"+254 763 123456", NULL, "+254763123456", "KE", "Finserve"},
    /* Nigeria */
    {"0803 123 4567", "NG", "+2348031234567", "NG", "MTN"},
    {"8031234567", "NG", "+2348031234567", "NG", "MTN"},
    {"+234 803 123 4567", NULL, "+2348031234567", "NG", "MTN"},
    {"002348031234567", NULL, "+2348031234567", "NG", "MTN"},
    {"0092348031234567", "NG", "+2348031234567", "NG", "MTN"},
    {"0805.123.4567", "NG", "+2348051234567", "NG", "Glo"},
    {"+2347025123456", NULL, "+2347025123456", "NG", "MTN"}, /* 7025 beats 702x */
    {"+2349091234567", NULL, "+2349091234567", "NG", "9mobile"},
    {"+2349121234567", NULL, "+2349121234567", "NG", "Airtel"},
    /* Uganda */
    {"0772 123456", "UG", "+256772123456", "UG", "MTN"},
    {"772123456", "UG", "+256772123456", "UG", "MTN"},
    {"+256 772 123 456", NULL, "+256772123456", "UG", "MTN"},
    {"00256772123456", NULL, "+256772123456", "UG", "MTN"},
    {"007256772123456", "UG", "+256772123456", "UG", "MTN"},
    {"+256701234567", NULL, "+256701234567", "UG", "Airtel"},
    {"+256798123456", NULL, "+256798123456", "UG", "Africell"},
    {"+256721012345", NULL, "+256721012345", "UG", "Savanna"}, /* 7210 beats 721 */
    /* elsewhere: E.164 shape only */
    {"+44 7700 900123", NULL, "+447700900123", "", NULL},
    {"0044 7700 900123", "KE", "+447700900123", "", NULL},
    /* refused */
    {"", "KE", NULL, NULL, NULL},
    {"0722 000 00", "KE", NULL, NULL, NULL},      /* too short */
    {"0722 000 0000", "KE", NULL, NULL, NULL},    /* too long */
    {"+254 20 2012345", NULL, NULL, NULL, NULL},  /* Nairobi fixed line */
    {"+254 622 000000", NULL, NULL, NULL, NULL},  /* not mobile */
    {"+234 803 123 456", NULL, NULL, NULL, NULL}, /* NG one digit short */
    {"+234 2033 123456", NULL, NULL, NULL, NULL}, /* NG fixed line */
    {"+256 312 345678", NULL, NULL, NULL, NULL},  /* UG fixed line */
    {"+256 722 123456", NULL, NULL, NULL, NULL},  /* UG 722 unassigned */
    {"0722000000", NULL, NULL, NULL, NULL},       /* national without a hint */
    {"0722000000", "SN", NULL, NULL, NULL},       /* hint outside the plan */
    {"+254 7OO 000000", NULL, NULL, NULL, NULL},  /* letters */
    {"++254722000000", NULL, NULL, NULL, NULL},
    {"+0 123 4567 890", NULL, NULL, NULL, NULL},   /* no country code 0 */
    {"+1234", NULL, NULL, NULL, NULL},             /* too short for E.164 */
    {"+1234567890123456", NULL, NULL, NULL, NULL}, /* 16 digits */
    {"0722-000-000 ext 5", "KE", NULL, NULL, NULL},
};

static void test_table(void **state)
{
    (void)state;
    size_t valid = 0, invalid = 0;
    /* Twice: the second pass answers from the learnt prefix cache. */
    for (size_t i = 0; i < 2 * sizeof(cases) / sizeof(cases[0]); i++) {
        const phone_case_t *c = &cases[i % (sizeof(cases) / sizeof(cases[0]))];
        nudgel_phone_t phone;
        char errstr[256] = "";
        nudgel_err_t err =
            nudgel_phone_normalise(c->input, c->default_country, &phone, errstr, sizeof(errstr));
        if (!c->e164) {
            if (err != NUDGEL_ERR_INVALID_FIELD)
                fail_msg("\"%s\" (%s) was accepted as %s", c->input,
                         c->default_country ? c->default_country : "-", phone.e164);
            assert_true(errstr[0] != '\0');
            invalid++;
            continue;
        }
        if (err != NUDGEL_OK)
            fail_msg("\"%s\" (%s) was refused: %s", c->input,
                     c->default_country ? c->default_country : "-", errstr);
        if (strcmp(phone.e164, c->e164) != 0 || strcmp(phone.country, c->country) != 0)
            fail_msg("\"%s\": got %s %s, expected %s %s", c->input, phone.e164, phone.country,
                     c->e164, c->country);
        if (c->operator_name &&
            (!phone.operator_name || strcmp(phone.operator_name, c->operator_name) != 0))
            fail_msg("\"%s\": operator %s, expected %s", c->input,
                     phone.operator_name ? phone.operator_name : "(none)", c->operator_name);
        valid++;
    }
    assert_true(valid >= 2 * 30);
    assert_true(invalid >= 2 * 15);
}

static void test_refusal_reasons_are_specific(void **state)
{
    (void)state;
    nudgel_phone_t phone;
    char errstr[256];
    nudgel_phone_normalise("+254202012345", NULL, &phone, errstr, sizeof(errstr));
    assert_non_null(strstr(errstr, "fixed-line"));
    nudgel_phone_normalise("0722000000", NULL, &phone, errstr, sizeof(errstr));
    assert_non_null(strstr(errstr, "country hint"));
    assert_true(nudgel_phone_country_known("KE"));
    assert_true(nudgel_phone_country_known("ug"));
    assert_false(nudgel_phone_country_known("TZ"));
}

/* Every KE/NG/UG mobile prefix of the plan, numbers of every length near the
 * valid one: the cached answer must equal a fresh one for the same number. */
static void test_cache_agrees_with_itself_over_a_sweep(void **state)
{
    (void)state;
    static const char *const ccs[] = {"+254", "+234", "+256"};
    for (size_t c = 0; c < 3; c++) {
        for (int prefix = 0; prefix < 1000; prefix += 7) {
            for (int len = 7; len <= 11; len++) {
                char number[32];
                int n = snprintf(number, sizeof(number), "%s%03d", ccs[c], prefix);
                for (int i = 3; i < len; i++)
                    number[n++] = (char)('0' + (i * 7 + prefix) % 10);
                number[n] = '\0';
                nudgel_phone_t a, b;
                char e1[256], e2[256];
                nudgel_err_t first = nudgel_phone_normalise(number, NULL, &a, e1, sizeof(e1));
                nudgel_err_t second = nudgel_phone_normalise(number, NULL, &b, e2, sizeof(e2));
                if (first != second)
                    fail_msg("%s: %d then %d", number, first, second);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_refusal_reasons_are_specific),
        cmocka_unit_test(test_cache_agrees_with_itself_over_a_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
