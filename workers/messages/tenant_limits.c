/*
 * tenant_limits.c — each tenant's in-flight cap, send rate and burst:
 * nudgel.tenant_limits read on the "lookups" connection when it first comes
 * up (intake waits for that first read: postgres_update()) and again every
 * messages.tenant_limits_refresh_ms (a loop timer), kept sorted for lookup;
 * the configured defaults for a tenant without a row. The last rows read
 * stay in force while Postgres cannot be read: a read whose connection is
 * lost stays queued until it is back.
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

static nudgel_err_t limits_send(worker_t *w, lookup_t *lk, PGconn *conn, char *errstr,
                                size_t errstr_size)
{
    (void)w;
    (void)lk;
    if (PQsendQueryParams(conn,
                          "SELECT tenant_id, coalesce(max_in_flight, 0), "
                          "coalesce(send_rate_per_second, 0)::float8, coalesce(burst, 0) "
                          "FROM nudgel.tenant_limits",
                          0, NULL, NULL, NULL, NULL, 0))
        return NUDGEL_OK;
    snprintf(errstr, errstr_size, "loading tenant limits: %s", PQerrorMessage(conn));
    return NUDGEL_ERR_PG_UNREACHABLE;
}

/* The rows of @p res with the defaults filled in, sorted; NULL (and @p *n 0) when none. */
static tenant_limit_row_t *read_rows(worker_t *w, const PGresult *res, size_t *n)
{
    *n = (size_t)PQntuples(res);
    tenant_limit_row_t *rows = *n ? calloc(*n, sizeof(*rows)) : NULL;
    if (!rows) {
        *n = 0;
        return NULL;
    }
    const nudgel_tenant_limits_t *d = &w->tenant_defaults;
    for (size_t i = 0; i < *n; i++) {
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
    if (*n > 1)
        qsort(rows, *n, sizeof(*rows), cmp_limit_row);
    return rows;
}

static void limits_done(worker_t *w, lookup_t *lk, PGconn *conn, const PGresult *res,
                        nudgel_err_t err, const char *errstr)
{
    (void)conn;
    free(lk);
    w->limits_pending = false;
    if (err == NUDGEL_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        nudgel_log_warn("loading tenant limits: %s; keeping the last ones",
                        PQresultErrorMessage(res));
    } else if (err != NUDGEL_OK) {
        nudgel_log_warn("loading tenant limits: %s; keeping the last ones", errstr);
    } else {
        size_t n;
        tenant_limit_row_t *rows = read_rows(w, res, &n);
        if (rows || PQntuples(res) == 0) {
            free(w->tenant_limits);
            w->tenant_limits = rows;
            w->tenant_limit_count = n;
            gates_limits_changed(w);
        }
    }
    if (!w->limits_loaded) {
        /* Read once (or given up on with the defaults): intake may start. */
        w->limits_loaded = true;
        postgres_update(w);
    }
}

void tenant_limits_refresh(worker_t *w)
{
    if (w->limits_pending)
        return;
    lookup_t *lk = calloc(1, sizeof(*lk));
    if (!lk)
        return; /* the next refresh tries again */
    lk->what = "loading tenant limits";
    lk->send = limits_send;
    lk->done = limits_done;
    w->limits_pending = true;
    lookups_push(w, lk);
}

static void on_refresh(void *opaque)
{
    worker_t *w = opaque;
    tenant_limits_refresh(w);
    nudgel_timer_arm_in(w->limits_timer, w->tenant_limits_every_us);
}

nudgel_err_t tenant_limits_open(worker_t *w, char *errstr, size_t errstr_size)
{
    if (!(w->limits_timer = nudgel_timer_new(w->loop, on_refresh, w))) {
        snprintf(errstr, errstr_size, "out of memory");
        return NUDGEL_ERR_NO_MEMORY;
    }
    tenant_limits_refresh(w); /* sent as soon as the lookups connection is up */
    nudgel_timer_arm_in(w->limits_timer, w->tenant_limits_every_us);
    return NUDGEL_OK;
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
