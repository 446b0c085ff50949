/* fuzz_config.c: libFuzzer harness of the config reader (wg_config_load, config.h).
 *
 * The input is a config file's bytes, optionally followed by a line "--set" and
 * then --set overrides, one "section.key=value" per line (at most MAX_SETS; the
 * file part may then hold anything, NUL bytes included, but that line). config.h
 * offers no loader from memory, so the file part goes to a per-process temporary
 * file (fuzz_tmp.h). Properties checked, beyond "no
 * crash, no leak, no undefined behaviour" (the sanitizers):
 *   - a failure always comes with a message (style.md item 6: a user-input error
 *     names what is wrong);
 *   - a success passes wg_config_validate, and the resolved config written with
 *     wg_config_write loads back equal (config.h promises that round trip). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_tmp.h"

/* Stop the harness on a broken property: libFuzzer records the input as a crash. */
static void fuzz_fail(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_config: %s%s%s\n", what, err ? ": " : "", err ? err : "");
    abort();
}

#define SET_MARK "\n--set\n"
#define MAX_SETS 8

/* The offset of the first SET_MARK in data, or size when there is none. */
static size_t find_mark(const uint8_t *data, size_t size)
{
    size_t m = sizeof SET_MARK - 1;
    for (size_t i = 0; i + m <= size; i++)
        if (memcmp(data + i, SET_MARK, m) == 0) return i;
    return size;
}

/* Split text (NUL-terminated, modified) into at most MAX_SETS lines. */
static int split_sets(char *text, const char *sets[MAX_SETS])
{
    int n = 0;
    for (char *line = text; line && n < MAX_SETS; n++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        sets[n] = line;
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *path, *again;
    if (!path) path = wg_fuzz_tmp_path("config"), again = wg_fuzz_tmp_path("config-again");
    size_t file = find_mark(data, size);
    wg_fuzz_tmp_write(path, data, file, false);
    const char *sets[MAX_SETS];
    int nsets = 0;
    char *text = NULL;
    if (file < size) { /* the overrides, as NUL-terminated lines (a NUL byte ends one early) */
        size_t at = file + sizeof SET_MARK - 1;
        text = malloc(size - at + 1);
        if (!text) fuzz_fail("out of memory", NULL);
        memcpy(text, data + at, size - at);
        text[size - at] = '\0';
        nsets = split_sets(text, sets);
    }

    static wg_config cfg, back; /* static: a wg_config is a few KiB */
    char err[WG_CONFIG_ERR_LEN], warn[4096];
    err[0] = '\0';
    bool ok = wg_config_load(&cfg, path, sets, nsets, err, sizeof err, warn, sizeof warn);
    free(text);
    if (!ok) {
        if (!err[0]) fuzz_fail("wg_config_load failed without a message", NULL);
        return 0;
    }
    if (!wg_config_validate(&cfg, err, sizeof err, warn, sizeof warn))
        fuzz_fail("a loaded config fails wg_config_validate", err);

    FILE *f = fopen(again, "w");
    if (!f) fuzz_fail("cannot open the round-trip file", again);
    bool wrote = wg_config_write(&cfg, f);
    if (fclose(f) != 0 || !wrote) fuzz_fail("cannot write the round-trip file", again);
    if (!wg_config_load(&back, again, NULL, 0, err, sizeof err, warn, sizeof warn))
        fuzz_fail("the written config does not load", err);
    if (!wg_config_equal(&cfg, &back)) fuzz_fail("the written config loads as a different config", NULL);
    return 0;
}
