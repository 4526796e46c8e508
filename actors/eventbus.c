/*  eventbus actor

    DESIGN. The bus keeps subscriptions in memory only (Selena: modules re-subscribe
    when they start; the SDKs do it by themselves), and a ring of the last 1,024 events
    for `modctl events tail`. Publishing an event:
        1. validate (type charset/length; core.*, module.*, device.*, webhook.* only from
           the core itself), give it an id and a timestamp, render its JSON once: those
           bytes are what every subscriber receives and what is signed;
        2. one Delivery per matching subscription, sent to the webhook actor, which
           writes them durably (group commit) before it answers;
        3. only then the publisher gets 201: an acknowledged event is never lost.
    Step 2 is asynchronous: the bus keeps the publisher's request aside, keyed by the
    id of its call to webhook, and answers when the webhook reply arrives, so its loop
    never waits. Events published by the core (registry, devices) are notifications:
    nobody waits, but they are queued the same way.

    Subscriptions: at most 64 per module; the same (types, URL) twice returns the
    existing one; a webhook URL must point at the module's own port on localhost.
    module.unloaded drops the module's subscriptions; a 410 from a receiver drops
    that subscription (the webhook actor tells the bus). */
#include "actors/eventbus.h"

#include <ctype.h>
#include <string.h>

#include "core/actor.h"
#include "envelope_cases.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "core/token.h"

#define RING_SIZE           1024
#define MAX_SUBS_PER_MODULE 64
#define MAX_PATTERNS        32

typedef struct {
    mc_context_t *ctx;          // shared context
    zsock_t *router;            // inproc://modcore.eventbus
    zsock_t *webhook;           // DEALER to webhook (async: replies come to the poller)
    zhashx_t *subs;             // id -> Mc__Subscription * (owned, packed/unpacked copies)
    zhashx_t *waiting;          // webhook call id (string) -> mc_request_t * (publisher)
    zhashx_t *published;        // webhook call id (string) -> Mc__EventPublished * reply body
    Mc__Event *ring[RING_SIZE]; // recent events
    uint64_t seq;               // seq of the last event
    bool terminated;            // $TERM received
} self_t;

//  --- patterns --------------------------------------------------------------------

bool mc_event_type_valid (const char *type)
{
    size_t len = type ? strlen (type) : 0;
    if (len == 0 || len > 128 || type[0] == '.' || type[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = type[i];
        if (c == '.' && type[i + 1] == '.')
            return false;
        if (!(islower ((unsigned char)c) || isdigit ((unsigned char)c) || c == '_' || c == '-' ||
              c == '.'))
            return false;
    }
    return true;
}

bool mc_event_pattern_valid (const char *pattern)
{
    if (!pattern)
        return false;
    if (strcmp (pattern, "*") == 0)
        return true;
    size_t len = strlen (pattern);
    if (len > 2 && strcmp (pattern + len - 2, ".*") == 0) {
        char prefix[130];
        if (len - 2 >= sizeof prefix)
            return false;
        memcpy (prefix, pattern, len - 2);
        prefix[len - 2] = 0;
        return mc_event_type_valid (prefix);
    }
    return mc_event_type_valid (pattern);
}

bool mc_event_pattern_match (const char *pattern, const char *type)
{
    if (strcmp (pattern, "*") == 0)
        return true;
    size_t len = strlen (pattern);
    if (len > 2 && strcmp (pattern + len - 2, ".*") == 0)
        return strncmp (pattern, type, len - 1) == 0 && type[len - 1] != 0;
    return strcmp (pattern, type) == 0;
}

bool mc_event_type_reserved (const char *type)
{
    static const char *const reserved[] = {"core.", "module.", "device.", "webhook."};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strncmp (type, reserved[i], strlen (reserved[i])) == 0)
            return true;
    return false;
}

//  --- helpers ---------------------------------------------------------------------

static void s_sub_free (void **item)
{
    if (*item)
        mc__subscription__free_unpacked (*item, NULL);
    *item = NULL;
}

static Mc__Subscription *s_sub_dup (const Mc__Subscription *sub)
{
    size_t len = mc__subscription__get_packed_size (sub);
    uint8_t *buf = malloc (len ? len : 1);
    assert (buf);
    mc__subscription__pack (sub, buf);
    Mc__Subscription *copy = mc__subscription__unpack (NULL, len, buf);
    free (buf);
    assert (copy);
    return copy;
}

static void s_reply_error (self_t *self, mc_request_t *req, Mc__Status status, const char *code,
                           const char *detail)
{
    mc_reply_error (self->router, req->routing_id, req->env->request_id, status, code, "%s",
                    detail);
}

//  --- publish -----------------------------------------------------------------------

static void s_ring_add (self_t *self, Mc__Event *event)
{
    event->seq = ++self->seq;
    size_t slot = event->seq % RING_SIZE;
    if (self->ring[slot])
        mc__event__free_unpacked (self->ring[slot], NULL);
    //  Keep a deep copy: the caller's event is built on the stack.
    size_t len = mc__event__get_packed_size (event);
    uint8_t *buf = malloc (len ? len : 1);
    assert (buf);
    mc__event__pack (event, buf);
    self->ring[slot] = mc__event__unpack (NULL, len, buf);
    free (buf);
}

//  Publishes; returns true if the request was kept (waiting for the webhook actor).
static bool s_publish (self_t *self, mc_request_t *req)
{
    Mc__EventPublish *pub = req->env->event_publish;
    if (!mc_event_type_valid (pub->type)) {
        s_reply_error (self, req, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_EVENT_TYPE",
                       "event type must be 1..128 characters of a-z 0-9 _ - in dot-separated "
                       "segments");
        return false;
    }
    if (!pub->core && mc_event_type_reserved (pub->type)) {
        s_reply_error (self, req, MC__STATUS__STATUS_FORBIDDEN, "FORBIDDEN",
                       "core.*, module.*, device.* and webhook.* events are published by the "
                       "core only");
        return false;
    }
    json_error_t jerr;
    json_t *payload =
        json_loads (pub->payload_json ? pub->payload_json : "{}", JSON_REJECT_DUPLICATES, &jerr);
    if (!payload || !json_is_object (payload)) {
        json_decref (payload);
        s_reply_error (self, req, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_PAYLOAD",
                       "payload must be a JSON object");
        return false;
    }
    char id[37], stamp[32];
    mc_uuid_generate (id);
    int64_t now_ms = mc_time_unix_ms ();
    mc_time_iso_ms (now_ms, stamp, sizeof stamp);
    const char *source = pub->source && *pub->source ? pub->source : "core";
    //  "O": payload is read again below (module.unloaded), after event is freed.
    json_t *event = json_pack ("{s:s, s:s, s:s, s:s, s:O}", "id", id, "type", pub->type, "source",
                               source, "timestamp", stamp, "payload", payload);
    char *json = json_dumps (event, JSON_COMPACT);
    json_decref (event);

    Mc__Event ev = MC__EVENT__INIT;
    ev.id = id;
    ev.type = pub->type;
    ev.source = (char *)source;
    ev.timestamp_ms = now_ms;
    ev.json.data = (uint8_t *)json;
    ev.json.len = strlen (json);
    s_ring_add (self, &ev);

    //  A module is gone: its subscriptions go with it, before the fan-out, so it is
    //  not sent its own module.unloaded (nobody would take it: after an uninstall its
    //  secret is gone and the delivery would stay pending for ever).
    if (pub->core && strcmp (pub->type, "module.unloaded") == 0) {
        const char *name = json_string_value (json_object_get (payload, "module_name"));
        zlistx_t *keys = zhashx_keys (self->subs);
        for (char *key = zlistx_first (keys); key && name; key = zlistx_next (keys)) {
            Mc__Subscription *sub = zhashx_lookup (self->subs, key);
            if (strcmp (sub->module, name) == 0)
                zhashx_delete (self->subs, key);
        }
        zlistx_destroy (&keys);
    }

    //  One delivery per matching subscription.
    size_t cap = zhashx_size (self->subs), count = 0;
    Mc__Delivery *items = calloc (cap + 1, sizeof *items);
    Mc__Delivery **ptrs = calloc (cap + 1, sizeof *ptrs);
    char (*ids)[37] = calloc (cap + 1, sizeof *ids);
    for (Mc__Subscription *sub = zhashx_first (self->subs); sub; sub = zhashx_next (self->subs)) {
        bool match = false;
        for (size_t i = 0; i < sub->n_event_types && !match; i++)
            match = mc_event_pattern_match (sub->event_types[i], pub->type);
        if (!match)
            continue;
        Mc__Delivery *d = &items[count];
        mc__delivery__init (d);
        mc_uuid_generate (ids[count]);
        d->id = ids[count];
        d->event_id = id;
        d->event_type = pub->type;
        d->subscription_id = sub->id;
        d->module = sub->module;
        d->url = sub->webhook_url;
        d->created_ms = d->updated_ms = d->next_attempt_ms = now_ms;
        ptrs[count] = d;
        count++;
    }

    bool kept = false;
    Mc__EventPublished published = MC__EVENT_PUBLISHED__INIT;
    published.event_id = id;
    published.type = pub->type;
    published.timestamp = stamp;
    published.deliveries = (uint32_t)count;
    if (count > 0) {
        Mc__WebhookEnqueue enqueue = MC__WEBHOOK_ENQUEUE__INIT;
        enqueue.n_deliveries = count;
        enqueue.deliveries = ptrs;
        enqueue.body = ev.json; // once for all of them
        mc_env_t env = MC__ENVELOPE__INIT;
        env.body_case = MC__ENVELOPE__BODY_WEBHOOK_ENQUEUE;
        env.webhook_enqueue = &enqueue;
        uint64_t call = mc_send_request (self->webhook, &env);
        if (call == 0)
            s_reply_error (self, req, MC__STATUS__STATUS_INTERNAL, "QUEUE_FAILED",
                           "the event could not be queued for delivery");
        else if (req->env->request_id != 0) {
            char key[24];
            snprintf (key, sizeof key, "%" PRIu64, call);
            zhashx_insert (self->waiting, key, req);
            //  Keep the reply body until webhook confirms: copy the strings it points at.
            Mc__EventPublished *keep = calloc (1, sizeof *keep);
            mc__event_published__init (keep);
            keep->event_id = strdup (id);
            keep->type = strdup (pub->type);
            keep->timestamp = strdup (stamp);
            keep->deliveries = (uint32_t)count;
            zhashx_insert (self->published, key, keep);
            kept = true;
        }
    } else {
        mc_env_t reply = MC__ENVELOPE__INIT;
        reply.body_case = MC__ENVELOPE__BODY_EVENT_PUBLISHED;
        reply.event_published = &published;
        mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    }
    json_decref (payload);
    free (items);
    free (ptrs);
    free (ids);
    free (json);
    return kept;
}

static void s_published_free (void **item)
{
    Mc__EventPublished *p = *item;
    if (!p)
        return;
    free (p->event_id);
    free (p->type);
    free (p->timestamp);
    free (p);
    *item = NULL;
}

//  The webhook actor's answer to an enqueue: now the publisher can be answered.
static void s_on_webhook_reply (self_t *self)
{
    zframe_t *frame = zframe_recv (self->webhook);
    mc_env_t *reply = mc_env_unpack (frame);
    zframe_destroy (&frame);
    if (!reply)
        return;
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, reply->request_id);
    mc_request_t *req = zhashx_lookup (self->waiting, key);
    Mc__EventPublished *published = zhashx_lookup (self->published, key);
    if (req && published) {
        if (reply->status == MC__STATUS__STATUS_OK) {
            mc_env_t answer = MC__ENVELOPE__INIT;
            answer.body_case = MC__ENVELOPE__BODY_EVENT_PUBLISHED;
            answer.event_published = published;
            mc_reply (self->router, req->routing_id, req->env->request_id, &answer);
        } else
            s_reply_error (self, req, MC__STATUS__STATUS_INTERNAL, "QUEUE_FAILED",
                           "the event could not be stored for delivery");
    }
    zhashx_delete (self->waiting, key);
    zhashx_delete (self->published, key);
    mc_env_free (reply);
}

//  --- subscriptions ---------------------------------------------------------------

//  True if url is http://localhost:<port>/... or http://127.0.0.1:<port>/...
static bool s_url_is_module_port (const char *url, uint32_t port)
{
    if (strcmp (url, "native:") == 0) // pushed down the module's native SDK session
        return true;
    const char *rest = NULL;
    if (strncmp (url, "http://localhost:", 17) == 0)
        rest = url + 17;
    else if (strncmp (url, "http://127.0.0.1:", 17) == 0)
        rest = url + 17;
    if (!rest || strlen (url) > 512)
        return false;
    char *end = NULL;
    long p = strtol (rest, &end, 10);
    if (end == rest || (*end != '/' && *end != 0) || p != (long)port || port == 0)
        return false;
    for (const char *c = end; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == '#' || *c == '\\')
            return false;
    return true;
}

static void s_reply_subscription (self_t *self, mc_request_t *req, Mc__Subscription *sub)
{
    Mc__EventSubscriptions list = MC__EVENT_SUBSCRIPTIONS__INIT;
    list.module = sub->module;
    list.n_subscriptions = 1;
    list.subscriptions = &sub;
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_EVENT_SUBSCRIPTIONS;
    reply.event_subscriptions = &list;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

static void s_subscribe (self_t *self, mc_request_t *req)
{
    Mc__EventSubscribe *s = req->env->event_subscribe;
    if (!s->module || !*s->module) {
        s_reply_error (self, req, MC__STATUS__STATUS_BAD_REQUEST, "BAD_REQUEST", "no module");
        return;
    }
    if (s->n_event_types == 0 || s->n_event_types > MAX_PATTERNS) {
        s_reply_error (self, req, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_EVENT_TYPES",
                       "event_types must list 1 to 32 patterns");
        return;
    }
    for (size_t i = 0; i < s->n_event_types; i++)
        if (!mc_event_pattern_valid (s->event_types[i])) {
            char detail[256];
            snprintf (detail, sizeof detail, "'%.140s' is not an event type, 'prefix.*' or '*'",
                      s->event_types[i]);
            s_reply_error (self, req, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_EVENT_TYPES",
                           detail);
            return;
        }
    if (!s->webhook_url || !s_url_is_module_port (s->webhook_url, s->module_port)) {
        char detail[160];
        snprintf (detail, sizeof detail,
                  "webhook_url must be http://localhost:%u/... (the module's own port)",
                  s->module_port);
        s_reply_error (self, req, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_WEBHOOK_URL", detail);
        return;
    }
    size_t owned = 0;
    for (Mc__Subscription *sub = zhashx_first (self->subs); sub; sub = zhashx_next (self->subs)) {
        if (strcmp (sub->module, s->module) != 0)
            continue;
        owned++;
        bool same = strcmp (sub->webhook_url, s->webhook_url) == 0 &&
                    sub->n_event_types == s->n_event_types;
        for (size_t i = 0; same && i < s->n_event_types; i++)
            same = strcmp (sub->event_types[i], s->event_types[i]) == 0;
        if (same) { // a module re-subscribing after a restart gets its subscription back
            s_reply_subscription (self, req, sub);
            return;
        }
    }
    if (owned >= MAX_SUBS_PER_MODULE) {
        s_reply_error (self, req, MC__STATUS__STATUS_CONFLICT, "TOO_MANY_SUBSCRIPTIONS",
                       "a module may hold at most 64 subscriptions");
        return;
    }
    char id[37];
    mc_uuid_generate (id);
    Mc__Subscription sub = MC__SUBSCRIPTION__INIT;
    sub.id = id;
    sub.module = s->module;
    sub.n_event_types = s->n_event_types;
    sub.event_types = s->event_types;
    sub.webhook_url = s->webhook_url;
    sub.created_at = mc_time_unix ();
    Mc__Subscription *copy = s_sub_dup (&sub);
    zhashx_insert (self->subs, copy->id, copy);
    zsys_info ("eventbus: %s subscribed to %zu pattern(s)", copy->module, copy->n_event_types);
    s_reply_subscription (self, req, copy);
}

static void s_unsubscribe (self_t *self, mc_request_t *req)
{
    Mc__EventUnsubscribe *u = req->env->event_unsubscribe;
    Mc__Subscription *sub =
        u->subscription_id ? zhashx_lookup (self->subs, u->subscription_id) : NULL;
    //  A module may remove only its own; the core (module empty) any.
    if (!sub || (u->module && *u->module && strcmp (sub->module, u->module) != 0)) {
        s_reply_error (self, req, MC__STATUS__STATUS_NOT_FOUND, "SUBSCRIPTION_NOT_FOUND",
                       "no such subscription");
        return;
    }
    zhashx_delete (self->subs, u->subscription_id);
    mc_env_t reply = MC__ENVELOPE__INIT;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

static void s_list (self_t *self, mc_request_t *req)
{
    const char *module = req->env->event_subscriptions->module;
    size_t n = zhashx_size (self->subs), count = 0;
    Mc__Subscription **items = calloc (n + 1, sizeof *items);
    for (Mc__Subscription *sub = zhashx_first (self->subs); sub; sub = zhashx_next (self->subs))
        if (!module || !*module || strcmp (sub->module, module) == 0)
            items[count++] = sub;
    Mc__EventSubscriptions list = MC__EVENT_SUBSCRIPTIONS__INIT;
    list.module = (char *)module;
    list.n_subscriptions = count;
    list.subscriptions = items;
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_EVENT_SUBSCRIPTIONS;
    reply.event_subscriptions = &list;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    free (items);
}

static void s_recent (self_t *self, mc_request_t *req)
{
    uint64_t after = req->env->event_recent->after_seq;
    uint32_t limit = req->env->event_recent->limit;
    if (limit == 0)
        limit = 100;
    if (limit > RING_SIZE)
        limit = RING_SIZE; // all the ring holds
    uint64_t first = self->seq > RING_SIZE ? self->seq - RING_SIZE + 1 : 1;
    if (after + 1 > first)
        first = after + 1;
    Mc__Event **items = calloc (limit + 1, sizeof *items);
    size_t count = 0;
    for (uint64_t seq = first; seq <= self->seq && count < limit; seq++) {
        Mc__Event *ev = self->ring[seq % RING_SIZE];
        if (ev && ev->seq == seq)
            items[count++] = ev;
    }
    Mc__EventList list = MC__EVENT_LIST__INIT;
    list.n_events = count;
    list.events = items;
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_EVENT_LIST;
    reply.event_list = &list;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    free (items);
}

static void s_on_request (self_t *self)
{
    mc_request_t *req = mc_request_recv (self->router);
    if (!req)
        return;
    bool kept = false;
    switch (req->env->body_case) {
        case MC__ENVELOPE__BODY_EVENT_PUBLISH:
            kept = s_publish (self, req);
            break;
        case MC__ENVELOPE__BODY_EVENT_SUBSCRIBE:
            s_subscribe (self, req);
            break;
        case MC__ENVELOPE__BODY_EVENT_UNSUBSCRIBE:
            s_unsubscribe (self, req);
            break;
        case MC__ENVELOPE__BODY_EVENT_SUBSCRIPTIONS:
            s_list (self, req);
            break;
        case MC__ENVELOPE__BODY_EVENT_RECENT:
            s_recent (self, req);
            break;
            MC_CASES_NOT_FOR_EVENTBUS
            s_reply_error (self, req, MC__STATUS__STATUS_BAD_REQUEST, "UNSUPPORTED",
                           "eventbus does not handle this message");
            break;
    }
    if (!kept)
        mc_request_destroy (&req);
}

static void s_request_free (void **item)
{
    mc_request_destroy ((mc_request_t **)item);
}

void mc_eventbus_actor (zsock_t *pipe, void *args)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = args;
    self->router = mc_actor_bind ("eventbus");
    self->webhook = mc_client_new ("webhook");
    self->subs = zhashx_new ();
    zhashx_set_destructor (self->subs, s_sub_free);
    self->waiting = zhashx_new ();
    zhashx_set_destructor (self->waiting, s_request_free);
    self->published = zhashx_new ();
    zhashx_set_destructor (self->published, s_published_free);
    if (mc_actor_ready (pipe, self->router && self->webhook ? 0 : -1) == 0) {
        zpoller_t *poller = zpoller_new (pipe, self->router, self->webhook, NULL);
        while (!self->terminated) {
            void *which = zpoller_wait (poller, -1);
            if (which == pipe) {
                char *command = zstr_recv (pipe);
                if (!command || streq (command, "$TERM"))
                    self->terminated = true;
                zstr_free (&command);
            } else if (which == self->router)
                s_on_request (self);
            else if (which == self->webhook)
                s_on_webhook_reply (self);
            else if (zpoller_terminated (poller))
                break;
        }
        zpoller_destroy (&poller);
    }
    for (size_t i = 0; i < RING_SIZE; i++)
        if (self->ring[i])
            mc__event__free_unpacked (self->ring[i], NULL);
    zhashx_destroy (&self->subs);
    zhashx_destroy (&self->waiting);
    zhashx_destroy (&self->published);
    zsock_destroy (&self->router);
    zsock_destroy (&self->webhook);
    free (self);
}
