/*
 * secretbox.c — see nudgel/webhooks/secretbox.h.
 */
#define _GNU_SOURCE
#include "nudgel/webhooks/secretbox.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define KEY_LEN       32
#define KEYRING_MAX   8192 /* bytes of keyring text (and of a key file) */
#define B64_KEY_CHARS 44

const nudgel_conf_entry_t nudgel_secretbox_conf[] = {
    {"secret.key", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, NUDGEL_CONF_SENSITIVE,
     "Keyring that encrypts webhook signing secrets at rest: KEY_ID:BASE64[,KEY_ID:BASE64...], "
     "each BASE64 the encoding of 32 random bytes (e.g. `openssl rand -base64 32`); the first "
     "key seals, all open. Environment NUDGEL_SECRET_KEY. Wins over secret.key_file."},
    {"secret.key_file", NUDGEL_CONF_STRING, NULL, 0, 0, NULL, NUDGEL_CONF_SENSITIVE,
     "File holding the keyring in the secret.key format (e.g. a mounted Kubernetes Secret)."},
    {NULL, NUDGEL_CONF_STRING, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct sb_key {
    char id[NUDGEL_SECRETBOX_KEY_ID_MAX + 1];
    unsigned char key[KEY_LEN];
} sb_key_t;

struct nudgel_secretbox {
    sb_key_t keys[NUDGEL_SECRETBOX_MAX_KEYS];
    size_t count;
};

static bool key_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > NUDGEL_SECRETBOX_KEY_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

/* Decodes exactly 32 bytes of standard base64 (44 characters with padding). */
static bool decode_key(const char *b64, size_t len, unsigned char out[KEY_LEN])
{
    unsigned char buf[48];
    if (len != B64_KEY_CHARS || b64[43] != '=' || b64[42] == '=')
        return false;
    /* EVP_DecodeBlock writes 33 bytes for 44 characters, the last one padding. */
    int n = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)len);
    bool ok = n == 33;
    if (ok)
        memcpy(out, buf, KEY_LEN);
    OPENSSL_cleanse(buf, sizeof(buf));
    return ok;
}

void nudgel_secretbox_destroy(nudgel_secretbox_t *box)
{
    if (!box)
        return;
    OPENSSL_cleanse(box, sizeof(*box));
    free(box);
}

nudgel_err_t nudgel_secretbox_new(const char *keyring, nudgel_secretbox_t **out, char *errstr,
                                  size_t errstr_size)
{
    nudgel_secretbox_t *box = NULL;
    nudgel_err_t err = NUDGEL_ERR_CONFIG;
    *out = NULL;
    if (!keyring) {
        snprintf(errstr, errstr_size, "no keyring given");
        return NUDGEL_ERR_CONFIG;
    }
    if (!(box = calloc(1, sizeof(*box)))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    const char *p = keyring;
    for (size_t pos = 1;; pos++) {
        while (isspace((unsigned char)*p))
            p++;
        const char *end = p + strcspn(p, ",");
        const char *last = end;
        while (last > p && isspace((unsigned char)last[-1]))
            last--;
        if (last == p) {
            snprintf(errstr, errstr_size, "keyring entry %zu is empty", pos);
            goto out;
        }
        const char *colon = memchr(p, ':', (size_t)(last - p));
        if (!colon) {
            snprintf(errstr, errstr_size,
                     "keyring entry %zu is not \"<key_id>:<base64 of 32 bytes>\" (no ':')", pos);
            goto out;
        }
        size_t id_len = (size_t)(colon - p);
        if (!key_id_valid(p, id_len)) {
            snprintf(errstr, errstr_size,
                     "keyring entry %zu: the key id must be 1 to %d of [A-Za-z0-9._-]", pos,
                     NUDGEL_SECRETBOX_KEY_ID_MAX);
            goto out;
        }
        if (box->count == NUDGEL_SECRETBOX_MAX_KEYS) {
            snprintf(errstr, errstr_size, "more than %d keys in the keyring",
                     NUDGEL_SECRETBOX_MAX_KEYS);
            goto out;
        }
        sb_key_t *k = &box->keys[box->count];
        memcpy(k->id, p, id_len);
        k->id[id_len] = '\0';
        for (size_t i = 0; i < box->count; i++) {
            if (strcmp(box->keys[i].id, k->id) == 0) {
                snprintf(errstr, errstr_size, "keyring entry %zu: key id \"%s\" appears twice", pos,
                         k->id);
                goto out;
            }
        }
        if (!decode_key(colon + 1, (size_t)(last - colon - 1), k->key)) {
            snprintf(errstr, errstr_size,
                     "keyring entry %zu (key id \"%s\"): the key must be base64 of exactly %d "
                     "bytes (%d characters)",
                     pos, k->id, KEY_LEN, B64_KEY_CHARS);
            goto out;
        }
        box->count++;
        if (!*end)
            break;
        p = end + 1;
    }
    *out = box;
    box = NULL;
    err = NUDGEL_OK;
out:
    nudgel_secretbox_destroy(box);
    return err;
}

nudgel_err_t nudgel_secretbox_from_conf(const nudgel_conf_t *conf, nudgel_secretbox_t **out,
                                        char *errstr, size_t errstr_size)
{
    const char *text = nudgel_conf_get_str(conf, "secret.key");
    const char *path = nudgel_conf_get_str(conf, "secret.key_file");
    char inner[256];
    *out = NULL;
    if (text && *text) {
        nudgel_err_t err = nudgel_secretbox_new(text, out, inner, sizeof(inner));
        if (err != NUDGEL_OK)
            snprintf(errstr, errstr_size, "secret.key: %s", inner);
        return err;
    }
    if (!path || !*path) {
        snprintf(errstr, errstr_size,
                 "secret.key: not set (set NUDGEL_SECRET_KEY or secret.key_file to the keyring "
                 "that encrypts webhook secrets)");
        return NUDGEL_ERR_CONFIG;
    }
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(errstr, errstr_size, "secret.key_file: %s: %s", path, strerror(errno));
        return NUDGEL_ERR_IO;
    }
    char *buf = calloc(1, KEYRING_MAX + 1);
    if (!buf) {
        fclose(f);
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    size_t n = fread(buf, 1, KEYRING_MAX + 1, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    nudgel_err_t err;
    if (failed) {
        snprintf(errstr, errstr_size, "secret.key_file: %s: read error", path);
        err = NUDGEL_ERR_IO;
    } else if (n > KEYRING_MAX) {
        snprintf(errstr, errstr_size, "secret.key_file: %s: larger than %d bytes", path,
                 KEYRING_MAX);
        err = NUDGEL_ERR_CONFIG;
    } else {
        buf[n] = '\0';
        while (n > 0 && isspace((unsigned char)buf[n - 1]))
            buf[--n] = '\0';
        err = nudgel_secretbox_new(buf, out, inner, sizeof(inner));
        if (err != NUDGEL_OK)
            snprintf(errstr, errstr_size, "secret.key_file: %s: %s", path, inner);
    }
    OPENSSL_cleanse(buf, KEYRING_MAX + 1);
    free(buf);
    return err;
}

const char *nudgel_secretbox_active_key_id(const nudgel_secretbox_t *box)
{
    return box->keys[0].id;
}

static const sb_key_t *find_key(const nudgel_secretbox_t *box, const char *id)
{
    for (size_t i = 0; i < box->count; i++)
        if (strcmp(box->keys[i].id, id) == 0)
            return &box->keys[i];
    return NULL;
}

nudgel_err_t nudgel_secretbox_seal(const nudgel_secretbox_t *box, const void *plain,
                                   size_t plain_len, unsigned char **sealed, size_t *sealed_len,
                                   const char **key_id, char *errstr, size_t errstr_size)
{
    const sb_key_t *k = &box->keys[0];
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *buf = NULL;
    nudgel_err_t err = NUDGEL_ERR_IO;
    int n = 0;

    *sealed = NULL;
    *sealed_len = 0;
    if (plain_len > (size_t)1 << 20) {
        snprintf(errstr, errstr_size, "plaintext over 1 MiB");
        return NUDGEL_ERR_TOO_LARGE;
    }
    if (!(buf = malloc(plain_len + NUDGEL_SECRETBOX_OVERHEAD)) || !(ctx = EVP_CIPHER_CTX_new())) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    unsigned char *nonce = buf + 1, *ct = nonce + NUDGEL_SECRETBOX_NONCE_LEN, *tag = ct + plain_len;
    buf[0] = NUDGEL_SECRETBOX_VERSION;
    if (RAND_bytes(nonce, NUDGEL_SECRETBOX_NONCE_LEN) != 1) {
        snprintf(errstr, errstr_size, "no random nonce from OpenSSL");
        goto out;
    }
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NUDGEL_SECRETBOX_NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, k->key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)k->id, (int)strlen(k->id)) != 1 ||
        (plain_len && EVP_EncryptUpdate(ctx, ct, &n, plain, (int)plain_len) != 1) ||
        EVP_EncryptFinal_ex(ctx, ct + plain_len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, NUDGEL_SECRETBOX_TAG_LEN, tag) != 1) {
        snprintf(errstr, errstr_size, "AES-256-GCM encryption failed");
        goto out;
    }
    *sealed = buf;
    *sealed_len = plain_len + NUDGEL_SECRETBOX_OVERHEAD;
    if (key_id)
        *key_id = k->id;
    buf = NULL;
    err = NUDGEL_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    free(buf);
    return err;
}

nudgel_err_t nudgel_secretbox_open(const nudgel_secretbox_t *box, const char *key_id,
                                   const unsigned char *sealed, size_t sealed_len, char **plain,
                                   size_t *plain_len, char *errstr, size_t errstr_size)
{
    EVP_CIPHER_CTX *ctx = NULL;
    char *buf = NULL;
    nudgel_err_t err = NUDGEL_ERR_INVALID_FIELD;
    int n = 0;

    *plain = NULL;
    *plain_len = 0;
    const sb_key_t *k = key_id ? find_key(box, key_id) : NULL;
    if (!k) {
        snprintf(errstr, errstr_size, "key id \"%s\" is not in the keyring (secret.key)",
                 key_id ? key_id : "(null)");
        return NUDGEL_ERR_CONFIG;
    }
    if (!sealed || sealed_len < NUDGEL_SECRETBOX_OVERHEAD || sealed_len > ((size_t)1 << 20)) {
        snprintf(errstr, errstr_size, "sealed secret of %zu bytes is malformed", sealed_len);
        return NUDGEL_ERR_INVALID_FIELD;
    }
    if (sealed[0] != NUDGEL_SECRETBOX_VERSION) {
        snprintf(errstr, errstr_size, "sealed secret has unknown version %u", (unsigned)sealed[0]);
        return NUDGEL_ERR_INVALID_FIELD;
    }
    size_t ct_len = sealed_len - NUDGEL_SECRETBOX_OVERHEAD;
    const unsigned char *nonce = sealed + 1, *ct = nonce + NUDGEL_SECRETBOX_NONCE_LEN,
                        *tag = ct + ct_len;
    if (!(buf = malloc(ct_len + 1)) || !(ctx = EVP_CIPHER_CTX_new())) {
        snprintf(errstr, errstr_size, "out of memory");
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NUDGEL_SECRETBOX_NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, k->key, nonce) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)k->id, (int)strlen(k->id)) != 1 ||
        (ct_len && EVP_DecryptUpdate(ctx, (unsigned char *)buf, &n, ct, (int)ct_len) != 1) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, NUDGEL_SECRETBOX_TAG_LEN, (void *)tag) !=
            1 ||
        EVP_DecryptFinal_ex(ctx, (unsigned char *)buf + ct_len, &n) != 1) {
        snprintf(errstr, errstr_size,
                 "sealed secret fails authentication with key id \"%s\" (tampered, or sealed "
                 "with another key)",
                 k->id);
        goto out;
    }
    buf[ct_len] = '\0';
    *plain = buf;
    *plain_len = ct_len;
    buf = NULL;
    err = NUDGEL_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    if (buf) {
        OPENSSL_cleanse(buf, ct_len + 1);
        free(buf);
    }
    return err;
}

void nudgel_secretbox_free_plain(char *plain, size_t plain_len)
{
    if (!plain)
        return;
    OPENSSL_cleanse(plain, plain_len + 1);
    free(plain);
}
