/*  The module's own HTTP server (civetweb, on 127.0.0.1:<port>).

    Routes:
        GET  /health          {"status": "ok", "name", "version"}
        POST /webhook/events  a signed event delivery -> the handlers, then 200
        POST /cli             a signed CLI invocation -> {"exit_code", "stdout", "stderr"}
        the module's own routes (mc_module_route), then static files if configured.

    Signed requests carry X-Selena-Signature = "sha256=" + hex HMAC-SHA256 of the exact
    body with the webhook secret; a missing or wrong one is 401 before anything else is
    looked at. Every answer goes out in one write (headers and body together) with
    TCP_NODELAY: with separate writes a keep-alive peer waits for Nagle + delayed ACK.
    civetweb ties a keep-alive connection to a worker thread, so idle connections are
    closed after a short time to keep workers free for the core's health checks. */
#include <civetweb.h>
#include <errno.h>

#include "internal.h"

#define MAX_BODY    (1u << 20)
#define NUM_THREADS "8"

struct mc_server_t {
    mc_module_t *module;    // whose server
    struct mg_context *ctx; // civetweb
    bool static_files;      // unmatched GETs go to civetweb's file handler
};

static const char *s_reason (int status)
{
    switch (status) {
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 204:
            return "No Content";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 413:
            return "Payload Too Large";
        case 500:
            return "Internal Server Error";
        default:
            return "Status";
    }
}

//  Sends status + JSON (takes the reference; NULL: empty body) in one write.
static int s_send (struct mg_connection *conn, int status, json_t *body)
{
    char *text = body ? json_dumps (body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref (body);
    size_t len = text ? strlen (text) : 0;
    char *buf = NULL;
    int n = asprintf (&buf,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n"
                      "Cache-Control: no-store\r\n"
                      "\r\n"
                      "%s",
                      status, s_reason (status), len, text ? text : "");
    if (n < 0)
        abort ();
    mg_write (conn, buf, (size_t)n);
    free (buf);
    free (text);
    return status;
}

static int s_error (struct mg_connection *conn, int status, const char *code, const char *detail)
{
    return s_send (conn, status, json_pack ("{s:s, s:s}", "error", code, "detail", detail));
}

//  Reads the whole body (NUL-terminated). Returns NULL after answering 413/400.
static char *s_read_body (struct mg_connection *conn, size_t *size)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (info->content_length > (long long)MAX_BODY) {
        s_error (conn, 413, "TOO_LARGE", "the body is over 1 MiB");
        return NULL;
    }
    size_t capacity = info->content_length > 0 ? (size_t)info->content_length + 1 : 4096;
    char *body = malloc (capacity);
    assert (body);
    size_t len = 0;
    while (true) {
        if (len + 1 >= capacity) {
            if (capacity > MAX_BODY) {
                free (body);
                s_error (conn, 413, "TOO_LARGE", "the body is over 1 MiB");
                return NULL;
            }
            capacity *= 2;
            body = realloc (body, capacity);
            assert (body);
        }
        int n = mg_read (conn, body + len, capacity - len - 1);
        if (n < 0) {
            free (body);
            s_error (conn, 400, "BAD_BODY", "the body could not be read");
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    body[len] = 0;
    *size = len;
    return body;
}

//  Reads a signed body; NULL after answering (401 on a bad signature).
static char *s_read_signed (mc_server_t *self, struct mg_connection *conn, size_t *size)
{
    char *body = s_read_body (conn, size);
    if (!body)
        return NULL;
    const char *signature = mg_get_header (conn, "X-Selena-Signature");
    if (!mc_signature_valid (self->module->secret, body, *size, signature)) {
        free (body);
        s_error (conn, 401, "INVALID_SIGNATURE",
                 signature ? "X-Selena-Signature does not match the body"
                           : "X-Selena-Signature is missing");
        return NULL;
    }
    return body;
}

static int s_on_webhook (mc_server_t *self, struct mg_connection *conn)
{
    size_t size = 0;
    char *body = s_read_signed (self, conn, &size);
    if (!body)
        return 1;
    int rc = mc_module_deliver (self->module, body, size);
    free (body);
    if (rc != 0)
        s_error (conn, 400, "INVALID_EVENT", "the body is not an event {\"id\", \"type\", ...}");
    else
        s_send (conn, 200, json_pack ("{s:b}", "ok", 1));
    return 1;
}

static int s_on_cli (mc_server_t *self, struct mg_connection *conn)
{
    size_t size = 0;
    char *body = s_read_signed (self, conn, &size);
    if (!body)
        return 1;
    json_t *invocation = json_loadb (body, size, 0, NULL);
    free (body);
    json_t *subcommand = json_object_get (invocation, "subcommand");
    json_t *args = json_object_get (invocation, "args");
    if (!json_is_string (subcommand) || (args && !json_is_object (args))) {
        json_decref (invocation);
        s_error (conn, 400, "INVALID_INVOCATION",
                 "body must be {\"subcommand\": string, \"args\": object}");
        return 1;
    }
    json_t *given = args ? json_incref (args) : json_object ();
    char *out = NULL, *err = NULL;
    int exit_code =
        mc_module_cli_invoke (self->module, json_string_value (subcommand), given, &out, &err);
    json_decref (given);
    json_decref (invocation);
    s_send (conn, 200,
            json_pack ("{s:i, s:s, s:s}", "exit_code", exit_code, "stdout", out, "stderr", err));
    free (out);
    free (err);
    return 1;
}

static int s_on_route (mc_server_t *self, struct mg_connection *conn, mc_route_fn *handler,
                       void *arg)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    size_t size = 0;
    char *body = s_read_body (conn, &size);
    if (!body)
        return 1;
    json_t *answer = NULL;
    pthread_mutex_lock (&self->module->callback_lock);
    mc_sdk_in_callback = true;
    int status = handler (self->module, info->request_method, info->local_uri,
                          info->query_string ? info->query_string : "", body, size, &answer, arg);
    mc_sdk_in_callback = false;
    pthread_mutex_unlock (&self->module->callback_lock);
    free (body);
    s_send (conn, status >= 100 && status <= 599 ? status : 500, answer);
    return 1;
}

static int s_handler (struct mg_connection *conn, void *cbdata)
{
    mc_server_t *self = cbdata;
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *method = info->request_method;
    const char *path = info->local_uri ? info->local_uri : "/";
    bool get = strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0;
    bool post = strcmp (method, "POST") == 0;

    if (strcmp (path, "/health") == 0)
        return get ? (s_send (conn, 200,
                              json_pack ("{s:s, s:s, s:s}", "status", "ok", "name",
                                         self->module->name, "version", self->module->version)),
                      1)
                   : (s_error (conn, 405, "METHOD_NOT_ALLOWED", "GET only"), 1);
    if (strcmp (path, "/webhook/events") == 0)
        return post ? s_on_webhook (self, conn)
                    : (s_error (conn, 405, "METHOD_NOT_ALLOWED", "POST only"), 1);
    if (strcmp (path, "/cli") == 0)
        return post ? s_on_cli (self, conn)
                    : (s_error (conn, 405, "METHOD_NOT_ALLOWED", "POST only"), 1);

    mc_route_fn *handler = NULL;
    void *arg = NULL;
    bool path_known = false;
    pthread_mutex_lock (&self->module->lock);
    for (route_t *route = self->module->routes; route; route = route->next)
        if (strcmp (route->path, path) == 0) {
            path_known = true;
            if (strcmp (route->method, method) == 0) {
                handler = route->handler;
                arg = route->arg;
                break;
            }
        }
    pthread_mutex_unlock (&self->module->lock);
    if (handler)
        return s_on_route (self, conn, handler, arg);
    if (path_known)
        return s_error (conn, 405, "METHOD_NOT_ALLOWED", "method not allowed here"), 1;
    if (self->static_files && get)
        return 0; // civetweb serves the file (or its own 404)
    s_error (conn, 404, "NOT_FOUND", "no such path");
    return 1;
}

static int s_log_message (const struct mg_connection *conn, const char *message)
{
    mc_sdk_log ("server: %s", message);
    return 1;
}

mc_server_t *mc_server_start (mc_module_t *module, int port, const char *static_dir)
{
    assert (module && port > 0);
    mc_server_t *self = calloc (1, sizeof *self);
    assert (self);
    self->module = module;
    self->static_files = static_dir && *static_dir;
    char listen[32];
    snprintf (listen, sizeof listen, "127.0.0.1:%d", port);
    const char *options[32];
    int n = 0;
    options[n++] = "listening_ports";
    options[n++] = listen;
    options[n++] = "num_threads";
    options[n++] = NUM_THREADS;
    options[n++] = "tcp_nodelay";
    options[n++] = "1";
    options[n++] = "enable_keep_alive";
    options[n++] = "yes";
    options[n++] = "keep_alive_timeout_ms";
    options[n++] = "2000";
    options[n++] = "request_timeout_ms";
    options[n++] = "70000"; // a CLI subcommand may run up to the core's 60 s
    if (self->static_files) {
        options[n++] = "document_root";
        options[n++] = static_dir;
        options[n++] = "enable_directory_listing";
        options[n++] = "no";
    }
    options[n] = NULL;
    struct mg_callbacks callbacks = {0};
    callbacks.log_message = s_log_message;
    struct mg_init_data init = {&callbacks, self, options};
    char text[256] = "";
    unsigned code = 0;
    struct mg_error_data error = {&code, text, sizeof text};
    self->ctx = mg_start2 (&init, &error);
    if (!self->ctx) {
        mc_sdk_log ("server: cannot listen on %s: %s", listen,
                    *text ? text : "address in use or not available");
        free (self);
        return NULL;
    }
    mg_set_request_handler (self->ctx, "/", s_handler, self);
    return self;
}

void mc_server_stop (mc_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mg_stop ((*self_p)->ctx);
    free (*self_p);
    *self_p = NULL;
}
