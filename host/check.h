/* check.h: the tiers of errors (style.md, item 6).
 *
 * Internal invariants (a programming error inside wageubn) abort loudly with the
 * failing condition, file and line. Errors in what a user gave us (config, command
 * line, dataset, checkpoint) are not handled here: those functions return a status
 * with a message naming the file, field or offset. A run that cannot go on (a float
 * layer diverged) stops with wg_run_failed: a message, exit status WG_EXIT_DIVERGED. */
#ifndef WG_CHECK_H
#define WG_CHECK_H

#ifdef __cplusplus
extern "C" {
#endif

void wg_die(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));

/* Abort with a message when an internal invariant fails. No side effects in cond. */
#define WG_ASSERT(cond, ...)                                                      \
    do {                                                                          \
        if (!(cond)) wg_die(__FILE__, __LINE__, "assertion `" #cond "` failed: " __VA_ARGS__); \
    } while (0)

#define WG_DIE(...) wg_die(__FILE__, __LINE__, __VA_ARGS__)

/* A user-input error: the message into err (errlen bytes), and false, for the
 * readers' `return wg_input_error(err, errlen, "%s: offset %zu: ...", ...)`. */
#include <stdbool.h>
#include <stddef.h>
bool wg_input_error(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define WG_EXIT_DIVERGED 3
void wg_run_failed(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif

#endif
