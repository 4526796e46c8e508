/*  Unit suite for the webhook actor's outbox, through the real actor and a real HTTP
    receiver on 127.0.0.1: an event's body is stored once for all its deliveries, it is
    sent to each of them, and its record goes when the last of them no longer needs it
    (delivered, or forgotten with its module); pending deliveries come back after a
    restart with their shared body, and a body record nothing refers to is deleted at
    start-up. */
#include "actors/webhook.h"
#include "actors/webhook_http.h"
#include "core/actor.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CALL_TIMEOUT_MS 10000
#define CONNS_MAX       8
#define SECRET          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

//  --- a minimal HTTP receiver: answers every request with the current status ----------

typedef struct {
    int fd;
    char buf[8192];
    size_t len;
} s_conn_t;

typedef struct {
    int listener;
    int port;
    atomic_int status;    // answered to every request
    atomic_bool stop;     // the thread ends
    atomic_int requests;  // requests read
    pthread_mutex_t lock; // guards bodies
    char bodies[64][512]; // the bodies received, in order (the first 64)
    s_conn_t conns[CONNS_MAX];
    pthread_t thread;
} s_receiver_t;

//  Serves every complete request in c's buffer; false when the connection is done.
static bool s_serve (s_receiver_t *rx, s_conn_t *c)
{
    for (;;) {
        c->buf[c->len] = 0;
        char *end = strstr (c->buf, "\r\n\r\n");
        if (!end)
            return true;
        size_t head = (size_t)(end + 4 - c->buf), body = 0;
        const char *cl = strcasestr (c->buf, "Content-Length:");
        if (cl && cl < end)
            body = strtoul (cl + 15, NULL, 10);
        if (c->len < head + body)
            return true;
        pthread_mutex_lock (&rx->lock);
        int n = atomic_load (&rx->requests);
        if (n < 64)
            snprintf (rx->bodies[n], sizeof rx->bodies[n], "%.*s", (int)body, c->buf + head);
        atomic_fetch_add (&rx->requests, 1);
        pthread_mutex_unlock (&rx->lock);
        char answer[128];
        int alen = snprintf (answer, sizeof answer, "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n",
                             atomic_load (&rx->status));
        if (write (c->fd, answer, (size_t)alen) != alen)
            return false;
        memmove (c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
    }
}

static void *s_receiver_main (void *arg)
{
    s_receiver_t *rx = arg;
    while (!atomic_load (&rx->stop)) {
        struct pollfd fds[CONNS_MAX + 1] = {{rx->listener, POLLIN, 0}};
        for (int i = 0; i < CONNS_MAX; i++)
            fds[i + 1] = (struct pollfd){rx->conns[i].fd, POLLIN, 0};
        if (poll (fds, CONNS_MAX + 1, 50) <= 0)
            continue;
        if (fds[0].revents & POLLIN) {
            int fd = accept (rx->listener, NULL, NULL);
            for (int i = 0; i < CONNS_MAX && fd >= 0; i++)
                if (rx->conns[i].fd < 0) {
                    rx->conns[i] = (s_conn_t){.fd = fd};
                    fd = -1;
                }
            if (fd >= 0)
                close (fd);
        }
        for (int i = 0; i < CONNS_MAX; i++) {
            s_conn_t *c = &rx->conns[i];
            if (c->fd < 0 || !(fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read (c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
            if (n > 0)
                c->len += (size_t)n;
            if (n <= 0 || !s_serve (rx, c) || c->len == sizeof c->buf - 1) {
                close (c->fd);
                c->fd = -1;
            }
        }
    }
    return NULL;
}

static void s_receiver_start (s_receiver_t *rx, int status)
{
    memset (rx, 0, sizeof *rx);
    for (int i = 0; i < CONNS_MAX; i++)
        rx->conns[i].fd = -1;
    atomic_store (&rx->status, status);
    pthread_mutex_init (&rx->lock, NULL);
    rx->listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    CU_ASSERT_FATAL (bind (rx->listener, (struct sockaddr *)&addr, sizeof addr) == 0);
    CU_ASSERT_FATAL (listen (rx->listener, 16) == 0);
    getsockname (rx->listener, (struct sockaddr *)&addr, &alen);
    rx->port = ntohs (addr.sin_port);
    pthread_create (&rx->thread, NULL, s_receiver_main, rx);
}

static void s_receiver_stop (s_receiver_t *rx)
{
    atomic_store (&rx->stop, true);
    pthread_join (rx->thread, NULL);
    for (int i = 0; i < CONNS_MAX; i++)
        if (rx->conns[i].fd >= 0)
            close (rx->conns[i].fd);
    close (rx->listener);
    pthread_mutex_destroy (&rx->lock);
}

//  Waits until the receiver has read at least n requests; false after 10 s.
static bool s_wait_requests (s_receiver_t *rx, int n)
{
    for (int i = 0; i < 1000 && atomic_load (&rx->requests) < n; i++)
        zclock_sleep (10);
    return atomic_load (&rx->requests) >= n;
}

//  The body of the i-th request the receiver read, copied into got (returned).
static const char *s_received (s_receiver_t *rx, int i, char got[512])
{
    pthread_mutex_lock (&rx->lock);
    snprintf (got, 512, "%s", i < 64 ? rx->bodies[i] : "");
    pthread_mutex_unlock (&rx->lock);
    return got;
}

//  --- the actor -----------------------------------------------------------------------

typedef struct {
    char *dir;
    mc_config_t *config;
    mc_test_actor_t run; // while the actor runs
} s_webhook_t;

//  A fresh data dir and default config (the actor is started with s_start).
static void s_open (s_webhook_t *self, const char *tag)
{
    *self = (s_webhook_t){0};
    self->dir = mc_test_tmpdir (tag);
    self->config = mc_config_new ();
}

static void s_close (s_webhook_t *self)
{
    mc_config_destroy (&self->config);
    mc_test_rmtree (self->dir);
    free (self->dir);
}

static void s_start (s_webhook_t *self)
{
    self->run.ctx.config = self->config;
    mc_test_actor_start (&self->run, self->dir, "webhook", mc_webhook_actor);
}

static void s_stop (s_webhook_t *self)
{
    mc_test_actor_stop (&self->run);
}

static void s_call_ok (s_webhook_t *self, mc_env_t *env)
{
    mc_env_t *reply = mc_call (self->run.client, env, CALL_TIMEOUT_MS);
    CU_ASSERT_FATAL (reply && reply->status == MC__STATUS__STATUS_OK);
    mc_env_free (reply);
}

static void s_secret (s_webhook_t *self, const char *module)
{
    Mc__WebhookSecret secret = MC__WEBHOOK_SECRET__INIT;
    secret.module = (char *)module;
    secret.secret = SECRET;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_WEBHOOK_SECRET;
    env.webhook_secret = &secret;
    s_call_ok (self, &env);
}

static void s_forget (s_webhook_t *self, const char *module)
{
    Mc__WebhookForget forget = MC__WEBHOOK_FORGET__INIT;
    forget.module = (char *)module;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_WEBHOOK_FORGET;
    env.webhook_forget = &forget;
    s_call_ok (self, &env);
}

//  Enqueues one event (body) for the modules' subscriptions "sub-<module>", created
//  age_ms ago; the first delivery's id goes to first_id if not NULL. inline_body: each
//  delivery carries the body itself (as records from before shared bodies do).
static void s_enqueue_as (s_webhook_t *self, int port, const char *body, const char *modules[],
                          size_t n, int64_t age_ms, char first_id[40], bool inline_body)
{
    Mc__Delivery items[4], *ptrs[4];
    char ids[4][40], subs[4][64], url[64], event_id[40];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/webhook/events", port);
    mc_uuid_generate (event_id);
    for (size_t i = 0; i < n; i++) {
        mc__delivery__init (&items[i]);
        mc_uuid_generate (ids[i]);
        snprintf (subs[i], sizeof subs[i], "sub-%s", modules[i]);
        items[i].id = ids[i];
        items[i].event_id = event_id;
        items[i].event_type = "test.tick";
        items[i].subscription_id = subs[i];
        items[i].module = (char *)modules[i];
        items[i].url = url;
        items[i].created_ms = items[i].updated_ms = mc_time_unix_ms () - age_ms;
        if (inline_body)
            items[i].body = (ProtobufCBinaryData){strlen (body), (uint8_t *)body};
        ptrs[i] = &items[i];
    }
    if (first_id)
        memcpy (first_id, ids[0], 40);
    Mc__WebhookEnqueue enqueue = MC__WEBHOOK_ENQUEUE__INIT;
    enqueue.n_deliveries = n;
    enqueue.deliveries = ptrs;
    if (!inline_body)
        enqueue.body = (ProtobufCBinaryData){strlen (body), (uint8_t *)body};
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_WEBHOOK_ENQUEUE;
    env.webhook_enqueue = &enqueue;
    s_call_ok (self, &env);
}

static void s_enqueue (s_webhook_t *self, int port, const char *body, const char *modules[],
                       size_t n)
{
    s_enqueue_as (self, port, body, modules, n, 0, NULL, false);
}

typedef struct {
    int bodies;                   // whb/ records
    int pending, delivered, dead; // wh/ records by status
    int inline_bodies;            // wh/ records that carry a body themselves
    char body[512];               // the last body record's bytes
} s_census_t;

static int s_count_body (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    s_census_t *census = arg;
    census->bodies++;
    snprintf (census->body, sizeof census->body, "%.*s", (int)vlen, (const char *)value);
    return 0;
}

static int s_count_record (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    s_census_t *census = arg;
    Mc__Delivery *d = mc__delivery__unpack (NULL, vlen, value);
    CU_ASSERT_PTR_NOT_NULL_FATAL (d);
    census->pending += d->status == MC__DELIVERY_STATUS__DELIVERY_PENDING;
    census->delivered += d->status == MC__DELIVERY_STATUS__DELIVERY_DELIVERED;
    census->dead += d->status == MC__DELIVERY_STATUS__DELIVERY_DEAD;
    census->inline_bodies += d->body.len > 0;
    mc__delivery__free_unpacked (d, NULL);
    return 0;
}

//  What the outbox holds (the actor stopped).
static s_census_t s_census (s_webhook_t *self)
{
    s_census_t census = {0};
    mc_store_t *store = mc_test_store_open (self->dir);
    mc_store_scan (store, "whb/", s_count_body, &census);
    mc_store_scan (store, "wh/", s_count_record, &census);
    mc_store_close (&store);
    return census;
}

static void test_shared_body (void)
{
    s_webhook_t f;
    s_open (&f, "webhook");
    f.config->webhook_retry_base_ms = 100;
    f.config->webhook_retry_cap_ms = 200;
    s_receiver_t rx;
    s_receiver_start (&rx, 500);
    const char *modules[] = {"mod-a", "mod-b"};

    //  Refused (500): both deliveries stay pending, one body record between them.
    s_start (&f);
    s_secret (&f, "mod-a");
    s_secret (&f, "mod-b");
    s_enqueue (&f, rx.port, "{\"n\":1}", modules, 2);
    CU_ASSERT (s_wait_requests (&rx, 2));
    s_stop (&f);
    s_census_t census = s_census (&f);
    CU_ASSERT_EQUAL (census.bodies, 1);
    CU_ASSERT_STRING_EQUAL (census.body, "{\"n\":1}");
    CU_ASSERT_EQUAL (census.pending, 2);
    CU_ASSERT_EQUAL (census.inline_bodies, 0);

    //  A body record nothing refers to (a crash between a DELIVERED write and the
    //  body's deletion) is deleted at start-up; the pending two are sent their body
    //  from the shared record after the restart, and when both are delivered it goes.
    mc_store_t *store = mc_test_store_open (f.dir);
    CU_ASSERT_FATAL (mc_store_put (store, "whb/00000000000000999999", "{}", 2, true) == 0);
    mc_store_close (&store);
    atomic_store (&rx.status, 200);
    int before = atomic_load (&rx.requests);
    s_start (&f);
    s_secret (&f, "mod-a");
    s_secret (&f, "mod-b");
    CU_ASSERT (s_wait_requests (&rx, before + 2));
    zclock_sleep (100); // the DELIVERED writes are batched for at most 10 ms
    s_stop (&f);
    char got[512];
    CU_ASSERT_STRING_EQUAL (s_received (&rx, before, got), "{\"n\":1}");
    CU_ASSERT_STRING_EQUAL (s_received (&rx, before + 1, got), "{\"n\":1}");
    census = s_census (&f);
    CU_ASSERT_EQUAL (census.bodies, 0);
    CU_ASSERT_EQUAL (census.pending, 0);
    CU_ASSERT_EQUAL (census.delivered, 2);

    //  A module forgotten while its deliveries wait (no secret yet): the body stays
    //  as long as another module's delivery needs it, and goes with the last one.
    s_start (&f);
    s_enqueue (&f, rx.port, "{\"n\":2}", (const char *[]){"mod-c", "mod-d"}, 2);
    s_forget (&f, "mod-c");
    s_stop (&f);
    census = s_census (&f);
    CU_ASSERT_EQUAL (census.bodies, 1);
    CU_ASSERT_EQUAL (census.pending, 1);
    s_start (&f);
    s_forget (&f, "mod-d");
    s_stop (&f);
    census = s_census (&f);
    CU_ASSERT_EQUAL (census.bodies, 0);
    CU_ASSERT_EQUAL (census.pending, 0);
    CU_ASSERT_EQUAL (census.delivered, 2);

    //  Deliveries that carry their body themselves (no shared one) are sent it.
    before = atomic_load (&rx.requests);
    s_start (&f);
    s_secret (&f, "mod-a");
    s_enqueue_as (&f, rx.port, "{\"n\":4}", modules, 1, 0, NULL, true);
    CU_ASSERT (s_wait_requests (&rx, before + 1));
    zclock_sleep (100);
    s_stop (&f);
    CU_ASSERT_STRING_EQUAL (s_received (&rx, before, got), "{\"n\":4}");
    census = s_census (&f);
    CU_ASSERT_EQUAL (census.bodies, 0);
    CU_ASSERT_EQUAL (census.delivered, 3);

    s_receiver_stop (&rx);
    s_close (&f);
}

//  A dead letter keeps its body's record (not its bytes in memory); retried after a
//  restart, it is sent that body, read back, and then the record goes.
static void test_dead_letter_body (void)
{
    s_webhook_t f;
    s_open (&f, "webhook-dead");
    s_receiver_t rx;
    s_receiver_start (&rx, 500);
    const char *modules[] = {"mod-a"};
    char id[40];

    //  Two days old at its first failure: past max_age (one day), dead at once.
    s_start (&f);
    s_secret (&f, "mod-a");
    s_enqueue_as (&f, rx.port, "{\"n\":3}", modules, 1, 2 * 86400 * 1000LL, id, false);
    CU_ASSERT (s_wait_requests (&rx, 1));
    zclock_sleep (50);
    s_stop (&f);
    s_census_t census = s_census (&f);
    CU_ASSERT_EQUAL (census.dead, 1);
    CU_ASSERT_EQUAL (census.pending, 0);
    CU_ASSERT_EQUAL (census.bodies, 1);

    atomic_store (&rx.status, 200);
    s_start (&f);
    s_secret (&f, "mod-a");
    Mc__WebhookRetry retry = MC__WEBHOOK_RETRY__INIT;
    retry.delivery_id = id;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_WEBHOOK_RETRY;
    env.webhook_retry = &retry;
    s_call_ok (&f, &env);
    CU_ASSERT (s_wait_requests (&rx, 2));
    zclock_sleep (100); // the DELIVERED write is batched for at most 10 ms
    s_stop (&f);
    char got[512];
    CU_ASSERT_STRING_EQUAL (s_received (&rx, 1, got), "{\"n\":3}");
    census = s_census (&f);
    CU_ASSERT_EQUAL (census.bodies, 0);
    CU_ASSERT_EQUAL (census.dead, 0);
    CU_ASSERT_EQUAL (census.delivered, 1);

    s_receiver_stop (&rx);
    s_close (&f);
}

//  The smallest seq among a module's records, and their count.
typedef struct {
    uint64_t min;
    int count;
} s_seqs_t;

static int s_seq_of (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    s_seqs_t *seqs = arg;
    uint64_t seq = strtoull (strrchr (key, '/') + 1, NULL, 10);
    if (!seqs->count++ || seq < seqs->min)
        seqs->min = seq;
    return 0;
}

static s_seqs_t s_module_seqs (s_webhook_t *self, const char *module)
{
    s_seqs_t seqs = {0};
    char prefix[64];
    snprintf (prefix, sizeof prefix, "wh/%s/", module);
    mc_store_t *store = mc_test_store_open (self->dir);
    mc_store_scan (store, prefix, s_seq_of, &seqs);
    mc_store_close (&store);
    return seqs;
}

//  A module keeps its last 1,000 DELIVERED records, also across a restart; another
//  module's are its own.
static void test_delivered_kept (void)
{
    s_receiver_t rx;
    s_receiver_start (&rx, 200);
    s_webhook_t f;
    s_open (&f, "wh-kept");
    s_start (&f);
    s_secret (&f, "mod-a");
    s_secret (&f, "mod-b");
    const char *a[] = {"mod-a"}, *ab[] = {"mod-a", "mod-b"};
    for (int i = 0; i < 1003; i++)
        s_enqueue (&f, rx.port, "{\"n\":1}", i < 3 ? ab : a, i < 3 ? 2 : 1);
    CU_ASSERT_FATAL (s_wait_requests (&rx, 1006));
    zclock_sleep (100); // the last results recorded
    s_stop (&f);
    s_seqs_t kept = s_module_seqs (&f, "mod-a");
    CU_ASSERT_EQUAL (kept.count, 1000);
    CU_ASSERT_EQUAL (s_module_seqs (&f, "mod-b").count, 3);
    CU_ASSERT_EQUAL (s_census (&f).delivered, 1003);

    s_start (&f); // the kept ones are remembered at start-up
    s_secret (&f, "mod-a");
    s_enqueue (&f, rx.port, "{\"n\":2}", a, 1);
    s_enqueue (&f, rx.port, "{\"n\":3}", a, 1);
    CU_ASSERT_FATAL (s_wait_requests (&rx, 1008));
    zclock_sleep (100);
    s_stop (&f);
    s_seqs_t later = s_module_seqs (&f, "mod-a");
    CU_ASSERT_EQUAL (later.count, 1000);
    CU_ASSERT (later.min > kept.min); // the oldest went
    CU_ASSERT_EQUAL (s_census (&f).bodies, 0);

    s_receiver_stop (&rx);
    s_close (&f);
}

//  --- the delivery threads -------------------------------------------------------------

typedef struct {
    mc_job_t *jobs[64]; // handed back, in order
    size_t count;
} s_results_t;

static mc_job_t *s_job (int port, const char *sub, uint64_t gen, uint64_t seq)
{
    char text[64];
    snprintf (text, sizeof text, "http://127.0.0.1:%d/webhook/events", port);
    mc_job_t *job = mc_job_new (sub, text, "00000000-0000-4000-8000-000000000000", "test.tick");
    job->thread = (uint32_t)sub[strlen (sub) - 1]; // sub-a and sub-c on one, sub-b the other
    job->gen = gen;
    job->seq = seq;
    job->attempt = 1;
    int n = snprintf (text, sizeof text, "{\"%s\":%llu}", sub, (unsigned long long)seq);
    job->body = mc_blob_new (text, (size_t)n);
    crypto_auth_hmacsha256_init (&job->keyed, (const uint8_t *)SECRET, 64);
    return job;
}

//  Takes results until `total` have come back (false after 10 s).
static bool s_collect (mc_webhook_http_t *http, s_results_t *results, size_t total)
{
    for (int i = 0; i < 1000 && results->count < total; i++) {
        struct pollfd fd = {mc_webhook_http_fd (http), POLLIN, 0};
        poll (&fd, 1, 10);
        mc_job_t **jobs;
        size_t n = mc_webhook_http_take (http, &jobs);
        for (size_t j = 0; j < n; j++)
            if (results->count < 64)
                results->jobs[results->count++] = jobs[j];
            else
                mc_job_free (&jobs[j]);
        free (jobs);
    }
    return results->count >= total;
}

static void s_results_free (s_results_t *results)
{
    for (size_t i = 0; i < results->count; i++)
        mc_job_free (&results->jobs[i]);
    results->count = 0;
}

//  The result of sub's job seq among results, or NULL.
static mc_job_t *s_result (s_results_t *results, const char *sub, uint64_t seq)
{
    for (size_t i = 0; i < results->count; i++)
        if (strcmp (results->jobs[i]->subscription_id, sub) == 0 && results->jobs[i]->seq == seq)
            return results->jobs[i];
    return NULL;
}

//  Each subscription's jobs run in the order handed; the first failure cancels those
//  behind it and those of its generation handed later; a new generation runs again;
//  dropping a subscription lets go of it.
static void test_delivery_threads (void)
{
    s_receiver_t rx;
    s_receiver_start (&rx, 200);
    mc_webhook_http_t *http = mc_webhook_http_new (2, 2000);
    CU_ASSERT_FATAL (http != NULL);
    s_results_t results = {0};
    const char *subs[] = {"sub-a", "sub-b", "sub-c"};
    for (uint64_t seq = 1; seq <= 5; seq++)
        for (int s = 0; s < 3; s++)
            mc_webhook_http_hand (http, s_job (rx.port, subs[s], 1, seq));
    mc_webhook_http_flush (http);
    CU_ASSERT_FATAL (s_collect (http, &results, 15));
    CU_ASSERT_EQUAL (atomic_load (&rx.requests), 15);
    for (int s = 0; s < 3; s++) {
        uint64_t last = 0; // each subscription's results come back in its order
        for (size_t i = 0; i < results.count; i++) {
            mc_job_t *job = results.jobs[i];
            if (strcmp (job->subscription_id, subs[s]) != 0)
                continue;
            CU_ASSERT_EQUAL (job->seq, last + 1);
            CU_ASSERT_EQUAL (job->code, 200);
            CU_ASSERT_FALSE (job->cancelled);
            last = job->seq;
        }
        CU_ASSERT_EQUAL (last, 5);
    }
    //  A subscription's bodies reached the receiver in its order.
    char got[512], want[64];
    for (int s = 0; s < 3; s++) {
        uint64_t next = 1;
        for (int i = 0; i < 15; i++) {
            snprintf (want, sizeof want, "{\"%s\":%llu}", subs[s], (unsigned long long)next);
            if (strcmp (s_received (&rx, i, got), want) == 0)
                next++;
        }
        CU_ASSERT_EQUAL (next, 6);
    }
    s_results_free (&results);

    //  A failure halts sub-a: the jobs behind it come back cancelled, unsent.
    atomic_store (&rx.status, 500);
    for (uint64_t seq = 6; seq <= 8; seq++)
        mc_webhook_http_hand (http, s_job (rx.port, "sub-a", 1, seq));
    mc_webhook_http_flush (http);
    CU_ASSERT_FATAL (s_collect (http, &results, 3));
    CU_ASSERT_EQUAL (atomic_load (&rx.requests), 16);
    CU_ASSERT_EQUAL (s_result (&results, "sub-a", 6)->code, 500);
    CU_ASSERT_FALSE (s_result (&results, "sub-a", 6)->cancelled);
    CU_ASSERT_TRUE (s_result (&results, "sub-a", 7)->cancelled);
    CU_ASSERT_TRUE (s_result (&results, "sub-a", 8)->cancelled);
    CU_ASSERT_EQUAL (results.jobs[0]->seq, 6); // the failure first
    s_results_free (&results);

    //  A job of the halted generation, handed later, is cancelled too; the next
    //  generation runs.
    atomic_store (&rx.status, 200);
    mc_webhook_http_hand (http, s_job (rx.port, "sub-a", 1, 7));
    mc_webhook_http_hand (http, s_job (rx.port, "sub-a", 2, 6));
    mc_webhook_http_hand (http, s_job (rx.port, "sub-a", 2, 7));
    mc_webhook_http_flush (http);
    CU_ASSERT_FATAL (s_collect (http, &results, 3));
    CU_ASSERT_TRUE (results.jobs[0]->cancelled);
    CU_ASSERT_EQUAL (results.jobs[0]->gen, 1);
    CU_ASSERT_EQUAL (results.jobs[1]->seq, 6);
    CU_ASSERT_EQUAL (results.jobs[1]->code, 200);
    CU_ASSERT_EQUAL (results.jobs[2]->seq, 7);
    CU_ASSERT_EQUAL (results.jobs[2]->code, 200);
    CU_ASSERT_EQUAL (atomic_load (&rx.requests), 18);
    s_results_free (&results);

    //  A dropped subscription starts afresh; unreachable receivers answer 0 with why.
    mc_job_t *drop = mc_job_new ("sub-b", NULL, NULL, NULL);
    drop->drop = true;
    drop->thread = 'b';
    mc_webhook_http_hand (http, drop);
    mc_webhook_http_hand (http, s_job (rx.port, "sub-b", 3, 6));
    mc_webhook_http_hand (http, s_job (1, "sub-c", 1, 6)); // nothing listens on port 1
    mc_webhook_http_flush (http);
    CU_ASSERT_FATAL (s_collect (http, &results, 2));
    CU_ASSERT_EQUAL (s_result (&results, "sub-b", 6)->code, 200);
    CU_ASSERT_EQUAL (s_result (&results, "sub-c", 6)->code, 0);
    CU_ASSERT_PTR_NOT_NULL (s_result (&results, "sub-c", 6)->failure);
    s_results_free (&results);

    //  Jobs still held at the end are freed with the threads.
    atomic_store (&rx.status, 200);
    for (uint64_t seq = 7; seq <= 9; seq++)
        mc_webhook_http_hand (http, s_job (rx.port, "sub-b", 3, seq));
    mc_webhook_http_flush (http);
    mc_webhook_http_destroy (&http);
    CU_ASSERT_PTR_NULL (http);
    s_receiver_stop (&rx);
}

void mc_test_webhook (void)
{
    CU_pSuite suite = CU_add_suite ("webhook", NULL, NULL);
    CU_add_test (suite, "one body per event, shared and released", test_shared_body);
    CU_add_test (suite, "a dead letter's body, read back on retry", test_dead_letter_body);
    CU_add_test (suite, "the last 1,000 delivered records kept per module", test_delivered_kept);
    CU_add_test (suite, "delivery threads: order, halts, generations, drop", test_delivery_threads);
}
