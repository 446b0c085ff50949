/* backend_cuda.h: the CUDA backend (C interface; the vtable, memory and set-up are in
 * backend_cuda.cu, the kernels in one .cu per op family: quant, residual, pool, act,
 * gemm, conv, conv_f32, conv_igemm, bn, bn_f32, f32; NCCL in nccl_comm.cu).
 *
 * It implements the same vtable as the CPU backend (host/backend.h): device memory,
 * one stream per device, and every op as kernels over the shared integer formulas, so
 * its int8 results are bit-identical with the CPU backend's. */
#ifndef WG_BACKEND_CUDA_H
#define WG_BACKEND_CUDA_H

#include <cuda_runtime.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What this machine offers. ABSENT (no GPU, or no driver at all) is an answer, not
 * an error; BROKEN (e.g. a driver older than the runtime) is an error to report. */
typedef enum wg_cuda_probe_status {
    WG_CUDA_READY = 0,
    WG_CUDA_ABSENT,
    WG_CUDA_BROKEN,
} wg_cuda_probe_status;

/* Probe without aborting: *count gets the number of devices (0 unless READY) and msg
 * a one-line explanation for ABSENT and BROKEN. */
wg_cuda_probe_status wg_cuda_probe(int *count, char *msg, size_t msglen);

/* A backend on device `device`. Returns NULL, with the reason in err, when the
 * device cannot be used (no GPU, no driver, a broken driver, a bad index, or a GPU
 * older than compute capability 8.0, the oldest this build has kernels for). */
wg_backend *wg_backend_cuda_init(int device, char *err, size_t errlen);

/* Which kernels run the int8 convolutions (host/conv_tune.h): WG_CONV_AUTO (each layer
 * shape and pass timed once on its candidates, checked against cuBLASLt, the fastest
 * kept; the default) or a wg_conv_kernel, taken where it applies. The environment's
 * WG_CUDA_CONV = auto | igemm | wgmma | cublaslt sets it when the backend starts. All
 * give the same bits; tests compare each with the CPU. */
void wg_cuda_set_conv(wg_backend *b, int mode);

/* Whether b's device runs the wgmma kernels (an sm_90a build on compute capability 9.0). */
bool wg_cuda_has_wgmma(wg_backend *b);

/* The auto mode's choices so far, one line per layer shape and pass, with the times. */
void wg_cuda_print_conv_choices(wg_backend *b, FILE *out);

/* The stream all of b's work is queued on (for NCCL's sums to follow it). */
cudaStream_t wg_cuda_stream(wg_backend *b);

/* Bytes of the GPU's memory in use (cudaMemGetInfo: this process's and any other's). */
size_t wg_cuda_memory_in_use(wg_backend *b);

/* Print the CUDA runtime, driver, cuBLASLt and NCCL versions and the devices. */
void wg_cuda_print_info(FILE *out);

#ifdef __cplusplus
}
#endif

#endif
