/*
 * config_fleet.c — the fleet's key registry (see nudgel/config_fleet.h):
 * the names of every binary's keys, the sections they make, the NUDGEL_*
 * environment rule and the "did you mean" of an unknown name.
 */
#include "nudgel/config_fleet.h"

#include <stdio.h>
#include <string.h>

#include "nudgel/config.h"

/* Every key of every binary's table (nudgel-admin, nudgel-enqueue and the producer library,
 * every role, the runtime's), sorted. */
static const char *const fleet_keys[] = {
    "admin.timeout_ms",
    "consumer.window",
    "dispatch.drain_timeout_ms",
    "dispatch.endpoint_cache_max",
    "dispatch.endpoint_refresh_ms",
    "dispatch.group_id",
    "dispatch.max_in_flight",
    "dlr.ack_timeout_ms",
    "dlr.connection_limit",
    "dlr.drain_timeout_ms",
    "dlr.gateways_file",
    "dlr.idle_timeout_s",
    "dlr.listen_address",
    "dlr.max_body_bytes",
    "dlr.max_requests",
    "dlr.port",
    "enqueue.connect_timeout_ms",
    "kafka.bootstrap",
    "kafka.client_id",
    "kafka.properties_file",
    "log.level",
    "messages.breaker_failure_percent",
    "messages.breaker_min_calls",
    "messages.breaker_open_ms",
    "messages.breaker_window",
    "messages.callback_url",
    "messages.claim_stale_ms",
    "messages.drain_timeout_ms",
    "messages.gateway_max_in_flight",
    "messages.gateways_file",
    "messages.group_id",
    "messages.max_in_flight",
    "messages.pg_reconnect_max_ms",
    "messages.retry_delays_ms",
    "messages.startup_probe",
    "messages.template_cache_max",
    "messages.template_cache_ms",
    "messages.tenant_limits_refresh_ms",
    "messages.tenant_max_in_flight",
    "messages.tenant_rate_per_second",
    "messages.validity_ms",
    "messages.worker_id",
    "metrics.address",
    "metrics.port",
    "pg.connect_timeout_s",
    "pg.dsn",
    "producer.default_country",
    "producer.max_job_bytes",
    "producer.message_timeout_ms",
    "producer.messages_topic",
    "producer.webhooks_topic",
    "receipts.batch_max",
    "receipts.drain_timeout_ms",
    "receipts.expiry_by_gateway",
    "receipts.expiry_s",
    "receipts.group_id",
    "receipts.max_in_flight",
    "receipts.pending_ttl_s",
    "receipts.sweep_batch",
    "receipts.sweep_interval_ms",
    "secret.key",
    "secret.key_file",
    "topics.namespace",
    "topics.partitions",
    "topics.replication_factor",
    "topics.retention_ms.dlq",
    "topics.retention_ms.dlr",
    "topics.retention_ms.jobs",
    "topics.retention_ms.retry",
    "topics.retention_ms.status",
    "webhooks.connect_timeout_ms",
    "webhooks.disable_after_failing_ms",
    "webhooks.drain_timeout_ms",
    "webhooks.endpoint_cache_max",
    "webhooks.endpoint_cache_ms",
    "webhooks.endpoint_max_concurrency",
    "webhooks.endpoint_queue_max",
    "webhooks.endpoint_rate_per_second",
    "webhooks.fetch_wait_ms",
    "webhooks.flush_interval_ms",
    "webhooks.flush_max_rows",
    "webhooks.group_id",
    "webhooks.max_host_connections",
    "webhooks.max_in_flight",
    "webhooks.max_response_bytes",
    "webhooks.max_retry_after_ms",
    "webhooks.retry_jitter_percent",
    "webhooks.retry_schedule",
    "webhooks.rotation_overlap_s",
    "webhooks.ssrf_allow_cidrs",
    "webhooks.ssrf_cache_max",
    "webhooks.ssrf_cache_ms",
    "webhooks.ssrf_guard",
    "webhooks.total_timeout_ms",
};

#define FLEET_KEYS   (sizeof(fleet_keys) / sizeof(fleet_keys[0]))
#define NAME_MAX_LEN 128

/* Tooling namespaces: names the scripts and tests export, never read by a binary. */
static const char *const reserved_prefixes[] = {
    "NUDGEL_TEST_", "NUDGEL_BENCH_", "NUDGEL_DEMO_", "NUDGEL_STACK_", "NUDGEL_SIM_",
};
static const char *const reserved_names[] = {"NUDGEL_CONFIG", "NUDGEL_BUILD_DIR",
                                             "NUDGEL_SOURCE_DIR"};

bool nudgel_conf_fleet_has_key(const char *key)
{
    for (size_t i = 0; i < FLEET_KEYS; i++)
        if (strcmp(fleet_keys[i], key) == 0)
            return true;
    return false;
}

bool nudgel_conf_fleet_has_section(const char *name, size_t len)
{
    for (size_t i = 0; i < FLEET_KEYS; i++)
        if (strncmp(fleet_keys[i], name, len) == 0 && fleet_keys[i][len] == '.')
            return true;
    return false;
}

/* Levenshtein distance of @p a and @p b, capped: anything above 3 is 3. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[NAME_MAX_LEN + 1];
    if (la > NAME_MAX_LEN || lb > NAME_MAX_LEN || (la > lb ? la - lb : lb - la) > 2)
        return 3;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] == b[j - 1] ? 0 : 1);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb] > 3 ? 3 : row[lb];
}

/* The candidate nearest to @p name among the fleet's keys, sections or variables. */
enum { BY_KEY, BY_SECTION, BY_ENV };

static bool suggest(const char *name, int by, char *out, size_t out_size)
{
    size_t best = 3;
    out[0] = '\0';
    for (size_t i = 0; i < FLEET_KEYS; i++) {
        char cand[NAME_MAX_LEN + 16];
        if (by == BY_SECTION)
            snprintf(cand, sizeof(cand), "%.*s", (int)strcspn(fleet_keys[i], "."), fleet_keys[i]);
        else if (by == BY_ENV)
            nudgel_conf_env_name(fleet_keys[i], cand, sizeof(cand));
        else
            snprintf(cand, sizeof(cand), "%s", fleet_keys[i]);
        size_t d = distance(name, cand);
        if (d < best) {
            best = d;
            snprintf(out, out_size, "%s", cand);
        }
    }
    return out[0] != '\0';
}

bool nudgel_conf_fleet_suggest(const char *name, bool section, char *out, size_t out_size)
{
    return suggest(name, section ? BY_SECTION : BY_KEY, out, out_size);
}

bool nudgel_conf_fleet_suggest_env(const char *name, char *out, size_t out_size)
{
    return suggest(name, BY_ENV, out, out_size);
}

nudgel_conf_env_kind_t nudgel_conf_fleet_env_kind(const char *name)
{
    for (size_t i = 0; i < sizeof(reserved_names) / sizeof(reserved_names[0]); i++)
        if (strcmp(name, reserved_names[i]) == 0)
            return NUDGEL_CONF_ENV_RESERVED;
    for (size_t i = 0; i < sizeof(reserved_prefixes) / sizeof(reserved_prefixes[0]); i++)
        if (strncmp(name, reserved_prefixes[i], strlen(reserved_prefixes[i])) == 0)
            return NUDGEL_CONF_ENV_RESERVED;
    for (size_t i = 0; i < FLEET_KEYS; i++) {
        char env[NAME_MAX_LEN + 16];
        nudgel_conf_env_name(fleet_keys[i], env, sizeof(env));
        if (strcmp(env, name) == 0)
            return NUDGEL_CONF_ENV_KEY;
    }
    return NUDGEL_CONF_ENV_UNKNOWN;
}
