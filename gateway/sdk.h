/*  sdk: the native transport's endpoint (docs/sdk-protocol.md). Bound for modules at
    the configured ipc:// (and optional tcp:// with CURVE) endpoint, and for the core
    at inproc://modcore.sdk; args: mc_context_t *. */
#ifndef MC_SDK_H
#define MC_SDK_H

#include <czmq.h>

void mc_sdk_actor (zsock_t *pipe, void *args);

#endif
