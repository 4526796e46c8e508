/*  The gateway: civetweb serving /api/v1 on the configured address. Not an actor: it
    is the front door, started last and stopped first by main. */
#ifndef MC_GATEWAY_H
#define MC_GATEWAY_H

#include "core/context.h"
#include "core/error.h"

typedef struct mc_gateway_t mc_gateway_t;

//  Starts listening. Returns NULL with err set if it cannot (port taken, bad address).
mc_gateway_t *mc_gateway_start (mc_context_t *ctx, mc_error_t *err);

//  The TCP port actually listened on (useful with port 0).
int mc_gateway_port (mc_gateway_t *self);

//  Stops serving (waits for running requests); sets *self_p to NULL; safe on NULL.
void mc_gateway_stop (mc_gateway_t **self_p);

#endif
