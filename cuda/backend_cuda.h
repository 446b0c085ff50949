/* backend_cuda.h: the CUDA backend (C interface; the implementation is in
 * backend_cuda.cu and the op kernels in quant.cu).
 *
 * It implements the same vtable as the CPU backend (host/backend.h): device memory,
 * one stream per device, and the quantizer primitives as kernels over the shared
 * integer formulas, so its results are bit-identical with the CPU backend's. */
#ifndef WG_BACKEND_CUDA_H
#define WG_BACKEND_CUDA_H

#include <stddef.h>
#include <stdio.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no GPU or no driver (never aborts). */
int wg_cuda_device_count(void);

/* A backend on device `device`. Returns NULL, with the reason in err, when the
 * device cannot be used (no GPU, no driver, bad index). */
wg_backend *wg_backend_cuda_init(int device, char *err, size_t errlen);

/* Print the CUDA runtime, driver, cuBLASLt and NCCL versions and the devices. */
void wg_cuda_print_info(FILE *out);

#ifdef __cplusplus
}
#endif

#endif
