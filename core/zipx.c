/*  Safe ZIP extraction.

    DESIGN

    A module archive is untrusted input. Extraction must never write outside the
    destination, never create anything but regular files and directories, and never
    write more than the limits allow. On any refusal the destination is removed, so
    callers see either a complete tree or nothing.

    The archive is read twice, both times with bounded work:

    1. s_prescan walks the central directory and every local header with pread. It
       exists because libarchive hides some things from its API: it truncates entry
       names at a NUL byte, turns backslashes into slashes for DOS-made archives,
       reports FIFOs as regular files, and takes each entry's name from the local
       header, not from the central directory. The pre-scan refuses raw names with
       NUL, control characters or backslashes, local headers whose name differs from
       the central directory, encryption flags, compression other than stored or
       deflate, Unix file types other than regular file or directory, and more entries
       than allowed, all before anything touches the disk.

    2. libarchive's *seekable* ZIP reader extracts. Only that reader is registered:
       archive_read_support_format_zip also registers the streaming reader, which
       accepts a file whose central directory is cut off and extracts the entries it
       finds, so truncation would go unnoticed. Every entry's name is checked and
       normalised again (after libarchive's own rewriting), recorded in a set of seen
       paths so duplicates and file/directory clashes are refused, and written with
       openat relative to the destination directory, one component at a time, never
       following a symlink. All data is read to the end, including for directories,
       so libarchive checks every CRC; any read that is not clean is corruption.

    Limits count bytes actually written, checked before each write, never the sizes
    an archive declares. Names are decoded in a per-thread C.UTF-8 locale, so
    archives that flag their names as UTF-8 work whatever the process locale is. */
#include "core/zipx.h"

#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MIB            (1024ULL * 1024ULL)
#define S_COPY_SIZE      (64 * 1024) // bytes moved per read/write while extracting
#define S_NAME_FIELD_MAX (3 * 65535) // name + extra + comment of one ZIP record
#define S_EOCD_SIZE      22          // end of central directory record, without comment
#define S_CDH_SIZE       46          // central directory file header, fixed part
#define S_LFH_SIZE       30          // local file header, fixed part

//  ZIP general-purpose flags that mean the entry (or the directory) is encrypted.
#define S_FLAG_ENCRYPTED        0x0001
#define S_FLAG_STRONG_ENCRYPTED 0x0040
#define S_FLAG_CD_ENCRYPTED     0x2000

//  Kinds of path recorded in the seen set; never 0, which zhashx reports as "absent".
typedef enum {
    SEEN_FILE = 1,   // named by the archive as a regular file
    SEEN_DIR = 2,    // named by the archive as a directory
    SEEN_PARENT = 3, // not named, but created as the parent of a named path
} s_seen_t;

//  State of one extraction.
typedef struct {
    const mc_zipx_limits_t *limits; // limits from the caller
    mc_error_t *err;                // where refusals are reported; may be NULL
    int dest_fd;                    // destination directory, opened O_DIRECTORY
    size_t dest_len;                // length of the destination path, for path-length checks
    uint64_t expected_entries;      // entries listed in the central directory
    size_t entries;                 // entries read so far
    uint64_t total_bytes;           // bytes written so far, all entries
    uint64_t ratio_cap;             // most bytes max_ratio allows for this archive's size
    zhashx_t *seen;                 // normalised path -> s_seen_t
    char *buffer;                   // S_COPY_SIZE bytes for moving entry data
} s_extract_t;

//  Fills limits with the documented defaults.
void mc_zipx_limits_default (mc_zipx_limits_t *limits)
{
    assert (limits);
    limits->max_entries = 4096;
    limits->max_total_bytes = 256 * S_MIB;
    limits->max_entry_bytes = 64 * S_MIB;
    limits->max_ratio = 200;
}

//  Copies len bytes of an untrusted name into out as printable text for an error
//  message: control bytes become '?', long names are cut with "...".
static const char *s_shown (const char *name, size_t len, char *out, size_t out_size)
{
    size_t room = out_size - 4; // leaves space for "..." and the NUL
    size_t i = 0;
    for (; i < len && i < room; i++) {
        unsigned char c = (unsigned char)name[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (i < len) {
        memcpy (out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

//  Returns libarchive's last error text, never NULL.
static const char *s_archive_error (struct archive *archive)
{
    const char *text = archive_error_string (archive);
    return text ? text : "unknown libarchive error";
}

//  Little-endian readers for ZIP header fields.
static uint16_t s_le16 (const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t s_le32 (const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t s_le64 (const uint8_t *p)
{
    return (uint64_t)s_le32 (p) | (uint64_t)s_le32 (p + 4) << 32;
}

//  Reads exactly len bytes at offset; false if the file is shorter or unreadable.
static bool s_read_at (int fd, uint64_t offset, void *buffer, size_t len)
{
    uint8_t *dst = buffer;
    while (len > 0) {
        ssize_t got = pread (fd, dst, len, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        dst += got;
        len -= (size_t)got;
        offset += (uint64_t)got;
    }
    return true;
}

//  Refuses a raw entry name that is empty or holds NUL, control bytes or backslashes.
static int s_check_raw_name (const uint8_t *name, size_t len, mc_error_t *err)
{
    char shown[128];
    if (len == 0)
        return mc_error_set (err, "ZIP_UNSAFE_PATH", "archive has an entry with an empty name");
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '\0')
            return mc_error_set (err, "ZIP_UNSAFE_PATH", "entry name '%s' contains a NUL byte",
                                 s_shown ((const char *)name, len, shown, sizeof shown));
        if (name[i] < 0x20 || name[i] == 0x7f)
            return mc_error_set (err, "ZIP_UNSAFE_PATH",
                                 "entry name '%s' contains a control character",
                                 s_shown ((const char *)name, len, shown, sizeof shown));
        if (name[i] == '\\')
            return mc_error_set (err, "ZIP_UNSAFE_PATH", "entry name '%s' contains a backslash",
                                 s_shown ((const char *)name, len, shown, sizeof shown));
    }
    return 0;
}

//  Walks the extra fields of one header. Checks the alternative name of an Info-ZIP
//  Unicode Path field (libarchive prefers it to the main name) and, if local_offset
//  is not NULL and holds 0xFFFFFFFF, replaces it from the ZIP64 field. cd_sizes tells
//  which 32-bit size fields were 0xFFFFFFFF and so precede the offset in that field.
static int s_scan_extra (const uint8_t *extra, size_t len, int cd_sizes, uint64_t *local_offset,
                         mc_error_t *err)
{
    size_t at = 0;
    while (at + 4 <= len) {
        uint16_t id = s_le16 (extra + at);
        size_t size = s_le16 (extra + at + 2);
        const uint8_t *data = extra + at + 4;
        if (size > len - at - 4)
            return mc_error_set (err, "ZIP_INVALID", "malformed extra field in archive");
        if (id == 0x7075 && size > 5) {
            if (s_check_raw_name (data + 5, size - 5, err))
                return -1;
        }
        if (id == 0x0001 && local_offset && *local_offset == 0xFFFFFFFF) {
            size_t field = (size_t)cd_sizes * 8;
            if (size < field + 8)
                return mc_error_set (err, "ZIP_INVALID", "malformed ZIP64 field in archive");
            *local_offset = s_le64 (data + field);
        }
        at += 4 + size;
    }
    return 0;
}

//  Finds the central directory from the end record (and its ZIP64 form if present).
//  Refuses anything after the end record, multi-volume archives and a directory
//  that does not end where the end record starts.
static int s_find_central_dir (int fd, uint64_t file_size, uint64_t *cd_offset, uint64_t *cd_end,
                               uint64_t *entries, mc_error_t *err)
{
    if (file_size < S_EOCD_SIZE)
        return mc_error_set (err, "ZIP_INVALID", "not a ZIP archive (too short)");
    size_t window = file_size < S_EOCD_SIZE + 65535 ? (size_t)file_size : S_EOCD_SIZE + 65535;
    uint64_t window_at = file_size - window;
    uint8_t *tail = malloc (window);
    assert (tail);
    if (!s_read_at (fd, window_at, tail, window)) {
        free (tail);
        return mc_error_set (err, "IO_ERROR", "cannot read archive: %s", strerror (errno));
    }
    //  The last signature in the file is the end record; libarchive searches the same
    //  way, so both readers agree on where the directory is.
    size_t found = window;
    for (size_t i = window - S_EOCD_SIZE + 1; i-- > 0;)
        if (memcmp (tail + i, "PK\005\006", 4) == 0) {
            found = i;
            break;
        }
    if (found == window) {
        free (tail);
        return mc_error_set (err, "ZIP_INVALID", "not a ZIP archive, or truncated (no end record)");
    }
    const uint8_t *eocd = tail + found;
    uint64_t eocd_at = window_at + found;
    bool sane = eocd_at + S_EOCD_SIZE + s_le16 (eocd + 20) == file_size && s_le16 (eocd + 4) == 0 &&
                s_le16 (eocd + 6) == 0 && s_le16 (eocd + 8) == s_le16 (eocd + 10);
    *entries = s_le16 (eocd + 10);
    uint64_t cd_size = s_le32 (eocd + 12);
    *cd_offset = s_le32 (eocd + 16);
    uint64_t cd_must_end = eocd_at;
    if (sane && found >= 20 && memcmp (eocd - 20, "PK\006\007", 4) == 0) {
        //  ZIP64 locator: the real counts live in the ZIP64 end record.
        uint8_t record[56];
        uint64_t record_at = s_le64 (eocd - 20 + 8);
        sane = s_le32 (eocd - 20 + 4) == 0 && eocd_at - 20 >= sizeof record &&
               record_at <= eocd_at - 20 - sizeof record &&
               s_read_at (fd, record_at, record, sizeof record) &&
               memcmp (record, "PK\006\006", 4) == 0 &&
               s_le64 (record + 4) == eocd_at - 20 - record_at - 12 && s_le32 (record + 16) == 0 &&
               s_le32 (record + 20) == 0 && s_le64 (record + 24) == s_le64 (record + 32);
        *entries = s_le64 (record + 32);
        cd_size = s_le64 (record + 40);
        *cd_offset = s_le64 (record + 48);
        cd_must_end = record_at;
    }
    free (tail);
    if (!sane || *cd_offset > cd_must_end || cd_size != cd_must_end - *cd_offset)
        return mc_error_set (err, "ZIP_INVALID", "damaged or truncated ZIP end record");
    *cd_end = cd_must_end;
    return 0;
}

//  Checks the central directory and each local header it points to (see DESIGN).
//  Returns 0 with *entries set, or -1 with err set.
static int s_prescan (int fd, uint64_t file_size, const mc_zipx_limits_t *limits, uint64_t *entries,
                      mc_error_t *err)
{
    uint64_t cd_offset = 0, cd_end = 0;
    if (s_find_central_dir (fd, file_size, &cd_offset, &cd_end, entries, err))
        return -1;
    //  libarchive cannot open an archive without entries; say so plainly.
    if (*entries == 0)
        return mc_error_set (err, "ZIP_INVALID", "archive has no entries");
    if (*entries > limits->max_entries)
        return mc_error_set (err, "ZIP_TOO_MANY_ENTRIES",
                             "archive has %llu entries, at most %zu are allowed",
                             (unsigned long long)*entries, limits->max_entries);

    //  One buffer holds a central record's variable part, then the local header's.
    uint8_t *fields = malloc (2 * S_NAME_FIELD_MAX);
    assert (fields);
    uint8_t *local_fields = fields + S_NAME_FIELD_MAX;
    uint64_t at = cd_offset;
    int rc = 0;
    for (uint64_t index = 0; index < *entries && rc == 0; index++) {
        uint8_t header[S_CDH_SIZE];
        if (cd_end - at < S_CDH_SIZE || !s_read_at (fd, at, header, sizeof header) ||
            memcmp (header, "PK\001\002", 4) != 0) {
            rc = mc_error_set (err, "ZIP_INVALID", "damaged ZIP central directory");
            break;
        }
        unsigned host = header[5];
        uint16_t flags = s_le16 (header + 8);
        uint16_t method = s_le16 (header + 10);
        size_t name_len = s_le16 (header + 28);
        size_t extra_len = s_le16 (header + 30);
        size_t variable_len = name_len + extra_len + s_le16 (header + 32);
        uint32_t unix_type = (s_le32 (header + 38) >> 16) & S_IFMT;
        uint64_t local_offset = s_le32 (header + 42);
        int cd_sizes = (s_le32 (header + 24) == 0xFFFFFFFF) + (s_le32 (header + 20) == 0xFFFFFFFF);
        if (cd_end - at - S_CDH_SIZE < variable_len ||
            !s_read_at (fd, at + S_CDH_SIZE, fields, variable_len)) {
            rc = mc_error_set (err, "ZIP_INVALID", "damaged ZIP central directory");
            break;
        }
        at += S_CDH_SIZE + variable_len;

        char shown[128];
        s_shown ((const char *)fields, name_len, shown, sizeof shown);
        if (flags & (S_FLAG_ENCRYPTED | S_FLAG_STRONG_ENCRYPTED | S_FLAG_CD_ENCRYPTED)) {
            rc = mc_error_set (err, "ZIP_ENCRYPTED", "entry '%s' is encrypted", shown);
            break;
        }
        if (method != 0 && method != 8) {
            rc = mc_error_set (err, "ZIP_UNSUPPORTED_ENTRY",
                               "entry '%s' uses compression method %u (only stored and deflate)",
                               shown, method);
            break;
        }
        if (host == 3 && unix_type != 0 && unix_type != S_IFREG && unix_type != S_IFDIR) {
            rc = mc_error_set (err, "ZIP_UNSUPPORTED_ENTRY",
                               "entry '%s' is not a regular file or directory", shown);
            break;
        }
        if (s_check_raw_name (fields, name_len, err) ||
            s_scan_extra (fields + name_len, extra_len, cd_sizes, &local_offset, err)) {
            rc = -1;
            break;
        }

        //  The local header must agree: libarchive takes the name from there.
        uint8_t local[S_LFH_SIZE];
        if (local_offset > cd_offset || cd_offset - local_offset < S_LFH_SIZE ||
            !s_read_at (fd, local_offset, local, sizeof local) ||
            memcmp (local, "PK\003\004", 4) != 0) {
            rc = mc_error_set (err, "ZIP_INVALID", "entry '%s' has no valid local header", shown);
            break;
        }
        uint16_t local_flags = s_le16 (local + 6);
        size_t local_name_len = s_le16 (local + 26);
        size_t local_extra_len = s_le16 (local + 28);
        if (local_flags & (S_FLAG_ENCRYPTED | S_FLAG_STRONG_ENCRYPTED)) {
            rc = mc_error_set (err, "ZIP_ENCRYPTED", "entry '%s' is encrypted", shown);
            break;
        }
        if (local_name_len != name_len || s_le16 (local + 8) != method ||
            cd_offset - local_offset - S_LFH_SIZE < local_name_len + local_extra_len ||
            !s_read_at (fd, local_offset + S_LFH_SIZE, local_fields,
                        local_name_len + local_extra_len) ||
            memcmp (local_fields, fields, name_len) != 0) {
            rc = mc_error_set (err, "ZIP_INVALID",
                               "local header of entry '%s' does not match the central directory",
                               shown);
            break;
        }
        if (s_scan_extra (local_fields + name_len, local_extra_len, 0, NULL, err))
            rc = -1;
    }
    if (rc == 0 && at != cd_end)
        rc = mc_error_set (err, "ZIP_INVALID", "damaged ZIP central directory");
    free (fields);
    return rc;
}

//  Checks an entry name as libarchive reports it and returns it in canonical form
//  ("a/b": no leading, trailing or doubled slash, no "." component), or NULL with
//  err set. The result fits under the destination within PATH_MAX.
static char *s_normalise (s_extract_t *self, const char *name)
{
    char shown[128];
    size_t len = strlen (name);
    s_shown (name, len, shown, sizeof shown);
    if (len == 0) {
        mc_error_set (self->err, "ZIP_UNSAFE_PATH", "archive has an entry with an empty name");
        return NULL;
    }
    if (name[0] == '/') {
        mc_error_set (self->err, "ZIP_UNSAFE_PATH", "entry '%s' has an absolute path", shown);
        return NULL;
    }
    if (s_check_raw_name ((const uint8_t *)name, len, self->err))
        return NULL;

    char *path = malloc (len + 1);
    assert (path);
    size_t out = 0;
    const char *part = name;
    while (*part) {
        size_t part_len = strcspn (part, "/");
        if (part_len == 2 && part[0] == '.' && part[1] == '.') {
            mc_error_set (self->err, "ZIP_UNSAFE_PATH", "entry '%s' has a '..' component", shown);
            free (path);
            return NULL;
        }
        if (part_len > NAME_MAX) {
            mc_error_set (self->err, "ZIP_UNSAFE_PATH", "entry '%s' has a component over %d bytes",
                          shown, NAME_MAX);
            free (path);
            return NULL;
        }
        if (part_len > 0 && !(part_len == 1 && part[0] == '.')) {
            if (out > 0)
                path[out++] = '/';
            memcpy (path + out, part, part_len);
            out += part_len;
        }
        part += part_len;
        if (*part == '/')
            part++;
    }
    path[out] = '\0';
    if (out == 0) {
        mc_error_set (self->err, "ZIP_UNSAFE_PATH", "entry '%s' names no file", shown);
        free (path);
        return NULL;
    }
    if (self->dest_len + 1 + out >= PATH_MAX) {
        mc_error_set (self->err, "ZIP_UNSAFE_PATH", "entry '%s' has too long a path", shown);
        free (path);
        return NULL;
    }
    return path;
}

//  Records path and its parents in the seen set. Refuses a path the archive already
//  named (a file and a directory of one name count as the same) and a path under
//  something the archive named as a file.
static int s_claim (s_extract_t *self, char *path, bool is_dir)
{
    char shown[128];
    for (char *slash = strchr (path, '/'); slash; slash = strchr (slash + 1, '/')) {
        *slash = '\0';
        uintptr_t kind = (uintptr_t)zhashx_lookup (self->seen, path);
        if (kind == SEEN_FILE) {
            s_shown (path, strlen (path), shown, sizeof shown);
            *slash = '/';
            return mc_error_set (self->err, "ZIP_DUPLICATE_ENTRY",
                                 "'%s' is both a file and a directory in the archive", shown);
        }
        if (kind == 0)
            zhashx_insert (self->seen, path, (void *)(uintptr_t)SEEN_PARENT);
        *slash = '/';
    }
    uintptr_t kind = (uintptr_t)zhashx_lookup (self->seen, path);
    if (kind == SEEN_FILE || kind == SEEN_DIR || (kind == SEEN_PARENT && !is_dir))
        return mc_error_set (self->err, "ZIP_DUPLICATE_ENTRY", "archive names '%s' twice",
                             s_shown (path, strlen (path), shown, sizeof shown));
    zhashx_update (self->seen, path, (void *)(uintptr_t)(is_dir ? SEEN_DIR : SEEN_FILE));
    return 0;
}

//  Opens directory name under parent_fd, creating it with mode 0755 if missing.
//  Never follows a symlink. Returns the fd or -1 with err set.
static int s_enter_dir (s_extract_t *self, int parent_fd, const char *name)
{
    bool created = mkdirat (parent_fd, name, 0755) == 0;
    if (!created && errno != EEXIST) {
        mc_error_set (self->err, "IO_ERROR", "cannot create directory: %s", strerror (errno));
        return -1;
    }
    int fd = openat (parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        mc_error_set (self->err, "IO_ERROR", "cannot open directory: %s", strerror (errno));
        return -1;
    }
    if (created && fchmod (fd, 0755) != 0) { // exact mode whatever the umask
        mc_error_set (self->err, "IO_ERROR", "cannot set directory mode: %s", strerror (errno));
        close (fd);
        return -1;
    }
    return fd;
}

//  Opens, creating as needed, the directory that holds path's last component, and
//  points *leaf at that component. Returns the fd or -1 with err set.
static int s_open_parent (s_extract_t *self, char *path, char **leaf)
{
    int dir_fd = fcntl (self->dest_fd, F_DUPFD_CLOEXEC, 0);
    if (dir_fd < 0) {
        mc_error_set (self->err, "IO_ERROR", "cannot open destination: %s", strerror (errno));
        return -1;
    }
    char *part = path;
    for (char *slash = strchr (part, '/'); slash; slash = strchr (part, '/')) {
        *slash = '\0';
        int next_fd = s_enter_dir (self, dir_fd, part);
        *slash = '/';
        close (dir_fd);
        if (next_fd < 0)
            return -1;
        dir_fd = next_fd;
        part = slash + 1;
    }
    *leaf = part;
    return dir_fd;
}

//  Writes all of len bytes to fd. Returns 0 or -1 with errno set.
static int s_write_all (int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t done = write (fd, data, len);
        if (done < 0 && errno == EINTR)
            continue;
        if (done < 0)
            return -1;
        data += done;
        len -= (size_t)done;
    }
    return 0;
}

//  Copies the current entry's data to fd (or, if fd is -1, requires that there is
//  none), enforcing the size and ratio limits on every chunk before it is written.
static int s_copy_data (s_extract_t *self, struct archive *archive, int fd, const char *path)
{
    const mc_zipx_limits_t *limits = self->limits;
    char shown[128];
    s_shown (path, strlen (path), shown, sizeof shown);
    uint64_t entry_bytes = 0;
    while (true) {
        la_ssize_t got = archive_read_data (archive, self->buffer, S_COPY_SIZE);
        if (got == 0)
            return 0;
        if (got < 0)
            return mc_error_set (self->err, "ZIP_CORRUPT", "entry '%s' is corrupt: %s", shown,
                                 s_archive_error (archive));
        if (fd < 0)
            return mc_error_set (self->err, "ZIP_INVALID", "directory entry '%s' carries data",
                                 shown);
        uint64_t chunk = (uint64_t)got;
        if (chunk > limits->max_entry_bytes - entry_bytes)
            return mc_error_set (self->err, "ZIP_TOO_LARGE",
                                 "entry '%s' expands to more than %llu bytes", shown,
                                 (unsigned long long)limits->max_entry_bytes);
        if (chunk > limits->max_total_bytes - self->total_bytes)
            return mc_error_set (self->err, "ZIP_TOO_LARGE",
                                 "archive expands to more than %llu bytes",
                                 (unsigned long long)limits->max_total_bytes);
        if (chunk > self->ratio_cap - self->total_bytes)
            return mc_error_set (self->err, "ZIP_BOMB",
                                 "archive expands to more than %llu times its size",
                                 (unsigned long long)limits->max_ratio);
        if (s_write_all (fd, self->buffer, (size_t)got) != 0)
            return mc_error_set (self->err, "IO_ERROR", "cannot write '%s': %s", shown,
                                 strerror (errno));
        entry_bytes += chunk;
        self->total_bytes += chunk;
    }
}

//  Creates the directory path (and its parents) and checks that it has no data.
static int s_extract_dir (s_extract_t *self, struct archive *archive, char *path)
{
    char *leaf;
    int parent_fd = s_open_parent (self, path, &leaf);
    if (parent_fd < 0)
        return -1;
    int fd = s_enter_dir (self, parent_fd, leaf);
    close (parent_fd);
    if (fd < 0)
        return -1;
    close (fd);
    return s_copy_data (self, archive, -1, path);
}

//  Creates regular file path (and its parents) with mode 0644, or 0755 when the
//  archive marks it executable, and writes its data.
static int s_extract_file (s_extract_t *self, struct archive *archive, struct archive_entry *entry,
                           char *path)
{
    char shown[128];
    s_shown (path, strlen (path), shown, sizeof shown);
    mode_t mode = (archive_entry_perm (entry) & 0111) ? 0755 : 0644;
    char *leaf;
    int parent_fd = s_open_parent (self, path, &leaf);
    if (parent_fd < 0)
        return -1;
    int fd = openat (parent_fd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    int open_errno = errno;
    close (parent_fd);
    if (fd < 0) {
        if (open_errno == EEXIST)
            return mc_error_set (self->err, "ZIP_DUPLICATE_ENTRY", "archive names '%s' twice",
                                 shown);
        return mc_error_set (self->err, "IO_ERROR", "cannot create '%s': %s", shown,
                             strerror (open_errno));
    }
    int rc = 0;
    if (fchmod (fd, mode) != 0) // exact mode whatever the umask
        rc = mc_error_set (self->err, "IO_ERROR", "cannot set mode of '%s': %s", shown,
                           strerror (errno));
    if (rc == 0)
        rc = s_copy_data (self, archive, fd, path);
    if (close (fd) != 0 && rc == 0)
        rc = mc_error_set (self->err, "IO_ERROR", "cannot write '%s': %s", shown, strerror (errno));
    return rc;
}

//  Checks one entry header from libarchive and extracts the entry.
static int s_extract_entry (s_extract_t *self, struct archive *archive, struct archive_entry *entry)
{
    char shown[128];
    if (++self->entries > self->limits->max_entries)
        return mc_error_set (self->err, "ZIP_TOO_MANY_ENTRIES", "archive has more than %zu entries",
                             self->limits->max_entries);
    const char *name = archive_entry_pathname (entry);
    if (!name)
        return mc_error_set (self->err, "ZIP_INVALID", "entry name cannot be decoded");
    s_shown (name, strlen (name), shown, sizeof shown);
    if (archive_entry_is_encrypted (entry) || archive_read_has_encrypted_entries (archive) > 0)
        return mc_error_set (self->err, "ZIP_ENCRYPTED", "entry '%s' is encrypted", shown);
    mode_t type = archive_entry_filetype (entry);
    if (archive_entry_hardlink (entry) || archive_entry_symlink (entry) ||
        (type != AE_IFREG && type != AE_IFDIR))
        return mc_error_set (self->err, "ZIP_UNSUPPORTED_ENTRY",
                             "entry '%s' is not a regular file or directory", shown);
    char *path = s_normalise (self, name);
    if (!path)
        return -1;
    int rc = s_claim (self, path, type == AE_IFDIR);
    if (rc == 0)
        rc = type == AE_IFDIR ? s_extract_dir (self, archive, path)
                              : s_extract_file (self, archive, entry, path);
    free (path);
    return rc;
}

//  Reads every entry with libarchive's seekable ZIP reader and extracts it.
static int s_extract_all (s_extract_t *self, int zip_fd)
{
    struct archive *archive = archive_read_new ();
    assert (archive);
    archive_read_support_format_zip_seekable (archive);
    int rc = 0;
    if (archive_read_open_fd (archive, zip_fd, S_COPY_SIZE) != ARCHIVE_OK)
        rc = mc_error_set (self->err, "ZIP_INVALID", "not a readable ZIP archive: %s",
                           s_archive_error (archive));
    while (rc == 0) {
        struct archive_entry *entry;
        int status = archive_read_next_header (archive, &entry);
        if (status == ARCHIVE_EOF)
            break;
        //  WARN here means the local header disagrees with the central directory, or
        //  a name that cannot be decoded: refused like any damage.
        if (status != ARCHIVE_OK)
            rc = mc_error_set (self->err, "ZIP_INVALID", "damaged ZIP entry header: %s",
                               s_archive_error (archive));
        else
            rc = s_extract_entry (self, archive, entry);
    }
    //  libarchive drops central records that share a local header; refuse those.
    if (rc == 0 && self->entries != self->expected_entries)
        rc = mc_error_set (self->err, "ZIP_INVALID",
                           "central directory lists %llu entries but %zu could be read",
                           (unsigned long long)self->expected_entries, self->entries);
    archive_read_free (archive);
    return rc;
}

//  nftw callback: removes one file or (empty, depth-first) directory.
static int s_remove_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove (path);
    return 0; // keep going; the caller checks the result
}

//  Removes the destination tree this extraction created.
static void s_remove_tree (const char *dest_dir)
{
    nftw (dest_dir, s_remove_one, 16, FTW_DEPTH | FTW_PHYS);
    struct stat st;
    if (lstat (dest_dir, &st) == 0)
        zsys_error ("zipx: could not remove %s after a failed extraction", dest_dir);
}

//  Extracts zip_path into a new dest_dir, or refuses and leaves nothing behind.
int mc_zipx_extract (const char *zip_path, const char *dest_dir, const mc_zipx_limits_t *limits,
                     mc_error_t *err)
{
    assert (zip_path);
    assert (dest_dir);
    assert (limits);

    int zip_fd = open (zip_path, O_RDONLY | O_CLOEXEC);
    if (zip_fd < 0)
        return mc_error_set (err, "IO_ERROR", "cannot open archive: %s", strerror (errno));
    struct stat st;
    if (fstat (zip_fd, &st) != 0 || !S_ISREG (st.st_mode)) {
        close (zip_fd);
        return mc_error_set (err, "ZIP_INVALID", "archive is not a regular file");
    }
    if (lstat (dest_dir, &(struct stat){0}) == 0 || errno != ENOENT) {
        close (zip_fd);
        return mc_error_set (err, "IO_ERROR", "destination %s already exists or is unusable",
                             dest_dir);
    }
    s_extract_t self = {
        .limits = limits,
        .err = err,
        .dest_fd = -1,
        .dest_len = strlen (dest_dir),
    };
    if (s_prescan (zip_fd, (uint64_t)st.st_size, limits, &self.expected_entries, err) != 0) {
        close (zip_fd);
        return -1;
    }
    if (mkdir (dest_dir, 0755) != 0) {
        int mkdir_errno = errno;
        close (zip_fd);
        return mc_error_set (err, "IO_ERROR", "cannot create %s: %s", dest_dir,
                             strerror (mkdir_errno));
    }
    //  From here on, every failure removes dest_dir.
    int rc = 0;
    self.dest_fd = open (dest_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (self.dest_fd < 0 || fchmod (self.dest_fd, 0755) != 0)
        rc = mc_error_set (err, "IO_ERROR", "cannot prepare %s: %s", dest_dir, strerror (errno));
    if (rc == 0) {
        uint64_t size = (uint64_t)st.st_size;
        self.ratio_cap = (limits->max_ratio && size > UINT64_MAX / limits->max_ratio)
                             ? UINT64_MAX
                             : size * limits->max_ratio;
        self.seen = zhashx_new ();
        assert (self.seen);
        self.buffer = malloc (S_COPY_SIZE);
        assert (self.buffer);
        //  Decode names as UTF-8 in this thread only, whatever the process locale.
        locale_t utf8 = newlocale (LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
        locale_t previous = utf8 ? uselocale (utf8) : (locale_t)0;
        rc = s_extract_all (&self, zip_fd);
        if (utf8) {
            uselocale (previous);
            freelocale (utf8);
        }
        free (self.buffer);
        zhashx_destroy (&self.seen);
    }
    if (self.dest_fd >= 0)
        close (self.dest_fd);
    close (zip_fd);
    if (rc != 0)
        s_remove_tree (dest_dir);
    return rc;
}
