/*
 * nudgel/webhooks/secretbox.h — webhook signing secrets at rest.
 *
 * A secretbox is a keyring of AES-256 keys, each with an id. The keyring is
 * given as text, "<key_id>:<base64 of 32 bytes>[,<key_id>:<base64>...]",
 * from configuration key secret.key (environment NUDGEL_SECRET_KEY) or from
 * the file named by secret.key_file (NUDGEL_SECRET_KEY_FILE; its content in
 * the same format, surrounding whitespace ignored). The first key seals; all
 * keys open, so keys rotate by prepending a new one and re-sealing later.
 *
 * Sealed bytes: version (0x01) | 12-byte random nonce | ciphertext | 16-byte
 * GCM tag, with the key id as additional authenticated data, so a ciphertext
 * moved to another key id fails to open. Store the key id beside the bytes
 * (webhook_endpoints.secret_key_id).
 *
 * Key material is wiped (OPENSSL_cleanse) when the secretbox is destroyed;
 * error texts never contain key material or plaintext.
 */
#ifndef NUDGEL_WEBHOOKS_SECRETBOX_H
#define NUDGEL_WEBHOOKS_SECRETBOX_H

#include <stddef.h>

#include "nudgel/config.h"
#include "nudgel/error.h"

#define NUDGEL_SECRETBOX_VERSION    0x01
#define NUDGEL_SECRETBOX_NONCE_LEN  12
#define NUDGEL_SECRETBOX_TAG_LEN    16
#define NUDGEL_SECRETBOX_OVERHEAD   (1 + NUDGEL_SECRETBOX_NONCE_LEN + NUDGEL_SECRETBOX_TAG_LEN)
#define NUDGEL_SECRETBOX_KEY_ID_MAX 64 /* [A-Za-z0-9._-]{1,64} */
#define NUDGEL_SECRETBOX_MAX_KEYS   16

typedef struct nudgel_secretbox nudgel_secretbox_t;

/**
 * Config entries of the keyring (secret.key, secret.key_file; both
 * NUDGEL_CONF_SENSITIVE), for the tables of binaries that seal or open
 * secrets (nudgel-admin, nudgel-webhooks). NULL-name terminated.
 */
extern const nudgel_conf_entry_t nudgel_secretbox_conf[];

/**
 * @brief A secretbox from keyring text (see above). Key ids must be unique.
 * @returns NUDGEL_OK and a new secretbox in @p out (destroy it), or
 * NUDGEL_ERR_CONFIG with a reason naming the entry by position and id
 * (never its key) in @p errstr.
 */
nudgel_err_t nudgel_secretbox_new(const char *keyring, nudgel_secretbox_t **out, char *errstr,
                                  size_t errstr_size);

/**
 * @brief A secretbox from configuration: secret.key if set, else the file
 * named by secret.key_file. @returns as nudgel_secretbox_new(), with
 * NUDGEL_ERR_CONFIG "secret.key: not set ..." when neither is set and
 * NUDGEL_ERR_IO when the key file cannot be read; errors name the key.
 */
nudgel_err_t nudgel_secretbox_from_conf(const nudgel_conf_t *conf, nudgel_secretbox_t **out,
                                        char *errstr, size_t errstr_size);

/** @brief Wipes every key and frees @p box. NULL is fine. */
void nudgel_secretbox_destroy(nudgel_secretbox_t *box);

/** @brief The id of the sealing (first) key; borrowed from @p box. */
const char *nudgel_secretbox_active_key_id(const nudgel_secretbox_t *box);

/**
 * @brief Seals @p plain_len bytes with the active key.
 * @returns NUDGEL_OK with @p *sealed a malloc'd buffer of @p *sealed_len
 * (= plain_len + NUDGEL_SECRETBOX_OVERHEAD) bytes the caller frees, and
 * @p *key_id the key id used (borrowed from @p box); NUDGEL_ERR_IO when
 * OpenSSL failed; NUDGEL_ERR_NO_MEMORY.
 */
nudgel_err_t nudgel_secretbox_seal(const nudgel_secretbox_t *box, const void *plain,
                                   size_t plain_len, unsigned char **sealed, size_t *sealed_len,
                                   const char **key_id, char *errstr, size_t errstr_size);

/**
 * @brief Opens bytes sealed under @p key_id.
 * @returns NUDGEL_OK with @p *plain a malloc'd, NUL-terminated buffer of
 * @p *plain_len bytes (free it with nudgel_secretbox_free_plain, which
 * wipes it); NUDGEL_ERR_CONFIG when @p key_id is not in the keyring;
 * NUDGEL_ERR_INVALID_FIELD when the bytes are malformed, of an unknown
 * version, or fail authentication (tampered, or sealed with another key).
 */
nudgel_err_t nudgel_secretbox_open(const nudgel_secretbox_t *box, const char *key_id,
                                   const unsigned char *sealed, size_t sealed_len, char **plain,
                                   size_t *plain_len, char *errstr, size_t errstr_size);

/** @brief Wipes and frees a plaintext from nudgel_secretbox_open(). NULL is fine. */
void nudgel_secretbox_free_plain(char *plain, size_t plain_len);

#endif
