/*  modctl: the operator's command line for modcored.

    One HTTP request (two for `status`) per command against the core's /api/v1 API,
    authenticated with the admin token that modcored writes to <data-dir>/admin.token,
    so a local operator never types it. Answers are printed as text, or as the server's
    JSON with --json.

    Exit status: 0 ok, 1 the server answered with an error (or an answer modctl cannot
    understand), 2 usage or local error (bad option, unreadable token or ZIP),
    3 the server could not be reached or did not answer in time.

    The token is never printed, not even in error messages. libcurl talks only to the
    given URL: no proxy, no redirects, http(s) only.

    Options of one command (-f, -n, --failed...) are parsed with the global ones and
    refused for the commands they do not apply to. */

#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MC_VERSION
#define MC_VERSION "0.0.0"
#endif

#define MC_CTL_DEFAULT_URL      "http://127.0.0.1:7070"
#define MC_CTL_DEFAULT_DATA_DIR "./data"
#define MC_CTL_CONNECT_TIMEOUT  5L                    // seconds to open the TCP connection
#define MC_CTL_MAX_ANSWER       (64u * 1024 * 1024)   // refuse answers larger than this
#define MC_CTL_MAX_TOKEN        4096                  // longest admin token accepted
#define MC_CTL_MAX_ARCHIVE      (1024u * 1024 * 1024) // largest module ZIP sent
#define MC_CTL_TAIL_LINES       20                    // events tail: default number of events
#define MC_CTL_RING             1024                  // the core keeps this many recent events

enum { MC_CTL_OK = 0, MC_CTL_SERVER_ERROR = 1, MC_CTL_LOCAL_ERROR = 2, MC_CTL_UNREACHABLE = 3 };

//  Options that belong to some commands only (bits of mc_ctl_command_t.options).
enum {
    MC_CTL_OPT_FOLLOW = 1 << 0, // -f, --follow
    MC_CTL_OPT_LINES = 1 << 1,  // -n N
    MC_CTL_OPT_STATUS = 1 << 2, // --failed, --pending, --delivered
    MC_CTL_OPT_MODULE = 1 << 3, // --module NAME
};

//  Options from the command line and environment, fixed before a command runs.
typedef struct {
    const char *data_dir; // where admin.token lives
    char url[1024];       // base URL of the core, without trailing '/' or /api/v1
    char *token;          // admin token (owned), NULL for commands that need none
    bool token_from_file; // the token was read from <data_dir>/admin.token
    bool json;            // print the server's JSON instead of text
    long timeout;         // seconds for a whole request
    unsigned given;       // command options given (MC_CTL_OPT_* bits)
    bool follow;          // events tail -f: keep polling for new events
    long lines;           // events tail -n: how many recent events
    const char *status;   // deliveries: "dead", "pending" or "delivered"; NULL for all
    const char *module;   // deliveries --module: one module's deliveries; NULL for all
    bool quiet;           // events tail -f while the core is away: no message per poll
} mc_ctl_options_t;

//  One command: its name, how many arguments it takes and who runs it.
typedef struct {
    const char *name;     // as typed after the options
    int min_args;         // fewest arguments
    int max_args;         // most arguments
    unsigned options;     // the command options it accepts (MC_CTL_OPT_* bits)
    const char *synopsis; // argument names for the usage text
    const char *summary;  // one line for the usage text
    bool needs_token;     // reads the admin token before running
    long timeout;         // default request timeout in seconds
    int (*handler) (const mc_ctl_options_t *opts, char **args);
} mc_ctl_command_t;

//  A growing buffer for an HTTP answer body.
typedef struct {
    char *data;  // bytes received, NUL-terminated, or NULL while empty
    size_t size; // number of bytes in data, without the NUL
} mc_ctl_buffer_t;

//  A request body to send, with its content type.
typedef struct {
    const char *data;         // bytes to send
    size_t size;              // number of bytes
    const char *content_type; // value of the Content-Type header
} mc_ctl_body_t;

static void s_usage (FILE *out);

// --- small helpers ---------------------------------------------------------------------

//  Returns the string at key in object, or fallback when absent, null or not a string.
static const char *s_str (const json_t *object, const char *key, const char *fallback)
{
    const char *value = json_string_value (json_object_get (object, key));
    return value ? value : fallback;
}

//  Returns the integer at key in object, or 0 when absent or not an integer.
static json_int_t s_int (const json_t *object, const char *key)
{
    return json_integer_value (json_object_get (object, key));
}

//  Writes a duration as "42s", "5m12s", "3h05m" or "2d04h" into buf.
static void s_format_duration (long long seconds, char *buf, size_t size)
{
    if (seconds < 0)
        seconds = 0;
    if (seconds < 60)
        snprintf (buf, size, "%llds", seconds);
    else if (seconds < 3600)
        snprintf (buf, size, "%lldm%02llds", seconds / 60, seconds % 60);
    else if (seconds < 86400)
        snprintf (buf, size, "%lldh%02lldm", seconds / 3600, seconds % 3600 / 60);
    else
        snprintf (buf, size, "%lldd%02lldh", seconds / 86400, seconds % 86400 / 3600);
}

//  Parses an ISO-8601 time ("2026-01-02T03:04:05Z", optional fraction, 'Z' or ±HH:MM)
//  into *when. Returns 0, or -1 if text is not such a time.
static int s_parse_time (const char *text, time_t *when)
{
    struct tm tm = {0};
    int used = 0;
    if (!text || sscanf (text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                         &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6)
        return -1;
    const char *rest = text + used;
    if (*rest == '.')
        for (rest++; isdigit ((unsigned char)*rest); rest++)
            ;
    long offset = 0;
    int hours, minutes;
    if (strcmp (rest, "Z") == 0 || strcmp (rest, "z") == 0)
        offset = 0;
    else if ((*rest == '+' || *rest == '-') && strlen (rest) == 6 &&
             sscanf (rest + 1, "%2d:%2d", &hours, &minutes) == 2)
        offset = (*rest == '-' ? -1 : 1) * (hours * 3600L + minutes * 60L);
    else
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t utc = timegm (&tm);
    if (utc == (time_t)-1)
        return -1;
    *when = utc - offset;
    return 0;
}

//  Writes how long a RUNNING module has been up into buf, or "-" when not running or
//  when started_at is missing.
static void s_module_uptime (const json_t *record, char *buf, size_t size)
{
    time_t started;
    if (strcmp (s_str (record, "status", ""), "RUNNING") != 0 ||
        s_parse_time (s_str (record, "started_at", NULL), &started) != 0)
        snprintf (buf, size, "-");
    else
        s_format_duration ((long long)difftime (time (NULL), started), buf, size);
}

//  Writes a JSON value for a human: strings raw, arrays of strings comma-joined, null as
//  "-", anything else as compact JSON.
static void s_print_value (const json_t *value)
{
    if (!value || json_is_null (value)) {
        fputs ("-", stdout);
        return;
    }
    if (json_is_string (value)) {
        fputs (json_string_value (value), stdout);
        return;
    }
    if (json_is_array (value)) {
        size_t count = json_array_size (value), index;
        for (index = 0; index < count && json_is_string (json_array_get (value, index)); index++)
            ;
        if (index == count) { // all strings
            for (index = 0; index < count; index++)
                printf ("%s%s", index ? ", " : "",
                        json_string_value (json_array_get (value, index)));
            if (json_array_size (value) == 0)
                fputs ("-", stdout);
            return;
        }
    }
    char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    fputs (text ? text : "?", stdout);
    free (text);
}

//  Prints a JSON value pretty on stdout, as one document.
static void s_print_json (const json_t *value)
{
    char *text = json_dumps (value, JSON_INDENT (2) | JSON_ENCODE_ANY);
    if (!text)
        abort ();
    puts (text);
    free (text);
}

//  Reports an answer modctl cannot use. Returns the exit status for it.
static int s_unexpected (const char *what)
{
    fprintf (stderr, "modctl: unexpected answer from the server: %s\n", what);
    return MC_CTL_SERVER_ERROR;
}

//  Checks that a module name is safe to put in a URL path. Returns 0, or prints why not
//  and returns the exit status for a usage error. The server judges the rest.
static int s_check_name (const char *name)
{
    size_t length = strlen (name);
    bool safe = length > 0 && length <= 128 && strcmp (name, ".") != 0 && strcmp (name, "..");
    for (const char *c = name; safe && *c; c++)
        safe = isalnum ((unsigned char)*c) || *c == '-' || *c == '_' || *c == '.';
    if (safe)
        return 0;
    fprintf (stderr, "modctl: '%s' is not a valid module name\n", name);
    return MC_CTL_LOCAL_ERROR;
}

// --- local files -----------------------------------------------------------------------

//  Reads the whole regular file at path into a new buffer (the caller frees it).
//  Returns NULL with errno set on failure (EISDIR/EINVAL for non-regular files).
static char *s_read_file (const char *path, size_t max_size, size_t *size_p)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *data = NULL;
    int saved_errno = 0;
    if (fstat (fd, &st) != 0)
        saved_errno = errno;
    else if (S_ISDIR (st.st_mode))
        saved_errno = EISDIR;
    else if (!S_ISREG (st.st_mode))
        saved_errno = EINVAL;
    else if ((unsigned long long)st.st_size > max_size)
        saved_errno = EFBIG;
    else {
        size_t size = (size_t)st.st_size, done = 0;
        data = malloc (size + 1);
        if (!data)
            abort ();
        while (done < size) {
            ssize_t got = read (fd, data + done, size - done);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                saved_errno = got < 0 ? errno : EIO; // file shrank while reading
                break;
            }
            done += (size_t)got;
        }
        data[done] = '\0';
        *size_p = done;
    }
    close (fd);
    if (saved_errno) {
        free (data);
        errno = saved_errno;
        return NULL;
    }
    return data;
}

//  Strips trailing whitespace from token in place and checks it is usable in a header.
//  Returns true when it is non-empty and printable.
static bool s_token_clean (char *token)
{
    size_t length = strlen (token);
    while (length > 0 && isspace ((unsigned char)token[length - 1]))
        token[--length] = '\0';
    for (size_t i = 0; i < length; i++)
        if (!isgraph ((unsigned char)token[i]))
            return false;
    return length > 0;
}

//  Returns the admin token (the caller frees it): the given one, or the contents of
//  <data_dir>/admin.token. Prints why on failure and returns NULL.
static char *s_token_load (const char *given, const char *data_dir)
{
    if (given) {
        char *token = strdup (given);
        if (!token)
            abort ();
        if (s_token_clean (token))
            return token;
        fprintf (stderr, "modctl: the admin token given by --token or MODCORE_TOKEN is empty "
                         "or contains spaces or control characters\n");
        free (token);
        return NULL;
    }
    char path[4096];
    snprintf (path, sizeof path, "%s/admin.token", data_dir);
    size_t size;
    char *token = s_read_file (path, MC_CTL_MAX_TOKEN, &size);
    if (!token) {
        fprintf (stderr,
                 "modctl: cannot read admin token from %s: %s (is modcored running with this "
                 "--data-dir?)\n",
                 path, strerror (errno));
        return NULL;
    }
    if (strlen (token) == size && s_token_clean (token))
        return token;
    fprintf (stderr, "modctl: the admin token in %s is empty or malformed\n", path);
    free (token);
    return NULL;
}

// --- HTTP --------------------------------------------------------------------------------

//  libcurl write callback: appends to an mc_ctl_buffer_t, refusing oversized answers.
static size_t s_on_body (char *bytes, size_t size, size_t count, void *userdata)
{
    mc_ctl_buffer_t *buffer = userdata;
    size_t length = size * count;
    if (length > MC_CTL_MAX_ANSWER - buffer->size)
        return 0; // makes libcurl fail with CURLE_WRITE_ERROR
    char *grown = realloc (buffer->data, buffer->size + length + 1);
    if (!grown)
        abort ();
    memcpy (grown + buffer->size, bytes, length);
    buffer->data = grown;
    buffer->size += length;
    buffer->data[buffer->size] = '\0';
    return length;
}

//  Explains a failed transfer. Returns the exit status for it.
static int s_transport_error (const mc_ctl_options_t *opts, CURL *curl, CURLcode code,
                              const char *errors)
{
    const char *reason = *errors ? errors : curl_easy_strerror (code);
    curl_off_t connected = 0;
    curl_easy_getinfo (curl, CURLINFO_CONNECT_TIME_T, &connected);
    if (code == CURLE_URL_MALFORMAT || code == CURLE_UNSUPPORTED_PROTOCOL) {
        fprintf (stderr, "modctl: bad URL %s: %s\n", opts->url, reason);
        return MC_CTL_LOCAL_ERROR;
    }
    if (code == CURLE_WRITE_ERROR) {
        fprintf (stderr, "modctl: the answer from %s is larger than %u MiB\n", opts->url,
                 MC_CTL_MAX_ANSWER >> 20);
        return MC_CTL_SERVER_ERROR;
    }
    if (opts->quiet)
        return MC_CTL_UNREACHABLE;
    if (code == CURLE_OPERATION_TIMEDOUT && connected > 0) {
        fprintf (stderr, "modctl: no answer from %s within %ld s (use --timeout to wait longer)\n",
                 opts->url, opts->timeout);
        return MC_CTL_UNREACHABLE;
    }
    fprintf (stderr,
             "modctl: cannot reach modcored at %s: %s\n"
             "        (start it with `make run`, or `modcored --data-dir %s`, or point --url "
             "at it)\n",
             opts->url, reason, opts->data_dir);
    return MC_CTL_UNREACHABLE;
}

//  Explains an error answer (non-2xx). Returns the exit status for it.
static int s_server_error (const mc_ctl_options_t *opts, long status, const json_t *answer)
{
    if (opts->json && answer)
        s_print_json (answer);
    if (!json_is_object (answer)) {
        fprintf (stderr, "modctl: the server answered HTTP %ld without a JSON error body\n",
                 status);
        return MC_CTL_SERVER_ERROR;
    }
    const char *code = s_str (answer, "error", "ERROR");
    fprintf (stderr, "modctl: %s (%s, HTTP %ld)\n", s_str (answer, "detail", code), code, status);
    const json_t *problems = json_object_get (answer, "problems");
    for (size_t index = 0; index < json_array_size (problems); index++) {
        const char *problem = json_string_value (json_array_get (problems, index));
        fprintf (stderr, "  - %s\n", problem ? problem : "?");
    }
    if (status == 401 && opts->token_from_file)
        fprintf (stderr,
                 "  (the admin token from %s/admin.token was refused: is the modcored at %s "
                 "using this --data-dir?)\n",
                 opts->data_dir, opts->url);
    const char *output = s_str (answer, "output", NULL);
    if (output && *output) {
        fprintf (stderr, "  output:\n");
        for (const char *line = output; *line;) {
            size_t length = strcspn (line, "\n");
            fprintf (stderr, "    %.*s\n", (int)length, line);
            line += length + (line[length] == '\n');
        }
    }
    return MC_CTL_SERVER_ERROR;
}

//  Sends one request to <url>/api/v1<path>, with the admin token when with_token, and
//  a body when body is not NULL. On a 2xx answer returns 0 and sets *answer_p to the
//  parsed JSON (NULL for an empty body; the caller frees it). Otherwise prints why and
//  returns the exit status.
static int s_call (const mc_ctl_options_t *opts, const char *method, const char *path,
                   const mc_ctl_body_t *body, bool with_token, json_t **answer_p)
{
    *answer_p = NULL;
    CURL *curl = curl_easy_init ();
    if (!curl) {
        fprintf (stderr, "modctl: cannot initialise libcurl\n");
        return MC_CTL_LOCAL_ERROR;
    }
    char url[2048];
    snprintf (url, sizeof url, "%s/api/v1%s", opts->url, path);
    char errors[CURL_ERROR_SIZE] = "";
    mc_ctl_buffer_t received = {NULL, 0};

    struct curl_slist *headers = curl_slist_append (NULL, "Accept: application/json");
    headers = curl_slist_append (headers, "Expect:"); // no 100-continue round trip
    char *authorization = NULL;
    if (with_token) {
        assert (opts->token);
        if (asprintf (&authorization, "Authorization: Bearer %s", opts->token) < 0)
            abort ();
        headers = curl_slist_append (headers, authorization);
    }
    if (body) {
        char content_type[128];
        snprintf (content_type, sizeof content_type, "Content-Type: %s", body->content_type);
        headers = curl_slist_append (headers, content_type);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->size);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, body->data);
    } else if (strcmp (method, "POST") == 0) {
        headers = curl_slist_append (headers, "Content-Type:"); // no form type for no body
        curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, "");
    }
    if (!headers)
        abort ();
    if (strcmp (method, "GET") != 0 && strcmp (method, "POST") != 0)
        curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);

    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt (curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT, MC_CTL_CONNECT_TIMEOUT);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, opts->timeout);
    curl_easy_setopt (curl, CURLOPT_USERAGENT, "modctl/" MC_VERSION);
    curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, errors);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &received);

    CURLcode code = curl_easy_perform (curl);
    long status = 0;
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    int rc = MC_CTL_OK;
    if (code != CURLE_OK)
        rc = s_transport_error (opts, curl, code, errors);
    else {
        json_t *answer = NULL;
        json_error_t parse_error;
        if (received.size > 0)
            answer =
                json_loadb (received.data, received.size, JSON_REJECT_DUPLICATES, &parse_error);
        if (status < 200 || status > 299)
            rc = s_server_error (opts, status, answer);
        else if (received.size > 0 && !answer) {
            fprintf (stderr,
                     "modctl: the server answered HTTP %ld with a body that is not JSON "
                     "(%s)\n",
                     status, parse_error.text);
            rc = MC_CTL_SERVER_ERROR;
        } else {
            *answer_p = answer;
            answer = NULL;
        }
        json_decref (answer);
    }
    curl_slist_free_all (headers);
    free (authorization);
    free (received.data);
    curl_easy_cleanup (curl);
    return rc;
}

//  Returns the array of module records in a GET /modules answer, or NULL.
static json_t *s_modules_of (json_t *answer)
{
    json_t *modules = json_is_array (answer) ? answer : json_object_get (answer, "modules");
    return json_is_array (modules) ? modules : NULL;
}

// --- commands ----------------------------------------------------------------------------

//  status: core health and module counts by status.
static int s_cmd_status (const mc_ctl_options_t *opts, char **args)
{
    json_t *health = NULL, *list = NULL, *combined = NULL;
    int rc = s_call (opts, "GET", "/health", NULL, false, &health);
    if (rc == MC_CTL_OK && !json_is_object (health))
        rc = s_unexpected ("health is not a JSON object");
    if (rc == MC_CTL_OK)
        rc = s_call (opts, "GET", "/modules", NULL, true, &list);
    json_t *modules = s_modules_of (list);
    if (rc == MC_CTL_OK && !modules)
        rc = s_unexpected ("no \"modules\" array");
    if (rc != MC_CTL_OK)
        goto done;

    if (opts->json) {
        combined =
            json_pack ("{s:s, s:O, s:O}", "url", opts->url, "health", health, "modules", modules);
        s_print_json (combined);
        goto done;
    }
    char uptime[32];
    s_format_duration (s_int (health, "uptime"), uptime, sizeof uptime);
    printf ("core:       %s\n", s_str (health, "status", "?"));
    printf ("version:    %s\n", s_str (health, "version", "?"));
    printf ("mode:       %s\n", s_str (health, "mode", "?"));
    printf ("uptime:     %s\n", uptime);
    printf ("integrity:  ");
    s_print_value (json_object_get (health, "integrity"));
    printf ("\nurl:        %s\n", opts->url);

    //  Count by status: the usual states first, in lifecycle order, then any others.
    static const char *order[] = {"RUNNING", "STARTING", "INSTALLING",
                                  "STOPPED", "FAILED",   "REMOVED"};
    json_t *counts = json_object ();
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        json_object_set_new (counts, order[i], json_integer (0));
    for (size_t index = 0; index < json_array_size (modules); index++) {
        const char *state = s_str (json_array_get (modules, index), "status", "UNKNOWN");
        json_object_set_new (counts, state, json_integer (s_int (counts, state) + 1));
    }
    printf ("modules:    %zu", json_array_size (modules));
    const char *separator = " (";
    for (void *it = json_object_iter (counts); it; it = json_object_iter_next (counts, it)) {
        json_int_t count = json_integer_value (json_object_iter_value (it));
        if (count == 0)
            continue;
        printf ("%s%" JSON_INTEGER_FORMAT " %s", separator, count, json_object_iter_key (it));
        separator = ", ";
    }
    printf ("%s\n", json_array_size (modules) ? ")" : "");
    json_decref (counts);
done:
    json_decref (combined);
    json_decref (list);
    json_decref (health);
    return rc;
}

//  Fills the list table's cells for one module record.
#define MC_CTL_COLUMNS 7
static void s_list_cells (const json_t *record, char cells[MC_CTL_COLUMNS][80])
{
    const char *status = s_str (record, "status", "?");
    snprintf (cells[0], 80, "%s", s_str (record, "name", "?"));
    snprintf (cells[1], 80, "%s", s_str (record, "version", "-"));
    snprintf (cells[2], 80, "%s", s_str (record, "type", "-"));
    snprintf (cells[3], 80, "%s", status);
    json_int_t port = s_int (record, "port"), pid = s_int (record, "pid");
    snprintf (cells[4], 80, port > 0 ? "%" JSON_INTEGER_FORMAT : "-", port);
    snprintf (cells[5], 80, pid > 0 ? "%" JSON_INTEGER_FORMAT : "-", pid);
    s_module_uptime (record, cells[6], 80);
}

//  list: installed modules as an aligned table.
static int s_cmd_list (const mc_ctl_options_t *opts, char **args)
{
    json_t *answer;
    int rc = s_call (opts, "GET", "/modules", NULL, true, &answer);
    if (rc != MC_CTL_OK)
        return rc;
    json_t *modules = s_modules_of (answer);
    if (!modules)
        rc = s_unexpected ("no \"modules\" array");
    else if (opts->json)
        s_print_json (answer);
    else if (json_array_size (modules) == 0)
        puts ("no modules installed");
    else {
        char cells[MC_CTL_COLUMNS][80] = {"NAME", "VERSION", "TYPE",  "STATUS",
                                          "PORT", "PID",     "UPTIME"};
        int width[MC_CTL_COLUMNS];
        for (int column = 0; column < MC_CTL_COLUMNS; column++)
            width[column] = (int)strlen (cells[column]);
        size_t count = json_array_size (modules);
        for (size_t index = 0; index < count; index++) {
            s_list_cells (json_array_get (modules, index), cells);
            for (int column = 0; column < MC_CTL_COLUMNS; column++)
                if ((int)strlen (cells[column]) > width[column])
                    width[column] = (int)strlen (cells[column]);
        }
        printf ("%-*s  %-*s  %-*s  %-*s  %*s  %*s  %s\n", width[0], "NAME", width[1], "VERSION",
                width[2], "TYPE", width[3], "STATUS", width[4], "PORT", width[5], "PID", "UPTIME");
        for (size_t index = 0; index < count; index++) {
            s_list_cells (json_array_get (modules, index), cells);
            printf ("%-*s  %-*s  %-*s  %-*s  %*s  %*s  %s\n", width[0], cells[0], width[1],
                    cells[1], width[2], cells[2], width[3], cells[3], width[4], cells[4], width[5],
                    cells[5], cells[6]);
        }
    }
    json_decref (answer);
    return rc;
}

//  Prints "key:" padded so that values line up in a column.
static void s_print_label (const char *key)
{
    printf ("%s:%*s ", key, strlen (key) < 14 ? (int)(14 - strlen (key)) : 0, "");
}

//  Prints a module record as "key: value" lines, the known fields first, then any
//  field this modctl does not know yet.
static void s_print_record (const json_t *record)
{
    static const char *known[] = {"name",        "version",      "type",         "api_version",
                                  "ui_profile",  "runtime_mode", "status",       "status_reason",
                                  "port",        "pid",          "permissions",  "entry",
                                  "description", "author",       "installed_at", "updated_at",
                                  "started_at"};
    const size_t known_count = sizeof known / sizeof known[0];
    for (size_t i = 0; i < known_count; i++) {
        const char *key = known[i];
        const json_t *value = json_object_get (record, key);
        if (!value)
            continue;
        if (strcmp (key, "status_reason") == 0 && !*s_str (record, key, ""))
            continue; // only worth a line when there is a reason
        if ((strcmp (key, "port") == 0 || strcmp (key, "pid") == 0) &&
            json_integer_value (value) == 0)
            value = NULL; // 0 means none: shown as "-"
        s_print_label (key);
        if (strcmp (key, "entry") == 0 && json_is_array (value))
            for (size_t index = 0; index < json_array_size (value); index++) {
                const char *word = json_string_value (json_array_get (value, index));
                printf ("%s%s", index ? " " : "", word ? word : "?");
            }
        else
            s_print_value (value);
        printf ("\n");
        if (strcmp (key, "pid") == 0) {
            char uptime[32];
            s_module_uptime (record, uptime, sizeof uptime);
            s_print_label ("uptime");
            printf ("%s\n", uptime);
        }
    }
    const json_t *last = json_object_get (record, "last_exit");
    if (json_is_object (last)) {
        s_print_label ("last_exit");
        if (s_int (last, "signal"))
            printf ("killed by signal %" JSON_INTEGER_FORMAT "\n", s_int (last, "signal"));
        else
            printf ("exit code %" JSON_INTEGER_FORMAT "\n", s_int (last, "exit_code"));
        const char *tail = s_str (last, "stderr_tail", "");
        if (*tail) {
            printf ("stderr (last lines):\n");
            for (const char *line = tail; *line;) {
                size_t length = strcspn (line, "\n");
                printf ("  | %.*s\n", (int)length, line);
                line += length + (line[length] == '\n');
            }
        }
    }
    for (void *it = json_object_iter ((json_t *)record); it;
         it = json_object_iter_next ((json_t *)record, it)) {
        const char *key = json_object_iter_key (it);
        size_t i = 0;
        while (i < known_count && strcmp (key, known[i]) != 0)
            i++;
        if (i < known_count || strcmp (key, "last_exit") == 0)
            continue; // printed above
        s_print_label (key);
        s_print_value (json_object_iter_value (it));
        printf ("\n");
    }
}

//  info NAME: one module's record.
static int s_cmd_info (const mc_ctl_options_t *opts, char **args)
{
    if (s_check_name (args[0]))
        return MC_CTL_LOCAL_ERROR;
    char path[256];
    snprintf (path, sizeof path, "/modules/%s", args[0]);
    json_t *record;
    int rc = s_call (opts, "GET", path, NULL, true, &record);
    if (rc != MC_CTL_OK)
        return rc;
    if (!json_is_object (record))
        rc = s_unexpected ("the module record is not a JSON object");
    else if (opts->json)
        s_print_json (record);
    else
        s_print_record (record);
    json_decref (record);
    return rc;
}

//  Prints the outcome of a lifecycle command as one line, e.g.
//  "installed hello 1.0.0: RUNNING on port 8100", or the JSON answer with --json.
static int s_print_outcome (const mc_ctl_options_t *opts, const char *verb, const json_t *record,
                            const char *fallback_name)
{
    if (opts->json) {
        if (record)
            s_print_json (record);
        return MC_CTL_OK;
    }
    if (record && !json_is_object (record))
        return s_unexpected ("the module record is not a JSON object");
    printf ("%s %s", verb, s_str (record, "name", fallback_name));
    const char *version = s_str (record, "version", NULL);
    const char *status = s_str (record, "status", NULL);
    const char *reason = s_str (record, "status_reason", "");
    json_int_t port = s_int (record, "port");
    if (version)
        printf (" %s", version);
    if (status)
        printf (": %s", status);
    if (status && port > 0 && (!strcmp (status, "RUNNING") || !strcmp (status, "STARTING")))
        printf (" on port %" JSON_INTEGER_FORMAT, port);
    if (*reason)
        printf (" (%s)", reason);
    printf ("\n");
    return MC_CTL_OK;
}

//  install FILE.zip: uploads a module archive; the server answers once it runs.
static int s_cmd_install (const mc_ctl_options_t *opts, char **args)
{
    const char *file = args[0];
    size_t size = 0;
    char *archive = s_read_file (file, MC_CTL_MAX_ARCHIVE, &size);
    if (!archive) {
        fprintf (stderr, "modctl: cannot read module archive %s: %s\n", file, strerror (errno));
        return MC_CTL_LOCAL_ERROR;
    }
    if (size < 4 || memcmp (archive, "PK", 2) != 0) {
        fprintf (stderr, "modctl: %s is not a ZIP archive\n", file);
        free (archive);
        return MC_CTL_LOCAL_ERROR;
    }
    if (!opts->json && isatty (STDERR_FILENO))
        fprintf (stderr, "modctl: installing %s (%zu bytes), waiting up to %ld s...\n", file, size,
                 opts->timeout);
    mc_ctl_body_t body = {archive, size, "application/zip"};
    json_t *record;
    int rc = s_call (opts, "POST", "/modules/install", &body, true, &record);
    free (archive);
    if (rc == MC_CTL_OK)
        rc = s_print_outcome (opts, "installed", record, "?");
    json_decref (record);
    return rc;
}

//  Runs a lifecycle command on one module: method on /modules/NAME[/action].
static int s_module_action (const mc_ctl_options_t *opts, const char *name, const char *method,
                            const char *action, const char *verb)
{
    if (s_check_name (name))
        return MC_CTL_LOCAL_ERROR;
    char path[256];
    snprintf (path, sizeof path, "/modules/%s%s%s", name, action ? "/" : "", action ? action : "");
    json_t *record;
    int rc = s_call (opts, method, path, NULL, true, &record);
    if (rc == MC_CTL_OK)
        rc = s_print_outcome (opts, verb, record, name);
    json_decref (record);
    return rc;
}

//  uninstall NAME: stops and removes a module.
static int s_cmd_uninstall (const mc_ctl_options_t *opts, char **args)
{
    return s_module_action (opts, args[0], "DELETE", NULL, "uninstalled");
}

//  start NAME: starts a stopped or failed module.
static int s_cmd_start (const mc_ctl_options_t *opts, char **args)
{
    return s_module_action (opts, args[0], "POST", "start", "started");
}

//  stop NAME: stops a running module.
static int s_cmd_stop (const mc_ctl_options_t *opts, char **args)
{
    return s_module_action (opts, args[0], "POST", "stop", "stopped");
}

//  Prints one event as a line: time type source payload.
static void s_print_event (const json_t *event)
{
    printf ("%s %s %s ", s_str (event, "timestamp", "-"), s_str (event, "type", "?"),
            s_str (event, "source", "-"));
    const json_t *payload = json_object_get (event, "payload");
    char *text = payload ? json_dumps (payload, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    printf ("%s\n", text ? text : "{}");
    free (text);
}

//  GET /events/recent?after=SEQ&limit=N: sets *events_p to the answer's "events" array
//  (a new reference; the caller frees it). Returns the exit status.
static int s_recent (const mc_ctl_options_t *opts, json_int_t after, long limit, json_t **events_p)
{
    char path[128];
    snprintf (path, sizeof path, "/events/recent?after=%" JSON_INTEGER_FORMAT "&limit=%ld", after,
              limit);
    json_t *answer;
    *events_p = NULL;
    int rc = s_call (opts, "GET", path, NULL, true, &answer);
    if (rc != MC_CTL_OK)
        return rc;
    json_t *events = json_object_get (answer, "events");
    if (json_is_array (events))
        *events_p = json_incref (events);
    else
        rc = s_unexpected ("no \"events\" array");
    json_decref (answer);
    return rc;
}

//  Prints events from index first on, as lines or (follow --json) as JSON lines, and
//  remembers the last one's seq and id. Returns how many were printed.
static size_t s_print_events (const mc_ctl_options_t *opts, json_t *events, size_t first,
                              json_int_t *seq, char *id, size_t id_size)
{
    size_t count = json_array_size (events), printed = 0;
    for (size_t index = first; index < count; index++) {
        json_t *event = json_array_get (events, index);
        if (opts->json) {
            char *text = json_dumps (event, JSON_COMPACT);
            puts (text ? text : "{}");
            free (text);
        } else
            s_print_event (event);
        *seq = s_int (event, "seq");
        snprintf (id, id_size, "%s", s_str (event, "id", ""));
        printed++;
    }
    fflush (stdout);
    return printed;
}

//  events tail [-f] [-n N]: the last N events of the core's ring, oldest first; with -f
//  then every second the new ones. -f waits for a core that went away, and follows a
//  core that restarted (its seq went back) from its first event.
static int s_cmd_events (const mc_ctl_options_t *given, char **args)
{
    mc_ctl_options_t copy = *given;
    mc_ctl_options_t *opts = &copy; // quiet is set while the core is away
    if (strcmp (args[0], "tail") != 0) {
        fprintf (stderr, "modctl: unknown events command '%s' (try: events tail)\n", args[0]);
        return MC_CTL_LOCAL_ERROR;
    }
    long lines = opts->lines ? opts->lines : MC_CTL_TAIL_LINES;
    if (lines > MC_CTL_RING)
        lines = MC_CTL_RING; // the core keeps the last MC_CTL_RING events
    json_t *events;
    int rc = s_recent (opts, 0, MC_CTL_RING, &events);
    if (rc != MC_CTL_OK)
        return rc;
    size_t count = json_array_size (events);
    size_t first = count > (size_t)lines ? count - (size_t)lines : 0;
    json_int_t seq = 0;
    char id[64] = "";
    if (opts->json && !opts->follow) {
        json_t *last = json_array ();
        for (size_t index = first; index < count; index++)
            json_array_append (last, json_array_get (events, index));
        json_t *answer = json_pack ("{s:o}", "events", last);
        s_print_json (answer);
        json_decref (answer);
    } else
        s_print_events (opts, events, first, &seq, id, sizeof id);
    json_decref (events);
    while (opts->follow && rc == MC_CTL_OK) {
        sleep (1);
        rc = s_recent (opts, seq, MC_CTL_RING, &events);
        if (rc == MC_CTL_UNREACHABLE) {
            if (!opts->quiet)
                fprintf (stderr, "modctl: waiting for modcored at %s to come back...\n", opts->url);
            opts->quiet = true;
            rc = MC_CTL_OK;
            continue;
        }
        if (rc != MC_CTL_OK)
            break;
        if (opts->quiet)
            fprintf (stderr, "modctl: modcored at %s is back\n", opts->url);
        opts->quiet = false;
        if (s_print_events (opts, events, 0, &seq, id, sizeof id) == 0 && seq > 0) {
            //  Nothing new: is the last event seen still there, or did the core restart?
            json_t *check;
            rc = s_recent (opts, seq - 1, 1, &check);
            json_t *same = json_array_get (check, 0);
            if (rc == MC_CTL_OK && (!same || strcmp (s_str (same, "id", ""), id) != 0))
                seq = 0;
            if (rc == MC_CTL_UNREACHABLE) // gone again: the next poll says so
                rc = MC_CTL_OK;
            json_decref (check);
        }
        json_decref (events);
    }
    return rc;
}

//  Prints deliveries as a table: ID (short) MODULE EVENT STATUS ATTEMPTS LAST_ERROR.
static void s_print_deliveries (const json_t *deliveries)
{
    enum { COLUMNS = 6 };
    static const char *heads[COLUMNS] = {"ID",     "MODULE",   "EVENT",
                                         "STATUS", "ATTEMPTS", "LAST_ERROR"};
    int width[COLUMNS];
    for (int column = 0; column < COLUMNS; column++)
        width[column] = (int)strlen (heads[column]);
    size_t count = json_array_size (deliveries);
    char (*cells)[COLUMNS][160] = calloc (count + 1, sizeof *cells);
    if (!cells)
        abort ();
    for (size_t index = 0; index < count; index++) {
        const json_t *d = json_array_get (deliveries, index);
        const char *error = s_str (d, "last_error", "");
        snprintf (cells[index][0], 160, "%.8s", s_str (d, "delivery_id", "?"));
        snprintf (cells[index][1], 160, "%s", s_str (d, "module", "?"));
        snprintf (cells[index][2], 160, "%s", s_str (d, "event_type", "?"));
        snprintf (cells[index][3], 160, "%s", s_str (d, "status", "?"));
        snprintf (cells[index][4], 160, "%" JSON_INTEGER_FORMAT, s_int (d, "attempts"));
        snprintf (cells[index][5], 160, "%s", *error ? error : "-");
        for (int column = 0; column < COLUMNS - 1; column++)
            if ((int)strlen (cells[index][column]) > width[column])
                width[column] = (int)strlen (cells[index][column]);
    }
    printf ("%-*s  %-*s  %-*s  %-*s  %*s  %s\n", width[0], heads[0], width[1], heads[1], width[2],
            heads[2], width[3], heads[3], width[4], heads[4], heads[5]);
    for (size_t index = 0; index < count; index++)
        printf ("%-*s  %-*s  %-*s  %-*s  %*s  %s\n", width[0], cells[index][0], width[1],
                cells[index][1], width[2], cells[index][2], width[3], cells[index][3], width[4],
                cells[index][4], cells[index][5]);
    free (cells);
}

//  Finds the one dead or pending delivery whose id starts with prefix; copies its full
//  id into id. Returns the exit status (1 when none or several match).
static int s_delivery_resolve (const mc_ctl_options_t *opts, const char *prefix, char *id,
                               size_t size)
{
    static const char *states[] = {"dead", "pending"};
    size_t matches = 0;
    for (size_t s = 0; s < 2; s++) {
        char path[96];
        snprintf (path, sizeof path, "/events/deliveries?status=%s&limit=1000", states[s]);
        json_t *answer;
        int rc = s_call (opts, "GET", path, NULL, true, &answer);
        if (rc != MC_CTL_OK)
            return rc;
        json_t *deliveries = json_object_get (answer, "deliveries");
        for (size_t index = 0; index < json_array_size (deliveries); index++) {
            const char *full = s_str (json_array_get (deliveries, index), "delivery_id", "");
            //  (one that went from dead to pending between the two calls counts once)
            if (strncmp (full, prefix, strlen (prefix)) == 0 && strcmp (full, id) != 0) {
                snprintf (id, size, "%s", full);
                matches++;
            }
        }
        json_decref (answer);
    }
    if (matches == 1)
        return MC_CTL_OK;
    fprintf (stderr,
             matches ? "modctl: several deliveries start with '%s': give more of the id\n"
                     : "modctl: no failed or pending delivery starts with '%s'\n",
             prefix);
    return MC_CTL_SERVER_ERROR;
}

//  deliveries [--failed|--pending|--delivered] [--module NAME]: the table;
//  deliveries retry ID: retries one now.
static int s_cmd_deliveries (const mc_ctl_options_t *opts, char **args)
{
    json_t *answer;
    if (args[0]) {
        if (strcmp (args[0], "retry") != 0) {
            fprintf (stderr,
                     "modctl: unknown deliveries command '%s' (try: deliveries retry "
                     "ID)\n",
                     args[0]);
            return MC_CTL_LOCAL_ERROR;
        }
        const char *given = args[1];
        size_t length = strlen (given);
        if (length == 0 || length > 64 || strspn (given, "0123456789abcdef-") != length) {
            fprintf (stderr, "modctl: '%s' is not a delivery id\n", given);
            return MC_CTL_LOCAL_ERROR;
        }
        char id[80] = "";
        snprintf (id, sizeof id, "%s", given);
        if (length < 36) { // a short id from the table
            id[0] = 0;
            int rc = s_delivery_resolve (opts, given, id, sizeof id);
            if (rc != MC_CTL_OK)
                return rc;
        }
        char path[160];
        snprintf (path, sizeof path, "/events/deliveries/%s/retry", id);
        int rc = s_call (opts, "POST", path, NULL, true, &answer);
        if (rc != MC_CTL_OK)
            return rc;
        if (opts->json)
            s_print_json (answer);
        else if (!json_is_object (answer))
            rc = s_unexpected ("the delivery is not a JSON object");
        else
            printf ("retrying delivery %s (%s to %s): %s\n", s_str (answer, "delivery_id", id),
                    s_str (answer, "event_type", "?"), s_str (answer, "module", "?"),
                    s_str (answer, "status", "?"));
        json_decref (answer);
        return rc;
    }
    char path[256];
    snprintf (path, sizeof path, "/events/deliveries?limit=1000%s%s%s%s",
              opts->status ? "&status=" : "", opts->status ? opts->status : "",
              opts->module ? "&module=" : "", opts->module ? opts->module : "");
    int rc = s_call (opts, "GET", path, NULL, true, &answer);
    if (rc != MC_CTL_OK)
        return rc;
    json_t *deliveries = json_object_get (answer, "deliveries");
    if (!json_is_array (deliveries))
        rc = s_unexpected ("no \"deliveries\" array");
    else if (opts->json)
        s_print_json (answer);
    else if (json_array_size (deliveries) == 0)
        puts ("no deliveries");
    else
        s_print_deliveries (deliveries);
    json_decref (answer);
    return rc;
}

//  Prints the lines of a /logs answer; returns the offset to continue from, or -1.
static long long s_print_lines (const json_t *answer)
{
    const json_t *lines = json_object_get (answer, "lines");
    if (!json_is_array (lines) || !json_is_integer (json_object_get (answer, "offset")))
        return -1;
    for (size_t i = 0; i < json_array_size (lines); i++)
        puts (json_string_value (json_array_get (lines, i)) ?: "");
    fflush (stdout);
    return s_int (answer, "offset");
}

//  logs NAME [-n N] [-f]: the module's stdout/stderr log; -f keeps following it.
static int s_cmd_logs (const mc_ctl_options_t *opts, char **args)
{
    if (s_check_name (args[0]))
        return MC_CTL_LOCAL_ERROR;
    char path[256];
    snprintf (path, sizeof path, "/modules/%s/logs?lines=%ld", args[0],
              opts->lines ? opts->lines : 100);
    json_t *answer;
    int rc = s_call (opts, "GET", path, NULL, true, &answer);
    if (rc != MC_CTL_OK)
        return rc;
    if (opts->json && !opts->follow)
        s_print_json (answer);
    long long offset = opts->json ? s_int (answer, "offset") : s_print_lines (answer);
    json_decref (answer);
    if (offset < 0)
        return s_unexpected ("no \"lines\" and \"offset\" in the answer");
    while (opts->follow) {
        sleep (1);
        snprintf (path, sizeof path, "/modules/%s/logs?offset=%lld", args[0], offset);
        rc = s_call (opts, "GET", path, NULL, true, &answer);
        if (rc != MC_CTL_OK)
            return rc;
        long long next = s_print_lines (answer);
        json_decref (answer);
        if (next < 0)
            return s_unexpected ("no \"lines\" and \"offset\" in the answer");
        offset = next;
    }
    return MC_CTL_OK;
}

//  Writes a byte count as "512K", "12.3M", "1.2G".
static void s_format_bytes (long long bytes, char *buf, size_t size)
{
    if (bytes < 1024 * 1024)
        snprintf (buf, size, "%lldK", bytes / 1024);
    else if (bytes < 1024LL * 1024 * 1024)
        snprintf (buf, size, "%.1fM", bytes / 1048576.0);
    else
        snprintf (buf, size, "%.1fG", bytes / 1073741824.0);
}

//  top: resource use of every module (CPU %, RSS, processes, restarts, uptime).
static int s_cmd_top (const mc_ctl_options_t *opts, char **args)
{
    json_t *answer;
    int rc = s_call (opts, "GET", "/modules", NULL, true, &answer);
    if (rc != MC_CTL_OK)
        return rc;
    json_t *modules = s_modules_of (answer);
    if (!modules)
        rc = s_unexpected ("no \"modules\" array");
    else if (opts->json)
        s_print_json (answer);
    else {
        printf ("%-24s %-10s %7s %6s %8s %5s %8s %8s\n", "NAME", "STATUS", "PID", "CPU%", "RSS",
                "PIDS", "RESTARTS", "UPTIME");
        for (size_t i = 0; i < json_array_size (modules); i++) {
            const json_t *m = json_array_get (modules, i);
            const json_t *u = json_object_get (m, "usage");
            char rss[32] = "-", cpu[32] = "-", pids[32] = "-", pid[32] = "-", up[32] = "-";
            if (json_is_object (u)) {
                s_format_bytes (s_int (u, "rss_bytes"), rss, sizeof rss);
                snprintf (cpu, sizeof cpu, "%.1f",
                          json_number_value (json_object_get (u, "cpu_percent")));
                snprintf (pids, sizeof pids, "%" JSON_INTEGER_FORMAT, s_int (u, "pids"));
                if (s_int (u, "pid"))
                    snprintf (pid, sizeof pid, "%" JSON_INTEGER_FORMAT, s_int (u, "pid"));
                if (s_int (u, "uptime_s"))
                    s_format_duration (s_int (u, "uptime_s"), up, sizeof up);
            }
            printf ("%-24s %-10s %7s %6s %8s %5s %8" JSON_INTEGER_FORMAT " %8s\n",
                    s_str (m, "name", "?"), s_str (m, "status", "?"), pid, cpu, rss, pids,
                    s_int (m, "restarts"), up);
        }
    }
    json_decref (answer);
    return rc;
}

//  --- module CLI commands (blvm RegisterCliSpec) --------------------------------------

//  Prints the help generated from a module's spec: all subcommands, or one.
static void s_module_help (FILE *out, const char *module, const json_t *spec, const json_t *sub)
{
    const json_t *subs = json_object_get (spec, "subcommands");
    if (!sub) {
        fprintf (out, "usage: modctl [options] %s SUBCOMMAND [ARGS]\n", module);
        if (*s_str (spec, "about", ""))
            fprintf (out, "\n%s\n", s_str (spec, "about", ""));
        fprintf (out, "\nsubcommands:\n");
        for (size_t i = 0; i < json_array_size (subs); i++) {
            const json_t *one = json_array_get (subs, i);
            fprintf (out, "  %-16s %s\n", s_str (one, "name", "?"), s_str (one, "about", ""));
        }
        fprintf (out, "\n'modctl %s SUBCOMMAND --help' describes a subcommand's arguments.\n",
                 module);
        return;
    }
    const json_t *args = json_object_get (sub, "args");
    fprintf (out, "usage: modctl [options] %s %s", module, s_str (sub, "name", "?"));
    for (size_t i = 0; i < json_array_size (args); i++) {
        const json_t *arg = json_array_get (args, i);
        bool required = json_is_true (json_object_get (arg, "required"));
        bool value = json_is_true (json_object_get (arg, "takes_value"));
        const char *flag =
            *s_str (arg, "long_name", "") ? s_str (arg, "long_name", "") : s_str (arg, "name", "?");
        fprintf (out, " %s--%s%s%s", required ? "" : "[", flag, value ? " VALUE" : "",
                 required ? "" : "]");
    }
    fprintf (out, "\n");
    if (*s_str (sub, "about", ""))
        fprintf (out, "\n%s\n", s_str (sub, "about", ""));
    if (json_array_size (args))
        fprintf (out, "\narguments:\n");
    for (size_t i = 0; i < json_array_size (args); i++) {
        const json_t *arg = json_array_get (args, i);
        char names[96];
        const char *long_name =
            *s_str (arg, "long_name", "") ? s_str (arg, "long_name", "") : s_str (arg, "name", "?");
        if (*s_str (arg, "short_name", ""))
            snprintf (names, sizeof names, "-%s, --%s", s_str (arg, "short_name", ""), long_name);
        else
            snprintf (names, sizeof names, "--%s", long_name);
        fprintf (out, "  %-24s %s", names, s_str (arg, "help", ""));
        if (json_is_true (json_object_get (arg, "required")))
            fprintf (out, " (required)");
        else if (*s_str (arg, "default", ""))
            fprintf (out, " (default: %s)", s_str (arg, "default", ""));
        fprintf (out, "\n");
    }
}

//  Finds the arg of sub named by a command-line word: "--long", "--name" or "-s".
static const json_t *s_module_arg (const json_t *sub, const char *word, size_t len)
{
    const json_t *args = json_object_get (sub, "args");
    for (size_t i = 0; i < json_array_size (args); i++) {
        const json_t *arg = json_array_get (args, i);
        const char *names[] = {s_str (arg, "long_name", ""), s_str (arg, "name", ""),
                               s_str (arg, "short_name", "")};
        for (int k = 0; k < 3; k++)
            if (*names[k] && strlen (names[k]) == len && strncmp (names[k], word, len) == 0 &&
                ((k < 2) == (word[-1] == '-' && word[-2] == '-')))
                return arg;
    }
    return NULL;
}

//  Parses a subcommand's words against its spec into {"name": value | true}. Words are
//  --long VALUE, --long=VALUE, -s VALUE, flags, or plain values for the arguments that
//  take one, in the spec's order. Returns NULL after printing what is wrong.
static json_t *s_module_parse (const char *module, const json_t *sub, char **words, int count)
{
    json_t *given = json_object ();
    const json_t *args = json_object_get (sub, "args");
    for (int i = 0; i < count; i++) {
        const char *word = words[i];
        const json_t *arg = NULL;
        const char *value = NULL;
        if (word[0] == '-' && word[1] && strcmp (word, "-") != 0) {
            const char *name = word + (word[1] == '-' ? 2 : 1);
            const char *eq = strchr (name, '=');
            arg = s_module_arg (sub, name, eq ? (size_t)(eq - name) : strlen (name));
            if (!arg) {
                fprintf (stderr, "modctl: %s %s has no argument '%s' (see --help)\n", module,
                         s_str (sub, "name", "?"), word);
                json_decref (given);
                return NULL;
            }
            if (json_is_true (json_object_get (arg, "takes_value"))) {
                value = eq ? eq + 1 : (i + 1 < count ? words[++i] : NULL);
                if (!value) {
                    fprintf (stderr, "modctl: %s needs a value\n", word);
                    json_decref (given);
                    return NULL;
                }
            } else if (eq) {
                fprintf (stderr, "modctl: %s takes no value\n", word);
                json_decref (given);
                return NULL;
            }
        } else { // a plain value: the next argument that takes one and has none yet
            for (size_t k = 0; k < json_array_size (args) && !arg; k++) {
                const json_t *a = json_array_get (args, k);
                if (json_is_true (json_object_get (a, "takes_value")) &&
                    !json_object_get (given, s_str (a, "name", "")))
                    arg = a;
            }
            value = word;
            if (!arg) {
                fprintf (stderr, "modctl: unexpected '%s' (see '%s %s --help')\n", word, module,
                         s_str (sub, "name", "?"));
                json_decref (given);
                return NULL;
            }
        }
        json_object_set_new (given, s_str (arg, "name", "?"),
                             value ? json_string (value) : json_true ());
    }
    for (size_t k = 0; k < json_array_size (args); k++) {
        const json_t *a = json_array_get (args, k);
        if (json_is_true (json_object_get (a, "required")) &&
            !json_object_get (given, s_str (a, "name", "")) && !*s_str (a, "default", "")) {
            fprintf (
                stderr, "modctl: %s %s needs --%s (see --help)\n", module, s_str (sub, "name", "?"),
                *s_str (a, "long_name", "") ? s_str (a, "long_name", "") : s_str (a, "name", "?"));
            json_decref (given);
            return NULL;
        }
    }
    return given;
}

//  modctl MODULE SUBCOMMAND [ARGS]: validates the words against the module's registered
//  spec, has the core invoke the module, prints its stdout and stderr, and exits with
//  its exit code. MODULE [--help] prints the help generated from the spec.
static int s_cmd_module (const mc_ctl_options_t *opts, const char *module, char **words, int count)
{
    if (s_check_name (module))
        return MC_CTL_LOCAL_ERROR;
    char path[256];
    snprintf (path, sizeof path, "/cli/specs/%s", module);
    json_t *spec;
    int rc = s_call (opts, "GET", path, NULL, true, &spec);
    if (rc != MC_CTL_OK)
        return rc;
    const json_t *subs = json_object_get (spec, "subcommands");
    const char *name = count > 0 ? words[0] : NULL;
    if (!name || !strcmp (name, "--help") || !strcmp (name, "-h") || !strcmp (name, "help")) {
        s_module_help (stdout, module, spec, NULL);
        json_decref (spec);
        return name ? MC_CTL_OK : MC_CTL_LOCAL_ERROR;
    }
    const json_t *sub = NULL;
    for (size_t i = 0; i < json_array_size (subs) && !sub; i++)
        if (!strcmp (s_str (json_array_get (subs, i), "name", ""), name))
            sub = json_array_get (subs, i);
    if (!sub) {
        fprintf (stderr, "modctl: %s has no subcommand '%s'\n", module, name);
        s_module_help (stderr, module, spec, NULL);
        json_decref (spec);
        return MC_CTL_LOCAL_ERROR;
    }
    for (int i = 1; i < count; i++)
        if (!strcmp (words[i], "--help") || !strcmp (words[i], "-h")) {
            s_module_help (stdout, module, spec, sub);
            json_decref (spec);
            return MC_CTL_OK;
        }
    json_t *given = s_module_parse (module, sub, words + 1, count - 1);
    json_decref (spec);
    if (!given)
        return MC_CTL_LOCAL_ERROR;
    json_t *request = json_pack ("{s:s, s:o}", "subcommand", name, "args", given);
    char *text = json_dumps (request, JSON_COMPACT);
    json_decref (request);
    mc_ctl_body_t body = {text, strlen (text), "application/json"};
    snprintf (path, sizeof path, "/cli/invoke/%s", module);
    json_t *answer;
    rc = s_call (opts, "POST", path, &body, true, &answer);
    free (text);
    if (rc != MC_CTL_OK)
        return rc;
    if (opts->json) {
        s_print_json (answer);
        rc = (int)s_int (answer, "exit_code");
    } else {
        fputs (s_str (answer, "stdout", ""), stdout);
        fputs (s_str (answer, "stderr", ""), stderr);
        rc = (int)s_int (answer, "exit_code");
    }
    json_decref (answer);
    return rc < 0 || rc > 255 ? 1 : rc;
}

//  True if word is one of modctl's own commands (else it may name a module).
static bool s_is_builtin (const char *word);

//  Index of the first word of argv that is not an option or an option's value.
static int s_first_word (int argc, char **argv)
{
    static const char *const with_value[] = {"--data-dir", "--url",    "--token", "--timeout",
                                             "--lines",    "--module", "-n"};
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--"))
            return i + 1;
        if (argv[i][0] != '-' || !argv[i][1])
            return i;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            if (!strcmp (argv[i], with_value[k]))
                i++; // its value follows as a separate word
    }
    return argc;
}

//  help: the usage text on stdout.
static int s_cmd_help (const mc_ctl_options_t *opts, char **args)
{
    s_usage (stdout);
    return MC_CTL_OK;
}

static const mc_ctl_command_t s_commands[] = {
    {"status", 0, 0, 0, "", "core health and module counts", true, 30, s_cmd_status},
    {"list", 0, 0, 0, "", "installed modules as a table", true, 30, s_cmd_list},
    {"info", 1, 1, 0, "NAME", "one module's record", true, 30, s_cmd_info},
    {"install", 1, 1, 0, "FILE.zip", "install a module and wait until it runs", true, 180,
     s_cmd_install},
    {"uninstall", 1, 1, 0, "NAME", "stop and remove a module", true, 30, s_cmd_uninstall},
    {"start", 1, 1, 0, "NAME", "start a module", true, 30, s_cmd_start},
    {"stop", 1, 1, 0, "NAME", "stop a module", true, 30, s_cmd_stop},
    {"events", 1, 1, MC_CTL_OPT_FOLLOW | MC_CTL_OPT_LINES, "tail [-f] [-n N]",
     "the last N events (default 20), one line each; -f: then follow new ones", true, 30,
     s_cmd_events},
    {"deliveries", 0, 0, MC_CTL_OPT_STATUS | MC_CTL_OPT_MODULE,
     "[--failed|--pending|--delivered] [--module NAME]",
     "webhook deliveries as a table, newest first", true, 30, s_cmd_deliveries},
    {"deliveries", 2, 2, 0, "retry ID",
     "retry a failed or pending delivery now (ID or a unique start of it)", true, 30,
     s_cmd_deliveries},
    {"logs", 1, 1, MC_CTL_OPT_FOLLOW | MC_CTL_OPT_LINES, "NAME [-n N] [-f]",
     "a module's output log; -f follows it", true, 30, s_cmd_logs},
    {"top", 0, 0, 0, "", "resource use per module", true, 30, s_cmd_top},
    {"help", 0, 0, 0, "", "show this text", false, 30, s_cmd_help},
};

static bool s_is_builtin (const char *word)
{
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (!strcmp (s_commands[i].name, word))
            return true;
    return false;
}

//  Prints the usage text, built from the command table.
static void s_usage (FILE *out)
{
    fprintf (out, "usage: modctl [options] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++) {
        char left[128];
        snprintf (left, sizeof left, "%s %s", s_commands[i].name, s_commands[i].synopsis);
        if (strlen (left) > 20) // a long synopsis gets a line of its own
            fprintf (out, "  %s\n  %-20s %s\n", left, "", s_commands[i].summary);
        else
            fprintf (out, "  %-20s %s\n", left, s_commands[i].summary);
    }
    fprintf (out,
             "\noptions:\n"
             "  --data-dir DIR       modcored's data dir, where admin.token is read\n"
             "                       (default ./data, env MODCORE_DATA_DIR)\n"
             "  --url URL            the core (default " MC_CTL_DEFAULT_URL ", env MODCORE_URL)\n"
             "  --token TOKEN        admin token instead of the file (env MODCORE_TOKEN)\n"
             "  --json               print the server's JSON answer\n"
             "  --timeout SECONDS    request timeout (default 180 for install, 30 otherwise)\n"
             "  --version            print modctl's version\n"
             "\ncommand options:\n"
             "  -f, --follow         logs, events tail: keep printing what comes next\n"
             "  -n, --lines N        logs: how many lines (default 100); events tail: how many\n"
             "                       recent events (default 20, at most 1024)\n"
             "  --failed, --pending, --delivered\n"
             "                       deliveries: only those in this state (failed = dead)\n"
             "  --module NAME        deliveries: only this module's\n"
             "\nmodule commands:\n"
             "  modctl [options] MODULE SUBCOMMAND [ARGS]   run a module's own CLI command\n"
             "  modctl [options] MODULE --help              its subcommands (from its spec)\n"
             "\nexit status: 0 ok, 1 error answer from the server, 2 usage or local error,\n"
             "3 server not reachable; a module command exits with the module's exit code\n");
}

//  Returns the first command called name that takes argc arguments, else the first
//  called name (for its usage line), or NULL.
static const mc_ctl_command_t *s_command_find (const char *name, int argc)
{
    const mc_ctl_command_t *named = NULL;
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (strcmp (s_commands[i].name, name) == 0) {
            if (argc >= s_commands[i].min_args && argc <= s_commands[i].max_args)
                return &s_commands[i];
            if (!named)
                named = &s_commands[i];
        }
    return named;
}

//  The name of the first option among bits, for messages.
static const char *s_option_name (unsigned bits)
{
    if (bits & MC_CTL_OPT_FOLLOW)
        return "-f/--follow";
    if (bits & MC_CTL_OPT_LINES)
        return "-n";
    if (bits & MC_CTL_OPT_STATUS)
        return "--failed/--pending/--delivered";
    return "--module";
}

//  Copies a base URL into opts, without trailing '/' and without an /api/v1 suffix
//  (MODCORE_URL may be set to the Selena-style API URL). Returns false if it is not http(s).
static bool s_set_url (mc_ctl_options_t *opts, const char *url)
{
    if (strncmp (url, "http://", 7) != 0 && strncmp (url, "https://", 8) != 0)
        return false;
    if (strlen (url) >= sizeof opts->url)
        return false;
    strcpy (opts->url, url);
    size_t length = strlen (opts->url);
    while (length > 0 && opts->url[length - 1] == '/')
        opts->url[--length] = '\0';
    if (length > 7 && strcmp (opts->url + length - 7, "/api/v1") == 0)
        opts->url[length - 7] = '\0';
    return true;
}

int main (int argc, char *argv[])
{
    enum {
        OPT_DATA_DIR = 1,
        OPT_URL,
        OPT_TOKEN,
        OPT_JSON,
        OPT_TIMEOUT,
        OPT_VERSION,
        OPT_FAILED,
        OPT_PENDING,
        OPT_DELIVERED,
        OPT_MODULE
    };
    static const struct option options[] = {{"data-dir", required_argument, NULL, OPT_DATA_DIR},
                                            {"url", required_argument, NULL, OPT_URL},
                                            {"token", required_argument, NULL, OPT_TOKEN},
                                            {"json", no_argument, NULL, OPT_JSON},
                                            {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                            {"version", no_argument, NULL, OPT_VERSION},
                                            {"lines", required_argument, NULL, 'n'},
                                            {"follow", no_argument, NULL, 'f'},
                                            {"help", no_argument, NULL, 'h'},
                                            {"follow", no_argument, NULL, 'f'},
                                            {"failed", no_argument, NULL, OPT_FAILED},
                                            {"pending", no_argument, NULL, OPT_PENDING},
                                            {"delivered", no_argument, NULL, OPT_DELIVERED},
                                            {"module", required_argument, NULL, OPT_MODULE},
                                            {NULL, 0, NULL, 0}};

    mc_ctl_options_t opts = {.data_dir = getenv ("MODCORE_DATA_DIR")};
    if (!opts.data_dir || !*opts.data_dir)
        opts.data_dir = MC_CTL_DEFAULT_DATA_DIR;
    const char *url = getenv ("MODCORE_URL");
    if (!url || !*url)
        url = MC_CTL_DEFAULT_URL;
    const char *token = getenv ("MODCORE_TOKEN");
    if (token && !*token)
        token = NULL;

    //  modctl [options] MODULE SUBCOMMAND [ARGS]: the words after MODULE are the module's
    //  own, not modctl options; only what comes before it is parsed here.
    int word = s_first_word (argc, argv);
    char **module_words = NULL;
    int module_count = 0;
    const char *module_name = NULL;
    if (word < argc && !s_is_builtin (argv[word]) && argv[word][0] != '-') {
        module_name = argv[word];
        module_words = argv + word + 1;
        module_count = argc - word - 1;
        argc = word;
    }

    opterr = 0;
    int option;
    while ((option = getopt_long (argc, argv, ":hfn:", options, NULL)) != -1) {
        char *end;
        switch (option) {
            case 'f':
                opts.follow = true;
                opts.given |= MC_CTL_OPT_FOLLOW;
                break;
            case 'n':
                errno = 0;
                opts.lines = strtol (optarg, &end, 10);
                if (errno || *end || end == optarg || opts.lines < 1 || opts.lines > 10000) {
                    fprintf (stderr, "modctl: -n needs a number in 1..10000\n");
                    return MC_CTL_LOCAL_ERROR;
                }
                opts.given |= MC_CTL_OPT_LINES;
                break;
            case OPT_FAILED:
            case OPT_PENDING:
            case OPT_DELIVERED: {
                const char *status = option == OPT_FAILED    ? "dead"
                                     : option == OPT_PENDING ? "pending"
                                                             : "delivered";
                if (opts.status && strcmp (opts.status, status) != 0) {
                    fprintf (stderr,
                             "modctl: give at most one of --failed, --pending, --delivered\n");
                    return MC_CTL_LOCAL_ERROR;
                }
                opts.status = status;
                opts.given |= MC_CTL_OPT_STATUS;
                break;
            }
            case OPT_MODULE:
                opts.module = optarg;
                opts.given |= MC_CTL_OPT_MODULE;
                break;
            case OPT_DATA_DIR:
                opts.data_dir = optarg;
                break;
            case OPT_URL:
                url = optarg;
                break;
            case OPT_TOKEN:
                token = optarg;
                break;
            case OPT_JSON:
                opts.json = true;
                break;
            case OPT_TIMEOUT:
                errno = 0;
                opts.timeout = strtol (optarg, &end, 10);
                if (errno || *end || end == optarg || opts.timeout < 1 || opts.timeout > 86400) {
                    fprintf (stderr, "modctl: --timeout needs a number of seconds in 1..86400\n");
                    return MC_CTL_LOCAL_ERROR;
                }
                break;
            case OPT_VERSION:
                printf ("modctl %s\n", MC_VERSION);
                return MC_CTL_OK;
            case 'h':
                s_usage (stdout);
                return MC_CTL_OK;
            case ':':
                fprintf (stderr, "modctl: option '%s' needs a value\n", argv[optind - 1]);
                return MC_CTL_LOCAL_ERROR;
            default:
                fprintf (stderr, "modctl: unknown option '%s'\n", argv[optind - 1]);
                s_usage (stderr);
                return MC_CTL_LOCAL_ERROR;
        }
    }
    if (module_name) {
        if (opts.given) {
            fprintf (stderr, "modctl: %s does not apply to module commands\n",
                     s_option_name (opts.given));
            return MC_CTL_LOCAL_ERROR;
        }
        if (!s_set_url (&opts, url)) {
            fprintf (stderr, "modctl: the URL must start with http:// or https:// (got '%s')\n",
                     url);
            return MC_CTL_LOCAL_ERROR;
        }
        if (!opts.timeout)
            opts.timeout = 90; // the core waits up to 60 s for the module
        if (!(opts.token = s_token_load (token, opts.data_dir)))
            return MC_CTL_LOCAL_ERROR;
        opts.token_from_file = token == NULL;
        if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            free (opts.token);
            return MC_CTL_LOCAL_ERROR;
        }
        int rc = s_cmd_module (&opts, module_name, module_words, module_count);
        curl_global_cleanup ();
        free (opts.token);
        return rc;
    }
    if (optind >= argc) {
        s_usage (stderr);
        return MC_CTL_LOCAL_ERROR;
    }
    int nargs = argc - optind - 1;
    const mc_ctl_command_t *command = s_command_find (argv[optind], nargs);
    if (!command) {
        fprintf (stderr, "modctl: unknown command '%s'\n", argv[optind]);
        s_usage (stderr);
        return MC_CTL_LOCAL_ERROR;
    }
    if (nargs < command->min_args || nargs > command->max_args) {
        for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
            if (strcmp (s_commands[i].name, command->name) == 0)
                fprintf (stderr, "usage: modctl [options] %s %s\n", s_commands[i].name,
                         s_commands[i].synopsis);
        return MC_CTL_LOCAL_ERROR;
    }
    if (opts.given & ~command->options) {
        fprintf (stderr, "modctl: %s does not apply to '%s%s%s'\n",
                 s_option_name (opts.given & ~command->options), command->name, nargs ? " " : "",
                 nargs ? argv[optind + 1] : "");
        return MC_CTL_LOCAL_ERROR;
    }
    if (opts.module && s_check_name (opts.module))
        return MC_CTL_LOCAL_ERROR;
    if (!s_set_url (&opts, url)) {
        fprintf (stderr, "modctl: the URL must start with http:// or https:// (got '%s')\n", url);
        return MC_CTL_LOCAL_ERROR;
    }
    if (!opts.timeout)
        opts.timeout = command->timeout;
    if (command->needs_token && !(opts.token = s_token_load (token, opts.data_dir)))
        return MC_CTL_LOCAL_ERROR;
    opts.token_from_file = token == NULL;

    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf (stderr, "modctl: cannot initialise libcurl\n");
        free (opts.token);
        return MC_CTL_LOCAL_ERROR;
    }
    int rc = command->handler (&opts, argv + optind + 1);
    curl_global_cleanup ();
    free (opts.token);
    return rc;
}
