/*  devices: the device registry of the Selena API (create, list, get, set state,
    delete), persisted in the store (dev/<id>). Bound at inproc://modcore.devices;
    args: mc_context_t *. */
#ifndef MC_DEVICES_H
#define MC_DEVICES_H

#include <czmq.h>
#include <jansson.h>

#include "core/snapshot.h"

void mc_devices_actor (zsock_t *pipe, void *args);

//  Validates a create body {name, type, protocol, capabilities, meta}. Returns NULL if
//  valid, else a static description of the first problem.
const char *mc_device_validate (json_t *body);

//  The devices as the actor last published them (core/snapshot.h): GET /devices and
//  GET /devices/{id} are answered from it in the calling thread, without a hop.
typedef struct mc_devices_view_t mc_devices_view_t;

//  A reference to the published view (from mc_context_t.devices_view), or NULL before
//  the actor has loaded the registry.
mc_devices_view_t *mc_devices_view_acquire (mc_slot_t *slot);

//  Drops the reference; sets *self_p to NULL; safe on NULL.
void mc_devices_view_release (mc_devices_view_t **self_p);

//  {"devices":[...]} sorted by device id, compact JSON; rendered on first use and kept
//  with the view. Valid while the reference is held.
const char *mc_devices_view_list (mc_devices_view_t *self, size_t *len);

//  One device as compact JSON, or NULL. Valid while the reference is held.
const char *mc_devices_view_get (mc_devices_view_t *self, const char *id, size_t *len);

//  Number of devices in the view.
size_t mc_devices_view_count (mc_devices_view_t *self);

#endif
