/*  Secrets at rest under <data>/secure/: XChaCha20-Poly1305 (libsodium) with one
    master key created on first start (<data>/secure/master.key, 0600). Used for what
    the core must keep in plaintext form to relaunch a module (its token and webhook
    secret) while only the token's hash is used for lookups. */
#ifndef MC_SEAL_H
#define MC_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define MC_SEAL_KEY_LEN 32

//  Loads the key at path, creating it (0600) if missing. Returns 0 or -1 with err set.
int mc_seal_key_load (const char *path, uint8_t key[MC_SEAL_KEY_LEN], mc_error_t *err);

//  Encrypts plain and writes it durably to path (0600). Returns 0 or -1.
int mc_seal_write (const uint8_t key[MC_SEAL_KEY_LEN], const char *path, const void *plain,
                   size_t len);

//  Reads and decrypts path. Returns malloc'd NUL-terminated plaintext (caller wipes and
//  frees) and its length, or NULL if missing, tampered with or unreadable.
char *mc_seal_read (const uint8_t key[MC_SEAL_KEY_LEN], const char *path, size_t *len);

#endif
