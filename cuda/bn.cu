/* bn.cu: integer BN's elementwise passes on the GPU (see bn.cuh). Sums and maxima are
 * integers (sums modulo 2^64, exact), so neither the split of the rows among threads nor
 * the order of the atomics matters: the CPU's numbers, bit for bit. The per-channel
 * reductions walk columns (channel_columns): each thread sums its channel over many
 * rows in registers and adds the result with one atomic. */
#include <stdlib.h>

#include "bn.cuh"
#include "check.h"
#include "cuda_check.cuh"
#include "launch.cuh"
#include "wg_bn_elem.h"
#include "wg_dtype.h"

size_t wg_bn_sums_scratch(int64_t c) { return wg_round256(2 * (size_t)c * sizeof(unsigned long long)); }

/* Blocks of the per-channel reductions: enough to fill the GPU, each thread then
 * summing many rows of its channel. */
#define WG_BN_COLUMN_BLOCKS 1024

static unsigned column_grid(int64_t rows)
{
    int64_t b = rows / 16 + 1;
    return (unsigned)(b < WG_BN_COLUMN_BLOCKS ? b : WG_BN_COLUMN_BLOCKS);
}

/* The column walk of the reductions over [rows][c]: the block's threads take a tile of
 * up to blockDim channels at a time (consecutive threads, consecutive channels: the
 * loads of a row coalesce), lanes = blockDim / tile rows at once, and the blocks stride
 * over the rows. visit(k, ch) for every element k = row * c + ch of the thread's
 * column, then flush(ch) once per tile (threads without a column call neither). */
template <typename Visit, typename Flush>
static __device__ void channel_columns(int64_t rows, int64_t c, Visit visit, Flush flush)
{
    for (int64_t c0 = 0; c0 < c; c0 += blockDim.x) {
        int64_t ncols = c - c0 < blockDim.x ? c - c0 : blockDim.x, lanes = blockDim.x / ncols;
        int64_t lane = threadIdx.x / ncols, ch = c0 + threadIdx.x % ncols;
        if (lane >= lanes) continue;
        for (int64_t r = blockIdx.x * lanes + lane; r < rows; r += gridDim.x * lanes) visit(r * c + ch, ch);
        flush(ch);
    }
}

__global__ void bn_sums_kernel(const int16_t *x, int64_t rows, int64_t c, unsigned long long *s1,
                               unsigned long long *s2)
{
    unsigned long long a1 = 0, a2 = 0; /* two's complement: the int64 sums, modulo 2^64 */
    channel_columns(
        rows, c,
        [&](int64_t k, int64_t) {
            int64_t v = x[k];
            a1 += (unsigned long long)v;
            a2 += (unsigned long long)(v * v);
        },
        [&](int64_t ch) {
            atomicAdd(&s1[ch], a1);
            atomicAdd(&s2[ch], a2);
            a1 = a2 = 0;
        });
}

void wg_bn_sums_cuda(const wg_tensor *x16, int64_t *s1, int64_t *s2, void *scratch, cudaStream_t stream)
{
    int64_t c = x16->shape[3], n = wg_tensor_numel(x16);
    unsigned long long *d = (unsigned long long *)scratch;
    WG_CUDA_CHECK(cudaMemsetAsync(d, 0, 2 * (size_t)c * sizeof(*d), stream));
    if (n > 0) {
        bn_sums_kernel<<<column_grid(n / c), WG_CUDA_BLOCK, 0, stream>>>((const int16_t *)x16->data, n / c, c, d,
                                                                          d + c);
        WG_CUDA_CHECK_LAUNCH("bn_sums_kernel");
    }
    WG_CUDA_CHECK(cudaMemcpyAsync(s1, d, (size_t)c * sizeof(*s1), cudaMemcpyDeviceToHost, stream));
    WG_CUDA_CHECK(cudaMemcpyAsync(s2, d + c, (size_t)c * sizeof(*s2), cudaMemcpyDeviceToHost, stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(stream));
}

/* The layout of bn_normalize's scratch: per-channel constants, gamma, beta (int32), then
 * two reduction words (the clamps' count, max y). */
typedef struct norm_scratch {
    wg_bn_xhat_chan *k;
    int32_t *gamma, *beta;
    unsigned long long *red;
} norm_scratch;

static norm_scratch norm_layout(void *scratch, int64_t c)
{
    char *p = (char *)scratch;
    norm_scratch s;
    s.k = (wg_bn_xhat_chan *)p;
    p += wg_round256((size_t)c * sizeof(*s.k));
    s.gamma = (int32_t *)p;
    s.beta = s.gamma + c;
    p += wg_round256(2 * (size_t)c * sizeof(int32_t));
    s.red = (unsigned long long *)p;
    return s;
}

size_t wg_bn_normalize_scratch(int64_t c)
{
    return wg_round256((size_t)c * sizeof(wg_bn_xhat_chan)) + wg_round256(2 * (size_t)c * sizeof(int32_t)) + 256;
}

__global__ void bn_normalize_kernel(int16_t *x, int32_t *y, int64_t n, int64_t c, int e_x, const wg_bn_xhat_chan *k,
                                    const int32_t *gamma, const int32_t *beta, unsigned long long *red)
{
    unsigned long long clamps = 0, m = 0;
    WG_GRID_STRIDE_LOOP(i, n)
    {
        int64_t ch = i % c;
        int clamped = 0;
        int64_t h = wg_bn_xhat(x[i], e_x, &k[ch], &clamped), v = wg_bn_y(h, gamma[ch], beta[ch]);
        x[i] = (int16_t)h;
        y[i] = (int32_t)v;
        clamps += (unsigned long long)clamped;
        m = v > 0 && (unsigned long long)v > m ? (unsigned long long)v : m;
    }
    if (clamps) atomicAdd(&red[0], clamps); /* rare: an event to log */
    wg_block_max_to(&red[1], m);
}

int64_t wg_bn_normalize_cuda(wg_tensor *x16, wg_tensor *y, int e_x, const int32_t *mu, const int32_t *sigma,
                             const int16_t *gamma, const int16_t *beta, uint64_t *relu_max, void *scratch,
                             cudaStream_t stream)
{
    int64_t c = x16->shape[3], n = wg_tensor_numel(x16);
    norm_scratch s = norm_layout(scratch, c);
    wg_bn_xhat_chan *k = (wg_bn_xhat_chan *)malloc((size_t)c * sizeof(*k));
    int32_t *gb = (int32_t *)malloc(2 * (size_t)c * sizeof(*gb));
    WG_ASSERT(k != NULL && gb != NULL, "out of host memory (%lld channels)", (long long)c);
    for (int64_t ch = 0; ch < c; ch++) {
        k[ch] = wg_bn_xhat_chan_init(mu[ch], sigma[ch], e_x);
        gb[ch] = gamma[ch];
        gb[c + ch] = beta[ch];
    }
    WG_CUDA_CHECK(cudaMemcpyAsync(s.k, k, (size_t)c * sizeof(*k), cudaMemcpyHostToDevice, stream));
    WG_CUDA_CHECK(cudaMemcpyAsync(s.gamma, gb, 2 * (size_t)c * sizeof(*gb), cudaMemcpyHostToDevice, stream));
    WG_CUDA_CHECK(cudaMemsetAsync(s.red, 0, 2 * sizeof(*s.red), stream));
    if (n > 0) {
        bn_normalize_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(
            (int16_t *)x16->data, (int32_t *)y->data, n, c, e_x, s.k, s.gamma, s.beta, s.red);
        WG_CUDA_CHECK_LAUNCH("bn_normalize_kernel");
    }
    unsigned long long red[2];
    WG_CUDA_CHECK(cudaMemcpyAsync(red, s.red, sizeof(red), cudaMemcpyDeviceToHost, stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(stream)); /* also: k and gb are copied before they are freed */
    free(k);
    free(gb);
    *relu_max = (uint64_t)red[1];
    return (int64_t)red[0];
}

/* ---- backward ---------------------------------------------------------------------- */

size_t wg_bn_bwd_scratch(int64_t c)
{
    return wg_round256(4 * (size_t)c * sizeof(unsigned long long)) + wg_round256((size_t)c * sizeof(wg_bn_bwd_chan)) +
           wg_round256(2 * (size_t)c * sizeof(int32_t)) + 256;
}

__global__ void bn_bwd_sums_kernel(const void *dy, wg_dtype t, const int16_t *h, int64_t rows, int64_t c,
                                   unsigned long long *acc)
{
    unsigned long long sb = 0, sg = 0, md = 0, mh = 0; /* sums modulo 2^64: the int64 sums */
    channel_columns(
        rows, c,
        [&](int64_t k, int64_t) {
            int64_t d = wg_load_i64(dy, t, k);
            unsigned long long ad = wg_abs_u64(d), ah = wg_abs_u64(h[k]);
            sb += (unsigned long long)d;
            sg += (unsigned long long)(d * h[k]);
            md = ad > md ? ad : md;
            mh = ah > mh ? ah : mh;
        },
        [&](int64_t ch) {
            atomicAdd(&acc[ch], sb);
            atomicAdd(&acc[c + ch], sg);
            atomicMax(&acc[2 * c + ch], md);
            atomicMax(&acc[3 * c + ch], mh);
            sb = sg = md = mh = 0;
        });
}

void wg_bn_bwd_sums_cuda(const wg_tensor *dy, const wg_tensor *xhat, int64_t *b, int64_t *g, uint64_t *dmax,
                         uint64_t *hmax, void *scratch, cudaStream_t stream)
{
    int64_t c = xhat->shape[3], n = wg_tensor_numel(xhat);
    unsigned long long *d = (unsigned long long *)scratch;
    WG_CUDA_CHECK(cudaMemsetAsync(d, 0, 4 * (size_t)c * sizeof(*d), stream));
    if (n > 0) {
        bn_bwd_sums_kernel<<<column_grid(n / c), WG_CUDA_BLOCK, 0, stream>>>(dy->data, dy->dtype,
                                                                             (const int16_t *)xhat->data, n / c, c, d);
        WG_CUDA_CHECK_LAUNCH("bn_bwd_sums_kernel");
    }
    int64_t *out[4] = {b, g, (int64_t *)dmax, (int64_t *)hmax};
    for (int j = 0; j < 4; j++)
        WG_CUDA_CHECK(cudaMemcpyAsync(out[j], d + j * c, (size_t)c * sizeof(int64_t), cudaMemcpyDeviceToHost, stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(stream));
}

__global__ void bn_bwd_dx_kernel(const void *dy, wg_dtype t, const int16_t *h, int64_t *dx, int64_t n, int64_t c,
                                 uint64_t count, const wg_bn_bwd_chan *k, int f, unsigned long long *max_out)
{
    unsigned long long m = 0;
    WG_GRID_STRIDE_LOOP(i, n)
    {
        int64_t v = wg_bn_dx(wg_load_i64(dy, t, i), h[i], count, &k[i % c], f);
        unsigned long long a = wg_abs_u64(v);
        dx[i] = v;
        m = a > m ? a : m;
    }
    wg_block_max_to(max_out, m);
}

uint64_t wg_bn_bwd_dx_cuda(const wg_tensor *dy, const wg_tensor *xhat, wg_tensor *dx, int f, int64_t count,
                           const int16_t *gamma, const int32_t *sigma, const int64_t *b, const int64_t *g,
                           const uint64_t *dmax, const uint64_t *hmax, void *scratch, cudaStream_t stream)
{
    int64_t c = xhat->shape[3], n = wg_tensor_numel(xhat);
    wg_bn_bwd_chan *k = (wg_bn_bwd_chan *)malloc((size_t)c * sizeof(*k));
    WG_ASSERT(k != NULL, "out of host memory (%lld channels)", (long long)c);
    for (int64_t ch = 0; ch < c; ch++)
        k[ch] = wg_bn_bwd_chan_init(gamma[ch], sigma[ch], (uint64_t)count, b[ch], g[ch], dmax[ch], hmax[ch]);
    wg_bn_bwd_chan *dk = (wg_bn_bwd_chan *)scratch;
    unsigned long long *red = (unsigned long long *)((char *)scratch + wg_round256((size_t)c * sizeof(*k)));
    WG_CUDA_CHECK(cudaMemcpyAsync(dk, k, (size_t)c * sizeof(*k), cudaMemcpyHostToDevice, stream));
    WG_CUDA_CHECK(cudaMemsetAsync(red, 0, sizeof(*red), stream));
    if (n > 0) {
        bn_bwd_dx_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(dy->data, dy->dtype, (const int16_t *)xhat->data,
                                                                       (int64_t *)dx->data, n, c, (uint64_t)count, dk,
                                                                       f, red);
        WG_CUDA_CHECK_LAUNCH("bn_bwd_dx_kernel");
    }
    uint64_t m = wg_max_read(red, stream); /* waits: k is copied before it is freed */
    free(k);
    return m;
}

__global__ void bn_relu_mask_kernel(int8_t *dy, const int16_t *h, int64_t n, int64_t c, const int32_t *gamma,
                                    const int32_t *beta)
{
    WG_GRID_STRIDE_LOOP(i, n)
    {
        if (wg_bn_y(h[i], gamma[i % c], beta[i % c]) <= 0) dy[i] = 0;
    }
}

void wg_bn_relu_mask_cuda(wg_tensor *dy, const wg_tensor *xhat, const int16_t *gamma, const int16_t *beta,
                          void *scratch, cudaStream_t stream)
{
    int64_t c = xhat->shape[3], n = wg_tensor_numel(xhat);
    int32_t *gb = (int32_t *)malloc(2 * (size_t)c * sizeof(*gb));
    WG_ASSERT(gb != NULL, "out of host memory (%lld channels)", (long long)c);
    for (int64_t ch = 0; ch < c; ch++) gb[ch] = gamma[ch], gb[c + ch] = beta[ch];
    int32_t *d = (int32_t *)scratch;
    WG_CUDA_CHECK(cudaMemcpyAsync(d, gb, 2 * (size_t)c * sizeof(*gb), cudaMemcpyHostToDevice, stream));
    if (n > 0) {
        bn_relu_mask_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((int8_t *)dy->data,
                                                                          (const int16_t *)xhat->data, n, c, d, d + c);
        WG_CUDA_CHECK_LAUNCH("bn_relu_mask_kernel");
    }
    WG_CUDA_CHECK(cudaStreamSynchronize(stream)); /* gb is copied before it is freed */
    free(gb);
}
