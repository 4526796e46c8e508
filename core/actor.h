/*  The actor runtime: how threads talk to actors.

    Every actor binds a ROUTER at inproc://modcore.<name> before it signals its pipe.
    A client is a DEALER owned by exactly one thread (never shared); it sends one
    frame, a packed mc.Envelope with a request_id, and the actor replies with one frame
    echoing that request_id. A reply that arrives after its caller gave up is dropped by
    the next call on that socket (ids never repeat on a socket). request_id 0 is a
    notification: the actor does not reply. */
#ifndef MC_ACTOR_H
#define MC_ACTOR_H

#include <czmq.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "envelope.pb-c.h"

#define MC_ENDPOINT_PREFIX "inproc://modcore."

typedef Mc__Envelope mc_env_t;

//  A DEALER connected to the named actor ("auth", "registry", ...).
zsock_t *mc_client_new (const char *actor);

//  The ROUTER an actor binds at inproc://modcore.<name>; NULL if the bind fails.
zsock_t *mc_actor_bind (const char *actor);

//  Sends req (request_id is set here) and waits up to timeout_ms (-1: forever) for its
//  reply. Returns the reply (free with mc_env_free) or NULL on timeout, logged.
mc_env_t *mc_call (zsock_t *client, mc_env_t *req, int timeout_ms);

//  As mc_call, but gives up early (returning NULL) once *cancel becomes true; used by
//  worker threads that must not hold up a shutdown.
mc_env_t *mc_call_cancellable (zsock_t *client, mc_env_t *req, int timeout_ms,
                               const atomic_bool *cancel);

//  Sends req without waiting (request_id set here and returned, 0 on failure): for
//  actors that keep their loop free and take the reply from their poller.
uint64_t mc_send_request (zsock_t *client, mc_env_t *req);

//  Sends env as a notification (request_id 0, no reply). Returns 0 or -1.
int mc_notify (zsock_t *client, mc_env_t *env);

//  An incoming request on an actor's ROUTER.
typedef struct {
    zframe_t *routing_id; // who asked (owned)
    mc_env_t *env;        // what was asked (owned); NULL if the frame did not decode
    uint64_t received_ns; // when the actor took it (for the handling-time metric)
} mc_request_t;

//  Receives one request. A frame that does not decode as an Envelope is logged and
//  dropped and NULL is returned (its caller's timeout reports it): never an assert.
mc_request_t *mc_request_recv (zsock_t *router);

//  Frees a request; sets *self_p to NULL; safe on NULL.
void mc_request_destroy (mc_request_t **self_p);

//  Sends reply to routing_id with the given request_id (nothing when it is 0).
int mc_reply (zsock_t *router, zframe_t *routing_id, uint64_t request_id, mc_env_t *reply);

//  Sends an error reply (status, code, printf detail).
int mc_reply_error (zsock_t *router, zframe_t *routing_id, uint64_t request_id, Mc__Status status,
                    const char *code, const char *fmt, ...) __attribute__ ((format (printf, 6, 7)));

//  Packs env into a new frame.
zframe_t *mc_env_pack (const mc_env_t *env);

//  Decodes a frame; NULL if it is not an Envelope.
mc_env_t *mc_env_unpack (zframe_t *frame);

//  Frees a decoded envelope; safe on NULL.
void mc_env_free (mc_env_t *env);

//  Publishes a core event (type, payload taken: decref'd here) through the eventbus
//  client `eventbus` as a notification: the bus queues its deliveries durably; nobody
//  waits. Returns 0 or -1.
int mc_publish_core_event (zsock_t *eventbus, const char *type, json_t *payload);

//  A readable name of a status, and its HTTP equivalent.
int mc_status_http (Mc__Status status);

//  The loop of an actor that has only its pipe and its ROUTER: calls on_request (self)
//  for each message on router until $TERM (or interruption) arrives on the pipe.
void mc_actor_serve (zsock_t *pipe, zsock_t *router, void (*on_request) (void *self), void *self);

//  A zloop reader for an actor's pipe: ends the loop on $TERM (or interruption).
int mc_actor_on_pipe (zloop_t *loop, zsock_t *pipe, void *arg);

//  Start-up handshake. An actor calls this once its sockets are bound (rc 0) or when
//  it cannot start (rc -1, then it returns). Returns rc.
int mc_actor_ready (zsock_t *pipe, int rc);

//  Starts an actor and waits for its handshake. Returns NULL if it could not start
//  (the reason is in the log).
zactor_t *mc_actor_start (const char *name, zactor_fn *fn, void *args);
#endif
