/*
 * dialect_util.h — helpers the gateway loader and the dialects share
 * (internal to nudgel_carriers), so that no dialect carries its own copy:
 *
 *   config   reading typed keys of a gateway object with "where.key:
 *            problem" errors; string lists; RFC 6901 pointers.
 *   request  header lines (wiped on clear: they hold keys), JSON members.
 *   answer   printable copies of carrier text, scalar values, JSON pointer
 *            lookup, and the outcome setters (sent, permanent, transient,
 *            unreadable) every classification uses.
 *
 * Threads: every function is reentrant.
 */
#ifndef NUDGEL_CARRIERS_DIALECT_UTIL_H
#define NUDGEL_CARRIERS_DIALECT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nudgel/gateway.h"

#define DIALECT_POINTER_MAX 256 /* bytes of a JSON pointer in the file */
#define DIALECT_LIST_MAX    32  /* values of a status list */
#define DIALECT_STATUS_MAX  64  /* bytes of a status value */

/* ---- plain helpers ----------------------------------------------------- */

void dialect_seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** memset that the compiler may not drop: for keys. */
void dialect_wipe(void *p, size_t n);

/** malloc'd copies (NUL-terminated); NULL on ENOMEM. */
char *dialect_strndup(const char *s, size_t n);
char *dialect_strdup(const char *s);

/** strcmp ignoring ASCII case only (operator names). */
int dialect_ascii_casecmp(const char *a, const char *b);

/** No control characters (bytes below 32, and 127). */
bool dialect_printable(const char *s);

/** An RFC 9110 token (header names, auth schemes): no CR/LF can reach a header line. */
bool dialect_token_valid(const char *s);

/* ---- reading the gateways file ----------------------------------------- */

/** A loader's context: the key path of the object being read ("gateways[1]"). */
typedef struct dialect_ctx {
    char where[64];
    char *errstr;
    size_t errstr_size;
} dialect_ctx_t;

/** "where.key: problem" (or "key: problem" at the top level) into the caller's errstr. */
void dialect_cerr(const dialect_ctx_t *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Reads the string member @p key of @p obj into a malloc'd copy (@p *out
 * stays NULL when absent and not @p required). @p max caps its length;
 * @p allow_empty says whether "" is a value. Returns 0 or -1 with the error set.
 */
int dialect_get_str(const dialect_ctx_t *c, const json_t *obj, const char *key, size_t max,
                    bool allow_empty, bool required, char **out);

/* An integer member in [min, max]; @p dflt when absent and not @p required. */
int dialect_get_uint(const dialect_ctx_t *c, const json_t *obj, const char *key, uint32_t min,
                     uint32_t max, uint32_t dflt, bool required, uint32_t *out);

/* An RFC 6901 pointer member (malloc'd), @p dflt when absent. */
int dialect_get_pointer(const dialect_ctx_t *c, const json_t *obj, const char *key,
                        const char *dflt, char **out);

typedef struct dialect_list {
    char **v;
    size_t n;
} dialect_list_t;

/* An array of 1..DIALECT_STATUS_MAX byte strings, @p dflt (@p ndflt values) when absent. */
int dialect_get_list(const dialect_ctx_t *c, const json_t *obj, const char *key,
                     const char *const *dflt, size_t ndflt, dialect_list_t *out);
bool dialect_list_has(const dialect_list_t *l, const char *s);
void dialect_list_free(dialect_list_t *l);

/* ---- building requests ------------------------------------------------- */

/** A malloc'd "name: value" or "name: scheme value" line; NULL on ENOMEM. */
char *dialect_header_line(const char *name, const char *scheme, const char *value);

/** Appends @p line (stolen; NULL means ENOMEM) to @p req. Returns 0 or -1. */
int dialect_add_header(nudgel_gateway_request_t *req, char *line);

/** Sets the string member @p key of @p obj to a copy of @p val. Returns 0 or -1. */
int dialect_json_set_str(json_t *obj, const char *key, const char *val);

/* ---- reading answers --------------------------------------------------- */

/** Copies @p n bytes as printable ASCII (others become '?' or ' '), truncating. */
void dialect_copy_text(char *dst, size_t size, const char *src, size_t n);

/** The text of a string or integer value into @p buf; false for other types. */
bool dialect_scalar_text(const json_t *v, char *buf, size_t size);

/** RFC 6901 lookup (borrowed); NULL when a token is missing or the pointer is bad. */
const json_t *dialect_pointer_get(const json_t *root, const char *ptr);

/** Fills error_code and error_message (printable ASCII, truncated). */
void dialect_error(nudgel_gateway_outcome_t *o, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void dialect_sent(nudgel_gateway_outcome_t *o, const char *message_id);
void dialect_permanent(nudgel_gateway_outcome_t *o, bool rejected);
void dialect_transient(nudgel_gateway_outcome_t *o);

/** A 2xx whose body cannot be read: TRANSIENT, and the gateway may have taken the message. */
void dialect_unreadable(nudgel_gateway_outcome_t *o, const char *what);

/** dialect_t.refused for carriers whose every 4xx is a permanent failure. */
void dialect_refused_permanent(const void *cfg, nudgel_gateway_outcome_t *o);

#endif
