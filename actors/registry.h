/*  registry: module records and their lifecycle (install, start, stop, uninstall,
    restart with the core). Bound at inproc://modcore.registry; args: mc_context_t *.
    Pipe command "BOOT" (sent by main once the gateway listens) starts the always_on
    modules that were running when the core last stopped. */
#ifndef MC_REGISTRY_H
#define MC_REGISTRY_H

#include <czmq.h>

void mc_registry_actor (zsock_t *pipe, void *args);

#endif
