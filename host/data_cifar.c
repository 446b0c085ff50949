/* data_cifar.c: the CIFAR-10 binary reader.
 *
 * Format ("CIFAR-10 binary version"): a batch file is a sequence of 3073-byte
 * records, each 1 label byte (0..9) then 3072 pixel bytes, channel-major (CHW):
 * the 1024 red pixels row by row, then green, then blue, of a 32x32 image. There is
 * no header; the training set is data_batch_1..5.bin (10000 records each), the
 * test set test_batch.bin. Pixels are stored here as HWC (wg_dataset).
 *
 * The file sizes are taken first, so that a file that is not a whole number of
 * records is reported before anything is allocated; each read is bounded by that
 * size. */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WG_CIFAR_SIDE 32
#define WG_CIFAR_CHANNELS 3
#define WG_CIFAR_PIXELS (WG_CIFAR_SIDE * WG_CIFAR_SIDE * WG_CIFAR_CHANNELS) /* 3072 */
#define WG_CIFAR_RECORD (1 + WG_CIFAR_PIXELS)                               /* 3073 */

/* Open path and count its records; a message on failure. */
static FILE *wg_cifar_open(const char *path, int64_t *records, char *err, size_t errlen)
{
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s (hint: CIFAR-10's binary version unpacks to "
                 "cifar-10-batches-bin/; set data.root to that directory or its parent)",
                 path, errno ? strerror(errno) : "unknown error");
        return NULL;
    }
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "%s: cannot determine the file size (not a regular file?)", path);
        fclose(f);
        return NULL;
    }
    if (size == 0 || size % WG_CIFAR_RECORD != 0) {
        snprintf(err, errlen,
                 "%s: offset %ld: file ends %ld bytes into record %ld; expected whole %d-byte records "
                 "(1 label byte + %d pixel bytes) and at least one",
                 path, size, size % WG_CIFAR_RECORD, size / WG_CIFAR_RECORD, WG_CIFAR_RECORD, WG_CIFAR_PIXELS);
        fclose(f);
        return NULL;
    }
    *records = size / WG_CIFAR_RECORD;
    return f;
}

/* Read `count` records of one file into images/labels (already allocated). */
static bool wg_cifar_read_file(FILE *f, const char *path, int64_t count, uint8_t *images, uint8_t *labels,
                               char *err, size_t errlen)
{
    unsigned char rec[WG_CIFAR_RECORD];
    const int plane = WG_CIFAR_SIDE * WG_CIFAR_SIDE;
    for (int64_t r = 0; r < count; r++) {
        long long off = (long long)r * WG_CIFAR_RECORD;
        if (fread(rec, 1, sizeof(rec), f) != sizeof(rec)) {
            snprintf(err, errlen, "%s: offset %lld: read failed inside record %lld (%s)", path, off, (long long)r,
                     ferror(f) ? "read error" : "file shrank while reading");
            return false;
        }
        if (rec[0] >= WG_DATA_NUM_CLASSES) {
            snprintf(err, errlen, "%s: offset %lld: label %u of record %lld; expected 0..%d", path, off, rec[0],
                     (long long)r, WG_DATA_NUM_CLASSES - 1);
            return false;
        }
        labels[r] = rec[0];
        uint8_t *img = images + r * WG_CIFAR_PIXELS;
        for (int p = 0; p < plane; p++) /* CHW -> HWC */
            for (int ch = 0; ch < WG_CIFAR_CHANNELS; ch++) img[p * WG_CIFAR_CHANNELS + ch] = rec[1 + ch * plane + p];
    }
    return true;
}

bool wg_cifar_read(const char *const *paths, int npaths, int64_t limit, wg_dataset *out, char *err, size_t errlen)
{
    char scratch[1];
    if (!err || errlen == 0) { /* messages are still built; they go nowhere */
        err = scratch;
        errlen = sizeof(scratch);
    }
    memset(out, 0, sizeof(*out));
    if (limit < 0 || npaths < 1) {
        snprintf(err, errlen, "%s: limit %lld, %d files; expected limit >= 0 (0 = all) and at least one file",
                 npaths > 0 ? paths[0] : "(no CIFAR files)", (long long)limit, npaths);
        return false;
    }
    /* Pass 1: sizes of the files that are needed. */
    int64_t total = 0;
    int used = 0;
    for (; used < npaths && (limit == 0 || total < limit); used++) {
        int64_t records;
        FILE *f = wg_cifar_open(paths[used], &records, err, errlen);
        if (!f) return false;
        fclose(f);
        total += records;
    }
    int64_t n = limit > 0 && limit < total ? limit : total;
    out->images = malloc((size_t)n * WG_CIFAR_PIXELS);
    out->labels = malloc((size_t)n);
    if (!out->images || !out->labels) {
        snprintf(err, errlen, "%s: cannot allocate %lld CIFAR images", paths[0], (long long)n);
        wg_dataset_free(out);
        return false;
    }
    /* Pass 2: the records, file by file. */
    int64_t done = 0;
    for (int i = 0; i < used && done < n; i++) {
        int64_t records;
        FILE *f = wg_cifar_open(paths[i], &records, err, errlen);
        if (!f) {
            wg_dataset_free(out);
            return false;
        }
        int64_t take = n - done < records ? n - done : records;
        bool ok = wg_cifar_read_file(f, paths[i], take, out->images + done * WG_CIFAR_PIXELS, out->labels + done,
                                     err, errlen);
        fclose(f);
        if (!ok) {
            wg_dataset_free(out);
            return false;
        }
        done += take;
    }
    if (done < n) {
        snprintf(err, errlen, "%s: the files shrank while being read (%lld of %lld records)", paths[0],
                 (long long)done, (long long)n);
        wg_dataset_free(out);
        return false;
    }
    out->n = n;
    out->h = WG_CIFAR_SIDE;
    out->w = WG_CIFAR_SIDE;
    out->c = WG_CIFAR_CHANNELS;
    out->num_classes = WG_DATA_NUM_CLASSES;
    snprintf(out->name, sizeof(out->name), "%s", paths[0]);
    return true;
}
