/*  Unit suite for the storage actor, as a black box through its socket: a temporary data
    dir with module dirs made by the test, the actor started with mc_actor_start, and
    Envelope requests over a DEALER. Covers put / get / delete, list paging, batch
    atomicity, quota refusals that leave data intact, persistence across a restart, drop,
    isolation of two modules, LRU closing beyond max_open, and bad requests. */
#include "actors/storage.h"
#include "core/actor.h"
#include "core/context.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CALL_TIMEOUT_MS 10000

//  One running storage actor and its data dir.
typedef struct {
    char *dir;           // temporary data dir (owned)
    mc_config_t *config; // data_dir = dir, storage limits of the test
    mc_context_t ctx;    // what the actor is started with
    zactor_t *actor;     // the storage actor, or NULL
    zsock_t *client;     // DEALER to inproc://modcore.storage
} s_fixture_t;

static void s_start (s_fixture_t *self)
{
    self->actor = mc_actor_start ("storage", mc_storage_actor, &self->ctx);
    CU_ASSERT_PTR_NOT_NULL_FATAL (self->actor);
    self->client = mc_client_new ("storage");
    CU_ASSERT_PTR_NOT_NULL_FATAL (self->client);
}

static void s_stop (s_fixture_t *self)
{
    zsock_destroy (&self->client);
    zactor_destroy (&self->actor);
}

//  <data>/modules/<name>, as the registry makes it when it installs a module.
static void s_make_module (s_fixture_t *self, const char *name)
{
    char path[4400];
    snprintf (path, sizeof path, "%s/modules/%s", self->dir, name);
    CU_ASSERT_EQUAL_FATAL (mkdir (path, 0755), 0);
}

static void s_setup (s_fixture_t *self, uint32_t max_open, uint64_t max_keys, uint64_t max_bytes)
{
    memset (self, 0, sizeof *self);
    self->dir = mc_test_tmpdir ("storage");
    CU_ASSERT_PTR_NOT_NULL_FATAL (self->dir);
    char path[4400];
    snprintf (path, sizeof path, "%s/modules", self->dir);
    CU_ASSERT_EQUAL_FATAL (mkdir (path, 0755), 0);
    self->config = mc_config_new ();
    free (self->config->data_dir);
    self->config->data_dir = strdup (self->dir);
    self->config->storage_max_open = max_open;
    self->config->storage_max_keys = max_keys;
    self->config->storage_max_bytes = max_bytes;
    self->ctx.config = self->config;
    s_start (self);
}

static void s_teardown (s_fixture_t *self)
{
    s_stop (self);
    mc_config_destroy (&self->config);
    mc_test_rmtree (self->dir);
    free (self->dir);
    self->dir = NULL;
}

static mc_env_t *s_call (s_fixture_t *self, mc_env_t *req)
{
    mc_env_t *reply = mc_call (self->client, req, CALL_TIMEOUT_MS);
    CU_ASSERT_PTR_NOT_NULL_FATAL (reply);
    return reply;
}

//  Status of a reply, freeing it (for calls whose body does not matter).
static Mc__Status s_status (mc_env_t *reply)
{
    Mc__Status status = reply->status;
    mc_env_free (reply);
    return status;
}

static mc_env_t *s_put (s_fixture_t *self, const char *module, const char *key, const char *value)
{
    Mc__StoragePut put = MC__STORAGE_PUT__INIT;
    put.module = (char *)module;
    put.key = (char *)key;
    put.value_json = (char *)value;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_STORAGE_PUT;
    req.storage_put = &put;
    return s_call (self, &req);
}

static mc_env_t *s_get (s_fixture_t *self, const char *module, const char *key)
{
    Mc__StorageGet get = MC__STORAGE_GET__INIT;
    get.module = (char *)module;
    get.key = (char *)key;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_STORAGE_GET;
    req.storage_get = &get;
    return s_call (self, &req);
}

static mc_env_t *s_delete (s_fixture_t *self, const char *module, const char *key)
{
    Mc__StorageDelete del = MC__STORAGE_DELETE__INIT;
    del.module = (char *)module;
    del.key = (char *)key;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_STORAGE_DELETE;
    req.storage_delete = &del;
    return s_call (self, &req);
}

static mc_env_t *s_list (s_fixture_t *self, const char *module, const char *prefix,
                         const char *after, uint32_t limit)
{
    Mc__StorageList list = MC__STORAGE_LIST__INIT;
    list.module = (char *)module;
    list.prefix = (char *)prefix;
    list.after = (char *)after;
    list.limit = limit;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_STORAGE_LIST;
    req.storage_list = &list;
    return s_call (self, &req);
}

//  A batch of n puts (keys[i] = values[i]) and m deletes.
static mc_env_t *s_batch (s_fixture_t *self, const char *module, const char **keys,
                          const char **values, size_t n, const char **deletes, size_t m)
{
    Mc__StorageItem items[n + 1];
    Mc__StorageItem *ptrs[n + 1];
    for (size_t i = 0; i < n; i++) {
        mc__storage_item__init (&items[i]);
        items[i].key = (char *)keys[i];
        items[i].value_json = (char *)values[i];
        ptrs[i] = &items[i];
    }
    Mc__StorageBatch batch = MC__STORAGE_BATCH__INIT;
    batch.module = (char *)module;
    batch.n_puts = n;
    batch.puts = ptrs;
    batch.n_deletes = m;
    batch.deletes = (char **)deletes;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_STORAGE_BATCH;
    req.storage_batch = &batch;
    return s_call (self, &req);
}

static mc_env_t *s_usage (s_fixture_t *self, const char *module)
{
    Mc__StorageUsage usage = MC__STORAGE_USAGE__INIT;
    usage.module = (char *)module;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_STORAGE_USAGE;
    req.storage_usage = &usage;
    return s_call (self, &req);
}

static mc_env_t *s_drop (s_fixture_t *self, const char *module)
{
    Mc__StorageDrop drop = MC__STORAGE_DROP__INIT;
    drop.module = (char *)module;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_STORAGE_DROP;
    req.storage_drop = &drop;
    return s_call (self, &req);
}

//  Asserts key holds value (JSON text) in module.
static void s_expect_value (s_fixture_t *self, const char *module, const char *key,
                            const char *value)
{
    mc_env_t *reply = s_get (self, module, key);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    if (reply->status == MC__STATUS__STATUS_OK) {
        CU_ASSERT_EQUAL_FATAL (reply->body_case, MC__ENVELOPE__BODY_STORAGE_RESULT);
        CU_ASSERT_EQUAL_FATAL (reply->storage_result->n_items, 1);
        CU_ASSERT_STRING_EQUAL (reply->storage_result->items[0]->key, key);
        CU_ASSERT_STRING_EQUAL (reply->storage_result->items[0]->value_json, value);
    } else
        fprintf (stderr, "\n  get %s/%s: %s %s\n", module, key, reply->error, reply->detail);
    mc_env_free (reply);
}

static void s_expect_absent (s_fixture_t *self, const char *module, const char *key)
{
    mc_env_t *reply = s_get (self, module, key);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL (reply->error, "KEY_NOT_FOUND");
    mc_env_free (reply);
}

//  Asserts the usage of module.
static void s_expect_usage (s_fixture_t *self, const char *module, uint64_t keys, uint64_t bytes)
{
    mc_env_t *reply = s_usage (self, module);
    CU_ASSERT_EQUAL_FATAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (reply->storage_result->keys, keys);
    CU_ASSERT_EQUAL (reply->storage_result->bytes, bytes);
    if (reply->storage_result->keys != keys || reply->storage_result->bytes != bytes)
        fprintf (stderr, "\n  usage of %s: %llu keys %llu bytes, expected %llu %llu\n", module,
                 (unsigned long long)reply->storage_result->keys,
                 (unsigned long long)reply->storage_result->bytes, (unsigned long long)keys,
                 (unsigned long long)bytes);
    mc_env_free (reply);
}

//  LevelDB LOCK files this process holds open (one per open database).
static int s_open_databases (void)
{
    DIR *dir = opendir ("/proc/self/fd");
    if (!dir)
        return -1;
    int count = 0;
    struct dirent *e;
    while ((e = readdir (dir))) {
        char link[320], target[4400];
        snprintf (link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink (link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        size_t len = (size_t)n;
        if (len > 8 && strcmp (target + len - 8, "/db/LOCK") == 0 &&
            strstr (target, "mc-test-storage") && strstr (target, "/modules/"))
            count++;
    }
    closedir (dir);
    return count;
}

static void test_put_get_delete (void)
{
    s_fixture_t f;
    s_setup (&f, 64, 10000, 16u << 20);
    s_make_module (&f, "mod-a");
    mc_env_t *reply = s_put (&f, "mod-a", "greeting", "\"hello\"");
    CU_ASSERT_EQUAL_FATAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (reply->body_case, MC__ENVELOPE__BODY_STORAGE_RESULT);
    CU_ASSERT_EQUAL (reply->storage_result->value_bytes, 7);
    CU_ASSERT_EQUAL (reply->storage_result->keys, 1);
    CU_ASSERT_EQUAL (reply->storage_result->bytes, 8 + 7);
    mc_env_free (reply);
    s_expect_value (&f, "mod-a", "greeting", "\"hello\"");
    //  Any JSON value, keys with '/', spaces and punctuation.
    const char *values[] = {"{\"a\":[1,2,{\"b\":null}]}", "[]", "42", "-1.5", "true", "null"};
    const char *keys[] = {"a/b/c", "with space", "~!@#$%^&*()", "x", "y", "z"};
    for (size_t i = 0; i < 6; i++)
        CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", keys[i], values[i])), MC__STATUS__STATUS_OK);
    for (size_t i = 0; i < 6; i++)
        s_expect_value (&f, "mod-a", keys[i], values[i]);
    //  Overwrite.
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "greeting", "\"hi\"")), MC__STATUS__STATUS_OK);
    s_expect_value (&f, "mod-a", "greeting", "\"hi\"");
    //  Delete, then it is gone; a second delete is NOT_FOUND.
    CU_ASSERT_EQUAL (s_status (s_delete (&f, "mod-a", "greeting")), MC__STATUS__STATUS_OK);
    s_expect_absent (&f, "mod-a", "greeting");
    reply = s_delete (&f, "mod-a", "greeting");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL (reply->error, "KEY_NOT_FOUND");
    mc_env_free (reply);
    uint64_t bytes = 0;
    for (size_t i = 0; i < 6; i++)
        bytes += strlen (keys[i]) + strlen (values[i]);
    s_expect_usage (&f, "mod-a", 6, bytes);
    s_teardown (&f);
}

static void test_bad_requests (void)
{
    s_fixture_t f;
    s_setup (&f, 64, 10000, 16u << 20);
    s_make_module (&f, "mod-a");
    char long_key[MC_STORAGE_MAX_KEY + 2];
    memset (long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = 0;
    const char *bad_keys[] = {"", "tab\there", "new\nline", "\x7f", "caf\xc3\xa9", long_key};
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        mc_env_t *reply = s_put (&f, "mod-a", bad_keys[i], "1");
        CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
        CU_ASSERT_STRING_EQUAL (reply->error, "INVALID_KEY");
        mc_env_free (reply);
    }
    long_key[MC_STORAGE_MAX_KEY] = 0; // exactly 256 bytes: fine
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", long_key, "1")), MC__STATUS__STATUS_OK);
    //  Values: JSON only, at most 64 KiB.
    const char *bad_values[] = {"", "{", "hello", "{\"a\":1,\"a\":2}", "[1,]"};
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        mc_env_t *reply = s_put (&f, "mod-a", "k", bad_values[i]);
        CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
        CU_ASSERT_STRING_EQUAL (reply->error, "INVALID_VALUE");
        mc_env_free (reply);
    }
    char *big = malloc (MC_STORAGE_MAX_VALUE + 2);
    memset (big, 'v', MC_STORAGE_MAX_VALUE + 1);
    big[0] = '"';
    big[MC_STORAGE_MAX_VALUE - 1] = '"';
    big[MC_STORAGE_MAX_VALUE] = 0; // exactly 64 KiB of JSON: fine
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "big", big)), MC__STATUS__STATUS_OK);
    big[MC_STORAGE_MAX_VALUE - 1] = 'v';
    big[MC_STORAGE_MAX_VALUE] = '"';
    big[MC_STORAGE_MAX_VALUE + 1] = 0; // one byte more
    mc_env_t *reply = s_put (&f, "mod-a", "bigger", big);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_TOO_LARGE);
    CU_ASSERT_STRING_EQUAL (reply->error, "VALUE_TOO_LARGE");
    mc_env_free (reply);
    free (big);
    s_expect_absent (&f, "mod-a", "bigger");
    s_expect_absent (&f, "mod-a", "k");
    //  Module names: invalid, or not installed.
    const char *bad_modules[] = {"", "../mod-a", "mod-a/..", "Mod", "a b"};
    for (size_t i = 0; i < sizeof bad_modules / sizeof bad_modules[0]; i++) {
        reply = s_get (&f, bad_modules[i], "k");
        CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
        CU_ASSERT_STRING_EQUAL (reply->error, "INVALID_MODULE");
        mc_env_free (reply);
    }
    reply = s_put (&f, "ghost", "k", "1");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL (reply->error, "MODULE_NOT_FOUND");
    mc_env_free (reply);
    char ghost[4400];
    snprintf (ghost, sizeof ghost, "%s/modules/ghost", f.dir);
    CU_ASSERT_FALSE (mc_test_exists (ghost)); // never created by storage
    //  A db that is a symlink is refused, never followed.
    s_make_module (&f, "mod-b");
    char link[4400], target[4400];
    snprintf (link, sizeof link, "%s/modules/mod-b/db", f.dir);
    snprintf (target, sizeof target, "%s/modules/mod-a/db", f.dir);
    CU_ASSERT_EQUAL_FATAL (symlink (target, link), 0);
    reply = s_get (&f, "mod-b", "big");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_INTERNAL);
    mc_env_free (reply);
    //  List arguments.
    reply = s_list (&f, "mod-a", "", "", MC_STORAGE_MAX_LIST + 1);
    CU_ASSERT_STRING_EQUAL (reply->error, "INVALID_LIMIT");
    mc_env_free (reply);
    reply = s_list (&f, "mod-a", "bad\x01", "", 10);
    CU_ASSERT_STRING_EQUAL (reply->error, "INVALID_PREFIX");
    mc_env_free (reply);
    //  A message that is not storage's.
    Mc__DeviceDelete del = MC__DEVICE_DELETE__INIT;
    mc_env_t req = MC__ENVELOPE__INIT;
    req.body_case = MC__ENVELOPE__BODY_DEVICE_DELETE;
    req.device_delete = &del;
    reply = s_call (&f, &req);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
    CU_ASSERT_STRING_EQUAL (reply->error, "UNSUPPORTED");
    mc_env_free (reply);
    //  A frame that does not decode gets no reply; the actor keeps serving.
    zstr_send (f.client, "not an envelope");
    s_expect_value (&f, "mod-a", long_key, "1");
    s_teardown (&f);
}

static void test_list_paging (void)
{
    s_fixture_t f;
    s_setup (&f, 64, 10000, 16u << 20);
    s_make_module (&f, "mod-a");
    //  25 keys under "item/", a few around them.
    char key[64], value[64];
    for (int i = 0; i < 25; i++) {
        snprintf (key, sizeof key, "item/%02d", i);
        snprintf (value, sizeof value, "{\"n\":%d}", i);
        CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", key, value)), MC__STATUS__STATUS_OK);
    }
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "item", "0")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "iten", "0")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "a", "0")), MC__STATUS__STATUS_OK);
    //  Pages of 10: 10, 10, 5, in key order, with next set until the last.
    char after[64] = "";
    int seen = 0, pages = 0;
    for (;;) {
        mc_env_t *reply = s_list (&f, "mod-a", "item/", after, 10);
        CU_ASSERT_EQUAL_FATAL (reply->status, MC__STATUS__STATUS_OK);
        Mc__StorageResult *r = reply->storage_result;
        pages++;
        for (size_t i = 0; i < r->n_items; i++, seen++) {
            snprintf (key, sizeof key, "item/%02d", seen);
            snprintf (value, sizeof value, "{\"n\":%d}", seen);
            CU_ASSERT_STRING_EQUAL (r->items[i]->key, key);
            CU_ASSERT_STRING_EQUAL (r->items[i]->value_json, value);
        }
        CU_ASSERT_EQUAL (r->n_items, pages < 3 ? 10 : 5);
        bool more = r->next && *r->next;
        if (more)
            CU_ASSERT_STRING_EQUAL (r->next, r->items[r->n_items - 1]->key);
        snprintf (after, sizeof after, "%s", more ? r->next : "");
        mc_env_free (reply);
        if (!more || pages > 5)
            break;
    }
    CU_ASSERT_EQUAL (pages, 3);
    CU_ASSERT_EQUAL (seen, 25);
    //  Exactly a page's worth left: no next (the actor looks one key ahead).
    mc_env_t *reply = s_list (&f, "mod-a", "item/", "item/14", 10);
    CU_ASSERT_EQUAL (reply->storage_result->n_items, 10);
    CU_ASSERT_TRUE (!reply->storage_result->next || !*reply->storage_result->next);
    mc_env_free (reply);
    //  A cursor that is not itself a key works; so does one before the prefix.
    reply = s_list (&f, "mod-a", "item/", "item/07x", 2);
    CU_ASSERT_EQUAL_FATAL (reply->storage_result->n_items, 2);
    CU_ASSERT_STRING_EQUAL (reply->storage_result->items[0]->key, "item/08");
    mc_env_free (reply);
    reply = s_list (&f, "mod-a", "item/", "a", 1);
    CU_ASSERT_EQUAL_FATAL (reply->storage_result->n_items, 1);
    CU_ASSERT_STRING_EQUAL (reply->storage_result->items[0]->key, "item/00");
    mc_env_free (reply);
    //  No prefix: everything, default limit 100.
    reply = s_list (&f, "mod-a", "", "", 0);
    CU_ASSERT_EQUAL (reply->storage_result->n_items, 28);
    CU_ASSERT_STRING_EQUAL (reply->storage_result->items[0]->key, "a");
    CU_ASSERT_STRING_EQUAL (reply->storage_result->items[27]->key, "iten");
    mc_env_free (reply);
    //  A prefix nothing has.
    reply = s_list (&f, "mod-a", "zzz", "", 10);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (reply->storage_result->n_items, 0);
    mc_env_free (reply);
    s_teardown (&f);
}

static void test_batch (void)
{
    s_fixture_t f;
    s_setup (&f, 64, 10000, 16u << 20);
    s_make_module (&f, "mod-a");
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "old", "1")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "old2", "2")), MC__STATUS__STATUS_OK);
    const char *keys[] = {"a", "b", "old"};
    const char *values[] = {"\"A\"", "[\"B\"]", "{\"new\":true}"};
    const char *deletes[] = {"old2", "missing", "old2"};
    mc_env_t *reply = s_batch (&f, "mod-a", keys, values, 3, deletes, 3);
    CU_ASSERT_EQUAL_FATAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (reply->storage_result->put, 3);
    CU_ASSERT_EQUAL (reply->storage_result->deleted, 1); // old2 once; missing did not exist
    mc_env_free (reply);
    s_expect_value (&f, "mod-a", "a", "\"A\"");
    s_expect_value (&f, "mod-a", "b", "[\"B\"]");
    s_expect_value (&f, "mod-a", "old", "{\"new\":true}");
    s_expect_absent (&f, "mod-a", "old2");
    s_expect_usage (&f, "mod-a", 3, 1 + 3 + 1 + 5 + 3 + 12);
    //  One bad item anywhere: nothing of the batch is written.
    const char *keys2[] = {"c", "d"};
    const char *bad_values[] = {"1", "not json"};
    const char *deletes2[] = {"a"};
    reply = s_batch (&f, "mod-a", keys2, bad_values, 2, deletes2, 1);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
    CU_ASSERT_STRING_EQUAL (reply->error, "INVALID_VALUE");
    mc_env_free (reply);
    const char *good_values[] = {"1", "2"};
    const char *bad_deletes[] = {"a", "bad\tkey"};
    reply = s_batch (&f, "mod-a", keys2, good_values, 2, bad_deletes, 2);
    CU_ASSERT_STRING_EQUAL (reply->error, "INVALID_KEY");
    mc_env_free (reply);
    //  A key both put and deleted, or put twice.
    const char *both[] = {"c"};
    reply = s_batch (&f, "mod-a", keys2, good_values, 2, both, 1);
    CU_ASSERT_STRING_EQUAL (reply->error, "INVALID_BATCH");
    mc_env_free (reply);
    const char *twice[] = {"c", "c"};
    reply = s_batch (&f, "mod-a", twice, good_values, 2, NULL, 0);
    CU_ASSERT_STRING_EQUAL (reply->error, "INVALID_BATCH");
    mc_env_free (reply);
    s_expect_absent (&f, "mod-a", "c");
    s_expect_absent (&f, "mod-a", "d");
    s_expect_value (&f, "mod-a", "a", "\"A\"");
    s_expect_usage (&f, "mod-a", 3, 1 + 3 + 1 + 5 + 3 + 12);
    //  Over 1000 operations.
    static const char *many[MC_STORAGE_MAX_BATCH + 1];
    for (size_t i = 0; i <= MC_STORAGE_MAX_BATCH; i++)
        many[i] = "x";
    reply = s_batch (&f, "mod-a", NULL, NULL, 0, many, MC_STORAGE_MAX_BATCH + 1);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_TOO_LARGE);
    CU_ASSERT_STRING_EQUAL (reply->error, "BATCH_TOO_LARGE");
    mc_env_free (reply);
    //  An empty batch is fine and changes nothing.
    reply = s_batch (&f, "mod-a", NULL, NULL, 0, NULL, 0);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (reply->storage_result->put, 0);
    mc_env_free (reply);
    s_teardown (&f);
}

static void test_quota_keys (void)
{
    s_fixture_t f;
    s_setup (&f, 64, 3, 16u << 20);
    s_make_module (&f, "mod-a");
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "k1", "1")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "k2", "2")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "k3", "3")), MC__STATUS__STATUS_OK);
    //  A fourth key: refused, with the usage.
    mc_env_t *reply = s_put (&f, "mod-a", "k4", "4");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_INSUFFICIENT_STORAGE);
    CU_ASSERT_EQUAL (mc_status_http (reply->status), 507);
    CU_ASSERT_STRING_EQUAL (reply->error, "QUOTA_EXCEEDED");
    CU_ASSERT_PTR_NOT_NULL (strstr (reply->detail, "3 keys"));
    CU_ASSERT_EQUAL_FATAL (reply->body_case, MC__ENVELOPE__BODY_STORAGE_RESULT);
    CU_ASSERT_EQUAL (reply->storage_result->keys, 3);
    CU_ASSERT_EQUAL (reply->storage_result->max_keys, 3);
    mc_env_free (reply);
    s_expect_absent (&f, "mod-a", "k4");
    //  Overwriting an existing key is fine at the limit.
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "k1", "11")), MC__STATUS__STATUS_OK);
    //  A batch that nets more keys: nothing written, even its delete.
    const char *keys[] = {"k4", "k5"};
    const char *values[] = {"4", "5"};
    const char *deletes[] = {"k2"};
    reply = s_batch (&f, "mod-a", keys, values, 2, deletes, 1);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_INSUFFICIENT_STORAGE);
    mc_env_free (reply);
    s_expect_value (&f, "mod-a", "k2", "2");
    s_expect_absent (&f, "mod-a", "k4");
    s_expect_absent (&f, "mod-a", "k5");
    //  A batch that swaps one key for another stays at 3: allowed.
    reply = s_batch (&f, "mod-a", keys, values, 1, deletes, 1);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    mc_env_free (reply);
    s_expect_value (&f, "mod-a", "k1", "11");
    s_expect_value (&f, "mod-a", "k3", "3");
    s_expect_value (&f, "mod-a", "k4", "4");
    s_expect_absent (&f, "mod-a", "k2");
    s_expect_usage (&f, "mod-a", 3, 2 + 2 + 2 + 1 + 2 + 1);
    s_teardown (&f);
}

static void test_quota_bytes (void)
{
    s_fixture_t f;
    s_setup (&f, 64, 10000, 1024);
    s_make_module (&f, "mod-a");
    //  "big" = a string of 500 bytes of JSON: 503 bytes.
    char value[600];
    memset (value, 'x', 499);
    value[0] = '"';
    value[499] = '"';
    value[500] = 0;
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "big", value)), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "big2", value)), MC__STATUS__STATUS_OK);
    s_expect_usage (&f, "mod-a", 2, 503 + 504);
    //  18 bytes left: a 20-byte record does not fit.
    mc_env_t *reply = s_put (&f, "mod-a", "small", "\"0123456789abc\"");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_INSUFFICIENT_STORAGE);
    CU_ASSERT_STRING_EQUAL (reply->error, "QUOTA_EXCEEDED");
    CU_ASSERT_PTR_NOT_NULL (strstr (reply->detail, "1024 bytes"));
    CU_ASSERT_EQUAL (reply->storage_result->bytes, 1007);
    mc_env_free (reply);
    //  Growing an existing value past the quota: refused, old value intact.
    char bigger[600];
    memset (bigger, 'y', 530);
    bigger[0] = '"';
    bigger[529] = '"';
    bigger[530] = 0;
    reply = s_put (&f, "mod-a", "big", bigger);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_INSUFFICIENT_STORAGE);
    mc_env_free (reply);
    s_expect_value (&f, "mod-a", "big", value);
    //  Exactly to the limit is fine: 17 bytes left -> "s" + 16 bytes.
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "s", "\"0123456789abcd\"")),
                     MC__STATUS__STATUS_OK);
    s_expect_usage (&f, "mod-a", 3, 1024);
    //  Deleting always works; then there is room again.
    CU_ASSERT_EQUAL (s_status (s_delete (&f, "mod-a", "big2")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "small", "\"0123456789abc\"")),
                     MC__STATUS__STATUS_OK);
    s_expect_usage (&f, "mod-a", 3, 503 + 17 + 20);
    //  A batch over the byte quota writes nothing.
    const char *keys[] = {"b1", "b2"};
    const char *values[] = {value, value};
    reply = s_batch (&f, "mod-a", keys, values, 2, NULL, 0);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_INSUFFICIENT_STORAGE);
    mc_env_free (reply);
    s_expect_absent (&f, "mod-a", "b1");
    s_expect_absent (&f, "mod-a", "b2");
    s_expect_usage (&f, "mod-a", 3, 503 + 17 + 20);
    s_teardown (&f);
}

static void test_persistence (void)
{
    s_fixture_t f;
    s_setup (&f, 64, 10000, 16u << 20);
    s_make_module (&f, "mod-a");
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "one", "1")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "two", "[2]")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "gone", "0")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_delete (&f, "mod-a", "gone")), MC__STATUS__STATUS_OK);
    //  A restart: the data is there and usage is recomputed from the database.
    s_stop (&f);
    s_start (&f);
    s_expect_value (&f, "mod-a", "one", "1");
    s_expect_value (&f, "mod-a", "two", "[2]");
    s_expect_absent (&f, "mod-a", "gone");
    s_expect_usage (&f, "mod-a", 2, 3 + 1 + 3 + 3);
    //  Lower the quota below the usage: reads and deletes still work, growth does not.
    s_stop (&f);
    f.config->storage_max_keys = 1;
    s_start (&f);
    s_expect_value (&f, "mod-a", "one", "1");
    mc_env_t *reply = s_put (&f, "mod-a", "three", "3");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_INSUFFICIENT_STORAGE);
    mc_env_free (reply);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "one", "11")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_delete (&f, "mod-a", "two")), MC__STATUS__STATUS_OK);
    s_expect_usage (&f, "mod-a", 1, 5);
    s_teardown (&f);
}

static void test_drop (void)
{
    s_fixture_t f;
    s_setup (&f, 64, 10000, 16u << 20);
    s_make_module (&f, "mod-a");
    s_make_module (&f, "mod-b");
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "k", "1")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-b", "k", "2")), MC__STATUS__STATUS_OK);
    char db[4400];
    snprintf (db, sizeof db, "%s/modules/mod-a/db", f.dir);
    CU_ASSERT_TRUE (mc_test_exists (db));
    mc_env_t *reply = s_drop (&f, "mod-a");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    mc_env_free (reply);
    CU_ASSERT_FALSE (mc_test_exists (db));
    s_expect_value (&f, "mod-b", "k", "2"); // the other module keeps its data
    //  Dropping again, or a module that never had a database, is fine.
    CU_ASSERT_EQUAL (s_status (s_drop (&f, "mod-a")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_drop (&f, "never")), MC__STATUS__STATUS_OK);
    reply = s_drop (&f, "../mod-b");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_BAD_REQUEST);
    mc_env_free (reply);
    //  The module (still installed here) starts from an empty database.
    s_expect_absent (&f, "mod-a", "k");
    s_expect_usage (&f, "mod-a", 0, 0);
    //  Its dir removed and made again behind the actor's back (uninstall + reinstall):
    //  the open handle is not reused.
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-b", "k2", "3")), MC__STATUS__STATUS_OK);
    char dir[4400];
    snprintf (dir, sizeof dir, "%s/modules/mod-b", f.dir);
    mc_test_rmtree (dir);
    reply = s_get (&f, "mod-b", "k");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL (reply->error, "MODULE_NOT_FOUND");
    mc_env_free (reply);
    s_make_module (&f, "mod-b");
    s_expect_absent (&f, "mod-b", "k");
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-b", "fresh", "1")), MC__STATUS__STATUS_OK);
    s_expect_usage (&f, "mod-b", 1, 6);
    s_teardown (&f);
}

static void test_isolation (void)
{
    s_fixture_t f;
    s_setup (&f, 64, 10000, 16u << 20);
    s_make_module (&f, "mod-a");
    s_make_module (&f, "mod-b");
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "shared-name", "\"A\"")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-a", "only-a", "1")), MC__STATUS__STATUS_OK);
    CU_ASSERT_EQUAL (s_status (s_put (&f, "mod-b", "shared-name", "\"B\"")), MC__STATUS__STATUS_OK);
    s_expect_value (&f, "mod-a", "shared-name", "\"A\"");
    s_expect_value (&f, "mod-b", "shared-name", "\"B\"");
    s_expect_absent (&f, "mod-b", "only-a");
    mc_env_t *reply = s_list (&f, "mod-b", "", "", 100);
    CU_ASSERT_EQUAL (reply->storage_result->n_items, 1);
    mc_env_free (reply);
    reply = s_delete (&f, "mod-b", "only-a");
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_NOT_FOUND);
    mc_env_free (reply);
    s_expect_value (&f, "mod-a", "only-a", "1");
    s_expect_usage (&f, "mod-a", 2, 11 + 3 + 6 + 1);
    s_expect_usage (&f, "mod-b", 1, 11 + 3);
    s_teardown (&f);
}

static void test_lru (void)
{
    s_fixture_t f;
    s_setup (&f, 2, 10000, 16u << 20);
    const char *names[] = {"m1", "m2", "m3", "m4", "m5"};
    for (size_t i = 0; i < 5; i++)
        s_make_module (&f, names[i]);
    //  Three rounds over five modules with room for two: every use after the first
    //  round reopens a closed database.
    char key[32], value[32];
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < 5; i++) {
            snprintf (key, sizeof key, "r%d", round);
            snprintf (value, sizeof value, "\"%s-%d\"", names[i], round);
            CU_ASSERT_EQUAL (s_status (s_put (&f, names[i], key, value)), MC__STATUS__STATUS_OK);
            int open = s_open_databases ();
            CU_ASSERT (open >= 1 && open <= 2);
        }
    for (size_t i = 0; i < 5; i++) {
        for (int round = 0; round < 3; round++) {
            snprintf (key, sizeof key, "r%d", round);
            snprintf (value, sizeof value, "\"%s-%d\"", names[i], round);
            s_expect_value (&f, names[i], key, value);
        }
        s_expect_usage (&f, names[i], 3, 3 * (2 + 6));
        CU_ASSERT (s_open_databases () <= 2);
    }
    //  A batch and a list on a database that was closed.
    const char *keys[] = {"b"};
    const char *values[] = {"true"};
    mc_env_t *reply = s_batch (&f, "m1", keys, values, 1, NULL, 0);
    CU_ASSERT_EQUAL (reply->status, MC__STATUS__STATUS_OK);
    mc_env_free (reply);
    reply = s_list (&f, "m2", "r", "", 10);
    CU_ASSERT_EQUAL (reply->storage_result->n_items, 3);
    mc_env_free (reply);
    s_expect_value (&f, "m1", "b", "true");
    CU_ASSERT (s_open_databases () <= 2);
    s_stop (&f);
    CU_ASSERT_EQUAL (s_open_databases (), 0); // all closed when the actor stops
    s_start (&f);
    s_teardown (&f);
}

void mc_test_storage (void)
{
    CU_pSuite suite = CU_add_suite ("storage", NULL, NULL);
    CU_add_test (suite, "put, get, delete", test_put_get_delete);
    CU_add_test (suite, "bad requests", test_bad_requests);
    CU_add_test (suite, "list paging", test_list_paging);
    CU_add_test (suite, "batch atomicity", test_batch);
    CU_add_test (suite, "quota on keys", test_quota_keys);
    CU_add_test (suite, "quota on bytes", test_quota_bytes);
    CU_add_test (suite, "persistence across a restart", test_persistence);
    CU_add_test (suite, "drop", test_drop);
    CU_add_test (suite, "two modules isolated", test_isolation);
    CU_add_test (suite, "LRU beyond max_open", test_lru);
}
