/*
 * sim_ledger.c — see sim_ledger.h.
 */
#define _GNU_SOURCE
#include "sim_ledger.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "nudgel/timeutil.h"

#define LEDGER_SHARDS          64
#define LEDGER_INITIAL_BUCKETS 1024
#define LEDGER_MAX_KEY         512 /* longer keys are cut; clients never send such refs */

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    int64_t first_ms, last_ms;
    uint32_t accepted, faults;
    uint8_t dialects; /* bit per sim_dialect_t */
    uint8_t first_dialect;
    uint8_t dlr;           /* sim_dlr_outcome_t of the latest acceptance */
    uint8_t dlr_reports;   /* reports queued for the key, saturating at 255 */
    bool dlr_from_request; /* the report URL came with the submission */
    uint16_t key_len, number_len;
    char data[]; /* key NUL number NUL message_id NUL */
} entry_t;

typedef struct shard {
    pthread_mutex_t lock;
    entry_t **buckets;
    size_t bucket_count; /* a power of two */
    size_t count;
} shard_t;

struct sim_ledger {
    shard_t shards[LEDGER_SHARDS];
    size_t max_keys;
    atomic_size_t keys;
    atomic_uint_fast64_t duplicates;
    atomic_uint_fast64_t counters[SIM_DIALECT_COUNT + 1][SIM_C_COUNT];
};

const char *sim_counter_name(sim_counter_t c)
{
    switch (c) {
    case SIM_C_REQUESTS:
        return "requests";
    case SIM_C_MESSAGES:
        return "messages";
    case SIM_C_ACCEPTED:
        return "accepted";
    case SIM_C_SMS:
        return "sms";
    case SIM_C_DUPLICATE_ATTEMPTS:
        return "duplicate_attempts";
    case SIM_C_REJECTED:
        return "rejected";
    case SIM_C_UNAUTHORIZED:
        return "unauthorized";
    case SIM_C_BAD_REQUEST:
        return "bad_request";
    case SIM_C_FAULT_5XX:
        return "5xx";
    case SIM_C_FAULT_429:
        return "429";
    case SIM_C_FAULT_TIMEOUT:
        return "timeout";
    case SIM_C_FAULT_THROTTLED:
        return "throttled";
    case SIM_C_LEDGER_FULL:
        return "ledger_full";
    case SIM_C_DLR_QUEUED:
        return "queued";
    case SIM_C_DLR_SENT:
        return "sent";
    case SIM_C_DLR_FAILED:
        return "failed";
    case SIM_C_DLR_DROPPED:
        return "dropped";
    case SIM_C_DLR_RETRIED:
        return "retried";
    case SIM_C_DLR_WITHHELD:
        return "withheld";
    case SIM_C_DLR_DUPLICATED:
        return "duplicated";
    case SIM_C_COUNT:
        break;
    }
    return "unknown";
}

static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a finaliser for the shard bits */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

sim_ledger_t *sim_ledger_new(size_t max_keys)
{
    sim_ledger_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->max_keys = max_keys;
    for (size_t i = 0; i < LEDGER_SHARDS; i++) {
        pthread_mutex_init(&l->shards[i].lock, NULL);
        l->shards[i].bucket_count = LEDGER_INITIAL_BUCKETS / LEDGER_SHARDS;
        l->shards[i].buckets = calloc(l->shards[i].bucket_count, sizeof(entry_t *));
        if (!l->shards[i].buckets) {
            sim_ledger_destroy(l);
            return NULL;
        }
    }
    return l;
}

static void shard_clear(shard_t *s)
{
    for (size_t b = 0; b < s->bucket_count; b++) {
        entry_t *e = s->buckets[b];
        while (e) {
            entry_t *next = e->next;
            free(e);
            e = next;
        }
        s->buckets[b] = NULL;
    }
    s->count = 0;
}

void sim_ledger_destroy(sim_ledger_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < LEDGER_SHARDS; i++) {
        if (l->shards[i].buckets)
            shard_clear(&l->shards[i]);
        free(l->shards[i].buckets);
        pthread_mutex_destroy(&l->shards[i].lock);
    }
    free(l);
}

void sim_ledger_count(sim_ledger_t *l, sim_dialect_t d, sim_counter_t c, uint64_t n)
{
    size_t row = d < SIM_DIALECT_COUNT ? (size_t)d : SIM_DIALECT_COUNT;
    atomic_fetch_add_explicit(&l->counters[row][c], n, memory_order_relaxed);
}

uint64_t sim_ledger_total(const sim_ledger_t *l, sim_counter_t c)
{
    uint64_t sum = 0;
    for (size_t row = 0; row <= SIM_DIALECT_COUNT; row++)
        sum += atomic_load_explicit(&l->counters[row][c], memory_order_relaxed);
    return sum;
}

uint64_t sim_ledger_duplicates(const sim_ledger_t *l)
{
    return atomic_load_explicit(&l->duplicates, memory_order_relaxed);
}

size_t sim_ledger_key_count(const sim_ledger_t *l)
{
    return atomic_load_explicit(&l->keys, memory_order_relaxed);
}

/* Doubles the bucket array; keeps the old one on allocation failure. Shard locked. */
static void shard_grow(shard_t *s)
{
    size_t count = s->bucket_count * 2;
    entry_t **buckets = calloc(count, sizeof(entry_t *));
    if (!buckets)
        return;
    for (size_t b = 0; b < s->bucket_count; b++) {
        entry_t *e = s->buckets[b];
        while (e) {
            entry_t *next = e->next;
            size_t nb = (size_t)(e->hash & (count - 1));
            e->next = buckets[nb];
            buckets[nb] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = buckets;
    s->bucket_count = count;
}

/*
 * Finds @p key, creating it when @p create and there is room. Shard locked.
 * @returns the slot holding the entry (valid until the shard changes), or
 * NULL (absent, full or out of memory; *full says which).
 */
static entry_t **shard_find(sim_ledger_t *l, shard_t *s, uint64_t h, const char *key,
                            size_t key_len, bool create, sim_dialect_t d, const char *number,
                            const char *message_id, int64_t now_ms, bool *full)
{
    size_t b = (size_t)(h & (s->bucket_count - 1));
    *full = false;
    for (entry_t **slot = &s->buckets[b]; *slot; slot = &(*slot)->next)
        if ((*slot)->hash == h && (*slot)->key_len == key_len &&
            memcmp((*slot)->data, key, key_len) == 0)
            return slot;
    if (!create)
        return NULL;
    size_t prev = atomic_fetch_add_explicit(&l->keys, 1, memory_order_relaxed);
    if (prev >= l->max_keys) {
        atomic_fetch_sub_explicit(&l->keys, 1, memory_order_relaxed);
        *full = true;
        return NULL;
    }
    size_t number_len = strnlen(number, 64), id_len = strnlen(message_id, 255);
    entry_t *e = malloc(sizeof(*e) + key_len + number_len + id_len + 3);
    if (!e) {
        atomic_fetch_sub_explicit(&l->keys, 1, memory_order_relaxed);
        return NULL;
    }
    e->hash = h;
    e->first_ms = e->last_ms = now_ms;
    e->accepted = e->faults = 0;
    e->dialects = (uint8_t)(1u << d);
    e->first_dialect = (uint8_t)d;
    e->dlr = SIM_DLR_UNSET;
    e->dlr_reports = 0;
    e->dlr_from_request = false;
    e->key_len = (uint16_t)key_len;
    e->number_len = (uint16_t)number_len;
    memcpy(e->data, key, key_len);
    e->data[key_len] = '\0';
    memcpy(e->data + key_len + 1, number, number_len);
    e->data[key_len + 1 + number_len] = '\0';
    memcpy(e->data + key_len + number_len + 2, message_id, id_len);
    e->data[key_len + number_len + 2 + id_len] = '\0';
    if (s->count + 1 > s->bucket_count) {
        shard_grow(s);
        b = (size_t)(h & (s->bucket_count - 1));
    }
    e->next = s->buckets[b];
    s->buckets[b] = e;
    s->count++;
    return &s->buckets[b];
}

/* Gives the entry in @p slot a new message id (a key first seen through a fault). */
static void entry_set_message_id(entry_t **slot, const char *message_id)
{
    entry_t *old = *slot;
    size_t id_len = strnlen(message_id, 255);
    size_t head = offsetof(entry_t, data) + old->key_len + old->number_len + 2;
    entry_t *e = malloc(head + id_len + 1);
    if (!e)
        return;
    memcpy(e, old, head);
    memcpy((char *)e + head, message_id, id_len);
    ((char *)e)[head + id_len] = '\0';
    *slot = e;
    free(old);
}

static const char *entry_number(const entry_t *e)
{
    return e->data + e->key_len + 1;
}

static const char *entry_message_id(const entry_t *e)
{
    return e->data + e->key_len + e->number_len + 2;
}

int sim_ledger_accept(sim_ledger_t *l, sim_dialect_t d, const char *key, const char *number,
                      const char *message_id, bool idempotent, int64_t now_ms,
                      sim_accept_result_t *result)
{
    size_t key_len = strnlen(key, LEDGER_MAX_KEY);
    uint64_t h = hash_key(key, key_len);
    shard_t *s = &l->shards[h >> 58];
    bool full;
    uint32_t count = 0;

    sim_ledger_count(l, d, SIM_C_ACCEPTED, 1);
    pthread_mutex_lock(&s->lock);
    entry_t **slot = shard_find(l, s, h, key, key_len, true, d, number, message_id, now_ms, &full);
    entry_t *e = slot ? *slot : NULL;
    if (e) {
        if (e->accepted == 0 && strcmp(entry_message_id(e), message_id) != 0) {
            entry_set_message_id(slot, message_id); /* first seen through a fault */
            e = *slot;
        }
        count = ++e->accepted;
        e->last_ms = now_ms;
        e->dialects |= (uint8_t)(1u << d);
        snprintf(result->message_id, sizeof(result->message_id), "%s", entry_message_id(e));
    } else {
        snprintf(result->message_id, sizeof(result->message_id), "%s", message_id);
    }
    pthread_mutex_unlock(&s->lock);

    result->count = count;
    if (count == 2)
        atomic_fetch_add_explicit(&l->duplicates, 1, memory_order_relaxed);
    if (count >= 2)
        sim_ledger_count(l, d, SIM_C_DUPLICATE_ATTEMPTS, 1);
    if (count < 2 || !idempotent)
        sim_ledger_count(l, d, SIM_C_SMS, 1);
    if (!e) {
        sim_ledger_count(l, d, SIM_C_LEDGER_FULL, 1);
        return -1;
    }
    return 0;
}

void sim_ledger_fault(sim_ledger_t *l, sim_dialect_t d, const char *key, const char *number,
                      int64_t now_ms)
{
    size_t key_len = strnlen(key, LEDGER_MAX_KEY);
    uint64_t h = hash_key(key, key_len);
    shard_t *s = &l->shards[h >> 58];
    bool full;
    pthread_mutex_lock(&s->lock);
    entry_t **slot = shard_find(l, s, h, key, key_len, true, d, number, "", now_ms, &full);
    entry_t *e = slot ? *slot : NULL;
    if (e) {
        e->faults++;
        e->dialects |= (uint8_t)(1u << d);
    }
    pthread_mutex_unlock(&s->lock);
}

const char *sim_dlr_outcome_name(sim_dlr_outcome_t o)
{
    switch (o) {
    case SIM_DLR_DELIVERED:
        return "delivered";
    case SIM_DLR_FAILED:
        return "failed";
    case SIM_DLR_NONE:
        return "none";
    case SIM_DLR_UNSET:
        break;
    }
    return NULL;
}

void sim_ledger_dlr(sim_ledger_t *l, const char *key, sim_dlr_outcome_t outcome, int copies,
                    bool url_from_request)
{
    size_t key_len = strnlen(key, LEDGER_MAX_KEY);
    uint64_t h = hash_key(key, key_len);
    shard_t *s = &l->shards[h >> 58];
    bool full;
    pthread_mutex_lock(&s->lock);
    entry_t **slot = shard_find(l, s, h, key, key_len, false, SIM_DIALECT_AT, "", "", 0, &full);
    if (slot) {
        entry_t *e = *slot;
        int reports = e->dlr_reports + (copies > 0 ? copies : 0);
        e->dlr = (uint8_t)outcome;
        e->dlr_reports = (uint8_t)(reports < UINT8_MAX ? reports : UINT8_MAX);
        e->dlr_from_request = url_from_request;
    }
    pthread_mutex_unlock(&s->lock);
}

void sim_ledger_reset(sim_ledger_t *l)
{
    for (size_t i = 0; i < LEDGER_SHARDS; i++) {
        pthread_mutex_lock(&l->shards[i].lock);
        shard_clear(&l->shards[i]);
    }
    atomic_store(&l->keys, 0);
    atomic_store(&l->duplicates, 0);
    for (size_t row = 0; row <= SIM_DIALECT_COUNT; row++)
        for (size_t c = 0; c < SIM_C_COUNT; c++)
            atomic_store(&l->counters[row][c], 0);
    for (size_t i = LEDGER_SHARDS; i-- > 0;)
        pthread_mutex_unlock(&l->shards[i].lock);
}

/* {"requests":..,"faults":{..},"dlr":{..}} of one counter row, or of all rows when row < 0. */
static json_t *totals_json(const sim_ledger_t *l, int row)
{
    json_t *totals = json_object(), *faults = json_object(), *dlr = json_object();
    for (int c = 0; c < SIM_C_COUNT; c++) {
        uint64_t v = row < 0 ? sim_ledger_total(l, (sim_counter_t)c)
                             : atomic_load_explicit(&l->counters[row][c], memory_order_relaxed);
        json_t *target = totals;
        if (c >= SIM_C_FAULT_5XX && c <= SIM_C_FAULT_THROTTLED)
            target = faults;
        else if (c >= SIM_C_DLR_QUEUED)
            target = dlr;
        json_object_set_new(target, sim_counter_name((sim_counter_t)c),
                            json_integer((json_int_t)v));
    }
    json_object_set_new(totals, "faults", faults);
    if (row < 0)
        json_object_set_new(totals, "dlr", dlr);
    else
        json_decref(dlr);
    return totals;
}

static json_t *entry_json(const entry_t *e)
{
    char first[NUDGEL_RFC3339_MAX], last[NUDGEL_RFC3339_MAX];
    json_t *dialects = json_array();
    nudgel_rfc3339_format(e->first_ms, first);
    nudgel_rfc3339_format(e->last_ms, last);
    for (int d = 0; d < SIM_DIALECT_COUNT; d++)
        if (e->dialects & (1u << d))
            json_array_append_new(dialects, json_string(sim_dialect_name((sim_dialect_t)d)));
    json_t *j = json_pack(
        "{s:s%, s:s, s:o, s:s, s:i, s:i, s:s, s:s, s:s}", "key", e->data, (size_t)e->key_len,
        "dialect", sim_dialect_name((sim_dialect_t)e->first_dialect), "dialects", dialects,
        "number", entry_number(e), "count", (json_int_t)e->accepted, "faults",
        (json_int_t)e->faults, "first", first, "last", last, "message_id", entry_message_id(e));
    const char *dlr = sim_dlr_outcome_name((sim_dlr_outcome_t)e->dlr);
    if (j && dlr) {
        json_object_set_new(j, "dlr", json_string(dlr));
        json_object_set_new(j, "dlr_reports", json_integer(e->dlr_reports));
        json_object_set_new(j, "dlr_url",
                            json_string(e->dlr_from_request ? "request" : "configured"));
    }
    return j;
}

json_t *sim_ledger_json(sim_ledger_t *l, bool summary, const char *key, size_t limit)
{
    json_t *root = json_object(), *by_dialect = json_object();
    json_object_set_new(root, "totals", totals_json(l, -1));
    for (int d = 0; d < SIM_DIALECT_COUNT; d++)
        json_object_set_new(by_dialect, sim_dialect_name((sim_dialect_t)d), totals_json(l, d));
    json_object_set_new(root, "by_dialect", by_dialect);
    json_object_set_new(root, "duplicates", json_integer((json_int_t)sim_ledger_duplicates(l)));
    json_object_set_new(root, "keys", json_integer((json_int_t)sim_ledger_key_count(l)));
    json_object_set_new(root, "max_keys", json_integer((json_int_t)l->max_keys));
    json_object_set_new(root, "ledger_full",
                        json_boolean(sim_ledger_total(l, SIM_C_LEDGER_FULL) > 0 ||
                                     sim_ledger_key_count(l) >= l->max_keys));
    if (summary)
        return root;

    json_t *entries = json_array();
    bool truncated = false;
    if (key) {
        size_t key_len = strnlen(key, LEDGER_MAX_KEY);
        uint64_t h = hash_key(key, key_len);
        shard_t *s = &l->shards[h >> 58];
        bool full;
        pthread_mutex_lock(&s->lock);
        entry_t **slot = shard_find(l, s, h, key, key_len, false, SIM_DIALECT_AT, "", "", 0, &full);
        if (slot)
            json_array_append_new(entries, entry_json(*slot));
        pthread_mutex_unlock(&s->lock);
    } else {
        for (size_t i = 0; i < LEDGER_SHARDS && !truncated; i++) {
            shard_t *s = &l->shards[i];
            pthread_mutex_lock(&s->lock);
            for (size_t b = 0; b < s->bucket_count && !truncated; b++) {
                for (entry_t *e = s->buckets[b]; e; e = e->next) {
                    if (json_array_size(entries) >= limit) {
                        truncated = true;
                        break;
                    }
                    json_array_append_new(entries, entry_json(e));
                }
            }
            pthread_mutex_unlock(&s->lock);
        }
    }
    json_object_set_new(root, "entries", entries);
    json_object_set_new(root, "truncated", json_boolean(truncated));
    return root;
}
