/*
 * config_internal.h — what the config table engine (config.c) and the
 * command line (config_cmdline.c) share, private to core/: the prefix that
 * makes a key a librdkafka pass-through property, so that -X PROP=VALUE and
 * a "kafka.<prop>" key of a file, the environment or --set mean the same.
 */
#ifndef NUDGEL_CONFIG_INTERNAL_H
#define NUDGEL_CONFIG_INTERNAL_H

#define CONF_KAFKA_PREFIX "kafka."

#endif /* NUDGEL_CONFIG_INTERNAL_H */
