/* conv_impl.h: what the convolution's three files share, private to them: conv.c
 * (geometry, workspace, the int8 forward pass, float32), conv_im2col.c (im2col, padding,
 * col2im) and conv_bwd.c (the int8 backward passes). Not part of conv.h's interface.
 *
 * Dimensions: N images of H x W pixels with C channels (NHWC), O filters of KH x KW
 * taps, output OH x OW; rows = N * OH * OW, kdim = KH * KW * C.
 *
 * The int8 forward and backward-data passes run in blocks of whole images, one block
 * per thread at a time: im2col of the block then its GEMM (forward), or for
 * backward-data either the same on the error with flipped weights (stride 1: a
 * convolution, see conv_bwd.c's backward_data_conv) or the block's column GEMM(s) then
 * col2im, so that the block's column matrix stays in the core's L2 cache instead of
 * going to memory and back. Rows are independent in these GEMMs and col2im of an image
 * reads only that image's rows, so a block gives the same integers as the whole batch
 * at once. The GEMMs called inside a block run on the calling thread: their own OpenMP
 * regions are then nested, and nested regions are inactive unless OMP_MAX_ACTIVE_LEVELS
 * asks otherwise (which would only add threads, never change a result). Backward-weight
 * goes block by block too: one GEMM for both error parts, which reads the block's
 * im2col rows where they lie in x, into the thread's partial sums (see conv_bwd.c's
 * backward_weight). */
#ifndef WG_CONV_IMPL_H
#define WG_CONV_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "conv.h"

/* x itself is the im2col matrix of a 1x1, stride-1, unpadded convolution. */
static inline bool is_pointwise(const wg_conv_geom *g)
{
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0;
}

static inline size_t round64(size_t n) { return (n + 63) / 64 * 64; }

static inline int thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Blocks of whole images for the passes that go image by image (file comment). */
typedef struct img_blocks {
    int64_t per_block; /* images per block */
    int64_t count;     /* blocks */
    int threads;       /* threads taking blocks; 1: one block at a time, each GEMM threaded itself */
} img_blocks;

/* The kernel rows that read input row ih: tap row i of output row oh reads it when
 * oh * stride - pad + i = ih. rows->oh[ih * kh ..] and ->i[ih * kh ..] hold the pairs,
 * rows->count[ih] of them. Along a row, tap column j of output column ow reads input
 * column ow * stride - pad + j, which lies inside the image for ow in
 * [cols->lo[j], cols->hi[j]). */
typedef struct tap_rows {
    int64_t *oh, *i, *count;
} tap_rows;

typedef struct tap_cols {
    int64_t *lo, *hi;
} tap_cols;

/* ---- conv.c ---------------------------------------------------------------------- */

/* ws->buf, grown to at least nbytes (what it held is lost when it grows). */
void *conv_ws_reserve(wg_conv_ws *ws, size_t nbytes);
/* Aborts unless x and w have containers xt and wt and g's sizes. */
void conv_check_geom(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_dtype xt, wg_dtype wt);
/* The blocks for column matrices of bytes_per_image each image. */
img_blocks conv_img_blocks_of(const wg_conv_geom *g, size_t bytes_per_image);
/* y = conv(x, w), int32, for the nimg images from img0 (im2col into col, then GEMM). */
void conv_forward_block(const wg_conv_geom *g, const int8_t *x, const int8_t *w, int64_t img0, int64_t nimg,
                        int8_t *col, char *padded, int32_t *y);
/* Bytes of the int8 im2col matrix of a block of images (0 when pointwise). */
size_t conv_forward_col_bytes(const wg_conv_geom *g, int64_t images);

/* ---- conv_im2col.c --------------------------------------------------------------- */

/* im2col of the nimg images from img0 into col (elements of esz bytes); padded: a
 * buffer from conv_padded_alloc. */
void conv_im2col_images(const wg_conv_geom *g, const void *x, int64_t img0, int64_t nimg, void *col, size_t esz,
                        char *padded);
/* A zeroed buffer for one padded image (NULL without padding); free() it. */
char *conv_padded_alloc(const wg_conv_geom *g, size_t esz);
/* im2col of all images. */
void conv_im2col(const wg_conv_geom *g, const void *x, void *col, size_t esz);
/* The tap lists of col2im, and their release. */
tap_rows conv_tap_rows_init(const wg_conv_geom *g);
void conv_tap_rows_free(tap_rows *t);
tap_cols conv_tap_cols_init(const wg_conv_geom *g);
void conv_tap_cols_free(tap_cols *t);
/* int8 col2im into int64 dx for the nimg images from img0, summing in acc (a row of
 * w * c): int64, or int32 where the caller has bounded a pixel's sum below 2^31. */
void conv_col2im_gather_acc64(const wg_conv_geom *g, const tap_rows *tr, const tap_cols *tc, const int32_t *dcol,
                              int64_t img0, int64_t nimg, int64_t *dx, int64_t scale, bool add, int64_t *acc);
void conv_col2im_gather_acc32(const wg_conv_geom *g, const tap_rows *tr, const tap_cols *tc, const int32_t *dcol,
                              int64_t img0, int64_t nimg, int64_t *dx, int64_t scale, bool add, int32_t *acc);
/* float32 col2im: dx += the columns of dcol, all images. */
void conv_col2im_add_f32(const wg_conv_geom *g, const float *dcol, float *dx);

#endif
