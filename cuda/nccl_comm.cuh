/* nccl_comm.cuh: NCCL as the communicator of the CUDA backend's gradients (dist.h's
 * wg_device_comm): one communicator over the job's ranks, each on its own GPU, the
 * unique id made by rank 0 and broadcast over MPI; the sums run in the backend's
 * stream. */
#ifndef WG_NCCL_COMM_CUH
#define WG_NCCL_COMM_CUH

#include <stddef.h>

#include "backend.h"
#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NULL with the reason in err where this build has no NCCL or b is not the CUDA
 * backend. Every rank must call it (a collective). */
wg_device_comm *wg_cuda_nccl_open(wg_backend *b, wg_dist *d, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
