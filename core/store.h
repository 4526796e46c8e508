/*  The durable store: one LevelDB per data dir, keys prefixed by the actor that owns
    them ("mod/" registry, "tok/" and "tokp/" auth). LevelDB is safe to call from
    several threads; each actor touches only its own prefix. A write that acknowledges
    something to a caller uses sync = true (or a synced batch). */
#ifndef MC_STORE_H
#define MC_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct mc_store_t mc_store_t;
typedef struct mc_store_batch_t mc_store_batch_t;

//  Opens (creating if missing) the LevelDB at path. On failure returns NULL with err
//  set: STORE_CORRUPT when LevelDB reports corruption, STORE_LOCKED when another process
//  holds it, STORE_OPEN otherwise.
mc_store_t *mc_store_open (const char *path, mc_error_t *err);

//  Closes the store; sets *self_p to NULL; safe on NULL.
void mc_store_close (mc_store_t **self_p);

//  Writes key = value; durable before return when sync. Returns 0 or -1 (logged).
int mc_store_put (mc_store_t *self, const char *key, const void *value, size_t len, bool sync);

//  Returns a malloc'd copy of the value (caller frees) and its length, or NULL if absent
//  or on error.
void *mc_store_get (mc_store_t *self, const char *key, size_t *len);

//  Deletes key; durable before return when sync. Returns 0 or -1.
int mc_store_delete (mc_store_t *self, const char *key, bool sync);

//  Calls fn for each key starting with prefix, in key order, until fn returns non-zero
//  (which is then returned). Returns 0 after the last key.
typedef int (mc_store_scan_fn) (const char *key, size_t key_len, const void *value,
                                size_t value_len, void *arg);
int mc_store_scan (mc_store_t *self, const char *prefix, mc_store_scan_fn *fn, void *arg);

//  As mc_store_scan, but starts strictly after the key `after` (NULL or "": at the first
//  key of prefix): one seek, for paging.
int mc_store_scan_after (mc_store_t *self, const char *prefix, const char *after,
                         mc_store_scan_fn *fn, void *arg);

//  Atomic groups of writes.
mc_store_batch_t *mc_store_batch_new (void);
void mc_store_batch_put (mc_store_batch_t *batch, const char *key, const void *value, size_t len);
void mc_store_batch_delete (mc_store_batch_t *batch, const char *key);
//  Applies and frees the batch (sets *batch_p to NULL). Returns 0 or -1.
int mc_store_batch_write (mc_store_t *self, mc_store_batch_t **batch_p, bool sync);
//  Applies the batch and empties it for reuse: it keeps the memory it grew to, so a
//  batch written again and again does not grow its buffer anew each time. The batch is
//  emptied also when the write fails. Returns 0 or -1.
int mc_store_batch_commit (mc_store_t *self, mc_store_batch_t *batch, bool sync);
void mc_store_batch_destroy (mc_store_batch_t **batch_p);

#endif
