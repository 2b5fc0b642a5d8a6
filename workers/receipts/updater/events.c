/*
 * events.c — the status events of nudgel-receipts (see updater.h):
 * ai.nudgel.message.delivered, undelivered and expired, built from the
 * receipt row by the one builder of receipt events (workers/receipts:
 * nudgel/receipt_event.h, the messages worker's too: same row, same data),
 * with the
 * deterministic id of (message id, type, the receipt's attempt): the id
 * written on the history row by the same transition. A report's event is
 * published through its lifecycle, so its offset waits for the ack; a
 * replayed report (unchanged) publishes the same event again, which is how
 * an event lost in a crash after the write is made good.
 */
#include "nudgel/receipt_event.h"
#include "nudgel/timeutil.h"
#include "updater.h"

json_t *events_build(const nudgel_dlr_applied_t *a)
{
    const nudgel_receipt_t *rc = &a->receipt;
    const char *status = nudgel_receipt_state_name(rc->status);
    json_t *data = nudgel_receipt_event_data(rc, status, rc->attempt, a->metadata);
    if (!data)
        return NULL;
    return nudgel_receipt_event_build(UPDATER_SOURCE, status, rc->message_id, rc->tenant_id,
                                      rc->attempt, nudgel_now_unix_ms(), NULL, data);
}

void events_publish_for(updater_t *u, dlr_job_t *j, const nudgel_dlr_applied_t *a)
{
    json_t *ev = events_build(a);
    nudgel_metric_add(u->m_events, nudgel_receipt_state_name(a->receipt.status), 1);
    nudgel_job_publish_event(&j->life, a->receipt.tenant_id, ev, NULL);
}
