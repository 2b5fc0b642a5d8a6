/*
 * secretbox_open.c — a test tool: opens one sealed secret with the keyring of
 * NUDGEL_SECRET_KEY, so integration tests can check what nudgel-admin stored.
 *
 *   nudgel-test-secretbox-open KEY_ID HEX_CIPHERTEXT   → the plaintext on stdout
 *
 * Exit 0 when it opened, 1 when it did not (the reason on stderr), 2 on usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/webhooks/secretbox.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv)
{
    nudgel_secretbox_t *box = NULL;
    unsigned char *sealed = NULL;
    char *plain = NULL, errstr[512];
    size_t plain_len = 0;
    int rc = 2;

    if (argc != 3 || !getenv("NUDGEL_SECRET_KEY")) {
        fprintf(stderr, "usage: NUDGEL_SECRET_KEY=... %s KEY_ID HEX\n", argv[0]);
        return 2;
    }
    const char *hex = argv[2];
    if (strncmp(hex, "\\x", 2) == 0)
        hex += 2; /* Postgres's bytea text form */
    size_t len = strlen(hex) / 2;
    if (strlen(hex) % 2 || !(sealed = malloc(len ? len : 1)))
        goto out;
    for (size_t i = 0; i < len; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            goto out;
        sealed[i] = (unsigned char)(hi << 4 | lo);
    }
    rc = 1;
    if (nudgel_secretbox_new(getenv("NUDGEL_SECRET_KEY"), &box, errstr, sizeof(errstr)) !=
            NUDGEL_OK ||
        nudgel_secretbox_open(box, argv[1], sealed, len, &plain, &plain_len, errstr,
                              sizeof(errstr)) != NUDGEL_OK) {
        fprintf(stderr, "%s\n", errstr);
        goto out;
    }
    fwrite(plain, 1, plain_len, stdout);
    fputc('\n', stdout);
    rc = 0;
out:
    nudgel_secretbox_free_plain(plain, plain_len);
    nudgel_secretbox_destroy(box);
    free(sealed);
    return rc;
}
