/*
 * endpoints.h — `nudgel-admin endpoints add|list|show|disable|enable|rotate-secret`
 * (add and rotate-secret in endpoints.c, the others in endpoints_view.c),
 * and the Postgres helpers the admin commands share (endpoints.c).
 *
 * Webhook endpoints live in nudgel.webhook_endpoints. A new endpoint gets a
 * signing secret ("whsec_" + base64 of 32 random bytes) that is printed once,
 * at creation (and at rotation), and stored only sealed with the keyring of
 * secret.key / secret.key_file (AES-256-GCM, key id beside it). No other
 * command reads, prints or logs a secret.
 */
#ifndef NUDGEL_ADMIN_ENDPOINTS_H
#define NUDGEL_ADMIN_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "nudgel/config.h"
#include "nudgel/error.h"

/** webhooks.rotation_overlap_s: how long a rotated-out secret still signs. */
extern const nudgel_conf_entry_t nudgel_admin_webhooks_conf[];

typedef struct nudgel_admin_endpoint_opts {
    const char *endpoint_id; /* show, disable, enable, rotate-secret */
    const char *tenant;      /* add (required), list (filter) */
    const char *url;         /* add (required) */
    const char *events;      /* add: "message.delivered,message.*"; NULL: every event */
    const char *rate_limit;  /* add: requests per second, a positive number */
    const char *concurrency; /* add: requests in flight, a positive integer */
    const char *description; /* add */
    const char *reason;      /* disable */
    bool json;               /* add, list, show, rotate-secret: JSON on stdout */
} nudgel_admin_endpoint_opts_t;

/* --events: at most NUDGEL_ADMIN_EVENTS_MAX patterns of at most
 * NUDGEL_ADMIN_EVENT_NAME_MAX characters; the text of all of them, as a
 * Postgres array literal or as "a, b", fits NUDGEL_ADMIN_EVENTS_TEXT_MAX. */
#define NUDGEL_ADMIN_EVENTS_MAX     64
#define NUDGEL_ADMIN_EVENT_NAME_MAX 128
#define NUDGEL_ADMIN_EVENTS_TEXT_MAX                                                               \
    (NUDGEL_ADMIN_EVENTS_MAX * (NUDGEL_ADMIN_EVENT_NAME_MAX + 3) + 3)

/*
 * Each prints its result to @p out and returns NUDGEL_OK;
 * NUDGEL_ERR_INVALID_ARG for a bad or missing flag (the message names it);
 * NUDGEL_ERR_INVALID_FIELD when the endpoint does not exist;
 * NUDGEL_ERR_CONFIG when the keyring is missing or bad (add, rotate-secret);
 * NUDGEL_ERR_PG_UNREACHABLE or NUDGEL_ERR_PG.
 */
nudgel_err_t nudgel_admin_endpoints_add(const nudgel_conf_t *conf,
                                        const nudgel_admin_endpoint_opts_t *o, FILE *out,
                                        char *errstr, size_t errstr_size);
nudgel_err_t nudgel_admin_endpoints_list(const nudgel_conf_t *conf,
                                         const nudgel_admin_endpoint_opts_t *o, FILE *out,
                                         char *errstr, size_t errstr_size);
nudgel_err_t nudgel_admin_endpoints_show(const nudgel_conf_t *conf,
                                         const nudgel_admin_endpoint_opts_t *o, FILE *out,
                                         char *errstr, size_t errstr_size);
nudgel_err_t nudgel_admin_endpoints_set_enabled(const nudgel_conf_t *conf,
                                                const nudgel_admin_endpoint_opts_t *o, bool enabled,
                                                FILE *out, char *errstr, size_t errstr_size);
nudgel_err_t nudgel_admin_endpoints_rotate_secret(const nudgel_conf_t *conf,
                                                  const nudgel_admin_endpoint_opts_t *o, FILE *out,
                                                  char *errstr, size_t errstr_size);

/**
 * @brief Connects to pg.dsn for an admin command. @returns a connection the
 * caller PQfinishes, or NULL with @p *err NUDGEL_ERR_CONFIG (no DSN) or
 * NUDGEL_ERR_PG_UNREACHABLE and a reason without the DSN.
 */
PGconn *nudgel_admin_pg_connect(const nudgel_conf_t *conf, nudgel_err_t *err, char *errstr,
                                size_t errstr_size);

/**
 * @brief A failed statement on @p pg: sets @p errstr to "@p what: libpq's
 * message". @returns NUDGEL_ERR_PG_UNREACHABLE when the connection dropped,
 * else NUDGEL_ERR_PG.
 */
nudgel_err_t nudgel_admin_pg_failure(PGconn *pg, const char *what, char *errstr,
                                     size_t errstr_size);

/** @brief Checks @p id is a UUID, naming @p flag otherwise. @returns NUDGEL_ERR_INVALID_ARG. */
nudgel_err_t nudgel_admin_check_endpoint_id(const char *id, const char *flag, char *errstr,
                                            size_t errstr_size);

#endif
