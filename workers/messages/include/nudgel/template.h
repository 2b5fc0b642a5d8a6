/*
 * nudgel/template.h — renders a message template (a row of
 * nudgel.message_templates) with the job's variables.
 *
 * Syntax:
 *   {{name}} or {{ name }}  the variable "name"; spaces or tabs may pad the
 *                           name inside the braces. A name is 1 to 64 of
 *                           [A-Za-z0-9_.-]; a dot is part of the name, not a
 *                           path ("a.b" is the key "a.b").
 *   {{{{                    a literal "{{" (the only escape; "}}" and single
 *                           braces outside a placeholder are literal as is).
 * Values: strings as they are (never expanded again), integers in decimal,
 * reals with "%.15g" (so 2.0 renders "2", 0.1 renders "0.1"), booleans as
 * true / false. null, arrays and objects are refused, as the job schema does.
 *
 * Errors are permanent (the same template and variables never render): a
 * missing variable names it (template variable "order_id" is missing), an
 * unterminated "{{" or a malformed placeholder gives its byte offset.
 *
 * Threads: no state; safe from any thread as long as @p vars is not being
 * modified concurrently.
 */
#ifndef NUDGEL_TEMPLATE_H
#define NUDGEL_TEMPLATE_H

#include <stddef.h>

#include <jansson.h>

#include "nudgel/error.h"

/* Hard cap of a rendered body by default: 1600 characters of up to 4 bytes. */
#define NUDGEL_TEMPLATE_MAX_OUTPUT_DEFAULT (4 * 1600)
#define NUDGEL_TEMPLATE_NAME_MAX           64

/**
 * @brief Renders the NUL-terminated template @p tmpl with the variables of
 * the JSON object @p vars (borrowed; NULL means no variables).
 *
 * @p max_bytes caps the output (without its NUL); 0 means
 * NUDGEL_TEMPLATE_MAX_OUTPUT_DEFAULT.
 * @returns NUDGEL_OK with @p *out a malloc'd NUL-terminated string the
 * caller frees and @p *out_len its length (@p out_len may be NULL);
 * NUDGEL_ERR_INVALID_FIELD for a missing or unusable variable or a malformed
 * template, NUDGEL_ERR_TOO_LARGE when the output would exceed the cap,
 * NUDGEL_ERR_NO_MEMORY, NUDGEL_ERR_INVALID_ARG for NULL arguments or a
 * @p vars that is not an object — each with a reason in @p errstr and
 * @p *out set to NULL.
 */
nudgel_err_t nudgel_template_render(const char *tmpl, const json_t *vars, size_t max_bytes,
                                    char **out, size_t *out_len, char *errstr, size_t errstr_size);

#endif
