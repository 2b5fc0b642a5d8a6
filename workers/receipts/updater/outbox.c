/*
 * outbox.c — the events of transitions nudgel-receipts makes on its own
 * (a pending report applied, a receipt expired: see sweeps.c), which no
 * Kafka record can bring again (see updater.h).
 *
 * Those transitions write a row of nudgel.receipt_event_outbox in their own
 * transaction. The sweep then claims up to receipts.sweep_batch rows for
 * OUTBOX_CLAIM_S seconds (another updater skips them), publishes each event
 * with a publisher of its own (built by events.c like every other event,
 * same deterministic id), and deletes the rows Kafka acknowledged. A crash
 * or a failed publish leaves rows that are claimed and published again
 * after the claim lapses: at least once, and the id dedupes.
 */
#include <stdlib.h>
#include <string.h>

#include "updater.h"

#define OUTBOX_CLAIM_S 30

nudgel_err_t outbox_claim_send(updater_t *u, char *errstr, size_t errstr_size)
{
    return nudgel_dlr_outbox_claim_send(nudgel_pgconn_conn(u->sweep_pg), u->sweep_batch,
                                        OUTBOX_CLAIM_S, errstr, errstr_size);
}

nudgel_err_t outbox_claimed(updater_t *u, const PGresult *res, char *errstr, size_t errstr_size)
{
    nudgel_err_t err =
        nudgel_dlr_outbox_claim_read(nudgel_pgconn_conn(u->sweep_pg), res, u->outbox,
                                     (size_t)u->sweep_batch, &u->outbox_n, errstr, errstr_size);
    if (err != NUDGEL_OK)
        return err;
    u->outbox_waiting = u->outbox_n;
    for (size_t i = 0; i < u->outbox_n; i++) {
        nudgel_dlr_applied_t *a = &u->outbox[i];
        u->outbox_acked[i] = false;
        json_t *ev = events_build(a);
        if (!ev || nudgel_publish_event(u->outbox_pub, u->topic_status, a->receipt.tenant_id, ev,
                                        NULL, a) != NUDGEL_OK)
            u->outbox_waiting--; /* stays in the outbox: published after the claim lapses */
        else
            nudgel_metric_add(u->m_events, nudgel_receipt_state_name(a->receipt.status), 1);
    }
    return NUDGEL_OK;
}

void outbox_on_ack(void *opaque, nudgel_err_t err, const char *errstr, void *cb_opaque)
{
    updater_t *u = cb_opaque;
    nudgel_dlr_applied_t *a = opaque;
    size_t i = (size_t)(a - u->outbox);
    if (i >= u->outbox_n)
        return;
    if (err != NUDGEL_OK)
        nudgel_log_warn("status event of %s (%s) not acknowledged, published again later: %s",
                        a->receipt.message_id, nudgel_receipt_state_name(a->receipt.status),
                        errstr);
    u->outbox_acked[i] = err == NUDGEL_OK;
    if (--u->outbox_waiting == 0 && u->stage == SWEEP_OUTBOX_PUBLISH)
        sweeps_next(u, SWEEP_OUTBOX_DELETE);
}

nudgel_err_t outbox_delete_send(updater_t *u, char *errstr, size_t errstr_size)
{
    const char *ids[NUDGEL_RECEIPTS_BATCH_MAX], *statuses[NUDGEL_RECEIPTS_BATCH_MAX];
    size_t n = 0;
    for (size_t i = 0; i < u->outbox_n; i++) {
        if (!u->outbox_acked[i])
            continue;
        ids[n] = u->outbox[i].receipt.message_id;
        statuses[n++] = nudgel_receipt_state_name(u->outbox[i].receipt.status);
    }
    if (n == 0)
        return NUDGEL_ERR_INVALID_ARG; /* nothing to delete: the caller goes idle */
    return nudgel_dlr_outbox_delete_send(nudgel_pgconn_conn(u->sweep_pg), ids, statuses, n, errstr,
                                         errstr_size);
}

void outbox_reset(updater_t *u)
{
    for (size_t i = 0; i < u->outbox_n; i++)
        nudgel_dlr_applied_clear(&u->outbox[i]);
    u->outbox_n = 0;
}

size_t outbox_in_flight(const updater_t *u)
{
    return u->outbox_waiting;
}
