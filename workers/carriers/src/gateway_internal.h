/*
 * gateway_internal.h — the private layout of a gateway set, shared by
 * gateway_load.c (which builds it from the gateways file) and gateway.c
 * (the entry points that read it), and the table of dialects. Internal to
 * nudgel_carriers.
 */
#ifndef NUDGEL_CARRIERS_GATEWAY_INTERNAL_H
#define NUDGEL_CARRIERS_GATEWAY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nudgel/gateway.h"

#include "dialect.h"

struct nudgel_gateway {
    char name[NUDGEL_GATEWAY_NAME_MAX + 1];
    nudgel_gateway_dialect_t dialect;
    const dialect_t *ops; /* the dialect's functions (static) */
    void *cfg;            /* the dialect's own keys, from ops->parse; owned */
    char *url;            /* base_url + path */
    char *base_url;       /* base_url without its trailing '/' (probes take their own path) */
    char key_source[NUDGEL_GATEWAY_NAME_MAX + 80]; /* "api_key_env NAME" / "api_key_file PATH" */
    char *key;            /* the secret: wiped on free, never in an error */
    size_t key_len;       /* bytes allocated for key, all wiped on free */
    char *dlr_token;      /* delivery-report URL token, a secret as key; NULL when none */
    size_t dlr_token_len; /* bytes allocated for dlr_token, all wiped on free */
    uint32_t tps, connect_timeout_ms, timeout_ms;
    nudgel_gateway_unknown_policy_t unknown_outcome; /* the file's, else the dialect's default */
    char *sender_id;                                 /* NULL when none */
    json_t *dlr; /* the "dlr" object (delivery reports, read by nudgel-dlr); owned, or NULL */
};

typedef struct gateway_route {
    char country[3];
    char operator_name[NUDGEL_GATEWAY_NAME_MAX + 1]; /* "*" for any */
    nudgel_gateway_route_t list;
} gateway_route_t;

struct nudgel_gateway_set {
    nudgel_gateway_t *gw;
    size_t n;
    gateway_route_t *routes;
    size_t nroutes;
    bool has_default;
    nudgel_gateway_route_t default_route;
};

/** Number of dialects; nudgel_gateway_dialect_t values are 0 .. GATEWAY_DIALECTS - 1. */
#define GATEWAY_DIALECTS 3

/** The dialect with id @p d (static), NULL when out of range. */
const dialect_t *gateway_dialect_ops(nudgel_gateway_dialect_t d);

#endif
