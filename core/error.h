/*  Errors that cross a boundary: a short machine code and a human detail.
    Every bad input ends as one of these, then as {"error": code, "detail": text}. */
#ifndef MC_ERROR_H
#define MC_ERROR_H

#include <stdarg.h>

typedef struct {
    char code[40];    // machine-readable code, e.g. "ZIP_UNSAFE_PATH"
    char detail[512]; // one sentence for a human, never containing a secret
} mc_error_t;

//  Fills err (if not NULL) with code and a printf-style detail. Returns -1 so callers
//  can write `return mc_error_set (err, ...);`.
int mc_error_set (mc_error_t *err, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#endif
