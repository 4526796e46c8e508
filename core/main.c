/*  modcored: the module host core.

    Start-up order: config, data dir layout, store, seal key, then the actors in
    dependency order (auth, webhook, eventbus, devices, storage, sandbox,
    registry), then the gateway; then the
   registry is told to BOOT (bring back always_on modules, which call the gateway as they start).
    Shutdown (SIGTERM/SIGINT) in reverse: gateway first, so nothing new comes in, then
    registry, sandbox (which stops every module process), storage, devices, eventbus, webhook,
    auth, store. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actors/auth.h"
#include "actors/devices.h"
#include "actors/eventbus.h"
#include "actors/registry.h"
#include "actors/sandbox.h"
#include "actors/storage.h"
#include "actors/webhook.h"
#include "core/actor.h"
#include "core/config.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "gateway/gateway.h"
#include "gateway/sdk.h"

static void s_usage (FILE *out)
{
    fprintf (out,
             "usage: modcored [--config FILE] [--data-dir DIR] [--listen HOST:PORT] [--verbose]\n"
             "\n"
             "  --config FILE      TOML config file (optional; see docs/operations.md)\n"
             "  --data-dir DIR     where modules, the store and secrets live (default ./data)\n"
             "  --listen HOST:PORT gateway address (default 127.0.0.1:7070; port 0 = any)\n"
             "  --verbose          debug logging\n");
}

//  Makes the data dir layout, checking that it is writable.
static int s_prepare_data_dir (const char *data, mc_error_t *err)
{
    static const struct {
        const char *sub;
        mode_t mode;
    } dirs[] = {{"", 0755},     {"/modules", 0755}, {"/logs", 0750},          {"/tmp", 0700},
                {"/run", 0755}, {"/secure", 0700},  {"/secure/modules", 0700}};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[4096];
        snprintf (path, sizeof path, "%s%s", data, dirs[i].sub);
        if (mc_fs_mkdirs (path, dirs[i].mode) != 0)
            return mc_error_set (err, "DATA_DIR", "cannot create %s: %s", path, strerror (errno));
        if (access (path, W_OK | X_OK) != 0)
            return mc_error_set (err, "DATA_DIR", "%s is not writable: %s", path, strerror (errno));
    }
    char secure[4096];
    snprintf (secure, sizeof secure, "%s/secure", data);
    chmod (secure, 0700);
    return 0;
}

int main (int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'}, {"data-dir", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *data_dir = NULL, *listen = NULL;
    bool verbose = false;
    int opt;
    while ((opt = getopt_long (argc, argv, "c:d:l:vh", options, NULL)) != -1) {
        switch (opt) {
            case 'c':
                config_path = optarg;
                break;
            case 'd':
                data_dir = optarg;
                break;
            case 'l':
                listen = optarg;
                break;
            case 'v':
                verbose = true;
                break;
            case 'h':
                s_usage (stdout);
                return 0;
            default:
                s_usage (stderr);
                return 2;
        }
    }
    if (optind < argc) {
        s_usage (stderr);
        return 2;
    }

    //  Signals are taken by sigwait in this thread only; every thread inherits the mask
    //  (module processes get a clean one from the sandbox).
    sigset_t stop_signals;
    sigemptyset (&stop_signals);
    sigaddset (&stop_signals, SIGTERM);
    sigaddset (&stop_signals, SIGINT);
    pthread_sigmask (SIG_BLOCK, &stop_signals, NULL);
    signal (SIGPIPE, SIG_IGN);
    zsys_handler_set (NULL);
    zsys_init ();
    zsys_set_logident ("modcored");
    zsys_set_logstream (stderr);
    zsys_set_logsystem (false);
    zsys_set_max_sockets (0);               // as many as the OS allows: one per thread per actor
    curl_global_init (CURL_GLOBAL_DEFAULT); // once, before any thread uses libcurl
    if (sodium_init () < 0) {
        fprintf (stderr, "modcored: libsodium cannot initialise\n");
        return 1;
    }
    (void)verbose;

    mc_error_t err = {"", ""};
    mc_config_t *config = mc_config_new ();
    int loaded = config_path ? mc_config_load_file (config, config_path, &err) : 0;
    if (loaded == 0 && data_dir) { // flags override the file
        free (config->data_dir);
        config->data_dir = strdup (data_dir);
    }
    if (loaded != 0 || (listen && mc_config_set_listen (config, listen, &err) != 0) ||
        mc_config_finish (config, &err) != 0 || s_prepare_data_dir (config->data_dir, &err) != 0) {
        fprintf (stderr, "modcored: %s\n", err.detail);
        mc_config_destroy (&config);
        return 1;
    }

    //  ZeroMQ's I/O threads carry the native transport's ipc:// and tcp:// sessions
    //  (inproc needs none); set before the first socket is made.
    zsys_set_io_threads ((size_t)config->sdk_io_threads);
    mc_context_t ctx = {.config = config};
    ctx.started_at = mc_time_unix ();
    ctx.started_mono_ns = mc_clock_mono_ns ();
    char path[4096];
    snprintf (path, sizeof path, "%s/db", config->data_dir);
    ctx.store = mc_store_open (path, &err);
    snprintf (path, sizeof path, "%s/secure/master.key", config->data_dir);
    if (!ctx.store || mc_seal_key_load (path, ctx.seal_key, &err) != 0) {
        fprintf (stderr, "modcored: %s\n", err.detail);
        if (!strcmp (err.code, "STORE_LOCKED"))
            fprintf (stderr, "modcored: is another modcored using %s?\n", config->data_dir);
        mc_store_close (&ctx.store);
        mc_config_destroy (&config);
        return 1;
    }
    ctx.authtab = mc_authtab_new (config->rate_limit, config->rate_burst);
    ctx.devices_view = mc_slot_new ();

    int rc = 1;
    zactor_t *auth = NULL, *webhook = NULL, *eventbus = NULL, *devices = NULL, *storage = NULL,
             *sandbox = NULL, *registry = NULL;
    mc_gateway_t *gateway = NULL;
    auth = mc_actor_start ("auth", mc_auth_actor, &ctx);
    if (auth)
        webhook = mc_actor_start ("webhook", mc_webhook_actor, &ctx);
    if (webhook)
        eventbus = mc_actor_start ("eventbus", mc_eventbus_actor, &ctx);
    if (eventbus)
        devices = mc_actor_start ("devices", mc_devices_actor, &ctx);
    if (devices)
        storage = mc_actor_start ("storage", mc_storage_actor, &ctx);
    if (storage)
        sandbox = mc_actor_start ("sandbox", mc_sandbox_actor, &ctx);
    if (sandbox)
        registry = mc_actor_start ("registry", mc_registry_actor, &ctx);
    zactor_t *sdk = registry ? mc_actor_start ("sdk", mc_sdk_actor, &ctx) : NULL;
    if (sdk) {
        gateway = mc_gateway_start (&ctx, &err);
        if (!gateway)
            fprintf (stderr, "modcored: %s\n", err.detail);
    }
    if (gateway) {
        ctx.gateway_port = mc_gateway_port (gateway);
        zsys_info ("modcored %s: listening on http://%s:%d/api/v1, data in %s", MC_VERSION,
                   config->listen_host, ctx.gateway_port, config->data_dir);
        zstr_send (registry, "BOOT");
        int sig = 0;
        sigwait (&stop_signals, &sig);
        zsys_info ("modcored: %s received, stopping", strsignal (sig));
        rc = 0;
    }
    mc_gateway_stop (&gateway);
    zactor_destroy (&sdk);
    zactor_destroy (&registry);
    zactor_destroy (&sandbox);
    zactor_destroy (&storage);
    zactor_destroy (&devices);
    zactor_destroy (&eventbus);
    zactor_destroy (&webhook);
    zactor_destroy (&auth);
    mc_authtab_destroy (&ctx.authtab);
    mc_slot_destroy (&ctx.devices_view);
    mc_store_close (&ctx.store);
    sodium_memzero (ctx.seal_key, sizeof ctx.seal_key);
    mc_config_destroy (&config);
    if (rc == 0)
        zsys_info ("modcored: stopped");
    zsys_shutdown ();
    curl_global_cleanup ();
    return rc;
}
