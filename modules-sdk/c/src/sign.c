/*  X-Selena-Signature: "sha256=" + hex HMAC-SHA256(key = the webhook secret's ASCII
    characters, msg = the exact body bytes). The core signs webhook deliveries and CLI
    invocations with it; the module checks it in constant time. */
#include <sodium.h>
#include <string.h>

#include "internal.h"

static void s_mac (const char *secret, const void *body, size_t size,
                   uint8_t mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init (&state, (const unsigned char *)secret, strlen (secret));
    crypto_auth_hmacsha256_update (&state, body, size);
    crypto_auth_hmacsha256_final (&state, mac);
}

void mc_signature (const char *secret, const void *body, size_t size, char out[72])
{
    assert (secret && out);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    s_mac (secret, body, size, mac);
    memcpy (out, "sha256=", 7);
    sodium_bin2hex (out + 7, 65, mac, sizeof mac);
}

bool mc_signature_valid (const char *secret, const void *body, size_t size, const char *header)
{
    if (!secret || !*secret || !header || strncmp (header, "sha256=", 7) != 0)
        return false;
    const char *hex = header + 7;
    size_t hex_len = strlen (hex);
    while (hex_len > 0 && (hex[hex_len - 1] == ' ' || hex[hex_len - 1] == '\t'))
        hex_len--;
    uint8_t given[crypto_auth_hmacsha256_BYTES];
    size_t given_len = 0;
    const char *end = NULL;
    if (hex_len != 2 * sizeof given ||
        sodium_hex2bin (given, sizeof given, hex, hex_len, NULL, &given_len, &end) != 0 ||
        given_len != sizeof given)
        return false;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    s_mac (secret, body, size, mac);
    return sodium_memcmp (mac, given, sizeof mac) == 0;
}
