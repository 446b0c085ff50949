/* bn.cuh: batch normalization's passes on the GPU: integer BN's elementwise passes
 * (bn.cu), backend.h's bn_sums, bn_normalize, bn_bwd_sums, bn_bwd_dx and bn_relu_mask,
 * and float BN's (bn_f32.cu), the bn_f32_* entries. The decisions between them are made
 * on the host (host/bn_int_generic.c, host/bn_f32.c); the integer per-element formulas
 * are wg_bn_elem.h's references wg_bn_xhat and wg_bn_dx, which the CPU's fast forms
 * equal.
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

/* The backward passes (wg_bn_bwd_scratch bytes of scratch serve each). bn_bwd_sums and
 * bn_bwd_dx wait for the stream (their results come back to the host); so does
 * bn_relu_mask (its constants' host copy is freed after). */
size_t wg_bn_bwd_scratch(int64_t c);
void wg_bn_bwd_sums_cuda(const wg_tensor *dy, const wg_tensor *xhat, int64_t *b, int64_t *g, uint64_t *dmax,
                         uint64_t *hmax, void *scratch, cudaStream_t stream);
uint64_t wg_bn_bwd_dx_cuda(const wg_tensor *dy, const wg_tensor *xhat, wg_tensor *dx, int f, int64_t count,
                           const int16_t *gamma, const int32_t *sigma, const int64_t *b, const int64_t *g,
                           const uint64_t *dmax, const uint64_t *hmax, void *scratch, cudaStream_t stream);
void wg_bn_relu_mask_cuda(wg_tensor *dy, const wg_tensor *xhat, const int16_t *gamma, const int16_t *beta,
                          void *scratch, cudaStream_t stream);

/* Float BN's passes (bn_f32.cu), wg_bn_f32_scratch bytes of scratch each. The sums wait
 * for the stream (their results come back to the host); so do the others' copies of
 * their host arrays. */
size_t wg_bn_f32_scratch(int64_t c);
void wg_bn_f32_moments_cuda(const wg_tensor *x, double *mean, double *var, void *scratch, cudaStream_t stream);
void wg_bn_f32_normalize_cuda(const wg_tensor *x, const double *mean, const double *inv, const wg_tensor *gamma,
                              const wg_tensor *beta, wg_tensor *xhat, wg_tensor *y, void *scratch, cudaStream_t stream);
void wg_bn_f32_bwd_sums_cuda(const wg_tensor *dy, const wg_tensor *xhat, double *sb, double *sg, void *scratch,
                             cudaStream_t stream);
void wg_bn_f32_bwd_dx_cuda(const wg_tensor *dy, const wg_tensor *xhat, const wg_tensor *gamma,
                           const wg_tensor *inv_std, const double *mb, const double *mg, wg_tensor *dx, void *scratch,
                           cudaStream_t stream);

#endif
