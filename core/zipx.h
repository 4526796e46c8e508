/*  Safe ZIP extraction (libarchive). Module archives are untrusted input: nothing in
    them may write outside the destination, and no archive may exhaust the disk. */
#ifndef MC_ZIPX_H
#define MC_ZIPX_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    size_t max_entries;       // most entries (files + dirs) accepted; default 4096
    uint64_t max_total_bytes; // most bytes written in all; default 256 MiB
    uint64_t max_entry_bytes; // most bytes written for one entry; default 64 MiB
    uint64_t max_ratio;       // most bytes written per compressed byte in the archive; default 200
} mc_zipx_limits_t;

//  Fills limits with the defaults above.
void mc_zipx_limits_default (mc_zipx_limits_t *limits);

//  Extracts the ZIP archive at zip_path into dest_dir, which must not exist yet
//  (it is created, mode 0755; files get 0644, or 0755 when the archive marks them
//  executable). Refuses: paths with "..", absolute paths, symlinks, hard links and any
//  other non-regular, non-directory entry, encrypted entries, duplicate names, more
//  than the limits allow (counting bytes actually written, never declared sizes),
//  bad CRCs and truncated or non-ZIP input. Returns 0, or -1 with err set and
//  dest_dir removed: on failure nothing is left behind.
//  Error codes: ZIP_INVALID, ZIP_UNSAFE_PATH, ZIP_UNSUPPORTED_ENTRY, ZIP_ENCRYPTED,
//  ZIP_DUPLICATE_ENTRY, ZIP_TOO_LARGE, ZIP_TOO_MANY_ENTRIES, ZIP_BOMB, ZIP_CORRUPT, IO_ERROR.
int mc_zipx_extract (const char *zip_path, const char *dest_dir, const mc_zipx_limits_t *limits,
                     mc_error_t *err);

#endif
