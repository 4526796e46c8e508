/*  auth actor

    DESIGN. auth owns every token record. Durable form, in the store:
        tok/<sha256 hex>   -> AuthRecord (principal, kind, permissions, system)
        tokp/<principal>   -> <sha256 hex>   (one live token per principal)
    Only the hash of a token is ever stored; the plaintext exists in the reply to
    AuthIssue and nowhere else here. Published form: mc_authtab_t, which request
    threads read (see core/authtab.h for why that one structure is shared). auth is
    its only writer, and writes it after the store, so a token the gateway accepts is
    always durable, and a revoked token is gone from the table before the revoke is
    acknowledged: "401 at once".

    Messages: AuthIssue -> AuthIssued, AuthRevoke -> OK, AuthVerify -> AuthVerdict
    (the same check the gateway makes, for callers on other threads and for tests).

    At start it loads every record into the table and makes sure the admin token in
    <data>/admin.token (0600) exists and is registered: created on first start, kept
    across restarts, re-created if the file was deleted. */
#include "actors/auth.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "core/actor.h"
#include "envelope_cases.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "core/perms.h"

typedef struct {
    mc_context_t *ctx; // shared context (store, table)
    zsock_t *pipe;     // actor pipe
    zsock_t *router;   // inproc://modcore.auth
} self_t;

static self_t *s_self_new (zsock_t *pipe, mc_context_t *ctx)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = ctx;
    self->pipe = pipe;
    self->router = mc_actor_bind ("auth");
    if (!self->router) {
        free (self);
        return NULL;
    }
    return self;
}

static void s_self_destroy (self_t **self_p)
{
    if (!*self_p)
        return;
    zsock_destroy (&(*self_p)->router);
    free (*self_p);
    *self_p = NULL;
}

//  Puts a stored record into the published table.
static void s_publish (self_t *self, const uint8_t hash[MC_HASH_LEN], const Mc__AuthRecord *rec)
{
    mc_principal_t p = {0};
    snprintf (p.name, sizeof p.name, "%s", rec->principal);
    p.kind = (mc_kind_t)rec->kind;
    p.permissions = rec->permissions;
    p.system = rec->system;
    p.expires_at = rec->expires_at;
    mc_authtab_put (self->ctx->authtab, hash, &p);
}

static int s_load_one (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    self_t *self = arg;
    uint8_t hash[MC_HASH_LEN];
    const char *hex = key + 4; // "tok/"
    Mc__AuthRecord *rec = mc__auth_record__unpack (NULL, vlen, value);
    if (!rec || strlen (hex) != MC_HASH_HEX_LEN ||
        sodium_hex2bin (hash, sizeof hash, hex, MC_HASH_HEX_LEN, NULL, NULL, NULL) != 0) {
        zsys_warning ("auth: skipped an unreadable token record");
        mc__auth_record__free_unpacked (rec, NULL);
        return 0;
    }
    if (rec->expires_at && rec->expires_at < mc_time_unix ()) {
        //  An expired UI token: forget it for good.
        char pkey[256];
        snprintf (pkey, sizeof pkey, "tokp/%s", rec->principal);
        mc_store_delete (self->ctx->store, key, false);
        mc_store_delete (self->ctx->store, pkey, false);
    } else
        s_publish (self, hash, rec);
    mc__auth_record__free_unpacked (rec, NULL);
    return 0;
}

//  Stores and publishes token for principal, replacing the principal's previous
//  token. Returns 0 or -1 (store failure: nothing changed).
static int s_register (self_t *self, const char *token, const Mc__AuthRecord *rec)
{
    uint8_t hash[MC_HASH_LEN];
    char hex[MC_HASH_HEX_LEN + 1];
    mc_token_hash (token, strlen (token), hash);
    mc_hex_encode (hash, MC_HASH_LEN, hex);

    char pkey[256], tkey[128];
    snprintf (pkey, sizeof pkey, "tokp/%s", rec->principal);
    snprintf (tkey, sizeof tkey, "tok/%s", hex);
    char *old = mc_store_get (self->ctx->store, pkey, NULL);

    size_t len = mc__auth_record__get_packed_size (rec);
    uint8_t *buf = malloc (len ? len : 1);
    assert (buf);
    mc__auth_record__pack (rec, buf);
    mc_store_batch_t *batch = mc_store_batch_new ();
    char okey[128];
    if (old && strcmp (old, hex) != 0) {
        snprintf (okey, sizeof okey, "tok/%s", old);
        mc_store_batch_delete (batch, okey);
    }
    mc_store_batch_put (batch, tkey, buf, len);
    mc_store_batch_put (batch, pkey, hex, MC_HASH_LEN * 2);
    int rc = mc_store_batch_write (self->ctx->store, &batch, true);
    free (buf);
    if (rc == 0) {
        uint8_t old_hash[MC_HASH_LEN];
        if (old && strcmp (old, hex) != 0 &&
            sodium_hex2bin (old_hash, sizeof old_hash, old, strlen (old), NULL, NULL, NULL) == 0)
            mc_authtab_remove (self->ctx->authtab, old_hash);
        s_publish (self, hash, rec);
    }
    free (old);
    return rc;
}

//  Removes the principal's token from the table, then from the store. Returns 1 if
//  there was one, 0 if not, -1 on store failure.
static int s_revoke (self_t *self, const char *principal)
{
    char pkey[256];
    snprintf (pkey, sizeof pkey, "tokp/%s", principal);
    char *hex = mc_store_get (self->ctx->store, pkey, NULL);
    if (!hex)
        return 0;
    uint8_t hash[MC_HASH_LEN];
    if (sodium_hex2bin (hash, sizeof hash, hex, strlen (hex), NULL, NULL, NULL) == 0)
        mc_authtab_remove (self->ctx->authtab, hash);
    char tkey[128];
    snprintf (tkey, sizeof tkey, "tok/%s", hex);
    mc_store_batch_t *batch = mc_store_batch_new ();
    mc_store_batch_delete (batch, tkey);
    mc_store_batch_delete (batch, pkey);
    int rc = mc_store_batch_write (self->ctx->store, &batch, true);
    free (hex);
    return rc == 0 ? 1 : -1;
}

//  Makes sure <data>/admin.token exists and is the registered admin token.
static int s_bootstrap_admin (self_t *self)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/admin.token", self->ctx->config->data_dir);
    size_t len = 0;
    char *token = mc_fs_read (path, 4096, &len);
    while (token && len > 0 && (token[len - 1] == '\n' || token[len - 1] == ' '))
        token[--len] = 0;
    if (token && !mc_token_well_formed (token, len)) {
        zsys_error ("auth: %s does not hold a valid token; delete it to get a new one", path);
        free (token);
        return -1;
    }
    if (!token) {
        token = malloc (MC_TOKEN_LEN + 2);
        assert (token);
        mc_token_generate (token);
        strcat (token, "\n");
        if (mc_fs_write_atomic (path, token, MC_TOKEN_LEN + 1, 0600) != 0) {
            zsys_error ("auth: cannot write %s: %s", path, strerror (errno));
            free (token);
            return -1;
        }
        token[MC_TOKEN_LEN] = 0;
        zsys_info ("auth: created the admin token in %s", path);
    }
    Mc__AuthRecord rec = MC__AUTH_RECORD__INIT;
    rec.principal = "admin";
    rec.kind = MC__PRINCIPAL_KIND__PRINCIPAL_ADMIN;
    rec.permissions = MC_PERM_ALL;
    rec.issued_at = mc_time_unix ();
    int rc = s_register (self, token, &rec);
    sodium_memzero (token, strlen (token));
    free (token);
    return rc;
}

static void s_handle_issue (self_t *self, mc_request_t *req)
{
    Mc__AuthIssue *issue = req->env->auth_issue;
    if (!issue->principal || !*issue->principal || strlen (issue->principal) > 90 ||
        strcmp (issue->principal, "admin") == 0) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_BAD_REQUEST, "BAD_PRINCIPAL", "invalid principal");
        return;
    }
    char token[MC_TOKEN_LEN + 1];
    if (issue->token && *issue->token) {
        if (!mc_token_well_formed (issue->token, strlen (issue->token))) {
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_BAD_REQUEST, "BAD_TOKEN", "malformed token");
            return;
        }
        memcpy (token, issue->token, sizeof token);
    } else
        mc_token_generate (token);
    Mc__AuthRecord rec = MC__AUTH_RECORD__INIT;
    rec.principal = issue->principal;
    rec.kind = issue->kind;
    rec.permissions = issue->permissions;
    rec.system = issue->system;
    rec.issued_at = mc_time_unix ();
    rec.expires_at = issue->expires_at;
    if (s_register (self, token, &rec) != 0) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot store the token");
        return;
    }
    Mc__AuthIssued issued = MC__AUTH_ISSUED__INIT;
    issued.token = token;
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_AUTH_ISSUED;
    reply.auth_issued = &issued;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    sodium_memzero (token, sizeof token);
}

static void s_handle_revoke (self_t *self, mc_request_t *req)
{
    const char *principal = req->env->auth_revoke->principal;
    int rc = principal && *principal ? s_revoke (self, principal) : 0;
    if (rc < 0) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot revoke");
        return;
    }
    if (rc > 0)
        zsys_info ("auth: revoked the token of %s", principal);
    mc_env_t reply = MC__ENVELOPE__INIT;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

static void s_handle_verify (self_t *self, mc_request_t *req)
{
    Mc__AuthVerify *verify = req->env->auth_verify;
    const char *token = verify->token ? verify->token : "";
    mc_principal_t p;
    uint64_t retry_ns = 0;
    uint32_t remaining = 0;
    mc_auth_result_t result =
        mc_authtab_check (self->ctx->authtab, token, strlen (token), verify->permission,
                          mc_clock_mono_ns (), mc_time_unix (), &p, &retry_ns, &remaining);
    Mc__AuthVerdict verdict = MC__AUTH_VERDICT__INIT;
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_AUTH_VERDICT;
    reply.auth_verdict = &verdict;
    if (result != MC_AUTH_UNKNOWN) {
        verdict.principal = p.name;
        verdict.kind = (Mc__PrincipalKind)p.kind;
        verdict.permissions = p.permissions;
        verdict.system = p.system;
    }
    switch (result) {
        case MC_AUTH_OK:
            verdict.remaining = remaining;
            break;
        case MC_AUTH_UNKNOWN:
            reply.status = MC__STATUS__STATUS_UNAUTHORIZED;
            reply.error = "UNAUTHORIZED";
            reply.detail = "Invalid or expired token";
            break;
        case MC_AUTH_RATE_LIMITED:
            reply.status = MC__STATUS__STATUS_RATE_LIMITED;
            reply.error = "RATE_LIMITED";
            reply.detail = "Rate limit exceeded";
            verdict.retry_after_ms = (uint32_t)((retry_ns + 999999) / 1000000);
            break;
        case MC_AUTH_FORBIDDEN:
            reply.status = MC__STATUS__STATUS_FORBIDDEN;
            reply.error = "FORBIDDEN";
            reply.detail = "Permission not granted in manifest.json";
            break;
    }
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

static void s_handle_request (self_t *self)
{
    mc_request_t *req = mc_request_recv (self->router);
    if (!req)
        return;
    switch (req->env->body_case) {
        case MC__ENVELOPE__BODY_AUTH_ISSUE:
            s_handle_issue (self, req);
            break;
        case MC__ENVELOPE__BODY_AUTH_REVOKE:
            s_handle_revoke (self, req);
            break;
        case MC__ENVELOPE__BODY_AUTH_VERIFY:
            s_handle_verify (self, req);
            break;
            MC_CASES_NOT_FOR_AUTH
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_BAD_REQUEST, "UNSUPPORTED",
                            "auth does not handle this message");
            break;
    }
    mc_request_destroy (&req);
}

static void s_handle_request_cb (void *self)
{
    s_handle_request (self);
}

void mc_auth_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (mc_context_t *)args);
    if (!self) {
        mc_actor_ready (pipe, -1);
        return;
    }
    if (mc_store_scan (self->ctx->store, "tok/", s_load_one, self) != 0 ||
        s_bootstrap_admin (self) != 0) {
        s_self_destroy (&self);
        mc_actor_ready (pipe, -1);
        return;
    }
    zsys_info ("auth: %zu tokens loaded", mc_authtab_size (self->ctx->authtab));
    mc_actor_ready (pipe, 0);

    mc_actor_serve (pipe, self->router, s_handle_request_cb, self);
    s_self_destroy (&self);
}
