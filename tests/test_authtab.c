/*  Unit suite for core/authtab: the token table request threads check. Entries are
    keyed by sha256(token); every check of a known token spends one rate-limit unit,
    even when it is then refused for a missing permission. Clocks are injected. */
#include "core/authtab.h"
#include "core/perms.h"

#include <CUnit/CUnit.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define T0        1000000000000ull // monotonic ns of the first check
#define NOW_UNIX  1800000000       // wall clock of every check
#define N_THREADS 8

//  A token and its hash.
typedef struct {
    char text[MC_TOKEN_LEN + 1]; // the bearer token
    uint8_t hash[MC_HASH_LEN];   // what the table is keyed by
} s_token_t;

static void s_token_new (s_token_t *token)
{
    mc_token_generate (token->text);
    mc_token_hash (token->text, MC_TOKEN_LEN, token->hash);
}

//  A module principal with the given permissions.
static mc_principal_t s_module (const char *name, uint32_t permissions)
{
    mc_principal_t p = {.kind = MC_KIND_MODULE, .permissions = permissions};
    snprintf (p.name, sizeof p.name, "%s", name);
    return p;
}

//  Checks token at T0 for permission.
static mc_auth_result_t s_check (mc_authtab_t *tab, const s_token_t *token, uint32_t permission)
{
    return mc_authtab_check (tab, token->text, MC_TOKEN_LEN, permission, T0, NOW_UNIX, NULL, NULL,
                             NULL);
}

static void test_put_check (void)
{
    CU_ASSERT_FATAL (sodium_init () >= 0);
    mc_authtab_t *tab = mc_authtab_new (100, 20);
    CU_ASSERT_EQUAL (mc_authtab_size (tab), 0);
    s_token_t token;
    s_token_new (&token);
    mc_principal_t p = s_module ("mod-a", MC_PERM_DEVICE_READ | MC_PERM_EVENTS_PUBLISH);
    mc_authtab_put (tab, token.hash, &p);
    CU_ASSERT_EQUAL (mc_authtab_size (tab), 1);

    mc_principal_t got;
    memset (&got, 0xAA, sizeof got);
    uint32_t remaining = 0;
    CU_ASSERT_EQUAL (mc_authtab_check (tab, token.text, MC_TOKEN_LEN, MC_PERM_DEVICE_READ, T0,
                                       NOW_UNIX, &got, NULL, &remaining),
                     MC_AUTH_OK);
    CU_ASSERT_STRING_EQUAL (got.name, "mod-a");
    CU_ASSERT_EQUAL (got.kind, MC_KIND_MODULE);
    CU_ASSERT_EQUAL (got.permissions, MC_PERM_DEVICE_READ | MC_PERM_EVENTS_PUBLISH);
    CU_ASSERT_FALSE (got.system);
    CU_ASSERT_EQUAL (remaining, 19);
    //  Both permissions at once, and "any valid token".
    CU_ASSERT_EQUAL (s_check (tab, &token, MC_PERM_DEVICE_READ | MC_PERM_EVENTS_PUBLISH),
                     MC_AUTH_OK);
    CU_ASSERT_EQUAL (s_check (tab, &token, 0), MC_AUTH_OK);
    //  The limit the table applies.
    CU_ASSERT_EQUAL (mc_authtab_limit (tab)->rate, 100);
    CU_ASSERT_EQUAL (mc_authtab_limit (tab)->burst, 20);
    mc_authtab_destroy (&tab);
    CU_ASSERT_PTR_NULL (tab);
    mc_authtab_destroy (&tab);
}

//  By hash (a native session hashes its token once): the same answers, and the same
//  bucket as checks by the token's text.
static void test_check_hash (void)
{
    mc_authtab_t *tab = mc_authtab_new (100, 20);
    s_token_t token, stranger;
    s_token_new (&token);
    s_token_new (&stranger);
    mc_principal_t p = s_module ("mod-h", MC_PERM_DEVICE_READ);
    mc_authtab_put (tab, token.hash, &p);
    mc_principal_t got = {0};
    uint32_t remaining = 0;
    CU_ASSERT_EQUAL (mc_authtab_check_hash (tab, token.hash, MC_PERM_DEVICE_READ, T0, NOW_UNIX,
                                            &got, NULL, &remaining),
                     MC_AUTH_OK);
    CU_ASSERT_STRING_EQUAL (got.name, "mod-h");
    CU_ASSERT_EQUAL (remaining, 19);
    CU_ASSERT_EQUAL (mc_authtab_check_hash (tab, token.hash, MC_PERM_EVENTS_PUBLISH, T0, NOW_UNIX,
                                            NULL, NULL, NULL),
                     MC_AUTH_FORBIDDEN);
    CU_ASSERT_EQUAL (mc_authtab_check_hash (tab, stranger.hash, 0, T0, NOW_UNIX, NULL, NULL, NULL),
                     MC_AUTH_UNKNOWN);
    //  18 units left of the burst, spent alternately by text and by hash.
    for (int i = 0; i < 18; i++)
        CU_ASSERT_EQUAL (
            i % 2 ? s_check (tab, &token, 0)
                  : mc_authtab_check_hash (tab, token.hash, 0, T0, NOW_UNIX, NULL, NULL, NULL),
            MC_AUTH_OK);
    uint64_t retry = 0;
    CU_ASSERT_EQUAL (mc_authtab_check_hash (tab, token.hash, 0, T0, NOW_UNIX, NULL, &retry, NULL),
                     MC_AUTH_RATE_LIMITED);
    CU_ASSERT (retry > 0);
    CU_ASSERT_EQUAL (s_check (tab, &token, 0), MC_AUTH_RATE_LIMITED);
    mc_authtab_destroy (&tab);
}

static void test_unknown (void)
{
    mc_authtab_t *tab = mc_authtab_new (100, 20);
    s_token_t known, other;
    s_token_new (&known);
    s_token_new (&other);
    mc_principal_t p = s_module ("mod-a", MC_PERM_ALL);
    mc_authtab_put (tab, known.hash, &p);
    mc_principal_t got = s_module ("untouched", 0);
    CU_ASSERT_EQUAL (
        mc_authtab_check (tab, other.text, MC_TOKEN_LEN, 0, T0, NOW_UNIX, &got, NULL, NULL),
        MC_AUTH_UNKNOWN);
    CU_ASSERT_STRING_EQUAL (got.name, "untouched");
    //  A prefix of a known token, the empty token, the hash itself as a token.
    CU_ASSERT_EQUAL (
        mc_authtab_check (tab, known.text, MC_TOKEN_LEN - 1, 0, T0, NOW_UNIX, NULL, NULL, NULL),
        MC_AUTH_UNKNOWN);
    CU_ASSERT_EQUAL (mc_authtab_check (tab, "", 0, 0, T0, NOW_UNIX, NULL, NULL, NULL),
                     MC_AUTH_UNKNOWN);
    char hex[MC_HASH_HEX_LEN + 1];
    mc_hex_encode (known.hash, MC_HASH_LEN, hex);
    CU_ASSERT_EQUAL (
        mc_authtab_check (tab, hex, MC_HASH_HEX_LEN, 0, T0, NOW_UNIX, NULL, NULL, NULL),
        MC_AUTH_UNKNOWN);
    //  Unknown checks cost the known token nothing.
    uint32_t remaining = 0;
    CU_ASSERT_EQUAL (
        mc_authtab_check (tab, known.text, MC_TOKEN_LEN, 0, T0, NOW_UNIX, NULL, NULL, &remaining),
        MC_AUTH_OK);
    CU_ASSERT_EQUAL (remaining, 19);
    mc_authtab_destroy (&tab);
}

static void test_forbidden_spends (void)
{
    mc_authtab_t *tab = mc_authtab_new (100, 3);
    s_token_t token;
    s_token_new (&token);
    mc_principal_t p = s_module ("mod-a", MC_PERM_DEVICE_READ);
    mc_authtab_put (tab, token.hash, &p);
    mc_principal_t got = {.kind = MC_KIND_MODULE};
    CU_ASSERT_EQUAL (mc_authtab_check (tab, token.text, MC_TOKEN_LEN, MC_PERM_DEVICE_WRITE, T0,
                                       NOW_UNIX, &got, NULL, NULL),
                     MC_AUTH_FORBIDDEN);
    //  The principal is still reported (for the log and the error body).
    CU_ASSERT_STRING_EQUAL (got.name, "mod-a");
    //  One granted and one not: forbidden.
    CU_ASSERT_EQUAL (s_check (tab, &token, MC_PERM_DEVICE_READ | MC_PERM_DEVICE_WRITE),
                     MC_AUTH_FORBIDDEN);
    CU_ASSERT_EQUAL (s_check (tab, &token, MC_PERM_MODULES_MANAGE), MC_AUTH_FORBIDDEN);
    //  The three refusals spent the burst of 3: even an allowed call is now limited.
    uint64_t retry = 0;
    CU_ASSERT_EQUAL (mc_authtab_check (tab, token.text, MC_TOKEN_LEN, MC_PERM_DEVICE_READ, T0,
                                       NOW_UNIX, NULL, &retry, NULL),
                     MC_AUTH_RATE_LIMITED);
    CU_ASSERT_EQUAL (retry, 10000000);
    mc_authtab_destroy (&tab);
}

static void test_system_and_admin (void)
{
    mc_authtab_t *tab = mc_authtab_new (100, 50);
    s_token_t system_token, admin_token, ui_token;
    s_token_new (&system_token);
    s_token_new (&admin_token);
    s_token_new (&ui_token);
    mc_principal_t system = s_module ("sys-mod", 0);
    system.system = true;
    mc_principal_t admin = {.kind = MC_KIND_ADMIN, .name = "admin"};
    mc_principal_t ui = {.kind = MC_KIND_UI, .name = "ui:mod-a"};
    mc_authtab_put (tab, system_token.hash, &system);
    mc_authtab_put (tab, admin_token.hash, &admin);
    mc_authtab_put (tab, ui_token.hash, &ui);
    for (uint32_t bit = 1; bit <= MC_PERM_MODULES_MANAGE; bit <<= 1) {
        CU_ASSERT_EQUAL (s_check (tab, &system_token, bit), MC_AUTH_OK);
        CU_ASSERT_EQUAL (s_check (tab, &admin_token, bit), MC_AUTH_OK);
        //  A UI token with no bits is not the admin.
        CU_ASSERT_EQUAL (s_check (tab, &ui_token, bit), MC_AUTH_FORBIDDEN);
    }
    CU_ASSERT_EQUAL (s_check (tab, &system_token, MC_PERM_ALL), MC_AUTH_OK);
    CU_ASSERT_EQUAL (s_check (tab, &admin_token, MC_PERM_ALL), MC_AUTH_OK);
    CU_ASSERT_EQUAL (s_check (tab, &ui_token, 0), MC_AUTH_OK);
    mc_authtab_destroy (&tab);
}

static void test_rate_limited (void)
{
    mc_authtab_t *tab = mc_authtab_new (100, 20);
    s_token_t a, b;
    s_token_new (&a);
    s_token_new (&b);
    mc_principal_t pa = s_module ("mod-a", MC_PERM_DEVICE_READ);
    mc_principal_t pb = s_module ("mod-b", MC_PERM_DEVICE_READ);
    mc_authtab_put (tab, a.hash, &pa);
    mc_authtab_put (tab, b.hash, &pb);
    for (uint32_t i = 0; i < 20; i++) {
        uint32_t remaining = 99;
        CU_ASSERT_EQUAL (mc_authtab_check (tab, a.text, MC_TOKEN_LEN, MC_PERM_DEVICE_READ, T0,
                                           NOW_UNIX, NULL, NULL, &remaining),
                         MC_AUTH_OK);
        CU_ASSERT_EQUAL (remaining, 19 - i);
    }
    uint64_t retry = 0;
    mc_principal_t got = {.kind = MC_KIND_MODULE};
    CU_ASSERT_EQUAL (mc_authtab_check (tab, a.text, MC_TOKEN_LEN, MC_PERM_DEVICE_READ, T0, NOW_UNIX,
                                       &got, &retry, NULL),
                     MC_AUTH_RATE_LIMITED);
    CU_ASSERT_EQUAL (retry, 10000000); // one interval at 100/s
    CU_ASSERT_STRING_EQUAL (got.name, "mod-a");
    //  Rate limiting comes before the permission check.
    CU_ASSERT_EQUAL (s_check (tab, &a, MC_PERM_DEVICE_WRITE), MC_AUTH_RATE_LIMITED);
    //  Buckets are per token: b is untouched.
    CU_ASSERT_EQUAL (s_check (tab, &b, MC_PERM_DEVICE_READ), MC_AUTH_OK);
    //  One interval later, one more for a.
    CU_ASSERT_EQUAL (
        mc_authtab_check (tab, a.text, MC_TOKEN_LEN, 0, T0 + 10000000, NOW_UNIX, NULL, NULL, NULL),
        MC_AUTH_OK);
    CU_ASSERT_EQUAL (mc_authtab_check (tab, a.text, MC_TOKEN_LEN, 0, T0 + 10000000, NOW_UNIX, NULL,
                                       &retry, NULL),
                     MC_AUTH_RATE_LIMITED);
    mc_authtab_destroy (&tab);
}

static void test_remove (void)
{
    mc_authtab_t *tab = mc_authtab_new (100, 20);
    s_token_t a, b;
    s_token_new (&a);
    s_token_new (&b);
    mc_principal_t pa = s_module ("mod-a", 0);
    mc_principal_t pb = s_module ("mod-b", 0);
    mc_authtab_put (tab, a.hash, &pa);
    mc_authtab_put (tab, b.hash, &pb);
    CU_ASSERT_EQUAL (s_check (tab, &a, 0), MC_AUTH_OK);
    CU_ASSERT_TRUE (mc_authtab_remove (tab, a.hash));
    CU_ASSERT_EQUAL (mc_authtab_size (tab), 1);
    CU_ASSERT_EQUAL (s_check (tab, &a, 0), MC_AUTH_UNKNOWN);
    CU_ASSERT_EQUAL (s_check (tab, &b, 0), MC_AUTH_OK);
    CU_ASSERT_FALSE (mc_authtab_remove (tab, a.hash));
    CU_ASSERT_EQUAL (mc_authtab_size (tab), 1);
    CU_ASSERT_TRUE (mc_authtab_remove (tab, b.hash));
    CU_ASSERT_EQUAL (mc_authtab_size (tab), 0);
    CU_ASSERT_EQUAL (s_check (tab, &b, 0), MC_AUTH_UNKNOWN);
    mc_authtab_destroy (&tab);
}

//  Putting a hash again replaces its principal, keeps the size, and gives it a full
//  bucket again.
static void test_replace (void)
{
    mc_authtab_t *tab = mc_authtab_new (100, 2);
    s_token_t token;
    s_token_new (&token);
    mc_principal_t before = s_module ("mod-a", MC_PERM_DEVICE_READ);
    mc_authtab_put (tab, token.hash, &before);
    CU_ASSERT_EQUAL (s_check (tab, &token, MC_PERM_DEVICE_READ), MC_AUTH_OK);
    CU_ASSERT_EQUAL (s_check (tab, &token, MC_PERM_DEVICE_READ), MC_AUTH_OK);
    CU_ASSERT_EQUAL (s_check (tab, &token, MC_PERM_DEVICE_READ), MC_AUTH_RATE_LIMITED);
    mc_principal_t after = s_module ("mod-a2", MC_PERM_DEVICE_WRITE);
    mc_authtab_put (tab, token.hash, &after);
    CU_ASSERT_EQUAL (mc_authtab_size (tab), 1);
    mc_principal_t got = {.kind = MC_KIND_MODULE};
    CU_ASSERT_EQUAL (mc_authtab_check (tab, token.text, MC_TOKEN_LEN, MC_PERM_DEVICE_WRITE, T0,
                                       NOW_UNIX, &got, NULL, NULL),
                     MC_AUTH_OK);
    CU_ASSERT_STRING_EQUAL (got.name, "mod-a2");
    CU_ASSERT_EQUAL (s_check (tab, &token, MC_PERM_DEVICE_READ), MC_AUTH_FORBIDDEN);
    CU_ASSERT_EQUAL (s_check (tab, &token, 0), MC_AUTH_RATE_LIMITED);
    //  Removing once removes it: no stale older entry is left behind.
    CU_ASSERT_TRUE (mc_authtab_remove (tab, token.hash));
    CU_ASSERT_EQUAL (s_check (tab, &token, 0), MC_AUTH_UNKNOWN);
    CU_ASSERT_EQUAL (mc_authtab_size (tab), 0);
    mc_authtab_destroy (&tab);
}

static void test_expiry (void)
{
    mc_authtab_t *tab = mc_authtab_new (100, 20);
    s_token_t past, future, edge;
    s_token_new (&past);
    s_token_new (&future);
    s_token_new (&edge);
    mc_principal_t p = {.kind = MC_KIND_UI, .name = "ui:mod-a", .expires_at = NOW_UNIX - 1};
    mc_authtab_put (tab, past.hash, &p);
    p.expires_at = NOW_UNIX + 60;
    mc_authtab_put (tab, future.hash, &p);
    p.expires_at = NOW_UNIX; // expires at this very second
    mc_authtab_put (tab, edge.hash, &p);
    CU_ASSERT_EQUAL (s_check (tab, &past, 0), MC_AUTH_UNKNOWN);
    CU_ASSERT_EQUAL (s_check (tab, &edge, 0), MC_AUTH_UNKNOWN);
    CU_ASSERT_EQUAL (s_check (tab, &future, 0), MC_AUTH_OK);
    //  The same token a minute on has expired.
    CU_ASSERT_EQUAL (
        mc_authtab_check (tab, future.text, MC_TOKEN_LEN, 0, T0, NOW_UNIX + 60, NULL, NULL, NULL),
        MC_AUTH_UNKNOWN);
    //  Lookups (no unit spent), by token and by hash, apply the same expiry.
    mc_principal_t got;
    CU_ASSERT_TRUE (mc_authtab_lookup (tab, future.text, MC_TOKEN_LEN, NOW_UNIX, &got));
    CU_ASSERT_STRING_EQUAL (got.name, "ui:mod-a");
    CU_ASSERT_TRUE (mc_authtab_lookup_hash (tab, future.hash, NOW_UNIX, NULL));
    CU_ASSERT_FALSE (mc_authtab_lookup_hash (tab, future.hash, NOW_UNIX + 60, NULL));
    CU_ASSERT_FALSE (mc_authtab_lookup_hash (tab, past.hash, NOW_UNIX, NULL));
    CU_ASSERT_FALSE (mc_authtab_lookup (tab, edge.text, MC_TOKEN_LEN, NOW_UNIX, NULL));
    //  Expired entries are still in the table until removed.
    CU_ASSERT_EQUAL (mc_authtab_size (tab), 3);
    mc_authtab_destroy (&tab);
}

//  5000 entries: past the 1024 initial slots, so the table grows several times; every
//  entry must still be found with its own principal, and removes must find them too.
static void test_grow (void)
{
    enum { COUNT = 5000 };
    mc_authtab_t *tab = mc_authtab_new (100, 20);
    static s_token_t tokens[COUNT];
    for (int i = 0; i < COUNT; i++) {
        s_token_new (&tokens[i]);
        char name[32];
        snprintf (name, sizeof name, "mod-%d", i);
        mc_principal_t p = s_module (name, (uint32_t)i & MC_PERM_ALL);
        mc_authtab_put (tab, tokens[i].hash, &p);
    }
    CU_ASSERT_EQUAL (mc_authtab_size (tab), COUNT);
    int found = 0;
    for (int i = 0; i < COUNT; i++) {
        mc_principal_t got = {.kind = MC_KIND_MODULE};
        char name[32];
        snprintf (name, sizeof name, "mod-%d", i);
        if (mc_authtab_check (tab, tokens[i].text, MC_TOKEN_LEN, 0, T0, NOW_UNIX, &got, NULL,
                              NULL) == MC_AUTH_OK &&
            strcmp (got.name, name) == 0 && got.permissions == ((uint32_t)i & MC_PERM_ALL))
            found++;
    }
    CU_ASSERT_EQUAL (found, COUNT);
    //  Replacing after growth does not duplicate.
    mc_principal_t p = s_module ("replaced", 0);
    mc_authtab_put (tab, tokens[4321].hash, &p);
    CU_ASSERT_EQUAL (mc_authtab_size (tab), COUNT);
    int removed = 0;
    for (int i = 0; i < COUNT; i += 2)
        removed += mc_authtab_remove (tab, tokens[i].hash);
    CU_ASSERT_EQUAL (removed, COUNT / 2);
    CU_ASSERT_EQUAL (mc_authtab_size (tab), COUNT / 2);
    int odd_found = 0, even_found = 0;
    for (int i = 0; i < COUNT; i++)
        if (s_check (tab, &tokens[i], 0) == MC_AUTH_OK) {
            if (i % 2)
                odd_found++;
            else
                even_found++;
        }
    CU_ASSERT_EQUAL (odd_found, COUNT / 2);
    CU_ASSERT_EQUAL (even_found, 0);
    mc_authtab_destroy (&tab);
}

//  Shared by the checking threads.
typedef struct {
    mc_authtab_t *tab;        // the table
    const s_token_t *token;   // the one token they all spend
    pthread_barrier_t *start; // all threads begin together
    int checks;               // checks per thread
    atomic_int allowed;       // MC_AUTH_OK total
    atomic_int limited;       // MC_AUTH_RATE_LIMITED total
    atomic_int other;         // anything else
} s_hammer_t;

static void *s_hammer (void *arg)
{
    s_hammer_t *h = arg;
    pthread_barrier_wait (h->start);
    for (int i = 0; i < h->checks; i++) {
        mc_auth_result_t r = mc_authtab_check (h->tab, h->token->text, MC_TOKEN_LEN,
                                               MC_PERM_DEVICE_READ, T0, NOW_UNIX, NULL, NULL, NULL);
        atomic_fetch_add (r == MC_AUTH_OK             ? &h->allowed
                          : r == MC_AUTH_RATE_LIMITED ? &h->limited
                                                      : &h->other,
                          1);
    }
    return NULL;
}

//  8 threads check one token at a fixed instant, far more often than its burst; the
//  table keeps another token's entries changing meanwhile (writer vs readers).
static void test_concurrent_exact (void)
{
    enum { BURST = 5000, CHECKS = 4000 };
    mc_authtab_t *tab = mc_authtab_new (100, BURST);
    s_token_t token;
    s_token_new (&token);
    mc_principal_t p = s_module ("mod-a", MC_PERM_DEVICE_READ);
    mc_authtab_put (tab, token.hash, &p);
    pthread_barrier_t start;
    pthread_barrier_init (&start, NULL, N_THREADS + 1);
    s_hammer_t h = {.tab = tab, .token = &token, .start = &start, .checks = CHECKS};
    atomic_init (&h.allowed, 0);
    atomic_init (&h.limited, 0);
    atomic_init (&h.other, 0);
    pthread_t threads[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        CU_ASSERT_FATAL (pthread_create (&threads[i], NULL, s_hammer, &h) == 0);
    pthread_barrier_wait (&start);
    //  The writer side: other tokens come and go (and the table grows) under the readers.
    static s_token_t others[2000];
    for (int i = 0; i < 2000; i++) {
        s_token_new (&others[i]);
        mc_principal_t o = s_module ("other", 0);
        mc_authtab_put (tab, others[i].hash, &o);
        if (i % 3 == 0)
            mc_authtab_remove (tab, others[i].hash);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join (threads[i], NULL);
    pthread_barrier_destroy (&start);
    CU_ASSERT_EQUAL (atomic_load (&h.allowed), BURST);
    CU_ASSERT_EQUAL (atomic_load (&h.limited), N_THREADS * CHECKS - BURST);
    CU_ASSERT_EQUAL (atomic_load (&h.other), 0);
    CU_ASSERT_EQUAL (mc_authtab_size (tab), 1 + 2000 - 667);
    mc_authtab_destroy (&tab);
}

void mc_test_authtab (void)
{
    CU_pSuite suite = CU_add_suite ("authtab", NULL, NULL);
    CU_add_test (suite, "put and check", test_put_check);
    CU_add_test (suite, "check by hash", test_check_hash);
    CU_add_test (suite, "unknown token", test_unknown);
    CU_add_test (suite, "forbidden spends a unit", test_forbidden_spends);
    CU_add_test (suite, "system and admin", test_system_and_admin);
    CU_add_test (suite, "rate limited", test_rate_limited);
    CU_add_test (suite, "remove", test_remove);
    CU_add_test (suite, "replace", test_replace);
    CU_add_test (suite, "expiry", test_expiry);
    CU_add_test (suite, "grow past 1024", test_grow);
    CU_add_test (suite, "concurrent exact", test_concurrent_exact);
}
