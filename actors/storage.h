/*  storage: one key-value database per module (blvm's per-module database), a LevelDB
    at <data>/modules/<name>/db/ opened by the core only, with per-module quotas.
    Bound at inproc://modcore.storage; args: mc_context_t *. */
#ifndef MC_STORAGE_H
#define MC_STORAGE_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

#define MC_STORAGE_MAX_KEY    256     // bytes of a key
#define MC_STORAGE_MAX_VALUE  65536   // bytes of a value, as compact JSON
#define MC_STORAGE_MAX_LIST   1000    // items of one list page
#define MC_STORAGE_MAX_BATCH  1000    // puts + deletes of one batch
#define MC_STORAGE_DEF_LIST   100     // items of a list page when no limit is given
#define MC_STORAGE_PAGE_BYTES 4194304 // a list page stops after about this many bytes

void mc_storage_actor (zsock_t *pipe, void *args);

//  True if key (len bytes) is a valid storage key: 1..256 bytes of printable ASCII
//  (0x20..0x7e), so no control characters and no NUL.
bool mc_storage_key_valid (const char *key, size_t len);

#endif
