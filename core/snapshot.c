/*  Published values: see snapshot.h. */
#include "core/snapshot.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

struct mc_slot_t {
    pthread_mutex_t lock; // guards value: held for a pointer copy and an increment
    mc_shared_t *value;   // the published value (one reference held here), or NULL
};

void mc_shared_init (mc_shared_t *self, void (*destroy) (mc_shared_t *s))
{
    atomic_init (&self->refs, 1);
    self->destroy = destroy;
}

mc_shared_t *mc_shared_ref (mc_shared_t *self)
{
    atomic_fetch_add_explicit (&self->refs, 1, memory_order_relaxed);
    return self;
}

void mc_shared_release (mc_shared_t *self)
{
    if (self && atomic_fetch_sub_explicit (&self->refs, 1, memory_order_acq_rel) == 1)
        self->destroy (self);
}

mc_slot_t *mc_slot_new (void)
{
    mc_slot_t *self = calloc (1, sizeof *self);
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

void mc_slot_destroy (mc_slot_t **self_p)
{
    mc_slot_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    mc_shared_release (self->value);
    pthread_mutex_destroy (&self->lock);
    free (self);
}

void mc_slot_publish (mc_slot_t *self, mc_shared_t *value)
{
    pthread_mutex_lock (&self->lock);
    mc_shared_t *old = self->value;
    self->value = value;
    pthread_mutex_unlock (&self->lock);
    mc_shared_release (old); // outside the lock: freeing a large value takes time
}

mc_shared_t *mc_slot_acquire (mc_slot_t *self)
{
    pthread_mutex_lock (&self->lock);
    mc_shared_t *value = self->value ? mc_shared_ref (self->value) : NULL;
    pthread_mutex_unlock (&self->lock);
    return value;
}
