/* conv.cu: the int8 forward convolution on the GPU (see conv.cuh). The GEMM is exact
 * (int32 sums of int8 products, no rounding), and the padded columns are zeros, so y is
 * the CPU backend's (conv.c) bit for bit. */
#include "check.h"
#include "conv.cuh"
#include "cuda_check.cuh"
#include "gemm.cuh"
#include "launch.cuh"

/* Columns of the padded im2col matrix: kdim rounded up to a multiple of 4. */
static int64_t padded_kdim(const wg_conv_geom *g) { return (g->kdim + 3) / 4 * 4; }

static bool direct(const wg_conv_geom *g) /* x is the GEMM's A as it is */
{
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0 && padded_kdim(g) == g->kdim;
}

static size_t round256(size_t n) { return (n + 255) / 256 * 256; }

size_t wg_conv_s8_forward_scratch(const wg_conv_geom *g)
{
    int64_t kp = padded_kdim(g);
    size_t col = direct(g) ? 0 : round256((size_t)(g->rows * kp));
    size_t filt = kp == g->kdim ? 0 : round256((size_t)(g->o * kp));
    return col + filt;
}

/* col[r][k] for the output pixel r = (n, oy, ox) and the column k = (i, j, ch) of the
 * kernel window (k < kdim; zero past it and in the padding). */
__global__ void im2col_kernel(const int8_t *x, int8_t *col, wg_conv_geom g, int64_t kp)
{
    WG_GRID_STRIDE_LOOP(t, g.rows * kp)
    {
        int64_t r = t / kp, k = t % kp;
        int8_t v = 0;
        if (k < g.kdim) {
            int64_t ch = k % g.c, j = (k / g.c) % g.kw, i = k / (g.c * g.kw);
            int64_t ox = r % g.ow, oy = (r / g.ow) % g.oh, n = r / (g.ow * g.oh);
            int64_t iy = oy * g.stride - g.pad + i, ix = ox * g.stride - g.pad + j;
            if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) v = x[((n * g.h + iy) * g.w + ix) * g.c + ch];
        }
        col[t] = v;
    }
}

/* The filters [O][kdim] padded to [O][kp] with zeros. */
__global__ void pad_filters_kernel(const int8_t *w, int8_t *wp, int64_t o, int64_t kdim, int64_t kp)
{
    WG_GRID_STRIDE_LOOP(t, o * kp)
    {
        int64_t k = t % kp;
        wp[t] = k < kdim ? w[(t / kp) * kdim + k] : 0;
    }
}

void wg_conv_s8_forward_cuda(const wg_conv_geom *g, const int8_t *x, const int8_t *w, int32_t *y, void *scratch,
                             cublasLtHandle_t lt, void *workspace, size_t workspace_bytes, cudaStream_t stream)
{
    int64_t kp = padded_kdim(g);
    const int8_t *a = x, *f = w;
    char *s = (char *)scratch;
    if (!direct(g)) {
        int8_t *col = (int8_t *)s;
        im2col_kernel<<<wg_grid_for(g->rows * kp), WG_CUDA_BLOCK, 0, stream>>>(x, col, *g, kp);
        WG_CUDA_CHECK_LAUNCH("im2col_kernel");
        a = col;
        s += round256((size_t)(g->rows * kp));
    }
    if (kp != g->kdim) {
        int8_t *wp = (int8_t *)s;
        pad_filters_kernel<<<wg_grid_for(g->o * kp), WG_CUDA_BLOCK, 0, stream>>>(w, wp, g->o, g->kdim, kp);
        WG_CUDA_CHECK_LAUNCH("pad_filters_kernel");
        f = wp;
    }
    wg_gemm_s8_nt_cuda(lt, workspace, workspace_bytes, g->rows, g->o, kp, a, kp, f, kp, y, g->o, stream);
}
