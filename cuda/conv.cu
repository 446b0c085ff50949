/* conv.cu: the int8 forward convolution on the GPU (see conv.cuh). The GEMM is exact
 * (int32 sums of int8 products, no rounding), and the padded columns are zeros, so y is
 * the CPU backend's (conv.c) bit for bit. */
#include "check.h"
#include "conv.cuh"
#include "cuda_check.cuh"
#include "gemm.cuh"
#include "im2col.cuh"
#include "launch.cuh"
#include "wg_dtype.h"

static int64_t round4(int64_t n) { return (n + 3) / 4 * 4; }

/* Columns of the padded im2col matrix: kdim rounded up to a multiple of 4. */
static int64_t padded_kdim(const wg_conv_geom *g) { return round4(g->kdim); }

static bool direct(const wg_conv_geom *g) /* x is the GEMM's A as it is */
{
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0 && padded_kdim(g) == g->kdim;
}

/* Output channels rounded up to a multiple of 4 (the FC's 10 classes become 12): C's
 * leading dimension and backward-data's K must be. */
static int64_t padded_o(const wg_conv_geom *g) { return round4(g->o); }

size_t wg_conv_s8_forward_scratch(const wg_conv_geom *g)
{
    int64_t kp = padded_kdim(g), op = padded_o(g);
    size_t col = direct(g) ? 0 : wg_round256((size_t)(g->rows * kp));
    size_t filt = kp == g->kdim && op == g->o ? 0 : wg_round256((size_t)(op * kp));
    size_t out = op == g->o ? 0 : wg_round256((size_t)(g->rows * op) * sizeof(int32_t));
    return col + filt + out;
}

/* dst (dst_rows x ld) = src (rows x cols, rows packed) with zeros around it: the
 * filters' columns padded to kp, their rows to a multiple of 4, an error's columns alike. */
__global__ void pad_kernel(const int8_t *src, int64_t rows, int64_t cols, int8_t *dst, int64_t dst_rows, int64_t ld)
{
    WG_GRID_STRIDE_LOOP(t, dst_rows * ld)
    {
        int64_t r = t / ld, k = t % ld;
        dst[t] = r < rows && k < cols ? src[r * cols + k] : 0;
    }
}

static void pad(const int8_t *src, int64_t rows, int64_t cols, int8_t *dst, int64_t dst_rows, int64_t ld,
                cudaStream_t stream)
{
    pad_kernel<<<wg_grid_for(dst_rows * ld), WG_CUDA_BLOCK, 0, stream>>>(src, rows, cols, dst, dst_rows, ld);
    WG_CUDA_CHECK_LAUNCH("pad_kernel");
}

/* y (rows x o) = the first o columns of yp (rows x op). */
__global__ void unpad_s32_kernel(const int32_t *yp, int64_t rows, int64_t o, int64_t op, int32_t *y)
{
    WG_GRID_STRIDE_LOOP(t, rows * o) { y[t] = yp[(t / o) * op + t % o]; }
}

void wg_conv_s8_forward_cuda(const wg_conv_geom *g, const int8_t *x, const int8_t *w, int32_t *y, void *scratch,
                             cublasLtHandle_t lt, void *workspace, size_t workspace_bytes, cudaStream_t stream)
{
    int64_t kp = padded_kdim(g);
    const int8_t *a = x, *f = w;
    char *s = (char *)scratch;
    if (!direct(g)) {
        int8_t *col = (int8_t *)s;
        im2col_kernel<int8_t><<<wg_grid_for(g->rows * kp), WG_CUDA_BLOCK, 0, stream>>>(x, col, *g, kp);
        WG_CUDA_CHECK_LAUNCH("im2col_kernel");
        a = col;
        s += wg_round256((size_t)(g->rows * kp));
    }
    int64_t op = padded_o(g);
    if (kp != g->kdim || op != g->o) {
        int8_t *wp = (int8_t *)s;
        pad(w, g->o, g->kdim, wp, op, kp, stream);
        f = wp;
        s += wg_round256((size_t)(op * kp));
    }
    if (op == g->o) {
        wg_gemm_s8_nt_cuda(lt, workspace, workspace_bytes, g->rows, g->o, kp, a, kp, f, kp, y, g->o, stream);
        return;
    }
    int32_t *yp = (int32_t *)s; /* the padded channels' columns, then the first o of them */
    wg_gemm_s8_nt_cuda(lt, workspace, workspace_bytes, g->rows, op, kp, a, kp, f, kp, yp, op, stream);
    unpad_s32_kernel<<<wg_grid_for(g->rows * g->o), WG_CUDA_BLOCK, 0, stream>>>(yp, g->rows, g->o, op, y);
    WG_CUDA_CHECK_LAUNCH("unpad_s32_kernel");
}

/* ---- backward ---------------------------------------------------------------------- */

/* Rows of the weight gradient's GEMMs per call: int32 sums of at most 2^16 products of
 * int8 (each below 2^14 in magnitude) stay below 2^30, so each chunk is exact in int32
 * and the chunks are added in int64. A multiple of 16 (the operands' alignment). */
#define WG_DW_ROWS_PER_GEMM 65536

/* The scratch's pieces: W^T padded (kp x op), the parts' products (rows x kp int32
 * each), the parts' columns padded to op where o is not a multiple of 4 (rows x op each),
 * im2col (rows x kp), its transpose (kp x rp), the parts' transposes (o x rp each), one
 * chunk's weight gradient (o x kp int32). */
typedef struct bwd_scratch {
    int8_t *wt, *col, *colt, *et[2], *ep[2];
    int32_t *dcol[2], *dwc;
} bwd_scratch;

static bwd_scratch bwd_layout(const wg_conv_geom *g, int nparts, void *base, size_t *bytes)
{
    int64_t kp = padded_kdim(g), rp = round4(g->rows), op = padded_o(g);
    size_t two = nparts > 1, epad = op != g->o;
    size_t sz[11] = {wg_round256((size_t)(kp * op)),
                     wg_round256((size_t)(g->rows * kp) * 4),
                     two * wg_round256((size_t)(g->rows * kp) * 4),
                     epad * wg_round256((size_t)(g->rows * op)),
                     two * epad * wg_round256((size_t)(g->rows * op)),
                     wg_round256((size_t)(g->rows * kp)),
                     wg_round256((size_t)(kp * rp)),
                     wg_round256((size_t)(g->o * rp)),
                     two * wg_round256((size_t)(g->o * rp)),
                     wg_round256((size_t)(g->o * kp) * 4),
                     0};
    char *p = (char *)base;
    bwd_scratch s;
    s.wt = (int8_t *)p, p += sz[0];
    s.dcol[0] = (int32_t *)p, p += sz[1];
    s.dcol[1] = (int32_t *)p, p += sz[2];
    s.ep[0] = (int8_t *)p, p += sz[3];
    s.ep[1] = (int8_t *)p, p += sz[4];
    s.col = (int8_t *)p, p += sz[5];
    s.colt = (int8_t *)p, p += sz[6];
    s.et[0] = (int8_t *)p, p += sz[7];
    s.et[1] = (int8_t *)p, p += sz[8];
    s.dwc = (int32_t *)p, p += sz[9];
    *bytes = (size_t)(p - (char *)base);
    return s;
}

size_t wg_conv_s8_backward_scratch(const wg_conv_geom *g, int nparts)
{
    size_t bytes;
    bwd_layout(g, nparts, NULL, &bytes);
    return bytes;
}

/* dst[j][i] = src[i][j] for i < rows, j < cols (src rows ld_src apart); dst is dst_rows x
 * ld_dst, zero where i >= rows (the padding) for i < ld_dst. */
__global__ void transpose_s8_kernel(const int8_t *src, int64_t rows, int64_t cols, int64_t ld_src, int8_t *dst,
                                    int64_t dst_rows, int64_t ld_dst)
{
    WG_GRID_STRIDE_LOOP(t, dst_rows * ld_dst)
    {
        int64_t j = t / ld_dst, i = t % ld_dst;
        dst[t] = i < rows && j < cols ? src[i * ld_src + j] : 0;
    }
}

static void transpose_s8(const int8_t *src, int64_t rows, int64_t cols, int64_t ld_src, int8_t *dst,
                         int64_t dst_rows, int64_t ld_dst, cudaStream_t stream)
{
    transpose_s8_kernel<<<wg_grid_for(dst_rows * ld_dst), WG_CUDA_BLOCK, 0, stream>>>(src, rows, cols, ld_src, dst,
                                                                                      dst_rows, ld_dst);
    WG_CUDA_CHECK_LAUNCH("transpose_s8_kernel");
}

/* dx at input element t = (n, iy, ix, ch): the sum over the kernel windows that cover
 * it of the parts' products dcol_p[r][(i, j, ch)], part p shifted up by shift_p. Each
 * element gathers its own terms: no atomics, and the int64 sum is exact. */
__global__ void col2im_kernel(const int32_t *d0, const int32_t *d1, int s0, int s1, wg_conv_geom g, int64_t kp,
                              void *dx, wg_dtype t_dx)
{
    WG_GRID_STRIDE_LOOP(t, g.n * g.h * g.w * g.c)
    {
        int64_t sum = 0;
        col2im_terms(g, t, [&](int64_t r, int64_t k) {
            sum += (int64_t)d0[r * kp + k] * ((int64_t)1 << s0);
            if (d1 != NULL) sum += (int64_t)d1[r * kp + k] * ((int64_t)1 << s1);
        });
        wg_store_i64(dx, t_dx, t, sum);
    }
}

/* dw[o][k] += dwc[o][k] 2^shift for k < kdim (dwc: o x kp). */
__global__ void dw_add_kernel(int64_t *dw, const int32_t *dwc, int64_t o, int64_t kdim, int64_t kp, int shift)
{
    WG_GRID_STRIDE_LOOP(t, o * kdim)
    {
        int64_t oo = t / kdim, k = t % kdim;
        dw[t] += (int64_t)dwc[oo * kp + k] * ((int64_t)1 << shift);
    }
}

void wg_conv_s8_backward_cuda(const wg_conv_geom *g, const int8_t *x, const int8_t *w, const int8_t *const *err,
                              const int *shift, int nparts, void *dx, wg_dtype t_dx, int64_t *dw, void *scratch,
                              cublasLtHandle_t lt, void *workspace, size_t workspace_bytes, cudaStream_t stream)
{
    int64_t kp = padded_kdim(g), rp = round4(g->rows), op = padded_o(g);
    size_t bytes;
    bwd_scratch s = bwd_layout(g, nparts, scratch, &bytes);
    if (dx != NULL) { /* backward-data: E_p W per part (K = O, padded to op), then col2im */
        transpose_s8(w, g->o, g->kdim, g->kdim, s.wt, kp, op, stream); /* W^T, kp x op */
        for (int p = 0; p < nparts; p++) {
            const int8_t *e = err[p];
            if (op != g->o) {
                pad(err[p], g->rows, g->o, s.ep[p], g->rows, op, stream);
                e = s.ep[p];
            }
            wg_gemm_s8_nt_cuda(lt, workspace, workspace_bytes, g->rows, kp, op, e, op, s.wt, op, s.dcol[p], kp,
                               stream);
        }
        col2im_kernel<<<wg_grid_for(g->n * g->h * g->w * g->c), WG_CUDA_BLOCK, 0, stream>>>(
            s.dcol[0], nparts > 1 ? s.dcol[1] : NULL, shift[0], nparts > 1 ? shift[1] : 0, *g, kp, dx, t_dx);
        WG_CUDA_CHECK_LAUNCH("col2im_kernel");
    }
    if (dw == NULL) return; /* the implicit-GEMM kernel takes it */
    /* backward-weight: E_p^T col, K = the rows, in chunks exact in int32 */
    im2col_kernel<int8_t><<<wg_grid_for(g->rows * kp), WG_CUDA_BLOCK, 0, stream>>>(x, s.col, *g, kp);
    WG_CUDA_CHECK_LAUNCH("im2col_kernel");
    transpose_s8(s.col, g->rows, kp, kp, s.colt, kp, rp, stream);
    for (int p = 0; p < nparts; p++) transpose_s8(err[p], g->rows, g->o, g->o, s.et[p], g->o, rp, stream);
    WG_CUDA_CHECK(cudaMemsetAsync(dw, 0, (size_t)(g->o * g->kdim) * sizeof(*dw), stream));
    for (int64_t r0 = 0; r0 < rp; r0 += WG_DW_ROWS_PER_GEMM) {
        int64_t kc = rp - r0 < WG_DW_ROWS_PER_GEMM ? rp - r0 : WG_DW_ROWS_PER_GEMM;
        for (int p = 0; p < nparts; p++) {
            wg_gemm_s8_nt_cuda(lt, workspace, workspace_bytes, g->o, kp, kc, s.et[p] + r0, rp, s.colt + r0, rp, s.dwc,
                               kp, stream);
            dw_add_kernel<<<wg_grid_for(g->o * g->kdim), WG_CUDA_BLOCK, 0, stream>>>(dw, s.dwc, g->o, g->kdim, kp,
                                                                                     shift[p]);
            WG_CUDA_CHECK_LAUNCH("dw_add_kernel");
        }
    }
}
