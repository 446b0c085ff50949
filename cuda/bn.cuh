/* bn.cuh: integer BN's two elementwise forward passes on the GPU (bn.cu), backend.h's
 * bn_sums and bn_normalize; the decisions between them are made on the host
 * (host/bn_int_generic.c), and the per-element formula is wg_bn_elem.h's wg_bn_xhat, the
 * reference the CPU's fast forms equal.
 *
 * Chain (style.md item 3): <op>_kernel (device) -> wg_<op>_cuda (launcher, here) -> the
 * CUDA backend's vtable entry (backend_cuda.cu). */
#ifndef WG_BN_CUH
#define WG_BN_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "tensor.h"

/* Bytes of device scratch each needs for C channels. */
size_t wg_bn_sums_scratch(int64_t c);
size_t wg_bn_normalize_scratch(int64_t c);

/* Both wait for the stream (their results come back to the host). */
void wg_bn_sums_cuda(const wg_tensor *x16, int64_t *s1, int64_t *s2, void *scratch, cudaStream_t stream);
int64_t wg_bn_normalize_cuda(wg_tensor *x16, wg_tensor *y, int e_x, const int32_t *mu, const int32_t *sigma,
                             const int16_t *gamma, const int16_t *beta, uint64_t *relu_max, void *scratch,
                             cudaStream_t stream);

#endif
