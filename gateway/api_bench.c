/*  /api/v1/bench/tokens: module tokens for the load generator (bench/mc-load).

    Off unless the config says `[bench] token_route = true`; then the admin token (or
    a SYSTEM module) may ask for N module-kind tokens at once, for principals
    "bench:0" .. "bench:<N-1>" (a colon no module name can have, so a bench token
    never replaces an installed module's), each with the permissions asked for. They are issued
    by the auth actor like any module token (stored as sha256, published to the token
    table, one live token per principal: asking again replaces them), so a request
    made with one goes through exactly the authentication, rate limit and permission
    checks of a real module. They belong to no installed module: routes that need the
    caller's module record (/modules/self, /events/subscribe) refuse them. */
#include <string.h>

#include "core/perms.h"
#include "gateway/http.h"

#define BENCH_MAX_TOKENS 10000

int mc_api_bench_tokens (mc_http_req_t *req)
{
    if (!req->ctx->config->bench_token_route)
        return mc_http_error (req, 404, "NOT_FOUND",
                              "the bench token route is off ([bench] token_route)");
    json_t *body = mc_http_read_json (req);
    if (!body)
        return 400;
    json_t *count = json_object_get (body, "count");
    json_t *names = json_object_get (body, "permissions");
    if (!json_is_integer (count) || json_integer_value (count) < 1 ||
        json_integer_value (count) > BENCH_MAX_TOKENS || (names && !json_is_array (names))) {
        json_decref (body);
        return mc_http_error (req, 400, "INVALID_REQUEST",
                              "body must be {\"count\": 1..%d, \"permissions\": [names]}",
                              BENCH_MAX_TOKENS);
    }
    uint32_t permissions = 0;
    size_t i;
    json_t *name;
    json_array_foreach (names, i, name)
    {
        uint32_t bit = mc_perm_from_name (json_string_value (name));
        if (!mc_perm_grantable (bit)) {
            json_decref (body);
            return mc_http_error (req, 400, "INVALID_PERMISSION",
                                  "permissions[%zu] is not a grantable permission", i);
        }
        permissions |= bit;
    }
    size_t n = (size_t)json_integer_value (count);
    json_decref (body);
    json_t *tokens = json_array ();
    for (i = 0; i < n; i++) {
        char principal[32];
        snprintf (principal, sizeof principal, "bench:%zu", i);
        Mc__AuthIssue issue = MC__AUTH_ISSUE__INIT;
        issue.principal = principal;
        issue.kind = MC__PRINCIPAL_KIND__PRINCIPAL_MODULE;
        issue.permissions = permissions;
        mc_env_t ask = MC__ENVELOPE__INIT;
        ask.body_case = MC__ENVELOPE__BODY_AUTH_ISSUE;
        ask.auth_issue = &issue;
        mc_env_t *reply =
            mc_http_call (req, req->thread->auth, &ask, (int)req->ctx->config->call_timeout_ms);
        if (!reply) {
            json_decref (tokens);
            return 504;
        }
        if (reply->status != MC__STATUS__STATUS_OK ||
            reply->body_case != MC__ENVELOPE__BODY_AUTH_ISSUED) {
            int status = mc_http_actor_error (req, reply);
            mc_env_free (reply);
            json_decref (tokens);
            return status;
        }
        json_array_append_new (tokens, json_string (reply->auth_issued->token));
        mc_env_free (reply);
    }
    zsys_info ("gateway: issued %zu bench tokens", n);
    return mc_http_json (req, 201, json_pack ("{s:o}", "tokens", tokens));
}
