/*  Cron schedules for runtime_mode "scheduled": the five classic fields
    "minute hour day-of-month month day-of-week" in the core's local time, each `*`, a
    number, a range `a-b`, a step `*\/n` or `a-b/n`, or a comma list of those; months
    and weekdays may be names (jan..dec, sun..sat); weekday 7 is Sunday too. As in Vixie
    cron, when both day fields are restricted a day matching either one fires. The
    shorthands @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually)
    are accepted. */
#ifndef MC_CRON_H
#define MC_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t minutes;  // bit m: minute m (0..59)
    uint32_t hours;    // bit h (0..23)
    uint32_t days;     // bit d (1..31)
    uint16_t months;   // bit m (1..12)
    uint8_t weekdays;  // bit w (0..6, 0 = Sunday)
    bool days_any;     // day-of-month was "*"
    bool weekdays_any; // day-of-week was "*"
} mc_cron_t;

//  Parses text. Returns 0, or -1 with a reason in why (for a manifest problem).
int mc_cron_parse (const char *text, mc_cron_t *cron, char *why, size_t size);

//  The first matching minute strictly after `after` (unix seconds), or -1 if none
//  within five years (e.g. "0 0 31 2 *").
int64_t mc_cron_next (const mc_cron_t *cron, int64_t after);

#endif
