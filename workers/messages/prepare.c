/*
 * prepare.c — a claimed job made ready to send: expired or not, its body
 * (the job's text, or its template — taken from the cache before its claim,
 * templates.c — rendered with its variables), its
 * GSM-7/UCS-2 segments, and its route (the gateways that may send to the
 * number, primary first); then on to the gates (gates.c). A job that cannot
 * be sent ends here with its final outcome.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/template.h"
#include "nudgel/timeutil.h"

#include "messages.h"

int64_t msg_expires_at_ms(const worker_t *w, const msg_t *m)
{
    return m->job.expires_at_ms ? m->job.expires_at_ms : m->job.created_at_ms + w->validity_ms;
}

void prepare_and_route(worker_t *w, msg_t *m)
{
    char errstr[512];
    int64_t now = nudgel_now_unix_ms();
    int64_t expires = msg_expires_at_ms(w, m);
    if (now >= expires) {
        finish(m, NUDGEL_RECEIPT_EXPIRED, NUDGEL_MSG_FAIL_EXPIRED, NULL, NULL, "expired",
               "validity ended before sending", NULL, NULL, "expired before it could be sent");
        return;
    }
    if (m->job.body) {
        m->text = strdup(m->job.body);
    } else if (m->tpl == TPL_NONE || m->tpl == TPL_FAILED) {
        /* Its lookup failed (or never ran): Postgres may answer on a later try. */
        retry_or_give_up(m, "template_unavailable",
                         m->tpl_text ? m->tpl_text : "the template could not be loaded", -1);
        return;
    } else {
        if (m->tpl == TPL_ABSENT) {
            snprintf(errstr, sizeof(errstr), "template \"%s\" (%s) does not exist for tenant %s",
                     m->job.template_name, m->job.locale ? m->job.locale : "en", m->job.tenant_id);
            finish(m, NUDGEL_RECEIPT_FAILED, NUDGEL_MSG_FAIL_TEMPLATE, NULL, NULL, "template",
                   errstr, NULL, NULL, "template does not exist");
            return;
        }
        json_t *empty = m->job.variables ? NULL : json_object();
        nudgel_err_t err =
            nudgel_template_render(m->tpl_text, m->job.variables ? m->job.variables : empty, 0,
                                   &m->text, NULL, errstr, sizeof(errstr));
        json_decref(empty);
        if (err != NUDGEL_OK) {
            finish(m, NUDGEL_RECEIPT_FAILED, NUDGEL_MSG_FAIL_TEMPLATE, NULL, NULL, "template",
                   errstr, NULL, NULL, "template could not be rendered");
            return;
        }
    }
    if (!m->text || nudgel_sms_encoding_measure(m->text, strlen(m->text), &m->sms, errstr,
                                                sizeof(errstr)) != NUDGEL_OK) {
        free(m->text);
        m->text = NULL;
        finish(m, NUDGEL_RECEIPT_FAILED, NUDGEL_MSG_FAIL_ENCODING, NULL, NULL, "encoding", errstr,
               NULL, NULL, "text could not be encoded");
        return;
    }
    nudgel_gateway_route_t route;
    if (nudgel_gateway_route(w->gateways, m->job.phone.country, m->job.phone.operator_name, &route,
                             errstr, sizeof(errstr)) != NUDGEL_OK ||
        route.count == 0) {
        finish(m, NUDGEL_RECEIPT_REJECTED, NUDGEL_MSG_FAIL_NO_ROUTE, NULL, NULL, "no_route", errstr,
               NULL, NULL, "no route for the number");
        return;
    }
    m->route = route;
    msg_compact(m); /* from here on it waits: for its turn, a token, an answer */
    recipient_gate(w, m);
}
