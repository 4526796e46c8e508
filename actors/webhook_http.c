/*  webhook_http: the webhook actor's delivery threads (see webhook_http.h).

    A thread's loop, one pass: take the jobs handed since the last pass (one lock);
    curl_multi_perform once; handle every finished transfer (the subscription's next
    job starts at once on 2xx, so a subscription never waits for the actor between two
    deliveries); hand the pass's results back (one lock, and the eventfd written when
    the actor had none waiting); then wait in curl_multi_poll, which the actor's
    curl_multi_wakeup interrupts. */
#include "actors/webhook_http.h"

#include <assert.h>
#include <curl/curl.h>
#include <czmq.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/fsutil.h"

#define HEADERS_MAX 10 // request header lines

//  --- blobs and jobs ----------------------------------------------------------------

mc_blob_t *mc_blob_new (const void *data, size_t len)
{
    mc_blob_t *blob = malloc (sizeof *blob + (len ? len : 1));
    assert (blob);
    atomic_init (&blob->refs, 1);
    blob->len = len;
    if (len)
        memcpy (blob->data, data, len);
    return blob;
}

mc_blob_t *mc_blob_ref (mc_blob_t *blob)
{
    atomic_fetch_add_explicit (&blob->refs, 1, memory_order_relaxed);
    return blob;
}

void mc_blob_unref (mc_blob_t **blob)
{
    if (*blob && atomic_fetch_sub_explicit (&(*blob)->refs, 1, memory_order_acq_rel) == 1)
        free (*blob);
    *blob = NULL;
}

mc_job_t *mc_job_new (const char *subscription_id, const char *url, const char *event_id,
                      const char *event_type)
{
    const char *texts[] = {subscription_id, url ? url : "", event_id ? event_id : "",
                           event_type ? event_type : ""};
    size_t lens[4], total = 0;
    for (size_t i = 0; i < 4; i++)
        total += (lens[i] = strlen (texts[i])) + 1;
    mc_job_t *job = malloc (sizeof *job + total);
    assert (job);
    *job = (mc_job_t){0};
    char *at = (char *)(job + 1);
    const char **fields[] = {&job->subscription_id, &job->url, &job->event_id, &job->event_type};
    for (size_t i = 0; i < 4; i++) {
        memcpy (at, texts[i], lens[i] + 1);
        *fields[i] = at;
        at += lens[i] + 1;
    }
    return job;
}

void mc_job_free (mc_job_t **job)
{
    mc_job_t *j = *job;
    if (j) {
        mc_blob_unref (&j->body);
        sodium_memzero (&j->keyed, sizeof j->keyed);
        free (j);
    }
    *job = NULL;
}

//  --- signatures --------------------------------------------------------------------

//  HMAC-SHA256 of the parts, from a state already keyed with the secret.
static void s_hmac (const crypto_auth_hmacsha256_state *keyed, const uint8_t *parts[],
                    const size_t lens[], size_t n, uint8_t mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state state = *keyed;
    for (size_t i = 0; i < n; i++)
        crypto_auth_hmacsha256_update (&state, parts[i], lens[i]);
    crypto_auth_hmacsha256_final (&state, mac);
    sodium_memzero (&state, sizeof state);
}

void mc_webhook_sign_selena_keyed (const crypto_auth_hmacsha256_state *keyed, const uint8_t *body,
                                   size_t len, char *out)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    const uint8_t *parts[] = {body};
    size_t lens[] = {len};
    s_hmac (keyed, parts, lens, 1, mac);
    memcpy (out, "sha256=", 7);
    sodium_bin2hex (out + 7, 65, mac, sizeof mac);
}

void mc_webhook_sign_standard_keyed (const crypto_auth_hmacsha256_state *keyed, const char *id,
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

//  --- job lists -----------------------------------------------------------------------

typedef struct {
    mc_job_t **items;
    size_t count, size;
} jobs_t;

static void s_jobs_add (jobs_t *jobs, mc_job_t *job)
{
    if (jobs->count == jobs->size) {
        jobs->size = jobs->size ? jobs->size * 2 : 64;
        jobs->items = realloc (jobs->items, jobs->size * sizeof *jobs->items);
        assert (jobs->items);
    }
    jobs->items[jobs->count++] = job;
}

//  Moves every job of from to the end of to.
static void s_jobs_move (jobs_t *to, jobs_t *from)
{
    for (size_t i = 0; i < from->count; i++)
        s_jobs_add (to, from->items[i]);
    from->count = 0;
}

//  --- threads -------------------------------------------------------------------------

//  A subscription as a thread sees it: its transfer and the jobs it holds, in order.
typedef struct {
    CURL *easy;         // reused, so its kept-alive connection is too
    char *url;          // the URL easy was last given (curl parses it when set)
    zlistx_t *jobs;     // mc_job_t *, the first one in flight while running
    bool running;       // the first job's transfer is in the multi
    uint64_t halted_at; // jobs of this generation or older are cancelled (see Order)
    //  The running job's request headers: a curl_slist built in place (one transfer at
    //  a time per subscription; curl neither copies nor frees the list).
    struct curl_slist header_nodes[HEADERS_MAX];
    char header_lines[HEADERS_MAX][256];
    size_t headers;
} lane_t;

typedef struct {
    mc_webhook_http_t *owner;
    pthread_t thread;
    bool started;
    CURLM *multi;
    uint32_t timeout_ms;
    atomic_bool stop;
    atomic_bool sleeping; // (thread's) about to wait, or waiting, in curl_multi_poll
    pthread_mutex_t lock; // guards todo
    jobs_t todo;          // handed, not taken yet
    bool wake;            // (actor's) handed something since the last flush
    zhashx_t *lanes;      // (thread's) subscription id -> lane_t *
    jobs_t done;          // (thread's) this pass's results
    char name[16];
} worker_t;

struct mc_webhook_http_t {
    worker_t *workers;
    size_t count;
    pthread_mutex_t lock; // guards results
    jobs_t results;       // handed back, not taken yet
    int fd;               // eventfd: readable while results wait
};

static size_t s_discard (char *data, size_t size, size_t n, void *arg)
{
    return size * n;
}

static void s_lane_free (void **item)
{
    lane_t *lane = *item;
    if (lane) {
        assert (!lane->running);
        if (lane->easy)
            curl_easy_cleanup (lane->easy);
        free (lane->url);
        zlistx_destroy (&lane->jobs);
        free (lane);
    }
    *item = NULL;
}

//  Adds the header line name + value (cut to the line's size: values are ids, types
//  and signatures, far shorter).
static void s_header (lane_t *lane, const char *name, const char *value)
{
    assert (lane->headers < HEADERS_MAX);
    size_t i = lane->headers++;
    char *line = lane->header_lines[i];
    size_t nlen = strlen (name), vlen = strlen (value);
    if (nlen + vlen >= sizeof lane->header_lines[i])
        vlen = sizeof lane->header_lines[i] - 1 - nlen;
    memcpy (line, name, nlen);
    memcpy (line + nlen, value, vlen);
    line[nlen + vlen] = 0;
    lane->header_nodes[i] = (struct curl_slist){line, NULL};
    if (i > 0)
        lane->header_nodes[i - 1].next = &lane->header_nodes[i];
}

//  Signs and starts the lane's first job.
static void s_start (worker_t *self, lane_t *lane)
{
    mc_job_t *job = zlistx_first (lane->jobs);
    assert (job && !lane->running);
    int64_t now = mc_time_unix ();
    char selena[80], standard[64];
    mc_webhook_sign_selena_keyed (&job->keyed, job->body->data, job->body->len, selena);
    mc_webhook_sign_standard_keyed (&job->keyed, job->event_id, now, job->body->data,
                                    job->body->len, standard);
    char stamp[24], attempt[16];
    snprintf (stamp, sizeof stamp, "%lld", (long long)now);
    snprintf (attempt, sizeof attempt, "%u", job->attempt);
    lane->headers = 0;
    s_header (lane, "Content-Type: ", "application/json");
    s_header (lane, "X-Selena-Signature: ", selena);
    s_header (lane, "X-Event-Id: ", job->event_id);
    s_header (lane, "X-Event-Type: ", job->event_type);
    s_header (lane, "webhook-id: ", job->event_id);
    s_header (lane, "webhook-timestamp: ", stamp);
    s_header (lane, "webhook-signature: ", standard);
    s_header (lane, "X-Delivery-Attempt: ", attempt);
    s_header (lane, "User-Agent: ", "modcore-webhook/" MC_VERSION);
    s_header (lane, "Expect:", "");
    if (!lane->easy) {
        //  Made once per subscription and reused: what does not change is set here.
        CURL *easy = curl_easy_init ();
        assert (easy);
        curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt (easy, CURLOPT_NOPROXY, "*");
        curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt (easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 0L); // a 3xx is a failure
        curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long)self->timeout_ms);
        curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_discard);
        curl_easy_setopt (easy, CURLOPT_PRIVATE, lane);
        lane->easy = easy;
    }
    if (!lane->url || strcmp (lane->url, job->url) != 0) {
        free (lane->url);
        lane->url = strdup (job->url);
        curl_easy_setopt (lane->easy, CURLOPT_URL, job->url);
    }
    curl_easy_setopt (lane->easy, CURLOPT_HTTPHEADER, lane->header_nodes);
    curl_easy_setopt (lane->easy, CURLOPT_POSTFIELDS, (void *)job->body->data);
    curl_easy_setopt (lane->easy, CURLOPT_POSTFIELDSIZE, (long)job->body->len);
    lane->running = true;
    curl_multi_add_handle (self->multi, lane->easy);
}

//  Ends the lane's transfer, if one runs; the job stays the lane's.
static void s_stop_transfer (worker_t *self, lane_t *lane)
{
    if (lane->running) {
        curl_multi_remove_handle (self->multi, lane->easy);
        lane->running = false;
    }
}

//  Hands back every job the lane holds, cancelled.
static void s_cancel_all (worker_t *self, lane_t *lane)
{
    mc_job_t *job;
    while ((job = zlistx_detach (lane->jobs, NULL))) {
        job->cancelled = true;
        s_jobs_add (&self->done, job);
    }
}

//  A job from the actor.
static void s_take (worker_t *self, mc_job_t *job)
{
    lane_t *lane = zhashx_lookup (self->lanes, job->subscription_id);
    if (job->drop) {
        if (lane) {
            s_stop_transfer (self, lane);
            s_cancel_all (self, lane);
            zhashx_delete (self->lanes, job->subscription_id);
        }
        mc_job_free (&job);
        return;
    }
    if (!lane) {
        lane = calloc (1, sizeof *lane);
        assert (lane);
        lane->jobs = zlistx_new ();
        zhashx_insert (self->lanes, job->subscription_id, lane);
    }
    if (job->gen <= lane->halted_at) { // handed before the actor saw the failure
        job->cancelled = true;
        s_jobs_add (&self->done, job);
        return;
    }
    zlistx_add_end (lane->jobs, job);
    if (!lane->running)
        s_start (self, lane);
}

//  The lane's transfer ended: its job goes back with the result; the next one starts on
//  2xx, the rest are cancelled otherwise.
static void s_finished (worker_t *self, lane_t *lane, CURLcode result)
{
    mc_job_t *job = zlistx_detach (lane->jobs, NULL);
    assert (job && lane->running);
    long code = 0;
    curl_off_t retry_after = 0;
    if (result == CURLE_OK)
        curl_easy_getinfo (lane->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code == 429)
        curl_easy_getinfo (lane->easy, CURLINFO_RETRY_AFTER, &retry_after);
    s_stop_transfer (self, lane);
    job->code = code;
    job->failure = curl_easy_strerror (result);
    job->retry_after_s = (long)retry_after;
    s_jobs_add (&self->done, job);
    if (code >= 200 && code < 300) {
        if (zlistx_first (lane->jobs))
            s_start (self, lane);
    } else {
        lane->halted_at = job->gen;
        s_cancel_all (self, lane);
    }
}

//  Hands the pass's results back to the actor.
static void s_report (worker_t *self)
{
    if (!self->done.count)
        return;
    mc_webhook_http_t *owner = self->owner;
    pthread_mutex_lock (&owner->lock);
    bool was_empty = owner->results.count == 0;
    s_jobs_move (&owner->results, &self->done);
    pthread_mutex_unlock (&owner->lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t rc = write (owner->fd, &one, sizeof one);
        (void)rc; // cannot fail short of a counter overflow
    }
}

static void *s_worker (void *arg)
{
    worker_t *self = arg;
    pthread_setname_np (pthread_self (), self->name);
    jobs_t taken = {0};
    while (!atomic_load (&self->stop)) {
        pthread_mutex_lock (&self->lock);
        jobs_t swap = self->todo;
        self->todo = taken;
        taken = swap;
        pthread_mutex_unlock (&self->lock);
        for (size_t i = 0; i < taken.count; i++)
            s_take (self, taken.items[i]);
        taken.count = 0;
        int running = 0;
        curl_multi_perform (self->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read (self->multi, &left)))
            if (msg->msg == CURLMSG_DONE) {
                lane_t *lane = NULL;
                curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, (char **)&lane);
                s_finished (self, lane, msg->data.result);
            }
        s_report (self);
        atomic_store (&self->sleeping, true);
        pthread_mutex_lock (&self->lock);
        bool idle = self->todo.count == 0;
        pthread_mutex_unlock (&self->lock);
        if (idle)
            curl_multi_poll (self->multi, NULL, 0, 1000, NULL);
        atomic_store (&self->sleeping, false);
    }
    //  Stopping: what is in flight is abandoned (its record stays PENDING).
    for (lane_t *lane = zhashx_first (self->lanes); lane; lane = zhashx_next (self->lanes)) {
        s_stop_transfer (self, lane);
        mc_job_t *job;
        while ((job = zlistx_detach (lane->jobs, NULL)))
            mc_job_free (&job);
    }
    free (taken.items);
    return NULL;
}

//  --- the actor's side ------------------------------------------------------------------

mc_webhook_http_t *mc_webhook_http_new (size_t threads, uint32_t timeout_ms)
{
    mc_webhook_http_t *self = calloc (1, sizeof *self);
    assert (self && threads > 0);
    pthread_mutex_init (&self->lock, NULL);
    self->fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->workers = calloc (threads, sizeof *self->workers);
    assert (self->workers);
    self->count = threads;
    bool ok = self->fd >= 0;
    for (size_t i = 0; i < threads; i++) {
        worker_t *w = &self->workers[i];
        w->owner = self;
        w->timeout_ms = timeout_ms;
        atomic_init (&w->stop, false);
        atomic_init (&w->sleeping, false);
        pthread_mutex_init (&w->lock, NULL);
        w->lanes = zhashx_new ();
        zhashx_set_destructor (w->lanes, s_lane_free);
        w->multi = curl_multi_init ();
        snprintf (w->name, sizeof w->name, "mc-webhook-%u", (unsigned)(i % 100));
        if (ok && w->multi) {
            curl_multi_setopt (w->multi, CURLMOPT_MAXCONNECTS, 1024L);
            w->started = pthread_create (&w->thread, NULL, s_worker, w) == 0;
        }
        ok = ok && w->started;
    }
    if (!ok)
        mc_webhook_http_destroy (&self);
    return self;
}

void mc_webhook_http_destroy (mc_webhook_http_t **self_p)
{
    mc_webhook_http_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->count; i++) {
        worker_t *w = &self->workers[i];
        atomic_store (&w->stop, true);
        if (w->started) {
            curl_multi_wakeup (w->multi);
            pthread_join (w->thread, NULL);
        }
        for (size_t j = 0; j < w->todo.count; j++)
            mc_job_free (&w->todo.items[j]);
        free (w->todo.items);
        for (size_t j = 0; j < w->done.count; j++)
            mc_job_free (&w->done.items[j]);
        free (w->done.items);
        zhashx_destroy (&w->lanes); // their transfers are out of the multi now
        if (w->multi)
            curl_multi_cleanup (w->multi);
        pthread_mutex_destroy (&w->lock);
    }
    for (size_t j = 0; j < self->results.count; j++)
        mc_job_free (&self->results.items[j]);
    free (self->results.items);
    free (self->workers);
    if (self->fd >= 0)
        close (self->fd);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

void mc_webhook_http_hand (mc_webhook_http_t *self, mc_job_t *job)
{
    worker_t *w = &self->workers[job->thread % self->count];
    pthread_mutex_lock (&w->lock);
    s_jobs_add (&w->todo, job);
    pthread_mutex_unlock (&w->lock);
    //  A thread that is busy takes the job at its next pass; one that went to sleep (or
    //  is about to: it looks at todo after saying so, under the same lock) is woken.
    if (atomic_load (&w->sleeping))
        w->wake = true;
}

void mc_webhook_http_flush (mc_webhook_http_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        if (self->workers[i].wake) {
            self->workers[i].wake = false;
            curl_multi_wakeup (self->workers[i].multi);
        }
}

int mc_webhook_http_fd (mc_webhook_http_t *self)
{
    return self->fd;
}

size_t mc_webhook_http_take (mc_webhook_http_t *self, mc_job_t ***jobs)
{
    uint64_t counter;
    ssize_t rc = read (self->fd, &counter, sizeof counter); // EAGAIN when already read
    (void)rc;
    pthread_mutex_lock (&self->lock);
    *jobs = self->results.items;
    size_t count = self->results.count;
    self->results = (jobs_t){0};
    pthread_mutex_unlock (&self->lock);
    return count;
}
