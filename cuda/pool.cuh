/* pool.cuh: launchers of pooling (pool.cu): backend.h's gap_s8_forward and
 * gap_s8_backward (the formulas: wg_rational.h's wg_div_rne, wg_pool_elem.h's
 * wg_gap_spread_elem), gap_f32_forward and gap_f32_backward, maxpool_forward and
 * maxpool_backward (the windows: wg_pool_elem.h's wg_maxpool_span) on the GPU.
 *
 * Chain (style.md item 3): <op>_kernel (device) -> wg_<op>_cuda (launcher, here) -> the
 * CUDA backend's vtable entry (backend_cuda.cu). */
#ifndef WG_POOL_CUH
#define WG_POOL_CUH

#include <cuda_runtime.h>

#include "pool.h"
#include "tensor.h"

void wg_gap_s8_forward_cuda(const wg_tensor *a, wg_tensor *out, cudaStream_t stream);
void wg_gap_s8_backward_cuda(const wg_tensor *dout, wg_tensor *da, cudaStream_t stream);
void wg_gap_f32_forward_cuda(const wg_tensor *a, wg_tensor *out, cudaStream_t stream);
void wg_gap_f32_backward_cuda(const wg_tensor *dout, wg_tensor *da, cudaStream_t stream);
void wg_maxpool_forward_cuda(const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y, cudaStream_t stream);
void wg_maxpool_backward_cuda(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy, wg_tensor *dx,
                              cudaStream_t stream);

#endif
