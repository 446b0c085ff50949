/* fuzz_tmp.c: per-process temporary files for the fuzz harnesses (fuzz_tmp.h). */
#define _XOPEN_SOURCE 700 /* mkstemp */
#include "fuzz_tmp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

static char g_paths[WG_FUZZ_TMP_MAX][64];
static int g_npaths;

static void fuzz_tmp_cleanup(void)
{
    for (int i = 0; i < g_npaths; i++) unlink(g_paths[i]);
}

static void fuzz_tmp_die(const char *what, const char *path)
{
    fprintf(stderr, "fuzz harness: %s %s failed (the harness's environment, not the reader)\n", what, path);
    abort();
}

const char *wg_fuzz_tmp_path(const char *tag)
{
    if (g_npaths == WG_FUZZ_TMP_MAX) fuzz_tmp_die("more than WG_FUZZ_TMP_MAX temporary files:", tag);
    char *p = g_paths[g_npaths];
    snprintf(p, sizeof g_paths[0], "/tmp/wg-fuzz-%.16s-XXXXXX", tag);
    int fd = mkstemp(p);
    if (fd < 0) fuzz_tmp_die("mkstemp", p);
    close(fd);
    if (g_npaths++ == 0) atexit(fuzz_tmp_cleanup);
    return p;
}

void wg_fuzz_tmp_write(const char *path, const uint8_t *data, size_t size, bool gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb1"); /* fastest level: the reader sees the same bytes */
        if (!f) fuzz_tmp_die("gzopen", path);
        if (size > 0 && gzwrite(f, data, (unsigned)size) != (int)size) fuzz_tmp_die("gzwrite", path);
        if (gzclose(f) != Z_OK) fuzz_tmp_die("gzclose", path);
        return;
    }
    FILE *f = fopen(path, "wb");
    if (!f) fuzz_tmp_die("fopen", path);
    if (size > 0 && fwrite(data, 1, size, f) != size) fuzz_tmp_die("fwrite", path);
    if (fclose(f) != 0) fuzz_tmp_die("fclose", path);
}
