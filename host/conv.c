/* conv.c: convolution by im2col + GEMM, int8 and float32 (see conv.h): the geometry,
 * the workspace, the int8 forward pass and the float32 passes. im2col and col2im are in
 * conv_im2col.c, the int8 backward passes in conv_bwd.c; conv_impl.h declares what the
 * three share, with the dimension legend and how the int8 passes go block by block. */
#include "conv_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_ops.h"
#include "check.h"
#include "wg_par.h"
#include "gemm.h"
#include "quant.h"

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

void *conv_ws_reserve(wg_conv_ws *ws, size_t nbytes)
{
    if (nbytes > ws->cap) {
        free(ws->buf);
        ws->buf = aligned_alloc(64, (nbytes + 63) / 64 * 64);
        WG_ASSERT(ws->buf != NULL, "out of memory for %zu bytes of convolution workspace", nbytes);
        ws->cap = nbytes;
    }
    return ws->buf;
}

void conv_check_geom(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_dtype xt, wg_dtype wt)
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
        conv_ws_reserve(ws, extra);
        return x->data;
    }
    void *col = conv_ws_reserve(ws, col_bytes(g, esz) + extra);
    conv_im2col(g, x->data, col, esz);
    return col;
}

/* ---- int8 ------------------------------------------------------------------------ */

/* Blocks whose column matrices (bytes_per_image each image) fill about
 * WG_CONV_BLOCK_BYTES, and at least 4 per thread where the images allow, so that a
 * thread the system delays is made up for. */
img_blocks conv_img_blocks_of(const wg_conv_geom *g, size_t bytes_per_image)
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
 * forward GEMM. padded: conv_padded_alloc's buffer. */
void conv_forward_block(const wg_conv_geom *g, const int8_t *x, const int8_t *w, int64_t img0, int64_t nimg,
                        int8_t *col, char *padded, int32_t *y)
{
    const int8_t *a = x + img0 * g->h * g->w * g->c;
    /* stride 1: straight from the images where the kernels can (AMX), no im2col */
    if (g->stride == 1 && !is_pointwise(g) &&
        wg_gemm_s8_conv_s1(nimg, g->h, g->w, g->c, g->o, g->kh, g->kw, g->pad, a, w, y))
        return;
    if (!is_pointwise(g)) {
        conv_im2col_images(g, x, img0, nimg, col, 1, padded);
        a = col;
    }
    wg_gemm_s8_nt(nimg * g->oh * g->ow, g->o, g->kdim, a, g->kdim, w, g->kdim, y, g->o);
}

/* Bytes of the im2col matrix of a block of images (0 when pointwise). */
size_t conv_forward_col_bytes(const wg_conv_geom *g, int64_t images)
{
    return is_pointwise(g) ? 0 : round64((size_t)(images * g->oh * g->ow * g->kdim));
}

/* max |y[i]| for i < n, in 32-bit lanes (|INT32_MIN| = 2^31 fits uint32). */
static uint64_t max_abs_s32(const int32_t *y, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t a = y[i] < 0 ? 0u - (uint32_t)y[i] : (uint32_t)y[i];
        m = a > m ? a : m;
    }
    return m;
}

uint64_t wg_conv_s8_forward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y,
                            wg_conv_ws *ws)
{
    conv_check_geom(g, x, w, WG_I8, WG_I8);
    WG_ASSERT(y->dtype == WG_I32 && wg_tensor_numel(y) == g->rows * g->o, "convolution output");
    WG_ASSERT(g->kdim <= WG_GEMM_S8_MAX_K, "a dot product of %lld int8 products can overflow int32",
              (long long)g->kdim);
    y->exp = x->exp + w->exp;
    return wg_backend_sync_max(x->backend, WG_BACKEND_OP(x, conv_s8_forward)(x->backend->ctx, g, x, w, y, ws));
}

/* The CPU backend's forward convolution (backend.h's conv_s8_forward). */
uint64_t wg_cpu_conv_s8_forward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y,
                                wg_conv_ws *ws)
{
    (void)ctx;
    if (is_pointwise(g)) { /* x is the im2col matrix: one GEMM, threaded itself */
        wg_gemm_s8_nt(g->rows, g->o, g->kdim, x->data, g->kdim, w->data, g->kdim, y->data, g->o);
        return WG_QUANT_MAX_UNKNOWN;
    }
    /* Workspace: one block's im2col matrix per thread. */
    int64_t per_image = g->oh * g->ow;
    img_blocks b = conv_img_blocks_of(g, (size_t)(per_image * g->kdim));
    size_t per_thread = conv_forward_col_bytes(g, b.per_block);
    char *buf = conv_ws_reserve(ws, per_thread * (size_t)b.threads);
    uint64_t ymax = 0;
#pragma omp parallel num_threads(b.threads) if (b.threads > 1) reduction(max : ymax)
    {
        int8_t *col = (int8_t *)(buf + per_thread * (size_t)thread_num());
        char *padded = conv_padded_alloc(g, 1);
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < b.count; blk++) {
            int64_t img0 = blk * b.per_block, nimg = g->n - img0 < b.per_block ? g->n - img0 : b.per_block;
            int32_t *yb = (int32_t *)y->data + img0 * per_image * g->o;
            conv_forward_block(g, x->data, w->data, img0, nimg, col, padded, yb);
            uint64_t m = max_abs_s32(yb, nimg * per_image * g->o); /* the block is in cache */
            ymax = m > ymax ? m : ymax;
        }
        free(padded);
    }
    return ymax;
}

/* ---- float32 ------------------------------------------------------------------- */

void wg_conv_f32_forward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y, wg_conv_ws *ws)
{
    conv_check_geom(g, x, w, WG_F32, WG_F32);
    WG_ASSERT(y->dtype == WG_F32 && wg_tensor_numel(y) == g->rows * g->o, "convolution output");
    WG_BACKEND_OP(x, conv_f32_forward)(x->backend->ctx, g, x, w, y, ws);
}

void wg_conv_f32_backward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, const wg_tensor *dy,
                          wg_tensor *dx, wg_tensor *dw, wg_conv_ws *ws)
{
    conv_check_geom(g, x, w, WG_F32, WG_F32);
    WG_ASSERT(dy->dtype == WG_F32 && wg_tensor_numel(dy) == g->rows * g->o, "convolution dy");
    WG_ASSERT(dx == NULL || (dx->dtype == WG_F32 && wg_tensor_numel(dx) == wg_tensor_numel(x)), "convolution dx");
    WG_ASSERT(dw->dtype == WG_F32 && wg_tensor_numel(dw) == wg_tensor_numel(w), "convolution dw");
    WG_BACKEND_OP(x, conv_f32_backward)(x->backend->ctx, g, x, w, dy, dx, dw, ws);
}

/* The CPU backend's float convolutions (backend.h's conv_f32_forward and
 * conv_f32_backward). */
void wg_cpu_conv_f32_forward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y,
                             wg_conv_ws *ws)
{
    (void)ctx;
    size_t cb = col_bytes(g, sizeof(float));
    const float *col = im2col_of(g, x, ws, sizeof(float), (size_t)g->kdim * (size_t)g->o * sizeof(float));
    float *wt = (float *)((char *)ws->buf + cb), *wsrc = w->data; /* W^T [kdim][o] */
    for (int64_t o = 0; o < g->o; o++)
        for (int64_t k = 0; k < g->kdim; k++) wt[k * g->o + o] = wsrc[o * g->kdim + k];
    memset(y->data, 0, wg_tensor_nbytes(y));
    wg_gemm_f32_nn(g->rows, g->o, g->kdim, col, g->kdim, wt, g->o, y->data, g->o);
}

void wg_cpu_conv_f32_backward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                              const wg_tensor *dy, wg_tensor *dx, wg_tensor *dw, wg_conv_ws *ws)
{
    (void)ctx;
    size_t cb = col_bytes(g, sizeof(float));
    const float *col = im2col_of(g, x, ws, sizeof(float), (size_t)g->rows * (size_t)g->kdim * sizeof(float));
    float *dcol = (float *)((char *)ws->buf + cb);
    if (dx != NULL) {
        memset(dx->data, 0, wg_tensor_nbytes(dx));
        if (is_pointwise(g)) {
            wg_gemm_f32_nn(g->rows, g->kdim, g->o, dy->data, g->o, w->data, g->kdim, dx->data, g->kdim);
        } else {
            memset(dcol, 0, (size_t)g->rows * (size_t)g->kdim * sizeof(float));
            wg_gemm_f32_nn(g->rows, g->kdim, g->o, dy->data, g->o, w->data, g->kdim, dcol, g->kdim);
            conv_col2im_add_f32(g, dcol, dx->data);
        }
    }
    memset(dw->data, 0, wg_tensor_nbytes(dw));
    wg_gemm_f32_tn(g->o, g->kdim, g->rows, dy->data, g->o, col, g->kdim, dw->data, g->kdim);
}
