/* replay_main.c: runs a libFuzzer harness without libFuzzer, for ctest.
 *
 * Usage: replay_<target> PATH...: calls LLVMFuzzerTestOneInput once on every
 * regular file of each directory PATH (in name order, so a failure reproduces) or
 * on PATH itself when it is a file. A harness reports a broken property by
 * aborting, and the sanitizers of the build abort on memory errors, so reaching the
 * end means every input passed. Finding no input at all is a failure: a corpus
 * directory that moved must not turn the test into a no-op. */
#define _XOPEN_SOURCE 700 /* scandir, alphasort */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read a whole file; NULL (with a message) when it cannot be read. */
static uint8_t *replay_read(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return perror(path), NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            uint8_t *b = realloc(buf, cap = cap ? 2 * cap : 4096);
            if (!b) return fclose(f), free(buf), fprintf(stderr, "%s: out of memory\n", path), NULL;
            buf = b;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return free(buf), fprintf(stderr, "%s: read error\n", path), NULL;
    *size = n;
    return buf;
}

/* Run one file; returns 1 when it was run, 0 for something that is not a regular file, -1 on error. */
static int replay_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) return perror(path), -1;
    if (!S_ISREG(st.st_mode)) return 0;
    size_t size = 0;
    uint8_t *data = replay_read(path, &size);
    if (!data) return -1;
    fprintf(stderr, "replay %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) return fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]), 2;
    int ran = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) return perror(argv[a]), 1;
        if (!S_ISDIR(st.st_mode)) {
            int r = replay_file(argv[a]);
            if (r < 0) return 1;
            ran += r;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[a], &names, NULL, alphasort);
        if (n < 0) return perror(argv[a]), 1;
        int failed = 0;
        for (int i = 0; i < n; i++) {
            char path[4096];
            if (!failed && names[i]->d_name[0] != '.') {
                snprintf(path, sizeof path, "%s/%s", argv[a], names[i]->d_name);
                int r = replay_file(path);
                failed = r < 0;
                ran += r > 0;
            }
            free(names[i]);
        }
        free(names);
        if (failed) return 1;
    }
    if (ran == 0) return fprintf(stderr, "%s: no input files found\n", argv[0]), 1;
    fprintf(stderr, "%s: %d input%s passed\n", argv[0], ran, ran == 1 ? "" : "s");
    return 0;
}
