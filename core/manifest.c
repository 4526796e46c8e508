/*  Module manifests: Selena's manifest.json validated per shared/spec/selena-protocol.md
    ("manifest.json"), plus modcore's own `entry` and `test` fields.

    A manifest comes from outside (a module ZIP), so nothing here asserts on its content:
    every rule is checked and every broken rule becomes one problem string "field: what is
    wrong", collected into a JSON array so the installer can show all of them at once.
    Only a document that is not a JSON object at all stops the checks early.

    Rules beyond the spec's text, decided here:
    - Whole-document problems (size, syntax, duplicate keys, not an object, the file
      itself) are reported under the field name "manifest.json".
    - The text is capped at MC_MANIFEST_MAX bytes before it is decoded.
    - A duplicate key is a problem; the text is then decoded again (last value wins) so
      the other rules are still checked and reported in the same answer.
    - Optional fields, when present, must have their type: JSON null is not "absent".
    - `port` is required only when `type` is valid and not SYSTEM, and the secrets.*
      rule is applied only when `type` is valid, so one wrong `type` is one problem.
    - File names under `ui` are relative paths with no ".." component and no backslash
      (a browser reads "\" in a URL as "/").
    - Unknown top-level keys are allowed, for forward compatibility. */
#include "core/manifest.h"

#include "core/cron.h"
#include "core/perms.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MC_MANIFEST_MAX  (64 * 1024) // bytes of manifest.json text
#define MC_MANIFEST_TEXT 1024        // characters in description and author

static const char *const s_types[] = {"SYSTEM",        "UI", "INTEGRATION", "DRIVER", "AUTOMATION",
                                      "IMPORT_SOURCE", NULL};
static const char *const s_ui_profiles[] = {"HEADLESS", "SETTINGS_ONLY", "ICON_SETTINGS", "FULL",
                                            NULL};
static const char *const s_runtime_modes[] = {"always_on", "on_demand", "scheduled", NULL};
static const char *const s_widget_sizes[] = {"1x1", "2x1", "2x2", "4x1", "1x2", NULL};

//  Appends one printf-style problem to the array. Always succeeds (aborts on no memory).
static void s_problem (json_t *problems, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static void s_problem (json_t *problems, const char *fmt, ...)
{
    char text[512];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    json_t *problem = json_string (text);
    if (!problem) {
        //  Truncation may have cut a UTF-8 sequence in an echoed value; keep ASCII only
        for (char *c = text; *c; c++)
            if ((unsigned char)*c >= 0x80)
                *c = '?';
        problem = json_string (text);
    }
    assert (problem);
    int rc = json_array_append_new (problems, problem);
    assert (rc == 0);
}

//  Returns a copy of s; aborts on no memory.
static char *s_strdup (const char *s)
{
    char *copy = strdup (s);
    assert (copy);
    return copy;
}

//  True if s is one of the NULL-terminated set.
static bool s_one_of (const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp (s, *set) == 0)
            return true;
    return false;
}

//  True if s matches ^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$.
static bool s_name_valid (const char *s)
{
    size_t len = strlen (s);
    if (len < 2 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool alnum = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9');
        if (!alnum && !(s[i] == '-' && i > 0 && i < len - 1))
            return false;
    }
    return true;
}

//  True if s matches ^[0-9]+\.[0-9]+\.[0-9]+$ with nothing before or after.
static bool s_version_valid (const char *s)
{
    for (int part = 0; part < 3; part++) {
        if (part > 0 && *s++ != '.')
            return false;
        if (!(*s >= '0' && *s <= '9'))
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

//  True if s is a non-empty relative path with no ".." component and no backslash.
static bool s_relative_path_valid (const char *s)
{
    if (*s == '\0' || *s == '/' || strchr (s, '\\'))
        return false;
    while (*s) {
        size_t len = strcspn (s, "/");
        if (len == 2 && s[0] == '.' && s[1] == '.')
            return false;
        s += len;
        if (*s == '/')
            s++;
    }
    return true;
}

//  Number of characters (UTF-8 code points) in s.
static size_t s_utf8_length (const char *s)
{
    size_t count = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            count++;
    return count;
}

//  Returns the string member `key` of obj, or NULL. An absent member is a problem when
//  required; a present member that is not a string is always a problem.
static const char *s_string_member (json_t *obj, const char *key, const char *field, bool required,
                                    json_t *problems)
{
    json_t *value = json_object_get (obj, key);
    if (!value) {
        if (required)
            s_problem (problems, "%s: missing", field);
        return NULL;
    }
    if (!json_is_string (value)) {
        s_problem (problems, "%s: must be a string", field);
        return NULL;
    }
    return json_string_value (value);
}

//  Returns the string member `key` of obj if it is one of set, else NULL (with a problem
//  unless the member is absent and optional).
static const char *s_enum_member (json_t *obj, const char *key, bool required,
                                  const char *const *set, const char *choices, json_t *problems)
{
    json_t *value = json_object_get (obj, key);
    if (!value) {
        if (required)
            s_problem (problems, "%s: missing", key);
        return NULL;
    }
    if (!json_is_string (value) || !s_one_of (json_string_value (value), set)) {
        s_problem (problems, "%s: must be one of %s", key, choices);
        return NULL;
    }
    return json_string_value (value);
}

//  Checks an optional string member holding a relative file name.
static void s_check_file_member (json_t *obj, const char *key, const char *field, bool required,
                                 json_t *problems)
{
    const char *file = s_string_member (obj, key, field, required, problems);
    if (file && !s_relative_path_valid (file))
        s_problem (problems, "%s: must be a relative file name without '..' or '\\'", field);
}

//  Checks an optional free-text member (description, author) and returns a copy, or NULL.
static char *s_text_member (json_t *root, const char *key, json_t *problems)
{
    const char *text = s_string_member (root, key, key, false, problems);
    if (!text)
        return NULL;
    if (s_utf8_length (text) > MC_MANIFEST_TEXT) {
        s_problem (problems, "%s: longer than %d characters", key, MC_MANIFEST_TEXT);
        return NULL;
    }
    return s_strdup (text);
}

//  Frees a NULL-terminated argv; safe on NULL.
static void s_argv_free (char **argv)
{
    if (argv)
        for (char **arg = argv; *arg; arg++)
            free (*arg);
    free (argv);
}

//  Returns a NULL-terminated copy of an optional argv member (entry, test), or NULL when
//  it is absent or broken (broken is a problem).
static char **s_argv_member (json_t *root, const char *key, json_t *problems)
{
    json_t *value = json_object_get (root, key);
    if (!value)
        return NULL;
    if (!json_is_array (value) || json_array_size (value) == 0) {
        s_problem (problems, "%s: must be a non-empty array of non-empty strings", key);
        return NULL;
    }
    bool valid = true;
    size_t index;
    json_t *arg;
    json_array_foreach (value, index, arg)
    {
        //  jansson refuses \u0000 unless asked, but a NUL would cut an argument silently
        if (!json_is_string (arg) || json_string_length (arg) == 0 ||
            strlen (json_string_value (arg)) != json_string_length (arg)) {
            s_problem (problems, "%s[%zu]: must be a non-empty string without NUL", key, index);
            valid = false;
        }
    }
    if (!valid)
        return NULL;
    char **argv = calloc (json_array_size (value) + 1, sizeof (char *));
    assert (argv);
    json_array_foreach (value, index, arg) argv[index] = s_strdup (json_string_value (arg));
    return argv;
}

//  Checks `permissions` and returns its bit set (only the valid names).
static uint32_t s_check_permissions (json_t *root, const char *type, json_t *problems)
{
    json_t *list = json_object_get (root, "permissions");
    if (!list) {
        s_problem (problems, "permissions: missing");
        return 0;
    }
    if (!json_is_array (list)) {
        s_problem (problems, "permissions: must be an array of permission names");
        return 0;
    }
    uint32_t bits = 0;
    size_t index;
    json_t *item;
    json_array_foreach (list, index, item)
    {
        if (!json_is_string (item)) {
            s_problem (problems, "permissions[%zu]: must be a string", index);
            continue;
        }
        const char *name = json_string_value (item);
        uint32_t bit = mc_perm_from_name (name);
        if (!mc_perm_grantable (bit)) {
            if (bit)
                s_problem (problems, "permissions: '%s' cannot be requested by a manifest", name);
            else
                s_problem (problems, "permissions: unknown permission '%.64s'", name);
        } else if (bits & bit)
            s_problem (problems, "permissions: '%s' listed more than once", name);
        else if ((bit & (MC_PERM_SECRETS_OAUTH | MC_PERM_SECRETS_PROXY)) && type &&
                 strcmp (type, "INTEGRATION") != 0)
            s_problem (problems, "permissions: '%s' is only for INTEGRATION modules", name);
        else
            bits |= bit;
    }
    return bits;
}

//  Checks `port` against the module type; returns the port or 0.
static int s_check_port (json_t *root, const char *type, json_t *problems)
{
    json_t *port = json_object_get (root, "port");
    if (type && strcmp (type, "SYSTEM") == 0) {
        if (port)
            s_problem (problems, "port: not allowed for SYSTEM modules");
        return 0;
    }
    if (!port) {
        if (type) //  an unknown type is already a problem; its port rule is unknown too
            s_problem (problems, "port: missing (required for %s modules)", type);
        return 0;
    }
    if (!json_is_integer (port) || json_integer_value (port) < 8100 ||
        json_integer_value (port) > 8200) {
        s_problem (problems, "port: must be an integer in 8100..8200");
        return 0;
    }
    return (int)json_integer_value (port);
}

//  Checks the optional `ui` object.
static void s_check_ui (json_t *root, json_t *problems)
{
    json_t *ui = json_object_get (root, "ui");
    if (!ui)
        return;
    if (!json_is_object (ui)) {
        s_problem (problems, "ui: must be an object");
        return;
    }
    s_check_file_member (ui, "icon", "ui.icon", false, problems);
    s_check_file_member (ui, "settings", "ui.settings", false, problems);
    json_t *widget = json_object_get (ui, "widget");
    if (!widget)
        return;
    if (!json_is_object (widget)) {
        s_problem (problems, "ui.widget: must be an object {file, size}");
        return;
    }
    s_check_file_member (widget, "file", "ui.widget.file", true, problems);
    json_t *size = json_object_get (widget, "size");
    if (!size)
        s_problem (problems, "ui.widget.size: missing");
    else if (!json_is_string (size) || !s_one_of (json_string_value (size), s_widget_sizes))
        s_problem (problems, "ui.widget.size: must be one of 1x1, 2x1, 2x2, 4x1, 1x2");
}

//  Checks one intent's `patterns`: an object of language -> array of strings.
static void s_check_patterns (json_t *patterns, size_t index, json_t *problems)
{
    if (!patterns) {
        s_problem (problems, "intents[%zu].patterns: missing", index);
        return;
    }
    if (!json_is_object (patterns)) {
        s_problem (problems, "intents[%zu].patterns: must be an object of language -> phrases",
                   index);
        return;
    }
    const char *lang;
    json_t *phrases;
    json_object_foreach (patterns, lang, phrases)
    {
        bool valid = json_is_array (phrases);
        size_t at;
        json_t *phrase;
        json_array_foreach (phrases, at, phrase) valid = valid && json_is_string (phrase);
        if (!valid)
            s_problem (problems, "intents[%zu].patterns.%.32s: must be an array of strings", index,
                       lang);
    }
}

//  Checks the optional `intents` array.
static void s_check_intents (json_t *root, json_t *problems)
{
    json_t *intents = json_object_get (root, "intents");
    if (!intents)
        return;
    if (!json_is_array (intents)) {
        s_problem (problems, "intents: must be an array of objects");
        return;
    }
    size_t index;
    json_t *intent;
    json_array_foreach (intents, index, intent)
    {
        if (!json_is_object (intent)) {
            s_problem (problems,
                       "intents[%zu]: must be an object {patterns, description, endpoint}", index);
            continue;
        }
        s_check_patterns (json_object_get (intent, "patterns"), index, problems);
        json_t *description = json_object_get (intent, "description");
        if (description && !json_is_string (description))
            s_problem (problems, "intents[%zu].description: must be a string", index);
        json_t *endpoint = json_object_get (intent, "endpoint");
        if (!endpoint)
            s_problem (problems, "intents[%zu].endpoint: missing", index);
        else if (!json_is_string (endpoint) || json_string_value (endpoint)[0] != '/')
            s_problem (problems, "intents[%zu].endpoint: must be a path starting with '/'", index);
    }
}

//  Checks the optional `resources` object and copies its values into self.
static void s_check_resources (json_t *root, mc_manifest_t *self, json_t *problems)
{
    json_t *resources = json_object_get (root, "resources");
    if (!resources)
        return;
    if (!json_is_object (resources)) {
        s_problem (problems, "resources: must be an object {memory_mb, cpu}");
        return;
    }
    json_t *memory = json_object_get (resources, "memory_mb");
    if (memory) {
        if (json_is_integer (memory) && json_integer_value (memory) >= 16 &&
            json_integer_value (memory) <= 65536)
            self->memory_mb = (int)json_integer_value (memory);
        else
            s_problem (problems, "resources.memory_mb: must be an integer in 16..65536");
    }
    json_t *cpu = json_object_get (resources, "cpu");
    if (cpu) {
        if (json_is_number (cpu) && json_number_value (cpu) > 0 && json_number_value (cpu) <= 64)
            self->cpu = json_number_value (cpu);
        else
            s_problem (problems, "resources.cpu: must be a number > 0 and <= 64");
    }
}

//  Checks modcore's sandbox fields: `network` ("loopback", the default, or "none": an
//  own network namespace) and `schedule` (a cron line, required by runtime_mode
//  "scheduled" and only allowed with it; Selena manifests have none, and then the module
//  runs hourly: "@hourly").
static void s_check_sandbox (json_t *root, mc_manifest_t *self, json_t *problems)
{
    static const char *const networks[] = {"loopback", "none", NULL};
    const char *network =
        s_enum_member (root, "network", false, networks, "loopback, none", problems);
    self->network = s_strdup (network ? network : "loopback");
    const char *schedule = s_string_member (root, "schedule", "schedule", false, problems);
    bool scheduled = self->runtime_mode && strcmp (self->runtime_mode, "scheduled") == 0;
    if (schedule && !scheduled)
        s_problem (problems, "schedule: only for runtime_mode \"scheduled\"");
    else if (schedule) {
        mc_cron_t cron;
        char why[160];
        if (mc_cron_parse (schedule, &cron, why, sizeof why) != 0)
            s_problem (problems, "schedule: %s", why);
        else if (mc_cron_next (&cron, (int64_t)time (NULL)) < 0)
            s_problem (problems, "schedule: never fires");
        else
            self->schedule = s_strdup (schedule);
    } else if (scheduled && !json_object_get (root, "schedule"))
        self->schedule = s_strdup ("@hourly");
}

//  Checks every rule on a decoded object and returns a manifest holding the valid parts.
//  Takes ownership of root. The caller decides on the problems.
static mc_manifest_t *s_validate (json_t *root, json_t *problems)
{
    mc_manifest_t *self = calloc (1, sizeof *self);
    assert (self);
    self->json = root;

    const char *name = s_string_member (root, "name", "name", true, problems);
    if (name && !s_name_valid (name))
        s_problem (problems, "name: must match ^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$ (2..64 "
                             "lowercase letters, digits and inner '-')");
    else if (name)
        self->name = s_strdup (name);

    const char *version = s_string_member (root, "version", "version", true, problems);
    if (version && !s_version_valid (version))
        s_problem (problems, "version: must be MAJOR.MINOR.PATCH in digits, e.g. 1.0.0");
    else if (version)
        self->version = s_strdup (version);

    const char *type =
        s_enum_member (root, "type", true, s_types,
                       "SYSTEM, UI, INTEGRATION, DRIVER, AUTOMATION, IMPORT_SOURCE", problems);
    if (type)
        self->type = s_strdup (type);

    const char *api_version = s_string_member (root, "api_version", "api_version", true, problems);
    if (api_version && api_version[0] == '\0')
        s_problem (problems, "api_version: must be a non-empty string, e.g. \"1.0\"");
    else if (api_version && strncmp (api_version, "1.", 2) != 0)
        s_problem (problems, "api_version: unsupported (this core speaks 1.x)");
    else if (api_version)
        self->api_version = s_strdup (api_version);

    const char *ui_profile =
        s_enum_member (root, "ui_profile", false, s_ui_profiles,
                       "HEADLESS, SETTINGS_ONLY, ICON_SETTINGS, FULL", problems);
    if (ui_profile)
        self->ui_profile = s_strdup (ui_profile);

    const char *runtime_mode = s_enum_member (root, "runtime_mode", false, s_runtime_modes,
                                              "always_on, on_demand, scheduled", problems);
    self->runtime_mode = s_strdup (runtime_mode ? runtime_mode : "always_on");

    self->port = s_check_port (root, type, problems);
    self->permissions = s_check_permissions (root, type, problems);
    self->description = s_text_member (root, "description", problems);
    self->author = s_text_member (root, "author", problems);
    s_check_ui (root, problems);
    s_check_intents (root, problems);
    s_check_resources (root, self, problems);
    self->entry = s_argv_member (root, "entry", problems);
    self->test = s_argv_member (root, "test", problems);
    s_check_sandbox (root, self, problems);
    return self;
}

//  Decodes manifest text; returns the top-level object, or NULL after recording why not.
//  A duplicate key is recorded, and the text decoded again so the other rules still run.
static json_t *s_decode (const char *text, size_t len, json_t *problems)
{
    if (len > MC_MANIFEST_MAX) {
        s_problem (problems, "manifest.json: larger than %d KiB", MC_MANIFEST_MAX / 1024);
        return NULL;
    }
    json_error_t error;
    json_t *root = json_loadb (text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    if (!root && json_error_code (&error) == json_error_duplicate_key) {
        s_problem (problems, "manifest.json: duplicate key (line %d: %s)", error.line, error.text);
        root = json_loadb (text, len, JSON_DECODE_ANY, &error);
    }
    if (!root) {
        s_problem (problems, "manifest.json: not valid JSON (line %d, column %d: %s)", error.line,
                   error.column, error.text);
        return NULL;
    }
    if (!json_is_object (root)) {
        s_problem (problems, "manifest.json: must be a JSON object");
        json_decref (root);
        return NULL;
    }
    return root;
}

//  Hands the result over: the manifest when there is no problem, else NULL and the list.
static mc_manifest_t *s_finish (mc_manifest_t *self, json_t *problems, json_t **problems_p)
{
    if (json_array_size (problems) == 0) {
        json_decref (problems);
        return self;
    }
    mc_manifest_destroy (&self);
    *problems_p = problems;
    return NULL;
}

mc_manifest_t *mc_manifest_parse (const char *text, size_t len, json_t **problems_p)
{
    assert (problems_p);
    assert (text || len == 0);
    *problems_p = NULL;
    json_t *problems = json_array ();
    assert (problems);
    mc_manifest_t *self = NULL;
    json_t *root = s_decode (text ? text : "", len, problems);
    if (root)
        self = s_validate (root, problems);
    return s_finish (self, problems, problems_p);
}

//  Reads manifest.json from an open module directory into a new buffer (caller frees),
//  refusing links and anything but a regular file. Returns NULL after recording why.
static char *s_read_manifest (int dir_fd, size_t *len_p, json_t *problems)
{
    //  O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below
    int fd =
        openat (dir_fd, "manifest.json", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd == -1) {
        if (errno == ENOENT)
            s_problem (problems, "manifest.json: missing");
        else if (errno == ELOOP)
            s_problem (problems, "manifest.json: is a symbolic link (refused)");
        else
            s_problem (problems, "manifest.json: cannot be opened (%s)", strerror (errno));
        return NULL;
    }
    struct stat st;
    if (fstat (fd, &st) == -1 || !S_ISREG (st.st_mode)) {
        s_problem (problems, "manifest.json: not a regular file");
        close (fd);
        return NULL;
    }
    if (st.st_size > MC_MANIFEST_MAX) {
        s_problem (problems, "manifest.json: larger than %d KiB", MC_MANIFEST_MAX / 1024);
        close (fd);
        return NULL;
    }
    //  One byte more than the cap, so a file that grew since fstat is still caught
    char *text = malloc (MC_MANIFEST_MAX + 1);
    assert (text);
    size_t len = 0;
    while (len < MC_MANIFEST_MAX + 1) {
        ssize_t got = read (fd, text + len, MC_MANIFEST_MAX + 1 - len);
        if (got == -1 && errno == EINTR)
            continue;
        if (got == -1) {
            s_problem (problems, "manifest.json: cannot be read (%s)", strerror (errno));
            free (text);
            close (fd);
            return NULL;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    close (fd);
    *len_p = len;
    return text;
}

//  Gives a manifest without `entry` Selena's uvicorn start command when the module
//  directory has a main.py (a regular file, not a link); otherwise records a problem.
static void s_apply_fallback (mc_manifest_t *self, int dir_fd, json_t *problems)
{
    struct stat st;
    if (fstatat (dir_fd, "main.py", &st, AT_SYMLINK_NOFOLLOW) == -1 || !S_ISREG (st.st_mode)) {
        s_problem (problems, "entry: missing (add an \"entry\" array, or a main.py for the "
                             "uvicorn fallback)");
        return;
    }
    if (self->port == 0) {
        //  A bad or missing port is already a problem; SYSTEM modules have no port at all
        if (self->type && strcmp (self->type, "SYSTEM") == 0)
            s_problem (problems, "entry: missing (SYSTEM modules have no port, so the uvicorn "
                                 "fallback does not apply; add an \"entry\" array)");
        return;
    }
    char port[16];
    snprintf (port, sizeof port, "%d", self->port);
    const char *argv[] = {"python3", "-m",        "uvicorn", "main:app",
                          "--host",  "127.0.0.1", "--port",  port};
    size_t count = sizeof argv / sizeof argv[0];
    self->entry = calloc (count + 1, sizeof (char *));
    assert (self->entry);
    for (size_t i = 0; i < count; i++)
        self->entry[i] = s_strdup (argv[i]);
}

mc_manifest_t *mc_manifest_load_dir (const char *dir, json_t **problems_p)
{
    assert (dir);
    assert (problems_p);
    *problems_p = NULL;
    json_t *problems = json_array ();
    assert (problems);
    mc_manifest_t *self = NULL;
    int dir_fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd == -1) {
        s_problem (problems, "manifest.json: missing (cannot open the module directory: %s)",
                   strerror (errno));
        return s_finish (self, problems, problems_p);
    }
    size_t len = 0;
    char *text = s_read_manifest (dir_fd, &len, problems);
    json_t *root = text ? s_decode (text, len, problems) : NULL;
    free (text);
    if (root) {
        self = s_validate (root, problems);
        if (!json_object_get (root, "entry"))
            s_apply_fallback (self, dir_fd, problems);
    }
    close (dir_fd);
    return s_finish (self, problems, problems_p);
}

void mc_manifest_destroy (mc_manifest_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mc_manifest_t *self = *self_p;
    free (self->name);
    free (self->version);
    free (self->type);
    free (self->api_version);
    free (self->ui_profile);
    free (self->runtime_mode);
    free (self->network);
    free (self->schedule);
    free (self->description);
    free (self->author);
    s_argv_free (self->entry);
    s_argv_free (self->test);
    json_decref (self->json);
    free (self);
    *self_p = NULL;
}
