/* conv_f32.cu: the float convolutions of the fp32 mode on the GPU (see conv.cuh): im2col
 * (im2col.cuh), cuBLASLt's SGEMM (gemm.cuh, no TF32) and a gathering col2im, as the
 * CPU's conv.c does them with its own GEMM. Sums of products in another order: close
 * to the CPU's, not its bits. */
#include "check.h"
#include "conv.cuh"
#include "cuda_check.cuh"
#include "gemm.cuh"
#include "im2col.cuh"
#include "launch.cuh"

/* x is the GEMM's operand as it is: [rows][c] with c = kdim. */
static bool pointwise(const wg_conv_geom *g) { return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0; }

static size_t col_bytes(const wg_conv_geom *g)
{
    return pointwise(g) ? 0 : wg_round256((size_t)(g->rows * g->kdim) * sizeof(float));
}

size_t wg_conv_f32_scratch(const wg_conv_geom *g) { return 2 * col_bytes(g); }

/* The im2col matrix of x: x itself, or built at col. */
static const float *im2col_f32(const wg_conv_geom *g, const float *x, float *col, cudaStream_t stream)
{
    if (pointwise(g)) return x;
    im2col_kernel<float><<<wg_grid_for(g->rows * g->kdim), WG_CUDA_BLOCK, 0, stream>>>(x, col, *g, g->kdim);
    WG_CUDA_CHECK_LAUNCH("im2col_kernel");
    return col;
}

void wg_conv_f32_forward_cuda(const wg_conv_geom *g, const float *x, const float *w, float *y, void *scratch,
                              const wg_gemm_ctx *gc, cudaStream_t stream)
{
    const float *a = im2col_f32(g, x, (float *)scratch, stream);
    /* y = col W^T: W is [o][kdim] */
    wg_gemm_f32_cuda(gc->lt, gc->workspace, gc->workspace_bytes, false, true, g->rows, g->o, g->kdim, a, g->kdim, w,
                     g->kdim, y, g->o, stream);
}

/* dx at input element t = (n, iy, ix, ch): the sum over the windows that cover it of
 * dcol[r][(i, j, ch)], in (i, j) order; no atomics. */
__global__ void col2im_f32_kernel(const float *dcol, wg_conv_geom g, float *dx)
{
    WG_GRID_STRIDE_LOOP(t, g.n * g.h * g.w * g.c)
    {
        float sum = 0.0f;
        col2im_terms(g, t, [&](int64_t r, int64_t k) { sum += dcol[r * g.kdim + k]; });
        dx[t] = sum;
    }
}

void wg_conv_f32_backward_cuda(const wg_conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                               float *dw, void *scratch, const wg_gemm_ctx *gc, cudaStream_t stream)
{
    float *col = (float *)scratch, *dcol = (float *)((char *)scratch + col_bytes(g));
    if (dx != NULL) { /* dcol = dy W, then col2im (a pointwise layer's dcol is dx) */
        float *d = pointwise(g) ? dx : dcol;
        wg_gemm_f32_cuda(gc->lt, gc->workspace, gc->workspace_bytes, false, false, g->rows, g->kdim, g->o, dy, g->o,
                         w, g->kdim, d, g->kdim, stream);
        if (!pointwise(g)) {
            col2im_f32_kernel<<<wg_grid_for(g->n * g->h * g->w * g->c), WG_CUDA_BLOCK, 0, stream>>>(dcol, *g, dx);
            WG_CUDA_CHECK_LAUNCH("col2im_f32_kernel");
        }
    }
    /* dw = dy^T col */
    const float *a = im2col_f32(g, x, col, stream);
    wg_gemm_f32_cuda(gc->lt, gc->workspace, gc->workspace_bytes, true, false, g->o, g->kdim, g->rows, dy, g->o, a,
                     g->kdim, dw, g->kdim, stream);
}
