/*  A value one actor publishes for many threads to read without asking it.

    DESIGN. A request/reply hop to an actor wakes two threads (about 35 us each in these
    VMs, design.md): for a read that only needs the actor's current state that hop is
    most of the request's cost (docs/benchmarks.md, profile). So an actor that owns
    read-mostly state builds an immutable value after each change and publishes it in
    a slot; readers (gateway threads, the native transport) take a reference, read it
    at leisure without any lock, and drop it; the last reference frees the value, in
    whichever thread drops it. The slot's mutex is held for one pointer copy and one
    increment. Writes still go through the actor, which publishes the new value before
    it acknowledges the write: a client that was answered reads its own write. The
    token table (core/authtab.h) is the other piece of state shared this way. */
#ifndef MC_SNAPSHOT_H
#define MC_SNAPSHOT_H

#include <stdatomic.h>

//  The header of every shared value: embed it first and give it the value's destructor.
typedef struct mc_shared_t {
    atomic_uint refs;                        // references held
    void (*destroy) (struct mc_shared_t *s); // frees the value when the last one goes
} mc_shared_t;

//  Starts a value with one reference (the caller's).
void mc_shared_init (mc_shared_t *self, void (*destroy) (mc_shared_t *s));

//  Takes one more reference; returns self.
mc_shared_t *mc_shared_ref (mc_shared_t *self);

//  Drops a reference (the value is freed with the last one); safe on NULL.
void mc_shared_release (mc_shared_t *self);

typedef struct mc_slot_t mc_slot_t;

//  An empty slot.
mc_slot_t *mc_slot_new (void);

//  Frees the slot and drops its value; sets *self_p to NULL; safe on NULL.
void mc_slot_destroy (mc_slot_t **self_p);

//  Replaces the published value with value, taking over the caller's reference to it
//  (NULL empties the slot). Readers that hold the previous value keep it until they
//  drop it.
void mc_slot_publish (mc_slot_t *self, mc_shared_t *value);

//  A reference to the published value (drop it with mc_shared_release), or NULL.
mc_shared_t *mc_slot_acquire (mc_slot_t *self);

#endif
