/*
 * topics_admin.h — the librdkafka Admin API client of `nudgel-admin topics`
 * (topics_admin.c), shared by ensure (topics_ensure.c) and describe
 * (topics.c): a client with its result queue, the wanted and the actual
 * state of every contract topic, and the requests both commands make
 * (metadata, DescribeConfigs). Every request is bounded by admin.timeout_ms.
 *
 * Threading: one command on one thread; a topics_admin_t is not shared.
 */
#ifndef NUDGEL_ADMIN_TOPICS_ADMIN_H
#define NUDGEL_ADMIN_TOPICS_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "nudgel/config.h"
#include "nudgel/error.h"
#include "nudgel/topics.h"

#define TEXT_MAX 512

typedef struct topic_state {
    const nudgel_topic_spec_t *spec;
    char name[256]; /* topics.namespace + the contract name */
    int want_partitions, want_rf;
    long long want_retention_ms;
    bool exists, created;
    int partitions, rf;                         /* from metadata when it exists */
    long long retention_ms;                     /* -1 when unknown */
    const rd_kafka_ConfigResource_t *described; /* borrowed from topics_admin_t.described_ev */
    bool fix_partitions, fix_retention;
    char drift[TEXT_MAX], altered[TEXT_MAX], error[TEXT_MAX];
} topic_state_t;

typedef struct topics_admin {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int timeout_ms;
    topic_state_t *topics;
    size_t count;
    rd_kafka_event_t *described_ev; /* keeps DescribeConfigs results alive */
} topics_admin_t;

/**
 * A client, its result queue and the wanted state of every contract topic
 * (from topics.* in @p conf), once a broker has answered. On failure
 * everything is released. Release with topics_admin_close().
 */
nudgel_err_t topics_admin_open(topics_admin_t *a, const nudgel_conf_t *conf, char *errstr,
                               size_t errstr_size);
void topics_admin_close(topics_admin_t *a);

/** Options of one request of @p op, with admin.timeout_ms; NULL with @p errstr. */
rd_kafka_AdminOptions_t *topics_admin_options(topics_admin_t *a, rd_kafka_admin_op_t op,
                                              char *errstr, size_t errstr_size);

/**
 * The result event of the request just sent (the caller destroys it), or
 * NULL with a reason when the request as a whole failed.
 */
rd_kafka_event_t *topics_admin_wait(topics_admin_t *a, const char *what, char *errstr,
                                    size_t errstr_size);

/** The contract topic named @p name (with topics.namespace), or NULL. */
topic_state_t *topics_admin_find(topics_admin_t *a, const char *name);

/** Existence, partition count and (smallest) replication factor of every topic. */
nudgel_err_t topics_admin_load_metadata(topics_admin_t *a, char *errstr, size_t errstr_size);

/** retention.ms (and the config resource, kept for AlterConfigs) of every existing topic. */
nudgel_err_t topics_admin_describe_configs(topics_admin_t *a, char *errstr, size_t errstr_size);

#endif
