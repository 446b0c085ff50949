/* cuda_check.cuh: checks on every CUDA, cuBLASLt and NCCL call (style.md item 5).
 *
 * A failing call is an internal error for wageubn: the macro prints the statement,
 * file:line, the current device and the library's own message, then aborts (a
 * non-zero exit). Kernel launches are checked with WG_CUDA_CHECK_LAUNCH("op"). */
#ifndef WG_CUDA_CHECK_CUH
#define WG_CUDA_CHECK_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static inline int wg_cuda_current_device(void)
{
    int d = -1;
    if (cudaGetDevice(&d) != cudaSuccess) d = -1;
    return d;
}

#define WG_CUDA_CHECK(call)                                                                              \
    do {                                                                                                 \
        cudaError_t wg_err_ = (call);                                                                    \
        if (wg_err_ != cudaSuccess)                                                                      \
            wg_die(__FILE__, __LINE__, "%s failed on device %d: %s (%s)", #call, wg_cuda_current_device(), \
                   cudaGetErrorString(wg_err_), cudaGetErrorName(wg_err_));                              \
    } while (0)

#define WG_CUBLAS_CHECK(call)                                                                             \
    do {                                                                                                  \
        cublasStatus_t wg_st_ = (call);                                                                   \
        if (wg_st_ != CUBLAS_STATUS_SUCCESS)                                                              \
            wg_die(__FILE__, __LINE__, "%s failed on device %d: %s (status %d)", #call,                    \
                   wg_cuda_current_device(), cublasLtGetStatusString(wg_st_), (int)wg_st_);                 \
    } while (0)

/* After every kernel launch: configuration errors surface here, named by op. Where
 * wg_cuda_debug_sync() holds, the launch is also waited for, so a fault inside the
 * kernel is reported under its own name rather than at the next checked call (slow:
 * for tests, never for timings). It holds when the environment's WG_CUDA_DEBUG_SYNC is
 * 1; unset, the CMake option WG_CUDA_DEBUG_SYNC sets the default. */
static inline bool wg_cuda_debug_sync(void)
{
    static int on = -1; /* read once; the host threads that launch read the same answer */
    if (on < 0) {
        const char *e = getenv("WG_CUDA_DEBUG_SYNC");
#if defined(WG_CUDA_DEBUG_SYNC)
        on = e == NULL || strcmp(e, "0") != 0;
#else
        on = e != NULL && strcmp(e, "1") == 0;
#endif
    }
    return on != 0;
}
#define WG_CUDA_LAUNCH_WAIT() (wg_cuda_debug_sync() ? cudaDeviceSynchronize() : cudaSuccess)
#define WG_CUDA_CHECK_LAUNCH(op)                                                                         \
    do {                                                                                                 \
        cudaError_t wg_err_ = cudaGetLastError();                                                        \
        if (wg_err_ == cudaSuccess) wg_err_ = WG_CUDA_LAUNCH_WAIT();                                     \
        if (wg_err_ != cudaSuccess)                                                                      \
            wg_die(__FILE__, __LINE__, "launch of %s failed on device %d: %s", (op),                      \
                   wg_cuda_current_device(), cudaGetErrorString(wg_err_));                               \
    } while (0)

#if defined(WG_HAVE_NCCL)
#include <nccl.h>
#define WG_NCCL_CHECK(call)                                                                              \
    do {                                                                                                 \
        ncclResult_t wg_nr_ = (call);                                                                    \
        if (wg_nr_ != ncclSuccess)                                                                       \
            wg_die(__FILE__, __LINE__, "%s failed on device %d: %s", #call, wg_cuda_current_device(),     \
                   ncclGetErrorString(wg_nr_));                                                          \
    } while (0)
#endif

#endif
