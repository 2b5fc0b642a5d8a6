/*
 * gateway_probe.c — is each gateway's key accepted? (issue 12)
 *
 * Owns the messages worker's part of --check-config and of its start:
 *   - gateway_check(): offline, the gateways file loads exactly as setup
 *     loads it (every gateway, route, numbering-plan operator, referenced
 *     secret and, with messages.callback_url, DLR token), the variables it
 *     names are known, the retry delays and the callback URL read;
 *   - gateway_probe_check(): --check-config=connect, one probe per gateway;
 *   - gateway_probe_at_start(): the same probes at start-up
 *     (messages.startup_probe): a gateway that refuses its key stops the
 *     start, naming the key's source; one that cannot be reached, or answers
 *     anything else, is only logged (an outage is the gateway's, and the
 *     retries and breakers handle it).
 * A probe is the dialect's account read (nudgel_gateway_build_probe():
 * Infobip GET /account/1/balance, Africa's Talking GET /version1/user); it
 * sends no message. Generic gateways have none and are not probed. All
 * probes run at once on one curl multi handle, each bounded by its
 * gateway's connect_timeout_ms and timeout_ms; blocking, before the loop
 * turns. No error text holds a key.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "nudgel/log.h"

#include "messages.h"

typedef enum probe_verdict {
    PROBE_NONE = 0, /* the dialect has no probe */
    PROBE_OK,       /* 2xx: the key is accepted */
    PROBE_REFUSED,  /* 401/403 (the dialect's credential statuses) */
    PROBE_DOWN,     /* no answer (connect, timeout, DNS), or another status */
} probe_verdict_t;

typedef struct probe {
    const nudgel_gateway_t *gw;
    nudgel_gateway_request_t req;
    struct curl_slist *headers;
    CURL *easy;
    probe_verdict_t verdict;
    char detail[CURL_ERROR_SIZE + 64];
} probe_t;

static size_t discard(char *data, size_t size, size_t n, void *opaque)
{
    (void)data;
    (void)opaque;
    return size * n;
}

static void probe_finish(probe_t *p, CURLcode rc)
{
    long status = 0;
    if (rc != CURLE_OK) {
        p->verdict = PROBE_DOWN;
        snprintf(p->detail, sizeof(p->detail), "unreachable: %s", curl_easy_strerror(rc));
        return;
    }
    curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        p->verdict = PROBE_OK;
    } else if (nudgel_gateway_credentials_refused(p->gw, (int)status)) {
        p->verdict = PROBE_REFUSED;
        snprintf(p->detail, sizeof(p->detail), "the gateway refused the key (HTTP %ld)", status);
    } else {
        p->verdict = PROBE_DOWN;
        snprintf(p->detail, sizeof(p->detail), "the probe was answered HTTP %ld", status);
    }
}

/* Runs the probe of every gateway of @p set at once; @p probes has one slot per gateway. */
static nudgel_err_t probe_all(const nudgel_gateway_set_t *set, probe_t *probes)
{
    size_t n = nudgel_gateway_set_count(set);
    CURLM *multi = curl_multi_init();
    char errstr[256];
    nudgel_err_t err = multi ? NUDGEL_OK : NUDGEL_ERR_NO_MEMORY;
    for (size_t i = 0; i < n && err == NUDGEL_OK; i++) {
        probe_t *p = &probes[i];
        p->gw = nudgel_gateway_set_at(set, i);
        nudgel_err_t b = nudgel_gateway_build_probe(p->gw, &p->req, errstr, sizeof(errstr));
        if (b == NUDGEL_ERR_INVALID_ARG)
            continue; /* PROBE_NONE: a dialect without a probe */
        if (b != NUDGEL_OK || !(p->easy = curl_easy_init())) {
            err = NUDGEL_ERR_NO_MEMORY;
            break;
        }
        for (size_t h = 0; h < p->req.header_count; h++) {
            struct curl_slist *next = curl_slist_append(p->headers, p->req.headers[h]);
            if (!next) {
                err = NUDGEL_ERR_NO_MEMORY;
                break;
            }
            p->headers = next;
        }
        curl_easy_setopt(p->easy, CURLOPT_URL, p->req.url);
        curl_easy_setopt(p->easy, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, p->headers);
        curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(p->easy, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)nudgel_gateway_connect_timeout_ms(p->gw));
        curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, (long)nudgel_gateway_timeout_ms(p->gw));
        curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
        if (curl_multi_add_handle(multi, p->easy) != CURLM_OK)
            err = NUDGEL_ERR_NO_MEMORY;
    }
    for (int running = 1; err == NUDGEL_OK && running;) {
        if (curl_multi_perform(multi, &running) != CURLM_OK ||
            (running && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK))
            err = NUDGEL_ERR_IO;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            probe_t *p = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&p);
            if (msg->msg == CURLMSG_DONE && p)
                probe_finish(p, msg->data.result);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (probes[i].easy) {
            curl_multi_remove_handle(multi, probes[i].easy);
            curl_easy_cleanup(probes[i].easy);
        }
        curl_slist_free_all(probes[i].headers); /* the key is in a header: wiped below */
        nudgel_gateway_request_clear(&probes[i].req);
    }
    curl_multi_cleanup(multi);
    return err;
}

/* The gateways file as setup loads it: with the DLR tokens when a callback URL is set. */
static nudgel_err_t load_set(const nudgel_conf_t *conf, nudgel_gateway_set_t **set, char *errstr,
                             size_t errstr_size)
{
    const char *path = nudgel_conf_get_str(conf, "messages.gateways_file");
    const char *callback = nudgel_conf_get_str(conf, "messages.callback_url");
    unsigned flags = callback && *callback ? NUDGEL_GATEWAY_LOAD_DLR_TOKENS : 0;
    char inner[512];
    nudgel_err_t err = nudgel_gateway_set_load_flags(path, flags, set, inner, sizeof(inner));
    if (err != NUDGEL_OK)
        snprintf(errstr, errstr_size, "messages.gateways_file: %s", inner);
    return err;
}

void gateway_check(const nudgel_conf_t *conf, nudgel_conf_check_t *check)
{
    nudgel_gateway_set_t *set = NULL;
    char errstr[768];
    const char *callback = nudgel_conf_get_str(conf, "messages.callback_url");
    nudgel_conf_check_env_refs_json(check, nudgel_conf_get_str(conf, "messages.gateways_file"));
    if (load_set(conf, &set, errstr, sizeof(errstr)) != NUDGEL_OK)
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG, "%s", errstr);
    nudgel_gateway_set_free(set);
    if (callback && *callback && strncmp(callback, "https://", 8) != 0 &&
        strncmp(callback, "http://", 7) != 0)
        nudgel_conf_check_add(check, NUDGEL_ERR_CONFIG,
                              "messages.callback_url: \"%.128s\" is not an http:// or https:// URL",
                              callback);
}

/* "messages.gateways_file: gateway \"x\" (api_key_env NUDGEL_X): why" */
static void probe_line(const probe_t *p, char *out, size_t out_size)
{
    snprintf(out, out_size, "messages.gateways_file: gateway \"%s\" (%s): %s",
             nudgel_gateway_name(p->gw), nudgel_gateway_key_source(p->gw), p->detail);
}

void gateway_probe_check(const nudgel_conf_t *conf, nudgel_conf_check_t *check)
{
    nudgel_gateway_set_t *set = NULL;
    probe_t probes[NUDGEL_GATEWAY_MAX] = {0};
    char errstr[768];
    if (load_set(conf, &set, errstr, sizeof(errstr)) != NUDGEL_OK)
        return; /* reported offline */
    if (probe_all(set, probes) != NUDGEL_OK)
        nudgel_conf_check_add(check, NUDGEL_ERR_IO, "messages.gateways_file: probes failed to run");
    for (size_t i = 0; i < nudgel_gateway_set_count(set); i++) {
        if (probes[i].verdict != PROBE_REFUSED && probes[i].verdict != PROBE_DOWN)
            continue;
        probe_line(&probes[i], errstr, sizeof(errstr));
        nudgel_conf_check_add(
            check, probes[i].verdict == PROBE_REFUSED ? NUDGEL_ERR_CONFIG : NUDGEL_ERR_TIMED_OUT,
            "%s", errstr);
    }
    nudgel_gateway_set_free(set);
}

nudgel_err_t gateway_probe_at_start(worker_t *w, char *errstr, size_t errstr_size)
{
    probe_t probes[NUDGEL_GATEWAY_MAX] = {0};
    char line[768];
    nudgel_err_t err = NUDGEL_OK;
    if (!nudgel_conf_get_bool(w->conf, "messages.startup_probe"))
        return NUDGEL_OK;
    if (probe_all(w->gateways, probes) != NUDGEL_OK) {
        nudgel_log_warn("gateway probes could not run; starting without them");
        return NUDGEL_OK;
    }
    for (size_t i = 0; i < nudgel_gateway_set_count(w->gateways); i++) {
        const probe_t *p = &probes[i];
        if (p->verdict == PROBE_OK)
            nudgel_log_info("gateway %s accepts its key", nudgel_gateway_name(p->gw));
        if (p->verdict != PROBE_REFUSED && p->verdict != PROBE_DOWN)
            continue;
        probe_line(p, line, sizeof(line));
        if (p->verdict == PROBE_DOWN) {
            nudgel_log_warn("%s; starting anyway (retries and the breaker handle an outage)", line);
        } else if (err == NUDGEL_OK) {
            snprintf(errstr, errstr_size, "%s", line);
            err = NUDGEL_ERR_CONFIG;
        } else {
            nudgel_log_error("%s", line);
        }
    }
    return err;
}
