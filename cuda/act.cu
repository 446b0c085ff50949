/* act.cu: ReLU in int8 mode on the GPU (see act.cuh). Each element is the shared
 * formula, so the results equal the CPU backend's (act.c) bit for bit. */
#include "act.cuh"
#include "check.h"
#include "cuda_check.cuh"
#include "launch.cuh"
#include "wg_dtype.h"
#include "wg_quant_elem.h"

__global__ void relu_round_shift_kernel(void *dst, wg_dtype td, const void *src, wg_dtype ts, int64_t n, int shift,
                                        int64_t bound)
{
    WG_GRID_STRIDE_LOOP(i, n)
    {
        wg_store_i64(dst, td, i, wg_relu_round_shift_elem(wg_load_i64(src, ts, i), shift, bound));
    }
}

void wg_relu_round_shift_cuda(wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound, cudaStream_t stream)
{
    wg_check_int_tensors("relu_round_shift", dst, src);
    int64_t n = wg_tensor_numel(src);
    if (n == 0) return;
    relu_round_shift_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(dst->data, dst->dtype, src->data,
                                                                          src->dtype, n, shift, bound);
    WG_CUDA_CHECK_LAUNCH("relu_round_shift_kernel");
}

__global__ void relu_mask_kernel(const int32_t *y, int8_t *de, int64_t n)
{
    WG_GRID_STRIDE_LOOP(i, n)
    {
        if (y[i] <= 0) de[i] = 0;
    }
}

void wg_relu_mask_cuda(const wg_tensor *y, wg_tensor *de, cudaStream_t stream)
{
    WG_ASSERT(y->dtype == WG_I32 && de->dtype == WG_I8 && wg_tensor_numel(y) == wg_tensor_numel(de),
              "relu_mask: %s and %s", wg_dtype_name(y->dtype), wg_dtype_name(de->dtype));
    int64_t n = wg_tensor_numel(y);
    if (n == 0) return;
    relu_mask_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((const int32_t *)y->data, (int8_t *)de->data, n);
    WG_CUDA_CHECK_LAUNCH("relu_mask_kernel");
}
