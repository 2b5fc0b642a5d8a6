/*
 * sim_form.h — application/x-www-form-urlencoded decoding (Africa's Talking
 * bodies, Kannel's query strings, MHD's unescape hook).
 */
#ifndef NUDGEL_SIM_FORM_H
#define NUDGEL_SIM_FORM_H

#include <stddef.h>

#define SIM_FORM_MAX_FIELDS 64 /* hard cap of fields in one form */

/**
 * @brief Decodes "%HH" and '+' (space) in place and NUL-terminates. A '%'
 * not followed by two hex digits is kept as is (browsers and curl do the
 * same). @returns the decoded length (never more than @p len).
 */
size_t sim_url_decode(char *s, size_t len);

typedef struct sim_form {
    char *storage; /* owned copy of the input, decoded in place */
    size_t count;
    const char *names[SIM_FORM_MAX_FIELDS];  /* point into storage */
    const char *values[SIM_FORM_MAX_FIELDS]; /* point into storage */
} sim_form_t;

/**
 * @brief Splits @p len bytes of @p input ("a=1&b=x+y") into decoded fields.
 * Empty pairs are skipped; a name without '=' has the value "". @p form is
 * overwritten and must be freed with sim_form_free() whatever the result.
 * @returns 0, -1 with more than SIM_FORM_MAX_FIELDS fields, -2 out of memory.
 */
int sim_form_parse(const char *input, size_t len, sim_form_t *form);

/** @brief The first value of @p name (borrowed from @p form), or NULL. */
const char *sim_form_get(const sim_form_t *form, const char *name);

void sim_form_free(sim_form_t *form);

#endif
