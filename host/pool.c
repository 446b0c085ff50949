/* pool.c: global average pooling and max pooling (see pool.h). */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_ops.h"
#include "check.h"
#include "wg_intmath.h"
#include "wg_par.h"
#include "wg_rational.h"

static void check_gap(const wg_tensor *a, const wg_tensor *pooled)
{
    WG_ASSERT(a->layout == WG_LAYOUT_NHWC, "global average pooling needs an NHWC input");
    WG_ASSERT(wg_tensor_numel(pooled) == a->shape[0] * a->shape[3], "pooled tensor has %lld elements, expected %lld",
              (long long)wg_tensor_numel(pooled), (long long)(a->shape[0] * a->shape[3]));
}

void wg_gap_s8_forward(const wg_tensor *a, wg_tensor *out)
{
    check_gap(a, out);
    WG_ASSERT(a->dtype == WG_I8 && out->dtype == WG_I8, "int8 pooling");
    WG_BACKEND_OP(a, gap_s8_forward)(a->backend->ctx, a, out);
    out->exp = a->exp;
}

void wg_gap_s8_backward(const wg_tensor *dout, const wg_tensor *a, wg_tensor *da)
{
    check_gap(a, dout);
    WG_ASSERT(wg_dtype_is_int(dout->dtype) && da->dtype == WG_I64 && da->layout == WG_LAYOUT_NHWC &&
                  wg_tensor_numel(da) == wg_tensor_numel(a) && da->shape[3] == a->shape[3],
              "int8 pooling backward");
    WG_BACKEND_OP(da, gap_s8_backward)(da->backend->ctx, dout, da);
    da->exp = dout->exp - WG_GAP_EXTRA_BITS;
}

/* The CPU backend's loops of the two (backend.h). */
void wg_cpu_gap_s8_forward(void *ctx, const wg_tensor *a, wg_tensor *out)
{
    (void)ctx;
    int64_t n = a->shape[0], hw = a->shape[1] * a->shape[2], c = a->shape[3];
    const int8_t *x = a->data;
    int8_t *y = out->data;
#pragma omp parallel for schedule(static) if (n * hw * c >= WG_PAR_MIN)
    for (int64_t b = 0; b < n; b++) {
        int64_t *s = calloc((size_t)c, sizeof *s); /* image b's channel sums, row by row */
        WG_ASSERT(s != NULL, "out of memory (%lld channels)", (long long)c);
        for (int64_t p = 0; p < hw; p++)
            for (int64_t ch = 0; ch < c; ch++) s[ch] += x[(b * hw + p) * c + ch];
        for (int64_t ch = 0; ch < c; ch++) y[b * c + ch] = (int8_t)wg_div_rne(s[ch], hw);
        free(s);
    }
}

void wg_cpu_gap_s8_backward(void *ctx, const wg_tensor *dout, wg_tensor *da)
{
    (void)ctx;
    int64_t n = da->shape[0], hw = da->shape[1] * da->shape[2], c = da->shape[3];
    int64_t *dx = da->data;
#pragma omp parallel for schedule(static) if (n * hw * c >= WG_PAR_MIN)
    for (int64_t b = 0; b < n; b++) {
        int64_t *row = dx + b * hw * c; /* image b's first row, the others its copies */
        for (int64_t ch = 0; ch < c; ch++)
            row[ch] = wg_gap_spread_elem(wg_load_i64(dout->data, dout->dtype, b * c + ch), hw);
        for (int64_t p = 1; p < hw; p++) memcpy(row + p * c, row, (size_t)c * sizeof *row);
    }
}

void wg_gap_f32_forward(const wg_tensor *a, wg_tensor *out)
{
    check_gap(a, out);
    WG_ASSERT(a->dtype == WG_F32 && out->dtype == WG_F32, "float pooling");
    WG_BACKEND_OP(a, gap_f32_forward)(a->backend->ctx, a, out);
}

void wg_gap_f32_backward(const wg_tensor *dout, const wg_tensor *a, wg_tensor *da)
{
    check_gap(a, dout);
    WG_ASSERT(dout->dtype == WG_F32 && da->dtype == WG_F32 && da->layout == WG_LAYOUT_NHWC &&
                  wg_tensor_numel(da) == wg_tensor_numel(a) && da->shape[3] == a->shape[3],
              "float pooling backward");
    WG_BACKEND_OP(da, gap_f32_backward)(da->backend->ctx, dout, da);
}

void wg_cpu_gap_f32_forward(void *ctx, const wg_tensor *a, wg_tensor *out)
{
    (void)ctx;
    int64_t n = a->shape[0], hw = a->shape[1] * a->shape[2], c = a->shape[3];
    const float *x = a->data;
    float *y = out->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            double s = 0;
            for (int64_t p = 0; p < hw; p++) s += x[(b * hw + p) * c + ch];
            y[b * c + ch] = (float)(s / (double)hw);
        }
}

void wg_cpu_gap_f32_backward(void *ctx, const wg_tensor *dout, wg_tensor *da)
{
    (void)ctx;
    int64_t n = da->shape[0], hw = da->shape[1] * da->shape[2], c = da->shape[3];
    const float *d = dout->data;
    float *dx = da->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            float v = d[b * c + ch] / (float)hw;
            for (int64_t p = 0; p < hw; p++) dx[(b * hw + p) * c + ch] = v;
        }
}

/* ---- max pooling ----
 *
 * Threads: the forward splits the output rows (N * OH, disjoint writes). The backward
 * splits (image, block of WG_MAXPOOL_CBLOCK channels): a task zeroes and scatters into
 * its own channels of its own image only, in a fixed order, so there is no race and
 * no result depends on the number of threads. */

#define WG_MAXPOOL_CBLOCK 16

bool wg_maxpool_geom_init(wg_maxpool_geom *g, int64_t n, int64_t h, int64_t w, int64_t c, int k, int stride,
                          int pad)
{
    memset(g, 0, sizeof(*g));
    if (n < 1 || h < 1 || w < 1 || c < 1 || k < 1 || stride < 1 || pad < 0 || pad >= k) {
        fprintf(stderr,
                "wageubn: max pool %lldx%lldx%lldx%lld, window %dx%d, stride %d, pad %d: every size must be "
                "positive and the pad in [0, %d) (a window of padding alone has no maximum)\n",
                (long long)n, (long long)h, (long long)w, (long long)c, k, k, stride, pad, k);
        return false;
    }
    if (h + 2 * (int64_t)pad < k || w + 2 * (int64_t)pad < k) {
        fprintf(stderr, "wageubn: a %dx%d max-pool window does not fit a %lldx%lld input padded by %d\n", k, k,
                (long long)h, (long long)w, pad);
        return false;
    }
    *g = (wg_maxpool_geom){.n = n, .h = h, .w = w, .c = c, .k = k, .stride = stride, .pad = pad,
                           .oh = (h + 2 * (int64_t)pad - k) / stride + 1,
                           .ow = (w + 2 * (int64_t)pad - k) / stride + 1};
    return true;
}

static void check_nhwc(const wg_tensor *t, int64_t n, int64_t h, int64_t w, int64_t c, const char *what)
{
    WG_ASSERT(t->layout == WG_LAYOUT_NHWC && t->ndim == 4 && t->shape[0] == n && t->shape[1] == h &&
                  t->shape[2] == w && t->shape[3] == c,
              "max pool: %s is %s %lldx%lldx%lldx%lld (rank %d), expected NHWC %lldx%lldx%lldx%lld", what,
              wg_layout_name(t->layout), (long long)t->shape[0], (long long)t->shape[1], (long long)t->shape[2],
              (long long)t->shape[3], t->ndim, (long long)n, (long long)h, (long long)w, (long long)c);
    WG_ASSERT(t->data != NULL, "max pool: %s has no memory", what);
}

/* The geometry, the input x and the output-side tensor (y, or dy in the backward). */
static void check_maxpool(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *out, const char *what)
{
    WG_ASSERT(g->pad >= 0 && g->pad < g->k && g->stride >= 1 &&
                  g->oh == (g->h + 2 * (int64_t)g->pad - g->k) / g->stride + 1 &&
                  g->ow == (g->w + 2 * (int64_t)g->pad - g->k) / g->stride + 1 && g->oh >= 1 && g->ow >= 1,
              "max pool geometry not from wg_maxpool_geom_init");
    check_nhwc(x, g->n, g->h, g->w, g->c, "the input");
    check_nhwc(out, g->n, g->oh, g->ow, g->c, what);
}

/* Per container: the forward of one output row, and the arg-max (pixel index iy * W +
 * ix inside the image) of each window of one output row for channels [c0, c1),
 * idx[ox * (c1 - c0) + ch - c0]. Both keep the first of equal values (a strict '>'),
 * so the forward's value is always the one at the backward's arg-max. */
#define WG_MAXPOOL_KERNELS(T, sfx)                                                                            \
    static void mp_fwd_row_##sfx(const wg_maxpool_geom *g, const T *x, T *y, int64_t b, int64_t oy)           \
    {                                                                                                         \
        int64_t y0, y1, c = g->c;                                                                             \
        wg_maxpool_span(oy, g->stride, g->pad, g->k, g->h, &y0, &y1);                                         \
        for (int64_t ox = 0; ox < g->ow; ox++) {                                                              \
            int64_t x0, x1;                                                                                   \
            wg_maxpool_span(ox, g->stride, g->pad, g->k, g->w, &x0, &x1);                                     \
            T *yo = y + ((b * g->oh + oy) * g->ow + ox) * c;                                                  \
            memcpy(yo, x + ((b * g->h + y0) * g->w + x0) * c, (size_t)c * sizeof(T));                         \
            for (int64_t iy = y0; iy < y1; iy++)                                                              \
                for (int64_t ix = (iy == y0 ? x0 + 1 : x0); ix < x1; ix++) {                                  \
                    const T *xi = x + ((b * g->h + iy) * g->w + ix) * c;                                      \
                    for (int64_t ch = 0; ch < c; ch++) yo[ch] = xi[ch] > yo[ch] ? xi[ch] : yo[ch];            \
                }                                                                                             \
        }                                                                                                     \
    }                                                                                                         \
    static void mp_argmax_row_##sfx(const wg_maxpool_geom *g, const T *x, int64_t b, int64_t oy, int64_t c0,  \
                                    int64_t c1, int64_t *idx)                                                 \
    {                                                                                                         \
        int64_t y0, y1, c = g->c, nc = c1 - c0;                                                               \
        wg_maxpool_span(oy, g->stride, g->pad, g->k, g->h, &y0, &y1);                                         \
        const T *xb = x + b * g->h * g->w * c + c0;                                                           \
        T best[WG_MAXPOOL_CBLOCK];                                                                            \
        for (int64_t ox = 0; ox < g->ow; ox++) {                                                              \
            int64_t x0, x1, *id = idx + ox * nc;                                                              \
            wg_maxpool_span(ox, g->stride, g->pad, g->k, g->w, &x0, &x1);                                     \
            for (int64_t j = 0; j < nc; j++) best[j] = xb[(y0 * g->w + x0) * c + j], id[j] = y0 * g->w + x0;  \
            for (int64_t iy = y0; iy < y1; iy++)                                                              \
                for (int64_t ix = (iy == y0 ? x0 + 1 : x0); ix < x1; ix++) {                                  \
                    int64_t p = iy * g->w + ix;                                                               \
                    const T *xi = xb + p * c;                                                                 \
                    for (int64_t j = 0; j < nc; j++) { /* branch-free: the data decide */                    \
                        bool gt = xi[j] > best[j];                                                            \
                        best[j] = gt ? xi[j] : best[j];                                                       \
                        id[j] = gt ? p : id[j];                                                               \
                    }                                                                                         \
                }                                                                                             \
        }                                                                                                     \
    }

WG_MAXPOOL_KERNELS(int8_t, i8)
WG_MAXPOOL_KERNELS(int16_t, i16)
WG_MAXPOOL_KERNELS(int32_t, i32)
WG_MAXPOOL_KERNELS(int64_t, i64)
WG_MAXPOOL_KERNELS(float, f32)

static void mp_fwd_row(const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y, int64_t b, int64_t oy)
{
    switch (x->dtype) {
    case WG_I8: mp_fwd_row_i8(g, x->data, y->data, b, oy); break;
    case WG_I16: mp_fwd_row_i16(g, x->data, y->data, b, oy); break;
    case WG_I32: mp_fwd_row_i32(g, x->data, y->data, b, oy); break;
    case WG_I64: mp_fwd_row_i64(g, x->data, y->data, b, oy); break;
    default: mp_fwd_row_f32(g, x->data, y->data, b, oy); break;
    }
}

static void mp_argmax_row(const wg_maxpool_geom *g, const wg_tensor *x, int64_t b, int64_t oy, int64_t c0,
                          int64_t c1, int64_t *idx)
{
    switch (x->dtype) {
    case WG_I8: mp_argmax_row_i8(g, x->data, b, oy, c0, c1, idx); break;
    case WG_I16: mp_argmax_row_i16(g, x->data, b, oy, c0, c1, idx); break;
    case WG_I32: mp_argmax_row_i32(g, x->data, b, oy, c0, c1, idx); break;
    case WG_I64: mp_argmax_row_i64(g, x->data, b, oy, c0, c1, idx); break;
    default: mp_argmax_row_f32(g, x->data, b, oy, c0, c1, idx); break;
    }
}

void wg_cpu_maxpool_forward(void *ctx, const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y)
{
    (void)ctx;
    int64_t rows = g->n * g->oh;
#pragma omp parallel for schedule(static) if (g->n * g->h * g->w * g->c >= WG_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) mp_fwd_row(g, x, y, r / g->oh, r % g->oh);
}

void wg_maxpool_int_forward(const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y)
{
    check_maxpool(g, x, y, "the output");
    WG_ASSERT(wg_dtype_is_int(x->dtype) && y->dtype == x->dtype,
              "max pool: the input (%s) and the output (%s) must be the same integer container",
              wg_dtype_name(x->dtype), wg_dtype_name(y->dtype));
    WG_BACKEND_OP(x, maxpool_forward)(x->backend->ctx, g, x, y);
    y->exp = x->exp;
}

void wg_maxpool_f32_forward(const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y)
{
    check_maxpool(g, x, y, "the output");
    WG_ASSERT(x->dtype == WG_F32 && y->dtype == WG_F32, "max pool f32: float32 tensors (%s, %s)",
              wg_dtype_name(x->dtype), wg_dtype_name(y->dtype));
    WG_BACKEND_OP(x, maxpool_forward)(x->backend->ctx, g, x, y);
}

/* The most windows that share one input position: ceil(K / stride) per dimension. */
static int64_t mp_cover(const wg_maxpool_geom *g)
{
    int64_t per = (g->k + g->stride - 1) / g->stride;
    return per * per;
}

/* One backward task of the integer path: image b, channels [c0, c1). When no sum can
 * pass 2^63 (max|dy| * cover <= INT64_MAX, always in practice) the scatter runs in
 * int64 and is exact; otherwise it runs in 128 bits and each sum is clamped once. */
static void mp_int_backward_task(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy, int64_t *dx,
                                 int64_t b, int64_t c0, int64_t c1, int64_t *idx)
{
    int64_t c = g->c, nc = c1 - c0, hw = g->h * g->w, *dxb = dx + b * hw * c;
    uint64_t m = 0;
    for (int64_t o = 0; o < g->oh * g->ow; o++)
        for (int64_t ch = c0; ch < c1; ch++) {
            uint64_t a = wg_abs_u64(wg_load_i64(dy->data, dy->dtype, (b * g->oh * g->ow + o) * c + ch));
            m = a > m ? a : m;
        }
    bool wide = m > (uint64_t)INT64_MAX / (uint64_t)mp_cover(g);
    wg_i128 *acc = NULL;
    if (wide) {
        acc = calloc((size_t)(hw * nc), sizeof *acc);
        WG_ASSERT(acc != NULL, "max pool backward: out of memory (%lld sums)", (long long)(hw * nc));
    } else {
        for (int64_t p = 0; p < hw; p++) memset(dxb + p * c + c0, 0, (size_t)nc * sizeof *dxb);
    }
    for (int64_t oy = 0; oy < g->oh; oy++) {
        mp_argmax_row(g, x, b, oy, c0, c1, idx);
        for (int64_t ox = 0; ox < g->ow; ox++)
            for (int64_t ch = c0; ch < c1; ch++) {
                int64_t d = wg_load_i64(dy->data, dy->dtype, ((b * g->oh + oy) * g->ow + ox) * c + ch),
                        p = idx[ox * nc + ch - c0];
                if (wide) acc[p * nc + ch - c0] += d;
                else dxb[p * c + ch] += d;
            }
    }
    if (wide) {
        for (int64_t p = 0; p < hw; p++)
            for (int64_t ch = c0; ch < c1; ch++) {
                wg_i128 s = acc[p * nc + ch - c0];
                dxb[p * c + ch] = s > INT64_MAX ? INT64_MAX : s < -INT64_MAX ? -INT64_MAX : (int64_t)s;
            }
        free(acc);
    }
}

/* One backward task of the float path: the same scatter, in float, in the same order. */
static void mp_f32_backward_task(const wg_maxpool_geom *g, const wg_tensor *x, const float *dy, float *dx, int64_t b,
                                 int64_t c0, int64_t c1, int64_t *idx)
{
    int64_t c = g->c, nc = c1 - c0, hw = g->h * g->w;
    float *dxb = dx + b * hw * c;
    for (int64_t p = 0; p < hw; p++)
        for (int64_t ch = c0; ch < c1; ch++) dxb[p * c + ch] = 0.0f;
    for (int64_t oy = 0; oy < g->oh; oy++) {
        mp_argmax_row(g, x, b, oy, c0, c1, idx);
        for (int64_t ox = 0; ox < g->ow; ox++)
            for (int64_t ch = c0; ch < c1; ch++)
                dxb[idx[ox * nc + ch - c0] * c + ch] += dy[((b * g->oh + oy) * g->ow + ox) * c + ch];
    }
}

void wg_cpu_maxpool_backward(void *ctx, const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy,
                             wg_tensor *dx)
{
    (void)ctx;
    int64_t nblk = (g->c + WG_MAXPOOL_CBLOCK - 1) / WG_MAXPOOL_CBLOCK, tasks = g->n * nblk;
#pragma omp parallel if (g->n * g->h * g->w * g->c >= WG_PAR_MIN)
    {
        int64_t *idx = malloc((size_t)g->ow * WG_MAXPOOL_CBLOCK * sizeof *idx);
        WG_ASSERT(idx != NULL, "max pool backward: out of memory");
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t b = t / nblk, c0 = (t % nblk) * WG_MAXPOOL_CBLOCK,
                    c1 = c0 + WG_MAXPOOL_CBLOCK < g->c ? c0 + WG_MAXPOOL_CBLOCK : g->c;
            if (dx->dtype == WG_F32) mp_f32_backward_task(g, x, dy->data, dx->data, b, c0, c1, idx);
            else mp_int_backward_task(g, x, dy, dx->data, b, c0, c1, idx);
        }
        free(idx);
    }
}

void wg_maxpool_int_backward(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy, wg_tensor *dx)
{
    check_maxpool(g, x, dy, "the output error");
    check_nhwc(dx, g->n, g->h, g->w, g->c, "the input error");
    WG_ASSERT(wg_dtype_is_int(x->dtype) && wg_dtype_is_int(dy->dtype) && dx->dtype == WG_I64,
              "max pool backward: integer input (%s) and output error (%s), int64 input error (%s)",
              wg_dtype_name(x->dtype), wg_dtype_name(dy->dtype), wg_dtype_name(dx->dtype));
    WG_BACKEND_OP(x, maxpool_backward)(x->backend->ctx, g, x, dy, dx);
    dx->exp = dy->exp;
}

void wg_maxpool_f32_backward(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy, wg_tensor *dx)
{
    check_maxpool(g, x, dy, "the output error");
    check_nhwc(dx, g->n, g->h, g->w, g->c, "the input error");
    WG_ASSERT(x->dtype == WG_F32 && dy->dtype == WG_F32 && dx->dtype == WG_F32,
              "max pool f32 backward: float32 tensors (%s, %s, %s)", wg_dtype_name(x->dtype),
              wg_dtype_name(dy->dtype), wg_dtype_name(dx->dtype));
    WG_BACKEND_OP(x, maxpool_backward)(x->backend->ctx, g, x, dy, dx);
}
