/*
 * pgconn_connect.c — the Postgres connection's life (see nudgel/pgconn.h;
 * the state and its invariants are in pgconn_internal.h): creation and
 * free, the connect state machine (PQconnectStartParams, PQconnectPoll on
 * the socket watch, the attempt's deadline), the back-off between attempts,
 * loss and what it owes the caller, and the server's notices. The statement
 * in flight is pgconn.c.
 *
 * Threads: the loop's thread only.
 */
#define _GNU_SOURCE /* explicit_bzero, strdup */
#include "nudgel/pgconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"
#include "pgconn_internal.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_BACKOFF_MIN_MS     100
#define DEFAULT_BACKOFF_MAX_MS     5000
#define LOG_EVERY_MS               10000 /* one line per connection and kind of line */

static void on_fd(void *opaque, int fd, unsigned events);

/* ---- small helpers ----------------------------------------------------- */

/* "what: message" on one line (libpq's span several, with tabs). */
static void one_line(const char *what, const char *m, char *out, size_t size)
{
    int o = snprintf(out, size, "%s%s", what ? what : "", what ? ": " : "");
    size_t len = o < 0 ? 0 : (size_t)o < size ? (size_t)o : size - 1;
    bool space = false;
    if (!m || !*m)
        m = "unknown error";
    for (; *m && len + 2 < size; m++) {
        if (*m == '\n' || *m == '\r' || *m == '\t' || *m == ' ') {
            space = true;
            continue;
        }
        if (space && len > 0 && out[len - 1] != ' ')
            out[len++] = ' ';
        space = false;
        out[len++] = *m;
    }
    out[len] = '\0';
}

void pgconn_pq_message(PGconn *conn, const char *what, char *out, size_t size)
{
    one_line(what, conn ? PQerrorMessage(conn) : NULL, out, size);
}

/* One line of a noisy kind per LOG_EVERY_MS, named "<connection>: <what>" when lines are held. */
static void limiter_init(nudgel_log_ratelimit_t *rl, char kind[LOG_KIND_MAX], const char *name,
                         const char *what)
{
    snprintf(kind, LOG_KIND_MAX, "%.60s: %s", name, what);
    *rl = (nudgel_log_ratelimit_t)NUDGEL_LOG_RATELIMIT_INIT(kind, 1, LOG_EVERY_MS);
}

/* ---- caller callbacks -------------------------------------------------- */

static void destroy(nudgel_pgconn_t *c)
{
    nudgel_log_ratelimit_flush(&c->log_error, NUDGEL_LOG_ERROR); /* the count is not lost */
    free(c->results);
    if (c->dsn) {
        explicit_bzero(c->dsn, strlen(c->dsn));
        free(c->dsn);
    }
    free(c->application_name);
    free(c->name);
    free(c);
}

bool pgconn_leave(nudgel_pgconn_t *c)
{
    c->depth--;
    if (!c->freed)
        return true;
    if (c->depth == 0)
        destroy(c);
    return false;
}

/* ---- the socket and the connection ------------------------------------- */

/*
 * Watches the connection's socket for @p events. libpq may replace its
 * socket while connecting (another address, a retry without SSL), possibly
 * under the same number, so @p force re-registers it even when nothing
 * seems to have changed. @returns false when the loop refused.
 */
static bool watch_socket(nudgel_pgconn_t *c, unsigned events, bool force)
{
    int fd = PQsocket(c->conn);
    if (fd != c->fd) {
        if (c->fd >= 0)
            nudgel_loop_unwatch(c->loop, c->fd);
        c->fd = fd;
        force = true;
    }
    if (fd < 0)
        return false;
    if (!force && events == c->watched)
        return true;
    if (nudgel_loop_watch(c->loop, fd, events, on_fd, c) != NUDGEL_OK)
        return false;
    c->watched = events;
    return true;
}

/* Unwatches and closes the connection (no callbacks). */
static void drop_conn(nudgel_pgconn_t *c)
{
    if (c->fd >= 0)
        nudgel_loop_unwatch(c->loop, c->fd);
    c->fd = -1;
    c->watched = 0;
    if (c->conn)
        PQfinish(c->conn);
    c->conn = NULL;
}

/* Arms the next attempt after the current back-off, and doubles it (capped). */
static void schedule_attempt(nudgel_pgconn_t *c)
{
    c->state = ST_WAITING;
    nudgel_timer_arm_in(c->timer, c->backoff_us);
    c->backoff_us = c->backoff_us * 2 > c->backoff_max_us ? c->backoff_max_us : c->backoff_us * 2;
}

static void attempt_failed(nudgel_pgconn_t *c, const char *why)
{
    c->failed_attempts++;
    if (!c->trouble) {
        c->trouble = true;
        c->down_since_us = c->stats.last_attempt_us;
    }
    NUDGEL_LOG_LIMITED(&c->log_error, NUDGEL_LOG_ERROR, NULL,
                       "%s: connecting to Postgres (attempt %llu): %s; next attempt in %lld ms",
                       c->name, (unsigned long long)c->failed_attempts, why,
                       (long long)(c->backoff_us / 1000));
    drop_conn(c);
    schedule_attempt(c);
}

void pgconn_lose(nudgel_pgconn_t *c, const char *why, nudgel_err_t owe_err)
{
    c->stats.losses++;
    if (owe_err == NUDGEL_ERR_INVALID_ARG)
        nudgel_log_error("%s: dropping the Postgres connection (a bug in the caller): %s", c->name,
                         why);
    else
        NUDGEL_LOG_LIMITED(&c->log_error, NUDGEL_LOG_ERROR, NULL,
                           "%s: Postgres connection lost: %s; reconnecting in %lld ms", c->name,
                           why, (long long)(c->backoff_us / 1000));
    drop_conn(c);
    if (c->busy) {
        c->owe_done = true;
        c->owe_err = owe_err;
        snprintf(c->owe_why, sizeof(c->owe_why), "%s: %s", c->name, why);
    }
    if (c->reported_up)
        c->owe_down = true;
    c->trouble = true;
    c->down_since_us = nudgel_mono_us();
    c->failed_attempts = 0;
    if (c->owe_done || c->owe_down)
        nudgel_timer_arm_in(c->notify, 0);
    schedule_attempt(c);
}

bool pgconn_update_watch(nudgel_pgconn_t *c)
{
    unsigned events = NUDGEL_LOOP_READ | (c->busy && c->flushing ? NUDGEL_LOOP_WRITE : 0u);
    if (watch_socket(c, events, false))
        return true;
    pgconn_lose(c, "the event loop cannot watch its socket", NUDGEL_ERR_PG_UNREACHABLE);
    return false;
}

/* Pays what a loss owed: the statement's done, then on_state(false). */
static bool pay_debts(nudgel_pgconn_t *c)
{
    if (c->owe_done) {
        c->owe_done = false;
        if (!pgconn_finish_statement(c, c->owe_err, c->owe_why))
            return false;
    }
    if (c->owe_down) {
        c->owe_down = false;
        c->reported_up = false;
        if (c->on_state) {
            c->depth++;
            c->on_state(c->state_opaque, c, false);
            if (!pgconn_leave(c))
                return false;
        }
    }
    return true;
}

static void on_notify(void *opaque)
{
    pay_debts(opaque);
}

/* ---- connecting -------------------------------------------------------- */

/*
 * What the server says besides results (NOTICE, WARNING, and the FATAL of a
 * backend terminated while idle) goes to the JSON log instead of libpq's
 * default, a raw line on stderr: warnings and worse at warn, the rest at
 * debug (warnings rate-limited like the errors).
 */
static void on_notice(void *arg, const PGresult *res)
{
    nudgel_pgconn_t *c = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    bool serious = sev && strcmp(sev, "NOTICE") != 0 && strcmp(sev, "INFO") != 0 &&
                   strcmp(sev, "LOG") != 0 && strncmp(sev, "DEBUG", 5) != 0;
    nudgel_log_level_t level = serious ? NUDGEL_LOG_WARN : NUDGEL_LOG_DEBUG;
    if (level < nudgel_log_threshold)
        return;
    char text[WHY_MAX];
    one_line(NULL, PQresultErrorMessage(res), text, sizeof(text));
    if (serious)
        NUDGEL_LOG_LIMITED(&c->log_notice, level, NULL, "%s: Postgres says: %s", c->name, text);
    else
        NUDGEL_LOG_CTX(level, NULL, "%s: Postgres says: %s", c->name, text);
}

static void start_attempt(nudgel_pgconn_t *c)
{
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *values[] = {c->dsn, c->application_name, NULL};
    char why[WHY_MAX];

    c->stats.attempts++;
    c->stats.last_attempt_us = nudgel_mono_us();
    /* expand_dbname=1: "dbname" holds the whole connection string or URI;
     * application_name, after it, wins over one the DSN may carry. Starts
     * the TCP connect and returns: nothing here waits for the server. */
    c->conn = PQconnectStartParams(keys, values, 1);
    if (!c->conn) {
        attempt_failed(c, "out of memory");
        return;
    }
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        pgconn_pq_message(c->conn, NULL, why, sizeof(why));
        attempt_failed(c, why);
        return;
    }
    PQsetNoticeReceiver(c->conn, on_notice, c);
    c->state = ST_CONNECTING;
    nudgel_timer_arm_in(c->timer, c->connect_timeout_us);
    /* As if PQconnectPoll had said PGRES_POLLING_WRITING (libpq's rule). */
    if (!watch_socket(c, NUDGEL_LOOP_WRITE, true))
        attempt_failed(c, "the event loop cannot watch its socket");
}

/* The attempt has succeeded: up, reported to the caller. */
static void connected(nudgel_pgconn_t *c)
{
    nudgel_timer_disarm(c->timer);
    /* Anything still owed from the last loss goes first, while up() is false. */
    if (!pay_debts(c))
        return;
    c->state = ST_UP;
    c->backoff_us = c->backoff_min_us;
    c->stats.connects++;
    if (c->stats.connects > 1)
        c->stats.reconnects++;
    if (c->trouble)
        NUDGEL_LOG_LIMITED(&c->log_back, NUDGEL_LOG_INFO, NULL,
                           "%s: Postgres connection up again after %.1f s (%llu failed attempt(s))",
                           c->name, (double)(nudgel_mono_us() - c->down_since_us) / 1e6,
                           (unsigned long long)c->failed_attempts);
    else
        nudgel_log_info("%s: Postgres connection up", c->name);
    c->trouble = false;
    c->failed_attempts = 0;
    if (!pgconn_update_watch(c))
        return;
    c->reported_up = true;
    if (c->on_state) {
        c->depth++;
        c->on_state(c->state_opaque, c, true);
        pgconn_leave(c);
    }
}

static void connect_step(nudgel_pgconn_t *c)
{
    char why[WHY_MAX];
    switch (PQconnectPoll(c->conn)) {
    case PGRES_POLLING_READING:
        if (!watch_socket(c, NUDGEL_LOOP_READ, true))
            attempt_failed(c, "the event loop cannot watch its socket");
        return;
    case PGRES_POLLING_WRITING:
    case PGRES_POLLING_ACTIVE: /* unused by libpq; treated as its default */
        if (!watch_socket(c, NUDGEL_LOOP_WRITE, true))
            attempt_failed(c, "the event loop cannot watch its socket");
        return;
    case PGRES_POLLING_FAILED:
        pgconn_pq_message(c->conn, NULL, why, sizeof(why));
        attempt_failed(c, why);
        return;
    case PGRES_POLLING_OK:
        break;
    }
    if (PQsetnonblocking(c->conn, 1) != 0) {
        pgconn_pq_message(c->conn, "non-blocking mode", why, sizeof(why));
        attempt_failed(c, why);
        return;
    }
    connected(c);
}

static void on_timer(void *opaque)
{
    nudgel_pgconn_t *c = opaque;
    char why[128];
    switch (c->state) {
    case ST_WAITING:
        start_attempt(c);
        break;
    case ST_CONNECTING:
        snprintf(why, sizeof(why), "timed out after %lld ms",
                 (long long)(c->connect_timeout_us / 1000));
        attempt_failed(c, why);
        break;
    case ST_UP:
        break;
    }
}

static void on_fd(void *opaque, int fd, unsigned events)
{
    nudgel_pgconn_t *c = opaque;
    (void)fd;
    if (c->state == ST_CONNECTING)
        connect_step(c);
    else if (c->state == ST_UP)
        pgconn_io_step(c, events);
}

/* ---- the API ----------------------------------------------------------- */

/* libpq's own test: a connection string has an "=", a URI its scheme. */
static bool looks_like_conninfo(const char *s)
{
    return strchr(s, '=') || strncmp(s, "postgresql://", 13) == 0 ||
           strncmp(s, "postgres://", 11) == 0;
}

nudgel_err_t nudgel_pgconn_new(nudgel_loop_t *loop, const nudgel_pgconn_options_t *opts,
                               nudgel_pgconn_t **out, char *errstr, size_t errstr_size)
{
    nudgel_err_t err = NUDGEL_OK;
    nudgel_pgconn_t *c = NULL;

    if (!out || !loop || !opts) {
        snprintf(errstr, errstr_size, "pgconn: NULL argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    *out = NULL;
    const char *name = opts->name ? opts->name : "postgres";
    if (opts->connect_timeout_ms < 0 || opts->backoff_min_ms < 0 || opts->backoff_max_ms < 0) {
        snprintf(errstr, errstr_size, "%s: negative timeout or back-off", name);
        return NUDGEL_ERR_INVALID_ARG;
    }
    if (!opts->dsn || !*opts->dsn) {
        snprintf(errstr, errstr_size, "%s: the Postgres DSN is not set", name);
        return NUDGEL_ERR_CONFIG;
    }
    if (looks_like_conninfo(opts->dsn)) {
        char *msg = NULL;
        PQconninfoOption *parsed = PQconninfoParse(opts->dsn, &msg);
        PQfreemem(msg); /* it may quote the DSN */
        if (!parsed) {
            snprintf(errstr, errstr_size,
                     "%s: the Postgres DSN is not a valid connection string (not shown: it may "
                     "hold a password)",
                     name);
            return NUDGEL_ERR_CONFIG;
        }
        PQconninfoFree(parsed);
    }

    c = calloc(1, sizeof(*c));
    if (!c) {
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    c->loop = loop;
    c->fd = -1;
    c->dsn = strdup(opts->dsn);
    c->application_name = strdup(opts->application_name ? opts->application_name : "nudgel");
    c->name = strdup(name);
    limiter_init(&c->log_error, c->kind_error, name, "Postgres errors");
    limiter_init(&c->log_back, c->kind_back, name, "Postgres reconnections");
    limiter_init(&c->log_notice, c->kind_notice, name, "Postgres warnings");
    c->timer = nudgel_timer_new(loop, on_timer, c);
    c->notify = nudgel_timer_new(loop, on_notify, c);
    if (!c->dsn || !c->application_name || !c->name || !c->timer || !c->notify) {
        err = NUDGEL_ERR_NO_MEMORY;
        goto out;
    }
    c->connect_timeout_us =
        (opts->connect_timeout_ms ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS) * 1000;
    c->backoff_min_us =
        (opts->backoff_min_ms ? opts->backoff_min_ms : DEFAULT_BACKOFF_MIN_MS) * 1000;
    c->backoff_max_us =
        (opts->backoff_max_ms ? opts->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS) * 1000;
    if (c->backoff_max_us < c->backoff_min_us)
        c->backoff_max_us = c->backoff_min_us;
    c->backoff_us = c->backoff_min_us;
    c->on_state = opts->on_state;
    c->statement_seconds = opts->statement_seconds;
    nudgel_metric_touch(c->statement_seconds, c->name); /* a zero series from start-up */
    c->state_opaque = opts->opaque;
    c->stats.last_rtt_us = -1;
    c->state = ST_WAITING;
    start_attempt(c);
out:
    if (err != NUDGEL_OK) {
        snprintf(errstr, errstr_size, "%s: %s", name, nudgel_strerror(err));
        if (c) {
            nudgel_timer_free(c->timer);
            nudgel_timer_free(c->notify);
            destroy(c);
        }
        return err;
    }
    *out = c;
    return NUDGEL_OK;
}

void nudgel_pgconn_free(nudgel_pgconn_t *c)
{
    if (!c || c->freed)
        return;
    drop_conn(c);
    nudgel_timer_free(c->timer);
    nudgel_timer_free(c->notify);
    c->timer = c->notify = NULL;
    for (size_t i = 0; i < c->nresults; i++)
        PQclear(c->results[i]);
    c->nresults = 0;
    c->busy = c->owe_done = c->owe_down = false;
    c->done = NULL;
    c->on_state = NULL;
    c->freed = true;
    if (c->depth == 0)
        destroy(c);
}
