/* backend.h: the interface between the trainer and where the work runs.
 *
 * A backend is a C vtable plus a context (design principle 4, style.md item 2;
 * modelled on ggml's backend interface). Models, layers and the quantizer layer
 * (quant.c) call these entries and never a kernel directly. Backends: the CPU
 * reference (backend_cpu.c, complete) and CUDA (cuda/backend_cuda.cu).
 *
 * The op entries are the elementwise and reduction primitives of docs/numerics.md
 * (quantizers, the optimizer's steps, the aligned sums of residual.h, global average
 * pooling, ReLU), the int8 GEMM, the int8 convolutions and integer BN's elementwise
 * passes.
 * The exponent decisions (which shift, which bound) are made once, on the host, by
 * quant.c, so every backend receives the same integers and runs the same shared
 * formulas of wg_intmath.h / wg_philox.h: the backends agree bit for bit.
 *
 * Entries marked "optional" may be NULL; quant.c reports a missing one by name. */
#ifndef WG_BACKEND_H
#define WG_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"
#include "wg_philox.h"

struct wg_conv_geom; /* conv.h */
struct wg_conv_ws;
struct wg_maxpool_geom; /* pool.h */

#ifdef __cplusplus
extern "C" {
#endif

/* Shifts of the momentum step m' = Q(m * 2^-mshift + g, k_m), all in units of a
 * common exponent e_t = min(e_m - mshift, e_g) (docs/numerics.md, "Momentum"). */
typedef struct wg_momentum_shifts {
    int m_up;      /* m moves up to e_t: m << m_up */
    int g_up;      /* g moves up to e_t: g << g_up */
    int out_down;  /* the sum moves back to e_m: round-half-even >> out_down */
    int64_t bound; /* saturation of m in its container */
} wg_momentum_shifts;

/* Shifts of the update w' = Q(w - lr * m, k_u) in units of e_t = min(e_w, e_lr + e_m)
 * (docs/numerics.md, "Update"). */
typedef struct wg_update_shifts {
    int w_up;
    int p_up;      /* the product lr * m moves up to e_t */
    int out_down;
    int64_t bound;
} wg_update_shifts;

/* Everything the stochastic rounding of one tensor needs (wg_philox.h). */
typedef struct wg_sr_stream {
    wg_philox_key key;
    uint32_t step;
    uint32_t tensor_id;
} wg_sr_stream;

struct wg_backend_i {
    const char *name;

    /* Memory. alloc returns NULL when the memory is not there. */
    void *(*alloc)(void *ctx, size_t nbytes);
    void (*free)(void *ctx, void *ptr);
    void (*upload)(void *ctx, void *dst, const void *host_src, size_t nbytes);
    void (*download)(void *ctx, void *host_dst, const void *src, size_t nbytes);
    void (*zero)(void *ctx, void *dst, size_t nbytes);
    /* Optional: wait until all queued work is done (NULL: work is synchronous). */
    void (*synchronize)(void *ctx);
    /* Optional: release the context (called by wg_backend_free). */
    void (*free_ctx)(void *ctx);
    /* Optional: host memory the backend uploads from fastest (CUDA: page-locked), for
     * the input pipeline's batch buffers; NULL where plain malloc is as good. */
    void *(*host_alloc)(void *ctx, size_t nbytes);
    void (*host_free)(void *ctx, void *ptr);

    /* max |x| over an integer tensor, as an unsigned integer (exact for INT64_MIN).
     * Integer maxima do not depend on reduction order. 0 for an empty tensor. */
    uint64_t (*max_abs)(void *ctx, const wg_tensor *x);

    /* dst[i] = clamp(round_half_even(src[i] * 2^-shift), -bound, bound); negative
     * shift = exact left shift. dst and src have the same element count and may be
     * the same tensor. The exponents are the caller's business. */
    void (*round_shift)(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound);

    /* E2's flag split (wg_flag_split in wg_quant_elem.h) of every element. */
    void (*flag_split)(void *ctx, wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int shift_coarse,
                       int bits);

    /* dst[i] = clamp(floor((src[i] + r_i) / 2^shift), -bound, bound), r_i uniform in
     * [0, 2^shift) from the element's Philox word (wg_rshift_sr). */
    void (*stochastic_shift)(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound,
                             wg_sr_stream stream);

    /* In place on m (wg_momentum_elem). */
    void (*momentum_step)(void *ctx, wg_tensor *m, const wg_tensor *g, wg_momentum_shifts s);

    /* In place on w, with the learning rate's integer lr_q (wg_update_elem). */
    void (*update_step)(void *ctx, wg_tensor *w, const wg_tensor *m, int64_t lr_q, wg_update_shifts s);

    /* In place on the raw gradient g (int64): wg_weight_decay_elem(g, w, wd_q, shift), w
     * the int32 master weights. */
    void (*weight_decay)(void *ctx, wg_tensor *g, const wg_tensor *w, int64_t wd_q, int shift);

    /* The aligned sums of residual.h (wg_residual_elem.h). shift_sum: dst[i] =
     * wg_shift_sum_elem(a[i], sa, b[i], sb) stored in dst's integer container (int32:
     * modulo 2^32, for the caller to keep only when every sum fits); returns the largest
     * |sum|. dst may be a or b. accumulate: acc[i] = wg_accumulate_elem(acc[i], sa,
     * add[i], sb), acc int64; returns max |acc|. */
    uint64_t (*shift_sum)(void *ctx, wg_tensor *dst, const wg_tensor *a, int sa, const wg_tensor *b, int sb);
    uint64_t (*accumulate)(void *ctx, wg_tensor *acc, int sa, const wg_tensor *add, int sb);

    /* Global average pooling in int8 mode (pool.h, checked there): out[b][c] =
     * RNE(sum over the H*W positions of a[b][.][.][c] / (H*W)), a int8 NHWC, out int8;
     * backward, da (int64 NHWC) = wg_gap_spread_elem(dout[b][c], H*W) at every position. */
    void (*gap_s8_forward)(void *ctx, const wg_tensor *a, wg_tensor *out);
    void (*gap_s8_backward)(void *ctx, const wg_tensor *dout, wg_tensor *da);

    /* ReLU (act.h): dst[i] = wg_relu_round_shift_elem(src[i], shift, bound) (dst may be
     * src); relu_mask: de[i] = 0 where y[i] <= 0 (de int8, y int32), in place. */
    void (*relu_round_shift)(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound);
    void (*relu_mask)(void *ctx, const wg_tensor *y, wg_tensor *de);

    /* The int8 GEMM of gemm.h's wg_gemm_s8_nt on the backend's memory: C[M][N] =
     * A[M][K] B[N][K]^T, row-major, int32, exact. A backend may refuse shapes it cannot
     * run (CUDA: K and the leading dimensions multiples of 4), naming them. */
    void (*gemm_s8_nt)(void *ctx, int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                       int64_t ldb, int32_t *C, int64_t ldc);

    /* The int8 forward convolution of conv.h (wg_conv_s8_forward, which checks the
     * operands and sets y's exponent): y = conv(x, w), int32; returns max |y|, or
     * WG_QUANT_MAX_UNKNOWN where the backend did not take it. ws: the CPU's scratch. */
    uint64_t (*conv_s8_forward)(void *ctx, const struct wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                                wg_tensor *y, struct wg_conv_ws *ws);

    /* Integer BN's two elementwise forward passes (bn_int_generic.c makes the decisions
     * between them on the host). bn_sums: per channel of x16 (int16 NHWC), s1 = sum x16
     * and s2 = sum x16^2 into host arrays of C. bn_normalize: x16 -> x-hat in place
     * (wg_bn_xhat with e_x and the channel's mu, sigma) and y = wg_bn_y(x-hat, gamma,
     * beta) (int32); mu, sigma, gamma, beta: host arrays of C; returns the clamps and sets
     * *relu_max = max(0, max y). The CPU backend runs fused passes of its own instead
     * (bn_int.c); its entries serve the tests. */
    void (*bn_sums)(void *ctx, const wg_tensor *x16, int64_t *s1, int64_t *s2);
    int64_t (*bn_normalize)(void *ctx, wg_tensor *x16, wg_tensor *y, int e_x, const int32_t *mu, const int32_t *sigma,
                            const int16_t *gamma, const int16_t *beta, uint64_t *relu_max);
    /* And its backward passes. bn_bwd_sums: per channel B = sum dy, G = sum dy x-hat,
     * max |dy|, max |x-hat| into host arrays of C. bn_bwd_dx: dx (int64) = wg_bn_dx(dy,
     * x-hat, count, the channel's wg_bn_bwd_chan_init(gamma, sigma, count, B, G, dmax,
     * hmax), f) from those host arrays; returns max |dx|. bn_relu_mask: dy (int8) = 0
     * where wg_bn_y(x-hat, gamma, beta) <= 0, in place. */
    void (*bn_bwd_sums)(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, int64_t *b, int64_t *g, uint64_t *dmax,
                        uint64_t *hmax);
    uint64_t (*bn_bwd_dx)(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, wg_tensor *dx, int f, int64_t count,
                          const int16_t *gamma, const int32_t *sigma, const int64_t *b, const int64_t *g,
                          const uint64_t *dmax, const uint64_t *hmax);
    void (*bn_relu_mask)(void *ctx, wg_tensor *dy, const wg_tensor *xhat, const int16_t *gamma, const int16_t *beta);

    /* The int8 convolution's backward pass (conv.h's wg_conv_s8_backward checks the
     * operands, then sets the exponents): with the error parts err[p] (int8) taken at
     * 2^(e_p - e_min), dx (NULL: none; int32 or int64) = the sum of the parts'
     * backward-data, dw (int64) = the sum of their weight gradients, both exact; returns
     * max |dx|, or WG_QUANT_MAX_UNKNOWN where not taken. ws: the CPU's scratch. */
    uint64_t (*conv_s8_backward)(void *ctx, const struct wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                                 const wg_tensor *const *err, int nparts, int e_min, wg_tensor *dx, wg_tensor *dw,
                                 struct wg_conv_ws *ws);

    /* Max pooling (pool.h) of any container: int8 mode's integers or float32. forward:
     * y (x's dtype) = each window's maximum. backward: dx = at each position, the errors
     * of the windows whose first arg-max it is: for integer x, dx int64, the exact sum
     * (clamped to +-INT64_MAX); for float x, dx float32, summed in (oy, ox) order from 0,
     * so that this path too gives the same bits on every backend. */
    void (*maxpool_forward)(void *ctx, const struct wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y);
    void (*maxpool_backward)(void *ctx, const struct wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy,
                             wg_tensor *dx);

    /* ---- float32: the fp32 mode and the reference preset's float layers ----------------
     * Not bit-exact across backends where they sum many terms (the GEMMs run cuBLAS's
     * SGEMM, TF32 off; the per-channel sums go in the backend's order); the elementwise
     * ones and the conversions are exact. */

    /* conv.h's float convolutions: y = conv(x, w); backward dx (NULL: none) and dw. */
    void (*conv_f32_forward)(void *ctx, const struct wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                             wg_tensor *y, struct wg_conv_ws *ws);
    void (*conv_f32_backward)(void *ctx, const struct wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                              const wg_tensor *dy, wg_tensor *dx, wg_tensor *dw, struct wg_conv_ws *ws);
    /* Float BN's passes (bn_f32.c makes the per-channel decisions on the host): the mean
     * and biased variance of each channel of NHWC x, in double, into host arrays of C;
     * xhat (NULL: not kept) = (x - mean) inv and y = gamma xhat + beta (mean, inv: host
     * arrays; gamma, beta: the backend's [C] tensors); backward sums sb = sum dy and sg =
     * sum dy xhat per channel (double, host arrays), and dx = gamma inv_std (dy - mb -
     * xhat mg) with the host means mb, mg. */
    void (*bn_f32_moments)(void *ctx, const wg_tensor *x, double *mean, double *var);
    void (*bn_f32_normalize)(void *ctx, const wg_tensor *x, const double *mean, const double *inv,
                             const wg_tensor *gamma, const wg_tensor *beta, wg_tensor *xhat, wg_tensor *y);
    void (*bn_f32_bwd_sums)(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, double *sb, double *sg);
    void (*bn_f32_bwd_dx)(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, const wg_tensor *gamma,
                          const wg_tensor *inv_std, const double *mb, const double *mg, wg_tensor *dx);
    /* dst[i] = y[i] > 0 ? src[i] : 0: the forward ReLU with src = y, its backward with
     * src = dst = the error. */
    void (*relu_f32)(void *ctx, const wg_tensor *y, const wg_tensor *src, wg_tensor *dst);
    void (*add_f32)(void *ctx, const wg_tensor *a, const wg_tensor *b, wg_tensor *out);
    /* pool.h's float global average pooling, its forward and backward. */
    void (*gap_f32_forward)(void *ctx, const wg_tensor *a, wg_tensor *out);
    void (*gap_f32_backward)(void *ctx, const wg_tensor *dout, wg_tensor *da);
    /* Momentum SGD in float, in place: v = mu v + g + wd w, then w -= lr v. */
    void (*sgd_f32_step)(void *ctx, wg_tensor *w, wg_tensor *v, const wg_tensor *g, float mu, float lr, float wd);
    /* convert.h's conversions: dst (f32) = src 2^(src->exp), each rounded once; the
     * largest |x| of a float tensor (NaNs left out) and how many of its values are not
     * finite; dst (int32 or int64) = RNE(src 2^-e). */
    void (*fixed_to_f32)(void *ctx, const wg_tensor *src, wg_tensor *dst);
    float (*f32_max_abs)(void *ctx, const wg_tensor *x, int64_t *nonfinite);
    void (*f32_to_fixed)(void *ctx, const wg_tensor *src, wg_tensor *dst, int e);
};

/* Data parallelism (dist/): with the batch split over ranks, every reduction over the
 * batch that a decision rests on (the maxima that set exponents, BN's per-channel sums
 * and counts, the loss's batch size) is taken over all ranks, so that each rank makes
 * the decisions one process makes for the whole batch: [dist] allreduce = exact. The
 * layers call wg_backend_sync_* on what their backend's entries return; without a sync
 * (one process, or BN kept per rank) those are no-ops. */
typedef struct wg_batch_sync {
    void *ctx;
    int ranks; /* the batch is split evenly over this many ranks */
    void (*sum_i64)(void *ctx, int64_t *v, size_t n);
    void (*max_u64)(void *ctx, uint64_t *v, size_t n);
} wg_batch_sync;

struct wg_backend {
    const struct wg_backend_i *iface;
    void *ctx;
    const wg_batch_sync *sync; /* NULL: the batch is all here */
};

/* t's backend's entry op, or an internal error naming it when the backend has none. */
void wg_backend_require(const wg_tensor *t, int present, const char *op);
#define WG_BACKEND_OP(t, op) (wg_backend_require((t), (t)->backend->iface->op != NULL, #op), (t)->backend->iface->op)

/* The CPU reference backend. Never fails. */
wg_backend *wg_backend_cpu_init(void);
/* The same backend under the name "cpu-generic": the layers with fused passes of their
 * own on the CPU (integer BN's forward) take the path of the other backends on it. For
 * tests: test_cuda_harness compares that path with the CPU's. */
wg_backend *wg_backend_cpu_generic_init(void);
void wg_backend_free(wg_backend *b);
const char *wg_backend_name(const wg_backend *b);
/* Whether b is the CPU backend itself (the layers with fused CPU passes take them there;
 * not under a batch sync, whose reductions those passes do not expose). */
bool wg_backend_is_cpu(const wg_backend *b);
/* Make b's batch reductions global (NULL: local again). */
void wg_backend_set_sync(wg_backend *b, const wg_batch_sync *sync);
/* The reductions over all ranks, in place (identity without a sync). A maximum of
 * WG_QUANT_MAX_UNKNOWN stays unknown: every rank takes the same path. */
uint64_t wg_backend_sync_max(const wg_backend *b, uint64_t m);
void wg_backend_sync_max_n(const wg_backend *b, uint64_t *v, size_t n);
void wg_backend_sync_sum_n(const wg_backend *b, int64_t *v, size_t n);
/* How many ranks share the batch (1 without a sync). */
int wg_backend_batch_ranks(const wg_backend *b);
void wg_backend_synchronize(wg_backend *b);

#ifdef __cplusplus
}
#endif

#endif
