/*  Unit suite for core/seal (secrets at rest: the master key and sealed files) and the
    core/fsutil helpers it stands on (atomic writes, bounded reads that refuse links,
    tree removal, tails, mkdir -p). */
#include "core/fsutil.h"
#include "core/seal.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  One test's scratch directory and a path builder.
typedef struct {
    char *dir;       // temporary directory (owned)
    char path[4400]; // last path built by s_path
} s_case_t;

static void s_case_open (s_case_t *c)
{
    CU_ASSERT_FATAL (sodium_init () >= 0);
    c->dir = mc_test_tmpdir ("seal");
    CU_ASSERT_PTR_NOT_NULL_FATAL (c->dir);
}

static void s_case_close (s_case_t *c)
{
    mc_test_rmtree (c->dir);
    free (c->dir);
    c->dir = NULL;
}

//  dir/name in c->path (overwritten by the next call).
static const char *s_path (s_case_t *c, const char *name)
{
    snprintf (c->path, sizeof c->path, "%s/%s", c->dir, name);
    return c->path;
}

//  Permission bits of path (links not followed), or -1.
static int s_mode_of (const char *path)
{
    struct stat st;
    if (lstat (path, &st) != 0)
        return -1;
    return (int)(st.st_mode & 07777);
}

//  Reads a whole file with stdio; returns the bytes (caller frees) and *len, or NULL.
static char *s_slurp (const char *path, size_t *len)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return NULL;
    char *data = malloc (1 << 16);
    *len = fread (data, 1, 1 << 16, f);
    fclose (f);
    return data;
}

//  Flips one bit of the byte at offset in path.
static void s_flip (const char *path, size_t offset)
{
    size_t len = 0;
    char *data = s_slurp (path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (data);
    CU_ASSERT_FATAL (offset < len);
    data[offset] ^= 0x01;
    CU_ASSERT_FATAL (mc_test_write_file (path, data, len) == 0);
    free (data);
}

// --- seal ----------------------------------------------------------------------

static void test_key_created_then_loaded (void)
{
    s_case_t c;
    s_case_open (&c);
    char key_path[4400];
    snprintf (key_path, sizeof key_path, "%s", s_path (&c, "master.key"));
    uint8_t key[MC_SEAL_KEY_LEN], again[MC_SEAL_KEY_LEN], zero[MC_SEAL_KEY_LEN] = {0};
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_EQUAL (mc_seal_key_load (key_path, key, &err), 0);
    CU_ASSERT_EQUAL (s_mode_of (key_path), 0600);
    CU_ASSERT (memcmp (key, zero, sizeof key) != 0);
    //  The file holds exactly the key's 32 bytes.
    size_t len = 0;
    char *raw = s_slurp (key_path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (raw);
    CU_ASSERT_EQUAL (len, MC_SEAL_KEY_LEN);
    CU_ASSERT (memcmp (raw, key, MC_SEAL_KEY_LEN) == 0);
    free (raw);
    //  Loaded, not re-created, next time.
    CU_ASSERT_EQUAL (mc_seal_key_load (key_path, again, &err), 0);
    CU_ASSERT (memcmp (key, again, sizeof key) == 0);
    //  Only the key is in the directory (no temp file left behind).
    CU_ASSERT_EQUAL (mc_test_count_entries (c.dir), 1);
    //  A key made elsewhere is different.
    uint8_t other[MC_SEAL_KEY_LEN];
    CU_ASSERT_EQUAL (mc_seal_key_load (s_path (&c, "other.key"), other, &err), 0);
    CU_ASSERT (memcmp (key, other, sizeof key) != 0);
    s_case_close (&c);
}

static void test_key_wrong_size (void)
{
    s_case_t c;
    s_case_open (&c);
    uint8_t key[MC_SEAL_KEY_LEN];
    const size_t sizes[] = {0, 16, MC_SEAL_KEY_LEN - 1, MC_SEAL_KEY_LEN + 1, 64};
    char bytes[64];
    memset (bytes, 'k', sizeof bytes);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const char *path = s_path (&c, "master.key");
        CU_ASSERT_FATAL (mc_test_write_file (path, bytes, sizes[i]) == 0);
        mc_error_t err = {{0}, {0}};
        CU_ASSERT_EQUAL (mc_seal_key_load (path, key, &err), -1);
        CU_ASSERT_STRING_EQUAL (err.code, "KEY_INVALID");
        //  The bad key is reported, never replaced.
        size_t len = 0;
        char *raw = s_slurp (path, &len);
        CU_ASSERT_EQUAL (len, sizes[i]);
        free (raw);
    }
    //  Too large for the read cap.
    char *huge = calloc (1, 8192);
    CU_ASSERT_FATAL (mc_test_write_file (s_path (&c, "master.key"), huge, 8192) == 0);
    free (huge);
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_EQUAL (mc_seal_key_load (s_path (&c, "master.key"), key, &err), -1);
    CU_ASSERT_STRING_EQUAL (err.code, "KEY_UNREADABLE");
    //  A link is not followed, and not replaced.
    char target[4400];
    snprintf (target, sizeof target, "%s", s_path (&c, "elsewhere.key"));
    CU_ASSERT_FATAL (mc_test_write_file (target, bytes, MC_SEAL_KEY_LEN) == 0);
    CU_ASSERT_FATAL (symlink (target, s_path (&c, "link.key")) == 0);
    CU_ASSERT_EQUAL (mc_seal_key_load (s_path (&c, "link.key"), key, &err), -1);
    CU_ASSERT_STRING_EQUAL (err.code, "KEY_UNREADABLE");
    //  A directory that does not exist cannot receive a new key.
    CU_ASSERT_EQUAL (mc_seal_key_load (s_path (&c, "missing/master.key"), key, &err), -1);
    CU_ASSERT_STRING_EQUAL (err.code, "KEY_UNWRITABLE");
    s_case_close (&c);
}

static void test_round_trip (void)
{
    s_case_t c;
    s_case_open (&c);
    uint8_t key[MC_SEAL_KEY_LEN];
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_FATAL (mc_seal_key_load (s_path (&c, "master.key"), key, &err) == 0);
    const char *secret = "token=abcdefghijklmnopqrstuvwxyz0123456789";
    char sealed[4400];
    snprintf (sealed, sizeof sealed, "%s", s_path (&c, "mod-a.sealed"));
    CU_ASSERT_EQUAL (mc_seal_write (key, sealed, secret, strlen (secret)), 0);
    CU_ASSERT_EQUAL (s_mode_of (sealed), 0600);
    //  Nonce + ciphertext + tag on disk, no plaintext.
    size_t disk_len = 0;
    char *disk = s_slurp (sealed, &disk_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (disk);
    CU_ASSERT_EQUAL (disk_len, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + strlen (secret) +
                                   crypto_aead_xchacha20poly1305_ietf_ABYTES);
    CU_ASSERT_PTR_NULL (memmem (disk, disk_len, "abcdefghij", 10));
    size_t len = 0;
    char *plain = mc_seal_read (key, sealed, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (plain);
    CU_ASSERT_EQUAL (len, strlen (secret));
    CU_ASSERT_STRING_EQUAL (plain, secret);
    free (plain);
    //  Sealing the same text again gives different bytes (fresh nonce), same plaintext.
    CU_ASSERT_EQUAL (mc_seal_write (key, sealed, secret, strlen (secret)), 0);
    size_t disk2_len = 0;
    char *disk2 = s_slurp (sealed, &disk2_len);
    CU_ASSERT (disk2_len == disk_len && memcmp (disk, disk2, disk_len) != 0);
    free (disk);
    free (disk2);
    plain = mc_seal_read (key, sealed, NULL);
    CU_ASSERT_STRING_EQUAL (plain, secret);
    free (plain);
    //  Binary content and empty content.
    const char binary[] = {0, 1, 2, 0, (char)0xff};
    CU_ASSERT_EQUAL (mc_seal_write (key, sealed, binary, sizeof binary), 0);
    plain = mc_seal_read (key, sealed, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (plain);
    CU_ASSERT_EQUAL (len, sizeof binary);
    CU_ASSERT (memcmp (plain, binary, sizeof binary) == 0);
    free (plain);
    CU_ASSERT_EQUAL (mc_seal_write (key, sealed, "", 0), 0);
    plain = mc_seal_read (key, sealed, &len);
    CU_ASSERT_PTR_NOT_NULL (plain);
    CU_ASSERT_EQUAL (len, 0);
    free (plain);
    //  Missing file.
    CU_ASSERT_PTR_NULL (mc_seal_read (key, s_path (&c, "nothing.sealed"), &len));
    s_case_close (&c);
}

static void test_tampered (void)
{
    s_case_t c;
    s_case_open (&c);
    uint8_t key[MC_SEAL_KEY_LEN];
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_FATAL (mc_seal_key_load (s_path (&c, "master.key"), key, &err) == 0);
    const char *secret = "the webhook secret";
    char sealed[4400];
    snprintf (sealed, sizeof sealed, "%s", s_path (&c, "x.sealed"));
    size_t total = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + strlen (secret) +
                   crypto_aead_xchacha20poly1305_ietf_ABYTES;
    //  One flipped bit in the nonce, the ciphertext, or the tag.
    const size_t offsets[] = {0, 23, 24, 30, total - 16, total - 1};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        CU_ASSERT_FATAL (mc_seal_write (key, sealed, secret, strlen (secret)) == 0);
        char *plain = mc_seal_read (key, sealed, NULL);
        CU_ASSERT_PTR_NOT_NULL (plain);
        free (plain);
        s_flip (sealed, offsets[i]);
        CU_ASSERT_PTR_NULL (mc_seal_read (key, sealed, NULL));
    }
    //  Truncated: shorter than nonce + tag, and missing its last byte.
    CU_ASSERT_FATAL (mc_seal_write (key, sealed, secret, strlen (secret)) == 0);
    size_t len = 0;
    char *disk = s_slurp (sealed, &len);
    CU_ASSERT_FATAL (mc_test_write_file (sealed, disk, len - 1) == 0);
    CU_ASSERT_PTR_NULL (mc_seal_read (key, sealed, NULL));
    CU_ASSERT_FATAL (mc_test_write_file (sealed, disk, 30) == 0);
    CU_ASSERT_PTR_NULL (mc_seal_read (key, sealed, NULL));
    CU_ASSERT_FATAL (mc_test_write_file (sealed, disk, 0) == 0);
    CU_ASSERT_PTR_NULL (mc_seal_read (key, sealed, NULL));
    free (disk);
    s_case_close (&c);
}

static void test_wrong_key (void)
{
    s_case_t c;
    s_case_open (&c);
    uint8_t key[MC_SEAL_KEY_LEN], other[MC_SEAL_KEY_LEN];
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_FATAL (mc_seal_key_load (s_path (&c, "a.key"), key, &err) == 0);
    CU_ASSERT_FATAL (mc_seal_key_load (s_path (&c, "b.key"), other, &err) == 0);
    char sealed[4400];
    snprintf (sealed, sizeof sealed, "%s", s_path (&c, "x.sealed"));
    CU_ASSERT_FATAL (mc_seal_write (key, sealed, "secret", 6) == 0);
    CU_ASSERT_PTR_NULL (mc_seal_read (other, sealed, NULL));
    //  A key one bit away is still the wrong key.
    uint8_t near[MC_SEAL_KEY_LEN];
    memcpy (near, key, sizeof near);
    near[MC_SEAL_KEY_LEN - 1] ^= 0x80;
    CU_ASSERT_PTR_NULL (mc_seal_read (near, sealed, NULL));
    char *plain = mc_seal_read (key, sealed, NULL);
    CU_ASSERT_STRING_EQUAL (plain, "secret");
    free (plain);
    s_case_close (&c);
}

// --- fsutil --------------------------------------------------------------------

static void test_write_atomic (void)
{
    s_case_t c;
    s_case_open (&c);
    char path[4400];
    snprintf (path, sizeof path, "%s", s_path (&c, "file"));
    CU_ASSERT_EQUAL (mc_fs_write_atomic (path, "first", 5, 0600), 0);
    CU_ASSERT_EQUAL (s_mode_of (path), 0600);
    size_t len = 0;
    char *got = mc_fs_read (path, 100, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (got);
    CU_ASSERT_EQUAL (len, 5);
    CU_ASSERT_STRING_EQUAL (got, "first");
    free (got);
    //  Replacing takes the new mode and content; no temp file is left behind.
    CU_ASSERT_EQUAL (mc_fs_write_atomic (path, "second, longer", 14, 0644), 0);
    CU_ASSERT_EQUAL (s_mode_of (path), 0644);
    got = mc_fs_read (path, 100, &len);
    CU_ASSERT_STRING_EQUAL (got, "second, longer");
    free (got);
    CU_ASSERT_EQUAL (mc_fs_write_atomic (path, "", 0, 0640), 0);
    CU_ASSERT_EQUAL (s_mode_of (path), 0640);
    got = mc_fs_read (path, 100, &len);
    CU_ASSERT_EQUAL (len, 0);
    CU_ASSERT_STRING_EQUAL (got, "");
    free (got);
    CU_ASSERT_EQUAL (mc_test_count_entries (c.dir), 1);
    //  A large write arrives whole.
    size_t big_len = 3 << 20;
    char *big = malloc (big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)(i * 7 + i / 4096);
    CU_ASSERT_EQUAL (mc_fs_write_atomic (path, big, big_len, 0600), 0);
    got = mc_fs_read (path, big_len, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (got);
    CU_ASSERT_EQUAL (len, big_len);
    CU_ASSERT (memcmp (got, big, big_len) == 0);
    free (got);
    free (big);
    //  A missing directory: failure, errno set, nothing created.
    errno = 0;
    CU_ASSERT_EQUAL (mc_fs_write_atomic (s_path (&c, "no/such/file"), "x", 1, 0600), -1);
    CU_ASSERT_EQUAL (errno, ENOENT);
    CU_ASSERT_EQUAL (mc_test_count_entries (c.dir), 1);
    s_case_close (&c);
}

static void test_read (void)
{
    s_case_t c;
    s_case_open (&c);
    char path[4400];
    snprintf (path, sizeof path, "%s", s_path (&c, "hundred"));
    char hundred[100];
    memset (hundred, 'h', sizeof hundred);
    CU_ASSERT_FATAL (mc_test_write_file (path, hundred, sizeof hundred) == 0);
    size_t len = 0;
    char *got = mc_fs_read (path, 100, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (got);
    CU_ASSERT_EQUAL (len, 100);
    CU_ASSERT_EQUAL (got[100], 0); // NUL-terminated
    free (got);
    errno = 0;
    len = 777;
    CU_ASSERT_PTR_NULL (mc_fs_read (path, 99, &len));
    CU_ASSERT_EQUAL (errno, EFBIG);
    errno = 0;
    CU_ASSERT_PTR_NULL (mc_fs_read (s_path (&c, "missing"), 100, &len));
    CU_ASSERT_EQUAL (errno, ENOENT);
    //  A directory is not a regular file.
    errno = 0;
    CU_ASSERT_PTR_NULL (mc_fs_read (c.dir, 100, &len));
    CU_ASSERT_EQUAL (errno, EINVAL);
    s_case_close (&c);
}

static void test_read_refuses_symlink (void)
{
    s_case_t c;
    s_case_open (&c);
    char target[4400];
    snprintf (target, sizeof target, "%s", s_path (&c, "target"));
    CU_ASSERT_FATAL (mc_test_write_file (target, "secret", 6) == 0);
    CU_ASSERT_FATAL (symlink (target, s_path (&c, "link")) == 0);
    errno = 0;
    size_t len = 0;
    CU_ASSERT_PTR_NULL (mc_fs_read (s_path (&c, "link"), 100, &len));
    CU_ASSERT_EQUAL (errno, ELOOP);
    //  The tail of a link is empty too.
    char *tail = mc_fs_tail (s_path (&c, "link"), 100);
    CU_ASSERT_STRING_EQUAL (tail, "");
    free (tail);
    //  The target itself reads fine.
    char *got = mc_fs_read (target, 100, &len);
    CU_ASSERT_STRING_EQUAL (got, "secret");
    free (got);
    s_case_close (&c);
}

static void test_rmtree (void)
{
    s_case_t c;
    s_case_open (&c);
    //  A tree with nested directories, files, and a link pointing outside it.
    char outside[4400];
    snprintf (outside, sizeof outside, "%s", s_path (&c, "outside.txt"));
    CU_ASSERT_FATAL (mc_test_write_file (outside, "keep me", 7) == 0);
    char outside_dir[4400];
    snprintf (outside_dir, sizeof outside_dir, "%s", s_path (&c, "outside-dir"));
    CU_ASSERT_FATAL (mkdir (outside_dir, 0755) == 0);
    CU_ASSERT_FATAL (mc_test_write_file (s_path (&c, "outside-dir/f"), "f", 1) == 0);
    CU_ASSERT_FATAL (mc_fs_mkdirs (s_path (&c, "tree/a/b/c"), 0755) == 0);
    CU_ASSERT_FATAL (mc_test_write_file (s_path (&c, "tree/top"), "t", 1) == 0);
    CU_ASSERT_FATAL (mc_test_write_file (s_path (&c, "tree/a/b/c/deep"), "d", 1) == 0);
    CU_ASSERT_FATAL (symlink (outside, s_path (&c, "tree/a/link-to-file")) == 0);
    CU_ASSERT_FATAL (symlink (outside_dir, s_path (&c, "tree/a/b/link-to-dir")) == 0);
    CU_ASSERT_EQUAL (mc_fs_rmtree (s_path (&c, "tree")), 0);
    CU_ASSERT_FALSE (mc_test_exists (s_path (&c, "tree")));
    //  What the links pointed at is untouched.
    CU_ASSERT (mc_test_exists (outside));
    CU_ASSERT (mc_test_exists (s_path (&c, "outside-dir/f")));
    //  A single file, and a path that does not exist.
    CU_ASSERT_EQUAL (mc_fs_rmtree (outside), 0);
    CU_ASSERT_FALSE (mc_test_exists (outside));
    CU_ASSERT_EQUAL (mc_fs_rmtree (s_path (&c, "never-was")), 0);
    //  A link given as the root is removed itself, not its target.
    CU_ASSERT_FATAL (symlink (outside_dir, s_path (&c, "root-link")) == 0);
    CU_ASSERT_EQUAL (mc_fs_rmtree (s_path (&c, "root-link")), 0);
    CU_ASSERT_FALSE (mc_test_exists (s_path (&c, "root-link")));
    CU_ASSERT (mc_test_exists (s_path (&c, "outside-dir/f")));
    s_case_close (&c);
}

static void test_tail (void)
{
    s_case_t c;
    s_case_open (&c);
    char path[4400];
    snprintf (path, sizeof path, "%s", s_path (&c, "log"));
    CU_ASSERT_FATAL (mc_test_write_file (path, "0123456789", 10) == 0);
    char *tail = mc_fs_tail (path, 4);
    CU_ASSERT_STRING_EQUAL (tail, "6789");
    free (tail);
    tail = mc_fs_tail (path, 10);
    CU_ASSERT_STRING_EQUAL (tail, "0123456789");
    free (tail);
    tail = mc_fs_tail (path, 100);
    CU_ASSERT_STRING_EQUAL (tail, "0123456789");
    free (tail);
    tail = mc_fs_tail (path, 0);
    CU_ASSERT_STRING_EQUAL (tail, "");
    free (tail);
    //  Missing and empty files give "" (never NULL).
    tail = mc_fs_tail (s_path (&c, "missing"), 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL (tail);
    CU_ASSERT_STRING_EQUAL (tail, "");
    free (tail);
    CU_ASSERT_FATAL (mc_test_write_file (path, "", 0) == 0);
    tail = mc_fs_tail (path, 10);
    CU_ASSERT_STRING_EQUAL (tail, "");
    free (tail);
    s_case_close (&c);
}

static void test_mkdirs (void)
{
    s_case_t c;
    s_case_open (&c);
    mode_t saved = umask (022);
    CU_ASSERT_EQUAL (mc_fs_mkdirs (s_path (&c, "a/b/c"), 0750), 0);
    CU_ASSERT_EQUAL (s_mode_of (s_path (&c, "a")), 0750);
    CU_ASSERT_EQUAL (s_mode_of (s_path (&c, "a/b")), 0750);
    CU_ASSERT_EQUAL (s_mode_of (s_path (&c, "a/b/c")), 0750);
    //  Existing is fine, and existing directories keep their mode.
    CU_ASSERT_EQUAL (mc_fs_mkdirs (s_path (&c, "a/b/c"), 0700), 0);
    CU_ASSERT_EQUAL (s_mode_of (s_path (&c, "a/b/c")), 0750);
    CU_ASSERT_EQUAL (mc_fs_mkdirs (s_path (&c, "a/b/d/"), 0700), 0);
    CU_ASSERT_EQUAL (s_mode_of (s_path (&c, "a/b/d")), 0700);
    CU_ASSERT_EQUAL (mc_fs_mkdirs (s_path (&c, "a//e"), 0755), 0);
    CU_ASSERT (mc_fs_exists (s_path (&c, "a/e")));
    //  A regular file in the way, at the end or in the middle.
    CU_ASSERT_FATAL (mc_test_write_file (s_path (&c, "file"), "x", 1) == 0);
    errno = 0;
    CU_ASSERT_EQUAL (mc_fs_mkdirs (s_path (&c, "file"), 0755), -1);
    CU_ASSERT_EQUAL (errno, ENOTDIR);
    errno = 0;
    CU_ASSERT_EQUAL (mc_fs_mkdirs (s_path (&c, "file/below"), 0755), -1);
    CU_ASSERT_EQUAL (errno, ENOTDIR);
    umask (saved);
    s_case_close (&c);
}

static void test_time_iso (void)
{
    char buf[32];
    mc_time_iso (0, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL (buf, "1970-01-01T00:00:00Z");
    mc_time_iso (1700000000, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL (buf, "2023-11-14T22:13:20Z");
    int64_t now = mc_time_unix ();
    CU_ASSERT (now > 1700000000);
}

void mc_test_seal (void)
{
    CU_pSuite suite = CU_add_suite ("seal", NULL, NULL);
    CU_add_test (suite, "key created then loaded", test_key_created_then_loaded);
    CU_add_test (suite, "key of the wrong size", test_key_wrong_size);
    CU_add_test (suite, "round trip", test_round_trip);
    CU_add_test (suite, "tampered", test_tampered);
    CU_add_test (suite, "wrong key", test_wrong_key);
    CU_add_test (suite, "fs write atomic", test_write_atomic);
    CU_add_test (suite, "fs read", test_read);
    CU_add_test (suite, "fs read refuses symlink", test_read_refuses_symlink);
    CU_add_test (suite, "fs rmtree", test_rmtree);
    CU_add_test (suite, "fs tail", test_tail);
    CU_add_test (suite, "fs mkdirs", test_mkdirs);
    CU_add_test (suite, "time iso", test_time_iso);
}
