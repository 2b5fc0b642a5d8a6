/*
 * nudgel/gateway.h — carrier gateway adapters (DESIGN §6), library
 * nudgel_carriers: gateway definitions and routes loaded from a JSON file,
 * request building and response classification per dialect (one source
 * file per dialect: src/dialect_<name>.c).
 *
 * Everything here is pure: no network I/O. The worker's curl multi loop
 * sends the request this module describes and hands the answer back for
 * classification.
 *
 * Dialects:
 *   africastalking  form POST to <base_url>/version1/messaging, header
 *                   "apiKey: <key>", fields username, to, message, from.
 *                   AT takes no client reference: a resubmission after a
 *                   lost answer is a second SMS (see nudgel_gateway_classify).
 *   infobip         JSON POST to <base_url>/sms/2/text/advanced, header
 *                   "Authorization: App <key>"; our message id goes in
 *                   messages[0].destinations[0].messageId, which Infobip
 *                   dedupes.
 *   generic         JSON POST {"to","from","text","client_ref"} to
 *                   <base_url><path> with a configured auth header; answers
 *                   read through RFC 6901 JSON pointers and status lists.
 *
 * File format (config/gateways.example.json is the documented example):
 *   {"gateways": [{"name", "dialect", "base_url", "api_key_env" |
 *                  "api_key_file", "username" (AT), "tps", optional "dlr"
 *                  (delivery-report settings: "token_env" | "token_file", the
 *                  URL token, and what nudgel-dlr reads), "connect_timeout_ms",
 *                  "timeout_ms", "sender_id", "path",
 *                  "unknown_outcome" ("resubmit" | "hold"),
 *                  generic only: "auth_header", "auth_scheme",
 *                  "message_id_pointer", "status_pointer",
 *                  "segments_pointer", "error_code_pointer",
 *                  "error_message_pointer", "success_statuses",
 *                  "permanent_statuses", "transient_statuses",
 *                  "rejected_codes", "credential_statuses",
 *                  "dlr": {...} (delivery reports: read by nudgel-dlr,
 *                  see workers/dlr/gateways.c)}, ...],
 *    "routes": [{"country": "KE", "operator": "Safaricom" | "*",
 *                "gateways": ["primary", "fallback"]}, ...],
 *    "default_route": ["name", ...]}   (optional)
 * Keys starting with "_" are comments and ignored; any other unknown key is
 * an error. connect_timeout_ms (default 3000) and timeout_ms (default 10000)
 * bound each submission. A route's operator is "*" or a name the numbering
 * plan gives an operator of its country (any ASCII case); another name is an
 * error naming the route. The API key itself is never in the file: it is read from the
 * environment variable named by api_key_env, or from the file named by
 * api_key_file (a Kubernetes secret mount), once, at load.
 *
 * Secrets: a key is only ever copied into the header lines of a built
 * request. No error text or log line of this module contains it;
 * nudgel_gateway_set_free() and nudgel_gateway_request_clear() wipe it.
 *
 * Threads: a loaded set is immutable; any thread may read it, build
 * requests and classify answers concurrently.
 */
#ifndef NUDGEL_GATEWAY_H
#define NUDGEL_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nudgel/error.h"

#define NUDGEL_GATEWAY_NAME_MAX          64            /* bytes of a gateway name */
#define NUDGEL_GATEWAY_MAX               64            /* gateways in one file */
#define NUDGEL_GATEWAY_ROUTES_MAX        512           /* routes in one file */
#define NUDGEL_GATEWAY_ROUTE_LEN_MAX     8             /* gateways in one route */
#define NUDGEL_GATEWAY_FILE_MAX          (1024 * 1024) /* bytes of the JSON file */
#define NUDGEL_GATEWAY_KEY_MAX           4096          /* bytes of an API key */
#define NUDGEL_GATEWAY_URL_MAX           1024        /* bytes of a base URL, path or callback URL */
#define NUDGEL_GATEWAY_SENDER_MAX        16          /* bytes of a sender id or short code */
#define NUDGEL_GATEWAY_TEXT_MAX          (4 * 1600)  /* bytes of a message text */
#define NUDGEL_GATEWAY_CLIENT_REF_MAX    128         /* bytes of a client reference */
#define NUDGEL_GATEWAY_RESPONSE_MAX      (64 * 1024) /* bytes of an answer that are parsed */
#define NUDGEL_GATEWAY_HEADERS_MAX       4           /* header lines of a built request */
#define NUDGEL_GATEWAY_RETRY_AFTER_MAX_S 86400       /* Retry-After values are clamped to this */
/* Infobip's validityPeriod is in minutes; longer than 48 h is not supported. */
#define NUDGEL_GATEWAY_VALIDITY_MINUTES_MAX 2880

typedef enum nudgel_gateway_dialect {
    NUDGEL_GATEWAY_AFRICASTALKING = 0,
    NUDGEL_GATEWAY_INFOBIP,
    NUDGEL_GATEWAY_GENERIC,
} nudgel_gateway_dialect_t;

typedef struct nudgel_gateway nudgel_gateway_t;
typedef struct nudgel_gateway_set nudgel_gateway_set_t;

/* ---- definitions and routes ------------------------------------------- */

/**
 * @brief Loads gateways and routes from the JSON file @p path, reading every
 * API key from its environment variable or key file.
 * @returns NUDGEL_OK and @p *out (caller frees with nudgel_gateway_set_free),
 * NUDGEL_ERR_IO when the file cannot be read, NUDGEL_ERR_TOO_LARGE past
 * NUDGEL_GATEWAY_FILE_MAX, or NUDGEL_ERR_CONFIG with "key: problem" in
 * @p errstr ("gateways[1].dialect: \"smpp\" is not one of africastalking,
 * infobip, generic"); @p *out is then NULL.
 */
nudgel_err_t nudgel_gateway_set_load(const char *path, nudgel_gateway_set_t **out, char *errstr,
                                     size_t errstr_size);

/** @brief As nudgel_gateway_set_load() from JSON text (@p json, @p len bytes). */
nudgel_err_t nudgel_gateway_set_parse(const char *json, size_t len, nudgel_gateway_set_t **out,
                                      char *errstr, size_t errstr_size);

/*
 * Flags of the _flags variants. NUDGEL_GATEWAY_LOAD_NO_KEYS: API keys are
 * named (api_key_env / api_key_file checked) but not read, for a process
 * that never sends (nudgel-dlr); such a set must not build requests.
 */
#define NUDGEL_GATEWAY_LOAD_NO_KEYS 0x1u
/*
 * NUDGEL_GATEWAY_LOAD_DLR_TOKENS: each gateway's delivery-report token
 * ("dlr": token_env / token_file) is read too, for
 * nudgel_gateway_callback_url() (the messages worker with
 * messages.callback_url set). Without it the token is not read: a process
 * that sends no callback URL needs no such secret.
 */
#define NUDGEL_GATEWAY_LOAD_DLR_TOKENS 0x2u

/** @brief nudgel_gateway_set_load() with @p flags (NUDGEL_GATEWAY_LOAD_*). */
nudgel_err_t nudgel_gateway_set_load_flags(const char *path, unsigned flags,
                                           nudgel_gateway_set_t **out, char *errstr,
                                           size_t errstr_size);

/** @brief nudgel_gateway_set_parse() with @p flags (NUDGEL_GATEWAY_LOAD_*). */
nudgel_err_t nudgel_gateway_set_parse_flags(const char *json, size_t len, unsigned flags,
                                            nudgel_gateway_set_t **out, char *errstr,
                                            size_t errstr_size);

/** @brief Releases @p set (NULL is fine), wiping its keys. Borrowed pointers die with it. */
void nudgel_gateway_set_free(nudgel_gateway_set_t *set);

/** @brief Number of gateways in @p set. */
size_t nudgel_gateway_set_count(const nudgel_gateway_set_t *set);

/** @brief Gateway @p i (file order; borrowed from @p set), NULL when out of range. */
const nudgel_gateway_t *nudgel_gateway_set_at(const nudgel_gateway_set_t *set, size_t i);

/** @brief The gateway named @p name (borrowed from @p set), NULL when none. */
const nudgel_gateway_t *nudgel_gateway_find(const nudgel_gateway_set_t *set, const char *name);

/* Read-only fields of a gateway; strings are borrowed from the set. */
const char *nudgel_gateway_name(const nudgel_gateway_t *gw);
nudgel_gateway_dialect_t nudgel_gateway_dialect(const nudgel_gateway_t *gw);
/** @brief The full send URL (base_url + the dialect's path). */
const char *nudgel_gateway_url(const nudgel_gateway_t *gw);
/** @brief Submissions per second the account allows (the fleet-wide cap). */
uint32_t nudgel_gateway_tps(const nudgel_gateway_t *gw);
uint32_t nudgel_gateway_connect_timeout_ms(const nudgel_gateway_t *gw);
uint32_t nudgel_gateway_timeout_ms(const nudgel_gateway_t *gw);
/** @brief The default sender id, or NULL when the file gives none. */
const char *nudgel_gateway_sender_id(const nudgel_gateway_t *gw);
/** @brief Whether the gateway dedupes our client reference (Infobip, generic; not AT). */
bool nudgel_gateway_dedupes(const nudgel_gateway_t *gw);

/**
 * @brief The gateway's "dlr" object (its delivery-report settings), or NULL
 * when the file gives none. Only its shape (an object) is checked at load;
 * nudgel-dlr reads and checks its keys. Borrowed from the set (a jansson
 * object: do not change it).
 */
const struct json_t *nudgel_gateway_dlr(const nudgel_gateway_t *gw);

/**
 * @brief RFC 6901 lookup of @p ptr in @p root (a jansson value), as the
 * generic dialect reads answers: "" is @p root itself; a missing member, a
 * bad index or a malformed pointer gives NULL. Borrowed from @p root. Pure.
 */
const struct json_t *nudgel_gateway_json_pointer(const struct json_t *root, const char *ptr);

/**
 * @brief The delivery-report URL of @p gw for the receiver at @p base
 * (messages.callback_url, "https://dlr.example.com"): base (trailing '/'
 * dropped) + "/v1/dlr/" + name + "/" + the gateway's dlr token (from
 * its "dlr" object: token_env or token_file; the set loaded with
 * NUDGEL_GATEWAY_LOAD_DLR_TOKENS). The URL holds a secret: send it, never
 * log it.
 * @returns 0 with it in @p out, or -1 (@p out "") when the gateway has no
 * token, @p base is empty or the URL would not fit (@p out_size, or
 * NUDGEL_GATEWAY_URL_MAX).
 */
int nudgel_gateway_callback_url(const nudgel_gateway_t *gw, const char *base, char *out,
                                size_t out_size);

/*
 * What becomes of a submission whose outcome is unknown (DESIGN §5): the
 * request went out and its answer was lost (timeout, connection lost) or
 * unreadable (a truncated 2xx), or a crashed worker left its claim with the
 * request at the gateway. The carrier may have accepted it.
 */
typedef enum nudgel_gateway_unknown_policy {
    NUDGEL_GATEWAY_UNKNOWN_RESUBMIT = 0, /* send again (same client reference): a gateway that
                                            dedupes it sends one SMS; one that does not may send
                                            two */
    NUDGEL_GATEWAY_UNKNOWN_HOLD,         /* never resend: final failed, error outcome_unknown */
} nudgel_gateway_unknown_policy_t;

/**
 * @brief The gateway's unknown_outcome policy: the file's key, else the
 * dialect's default — hold where the carrier cannot dedupe our client
 * reference (Africa's Talking), resubmit where it does (Infobip, generic).
 */
nudgel_gateway_unknown_policy_t nudgel_gateway_unknown_outcome(const nudgel_gateway_t *gw);

/** @brief "resubmit" or "hold" (static). */
const char *nudgel_gateway_unknown_policy_name(nudgel_gateway_unknown_policy_t p);

/** "africastalking", "infobip" or "generic". */
const char *nudgel_gateway_dialect_name(nudgel_gateway_dialect_t d);

/** An ordered list of gateways (primary first), borrowed from the set. */
typedef struct nudgel_gateway_route {
    const nudgel_gateway_t *gateways[NUDGEL_GATEWAY_ROUTE_LEN_MAX];
    size_t count;
} nudgel_gateway_route_t;

/**
 * @brief The gateways for a number of @p country ("KE", "NG", "UG"; "" or
 * NULL outside the plan) and @p operator_name (NULL when unknown).
 *
 * Lookup order: the route of (country, operator) (operator compared without
 * regard to ASCII case), then (country, "*"), then the default route.
 * @returns NUDGEL_OK and @p out filled, or NUDGEL_ERR_INVALID_FIELD (a
 * permanent error: the message is rejected) with the reason in @p errstr
 * ("no route for country \"US\" and no default route").
 */
nudgel_err_t nudgel_gateway_route(const nudgel_gateway_set_t *set, const char *country,
                                  const char *operator_name, nudgel_gateway_route_t *out,
                                  char *errstr, size_t errstr_size);

/* ---- requests --------------------------------------------------------- */

/** What to send; every pointer is borrowed for the duration of the call. */
typedef struct nudgel_gateway_message {
    const char *client_ref;    /* our message id; required (AT cannot carry it) */
    const char *to;            /* E.164, "+" and 7 to 15 digits */
    const char *from;          /* sender id; NULL or "" → the gateway's sender_id, else none */
    const char *text;          /* UTF-8, at most NUDGEL_GATEWAY_TEXT_MAX bytes */
    const char *callback_url;  /* DLR URL; NULL → none (AT: set in the dashboard, ignored) */
    uint32_t validity_minutes; /* 0 → the gateway's default (Infobip only; at most
                                  NUDGEL_GATEWAY_VALIDITY_MINUTES_MAX are sent) */
} nudgel_gateway_message_t;

/** A built HTTP request. Every pointer is owned by the struct. */
typedef struct nudgel_gateway_request {
    const char *method;                        /* static: "POST" ("GET": a probe) */
    char *url;                                 /* full URL */
    char *headers[NUDGEL_GATEWAY_HEADERS_MAX]; /* "Name: value" lines (curl_slist_append) */
    size_t header_count;                       /* Content-Type and Accept included */
    char *body;                                /* NUL-terminated for convenience */
    size_t body_len;
    const char *content_type; /* static */
} nudgel_gateway_request_t;

/**
 * @brief The validity_minutes of a submission made at @p now_unix_ms for a
 * message that may not be sent after @p expires_at_unix_ms: the whole
 * minutes left (rounded down, so the carrier never holds it past its
 * expiry), at least 1, at most NUDGEL_GATEWAY_VALIDITY_MINUTES_MAX.
 * Pure; any thread.
 */
uint32_t nudgel_gateway_validity_minutes(int64_t expires_at_unix_ms, int64_t now_unix_ms);

/**
 * @brief Builds the HTTP request that submits @p msg through @p gw.
 * @returns NUDGEL_OK with @p out filled (release with
 * nudgel_gateway_request_clear; the header lines hold the API key),
 * NUDGEL_ERR_INVALID_FIELD for a bad number, text (not UTF-8, too long) or
 * client reference, NUDGEL_ERR_INVALID_ARG for NULL arguments,
 * NUDGEL_ERR_NO_MEMORY — with the reason in @p errstr and @p out zeroed.
 */
nudgel_err_t nudgel_gateway_build_request(const nudgel_gateway_t *gw,
                                          const nudgel_gateway_message_t *msg,
                                          nudgel_gateway_request_t *out, char *errstr,
                                          size_t errstr_size);

/**
 * @brief Builds the gateway's probe: its carrier's cheapest authenticated
 * request, an account read that sends no message (Infobip GET
 * <base_url>/account/1/balance, Africa's Talking GET
 * <base_url>/version1/user?username=<username>), for --check-config=connect
 * and the messages worker's start-up probe. Its answer says whether the
 * key is accepted: 2xx yes, nudgel_gateway_credentials_refused() no.
 * @returns NUDGEL_OK with @p out filled (method "GET", no body; release
 * with nudgel_gateway_request_clear), NUDGEL_ERR_INVALID_ARG when the
 * dialect has none (generic) or the set holds no keys, NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_gateway_build_probe(const nudgel_gateway_t *gw, nudgel_gateway_request_t *out,
                                        char *errstr, size_t errstr_size);

/**
 * @brief Where the gateway's key comes from, "api_key_env NUDGEL_GW_AT_KEY"
 * or "api_key_file /path" (names, never the key; borrowed from the set).
 */
const char *nudgel_gateway_key_source(const nudgel_gateway_t *gw);

/** @brief Whether HTTP @p status (non-2xx) means the gateway refused our credentials. */
bool nudgel_gateway_credentials_refused(const nudgel_gateway_t *gw, int status);

/** @brief Frees what @p req owns, wiping the header lines; @p req is zeroed. */
void nudgel_gateway_request_clear(nudgel_gateway_request_t *req);

/* ---- responses -------------------------------------------------------- */

/** An answer as the curl loop saw it; pointers borrowed for the call. */
typedef struct nudgel_gateway_response {
    bool transport_error;         /* timeout, refused, reset: no HTTP answer */
    bool request_sent;            /* with transport_error: the request had gone out (its
                                     answer was lost, so the carrier may have taken it) */
    const char *transport_detail; /* e.g. curl_easy_strerror(); NULL is fine */
    int http_status;              /* ignored when transport_error */
    const char *body;             /* may be NULL when body_len is 0 */
    size_t body_len;
    const char *retry_after; /* the Retry-After header value, or NULL */
    int64_t now_unix_ms;     /* wall clock, for a Retry-After HTTP-date */
} nudgel_gateway_response_t;

typedef enum nudgel_gateway_outcome_kind {
    NUDGEL_GATEWAY_SENT = 1,  /* the gateway accepted the message */
    NUDGEL_GATEWAY_PERMANENT, /* never succeeds through this gateway: final */
    NUDGEL_GATEWAY_TRANSIENT, /* retry later (or on the next gateway of the route) */
} nudgel_gateway_outcome_kind_t;

/*
 * The receipt an outcome leaves. The dialects decide it from the gateway's
 * answer (its wire codes and texts, read in src/dialect_<name>.c only); the
 * roles map it once onto their receipt state, never by comparing text.
 */
typedef enum nudgel_gateway_receipt {
    NUDGEL_GATEWAY_RECEIPT_NONE = 0, /* TRANSIENT: no receipt yet */
    NUDGEL_GATEWAY_RECEIPT_SENT,     /* SENT */
    NUDGEL_GATEWAY_RECEIPT_REJECTED, /* PERMANENT: invalid number or sender, blacklist, DND */
    NUDGEL_GATEWAY_RECEIPT_FAILED,   /* PERMANENT: any other reason */
} nudgel_gateway_receipt_t;

typedef struct nudgel_gateway_outcome {
    nudgel_gateway_outcome_kind_t kind;
    nudgel_gateway_receipt_t receipt;
    int http_status; /* 0 on a transport error */
    /* SENT */
    char message_id[NUDGEL_GATEWAY_CLIENT_REF_MAX]; /* the gateway's id ("" if none given) */
    bool has_cost;
    char cost_amount[32]; /* decimal text as the gateway wrote it, "0.8000" */
    char currency[8];     /* "KES" */
    uint32_t segments;    /* 0 when not reported */
    /* PERMANENT and TRANSIENT */
    char error_code[64];     /* "InvalidPhoneNumber", "REJECTED_DESTINATION", "http_503" */
    char error_message[256]; /* printable ASCII, never a secret */
    int64_t retry_after_ms;  /* TRANSIENT with a usable Retry-After; else -1 */
    /* TRANSIENT only: the outcome is unknown — the gateway answered 2xx but
       the body could not be read, or the answer was lost after the request
       went out (request_sent) — so the message may have been accepted. For
       a gateway that does not dedupe (AT) a resubmission may be a second
       SMS: nudgel_gateway_unknown_outcome() says what to do. */
    bool maybe_accepted;
    /* TRANSIENT only: the gateway refused our credentials (an account-level
       401/403: a wrong, rotated or revoked key). A fault of the gateway, not
       of the message: the worker counts it against the gateway's breaker,
       logs it at error and moves the message on along its route. */
    bool credentials_refused;
} nudgel_gateway_outcome_t;

/**
 * @brief Classifies a gateway's answer.
 *
 * Rules: a transport error, 429 and 5xx are TRANSIENT; an HTTP status that
 * means the gateway refused our credentials (401 and 403 for Africa's
 * Talking and Infobip; the generic dialect's credential_statuses, default
 * 401 and 403) is TRANSIENT with credentials_refused set; 3xx (never
 * followed) and other 4xx PERMANENT; 2xx by dialect — AT per-recipient statusCode
 * 100/101/102 SENT, 401-409 PERMANENT, 500-502 TRANSIENT; Infobip status
 * groupId 1 (PENDING) SENT, 5 (REJECTED) PERMANENT; generic by the
 * configured status lists. A 2xx body that cannot be read, and a transport
 * error after the request was sent, are TRANSIENT with maybe_accepted set.
 * A Retry-After (delta seconds or HTTP-date) on a
 * TRANSIENT outcome fills retry_after_ms.
 * @returns NUDGEL_OK with @p out filled, or NUDGEL_ERR_INVALID_ARG for NULL
 * arguments.
 */
nudgel_err_t nudgel_gateway_classify(const nudgel_gateway_t *gw,
                                     const nudgel_gateway_response_t *resp,
                                     nudgel_gateway_outcome_t *out);

/**
 * @brief The receipt's name as the receipts table spells it ("sent",
 * "rejected", "failed"; "none" for NUDGEL_GATEWAY_RECEIPT_NONE), for logs
 * and tests. @returns a static string.
 */
const char *nudgel_gateway_receipt_name(nudgel_gateway_receipt_t r);

/**
 * @brief Parses a Retry-After value: delta seconds or an IMF-fixdate
 * HTTP-date ("Sun, 06 Nov 1994 08:49:37 GMT") relative to @p now_unix_ms.
 * @returns milliseconds to wait (0 for a date in the past, clamped to
 * NUDGEL_GATEWAY_RETRY_AFTER_MAX_S), or -1 when @p value is unusable.
 */
int64_t nudgel_gateway_retry_after_ms(const char *value, int64_t now_unix_ms);

/**
 * @brief Percent-encodes @p len bytes as application/x-www-form-urlencoded
 * (alphanumerics and "*-._" kept, space → "+", every other byte %XX).
 * @returns a malloc'd NUL-terminated string the caller frees, NULL on ENOMEM.
 */
char *nudgel_gateway_form_encode(const char *s, size_t len);

#endif
