/*  curl_fanout: the raw libcurl baseline of scenario 5. POSTs the same JSON body to
    every target URL, COUNT times each, with libcurl multi over kept-alive connections
    and at most INFLIGHT requests in flight per target (1 by default: the same
    per-subscription ordering the webhook actor keeps), then prints what it reached.
    No signing, no outbox, no durability: the cost of the HTTP deliveries alone.

    With --contract-headers each POST also carries the eight header lines a core
    delivery must (the Selena and Standard Webhooks signature, id, type and timestamp
    headers, the attempt, the user agent), with values of the same length and no signing:
    what the receiver-facing contract costs curl by itself.

    usage: curl_fanout --count N [--inflight K] [--body-bytes B] [--contract-headers]
                       [--csv FILE --label L] URL...
    Prints: deliveries, seconds, deliveries/s, failures. */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"

typedef struct {
    const char *url; // where
    long remaining;  // POSTs still to start
    long inflight;   // POSTs running
} target_t;

typedef struct {
    CURL *easy;       // reused: keeps its connection alive
    target_t *target; // whose
    int busy;         // in the multi
} handle_t;

static size_t s_discard (char *ptr, size_t size, size_t n, void *arg)
{
    return size * n;
}

int main (int argc, char **argv)
{
    static const struct option options[] = {
        {"count", required_argument, NULL, 'n'},
        {"inflight", required_argument, NULL, 'k'},
        {"body-bytes", required_argument, NULL, 'b'},
        {"csv", required_argument, NULL, 'o'},
        {"label", required_argument, NULL, 'l'},
        {"contract-headers", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long count = 1000, inflight = 1, body_bytes = 200;
    const char *csv = NULL, *label = "curl";
    int contract = 0;
    int opt;
    while ((opt = getopt_long (argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
            case 'n':
                count = atol (optarg);
                break;
            case 'k':
                inflight = atol (optarg);
                break;
            case 'b':
                body_bytes = atol (optarg);
                break;
            case 'o':
                csv = optarg;
                break;
            case 'l':
                label = optarg;
                break;
            case 'h':
                contract = 1;
                break;
            default:
                fprintf (stderr, "usage: curl_fanout --count N [--inflight K] [--body-bytes B] "
                                 "[--contract-headers] [--csv FILE --label L] URL...\n");
                return 2;
        }
    }
    int ntargets = argc - optind;
    if (ntargets < 1 || count < 1 || inflight < 1) {
        fprintf (stderr, "curl_fanout: give --count >= 1 and at least one URL\n");
        return 2;
    }
    size_t body_len;
    char *body = fanout_body (body_bytes, &body_len);

    curl_global_init (CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init ();
    curl_multi_setopt (multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    curl_multi_setopt (multi, CURLMOPT_MAXCONNECTS, (long)(ntargets * inflight + 16));
    target_t *targets = calloc ((size_t)ntargets, sizeof *targets);
    handle_t *handles = calloc ((size_t)(ntargets * inflight), sizeof *handles);
    struct curl_slist *headers = curl_slist_append (NULL, "Content-Type: application/json");
    headers = curl_slist_append (headers, "Expect:");
    if (contract) {
        static const char *const lines[] = {
            "X-Selena-Signature: sha256="
            "0000000000000000000000000000000000000000000000000000000000000000",
            "X-Event-Id: 00000000-0000-4000-8000-000000000000",
            "X-Event-Type: bench.tick",
            "webhook-id: 00000000-0000-4000-8000-000000000000",
            "webhook-timestamp: 1800000000",
            "webhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "X-Delivery-Attempt: 1",
            "User-Agent: modcore-webhook/0.1.0",
        };
        for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
            headers = curl_slist_append (headers, lines[i]);
    }
    for (int t = 0; t < ntargets; t++) {
        targets[t].url = argv[optind + t];
        targets[t].remaining = count;
        for (long k = 0; k < inflight; k++) {
            handle_t *h = &handles[t * inflight + k];
            h->target = &targets[t];
            h->easy = curl_easy_init ();
            curl_easy_setopt (h->easy, CURLOPT_URL, targets[t].url);
            curl_easy_setopt (h->easy, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt (h->easy, CURLOPT_POSTFIELDSIZE, (long)body_len);
            curl_easy_setopt (h->easy, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt (h->easy, CURLOPT_WRITEFUNCTION, s_discard);
            curl_easy_setopt (h->easy, CURLOPT_TCP_NODELAY, 1L);
            curl_easy_setopt (h->easy, CURLOPT_TIMEOUT_MS, 5000L);
            curl_easy_setopt (h->easy, CURLOPT_PRIVATE, h);
            curl_easy_setopt (h->easy, CURLOPT_NOPROXY, "*");
        }
    }
    long done = 0, failed = 0, total = count * ntargets;
    double start = fanout_now ();
    for (int i = 0; i < ntargets * inflight; i++)
        if (handles[i].target->remaining > 0) {
            handles[i].target->remaining--;
            handles[i].busy = 1;
            curl_multi_add_handle (multi, handles[i].easy);
        }
    int running = 1;
    while (done < total && fanout_now () - start < 120) {
        curl_multi_perform (multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read (multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            handle_t *h;
            curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, (char **)&h);
            long code = 0;
            curl_easy_getinfo (msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result != CURLE_OK || code < 200 || code >= 300)
                failed++;
            done++;
            curl_multi_remove_handle (multi, h->easy);
            h->busy = 0;
            if (h->target->remaining > 0) {
                h->target->remaining--;
                h->busy = 1;
                curl_multi_add_handle (multi, h->easy);
            }
        }
        if (done < total)
            curl_multi_poll (multi, NULL, 0, 100, NULL);
    }
    double secs = fanout_now () - start;
    fanout_report ("curl_fanout", label, ntargets, count, done, failed, secs,
                   "in flight per target", "inflight_per_target", inflight, csv);
    for (int i = 0; i < ntargets * inflight; i++) {
        if (handles[i].busy)
            curl_multi_remove_handle (multi, handles[i].easy);
        curl_easy_cleanup (handles[i].easy);
    }
    curl_slist_free_all (headers);
    free (body);
    curl_multi_cleanup (multi);
    curl_global_cleanup ();
    return failed ? 1 : 0;
}
