/*
 * dialect.h — what a carrier dialect provides to the gateway module
 * (internal to nudgel_carriers).
 *
 * gateway.c and gateway_load.c own everything every gateway has (name, URL,
 * key, TPS, timeouts, sender id, routes) and the rules every HTTP answer
 * follows (transport errors, 429 and 5xx transient, 3xx permanent,
 * Retry-After). A dialect owns only what differs per carrier: its keys in
 * the gateways file, the body and auth header of a submission, and how a
 * 2xx body and an error body read. One dialect_t per file
 * (dialect_<name>.c); the entry points call through it and never switch on
 * the dialect.
 *
 * Threads: a dialect's functions are pure; a parsed config is immutable and
 * may be read by any thread.
 */
#ifndef NUDGEL_CARRIERS_DIALECT_H
#define NUDGEL_CARRIERS_DIALECT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "nudgel/gateway.h"

#include "dialect_util.h"

typedef struct dialect {
    const char *name;         /* the "dialect" value in the gateways file */
    const char *default_path; /* appended to base_url when "path" is absent */
    bool dedupes;             /* the carrier dedupes our client reference */
    const char *const *keys;  /* NULL-terminated: keys only this dialect accepts */

    /*
     * Reads the dialect's own keys of the gateway object @p obj (the common
     * keys are read already; keys of other dialects are refused already).
     * @returns 0 and @p *cfg (owned by the caller, released with free_cfg;
     * NULL is a valid config), or -1 with "where.key: problem" set through
     * @p c and @p *cfg NULL.
     */
    int (*parse)(const dialect_ctx_t *c, const json_t *obj, void **cfg);

    /*
     * Sets content_type, body and body_len of @p out and appends the auth
     * header line carrying @p key. @p msg is validated already; @p from is
     * the sender to use (NULL: none). @returns 0, or -1 on out of memory
     * (the caller clears @p out).
     */
    int (*build)(const void *cfg, const char *key, const nudgel_gateway_message_t *msg,
                 const char *from, nudgel_gateway_request_t *out);

    /*
     * Classifies a 2xx answer whose body is the JSON object @p root (borrowed):
     * SENT, PERMANENT, or TRANSIENT (dialect_unreadable() when the body does
     * not say). out->http_status is set.
     */
    void (*classify)(const void *cfg, const json_t *root, nudgel_gateway_outcome_t *out);

    /*
     * Reads the carrier's error code and text from the body of a non-2xx
     * answer (@p root: the parsed body, NULL when it is not JSON), best
     * effort: leaves @p code and @p msg empty when the body does not say.
     */
    void (*error_detail)(const void *cfg, const json_t *root, char *code, size_t code_size,
                         char *msg, size_t msg_size);

    /*
     * Decides a 4xx answer other than 429: out->error_code holds the
     * carrier's code (or "http_4xx"). Sets PERMANENT (rejected or failed)
     * or TRANSIENT.
     */
    void (*refused)(const void *cfg, nudgel_gateway_outcome_t *out);

    /*
     * Whether the non-2xx HTTP @p status means the gateway refused our
     * credentials (an account-level fault, not the message's). NULL: 401
     * and 403 do (Africa's Talking and Infobip answer a wrong key so;
     * their per-recipient refusals come in a 2xx body).
     */
    bool (*credentials_refused)(const void *cfg, int status);

    /*
     * The cheapest authenticated request of the carrier's API (an account
     * read, no message): sets url (from @p base_url, no trailing '/') and
     * appends the auth header carrying @p key; method GET, no body.
     * @returns 0, or -1 on out of memory. NULL: the dialect has none.
     */
    int (*probe)(const void *cfg, const char *base_url, const char *key,
                 nudgel_gateway_request_t *out);

    /* Releases what parse() returned (NULL is fine). */
    void (*free_cfg)(void *cfg);
} dialect_t;

extern const dialect_t dialect_africastalking;
extern const dialect_t dialect_infobip;
extern const dialect_t dialect_generic;

#endif
