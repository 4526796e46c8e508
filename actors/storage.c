/*  storage actor

    DESIGN. Each module has its own LevelDB at <data>/modules/<name>/db/ (blvm: "each
    module has its own separate database"), and only this actor opens it: a module
    reaches its data through requests that name it, and the gateway fills that name
    from the caller's token, so module A can never address B's database. Keys are
    stored as given (no prefix); values as compact JSON text.

    Databases are opened lazily, on the first request for a module, and at most
    [storage] max_open (default 64) are open at once: each LevelDB holds file
    descriptors, a table cache and a memtable, so beyond that the least recently used
    one is closed (a counter per use; a linear search over at most max_open entries
    when one must go). Opening one scans it to recompute its usage (keys, bytes of
    keys + values); usage is then kept in memory, updated by every write, and lost on
    close (the next open scans again).

    Invariants:
      - A database is opened only inside an existing module dir: storage never creates
        <data>/modules/<name>/, so a late request for a module that is being
        uninstalled cannot bring its dir back.
      - The dir identity (device, inode) of an open database is checked on every use;
        if its db dir was removed or replaced behind our back (uninstall, reinstall),
        the handle is closed and the database opened afresh. A db that is a symlink or
        not a directory is refused, never followed.
      - Every write is synced before it is acknowledged; a batch is one synced LevelDB
        WriteBatch, so it is applied whole or not at all.
      - A write that would take a module over max_keys or max_bytes is refused
        (INSUFFICIENT_STORAGE -> 507) before anything is written. Writes that lower
        usage (deletes, smaller values) are always allowed, even over a quota that was
        lowered since the data was written.
      - StorageDrop closes the handle and deletes the db dir: the registry sends it
        while uninstalling, before it removes the module dir. Otherwise data is kept
        across restarts.

    The actor is one thread and LevelDB calls are synchronous, so requests for all
    modules are served in arrival order; a synced write costs ~0.2 ms (design.md:
    ~5k synced puts/s). */
#include "actors/storage.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "core/actor.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "envelope_cases.h"

//  One open module database.
typedef struct {
    char *name;        // module name (key in self->dbs)
    char *path;        // <data>/modules/<name>/db
    mc_store_t *store; // the open LevelDB
    dev_t dev;         // identity of the db dir when opened
    ino_t ino;         //   (see DESIGN: checked on every use)
    uint64_t keys;     // number of keys
    uint64_t bytes;    // bytes of keys + values
    uint64_t used;     // self->clock at the last use (LRU)
} db_t;

typedef struct {
    mc_context_t *ctx;  // shared context
    zsock_t *router;    // inproc://modcore.storage
    zhashx_t *dbs;      // module name -> db_t * (open databases only)
    uint64_t clock;     // ticks once per use of a database
    uint32_t max_open;  // [storage] max_open
    uint64_t max_keys;  // [storage] max_keys, per module
    uint64_t max_bytes; // [storage] max_bytes, per module
} self_t;

//  Why a request was refused: what goes into the error reply.
typedef struct {
    Mc__Status status; // envelope status
    const char *code;  // machine code
    char detail[512];  // human detail
    void *usage_of;    // a quota refusal: the db_t whose usage goes with the reply
} refusal_t;

static int s_refuse (refusal_t *why, Mc__Status status, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
static int s_refuse (refusal_t *why, Mc__Status status, const char *code, const char *fmt, ...)
{
    why->status = status;
    why->code = code;
    va_list args;
    va_start (args, fmt);
    vsnprintf (why->detail, sizeof why->detail, fmt, args);
    va_end (args);
    return -1;
}

bool mc_storage_key_valid (const char *key, size_t len)
{
    if (!key || len == 0 || len > MC_STORAGE_MAX_KEY)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return false;
    return true;
}

static bool s_key_valid (const char *key)
{
    return key && mc_storage_key_valid (key, strnlen (key, MC_STORAGE_MAX_KEY + 1));
}

//  A module name as the registry allows it (lower-case letters, digits, '-'), so that
//  it is always one path component.
static bool s_name_valid (const char *name)
{
    size_t len = name ? strlen (name) : 0;
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '-'))
            return false;
    return true;
}

//  Checks a value: JSON text (any JSON value) of at most MC_STORAGE_MAX_VALUE bytes.
static int s_value_check (const char *key, const char *value, refusal_t *why)
{
    size_t len = value ? strlen (value) : 0;
    if (len > MC_STORAGE_MAX_VALUE)
        return s_refuse (why, MC__STATUS__STATUS_TOO_LARGE, "VALUE_TOO_LARGE",
                         "the value of '%s' is %zu bytes of JSON; at most %d are allowed", key, len,
                         MC_STORAGE_MAX_VALUE);
    json_error_t error;
    json_t *parsed =
        json_loadb (value ? value : "", len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &error);
    if (!parsed)
        return s_refuse (why, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_VALUE",
                         "the value of '%s' is not JSON: %s", key, error.text);
    json_decref (parsed);
    return 0;
}

static int s_key_check (const char *key, refusal_t *why)
{
    if (s_key_valid (key))
        return 0;
    return s_refuse (why, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_KEY",
                     "a key is 1..%d bytes of printable ASCII (no control characters)",
                     MC_STORAGE_MAX_KEY);
}

//  --- databases -----------------------------------------------------------------------

static void s_db_destroy (db_t **db_p)
{
    if (!db_p || !*db_p)
        return;
    db_t *db = *db_p;
    mc_store_close (&db->store);
    free (db->name);
    free (db->path);
    free (db);
    *db_p = NULL;
}

//  zhashx destructor.
static void s_db_free (void **item)
{
    s_db_destroy ((db_t **)item);
}

static int s_count (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    db_t *db = arg;
    db->keys++;
    db->bytes += klen + vlen;
    return 0;
}

//  Closes the least recently used database.
static void s_evict_one (self_t *self)
{
    db_t *oldest = NULL;
    for (db_t *db = zhashx_first (self->dbs); db; db = zhashx_next (self->dbs))
        if (!oldest || db->used < oldest->used)
            oldest = db;
    if (oldest)
        zhashx_delete (self->dbs, oldest->name);
}

//  Opens the database of module name (creating it if missing) and counts its usage.
static db_t *s_db_open (self_t *self, const char *name, refusal_t *why)
{
    const char *data = self->ctx->config->data_dir;
    char dir[4200];
    snprintf (dir, sizeof dir, "%s/modules/%s", data, name);
    struct stat st;
    if (lstat (dir, &st) != 0 || !S_ISDIR (st.st_mode)) {
        s_refuse (why, MC__STATUS__STATUS_NOT_FOUND, "MODULE_NOT_FOUND",
                  "module %s is not installed", name);
        return NULL;
    }
    db_t *db = calloc (1, sizeof *db);
    assert (db);
    db->name = strdup (name);
    if (asprintf (&db->path, "%s/db", dir) < 0)
        abort ();
    if (mkdir (db->path, 0700) != 0 && errno != EEXIST) {
        zsys_error ("storage: cannot create %s: %s", db->path, strerror (errno));
        s_refuse (why, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                  "cannot create the database of %s", name);
        s_db_destroy (&db);
        return NULL;
    }
    if (lstat (db->path, &st) != 0 || !S_ISDIR (st.st_mode)) {
        zsys_error ("storage: %s is not a directory; refused", db->path);
        s_refuse (why, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                  "the database of %s is not a directory", name);
        s_db_destroy (&db);
        return NULL;
    }
    db->dev = st.st_dev;
    db->ino = st.st_ino;
    while (zhashx_size (self->dbs) >= self->max_open)
        s_evict_one (self);
    mc_error_t err = {"", ""};
    db->store = mc_store_open (db->path, &err);
    if (!db->store) {
        zsys_error ("storage: %s", err.detail);
        s_refuse (why, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                  "cannot open the database of %s (%s)", name, err.code);
        s_db_destroy (&db);
        return NULL;
    }
    if (mc_store_scan (db->store, "", s_count, db) != 0) {
        s_refuse (why, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                  "cannot read the database of %s", name);
        s_db_destroy (&db);
        return NULL;
    }
    zhashx_insert (self->dbs, name, db);
    return db;
}

//  The open database of module name: the cached handle if its dir is still the one it
//  opened, else a fresh open. NULL with why set if it cannot be had.
static db_t *s_db (self_t *self, const char *name, refusal_t *why)
{
    if (!s_name_valid (name)) {
        s_refuse (why, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_MODULE",
                  "'%.64s' is not a module name", name ? name : "");
        return NULL;
    }
    db_t *db = zhashx_lookup (self->dbs, name);
    if (db) {
        struct stat st;
        if (lstat (db->path, &st) != 0 || !S_ISDIR (st.st_mode) || st.st_dev != db->dev ||
            st.st_ino != db->ino) {
            zsys_info ("storage: the database of %s was removed or replaced; reopening", name);
            zhashx_delete (self->dbs, name);
            db = NULL;
        }
    }
    if (!db)
        db = s_db_open (self, name, why);
    if (db)
        db->used = ++self->clock;
    return db;
}

//  Size (key + value bytes) of key's record in db, or 0 if absent.
static uint64_t s_record_size (db_t *db, const char *key)
{
    size_t vlen = 0;
    void *value = mc_store_get (db->store, key, &vlen);
    if (!value)
        return 0;
    free (value);
    return strlen (key) + vlen;
}

//  Refuses a change of usage to (keys, bytes) that goes over a quota and up.
static int s_quota_check (self_t *self, db_t *db, uint64_t keys, uint64_t bytes, refusal_t *why)
{
    bool over_keys = keys > self->max_keys && keys > db->keys;
    bool over_bytes = bytes > self->max_bytes && bytes > db->bytes;
    if (!over_keys && !over_bytes)
        return 0;
    why->usage_of = db;
    return s_refuse (why, MC__STATUS__STATUS_INSUFFICIENT_STORAGE, "QUOTA_EXCEEDED",
                     "storage quota of %s exceeded: the write would make %" PRIu64
                     " keys and %" PRIu64 " bytes; limits %" PRIu64 " keys, %" PRIu64
                     " bytes; in use %" PRIu64 " keys, %" PRIu64 " bytes",
                     db->name, keys, bytes, self->max_keys, self->max_bytes, db->keys, db->bytes);
}

//  --- requests ------------------------------------------------------------------------

static void s_store_failed (self_t *self, mc_request_t *req, const char *name)
{
    mc_reply_error (self->router, req->routing_id, req->env->request_id,
                    MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot write the database of %s",
                    name);
}

//  Replies OK with result, usage of db filled in (db may be NULL).
static void s_reply_result (self_t *self, mc_request_t *req, db_t *db, Mc__StorageResult *result)
{
    if (db) {
        result->keys = db->keys;
        result->bytes = db->bytes;
    }
    result->max_keys = self->max_keys;
    result->max_bytes = self->max_bytes;
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_STORAGE_RESULT;
    reply.storage_result = result;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

//  Replies with the refusal; a quota refusal also carries the module's usage.
static void s_reply_refusal (self_t *self, mc_request_t *req, const refusal_t *why)
{
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.status = why->status;
    reply.error = (char *)why->code;
    reply.detail = (char *)why->detail;
    Mc__StorageResult usage = MC__STORAGE_RESULT__INIT;
    if (why->usage_of) {
        db_t *db = why->usage_of;
        usage.keys = db->keys;
        usage.bytes = db->bytes;
        usage.max_keys = self->max_keys;
        usage.max_bytes = self->max_bytes;
        reply.body_case = MC__ENVELOPE__BODY_STORAGE_RESULT;
        reply.storage_result = &usage;
    }
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

static int s_get (self_t *self, mc_request_t *req, refusal_t *why)
{
    Mc__StorageGet *get = req->env->storage_get;
    db_t *db = NULL;
    if (s_key_check (get->key, why) != 0 || !(db = s_db (self, get->module, why)))
        return -1;
    size_t vlen = 0;
    char *value = mc_store_get (db->store, get->key, &vlen);
    if (!value)
        return s_refuse (why, MC__STATUS__STATUS_NOT_FOUND, "KEY_NOT_FOUND", "no key '%s'",
                         get->key);
    Mc__StorageItem item = MC__STORAGE_ITEM__INIT;
    item.key = get->key;
    item.value_json = value;
    Mc__StorageItem *items[1] = {&item};
    Mc__StorageResult result = MC__STORAGE_RESULT__INIT;
    result.n_items = 1;
    result.items = items;
    s_reply_result (self, req, db, &result);
    free (value);
    return 0;
}

static int s_put (self_t *self, mc_request_t *req, refusal_t *why)
{
    Mc__StoragePut *put = req->env->storage_put;
    db_t *db = NULL;
    if (s_key_check (put->key, why) != 0 || s_value_check (put->key, put->value_json, why) != 0 ||
        !(db = s_db (self, put->module, why)))
        return -1;
    size_t klen = strlen (put->key), vlen = strlen (put->value_json);
    uint64_t old = s_record_size (db, put->key);
    uint64_t keys = db->keys + (old ? 0 : 1);
    uint64_t bytes = db->bytes - old + klen + vlen;
    if (s_quota_check (self, db, keys, bytes, why) != 0)
        return -1;
    if (mc_store_put (db->store, put->key, put->value_json, vlen, true) != 0) {
        s_store_failed (self, req, db->name);
        return 0;
    }
    db->keys = keys;
    db->bytes = bytes;
    Mc__StorageResult result = MC__STORAGE_RESULT__INIT;
    result.value_bytes = vlen;
    s_reply_result (self, req, db, &result);
    return 0;
}

static int s_delete (self_t *self, mc_request_t *req, refusal_t *why)
{
    Mc__StorageDelete *del = req->env->storage_delete;
    db_t *db = NULL;
    if (s_key_check (del->key, why) != 0 || !(db = s_db (self, del->module, why)))
        return -1;
    uint64_t old = s_record_size (db, del->key);
    if (!old)
        return s_refuse (why, MC__STATUS__STATUS_NOT_FOUND, "KEY_NOT_FOUND", "no key '%s'",
                         del->key);
    if (mc_store_delete (db->store, del->key, true) != 0) {
        s_store_failed (self, req, db->name);
        return 0;
    }
    db->keys--;
    db->bytes -= old;
    Mc__StorageResult result = MC__STORAGE_RESULT__INIT;
    s_reply_result (self, req, db, &result);
    return 0;
}

//  A list page being filled by the scan.
typedef struct {
    Mc__StorageItem **items; // MC_STORAGE_MAX_LIST + 1 slots
    size_t count;            // items filled
    size_t limit;            // items wanted
    size_t bytes;            // bytes of the page so far
    bool more;               // a key follows the page
} page_t;

static int s_page_add (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    page_t *page = arg;
    if (page->count == page->limit ||
        (page->count > 0 && page->bytes + klen + vlen > MC_STORAGE_PAGE_BYTES)) {
        page->more = true;
        return 1;
    }
    Mc__StorageItem *item = calloc (1, sizeof *item);
    assert (item);
    mc__storage_item__init (item);
    item->key = strndup (key, klen);
    item->value_json = strndup (value, vlen);
    assert (item->key && item->value_json);
    page->items[page->count++] = item;
    page->bytes += klen + vlen;
    return 0;
}

static int s_list (self_t *self, mc_request_t *req, refusal_t *why)
{
    Mc__StorageList *list = req->env->storage_list;
    const char *prefix = list->prefix ? list->prefix : "";
    const char *after = list->after ? list->after : "";
    if (*prefix && !s_key_valid (prefix))
        return s_refuse (why, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_PREFIX",
                         "a prefix is at most %d bytes of printable ASCII", MC_STORAGE_MAX_KEY);
    if (*after && !s_key_valid (after))
        return s_refuse (why, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_CURSOR",
                         "after must be a key: 1..%d bytes of printable ASCII", MC_STORAGE_MAX_KEY);
    if (list->limit > MC_STORAGE_MAX_LIST)
        return s_refuse (why, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_LIMIT",
                         "limit must be 1..%d", MC_STORAGE_MAX_LIST);
    db_t *db = s_db (self, list->module, why);
    if (!db)
        return -1;
    page_t page = {0};
    page.limit = list->limit ? list->limit : MC_STORAGE_DEF_LIST;
    page.items = calloc (page.limit + 1, sizeof *page.items);
    assert (page.items);
    int rc = mc_store_scan_after (db->store, prefix, after, s_page_add, &page);
    if (rc < 0)
        s_refuse (why, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                  "cannot read the database of %s", db->name);
    else {
        Mc__StorageResult result = MC__STORAGE_RESULT__INIT;
        result.n_items = page.count;
        result.items = page.items;
        if (page.more && page.count)
            result.next = page.items[page.count - 1]->key;
        s_reply_result (self, req, db, &result);
    }
    for (size_t i = 0; i < page.count; i++) {
        free (page.items[i]->key);
        free (page.items[i]->value_json);
        free (page.items[i]);
    }
    free (page.items);
    return rc < 0 ? -1 : 0;
}

//  Validates a batch: keys, values, no key put twice or both put and deleted. Fills
//  deletes (key -> "delete") with the distinct keys to delete.
static int s_batch_check (Mc__StorageBatch *batch, zhashx_t *deletes, refusal_t *why)
{
    if (batch->n_puts + batch->n_deletes > MC_STORAGE_MAX_BATCH)
        return s_refuse (why, MC__STATUS__STATUS_TOO_LARGE, "BATCH_TOO_LARGE",
                         "a batch holds at most %d puts and deletes; this one has %zu",
                         MC_STORAGE_MAX_BATCH, batch->n_puts + batch->n_deletes);
    zhashx_t *puts = zhashx_new ();
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < batch->n_puts; i++) {
        Mc__StorageItem *item = batch->puts[i];
        if (s_key_check (item->key, why) != 0 || s_value_check (item->key, item->value_json, why))
            rc = -1;
        else if (zhashx_insert (puts, item->key, "put") != 0)
            rc = s_refuse (why, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_BATCH",
                           "key '%s' is put twice", item->key);
    }
    for (size_t i = 0; rc == 0 && i < batch->n_deletes; i++) {
        const char *key = batch->deletes[i];
        if (s_key_check (key, why) != 0)
            rc = -1;
        else if (zhashx_lookup (puts, key))
            rc = s_refuse (why, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_BATCH",
                           "key '%s' is both put and deleted", key);
        else
            zhashx_insert (deletes, key, "delete"); // a repeated delete counts once
    }
    zhashx_destroy (&puts);
    return rc;
}

static int s_batch (self_t *self, mc_request_t *req, refusal_t *why)
{
    Mc__StorageBatch *batch = req->env->storage_batch;
    zhashx_t *deletes = zhashx_new ();
    db_t *db = NULL;
    if (s_batch_check (batch, deletes, why) != 0 || !(db = s_db (self, batch->module, why))) {
        zhashx_destroy (&deletes);
        return -1;
    }
    //  The usage after the batch, decided before anything is written.
    uint64_t keys = db->keys, bytes = db->bytes;
    for (size_t i = 0; i < batch->n_puts; i++) {
        Mc__StorageItem *item = batch->puts[i];
        uint64_t old = s_record_size (db, item->key);
        keys += old ? 0 : 1;
        bytes = bytes - old + strlen (item->key) + strlen (item->value_json);
    }
    zlistx_t *present = zlistx_new (); // keys to delete that exist (borrowed)
    for (const char *d = zhashx_first (deletes); d; d = zhashx_next (deletes)) {
        const char *key = zhashx_cursor (deletes);
        uint64_t old = s_record_size (db, key);
        if (old) {
            keys--;
            bytes -= old;
            zlistx_add_end (present, (void *)key);
        }
    }
    int rc = s_quota_check (self, db, keys, bytes, why);
    if (rc == 0 && (batch->n_puts || zlistx_size (present))) {
        mc_store_batch_t *writes = mc_store_batch_new ();
        for (size_t i = 0; i < batch->n_puts; i++)
            mc_store_batch_put (writes, batch->puts[i]->key, batch->puts[i]->value_json,
                                strlen (batch->puts[i]->value_json));
        for (const char *key = zlistx_first (present); key; key = zlistx_next (present))
            mc_store_batch_delete (writes, key);
        if (mc_store_batch_write (db->store, &writes, true) != 0)
            rc = s_refuse (why, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                           "cannot write the database of %s", db->name);
    }
    if (rc == 0) {
        db->keys = keys;
        db->bytes = bytes;
        Mc__StorageResult result = MC__STORAGE_RESULT__INIT;
        result.put = (uint32_t)batch->n_puts;
        result.deleted = (uint32_t)zlistx_size (present);
        s_reply_result (self, req, db, &result);
    }
    zlistx_destroy (&present);
    zhashx_destroy (&deletes);
    return rc;
}

static int s_usage (self_t *self, mc_request_t *req, refusal_t *why)
{
    db_t *db = s_db (self, req->env->storage_usage->module, why);
    if (!db)
        return -1;
    Mc__StorageResult result = MC__STORAGE_RESULT__INIT;
    s_reply_result (self, req, db, &result);
    return 0;
}

static int s_drop (self_t *self, mc_request_t *req, refusal_t *why)
{
    const char *name = req->env->storage_drop->module;
    if (!s_name_valid (name))
        return s_refuse (why, MC__STATUS__STATUS_BAD_REQUEST, "INVALID_MODULE",
                         "'%.64s' is not a module name", name ? name : "");
    zhashx_delete (self->dbs, name); // closes it, if open
    char path[4200];
    snprintf (path, sizeof path, "%s/modules/%s/db", self->ctx->config->data_dir, name);
    bool existed = mc_fs_exists (path);
    if (mc_fs_rmtree (path) != 0) {
        zsys_error ("storage: cannot delete %s: %s", path, strerror (errno));
        return s_refuse (why, MC__STATUS__STATUS_INTERNAL, "STORE_FAILED",
                         "cannot delete the database of %s", name);
    }
    if (existed)
        zsys_info ("storage: deleted the database of %s", name);
    Mc__StorageResult result = MC__STORAGE_RESULT__INIT;
    s_reply_result (self, req, NULL, &result);
    return 0;
}

static void s_on_request (self_t *self)
{
    mc_request_t *req = mc_request_recv (self->router);
    if (!req)
        return;
    refusal_t why = {0};
    int rc = 0;
    switch (req->env->body_case) {
        case MC__ENVELOPE__BODY_STORAGE_GET:
            rc = s_get (self, req, &why);
            break;
        case MC__ENVELOPE__BODY_STORAGE_PUT:
            rc = s_put (self, req, &why);
            break;
        case MC__ENVELOPE__BODY_STORAGE_DELETE:
            rc = s_delete (self, req, &why);
            break;
        case MC__ENVELOPE__BODY_STORAGE_LIST:
            rc = s_list (self, req, &why);
            break;
        case MC__ENVELOPE__BODY_STORAGE_BATCH:
            rc = s_batch (self, req, &why);
            break;
        case MC__ENVELOPE__BODY_STORAGE_USAGE:
            rc = s_usage (self, req, &why);
            break;
        case MC__ENVELOPE__BODY_STORAGE_DROP:
            rc = s_drop (self, req, &why);
            break;
            MC_CASES_NOT_FOR_STORAGE
            rc = s_refuse (&why, MC__STATUS__STATUS_BAD_REQUEST, "UNSUPPORTED",
                           "storage does not handle this message");
            break;
    }
    if (rc != 0)
        s_reply_refusal (self, req, &why);
    mc_request_destroy (&req);
}

static void s_on_request_cb (void *self)
{
    s_on_request (self);
}

void mc_storage_actor (zsock_t *pipe, void *args)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = args;
    self->max_open = self->ctx->config->storage_max_open ? self->ctx->config->storage_max_open : 1;
    self->max_keys = self->ctx->config->storage_max_keys;
    self->max_bytes = self->ctx->config->storage_max_bytes;
    self->router = mc_actor_bind ("storage");
    self->dbs = zhashx_new ();
    zhashx_set_destructor (self->dbs, s_db_free);
    if (mc_actor_ready (pipe, self->router ? 0 : -1) == 0) {
        zsys_info ("storage: per-module databases under %s/modules/<name>/db (at most %u open; "
                   "quota %" PRIu64 " keys, %" PRIu64 " bytes)",
                   self->ctx->config->data_dir, self->max_open, self->max_keys, self->max_bytes);
        mc_actor_serve (pipe, self->router, s_on_request_cb, self);
    }
    zhashx_destroy (&self->dbs); // closes every database
    //  Unbound now, not when ZeroMQ reaps the socket, so a new storage actor (a restart
    //  in the same process) can bind at once.
    if (self->router)
        zsock_unbind (self->router, MC_ENDPOINT_PREFIX "storage");
    zsock_destroy (&self->router);
    free (self);
}
