/*
 * nudgel/log.h — one JSON object per line on stderr.
 *
 * Levels are checked before any formatting happens (the macros), so a
 * debug line in a hot path costs one comparison when debug is off.
 *
 * Lines that may come in floods (a gateway answering 5xx to every request,
 * dead letters of a bad batch) go through a rate limiter
 * (nudgel_log_ratelimit_t, NUDGEL_LOG_LIMITED): at most N lines of a kind per
 * interval; the lines held back are counted, and the first line let through
 * in a later interval is preceded by one "<kind>: N more line(s)
 * suppressed" line, so an operator sees how much was left out.
 */
#ifndef NUDGEL_LOG_H
#define NUDGEL_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum nudgel_log_level {
    NUDGEL_LOG_DEBUG = 0,
    NUDGEL_LOG_INFO,
    NUDGEL_LOG_WARN,
    NUDGEL_LOG_ERROR,
    NUDGEL_LOG_OFF,
} nudgel_log_level_t;

/** Fields that tie a line to a job; any may be NULL. Borrowed for the call. */
typedef struct nudgel_log_ctx {
    const char *tenant;
    const char *job_id;
    const char *trace_id;
} nudgel_log_ctx_t;

extern nudgel_log_level_t nudgel_log_threshold;

#define NUDGEL_LOG_TRACE_ID_LEN 32 /* hex digits of a W3C trace id */

/**
 * @brief The trace-id of a W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>")
 * into @p out, for nudgel_log_ctx_t.trace_id; "" when @p traceparent (may be
 * NULL) is not one or its trace id is all zeros.
 */
void nudgel_log_trace_id(const char *traceparent, char out[NUDGEL_LOG_TRACE_ID_LEN + 1]);

/** @brief Sets the component name written on every line and the level threshold. */
void nudgel_log_init(const char *component, nudgel_log_level_t threshold);

/** @brief Parses "debug|info|warn|error|off". @returns 0, or -1 if unknown. */
int nudgel_log_level_parse(const char *text, nudgel_log_level_t *out);

/** @brief The lower-case name of a level. */
const char *nudgel_log_level_name(nudgel_log_level_t level);

/** @brief Formats and writes one line with a single write(2). Use the macros. */
void nudgel_log_emit(nudgel_log_level_t level, const nudgel_log_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define NUDGEL_LOG_CTX(level, ctx, ...)                                                            \
    do {                                                                                           \
        if ((level) >= nudgel_log_threshold)                                                       \
            nudgel_log_emit((level), (ctx), __VA_ARGS__);                                          \
    } while (0)

/**
 * At most `lines` lines per `interval_us` for one kind of line. Initialise
 * with NUDGEL_LOG_RATELIMIT_INIT; the rest is the limiter's. Not
 * thread-safe: a limiter belongs to one thread (a worker's loop).
 */
typedef struct nudgel_log_ratelimit {
    const char *kind;    /* names the kind in the "suppressed" line; borrowed (static) */
    unsigned lines;      /* lines let through per interval (0 counts as 1) */
    int64_t interval_us; /* length of an interval */
    int64_t window_us;   /* start of the current interval (monotonic); 0: none yet */
    unsigned written;    /* lines let through in the current interval */
    unsigned suppressed; /* lines held back since the last report */
} nudgel_log_ratelimit_t;

#define NUDGEL_LOG_RATELIMIT_INIT(kind, lines, interval_ms)                                        \
    {                                                                                              \
        (kind), (lines), (int64_t)(interval_ms)*1000, 0, 0, 0                                      \
    }

/**
 * @brief Whether one more line of @p rl's kind may be written at @p now_us
 * (a monotonic time, nudgel_mono_us()). When it may and lines were held
 * back before it, one "<kind>: N more line(s) suppressed" line is written
 * first at @p level. A line held back is counted.
 */
bool nudgel_log_ratelimit_allow_at(nudgel_log_ratelimit_t *rl, nudgel_log_level_t level,
                                   int64_t now_us);

/** @brief nudgel_log_ratelimit_allow_at() now. */
bool nudgel_log_ratelimit_allow(nudgel_log_ratelimit_t *rl, nudgel_log_level_t level);

/**
 * @brief Writes the "N more line(s) suppressed" line now if lines were held
 * back (at shutdown, say, so the count is not lost). @returns how many.
 */
unsigned nudgel_log_ratelimit_flush(nudgel_log_ratelimit_t *rl, nudgel_log_level_t level);

/** A line at @p level through the limiter @p rl (checked before any formatting). */
#define NUDGEL_LOG_LIMITED(rl, level, ctx, ...)                                                    \
    do {                                                                                           \
        if ((level) >= nudgel_log_threshold && nudgel_log_ratelimit_allow((rl), (level)))          \
            nudgel_log_emit((level), (ctx), __VA_ARGS__);                                          \
    } while (0)

#define nudgel_log_debug(...) NUDGEL_LOG_CTX(NUDGEL_LOG_DEBUG, NULL, __VA_ARGS__)
#define nudgel_log_info(...)  NUDGEL_LOG_CTX(NUDGEL_LOG_INFO, NULL, __VA_ARGS__)
#define nudgel_log_warn(...)  NUDGEL_LOG_CTX(NUDGEL_LOG_WARN, NULL, __VA_ARGS__)
#define nudgel_log_error(...) NUDGEL_LOG_CTX(NUDGEL_LOG_ERROR, NULL, __VA_ARGS__)

#endif
