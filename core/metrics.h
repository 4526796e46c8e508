/*  Process-wide metrics for GET /metrics (Prometheus text format).

    Counters and gauges are plain atomics in one static table: request threads and
    actors add to them without locks, and the scrape reads them. Nothing here is actor
    state; it is observation only. Actors are identified by a small fixed index, set
    per thread by mc_actor_bind (the actor's own thread) and per client socket by
    mc_client_new (so a caller knows which actor it sends to): queue depth is what
    callers sent minus what the actor took off its socket. */
#ifndef MC_METRICS_H
#define MC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MC_METRICS_MAX_ACTORS 16
#define MC_METRICS_MAX_ROUTES 64

//  The index of an actor name (registered on first use); -1 if the table is full.
int mc_metrics_actor_id (const char *name);

//  The calling thread is actor `name` (called by mc_actor_bind).
void mc_metrics_set_thread_actor (const char *name);

//  The calling thread's actor index, or -1.
int mc_metrics_thread_actor (void);

//  A message was sent to actor id (by a caller) / taken off its socket (by the actor).
void mc_metrics_actor_sent (int id);
void mc_metrics_actor_received (int id);

//  The actor answered a request it received handling_ns ago.
void mc_metrics_actor_handled (int id, uint64_t handling_ns);

//  Remembers which actor a client socket talks to (per thread), and looks it up.
void mc_metrics_client_register (const void *socket, int id);
int mc_metrics_client_actor (const void *socket);

//  One API request: route index (-1 = no route), final status, duration.
void mc_metrics_request (int route, int status, uint64_t duration_ns);

//  A request refused by the rate limit.
void mc_metrics_rate_limited (void);

//  One native request refused unrun because the core was overloaded.
void mc_metrics_sdk_overloaded (void);

//  Webhook outcomes and the outbox size.
typedef enum {
    MC_DELIVERY_DELIVERED = 0, // 2xx / ACK
    MC_DELIVERY_RETRIED,       // failed, another attempt scheduled
    MC_DELIVERY_DEAD,          // dead-lettered
    MC_DELIVERY_GONE,          // 410: subscription removed
    MC_DELIVERY_OUTCOMES
} mc_delivery_outcome_t;
void mc_metrics_delivery (mc_delivery_outcome_t outcome);
void mc_metrics_outbox_add (int64_t delta);

//  Renders every metric (plus route names from routes[], and extra text appended as
//  is) into a malloc'd string (caller frees).
char *mc_metrics_render (const char *const *route_names, size_t route_count, const char *extra);

#endif
