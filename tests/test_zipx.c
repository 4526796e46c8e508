/*  Unit suite for core/zipx: safe ZIP extraction. Every archive is built here, either
    with libarchive's writer (realistic deflated archives with data descriptors) or
    byte by byte (stored entries, for the malicious shapes no writer produces). After
    every refusal the destination must not exist. */
#include <CUnit/CUnit.h>
#include <archive.h>
#include <archive_entry.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/zipx.h"
#include "testutil.h"

//  One test's scratch space: a temporary directory holding the archive and, if
//  extraction succeeds, the destination.
typedef struct {
    char *dir;       // temporary directory (owned)
    char zip[4096];  // path of the archive under dir
    char dest[4096]; // destination under dir; must not exist before extraction
} s_case_t;

//  Growable byte buffer for building archives by hand.
typedef struct {
    uint8_t *data; // bytes so far (owned)
    size_t len;    // bytes used
} s_bytes_t;

//  One entry of a hand-built archive. Data is always stored (method field aside).
typedef struct {
    const char *name;         // raw name bytes
    size_t name_len;          // 0: strlen (name)
    const char *data;         // content, may be NULL when size is 0
    size_t size;              // content length
    uint32_t mode;            // Unix mode with type bits; 0: regular file 0644
    uint16_t flags;           // general-purpose flags
    uint16_t method;          // method field written; the data stays stored
    bool dos_host;            // write host 0 (MS-DOS) instead
    bool bad_crc;             // write a CRC that does not match the data
    const char *local_name;   // name for the local header only; NULL: same as name
    bool share_previous;      // central record points at the previous entry's local header
    const char *unicode_path; // if set, an Info-ZIP Unicode Path extra field with this name
} s_raw_entry_t;

//  One entry for libarchive's writer.
typedef struct {
    const char *name; // path in the archive
    const void *data; // content (NULL for directories)
    size_t size;      // content length
    mode_t mode;      // type and permission bits, e.g. AE_IFREG | 0755
} s_la_entry_t;

//  Makes a fresh case directory with zip and dest paths.
static void s_case_open (s_case_t *c)
{
    c->dir = mc_test_tmpdir ("zipx");
    CU_ASSERT_PTR_NOT_NULL_FATAL (c->dir);
    snprintf (c->zip, sizeof c->zip, "%s/module.zip", c->dir);
    snprintf (c->dest, sizeof c->dest, "%s/out", c->dir);
}

//  Removes the case directory.
static void s_case_close (s_case_t *c)
{
    mc_test_rmtree (c->dir);
    free (c->dir);
    c->dir = NULL;
}

//  Standard CRC-32 (the ZIP one), bit by bit.
static uint32_t s_crc32 (const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFF;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0xEDB88320 & (0 - (crc & 1)));
    }
    return ~crc;
}

//  Appends len bytes to a buffer.
static void s_put (s_bytes_t *b, const void *data, size_t len)
{
    b->data = realloc (b->data, b->len + len + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL (b->data);
    if (len)
        memcpy (b->data + b->len, data, len);
    b->len += len;
}

//  Appends a little-endian 16-bit value.
static void s_put16 (s_bytes_t *b, uint32_t value)
{
    uint8_t p[2] = {(uint8_t)value, (uint8_t)(value >> 8)};
    s_put (b, p, 2);
}

//  Appends a little-endian 32-bit value.
static void s_put32 (s_bytes_t *b, uint32_t value)
{
    uint8_t p[4] = {(uint8_t)value, (uint8_t)(value >> 8), (uint8_t)(value >> 16),
                    (uint8_t)(value >> 24)};
    s_put (b, p, 4);
}

//  Writes a hand-built ZIP (local headers, central directory, end record) to path.
static void s_write_raw_zip (const char *path, const s_raw_entry_t *entries, size_t count)
{
    s_bytes_t body = {0}, dir = {0};
    uint32_t previous_offset = 0;
    for (size_t i = 0; i < count; i++) {
        const s_raw_entry_t *e = &entries[i];
        size_t name_len = e->name_len ? e->name_len : strlen (e->name);
        const char *local_name = e->local_name ? e->local_name : e->name;
        size_t local_name_len = e->local_name ? strlen (e->local_name) : name_len;
        uint32_t crc = s_crc32 (e->data, e->size) ^ (e->bad_crc ? 0x1 : 0);
        s_bytes_t extra = {0};
        if (e->unicode_path) {
            s_put16 (&extra, 0x7075);
            s_put16 (&extra, (uint32_t)(5 + strlen (e->unicode_path)));
            s_put (&extra, "\001", 1);
            s_put32 (&extra, s_crc32 (e->name, name_len));
            s_put (&extra, e->unicode_path, strlen (e->unicode_path));
        }
        uint32_t offset = e->share_previous ? previous_offset : (uint32_t)body.len;
        if (!e->share_previous) {
            s_put32 (&body, 0x04034b50);
            s_put16 (&body, 20);
            s_put16 (&body, e->flags);
            s_put16 (&body, e->method);
            s_put16 (&body, 0);    // time
            s_put16 (&body, 0x21); // date: 1980-01-01
            s_put32 (&body, crc);
            s_put32 (&body, (uint32_t)e->size);
            s_put32 (&body, (uint32_t)e->size);
            s_put16 (&body, (uint32_t)local_name_len);
            s_put16 (&body, (uint32_t)extra.len);
            s_put (&body, local_name, local_name_len);
            s_put (&body, extra.data, extra.len);
            s_put (&body, e->data, e->size);
        }
        previous_offset = offset;
        unsigned host = e->dos_host ? 0 : 3;
        s_put32 (&dir, 0x02014b50);
        s_put16 (&dir, host << 8 | 20);
        s_put16 (&dir, 20);
        s_put16 (&dir, e->flags);
        s_put16 (&dir, e->method);
        s_put16 (&dir, 0);
        s_put16 (&dir, 0x21);
        s_put32 (&dir, crc);
        s_put32 (&dir, (uint32_t)e->size);
        s_put32 (&dir, (uint32_t)e->size);
        s_put16 (&dir, (uint32_t)name_len);
        s_put16 (&dir, (uint32_t)extra.len);
        s_put16 (&dir, 0); // comment
        s_put16 (&dir, 0); // disk
        s_put16 (&dir, 0); // internal attributes
        s_put32 (&dir, (e->mode ? e->mode : 0100644) << 16);
        s_put32 (&dir, offset);
        s_put (&dir, e->name, name_len);
        s_put (&dir, extra.data, extra.len);
        free (extra.data);
    }
    uint32_t dir_offset = (uint32_t)body.len;
    s_put (&body, dir.data, dir.len);
    s_put32 (&body, 0x06054b50);
    s_put16 (&body, 0);
    s_put16 (&body, 0);
    s_put16 (&body, (uint32_t)count);
    s_put16 (&body, (uint32_t)count);
    s_put32 (&body, (uint32_t)dir.len);
    s_put32 (&body, dir_offset);
    s_put16 (&body, 0);
    CU_ASSERT_FATAL (mc_test_write_file (path, body.data, body.len) == 0);
    free (body.data);
    free (dir.data);
}

//  Writes a ZIP to path with libarchive's writer (deflate, data descriptors).
static void s_write_la_zip (const char *path, const s_la_entry_t *entries, size_t count)
{
    struct archive *a = archive_write_new ();
    CU_ASSERT_PTR_NOT_NULL_FATAL (a);
    CU_ASSERT_FATAL (archive_write_set_format_zip (a) == ARCHIVE_OK);
    CU_ASSERT_FATAL (archive_write_open_filename (a, path) == ARCHIVE_OK);
    for (size_t i = 0; i < count; i++) {
        struct archive_entry *entry = archive_entry_new ();
        archive_entry_set_pathname (entry, entries[i].name);
        archive_entry_set_mode (entry, entries[i].mode);
        archive_entry_set_size (entry, (la_int64_t)entries[i].size);
        CU_ASSERT_FATAL (archive_write_header (a, entry) == ARCHIVE_OK);
        if (entries[i].size)
            CU_ASSERT_FATAL (archive_write_data (a, entries[i].data, entries[i].size) ==
                             (la_ssize_t)entries[i].size);
        archive_entry_free (entry);
    }
    CU_ASSERT_FATAL (archive_write_close (a) == ARCHIVE_OK);
    archive_write_free (a);
}

//  Reads a whole file; returns the bytes (caller frees) and sets *len, or NULL.
static char *s_slurp (const char *path, size_t *len)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return NULL;
    fseek (f, 0, SEEK_END);
    long size = ftell (f);
    fseek (f, 0, SEEK_SET);
    char *data = malloc ((size_t)size + 1);
    *len = fread (data, 1, (size_t)size, f);
    fclose (f);
    return data;
}

//  True if path holds exactly len bytes equal to data.
static bool s_file_is (const char *path, const void *data, size_t len)
{
    size_t got_len = 0;
    char *got = s_slurp (path, &got_len);
    bool same = got && got_len == len && memcmp (got, data, len) == 0;
    free (got);
    return same;
}

//  Permission bits of path, or -1.
static int s_mode_of (const char *path)
{
    struct stat st;
    if (lstat (path, &st) != 0)
        return -1;
    return (int)(st.st_mode & 07777);
}

//  Extracts c's archive and checks it is refused with code, leaving no destination
//  and nothing but the archive in the case directory. Prints why when it is not.
static bool s_refused (s_case_t *c, const mc_zipx_limits_t *limits, const char *code)
{
    mc_zipx_limits_t defaults;
    mc_zipx_limits_default (&defaults);
    mc_error_t err = {{0}, {0}};
    int rc = mc_zipx_extract (c->zip, c->dest, limits ? limits : &defaults, &err);
    bool ok = rc == -1 && strcmp (err.code, code) == 0 && !mc_test_exists (c->dest) &&
              mc_test_count_entries (c->dir) == 1;
    if (!ok)
        fprintf (stderr, "\n  expected %s, got rc=%d code=%s (%s), dest %s, %d entries\n", code, rc,
                 err.code, err.detail, mc_test_exists (c->dest) ? "exists" : "absent",
                 mc_test_count_entries (c->dir));
    return ok;
}

//  Extracts c's archive and checks it succeeds. Prints the error when it does not.
static bool s_accepted (s_case_t *c, const mc_zipx_limits_t *limits)
{
    mc_zipx_limits_t defaults;
    mc_zipx_limits_default (&defaults);
    mc_error_t err = {{0}, {0}};
    int rc = mc_zipx_extract (c->zip, c->dest, limits ? limits : &defaults, &err);
    if (rc != 0)
        fprintf (stderr, "\n  expected success, got %s (%s)\n", err.code, err.detail);
    return rc == 0;
}

//  Builds a one-entry hand-made archive in c and checks it is refused with code.
static void s_refuse_one (const s_raw_entry_t *entry, const char *code)
{
    s_case_t c;
    s_case_open (&c);
    s_write_raw_zip (c.zip, entry, 1);
    CU_ASSERT (s_refused (&c, NULL, code));
    s_case_close (&c);
}

//  Path of name under c's destination, in a static buffer.
static const char *s_out (s_case_t *c, const char *name)
{
    static char path[8192];
    snprintf (path, sizeof path, "%s/%s", c->dest, name);
    return path;
}

static void test_limits_default (void)
{
    mc_zipx_limits_t limits;
    mc_zipx_limits_default (&limits);
    CU_ASSERT_EQUAL (limits.max_entries, 4096);
    CU_ASSERT_EQUAL (limits.max_total_bytes, 256ULL * 1024 * 1024);
    CU_ASSERT_EQUAL (limits.max_entry_bytes, 64ULL * 1024 * 1024);
    CU_ASSERT_EQUAL (limits.max_ratio, 200);
}

static void test_valid_nested_and_executable (void)
{
    s_case_t c;
    s_case_open (&c);
    static char blob[100000];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (char)((i * 7) % 251);
    const char *manifest = "name = \"hello\"\n";
    const char *script = "#!/bin/sh\necho hello\n";
    s_la_entry_t entries[] = {
        {"mod/", NULL, 0, AE_IFDIR | 0700},
        {"mod/manifest.toml", manifest, strlen (manifest), AE_IFREG | 0600},
        {"mod/bin/run.sh", script, strlen (script), AE_IFREG | 0755}, // no "mod/bin/" entry
        {"mod/bin/tool", "x", 1, AE_IFREG | 0744},
        {"mod/lib/deep/data.bin", blob, sizeof blob, AE_IFREG | 0644},
        {"top.txt", "top", 3, AE_IFREG | 0666},
    };
    s_write_la_zip (c.zip, entries, sizeof entries / sizeof entries[0]);

    mode_t old_umask = umask (077); // modes must not depend on the umask
    bool ok = s_accepted (&c, NULL);
    umask (old_umask);
    CU_ASSERT_FATAL (ok);

    CU_ASSERT (s_file_is (s_out (&c, "mod/manifest.toml"), manifest, strlen (manifest)));
    CU_ASSERT (s_file_is (s_out (&c, "mod/bin/run.sh"), script, strlen (script)));
    CU_ASSERT (s_file_is (s_out (&c, "mod/bin/tool"), "x", 1));
    CU_ASSERT (s_file_is (s_out (&c, "mod/lib/deep/data.bin"), blob, sizeof blob));
    CU_ASSERT (s_file_is (s_out (&c, "top.txt"), "top", 3));
    CU_ASSERT_EQUAL (s_mode_of (c.dest), 0755);
    CU_ASSERT_EQUAL (s_mode_of (s_out (&c, "mod")), 0755);
    CU_ASSERT_EQUAL (s_mode_of (s_out (&c, "mod/bin")), 0755);
    CU_ASSERT_EQUAL (s_mode_of (s_out (&c, "mod/lib/deep")), 0755);
    CU_ASSERT_EQUAL (s_mode_of (s_out (&c, "mod/manifest.toml")), 0644);
    CU_ASSERT_EQUAL (s_mode_of (s_out (&c, "mod/bin/run.sh")), 0755);
    CU_ASSERT_EQUAL (s_mode_of (s_out (&c, "mod/bin/tool")), 0755);
    CU_ASSERT_EQUAL (s_mode_of (s_out (&c, "mod/lib/deep/data.bin")), 0644);
    CU_ASSERT_EQUAL (s_mode_of (s_out (&c, "top.txt")), 0644);
    CU_ASSERT_EQUAL (mc_test_count_entries (c.dest), 2);
    CU_ASSERT_EQUAL (mc_test_count_entries (s_out (&c, "mod")), 3);
    s_case_close (&c);
}

static void test_valid_stored_utf8_names (void)
{
    s_case_t c;
    s_case_open (&c);
    s_raw_entry_t entries[] = {
        {.name = "docs/", .mode = 040755},
        {.name = "docs/\xc3\xa9t\xc3\xa9.txt", .data = "summer", .size = 6, .flags = 0x0800},
        {.name = "./docs//readme", .data = "r", .size = 1},
        {.name = "empty", .size = 0},
    };
    s_write_raw_zip (c.zip, entries, 4);
    CU_ASSERT_FATAL (s_accepted (&c, NULL));
    CU_ASSERT (s_file_is (s_out (&c, "docs/\xc3\xa9t\xc3\xa9.txt"), "summer", 6));
    CU_ASSERT (s_file_is (s_out (&c, "docs/readme"), "r", 1));
    CU_ASSERT (s_file_is (s_out (&c, "empty"), "", 0));
    CU_ASSERT_EQUAL (mc_test_count_entries (c.dest), 2);
    s_case_close (&c);
}

static void test_implicit_then_explicit_dir (void)
{
    s_case_t c;
    s_case_open (&c);
    s_raw_entry_t entries[] = {
        {.name = "a/b.txt", .data = "b", .size = 1},
        {.name = "a/", .mode = 040755},
    };
    s_write_raw_zip (c.zip, entries, 2);
    CU_ASSERT (s_accepted (&c, NULL));
    CU_ASSERT (s_file_is (s_out (&c, "a/b.txt"), "b", 1));
    s_case_close (&c);
}

static void test_zip_slip_parent (void)
{
    s_case_t c;
    s_case_open (&c);
    s_raw_entry_t entry = {.name = "../x", .data = "evil", .size = 4};
    s_write_raw_zip (c.zip, &entry, 1);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_UNSAFE_PATH"));
    char outside[4200];
    snprintf (outside, sizeof outside, "%s/x", c.dir);
    CU_ASSERT_FALSE (mc_test_exists (outside));
    s_case_close (&c);
}

static void test_zip_slip_nested (void)
{
    s_raw_entry_t entry = {.name = "a/../../x", .data = "evil", .size = 4};
    s_refuse_one (&entry, "ZIP_UNSAFE_PATH");
    s_raw_entry_t late = {.name = "a/b/..", .mode = 040755};
    s_refuse_one (&late, "ZIP_UNSAFE_PATH");
}

static void test_zip_slip_after_good_entries (void)
{
    //  Good entries are written first; the refusal must remove them too.
    s_case_t c;
    s_case_open (&c);
    s_raw_entry_t entries[] = {
        {.name = "ok/one.txt", .data = "1", .size = 1},
        {.name = "ok/two.txt", .data = "2", .size = 1},
        {.name = "ok/../../x", .data = "evil", .size = 4},
    };
    s_write_raw_zip (c.zip, entries, 3);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_UNSAFE_PATH"));
    s_case_close (&c);
}

static void test_absolute_path (void)
{
    s_raw_entry_t entry = {.name = "/tmp/mc-zipx-evil", .data = "evil", .size = 4};
    s_refuse_one (&entry, "ZIP_UNSAFE_PATH");
    CU_ASSERT_FALSE (mc_test_exists ("/tmp/mc-zipx-evil"));
}

static void test_backslash_name (void)
{
    //  libarchive would turn these into slashes for a DOS-made archive.
    s_raw_entry_t dos = {.name = "..\\..\\evil", .data = "x", .size = 1, .dos_host = true};
    s_refuse_one (&dos, "ZIP_UNSAFE_PATH");
    s_raw_entry_t unix_made = {.name = "a\\b", .data = "x", .size = 1};
    s_refuse_one (&unix_made, "ZIP_UNSAFE_PATH");
}

static void test_nul_and_control_in_name (void)
{
    //  libarchive would silently cut this name at the NUL.
    s_raw_entry_t nul = {.name = "a\0../../x", .name_len = 9, .data = "x", .size = 1};
    s_refuse_one (&nul, "ZIP_UNSAFE_PATH");
    s_raw_entry_t newline = {.name = "a\nb", .data = "x", .size = 1};
    s_refuse_one (&newline, "ZIP_UNSAFE_PATH");
    s_raw_entry_t del = {.name = "a\x7f", .data = "x", .size = 1};
    s_refuse_one (&del, "ZIP_UNSAFE_PATH");
}

static void test_empty_and_dot_names (void)
{
    s_raw_entry_t empty = {.name = "", .data = "x", .size = 1};
    s_refuse_one (&empty, "ZIP_UNSAFE_PATH");
    s_raw_entry_t dot = {.name = "./", .mode = 040755};
    s_refuse_one (&dot, "ZIP_UNSAFE_PATH");
}

static void test_unicode_path_field (void)
{
    //  libarchive replaces the main name with this field's name.
    s_raw_entry_t dotdot = {.name = "good.txt", .data = "x", .size = 1, .unicode_path = "../evil"};
    s_refuse_one (&dotdot, "ZIP_UNSAFE_PATH");
    s_raw_entry_t slash = {.name = "good.txt", .data = "x", .size = 1, .unicode_path = "/evil"};
    s_refuse_one (&slash, "ZIP_UNSAFE_PATH");
}

static void test_local_name_mismatch (void)
{
    s_raw_entry_t entry = {.name = "good.txt", .local_name = "../evil", .data = "x", .size = 1};
    s_refuse_one (&entry, "ZIP_INVALID");
    s_raw_entry_t quiet = {.name = "good.txt", .local_name = "else.txt", .data = "x", .size = 1};
    s_refuse_one (&quiet, "ZIP_INVALID");
}

static void test_symlink (void)
{
    s_raw_entry_t entry = {.name = "link", .data = "/etc/passwd", .size = 11, .mode = 0120777};
    s_refuse_one (&entry, "ZIP_UNSUPPORTED_ENTRY");
}

static void test_special_files (void)
{
    //  libarchive reports a FIFO as a regular file.
    s_raw_entry_t fifo = {.name = "fifo", .mode = 0010644};
    s_refuse_one (&fifo, "ZIP_UNSUPPORTED_ENTRY");
    s_raw_entry_t chardev = {.name = "tty", .mode = 0020644};
    s_refuse_one (&chardev, "ZIP_UNSUPPORTED_ENTRY");
    s_raw_entry_t blockdev = {.name = "disk", .mode = 0060644};
    s_refuse_one (&blockdev, "ZIP_UNSUPPORTED_ENTRY");
    s_raw_entry_t socket = {.name = "sock", .mode = 0140644};
    s_refuse_one (&socket, "ZIP_UNSUPPORTED_ENTRY");
}

static void test_unsupported_method (void)
{
    s_raw_entry_t entry = {.name = "a.txt", .data = "x", .size = 1, .method = 12};
    s_refuse_one (&entry, "ZIP_UNSUPPORTED_ENTRY");
}

static void test_encrypted (void)
{
    s_raw_entry_t traditional = {
        .name = "a.txt", .data = "0123456789abcdef", .size = 16, .flags = 0x0001};
    s_refuse_one (&traditional, "ZIP_ENCRYPTED");
    s_raw_entry_t strong = {
        .name = "a.txt", .data = "0123456789abcdef", .size = 16, .flags = 0x0041};
    s_refuse_one (&strong, "ZIP_ENCRYPTED");
}

//  Builds a two-entry archive from first and second and checks it is refused with code.
static void s_refuse_pair (const char *first, uint32_t first_mode, const char *second,
                           uint32_t second_mode, const char *code)
{
    s_case_t c;
    s_case_open (&c);
    s_raw_entry_t entries[] = {
        {.name = first, .mode = first_mode, .data = "1", .size = (first_mode >> 12) == 4 ? 0 : 1},
        {.name = second,
         .mode = second_mode,
         .data = "2",
         .size = (second_mode >> 12) == 4 ? 0 : 1},
    };
    s_write_raw_zip (c.zip, entries, 2);
    CU_ASSERT (s_refused (&c, NULL, code));
    s_case_close (&c);
}

static void test_duplicate_names (void)
{
    s_refuse_pair ("a.txt", 0100644, "a.txt", 0100644, "ZIP_DUPLICATE_ENTRY");
    s_refuse_pair ("d/", 040755, "d/", 040755, "ZIP_DUPLICATE_ENTRY");
    s_refuse_pair ("d/a", 0100644, "d//./a", 0100644, "ZIP_DUPLICATE_ENTRY");
}

static void test_duplicate_file_and_dir (void)
{
    s_refuse_pair ("a", 0100644, "a/", 040755, "ZIP_DUPLICATE_ENTRY");
    s_refuse_pair ("a/", 040755, "a", 0100644, "ZIP_DUPLICATE_ENTRY");
    s_refuse_pair ("a", 0100644, "a/b", 0100644, "ZIP_DUPLICATE_ENTRY");
    s_refuse_pair ("a/b", 0100644, "a", 0100644, "ZIP_DUPLICATE_ENTRY");
}

static void test_shared_local_header (void)
{
    //  Two central records, one local header: libarchive reads only one entry.
    s_case_t c;
    s_case_open (&c);
    s_raw_entry_t entries[] = {
        {.name = "a.txt", .data = "one", .size = 3},
        {.name = "a.txt", .data = "one", .size = 3, .share_previous = true},
    };
    s_write_raw_zip (c.zip, entries, 2);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_INVALID"));
    s_case_close (&c);
}

static void test_bad_crc_stored (void)
{
    s_raw_entry_t entry = {.name = "a.txt", .data = "hello world", .size = 11, .bad_crc = true};
    s_refuse_one (&entry, "ZIP_CORRUPT");
}

//  Offset of the first entry's data in a ZIP whose first local header is at 0.
static size_t s_first_data_offset (const uint8_t *zip)
{
    return 30 + (size_t)(zip[26] | zip[27] << 8) + (size_t)(zip[28] | zip[29] << 8);
}

static void test_bad_crc_deflated (void)
{
    s_case_t c;
    s_case_open (&c);
    static char text[20000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = "lorem ipsum dolor sit amet "[i % 27] + (char)(i / 997 % 3);
    s_la_entry_t entry = {"a.txt", text, sizeof text, AE_IFREG | 0644};
    s_write_la_zip (c.zip, &entry, 1);
    //  The untouched archive is fine...
    CU_ASSERT_FATAL (s_accepted (&c, NULL));
    mc_test_rmtree (c.dest);
    //  ...one flipped bit in the compressed data is not.
    size_t len = 0;
    uint8_t *zip = (uint8_t *)s_slurp (c.zip, &len);
    CU_ASSERT_FATAL (zip != NULL && len > 200);
    zip[s_first_data_offset (zip) + 20] ^= 0x10;
    CU_ASSERT_FATAL (mc_test_write_file (c.zip, zip, len) == 0);
    free (zip);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_CORRUPT"));
    s_case_close (&c);
}

//  Writes a valid deflated three-file archive to c and returns its bytes and length.
static uint8_t *s_valid_archive (s_case_t *c, size_t *len)
{
    static char text[5000];
    memset (text, 'q', sizeof text);
    s_la_entry_t entries[] = {
        {"a.txt", "alpha", 5, AE_IFREG | 0644},
        {"b.txt", text, sizeof text, AE_IFREG | 0644},
        {"c.txt", "gamma", 5, AE_IFREG | 0644},
    };
    s_write_la_zip (c->zip, entries, 3);
    uint8_t *zip = (uint8_t *)s_slurp (c->zip, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL (zip);
    return zip;
}

static void test_truncated (void)
{
    s_case_t c;
    s_case_open (&c);
    size_t len = 0;
    uint8_t *zip = s_valid_archive (&c, &len);
    CU_ASSERT_FATAL (mc_test_write_file (c.zip, zip, len * 2 / 3) == 0);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_INVALID"));
    CU_ASSERT_FATAL (mc_test_write_file (c.zip, zip, len - 1) == 0);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_INVALID"));
    free (zip);
    s_case_close (&c);
}

static void test_truncated_before_central_dir (void)
{
    //  Every entry intact, the central directory cut off: a streaming reader would
    //  extract it all without complaint.
    s_case_t c;
    s_case_open (&c);
    size_t len = 0;
    uint8_t *zip = s_valid_archive (&c, &len);
    size_t dir_at = 0;
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp (zip + i, "PK\001\002", 4) == 0) {
            dir_at = i;
            break;
        }
    CU_ASSERT_FATAL (dir_at > 0);
    CU_ASSERT_FATAL (mc_test_write_file (c.zip, zip, dir_at) == 0);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_INVALID"));
    free (zip);
    s_case_close (&c);
}

static void test_not_a_zip (void)
{
    s_case_t c;
    s_case_open (&c);
    const char *text = "this is a text file, not a ZIP archive, though it is long enough\n";
    CU_ASSERT_FATAL (mc_test_write_file (c.zip, text, strlen (text)) == 0);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_INVALID"));
    CU_ASSERT_FATAL (mc_test_write_file (c.zip, "", 0) == 0);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_INVALID"));
    CU_ASSERT_FATAL (mc_test_write_file (c.zip, "PK\005\006", 4) == 0);
    CU_ASSERT (s_refused (&c, NULL, "ZIP_INVALID"));
    s_write_raw_zip (c.zip, NULL, 0); // a well-formed archive with no entries
    CU_ASSERT (s_refused (&c, NULL, "ZIP_INVALID"));
    s_case_close (&c);
}

static void test_bomb_ratio (void)
{
    s_case_t c;
    s_case_open (&c);
    size_t size = 8 * 1024 * 1024;
    char *zeros = calloc (1, size);
    CU_ASSERT_PTR_NOT_NULL_FATAL (zeros);
    s_la_entry_t entry = {"zeros.bin", zeros, size, AE_IFREG | 0644};
    s_write_la_zip (c.zip, &entry, 1);
    free (zeros);
    //  Within every size limit, but about a thousand times its compressed size.
    CU_ASSERT (s_refused (&c, NULL, "ZIP_BOMB"));
    //  With a ratio limit the archive satisfies, it extracts.
    mc_zipx_limits_t limits;
    mc_zipx_limits_default (&limits);
    limits.max_ratio = 5000;
    CU_ASSERT (s_accepted (&c, &limits));
    s_case_close (&c);
}

static void test_entry_too_large (void)
{
    s_case_t c;
    s_case_open (&c);
    static char data[3000];
    memset (data, 'x', sizeof data);
    s_raw_entry_t entry = {.name = "big", .data = data, .size = sizeof data};
    s_write_raw_zip (c.zip, &entry, 1);
    mc_zipx_limits_t limits;
    mc_zipx_limits_default (&limits);
    limits.max_entry_bytes = 2000;
    CU_ASSERT (s_refused (&c, &limits, "ZIP_TOO_LARGE"));
    limits.max_entry_bytes = 3000; // exactly the limit is allowed
    CU_ASSERT (s_accepted (&c, &limits));
    s_case_close (&c);
}

static void test_declared_size_ignored (void)
{
    //  The archive declares 10 bytes; what counts is what it expands to.
    s_case_t c;
    s_case_open (&c);
    size_t size = 2 * 1024 * 1024; // more than libarchive inflates in one go
    char *zeros = calloc (1, size);
    s_la_entry_t entry = {"lies.bin", zeros, size, AE_IFREG | 0644};
    s_write_la_zip (c.zip, &entry, 1);
    free (zeros);
    size_t len = 0;
    uint8_t *zip = (uint8_t *)s_slurp (c.zip, &len);
    CU_ASSERT_FATAL (zip != NULL);
    for (size_t i = 0; i + 46 <= len; i++) {
        size_t field = 0; // uncompressed size in a local header or a central record
        if (memcmp (zip + i, "PK\003\004", 4) == 0)
            field = i + 22;
        else if (memcmp (zip + i, "PK\001\002", 4) == 0)
            field = i + 24;
        if (field) {
            zip[field] = 10;
            zip[field + 1] = zip[field + 2] = zip[field + 3] = 0;
        }
    }
    CU_ASSERT_FATAL (mc_test_write_file (c.zip, zip, len) == 0);
    free (zip);
    mc_zipx_limits_t limits;
    mc_zipx_limits_default (&limits);
    limits.max_entry_bytes = 50000;
    limits.max_ratio = 100000;
    CU_ASSERT (s_refused (&c, &limits, "ZIP_TOO_LARGE"));
    s_case_close (&c);
}

static void test_total_too_large (void)
{
    s_case_t c;
    s_case_open (&c);
    static char data[1000];
    memset (data, 'y', sizeof data);
    s_raw_entry_t entries[] = {
        {.name = "one", .data = data, .size = sizeof data},
        {.name = "two", .data = data, .size = sizeof data},
        {.name = "three", .data = data, .size = sizeof data},
    };
    s_write_raw_zip (c.zip, entries, 3);
    mc_zipx_limits_t limits;
    mc_zipx_limits_default (&limits);
    limits.max_entry_bytes = 2000;
    limits.max_total_bytes = 2500;
    CU_ASSERT (s_refused (&c, &limits, "ZIP_TOO_LARGE"));
    limits.max_total_bytes = 3000;
    CU_ASSERT (s_accepted (&c, &limits));
    s_case_close (&c);
}

static void test_too_many_entries (void)
{
    s_case_t c;
    s_case_open (&c);
    s_raw_entry_t entries[] = {
        {.name = "1", .data = "1", .size = 1}, {.name = "2", .data = "2", .size = 1},
        {.name = "3", .data = "3", .size = 1}, {.name = "4", .data = "4", .size = 1},
        {.name = "5", .data = "5", .size = 1},
    };
    mc_zipx_limits_t limits;
    mc_zipx_limits_default (&limits);
    limits.max_entries = 4;
    s_write_raw_zip (c.zip, entries, 5);
    CU_ASSERT (s_refused (&c, &limits, "ZIP_TOO_MANY_ENTRIES"));
    s_write_raw_zip (c.zip, entries, 4);
    CU_ASSERT (s_accepted (&c, &limits));
    CU_ASSERT_EQUAL (mc_test_count_entries (c.dest), 4);
    s_case_close (&c);
}

static void test_destination_exists (void)
{
    s_case_t c;
    s_case_open (&c);
    s_raw_entry_t entry = {.name = "a.txt", .data = "a", .size = 1};
    s_write_raw_zip (c.zip, &entry, 1);
    CU_ASSERT_FATAL (mkdir (c.dest, 0755) == 0);
    CU_ASSERT_FATAL (mc_test_write_file (s_out (&c, "keep"), "k", 1) == 0);
    mc_zipx_limits_t limits;
    mc_zipx_limits_default (&limits);
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_EQUAL (mc_zipx_extract (c.zip, c.dest, &limits, &err), -1);
    CU_ASSERT_STRING_EQUAL (err.code, "IO_ERROR");
    //  Someone else's directory is left alone.
    CU_ASSERT (s_file_is (s_out (&c, "keep"), "k", 1));
    CU_ASSERT_FALSE (mc_test_exists (s_out (&c, "a.txt")));
    s_case_close (&c);
}

static void test_missing_archive (void)
{
    s_case_t c;
    s_case_open (&c);
    mc_zipx_limits_t limits;
    mc_zipx_limits_default (&limits);
    mc_error_t err = {{0}, {0}};
    CU_ASSERT_EQUAL (mc_zipx_extract (c.zip, c.dest, &limits, &err), -1);
    CU_ASSERT_STRING_EQUAL (err.code, "IO_ERROR");
    CU_ASSERT_FALSE (mc_test_exists (c.dest));
    s_case_close (&c);
}

void mc_test_zipx (void)
{
    CU_pSuite suite = CU_add_suite ("zipx", NULL, NULL);
    CU_add_test (suite, "limits default", test_limits_default);
    CU_add_test (suite, "valid nested and executable", test_valid_nested_and_executable);
    CU_add_test (suite, "valid stored, UTF-8 names", test_valid_stored_utf8_names);
    CU_add_test (suite, "implicit then explicit dir", test_implicit_then_explicit_dir);
    CU_add_test (suite, "zip slip ../x", test_zip_slip_parent);
    CU_add_test (suite, "zip slip a/../../x", test_zip_slip_nested);
    CU_add_test (suite, "zip slip after good entries", test_zip_slip_after_good_entries);
    CU_add_test (suite, "absolute path", test_absolute_path);
    CU_add_test (suite, "backslash name", test_backslash_name);
    CU_add_test (suite, "NUL and control in name", test_nul_and_control_in_name);
    CU_add_test (suite, "empty and dot names", test_empty_and_dot_names);
    CU_add_test (suite, "unicode path field", test_unicode_path_field);
    CU_add_test (suite, "local name mismatch", test_local_name_mismatch);
    CU_add_test (suite, "symlink", test_symlink);
    CU_add_test (suite, "special files", test_special_files);
    CU_add_test (suite, "unsupported method", test_unsupported_method);
    CU_add_test (suite, "encrypted", test_encrypted);
    CU_add_test (suite, "duplicate names", test_duplicate_names);
    CU_add_test (suite, "duplicate file and dir", test_duplicate_file_and_dir);
    CU_add_test (suite, "shared local header", test_shared_local_header);
    CU_add_test (suite, "bad CRC stored", test_bad_crc_stored);
    CU_add_test (suite, "bad CRC deflated", test_bad_crc_deflated);
    CU_add_test (suite, "truncated", test_truncated);
    CU_add_test (suite, "truncated before central dir", test_truncated_before_central_dir);
    CU_add_test (suite, "not a zip", test_not_a_zip);
    CU_add_test (suite, "bomb ratio", test_bomb_ratio);
    CU_add_test (suite, "entry too large", test_entry_too_large);
    CU_add_test (suite, "declared size ignored", test_declared_size_ignored);
    CU_add_test (suite, "total too large", test_total_too_large);
    CU_add_test (suite, "too many entries", test_too_many_entries);
    CU_add_test (suite, "destination exists", test_destination_exists);
    CU_add_test (suite, "missing archive", test_missing_archive);
}
