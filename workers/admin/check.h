/*
 * check.h — nudgel-admin --check-config (see check.c).
 */
#ifndef NUDGEL_ADMIN_CHECK_H
#define NUDGEL_ADMIN_CHECK_H

#include <stdbool.h>

#include "nudgel/config.h"

/**
 * @brief Checks @p conf (loaded collecting, nudgel_conf_startup_check()),
 * prints every problem or one line OK. @returns the exit code: 0, 2 (a
 * configuration problem) or 3 (only Kafka or Postgres unreachable).
 */
int nudgel_admin_check_config(const nudgel_conf_t *conf, const char *program, bool connect);

#endif
