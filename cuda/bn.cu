/* bn.cu: integer BN's elementwise forward passes on the GPU (see bn.cuh). Sums and
 * maxima are integers (sums modulo 2^64, exact), so the order of the atomics does not
 * matter: the CPU's numbers, bit for bit. These kernels aim at being right, not fast: the
 * sums take one global atomic an element. */
#include <stdlib.h>

#include "bn.cuh"
#include "check.h"
#include "cuda_check.cuh"
#include "launch.cuh"
#include "wg_bn_elem.h"

static size_t round256(size_t n) { return (n + 255) / 256 * 256; }

size_t wg_bn_sums_scratch(int64_t c) { return round256(2 * (size_t)c * sizeof(unsigned long long)); }

__global__ void bn_sums_kernel(const int16_t *x, int64_t n, int64_t c, unsigned long long *s1, unsigned long long *s2)
{
    WG_GRID_STRIDE_LOOP(i, n)
    {
        int64_t v = x[i];
        atomicAdd(&s1[i % c], (unsigned long long)v); /* two's complement: the int64 sum, modulo 2^64 */
        atomicAdd(&s2[i % c], (unsigned long long)(v * v));
    }
}

void wg_bn_sums_cuda(const wg_tensor *x16, int64_t *s1, int64_t *s2, void *scratch, cudaStream_t stream)
{
    int64_t c = x16->shape[3], n = wg_tensor_numel(x16);
    unsigned long long *d = (unsigned long long *)scratch;
    WG_CUDA_CHECK(cudaMemsetAsync(d, 0, 2 * (size_t)c * sizeof(*d), stream));
    if (n > 0) {
        bn_sums_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((const int16_t *)x16->data, n, c, d, d + c);
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
    p += round256((size_t)c * sizeof(*s.k));
    s.gamma = (int32_t *)p;
    s.beta = s.gamma + c;
    p += round256(2 * (size_t)c * sizeof(int32_t));
    s.red = (unsigned long long *)p;
    return s;
}

size_t wg_bn_normalize_scratch(int64_t c)
{
    return round256((size_t)c * sizeof(wg_bn_xhat_chan)) + round256(2 * (size_t)c * sizeof(int32_t)) + 256;
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
