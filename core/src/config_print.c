/*
 * config_print.c — the two printers a configuration's tables drive (see
 * nudgel/config.h): --print-config (each effective value with its source,
 * secrets and secret-looking librdkafka properties redacted) and the
 * Markdown reference behind docs/CONFIGURATION.md. Built on config.c's
 * public accessors only.
 */
#include <stdio.h>
#include <string.h>

#include "config_internal.h"
#include "nudgel/config.h"

static const char *source_name(nudgel_conf_source_t source)
{
    switch (source) {
    case NUDGEL_CONF_FROM_DEFAULT:
        return "default";
    case NUDGEL_CONF_FROM_FILE:
        return "file";
    case NUDGEL_CONF_FROM_ENV:
        return "env";
    case NUDGEL_CONF_FROM_FLAG:
        return "flag";
    }
    return "default";
}

/* librdkafka properties whose names say they hold secrets. */
static bool kafka_prop_sensitive(const char *name)
{
    return strstr(name, "password") || strstr(name, "secret") || strstr(name, "sasl.oauthbearer") ||
           strstr(name, ".key.pem") || strstr(name, "ssl.key");
}

typedef struct print_kafka {
    const nudgel_conf_t *conf;
    FILE *out;
} print_kafka_t;

static int print_kafka_prop(const char *prop, const char *value, void *opaque)
{
    print_kafka_t *p = opaque;
    bool from_file = conf_kafka_prop_hidden(p->conf, prop);
    fprintf(p->out, "kafka.%s = %s  # librdkafka%s\n", prop,
            from_file || kafka_prop_sensitive(prop) ? "[redacted]" : value,
            from_file ? ", kafka.properties_file" : "");
    return 0;
}

void nudgel_conf_print(const nudgel_conf_t *conf, FILE *out)
{
    fprintf(out, "# %s configuration (default < file < env < flag)\n", conf_program(conf));
    for (size_t i = 0; i < nudgel_conf_entry_count(conf); i++) {
        const nudgel_conf_entry_t *e = nudgel_conf_entry_at(conf, i);
        const char *value = nudgel_conf_get_str(conf, e->name);
        const char *shown = !value                               ? "(unset)"
                            : (e->flags & NUDGEL_CONF_SENSITIVE) ? "[redacted]"
                                                                 : value;
        fprintf(out, "%s = %s  # %s\n", e->name, shown,
                source_name(nudgel_conf_source(conf, e->name)));
    }
    print_kafka_t kafka = {conf, out};
    nudgel_conf_kafka_foreach(conf, print_kafka_prop, &kafka);
}

static const char *type_name(nudgel_conf_type_t type)
{
    switch (type) {
    case NUDGEL_CONF_STRING:
        return "string";
    case NUDGEL_CONF_INT:
        return "integer";
    case NUDGEL_CONF_BOOL:
        return "boolean";
    case NUDGEL_CONF_ENUM:
        return "enum";
    }
    return "string";
}

void nudgel_conf_print_doc(const nudgel_conf_t *conf, FILE *out)
{
    fprintf(out, "## %s\n\n", conf_program(conf));
    fprintf(out, "| key | environment | type | default | allowed | description |\n");
    fprintf(out, "|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < nudgel_conf_entry_count(conf); i++) {
        const nudgel_conf_entry_t *e = nudgel_conf_entry_at(conf, i);
        char env[160], allowed[128] = "";
        nudgel_conf_env_name(e->name, env, sizeof(env));
        if (e->type == NUDGEL_CONF_INT)
            snprintf(allowed, sizeof(allowed), "%lld to %lld", e->min, e->max);
        else if (e->type == NUDGEL_CONF_ENUM) {
            /* "a|b" would end the Markdown cell: list the values with commas. */
            snprintf(allowed, sizeof(allowed), "%s", e->enum_values);
            for (char *bar = strchr(allowed, '|'); bar; bar = strchr(bar, '|'))
                *bar = ',';
        } else if (e->type == NUDGEL_CONF_BOOL)
            snprintf(allowed, sizeof(allowed), "true, false");
        fprintf(out, "| `%s` | `%s` | %s | %s%s%s | %s | %s%s |\n", e->name, env,
                type_name(e->type), e->default_value ? "`" : "",
                e->default_value ? e->default_value : "—", e->default_value ? "`" : "", allowed,
                (e->flags & NUDGEL_CONF_SENSITIVE) ? "**Sensitive: never printed.** " : "",
                e->description);
    }
    fprintf(out, "\nAny other `kafka.<property>` key is passed to librdkafka as `<property>`.\n\n");
}
