/*  The module handle: settings, life cycle, the API over both transports,
    subscriptions, event and CLI dispatch, timers.

    DESIGN. The handle is shared by every thread of the module: the caller's, civetweb's
    workers (webhooks, /cli, routes), the native I/O thread and the dispatcher thread.
    Its lists (subscriptions, subcommands, routes, timers) are guarded by `lock`, held
    only to read or change them, never while calling out. User callbacks run under
    `callback_lock`, a recursive mutex: two callbacks never run at once, and a callback
    may call any API function (including subscribe/unsubscribe) without deadlock.

    Threads:
      - the native I/O thread (native.c) owns the ZeroMQ socket; it never runs user
        code: EVENT and INVOKE frames become work for the dispatcher;
      - the dispatcher thread runs that work (handler, then ACK / INVOKE_RESULT), the
        timers (mc_module_every), re-subscription after a new native session, and in
        HTTP mode a watch on the core's GET /health: when the core restarted (its
        uptime went back) or came back after being unreachable, subscriptions (held in
        the core's memory only) and the CLI spec are made again;
      - civetweb's workers run webhook deliveries and CLI invocations over HTTP.

    Each event is handed to the matching handlers once: several subscriptions may
    match the same event, and the core redelivers what it did not see acknowledged, so
    the ids of the last HANDLED_RING events dispatched are remembered and a repeat is
    only acknowledged.

    Life cycle: new -> (settings, subscribe, cli_add, route, every) -> start -> stop
    -> (start again) -> destroy. Start order: dispatcher, transport, server,
    subscriptions, CLI spec; stop is the reverse (server first: no new deliveries). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_CORE_URL    "http://127.0.0.1:7070/api/v1"
#define DEFAULT_TIMEOUT_MS  10000
#define DEFAULT_RETRIES     3
#define DEFAULT_MAX_WAIT_MS 10000
#define HEALTH_WATCH_MS     10000
#define START_TIMEOUT_MS    10000

__thread bool mc_sdk_in_callback;

//  --- small helpers ------------------------------------------------------------------

int64_t mc_sdk_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mc_sdk_log (const char *format, ...)
{
    char line[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (line, sizeof line, format, args);
    va_end (args);
    fprintf (stderr, "libmodcore: %s\n", line);
}

static char *s_strdup (const char *s)
{
    if (!s)
        return NULL;
    char *copy = strdup (s);
    assert (copy);
    return copy;
}

static void s_set (char **field, const char *value)
{
    free (*field);
    *field = s_strdup (value ? value : "");
}

//  A copy of text with invalid UTF-8 and control characters (other than newline and
//  tab) replaced by '?': output that goes into JSON strings.
static char *s_clean_text (const char *text)
{
    char *copy = s_strdup (text ? text : "");
    unsigned char *p = (unsigned char *)copy;
    while (*p) {
        size_t n = *p < 0x80           ? 1
                   : (*p >> 5) == 0x6  ? 2
                   : (*p >> 4) == 0xe  ? 3
                   : (*p >> 3) == 0x1e ? 4
                                       : 0;
        bool ok = n > 0;
        for (size_t i = 1; ok && i < n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (!ok || (n == 1 && *p < 0x20 && *p != '\n' && *p != '\t' && *p != '\r')) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
    return copy;
}

//  Percent-encodes one path segment or query value.
static char *s_escape (const char *s)
{
    size_t len = strlen (s);
    char *out = malloc (3 * len + 1);
    assert (out);
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            *o++ = (char)*p;
        else
            o += sprintf (o, "%%%02X", *p);
    *o = 0;
    return out;
}

//  --- replies ------------------------------------------------------------------------

bool mc_reply_ok (const mc_reply_t *self)
{
    return self && self->status >= 200 && self->status < 300;
}

void mc_reply_destroy (mc_reply_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mc_reply_t *self = *self_p;
    json_decref (self->json);
    free (self->error);
    free (self->detail);
    free (self);
    *self_p = NULL;
}

mc_reply_t *mc_reply_error (int status, const char *code, const char *format, ...)
{
    mc_reply_t *self = calloc (1, sizeof *self);
    assert (self);
    self->status = status;
    self->error = s_strdup (code);
    va_list args;
    va_start (args, format);
    if (vasprintf (&self->detail, format, args) < 0)
        abort ();
    va_end (args);
    char *clean = s_clean_text (self->detail);
    free (self->detail);
    self->detail = clean;
    self->json = json_pack ("{s:s, s:s}", "error", self->error, "detail", self->detail);
    return self;
}

mc_reply_t *mc_reply_from_body (int status, const char *body, size_t size)
{
    mc_reply_t *self = calloc (1, sizeof *self);
    assert (self);
    self->status = status;
    if (body && size > 0) {
        json_error_t jerr;
        self->json = json_loadb (body, size, JSON_DECODE_ANY, &jerr);
        if (!self->json) {
            char *snippet = strndup (body, size < 200 ? size : 200);
            mc_reply_t *bad =
                mc_reply_error (status, "BAD_ANSWER", "the answer is not JSON: %s", snippet);
            free (snippet);
            free (self);
            return bad;
        }
    }
    if (status < 200 || status >= 300) {
        json_t *code = json_object_get (self->json, "error");
        json_t *detail = json_object_get (self->json, "detail");
        char fallback[16];
        snprintf (fallback, sizeof fallback, "HTTP_%d", status);
        self->error = s_strdup (json_is_string (code) ? json_string_value (code) : fallback);
        if (json_is_string (detail))
            self->detail = s_strdup (json_string_value (detail));
        else if (detail) {
            self->detail = json_dumps (detail, JSON_COMPACT | JSON_ENCODE_ANY);
        } else
            self->detail = s_strdup ("");
    }
    return self;
}

//  --- the handle ---------------------------------------------------------------------

//  Reads version and description from manifest.json in dir (if any).
static void s_read_manifest (mc_module_t *self, const char *dir)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/manifest.json", dir && *dir ? dir : ".");
    json_t *manifest = json_load_file (path, 0, NULL);
    if (!manifest)
        return;
    json_t *version = json_object_get (manifest, "version");
    json_t *description = json_object_get (manifest, "description");
    json_t *name = json_object_get (manifest, "name");
    json_t *port = json_object_get (manifest, "port");
    if (json_is_string (version))
        s_set (&self->version, json_string_value (version));
    if (json_is_string (description) && !*self->about)
        s_set (&self->about, json_string_value (description));
    if (json_is_string (name) && !*self->name)
        s_set (&self->name, json_string_value (name));
    if (json_is_integer (port) && self->port == 0)
        self->port = (int)json_integer_value (port);
    json_decref (manifest);
}

mc_module_t *mc_module_new (const char *core_url, const char *token, const char *sdk_endpoint)
{
    if (sodium_init () < 0)
        abort ();
    mc_module_t *self = calloc (1, sizeof *self);
    assert (self);
    self->core_url = s_strdup (core_url && *core_url ? core_url : DEFAULT_CORE_URL);
    self->token = s_strdup (token ? token : "");
    self->endpoint = s_strdup (sdk_endpoint ? sdk_endpoint : "");
    self->secret = s_strdup ("");
    self->name = s_strdup ("");
    self->version = s_strdup ("0.0.0");
    self->about = s_strdup ("");
    self->install_path = s_strdup ("");
    self->transport = MC_TRANSPORT_HTTP;
    self->next_sub_id = 1;
    atomic_init (&self->timeout_ms, DEFAULT_TIMEOUT_MS);
    atomic_init (&self->max_retries, DEFAULT_RETRIES);
    atomic_init (&self->max_wait_ms, DEFAULT_MAX_WAIT_MS);
    pthread_mutex_init (&self->lock, NULL);
    pthread_rwlock_init (&self->native_lock, NULL);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init (&attr);
    pthread_mutexattr_settype (&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init (&self->callback_lock, &attr);
    pthread_mutexattr_destroy (&attr);
    pthread_mutex_init (&self->work_lock, NULL);
    pthread_condattr_t cattr;
    pthread_condattr_init (&cattr);
    pthread_condattr_setclock (&cattr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->work_cond, &cattr);
    pthread_condattr_destroy (&cattr);
    self->stop_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert (self->stop_fd >= 0);
    self->http = mc_http_new ();
    return self;
}

static const char *s_env (const char *name, const char *alias)
{
    const char *value = getenv (name);
    if ((!value || !*value) && alias)
        value = getenv (alias);
    return value && *value ? value : NULL;
}

mc_module_t *mc_module_new_from_env (void)
{
    mc_module_t *self = mc_module_new (s_env ("SELENA_CORE_URL", "SELENA_CORE_API"),
                                       s_env ("SELENA_MODULE_TOKEN", "MODULE_TOKEN"),
                                       s_env ("MODCORE_SDK_ENDPOINT", NULL));
    s_set (&self->secret, s_env ("SELENA_WEBHOOK_SECRET", NULL));
    s_set (&self->name, s_env ("SELENA_MODULE_NAME", NULL));
    s_set (&self->install_path, s_env ("SELENA_INSTALL_PATH", NULL));
    const char *port = s_env ("SELENA_MODULE_PORT", NULL);
    if (port)
        self->port = atoi (port);
    s_read_manifest (self, self->install_path);
    if (!*self->token)
        mc_sdk_log ("no module token in the environment (SELENA_MODULE_TOKEN): calls to the "
                    "core will be refused");
    return self;
}

static void s_subs_free (sub_t *sub)
{
    while (sub) {
        sub_t *next = sub->next;
        for (size_t i = 0; i < sub->count; i++)
            free (sub->patterns[i]);
        free (sub->patterns);
        free (sub->remote_id);
        free (sub);
        sub = next;
    }
}

void mc_module_destroy (mc_module_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mc_module_t *self = *self_p;
    mc_module_stop (self);
    s_subs_free (self->subs);
    for (cli_cmd_t *cmd = self->cli, *next; cmd; cmd = next) {
        next = cmd->next;
        free (cmd->name);
        json_decref (cmd->spec);
        free (cmd);
    }
    for (route_t *route = self->routes, *next; route; route = next) {
        next = route->next;
        free (route->method);
        free (route->path);
        free (route);
    }
    for (mc_timer_t *timer = self->timers, *next; timer; timer = next) {
        next = timer->next;
        free (timer);
    }
    mc_http_destroy (&self->http);
    close (self->stop_fd);
    pthread_cond_destroy (&self->work_cond);
    pthread_mutex_destroy (&self->work_lock);
    pthread_mutex_destroy (&self->callback_lock);
    pthread_mutex_destroy (&self->lock);
    pthread_rwlock_destroy (&self->native_lock);
    sodium_memzero (self->token, strlen (self->token));
    sodium_memzero (self->secret, strlen (self->secret));
    free (self->token);
    free (self->secret);
    free (self->core_url);
    free (self->name);
    free (self->version);
    free (self->about);
    free (self->install_path);
    free (self->endpoint);
    free (self->static_dir);
    free (self);
    *self_p = NULL;
}

//  The body of a setter: applies `body` under lock unless the module is started (or
//  starting), and returns 0, or -1 when it is too late.
#define S_SETTING(body)                                                                            \
    do {                                                                                           \
        assert (self);                                                                             \
        pthread_mutex_lock (&self->lock);                                                          \
        bool busy = self->started || self->starting;                                               \
        if (!busy) {                                                                               \
            body;                                                                                  \
        }                                                                                          \
        pthread_mutex_unlock (&self->lock);                                                        \
        return busy ? -1 : 0;                                                                      \
    } while (0)

int mc_module_set_transport (mc_module_t *self, mc_transport_t transport)
{
    if (transport != MC_TRANSPORT_HTTP && transport != MC_TRANSPORT_NATIVE)
        return -1;
    S_SETTING (self->transport = transport);
}

int mc_module_set_name (mc_module_t *self, const char *name)
{
    S_SETTING (s_set (&self->name, name));
}

int mc_module_set_port (mc_module_t *self, int port)
{
    if (port < 0 || port > 65535)
        return -1;
    S_SETTING (self->port = port);
}

int mc_module_set_version (mc_module_t *self, const char *version)
{
    S_SETTING (s_set (&self->version, version));
}

int mc_module_set_about (mc_module_t *self, const char *about)
{
    S_SETTING (s_set (&self->about, about));
}

int mc_module_set_webhook_secret (mc_module_t *self, const char *secret)
{
    S_SETTING (s_set (&self->secret, secret));
}

int mc_module_set_static_dir (mc_module_t *self, const char *dir)
{
    S_SETTING (free (self->static_dir); self->static_dir = dir && *dir ? s_strdup (dir) : NULL);
}

int mc_module_set_heartbeat (mc_module_t *self, int heartbeat_ms)
{
    S_SETTING (self->heartbeat_ms = heartbeat_ms > 0 ? heartbeat_ms : 0);
}

void mc_module_set_timeout (mc_module_t *self, int timeout_ms)
{
    assert (self);
    atomic_store (&self->timeout_ms, timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS);
}

void mc_module_set_retries (mc_module_t *self, int max_retries, int max_wait_ms)
{
    assert (self);
    atomic_store (&self->max_retries, max_retries > 0 ? max_retries : 0);
    atomic_store (&self->max_wait_ms, max_wait_ms > 0 ? max_wait_ms : DEFAULT_MAX_WAIT_MS);
}

const char *mc_module_name (mc_module_t *self)
{
    return self->name;
}

const char *mc_module_version (mc_module_t *self)
{
    return self->version;
}

const char *mc_module_install_path (mc_module_t *self)
{
    return self->install_path;
}

int mc_module_port (mc_module_t *self)
{
    return self->port;
}

mc_transport_t mc_module_transport (mc_module_t *self)
{
    return self->transport;
}

//  --- calls ---------------------------------------------------------------------------

//  One call over the chosen transport, with the 429 retries. body may be NULL.
static mc_reply_t *s_call (mc_module_t *self, const char *method, const char *path,
                           const json_t *body)
{
    char *text = body ? json_dumps (body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (body && !text)
        return mc_reply_error (0, "INVALID_ARGUMENT", "the body cannot be encoded as JSON");
    int timeout_ms = atomic_load (&self->timeout_ms);
    int max_retries = atomic_load (&self->max_retries);
    int max_wait_ms = atomic_load (&self->max_wait_ms);
    mc_reply_t *reply = NULL;
    for (int attempt = 0;; attempt++) {
        pthread_rwlock_rdlock (&self->native_lock); // `native` stays valid meanwhile
        pthread_mutex_lock (&self->lock);
        mc_native_t *native = self->transport == MC_TRANSPORT_NATIVE ? self->native : NULL;
        bool native_wanted = self->transport == MC_TRANSPORT_NATIVE;
        char refusal[64];
        snprintf (refusal, sizeof refusal, "%s", self->native_refusal);
        pthread_mutex_unlock (&self->lock);
        if (native)
            reply = mc_native_call (native, method, path, text, timeout_ms);
        else if (native_wanted && *refusal)
            reply = mc_reply_error (strcmp (refusal, "UNAUTHORIZED") == 0 ? 401 : 0, refusal,
                                    "%s %s: the core refused the native session (%s)", method, path,
                                    refusal);
        else if (native_wanted)
            reply = mc_reply_error (0, "NOT_CONNECTED",
                                    "%s %s: the native transport is not started (call "
                                    "mc_module_start first)",
                                    method, path);
        else
            reply = mc_http_call (self->http, self->core_url, self->token, method, path, text,
                                  timeout_ms);
        pthread_rwlock_unlock (&self->native_lock);
        if (reply->status != 429 || attempt >= max_retries)
            break;
        int wait_ms = reply->retry_after > 0 ? reply->retry_after * 1000 : 1000;
        if (wait_ms > max_wait_ms)
            wait_ms = max_wait_ms;
        mc_reply_destroy (&reply);
        usleep ((useconds_t)wait_ms * 1000);
    }
    free (text);
    return reply;
}

mc_reply_t *mc_module_request (mc_module_t *self, const char *method, const char *path,
                               const json_t *body)
{
    assert (self);
    if (!method || !path || path[0] != '/')
        return mc_reply_error (0, "INVALID_ARGUMENT",
                               "method and a path starting with / are "
                               "required");
    return s_call (self, method, path, body);
}

//  A call whose path has one escaped segment: fmt contains one %s.
static mc_reply_t *s_call_with (mc_module_t *self, const char *method, const char *fmt,
                                const char *segment, const json_t *body)
{
    if (!segment || !*segment)
        return mc_reply_error (0, "INVALID_ARGUMENT", "an empty id or key");
    char *escaped = s_escape (segment);
    char *path = NULL;
    if (asprintf (&path, fmt, escaped) < 0)
        abort ();
    mc_reply_t *reply = s_call (self, method, path, body);
    free (path);
    free (escaped);
    return reply;
}

mc_reply_t *mc_module_publish (mc_module_t *self, const char *type, const json_t *payload)
{
    assert (self);
    if (!type || !*type)
        return mc_reply_error (0, "INVALID_ARGUMENT", "an event needs a type");
    if (payload && !json_is_object (payload))
        return mc_reply_error (0, "INVALID_ARGUMENT", "an event's payload is a JSON object");
    json_t *body = json_pack ("{s:s, s:o}", "type", type, "payload",
                              payload ? json_deep_copy (payload) : json_object ());
    if (!body)
        return mc_reply_error (0, "INVALID_ARGUMENT", "the type is not valid UTF-8");
    mc_reply_t *reply = s_call (self, "POST", "/events/publish", body);
    json_decref (body);
    return reply;
}

mc_reply_t *mc_module_subscriptions (mc_module_t *self)
{
    return s_call (self, "GET", "/events/subscriptions", NULL);
}

mc_reply_t *mc_module_devices_list (mc_module_t *self)
{
    return s_call (self, "GET", "/devices", NULL);
}

mc_reply_t *mc_module_device_get (mc_module_t *self, const char *device_id)
{
    return s_call_with (self, "GET", "/devices/%s", device_id, NULL);
}

mc_reply_t *mc_module_device_create (mc_module_t *self, const json_t *device)
{
    if (!json_is_object (device))
        return mc_reply_error (0, "INVALID_ARGUMENT", "a device is a JSON object");
    return s_call (self, "POST", "/devices", device);
}

mc_reply_t *mc_module_device_set_state (mc_module_t *self, const char *device_id,
                                        const json_t *state)
{
    if (!json_is_object (state))
        return mc_reply_error (0, "INVALID_ARGUMENT", "a device state is a JSON object");
    json_t *body = json_pack ("{s:O}", "state", (json_t *)state);
    mc_reply_t *reply = s_call_with (self, "PATCH", "/devices/%s/state", device_id, body);
    json_decref (body);
    return reply;
}

mc_reply_t *mc_module_device_delete (mc_module_t *self, const char *device_id)
{
    return s_call_with (self, "DELETE", "/devices/%s", device_id, NULL);
}

mc_reply_t *mc_module_config_get (mc_module_t *self)
{
    if (!*self->name)
        return mc_reply_error (0, "INVALID_ARGUMENT", "the module has no name");
    return s_call_with (self, "GET", "/modules/%s/config", self->name, NULL);
}

mc_reply_t *mc_module_config_set (mc_module_t *self, const char *key, const json_t *value)
{
    if (!key || !value)
        return mc_reply_error (0, "INVALID_ARGUMENT", "a config entry needs a key and a value");
    if (!*self->name)
        return mc_reply_error (0, "INVALID_ARGUMENT", "the module has no name");
    json_t *body = json_pack ("{s:s, s:O}", "key", key, "value", (json_t *)value);
    if (!body)
        return mc_reply_error (0, "INVALID_ARGUMENT", "the key is not valid UTF-8");
    mc_reply_t *reply = s_call_with (self, "POST", "/modules/%s/config", self->name, body);
    json_decref (body);
    return reply;
}

mc_reply_t *mc_module_storage_get (mc_module_t *self, const char *key)
{
    return s_call_with (self, "GET", "/storage/%s", key, NULL);
}

mc_reply_t *mc_module_storage_put (mc_module_t *self, const char *key, const json_t *value)
{
    if (!value)
        return mc_reply_error (0, "INVALID_ARGUMENT", "a stored value is any JSON, not NULL");
    json_t *body = json_pack ("{s:O}", "value", (json_t *)value);
    mc_reply_t *reply = s_call_with (self, "PUT", "/storage/%s", key, body);
    json_decref (body);
    return reply;
}

mc_reply_t *mc_module_storage_delete (mc_module_t *self, const char *key)
{
    return s_call_with (self, "DELETE", "/storage/%s", key, NULL);
}

mc_reply_t *mc_module_storage_list (mc_module_t *self, const char *prefix, const char *after,
                                    int limit)
{
    char *path = s_strdup ("/storage");
    char sep = '?';
    const char *names[] = {"prefix", "after"};
    const char *values[] = {prefix, after};
    for (size_t i = 0; i < 2; i++)
        if (values[i] && *values[i]) {
            char *escaped = s_escape (values[i]);
            char *longer = NULL;
            if (asprintf (&longer, "%s%c%s=%s", path, sep, names[i], escaped) < 0)
                abort ();
            free (escaped);
            free (path);
            path = longer;
            sep = '&';
        }
    if (limit > 0) {
        char *longer = NULL;
        if (asprintf (&longer, "%s%climit=%d", path, sep, limit) < 0)
            abort ();
        free (path);
        path = longer;
    }
    mc_reply_t *reply = s_call (self, "GET", path, NULL);
    free (path);
    return reply;
}

mc_reply_t *mc_module_storage_batch (mc_module_t *self, const json_t *puts, const json_t *deletes)
{
    if ((puts && !json_is_object (puts)) || (deletes && !json_is_array (deletes)))
        return mc_reply_error (0, "INVALID_ARGUMENT",
                               "puts is an object {key: value}, deletes an array of keys");
    json_t *body = json_object ();
    json_object_set_new (body, "put", puts ? json_deep_copy (puts) : json_object ());
    json_object_set_new (body, "delete", deletes ? json_deep_copy (deletes) : json_array ());
    mc_reply_t *reply = s_call (self, "POST", "/storage/batch", body);
    json_decref (body);
    return reply;
}

mc_reply_t *mc_module_secrets_proxy (mc_module_t *self, const char *provider, const char *method,
                                     const char *url, const json_t *headers, const json_t *body)
{
    if (!provider || !url)
        return mc_reply_error (0, "INVALID_ARGUMENT", "a proxied call needs a provider and a URL");
    if (headers && !json_is_object (headers))
        return mc_reply_error (0, "INVALID_ARGUMENT", "headers is a JSON object");
    json_t *request = json_pack ("{s:s, s:s, s:s}", "provider", provider, "url", url, "method",
                                 method ? method : "GET");
    if (!request)
        return mc_reply_error (0, "INVALID_ARGUMENT", "the arguments are not valid UTF-8");
    json_object_set_new (request, "headers", headers ? json_deep_copy (headers) : json_object ());
    json_object_set_new (request, "body", body ? json_deep_copy (body) : json_null ());
    mc_reply_t *reply = s_call (self, "POST", "/secrets/proxy", request);
    json_decref (request);
    return reply;
}

mc_reply_t *mc_module_self (mc_module_t *self)
{
    return s_call (self, "GET", "/modules/self", NULL);
}

//  --- subscriptions ---------------------------------------------------------------------

static bool s_pattern_match (const char *pattern, const char *type)
{
    if (strcmp (pattern, "*") == 0)
        return true;
    size_t len = strlen (pattern);
    if (len > 2 && strcmp (pattern + len - 2, ".*") == 0)
        return strncmp (pattern, type, len - 1) == 0 && type[len - 1] != 0;
    return strcmp (pattern, type) == 0;
}

//  Where the core should deliver: our webhook, or the native session.
static char *s_webhook_url (mc_module_t *self)
{
    char *url = NULL;
    if (self->transport == MC_TRANSPORT_NATIVE)
        return s_strdup ("native:");
    if (asprintf (&url, "http://127.0.0.1:%d/webhook/events", self->port) < 0)
        abort ();
    return url;
}

//  Makes subscription `id` in the core. Returns 0 or -1 (logged).
static int s_subscribe_remote (mc_module_t *self, int id)
{
    pthread_mutex_lock (&self->lock);
    json_t *types = NULL;
    for (sub_t *sub = self->subs; sub; sub = sub->next)
        if (sub->id == id) {
            types = json_array ();
            for (size_t i = 0; i < sub->count; i++)
                json_array_append_new (types, json_string (sub->patterns[i]));
        }
    pthread_mutex_unlock (&self->lock);
    if (!types)
        return -1; // unsubscribed meanwhile
    if (self->transport == MC_TRANSPORT_HTTP && self->port <= 0) {
        mc_sdk_log ("subscribe: the module has no port (SELENA_MODULE_PORT) for webhooks");
        json_decref (types);
        return -1;
    }
    char *url = s_webhook_url (self);
    json_t *body = json_pack ("{s:o, s:s}", "event_types", types, "webhook_url", url);
    free (url);
    mc_reply_t *reply = s_call (self, "POST", "/events/subscribe", body);
    json_decref (body);
    int rc = -1;
    if (mc_reply_ok (reply) && json_is_string (json_object_get (reply->json, "subscription_id"))) {
        pthread_mutex_lock (&self->lock);
        for (sub_t *sub = self->subs; sub; sub = sub->next)
            if (sub->id == id)
                s_set (&sub->remote_id,
                       json_string_value (json_object_get (reply->json, "subscription_id")));
        pthread_mutex_unlock (&self->lock);
        rc = 0;
    } else
        mc_sdk_log ("subscribe: the core refused: %d %s %s", reply->status, reply->error,
                    reply->detail);
    mc_reply_destroy (&reply);
    return rc;
}

//  Makes every subscription again (start, new session, core restarted).
static int s_subscribe_all (mc_module_t *self)
{
    int ids[256];
    size_t count = 0;
    pthread_mutex_lock (&self->lock);
    for (sub_t *sub = self->subs; sub && count < 256; sub = sub->next)
        ids[count++] = sub->id;
    pthread_mutex_unlock (&self->lock);
    int rc = 0;
    for (size_t i = 0; i < count; i++)
        if (s_subscribe_remote (self, ids[i]) != 0)
            rc = -1;
    return rc;
}

int mc_module_subscribe (mc_module_t *self, const char *const *patterns, mc_event_fn *handler,
                         void *arg)
{
    assert (self);
    size_t count = 0;
    while (patterns && patterns[count])
        count++;
    if (count == 0 || count > 32 || !handler) {
        mc_sdk_log ("subscribe: 1..32 patterns and a handler are required");
        return -1;
    }
    sub_t *sub = calloc (1, sizeof *sub);
    assert (sub);
    sub->patterns = calloc (count + 1, sizeof (char *));
    assert (sub->patterns);
    for (size_t i = 0; i < count; i++)
        sub->patterns[i] = s_strdup (patterns[i]);
    sub->count = count;
    sub->handler = handler;
    sub->arg = arg;
    pthread_mutex_lock (&self->lock);
    sub->id = self->next_sub_id++;
    sub_t **tail = &self->subs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = sub;
    bool started = self->started;
    int id = sub->id;
    pthread_mutex_unlock (&self->lock);
    if (started && s_subscribe_remote (self, id) != 0) {
        mc_module_unsubscribe (self, id);
        return -1;
    }
    return id;
}

int mc_module_unsubscribe (mc_module_t *self, int subscription_id)
{
    assert (self);
    //  Waits for a running handler (unless called from one) so its arg can be freed.
    pthread_mutex_lock (&self->callback_lock);
    pthread_mutex_lock (&self->lock);
    sub_t *found = NULL;
    for (sub_t **p = &self->subs; *p; p = &(*p)->next)
        if ((*p)->id == subscription_id) {
            found = *p;
            *p = found->next;
            found->next = NULL;
            break;
        }
    bool shared = false;
    if (found && found->remote_id)
        for (sub_t *sub = self->subs; sub; sub = sub->next)
            shared = shared || (sub->remote_id && strcmp (sub->remote_id, found->remote_id) == 0);
    bool started = self->started;
    pthread_mutex_unlock (&self->lock);
    pthread_mutex_unlock (&self->callback_lock);
    if (!found)
        return -1;
    int rc = 0;
    if (started && found->remote_id && !shared) {
        mc_reply_t *reply =
            s_call_with (self, "DELETE", "/events/subscribe/%s", found->remote_id, NULL);
        if (!mc_reply_ok (reply) && reply->status != 404) {
            mc_sdk_log ("unsubscribe: the core refused: %d %s %s", reply->status, reply->error,
                        reply->detail);
            rc = -1;
        }
        mc_reply_destroy (&reply);
    }
    s_subs_free (found);
    return rc;
}

int mc_module_deliver (mc_module_t *self, const char *json, size_t size)
{
    json_t *event = json_loadb (json, size, 0, NULL);
    json_t *type = json_object_get (event, "type");
    json_t *id = json_object_get (event, "id");
    if (!json_is_object (event) || !json_is_string (type)) {
        json_decref (event);
        return -1;
    }
    const char *event_id = json_is_string (id) ? json_string_value (id) : "";
    pthread_mutex_lock (&self->callback_lock);
    bool seen = false;
    for (size_t i = 0; *event_id && i < HANDLED_RING && !seen; i++)
        seen = strncmp (self->handled[i], event_id, sizeof self->handled[i] - 1) == 0;
    if (!seen) {
        //  The handlers to call, taken under lock, called without it.
        size_t capacity = 8, count = 0;
        sub_t *matches = calloc (capacity, sizeof *matches);
        assert (matches);
        pthread_mutex_lock (&self->lock);
        for (sub_t *sub = self->subs; sub; sub = sub->next) {
            bool match = false;
            for (size_t i = 0; i < sub->count && !match; i++)
                match = s_pattern_match (sub->patterns[i], json_string_value (type));
            if (!match)
                continue;
            if (count == capacity) {
                capacity *= 2;
                matches = realloc (matches, capacity * sizeof *matches);
                assert (matches);
            }
            matches[count++] = *sub;
        }
        pthread_mutex_unlock (&self->lock);
        bool was_in = mc_sdk_in_callback;
        mc_sdk_in_callback = true;
        for (size_t i = 0; i < count; i++)
            matches[i].handler (self, json_string_value (type), event, matches[i].arg);
        mc_sdk_in_callback = was_in;
        free (matches);
        if (*event_id) {
            snprintf (self->handled[self->handled_next], sizeof self->handled[0], "%s", event_id);
            self->handled_next = (self->handled_next + 1) % HANDLED_RING;
        }
    }
    pthread_mutex_unlock (&self->callback_lock);
    json_decref (event);
    return 0;
}

//  --- CLI ------------------------------------------------------------------------------

int mc_module_cli_add (mc_module_t *self, const char *name, const char *about,
                       const mc_cli_arg_t *args, mc_cli_fn *handler, void *arg)
{
    assert (self);
    if (!handler)
        return -1;
    json_t *spec = mc_cli_subcommand_spec (name, about, args);
    if (!spec)
        return -1;
    cli_cmd_t *cmd = calloc (1, sizeof *cmd);
    assert (cmd);
    cmd->name = s_strdup (name);
    cmd->spec = spec;
    cmd->handler = handler;
    cmd->arg = arg;
    pthread_mutex_lock (&self->lock);
    bool duplicate = false;
    cli_cmd_t **tail = &self->cli;
    for (; *tail; tail = &(*tail)->next)
        duplicate = duplicate || strcmp ((*tail)->name, name) == 0;
    if (!duplicate)
        *tail = cmd;
    bool started = self->started;
    pthread_mutex_unlock (&self->lock);
    if (duplicate) {
        mc_sdk_log ("cli: subcommand %s is already defined", name);
        json_decref (cmd->spec);
        free (cmd->name);
        free (cmd);
        return -1;
    }
    if (started) {
        json_t *full = mc_module_cli_spec (self);
        mc_reply_t *reply = s_call (self, "POST", "/cli/spec", full);
        json_decref (full);
        int rc = mc_reply_ok (reply) ? 0 : -1;
        if (rc)
            mc_sdk_log ("cli: the core refused the spec: %d %s %s", reply->status, reply->error,
                        reply->detail);
        mc_reply_destroy (&reply);
        return rc;
    }
    return 0;
}

json_t *mc_module_cli_spec (mc_module_t *self)
{
    pthread_mutex_lock (&self->lock);
    json_t *subcommands = json_array ();
    for (cli_cmd_t *cmd = self->cli; cmd; cmd = cmd->next)
        json_array_append (subcommands, cmd->spec);
    pthread_mutex_unlock (&self->lock);
    if (json_array_size (subcommands) == 0) {
        json_decref (subcommands);
        return NULL;
    }
    json_t *spec = json_pack ("{s:s, s:o}", "name", self->name, "subcommands", subcommands);
    if (*self->about) {
        char about[513];
        snprintf (about, sizeof about, "%s", self->about); // the core takes 512 at most
        char *clean = s_clean_text (about);
        json_object_set_new (spec, "about", json_string (clean));
        free (clean);
    }
    return spec;
}

//  Registers the CLI spec (if any). Returns 0 or -1 (logged).
static int s_register_cli (mc_module_t *self)
{
    json_t *spec = mc_module_cli_spec (self);
    if (!spec)
        return 0;
    mc_reply_t *reply = s_call (self, "POST", "/cli/spec", spec);
    json_decref (spec);
    int rc = mc_reply_ok (reply) ? 0 : -1;
    if (rc)
        mc_sdk_log ("cli: the core refused the spec: %d %s %s", reply->status, reply->error,
                    reply->detail);
    mc_reply_destroy (&reply);
    return rc;
}

int mc_module_cli_invoke (mc_module_t *self, const char *subcommand, json_t *args, char **out,
                          char **err)
{
    mc_cli_fn *handler = NULL;
    void *arg = NULL;
    pthread_mutex_lock (&self->lock);
    for (cli_cmd_t *cmd = self->cli; cmd; cmd = cmd->next)
        if (strcmp (cmd->name, subcommand) == 0) {
            handler = cmd->handler;
            arg = cmd->arg;
        }
    pthread_mutex_unlock (&self->lock);
    mc_output_t *stdout_buf = mc_output_new ();
    mc_output_t *stderr_buf = mc_output_new ();
    int exit_code;
    if (!handler) {
        mc_output_printf (stderr_buf, "%s: unknown subcommand %s\n", self->name, subcommand);
        exit_code = 2;
    } else {
        pthread_mutex_lock (&self->callback_lock);
        bool was_in = mc_sdk_in_callback;
        mc_sdk_in_callback = true;
        exit_code = handler (self, args, stdout_buf, stderr_buf, arg);
        mc_sdk_in_callback = was_in;
        pthread_mutex_unlock (&self->callback_lock);
    }
    char *raw_out = mc_output_finish (&stdout_buf);
    char *raw_err = mc_output_finish (&stderr_buf);
    *out = s_clean_text (raw_out);
    *err = s_clean_text (raw_err);
    free (raw_out);
    free (raw_err);
    return exit_code;
}

//  --- routes and timers ------------------------------------------------------------------

int mc_module_route (mc_module_t *self, const char *method, const char *path, mc_route_fn *handler,
                     void *arg)
{
    assert (self);
    if (!method || !path || path[0] != '/' || !handler)
        return -1;
    static const char *const reserved[] = {"/health", "/webhook/events", "/cli"};
    for (size_t i = 0; i < 3; i++)
        if (strcmp (path, reserved[i]) == 0)
            return -1;
    route_t *route = calloc (1, sizeof *route);
    assert (route);
    route->method = s_strdup (method);
    route->path = s_strdup (path);
    route->handler = handler;
    route->arg = arg;
    pthread_mutex_lock (&self->lock);
    bool busy = self->started || self->starting;
    if (!busy) {
        route->next = self->routes;
        self->routes = route;
    }
    pthread_mutex_unlock (&self->lock);
    if (busy) {
        free (route->method);
        free (route->path);
        free (route);
        return -1;
    }
    return 0;
}

int mc_module_every (mc_module_t *self, int interval_ms, mc_timer_fn *fn, void *arg)
{
    assert (self);
    if (interval_ms <= 0 || !fn)
        return -1;
    mc_timer_t *timer = calloc (1, sizeof *timer);
    assert (timer);
    timer->interval_ms = interval_ms;
    timer->fn = fn;
    timer->arg = arg;
    timer->due_ms = mc_sdk_now_ms () + interval_ms;
    pthread_mutex_lock (&self->lock);
    timer->next = self->timers;
    self->timers = timer;
    pthread_mutex_unlock (&self->lock);
    pthread_mutex_lock (&self->work_lock);
    pthread_cond_signal (&self->work_cond);
    pthread_mutex_unlock (&self->work_lock);
    return 0;
}

//  --- the dispatcher thread ---------------------------------------------------------------

void mc_module_post_work (mc_module_t *self, work_t *work)
{
    pthread_mutex_lock (&self->work_lock);
    if (self->work_tail)
        self->work_tail->next = work;
    else
        self->work_head = work;
    self->work_tail = work;
    pthread_cond_signal (&self->work_cond);
    pthread_mutex_unlock (&self->work_lock);
}

static void s_work_free (work_t *work)
{
    free (work->data);
    free (work->args_json);
    free (work);
}

static mc_native_t *s_native (mc_module_t *self)
{
    pthread_mutex_lock (&self->lock);
    mc_native_t *native = self->native;
    pthread_mutex_unlock (&self->lock);
    return native;
}

static void s_run_work (mc_module_t *self, work_t *work)
{
    switch (work->kind) {
        case WORK_EVENT: {
            int rc = mc_module_deliver (self, work->data, work->size);
            if (rc != 0)
                mc_sdk_log ("native: an EVENT that is not an event; acknowledged anyway");
            mc_native_t *native = s_native (self);
            if (native)
                mc_native_ack (native, work->session, work->frame_id, true);
            break;
        }
        case WORK_INVOKE: {
            json_t *args = json_loads (work->args_json, 0, NULL);
            if (!json_is_object (args)) {
                json_decref (args);
                args = json_object ();
            }
            char *out = NULL, *err = NULL;
            int exit_code = mc_module_cli_invoke (self, work->data, args, &out, &err);
            json_decref (args);
            mc_native_t *native = s_native (self);
            if (native)
                mc_native_invoke_result (native, work->session, work->frame_id, exit_code, out,
                                         err);
            free (out);
            free (err);
            break;
        }
        case WORK_RESYNC:
            s_subscribe_all (self);
            s_register_cli (self);
            break;
    }
}

//  Runs the timers that are due; returns ms until the next one (or 1000).
static int64_t s_run_timers (mc_module_t *self)
{
    int64_t now = mc_sdk_now_ms ();
    int64_t next = now + 1000;
    mc_timer_fn *due_fn[64];
    void *due_arg[64];
    size_t due = 0;
    pthread_mutex_lock (&self->lock);
    for (mc_timer_t *timer = self->timers; timer; timer = timer->next) {
        if (timer->due_ms <= now && due < 64) {
            due_fn[due] = timer->fn;
            due_arg[due++] = timer->arg;
            //  Fixed rate, but never a burst to catch up after a long callback.
            timer->due_ms += timer->interval_ms;
            if (timer->due_ms <= now)
                timer->due_ms = now + timer->interval_ms;
        }
        if (timer->due_ms < next)
            next = timer->due_ms;
    }
    pthread_mutex_unlock (&self->lock);
    for (size_t i = 0; i < due; i++) {
        pthread_mutex_lock (&self->callback_lock);
        mc_sdk_in_callback = true;
        due_fn[i](self, due_arg[i]);
        mc_sdk_in_callback = false;
        pthread_mutex_unlock (&self->callback_lock);
    }
    return next - now > 0 ? next - now : 0;
}

//  HTTP mode: notices that the core restarted (subscriptions live in its memory).
typedef struct {
    int64_t next_check; // ms
    double epoch;       // wall-clock seconds when the core started, 0 = unknown
    bool lost;          // the last check did not reach it
} watch_t;

static void s_watch_core (mc_module_t *self, watch_t *watch)
{
    int64_t now = mc_sdk_now_ms ();
    if (now < watch->next_check)
        return;
    watch->next_check = now + HEALTH_WATCH_MS;
    pthread_mutex_lock (&self->lock);
    bool wanted = self->subs != NULL || self->cli != NULL;
    pthread_mutex_unlock (&self->lock);
    if (!wanted)
        return;
    mc_reply_t *reply =
        mc_http_call (self->http, self->core_url, NULL, "GET", "/health", NULL, 2000);
    json_t *uptime = json_object_get (reply->json, "uptime");
    if (!mc_reply_ok (reply) || !json_is_integer (uptime)) {
        watch->lost = true;
        mc_reply_destroy (&reply);
        return;
    }
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    double epoch = (double)ts.tv_sec - (double)json_integer_value (uptime);
    bool restarted = watch->epoch > 0 && epoch - watch->epoch > 3.0;
    if (watch->lost || restarted) {
        mc_sdk_log ("the core %s; subscribing again", restarted ? "restarted" : "is back");
        s_subscribe_all (self);
        s_register_cli (self);
    }
    watch->lost = false;
    watch->epoch = epoch;
    mc_reply_destroy (&reply);
}

static void *s_dispatcher (void *arg)
{
    mc_module_t *self = arg;
    watch_t watch = {.next_check = mc_sdk_now_ms () + HEALTH_WATCH_MS};
    pthread_mutex_lock (&self->work_lock);
    while (!self->stopping) {
        work_t *work = self->work_head;
        if (work) {
            self->work_head = work->next;
            if (!self->work_head)
                self->work_tail = NULL;
            pthread_mutex_unlock (&self->work_lock);
            s_run_work (self, work);
            s_work_free (work);
            pthread_mutex_lock (&self->work_lock);
            continue;
        }
        pthread_mutex_unlock (&self->work_lock);
        int64_t wait_ms = s_run_timers (self);
        if (self->transport == MC_TRANSPORT_HTTP)
            s_watch_core (self, &watch);
        pthread_mutex_lock (&self->work_lock);
        if (self->work_head || self->stopping || wait_ms == 0)
            continue;
        struct timespec ts;
        clock_gettime (CLOCK_MONOTONIC, &ts);
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait (&self->work_cond, &self->work_lock, &ts);
    }
    //  Work left at stop is dropped: the core redelivers what was not acknowledged.
    while (self->work_head) {
        work_t *work = self->work_head;
        self->work_head = work->next;
        s_work_free (work);
    }
    self->work_tail = NULL;
    pthread_mutex_unlock (&self->work_lock);
    return NULL;
}

//  --- life cycle ---------------------------------------------------------------------------

int mc_module_start (mc_module_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    if (self->started || self->starting) {
        pthread_mutex_unlock (&self->lock);
        return self->started ? 0 : -1;
    }
    self->starting = true;
    pthread_mutex_unlock (&self->lock);

    //  Dispatcher first: native work may arrive as soon as the session opens.
    self->stopping = false;
    int rc = pthread_create (&self->dispatcher, NULL, s_dispatcher, self);
    assert (rc == 0);
    self->dispatcher_running = true;

    int status = 0;
    if (self->transport == MC_TRANSPORT_NATIVE) {
        char code[64] = "";
        mc_native_t *native =
            mc_native_start (self, self->endpoint, self->token, self->heartbeat_ms,
                             START_TIMEOUT_MS, code, sizeof code);
        pthread_rwlock_wrlock (&self->native_lock);
        pthread_mutex_lock (&self->lock);
        self->native = native;
        pthread_rwlock_unlock (&self->native_lock);
        snprintf (self->native_refusal, sizeof self->native_refusal, "%s", native ? "" : code);
        pthread_mutex_unlock (&self->lock);
        if (!native) {
            mc_sdk_log ("start: no native session with the core (%s)", code);
            status = -1;
        }
    }
    if (status == 0 && self->port > 0) {
        self->server = mc_server_start (self, self->port, self->static_dir);
        if (!self->server)
            status = -1;
    }
    pthread_mutex_lock (&self->lock);
    self->starting = false;
    self->started = status == 0;
    pthread_mutex_unlock (&self->lock);
    if (status == 0 && (s_subscribe_all (self) != 0 || s_register_cli (self) != 0))
        status = -1;
    if (status != 0) {
        //  Stop what did start; the handle stays usable.
        pthread_mutex_lock (&self->lock);
        self->started = true;
        pthread_mutex_unlock (&self->lock);
        mc_module_stop (self);
        return -1;
    }
    return 0;
}

void mc_module_stop (mc_module_t *self)
{
    assert (self);
    assert (!mc_sdk_in_callback); // from a callback, use mc_module_request_stop
    pthread_mutex_lock (&self->lock);
    bool started = self->started;
    self->started = false;
    pthread_mutex_unlock (&self->lock);
    if (!started)
        return;
    mc_server_stop (&self->server);
    if (self->dispatcher_running) {
        pthread_mutex_lock (&self->work_lock);
        self->stopping = true;
        pthread_cond_broadcast (&self->work_cond);
        pthread_mutex_unlock (&self->work_lock);
        pthread_join (self->dispatcher, NULL);
        self->dispatcher_running = false;
    }
    pthread_mutex_lock (&self->lock);
    mc_native_t *native = self->native;
    pthread_mutex_unlock (&self->lock);
    if (native) {
        mc_native_close (native); // calls in flight return now; new ones at once
        pthread_rwlock_wrlock (&self->native_lock);
        pthread_mutex_lock (&self->lock);
        self->native = NULL;
        pthread_mutex_unlock (&self->lock);
        pthread_rwlock_unlock (&self->native_lock);
        mc_native_stop (&native);
    }
    pthread_mutex_lock (&self->lock);
    for (sub_t *sub = self->subs; sub; sub = sub->next) {
        free (sub->remote_id);
        sub->remote_id = NULL;
    }
    pthread_mutex_unlock (&self->lock);
}

//  The handle mc_module_run serves, for the signal handler.
static mc_module_t *volatile s_running;

static void s_on_signal (int signum)
{
    mc_module_t *self = s_running;
    if (self)
        mc_module_request_stop (self);
}

void mc_module_request_stop (mc_module_t *self)
{
    uint64_t one = 1;
    ssize_t rc = write (self->stop_fd, &one, sizeof one); // async-signal-safe
    (void)rc;
}

int mc_module_run (mc_module_t *self)
{
    assert (self);
    if (mc_module_start (self) != 0)
        return -1;
    struct sigaction action = {0}, old_term, old_int;
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    s_running = self;
    sigaction (SIGTERM, &action, &old_term);
    sigaction (SIGINT, &action, &old_int);
    mc_sdk_log ("%s %s running (%s transport%s)", *self->name ? self->name : "module",
                self->version, self->transport == MC_TRANSPORT_NATIVE ? "native" : "HTTP",
                self->port > 0 ? ", serving its port" : "");
    struct pollfd item = {.fd = self->stop_fd, .events = POLLIN};
    while (poll (&item, 1, -1) < 0 && errno == EINTR)
        ;
    uint64_t count;
    ssize_t n = read (self->stop_fd, &count, sizeof count);
    (void)n;
    sigaction (SIGTERM, &old_term, NULL);
    sigaction (SIGINT, &old_int, NULL);
    s_running = NULL;
    mc_sdk_log ("stopping");
    mc_module_stop (self);
    return 0;
}
