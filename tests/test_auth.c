/*  Unit suite for the auth actor, as a black box through its socket: a real store in a
    temporary data dir, a real token table, and Envelope requests over a DEALER. Covers
    the admin token bootstrap, issue / verify / revoke, re-issue with a given token,
    the rate limit, refusals, persistence across a restart, and frames that do not
    decode. The actor is always destroyed before the store is closed. */
#include "actors/auth.h"
#include "core/actor.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "core/perms.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CALL_TIMEOUT_MS 5000

//  One running auth actor and everything it needs.
typedef struct {
    char *dir;             // temporary data dir (owned)
    char db[4400];         // dir/db
    char admin_path[4400]; // dir/admin.token
    mc_config_t *config;   // data_dir = dir
    mc_context_t ctx;      // what the actor is started with
    uint32_t rate;         // rate of the token table
    uint32_t burst;        // burst of the token table
    zactor_t *actor;       // the auth actor, or NULL
    zsock_t *client;       // DEALER to inproc://modcore.auth
} s_auth_t;

//  Opens the store and a fresh table (if not open) and starts the actor. Returns the
//  actor (NULL if it refused to start).
static zactor_t *s_start (s_auth_t *self)
{
    if (!self->ctx.store) {
        mc_error_t err = {{0}, {0}};
        self->ctx.store = mc_store_open (self->db, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL (self->ctx.store);
    }
    if (!self->ctx.authtab)
        self->ctx.authtab = mc_authtab_new (self->rate, self->burst);
    self->actor = mc_actor_start ("auth", mc_auth_actor, &self->ctx);
    if (self->actor && !self->client)
        self->client = mc_client_new ("auth");
    return self->actor;
}

//  Stops the actor, then closes the store and drops the table (a process restart).
static void s_stop (s_auth_t *self)
{
    zsock_destroy (&self->client);
    zactor_destroy (&self->actor);
    mc_authtab_destroy (&self->ctx.authtab);
    mc_store_close (&self->ctx.store);
}

//  A fresh data dir and a started actor with a table of rate/burst.
static void s_setup (s_auth_t *self, uint32_t rate, uint32_t burst)
{
    CU_ASSERT_FATAL (sodium_init () >= 0);
    memset (self, 0, sizeof *self);
    self->dir = mc_test_tmpdir ("auth");
    CU_ASSERT_PTR_NOT_NULL_FATAL (self->dir);
    snprintf (self->db, sizeof self->db, "%s/db", self->dir);
    snprintf (self->admin_path, sizeof self->admin_path, "%s/admin.token", self->dir);
    self->config = mc_config_new ();
    free (self->config->data_dir);
    self->config->data_dir = strdup (self->dir);
    self->ctx.config = self->config;
    self->rate = rate;
    self->burst = burst;
    CU_ASSERT_PTR_NOT_NULL_FATAL (s_start (self));
}

static void s_teardown (s_auth_t *self)
{
    s_stop (self);
    mc_config_destroy (&self->config);
    mc_test_rmtree (self->dir);
    free (self->dir);
    self->dir = NULL;
}

//  Sends req and returns the reply (caller frees); fails the test on a timeout.
static mc_env_t *s_call (s_auth_t *self, mc_env_t *req)
{
    mc_env_t *reply = mc_call (self->client, req, CALL_TIMEOUT_MS);
    CU_ASSERT_PTR_NOT_NULL_FATAL (reply);
    CU_ASSERT_EQUAL (reply->request_id, req->request_id);
    return reply;
}

//  AuthIssue for principal; token NULL: let the actor generate one.
static mc_env_t *s_issue (s_auth_t *self, const char *principal, Mc__PrincipalKind kind,
                          uint32_t permissions, const char *token)
{
    Mc__AuthIssue issue = MC__AUTH_ISSUE__INIT;
    issue.principal = (char *)principal;
    issue.kind = kind;
    issue.permissions = permissions;
    if (token)
        issue.token = (char *)token;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_AUTH_ISSUE;
    req.auth_issue = &issue;
    return s_call (self, &req);
}

//  Issues a module token and copies it into token (MC_TOKEN_LEN + 1).
static void s_issue_ok (s_auth_t *self, const char *principal, uint32_t permissions, char *token)
{
    mc_env_t *reply =
        s_issue (self, principal, MC__PRINCIPAL_KIND__PRINCIPAL_MODULE, permissions, NULL);
    CU_ASSERT_EQUAL_FATAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL_FATAL (reply->body_case, MC__ENVELOPE__BODY_AUTH_ISSUED);
    CU_ASSERT_EQUAL_FATAL (strlen (reply->auth_issued->token), MC_TOKEN_LEN);
    memcpy (token, reply->auth_issued->token, MC_TOKEN_LEN + 1);
    mc_env_free (reply);
}

static mc_env_t *s_verify (s_auth_t *self, const char *token, uint32_t permission)
{
    Mc__AuthVerify verify = MC__AUTH_VERIFY__INIT;
    verify.token = (char *)token;
    verify.permission = permission;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_AUTH_VERIFY;
    req.auth_verify = &verify;
    return s_call (self, &req);
}

//  Status of a verify (the reply is freed).
static Mc__Status s_verify_status (s_auth_t *self, const char *token, uint32_t permission)
{
    mc_env_t *reply = s_verify (self, token, permission);
    Mc__Status status = reply->status;
    mc_env_free (reply);
    return status;
}

static Mc__Status s_revoke (s_auth_t *self, const char *principal)
{
    Mc__AuthRevoke revoke = MC__AUTH_REVOKE__INIT;
    revoke.principal = (char *)principal;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_AUTH_REVOKE;
    req.auth_revoke = &revoke;
    mc_env_t *reply = s_call (self, &req);
    Mc__Status status = reply->status;
    mc_env_free (reply);
    return status;
}

//  Reads admin.token into token (MC_TOKEN_LEN + 1), checking its shape: 64 chars and
//  a newline, nothing else.
static void s_read_admin (s_auth_t *self, char *token)
{
    size_t len = 0;
    FILE *f = fopen (self->admin_path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL (f);
    char buf[256];
    len = fread (buf, 1, sizeof buf, f);
    fclose (f);
    CU_ASSERT_EQUAL_FATAL (len, MC_TOKEN_LEN + 1);
    CU_ASSERT_EQUAL (buf[MC_TOKEN_LEN], '\n');
    CU_ASSERT (mc_token_well_formed (buf, MC_TOKEN_LEN));
    memcpy (token, buf, MC_TOKEN_LEN);
    token[MC_TOKEN_LEN] = 0;
}

//  Scan callback: counts values that contain the plaintext token in arg.
static int s_find_plaintext (const char *key, size_t key_len, const void *value, size_t value_len,
                             void *arg)
{
    const char *token = arg;
    if (memmem (value, value_len, token, MC_TOKEN_LEN) || strstr (key, token))
        CU_FAIL ("a plaintext token is in the store");
    return 0;
}

static void test_admin_token (void)
{
    s_auth_t f;
    s_setup (&f, 100, 20);
    struct stat st;
    CU_ASSERT_FATAL (lstat (f.admin_path, &st) == 0);
    CU_ASSERT (S_ISREG (st.st_mode));
    CU_ASSERT_EQUAL (st.st_mode & 07777, 0600);
    char admin[MC_TOKEN_LEN + 1];
    s_read_admin (&f, admin);
    mc_env_t *reply = s_verify (&f, admin, MC_PERM_MODULES_MANAGE);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL_FATAL (reply->body_case, MC__ENVELOPE__BODY_AUTH_VERDICT);
    CU_ASSERT_EQUAL (reply->auth_verdict->kind, MC__PRINCIPAL_KIND__PRINCIPAL_ADMIN);
    CU_ASSERT_STRING_EQUAL (reply->auth_verdict->principal, "admin");
    CU_ASSERT_EQUAL (reply->auth_verdict->permissions, MC_PERM_ALL);
    CU_ASSERT_EQUAL (reply->auth_verdict->remaining, 19); // the first of 20 units spent
    mc_env_free (reply);
    //  Any permission, and with a trailing newline the token is a different token.
    CU_ASSERT_EQUAL (s_verify_status (&f, admin, MC_PERM_SECRETS_PROXY), MC__STATUS__STATUS_OK);
    char with_newline[MC_TOKEN_LEN + 2];
    snprintf (with_newline, sizeof with_newline, "%s\n", admin);
    CU_ASSERT_EQUAL (s_verify_status (&f, with_newline, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    //  Only the hash is stored.
    CU_ASSERT_EQUAL (mc_store_scan (f.ctx.store, "", s_find_plaintext, admin), 0);
    s_teardown (&f);
}

static void test_issue_verify (void)
{
    s_auth_t f;
    s_setup (&f, 100, 20);
    char token[MC_TOKEN_LEN + 1];
    s_issue_ok (&f, "mod-a", MC_PERM_DEVICE_READ | MC_PERM_EVENTS_PUBLISH, token);
    CU_ASSERT (mc_token_well_formed (token, MC_TOKEN_LEN));
    mc_env_t *reply = s_verify (&f, token, MC_PERM_DEVICE_READ);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL_FATAL (reply->body_case, MC__ENVELOPE__BODY_AUTH_VERDICT);
    CU_ASSERT_STRING_EQUAL (reply->auth_verdict->principal, "mod-a");
    CU_ASSERT_EQUAL (reply->auth_verdict->kind, MC__PRINCIPAL_KIND__PRINCIPAL_MODULE);
    CU_ASSERT_EQUAL (reply->auth_verdict->permissions,
                     MC_PERM_DEVICE_READ | MC_PERM_EVENTS_PUBLISH);
    CU_ASSERT_FALSE (reply->auth_verdict->system);
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_verify_status (&f, token, MC_PERM_DEVICE_READ | MC_PERM_EVENTS_PUBLISH),
                     MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_verify_status (&f, token, 0), MC__STATUS__STATUS_OK);
    //  Permissions it lacks.
    reply = s_verify (&f, token, MC_PERM_DEVICE_WRITE);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_FORBIDDEN);
    CU_ASSERT_STRING_EQUAL (reply->error, "FORBIDDEN");
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_verify_status (&f, token, MC_PERM_MODULES_MANAGE),
                     MC__STATUS__STATUS_FORBIDDEN);
    //  Unknown tokens: another well-formed one, empty, garbage.
    char unknown[MC_TOKEN_LEN + 1];
    mc_token_generate (unknown);
    reply = s_verify (&f, unknown, 0);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_UNAUTHORIZED);
    CU_ASSERT_STRING_EQUAL (reply->error, "UNAUTHORIZED");
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_verify_status (&f, "", 0), MC__STATUS__STATUS_UNAUTHORIZED);
    CU_ASSERT_EQUAL (s_verify_status (&f, "Bearer x", 0), MC__STATUS__STATUS_UNAUTHORIZED);
    //  A SYSTEM module holds every permission.
    Mc__AuthIssue issue = MC__AUTH_ISSUE__INIT;
    issue.principal = "sys-mod";
    issue.system = true;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_AUTH_ISSUE;
    req.auth_issue = &issue;
    reply = s_call (&f, &req);
    CU_ASSERT_EQUAL_FATAL (reply->body_case, MC__ENVELOPE__BODY_AUTH_ISSUED);
    char system_token[MC_TOKEN_LEN + 1];
    snprintf (system_token, sizeof system_token, "%s", reply->auth_issued->token);
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_verify_status (&f, system_token, MC_PERM_MODULES_MANAGE),
                     MC__STATUS__STATUS_OK);
    //  Two principals, two different tokens; only hashes are stored.
    CU_ASSERT (strcmp (token, system_token) != 0);
    CU_ASSERT_EQUAL (mc_store_scan (f.ctx.store, "", s_find_plaintext, token), 0);
    CU_ASSERT_EQUAL (mc_store_scan (f.ctx.store, "", s_find_plaintext, system_token), 0);
    s_teardown (&f);
}

static void test_revoke (void)
{
    s_auth_t f;
    s_setup (&f, 100, 20);
    char a[MC_TOKEN_LEN + 1], b[MC_TOKEN_LEN + 1];
    s_issue_ok (&f, "mod-a", MC_PERM_DEVICE_READ, a);
    s_issue_ok (&f, "mod-b", MC_PERM_DEVICE_READ, b);
    CU_ASSERT_EQUAL (s_verify_status (&f, a, MC_PERM_DEVICE_READ), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_revoke (&f, "mod-a"), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_verify_status (&f, a, MC_PERM_DEVICE_READ), MC__STATUS__STATUS_UNAUTHORIZED);
    CU_ASSERT_EQUAL (s_verify_status (&f, a, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    //  Others are untouched; revoking again, or a principal that never had a token, is OK.
    CU_ASSERT_EQUAL (s_verify_status (&f, b, MC_PERM_DEVICE_READ), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_revoke (&f, "mod-a"), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_revoke (&f, "never-issued"), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_revoke (&f, ""), MC__STATUS__STATUS_OK);
    //  Both store records are gone.
    CU_ASSERT_PTR_NULL (mc_store_get (f.ctx.store, "tokp/mod-a", NULL));
    uint8_t hash[MC_HASH_LEN];
    char key[128] = "tok/";
    mc_token_hash (a, MC_TOKEN_LEN, hash);
    mc_hex_encode (hash, MC_HASH_LEN, key + 4);
    CU_ASSERT_PTR_NULL (mc_store_get (f.ctx.store, key, NULL));
    char *other = mc_store_get (f.ctx.store, "tokp/mod-b", NULL);
    CU_ASSERT_PTR_NOT_NULL (other);
    free (other);
    //  Issuing again gives a new token that works; the old one stays dead.
    char again[MC_TOKEN_LEN + 1];
    s_issue_ok (&f, "mod-a", MC_PERM_DEVICE_READ, again);
    CU_ASSERT (strcmp (again, a) != 0);
    CU_ASSERT_EQUAL (s_verify_status (&f, again, 0), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_verify_status (&f, a, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    s_teardown (&f);
}

//  AuthIssue with token set registers exactly that token, and the principal's
//  previous token stops working.
static void test_reissue_given_token (void)
{
    s_auth_t f;
    s_setup (&f, 100, 20);
    char first[MC_TOKEN_LEN + 1], given[MC_TOKEN_LEN + 1];
    s_issue_ok (&f, "mod-a", MC_PERM_DEVICE_READ, first);
    mc_token_generate (given);
    mc_env_t *reply = s_issue (&f, "mod-a", MC__PRINCIPAL_KIND__PRINCIPAL_MODULE,
                               MC_PERM_DEVICE_READ | MC_PERM_STORAGE_RW, given);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL_FATAL (reply->body_case, MC__ENVELOPE__BODY_AUTH_ISSUED);
    CU_ASSERT_STRING_EQUAL (reply->auth_issued->token, given);
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_verify_status (&f, first, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    reply = s_verify (&f, given, MC_PERM_STORAGE_RW);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_STRING_EQUAL (reply->auth_verdict->principal, "mod-a");
    mc_env_free (reply);
    //  The same token again (a relaunch): still exactly that token, still valid.
    reply = s_issue (&f, "mod-a", MC__PRINCIPAL_KIND__PRINCIPAL_MODULE, MC_PERM_DEVICE_READ, given);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_verify_status (&f, given, MC_PERM_DEVICE_READ), MC__STATUS__STATUS_OK);
    //  The record follows the latest issue: storage.rw is no longer granted.
    CU_ASSERT_EQUAL (s_verify_status (&f, given, MC_PERM_STORAGE_RW), MC__STATUS__STATUS_FORBIDDEN);
    //  A malformed given token is refused and changes nothing.
    const char *bad[] = {"short", "+plus/slash+plus/slash+plus/slash+plus/slash+plus/slash+plus/sl",
                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reply = s_issue (&f, "mod-a", MC__PRINCIPAL_KIND__PRINCIPAL_MODULE, MC_PERM_ALL, bad[i]);
        CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
        CU_ASSERT_STRING_EQUAL (reply->error, "BAD_TOKEN");
        CU_ASSERT_EQUAL (reply->body_case, MC__ENVELOPE__BODY__NOT_SET);
        mc_env_free (reply);
    }
    CU_ASSERT_EQUAL (s_verify_status (&f, given, MC_PERM_DEVICE_READ), MC__STATUS__STATUS_OK);
    //  Without a token, a fresh one replaces the given one.
    char fresh[MC_TOKEN_LEN + 1];
    s_issue_ok (&f, "mod-a", MC_PERM_DEVICE_READ, fresh);
    CU_ASSERT (strcmp (fresh, given) != 0);
    CU_ASSERT_EQUAL (s_verify_status (&f, given, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    CU_ASSERT_EQUAL (s_verify_status (&f, fresh, 0), MC__STATUS__STATUS_OK);
    s_teardown (&f);
}

static void test_bad_principal (void)
{
    s_auth_t f;
    s_setup (&f, 100, 20);
    char admin[MC_TOKEN_LEN + 1];
    s_read_admin (&f, admin);
    char long_name[201];
    memset (long_name, 'm', 200);
    long_name[200] = 0;
    const char *bad[] = {"", "admin", long_name};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mc_env_t *reply =
            s_issue (&f, bad[i], MC__PRINCIPAL_KIND__PRINCIPAL_ADMIN, MC_PERM_ALL, NULL);
        CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
        CU_ASSERT_STRING_EQUAL (reply->error, "BAD_PRINCIPAL");
        CU_ASSERT_EQUAL (reply->body_case, MC__ENVELOPE__BODY__NOT_SET);
        mc_env_free (reply);
    }
    //  A token given for "admin" does not replace the admin token either.
    char given[MC_TOKEN_LEN + 1];
    mc_token_generate (given);
    mc_env_t *reply =
        s_issue (&f, "admin", MC__PRINCIPAL_KIND__PRINCIPAL_ADMIN, MC_PERM_ALL, given);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_verify_status (&f, given, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    CU_ASSERT_EQUAL (s_verify_status (&f, admin, MC_PERM_MODULES_MANAGE), MC__STATUS__STATUS_OK);
    //  A long but reasonable name (a module name's limit) is accepted.
    long_name[64] = 0;
    char token[MC_TOKEN_LEN + 1];
    s_issue_ok (&f, long_name, 0, token);
    CU_ASSERT_EQUAL (s_verify_status (&f, token, 0), MC__STATUS__STATUS_OK);
    //  Only the admin token and this one are known.
    CU_ASSERT_EQUAL (mc_authtab_size (f.ctx.authtab), 2);
    s_teardown (&f);
}

//  burst + 1 verifies sent at once: the first burst pass with remaining counting down,
//  the last is refused with a retry delay. The table refills at 1/s here (burst 20 as
//  by default) so that the outcome does not depend on how fast this machine answers 21
//  requests: at the default 100/s a pause of 10 ms would refill a unit.
static void test_rate_limit (void)
{
    s_auth_t f;
    s_setup (&f, 1, 20);
    char token[MC_TOKEN_LEN + 1];
    s_issue_ok (&f, "mod-rl", MC_PERM_DEVICE_READ, token);
    Mc__AuthVerify verify = MC__AUTH_VERIFY__INIT;
    verify.token = token;
    verify.permission = MC_PERM_DEVICE_READ;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_AUTH_VERIFY;
    req.auth_verify = &verify;
    //  Pipelined: all requests are queued before the first reply is read.
    enum { COUNT = 21 };
    for (uint64_t i = 0; i < COUNT; i++) {
        req.request_id = 1000000 + i;
        zframe_t *frame = mc_env_pack (&req);
        CU_ASSERT_FATAL (zframe_send (&frame, f.client, 0) == 0);
    }
    zsock_set_rcvtimeo (f.client, CALL_TIMEOUT_MS);
    for (uint64_t i = 0; i < COUNT; i++) {
        zframe_t *frame = zframe_recv (f.client);
        CU_ASSERT_PTR_NOT_NULL_FATAL (frame);
        mc_env_t *reply = mc_env_unpack (frame);
        zframe_destroy (&frame);
        CU_ASSERT_PTR_NOT_NULL_FATAL (reply);
        CU_ASSERT_EQUAL (reply->request_id, 1000000 + i);
        CU_ASSERT_EQUAL_FATAL (reply->body_case, MC__ENVELOPE__BODY_AUTH_VERDICT);
        if (i < COUNT - 1) {
            CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
            CU_ASSERT_EQUAL (reply->auth_verdict->remaining, 19 - i);
        } else {
            CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_RATE_LIMITED);
            CU_ASSERT_STRING_EQUAL (reply->error, "RATE_LIMITED");
            CU_ASSERT (reply->auth_verdict->retry_after_ms > 0);
            CU_ASSERT (reply->auth_verdict->retry_after_ms <= 1000);
            CU_ASSERT_STRING_EQUAL (reply->auth_verdict->principal, "mod-rl");
        }
        mc_env_free (reply);
    }
    zsock_set_rcvtimeo (f.client, -1);
    //  Still limited; other tokens have their own bucket.
    CU_ASSERT_EQUAL (s_verify_status (&f, token, 0), MC__STATUS__STATUS_RATE_LIMITED);
    char admin[MC_TOKEN_LEN + 1];
    s_read_admin (&f, admin);
    CU_ASSERT_EQUAL (s_verify_status (&f, admin, 0), MC__STATUS__STATUS_OK);
    //  Re-issuing gives a full bucket.
    char fresh[MC_TOKEN_LEN + 1];
    s_issue_ok (&f, "mod-rl", MC_PERM_DEVICE_READ, fresh);
    CU_ASSERT_EQUAL (s_verify_status (&f, fresh, 0), MC__STATUS__STATUS_OK);
    s_teardown (&f);
}

static void test_persistence (void)
{
    s_auth_t f;
    s_setup (&f, 100, 20);
    char admin[MC_TOKEN_LEN + 1], kept[MC_TOKEN_LEN + 1], revoked[MC_TOKEN_LEN + 1];
    char replaced[MC_TOKEN_LEN + 1], given[MC_TOKEN_LEN + 1];
    s_read_admin (&f, admin);
    s_issue_ok (&f, "mod-p", MC_PERM_DEVICE_READ | MC_PERM_EVENTS_SUBSCRIBE, kept);
    s_issue_ok (&f, "mod-r", MC_PERM_DEVICE_READ, revoked);
    CU_ASSERT_EQUAL (s_revoke (&f, "mod-r"), MC__STATUS__STATUS_OK);
    s_issue_ok (&f, "mod-g", MC_PERM_DEVICE_READ, replaced);
    mc_token_generate (given);
    mc_env_t *reply =
        s_issue (&f, "mod-g", MC__PRINCIPAL_KIND__PRINCIPAL_MODULE, MC_PERM_DEVICE_READ, given);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    mc_env_free (reply);

    //  A restart: actor, table and store all go, then come back from disk.
    s_stop (&f);
    CU_ASSERT_PTR_NOT_NULL_FATAL (s_start (&f));
    reply = s_verify (&f, kept, MC_PERM_EVENTS_SUBSCRIBE);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_STRING_EQUAL (reply->auth_verdict->principal, "mod-p");
    CU_ASSERT_EQUAL (reply->auth_verdict->permissions,
                     MC_PERM_DEVICE_READ | MC_PERM_EVENTS_SUBSCRIBE);
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_verify_status (&f, kept, MC_PERM_DEVICE_WRITE),
                     MC__STATUS__STATUS_FORBIDDEN);
    CU_ASSERT_EQUAL (s_verify_status (&f, revoked, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    CU_ASSERT_EQUAL (s_verify_status (&f, replaced, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    CU_ASSERT_EQUAL (s_verify_status (&f, given, 0), MC__STATUS__STATUS_OK);
    //  admin.token is unchanged and still the admin's.
    char admin_after[MC_TOKEN_LEN + 1];
    s_read_admin (&f, admin_after);
    CU_ASSERT_STRING_EQUAL (admin_after, admin);
    reply = s_verify (&f, admin, MC_PERM_MODULES_MANAGE);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (reply->auth_verdict->kind, MC__PRINCIPAL_KIND__PRINCIPAL_ADMIN);
    mc_env_free (reply);
    //  admin, mod-p, mod-g: nothing stale was loaded.
    CU_ASSERT_EQUAL (mc_authtab_size (f.ctx.authtab), 3);
    s_teardown (&f);
}

//  A deleted admin.token is re-created with a new token on the next start, and the
//  old admin token stops working; a file that does not hold a token stops the start.
static void test_admin_token_recreated (void)
{
    s_auth_t f;
    s_setup (&f, 100, 20);
    char admin[MC_TOKEN_LEN + 1], fresh[MC_TOKEN_LEN + 1];
    s_read_admin (&f, admin);
    s_stop (&f);
    CU_ASSERT_FATAL (unlink (f.admin_path) == 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL (s_start (&f));
    s_read_admin (&f, fresh);
    CU_ASSERT (strcmp (admin, fresh) != 0);
    CU_ASSERT_EQUAL (s_verify_status (&f, fresh, MC_PERM_MODULES_MANAGE), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_verify_status (&f, admin, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    CU_ASSERT_EQUAL (mc_authtab_size (f.ctx.authtab), 1);
    s_stop (&f);
    //  A hand-edited token without its newline is fine too.
    CU_ASSERT_FATAL (mc_test_write_file (f.admin_path, fresh, MC_TOKEN_LEN) == 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL (s_start (&f));
    CU_ASSERT_EQUAL (s_verify_status (&f, fresh, MC_PERM_MODULES_MANAGE), MC__STATUS__STATUS_OK);
    s_stop (&f);
    //  Not a token: the actor refuses to start, and the file is left for the operator.
    CU_ASSERT_FATAL (mc_test_write_file (f.admin_path, "not a token\n", 12) == 0);
    CU_ASSERT_PTR_NULL (s_start (&f));
    CU_ASSERT_EQUAL (mc_test_exists (f.admin_path), true);
    s_teardown (&f);
}

//  A token with expires_at (UI tokens) works until then; an expired record is
//  forgotten for good at the next start.
static void test_expiry (void)
{
    s_auth_t f;
    s_setup (&f, 100, 20);
    int64_t now = mc_time_unix ();
    const struct {
        const char *principal;
        int64_t expires_at;
    } issues[] = {{"ui:mod-a:1", now + 3600}, {"ui:mod-a:2", now - 1}};
    char tokens[2][MC_TOKEN_LEN + 1];
    for (int i = 0; i < 2; i++) {
        Mc__AuthIssue issue = MC__AUTH_ISSUE__INIT;
        issue.principal = (char *)issues[i].principal;
        issue.kind = MC__PRINCIPAL_KIND__PRINCIPAL_UI;
        issue.permissions = MC_PERM_DEVICE_READ;
        issue.expires_at = issues[i].expires_at;
        mc_env_t req = MC__ENVELOPE__INIT;
        req.body_case = MC__ENVELOPE__BODY_AUTH_ISSUE;
        req.auth_issue = &issue;
        mc_env_t *reply = s_call (&f, &req);
        CU_ASSERT_EQUAL_FATAL (reply->body_case, MC__ENVELOPE__BODY_AUTH_ISSUED);
        snprintf (tokens[i], sizeof tokens[i], "%s", reply->auth_issued->token);
        mc_env_free (reply);
    }
    mc_env_t *reply = s_verify (&f, tokens[0], MC_PERM_DEVICE_READ);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (reply->auth_verdict->kind, MC__PRINCIPAL_KIND__PRINCIPAL_UI);
    CU_ASSERT_STRING_EQUAL (reply->auth_verdict->principal, "ui:mod-a:1");
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_verify_status (&f, tokens[1], 0), MC__STATUS__STATUS_UNAUTHORIZED);
    char *hex = mc_store_get (f.ctx.store, "tokp/ui:mod-a:2", NULL);
    CU_ASSERT_PTR_NOT_NULL (hex);
    free (hex);
    //  Restart: the expired record is gone from the store, the live one still works.
    s_stop (&f);
    CU_ASSERT_PTR_NOT_NULL_FATAL (s_start (&f));
    CU_ASSERT_PTR_NULL (mc_store_get (f.ctx.store, "tokp/ui:mod-a:2", NULL));
    CU_ASSERT_EQUAL (s_verify_status (&f, tokens[1], 0), MC__STATUS__STATUS_UNAUTHORIZED);
    CU_ASSERT_EQUAL (s_verify_status (&f, tokens[0], MC_PERM_DEVICE_READ), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (mc_authtab_size (f.ctx.authtab), 2);
    s_teardown (&f);
}

static void test_undecodable_frame (void)
{
    s_auth_t f;
    s_setup (&f, 100, 20);
    char token[MC_TOKEN_LEN + 1];
    s_issue_ok (&f, "mod-a", MC_PERM_DEVICE_READ, token);
    //  Bytes that are not an Envelope: a runaway varint, a length past the end, a
    //  field with the wrong wire type, and a multi-frame message.
    const struct {
        const char *bytes;
        size_t len;
    } garbage[] = {
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11},
        {"\x52\x40\x0a\x02", 4},
        {"\x0a\x05hello", 7},
        {"\x6a\x05\x0a\xff\xff\xff\xff", 7},
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        zframe_t *frame = zframe_new (garbage[i].bytes, garbage[i].len);
        CU_ASSERT_FATAL (zframe_send (&frame, f.client, 0) == 0);
    }
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "one");
    zmsg_addstr (msg, "two");
    zmsg_addstr (msg, "three");
    CU_ASSERT_FATAL (zmsg_send (&msg, f.client) == 0);
    //  The actor is still there and answers the next valid call correctly.
    mc_env_t *reply = s_verify (&f, token, MC_PERM_DEVICE_READ);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_STRING_EQUAL (reply->auth_verdict->principal, "mod-a");
    mc_env_free (reply);
    //  A valid Envelope with no body, or with a body auth does not handle.
    mc_env_t req = MC__ENVELOPE__INIT;
    reply = s_call (&f, &req);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
    CU_ASSERT_STRING_EQUAL (reply->error, "UNSUPPORTED");
    mc_env_free (reply);
    Mc__AuthVerdict verdict = MC__AUTH_VERDICT__INIT;
    req.body_case = MC__ENVELOPE__BODY_AUTH_VERDICT;
    req.auth_verdict = &verdict;
    reply = s_call (&f, &req);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
    CU_ASSERT_STRING_EQUAL (reply->error, "UNSUPPORTED");
    mc_env_free (reply);
    //  An empty AuthVerify (no token at all) is unauthorized, not a crash.
    Mc__AuthVerify empty = MC__AUTH_VERIFY__INIT;
    req.body_case = MC__ENVELOPE__BODY_AUTH_VERIFY;
    req.auth_verify = &empty;
    reply = s_call (&f, &req);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_UNAUTHORIZED);
    mc_env_free (reply);
    //  A notification (request_id 0) gets no reply, but is still handled.
    Mc__AuthRevoke revoke = MC__AUTH_REVOKE__INIT;
    revoke.principal = "mod-a";
    req.body_case = MC__ENVELOPE__BODY_AUTH_REVOKE;
    req.auth_revoke = &revoke;
    CU_ASSERT_EQUAL (mc_notify (f.client, &req), 0);
    CU_ASSERT_EQUAL (s_verify_status (&f, token, 0), MC__STATUS__STATUS_UNAUTHORIZED);
    s_teardown (&f);
}

void mc_test_auth (void)
{
    CU_pSuite suite = CU_add_suite ("auth", NULL, NULL);
    CU_add_test (suite, "admin token", test_admin_token);
    CU_add_test (suite, "issue and verify", test_issue_verify);
    CU_add_test (suite, "revoke", test_revoke);
    CU_add_test (suite, "re-issue with a given token", test_reissue_given_token);
    CU_add_test (suite, "bad principal", test_bad_principal);
    CU_add_test (suite, "rate limit", test_rate_limit);
    CU_add_test (suite, "persistence", test_persistence);
    CU_add_test (suite, "admin token re-created", test_admin_token_recreated);
    CU_add_test (suite, "expiry", test_expiry);
    CU_add_test (suite, "undecodable frame", test_undecodable_frame);
}
