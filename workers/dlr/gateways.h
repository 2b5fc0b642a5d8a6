/*
 * gateways.h — the delivery-report side of each gateway: which gateways
 * take reports, their dialect, their secrets and where they may come from.
 *
 * They come from the same gateways file as the send side
 * (workers/carriers, config/gateways.example.json): a gateway takes
 * reports when it has a "dlr" object:
 *
 *   "dlr": {
 *     "token_env": "NUDGEL_DLR_TOKEN_AT" | "token_file": "/run/secrets/...",
 *     "secondary_token_env": "..." | "secondary_token_file": "...",   (optional)
 *     "basic_user": "infobip",                      (optional, with one of:)
 *     "basic_password_env": "..." | "basic_password_file": "...",
 *     "allow_cidrs": ["196.201.214.0/24", ...],     (optional: any source)
 *     ...generic dialect only: parse_generic.c's keys
 *   }
 *
 * The token is the last path segment of the gateway's callback URL
 * (POST /v1/dlr/<gateway>/<token>): 16 to 256 bytes of [A-Za-z0-9._~-].
 * The secondary token is accepted as well, for a rotation without lost
 * reports: the token going out (callback URLs already given to carriers)
 * or the one coming in (before the fleet hands it out); nudgel-messages
 * puts only "token" in the URLs it sends.
 * Secrets are read once at load from the variable or file (trailing
 * white space dropped), never logged nor put in an error, wiped on free.
 *
 * Threads: a loaded set is immutable; the loop thread reads it.
 */
#ifndef NUDGEL_DLR_GATEWAYS_H
#define NUDGEL_DLR_GATEWAYS_H

#include <stdbool.h>
#include <stddef.h>

#include "nudgel/error.h"
#include "nudgel/gateway.h"

#include "auth.h"
#include "parse.h"

#define DLR_CIDRS_MAX  64
#define DLR_SECRET_MAX 256

typedef struct dlr_gateway {
    const char *name; /* borrowed from the gateway set */
    nudgel_gateway_dialect_t dialect;
    char *token; /* owned, wiped on free */
    size_t token_len;
    char *secondary_token; /* also accepted during a rotation, or NULL; owned, wiped on free */
    size_t secondary_token_len;
    char *userpass; /* "user:password" or NULL; owned, wiped on free */
    size_t userpass_len;
    dlr_cidr_t cidrs[DLR_CIDRS_MAX];
    size_t ncidrs;             /* 0: any source */
    dlr_generic_cfg_t generic; /* generic dialect only */
} dlr_gateway_t;

typedef struct dlr_gateways dlr_gateways_t;

/**
 * @brief Loads @p path (the gateways file) and the "dlr" settings of its
 * gateways. @returns NUDGEL_OK and @p *out (free with dlr_gateways_free),
 * or an error (NUDGEL_ERR_CONFIG, _IO, ...) with "file: key: problem" in
 * @p errstr. A file where no gateway has a "dlr" object is an error: the
 * receiver would refuse everything.
 */
nudgel_err_t dlr_gateways_load(const char *path, dlr_gateways_t **out, char *errstr,
                               size_t errstr_size);

/** @brief As dlr_gateways_load() from JSON text (tests). */
nudgel_err_t dlr_gateways_parse(const char *json, size_t len, dlr_gateways_t **out, char *errstr,
                                size_t errstr_size);

/** @brief The gateway named @p name that takes reports, or NULL (borrowed). */
const dlr_gateway_t *dlr_gateways_find(const dlr_gateways_t *g, const char *name);

/** @brief Gateways that take reports, and the i-th of them (borrowed). */
size_t dlr_gateways_count(const dlr_gateways_t *g);
const dlr_gateway_t *dlr_gateways_at(const dlr_gateways_t *g, size_t i);

/** @brief Frees @p g, wiping its secrets. NULL is fine. */
void dlr_gateways_free(dlr_gateways_t *g);

#endif
