/* pool.cu: global average pooling in int8 mode on the GPU (see pool.cuh). The sums are
 * exact integers, so the order in which a thread adds its positions does not matter,
 * and each output is the shared formula: the CPU backend's result (pool.c), bit for bit. */
#include "check.h"
#include "cuda_check.cuh"
#include "launch.cuh"
#include "pool.cuh"
#include "wg_dtype.h"
#include "wg_pool_elem.h"
#include "wg_rational.h"

/* One thread per (image, channel): consecutive threads take consecutive channels, so
 * each position's loads are coalesced. */
__global__ void gap_s8_forward_kernel(const int8_t *x, int8_t *y, int64_t n, int64_t hw, int64_t c)
{
    WG_GRID_STRIDE_LOOP(i, n * c)
    {
        int64_t b = i / c, ch = i % c, s = 0;
        for (int64_t p = 0; p < hw; p++) s += x[(b * hw + p) * c + ch];
        y[i] = (int8_t)wg_div_rne(s, hw);
    }
}

void wg_gap_s8_forward_cuda(const wg_tensor *a, wg_tensor *out, cudaStream_t stream)
{
    int64_t n = a->shape[0], hw = a->shape[1] * a->shape[2], c = a->shape[3];
    WG_ASSERT(hw >= 1, "global average pooling over %lld positions", (long long)hw);
    if (n * c == 0) return;
    gap_s8_forward_kernel<<<wg_grid_for(n * c), WG_CUDA_BLOCK, 0, stream>>>((const int8_t *)a->data,
                                                                            (int8_t *)out->data, n, hw, c);
    WG_CUDA_CHECK_LAUNCH("gap_s8_forward_kernel");
}

/* One thread per element of da: element (b, p, ch) takes the spread of dout[b][ch]. */
__global__ void gap_s8_backward_kernel(const void *dout, wg_dtype td, int64_t *dx, int64_t n, int64_t hw, int64_t c)
{
    WG_GRID_STRIDE_LOOP(i, n * hw * c)
    {
        int64_t b = i / (hw * c), ch = i % c;
        dx[i] = wg_gap_spread_elem(wg_load_i64(dout, td, b * c + ch), hw);
    }
}

void wg_gap_s8_backward_cuda(const wg_tensor *dout, wg_tensor *da, cudaStream_t stream)
{
    int64_t n = da->shape[0], hw = da->shape[1] * da->shape[2], c = da->shape[3];
    WG_ASSERT(hw >= 1, "global average pooling over %lld positions", (long long)hw);
    if (n * hw * c == 0) return;
    gap_s8_backward_kernel<<<wg_grid_for(n * hw * c), WG_CUDA_BLOCK, 0, stream>>>(dout->data, dout->dtype,
                                                                                  (int64_t *)da->data, n, hw, c);
    WG_CUDA_CHECK_LAUNCH("gap_s8_backward_kernel");
}
