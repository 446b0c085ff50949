/* backend_cuda.cu: the CUDA backend's vtable, memory and device set-up.
 *
 * Context: the device index, one stream on which all of this backend's work is
 * queued in order, a cuBLASLt handle (for the int8 GEMMs of the convolution layers)
 * and one device word of scratch for reductions. No globals: everything lives in
 * the context (style.md item 2). Host transfers synchronize the stream, so a
 * download returns finished results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.cuh"
#include "backend_cuda.h"
#include "bn.cuh"
#include "conv.cuh"
#include "conv_igemm.cuh"
#include "conv_select.cuh"
#include "cuda_check.cuh"
#include "f32.cuh"
#include "gemm.cuh"
#include "pool.cuh"
#include "quant.h"
#include "quant.cuh"
#include "residual.cuh"

/* The oldest compute capability this build has kernels for (CMAKE_CUDA_ARCHITECTURES 80;90a). */
#define WG_CUDA_MIN_MAJOR 8

/* One context per device. d_scratch serves the reductions: one host thread per
 * context (the trainer's model), since concurrent reductions would share it. */
typedef struct wg_cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    unsigned long long *d_scratch;
    void *d_workspace; /* cuBLASLt's, WG_CUDA_GEMM_WORKSPACE bytes */
    void *d_arena;     /* the ops' scratch (im2col): arena_bytes, grown on demand, never shrunk */
    size_t arena_bytes;
    int conv_mode;     /* which kernels run the int8 convolutions (conv_tune.h) */
    bool wgmma;        /* the device runs the wgmma kernels (conv_igemm.cuh) */
    wg_conv_tune tune; /* the choice per shape and pass, in the auto mode */
} wg_cuda_ctx;

/* cuBLASLt's workspace: allocated with the context, so no GEMM allocates. */
#define WG_CUDA_GEMM_WORKSPACE ((size_t)32 << 20)

static wg_cuda_ctx *ctx_of(void *ctx)
{
    wg_cuda_ctx *c = (wg_cuda_ctx *)ctx;
    WG_CUDA_CHECK(cudaSetDevice(c->device));
    return c;
}

static void *cuda_alloc(void *ctx, size_t nbytes)
{
    ctx_of(ctx);
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, nbytes ? nbytes : 1);
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* clear it: running out is reported by the caller */
        return NULL;
    }
    WG_CUDA_CHECK(err);
    return p;
}

static void cuda_free(void *ctx, void *ptr)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    WG_CUDA_CHECK(cudaStreamSynchronize(c->stream)); /* queued work may still use it */
    WG_CUDA_CHECK(cudaFree(ptr));
}

static void cuda_upload(void *ctx, void *dst, const void *host_src, size_t nbytes)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    WG_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, nbytes, cudaMemcpyHostToDevice, c->stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

static void cuda_download(void *ctx, void *host_dst, const void *src, size_t nbytes)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    WG_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, nbytes, cudaMemcpyDeviceToHost, c->stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

/* Page-locked host memory: uploads from it go at the bus's full speed, asynchronously. */
static void *cuda_host_alloc(void *ctx, size_t nbytes)
{
    ctx_of(ctx);
    void *p = NULL;
    cudaError_t err = cudaHostAlloc(&p, nbytes ? nbytes : 1, cudaHostAllocDefault);
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return NULL;
    }
    WG_CUDA_CHECK(err);
    return p;
}

static void cuda_host_free(void *ctx, void *ptr)
{
    ctx_of(ctx);
    WG_CUDA_CHECK(cudaFreeHost(ptr));
}

static void cuda_zero(void *ctx, void *dst, size_t nbytes)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    WG_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, c->stream));
}

static void cuda_synchronize(void *ctx)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    WG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

static void cuda_free_ctx(void *ctx)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    WG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    WG_CUDA_CHECK(cudaFree(c->d_scratch));
    WG_CUDA_CHECK(cudaFree(c->d_workspace));
    WG_CUDA_CHECK(cudaFree(c->d_arena));
    WG_CUBLAS_CHECK(cublasLtDestroy(c->lt));
    WG_CUDA_CHECK(cudaStreamDestroy(c->stream));
    wg_conv_tune_free(&c->tune);
    free(c);
}

static uint64_t cuda_max_abs(void *ctx, const wg_tensor *x)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    return wg_max_abs_cuda(x, c->d_scratch, c->stream);
}

static void cuda_round_shift(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound)
{
    wg_round_shift_cuda(dst, src, shift, bound, ctx_of(ctx)->stream);
}

static void cuda_flag_split(void *ctx, wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int shift_coarse,
                            int bits)
{
    wg_flag_split_cuda(coarse, fine, src, shift_coarse, bits, ctx_of(ctx)->stream);
}

static void cuda_stochastic_shift(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound,
                                  wg_sr_stream sr)
{
    wg_stochastic_shift_cuda(dst, src, shift, bound, sr, ctx_of(ctx)->stream);
}

static void cuda_momentum_step(void *ctx, wg_tensor *m, const wg_tensor *g, wg_momentum_shifts s)
{
    wg_momentum_step_cuda(m, g, s, ctx_of(ctx)->stream);
}

static void cuda_update_step(void *ctx, wg_tensor *w, const wg_tensor *m, int64_t lr_q, wg_update_shifts s)
{
    wg_update_step_cuda(w, m, lr_q, s, ctx_of(ctx)->stream);
}

static void cuda_weight_decay(void *ctx, wg_tensor *g, const wg_tensor *w, int64_t wd_q, int shift)
{
    wg_weight_decay_cuda(g, w, wd_q, shift, ctx_of(ctx)->stream);
}

static uint64_t cuda_shift_sum(void *ctx, wg_tensor *dst, const wg_tensor *a, int sa, const wg_tensor *b, int sb)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    return wg_shift_sum_cuda(dst, a, sa, b, sb, c->d_scratch, c->stream);
}

static uint64_t cuda_accumulate(void *ctx, wg_tensor *acc, int sa, const wg_tensor *add, int sb)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    return wg_accumulate_cuda(acc, sa, add, sb, c->d_scratch, c->stream);
}

static void cuda_gap_s8_forward(void *ctx, const wg_tensor *a, wg_tensor *out)
{
    wg_gap_s8_forward_cuda(a, out, ctx_of(ctx)->stream);
}

static void cuda_gap_s8_backward(void *ctx, const wg_tensor *dout, wg_tensor *da)
{
    wg_gap_s8_backward_cuda(dout, da, ctx_of(ctx)->stream);
}

static void cuda_relu_round_shift(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound)
{
    wg_relu_round_shift_cuda(dst, src, shift, bound, ctx_of(ctx)->stream);
}

static void cuda_relu_mask(void *ctx, const wg_tensor *y, wg_tensor *de)
{
    wg_relu_mask_cuda(y, de, ctx_of(ctx)->stream);
}

static void cuda_gemm_s8_nt(void *ctx, int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                            int64_t ldb, int32_t *C, int64_t ldc)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_gemm_s8_nt_cuda(c->lt, c->d_workspace, WG_CUDA_GEMM_WORKSPACE, M, N, K, A, lda, B, ldb, C, ldc, c->stream);
}

/* Let the context's scratch go (after tuning: select_kernel). */
static void arena_release(wg_cuda_ctx *c)
{
    WG_CUDA_CHECK(cudaStreamSynchronize(c->stream)); /* queued work may still use it */
    WG_CUDA_CHECK(cudaFree(c->d_arena));
    c->d_arena = NULL;
    c->arena_bytes = 0;
}

/* At least bytes of the context's scratch: the first steps of a training grow it to
 * what its largest op needs, the later ones allocate nothing. */
static void *arena(wg_cuda_ctx *c, size_t bytes)
{
    if (bytes > c->arena_bytes) {
        arena_release(c);
        WG_CUDA_CHECK(cudaMalloc(&c->d_arena, bytes));
        c->arena_bytes = bytes;
    }
    return c->d_arena;
}

/* The kernel for a pass (conv_select.cuh). Tuning a new shape ran every candidate,
 * cuBLASLt's im2col included: the arena is let go after it, so that it grows back only
 * to what the chosen kernels need (the GPU memory of a training is theirs). */
template <class Run>
static int select_kernel(wg_cuda_ctx *c, const wg_conv_tune_key &key, const bool allowed[WG_KERNELS], const void *out,
                         size_t bytes, Run run)
{
    int before = c->tune.n;
    int k = wg_conv_select(&c->tune, c->conv_mode, key, allowed, out, bytes, c->d_scratch, c->stream, run);
    if (c->tune.n != before) arena_release(c);
    return k;
}

static uint64_t cuda_conv_s8_forward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                                     wg_tensor *y, wg_conv_ws *ws)
{
    (void)ws; /* the CPU's scratch; this backend's is the arena */
    wg_cuda_ctx *c = ctx_of(ctx);
    const int8_t *xd = (const int8_t *)x->data, *wd = (const int8_t *)w->data;
    int32_t *yd = (int32_t *)y->data;
    bool ig = wg_conv_igemm_forward_ok(g) && wg_conv_igemm_aligned(xd) && wg_conv_igemm_aligned(wd);
    const bool allowed[WG_KERNELS] = {true, ig, ig && c->wgmma};
    auto run = [&](int k) -> uint64_t {
        if (k != WG_KERNEL_CUBLASLT)
            return wg_conv_s8_forward_igemm(g, xd, wd, yd, k == WG_KERNEL_WGMMA, c->d_scratch, c->stream);
        void *s = arena(c, wg_conv_s8_forward_scratch(g));
        wg_conv_s8_forward_cuda(g, xd, wd, yd, s, c->lt, c->d_workspace, WG_CUDA_GEMM_WORKSPACE, c->stream);
        return wg_max_abs_cuda(y, c->d_scratch, c->stream); /* max |y|, as the CPU's takes it */
    };
    wg_conv_tune_key key = wg_conv_tune_key_of(g, WG_PASS_FORWARD, 1, 4);
    return run(select_kernel(c, key, allowed, yd, wg_tensor_nbytes(y), run));
}

static void cuda_bn_sums(void *ctx, const wg_tensor *x16, int64_t *s1, int64_t *s2)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_bn_sums_cuda(x16, s1, s2, arena(c, wg_bn_sums_scratch(x16->shape[3])), c->stream);
}

static int64_t cuda_bn_normalize(void *ctx, wg_tensor *x16, wg_tensor *y, int e_x, const int32_t *mu,
                                 const int32_t *sigma, const int16_t *gamma, const int16_t *beta, uint64_t *relu_max)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    void *s = arena(c, wg_bn_normalize_scratch(x16->shape[3]));
    return wg_bn_normalize_cuda(x16, y, e_x, mu, sigma, gamma, beta, relu_max, s, c->stream);
}

static void cuda_bn_bwd_sums(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, int64_t *b, int64_t *g,
                             uint64_t *dmax, uint64_t *hmax)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_bn_bwd_sums_cuda(dy, xhat, b, g, dmax, hmax, arena(c, wg_bn_bwd_scratch(xhat->shape[3])), c->stream);
}

static uint64_t cuda_bn_bwd_dx(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, wg_tensor *dx, int f,
                               int64_t count, const int16_t *gamma, const int32_t *sigma, const int64_t *b,
                               const int64_t *g, const uint64_t *dmax, const uint64_t *hmax)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    void *s = arena(c, wg_bn_bwd_scratch(xhat->shape[3]));
    return wg_bn_bwd_dx_cuda(dy, xhat, dx, f, count, gamma, sigma, b, g, dmax, hmax, s, c->stream);
}

static void cuda_bn_relu_mask(void *ctx, wg_tensor *dy, const wg_tensor *xhat, const int16_t *gamma,
                              const int16_t *beta)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_bn_relu_mask_cuda(dy, xhat, gamma, beta, arena(c, wg_bn_bwd_scratch(xhat->shape[3])), c->stream);
}

/* Whether the implicit-GEMM kernels take both operands of a pass (aligned pieces). */
static bool igemm_operands(const void *a, const int8_t *const *err, int nparts)
{
    bool ok = wg_conv_igemm_aligned(a);
    for (int p = 0; p < nparts; p++) ok = ok && wg_conv_igemm_aligned(err[p]);
    return ok;
}

/* cuBLASLt's backward (conv.cu) for dx, dw or both (a NULL one is skipped). */
static void lt_backward(wg_cuda_ctx *c, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                        const int8_t *const *parts, const int *shift, int nparts, wg_tensor *dx, int64_t *dw)
{
    void *s = arena(c, wg_conv_s8_backward_scratch(g, nparts));
    wg_conv_s8_backward_cuda(g, (const int8_t *)x->data, (const int8_t *)w->data, parts, shift, nparts,
                             dx ? dx->data : NULL, dx ? dx->dtype : WG_I64, dw, s, c->lt, c->d_workspace,
                             WG_CUDA_GEMM_WORKSPACE, c->stream);
}

/* Backward-data and backward-weight each on its chosen kernel (conv_select.cuh); one
 * cuBLASLt call where both are on cuBLASLt, which shares its transposes. */
static uint64_t cuda_conv_s8_backward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                                      const wg_tensor *const *err, int nparts, int e_min, wg_tensor *dx, wg_tensor *dw,
                                      wg_conv_ws *ws)
{
    (void)ws; /* the CPU's scratch; this backend's is the arena */
    wg_cuda_ctx *c = ctx_of(ctx);
    const int8_t *parts[2] = {NULL, NULL};
    int shift[2] = {0, 0};
    for (int p = 0; p < nparts; p++) {
        parts[p] = (const int8_t *)err[p]->data;
        shift[p] = err[p]->exp - e_min;
    }
    int64_t *dwd = (int64_t *)dw->data;
    bool igw = wg_conv_igemm_backward_weight_ok(g) && igemm_operands(x->data, parts, nparts);
    const bool allowed_w[WG_KERNELS] = {true, igw, false};
    auto run_w = [&](int k) -> uint64_t {
        if (k == WG_KERNEL_CUBLASLT) lt_backward(c, g, x, w, parts, shift, nparts, NULL, dwd);
        else wg_conv_s8_backward_weight_igemm(g, (const int8_t *)x->data, parts, shift, nparts, dwd, c->stream);
        return 0;
    };
    wg_conv_tune_key key_w = wg_conv_tune_key_of(g, WG_PASS_WEIGHT, nparts, 8);
    int kw = select_kernel(c, key_w, allowed_w, dwd, wg_tensor_nbytes(dw), run_w);
    if (dx == NULL) {
        run_w(kw);
        return WG_QUANT_MAX_UNKNOWN;
    }
    bool igd = wg_conv_igemm_backward_data_ok(g) && igemm_operands(w->data, parts, nparts) &&
               wg_conv_igemm_aligned(dx->data);
    const bool allowed_d[WG_KERNELS] = {true, igd, igd && c->wgmma};
    auto run_d = [&](int k) -> uint64_t {
        if (k != WG_KERNEL_CUBLASLT)
            return wg_conv_s8_backward_data_igemm(g, (const int8_t *)w->data, parts, shift, nparts, dx->data,
                                                  dx->dtype, k == WG_KERNEL_WGMMA,
                                                  arena(c, wg_conv_igemm_backward_scratch(g)), c->d_scratch, c->stream);
        lt_backward(c, g, x, w, parts, shift, nparts, dx, NULL);
        return wg_max_abs_cuda(dx, c->d_scratch, c->stream);
    };
    wg_conv_tune_key key_d = wg_conv_tune_key_of(g, WG_PASS_DATA, nparts, (int)wg_dtype_size(dx->dtype));
    int kd = select_kernel(c, key_d, allowed_d, dx->data, wg_tensor_nbytes(dx), run_d);
    if (kw == WG_KERNEL_CUBLASLT && kd == WG_KERNEL_CUBLASLT) {
        lt_backward(c, g, x, w, parts, shift, nparts, dx, dwd);
        return wg_max_abs_cuda(dx, c->d_scratch, c->stream);
    }
    run_w(kw);
    return run_d(kd);
}

static void cuda_maxpool_forward(void *ctx, const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y)
{
    wg_maxpool_forward_cuda(g, x, y, ctx_of(ctx)->stream);
}

static void cuda_maxpool_backward(void *ctx, const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy,
                                  wg_tensor *dx)
{
    wg_maxpool_backward_cuda(g, x, dy, dx, ctx_of(ctx)->stream);
}

/* ---- float32 ---- */

static wg_gemm_ctx gemm_ctx(const wg_cuda_ctx *c) { return (wg_gemm_ctx){c->lt, c->d_workspace, WG_CUDA_GEMM_WORKSPACE}; }

static void cuda_conv_f32_forward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                                  wg_tensor *y, wg_conv_ws *ws)
{
    (void)ws; /* the CPU's scratch; this backend's is the arena */
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_gemm_ctx gc = gemm_ctx(c);
    wg_conv_f32_forward_cuda(g, (const float *)x->data, (const float *)w->data, (float *)y->data,
                             arena(c, wg_conv_f32_scratch(g)), &gc, c->stream);
}

static void cuda_conv_f32_backward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                                   const wg_tensor *dy, wg_tensor *dx, wg_tensor *dw, wg_conv_ws *ws)
{
    (void)ws;
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_gemm_ctx gc = gemm_ctx(c);
    wg_conv_f32_backward_cuda(g, (const float *)x->data, (const float *)w->data, (const float *)dy->data,
                              dx ? (float *)dx->data : NULL, (float *)dw->data, arena(c, wg_conv_f32_scratch(g)), &gc,
                              c->stream);
}

static void cuda_bn_f32_moments(void *ctx, const wg_tensor *x, double *mean, double *var)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_bn_f32_moments_cuda(x, mean, var, arena(c, wg_bn_f32_scratch(x->shape[3])), c->stream);
}

static void cuda_bn_f32_normalize(void *ctx, const wg_tensor *x, const double *mean, const double *inv,
                                  const wg_tensor *gamma, const wg_tensor *beta, wg_tensor *xhat, wg_tensor *y)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_bn_f32_normalize_cuda(x, mean, inv, gamma, beta, xhat, y, arena(c, wg_bn_f32_scratch(x->shape[3])), c->stream);
}

static void cuda_bn_f32_bwd_sums(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, double *sb, double *sg)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_bn_f32_bwd_sums_cuda(dy, xhat, sb, sg, arena(c, wg_bn_f32_scratch(dy->shape[3])), c->stream);
}

static void cuda_bn_f32_bwd_dx(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, const wg_tensor *gamma,
                               const wg_tensor *inv_std, const double *mb, const double *mg, wg_tensor *dx)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    wg_bn_f32_bwd_dx_cuda(dy, xhat, gamma, inv_std, mb, mg, dx, arena(c, wg_bn_f32_scratch(dy->shape[3])), c->stream);
}

static void cuda_relu_f32(void *ctx, const wg_tensor *y, const wg_tensor *src, wg_tensor *dst)
{
    wg_relu_f32_cuda(y, src, dst, ctx_of(ctx)->stream);
}

static void cuda_add_f32(void *ctx, const wg_tensor *a, const wg_tensor *b, wg_tensor *out)
{
    wg_add_f32_cuda(a, b, out, ctx_of(ctx)->stream);
}

static void cuda_gap_f32_forward(void *ctx, const wg_tensor *a, wg_tensor *out)
{
    wg_gap_f32_forward_cuda(a, out, ctx_of(ctx)->stream);
}

static void cuda_gap_f32_backward(void *ctx, const wg_tensor *dout, wg_tensor *da)
{
    wg_gap_f32_backward_cuda(dout, da, ctx_of(ctx)->stream);
}

static void cuda_sgd_f32_step(void *ctx, wg_tensor *w, wg_tensor *v, const wg_tensor *g, float mu, float lr, float wd)
{
    wg_sgd_f32_step_cuda(w, v, g, mu, lr, wd, ctx_of(ctx)->stream);
}

static void cuda_fixed_to_f32(void *ctx, const wg_tensor *src, wg_tensor *dst)
{
    wg_fixed_to_f32_cuda(src, dst, ctx_of(ctx)->stream);
}

static float cuda_f32_max_abs(void *ctx, const wg_tensor *x, int64_t *nonfinite)
{
    wg_cuda_ctx *c = ctx_of(ctx);
    return wg_f32_max_abs_cuda(x, nonfinite, (unsigned long long *)arena(c, 2 * sizeof(unsigned long long)), c->stream);
}

static void cuda_f32_to_fixed(void *ctx, const wg_tensor *src, wg_tensor *dst, int e)
{
    wg_f32_to_fixed_cuda(src, dst, e, ctx_of(ctx)->stream);
}

static const struct wg_backend_i wg_backend_cuda_iface = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .zero = cuda_zero,
    .synchronize = cuda_synchronize,
    .free_ctx = cuda_free_ctx,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .max_abs = cuda_max_abs,
    .round_shift = cuda_round_shift,
    .flag_split = cuda_flag_split,
    .stochastic_shift = cuda_stochastic_shift,
    .momentum_step = cuda_momentum_step,
    .update_step = cuda_update_step,
    .weight_decay = cuda_weight_decay,
    .shift_sum = cuda_shift_sum,
    .accumulate = cuda_accumulate,
    .gap_s8_forward = cuda_gap_s8_forward,
    .gap_s8_backward = cuda_gap_s8_backward,
    .relu_round_shift = cuda_relu_round_shift,
    .relu_mask = cuda_relu_mask,
    .gemm_s8_nt = cuda_gemm_s8_nt,
    .conv_s8_forward = cuda_conv_s8_forward,
    .bn_sums = cuda_bn_sums,
    .bn_normalize = cuda_bn_normalize,
    .bn_bwd_sums = cuda_bn_bwd_sums,
    .bn_bwd_dx = cuda_bn_bwd_dx,
    .bn_relu_mask = cuda_bn_relu_mask,
    .conv_s8_backward = cuda_conv_s8_backward,
    .maxpool_forward = cuda_maxpool_forward,
    .maxpool_backward = cuda_maxpool_backward,
    .conv_f32_forward = cuda_conv_f32_forward,
    .conv_f32_backward = cuda_conv_f32_backward,
    .bn_f32_moments = cuda_bn_f32_moments,
    .bn_f32_normalize = cuda_bn_f32_normalize,
    .bn_f32_bwd_sums = cuda_bn_f32_bwd_sums,
    .bn_f32_bwd_dx = cuda_bn_f32_bwd_dx,
    .relu_f32 = cuda_relu_f32,
    .add_f32 = cuda_add_f32,
    .gap_f32_forward = cuda_gap_f32_forward,
    .gap_f32_backward = cuda_gap_f32_backward,
    .sgd_f32_step = cuda_sgd_f32_step,
    .fixed_to_f32 = cuda_fixed_to_f32,
    .f32_max_abs = cuda_f32_max_abs,
    .f32_to_fixed = cuda_f32_to_fixed,
};

wg_cuda_probe_status wg_cuda_probe(int *count, char *msg, size_t msglen)
{
    int n = 0, drv = 0, rt = 0;
    *count = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    (void)cudaGetLastError(); /* a probe leaves no sticky error behind */
    if (e == cudaSuccess && n > 0) {
        *count = n;
        snprintf(msg, msglen, "%d CUDA device%s", n, n == 1 ? "" : "s");
        return WG_CUDA_READY;
    }
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    if (cudaRuntimeGetVersion(&rt) != cudaSuccess) rt = 0;
    if (e == cudaSuccess || e == cudaErrorNoDevice || (e == cudaErrorInsufficientDriver && drv == 0)) {
        snprintf(msg, msglen, "no CUDA device on this machine (%s)",
                 e == cudaErrorInsufficientDriver ? "no NVIDIA driver installed" : "the driver reports 0 devices");
        return WG_CUDA_ABSENT;
    }
    snprintf(msg, msglen, "CUDA is not usable: cudaGetDeviceCount failed with %s (%s); driver supports CUDA %d.%d, "
                          "this build's runtime is %d.%d",
             cudaGetErrorName(e), cudaGetErrorString(e), drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
    return WG_CUDA_BROKEN;
}

wg_backend *wg_backend_cuda_init(int device, char *err, size_t errlen)
{
    int n = 0;
    if (wg_cuda_probe(&n, err, errlen) != WG_CUDA_READY) return NULL;
    if (device < 0 || device >= n) {
        snprintf(err, errlen, "CUDA device %d does not exist (this machine has %d: 0..%d)", device, n, n - 1);
        return NULL;
    }
    cudaDeviceProp prop;
    WG_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    if (prop.major < WG_CUDA_MIN_MAJOR) {
        snprintf(err, errlen, "CUDA device %d (%s) has compute capability %d.%d; wageubn's int8 kernels need %d.0 or newer",
                 device, prop.name, prop.major, prop.minor, WG_CUDA_MIN_MAJOR);
        return NULL;
    }
    const char *conv = getenv("WG_CUDA_CONV");
    int mode = WG_CONV_AUTO;
    if (conv != NULL && !wg_conv_mode_parse(conv, &mode)) {
        snprintf(err, errlen, "WG_CUDA_CONV = '%s': expected auto (each layer's fastest kernel, timed once; the "
                              "default), igemm (the mma.sync implicit GEMM where it applies), wgmma (the Hopper "
                              "implicit GEMM where it applies) or cublaslt (im2col and cuBLASLt everywhere)",
                 conv);
        return NULL;
    }
    wg_cuda_ctx *c = (wg_cuda_ctx *)calloc(1, sizeof(*c));
    WG_ASSERT(c != NULL, "out of host memory for the CUDA backend");
    c->device = device;
    c->conv_mode = mode;
    c->wgmma = wg_conv_wgmma_available(device);
    WG_CUDA_CHECK(cudaSetDevice(device));
    WG_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    WG_CUBLAS_CHECK(cublasLtCreate(&c->lt));
    WG_CUDA_CHECK(cudaMalloc((void **)&c->d_scratch, sizeof(*c->d_scratch)));
    WG_CUDA_CHECK(cudaMalloc(&c->d_workspace, WG_CUDA_GEMM_WORKSPACE));
    wg_backend *b = (wg_backend *)calloc(1, sizeof(*b));
    WG_ASSERT(b != NULL, "out of host memory for the CUDA backend");
    b->iface = &wg_backend_cuda_iface;
    b->ctx = c;
    return b;
}

void wg_cuda_set_conv(wg_backend *b, int mode)
{
    WG_ASSERT(strcmp(wg_backend_name(b), "cuda") == 0, "wg_cuda_set_conv on backend %s", wg_backend_name(b));
    WG_ASSERT(mode == WG_CONV_AUTO || (mode >= 0 && mode < WG_KERNELS), "convolution mode %d", mode);
    wg_cuda_ctx *c = ctx_of(b->ctx);
    WG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    c->conv_mode = mode;
}

bool wg_cuda_has_wgmma(wg_backend *b)
{
    WG_ASSERT(strcmp(wg_backend_name(b), "cuda") == 0, "wg_cuda_has_wgmma on backend %s", wg_backend_name(b));
    return ctx_of(b->ctx)->wgmma;
}

void wg_cuda_print_conv_choices(wg_backend *b, FILE *out)
{
    WG_ASSERT(strcmp(wg_backend_name(b), "cuda") == 0, "wg_cuda_print_conv_choices on backend %s",
              wg_backend_name(b));
    wg_conv_tune_print(&ctx_of(b->ctx)->tune, out);
}

cudaStream_t wg_cuda_stream(wg_backend *b)
{
    WG_ASSERT(strcmp(wg_backend_name(b), "cuda") == 0, "wg_cuda_stream on backend %s", wg_backend_name(b));
    return ctx_of(b->ctx)->stream;
}

size_t wg_cuda_memory_in_use(wg_backend *b)
{
    WG_ASSERT(strcmp(wg_backend_name(b), "cuda") == 0, "wg_cuda_memory_in_use on backend %s", wg_backend_name(b));
    ctx_of(b->ctx);
    size_t free_b = 0, total = 0;
    WG_CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
    return total - free_b;
}

void wg_cuda_print_info(FILE *out)
{
    int rt = 0, drv = 0;
    WG_CUDA_CHECK(cudaRuntimeGetVersion(&rt));
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    fprintf(out, "CUDA runtime %d.%d, driver %d.%d, cuBLASLt %zu", rt / 1000, (rt % 1000) / 10, drv / 1000,
            (drv % 1000) / 10, cublasLtGetVersion());
#if defined(WG_HAVE_NCCL)
    int nccl = 0;
    WG_NCCL_CHECK(ncclGetVersion(&nccl));
    fprintf(out, ", NCCL %d.%d.%d", nccl / 10000, (nccl / 100) % 100, nccl % 100);
#endif
    fputc('\n', out);
    int n = 0;
    char msg[256];
    if (wg_cuda_probe(&n, msg, sizeof(msg)) != WG_CUDA_READY) fprintf(out, "  %s\n", msg);
    for (int d = 0; d < n; d++) {
        cudaDeviceProp p;
        WG_CUDA_CHECK(cudaGetDeviceProperties(&p, d));
        fprintf(out, "  device %d: %s, compute capability %d.%d, %d SMs, %.1f GiB; wgmma convolutions: %s\n", d, p.name,
                p.major, p.minor, p.multiProcessorCount, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0),
                wg_conv_wgmma_available(d) ? "yes"
#if defined(WG_HAVE_SM90A)
                                           : "no (they run on compute capability 9.0)");
#else
                                           : "no (not built: CMAKE_CUDA_ARCHITECTURES lacks 90a)");
#endif
    }
}
