/*
 * config_internal.h — what the config table engine (config.c), the command
 * line (config_cmdline.c) and the printers (config_print.c) share, private to
 * core/: the prefix that makes a key a librdkafka pass-through property, so
 * that -X PROP=VALUE and a "kafka.<prop>" key of a file, the environment or
 * --set mean the same; and the program a configuration was made for.
 */
#ifndef NUDGEL_CONFIG_INTERNAL_H
#define NUDGEL_CONFIG_INTERNAL_H

#define CONF_KAFKA_PREFIX "kafka."

#include "nudgel/config.h"

/* The program a configuration was made for (borrowed), for the printers (config_print.c). */
const char *conf_program(const nudgel_conf_t *conf);

#endif /* NUDGEL_CONFIG_INTERNAL_H */
