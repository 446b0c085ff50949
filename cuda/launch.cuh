/* launch.cuh: what the elementwise kernels share: the block size, the grid of a
 * grid-stride loop, and the block-wide integer maximum that ends a reduction.
 *
 * Integer maxima do not depend on the order in which they are taken, so the warp
 * shuffles, the block's shared memory and the one atomicMax per block give the same
 * number as the CPU's loops, however the grid is laid out. */
#ifndef WG_LAUNCH_CUH
#define WG_LAUNCH_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "check.h"
#include "cuda_check.cuh"
#include "tensor.h"

#define WG_CUDA_BLOCK 256
#define WG_CUDA_MAX_GRID 8192 /* enough blocks to fill any current GPU; the loop covers the rest */
#define WG_WARP 32
static_assert(WG_CUDA_BLOCK % WG_WARP == 0, "the full-mask warp shuffles need whole warps");

/* n rounded up to a multiple of 256: the offsets of the pieces of a scratch buffer. */
static inline size_t wg_round256(size_t n) { return (n + 255) / 256 * 256; }

static inline unsigned wg_grid_for(int64_t n)
{
    int64_t blocks = (n + WG_CUDA_BLOCK - 1) / WG_CUDA_BLOCK;
    return (unsigned)(blocks < 1 ? 1 : (blocks > WG_CUDA_MAX_GRID ? WG_CUDA_MAX_GRID : blocks));
}

#define WG_GRID_STRIDE_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* *out = max(*out, the largest m of the block's threads): warp maxima, then the block's
 * in shared memory, then one atomic. Every thread of the block must call it (a block of
 * WG_CUDA_BLOCK threads). */
static __device__ inline void wg_block_max_to(unsigned long long *out, unsigned long long m)
{
    __shared__ unsigned long long warp_max[WG_CUDA_BLOCK / WG_WARP];
    for (int off = WG_WARP / 2; off > 0; off /= 2) {
        unsigned long long o = __shfl_down_sync(0xffffffffu, m, off);
        m = o > m ? o : m;
    }
    if (threadIdx.x % WG_WARP == 0) warp_max[threadIdx.x / WG_WARP] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < WG_CUDA_BLOCK / WG_WARP; w++) m = warp_max[w] > m ? warp_max[w] : m;
        atomicMax(out, m);
    }
}

/* The kernels read containers through wg_load_i64, which knows only the integer
 * ones: a float or mismatched tensor is a bug upstream, stopped here by name. */
static inline void wg_check_int_tensors(const char *op, const wg_tensor *a, const wg_tensor *b)
{
    WG_ASSERT(wg_dtype_is_int(a->dtype) && (b == NULL || wg_dtype_is_int(b->dtype)), "%s needs integer tensors", op);
    WG_ASSERT(b == NULL || wg_tensor_numel(a) == wg_tensor_numel(b), "%s: %lld and %lld elements", op,
              (long long)wg_tensor_numel(a), (long long)wg_tensor_numel(b));
}

/* A reduction's one device word (the context's d_scratch): cleared before the kernel,
 * read back after it (which waits for the stream). */
static inline void wg_max_reset(unsigned long long *d, cudaStream_t stream)
{
    WG_CUDA_CHECK(cudaMemsetAsync(d, 0, sizeof(*d), stream));
}

static inline uint64_t wg_max_read(const unsigned long long *d, cudaStream_t stream)
{
    unsigned long long h = 0;
    WG_CUDA_CHECK(cudaMemcpyAsync(&h, d, sizeof(h), cudaMemcpyDeviceToHost, stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(stream));
    return (uint64_t)h;
}

#endif
