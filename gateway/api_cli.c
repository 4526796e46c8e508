/*  /api/v1/cli: module CLI commands (blvm's RegisterCliSpec). A module registers a spec
    {name, about, subcommands: [{name, about, args: [{name, long_name, short_name,
    required, takes_value, default, help}]}]}; the operator lists specs and invokes a
    subcommand, which the core validates against the spec and forwards to the module as
    POST http://127.0.0.1:<port>/cli {"subcommand", "args"}, signed with
    X-Selena-Signature like a webhook; the module answers {"exit_code", "stdout",
    "stderr"}. The invocation blocks this worker thread (up to 60 s), not an actor. */
#include <ctype.h>
#include <curl/curl.h>
#include <string.h>

#include "actors/webhook.h"
#include "gateway/http.h"

#define MAX_OUTPUT (1u << 20)

//  True if s is 1..max characters of [a-z0-9_-] (CLI names).
static bool s_cli_name (json_t *s, size_t max)
{
    if (!json_is_string (s) || json_string_length (s) == 0 || json_string_length (s) > max)
        return false;
    for (const char *c = json_string_value (s); *c; c++)
        if (!(islower ((unsigned char)*c) || isdigit ((unsigned char)*c) || *c == '-' || *c == '_'))
            return false;
    return true;
}

static bool s_opt_string (json_t *obj, const char *key, size_t max)
{
    json_t *v = json_object_get (obj, key);
    return !v || json_is_null (v) || (json_is_string (v) && json_string_length (v) <= max);
}

static bool s_opt_bool (json_t *obj, const char *key)
{
    json_t *v = json_object_get (obj, key);
    return !v || json_is_boolean (v);
}

//  Checks a spec; returns NULL if valid, else what is wrong.
static const char *s_spec_problem (json_t *spec)
{
    json_t *subs = json_object_get (spec, "subcommands");
    if (!s_opt_string (spec, "about", 512))
        return "about must be a string of at most 512 characters";
    if (!json_is_array (subs) || json_array_size (subs) == 0 || json_array_size (subs) > 64)
        return "subcommands must be an array of 1..64 objects";
    size_t i, j;
    json_t *sub, *arg;
    json_array_foreach (subs, i, sub)
    {
        if (!json_is_object (sub) || !s_cli_name (json_object_get (sub, "name"), 32))
            return "each subcommand needs a name of 1..32 characters of a-z 0-9 _ -";
        if (!s_opt_string (sub, "about", 512))
            return "a subcommand's about must be a string";
        for (size_t k = 0; k < i; k++)
            if (json_equal (json_object_get (json_array_get (subs, k), "name"),
                            json_object_get (sub, "name")))
                return "subcommand names must be unique";
        json_t *args = json_object_get (sub, "args");
        if (args && (!json_is_array (args) || json_array_size (args) > 32))
            return "a subcommand's args must be an array of at most 32 objects";
        json_array_foreach (args, j, arg)
        {
            json_t *short_name = json_object_get (arg, "short_name");
            if (!json_is_object (arg) || !s_cli_name (json_object_get (arg, "name"), 32) ||
                (json_object_get (arg, "long_name") &&
                 !json_is_null (json_object_get (arg, "long_name")) &&
                 !s_cli_name (json_object_get (arg, "long_name"), 32)) ||
                (short_name && !json_is_null (short_name) &&
                 (!json_is_string (short_name) || json_string_length (short_name) != 1 ||
                  !isalnum ((unsigned char)json_string_value (short_name)[0]))) ||
                !s_opt_bool (arg, "required") || !s_opt_bool (arg, "takes_value") ||
                !s_opt_string (arg, "default", 256) || !s_opt_string (arg, "help", 512))
                return "each arg needs a name (a-z 0-9 _ -), optional long_name, a one-character "
                       "short_name, booleans required/takes_value, string default and help";
        }
    }
    return NULL;
}

static mc_env_t *s_registry_cli (mc_http_req_t *req, Mc__RegistryCli__Op op, const char *module,
                                 const char *spec_json)
{
    Mc__RegistryCli cli = MC__REGISTRY_CLI__INIT;
    cli.op = op;
    cli.module = (char *)module;
    cli.spec_json = (char *)spec_json;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_CLI;
    env.registry_cli = &cli;
    mc_env_t *reply =
        mc_http_call (req, req->thread->registry, &env, (int)req->ctx->config->call_timeout_ms);
    if (reply && (reply->status != MC__STATUS__STATUS_OK ||
                  reply->body_case != MC__ENVELOPE__BODY_CLI_SPECS)) {
        mc_http_actor_error (req, reply);
        mc_env_free (reply);
        return NULL;
    }
    return reply;
}

int mc_api_cli_register (mc_http_req_t *req)
{
    if (req->principal.kind != MC_KIND_MODULE)
        return mc_http_error (req, 400, "NOT_A_MODULE", "only a module registers CLI commands");
    json_t *spec = mc_http_read_json (req);
    if (!spec)
        return 400;
    const char *problem = s_spec_problem (spec);
    if (problem) {
        json_decref (spec);
        return mc_http_error (req, 422, "INVALID_CLI_SPEC", "%s", problem);
    }
    //  A spec is always the caller's own: its name is the module's name.
    json_object_set_new (spec, "name", json_string (req->principal.name));
    char *text = json_dumps (spec, JSON_COMPACT);
    size_t subcommands = json_array_size (json_object_get (spec, "subcommands"));
    json_decref (spec);
    mc_env_t *reply =
        s_registry_cli (req, MC__REGISTRY_CLI__OP__REGISTER, req->principal.name, text);
    free (text);
    if (!reply)
        return 400;
    mc_env_free (reply);
    return mc_http_json (req, 201,
                         json_pack ("{s:s, s:I}", "name", req->principal.name, "subcommands",
                                    (json_int_t)subcommands));
}

int mc_api_cli_list (mc_http_req_t *req)
{
    mc_env_t *reply = s_registry_cli (req, MC__REGISTRY_CLI__OP__LIST, "", NULL);
    if (!reply)
        return 400;
    json_t *specs = json_array ();
    for (size_t i = 0; i < reply->cli_specs->n_specs_json; i++)
        json_array_append_new (specs, json_loads (reply->cli_specs->specs_json[i], 0, NULL));
    mc_env_free (reply);
    return mc_http_json (req, 200, json_pack ("{s:o}", "specs", specs));
}

int mc_api_cli_get (mc_http_req_t *req)
{
    mc_env_t *reply = s_registry_cli (req, MC__REGISTRY_CLI__OP__GET, req->params[0], NULL);
    if (!reply)
        return 404;
    json_t *spec = json_loads (reply->cli_specs->specs_json[0], 0, NULL);
    mc_env_free (reply);
    return mc_http_json (req, 200, spec);
}

//  Resolves the invocation's args against the subcommand's spec: unknown args and
//  missing required ones are refused; defaults fill the rest. Returns the args object
//  to send, or NULL with problem set.
static json_t *s_resolve_args (json_t *sub, json_t *given, const char **problem)
{
    json_t *resolved = json_object ();
    const char *key;
    json_t *value;
    json_object_foreach (given, key, value)
    {
        bool known = false;
        size_t i;
        json_t *arg;
        json_array_foreach (json_object_get (sub, "args"), i, arg) known =
            known || strcmp (json_string_value (json_object_get (arg, "name")), key) == 0;
        if (!known) {
            *problem = "unknown argument (see the subcommand's --help)";
            json_decref (resolved);
            return NULL;
        }
    }
    size_t i;
    json_t *arg;
    json_array_foreach (json_object_get (sub, "args"), i, arg)
    {
        const char *name = json_string_value (json_object_get (arg, "name"));
        json_t *v = json_object_get (given, name);
        bool takes_value = json_is_true (json_object_get (arg, "takes_value"));
        if (v && takes_value && !json_is_string (v)) {
            *problem = "an argument that takes a value must be given a string";
            json_decref (resolved);
            return NULL;
        }
        if (v && !takes_value && !json_is_boolean (v)) {
            *problem = "a flag argument must be true or false";
            json_decref (resolved);
            return NULL;
        }
        json_t *def = json_object_get (arg, "default");
        if (!v && json_is_string (def))
            v = def;
        if (!v && json_is_true (json_object_get (arg, "required"))) {
            *problem = "a required argument is missing";
            json_decref (resolved);
            return NULL;
        }
        if (v)
            json_object_set (resolved, name, v);
        else if (!takes_value)
            json_object_set_new (resolved, name, json_false ());
    }
    return resolved;
}

static size_t s_collect (char *data, size_t size, size_t n, void *arg)
{
    zchunk_t *chunk = arg;
    if (zchunk_size (chunk) + size * n > MAX_OUTPUT)
        return 0; // too much: curl reports a write error
    zchunk_extend (chunk, data, size * n);
    return size * n;
}

//  Invokes through the module's native SDK session when it has one. Returns false (and
//  sends nothing) when it has none, so the caller falls back to HTTP.
static bool s_invoke_native (mc_http_req_t *req, const char *subcommand, json_t *args, int *status)
{
    char *args_json = json_dumps (args, JSON_COMPACT);
    Mc__SdkInvokeCall call = MC__SDK_INVOKE_CALL__INIT;
    call.module = req->params[0];
    call.subcommand = (char *)subcommand;
    call.args_json = args_json;
    call.timeout_ms = 60000;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_SDK_INVOKE_CALL;
    env.sdk_invoke_call = &call;
    mc_env_t *reply = mc_call (req->thread->sdk, &env, 65000);
    free (args_json);
    bool handled = true;
    if (!reply)
        *status = mc_http_error (req, 504, "TIMEOUT", "the core did not answer in time");
    else if (reply->status == MC__STATUS__STATUS_OK &&
             reply->body_case == MC__ENVELOPE__BODY_SDK_INVOKE_DONE)
        *status = mc_http_json (
            req, 200,
            json_pack ("{s:i, s:s, s:s}", "exit_code", reply->sdk_invoke_done->exit_code, "stdout",
                       reply->sdk_invoke_done->stdout, "stderr", reply->sdk_invoke_done->stderr));
    else if (reply->error && strcmp (reply->error, "NOT_CONNECTED") == 0)
        handled = false;
    else
        *status = mc_http_error (req, 504, "MODULE_TIMEOUT", "%s: %s", req->params[0],
                                 reply->detail ? reply->detail : "no answer");
    mc_env_free (reply);
    return handled;
}

int mc_api_cli_invoke (mc_http_req_t *req)
{
    json_t *body = mc_http_read_json (req);
    if (!body)
        return 400;
    json_t *subname = json_object_get (body, "subcommand");
    json_t *given = json_object_get (body, "args");
    if (!json_is_string (subname) || (given && !json_is_object (given))) {
        json_decref (body);
        return mc_http_error (req, 400, "INVALID_INVOCATION",
                              "body must be {\"subcommand\": string, \"args\": object}");
    }
    mc_env_t *reply = s_registry_cli (req, MC__REGISTRY_CLI__OP__GET, req->params[0], NULL);
    if (!reply) {
        json_decref (body);
        return 404;
    }
    Mc__CliSpecs *found = reply->cli_specs;
    json_t *spec = json_loads (found->specs_json[0], 0, NULL);
    json_t *sub = NULL;
    size_t i;
    json_t *s;
    json_array_foreach (json_object_get (spec, "subcommands"), i,
                        s) if (json_equal (json_object_get (s, "name"), subname)) sub = s;
    const char *problem = NULL;
    json_t *args = sub ? s_resolve_args (sub, given ? given : json_object (), &problem) : NULL;
    int status;
    if (!sub)
        status = mc_http_error (req, 404, "NO_SUCH_SUBCOMMAND", "%s has no subcommand %s",
                                req->params[0], json_string_value (subname));
    else if (!args)
        status = mc_http_error (req, 400, "INVALID_ARGS", "%s", problem);
    else if (s_invoke_native (req, json_string_value (subname), args, &status))
        ; // answered through the module's native session
    else if (!found->running || found->port == 0 || strlen (found->secret) != 64)
        status = mc_http_error (req, 409, "MODULE_NOT_RUNNING", "%s is not running; start it first",
                                req->params[0]);
    else {
        json_t *invocation = json_pack ("{s:O, s:O}", "subcommand", subname, "args", args);
        char *payload = json_dumps (invocation, JSON_COMPACT);
        json_decref (invocation);
        char signature[80], url[64], header[128];
        mc_webhook_sign_selena (found->secret, (const uint8_t *)payload, strlen (payload),
                                signature);
        snprintf (url, sizeof url, "http://127.0.0.1:%u/cli", found->port);
        snprintf (header, sizeof header, "X-Selena-Signature: %s", signature);
        struct curl_slist *headers = curl_slist_append (NULL, "Content-Type: application/json");
        headers = curl_slist_append (headers, header);
        headers = curl_slist_append (headers, "Expect:");
        zchunk_t *chunk = zchunk_new (NULL, 0);
        CURL *easy = curl_easy_init ();
        curl_easy_setopt (easy, CURLOPT_URL, url);
        curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt (easy, CURLOPT_NOPROXY, "*");
        curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt (easy, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt (easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt (easy, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_collect);
        curl_easy_setopt (easy, CURLOPT_WRITEDATA, chunk);
        CURLcode rc = curl_easy_perform (easy);
        long code = 0;
        curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &code);
        json_t *answer = rc == CURLE_OK ? json_loadb ((const char *)zchunk_data (chunk),
                                                      zchunk_size (chunk), 0, NULL)
                                        : NULL;
        json_t *exit_code = json_object_get (answer, "exit_code");
        if (rc != CURLE_OK)
            status = mc_http_error (req, 502, "MODULE_UNREACHABLE", "%s: %s", req->params[0],
                                    curl_easy_strerror (rc));
        else if (code != 200 || !json_is_integer (exit_code))
            status = mc_http_error (req, 502, "BAD_MODULE_ANSWER",
                                    "%s answered HTTP %ld without {\"exit_code\": int}",
                                    req->params[0], code);
        else {
            json_t *out = json_object_get (answer, "stdout");
            json_t *err = json_object_get (answer, "stderr");
            status = mc_http_json (req, 200,
                                   json_pack ("{s:O, s:s, s:s}", "exit_code", exit_code, "stdout",
                                              json_is_string (out) ? json_string_value (out) : "",
                                              "stderr",
                                              json_is_string (err) ? json_string_value (err) : ""));
        }
        json_decref (answer);
        curl_easy_cleanup (easy);
        curl_slist_free_all (headers);
        zchunk_destroy (&chunk);
        free (payload);
    }
    json_decref (args);
    json_decref (spec);
    json_decref (body);
    mc_env_free (reply);
    return status;
}
