/*  /api/v1/storage: each module's own key-value database, answered by the storage actor.

    Only module tokens have a database: the module is always the caller (the name comes
    from the token, never from the request), so one module cannot name another's data;
    the admin and UI tokens get 400 NOT_A_MODULE. Keys travel in the path
    percent-encoded: civetweb is told not to decode URLs (gateway.c), so the key is
    taken from the raw path and decoded once here, and "%2F" is a '/' inside the key,
    not a separator. Values are any JSON value, stored as compact JSON of at most
    64 KiB. */
#include <string.h>

#include "actors/storage.h"
#include "gateway/http.h"

#define PUT_BODY_MAX (4 * MC_STORAGE_MAX_VALUE) // room for whitespace around the value

//  The caller's module name, or NULL after sending 400 NOT_A_MODULE.
static const char *s_module (mc_http_req_t *req)
{
    if (req->principal.kind == MC_KIND_MODULE)
        return req->principal.name;
    mc_http_error (req, 400, "NOT_A_MODULE",
                   "storage belongs to modules: call with the module's own token");
    return NULL;
}

static int s_invalid_key (mc_http_req_t *req)
{
    return mc_http_error (req, 400, "INVALID_KEY",
                          "a key is 1..%d bytes of printable ASCII (no control characters), "
                          "percent-encoded in the path",
                          MC_STORAGE_MAX_KEY);
}

//  The still-encoded key of /storage/{key}: the raw path after "/storage/".
static const char *s_raw_key (mc_http_req_t *req)
{
    const char *raw = req->info->local_uri ? req->info->local_uri : "";
    if (strncmp (raw, "/api/v1", 7) == 0)
        raw += 7;
    return strncmp (raw, "/storage/", 9) == 0 ? raw + 9 : NULL;
}

//  Decodes the key of the path into key (MC_STORAGE_MAX_KEY + 1 bytes). Returns 0, or
//  -1 after sending 400 INVALID_KEY.
static int s_path_key (mc_http_req_t *req, char *key)
{
    const char *raw = s_raw_key (req);
    int len = raw ? mg_url_decode (raw, (int)strlen (raw), key, MC_STORAGE_MAX_KEY + 1, 0) : -1;
    if (len < 0 || !mc_storage_key_valid (key, (size_t)len)) {
        s_invalid_key (req);
        return -1;
    }
    return 0;
}

//  Calls the storage actor; returns its OK reply (caller frees), or NULL after sending
//  the actor's error (or 504), with *status the status sent.
static mc_env_t *s_call (mc_http_req_t *req, mc_env_t *env, int *status)
{
    mc_env_t *reply =
        mc_http_call (req, req->thread->storage, env, (int)req->ctx->config->call_timeout_ms);
    *status = 504;
    if (!reply)
        return NULL;
    if (reply->status == MC__STATUS__STATUS_OK &&
        reply->body_case == MC__ENVELOPE__BODY_STORAGE_RESULT)
        return reply;
    if (reply->status == MC__STATUS__STATUS_OK)
        *status = mc_http_error (req, 500, "INTERNAL", "unexpected answer from storage");
    else if (reply->body_case == MC__ENVELOPE__BODY_STORAGE_RESULT) {
        //  A quota refusal carries the module's usage: shown beside the detail.
        Mc__StorageResult *r = reply->storage_result;
        *status = mc_http_json (req, mc_status_http (reply->status),
                                json_pack ("{s:s, s:s, s:{s:I, s:I, s:I, s:I}}", "error",
                                           reply->error, "detail", reply->detail, "usage", "keys",
                                           (json_int_t)r->keys, "bytes", (json_int_t)r->bytes,
                                           "max_keys", (json_int_t)r->max_keys, "max_bytes",
                                           (json_int_t)r->max_bytes));
    } else
        *status = mc_http_actor_error (req, reply);
    mc_env_free (reply);
    return NULL;
}

//  A stored value (compact JSON text) as a JSON value; null if it does not parse (a
//  damaged database), logged.
static json_t *s_value (const char *key, const char *text)
{
    json_t *value = json_loads (text ? text : "", JSON_DECODE_ANY, NULL);
    if (!value) {
        zsys_warning ("gateway: stored value of '%s' is not JSON; shown as null", key);
        value = json_null ();
    }
    return value;
}

//  Reads the body as a JSON object of at most max bytes. Returns it, or NULL after
//  sending 400/413/415.
static json_t *s_read_object (mc_http_req_t *req, size_t max)
{
    const char *type = mc_http_header (req, "Content-Type");
    if (type && strncasecmp (type, "application/json", 16) != 0) {
        mc_http_error (req, 415, "UNSUPPORTED_MEDIA_TYPE", "send application/json");
        return NULL;
    }
    size_t len = 0;
    char *text = mc_http_read_body (req, max, &len);
    if (!text)
        return NULL;
    json_error_t error;
    json_t *body = json_loadb (text, len, JSON_REJECT_DUPLICATES, &error);
    free (text);
    if (!json_is_object (body)) {
        mc_http_error (req, 400, "INVALID_JSON", "the body is not a JSON object%s%s",
                       body ? "" : ": ", body ? "" : error.text);
        json_decref (body);
        return NULL;
    }
    return body;
}

//  Serializes value as stored (compact). Returns it (caller frees), or NULL after
//  sending 413 VALUE_TOO_LARGE.
static char *s_serialize (mc_http_req_t *req, const char *key, json_t *value)
{
    char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    assert (text);
    size_t len = strlen (text);
    if (len > MC_STORAGE_MAX_VALUE) {
        mc_http_error (req, 413, "VALUE_TOO_LARGE",
                       "the value of '%s' is %zu bytes as JSON; at most %d are allowed", key, len,
                       MC_STORAGE_MAX_VALUE);
        free (text);
        return NULL;
    }
    return text;
}

int mc_api_storage_get (mc_http_req_t *req)
{
    const char *module = s_module (req);
    char key[MC_STORAGE_MAX_KEY + 1];
    if (!module || s_path_key (req, key) != 0)
        return 400;
    Mc__StorageGet get = MC__STORAGE_GET__INIT;
    get.module = (char *)module;
    get.key = key;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_STORAGE_GET;
    env.storage_get = &get;
    int status;
    mc_env_t *reply = s_call (req, &env, &status);
    if (!reply)
        return status;
    Mc__StorageResult *result = reply->storage_result;
    status = result->n_items == 1
                 ? mc_http_json (req, 200,
                                 json_pack ("{s:s, s:o}", "key", key, "value",
                                            s_value (key, result->items[0]->value_json)))
                 : mc_http_error (req, 500, "INTERNAL", "unexpected answer from storage");
    mc_env_free (reply);
    return status;
}

int mc_api_storage_put (mc_http_req_t *req)
{
    const char *module = s_module (req);
    char key[MC_STORAGE_MAX_KEY + 1];
    if (!module || s_path_key (req, key) != 0) {
        mc_http_close_after (req); // the unread body must not be parsed as a request
        return 400;
    }
    json_t *body = s_read_object (req, PUT_BODY_MAX);
    if (!body)
        return 400;
    json_t *value = json_object_get (body, "value");
    if (!value || json_object_size (body) != 1) {
        json_decref (body);
        return mc_http_error (req, 400, "INVALID_VALUE",
                              "the body must be {\"value\": <any JSON value>}");
    }
    char *text = s_serialize (req, key, value);
    json_decref (body);
    if (!text)
        return 413;
    Mc__StoragePut put = MC__STORAGE_PUT__INIT;
    put.module = (char *)module;
    put.key = key;
    put.value_json = text;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_STORAGE_PUT;
    env.storage_put = &put;
    int status;
    mc_env_t *reply = s_call (req, &env, &status);
    free (text);
    if (!reply)
        return status;
    status = mc_http_json (req, 200,
                           json_pack ("{s:s, s:I}", "key", key, "bytes",
                                      (json_int_t)reply->storage_result->value_bytes));
    mc_env_free (reply);
    return status;
}

int mc_api_storage_delete (mc_http_req_t *req)
{
    const char *module = s_module (req);
    char key[MC_STORAGE_MAX_KEY + 1];
    if (!module || s_path_key (req, key) != 0)
        return 400;
    Mc__StorageDelete del = MC__STORAGE_DELETE__INIT;
    del.module = (char *)module;
    del.key = key;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_STORAGE_DELETE;
    env.storage_delete = &del;
    int status;
    mc_env_t *reply = s_call (req, &env, &status);
    if (!reply)
        return status;
    mc_env_free (reply);
    return mc_http_send (req, 204, NULL, "application/json", "", 0);
}

//  Query parameter name (form-decoded) into buf of size bytes. Returns its length, -1
//  if absent, -2 if too long or holding a NUL.
static int s_query (mc_http_req_t *req, const char *name, char *buf, size_t size)
{
    const char *query = req->info->query_string;
    int n = query ? mg_get_var (query, strlen (query), name, buf, size) : -1;
    if (n >= 0 && (size_t)n != strlen (buf))
        return -2;
    return n < -1 ? -2 : n;
}

int mc_api_storage_list (mc_http_req_t *req)
{
    const char *module = s_module (req);
    if (!module)
        return 400;
    char prefix[MC_STORAGE_MAX_KEY + 1] = "", after[MC_STORAGE_MAX_KEY + 1] = "", limit[16] = "";
    int plen = s_query (req, "prefix", prefix, sizeof prefix);
    int alen = s_query (req, "after", after, sizeof after);
    int llen = s_query (req, "limit", limit, sizeof limit);
    if (plen == -2 || (plen > 0 && !mc_storage_key_valid (prefix, (size_t)plen)))
        return mc_http_error (req, 400, "INVALID_PREFIX",
                              "prefix is at most %d bytes of printable ASCII", MC_STORAGE_MAX_KEY);
    if (alen == -2 || (alen > 0 && !mc_storage_key_valid (after, (size_t)alen)))
        return mc_http_error (req, 400, "INVALID_CURSOR",
                              "after is a key: 1..%d bytes of printable ASCII (the \"next\" of "
                              "the previous page)",
                              MC_STORAGE_MAX_KEY);
    long n = MC_STORAGE_DEF_LIST;
    if (llen != -1) {
        char *end = NULL;
        n = strtol (limit, &end, 10);
        if (llen <= 0 || *end || limit[0] == '-' || limit[0] == '+' || n < 1 ||
            n > MC_STORAGE_MAX_LIST)
            return mc_http_error (req, 400, "INVALID_LIMIT", "limit must be an integer 1..%d",
                                  MC_STORAGE_MAX_LIST);
    }
    Mc__StorageList list = MC__STORAGE_LIST__INIT;
    list.module = (char *)module;
    list.prefix = prefix;
    list.after = after;
    list.limit = (uint32_t)n;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_STORAGE_LIST;
    env.storage_list = &list;
    int status;
    mc_env_t *reply = s_call (req, &env, &status);
    if (!reply)
        return status;
    Mc__StorageResult *result = reply->storage_result;
    json_t *items = json_array ();
    for (size_t i = 0; i < result->n_items; i++)
        json_array_append_new (
            items, json_pack ("{s:s, s:o}", "key", result->items[i]->key, "value",
                              s_value (result->items[i]->key, result->items[i]->value_json)));
    json_t *next = result->next && *result->next ? json_string (result->next) : json_null ();
    mc_env_free (reply);
    return mc_http_json (req, 200, json_pack ("{s:o, s:o}", "items", items, "next", next));
}

int mc_api_storage_batch (mc_http_req_t *req)
{
    const char *module = s_module (req);
    if (!module) {
        mc_http_close_after (req); // the unread body must not be parsed as a request
        return 400;
    }
    //  Whatever is put must fit the byte quota, so a body much larger cannot succeed.
    json_t *body = s_read_object (req, req->ctx->config->storage_max_bytes + (1u << 20));
    if (!body)
        return 400;
    json_t *puts = json_object_get (body, "put");
    json_t *deletes = json_object_get (body, "delete");
    size_t known = (puts ? 1 : 0) + (deletes ? 1 : 0);
    int status = 0;
    if (json_object_size (body) != known || (puts && !json_is_object (puts)) ||
        (deletes && !json_is_array (deletes)))
        status = mc_http_error (req, 400, "INVALID_BATCH",
                                "the body must be {\"put\": {key: value, ...}, \"delete\": "
                                "[key, ...]} (both optional)");
    size_t nputs = json_object_size (puts), ndeletes = json_array_size (deletes);
    if (!status && nputs + ndeletes > MC_STORAGE_MAX_BATCH)
        status = mc_http_error (req, 413, "BATCH_TOO_LARGE",
                                "a batch holds at most %d puts and deletes; this one has %zu",
                                MC_STORAGE_MAX_BATCH, nputs + ndeletes);
    Mc__StorageItem *items = calloc (nputs + 1, sizeof *items);
    Mc__StorageItem **item_ptrs = calloc (nputs + 1, sizeof *item_ptrs);
    char **delete_keys = calloc (ndeletes + 1, sizeof *delete_keys);
    assert (items && item_ptrs && delete_keys);
    size_t filled = 0; // items with a serialized value (freed at the end)
    const char *key;
    json_t *value;
    json_object_foreach (puts, key, value)
    {
        if (status)
            break;
        char *text = NULL;
        if (!mc_storage_key_valid (key, strlen (key)))
            status =
                mc_http_error (req, 400, "INVALID_KEY",
                               "put: a key is 1..%d bytes of printable ASCII", MC_STORAGE_MAX_KEY);
        else if (!(text = s_serialize (req, key, value)))
            status = 413;
        else {
            mc__storage_item__init (&items[filled]);
            items[filled].key = (char *)key;
            items[filled].value_json = text;
            item_ptrs[filled] = &items[filled];
            filled++;
        }
    }
    for (size_t d = 0; !status && d < ndeletes; d++) {
        json_t *k = json_array_get (deletes, d);
        if (!json_is_string (k) ||
            !mc_storage_key_valid (json_string_value (k), json_string_length (k)))
            status = mc_http_error (req, 400, "INVALID_KEY",
                                    "delete: each key is a string of 1..%d bytes of printable "
                                    "ASCII",
                                    MC_STORAGE_MAX_KEY);
        else
            delete_keys[d] = (char *)json_string_value (k);
    }
    if (!status) {
        Mc__StorageBatch batch = MC__STORAGE_BATCH__INIT;
        batch.module = (char *)module;
        batch.n_puts = nputs;
        batch.puts = item_ptrs;
        batch.n_deletes = ndeletes;
        batch.deletes = delete_keys;
        mc_env_t env = MC__ENVELOPE__INIT;
        env.body_case = MC__ENVELOPE__BODY_STORAGE_BATCH;
        env.storage_batch = &batch;
        mc_env_t *reply = s_call (req, &env, &status);
        if (reply) {
            status = mc_http_json (req, 200,
                                   json_pack ("{s:i, s:i}", "put", (int)reply->storage_result->put,
                                              "deleted", (int)reply->storage_result->deleted));
            mc_env_free (reply);
        }
    }
    for (size_t p = 0; p < filled; p++)
        free (items[p].value_json);
    free (items);
    free (item_ptrs);
    free (delete_keys);
    json_decref (body);
    return status;
}

int mc_api_storage_usage (mc_http_req_t *req)
{
    //  GET /storage/usage wins over the key "usage"; that key is still reachable as
    //  /storage/%75sage (any encoded form), which is not the literal route.
    const char *raw = s_raw_key (req);
    if (raw && strcmp (raw, "usage") != 0)
        return mc_api_storage_get (req);
    const char *module = s_module (req);
    if (!module)
        return 400;
    Mc__StorageUsage usage = MC__STORAGE_USAGE__INIT;
    usage.module = (char *)module;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_STORAGE_USAGE;
    env.storage_usage = &usage;
    int status;
    mc_env_t *reply = s_call (req, &env, &status);
    if (!reply)
        return status;
    Mc__StorageResult *r = reply->storage_result;
    status = mc_http_json (req, 200,
                           json_pack ("{s:I, s:I, s:I, s:I}", "keys", (json_int_t)r->keys, "bytes",
                                      (json_int_t)r->bytes, "max_keys", (json_int_t)r->max_keys,
                                      "max_bytes", (json_int_t)r->max_bytes));
    mc_env_free (reply);
    return status;
}
