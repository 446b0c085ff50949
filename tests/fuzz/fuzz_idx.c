/* fuzz_idx.c: libFuzzer harness of the dataset readers (wg_idx_read and
 * wg_cifar_read, data.h).
 *
 * Input layout (3 header bytes, then two files' bytes):
 *   byte 0     flags: bits 0-1 the image limit (0 = all, else 1..3); bit 2 gzip the
 *              image file, bit 3 gzip the label file (so that the gzip path sees
 *              valid streams, which a fuzzer rarely forms; raw gzip bytes in the
 *              input reach it too)
 *   bytes 1-2  little-endian length L of the image file (clamped to what is left)
 *   then       L bytes of the IDX image file, then the IDX label file (the rest)
 * The same two byte ranges, uncompressed, are also read as two CIFAR-10 batch
 * files, in that order, with the same limit.
 *
 * Properties checked, beyond "no crash, no leak, no undefined behaviour": a failure
 * comes with a message; a success gives 1 <= n (<= limit when there is one), sides
 * in 1..WG_DATA_MAX_SIDE, the right channels, labels < num_classes, and image and
 * label buffers of exactly the size the header promised (every byte is read, so
 * AddressSanitizer sees a short buffer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "data.h"
#include "fuzz_tmp.h"

static void fuzz_fail(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_idx: %s%s%s\n", what, err ? ": " : "", err ? err : "");
    abort();
}

static void fuzz_check(const wg_dataset *ds, int64_t limit, int channels)
{
    if (ds->n < 1 || (limit > 0 && ds->n > limit)) fuzz_fail("image count out of range", ds->name);
    if (ds->h < 1 || ds->h > WG_DATA_MAX_SIDE || ds->w < 1 || ds->w > WG_DATA_MAX_SIDE || ds->c != channels)
        fuzz_fail("image shape out of range", ds->name);
    if (ds->num_classes != WG_DATA_NUM_CLASSES || !ds->images || !ds->labels) fuzz_fail("bad dataset", ds->name);
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->labels[i] >= ds->num_classes) fuzz_fail("label out of range", ds->name);
    /* Touch every pixel: a buffer shorter than n*h*w*c is a heap overflow for ASan. */
    size_t bytes = (size_t)ds->n * (size_t)ds->h * (size_t)ds->w * (size_t)ds->c;
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < bytes; i++) sum += ds->images[i];
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *images, *labels;
    if (!images) images = wg_fuzz_tmp_path("idx-images"), labels = wg_fuzz_tmp_path("idx-labels");
    if (size < 3) return 0;
    int flags = data[0];
    int64_t limit = flags & 3;
    size_t len = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3, size -= 3;
    if (len > size) len = size;

    char err[1024];
    wg_dataset ds;
    wg_fuzz_tmp_write(images, data, len, flags & 4);
    wg_fuzz_tmp_write(labels, data + len, size - len, flags & 8);
    err[0] = '\0';
    if (wg_idx_read(images, labels, limit, &ds, err, sizeof err)) {
        fuzz_check(&ds, limit, 1);
        wg_dataset_free(&ds);
    } else if (!err[0]) {
        fuzz_fail("wg_idx_read failed without a message", NULL);
    }

    if (flags & 12) { /* CIFAR reads the files as they are: uncompressed */
        wg_fuzz_tmp_write(images, data, len, false);
        wg_fuzz_tmp_write(labels, data + len, size - len, false);
    }
    const char *paths[2] = {images, labels};
    err[0] = '\0';
    if (wg_cifar_read(paths, 2, limit, &ds, err, sizeof err)) {
        fuzz_check(&ds, limit, 3);
        wg_dataset_free(&ds);
    } else if (!err[0]) {
        fuzz_fail("wg_cifar_read failed without a message", NULL);
    }
    return 0;
}
