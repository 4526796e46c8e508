/*  /api/v1/modules: install, list, inspect, start, stop, uninstall (admin token or a
    SYSTEM module), and /modules/self (any module token). Answers come from the
    registry actor; installs can take as long as the sandbox test plus the health
    wait, so their call waits that long. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/fsutil.h"
#include "core/perms.h"
#include "core/token.h"
#include "gateway/http.h"

//  Sends the module record of a registry reply (with its resource use), or its error.
static int s_answer_record (mc_http_req_t *req, mc_env_t *reply, int ok_status)
{
    int status;
    if (reply->status == MC__STATUS__STATUS_OK && reply->body_case == MC__ENVELOPE__BODY_MODULE) {
        json_t *record = mc_http_record_json (reply->module);
        json_t *usage = mc_http_usage (req, reply->module->name);
        json_t *mine = json_object_get (usage, reply->module->name);
        json_object_set (record, "usage", mine ? mine : json_null ());
        json_decref (usage);
        status = mc_http_json (req, ok_status, record);
    } else if (reply->status == MC__STATUS__STATUS_OK)
        status = mc_http_error (req, 500, "INTERNAL", "the registry sent no record");
    else
        status = mc_http_actor_error (req, reply);
    mc_env_free (reply);
    return status;
}

//  Which registry operation a by-name route asks for.
typedef enum { OP_GET, OP_START, OP_STOP, OP_UNINSTALL } name_op_t;

static int s_registry_name_call (mc_http_req_t *req, name_op_t op)
{
    char *name = req->params[0];
    const mc_config_t *cfg = req->ctx->config;
    Mc__RegistryGet get = MC__REGISTRY_GET__INIT;
    Mc__RegistryStart start = MC__REGISTRY_START__INIT;
    Mc__RegistryStop stop = MC__REGISTRY_STOP__INIT;
    Mc__RegistryUninstall uninstall = MC__REGISTRY_UNINSTALL__INIT;
    mc_env_t env = MC__ENVELOPE__INIT;
    int timeout = (int)(cfg->stop_grace_ms + 20000);
    if (op == OP_GET) {
        get.name = name;
        env.body_case = MC__ENVELOPE__BODY_REGISTRY_GET;
        env.registry_get = &get;
        timeout = (int)cfg->call_timeout_ms;
    } else if (op == OP_START) {
        start.name = name;
        env.body_case = MC__ENVELOPE__BODY_REGISTRY_START;
        env.registry_start = &start;
        timeout = (int)(cfg->health_timeout_ms + cfg->stop_grace_ms + 20000);
    } else if (op == OP_STOP) {
        stop.name = name;
        env.body_case = MC__ENVELOPE__BODY_REGISTRY_STOP;
        env.registry_stop = &stop;
    } else {
        uninstall.name = name;
        env.body_case = MC__ENVELOPE__BODY_REGISTRY_UNINSTALL;
        env.registry_uninstall = &uninstall;
    }
    mc_env_t *reply = mc_http_call (req, req->thread->registry, &env, timeout);
    return reply ? s_answer_record (req, reply, 200) : 504;
}

int mc_api_modules_get (mc_http_req_t *req)
{
    return s_registry_name_call (req, OP_GET);
}

int mc_api_modules_start (mc_http_req_t *req)
{
    return s_registry_name_call (req, OP_START);
}

int mc_api_modules_stop (mc_http_req_t *req)
{
    return s_registry_name_call (req, OP_STOP);
}

int mc_api_modules_uninstall (mc_http_req_t *req)
{
    return s_registry_name_call (req, OP_UNINSTALL);
}

int mc_api_modules_self (mc_http_req_t *req)
{
    if (req->principal.kind != MC_KIND_MODULE)
        return mc_http_error (req, 400, "NOT_A_MODULE",
                              "/modules/self answers module tokens; this token has no module");
    snprintf (req->params[0], sizeof req->params[0], "%s", req->principal.name);
    return s_registry_name_call (req, OP_GET);
}

int mc_api_modules_list (mc_http_req_t *req)
{
    Mc__RegistryList list = MC__REGISTRY_LIST__INIT;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_LIST;
    env.registry_list = &list;
    mc_env_t *reply =
        mc_http_ask (req, req->thread->registry, &env, MC__ENVELOPE__BODY_MODULE_LIST);
    if (!reply)
        return mc_http_status (req);
    json_t *modules = json_array ();
    json_t *usage = mc_http_usage (req, NULL);
    for (size_t i = 0; i < reply->module_list->n_modules; i++) {
        const Mc__ModuleRecord *rec = reply->module_list->modules[i];
        json_t *record = mc_http_record_json (rec);
        json_t *mine = json_object_get (usage, rec->name);
        json_object_set (record, "usage", mine ? mine : json_null ());
        json_array_append_new (modules, record);
    }
    json_decref (usage);
    int status = mc_http_json (req, 200, json_pack ("{s:o}", "modules", modules));
    mc_env_free (reply);
    return status;
}

//  --- install ---------------------------------------------------------------------

//  Streams the request body into fd, at most max bytes. Returns the byte count, or -1
//  after sending an error. The copy buffer is on the heap: civetweb's worker threads
//  have 100 KiB stacks, and a 64 KiB frame below the error path overflowed them.
#define S_COPY_BUFFER 65536
static long long s_body_to_file (mc_http_req_t *req, int fd, uint64_t max)
{
    long long declared = req->info->content_length;
    if (declared > (long long)max) {
        mc_http_close_after (req);
        mc_http_error (req, 413, "PAYLOAD_TOO_LARGE", "upload of %lld bytes; at most %llu accepted",
                       declared, (unsigned long long)max);
        return -1;
    }
    char *buf = malloc (S_COPY_BUFFER);
    assert (buf);
    long long have = 0;
    int error = 0; // 413, 500 (errno in write_errno), or 0
    int write_errno = 0;
    for (;;) {
        int n = mc_http_read_raw (req, buf, S_COPY_BUFFER);
        if (n <= 0)
            break;
        have += n;
        if ((uint64_t)have > max) {
            error = 413;
            break;
        }
        if (write (fd, buf, (size_t)n) != n) {
            error = 500;
            write_errno = errno;
            break;
        }
    }
    free (buf);
    if (error == 413) {
        mc_http_close_after (req);
        mc_http_error (req, 413, "PAYLOAD_TOO_LARGE", "upload larger than %llu bytes",
                       (unsigned long long)max);
        return -1;
    }
    if (error == 500) {
        mc_http_error (req, 500, "IO_ERROR", "cannot store the upload: %s", strerror (write_errno));
        return -1;
    }
    if (declared >= 0 && have != declared) {
        mc_http_close_after (req);
        mc_http_error (req, 400, "BODY_TRUNCATED", "upload shorter than its Content-Length");
        return -1;
    }
    if (have == 0) {
        mc_http_error (req, 400, "EMPTY_UPLOAD", "no archive in the request body");
        return -1;
    }
    return have;
}

//  Finds needle in haystack (binary).
static const char *s_memmem (const char *hay, size_t hay_len, const char *needle, size_t len)
{
    return memmem (hay, hay_len, needle, len);
}

//  Extracts the multipart part named "module" from the file at in_path into out_fd.
//  Returns 0, or -1 with detail filled.
static int s_multipart_extract (const char *in_path, const char *boundary, int out_fd, char *detail,
                                size_t size)
{
    int fd = open (in_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat (fd, &st) != 0 || st.st_size == 0) {
        if (fd >= 0)
            close (fd);
        snprintf (detail, size, "cannot read the upload");
        return -1;
    }
    const char *data = mmap (NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close (fd);
    if (data == MAP_FAILED) {
        snprintf (detail, size, "cannot read the upload");
        return -1;
    }
    size_t len = (size_t)st.st_size;
    char delim[256];
    int dlen = snprintf (delim, sizeof delim, "--%s", boundary);
    int rc = -1;
    snprintf (detail, size, "no part named \"module\" in the multipart body");
    const char *p = s_memmem (data, len, delim, (size_t)dlen);
    while (p) {
        p += dlen;
        if ((size_t)(p - data) + 2 <= len && p[0] == '-' && p[1] == '-')
            break; // closing delimiter
        const char *headers = p;
        const char *body = s_memmem (headers, len - (size_t)(headers - data), "\r\n\r\n", 4);
        if (!body)
            break;
        body += 4;
        char crlf_delim[260];
        int clen = snprintf (crlf_delim, sizeof crlf_delim, "\r\n%s", delim);
        const char *end = s_memmem (body, len - (size_t)(body - data), crlf_delim, (size_t)clen);
        if (!end) {
            snprintf (detail, size, "multipart body is truncated");
            break;
        }
        size_t hlen = (size_t)(body - headers);
        char hbuf[2048];
        if (hlen < sizeof hbuf) {
            memcpy (hbuf, headers, hlen);
            hbuf[hlen] = 0;
            //  Content-Disposition: form-data; name="module"; filename="x.zip"
            if (strcasestr (hbuf, "content-disposition") && strstr (hbuf, "name=\"module\"")) {
                size_t blen = (size_t)(end - body);
                rc = (size_t)write (out_fd, body, blen) == blen ? 0 : -1;
                if (rc != 0)
                    snprintf (detail, size, "cannot store the upload");
                break;
            }
        }
        p = end + 2;
    }
    munmap ((void *)data, len);
    return rc;
}

int mc_api_modules_install (mc_http_req_t *req)
{
    const mc_config_t *cfg = req->ctx->config;
    const char *type = mc_http_header (req, "Content-Type");
    bool multipart = type && strncasecmp (type, "multipart/form-data", 19) == 0;
    bool raw = !type || strncasecmp (type, "application/zip", 15) == 0 ||
               strncasecmp (type, "application/x-zip-compressed", 28) == 0 ||
               strncasecmp (type, "application/octet-stream", 24) == 0;
    char boundary[200] = "";
    if (multipart) {
        const char *b = strcasestr (type, "boundary=");
        if (b) {
            b += 9;
            bool quoted = *b == '"';
            b += quoted;
            size_t n = strcspn (b, quoted ? "\"" : "; \t");
            if (n > 0 && n < 71) // RFC 2046: 1..70 characters
                snprintf (boundary, sizeof boundary, "%.*s", (int)n, b);
        }
        if (!*boundary)
            return mc_http_error (req, 400, "BAD_MULTIPART", "multipart body without a boundary");
    } else if (!raw)
        return mc_http_error (req, 415, "UNSUPPORTED_MEDIA_TYPE",
                              "send the ZIP as application/zip, or as multipart/form-data field "
                              "\"module\"");

    char upload[4104];
    snprintf (upload, sizeof upload, "%s/tmp/upload-XXXXXX", cfg->data_dir);
    int fd = mkstemp (upload);
    if (fd < 0)
        return mc_http_error (req, 500, "IO_ERROR", "cannot store the upload: %s",
                              strerror (errno));
    long long size = s_body_to_file (req, fd, cfg->max_upload_bytes);
    close (fd);
    if (size < 0) {
        unlink (upload);
        return 400;
    }
    if (multipart) {
        char part[sizeof upload + 8];
        snprintf (part, sizeof part, "%s.zip", upload);
        int out = open (part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        char detail[256];
        int rc = out >= 0 ? s_multipart_extract (upload, boundary, out, detail, sizeof detail) : -1;
        if (out >= 0)
            close (out);
        unlink (upload);
        if (rc != 0) {
            unlink (part);
            return mc_http_error (req, 400, "BAD_MULTIPART", "%s",
                                  out >= 0 ? detail : "cannot store the upload");
        }
        memcpy (upload + strlen (upload), ".zip", 5); // the part's file is the upload's name + .zip
    }

    //  The registry owns the file from here (it deletes it whatever happens).
    Mc__RegistryInstall install = MC__REGISTRY_INSTALL__INIT;
    install.zip_path = upload;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_INSTALL;
    env.registry_install = &install;
    int timeout =
        (int)(cfg->sandbox_test_ms + cfg->health_timeout_ms + 2 * cfg->stop_grace_ms + 30000);
    mc_env_t *reply = mc_http_call (req, req->thread->registry, &env, timeout);
    return reply ? s_answer_record (req, reply, 201) : 504;
}

//  --- module config and UI tokens ------------------------------------------------------

//  The module itself, the operator, SYSTEM modules, and UI tokens issued for this module
//  (principal "ui:<module>:<id>") may read and write a module's config.
static bool s_config_allowed (mc_http_req_t *req, const char *name)
{
    const mc_principal_t *p = &req->principal;
    if (p->kind == MC_KIND_ADMIN || p->system)
        return true;
    if (p->kind == MC_KIND_MODULE)
        return strcmp (p->name, name) == 0;
    size_t len = strlen (name);
    return p->kind == MC_KIND_UI && strncmp (p->name, "ui:", 3) == 0 &&
           strncmp (p->name + 3, name, len) == 0 && p->name[3 + len] == ':';
}

static int s_config_call (mc_http_req_t *req, Mc__RegistryConfig *cfg)
{
    if (!s_config_allowed (req, req->params[0]))
        return mc_http_error (req, 403, "FORBIDDEN",
                              "only module %s itself, its settings page or the operator may "
                              "use its config",
                              req->params[0]);
    cfg->name = req->params[0];
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_CONFIG;
    env.registry_config = cfg;
    mc_env_t *reply =
        mc_http_call (req, req->thread->registry, &env, (int)req->ctx->config->call_timeout_ms);
    if (!reply)
        return 504;
    int status;
    if (reply->status == MC__STATUS__STATUS_OK &&
        reply->body_case == MC__ENVELOPE__BODY_CONFIG_VALUES) {
        Mc__ConfigValues *v = reply->config_values;
        status =
            mc_http_json (req, 200,
                          json_pack ("{s:s, s:o, s:{s:o, s:o, s:o}}", "module", req->params[0],
                                     "config", json_loads (v->effective_json, 0, NULL), "layers",
                                     "defaults", json_loads (v->defaults_json, 0, NULL), "core",
                                     json_loads (v->core_json, 0, NULL), "saved",
                                     json_loads (v->saved_json, 0, NULL)));
    } else
        status = mc_http_actor_error (req, reply);
    mc_env_free (reply);
    return status;
}

int mc_api_modules_config_get (mc_http_req_t *req)
{
    Mc__RegistryConfig cfg = MC__REGISTRY_CONFIG__INIT;
    return s_config_call (req, &cfg);
}

int mc_api_modules_config_set (mc_http_req_t *req)
{
    if (!s_config_allowed (req, req->params[0]))
        return mc_http_error (req, 403, "FORBIDDEN",
                              "only module %s itself, its settings page or the operator may "
                              "use its config",
                              req->params[0]);
    json_t *body = mc_http_read_json (req);
    if (!body)
        return 400;
    json_t *key = json_object_get (body, "key");
    json_t *value = json_object_get (body, "value");
    if (!json_is_string (key) || !value) {
        json_decref (body);
        return mc_http_error (req, 400, "INVALID_CONFIG",
                              "body must be {\"key\": string, \"value\": any JSON}");
    }
    char *value_json = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    Mc__RegistryConfig cfg = MC__REGISTRY_CONFIG__INIT;
    cfg.set = true;
    cfg.key = (char *)json_string_value (key);
    cfg.value_json = value_json;
    int status = s_config_call (req, &cfg);
    free (value_json);
    json_decref (body);
    return status;
}

//  A read-only UI token for a module's widget and settings pages: device.read and
//  events.subscribe, plus its module's config; it expires after one hour.
int mc_api_modules_ui_token (mc_http_req_t *req)
{
    Mc__RegistryGet get = MC__REGISTRY_GET__INIT;
    get.name = req->params[0];
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_GET;
    env.registry_get = &get;
    mc_env_t *reply = mc_http_ask (req, req->thread->registry, &env, MC__ENVELOPE__BODY_MODULE);
    if (!reply)
        return mc_http_status (req);
    mc_env_free (reply);
    char principal[160], suffix[9];
    uint8_t raw[4];
    randombytes_buf (raw, sizeof raw);
    mc_hex_encode (raw, sizeof raw, suffix);
    snprintf (principal, sizeof principal, "ui:%s:%s", req->params[0], suffix);
    int64_t expires = mc_time_unix () + 3600;
    Mc__AuthIssue issue = MC__AUTH_ISSUE__INIT;
    issue.principal = principal;
    issue.kind = MC__PRINCIPAL_KIND__PRINCIPAL_UI;
    issue.permissions = MC_PERM_DEVICE_READ | MC_PERM_EVENTS_SUBSCRIBE;
    issue.expires_at = expires;
    mc_env_t ask = MC__ENVELOPE__INIT;
    ask.body_case = MC__ENVELOPE__BODY_AUTH_ISSUE;
    ask.auth_issue = &issue;
    reply = mc_http_ask (req, req->thread->auth, &ask, MC__ENVELOPE__BODY_AUTH_ISSUED);
    if (!reply)
        return mc_http_status (req);
    char when[32];
    mc_time_iso (expires, when, sizeof when);
    int status =
        mc_http_json (req, 201,
                      json_pack ("{s:s, s:s, s:s, s:i}", "ui_token", reply->auth_issued->token,
                                 "module", req->params[0], "expires_at", when, "ttl", 3600));
    mc_env_free (reply);
    return status;
}

//  --- logs ---------------------------------------------------------------------------

#define S_LOG_READ_MAX (1024 * 1024) // bytes read per request

//  GET /modules/{name}/logs?lines=N (the last N lines, default 100, at most 10000) or
//  ?offset=X (what was written after byte X: `modctl logs -f` polls with the offset of
//  the previous answer). Answers {"module", "lines": [...], "offset": end of what was
//  read, "size"}. Only whole lines are returned; a log rotated since X restarts at 0.
int mc_api_modules_logs (mc_http_req_t *req)
{
    const char *name = req->params[0];
    Mc__RegistryGet get = MC__REGISTRY_GET__INIT;
    get.name = (char *)name;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_GET;
    env.registry_get = &get;
    mc_env_t *reply =
        mc_http_call (req, req->thread->registry, &env, (int)req->ctx->config->call_timeout_ms);
    if (!reply)
        return 504;
    if (reply->status != MC__STATUS__STATUS_OK) { // unknown names never reach the file system
        int status = mc_http_actor_error (req, reply);
        mc_env_free (reply);
        return status;
    }
    mc_env_free (reply);
    char text[32];
    long lines = 100;
    long long offset = -1;
    char *end = NULL;
    if (mc_http_query (req, "lines", text, sizeof text)) {
        lines = strtol (text, &end, 10);
        if (!*text || *end || lines < 1 || lines > 10000)
            return mc_http_error (req, 400, "INVALID_QUERY",
                                  "lines must be an integer in 1..10000");
    }
    if (mc_http_query (req, "offset", text, sizeof text)) {
        offset = strtoll (text, &end, 10);
        if (!*text || *end || offset < 0)
            return mc_http_error (req, 400, "INVALID_QUERY",
                                  "offset must be a non-negative integer");
    }
    char path[4200];
    snprintf (path, sizeof path, "%s/logs/%s.log", req->ctx->config->data_dir, name);
    int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    off_t size = fd >= 0 && fstat (fd, &st) == 0 && S_ISREG (st.st_mode) ? st.st_size : 0;
    off_t start;
    if (offset >= 0)
        start = offset > (long long)size ? 0 : (off_t)offset; // rotated: from the start
    else
        start = size > S_LOG_READ_MAX ? size - S_LOG_READ_MAX : 0;
    size_t want = (size_t)(size - start < S_LOG_READ_MAX ? size - start : S_LOG_READ_MAX);
    char *buf = malloc (want + 1);
    assert (buf);
    ssize_t got = fd >= 0 && want ? pread (fd, buf, want, start) : 0;
    if (fd >= 0)
        close (fd);
    size_t len = got > 0 ? (size_t)got : 0;
    //  Whole lines only: the rest comes with the next offset.
    size_t whole = len;
    while (whole > 0 && buf[whole - 1] != '\n')
        whole--;
    json_t *all = json_array ();
    size_t from = 0;
    //  Tail mode skips a first partial line when it did not start at the beginning.
    if (offset < 0 && start > 0) {
        const char *nl = memchr (buf, '\n', whole);
        from = nl ? (size_t)(nl - buf) + 1 : whole;
    }
    for (size_t i = from; i < whole;) {
        const char *nl = memchr (buf + i, '\n', whole - i);
        size_t n = (size_t)(nl - (buf + i));
        json_t *line = json_stringn (buf + i, n); // NULL when not UTF-8
        if (!line) {
            //  Shown with '?' for the bytes that are not ASCII rather than dropped.
            char *copy = malloc (n + 1);
            assert (copy);
            for (size_t k = 0; k < n; k++)
                copy[k] = (unsigned char)buf[i + k] < 0x80 ? buf[i + k] : '?';
            line = json_stringn (copy, n);
            free (copy);
        }
        json_array_append_new (all, line);
        i += n + 1;
    }
    free (buf);
    size_t count = json_array_size (all);
    if (offset < 0 && count > (size_t)lines) {
        json_t *last = json_array ();
        for (size_t i = count - (size_t)lines; i < count; i++)
            json_array_append (last, json_array_get (all, i));
        json_decref (all);
        all = last;
    }
    return mc_http_json (req, 200,
                         json_pack ("{s:s, s:o, s:I, s:I}", "module", name, "lines", all, "offset",
                                    (json_int_t)(start + (off_t)whole), "size", (json_int_t)size));
}
