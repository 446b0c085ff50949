/* loader.h: the ImageNet input pipeline: JPEG files (imageset.h) to batches of
 * size x size RGB crops, decoded and augmented by worker threads ahead of the trainer.
 *
 * A sample (one image of one epoch) is a pure function of (seed, epoch, index): its
 * crop and flip come from Philox (wg_philox.h) keyed by the seed with a counter that
 * names the image, the epoch and the draw, so the pipeline gives the same batches with
 * any number of workers, on any rank, run after run.
 * - Training: the random-resized crop of the reference (torchvision's
 *   RandomResizedCrop: up to 10 tries of an area fraction uniform in [area_lo, area_hi]
 *   and an aspect ratio log-uniform in [ratio_lo, ratio_hi], else the whole image's
 *   central crop within the ratio range), a horizontal flip with probability 1/2, and a
 *   bilinear resize to size x size.
 * - Evaluation: the central crop of side center * the shorter side (the center crop of
 *   an image resized to size / center on its shorter side), resized to size x size.
 * The JPEG is decoded at the smallest DCT scale that keeps the crop at least size x
 * size (jpeg.h), so a 500 x 375 photo feeds a small crop without a full-size decode.
 *
 * The loader: `workers` threads take the images of the coming batches in order and
 * fill a ring of `ring` batch buffers; wg_loader_next hands out the next batch when all
 * its images are in. Under mpirun each rank loads its part of every global batch
 * (images rank * batch / ranks onwards). A file that cannot be read or decoded fails the
 * batch with a message that names it, or (skip_bad) is replaced by the next image of
 * the dataset that decodes, counted in wg_loader_skipped. */
#ifndef WG_LOADER_H
#define WG_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imageset.h"
#include "jpeg.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WG_DATA_STREAM_CROP 0xDA7A0003u /* Philox stream of the crops (data.h's reserved ids) */

typedef struct wg_crop_opts {
    int size;                   /* output side (224) */
    double area_lo, area_hi;    /* training crop: fraction of the image's area (0.05, 1) */
    double ratio_lo, ratio_hi;  /* and its width / height (3/4, 4/3) */
    double center;              /* evaluation: the central crop's share of the shorter side (0.875) */
} wg_crop_opts;

/* The reference's values. */
wg_crop_opts wg_crop_opts_reference(void);

/* A crop in the full image's pixels, and the flip. */
typedef struct wg_crop {
    int x, y, w, h;
    bool flip;
} wg_crop;

wg_crop wg_crop_train(const wg_crop_opts *o, int img_w, int img_h, uint64_t seed, uint32_t epoch, int64_t index);
wg_crop wg_crop_eval(const wg_crop_opts *o, int img_w, int img_h);

/* Read, decode, crop, resize and flip one image into out ([size][size][3]). */
bool wg_load_sample(wg_jpeg *j, const char *path, const wg_crop_opts *o, bool train, uint64_t seed, uint32_t epoch,
                    int64_t index, uint8_t *out, char *err, size_t errlen);

typedef struct wg_loader_opts {
    const wg_imageset *set;
    wg_crop_opts crop;
    bool train;     /* training crops and flips, else evaluation crops */
    uint64_t seed;
    int workers;    /* decoding threads, >= 1 */
    int64_t batch;  /* the global batch */
    int ring;       /* batches assembled ahead, >= 1 */
    int rank, ranks; /* this rank loads images [rank batch / ranks, (rank + 1) batch / ranks) of each batch */
    bool skip_bad;
    /* The batches' values: NULL, the RGB bytes; else each pixel normalized by the
     * workers through the tables of norm (data.h): int8 (norm->q), or float32
     * (norm->f) with as_float, ready for the network's input. */
    const struct wg_norm *norm;
    bool as_float;
    /* The batch buffers (NULL: malloc and free): a CUDA run passes the backend's
     * page-locked host memory (backend.h's host_alloc), which uploads fastest. */
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *p);
    void *alloc_ctx;
} wg_loader_opts;

typedef struct wg_loader wg_loader;

/* Start loading the global batches of order[0..n) (dataset indices in this epoch's
 * order, batch after batch; the last batch may be short, its shards split as evenly as
 * possible: a rank may get none of it, count 0). */
wg_loader *wg_loader_start(const wg_loader_opts *o, const int64_t *order, int64_t n, uint32_t epoch);

/* The next batch of this rank: *pixels ([count][size][size][3] values as the options
 * say, valid until the next call), *labels, *count; false with the failing file's
 * message. */
bool wg_loader_next(wg_loader *l, const void **pixels, const int32_t **labels, int64_t *count, char *err,
                    size_t errlen);
int64_t wg_loader_skipped(const wg_loader *l);
/* Stop the workers and free everything (any batch not taken is dropped). */
void wg_loader_stop(wg_loader *l);

#ifdef __cplusplus
}
#endif

#endif
