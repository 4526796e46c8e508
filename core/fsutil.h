/*  File-system helpers: directories, whole-file reads, durable atomic writes, times. */
#ifndef MC_FSUTIL_H
#define MC_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

//  mkdir -p with mode for every created component. Returns 0 or -1 (errno set).
int mc_fs_mkdirs (const char *path, mode_t mode);

//  Removes a file or a directory tree (links are removed, never followed). Returns 0 if
//  path no longer exists afterwards, -1 otherwise.
int mc_fs_rmtree (const char *path);

//  Writes data to path durably and atomically: temp file in the same dir with mode,
//  fsync, rename over path, fsync of the dir. Returns 0 or -1 (errno set).
int mc_fs_write_atomic (const char *path, const void *data, size_t len, mode_t mode);

//  Reads a whole regular file (links not followed) of at most max bytes. Returns a
//  malloc'd, NUL-terminated buffer (caller frees) and its length, or NULL (errno set;
//  EFBIG when larger than max).
char *mc_fs_read (const char *path, size_t max, size_t *len);

//  fsync of a directory, so a rename or unlink in it is durable. Returns 0 or -1.
int mc_fs_sync_dir (const char *path);

//  True if path exists (links not followed).
bool mc_fs_exists (const char *path);

//  The last up to max bytes of a file as a malloc'd string (never NULL).
char *mc_fs_tail (const char *path, size_t max);

//  Wall-clock unix seconds.
int64_t mc_time_unix (void);

//  Wall-clock unix milliseconds.
int64_t mc_time_unix_ms (void);

//  ISO-8601 UTC with milliseconds and Z ("2026-11-23T10:00:00.123Z"); buf >= 25 bytes.
void mc_time_iso_ms (int64_t unix_ms, char *buf, size_t size);

//  ISO-8601 UTC with Z of unix seconds into buf (at least 21 bytes).
void mc_time_iso (int64_t unix_seconds, char *buf, size_t size);

#endif
