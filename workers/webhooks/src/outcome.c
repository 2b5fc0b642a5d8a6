/*
 * outcome.c — see nudgel/webhooks/outcome.h.
 */
#define _GNU_SOURCE
#include "nudgel/webhooks/outcome.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#define MAX_DELTA_S (365LL * 24 * 3600) /* a Retry-After beyond a year is nonsense */

const char *nudgel_outcome_kind_name(nudgel_outcome_kind_t kind)
{
    switch (kind) {
    case NUDGEL_OUTCOME_DELIVERED:
        return "delivered";
    case NUDGEL_OUTCOME_RETRY:
        return "retry";
    case NUDGEL_OUTCOME_BACKOFF:
        return "backoff";
    case NUDGEL_OUTCOME_DISABLE_ENDPOINT:
        return "disable_endpoint";
    case NUDGEL_OUTCOME_PERMANENT:
        return "permanent";
    }
    return "retry";
}

nudgel_transport_t nudgel_outcome_transport_from_curl(int curl_code)
{
    switch (curl_code) {
    case CURLE_OK:
        return NUDGEL_TRANSPORT_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return NUDGEL_TRANSPORT_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
        return NUDGEL_TRANSPORT_CONNECT;
    case CURLE_COULDNT_RESOLVE_HOST:
        return NUDGEL_TRANSPORT_DNS;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
        return NUDGEL_TRANSPORT_TLS;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return NUDGEL_TRANSPORT_BAD_URL;
    default:
        return NUDGEL_TRANSPORT_ERROR;
    }
}

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};

static int month_index(const char *m)
{
    for (int i = 0; i < 12; i++)
        if (strncasecmp(m, month_names[i], 3) == 0 && strlen(m) == 3)
            return i;
    return -1;
}

/*
 * HTTP-date (RFC 9110 §5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT",
 * obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and asctime
 * "Sun Nov  6 08:49:37 1994". Parsed by hand: strptime depends on the locale.
 */
static int parse_http_date(const char *v, int64_t *unix_s)
{
    char wday[16], mon[8], tz[8];
    int day, year, hh, mm, ss, n = 0;
    struct tm tm = {0};
    if (sscanf(v, "%15[A-Za-z], %2d %3s %4d %2d:%2d:%2d %3s%n", wday, &day, mon, &year, &hh, &mm,
               &ss, tz, &n) == 8 &&
        !v[n] && strcmp(tz, "GMT") == 0) {
        /* IMF-fixdate */
    } else if (n = 0, sscanf(v, "%15[A-Za-z], %2d-%3s-%2d %2d:%2d:%2d %3s%n", wday, &day, mon,
                             &year, &hh, &mm, &ss, tz, &n) == 8 &&
                          !v[n] && strcmp(tz, "GMT") == 0) {
        /* RFC 850: two-digit years more than 50 years ahead are in the past century. */
        year += year < 70 ? 2000 : 1900;
    } else if (n = 0, sscanf(v, "%15[A-Za-z] %3s %2d %2d:%2d:%2d %4d%n", wday, mon, &day, &hh, &mm,
                             &ss, &year, &n) == 7 &&
                          !v[n]) {
        /* asctime */
    } else {
        return -1;
    }
    int m = month_index(mon);
    if (m < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || year < 1970 || year > 9999)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = m;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *unix_s = (int64_t)t;
    return 0;
}

int nudgel_retry_after_parse(const char *value, int64_t now_ms, int64_t *not_before_ms)
{
    if (!value)
        return -1;
    while (isspace((unsigned char)*value))
        value++;
    size_t len = strlen(value);
    while (len > 0 && isspace((unsigned char)value[len - 1]))
        len--;
    if (len == 0 || len > 64)
        return -1;
    char buf[72];
    memcpy(buf, value, len);
    buf[len] = '\0';
    if (isdigit((unsigned char)buf[0])) {
        long long s = 0;
        for (size_t i = 0; i < len; i++) {
            if (!isdigit((unsigned char)buf[i]))
                return -1;
            s = s * 10 + (buf[i] - '0');
            if (s > MAX_DELTA_S)
                return -1;
        }
        *not_before_ms = now_ms + s * 1000;
        return 0;
    }
    int64_t at_s;
    if (parse_http_date(buf, &at_s) != 0)
        return -1;
    int64_t at_ms = at_s * 1000;
    if (at_ms - now_ms > MAX_DELTA_S * 1000)
        return -1;
    *not_before_ms = at_ms > now_ms ? at_ms : now_ms;
    return 0;
}

nudgel_outcome_t nudgel_outcome_classify(const nudgel_attempt_result_t *r)
{
    nudgel_outcome_t o = {.kind = NUDGEL_OUTCOME_RETRY, .not_before_ms = 0, .error_class = NULL};
    switch (r->transport) {
    case NUDGEL_TRANSPORT_OK:
        break;
    case NUDGEL_TRANSPORT_TIMEOUT:
        o.error_class = "timeout";
        return o;
    case NUDGEL_TRANSPORT_CONNECT:
        o.error_class = "connect";
        return o;
    case NUDGEL_TRANSPORT_DNS:
        o.error_class = "dns";
        return o;
    case NUDGEL_TRANSPORT_TLS:
        o.error_class = "tls";
        return o;
    case NUDGEL_TRANSPORT_ERROR:
        o.error_class = "transport";
        return o;
    case NUDGEL_TRANSPORT_SSRF_REFUSED:
        o.kind = NUDGEL_OUTCOME_PERMANENT;
        o.error_class = "ssrf_refused";
        return o;
    case NUDGEL_TRANSPORT_BAD_URL:
        o.kind = NUDGEL_OUTCOME_PERMANENT;
        o.error_class = "bad_url";
        return o;
    }
    long s = r->http_status;
    if (s >= 200 && s <= 299) {
        o.kind = NUDGEL_OUTCOME_DELIVERED;
        return o;
    }
    if (s == 410) {
        o.kind = NUDGEL_OUTCOME_DISABLE_ENDPOINT;
        o.error_class = "http_410";
        return o;
    }
    if (s == 429 || s == 502 || s == 503 || s == 504) {
        o.kind = NUDGEL_OUTCOME_BACKOFF;
        o.error_class = s == 429 ? "http_429" : "http_5xx";
        int64_t nb;
        if (r->retry_after && nudgel_retry_after_parse(r->retry_after, r->now_ms, &nb) == 0) {
            if (r->max_retry_after_ms > 0 && nb - r->now_ms > r->max_retry_after_ms)
                nb = r->now_ms + r->max_retry_after_ms;
            o.not_before_ms = nb;
        }
        return o;
    }
    if (s >= 300 && s <= 399)
        o.error_class = "http_3xx";
    else if (s >= 400 && s <= 499)
        o.error_class = "http_4xx";
    else if (s >= 500 && s <= 599)
        o.error_class = "http_5xx";
    else
        o.error_class = "http_other";
    return o;
}
