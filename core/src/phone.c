/*
 * phone.c — E.164 normalisation and operator lookup.
 *
 * The plan is config/numbering.json, embedded at build time (numbering_plan_*
 * symbols from cmake/embed.cmake) and parsed once. libphonenumber's patterns
 * use PCRE syntax; they are translated to POSIX ERE ("(?:" → "(", "\d" →
 * "[0-9]"), which is all those patterns use.
 */
#define _GNU_SOURCE
#include "nudgel/phone.h"

#include <ctype.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

extern const size_t numbering_plan_count;
extern const unsigned char *const numbering_plan_data[];
extern const size_t numbering_plan_sizes[];

#define MAX_COUNTRIES 8
#define MAX_PREFIXES  128
#define MAX_INPUT     64

typedef struct carrier_prefix {
    char prefix[8];
    const char *name;
} carrier_prefix_t;

/* Line type of (NSN length, first four digits), learnt from the patterns. */
enum {
    LINE_CACHE_UNKNOWN,
    LINE_CACHE_MOBILE,
    LINE_CACHE_FIXED,
    LINE_CACHE_NONE,
    LINE_CACHE_VARIES
};
#define LINE_CACHE_MIN_LEN 5
#define LINE_CACHE_MAX_LEN 13
#define LINE_CACHE_SLOTS   ((LINE_CACHE_MAX_LEN - LINE_CACHE_MIN_LEN + 1) * 10000)

typedef struct country_plan {
    unsigned char line_cache[LINE_CACHE_SLOTS];
    /* operator of a 4-digit NSN prefix: 0 unknown yet, 1 none, else index + 2 */
    unsigned char operator_cache[10000];
    bool operator_cacheable; /* every carrier prefix has at most 4 digits */
    char iso[3];
    char cc[4];
    char national_prefix[4];
    regex_t mobile, fixed;
    carrier_prefix_t prefixes[MAX_PREFIXES];
    size_t prefix_count;
} country_plan_t;

/* An MCC+MNC of the plan's "mcc_mnc_unverified" table: "Safaricom KE" → Safaricom, KE. */
#define MAX_NETWORKS 32
typedef struct network {
    char code[8];
    char country[3];
    const char *name;
} network_t;

static country_plan_t plans[MAX_COUNTRIES];
static size_t plan_count;
static network_t networks[MAX_NETWORKS];
static size_t network_count;
static int plan_status; /* 0 ok, -1 broken */
static pthread_once_t plan_once = PTHREAD_ONCE_INIT;

static int compile_pattern(regex_t *re, const char *pcre)
{
    char ere[1024];
    size_t o = 0;
    o += (size_t)snprintf(ere, sizeof(ere), "^(");
    for (const char *p = pcre; *p && o + 8 < sizeof(ere); p++) {
        if (p[0] == '(' && p[1] == '?' && p[2] == ':') {
            ere[o++] = '(';
            p += 2;
        } else if (p[0] == '\\' && p[1] == 'd') {
            memcpy(ere + o, "[0-9]", 5);
            o += 5;
            p++;
        } else {
            ere[o++] = *p;
        }
    }
    if (o + 3 >= sizeof(ere))
        return -1;
    memcpy(ere + o, ")$", 3);
    return regcomp(re, ere, REG_EXTENDED | REG_NOSUB) == 0 ? 0 : -1;
}

static void plan_load(void)
{
    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)numbering_plan_data[0], numbering_plan_sizes[0], 0, &jerr);
    json_t *countries = root ? json_object_get(root, "countries") : NULL;
    const char *iso;
    json_t *c;
    plan_status = -1;
    if (!json_is_object(countries))
        goto out;
    json_object_foreach(countries, iso, c)
    {
        if (plan_count == MAX_COUNTRIES)
            goto out;
        country_plan_t *p = &plans[plan_count];
        const char *cc = json_string_value(json_object_get(c, "country_code"));
        const char *np = json_string_value(json_object_get(c, "national_prefix"));
        const char *mobile =
            json_string_value(json_object_get(json_object_get(c, "mobile"), "pattern"));
        const char *fixed =
            json_string_value(json_object_get(json_object_get(c, "fixed_line"), "pattern"));
        json_t *carriers = json_object_get(c, "carriers_by_nsn_prefix");
        if (!cc || !mobile || !fixed || strlen(iso) != 2 || strlen(cc) > 3)
            goto out;
        snprintf(p->iso, sizeof(p->iso), "%s", iso);
        snprintf(p->cc, sizeof(p->cc), "%s", cc);
        snprintf(p->national_prefix, sizeof(p->national_prefix), "%s", np ? np : "");
        if (compile_pattern(&p->mobile, mobile) || compile_pattern(&p->fixed, fixed))
            goto out;
        const char *prefix;
        json_t *name;
        json_object_foreach(carriers, prefix, name)
        {
            if (p->prefix_count == MAX_PREFIXES || strlen(prefix) >= sizeof(p->prefixes[0].prefix))
                goto out;
            carrier_prefix_t *cp = &p->prefixes[p->prefix_count++];
            snprintf(cp->prefix, sizeof(cp->prefix), "%s", prefix);
            cp->name = strdup(json_string_value(name) ? json_string_value(name) : "");
        }
        p->operator_cacheable = p->prefix_count < 250;
        for (size_t i = 0; i < p->prefix_count; i++)
            if (strlen(p->prefixes[i].prefix) > 4)
                p->operator_cacheable = false;
        plan_count++;
    }
    const char *code;
    json_t *label;
    json_object_foreach(json_object_get(root, "mcc_mnc_unverified"), code, label)
    {
        const char *text = json_string_value(label);
        const char *space = text ? strrchr(text, ' ') : NULL;
        size_t clen = strlen(code);
        if (!space || clen < 5 || clen > 6 || strspn(code, "0123456789") != clen ||
            strlen(space + 1) != 2 || network_count == MAX_NETWORKS)
            continue; /* the "note" and anything not "<name> <CC>" */
        network_t *n = &networks[network_count++];
        snprintf(n->code, sizeof(n->code), "%s", code);
        snprintf(n->country, sizeof(n->country), "%s", space + 1);
        n->name = strndup(text, (size_t)(space - text));
    }
    plan_status = 0;
out:
    json_decref(root);
}

static country_plan_t *plan_by_iso(const char *iso)
{
    for (size_t i = 0; iso && i < plan_count; i++)
        if (strcasecmp(plans[i].iso, iso) == 0)
            return &plans[i];
    return NULL;
}

static country_plan_t *plan_by_cc_prefix(const char *digits)
{
    for (size_t i = 0; i < plan_count; i++)
        if (strncmp(digits, plans[i].cc, strlen(plans[i].cc)) == 0)
            return &plans[i];
    return NULL;
}

int nudgel_phone_country_known(const char *country)
{
    pthread_once(&plan_once, plan_load);
    return plan_by_iso(country) != NULL;
}

int nudgel_phone_operator_known(const char *country, const char *operator_name)
{
    pthread_once(&plan_once, plan_load);
    const country_plan_t *p = plan_by_iso(country);
    for (size_t i = 0; p && operator_name && i < p->prefix_count; i++)
        if (strcasecmp(p->prefixes[i].name, operator_name) == 0)
            return 1;
    return 0;
}

size_t nudgel_phone_operator_names(const char *country, char *buf, size_t size)
{
    pthread_once(&plan_once, plan_load);
    const country_plan_t *p = plan_by_iso(country);
    size_t used = 0;
    if (size)
        buf[0] = '\0';
    for (size_t i = 0; p && i < p->prefix_count; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(p->prefixes[j].name, p->prefixes[i].name) == 0;
        if (seen)
            continue;
        int n = snprintf(buf + (used < size ? used : size), used < size ? size - used : 0, "%s%s",
                         used ? ", " : "", p->prefixes[i].name);
        if (n > 0)
            used += (size_t)n;
    }
    return used;
}

static int operator_index(const country_plan_t *p, const char *nsn)
{
    int best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < p->prefix_count; i++) {
        size_t len = strlen(p->prefixes[i].prefix);
        if (len > best_len && strncmp(nsn, p->prefixes[i].prefix, len) == 0) {
            best = (int)i;
            best_len = len;
        }
    }
    return best;
}

/* Longest carrier prefix; with prefixes of at most four digits the answer
 * for a number's first four digits is learnt once. */
static const char *operator_for(country_plan_t *p, const char *nsn)
{
    if (!p->operator_cacheable || strlen(nsn) < 4) {
        int i = operator_index(p, nsn);
        return i < 0 ? NULL : p->prefixes[i].name;
    }
    size_t slot = (size_t)((nsn[0] - '0') * 1000 + (nsn[1] - '0') * 100 + (nsn[2] - '0') * 10 +
                           (nsn[3] - '0'));
    int cached = __atomic_load_n(&p->operator_cache[slot], __ATOMIC_RELAXED);
    if (!cached) {
        int i = operator_index(p, nsn);
        cached = i < 0 ? 1 : i + 2;
        __atomic_store_n(&p->operator_cache[slot], (unsigned char)cached, __ATOMIC_RELAXED);
    }
    return cached == 1 ? NULL : p->prefixes[cached - 2].name;
}

static int line_type_by_regex(const country_plan_t *p, const char *nsn)
{
    if (regexec(&p->mobile, nsn, 0, NULL, 0) == 0)
        return LINE_CACHE_MOBILE;
    if (regexec(&p->fixed, nsn, 0, NULL, 0) == 0)
        return LINE_CACHE_FIXED;
    return LINE_CACHE_NONE;
}

/*
 * POSIX regexec costs about a microsecond a call, too much once per job. The
 * plan's patterns constrain only the first few digits and the length, so the
 * answer for (length, first four digits) is learnt once: tried with the
 * number's own tail, all zeros and all nines, and cached only when the three
 * agree; otherwise that slot always asks the regex.
 */
static int line_type(country_plan_t *p, const char *nsn)
{
    size_t len = strlen(nsn);
    if (len < LINE_CACHE_MIN_LEN || len > LINE_CACHE_MAX_LEN)
        return line_type_by_regex(p, nsn);
    size_t slot =
        (len - LINE_CACHE_MIN_LEN) * 10000 + (size_t)((nsn[0] - '0') * 1000 + (nsn[1] - '0') * 100 +
                                                      (nsn[2] - '0') * 10 + (nsn[3] - '0'));
    int cached = __atomic_load_n(&p->line_cache[slot], __ATOMIC_RELAXED);
    if (cached != LINE_CACHE_UNKNOWN && cached != LINE_CACHE_VARIES)
        return cached;
    int actual = line_type_by_regex(p, nsn);
    if (cached == LINE_CACHE_VARIES)
        return actual;
    char probe[LINE_CACHE_MAX_LEN + 1];
    memcpy(probe, nsn, len + 1);
    memset(probe + 4, '0', len - 4);
    int zeros = line_type_by_regex(p, probe);
    memset(probe + 4, '9', len - 4);
    int nines = line_type_by_regex(p, probe);
    int learnt = (actual == zeros && actual == nines) ? actual : LINE_CACHE_VARIES;
    __atomic_store_n(&p->line_cache[slot], (unsigned char)learnt, __ATOMIC_RELAXED);
    return actual;
}

/* Classifies a national significant number of plan @p p into @p out. */
static nudgel_err_t classify(country_plan_t *p, const char *nsn, const char *input,
                             nudgel_phone_t *out, char *errstr, size_t errstr_size)
{
    int type = line_type(p, nsn);
    if (type == LINE_CACHE_MOBILE) {
        out->line_type = NUDGEL_LINE_MOBILE;
    } else if (type == LINE_CACHE_FIXED) {
        snprintf(errstr, errstr_size, "\"%s\" is a %s fixed-line number; SMS needs a mobile number",
                 input, p->iso);
        return NUDGEL_ERR_INVALID_FIELD;
    } else {
        snprintf(errstr, errstr_size, "\"%s\" is not a valid %s mobile number (+%s)", input, p->iso,
                 p->cc);
        return NUDGEL_ERR_INVALID_FIELD;
    }
    size_t cc_len = strlen(p->cc), nsn_len = strlen(nsn);
    if (1 + cc_len + nsn_len > NUDGEL_E164_MAX) {
        snprintf(errstr, errstr_size, "\"%s\" is too long for E.164", input);
        return NUDGEL_ERR_INVALID_FIELD;
    }
    out->e164[0] = '+';
    memcpy(out->e164 + 1, p->cc, cc_len);
    memcpy(out->e164 + 1 + cc_len, nsn, nsn_len + 1);
    memcpy(out->country, p->iso, 3);
    out->operator_name = operator_for(p, nsn);
    return NUDGEL_OK;
}

nudgel_err_t nudgel_phone_normalise(const char *input, const char *default_country,
                                    nudgel_phone_t *out, char *errstr, size_t errstr_size)
{
    char digits[MAX_INPUT];
    size_t n = 0;
    bool plus = false;

    memset(out, 0, sizeof(*out));
    pthread_once(&plan_once, plan_load);
    if (plan_status != 0) {
        snprintf(errstr, errstr_size, "the embedded numbering plan is broken");
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (!input || !*input) {
        snprintf(errstr, errstr_size, "is empty");
        return NUDGEL_ERR_INVALID_FIELD;
    }
    /* Keep digits; allow the usual visual separators; '+' only first. */
    for (const char *p = input; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isdigit(c)) {
            if (n + 1 >= sizeof(digits))
                goto too_long;
            digits[n++] = (char)c;
        } else if (c == '+' && n == 0 && !plus) {
            plus = true;
        } else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/') {
            continue;
        } else {
            snprintf(errstr, errstr_size, "\"%.40s\" has an unexpected character '%c'", input,
                     isprint(c) ? c : '?');
            return NUDGEL_ERR_INVALID_FIELD;
        }
    }
    digits[n] = '\0';
    if (n == 0) {
        snprintf(errstr, errstr_size, "\"%.40s\" has no digits", input);
        return NUDGEL_ERR_INVALID_FIELD;
    }

    const char *intl = NULL; /* digits after the country code marker, when international */
    country_plan_t *home = plan_by_iso(default_country);
    if (plus) {
        intl = digits;
    } else if (strncmp(digits, "00", 2) == 0) {
        /* International prefix: KE 000, NG 009, UG 000/005/007, elsewhere mostly 00. */
        intl = digits + 2;
        if (home && strcmp(home->iso, "KE") == 0 && strncmp(digits, "000", 3) == 0)
            intl = digits + 3;
        else if (home && strcmp(home->iso, "NG") == 0 && strncmp(digits, "009", 3) == 0)
            intl = digits + 3;
        else if (home && strcmp(home->iso, "UG") == 0 &&
                 (strncmp(digits, "000", 3) == 0 || strncmp(digits, "005", 3) == 0 ||
                  strncmp(digits, "007", 3) == 0))
            intl = digits + 3;
    } else if (home) {
        const char *nsn = digits;
        size_t np = strlen(home->national_prefix);
        if (np && strncmp(digits, home->national_prefix, np) == 0)
            nsn = digits + np;
        nudgel_err_t err = classify(home, nsn, input, out, errstr, errstr_size);
        if (err == NUDGEL_OK)
            return err;
        /* "254722000000" written without '+': accept when it is a valid plan number. */
        country_plan_t *p = plan_by_cc_prefix(digits);
        char spare[256];
        if (p && classify(p, digits + strlen(p->cc), input, out, spare, sizeof(spare)) == 0)
            return NUDGEL_OK;
        return err;
    } else {
        country_plan_t *p = plan_by_cc_prefix(digits);
        if (p && classify(p, digits + strlen(p->cc), input, out, errstr, errstr_size) == 0)
            return NUDGEL_OK;
        if (default_country && *default_country)
            snprintf(errstr, errstr_size,
                     "\"%.40s\" is in national format but country \"%.8s\" is not in the "
                     "numbering plan (KE, NG, UG); write it in E.164 (+...)",
                     input, default_country);
        else
            snprintf(errstr, errstr_size,
                     "\"%.40s\" is not in E.164 format (+<country code><number>) and no country "
                     "hint was given",
                     input);
        return NUDGEL_ERR_INVALID_FIELD;
    }

    size_t len = strlen(intl);
    if (len < 7 || len > 15 || intl[0] == '0') {
        snprintf(errstr, errstr_size,
                 "\"%.40s\" is not a valid E.164 number (country code then 7 to 15 digits)", input);
        return NUDGEL_ERR_INVALID_FIELD;
    }
    country_plan_t *p = plan_by_cc_prefix(intl);
    if (p)
        return classify(p, intl + strlen(p->cc), input, out, errstr, errstr_size);
    out->e164[0] = '+';
    memcpy(out->e164 + 1, intl, len + 1); /* len <= 15 checked above */
    out->line_type = NUDGEL_LINE_UNKNOWN;
    return NUDGEL_OK;

too_long:
    snprintf(errstr, errstr_size, "\"%.40s...\" is too long for a phone number", input);
    return NUDGEL_ERR_INVALID_FIELD;
}

const char *nudgel_phone_network_operator(const char *mcc_mnc, char country[3])
{
    pthread_once(&plan_once, plan_load);
    if (country)
        country[0] = '\0';
    for (size_t i = 0; mcc_mnc && i < network_count; i++) {
        if (strcmp(networks[i].code, mcc_mnc) == 0 && networks[i].name) {
            if (country)
                memcpy(country, networks[i].country, 3);
            return networks[i].name;
        }
    }
    return NULL;
}
