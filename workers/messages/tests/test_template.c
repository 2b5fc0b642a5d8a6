/*
 * test_template.c — template rendering as a table: template, variables
 * (JSON text), output cap, and the exact output or the error and a piece of
 * its message; then the default output cap and ownership of the result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "nudgel/template.h"

typedef struct tmpl_case {
    const char *name;
    const char *tmpl;
    const char *vars; /* JSON object text, or NULL for no variables */
    size_t max;       /* 0: default cap */
    nudgel_err_t err;
    const char *want; /* the output, or a substring of errstr on error */
} tmpl_case_t;

#define OK  NUDGEL_OK
#define BAD NUDGEL_ERR_INVALID_FIELD
#define BIG NUDGEL_ERR_TOO_LARGE

static const tmpl_case_t cases[] = {
    {"api example", "Hi {{name}}, order {{order_id}} is confirmed",
     "{\"name\":\"Ada\",\"order_id\":\"AC-1042\"}", 0, OK, "Hi Ada, order AC-1042 is confirmed"},
    {"spaces inside braces", "Hi {{ name }} and {{\tname\t}} and {{name }}", "{\"name\":\"Ada\"}",
     0, OK, "Hi Ada and Ada and Ada"},
    {"missing variable", "Hi {{name}}, order {{order_id}} is confirmed", "{\"name\":\"Ada\"}", 0,
     BAD, "template variable \"order_id\" is missing"},
    {"no variables at all", "Hi {{name}}", NULL, 0, BAD, "template variable \"name\" is missing"},
    {"repeated placeholders", "{{x}}-{{x}}-{{ x }}", "{\"x\":\"ab\"}", 0, OK, "ab-ab-ab"},
    {"unicode values", u8"\u1EB8 k\u00FA \u00E0\u00E1r\u1ECD\u0300, {{name}}! {{amount}}",
     u8"{\"name\":\"Ad\u00E9b\u00E1y\u1ECD\u0300\",\"amount\":\"\u20A6"
     "5,000\"}",
     0, OK,
     u8"\u1EB8 k\u00FA \u00E0\u00E1r\u1ECD\u0300, Ad\u00E9b\u00E1y\u1ECD\u0300! \u20A6"
     "5,000"},
    {"placeholder at start and end", "{{a}} middle {{b}}", "{\"a\":\"A\",\"b\":\"B\"}", 0, OK,
     "A middle B"},
    {"whole template is a placeholder", "{{a}}", "{\"a\":\"only\"}", 0, OK, "only"},
    {"adjacent placeholders", "{{a}}{{b}}{{a}}", "{\"a\":\"1\",\"b\":\"2\"}", 0, OK, "121"},
    {"integers", "{{n}} {{neg}} {{big}} {{zero}}",
     "{\"n\":42,\"neg\":-7,\"big\":9007199254740993,\"zero\":0}", 0, OK,
     "42 -7 9007199254740993 0"},
    {"reals", "{{a}} {{b}} {{c}} {{d}} {{e}}",
     "{\"a\":2.5,\"b\":2.0,\"c\":0.1,\"d\":1e20,\"e\":-0.000125}", 0, OK,
     "2.5 2 0.1 1e+20 -0.000125"},
    {"booleans", "{{t}}/{{f}}", "{\"t\":true,\"f\":false}", 0, OK, "true/false"},
    {"dotted and dashed names", "{{order.id}} {{first-name}} {{_x9}}",
     "{\"order.id\":\"O1\",\"first-name\":\"Ada\",\"_x9\":\"z\"}", 0, OK, "O1 Ada z"},
    {"escape braces", "Use {{{{name}} to insert {{name}}", "{\"name\":\"Ada\"}", 0, OK,
     "Use {{name}} to insert Ada"},
    {"escape alone", "{{{{", NULL, 0, OK, "{{"},
    {"single and closing braces are literal", "{ } }} {x} }}}", NULL, 0, OK, "{ } }} {x} }}}"},
    {"value is not expanded again", "{{a}}", "{\"a\":\"{{b}}\",\"b\":\"no\"}", 0, OK, "{{b}}"},
    {"no placeholders", "Plain text, no braces.", NULL, 0, OK, "Plain text, no braces."},
    {"empty template", "", NULL, 0, OK, ""},
    {"unterminated", "Hi {{name", "{\"name\":\"Ada\"}", 0, BAD, "unterminated \"{{\" at byte 3"},
    {"unterminated after a good one", "{{a}} {{a}", "{\"a\":\"x\"}", 0, BAD, "at byte 6"},
    {"empty placeholder", "x {{ }} y", NULL, 0, BAD, "invalid placeholder \"{{ }}\" at byte 2"},
    {"space inside name", "{{first name}}", "{\"first name\":\"x\"}", 0, BAD,
     "invalid placeholder"},
    {"triple braces", "{{{name}}}", "{\"name\":\"x\"}", 0, BAD, "invalid placeholder"},
    {"name of 64 chars", "{{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}",
     "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":\"ok\"}", 0, OK, "ok"},
    {"name too long", "{{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}", NULL,
     0, BAD, "invalid placeholder"},
    {"null value", "{{a}}", "{\"a\":null}", 0, BAD,
     "template variable \"a\" is not a string, number or boolean"},
    {"object value", "{{a}}", "{\"a\":{\"b\":1}}", 0, BAD, "is not a string, number or boolean"},
    {"array value", "{{a}}", "{\"a\":[1]}", 0, BAD, "is not a string, number or boolean"},
    {"at the cap", "{{a}}{{a}}", "{\"a\":\"12345\"}", 10, OK, "1234512345"},
    {"over the cap by a value", "{{a}}{{a}}x", "{\"a\":\"12345\"}", 10, BIG, "exceeds 10 bytes"},
    {"over the cap by a literal", "0123456789A", NULL, 10, BIG, "exceeds 10 bytes"},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const tmpl_case_t *c = &cases[i];
        json_t *vars = NULL;
        if (c->vars) {
            json_error_t jerr;
            vars = json_loads(c->vars, 0, &jerr);
            if (!vars)
                fail_msg("%s: bad fixture JSON: %s", c->name, jerr.text);
        }
        char errstr[256] = "";
        char *out = (char *)1;
        size_t len = 0;
        nudgel_err_t err =
            nudgel_template_render(c->tmpl, vars, c->max, &out, &len, errstr, sizeof(errstr));
        if (err != c->err)
            fail_msg("%s: got %s (%s), want %s", c->name, nudgel_err_name(err), errstr,
                     nudgel_err_name(c->err));
        if (err == NUDGEL_OK) {
            assert_non_null(out);
            if (strcmp(out, c->want) != 0)
                fail_msg("%s: got \"%s\", want \"%s\"", c->name, out, c->want);
            assert_int_equal(len, strlen(c->want));
        } else {
            assert_null(out);
            if (!strstr(errstr, c->want))
                fail_msg("%s: errstr \"%s\" lacks \"%s\"", c->name, errstr, c->want);
            assert_int_equal(nudgel_err_class(err), NUDGEL_ERRCLASS_PERMANENT);
        }
        free(out);
        json_decref(vars);
    }
}

/* The default cap is 4 × 1600 bytes: 6400 render, 6401 do not. */
static void test_default_cap(void **state)
{
    (void)state;
    size_t n = NUDGEL_TEMPLATE_MAX_OUTPUT_DEFAULT;
    assert_int_equal(n, 6400);
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    json_t *vars = json_pack("{s:s}", "v", big);
    assert_non_null(vars);
    char errstr[128];
    char *out = NULL;
    size_t len;
    assert_int_equal(nudgel_template_render("{{v}}", vars, 0, &out, &len, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_int_equal(len, n);
    free(out);
    assert_int_equal(nudgel_template_render("{{v}}!", vars, 0, &out, &len, errstr, sizeof(errstr)),
                     NUDGEL_ERR_TOO_LARGE);
    assert_null(out);
    json_decref(vars);
    free(big);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    char errstr[128];
    char *out = NULL;
    json_t *arr = json_array();
    assert_int_equal(nudgel_template_render("x", arr, 0, &out, NULL, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_template_render(NULL, NULL, 0, &out, NULL, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_template_render("x", NULL, 0, NULL, NULL, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    /* out_len is optional. */
    assert_int_equal(nudgel_template_render("x", NULL, 0, &out, NULL, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_string_equal(out, "x");
    free(out);
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_default_cap),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
