/*  webhook actor

    DESIGN. The outbox is durable: every Delivery (one event for one subscription) is
    written to the store under wh/<module>/<seq> before the eventbus acknowledges the
    publish, with group commit: all enqueue requests waiting on the socket are written
    in one synced batch, then answered (LevelDB: ~5k synced puts/s, ~270k records/s in
    synced batches of 100 - design.md).

    Delivery is at least once, per subscription in publish order: each subscription has
    a queue, and a later event never overtakes an earlier undelivered one. HTTP
    deliveries are sent by the delivery threads ([webhook] threads, webhook_http.h): the
    actor hands a subscription's first HAND_DEPTH pending deliveries to the thread that
    owns it (subscriptions are given to the threads in turn) as self-contained jobs; the
    thread sends them one after the other on its libcurl multi, over one kept-alive
    connection, and starts the next one as soon as the previous one is answered 2xx, so
    a subscription does not wait for the actor between two deliveries. The first failure
    halts the subscription at the thread (the jobs behind it come back cancelled); the
    actor then decides the head's fate (below) and hands the queue again under a new
    generation, so nothing of the old one can run after it. Native deliveries are pushed
    by the actor itself, the head only.

    The loop. One pass: take what waits on the pipe, the ROUTER and the sdk DEALER;
    start the heads that became due (every 100 ms); take the jobs the threads handed
    back and record their outcomes (the records they change go to one unsynced batch,
    written when it holds FLUSH_MAX records or is FLUSH_MS old), topping each touched
    queue up; wake the threads that were handed jobs while waiting; then poll the three
    sockets' ZMQ_FDs and the threads' eventfd. ZMQ_FD is edge-triggered, so the loop
    only waits after ZMQ_EVENTS said no socket has a message.

    Records. PENDING records are written synced before the enqueue is answered (an
    acknowledged event is never lost). An event's body is written once, next to its
    deliveries (whb/<seq>), and shared by them in memory with a count of the PENDING
    and DEAD deliveries that still need it; when the last of them is delivered (or
    forgotten) the body record is deleted in the same ordered stream of writes, so it
    never goes before the DELIVERED record that made it unneeded. Its bytes stay in
    memory while a PENDING delivery needs them; a dead letter's are read back from the
    record if it is retried. Start-up deletes body records nothing refers to (a crash
    between those two writes). What a finished attempt changes (DELIVERED, a retry's
    state, the trimming of old DELIVERED records) is unsynced: lost in a crash, it only
    means another (allowed) duplicate delivery or an attempt counted again. Those
    writes wait in one batch (about FLUSH_MS: a crash redelivers about that much); any
    other access to the store writes the batch first, so the store always sees the
    actor's writes in order. A DELIVERED record keeps no body: listings leave bodies
    out, and a delivered delivery is never sent again.

    Signing: the HMAC state keyed with a module's secret is made once per secret and
    copied into each job; the delivery thread signs when it sends (so the Standard
    Webhooks timestamp is the time of sending) and builds the headers in the job.

    Outcome of an attempt:
        2xx                 DELIVERED (kept for listing: the last 1,000 per module)
        410                 DEAD, the subscription is dropped (eventbus told) and its
                            later deliveries go DEAD too
        429                 retry after Retry-After (seconds or HTTP date), capped
        3xx (not followed), other 4xx, 5xx, timeout, connection error
                            retry with exponential backoff and jitter
    A delivery older than max_age (default one day) after a failure goes DEAD: a
    dead-letter record (synced), and the core publishes webhook.exhausted.

    Enqueued deliveries tell the registry (RegistryWake): it starts an on_demand module
    that is not running, or keeps a running one from being stopped as idle. A module is
    told at most once per WAKE_EVERY_MS (idle stops are minutes apart, and a woken module
    takes a moment to start anyway), and again when an attempt to reach it got no answer
    (it may have stopped since, with deliveries still waiting).

    A module's signing secret comes from the registry (WebhookSecret at each launch);
    deliveries to a module whose secret is not known yet (core restarted, module not
    started yet) wait. On uninstall (WebhookForget) its secret and outbox are dropped.
    Restart: every PENDING record is loaded back into its queue, in seq order. */
#include "actors/webhook.h"

#include <math.h>
#include <poll.h>
#include <sodium.h>
#include <string.h>

#include "core/actor.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "core/metrics.h"
#include "actors/webhook_http.h"
#include "envelope_cases.h"

#define KEEP_DELIVERED   1000
#define GROUP_COMMIT_MAX 512
#define SDK_REPLIES_MAX  512  // per pass
#define TICK_MS          100  // retries and waiting heads are looked at this often
#define FLUSH_MS         10   // unsynced record writes wait at most this long...
#define FLUSH_MAX        256  // ...or until this many are batched
#define HAND_DEPTH       8    // jobs a subscription may have at its delivery thread
#define WAKE_EVERY_MS    1000 // a module is sent RegistryWake at most this often

typedef struct self_t self_t;

//  A module's signing secret, and the HMAC state keyed with it.
typedef struct {
    char text[65];                      // 64 ASCII characters
    crypto_auth_hmacsha256_state keyed; // after crypto_auth_hmacsha256_init
} secret_t;

//  An event's body, shared by its deliveries (store key whb/<seq>).
typedef struct {
    uint64_t seq;     // its record's
    uint32_t refs;    // PENDING and DEAD records that refer to it: the record stays while > 0
    uint32_t pending; // PENDING deliveries among them: the bytes stay in memory while > 0
    mc_blob_t *bytes; // the event's JSON, or NULL while only dead letters need it (shared
                      // with the jobs that send it)
} body_t;

//  One subscription's queue of pending deliveries, oldest first.
typedef struct attempt_t attempt_t;

typedef struct {
    char *subscription_id; // key
    zlistx_t *pending;     // Mc__Delivery * (owned), in seq order
    size_t handed;         // HTTP: jobs of this generation out, for the first pending ones
    uint64_t gen;          // HTTP: the generation jobs are handed with (see webhook_http.h)
    uint32_t thread;       // HTTP: the delivery thread that sends its jobs
    bool touched;          // in a list of queues to top up (s_on_results, s_enqueue_batch)
    attempt_t *push;       // native: the push of the head in flight, or NULL
} queue_t;

//  A native push in flight (HTTP attempts are jobs of the delivery threads).
struct attempt_t {
    queue_t *queue;       // whose head is pushed
    uint64_t native_call; // the SdkPush call id
};

struct self_t {
    mc_context_t *ctx;       // shared context
    zsock_t *router;         // inproc://modcore.webhook
    zsock_t *eventbus;       // DEALER: notifications to the bus (410 unsubscribe, exhausted)
    zsock_t *registry;       // DEALER: RegistryWake when a delivery waits for a module
    mc_webhook_http_t *http; // the delivery threads
    bool terminated;         // $TERM received
    mc_store_batch_t *batch; // unsynced record writes not yet written (reused)
    size_t batched;          // their count
    mc_store_batch_t *group; // the synced writes of a group commit (reused)
    int64_t batch_since;     // when the batch was started (zclock_mono)
    zhashx_t *queues;        // subscription id -> queue_t *
    zhashx_t *secrets;       // module -> secret_t * (owned)
    zhashx_t *native;        // SdkPush call id (string) -> attempt_t * (pushes in flight)
    zsock_t *sdk;            // DEALER to the sdk actor (native pushes; replies in the loop)
    zhashx_t *delivered;     // module -> delivered_t: seqs of its DELIVERED records
    zhashx_t *woken;         // module -> int64_t *: when it was last sent RegistryWake
    zhashx_t *bodies;        // body seq (uint64_t *, the body's own) -> body_t * (owned)
    uint64_t next_seq;       // seq of the next outbox record
    uint64_t next_gen;       // generation of the next queue handing (from 1)
    uint32_t next_thread;    // delivery thread of the next new queue
};

//  --- signatures ------------------------------------------------------------------

void mc_webhook_sign_selena (const char *secret, const uint8_t *body, size_t len, char *out)
{
    crypto_auth_hmacsha256_state keyed;
    crypto_auth_hmacsha256_init (&keyed, (const uint8_t *)secret, strlen (secret));
    mc_webhook_sign_selena_keyed (&keyed, body, len, out);
    sodium_memzero (&keyed, sizeof keyed);
}

void mc_webhook_sign_standard (const char *secret, const char *id, int64_t timestamp,
                               const uint8_t *body, size_t len, char *out)
{
    crypto_auth_hmacsha256_state keyed;
    crypto_auth_hmacsha256_init (&keyed, (const uint8_t *)secret, strlen (secret));
    mc_webhook_sign_standard_keyed (&keyed, id, timestamp, body, len, out);
    sodium_memzero (&keyed, sizeof keyed);
}

void mc_webhook_standard_secret (const char *secret, char *out)
{
    memcpy (out, "whsec_", 6);
    sodium_bin2base64 (out + 6, 90, (const uint8_t *)secret, strlen (secret),
                       sodium_base64_VARIANT_ORIGINAL);
}

uint64_t mc_webhook_backoff_ms (uint32_t attempts, uint32_t base_ms, uint32_t cap_ms,
                                double jitter_unit)
{
    double delay = base_ms;
    for (uint32_t i = 1; i < attempts && delay < cap_ms; i++)
        delay *= 2;
    if (delay > cap_ms)
        delay = cap_ms;
    delay *= 0.8 + 0.4 * jitter_unit;
    return (uint64_t)delay;
}

//  --- outbox records ----------------------------------------------------------------

static void s_key (const char *module, uint64_t seq, char *key, size_t size)
{
    snprintf (key, size, "wh/%s/%020" PRIu64, module, seq);
}

static uint8_t *s_pack (const Mc__Delivery *d, size_t *len)
{
    *len = mc__delivery__get_packed_size (d);
    uint8_t *buf = malloc (*len ? *len : 1);
    assert (buf);
    mc__delivery__pack (d, buf);
    return buf;
}

static Mc__Delivery *s_dup (const Mc__Delivery *d)
{
    size_t len;
    uint8_t *buf = s_pack (d, &len);
    Mc__Delivery *copy = mc__delivery__unpack (NULL, len, buf);
    free (buf);
    assert (copy);
    return copy;
}

static void s_delivery_free (void **item)
{
    if (*item)
        mc__delivery__free_unpacked (*item, NULL);
    *item = NULL;
}

//  The batch of unsynced writes; the caller adds one write.
static mc_store_batch_t *s_batch (self_t *self)
{
    if (self->batched++ == 0)
        self->batch_since = zclock_mono ();
    return self->batch;
}

//  Writes the unsynced batch, if any: before any other access to the store (so that
//  reads and later writes come after it), and from the loop (s_flush_due).
static void s_flush (self_t *self)
{
    if (self->batched) {
        mc_store_batch_commit (self->ctx->store, self->batch, false);
        self->batched = 0;
    }
}

//  Milliseconds until the batch must be written (0: now), or -1 without a batch.
static int64_t s_flush_due (self_t *self)
{
    if (!self->batched)
        return -1;
    if (self->batched >= FLUSH_MAX)
        return 0;
    int64_t left = self->batch_since + FLUSH_MS - zclock_mono ();
    return left > 0 ? left : 0;
}

//  Adds d's record to a batch.
static void s_batch_put (mc_store_batch_t *batch, const Mc__Delivery *d)
{
    char key[256];
    s_key (d->module, d->seq, key, sizeof key);
    uint8_t small[1024]; // records without an inline body fit
    size_t len = mc__delivery__get_packed_size (d);
    uint8_t *buf = len <= sizeof small ? small : malloc (len);
    assert (buf);
    mc__delivery__pack (d, buf);
    mc_store_batch_put (batch, key, buf, len);
    if (buf != small)
        free (buf);
}

//  Writes d: synced, at once, for states that acknowledge something; otherwise in the
//  pass's batch. Returns 0 or -1.
static int s_save (self_t *self, const Mc__Delivery *d, bool sync)
{
    if (!sync) {
        s_batch_put (s_batch (self), d);
        return 0;
    }
    s_flush (self);
    mc_store_batch_t *one = mc_store_batch_new ();
    s_batch_put (one, d);
    return mc_store_batch_write (self->ctx->store, &one, true);
}

static void s_set_error (Mc__Delivery *d, const char *text)
{
    if (d->last_error && d->last_error != protobuf_c_empty_string)
        free (d->last_error);
    d->last_error = strdup (text);
}

//  --- shared bodies -----------------------------------------------------------------

static void s_body_key (uint64_t seq, char *key, size_t size)
{
    snprintf (key, size, "whb/%020" PRIu64, seq);
}

//  self->bodies is keyed by the body's seq, a uint64_t (the key points at body->seq).
static size_t s_seq_hash (const void *key)
{
    uint64_t x = *(const uint64_t *)key; // a finaliser of MurmurHash3: seqs are sequential
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int s_seq_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static body_t *s_body_find (self_t *self, uint64_t seq)
{
    return zhashx_lookup (self->bodies, &seq);
}

static void s_body_free (void **item)
{
    body_t *body = *item;
    if (body) {
        mc_blob_unref (&body->bytes);
        free (body);
    }
    *item = NULL;
}

//  A new body, known to the actor with no reference yet.
static body_t *s_body_new (self_t *self, uint64_t seq, const void *data, size_t len)
{
    body_t *body = calloc (1, sizeof *body);
    assert (body);
    body->seq = seq;
    body->bytes = mc_blob_new (data, len);
    int rc = zhashx_insert (self->bodies, &body->seq, body);
    assert (rc == 0); // seqs are never used twice
    return body;
}

//  The bytes to send for d, a new reference: its shared body (read back from its record
//  if only dead letters needed it until now), or its own (records from before sharing).
static mc_blob_t *s_body_of (self_t *self, const Mc__Delivery *d)
{
    if (!d->body_seq)
        return mc_blob_new (d->body.data, d->body.len);
    body_t *body = s_body_find (self, d->body_seq);
    assert (body); // referenced bodies stay until their last reference goes
    if (!body->bytes) {
        char key[32];
        s_body_key (body->seq, key, sizeof key);
        size_t len = 0;
        uint8_t *data = mc_store_get (self->ctx->store, key, &len);
        if (!data)
            zsys_error ("webhook: the body record %s cannot be read", key);
        body->bytes = mc_blob_new (data, data ? len : 0);
        free (data);
    }
    return mc_blob_ref (body->bytes);
}

//  d is PENDING (again, after a retry of a dead letter): its body's bytes are needed.
static void s_body_pend (self_t *self, const Mc__Delivery *d)
{
    body_t *body = d->body_seq ? s_body_find (self, d->body_seq) : NULL;
    if (body)
        body->pending++;
}

//  Deletes a body's record (in the unsynced batch, after the writes that made it
//  unneeded) and frees it.
static void s_body_drop (self_t *self, body_t *body)
{
    char key[32];
    s_body_key (body->seq, key, sizeof key);
    mc_store_batch_delete (s_batch (self), key);
    zhashx_delete (self->bodies, &body->seq);
}

//  d lets go of its body, in one of two ways or both. was_pending: d is PENDING no
//  longer (delivered, dead or forgotten); when no pending delivery needs the bytes they
//  leave memory (a dead letter's retry reads them back). record_gone: d's record no
//  longer refers to it (delivered or forgotten); the last reference drops the body.
static void s_body_release (self_t *self, const Mc__Delivery *d, bool was_pending, bool record_gone)
{
    body_t *body = d->body_seq ? s_body_find (self, d->body_seq) : NULL;
    if (!body)
        return;
    if (was_pending && body->pending > 0 && --body->pending == 0)
        mc_blob_unref (&body->bytes); // jobs still sending it hold their own reference
    if (record_gone && --body->refs == 0)
        s_body_drop (self, body);
}

static void s_secret_free (void **item)
{
    if (*item) {
        sodium_memzero (*item, sizeof (secret_t));
        free (*item);
    }
    *item = NULL;
}

static queue_t *s_queue (self_t *self, const char *subscription_id)
{
    queue_t *queue = zhashx_lookup (self->queues, subscription_id);
    if (!queue) {
        queue = calloc (1, sizeof *queue);
        assert (queue);
        queue->subscription_id = strdup (subscription_id);
        queue->gen = self->next_gen++;
        queue->thread = self->next_thread++; // in turn: subscriptions spread evenly
        queue->pending = zlistx_new ();
        zlistx_set_destructor (queue->pending, s_delivery_free);
        zhashx_insert (self->queues, subscription_id, queue);
    }
    return queue;
}

static void s_queue_free (void **item)
{
    queue_t *queue = *item;
    if (!queue)
        return;
    assert (!queue->push);
    zlistx_destroy (&queue->pending);
    free (queue->subscription_id);
    free (queue);
    *item = NULL;
}

//  A module's DELIVERED records, by seq, oldest first: seqs[first..count) of an array
//  that grows as needed and is moved down when half of it is spent.
typedef struct {
    uint64_t *seqs;
    size_t first, count, size;
} delivered_t;

//  Remembers a DELIVERED record (d's); deletes the oldest beyond KEEP_DELIVERED.
static void s_remember_delivered (self_t *self, const Mc__Delivery *d)
{
    delivered_t *kept = zhashx_lookup (self->delivered, d->module);
    if (!kept) {
        kept = calloc (1, sizeof *kept);
        assert (kept);
        zhashx_insert (self->delivered, d->module, kept);
    }
    if (kept->count == kept->size) {
        if (kept->first > kept->size / 2) {
            memmove (kept->seqs, kept->seqs + kept->first,
                     (kept->count - kept->first) * sizeof *kept->seqs);
            kept->count -= kept->first;
            kept->first = 0;
        } else {
            kept->size = kept->size ? kept->size * 2 : 16;
            kept->seqs = realloc (kept->seqs, kept->size * sizeof *kept->seqs);
            assert (kept->seqs);
        }
    }
    kept->seqs[kept->count++] = d->seq;
    while (kept->count - kept->first > KEEP_DELIVERED) {
        char key[256];
        s_key (d->module, kept->seqs[kept->first++], key, sizeof key);
        mc_store_batch_delete (s_batch (self), key);
    }
}

static void s_woken_free (void **item)
{
    free (*item);
    *item = NULL;
}

static void s_delivered_free (void **item)
{
    delivered_t *kept = *item;
    if (kept) {
        free (kept->seqs);
        free (kept);
    }
    *item = NULL;
}

//  Tells the registry that deliveries wait for module (see DESIGN), unless it was told
//  less than WAKE_EVERY_MS ago.
static void s_wake (self_t *self, const char *module)
{
    int64_t now = zclock_mono ();
    int64_t *last = zhashx_lookup (self->woken, module);
    if (last && now - *last < WAKE_EVERY_MS)
        return;
    if (!last) {
        last = malloc (sizeof *last);
        assert (last);
        zhashx_insert (self->woken, module, last);
    }
    *last = now;
    Mc__RegistryWake wake = MC__REGISTRY_WAKE__INIT;
    wake.name = (char *)module;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_WAKE;
    env.registry_wake = &wake;
    mc_notify (self->registry, &env);
}

//  --- attempts --------------------------------------------------------------------

static void s_kick (self_t *self, queue_t *queue);

//  The queue's jobs out at the delivery threads are let go of: they come back
//  cancelled or with results the queue ignores (an older generation). The thread is
//  told to drop the subscription when drop (its connection goes too).
static void s_new_generation (self_t *self, queue_t *queue, bool drop)
{
    queue->gen = self->next_gen++;
    queue->handed = 0;
    if (drop) {
        mc_job_t *job = mc_job_new (queue->subscription_id, NULL, NULL, NULL);
        job->drop = true;
        job->thread = queue->thread;
        mc_webhook_http_hand (self->http, job);
    }
}

//  Ends a native push: its delivery stays at the head of its queue.
static void s_abandon_push (self_t *self, queue_t *queue)
{
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, queue->push->native_call);
    zhashx_delete (self->native, key); // a late reply finds nothing
    free (queue->push);
    queue->push = NULL;
}

//  Pushes the head of queue down its module's SDK session.
static void s_push (self_t *self, queue_t *queue, Mc__Delivery *d)
{
    mc_blob_t *body = s_body_of (self, d);
    Mc__SdkPush push = MC__SDK_PUSH__INIT;
    push.module = d->module;
    push.delivery_id = d->id;
    push.json = (ProtobufCBinaryData){body->len, body->data};
    push.attempt = d->attempts + 1;
    push.timeout_ms = self->ctx->config->webhook_timeout_ms;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_SDK_PUSH;
    env.sdk_push = &push;
    attempt_t *attempt = calloc (1, sizeof *attempt);
    assert (attempt);
    attempt->queue = queue;
    attempt->native_call = mc_send_request (self->sdk, &env);
    mc_blob_unref (&body);
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, attempt->native_call);
    zhashx_insert (self->native, key, attempt);
    queue->push = attempt;
}

//  Hands d (a pending delivery of queue, after those already handed) to the delivery
//  threads.
static void s_hand (self_t *self, queue_t *queue, Mc__Delivery *d, const secret_t *secret)
{
    mc_job_t *job = mc_job_new (queue->subscription_id, d->url, d->event_id, d->event_type);
    job->thread = queue->thread;
    job->gen = queue->gen;
    job->seq = d->seq;
    job->attempt = d->attempts + 1;
    job->body = s_body_of (self, d);
    job->keyed = secret->keyed;
    queue->handed++;
    mc_webhook_http_hand (self->http, job);
}

//  Marks the head DEAD (synced dead letter), publishes webhook.exhausted unless quiet.
static void s_dead (self_t *self, queue_t *queue, const char *why, bool publish)
{
    Mc__Delivery *d = zlistx_first (queue->pending);
    d->status = MC__DELIVERY_STATUS__DELIVERY_DEAD;
    d->updated_ms = mc_time_unix_ms ();
    s_set_error (d, why);
    s_save (self, d, true);
    s_body_release (self, d, true, false); // a dead letter keeps the record, not the bytes
    zsys_warning ("webhook: delivery %s of %s to %s is dead: %s", d->id, d->event_type, d->module,
                  why);
    if (publish)
        mc_publish_core_event (self->eventbus, "webhook.exhausted",
                               json_pack ("{s:s, s:s, s:s, s:s, s:s, s:i, s:s}", "delivery_id",
                                          d->id, "event_id", d->event_id, "event_type",
                                          d->event_type, "module", d->module, "subscription_id",
                                          d->subscription_id, "attempts", (int)d->attempts,
                                          "last_error", why));
    mc_metrics_delivery (MC_DELIVERY_DEAD);
    mc_metrics_outbox_add (-1);
    zlistx_delete (queue->pending, zlistx_cursor (queue->pending));
}

//  An attempt at the head of queue is over: decide its fate. code is the HTTP status
//  (200 for an ACKed push), or 0 when no answer came, with failure saying why;
//  retry_after_s is a 429's Retry-After in seconds (curl reads both the seconds and the
//  HTTP-date forms), or 0 without one. Returns whether the head was delivered.
static bool s_settle (self_t *self, queue_t *queue, long code, const char *failure,
                      long retry_after_s)
{
    Mc__Delivery *d = zlistx_first (queue->pending);
    bool answered = code > 0;
    int64_t now = mc_time_unix_ms ();
    d->attempts++;
    d->last_status_code = (int32_t)code;
    d->updated_ms = now;
    char why[256];
    if (answered && code >= 200 && code < 300) {
        d->status = MC__DELIVERY_STATUS__DELIVERY_DELIVERED;
        s_set_error (d, "");
        d->body.len = 0; // listings leave bodies out and a delivered one is never sent again
        s_save (self, d, false); // a lost "delivered" only means one more (allowed) duplicate
        s_body_release (self, d, true, true); // after that write: gone when unneeded
        s_remember_delivered (self, d);
        zlistx_delete (queue->pending, zlistx_cursor (queue->pending));
        mc_metrics_delivery (MC_DELIVERY_DELIVERED);
        mc_metrics_outbox_add (-1);
        return true;
    }
    if (answered && code == 410) {
        //  The receiver says this subscription is gone: drop it and its backlog.
        Mc__EventUnsubscribe unsub = MC__EVENT_UNSUBSCRIBE__INIT;
        unsub.subscription_id = queue->subscription_id;
        mc_env_t env = MC__ENVELOPE__INIT;
        env.body_case = MC__ENVELOPE__BODY_EVENT_UNSUBSCRIBE;
        env.event_unsubscribe = &unsub;
        mc_notify (self->eventbus, &env);
        zsys_info ("webhook: %s answered 410, subscription %s removed", d->module,
                   queue->subscription_id);
        mc_metrics_delivery (MC_DELIVERY_GONE);
        s_dead (self, queue, "410 Gone: the subscription was removed", false);
        while (zlistx_first (queue->pending))
            s_dead (self, queue, "the subscription was removed (410 Gone)", false);
        return false;
    }
    if (!answered) {
        snprintf (why, sizeof why, "%s", failure ? failure : "no answer");
        s_wake (self, d->module); // an on_demand module may have stopped since
    } else if (code >= 300 && code < 400)
        snprintf (why, sizeof why, "HTTP %ld (redirects are not followed)", code);
    else
        snprintf (why, sizeof why, "HTTP %ld", code);
    s_set_error (d, why);
    const mc_config_t *cfg = self->ctx->config;
    uint64_t delay =
        mc_webhook_backoff_ms (d->attempts, cfg->webhook_retry_base_ms, cfg->webhook_retry_cap_ms,
                               randombytes_uniform (1000000) / 1e6);
    if (code == 429 && retry_after_s > 0) {
        delay = (uint64_t)retry_after_s * 1000;
        if (delay > cfg->webhook_retry_cap_ms)
            delay = cfg->webhook_retry_cap_ms;
    }
    if (now + (int64_t)delay - d->created_ms > (int64_t)cfg->webhook_max_age_s * 1000) {
        char dead[320];
        snprintf (dead, sizeof dead, "gave up after %u attempts: %s", d->attempts, why);
        s_dead (self, queue, dead, true);
    } else {
        d->next_attempt_ms = now + (int64_t)delay;
        s_save (self, d, false);
        mc_metrics_delivery (MC_DELIVERY_RETRIED);
    }
    return false;
}

//  A job came back from a delivery thread. Returns its queue if that may hand more.
static queue_t *s_on_job (self_t *self, mc_job_t *job)
{
    queue_t *queue = zhashx_lookup (self->queues, job->subscription_id);
    if (!queue || job->gen != queue->gen)
        return NULL; // let go of (s_new_generation): cancelled, or a result dealt with
    queue->handed--;
    Mc__Delivery *d = zlistx_first (queue->pending);
    if (job->cancelled || !d || d->seq != job->seq) { // cannot happen: see Order
        zsys_error ("webhook: a result for %s came out of order; its jobs are handed again",
                    job->subscription_id);
        s_new_generation (self, queue, true);
    } else if (!s_settle (self, queue, job->code, job->failure, job->retry_after_s))
        s_new_generation (self, queue, false); // the thread cancels the jobs behind it
    return queue;
}

//  Takes the jobs the delivery threads handed back, then tops their queues up.
static void s_on_results (self_t *self)
{
    mc_job_t **jobs;
    size_t count = mc_webhook_http_take (self->http, &jobs);
    queue_t **touched = malloc ((count ? count : 1) * sizeof *touched);
    assert (touched);
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        queue_t *queue = s_on_job (self, jobs[i]);
        if (queue && !queue->touched) {
            queue->touched = true;
            touched[n++] = queue;
        }
        mc_job_free (&jobs[i]);
    }
    free (jobs);
    for (size_t i = 0; i < n; i++) {
        touched[i]->touched = false;
        s_kick (self, touched[i]);
    }
    free (touched);
}

static bool s_native (const Mc__Delivery *d)
{
    return d->url[0] == 'n' && strcmp (d->url, "native:") == 0;
}

//  Starts what the queue can: up to HAND_DEPTH pending deliveries handed to its
//  delivery thread (the head only when due), or a native push of a due head. A
//  module's deliveries wait until its secret is known.
static void s_kick (self_t *self, queue_t *queue)
{
    Mc__Delivery *d = zlistx_first (queue->pending);
    if (!d || queue->push || queue->handed >= HAND_DEPTH)
        return;
    const secret_t *secret = zhashx_lookup (self->secrets, d->module);
    if (!secret)
        return;
    if (!queue->handed && d->next_attempt_ms > mc_time_unix_ms ())
        return;
    if (s_native (d)) {
        //  A native subscription: pushed down the module's SDK session, ACKed there.
        if (!queue->handed)
            s_push (self, queue, d);
        return;
    }
    for (size_t i = 0; d && i < queue->handed; i++)
        d = zlistx_next (queue->pending); // handed already
    for (; d && queue->handed < HAND_DEPTH; d = zlistx_next (queue->pending)) {
        if (s_native (d))
            break; // its turn comes when the jobs before it are done
        s_hand (self, queue, d, secret);
    }
}

//  Starts the heads that became due (retries) or can now go (a secret arrived).
static void s_kick_all (self_t *self)
{
    for (queue_t *queue = zhashx_first (self->queues); queue; queue = zhashx_next (self->queues))
        s_kick (self, queue);
}

//  --- requests ---------------------------------------------------------------------

//  Queues the deliveries of several enqueue requests in one synced batch, then answers
//  each request (group commit).
static void s_enqueue_batch (self_t *self, zlistx_t *requests)
{
    s_flush (self);
    mc_store_batch_t *batch = self->group;
    zlistx_t *fresh = zlistx_new ();
    zlistx_t *bodies = zlistx_new (); // body_t * of this batch
    for (mc_request_t *req = zlistx_first (requests); req; req = zlistx_next (requests)) {
        Mc__WebhookEnqueue *enqueue = req->env->webhook_enqueue;
        body_t *body = NULL;
        for (size_t i = 0; i < enqueue->n_deliveries; i++) {
            //  Taken from the request (its message lets go of them below).
            Mc__Delivery *d = enqueue->deliveries[i];
            if (!d->module || !*d->module || !d->subscription_id || !*d->subscription_id) {
                mc__delivery__free_unpacked (d, NULL);
                continue;
            }
            if (!body && enqueue->body.len > 0) {
                body = s_body_new (self, self->next_seq++, enqueue->body.data, enqueue->body.len);
                zlistx_add_end (bodies, body);
                char key[32];
                s_body_key (body->seq, key, sizeof key);
                mc_store_batch_put (batch, key, body->bytes->data, body->bytes->len);
            }
            if (body) { // else the delivery carries its own body, as records did before
                body->refs++;
                body->pending++;
                d->body_seq = body->seq;
            }
            d->seq = self->next_seq++;
            d->status = MC__DELIVERY_STATUS__DELIVERY_PENDING;
            s_batch_put (batch, d);
            zlistx_add_end (fresh, d);
        }
        enqueue->n_deliveries = 0; // they are fresh's now (the array itself is freed)
    }
    bool ok = mc_store_batch_commit (self->ctx->store, batch, true) == 0;
    if (!ok) // nothing was stored: the bodies go with the deliveries
        for (body_t *body = zlistx_first (bodies); body; body = zlistx_next (bodies))
            zhashx_delete (self->bodies, &body->seq);
    zlistx_destroy (&bodies);
    //  Answered first: the publishers wait for it, the rest does not need to go before.
    for (mc_request_t *req = zlistx_first (requests); req; req = zlistx_next (requests)) {
        if (ok) {
            mc_env_t reply = MC__ENVELOPE__INIT;
            mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
        } else
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                            "cannot store the deliveries");
    }
    if (!ok) {
        zlistx_set_destructor (fresh, s_delivery_free);
        zlistx_destroy (&fresh);
        return;
    }
    queue_t **touched = malloc ((zlistx_size (fresh) + 1) * sizeof *touched);
    assert (touched);
    size_t n = 0;
    for (Mc__Delivery *d = zlistx_first (fresh); d; d = zlistx_next (fresh)) {
        s_wake (self, d->module); // an on_demand module a delivery now waits for starts
        queue_t *queue = s_queue (self, d->subscription_id);
        zlistx_add_end (queue->pending, d);
        mc_metrics_outbox_add (1);
        if (!queue->touched) {
            queue->touched = true;
            touched[n++] = queue;
        }
    }
    zlistx_destroy (&fresh);
    //  Only the queues that grew can start something new (s_kick_all would look at
    //  every subscription of the core on every publish).
    for (size_t i = 0; i < n; i++) {
        touched[i]->touched = false;
        s_kick (self, touched[i]);
    }
    free (touched);
}

static void s_on_secret (self_t *self, mc_request_t *req)
{
    Mc__WebhookSecret *s = req->env->webhook_secret;
    if (s->module && *s->module && s->secret && strlen (s->secret) == 64) {
        secret_t *secret = malloc (sizeof *secret);
        assert (secret);
        memcpy (secret->text, s->secret, 65);
        crypto_auth_hmacsha256_init (&secret->keyed, (const uint8_t *)secret->text, 64);
        zhashx_update (self->secrets, s->module, secret);
        s_kick_all (self);
    }
    mc_env_t reply = MC__ENVELOPE__INIT;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

typedef struct {
    self_t *self;
    zlistx_t *keys; // of the records to delete
} doomed_t;

//  A record of a forgotten module: its key is kept for deletion and its body loses a
//  reference (records that are not DELIVERED hold one).
static int s_collect_doomed (const char *key, size_t klen, const void *value, size_t vlen,
                             void *arg)
{
    doomed_t *doomed = arg;
    zlistx_add_end (doomed->keys, strdup (key));
    Mc__Delivery *d = mc__delivery__unpack (NULL, vlen, value);
    if (d && d->status != MC__DELIVERY_STATUS__DELIVERY_DELIVERED)
        s_body_release (doomed->self, d, d->status == MC__DELIVERY_STATUS__DELIVERY_PENDING, true);
    if (d)
        mc__delivery__free_unpacked (d, NULL);
    return 0;
}

//  Uninstall: the module's secret, queues and records go.
static void s_on_forget (self_t *self, mc_request_t *req)
{
    const char *module = req->env->webhook_forget->module;
    s_flush (self);
    if (module && *module) {
        zhashx_delete (self->secrets, module); // wiped by s_secret_free
        zhashx_delete (self->delivered, module);
        zhashx_delete (self->woken, module);
        zlistx_t *keys = zhashx_keys (self->queues);
        for (char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
            queue_t *queue = zhashx_lookup (self->queues, key);
            Mc__Delivery *head = zlistx_first (queue->pending);
            if (head && strcmp (head->module, module) == 0) {
                if (queue->push)
                    s_abandon_push (self, queue);
                s_new_generation (self, queue, true);
                mc_metrics_outbox_add (-(int64_t)zlistx_size (queue->pending));
                zlistx_purge (queue->pending);
            }
        }
        zlistx_destroy (&keys);
        char prefix[256];
        snprintf (prefix, sizeof prefix, "wh/%s/", module);
        doomed_t doomed = {self, zlistx_new ()};
        zlistx_set_destructor (doomed.keys, (zlistx_destructor_fn *)zstr_free);
        mc_store_scan (self->ctx->store, prefix, s_collect_doomed, &doomed);
        mc_store_batch_t *batch = mc_store_batch_new ();
        for (char *key = zlistx_first (doomed.keys); key; key = zlistx_next (doomed.keys))
            mc_store_batch_delete (batch, key);
        mc_store_batch_write (self->ctx->store, &batch, true);
        zlistx_destroy (&doomed.keys);
        s_flush (self); // the bodies only they needed
    }
    mc_env_t reply = MC__ENVELOPE__INIT;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

typedef struct {
    Mc__WebhookList *query; // filter
    zlistx_t *found;        // Mc__Delivery * (owned), oldest first
    const char *id;         // or: find this delivery id
} scan_t;

static int s_scan_one (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    scan_t *scan = arg;
    Mc__Delivery *d = mc__delivery__unpack (NULL, vlen, value);
    if (!d)
        return 0;
    bool keep = scan->id ? strcmp (d->id, scan->id) == 0
                         : (!scan->query->filter_status || d->status == scan->query->status);
    if (keep) {
        zlistx_add_end (scan->found, d);
        if (scan->id)
            return 1;
    } else
        mc__delivery__free_unpacked (d, NULL);
    return 0;
}

//  Orders deliveries by seq: enqueue order, one counter for every module.
static int s_by_seq (const void *a, const void *b)
{
    uint64_t x = ((const Mc__Delivery *)a)->seq, y = ((const Mc__Delivery *)b)->seq;
    return x < y ? -1 : x > y;
}

//  Newest first, at most limit; the body is left out of listings.
static void s_on_list (self_t *self, mc_request_t *req)
{
    Mc__WebhookList *query = req->env->webhook_list;
    s_flush (self);
    char prefix[256];
    snprintf (prefix, sizeof prefix, "wh/%s%s", query->module ? query->module : "",
              query->module && *query->module ? "/" : "");
    scan_t scan = {query, zlistx_new (), NULL};
    zlistx_set_destructor (scan.found, s_delivery_free);
    mc_store_scan (self->ctx->store, prefix, s_scan_one, &scan);
    if (!query->module || !*query->module) { // the scan went module by module
        zlistx_set_comparator (scan.found, s_by_seq);
        zlistx_sort (scan.found);
    }
    //  The in-memory queue state is newer than the store for pending heads' attempts.
    uint32_t limit = query->limit ? query->limit : 100;
    if (limit > 1000)
        limit = 1000;
    size_t count = 0;
    Mc__Delivery **items = calloc (limit + 1, sizeof *items);
    for (Mc__Delivery *d = zlistx_last (scan.found); d && count < limit;
         d = zlistx_prev (scan.found)) {
        d->body.len = 0;
        items[count++] = d;
    }
    Mc__DeliveryList list = MC__DELIVERY_LIST__INIT;
    list.n_deliveries = count;
    list.deliveries = items;
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_DELIVERY_LIST;
    reply.delivery_list = &list;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    free (items);
    zlistx_destroy (&scan.found);
}

//  Retry now: a pending delivery is made due; a dead one goes back to the end of its
//  subscription's queue with a fresh age.
static void s_on_retry (self_t *self, mc_request_t *req)
{
    Mc__WebhookRetry *retry = req->env->webhook_retry;
    s_flush (self);
    Mc__WebhookList all = MC__WEBHOOK_LIST__INIT;
    scan_t scan = {&all, zlistx_new (), retry->delivery_id ? retry->delivery_id : ""};
    zlistx_set_destructor (scan.found, s_delivery_free);
    char prefix[256];
    snprintf (prefix, sizeof prefix, "wh/%s%s", retry->module ? retry->module : "",
              retry->module && *retry->module ? "/" : "");
    mc_store_scan (self->ctx->store, prefix, s_scan_one, &scan);
    Mc__Delivery *d = zlistx_first (scan.found);
    if (!d) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_NOT_FOUND, "DELIVERY_NOT_FOUND", "no such delivery");
    } else if (d->status == MC__DELIVERY_STATUS__DELIVERY_DELIVERED) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_CONFLICT, "ALREADY_DELIVERED",
                        "delivery %s was delivered already", d->id);
    } else {
        int64_t now = mc_time_unix_ms ();
        queue_t *queue = s_queue (self, d->subscription_id);
        if (d->status == MC__DELIVERY_STATUS__DELIVERY_PENDING) {
            for (Mc__Delivery *p = zlistx_first (queue->pending); p;
                 p = zlistx_next (queue->pending))
                if (strcmp (p->id, d->id) == 0)
                    p->next_attempt_ms = now;
        } else {
            char old[256];
            s_key (d->module, d->seq, old, sizeof old);
            d->status = MC__DELIVERY_STATUS__DELIVERY_PENDING;
            d->seq = self->next_seq++;
            d->created_ms = d->next_attempt_ms = d->updated_ms = now;
            d->attempts = 0;
            s_set_error (d, "");
            mc_store_batch_t *batch = mc_store_batch_new ();
            mc_store_batch_delete (batch, old);
            s_batch_put (batch, d);
            mc_store_batch_write (self->ctx->store, &batch, true);
            zlistx_add_end (queue->pending, s_dup (d));
            s_body_pend (self, d); // its bytes are read back when it is attempted
            mc_metrics_outbox_add (1);
        }
        s_kick (self, queue);
        d->body.len = 0;
        mc_env_t reply = MC__ENVELOPE__INIT;
        reply.body_case = MC__ENVELOPE__BODY_DELIVERY;
        reply.delivery = d;
        mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    }
    zlistx_destroy (&scan.found);
}

static void s_on_request (self_t *self)
{
    zlistx_t *enqueues = zlistx_new ();
    zlistx_set_destructor (enqueues, (zlistx_destructor_fn *)mc_request_destroy);
    //  Take everything waiting (up to a bound), so enqueues share one synced write.
    for (size_t n = 0; n < GROUP_COMMIT_MAX && (zsock_events (self->router) & ZMQ_POLLIN); n++) {
        mc_request_t *req = mc_request_recv (self->router);
        if (!req)
            continue;
        switch (req->env->body_case) {
            case MC__ENVELOPE__BODY_WEBHOOK_ENQUEUE:
                zlistx_add_end (enqueues, req);
                req = NULL;
                break;
            case MC__ENVELOPE__BODY_WEBHOOK_SECRET:
                s_on_secret (self, req);
                break;
            case MC__ENVELOPE__BODY_WEBHOOK_FORGET:
                s_on_forget (self, req);
                break;
            case MC__ENVELOPE__BODY_WEBHOOK_LIST:
                s_on_list (self, req);
                break;
            case MC__ENVELOPE__BODY_WEBHOOK_RETRY:
                s_on_retry (self, req);
                break;
                MC_CASES_NOT_FOR_WEBHOOK
                mc_reply_error (self->router, req->routing_id, req->env->request_id,
                                MC__STATUS__STATUS_BAD_REQUEST, "UNSUPPORTED",
                                "webhook does not handle this message");
                break;
        }
        mc_request_destroy (&req);
    }
    if (zlistx_size (enqueues))
        s_enqueue_batch (self, enqueues);
    zlistx_destroy (&enqueues);
}

//  The sdk actor's answer to a push: ACKed (OK) or not (NOT_CONNECTED, NACK, TIMEOUT).
static void s_on_sdk (self_t *self)
{
    zframe_t *frame = zframe_recv (self->sdk);
    mc_env_t *reply = mc_env_unpack (frame);
    zframe_destroy (&frame);
    if (!reply)
        return;
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, reply->request_id);
    attempt_t *attempt = zhashx_lookup (self->native, key);
    if (attempt) {
        queue_t *queue = attempt->queue;
        s_abandon_push (self, queue);
        char why[300];
        snprintf (why, sizeof why, "native push: %s", reply->detail ? reply->detail : "failed");
        s_settle (self, queue, reply->status == MC__STATUS__STATUS_OK ? 200 : 0, why, 0);
        s_kick (self, queue);
    }
    mc_env_free (reply);
}

static void s_on_pipe (self_t *self, zsock_t *pipe)
{
    char *command = zstr_recv (pipe);
    if (!command || streq (command, "$TERM"))
        self->terminated = true;
    zstr_free (&command);
}

static bool s_readable (zsock_t *sock)
{
    return (zsock_events (sock) & ZMQ_POLLIN) != 0;
}

//  The loop (see DESIGN at the top).
static void s_run (self_t *self, zsock_t *pipe)
{
    struct pollfd waits[] = {
        {zsock_fd (pipe), POLLIN, 0},
        {zsock_fd (self->router), POLLIN, 0},
        {zsock_fd (self->sdk), POLLIN, 0},
        {mc_webhook_http_fd (self->http), POLLIN, 0},
    };
    //  Sockets that may have a message: their ZMQ_FD fired, or ZMQ_EVENTS said so.
    bool pipe_ready = true, router_ready = true, sdk_ready = true, results_ready = true;
    int64_t next_tick = zclock_mono () + TICK_MS;
    while (!self->terminated) {
        if (pipe_ready && s_readable (pipe))
            s_on_pipe (self, pipe);
        if (router_ready && s_readable (self->router))
            s_on_request (self);
        for (size_t n = 0; sdk_ready && n < SDK_REPLIES_MAX && s_readable (self->sdk); n++)
            s_on_sdk (self);
        int64_t now = zclock_mono ();
        if (now >= next_tick) {
            s_kick_all (self);
            next_tick = now + TICK_MS;
        }
        if (results_ready)
            s_on_results (self);
        mc_webhook_http_flush (self->http); // wakes the threads handed jobs in this pass
        int64_t flush = s_flush_due (self);
        if (flush == 0) {
            s_flush (self);
            flush = -1;
        }
        //  ZMQ_EVENTS last: it re-arms the edge-triggered ZMQ_FDs (sends of this pass
        //  may have consumed their edge), so a message that is already waiting is
        //  taken on the next pass instead of being slept on.
        pipe_ready = s_readable (pipe);
        router_ready = s_readable (self->router);
        sdk_ready = s_readable (self->sdk);
        int64_t timeout = 0;
        if (!pipe_ready && !router_ready && !sdk_ready) {
            timeout = next_tick - zclock_mono ();
            if (flush >= 0 && flush < timeout)
                timeout = flush;
            if (timeout < 0)
                timeout = 0;
        }
        if (poll (waits, 4, (int)timeout) < 0 && errno != EINTR)
            zsys_error ("webhook: poll: %s", strerror (errno));
        pipe_ready = pipe_ready || waits[0].revents;
        router_ready = router_ready || waits[1].revents;
        sdk_ready = sdk_ready || waits[2].revents;
        results_ready = waits[3].revents != 0;
    }
}

//  Start-up, first: the shared bodies (without references yet).
static int s_load_body (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    self_t *self = arg;
    uint64_t seq = strtoull (key + 4, NULL, 10);
    if (seq == 0)
        return 0;
    s_body_new (self, seq, value, vlen);
    if (seq >= self->next_seq)
        self->next_seq = seq + 1;
    return 0;
}

//  Then the records: pending ones back into their queues, delivered keys remembered.
static int s_load_one (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    self_t *self = arg;
    Mc__Delivery *d = mc__delivery__unpack (NULL, vlen, value);
    if (!d) {
        zsys_warning ("webhook: skipped an unreadable outbox record %s", key);
        return 0;
    }
    if (d->seq >= self->next_seq)
        self->next_seq = d->seq + 1;
    if (d->body_seq && d->status != MC__DELIVERY_STATUS__DELIVERY_DELIVERED) {
        body_t *body = s_body_find (self, d->body_seq);
        if (body) {
            body->refs++;
            body->pending += d->status == MC__DELIVERY_STATUS__DELIVERY_PENDING;
        } else {
            //  Cannot happen (a body goes after its last reference): not sendable.
            zsys_error ("webhook: the body of delivery %s is missing; it is dead", d->id);
            d->status = MC__DELIVERY_STATUS__DELIVERY_DEAD;
            d->body_seq = 0;
            s_set_error (d, "the event's body is missing from the outbox");
            s_save (self, d, false);
        }
    }
    if (d->status == MC__DELIVERY_STATUS__DELIVERY_PENDING) {
        zlistx_add_end (s_queue (self, d->subscription_id)->pending, d);
        mc_metrics_outbox_add (1);
        return 0;
    }
    if (d->status == MC__DELIVERY_STATUS__DELIVERY_DELIVERED)
        s_remember_delivered (self, d);
    mc__delivery__free_unpacked (d, NULL);
    return 0;
}

void mc_webhook_actor (zsock_t *pipe, void *args)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = args;
    self->next_seq = 1;
    self->router = mc_actor_bind ("webhook");
    self->eventbus = mc_client_new ("eventbus");
    self->registry = mc_client_new ("registry");
    self->sdk = mc_client_new ("sdk");
    self->native = zhashx_new ();
    self->queues = zhashx_new ();
    zhashx_set_destructor (self->queues, s_queue_free);
    self->secrets = zhashx_new ();
    zhashx_set_destructor (self->secrets, s_secret_free);
    self->delivered = zhashx_new ();
    zhashx_set_destructor (self->delivered, s_delivered_free);
    self->woken = zhashx_new ();
    zhashx_set_destructor (self->woken, s_woken_free);
    self->next_gen = 1;
    self->http = mc_webhook_http_new (self->ctx->config->webhook_threads,
                                      self->ctx->config->webhook_timeout_ms);
    self->bodies = zhashx_new ();
    zhashx_set_destructor (self->bodies, s_body_free);
    zhashx_set_key_duplicator (self->bodies, NULL);
    zhashx_set_key_destructor (self->bodies, NULL);
    zhashx_set_key_hasher (self->bodies, s_seq_hash);
    zhashx_set_key_comparator (self->bodies, s_seq_compare);
    self->batch = mc_store_batch_new ();
    self->group = mc_store_batch_new ();
    bool ok = self->router && self->eventbus && self->http &&
              mc_store_scan (self->ctx->store, "whb/", s_load_body, self) == 0 &&
              mc_store_scan (self->ctx->store, "wh/", s_load_one, self) == 0;
    //  Bodies nothing refers to: left by a crash between a DELIVERED write and the
    //  body's deletion.
    zlistx_t *orphans = zlistx_new ();
    for (body_t *body = zhashx_first (self->bodies); body; body = zhashx_next (self->bodies))
        if (body->refs == 0)
            zlistx_add_end (orphans, body);
        else if (body->pending == 0) // only dead letters need it: read back on a retry
            mc_blob_unref (&body->bytes);
    for (body_t *body = zlistx_first (orphans); body; body = zlistx_next (orphans))
        s_body_drop (self, body);
    zlistx_destroy (&orphans);
    size_t pending = 0;
    for (queue_t *q = zhashx_first (self->queues); q; q = zhashx_next (self->queues))
        pending += zlistx_size (q->pending);
    s_flush (self); // the loading trimmed old DELIVERED records
    if (mc_actor_ready (pipe, ok ? 0 : -1) == 0) {
        zsys_info ("webhook: %zu pending deliveries in the outbox", pending);
        s_run (self, pipe);
    }
    //  In-flight attempts are abandoned; their records stay PENDING and resume later.
    mc_webhook_http_destroy (&self->http);
    for (queue_t *q = zhashx_first (self->queues); q; q = zhashx_next (self->queues))
        if (q->push)
            s_abandon_push (self, q);
    s_flush (self);
    zhashx_destroy (&self->queues);
    zhashx_destroy (&self->secrets);
    zhashx_destroy (&self->delivered);
    zhashx_destroy (&self->woken);
    zhashx_destroy (&self->bodies);
    mc_store_batch_destroy (&self->batch);
    mc_store_batch_destroy (&self->group);
    zsock_destroy (&self->router);
    zsock_destroy (&self->eventbus);
    zsock_destroy (&self->registry);
    zsock_destroy (&self->sdk);
    zhashx_destroy (&self->native);
    free (self);
}
