/*  csdk_testmod: a TEST-ONLY module built from libmodcore for modules-sdk/c/tests.

    usage (as a manifest entry): ./csdk_testmod [--native]

    Subscribes to "csdk.*" and remembers what it receives. CLI subcommands:
        publish --type T [--payload JSON]   publish; prints the core's answer
        received                            prints the events received, a JSON array
        burst [--count N]                   N x GET /modules/self without 429 retries;
                                            prints {"ok", "limited", "other"}
        fail                                writes to stderr, exits 3
    Serves its own directory as static files (GET /manifest.json).
    GET /token reveals its own token (so the test can act as this module over the
    native transport). A real module must never do this. */
#include <modcore.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *s_received; // events received (callbacks run one at a time)

static void s_on_event (mc_module_t *module, const char *type, json_t *event, void *arg)
{
    json_array_append (s_received, event);
}

static int s_publish (mc_module_t *module, json_t *args, mc_output_t *out, mc_output_t *err,
                      void *arg)
{
    const char *type = json_string_value (json_object_get (args, "type"));
    const char *text = json_string_value (json_object_get (args, "payload"));
    json_t *payload = json_loads (text ? text : "{}", 0, NULL);
    mc_reply_t *reply = mc_module_publish (module, type, payload);
    json_decref (payload);
    int code = mc_reply_ok (reply) ? 0 : 1;
    char *answer = reply->json ? json_dumps (reply->json, JSON_COMPACT) : NULL;
    if (code == 0)
        mc_output_printf (out, "%s\n", answer ? answer : "");
    else
        mc_output_printf (err, "publish failed: %d %s %s\n", reply->status, reply->error,
                          reply->detail);
    free (answer);
    mc_reply_destroy (&reply);
    return code;
}

static int s_received_cmd (mc_module_t *module, json_t *args, mc_output_t *out, mc_output_t *err,
                           void *arg)
{
    char *text = json_dumps (s_received, JSON_COMPACT);
    mc_output_printf (out, "%s\n", text);
    free (text);
    return 0;
}

static int s_burst (mc_module_t *module, json_t *args, mc_output_t *out, mc_output_t *err,
                    void *arg)
{
    const char *count_text = json_string_value (json_object_get (args, "count"));
    int count = count_text ? atoi (count_text) : 60;
    int ok = 0, limited = 0, other = 0;
    mc_module_set_retries (module, 0, 0);
    for (int i = 0; i < count; i++) {
        mc_reply_t *reply = mc_module_self (module);
        if (mc_reply_ok (reply))
            ok++;
        else if (reply->status == 429)
            limited++;
        else
            other++;
        mc_reply_destroy (&reply);
    }
    mc_module_set_retries (module, 3, 10000);
    mc_output_printf (out, "{\"ok\":%d,\"limited\":%d,\"other\":%d}\n", ok, limited, other);
    return 0;
}

static int s_fail (mc_module_t *module, json_t *args, mc_output_t *out, mc_output_t *err, void *arg)
{
    mc_output_printf (err, "failing on purpose\n");
    return 3;
}

static int s_token (mc_module_t *module, const char *method, const char *path, const char *query,
                    const char *body, size_t body_size, json_t **answer, void *arg)
{
    const char *token = getenv ("SELENA_MODULE_TOKEN");
    const char *endpoint = getenv ("MODCORE_SDK_ENDPOINT");
    *answer =
        json_pack ("{s:s, s:s}", "token", token ? token : "", "endpoint", endpoint ? endpoint : "");
    return 200;
}

int main (int argc, char **argv)
{
    s_received = json_array ();
    mc_module_t *module = mc_module_new_from_env ();
    if (argc > 1 && strcmp (argv[1], "--native") == 0)
        mc_module_set_transport (module, MC_TRANSPORT_NATIVE);
    const char *types[] = {"csdk.*", NULL};
    mc_module_subscribe (module, types, s_on_event, NULL);
    mc_cli_arg_t publish_args[] = {
        {"type", "type", 't', true, true, NULL, "event type"},
        {"payload", "payload", 'p', false, true, "{}", "payload JSON object"},
        {NULL},
    };
    mc_cli_arg_t burst_args[] = {
        {"count", "count", 'n', false, true, "60", "how many requests"},
        {NULL},
    };
    mc_module_cli_add (module, "publish", "Publish an event", publish_args, s_publish, NULL);
    mc_module_cli_add (module, "received", "Events received so far", NULL, s_received_cmd, NULL);
    mc_module_cli_add (module, "burst", "Requests without 429 retries", burst_args, s_burst, NULL);
    mc_module_cli_add (module, "fail", "Exit 3", NULL, s_fail, NULL);
    mc_module_route (module, "GET", "/token", s_token, NULL);
    if (*mc_module_install_path (module))
        mc_module_set_static_dir (module, mc_module_install_path (module));
    int rc = mc_module_run (module);
    mc_module_destroy (&module);
    json_decref (s_received);
    return rc == 0 ? 0 : 1;
}
