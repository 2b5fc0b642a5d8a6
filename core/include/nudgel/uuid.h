/*
 * nudgel/uuid.h — UUIDv7 (RFC 9562) job ids.
 *
 * Ids from one process are strictly increasing: the 12-bit rand_a field is a
 * counter within a millisecond (RFC 9562 §6.2 method 1), and a counter
 * overflow borrows the next millisecond rather than going backwards.
 */
#ifndef NUDGEL_UUID_H
#define NUDGEL_UUID_H

#include <stdbool.h>
#include <stdint.h>

#define NUDGEL_UUID_STR_LEN 36 /* without the terminating NUL */

/** @brief Fills @p out with a new UUIDv7. Thread-safe. */
void nudgel_uuid7_generate(uint8_t out[16]);

/** @brief Writes the lower-case 8-4-4-4-12 form and a NUL into @p out. */
void nudgel_uuid_format(const uint8_t in[16], char out[NUDGEL_UUID_STR_LEN + 1]);

/** @brief A new UUIDv7 straight into its text form. */
void nudgel_uuid7_string(char out[NUDGEL_UUID_STR_LEN + 1]);

/** @brief Parses the 8-4-4-4-12 form (either case). @returns 0, or -1 if malformed. */
int nudgel_uuid_parse(const char *text, uint8_t out[16]);

/** @brief The Unix time in milliseconds carried by a UUIDv7. */
int64_t nudgel_uuid7_unix_ms(const uint8_t in[16]);

#endif
