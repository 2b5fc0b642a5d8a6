/*
 * parse_infobip.c — Infobip delivery reports.
 *
 * Facts it follows (Infobip's SMS API docs, "Receive outbound SMS message
 * report"): a POST of JSON {"results":[...]} to the submission's notifyUrl,
 * up to 100 reports each, a report holding bulkId, messageId (ours: the
 * dialect sends our message id as Infobip's messageId), to, sentAt,
 * doneAt ("2019-08-09T17:00:00.000+0000"), smsCount, mccMnc, callbackData,
 * price {pricePerMessage, currency}, status {groupId, groupName, id, name,
 * description} and error {groupId, groupName, id, name, description,
 * permanent}. Status groups: 1 PENDING, 2 UNDELIVERABLE, 3 DELIVERED,
 * 4 EXPIRED, 5 REJECTED; DELIVERED_TO_OPERATOR (status id 2) is
 * intermediate, DELIVERED_TO_HANDSET (id 5) final. An error of group 0
 * (NO_ERROR) is no error.
 *
 * Refused (400): a body that is not a JSON object, a key given twice, no
 * results array, an empty one or one longer than DLR_BATCH_MAX, a report
 * that is not an object or lacks a messageId or a status with a groupName
 * or groupId. Optional fields that do not read are left out.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "parse.h"

static dlr_status_t group_status(const char *name, json_int_t group_id, json_int_t status_id,
                                 const char *status_name)
{
    static const char *const groups[] = {NULL,        "PENDING", "UNDELIVERABLE",
                                         "DELIVERED", "EXPIRED", "REJECTED"};
    int g = -1;
    for (int i = 1; name && i < 6; i++)
        if (strcmp(name, groups[i]) == 0)
            g = i;
    if (!name && group_id >= 1 && group_id <= 5)
        g = (int)group_id;
    switch (g) {
    case 1:
        return DLR_STATUS_SENT;
    case 2:
        return DLR_STATUS_UNDELIVERED;
    case 3:
        if (status_id == 2 || (status_name && strcmp(status_name, "DELIVERED_TO_OPERATOR") == 0))
            return DLR_STATUS_SENT;
        return DLR_STATUS_DELIVERED;
    case 4:
        return DLR_STATUS_EXPIRED;
    case 5:
        return DLR_STATUS_REJECTED;
    default:
        return DLR_STATUS_UNKNOWN;
    }
}

static const char *str_member(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void read_error(const json_t *err, dlr_report_t *r)
{
    if (!json_is_object(err))
        return;
    const json_t *gid = json_object_get(err, "groupId");
    const char *name = str_member(err, "name");
    const json_t *id = json_object_get(err, "id");
    if ((json_is_integer(gid) && json_integer_value(gid) == 0) ||
        (name && strcmp(name, "NO_ERROR") == 0))
        return;
    char code[DLR_STATUS_MAX + 1] = "";
    if (name && *name)
        dlr_copy_text(code, sizeof(code), name, strlen(name));
    else if (json_is_integer(id))
        snprintf(code, sizeof(code), "%lld", (long long)json_integer_value(id));
    if (!code[0])
        return;
    r->has_error = true;
    memcpy(r->error_code, code, sizeof(code));
    const char *desc = str_member(err, "description");
    if (desc)
        dlr_copy_text(r->error_message, sizeof(r->error_message), desc, strlen(desc));
    const json_t *perm = json_object_get(err, "permanent");
    if (json_is_boolean(perm)) {
        r->has_permanent = true;
        r->permanent = json_is_true(perm);
    }
}

static int read_report(const json_t *item, size_t i, dlr_report_t *r, char *errstr,
                       size_t errstr_size)
{
    char why[128];
    dlr_report_init(r);
    if (!json_is_object(item))
        return dlr_fail(errstr, errstr_size, "results[%zu]: not an object", i);
    const json_t *mid = json_object_get(item, "messageId");
    if (!json_is_string(mid))
        return dlr_fail(errstr, errstr_size, "results[%zu].messageId: %s", i,
                        mid ? "not a string" : "missing");
    if (dlr_id_normalise(json_string_value(mid), json_string_length(mid), DLR_ID_CASE_UUID_LOWER,
                         r->gateway_message_id, why, sizeof(why)) != 0)
        return dlr_fail(errstr, errstr_size, "results[%zu].messageId: %s", i, why);
    const json_t *st = json_object_get(item, "status");
    if (!json_is_object(st))
        return dlr_fail(errstr, errstr_size, "results[%zu].status: %s", i,
                        st ? "not an object" : "missing");
    const json_t *gname = json_object_get(st, "groupName");
    const json_t *gid = json_object_get(st, "groupId");
    if (gname && !json_is_string(gname))
        return dlr_fail(errstr, errstr_size, "results[%zu].status.groupName: not a string", i);
    if (gid && !json_is_integer(gid))
        return dlr_fail(errstr, errstr_size, "results[%zu].status.groupId: not an integer", i);
    if (!gname && !gid)
        return dlr_fail(errstr, errstr_size, "results[%zu].status: no groupName or groupId", i);
    const json_t *sid = json_object_get(st, "id");
    const char *sname = str_member(st, "name");
    r->status =
        group_status(gname ? json_string_value(gname) : NULL, gid ? json_integer_value(gid) : -1,
                     json_is_integer(sid) ? json_integer_value(sid) : -1, sname);
    const char *raw = sname && *sname ? sname : gname ? json_string_value(gname) : NULL;
    if (raw)
        dlr_copy_text(r->raw_status, sizeof(r->raw_status), raw, strlen(raw));
    else
        snprintf(r->raw_status, sizeof(r->raw_status), "%lld", (long long)json_integer_value(gid));
    read_error(json_object_get(item, "error"), r);
    const char *v = str_member(item, "to");
    if (v && strlen(v) <= DLR_TO_MAX)
        dlr_copy_text(r->to, sizeof(r->to), v, strlen(v));
    if ((v = str_member(item, "mccMnc")))
        dlr_take_network_code(r, v);
    if ((v = str_member(item, "doneAt")))
        dlr_take_time(r, v);
    const json_t *price = json_object_get(item, "price");
    if (json_is_object(price))
        dlr_take_cost(r, json_object_get(price, "pricePerMessage"), str_member(price, "currency"));
    const json_t *count = json_object_get(item, "smsCount");
    if (json_is_integer(count) && json_integer_value(count) >= 0 &&
        json_integer_value(count) < 100000)
        r->segments = (int)json_integer_value(count);
    dlr_take_uuid(r, r->gateway_message_id);
    if (!r->message_id[0])
        dlr_take_uuid(r, str_member(item, "callbackData"));
    return 0;
}

int dlr_parse_infobip(const char *body, size_t len, dlr_report_t out[DLR_BATCH_MAX], size_t *n,
                      char *errstr, size_t errstr_size)
{
    json_error_t jerr;
    int rc = -1;
    *n = 0;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        dlr_fail(errstr, errstr_size, "body: not JSON (line %d column %d: %s)", jerr.line,
                 jerr.column, jerr.text);
        goto out;
    }
    const json_t *results = json_object_get(root, "results");
    if (!json_is_object(root) || !json_is_array(results)) {
        dlr_fail(errstr, errstr_size, "results: missing or not an array");
        goto out;
    }
    size_t count = json_array_size(results);
    if (count == 0 || count > DLR_BATCH_MAX) {
        dlr_fail(errstr, errstr_size, "results: %zu reports (1 to %d are taken)", count,
                 DLR_BATCH_MAX);
        goto out;
    }
    for (size_t i = 0; i < count; i++)
        if (read_report(json_array_get(results, i), i, &out[i], errstr, errstr_size) != 0)
            goto out;
    *n = count;
    rc = 0;
out:
    json_decref(root);
    return rc;
}
