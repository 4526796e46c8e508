/*  wh_threads: the webhook actor's delivery threads alone (actors/webhook_http.c), a
    step between scenario 5's two ends. It hands the threads signed deliveries to every
    target URL, COUNT each, as the actor does (each subscription's first 8 at once,
    one more for each that comes back, one in flight per subscription, the same keyed
    HMAC state and header lines), but with no outbox, no records and no publisher: what
    the delivery threads cost by themselves, to compare with curl_fanout (libcurl
    alone) and with the whole core.

    usage: wh_threads --count N [--threads T] [--body-bytes B] [--csv FILE --label L] URL...
    Prints: deliveries, seconds, deliveries/s, failures. Exits 1 if any delivery failed
    (a non-2xx answer halts a subscription: the run stops there). */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/webhook_http.h"
#include "fanout.h"

#define HAND_DEPTH 8 // as the webhook actor's

typedef struct {
    char id[16]; // subscription id
    long handed; // jobs out at the thread
    long next;   // index of the next delivery to hand
    bool failed; // halted by a failure
} target_t;

static void s_hand (mc_webhook_http_t *http, target_t *t, uint32_t index, const char *url,
                    mc_blob_t *body, const crypto_auth_hmacsha256_state *keyed)
{
    char event_id[40];
    snprintf (event_id, sizeof event_id, "00000000-0000-4000-8000-%012ld", t->next);
    mc_job_t *job = mc_job_new (t->id, url, event_id, "bench.tick");
    job->thread = index;
    job->gen = 1;
    job->seq = (uint64_t)t->next + 1;
    job->attempt = 1;
    job->body = mc_blob_ref (body);
    job->keyed = *keyed;
    t->next++;
    t->handed++;
    mc_webhook_http_hand (http, job);
}

int main (int argc, char **argv)
{
    static const struct option options[] = {
        {"count", required_argument, NULL, 'n'},      {"threads", required_argument, NULL, 't'},
        {"body-bytes", required_argument, NULL, 'b'}, {"csv", required_argument, NULL, 'o'},
        {"label", required_argument, NULL, 'l'},      {NULL, 0, NULL, 0},
    };
    long count = 1000, threads = 2, body_bytes = 200;
    const char *csv = NULL, *label = "wh_threads";
    int opt;
    while ((opt = getopt_long (argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
            case 'n':
                count = atol (optarg);
                break;
            case 't':
                threads = atol (optarg);
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
            default:
                fprintf (stderr, "usage: wh_threads --count N [--threads T] [--body-bytes B] "
                                 "[--csv FILE --label L] URL...\n");
                return 2;
        }
    }
    int ntargets = argc - optind;
    if (ntargets < 1 || count < 1 || threads < 1 || threads > 16) {
        fprintf (stderr, "wh_threads: give --count >= 1, --threads 1..16 and at least one URL\n");
        return 2;
    }
    if (sodium_init () < 0)
        return 1;
    size_t len;
    char *text = fanout_body (body_bytes, &len); // as curl_fanout's
    mc_blob_t *body = mc_blob_new (text, len);
    free (text);
    char secret[65];
    memset (secret, 's', 64);
    secret[64] = 0;
    crypto_auth_hmacsha256_state keyed;
    crypto_auth_hmacsha256_init (&keyed, (const uint8_t *)secret, 64);

    mc_webhook_http_t *http = mc_webhook_http_new ((size_t)threads, 5000);
    if (!http) {
        fprintf (stderr, "wh_threads: cannot start the delivery threads\n");
        return 1;
    }
    target_t *targets = calloc ((size_t)ntargets, sizeof *targets);
    long done = 0, failed = 0, total = count * ntargets;
    double start = fanout_now ();
    for (int i = 0; i < ntargets; i++) {
        snprintf (targets[i].id, sizeof targets[i].id, "sub-%d", i);
        while (targets[i].next < count && targets[i].handed < HAND_DEPTH)
            s_hand (http, &targets[i], (uint32_t)i, argv[optind + i], body, &keyed);
    }
    mc_webhook_http_flush (http);
    struct pollfd wait = {mc_webhook_http_fd (http), POLLIN, 0};
    while (done + failed < total && fanout_now () - start < 120) {
        if (poll (&wait, 1, 100) <= 0)
            continue;
        mc_job_t **jobs;
        size_t n = mc_webhook_http_take (http, &jobs);
        for (size_t j = 0; j < n; j++) {
            mc_job_t *job = jobs[j];
            int i = atoi (job->subscription_id + 4);
            target_t *t = &targets[i];
            t->handed--;
            if (job->cancelled || job->code < 200 || job->code >= 300) {
                if (!t->failed)
                    fprintf (stderr, "wh_threads: %s: %ld %s\n", argv[optind + i], job->code,
                             job->cancelled ? "(cancelled)" : job->failure);
                t->failed = true;
                failed++;
            } else {
                done++;
                if (t->next < count && !t->failed)
                    s_hand (http, t, (uint32_t)i, argv[optind + i], body, &keyed);
            }
            mc_job_free (&job);
        }
        free (jobs);
        mc_webhook_http_flush (http);
        //  A halted subscription sends no more: what it still had to send counts as
        //  failed, so the run ends.
        for (int i = 0; i < ntargets; i++)
            if (targets[i].failed && targets[i].handed == 0 && targets[i].next < count) {
                failed += count - targets[i].next;
                targets[i].next = count;
            }
    }
    double secs = fanout_now () - start;
    fanout_report ("wh_threads", label, ntargets, count, done, failed, secs, "delivery threads",
                   "threads", threads, csv);
    mc_webhook_http_destroy (&http);
    mc_blob_unref (&body);
    sodium_memzero (&keyed, sizeof keyed);
    free (targets);
    return failed ? 1 : 0;
}
