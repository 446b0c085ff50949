/* nccl_comm.cu: the gradients' NCCL communicator (see nccl_comm.cuh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda.h"
#include "check.h"
#include "cuda_check.cuh"
#include "nccl_comm.cuh"

#if defined(WG_HAVE_NCCL)
#include <nccl.h>

typedef struct nccl_ctx {
    wg_backend *b;
    ncclComm_t comm;
    cudaStream_t stream;
} nccl_ctx;

static bool nccl_owns(void *ctx, const wg_tensor *t) { return t->backend == ((nccl_ctx *)ctx)->b; }

static void nccl_sum(nccl_ctx *c, void *dev, size_t n, ncclDataType_t type)
{
    WG_NCCL_CHECK(ncclAllReduce(dev, dev, n, type, ncclSum, c->comm, c->stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

static void nccl_sum_i64(void *ctx, int64_t *dev, size_t n) { nccl_sum((nccl_ctx *)ctx, dev, n, ncclInt64); }
static void nccl_sum_f32(void *ctx, float *dev, size_t n) { nccl_sum((nccl_ctx *)ctx, dev, n, ncclFloat32); }

static void nccl_free(void *ctx)
{
    nccl_ctx *c = (nccl_ctx *)ctx;
    WG_NCCL_CHECK(ncclCommDestroy(c->comm));
    free(c);
}

wg_device_comm *wg_cuda_nccl_open(wg_backend *b, wg_dist *d, char *err, size_t errlen)
{
    if (strcmp(wg_backend_name(b), "cuda") != 0) {
        snprintf(err, errlen, "NCCL serves the CUDA backend, not %s", wg_backend_name(b));
        return NULL;
    }
    ncclUniqueId id;
    if (wg_dist_rank(d) == 0) WG_NCCL_CHECK(ncclGetUniqueId(&id));
    wg_dist_broadcast(d, &id, sizeof(id), 0);
    nccl_ctx *c = (nccl_ctx *)calloc(1, sizeof(*c));
    wg_device_comm *dc = (wg_device_comm *)calloc(1, sizeof(*dc));
    WG_ASSERT(c != NULL && dc != NULL, "out of host memory%s", "");
    c->b = b;
    c->stream = wg_cuda_stream(b); /* the backend's: the sums follow its queued work */
    WG_NCCL_CHECK(ncclCommInitRank(&c->comm, wg_dist_size(d), id, wg_dist_rank(d)));
    int v = 0;
    WG_NCCL_CHECK(ncclGetVersion(&v));
    *dc = (wg_device_comm){.ctx = c, .owns = nccl_owns, .sum_i64 = nccl_sum_i64, .sum_f32 = nccl_sum_f32,
                           .free = nccl_free};
    snprintf(dc->name, sizeof(dc->name), "NCCL %d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
    return dc;
}
#else
wg_device_comm *wg_cuda_nccl_open(wg_backend *b, wg_dist *d, char *err, size_t errlen)
{
    (void)b, (void)d;
    snprintf(err, errlen, "this build has no NCCL (CMake WG_NCCL: the library was not found)");
    return NULL;
}
#endif
