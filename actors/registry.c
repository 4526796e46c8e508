/*  registry actor

    DESIGN. registry owns the module records (store keys mod/<name>, ModuleRecord)
    and runs every lifecycle change as a saga: a worker thread that goes through the
    steps in order, calling auth and sandbox with its own sockets, and reporting to
    this loop with RegistrySaga messages. The loop never blocks: it keeps the records,
    decides conflicts, writes records durably, and answers callers.

    Saga steps as seen by the loop:
        RESERVE  claim the name (and port) of a module for this saga: refused if another
                 saga holds the name, if a live record has it, or if a live record or
                 reservation holds the port. Nothing is written yet.
        COMMIT   write the record (sync) and keep it in memory.
        RELEASE  drop the reservation after a failure (nothing had been committed).
        DONE     the saga is over: answer its caller (if any) with the saga's verdict.
    One saga per module name at a time (start/stop/uninstall of a busy module -> 409),
    so a module's steps are never interleaved.

    Install: extract the ZIP into <data>/tmp (safe extraction), validate the manifest,
    RESERVE, move the tree into <data>/modules/<name>/ (rename: atomic), issue the
    token (auth) and a webhook secret, seal both under <data>/secure/modules/, run the
    sandbox test, launch, wait for /health, COMMIT, DONE. Any failure before COMMIT
    undoes what was done (token revoked, files removed, RELEASE), so a failed install
    leaves nothing. A crash mid-install leaves at most a staging dir or a module dir
    with no record; the registry removes both at start, before the gateway opens.

    Supervision is the sandbox's: it restarts always_on modules, stops idle on_demand
    ones, detects crash loops, and tells this loop with RegistryStatus notifications,
    each with a sequence number. A notification is applied (durably) only if its seq is
    newer than the record's status_seq; one that arrives while a saga holds the name is
    kept (the newest only) and applied when the saga is DONE, so a saga's COMMIT and a
    supervisor event never undo each other. The loop also starts scheduled modules at
    their cron times (its poller waits until the next one is due) and starts an
    on_demand module when the webhook actor has a delivery for it (RegistryWake).

    A start of an always_on module that fails while the module is wanted running (its
    port held by another program, a launch or /health that failed) is tried again, with
    the sandbox's restart backoff: restart_base_ms, doubling up to restart_max_ms; the
    record says FAILED with the reason and when the next attempt comes. The retries end
    when a start succeeds, or when the module is no longer wanted running (stopped,
    uninstalled). They live in memory: a core start tries such a module anyway (BOOT).

    Records are acknowledged only after they are durable. A record keeps no secret:
    the token's hash lives with auth, the plaintext token and the webhook secret only
    sealed in <data>/secure (needed to relaunch a module with the same token). */
#include "actors/registry.h"
#include "actors/webhook.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/actor.h"
#include "envelope_cases.h"
#include "core/context.h"
#include "core/cron.h"
#include "core/fsutil.h"
#include "core/manifest.h"
#include "core/perms.h"
#include "core/toml.h"
#include "core/token.h"
#include "core/zipx.h"

typedef enum { SAGA_INSTALL, SAGA_START, SAGA_STOP, SAGA_UNINSTALL, SAGA_BOOT } saga_kind_t;

typedef struct self_t self_t;

typedef struct {
    uint64_t id;               // key in self->sagas
    saga_kind_t kind;          // what it does
    mc_context_t *ctx;         // shared context
    const atomic_bool *cancel; // set when the actor stops: give up at the next call
    char *zip_path;            // INSTALL: the uploaded archive (deleted by the saga)
    Mc__ModuleRecord *record;  // START/STOP/UNINSTALL/BOOT: the record as it was (owned)
    mc_request_t *caller;      // who waits for DONE (owned by the loop), or NULL
    char *name;                // the module name once reserved (owned by the loop)
    pthread_t thread;          // the worker
} saga_t;

struct self_t {
    mc_context_t *ctx;        // shared context
    zsock_t *router;          // inproc://modcore.registry
    zhashx_t *records;        // name -> Mc__ModuleRecord * (every record, REMOVED too)
    zhashx_t *sagas;          // saga id (as string) -> saga_t *
    zhashx_t *busy;           // module name -> saga id string (names held by a saga)
    zhashx_t *reserved_ports; // port (string) -> module name, for sagas not committed yet
    zhashx_t *pending;        // module name -> Mc__RegistryStatus * that came while it was busy
    zhashx_t *retries;        // module name -> retry_t *: failed always_on starts to try again
    zsock_t *sandbox;         // DEALER to the sandbox (SandboxTouch notifications)
    atomic_bool cancel;       // tells workers to give up (shutdown)
    uint64_t next_saga_id;    // ids of sagas
    bool terminated;          // $TERM received
};

//  A failed start of an always_on module, to be tried again (see DESIGN).
typedef struct {
    int64_t due_ms;    // when (zclock_mono)
    uint32_t delay_ms; // the backoff that led to it: the next one is twice as long
} retry_t;

static void s_retry_free (void **item)
{
    free (*item);
    *item = NULL;
}

//  --- records ---------------------------------------------------------------------

static Mc__ModuleRecord *s_record_dup (const Mc__ModuleRecord *rec)
{
    size_t len = mc__module_record__get_packed_size (rec);
    uint8_t *buf = malloc (len ? len : 1);
    assert (buf);
    mc__module_record__pack (rec, buf);
    Mc__ModuleRecord *copy = mc__module_record__unpack (NULL, len, buf);
    free (buf);
    assert (copy);
    return copy;
}

static void s_record_free (void **item)
{
    if (*item)
        mc__module_record__free_unpacked (*item, NULL);
    *item = NULL;
}

//  Replaces rec's status reason with reason (owned). Unpacked messages point empty
//  strings at protobuf-c's shared empty string, which must not be freed.
static void s_set_reason (Mc__ModuleRecord *rec, char *reason)
{
    if (rec->status_reason && rec->status_reason != protobuf_c_empty_string)
        free (rec->status_reason);
    rec->status_reason = reason;
}

static bool s_live (const Mc__ModuleRecord *rec)
{
    return rec->status != MC__MODULE_STATUS__MODULE_REMOVED;
}

//  Writes rec durably and keeps a copy. Returns 0 or -1.
static int s_commit (self_t *self, const Mc__ModuleRecord *rec)
{
    size_t len = mc__module_record__get_packed_size (rec);
    uint8_t *buf = malloc (len ? len : 1);
    assert (buf);
    mc__module_record__pack (rec, buf);
    char key[128];
    snprintf (key, sizeof key, "mod/%s", rec->name);
    int rc = mc_store_put (self->ctx->store, key, buf, len, true);
    free (buf);
    if (rc == 0)
        zhashx_update (self->records, rec->name, s_record_dup (rec));
    return rc;
}

static int s_load_one (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    self_t *self = arg;
    Mc__ModuleRecord *rec = mc__module_record__unpack (NULL, vlen, value);
    if (!rec || !rec->name || strcmp (rec->name, key + 4) != 0) {
        zsys_warning ("registry: skipped an unreadable record %s", key);
        if (rec)
            mc__module_record__free_unpacked (rec, NULL);
        return 0;
    }
    zhashx_update (self->records, rec->name, rec);
    return 0;
}

//  --- saga worker (its own thread; never touches self) ------------------------------

typedef struct {
    saga_t *saga;      // the saga (read-only here, but for name)
    zsock_t *registry; // DEALER to this actor's loop
    zsock_t *auth;     // DEALER to auth
    zsock_t *sandbox;  // DEALER to sandbox
    zsock_t *eventbus; // DEALER to eventbus (module.loaded / module.unloaded)
    zsock_t *webhook;  // DEALER to webhook (signing secrets)
    zsock_t *storage;  // DEALER to storage (the module's database, dropped on uninstall)
} worker_t;

//  Reports a step; returns the loop's reply (caller frees) or NULL if the actor is
//  stopping.
static mc_env_t *s_step (worker_t *w, Mc__RegistrySaga__Step step, const Mc__ModuleRecord *rec)
{
    Mc__RegistrySaga msg = MC__REGISTRY_SAGA__INIT;
    msg.step = step;
    msg.saga_id = w->saga->id;
    msg.module = (Mc__ModuleRecord *)rec;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_SAGA;
    env.registry_saga = &msg;
    return mc_call_cancellable (w->registry, &env, 30000, w->saga->cancel);
}

//  Reports the end of the saga to the loop: status, error, detail, problems, record.
static void s_done (worker_t *w, Mc__Status status, const char *code, const char *detail,
                    json_t *problems, const Mc__ModuleRecord *rec)
{
    Mc__RegistrySaga msg = MC__REGISTRY_SAGA__INIT;
    msg.step = MC__REGISTRY_SAGA__STEP__DONE;
    msg.saga_id = w->saga->id;
    msg.module = (Mc__ModuleRecord *)rec;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.status = status;
    env.error = (char *)(code ? code : "");
    env.detail = (char *)(detail ? detail : "");
    size_t n = problems ? json_array_size (problems) : 0;
    char *items[n ? n : 1];
    for (size_t i = 0; i < n; i++)
        items[i] = (char *)json_string_value (json_array_get (problems, i));
    env.n_problems = n;
    env.problems = items;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_SAGA;
    env.registry_saga = &msg;
    mc_notify (w->registry, &env);
}

//  Calls an actor; on no answer (stopping, or a stuck actor) returns NULL.
static mc_env_t *s_ask (worker_t *w, zsock_t *to, mc_env_t *req, int timeout_ms)
{
    return mc_call_cancellable (to, req, timeout_ms, w->saga->cancel);
}

static char *s_path (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
static char *s_path (const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char *path = NULL;
    if (vasprintf (&path, fmt, args) < 0)
        abort ();
    va_end (args);
    return path;
}

//  Credentials file: "<token>\n<webhook secret>\n", sealed.
static char *s_cred_path (mc_context_t *ctx, const char *name)
{
    return s_path ("%s/secure/modules/%s.cred", ctx->config->data_dir, name);
}

static int s_cred_load (mc_context_t *ctx, const char *name, char *token, char *secret)
{
    char *path = s_cred_path (ctx, name);
    size_t len = 0;
    char *plain = mc_seal_read (ctx->seal_key, path, &len);
    free (path);
    int rc = -1;
    if (plain && len == MC_TOKEN_LEN + 1 + MC_SECRET_LEN + 1) {
        memcpy (token, plain, MC_TOKEN_LEN);
        token[MC_TOKEN_LEN] = 0;
        memcpy (secret, plain + MC_TOKEN_LEN + 1, MC_SECRET_LEN);
        secret[MC_SECRET_LEN] = 0;
        rc = 0;
    }
    if (plain) {
        sodium_memzero (plain, len);
        free (plain);
    }
    return rc;
}

static int s_cred_store (mc_context_t *ctx, const char *name, const char *token, const char *secret)
{
    char plain[MC_TOKEN_LEN + MC_SECRET_LEN + 3];
    snprintf (plain, sizeof plain, "%s\n%s\n", token, secret);
    char *path = s_cred_path (ctx, name);
    int rc = mc_seal_write (ctx->seal_key, path, plain, strlen (plain));
    sodium_memzero (plain, sizeof plain);
    free (path);
    return rc;
}

//  The process spec for a module: its entry (or argv), directory, log and environment.
//  The env strings are owned by the returned array (free with s_spec_free).
static Mc__SandboxSpec *s_spec_new (mc_context_t *ctx, const Mc__ModuleRecord *rec,
                                    const char *token, const char *secret)
{
    Mc__SandboxSpec *spec = calloc (1, sizeof *spec);
    assert (spec);
    mc__sandbox_spec__init (spec);
    const mc_config_t *cfg = ctx->config;
    spec->name = strdup (rec->name);
    spec->dir = s_path ("%s/modules/%s", cfg->data_dir, rec->name);
    spec->log_path = s_path ("%s/logs/%s.log", cfg->data_dir, rec->name);
    spec->port = rec->port;
    spec->health_timeout_ms = cfg->health_timeout_ms;
    spec->memory_mb = rec->memory_mb;
    spec->cpu = rec->cpu;
    spec->runtime_mode = strdup (rec->runtime_mode);
    spec->network_none = rec->network && strcmp (rec->network, "none") == 0;
    spec->n_argv = rec->n_entry;
    spec->argv = calloc (rec->n_entry + 1, sizeof (char *));
    for (size_t i = 0; i < rec->n_entry; i++)
        spec->argv[i] = strdup (rec->entry[i]);
    const char *host = strcmp (cfg->listen_host, "0.0.0.0") == 0 ? "127.0.0.1" : cfg->listen_host;
    char standard[100];
    mc_webhook_standard_secret (secret, standard);
    char *env[] = {
        s_path ("SELENA_MODULE_TOKEN=%s", token),
        s_path ("MODULE_TOKEN=%s", token),
        s_path ("SELENA_WEBHOOK_SECRET=%s", secret),
        s_path ("MODCORE_STANDARD_WEBHOOK_SECRET=%s", standard),
        s_path ("SELENA_CORE_URL=http://%s:%d/api/v1", host, ctx->gateway_port),
        s_path ("SELENA_CORE_API=http://%s:%d/api/v1", host, ctx->gateway_port),
        s_path ("SELENA_MODULE_NAME=%s", rec->name),
        s_path ("SELENA_MODULE_PORT=%u", rec->port),
        s_path ("SELENA_INSTALL_PATH=%s", spec->dir),
        s_path ("MODCORE_SDK_ENDPOINT=%s", cfg->sdk_endpoint),
        s_path ("HOME=%s/data", spec->dir), // the one writable place of its dir
        strdup ("PATH=/usr/local/bin:/usr/bin:/bin"),
        strdup ("LANG=C.UTF-8"),
        strdup ("TMPDIR=/tmp"),
        strdup ("PYTHONDONTWRITEBYTECODE=1"),
        strdup ("PYTHONUNBUFFERED=1"),
    };
    spec->n_env = sizeof env / sizeof env[0];
    spec->env = calloc (spec->n_env, sizeof (char *));
    memcpy (spec->env, env, sizeof env);
    return spec;
}

static void s_spec_free (Mc__SandboxSpec **spec_p)
{
    Mc__SandboxSpec *spec = *spec_p;
    if (!spec)
        return;
    for (size_t i = 0; i < spec->n_env; i++) {
        sodium_memzero (spec->env[i], strlen (spec->env[i]));
        free (spec->env[i]);
    }
    for (size_t i = 0; i < spec->n_argv; i++)
        free (spec->argv[i]);
    free (spec->env);
    free (spec->argv);
    free (spec->name);
    free (spec->dir);
    free (spec->log_path);
    free (spec->runtime_mode);
    free (spec);
    *spec_p = NULL;
}

//  Publishes module.loaded / module.unloaded (blvm's ModuleLoaded/ModuleUnloaded) as
//  the core. A notification: queued durably by the bus like any event.
static void s_publish_lifecycle (worker_t *w, const char *type, const Mc__ModuleRecord *rec)
{
    mc_publish_core_event (w->eventbus, type,
                           json_pack ("{s:s, s:s, s:s}", "module_id", rec->name, "module_name",
                                      rec->name, "version", rec->version));
}

//  Gives the webhook actor the module's signing secret (before the module starts, so
//  deliveries can begin as soon as it answers).
static void s_share_secret (worker_t *w, const char *name, const char *secret)
{
    Mc__WebhookSecret msg = MC__WEBHOOK_SECRET__INIT;
    msg.module = (char *)name;
    msg.secret = (char *)secret;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_WEBHOOK_SECRET;
    env.webhook_secret = &msg;
    mc_env_free (s_ask (w, w->webhook, &env, 10000));
}

//  Launches the module and waits for health. Fills rec's status, pid, reason.
static void s_launch (worker_t *w, Mc__ModuleRecord *rec, const char *token, const char *secret)
{
    mc_context_t *ctx = w->saga->ctx;
    s_share_secret (w, rec->name, secret);
    Mc__SandboxSpec *spec = s_spec_new (ctx, rec, token, secret);
    Mc__SandboxLaunch launch = MC__SANDBOX_LAUNCH__INIT;
    launch.spec = spec;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_SANDBOX_LAUNCH;
    req.sandbox_launch = &launch;
    mc_env_t *reply =
        s_ask (w, w->sandbox, &req,
               (int)(ctx->config->health_timeout_ms + ctx->config->stop_grace_ms + 10000));
    s_spec_free (&spec);
    int64_t now = mc_time_unix ();
    rec->updated_at = now;
    if (reply && reply->body_case == MC__ENVELOPE__BODY_SANDBOX_RESULT)
        rec->status_seq = reply->sandbox_result->seq;
    rec->restarts = 0;
    if (reply && reply->status == MC__STATUS__STATUS_OK &&
        reply->body_case == MC__ENVELOPE__BODY_SANDBOX_RESULT) {
        rec->status = MC__MODULE_STATUS__MODULE_RUNNING;
        rec->pid = reply->sandbox_result->pid;
        rec->started_at = now;
        s_set_reason (rec, strdup (""));
    } else {
        rec->status = MC__MODULE_STATUS__MODULE_FAILED;
        rec->pid = 0;
        s_set_reason (
            rec, s_path ("start failed: %s", reply ? reply->detail : "no answer from the sandbox"));
        zsys_warning ("registry: %s: %s", rec->name, rec->status_reason);
    }
    mc_env_free (reply);
}

//  Asks sandbox to stop the module's process (no-op if none).
static int s_stop_process (worker_t *w, const char *name, uint64_t *seq)
{
    Mc__SandboxStop stop = MC__SANDBOX_STOP__INIT;
    stop.name = (char *)name;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_SANDBOX_STOP;
    req.sandbox_stop = &stop;
    mc_env_t *reply = s_ask (w, w->sandbox, &req, (int)w->saga->ctx->config->stop_grace_ms + 10000);
    int rc = reply && reply->status == MC__STATUS__STATUS_OK ? 0 : -1;
    if (seq && reply && reply->body_case == MC__ENVELOPE__BODY_SANDBOX_RESULT)
        *seq = reply->sandbox_result->seq;
    mc_env_free (reply);
    return rc;
}

static int s_revoke (worker_t *w, const char *name)
{
    Mc__AuthRevoke revoke = MC__AUTH_REVOKE__INIT;
    revoke.principal = (char *)name;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_AUTH_REVOKE;
    req.auth_revoke = &revoke;
    mc_env_t *reply = s_ask (w, w->auth, &req, 10000);
    int rc = reply && reply->status == MC__STATUS__STATUS_OK ? 0 : -1;
    mc_env_free (reply);
    return rc;
}

//  Registers token (given) or a new one (token empty: filled in) for rec.
static int s_issue (worker_t *w, const Mc__ModuleRecord *rec, char *token)
{
    Mc__AuthIssue issue = MC__AUTH_ISSUE__INIT;
    issue.principal = rec->name;
    issue.kind = MC__PRINCIPAL_KIND__PRINCIPAL_MODULE;
    issue.permissions = rec->permissions;
    issue.system = strcmp (rec->type, "SYSTEM") == 0;
    issue.token = token;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_AUTH_ISSUE;
    req.auth_issue = &issue;
    mc_env_t *reply = s_ask (w, w->auth, &req, 10000);
    int rc = -1;
    if (reply && reply->status == MC__STATUS__STATUS_OK &&
        reply->body_case == MC__ENVELOPE__BODY_AUTH_ISSUED &&
        strlen (reply->auth_issued->token) == MC_TOKEN_LEN) {
        memcpy (token, reply->auth_issued->token, MC_TOKEN_LEN + 1);
        sodium_memzero (reply->auth_issued->token, MC_TOKEN_LEN);
        rc = 0;
    }
    mc_env_free (reply);
    return rc;
}

//  Undoes an install after RESERVE: token, credentials, files, reservation.
static void s_install_undo (worker_t *w, const Mc__ModuleRecord *rec, const char *dest)
{
    s_revoke (w, rec->name);
    char key[128];
    snprintf (key, sizeof key, "cli/%s", rec->name); // a spec it registered during its test run
    mc_store_delete (w->saga->ctx->store, key, true);
    char *cred = s_cred_path (w->saga->ctx, rec->name);
    unlink (cred);
    free (cred);
    if (dest)
        mc_fs_rmtree (dest);
    mc_env_free (s_step (w, MC__REGISTRY_SAGA__STEP__RELEASE, rec));
}

//  The directory holding manifest.json: the archive root, or its only top-level
//  directory (archives made by zipping a folder).
static char *s_find_root (const char *tree)
{
    char *manifest = s_path ("%s/manifest.json", tree);
    bool here = mc_fs_exists (manifest);
    free (manifest);
    if (here)
        return strdup (tree);
    DIR *dir = opendir (tree);
    if (!dir)
        return strdup (tree);
    char *only = NULL;
    int count = 0;
    struct dirent *e;
    while ((e = readdir (dir)))
        if (strcmp (e->d_name, ".") && strcmp (e->d_name, "..") && ++count == 1)
            only = s_path ("%s/%s", tree, e->d_name);
    closedir (dir);
    struct stat st;
    if (count == 1 && lstat (only, &st) == 0 && S_ISDIR (st.st_mode))
        return only;
    free (only);
    return strdup (tree);
}

//  A new record from a validated manifest.
static Mc__ModuleRecord *s_record_from_manifest (const mc_manifest_t *m)
{
    Mc__ModuleRecord *rec = calloc (1, sizeof *rec);
    assert (rec);
    mc__module_record__init (rec);
    rec->name = strdup (m->name);
    rec->version = strdup (m->version);
    rec->type = strdup (m->type);
    rec->api_version = strdup (m->api_version);
    rec->ui_profile = strdup (m->ui_profile ? m->ui_profile : "");
    rec->runtime_mode = strdup (m->runtime_mode);
    rec->description = strdup (m->description ? m->description : "");
    rec->author = strdup (m->author ? m->author : "");
    rec->port = (uint32_t)m->port;
    rec->permissions = m->permissions;
    size_t n = 0;
    while (m->entry && m->entry[n])
        n++;
    rec->n_entry = n;
    rec->entry = calloc (n + 1, sizeof (char *));
    for (size_t i = 0; i < n; i++)
        rec->entry[i] = strdup (m->entry[i]);
    rec->manifest_json = json_dumps (m->json, JSON_COMPACT | JSON_SORT_KEYS);
    rec->memory_mb = m->memory_mb;
    rec->cpu = m->cpu;
    rec->network = strdup (m->network ? m->network : "loopback");
    rec->schedule = strdup (m->schedule ? m->schedule : "");
    rec->status = MC__MODULE_STATUS__MODULE_INSTALLING;
    rec->status_reason = strdup ("");
    rec->installed_at = rec->updated_at = mc_time_unix ();
    rec->want_running = true;
    return rec;
}

//  Runs the install test in the sandbox. Returns the reply (caller frees) or NULL.
static mc_env_t *s_sandbox_test (worker_t *w, const mc_manifest_t *m, const Mc__ModuleRecord *rec,
                                 const char *token, const char *secret)
{
    mc_context_t *ctx = w->saga->ctx;
    Mc__SandboxSpec *spec = s_spec_new (ctx, rec, token, secret);
    Mc__SandboxTest test = MC__SANDBOX_TEST__INIT;
    test.spec = spec;
    test.timeout_ms = ctx->config->sandbox_test_ms;
    char **saved_argv = spec->argv;
    size_t saved_n = spec->n_argv;
    if (m->test) {
        size_t n = 0;
        while (m->test[n])
            n++;
        spec->argv = m->test;
        spec->n_argv = n;
        test.wait_exit = true;
    }
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_SANDBOX_TEST;
    req.sandbox_test = &test;
    mc_env_t *reply =
        s_ask (w, w->sandbox, &req,
               (int)(ctx->config->sandbox_test_ms + ctx->config->stop_grace_ms + 10000));
    spec->argv = saved_argv;
    spec->n_argv = saved_n;
    s_spec_free (&spec);
    return reply;
}

static void s_saga_install (worker_t *w)
{
    mc_context_t *ctx = w->saga->ctx;
    const mc_config_t *cfg = ctx->config;
    char *stage = s_path ("%s/tmp/stage-XXXXXX", cfg->data_dir);
    char *tree = NULL, *root = NULL, *dest = NULL;
    mc_manifest_t *manifest = NULL;
    Mc__ModuleRecord *rec = NULL;
    json_t *problems = NULL;
    char token[MC_TOKEN_LEN + 1] = "", secret[MC_SECRET_LEN + 1] = "";

    if (!mkdtemp (stage)) {
        s_done (w, MC__STATUS__STATUS_INTERNAL, "IO_ERROR", "cannot create a staging directory",
                NULL, NULL);
        goto cleanup;
    }
    tree = s_path ("%s/m", stage);
    mc_error_t err = {"", ""};
    if (mc_zipx_extract (w->saga->zip_path, tree, &cfg->zip_limits, &err) != 0) {
        bool size = !strcmp (err.code, "ZIP_TOO_LARGE") || !strcmp (err.code, "ZIP_BOMB") ||
                    !strcmp (err.code, "ZIP_TOO_MANY_ENTRIES");
        bool ours = !strcmp (err.code, "IO_ERROR");
        s_done (w,
                ours ? MC__STATUS__STATUS_INTERNAL
                     : (size ? MC__STATUS__STATUS_TOO_LARGE : MC__STATUS__STATUS_BAD_REQUEST),
                err.code, err.detail, NULL, NULL);
        goto cleanup;
    }
    unlink (w->saga->zip_path);
    root = s_find_root (tree);
    manifest = mc_manifest_load_dir (root, &problems);
    if (!manifest) {
        char detail[128];
        snprintf (detail, sizeof detail, "manifest.json is not valid (%zu problem%s)",
                  json_array_size (problems), json_array_size (problems) == 1 ? "" : "s");
        s_done (w, MC__STATUS__STATUS_INVALID, "MANIFEST_INVALID", detail, problems, NULL);
        goto cleanup;
    }
    rec = s_record_from_manifest (manifest);
    mc_env_t *reply = s_step (w, MC__REGISTRY_SAGA__STEP__RESERVE, rec);
    if (!reply || reply->status != MC__STATUS__STATUS_OK) {
        s_done (w, reply ? reply->status : MC__STATUS__STATUS_UNAVAILABLE,
                reply ? reply->error : "SHUTTING_DOWN",
                reply ? reply->detail : "the core is stopping", NULL, NULL);
        mc_env_free (reply);
        goto cleanup;
    }
    mc_env_free (reply);

    dest = s_path ("%s/modules/%s", cfg->data_dir, rec->name);
    if (mc_fs_exists (dest))
        mc_fs_rmtree (dest); // leftovers of a removed module of the same name
    if (rename (root, dest) != 0) {
        s_done (w, MC__STATUS__STATUS_INTERNAL, "IO_ERROR", "cannot move the module into place",
                NULL, NULL);
        s_install_undo (w, rec, NULL);
        goto cleanup;
    }
    //  Its database dir exists from the start, so the sandbox always hides it (launch.c).
    char *db_dir = s_path ("%s/db", dest);
    if (mkdir (db_dir, 0700) != 0 && errno != EEXIST)
        zsys_warning ("registry: cannot create %s: %s", db_dir, strerror (errno));
    free (db_dir);
    mc_secret_generate (secret);
    if (s_issue (w, rec, token) != 0 || s_cred_store (ctx, rec->name, token, secret) != 0) {
        s_done (w, MC__STATUS__STATUS_INTERNAL, "CREDENTIALS_FAILED",
                "cannot issue or store the module's credentials", NULL, NULL);
        s_install_undo (w, rec, dest);
        goto cleanup;
    }
    reply = s_sandbox_test (w, manifest, rec, token, secret);
    if (!reply || reply->status != MC__STATUS__STATUS_OK) {
        Mc__SandboxResult *result = reply && reply->body_case == MC__ENVELOPE__BODY_SANDBOX_RESULT
                                        ? reply->sandbox_result
                                        : NULL;
        char *detail = s_path ("sandbox test failed: %s",
                               reply ? reply->detail : "no answer from the sandbox");
        Mc__RegistrySaga msg = MC__REGISTRY_SAGA__INIT;
        msg.step = MC__REGISTRY_SAGA__STEP__DONE;
        msg.saga_id = w->saga->id;
        mc_env_t done = MC__ENVELOPE__INIT;
        done.status = MC__STATUS__STATUS_BAD_REQUEST;
        done.error = "SANDBOX_TEST_FAILED";
        done.detail = detail;
        done.output = result ? result->output : "";
        done.body_case = MC__ENVELOPE__BODY_REGISTRY_SAGA;
        done.registry_saga = &msg;
        s_install_undo (w, rec, dest);
        mc_notify (w->registry, &done);
        free (detail);
        mc_env_free (reply);
        goto cleanup;
    }
    mc_env_free (reply);

    if (streq (rec->runtime_mode, "always_on"))
        s_launch (w, rec, token, secret);
    else {
        //  Started on demand or by its schedule, not now (the test run proved it starts).
        s_share_secret (w, rec->name, secret);
        rec->status = MC__MODULE_STATUS__MODULE_STOPPED;
        s_set_reason (rec, strdup (streq (rec->runtime_mode, "on_demand")
                                       ? "on_demand: starts on its first event or POST start"
                                       : "scheduled: starts at its schedule"));
    }
    reply = s_step (w, MC__REGISTRY_SAGA__STEP__COMMIT, rec);
    if (!reply || reply->status != MC__STATUS__STATUS_OK) {
        s_stop_process (w, rec->name, NULL);
        s_install_undo (w, rec, dest);
        s_done (w, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot store the module record",
                NULL, NULL);
        mc_env_free (reply);
        goto cleanup;
    }
    mc_env_free (reply);
    zsys_info ("registry: installed %s %s (%s)", rec->name, rec->version,
               rec->status == MC__MODULE_STATUS__MODULE_RUNNING   ? "running"
               : rec->status == MC__MODULE_STATUS__MODULE_STOPPED ? "waits to be started"
                                                                  : "failed to start");
    if (rec->status == MC__MODULE_STATUS__MODULE_RUNNING)
        s_publish_lifecycle (w, "module.loaded", rec);
    s_done (w, MC__STATUS__STATUS_OK, NULL, NULL, NULL, rec);

cleanup:
    sodium_memzero (token, sizeof token);
    sodium_memzero (secret, sizeof secret);
    unlink (w->saga->zip_path);
    if (stage)
        mc_fs_rmtree (stage);
    json_decref (problems);
    mc_manifest_destroy (&manifest);
    if (rec)
        mc__module_record__free_unpacked (rec, NULL);
    free (stage);
    free (tree);
    free (root);
    free (dest);
}

//  START and BOOT: launch with the module's own token, record the outcome.
static void s_saga_start (worker_t *w)
{
    Mc__ModuleRecord *rec = s_record_dup (w->saga->record);
    char token[MC_TOKEN_LEN + 1] = "", secret[MC_SECRET_LEN + 1] = "";
    rec->want_running = true;
    if (s_cred_load (w->saga->ctx, rec->name, token, secret) != 0 || s_issue (w, rec, token) != 0) {
        rec->status = MC__MODULE_STATUS__MODULE_FAILED;
        s_set_reason (rec, strdup ("start failed: the module's credentials are missing or "
                                   "unreadable; reinstall it"));
        rec->pid = 0;
    } else
        s_launch (w, rec, token, secret);
    sodium_memzero (token, sizeof token);
    sodium_memzero (secret, sizeof secret);
    mc_env_t *reply = s_step (w, MC__REGISTRY_SAGA__STEP__COMMIT, rec);
    bool stored = reply && reply->status == MC__STATUS__STATUS_OK;
    mc_env_free (reply);
    if (!stored)
        s_done (w, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot store the module record",
                NULL, rec);
    else if (rec->status != MC__MODULE_STATUS__MODULE_RUNNING)
        s_done (w, MC__STATUS__STATUS_UNAVAILABLE, "MODULE_START_FAILED", rec->status_reason, NULL,
                rec);
    else {
        zsys_info ("registry: started %s", rec->name);
        s_publish_lifecycle (w, "module.loaded", rec);
        s_done (w, MC__STATUS__STATUS_OK, NULL, NULL, NULL, rec);
    }
    mc__module_record__free_unpacked (rec, NULL);
}

static void s_saga_stop (worker_t *w)
{
    Mc__ModuleRecord *rec = s_record_dup (w->saga->record);
    uint64_t seq = 0;
    if (s_stop_process (w, rec->name, &seq) != 0) {
        s_done (w, MC__STATUS__STATUS_INTERNAL, "STOP_FAILED", "the sandbox did not stop it", NULL,
                NULL);
        mc__module_record__free_unpacked (rec, NULL);
        return;
    }
    rec->status = MC__MODULE_STATUS__MODULE_STOPPED;
    rec->want_running = false;
    rec->pid = 0;
    if (seq > rec->status_seq)
        rec->status_seq = seq;
    rec->updated_at = mc_time_unix ();
    s_set_reason (rec, strdup ("stopped by the operator"));
    mc_env_t *reply = s_step (w, MC__REGISTRY_SAGA__STEP__COMMIT, rec);
    if (reply && reply->status == MC__STATUS__STATUS_OK) {
        zsys_info ("registry: stopped %s", rec->name);
        s_publish_lifecycle (w, "module.unloaded", rec);
        s_done (w, MC__STATUS__STATUS_OK, NULL, NULL, NULL, rec);
    } else
        s_done (w, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot store the module record",
                NULL, NULL);
    mc_env_free (reply);
    mc__module_record__free_unpacked (rec, NULL);
}

static void s_saga_uninstall (worker_t *w)
{
    mc_context_t *ctx = w->saga->ctx;
    Mc__ModuleRecord *rec = s_record_dup (w->saga->record);
    //  Token first: from this moment the module's calls are refused.
    if (s_revoke (w, rec->name) != 0) {
        s_done (w, MC__STATUS__STATUS_INTERNAL, "REVOKE_FAILED", "cannot revoke the token", NULL,
                NULL);
        mc__module_record__free_unpacked (rec, NULL);
        return;
    }
    s_stop_process (w, rec->name, NULL);
    Mc__WebhookForget forget = MC__WEBHOOK_FORGET__INIT;
    forget.module = rec->name;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_WEBHOOK_FORGET;
    env.webhook_forget = &forget;
    mc_env_free (s_ask (w, w->webhook, &env, 10000));
    //  Its database goes with it; storage closes the handle before the files go.
    Mc__StorageDrop drop = MC__STORAGE_DROP__INIT;
    drop.module = rec->name;
    env.body_case = MC__ENVELOPE__BODY_STORAGE_DROP;
    env.storage_drop = &drop;
    mc_env_t *dropped = s_ask (w, w->storage, &env, 10000);
    if (!dropped || dropped->status != MC__STATUS__STATUS_OK)
        zsys_warning ("registry: storage did not drop the database of %s; removing its files",
                      rec->name);
    mc_env_free (dropped);
    char *dir = s_path ("%s/modules/%s", ctx->config->data_dir, rec->name);
    char *cred = s_cred_path (ctx, rec->name);
    unlink (cred);
    mc_fs_rmtree (dir);
    char cfg_key[128];
    snprintf (cfg_key, sizeof cfg_key, "cfg/%s", rec->name);
    mc_store_delete (ctx->store, cfg_key, true); // its saved config goes with it
    snprintf (cfg_key, sizeof cfg_key, "cli/%s", rec->name);
    mc_store_delete (ctx->store, cfg_key, true); // and its CLI spec
    rec->status = MC__MODULE_STATUS__MODULE_REMOVED;
    rec->want_running = false;
    rec->pid = 0;
    rec->updated_at = mc_time_unix ();
    s_set_reason (rec, strdup ("uninstalled"));
    mc_env_t *reply = s_step (w, MC__REGISTRY_SAGA__STEP__COMMIT, rec);
    if (reply && reply->status == MC__STATUS__STATUS_OK) {
        zsys_info ("registry: uninstalled %s", rec->name);
        s_publish_lifecycle (w, "module.unloaded", rec);
        s_done (w, MC__STATUS__STATUS_OK, NULL, NULL, NULL, rec);
    } else
        s_done (w, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot store the module record",
                NULL, NULL);
    mc_env_free (reply);
    free (dir);
    free (cred);
    mc__module_record__free_unpacked (rec, NULL);
}

static void *s_worker_main (void *arg)
{
    worker_t w = {arg,
                  mc_client_new ("registry"),
                  mc_client_new ("auth"),
                  mc_client_new ("sandbox"),
                  mc_client_new ("eventbus"),
                  mc_client_new ("webhook"),
                  mc_client_new ("storage")};
    switch (w.saga->kind) {
        case SAGA_INSTALL:
            s_saga_install (&w);
            break;
        case SAGA_START:
        case SAGA_BOOT:
            s_saga_start (&w);
            break;
        case SAGA_STOP:
            s_saga_stop (&w);
            break;
        case SAGA_UNINSTALL:
            s_saga_uninstall (&w);
            break;
    }
    zsock_destroy (&w.registry);
    zsock_destroy (&w.auth);
    zsock_destroy (&w.sandbox);
    zsock_destroy (&w.eventbus);
    zsock_destroy (&w.webhook);
    zsock_destroy (&w.storage);
    return NULL;
}

//  --- the loop ------------------------------------------------------------------------

static void s_saga_destroy (void **item)
{
    saga_t *saga = *item;
    if (!saga)
        return;
    free (saga->zip_path);
    free (saga->name);
    if (saga->record)
        mc__module_record__free_unpacked (saga->record, NULL);
    mc_request_destroy (&saga->caller);
    free (saga);
    *item = NULL;
}

static void s_apply_status (self_t *self, const Mc__RegistryStatus *st);

//  Starts a saga in its own thread. name (may be NULL for installs) is marked busy.
static void s_saga_start_thread (self_t *self, saga_kind_t kind, const char *name,
                                 const Mc__ModuleRecord *record, char *zip_path,
                                 mc_request_t *caller)
{
    saga_t *saga = calloc (1, sizeof *saga);
    assert (saga);
    saga->id = ++self->next_saga_id;
    saga->kind = kind;
    saga->ctx = self->ctx;
    saga->cancel = &self->cancel;
    saga->zip_path = zip_path;
    saga->record = record ? s_record_dup (record) : NULL;
    saga->caller = caller;
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, saga->id);
    if (name) {
        saga->name = strdup (name);
        zhashx_insert (self->busy, name, strdup (key));
    }
    zhashx_insert (self->sagas, key, saga);
    if (pthread_create (&saga->thread, NULL, s_worker_main, saga) != 0) {
        zsys_error ("registry: cannot start a worker thread");
        if (caller)
            mc_reply_error (self->router, caller->routing_id, caller->env->request_id,
                            MC__STATUS__STATUS_INTERNAL, "NO_THREAD", "cannot start the operation");
        if (name)
            zhashx_delete (self->busy, name);
        zhashx_delete (self->sagas, key);
    }
}

//  Releases what a saga holds: its name and any reserved port.
static void s_release (self_t *self, saga_t *saga)
{
    if (!saga->name)
        return;
    zhashx_delete (self->busy, saga->name);
    zlistx_t *ports = zhashx_keys (self->reserved_ports);
    for (char *port = zlistx_first (ports); port; port = zlistx_next (ports))
        if (streq (zhashx_lookup (self->reserved_ports, port), saga->name))
            zhashx_delete (self->reserved_ports, port);
    zlistx_destroy (&ports);
    free (saga->name);
    saga->name = NULL;
}

static void s_reply_record (self_t *self, mc_request_t *req, const Mc__ModuleRecord *rec)
{
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_MODULE;
    reply.module = (Mc__ModuleRecord *)rec;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

//  RESERVE: the name must be free and the port unused.
static void s_on_reserve (self_t *self, mc_request_t *req, saga_t *saga, Mc__ModuleRecord *rec)
{
    Mc__ModuleRecord *have = zhashx_lookup (self->records, rec->name);
    if (zhashx_lookup (self->busy, rec->name) || (have && s_live (have))) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_CONFLICT, "ALREADY_INSTALLED",
                        "a module named %s is already installed (uninstall it first)", rec->name);
        return;
    }
    if (rec->port) {
        char port[16];
        snprintf (port, sizeof port, "%u", rec->port);
        const char *holder = zhashx_lookup (self->reserved_ports, port);
        for (Mc__ModuleRecord *r = zhashx_first (self->records); r && !holder;
             r = zhashx_next (self->records))
            if (s_live (r) && r->port == rec->port)
                holder = r->name;
        if (holder) {
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_CONFLICT, "PORT_IN_USE",
                            "port %u is already used by module %s", rec->port, holder);
            return;
        }
    }
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, saga->id);
    zhashx_insert (self->busy, rec->name, strdup (key));
    saga->name = strdup (rec->name);
    //  The reservation borrows the saga's copy of the name, which lives until s_release
    //  (rec belongs to this request and is freed when it has been answered).
    if (rec->port) {
        char port[16];
        snprintf (port, sizeof port, "%u", rec->port);
        zhashx_insert (self->reserved_ports, port, saga->name);
    }
    //  Shown (as INSTALLING) while the install runs: the module may ask who it is
    //  during its own test run and launch, before the record is committed.
    if (saga->record)
        mc__module_record__free_unpacked (saga->record, NULL);
    saga->record = s_record_dup (rec);
    mc_env_t reply = MC__ENVELOPE__INIT;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

//  A start's outcome, about to be committed: a failed always_on module that is wanted
//  running gets its next attempt (the backoff doubles from the last one), said in the
//  record's reason (so the record is written once, reason and all); any other outcome
//  ends its retries.
static void s_retry_plan (self_t *self, Mc__ModuleRecord *rec)
{
    retry_t *retry = zhashx_lookup (self->retries, rec->name);
    if (!rec->want_running || !streq (rec->runtime_mode, "always_on") ||
        rec->status != MC__MODULE_STATUS__MODULE_FAILED) {
        if (retry)
            zhashx_delete (self->retries, rec->name);
        return;
    }
    const mc_config_t *cfg = self->ctx->config;
    if (!retry) {
        retry = calloc (1, sizeof *retry);
        assert (retry);
        zhashx_insert (self->retries, rec->name, retry);
    } else
        retry->delay_ms =
            retry->delay_ms >= cfg->restart_max_ms / 2 ? cfg->restart_max_ms : retry->delay_ms * 2;
    if (retry->delay_ms == 0)
        retry->delay_ms = cfg->restart_base_ms ? cfg->restart_base_ms : 1;
    retry->due_ms = zclock_mono () + retry->delay_ms;
    s_set_reason (
        rec, s_path ("%s (next attempt in %.1f s)", rec->status_reason, retry->delay_ms / 1000.0));
    zsys_info ("registry: %s: next start attempt in %u ms", rec->name, retry->delay_ms);
}

//  Starts the failed always_on modules whose next attempt is due; returns ms until the
//  next one is, or -1 without any.
static int s_run_retries (self_t *self)
{
    int64_t now = zclock_mono (), wait = -1;
    zlistx_t *names = zhashx_keys (self->retries);
    for (char *name = zlistx_first (names); name; name = zlistx_next (names)) {
        retry_t *retry = zhashx_lookup (self->retries, name);
        Mc__ModuleRecord *rec = zhashx_lookup (self->records, name);
        if (!rec || !s_live (rec) || !rec->want_running ||
            rec->status != MC__MODULE_STATUS__MODULE_FAILED) {
            zhashx_delete (self->retries, name); // stopped, uninstalled, or back already
            continue;
        }
        if (retry->due_ms <= now && zhashx_lookup (self->busy, name))
            retry->due_ms = now + 100; // a saga holds it: look again after it
        else if (retry->due_ms <= now) {
            zsys_info ("registry: starting %s again (always_on, its last start failed)", name);
            rec->status = MC__MODULE_STATUS__MODULE_STARTING; // shown meanwhile, not stored
            s_saga_start_thread (self, SAGA_START, name, rec, NULL, NULL);
            continue; // the saga's DONE schedules the next attempt, if one is needed
        }
        if (wait < 0 || retry->due_ms - now < wait)
            wait = retry->due_ms - now;
    }
    zlistx_destroy (&names);
    return (int)wait;
}

//  DONE: answer the saga's caller, forget the saga.
static void s_on_done (self_t *self, mc_request_t *req, saga_t *saga)
{
    mc_env_t *done = req->env;
    if (saga->caller) {
        mc_env_t reply = MC__ENVELOPE__INIT;
        reply.status = done->status;
        reply.error = done->error;
        reply.detail = done->detail;
        reply.problems = done->problems;
        reply.n_problems = done->n_problems;
        reply.output = done->output;
        if (done->registry_saga->module) {
            reply.body_case = MC__ENVELOPE__BODY_MODULE;
            reply.module = done->registry_saga->module;
        }
        mc_reply (self->router, saga->caller->routing_id, saga->caller->env->request_id, &reply);
    }
    Mc__RegistryStatus *pending = saga->name ? zhashx_lookup (self->pending, saga->name) : NULL;
    if (pending) {
        s_apply_status (self, pending); // only if newer than what the saga stored
        zhashx_delete (self->pending, saga->name);
    }
    s_release (self, saga);
    pthread_join (saga->thread, NULL);
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, saga->id);
    zhashx_delete (self->sagas, key);
}

static void s_on_saga (self_t *self, mc_request_t *req)
{
    Mc__RegistrySaga *msg = req->env->registry_saga;
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, msg->saga_id);
    saga_t *saga = zhashx_lookup (self->sagas, key);
    if (!saga) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_NOT_FOUND, "NO_SAGA", "unknown saga");
        return;
    }
    switch (msg->step) {
        case MC__REGISTRY_SAGA__STEP__RESERVE:
            if (msg->module && msg->module->name)
                s_on_reserve (self, req, saga, msg->module);
            break;
        case MC__REGISTRY_SAGA__STEP__COMMIT:
            if (msg->module && msg->module->name &&
                (saga->kind == SAGA_START || saga->kind == SAGA_BOOT))
                s_retry_plan (self, msg->module);
            if (msg->module && msg->module->name && s_commit (self, msg->module) == 0) {
                mc_env_t reply = MC__ENVELOPE__INIT;
                mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
            } else
                mc_reply_error (self->router, req->routing_id, req->env->request_id,
                                MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot store");
            break;
        case MC__REGISTRY_SAGA__STEP__RELEASE: {
            s_release (self, saga);
            mc_env_t reply = MC__ENVELOPE__INIT;
            mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
            break;
        }
        case MC__REGISTRY_SAGA__STEP__DONE:
            s_on_done (self, req, saga);
            break;
        case _MC__REGISTRY_SAGA__STEP_IS_INT_SIZE:
            break;
    }
}

//  start/stop/uninstall: the module must exist, be live, and have no saga running.
static Mc__ModuleRecord *s_lookup_idle (self_t *self, mc_request_t *req, const char *name)
{
    Mc__ModuleRecord *rec = name ? zhashx_lookup (self->records, name) : NULL;
    if (!rec || !s_live (rec)) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_NOT_FOUND, "MODULE_NOT_FOUND",
                        "no module named %s is installed", name ? name : "");
        return NULL;
    }
    if (zhashx_lookup (self->busy, name)) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_CONFLICT, "MODULE_BUSY",
                        "module %s is busy with another operation; try again", name);
        return NULL;
    }
    return rec;
}

//  Returns true if the request was kept by a saga (do not free it).
static bool s_on_lifecycle (self_t *self, mc_request_t *req, saga_kind_t kind, const char *name)
{
    Mc__ModuleRecord *rec = s_lookup_idle (self, req, name);
    if (!rec)
        return false;
    if (kind == SAGA_START && rec->status == MC__MODULE_STATUS__MODULE_RUNNING) {
        s_reply_record (self, req, rec); // already running: nothing to do
        return false;
    }
    if (kind == SAGA_START)
        rec->status = MC__MODULE_STATUS__MODULE_STARTING; // shown meanwhile, not stored
    s_saga_start_thread (self, kind, name, rec, NULL, req);
    return true;
}

//  The record of a module whose install saga is running, or NULL.
static Mc__ModuleRecord *s_installing (self_t *self, const char *name)
{
    const char *key = name ? zhashx_lookup (self->busy, name) : NULL;
    saga_t *saga = key ? zhashx_lookup (self->sagas, key) : NULL;
    return saga && saga->kind == SAGA_INSTALL ? saga->record : NULL;
}

//  --- module config -------------------------------------------------------------------

//  True if key is a config key: 1..128 characters of A-Z a-z 0-9 _ . -
static bool s_config_key_valid (const char *key)
{
    size_t len = key ? strlen (key) : 0;
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!(isalnum ((unsigned char)key[i]) || strchr ("_.-", key[i])))
            return false;
    return true;
}

//  The values saved through the API (an object, never NULL).
static json_t *s_config_saved (self_t *self, const char *name)
{
    char key[128];
    snprintf (key, sizeof key, "cfg/%s", name);
    size_t len = 0;
    char *text = mc_store_get (self->ctx->store, key, &len);
    json_t *saved = text ? json_loadb (text, len, 0, NULL) : NULL;
    free (text);
    return json_is_object (saved) ? saved : (json_decref (saved), json_object ());
}

//  Read or set module config. Precedence (later wins): the module's config.toml <
//  [modules.<name>] in the core's config < values saved through the API.
static void s_on_config (self_t *self, mc_request_t *req)
{
    Mc__RegistryConfig *cfg = req->env->registry_config;
    Mc__ModuleRecord *rec = cfg->name ? zhashx_lookup (self->records, cfg->name) : NULL;
    if (!rec || !s_live (rec))
        rec = s_installing (self, cfg->name); // a module reads its config during its first start
    if (!rec || !s_live (rec)) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_NOT_FOUND, "MODULE_NOT_FOUND",
                        "no module named %s is installed", cfg->name ? cfg->name : "");
        return;
    }
    json_t *saved = s_config_saved (self, rec->name);
    if (cfg->set) {
        json_t *value = json_loads (cfg->value_json ? cfg->value_json : "",
                                    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        const char *problem = NULL;
        if (!s_config_key_valid (cfg->key))
            problem = "key must be 1..128 characters of A-Z a-z 0-9 _ . -";
        else if (!value)
            problem = "value must be JSON";
        if (!problem) {
            if (json_is_null (value))
                json_object_del (saved, cfg->key);
            else
                json_object_set (saved, cfg->key, value);
        }
        char *text = problem ? NULL : json_dumps (saved, JSON_COMPACT | JSON_SORT_KEYS);
        if (!problem && strlen (text) > 65536)
            problem = "saved config would exceed 64 KiB";
        json_decref (value);
        char key[128];
        snprintf (key, sizeof key, "cfg/%s", rec->name);
        if (problem || mc_store_put (self->ctx->store, key, text, strlen (text), true) != 0) {
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            problem ? MC__STATUS__STATUS_BAD_REQUEST : MC__STATUS__STATUS_INTERNAL,
                            problem ? "INVALID_CONFIG" : "STORE_FAILED", "%s",
                            problem ? problem : "cannot store the config");
            free (text);
            json_decref (saved);
            return;
        }
        free (text);
    }
    char path[4200], msg[256] = "";
    snprintf (path, sizeof path, "%s/modules/%s/config.toml", self->ctx->config->data_dir,
              rec->name);
    json_t *defaults = mc_fs_exists (path) ? mc_toml_parse_file (path, msg, sizeof msg) : NULL;
    if (!defaults) {
        if (*msg)
            zsys_warning ("registry: %s: config.toml ignored: %s", rec->name, msg);
        defaults = json_object ();
    }
    json_t *core = json_object_get (self->ctx->config->modules, rec->name);
    json_t *effective = json_deep_copy (defaults);
    if (json_is_object (core))
        json_object_update (effective, core);
    json_object_update (effective, saved);
    Mc__ConfigValues values = MC__CONFIG_VALUES__INIT;
    values.effective_json = json_dumps (effective, JSON_COMPACT | JSON_SORT_KEYS);
    values.defaults_json = json_dumps (defaults, JSON_COMPACT | JSON_SORT_KEYS);
    values.core_json =
        json_is_object (core) ? json_dumps (core, JSON_COMPACT | JSON_SORT_KEYS) : strdup ("{}");
    values.saved_json = json_dumps (saved, JSON_COMPACT | JSON_SORT_KEYS);
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_CONFIG_VALUES;
    reply.config_values = &values;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    free (values.effective_json);
    free (values.defaults_json);
    free (values.core_json);
    free (values.saved_json);
    json_decref (effective);
    json_decref (defaults);
    json_decref (saved);
}

//  --- module CLI specs ---------------------------------------------------------------

//  REGISTER stores a module's spec durably (cli/<name>); GET returns one with the port
//  and signing secret the gateway needs to invoke it; LIST returns all.
static void s_on_cli (self_t *self, mc_request_t *req)
{
    Mc__RegistryCli *cli = req->env->registry_cli;
    Mc__CliSpecs specs = MC__CLI_SPECS__INIT;
    char *one = NULL;
    char secret[MC_SECRET_LEN + 1] = "", token[MC_TOKEN_LEN + 1] = "";
    zlistx_t *all = NULL;
    if (cli->op != MC__REGISTRY_CLI__OP__LIST) {
        Mc__ModuleRecord *rec = cli->module ? zhashx_lookup (self->records, cli->module) : NULL;
        if ((!rec || !s_live (rec)) && cli->op == MC__REGISTRY_CLI__OP__REGISTER)
            rec = s_installing (self, cli->module); // registering during its first launch
        if (!rec || !s_live (rec)) {
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_NOT_FOUND, "MODULE_NOT_FOUND",
                            "no module named %s is installed", cli->module ? cli->module : "");
            return;
        }
        char key[128];
        snprintf (key, sizeof key, "cli/%s", rec->name);
        if (cli->op == MC__REGISTRY_CLI__OP__REGISTER) {
            const char *text = cli->spec_json ? cli->spec_json : "";
            if (mc_store_put (self->ctx->store, key, text, strlen (text), true) != 0) {
                mc_reply_error (self->router, req->routing_id, req->env->request_id,
                                MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                                "cannot store the CLI spec");
                return;
            }
            one = strdup (text);
        } else {
            one = mc_store_get (self->ctx->store, key, NULL);
            if (!one) {
                mc_reply_error (self->router, req->routing_id, req->env->request_id,
                                MC__STATUS__STATUS_NOT_FOUND, "NO_CLI",
                                "module %s has registered no CLI commands", rec->name);
                return;
            }
            s_cred_load (self->ctx, rec->name, token, secret);
            specs.secret = secret;
            specs.port = rec->port;
            specs.running = rec->status == MC__MODULE_STATUS__MODULE_RUNNING;
        }
        specs.n_specs_json = 1;
        specs.specs_json = &one;
    } else {
        all = zlistx_new ();
        zlistx_set_destructor (all, (zlistx_destructor_fn *)zstr_free);
        for (Mc__ModuleRecord *r = zhashx_first (self->records); r;
             r = zhashx_next (self->records)) {
            char key[128];
            snprintf (key, sizeof key, "cli/%s", r->name);
            char *text = s_live (r) ? mc_store_get (self->ctx->store, key, NULL) : NULL;
            if (text)
                zlistx_add_end (all, text);
        }
        specs.n_specs_json = zlistx_size (all);
        specs.specs_json = calloc (specs.n_specs_json + 1, sizeof (char *));
        size_t i = 0;
        for (char *text = zlistx_first (all); text; text = zlistx_next (all))
            specs.specs_json[i++] = text;
    }
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_CLI_SPECS;
    reply.cli_specs = &specs;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    sodium_memzero (secret, sizeof secret);
    sodium_memzero (token, sizeof token);
    free (one);
    if (all) {
        free (specs.specs_json);
        zlistx_destroy (&all);
    }
}

static int s_cmp_name (const void *a, const void *b)
{
    return strcmp ((*(Mc__ModuleRecord *const *)a)->name, (*(Mc__ModuleRecord *const *)b)->name);
}

static void s_on_list (self_t *self, mc_request_t *req)
{
    size_t n = zhashx_size (self->records), count = 0;
    Mc__ModuleRecord **items = calloc (n + 1, sizeof *items);
    for (Mc__ModuleRecord *r = zhashx_first (self->records); r; r = zhashx_next (self->records))
        if (s_live (r) || req->env->registry_list->include_removed)
            items[count++] = r;
    zlistx_t *busy = zhashx_keys (self->busy);
    for (char *name = zlistx_first (busy); name; name = zlistx_next (busy)) {
        Mc__ModuleRecord *r = s_installing (self, name);
        if (r) {
            items = realloc (items, (count + 1) * sizeof *items);
            items[count++] = r;
        }
    }
    zlistx_destroy (&busy);
    qsort (items, count, sizeof *items, s_cmp_name);
    Mc__ModuleList list = MC__MODULE_LIST__INIT;
    list.n_modules = count;
    list.modules = items;
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_MODULE_LIST;
    reply.module_list = &list;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    free (items);
}

//  A status event from the sandbox's supervisor: the record says so, durably, unless
//  the record already reflects a newer event (seq).
static void s_apply_status (self_t *self, const Mc__RegistryStatus *st)
{
    Mc__ModuleRecord *rec = st->name ? zhashx_lookup (self->records, st->name) : NULL;
    if (!rec || !s_live (rec) || st->seq <= rec->status_seq)
        return;
    Mc__ModuleRecord *copy = s_record_dup (rec);
    copy->status = st->status;
    copy->pid = st->pid;
    copy->restarts = st->restarts;
    copy->status_seq = st->seq;
    copy->updated_at = mc_time_unix ();
    if (st->status == MC__MODULE_STATUS__MODULE_RUNNING)
        copy->started_at = copy->updated_at;
    s_set_reason (copy, strdup (st->reason ? st->reason : ""));
    if (st->exited) {
        copy->last_exit_code = st->exit_code;
        copy->last_signal = st->signal;
        if (copy->stderr_tail && copy->stderr_tail != protobuf_c_empty_string)
            free (copy->stderr_tail);
        copy->stderr_tail = strdup (st->stderr_tail ? st->stderr_tail : "");
    }
    copy->next_run_at = rec->next_run_at;
    s_commit (self, copy);
    mc__module_record__free_unpacked (copy, NULL);
}

static void s_pending_free (void **item)
{
    if (*item)
        mc__registry_status__free_unpacked (*item, NULL);
    *item = NULL;
}

static void s_on_status (self_t *self, const Mc__RegistryStatus *st)
{
    if (!st->name || !*st->name)
        return;
    if (!zhashx_lookup (self->busy, st->name)) {
        s_apply_status (self, st);
        return;
    }
    //  A saga owns the record now: keep the newest event for when it is done.
    Mc__RegistryStatus *have = zhashx_lookup (self->pending, st->name);
    if (have && have->seq >= st->seq)
        return;
    size_t len = mc__registry_status__get_packed_size (st);
    uint8_t *buf = malloc (len ? len : 1);
    assert (buf);
    mc__registry_status__pack (st, buf);
    Mc__RegistryStatus *copy = mc__registry_status__unpack (NULL, len, buf);
    free (buf);
    assert (copy);
    zhashx_update (self->pending, st->name, copy);
}

//  The webhook actor has a delivery for name: start it if it is an on_demand module
//  that is not running (and not stopped by the operator), or keep it from idling out.
static void s_on_wake (self_t *self, const char *name)
{
    Mc__ModuleRecord *rec = name ? zhashx_lookup (self->records, name) : NULL;
    if (!rec || !s_live (rec) || !streq (rec->runtime_mode, "on_demand") ||
        zhashx_lookup (self->busy, name))
        return;
    if (rec->status == MC__MODULE_STATUS__MODULE_RUNNING) {
        Mc__SandboxTouch touch = MC__SANDBOX_TOUCH__INIT;
        touch.name = (char *)name;
        mc_env_t env = MC__ENVELOPE__INIT;
        env.body_case = MC__ENVELOPE__BODY_SANDBOX_TOUCH;
        env.sandbox_touch = &touch;
        mc_notify (self->sandbox, &env);
        return;
    }
    if (!rec->want_running)
        return;
    zsys_info ("registry: an event waits for %s (on_demand): starting it", name);
    rec->status = MC__MODULE_STATUS__MODULE_STARTING; // shown meanwhile, not stored
    s_saga_start_thread (self, SAGA_START, name, rec, NULL, NULL);
}

//  Starts the scheduled modules that are due; returns ms until the next one is (at
//  most a minute: the wall clock may jump).
static int s_run_schedules (self_t *self)
{
    int64_t now = mc_time_unix ();
    int64_t wait_s = 60;
    for (Mc__ModuleRecord *rec = zhashx_first (self->records); rec;
         rec = zhashx_next (self->records)) {
        if (!s_live (rec) || !streq (rec->runtime_mode, "scheduled") || !rec->want_running ||
            !rec->schedule || !*rec->schedule)
            continue;
        mc_cron_t cron;
        char why[128];
        if (mc_cron_parse (rec->schedule, &cron, why, sizeof why) != 0)
            continue;
        if (rec->next_run_at <= 0)
            rec->next_run_at = mc_cron_next (&cron, now); // runs missed while down are skipped
        if (rec->next_run_at > 0 && rec->next_run_at <= now) {
            bool running = rec->status == MC__MODULE_STATUS__MODULE_RUNNING ||
                           rec->status == MC__MODULE_STATUS__MODULE_STARTING;
            if (running || zhashx_lookup (self->busy, rec->name))
                zsys_info ("registry: %s is still running: its run at its schedule is skipped",
                           rec->name);
            else {
                zsys_info ("registry: starting %s (scheduled: %s)", rec->name, rec->schedule);
                rec->status = MC__MODULE_STATUS__MODULE_STARTING;
                s_saga_start_thread (self, SAGA_START, rec->name, rec, NULL, NULL);
            }
            rec->next_run_at = mc_cron_next (&cron, now);
        }
        if (rec->next_run_at > 0 && rec->next_run_at - now < wait_s)
            wait_s = rec->next_run_at - now;
    }
    return (int)(wait_s > 0 ? wait_s : 1) * 1000;
}

static void s_on_request (self_t *self)
{
    mc_request_t *req = mc_request_recv (self->router);
    if (!req)
        return;
    bool kept = false;
    mc_env_t *env = req->env;
    switch (env->body_case) {
        case MC__ENVELOPE__BODY_REGISTRY_INSTALL:
            if (!env->registry_install->zip_path || !*env->registry_install->zip_path)
                mc_reply_error (self->router, req->routing_id, env->request_id,
                                MC__STATUS__STATUS_BAD_REQUEST, "BAD_REQUEST", "no archive");
            else {
                s_saga_start_thread (self, SAGA_INSTALL, NULL, NULL,
                                     strdup (env->registry_install->zip_path), req);
                kept = true;
            }
            break;
        case MC__ENVELOPE__BODY_REGISTRY_GET: {
            const char *name = env->registry_get->name;
            Mc__ModuleRecord *rec = name ? zhashx_lookup (self->records, name) : NULL;
            if (!rec || !s_live (rec))
                rec = s_installing (self, name);
            if (rec && s_live (rec))
                s_reply_record (self, req, rec);
            else
                mc_reply_error (self->router, req->routing_id, env->request_id,
                                MC__STATUS__STATUS_NOT_FOUND, "MODULE_NOT_FOUND",
                                "no module named %s is installed", name ? name : "");
            break;
        }
        case MC__ENVELOPE__BODY_REGISTRY_LIST:
            s_on_list (self, req);
            break;
        case MC__ENVELOPE__BODY_REGISTRY_START:
            kept = s_on_lifecycle (self, req, SAGA_START, env->registry_start->name);
            break;
        case MC__ENVELOPE__BODY_REGISTRY_STOP:
            kept = s_on_lifecycle (self, req, SAGA_STOP, env->registry_stop->name);
            break;
        case MC__ENVELOPE__BODY_REGISTRY_UNINSTALL:
            kept = s_on_lifecycle (self, req, SAGA_UNINSTALL, env->registry_uninstall->name);
            break;
        case MC__ENVELOPE__BODY_REGISTRY_STATUS:
            s_on_status (self, env->registry_status);
            break;
        case MC__ENVELOPE__BODY_REGISTRY_WAKE:
            s_on_wake (self, env->registry_wake->name);
            break;
        case MC__ENVELOPE__BODY_REGISTRY_SAGA:
            s_on_saga (self, req);
            break;
        case MC__ENVELOPE__BODY_REGISTRY_CONFIG:
            s_on_config (self, req);
            break;
        case MC__ENVELOPE__BODY_REGISTRY_CLI:
            s_on_cli (self, req);
            break;
            MC_CASES_NOT_FOR_REGISTRY
            mc_reply_error (self->router, req->routing_id, env->request_id,
                            MC__STATUS__STATUS_BAD_REQUEST, "UNSUPPORTED",
                            "registry does not handle this message");
            break;
    }
    if (!kept)
        mc_request_destroy (&req);
}

//  Clears what a crash left behind: everything in <data>/tmp, and module dirs that no
//  live record owns. Runs at actor start, before the gateway accepts any request.
static void s_clean_leftovers (self_t *self)
{
    const char *data = self->ctx->config->data_dir;
    char *tmp = s_path ("%s/tmp", data);
    DIR *dir = opendir (tmp);
    struct dirent *e;
    while (dir && (e = readdir (dir)))
        if (strcmp (e->d_name, ".") && strcmp (e->d_name, "..")) {
            char *path = s_path ("%s/%s", tmp, e->d_name);
            mc_fs_rmtree (path);
            free (path);
        }
    if (dir)
        closedir (dir);
    free (tmp);

    char *modules = s_path ("%s/modules", data);
    dir = opendir (modules);
    while (dir && (e = readdir (dir))) {
        if (!strcmp (e->d_name, ".") || !strcmp (e->d_name, ".."))
            continue;
        Mc__ModuleRecord *rec = zhashx_lookup (self->records, e->d_name);
        if (!rec || !s_live (rec)) {
            char *path = s_path ("%s/%s", modules, e->d_name);
            zsys_info ("registry: removing %s (no installed module owns it)", path);
            mc_fs_rmtree (path);
            free (path);
        }
    }
    if (dir)
        closedir (dir);
    free (modules);
}

//  BOOT: bring back the always_on modules that were running, and those whose last
//  start failed while they were wanted running (a port another program held, say: the
//  cause may be gone). (What a crash left behind was cleared by s_clean_leftovers
//  before the gateway opened.)
static void s_boot (self_t *self)
{
    zlistx_t *names = zhashx_keys (self->records);
    for (char *name = zlistx_first (names); name; name = zlistx_next (names)) {
        Mc__ModuleRecord *rec = zhashx_lookup (self->records, name);
        bool was_running = rec->status == MC__MODULE_STATUS__MODULE_RUNNING ||
                           rec->status == MC__MODULE_STATUS__MODULE_STARTING ||
                           rec->status == MC__MODULE_STATUS__MODULE_CRASHLOOP ||
                           rec->status == MC__MODULE_STATUS__MODULE_FAILED;
        if (!was_running || !rec->want_running)
            continue;
        if (streq (rec->runtime_mode, "always_on")) {
            rec->status = MC__MODULE_STATUS__MODULE_STARTING;
            s_saga_start_thread (self, SAGA_BOOT, name, rec, NULL, NULL);
        } else {
            Mc__ModuleRecord *copy = s_record_dup (rec);
            copy->status = MC__MODULE_STATUS__MODULE_STOPPED;
            copy->pid = 0;
            s_set_reason (copy, strdup (streq (rec->runtime_mode, "on_demand")
                                            ? "on_demand: starts on its next event or POST start"
                                            : "scheduled: starts at its schedule"));
            s_commit (self, copy);
            mc__module_record__free_unpacked (copy, NULL);
        }
    }
    zlistx_destroy (&names);
}

static self_t *s_self_new (mc_context_t *ctx)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = ctx;
    self->router = mc_actor_bind ("registry");
    self->records = zhashx_new ();
    zhashx_set_destructor (self->records, s_record_free);
    self->sagas = zhashx_new ();
    zhashx_set_destructor (self->sagas, s_saga_destroy);
    self->busy = zhashx_new ();
    zhashx_set_destructor (self->busy, (zhashx_destructor_fn *)zstr_free);
    self->reserved_ports = zhashx_new (); // values borrowed from records/sagas
    self->pending = zhashx_new ();
    zhashx_set_destructor (self->pending, s_pending_free);
    self->retries = zhashx_new ();
    zhashx_set_destructor (self->retries, s_retry_free);
    self->sandbox = mc_client_new ("sandbox");
    atomic_init (&self->cancel, false);
    return self;
}

static void s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    //  Workers give up at their next call; wait for each before freeing what they read.
    atomic_store (&self->cancel, true);
    for (saga_t *saga = zhashx_first (self->sagas); saga; saga = zhashx_next (self->sagas))
        pthread_join (saga->thread, NULL);
    zhashx_destroy (&self->sagas);
    zhashx_destroy (&self->busy);
    zhashx_destroy (&self->reserved_ports);
    zhashx_destroy (&self->pending);
    zhashx_destroy (&self->retries);
    zsock_destroy (&self->sandbox);
    zhashx_destroy (&self->records);
    zsock_destroy (&self->router);
    free (self);
    *self_p = NULL;
}

void mc_registry_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new ((mc_context_t *)args);
    if (!self->router || mc_store_scan (self->ctx->store, "mod/", s_load_one, self) != 0) {
        s_self_destroy (&self);
        mc_actor_ready (pipe, -1);
        return;
    }
    zsys_info ("registry: %zu module records loaded", zhashx_size (self->records));
    //  Before the gateway opens: an install that arrives before BOOT has its upload in
    //  <data>/tmp and its tree in <data>/modules, and must not be swept away as a leftover.
    s_clean_leftovers (self);
    mc_actor_ready (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, self->router, NULL);
    while (!self->terminated) {
        int wait = s_run_schedules (self), retry = s_run_retries (self);
        void *which = zpoller_wait (poller, retry >= 0 && retry < wait ? retry : wait);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self->terminated = true;
            else if (streq (command, "BOOT"))
                s_boot (self);
            zstr_free (&command);
        } else if (which == self->router)
            s_on_request (self);
        else if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
    s_self_destroy (&self);
}
