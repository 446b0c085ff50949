/* conv_im2col.c: the convolution's im2col (x into rows of kh * kw * c taps, through a
 * zero-bordered copy of each image when padded) and col2im (sums of those rows back
 * onto the input's pixels), int8 and float32, for the forward and backward passes of
 * conv.c and conv_bwd.c. conv_impl.h declares them and gives the dimension legend. */
#include "conv_impl.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "wg_par.h"

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

/* The pixel loop of conv_im2col_images with COPY(d, s) copying one run of run bytes. */
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
void conv_im2col_images(const wg_conv_geom *g, const void *x, int64_t img0, int64_t nimg, void *col, size_t esz,
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
char *conv_padded_alloc(const wg_conv_geom *g, size_t esz)
{
    if (g->pad == 0) return NULL;
    size_t n = (size_t)((g->h + 2 * (int64_t)g->pad) * (g->w + 2 * (int64_t)g->pad)) * (size_t)g->c * esz;
    char *p = calloc(n, 1);
    WG_ASSERT(p != NULL, "out of memory for %zu bytes of a padded image", n);
    return p;
}

/* The im2col matrix of all images; threads take whole images. */
void conv_im2col(const wg_conv_geom *g, const void *x, void *col, size_t esz)
{
    size_t img_col = (size_t)(g->oh * g->ow * g->kdim) * esz;
#pragma omp parallel if (g->rows * g->kdim >= WG_PAR_MIN && g->n > 1)
    {
        char *padded = conv_padded_alloc(g, esz);
#pragma omp for schedule(static)
        for (int64_t img = 0; img < g->n; img++)
            conv_im2col_images(g, x, img, 1, (char *)col + (size_t)img * img_col, esz, padded);
        free(padded);
    }
}

tap_rows conv_tap_rows_init(const wg_conv_geom *g)
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

void conv_tap_rows_free(tap_rows *t)
{
    free(t->oh);
    free(t->i);
    free(t->count);
}

tap_cols conv_tap_cols_init(const wg_conv_geom *g)
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

void conv_tap_cols_free(tap_cols *t)
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
    void NAME(const wg_conv_geom *g, const tap_rows *tr, const tap_cols *tc, const int32_t *dcol,         \
              int64_t img0, int64_t nimg, int64_t *dx, int64_t scale, bool add, ACC_T *acc)               \
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
WG_COL2IM_GATHER(conv_col2im_gather_acc64, int64_t)
WG_COL2IM_GATHER(conv_col2im_gather_acc32, int32_t)
#undef WG_COL2IM_GATHER

void conv_col2im_add_f32(const wg_conv_geom *g, const float *dcol, float *dx)
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
