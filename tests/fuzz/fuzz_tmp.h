/* fuzz_tmp.h: per-process temporary files for the fuzz harnesses whose reader
 * takes a path, not bytes (the config and dataset readers).
 *
 * Each harness asks for its files once (mkstemp under /tmp, removed at exit) and
 * rewrites them for every input, so a fuzzing run does not create a file per input
 * and parallel fuzzing processes never share one. Any failure here is the harness's
 * environment, not the reader's: it aborts with the reason. */
#ifndef WG_FUZZ_TMP_H
#define WG_FUZZ_TMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A path of a new, empty file "/tmp/wg-fuzz-<tag>-XXXXXX"; valid until exit, when
 * the file is removed. At most WG_FUZZ_TMP_MAX files per process. */
#define WG_FUZZ_TMP_MAX 8
const char *wg_fuzz_tmp_path(const char *tag);

/* Replace the file's contents by data[0..size-1]; gzip-compressed when gz. */
void wg_fuzz_tmp_write(const char *path, const uint8_t *data, size_t size, bool gz);

#endif
