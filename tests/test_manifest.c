/*  Unit suite for core/manifest: every rule of the spec's "manifest.json" section,
    problems collected rather than stopping at the first, and load_dir's file handling
    and uvicorn fallback. */
#include "core/manifest.h"
#include "core/perms.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  The spec's example manifest.
static const char *s_example =
    "{\"name\":\"weather-module\",\"version\":\"1.0.0\",\"type\":\"UI\",\"ui_profile\":\"FULL\","
    "\"api_version\":\"1.0\",\"runtime_mode\":\"always_on\",\"port\":8100,"
    "\"permissions\":[\"device.read\",\"events.publish\"],"
    "\"ui\":{\"icon\":\"icon.svg\",\"widget\":{\"file\":\"widget.html\",\"size\":\"2x2\"},"
    "\"settings\":\"settings.html\"},"
    "\"resources\":{\"memory_mb\":128,\"cpu\":0.25}}";

//  Returns the example with member key set to the JSON value (or removed when value is
//  NULL), as text the caller frees.
static char *s_variant (const char *key, const char *value)
{
    json_t *root = json_loads (s_example, 0, NULL);
    assert (root);
    if (value) {
        json_error_t error;
        json_t *member = json_loads (value, JSON_DECODE_ANY, &error);
        if (!member)
            fprintf (stderr, "bad test value %s: %s\n", value, error.text);
        assert (member);
        json_object_set_new (root, key, member);
    } else
        json_object_del (root, key);
    char *text = json_dumps (root, JSON_COMPACT);
    json_decref (root);
    return text;
}

//  True if some problem starts with prefix.
static bool s_has_problem (json_t *problems, const char *prefix)
{
    size_t index;
    json_t *problem;
    json_array_foreach (problems, index, problem) if (json_is_string (problem) &&
                                                      strncmp (json_string_value (problem), prefix,
                                                               strlen (prefix)) == 0) return true;
    return false;
}

//  True if text is refused with exactly `count` problems, one starting with prefix
//  (count 0: any number). Prints what happened when not.
static bool s_refused (const char *text, size_t count, const char *prefix)
{
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_parse (text, strlen (text), &problems);
    bool ok = manifest == NULL && json_is_array (problems) &&
              (count == 0 || json_array_size (problems) == count) &&
              s_has_problem (problems, prefix);
    if (!ok) {
        char *list = problems ? json_dumps (problems, 0) : NULL;
        fprintf (stderr, "\n  expected %zu problem(s) starting '%s' for %.300s\n  got %s\n", count,
                 prefix, text, list ? list : "(accepted)");
        free (list);
    }
    mc_manifest_destroy (&manifest);
    json_decref (problems);
    return ok;
}

//  True if text is accepted. Prints the problems when not.
static bool s_accepted (const char *text)
{
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_parse (text, strlen (text), &problems);
    bool ok = manifest != NULL && problems == NULL;
    if (!ok) {
        char *list = problems ? json_dumps (problems, 0) : NULL;
        fprintf (stderr, "\n  expected %.300s to be valid\n  got %s\n", text,
                 list ? list : "(no list)");
        free (list);
    }
    mc_manifest_destroy (&manifest);
    json_decref (problems);
    return ok;
}

//  Returns a string of n copies of c (caller frees).
static char *s_repeat (const char *unit, size_t n)
{
    size_t len = strlen (unit);
    char *text = malloc (n * len + 1);
    assert (text);
    for (size_t i = 0; i < n; i++)
        memcpy (text + i * len, unit, len);
    text[n * len] = '\0';
    return text;
}

//  Returns "\"<n copies of unit>\"" as text the caller frees.
static char *s_quoted_repeat (const char *unit, size_t n)
{
    char *body = s_repeat (unit, n);
    char *quoted = malloc (strlen (body) + 3);
    assert (quoted);
    sprintf (quoted, "\"%s\"", body);
    free (body);
    return quoted;
}

static void test_example_valid (void)
{
    json_t *problems = json_string ("sentinel");
    json_t *sentinel = problems;
    mc_manifest_t *manifest = mc_manifest_parse (s_example, strlen (s_example), &problems);
    CU_ASSERT_PTR_NOT_NULL_FATAL (manifest);
    CU_ASSERT_PTR_NULL (problems);
    json_decref (sentinel);
    CU_ASSERT_STRING_EQUAL (manifest->name, "weather-module");
    CU_ASSERT_STRING_EQUAL (manifest->version, "1.0.0");
    CU_ASSERT_STRING_EQUAL (manifest->type, "UI");
    CU_ASSERT_STRING_EQUAL (manifest->api_version, "1.0");
    CU_ASSERT_STRING_EQUAL (manifest->ui_profile, "FULL");
    CU_ASSERT_STRING_EQUAL (manifest->runtime_mode, "always_on");
    CU_ASSERT_PTR_NULL (manifest->description);
    CU_ASSERT_PTR_NULL (manifest->author);
    CU_ASSERT_EQUAL (manifest->port, 8100);
    CU_ASSERT_EQUAL (manifest->permissions, MC_PERM_DEVICE_READ | MC_PERM_EVENTS_PUBLISH);
    CU_ASSERT_EQUAL (manifest->memory_mb, 128);
    CU_ASSERT_DOUBLE_EQUAL (manifest->cpu, 0.25, 1e-9);
    CU_ASSERT_PTR_NULL (manifest->entry);
    CU_ASSERT_PTR_NULL (manifest->test);
    CU_ASSERT_TRUE (json_is_object (manifest->json));
    json_t *size = json_object_get (
        json_object_get (json_object_get (manifest->json, "ui"), "widget"), "size");
    CU_ASSERT_STRING_EQUAL (json_string_value (size), "2x2");
    mc_manifest_destroy (&manifest);
    CU_ASSERT_PTR_NULL (manifest);
}

static void test_optional_fields_parsed (void)
{
    const char *text =
        "{\"name\":\"ab\",\"version\":\"10.20.30\",\"type\":\"INTEGRATION\","
        "\"api_version\":\"1.1\",\"port\":8200,\"runtime_mode\":\"on_demand\","
        "\"permissions\":[\"secrets.oauth\",\"secrets.proxy\",\"storage.rw\"],"
        "\"description\":\"Weather for the dashboard\",\"author\":\"Jane\","
        "\"entry\":[\"bin/weather\",\"--verbose\"],\"test\":[\"bin/weather\",\"--self-test\"],"
        "\"x-future\":{\"anything\":[1,2,3]}}";
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_parse (text, strlen (text), &problems);
    CU_ASSERT_PTR_NOT_NULL_FATAL (manifest);
    CU_ASSERT_PTR_NULL (problems);
    CU_ASSERT_STRING_EQUAL (manifest->name, "ab");
    CU_ASSERT_STRING_EQUAL (manifest->runtime_mode, "on_demand");
    CU_ASSERT_PTR_NULL (manifest->ui_profile);
    CU_ASSERT_STRING_EQUAL (manifest->description, "Weather for the dashboard");
    CU_ASSERT_STRING_EQUAL (manifest->author, "Jane");
    CU_ASSERT_EQUAL (manifest->port, 8200);
    CU_ASSERT_EQUAL (manifest->permissions,
                     MC_PERM_SECRETS_OAUTH | MC_PERM_SECRETS_PROXY | MC_PERM_STORAGE_RW);
    CU_ASSERT_EQUAL (manifest->memory_mb, 0);
    CU_ASSERT_DOUBLE_EQUAL (manifest->cpu, 0.0, 1e-9);
    CU_ASSERT_PTR_NOT_NULL_FATAL (manifest->entry);
    CU_ASSERT_STRING_EQUAL (manifest->entry[0], "bin/weather");
    CU_ASSERT_STRING_EQUAL (manifest->entry[1], "--verbose");
    CU_ASSERT_PTR_NULL (manifest->entry[2]);
    CU_ASSERT_PTR_NOT_NULL_FATAL (manifest->test);
    CU_ASSERT_STRING_EQUAL (manifest->test[1], "--self-test");
    CU_ASSERT_PTR_NULL (manifest->test[2]);
    mc_manifest_destroy (&manifest);
}

static void test_runtime_mode_default (void)
{
    char *text = s_variant ("runtime_mode", NULL);
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_parse (text, strlen (text), &problems);
    CU_ASSERT_PTR_NOT_NULL_FATAL (manifest);
    CU_ASSERT_STRING_EQUAL (manifest->runtime_mode, "always_on");
    mc_manifest_destroy (&manifest);
    free (text);
}

static void test_valid_edge_cases (void)
{
    static const struct {
        const char *key;
        const char *value;
    } cases[] = {
        {"name", "\"a1\""},
        {"name", "\"0-9\""},
        {"name", "\"a--b\""},
        {"version", "\"0.0.0\""},
        {"version", "\"2024.10.300\""},
        {"api_version", "\"1.7\""},
        {"ui_profile", NULL},
        {"ui_profile", "\"HEADLESS\""},
        {"ui_profile", "\"SETTINGS_ONLY\""},
        {"ui_profile", "\"ICON_SETTINGS\""},
        {"runtime_mode", "\"scheduled\""},
        {"port", "8200"},
        {"port", "8150"},
        {"permissions", "[]"},
        {"permissions", "[\"device.read\",\"device.write\",\"events.subscribe\","
                        "\"events.publish\",\"storage.rw\"]"},
        {"ui", "{}"},
        {"ui", "{\"icon\":\"img/icon.svg\",\"settings\":\"./s.html\"}"},
        {"ui", "{\"widget\":{\"file\":\"w.html\",\"size\":\"1x1\"}}"},
        {"ui", "{\"widget\":{\"file\":\"w.html\",\"size\":\"2x1\"}}"},
        {"ui", "{\"widget\":{\"file\":\"w.html\",\"size\":\"4x1\"}}"},
        {"ui", "{\"widget\":{\"file\":\"w.html\",\"size\":\"1x2\"}}"},
        {"ui", "{\"icon\":\"a..b/..c.svg\"}"},
        {"intents", "[]"},
        {"intents", "[{\"patterns\":{\"en\":[\"weather\",\"forecast\"],\"ru\":[]},"
                    "\"description\":\"Weather\",\"endpoint\":\"/intent/weather\"}]"},
        {"resources", "{}"},
        {"resources", "{\"memory_mb\":16,\"cpu\":64}"},
        {"resources", "{\"memory_mb\":65536,\"cpu\":0.01}"},
        {"description", "\"\""},
        {"entry", "[\"python3\",\"main.py\"]"},
        {"test", "[\"./selftest\"]"},
        {"x-unknown", "{\"future\":true}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = s_variant (cases[i].key, cases[i].value);
        CU_ASSERT_TRUE (s_accepted (text));
        free (text);
    }
    char *name = s_quoted_repeat ("a", 64);
    char *text = s_variant ("name", name);
    CU_ASSERT_TRUE (s_accepted (text));
    free (text);
    free (name);
    //  1024 characters of two bytes each: the limit counts characters, not bytes
    char *description = s_quoted_repeat ("\xc3\xa9", 1024);
    text = s_variant ("description", description);
    CU_ASSERT_TRUE (s_accepted (text));
    free (text);
    free (description);
}

static void test_single_violations (void)
{
    static const struct {
        const char *key;
        const char *value; // NULL: the key is removed
        const char *prefix;
    } cases[] = {
        {"name", NULL, "name: missing"},
        {"name", "42", "name:"},
        {"name", "null", "name:"},
        {"name", "\"a\"", "name:"},
        {"name", "\"\"", "name:"},
        {"name", "\"Weather\"", "name:"},
        {"name", "\"-weather\"", "name:"},
        {"name", "\"weather-\"", "name:"},
        {"name", "\"we_ather\"", "name:"},
        {"name", "\"we ather\"", "name:"},
        {"name", "\"wéather\"", "name:"},
        {"version", NULL, "version: missing"},
        {"version", "1", "version:"},
        {"version", "\"1.0\"", "version:"},
        {"version", "\"1.0.0.0\"", "version:"},
        {"version", "\"1.0.0-beta\"", "version:"},
        {"version", "\"v1.0.0\"", "version:"},
        {"version", "\" 1.0.0\"", "version:"},
        {"version", "\"1.0.0\\n\"", "version:"},
        {"version", "\"1..0\"", "version:"},
        {"version", "\"1.a.0\"", "version:"},
        {"type", NULL, "type: missing"},
        {"type", "\"ui\"", "type:"},
        {"type", "\"SERVICE\"", "type:"},
        {"type", "1", "type:"},
        {"api_version", NULL, "api_version: missing"},
        {"api_version", "\"\"", "api_version:"},
        {"api_version", "1.0", "api_version:"},
        {"api_version", "\"2.0\"", "api_version: unsupported"},
        {"api_version", "\"10.0\"", "api_version: unsupported"},
        {"api_version", "\"1\"", "api_version: unsupported"},
        {"ui_profile", "\"full\"", "ui_profile:"},
        {"ui_profile", "3", "ui_profile:"},
        {"ui_profile", "null", "ui_profile:"},
        {"runtime_mode", "\"always\"", "runtime_mode:"},
        {"runtime_mode", "\"\"", "runtime_mode:"},
        {"port", NULL, "port: missing"},
        {"port", "8099", "port:"},
        {"port", "8201", "port:"},
        {"port", "-8100", "port:"},
        {"port", "8100.0", "port:"},
        {"port", "\"8100\"", "port:"},
        {"port", "true", "port:"},
        {"permissions", NULL, "permissions: missing"},
        {"permissions", "\"device.read\"", "permissions:"},
        {"permissions", "{}", "permissions:"},
        {"permissions", "[1]", "permissions"},
        {"permissions", "[\"device.fly\"]", "permissions: unknown"},
        {"permissions", "[\"Device.Read\"]", "permissions: unknown"},
        {"permissions", "[\"modules.manage\"]", "permissions:"},
        {"permissions", "[\"device.read\",\"events.publish\",\"device.read\"]", "permissions:"},
        {"permissions", "[\"secrets.oauth\"]", "permissions:"},
        {"permissions", "[\"secrets.proxy\"]", "permissions:"},
        {"description", "5", "description:"},
        {"author", "[\"Jane\"]", "author:"},
        {"ui", "\"icon.svg\"", "ui:"},
        {"ui", "{\"icon\":1}", "ui.icon:"},
        {"ui", "{\"icon\":\"\"}", "ui.icon:"},
        {"ui", "{\"icon\":\"/etc/passwd\"}", "ui.icon:"},
        {"ui", "{\"icon\":\"../icon.svg\"}", "ui.icon:"},
        {"ui", "{\"icon\":\"img/../../icon.svg\"}", "ui.icon:"},
        {"ui", "{\"icon\":\"img/..\"}", "ui.icon:"},
        {"ui", "{\"settings\":\"..\\\\s.html\"}", "ui.settings:"},
        {"ui", "{\"settings\":[]}", "ui.settings:"},
        {"ui", "{\"widget\":\"widget.html\"}", "ui.widget:"},
        {"ui", "{\"widget\":{\"size\":\"2x2\"}}", "ui.widget.file:"},
        {"ui", "{\"widget\":{\"file\":\"../w.html\",\"size\":\"2x2\"}}", "ui.widget.file:"},
        {"ui", "{\"widget\":{\"file\":\"w.html\"}}", "ui.widget.size:"},
        {"ui", "{\"widget\":{\"file\":\"w.html\",\"size\":\"3x3\"}}", "ui.widget.size:"},
        {"ui", "{\"widget\":{\"file\":\"w.html\",\"size\":22}}", "ui.widget.size:"},
        {"intents", "{}", "intents:"},
        {"intents", "[1]", "intents[0]:"},
        {"intents", "[{\"patterns\":{\"en\":[\"x\"]},\"description\":\"d\",\"endpoint\":\"x\"}]",
         "intents[0].endpoint:"},
        {"intents", "[{\"patterns\":{\"en\":[\"x\"]},\"description\":\"d\"}]",
         "intents[0].endpoint:"},
        {"intents", "[{\"patterns\":{\"en\":[\"x\"]},\"description\":\"d\",\"endpoint\":7}]",
         "intents[0].endpoint:"},
        {"intents", "[{\"description\":\"d\",\"endpoint\":\"/x\"}]", "intents[0].patterns:"},
        {"intents", "[{\"patterns\":[\"x\"],\"description\":\"d\",\"endpoint\":\"/x\"}]",
         "intents[0].patterns:"},
        {"intents", "[{\"patterns\":{\"en\":\"x\"},\"description\":\"d\",\"endpoint\":\"/x\"}]",
         "intents[0].patterns.en:"},
        {"intents", "[{\"patterns\":{\"en\":[1]},\"description\":\"d\",\"endpoint\":\"/x\"}]",
         "intents[0].patterns.en:"},
        {"intents", "[{\"patterns\":{\"en\":[\"x\"]},\"description\":1,\"endpoint\":\"/x\"}]",
         "intents[0].description:"},
        {"resources", "[]", "resources:"},
        {"resources", "{\"memory_mb\":15}", "resources.memory_mb:"},
        {"resources", "{\"memory_mb\":65537}", "resources.memory_mb:"},
        {"resources", "{\"memory_mb\":128.5}", "resources.memory_mb:"},
        {"resources", "{\"memory_mb\":\"128\"}", "resources.memory_mb:"},
        {"resources", "{\"cpu\":0}", "resources.cpu:"},
        {"resources", "{\"cpu\":-1}", "resources.cpu:"},
        {"resources", "{\"cpu\":64.5}", "resources.cpu:"},
        {"resources", "{\"cpu\":\"1\"}", "resources.cpu:"},
        {"entry", "[]", "entry:"},
        {"entry", "\"main.py\"", "entry:"},
        {"entry", "{}", "entry:"},
        {"entry", "[\"python3\",\"\"]", "entry[1]:"},
        {"entry", "[\"python3\",1]", "entry[1]:"},
        {"test", "[]", "test:"},
        {"test", "\"selftest\"", "test:"},
        {"test", "[\"\"]", "test[0]:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = s_variant (cases[i].key, cases[i].value);
        CU_ASSERT_TRUE (s_refused (text, 1, cases[i].prefix));
        free (text);
    }
}

static void test_long_values (void)
{
    char *name = s_quoted_repeat ("a", 65);
    char *text = s_variant ("name", name);
    CU_ASSERT_TRUE (s_refused (text, 1, "name:"));
    free (text);
    free (name);
    char *description = s_quoted_repeat ("d", 1025);
    text = s_variant ("description", description);
    CU_ASSERT_TRUE (s_refused (text, 1, "description:"));
    free (text);
    text = s_variant ("author", description);
    CU_ASSERT_TRUE (s_refused (text, 1, "author:"));
    free (text);
    free (description);
}

static void test_many_violations (void)
{
    const char *text = "{\"name\":\"Bad Name\",\"version\":\"1\",\"type\":\"UI\",\"api_version\":"
                       "\"2.0\",\"port\":80,\"permissions\":[\"nope\",\"secrets.oauth\"],"
                       "\"ui\":{\"icon\":\"../x\"},\"resources\":{\"cpu\":0},\"entry\":[]}";
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_parse (text, strlen (text), &problems);
    CU_ASSERT_PTR_NULL (manifest);
    CU_ASSERT_EQUAL (json_array_size (problems), 9);
    const char *prefixes[] = {
        "name:",    "version:",       "api_version:", "port:", "permissions: unknown",
        "ui.icon:", "resources.cpu:", "entry:"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        CU_ASSERT_TRUE (s_has_problem (problems, prefixes[i]));
    size_t index;
    json_t *problem;
    size_t secrets = 0;
    json_array_foreach (problems, index, problem) if (strstr (json_string_value (problem),
                                                              "secrets.oauth")) secrets++;
    CU_ASSERT_EQUAL (secrets, 1);
    json_decref (problems);
}

static void test_empty_object (void)
{
    const char *text = "{}";
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_parse (text, strlen (text), &problems);
    CU_ASSERT_PTR_NULL (manifest);
    //  Without a valid type, the port rule is unknown and not reported
    CU_ASSERT_EQUAL (json_array_size (problems), 5);
    const char *prefixes[] = {"name: missing", "version: missing", "type: missing",
                              "api_version: missing", "permissions: missing"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        CU_ASSERT_TRUE (s_has_problem (problems, prefixes[i]));
    json_decref (problems);
}

static void test_system_port (void)
{
    char *system = s_variant ("type", "\"SYSTEM\"");
    CU_ASSERT_TRUE (s_refused (system, 1, "port:"));
    json_t *root = json_loads (system, 0, NULL);
    json_object_del (root, "port");
    char *text = json_dumps (root, JSON_COMPACT);
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_parse (text, strlen (text), &problems);
    CU_ASSERT_PTR_NOT_NULL (manifest);
    CU_ASSERT_PTR_NULL (problems);
    if (manifest) {
        CU_ASSERT_STRING_EQUAL (manifest->type, "SYSTEM");
        CU_ASSERT_EQUAL (manifest->port, 0);
    }
    mc_manifest_destroy (&manifest);
    free (text);
    json_decref (root);
    free (system);

    const char *types[] = {"UI", "INTEGRATION", "DRIVER", "AUTOMATION", "IMPORT_SOURCE"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        root = json_loads (s_example, 0, NULL);
        json_object_set_new (root, "type", json_string (types[i]));
        json_object_del (root, "port");
        text = json_dumps (root, JSON_COMPACT);
        CU_ASSERT_TRUE (s_refused (text, 1, "port: missing"));
        free (text);
        json_decref (root);
    }
}

static void test_secrets_only_integration (void)
{
    const char *types[] = {"UI", "SYSTEM", "DRIVER", "AUTOMATION", "IMPORT_SOURCE"};
    const char *secrets[] = {"secrets.oauth", "secrets.proxy"};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (size_t s = 0; s < sizeof secrets / sizeof secrets[0]; s++) {
            json_t *root = json_loads (s_example, 0, NULL);
            json_object_set_new (root, "type", json_string (types[t]));
            if (strcmp (types[t], "SYSTEM") == 0)
                json_object_del (root, "port");
            json_array_append_new (json_object_get (root, "permissions"), json_string (secrets[s]));
            char *text = json_dumps (root, JSON_COMPACT);
            CU_ASSERT_TRUE (s_refused (text, 1, "permissions:"));
            free (text);
            json_decref (root);
        }
    char *text = s_variant ("type", "\"INTEGRATION\"");
    json_t *root = json_loads (text, 0, NULL);
    free (text);
    json_object_set_new (root, "permissions", json_pack ("[ss]", "secrets.oauth", "secrets.proxy"));
    text = json_dumps (root, JSON_COMPACT);
    CU_ASSERT_TRUE (s_accepted (text));
    free (text);
    json_decref (root);
}

static void test_duplicate_key (void)
{
    const char *top = "{\"name\":\"weather-module\",\"name\":\"other\",\"version\":\"1.0.0\","
                      "\"type\":\"UI\",\"api_version\":\"1.0\",\"port\":8100,\"permissions\":[]}";
    CU_ASSERT_TRUE (s_refused (top, 1, "manifest.json: duplicate key"));
    const char *nested =
        "{\"name\":\"weather-module\",\"version\":\"1.0.0\",\"type\":\"UI\",\"api_version\":"
        "\"1.0\",\"port\":8100,\"permissions\":[],\"ui\":{\"icon\":\"a.svg\",\"icon\":\"b.svg\"}}";
    CU_ASSERT_TRUE (s_refused (nested, 1, "manifest.json: duplicate key"));
    //  The rest of the manifest is still checked
    const char *more = "{\"name\":\"weather-module\",\"name\":\"x\",\"version\":\"1.0.0\","
                       "\"type\":\"UI\",\"api_version\":\"1.0\",\"port\":1,\"permissions\":[]}";
    CU_ASSERT_TRUE (s_refused (more, 3, "manifest.json: duplicate key"));
    CU_ASSERT_TRUE (s_refused (more, 3, "name:"));
    CU_ASSERT_TRUE (s_refused (more, 3, "port:"));
}

static void test_not_object (void)
{
    const char *texts[] = {"[]", "[{\"name\":\"a\"}]", "42", "\"manifest\"", "null", "true"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        CU_ASSERT_TRUE (s_refused (texts[i], 1, "manifest.json: must be a JSON object"));
}

static void test_bad_json (void)
{
    const char *texts[] = {
        "", "{", "{\"name\":}", "{} x", "{'name':'a'}", "{\"a\":1,}", "{\"name\":\"a\\u0000b\"}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        CU_ASSERT_TRUE (s_refused (texts[i], 1, "manifest.json: not valid JSON"));
    //  A NUL byte inside the text, within len
    const char nul[] = "{\"name\":\"a\0\"}";
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_parse (nul, sizeof nul - 1, &problems);
    CU_ASSERT_PTR_NULL (manifest);
    CU_ASSERT_TRUE (s_has_problem (problems, "manifest.json:"));
    json_decref (problems);
    //  Invalid UTF-8
    CU_ASSERT_TRUE (s_refused ("{\"name\":\"\xff\"}", 1, "manifest.json: not valid JSON"));
    manifest = mc_manifest_parse (NULL, 0, &problems);
    CU_ASSERT_PTR_NULL (manifest);
    CU_ASSERT_EQUAL (json_array_size (problems), 1);
    json_decref (problems);
}

static void test_size_cap (void)
{
    //  Exactly 64 KiB: valid (the example padded with spaces)
    size_t cap = 64 * 1024;
    char *text = malloc (cap + 2);
    assert (text);
    memset (text, ' ', cap + 1);
    memcpy (text, s_example, strlen (s_example));
    text[cap] = '\0';
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_parse (text, cap, &problems);
    CU_ASSERT_PTR_NOT_NULL (manifest);
    CU_ASSERT_PTR_NULL (problems);
    mc_manifest_destroy (&manifest);
    //  One byte more: refused before decoding
    text[cap] = ' ';
    text[cap + 1] = '\0';
    CU_ASSERT_TRUE (s_refused (text, 1, "manifest.json: larger"));
    free (text);
}

//  Makes a module directory holding the given manifest text (NULL: none) and, when
//  main_py, a main.py. Returns its path (caller frees and removes).
static char *s_module_dir (const char *manifest, bool main_py)
{
    char *dir = mc_test_tmpdir ("manifest");
    assert (dir);
    char path[4096];
    if (manifest) {
        snprintf (path, sizeof path, "%s/manifest.json", dir);
        int rc = mc_test_write_file (path, manifest, strlen (manifest));
        assert (rc == 0);
    }
    if (main_py) {
        snprintf (path, sizeof path, "%s/main.py", dir);
        const char *source = "from fastapi import FastAPI\napp = FastAPI()\n";
        int rc = mc_test_write_file (path, source, strlen (source));
        assert (rc == 0);
    }
    return dir;
}

//  Removes and frees a module directory.
static void s_module_dir_destroy (char **dir_p)
{
    mc_test_rmtree (*dir_p);
    free (*dir_p);
    *dir_p = NULL;
}

//  True if load_dir refuses dir with exactly count problems, one starting with prefix.
static bool s_dir_refused (const char *dir, size_t count, const char *prefix)
{
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_load_dir (dir, &problems);
    bool ok =
        manifest == NULL && json_array_size (problems) == count && s_has_problem (problems, prefix);
    if (!ok) {
        char *list = problems ? json_dumps (problems, 0) : NULL;
        fprintf (stderr, "\n  expected %zu problem(s) starting '%s' for %s\n  got %s\n", count,
                 prefix, dir, list ? list : "(accepted)");
        free (list);
    }
    mc_manifest_destroy (&manifest);
    json_decref (problems);
    return ok;
}

static void test_load_dir_fallback (void)
{
    char *text = s_variant ("port", "8123");
    char *dir = s_module_dir (text, true);
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_load_dir (dir, &problems);
    CU_ASSERT_PTR_NOT_NULL_FATAL (manifest);
    CU_ASSERT_PTR_NULL (problems);
    const char *expected[] = {"python3", "-m",        "uvicorn", "main:app",
                              "--host",  "127.0.0.1", "--port",  "8123"};
    CU_ASSERT_PTR_NOT_NULL_FATAL (manifest->entry);
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL (manifest->entry[i]);
        CU_ASSERT_STRING_EQUAL (manifest->entry[i], expected[i]);
    }
    CU_ASSERT_PTR_NULL (manifest->entry[8]);
    CU_ASSERT_STRING_EQUAL (manifest->name, "weather-module");
    CU_ASSERT_EQUAL (manifest->port, 8123);
    mc_manifest_destroy (&manifest);
    s_module_dir_destroy (&dir);
    free (text);
}

static void test_load_dir_entry_wins (void)
{
    char *text = s_variant ("entry", "[\"bin/run\",\"--port\",\"8100\"]");
    char *dir = s_module_dir (text, true);
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_load_dir (dir, &problems);
    CU_ASSERT_PTR_NOT_NULL_FATAL (manifest);
    CU_ASSERT_STRING_EQUAL (manifest->entry[0], "bin/run");
    CU_ASSERT_PTR_NULL (manifest->entry[3]);
    mc_manifest_destroy (&manifest);
    s_module_dir_destroy (&dir);
    free (text);
    //  An entry without main.py needs no fallback
    text = s_variant ("entry", "[\"bin/run\"]");
    dir = s_module_dir (text, false);
    manifest = mc_manifest_load_dir (dir, &problems);
    CU_ASSERT_PTR_NOT_NULL (manifest);
    CU_ASSERT_PTR_NULL (problems);
    mc_manifest_destroy (&manifest);
    s_module_dir_destroy (&dir);
    free (text);
}

static void test_load_dir_no_entry (void)
{
    char *dir = s_module_dir (s_example, false);
    CU_ASSERT_TRUE (s_dir_refused (dir, 1, "entry: missing"));
    s_module_dir_destroy (&dir);
    //  A main.py that is a symbolic link does not count
    dir = s_module_dir (s_example, false);
    char path[4096];
    snprintf (path, sizeof path, "%s/main.py", dir);
    CU_ASSERT_EQUAL (symlink ("/etc/hostname", path), 0);
    CU_ASSERT_TRUE (s_dir_refused (dir, 1, "entry: missing"));
    s_module_dir_destroy (&dir);
    //  A SYSTEM module has no port for the fallback
    char *system = s_variant ("type", "\"SYSTEM\"");
    json_t *root = json_loads (system, 0, NULL);
    json_object_del (root, "port");
    char *text = json_dumps (root, JSON_COMPACT);
    dir = s_module_dir (text, true);
    CU_ASSERT_TRUE (s_dir_refused (dir, 1, "entry: missing"));
    s_module_dir_destroy (&dir);
    free (text);
    json_decref (root);
    free (system);
}

static void test_load_dir_collects_all (void)
{
    char *text = s_variant ("version", "\"1.0\"");
    char *dir = s_module_dir (text, false);
    CU_ASSERT_TRUE (s_dir_refused (dir, 2, "entry: missing"));
    CU_ASSERT_TRUE (s_dir_refused (dir, 2, "version:"));
    s_module_dir_destroy (&dir);
    free (text);
}

static void test_load_dir_missing (void)
{
    char *dir = s_module_dir (NULL, true);
    CU_ASSERT_TRUE (s_dir_refused (dir, 1, "manifest.json: missing"));
    char path[4096];
    snprintf (path, sizeof path, "%s/absent", dir);
    CU_ASSERT_TRUE (s_dir_refused (path, 1, "manifest.json: missing"));
    s_module_dir_destroy (&dir);
}

static void test_load_dir_symlink (void)
{
    char *real = s_module_dir (s_example, true);
    char *dir = s_module_dir (NULL, true);
    char target[4096], path[4096];
    snprintf (target, sizeof target, "%s/manifest.json", real);
    snprintf (path, sizeof path, "%s/manifest.json", dir);
    CU_ASSERT_EQUAL (symlink (target, path), 0);
    CU_ASSERT_TRUE (s_dir_refused (dir, 1, "manifest.json:"));
    //  The same manifest as a regular file is accepted, so the link is what was refused
    json_t *problems = NULL;
    mc_manifest_t *manifest = mc_manifest_load_dir (real, &problems);
    CU_ASSERT_PTR_NOT_NULL (manifest);
    mc_manifest_destroy (&manifest);
    s_module_dir_destroy (&dir);
    s_module_dir_destroy (&real);
}

static void test_load_dir_not_regular (void)
{
    char *dir = s_module_dir (NULL, true);
    char path[4096];
    snprintf (path, sizeof path, "%s/manifest.json", dir);
    CU_ASSERT_EQUAL (mkdir (path, 0700), 0);
    CU_ASSERT_TRUE (s_dir_refused (dir, 1, "manifest.json:"));
    CU_ASSERT_EQUAL (rmdir (path), 0);
    //  A FIFO must be refused without waiting for a writer
    CU_ASSERT_EQUAL (mkfifo (path, 0600), 0);
    CU_ASSERT_TRUE (s_dir_refused (dir, 1, "manifest.json: not a regular file"));
    s_module_dir_destroy (&dir);
}

static void test_load_dir_too_large (void)
{
    size_t size = 64 * 1024 + 1;
    char *text = malloc (size + 1);
    assert (text);
    memset (text, ' ', size);
    memcpy (text, s_example, strlen (s_example));
    text[size] = '\0';
    char *dir = s_module_dir (text, true);
    CU_ASSERT_TRUE (s_dir_refused (dir, 1, "manifest.json: larger"));
    s_module_dir_destroy (&dir);
    free (text);
}

static void test_destroy_safe (void)
{
    mc_manifest_destroy (NULL);
    mc_manifest_t *manifest = NULL;
    mc_manifest_destroy (&manifest);
    json_t *problems = NULL;
    manifest = mc_manifest_parse (s_example, strlen (s_example), &problems);
    CU_ASSERT_PTR_NOT_NULL (manifest);
    mc_manifest_destroy (&manifest);
    CU_ASSERT_PTR_NULL (manifest);
    mc_manifest_destroy (&manifest);
}

//  modcore's sandbox fields: network and schedule.
static void test_sandbox_fields (void)
{
    const char *base = "{\"name\":\"m1\",\"version\":\"1.0.0\",\"type\":\"UI\","
                       "\"api_version\":\"1.0\",\"port\":8101,\"permissions\":[],%s}";
    char text[512];
    snprintf (text, sizeof text, base, "\"network\":\"none\"");
    json_t *problems = NULL;
    mc_manifest_t *m = mc_manifest_parse (text, strlen (text), &problems);
    CU_ASSERT_PTR_NOT_NULL_FATAL (m);
    CU_ASSERT_STRING_EQUAL (m->network, "none");
    CU_ASSERT_PTR_NULL (m->schedule);
    mc_manifest_destroy (&m);
    snprintf (text, sizeof text, base,
              "\"runtime_mode\":\"scheduled\",\"schedule\":\"*/5 * * * *\"");
    m = mc_manifest_parse (text, strlen (text), &problems);
    CU_ASSERT_PTR_NOT_NULL_FATAL (m);
    CU_ASSERT_STRING_EQUAL (m->network, "loopback");
    CU_ASSERT_STRING_EQUAL (m->schedule, "*/5 * * * *");
    mc_manifest_destroy (&m);
    snprintf (text, sizeof text, base, "\"runtime_mode\":\"scheduled\"");
    m = mc_manifest_parse (text, strlen (text), &problems);
    CU_ASSERT_PTR_NOT_NULL_FATAL (m);
    CU_ASSERT_STRING_EQUAL (m->schedule, "@hourly");
    mc_manifest_destroy (&m);
    snprintf (text, sizeof text, base, "\"network\":\"host\"");
    CU_ASSERT_TRUE (s_refused (text, 1, "network: must be one of"));
    snprintf (text, sizeof text, base,
              "\"runtime_mode\":\"scheduled\",\"schedule\":\"61 * * * *\"");
    CU_ASSERT_TRUE (s_refused (text, 1, "schedule: bad minute"));
    snprintf (text, sizeof text, base, "\"schedule\":\"* * * * *\"");
    CU_ASSERT_TRUE (s_refused (text, 1, "schedule: only for"));
}

void mc_test_manifest (void)
{
    CU_pSuite suite = CU_add_suite ("manifest", NULL, NULL);
    CU_add_test (suite, "spec example is valid and parsed", test_example_valid);
    CU_add_test (suite, "optional fields parsed", test_optional_fields_parsed);
    CU_add_test (suite, "runtime_mode defaults to always_on", test_runtime_mode_default);
    CU_add_test (suite, "valid edge cases accepted", test_valid_edge_cases);
    CU_add_test (suite, "each rule violated alone", test_single_violations);
    CU_add_test (suite, "overlong values", test_long_values);
    CU_add_test (suite, "several violations all listed", test_many_violations);
    CU_add_test (suite, "empty object lists every required field", test_empty_object);
    CU_add_test (suite, "port rules for SYSTEM and others", test_system_port);
    CU_add_test (suite, "secrets.* only for INTEGRATION", test_secrets_only_integration);
    CU_add_test (suite, "duplicate key", test_duplicate_key);
    CU_add_test (suite, "top level not an object", test_not_object);
    CU_add_test (suite, "bad JSON", test_bad_json);
    CU_add_test (suite, "64 KiB cap", test_size_cap);
    CU_add_test (suite, "load_dir uvicorn fallback", test_load_dir_fallback);
    CU_add_test (suite, "load_dir entry wins over main.py", test_load_dir_entry_wins);
    CU_add_test (suite, "load_dir without entry or main.py", test_load_dir_no_entry);
    CU_add_test (suite, "load_dir lists manifest and entry problems", test_load_dir_collects_all);
    CU_add_test (suite, "load_dir manifest.json missing", test_load_dir_missing);
    CU_add_test (suite, "load_dir refuses a symlinked manifest", test_load_dir_symlink);
    CU_add_test (suite, "load_dir refuses non-regular files", test_load_dir_not_regular);
    CU_add_test (suite, "load_dir 64 KiB cap", test_load_dir_too_large);
    CU_add_test (suite, "destroy is safe on NULL and twice", test_destroy_safe);
    CU_add_test (suite, "sandbox fields network and schedule", test_sandbox_fields);
}
