/*  The token table the gateway checks on every request.

    DESIGN. The auth actor is the only writer: it owns the durable token records
    (LevelDB) and publishes each change here. Gateway worker threads, and the native
    transport, only read: lookup by sha256(token), then spend one rate-limit unit.
    This is the one piece of shared state between threads in modcore, and it is shared
    on purpose: a request/reply hop to the auth actor costs ~23 us (design.md: 43k vs
    60k req/s), the check here ~0.4 us, and it is on every request. Readers hold a
    read lock for the lookup only; the rate-limit bucket is a lock-free atomic, so two
    connections spending the same token are exact without serialising each other.
    Entries are found by hash, so the plaintext token never lives here. */
#ifndef MC_AUTHTAB_H
#define MC_AUTHTAB_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ratelimit.h"
#include "core/token.h"

typedef enum {
    MC_KIND_MODULE = 0, // a module's token (matches PrincipalKind in auth.proto)
    MC_KIND_ADMIN = 1,  // the operator
    MC_KIND_UI = 2,     // a short-lived UI token
} mc_kind_t;

typedef struct {
    char name[96];        // module name, "admin", or "ui:<module>:<id>"
    mc_kind_t kind;       // what kind of principal
    uint32_t permissions; // mc_perm_t bit set
    bool system;          // SYSTEM module: holds every permission
    int64_t expires_at;   // unix seconds; 0 = never
} mc_principal_t;

typedef enum {
    MC_AUTH_OK = 0,       // allowed
    MC_AUTH_UNKNOWN,      // no such token (or revoked, or expired) -> 401
    MC_AUTH_RATE_LIMITED, // over the rate -> 429
    MC_AUTH_FORBIDDEN,    // permission not granted -> 403
} mc_auth_result_t;

typedef struct mc_authtab_t mc_authtab_t;

//  A table whose buckets allow rate units per second with the given burst.
mc_authtab_t *mc_authtab_new (uint32_t rate, uint32_t burst);

//  Frees the table; sets *self_p to NULL; safe on NULL.
void mc_authtab_destroy (mc_authtab_t **self_p);

//  Adds or replaces the entry for a token hash, with a full bucket.
void mc_authtab_put (mc_authtab_t *self, const uint8_t hash[MC_HASH_LEN],
                     const mc_principal_t *principal);

//  Removes the entry for a token hash; returns true if there was one.
bool mc_authtab_remove (mc_authtab_t *self, const uint8_t hash[MC_HASH_LEN]);

//  Checks a bearer token: known, then one rate-limit unit at now_ns, then `permission`
//  (0 = any valid token). Fills *principal (if not NULL) when the token is known; fills
//  *retry_after_ns when rate limited and *remaining when allowed.
mc_auth_result_t mc_authtab_check (mc_authtab_t *self, const char *token, size_t len,
                                   uint32_t permission, uint64_t now_ns, int64_t now_unix,
                                   mc_principal_t *principal, uint64_t *retry_after_ns,
                                   uint32_t *remaining);

//  The same, by the token's hash (a native session hashes its token once).
mc_auth_result_t mc_authtab_check_hash (mc_authtab_t *self, const uint8_t hash[MC_HASH_LEN],
                                        uint32_t permission, uint64_t now_ns, int64_t now_unix,
                                        mc_principal_t *principal, uint64_t *retry_after_ns,
                                        uint32_t *remaining);

//  Looks a token up without spending a rate-limit unit: true if it is known (and not
//  expired), filling *principal if not NULL.
bool mc_authtab_lookup (mc_authtab_t *self, const char *token, size_t len, int64_t now_unix,
                        mc_principal_t *principal);

//  The same, by the token's hash (a holder that hashed the token once, such as a native
//  session, skips the sha256 on every check).
bool mc_authtab_lookup_hash (mc_authtab_t *self, const uint8_t hash[MC_HASH_LEN], int64_t now_unix,
                             mc_principal_t *principal);

//  The limit the table applies (for RateLimit-Policy headers).
const mc_ratelimit_t *mc_authtab_limit (mc_authtab_t *self);

//  Number of entries.
size_t mc_authtab_size (mc_authtab_t *self);

#endif
