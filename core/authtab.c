#include "core/authtab.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/perms.h"

typedef struct entry_t {
    uint8_t hash[MC_HASH_LEN]; // sha256 of the token
    mc_principal_t principal;  // who it is
    mc_bucket_t bucket;        // its rate-limit state
    struct entry_t *next;      // chain in the slot
} entry_t;

struct mc_authtab_t {
    pthread_rwlock_t lock; // readers: request threads; writer: the auth actor
    entry_t **slots;       // chained hash table
    size_t slot_count;     // power of two
    size_t size;           // entries
    mc_ratelimit_t limit;  // rate and burst of every bucket
};

static size_t s_slot (const mc_authtab_t *self, const uint8_t hash[MC_HASH_LEN])
{
    uint64_t h;
    memcpy (&h, hash, sizeof h); // a sha256 prefix is already uniformly spread
    return (size_t)(h & (self->slot_count - 1));
}

mc_authtab_t *mc_authtab_new (uint32_t rate, uint32_t burst)
{
    mc_authtab_t *self = calloc (1, sizeof *self);
    assert (self);
    pthread_rwlock_init (&self->lock, NULL);
    self->slot_count = 1024;
    self->slots = calloc (self->slot_count, sizeof *self->slots);
    assert (self->slots);
    mc_ratelimit_init (&self->limit, rate, burst);
    return self;
}

void mc_authtab_destroy (mc_authtab_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mc_authtab_t *self = *self_p;
    for (size_t i = 0; i < self->slot_count; i++)
        for (entry_t *e = self->slots[i], *next; e; e = next) {
            next = e->next;
            free (e);
        }
    free (self->slots);
    pthread_rwlock_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

//  Doubles the slot array; called with the write lock held.
static void s_grow (mc_authtab_t *self)
{
    size_t count = self->slot_count * 2;
    entry_t **slots = calloc (count, sizeof *slots);
    assert (slots);
    entry_t **old = self->slots;
    size_t old_count = self->slot_count;
    self->slots = slots;
    self->slot_count = count;
    for (size_t i = 0; i < old_count; i++)
        for (entry_t *e = old[i], *next; e; e = next) {
            next = e->next;
            size_t s = s_slot (self, e->hash);
            e->next = slots[s];
            slots[s] = e;
        }
    free (old);
}

void mc_authtab_put (mc_authtab_t *self, const uint8_t hash[MC_HASH_LEN],
                     const mc_principal_t *principal)
{
    entry_t *fresh = calloc (1, sizeof *fresh);
    assert (fresh);
    memcpy (fresh->hash, hash, MC_HASH_LEN);
    fresh->principal = *principal;
    pthread_rwlock_wrlock (&self->lock);
    size_t s = s_slot (self, hash);
    for (entry_t **p = &self->slots[s]; *p; p = &(*p)->next)
        if (memcmp ((*p)->hash, hash, MC_HASH_LEN) == 0) {
            entry_t *old = *p;
            fresh->next = old->next;
            *p = fresh;
            free (old);
            pthread_rwlock_unlock (&self->lock);
            return;
        }
    fresh->next = self->slots[s];
    self->slots[s] = fresh;
    if (++self->size > self->slot_count)
        s_grow (self);
    pthread_rwlock_unlock (&self->lock);
}

bool mc_authtab_remove (mc_authtab_t *self, const uint8_t hash[MC_HASH_LEN])
{
    bool found = false;
    pthread_rwlock_wrlock (&self->lock);
    for (entry_t **p = &self->slots[s_slot (self, hash)]; *p; p = &(*p)->next)
        if (memcmp ((*p)->hash, hash, MC_HASH_LEN) == 0) {
            entry_t *old = *p;
            *p = old->next;
            free (old);
            self->size--;
            found = true;
            break;
        }
    pthread_rwlock_unlock (&self->lock);
    return found;
}

mc_auth_result_t mc_authtab_check (mc_authtab_t *self, const char *token, size_t len,
                                   uint32_t permission, uint64_t now_ns, int64_t now_unix,
                                   mc_principal_t *principal, uint64_t *retry_after_ns,
                                   uint32_t *remaining)
{
    uint8_t hash[MC_HASH_LEN];
    mc_token_hash (token, len, hash);
    return mc_authtab_check_hash (self, hash, permission, now_ns, now_unix, principal,
                                  retry_after_ns, remaining);
}

mc_auth_result_t mc_authtab_check_hash (mc_authtab_t *self, const uint8_t hash[MC_HASH_LEN],
                                        uint32_t permission, uint64_t now_ns, int64_t now_unix,
                                        mc_principal_t *principal, uint64_t *retry_after_ns,
                                        uint32_t *remaining)
{
    mc_auth_result_t result = MC_AUTH_UNKNOWN;
    pthread_rwlock_rdlock (&self->lock);
    entry_t *e = self->slots[s_slot (self, hash)];
    while (e && memcmp (e->hash, hash, MC_HASH_LEN) != 0)
        e = e->next;
    if (e && (e->principal.expires_at == 0 || now_unix < e->principal.expires_at)) {
        if (principal)
            *principal = e->principal;
        //  Spend the unit before the permission check: refused calls cost too, so a
        //  module cannot probe for free.
        if (!mc_ratelimit_take (&self->limit, &e->bucket, now_ns, retry_after_ns, remaining))
            result = MC_AUTH_RATE_LIMITED;
        else if (permission && !e->principal.system && e->principal.kind != MC_KIND_ADMIN &&
                 (e->principal.permissions & permission) != permission)
            result = MC_AUTH_FORBIDDEN;
        else
            result = MC_AUTH_OK;
    }
    pthread_rwlock_unlock (&self->lock);
    return result;
}

bool mc_authtab_lookup (mc_authtab_t *self, const char *token, size_t len, int64_t now_unix,
                        mc_principal_t *principal)
{
    uint8_t hash[MC_HASH_LEN];
    mc_token_hash (token, len, hash);
    return mc_authtab_lookup_hash (self, hash, now_unix, principal);
}

bool mc_authtab_lookup_hash (mc_authtab_t *self, const uint8_t hash[MC_HASH_LEN], int64_t now_unix,
                             mc_principal_t *principal)
{
    pthread_rwlock_rdlock (&self->lock);
    entry_t *e = self->slots[s_slot (self, hash)];
    while (e && memcmp (e->hash, hash, MC_HASH_LEN) != 0)
        e = e->next;
    bool found = e && (e->principal.expires_at == 0 || now_unix < e->principal.expires_at);
    if (found && principal)
        *principal = e->principal;
    pthread_rwlock_unlock (&self->lock);
    return found;
}

const mc_ratelimit_t *mc_authtab_limit (mc_authtab_t *self)
{
    return &self->limit;
}

size_t mc_authtab_size (mc_authtab_t *self)
{
    pthread_rwlock_rdlock (&self->lock);
    size_t size = self->size;
    pthread_rwlock_unlock (&self->lock);
    return size;
}
