/*  What gateway handlers share: the request being served, the per-thread sockets,
    and the one-write response helpers. */
#ifndef MC_HTTP_H
#define MC_HTTP_H

#include <civetweb.h>
#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>

#include "core/actor.h"
#include "core/authtab.h"
#include "core/context.h"

//  Sockets owned by one civetweb worker thread (made in init_thread, never shared).
typedef struct {
    zsock_t *registry; // DEALER to the registry actor
    zsock_t *eventbus; // DEALER to the eventbus actor
    zsock_t *webhook;  // DEALER to the webhook actor
    zsock_t *devices;  // DEALER to the devices actor
    zsock_t *auth;     // DEALER to the auth actor (UI tokens)
    zsock_t *sandbox;  // DEALER to the sandbox actor (resource use)
    zsock_t *storage;  // DEALER to the storage actor
    zsock_t *sdk;      // DEALER to the native SDK endpoint (CLI invocations)
} mc_http_thread_t;

#define MC_HTTP_MAX_PARAMS 4

//  Where the response of a request that did not come over HTTP goes (native SDK).
typedef struct {
    int status;           // HTTP status code
    char *body;           // the body (owned)
    size_t body_len;      // its length
    unsigned retry_after; // from a Retry-After header, else 0
} mc_http_capture_t;

//  One request being served.
typedef struct {
    struct mg_connection *conn;           // civetweb connection; NULL for native requests
    mc_http_capture_t *capture;           // native requests: the response goes here
    const char *native_body;              // native requests: the whole body
    size_t native_body_len;               // its length
    size_t native_body_read;              // how much of it was read
    const uint8_t *token_hash;            // native sessions: sha256 of the bearer token,
                                          // made once per session (else NULL: hashed here)
    const struct mg_request_info *info;   // method, path, headers
    mc_context_t *ctx;                    // shared context
    mc_http_thread_t *thread;             // this thread's sockets
    const char *path;                     // path below /api/v1 (starts with '/')
    char params[MC_HTTP_MAX_PARAMS][128]; // {} segments of the route, in order
    mc_principal_t principal;             // who called (valid after auth)
    bool authenticated;                   // principal is set
    uint32_t rate_remaining;              // units left after this request
    int *status_out;                      // where mc_http_send records the status sent
    const int *route_out;                 // the matched route (metrics), or NULL
    uint64_t started_ns;                  // when dispatch began (metrics)
} mc_http_req_t;

//  A request header, or NULL (civetweb's, or the native request's own headers).
const char *mc_http_header (mc_http_req_t *req, const char *name);

//  Reads up to len body bytes; returns the count, 0 at the end, <0 on error.
int mc_http_read_raw (mc_http_req_t *req, void *buf, size_t len);

//  The connection is closed after this response (its unread body must not be parsed as a
//  request). No-op for native requests.
void mc_http_close_after (mc_http_req_t *req);

//  Routes and serves one request (HTTP or native): authentication, rate limit,
//  permission, handler. Returns the status sent.
int mc_gateway_dispatch (mc_http_req_t *req);

//  True if a request for method and path (below /api/v1, as a native REQUEST carries
//  it: encoded, with any query) is answered in the calling thread without waiting on an
//  actor (routes marked so, and requests no route serves): an event loop may dispatch
//  those itself instead of handing them to a worker thread.
bool mc_gateway_answers_here (const char *method, const char *path);

//  Sockets for one thread that serves requests (civetweb worker or native worker).
mc_http_thread_t *mc_http_thread_new (void);
void mc_http_thread_destroy (mc_http_thread_t **self_p);

//  Sends a complete response in one write: status, headers (each "Name: value\r\n",
//  may be NULL), content type, body. Returns the status.
int mc_http_send (mc_http_req_t *req, int status, const char *headers, const char *type,
                  const char *body, size_t len);

//  Sends a JSON value (stolen: decref'd here). Returns the status.
int mc_http_json (mc_http_req_t *req, int status, json_t *body);

//  Sends {"error": code, "detail": detail}. Returns the status.
int mc_http_error (mc_http_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

//  Sends the error an actor replied with (status, code, detail, problems, output).
int mc_http_actor_error (mc_http_req_t *req, const mc_env_t *reply);

//  Calls an actor over this thread's socket; on no reply sends 504 and returns NULL.
mc_env_t *mc_http_call (mc_http_req_t *req, zsock_t *actor, mc_env_t *env, int timeout_ms);

//  Calls an actor with the default timeout. Returns the reply when it is OK and (unless
//  expect is MC__ENVELOPE__BODY__NOT_SET) carries that body; otherwise sends the answer
//  (504, the actor's error, or 500) and returns NULL. Caller frees with mc_env_free.
mc_env_t *mc_http_ask (mc_http_req_t *req, zsock_t *actor, mc_env_t *env,
                       Mc__Envelope__BodyCase expect);

//  The status already sent for this request (after a helper answered it), or 0.
int mc_http_status (mc_http_req_t *req);

//  Reads the whole body into memory, at most max bytes. Returns a malloc'd NUL-terminated
//  buffer (caller frees) and its length, or NULL after sending 413/400.
char *mc_http_read_body (mc_http_req_t *req, size_t max, size_t *len);

//  Reads the body as a JSON object (duplicate keys refused). Returns it, or NULL after
//  sending 400/413/415.
json_t *mc_http_read_json (mc_http_req_t *req);

//  A module record as the API shows it.
json_t *mc_http_record_json (const Mc__ModuleRecord *rec);

//  Resource use of one module as the API shows it.
json_t *mc_http_usage_json (const Mc__SandboxUsage *u);

//  Resource use of name (NULL: every module) from the sandbox: an object name -> usage
//  (empty when the sandbox does not answer).
json_t *mc_http_usage (mc_http_req_t *req, const char *name);

//  Route handlers, one file per API area.
int mc_api_health (mc_http_req_t *req);
int mc_api_modules_list (mc_http_req_t *req);
int mc_api_modules_get (mc_http_req_t *req);
int mc_api_modules_self (mc_http_req_t *req);
int mc_api_modules_install (mc_http_req_t *req);
int mc_api_modules_start (mc_http_req_t *req);
int mc_api_modules_stop (mc_http_req_t *req);
int mc_api_modules_uninstall (mc_http_req_t *req);
int mc_api_modules_logs (mc_http_req_t *req);
int mc_api_devices_list (mc_http_req_t *req);
int mc_api_devices_get (mc_http_req_t *req);
int mc_api_devices_create (mc_http_req_t *req);
int mc_api_devices_state (mc_http_req_t *req);
int mc_api_devices_delete (mc_http_req_t *req);
int mc_api_modules_config_get (mc_http_req_t *req);
int mc_api_modules_config_set (mc_http_req_t *req);
int mc_api_modules_ui_token (mc_http_req_t *req);
int mc_api_cli_register (mc_http_req_t *req);
int mc_api_cli_list (mc_http_req_t *req);
int mc_api_cli_get (mc_http_req_t *req);
int mc_api_cli_invoke (mc_http_req_t *req);
int mc_api_events_publish (mc_http_req_t *req);
int mc_api_events_subscribe (mc_http_req_t *req);
int mc_api_events_unsubscribe (mc_http_req_t *req);
int mc_api_events_subscriptions (mc_http_req_t *req);
int mc_api_events_recent (mc_http_req_t *req);
int mc_api_events_deliveries (mc_http_req_t *req);
int mc_api_events_retry (mc_http_req_t *req);
int mc_api_storage_get (mc_http_req_t *req);
int mc_api_storage_put (mc_http_req_t *req);
int mc_api_storage_delete (mc_http_req_t *req);
int mc_api_storage_list (mc_http_req_t *req);
int mc_api_storage_batch (mc_http_req_t *req);
int mc_api_storage_usage (mc_http_req_t *req);
int mc_api_bench_tokens (mc_http_req_t *req);

//  The module record of the caller (a module token), or NULL after sending an error.
//  Caller frees with mc_env_free (the record is reply->module).
mc_env_t *mc_http_own_record (mc_http_req_t *req);

//  Copies query parameter name into buf; returns true if present.
bool mc_http_query (mc_http_req_t *req, const char *name, char *buf, size_t size);

#endif
