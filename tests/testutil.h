/*  Helpers shared by the unit suites: temporary directories and files, and one real
    actor over a store of its own. */
#ifndef MC_TESTUTIL_H
#define MC_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <czmq.h>

#include "core/context.h"

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

//  Opens (creating) the store <dir>/db; fails the test if it cannot.
mc_store_t *mc_test_store_open (const char *dir);

//  One actor run by a suite: its context, the actor, and a client socket to it.
typedef struct {
    mc_context_t ctx; // set what the actor needs before mc_test_actor_start
    zactor_t *actor;
    zsock_t *client;
} mc_test_actor_t;

//  Opens <dir>/db as ctx.store, starts the actor `name` running fn, connects a client.
void mc_test_actor_start (mc_test_actor_t *self, const char *dir, const char *name, zactor_fn *fn);

//  Stops the actor and closes its client and store.
void mc_test_actor_stop (mc_test_actor_t *self);

#endif
