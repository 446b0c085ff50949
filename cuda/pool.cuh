/* pool.cuh: launchers of global average pooling in int8 mode (pool.cu): backend.h's
 * gap_s8_forward and gap_s8_backward on the GPU (the formulas: wg_rational.h's
 * wg_div_rne, wg_pool_elem.h's wg_gap_spread_elem).
 *
 * Chain (style.md item 3): <op>_kernel (device) -> wg_<op>_cuda (launcher, here) -> the
 * CUDA backend's vtable entry (backend_cuda.cu). */
#ifndef WG_POOL_CUH
#define WG_POOL_CUH

#include <cuda_runtime.h>

#include "tensor.h"

void wg_gap_s8_forward_cuda(const wg_tensor *a, wg_tensor *out, cudaStream_t stream);
void wg_gap_s8_backward_cuda(const wg_tensor *dout, wg_tensor *da, cudaStream_t stream);

#endif
