/* conv.cuh: the convolutions on the GPU. The int8 forward (conv.cu), backend.h's
 * conv_s8_forward: im2col into the context's scratch, with the columns padded to a
 * multiple of 4 (zeros, which add nothing: the stem's 9 columns of one channel become
 * 12) and the filters padded alike where needed, then cuBLASLt's int8 GEMM (gemm.cuh)
 * straight into y. A pointwise convolution whose channels are a multiple of 4 multiplies
 * x itself. Output channels that are not a multiple of 4 (the FC's 10 classes) are
 * padded too: zero filters, whose columns of the product are dropped.
 *
 * Chain (style.md item 3): <op>_kernel (device) -> wg_<op>_cuda (launcher, here) -> the
 * CUDA backend's vtable entry (backend_cuda.cu). */
#ifndef WG_CONV_CUH
#define WG_CONV_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "conv.h"
#include "gemm.cuh"
#include "wg_dtype.h"

/* Bytes of scratch conv_s8_forward_cuda needs for g (0: none). */
size_t wg_conv_s8_forward_scratch(const wg_conv_geom *g);

/* y = conv(x, w). scratch: wg_conv_s8_forward_scratch(g) bytes of device memory
 * (256-byte aligned); lt, workspace: the context's cuBLASLt handle and workspace. */
void wg_conv_s8_forward_cuda(const wg_conv_geom *g, const int8_t *x, const int8_t *w, int32_t *y, void *scratch,
                             cublasLtHandle_t lt, void *workspace, size_t workspace_bytes, cudaStream_t stream);

/* Backward (backend.h's conv_s8_backward): backward-data as E_p W^T per error part
 * (cuBLASLt, K = O) and a gathering col2im that adds the parts, each shifted up by
 * shift[p]; backward-weight as E_p^T col(x) in chunks of rows whose int32 sums are
 * exact, added into dw (int64) with the part's shift. dx: NULL (none), int32 or int64
 * (t_dx); dw: NULL (another kernel computes it). scratch: wg_conv_s8_backward_scratch(g,
 * nparts) bytes. */
size_t wg_conv_s8_backward_scratch(const wg_conv_geom *g, int nparts);
void wg_conv_s8_backward_cuda(const wg_conv_geom *g, const int8_t *x, const int8_t *w, const int8_t *const *err,
                              const int *shift, int nparts, void *dx, wg_dtype t_dx, int64_t *dw, void *scratch,
                              cublasLtHandle_t lt, void *workspace, size_t workspace_bytes, cudaStream_t stream);

/* The fp32 mode's float convolutions (conv_f32.cu): im2col, cuBLASLt's SGEMM and a
 * gathering col2im. dx: NULL (none). scratch: wg_conv_f32_scratch(g) bytes. */
size_t wg_conv_f32_scratch(const wg_conv_geom *g);
void wg_conv_f32_forward_cuda(const wg_conv_geom *g, const float *x, const float *w, float *y, void *scratch,
                              const wg_gemm_ctx *gc, cudaStream_t stream);
void wg_conv_f32_backward_cuda(const wg_conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                               float *dw, void *scratch, const wg_gemm_ctx *gc, cudaStream_t stream);

#endif
