/*
 * nudgel/log.h — one JSON object per line on stderr.
 *
 * Levels are checked before any formatting happens (the macros), so a
 * debug line in a hot path costs one comparison when debug is off.
 */
#ifndef NUDGEL_LOG_H
#define NUDGEL_LOG_H

#include <stdbool.h>

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

#define nudgel_log_debug(...) NUDGEL_LOG_CTX(NUDGEL_LOG_DEBUG, NULL, __VA_ARGS__)
#define nudgel_log_info(...)  NUDGEL_LOG_CTX(NUDGEL_LOG_INFO, NULL, __VA_ARGS__)
#define nudgel_log_warn(...)  NUDGEL_LOG_CTX(NUDGEL_LOG_WARN, NULL, __VA_ARGS__)
#define nudgel_log_error(...) NUDGEL_LOG_CTX(NUDGEL_LOG_ERROR, NULL, __VA_ARGS__)

#endif
