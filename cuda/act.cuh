/* act.cuh: launchers of ReLU in int8 mode (act.cu): backend.h's relu_round_shift (ReLU
 * with the activation quantizer's step, wg_quant_elem.h's wg_relu_round_shift_elem) and
 * relu_mask on the GPU.
 *
 * Chain (style.md item 3): <op>_kernel (device) -> wg_<op>_cuda (launcher, here) -> the
 * CUDA backend's vtable entry (backend_cuda.cu). */
#ifndef WG_ACT_CUH
#define WG_ACT_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "tensor.h"

void wg_relu_round_shift_cuda(wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound, cudaStream_t stream);
void wg_relu_mask_cuda(const wg_tensor *y, wg_tensor *de, cudaStream_t stream);

#endif
