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

/* The kernels compute each operand piece's offset from two halves, so that the
 * divisions happen once per block, not once per piece and K step:
 * - a position along K (wg_igemm_kpos: kernel position (i, j), channel ch), found once
 *   by division and then stepped by 32 a K step (wg_igemm_kpos_step);
 * - a row of the gathered operand (an output pixel for the forward, an input pixel for
 *   backward-data), decomposed once (wg_igemm_fwd_row, wg_igemm_bwd_data_row); the
 *   output pixels of backward-weight, its K, are stepped by wg_igemm_pix_step.
 * The one-call forms (wg_igemm_fwd_a, wg_igemm_bwd_data_a) compose the two halves. */

typedef struct wg_igemm_kpos {
    int32_t i, j, ch; /* kernel position (i, j), channel ch of `chans` at each */
} wg_igemm_kpos;

/* Column k of a K laid out as (i, j, ch) with chans channels a position, kw columns. */
WG_HD wg_igemm_kpos wg_igemm_kpos_of(int64_t k, int64_t chans, int64_t kw)
{
    int64_t ij = k / chans;
    wg_igemm_kpos p = {(int32_t)(ij / kw), (int32_t)(ij % kw), (int32_t)(k % chans)};
    return p;
}

/* k += step (a step of at most a few positions: one comparison a position crossed). */
WG_HD void wg_igemm_kpos_step(wg_igemm_kpos *p, int32_t step, int32_t chans, int32_t kw)
{
    p->ch += step;
    while (p->ch >= chans) {
        p->ch -= chans;
        if (++p->j == kw) p->j = 0, p->i++;
    }
}

/* An output pixel (n, oy, ox), stepped along the rows of the im2col matrix. */
typedef struct wg_igemm_pix {
    int64_t n;
    int32_t oy, ox;
} wg_igemm_pix;

WG_HD wg_igemm_pix wg_igemm_pix_of(const wg_conv_geom *g, int64_t r)
{
    wg_igemm_pix p = {r / (g->ow * g->oh), (int32_t)((r / g->ow) % g->oh), (int32_t)(r % g->ow)};
    return p;
}

/* r += step: divisions only where a row or an image is crossed. */
WG_HD void wg_igemm_pix_step(wg_igemm_pix *p, const wg_conv_geom *g, int32_t step)
{
    int32_t ow = (int32_t)g->ow, oh = (int32_t)g->oh;
    p->ox += step;
    if (p->ox < ow) return;
    p->oy += p->ox / ow;
    p->ox %= ow;
    if (p->oy < oh) return;
    p->n += p->oy / oh;
    p->oy %= oh;
}

/* Forward A's row, an output pixel: where its image starts in x (-1: no such row), and
 * the input pixel that its kernel position (0, 0) sees (y0, x0: may lie in the padding). */
typedef struct wg_igemm_frow {
    int64_t base;
    int32_t y0, x0;
} wg_igemm_frow;

WG_HD wg_igemm_frow wg_igemm_frow_at(const wg_conv_geom *g, const wg_igemm_pix *p)
{
    wg_igemm_frow f = {p->n * g->h * g->w * g->c, p->oy * g->stride - g->pad, p->ox * g->stride - g->pad};
    return f;
}

WG_HD wg_igemm_frow wg_igemm_fwd_row(const wg_conv_geom *g, int64_t m)
{
    if (m >= g->rows) {
        wg_igemm_frow none = {-1, 0, 0};
        return none;
    }
    wg_igemm_pix p = wg_igemm_pix_of(g, m);
    return wg_igemm_frow_at(g, &p);
}

/* The piece of x at row r, K position p: -1 in the padding or where the row is none. */
WG_HD int64_t wg_igemm_fwd_a_at(const wg_conv_geom *g, const wg_igemm_frow *r, const wg_igemm_kpos *p)
{
    int32_t iy = r->y0 + p->i, ix = r->x0 + p->j;
    if (r->base < 0 || iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return -1;
    return r->base + ((int64_t)iy * g->w + ix) * g->c + p->ch;
}

/* Forward A: the 16 bytes of im2col row m (an output pixel) from column k0 (a multiple
 * of 16, < kdim): x at kernel position (i, j) = k0 / c, channels k0 % c onwards. */
WG_HD int64_t wg_igemm_fwd_a(const wg_conv_geom *g, int64_t m, int64_t k0)
{
    wg_igemm_frow r = wg_igemm_fwd_row(g, m);
    wg_igemm_kpos p = wg_igemm_kpos_of(k0, g->c, g->kw);
    return wg_igemm_fwd_a_at(g, &r, &p);
}

/* Backward-data A's row, an input pixel (n, iy, ix): where image n's errors start (-1:
 * no such row), and iy + pad, ix + pad. */
typedef struct wg_igemm_drow {
    int64_t base;
    int32_t ty0, tx0;
} wg_igemm_drow;

WG_HD wg_igemm_drow wg_igemm_bwd_data_row(const wg_conv_geom *g, int64_t m)
{
    wg_igemm_drow d = {-1, 0, 0};
    if (m >= g->n * g->h * g->w) return d;
    d.base = m / (g->w * g->h) * g->oh * g->ow * g->o;
    d.ty0 = (int32_t)((m / g->w) % g->h + g->pad);
    d.tx0 = (int32_t)(m % g->w + g->pad);
    return d;
}

/* The error of the output pixel that saw row r's input pixel through kernel position
 * (p->i, p->j), channels p->ch onwards; -1 where none did (outside the output, between
 * a stride's positions) or where the row is none. */
WG_HD int64_t wg_igemm_bwd_data_a_at(const wg_conv_geom *g, const wg_igemm_drow *r, const wg_igemm_kpos *p)
{
    int32_t ty = r->ty0 - p->i, tx = r->tx0 - p->j, s = g->stride;
    if (r->base < 0 || ty < 0 || tx < 0 || ty % s != 0 || tx % s != 0) return -1;
    int32_t oy = ty / s, ox = tx / s;
    if (oy >= g->oh || ox >= g->ow) return -1;
    return r->base + ((int64_t)oy * g->ow + ox) * g->o + p->ch;
}

/* Backward-data A: row m = input pixel (n, iy, ix), columns k0.. = (i, j, o0..): the
 * error of the output pixel that saw (iy, ix) through (i, j), channels o0 onwards. */
WG_HD int64_t wg_igemm_bwd_data_a(const wg_conv_geom *g, int64_t m, int64_t k0)
{
    wg_igemm_drow r = wg_igemm_bwd_data_row(g, m);
    wg_igemm_kpos p = wg_igemm_kpos_of(k0, g->o, g->kw);
    return wg_igemm_bwd_data_a_at(g, &r, &p);
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
