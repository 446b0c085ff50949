/* dist.c: MPI start-up and the collectives of a training job (see dist.h). */
#include "dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "quant.h"
#include "wg_intmath.h"

#if defined(WG_HAVE_MPI)
#include <mpi.h>

/* Every MPI call: on failure, the call, file:line, the rank and MPI's own words; the
 * rank then exits non-zero and mpirun ends the job. */
#define WG_MPI_CHECK(call)                                                                                   \
    do {                                                                                                     \
        int wg_rc_ = (call);                                                                                 \
        if (wg_rc_ != MPI_SUCCESS) {                                                                         \
            char wg_msg_[MPI_MAX_ERROR_STRING];                                                              \
            int wg_len_ = 0;                                                                                 \
            MPI_Error_string(wg_rc_, wg_msg_, &wg_len_);                                                     \
            wg_die(__FILE__, __LINE__, "%s failed: %s", #call, wg_msg_);                                     \
        }                                                                                                    \
    } while (0)
#endif

struct wg_dist {
    int rank, size, local_rank;
    bool mpi; /* MPI_Init was called here */
    wg_batch_sync sync;
    wg_device_comm *dev; /* NULL: device gradients through host copies */
    char describe[400];
};

static void sync_sum(void *ctx, int64_t *v, size_t n) { wg_dist_sum_i64(ctx, v, n); }

bool wg_dist_launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", NULL};
    for (int i = 0; vars[i] != NULL; i++)
        if (getenv(vars[i]) != NULL) return true;
    return false;
}
static void sync_max(void *ctx, uint64_t *v, size_t n) { wg_dist_max_u64(ctx, v, n); }

wg_dist *wg_dist_init(int *argc, char ***argv)
{
    wg_dist *d = calloc(1, sizeof(*d));
    WG_ASSERT(d != NULL, "out of memory%s", "");
    d->size = 1;
    snprintf(d->describe, sizeof(d->describe), "no MPI in this build");
#if defined(WG_HAVE_MPI)
    if (!wg_dist_launched()) {
        snprintf(d->describe, sizeof(d->describe), "one process (not started by mpirun)");
        d->sync = (wg_batch_sync){.ctx = d, .ranks = 1, .sum_i64 = sync_sum, .max_u64 = sync_max};
        return d;
    }
    WG_MPI_CHECK(MPI_Init(argc, argv));
    d->mpi = true;
    WG_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    WG_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    WG_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &d->size));
    MPI_Comm node;
    WG_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node));
    WG_MPI_CHECK(MPI_Comm_rank(node, &d->local_rank));
    WG_MPI_CHECK(MPI_Comm_free(&node));
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    WG_MPI_CHECK(MPI_Get_library_version(lib, &len));
    char *nl = strchr(lib, ',');
    if (nl) *nl = '\0';
    snprintf(d->describe, sizeof(d->describe), "MPI (%s), rank %d of %d, local rank %d", lib, d->rank, d->size,
             d->local_rank);
#else
    (void)argc, (void)argv;
#endif
    d->sync = (wg_batch_sync){.ctx = d, .ranks = d->size, .sum_i64 = sync_sum, .max_u64 = sync_max};
    return d;
}

void wg_dist_set_device_comm(wg_dist *d, wg_device_comm *c) { d->dev = c; }

void wg_dist_broadcast(wg_dist *d, void *buf, size_t bytes, int root)
{
#if defined(WG_HAVE_MPI)
    if (d->size > 1) {
        WG_ASSERT(bytes <= INT32_MAX, "broadcast of %zu bytes", bytes);
        WG_MPI_CHECK(MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD));
    }
#else
    (void)d, (void)buf, (void)bytes, (void)root;
#endif
}

void wg_dist_finalize(wg_dist *d)
{
    if (d == NULL) return;
    if (d->dev != NULL) {
        d->dev->free(d->dev->ctx);
        free(d->dev);
    }
#if defined(WG_HAVE_MPI)
    if (d->mpi) WG_MPI_CHECK(MPI_Finalize());
#endif
    free(d);
}

int wg_dist_rank(const wg_dist *d) { return d->rank; }
int wg_dist_size(const wg_dist *d) { return d->size; }
int wg_dist_local_rank(const wg_dist *d) { return d->local_rank; }
const char *wg_dist_describe(const wg_dist *d) { return d->describe; }
const wg_batch_sync *wg_dist_batch_sync(wg_dist *d) { return &d->sync; }

#if defined(WG_HAVE_MPI)
/* MPI counts are int: long buffers go in pieces. */
#define WG_MPI_PIECE ((size_t)1 << 28)

static void allreduce(void *v, size_t n, size_t esz, MPI_Datatype t, MPI_Op op)
{
    for (size_t i = 0; i < n; i += WG_MPI_PIECE) {
        size_t len = n - i < WG_MPI_PIECE ? n - i : WG_MPI_PIECE;
        WG_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, (char *)v + i * esz, (int)len, t, op, MPI_COMM_WORLD));
    }
}
#define WG_ALLREDUCE(d, v, n, t, op)                                                                      \
    do {                                                                                                  \
        if ((d)->size > 1) allreduce((v), (n), sizeof(*(v)), (t), (op));                             \
    } while (0)
#else
#define WG_ALLREDUCE(d, v, n, t, op) ((void)(d), (void)(v), (void)(n))
#endif

void wg_dist_sum_i64(wg_dist *d, int64_t *v, size_t n) { WG_ALLREDUCE(d, v, n, MPI_INT64_T, MPI_SUM); }
void wg_dist_max_u64(wg_dist *d, uint64_t *v, size_t n) { WG_ALLREDUCE(d, v, n, MPI_UINT64_T, MPI_MAX); }
void wg_dist_sum_f64(wg_dist *d, double *v, size_t n) { WG_ALLREDUCE(d, v, n, MPI_DOUBLE, MPI_SUM); }

static void sum_i16(wg_dist *d, int16_t *v, size_t n) { WG_ALLREDUCE(d, v, n, MPI_INT16_T, MPI_SUM); }
static void sum_i32(wg_dist *d, int32_t *v, size_t n) { WG_ALLREDUCE(d, v, n, MPI_INT32_T, MPI_SUM); }

int wg_dist_agree(wg_dist *d, int status)
{
    uint64_t s = (uint64_t)(status < 0 ? 0 : status);
    wg_dist_max_u64(d, &s, 1);
    return (int)s;
}

int wg_dist_compressed_container(int n) { return (int64_t)n * 127 <= INT16_MAX ? 2 : 4; }

/* ---- the gradients ---- */

/* Exact: the int64 accumulators summed. */
static void exact_int(wg_dist *d, wg_tensor *g)
{
    if (d->dev != NULL && d->dev->owns(d->dev->ctx, g)) {
        d->dev->sum_i64(d->dev->ctx, g->data, (size_t)wg_tensor_numel(g));
        return;
    }
    int64_t n = wg_tensor_numel(g), *h = wg_tensor_host_copy(g);
    wg_dist_sum_i64(d, h, (size_t)n);
    wg_tensor_upload(g, h);
    free(h);
}

/* Compressed: every rank's g (int64 at g->exp) rounded half to even onto the grid
 * 2^(e + shift), shift from the largest |g| of all ranks so that it fits 8 bits; the
 * int8 values summed in a container that holds any sum of the ranks'; g becomes that
 * sum at the agreed exponent. */
static void compressed_int(wg_dist *d, wg_tensor *g)
{
    int64_t n = wg_tensor_numel(g), *h = wg_tensor_host_copy(g);
    uint64_t m = 0;
    for (int64_t i = 0; i < n; i++) m = wg_abs_u64(h[i]) > m ? wg_abs_u64(h[i]) : m;
    wg_dist_max_u64(d, &m, 1);
    int shift = m == 0 ? 0 : wg_npow2_exp(m) - 7;
    if (shift < 0) shift = 0; /* small integers travel as they are */
    int width = wg_dist_compressed_container(d->size);
    void *q = malloc((size_t)n * (size_t)width);
    WG_ASSERT(q != NULL, "out of memory for %lld gradient values", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = wg_round_shift_clamp(h[i], shift, 127);
        if (width == 2) ((int16_t *)q)[i] = (int16_t)v;
        else ((int32_t *)q)[i] = (int32_t)v;
    }
    if (width == 2) sum_i16(d, q, (size_t)n);
    else sum_i32(d, q, (size_t)n);
    for (int64_t i = 0; i < n; i++) h[i] = width == 2 ? ((int16_t *)q)[i] : ((int32_t *)q)[i];
    wg_tensor_upload(g, h);
    g->exp += shift;
    free(q);
    free(h);
}

static void sum_float(wg_dist *d, wg_tensor *g)
{
    if (d->dev != NULL && d->dev->owns(d->dev->ctx, g)) {
        d->dev->sum_f32(d->dev->ctx, g->data, (size_t)wg_tensor_numel(g));
        return;
    }
    int64_t n = wg_tensor_numel(g);
    float *h = wg_tensor_host_copy(g);
    double *w = malloc((size_t)(n > 0 ? n : 1) * sizeof *w);
    WG_ASSERT(w != NULL, "out of memory for %lld gradient values", (long long)n);
    for (int64_t i = 0; i < n; i++) w[i] = h[i];
    wg_dist_sum_f64(d, w, (size_t)n);
    for (int64_t i = 0; i < n; i++) h[i] = (float)w[i];
    wg_tensor_upload(g, h);
    free(w);
    free(h);
}

/* Integer BN's gradients in exact mode: its backward's sums were taken over all ranks. */
static bool global_already(const wg_param *p, wg_dist_mode mode)
{
    return mode == WG_DIST_EXACT && p->kind == WG_PARAM_BN && p->grad.dtype != WG_F32;
}

wg_dist_traffic wg_dist_traffic_of(const wg_param *params, int nparams, int ranks)
{
    wg_dist_traffic t = {0};
    int width = wg_dist_compressed_container(ranks);
    for (int i = 0; i < nparams; i++) {
        const wg_tensor *g = &params[i].grad;
        int64_t n = wg_tensor_numel(g);
        bool fl = g->dtype == WG_F32;
        t.scalars += n;
        t.bytes_fp32 += 4 * n;
        t.bytes_exact += fl ? 4 * n : global_already(&params[i], WG_DIST_EXACT) ? 0 : 8 * n;
        t.bytes_compressed += fl ? 4 * n : width * n + 8;
    }
    return t;
}

void wg_dist_allreduce_grads(wg_dist *d, wg_dist_mode mode, wg_param *params, int nparams)
{
    if (d->size <= 1) return;
    for (int i = 0; i < nparams; i++) {
        wg_tensor *g = &params[i].grad;
        bool synced_bn = global_already(&params[i], mode);
        if (g->dtype == WG_F32) sum_float(d, g);
        else if (synced_bn) continue; /* its sums were taken over all ranks in the backward pass */
        else if (mode == WG_DIST_EXACT) exact_int(d, g);
        else compressed_int(d, g);
    }
}
