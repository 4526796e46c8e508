/*  auth: token issue, revocation and verification (with permission check and rate
    limit). Bound at inproc://modcore.auth; args: mc_context_t *. */
#ifndef MC_AUTH_H
#define MC_AUTH_H

#include <czmq.h>

void mc_auth_actor (zsock_t *pipe, void *args);

#endif
