/*
 * template.c — one pass over the template, appending literal runs and
 * variable values to a buffer that grows by doubling up to the output cap.
 */
#include "nudgel/template.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct outbuf {
    char *data;
    size_t len, cap; /* cap counts the NUL */
    size_t max;      /* hard cap of len */
} outbuf_t;

/*
 * Appends @p n bytes. Returns NUDGEL_OK, NUDGEL_ERR_TOO_LARGE when len would
 * pass the hard cap (nothing is appended then), or NUDGEL_ERR_NO_MEMORY.
 */
static nudgel_err_t out_append(outbuf_t *b, const char *s, size_t n)
{
    if (n > b->max - b->len)
        return NUDGEL_ERR_TOO_LARGE;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1)
            cap = b->max + 1;
        char *p = realloc(b->data, cap);
        if (!p)
            return NUDGEL_ERR_NO_MEMORY;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return NUDGEL_OK;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/*
 * Writes the text form of a variable's value to @p buf (at least 64 bytes)
 * or points @p *text at the string value itself. Returns 0, or -1 for a
 * type a message body cannot hold (null, array, object).
 */
static int value_text(const json_t *v, char *buf, size_t size, const char **text, size_t *len)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        *text = json_string_value(v);
        *len = json_string_length(v);
        return 0;
    case JSON_INTEGER:
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        snprintf(buf, size, "%.15g", json_real_value(v));
        break;
    case JSON_TRUE:
        snprintf(buf, size, "true");
        break;
    case JSON_FALSE:
        snprintf(buf, size, "false");
        break;
    case JSON_NULL:
    case JSON_OBJECT:
    case JSON_ARRAY:
        return -1;
    }
    *text = buf;
    *len = strlen(buf);
    return 0;
}

nudgel_err_t nudgel_template_render(const char *tmpl, const json_t *vars, size_t max_bytes,
                                    char **out, size_t *out_len, char *errstr, size_t errstr_size)
{
    outbuf_t b = {.max = max_bytes ? max_bytes : NUDGEL_TEMPLATE_MAX_OUTPUT_DEFAULT};
    nudgel_err_t err = NUDGEL_OK;
    const char *p = tmpl;

    if (out)
        *out = NULL;
    if (!tmpl || !out || (vars && !json_is_object(vars))) {
        snprintf(errstr, errstr_size, "template: NULL argument or variables not an object");
        return NUDGEL_ERR_INVALID_ARG;
    }
    /* An empty template renders "", which still needs an allocation. */
    if ((err = out_append(&b, "", 0)) != NUDGEL_OK)
        goto out;

    while (*p) {
        const char *open = strstr(p, "{{");
        size_t lit = open ? (size_t)(open - p) : strlen(p);
        if ((err = out_append(&b, p, lit)) != NUDGEL_OK)
            goto out;
        if (!open)
            break;
        if (strncmp(open + 2, "{{", 2) == 0) {
            if ((err = out_append(&b, "{{", 2)) != NUDGEL_OK)
                goto out;
            p = open + 4;
            continue;
        }

        const char *close = strstr(open + 2, "}}");
        if (!close) {
            snprintf(errstr, errstr_size, "template has an unterminated \"{{\" at byte %zu",
                     (size_t)(open - tmpl));
            err = NUDGEL_ERR_INVALID_FIELD;
            goto out;
        }
        const char *name = open + 2, *end = close;
        while (name < end && (*name == ' ' || *name == '\t'))
            name++;
        while (end > name && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t nlen = (size_t)(end - name);
        bool ok = nlen > 0 && nlen <= NUDGEL_TEMPLATE_NAME_MAX;
        for (size_t i = 0; ok && i < nlen; i++)
            ok = is_name_char(name[i]);
        if (!ok) {
            snprintf(errstr, errstr_size,
                     "template has an invalid placeholder \"%.*s\" at byte %zu (names are 1 to "
                     "%d of A-Z a-z 0-9 _ . -; write {{{{ for a literal {{)",
                     (int)((close - open + 2) > 80 ? 80 : (close - open + 2)), open,
                     (size_t)(open - tmpl), NUDGEL_TEMPLATE_NAME_MAX);
            err = NUDGEL_ERR_INVALID_FIELD;
            goto out;
        }

        char key[NUDGEL_TEMPLATE_NAME_MAX + 1];
        memcpy(key, name, nlen);
        key[nlen] = '\0';
        const json_t *v = vars ? json_object_get(vars, key) : NULL;
        if (!v) {
            snprintf(errstr, errstr_size, "template variable \"%s\" is missing", key);
            err = NUDGEL_ERR_INVALID_FIELD;
            goto out;
        }
        char num[64];
        const char *text;
        size_t tlen;
        if (value_text(v, num, sizeof(num), &text, &tlen) != 0) {
            snprintf(errstr, errstr_size,
                     "template variable \"%s\" is not a string, number or boolean", key);
            err = NUDGEL_ERR_INVALID_FIELD;
            goto out;
        }
        if ((err = out_append(&b, text, tlen)) != NUDGEL_OK)
            goto out;
        p = close + 2;
    }

out:
    if (err == NUDGEL_OK) {
        *out = b.data;
        if (out_len)
            *out_len = b.len;
        return NUDGEL_OK;
    }
    if (err == NUDGEL_ERR_TOO_LARGE)
        snprintf(errstr, errstr_size, "rendered template exceeds %zu bytes", b.max);
    else if (err == NUDGEL_ERR_NO_MEMORY)
        snprintf(errstr, errstr_size, "template: out of memory");
    free(b.data);
    return err;
}
