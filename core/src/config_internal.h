/*
 * config_internal.h — what the config table engine (config.c), the command
 * line (config_cmdline.c) and the printers (config_print.c) share, private to
 * core/: the prefix that makes a key a librdkafka pass-through property, so
 * that -X PROP=VALUE and a "kafka.<prop>" key of a file, the environment or
 * --set mean the same; the program a configuration was made for; the
 * pass-through list and the problem list, for kafka.properties_file
 * (config_kafka_file.c).
 */
#ifndef NUDGEL_CONFIG_INTERNAL_H
#define NUDGEL_CONFIG_INTERNAL_H

#define CONF_KAFKA_PREFIX "kafka."

#include "nudgel/config.h"

/* The program a configuration was made for (borrowed), for the printers (config_print.c). */
const char *conf_program(const nudgel_conf_t *conf);

/* Sets librdkafka property @p prop (no "kafka." prefix) to a copy of @p value; @p hidden marks
 * a value never printed and wiped when replaced or freed. */
nudgel_err_t conf_set_kafka_prop(nudgel_conf_t *conf, const char *prop, const char *value,
                                 bool hidden, char *errstr, size_t errstr_size);

/* Whether property @p prop came from kafka.properties_file (the printers redact it). */
bool conf_kafka_prop_hidden(const nudgel_conf_t *conf, const char *prop);

/* A collecting load keeps @p problem and @returns true (go on); otherwise false (stop). */
bool conf_keep_going(nudgel_conf_t *conf, nudgel_err_t err, const char *problem);

/* Reads kafka.properties_file, when set, into the pass-through list (hidden); the last of a
 * load's sources. A problem names the key, the file, the line and the property, never a value. */
nudgel_err_t conf_load_kafka_properties(nudgel_conf_t *conf, char *errstr, size_t errstr_size);

#endif /* NUDGEL_CONFIG_INTERNAL_H */
