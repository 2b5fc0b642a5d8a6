/*
 * sim_ledger.h — what the carrier was asked to send, keyed by the dialect's
 * idempotency handle, so tests can count sends, duplicates and losses.
 *
 * Keys: Infobip the client messageId; generic the client_ref; Africa's
 * Talking and Kannel (no client reference) "<+number>:<sha256 hex of text>".
 * Keys are global, not per dialect, so the same job accepted by a primary
 * and then by a fallback gateway of the same key style is a duplicate.
 *
 * Thread-safe: 64 shards, each a chained hash table behind its own mutex;
 * totals are atomics. Memory is bounded by max_keys: past it, new keys are
 * not stored and "ledger_full" counts them (the submission is still served).
 */
#ifndef NUDGEL_SIM_LEDGER_H
#define NUDGEL_SIM_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sim_common.h"
#include "sim_fault.h"

typedef enum sim_counter {
    SIM_C_REQUESTS = 0,       /* HTTP submissions on dialect endpoints */
    SIM_C_MESSAGES,           /* recipient messages in parsed submissions */
    SIM_C_ACCEPTED,           /* messages accepted (every attempt) */
    SIM_C_SMS,                /* messages the carrier would deliver (idempotent repeats excluded) */
    SIM_C_DUPLICATE_ATTEMPTS, /* accepted messages whose key was already accepted */
    SIM_C_REJECTED,           /* permanent per-recipient rejections */
    SIM_C_UNAUTHORIZED,
    SIM_C_BAD_REQUEST,
    SIM_C_FAULT_5XX,
    SIM_C_FAULT_429,
    SIM_C_FAULT_TIMEOUT,
    SIM_C_FAULT_THROTTLED,
    SIM_C_LEDGER_FULL, /* accepted messages whose new key did not fit */
    SIM_C_DLR_QUEUED,
    SIM_C_DLR_SENT,       /* callback answered 2xx */
    SIM_C_DLR_FAILED,     /* callback refused or unreachable */
    SIM_C_DLR_DROPPED,    /* queue full */
    SIM_C_DLR_RETRIED,    /* a callback sent again after a non-2xx answer or no answer */
    SIM_C_DLR_WITHHELD,   /* accepted messages given no report (sim.dlr.none_permille) */
    SIM_C_DLR_DUPLICATED, /* reports sent twice (sim.dlr.duplicate_permille) */
    SIM_C_COUNT,
} sim_counter_t;

/** @brief The JSON name of a counter ("requests", "duplicate_attempts", ...). */
const char *sim_counter_name(sim_counter_t c);

typedef struct sim_ledger sim_ledger_t;

/** @returns a new empty ledger holding at most @p max_keys keys, or NULL. */
sim_ledger_t *sim_ledger_new(size_t max_keys);
void sim_ledger_destroy(sim_ledger_t *l);

/** @brief Adds @p n to a total; @p d may be SIM_DIALECT_COUNT for "no dialect". */
void sim_ledger_count(sim_ledger_t *l, sim_dialect_t d, sim_counter_t c, uint64_t n);
uint64_t sim_ledger_total(const sim_ledger_t *l, sim_counter_t c);

typedef struct sim_accept_result {
    uint32_t count;      /* accepted submissions of the key, this one included; 0 when not stored */
    char message_id[96]; /* the gateway id stored with the key (the first acceptance's) */
} sim_accept_result_t;

/**
 * @brief Records an accepted submission of @p key (copied). The first
 * acceptance stores @p number and @p message_id. @p idempotent says the
 * dialect dedupes this key (a repeat is an attempt, not another SMS).
 * Updates accepted, sms, duplicate_attempts and duplicates.
 * @returns 0, or -1 when the key is new and the ledger is full (counted).
 */
int sim_ledger_accept(sim_ledger_t *l, sim_dialect_t d, const char *key, const char *number,
                      const char *message_id, bool idempotent, int64_t now_ms,
                      sim_accept_result_t *result);

/**
 * @brief Records a whole-request fault against @p key (the key's entry is
 * created with zero accepted when new). Totals are counted by the caller
 * once per request with sim_ledger_count().
 */
void sim_ledger_fault(sim_ledger_t *l, sim_dialect_t d, const char *key, const char *number,
                      int64_t now_ms);

/* What the carrier decided to report for a key (its last accepted submission). */
typedef enum sim_dlr_outcome {
    SIM_DLR_UNSET = 0, /* no report decided: DLRs off, or no URL to send one to */
    SIM_DLR_DELIVERED,
    SIM_DLR_FAILED,
    SIM_DLR_NONE, /* withheld on purpose (sim.dlr.none_permille) */
} sim_dlr_outcome_t;

/** @brief The JSON name of an outcome ("delivered", "failed", "none"; NULL for unset). */
const char *sim_dlr_outcome_name(sim_dlr_outcome_t o);

/**
 * @brief Records on @p key's entry (when stored) the report decided for its
 * latest acceptance: @p outcome, @p copies reports queued for it (added to
 * the key's count: a non-idempotent repeat has reports of its own) and
 * whether the report URL came with the submission (@p url_from_request:
 * Infobip notifyUrl, generic callback_url, Kannel dlr-url) or from the
 * dialect's sim.<dialect>.dlr_url. Tests read it back from GET /ledger as
 * "dlr", "dlr_reports" and "dlr_url" ("request" or "configured").
 */
void sim_ledger_dlr(sim_ledger_t *l, const char *key, sim_dlr_outcome_t outcome, int copies,
                    bool url_from_request);

/** @brief Number of keys accepted more than once. */
uint64_t sim_ledger_duplicates(const sim_ledger_t *l);
size_t sim_ledger_key_count(const sim_ledger_t *l);

/** @brief Forgets every key and zeroes every total. */
void sim_ledger_reset(sim_ledger_t *l);

/**
 * @brief The ledger as JSON (new reference): {"totals":{...}, "by_dialect":{...},
 * "duplicates":N, "keys":N, "ledger_full":bool, "entries":[...]}. With
 * @p summary no entries; with @p key only that key's entry; at most
 * @p limit entries ("truncated":true when more exist).
 */
json_t *sim_ledger_json(sim_ledger_t *l, bool summary, const char *key, size_t limit);

#endif
