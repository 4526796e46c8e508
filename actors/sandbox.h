/*  sandbox: starts, health-checks and stops module processes.
    Bound at inproc://modcore.sandbox; args: mc_context_t *. */
#ifndef MC_SANDBOX_H
#define MC_SANDBOX_H

#include <czmq.h>

void mc_sandbox_actor (zsock_t *pipe, void *args);

//  GET /health on 127.0.0.1:port with a timeout; returns the HTTP status or -1.
int mc_sandbox_probe_health (int port, int timeout_ms);

#endif
