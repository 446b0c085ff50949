/* residual.cuh: launchers of the aligned sums (residual.cu): backend.h's shift_sum and
 * accumulate on the GPU, over the shared formulas of host/wg_residual_elem.h.
 *
 * Chain (style.md item 3): <op>_kernel (device) -> wg_<op>_cuda (launcher, here) -> the
 * CUDA backend's vtable entry (backend_cuda.cu). Both return a maximum, so both take
 * the context's reduction word and wait for the stream. */
#ifndef WG_RESIDUAL_CUH
#define WG_RESIDUAL_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "tensor.h"

uint64_t wg_shift_sum_cuda(wg_tensor *dst, const wg_tensor *a, int sa, const wg_tensor *b, int sb,
                           unsigned long long *d_scratch, cudaStream_t stream);

uint64_t wg_accumulate_cuda(wg_tensor *acc, int sa, const wg_tensor *add, int sb, unsigned long long *d_scratch,
                            cudaStream_t stream);

#endif
