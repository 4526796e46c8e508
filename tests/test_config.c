/*  Unit suite for core/config and core/toml: defaults, every documented key of a
    config file, refusals (unknown keys, wrong types, out of range, bad syntax) and the
    TOML to JSON mapping config files and module.toml manifests share. */
#include "core/config.h"
#include "core/toml.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  A scratch directory with one config file in it.
typedef struct {
    char *dir;       // temporary directory (owned)
    char path[4400]; // dir/modcore.toml
} s_case_t;

static void s_case_open (s_case_t *c)
{
    c->dir = mc_test_tmpdir ("config");
    CU_ASSERT_PTR_NOT_NULL_FATAL (c->dir);
    snprintf (c->path, sizeof c->path, "%s/modcore.toml", c->dir);
}

static void s_case_close (s_case_t *c)
{
    mc_test_rmtree (c->dir);
    free (c->dir);
    c->dir = NULL;
}

//  Loads text as a config file over the defaults. Returns the config (caller
//  destroys) with *rc and *err from mc_config_load_file.
static mc_config_t *s_load (const char *text, int *rc, mc_error_t *err)
{
    s_case_t c;
    s_case_open (&c);
    CU_ASSERT_FATAL (mc_test_write_file (c.path, text, strlen (text)) == 0);
    mc_config_t *config = mc_config_new ();
    *rc = mc_config_load_file (config, c.path, err);
    s_case_close (&c);
    return config;
}

//  True if text is refused with CONFIG_INVALID and a detail containing needle.
//  Prints what happened when not.
static bool s_refused (const char *text, const char *needle)
{
    mc_error_t err = {{0}, {0}};
    int rc = 0;
    mc_config_t *config = s_load (text, &rc, &err);
    bool ok = rc == -1 && strcmp (err.code, "CONFIG_INVALID") == 0 && strstr (err.detail, needle);
    if (!ok)
        fprintf (stderr, "\n  expected refusal with '%s' for:\n%s  got rc=%d %s: %s\n", needle,
                 text, rc, err.code, err.detail);
    mc_config_destroy (&config);
    return ok;
}

//  True if the TOML text parses to the JSON text (compared as values).
static bool s_toml_is (const char *toml, const char *json)
{
    char err[256] = "";
    json_t *got = mc_toml_parse (toml, strlen (toml), err, sizeof err);
    json_t *want = json_loads (json, JSON_DECODE_ANY, NULL);
    bool ok = got && want && json_equal (got, want);
    if (!ok) {
        char *text = got ? json_dumps (got, JSON_SORT_KEYS) : NULL;
        fprintf (stderr, "\n  TOML:\n%s  expected %s\n  got %s %s\n", toml, json,
                 text ? text : "(error)", err);
        free (text);
    }
    json_decref (got);
    json_decref (want);
    return ok;
}

static void test_defaults (void)
{
    mc_config_t *config = mc_config_new ();
    CU_ASSERT_STRING_EQUAL (config->data_dir, "./data");
    CU_ASSERT_STRING_EQUAL (config->listen_host, "127.0.0.1");
    CU_ASSERT_EQUAL (config->listen_port, 7070);
    CU_ASSERT_EQUAL (config->gateway_threads, 64);
    CU_ASSERT_EQUAL (config->keep_alive_ms, 5000);
    CU_ASSERT_EQUAL (config->max_upload_bytes, 64ull << 20);
    CU_ASSERT_EQUAL (config->max_body_bytes, 64ull << 10);
    CU_ASSERT_EQUAL (config->rate_limit, 100);
    CU_ASSERT_EQUAL (config->rate_burst, 20);
    CU_ASSERT_EQUAL (config->sandbox_test_ms, 60000);
    CU_ASSERT_EQUAL (config->health_timeout_ms, 30000);
    CU_ASSERT_EQUAL (config->stop_grace_ms, 10000);
    CU_ASSERT_EQUAL (config->call_timeout_ms, 5000);
    CU_ASSERT_EQUAL (config->webhook_timeout_ms, 5000);
    CU_ASSERT_EQUAL (config->webhook_retry_base_ms, 1000);
    CU_ASSERT_EQUAL (config->webhook_retry_cap_ms, 3600000);
    CU_ASSERT_EQUAL (config->webhook_max_age_s, 86400);
    CU_ASSERT_EQUAL (config->webhook_threads, 2);
    CU_ASSERT_EQUAL (config->sdk_workers, 4);
    CU_ASSERT_EQUAL (config->sdk_queue_max, 1024);
    CU_ASSERT_EQUAL (config->sdk_io_threads, 2);
    mc_zipx_limits_t zip;
    mc_zipx_limits_default (&zip);
    CU_ASSERT_EQUAL (config->zip_limits.max_entries, zip.max_entries);
    CU_ASSERT_EQUAL (config->zip_limits.max_total_bytes, zip.max_total_bytes);
    CU_ASSERT_EQUAL (config->zip_limits.max_entry_bytes, zip.max_entry_bytes);
    CU_ASSERT_EQUAL (config->zip_limits.max_ratio, zip.max_ratio);
    CU_ASSERT_PTR_NULL (config->launcher);
    CU_ASSERT_PTR_NULL (config->config_path);
    CU_ASSERT (json_is_object (config->modules) && json_object_size (config->modules) == 0);
    mc_config_destroy (&config);
    CU_ASSERT_PTR_NULL (config);
    mc_config_destroy (&config);
}

static void test_every_key (void)
{
    const char *text = "# every documented key\n"
                       "[core]\n"
                       "data_dir = \"/srv/modcore\"\n"
                       "listen = \"0.0.0.0:8443\"\n"
                       "[gateway]\n"
                       "threads = 8\n"
                       "keep_alive_ms = 1500\n"
                       "max_upload_mb = 16\n"
                       "max_body_kb = 128\n"
                       "[rate_limit]\n"
                       "rate = 250\n"
                       "burst = 40\n"
                       "[sandbox]\n"
                       "test_timeout_s = 90\n"
                       "health_timeout_s = 15\n"
                       "stop_grace_s = 0\n"
                       "launcher = \"/usr/libexec/modcore-launch\"\n"
                       "[install]\n"
                       "max_entries = 500\n"
                       "max_total_mb = 200\n"
                       "max_entry_mb = 50\n"
                       "max_ratio = 30\n"
                       "[webhook]\n"
                       "timeout_ms = 2500\n"
                       "retry_base_ms = 250\n"
                       "retry_cap_ms = 60000\n"
                       "max_age_s = 3600\n"
                       "threads = 3\n"
                       "[sdk]\n"
                       "workers = 8\n"
                       "queue_max = 64\n"
                       "io_threads = 3\n";
    s_case_t c;
    s_case_open (&c);
    CU_ASSERT_FATAL (mc_test_write_file (c.path, text, strlen (text)) == 0);
    mc_config_t *config = mc_config_new ();
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_EQUAL_FATAL (mc_config_load_file (config, c.path, &err), 0);
    CU_ASSERT_STRING_EQUAL (config->config_path, c.path);
    CU_ASSERT_STRING_EQUAL (config->data_dir, "/srv/modcore");
    CU_ASSERT_STRING_EQUAL (config->listen_host, "0.0.0.0");
    CU_ASSERT_EQUAL (config->listen_port, 8443);
    CU_ASSERT_EQUAL (config->gateway_threads, 8);
    CU_ASSERT_EQUAL (config->keep_alive_ms, 1500);
    CU_ASSERT_EQUAL (config->max_upload_bytes, 16ull << 20);
    CU_ASSERT_EQUAL (config->max_body_bytes, 128ull << 10);
    CU_ASSERT_EQUAL (config->rate_limit, 250);
    CU_ASSERT_EQUAL (config->rate_burst, 40);
    CU_ASSERT_EQUAL (config->sandbox_test_ms, 90000);
    CU_ASSERT_EQUAL (config->health_timeout_ms, 15000);
    CU_ASSERT_EQUAL (config->stop_grace_ms, 0);
    CU_ASSERT_STRING_EQUAL (config->launcher, "/usr/libexec/modcore-launch");
    CU_ASSERT_EQUAL (config->zip_limits.max_entries, 500);
    CU_ASSERT_EQUAL (config->zip_limits.max_total_bytes, 200ull << 20);
    CU_ASSERT_EQUAL (config->zip_limits.max_entry_bytes, 50ull << 20);
    CU_ASSERT_EQUAL (config->zip_limits.max_ratio, 30);
    CU_ASSERT_EQUAL (config->webhook_timeout_ms, 2500);
    CU_ASSERT_EQUAL (config->webhook_retry_base_ms, 250);
    CU_ASSERT_EQUAL (config->webhook_retry_cap_ms, 60000);
    CU_ASSERT_EQUAL (config->webhook_max_age_s, 3600);
    CU_ASSERT_EQUAL (config->webhook_threads, 3);
    CU_ASSERT_EQUAL (config->sdk_workers, 8);
    CU_ASSERT_EQUAL (config->sdk_queue_max, 64);
    CU_ASSERT_EQUAL (config->sdk_io_threads, 3);
    //  Not settable from the file.
    CU_ASSERT_EQUAL (config->call_timeout_ms, 5000);
    mc_config_destroy (&config);
    s_case_close (&c);
}

//  A file setting some keys leaves the others at their defaults (or earlier values).
static void test_partial_file (void)
{
    mc_error_t err = {{0}, {0}};
    int rc = -1;
    mc_config_t *config = s_load ("[rate_limit]\nburst = 5\n", &rc, &err);
    CU_ASSERT_EQUAL (rc, 0);
    CU_ASSERT_EQUAL (config->rate_burst, 5);
    CU_ASSERT_EQUAL (config->rate_limit, 100);
    CU_ASSERT_EQUAL (config->gateway_threads, 64);
    CU_ASSERT_STRING_EQUAL (config->data_dir, "./data");
    mc_config_destroy (&config);
    //  An empty file is a valid config.
    config = s_load ("", &rc, &err);
    CU_ASSERT_EQUAL (rc, 0);
    CU_ASSERT_EQUAL (config->listen_port, 7070);
    mc_config_destroy (&config);
}

static void test_unknown_key (void)
{
    CU_ASSERT (s_refused ("[gateway]\ntreads = 8\n", "unknown key 'treads' in [gateway]"));
    CU_ASSERT (s_refused ("[core]\ndata-dir = \"/x\"\n", "'data-dir'"));
    CU_ASSERT (s_refused ("[rate_limit]\nrate = 5\nburts = 3\n", "'burts'"));
    CU_ASSERT (s_refused ("[sandbox]\nlaucher = \"/x\"\n", "'laucher'"));
    CU_ASSERT (s_refused ("[install]\nmax_files = 3\n", "'max_files'"));
    CU_ASSERT (s_refused ("[webhook]\nretries = 3\n", "unknown key 'retries' in [webhook]"));
    CU_ASSERT (s_refused ("[gatway]\nthreads = 8\n", "unknown key 'gatway' in [top level]"));
    CU_ASSERT (s_refused ("rate = 5\n", "'rate'"));
}

static void test_wrong_type (void)
{
    CU_ASSERT (s_refused ("[gateway]\nthreads = \"8\"\n", "[gateway] threads must be an integer"));
    CU_ASSERT (s_refused ("[gateway]\nthreads = 8.0\n", "threads"));
    CU_ASSERT (s_refused ("[rate_limit]\nrate = true\n", "[rate_limit] rate"));
    CU_ASSERT (s_refused ("[core]\ndata_dir = 5\n", "[core] data_dir must be a string"));
    CU_ASSERT (s_refused ("[core]\nlisten = 8080\n", "[core] listen"));
    CU_ASSERT (s_refused ("[sandbox]\nlauncher = [\"a\"]\n", "[sandbox] launcher"));
    //  A section that is not a table is a mistake, not an empty section.
    CU_ASSERT (s_refused ("gateway = 5\n", "[gateway] must be a table"));
    CU_ASSERT (s_refused ("rate_limit = 200\n", "[rate_limit] must be a table"));
    CU_ASSERT (s_refused ("core = \"/srv\"\n", "[core] must be a table"));
    CU_ASSERT (s_refused ("sandbox = [1]\n", "[sandbox] must be a table"));
    CU_ASSERT (s_refused ("install = true\n", "[install] must be a table"));
    CU_ASSERT (s_refused ("modules = 5\n", "[modules] must be a table of tables"));
    CU_ASSERT (s_refused ("[modules]\nfoo = 5\n", "[modules] must be a table of tables"));
    //  Out of range, at both ends.
    CU_ASSERT (s_refused ("[gateway]\nthreads = 1\n", "threads must be an integer in 2..4096"));
    CU_ASSERT (s_refused ("[gateway]\nthreads = 4097\n", "threads"));
    CU_ASSERT (s_refused ("[gateway]\nmax_body_kb = -1\n", "max_body_kb"));
    CU_ASSERT (s_refused ("[rate_limit]\nrate = 0\n", "rate"));
    CU_ASSERT (s_refused ("[rate_limit]\nburst = 1000001\n", "burst"));
    CU_ASSERT (s_refused ("[sandbox]\nstop_grace_s = 601\n", "stop_grace_s"));
    CU_ASSERT (s_refused ("[install]\nmax_ratio = 0\n", "max_ratio"));
    CU_ASSERT (s_refused ("[webhook]\ntimeout_ms = 99\n", "[webhook] timeout_ms"));
    CU_ASSERT (s_refused ("[webhook]\nmax_age_s = \"1d\"\n", "[webhook] max_age_s"));
    CU_ASSERT (s_refused ("webhook = 1\n", "[webhook] must be a table"));
    CU_ASSERT (s_refused ("[webhook]\nthreads = 0\n", "[webhook] threads"));
    CU_ASSERT (s_refused ("[webhook]\nthreads = 17\n", "[webhook] threads"));
    CU_ASSERT (s_refused ("[sdk]\nio_threads = 0\n", "[sdk] io_threads"));
    CU_ASSERT (s_refused ("[sdk]\nio_threads = 17\n", "[sdk] io_threads"));
    CU_ASSERT (s_refused ("[core]\nlisten = \"host:99999\"\n", "[core] listen"));
    //  The edges themselves are accepted.
    mc_error_t err = {{0}, {0}};
    int rc = -1;
    mc_config_t *config = s_load ("[gateway]\nthreads = 4096\nkeep_alive_ms = 0\n", &rc, &err);
    CU_ASSERT_EQUAL (rc, 0);
    CU_ASSERT_EQUAL (config->gateway_threads, 4096);
    CU_ASSERT_EQUAL (config->keep_alive_ms, 0);
    mc_config_destroy (&config);
}

static void test_bad_syntax (void)
{
    CU_ASSERT (s_refused ("[core]\nlisten = \"127.0.0.1:1\"\nthreads = = 3\n", "line 3"));
    CU_ASSERT (s_refused ("[gateway\nthreads = 3\n", "line 1"));
    CU_ASSERT (s_refused ("[gateway]\nthreads = 3\nthreads = 4\n", "line 3"));
    CU_ASSERT (s_refused ("x = \"unterminated\n", "line 1"));
    //  The file is named in the detail.
    CU_ASSERT (s_refused ("what is this", "modcore.toml"));
    //  A missing file.
    mc_config_t *config = mc_config_new ();
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_EQUAL (mc_config_load_file (config, "/nonexistent/modcore.toml", &err), -1);
    CU_ASSERT_STRING_EQUAL (err.code, "CONFIG_INVALID");
    CU_ASSERT_PTR_NOT_NULL (strstr (err.detail, "/nonexistent/modcore.toml"));
    CU_ASSERT_PTR_NULL (config->config_path);
    mc_config_destroy (&config);
}

static void test_set_listen (void)
{
    mc_config_t *config = mc_config_new ();
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_EQUAL (mc_config_set_listen (config, "127.0.0.1:8080", &err), 0);
    CU_ASSERT_STRING_EQUAL (config->listen_host, "127.0.0.1");
    CU_ASSERT_EQUAL (config->listen_port, 8080);
    CU_ASSERT_EQUAL (mc_config_set_listen (config, "0.0.0.0:7000", &err), 0);
    CU_ASSERT_STRING_EQUAL (config->listen_host, "0.0.0.0");
    //  ":PORT" and "PORT" keep the host.
    CU_ASSERT_EQUAL (mc_config_set_listen (config, ":0", &err), 0);
    CU_ASSERT_STRING_EQUAL (config->listen_host, "0.0.0.0");
    CU_ASSERT_EQUAL (config->listen_port, 0);
    CU_ASSERT_EQUAL (mc_config_set_listen (config, "9000", &err), 0);
    CU_ASSERT_STRING_EQUAL (config->listen_host, "0.0.0.0");
    CU_ASSERT_EQUAL (config->listen_port, 9000);
    CU_ASSERT_EQUAL (mc_config_set_listen (config, "localhost:65535", &err), 0);
    CU_ASSERT_STRING_EQUAL (config->listen_host, "localhost");
    CU_ASSERT_EQUAL (config->listen_port, 65535);
    //  Refusals leave host and port as they were.
    const char *bad[] = {"bad:port", "host:", ":", "", "host:65536", "host:-1", "8080x", "h:80 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset (&err, 0, sizeof err);
        CU_ASSERT_EQUAL (mc_config_set_listen (config, bad[i], &err), -1);
        CU_ASSERT_STRING_EQUAL (err.code, "CONFIG_INVALID");
        CU_ASSERT_STRING_EQUAL (config->listen_host, "localhost");
        CU_ASSERT_EQUAL (config->listen_port, 65535);
    }
    mc_config_destroy (&config);
}

static void test_modules_tables (void)
{
    const char *text = "[modules.foo]\n"
                       "api_key = \"abc\"\n"
                       "interval = 30\n"
                       "[modules.foo.nested]\n"
                       "on = true\n"
                       "[modules.\"bar-baz\"]\n"
                       "list = [1, 2]\n";
    mc_error_t err = {{0}, {0}};
    int rc = -1;
    mc_config_t *config = s_load (text, &rc, &err);
    CU_ASSERT_EQUAL_FATAL (rc, 0);
    json_t *want = json_loads ("{\"foo\": {\"api_key\": \"abc\", \"interval\": 30,"
                               " \"nested\": {\"on\": true}}, \"bar-baz\": {\"list\": [1, 2]}}",
                               0, NULL);
    CU_ASSERT (json_equal (config->modules, want));
    json_decref (want);
    mc_config_destroy (&config);
}

//  A second file applies over the first: values replaced, module tables merged.
static void test_two_files (void)
{
    s_case_t c;
    s_case_open (&c);
    mc_config_t *config = mc_config_new ();
    mc_error_t err = {{0}, {0}};
    const char *first = "[rate_limit]\nrate = 7\n[modules.a]\nx = 1\n";
    CU_ASSERT_FATAL (mc_test_write_file (c.path, first, strlen (first)) == 0);
    CU_ASSERT_EQUAL (mc_config_load_file (config, c.path, &err), 0);
    const char *second = "[rate_limit]\nburst = 3\n[modules.b]\ny = 2\n";
    CU_ASSERT_FATAL (mc_test_write_file (c.path, second, strlen (second)) == 0);
    CU_ASSERT_EQUAL (mc_config_load_file (config, c.path, &err), 0);
    CU_ASSERT_EQUAL (config->rate_limit, 7);
    CU_ASSERT_EQUAL (config->rate_burst, 3);
    CU_ASSERT_PTR_NOT_NULL (json_object_get (config->modules, "a"));
    CU_ASSERT_PTR_NOT_NULL (json_object_get (config->modules, "b"));
    mc_config_destroy (&config);
    s_case_close (&c);
}

static void test_finish (void)
{
    mc_config_t *config = mc_config_new ();
    mc_error_t err = {{0}, {0}};
    config->launcher = strdup ("/bin/sh");
    CU_ASSERT_EQUAL (mc_config_finish (config, &err), 0);
    //  "./data" becomes <cwd>/data.
    char cwd[4096], want[4200];
    CU_ASSERT_FATAL (getcwd (cwd, sizeof cwd) != NULL);
    snprintf (want, sizeof want, "%s/data", cwd);
    CU_ASSERT_STRING_EQUAL (config->data_dir, want);
    //  Trailing slashes go; an absolute path stays.
    free (config->data_dir);
    config->data_dir = strdup ("/srv/modcore//");
    CU_ASSERT_EQUAL (mc_config_finish (config, &err), 0);
    CU_ASSERT_STRING_EQUAL (config->data_dir, "/srv/modcore");
    free (config->data_dir);
    config->data_dir = strdup ("/");
    CU_ASSERT_EQUAL (mc_config_finish (config, &err), 0);
    CU_ASSERT_STRING_EQUAL (config->data_dir, "/");
    //  A launcher that cannot be run.
    free (config->launcher);
    config->launcher = strdup ("/nonexistent/modcore-launch");
    CU_ASSERT_EQUAL (mc_config_finish (config, &err), -1);
    CU_ASSERT_STRING_EQUAL (err.code, "CONFIG_INVALID");
    CU_ASSERT_PTR_NOT_NULL (strstr (err.detail, "/nonexistent/modcore-launch"));
    mc_config_destroy (&config);
}

static void test_toml_values (void)
{
    CU_ASSERT (s_toml_is ("", "{}"));
    CU_ASSERT (s_toml_is ("s = \"text\"\nl = 'literal \\\\n'\nm = \"\"\"\nmulti\nline\"\"\"\n"
                          "u = \"caf\\u00e9\"\n",
                          "{\"s\": \"text\", \"l\": \"literal \\\\\\\\n\", \"m\": \"multi\\nline\","
                          " \"u\": \"caf\\u00e9\"}"));
    CU_ASSERT (
        s_toml_is ("i = 42\nn = -17\nh = 0xff\no = 0o17\nb = 0b101\nbig = 9223372036854775807\n"
                   "sep = 1_000\n",
                   "{\"i\": 42, \"n\": -17, \"h\": 255, \"o\": 15, \"b\": 5,"
                   " \"big\": 9223372036854775807, \"sep\": 1000}"));
    CU_ASSERT (s_toml_is ("f = 3.5\ng = -0.25\ne = 1e3\nz = 0.0\n",
                          "{\"f\": 3.5, \"g\": -0.25, \"e\": 1000.0, \"z\": 0.0}"));
    CU_ASSERT (s_toml_is ("t = true\nf = false\n", "{\"t\": true, \"f\": false}"));
    CU_ASSERT (s_toml_is ("d = 1979-05-27\n"
                          "lt = 07:32:00\n"
                          "ldt = 1979-05-27T07:32:00\n"
                          "utc = 1979-05-27T07:32:00Z\n"
                          "off = 1979-05-27T00:32:00-07:00\n"
                          "frac = 1979-05-27T00:32:00.999999-07:00\n",
                          "{\"d\": \"1979-05-27\", \"lt\": \"07:32:00\","
                          " \"ldt\": \"1979-05-27T07:32:00\", \"utc\": \"1979-05-27T07:32:00Z\","
                          " \"off\": \"1979-05-27T00:32:00-07:00\","
                          " \"frac\": \"1979-05-27T00:32:00.999999-07:00\"}"));
    CU_ASSERT (s_toml_is ("a = [1, 2, 3]\ne = []\nmixed = [\"x\", [1, 2], {k = 1}]\n"
                          "multi = [\n  \"a\",\n  \"b\", # comment\n]\n",
                          "{\"a\": [1, 2, 3], \"e\": [], \"mixed\": [\"x\", [1, 2], {\"k\": 1}],"
                          " \"multi\": [\"a\", \"b\"]}"));
    CU_ASSERT (s_toml_is ("[a.b.c]\nk = 'v'\n[a]\nx = 1\n[a.b]\ny = 2\n",
                          "{\"a\": {\"x\": 1, \"b\": {\"y\": 2, \"c\": {\"k\": \"v\"}}}}"));
    CU_ASSERT (
        s_toml_is ("p.q.r = 1\ninline = {x = 1, y = {z = true}}\n",
                   "{\"p\": {\"q\": {\"r\": 1}}, \"inline\": {\"x\": 1, \"y\": {\"z\": true}}}"));
    CU_ASSERT (
        s_toml_is ("[[fruit]]\nname = 'apple'\n[[fruit]]\nname = 'banana'\n[[fruit.kind]]\nk = 1\n",
                   "{\"fruit\": [{\"name\": \"apple\"},"
                   " {\"name\": \"banana\", \"kind\": [{\"k\": 1}]}]}"));
    //  A NUL inside a string survives (json_stringn, not strlen).
    char err[256] = "";
    const char *nul = "s = \"a\\u0000b\"\n";
    json_t *got = mc_toml_parse (nul, strlen (nul), err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL (got);
    CU_ASSERT_EQUAL (json_string_length (json_object_get (got, "s")), 3);
    json_decref (got);
}

static void test_toml_errors (void)
{
    const struct {
        const char *text;
        const char *where;
    } cases[] = {
        {"a = \n", "line 1, column 5"},     {"x = 1\ny = 2\nz = = 3\n", "line 3, column 5"},
        {"x = 1\nx = 2\n", "line 2"},       {"[t]\n[t]\n", "line 2"},
        {"s = \"unterminated\n", "line 1"}, {"a = [1, 2\n", "line"},
        {"\xff = 1\n", "line 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        json_t *got = mc_toml_parse (cases[i].text, strlen (cases[i].text), err, sizeof err);
        CU_ASSERT_PTR_NULL (got);
        json_decref (got);
        if (!strstr (err, cases[i].where)) {
            fprintf (stderr, "\n  expected '%s' in '%s'\n", cases[i].where, err);
            CU_FAIL ("error without its position");
        }
    }
    //  Text is taken by length, not up to a NUL.
    char err[256] = "";
    json_t *got = mc_toml_parse ("a = 1\0garbage = = =", 5, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL (got);
    json_decref (got);
    //  Files: missing, and over 1 MiB.
    CU_ASSERT_PTR_NULL (mc_toml_parse_file ("/nonexistent.toml", err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL (strstr (err, "cannot open"));
    s_case_t c;
    s_case_open (&c);
    size_t big_len = (1u << 20) + 100;
    char *big = malloc (big_len);
    memset (big, '#', big_len);
    big[big_len - 1] = '\n';
    CU_ASSERT_FATAL (mc_test_write_file (c.path, big, big_len) == 0);
    free (big);
    CU_ASSERT_PTR_NULL (mc_toml_parse_file (c.path, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL (strstr (err, "larger than 1 MiB"));
    s_case_close (&c);
}

void mc_test_config (void)
{
    CU_pSuite suite = CU_add_suite ("config", NULL, NULL);
    CU_add_test (suite, "defaults", test_defaults);
    CU_add_test (suite, "every key", test_every_key);
    CU_add_test (suite, "partial file", test_partial_file);
    CU_add_test (suite, "unknown key", test_unknown_key);
    CU_add_test (suite, "wrong type and range", test_wrong_type);
    CU_add_test (suite, "bad syntax", test_bad_syntax);
    CU_add_test (suite, "set listen", test_set_listen);
    CU_add_test (suite, "modules tables", test_modules_tables);
    CU_add_test (suite, "two files", test_two_files);
    CU_add_test (suite, "finish", test_finish);
    CU_add_test (suite, "toml values", test_toml_values);
    CU_add_test (suite, "toml errors", test_toml_errors);
}
