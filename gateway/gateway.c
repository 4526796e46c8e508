/*  gateway: civetweb, the route table, authentication and rate limiting.

    DESIGN. civetweb runs a fixed pool of worker threads; each gets its own DEALER
    sockets in init_thread and frees them in exit_thread, so sockets are never shared
    between threads and never made per request (design.md: czmq aborts past 1,024
    sockets, and a socket per request is slow). Every /api/v1 request goes through
    s_dispatch: match the route, authenticate with the published token table (no actor
    hop: ~0.4 us instead of ~23 us), spend one rate-limit unit, check the permission,
    then call the handler. Handlers that need an actor make one request/reply over their
    thread's socket (BY_ACTOR); reads of state an actor publishes (core/snapshot.h) are
    answered in the calling thread (HERE), which also lets the native transport serve
    them in its own loop (mc_gateway_answers_here). Responses are written in one write
    (gateway/http.c). */
#include "gateway/gateway.h"

#include <string.h>

#include "core/fsutil.h"
#include "core/metrics.h"
#include "core/perms.h"
#include "gateway/http.h"

typedef enum {
    AUTH_NONE,  // open: /health
    AUTH_TOKEN, // any valid token, then `permission`
} route_auth_t;

typedef enum {
    BY_ACTOR, // the handler waits on an actor's reply
    HERE,     // answered in the calling thread (published views, the gateway alone)
} route_answer_t;

typedef struct {
    const char *method;  // "GET", "POST", ...
    const char *pattern; // below /api/v1; "{}" matches one path segment
    route_auth_t auth;   // who may call
    uint32_t permission; // required permission bit (0: any valid token)
    int (*handler) (mc_http_req_t *req);
    route_answer_t answer; // where it is answered
} route_t;

//  Order matters where patterns overlap: /modules/self and /modules/install before
//  /modules/{}, /storage/usage and /storage/batch before /storage/{*}. "{*}" matches the
//  rest of the path (storage keys may hold an encoded '/'); its handler reads the raw,
//  still encoded path.
static const route_t s_routes[] = {
    {"GET", "/health", AUTH_NONE, 0, mc_api_health, HERE},
    {"GET", "/modules/self", AUTH_TOKEN, 0, mc_api_modules_self, BY_ACTOR},
    {"POST", "/modules/install", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_modules_install,
     BY_ACTOR},
    {"GET", "/modules", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_modules_list, BY_ACTOR},
    {"GET", "/modules/{}", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_modules_get, BY_ACTOR},
    {"POST", "/modules/{}/start", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_modules_start,
     BY_ACTOR},
    {"POST", "/modules/{}/stop", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_modules_stop, BY_ACTOR},
    {"DELETE", "/modules/{}", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_modules_uninstall,
     BY_ACTOR},
    {"GET", "/modules/{}/logs", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_modules_logs, BY_ACTOR},
    {"GET", "/devices", AUTH_TOKEN, MC_PERM_DEVICE_READ, mc_api_devices_list, HERE},
    {"POST", "/devices", AUTH_TOKEN, MC_PERM_DEVICE_WRITE, mc_api_devices_create, BY_ACTOR},
    {"GET", "/devices/{}", AUTH_TOKEN, MC_PERM_DEVICE_READ, mc_api_devices_get, HERE},
    {"PATCH", "/devices/{}/state", AUTH_TOKEN, MC_PERM_DEVICE_WRITE, mc_api_devices_state,
     BY_ACTOR},
    {"DELETE", "/devices/{}", AUTH_TOKEN, MC_PERM_DEVICE_WRITE, mc_api_devices_delete, BY_ACTOR},
    {"GET", "/modules/{}/config", AUTH_TOKEN, 0, mc_api_modules_config_get, BY_ACTOR},
    {"POST", "/modules/{}/config", AUTH_TOKEN, 0, mc_api_modules_config_set, BY_ACTOR},
    {"POST", "/modules/{}/ui-token", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_modules_ui_token,
     BY_ACTOR},
    {"POST", "/cli/spec", AUTH_TOKEN, 0, mc_api_cli_register, BY_ACTOR},
    {"GET", "/cli/specs", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_cli_list, BY_ACTOR},
    {"GET", "/cli/specs/{}", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_cli_get, BY_ACTOR},
    {"POST", "/cli/invoke/{}", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_cli_invoke, BY_ACTOR},
    {"POST", "/events/publish", AUTH_TOKEN, MC_PERM_EVENTS_PUBLISH, mc_api_events_publish,
     BY_ACTOR},
    {"POST", "/events/subscribe", AUTH_TOKEN, MC_PERM_EVENTS_SUBSCRIBE, mc_api_events_subscribe,
     BY_ACTOR},
    {"DELETE", "/events/subscribe/{}", AUTH_TOKEN, MC_PERM_EVENTS_SUBSCRIBE,
     mc_api_events_unsubscribe, BY_ACTOR},
    {"GET", "/events/subscriptions", AUTH_TOKEN, 0, mc_api_events_subscriptions, BY_ACTOR},
    {"GET", "/events/recent", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_events_recent, BY_ACTOR},
    {"GET", "/events/deliveries", AUTH_TOKEN, 0, mc_api_events_deliveries, BY_ACTOR},
    {"POST", "/events/deliveries/{}/retry", AUTH_TOKEN, 0, mc_api_events_retry, BY_ACTOR},
    {"GET", "/storage/usage", AUTH_TOKEN, MC_PERM_STORAGE_RW, mc_api_storage_usage, BY_ACTOR},
    {"POST", "/storage/batch", AUTH_TOKEN, MC_PERM_STORAGE_RW, mc_api_storage_batch, BY_ACTOR},
    {"GET", "/storage", AUTH_TOKEN, MC_PERM_STORAGE_RW, mc_api_storage_list, BY_ACTOR},
    {"GET", "/storage/{*}", AUTH_TOKEN, MC_PERM_STORAGE_RW, mc_api_storage_get, BY_ACTOR},
    {"PUT", "/storage/{*}", AUTH_TOKEN, MC_PERM_STORAGE_RW, mc_api_storage_put, BY_ACTOR},
    {"DELETE", "/storage/{*}", AUTH_TOKEN, MC_PERM_STORAGE_RW, mc_api_storage_delete, BY_ACTOR},
    {"POST", "/bench/tokens", AUTH_TOKEN, MC_PERM_MODULES_MANAGE, mc_api_bench_tokens, BY_ACTOR},
};

struct mc_gateway_t {
    mc_context_t *ctx;         // shared context
    struct mg_context *server; // civetweb
    int port;                  // actual port
};

//  Matches path against pattern, filling req->params. True on a match.
static bool s_match (const char *pattern, const char *path, mc_http_req_t *req)
{
    size_t nparams = 0;
    while (*pattern && *path) {
        if (strcmp (pattern, "{*}") == 0)
            return true; // the rest of the path, at least one byte
        if (pattern[0] == '{' && pattern[1] == '}') {
            const char *end = strchr (path, '/');
            size_t len = end ? (size_t)(end - path) : strlen (path);
            if (len == 0 || len >= sizeof req->params[0] || nparams >= MC_HTTP_MAX_PARAMS)
                return false;
            if (path[0] == '.' && (len == 1 || (len == 2 && path[1] == '.')))
                return false; // "%2E%2E": never a name
            memcpy (req->params[nparams], path, len);
            req->params[nparams++][len] = 0;
            path += len;
            pattern += 2;
        } else if (*pattern++ != *path++)
            return false;
    }
    return *pattern == 0 && *path == 0;
}

//  Authenticates req (AUTH_TOKEN). Returns 0, or the status of the error sent.
static int s_authenticate (mc_http_req_t *req, uint32_t permission)
{
    const char *header = mc_http_header (req, "Authorization");
    if (!header || strncasecmp (header, "Bearer ", 7) != 0)
        return mc_http_error (req, 401, "UNAUTHORIZED", "Missing bearer token");
    const char *token = header + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen (token);
    while (len > 0 && token[len - 1] == ' ')
        len--;
    uint64_t retry_ns = 0;
    mc_auth_result_t result =
        req->token_hash
            ? mc_authtab_check_hash (req->ctx->authtab, req->token_hash, permission,
                                     mc_clock_mono_ns (), mc_time_unix (), &req->principal,
                                     &retry_ns, &req->rate_remaining)
            : mc_authtab_check (req->ctx->authtab, token, len, permission, mc_clock_mono_ns (),
                                mc_time_unix (), &req->principal, &retry_ns, &req->rate_remaining);
    switch (result) {
        case MC_AUTH_OK:
            req->authenticated = true;
            return 0;
        case MC_AUTH_UNKNOWN:
            return mc_http_error (req, 401, "UNAUTHORIZED", "Invalid or expired token");
        case MC_AUTH_RATE_LIMITED: {
            mc_metrics_rate_limited ();
            const mc_ratelimit_t *limit = mc_authtab_limit (req->ctx->authtab);
            unsigned retry_s = (unsigned)((retry_ns + 999999999ull) / 1000000000ull);
            char headers[256];
            snprintf (headers, sizeof headers,
                      "Retry-After: %u\r\n"
                      "RateLimit-Policy: \"token\";q=%u;w=1;burst=%u\r\n"
                      "RateLimit: \"token\";r=0;t=%u\r\n",
                      retry_s ? retry_s : 1, limit->rate, limit->burst, retry_s ? retry_s : 1);
            char body[160];
            int n = snprintf (body, sizeof body,
                              "{\"error\":\"RATE_LIMITED\",\"detail\":\"Rate limit of %u requests "
                              "per second exceeded\"}",
                              limit->rate);
            return mc_http_send (req, 429, headers, "application/json", body, (size_t)n);
        }
        case MC_AUTH_FORBIDDEN:
            req->authenticated = true;
            if (permission == MC_PERM_MODULES_MANAGE)
                return mc_http_error (req, 403, "FORBIDDEN",
                                      "Module management requires the admin token or a SYSTEM "
                                      "module");
            return mc_http_error (req, 403, "FORBIDDEN",
                                  "Permission '%s' not granted in manifest.json",
                                  mc_perm_name (permission));
    }
    return mc_http_error (req, 500, "INTERNAL", "unexpected authentication result");
}

//  The route for method and req->path (filling req->params), or NULL; sets *index to it,
//  *path_known if another method matches the path, and lists those methods in allow.
static const route_t *s_find (const char *method, mc_http_req_t *req, int *index, bool *path_known,
                              char *allow, size_t allow_size)
{
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++)
        if (s_match (s_routes[i].pattern, req->path, req)) {
            *path_known = true;
            if (strcmp (s_routes[i].method, method) == 0) {
                *index = (int)i;
                return &s_routes[i];
            }
            if (strlen (allow) + strlen (s_routes[i].method) + 3 < allow_size)
                snprintf (allow + strlen (allow), allow_size - strlen (allow), "%s%s",
                          *allow ? ", " : "", s_routes[i].method);
        }
    return NULL;
}

bool mc_gateway_answers_here (const char *method, const char *path)
{
    char decoded[4096];
    size_t len = strcspn (path, "?");
    if (len >= sizeof decoded ||
        mg_url_decode (path, (int)len, decoded, (int)sizeof decoded, 0) < 0)
        return true;                       // answered 400 at once
    mc_http_req_t req = {.path = decoded}; // below /api/v1, as s_route matches it
    bool path_known = false;
    int index = -1;
    char allow[64] = "";
    const route_t *route = s_find (method, &req, &index, &path_known, allow, sizeof allow);
    return !route || route->answer == HERE; // no route: 401, 404 or 405 at once
}

//  Routes and serves req; sets *route_index to the matched route (or -1).
static int s_route (mc_http_req_t *r, int *route_index)
{
    mc_http_req_t req = *r; // handlers take a pointer to this frame's copy
    const char *uri = req.info->local_uri ? req.info->local_uri : "";
    //  civetweb leaves the path encoded (decode_url = no), so that a handler can tell an
    //  encoded '/' from a separator (storage keys); routes match the decoded path.
    char decoded[4096];
    if (mg_url_decode (uri, (int)strlen (uri), decoded, (int)sizeof decoded, 0) < 0)
        return mc_http_error (&req, 400, "INVALID_PATH", "the path is longer than %zu bytes",
                              sizeof decoded - 1);
    uri = decoded;
    req.path = strncmp (uri, "/api/v1", 7) == 0 ? uri + 7 : uri;
    if (*req.path == 0)
        req.path = "/";

    bool path_known = false;
    char allow[64] = "";
    const route_t *route =
        s_find (req.info->request_method, &req, route_index, &path_known, allow, sizeof allow);
    if (route && route->auth == AUTH_NONE)
        return route->handler (&req);
    //  Everything else needs a valid token, even to learn that a route does not exist.
    if (s_authenticate (&req, route ? route->permission : 0) != 0)
        return 1;
    if (route)
        return route->handler (&req);
    if (path_known) {
        char headers[96];
        snprintf (headers, sizeof headers, "Allow: %s\r\n", allow);
        char body[192];
        int n = snprintf (body, sizeof body,
                          "{\"error\":\"METHOD_NOT_ALLOWED\",\"detail\":\"%s is not allowed "
                          "here; allowed: %s\"}",
                          req.info->request_method, allow);
        mc_http_send (&req, 405, headers, "application/json", body, (size_t)n);
        return 1;
    }
    return mc_http_error (&req, 404, "NOT_FOUND", "no route for %s %s", req.info->request_method,
                          uri);
}

int mc_gateway_dispatch (mc_http_req_t *req)
{
    int status = 0, route_index = -1;
    req->started_ns = mc_clock_mono_ns ();
    req->status_out = &status;
    req->route_out = &route_index;
    s_route (req, &route_index);
    return status;
}

//  The request a civetweb handler serves: its connection, headers, context, sockets.
static mc_http_req_t s_request (struct mg_connection *conn, mc_gateway_t *self)
{
    return (mc_http_req_t){.conn = conn,
                           .info = mg_get_request_info (conn),
                           .ctx = self->ctx,
                           .thread = mg_get_thread_pointer (conn)};
}

//  civetweb's authorization step: every request passes; s_authenticate decides.
static int s_no_civetweb_auth (struct mg_connection *conn, void *cbdata)
{
    (void)conn, (void)cbdata;
    return 1;
}

//  civetweb's handler for /api/v1: one HTTP request on a worker thread.
static int s_dispatch (struct mg_connection *conn, void *cbdata)
{
    mc_http_req_t req = s_request (conn, cbdata);
    mc_gateway_dispatch (&req);
    return 1;
}

//  GET /metrics: Prometheus text. The admin token (or a SYSTEM module), or anyone on
//  the loopback interface when [metrics] loopback_open is set.
static int s_metrics (struct mg_connection *conn, void *cbdata)
{
    mc_gateway_t *self = cbdata;
    mc_http_req_t req = s_request (conn, self);
    bool open = self->ctx->config->metrics_loopback_open &&
                strcmp (req.info->remote_addr, "127.0.0.1") == 0;
    if (strcmp (req.info->request_method, "GET") != 0)
        return mc_http_error (&req, 405, "METHOD_NOT_ALLOWED", "GET only"), 1;
    if (!open && s_authenticate (&req, MC_PERM_MODULES_MANAGE) != 0)
        return 1;
    //  Modules by status: asked of the registry at scrape time.
    char extra[2048] = "";
    Mc__RegistryList list = MC__REGISTRY_LIST__INIT;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_LIST;
    env.registry_list = &list;
    mc_env_t *reply = req.thread ? mc_call (req.thread->registry, &env, 2000) : NULL;
    if (reply && reply->body_case == MC__ENVELOPE__BODY_MODULE_LIST) {
        static const char *const names[] = {"INSTALLING", "RUNNING", "STOPPED",
                                            "FAILED",     "REMOVED", "STARTING"};
        unsigned counts[8] = {0};
        for (size_t i = 0; i < reply->module_list->n_modules; i++)
            if ((unsigned)reply->module_list->modules[i]->status < 6)
                counts[reply->module_list->modules[i]->status]++;
        size_t n = (size_t)snprintf (extra, sizeof extra,
                                     "# HELP modcore_modules Installed modules by status.\n"
                                     "# TYPE modcore_modules gauge\n");
        for (int i = 0; i < 6; i++)
            if (i != 4)
                n += (size_t)snprintf (extra + n, sizeof extra - n,
                                       "modcore_modules{status=\"%s\"} %u\n", names[i], counts[i]);
    }
    mc_env_free (reply);
    const char *routes[sizeof s_routes / sizeof s_routes[0]];
    char labels[sizeof s_routes / sizeof s_routes[0]][96];
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++) {
        snprintf (labels[i], sizeof labels[i], "%s %s", s_routes[i].method, s_routes[i].pattern);
        routes[i] = labels[i];
    }
    char *text = mc_metrics_render (routes, sizeof s_routes / sizeof s_routes[0], extra);
    mc_http_send (&req, 200, NULL, "text/plain; version=0.0.4", text, strlen (text));
    free (text);
    return 1;
}

//  The whole site outside /api/v1 (no dashboard yet): JSON 404s, never civetweb's HTML.
static int s_not_found (struct mg_connection *conn, void *cbdata)
{
    mc_http_req_t req = s_request (conn, cbdata);
    return mc_http_error (&req, 404, "NOT_FOUND", "nothing here; the API is under /api/v1");
}

mc_http_thread_t *mc_http_thread_new (void)
{
    mc_http_thread_t *thread = calloc (1, sizeof *thread);
    assert (thread);
    thread->registry = mc_client_new ("registry");
    thread->eventbus = mc_client_new ("eventbus");
    thread->webhook = mc_client_new ("webhook");
    thread->devices = mc_client_new ("devices");
    thread->auth = mc_client_new ("auth");
    thread->sandbox = mc_client_new ("sandbox");
    thread->storage = mc_client_new ("storage");
    thread->sdk = mc_client_new ("sdk");
    return thread;
}

void mc_http_thread_destroy (mc_http_thread_t **self_p)
{
    mc_http_thread_t *thread = *self_p;
    if (!thread)
        return;
    zsock_destroy (&thread->registry);
    zsock_destroy (&thread->eventbus);
    zsock_destroy (&thread->webhook);
    zsock_destroy (&thread->devices);
    zsock_destroy (&thread->auth);
    zsock_destroy (&thread->sandbox);
    zsock_destroy (&thread->storage);
    zsock_destroy (&thread->sdk);
    free (thread);
    *self_p = NULL;
}

static void *s_init_thread (const struct mg_context *server, int thread_type)
{
    return thread_type == 1 ? mc_http_thread_new () : NULL;
}

static void s_exit_thread (const struct mg_context *server, int thread_type, void *pointer)
{
    mc_http_thread_t *thread = pointer;
    mc_http_thread_destroy (&thread);
}

static int s_log_message (const struct mg_connection *conn, const char *message)
{
    zsys_warning ("gateway: %s", message);
    return 1;
}

mc_gateway_t *mc_gateway_start (mc_context_t *ctx, mc_error_t *err)
{
    const mc_config_t *cfg = ctx->config;
    mc_gateway_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = ctx;
    char listen[300], threads[16], keep_alive[16];
    snprintf (listen, sizeof listen, "%s:%d", cfg->listen_host, cfg->listen_port);
    snprintf (threads, sizeof threads, "%d", cfg->gateway_threads);
    snprintf (keep_alive, sizeof keep_alive, "%d", cfg->keep_alive_ms);
    const char *options[] = {
        "listening_ports",
        listen,
        "num_threads",
        threads,
        "tcp_nodelay",
        "1", // design.md: without it keep-alive requests stall ~44 ms
        "enable_keep_alive",
        "yes",
        "keep_alive_timeout_ms",
        keep_alive,
        "request_timeout_ms",
        "60000",
        "enable_auth_domain_check",
        "no",
        "decode_url",
        "no", // mc_gateway_dispatch decodes: storage keys need the raw path
        NULL,
    };
    struct mg_callbacks callbacks = {0};
    callbacks.init_thread = s_init_thread;
    callbacks.exit_thread = s_exit_thread;
    callbacks.log_message = s_log_message;
    struct mg_init_data init = {&callbacks, self, options};
    char text[256] = "";
    unsigned code = 0;
    struct mg_error_data error = {&code, text, sizeof text};
    self->server = mg_start2 (&init, &error);
    if (!self->server) {
        mc_error_set (err, "LISTEN_FAILED", "cannot listen on %s: %s", listen,
                      *text ? text : "address in use or not available");
        free (self);
        return NULL;
    }
    //  Authentication is ours (bearer tokens); without an auth handler civetweb looks
    //  for a .htpasswd on disk (a stat() system call) before every request.
    mg_set_auth_handler (self->server, "/", s_no_civetweb_auth, NULL);
    mg_set_request_handler (self->server, "/api/v1", s_dispatch, self);
    mg_set_request_handler (self->server, "/metrics", s_metrics, self);
    mg_set_request_handler (self->server, "/", s_not_found, self);
    struct mg_server_port ports[4];
    int n = mg_get_server_ports (self->server, 4, ports);
    self->port = n > 0 ? ports[0].port : cfg->listen_port;
    return self;
}

int mc_gateway_port (mc_gateway_t *self)
{
    return self->port;
}

void mc_gateway_stop (mc_gateway_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mg_stop ((*self_p)->server);
    free (*self_p);
    *self_p = NULL;
}
