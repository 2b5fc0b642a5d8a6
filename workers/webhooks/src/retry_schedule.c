/*
 * retry_schedule.c — see nudgel/webhooks/retry_schedule.h.
 */
#include "nudgel/webhooks/retry_schedule.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define MAX_DELAY_MS (7LL * 24 * 3600 * 1000)

nudgel_err_t nudgel_retry_schedule_parse(const char *text, double jitter,
                                         nudgel_retry_schedule_t *out, char *errstr,
                                         size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    if (!text) {
        snprintf(errstr, errstr_size, "no schedule given");
        return NUDGEL_ERR_CONFIG;
    }
    if (!(jitter >= 0.0 && jitter < 1.0)) {
        snprintf(errstr, errstr_size, "the jitter must be at least 0 and below 1 (0.2 = ±20%%)");
        return NUDGEL_ERR_CONFIG;
    }
    out->jitter = jitter;
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p)
        return NUDGEL_OK; /* no retries */
    for (size_t pos = 1;; pos++) {
        while (isspace((unsigned char)*p))
            p++;
        size_t len = strcspn(p, ",");
        size_t tlen = len;
        while (tlen > 0 && isspace((unsigned char)p[tlen - 1]))
            tlen--;
        if (out->count == NUDGEL_RETRY_SCHEDULE_MAX) {
            snprintf(errstr, errstr_size, "more than %d delays", NUDGEL_RETRY_SCHEDULE_MAX);
            return NUDGEL_ERR_CONFIG;
        }
        size_t i = 0;
        long long value = 0;
        while (i < tlen && isdigit((unsigned char)p[i]) && value <= MAX_DELAY_MS)
            value = value * 10 + (p[i++] - '0');
        const char *unit = p + i;
        size_t ulen = tlen - i;
        long long scale = 0;
        if (ulen == 2 && strncmp(unit, "ms", 2) == 0)
            scale = 1;
        else if (ulen == 1 && *unit == 's')
            scale = 1000;
        else if (ulen == 1 && *unit == 'm')
            scale = 60 * 1000;
        else if (ulen == 1 && *unit == 'h')
            scale = 3600 * 1000;
        else if (ulen == 1 && *unit == 'd')
            scale = 24 * 3600 * 1000;
        if (i == 0 || scale == 0) {
            snprintf(errstr, errstr_size,
                     "delay %zu \"%.*s\" is not a number with a unit ms, s, m, h or d (e.g. 5m)",
                     pos, (int)(tlen > 32 ? 32 : tlen), p);
            return NUDGEL_ERR_CONFIG;
        }
        if (value == 0 || value > MAX_DELAY_MS / scale) {
            snprintf(errstr, errstr_size, "delay %zu \"%.*s\" must be above 0 and at most 7d", pos,
                     (int)(tlen > 32 ? 32 : tlen), p);
            return NUDGEL_ERR_CONFIG;
        }
        out->delays_ms[out->count++] = value * scale;
        if (!p[len])
            break;
        p += len + 1;
    }
    return NUDGEL_OK;
}

int64_t nudgel_retry_schedule_delay_ms(const nudgel_retry_schedule_t *s, unsigned failed_attempt,
                                       uint64_t random)
{
    if (!s || failed_attempt == 0 || failed_attempt > s->count)
        return -1;
    double base = (double)s->delays_ms[failed_attempt - 1];
    /* u in [0, 1], both ends reachable, so the bounds are exactly ±jitter. */
    double u = (double)random / (double)UINT64_MAX;
    double delay = base * (1.0 + s->jitter * (2.0 * u - 1.0));
    return delay < 0 ? 0 : (int64_t)(delay + 0.5);
}

bool nudgel_retry_schedule_is_last(const nudgel_retry_schedule_t *s, unsigned attempt)
{
    return attempt > s->count;
}

unsigned nudgel_retry_schedule_attempts(const nudgel_retry_schedule_t *s)
{
    return (unsigned)s->count + 1;
}
