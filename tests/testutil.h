/*  Helpers shared by the unit suites: temporary directories and files. */
#ifndef MC_TESTUTIL_H
#define MC_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>

//  Creates a fresh empty directory under $TMPDIR (or /tmp); returns its path (caller frees).
char *mc_test_tmpdir (const char *tag);

//  Removes a directory tree; safe on NULL.
void mc_test_rmtree (const char *path);

//  Writes len bytes to path (creating or truncating); returns 0 or -1.
int mc_test_write_file (const char *path, const void *data, size_t len);

//  True if path exists (any type, links not followed).
bool mc_test_exists (const char *path);

//  Number of entries in a directory, or -1 if it cannot be read.
int mc_test_count_entries (const char *dir);

#endif
