/*  The core's configuration: defaults that make the first run work, an optional TOML
    file, then command-line flags (flags win). Read-only once the actors start. */
#ifndef MC_CONFIG_H
#define MC_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/zipx.h"

typedef struct {
    char *data_dir;                 // [core] data_dir, --data-dir; default ./data (made absolute)
    char *listen_host;              // [core] listen, --listen; default 127.0.0.1
    int listen_port;                // default 7070; 0 = any free port (tests)
    int gateway_threads;            // [gateway] threads; civetweb workers, default 64
    int keep_alive_ms;              // [gateway] keep_alive_ms; idle keep-alive, default 5000
    uint64_t max_upload_bytes;      // [gateway] max_upload_mb; install body cap, default 64 MiB
    uint64_t max_body_bytes;        // [gateway] max_body_kb; other bodies, default 64 KiB
    uint32_t rate_limit;            // [rate_limit] rate; per token per second, default 100
    uint32_t rate_burst;            // [rate_limit] burst; bucket capacity, default 20
    uint32_t sandbox_test_ms;       // [sandbox] test_timeout_s; install test run, default 60 s
    uint32_t health_timeout_ms;     // [sandbox] health_timeout_s; wait for /health, default 30 s
    uint32_t stop_grace_ms;         // [sandbox] stop_grace_s; SIGTERM -> SIGKILL, default 10 s
    uint32_t call_timeout_ms;       // gateway -> actor calls, default 5 s
    uint32_t webhook_timeout_ms;    // [webhook] timeout_ms; one delivery attempt, default 5000
    uint32_t webhook_retry_base_ms; // [webhook] retry_base_ms; first retry delay, default 1000
    uint32_t webhook_retry_cap_ms;  // [webhook] retry_cap_ms; longest delay, default 1 h
    uint32_t webhook_max_age_s;     // [webhook] max_age_s; then dead-lettered, default 1 day
    uint32_t webhook_threads;       // [webhook] threads; delivery threads, default 2
    mc_zipx_limits_t zip_limits;    // [install] max_entries, max_total_mb, max_entry_mb, max_ratio
    uint32_t storage_max_open;      // [storage] max_open; module databases open at once, default 64
    uint64_t storage_max_keys;      // [storage] max_keys; per module, default 10,000
    uint64_t storage_max_bytes;     // [storage] max_bytes; keys + values per module, default 16 MiB
    char *sdk_endpoint;             // [sdk] endpoint; default ipc://<data>/run/modcore.sock
    char *sdk_tcp_endpoint;         // [sdk] tcp_endpoint; tcp:// with CURVE, default none
    int sdk_workers;                // [sdk] workers; threads serving native requests, default 4
    uint32_t sdk_queue_max;         // [sdk] queue_max; requests waiting for workers, default 1024
    int sdk_io_threads;             // [sdk] io_threads; ZeroMQ I/O threads (ipc/tcp), default 2
    bool metrics_loopback_open;     // [metrics] loopback_open; scrapes from 127.0.0.1 need no token
    bool bench_token_route;         // [bench] token_route; POST /bench/tokens, default off
    char *launcher;                 // [sandbox] launcher; default modcore-launch beside modcored
    char *isolation;                // [sandbox] isolation; "bwrap" (default) or "none" (unsafe)
    char *bwrap;                    // [sandbox] bwrap; bubblewrap path, default /usr/bin/bwrap
    char *module_user;              // [sandbox] user; default "nobody" as root, else none
    long module_uid, module_gid;    // module_user resolved; -1 = the core's own user
    uint32_t tmp_mb;                // [sandbox] tmp_mb; private /tmp size, default 64
    uint32_t nofile;                // [sandbox] nofile; RLIMIT_NOFILE, default 1024
    uint32_t nproc;                 // [sandbox] nproc; RLIMIT_NPROC, default 4096
    uint32_t fsize_mb;              // [sandbox] fsize_mb; RLIMIT_FSIZE, default 1024
    uint32_t memory_mb;             // [sandbox] memory_mb; without resources.memory_mb, 256
    uint32_t cpu_percent;           // [sandbox] cpu_percent; without resources.cpu, 100
    uint32_t pids_max;              // [sandbox] pids_max; cgroup pids limit, default 100
    uint32_t log_max_kb;            // [sandbox] log_max_kb; rotate a module log, 10 MiB
    uint32_t log_keep;              // [sandbox] log_keep; rotated files kept, default 3
    uint32_t restart_base_ms;       // [sandbox] restart_base_ms; first backoff, default 1 s
    uint32_t restart_max_ms;        // [sandbox] restart_max_ms; backoff cap, default 5 min
    uint32_t restart_reset_ms;      // [sandbox] restart_reset_s; healthy this long resets, 10 min
    uint32_t crashloop_exits;       // [sandbox] crashloop_exits; exits that make a loop, 5
    uint32_t crashloop_window_ms;   // [sandbox] crashloop_window_s; within this window, 60 s
    uint32_t health_interval_ms;    // [sandbox] health_interval_ms; periodic check, 10 s
    uint32_t health_failures;       // [sandbox] health_failures; failures in a row, 3
    uint32_t health_grace_ms;       // [sandbox] health_grace_s; no restart this early, 30 s
    uint32_t idle_stop_ms;          // [sandbox] idle_stop_s; on_demand idle stop, 5 min
    json_t *modules;                // [modules.<name>] tables (object, owned), for config merge
    char *config_path;              // the file read, or NULL
} mc_config_t;

//  A config with every default set.
mc_config_t *mc_config_new (void);

//  Applies a TOML file over the current values. Unknown keys or wrong types are an
//  error (a typo in a config file should not be silently ignored). Returns 0 or -1.
int mc_config_load_file (mc_config_t *self, const char *path, mc_error_t *err);

//  Applies a "HOST:PORT" (or ":PORT", or "PORT") listen address. Returns 0 or -1.
int mc_config_set_listen (mc_config_t *self, const char *listen, mc_error_t *err);

//  Makes paths absolute and fills derived defaults. Returns 0 or -1.
int mc_config_finish (mc_config_t *self, mc_error_t *err);

//  Frees the config; sets *self_p to NULL; safe on NULL.
void mc_config_destroy (mc_config_t **self_p);

#endif
