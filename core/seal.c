#include "core/seal.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"

#define NPUB   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

int mc_seal_key_load (const char *path, uint8_t key[MC_SEAL_KEY_LEN], mc_error_t *err)
{
    size_t len = 0;
    char *raw = mc_fs_read (path, 4096, &len);
    if (raw) {
        int ok = len == MC_SEAL_KEY_LEN;
        if (ok)
            memcpy (key, raw, MC_SEAL_KEY_LEN);
        sodium_memzero (raw, len);
        free (raw);
        return ok ? 0
                  : mc_error_set (err, "KEY_INVALID", "%s is not a %d-byte key", path,
                                  MC_SEAL_KEY_LEN);
    }
    if (errno != ENOENT)
        return mc_error_set (err, "KEY_UNREADABLE", "cannot read %s: %s", path, strerror (errno));
    crypto_aead_xchacha20poly1305_ietf_keygen (key);
    if (mc_fs_write_atomic (path, key, MC_SEAL_KEY_LEN, 0600) != 0)
        return mc_error_set (err, "KEY_UNWRITABLE", "cannot write %s: %s", path, strerror (errno));
    return 0;
}

int mc_seal_write (const uint8_t key[MC_SEAL_KEY_LEN], const char *path, const void *plain,
                   size_t len)
{
    size_t total = NPUB + len + ABYTES;
    uint8_t *box = malloc (total);
    if (!box)
        return -1;
    randombytes_buf (box, NPUB);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt (box + NPUB, &clen, plain, len, NULL, 0, NULL, box,
                                                key);
    int rc = mc_fs_write_atomic (path, box, NPUB + (size_t)clen, 0600);
    free (box);
    return rc;
}

char *mc_seal_read (const uint8_t key[MC_SEAL_KEY_LEN], const char *path, size_t *len)
{
    size_t blen = 0;
    char *box = mc_fs_read (path, 1 << 20, &blen);
    if (!box)
        return NULL;
    if (blen < NPUB + ABYTES) {
        free (box);
        return NULL;
    }
    char *plain = malloc (blen - NPUB - ABYTES + 1);
    unsigned long long plen = 0;
    if (!plain || crypto_aead_xchacha20poly1305_ietf_decrypt ((uint8_t *)plain, &plen, NULL,
                                                              (uint8_t *)box + NPUB, blen - NPUB,
                                                              NULL, 0, (uint8_t *)box, key) != 0) {
        free (plain);
        free (box);
        return NULL;
    }
    free (box);
    plain[plen] = 0;
    if (len)
        *len = (size_t)plen;
    return plain;
}
