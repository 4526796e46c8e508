/*  Per-token rate limit: a token bucket with continuous refill, implemented as
    GCRA (generic cell rate algorithm) so that one bucket is one 64-bit word updated
    with compare-and-swap: exact when many threads spend the same token at once, and
    no lock on the request path.

    A bucket holds up to `burst` units and refills at `rate` units per second. An idle
    token may therefore send `burst` requests at once, then `rate` per second: in any
    window of t seconds at most burst + rate*t requests are accepted. */
#ifndef MC_RATELIMIT_H
#define MC_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint32_t rate;         // units per second
    uint32_t burst;        // bucket capacity
    uint64_t interval_ns;  // 1e9 / rate: the cost of one unit in time
    uint64_t tolerance_ns; // (burst - 1) * interval: how far ahead the bucket may run
} mc_ratelimit_t;

typedef struct {
    _Atomic uint64_t tat; // theoretical arrival time (ns, monotonic) of the next unit
} mc_bucket_t;

//  Sets up a limit of rate units per second with the given burst (both >= 1).
void mc_ratelimit_init (mc_ratelimit_t *limit, uint32_t rate, uint32_t burst);

//  Takes one unit from bucket at time now_ns (a monotonic clock). Returns true if
//  allowed; then *remaining (if not NULL) is the number of units still available now.
//  If refused, *retry_after_ns (if not NULL) is the wait until one unit is available.
bool mc_ratelimit_take (const mc_ratelimit_t *limit, mc_bucket_t *bucket, uint64_t now_ns,
                        uint64_t *retry_after_ns, uint32_t *remaining);

//  CLOCK_MONOTONIC in nanoseconds.
uint64_t mc_clock_mono_ns (void);

#endif
