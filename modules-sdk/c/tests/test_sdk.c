/*  libmodcore end to end: the real modcored, real module processes built from the SDK.

    usage: csdk_tests http|native MODCORED

    Starts MODCORED on a free port with a temporary data dir, builds module ZIPs of
    csdk_testmod (tests/testmod.c) with their manifests, installs them through the real
    install path and checks what a module author would see:

      http    publish from one module -> the other's handler; a forged delivery -> 401;
              CLI round trips through POST /api/v1/cli/invoke/<module> (exit code,
              stdout, stderr); the API from an in-process handle (self, devices,
              config, storage, 429 with and without retries).
      native  HELLO with a wrong token is refused; the rate limit over the native
              transport (burst 20 + 100/s, the rest 429); an event pushed down the
              session and ACKed (delivery "delivered"); CLI over INVOKE; the sensor
              example's device appears and its state changes, and a restart reuses it;
              after the core restarts (or is killed, or freezes), a session comes back
              by itself (re-HELLO) and its subscription is made again.

    Exit status 0 (all passed), 1 (a check failed), 77 (skipped: the core does not
    answer on its native endpoint). The temp dir is removed at the end unless
    CSDK_KEEP=1. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <modcore.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SKIP 77

typedef struct {
    char dir[256];      // temp root
    char data[320];     // data dir
    char log[320];      // modcored's output
    char config[320];   // config file
    const char *binary; // modcored
    int port;           // gateway port
    pid_t pid;          // running daemon, 0 if none
    char admin[256];    // admin token
    char base[96];      // http://127.0.0.1:PORT/api/v1
} core_t;

static int s_passed, s_failed;

static void s_check (bool ok, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    printf ("%s - ", ok ? "ok  " : "FAIL");
    vprintf (format, args);
    printf ("\n");
    fflush (stdout);
    va_end (args);
    if (ok)
        s_passed++;
    else
        s_failed++;
}

static int64_t s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_sleep_ms (int ms)
{
    usleep ((useconds_t)ms * 1000);
}

//  --- ports -------------------------------------------------------------------------------

static bool s_port_free (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    bool ok = bind (fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close (fd);
    return ok;
}

static int s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    bind (fd, (struct sockaddr *)&addr, sizeof addr);
    getsockname (fd, (struct sockaddr *)&addr, &len);
    close (fd);
    return ntohs (addr.sin_port);
}

//  A free module port (8110..8200: the examples use the first ones), never the same
//  twice in a run.
static int s_module_port (void)
{
    static bool used[91];
    for (int tries = 0; tries < 1000; tries++) {
        int i = rand () % 91;
        if (!used[i] && s_port_free (8110 + i)) {
            used[i] = true;
            return 8110 + i;
        }
    }
    return 0;
}

//  --- HTTP --------------------------------------------------------------------------------

static size_t s_collect (char *data, size_t size, size_t n, void *arg)
{
    char **buf = arg;
    size_t old = *buf ? strlen (*buf) : 0;
    *buf = realloc (*buf, old + size * n + 1);
    memcpy (*buf + old, data, size * n);
    (*buf)[old + size * n] = 0;
    return size * n;
}

//  One request; returns the JSON answer (or NULL) and sets *status (0: no answer).
static json_t *s_http (const char *method, const char *url, const char *token,
                       const char *content_type, const void *body, size_t len,
                       const char *extra_header, int *status)
{
    CURL *easy = curl_easy_init ();
    struct curl_slist *headers = NULL;
    char line[512];
    if (token) {
        snprintf (line, sizeof line, "Authorization: Bearer %s", token);
        headers = curl_slist_append (headers, line);
    }
    if (content_type) {
        snprintf (line, sizeof line, "Content-Type: %s", content_type);
        headers = curl_slist_append (headers, line);
    }
    if (extra_header)
        headers = curl_slist_append (headers, extra_header);
    headers = curl_slist_append (headers, "Expect:");
    char *answer = NULL;
    curl_easy_setopt (easy, CURLOPT_URL, url);
    curl_easy_setopt (easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (easy, CURLOPT_TIMEOUT, 90L);
    curl_easy_setopt (easy, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, headers);
    if (body) {
        curl_easy_setopt (easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, &answer);
    long code = 0;
    if (curl_easy_perform (easy) == CURLE_OK)
        curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup (easy);
    curl_slist_free_all (headers);
    *status = (int)code;
    json_t *json = answer ? json_loads (answer, JSON_DECODE_ANY, NULL) : NULL;
    free (answer);
    return json;
}

//  A call to the core's API with the admin token; body (JSON) may be NULL.
static json_t *s_api (core_t *core, const char *method, const char *path, json_t *body, int *status)
{
    char url[512];
    snprintf (url, sizeof url, "%s%s", core->base, path);
    char *text = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_t *answer = s_http (method, url, core->admin, text ? "application/json" : NULL, text,
                             text ? strlen (text) : 0, NULL, status);
    free (text);
    return answer;
}

//  --- the daemon --------------------------------------------------------------------------

static bool s_read_file (const char *path, char *buf, size_t size)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    size_t n = fread (buf, 1, size - 1, file);
    fclose (file);
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return n > 0;
}

static bool s_core_start (core_t *core)
{
    core->pid = fork ();
    if (core->pid == 0) {
        int fd = open (core->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2 (fd, 1);
        dup2 (fd, 2);
        char listen[64];
        snprintf (listen, sizeof listen, "127.0.0.1:%d", core->port);
        execl (core->binary, core->binary, "--data-dir", core->data, "--listen", listen, "--config",
               core->config, (char *)NULL);
        _exit (127);
    }
    char url[160];
    snprintf (url, sizeof url, "%s/health", core->base);
    for (int64_t end = s_now_ms () + 30000; s_now_ms () < end; s_sleep_ms (100)) {
        int status = 0;
        json_t *health = s_http ("GET", url, NULL, NULL, NULL, 0, NULL, &status);
        json_decref (health);
        char path[400];
        snprintf (path, sizeof path, "%s/admin.token", core->data);
        if (status == 200 && s_read_file (path, core->admin, sizeof core->admin))
            return true;
        if (waitpid (core->pid, NULL, WNOHANG) == core->pid) {
            core->pid = 0;
            return false;
        }
    }
    return false;
}

static void s_core_stop (core_t *core)
{
    if (core->pid <= 0)
        return;
    kill (core->pid, SIGTERM);
    for (int64_t end = s_now_ms () + 30000; s_now_ms () < end; s_sleep_ms (50))
        if (waitpid (core->pid, NULL, WNOHANG) == core->pid) {
            core->pid = 0;
            return;
        }
    kill (core->pid, SIGKILL);
    waitpid (core->pid, NULL, 0);
    core->pid = 0;
}

static void s_print_tail (const char *title, const char *path, int lines)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    static char text[1 << 20];
    size_t n = fread (text, 1, sizeof text - 1, file);
    fclose (file);
    text[n] = 0;
    const char *start = text + n;
    for (int count = 0; start > text && count <= lines; start--)
        if (start[-1] == '\n')
            count++;
    printf ("----- %s (last %d lines) -----\n%s\n", title, lines, start);
}

//  --- modules -----------------------------------------------------------------------------

static int s_run (const char *command)
{
    int rc = system (command);
    return WIFEXITED (rc) ? WEXITSTATUS (rc) : -1;
}

static bool s_copy_file (const char *from, const char *to)
{
    char command[4096];
    snprintf (command, sizeof command, "cp '%s' '%s' && chmod 0755 '%s'", from, to, to);
    return s_run (command) == 0;
}

//  Builds <dir>/<name>.zip: the binary (as entry_file) and manifest (a JSON object).
static bool s_make_zip (core_t *core, const char *name, json_t *manifest, const char *binary,
                        const char *entry_file, char *zip, size_t zip_size)
{
    char stage[400], path[600], command[1400];
    snprintf (stage, sizeof stage, "%s/stage-%s", core->dir, name);
    snprintf (zip, zip_size, "%s/%s.zip", core->dir, name);
    mkdir (stage, 0755);
    snprintf (path, sizeof path, "%s/%s", stage, entry_file);
    if (!s_copy_file (binary, path))
        return false;
    snprintf (path, sizeof path, "%s/manifest.json", stage);
    if (json_dump_file (manifest, path, JSON_INDENT (2)) != 0)
        return false;
    snprintf (command, sizeof command, "'%s' '%s' '%s' '%s'", MCSDK_PYTHON3, MCSDK_MKZIP, stage,
              zip);
    return s_run (command) == 0;
}

//  The manifest of a test module.
static json_t *s_testmod_manifest (const char *name, int port, bool native)
{
    json_t *entry = native ? json_pack ("[s, s]", "./csdk_testmod", "--native")
                           : json_pack ("[s]", "./csdk_testmod");
    return json_pack ("{s:s, s:s, s:s, s:s, s:s, s:i, s:[s,s,s,s,s], s:o, s:s}", "name", name,
                      "version", "1.2.3", "type", "INTEGRATION", "api_version", "1.0",
                      "runtime_mode", "always_on", "port", port, "permissions", "events.publish",
                      "events.subscribe", "device.read", "device.write", "storage.rw", "entry",
                      entry, "description", "libmodcore test module");
}

static bool s_install (core_t *core, const char *zip)
{
    FILE *file = fopen (zip, "rb");
    if (!file)
        return false;
    static char data[16 << 20];
    size_t len = fread (data, 1, sizeof data, file);
    fclose (file);
    char url[160];
    snprintf (url, sizeof url, "%s/modules/install", core->base);
    int status = 0;
    json_t *answer = s_http ("POST", url, core->admin, "application/zip", data, len, NULL, &status);
    if (status != 201) {
        char *text = answer ? json_dumps (answer, JSON_COMPACT) : NULL;
        printf ("install %s: HTTP %d %s\n", zip, status, text ? text : "");
        free (text);
    }
    json_decref (answer);
    return status == 201;
}

//  Installs a test module on a free port. Returns the port, or 0.
static int s_install_testmod (core_t *core, const char *name, bool native)
{
    int port = s_module_port ();
    json_t *manifest = s_testmod_manifest (name, port, native);
    char zip[600];
    bool ok = s_make_zip (core, name, manifest, MCSDK_TESTMOD, "csdk_testmod", zip, sizeof zip) &&
              s_install (core, zip);
    json_decref (manifest);
    return ok ? port : 0;
}

//  POST /cli/invoke/<module>; returns the answer, *status the HTTP status.
static json_t *s_invoke (core_t *core, const char *module, const char *subcommand, json_t *args,
                         int *status)
{
    char path[200];
    snprintf (path, sizeof path, "/cli/invoke/%s", module);
    json_t *body =
        json_pack ("{s:s, s:o}", "subcommand", subcommand, "args", args ? args : json_object ());
    json_t *answer = s_api (core, "POST", path, body, status);
    json_decref (body);
    return answer;
}

static const char *s_field (json_t *obj, const char *key)
{
    const char *value = json_string_value (json_object_get (obj, key));
    return value ? value : "";
}

//  Publishes through module's CLI; returns the event id (static buffer) or NULL.
static const char *s_publish_via (core_t *core, const char *module, const char *type,
                                  const char *payload)
{
    static char event_id[128];
    int status = 0;
    json_t *answer = s_invoke (core, module, "publish",
                               json_pack ("{s:s, s:s}", "type", type, "payload", payload), &status);
    json_t *out = json_loads (s_field (answer, "stdout"), 0, NULL);
    bool ok = status == 200 && json_integer_value (json_object_get (answer, "exit_code")) == 0 &&
              *s_field (out, "event_id");
    snprintf (event_id, sizeof event_id, "%s", s_field (out, "event_id"));
    if (!ok) {
        char *text = answer ? json_dumps (answer, JSON_COMPACT) : NULL;
        printf ("publish via %s: HTTP %d %s\n", module, status, text ? text : "");
        free (text);
    }
    json_decref (out);
    json_decref (answer);
    return ok ? event_id : NULL;
}

//  True once module's `received` lists event_id (polls up to timeout_ms).
static bool s_wait_received (core_t *core, const char *module, const char *event_id, int timeout_ms)
{
    for (int64_t end = s_now_ms () + timeout_ms; s_now_ms () < end; s_sleep_ms (200)) {
        int status = 0;
        json_t *answer = s_invoke (core, module, "received", NULL, &status);
        bool found = status == 200 && strstr (s_field (answer, "stdout"), event_id) != NULL;
        json_decref (answer);
        if (found)
            return true;
    }
    return false;
}

//  The module's own token, from the test module's GET /token.
static bool s_module_token (int port, char *token, size_t size)
{
    char url[96];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/token", port);
    int status = 0;
    json_t *answer = s_http ("GET", url, NULL, NULL, NULL, 0, NULL, &status);
    snprintf (token, size, "%s", s_field (answer, "token"));
    json_decref (answer);
    return status == 200 && *token;
}

//  Waits until module is RUNNING.
static bool s_wait_running (core_t *core, const char *module, int timeout_ms)
{
    char path[160];
    snprintf (path, sizeof path, "/modules/%s", module);
    for (int64_t end = s_now_ms () + timeout_ms; s_now_ms () < end; s_sleep_ms (200)) {
        int status = 0;
        json_t *answer = s_api (core, "GET", path, NULL, &status);
        bool running = status == 200 && strcmp (s_field (answer, "status"), "RUNNING") == 0;
        json_decref (answer);
        if (running)
            return true;
    }
    return false;
}

//  --- in-process handles -------------------------------------------------------------------

typedef struct {
    pthread_mutex_t lock;
    json_t *events; // received
} inbox_t;

static void s_on_event (mc_module_t *module, const char *type, json_t *event, void *arg)
{
    inbox_t *inbox = arg;
    pthread_mutex_lock (&inbox->lock);
    json_array_append (inbox->events, event);
    pthread_mutex_unlock (&inbox->lock);
}

//  True once the inbox holds at least `count` events of type (polls up to timeout_ms).
static bool s_inbox_has (inbox_t *inbox, const char *type, size_t count, int timeout_ms)
{
    for (int64_t end = s_now_ms () + timeout_ms; s_now_ms () < end; s_sleep_ms (100)) {
        size_t found = 0;
        pthread_mutex_lock (&inbox->lock);
        size_t i;
        json_t *event;
        json_array_foreach (inbox->events, i, event) found +=
            strcmp (s_field (event, "type"), type) == 0;
        pthread_mutex_unlock (&inbox->lock);
        if (found >= count)
            return true;
    }
    return false;
}

//  Restarts the core (SIGTERM: it says BYE; SIGKILL: the new core does not know the
//  session) or freezes it (SIGSTOP: silence past 3 heartbeats), then checks that the
//  in-process native handle m comes back and its subscription with it: the count-th
//  csdk.recon event reaches its handler.
static void s_check_reconnect (core_t *core, mc_module_t *m, inbox_t *inbox, int signum,
                               size_t count)
{
    const char *how = signum == SIGKILL   ? "killed"
                      : signum == SIGSTOP ? "frozen for 4 heartbeats"
                                          : "stopped";
    if (signum == SIGSTOP) {
        //  Not a restart: the session's peer goes silent, the handle must notice.
        kill (core->pid, SIGSTOP);
        s_sleep_ms (4500);
        kill (core->pid, SIGCONT);
    } else {
        if (signum == SIGKILL && core->pid > 0) {
            kill (core->pid, SIGKILL);
            waitpid (core->pid, NULL, 0);
            core->pid = 0;
        } else
            s_core_stop (core);
        s_check (s_core_start (core), "the core %s and started again", how);
    }
    s_wait_running (core, "csdk-h", 20000);
    bool back = false;
    for (int64_t end = s_now_ms () + 20000; s_now_ms () < end && !back; s_sleep_ms (250)) {
        mc_reply_t *r = mc_module_subscriptions (m);
        size_t i;
        json_t *sub;
        json_array_foreach (json_object_get (r->json, "subscriptions"), i, sub) back =
            back || strcmp (s_field (sub, "webhook_url"), "native:") == 0;
        mc_reply_destroy (&r);
    }
    s_check (back, "native: after the core was %s the session is back and re-subscribed", how);
    int status = 0;
    json_t *event = json_pack ("{s:s, s:{s:i}}", "type", "csdk.recon", "payload", "n", (int)count);
    json_decref (s_api (core, "POST", "/events/publish", event, &status));
    json_decref (event);
    s_check (status == 201 && s_inbox_has (inbox, "csdk.recon", count, 15000),
             "native: an event published after the core was %s reaches the handler (publish %d)",
             how, status);
}

//  --- HTTP mode ----------------------------------------------------------------------------

static void s_test_http (core_t *core)
{
    int port_a = s_install_testmod (core, "csdk-a", false);
    int port_b = s_install_testmod (core, "csdk-b", false);
    s_check (port_a && port_b, "install two modules built from libmodcore (HTTP transport)");
    if (!port_a || !port_b)
        return;

    //  Health as the SDK serves it
    char url[160];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/health", port_a);
    int status = 0;
    json_t *health = s_http ("GET", url, NULL, NULL, NULL, 0, NULL, &status);
    s_check (status == 200 && strcmp (s_field (health, "status"), "ok") == 0 &&
                 strcmp (s_field (health, "name"), "csdk-a") == 0 &&
                 strcmp (s_field (health, "version"), "1.2.3") == 0,
             "GET /health -> {status: ok, name, version} (HTTP %d)", status);
    json_decref (health);

    //  Static files and the module's own routes
    snprintf (url, sizeof url, "http://127.0.0.1:%d/manifest.json", port_a);
    json_t *manifest = s_http ("GET", url, NULL, NULL, NULL, 0, NULL, &status);
    s_check (status == 200 && strcmp (s_field (manifest, "name"), "csdk-a") == 0,
             "static files: GET /manifest.json from the module's dir (HTTP %d)", status);
    json_decref (manifest);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/nothing-here.html", port_a);
    json_decref (s_http ("GET", url, NULL, NULL, NULL, 0, NULL, &status));
    s_check (status == 404, "static files: a missing file -> 404 (HTTP %d)", status);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/token", port_a);
    json_decref (s_http ("POST", url, NULL, NULL, "", 0, NULL, &status));
    s_check (status == 405, "own routes: the wrong method -> 405 (HTTP %d)", status);

    //  Publish from A, B's handler receives it (and CLI round trip)
    const char *id = s_publish_via (core, "csdk-a", "csdk.hello", "{\"n\":1}");
    s_check (id != NULL, "CLI round trip: csdk-a publish -> exit 0, stdout has the event id");
    if (id) {
        char event_id[128];
        snprintf (event_id, sizeof event_id, "%s", id);
        s_check (s_wait_received (core, "csdk-b", event_id, 15000),
                 "publish from csdk-a -> csdk-b's handler received %s (signed webhook)", event_id);
    }

    json_t *answer = s_invoke (core, "csdk-a", "fail", NULL, &status);
    s_check (status == 200 && json_integer_value (json_object_get (answer, "exit_code")) == 3 &&
                 strstr (s_field (answer, "stderr"), "failing on purpose"),
             "CLI: exit code 3 and stderr come back through the core");
    json_decref (answer);
    answer = s_invoke (core, "csdk-a", "nosuch", NULL, &status);
    s_check (status == 404, "CLI: an unknown subcommand -> 404 from the core (HTTP %d)", status);
    json_decref (answer);

    //  Forged deliveries
    snprintf (url, sizeof url, "http://127.0.0.1:%d/webhook/events", port_b);
    const char *forged = "{\"id\":\"forged-1\",\"type\":\"csdk.forged\",\"source\":\"x\","
                         "\"timestamp\":\"2026-01-01T00:00:00Z\",\"payload\":{}}";
    char bad[100] = "X-Selena-Signature: sha256=";
    for (int i = 0; i < 64; i++)
        strcat (bad, "0");
    json_decref (
        s_http ("POST", url, NULL, "application/json", forged, strlen (forged), bad, &status));
    s_check (status == 401, "a delivery with a bad signature -> 401 (HTTP %d)", status);
    json_decref (
        s_http ("POST", url, NULL, "application/json", forged, strlen (forged), NULL, &status));
    s_check (status == 401, "a delivery without a signature -> 401 (HTTP %d)", status);
    char secret_guess[72];
    mc_signature ("not-the-secret", forged, strlen (forged), secret_guess);
    char header[120];
    snprintf (header, sizeof header, "X-Selena-Signature: %s", secret_guess);
    json_decref (
        s_http ("POST", url, NULL, "application/json", forged, strlen (forged), header, &status));
    s_check (status == 401, "a delivery signed with another secret -> 401 (HTTP %d)", status);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/cli", port_b);
    const char *cli = "{\"subcommand\":\"received\",\"args\":{}}";
    json_decref (s_http ("POST", url, NULL, "application/json", cli, strlen (cli), bad, &status));
    s_check (status == 401, "a CLI call with a bad signature -> 401 (HTTP %d)", status);
    answer = s_invoke (core, "csdk-b", "received", NULL, &status);
    s_check (status == 200 && !strstr (s_field (answer, "stdout"), "forged-1"),
             "the forged event never reached a handler");
    json_decref (answer);

    //  The API from an in-process handle with csdk-a's token
    char token[128];
    if (!s_module_token (port_a, token, sizeof token)) {
        s_check (false, "csdk-a's token (GET /token)");
        return;
    }
    mc_module_t *m = mc_module_new (core->base, token, NULL);
    mc_module_set_name (m, "csdk-a");
    mc_reply_t *r = mc_module_self (m);
    s_check (r->status == 200 && strcmp (s_field (r->json, "name"), "csdk-a") == 0,
             "HTTP: self -> 200 csdk-a");
    mc_reply_destroy (&r);

    json_t *spec = json_pack ("{s:s, s:s, s:s, s:[s]}", "name", "lamp", "type", "actuator",
                              "protocol", "virtual", "capabilities", "on_off");
    r = mc_module_device_create (m, spec);
    json_decref (spec);
    char device_id[128] = "";
    snprintf (device_id, sizeof device_id, "%s", s_field (r->json, "device_id"));
    s_check (r->status == 201 && *device_id, "HTTP: device create -> 201 (%d)", r->status);
    mc_reply_destroy (&r);
    json_t *state = json_pack ("{s:b}", "on", 1);
    r = mc_module_device_set_state (m, device_id, state);
    json_decref (state);
    s_check (mc_reply_ok (r), "HTTP: device set_state -> %d", r->status);
    mc_reply_destroy (&r);
    r = mc_module_device_get (m, device_id);
    s_check (r->status == 200 &&
                 json_is_true (json_object_get (json_object_get (r->json, "state"), "on")),
             "HTTP: device get shows the new state");
    mc_reply_destroy (&r);
    r = mc_module_devices_list (m);
    s_check (r->status == 200 && json_is_array (json_object_get (r->json, "devices")),
             "HTTP: devices list");
    mc_reply_destroy (&r);
    r = mc_module_device_get (m, "no-such-device");
    s_check (r->status == 404 && r->error && *r->error,
             "HTTP: a missing device -> 404 with error %s", r->error ? r->error : "(none)");
    mc_reply_destroy (&r);

    json_t *value = json_integer (42);
    r = mc_module_config_set (m, "answer", value);
    s_check (mc_reply_ok (r), "HTTP: config set -> %d", r->status);
    mc_reply_destroy (&r);
    r = mc_module_config_get (m);
    s_check (r->status == 200 && json_integer_value (json_object_get (
                                     json_object_get (r->json, "config"), "answer")) == 42,
             "HTTP: config get returns it");
    mc_reply_destroy (&r);

    r = mc_module_storage_put (m, "k/1", value);
    if (r->status == 404 && r->error && strcmp (r->error, "NOT_FOUND") == 0)
        printf ("note - the core has no /storage routes yet: storage checks skipped\n");
    else {
        s_check (mc_reply_ok (r), "HTTP: storage put -> %d", r->status);
        mc_reply_destroy (&r);
        r = mc_module_storage_get (m, "k/1");
        s_check (r->status == 200 && json_integer_value (json_object_get (r->json, "value")) == 42,
                 "HTTP: storage get (a key with a slash) -> 42");
        mc_reply_destroy (&r);
        json_t *puts = json_pack ("{s:s, s:i}", "k/2", "two", "k/3", 3);
        json_t *deletes = json_pack ("[s]", "k/1");
        r = mc_module_storage_batch (m, puts, deletes);
        json_decref (puts);
        json_decref (deletes);
        s_check (mc_reply_ok (r), "HTTP: storage batch -> %d", r->status);
        mc_reply_destroy (&r);
        r = mc_module_storage_list (m, "k/", NULL, 10);
        s_check (r->status == 200 && json_array_size (json_object_get (r->json, "items")) == 2,
                 "HTTP: storage list k/ -> 2 items");
        mc_reply_destroy (&r);
        r = mc_module_storage_delete (m, "k/2");
        s_check (mc_reply_ok (r), "HTTP: storage delete -> %d", r->status);
        mc_reply_destroy (&r);
        r = mc_module_storage_get (m, "k/2");
        s_check (r->status == 404, "HTTP: a deleted key -> 404");
    }
    mc_reply_destroy (&r);
    json_decref (value);

    //  429: without retries handed back with Retry-After; with retries absorbed
    s_sleep_ms (1200); // a full bucket again
    mc_module_set_retries (m, 0, 0);
    int ok = 0, limited = 0, retry_after = 0;
    for (int i = 0; i < 60; i++) {
        r = mc_module_self (m);
        if (mc_reply_ok (r))
            ok++;
        else if (r->status == 429) {
            limited++;
            retry_after = r->retry_after;
        }
        mc_reply_destroy (&r);
    }
    s_check (limited > 0 && retry_after >= 1 && ok >= 10,
             "HTTP: 60 calls at once -> %d ok, %d x 429 (Retry-After %d s)", ok, limited,
             retry_after);
    mc_module_set_retries (m, 3, 5000);
    r = mc_module_self (m);
    s_check (r->status == 200, "HTTP: the next call waits out Retry-After and succeeds (%d)",
             r->status);
    mc_reply_destroy (&r);
    mc_module_destroy (&m);
    mc_module_destroy (&m); // safe twice
}

//  --- native mode --------------------------------------------------------------------------

static void s_test_sensor (core_t *core)
{
    const char *zip = MCSDK_SENSOR_ZIP;
    char repacked[600];
    if (!s_port_free (8101)) {
        //  Port 8101 is taken on this machine: the same binary and manifest, another port.
        json_t *manifest = json_load_file (MCSDK_SENSOR_MANIFEST, 0, NULL);
        json_object_set_new (manifest, "port", json_integer (s_module_port ()));
        s_make_zip (core, "sensor", manifest, MCSDK_SENSOR_BIN, "sensor", repacked,
                    sizeof repacked);
        json_decref (manifest);
        zip = repacked;
    }
    s_check (s_install (core, zip), "install the sensor example (%s)", zip);

    //  Its device appears...
    char device_id[128] = "";
    json_t *first = NULL;
    for (int64_t end = s_now_ms () + 15000; s_now_ms () < end && !first; s_sleep_ms (200)) {
        int status = 0;
        json_t *list = s_api (core, "GET", "/devices", NULL, &status);
        size_t i;
        json_t *device;
        json_array_foreach (json_object_get (list, "devices"), i,
                            device) if (strcmp (s_field (device, "name"), "sensor-1") == 0 &&
                                        strcmp (s_field (device, "module_id"), "sensor") == 0 &&
                                        !first) first = json_incref (device);
        json_decref (list);
    }
    s_check (first != NULL, "the sensor's device sensor-1 appears in GET /api/v1/devices");
    if (!first)
        return;
    snprintf (device_id, sizeof device_id, "%s", s_field (first, "device_id"));
    //  ... and its state changes
    double t0 =
        json_number_value (json_object_get (json_object_get (first, "state"), "temperature"));
    bool changed = false;
    double t1 = t0;
    char path[200];
    snprintf (path, sizeof path, "/devices/%s", device_id);
    for (int64_t end = s_now_ms () + 10000; s_now_ms () < end && !changed; s_sleep_ms (500)) {
        int status = 0;
        json_t *device = s_api (core, "GET", path, NULL, &status);
        json_t *temperature = json_object_get (json_object_get (device, "state"), "temperature");
        t1 = json_number_value (temperature);
        changed = json_is_number (temperature) && t1 != t0;
        json_decref (device);
    }
    s_check (changed, "sensor-1's temperature changes (%.1f -> %.1f)", t0, t1);
    json_decref (first);

    int status = 0;
    json_t *recent = s_api (core, "GET", "/events/recent?limit=200", NULL, &status);
    bool published = false;
    size_t i;
    json_t *event;
    json_array_foreach (json_object_get (recent, "events"), i, event) published =
        published ||
        (strcmp (s_field (event, "type"), "device.state_changed") == 0 &&
         strcmp (s_field (json_object_get (event, "payload"), "device_id"), device_id) == 0);
    json_decref (recent);
    s_check (published, "the core published device.state_changed for sensor-1");

    json_t *answer = s_invoke (core, "sensor", "status", NULL, &status);
    s_check (status == 200 && strstr (s_field (answer, "stdout"), device_id),
             "modctl sensor status (over the native session) -> %s", s_field (answer, "stdout"));
    json_decref (answer);

    //  A restart reuses the device
    json_decref (s_api (core, "POST", "/modules/sensor/stop", NULL, &status));
    json_decref (s_api (core, "POST", "/modules/sensor/start", NULL, &status));
    s_check (s_wait_running (core, "sensor", 20000), "sensor restarted");
    s_sleep_ms (2500);
    json_t *list = s_api (core, "GET", "/devices", NULL, &status);
    int count = 0;
    bool same = false;
    json_t *device;
    json_array_foreach (json_object_get (list, "devices"), i,
                        device) if (strcmp (s_field (device, "name"), "sensor-1") == 0 &&
                                    strcmp (s_field (device, "module_id"), "sensor") == 0)
    {
        count++;
        same = strcmp (s_field (device, "device_id"), device_id) == 0;
    }
    json_decref (list);
    s_check (count == 1 && same, "after a restart the sensor reuses its device (%d device(s))",
             count);
}

static int s_test_native (core_t *core)
{
    char endpoint[400];
    snprintf (endpoint, sizeof endpoint, "ipc://%s/run/modcore.sock", core->data);

    //  HELLO with a wrong token
    mc_module_t *bogus = mc_module_new (core->base,
                                        "not-a-token-not-a-token-not-a-token-xxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxx",
                                        endpoint);
    mc_module_set_transport (bogus, MC_TRANSPORT_NATIVE);
    int rc = mc_module_start (bogus);
    mc_reply_t *r = mc_module_self (bogus);
    bool answered = r->status == 401;
    if (rc != 0 && !answered) {
        printf ("SKIP - the core does not answer on its native endpoint %s (no WELCOME or "
                "ERROR to a HELLO: %s). The core's side of the native transport "
                "(gateway/sdk.c) is not in this build.\n",
                endpoint, r->error ? r->error : "");
        mc_reply_destroy (&r);
        mc_module_destroy (&bogus);
        return SKIP;
    }
    s_check (rc != 0 && r->status == 401 && r->error && strcmp (r->error, "UNAUTHORIZED") == 0,
             "native: HELLO with a wrong token is refused (start %d, then %d %s)", rc, r->status,
             r->error ? r->error : "");
    mc_reply_destroy (&r);
    mc_module_destroy (&bogus);

    int port_h = s_install_testmod (core, "csdk-h", false);
    int port_n = s_install_testmod (core, "csdk-n", true);
    s_check (port_h && port_n, "install an HTTP and a native module built from libmodcore");
    if (!port_h || !port_n)
        return 0;

    //  CLI through INVOKE
    int status = 0;
    json_t *answer = s_invoke (core, "csdk-n", "fail", NULL, &status);
    s_check (status == 200 && json_integer_value (json_object_get (answer, "exit_code")) == 3 &&
                 strstr (s_field (answer, "stderr"), "failing on purpose"),
             "native: CLI invocation -> exit code 3 and stderr (HTTP %d)", status);
    json_decref (answer);

    //  An event pushed down the session and ACKed
    const char *id = s_publish_via (core, "csdk-h", "csdk.native", "{\"n\":2}");
    char event_id[128] = "";
    if (id)
        snprintf (event_id, sizeof event_id, "%s", id);
    s_check (*event_id && s_wait_received (core, "csdk-n", event_id, 15000),
             "native: an event published by csdk-h reaches csdk-n's handler (EVENT)");
    bool delivered = false;
    for (int64_t end = s_now_ms () + 10000; s_now_ms () < end && !delivered; s_sleep_ms (200)) {
        json_t *list = s_api (core, "GET", "/events/deliveries?module=csdk-n", NULL, &status);
        size_t i;
        json_t *d;
        json_array_foreach (json_object_get (list, "deliveries"), i, d) delivered =
            delivered || (strcmp (s_field (d, "event_id"), event_id) == 0 &&
                          strcmp (s_field (d, "status"), "delivered") == 0);
        json_decref (list);
    }
    s_check (delivered, "native: the delivery is 'delivered' once csdk-n ACKed it");

    //  Rate limit over the native transport: from the module process...
    answer = s_invoke (core, "csdk-n", "burst", json_pack ("{s:s}", "count", "60"), &status);
    json_t *counts = json_loads (s_field (answer, "stdout"), 0, NULL);
    int ok = (int)json_integer_value (json_object_get (counts, "ok"));
    int limited = (int)json_integer_value (json_object_get (counts, "limited"));
    s_check (status == 200 && ok >= 10 && ok <= 40 && limited >= 20 && ok + limited == 60,
             "native: 60 requests at once from csdk-n -> %d ok, %d x 429 (burst 20 + 100/s)", ok,
             limited);
    json_decref (counts);
    json_decref (answer);

    //  ... and from an in-process handle with csdk-h's token (shares csdk-h's bucket)
    char token[128];
    if (!s_module_token (port_h, token, sizeof token)) {
        s_check (false, "csdk-h's token (GET /token)");
        return 0;
    }
    s_sleep_ms (1200); // a full bucket again
    mc_module_t *m = mc_module_new (core->base, token, endpoint);
    mc_module_set_transport (m, MC_TRANSPORT_NATIVE);
    mc_module_set_heartbeat (m, 1000);
    inbox_t inbox = {.events = json_array ()};
    pthread_mutex_init (&inbox.lock, NULL);
    const char *types[] = {"csdk.recon", NULL};
    mc_module_subscribe (m, types, s_on_event, &inbox);
    s_check (mc_module_start (m) == 0, "native: an in-process handle opens a session");
    mc_module_set_retries (m, 0, 0);
    ok = limited = 0;
    int retry_after = 0;
    char code[64] = "";
    for (int i = 0; i < 60; i++) {
        r = mc_module_self (m);
        if (mc_reply_ok (r))
            ok++;
        else if (r->status == 429) {
            limited++;
            retry_after = r->retry_after;
            snprintf (code, sizeof code, "%s", r->error);
        }
        mc_reply_destroy (&r);
    }
    s_check (ok >= 10 && ok <= 40 && limited >= 20 && ok + limited == 60 && retry_after >= 1,
             "native: 60 requests at once -> %d ok, %d x 429 %s (retry_after %d s)", ok, limited,
             code, retry_after);
    mc_module_set_retries (m, 3, 5000);
    r = mc_module_self (m);
    s_check (r->status == 200, "native: the next call waits out retry_after and succeeds (%d)",
             r->status);
    mc_reply_destroy (&r);

    s_test_sensor (core);

    //  The core restarts: the handle says HELLO again and subscribes again by itself
    s_check_reconnect (core, m, &inbox, SIGTERM, 1);
    s_check_reconnect (core, m, &inbox, SIGKILL, 2);
    s_check_reconnect (core, m, &inbox, SIGSTOP, 3);
    mc_module_destroy (&m);
    json_decref (inbox.events);
    pthread_mutex_destroy (&inbox.lock);
    return 0;
}

//  --- main -------------------------------------------------------------------------------

int main (int argc, char **argv)
{
    if (argc < 3 || (strcmp (argv[1], "http") != 0 && strcmp (argv[1], "native") != 0)) {
        fprintf (stderr, "usage: csdk_tests http|native MODCORED\n");
        return 2;
    }
    setvbuf (stdout, NULL, _IOLBF, 0);
    signal (SIGPIPE, SIG_IGN);
    srand ((unsigned)time (NULL) ^ (unsigned)getpid ());
    curl_global_init (CURL_GLOBAL_DEFAULT);
    core_t core = {.binary = argv[2]};
    if (access (core.binary, X_OK) != 0) {
        printf ("SKIP - %s is not built\n", core.binary);
        return SKIP;
    }
    snprintf (core.dir, sizeof core.dir, "/tmp/csdk-XXXXXX");
    if (!mkdtemp (core.dir)) {
        perror ("mkdtemp");
        return 1;
    }
    snprintf (core.data, sizeof core.data, "%s/data", core.dir);
    snprintf (core.log, sizeof core.log, "%s/modcored.log", core.dir);
    snprintf (core.config, sizeof core.config, "%s/modcored.toml", core.dir);
    FILE *config = fopen (core.config, "w");
    fprintf (config, "[sandbox]\ntest_timeout_s = 20\nhealth_timeout_s = 15\nstop_grace_s = 3\n"
                     "\n[webhook]\nretry_base_ms = 200\nretry_cap_ms = 2000\n");
    fclose (config);
    core.port = s_free_port ();
    snprintf (core.base, sizeof core.base, "http://127.0.0.1:%d/api/v1", core.port);

    int rc = 0;
    if (!s_core_start (&core)) {
        s_check (false, "modcored starts (%s)", core.binary);
    } else if (strcmp (argv[1], "http") == 0)
        s_test_http (&core);
    else
        rc = s_test_native (&core);
    s_core_stop (&core);

    if (s_failed) {
        s_print_tail ("modcored", core.log, 60);
        const char *modules[] = {"csdk-a", "csdk-b", "csdk-h", "csdk-n", "sensor"};
        for (size_t i = 0; i < 5; i++) {
            char path[400];
            snprintf (path, sizeof path, "%s/logs/%s.log", core.data, modules[i]);
            s_print_tail (modules[i], path, 30);
        }
    }
    const char *keep = getenv ("CSDK_KEEP");
    if (keep && *keep == '1')
        printf ("kept %s\n", core.dir);
    else {
        char command[400];
        snprintf (command, sizeof command, "rm -rf '%s'", core.dir);
        s_run (command);
    }
    printf ("%d passed, %d failed%s\n", s_passed, s_failed, rc == SKIP ? " (native: skipped)" : "");
    curl_global_cleanup ();
    if (s_failed)
        return 1;
    return rc;
}
