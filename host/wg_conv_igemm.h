/* wg_conv_igemm.h: the index arithmetic of the implicit-GEMM int8 convolutions
 * (cuda/conv_igemm.cu), shared with a CPU test (tests/test_conv_igemm.c) that runs the
 * same products in scalar loops against the CPU backend's convolutions.
 *
 * Each convolution is a GEMM C[M][N] = sum over k of A(m, k) B(n, k) whose operands
 * are read in place, 16 bytes at a time (one cp.async), never written out as im2col:
 *
 *   forward          M = rows (n, oy, ox)   N = o    K = (i, j, ch)   A = x gathered, B = w
 *   backward-data    M = (n, iy, ix)        N = c    K = (i, j, o)    A = err gathered, B = wt
 *   backward-weight  M = o                  N = (i, j, ch)  K = rows  A = err^T, B = x gathered
 *
 * wt is the weights transposed to [c][kh][kw][o] (a small pass). A 16-byte piece lies
 * inside one kernel position (i, j) when the channels it runs along are a multiple of
 * 16: c for the forward and backward-weight's x, o for the errors; where they are not
 * (the Fashion-MNIST and ImageNet stems' 1 or 3 channels, the FC's classes) the cuBLASLt
 * path (conv.cu) takes the layer. An offset of -1 is a piece of zeros (padding, a stride's
 * skipped position, past the end).
 *
 * Dimension legend: as conv.h (n, h, w, c input; o, kh, kw weights; oh, ow output). */
#ifndef WG_CONV_IGEMM_H
#define WG_CONV_IGEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "conv.h"
#include "wg_hd.h"

#define WG_IGEMM_PIECE 16 /* bytes one load moves */

/* Which layers the implicit-GEMM kernels take (the pieces above must stay inside one
 * kernel position). */
WG_HD bool wg_igemm_forward_ok(const wg_conv_geom *g) { return g->c % WG_IGEMM_PIECE == 0; }
WG_HD bool wg_igemm_backward_data_ok(const wg_conv_geom *g) { return g->o % WG_IGEMM_PIECE == 0; }
WG_HD bool wg_igemm_backward_weight_ok(const wg_conv_geom *g)
{
    return g->o % WG_IGEMM_PIECE == 0 && g->c % WG_IGEMM_PIECE == 0;
}

/* Offset in x of the input pixel that output pixel r (n, oy, ox) sees through kernel
 * position (i, j), at channel 0, or -1 in the padding. */
WG_HD int64_t wg_igemm_x_pixel(const wg_conv_geom *g, int64_t r, int64_t i, int64_t j)
{
    int64_t ox = r % g->ow, oy = (r / g->ow) % g->oh, n = r / (g->ow * g->oh);
    int64_t iy = oy * g->stride - g->pad + i, ix = ox * g->stride - g->pad + j;
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return -1;
    return ((n * g->h + iy) * g->w + ix) * g->c;
}

/* Forward A: the 16 bytes of im2col row m (an output pixel) from column k0 (a multiple
 * of 16, < kdim): x at kernel position (i, j) = k0 / c, channels k0 % c onwards. */
WG_HD int64_t wg_igemm_fwd_a(const wg_conv_geom *g, int64_t m, int64_t k0)
{
    int64_t ij = k0 / g->c, p = wg_igemm_x_pixel(g, m, ij / g->kw, ij % g->kw);
    return p < 0 ? -1 : p + k0 % g->c;
}

/* Backward-data A: row m = input pixel (n, iy, ix), columns k0.. = (i, j, o0..): the
 * error of the output pixel that saw (iy, ix) through (i, j), channels o0 onwards; -1
 * where no output pixel did (outside the output, or between a stride's positions). */
WG_HD int64_t wg_igemm_bwd_data_a(const wg_conv_geom *g, int64_t m, int64_t k0)
{
    int64_t ij = k0 / g->o, i = ij / g->kw, j = ij % g->kw;
    int64_t ix = m % g->w, iy = (m / g->w) % g->h, n = m / (g->w * g->h);
    int64_t ty = iy + g->pad - i, tx = ix + g->pad - j;
    if (ty < 0 || tx < 0 || ty % g->stride != 0 || tx % g->stride != 0) return -1;
    int64_t oy = ty / g->stride, ox = tx / g->stride;
    if (oy >= g->oh || ox >= g->ow) return -1;
    return ((n * g->oh + oy) * g->ow + ox) * g->o + k0 % g->o;
}

/* Backward-data B: row n = input channel ch of wt [c][kh][kw][o], columns k0.. (its
 * rows are contiguous: kdim_t = kh kw o columns). */
WG_HD int64_t wg_igemm_bwd_data_b(const wg_conv_geom *g, int64_t n, int64_t k0)
{
    return n * g->kh * g->kw * g->o + k0;
}

/* wt[ch][i][j][o] = w[o][i][j][ch]: the offset in w of wt's element t. */
WG_HD int64_t wg_igemm_wt_source(const wg_conv_geom *g, int64_t t)
{
    int64_t o = t % g->o, ij = (t / g->o) % (g->kh * g->kw), ch = t / (g->o * g->kh * g->kw);
    return (o * g->kh * g->kw + ij) * g->c + ch;
}

/* Backward-weight A, stored with M innermost: the 16 error values of output pixel k (a
 * row of err) for output channels m0.. (a multiple of 16). */
WG_HD int64_t wg_igemm_bwd_w_a(const wg_conv_geom *g, int64_t k, int64_t m0) { return k * g->o + m0; }

/* Backward-weight B, N innermost: the 16 values of im2col row k (an output pixel) for
 * the columns n0.. = (i, j, ch0..) (a multiple of 16): x at that kernel position. */
WG_HD int64_t wg_igemm_bwd_w_b(const wg_conv_geom *g, int64_t k, int64_t n0) { return wg_igemm_fwd_a(g, k, n0); }

#endif
