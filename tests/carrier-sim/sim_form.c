/*
 * sim_form.c — see sim_form.h.
 */
#include "sim_form.h"

#include <stdlib.h>
#include <string.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t sim_url_decode(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            s[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && hex_value(s[i + 1]) >= 0 &&
                   hex_value(s[i + 2]) >= 0) {
            s[o++] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    s[o] = '\0';
    return o;
}

int sim_form_parse(const char *input, size_t len, sim_form_t *form)
{
    memset(form, 0, sizeof(*form));
    form->storage = malloc(len + 1);
    if (!form->storage)
        return -2;
    memcpy(form->storage, input, len);
    form->storage[len] = '\0';
    char *p = form->storage, *end = form->storage + len;
    while (p < end) {
        char *amp = memchr(p, '&', (size_t)(end - p));
        char *pair_end = amp ? amp : end;
        *pair_end = '\0';
        if (pair_end > p) {
            if (form->count == SIM_FORM_MAX_FIELDS)
                return -1;
            char *eq = memchr(p, '=', (size_t)(pair_end - p));
            char *value = pair_end;
            if (eq) {
                *eq = '\0';
                value = eq + 1;
                sim_url_decode(value, (size_t)(pair_end - value));
            }
            sim_url_decode(p, strlen(p));
            form->names[form->count] = p;
            form->values[form->count] = value;
            form->count++;
        }
        p = pair_end + 1;
    }
    return 0;
}

const char *sim_form_get(const sim_form_t *form, const char *name)
{
    for (size_t i = 0; i < form->count; i++)
        if (strcmp(form->names[i], name) == 0)
            return form->values[i];
    return NULL;
}

void sim_form_free(sim_form_t *form)
{
    free(form->storage);
    memset(form, 0, sizeof(*form));
}
