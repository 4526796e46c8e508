#include "core/store.h"

#include <assert.h>
#include <czmq.h>
#include <leveldb/c.h>
#include <stdlib.h>
#include <string.h>

struct mc_store_t {
    leveldb_t *db;                  // the database
    leveldb_options_t *options;     // open options (kept for close)
    leveldb_readoptions_t *read;    // checksummed reads
    leveldb_writeoptions_t *sync;   // fsync before return
    leveldb_writeoptions_t *nosync; // OS buffer only
};

struct mc_store_batch_t {
    leveldb_writebatch_t *batch;
};

mc_store_t *mc_store_open (const char *path, mc_error_t *err)
{
    mc_store_t *self = calloc (1, sizeof *self);
    assert (self);
    self->options = leveldb_options_create ();
    leveldb_options_set_create_if_missing (self->options, 1);
    leveldb_options_set_paranoid_checks (self->options, 1);
    char *error = NULL;
    self->db = leveldb_open (self->options, path, &error);
    if (!self->db) {
        const char *code = "STORE_OPEN";
        if (error && strstr (error, "orruption"))
            code = "STORE_CORRUPT";
        else if (error && strstr (error, "lock"))
            code = "STORE_LOCKED";
        mc_error_set (err, code, "cannot open store %s: %s", path, error ? error : "unknown");
        leveldb_free (error);
        leveldb_options_destroy (self->options);
        free (self);
        return NULL;
    }
    self->read = leveldb_readoptions_create ();
    leveldb_readoptions_set_verify_checksums (self->read, 1);
    self->sync = leveldb_writeoptions_create ();
    leveldb_writeoptions_set_sync (self->sync, 1);
    self->nosync = leveldb_writeoptions_create ();
    return self;
}

void mc_store_close (mc_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mc_store_t *self = *self_p;
    leveldb_close (self->db);
    leveldb_readoptions_destroy (self->read);
    leveldb_writeoptions_destroy (self->sync);
    leveldb_writeoptions_destroy (self->nosync);
    leveldb_options_destroy (self->options);
    free (self);
    *self_p = NULL;
}

//  Logs a LevelDB error once and frees it; returns -1.
static int s_failed (const char *what, const char *key, char *error)
{
    zsys_error ("store: %s %s failed: %s", what, key, error);
    leveldb_free (error);
    return -1;
}

int mc_store_put (mc_store_t *self, const char *key, const void *value, size_t len, bool sync)
{
    char *error = NULL;
    leveldb_put (self->db, sync ? self->sync : self->nosync, key, strlen (key), value, len, &error);
    return error ? s_failed ("put", key, error) : 0;
}

void *mc_store_get (mc_store_t *self, const char *key, size_t *len)
{
    char *error = NULL;
    size_t vlen = 0;
    char *value = leveldb_get (self->db, self->read, key, strlen (key), &vlen, &error);
    if (error) {
        s_failed ("get", key, error);
        return NULL;
    }
    if (!value)
        return NULL;
    //  Copy into malloc'd memory with a NUL so callers may treat text values as strings.
    char *copy = malloc (vlen + 1);
    assert (copy);
    memcpy (copy, value, vlen);
    copy[vlen] = 0;
    leveldb_free (value);
    if (len)
        *len = vlen;
    return copy;
}

int mc_store_delete (mc_store_t *self, const char *key, bool sync)
{
    char *error = NULL;
    leveldb_delete (self->db, sync ? self->sync : self->nosync, key, strlen (key), &error);
    return error ? s_failed ("delete", key, error) : 0;
}

//  LevelDB's default order: bytewise, then shorter first.
static int s_compare (const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp (a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

int mc_store_scan (mc_store_t *self, const char *prefix, mc_store_scan_fn *fn, void *arg)
{
    return mc_store_scan_after (self, prefix, NULL, fn, arg);
}

int mc_store_scan_after (mc_store_t *self, const char *prefix, const char *after,
                         mc_store_scan_fn *fn, void *arg)
{
    size_t plen = strlen (prefix);
    size_t alen = after ? strlen (after) : 0;
    //  Seek to whichever comes later: the prefix, or the cursor (then skip the cursor).
    bool from_after = alen > 0 && strcmp (after, prefix) > 0;
    leveldb_iterator_t *it = leveldb_create_iterator (self->db, self->read);
    int rc = 0;
    leveldb_iter_seek (it, from_after ? after : prefix, from_after ? alen : plen);
    for (; leveldb_iter_valid (it); leveldb_iter_next (it)) {
        size_t klen, vlen;
        const char *key = leveldb_iter_key (it, &klen);
        if (klen < plen || memcmp (key, prefix, plen) != 0)
            break;
        if (alen > 0 && s_compare (key, klen, after, alen) <= 0)
            continue; // the cursor itself
        const char *value = leveldb_iter_value (it, &vlen);
        char kbuf[512];
        if (klen >= sizeof kbuf)
            continue; // keys are ours and short; a longer one is not of this schema
        memcpy (kbuf, key, klen);
        kbuf[klen] = 0;
        if ((rc = fn (kbuf, klen, value, vlen, arg)) != 0)
            break;
    }
    char *error = NULL;
    leveldb_iter_get_error (it, &error);
    leveldb_iter_destroy (it);
    if (error)
        return s_failed ("scan", prefix, error);
    return rc;
}

mc_store_batch_t *mc_store_batch_new (void)
{
    mc_store_batch_t *batch = calloc (1, sizeof *batch);
    assert (batch);
    batch->batch = leveldb_writebatch_create ();
    return batch;
}

void mc_store_batch_put (mc_store_batch_t *batch, const char *key, const void *value, size_t len)
{
    leveldb_writebatch_put (batch->batch, key, strlen (key), value, len);
}

void mc_store_batch_delete (mc_store_batch_t *batch, const char *key)
{
    leveldb_writebatch_delete (batch->batch, key, strlen (key));
}

int mc_store_batch_commit (mc_store_t *self, mc_store_batch_t *batch, bool sync)
{
    char *error = NULL;
    leveldb_write (self->db, sync ? self->sync : self->nosync, batch->batch, &error);
    leveldb_writebatch_clear (batch->batch);
    return error ? s_failed ("batch", "write", error) : 0;
}

void mc_store_batch_destroy (mc_store_batch_t **batch_p)
{
    mc_store_batch_t *batch = *batch_p;
    if (batch) {
        leveldb_writebatch_destroy (batch->batch);
        free (batch);
    }
    *batch_p = NULL;
}

int mc_store_batch_write (mc_store_t *self, mc_store_batch_t **batch_p, bool sync)
{
    int rc = mc_store_batch_commit (self, *batch_p, sync);
    mc_store_batch_destroy (batch_p);
    return rc;
}
