/* dist.h: the processes of one training job and what they exchange (docs/distributed.md).
 *
 * `mpirun -np N wageubn train CONFIG` starts N ranks; each takes a disjoint part of every
 * global batch. Built with MPI (CMake WG_MPI, OpenMPI from Debian), wg_dist_init calls
 * MPI_Init and learns the rank, the size and the local rank (the rank among the
 * processes of its node: the GPU it takes); built without MPI, or started without
 * mpirun, the program is one rank of one. Every collective is checked: a failing MPI
 * call names itself, the file and the line, and the rank exits non-zero, which makes
 * mpirun end the job instead of leaving the other ranks waiting.
 *
 * [dist] allreduce (wg_dist_mode):
 * - exact: the ranks exchange every reduction over the batch that a decision of the
 *   integer arithmetic rests on (the backend's wg_batch_sync: maxima, BN's integer sums
 *   and counts, the loss's batch size) and sum the weight gradients in int64 before any
 *   quantization: N ranks at global batch B give the bits of one process at batch B.
 * - compressed: BN and the exponents stay per rank; each rank's weight gradient is
 *   quantized to int8 on a grid agreed by a max-allreduce, and those int8 values are
 *   summed exactly in the narrowest container that holds any sum of N of them
 *   (wg_dist_compressed_container). */
#ifndef WG_DIST_H
#define WG_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wg_dist_mode { WG_DIST_EXACT, WG_DIST_COMPRESSED } wg_dist_mode;

typedef struct wg_dist wg_dist;

/* Whether an MPI launcher (mpirun, mpiexec, srun with PMI) started this process: its
 * environment says so (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, MPI_LOCALNRANKS). */
bool wg_dist_launched(void);

/* The job as this process sees it; never NULL. MPI_Init (and its own parsing of argv)
 * when the build has MPI and a launcher started the process; otherwise one rank of one,
 * with no MPI call (a plain `wageubn train` starts no MPI runtime). */
wg_dist *wg_dist_init(int *argc, char ***argv);
/* MPI_Finalize; then d is gone. */
void wg_dist_finalize(wg_dist *d);

int wg_dist_rank(const wg_dist *d);
int wg_dist_size(const wg_dist *d);
int wg_dist_local_rank(const wg_dist *d);
/* "MPI (Open MPI v4.1.4)" or "no MPI in this build". */
const char *wg_dist_describe(const wg_dist *d);

/* Collectives over all ranks, in place (no-ops on one rank). */
void wg_dist_sum_i64(wg_dist *d, int64_t *v, size_t n);
void wg_dist_max_u64(wg_dist *d, uint64_t *v, size_t n);
void wg_dist_sum_f64(wg_dist *d, double *v, size_t n);
/* The largest status of all ranks: what one rank decided (to stop, that it failed)
 * every rank learns at the same step. */
int wg_dist_agree(wg_dist *d, int status);

/* rank root's bytes to every rank (MPI_Bcast; a no-op on one rank). */
void wg_dist_broadcast(wg_dist *d, void *buf, size_t bytes, int root);

/* A communicator for the gradients that live on a device: NCCL for the CUDA backend
 * (cuda/nccl_comm.cu, its unique id broadcast over MPI). Sums in place in device
 * memory, in the backend's stream, and waits. Without one, device gradients go through
 * host copies and MPI. */
typedef struct wg_device_comm {
    void *ctx;
    char name[64];                                   /* "NCCL 2.28.9" */
    bool (*owns)(void *ctx, const wg_tensor *t);     /* t lives on its device */
    void (*sum_i64)(void *ctx, int64_t *dev, size_t n);
    void (*sum_f32)(void *ctx, float *dev, size_t n);
    void (*free)(void *ctx);
} wg_device_comm;
/* d takes c (freed by wg_dist_finalize). */
void wg_dist_set_device_comm(wg_dist *d, wg_device_comm *c);

/* The backend hook of exact mode (backend.h): sums and maxima over all ranks, the batch
 * split over wg_dist_size ranks. Lives as long as d. */
const wg_batch_sync *wg_dist_batch_sync(wg_dist *d);

/* The gradient buffers one step allreduces, in bytes (a ring allreduce sends about
 * twice its buffer from each rank): for reports (docs/distributed.md). */
typedef struct wg_dist_traffic {
    int64_t scalars;          /* gradient scalars per step */
    int64_t bytes_exact;      /* exact: int64 sums (integer BN's are global already) */
    int64_t bytes_compressed; /* compressed: the container's width, and one max per tensor */
    int64_t bytes_fp32;       /* an fp32 allreduce of the same gradients */
} wg_dist_traffic;

/* What wg_dist_allreduce_grads exchanges for these parameters on `ranks` ranks. */
wg_dist_traffic wg_dist_traffic_of(const wg_param *params, int nparams, int ranks);

/* The container that holds any sum of n int8 values of magnitude at most 127 exactly:
 * 2 bytes (int16, to 258 ranks), else 4. */
int wg_dist_compressed_container(int n);

/* Sum every parameter's gradient over the ranks, as the mode says (grads on any backend:
 * through host copies). Exact: int64 sums of the raw accumulators, except integer BN's,
 * which a synced backward already made global. Compressed: the int8 exchange above;
 * each gradient leaves it at the agreed grid, as the sum of the ranks' quantized ones.
 * Float gradients (fp32 mode, the reference preset's float layers) are summed in double. */
void wg_dist_allreduce_grads(wg_dist *d, wg_dist_mode mode, wg_param *params, int nparams);

#ifdef __cplusplus
}
#endif

#endif
