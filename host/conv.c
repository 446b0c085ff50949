/* conv.c: convolution by im2col + GEMM, int8 and float32 (see conv.h). */
#include "conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "wg_par.h"
#include "gemm.h"

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

/* col[r][(i*kw + j)*c + ch] = x[input_row(r, i, j)][ch], zero in the padding. */
static void im2col(const wg_conv_geom *g, const void *x, void *col, size_t esz)
{
    size_t run = (size_t)g->c * esz;
#pragma omp parallel for schedule(static) if (g->rows * g->kdim >= WG_PAR_MIN)
    for (int64_t r = 0; r < g->rows; r++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                char *dst = (char *)col + ((size_t)r * (size_t)g->kdim + (size_t)(i * g->kw + j) * (size_t)g->c) * esz;
                int64_t src = input_row(g, r, i, j);
                if (src < 0) memset(dst, 0, run);
                else memcpy(dst, (const char *)x + (size_t)src * run, run);
            }
}

/* dx[input_row(r, i, j)][ch] += dcol[r][tap][ch] << shift (overlapping taps add up). */
static void col2im_add_s64(const wg_conv_geom *g, const int32_t *dcol, int64_t *dx, int shift)
{
    int64_t scale = INT64_C(1) << shift; /* a multiply: left shifts of negatives are undefined in C */
    int64_t per_image = g->oh * g->ow;
    /* threads take whole images: rows of different images never touch the same dx */
#pragma omp parallel for schedule(static) if (g->rows * g->kdim >= WG_PAR_MIN)
    for (int64_t img = 0; img < g->n; img++)
    for (int64_t r = img * per_image; r < (img + 1) * per_image; r++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t src = input_row(g, r, i, j);
                if (src < 0) continue;
                const int32_t *d = dcol + r * g->kdim + (i * g->kw + j) * g->c;
                int64_t *out = dx + src * g->c;
                for (int64_t ch = 0; ch < g->c; ch++) out[ch] += (int64_t)d[ch] * scale;
            }
}

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

void wg_conv_s8_forward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y, wg_conv_ws *ws)
{
    check_geom(g, x, w, WG_I8, WG_I8);
    WG_ASSERT(y->dtype == WG_I32 && wg_tensor_numel(y) == g->rows * g->o, "convolution output");
    WG_ASSERT(g->kdim <= WG_GEMM_S8_MAX_K, "a dot product of %lld int8 products can overflow int32",
              (long long)g->kdim);
    const int8_t *col = im2col_of(g, x, ws, 1, 0);
    wg_gemm_s8_nt(g->rows, g->o, g->kdim, col, g->kdim, w->data, g->kdim, y->data, g->o);
    y->exp = x->exp + w->exp;
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

    /* Workspace: [im2col of x][int32 scratch: dcol (rows x kdim) or a dw chunk (o x kdim)] */
    size_t cb = col_bytes(g, 1);
    size_t scratch = (size_t)g->kdim * sizeof(int32_t) * (size_t)(g->rows > g->o ? g->rows : g->o);
    const int8_t *col = im2col_of(g, x, ws, 1, scratch);
    int32_t *tmp = (int32_t *)((char *)ws->buf + cb);

    if (dx != NULL) {
        WG_ASSERT(dx->dtype == WG_I64 && wg_tensor_numel(dx) == wg_tensor_numel(x), "convolution dx");
        WG_ASSERT(g->o <= WG_GEMM_S8_MAX_K, "backward-data sums over %lld filters", (long long)g->o);
        memset(dx->data, 0, wg_tensor_nbytes(dx));
        /* The parts can share one int32 column buffer (the coarser one scaled up before
         * the finer accumulates) when every column sum stays below 2^31: o products of
         * 127 with a part value below 127 * (2^shift + 1). One col2im pass then serves
         * both; otherwise each part takes its own. */
        int64_t span = 0;
        for (int p = 0; p < nparts; p++) span = err[p]->exp - e_min > span ? err[p]->exp - e_min : span;
        bool shared = nparts == 2 && span <= 8 && g->o * 127 * 127 * ((INT64_C(1) << span) + 1) < INT64_C(2147483647);
        size_t tbytes = (size_t)g->rows * (size_t)g->kdim * sizeof(int32_t);
        if (shared) {
            int coarse = err[0]->exp >= err[1]->exp ? 0 : 1;
            int32_t scale = (int32_t)1 << (err[coarse]->exp - e_min);
            memset(tmp, 0, tbytes);
            wg_gemm_s8_nn(g->rows, g->kdim, g->o, err[coarse]->data, g->o, w->data, g->kdim, tmp, g->kdim);
            if (scale != 1) {
                int64_t nt = g->rows * g->kdim;
#pragma omp parallel for schedule(static) if (nt >= WG_PAR_MIN)
                for (int64_t i = 0; i < nt; i++) tmp[i] *= scale;
            }
            wg_gemm_s8_nn(g->rows, g->kdim, g->o, err[1 - coarse]->data, g->o, w->data, g->kdim, tmp, g->kdim);
            col2im_add_s64(g, tmp, dx->data, 0);
        } else {
            for (int p = 0; p < nparts; p++) {
                memset(tmp, 0, tbytes);
                wg_gemm_s8_nn(g->rows, g->kdim, g->o, err[p]->data, g->o, w->data, g->kdim, tmp, g->kdim);
                col2im_add_s64(g, tmp, dx->data, err[p]->exp - e_min);
            }
        }
        dx->exp = w->exp + e_min;
    }

    WG_ASSERT(dw->dtype == WG_I64 && wg_tensor_numel(dw) == wg_tensor_numel(w), "convolution dw");
    int64_t *dw64 = dw->data, nw = g->o * g->kdim;
    memset(dw64, 0, wg_tensor_nbytes(dw));
    for (int p = 0; p < nparts; p++) {
        const int8_t *e = err[p]->data;
        int shift = err[p]->exp - e_min;
        /* int32 partial sums over at most WG_GEMM_S8_MAX_K rows, then into int64 */
        for (int64_t r0 = 0; r0 < g->rows; r0 += WG_GEMM_S8_MAX_K) {
            int64_t nr = g->rows - r0 < WG_GEMM_S8_MAX_K ? g->rows - r0 : WG_GEMM_S8_MAX_K;
            memset(tmp, 0, (size_t)nw * sizeof(int32_t));
            wg_gemm_s8_tn(g->o, g->kdim, nr, e + r0 * g->o, g->o, col + r0 * g->kdim, g->kdim, tmp, g->kdim);
#pragma omp parallel for schedule(static) if (nw >= WG_PAR_MIN)
            for (int64_t i = 0; i < nw; i++) dw64[i] += (int64_t)tmp[i] * ((int64_t)1 << shift);
        }
    }
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
