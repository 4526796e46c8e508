/*  Unit suite for core/store: the LevelDB wrapper. Key/value round trips, prefix scans
    in key order, atomic batches, durability across close and reopen, and the error
    codes of an open that cannot proceed (locked, corrupted). */
#include "core/store.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A fresh store in a temporary directory.
typedef struct {
    char *dir;     // temporary directory (owned)
    char db[4096]; // the LevelDB path under dir
    mc_store_t *store;
} s_case_t;

static void s_case_open (s_case_t *c)
{
    c->dir = mc_test_tmpdir ("store");
    CU_ASSERT_PTR_NOT_NULL_FATAL (c->dir);
    snprintf (c->db, sizeof c->db, "%s/db", c->dir);
    mc_error_t err = {{0}, {0}};
    c->store = mc_store_open (c->db, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL (c->store);
}

static void s_case_close (s_case_t *c)
{
    mc_store_close (&c->store);
    mc_test_rmtree (c->dir);
    free (c->dir);
    c->dir = NULL;
}

//  True if key holds exactly the text value (and a NUL after it).
static bool s_holds (mc_store_t *store, const char *key, const char *value)
{
    size_t len = 12345;
    char *got = mc_store_get (store, key, &len);
    bool same = got && len == strlen (value) && memcmp (got, value, len) == 0 && got[len] == 0;
    free (got);
    return same;
}

static void test_put_get_delete (void)
{
    s_case_t c;
    s_case_open (&c);
    CU_ASSERT_EQUAL (mc_store_put (c.store, "mod/a", "alpha", 5, true), 0);
    CU_ASSERT_EQUAL (mc_store_put (c.store, "mod/b", "beta", 4, false), 0);
    CU_ASSERT (s_holds (c.store, "mod/a", "alpha"));
    CU_ASSERT (s_holds (c.store, "mod/b", "beta"));
    //  Overwrite.
    CU_ASSERT_EQUAL (mc_store_put (c.store, "mod/a", "ALPHA!", 6, true), 0);
    CU_ASSERT (s_holds (c.store, "mod/a", "ALPHA!"));
    //  Binary values with NULs, and an empty value (present, not missing).
    const char binary[] = {'x', 0, 'y', 0, (char)0xff};
    CU_ASSERT_EQUAL (mc_store_put (c.store, "bin", binary, sizeof binary, false), 0);
    size_t len = 0;
    char *got = mc_store_get (c.store, "bin", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (got);
    CU_ASSERT_EQUAL (len, sizeof binary);
    CU_ASSERT (memcmp (got, binary, sizeof binary) == 0);
    free (got);
    CU_ASSERT_EQUAL (mc_store_put (c.store, "empty", "", 0, false), 0);
    got = mc_store_get (c.store, "empty", &len);
    CU_ASSERT_PTR_NOT_NULL (got);
    CU_ASSERT_EQUAL (len, 0);
    free (got);
    //  len may be NULL.
    got = mc_store_get (c.store, "mod/b", NULL);
    CU_ASSERT_STRING_EQUAL (got, "beta");
    free (got);
    //  Delete, and delete of a missing key is not an error.
    CU_ASSERT_EQUAL (mc_store_delete (c.store, "mod/a", true), 0);
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "mod/a", NULL));
    CU_ASSERT (s_holds (c.store, "mod/b", "beta"));
    CU_ASSERT_EQUAL (mc_store_delete (c.store, "mod/a", false), 0);
    CU_ASSERT_EQUAL (mc_store_delete (c.store, "never", false), 0);
    s_case_close (&c);
}

static void test_get_missing (void)
{
    s_case_t c;
    s_case_open (&c);
    size_t len = 777;
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "nothing", &len));
    CU_ASSERT_EQUAL (mc_store_put (c.store, "something", "1", 1, false), 0);
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "some", &len));
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "something/", &len));
    s_case_close (&c);
}

//  What a scan saw.
typedef struct {
    char keys[16][64];   // keys in the order they came
    char values[16][64]; // their values
    int count;           // calls so far
    int stop_after;      // return 42 on this call (1-based); 0 = never
} s_seen_t;

static int s_collect (const char *key, size_t key_len, const void *value, size_t value_len,
                      void *arg)
{
    s_seen_t *seen = arg;
    CU_ASSERT_EQUAL (strlen (key), key_len);
    if (seen->count < 16) {
        snprintf (seen->keys[seen->count], 64, "%s", key);
        snprintf (seen->values[seen->count], 64, "%.*s", (int)value_len, (const char *)value);
    }
    seen->count++;
    return seen->stop_after && seen->count == seen->stop_after ? 42 : 0;
}

static void test_scan_prefix (void)
{
    s_case_t c;
    s_case_open (&c);
    //  Written out of order, with neighbours on both sides of the prefix.
    const char *keys[] = {"tok/c", "tokp/a", "tok/a", "to", "tok/b", "tok0", "tok/", "tok/aa"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char value[32];
        snprintf (value, sizeof value, "v-%s", keys[i]);
        CU_ASSERT_EQUAL (mc_store_put (c.store, keys[i], value, strlen (value), false), 0);
    }
    s_seen_t seen = {.count = 0};
    CU_ASSERT_EQUAL (mc_store_scan (c.store, "tok/", s_collect, &seen), 0);
    CU_ASSERT_EQUAL_FATAL (seen.count, 5);
    const char *expected[] = {"tok/", "tok/a", "tok/aa", "tok/b", "tok/c"};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_STRING_EQUAL (seen.keys[i], expected[i]);
        char value[32];
        snprintf (value, sizeof value, "v-%s", expected[i]);
        CU_ASSERT_STRING_EQUAL (seen.values[i], value);
    }
    //  Stop early: the callback's value is returned and no more calls are made.
    s_seen_t early = {.stop_after = 2};
    CU_ASSERT_EQUAL (mc_store_scan (c.store, "tok/", s_collect, &early), 42);
    CU_ASSERT_EQUAL (early.count, 2);
    CU_ASSERT_STRING_EQUAL (early.keys[1], "tok/a");
    //  A prefix nothing has, sorting after everything and in the middle.
    s_seen_t none = {.count = 0};
    CU_ASSERT_EQUAL (mc_store_scan (c.store, "zzz", s_collect, &none), 0);
    CU_ASSERT_EQUAL (mc_store_scan (c.store, "tok/ab", s_collect, &none), 0);
    CU_ASSERT_EQUAL (none.count, 0);
    //  The empty prefix is every key, in byte order.
    s_seen_t all = {.count = 0};
    CU_ASSERT_EQUAL (mc_store_scan (c.store, "", s_collect, &all), 0);
    CU_ASSERT_EQUAL_FATAL (all.count, 8);
    CU_ASSERT_STRING_EQUAL (all.keys[0], "to");
    CU_ASSERT_STRING_EQUAL (all.keys[6], "tok0");
    CU_ASSERT_STRING_EQUAL (all.keys[7], "tokp/a");
    s_case_close (&c);
}

static void test_batch (void)
{
    s_case_t c;
    s_case_open (&c);
    CU_ASSERT_EQUAL (mc_store_put (c.store, "old", "1", 1, false), 0);
    CU_ASSERT_EQUAL (mc_store_put (c.store, "keep", "k", 1, false), 0);
    mc_store_batch_t *batch = mc_store_batch_new ();
    mc_store_batch_put (batch, "new/1", "one", 3);
    mc_store_batch_put (batch, "new/2", "two", 3);
    mc_store_batch_delete (batch, "old");
    //  Nothing is visible before the write.
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "new/1", NULL));
    CU_ASSERT (s_holds (c.store, "old", "1"));
    CU_ASSERT_EQUAL (mc_store_batch_write (c.store, &batch, true), 0);
    CU_ASSERT_PTR_NULL (batch);
    CU_ASSERT (s_holds (c.store, "new/1", "one"));
    CU_ASSERT (s_holds (c.store, "new/2", "two"));
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "old", NULL));
    CU_ASSERT (s_holds (c.store, "keep", "k"));
    //  Within a batch, later operations win: put then delete, delete then put.
    batch = mc_store_batch_new ();
    mc_store_batch_put (batch, "gone", "x", 1);
    mc_store_batch_delete (batch, "gone");
    mc_store_batch_delete (batch, "new/1");
    mc_store_batch_put (batch, "new/1", "uno", 3);
    CU_ASSERT_EQUAL (mc_store_batch_write (c.store, &batch, false), 0);
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "gone", NULL));
    CU_ASSERT (s_holds (c.store, "new/1", "uno"));
    //  An empty batch is fine.
    batch = mc_store_batch_new ();
    CU_ASSERT_EQUAL (mc_store_batch_write (c.store, &batch, true), 0);
    s_case_close (&c);
}

//  A committed batch is empty again: its next commit applies only what came after.
static void test_batch_reused (void)
{
    s_case_t c;
    s_case_open (&c);
    mc_store_batch_t *batch = mc_store_batch_new ();
    mc_store_batch_put (batch, "a", "1", 1);
    CU_ASSERT_EQUAL (mc_store_batch_commit (c.store, batch, false), 0);
    CU_ASSERT (s_holds (c.store, "a", "1"));
    mc_store_batch_delete (batch, "a");
    CU_ASSERT_EQUAL (mc_store_batch_commit (c.store, batch, true), 0);
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "a", NULL));
    //  Had the first put stayed in the batch, "a" would be back.
    char big[4096];
    memset (big, 'b', sizeof big);
    for (int i = 0; i < 100; i++) { // grows the batch's buffer, which it keeps
        char key[16];
        snprintf (key, sizeof key, "b/%03d", i);
        mc_store_batch_put (batch, key, big, sizeof big);
    }
    CU_ASSERT_EQUAL (mc_store_batch_commit (c.store, batch, false), 0);
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "a", NULL));
    mc_store_put (c.store, "b/000", "x", 1, false);
    //  An empty commit writes nothing (the puts above are not applied again).
    CU_ASSERT_EQUAL (mc_store_batch_commit (c.store, batch, false), 0);
    CU_ASSERT (s_holds (c.store, "b/000", "x"));
    size_t len = 0;
    char *value = mc_store_get (c.store, "b/099", &len);
    CU_ASSERT_EQUAL (len, sizeof big);
    free (value);
    mc_store_batch_destroy (&batch);
    CU_ASSERT_PTR_NULL (batch);
    mc_store_batch_destroy (&batch); // twice is fine
    s_case_close (&c);
}

static void test_persistence (void)
{
    s_case_t c;
    s_case_open (&c);
    CU_ASSERT_EQUAL (mc_store_put (c.store, "synced", "s", 1, true), 0);
    CU_ASSERT_EQUAL (mc_store_put (c.store, "unsynced", "u", 1, false), 0);
    CU_ASSERT_EQUAL (mc_store_put (c.store, "deleted", "d", 1, true), 0);
    CU_ASSERT_EQUAL (mc_store_delete (c.store, "deleted", true), 0);
    mc_store_batch_t *batch = mc_store_batch_new ();
    mc_store_batch_put (batch, "batched", "b", 1);
    CU_ASSERT_EQUAL (mc_store_batch_write (c.store, &batch, true), 0);
    mc_store_close (&c.store);
    CU_ASSERT_PTR_NULL (c.store);
    mc_store_close (&c.store); // twice is fine

    mc_error_t err = {{0}, {0}};
    c.store = mc_store_open (c.db, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL (c.store);
    CU_ASSERT (s_holds (c.store, "synced", "s"));
    CU_ASSERT (s_holds (c.store, "unsynced", "u")); // a clean close flushes
    CU_ASSERT (s_holds (c.store, "batched", "b"));
    CU_ASSERT_PTR_NULL (mc_store_get (c.store, "deleted", NULL));
    s_case_close (&c);
}

static void test_locked (void)
{
    s_case_t c;
    s_case_open (&c);
    CU_ASSERT_EQUAL (mc_store_put (c.store, "k", "v", 1, true), 0);
    mc_error_t err = {{0}, {0}};
    mc_store_t *second = mc_store_open (c.db, &err);
    CU_ASSERT_PTR_NULL (second);
    CU_ASSERT_STRING_EQUAL (err.code, "STORE_LOCKED");
    CU_ASSERT (strlen (err.detail) > 0);
    mc_store_close (&second);
    //  The first handle is unaffected; once it is closed the store opens again.
    CU_ASSERT (s_holds (c.store, "k", "v"));
    mc_store_close (&c.store);
    c.store = mc_store_open (c.db, &err);
    CU_ASSERT_PTR_NOT_NULL (c.store);
    s_case_close (&c);
}

//  Writes garbage over one file of a closed store and opens it: NULL with an error.
static void s_corrupt_and_open (const char *victim)
{
    s_case_t c;
    s_case_open (&c);
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf (key, sizeof key, "k%d", i);
        CU_ASSERT_EQUAL (mc_store_put (c.store, key, "value", 5, true), 0);
    }
    mc_store_close (&c.store);
    char path[4400];
    if (strcmp (victim, "CURRENT") == 0)
        snprintf (path, sizeof path, "%s/CURRENT", c.db);
    else {
        //  The manifest CURRENT names.
        snprintf (path, sizeof path, "%s/CURRENT", c.db);
        size_t len = 0;
        char name[256] = "";
        FILE *f = fopen (path, "r");
        CU_ASSERT_PTR_NOT_NULL_FATAL (f);
        len = fread (name, 1, sizeof name - 1, f);
        fclose (f);
        name[len] = 0;
        name[strcspn (name, "\n")] = 0;
        CU_ASSERT (strncmp (name, "MANIFEST-", 9) == 0);
        snprintf (path, sizeof path, "%s/%s", c.db, name);
    }
    const char garbage[] = "\x13\x37 this is not what LevelDB wrote \xde\xad\xbe\xef\n";
    char big[4096];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = garbage[i % (sizeof garbage - 1)];
    CU_ASSERT_FATAL (mc_test_write_file (path, big, sizeof big) == 0);

    mc_error_t err = {{0}, {0}};
    c.store = mc_store_open (c.db, &err);
    CU_ASSERT_PTR_NULL (c.store);
    CU_ASSERT (strcmp (err.code, "STORE_CORRUPT") == 0 || strcmp (err.code, "STORE_OPEN") == 0);
    CU_ASSERT (strlen (err.detail) > 0);
    if (c.store)
        fprintf (stderr, "\n  a store with a corrupted %s opened\n", victim);
    s_case_close (&c);
}

static void test_corrupt_current (void)
{
    s_corrupt_and_open ("CURRENT");
}

static void test_corrupt_manifest (void)
{
    s_corrupt_and_open ("MANIFEST");
}

static void test_open_not_a_dir (void)
{
    s_case_t c;
    s_case_open (&c);
    mc_store_close (&c.store);
    //  A path under a regular file cannot be created.
    char file[4200], below[4300];
    snprintf (file, sizeof file, "%s/file", c.dir);
    snprintf (below, sizeof below, "%s/db", file);
    CU_ASSERT_FATAL (mc_test_write_file (file, "x", 1) == 0);
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_PTR_NULL (mc_store_open (below, &err));
    CU_ASSERT_STRING_EQUAL (err.code, "STORE_OPEN");
    CU_ASSERT (strlen (err.detail) > 0);
    s_case_close (&c);
}

void mc_test_store (void)
{
    CU_pSuite suite = CU_add_suite ("store", NULL, NULL);
    CU_add_test (suite, "put get delete", test_put_get_delete);
    CU_add_test (suite, "get missing", test_get_missing);
    CU_add_test (suite, "scan prefix", test_scan_prefix);
    CU_add_test (suite, "batch", test_batch);
    CU_add_test (suite, "batch committed again and again", test_batch_reused);
    CU_add_test (suite, "persistence", test_persistence);
    CU_add_test (suite, "locked", test_locked);
    CU_add_test (suite, "corrupt CURRENT", test_corrupt_current);
    CU_add_test (suite, "corrupt MANIFEST", test_corrupt_manifest);
    CU_add_test (suite, "open not a dir", test_open_not_a_dir);
}
