/*  Response helpers. Every response goes out in one mg_write: with headers and body
    written separately civetweb answers ~60k req/s, with one write ~110-126k
    (design.md), and tcp_nodelay is on so nothing waits for a delayed ACK. */
#include "gateway/http.h"

#include <stdarg.h>
#include <string.h>

#include "core/fsutil.h"
#include "core/metrics.h"
#include "core/perms.h"

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
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 409:
            return "Conflict";
        case 411:
            return "Length Required";
        case 413:
            return "Content Too Large";
        case 415:
            return "Unsupported Media Type";
        case 422:
            return "Unprocessable Content";
        case 429:
            return "Too Many Requests";
        case 500:
            return "Internal Server Error";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        case 507:
            return "Insufficient Storage";
        default:
            return "Unknown";
    }
}

int mc_http_send (mc_http_req_t *req, int status, const char *headers, const char *type,
                  const char *body, size_t len)
{
    if (req->status_out) {
        *req->status_out = status;
        //  Counted before the answer leaves, so a scrape that follows it sees it.
        mc_metrics_request (req->route_out ? *req->route_out : -1, status,
                            mc_clock_mono_ns () - req->started_ns);
    }
    if (req->capture) { // a native request: the SDK endpoint frames the answer itself
        req->capture->status = status;
        free (req->capture->body);
        req->capture->body = malloc (len + 1);
        assert (req->capture->body);
        memcpy (req->capture->body, body, len);
        req->capture->body[len] = 0;
        req->capture->body_len = len;
        const char *retry = headers ? strcasestr (headers, "Retry-After: ") : NULL;
        req->capture->retry_after = retry ? (unsigned)atoi (retry + 13) : 0;
        return status;
    }
    //  Every answer to an authenticated request tells the caller where its bucket stands
    //  (a 429 brings its own, with r=0 and the wait).
    char rate[192] = "";
    if (req->authenticated && !(headers && strstr (headers, "RateLimit:"))) {
        const mc_ratelimit_t *limit = mc_authtab_limit (req->ctx->authtab);
        snprintf (rate, sizeof rate,
                  "RateLimit-Policy: \"token\";q=%u;w=1;burst=%u\r\n"
                  "RateLimit: \"token\";r=%u;t=1\r\n",
                  limit->rate, limit->burst, req->rate_remaining);
    }
    char head[1024];
    int n = snprintf (head, sizeof head,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: %s\r\n"
                      "Content-Length: %zu\r\n"
                      "Cache-Control: no-store\r\n"
                      "X-Content-Type-Options: nosniff\r\n"
                      "%s%s\r\n",
                      status, s_reason (status), type, len, headers ? headers : "", rate);
    assert (n > 0 && (size_t)n < sizeof head);
    //  One write: with headers and body written apart civetweb halves its throughput.
    //  Small answers (most) are assembled on the stack, larger ones on the heap.
    char small[4096];
    char *buf = (size_t)n + len <= sizeof small ? small : malloc ((size_t)n + len);
    assert (buf);
    memcpy (buf, head, (size_t)n);
    memcpy (buf + n, body, len);
    mg_write (req->conn, buf, (size_t)n + len);
    if (buf != small)
        free (buf);
    return status;
}

const char *mc_http_header (mc_http_req_t *req, const char *name)
{
    if (req->conn)
        return mg_get_header (req->conn, name);
    for (int i = 0; i < req->info->num_headers; i++)
        if (strcasecmp (req->info->http_headers[i].name, name) == 0)
            return req->info->http_headers[i].value;
    return NULL;
}

int mc_http_read_raw (mc_http_req_t *req, void *buf, size_t len)
{
    if (req->conn)
        return mg_read (req->conn, buf, len);
    size_t left = req->native_body_len - req->native_body_read;
    size_t n = len < left ? len : left;
    memcpy (buf, req->native_body + req->native_body_read, n);
    req->native_body_read += n;
    return (int)n;
}

void mc_http_close_after (mc_http_req_t *req)
{
    if (req->conn)
        mg_disable_keep_alive (req->conn);
}

int mc_http_json (mc_http_req_t *req, int status, json_t *body)
{
    char *text = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_decref (body);
    if (!text) { // never a crash on a body that could not be built (e.g. bad UTF-8)
        status = 500;
        text = strdup ("{\"error\":\"INTERNAL\",\"detail\":\"the answer could not be encoded\"}");
    }
    mc_http_send (req, status, NULL, "application/json", text, strlen (text));
    free (text);
    return status;
}

//  Replaces bytes that are not valid UTF-8 (and control characters) with '?', in place:
//  details may quote what a client sent.
static void s_sanitize_utf8 (char *s, bool keep_lines)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = *p < 0x80           ? 1
                   : (*p >> 5) == 0x6  ? 2
                   : (*p >> 4) == 0xe  ? 3
                   : (*p >> 3) == 0x1e ? 4
                                       : 0;
        bool ok = n > 0;
        for (size_t i = 1; ok && i < n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (!ok || (n == 1 && *p < 0x20 && !(keep_lines && (*p == '\n' || *p == '\t')))) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

int mc_http_error (mc_http_req_t *req, int status, const char *code, const char *fmt, ...)
{
    char detail[1024];
    va_list args;
    va_start (args, fmt);
    vsnprintf (detail, sizeof detail, fmt, args);
    va_end (args);
    s_sanitize_utf8 (detail, false);
    return mc_http_json (req, status, json_pack ("{s:s, s:s}", "error", code, "detail", detail));
}

int mc_http_actor_error (mc_http_req_t *req, const mc_env_t *reply)
{
    //  Details and output may quote module output or client input: made valid UTF-8.
    char *detail = strdup (reply->detail ? reply->detail : "");
    s_sanitize_utf8 (detail, false);
    json_t *body =
        json_pack ("{s:s, s:s}", "error", reply->error && *reply->error ? reply->error : "ERROR",
                   "detail", detail);
    free (detail);
    if (body && reply->n_problems) {
        json_t *problems = json_array ();
        for (size_t i = 0; i < reply->n_problems; i++) {
            char *problem = strdup (reply->problems[i]);
            s_sanitize_utf8 (problem, false);
            json_array_append_new (problems, json_string (problem));
            free (problem);
        }
        json_object_set_new (body, "problems", problems);
    }
    if (body && ((reply->output && *reply->output) ||
                 (reply->error && strcmp (reply->error, "SANDBOX_TEST_FAILED") == 0))) {
        char *output = strdup (reply->output ? reply->output : "");
        s_sanitize_utf8 (output, true);
        json_object_set_new (body, "output", json_string (output));
        free (output);
    }
    return mc_http_json (req, mc_status_http (reply->status), body);
}

mc_env_t *mc_http_call (mc_http_req_t *req, zsock_t *actor, mc_env_t *env, int timeout_ms)
{
    mc_env_t *reply = actor ? mc_call (actor, env, timeout_ms) : NULL;
    if (!reply)
        mc_http_error (req, 504, "TIMEOUT", "the core did not answer in time");
    return reply;
}

mc_env_t *mc_http_ask (mc_http_req_t *req, zsock_t *actor, mc_env_t *env,
                       Mc__Envelope__BodyCase expect)
{
    mc_env_t *reply = mc_http_call (req, actor, env, (int)req->ctx->config->call_timeout_ms);
    if (reply && reply->status != MC__STATUS__STATUS_OK) {
        mc_http_actor_error (req, reply);
        mc_env_free (reply);
        return NULL;
    }
    if (reply && expect != MC__ENVELOPE__BODY__NOT_SET && reply->body_case != expect) {
        mc_http_error (req, 500, "INTERNAL", "unexpected answer from the core");
        mc_env_free (reply);
        return NULL;
    }
    return reply;
}

//  The status already sent for req (after a helper answered it).
int mc_http_status (mc_http_req_t *req)
{
    return req->status_out ? *req->status_out : 0;
}

char *mc_http_read_body (mc_http_req_t *req, size_t max, size_t *len)
{
    long long declared = req->info->content_length;
    if (declared > (long long)max) {
        mc_http_close_after (req); // the unread body must not be parsed as a request
        mc_http_error (req, 413, "PAYLOAD_TOO_LARGE", "body of %lld bytes; at most %zu accepted",
                       declared, max);
        return NULL;
    }
    size_t cap = declared >= 0 ? (size_t)declared : max;
    char *buf = malloc (cap + 2);
    assert (buf);
    size_t have = 0;
    for (;;) {
        int n = mc_http_read_raw (req, buf + have, cap + 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        if (have > max) {
            free (buf);
            mc_http_close_after (req);
            mc_http_error (req, 413, "PAYLOAD_TOO_LARGE", "body larger than %zu bytes", max);
            return NULL;
        }
        if (have == cap + 1)
            break;
    }
    if (declared >= 0 && have != (size_t)declared) {
        free (buf);
        mc_http_close_after (req);
        mc_http_error (req, 400, "BODY_TRUNCATED", "body shorter than its Content-Length");
        return NULL;
    }
    buf[have] = 0;
    *len = have;
    return buf;
}

json_t *mc_http_read_json (mc_http_req_t *req)
{
    const char *type = mc_http_header (req, "Content-Type");
    if (type && strncasecmp (type, "application/json", 16) != 0) {
        mc_http_error (req, 415, "UNSUPPORTED_MEDIA_TYPE", "send application/json");
        return NULL;
    }
    size_t len = 0;
    char *text = mc_http_read_body (req, req->ctx->config->max_body_bytes, &len);
    if (!text)
        return NULL;
    json_error_t error;
    json_t *value = json_loadb (text, len, JSON_REJECT_DUPLICATES, &error);
    free (text);
    if (!value || !json_is_object (value)) {
        mc_http_error (req, 400, "INVALID_JSON", "body is not a JSON object%s%s", value ? "" : ": ",
                       value ? "" : error.text);
        json_decref (value);
        return NULL;
    }
    return value;
}

static json_t *s_time (int64_t t)
{
    if (t <= 0)
        return json_null ();
    char buf[32];
    mc_time_iso (t, buf, sizeof buf);
    return json_string (buf);
}

static const char *s_status_name (Mc__ModuleStatus status)
{
    switch (status) {
        case MC__MODULE_STATUS__MODULE_INSTALLING:
            return "INSTALLING";
        case MC__MODULE_STATUS__MODULE_RUNNING:
            return "RUNNING";
        case MC__MODULE_STATUS__MODULE_STOPPED:
            return "STOPPED";
        case MC__MODULE_STATUS__MODULE_FAILED:
            return "FAILED";
        case MC__MODULE_STATUS__MODULE_REMOVED:
            return "REMOVED";
        case MC__MODULE_STATUS__MODULE_STARTING:
            return "STARTING";
        case MC__MODULE_STATUS__MODULE_CRASHLOOP:
            return "CRASHLOOP";
        case _MC__MODULE_STATUS_IS_INT_SIZE:
            break;
    }
    return "UNKNOWN";
}

json_t *mc_http_record_json (const Mc__ModuleRecord *rec)
{
    json_t *perms = json_array ();
    for (uint32_t bit = 1; bit; bit <<= 1)
        if ((rec->permissions & bit) && mc_perm_name (bit))
            json_array_append_new (perms, json_string (mc_perm_name (bit)));
    json_t *entry = json_array ();
    for (size_t i = 0; i < rec->n_entry; i++)
        json_array_append_new (entry, json_string (rec->entry[i]));
    json_t *obj = json_pack (
        "{s:s, s:s, s:s, s:s, s:s?, s:s, s:i, s:o, s:s, s:s, s:o, s:o, s:o, s:i, s:s, s:s, s:o}",
        "name", rec->name, "version", rec->version, "type", rec->type, "api_version",
        rec->api_version, "ui_profile", *rec->ui_profile ? rec->ui_profile : NULL, "runtime_mode",
        rec->runtime_mode, "port", (int)rec->port, "permissions", perms, "status",
        s_status_name (rec->status), "status_reason", rec->status_reason, "installed_at",
        s_time (rec->installed_at), "updated_at", s_time (rec->updated_at), "started_at",
        s_time (rec->status == MC__MODULE_STATUS__MODULE_RUNNING ? rec->started_at : 0), "pid",
        (int)rec->pid, "description", rec->description, "author", rec->author, "entry", entry);
    assert (obj);
    if (!*rec->ui_profile)
        json_object_set_new (obj, "ui_profile", json_null ());
    //  Supervision: restarts, and how the last unexpected exit ended.
    json_object_set_new (obj, "restarts", json_integer (rec->restarts));
    json_object_set_new (obj, "network", json_string (*rec->network ? rec->network : "loopback"));
    if (*rec->schedule) {
        json_object_set_new (obj, "schedule", json_string (rec->schedule));
        json_object_set_new (obj, "next_run_at", s_time (rec->next_run_at));
    }
    if (*rec->stderr_tail || rec->last_exit_code || rec->last_signal) {
        json_t *last =
            json_pack ("{s:o, s:o, s:s}", "exit_code",
                       rec->last_signal ? json_null () : json_integer (rec->last_exit_code),
                       "signal", rec->last_signal ? json_integer (rec->last_signal) : json_null (),
                       "stderr_tail", rec->stderr_tail);
        json_object_set_new (obj, "last_exit", last);
    }
    json_t *manifest = json_loads (rec->manifest_json, 0, NULL);
    if (manifest) {
        json_t *ui = json_object_get (manifest, "ui");
        if (ui)
            json_object_set (obj, "ui", ui);
        json_t *resources = json_object_get (manifest, "resources");
        if (resources)
            json_object_set (obj, "resources", resources);
        json_decref (manifest);
    }
    return obj;
}

json_t *mc_http_usage_json (const Mc__SandboxUsage *u)
{
    return json_pack ("{s:s, s:i, s:f, s:I, s:i, s:i, s:I, s:I, s:f}", "state", u->state, "pid",
                      (int)u->pid, "cpu_percent", (double)((int)(u->cpu_percent * 10 + 0.5)) / 10,
                      "rss_bytes", (json_int_t)u->rss_bytes, "pids", (int)u->pids, "restarts",
                      (int)u->restarts, "uptime_s", (json_int_t)u->uptime_s, "oom_kills",
                      (json_int_t)u->oom_kills, "cpu_seconds",
                      (double)(u->cpu_ns / 1000000) / 1000.0);
}

json_t *mc_http_usage (mc_http_req_t *req, const char *name)
{
    json_t *all = json_object ();
    if (!req->thread || !req->thread->sandbox)
        return all;
    Mc__SandboxStatus status = MC__SANDBOX_STATUS__INIT;
    status.name = (char *)(name ? name : "");
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_SANDBOX_STATUS;
    env.sandbox_status = &status;
    mc_env_t *reply = mc_call (req->thread->sandbox, &env, (int)req->ctx->config->call_timeout_ms);
    if (reply && reply->status == MC__STATUS__STATUS_OK &&
        reply->body_case == MC__ENVELOPE__BODY_SANDBOX_RESULT)
        for (size_t i = 0; i < reply->sandbox_result->n_usage; i++) {
            const Mc__SandboxUsage *u = reply->sandbox_result->usage[i];
            json_object_set_new (all, u->name, mc_http_usage_json (u));
        }
    mc_env_free (reply);
    return all;
}
