/*
 * check.c — nudgel-admin --check-config[=connect] (nudgel/config_check.h):
 * the configuration loaded as a command would load it, every problem
 * collected — the load's, the NUDGEL_* environment, pg.dsn's syntax, the
 * keyring when one is given (endpoints add and rotate-secret need it) —
 * and with =connect Kafka (admin.timeout_ms), Postgres when pg.dsn is set,
 * and the keyring against the stored secrets. Runs no command.
 */
#include "check.h"

#include <stdio.h>

#include "nudgel/config_check.h"
#include "nudgel/webhooks/keyring_check.h"

int nudgel_admin_check_config(const nudgel_conf_t *conf, const char *program, bool connect)
{
    nudgel_conf_check_t *check = nudgel_conf_check_new();
    if (!check) {
        fprintf(stderr, "%s: out of memory\n", program);
        return 3;
    }
    nudgel_conf_check_loaded(check, conf);
    nudgel_conf_check_environment(check, conf);
    nudgel_conf_check_dsn(check, conf, false);
    nudgel_keyring_check_conf(conf, false, check);
    const char *dsn = nudgel_conf_get_str(conf, "pg.dsn");
    bool pg = dsn && *dsn;
    if (connect && nudgel_conf_check_count(check) == 0) {
        nudgel_conf_check_probe_kafka(check, conf,
                                      (int)nudgel_conf_get_int(conf, "admin.timeout_ms"));
        if (pg)
            nudgel_conf_check_probe_postgres(check, conf, program);
        const char *key = nudgel_conf_get_str(conf, "secret.key");
        const char *file = nudgel_conf_get_str(conf, "secret.key_file");
        if (pg && nudgel_conf_check_count(check) == 0 && ((key && *key) || (file && *file)))
            nudgel_keyring_probe(conf, program, check);
    }
    int code = nudgel_conf_check_report(
        check, program,
        connect ? (pg ? "offline checks, Kafka, Postgres" : "offline checks, Kafka")
                : "offline checks",
        stdout, stderr);
    nudgel_conf_check_free(check);
    return code;
}
