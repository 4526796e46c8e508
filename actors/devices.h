/*  devices: the device registry of the Selena API (create, list, get, set state,
    delete), persisted in the store (dev/<id>). Bound at inproc://modcore.devices;
    args: mc_context_t *. */
#ifndef MC_DEVICES_H
#define MC_DEVICES_H

#include <czmq.h>
#include <jansson.h>

void mc_devices_actor (zsock_t *pipe, void *args);

//  Validates a create body {name, type, protocol, capabilities, meta}. Returns NULL if
//  valid, else a static description of the first problem.
const char *mc_device_validate (json_t *body);

#endif
