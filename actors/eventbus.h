/*  eventbus: publish, subscriptions (in memory, as Selena specifies), fan-out into
    the webhook actor's durable outbox. Bound at inproc://modcore.eventbus;
    args: mc_context_t *. */
#ifndef MC_EVENTBUS_H
#define MC_EVENTBUS_H

#include <czmq.h>
#include <stdbool.h>

void mc_eventbus_actor (zsock_t *pipe, void *args);

//  True if type is a valid event type to publish: 1..128 chars of [a-z0-9_-] in
//  dot-separated non-empty segments.
bool mc_event_type_valid (const char *type);

//  True if pattern is a valid subscription pattern: a type, "prefix.*" or "*".
bool mc_event_pattern_valid (const char *pattern);

//  True if type matches pattern (exact, "prefix.*" = any type below prefix, "*").
bool mc_event_pattern_match (const char *pattern, const char *type);

//  True if modules may not publish this type (core.*, module.*, device.*, webhook.*).
bool mc_event_type_reserved (const char *type);

#endif
