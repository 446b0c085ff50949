/* conv_igemm.cu: the int8 convolutions as implicit GEMMs on the tensor cores (see
 * conv_igemm.cuh; the GEMM each pass is and where its pieces lie: wg_conv_igemm.h; the
 * kernel: igemm.cuh). Every sum is exact, so the results are the CPU backend's bits,
 * whatever the tiles, the split of K or the order of the atomics. */
#include <cudaTypedefs.h>
#include <stdio.h>

#include "check.h"
#include "conv_igemm.cuh"
#include "conv_igemm_ops.cuh"
#include "igemm_wgmma.cuh"
#include "cuda_check.cuh"
#include "gemm.h"
#include "launch.cuh"

bool wg_conv_igemm_aligned(const void *p) { return ((uintptr_t)p & 15) == 0; }

bool wg_conv_igemm_forward_ok(const wg_conv_geom *g) { return wg_igemm_forward_ok(g); }

bool wg_conv_igemm_backward_data_ok(const wg_conv_geom *g)
{
    return wg_igemm_backward_data_ok(g) && g->kh * g->kw * g->o <= WG_GEMM_S8_MAX_K;
}

bool wg_conv_igemm_backward_weight_ok(const wg_conv_geom *g) { return wg_igemm_backward_weight_ok(g); }

/* The grid of an op: tiles of C (IG_BM x bn), and blockIdx.z over K. */
static dim3 ig_grid(int64_t M, int64_t N, int64_t K, int64_t k_split, int bn)
{
    int64_t z = (K + k_split - 1) / k_split;
    WG_ASSERT((M + IG_BM - 1) / IG_BM < INT32_MAX && (N + bn - 1) / bn <= 65535 && z <= 65535,
              "implicit GEMM %lld x %lld x %lld: grid too large", (long long)M, (long long)N, (long long)K);
    return dim3((unsigned)((M + IG_BM - 1) / IG_BM), (unsigned)((N + bn - 1) / bn), (unsigned)(z > 0 ? z : 1));
}

/* cuTensorMapEncodeTiled, from the driver through the runtime (no link to libcuda). */
static PFN_cuTensorMapEncodeTiled_v12000 igw_encoder(void)
{
    static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
    if (fn == NULL) {
        void *p = NULL;
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        WG_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q));
        WG_ASSERT(q == cudaDriverEntryPointSuccess && p != NULL, "the CUDA driver has no cuTensorMapEncodeTiled");
        fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    }
    return fn;
}

/* igw_kernel's tensor map of B: [rows][k] bytes, rows k apart, boxes of 32 bytes x
 * box_rows written in the 32-byte swizzle, zeros outside (igemm_wgmma.cuh). */
static CUresult igw_encode_b(CUtensorMap *map, const int8_t *b, int64_t rows, int64_t k, int box_rows)
{
    cuuint64_t dim[2] = {(cuuint64_t)k, (cuuint64_t)rows}, stride[1] = {(cuuint64_t)k};
    cuuint32_t box[2] = {IG_BK, (cuuint32_t)box_rows}, elem[2] = {1, 1};
    return igw_encoder()(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, (void *)b, dim, stride, box, elem,
                         CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_32B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                         CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

bool wg_conv_wgmma_available(int device)
{
#if defined(WG_HAVE_SM90A)
    int major = 0, minor = 0;
    WG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    WG_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    if (major != 9 || minor != 0) return false; /* sm_90a code runs on 9.0 alone */
    CUtensorMap probe; /* a map like the layers' (the address is not read) */
    CUresult r = igw_encode_b(&probe, (const int8_t *)(uintptr_t)4096, 256, 576, 128);
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "wageubn: warning: cuTensorMapEncodeTiled failed (CUresult %d): the wgmma convolutions are off\n",
                (int)r);
        return false;
    }
    return true;
#else
    (void)device;
    return false;
#endif
}

/* The op on ig_kernel (mma.sync) or, with wgmma, on igw_kernel (only the K-major ops
 * have that form: igemm_wgmma.cuh), with B's tensor map. */
template <class Op>
static void ig_launch(const Op &op, bool wgmma, const char *name, cudaStream_t stream)
{
    if (op.M <= 0 || op.N <= 0) return;
    if constexpr (Op::A_KMAJOR && Op::B_KMAJOR) {
        if (wgmma) {
            WG_ASSERT(op.k_split == op.K, "%s: the tensor map's columns are K's", name);
            CUtensorMap bmap;
            CUresult r = igw_encode_b(&bmap, op.b(), op.N, op.K, igw_bn<Op>());
            if (r != CUDA_SUCCESS)
                wg_die(__FILE__, __LINE__, "cuTensorMapEncodeTiled of %s's B (%lld x %lld) failed: CUresult %d", name,
                       (long long)op.N, (long long)op.K, (int)r);
            dim3 grid = ig_grid(op.M, op.N, op.K, op.k_split, igw_bn<Op>());
            igw_kernel<Op><<<grid, IG_THREADS, igw_smem_bytes<Op>(), stream>>>(op, bmap);
            WG_CUDA_CHECK_LAUNCH(name);
            return;
        }
    }
    WG_ASSERT(!wgmma, "%s has no wgmma form", name);
    ig_kernel<Op><<<ig_grid(op.M, op.N, op.K, op.k_split, IG_BN), IG_THREADS, ig_smem_bytes<Op>(), stream>>>(op);
    WG_CUDA_CHECK_LAUNCH(name);
}

uint64_t wg_conv_s8_forward_igemm(const wg_conv_geom *g, const int8_t *x, const int8_t *w, int32_t *y, bool wgmma,
                                  unsigned long long *d_max, cudaStream_t stream)
{
    WG_ASSERT(wg_conv_igemm_forward_ok(g), "implicit-GEMM forward of %lld channels", (long long)g->c);
    ig_fwd_op op = {*g, g->rows, g->o, g->kdim, g->kdim, x, w, y, d_max};
    wg_max_reset(d_max, stream);
    ig_launch(op, wgmma, wgmma ? "igw_kernel<forward>" : "ig_kernel<forward>", stream);
    return wg_max_read(d_max, stream);
}

/* wt[ch][i][j][o] = w[o][i][j][ch]: backward-data's B, rows along K. */
__global__ void igemm_wt_kernel(const int8_t *w, int8_t *wt, wg_conv_geom g)
{
    WG_GRID_STRIDE_LOOP(t, g.o * g.kdim) { wt[t] = w[wg_igemm_wt_source(&g, t)]; }
}

size_t wg_conv_igemm_backward_scratch(const wg_conv_geom *g) { return wg_round256((size_t)(g->o * g->kdim)); }

uint64_t wg_conv_s8_backward_data_igemm(const wg_conv_geom *g, const int8_t *w, const int8_t *const *err,
                                        const int *shift, int nparts, void *dx, wg_dtype t_dx, bool wgmma,
                                        void *scratch, unsigned long long *d_max, cudaStream_t stream)
{
    const char *name = wgmma ? "igw_kernel<backward-data>" : "ig_kernel<backward-data>";
    WG_ASSERT(wg_conv_igemm_backward_data_ok(g) && nparts >= 1 && nparts <= 2,
              "implicit-GEMM backward-data of %lld output channels, %d parts", (long long)g->o, nparts);
    int8_t *wt = (int8_t *)scratch;
    igemm_wt_kernel<<<wg_grid_for(g->o * g->kdim), WG_CUDA_BLOCK, 0, stream>>>(w, wt, *g);
    WG_CUDA_CHECK_LAUNCH("igemm_wt_kernel");
    int64_t M = g->n * g->h * g->w, K = g->kh * g->kw * g->o;
    wg_max_reset(d_max, stream);
    if (nparts == 1) {
        ig_bwd_data_op<1> op = {*g, M, g->c, K, K, {err[0], err[0]}, wt, {shift[0], 0}, dx, t_dx, d_max};
        ig_launch(op, wgmma, name, stream);
    } else {
        ig_bwd_data_op<2> op = {*g, M, g->c, K, K, {err[0], err[1]}, wt, {shift[0], shift[1]}, dx, t_dx, d_max};
        ig_launch(op, wgmma, name, stream);
    }
    return wg_max_read(d_max, stream);
}

void wg_conv_s8_backward_weight_igemm(const wg_conv_geom *g, const int8_t *x, const int8_t *const *err,
                                      const int *shift, int nparts, int64_t *dw, cudaStream_t stream)
{
    WG_ASSERT(wg_conv_igemm_backward_weight_ok(g) && nparts >= 1 && nparts <= 2,
              "implicit-GEMM backward-weight of %lld and %lld channels, %d parts", (long long)g->c, (long long)g->o,
              nparts);
    WG_CUDA_CHECK(cudaMemsetAsync(dw, 0, (size_t)(g->o * g->kdim) * sizeof(*dw), stream));
    int64_t split = ig_dw_split(g);
    if (nparts == 1) {
        ig_bwd_weight_op<1> op = {*g, g->o, g->kdim, g->rows, split, {err[0], err[0]}, x, {shift[0], 0}, dw};
        ig_launch(op, false, "ig_kernel<backward-weight>", stream);
    } else {
        ig_bwd_weight_op<2> op = {*g, g->o, g->kdim, g->rows, split, {err[0], err[1]}, x, {shift[0], shift[1]}, dw};
        ig_launch(op, false, "ig_kernel<backward-weight>", stream);
    }
}
