/*  fanout: see fanout.h. */
#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

char *fanout_body (long bytes, size_t *len)
{
    char *body = malloc ((size_t)(bytes > 0 ? bytes : 0) + 128);
    int head =
        snprintf (body, 128, "{\"id\":\"bench\",\"type\":\"bench.tick\",\"payload\":{\"pad\":\"");
    long pad = bytes - head - 4 > 0 ? bytes - head - 4 : 0;
    memset (body + head, 'x', (size_t)pad);
    strcpy (body + head + pad, "\"}}");
    *len = strlen (body);
    return body;
}

void fanout_report (const char *program, const char *label, int targets, long count, long done,
                    long failed, double secs, const char *what, const char *column, long value,
                    const char *csv)
{
    printf ("%s %s: %d targets x %ld = %ld deliveries (%ld failed) in %.3f s: %.0f/s (%s %ld)\n",
            program, label, targets, count, done, failed, secs, (double)done / secs, what, value);
    if (!csv)
        return;
    FILE *f = fopen (csv, "a");
    if (!f)
        return;
    if (ftell (f) == 0)
        fprintf (f, "label,targets,per_target,deliveries,failed,seconds,deliveries_per_s,%s\n",
                 column);
    fprintf (f, "%s,%d,%ld,%ld,%ld,%.3f,%.1f,%ld\n", label, targets, count, done, failed, secs,
             (double)done / secs, value);
    fclose (f);
}

double fanout_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
