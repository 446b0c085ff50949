/* bn_int_generic.c: integer BN's forward passes on a backend other than the CPU (bn.h).
 *
 * The CPU runs its fused passes (bn_int.c). Another backend runs two elementwise passes
 * of its own (backend.h's bn_sums and bn_normalize); the decisions between them are
 * made here, on the host, with the functions the CPU uses: the narrowing (the fit rule,
 * wg_quant_fit_exp_max through the backend's round_shift), mu and sigma from the sums,
 * the running averages; ReLU and A then follow through act.h. The fused CPU passes give
 * the bits of this chain, so both backends give the same bits (tests/test_cuda.c; without
 * a GPU its harness runs this file on a CPU backend under another name).
 *
 * Also here: the CPU's own entries for those two passes (plain loops over the reference
 * formula wg_bn_xhat), which serve that harness. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_ops.h"
#include "bn.h"
#include "bn_int_impl.h"
#include "check.h"
#include "quant.h"
#include "wg_bn_elem.h"

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
    *count = n / c;
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

static void *host_copy(const wg_tensor *t)
{
    void *h = malloc(wg_tensor_nbytes(t) ? wg_tensor_nbytes(t) : 1);
    WG_ASSERT(h != NULL, "out of memory (%zu bytes)", wg_tensor_nbytes(t));
    wg_tensor_download(t, h);
    return h;
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
    int16_t *g = host_copy(gamma16), *b = host_copy(beta16);
    uint64_t relu_max;
    work->clamps =
        WG_BACKEND_OP(y, bn_normalize)(y->backend->ctx, &work->xhat, y, e_x, mu, sigma, g, b, &relu_max);
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
    bn_pass_stats(s1, s2, count, c, e_x, mu, sigma);
    if (running) {
        check_like(&running->mean, x, WG_I64, c, "running mean");
        check_like(&running->sigma, x, WG_I64, c, "running sigma");
        int64_t *rm = host_copy(&running->mean), *rs = host_copy(&running->sigma);
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
    int64_t *rm = host_copy(&running->mean), *rs = host_copy(&running->sigma);
    int32_t *mu = calloc(2 * (size_t)c, sizeof *mu), *sigma = mu + c;
    WG_ASSERT(mu != NULL, "out of memory (%lld channels)", (long long)c);
    bn_pass_running_stats(rm, rs, c, mu, sigma);
    uint64_t relu_max = normalize(work, e_x, mu, sigma, gamma16, beta16, y);
    free(rm), free(rs), free(mu);
    return relu_max;
}

/* ---- the CPU's entries for the two passes ----------------------------------------------- */

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
