#include "core/config.h"

#include <assert.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/toml.h"

mc_config_t *mc_config_new (void)
{
    mc_config_t *self = calloc (1, sizeof *self);
    assert (self);
    self->data_dir = strdup ("./data");
    self->listen_host = strdup ("127.0.0.1");
    self->listen_port = 7070;
    self->gateway_threads = 64;
    self->keep_alive_ms = 5000;
    self->max_upload_bytes = 64ull << 20;
    self->max_body_bytes = 64ull << 10;
    self->rate_limit = 100;
    self->rate_burst = 20;
    self->sandbox_test_ms = 60000;
    self->health_timeout_ms = 30000;
    self->stop_grace_ms = 10000;
    self->call_timeout_ms = 5000;
    self->isolation = strdup ("bwrap");
    self->bwrap = strdup ("/usr/bin/bwrap");
    self->module_uid = self->module_gid = -1;
    self->tmp_mb = 64;
    self->nofile = 1024;
    self->nproc = 4096;
    self->fsize_mb = 1024;
    self->memory_mb = 256;
    self->cpu_percent = 100;
    self->pids_max = 100;
    self->log_max_kb = 10240;
    self->log_keep = 3;
    self->restart_base_ms = 1000;
    self->restart_max_ms = 300000;
    self->restart_reset_ms = 600000;
    self->crashloop_exits = 5;
    self->crashloop_window_ms = 60000;
    self->health_interval_ms = 10000;
    self->health_failures = 3;
    self->health_grace_ms = 30000;
    self->idle_stop_ms = 300000;
    self->sdk_workers = 4;
    self->sdk_queue_max = 1024;
    self->sdk_io_threads = 2;
    self->webhook_timeout_ms = 5000;
    self->webhook_retry_base_ms = 1000;
    self->webhook_retry_cap_ms = 3600000;
    self->webhook_max_age_s = 86400;
    self->webhook_threads = 2;
    mc_zipx_limits_default (&self->zip_limits);
    self->storage_max_open = 64;
    self->storage_max_keys = 10000;
    self->storage_max_bytes = 16ull << 20;
    self->modules = json_object ();
    return self;
}

void mc_config_destroy (mc_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mc_config_t *self = *self_p;
    free (self->data_dir);
    free (self->listen_host);
    free (self->launcher);
    free (self->isolation);
    free (self->bwrap);
    free (self->module_user);
    free (self->sdk_endpoint);
    free (self->sdk_tcp_endpoint);
    free (self->config_path);
    json_decref (self->modules);
    free (self);
    *self_p = NULL;
}

int mc_config_set_listen (mc_config_t *self, const char *listen, mc_error_t *err)
{
    const char *colon = strrchr (listen, ':');
    const char *port_text = colon ? colon + 1 : listen;
    char *end = NULL;
    long port = strtol (port_text, &end, 10);
    if (!*port_text || *end || port < 0 || port > 65535)
        return mc_error_set (err, "CONFIG_INVALID", "listen address '%s': bad port", listen);
    if (colon && colon != listen) {
        free (self->listen_host);
        self->listen_host = strndup (listen, (size_t)(colon - listen));
    }
    self->listen_port = (int)port;
    return 0;
}

//  Reads an integer key of a table into *out within [min, max] (scaled by mult).
static int s_uint (json_t *table, const char *section, const char *key, uint64_t min, uint64_t max,
                   uint64_t mult, uint64_t *out, mc_error_t *err)
{
    json_t *v = json_object_get (table, key);
    if (!v)
        return 0;
    if (!json_is_integer (v) || json_integer_value (v) < (json_int_t)min ||
        (uint64_t)json_integer_value (v) > max)
        return mc_error_set (err, "CONFIG_INVALID", "[%s] %s must be an integer in %llu..%llu",
                             section, key, (unsigned long long)min, (unsigned long long)max);
    *out = (uint64_t)json_integer_value (v) * mult;
    return 0;
}

//  Refuses a section that is not a table, and keys of a table that are not in the
//  allowed list (NULL-terminated).
static int s_known (json_t *table, const char *section, const char *const *allowed, mc_error_t *err)
{
    if (!json_is_object (table)) // `rate_limit = 5` is a mistake, not an empty section
        return mc_error_set (err, "CONFIG_INVALID", "[%s] must be a table", section);
    const char *key;
    json_t *value;
    json_object_foreach (table, key, value)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp (*a, key) == 0;
        if (!ok)
            return mc_error_set (err, "CONFIG_INVALID", "unknown key '%s' in [%s]", key, section);
    }
    return 0;
}

int mc_config_load_file (mc_config_t *self, const char *path, mc_error_t *err)
{
    char msg[512] = "";
    json_t *root = mc_toml_parse_file (path, msg, sizeof msg);
    if (!root)
        return mc_error_set (err, "CONFIG_INVALID", "config %s: %s", path, msg);
    free (self->config_path);
    self->config_path = strdup (path);
    int rc = -1;
    uint64_t v;
    static const char *const top[] = {"core",    "gateway", "rate_limit", "sandbox",
                                      "install", "webhook", "storage",    "sdk",
                                      "metrics", "bench",   "modules",    NULL};
    if (s_known (root, "top level", top, err))
        goto done;
    json_t *core = json_object_get (root, "core");
    if (core) {
        static const char *const keys[] = {"data_dir", "listen", NULL};
        if (s_known (core, "core", keys, err))
            goto done;
        json_t *d = json_object_get (core, "data_dir");
        if (d && !json_is_string (d)) {
            mc_error_set (err, "CONFIG_INVALID", "[core] data_dir must be a string");
            goto done;
        }
        if (d) {
            free (self->data_dir);
            self->data_dir = strdup (json_string_value (d));
        }
        json_t *l = json_object_get (core, "listen");
        if (l && (!json_is_string (l) || mc_config_set_listen (self, json_string_value (l), err))) {
            mc_error_set (err, "CONFIG_INVALID", "[core] listen must be \"HOST:PORT\"");
            goto done;
        }
    }
    json_t *gw = json_object_get (root, "gateway");
    if (gw) {
        static const char *const keys[] = {"threads", "keep_alive_ms", "max_upload_mb",
                                           "max_body_kb", NULL};
        if (s_known (gw, "gateway", keys, err))
            goto done;
        v = (uint64_t)self->gateway_threads;
        if (s_uint (gw, "gateway", "threads", 2, 4096, 1, &v, err))
            goto done;
        self->gateway_threads = (int)v;
        v = (uint64_t)self->keep_alive_ms;
        if (s_uint (gw, "gateway", "keep_alive_ms", 0, 600000, 1, &v, err))
            goto done;
        self->keep_alive_ms = (int)v;
        if (s_uint (gw, "gateway", "max_upload_mb", 1, 4096, 1 << 20, &self->max_upload_bytes,
                    err) ||
            s_uint (gw, "gateway", "max_body_kb", 1, 65536, 1 << 10, &self->max_body_bytes, err))
            goto done;
    }
    json_t *rl = json_object_get (root, "rate_limit");
    if (rl) {
        static const char *const keys[] = {"rate", "burst", NULL};
        if (s_known (rl, "rate_limit", keys, err))
            goto done;
        v = self->rate_limit;
        if (s_uint (rl, "rate_limit", "rate", 1, 1000000, 1, &v, err))
            goto done;
        self->rate_limit = (uint32_t)v;
        v = self->rate_burst;
        if (s_uint (rl, "rate_limit", "burst", 1, 1000000, 1, &v, err))
            goto done;
        self->rate_burst = (uint32_t)v;
    }
    json_t *sb = json_object_get (root, "sandbox");
    if (sb) {
        static const char *const keys[] = {"test_timeout_s",
                                           "health_timeout_s",
                                           "stop_grace_s",
                                           "launcher",
                                           "isolation",
                                           "bwrap",
                                           "user",
                                           "tmp_mb",
                                           "nofile",
                                           "nproc",
                                           "fsize_mb",
                                           "memory_mb",
                                           "cpu_percent",
                                           "pids_max",
                                           "log_max_kb",
                                           "log_keep",
                                           "restart_base_ms",
                                           "restart_max_ms",
                                           "restart_reset_s",
                                           "crashloop_exits",
                                           "crashloop_window_s",
                                           "health_interval_ms",
                                           "health_failures",
                                           "health_grace_s",
                                           "idle_stop_s",
                                           NULL};
        if (s_known (sb, "sandbox", keys, err))
            goto done;
        struct {
            const char *key;
            uint32_t *field;
            uint64_t min, max, mult;
        } fields[] = {
            {"test_timeout_s", &self->sandbox_test_ms, 1, 3600, 1000},
            {"health_timeout_s", &self->health_timeout_ms, 1, 3600, 1000},
            {"stop_grace_s", &self->stop_grace_ms, 0, 600, 1000},
            {"tmp_mb", &self->tmp_mb, 1, 65536, 1},
            {"nofile", &self->nofile, 16, 1048576, 1},
            {"nproc", &self->nproc, 16, 4194304, 1},
            {"fsize_mb", &self->fsize_mb, 1, 1048576, 1},
            {"memory_mb", &self->memory_mb, 16, 65536, 1},
            {"cpu_percent", &self->cpu_percent, 1, 6400, 1},
            {"pids_max", &self->pids_max, 8, 1000000, 1},
            {"log_max_kb", &self->log_max_kb, 1, 4194304, 1},
            {"log_keep", &self->log_keep, 0, 100, 1},
            {"restart_base_ms", &self->restart_base_ms, 10, 3600000, 1},
            {"restart_max_ms", &self->restart_max_ms, 10, 86400000, 1},
            {"restart_reset_s", &self->restart_reset_ms, 1, 86400, 1000},
            {"crashloop_exits", &self->crashloop_exits, 2, 1000, 1},
            {"crashloop_window_s", &self->crashloop_window_ms, 1, 86400, 1000},
            {"health_interval_ms", &self->health_interval_ms, 100, 3600000, 1},
            {"health_failures", &self->health_failures, 1, 1000, 1},
            {"health_grace_s", &self->health_grace_ms, 0, 3600, 1000},
            {"idle_stop_s", &self->idle_stop_ms, 1, 86400, 1000},
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            v = *fields[i].field; // kept when the key is absent
            if (s_uint (sb, "sandbox", fields[i].key, fields[i].min, fields[i].max, fields[i].mult,
                        &v, err))
                goto done;
            *fields[i].field = (uint32_t)v;
        }
        struct {
            const char *key;
            char **field;
        } strings[] = {{"launcher", &self->launcher},
                       {"isolation", &self->isolation},
                       {"bwrap", &self->bwrap},
                       {"user", &self->module_user}};
        for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
            json_t *value = json_object_get (sb, strings[i].key);
            if (value && !json_is_string (value)) {
                mc_error_set (err, "CONFIG_INVALID", "[sandbox] %s must be a string",
                              strings[i].key);
                goto done;
            }
            if (value) {
                free (*strings[i].field);
                *strings[i].field = strdup (json_string_value (value));
            }
        }
        if (strcmp (self->isolation, "bwrap") && strcmp (self->isolation, "none")) {
            mc_error_set (err, "CONFIG_INVALID",
                          "[sandbox] isolation must be \"bwrap\" or \"none\"");
            goto done;
        }
    }
    json_t *in = json_object_get (root, "install");
    if (in) {
        static const char *const keys[] = {"max_entries", "max_total_mb", "max_entry_mb",
                                           "max_ratio", NULL};
        if (s_known (in, "install", keys, err))
            goto done;
        v = self->zip_limits.max_entries;
        if (s_uint (in, "install", "max_entries", 1, 1000000, 1, &v, err))
            goto done;
        self->zip_limits.max_entries = (size_t)v;
        if (s_uint (in, "install", "max_total_mb", 1, 65536, 1 << 20,
                    &self->zip_limits.max_total_bytes, err) ||
            s_uint (in, "install", "max_entry_mb", 1, 65536, 1 << 20,
                    &self->zip_limits.max_entry_bytes, err) ||
            s_uint (in, "install", "max_ratio", 1, 100000, 1, &self->zip_limits.max_ratio, err))
            goto done;
    }
    json_t *wh = json_object_get (root, "webhook");
    if (wh) {
        static const char *const keys[] = {"timeout_ms", "retry_base_ms", "retry_cap_ms",
                                           "max_age_s",  "threads",       NULL};
        if (s_known (wh, "webhook", keys, err))
            goto done;
        struct {
            const char *key;
            uint32_t *field;
            uint64_t min, max;
        } fields[] = {
            {"timeout_ms", &self->webhook_timeout_ms, 100, 600000},
            {"retry_base_ms", &self->webhook_retry_base_ms, 10, 3600000},
            {"retry_cap_ms", &self->webhook_retry_cap_ms, 10, 86400000},
            {"max_age_s", &self->webhook_max_age_s, 1, 30 * 86400},
            {"threads", &self->webhook_threads, 1, 16},
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            v = *fields[i].field;
            if (s_uint (wh, "webhook", fields[i].key, fields[i].min, fields[i].max, 1, &v, err))
                goto done;
            *fields[i].field = (uint32_t)v;
        }
    }
    json_t *st = json_object_get (root, "storage");
    if (st) {
        static const char *const keys[] = {"max_open", "max_keys", "max_bytes", NULL};
        if (s_known (st, "storage", keys, err))
            goto done;
        v = self->storage_max_open;
        if (s_uint (st, "storage", "max_open", 1, 4096, 1, &v, err) ||
            s_uint (st, "storage", "max_keys", 1, 100000000, 1, &self->storage_max_keys, err) ||
            s_uint (st, "storage", "max_bytes", 1024, 1ull << 40, 1, &self->storage_max_bytes, err))
            goto done;
        self->storage_max_open = (uint32_t)v;
    }
    json_t *sdk = json_object_get (root, "sdk");
    if (sdk) {
        static const char *const keys[] = {"endpoint",  "tcp_endpoint", "workers",
                                           "queue_max", "io_threads",   NULL};
        if (s_known (sdk, "sdk", keys, err))
            goto done;
        const char *names[] = {"endpoint", "tcp_endpoint"};
        char **fields[] = {&self->sdk_endpoint, &self->sdk_tcp_endpoint};
        for (size_t i = 0; i < 2; i++) {
            json_t *e = json_object_get (sdk, names[i]);
            if (e && (!json_is_string (e) || (strncmp (json_string_value (e), "ipc://", 6) != 0 &&
                                              strncmp (json_string_value (e), "tcp://", 6) != 0))) {
                mc_error_set (err, "CONFIG_INVALID", "[sdk] %s must be an ipc:// or tcp:// string",
                              names[i]);
                goto done;
            }
            if (e) {
                free (*fields[i]);
                *fields[i] = strdup (json_string_value (e));
            }
        }
        v = (uint64_t)self->sdk_workers;
        if (s_uint (sdk, "sdk", "workers", 1, 64, 1, &v, err))
            goto done;
        self->sdk_workers = (int)v;
        v = self->sdk_queue_max;
        if (s_uint (sdk, "sdk", "queue_max", 1, 1000000, 1, &v, err))
            goto done;
        self->sdk_queue_max = (uint32_t)v;
        v = (uint64_t)self->sdk_io_threads;
        if (s_uint (sdk, "sdk", "io_threads", 1, 16, 1, &v, err))
            goto done;
        self->sdk_io_threads = (int)v;
    }
    json_t *metrics = json_object_get (root, "metrics");
    if (metrics) {
        static const char *const keys[] = {"loopback_open", NULL};
        if (s_known (metrics, "metrics", keys, err))
            goto done;
        json_t *open = json_object_get (metrics, "loopback_open");
        if (open && !json_is_boolean (open)) {
            mc_error_set (err, "CONFIG_INVALID", "[metrics] loopback_open must be true or false");
            goto done;
        }
        self->metrics_loopback_open = json_is_true (open);
    }
    json_t *bench = json_object_get (root, "bench");
    if (bench) {
        static const char *const keys[] = {"token_route", NULL};
        if (s_known (bench, "bench", keys, err))
            goto done;
        json_t *route = json_object_get (bench, "token_route");
        if (route && !json_is_boolean (route)) {
            mc_error_set (err, "CONFIG_INVALID", "[bench] token_route must be true or false");
            goto done;
        }
        self->bench_token_route = json_is_true (route);
    }
    json_t *modules = json_object_get (root, "modules");
    if (modules) {
        const char *name;
        json_t *table;
        int tables = json_is_object (modules);
        json_object_foreach (modules, name, table)
        {
            if (!json_is_object (table))
                tables = 0;
        }
        if (!tables) {
            mc_error_set (err, "CONFIG_INVALID", "[modules] must be a table of tables");
            goto done;
        }
        json_object_update (self->modules, modules);
    }
    rc = 0;
done:
    json_decref (root);
    return rc;
}

int mc_config_finish (mc_config_t *self, mc_error_t *err)
{
    if (self->data_dir[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd (cwd, sizeof cwd))
            return mc_error_set (err, "CONFIG_INVALID", "cannot resolve the current directory");
        char *abs = NULL;
        const char *rel = self->data_dir;
        while (strncmp (rel, "./", 2) == 0)
            rel += 2;
        if (asprintf (&abs, "%s/%s", cwd, rel) < 0)
            abort ();
        free (self->data_dir);
        self->data_dir = abs;
    }
    size_t n = strlen (self->data_dir);
    if (n > 3000) // paths below it are built in fixed buffers of 4 KiB
        return mc_error_set (err, "CONFIG_INVALID", "data dir path is too long");
    while (n > 1 && self->data_dir[n - 1] == '/')
        self->data_dir[--n] = 0;
    if (!self->sdk_endpoint &&
        asprintf (&self->sdk_endpoint, "ipc://%s/run/modcore.sock", self->data_dir) < 0)
        abort ();
    if (!self->launcher) {
        char exe[PATH_MAX];
        ssize_t len = readlink ("/proc/self/exe", exe, sizeof exe - 1);
        if (len <= 0)
            return mc_error_set (err, "CONFIG_INVALID", "cannot find modcore-launch");
        exe[len] = 0;
        if (asprintf (&self->launcher, "%s/modcore-launch", dirname (exe)) < 0)
            abort ();
    }
    if (strcmp (self->isolation, "bwrap") == 0 && access (self->bwrap, X_OK) != 0)
        return mc_error_set (err, "CONFIG_INVALID",
                             "bubblewrap (%s) is not executable: install the bubblewrap package, "
                             "set [sandbox] bwrap, or (unsafe) isolation = \"none\"",
                             self->bwrap);
    //  Modules run as an unprivileged user: "nobody" by default when the core is root.
    if (!self->module_user && geteuid () == 0)
        self->module_user = strdup ("nobody");
    if (self->module_user && *self->module_user) {
        struct passwd *pw = getpwnam (self->module_user);
        if (!pw)
            return mc_error_set (err, "CONFIG_INVALID", "[sandbox] user %s does not exist",
                                 self->module_user);
        if (geteuid () != 0 && pw->pw_uid != geteuid ())
            return mc_error_set (err, "CONFIG_INVALID",
                                 "[sandbox] user %s: only a core running as root can run modules "
                                 "as another user",
                                 self->module_user);
        self->module_uid = (long)pw->pw_uid;
        self->module_gid = (long)pw->pw_gid;
    }
    if (access (self->launcher, X_OK) != 0)
        return mc_error_set (err, "CONFIG_INVALID", "launcher %s is not executable",
                             self->launcher);
    return 0;
}
