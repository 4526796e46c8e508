/*  What every actor is started with: read-only config, the store (LevelDB is
    thread-safe; each actor keeps to its own key prefix), the published token table
    (written by the auth actor only) and the published device view (written by the
    devices actor only). Owned by main, outlives every actor. */
#ifndef MC_CONTEXT_H
#define MC_CONTEXT_H

#include <stdint.h>

#include "core/authtab.h"
#include "core/config.h"
#include "core/seal.h"
#include "core/snapshot.h"
#include "core/store.h"

typedef struct {
    const mc_config_t *config;         // read-only after start
    mc_store_t *store;                 // <data>/db
    mc_authtab_t *authtab;             // written by auth, read by the gateway
    mc_slot_t *devices_view;           // published by devices, read by the gateway
    uint8_t seal_key[MC_SEAL_KEY_LEN]; // <data>/secure/master.key
    int gateway_port;                  // the port the gateway listens on (set before BOOT)
    int64_t started_at;                // unix seconds
    uint64_t started_mono_ns;          // for uptime
} mc_context_t;

#endif
