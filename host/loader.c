/* loader.c: crops, samples and the threaded batch loader (see loader.h). */
#define _POSIX_C_SOURCE 200809L
#include "loader.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "data.h"
#include "wg_philox.h"

wg_crop_opts wg_crop_opts_reference(void)
{
    return (wg_crop_opts){.size = 224, .area_lo = 0.05, .area_hi = 1.0, .ratio_lo = 3.0 / 4.0, .ratio_hi = 4.0 / 3.0,
                          .center = 0.875};
}

/* ---- crops ---- */

/* Random word `draw` of image `index` in `epoch`: one Philox block per four draws. */
static uint32_t crop_word(uint64_t seed, uint32_t epoch, int64_t index, int draw)
{
    wg_u32x4 c = {{(uint32_t)index, (uint32_t)(draw / 4), WG_DATA_STREAM_CROP, epoch}};
    return wg_philox4x32_10(c, wg_philox_key_from_seed(seed)).v[draw % 4];
}

static double uniform(uint32_t u, double lo, double hi) { return lo + (hi - lo) * ((double)u * 0x1p-32); }

/* A uniform integer in [0, n] (n + 1 values). */
static int below(uint32_t u, int n) { return (int)(((uint64_t)u * (uint64_t)(n + 1)) >> 32); }

enum { CROP_TRIES = 10, DRAW_FLIP = 4 * CROP_TRIES };

wg_crop wg_crop_train(const wg_crop_opts *o, int W, int H, uint64_t seed, uint32_t epoch, int64_t index)
{
    WG_ASSERT(index >= 0 && index <= UINT32_MAX, "image index %lld", (long long)index);
    wg_crop c = {.flip = crop_word(seed, epoch, index, DRAW_FLIP) >> 31};
    double area = (double)W * (double)H, lr_lo = log(o->ratio_lo), lr_hi = log(o->ratio_hi);
    for (int t = 0; t < CROP_TRIES; t++) {
        double target = area * uniform(crop_word(seed, epoch, index, 4 * t), o->area_lo, o->area_hi);
        double aspect = exp(uniform(crop_word(seed, epoch, index, 4 * t + 1), lr_lo, lr_hi));
        int w = (int)lround(sqrt(target * aspect)), h = (int)lround(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            c.y = below(crop_word(seed, epoch, index, 4 * t + 2), H - h);
            c.x = below(crop_word(seed, epoch, index, 4 * t + 3), W - w);
            c.w = w, c.h = h;
            return c;
        }
    }
    double in = (double)W / (double)H; /* no try fit: the central crop within the ratio range */
    if (in < o->ratio_lo) c.w = W, c.h = (int)lround(W / o->ratio_lo);
    else if (in > o->ratio_hi) c.h = H, c.w = (int)lround(H * o->ratio_hi);
    else c.w = W, c.h = H;
    c.x = (W - c.w) / 2, c.y = (H - c.h) / 2;
    return c;
}

wg_crop wg_crop_eval(const wg_crop_opts *o, int W, int H)
{
    int side = (int)lround((W < H ? W : H) * o->center);
    if (side < 1) side = 1;
    return (wg_crop){.x = (int)lround((W - side) / 2.0), .y = (int)lround((H - side) / 2.0), .w = side, .h = side};
}

/* ---- one sample ---- */

static bool read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    bool ok = fseek(f, 0, SEEK_END) == 0;
    long n = ok ? ftell(f) : -1;
    ok = ok && n > 0 && fseek(f, 0, SEEK_SET) == 0;
    *buf = ok ? malloc((size_t)n) : NULL;
    ok = ok && *buf != NULL && fread(*buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (!ok) {
        snprintf(err, errlen, "%s: cannot read (%s)", path, n == 0 ? "an empty file" : strerror(errno));
        free(*buf);
        *buf = NULL;
        return false;
    }
    *len = (size_t)n;
    return true;
}

/* Bilinear weights in fixed point: 2^11 parts, so that a pixel's two passes stay in
 * int32 (255 2^11 2^11 < 2^31) and the result is integer, the same on every machine. */
#define WG_RESIZE_BITS 11
#define WG_RESIZE_ONE (1 << WG_RESIZE_BITS)
#define WG_RESIZE_MAX_SIDE 4096

/* The two source positions and the second's weight of output position o along a
 * dimension: the centre of o (align-corners off) in the region [r0, r0 + len) of a
 * source of n pixels, clamped to it. */
static void resize_tap(int o, int size, double r0, double len, int n, int *a, int *b, int *wb)
{
    double f = r0 + (o + 0.5) * len / size - 0.5;
    f = f < 0 ? 0 : f > n - 1 ? n - 1 : f;
    *a = (int)f;
    *b = *a + 1 < n ? *a + 1 : *a;
    *wb = (int)lround((f - *a) * WG_RESIZE_ONE);
}

/* One source row interpolated along x into h ([size][3], weights summing to 2^11). */
static void resize_row(const uint8_t *r, int size, const int *xa, const int *xb, const int *wx, int32_t *h)
{
    for (int ox = 0; ox < size; ox++) {
        int wb = wx[ox], wa = WG_RESIZE_ONE - wb;
        for (int c = 0; c < 3; c++) h[3 * ox + c] = r[xa[ox] + c] * wa + r[xb[ox] + c] * wb;
    }
}

/* out[oy][ox] = the bilinear sample of src (sw x sh, RGB) over the region (x0, y0, cw,
 * ch), mirrored when flip: the column taps once per image, each source row interpolated
 * along x once (two rows kept), then the rows blended along y. */
static void resize_bilinear(const uint8_t *src, int sw, int sh, double x0, double y0, double cw, double ch, int size,
                            bool flip, uint8_t *out)
{
    WG_ASSERT(size <= WG_RESIZE_MAX_SIDE, "crops of %d pixels (at most %d)", size, WG_RESIZE_MAX_SIDE);
    int xa[WG_RESIZE_MAX_SIDE], xb[WG_RESIZE_MAX_SIDE], wx[WG_RESIZE_MAX_SIDE];
    for (int ox = 0; ox < size; ox++) {
        int o = flip ? size - 1 - ox : ox; /* the flip in the taps: output ox reads mirrored */
        resize_tap(o, size, x0, cw, sw, &xa[ox], &xb[ox], &wx[ox]);
        xa[ox] *= 3, xb[ox] *= 3;
    }
    int32_t *h = malloc((size_t)size * 6 * sizeof *h), *ha = h, *hb = h + 3 * size;
    WG_ASSERT(h != NULL, "out of memory%s", "");
    int row_a = -1, row_b = -1; /* the source rows ha and hb hold */
    for (int oy = 0; oy < size; oy++) {
        int ya, yb, wy;
        resize_tap(oy, size, y0, ch, sh, &ya, &yb, &wy);
        if (ya == row_b) { /* moving down: the lower row becomes the upper one */
            int32_t *t = ha;
            ha = hb, hb = t;
            row_a = row_b, row_b = -1;
        }
        if (row_a != ya) resize_row(src + (size_t)ya * sw * 3, size, xa, xb, wx, ha), row_a = ya;
        if (row_b != yb) resize_row(src + (size_t)yb * sw * 3, size, xa, xb, wx, hb), row_b = yb;
        uint8_t *o = out + (size_t)oy * size * 3;
        int32_t wa = WG_RESIZE_ONE - wy;
        for (int k = 0; k < 3 * size; k++)
            o[k] = (uint8_t)((ha[k] * wa + hb[k] * wy + (1 << (2 * WG_RESIZE_BITS - 1))) >> (2 * WG_RESIZE_BITS));
    }
    free(h);
}

bool wg_load_sample(wg_jpeg *j, const char *path, const wg_crop_opts *o, bool train, uint64_t seed, uint32_t epoch,
                    int64_t index, uint8_t *out, char *err, size_t errlen)
{
    uint8_t *buf = NULL, *rgb = NULL;
    size_t len = 0;
    int W, H, sw, sh;
    if (!read_file(path, &buf, &len, err, errlen) || !wg_jpeg_size(j, buf, len, path, &W, &H, err, errlen)) {
        free(buf);
        return false;
    }
    wg_crop c = train ? wg_crop_train(o, W, H, seed, epoch, index) : wg_crop_eval(o, W, H);
    /* decode at the smallest scale that keeps the crop at least size x size */
    int min_w = (int)ceil((double)W * o->size / c.w), min_h = (int)ceil((double)H * o->size / c.h);
    bool ok = wg_jpeg_decode(j, buf, len, path, min_w < W ? min_w : W, min_h < H ? min_h : H, &rgb, &sw, &sh, err,
                             errlen);
    free(buf);
    if (!ok) return false;
    double kx = (double)sw / W, ky = (double)sh / H;
    resize_bilinear(rgb, sw, sh, c.x * kx, c.y * ky, c.w * kx, c.h * ky, o->size, c.flip, out);
    free(rgb);
    return true;
}

/* ---- the loader ---- */

typedef struct slot {
    int64_t batch;    /* the global batch it holds (-1: free) */
    int64_t first;    /* this rank's first position of it in order */
    int64_t count;    /* its images */
    int64_t done;     /* images in */
    void *pixels;
    int32_t *labels;
    bool failed;
    char err[1024];
} slot;

struct wg_loader {
    wg_loader_opts o;
    const int64_t *order;
    int64_t n_order, nbatches, per_rank, skipped;
    uint32_t epoch;
    size_t image_bytes; /* of one image in a batch buffer */
    slot *slots;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work, ready;
    int64_t next_item;  /* the next (batch, image) to take: batch * per_rank + image */
    int64_t handed;     /* batches handed to the trainer (the next one it gets is handed) */
    int64_t released;   /* batches the trainer is done with: their slots may be refilled */
    bool stopping;
};

/* This rank's part of global batch b (the last may be short: order ends there): its
 * first position in order and its count (0 for a rank past a short batch's end). */
static int64_t shard(const wg_loader *l, int64_t b, int64_t *first)
{
    int64_t start = b * l->o.batch, total = l->n_order - start < l->o.batch ? l->n_order - start : l->o.batch;
    int64_t per = (total + l->o.ranks - 1) / l->o.ranks, a = l->o.rank * per, e = a + per < total ? a + per : total;
    *first = start + a;
    return e > a ? e - a : 0;
}

/* The RGB bytes of an image into the batch's values (loader.h: as they are, or
 * normalized to int8 or float32). */
static void store_image(const wg_loader *l, const uint8_t *rgb, void *dst)
{
    size_t n = (size_t)l->o.crop.size * (size_t)l->o.crop.size;
    const wg_norm *t = l->o.norm;
    if (t == NULL) memcpy(dst, rgb, 3 * n);
    else if (l->o.as_float)
        for (size_t i = 0; i < n; i++)
            for (int c = 0; c < 3; c++) ((float *)dst)[3 * i + c] = t->f[c][rgb[3 * i + c]];
    else
        for (size_t i = 0; i < n; i++)
            for (int c = 0; c < 3; c++) ((int8_t *)dst)[3 * i + c] = t->q[c][rgb[3 * i + c]];
}

/* One image into its slot (outside the lock); a failure is recorded in the slot. */
static void load_item(wg_loader *l, wg_jpeg *j, uint8_t *rgb, slot *s, int64_t i)
{
    int64_t idx = l->order[s->first + i];
    char err[1024];
    uint8_t *out = rgb;
    bool ok = wg_load_sample(j, l->o.set->paths[idx], &l->o.crop, l->o.train, l->o.seed, l->epoch, idx, out, err,
                             sizeof(err));
    int64_t used = idx;
    for (int64_t k = 1; !ok && l->o.skip_bad && k < l->o.set->n; k++) { /* the next image that decodes */
        used = (idx + k) % l->o.set->n;
        ok = wg_load_sample(j, l->o.set->paths[used], &l->o.crop, l->o.train, l->o.seed, l->epoch, used, out, err,
                            sizeof(err));
    }
    if (ok) store_image(l, rgb, (char *)s->pixels + (size_t)i * l->image_bytes);
    pthread_mutex_lock(&l->mu);
    if (used != idx && ok) l->skipped++;
    if (!ok && !s->failed) {
        s->failed = true;
        snprintf(s->err, sizeof(s->err), "%s", err);
    }
    s->labels[i] = l->o.set->labels[used];
    if (++s->done == s->count) pthread_cond_broadcast(&l->ready);
    pthread_mutex_unlock(&l->mu);
}

static void *worker(void *arg)
{
    wg_loader *l = arg;
    wg_jpeg *j = wg_jpeg_new();
    uint8_t *rgb = malloc((size_t)l->o.crop.size * (size_t)l->o.crop.size * 3); /* one image before its values */
    WG_ASSERT(rgb != NULL, "out of memory%s", "");
    pthread_mutex_lock(&l->mu);
    for (;;) {
        int64_t item = l->next_item, b = item / l->per_rank, i = item % l->per_rank;
        if (l->stopping || b >= l->nbatches) break;
        if (b >= l->released + l->o.ring) { /* its slot still holds a batch the trainer has, or will get */
            pthread_cond_wait(&l->work, &l->mu);
            continue;
        }
        slot *s = &l->slots[b % l->o.ring];
        if (s->batch != b) { /* the first image of batch b claims the slot */
            s->batch = b, s->count = shard(l, b, &s->first), s->done = 0, s->failed = false;
            if (s->count == 0) pthread_cond_broadcast(&l->ready); /* nothing of it is this rank's */
        }
        l->next_item++;
        if (i >= s->count) continue; /* past a short shard */
        pthread_mutex_unlock(&l->mu);
        load_item(l, j, rgb, s, i);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    free(rgb);
    wg_jpeg_free(j);
    return NULL;
}

static void *default_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    return malloc(bytes);
}

static void default_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

wg_loader *wg_loader_start(const wg_loader_opts *o, const int64_t *order, int64_t n, uint32_t epoch)
{
    WG_ASSERT(o->workers >= 1 && o->ring >= 1 && o->batch >= 1 && o->ranks >= 1 && o->rank >= 0 &&
                  o->rank < o->ranks && o->crop.size >= 1,
              "loader options: %d workers, ring %d, batch %lld, rank %d of %d", o->workers, o->ring,
              (long long)o->batch, o->rank, o->ranks);
    wg_loader *l = calloc(1, sizeof(*l));
    WG_ASSERT(l != NULL, "out of memory%s", "");
    l->o = *o;
    if (l->o.alloc == NULL) l->o.alloc = default_alloc, l->o.free = default_free;
    l->order = order;
    l->n_order = n;
    l->nbatches = (n + o->batch - 1) / o->batch;
    l->epoch = epoch;
    l->per_rank = (o->batch + o->ranks - 1) / o->ranks;
    l->image_bytes = (size_t)o->crop.size * (size_t)o->crop.size * 3 * (o->norm && o->as_float ? sizeof(float) : 1);
    l->slots = calloc((size_t)o->ring, sizeof(slot));
    l->threads = calloc((size_t)o->workers, sizeof(pthread_t));
    WG_ASSERT(l->slots != NULL && l->threads != NULL, "out of memory%s", "");
    for (int r = 0; r < o->ring; r++) {
        l->slots[r].batch = -1;
        l->slots[r].pixels = l->o.alloc(l->o.alloc_ctx, (size_t)l->per_rank * l->image_bytes);
        l->slots[r].labels = malloc((size_t)l->per_rank * sizeof(int32_t));
        WG_ASSERT(l->slots[r].pixels != NULL && l->slots[r].labels != NULL, "out of memory for a batch of %lld images",
                  (long long)l->per_rank);
    }
    WG_ASSERT(pthread_mutex_init(&l->mu, NULL) == 0 && pthread_cond_init(&l->work, NULL) == 0 &&
                  pthread_cond_init(&l->ready, NULL) == 0,
              "pthread set-up failed%s", "");
    for (int t = 0; t < o->workers; t++)
        WG_ASSERT(pthread_create(&l->threads[t], NULL, worker, l) == 0, "pthread_create: %s", strerror(errno));
    return l;
}

bool wg_loader_next(wg_loader *l, const void **pixels, const int32_t **labels, int64_t *count, char *err,
                    size_t errlen)
{
    pthread_mutex_lock(&l->mu);
    if (l->released < l->handed) { /* the batch handed last time is done with: its slot may be refilled */
        l->released = l->handed;
        pthread_cond_broadcast(&l->work);
    }
    int64_t b = l->handed;
    if (b >= l->nbatches) {
        pthread_mutex_unlock(&l->mu);
        snprintf(err, errlen, "the loader's %lld batches are all handed out", (long long)l->nbatches);
        return false;
    }
    slot *s = &l->slots[b % l->o.ring];
    while (!(s->batch == b && s->done == s->count)) pthread_cond_wait(&l->ready, &l->mu);
    l->handed++;
    bool ok = !s->failed;
    if (!ok) snprintf(err, errlen, "%s", s->err);
    *pixels = s->pixels;
    *labels = s->labels;
    *count = s->count;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

int64_t wg_loader_skipped(const wg_loader *l) { return l->skipped; }

void wg_loader_stop(wg_loader *l)
{
    if (l == NULL) return;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    for (int t = 0; t < l->o.workers; t++) pthread_join(l->threads[t], NULL);
    for (int r = 0; r < l->o.ring; r++) {
        l->o.free(l->o.alloc_ctx, l->slots[r].pixels);
        free(l->slots[r].labels);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->ready);
    free(l->slots);
    free(l->threads);
    free(l);
}
