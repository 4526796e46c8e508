/*  libmodcore internals: the handle and the pieces it is made of.

    module.c     the handle, settings, life cycle, the API calls, subscriptions,
                 dispatch of events and CLI invocations, the dispatcher thread
    http.c       the HTTP transport (libcurl, a small pool of easy handles)
    native.c     the native transport (one I/O thread owns the ZeroMQ DEALER)
    server.c     the module's own HTTP server (civetweb)
    cli.c        CLI spec, mc_output_t
    sign.c       X-Selena-Signature */
#ifndef MC_SDK_INTERNAL_H
#define MC_SDK_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modcore.h"

#define MC_SDK_AGENT "libmodcore/" MC_SDK_VERSION

typedef struct mc_http_t mc_http_t;
typedef struct mc_native_t mc_native_t;
typedef struct mc_server_t mc_server_t;

//  One subscription as the module made it.
typedef struct sub_t {
    int id;               // what mc_module_subscribe returned
    char **patterns;      // NULL-terminated
    size_t count;         // number of patterns
    mc_event_fn *handler; // called for matching events
    void *arg;            // handler's argument
    char *remote_id;      // the core's subscription_id, or NULL while not subscribed
    struct sub_t *next;   // list
} sub_t;

//  One CLI subcommand.
typedef struct cli_cmd_t {
    char *name;             // subcommand name
    json_t *spec;           // {"name","about","args":[...]} as sent in /cli/spec
    mc_cli_fn *handler;     // runs it
    void *arg;              // handler's argument
    struct cli_cmd_t *next; // list
} cli_cmd_t;

//  One route of the module's own server.
typedef struct route_t {
    char *method;         // "GET", ...
    char *path;           // exact path
    mc_route_fn *handler; // answers it
    void *arg;            // handler's argument
    struct route_t *next; // list
} route_t;

//  A periodic callback.
typedef struct mc_timer_s {
    int interval_ms;         // period
    mc_timer_fn *fn;         // callback
    void *arg;               // its argument
    int64_t due_ms;          // next run, monotonic ms
    struct mc_timer_s *next; // list
} mc_timer_t;

//  Work for the dispatcher thread.
typedef enum {
    WORK_EVENT,  // native EVENT: dispatch, then ACK
    WORK_INVOKE, // native INVOKE: run the CLI, then INVOKE_RESULT
    WORK_RESYNC, // a new session (core restarted): subscribe and register the CLI again
} work_kind_t;

typedef struct work_t {
    work_kind_t kind;    // what to do
    uint64_t frame_id;   // the core's frame id to answer
    uint64_t session;    // the session it arrived on (answers to older ones are dropped)
    char *data;          // EVENT: the event JSON; INVOKE: the subcommand
    size_t size;         // bytes of data
    char *args_json;     // INVOKE: the args
    struct work_t *next; // queue
} work_t;

#define HANDLED_RING 512 // event ids remembered as handled

struct _mc_module_t {
    //  Settings (fixed once started)
    char *core_url;           // http://host:port/api/v1
    char *token;              // module token (never logged)
    char *secret;             // webhook secret, 64 hex chars (never logged)
    char *name;               // module name
    char *version;            // for /health
    char *about;              // the CLI spec's about
    char *install_path;       // SELENA_INSTALL_PATH
    char *endpoint;           // MODCORE_SDK_ENDPOINT
    char *static_dir;         // served on the port, or NULL
    int port;                 // module port, 0 = no server
    int heartbeat_ms;         // proposed in HELLO
    mc_transport_t transport; // chosen transport
    //  Call behaviour (any time)
    atomic_int timeout_ms;  // one call
    atomic_int max_retries; // 429 retries
    atomic_int max_wait_ms; // longest Retry-After honoured
    //  Shared state, under lock
    pthread_mutex_t lock; // guards everything below up to `started`
    sub_t *subs;          // subscriptions
    int next_sub_id;      // ids
    cli_cmd_t *cli;       // subcommands, in order added
    route_t *routes;      // own routes
    mc_timer_t *timers;   // periodic callbacks
    bool started;         // between start and stop
    bool starting;        // start in progress
    //  Callbacks run one at a time (recursive: a callback may call the API)
    pthread_mutex_t callback_lock;
    char handled[HANDLED_RING][48]; // event ids already dispatched (under callback_lock)
    size_t handled_next;            // ring position
    //  Parts
    mc_http_t *http;              // HTTP transport (always: also used for /health watch)
    pthread_rwlock_t native_lock; // read: a call uses `native`; write: it is replaced
    mc_native_t *native;          // native transport when chosen and started
    char native_refusal[64];      // why the last native start failed ("UNAUTHORIZED"...), or ""
    mc_server_t *server;          // own server when started with a port
    //  Dispatcher thread: native work, timers, the HTTP-mode restart watch
    pthread_t dispatcher;          // the thread
    bool dispatcher_running;       // joined at stop
    pthread_mutex_t work_lock;     // guards the queue and `stopping`
    pthread_cond_t work_cond;      // signalled on new work and on stop
    work_t *work_head, *work_tail; // queue
    bool stopping;                 // the dispatcher should end
    //  mc_module_run
    int stop_fd; // eventfd written by mc_module_request_stop
};

//  --- module.c -----------------------------------------------------------------------

//  True while this thread runs a user callback (mc_module_stop must not be called then).
extern __thread bool mc_sdk_in_callback;

//  Monotonic milliseconds.
int64_t mc_sdk_now_ms (void);

//  Logs one line to stderr with the SDK prefix.
void mc_sdk_log (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

//  A reply for a failure without an answer (status 0), or with a status.
mc_reply_t *mc_reply_error (int status, const char *code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  A reply from a status and a body (copied); the error fields are filled from a
//  {"error","detail"} body on non-2xx.
mc_reply_t *mc_reply_from_body (int status, const char *body, size_t size);

//  Hands an event (JSON text) to every matching handler once. Returns 0, or -1 if the
//  text is not an event.
int mc_module_deliver (mc_module_t *self, const char *json, size_t size);

//  Runs a CLI subcommand. Returns the exit code; *out and *err get the output (caller
//  frees).
int mc_module_cli_invoke (mc_module_t *self, const char *subcommand, json_t *args, char **out,
                          char **err);

//  Queues work for the dispatcher thread (takes ownership of work).
void mc_module_post_work (mc_module_t *self, work_t *work);

//  The CLI spec to register, or NULL if the module has no subcommands (caller decrefs).
json_t *mc_module_cli_spec (mc_module_t *self);

//  --- http.c -------------------------------------------------------------------------

mc_http_t *mc_http_new (void);
void mc_http_destroy (mc_http_t **self_p);

//  One request; body may be NULL. Never NULL.
mc_reply_t *mc_http_call (mc_http_t *self, const char *base_url, const char *token,
                          const char *method, const char *path, const char *body, int timeout_ms);

//  --- native.c -----------------------------------------------------------------------

//  Connects, sends HELLO and waits up to timeout_ms for WELCOME. Returns the transport
//  (which keeps reconnecting from then on), or NULL if the core refused the token or
//  did not answer (*code says which: "UNAUTHORIZED", "TIMEOUT", ...).
mc_native_t *mc_native_start (mc_module_t *module, const char *endpoint, const char *token,
                              int heartbeat_ms, int timeout_ms, char *code, size_t code_size);

//  BYE, ends the I/O thread, closes the socket, answers the waiting calls; later calls
//  are answered NOT_CONNECTED at once. The object stays valid. Idempotent.
void mc_native_close (mc_native_t *self);

//  Closes (if needed) and frees the transport. Safe on NULL, twice.
void mc_native_stop (mc_native_t **self_p);

//  One REQUEST; waits for its RESPONSE up to timeout_ms. Never NULL.
mc_reply_t *mc_native_call (mc_native_t *self, const char *method, const char *path,
                            const char *body, int timeout_ms);

//  ACK an EVENT / answer an INVOKE (dropped if the session is not the same any more).
void mc_native_ack (mc_native_t *self, uint64_t session, uint64_t frame_id, bool ok);
void mc_native_invoke_result (mc_native_t *self, uint64_t session, uint64_t frame_id, int exit_code,
                              const char *out, const char *err);

//  --- server.c -----------------------------------------------------------------------

//  Listens on 127.0.0.1:port. Returns NULL (logged) if it cannot.
mc_server_t *mc_server_start (mc_module_t *module, int port, const char *static_dir);
void mc_server_stop (mc_server_t **self_p);

//  --- cli.c --------------------------------------------------------------------------

mc_output_t *mc_output_new (void);
//  Returns the text and frees the output.
char *mc_output_finish (mc_output_t **self_p);

//  The {"name","about","args"} of one subcommand, or NULL (logged) if invalid.
json_t *mc_cli_subcommand_spec (const char *name, const char *about, const mc_cli_arg_t *args);

#endif
