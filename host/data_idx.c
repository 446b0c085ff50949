/* data_idx.c: the IDX reader (MNIST, Fashion-MNIST).
 *
 * IDX format (big-endian): an image file is magic 0x00000803 (unsigned bytes, 3
 * dimensions), then the count N, rows H and columns W as 32-bit integers (16
 * header bytes), then N*H*W pixels, row-major. A label file is magic 0x00000801,
 * N, then N label bytes (8 header bytes). Files are read through zlib's gzread,
 * which reads gzip-compressed and plain files alike; offsets in messages count
 * bytes of the decompressed data ("decompressed offset") for a gzip file.
 *
 * Every field is checked before it is used, and every read is bounded by the size
 * the header promised and that was allocated, so a damaged file gives a message,
 * never a crash. The image buffer grows with the data actually read (doubling),
 * never to the header's count up front: a 16-byte file claiming 2^32 images of
 * 4096x4096 must not reserve 2^56 bytes (found by tests/fuzz/fuzz_idx.c). */
#include "data.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#define WG_IDX_MAGIC_IMAGES 0x00000803u
#define WG_IDX_MAGIC_LABELS 0x00000801u
#define WG_IDX_CHUNK (1u << 30) /* the largest single gzread */
#define WG_IDX_GROW0 ((int64_t)1 << 20) /* the image buffer's first size, in bytes */

typedef struct wg_idx_file {
    const char *path;
    gzFile gz;
    int64_t off; /* bytes of (decompressed) data consumed */
} wg_idx_file;

static void wg_idx_msg(char *err, size_t errlen, const wg_idx_file *f, int64_t off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void wg_idx_msg(char *err, size_t errlen, const wg_idx_file *f, int64_t off, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    int k = snprintf(err, errlen, "%s: %soffset %lld: ", f->path, f->gz && !gzdirect(f->gz) ? "decompressed " : "",
                     (long long)off);
    if (k < 0 || (size_t)k >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

static bool wg_idx_open(wg_idx_file *f, const char *path, char *err, size_t errlen)
{
    f->path = path;
    f->off = 0;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return false;
    }
    return true;
}

static void wg_idx_close(wg_idx_file *f)
{
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Read up to len bytes into buf; returns how many were read (< len at the end of
 * the data), or -1 after writing a message when zlib reports damaged data. */
static int64_t wg_idx_read_bytes(wg_idx_file *f, void *buf, int64_t len, char *err, size_t errlen)
{
    int64_t got = 0;
    while (got < len) {
        int64_t want = len - got < WG_IDX_CHUNK ? len - got : WG_IDX_CHUNK;
        int k = gzread(f->gz, (unsigned char *)buf + got, (unsigned)want);
        int zerr = Z_OK;
        const char *zmsg = gzerror(f->gz, &zerr);
        if (k < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR)) {
            wg_idx_msg(err, errlen, f, f->off + got + (k > 0 ? k : 0), "damaged gzip data (zlib: %s)", zmsg);
            return -1;
        }
        got += k;
        if (k < want) break; /* end of the data; a gzip stream cut short is Z_BUF_ERROR */
    }
    f->off += got;
    return got;
}

/* Read up to len bytes into *buf, allocated here and grown by doubling as the bytes
 * arrive, so memory follows what the file holds, not what its header claims.
 * Returns how many were read (< len at the end of the data), or -1 after writing a
 * message (damaged data, out of memory). *buf is the caller's to free either way. */
static int64_t wg_idx_read_grow(wg_idx_file *f, uint8_t **buf, int64_t len, char *err, size_t errlen)
{
    int64_t got = 0, cap = 0;
    *buf = NULL;
    while (got < len) {
        int64_t next = cap == 0 ? WG_IDX_GROW0 : 2 * cap;
        cap = next < len ? next : len;
        uint8_t *b = (uint64_t)cap <= (uint64_t)SIZE_MAX ? realloc(*buf, (size_t)cap) : NULL;
        if (!b) {
            wg_idx_msg(err, errlen, f, f->off, "cannot allocate %lld bytes of images", (long long)cap);
            return -1;
        }
        *buf = b;
        int64_t k = wg_idx_read_bytes(f, b + got, cap - got, err, errlen);
        if (k < 0) return -1;
        got += k;
        if (got < cap) break; /* the end of the data */
    }
    return got;
}

static uint32_t wg_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Read and check a header of `words` big-endian words whose first is `magic`. */
static bool wg_idx_header(wg_idx_file *f, uint32_t magic, int words, uint32_t *out, char *err, size_t errlen)
{
    unsigned char hdr[16];
    int64_t got = wg_idx_read_bytes(f, hdr, 4 * words, err, errlen);
    if (got < 0) return false;
    if (got < 4 * words) {
        wg_idx_msg(err, errlen, f, got, "file ends inside the %d-byte IDX header", 4 * words);
        return false;
    }
    for (int i = 0; i < words; i++) out[i] = wg_be32(hdr + 4 * i);
    if (out[0] != magic) {
        const char *what = magic == WG_IDX_MAGIC_IMAGES ? "images" : "labels";
        const char *hint = out[0] == WG_IDX_MAGIC_IMAGES   ? " (this is an image file)"
                           : out[0] == WG_IDX_MAGIC_LABELS ? " (this is a label file)"
                                                           : " (not an IDX file of unsigned bytes)";
        wg_idx_msg(err, errlen, f, 0, "magic number 0x%08x; expected 0x%08x (IDX %s: unsigned bytes, %d dimension%s)%s",
                   out[0], magic, what, words - 1, words > 2 ? "s" : "", hint);
        return false;
    }
    if (out[1] == 0) {
        wg_idx_msg(err, errlen, f, 4, "count 0; expected at least one item");
        return false;
    }
    for (int i = 2; i < words; i++)
        if (out[i] == 0 || out[i] > WG_DATA_MAX_SIDE) {
            wg_idx_msg(err, errlen, f, 4 * i, "%s %u; expected 1..%d", i == 2 ? "rows" : "columns", out[i],
                       WG_DATA_MAX_SIDE);
            return false;
        }
    return true;
}

/* Nothing may follow the last item when the whole file was read. */
static bool wg_idx_expect_end(wg_idx_file *f, int64_t count, const char *what, char *err, size_t errlen)
{
    unsigned char extra;
    int64_t k = wg_idx_read_bytes(f, &extra, 1, err, errlen);
    if (k < 0) return false;
    if (k > 0) {
        wg_idx_msg(err, errlen, f, f->off - 1, "data continues after the last of %lld %s; expected the end of the file",
                   (long long)count, what);
        return false;
    }
    return true;
}

static bool wg_idx_read_images(wg_idx_file *f, int64_t limit, wg_dataset *out, int64_t *header_n, char *err,
                               size_t errlen)
{
    uint32_t h[4];
    if (!wg_idx_header(f, WG_IDX_MAGIC_IMAGES, 4, h, err, errlen)) return false;
    int64_t total = h[1], n = limit > 0 && limit < total ? limit : total;
    int64_t img = (int64_t)h[2] * h[3];
    *header_n = total;
    out->n = n;
    out->h = (int)h[2];
    out->w = (int)h[3];
    out->c = 1;
    int64_t got = wg_idx_read_grow(f, &out->images, n * img, err, errlen); /* n * img < 2^56 */
    if (got < 0) return false;
    if (got < n * img) {
        wg_idx_msg(err, errlen, f, f->off, "file ends after %lld of %lld images (%lld bytes into image %lld)",
                   (long long)(got / img), (long long)total, (long long)(got % img), (long long)(got / img));
        return false;
    }
    return n < total || wg_idx_expect_end(f, total, "images", err, errlen);
}

static bool wg_idx_read_labels(wg_idx_file *f, int64_t n, int64_t images_n, const char *images_path,
                               wg_dataset *out, char *err, size_t errlen)
{
    uint32_t h[2];
    if (!wg_idx_header(f, WG_IDX_MAGIC_LABELS, 2, h, err, errlen)) return false;
    if (h[1] != images_n) {
        wg_idx_msg(err, errlen, f, 4, "%u labels, but %s has %lld images; expected the same count", h[1],
                   images_path, (long long)images_n);
        return false;
    }
    if (!(out->labels = malloc((size_t)n))) {
        wg_idx_msg(err, errlen, f, 4, "cannot allocate %lld labels", (long long)n);
        return false;
    }
    int64_t got = wg_idx_read_bytes(f, out->labels, n, err, errlen);
    if (got < 0) return false;
    if (got < n) {
        wg_idx_msg(err, errlen, f, f->off, "file ends after %lld of %lld labels", (long long)got, (long long)h[1]);
        return false;
    }
    for (int64_t i = 0; i < n; i++)
        if (out->labels[i] >= WG_DATA_NUM_CLASSES) {
            wg_idx_msg(err, errlen, f, 8 + i, "label %u of image %lld; expected 0..%d", out->labels[i], (long long)i,
                       WG_DATA_NUM_CLASSES - 1);
            return false;
        }
    return n < images_n || wg_idx_expect_end(f, images_n, "labels", err, errlen);
}

bool wg_idx_read(const char *images_path, const char *labels_path, int64_t limit, wg_dataset *out, char *err,
                 size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (limit < 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s: limit %lld; expected >= 0 (0 = all)", images_path, (long long)limit);
        return false;
    }
    wg_idx_file fi = {0}, fl = {0};
    int64_t header_n = 0;
    bool ok = wg_idx_open(&fi, images_path, err, errlen) &&
              wg_idx_read_images(&fi, limit, out, &header_n, err, errlen) &&
              wg_idx_open(&fl, labels_path, err, errlen) &&
              wg_idx_read_labels(&fl, out->n, header_n, images_path, out, err, errlen);
    wg_idx_close(&fi);
    wg_idx_close(&fl);
    if (!ok) {
        wg_dataset_free(out);
        return false;
    }
    out->num_classes = WG_DATA_NUM_CLASSES;
    snprintf(out->name, sizeof(out->name), "%s", images_path);
    return true;
}
