#include "core/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int mc_fs_mkdirs (const char *path, mode_t mode)
{
    char buf[4096];
    if (snprintf (buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir (buf, mode) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    if (mkdir (buf, mode) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat (buf, &st) != 0 || !S_ISDIR (st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static int s_remove (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)remove (path);
    return 0;
}

int mc_fs_rmtree (const char *path)
{
    nftw (path, s_remove, 64, FTW_DEPTH | FTW_PHYS);
    return mc_fs_exists (path) ? -1 : 0;
}

int mc_fs_sync_dir (const char *path)
{
    int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    close (fd);
    return rc;
}

int mc_fs_write_atomic (const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[4096];
    if (snprintf (tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkstemp (tmp);
    if (fd < 0)
        return -1;
    const char *p = data;
    size_t left = len;
    int rc = fchmod (fd, mode);
    while (rc == 0 && left > 0) {
        ssize_t n = write (fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = -1;
        else {
            p += n;
            left -= (size_t)n;
        }
    }
    if (rc == 0)
        rc = fsync (fd);
    int saved = errno;
    close (fd);
    if (rc == 0)
        rc = rename (tmp, path);
    if (rc != 0) {
        saved = errno;
        unlink (tmp);
        errno = saved;
        return -1;
    }
    char dir[4096];
    snprintf (dir, sizeof dir, "%s", path);
    return mc_fs_sync_dir (dirname (dir));
}

char *mc_fs_read (const char *path, size_t max, size_t *len)
{
    int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
        close (fd);
        errno = EINVAL;
        return NULL;
    }
    if ((size_t)st.st_size > max) {
        close (fd);
        errno = EFBIG;
        return NULL;
    }
    char *buf = malloc ((size_t)st.st_size + 1);
    size_t have = 0;
    while (buf && have < (size_t)st.st_size) {
        ssize_t n = read (fd, buf + have, (size_t)st.st_size - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close (fd);
    if (!buf)
        return NULL;
    buf[have] = 0;
    if (len)
        *len = have;
    return buf;
}

bool mc_fs_exists (const char *path)
{
    struct stat st;
    return lstat (path, &st) == 0;
}

char *mc_fs_tail (const char *path, size_t max)
{
    char *out = calloc (1, max + 1);
    int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (!out || fd < 0) {
        if (fd >= 0)
            close (fd);
        return out ? out : strdup ("");
    }
    off_t end = lseek (fd, 0, SEEK_END);
    off_t start = end > (off_t)max ? end - (off_t)max : 0;
    ssize_t n = pread (fd, out, max, start);
    close (fd);
    out[n > 0 ? n : 0] = 0;
    return out;
}

int64_t mc_time_unix (void)
{
    return (int64_t)time (NULL);
}

void mc_time_iso (int64_t unix_seconds, char *buf, size_t size)
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    gmtime_r (&t, &tm);
    strftime (buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int64_t mc_time_unix_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mc_time_iso_ms (int64_t unix_ms, char *buf, size_t size)
{
    char secs[24];
    mc_time_iso (unix_ms / 1000, secs, sizeof secs);
    secs[strlen (secs) - 1] = 0; // drop the Z
    snprintf (buf, size, "%s.%03dZ", secs, (int)(unix_ms % 1000));
}
