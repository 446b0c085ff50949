/* conv_igemm.cuh: the int8 convolutions as implicit GEMMs on the tensor cores
 * (conv_igemm.cu, igemm.cuh), no im2col in memory: forward with max |y| taken in the
 * epilogue, backward-data with E2's two parts in one pass over the weights and max |dx|
 * in the epilogue, backward-weight split over the output pixels with exact int64 sums.
 * The CUDA backend takes them for the layers they accept (the _ok tests, 16-byte
 * aligned operands) and cuBLASLt's path (conv.cuh) for the others, or for all with
 * wg_cuda_set_igemm(b, false) (tests compare both with the CPU).
 *
 * Chain (style.md item 3): ig_kernel<op> (device) -> wg_conv_*_igemm (launcher, here)
 * -> the CUDA backend's vtable entries (backend_cuda.cu). */
#ifndef WG_CONV_IGEMM_CUH
#define WG_CONV_IGEMM_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "conv.h"
#include "wg_dtype.h"

bool wg_conv_igemm_aligned(const void *p);
bool wg_conv_igemm_forward_ok(const wg_conv_geom *g);
bool wg_conv_igemm_backward_data_ok(const wg_conv_geom *g);
bool wg_conv_igemm_backward_weight_ok(const wg_conv_geom *g);

/* Whether device runs the wgmma kernels (igemm_wgmma.cuh): the build has sm_90a code
 * (CMAKE_CUDA_ARCHITECTURES holds 90a) and the device is compute capability 9.0. */
bool wg_conv_wgmma_available(int device);

/* y = conv(x, w) on the mma.sync kernel or (wgmma) the wgmma one; returns max |y|
 * (d_max: one device word of scratch; waits). */
uint64_t wg_conv_s8_forward_igemm(const wg_conv_geom *g, const int8_t *x, const int8_t *w, int32_t *y, bool wgmma,
                                  unsigned long long *d_max, cudaStream_t stream);

/* dx (int32 or int64: t_dx) = sum over the nparts (1 or 2) error parts of their
 * backward-data, part p shifted up by shift[p], on either kernel as the forward;
 * returns max |dx| (waits). scratch:
 * wg_conv_igemm_backward_scratch(g) bytes (the transposed weights). */
size_t wg_conv_igemm_backward_scratch(const wg_conv_geom *g);
uint64_t wg_conv_s8_backward_data_igemm(const wg_conv_geom *g, const int8_t *w, const int8_t *const *err,
                                        const int *shift, int nparts, void *dx, wg_dtype t_dx, bool wgmma,
                                        void *scratch, unsigned long long *d_max, cudaStream_t stream);

/* dw (int64 [o][kdim]) = sum over the parts of their weight gradients, shifted. */
void wg_conv_s8_backward_weight_igemm(const wg_conv_geom *g, const int8_t *x, const int8_t *const *err,
                                      const int *shift, int nparts, int64_t *dw, cudaStream_t stream);

#endif
