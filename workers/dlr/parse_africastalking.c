/*
 * parse_africastalking.c — Africa's Talking delivery reports.
 *
 * Facts it follows (Africa's Talking's SMS docs): the callback URL is set
 * in the account's dashboard; each report is one HTTP POST, body
 * application/x-www-form-urlencoded, fields id (the messageId of the send
 * answer), status (Sent, Submitted, Buffered: intermediate; Success,
 * Failed, Rejected: final), phoneNumber, networkCode (MCC+MNC, e.g. 63902),
 * failureReason (only when Failed or Rejected: InsufficientCredit,
 * UserInBlackList, DeliveryFailure, ...) and sometimes retryCount. The
 * callbacks are not signed (hence the path token and the source list).
 *
 * Refused (400): a body that is not a form (bad %-escape, a field without
 * '=', a field given twice, more than DLR_FIELDS_MAX fields), no id or no
 * status. Optional fields that do not read (a networkCode that is not 5 or
 * 6 digits) are left out rather than refused: a 400 makes the carrier give
 * up on the report.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "parse.h"

typedef struct field {
    char name[32];
    char *value; /* malloc'd, decoded */
} field_t;

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes @p n bytes of a form component into @p out (size n + 1). -1 on a bad escape or NUL. */
static int form_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0')
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

static void fields_free(field_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i].value);
}

static const char *field_get(const field_t *f, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i].name, name) == 0)
            return f[i].value;
    return NULL;
}

/* Splits the body into fields. -1 with the reason on a malformed form. */
static int form_split(const char *body, size_t len, field_t *f, size_t *count, char *errstr,
                      size_t errstr_size)
{
    size_t n = 0, pos = 0;
    *count = 0;
    while (pos < len) {
        const char *part = body + pos;
        const char *amp = memchr(part, '&', len - pos);
        size_t plen = amp ? (size_t)(amp - part) : len - pos;
        pos += plen + (amp ? 1 : 0);
        if (plen == 0)
            continue; /* "a=1&&b=2" and a trailing '&' are harmless */
        const char *eq = memchr(part, '=', plen);
        if (!eq)
            return dlr_fail(errstr, errstr_size, "body: field %zu has no '=': not a form", n + 1);
        size_t klen = (size_t)(eq - part), vlen = plen - klen - 1;
        if (n >= DLR_FIELDS_MAX)
            return dlr_fail(errstr, errstr_size, "body: more than %d fields", DLR_FIELDS_MAX);
        char name[sizeof(f[0].name)];
        if (klen == 0 || klen >= sizeof(f[n].name) || form_decode(part, klen, name) != 0)
            return dlr_fail(errstr, errstr_size, "body: field %zu has a bad name", n + 1);
        if (field_get(f, n, name))
            return dlr_fail(errstr, errstr_size, "%s: given twice", name);
        snprintf(f[n].name, sizeof(f[n].name), "%s", name);
        if (!(f[n].value = malloc(vlen + 1)))
            return dlr_fail(errstr, errstr_size, "out of memory");
        n++;
        *count = n;
        if (form_decode(eq + 1, vlen, f[n - 1].value) != 0)
            return dlr_fail(errstr, errstr_size, "%s: bad %%-escape", name);
    }
    return 0;
}

static dlr_status_t at_status(const char *s)
{
    static const struct {
        const char *name;
        dlr_status_t status;
    } table[] = {
        {"Success", DLR_STATUS_DELIVERED}, {"Failed", DLR_STATUS_UNDELIVERED},
        {"Rejected", DLR_STATUS_REJECTED}, {"Sent", DLR_STATUS_SENT},
        {"Submitted", DLR_STATUS_SENT},    {"Buffered", DLR_STATUS_BUFFERED},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(s, table[i].name) == 0)
            return table[i].status;
    return DLR_STATUS_UNKNOWN;
}

int dlr_parse_africastalking(const char *body, size_t len, dlr_report_t out[DLR_BATCH_MAX],
                             size_t *n, char *errstr, size_t errstr_size)
{
    field_t f[DLR_FIELDS_MAX];
    size_t count = 0;
    int rc = -1;
    char why[128];
    memset(f, 0, sizeof(f));
    *n = 0;
    if (!body || len == 0) {
        dlr_fail(errstr, errstr_size, "body: empty");
        goto out;
    }
    if (form_split(body, len, f, &count, errstr, errstr_size) != 0)
        goto out;
    dlr_report_t *r = &out[0];
    dlr_report_init(r);
    const char *id = field_get(f, count, "id");
    const char *status = field_get(f, count, "status");
    if (!id) {
        dlr_fail(errstr, errstr_size, "id: missing");
        goto out;
    }
    if (dlr_id_normalise(id, strlen(id), DLR_ID_CASE_PRESERVE, r->gateway_message_id, why,
                         sizeof(why)) != 0) {
        dlr_fail(errstr, errstr_size, "id: %s", why);
        goto out;
    }
    if (!status || !*status) {
        dlr_fail(errstr, errstr_size, "status: missing");
        goto out;
    }
    if (strlen(status) > DLR_STATUS_MAX) {
        dlr_fail(errstr, errstr_size, "status: longer than %d bytes", DLR_STATUS_MAX);
        goto out;
    }
    r->status = at_status(status);
    dlr_copy_text(r->raw_status, sizeof(r->raw_status), status, strlen(status));
    const char *v = field_get(f, count, "phoneNumber");
    if (v && strlen(v) <= DLR_TO_MAX)
        dlr_copy_text(r->to, sizeof(r->to), v, strlen(v));
    if ((v = field_get(f, count, "networkCode")))
        dlr_take_network_code(r, v);
    v = field_get(f, count, "failureReason");
    if (v && *v) {
        r->has_error = true;
        dlr_copy_text(r->error_code, sizeof(r->error_code), v, strlen(v));
    } else if (r->status == DLR_STATUS_UNDELIVERED || r->status == DLR_STATUS_REJECTED) {
        r->has_error = true;
        dlr_copy_text(r->error_code, sizeof(r->error_code), status, strlen(status));
    }
    *n = 1;
    rc = 0;
out:
    fields_free(f, count);
    return rc;
}
