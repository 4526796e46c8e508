/*  A latency histogram in the manner of HdrHistogram: log-linear buckets, 1 us
    resolution up to 2,048 us, then 1,024 sub-buckets per power of two (relative error
    below 0.1 %), up to 60 s; larger values are counted in the last bucket (and the
    exact maximum is kept apart). Fixed size (17,408 counters, 136 KiB), no allocation
    while recording, mergeable: one per client thread, added up at the end. */
#ifndef MC_BENCH_HIST_H
#define MC_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 10                 // 1,024 sub-buckets
#define HIST_MAX_US   60000000ull        // 60 s
#define HIST_COUNTS   (2048 + 15 * 1024) // up to 2^26 us > 60 s

typedef struct {
    uint64_t counts[HIST_COUNTS]; // per bucket
    uint64_t total;               // values recorded
    uint64_t max_us;              // exact largest value
    uint64_t min_us;              // exact smallest value (UINT64_MAX when empty)
    double sum_us;                // for the mean
} hist_t;

//  Empties h.
void hist_reset (hist_t *h);

//  Records one value in microseconds.
void hist_record (hist_t *h, uint64_t us);

//  Adds every count of from into into.
void hist_merge (hist_t *into, const hist_t *from);

//  The value at percentile p (0..100): the highest value equivalent to the bucket
//  holding the ceil(p% x total)-th value; the exact maximum for p = 100; 0 when empty.
uint64_t hist_percentile (const hist_t *h, double p);

//  The mean, in microseconds.
double hist_mean (const hist_t *h);

#endif
