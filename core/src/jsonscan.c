/*
 * jsonscan.c — see jsonscan.h. Canonical form: no white space, strings
 * re-escaped the way jansson writes them (", \, control characters; UTF-8
 * kept as is), numbers copied as written (the grammar is checked).
 */
#include "jsonscan.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/*
 * Eight bytes at a time: whether any byte needs attention in a string
 * (a control character, '"', '\\', or, when decoding, a non-ASCII byte).
 * The "has a byte less than n" test is exact for n <= 128.
 */
#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline bool has_special(uint64_t v, bool non_ascii_too)
{
    uint64_t control = (v - ONES * 0x20) & ~v & HIGHS;
    uint64_t quote = ((v ^ (ONES * '"')) - ONES) & ~(v ^ (ONES * '"')) & HIGHS;
    uint64_t backslash = ((v ^ (ONES * '\\')) - ONES) & ~(v ^ (ONES * '\\')) & HIGHS;
    return (control | quote | backslash | (non_ascii_too ? v & HIGHS : 0)) != 0;
}

void jsonbuf_put(jsonbuf_t *b, const char *s, size_t n)
{
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

void jsonbuf_put_string(jsonbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    jsonbuf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        while (i + 8 <= n && !has_special(load8(s + i), false))
            i += 8;
        if (i >= n)
            break;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        jsonbuf_put(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t esc_len = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            esc_len = 6;
            break;
        }
        jsonbuf_put(b, esc, esc_len);
    }
    jsonbuf_put(b, s + run, n - run);
    jsonbuf_putc(b, '"');
}

void jsonscan_init(jsonscan_t *s, const char *bytes, size_t len)
{
    s->start = s->p = bytes;
    s->end = bytes + len;
    s->error[0] = '\0';
}

size_t jsonscan_column(const jsonscan_t *s)
{
    return (size_t)(s->p - s->start) + 1;
}

static int fail(jsonscan_t *s, const char *what)
{
    if (!s->error[0])
        snprintf(s->error, sizeof(s->error), "%s at byte %zu", what, jsonscan_column(s));
    return -1;
}

void jsonscan_skip_ws(jsonscan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

int jsonscan_expect(jsonscan_t *s, char c)
{
    jsonscan_skip_ws(s);
    if (s->p >= s->end || *s->p != c) {
        char what[32];
        snprintf(what, sizeof(what), "expected '%c'", c);
        return fail(s, what);
    }
    s->p++;
    return 0;
}

int jsonscan_peek(jsonscan_t *s)
{
    jsonscan_skip_ws(s);
    if (s->p >= s->end)
        return fail(s, "unexpected end of input");
    switch (*s->p) {
    case '"':
        return JSONSCAN_STRING;
    case '{':
        return JSONSCAN_OBJECT;
    case '[':
        return JSONSCAN_ARRAY;
    case 't':
        return JSONSCAN_TRUE;
    case 'f':
        return JSONSCAN_FALSE;
    case 'n':
        return JSONSCAN_NULL;
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return JSONSCAN_NUMBER;
        return fail(s, "unexpected character");
    }
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* No overlong forms, no surrogates, nothing past U+10FFFF. */
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

int jsonscan_string(jsonscan_t *s, char *out, size_t *out_len)
{
    size_t o = 0;
    if (jsonscan_expect(s, '"'))
        return -1;
    const char *p = s->p, *end = s->end;
    for (;;) {
        /* Fast path: plain ASCII runs are copied as they are. */
        const char *run = p;
        while (end - p >= 8 && !has_special(load8(p), true))
            p += 8;
        while (p < end && (unsigned char)*p >= 0x20 && *p != '"' && *p != '\\' &&
               (unsigned char)*p < 0x80)
            p++;
        memcpy(out + o, run, (size_t)(p - run));
        o += (size_t)(p - run);
        if (p >= end) {
            s->p = p;
            return fail(s, "unterminated string");
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            s->p = p + 1;
            out[o] = '\0';
            *out_len = o;
            return 0;
        }
        if (c < 0x20) {
            s->p = p;
            return fail(s, "control character in string");
        }
        if (c >= 0x80) {
            size_t n = utf8_sequence((const unsigned char *)p, (const unsigned char *)end);
            if (!n) {
                s->p = p;
                return fail(s, "invalid UTF-8");
            }
            memcpy(out + o, p, n);
            o += n;
            p += n;
            continue;
        }
        /* backslash */
        if (end - p < 2) {
            s->p = p;
            return fail(s, "unterminated escape");
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            out[o++] = e;
            break;
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            if (end - p < 4 || hex4(p, &cp)) {
                s->p = p;
                return fail(s, "invalid \\u escape");
            }
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xdc00 ||
                    lo > 0xdfff) {
                    s->p = p;
                    return fail(s, "unpaired UTF-16 surrogate");
                }
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                s->p = p;
                return fail(s, "unpaired UTF-16 surrogate");
            } else if (cp == 0) {
                s->p = p;
                return fail(s, "\\u0000 is not allowed");
            }
            o += put_utf8(out + o, cp);
            break;
        }
        default:
            s->p = p;
            return fail(s, "invalid escape");
        }
    }
}

static int scan_number(jsonscan_t *s, jsonbuf_t *out)
{
    const char *p = s->p, *end = s->end, *begin = p;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    } else {
        return fail(s, "invalid number");
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail(s, "invalid number");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail(s, "invalid number");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    jsonbuf_put(out, begin, (size_t)(p - begin));
    s->p = p;
    return 0;
}

static int scan_literal(jsonscan_t *s, jsonbuf_t *out, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, "invalid literal");
    jsonbuf_put(out, word, n);
    s->p += n;
    return 0;
}

static int copy_value(jsonscan_t *s, jsonbuf_t *out, char *scratch, int depth,
                      int (*on_member)(const char *, size_t, jsonscan_type_t, void *), void *opaque)
{
    int type = jsonscan_peek(s);
    size_t n;
    if (type < 0)
        return -1;
    switch ((jsonscan_type_t)type) {
    case JSONSCAN_STRING:
        if (jsonscan_string(s, scratch, &n))
            return -1;
        jsonbuf_put_string(out, scratch, n);
        return 0;
    case JSONSCAN_NUMBER:
        return scan_number(s, out);
    case JSONSCAN_TRUE:
        return scan_literal(s, out, "true");
    case JSONSCAN_FALSE:
        return scan_literal(s, out, "false");
    case JSONSCAN_NULL:
        return scan_literal(s, out, "null");
    case JSONSCAN_ARRAY:
    case JSONSCAN_OBJECT:
        break;
    }
    bool object = type == JSONSCAN_OBJECT;
    if (depth >= JSONSCAN_MAX_DEPTH)
        return fail(s, "nested too deeply");
    s->p++;
    jsonbuf_putc(out, object ? '{' : '[');
    jsonscan_skip_ws(s);
    if (s->p < s->end && *s->p == (object ? '}' : ']')) {
        s->p++;
        jsonbuf_putc(out, object ? '}' : ']');
        return 0;
    }
    for (bool first = true;; first = false) {
        if (!first)
            jsonbuf_putc(out, ',');
        if (object) {
            if (jsonscan_peek(s) != JSONSCAN_STRING)
                return fail(s, "expected a member name");
            if (jsonscan_string(s, scratch, &n))
                return -1;
            jsonbuf_put_string(out, scratch, n);
            if (jsonscan_expect(s, ':'))
                return -1;
            jsonbuf_putc(out, ':');
            if (on_member && depth == 0) {
                int vtype = jsonscan_peek(s);
                if (vtype < 0)
                    return -1;
                int rc = on_member(scratch, n, (jsonscan_type_t)vtype, opaque);
                if (rc)
                    return rc;
            }
        }
        int rc = copy_value(s, out, scratch, depth + 1, on_member, opaque);
        if (rc)
            return rc;
        jsonscan_skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == (object ? '}' : ']')) {
            s->p++;
            jsonbuf_putc(out, object ? '}' : ']');
            return 0;
        }
        return fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

int jsonscan_copy_value(jsonscan_t *s, jsonbuf_t *out, char *scratch,
                        int (*on_member)(const char *key, size_t key_len, jsonscan_type_t type,
                                         void *opaque),
                        void *opaque)
{
    return copy_value(s, out, scratch, 0, on_member, opaque);
}
