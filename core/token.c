#include "core/token.h"

#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

void mc_token_generate (char *out)
{
    uint8_t raw[48];
    randombytes_buf (raw, sizeof raw);
    sodium_bin2base64 (out, MC_TOKEN_LEN + 1, raw, sizeof raw,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero (raw, sizeof raw);
    assert (strlen (out) == MC_TOKEN_LEN);
}

void mc_secret_generate (char *out)
{
    uint8_t raw[32];
    randombytes_buf (raw, sizeof raw);
    sodium_bin2hex (out, MC_SECRET_LEN + 1, raw, sizeof raw);
    sodium_memzero (raw, sizeof raw);
}

void mc_token_hash (const char *token, size_t len, uint8_t hash[MC_HASH_LEN])
{
    crypto_hash_sha256 (hash, (const unsigned char *)token, len);
}

void mc_hex_encode (const uint8_t *bytes, size_t len, char *out)
{
    sodium_bin2hex (out, 2 * len + 1, bytes, len);
}

int mc_token_well_formed (const char *s, size_t len)
{
    if (len != MC_TOKEN_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

void mc_uuid_generate (char *out)
{
    uint8_t b[16];
    randombytes_buf (b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf (out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
              b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
              b[14], b[15]);
}
