/*  sdk actor: the native SDK transport

    DESIGN. Modules connect a DEALER to the ROUTER bound at [sdk] endpoint
    (ipc://<data>/run/modcore.sock by default; tcp:// with CURVE when configured) and
    speak mc.sdk.Frame, one frame per message (proto/sdk.proto, docs/sdk-protocol.md).
    This actor owns the sessions: routing id -> {module, token, heartbeat, last traffic}.
    A HELLO is checked against the published token table (it spends one rate-limit unit,
    like any call); afterwards every frame re-checks that the token still exists, so an
    uninstalled module's session ends at its next frame.

    REQUESTs run the very same route table and handlers as the HTTP gateway
    (mc_gateway_dispatch) with the response captured instead of written to a socket:
    same permissions, same rate-limit bucket, same JSON. A request the route table
    answers without waiting on an actor (reads from a published view, and every refusal
    before a handler runs: 401, 404, 405) is served right here, in this loop: one thread
    and no hop, as a raw ZeroMQ server would. Every other request goes, with the
    session's token, to a pool of worker threads over inproc://modcore.sdk.work (a
    DEALER load-balances them), so that a slow actor never stalls the loop; workers
    answer through the same pipe and this loop forwards the RESPONSE to the module.

    Pushes: the webhook actor sends SdkPush for deliveries whose URL is "native:"; the
    EVENT goes to the module's most recent session and the webhook actor gets its reply
    when the module ACKs (OK), NACKs, the timeout passes, or the session dies; with no
    session it is answered at once (NOT_CONNECTED) and the webhook actor retries later.
    CLI invocations (SdkInvokeCall) work the same way with INVOKE/INVOKE_RESULT.

    Heartbeats: every second the loop PINGs sessions that have been quiet for their
    heartbeat interval and drops those silent for three intervals (their pending pushes
    and invocations fail, and are retried by their owners). */
#include "gateway/sdk.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "core/actor.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "core/metrics.h"
#include "envelope_cases.h"
#include "gateway/http.h"
#include "sdk.pb-c.h"

#define WORK_ENDPOINT        "inproc://modcore.sdk.work"
#define DEFAULT_HEARTBEAT_MS 5000

typedef Mc__Sdk__Frame frame_t;

typedef struct {
    char *key;                       // hex of the routing id, with the endpoint index
    zframe_t *routing_id;            // the module's DEALER
    int endpoint;                    // 0 = ipc, 1 = tcp
    char module[96];                 // who
    char token[72];                  // its token (memory only; requests run as HTTP ones would)
    uint8_t token_hash[MC_HASH_LEN]; // sha256 of it, for the check on every frame
    uint32_t heartbeat_ms;           // agreed interval
    int64_t last_recv;               // zclock_mono of the last frame from the module
    int64_t last_sent;               // zclock_mono of the last frame to it
} session_t;

//  A push or invocation waiting for the module's answer.
typedef struct {
    uint64_t id;          // the frame id sent to the module
    char session[64];     // the session key it went to
    mc_request_t *caller; // who waits (webhook, or a gateway thread)
    int64_t deadline;     // zclock_mono
    bool invoke;          // INVOKE (else EVENT)
} pending_t;

typedef struct {
    mc_context_t *ctx;        // shared context
    zsock_t *frontends[2];    // ROUTERs modules connect to: ipc, tcp (or NULL)
    zsock_t *router;          // inproc://modcore.sdk: pushes and invocations
    zsock_t *work;            // DEALER to the worker pool
    mc_http_thread_t *thread; // sockets for requests served in this loop
    uint32_t queued;          // requests handed to workers and not answered yet
    zactor_t **workers;       // the pool
    int worker_count;         // its size
    zhashx_t *sessions;       // key -> session_t *
    zhashx_t *latest;         // module -> session key (the most recent HELLO)
    zhashx_t *pending;        // frame id (string) -> pending_t *
    uint64_t next_id;         // ids of frames the core sends
    zcert_t *cert;            // CURVE server certificate (tcp), or NULL
    bool terminated;          // $TERM
} self_t;

static zframe_t *s_serve (mc_context_t *ctx, mc_http_thread_t *thread, const char *token,
                          const uint8_t *token_hash, frame_t *frame);

//  --- frames ----------------------------------------------------------------------

//  Sends an encoded frame to the session's module (*data_p is taken).
static int s_send_data (self_t *self, session_t *session, zframe_t **data_p)
{
    zframe_t *data = *data_p;
    *data_p = NULL;
    zframe_t *id = zframe_dup (session->routing_id);
    zsock_t *out = self->frontends[session->endpoint];
    int rc = zframe_send (&id, out, ZFRAME_MORE);
    if (rc == 0)
        rc = zframe_send (&data, out, 0);
    zframe_destroy (&id);
    zframe_destroy (&data);
    session->last_sent = zclock_mono ();
    return rc;
}

static int s_send_frame (self_t *self, session_t *session, frame_t *frame)
{
    size_t len = mc__sdk__frame__get_packed_size (frame);
    zframe_t *data = zframe_new (NULL, len);
    mc__sdk__frame__pack (frame, zframe_data (data));
    return s_send_data (self, session, &data);
}

//  Sends ERROR to a routing id that may have no session.
static void s_send_error (self_t *self, int endpoint, zframe_t *routing_id, uint64_t id,
                          const char *code, const char *detail)
{
    Mc__Sdk__Error error = MC__SDK__ERROR__INIT;
    error.code = (char *)code;
    error.detail = (char *)detail;
    frame_t frame = MC__SDK__FRAME__INIT;
    frame.id = id;
    frame.body_case = MC__SDK__FRAME__BODY_ERROR;
    frame.error = &error;
    session_t temp = {.routing_id = routing_id, .endpoint = endpoint};
    s_send_frame (self, &temp, &frame);
}

//  "<endpoint>:<routing id in hex>" (on every frame: no allocation, no printf).
static void s_session_key (zframe_t *routing_id, int endpoint, char *key, size_t size)
{
    static const char digits[] = "0123456789ABCDEF";
    const byte *id = zframe_data (routing_id);
    size_t n = zframe_size (routing_id), at = 0;
    assert (size >= 4);
    key[at++] = (char)('0' + endpoint);
    key[at++] = ':';
    for (size_t i = 0; i < n && at + 3 <= size; i++) {
        key[at++] = digits[id[i] >> 4];
        key[at++] = digits[id[i] & 15];
    }
    key[at] = 0;
}

static void s_session_free (void **item)
{
    session_t *session = *item;
    if (!session)
        return;
    zframe_destroy (&session->routing_id);
    memset (session->token, 0, sizeof session->token);
    memset (session->token_hash, 0, sizeof session->token_hash);
    free (session->key);
    free (session);
    *item = NULL;
}

static void s_pending_free (void **item)
{
    pending_t *pending = *item;
    if (!pending)
        return;
    mc_request_destroy (&pending->caller);
    free (pending);
    *item = NULL;
}

//  Answers a pending push/invocation with an error, and forgets it.
static void s_fail_pending (self_t *self, pending_t *pending, Mc__Status status, const char *code,
                            const char *detail)
{
    mc_reply_error (self->router, pending->caller->routing_id, pending->caller->env->request_id,
                    status, code, "%s", detail);
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, pending->id);
    zhashx_delete (self->pending, key);
}

//  Ends a session: its pending pushes and invocations fail (their owners retry).
static void s_drop_session (self_t *self, const char *key, const char *why)
{
    session_t *session = zhashx_lookup (self->sessions, key);
    if (!session)
        return;
    zsys_info ("sdk: session of %s closed: %s", session->module, why);
    const char *latest = zhashx_lookup (self->latest, session->module);
    if (latest && streq (latest, key))
        zhashx_delete (self->latest, session->module);
    zlistx_t *ids = zhashx_keys (self->pending);
    for (char *id = zlistx_first (ids); id; id = zlistx_next (ids)) {
        pending_t *pending = zhashx_lookup (self->pending, id);
        if (pending && streq (pending->session, key))
            s_fail_pending (self, pending, MC__STATUS__STATUS_UNAVAILABLE, "SESSION_CLOSED", why);
    }
    zlistx_destroy (&ids);
    zhashx_delete (self->sessions, key);
}

//  --- frames from modules ---------------------------------------------------------------

static void s_on_hello (self_t *self, int endpoint, zframe_t *routing_id, frame_t *frame)
{
    Mc__Sdk__Hello *hello = frame->hello;
    if (hello->protocol != 1) {
        s_send_error (self, endpoint, routing_id, frame->id, "UNSUPPORTED_PROTOCOL",
                      "this core speaks protocol 1");
        return;
    }
    const char *token = hello->token ? hello->token : "";
    mc_principal_t principal;
    uint64_t retry_ns = 0;
    mc_auth_result_t result =
        mc_authtab_check (self->ctx->authtab, token, strlen (token), 0, mc_clock_mono_ns (),
                          mc_time_unix (), &principal, &retry_ns, NULL);
    if (result == MC_AUTH_RATE_LIMITED) {
        s_send_error (self, endpoint, routing_id, frame->id, "RATE_LIMITED",
                      "Rate limit exceeded; HELLO again later");
        return;
    }
    if (result != MC_AUTH_OK || principal.kind != MC_KIND_MODULE || strlen (token) >= 72) {
        s_send_error (self, endpoint, routing_id, frame->id, "UNAUTHORIZED",
                      "Invalid or expired token");
        return;
    }
    char key[64];
    s_session_key (routing_id, endpoint, key, sizeof key);
    zhashx_delete (self->sessions, key); // a second HELLO replaces the session
    session_t *session = calloc (1, sizeof *session);
    assert (session);
    session->key = strdup (key);
    session->routing_id = zframe_dup (routing_id);
    session->endpoint = endpoint;
    snprintf (session->module, sizeof session->module, "%s", principal.name);
    snprintf (session->token, sizeof session->token, "%s", token);
    mc_token_hash (session->token, strlen (session->token), session->token_hash);
    session->heartbeat_ms = hello->heartbeat_ms >= 500 && hello->heartbeat_ms <= 60000
                                ? hello->heartbeat_ms
                                : DEFAULT_HEARTBEAT_MS;
    session->last_recv = zclock_mono ();
    zhashx_insert (self->sessions, key, session);
    zhashx_update (self->latest, session->module, strdup (key));
    Mc__Sdk__Welcome welcome = MC__SDK__WELCOME__INIT;
    welcome.module = session->module;
    welcome.heartbeat_ms = session->heartbeat_ms;
    welcome.protocol = 1;
    frame_t reply = MC__SDK__FRAME__INIT;
    reply.id = frame->id;
    reply.body_case = MC__SDK__FRAME__BODY_WELCOME;
    reply.welcome = &welcome;
    s_send_frame (self, session, &reply);
    zsys_info ("sdk: %s connected (%s)", session->module,
               hello->sdk && *hello->sdk ? hello->sdk : "unknown sdk");
}

//  An encoded RESPONSE frame answering request id.
static zframe_t *s_response (uint64_t id, int status, const char *body, size_t len,
                             unsigned retry_after_s)
{
    Mc__Sdk__Response response = MC__SDK__RESPONSE__INIT;
    response.status = (uint32_t)status;
    response.body.data = (uint8_t *)body;
    response.body.len = len;
    response.retry_after_s = retry_after_s;
    frame_t reply = MC__SDK__FRAME__INIT;
    reply.id = id;
    reply.body_case = MC__SDK__FRAME__BODY_RESPONSE;
    reply.response = &response;
    zframe_t *out = zframe_new (NULL, mc__sdk__frame__get_packed_size (&reply));
    mc__sdk__frame__pack (&reply, zframe_data (out));
    return out;
}

//  503 OVERLOADED for a request refused without running it (counted in the metrics).
static zframe_t *s_overloaded (uint64_t id, const char *detail)
{
    mc_metrics_sdk_overloaded ();
    char *body = zsys_sprintf ("{\"error\":\"OVERLOADED\",\"detail\":\"%s\"}", detail);
    zframe_t *out = s_response (id, 503, body, strlen (body), 1);
    zstr_free (&body);
    return out;
}

//  A REQUEST goes to a worker with the session's token, the routing to answer and the
//  time it was queued; past [sdk] queue_max waiting requests it is refused at once.
static void s_forward_request (self_t *self, session_t *session, frame_t *frame, zframe_t *raw)
{
    if (self->queued >= self->ctx->config->sdk_queue_max) {
        zframe_t *refusal = s_overloaded (frame->id, "the core is busy: retry after 1 s");
        s_send_data (self, session, &refusal);
        return;
    }
    self->queued++;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstrf (msg, "%d", session->endpoint);
    zmsg_append (msg, &(zframe_t *){zframe_dup (session->routing_id)});
    zmsg_addstr (msg, session->token);
    zmsg_append (msg, &(zframe_t *){zframe_dup (raw)});
    int64_t queued_at = zclock_mono ();
    zmsg_addmem (msg, &queued_at, sizeof queued_at);
    zmsg_send (&msg, self->work);
}

static void s_on_answer (self_t *self, session_t *session, frame_t *frame)
{
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, frame->id);
    pending_t *pending = zhashx_lookup (self->pending, key);
    if (!pending || !streq (pending->session, session->key))
        return; // late, or not ours: ignored
    mc_env_t reply = MC__ENVELOPE__INIT;
    Mc__SdkInvokeDone done = MC__SDK_INVOKE_DONE__INIT;
    if (frame->body_case == MC__SDK__FRAME__BODY_ACK) {
        if (!frame->ack->ok) {
            s_fail_pending (self, pending, MC__STATUS__STATUS_UNAVAILABLE, "NACK",
                            "the module asked for redelivery");
            return;
        }
    } else {
        done.exit_code = frame->invoke_result->exit_code;
        done.stdout = frame->invoke_result->stdout;
        done.stderr = frame->invoke_result->stderr;
        reply.body_case = MC__ENVELOPE__BODY_SDK_INVOKE_DONE;
        reply.sdk_invoke_done = &done;
    }
    mc_reply (self->router, pending->caller->routing_id, pending->caller->env->request_id, &reply);
    zhashx_delete (self->pending, key);
}

static int s_on_frontend (self_t *self, int endpoint)
{
    zsock_t *sock = self->frontends[endpoint];
    zframe_t *routing_id = zframe_recv (sock);
    zframe_t *raw = routing_id && zsock_rcvmore (sock) ? zframe_recv (sock) : NULL;
    while (zsock_rcvmore (sock)) { // one frame per message: the rest is dropped
        zframe_t *extra = zframe_recv (sock);
        zframe_destroy (&extra);
    }
    if (!routing_id || !raw) {
        zframe_destroy (&routing_id);
        zframe_destroy (&raw);
        return 0;
    }
    frame_t *frame = mc__sdk__frame__unpack (NULL, zframe_size (raw), zframe_data (raw));
    char key[64];
    s_session_key (routing_id, endpoint, key, sizeof key);
    session_t *session = zhashx_lookup (self->sessions, key);
    if (!frame || frame->body_case == MC__SDK__FRAME__BODY__NOT_SET)
        s_send_error (self, endpoint, routing_id, frame ? frame->id : 0, "BAD_FRAME",
                      "not an mc.sdk.Frame with a body");
    else if (frame->body_case == MC__SDK__FRAME__BODY_HELLO)
        s_on_hello (self, endpoint, routing_id, frame);
    else if (!session)
        s_send_error (self, endpoint, routing_id, frame->id, "NOT_AUTHENTICATED",
                      "send HELLO first");
    else if (!mc_authtab_lookup_hash (self->ctx->authtab, session->token_hash, mc_time_unix (),
                                      NULL)) {
        s_send_error (self, endpoint, routing_id, frame->id, "UNAUTHORIZED",
                      "Invalid or expired token");
        s_drop_session (self, key, "token revoked");
    } else {
        session->last_recv = zclock_mono ();
        switch (frame->body_case) {
            case MC__SDK__FRAME__BODY_REQUEST: {
                Mc__Sdk__Request *request = frame->request;
                if (request->method && request->path &&
                    mc_gateway_answers_here (request->method, request->path)) {
                    zframe_t *answer = s_serve (self->ctx, self->thread, session->token,
                                                session->token_hash, frame);
                    s_send_data (self, session, &answer);
                } else
                    s_forward_request (self, session, frame, raw);
                break;
            }
            case MC__SDK__FRAME__BODY_PING: {
                Mc__Sdk__Pong pong = MC__SDK__PONG__INIT;
                frame_t reply = MC__SDK__FRAME__INIT;
                reply.id = frame->id;
                reply.body_case = MC__SDK__FRAME__BODY_PONG;
                reply.pong = &pong;
                s_send_frame (self, session, &reply);
                break;
            }
            case MC__SDK__FRAME__BODY_PONG:
                break; // traffic is all a PONG is for
            case MC__SDK__FRAME__BODY_ACK:
            case MC__SDK__FRAME__BODY_INVOKE_RESULT:
                s_on_answer (self, session, frame);
                break;
            case MC__SDK__FRAME__BODY_BYE:
                s_drop_session (self, key, "the module said BYE");
                break;
            case MC__SDK__FRAME__BODY_HELLO:
            case MC__SDK__FRAME__BODY_WELCOME:
            case MC__SDK__FRAME__BODY_RESPONSE:
            case MC__SDK__FRAME__BODY_EVENT:
            case MC__SDK__FRAME__BODY_INVOKE:
            case MC__SDK__FRAME__BODY_ERROR:
            case MC__SDK__FRAME__BODY__NOT_SET:
            case _MC__SDK__FRAME__BODY__CASE_IS_INT_SIZE:
                s_send_error (self, endpoint, routing_id, frame->id, "UNEXPECTED",
                              "the core does not accept this frame from a module");
                break;
        }
    }
    if (frame)
        mc__sdk__frame__free_unpacked (frame, NULL);
    zframe_destroy (&routing_id);
    zframe_destroy (&raw);
    return 0;
}

//  A worker's answer: [endpoint][routing id][RESPONSE frame] -> the module.
static void s_on_work_reply (self_t *self)
{
    zmsg_t *msg = zmsg_recv (self->work);
    if (self->queued > 0)
        self->queued--;
    if (!msg || zmsg_size (msg) != 3) {
        zmsg_destroy (&msg);
        return;
    }
    char *endpoint_text = zmsg_popstr (msg);
    int endpoint = endpoint_text && streq (endpoint_text, "1") && self->frontends[1] ? 1 : 0;
    zstr_free (&endpoint_text);
    zframe_t *routing_id = zmsg_pop (msg);
    zframe_t *data = zmsg_pop (msg);
    char key[64];
    s_session_key (routing_id, endpoint, key, sizeof key);
    session_t *session = zhashx_lookup (self->sessions, key);
    if (session)
        s_send_data (self, session, &data);
    zframe_destroy (&routing_id);
    zframe_destroy (&data);
    zmsg_destroy (&msg);
}

//  --- requests from the core -----------------------------------------------------------

//  SdkPush / SdkInvokeCall: to the module's latest session, answered later.
static bool s_on_core_request (self_t *self, mc_request_t *req)
{
    bool invoke = req->env->body_case == MC__ENVELOPE__BODY_SDK_INVOKE_CALL;
    const char *module = invoke ? req->env->sdk_invoke_call->module : req->env->sdk_push->module;
    const char *key = module ? zhashx_lookup (self->latest, module) : NULL;
    session_t *session = key ? zhashx_lookup (self->sessions, key) : NULL;
    if (!session) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_UNAVAILABLE, "NOT_CONNECTED", "%s has no native session",
                        module ? module : "");
        return false;
    }
    pending_t *pending = calloc (1, sizeof *pending);
    assert (pending);
    pending->id = ++self->next_id;
    snprintf (pending->session, sizeof pending->session, "%s", session->key);
    pending->caller = req;
    pending->invoke = invoke;
    uint32_t timeout =
        invoke ? req->env->sdk_invoke_call->timeout_ms : req->env->sdk_push->timeout_ms;
    pending->deadline = zclock_mono () + (timeout ? timeout : 5000);
    frame_t frame = MC__SDK__FRAME__INIT;
    frame.id = pending->id;
    Mc__Sdk__Event event = MC__SDK__EVENT__INIT;
    Mc__Sdk__Invoke call = MC__SDK__INVOKE__INIT;
    if (invoke) {
        call.subcommand = req->env->sdk_invoke_call->subcommand;
        call.args_json = req->env->sdk_invoke_call->args_json;
        frame.body_case = MC__SDK__FRAME__BODY_INVOKE;
        frame.invoke = &call;
    } else {
        event.delivery_id = req->env->sdk_push->delivery_id;
        event.json = req->env->sdk_push->json;
        event.attempt = req->env->sdk_push->attempt;
        frame.body_case = MC__SDK__FRAME__BODY_EVENT;
        frame.event = &event;
    }
    char id[24];
    snprintf (id, sizeof id, "%" PRIu64, pending->id);
    zhashx_insert (self->pending, id, pending);
    if (s_send_frame (self, session, &frame) != 0) {
        s_fail_pending (self, pending, MC__STATUS__STATUS_UNAVAILABLE, "NOT_CONNECTED",
                        "the module's session is gone");
        s_drop_session (self, session->key, "unreachable");
    }
    return true;
}

static int s_on_router (zloop_t *loop, zsock_t *reader, void *arg)
{
    self_t *self = arg;
    mc_request_t *req = mc_request_recv (self->router);
    if (!req)
        return 0;
    bool kept = false;
    switch (req->env->body_case) {
        case MC__ENVELOPE__BODY_SDK_PUSH:
        case MC__ENVELOPE__BODY_SDK_INVOKE_CALL:
            kept = s_on_core_request (self, req);
            break;
            MC_CASES_NOT_FOR_SDK
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_BAD_REQUEST, "UNSUPPORTED",
                            "sdk does not handle this message");
            break;
    }
    if (!kept)
        mc_request_destroy (&req);
    return 0;
}

//  Every second: PING quiet sessions, drop silent ones, expire pending answers.
static int s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    self_t *self = arg;
    int64_t now = zclock_mono ();
    zlistx_t *keys = zhashx_keys (self->sessions);
    for (char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        session_t *session = zhashx_lookup (self->sessions, key);
        if (now - session->last_recv > 3 * (int64_t)session->heartbeat_ms) {
            s_drop_session (self, key, "no traffic for three heartbeats");
            continue;
        }
        if (now - session->last_sent >= (int64_t)session->heartbeat_ms) {
            Mc__Sdk__Ping ping = MC__SDK__PING__INIT;
            frame_t frame = MC__SDK__FRAME__INIT;
            frame.id = ++self->next_id;
            frame.body_case = MC__SDK__FRAME__BODY_PING;
            frame.ping = &ping;
            s_send_frame (self, session, &frame);
        }
    }
    zlistx_destroy (&keys);
    zlistx_t *ids = zhashx_keys (self->pending);
    for (char *id = zlistx_first (ids); id; id = zlistx_next (ids)) {
        pending_t *pending = zhashx_lookup (self->pending, id);
        if (pending && now > pending->deadline)
            s_fail_pending (self, pending, MC__STATUS__STATUS_TIMEOUT, "TIMEOUT",
                            pending->invoke ? "the module did not answer the invocation in time"
                                            : "the module did not ACK the event in time");
    }
    zlistx_destroy (&ids);
    return 0;
}

//  --- workers ---------------------------------------------------------------------------

//  Runs one REQUEST frame exactly as the HTTP request would run; returns the RESPONSE.
static zframe_t *s_serve (mc_context_t *ctx, mc_http_thread_t *thread, const char *token,
                          const uint8_t *token_hash, frame_t *frame)
{
    mc_http_capture_t capture = {0};
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    Mc__Sdk__Request *request = frame ? frame->request : NULL;
    bool method_ok = false;
    for (size_t i = 0; request && request->method && i < 5; i++)
        method_ok = method_ok || streq (request->method, methods[i]);
    if (!request || !method_ok || !request->path || request->path[0] != '/' ||
        strlen (request->path) > 2000) {
        capture.status = 400;
        capture.body = strdup ("{\"error\":\"BAD_REQUEST\",\"detail\":\"a request needs a method "
                               "(GET, POST, PUT, PATCH, DELETE) and a path starting with /\"}");
        capture.body_len = strlen (capture.body);
    } else {
        //  The path may carry a query and percent-escapes, as an HTTP request target.
        char uri[2100], query[2100] = "";
        snprintf (uri, sizeof uri, "/api/v1%s", request->path);
        char *q = strchr (uri, '?');
        if (q) {
            snprintf (query, sizeof query, "%s", q + 1);
            *q = 0;
        }
        char authorization[96];
        snprintf (authorization, sizeof authorization, "Bearer %s", token);
        struct mg_request_info info = {0};
        info.request_method = request->method;
        info.request_uri = uri;
        info.local_uri = uri; // still encoded: mc_gateway_dispatch decodes, as for HTTP
        info.query_string = *query ? query : NULL;
        info.content_length = (long long)request->body.len;
        info.num_headers = 2;
        info.http_headers[0].name = "Authorization";
        info.http_headers[0].value = authorization;
        info.http_headers[1].name = "Content-Type";
        info.http_headers[1].value = "application/json";
        mc_http_req_t req = {0};
        req.info = &info;
        req.ctx = ctx;
        req.thread = thread;
        req.capture = &capture;
        req.native_body = (const char *)request->body.data;
        req.native_body_len = request->body.len;
        req.token_hash = token_hash;
        mc_gateway_dispatch (&req);
        memset (authorization, 0, sizeof authorization);
    }
    zframe_t *out = s_response (frame ? frame->id : 0, capture.status, capture.body,
                                capture.body_len, capture.retry_after);
    free (capture.body);
    return out;
}

static void s_worker (zsock_t *pipe, void *args)
{
    mc_context_t *ctx = args;
    zsock_t *work = zsock_new_dealer (">" WORK_ENDPOINT);
    pthread_setname_np (pthread_self (), "mc-sdk-worker");
    mc_http_thread_t *thread = mc_http_thread_new ();
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, work, NULL);
    for (;;) {
        void *which = zpoller_wait (poller, -1);
        if (which == pipe || !which)
            break; // $TERM (or interrupted)
        zmsg_t *msg = zmsg_recv (work);
        if (!msg || zmsg_size (msg) != 5) {
            zmsg_destroy (&msg);
            continue;
        }
        zframe_t *endpoint = zmsg_pop (msg);
        zframe_t *routing_id = zmsg_pop (msg);
        char *token = zmsg_popstr (msg);
        zframe_t *raw = zmsg_pop (msg);
        zframe_t *queued = zmsg_pop (msg);
        int64_t queued_at = 0;
        if (zframe_size (queued) == sizeof queued_at)
            memcpy (&queued_at, zframe_data (queued), sizeof queued_at);
        zframe_destroy (&queued);
        frame_t *frame = mc__sdk__frame__unpack (NULL, zframe_size (raw), zframe_data (raw));
        //  A request that waited past the call timeout is not run: its caller has most
        //  likely given up, and serving it would only delay the requests behind it.
        zframe_t *answer =
            zclock_mono () - queued_at > (int64_t)ctx->config->call_timeout_ms
                ? s_overloaded (frame ? frame->id : 0,
                                "the request waited too long for a worker: retry after 1 s")
                : s_serve (ctx, thread, token, NULL, frame);
        if (frame)
            mc__sdk__frame__free_unpacked (frame, NULL);
        zmsg_t *reply = zmsg_new ();
        zmsg_append (reply, &endpoint);
        zmsg_append (reply, &routing_id);
        zmsg_append (reply, &answer);
        zmsg_send (&reply, work);
        memset (token, 0, strlen (token));
        zstr_free (&token);
        zframe_destroy (&raw);
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    mc_http_thread_destroy (&thread);
    zsock_destroy (&work);
}

//  --- the actor -------------------------------------------------------------------------

//  Serves the messages waiting on a frontend, up to a batch: one poll for many
//  messages under load, and the other sockets still get their turn.
static int s_on_frontend_batch (self_t *self, int endpoint)
{
    for (int i = 0; i < 64; i++) {
        s_on_frontend (self, endpoint);
        if (!(zsock_events (self->frontends[endpoint]) & ZMQ_POLLIN))
            break;
    }
    return 0;
}

static int s_on_ipc (zloop_t *loop, zsock_t *reader, void *arg)
{
    return s_on_frontend_batch (arg, 0);
}

static int s_on_tcp (zloop_t *loop, zsock_t *reader, void *arg)
{
    return s_on_frontend_batch (arg, 1);
}

static int s_on_work (zloop_t *loop, zsock_t *reader, void *arg)
{
    s_on_work_reply (arg);
    return 0;
}

//  Binds a module-facing ROUTER; NULL (logged) if it cannot.
static zsock_t *s_bind_frontend (const char *endpoint, zcert_t *cert)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (sock, 0);
    zsock_set_router_mandatory (sock, 1); // a send to a gone module fails instead of vanishing
    zsock_set_sndhwm (sock, 10000);
    if (cert) {
        zcert_apply (cert, sock);
        zsock_set_curve_server (sock, 1);
    }
    if (strncmp (endpoint, "ipc://", 6) == 0)
        unlink (endpoint + 6); // a socket file left by a core that was killed
    if (zsock_bind (sock, "%s", endpoint) < 0) {
        zsys_error ("sdk: cannot bind %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
    }
    //  Modules run as another user inside their sandbox; connecting needs write access to
    //  the socket file. Anyone may connect: a session needs a module token (HELLO).
    else if (strncmp (endpoint, "ipc://", 6) == 0 && chmod (endpoint + 6, 0666) != 0)
        zsys_warning ("sdk: cannot open %s to modules: %s", endpoint + 6, strerror (errno));
    return sock;
}

//  The CURVE certificate of the tcp endpoint: <data>/secure/sdk.cert (secret, 0600),
//  created on first use; its public half is published in <data>/run/sdk.pub.
static zcert_t *s_load_cert (const mc_config_t *cfg)
{
    char secret_path[4200], public_path[4200];
    snprintf (secret_path, sizeof secret_path, "%s/secure/sdk.cert", cfg->data_dir);
    snprintf (public_path, sizeof public_path, "%s/run/sdk.pub", cfg->data_dir);
    zcert_t *cert = zcert_load (secret_path);
    if (!cert) {
        cert = zcert_new ();
        if (zcert_save_secret (cert, secret_path) != 0) {
            zsys_error ("sdk: cannot write %s", secret_path);
            zcert_destroy (&cert);
            return NULL;
        }
        chmod (secret_path, 0600);
    }
    mc_fs_write_atomic (public_path, zcert_public_txt (cert), 40, 0644);
    return cert;
}

void mc_sdk_actor (zsock_t *pipe, void *args)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = args;
    const mc_config_t *cfg = self->ctx->config;
    self->sessions = zhashx_new ();
    zhashx_set_destructor (self->sessions, s_session_free);
    self->latest = zhashx_new ();
    zhashx_set_destructor (self->latest, (zhashx_destructor_fn *)zstr_free);
    self->pending = zhashx_new ();
    zhashx_set_destructor (self->pending, s_pending_free);
    self->router = mc_actor_bind ("sdk");
    self->work = zsock_new_dealer ("@" WORK_ENDPOINT);
    self->thread = mc_http_thread_new ();
    self->frontends[0] = s_bind_frontend (cfg->sdk_endpoint, NULL);
    if (cfg->sdk_tcp_endpoint) {
        self->cert = s_load_cert (cfg);
        self->frontends[1] =
            self->cert ? s_bind_frontend (cfg->sdk_tcp_endpoint, self->cert) : NULL;
    }
    bool ok = self->router && self->work && self->frontends[0] &&
              (!cfg->sdk_tcp_endpoint || self->frontends[1]);
    if (ok) {
        self->worker_count = cfg->sdk_workers;
        self->workers = calloc ((size_t)self->worker_count, sizeof *self->workers);
        for (int i = 0; i < self->worker_count; i++)
            self->workers[i] = zactor_new (s_worker, self->ctx);
    }
    if (mc_actor_ready (pipe, ok ? 0 : -1) == 0) {
        zsys_info ("sdk: native transport on %s%s%s", cfg->sdk_endpoint,
                   cfg->sdk_tcp_endpoint ? " and " : "",
                   cfg->sdk_tcp_endpoint ? cfg->sdk_tcp_endpoint : "");
        zloop_t *loop = zloop_new ();
        zloop_reader (loop, pipe, mc_actor_on_pipe, self);
        zloop_reader (loop, self->router, s_on_router, self);
        zloop_reader (loop, self->work, s_on_work, self);
        zloop_reader (loop, self->frontends[0], s_on_ipc, self);
        if (self->frontends[1])
            zloop_reader (loop, self->frontends[1], s_on_tcp, self);
        zloop_timer (loop, 1000, 0, s_on_tick, self);
        zloop_set_nonstop (loop, true);
        zloop_start (loop);
        zloop_destroy (&loop);
        //  Tell connected modules the core is going.
        for (session_t *s = zhashx_first (self->sessions); s; s = zhashx_next (self->sessions)) {
            Mc__Sdk__Bye bye = MC__SDK__BYE__INIT;
            bye.reason = "the core is stopping";
            frame_t frame = MC__SDK__FRAME__INIT;
            frame.body_case = MC__SDK__FRAME__BODY_BYE;
            frame.bye = &bye;
            s_send_frame (self, s, &frame);
        }
    }
    for (int i = 0; i < self->worker_count; i++)
        zactor_destroy (&self->workers[i]);
    free (self->workers);
    zhashx_destroy (&self->pending);
    zhashx_destroy (&self->latest);
    zhashx_destroy (&self->sessions);
    zsock_destroy (&self->frontends[0]);
    zsock_destroy (&self->frontends[1]);
    zsock_destroy (&self->work);
    mc_http_thread_destroy (&self->thread);
    zsock_destroy (&self->router);
    zcert_destroy (&self->cert);
    free (self);
}
