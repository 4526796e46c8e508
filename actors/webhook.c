/*  webhook actor

    DESIGN. The outbox is durable: every Delivery (one event for one subscription) is
    written to the store under wh/<module>/<seq> before the eventbus acknowledges the
    publish, with group commit: all enqueue requests waiting on the socket are written
    in one synced batch, then answered (LevelDB: ~5k synced puts/s, ~270k records/s in
    synced batches of 100 - design.md).

    Delivery is at least once, per subscription in publish order: each subscription has
    a queue, and only its head is ever in flight, so a later event never overtakes an
    earlier undelivered one. Attempts run on libcurl multi, each subscription reusing
    one easy handle (and so its kept-alive connection), so thousands can be in flight
    without blocking the actor.

    The loop. One pass: take what waits on the pipe, the ROUTER and the sdk DEALER;
    start the heads that became due (every 100 ms); curl_multi_perform once; handle
    every finished transfer (the records they change go to one unsynced batch, written
    when it holds FLUSH_MAX records or is FLUSH_MS old); then wait in curl_multi_poll
    on curl's sockets plus the three sockets' ZMQ_FDs. ZMQ_FD is edge-triggered, so
    the loop only waits after ZMQ_EVENTS said no socket has a message. This replaces a
    zloop with curl's sockets registered in it: every socket curl added or removed
    (several per delivery on kept-alive connections) made zloop rebuild its poll set
    and stop handling the other ready sockets of that pass, so each delivery cost a
    pass over every subscription's socket (the profile showed two thirds of the thread
    in zloop and poll with 100 subscribers).

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
    copied for each signature; the request headers are built in the attempt itself.

    Outcome of an attempt:
        2xx                 DELIVERED (kept for listing: the last 1,000 per module)
        410                 DEAD, the subscription is dropped (eventbus told) and its
                            later deliveries go DEAD too
        429                 retry after Retry-After (seconds or HTTP date), capped
        3xx (not followed), other 4xx, 5xx, timeout, connection error
                            retry with exponential backoff and jitter
    A delivery older than max_age (default one day) after a failure goes DEAD: a
    dead-letter record (synced), and the core publishes webhook.exhausted.

    Every enqueued delivery tells the registry (RegistryWake, once per module and batch):
    it starts an on_demand module that is not running, or keeps a running one from
    being stopped as idle.

    A module's signing secret comes from the registry (WebhookSecret at each launch);
    deliveries to a module whose secret is not known yet (core restarted, module not
    started yet) wait. On uninstall (WebhookForget) its secret and outbox are dropped.
    Restart: every PENDING record is loaded back into its queue, in seq order. */
#include "actors/webhook.h"

#include <curl/curl.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <string.h>

#include "core/actor.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "core/metrics.h"
#include "envelope_cases.h"

#define KEEP_DELIVERED   1000
#define GROUP_COMMIT_MAX 512
#define SDK_REPLIES_MAX  512 // per pass
#define TICK_MS          100 // retries and waiting heads are looked at this often
#define FLUSH_MS         10  // unsynced record writes wait at most this long...
#define FLUSH_MAX        256 // ...or until this many are batched
#define HEADERS_MAX      10  // request header lines

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
    size_t len;       // of data
    uint8_t *data;    // the event's JSON bytes, or NULL while only dead letters need them
} body_t;

//  One subscription's queue of pending deliveries, oldest first.
typedef struct attempt_t attempt_t;

typedef struct {
    char *subscription_id; // key
    zlistx_t *pending;     // Mc__Delivery * (owned), in seq order
    bool in_flight;        // the head is being attempted
    attempt_t *attempt;    // that attempt, while in_flight
    CURL *easy;            // this subscription's transfer, reused, or NULL until the first
    char *url;             // the URL easy was last given (curl parses it when set)
} queue_t;

//  An attempt in progress.
struct attempt_t {
    self_t *owner;          // the actor
    queue_t *queue;         // whose head is attempted
    Mc__Delivery *delivery; // the head (borrowed from the queue)
    CURL *easy;             // the queue's transfer (HTTP, borrowed), or NULL (native push)
    //  The request headers: a curl_slist curl reads, built here in place (no allocation
    //  per line; curl neither copies nor frees the list).
    struct curl_slist header_nodes[HEADERS_MAX];
    char header_lines[HEADERS_MAX][256];
    size_t headers;       // lines used
    uint64_t native_call; // the SdkPush call id (native push), or 0
};

struct self_t {
    mc_context_t *ctx;       // shared context
    zsock_t *router;         // inproc://modcore.webhook
    zsock_t *eventbus;       // DEALER: notifications to the bus (410 unsubscribe, exhausted)
    zsock_t *registry;       // DEALER: RegistryWake when a delivery waits for a module
    CURLM *multi;            // libcurl multi
    bool terminated;         // $TERM received
    mc_store_batch_t *batch; // unsynced record writes not yet written, or NULL
    size_t batched;          // their count
    int64_t batch_since;     // when the batch was started (zclock_mono)
    zhashx_t *queues;        // subscription id -> queue_t *
    zhashx_t *secrets;       // module -> secret_t * (owned)
    zhashx_t *native;        // SdkPush call id (string) -> attempt_t * (pushes in flight)
    zsock_t *sdk;            // DEALER to the sdk actor (native pushes; replies in the loop)
    zhashx_t *delivered;     // module -> zlistx of store keys of DELIVERED records, oldest first
    zhashx_t *bodies;        // body seq (decimal) -> body_t * (owned)
    uint64_t next_seq;       // seq of the next outbox record
    size_t in_flight;        // attempts running
};

//  --- signatures ------------------------------------------------------------------

//  HMAC-SHA256 of the parts, from a state already keyed with the secret (the keying
//  is the same for every message of a module, so the actor does it once per secret).
static void s_hmac (const crypto_auth_hmacsha256_state *keyed, const uint8_t *parts[],
                    const size_t lens[], size_t n, uint8_t mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state state = *keyed;
    for (size_t i = 0; i < n; i++)
        crypto_auth_hmacsha256_update (&state, parts[i], lens[i]);
    crypto_auth_hmacsha256_final (&state, mac);
    sodium_memzero (&state, sizeof state);
}

static void s_sign_selena (const crypto_auth_hmacsha256_state *keyed, const uint8_t *body,
                           size_t len, char *out)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    const uint8_t *parts[] = {body};
    size_t lens[] = {len};
    s_hmac (keyed, parts, lens, 1, mac);
    memcpy (out, "sha256=", 7);
    sodium_bin2hex (out + 7, 65, mac, sizeof mac);
}

static void s_sign_standard (const crypto_auth_hmacsha256_state *keyed, const char *id,
                             int64_t timestamp, const uint8_t *body, size_t len, char *out)
{
    char stamp[32];
    int n = snprintf (stamp, sizeof stamp, ".%lld.", (long long)timestamp);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    const uint8_t *parts[] = {(const uint8_t *)id, (const uint8_t *)stamp, body};
    size_t lens[] = {strlen (id), (size_t)n, len};
    s_hmac (keyed, parts, lens, 3, mac);
    memcpy (out, "v1,", 3);
    sodium_bin2base64 (out + 3, 49, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
}

void mc_webhook_sign_selena (const char *secret, const uint8_t *body, size_t len, char *out)
{
    crypto_auth_hmacsha256_state keyed;
    crypto_auth_hmacsha256_init (&keyed, (const uint8_t *)secret, strlen (secret));
    s_sign_selena (&keyed, body, len, out);
    sodium_memzero (&keyed, sizeof keyed);
}

void mc_webhook_sign_standard (const char *secret, const char *id, int64_t timestamp,
                               const uint8_t *body, size_t len, char *out)
{
    crypto_auth_hmacsha256_state keyed;
    crypto_auth_hmacsha256_init (&keyed, (const uint8_t *)secret, strlen (secret));
    s_sign_standard (&keyed, id, timestamp, body, len, out);
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

static void s_key (const Mc__Delivery *d, char *key, size_t size)
{
    snprintf (key, size, "wh/%s/%020" PRIu64, d->module, d->seq);
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

//  The batch of unsynced writes, made when first needed; the caller adds one write.
static mc_store_batch_t *s_batch (self_t *self)
{
    if (!self->batch) {
        self->batch = mc_store_batch_new ();
        self->batched = 0;
        self->batch_since = zclock_mono ();
    }
    self->batched++;
    return self->batch;
}

//  Writes the unsynced batch, if any: before any other access to the store (so that
//  reads and later writes come after it), and from the loop (s_flush_due).
static void s_flush (self_t *self)
{
    if (self->batch)
        mc_store_batch_write (self->ctx->store, &self->batch, false);
}

//  Milliseconds until the batch must be written (0: now), or -1 without a batch.
static int64_t s_flush_due (self_t *self)
{
    if (!self->batch)
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
    s_key (d, key, sizeof key);
    size_t len;
    uint8_t *buf = s_pack (d, &len);
    mc_store_batch_put (batch, key, buf, len);
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

//  The name of a body in self->bodies.
typedef struct {
    char text[24];
} body_name_t;

static body_name_t s_body_name (uint64_t seq)
{
    body_name_t name;
    snprintf (name.text, sizeof name.text, "%" PRIu64, seq);
    return name;
}

static body_t *s_body_find (self_t *self, uint64_t seq)
{
    return zhashx_lookup (self->bodies, s_body_name (seq).text);
}

static void s_body_free (void **item)
{
    body_t *body = *item;
    if (body) {
        free (body->data);
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
    body->len = len;
    body->data = malloc (len ? len : 1);
    assert (body->data);
    if (len)
        memcpy (body->data, data, len);
    zhashx_update (self->bodies, s_body_name (seq).text, body);
    return body;
}

//  The bytes to send for d: its shared body (read back from its record if only dead
//  letters needed it until now), or its own (records from before sharing).
static ProtobufCBinaryData s_body_of (self_t *self, const Mc__Delivery *d)
{
    if (!d->body_seq)
        return d->body;
    body_t *body = s_body_find (self, d->body_seq);
    assert (body); // referenced bodies stay until their last reference goes
    if (!body->data) {
        char key[32];
        s_body_key (body->seq, key, sizeof key);
        size_t len = 0;
        body->data = mc_store_get (self->ctx->store, key, &len);
        body->len = body->data ? len : 0;
        if (!body->data)
            zsys_error ("webhook: the body record %s cannot be read", key);
    }
    return (ProtobufCBinaryData){body->len, body->data};
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
    zhashx_delete (self->bodies, s_body_name (body->seq).text);
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
    if (was_pending && body->pending > 0 && --body->pending == 0) {
        free (body->data);
        body->data = NULL;
    }
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
    assert (!queue->in_flight);
    if (queue->easy)
        curl_easy_cleanup (queue->easy);
    free (queue->url);
    zlistx_destroy (&queue->pending);
    free (queue->subscription_id);
    free (queue);
    *item = NULL;
}

//  Remembers a DELIVERED record's key; deletes the oldest beyond KEEP_DELIVERED.
static void s_remember_delivered (self_t *self, const char *module, const char *key)
{
    zlistx_t *keys = zhashx_lookup (self->delivered, module);
    if (!keys) {
        keys = zlistx_new ();
        zlistx_set_destructor (keys, (zlistx_destructor_fn *)zstr_free);
        zhashx_insert (self->delivered, module, keys);
    }
    zlistx_add_end (keys, strdup (key));
    while (zlistx_size (keys) > KEEP_DELIVERED) {
        char *old = zlistx_first (keys);
        mc_store_batch_delete (s_batch (self), old);
        zlistx_delete (keys, zlistx_cursor (keys));
    }
}

static void s_delivered_free (void **item)
{
    zlistx_destroy ((zlistx_t **)item);
}

//  --- attempts --------------------------------------------------------------------

static size_t s_discard (char *data, size_t size, size_t n, void *arg)
{
    return size * n;
}

static void s_kick (self_t *self, queue_t *queue);

//  Ends an attempt's transfer and frees what it holds (and the attempt itself when
//  free_it); its delivery stays at the head of its queue.
static void s_abandon (self_t *self, attempt_t *attempt, bool free_it)
{
    if (attempt->easy) {
        //  The easy handle stays with the queue; nothing of the attempt stays in it.
        curl_multi_remove_handle (self->multi, attempt->easy);
        curl_easy_setopt (attempt->easy, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt (attempt->easy, CURLOPT_PRIVATE, NULL);
    } else {
        char key[24];
        snprintf (key, sizeof key, "%" PRIu64, attempt->native_call);
        zhashx_delete (self->native, key); // a late reply finds nothing
    }
    attempt->queue->in_flight = false;
    attempt->queue->attempt = NULL;
    self->in_flight--;
    if (free_it)
        free (attempt);
}

//  Adds a request header line to the attempt's list.
static void s_add_header (attempt_t *attempt, const char *format, ...)
{
    assert (attempt->headers < HEADERS_MAX);
    size_t i = attempt->headers++;
    va_list args;
    va_start (args, format);
    vsnprintf (attempt->header_lines[i], sizeof attempt->header_lines[i], format, args);
    va_end (args);
    attempt->header_nodes[i] = (struct curl_slist){attempt->header_lines[i], NULL};
    if (i > 0)
        attempt->header_nodes[i - 1].next = &attempt->header_nodes[i];
}

//  Starts an attempt at the head of queue.
static void s_attempt (self_t *self, queue_t *queue)
{
    Mc__Delivery *d = zlistx_first (queue->pending);
    const secret_t *secret = zhashx_lookup (self->secrets, d->module);
    assert (d && secret);
    attempt_t *attempt = calloc (1, sizeof *attempt);
    assert (attempt);
    attempt->owner = self;
    attempt->queue = queue;
    attempt->delivery = d;
    ProtobufCBinaryData body = s_body_of (self, d);
    if (strcmp (d->url, "native:") == 0) {
        //  A native subscription: pushed down the module's SDK session, ACKed there.
        Mc__SdkPush push = MC__SDK_PUSH__INIT;
        push.module = d->module;
        push.delivery_id = d->id;
        push.json = body;
        push.attempt = d->attempts + 1;
        push.timeout_ms = self->ctx->config->webhook_timeout_ms;
        mc_env_t env = MC__ENVELOPE__INIT;
        env.body_case = MC__ENVELOPE__BODY_SDK_PUSH;
        env.sdk_push = &push;
        attempt->native_call = mc_send_request (self->sdk, &env);
        char key[24];
        snprintf (key, sizeof key, "%" PRIu64, attempt->native_call);
        zhashx_insert (self->native, key, attempt);
        queue->in_flight = true;
        queue->attempt = attempt;
        self->in_flight++;
        return;
    }
    int64_t now = mc_time_unix ();
    char selena[80], standard[64];
    s_sign_selena (&secret->keyed, body.data, body.len, selena);
    s_sign_standard (&secret->keyed, d->event_id, now, body.data, body.len, standard);
    s_add_header (attempt, "Content-Type: application/json");
    s_add_header (attempt, "X-Selena-Signature: %s", selena);
    s_add_header (attempt, "X-Event-Id: %s", d->event_id);
    s_add_header (attempt, "X-Event-Type: %s", d->event_type);
    s_add_header (attempt, "webhook-id: %s", d->event_id);
    s_add_header (attempt, "webhook-timestamp: %lld", (long long)now);
    s_add_header (attempt, "webhook-signature: %s", standard);
    s_add_header (attempt, "X-Delivery-Attempt: %u", d->attempts + 1);
    s_add_header (attempt, "User-Agent: modcore-webhook/" MC_VERSION);
    s_add_header (attempt, "Expect:");

    if (!queue->easy) {
        //  Made once per subscription and reused: what does not change is set here.
        CURL *easy = curl_easy_init ();
        assert (easy);
        curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt (easy, CURLOPT_NOPROXY, "*");
        curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt (easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 0L); // a 3xx is a failure
        curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long)self->ctx->config->webhook_timeout_ms);
        curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_discard);
        queue->easy = easy;
    }
    CURL *easy = queue->easy;
    attempt->easy = easy;
    if (!queue->url || strcmp (queue->url, d->url) != 0) {
        free (queue->url);
        queue->url = strdup (d->url);
        curl_easy_setopt (easy, CURLOPT_URL, d->url);
    }
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, attempt->header_nodes);
    curl_easy_setopt (easy, CURLOPT_POSTFIELDS, body.data);
    curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE, (long)body.len);
    curl_easy_setopt (easy, CURLOPT_PRIVATE, attempt);
    queue->in_flight = true;
    queue->attempt = attempt;
    self->in_flight++;
    curl_multi_add_handle (self->multi, easy);
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

//  An attempt is over: decide the head's fate, then go on with the queue. code is the
//  HTTP status (200 for an ACKed push), or 0 when no answer came, with failure saying
//  why; retry_after_s is a 429's Retry-After in seconds (curl reads both the seconds
//  and the HTTP-date forms), or 0 without one.
static void s_finish (self_t *self, attempt_t *attempt, long code, const char *failure,
                      long retry_after_s)
{
    queue_t *queue = attempt->queue;
    Mc__Delivery *d = attempt->delivery;
    bool answered = code > 0;
    s_abandon (self, attempt, false);
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
        char key[256];
        s_key (d, key, sizeof key);
        s_remember_delivered (self, d->module, key);
        zlistx_delete (queue->pending, zlistx_cursor (queue->pending));
        mc_metrics_delivery (MC_DELIVERY_DELIVERED);
        mc_metrics_outbox_add (-1);
    } else if (answered && code == 410) {
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
    } else {
        if (!answered)
            snprintf (why, sizeof why, "%s", failure ? failure : "no answer");
        else if (code >= 300 && code < 400)
            snprintf (why, sizeof why, "HTTP %ld (redirects are not followed)", code);
        else
            snprintf (why, sizeof why, "HTTP %ld", code);
        s_set_error (d, why);
        const mc_config_t *cfg = self->ctx->config;
        uint64_t delay =
            mc_webhook_backoff_ms (d->attempts, cfg->webhook_retry_base_ms,
                                   cfg->webhook_retry_cap_ms, randombytes_uniform (1000000) / 1e6);
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
    }
    free (attempt);
    s_kick (self, queue);
}

//  Starts the queue's head if it is due, idle, and its module's secret is known.
static void s_kick (self_t *self, queue_t *queue)
{
    Mc__Delivery *d = zlistx_first (queue->pending);
    if (!d || queue->in_flight || !zhashx_lookup (self->secrets, d->module))
        return;
    if (d->next_attempt_ms <= mc_time_unix_ms ())
        s_attempt (self, queue);
}

//  Lets curl do what its sockets and timers allow, then finishes every transfer that
//  ended (each starts its queue's next head).
static void s_run_curl (self_t *self)
{
    int running = 0;
    curl_multi_perform (self->multi, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read (self->multi, &left)))
        if (msg->msg == CURLMSG_DONE) {
            attempt_t *attempt = NULL;
            curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, (char **)&attempt);
            long code = 0;
            curl_off_t retry_after = 0;
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo (attempt->easy, CURLINFO_RESPONSE_CODE, &code);
            if (code == 429)
                curl_easy_getinfo (attempt->easy, CURLINFO_RETRY_AFTER, &retry_after);
            s_finish (self, attempt, code, curl_easy_strerror (msg->data.result),
                      (long)retry_after);
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
    mc_store_batch_t *batch = mc_store_batch_new ();
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
                mc_store_batch_put (batch, key, body->data, body->len);
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
    bool ok = mc_store_batch_write (self->ctx->store, &batch, true) == 0;
    if (!ok) // nothing was stored: the bodies go with the deliveries
        for (body_t *body = zlistx_first (bodies); body; body = zlistx_next (bodies))
            zhashx_delete (self->bodies, s_body_name (body->seq).text);
    zlistx_destroy (&bodies);
    zhashx_t *woken = zhashx_new (); // each module told once per batch
    for (Mc__Delivery *d = zlistx_first (fresh); d; d = zlistx_next (fresh)) {
        if (ok && !zhashx_lookup (woken, d->module)) {
            //  The registry starts an on_demand module that a delivery now waits for.
            zhashx_insert (woken, d->module, (void *)1);
            Mc__RegistryWake wake = MC__REGISTRY_WAKE__INIT;
            wake.name = d->module;
            mc_env_t env = MC__ENVELOPE__INIT;
            env.body_case = MC__ENVELOPE__BODY_REGISTRY_WAKE;
            env.registry_wake = &wake;
            mc_notify (self->registry, &env);
        }
        if (ok) {
            queue_t *queue = s_queue (self, d->subscription_id);
            zlistx_add_end (queue->pending, d);
            mc_metrics_outbox_add (1);
        } else
            mc__delivery__free_unpacked (d, NULL);
    }
    for (mc_request_t *req = zlistx_first (requests); req; req = zlistx_next (requests)) {
        if (ok) {
            mc_env_t reply = MC__ENVELOPE__INIT;
            mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
        } else
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                            "cannot store the deliveries");
    }
    zlistx_destroy (&fresh);
    zhashx_destroy (&woken);
    if (ok)
        s_kick_all (self);
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
        zlistx_t *keys = zhashx_keys (self->queues);
        for (char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
            queue_t *queue = zhashx_lookup (self->queues, key);
            Mc__Delivery *head = zlistx_first (queue->pending);
            if (head && strcmp (head->module, module) == 0) {
                if (queue->attempt)
                    s_abandon (self, queue->attempt, true);
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
            s_key (d, old, sizeof old);
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
        char why[300];
        snprintf (why, sizeof why, "native push: %s", reply->detail ? reply->detail : "failed");
        s_finish (self, attempt, reply->status == MC__STATUS__STATUS_OK ? 200 : 0, why, 0);
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
    struct curl_waitfd waits[] = {
        {zsock_fd (pipe), CURL_WAIT_POLLIN, 0},
        {zsock_fd (self->router), CURL_WAIT_POLLIN, 0},
        {zsock_fd (self->sdk), CURL_WAIT_POLLIN, 0},
    };
    //  Sockets that may have a message: their ZMQ_FD fired, or ZMQ_EVENTS said so.
    bool pipe_ready = true, router_ready = true, sdk_ready = true;
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
        s_run_curl (self);
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
        curl_multi_poll (self->multi, waits, 3, (int)timeout, NULL);
        pipe_ready = pipe_ready || waits[0].revents;
        router_ready = router_ready || waits[1].revents;
        sdk_ready = sdk_ready || waits[2].revents;
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
        s_remember_delivered (self, d->module, key);
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
    self->multi = curl_multi_init ();
    curl_multi_setopt (self->multi, CURLMOPT_MAXCONNECTS, 1024L);
    self->bodies = zhashx_new ();
    zhashx_set_destructor (self->bodies, s_body_free);
    bool ok = self->router && self->eventbus && self->multi &&
              mc_store_scan (self->ctx->store, "whb/", s_load_body, self) == 0 &&
              mc_store_scan (self->ctx->store, "wh/", s_load_one, self) == 0;
    //  Bodies nothing refers to: left by a crash between a DELIVERED write and the
    //  body's deletion.
    zlistx_t *orphans = zlistx_new ();
    for (body_t *body = zhashx_first (self->bodies); body; body = zhashx_next (self->bodies))
        if (body->refs == 0)
            zlistx_add_end (orphans, body);
        else if (body->pending == 0) { // only dead letters need it: read back on a retry
            free (body->data);
            body->data = NULL;
        }
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
    for (queue_t *q = zhashx_first (self->queues); q; q = zhashx_next (self->queues))
        if (q->attempt)
            s_abandon (self, q->attempt, true);
    s_flush (self);
    zhashx_destroy (&self->queues); // their easy handles, out of the multi now
    curl_multi_cleanup (self->multi);
    zhashx_destroy (&self->secrets);
    zhashx_destroy (&self->delivered);
    zhashx_destroy (&self->bodies);
    zsock_destroy (&self->router);
    zsock_destroy (&self->eventbus);
    zsock_destroy (&self->registry);
    zsock_destroy (&self->sdk);
    zhashx_destroy (&self->native);
    free (self);
}
