/*
 * jsonscan.h — a small single-pass JSON scanner and canonical writer
 * (private to core/). It validates RFC 8259 syntax and UTF-8, decodes
 * strings, and re-emits values in compact canonical form, without building
 * a document tree: this is what lets the producer validate and encode a job
 * in about a microsecond.
 */
#ifndef NUDGEL_JSONSCAN_H
#define NUDGEL_JSONSCAN_H

#include <stdbool.h>
#include <stddef.h>

#define JSONSCAN_MAX_DEPTH 32

/* A bounded output buffer: writes past cap set overflow and are dropped. */
typedef struct jsonbuf {
    char *data;
    size_t len, cap;
    bool overflow;
} jsonbuf_t;

typedef struct jsonscan {
    const char *start, *p, *end;
    char error[128]; /* set on the first syntax error */
} jsonscan_t;

typedef enum jsonscan_type {
    JSONSCAN_STRING,
    JSONSCAN_NUMBER,
    JSONSCAN_OBJECT,
    JSONSCAN_ARRAY,
    JSONSCAN_TRUE,
    JSONSCAN_FALSE,
    JSONSCAN_NULL,
} jsonscan_type_t;

void jsonbuf_put(jsonbuf_t *b, const char *s, size_t n);
static inline void jsonbuf_putc(jsonbuf_t *b, char c)
{
    if (b->len < b->cap)
        b->data[b->len++] = c;
    else
        b->overflow = true;
}
/** Writes @p s (n bytes of valid UTF-8) as a JSON string literal, quotes included. */
void jsonbuf_put_string(jsonbuf_t *b, const char *s, size_t n);

void jsonscan_init(jsonscan_t *s, const char *bytes, size_t len);
void jsonscan_skip_ws(jsonscan_t *s);
/** The type of the value at the cursor (after white space); -1 on bad input. */
int jsonscan_peek(jsonscan_t *s);
/** Expects @p c after white space. @returns 0, or -1 with an error. */
int jsonscan_expect(jsonscan_t *s, char c);
/** Decodes a string literal into @p out (at least as large as the literal). @returns 0 or -1. */
int jsonscan_string(jsonscan_t *s, char *out, size_t *out_len);
/**
 * Copies any value to @p out in canonical compact form. Calls @p on_member for
 * each member of the top object (depth 1) when non-NULL, so callers can check
 * member types and count; a non-zero return stops with that value. @returns 0,
 * -1 on a syntax error, or the callback's value.
 */
int jsonscan_copy_value(jsonscan_t *s, jsonbuf_t *out, char *scratch,
                        int (*on_member)(const char *key, size_t key_len, jsonscan_type_t type,
                                         void *opaque),
                        void *opaque);
/** Column (1-based byte offset) of the cursor, for error messages. */
size_t jsonscan_column(const jsonscan_t *s);

#endif
