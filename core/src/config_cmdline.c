/*
 * config_cmdline.c — a binary's command line, start-up and reload on top of
 * the config table (see nudgel/config.h; the table engine is config.c).
 *
 * Owns the flags every binary shares (--config, --set, -X, --check-config,
 * --print-config, --print-config-doc, --version, --help) and their parsing with
 * getopt_long; the order of a configuration's sources at start-up and at
 * reload (file or NUDGEL_CONFIG < environment < flags < the librdkafka
 * properties of kafka.properties_file, then kafka.client_id defaulting to the
 * program name); the log set up from log.level; and the
 * kept command line (nudgel_conf_cmdline_t) a reload applies again.
 *
 * Ownership: a kept command line owns its assignments until
 * nudgel_conf_cmdline_clear(); its config path borrows from argv. Threads:
 * start-up runs on the main thread before any other exists.
 */
#define _GNU_SOURCE
#include "nudgel/config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "nudgel/log.h"
#include "nudgel/version.h"

/* The sources of a configuration, in order: file (or NUDGEL_CONFIG) < environment < flags <
 * kafka.properties_file's librdkafka properties; then kafka.client_id defaults to the program
 * name. */
static nudgel_err_t load_all(nudgel_conf_t *conf, const char *program, const char *config_path,
                             char *const *assignments, size_t count, char *errstr,
                             size_t errstr_size)
{
    nudgel_err_t err = nudgel_conf_load(conf, config_path, errstr, errstr_size);
    if (err == NUDGEL_OK || nudgel_conf_problem_count(conf)) { /* collecting: go on */
        char flag_err[1024];
        nudgel_err_t flags =
            nudgel_conf_set_assignments(conf, assignments, count, flag_err, sizeof(flag_err));
        if (err == NUDGEL_OK && flags != NUDGEL_OK) {
            err = flags;
            snprintf(errstr, errstr_size, "%s", flag_err);
        }
    }
    if (err == NUDGEL_OK || nudgel_conf_problem_count(conf)) {
        char file_err[1024];
        nudgel_err_t file = conf_load_kafka_properties(conf, file_err, sizeof(file_err));
        if (err == NUDGEL_OK && file != NUDGEL_OK) {
            err = file;
            snprintf(errstr, errstr_size, "%s", file_err);
        }
    }
    if (err == NUDGEL_OK && !nudgel_conf_get_str(conf, "kafka.client_id"))
        err = nudgel_conf_set(conf, "kafka.client_id", program, NUDGEL_CONF_FROM_DEFAULT, errstr,
                              errstr_size);
    return err;
}

/* nudgel_conf_startup(), with the problem of a FAIL also in @p errstr. */
static nudgel_conf_startup_t startup(nudgel_conf_t *conf, const char *program,
                                     const char *config_path, char *const *assignments,
                                     size_t count, bool print_config, bool print_doc, char *errstr,
                                     size_t errstr_size)
{
    nudgel_log_level_t level = NUDGEL_LOG_INFO;
    if (print_doc) {
        nudgel_conf_print_doc(conf, stdout);
        return NUDGEL_CONF_STARTUP_DONE;
    }
    if (load_all(conf, program, config_path, assignments, count, errstr, errstr_size) !=
        NUDGEL_OK) {
        fprintf(stderr, "%s: %s\n", program, errstr);
        return NUDGEL_CONF_STARTUP_FAIL;
    }
    nudgel_log_level_parse(nudgel_conf_get_str(conf, "log.level"), &level);
    nudgel_log_init(program, level);
    if (print_config) {
        nudgel_conf_print(conf, stdout);
        return NUDGEL_CONF_STARTUP_DONE;
    }
    return NUDGEL_CONF_STARTUP_RUN;
}

nudgel_conf_startup_t nudgel_conf_startup_check(nudgel_conf_t *conf, const char *program,
                                                const char *config_path, char *const *assignments,
                                                size_t count)
{
    char errstr[1024];
    nudgel_log_init(program, NUDGEL_LOG_OFF);
    nudgel_conf_collect(conf, true);
    /* Every problem is in the configuration's list; the first one's return is not needed. */
    (void)load_all(conf, program, config_path, assignments, count, errstr, sizeof(errstr));
    return NUDGEL_CONF_STARTUP_CHECK;
}

nudgel_conf_startup_t nudgel_conf_startup(nudgel_conf_t *conf, const char *program,
                                          const char *config_path, char *const *assignments,
                                          size_t count, bool print_config, bool print_doc)
{
    char errstr[1024];
    return startup(conf, program, config_path, assignments, count, print_config, print_doc, errstr,
                   sizeof(errstr));
}

nudgel_err_t nudgel_conf_load_cmdline(nudgel_conf_t *conf, const char *program,
                                      const nudgel_conf_cmdline_t *cmdline, char *errstr,
                                      size_t errstr_size)
{
    return load_all(conf, program, cmdline->config_path, cmdline->assignments, cmdline->count,
                    errstr, errstr_size);
}

void nudgel_conf_cmdline_clear(nudgel_conf_cmdline_t *cmdline)
{
    if (!cmdline)
        return;
    for (size_t i = 0; i < cmdline->count; i++)
        free(cmdline->assignments[i]);
    free(cmdline->assignments);
    *cmdline = (nudgel_conf_cmdline_t){0};
}

#define STARTUP_MAX_SETS 64 /* --set / -X flags one command line may give */

static void usage_line(FILE *out, const char *program)
{
    fprintf(out,
            "usage: %s [--config FILE] [--set KEY=VALUE] [-X PROP=VALUE]\n"
            "       %*s [--check-config[=connect]] [--print-config] [--print-config-doc]\n"
            "       %*s [--version] [--help]\n",
            program, (int)strlen(program), "", (int)strlen(program), "");
}

static void help(const nudgel_conf_t *conf, const char *program, const char *summary)
{
    usage_line(stdout, program);
    fprintf(stdout,
            "\n"
            "  -c, --config FILE       JSON config file (default: $NUDGEL_CONFIG)\n"
            "  -s, --set KEY=VALUE     set any configuration key (repeatable; wins over the\n"
            "                          file and the environment)\n"
            "  -X PROP=VALUE           librdkafka property (same as --set kafka.PROP=VALUE)\n"
            "      --check-config      load the configuration as a start would, check every\n"
            "                          key, file and secret it names offline, print each\n"
            "                          problem (exit 2) or one line OK (exit 0); start nothing\n"
            "      --check-config=connect  also probe Kafka, Postgres and the role's\n"
            "                          credentials (exit 3 when one cannot be reached)\n"
            "      --print-config      print the effective configuration (secrets redacted)\n"
            "      --print-config-doc  print the configuration reference (Markdown)\n"
            "      --version           print the version\n"
            "  -h, --help              this text\n\n");
    if (summary && *summary)
        fprintf(stdout, "%s\n\n", summary);
    fprintf(stdout, "Configuration (default < file < NUDGEL_* environment < --set):\n\n");
    nudgel_conf_print_doc(conf, stdout);
}

nudgel_conf_startup_t nudgel_conf_startup_cmdline(nudgel_conf_t *conf, const char *program,
                                                  const char *summary, int argc, char **argv,
                                                  nudgel_conf_cmdline_t *keep)
{
    enum { OPT_VERSION = 256, OPT_CHECK };
    static const struct option options[] = {
        {"check-config", optional_argument, NULL, OPT_CHECK},
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"print-config", no_argument, NULL, 'P'},
        {"print-config-doc", no_argument, NULL, 'D'},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    nudgel_conf_cmdline_t cmd = {0};
    bool print_config = false, print_doc = false;
    nudgel_conf_startup_t result = NUDGEL_CONF_STARTUP_FAIL;
    int opt;
    if (!(cmd.assignments = calloc(STARTUP_MAX_SETS, sizeof(cmd.assignments[0])))) {
        snprintf(cmd.error, sizeof(cmd.error), "out of memory");
        fprintf(stderr, "%s: %s\n", program, cmd.error);
        goto out;
    }
    while ((opt = getopt_long(argc, argv, "c:s:X:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cmd.config_path = optarg;
            break;
        case 's':
        case 'X':
            if (cmd.count == STARTUP_MAX_SETS) {
                snprintf(cmd.error, sizeof(cmd.error), "more than %d --set/-X flags",
                         STARTUP_MAX_SETS);
                fprintf(stderr, "%s: %s\n", program, cmd.error);
                goto out;
            }
            if (asprintf(&cmd.assignments[cmd.count], "%s%s", opt == 'X' ? CONF_KAFKA_PREFIX : "",
                         optarg) < 0) {
                snprintf(cmd.error, sizeof(cmd.error), "out of memory");
                fprintf(stderr, "%s: %s\n", program, cmd.error);
                goto out;
            }
            cmd.count++;
            break;
        case 'P':
            print_config = true;
            break;
        case 'D':
            print_doc = true;
            break;
        case OPT_CHECK:
            if (optarg && strcmp(optarg, "connect") != 0) {
                snprintf(cmd.error, sizeof(cmd.error),
                         "--check-config takes no value or \"connect\", not \"%.64s\"", optarg);
                fprintf(stderr, "%s: %s\n", program, cmd.error);
                goto out;
            }
            cmd.check = optarg ? NUDGEL_CONF_CHECK_CONNECT : NUDGEL_CONF_CHECK_OFFLINE;
            break;
        case OPT_VERSION:
            fprintf(stdout, "%s %s\n", program, nudgel_version());
            result = NUDGEL_CONF_STARTUP_DONE;
            goto out;
        case 'h':
            help(conf, program, summary);
            result = NUDGEL_CONF_STARTUP_DONE;
            goto out;
        default:
            snprintf(cmd.error, sizeof(cmd.error), "usage error (see --help)");
            usage_line(stderr, program);
            goto out;
        }
    }
    if (cmd.check && !print_doc && !print_config)
        result =
            nudgel_conf_startup_check(conf, program, cmd.config_path, cmd.assignments, cmd.count);
    else
        result = startup(conf, program, cmd.config_path, cmd.assignments, cmd.count, print_config,
                         print_doc, cmd.error, sizeof(cmd.error));
    if (result != NUDGEL_CONF_STARTUP_FAIL)
        cmd.error[0] = '\0';
out:
    if (keep) {
        *keep = cmd;
        return result;
    }
    nudgel_conf_cmdline_clear(&cmd);
    return result;
}

nudgel_conf_startup_t nudgel_conf_startup_args(nudgel_conf_t *conf, const char *program, int argc,
                                               char **argv)
{
    return nudgel_conf_startup_cmdline(conf, program, NULL, argc, argv, NULL);
}
