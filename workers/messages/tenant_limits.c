/*
 * tenant_limits.c — each tenant's in-flight cap, send rate and burst:
 * nudgel.tenant_limits read again every messages.tenant_limits_refresh_ms
 * (kept sorted for lookup), the configured defaults for a tenant without a
 * row. The last rows read stay in force while Postgres cannot be read.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#include "messages.h"

static int cmp_limit_row(const void *a, const void *b)
{
    return strcmp(((const tenant_limit_row_t *)a)->tenant, ((const tenant_limit_row_t *)b)->tenant);
}

void tenant_limits_refresh(worker_t *w)
{
    int64_t now = nudgel_mono_us();
    if (w->pg_down || now < w->tenant_limits_at_us)
        return;
    w->tenant_limits_at_us = now + w->tenant_limits_every_us;
    PGresult *res = PQexec(w->pg, "SELECT tenant_id, coalesce(max_in_flight, 0), "
                                  "coalesce(send_rate_per_second, 0)::float8, coalesce(burst, 0) "
                                  "FROM nudgel.tenant_limits");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char errstr[256];
        snprintf(errstr, sizeof(errstr), "%s", PQerrorMessage(w->pg));
        PQclear(res);
        if (PQstatus(w->pg) != CONNECTION_OK)
            postgres_down(w, "loading tenant limits", errstr);
        else
            nudgel_log_warn("loading tenant limits: %s; keeping the last ones", errstr);
        return;
    }
    size_t n = (size_t)PQntuples(res);
    tenant_limit_row_t *rows = n ? calloc(n, sizeof(*rows)) : NULL;
    if (n && !rows) {
        PQclear(res);
        return;
    }
    const nudgel_tenant_limits_t *d = &w->tenant_defaults;
    for (size_t i = 0; i < n; i++) {
        snprintf(rows[i].tenant, sizeof(rows[i].tenant), "%s", PQgetvalue(res, (int)i, 0));
        long cap = atol(PQgetvalue(res, (int)i, 1));
        double rate = atof(PQgetvalue(res, (int)i, 2));
        long burst = atol(PQgetvalue(res, (int)i, 3));
        rows[i].limits.max_in_flight = cap > 0 ? (uint32_t)cap : d->max_in_flight;
        rows[i].limits.rate =
            rate > 0 ? (rate > NUDGEL_THROTTLE_RATE_MAX ? NUDGEL_THROTTLE_RATE_MAX : rate)
                     : d->rate;
        rows[i].limits.burst = burst > 0 ? (uint32_t)(burst > (long)NUDGEL_THROTTLE_BURST_MAX
                                                          ? NUDGEL_THROTTLE_BURST_MAX
                                                          : (uint32_t)burst)
                                         : (rate > 0 ? (uint32_t)(rate < 1 ? 1 : rate) : d->burst);
    }
    PQclear(res);
    if (n > 1)
        qsort(rows, n, sizeof(*rows), cmp_limit_row);
    free(w->tenant_limits);
    w->tenant_limits = rows;
    w->tenant_limit_count = n;
}

const nudgel_tenant_limits_t *limits_of(worker_t *w, const char *tenant)
{
    tenant_limit_row_t key;
    snprintf(key.tenant, sizeof(key.tenant), "%s", tenant);
    tenant_limit_row_t *row =
        w->tenant_limit_count
            ? bsearch(&key, w->tenant_limits, w->tenant_limit_count, sizeof(key), cmp_limit_row)
            : NULL;
    return row ? &row->limits : &w->tenant_defaults;
}
