#include "hist.h"

#include <string.h>

//  Bucket index of a value: values below 2,048 have their own counter; above, the top
//  11 significant bits select the counter.
static unsigned s_index (uint64_t v)
{
    if (v < 2048)
        return (unsigned)v;
    unsigned magnitude = 63u - (unsigned)__builtin_clzll (v); // >= 11
    unsigned shift = magnitude - HIST_SUB_BITS;               // >= 1
    unsigned sub = (unsigned)(v >> shift);                    // 1024..2047
    unsigned index = 2048 + (shift - 1) * 1024 + (sub - 1024);
    return index < HIST_COUNTS ? index : HIST_COUNTS - 1;
}

//  The highest value that falls in bucket index.
static uint64_t s_highest (unsigned index)
{
    if (index < 2048)
        return index;
    unsigned shift = (index - 2048) / 1024 + 1;
    uint64_t sub = (index - 2048) % 1024 + 1024;
    return ((sub + 1) << shift) - 1;
}

void hist_reset (hist_t *h)
{
    memset (h, 0, sizeof *h);
    h->min_us = UINT64_MAX;
}

void hist_record (hist_t *h, uint64_t us)
{
    h->counts[s_index (us > HIST_MAX_US ? HIST_MAX_US : us)]++;
    h->total++;
    h->sum_us += (double)us;
    if (us > h->max_us)
        h->max_us = us;
    if (us < h->min_us)
        h->min_us = us;
}

void hist_merge (hist_t *into, const hist_t *from)
{
    for (unsigned i = 0; i < HIST_COUNTS; i++)
        into->counts[i] += from->counts[i];
    into->total += from->total;
    into->sum_us += from->sum_us;
    if (from->max_us > into->max_us)
        into->max_us = from->max_us;
    if (from->min_us < into->min_us)
        into->min_us = from->min_us;
}

uint64_t hist_percentile (const hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p >= 100.0)
        return h->max_us;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->total + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_COUNTS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = s_highest (i);
            return v < h->max_us ? v : h->max_us;
        }
    }
    return h->max_us;
}

double hist_mean (const hist_t *h)
{
    return h->total ? h->sum_us / (double)h->total : 0.0;
}
