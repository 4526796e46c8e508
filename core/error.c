#include "core/error.h"

#include <stdio.h>
#include <string.h>

int mc_error_set (mc_error_t *err, const char *code, const char *fmt, ...)
{
    if (!err)
        return -1;
    snprintf (err->code, sizeof err->code, "%s", code);
    va_list args;
    va_start (args, fmt);
    vsnprintf (err->detail, sizeof err->detail, fmt, args);
    va_end (args);
    return -1;
}
