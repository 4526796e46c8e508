#include "core/actor.h"

#include <pthread.h>

#include "core/metrics.h"
#include "core/ratelimit.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>

//  Request ids are unique per process, so a late reply can never match a newer call.
static _Atomic uint64_t s_next_request_id = 1;

zsock_t *mc_client_new (const char *actor)
{
    char endpoint[128];
    snprintf (endpoint, sizeof endpoint, MC_ENDPOINT_PREFIX "%s", actor);
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    assert (sock);
    zsock_set_linger (sock, 0);
    if (zsock_connect (sock, "%s", endpoint) != 0) {
        zsys_error ("actor: cannot connect to %s", endpoint);
        zsock_destroy (&sock);
    } else
        mc_metrics_client_register (sock, mc_metrics_actor_id (actor));
    return sock;
}

zsock_t *mc_actor_bind (const char *actor)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    assert (sock);
    zsock_set_linger (sock, 0);
    //  Replies to a client that went away are dropped, never block the actor.
    zsock_set_router_mandatory (sock, 0);
    mc_metrics_set_thread_actor (actor); // this thread is that actor
    char name[16];                       // what top -H and perf show for the thread
    snprintf (name, sizeof name, "mc-%s", actor);
    pthread_setname_np (pthread_self (), name);
    //  An inproc endpoint is released asynchronously when its last socket closes: an
    //  actor restarted at once (tests) may find it still taken for a moment.
    int rc = -1;
    for (int attempt = 0; attempt < 100 && rc != 0; attempt++) {
        rc = zsock_bind (sock, MC_ENDPOINT_PREFIX "%s", actor);
        if (rc != 0 && zmq_errno () == EADDRINUSE)
            zclock_sleep (10);
        else
            break;
    }
    if (rc != 0) {
        zsys_error ("%s: cannot bind %s%s", actor, MC_ENDPOINT_PREFIX, actor);
        zsock_destroy (&sock);
    }
    return sock;
}

zframe_t *mc_env_pack (const mc_env_t *env)
{
    size_t size = mc__envelope__get_packed_size (env);
    zframe_t *frame = zframe_new (NULL, size);
    assert (frame);
    mc__envelope__pack (env, zframe_data (frame));
    return frame;
}

mc_env_t *mc_env_unpack (zframe_t *frame)
{
    if (!frame)
        return NULL;
    return mc__envelope__unpack (NULL, zframe_size (frame), zframe_data (frame));
}

void mc_env_free (mc_env_t *env)
{
    if (env)
        mc__envelope__free_unpacked (env, NULL);
}

mc_env_t *mc_call (zsock_t *client, mc_env_t *req, int timeout_ms)
{
    return mc_call_cancellable (client, req, timeout_ms, NULL);
}

mc_env_t *mc_call_cancellable (zsock_t *client, mc_env_t *req, int timeout_ms,
                               const atomic_bool *cancel)
{
    req->request_id = atomic_fetch_add (&s_next_request_id, 1);
    zframe_t *frame = mc_env_pack (req);
    mc_metrics_actor_sent (mc_metrics_client_actor (client));
    if (zframe_send (&frame, client, 0) != 0) {
        zframe_destroy (&frame);
        return NULL;
    }
    int64_t deadline = timeout_ms < 0 ? -1 : zclock_mono () + timeout_ms;
    zmq_pollitem_t item = {zsock_resolve (client), 0, ZMQ_POLLIN, 0};
    for (;;) {
        long wait = deadline < 0 ? -1 : (long)(deadline - zclock_mono ());
        if (deadline >= 0 && wait < 0)
            wait = 0;
        if (cancel && (wait < 0 || wait > 100))
            wait = 100; // look at the cancel flag ten times a second
        int rc = zmq_poll (&item, 1, wait);
        if (rc < 0 && errno == EINTR)
            continue;
        if (cancel && atomic_load (cancel))
            return NULL;
        if (rc == 0 && (deadline < 0 || zclock_mono () < deadline))
            continue;
        if (rc <= 0) {
            zsys_warning ("actor: call %s timed out after %d ms",
                          req->body_case ? "request" : "empty request", timeout_ms);
            return NULL;
        }
        frame = zframe_recv (client);
        mc_env_t *reply = mc_env_unpack (frame);
        zframe_destroy (&frame);
        if (reply && reply->request_id == req->request_id)
            return reply;
        mc_env_free (reply); // a late reply to an earlier, abandoned call
    }
}

uint64_t mc_send_request (zsock_t *client, mc_env_t *req)
{
    req->request_id = atomic_fetch_add (&s_next_request_id, 1);
    zframe_t *frame = mc_env_pack (req);
    mc_metrics_actor_sent (mc_metrics_client_actor (client));
    if (zframe_send (&frame, client, 0) != 0) {
        zframe_destroy (&frame);
        return 0;
    }
    return req->request_id;
}

int mc_notify (zsock_t *client, mc_env_t *env)
{
    env->request_id = 0;
    zframe_t *frame = mc_env_pack (env);
    mc_metrics_actor_sent (mc_metrics_client_actor (client));
    int rc = zframe_send (&frame, client, ZFRAME_DONTWAIT);
    zframe_destroy (&frame);
    return rc;
}

mc_request_t *mc_request_recv (zsock_t *router)
{
    zmsg_t *msg = zmsg_recv (router);
    if (!msg)
        return NULL;
    mc_metrics_actor_received (mc_metrics_thread_actor ());
    zframe_t *id = zmsg_pop (msg);
    zframe_t *body = zmsg_pop (msg);
    zmsg_destroy (&msg);
    mc_env_t *env = mc_env_unpack (body);
    zframe_destroy (&body);
    if (!id) {
        mc_env_free (env);
        return NULL;
    }
    if (!env) {
        //  Undecodable: its request_id is unknown, so no reply can match; the caller's
        //  own timeout reports the failure. Logged, never asserted: input from a socket.
        zsys_warning ("actor: dropped a frame that is not an Envelope");
        zframe_destroy (&id);
        return NULL;
    }
    mc_request_t *self = calloc (1, sizeof *self);
    assert (self);
    self->routing_id = id;
    self->env = env;
    self->received_ns = mc_clock_mono_ns ();
    return self;
}

void mc_request_destroy (mc_request_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    //  A request is done when it is freed: answered, or dropped by its actor.
    mc_metrics_actor_handled (mc_metrics_thread_actor (),
                              mc_clock_mono_ns () - (*self_p)->received_ns);
    zframe_destroy (&(*self_p)->routing_id);
    mc_env_free ((*self_p)->env);
    free (*self_p);
    *self_p = NULL;
}

int mc_reply (zsock_t *router, zframe_t *routing_id, uint64_t request_id, mc_env_t *reply)
{
    if (request_id == 0)
        return 0;
    reply->request_id = request_id;
    zframe_t *id = zframe_dup (routing_id);
    zframe_t *body = mc_env_pack (reply);
    if (zframe_send (&id, router, ZFRAME_MORE) != 0 || zframe_send (&body, router, 0) != 0) {
        zframe_destroy (&id);
        zframe_destroy (&body);
        return -1;
    }
    return 0;
}

int mc_reply_error (zsock_t *router, zframe_t *routing_id, uint64_t request_id, Mc__Status status,
                    const char *code, const char *fmt, ...)
{
    char detail[1024];
    va_list args;
    va_start (args, fmt);
    vsnprintf (detail, sizeof detail, fmt, args);
    va_end (args);
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.status = status;
    reply.error = (char *)code;
    reply.detail = detail;
    return mc_reply (router, routing_id, request_id, &reply);
}

int mc_publish_core_event (zsock_t *eventbus, const char *type, json_t *payload)
{
    char *json = json_dumps (payload, JSON_COMPACT);
    json_decref (payload);
    if (!json)
        return -1;
    Mc__EventPublish pub = MC__EVENT_PUBLISH__INIT;
    pub.type = (char *)type;
    pub.source = "core";
    pub.payload_json = json;
    pub.core = true;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_EVENT_PUBLISH;
    env.event_publish = &pub;
    int rc = mc_notify (eventbus, &env);
    free (json);
    return rc;
}

int mc_status_http (Mc__Status status)
{
    switch (status) {
        case MC__STATUS__STATUS_OK:
            return 200;
        case MC__STATUS__STATUS_BAD_REQUEST:
            return 400;
        case MC__STATUS__STATUS_UNAUTHORIZED:
            return 401;
        case MC__STATUS__STATUS_FORBIDDEN:
            return 403;
        case MC__STATUS__STATUS_NOT_FOUND:
            return 404;
        case MC__STATUS__STATUS_CONFLICT:
            return 409;
        case MC__STATUS__STATUS_INVALID:
            return 422;
        case MC__STATUS__STATUS_RATE_LIMITED:
            return 429;
        case MC__STATUS__STATUS_INTERNAL:
            return 500;
        case MC__STATUS__STATUS_UNAVAILABLE:
            return 503;
        case MC__STATUS__STATUS_TIMEOUT:
            return 504;
        case MC__STATUS__STATUS_TOO_LARGE:
            return 413;
        case MC__STATUS__STATUS_INSUFFICIENT_STORAGE:
            return 507;
        case _MC__STATUS_IS_INT_SIZE:
            break;
    }
    return 500;
}

int mc_actor_on_pipe (zloop_t *loop, zsock_t *pipe, void *arg)
{
    (void)loop, (void)arg;
    char *command = zstr_recv (pipe);
    int rc = (!command || streq (command, "$TERM")) ? -1 : 0;
    zstr_free (&command);
    return rc;
}

void mc_actor_serve (zsock_t *pipe, zsock_t *router, void (*on_request) (void *self), void *self)
{
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    for (bool terminated = false; !terminated;) {
        void *which = zpoller_wait (poller, -1);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            terminated = !command || streq (command, "$TERM");
            zstr_free (&command);
        } else if (which == router)
            on_request (self);
        else if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
}

//  zactor_new consumes the zsock_signal handshake without looking at its status, so the
//  outcome travels as one string right after it.
int mc_actor_ready (zsock_t *pipe, int rc)
{
    zsock_signal (pipe, 0);
    zstr_send (pipe, rc == 0 ? "READY" : "FAILED");
    return rc;
}

zactor_t *mc_actor_start (const char *name, zactor_fn *fn, void *args)
{
    zactor_t *actor = zactor_new (fn, args);
    assert (actor);
    char *status = zstr_recv (actor);
    bool ok = status && streq (status, "READY");
    zstr_free (&status);
    if (!ok) {
        zsys_error ("%s: failed to start", name);
        zactor_destroy (&actor);
    }
    return actor;
}
