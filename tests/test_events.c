/*  Unit suite for the event side's pure helpers: event type and pattern rules
    (actors/eventbus.h), webhook signatures checked against openssl run as a separate
    program, the Standard Webhooks secret, and the retry backoff schedule
    (actors/webhook.h). */
#include "actors/eventbus.h"
#include "actors/webhook.h"

#include <CUnit/CUnit.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

//  --- event types and patterns -----------------------------------------------------------

static void test_type_valid (void)
{
    static const char *const good[] = {
        "a", "test",  "test.n", "device.state_changed", "a.b.c.d", "x-y_z.0-9",        "0", "_",
        "-", "a1.b2", "a._.-",  "core.oauth.completed", "a-b",     "webhook.exhausted"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CU_ASSERT_TRUE (mc_event_type_valid (good[i]));

    static const char *const bad[] = {"",     ".",    "a.",  ".a",     "a..b", "A",   "Test.n",
                                      "a b",  " a",   "a ",  "a.*",    "*",    "a/b", "a:b",
                                      "a\tb", "a\nb", "ä",   "a.b.",   "..",   "a,b", "a+b",
                                      "é.x",  "a.B",  "a..", "a.b..c", "a=b",  "a\"b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_FALSE (mc_event_type_valid (bad[i]));
    CU_ASSERT_FALSE (mc_event_type_valid (NULL));

    //  Length: 1..128.
    char type[256];
    memset (type, 'a', sizeof type);
    type[128] = 0;
    CU_ASSERT_TRUE (mc_event_type_valid (type));
    type[128] = 'a';
    type[129] = 0;
    CU_ASSERT_FALSE (mc_event_type_valid (type));
    type[200] = 0;
    memset (type, 'a', 200);
    CU_ASSERT_FALSE (mc_event_type_valid (type));
    //  128 with dots in between is fine too.
    for (int i = 1; i < 128; i += 2)
        type[i] = '.';
    type[127] = 'a';
    type[128] = 0;
    CU_ASSERT_TRUE (mc_event_type_valid (type));
    type[127] = '.';
    CU_ASSERT_FALSE (mc_event_type_valid (type));
}

static void test_pattern_valid (void)
{
    static const char *const good[] = {
        "*",        "a",     "a.*",      "test.*", "device.*",
        "a.b.c.*",  "a.b",   "x-y_z.*",  "0.*",    "device.state_changed",
        "module.*", "a-b.*", "webhook.*"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CU_ASSERT_TRUE (mc_event_pattern_valid (good[i]));

    static const char *const bad[] = {"",      ".*", "*.*", "**",   "a*",   "a.**", "*.a",
                                      "a.*.b", ".",  "a.",  "a..*", "A.*",  "a .*", "a.b*",
                                      "*a",    " *", "* ",  "a..b", "a./*", "..*",  ".a.*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_FALSE (mc_event_pattern_valid (bad[i]));
    CU_ASSERT_FALSE (mc_event_pattern_valid (NULL));

    //  The prefix of "prefix.*" follows the type rules, length included.
    char pattern[256];
    memset (pattern, 'a', sizeof pattern);
    memcpy (pattern + 128, ".*", 3);
    CU_ASSERT_TRUE (mc_event_pattern_valid (pattern));
    memset (pattern, 'a', sizeof pattern);
    memcpy (pattern + 129, ".*", 3);
    CU_ASSERT_FALSE (mc_event_pattern_valid (pattern));
    memset (pattern, 'a', sizeof pattern);
    pattern[200] = 0;
    CU_ASSERT_FALSE (mc_event_pattern_valid (pattern));
}

static void test_pattern_match (void)
{
    //  "*" matches everything.
    static const char *const types[] = {"a", "test.n", "device.state_changed", "core.x.y", "z-9"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        CU_ASSERT_TRUE (mc_event_pattern_match ("*", types[i]));

    static const struct {
        const char *pattern, *type;
        bool match;
    } cases[] = {
        {"device.*", "device.state_changed", true},
        {"device.*", "device.registered", true},
        {"device.*", "device.removed", true},
        {"device.*", "device", false}, // "a.*" does not match "a" itself
        {"a.*", "a", false},
        {"a.*", "a.b", true},
        {"a.*", "a.b.c", true}, // any type below the prefix
        {"a.*", "ab", false},
        {"a.*", "ab.c", false},
        {"a.*", "b.a", false},
        {"a.*", "b.a.c", false},
        {"a.b.*", "a.b.c", true},
        {"a.b.*", "a.b", false},
        {"a.b.*", "a.bc.d", false},
        {"a.b.*", "a.c.d", false},
        {"a.b.*", "a", false},
        {"test.*", "test.n", true},
        {"test.*", "tests.n", false},
        {"test.*", "test", false},
        {"test.*", "other.test.n", false},
        {"device.state_changed", "device.state_changed", true}, // exact
        {"device.state_changed", "device.state_changed.x", false},
        {"device.state_changed", "device.state", false},
        {"device.state_changed", "device", false},
        {"a", "a", true},
        {"a", "a.b", false},
        {"a", "b", false},
        {"a.b", "a", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = mc_event_pattern_match (cases[i].pattern, cases[i].type);
        if (got != cases[i].match)
            fprintf (stderr, "\n  pattern '%s' type '%s': got %d\n", cases[i].pattern,
                     cases[i].type, got);
        CU_ASSERT_EQUAL (got, cases[i].match);
    }
}

static void test_type_reserved (void)
{
    static const char *const reserved[] = {"core.x",
                                           "core.oauth.completed",
                                           "module.loaded",
                                           "module.unloaded",
                                           "device.state_changed",
                                           "device.x",
                                           "webhook.exhausted",
                                           "webhook.x.y"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        CU_ASSERT_TRUE (mc_event_type_reserved (reserved[i]));

    static const char *const open[] = {
        "test.n",     "corex.y", "cores.x",   "modules.x", "devices.x", "webhooks.x", "my.core.x",
        "x.device.y", "a",       "test.core", "mycore.x",  "core-x.y",  "core_x.y"};
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++)
        CU_ASSERT_FALSE (mc_event_type_reserved (open[i]));

    //  Reserved is exactly "matched by core.*, module.*, device.* or webhook.*".
    static const char *const types[] = {"core",       "core.a",   "module",   "module.b",
                                        "device",     "device.c", "webhook",  "webhook.d",
                                        "coremodule", "a.core",   "device-x", "test.n"};
    static const char *const patterns[] = {"core.*", "module.*", "device.*", "webhook.*"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bool matched = false;
        for (size_t p = 0; p < 4; p++)
            matched = matched || mc_event_pattern_match (patterns[p], types[i]);
        CU_ASSERT_EQUAL (mc_event_type_reserved (types[i]), matched);
    }
}

//  --- signatures, checked against openssl ------------------------------------------------

//  Runs command through the shell and returns its first output line without the
//  newline (caller frees), or NULL.
static char *s_run (const char *command)
{
    FILE *pipe = popen (command, "r");
    if (!pipe)
        return NULL;
    char line[512] = "";
    char *got = fgets (line, sizeof line, pipe);
    int status = pclose (pipe);
    if (!got || status != 0)
        return NULL;
    line[strcspn (line, "\r\n")] = 0;
    return strdup (line);
}

//  hex HMAC-SHA256 of the file at path with key (shell-safe characters only), computed
//  by openssl. Caller frees; NULL if openssl failed.
static char *s_openssl_hex (const char *key, const char *path)
{
    char command[8192];
    snprintf (command, sizeof command, "openssl dgst -sha256 -hmac '%s' < '%s'", key, path);
    char *line = s_run (command);
    //  "SHA2-256(stdin)= <hex>" (OpenSSL 3) or "(stdin)= <hex>" (1.1).
    char *hex = line ? strstr (line, "= ") : NULL;
    char *out = hex ? strdup (hex + 2) : NULL;
    free (line);
    return out;
}

//  base64 HMAC-SHA256 of the file at path with key, computed by openssl + base64.
static char *s_openssl_base64 (const char *key, const char *path)
{
    char command[8192];
    snprintf (command, sizeof command,
              "openssl dgst -sha256 -hmac '%s' -binary < '%s' | base64 -w0; echo", key, path);
    return s_run (command);
}

//  base64 of the bytes of text, computed by the base64 program.
static char *s_shell_base64 (const char *text)
{
    char command[8192];
    snprintf (command, sizeof command, "printf '%%s' '%s' | base64 -w0; echo", text);
    return s_run (command);
}

typedef struct {
    const char *secret; // shell-safe
    const char *body;
    const char *id;
    int64_t timestamp;
} sign_case_t;

static void test_signatures (void)
{
    CU_ASSERT_FATAL (sodium_init () >= 0);
    char *dir = mc_test_tmpdir ("events-sign");
    CU_ASSERT_FATAL (dir != NULL);
    char path[4200];
    snprintf (path, sizeof path, "%s/body", dir);

    static char long_body[70000];
    memset (long_body, 'x', sizeof long_body - 1);
    long_body[0] = '{';
    long_body[sizeof long_body - 2] = '}';
    static char long_id[201];
    memset (long_id, 'i', sizeof long_id - 1);

    const sign_case_t cases[] = {
        {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "{\"id\":\"e1\",\"type\":\"test.n\",\"payload\":{\"seq\":1}}",
         "1b4e28ba-2fa1-11d2-883f-0016d3cca427", 1700000000},
        {"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "", "x", 0},
        {"a6c5e7d1f0b2a3948576a6c5e7d1f0b2a3948576a6c5e7d1f0b2a3948576a6c5",
         "{\"text\":\"caf\xc3\xa9 \\n \\\"quoted\\\" \\u0000\"}",
         "f47ac10b-58cc-4372-a567-0e02b2c3d479", 4102444800},
        {"secret-with-dashes_and_UPPER", long_body, "0ae4f9e2-9b0a-4d4c-8e0f-6a4c2e8b1d33",
         1712345678},
        //  A long message id must still be signed over all of it.
        {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "{}", long_id,
         1700000001},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const sign_case_t *c = &cases[i];
        size_t len = strlen (c->body);

        //  X-Selena-Signature: sha256=<hex HMAC(secret ASCII, body)>
        CU_ASSERT_FATAL (mc_test_write_file (path, c->body, len) == 0);
        char *hex = s_openssl_hex (c->secret, path);
        CU_ASSERT_PTR_NOT_NULL_FATAL (hex);
        char expected[128];
        snprintf (expected, sizeof expected, "sha256=%s", hex);
        char selena[80];
        memset (selena, '#', sizeof selena);
        mc_webhook_sign_selena (c->secret, (const uint8_t *)c->body, len, selena);
        CU_ASSERT_EQUAL (strlen (selena), 71);
        CU_ASSERT_STRING_EQUAL (selena, expected);
        free (hex);

        //  webhook-signature: v1,<base64 HMAC(secret ASCII, "id.timestamp.body")>
        char *signed_text = NULL;
        int n = asprintf (&signed_text, "%s.%lld.%s", c->id, (long long)c->timestamp, c->body);
        CU_ASSERT_FATAL (n > 0);
        CU_ASSERT_FATAL (mc_test_write_file (path, signed_text, (size_t)n) == 0);
        free (signed_text);
        char *b64 = s_openssl_base64 (c->secret, path);
        CU_ASSERT_PTR_NOT_NULL_FATAL (b64);
        snprintf (expected, sizeof expected, "v1,%s", b64);
        char standard[64];
        memset (standard, '#', sizeof standard);
        mc_webhook_sign_standard (c->secret, c->id, c->timestamp, (const uint8_t *)c->body, len,
                                  standard);
        CU_ASSERT_EQUAL (strlen (standard), 47);
        CU_ASSERT_STRING_EQUAL (standard, expected);
        free (b64);
    }

    //  The body counts to its last byte, and only up to len.
    const char *body = "{\"a\":1}";
    char one[80], two[80], three[80];
    const char *secret = cases[0].secret;
    mc_webhook_sign_selena (secret, (const uint8_t *)body, strlen (body), one);
    mc_webhook_sign_selena (secret, (const uint8_t *)"{\"a\":2}", 7, two);
    mc_webhook_sign_selena (secret, (const uint8_t *)"{\"a\":1}trailing", 7, three);
    CU_ASSERT_STRING_NOT_EQUAL (one, two);
    CU_ASSERT_STRING_EQUAL (one, three);
    //  Another secret, another signature; id and timestamp are signed too.
    mc_webhook_sign_selena (cases[1].secret, (const uint8_t *)body, strlen (body), two);
    CU_ASSERT_STRING_NOT_EQUAL (one, two);
    mc_webhook_sign_standard (secret, "id1", 1, (const uint8_t *)body, strlen (body), one);
    mc_webhook_sign_standard (secret, "id2", 1, (const uint8_t *)body, strlen (body), two);
    mc_webhook_sign_standard (secret, "id1", 2, (const uint8_t *)body, strlen (body), three);
    CU_ASSERT_STRING_NOT_EQUAL (one, two);
    CU_ASSERT_STRING_NOT_EQUAL (one, three);

    mc_test_rmtree (dir);
    free (dir);
}

static void test_standard_secret (void)
{
    static const char *const secrets[] = {
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a6c5e7d1f0b2a3948576a6c5e7d1f0b2a3948576a6c5e7d1f0b2a3948576a6c5"};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        char out[96];
        memset (out, '#', sizeof out);
        mc_webhook_standard_secret (secrets[i], out);
        char *b64 = s_shell_base64 (secrets[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL (b64);
        char expected[128];
        snprintf (expected, sizeof expected, "whsec_%s", b64);
        CU_ASSERT_STRING_EQUAL (out, expected);
        CU_ASSERT_EQUAL (strlen (out), 6 + 88);
        free (b64);
    }
    //  The decoded key is the secret's ASCII characters, so the two schemes share a key.
    char out[96];
    mc_webhook_standard_secret (secrets[0], out);
    uint8_t key[80];
    size_t key_len = 0;
    CU_ASSERT_EQUAL (sodium_base642bin (key, sizeof key, out + 6, strlen (out + 6), NULL, &key_len,
                                        NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    CU_ASSERT_EQUAL (key_len, 64);
    CU_ASSERT (memcmp (key, secrets[0], 64) == 0);
}

//  --- backoff --------------------------------------------------------------------------

static void test_backoff (void)
{
    const uint32_t base = 1000, cap = 60000;
    //  jitter 0.5 is the nominal value: base, doubling, capped.
    static const struct {
        uint32_t attempts;
        uint64_t nominal;
    } schedule[] = {{1, 1000},  {2, 2000},  {3, 4000},   {4, 8000},   {5, 16000},   {6, 32000},
                    {7, 60000}, {8, 60000}, {20, 60000}, {64, 60000}, {1000, 60000}};
    for (size_t i = 0; i < sizeof schedule / sizeof schedule[0]; i++) {
        uint32_t a = schedule[i].attempts;
        uint64_t nominal = schedule[i].nominal;
        CU_ASSERT_EQUAL (mc_webhook_backoff_ms (a, base, cap, 0.5), nominal);
        //  +-20% jitter: the bounds.
        CU_ASSERT_EQUAL (mc_webhook_backoff_ms (a, base, cap, 0.0), nominal * 8 / 10);
        uint64_t high = mc_webhook_backoff_ms (a, base, cap, 0.999);
        CU_ASSERT (high <= nominal * 12 / 10);
        CU_ASSERT (high >= nominal * 1199 / 1000 - 1);
        for (double j = 0; j < 1; j += 0.05) {
            uint64_t d = mc_webhook_backoff_ms (a, base, cap, j);
            CU_ASSERT (d >= nominal * 8 / 10 && d <= nominal * 12 / 10);
        }
    }
    //  Attempt 1 is the base, whatever the cap above it.
    CU_ASSERT_EQUAL (mc_webhook_backoff_ms (1, 100, 1000, 0.5), 100);
    CU_ASSERT_EQUAL (mc_webhook_backoff_ms (1, 100, 1000, 0.0), 80);
    CU_ASSERT (mc_webhook_backoff_ms (1, 100, 1000, 0.999) >= 119);
    CU_ASSERT (mc_webhook_backoff_ms (1, 100, 1000, 0.999) <= 120);
    //  The short schedule of the integration tests: 100, 200, 400, 800, 1000, 1000.
    uint64_t expect[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (uint32_t a = 1; a <= 7; a++)
        CU_ASSERT_EQUAL (mc_webhook_backoff_ms (a, 100, 1000, 0.5), expect[a - 1]);
    //  Monotonic in attempts at a fixed jitter.
    uint64_t last = 0;
    for (uint32_t a = 1; a < 40; a++) {
        uint64_t d = mc_webhook_backoff_ms (a, 10, 3600000, 0.25);
        CU_ASSERT (d >= last);
        last = d;
    }
    //  A base above the cap is capped from the first attempt; huge attempt counts do not
    //  overflow.
    CU_ASSERT_EQUAL (mc_webhook_backoff_ms (1, 5000, 1000, 0.5), 1000);
    CU_ASSERT_EQUAL (mc_webhook_backoff_ms (UINT32_MAX, 1000, 3600000, 0.5), 3600000);
    CU_ASSERT_EQUAL (mc_webhook_backoff_ms (UINT32_MAX, 1000, 86400000, 0.0), 86400000ull * 8 / 10);
    //  The defaults (1 s base, 1 h cap): attempt 13 is capped (2^12 s > 1 h).
    CU_ASSERT_EQUAL (mc_webhook_backoff_ms (12, 1000, 3600000, 0.5), 2048000);
    CU_ASSERT_EQUAL (mc_webhook_backoff_ms (13, 1000, 3600000, 0.5), 3600000);
}

void mc_test_events (void)
{
    CU_pSuite suite = CU_add_suite ("events", NULL, NULL);
    CU_add_test (suite, "event type valid", test_type_valid);
    CU_add_test (suite, "pattern valid", test_pattern_valid);
    CU_add_test (suite, "pattern match", test_pattern_match);
    CU_add_test (suite, "type reserved", test_type_reserved);
    CU_add_test (suite, "signatures vs openssl", test_signatures);
    CU_add_test (suite, "standard webhooks secret", test_standard_secret);
    CU_add_test (suite, "backoff schedule", test_backoff);
}
