/*
 * error.c — names, texts and classes of nudgel_err_t.
 *
 * The switches have no default: a new code without a text, a name and a
 * class is a compile error under -Wswitch-enum -Werror.
 */
#include "nudgel/error.h"

const char *nudgel_strerror(nudgel_err_t err)
{
    switch (err) {
    case NUDGEL_OK:
        return "success";
    case NUDGEL_ERR_INVALID_ARG:
        return "invalid argument";
    case NUDGEL_ERR_NO_MEMORY:
        return "out of memory";
    case NUDGEL_ERR_INVALID_JSON:
        return "input is not a valid JSON object";
    case NUDGEL_ERR_INVALID_FIELD:
        return "a field is missing or invalid";
    case NUDGEL_ERR_TOO_LARGE:
        return "input exceeds its size limit";
    case NUDGEL_ERR_CONFIG:
        return "invalid configuration";
    case NUDGEL_ERR_IO:
        return "input/output error";
    case NUDGEL_ERR_KAFKA_UNREACHABLE:
        return "Kafka is unreachable";
    case NUDGEL_ERR_KAFKA:
        return "Kafka error";
    case NUDGEL_ERR_KAFKA_FATAL:
        return "fatal Kafka error";
    case NUDGEL_ERR_QUEUE_FULL:
        return "producer queue is full";
    case NUDGEL_ERR_WINDOW_FULL:
        return "in-flight window is full";
    case NUDGEL_ERR_TIMED_OUT:
        return "timed out";
    case NUDGEL_ERR_PG_UNREACHABLE:
        return "Postgres is unreachable";
    case NUDGEL_ERR_PG:
        return "Postgres error";
    case NUDGEL_ERR_MIGRATION:
        return "schema migration failed";
    }
    return "unknown error";
}

const char *nudgel_err_name(nudgel_err_t err)
{
    switch (err) {
    case NUDGEL_OK:
        return "ok";
    case NUDGEL_ERR_INVALID_ARG:
        return "invalid_arg";
    case NUDGEL_ERR_NO_MEMORY:
        return "no_memory";
    case NUDGEL_ERR_INVALID_JSON:
        return "invalid_json";
    case NUDGEL_ERR_INVALID_FIELD:
        return "invalid_field";
    case NUDGEL_ERR_TOO_LARGE:
        return "too_large";
    case NUDGEL_ERR_CONFIG:
        return "config";
    case NUDGEL_ERR_IO:
        return "io";
    case NUDGEL_ERR_KAFKA_UNREACHABLE:
        return "kafka_unreachable";
    case NUDGEL_ERR_KAFKA:
        return "kafka";
    case NUDGEL_ERR_KAFKA_FATAL:
        return "kafka_fatal";
    case NUDGEL_ERR_QUEUE_FULL:
        return "queue_full";
    case NUDGEL_ERR_WINDOW_FULL:
        return "window_full";
    case NUDGEL_ERR_TIMED_OUT:
        return "timed_out";
    case NUDGEL_ERR_PG_UNREACHABLE:
        return "pg_unreachable";
    case NUDGEL_ERR_PG:
        return "pg";
    case NUDGEL_ERR_MIGRATION:
        return "migration";
    }
    return "unknown";
}

nudgel_err_class_t nudgel_err_class(nudgel_err_t err)
{
    switch (err) {
    case NUDGEL_OK:
        return NUDGEL_ERRCLASS_NONE;
    case NUDGEL_ERR_INVALID_JSON:
    case NUDGEL_ERR_INVALID_FIELD:
    case NUDGEL_ERR_TOO_LARGE:
        return NUDGEL_ERRCLASS_PERMANENT;
    case NUDGEL_ERR_KAFKA_UNREACHABLE:
    case NUDGEL_ERR_KAFKA:
    case NUDGEL_ERR_QUEUE_FULL:
    case NUDGEL_ERR_WINDOW_FULL:
    case NUDGEL_ERR_TIMED_OUT:
    case NUDGEL_ERR_PG_UNREACHABLE:
    case NUDGEL_ERR_PG:
    case NUDGEL_ERR_IO:
        return NUDGEL_ERRCLASS_RETRIABLE;
    case NUDGEL_ERR_INVALID_ARG:
    case NUDGEL_ERR_NO_MEMORY:
    case NUDGEL_ERR_CONFIG:
    case NUDGEL_ERR_KAFKA_FATAL:
    case NUDGEL_ERR_MIGRATION:
        return NUDGEL_ERRCLASS_FATAL;
    }
    return NUDGEL_ERRCLASS_FATAL;
}

const char *nudgel_err_class_name(nudgel_err_class_t cls)
{
    switch (cls) {
    case NUDGEL_ERRCLASS_NONE:
        return "none";
    case NUDGEL_ERRCLASS_RETRIABLE:
        return "retriable";
    case NUDGEL_ERRCLASS_PERMANENT:
        return "permanent";
    case NUDGEL_ERRCLASS_FATAL:
        return "fatal";
    }
    return "fatal";
}
