/*
 * config_kafka_file.c — kafka.properties_file: librdkafka properties kept
 * out of the configuration file, for the Kafka client's secrets
 * (sasl.username, sasl.password, ssl.key.password), which arrive as a
 * mounted Kubernetes Secret.
 *
 * The format is the Java client's client.properties reduced to what such a
 * Secret holds: one name=value per line, split at the first '='; blanks
 * around the name and around the value are trimmed (a Secret's file often
 * ends in "\n" or "\r\n"); blank lines and lines whose first non-blank is
 * '#' or '!' are skipped. No escapes and no continuation lines.
 *
 * Each property is checked against librdkafka as it is read, so a start or
 * --check-config names the problem at once. A problem names the key, the
 * file, the line and the property, never a value (a line without '=' may be
 * a bare password: its text is not shown either). The properties join the
 * kafka.* pass-through list after every other source, so they win; each is
 * marked hidden: the printers redact it and the configuration wipes it when
 * freed. The line buffer is wiped too.
 *
 * Threads: called by a load, on the thread that loads.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "config_internal.h"

#define PROPERTIES_KEY      "kafka.properties_file"
#define PROPERTIES_MAX_SIZE (64 * 1024) /* a Secret's file, not a data file */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* One line of @p path (number @p lineno), in place. @returns 0, or -1 with @p errstr set. */
static int apply_line(nudgel_conf_t *conf, rd_kafka_conf_t *check, const char *path,
                      unsigned lineno, char *line, char *errstr, size_t errstr_size)
{
    char *name = trim(line);
    if (!*name || *name == '#' || *name == '!')
        return 0;
    char *eq = strchr(name, '=');
    if (!eq) {
        snprintf(errstr, errstr_size,
                 PROPERTIES_KEY ": %s line %u: not name=value (the line is not shown)", path,
                 lineno);
        return -1;
    }
    *eq = '\0';
    char *value = eq + 1;
    while (isspace((unsigned char)*value))
        value++;
    name = trim(name);
    char inner[512];
    rd_kafka_conf_res_t res =
        *name ? rd_kafka_conf_set(check, name, value, inner, sizeof(inner)) : RD_KAFKA_CONF_UNKNOWN;
    if (res != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, PROPERTIES_KEY ": %s line %u: \"%.128s\": %s", path, lineno,
                 name,
                 res == RD_KAFKA_CONF_UNKNOWN ? "not a librdkafka property"
                                              : "librdkafka refuses its value (not shown)");
        return -1;
    }
    snprintf(errstr, errstr_size, PROPERTIES_KEY ": %s line %u: out of memory", path, lineno);
    return conf_set_kafka_prop(conf, name, value, true, errstr, errstr_size) == NUDGEL_OK ? 0 : -1;
}

nudgel_err_t conf_load_kafka_properties(nudgel_conf_t *conf, char *errstr, size_t errstr_size)
{
    const char *path = nudgel_conf_get_str(conf, PROPERTIES_KEY);
    if (!path || !*path)
        return NUDGEL_OK;
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(errstr, errstr_size, PROPERTIES_KEY ": cannot read %s: %s", path, strerror(errno));
        conf_keep_going(conf, NUDGEL_ERR_CONFIG, errstr);
        return NUDGEL_ERR_CONFIG;
    }
    rd_kafka_conf_t *check = rd_kafka_conf_new();
    nudgel_err_t first = NUDGEL_OK;
    char *line = NULL;
    size_t cap = 0, total = 0;
    ssize_t len;
    for (unsigned lineno = 1; (len = getline(&line, &cap, f)) >= 0; lineno++) {
        char why[700];
        total += (size_t)len;
        if (total > PROPERTIES_MAX_SIZE) {
            snprintf(why, sizeof(why), PROPERTIES_KEY ": %s: longer than %d bytes", path,
                     PROPERTIES_MAX_SIZE);
        } else if (apply_line(conf, check, path, lineno, line, why, sizeof(why)) == 0) {
            continue;
        }
        if (first == NUDGEL_OK)
            snprintf(errstr, errstr_size, "%s", why);
        first = NUDGEL_ERR_CONFIG;
        if (!conf_keep_going(conf, NUDGEL_ERR_CONFIG, why) || total > PROPERTIES_MAX_SIZE)
            break;
    }
    if (line) {
        explicit_bzero(line, cap);
        free(line);
    }
    rd_kafka_conf_destroy(check); /* holds the values too: librdkafka frees them */
    fclose(f);
    return first;
}
