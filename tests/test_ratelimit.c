/*  Unit suite for core/ratelimit: the GCRA token bucket, driven by an injected clock
    so every count is exact. Times start at T0 = 10^12 ns (a monotonic clock that has
    been running for a while; a fresh bucket's tat of 0 is then far in the past). */
#include "core/ratelimit.h"

#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define T0        1000000000000ull // the first instant of every test
#define MS        1000000ull       // one millisecond in ns
#define SECOND    1000000000ull    // one second in ns
#define N_THREADS 8

static void test_init (void)
{
    mc_ratelimit_t limit;
    mc_ratelimit_init (&limit, 100, 20);
    CU_ASSERT_EQUAL (limit.rate, 100);
    CU_ASSERT_EQUAL (limit.burst, 20);
    CU_ASSERT_EQUAL (limit.interval_ns, 10 * MS);
    CU_ASSERT_EQUAL (limit.tolerance_ns, 19 * 10 * MS);
    mc_ratelimit_init (&limit, 1, 1);
    CU_ASSERT_EQUAL (limit.interval_ns, SECOND);
    CU_ASSERT_EQUAL (limit.tolerance_ns, 0);
}

//  A full bucket admits exactly burst at one instant, remaining counting down, then
//  refuses with retry_after = one interval (the next unit refills then).
static void test_burst_at_one_instant (void)
{
    mc_ratelimit_t limit;
    mc_ratelimit_init (&limit, 100, 20);
    mc_bucket_t bucket = {0};
    for (uint32_t i = 0; i < 20; i++) {
        uint32_t remaining = 12345;
        uint64_t retry = 777;
        CU_ASSERT_TRUE (mc_ratelimit_take (&limit, &bucket, T0, &retry, &remaining));
        CU_ASSERT_EQUAL (remaining, 19 - i);
        CU_ASSERT_EQUAL (retry, 777); // untouched when allowed
    }
    for (int i = 0; i < 3; i++) {
        uint64_t retry = 0;
        uint32_t remaining = 12345;
        CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, T0, &retry, &remaining));
        CU_ASSERT_EQUAL (retry, limit.interval_ns);
        CU_ASSERT_EQUAL (remaining, 12345); // untouched when refused
    }
    //  A refused take costs nothing: one ns before the interval it is still refused
    //  (1 ns to wait), at the interval exactly one more is allowed.
    uint64_t retry = 0;
    CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, T0 + 10 * MS - 1, &retry, NULL));
    CU_ASSERT_EQUAL (retry, 1);
    uint32_t remaining = 12345;
    CU_ASSERT_TRUE (mc_ratelimit_take (&limit, &bucket, T0 + 10 * MS, NULL, &remaining));
    CU_ASSERT_EQUAL (remaining, 0);
    CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, T0 + 10 * MS, &retry, NULL));
    CU_ASSERT_EQUAL (retry, 10 * MS);
}

//  After the bucket is drained, each interval refills exactly one unit; part of an
//  interval refills nothing usable yet; an idle bucket refills up to burst, no more.
static void test_continuous_refill (void)
{
    mc_ratelimit_t limit;
    mc_ratelimit_init (&limit, 100, 5);
    mc_bucket_t bucket = {0};
    for (int i = 0; i < 5; i++)
        CU_ASSERT_TRUE (mc_ratelimit_take (&limit, &bucket, T0, NULL, NULL));
    CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, T0, NULL, NULL));
    for (uint64_t k = 1; k <= 10; k++) {
        uint64_t now = T0 + k * limit.interval_ns;
        CU_ASSERT_TRUE (mc_ratelimit_take (&limit, &bucket, now, NULL, NULL));
        uint64_t retry = 0;
        CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, now, &retry, NULL));
        CU_ASSERT_EQUAL (retry, limit.interval_ns);
    }
    //  2.5 intervals later: two units, and the third half an interval away.
    uint64_t now = T0 + 10 * limit.interval_ns + 25 * MS;
    CU_ASSERT_TRUE (mc_ratelimit_take (&limit, &bucket, now, NULL, NULL));
    CU_ASSERT_TRUE (mc_ratelimit_take (&limit, &bucket, now, NULL, NULL));
    uint64_t retry = 0;
    CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, now, &retry, NULL));
    CU_ASSERT_EQUAL (retry, 5 * MS);
    //  An hour idle: the bucket is full again, but holds burst, not an hour's worth.
    now += 3600 * SECOND;
    uint32_t remaining = 0;
    int allowed = 0;
    while (mc_ratelimit_take (&limit, &bucket, now, NULL, &remaining)) {
        CU_ASSERT_EQUAL (remaining, 4 - (uint32_t)allowed);
        allowed++;
        if (allowed > 100)
            break;
    }
    CU_ASSERT_EQUAL (allowed, 5);
}

//  How the counts below are computed. Interval I = 10 ms, tolerance (burst-1)*I =
//  190 ms. The first take (bucket idle) sets tat = T0 + I; every later accepted take
//  finds tat still ahead of now in these tests (argued in each comment) and adds I,
//  so after n accepted takes tat = T0 + n*I, and the next take at time t is accepted
//  iff tat - t <= 190 ms, i.e. t >= T0 + (n - 19) * I. Unit n (from 0) therefore goes
//  to the first request not before T0 + (n - 19) * 10 ms that follows unit n - 1.

//  Requests every 1 ms from a full bucket (rate 100/s, burst 20).
//  Units 0..21 go at ms 0..21 (at ms n: tat - t = 10n - n = 9n ms <= 190 for n <= 21;
//  the burst plus the two units refilled meanwhile); ms 22..29 are refused (198 ms >
//  190); from then on unit n goes at exactly (n - 19) * 10 ms, a whole millisecond, so
//  tat stays ahead of now and on the 10 ms grid. In the closed window [T0, T0 + 1 s]
//  (1001 requests) the last unit is n - 19 = 100, n = 119: exactly 120 = burst + rate
//  accepted, the bound in the header. In the half-open window [T0, T0 + 1 s) (1000
//  requests) the unit that refills at T0 + 1 s is not reached: 119 = burst + rate - 1.
static void test_one_second_every_ms (void)
{
    mc_ratelimit_t limit;
    mc_ratelimit_init (&limit, 100, 20);
    mc_bucket_t bucket = {0};
    int accepted = 0;
    for (uint64_t ms = 0; ms < 1000; ms++)
        accepted += mc_ratelimit_take (&limit, &bucket, T0 + ms * MS, NULL, NULL);
    CU_ASSERT_EQUAL (accepted, 20 + 100 - 1);
    accepted += mc_ratelimit_take (&limit, &bucket, T0 + 1000 * MS, NULL, NULL);
    CU_ASSERT_EQUAL (accepted, 20 + 100);

    //  The start of the same run, millisecond by millisecond.
    mc_bucket_t fresh = {0};
    for (uint64_t ms = 0; ms <= 30; ms++) {
        bool allowed = mc_ratelimit_take (&limit, &fresh, T0 + ms * MS, NULL, NULL);
        CU_ASSERT_EQUAL (allowed, ms <= 21 || ms == 30);
    }
}

//  150 req/s offered for 10 s against rate 100/s, burst 20: request j at
//  T0 + floor(j * 10^9 / 150) ns, 6.67 ms apart. Units 0..57 go to requests 0..57
//  (tat - t = 10n - 6.67n ms <= 190 for n <= 57); after that requests are denser than
//  refills (10 ms), so unit n goes to the first request at or after
//  T0 + (n - 19) * 10 ms, less than 6.67 ms later, while tat is still 183 ms or more
//  ahead: tat stays on the 10 ms grid. j = 0..1500 covers [T0, T0 + 10 s] exactly
//  (request 1500 lands on T0 + 10 s), where the last unit is n - 19 = 1000:
//  20 + 1000 accepted = burst + rate * 10. Without that last request: one fewer.
static void test_sustained_overload (void)
{
    mc_ratelimit_t limit;
    mc_ratelimit_init (&limit, 100, 20);
    mc_bucket_t bucket = {0};
    int accepted = 0, refused = 0;
    for (uint64_t j = 0; j <= 1500; j++) {
        uint64_t now = T0 + j * SECOND / 150;
        bool allowed = mc_ratelimit_take (&limit, &bucket, now, NULL, NULL);
        if (j == 1499)
            CU_ASSERT_EQUAL (accepted + allowed, 20 + 100 * 10 - 1);
        if (allowed)
            accepted++;
        else
            refused++;
    }
    CU_ASSERT_EQUAL (accepted, 20 + 100 * 10);
    CU_ASSERT_EQUAL (accepted + refused, 1501);
}

//  Rate 1/s with burst 1: one request, then nothing until a whole second later.
static void test_one_per_second (void)
{
    mc_ratelimit_t limit;
    mc_ratelimit_init (&limit, 1, 1);
    mc_bucket_t bucket = {0};
    uint32_t remaining = 99;
    uint64_t retry = 0;
    CU_ASSERT_TRUE (mc_ratelimit_take (&limit, &bucket, T0, &retry, &remaining));
    CU_ASSERT_EQUAL (remaining, 0);
    CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, T0, &retry, NULL));
    CU_ASSERT_EQUAL (retry, SECOND);
    CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, T0 + 400 * MS, &retry, NULL));
    CU_ASSERT_EQUAL (retry, 600 * MS);
    CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, T0 + SECOND - 1, &retry, NULL));
    CU_ASSERT_EQUAL (retry, 1);
    CU_ASSERT_TRUE (mc_ratelimit_take (&limit, &bucket, T0 + SECOND, NULL, &remaining));
    CU_ASSERT_EQUAL (remaining, 0);
    CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, T0 + SECOND, NULL, NULL));
    //  Ten seconds idle still gives one unit only.
    CU_ASSERT_TRUE (mc_ratelimit_take (&limit, &bucket, T0 + 11 * SECOND, NULL, NULL));
    CU_ASSERT_FALSE (mc_ratelimit_take (&limit, &bucket, T0 + 11 * SECOND, &retry, NULL));
    CU_ASSERT_EQUAL (retry, SECOND);
}

//  Shared by the hammering threads.
typedef struct {
    const mc_ratelimit_t *limit; // the limit
    mc_bucket_t *bucket;         // the one bucket they all spend
    pthread_barrier_t *start;    // all threads begin together
    int attempts;                // takes per thread
    atomic_int accepted;         // total allowed
} s_hammer_t;

static void *s_hammer (void *arg)
{
    s_hammer_t *h = arg;
    pthread_barrier_wait (h->start);
    int mine = 0;
    for (int i = 0; i < h->attempts; i++)
        mine += mc_ratelimit_take (h->limit, h->bucket, T0, NULL, NULL);
    atomic_fetch_add (&h->accepted, mine);
    return NULL;
}

//  8 threads spend one bucket at a fixed instant, far more often than it holds: the
//  total allowed is exactly burst, never a unit more (a lost update would allow more).
static void test_concurrent_exact (void)
{
    for (uint32_t burst = 1; burst <= 100001; burst += 50000) {
        mc_ratelimit_t limit;
        mc_ratelimit_init (&limit, 100, burst);
        mc_bucket_t bucket = {0};
        pthread_barrier_t start;
        pthread_barrier_init (&start, NULL, N_THREADS);
        s_hammer_t h = {.limit = &limit, .bucket = &bucket, .start = &start};
        h.attempts = (int)(burst / N_THREADS) + 20000;
        atomic_init (&h.accepted, 0);
        pthread_t threads[N_THREADS];
        for (int i = 0; i < N_THREADS; i++)
            CU_ASSERT_FATAL (pthread_create (&threads[i], NULL, s_hammer, &h) == 0);
        for (int i = 0; i < N_THREADS; i++)
            pthread_join (threads[i], NULL);
        pthread_barrier_destroy (&start);
        CU_ASSERT_EQUAL (atomic_load (&h.accepted), (int)burst);
        //  The bucket is exactly burst intervals ahead.
        CU_ASSERT_EQUAL (atomic_load (&bucket.tat), T0 + burst * limit.interval_ns);
    }
}

void mc_test_ratelimit (void)
{
    CU_pSuite suite = CU_add_suite ("ratelimit", NULL, NULL);
    CU_add_test (suite, "init", test_init);
    CU_add_test (suite, "burst at one instant", test_burst_at_one_instant);
    CU_add_test (suite, "continuous refill", test_continuous_refill);
    CU_add_test (suite, "one second, every ms", test_one_second_every_ms);
    CU_add_test (suite, "sustained 150/s for 10 s", test_sustained_overload);
    CU_add_test (suite, "1/s burst 1", test_one_per_second);
    CU_add_test (suite, "concurrent exact", test_concurrent_exact);
}
