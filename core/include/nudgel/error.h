/*
 * nudgel/error.h — the one error enum of the fleet.
 *
 * Every failure is classified as retriable, permanent or fatal; callers
 * decide retry, dead-letter or exit from that class, never from a string.
 */
#ifndef NUDGEL_ERROR_H
#define NUDGEL_ERROR_H

typedef enum nudgel_err {
    NUDGEL_OK = 0,
    NUDGEL_ERR_INVALID_ARG,       /* programming error: a NULL or out-of-range argument */
    NUDGEL_ERR_NO_MEMORY,         /* allocation failed */
    NUDGEL_ERR_INVALID_JSON,      /* input is not a JSON object */
    NUDGEL_ERR_INVALID_FIELD,     /* a field is missing, of the wrong type or value */
    NUDGEL_ERR_TOO_LARGE,         /* input over its hard cap */
    NUDGEL_ERR_CONFIG,            /* a configuration key or value is wrong */
    NUDGEL_ERR_IO,                /* reading a file or stream failed */
    NUDGEL_ERR_KAFKA_UNREACHABLE, /* no broker answered within the timeout */
    NUDGEL_ERR_KAFKA,             /* a Kafka error librdkafka calls retriable */
    NUDGEL_ERR_KAFKA_FATAL,       /* a Kafka error that needs a restart (fencing, auth) */
    NUDGEL_ERR_QUEUE_FULL,        /* local producer queue full for longer than allowed */
    NUDGEL_ERR_WINDOW_FULL,       /* a partition's in-flight window is full: pause it */
    NUDGEL_ERR_TIMED_OUT,         /* an operation ran out of time */
    NUDGEL_ERR_PG_UNREACHABLE,    /* Postgres could not be reached */
    NUDGEL_ERR_PG,                /* a Postgres statement failed */
    NUDGEL_ERR_MIGRATION,         /* a schema migration failed or drifted */
} nudgel_err_t;

typedef enum nudgel_err_class {
    NUDGEL_ERRCLASS_NONE = 0,  /* not an error */
    NUDGEL_ERRCLASS_RETRIABLE, /* the same input may succeed later */
    NUDGEL_ERRCLASS_PERMANENT, /* the same input never succeeds: reject or dead-letter */
    NUDGEL_ERRCLASS_FATAL,     /* the process cannot go on: exit and let the supervisor restart */
} nudgel_err_class_t;

/** @brief Short English text for an error code. @returns a static string, never NULL. */
const char *nudgel_strerror(nudgel_err_t err);

/** @brief Stable identifier such as "invalid_field" for logs, headers and metrics. */
const char *nudgel_err_name(nudgel_err_t err);

/** @brief Whether @p err is retriable, permanent or fatal. */
nudgel_err_class_t nudgel_err_class(nudgel_err_t err);

/** @brief "retriable", "permanent", "fatal" or "none". */
const char *nudgel_err_class_name(nudgel_err_class_t cls);

#endif
