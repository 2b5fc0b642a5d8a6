/*
 * send_message.c — how the API tier enqueues a send with libnudgel.
 *
 *   nudgel-example-send [BOOTSTRAP]
 *
 * Enqueues the API's own example synchronously (waits for Kafka's
 * acknowledgement) and prints the job id, partition and offset; then shows
 * the asynchronous style with a delivery callback, and what a refused job
 * looks like.
 */
#include <stdio.h>
#include <string.h>

#include "nudgel/producer.h"

static void delivered(const nudgel_delivery_report_t *report, void *opaque)
{
    int *outstanding = opaque;
    (*outstanding)--;
    if (report->err == NUDGEL_OK)
        printf("async: job %s of tenant %s at %s[%d]@%lld\n", report->job_id, report->tenant_id,
               report->topic, report->partition, (long long)report->offset);
    else
        printf("async: job %s failed: %s (%s)\n", report->job_id, nudgel_strerror(report->err),
               nudgel_err_class_name(nudgel_err_class(report->err)));
}

int main(int argc, char **argv)
{
    const char *bootstrap = argc > 1 ? argv[1] : "127.0.0.1:59092";
    char errstr[512];
    int outstanding = 0;

    nudgel_producer_conf_t *conf = nudgel_producer_conf_new();
    if (nudgel_producer_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)) ||
        nudgel_producer_conf_set(conf, "default_country", "KE", errstr, sizeof(errstr))) {
        fprintf(stderr, "config: %s\n", errstr);
        nudgel_producer_conf_destroy(conf);
        return 2;
    }
    nudgel_producer_conf_set_delivery_cb(conf, delivered, &outstanding);
    nudgel_producer_t *p = nudgel_producer_new(conf, errstr, sizeof(errstr));
    if (!p) {
        fprintf(stderr, "producer: %s\n", errstr);
        nudgel_producer_conf_destroy(conf);
        return 2;
    }

    /* 1. Synchronous: returns once Kafka acknowledged (acks=all). */
    const char *api_example =
        "{\"tenant_id\":\"acme\",\"channel\":\"sms\",\"to\":\"+254722000000\","
        "\"template\":\"order-confirmation\",\"variables\":{\"name\":\"Ada\","
        "\"order_id\":\"AC-1042\"},\"idempotency_key\":\"order-AC-1042\"}";
    nudgel_enqueue_result_t res;
    nudgel_err_t err =
        nudgel_enqueue_message_sync(p, api_example, strlen(api_example), NULL, &res, 15000);
    if (err != NUDGEL_OK) {
        fprintf(stderr, "sync: %s: %s: %s\n", nudgel_strerror(err), res.error.field,
                res.error.reason);
        nudgel_producer_destroy(p);
        return 1;
    }
    printf("sync: job %s at partition %d offset %lld\n", res.job_id, res.partition,
           (long long)res.offset);

    /* 2. Asynchronous: queue now, learn the outcome in the callback. A national
     *    number is fine: default_country says how to read it. */
    const char *national = "{\"tenant_id\":\"acme\",\"channel\":\"sms\",\"to\":\"0722 000 001\","
                           "\"body\":\"Your code is 4312\"}";
    nudgel_enqueue_opts_t opts = {.traceparent =
                                      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"};
    if (nudgel_enqueue_message(p, national, strlen(national), &opts, &res) == NUDGEL_OK)
        outstanding++;

    /* 3. A refused job names the field at fault; nothing is sent. */
    const char *bad = "{\"tenant_id\":\"acme\",\"channel\":\"sms\",\"to\":\"+254202012345\","
                      "\"body\":\"hello\"}";
    err = nudgel_enqueue_message(p, bad, strlen(bad), NULL, &res);
    printf("refused (%s): %s: %s\n", nudgel_err_class_name(nudgel_err_class(err)), res.error.field,
           res.error.reason);

    nudgel_producer_flush(p, 15000);
    nudgel_producer_destroy(p);
    return outstanding == 0 ? 0 : 1;
}
