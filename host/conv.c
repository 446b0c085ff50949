/* conv.c: convolution by im2col + GEMM, int8 and float32 (see conv.h).
 *
 * Dimensions: N images of H x W pixels with C channels (NHWC), O filters of KH x KW
 * taps, output OH x OW; rows = N * OH * OW, kdim = KH * KW * C.
 *
 * The int8 forward and backward-data passes run in blocks of whole images, one block
 * per thread at a time: im2col of the block then its GEMM (forward), or for
 * backward-data either the same on the error with flipped weights (stride 1: a
 * convolution, see backward_data_conv) or the block's column GEMM(s) then col2im, so
 * that the block's column matrix stays in the core's L2 cache instead of going to
 * memory and back. Rows are independent in these GEMMs and col2im of an image reads
 * only that image's rows, so a block gives the same integers as the whole batch at
 * once. The GEMMs called inside a block run on the calling thread: their own OpenMP
 * regions are then nested, and nested regions are inactive unless
 * OMP_MAX_ACTIVE_LEVELS asks otherwise (which would only add threads, never change a
 * result). Backward-weight goes block by block too: one GEMM for both error parts,
 * which reads the block's im2col rows where they lie in x, into the thread's partial
 * sums (see backward_weight). */
#include "conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "check.h"
#include "wg_par.h"
#include "gemm.h"

/* Target size of one block's column matrix: most of a core's L2 (1 MB on Zen 4/5),
 * with room for the block's error rows, dx and the packed weights. */
enum { WG_CONV_BLOCK_BYTES = 1 << 18 };

bool wg_conv_geom_init(wg_conv_geom *g, int64_t n, int64_t h, int64_t w, int64_t c, int64_t o, int64_t kh,
                       int64_t kw, int stride, int pad)
{
    memset(g, 0, sizeof(*g));
    if (n < 1 || h < 1 || w < 1 || c < 1 || o < 1 || kh < 1 || kw < 1 || stride < 1 || pad < 0) {
        fprintf(stderr, "wageubn: convolution %lldx%lldx%lldx%lld, %lld filters %lldx%lld, stride %d, pad %d: "
                        "every size must be positive\n",
                (long long)n, (long long)h, (long long)w, (long long)c, (long long)o, (long long)kh, (long long)kw,
                stride, pad);
        return false;
    }
    int64_t oh = (h + 2 * (int64_t)pad - kh) / stride + 1, ow = (w + 2 * (int64_t)pad - kw) / stride + 1;
    if (h + 2 * (int64_t)pad < kh || w + 2 * (int64_t)pad < kw) {
        fprintf(stderr, "wageubn: a %lldx%lld kernel does not fit a %lldx%lld input padded by %d\n", (long long)kh,
                (long long)kw, (long long)h, (long long)w, pad);
        return false;
    }
    *g = (wg_conv_geom){.n = n, .h = h, .w = w, .c = c, .o = o, .kh = kh, .kw = kw, .stride = stride, .pad = pad,
                        .oh = oh, .ow = ow, .rows = n * oh * ow, .kdim = kh * kw * c};
    return true;
}

void wg_conv_ws_free(wg_conv_ws *ws)
{
    free(ws->buf);
    ws->buf = NULL;
    ws->cap = 0;
}

static void *ws_reserve(wg_conv_ws *ws, size_t nbytes)
{
    if (nbytes > ws->cap) {
        free(ws->buf);
        ws->buf = aligned_alloc(64, (nbytes + 63) / 64 * 64);
        WG_ASSERT(ws->buf != NULL, "out of memory for %zu bytes of convolution workspace", nbytes);
        ws->cap = nbytes;
    }
    return ws->buf;
}

/* x itself is the im2col matrix of a 1x1, stride-1, unpadded convolution. */
static bool is_pointwise(const wg_conv_geom *g) { return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0; }

/* Input row (n, ih, iw) under output row r and kernel tap (i, j), or -1 in the padding. */
static int64_t input_row(const wg_conv_geom *g, int64_t r, int64_t i, int64_t j)
{
    int64_t ow = r % g->ow, oh = (r / g->ow) % g->oh, n = r / (g->ow * g->oh);
    int64_t ih = oh * g->stride - g->pad + i, iw = ow * g->stride - g->pad + j;
    if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) return -1;
    return (n * g->h + ih) * g->w + iw;
}

/* Copy n >= 1 bytes for im2col's short runs (kw * c elements): fixed-size pieces, which
 * gcc turns into vector moves, instead of a call per run. Two pieces may overlap (the
 * same bytes copied twice); source and destination do not. */
static inline void copy_run(char *restrict dst, const char *restrict src, size_t n)
{
    if (n >= 32) {
        for (size_t k = 0; k + 32 < n; k += 32) memcpy(dst + k, src + k, 32);
        memcpy(dst + n - 32, src + n - 32, 32);
    } else if (n >= 16) {
        memcpy(dst, src, 16);
        memcpy(dst + n - 16, src + n - 16, 16);
    } else if (n >= 8) {
        memcpy(dst, src, 8);
        memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n >= 4) {
        memcpy(dst, src, 4);
        memcpy(dst + n - 4, src + n - 4, 4);
    } else { /* 1..3 bytes: the first, middle and last (the same byte twice when fewer) */
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }
}

/* The pixel loop of im2col_images with COPY(d, s) copying one run of run bytes. */
#define WG_IM2COL_PIXELS(COPY)                                                                               \
    for (int64_t oh = 0; oh < g->oh; oh++) {                                                                 \
        const char *prow = src + (size_t)(oh * g->stride) * row_bytes;                                       \
        for (int64_t ow = 0; ow < g->ow; ow++) {                                                             \
            const char *p = prow + (size_t)(ow * g->stride) * pix;                                           \
            for (int64_t i = 0; i < g->kh; i++, dst += run, p += row_bytes) COPY(dst, p);                    \
        }                                                                                                    \
    }
#define WG_COPY_16_32(d, s) (memcpy((d), (s), 16), memcpy((d) + run - 16, (s) + run - 16, 16))
#define WG_COPY_32_64(d, s) (memcpy((d), (s), 32), memcpy((d) + run - 32, (s) + run - 32, 32))
#define WG_COPY_64_128(d, s) (memcpy((d), (s), 64), memcpy((d) + run - 64, (s) + run - 64, 64))
#define WG_COPY_ANY(d, s) copy_run((d), (s), run)

/* col[r][(i*kw + j)*c + ch] = x[input_row(r, i, j)][ch], zero in the padding, for the
 * nimg images from img0 (col: their rows). The kw taps of kernel row i are kw adjacent
 * pixels of one input row, kw * c elements that are adjacent in col too: one copy per
 * kernel row, with the copy for runs of 17..128 bytes (two fixed-size pieces, which may
 * overlap) chosen outside the loop. With padding, each image is first copied into padded, a
 * zero-bordered (h + 2 pad) x (w + 2 pad) image (the caller zeroes it once; only its
 * interior is written here), so no tap needs a bounds test. */
static void im2col_images(const wg_conv_geom *g, const void *x, int64_t img0, int64_t nimg, void *col, size_t esz,
                          char *padded)
{
    size_t pix = (size_t)g->c * esz, run = (size_t)g->kw * pix;
    size_t row_bytes = (size_t)(g->w + 2 * (int64_t)g->pad) * pix;
    char *dst = col;
    for (int64_t img = img0; img < img0 + nimg; img++) {
        const char *src = (const char *)x + (size_t)(img * g->h * g->w) * pix;
        if (g->pad > 0) {
            for (int64_t ih = 0; ih < g->h; ih++)
                memcpy(padded + (size_t)(ih + g->pad) * row_bytes + (size_t)g->pad * pix,
                       src + (size_t)(ih * g->w) * pix, (size_t)g->w * pix);
            src = padded;
        }
        if (run > 16 && run <= 32) WG_IM2COL_PIXELS(WG_COPY_16_32)
        else if (run > 32 && run <= 64) WG_IM2COL_PIXELS(WG_COPY_32_64)
        else if (run > 64 && run <= 128) WG_IM2COL_PIXELS(WG_COPY_64_128)
        else WG_IM2COL_PIXELS(WG_COPY_ANY)
    }
}
#undef WG_IM2COL_PIXELS
#undef WG_COPY_16_32
#undef WG_COPY_32_64
#undef WG_COPY_64_128
#undef WG_COPY_ANY

/* A zeroed buffer for one padded image (NULL without padding). */
static char *padded_alloc(const wg_conv_geom *g, size_t esz)
{
    if (g->pad == 0) return NULL;
    size_t n = (size_t)((g->h + 2 * (int64_t)g->pad) * (g->w + 2 * (int64_t)g->pad)) * (size_t)g->c * esz;
    char *p = calloc(n, 1);
    WG_ASSERT(p != NULL, "out of memory for %zu bytes of a padded image", n);
    return p;
}

/* The im2col matrix of all images; threads take whole images. */
static void im2col(const wg_conv_geom *g, const void *x, void *col, size_t esz)
{
    size_t img_col = (size_t)(g->oh * g->ow * g->kdim) * esz;
#pragma omp parallel if (g->rows * g->kdim >= WG_PAR_MIN && g->n > 1)
    {
        char *padded = padded_alloc(g, esz);
#pragma omp for schedule(static)
        for (int64_t img = 0; img < g->n; img++)
            im2col_images(g, x, img, 1, (char *)col + (size_t)img * img_col, esz, padded);
        free(padded);
    }
}

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

static tap_rows tap_rows_init(const wg_conv_geom *g)
{
    tap_rows t = {malloc((size_t)(g->h * g->kh) * sizeof(int64_t)), malloc((size_t)(g->h * g->kh) * sizeof(int64_t)),
                  malloc((size_t)g->h * sizeof(int64_t))};
    WG_ASSERT(t.oh != NULL && t.i != NULL && t.count != NULL, "out of memory for col2im's tap lists");
    for (int64_t ih = 0; ih < g->h; ih++) {
        t.count[ih] = 0;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t u = ih + g->pad - i; /* oh * stride */
            if (u < 0 || u % g->stride != 0 || u / g->stride >= g->oh) continue;
            t.oh[ih * g->kh + t.count[ih]] = u / g->stride;
            t.i[ih * g->kh + t.count[ih]] = i;
            t.count[ih]++;
        }
    }
    return t;
}

static void tap_rows_free(tap_rows *t)
{
    free(t->oh);
    free(t->i);
    free(t->count);
}

static tap_cols tap_cols_init(const wg_conv_geom *g)
{
    tap_cols t = {malloc((size_t)g->kw * sizeof(int64_t)), malloc((size_t)g->kw * sizeof(int64_t))};
    WG_ASSERT(t.lo != NULL && t.hi != NULL, "out of memory for col2im's tap lists");
    for (int64_t j = 0; j < g->kw; j++) {
        int64_t lo = 0; /* ow * stride - pad + j in [0, w): one range, since it grows with ow */
        while (lo < g->ow && lo * g->stride - g->pad + j < 0) lo++;
        int64_t hi = lo;
        while (hi < g->ow && hi * g->stride - g->pad + j < g->w) hi++;
        t.lo[j] = lo;
        t.hi[j] = hi;
    }
    return t;
}

static void tap_cols_free(tap_cols *t)
{
    free(t->lo);
    free(t->hi);
}

/* col2im by gathering, for the nimg images from img0 (dcol: their rows), one input row
 * at a time:
 *   dx[pixel][ch] = (dx[pixel][ch] if add) + scale * sum of dcol[row][tap][ch]
 * over the (output row, tap) pairs that read the pixel, summed in acc (a row of w * c
 * ACC_T) before dx is written. These are the terms the scatter
 * dx[input_row(r, i, j)][ch] += dcol[r][tap][ch] * scale adds, in another order: each is
 * below 2^31 * 2^16 in magnitude and a pixel has at most kh * kw of them, so the int64
 * sums are exact and equal. Every pixel of the images is written (0 where no tap reads
 * it), so dx needs no clearing first. ACC_T: int64 always holds a pixel's sum; int32
 * where the caller has bounded it below 2^31. */
#define WG_COL2IM_GATHER(NAME, ACC_T)                                                                        \
    static void NAME(const wg_conv_geom *g, const tap_rows *tr, const tap_cols *tc, const int32_t *dcol,      \
                     int64_t img0, int64_t nimg, int64_t *dx, int64_t scale, bool add, ACC_T *acc)             \
    {                                                                                                        \
        int64_t c = g->c, wc = g->w * c;                                                                     \
        for (int64_t im = 0; im < nimg; im++)                                                                \
            for (int64_t ih = 0; ih < g->h; ih++) {                                                          \
                for (int64_t k = 0; k < wc; k++) acc[k] = 0;                                                 \
                for (int64_t a = 0; a < tr->count[ih]; a++) {                                                \
                    int64_t oh = tr->oh[ih * g->kh + a], i = tr->i[ih * g->kh + a];                          \
                    const int32_t *drow = dcol + ((im * g->oh + oh) * g->ow) * g->kdim + i * g->kw * c;      \
                    for (int64_t j = 0; j < g->kw; j++)                                                      \
                        for (int64_t ow = tc->lo[j]; ow < tc->hi[j]; ow++) {                                 \
                            const int32_t *d = drow + ow * g->kdim + j * c;                                  \
                            ACC_T *s = acc + (ow * g->stride - g->pad + j) * c;                              \
                            for (int64_t ch = 0; ch < c; ch++) s[ch] += d[ch];                               \
                        }                                                                                    \
                }                                                                                            \
                int64_t *out = dx + ((img0 + im) * g->h + ih) * wc;                                          \
                if (add)                                                                                     \
                    for (int64_t k = 0; k < wc; k++) out[k] += (int64_t)acc[k] * scale;                      \
                else                                                                                         \
                    for (int64_t k = 0; k < wc; k++) out[k] = (int64_t)acc[k] * scale;                       \
            }                                                                                                \
    }
WG_COL2IM_GATHER(col2im_gather_acc64, int64_t)
WG_COL2IM_GATHER(col2im_gather_acc32, int32_t)
#undef WG_COL2IM_GATHER

static void col2im_add_f32(const wg_conv_geom *g, const float *dcol, float *dx)
{
    int64_t per_image = g->oh * g->ow;
#pragma omp parallel for schedule(static) if (g->rows * g->kdim >= WG_PAR_MIN)
    for (int64_t img = 0; img < g->n; img++)
    for (int64_t r = img * per_image; r < (img + 1) * per_image; r++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t src = input_row(g, r, i, j);
                if (src < 0) continue;
                const float *d = dcol + r * g->kdim + (i * g->kw + j) * g->c;
                float *out = dx + src * g->c;
                for (int64_t ch = 0; ch < g->c; ch++) out[ch] += d[ch];
            }
}

static void check_geom(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_dtype xt, wg_dtype wt)
{
    WG_ASSERT(x->dtype == xt && w->dtype == wt, "convolution: input %s and weights %s", wg_dtype_name(x->dtype),
              wg_dtype_name(w->dtype));
    WG_ASSERT(wg_tensor_numel(x) == g->n * g->h * g->w * g->c, "convolution input has %lld elements, expected %lld",
              (long long)wg_tensor_numel(x), (long long)(g->n * g->h * g->w * g->c));
    WG_ASSERT(wg_tensor_numel(w) == g->o * g->kdim, "convolution weights have %lld elements, expected %lld",
              (long long)wg_tensor_numel(w), (long long)(g->o * g->kdim));
}

/* Bytes of the im2col matrix in the workspace, rounded so what follows is aligned. */
static size_t col_bytes(const wg_conv_geom *g, size_t esz)
{
    return is_pointwise(g) ? 0 : ((size_t)g->rows * (size_t)g->kdim * esz + 63) / 64 * 64;
}

/* The im2col matrix of x: x itself, or built in the workspace at offset 0. */
static const void *im2col_of(const wg_conv_geom *g, const wg_tensor *x, wg_conv_ws *ws, size_t esz, size_t extra)
{
    if (is_pointwise(g)) {
        ws_reserve(ws, extra);
        return x->data;
    }
    void *col = ws_reserve(ws, col_bytes(g, esz) + extra);
    im2col(g, x->data, col, esz);
    return col;
}

/* ---- int8 ------------------------------------------------------------------------ */

static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

static int thread_num(void)
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

/* Blocks whose column matrices (bytes_per_image each image) fill about
 * WG_CONV_BLOCK_BYTES, and at least 4 per thread where the images allow, so that a
 * thread the system delays is made up for. */
static img_blocks img_blocks_of(const wg_conv_geom *g, size_t bytes_per_image)
{
    int threads = 1;
#ifdef _OPENMP
    if (g->rows * g->kdim >= WG_PAR_MIN) threads = omp_get_max_threads();
#endif
    int64_t per = bytes_per_image >= WG_CONV_BLOCK_BYTES ? 1 : (int64_t)(WG_CONV_BLOCK_BYTES / bytes_per_image);
    int64_t balanced = g->n / (4 * (int64_t)threads);
    if (per > balanced) per = balanced > 1 ? balanced : 1;
    int64_t count = (g->n + per - 1) / per;
    if (threads > count) threads = (int)count;
    return (img_blocks){per, count, threads};
}

/* y (int32 [rows][o], the block's rows) = conv(x, w) for the nimg images from img0:
 * im2col of the block into col (the block's rows of x itself when pointwise), then the
 * forward GEMM. padded: padded_alloc's buffer. */
static void forward_block(const wg_conv_geom *g, const int8_t *x, const int8_t *w, int64_t img0, int64_t nimg,
                          int8_t *col, char *padded, int32_t *y)
{
    const int8_t *a = x + img0 * g->h * g->w * g->c;
    if (!is_pointwise(g)) {
        im2col_images(g, x, img0, nimg, col, 1, padded);
        a = col;
    }
    wg_gemm_s8_nt(nimg * g->oh * g->ow, g->o, g->kdim, a, g->kdim, w, g->kdim, y, g->o);
}

/* Bytes of the im2col matrix of a block of images (0 when pointwise). */
static size_t forward_col_bytes(const wg_conv_geom *g, int64_t images)
{
    return is_pointwise(g) ? 0 : round64((size_t)(images * g->oh * g->ow * g->kdim));
}

void wg_conv_s8_forward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y, wg_conv_ws *ws)
{
    check_geom(g, x, w, WG_I8, WG_I8);
    WG_ASSERT(y->dtype == WG_I32 && wg_tensor_numel(y) == g->rows * g->o, "convolution output");
    WG_ASSERT(g->kdim <= WG_GEMM_S8_MAX_K, "a dot product of %lld int8 products can overflow int32",
              (long long)g->kdim);
    y->exp = x->exp + w->exp;
    if (is_pointwise(g)) { /* x is the im2col matrix: one GEMM, threaded itself */
        wg_gemm_s8_nt(g->rows, g->o, g->kdim, x->data, g->kdim, w->data, g->kdim, y->data, g->o);
        return;
    }
    /* Workspace: one block's im2col matrix per thread. */
    int64_t per_image = g->oh * g->ow;
    img_blocks b = img_blocks_of(g, (size_t)(per_image * g->kdim));
    size_t per_thread = forward_col_bytes(g, b.per_block);
    char *buf = ws_reserve(ws, per_thread * (size_t)b.threads);
#pragma omp parallel num_threads(b.threads) if (b.threads > 1)
    {
        int8_t *col = (int8_t *)(buf + per_thread * (size_t)thread_num());
        char *padded = padded_alloc(g, 1);
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < b.count; blk++) {
            int64_t img0 = blk * b.per_block, nimg = g->n - img0 < b.per_block ? g->n - img0 : b.per_block;
            forward_block(g, x->data, w->data, img0, nimg, col, padded, (int32_t *)y->data + img0 * per_image * g->o);
        }
        free(padded);
    }
}

/* ---- backward-data as a convolution (stride 1) ----------------------------------
 * With stride 1, dx[n][ih][iw][ch] = sum over o, i, j of err[n][ih + pad - i][iw + pad - j][o]
 * * w[o][i][j][ch], the error read as zero outside its oh x ow: a convolution of the
 * error (o channels) with the flipped, transposed kernel wt[ch][kh-1-i][kw-1-j][o] and
 * padding kh - 1 - pad, whose output is h x w. It runs as the forward pass does, block
 * by block, and reads and writes no kh * kw * c column matrix of int32. Each part's
 * GEMM sums kh * kw * o products of magnitude <= 127^2 (within WG_GEMM_S8_MAX_K: exact
 * int32), and the parts are combined exactly in int64: the same integer sums as the
 * column GEMM and col2im of the other path. Square kernels with pad < kh only (then
 * the padding is one non-negative number). */
static bool bwd_data_conv_geom(const wg_conv_geom *g, wg_conv_geom *gt)
{
    if (g->stride != 1 || g->kh != g->kw || g->pad > g->kh - 1 || g->kh * g->kw * g->o > WG_GEMM_S8_MAX_K) return false;
    *gt = (wg_conv_geom){.n = g->n, .h = g->oh, .w = g->ow, .c = g->o, .o = g->c, .kh = g->kh, .kw = g->kw,
                         .stride = 1, .pad = (int)g->kh - 1 - g->pad, .oh = g->h, .ow = g->w,
                         .rows = g->n * g->h * g->w, .kdim = g->kh * g->kw * g->o};
    /* the output size rule of wg_conv_geom_init gives back h x w */
    WG_ASSERT(gt->h + 2 * (int64_t)gt->pad - gt->kh + 1 == g->h && gt->w + 2 * (int64_t)gt->pad - gt->kw + 1 == g->w,
              "transposed convolution geometry");
    return true;
}

/* wt[ch][i][j][o] = w[o][kh-1-i][kw-1-j][ch]. */
static void flip_weights(const wg_conv_geom *g, const int8_t *w, int8_t *wt)
{
    for (int64_t ch = 0; ch < g->c; ch++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++)
                for (int64_t o = 0; o < g->o; o++)
                    wt[((ch * g->kh + i) * g->kw + j) * g->o + o] =
                        w[((o * g->kh + (g->kh - 1 - i)) * g->kw + (g->kw - 1 - j)) * g->c + ch];
}

/* Bytes of the transposed path's scratch: the flipped weights, then per thread a block's
 * im2col matrix of the error and its int32 output. */
static size_t bwd_conv_wt_bytes(const wg_conv_geom *gt) { return round64((size_t)(gt->o * gt->kdim)); }

static size_t bwd_conv_per_thread(const wg_conv_geom *gt, int64_t images)
{
    return forward_col_bytes(gt, images) + round64((size_t)(images * gt->oh * gt->ow * gt->o) * sizeof(int32_t));
}

/* dx (int64 [n][h][w][c], at e_w + e_min) = sum over the parts of conv(err_p, wt) *
 * 2^(e_p - e_min); gt from bwd_data_conv_geom, b its blocks. */
static void backward_data_conv(const wg_conv_geom *g, const wg_conv_geom *gt, const wg_tensor *w,
                               const wg_tensor *const *err, int nparts, int e_min, int64_t *dx, char *scratch,
                               img_blocks b)
{
    int8_t *wt = (int8_t *)scratch;
    flip_weights(g, w->data, wt);
    char *blocks = scratch + bwd_conv_wt_bytes(gt);
    size_t per_thread = bwd_conv_per_thread(gt, b.per_block), col_size = forward_col_bytes(gt, b.per_block);
    int64_t per_image = g->h * g->w;
#pragma omp parallel num_threads(b.threads) if (b.threads > 1)
    {
        char *mine = blocks + per_thread * (size_t)thread_num();
        int8_t *col = (int8_t *)mine;
        int32_t *tmp = (int32_t *)(mine + col_size);
        char *padded = padded_alloc(gt, 1);
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < b.count; blk++) {
            int64_t img0 = blk * b.per_block, nimg = g->n - img0 < b.per_block ? g->n - img0 : b.per_block;
            int64_t nt = nimg * per_image * g->c;
            int64_t *out = dx + img0 * per_image * g->c;
            for (int p = 0; p < nparts; p++) {
                int64_t scale = INT64_C(1) << (err[p]->exp - e_min);
                forward_block(gt, err[p]->data, wt, img0, nimg, col, padded, tmp);
                if (p == 0)
                    for (int64_t i = 0; i < nt; i++) out[i] = (int64_t)tmp[i] * scale;
                else
                    for (int64_t i = 0; i < nt; i++) out[i] += (int64_t)tmp[i] * scale;
            }
        }
        free(padded);
    }
}

/* ---- backward-data by column GEMM and col2im (any stride) ------------------------- */

/* Bytes of backward-data's scratch per thread: a block's dcol, then a row of w * c int64. */
static size_t bwd_data_per_thread(const wg_conv_geom *g, const img_blocks *b)
{
    return round64((size_t)(b->per_block * g->oh * g->ow * g->kdim) * sizeof(int32_t)) +
           round64((size_t)(g->w * g->c) * sizeof(int64_t));
}

/* dx (int64, at e_w + e_min) from the error parts, block by block: per block the
 * column GEMM(s) into dcol (int32, rows x kdim), then col2im. scratch: per_thread
 * bytes for each of b.threads threads. */
static void backward_data_col(const wg_conv_geom *g, const wg_tensor *w, const wg_tensor *const *err, int nparts,
                              int e_min, int64_t *dx, char *scratch, img_blocks b)
{
    WG_ASSERT(g->o <= WG_GEMM_S8_MAX_K, "backward-data sums over %lld filters", (long long)g->o);
    /* The parts can share one int32 column buffer (the coarser one scaled up before
     * the finer accumulates) when every column sum stays below 2^31: o products of
     * 127 with a part value below 127 * (2^shift + 1). One col2im pass then serves
     * both; otherwise each part takes its own. */
    int64_t span = 0;
    for (int p = 0; p < nparts; p++) span = err[p]->exp - e_min > span ? err[p]->exp - e_min : span;
    bool shared = nparts == 2 && span <= 8 && g->o * 127 * 127 * ((INT64_C(1) << span) + 1) < INT64_C(2147483647);
    int coarse = nparts == 2 && err[1]->exp > err[0]->exp ? 1 : 0;
    int up = err[coarse]->exp - e_min; /* the coarse part's columns scaled by 2^up */
    int64_t per_image = g->oh * g->ow;
    size_t per_thread = bwd_data_per_thread(g, &b);
    size_t acc_off = per_thread - round64((size_t)(g->w * g->c) * sizeof(int64_t));
    /* |dcol| <= o * 127^2 per part (times 2^span + 1 when shared): the sum of a pixel's
     * kh * kw taps fits int32 below that bound. */
    int64_t dcol_max = g->o * 127 * 127 * (shared ? (INT64_C(1) << span) + 1 : 1);
    bool acc32 = g->kh * g->kw * dcol_max <= INT64_C(2147483647);
    tap_rows tr = tap_rows_init(g);
    tap_cols tc = tap_cols_init(g);
#pragma omp parallel num_threads(b.threads) if (b.threads > 1)
    {
        char *mine = scratch + per_thread * (size_t)thread_num();
        int32_t *tmp = (int32_t *)mine;
        void *acc = mine + acc_off;
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < b.count; blk++) {
            int64_t img0 = blk * b.per_block, nimg = g->n - img0 < b.per_block ? g->n - img0 : b.per_block;
            int64_t r0 = img0 * per_image, nr = nimg * per_image, nt = nr * g->kdim;
            size_t tbytes = (size_t)nt * sizeof(int32_t);
            if (shared) {
                memset(tmp, 0, tbytes);
                wg_gemm_s8_nn(nr, g->kdim, g->o, (const int8_t *)err[coarse]->data + r0 * g->o, g->o, w->data,
                              g->kdim, tmp, g->kdim);
                if (up > 0) /* times 2^up as a shift of the bits: the product fits int32 (the bound above) */
                    for (int64_t i = 0; i < nt; i++) tmp[i] = (int32_t)((uint32_t)tmp[i] << up);
                wg_gemm_s8_nn(nr, g->kdim, g->o, (const int8_t *)err[1 - coarse]->data + r0 * g->o, g->o, w->data,
                              g->kdim, tmp, g->kdim);
                if (acc32) col2im_gather_acc32(g, &tr, &tc, tmp, img0, nimg, dx, 1, false, acc);
                else col2im_gather_acc64(g, &tr, &tc, tmp, img0, nimg, dx, 1, false, acc);
            } else {
                for (int p = 0; p < nparts; p++) {
                    int64_t part_scale = INT64_C(1) << (err[p]->exp - e_min);
                    memset(tmp, 0, tbytes);
                    wg_gemm_s8_nn(nr, g->kdim, g->o, (const int8_t *)err[p]->data + r0 * g->o, g->o, w->data,
                                  g->kdim, tmp, g->kdim);
                    if (acc32) col2im_gather_acc32(g, &tr, &tc, tmp, img0, nimg, dx, part_scale, p > 0, acc);
                    else col2im_gather_acc64(g, &tr, &tc, tmp, img0, nimg, dx, part_scale, p > 0, acc);
                }
            }
        }
    }
    tap_rows_free(&tr);
    tap_cols_free(&tc);
}

/* ---- backward-weight -------------------------------------------------------------
 * dw[o][k] = sum over the parts p of 2^(e_p - e_min) * sum over rows r of
 * err_p[r][o] * col[r][k]. Threads take blocks of whole images. A block's rows of the
 * im2col matrix are not built: row r is kh runs of kw * c bytes of the input, one per
 * kernel row, each contiguous in x (or in a zero-bordered copy of the image when padded,
 * as im2col_images reads them), and wg_gemm_s8_tn_gather packs them from there, once for
 * both parts. (Runs shorter than 16 bytes, such as the stem's 3 taps x 1 channel, would
 * each cost a 16-column step of packing: those blocks are built by im2col_images and
 * gathered a whole row at a time.) The products add into the thread's int32 sums
 * acc32[p][o][k], which cover at most WG_GEMM_S8_MAX_K rows (exact: docs/numerics.md
 * 7.4); before more rows would go in, they are added into the thread's int64 sums and
 * restart from zero. At the end each element of dw is the int64 sum of every thread's
 * sums, scaled by part: integer sums, exact, so neither the blocks nor which thread took
 * which changes a bit. */

/* Whether backward-weight gathers its rows from the input (else from im2col's rows). */
static bool dw_gathers(const wg_conv_geom *g) { return g->kh == 1 || g->kw * g->c >= 16; }

/* Bytes of backward-weight's scratch per thread: the block's padded images (none
 * without padding), its im2col matrix (only when !dw_gathers), its rows' pointers, the
 * GEMM's packing buffers, acc32, then acc64 (only when a thread can see more than
 * WG_GEMM_S8_MAX_K rows). */
typedef struct bwd_weight_layout {
    size_t padded, col, brow, pack, acc32, acc64, per_thread;
} bwd_weight_layout;

static size_t padded_image_bytes(const wg_conv_geom *g)
{
    return (size_t)((g->h + 2 * (int64_t)g->pad) * (g->w + 2 * (int64_t)g->pad) * g->c);
}

static bwd_weight_layout bwd_weight_layout_of(const wg_conv_geom *g, int nparts, const img_blocks *b)
{
    size_t nacc = (size_t)nparts * (size_t)(g->o * g->kdim);
    bwd_weight_layout l = {
        .padded = g->pad > 0 ? round64((size_t)b->per_block * padded_image_bytes(g)) : 0,
        .col = dw_gathers(g) ? 0 : forward_col_bytes(g, b->per_block),
        .brow = round64((size_t)(b->per_block * g->oh * g->ow) * sizeof(const int8_t *)),
        .pack = round64(wg_gemm_s8_tn_gather_scratch(g->o, g->kdim, nparts)),
        .acc32 = round64(nacc * sizeof(int32_t)),
        .acc64 = g->rows > WG_GEMM_S8_MAX_K ? round64(nacc * sizeof(int64_t)) : 0};
    l.per_thread = l.padded + l.col + l.brow + l.pack + l.acc32 + l.acc64;
    return l;
}

/* The blocks of img_blocks_of, resized so that their count divides among the threads
 * (16 blocks of 8 images for 2 threads, not 15 of 9): no thread waits on one more. */
static img_blocks img_blocks_even(const wg_conv_geom *g, img_blocks b)
{
    if (b.threads <= 1 || b.count % b.threads == 0) return b;
    int64_t count = (b.count + b.threads - 1) / b.threads * b.threads;
    int64_t per = (g->n + count - 1) / count;
    return (img_blocks){per, (g->n + per - 1) / per, b.threads};
}

/* brow[r] for the rows of the nimg images from img0: where row r's first run starts
 * (kernel row 0); the others follow *run_ld bytes apart. padded: l.padded bytes, zero
 * but for the interiors, which this writes. Without dw_gathers, the rows of col, which
 * this fills by im2col_images (one run per row). */
static void gather_rows(const wg_conv_geom *g, const int8_t *x, int64_t img0, int64_t nimg, int8_t *padded,
                        int8_t *col, const int8_t **brow, int64_t *run_ld)
{
    if (!dw_gathers(g)) {
        im2col_images(g, x, img0, nimg, col, 1, (char *)padded);
        for (int64_t r = 0; r < nimg * g->oh * g->ow; r++) brow[r] = col + r * g->kdim;
        *run_ld = g->kdim;
        return;
    }
    int64_t pw = g->w + 2 * (int64_t)g->pad, c = g->c;
    *run_ld = pw * c;
    for (int64_t im = 0; im < nimg; im++) {
        const int8_t *src = x + (img0 + im) * g->h * g->w * c;
        if (g->pad > 0) {
            int8_t *dst = padded + (size_t)im * padded_image_bytes(g);
            for (int64_t ih = 0; ih < g->h; ih++)
                memcpy(dst + ((ih + g->pad) * pw + g->pad) * c, src + ih * g->w * c, (size_t)(g->w * c));
            src = dst;
        }
        for (int64_t oh = 0; oh < g->oh; oh++)
            for (int64_t ow = 0; ow < g->ow; ow++)
                *brow++ = src + (oh * g->stride * pw + ow * g->stride) * c;
    }
}

/* One thread's sums: acc32 (nacc int32, rows32 rows in it) and acc64 (nacc int64, used
 * once spilled). */
typedef struct dw_sums {
    int32_t *acc32;
    int64_t *acc64;
    int64_t nacc, rows32;
    bool spilled;
} dw_sums;

static void dw_sums_spill(dw_sums *s)
{
    if (!s->spilled) memset(s->acc64, 0, (size_t)s->nacc * sizeof(int64_t));
    for (int64_t i = 0; i < s->nacc; i++) s->acc64[i] += s->acc32[i];
    memset(s->acc32, 0, (size_t)s->nacc * sizeof(int32_t));
    s->spilled = true;
    s->rows32 = 0;
}

/* dw (int64 [o][kdim], at e_x + e_min) from the parts; scratch: l.per_thread bytes for
 * each of b.threads threads. */
static void backward_weight(const wg_conv_geom *g, const int8_t *x, const wg_tensor *const *err, int nparts,
                            int e_min, int64_t *dw, char *scratch, img_blocks b, bwd_weight_layout l)
{
    int64_t per_image = g->oh * g->ow, nw = g->o * g->kdim;
    int nruns = dw_gathers(g) ? (int)g->kh : 1; /* runs of kdim / nruns bytes per row */
    dw_sums *sums = malloc((size_t)b.threads * sizeof *sums);
    WG_ASSERT(sums != NULL, "out of memory for %d threads' sums", b.threads);
    int team = 1;
#pragma omp parallel num_threads(b.threads) if (b.threads > 1)
    {
        int t = thread_num();
        char *mine = scratch + l.per_thread * (size_t)t;
        int8_t *padded = (int8_t *)mine, *col = (int8_t *)(mine + l.padded);
        const int8_t **brow = (const int8_t **)(mine + l.padded + l.col);
        char *pack = mine + l.padded + l.col + l.brow;
        dw_sums *s = &sums[t];
        *s = (dw_sums){(int32_t *)(pack + l.pack), (int64_t *)(pack + l.pack + l.acc32), nparts * nw, 0, false};
        memset(padded, 0, l.padded);
        memset(s->acc32, 0, (size_t)s->nacc * sizeof(int32_t));
#ifdef _OPENMP
        if (t == 0) team = omp_get_num_threads();
#endif
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < b.count; blk++) {
            int64_t img0 = blk * b.per_block, nimg = g->n - img0 < b.per_block ? g->n - img0 : b.per_block;
            int64_t r0 = img0 * per_image, nr = nimg * per_image, run_ld;
            gather_rows(g, x, img0, nimg, padded, col, brow, &run_ld);
            for (int64_t k0 = 0; k0 < nr; k0 += WG_GEMM_S8_MAX_K) {
                int64_t kr = nr - k0 < WG_GEMM_S8_MAX_K ? nr - k0 : WG_GEMM_S8_MAX_K;
                if (s->rows32 + kr > WG_GEMM_S8_MAX_K) dw_sums_spill(s);
                const int8_t *parts[2];
                for (int p = 0; p < nparts; p++) parts[p] = (const int8_t *)err[p]->data + (r0 + k0) * g->o;
                wg_gemm_s8_tn_gather(g->o, kr, nparts, parts, g->o, brow + k0, nruns, g->kdim / nruns, run_ld,
                                     s->acc32, g->kdim, pack);
                s->rows32 += kr;
            }
        }
        /* the implicit barrier of the loop above: every thread's sums are final */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < nw; i++) {
            int64_t sum = 0;
            for (int p = 0; p < nparts; p++) {
                int64_t part = 0;
                for (int u = 0; u < team; u++)
                    part += (int64_t)sums[u].acc32[p * nw + i] + (sums[u].spilled ? sums[u].acc64[p * nw + i] : 0);
                sum += part * (INT64_C(1) << (err[p]->exp - e_min));
            }
            dw[i] = sum;
        }
    }
    free(sums);
}

void wg_conv_s8_backward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, const wg_tensor *const *err,
                         int nparts, wg_tensor *dx, wg_tensor *dw, wg_conv_ws *ws)
{
    check_geom(g, x, w, WG_I8, WG_I8);
    WG_ASSERT(nparts >= 1 && nparts <= 2, "%d error parts", nparts);
    int e_min = err[0]->exp;
    for (int p = 0; p < nparts; p++) {
        WG_ASSERT(err[p]->dtype == WG_I8 && wg_tensor_numel(err[p]) == g->rows * g->o, "error part %d", p);
        e_min = err[p]->exp < e_min ? err[p]->exp : e_min;
    }
    for (int p = 0; p < nparts; p++)
        WG_ASSERT(err[p]->exp - e_min <= 16, "error parts %d grids apart", err[p]->exp - e_min);
    WG_ASSERT(dw->dtype == WG_I64 && wg_tensor_numel(dw) == wg_tensor_numel(w), "convolution dw");

    /* Workspace: backward-data's scratch (see its paths), then backward-weight's. */
    wg_conv_geom gt;
    bool as_conv = dx != NULL && bwd_data_conv_geom(g, &gt);
    img_blocks b = {0};
    size_t scratch = 0;
    if (as_conv) {
        b = img_blocks_of(&gt, bwd_conv_per_thread(&gt, 1));
        scratch = bwd_conv_wt_bytes(&gt) + bwd_conv_per_thread(&gt, b.per_block) * (size_t)b.threads;
    } else if (dx != NULL) {
        b = img_blocks_of(g, (size_t)(g->oh * g->ow * g->kdim) * sizeof(int32_t));
        scratch = bwd_data_per_thread(g, &b) * (size_t)b.threads;
    }
    img_blocks bw = img_blocks_even(g, img_blocks_of(g, (size_t)(g->oh * g->ow * g->kdim)));
    bwd_weight_layout lw = bwd_weight_layout_of(g, nparts, &bw);
    size_t wbytes = lw.per_thread * (size_t)bw.threads;
    char *buf = ws_reserve(ws, scratch > wbytes ? scratch : wbytes);

    if (dx != NULL) {
        WG_ASSERT(dx->dtype == WG_I64 && wg_tensor_numel(dx) == wg_tensor_numel(x), "convolution dx");
        if (as_conv) backward_data_conv(g, &gt, w, err, nparts, e_min, dx->data, buf, b);
        else backward_data_col(g, w, err, nparts, e_min, dx->data, buf, b);
        dx->exp = w->exp + e_min;
    }
    backward_weight(g, x->data, err, nparts, e_min, dw->data, buf, bw, lw);
    dw->exp = x->exp + e_min;
}

/* ---- float32 ------------------------------------------------------------------- */

void wg_conv_f32_forward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y, wg_conv_ws *ws)
{
    check_geom(g, x, w, WG_F32, WG_F32);
    WG_ASSERT(y->dtype == WG_F32 && wg_tensor_numel(y) == g->rows * g->o, "convolution output");
    size_t cb = col_bytes(g, sizeof(float));
    const float *col = im2col_of(g, x, ws, sizeof(float), (size_t)g->kdim * (size_t)g->o * sizeof(float));
    float *wt = (float *)((char *)ws->buf + cb), *wsrc = w->data; /* W^T [kdim][o] */
    for (int64_t o = 0; o < g->o; o++)
        for (int64_t k = 0; k < g->kdim; k++) wt[k * g->o + o] = wsrc[o * g->kdim + k];
    memset(y->data, 0, wg_tensor_nbytes(y));
    wg_gemm_f32_nn(g->rows, g->o, g->kdim, col, g->kdim, wt, g->o, y->data, g->o);
}

void wg_conv_f32_backward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, const wg_tensor *dy,
                          wg_tensor *dx, wg_tensor *dw, wg_conv_ws *ws)
{
    check_geom(g, x, w, WG_F32, WG_F32);
    WG_ASSERT(dy->dtype == WG_F32 && wg_tensor_numel(dy) == g->rows * g->o, "convolution dy");
    size_t cb = col_bytes(g, sizeof(float));
    const float *col = im2col_of(g, x, ws, sizeof(float), (size_t)g->rows * (size_t)g->kdim * sizeof(float));
    float *dcol = (float *)((char *)ws->buf + cb);
    if (dx != NULL) {
        WG_ASSERT(dx->dtype == WG_F32 && wg_tensor_numel(dx) == wg_tensor_numel(x), "convolution dx");
        memset(dx->data, 0, wg_tensor_nbytes(dx));
        if (is_pointwise(g)) {
            wg_gemm_f32_nn(g->rows, g->kdim, g->o, dy->data, g->o, w->data, g->kdim, dx->data, g->kdim);
        } else {
            memset(dcol, 0, (size_t)g->rows * (size_t)g->kdim * sizeof(float));
            wg_gemm_f32_nn(g->rows, g->kdim, g->o, dy->data, g->o, w->data, g->kdim, dcol, g->kdim);
            col2im_add_f32(g, dcol, dx->data);
        }
    }
    WG_ASSERT(dw->dtype == WG_F32 && wg_tensor_numel(dw) == wg_tensor_numel(w), "convolution dw");
    memset(dw->data, 0, wg_tensor_nbytes(dw));
    wg_gemm_f32_tn(g->o, g->kdim, g->rows, dy->data, g->o, col, g->kdim, dw->data, g->kdim);
}
