/* f32.cuh: launchers of the float32 elementwise ops (f32.cu): backend.h's relu_f32,
 * add_f32, sgd_f32_step and the fixed point <-> float conversions of convert.h
 * (fixed_to_f32, f32_max_abs, f32_to_fixed) on the GPU.
 *
 * Chain (style.md item 3): <op>_kernel (device) -> wg_<op>_cuda (launcher, here) -> the
 * CUDA backend's vtable entry (backend_cuda.cu). */
#ifndef WG_F32_CUH
#define WG_F32_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "tensor.h"

void wg_relu_f32_cuda(const wg_tensor *y, const wg_tensor *src, wg_tensor *dst, cudaStream_t stream);
void wg_add_f32_cuda(const wg_tensor *a, const wg_tensor *b, wg_tensor *out, cudaStream_t stream);
void wg_sgd_f32_step_cuda(wg_tensor *w, wg_tensor *v, const wg_tensor *g, float mu, float lr, float wd,
                          cudaStream_t stream);
void wg_fixed_to_f32_cuda(const wg_tensor *src, wg_tensor *dst, cudaStream_t stream);
/* d_words: two device words of scratch (the maximum's bits, the count). */
float wg_f32_max_abs_cuda(const wg_tensor *x, int64_t *nonfinite, unsigned long long *d_words, cudaStream_t stream);
void wg_f32_to_fixed_cuda(const wg_tensor *src, wg_tensor *dst, int e, cudaStream_t stream);

#endif
