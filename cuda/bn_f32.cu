/* bn_f32.cu: float BN's passes on the GPU (see bn.cuh), for the fp32 mode; bn_f32.c
 * makes the per-channel decisions on the host.
 *
 * The per-channel sums are in double and deterministic: the rows are cut into a fixed
 * number of parts (WG_BN_F32_PARTS, not a function of the GPU), each block sums its part
 * in a fixed order and a second kernel adds the parts in order, so a run gives the same
 * bits every time. They differ from the CPU's sequential sums in the last bits of the
 * double, rarely of the float that follows. The elementwise passes spell out their
 * roundings (__fmul_rn and the like) so that nvcc fuses no multiply-add: they are the
 * CPU's formulas (bn_f32.c) operation for operation. */
#include "bn.cuh"
#include "check.h"
#include "cuda_check.cuh"
#include "launch.cuh"

#define WG_BN_F32_PARTS 256

/* The scratch: the parts' sums [PARTS][2][C], the two finished sums [2][C], two host
 * arrays brought over [2][C] (mean and inv, or the two means of the backward). */
typedef struct bn_f32_scratch {
    double *part, *sums, *consts;
} bn_f32_scratch;

static bn_f32_scratch bn_f32_layout(void *scratch, int64_t c)
{
    char *p = (char *)scratch;
    bn_f32_scratch s;
    s.part = (double *)p, p += wg_round256((size_t)WG_BN_F32_PARTS * 2 * (size_t)c * sizeof(double));
    s.sums = (double *)p, p += wg_round256(2 * (size_t)c * sizeof(double));
    s.consts = (double *)p;
    return s;
}

size_t wg_bn_f32_scratch(int64_t c)
{
    return wg_round256((size_t)WG_BN_F32_PARTS * 2 * (size_t)c * sizeof(double)) +
           2 * wg_round256(2 * (size_t)c * sizeof(double));
}

/* What a pass sums per channel, from a[k] and b[k] (k = row * C + ch). */
enum { SUM_X, SUM_DEV2, SUM_DY_DYH };

template <int WHAT>
static __device__ void chan_terms(const float *a, const float *b, const double *mean, int64_t k, int64_t ch, double *t1,
                                  double *t2)
{
    if (WHAT == SUM_X) {
        *t1 = a[k];
        *t2 = 0.0;
    } else if (WHAT == SUM_DEV2) {
        double d = __dsub_rn((double)a[k], mean[ch]);
        *t1 = __dmul_rn(d, d);
        *t2 = 0.0;
    } else {
        *t1 = a[k];
        *t2 = __dmul_rn((double)a[k], (double)b[k]);
    }
}

/* Block p sums the rows of its part: its threads take columns of channels (one tile of
 * up to blockDim channels at a time) and rows lane, lane + lanes, ...; the lanes' sums
 * then meet in shared memory in lane order. part[(p * 2 + j) * C + ch]. */
template <int WHAT>
__global__ void chan_part_kernel(const float *a, const float *b, const double *mean, int64_t m, int64_t c, double *part)
{
    __shared__ double sh[2][WG_CUDA_BLOCK];
    int64_t p = blockIdx.x, r0 = p * m / WG_BN_F32_PARTS, r1 = (p + 1) * m / WG_BN_F32_PARTS;
    for (int64_t c0 = 0; c0 < c; c0 += WG_CUDA_BLOCK) {
        int64_t ncols = c - c0 < WG_CUDA_BLOCK ? c - c0 : WG_CUDA_BLOCK, lanes = WG_CUDA_BLOCK / ncols;
        int64_t lane = threadIdx.x / ncols, ch = c0 + threadIdx.x % ncols;
        double s1 = 0.0, s2 = 0.0;
        if (lane < lanes)
            for (int64_t r = r0 + lane; r < r1; r += lanes) {
                double t1, t2;
                chan_terms<WHAT>(a, b, mean, r * c + ch, ch, &t1, &t2);
                s1 = __dadd_rn(s1, t1);
                s2 = __dadd_rn(s2, t2);
            }
        sh[0][threadIdx.x] = s1;
        sh[1][threadIdx.x] = s2;
        __syncthreads();
        if (threadIdx.x < ncols) {
            double u1 = 0.0, u2 = 0.0;
            for (int64_t l = 0; l < lanes; l++) {
                u1 = __dadd_rn(u1, sh[0][l * ncols + threadIdx.x]);
                u2 = __dadd_rn(u2, sh[1][l * ncols + threadIdx.x]);
            }
            part[(p * 2 + 0) * c + c0 + threadIdx.x] = u1;
            part[(p * 2 + 1) * c + c0 + threadIdx.x] = u2;
        }
        __syncthreads();
    }
}

/* sums[j * C + ch] = the parts' sums added in part order. */
__global__ void chan_finish_kernel(const double *part, int64_t c, double *sums)
{
    WG_GRID_STRIDE_LOOP(t, 2 * c)
    {
        int64_t j = t / c, ch = t % c;
        double s = 0.0;
        for (int p = 0; p < WG_BN_F32_PARTS; p++) s = __dadd_rn(s, part[(p * 2 + j) * c + ch]);
        sums[t] = s;
    }
}

/* The two per-channel sums of a pass into host arrays s1, s2 (s2 may be NULL); waits. */
template <int WHAT>
static void chan_sums(const float *a, const float *b, const double *d_mean, int64_t m, int64_t c, bn_f32_scratch s,
                      double *s1, double *s2, cudaStream_t stream)
{
    chan_part_kernel<WHAT><<<WG_BN_F32_PARTS, WG_CUDA_BLOCK, 0, stream>>>(a, b, d_mean, m, c, s.part);
    WG_CUDA_CHECK_LAUNCH("chan_part_kernel");
    chan_finish_kernel<<<wg_grid_for(2 * c), WG_CUDA_BLOCK, 0, stream>>>(s.part, c, s.sums);
    WG_CUDA_CHECK_LAUNCH("chan_finish_kernel");
    WG_CUDA_CHECK(cudaMemcpyAsync(s1, s.sums, (size_t)c * sizeof(double), cudaMemcpyDeviceToHost, stream));
    if (s2 != NULL)
        WG_CUDA_CHECK(cudaMemcpyAsync(s2, s.sums + c, (size_t)c * sizeof(double), cudaMemcpyDeviceToHost, stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(stream));
}

/* Two host arrays of C into the scratch's consts (the copy is made before it returns). */
static void put_consts(bn_f32_scratch s, const double *h0, const double *h1, int64_t c, cudaStream_t stream)
{
    WG_CUDA_CHECK(cudaMemcpyAsync(s.consts, h0, (size_t)c * sizeof(double), cudaMemcpyHostToDevice, stream));
    WG_CUDA_CHECK(cudaMemcpyAsync(s.consts + c, h1, (size_t)c * sizeof(double), cudaMemcpyHostToDevice, stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(stream));
}

static void check_bn_f32(const wg_tensor *x, const char *what)
{
    WG_ASSERT(x->dtype == WG_F32 && x->layout == WG_LAYOUT_NHWC, "float BN: %s is %s %s, expected f32 nhwc", what,
              wg_dtype_name(x->dtype), wg_layout_name(x->layout));
}

void wg_bn_f32_moments_cuda(const wg_tensor *x, double *mean, double *var, void *scratch, cudaStream_t stream)
{
    check_bn_f32(x, "the input");
    int64_t c = x->shape[3], m = wg_tensor_numel(x) / c;
    bn_f32_scratch s = bn_f32_layout(scratch, c);
    const float *xd = (const float *)x->data;
    chan_sums<SUM_X>(xd, NULL, NULL, m, c, s, mean, NULL, stream);
    for (int64_t ch = 0; ch < c; ch++) mean[ch] /= (double)m;
    WG_CUDA_CHECK(cudaMemcpyAsync(s.consts, mean, (size_t)c * sizeof(double), cudaMemcpyHostToDevice, stream));
    chan_sums<SUM_DEV2>(xd, NULL, s.consts, m, c, s, var, NULL, stream);
    for (int64_t ch = 0; ch < c; ch++) var[ch] /= (double)m;
}

/* h = (float)((x - mean) inv), y = gamma h + beta. */
__global__ void bn_f32_normalize_kernel(const float *x, const double *mean, const double *inv, const float *gamma,
                                        const float *beta, float *xhat, float *y, int64_t n, int64_t c)
{
    WG_GRID_STRIDE_LOOP(k, n)
    {
        int64_t ch = k % c;
        float h = (float)__dmul_rn(__dsub_rn((double)x[k], mean[ch]), inv[ch]);
        if (xhat != NULL) xhat[k] = h;
        y[k] = __fadd_rn(__fmul_rn(gamma[ch], h), beta[ch]);
    }
}

void wg_bn_f32_normalize_cuda(const wg_tensor *x, const double *mean, const double *inv, const wg_tensor *gamma,
                              const wg_tensor *beta, wg_tensor *xhat, wg_tensor *y, void *scratch, cudaStream_t stream)
{
    check_bn_f32(x, "the input");
    int64_t c = x->shape[3], n = wg_tensor_numel(x);
    bn_f32_scratch s = bn_f32_layout(scratch, c);
    put_consts(s, mean, inv, c, stream);
    if (n == 0) return;
    bn_f32_normalize_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(
        (const float *)x->data, s.consts, s.consts + c, (const float *)gamma->data, (const float *)beta->data,
        xhat ? (float *)xhat->data : NULL, (float *)y->data, n, c);
    WG_CUDA_CHECK_LAUNCH("bn_f32_normalize_kernel");
}

void wg_bn_f32_bwd_sums_cuda(const wg_tensor *dy, const wg_tensor *xhat, double *sb, double *sg, void *scratch,
                             cudaStream_t stream)
{
    check_bn_f32(dy, "dy");
    int64_t c = dy->shape[3], m = wg_tensor_numel(dy) / c;
    chan_sums<SUM_DY_DYH>((const float *)dy->data, (const float *)xhat->data, NULL, m, c, bn_f32_layout(scratch, c),
                          sb, sg, stream);
}

/* dx = (float)(gamma inv (dy - mb - h mg)), in double as bn_f32.c. */
__global__ void bn_f32_bwd_dx_kernel(const float *dy, const float *h, const float *gamma, const float *inv,
                                     const double *mb, const double *mg, float *dx, int64_t n, int64_t c)
{
    WG_GRID_STRIDE_LOOP(k, n)
    {
        int64_t ch = k % c;
        double centred = __dsub_rn(__dsub_rn((double)dy[k], mb[ch]), __dmul_rn((double)h[k], mg[ch]));
        dx[k] = (float)__dmul_rn(__dmul_rn((double)gamma[ch], (double)inv[ch]), centred);
    }
}

void wg_bn_f32_bwd_dx_cuda(const wg_tensor *dy, const wg_tensor *xhat, const wg_tensor *gamma,
                           const wg_tensor *inv_std, const double *mb, const double *mg, wg_tensor *dx, void *scratch,
                           cudaStream_t stream)
{
    check_bn_f32(dy, "dy");
    int64_t c = dy->shape[3], n = wg_tensor_numel(dy);
    bn_f32_scratch s = bn_f32_layout(scratch, c);
    put_consts(s, mb, mg, c, stream);
    if (n == 0) return;
    bn_f32_bwd_dx_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(
        (const float *)dy->data, (const float *)xhat->data, (const float *)gamma->data, (const float *)inv_std->data,
        s.consts, s.consts + c, (float *)dx->data, n, c);
    WG_CUDA_CHECK_LAUNCH("bn_f32_bwd_dx_kernel");
}
