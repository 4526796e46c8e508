/*  Secrets a module is given: its API token and its webhook secret, and the one-way
    hash under which a token is stored and looked up. */
#ifndef MC_TOKEN_H
#define MC_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define MC_TOKEN_LEN    64 // 48 random bytes as base64url without padding
#define MC_SECRET_LEN   64 // 32 random bytes as lowercase hex
#define MC_HASH_LEN     32 // sha256
#define MC_HASH_HEX_LEN 64

//  Writes a fresh token (64 base64url chars + NUL) into out; out holds MC_TOKEN_LEN + 1.
void mc_token_generate (char *out);

//  Writes a fresh webhook secret (64 lowercase hex chars + NUL); out holds MC_SECRET_LEN + 1.
void mc_secret_generate (char *out);

//  sha256 of the token's bytes.
void mc_token_hash (const char *token, size_t len, uint8_t hash[MC_HASH_LEN]);

//  Lowercase hex of len bytes into out (2*len + 1 chars).
void mc_hex_encode (const uint8_t *bytes, size_t len, char *out);

//  Writes a random (version 4) UUID, 36 chars + NUL, into out.
void mc_uuid_generate (char *out);

//  True if s has the shape of a module token (64 base64url chars).
int mc_token_well_formed (const char *s, size_t len);

#endif
