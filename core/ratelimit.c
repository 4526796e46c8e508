#include "core/ratelimit.h"

#include <assert.h>
#include <time.h>

void mc_ratelimit_init (mc_ratelimit_t *limit, uint32_t rate, uint32_t burst)
{
    assert (rate >= 1 && burst >= 1);
    limit->rate = rate;
    limit->burst = burst;
    limit->interval_ns = 1000000000ull / rate;
    limit->tolerance_ns = (uint64_t)(burst - 1) * limit->interval_ns;
}

bool mc_ratelimit_take (const mc_ratelimit_t *limit, mc_bucket_t *bucket, uint64_t now_ns,
                        uint64_t *retry_after_ns, uint32_t *remaining)
{
    uint64_t tat = atomic_load_explicit (&bucket->tat, memory_order_relaxed);
    for (;;) {
        uint64_t start = tat > now_ns ? tat : now_ns;
        //  Allowed while the bucket has not run more than `tolerance` ahead of now.
        if (start - now_ns > limit->tolerance_ns) {
            if (retry_after_ns)
                *retry_after_ns = start - now_ns - limit->tolerance_ns;
            return false;
        }
        uint64_t next = start + limit->interval_ns;
        if (atomic_compare_exchange_weak_explicit (&bucket->tat, &tat, next, memory_order_relaxed,
                                                   memory_order_relaxed)) {
            if (remaining) {
                uint64_t ahead = next - now_ns; // > 0
                uint64_t room = limit->tolerance_ns + limit->interval_ns;
                *remaining = ahead >= room ? 0 : (uint32_t)((room - ahead) / limit->interval_ns);
            }
            return true;
        }
        //  Another thread spent the bucket meanwhile: tat now holds its value; retry.
    }
}

uint64_t mc_clock_mono_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
