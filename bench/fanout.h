/*  What the fan-out baselines of scenario 5 share (curl_fanout, wh_threads): the
    event-shaped body they POST, and how they report a run. */
#ifndef MC_BENCH_FANOUT_H
#define MC_BENCH_FANOUT_H
#include <stddef.h>

//  A body shaped like an event, about bytes long: {"id": ..., "type": ...,
//  "payload": {"pad": "xxx"}}. The caller frees it; *len is its length.
char *fanout_body (long bytes, size_t *len);

//  Prints the run's line ("<program> <label>: N targets x count = done deliveries
//  (failed failed) in s: rate/s (<what> value)") and, with csv, appends its row (label,
//  targets, per_target, deliveries, failed, seconds, deliveries_per_s, <column>).
void fanout_report (const char *program, const char *label, int targets, long count, long done,
                    long failed, double secs, const char *what, const char *column, long value,
                    const char *csv);

double fanout_now (void);

#endif
