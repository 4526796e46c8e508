/*  The HTTP transport: libcurl easy handles to the core's /api/v1.

    DESIGN. An easy handle keeps its connection alive between requests, so a module
    that calls the core repeatedly pays the connect once. Handles live in a small pool
    (POOL_SIZE): a call takes a free one (or makes one), uses it alone, and gives it
    back; a handle beyond the pool's size is cleaned up after its call. Every handle
    ignores proxies from the environment (NOPROXY "*": the core is local), never uses
    signals (NOSIGNAL: calls come from many threads), and sets TCP_NODELAY (a small
    request must not wait for Nagle). Retries (429) are the caller's business
    (module.c), so this file makes exactly one attempt. */
#include <curl/curl.h>
#include <sodium.h>

#include "internal.h"

#define POOL_SIZE  4
#define MAX_ANSWER (16u << 20) // larger answers are refused

struct mc_http_t {
    pthread_mutex_t lock;  // guards the pool
    CURL *pool[POOL_SIZE]; // idle handles
    size_t idle;           // how many
};

typedef struct {
    char *data;      // answer so far
    size_t size;     // bytes
    bool too_big;    // over MAX_ANSWER
    int retry_after; // Retry-After in seconds, -1 if absent
} answer_t;

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;

static void s_curl_init (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
}

mc_http_t *mc_http_new (void)
{
    pthread_once (&s_curl_once, s_curl_init);
    mc_http_t *self = calloc (1, sizeof *self);
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

void mc_http_destroy (mc_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mc_http_t *self = *self_p;
    for (size_t i = 0; i < self->idle; i++)
        curl_easy_cleanup (self->pool[i]);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

static CURL *s_take (mc_http_t *self)
{
    pthread_mutex_lock (&self->lock);
    CURL *easy = self->idle > 0 ? self->pool[--self->idle] : NULL;
    pthread_mutex_unlock (&self->lock);
    if (!easy) {
        easy = curl_easy_init ();
        assert (easy);
    }
    return easy;
}

static void s_give_back (mc_http_t *self, CURL *easy)
{
    curl_easy_reset (easy); // keeps the connection and caches, drops the options
    pthread_mutex_lock (&self->lock);
    if (self->idle < POOL_SIZE) {
        self->pool[self->idle++] = easy;
        easy = NULL;
    }
    pthread_mutex_unlock (&self->lock);
    if (easy)
        curl_easy_cleanup (easy);
}

static size_t s_on_data (char *data, size_t size, size_t n, void *arg)
{
    answer_t *answer = arg;
    size_t len = size * n;
    if (answer->size + len > MAX_ANSWER) {
        answer->too_big = true;
        return 0;
    }
    answer->data = realloc (answer->data, answer->size + len + 1);
    assert (answer->data);
    memcpy (answer->data + answer->size, data, len);
    answer->size += len;
    answer->data[answer->size] = 0;
    return len;
}

static size_t s_on_header (char *data, size_t size, size_t n, void *arg)
{
    answer_t *answer = arg;
    size_t len = size * n;
    if (len > 12 && strncasecmp (data, "Retry-After:", 12) == 0) {
        char value[64];
        size_t vlen = len - 12 < sizeof value - 1 ? len - 12 : sizeof value - 1;
        memcpy (value, data + 12, vlen);
        value[vlen] = 0;
        char *end = NULL;
        long seconds = strtol (value, &end, 10);
        //  delta-seconds only; an HTTP date (which the core does not send) counts as 1 s
        answer->retry_after = end != value && seconds >= 0 ? (int)seconds : 1;
    }
    return len;
}

mc_reply_t *mc_http_call (mc_http_t *self, const char *base_url, const char *token,
                          const char *method, const char *path, const char *body, int timeout_ms)
{
    assert (self && method && path);
    if (!base_url || !*base_url)
        return mc_reply_error (0, "UNREACHABLE", "no core URL (SELENA_CORE_URL is not set)");
    size_t base_len = strlen (base_url);
    while (base_len > 0 && base_url[base_len - 1] == '/')
        base_len--;
    char *url = NULL;
    if (asprintf (&url, "%.*s%s", (int)base_len, base_url, path) < 0)
        abort ();

    struct curl_slist *headers = NULL;
    char *auth = NULL;
    if (token && *token) {
        if (asprintf (&auth, "Authorization: Bearer %s", token) < 0)
            abort ();
        headers = curl_slist_append (headers, auth);
    }
    headers = curl_slist_append (headers, "Accept: application/json");
    if (body)
        headers = curl_slist_append (headers, "Content-Type: application/json");
    headers = curl_slist_append (headers, "Expect:"); // no 100-continue round trip

    answer_t answer = {.retry_after = -1};
    CURL *easy = s_take (self);
    curl_easy_setopt (easy, CURLOPT_URL, url);
    curl_easy_setopt (easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt (easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt (easy, CURLOPT_CONNECTTIMEOUT_MS,
                      (long)(timeout_ms < 5000 ? timeout_ms : 5000));
    curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt (easy, CURLOPT_USERAGENT, MC_SDK_AGENT);
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (easy, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt (easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE, (long)strlen (body));
    } else if (strcmp (method, "GET") != 0 && strcmp (method, "DELETE") != 0) {
        curl_easy_setopt (easy, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE, 0L);
    }
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_on_data);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt (easy, CURLOPT_HEADERDATA, &answer);
    CURLcode rc = curl_easy_perform (easy);
    long status = 0;
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
    s_give_back (self, easy);
    curl_slist_free_all (headers);
    if (auth) {
        sodium_memzero (auth, strlen (auth));
        free (auth);
    }

    mc_reply_t *reply;
    if (rc == CURLE_OK)
        reply = mc_reply_from_body ((int)status, answer.data, answer.size);
    else if (answer.too_big)
        reply = mc_reply_error ((int)status, "BAD_ANSWER", "%s %s: the answer is over %u bytes",
                                method, path, MAX_ANSWER);
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        reply = mc_reply_error (0, "TIMEOUT", "%s %s: no answer within %d ms", method, path,
                                timeout_ms);
    else
        reply = mc_reply_error (0, "UNREACHABLE", "%s %s: %s (%s)", method, path,
                                curl_easy_strerror (rc), url);
    if (reply->status == 429 && answer.retry_after >= 0)
        reply->retry_after = answer.retry_after > 0 ? answer.retry_after : 1;
    else if (reply->status == 429)
        reply->retry_after = 1;
    free (answer.data);
    free (url);
    return reply;
}
