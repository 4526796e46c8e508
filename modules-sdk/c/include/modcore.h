/*  libmodcore: the C SDK for modcore modules.

    A module is one process that the core starts with its credentials in the
    environment. It makes one handle from that environment, says what it handles, and
    runs:

        mc_module_t *m = mc_module_new_from_env ();
        mc_module_set_transport (m, MC_TRANSPORT_NATIVE);      // default: HTTP
        const char *types[] = {"device.*", NULL};
        mc_module_subscribe (m, types, on_event, NULL);
        mc_module_cli_add (m, "status", "Show the status", NULL, on_status, NULL);
        int rc = mc_module_run (m);                            // until SIGTERM/SIGINT
        mc_module_destroy (&m);

    One API over both transports. HTTP: libcurl to SELENA_CORE_URL, events arrive as
    signed webhooks on the module's own port. NATIVE: one ZeroMQ DEALER to
    MODCORE_SDK_ENDPOINT (docs/sdk-protocol.md), events pushed down the same
    connection; the module still serves GET /health (and POST /cli) on its port.

    OWNERSHIP. A `json_t *` or `const char *` parameter is borrowed: the SDK copies what
    it keeps and never frees it. A `_p` parameter (pointer to pointer) hands the object
    over and sets the caller's pointer to NULL. Every `mc_reply_t *` and `char *`
    returned belongs to the caller; `_destroy (&x)` frees and sets x to NULL, and is
    safe to call twice. `const char *` results are borrowed from the handle.

    THREADS. Every API call is thread safe and may be made from any thread, including
    from inside a callback. Callbacks (event handlers, CLI handlers, routes, timers)
    run on threads owned by the SDK, one at a time: two callbacks never run at once.

    ERRORS. Calls to the core return an mc_reply_t: `status` is the HTTP status (the
    native transport carries the same statuses), `json` the decoded answer. On a
    non-2xx answer `error` and `detail` hold the core's {"error", "detail"}; when the
    core was not reached at all, status is 0 and `error` is one of the SDK's codes:
    UNREACHABLE, TIMEOUT, NOT_CONNECTED, UNAUTHORIZED (native session refused),
    DISCONNECTED (the session was lost while the call was in flight: it may or may not
    have run), BAD_ANSWER (an answer that is not JSON), INVALID_ARGUMENT. */
#ifndef MODCORE_H
#define MODCORE_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MODCORE_BUILD) && defined(__GNUC__)
#define MC_EXPORT __attribute__ ((visibility ("default")))
#else
#define MC_EXPORT
#endif

#define MC_SDK_VERSION "0.1.0"

typedef struct _mc_module_t mc_module_t;
typedef struct _mc_output_t mc_output_t;

//  How the module talks to the core.
typedef enum {
    MC_TRANSPORT_HTTP = 1,   // libcurl to SELENA_CORE_URL; events as webhooks (default)
    MC_TRANSPORT_NATIVE = 2, // ZeroMQ + protobuf to MODCORE_SDK_ENDPOINT
} mc_transport_t;

//  The outcome of one call to the core.
typedef struct {
    int status;      // HTTP status; 0 if the core gave no answer (see error)
    json_t *json;    // the decoded answer, or NULL (204, empty body)
    char *error;     // NULL on 2xx; else the core's error code or the SDK's
    char *detail;    // NULL on 2xx; else the explanation
    int retry_after; // seconds, with a 429 that was not retried (0 otherwise)
} mc_reply_t;

//  True if the reply is a 2xx.
MC_EXPORT bool mc_reply_ok (const mc_reply_t *self);

//  Frees the reply and sets *self_p to NULL; safe on NULL.
MC_EXPORT void mc_reply_destroy (mc_reply_t **self_p);

//  --- the handle ---------------------------------------------------------------------

//  A handle from the environment the core gives a module: SELENA_MODULE_TOKEN (or
//  MODULE_TOKEN), SELENA_WEBHOOK_SECRET, SELENA_CORE_URL (or SELENA_CORE_API, default
//  http://127.0.0.1:7070/api/v1), SELENA_MODULE_NAME, SELENA_MODULE_PORT,
//  SELENA_INSTALL_PATH, MODCORE_SDK_ENDPOINT. The manifest in SELENA_INSTALL_PATH (or
//  the working directory) gives the version and description when present. Never NULL;
//  a missing variable shows when it is needed (a call answers UNAUTHORIZED, no port
//  means no server).
MC_EXPORT mc_module_t *mc_module_new_from_env (void);

//  A handle with explicit settings (tools and tests); any argument may be NULL.
MC_EXPORT mc_module_t *mc_module_new (const char *core_url, const char *token,
                                      const char *sdk_endpoint);

//  Stops the module if it runs, frees the handle, sets *self_p to NULL; safe twice.
MC_EXPORT void mc_module_destroy (mc_module_t **self_p);

//  Chooses the transport, before mc_module_start. Returns 0, or -1 if already started
//  or the transport is unknown.
MC_EXPORT int mc_module_set_transport (mc_module_t *self, mc_transport_t transport);

//  Settings, before mc_module_start (each returns 0, or -1 once started).
MC_EXPORT int mc_module_set_name (mc_module_t *self, const char *name);
MC_EXPORT int mc_module_set_port (mc_module_t *self, int port); // 0: no server
MC_EXPORT int mc_module_set_version (mc_module_t *self, const char *version);
MC_EXPORT int mc_module_set_about (mc_module_t *self, const char *about);
MC_EXPORT int mc_module_set_webhook_secret (mc_module_t *self, const char *secret);
//  Serve the files of dir (widget.html, settings.html, icon.svg...) on the module port.
MC_EXPORT int mc_module_set_static_dir (mc_module_t *self, const char *dir);
//  Native heartbeat interval proposed in HELLO (0: the core's default, 5000 ms).
MC_EXPORT int mc_module_set_heartbeat (mc_module_t *self, int heartbeat_ms);

//  Behaviour of calls (any time): how long one call may take (default 10000 ms), and
//  how many times a 429 is retried after its Retry-After (default 3; each wait at most
//  max_wait_ms, default 10000). 0 retries hands every 429 back to the caller.
MC_EXPORT void mc_module_set_timeout (mc_module_t *self, int timeout_ms);
MC_EXPORT void mc_module_set_retries (mc_module_t *self, int max_retries, int max_wait_ms);

//  What the handle was made with (borrowed; "" when unknown).
MC_EXPORT const char *mc_module_name (mc_module_t *self);
MC_EXPORT const char *mc_module_version (mc_module_t *self);
MC_EXPORT const char *mc_module_install_path (mc_module_t *self);
MC_EXPORT int mc_module_port (mc_module_t *self);
MC_EXPORT mc_transport_t mc_module_transport (mc_module_t *self);

//  --- life cycle ---------------------------------------------------------------------

//  Starts the module: the HTTP server on its port (GET /health, POST /webhook/events,
//  POST /cli, routes, static files), the transport (NATIVE: connects, HELLO, waits for
//  WELCOME), the subscriptions and the CLI spec. Returns 0, or -1 with the reason
//  logged (port in use, session refused, subscription refused...). Idempotent.
MC_EXPORT int mc_module_start (mc_module_t *self);

//  Stops what mc_module_start started (BYE, server, SDK threads). Idempotent; the
//  handle can be started again.
MC_EXPORT void mc_module_stop (mc_module_t *self);

//  Starts the module if needed, blocks until SIGTERM or SIGINT (or
//  mc_module_request_stop), then stops it. Returns 0, or -1 if it could not start.
MC_EXPORT int mc_module_run (mc_module_t *self);

//  Makes mc_module_run return (from any thread, or from a signal handler).
MC_EXPORT void mc_module_request_stop (mc_module_t *self);

//  Calls fn every interval_ms on an SDK thread, from the start on. Returns 0 or -1.
typedef void (mc_timer_fn) (mc_module_t *self, void *arg);
MC_EXPORT int mc_module_every (mc_module_t *self, int interval_ms, mc_timer_fn *fn, void *arg);

//  --- events -------------------------------------------------------------------------

//  Receives one event: its type and the whole event {"id", "type", "source",
//  "timestamp", "payload"} (borrowed: valid during the call).
typedef void (mc_event_fn) (mc_module_t *self, const char *type, json_t *event, void *arg);

//  Calls handler for the events whose type matches one of patterns (NULL-terminated;
//  exact types or "prefix.*"). The subscription is made at start, again after the core
//  restarted (a new session), and at once when the module already runs. Each event is
//  handed once to every matching handler, even when several subscriptions match it.
//  Returns a subscription id (> 0), or -1 (bad arguments, or the core refused it).
MC_EXPORT int mc_module_subscribe (mc_module_t *self, const char *const *patterns,
                                   mc_event_fn *handler, void *arg);

//  Removes a subscription (locally, and in the core when no other uses it). 0 or -1.
MC_EXPORT int mc_module_unsubscribe (mc_module_t *self, int subscription_id);

//  POST /events/publish {"type", "payload"} (payload NULL = {}).
MC_EXPORT mc_reply_t *mc_module_publish (mc_module_t *self, const char *type,
                                         const json_t *payload);

//  GET /events/subscriptions: this module's subscriptions as the core knows them.
MC_EXPORT mc_reply_t *mc_module_subscriptions (mc_module_t *self);

//  --- devices ------------------------------------------------------------------------

//  GET /devices -> {"devices": [...]}
MC_EXPORT mc_reply_t *mc_module_devices_list (mc_module_t *self);
//  GET /devices/{id}
MC_EXPORT mc_reply_t *mc_module_device_get (mc_module_t *self, const char *device_id);
//  POST /devices {name, type, protocol, capabilities[], meta{}} -> 201 device
MC_EXPORT mc_reply_t *mc_module_device_create (mc_module_t *self, const json_t *device);
//  PATCH /devices/{id}/state {"state": state}; the core publishes device.state_changed
MC_EXPORT mc_reply_t *mc_module_device_set_state (mc_module_t *self, const char *device_id,
                                                  const json_t *state);
//  DELETE /devices/{id}
MC_EXPORT mc_reply_t *mc_module_device_delete (mc_module_t *self, const char *device_id);

//  --- config, storage, secrets, self -------------------------------------------------

//  GET /modules/{me}/config -> {"module", "config", "layers"}
MC_EXPORT mc_reply_t *mc_module_config_get (mc_module_t *self);
//  POST /modules/{me}/config {"key", "value"}
MC_EXPORT mc_reply_t *mc_module_config_set (mc_module_t *self, const char *key,
                                            const json_t *value);

//  GET /storage/{key} -> {"key", "value"}; 404 when the key does not exist
MC_EXPORT mc_reply_t *mc_module_storage_get (mc_module_t *self, const char *key);
//  PUT /storage/{key} {"value": value}
MC_EXPORT mc_reply_t *mc_module_storage_put (mc_module_t *self, const char *key,
                                             const json_t *value);
//  DELETE /storage/{key}
MC_EXPORT mc_reply_t *mc_module_storage_delete (mc_module_t *self, const char *key);
//  GET /storage?prefix=&after=&limit= -> {"items": [...], "next"} (NULL/0: not sent)
MC_EXPORT mc_reply_t *mc_module_storage_list (mc_module_t *self, const char *prefix,
                                              const char *after, int limit);
//  POST /storage/batch {"put": {key: value...}, "delete": [key...]}: all or nothing
MC_EXPORT mc_reply_t *mc_module_storage_batch (mc_module_t *self, const json_t *puts,
                                               const json_t *deletes);

//  POST /secrets/proxy {"provider", "url", "method", "headers", "body"}: the core makes
//  the call with the provider's token -> {"status_code", "headers", "body"}.
//  headers (object) and body (any JSON) may be NULL.
MC_EXPORT mc_reply_t *mc_module_secrets_proxy (mc_module_t *self, const char *provider,
                                               const char *method, const char *url,
                                               const json_t *headers, const json_t *body);

//  GET /modules/self: this module's record.
MC_EXPORT mc_reply_t *mc_module_self (mc_module_t *self);

//  Any module-facing API call: method, path below /api/v1 (with its query), body.
MC_EXPORT mc_reply_t *mc_module_request (mc_module_t *self, const char *method, const char *path,
                                         const json_t *body);

//  --- CLI commands -------------------------------------------------------------------

//  One argument of a subcommand (POST /cli/spec's args[]). A list ends with {NULL}.
typedef struct {
    const char *name;          // key in the handler's args object: [a-z0-9_-]
    const char *long_name;     // --long-name, or NULL
    char short_name;           // -x, or 0
    bool required;             // must be given
    bool takes_value;          // a string value (else a flag: true/false)
    const char *default_value; // when not given, or NULL
    const char *help;          // one line, or NULL
} mc_cli_arg_t;

//  Runs a subcommand: args is {"name": "value" | true | false} (borrowed). Writes to
//  out and err; returns the exit code.
typedef int (mc_cli_fn) (mc_module_t *self, json_t *args, mc_output_t *out, mc_output_t *err,
                         void *arg);

//  Adds a subcommand to the module's CLI spec, registered (POST /cli/spec) at start and
//  again when the module already runs. args may be NULL. Returns 0 or -1.
MC_EXPORT int mc_module_cli_add (mc_module_t *self, const char *name, const char *about,
                                 const mc_cli_arg_t *args, mc_cli_fn *handler, void *arg);

//  Appends to a CLI handler's stdout or stderr.
MC_EXPORT void mc_output_printf (mc_output_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
MC_EXPORT void mc_output_write (mc_output_t *self, const char *data, size_t size);

//  --- the module's own HTTP routes ---------------------------------------------------

//  Answers one request to the module's port: method, path (without the query), query
//  string ("" if none), body (NUL-terminated, body_size bytes). Sets *answer to the
//  JSON to send (ownership passes to the SDK; NULL: no body) and returns the status.
typedef int (mc_route_fn) (mc_module_t *self, const char *method, const char *path,
                           const char *query, const char *body, size_t body_size, json_t **answer,
                           void *arg);

//  Serves method + path (exact) with handler, before mc_module_start. 0 or -1.
MC_EXPORT int mc_module_route (mc_module_t *self, const char *method, const char *path,
                               mc_route_fn *handler, void *arg);

//  --- helpers ------------------------------------------------------------------------

//  Writes "sha256=" + hex HMAC-SHA256(key = secret's ASCII, msg = body) to out (72
//  bytes with the NUL). What the core puts in X-Selena-Signature.
MC_EXPORT void mc_signature (const char *secret, const void *body, size_t size, char out[72]);

//  True if header is a valid X-Selena-Signature for body (constant-time comparison).
MC_EXPORT bool mc_signature_valid (const char *secret, const void *body, size_t size,
                                   const char *header);

#ifdef __cplusplus
}
#endif

#endif
