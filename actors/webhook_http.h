/*  webhook_http: the webhook actor's delivery threads.

    Each thread runs libcurl multi for the subscriptions given to it (the actor gives
    each subscription a thread, in turn, and sends all its jobs there),
    with one request in flight per subscription, in the order the actor handed them.
    The actor keeps the outbox, its records and the decisions; a thread only sends.

    A job is self-contained (URL, body reference, the keyed HMAC state, the fields the
    headers carry), so a thread never reads the actor's memory: the actor may forget a
    subscription while its jobs are out. A thread signs when it starts the request, so
    the Standard Webhooks timestamp is the time of sending.

    Order. A subscription's jobs run one after the other. The first one that does not
    end in 2xx halts the subscription: the thread hands back the jobs behind it as
    cancelled, and cancels any job of the same or an older generation that arrives
    later (handed before the actor saw the failure). The actor gives a subscription a
    new generation when it sees a failure, so its next jobs (the retry of the head
    first) run again. */
#ifndef MC_WEBHOOK_HTTP_H
#define MC_WEBHOOK_HTTP_H

#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Bytes shared between the actor and its delivery threads (an event's body): freed
//  with the last reference.
typedef struct {
    atomic_uint refs;
    size_t len;
    uint8_t data[];
} mc_blob_t;

mc_blob_t *mc_blob_new (const void *data, size_t len); // one reference
mc_blob_t *mc_blob_ref (mc_blob_t *blob);
void mc_blob_unref (mc_blob_t **blob);

//  One HTTP attempt at one delivery: handed to a delivery thread, handed back with its
//  result (or cancelled). A job with drop set is an order instead: the thread lets go
//  of the subscription (its connection, and the jobs it holds, handed back cancelled).
typedef struct {
    //  Set by the actor (the strings live in the job's own allocation).
    const char *subscription_id;
    uint32_t thread; // the delivery thread (modulo their count): the same for every job
                     // of a subscription
    uint64_t gen;    // the subscription's generation when handed (see Order)
    uint64_t seq;    // the delivery's
    const char *url;
    const char *event_id;
    const char *event_type;
    uint32_t attempt; // X-Delivery-Attempt
    mc_blob_t *body;
    crypto_auth_hmacsha256_state keyed; // the module's secret, keyed (wiped on free)
    bool drop;
    //  Set by the thread.
    long code;           // HTTP status, or 0 without an answer
    const char *failure; // then why (static text)
    long retry_after_s;  // a 429's Retry-After in seconds, or 0
    bool cancelled;      // not attempted (see Order)
} mc_job_t;

//  A job with copies of these strings (url, event_id and event_type may be NULL: "").
mc_job_t *mc_job_new (const char *subscription_id, const char *url, const char *event_id,
                      const char *event_type);
void mc_job_free (mc_job_t **job);

typedef struct mc_webhook_http_t mc_webhook_http_t;

//  Starts `threads` delivery threads (named mc-webhook-N) with this per-request
//  timeout. NULL if one cannot be started.
mc_webhook_http_t *mc_webhook_http_new (size_t threads, uint32_t timeout_ms);

//  Stops and joins the threads; the jobs they hold are freed.
void mc_webhook_http_destroy (mc_webhook_http_t **self);

//  Hands a job over (the thread owns it now); a thread waiting for work is woken by the
//  next flush (one wake-up for a pass's jobs), a busy one takes it at its next pass.
void mc_webhook_http_hand (mc_webhook_http_t *self, mc_job_t *job);
void mc_webhook_http_flush (mc_webhook_http_t *self);

//  Readable while results wait (an eventfd); mc_webhook_http_take reads it.
int mc_webhook_http_fd (mc_webhook_http_t *self);

//  Takes every job handed back so far, in the order the threads finished them (each
//  subscription's in its own order); *jobs is the caller's to free. Returns the count.
size_t mc_webhook_http_take (mc_webhook_http_t *self, mc_job_t ***jobs);

//  HMAC signatures from a state already keyed with a module's secret (the header
//  values of mc_webhook_sign_selena and mc_webhook_sign_standard).
void mc_webhook_sign_selena_keyed (const crypto_auth_hmacsha256_state *keyed, const uint8_t *body,
                                   size_t len, char *out);
void mc_webhook_sign_standard_keyed (const crypto_auth_hmacsha256_state *keyed, const char *id,
                                     int64_t timestamp, const uint8_t *body, size_t len, char *out);

#endif
