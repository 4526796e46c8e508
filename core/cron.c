#include "core/cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const s_months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const s_days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

//  Reads a number or (when names is set) a three-letter name at *p. Returns -1 if none.
static int s_value (const char **p, const char *const *names, int count, int first)
{
    if (isdigit ((unsigned char)**p)) {
        int value = 0;
        while (isdigit ((unsigned char)**p) && value < 1000)
            value = value * 10 + (*(*p)++ - '0');
        return value;
    }
    for (int i = 0; names && i < count; i++)
        if (strncasecmp (*p, names[i], 3) == 0) {
            *p += 3;
            return first + i;
        }
    return -1;
}

//  Parses one field into bits (bit v for value v). Returns 0 or -1.
static int s_field (const char *text, int lo, int hi, const char *const *names, int count,
                    int first, uint64_t *bits, bool *any)
{
    *bits = 0;
    *any = strcmp (text, "*") == 0;
    const char *p = text;
    for (;;) {
        int from, to, step = 1;
        if (*p == '*') {
            from = lo;
            to = hi;
            p++;
        } else {
            from = s_value (&p, names, count, first);
            if (from < 0)
                return -1;
            to = from;
            if (*p == '-') {
                p++;
                to = s_value (&p, names, count, first);
                if (to < 0)
                    return -1;
            }
        }
        if (*p == '/') {
            p++;
            step = s_value (&p, NULL, 0, 0);
            if (step <= 0)
                return -1;
            if (from == to && text[0] != '*')
                to = hi; // "5/15" = from 5 to the end, every 15
        }
        if (from < lo || to > hi || from > to)
            return -1;
        for (int v = from; v <= to; v += step)
            *bits |= 1ull << v;
        if (*p == 0)
            return 0;
        if (*p++ != ',')
            return -1;
    }
}

int mc_cron_parse (const char *text, mc_cron_t *cron, char *why, size_t size)
{
    static const struct {
        const char *name, *expansion;
    } shorthands[] = {{"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},
                      {"@midnight", "0 0 * * *"}, {"@weekly", "0 0 * * 0"},
                      {"@monthly", "0 0 1 * *"},  {"@yearly", "0 0 1 1 *"},
                      {"@annually", "0 0 1 1 *"}};
    memset (cron, 0, sizeof *cron);
    for (size_t i = 0; i < sizeof shorthands / sizeof shorthands[0]; i++)
        if (strcmp (text, shorthands[i].name) == 0)
            text = shorthands[i].expansion;
    char copy[256];
    if (strlen (text) >= sizeof copy) {
        snprintf (why, size, "longer than %zu characters", sizeof copy - 1);
        return -1;
    }
    snprintf (copy, sizeof copy, "%s", text);
    char *fields[6] = {NULL};
    int n = 0;
    for (char *f = strtok (copy, " \t"); f; f = strtok (NULL, " \t"))
        if (n < 6)
            fields[n++] = f;
        else
            n++;
    if (n != 5) {
        snprintf (why, size, "needs 5 fields (minute hour day month weekday), has %d", n);
        return -1;
    }
    static const char *const what[] = {"minute (0-59)", "hour (0-23)", "day of month (1-31)",
                                       "month (1-12 or jan-dec)", "day of week (0-7 or sun-sat)"};
    uint64_t bits[5];
    bool any[5];
    static const int lows[] = {0, 0, 1, 1, 0}, highs[] = {59, 23, 31, 12, 7};
    for (int i = 0; i < 5; i++) {
        const char *const *names = i == 3 ? s_months : i == 4 ? s_days : NULL;
        if (s_field (fields[i], lows[i], highs[i], names, i == 3 ? 12 : 7, i == 3 ? 1 : 0, &bits[i],
                     &any[i]) != 0) {
            snprintf (why, size, "bad %s field '%s'", what[i], fields[i]);
            return -1;
        }
    }
    cron->minutes = bits[0];
    cron->hours = (uint32_t)bits[1];
    cron->days = (uint32_t)bits[2];
    cron->months = (uint16_t)bits[3];
    cron->weekdays = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); // 7 is Sunday too
    cron->days_any = any[2];
    cron->weekdays_any = any[4];
    return 0;
}

static bool s_day_matches (const mc_cron_t *cron, const struct tm *tm)
{
    bool dom = (cron->days >> tm->tm_mday) & 1;
    bool dow = (cron->weekdays >> tm->tm_wday) & 1;
    if (cron->days_any || cron->weekdays_any)
        return (cron->days_any || dom) && (cron->weekdays_any || dow);
    return dom || dow;
}

int64_t mc_cron_next (const mc_cron_t *cron, int64_t after)
{
    time_t t = (time_t)(after - after % 60 + 60); // the next whole minute
    int64_t limit = after + 5LL * 366 * 86400;
    struct tm tm;
    while (t <= limit) {
        localtime_r (&t, &tm);
        if (!((cron->months >> (tm.tm_mon + 1)) & 1) || !s_day_matches (cron, &tm)) {
            tm.tm_mday += 1; // next day, at 00:00
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            tm.tm_isdst = -1;
            t = mktime (&tm);
            continue;
        }
        if (!((cron->hours >> tm.tm_hour) & 1)) {
            tm.tm_hour += 1;
            tm.tm_min = tm.tm_sec = 0;
            tm.tm_isdst = -1;
            t = mktime (&tm);
            continue;
        }
        if ((cron->minutes >> tm.tm_min) & 1)
            return (int64_t)t;
        t += 60;
    }
    return -1;
}
