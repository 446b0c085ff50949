/* bn_int_generic.c: integer BN on a backend other than the CPU (bn.h).
 *
 * The CPU runs its fused passes (bn_int.c, bn_int_bwd.c). Another backend runs
 * elementwise passes of its own (backend.h's bn_sums, bn_normalize, bn_bwd_sums,
 * bn_bwd_dx, bn_relu_mask); the decisions between them are made here, on the host, with
 * the functions the CPU uses: the narrowing (the fit rule, wg_quant_fit_exp_max through
 * the backend's round_shift), mu and sigma from the sums, the running averages, the
 * backward exponent F; ReLU, A, E1 and E2 through act.h and quant.h. The fused CPU passes
 * give the bits of these chains (bn.h), so both backends give the same bits
 * (tests/test_cuda.c; without a GPU its harness runs this file on a CPU backend under
 * another name).
 *
 * Also here: the CPU's own entries for those passes (plain loops over the reference
 * formulas wg_bn_xhat and wg_bn_dx), which serve that harness. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_ops.h"
#include "bn.h"
#include "bn_int_impl.h"
#include "check.h"
#include "quant.h"
#include "residual.h"
#include "wg_bn_elem.h"
#include "wg_dtype.h"

/* t on x's backend, of dtype dt and n elements. */
static void check_like(const wg_tensor *t, const wg_tensor *x, wg_dtype dt, int64_t n, const char *what)
{
    WG_ASSERT(t->data != NULL && strcmp(wg_backend_name(t->backend), wg_backend_name(x->backend)) == 0,
              "%s is on backend %s, the BN input on %s", what, wg_backend_name(t->backend),
              wg_backend_name(x->backend));
    WG_ASSERT(t->dtype == dt && wg_tensor_numel(t) == n, "%s: %s of %lld elements, expected %s of %lld", what,
              wg_dtype_name(t->dtype), (long long)wg_tensor_numel(t), wg_dtype_name(dt), (long long)n);
}

/* The checks of bn_int.c's check_forward, on any backend; returns C. */
static int64_t check_forward(const wg_tensor *x, const wg_tensor *gamma16, const wg_tensor *beta16,
                             const wg_tensor *y, const wg_bn_int_saved *s, int64_t *count)
{
    WG_ASSERT(x->layout == WG_LAYOUT_NHWC && wg_dtype_is_int(x->dtype), "the BN input: %s %s, expected an integer "
              "NHWC tensor", wg_layout_name(x->layout), wg_dtype_name(x->dtype));
    int64_t c = x->shape[3], n = wg_tensor_numel(x);
    *count = n / c * wg_backend_batch_ranks(x->backend); /* the whole batch's, over the ranks */
    WG_ASSERT(*count <= WG_BN_COUNT_MAX, "the BN input: %lld values per channel (at most 2^32 - 1)",
              (long long)*count);
    check_like(y, x, WG_I32, n, "the BN output");
    check_like(&s->xhat, x, WG_I16, n, "saved x-hat");
    check_like(&s->mu, x, WG_I32, c, "saved mu");
    check_like(&s->sigma, x, WG_I32, c, "saved sigma");
    check_like(gamma16, x, WG_I16, c, "gamma16");
    check_like(beta16, x, WG_I16, c, "beta16");
    WG_ASSERT(gamma16->exp == WG_BN_XHAT_EXP && beta16->exp == WG_BN_XHAT_EXP,
              "gamma16 and beta16 must be at e = -7, not %d and %d", gamma16->exp, beta16->exp);
    return c;
}

/* x narrowed into work->xhat (the fit rule with x's grid as the floor); returns e_x. */
static int narrow(const wg_tensor *x, uint64_t x_max, wg_bn_int_saved *work)
{
    wg_quant_fit_exp_max(&work->xhat, x, x->exp, x_max);
    WG_ASSERT(work->xhat.exp >= WG_BN_EX_MIN, "the narrowed BN input has exponent %d (at least %d supported)",
              work->xhat.exp, WG_BN_EX_MIN);
    return work->xhat.exp;
}

/* x-hat (in place over x16) and y from mu and sigma (host arrays, also stored into work);
 * returns max(0, max y). */
static uint64_t normalize(wg_bn_int_saved *work, int e_x, const int32_t *mu, const int32_t *sigma,
                          const wg_tensor *gamma16, const wg_tensor *beta16, wg_tensor *y)
{
    wg_tensor_upload(&work->mu, mu);
    wg_tensor_upload(&work->sigma, sigma);
    int16_t *g = wg_tensor_host_copy(gamma16), *b = wg_tensor_host_copy(beta16);
    uint64_t relu_max;
    work->clamps =
        WG_BACKEND_OP(y, bn_normalize)(y->backend->ctx, &work->xhat, y, e_x, mu, sigma, g, b, &relu_max);
    wg_backend_sync_sum_n(y->backend, &work->clamps, 1);
    relu_max = wg_backend_sync_max(y->backend, relu_max);
    free(g), free(b);
    work->e_x = e_x;
    work->xhat.exp = WG_BN_XHAT_EXP;
    work->mu.exp = WG_BN_STAT_EXP;
    work->sigma.exp = WG_BN_STAT_EXP;
    y->exp = WG_BN_Y_EXP;
    return relu_max;
}

uint64_t bn_generic_forward_train(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16,
                                  const wg_tensor *beta16, wg_tensor *y, wg_bn_int_saved *saved,
                                  wg_bn_running *running)
{
    int64_t count, c = check_forward(x, gamma16, beta16, y, saved, &count);
    int e_x = narrow(x, x_max, saved);
    int64_t *s1 = calloc(2 * (size_t)c, sizeof *s1), *s2 = s1 + c;
    int32_t *mu = calloc(2 * (size_t)c, sizeof *mu), *sigma = mu + c;
    WG_ASSERT(s1 != NULL && mu != NULL, "out of memory (%lld channels)", (long long)c);
    WG_BACKEND_OP(x, bn_sums)(x->backend->ctx, &saved->xhat, s1, s2);
    wg_backend_sync_sum_n(x->backend, s1, 2 * (size_t)c); /* s1 and s2 of the whole batch */
    bn_pass_stats(s1, s2, count, c, e_x, mu, sigma);
    if (running) {
        check_like(&running->mean, x, WG_I64, c, "running mean");
        check_like(&running->sigma, x, WG_I64, c, "running sigma");
        int64_t *rm = wg_tensor_host_copy(&running->mean), *rs = wg_tensor_host_copy(&running->sigma);
        bn_pass_running_update(rm, rs, mu, sigma, c, running->initialized);
        wg_tensor_upload(&running->mean, rm);
        wg_tensor_upload(&running->sigma, rs);
        running->initialized = true;
        free(rm), free(rs);
    }
    uint64_t relu_max = normalize(saved, e_x, mu, sigma, gamma16, beta16, y);
    free(s1), free(mu);
    return relu_max;
}

uint64_t bn_generic_forward_eval(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16,
                                 const wg_tensor *beta16, const wg_bn_running *running, wg_tensor *y,
                                 wg_bn_int_saved *work)
{
    int64_t count, c = check_forward(x, gamma16, beta16, y, work, &count);
    check_like(&running->mean, x, WG_I64, c, "running mean");
    check_like(&running->sigma, x, WG_I64, c, "running sigma");
    WG_ASSERT(running->initialized, "evaluation with running statistics that no training step has set%s", "");
    int e_x = narrow(x, x_max, work);
    int64_t *rm = wg_tensor_host_copy(&running->mean), *rs = wg_tensor_host_copy(&running->sigma);
    int32_t *mu = calloc(2 * (size_t)c, sizeof *mu), *sigma = mu + c;
    WG_ASSERT(mu != NULL, "out of memory (%lld channels)", (long long)c);
    bn_pass_running_stats(rm, rs, c, mu, sigma);
    uint64_t relu_max = normalize(work, e_x, mu, sigma, gamma16, beta16, y);
    free(rm), free(rs), free(mu);
    return relu_max;
}

/* ---- backward ---------------------------------------------------------------------------- */

/* The checks of bn_int_bwd.c's check_backward, on any backend; returns C. */
static int64_t check_backward(const wg_tensor *dy, const wg_tensor *gamma16, const wg_bn_int_saved *saved,
                              const wg_tensor *dx, const wg_tensor *dgamma, const wg_tensor *dbeta, int64_t *count)
{
    const wg_tensor *h = &saved->xhat;
    WG_ASSERT(h->layout == WG_LAYOUT_NHWC, "saved x-hat: layout %s, expected nhwc", wg_layout_name(h->layout));
    int64_t c = h->shape[3], n = wg_tensor_numel(h);
    *count = n / c * wg_backend_batch_ranks(dy->backend);
    WG_ASSERT(wg_dtype_is_int(dy->dtype) && wg_tensor_numel(dy) == n, "the BN output error dy: %s of %lld elements",
              wg_dtype_name(dy->dtype), (long long)wg_tensor_numel(dy));
    check_like(h, dy, WG_I16, n, "saved x-hat");
    check_like(dx, dy, WG_I64, n, "the BN input error dx");
    check_like(&saved->sigma, dy, WG_I32, c, "saved sigma");
    check_like(gamma16, dy, WG_I16, c, "gamma16");
    check_like(dgamma, dy, WG_I64, c, "dgamma");
    check_like(dbeta, dy, WG_I64, c, "dbeta");
    WG_ASSERT(h->exp == WG_BN_XHAT_EXP && saved->sigma.exp == WG_BN_STAT_EXP && gamma16->exp == WG_BN_XHAT_EXP,
              "x-hat, sigma, gamma16 at e = %d, %d, %d (expected -7, -15, -7: a training forward pass first)", h->exp,
              saved->sigma.exp, gamma16->exp);
    return c;
}

uint64_t bn_generic_backward(const wg_tensor *dy, const wg_tensor *gamma16, const wg_bn_int_saved *saved,
                             wg_tensor *dx, wg_tensor *dgamma, wg_tensor *dbeta)
{
    int64_t count, c = check_backward(dy, gamma16, saved, dx, dgamma, dbeta, &count);
    if (wg_dtype_bound(dy->dtype) > WG_BN_DY_MAX) {
        uint64_t m = WG_BACKEND_OP(dy, max_abs)(dy->backend->ctx, dy);
        WG_ASSERT(m <= WG_BN_DY_MAX, "BN backward: max |dy| = %llu (at most %d: quantize with E1 first)",
                  (unsigned long long)m, WG_BN_DY_MAX);
    }
    int64_t *b = calloc(2 * (size_t)c, sizeof *b), *g = b + c;
    uint64_t *dmax = calloc(2 * (size_t)c, sizeof *dmax), *hmax = dmax + c;
    WG_ASSERT(b != NULL && dmax != NULL, "out of memory (%lld channels)", (long long)c);
    WG_BACKEND_OP(dy, bn_bwd_sums)(dy->backend->ctx, dy, &saved->xhat, b, g, dmax, hmax);
    wg_backend_sync_sum_n(dy->backend, b, 2 * (size_t)c); /* B and G of the whole batch: dbeta, dgamma too */
    wg_backend_sync_max_n(dy->backend, dmax, 2 * (size_t)c);
    int16_t *gamma = wg_tensor_host_copy(gamma16);
    int32_t *sigma = wg_tensor_host_copy(&saved->sigma);
    int f = bn_bwd_exponent(gamma, sigma, count, c, b, g, dmax, hmax);
    wg_tensor_upload(dbeta, b);
    wg_tensor_upload(dgamma, g);
    dbeta->exp = dy->exp;
    dgamma->exp = dy->exp + WG_BN_XHAT_EXP;
    dx->exp = dy->exp - 6 - f; /* as bn_int_bwd.c */
    uint64_t dx_max = WG_BACKEND_OP(dy, bn_bwd_dx)(dy->backend->ctx, dy, &saved->xhat, dx, f, count, gamma, sigma, b,
                                                   g, dmax, hmax);
    free(b), free(dmax), free(gamma), free(sigma);
    return wg_backend_sync_max(dy->backend, dx_max);
}

/* The chain bn.h says wg_bn_int_backward_act gives the bits of: E1, ReLU's mask (y > 0
 * from the saved x-hat), the backward pass, then E2's parts or the sum into acc. */
uint64_t bn_generic_backward_act(const wg_tensor *err, uint64_t err_max, int e1_bits, const wg_tensor *gamma16,
                                 const wg_tensor *beta16, const wg_bn_int_saved *saved, wg_tensor *dy, wg_tensor *dx,
                                 const wg_bn_int_bwd_e2 *e2, wg_tensor *acc, wg_tensor *dgamma, wg_tensor *dbeta)
{
    WG_ASSERT(!(e2 && acc), "BN backward: E2's parts or a sum, not both%s", "");
    WG_ASSERT(dy->dtype == WG_I8 && e1_bits >= 2 && e1_bits <= 8, "BN backward: dy %s, E1 of %d bits",
              wg_dtype_name(dy->dtype), e1_bits);
    check_like(beta16, dy, WG_I16, gamma16->shape[0], "beta16");
    wg_quant_shift_max(dy, err, e1_bits, err_max);
    int16_t *g = wg_tensor_host_copy(gamma16), *b = wg_tensor_host_copy(beta16);
    WG_BACKEND_OP(dy, bn_relu_mask)(dy->backend->ctx, dy, &saved->xhat, g, b);
    free(g), free(b);
    uint64_t dx_max = bn_generic_backward(dy, gamma16, saved, dx, dgamma, dbeta);
    if (e2 && e2->fine) wg_quant_flag_max(e2->coarse, e2->fine, dx, e2->bits, dx_max);
    else if (e2) wg_quant_shift_max(e2->coarse, dx, e2->bits, dx_max);
    if (e2) return WG_QUANT_MAX_UNKNOWN;
    return acc ? wg_error_accumulate(acc, dx) : dx_max;
}

/* ---- the CPU's entries for the passes ----------------------------------------------- */

void wg_cpu_bn_sums(void *ctx, const wg_tensor *x16, int64_t *s1, int64_t *s2)
{
    (void)ctx;
    int64_t c = x16->shape[3], n = wg_tensor_numel(x16);
    const int16_t *x = x16->data;
    memset(s1, 0, (size_t)c * sizeof *s1);
    memset(s2, 0, (size_t)c * sizeof *s2);
    for (int64_t i = 0; i < n; i++) {
        s1[i % c] += x[i];
        s2[i % c] += (int64_t)x[i] * x[i];
    }
}

int64_t wg_cpu_bn_normalize(void *ctx, wg_tensor *x16, wg_tensor *y, int e_x, const int32_t *mu, const int32_t *sigma,
                            const int16_t *gamma, const int16_t *beta, uint64_t *relu_max)
{
    (void)ctx;
    int64_t c = x16->shape[3], n = wg_tensor_numel(x16), clamps = 0, ymax = 0;
    wg_bn_xhat_chan *k = malloc((size_t)c * sizeof *k);
    WG_ASSERT(k != NULL, "out of memory (%lld channels)", (long long)c);
    for (int64_t ch = 0; ch < c; ch++) k[ch] = wg_bn_xhat_chan_init(mu[ch], sigma[ch], e_x);
    int16_t *x = x16->data;
    int32_t *o = y->data;
    for (int64_t i = 0; i < n; i++) {
        int clamped = 0;
        int64_t h = wg_bn_xhat(x[i], e_x, &k[i % c], &clamped), v = wg_bn_y(h, gamma[i % c], beta[i % c]);
        x[i] = (int16_t)h;
        o[i] = (int32_t)v;
        clamps += clamped;
        ymax = v > ymax ? v : ymax;
    }
    free(k);
    *relu_max = (uint64_t)ymax;
    return clamps;
}

void wg_cpu_bn_bwd_sums(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, int64_t *b, int64_t *g, uint64_t *dmax,
                        uint64_t *hmax)
{
    (void)ctx;
    int64_t c = xhat->shape[3], n = wg_tensor_numel(xhat);
    const int16_t *h = xhat->data;
    memset(b, 0, (size_t)c * sizeof *b), memset(g, 0, (size_t)c * sizeof *g);
    memset(dmax, 0, (size_t)c * sizeof *dmax), memset(hmax, 0, (size_t)c * sizeof *hmax);
    for (int64_t i = 0; i < n; i++) {
        int64_t d = wg_load_i64(dy->data, dy->dtype, i), ch = i % c;
        b[ch] += d;
        g[ch] += d * h[i];
        dmax[ch] = wg_abs_u64(d) > dmax[ch] ? wg_abs_u64(d) : dmax[ch];
        hmax[ch] = wg_abs_u64(h[i]) > hmax[ch] ? wg_abs_u64(h[i]) : hmax[ch];
    }
}

uint64_t wg_cpu_bn_bwd_dx(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, wg_tensor *dx, int f, int64_t count,
                          const int16_t *gamma, const int32_t *sigma, const int64_t *b, const int64_t *g,
                          const uint64_t *dmax, const uint64_t *hmax)
{
    (void)ctx;
    int64_t c = xhat->shape[3], n = wg_tensor_numel(xhat);
    wg_bn_bwd_chan *k = malloc((size_t)c * sizeof *k);
    WG_ASSERT(k != NULL, "out of memory (%lld channels)", (long long)c);
    for (int64_t ch = 0; ch < c; ch++)
        k[ch] = wg_bn_bwd_chan_init(gamma[ch], sigma[ch], (uint64_t)count, b[ch], g[ch], dmax[ch], hmax[ch]);
    const int16_t *h = xhat->data;
    int64_t *o = dx->data;
    uint64_t mx = 0;
    for (int64_t i = 0; i < n; i++) {
        o[i] = wg_bn_dx(wg_load_i64(dy->data, dy->dtype, i), h[i], (uint64_t)count, &k[i % c], f);
        mx = wg_abs_u64(o[i]) > mx ? wg_abs_u64(o[i]) : mx;
    }
    free(k);
    return mx;
}

void wg_cpu_bn_relu_mask(void *ctx, wg_tensor *dy, const wg_tensor *xhat, const int16_t *gamma, const int16_t *beta)
{
    (void)ctx;
    int64_t c = xhat->shape[3], n = wg_tensor_numel(xhat);
    const int16_t *h = xhat->data;
    int8_t *d = dy->data;
    for (int64_t i = 0; i < n; i++)
        if (wg_bn_y(h[i], gamma[i % c], beta[i % c]) <= 0) d[i] = 0;
}
