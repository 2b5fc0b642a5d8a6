/*
 * test_receipts_pg.c — the receipts store against a real Postgres migrated
 * with nudgel-admin (001 to 004). Needs NUDGEL_PG_DSN; fails at once
 * without it. Every test makes its own tenant ids and UUIDv7 message ids, so
 * it never collides with other data or with a previous run.
 */
#define _POSIX_C_SOURCE 200809L /* pthread barriers, nanosleep */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "nudgel/pg.h"
#include "nudgel/receipts.h"
#include "nudgel/uuid.h"

#define STALE_LONG 600000 /* ms: a claim that is never stale within a test */

static const char *dsn;
static unsigned tenant_seq;

static PGconn *connect_or_fail(void)
{
    char errstr[256];
    PGconn *c = nudgel_pg_connect(dsn, "test_receipts_pg", 5, errstr, sizeof(errstr));
    if (!c)
        fail_msg("connect: %s", errstr);
    return c;
}

static int setup(void **state)
{
    *state = connect_or_fail();
    return 0;
}

static int teardown(void **state)
{
    PQfinish(*state);
    return 0;
}

/* A tenant id no other test or run uses. */
static void new_tenant(char *out, size_t size, const char *tag)
{
    char id[NUDGEL_UUID_STR_LEN + 1];
    nudgel_uuid7_string(id);
    snprintf(out, size, "rc-%s-%u-%.8s%.4s", tag, ++tenant_seq, id + 24, id + 9);
}

static void make_job(nudgel_message_job_t *job, char *id, const char *tenant, const char *key)
{
    memset(job, 0, sizeof(*job));
    if (!id[0])
        nudgel_uuid7_string(id);
    job->id = id;
    job->tenant_id = tenant;
    job->channel = "sms";
    job->to = "+254722000000";
    job->idempotency_key = key;
}

static nudgel_receipt_claim_t claim(PGconn *c, const nudgel_message_job_t *job, const char *worker,
                                    int64_t stale_ms)
{
    nudgel_receipt_claim_t out;
    char errstr[256] = "";
    nudgel_err_t err =
        nudgel_receipts_claim(c, job, "trace-1", worker, stale_ms, &out, errstr, sizeof(errstr));
    if (err != NUDGEL_OK)
        fail_msg("claim: %s", errstr);
    return out;
}

static long long query_int(PGconn *c, const char *sql, const char *p1, const char *p2)
{
    const char *values[2] = {p1, p2};
    PGresult *res = PQexecParams(c, sql, p2 ? 2 : 1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        fail_msg("query: %s", PQerrorMessage(c));
    long long v = PQgetisnull(res, 0, 0) ? -1 : atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static long long history_count(PGconn *c, const char *id)
{
    return query_int(c, "SELECT count(*) FROM nudgel.message_receipt_history WHERE message_id = $1",
                     id, NULL);
}

static long long history_has(PGconn *c, const char *id, const char *edge)
{
    return query_int(c,
                     "SELECT count(*) FROM nudgel.message_receipt_history WHERE message_id = $1 "
                     "AND coalesce(from_status, '') || '>' || to_status = $2",
                     id, edge);
}

/* The hand-over mark of one job by @p worker: @returns whether it was marked. */
static bool mark(PGconn *c, const char *id, const char *worker, const char *gateway)
{
    char errstr[256] = "";
    bool marked = false;
    nudgel_receipt_mark_t mk = {.message_id = id, .gateway = gateway};
    if (nudgel_receipts_mark(c, &mk, 1, worker, &marked, errstr, sizeof(errstr)) != NUDGEL_OK)
        fail_msg("mark: %s", errstr);
    return marked;
}

static void record_ok(PGconn *c, const nudgel_receipt_result_t *r, size_t n,
                      nudgel_receipt_applied_t *out)
{
    char errstr[256] = "";
    if (nudgel_receipts_record(c, r, n, out, errstr, sizeof(errstr)) != NUDGEL_OK)
        fail_msg("record: %s", errstr);
}

/* ---- batched claims and releases ---------------------------------------- */

/*
 * One statement claims a mixed batch exactly as single claims would: fresh
 * jobs, a job another worker holds, a final one, a key reused within the
 * batch (the second is deduplicated) and the same message twice (the second
 * sees the first's claim). Then one statement releases this worker's claims.
 */
static void test_claim_batch_matches_single_claims(void **state)
{
    PGconn *c = *state;
    char tenant[64], errstr[256] = "";
    new_tenant(tenant, sizeof(tenant), "batch");
    enum { N = 7 };
    char ids[N][NUDGEL_UUID_STR_LEN + 1] = {{0}};
    nudgel_message_job_t jobs[N];
    make_job(&jobs[0], ids[0], tenant, NULL);
    make_job(&jobs[1], ids[1], tenant, "key-a");
    make_job(&jobs[2], ids[2], tenant, "key-a"); /* same key, another id */
    make_job(&jobs[3], ids[3], tenant, NULL);    /* held by worker-b */
    make_job(&jobs[4], ids[4], tenant, NULL);    /* already sent */
    make_job(&jobs[5], ids[5], tenant, NULL);
    memcpy(ids[6], ids[5], sizeof(ids[5]));
    make_job(&jobs[6], ids[6], tenant, NULL); /* the same message again */

    assert_int_equal(claim(c, &jobs[3], "worker-b", STALE_LONG).outcome,
                     NUDGEL_RECEIPT_CLAIM_FRESH);
    assert_int_equal(claim(c, &jobs[4], "worker-b", STALE_LONG).outcome,
                     NUDGEL_RECEIPT_CLAIM_FRESH);
    assert_true(mark(c, ids[4], "worker-b", "gw"));
    nudgel_receipt_result_t sent = {
        .message_id = ids[4], .status = NUDGEL_RECEIPT_SENT, .segments = -1};
    nudgel_receipt_applied_t applied;
    record_ok(c, &sent, 1, &applied);

    nudgel_receipt_claim_request_t reqs[N];
    for (int i = 0; i < N; i++)
        reqs[i] = (nudgel_receipt_claim_request_t){.job = &jobs[i], .trace_id = "trace-b"};
    nudgel_receipt_claim_t out[N];
    memset(out, 0xff, sizeof(out));
    if (nudgel_receipts_claim_batch(c, reqs, N, "worker-a", STALE_LONG, out, errstr,
                                    sizeof(errstr)) != NUDGEL_OK)
        fail_msg("claim batch: %s", errstr);
    static const nudgel_receipt_claim_outcome_t want[N] = {
        NUDGEL_RECEIPT_CLAIM_FRESH,         NUDGEL_RECEIPT_CLAIM_FRESH,
        NUDGEL_RECEIPT_CLAIM_DEDUPLICATED,  NUDGEL_RECEIPT_CLAIM_IN_PROGRESS,
        NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL, NUDGEL_RECEIPT_CLAIM_FRESH,
        NUDGEL_RECEIPT_CLAIM_IN_PROGRESS,
    };
    for (int i = 0; i < N; i++)
        if (out[i].outcome != want[i])
            fail_msg("item %d: %s, want %s", i, nudgel_receipt_claim_outcome_name(out[i].outcome),
                     nudgel_receipt_claim_outcome_name(want[i]));
    /* Each result is the row of its own item (the original's for the dedupe). */
    assert_string_equal(out[0].receipt.message_id, ids[0]);
    assert_string_equal(out[2].receipt.message_id, ids[1]);
    assert_string_equal(out[3].receipt.claimed_by, "worker-b");
    assert_int_equal(out[4].receipt.status, NUDGEL_RECEIPT_SENT);
    assert_string_equal(out[5].receipt.claimed_by, "worker-a");
    assert_string_equal(out[5].receipt.trace_id, "trace-b");
    assert_int_equal(query_int(c,
                               "SELECT count(*) FROM nudgel.message_receipts WHERE tenant_id = $1",
                               tenant, NULL),
                     5); /* 0, 1, 3, 4, 5: the deduplicated job has no row */

    /* Release: only worker-a's claims move (0, 1, 5), not worker-b's. */
    const char *rel[] = {ids[0], ids[1], ids[3], ids[4], ids[5]};
    size_t released = 99;
    if (nudgel_receipts_release_batch(c, rel, 5, "worker-a", &released, errstr, sizeof(errstr)) !=
        NUDGEL_OK)
        fail_msg("release batch: %s", errstr);
    assert_int_equal(released, 3);
    /* Released before any hand-over: the next claim resumes it as new. */
    assert_int_equal(claim(c, &jobs[0], "worker-c", STALE_LONG).outcome,
                     NUDGEL_RECEIPT_CLAIM_FRESH);
    assert_int_equal(claim(c, &jobs[3], "worker-c", STALE_LONG).outcome,
                     NUDGEL_RECEIPT_CLAIM_IN_PROGRESS);
    const char *bad[] = {"not-a-uuid"};
    assert_int_equal(
        nudgel_receipts_release_batch(c, bad, 1, "worker-a", NULL, errstr, sizeof(errstr)),
        NUDGEL_ERR_INVALID_ARG);
}

/*
 * Issue 10, item 10: two jobs of one tenant with one idempotency key in one
 * batch — the first in offset order (batch order) has the larger message id.
 * The first one wins (sent), the second is deduplicated against it; before
 * the fix the smallest id won, whatever came first in the topic.
 */
static void test_claim_winner_is_first_in_offset_order(void **state)
{
    PGconn *c = *state;
    char tenant[64], errstr[256] = "";
    char a[NUDGEL_UUID_STR_LEN + 1] = "", b[NUDGEL_UUID_STR_LEN + 1] = "";
    new_tenant(tenant, sizeof(tenant), "order");
    nudgel_uuid7_string(b); /* b first: the smaller UUIDv7 */
    nudgel_uuid7_string(a);
    assert_true(strcmp(a, b) > 0);
    nudgel_message_job_t ja, jb, other;
    make_job(&ja, a, tenant, "order-7"); /* first in the partition, larger id */
    make_job(&jb, b, tenant, "order-7");
    char o[NUDGEL_UUID_STR_LEN + 1] = "";
    make_job(&other, o, tenant, "order-8");
    nudgel_receipt_claim_request_t reqs[3] = {{.job = &ja}, {.job = &other}, {.job = &jb}};
    nudgel_receipt_claim_t out[3];
    if (nudgel_receipts_claim_batch(c, reqs, 3, "worker-a", STALE_LONG, out, errstr,
                                    sizeof(errstr)) != NUDGEL_OK)
        fail_msg("claim batch: %s", errstr);
    assert_int_equal(out[0].outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
    assert_string_equal(out[0].receipt.message_id, a);
    assert_int_equal(out[1].outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
    assert_int_equal(out[2].outcome, NUDGEL_RECEIPT_CLAIM_DEDUPLICATED);
    assert_string_equal(out[2].receipt.message_id, a); /* deduplicated against the first */
    assert_int_equal(query_int(c,
                               "SELECT count(*) FROM nudgel.message_receipts WHERE message_id "
                               "= $1",
                               b, NULL),
                     0);
}

/* The event loop's form: one statement records outcomes and releases claims. */
static void test_record_and_release_in_one_statement(void **state)
{
    PGconn *c = *state;
    char tenant[64], errstr[256] = "";
    new_tenant(tenant, sizeof(tenant), "recrel");
    char a[NUDGEL_UUID_STR_LEN + 1] = "", b[NUDGEL_UUID_STR_LEN + 1] = "";
    nudgel_message_job_t ja, jb;
    make_job(&ja, a, tenant, NULL);
    make_job(&jb, b, tenant, NULL);
    claim(c, &ja, "worker-a", STALE_LONG);
    claim(c, &jb, "worker-a", STALE_LONG);
    assert_true(mark(c, a, "worker-a", "gw"));
    assert_true(mark(c, b, "worker-a", "gw"));
    nudgel_receipt_result_t sent = {.message_id = a,
                                    .status = NUDGEL_RECEIPT_SENT,
                                    .gateway = "gw",
                                    .segments = 1,
                                    .event_id = "ev-1"};
    const char *release[] = {b};
    if (nudgel_receipts_record_send(c, &sent, 1, release, 1, "worker-a", errstr, sizeof(errstr)) !=
        NUDGEL_OK)
        fail_msg("send: %s", errstr);
    PGresult *res = PQgetResult(c);
    nudgel_receipt_applied_t applied;
    assert_int_equal(
        nudgel_receipts_record_read(c, res, &sent, 1, &applied, errstr, sizeof(errstr)), NUDGEL_OK);
    PQclear(res);
    assert_null(PQgetResult(c));
    assert_int_equal(applied.outcome, NUDGEL_RECEIPT_APPLIED);
    assert_int_equal(applied.from, NUDGEL_RECEIPT_SUBMITTING);
    /* b was released: another worker takes it over at once. */
    assert_int_equal(claim(c, &jb, "worker-b", STALE_LONG).outcome,
                     NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE);
    /* Releases alone are a valid statement too (nothing to record). */
    if (nudgel_receipts_record_send(c, NULL, 0, release, 1, "worker-b", errstr, sizeof(errstr)) !=
        NUDGEL_OK)
        fail_msg("send: %s", errstr);
    res = PQgetResult(c);
    assert_int_equal(nudgel_receipts_record_read(c, res, NULL, 0, NULL, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    PQclear(res);
    assert_null(PQgetResult(c));
    assert_int_equal(claim(c, &jb, "worker-c", STALE_LONG).outcome,
                     NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE);
    /* Neither outcomes nor releases: refused. */
    assert_int_equal(nudgel_receipts_record_send(c, NULL, 0, NULL, 0, "w", errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
}

/* ---- the SQL and C tables agree ---------------------------------------- */

static void test_sql_table_matches_c(void **state)
{
    PGconn *c = *state;
    char a[16], b[16];
    for (int from = 0; from < NUDGEL_RECEIPT_STATE_COUNT; from++) {
        for (int to = 0; to < NUDGEL_RECEIPT_STATE_COUNT; to++) {
            snprintf(a, sizeof(a), "%s", nudgel_receipt_state_name((nudgel_receipt_state_t)from));
            snprintf(b, sizeof(b), "%s", nudgel_receipt_state_name((nudgel_receipt_state_t)to));
            long long sql =
                query_int(c, "SELECT nudgel.receipt_transition_allowed($1, $2)::int", a, b);
            bool want = nudgel_receipt_transition_allowed((nudgel_receipt_state_t)from,
                                                          (nudgel_receipt_state_t)to);
            if (sql != (want ? 1 : 0))
                fail_msg("%s -> %s: sql %lld, c %d", a, b, sql, want);
        }
    }
}

/* ---- claim outcomes ---------------------------------------------------- */

static void test_claim_fresh_in_progress_final(void **state)
{
    PGconn *c = *state;
    char tenant[64], id[NUDGEL_UUID_STR_LEN + 1] = "";
    nudgel_message_job_t job;
    new_tenant(tenant, sizeof(tenant), "claim");
    make_job(&job, id, tenant, "key-1");

    nudgel_receipt_claim_t r = claim(c, &job, "worker-a", STALE_LONG);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
    assert_string_equal(r.receipt.message_id, id);
    assert_string_equal(r.receipt.tenant_id, tenant);
    assert_string_equal(r.receipt.idempotency_key, "key-1");
    assert_string_equal(r.receipt.to_e164, "+254722000000");
    /* A lease on a row in accepted: nothing handed to a gateway yet. */
    assert_int_equal(r.receipt.status, NUDGEL_RECEIPT_ACCEPTED);
    assert_int_equal(r.receipt.attempt, 1);
    assert_string_equal(r.receipt.client_ref, id);
    assert_string_equal(r.receipt.claimed_by, "worker-a");
    assert_string_equal(r.receipt.trace_id, "trace-1");
    assert_int_equal(r.receipt.segments, -1);
    assert_true(r.receipt.created_at_ms > 0);
    assert_int_equal(history_has(c, id, ">accepted"), 1);

    /* Another worker, and the same worker, while the claim is fresh. */
    r = claim(c, &job, "worker-b", STALE_LONG);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_IN_PROGRESS);
    assert_string_equal(r.receipt.claimed_by, "worker-a");
    assert_int_equal(r.receipt.attempt, 1);
    r = claim(c, &job, "worker-a", STALE_LONG);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_IN_PROGRESS);
    /* Only the holder marks the hand-over; then it is submitting. */
    assert_false(mark(c, id, "worker-b", "africastalking"));
    assert_true(mark(c, id, "worker-a", "africastalking"));
    assert_int_equal(history_has(c, id, "accepted>submitting"), 1);
    r = claim(c, &job, "worker-b", STALE_LONG);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_IN_PROGRESS);
    assert_int_equal(r.receipt.status, NUDGEL_RECEIPT_SUBMITTING);
    assert_string_equal(r.receipt.gateway, "africastalking");

    /* sent: past sending, the stored fields come back for the event. */
    nudgel_receipt_result_t res = {.message_id = id,
                                   .status = NUDGEL_RECEIPT_SENT,
                                   .gateway = "africastalking",
                                   .gateway_message_id = "ATX-1",
                                   .encoding = "gsm7",
                                   .segments = 1,
                                   .cost_amount = "0.8000",
                                   .cost_currency = "KES"};
    nudgel_receipt_applied_t ap;
    record_ok(c, &res, 1, &ap);
    r = claim(c, &job, "worker-b", 0);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL);
    assert_int_equal(r.receipt.status, NUDGEL_RECEIPT_SENT);
    assert_string_equal(r.receipt.gateway, "africastalking");
    assert_string_equal(r.receipt.gateway_message_id, "ATX-1");
    assert_string_equal(r.receipt.cost_amount, "0.800000");
    assert_string_equal(r.receipt.cost_currency, "KES");
    assert_int_equal(r.receipt.segments, 1);
    assert_true(r.receipt.submitted_at_ms > 0);
    assert_int_equal(r.receipt.final_at_ms, 0);

    res = (nudgel_receipt_result_t){
        .message_id = id, .status = NUDGEL_RECEIPT_DELIVERED, .segments = -1};
    record_ok(c, &res, 1, &ap);
    r = claim(c, &job, "worker-c", 0);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_ALREADY_FINAL);
    assert_int_equal(r.receipt.status, NUDGEL_RECEIPT_DELIVERED);
    assert_true(r.receipt.final_at_ms >= r.receipt.submitted_at_ms);
    assert_int_equal(r.receipt.attempt, 1);
}

static void test_claim_row_in_accepted(void **state)
{
    PGconn *c = *state;
    char tenant[64], id[NUDGEL_UUID_STR_LEN + 1] = "";
    nudgel_message_job_t job;
    new_tenant(tenant, sizeof(tenant), "acc");
    make_job(&job, id, tenant, NULL);
    const char *values[2] = {id, tenant};
    PGresult *pr =
        PQexecParams(c,
                     "INSERT INTO nudgel.message_receipts (message_id, tenant_id, status)"
                     " VALUES ($1, $2, 'accepted')",
                     2, NULL, values, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(pr), PGRES_COMMAND_OK);
    PQclear(pr);
    nudgel_receipt_claim_t r = claim(c, &job, "worker-a", STALE_LONG);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
    /* The claim leases the API tier's row; submitting comes with the hand-over. */
    assert_int_equal(r.receipt.status, NUDGEL_RECEIPT_ACCEPTED);
    assert_int_equal(r.receipt.attempt, 1);
    assert_string_equal(r.receipt.client_ref, id);
    assert_string_equal(r.receipt.claimed_by, "worker-a");
    assert_int_equal(history_has(c, id, "accepted>submitting"), 0);
    assert_true(mark(c, id, "worker-a", "gw"));
    assert_int_equal(history_has(c, id, "accepted>submitting"), 1);
}

/*
 * Issue 10, item 8: a stale lease tells sent from unsent. Claimed and never
 * handed over (accepted): taken over FRESH, no doubt. Handed over
 * (submitting, handed_at): OUTCOME_UNKNOWN, and the doubt stays with the row
 * until a release says the request failed for sure.
 */
static void test_stale_takeover_and_release(void **state)
{
    PGconn *c = *state;
    char tenant[64], id[NUDGEL_UUID_STR_LEN + 1] = "", errstr[256];
    nudgel_message_job_t job;
    struct timespec pause = {.tv_nsec = 60 * 1000 * 1000};
    new_tenant(tenant, sizeof(tenant), "stale");
    make_job(&job, id, tenant, "k");

    assert_int_equal(claim(c, &job, "worker-a", STALE_LONG).outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
    assert_int_equal(claim(c, &job, "worker-b", STALE_LONG).outcome,
                     NUDGEL_RECEIPT_CLAIM_IN_PROGRESS);
    nanosleep(&pause, NULL);
    /* 60 ms old, stale after 20 ms, never handed over: resumed without doubt. */
    nudgel_receipt_claim_t r = claim(c, &job, "worker-b", 20);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
    assert_int_equal(r.receipt.attempt, 2);
    assert_string_equal(r.receipt.client_ref, id);
    assert_string_equal(r.receipt.claimed_by, "worker-b");
    assert_int_equal(r.receipt.status, NUDGEL_RECEIPT_ACCEPTED);
    /* The takeover is fresh again: worker-a (back from a pause) waits, and may not send. */
    assert_int_equal(claim(c, &job, "worker-a", STALE_LONG).outcome,
                     NUDGEL_RECEIPT_CLAIM_IN_PROGRESS);
    assert_false(mark(c, id, "worker-a", "gw-a"));
    /* No history row for a takeover: the status did not change. */
    assert_int_equal(history_count(c, id), 1);

    /* worker-b hands it to gw-b, then dies: the next claim cannot know. */
    assert_true(mark(c, id, "worker-b", "gw-b"));
    assert_int_equal(history_count(c, id), 2);
    nanosleep(&pause, NULL);
    r = claim(c, &job, "worker-c", 20);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_OUTCOME_UNKNOWN);
    assert_int_equal(r.receipt.attempt, 3);
    assert_string_equal(r.receipt.gateway, "gw-b");
    assert_string_equal(r.receipt.claimed_by, "worker-c");
    /* worker-c dies before deciding: the doubt is still there for worker-d. */
    nanosleep(&pause, NULL);
    r = claim(c, &job, "worker-d", 20);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_OUTCOME_UNKNOWN);
    assert_int_equal(r.receipt.attempt, 4);

    /* Release: only by the holder; it ends the doubt, the next claim takes over at once. */
    bool released = true;
    assert_int_equal(nudgel_receipts_release(c, id, "worker-a", &released, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_false(released);
    assert_int_equal(nudgel_receipts_release(c, id, "worker-d", &released, errstr, sizeof(errstr)),
                     NUDGEL_OK);
    assert_true(released);
    r = claim(c, &job, "worker-e", STALE_LONG);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE);
    assert_int_equal(r.receipt.attempt, 5);
    assert_string_equal(r.receipt.client_ref, id);
    /* Stale again before its hand-over: still no request out, still no doubt. */
    nanosleep(&pause, NULL);
    r = claim(c, &job, "worker-f", 20);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_RESUBMIT_STALE);
    assert_true(mark(c, id, "worker-f", "gw-f"));
    assert_int_equal(history_count(c, id), 2); /* accepted, submitting: no status changed since */
}

static void test_dedupe_by_idempotency_key(void **state)
{
    PGconn *c = *state;
    char tenant[64], other[64], x[NUDGEL_UUID_STR_LEN + 1] = "", y[NUDGEL_UUID_STR_LEN + 1] = "";
    char z[NUDGEL_UUID_STR_LEN + 1] = "";
    nudgel_message_job_t jx, jy, jz;
    new_tenant(tenant, sizeof(tenant), "dedupe");
    new_tenant(other, sizeof(other), "dedupe2");
    make_job(&jx, x, tenant, "order-1042");
    make_job(&jy, y, tenant, "order-1042");
    make_job(&jz, z, other, "order-1042");

    assert_int_equal(claim(c, &jx, "worker-a", STALE_LONG).outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
    nudgel_receipt_claim_t r = claim(c, &jy, "worker-b", STALE_LONG);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_DEDUPLICATED);
    assert_string_equal(r.receipt.message_id, x);
    assert_int_equal(query_int(c,
                               "SELECT count(*) FROM nudgel.message_receipts WHERE message_id "
                               "= $1",
                               y, NULL),
                     0);
    /* Still deduplicated once the original is final. */
    nudgel_receipt_result_t res = {.message_id = x,
                                   .status = NUDGEL_RECEIPT_REJECTED,
                                   .error_code = "invalid_sender",
                                   .segments = -1};
    nudgel_receipt_applied_t ap;
    record_ok(c, &res, 1, &ap);
    r = claim(c, &jy, "worker-b", 0);
    assert_int_equal(r.outcome, NUDGEL_RECEIPT_CLAIM_DEDUPLICATED);
    assert_string_equal(r.receipt.message_id, x);
    assert_int_equal(r.receipt.status, NUDGEL_RECEIPT_REJECTED);
    /* The same key in another tenant is another message. */
    assert_int_equal(claim(c, &jz, "worker-a", STALE_LONG).outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
    /* No key: never deduplicated. */
    char n1[NUDGEL_UUID_STR_LEN + 1] = "", n2[NUDGEL_UUID_STR_LEN + 1] = "";
    nudgel_message_job_t j1, j2;
    make_job(&j1, n1, tenant, NULL);
    make_job(&j2, n2, tenant, "");
    assert_int_equal(claim(c, &j1, "worker-a", STALE_LONG).outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
    assert_int_equal(claim(c, &j2, "worker-a", STALE_LONG).outcome, NUDGEL_RECEIPT_CLAIM_FRESH);
}

/* ---- the race -------------------------------------------------------- */

typedef struct racer {
    PGconn *conn;
    pthread_barrier_t *barrier;
    const nudgel_message_job_t *job;
    const char *worker;
    nudgel_err_t err;
    char errstr[256];
    nudgel_receipt_claim_t out;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    pthread_barrier_wait(r->barrier);
    r->err = nudgel_receipts_claim(r->conn, r->job, NULL, r->worker, STALE_LONG, &r->out, r->errstr,
                                   sizeof(r->errstr));
    return NULL;
}

static void test_concurrent_claims(void **state)
{
    (void)state;
    enum { ROUNDS = 60 };
    PGconn *c1 = connect_or_fail(), *c2 = connect_or_fail();
    pthread_barrier_t barrier;
    char tenant[64];
    new_tenant(tenant, sizeof(tenant), "race");
    for (int round = 0; round < 2 * ROUNDS; round++) {
        /* Even rounds: one message claimed twice. Odd rounds: two messages with one key. */
        bool same_id = round % 2 == 0;
        char id1[NUDGEL_UUID_STR_LEN + 1] = "", id2[NUDGEL_UUID_STR_LEN + 1] = "", key[32];
        snprintf(key, sizeof(key), "race-%d", round);
        nudgel_message_job_t j1, j2;
        make_job(&j1, id1, tenant, key);
        if (same_id)
            memcpy(id2, id1, sizeof(id2));
        make_job(&j2, id2, tenant, key);
        pthread_barrier_init(&barrier, NULL, 2);
        racer_t r1 = {.conn = c1, .barrier = &barrier, .job = &j1, .worker = "racer-1"};
        racer_t r2 = {.conn = c2, .barrier = &barrier, .job = &j2, .worker = "racer-2"};
        pthread_t t1, t2;
        assert_int_equal(pthread_create(&t1, NULL, race, &r1), 0);
        assert_int_equal(pthread_create(&t2, NULL, race, &r2), 0);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        pthread_barrier_destroy(&barrier);
        if (r1.err != NUDGEL_OK || r2.err != NUDGEL_OK)
            fail_msg("round %d: %s / %s", round, r1.errstr, r2.errstr);
        int fresh = (r1.out.outcome == NUDGEL_RECEIPT_CLAIM_FRESH) +
                    (r2.out.outcome == NUDGEL_RECEIPT_CLAIM_FRESH);
        if (fresh != 1)
            fail_msg("round %d: %d fresh claims (%s, %s)", round, fresh,
                     nudgel_receipt_claim_outcome_name(r1.out.outcome),
                     nudgel_receipt_claim_outcome_name(r2.out.outcome));
        racer_t *loser = r1.out.outcome == NUDGEL_RECEIPT_CLAIM_FRESH ? &r2 : &r1;
        racer_t *winner = loser == &r1 ? &r2 : &r1;
        assert_int_equal(loser->out.outcome, same_id ? NUDGEL_RECEIPT_CLAIM_IN_PROGRESS
                                                     : NUDGEL_RECEIPT_CLAIM_DEDUPLICATED);
        assert_string_equal(loser->out.receipt.message_id, winner->out.receipt.message_id);
        assert_string_equal(loser->out.receipt.message_id, winner->job->id);
    }
    PQfinish(c1);
    PQfinish(c2);
}

/* ---- record ----------------------------------------------------------- */

static void test_record_batches_forward_only(void **state)
{
    PGconn *c = *state;
    char tenant[64], errstr[256];
    char id[3][NUDGEL_UUID_STR_LEN + 1] = {"", "", ""};
    char missing[NUDGEL_UUID_STR_LEN + 1];
    nudgel_message_job_t job;
    new_tenant(tenant, sizeof(tenant), "record");
    for (int i = 0; i < 3; i++) {
        make_job(&job, id[i], tenant, NULL);
        assert_int_equal(claim(c, &job, "worker-a", STALE_LONG).outcome,
                         NUDGEL_RECEIPT_CLAIM_FRESH);
        assert_true(mark(c, id[i], "worker-a", "gw"));
    }
    nudgel_uuid7_string(missing);

    const nudgel_receipt_result_t b1[] = {
        {.message_id = id[0],
         .status = NUDGEL_RECEIPT_SENT,
         .gateway = "gw",
         .gateway_message_id = "m0",
         .encoding = "ucs2",
         .segments = 2,
         .cost_amount = "1.5",
         .cost_currency = "NGN",
         .event_id = "ev-0-sent"},
        {.message_id = id[1],
         .status = NUDGEL_RECEIPT_FAILED,
         .gateway = "gw",
         .error_code = "invalid_number",
         .error_message = "no such subscriber",
         .segments = -1},
        {.message_id = id[2],
         .status = NUDGEL_RECEIPT_SENT,
         .gateway = "gw",
         .gateway_message_id = "m2",
         .segments = 1},
    };
    nudgel_receipt_applied_t o[4];
    record_ok(c, b1, 3, o);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o[i].outcome, NUDGEL_RECEIPT_APPLIED);
        assert_int_equal(o[i].from, NUDGEL_RECEIPT_SUBMITTING);
        assert_int_equal(o[i].now, b1[i].status);
    }
    assert_int_equal(query_int(c,
                               "SELECT (submitted_at IS NOT NULL AND final_at IS NOT NULL "
                               "AND error_code = 'invalid_number')::int "
                               "FROM nudgel.message_receipts WHERE message_id = $1",
                               id[1], NULL),
                     1);

    const nudgel_receipt_result_t b2[] = {
        {.message_id = id[0],
         .status = NUDGEL_RECEIPT_DELIVERED,
         .segments = -1,
         .event_id = "ev-0-delivered"},
        {.message_id = missing, .status = NUDGEL_RECEIPT_SENT, .segments = -1},
        {.message_id = id[2], .status = NUDGEL_RECEIPT_EXPIRED, .segments = -1},
    };
    record_ok(c, b2, 3, o);
    assert_int_equal(o[0].outcome, NUDGEL_RECEIPT_APPLIED);
    assert_int_equal(o[0].from, NUDGEL_RECEIPT_SENT);
    assert_int_equal(o[1].outcome, NUDGEL_RECEIPT_NOT_FOUND);
    assert_int_equal(o[2].outcome, NUDGEL_RECEIPT_APPLIED);

    /* Late writers: a sent after delivered, a sent after failed, delivered after expired. */
    const nudgel_receipt_result_t late[] = {
        {.message_id = id[0],
         .status = NUDGEL_RECEIPT_SENT,
         .gateway = "late",
         .gateway_message_id = "late",
         .segments = 9},
        {.message_id = id[1], .status = NUDGEL_RECEIPT_SENT, .segments = -1},
        {.message_id = id[2], .status = NUDGEL_RECEIPT_DELIVERED, .segments = -1},
        {.message_id = id[0], .status = NUDGEL_RECEIPT_DELIVERED, .segments = -1},
    };
    /* One message twice in a batch is refused before any SQL. */
    assert_int_equal(nudgel_receipts_record(c, late, 4, o, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    record_ok(c, late, 3, o);
    assert_int_equal(o[0].outcome, NUDGEL_RECEIPT_REFUSED);
    assert_int_equal(o[0].now, NUDGEL_RECEIPT_DELIVERED);
    assert_int_equal(o[1].outcome, NUDGEL_RECEIPT_REFUSED);
    assert_int_equal(o[1].now, NUDGEL_RECEIPT_FAILED);
    assert_int_equal(o[2].outcome, NUDGEL_RECEIPT_REFUSED);
    assert_int_equal(o[2].now, NUDGEL_RECEIPT_EXPIRED);
    /* Nothing of the late write reached the row. */
    assert_int_equal(query_int(c,
                               "SELECT (status = 'delivered' AND gateway = 'gw' AND "
                               "gateway_message_id = 'm0' AND segments = 2 AND encoding = 'ucs2' "
                               "AND cost_amount = 1.5 AND cost_currency = 'NGN')::int "
                               "FROM nudgel.message_receipts WHERE message_id = $1",
                               id[0], NULL),
                     1);

    /* History: one row per transition; a replay adds none. */
    assert_int_equal(history_count(c, id[0]), 4);
    assert_int_equal(history_has(c, id[0], ">accepted"), 1);
    assert_int_equal(history_has(c, id[0], "accepted>submitting"), 1);
    assert_int_equal(history_has(c, id[0], "submitting>sent"), 1);
    assert_int_equal(history_has(c, id[0], "sent>delivered"), 1);
    assert_int_equal(query_int(c,
                               "SELECT count(*) FROM nudgel.message_receipt_history WHERE "
                               "message_id = $1 AND event_id = $2",
                               id[0], "ev-0-delivered"),
                     1);
    assert_int_equal(history_count(c, id[1]), 3);
    assert_int_equal(history_count(c, id[2]), 4);
    record_ok(c, b1, 3, o);
    for (int i = 0; i < 3; i++)
        assert_int_equal(o[i].outcome, i == 1 ? NUDGEL_RECEIPT_UNCHANGED : NUDGEL_RECEIPT_REFUSED);
    record_ok(c, b2, 3, o);
    assert_int_equal(o[0].outcome, NUDGEL_RECEIPT_UNCHANGED);
    assert_int_equal(o[2].outcome, NUDGEL_RECEIPT_UNCHANGED);
    assert_int_equal(history_count(c, id[0]), 4);
    assert_int_equal(history_count(c, id[1]), 3);
    assert_int_equal(history_count(c, id[2]), 4);
}

static void test_record_large_batch(void **state)
{
    PGconn *c = *state;
    enum { N = 200 };
    char tenant[64];
    static char ids[N][NUDGEL_UUID_STR_LEN + 1];
    nudgel_receipt_result_t res[N];
    nudgel_receipt_applied_t o[N];
    nudgel_receipt_mark_t marks[N];
    bool marked[N];
    char errstr[256] = "";
    nudgel_message_job_t job;
    new_tenant(tenant, sizeof(tenant), "bulk");
    for (int i = 0; i < N; i++) {
        ids[i][0] = '\0';
        make_job(&job, ids[i], tenant, NULL);
        assert_int_equal(claim(c, &job, "worker-a", STALE_LONG).outcome,
                         NUDGEL_RECEIPT_CLAIM_FRESH);
        res[i] = (nudgel_receipt_result_t){.message_id = ids[i],
                                           .status = NUDGEL_RECEIPT_SENT,
                                           .gateway = "gw",
                                           .gateway_message_id = ids[i],
                                           .segments = 1};
        marks[i] = (nudgel_receipt_mark_t){.message_id = ids[i], .gateway = "gw"};
    }
    /* One statement hands the whole batch over. */
    if (nudgel_receipts_mark(c, marks, N, "worker-a", marked, errstr, sizeof(errstr)) != NUDGEL_OK)
        fail_msg("mark: %s", errstr);
    for (int i = 0; i < N; i++)
        assert_true(marked[i]);
    record_ok(c, res, N, o);
    for (int i = 0; i < N; i++)
        assert_int_equal(o[i].outcome, NUDGEL_RECEIPT_APPLIED);
    assert_int_equal(query_int(c,
                               "SELECT count(*) FROM nudgel.message_receipts WHERE tenant_id = $1 "
                               "AND status = 'sent'",
                               tenant, NULL),
                     N);
}

/* ---- DLR ------------------------------------------------------------- */

static void test_apply_dlr_forward_only(void **state)
{
    PGconn *c = *state;
    char tenant[64], id[NUDGEL_UUID_STR_LEN + 1] = "", gmid[64], errstr[256];
    nudgel_message_job_t job;
    new_tenant(tenant, sizeof(tenant), "dlr");
    make_job(&job, id, tenant, NULL);
    snprintf(gmid, sizeof(gmid), "GW-%s", id);
    assert_int_equal(claim(c, &job, "worker-a", STALE_LONG).outcome, NUDGEL_RECEIPT_CLAIM_FRESH);

    nudgel_receipt_dlr_t dlr = {.gateway = "infobip",
                                .gateway_message_id = gmid,
                                .status = NUDGEL_RECEIPT_DELIVERED,
                                .event_id = "ev-dlr"};
    nudgel_receipt_dlr_outcome_t out;
    /* Before the result write there is no gateway id: not found (the caller parks it). */
    assert_int_equal(nudgel_receipts_apply_dlr(c, &dlr, &out, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(out.outcome, NUDGEL_RECEIPT_NOT_FOUND);
    assert_int_equal(out.matched, 0);

    assert_true(mark(c, id, "worker-a", "infobip"));
    nudgel_receipt_result_t res = {.message_id = id,
                                   .status = NUDGEL_RECEIPT_SENT,
                                   .gateway = "infobip",
                                   .gateway_message_id = gmid,
                                   .segments = 1};
    nudgel_receipt_applied_t ap;
    record_ok(c, &res, 1, &ap);

    assert_int_equal(nudgel_receipts_apply_dlr(c, &dlr, &out, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(out.outcome, NUDGEL_RECEIPT_APPLIED);
    assert_int_equal(out.matched, 1);
    assert_int_equal(out.from, NUDGEL_RECEIPT_SENT);
    assert_int_equal(out.now, NUDGEL_RECEIPT_DELIVERED);
    assert_string_equal(out.message_id, id);
    assert_string_equal(out.tenant_id, tenant);
    /* Repeated DLR: unchanged. A late undelivered: refused. */
    assert_int_equal(nudgel_receipts_apply_dlr(c, &dlr, &out, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(out.outcome, NUDGEL_RECEIPT_UNCHANGED);
    dlr.status = NUDGEL_RECEIPT_UNDELIVERED;
    dlr.error_code = "absent_subscriber";
    assert_int_equal(nudgel_receipts_apply_dlr(c, &dlr, &out, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(out.outcome, NUDGEL_RECEIPT_REFUSED);
    assert_int_equal(out.now, NUDGEL_RECEIPT_DELIVERED);
    assert_int_equal(query_int(c,
                               "SELECT (status = 'delivered' AND error_code IS NULL AND final_at "
                               "IS NOT NULL)::int FROM nudgel.message_receipts WHERE message_id "
                               "= $1",
                               id, NULL),
                     1);
    assert_int_equal(history_count(c, id), 4);
    assert_int_equal(history_has(c, id, "sent>delivered"), 1);
    /* Another gateway with the same id: not ours. */
    dlr.gateway = "twilio";
    assert_int_equal(nudgel_receipts_apply_dlr(c, &dlr, &out, errstr, sizeof(errstr)), NUDGEL_OK);
    assert_int_equal(out.outcome, NUDGEL_RECEIPT_NOT_FOUND);
}

/* ---- the trigger and errors -------------------------------------------- */

static void test_trigger_refuses_backwards_update(void **state)
{
    PGconn *c = *state;
    char tenant[64], id[NUDGEL_UUID_STR_LEN + 1] = "";
    nudgel_message_job_t job;
    new_tenant(tenant, sizeof(tenant), "trig");
    make_job(&job, id, tenant, NULL);
    claim(c, &job, "worker-a", STALE_LONG);
    nudgel_receipt_result_t res = {
        .message_id = id, .status = NUDGEL_RECEIPT_FAILED, .segments = -1};
    nudgel_receipt_applied_t ap;
    record_ok(c, &res, 1, &ap);
    const char *values[1] = {id};
    PGresult *r = PQexecParams(c,
                               "UPDATE nudgel.message_receipts SET status = 'submitting' "
                               "WHERE message_id = $1",
                               1, NULL, values, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514");
    PQclear(r);
}

static void test_error_classes(void **state)
{
    PGconn *c = *state;
    char tenant[64], id[NUDGEL_UUID_STR_LEN + 1] = "", errstr[256];
    nudgel_message_job_t job;
    nudgel_receipt_claim_t out;
    nudgel_receipt_applied_t ap;
    new_tenant(tenant, sizeof(tenant), "err");
    make_job(&job, id, tenant, NULL);
    claim(c, &job, "worker-a", STALE_LONG);
    assert_true(mark(c, id, "worker-a", "gw"));

    /* A constraint: encoding must be gsm7 or ucs2. */
    nudgel_receipt_result_t res = {
        .message_id = id, .status = NUDGEL_RECEIPT_SENT, .encoding = "utf8", .segments = -1};
    assert_int_equal(nudgel_receipts_record(c, &res, 1, &ap, errstr, sizeof(errstr)),
                     NUDGEL_ERR_PG);
    assert_non_null(strstr(errstr, "encoding"));
    /* Nothing of the failed batch was written. */
    assert_int_equal(claim(c, &job, "worker-b", STALE_LONG).outcome,
                     NUDGEL_RECEIPT_CLAIM_IN_PROGRESS);
    /* SQL error: not a UUID. */
    char bad[NUDGEL_UUID_STR_LEN + 1] = "not-a-uuid";
    nudgel_message_job_t jb;
    make_job(&jb, bad, tenant, NULL);
    assert_int_equal(nudgel_receipts_claim(c, &jb, NULL, "w", 0, &out, errstr, sizeof(errstr)),
                     NUDGEL_ERR_PG);
    /* Arguments. */
    assert_int_equal(nudgel_receipts_claim(c, &job, NULL, "", 0, &out, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);
    assert_int_equal(nudgel_receipts_record(c, &res, 0, &ap, errstr, sizeof(errstr)),
                     NUDGEL_ERR_INVALID_ARG);

    /* A connection the server ended: unreachable, retriable. */
    PGconn *doomed = connect_or_fail();
    PGresult *r = PQexec(doomed, "SELECT pg_terminate_backend(pg_backend_pid())");
    PQclear(r);
    assert_int_equal(
        nudgel_receipts_claim(doomed, &job, NULL, "w", 0, &out, errstr, sizeof(errstr)),
        NUDGEL_ERR_PG_UNREACHABLE);
    assert_int_equal(nudgel_err_class(NUDGEL_ERR_PG_UNREACHABLE), NUDGEL_ERRCLASS_RETRIABLE);
    assert_null(strstr(errstr, "postgresql://"));
    PQfinish(doomed);
}

int main(void)
{
    dsn = getenv("NUDGEL_PG_DSN");
    if (!dsn || !*dsn) {
        fprintf(stderr, "test_receipts_pg: NUDGEL_PG_DSN is not set; this integration test "
                        "needs a Postgres migrated with nudgel-admin (scripts/stack up)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sql_table_matches_c, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_fresh_in_progress_final, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_row_in_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_takeover_and_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_by_idempotency_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_claims, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_claim_batch_matches_single_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_winner_is_first_in_offset_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_record_and_release_in_one_statement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_batches_forward_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_large_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_dlr_forward_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trigger_refuses_backwards_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_classes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
