/*
 * log.c — JSON lines on stderr.
 *
 * Each line is built in a stack buffer and written with one write(2), so
 * lines from several threads never interleave. Messages longer than the
 * buffer are cut with an ellipsis rather than split over lines.
 *
 * The rate limiter counts lines in fixed intervals: the first line of a
 * kind opens an interval, `lines` lines pass in it, the rest are counted;
 * the first line after the interval opens the next one and is preceded by
 * the count of what was held back.
 */
#define _GNU_SOURCE
#include "nudgel/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nudgel/timeutil.h"

nudgel_log_level_t nudgel_log_threshold = NUDGEL_LOG_INFO;
static char log_component[48] = "nudgel";

void nudgel_log_init(const char *component, nudgel_log_level_t threshold)
{
    if (component)
        snprintf(log_component, sizeof(log_component), "%s", component);
    nudgel_log_threshold = threshold;
}

int nudgel_log_level_parse(const char *text, nudgel_log_level_t *out)
{
    static const struct {
        const char *name;
        nudgel_log_level_t level;
    } names[] = {{"debug", NUDGEL_LOG_DEBUG}, {"info", NUDGEL_LOG_INFO},
                 {"warn", NUDGEL_LOG_WARN},   {"warning", NUDGEL_LOG_WARN},
                 {"error", NUDGEL_LOG_ERROR}, {"off", NUDGEL_LOG_OFF}};
    for (size_t i = 0; text && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return -1;
}

const char *nudgel_log_level_name(nudgel_log_level_t level)
{
    switch (level) {
    case NUDGEL_LOG_DEBUG:
        return "debug";
    case NUDGEL_LOG_INFO:
        return "info";
    case NUDGEL_LOG_WARN:
        return "warn";
    case NUDGEL_LOG_ERROR:
        return "error";
    case NUDGEL_LOG_OFF:
        return "off";
    }
    return "info";
}

void nudgel_log_trace_id(const char *traceparent, char out[NUDGEL_LOG_TRACE_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '\0';
    /* version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 */
    if (!traceparent || strlen(traceparent) < 55 || traceparent[2] != '-' ||
        traceparent[35] != '-' || traceparent[52] != '-')
        return;
    bool nonzero = false;
    for (int i = 0; i < NUDGEL_LOG_TRACE_ID_LEN; i++) {
        char c = traceparent[3 + i];
        if (!c || !strchr(hex, c))
            return;
        nonzero = nonzero || c != '0';
    }
    if (!nonzero)
        return;
    memcpy(out, traceparent + 3, NUDGEL_LOG_TRACE_ID_LEN);
    out[NUDGEL_LOG_TRACE_ID_LEN] = '\0';
}

/* Appends @p s JSON-escaped; returns the new length, never past cap - 1. */
static size_t append_escaped(char *buf, size_t len, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c == '\n') {
            buf[len++] = '\\';
            buf[len++] = 'n';
        } else if (c < 0x20) {
            memcpy(buf + len, "\\u00", 4);
            buf[len + 4] = hex[c >> 4];
            buf[len + 5] = hex[c & 15];
            len += 6;
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

static size_t append_raw(char *buf, size_t len, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (len + n >= cap)
        n = cap - len - 1;
    memcpy(buf + len, s, n);
    return len + n;
}

static size_t append_field(char *buf, size_t len, size_t cap, const char *key, const char *value)
{
    if (!value || !*value)
        return len;
    len = append_raw(buf, len, cap, ",\"");
    len = append_raw(buf, len, cap, key);
    len = append_raw(buf, len, cap, "\":\"");
    len = append_escaped(buf, len, cap, value);
    return append_raw(buf, len, cap, "\"");
}

void nudgel_log_emit(nudgel_log_level_t level, const nudgel_log_ctx_t *ctx, const char *fmt, ...)
{
    char msg[2048], line[4096], ts[NUDGEL_RFC3339_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(msg))
        memcpy(msg + sizeof(msg) - 4, "...", 4);

    nudgel_rfc3339_format(nudgel_now_unix_ms(), ts);
    size_t cap = sizeof(line) - 2, len = 0;
    len = append_raw(line, len, cap, "{\"ts\":\"");
    len = append_raw(line, len, cap, ts);
    len = append_raw(line, len, cap, "\",\"level\":\"");
    len = append_raw(line, len, cap, nudgel_log_level_name(level));
    len = append_raw(line, len, cap, "\"");
    len = append_field(line, len, cap, "component", log_component);
    if (ctx) {
        len = append_field(line, len, cap, "tenant", ctx->tenant);
        len = append_field(line, len, cap, "job_id", ctx->job_id);
        len = append_field(line, len, cap, "trace_id", ctx->trace_id);
    }
    len = append_field(line, len, cap, "msg", msg);
    line[len++] = '}';
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

/* ---- rate limiter ---------------------------------------------------------- */

/* The "N more suppressed" line of @p rl, and the count starts again. */
static unsigned report_suppressed(nudgel_log_ratelimit_t *rl, nudgel_log_level_t level)
{
    unsigned n = rl->suppressed;
    rl->suppressed = 0;
    if (n && level >= nudgel_log_threshold)
        nudgel_log_emit(level, NULL, "%s: %u more line(s) suppressed in the last %lld s",
                        rl->kind ? rl->kind : "log", n,
                        (long long)((rl->interval_us + 999999) / 1000000));
    return n;
}

bool nudgel_log_ratelimit_allow_at(nudgel_log_ratelimit_t *rl, nudgel_log_level_t level,
                                   int64_t now_us)
{
    unsigned lines = rl->lines ? rl->lines : 1;
    if (!rl->window_us || now_us - rl->window_us >= rl->interval_us || now_us < rl->window_us) {
        rl->window_us = now_us ? now_us : 1;
        rl->written = 0;
        report_suppressed(rl, level);
    }
    if (rl->written >= lines) {
        rl->suppressed++;
        return false;
    }
    rl->written++;
    return true;
}

bool nudgel_log_ratelimit_allow(nudgel_log_ratelimit_t *rl, nudgel_log_level_t level)
{
    return nudgel_log_ratelimit_allow_at(rl, level, nudgel_mono_us());
}

unsigned nudgel_log_ratelimit_flush(nudgel_log_ratelimit_t *rl, nudgel_log_level_t level)
{
    return report_suppressed(rl, level);
}
