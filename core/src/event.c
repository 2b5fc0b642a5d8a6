/*
 * event.c — CloudEvents 1.0 status events with deterministic ids.
 */
#include "nudgel/event.h"

#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "nudgel/timeutil.h"
#include "nudgel/uuid.h"

void nudgel_event_id(const char *subject, const char *type, int attempt,
                     char out[NUDGEL_EVENT_ID_LEN + 1])
{
    uint8_t digest[SHA256_DIGEST_LENGTH];
    char input[1024];
    /* Subjects are ids and types are short names: 1 KiB never cuts a real input. */
    int n = snprintf(input, sizeof(input), "%s\n%s\n%d", subject, type, attempt);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(input) ? (size_t)n : sizeof(input) - 1;
    SHA256((const unsigned char *)input, len, digest);
    /* RFC 9562 UUIDv8: custom content, version 8, variant 10. */
    digest[6] = (uint8_t)(0x80 | (digest[6] & 0x0f));
    digest[8] = (uint8_t)(0x80 | (digest[8] & 0x3f));
    nudgel_uuid_format(digest, out);
}

json_t *nudgel_event_build(const char *source, const char *type, const char *subject,
                           const char *tenant_id, int attempt, int64_t time_ms,
                           const char *traceparent, json_t *data)
{
    char id[NUDGEL_EVENT_ID_LEN + 1], when[NUDGEL_RFC3339_MAX];
    nudgel_event_id(subject, type, attempt, id);
    nudgel_rfc3339_format(time_ms, when);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "specversion", "1.0", "id",
                           id, "source", source, "type", type, "subject", subject, "time", when,
                           "datacontenttype", "application/json", "tenantid", tenant_id);
    if (!ev) {
        json_decref(data);
        return NULL;
    }
    if ((traceparent && *traceparent &&
         json_object_set_new(ev, "traceparent", json_string(traceparent))) ||
        json_object_set_new(ev, "data", data ? data : json_object())) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}
