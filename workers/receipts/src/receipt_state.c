/*
 * receipt_state.c — the forward-only receipt state machine as one table.
 * Keep it equal to nudgel.receipt_transition_allowed() in
 * schemas/postgres/002_receipts_claim.sql as replaced by 005_claim_lease.sql.
 */
#include "nudgel/receipt_state.h"

#include <stdio.h>
#include <string.h>

#define BIT(s) (1u << (s))

static const struct {
    const char *name;
    unsigned next; /* bit set of the states reachable in one step */
} states[NUDGEL_RECEIPT_STATE_COUNT] = {
    [NUDGEL_RECEIPT_ACCEPTED] = {"accepted",
                                 BIT(NUDGEL_RECEIPT_SUBMITTING) | BIT(NUDGEL_RECEIPT_FAILED) |
                                     BIT(NUDGEL_RECEIPT_REJECTED) | BIT(NUDGEL_RECEIPT_EXPIRED)},
    [NUDGEL_RECEIPT_SUBMITTING] = {"submitting",
                                   BIT(NUDGEL_RECEIPT_SENT) | BIT(NUDGEL_RECEIPT_FAILED) |
                                       BIT(NUDGEL_RECEIPT_REJECTED) | BIT(NUDGEL_RECEIPT_EXPIRED)},
    [NUDGEL_RECEIPT_SENT] = {"sent", BIT(NUDGEL_RECEIPT_DELIVERED) |
                                         BIT(NUDGEL_RECEIPT_UNDELIVERED) |
                                         BIT(NUDGEL_RECEIPT_EXPIRED)},
    [NUDGEL_RECEIPT_FAILED] = {"failed", 0},
    [NUDGEL_RECEIPT_REJECTED] = {"rejected", 0},
    [NUDGEL_RECEIPT_DELIVERED] = {"delivered", 0},
    [NUDGEL_RECEIPT_UNDELIVERED] = {"undelivered", 0},
    [NUDGEL_RECEIPT_EXPIRED] = {"expired", 0},
};

bool nudgel_receipt_state_valid(nudgel_receipt_state_t s)
{
    return (unsigned)s < NUDGEL_RECEIPT_STATE_COUNT;
}

bool nudgel_receipt_transition_allowed(nudgel_receipt_state_t from, nudgel_receipt_state_t to)
{
    if (!nudgel_receipt_state_valid(from) || !nudgel_receipt_state_valid(to))
        return false;
    return (states[from].next & BIT(to)) != 0;
}

bool nudgel_receipt_state_is_final(nudgel_receipt_state_t s)
{
    return nudgel_receipt_state_valid(s) && states[s].next == 0;
}

bool nudgel_receipt_state_is_past_send(nudgel_receipt_state_t s)
{
    return s == NUDGEL_RECEIPT_SENT || nudgel_receipt_state_is_final(s);
}

const char *nudgel_receipt_state_name(nudgel_receipt_state_t s)
{
    return nudgel_receipt_state_valid(s) ? states[s].name : "unknown";
}

nudgel_err_t nudgel_receipt_state_parse(const char *name, nudgel_receipt_state_t *out, char *errstr,
                                        size_t errstr_size)
{
    if (!name || !out) {
        if (errstr_size)
            snprintf(errstr, errstr_size, "receipt state: NULL argument");
        return NUDGEL_ERR_INVALID_FIELD;
    }
    for (unsigned i = 0; i < NUDGEL_RECEIPT_STATE_COUNT; i++) {
        if (strcmp(name, states[i].name) == 0) {
            *out = (nudgel_receipt_state_t)i;
            return NUDGEL_OK;
        }
    }
    if (errstr_size)
        snprintf(errstr, errstr_size, "unknown receipt state \"%.32s\"", name);
    return NUDGEL_ERR_INVALID_FIELD;
}
