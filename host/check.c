/* check.c: reporting of broken internal invariants (see check.h). */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void wg_die(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "wageubn: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

void wg_run_failed(const char *fmt, ...)
{
    va_list ap;
    fputs("wageubn: training stopped: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(WG_EXIT_DIVERGED);
}

bool wg_input_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return false;
}
