/* quant.cuh: launchers of the quantizer kernels (quant.cu).
 *
 * Chain (style.md item 3): <op>_kernel (device) -> wg_<op>_cuda (launcher, here)
 * -> the CUDA backend's vtable entry (backend_cuda.cu). Each kernel applies one
 * shared formula of host/wg_intmath.h, wg_quant_elem.h or wg_philox.h per element,
 * exactly as the CPU backend's loops do. */
#ifndef WG_QUANT_CUH
#define WG_QUANT_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "backend.h"

/* max |x| (integer atomicMax: independent of the order of the reduction). d_scratch
 * is one device uint64. Synchronizes the stream to return the value. */
uint64_t wg_max_abs_cuda(const wg_tensor *x, unsigned long long *d_scratch, cudaStream_t stream);

void wg_round_shift_cuda(wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound, cudaStream_t stream);

void wg_flag_split_cuda(wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int shift_coarse, int bits,
                        cudaStream_t stream);

void wg_stochastic_shift_cuda(wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound, wg_sr_stream sr,
                              cudaStream_t stream);

void wg_momentum_step_cuda(wg_tensor *m, const wg_tensor *g, wg_momentum_shifts s, cudaStream_t stream);

void wg_update_step_cuda(wg_tensor *w, const wg_tensor *m, int64_t lr_q, wg_update_shifts s, cudaStream_t stream);

void wg_weight_decay_cuda(wg_tensor *g, const wg_tensor *w, int64_t wd_q, int shift, cudaStream_t stream);

#endif
