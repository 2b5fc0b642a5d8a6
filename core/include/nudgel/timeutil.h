/*
 * nudgel/timeutil.h — clocks and RFC 3339 timestamps.
 */
#ifndef NUDGEL_TIMEUTIL_H
#define NUDGEL_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

#define NUDGEL_RFC3339_MAX 48

/** @brief Wall clock, Unix milliseconds. */
int64_t nudgel_now_unix_ms(void);

/** @brief Monotonic clock in microseconds, for intervals. */
int64_t nudgel_mono_us(void);

/** @brief Formats @p unix_ms as "2026-11-29T01:56:15.123Z". */
void nudgel_rfc3339_format(int64_t unix_ms, char out[NUDGEL_RFC3339_MAX]);

/**
 * @brief Parses an RFC 3339 date-time ("Z" or a numeric offset, optional
 * fraction). @returns 0 and the Unix milliseconds, or -1 if malformed.
 */
int nudgel_rfc3339_parse(const char *text, int64_t *unix_ms);

#endif
