/*  Unit suite for core/token: the shape and randomness of tokens and webhook secrets,
    the sha256 under which tokens are stored, hex encoding and the shape check. */
#include "core/token.h"

#include <CUnit/CUnit.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>

//  True if every one of the len chars of s is in the base64url alphabet.
static bool s_base64url (const char *s, size_t len)
{
    static const char *alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i < len; i++)
        if (!s[i] || !strchr (alphabet, s[i]))
            return false;
    return true;
}

static void test_token_generate (void)
{
    CU_ASSERT_FATAL (sodium_init () >= 0);
    char first[MC_TOKEN_LEN + 1], second[MC_TOKEN_LEN + 1];
    memset (first, 'x', sizeof first);
    mc_token_generate (first);
    mc_token_generate (second);
    CU_ASSERT_EQUAL (strlen (first), MC_TOKEN_LEN);
    CU_ASSERT_EQUAL (strlen (second), MC_TOKEN_LEN);
    CU_ASSERT (s_base64url (first, MC_TOKEN_LEN));
    CU_ASSERT (s_base64url (second, MC_TOKEN_LEN));
    CU_ASSERT (strcmp (first, second) != 0);
    //  48 random bytes, no padding: exactly 48 bytes come back.
    uint8_t raw[64];
    size_t raw_len = 0;
    CU_ASSERT_EQUAL (sodium_base642bin (raw, sizeof raw, first, MC_TOKEN_LEN, NULL, &raw_len, NULL,
                                        sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    CU_ASSERT_EQUAL (raw_len, 48);
}

static void test_token_many_distinct (void)
{
    //  A weak generator (a constant, a short period) shows up in a few hundred draws.
    enum { COUNT = 256 };
    static char tokens[COUNT][MC_TOKEN_LEN + 1];
    for (int i = 0; i < COUNT; i++)
        mc_token_generate (tokens[i]);
    int duplicates = 0;
    for (int i = 0; i < COUNT; i++)
        for (int j = i + 1; j < COUNT; j++)
            duplicates += strcmp (tokens[i], tokens[j]) == 0;
    CU_ASSERT_EQUAL (duplicates, 0);
}

static void test_secret_generate (void)
{
    char first[MC_SECRET_LEN + 1], second[MC_SECRET_LEN + 1];
    mc_secret_generate (first);
    mc_secret_generate (second);
    CU_ASSERT_EQUAL (strlen (first), MC_SECRET_LEN);
    CU_ASSERT_EQUAL (strspn (first, "0123456789abcdef"), MC_SECRET_LEN);
    CU_ASSERT_EQUAL (strspn (second, "0123456789abcdef"), MC_SECRET_LEN);
    CU_ASSERT (strcmp (first, second) != 0);
}

static void test_token_hash_vector (void)
{
    uint8_t hash[MC_HASH_LEN];
    char hex[MC_HASH_HEX_LEN + 1];
    //  FIPS 180-2 test vectors.
    mc_token_hash ("abc", 3, hash);
    mc_hex_encode (hash, MC_HASH_LEN, hex);
    CU_ASSERT_STRING_EQUAL (hex,
                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    mc_token_hash ("", 0, hash);
    mc_hex_encode (hash, MC_HASH_LEN, hex);
    CU_ASSERT_STRING_EQUAL (hex,
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    //  Only len bytes count, not the rest of the string.
    mc_token_hash ("abcdef", 3, hash);
    mc_hex_encode (hash, MC_HASH_LEN, hex);
    CU_ASSERT_STRING_EQUAL (hex,
                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_hex_encode (void)
{
    const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[2 * sizeof bytes + 1];
    memset (out, 'x', sizeof out);
    mc_hex_encode (bytes, sizeof bytes, out);
    CU_ASSERT_STRING_EQUAL (out, "00017f80abff");
    char empty[1] = {'x'};
    mc_hex_encode (bytes, 0, empty);
    CU_ASSERT_STRING_EQUAL (empty, "");
}

static void test_token_well_formed (void)
{
    char token[MC_TOKEN_LEN + 2];
    mc_token_generate (token);
    CU_ASSERT_TRUE (mc_token_well_formed (token, MC_TOKEN_LEN));
    //  Every char of the alphabet is accepted.
    const char *all = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    CU_ASSERT_TRUE (mc_token_well_formed (all, MC_TOKEN_LEN));
    //  Wrong length, either way, and empty.
    CU_ASSERT_FALSE (mc_token_well_formed (token, MC_TOKEN_LEN - 1));
    strcat (token, "A");
    CU_ASSERT_FALSE (mc_token_well_formed (token, MC_TOKEN_LEN + 1));
    CU_ASSERT_FALSE (mc_token_well_formed ("", 0));
    //  One bad char anywhere: standard base64's '+' '/' and '=', space, NUL, high bytes.
    const char bad[] = {'+', '/', '=', ' ', '.', '\0', '\n', (char)0xc3};
    for (size_t i = 0; i < sizeof bad; i++)
        for (size_t at = 0; at < MC_TOKEN_LEN; at += 21) {
            char copy[MC_TOKEN_LEN + 1];
            memcpy (copy, all, sizeof copy);
            copy[at] = bad[i];
            CU_ASSERT_FALSE (mc_token_well_formed (copy, MC_TOKEN_LEN));
        }
}

void mc_test_token (void)
{
    CU_pSuite suite = CU_add_suite ("token", NULL, NULL);
    CU_add_test (suite, "token generate", test_token_generate);
    CU_add_test (suite, "tokens distinct", test_token_many_distinct);
    CU_add_test (suite, "secret generate", test_secret_generate);
    CU_add_test (suite, "hash vector", test_token_hash_vector);
    CU_add_test (suite, "hex encode", test_hex_encode);
    CU_add_test (suite, "well formed", test_token_well_formed);
}
