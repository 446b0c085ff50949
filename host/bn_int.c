/* bn_int.c: integer batch normalization on the CPU backend (bn.h; docs/numerics.md,
 * section 7.3 for the forward pass and 7.5 "BN backward").
 *
 * Each step is one static function over plain arrays, and each maps one to one onto
 * a backend op of the CUDA implementation, which runs the same formulas
 * (wg_bn_elem.h):
 *
 *   forward   narrow x to int16 (wg_quant_fit_exp) -> pass_sums (per channel S1, S2)
 *             -> pass_stats (mu, sigma) -> pass_running_update -> pass_xhat_chan
 *             (per-channel constants) -> pass_normalize (x-hat, y; elementwise)
 *   eval      narrow -> pass_running_stats -> pass_xhat_chan -> pass_normalize
 *   backward  pass_bwd_sums (per channel B, G, max |dy|, max |xhat|) -> bwd_exponent
 *             (host: the per-tensor exponent F) -> pass_bwd_chan (per-channel
 *             constants) -> pass_bwd_dx (elementwise)
 *
 * Integer sums and maxima do not depend on order, so a parallel reduction gives the
 * same integers. Dimension legend: M = count = N*H*W rows, C channels (innermost). */
#include "bn.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "wg_par.h"
#include "quant.h"
#include "wg_bn_elem.h"

/* Exponents of dy beyond this are a bug upstream (the quantizers' own limit is 2^20). */
enum { WG_BN_EXP_LIMIT = 1 << 19 };

static void *xmalloc(size_t nbytes)
{
    void *p = malloc(nbytes ? nbytes : 1);
    WG_ASSERT(p != NULL, "out of memory (%zu bytes) in batch norm", nbytes);
    return p;
}

/* ---- checks -------------------------------------------------------------------------- */

static void check_cpu(const wg_tensor *t, const char *what)
{
    WG_ASSERT(t->data != NULL, "%s is an empty tensor", what);
    WG_ASSERT(strcmp(wg_backend_name(t->backend), "cpu") == 0, "%s is on backend %s; bn_int.c runs on the CPU",
              what, wg_backend_name(t->backend));
}

static void check_vec(const wg_tensor *t, wg_dtype dt, int64_t c, const char *what)
{
    check_cpu(t, what);
    WG_ASSERT(t->dtype == dt, "%s is %s, expected %s", what, wg_dtype_name(t->dtype), wg_dtype_name(dt));
    WG_ASSERT(wg_tensor_numel(t) == c, "%s has %lld elements, expected C = %lld", what,
              (long long)wg_tensor_numel(t), (long long)c);
}

/* An activation-shaped tensor: NHWC, of shape like (when given) and container dt
 * (any integer container when dt < 0). Returns C; *count = N*H*W. */
static int64_t check_act(const wg_tensor *t, int dt, const wg_tensor *like, const char *what, int64_t *count)
{
    check_cpu(t, what);
    WG_ASSERT(t->layout == WG_LAYOUT_NHWC, "%s has layout %s, expected nhwc", what, wg_layout_name(t->layout));
    if (dt < 0) WG_ASSERT(wg_dtype_is_int(t->dtype), "%s must be an integer tensor, not %s", what,
                          wg_dtype_name(t->dtype));
    else WG_ASSERT(t->dtype == (wg_dtype)dt, "%s is %s, expected %s", what, wg_dtype_name(t->dtype),
                   wg_dtype_name((wg_dtype)dt));
    if (like) WG_ASSERT(wg_tensor_same_shape(t, like), "%s does not have the shape of the input", what);
    int64_t c = t->shape[3];
    *count = wg_tensor_numel(t) / c;
    WG_ASSERT(*count <= WG_BN_COUNT_MAX, "%s: %lld values per channel (at most 2^32 - 1)", what,
              (long long)*count);
    return c;
}

static void check_gamma_beta(const wg_tensor *gamma16, const wg_tensor *beta16, int64_t c)
{
    check_vec(gamma16, WG_I16, c, "gamma16");
    check_vec(beta16, WG_I16, c, "beta16");
    WG_ASSERT(gamma16->exp == WG_BN_XHAT_EXP && beta16->exp == WG_BN_XHAT_EXP,
              "gamma16 and beta16 must be at e = -7 (wg_quant_direct(., master, 8, false)), not %d and %d",
              gamma16->exp, beta16->exp);
}

/* The common checks of both forward passes; returns C. */
static int64_t check_forward(const wg_tensor *x, const wg_tensor *gamma16, const wg_tensor *beta16,
                             const wg_tensor *y, const wg_bn_int_saved *s, int64_t *count)
{
    int64_t c = check_act(x, -1, NULL, "the BN input", count), n;
    check_act(y, WG_I32, x, "the BN output", &n);
    check_act(&s->xhat, WG_I16, x, "saved x-hat", &n);
    check_vec(&s->mu, WG_I32, c, "saved mu");
    check_vec(&s->sigma, WG_I32, c, "saved sigma");
    check_gamma_beta(gamma16, beta16, c);
    return c;
}

/* ---- allocation ---------------------------------------------------------------------- */

bool wg_bn_int_saved_init(wg_bn_int_saved *s, wg_backend *b, int64_t n, int64_t h, int64_t w, int64_t c)
{
    memset(s, 0, sizeof(*s));
    const int64_t shape_c[1] = {c};
    bool ok = wg_tensor_init_nhwc(&s->xhat, b, WG_I16, n, h, w, c, WG_BN_XHAT_EXP) &&
              wg_tensor_init(&s->mu, b, WG_I32, WG_LAYOUT_PLAIN, 1, shape_c, WG_BN_STAT_EXP) &&
              wg_tensor_init(&s->sigma, b, WG_I32, WG_LAYOUT_PLAIN, 1, shape_c, WG_BN_STAT_EXP);
    if (!ok) wg_bn_int_saved_free(s);
    return ok;
}

void wg_bn_int_saved_free(wg_bn_int_saved *s)
{
    wg_tensor_free(&s->xhat);
    wg_tensor_free(&s->mu);
    wg_tensor_free(&s->sigma);
    memset(s, 0, sizeof(*s));
}

bool wg_bn_running_init(wg_bn_running *r, wg_backend *b, int64_t c)
{
    memset(r, 0, sizeof(*r));
    const int64_t shape_c[1] = {c};
    bool ok = wg_tensor_init(&r->mean, b, WG_I64, WG_LAYOUT_PLAIN, 1, shape_c, WG_BN_RUNNING_EXP) &&
              wg_tensor_init(&r->sigma, b, WG_I64, WG_LAYOUT_PLAIN, 1, shape_c, WG_BN_RUNNING_EXP);
    if (!ok) {
        wg_bn_running_free(r);
        return false;
    }
    wg_tensor_zero(&r->mean);
    wg_tensor_zero(&r->sigma);
    return true;
}

void wg_bn_running_free(wg_bn_running *r)
{
    wg_tensor_free(&r->mean);
    wg_tensor_free(&r->sigma);
    memset(r, 0, sizeof(*r));
}

/* ---- forward passes ------------------------------------------------------------------ */

/* Per channel S1 = sum x16, S2 = sum x16^2, int64 and exact (count < 2^32). */
static void pass_sums(const int16_t *x16, int64_t m, int64_t c, int64_t *s1, int64_t *s2)
{
    memset(s1, 0, (size_t)c * sizeof *s1);
    memset(s2, 0, (size_t)c * sizeof *s2);
    for (int64_t i = 0; i < m; i++) {
        const int16_t *row = x16 + i * c;
        for (int64_t ch = 0; ch < c; ch++) {
            int64_t v = row[ch];
            s1[ch] += v;
            s2[ch] += v * v;
        }
    }
}

/* Per channel mu and sigma on the grid 2^-15. */
static void pass_stats(const int64_t *s1, const int64_t *s2, int64_t count, int64_t c, int e_x, int32_t *mu,
                       int32_t *sigma)
{
    for (int64_t ch = 0; ch < c; ch++) {
        mu[ch] = (int32_t)wg_bn_mean(s1[ch], (uint64_t)count, e_x);
        sigma[ch] = (int32_t)wg_bn_sigma(s1[ch], s2[ch], (uint64_t)count, e_x);
    }
}

/* The running averages take the batch mu and sigma, moved exactly onto 2^-31. */
static void pass_running_update(int64_t *rmean, int64_t *rsigma, const int32_t *mu, const int32_t *sigma, int64_t c,
                                bool initialized)
{
    const int up = WG_BN_STAT_EXP - WG_BN_RUNNING_EXP;
    for (int64_t ch = 0; ch < c; ch++) {
        int64_t bm = (int64_t)mu[ch] * ((int64_t)1 << up), bs = (int64_t)sigma[ch] * ((int64_t)1 << up);
        rmean[ch] = initialized ? wg_bn_running_step(rmean[ch], bm) : bm;
        rsigma[ch] = initialized ? wg_bn_running_step(rsigma[ch], bs) : bs;
    }
}

/* Evaluation statistics from the running averages. */
static void pass_running_stats(const int64_t *rmean, const int64_t *rsigma, int64_t c, int32_t *mu, int32_t *sigma)
{
    for (int64_t ch = 0; ch < c; ch++) {
        mu[ch] = (int32_t)wg_bn_running_to_stat(rmean[ch], -WG_BN_SIGMA_MAX);
        sigma[ch] = (int32_t)wg_bn_running_to_stat(rsigma[ch], 1);
    }
}

/* Per channel constants of x-hat: mu, the divisor and its reciprocals. */
static void pass_xhat_chan(const int32_t *mu, const int32_t *sigma, int64_t c, int e_x, wg_bn_xhat_chan *chan)
{
    for (int64_t ch = 0; ch < c; ch++) chan[ch] = wg_bn_xhat_chan_init(mu[ch], sigma[ch], e_x);
}

/* Elementwise x-hat and y; xhat may be the x16 array itself (in place). Returns the
 * number of clamped x-hat elements. */
static int64_t pass_normalize(const int16_t *x16, int64_t m, int64_t c, int e_x, const wg_bn_xhat_chan *chan,
                              const int16_t *gamma, const int16_t *beta, int16_t *xhat, int32_t *y)
{
    int64_t clamps = 0;
    /* rows are independent and the clamp count is an integer sum: any thread split
     * gives the same bits */
#pragma omp parallel for reduction(+ : clamps) schedule(static) if (m * c >= WG_PAR_MIN)
    for (int64_t i = 0; i < m; i++) {
        for (int64_t ch = 0; ch < c; ch++) {
            int64_t k = i * c + ch;
            int clamped = 0;
            int64_t h = wg_bn_xhat(x16[k], e_x, &chan[ch], &clamped);
            clamps += clamped;
            xhat[k] = (int16_t)h;
            y[k] = (int32_t)wg_bn_y(h, gamma[ch], beta[ch]);
        }
    }
    return clamps;
}

/* Narrow x into work->xhat (int16, the fit rule with x's grid as the floor); returns e_x. */
static int narrow_input(const wg_tensor *x, wg_bn_int_saved *work)
{
    wg_quant_fit_exp(&work->xhat, x, x->exp);
    int e_x = work->xhat.exp;
    WG_ASSERT(e_x >= WG_BN_EX_MIN, "the narrowed BN input has exponent %d (at least %d supported)", e_x,
              WG_BN_EX_MIN);
    return e_x;
}

/* x-hat and y from work->xhat (x16) and the statistics in work->mu, work->sigma. */
static void normalize(wg_bn_int_saved *work, int e_x, int64_t count, int64_t c, const wg_tensor *gamma16,
                      const wg_tensor *beta16, wg_tensor *y)
{
    wg_bn_xhat_chan *chan = xmalloc((size_t)c * sizeof *chan);
    pass_xhat_chan(work->mu.data, work->sigma.data, c, e_x, chan);
    work->clamps =
        pass_normalize(work->xhat.data, count, c, e_x, chan, gamma16->data, beta16->data, work->xhat.data, y->data);
    free(chan);
    work->e_x = e_x;
    work->xhat.exp = WG_BN_XHAT_EXP;
    work->mu.exp = WG_BN_STAT_EXP;
    work->sigma.exp = WG_BN_STAT_EXP;
    y->exp = WG_BN_Y_EXP;
}

void wg_bn_int_forward_train(const wg_tensor *x, const wg_tensor *gamma16, const wg_tensor *beta16, wg_tensor *y,
                             wg_bn_int_saved *saved, wg_bn_running *running)
{
    int64_t count, c = check_forward(x, gamma16, beta16, y, saved, &count);
    if (running) {
        check_vec(&running->mean, WG_I64, c, "running mean");
        check_vec(&running->sigma, WG_I64, c, "running sigma");
        WG_ASSERT(running->mean.exp == WG_BN_RUNNING_EXP && running->sigma.exp == WG_BN_RUNNING_EXP,
                  "running statistics at e = %d and %d, expected %d", running->mean.exp, running->sigma.exp,
                  WG_BN_RUNNING_EXP);
    }
    int e_x = narrow_input(x, saved);
    int64_t *s1 = xmalloc((size_t)c * sizeof *s1), *s2 = xmalloc((size_t)c * sizeof *s2);
    pass_sums(saved->xhat.data, count, c, s1, s2);
    pass_stats(s1, s2, count, c, e_x, saved->mu.data, saved->sigma.data);
    free(s1);
    free(s2);
    if (running) {
        pass_running_update(running->mean.data, running->sigma.data, saved->mu.data, saved->sigma.data, c,
                            running->initialized);
        running->initialized = true;
    }
    normalize(saved, e_x, count, c, gamma16, beta16, y);
}

void wg_bn_int_forward_eval(const wg_tensor *x, const wg_tensor *gamma16, const wg_tensor *beta16,
                            const wg_bn_running *running, wg_tensor *y, wg_bn_int_saved *work)
{
    int64_t count, c = check_forward(x, gamma16, beta16, y, work, &count);
    check_vec(&running->mean, WG_I64, c, "running mean");
    check_vec(&running->sigma, WG_I64, c, "running sigma");
    WG_ASSERT(running->initialized, "evaluation with running statistics that no training step has set%s", "");
    int e_x = narrow_input(x, work);
    pass_running_stats(running->mean.data, running->sigma.data, c, work->mu.data, work->sigma.data);
    normalize(work, e_x, count, c, gamma16, beta16, y);
}

/* ---- backward passes ----------------------------------------------------------------- */

/* Row i of an integer NHWC tensor, widened to int64 (the container switch is taken once per row). */
static void load_row(const void *p, wg_dtype t, int64_t i, int64_t c, int64_t *buf)
{
    int64_t i0 = i * c;
    switch (t) {
    case WG_I8: for (int64_t k = 0; k < c; k++) buf[k] = ((const int8_t *)p)[i0 + k]; break;
    case WG_I16: for (int64_t k = 0; k < c; k++) buf[k] = ((const int16_t *)p)[i0 + k]; break;
    case WG_I32: for (int64_t k = 0; k < c; k++) buf[k] = ((const int32_t *)p)[i0 + k]; break;
    default: memcpy(buf, (const int64_t *)p + i0, (size_t)c * sizeof *buf); break;
    }
}

/* Per channel B = sum dy, G = sum dy * xhat (exact: |dy| <= 32767, |xhat| <= 32767,
 * count < 2^32 give |G| < 2^62), and the maxima of |dy| and |xhat| for the bound. */
static void pass_bwd_sums(const void *dy, wg_dtype dt, const int16_t *xhat, int64_t m, int64_t c, int64_t *bsum,
                          int64_t *gsum, uint64_t *dmax, uint64_t *hmax, int64_t *row)
{
    for (int64_t ch = 0; ch < c; ch++) bsum[ch] = gsum[ch] = 0, dmax[ch] = hmax[ch] = 0;
    for (int64_t i = 0; i < m; i++) {
        load_row(dy, dt, i, c, row);
        const int16_t *h = xhat + i * c;
        for (int64_t ch = 0; ch < c; ch++) {
            int64_t d = row[ch];
            uint64_t ad = wg_abs_u64(d), ah = wg_abs_u64(h[ch]);
            bsum[ch] += d;
            gsum[ch] += d * h[ch];
            dmax[ch] = ad > dmax[ch] ? ad : dmax[ch];
            hmax[ch] = ah > hmax[ch] ? ah : hmax[ch];
        }
    }
}

/* The per-tensor decision (host): F = min(62, 62 - max over channels of the bound
 * exponent), so that |dx| <= 2^62 on the grid 2^(e-6-F). F >= 0 always holds for
 * |dy| <= 32767 (docs/numerics.md 7.5). */
static int bwd_exponent(const int16_t *gamma, const int32_t *sigma, int64_t count, int64_t c, const int64_t *bsum,
                        const int64_t *gsum, const uint64_t *dmax, const uint64_t *hmax)
{
    int emax = WG_BN_DX_NO_BOUND;
    for (int64_t ch = 0; ch < c; ch++) {
        int e = wg_bn_dx_bound_exp(gamma[ch], sigma[ch], (uint64_t)count, bsum[ch], gsum[ch], dmax[ch], hmax[ch]);
        emax = e > emax ? e : emax;
    }
    WG_ASSERT(emax <= WG_BN_DX_BITS, "BN backward: dx bound 2^%d exceeds 2^%d", emax, WG_BN_DX_BITS);
    int f = WG_BN_DX_BITS - emax;
    return f > WG_BN_DX_BITS ? WG_BN_DX_BITS : f;
}

/* Per channel constants of the dx element. */
static void pass_bwd_chan(const int16_t *gamma, const int32_t *sigma, int64_t count, int64_t c, const int64_t *bsum,
                          const int64_t *gsum, const uint64_t *dmax, const uint64_t *hmax, wg_bn_bwd_chan *chan)
{
    for (int64_t ch = 0; ch < c; ch++)
        chan[ch] = wg_bn_bwd_chan_init(gamma[ch], sigma[ch], (uint64_t)count, bsum[ch], gsum[ch], dmax[ch], hmax[ch]);
}

/* Elementwise dx (int64). */
static void pass_bwd_dx(const void *dy, wg_dtype dt, const int16_t *xhat, int64_t m, int64_t c,
                        const wg_bn_bwd_chan *chan, int f, int64_t *dx, int64_t *row)
{
    (void)row;
#pragma omp parallel if (m * c >= WG_PAR_MIN)
    {
        int64_t *r = xmalloc((size_t)c * sizeof *r); /* each thread widens its own rows */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < m; i++) {
            load_row(dy, dt, i, c, r);
            const int16_t *h = xhat + i * c;
            int64_t *out = dx + i * c;
            for (int64_t ch = 0; ch < c; ch++) out[ch] = wg_bn_dx(r[ch], h[ch], (uint64_t)m, &chan[ch], f);
        }
        free(r);
    }
}

void wg_bn_int_backward(const wg_tensor *dy, const wg_tensor *gamma16, const wg_bn_int_saved *saved, wg_tensor *dx,
                        wg_tensor *dgamma, wg_tensor *dbeta)
{
    int64_t count, n;
    int64_t c = check_act(&saved->xhat, WG_I16, NULL, "saved x-hat", &count);
    check_act(dy, -1, &saved->xhat, "the BN output error dy", &n);
    check_act(dx, WG_I64, &saved->xhat, "the BN input error dx", &n);
    check_vec(&saved->sigma, WG_I32, c, "saved sigma");
    check_vec(gamma16, WG_I16, c, "gamma16");
    check_vec(dgamma, WG_I64, c, "dgamma");
    check_vec(dbeta, WG_I64, c, "dbeta");
    WG_ASSERT(saved->xhat.exp == WG_BN_XHAT_EXP && saved->sigma.exp == WG_BN_STAT_EXP &&
                  gamma16->exp == WG_BN_XHAT_EXP,
              "x-hat, sigma, gamma16 at e = %d, %d, %d (expected -7, -15, -7: a training forward pass first)",
              saved->xhat.exp, saved->sigma.exp, gamma16->exp);
    WG_ASSERT(dy->exp > -WG_BN_EXP_LIMIT && dy->exp < WG_BN_EXP_LIMIT, "dy has exponent %d", dy->exp);
    if (wg_dtype_bound(dy->dtype) > WG_BN_DY_MAX) {
        uint64_t m = dy->backend->iface->max_abs(dy->backend->ctx, dy);
        WG_ASSERT(m <= WG_BN_DY_MAX, "BN backward: max |dy| = %llu (at most %d: quantize with E1 first)",
                  (unsigned long long)m, WG_BN_DY_MAX);
    }
    int64_t *row = xmalloc((size_t)c * sizeof *row);
    uint64_t *dmax = xmalloc((size_t)c * sizeof *dmax), *hmax = xmalloc((size_t)c * sizeof *hmax);
    wg_bn_bwd_chan *chan = xmalloc((size_t)c * sizeof *chan);
    int64_t *bsum = dbeta->data, *gsum = dgamma->data;
    pass_bwd_sums(dy->data, dy->dtype, saved->xhat.data, count, c, bsum, gsum, dmax, hmax, row);
    int f = bwd_exponent(gamma16->data, saved->sigma.data, count, c, bsum, gsum, dmax, hmax);
    pass_bwd_chan(gamma16->data, saved->sigma.data, count, c, bsum, gsum, dmax, hmax, chan);
    pass_bwd_dx(dy->data, dy->dtype, saved->xhat.data, count, c, chan, f, dx->data, row);
    free(row);
    free(dmax);
    free(hmax);
    free(chan);
    dbeta->exp = dy->exp;
    dgamma->exp = dy->exp + WG_BN_XHAT_EXP;
    dx->exp = dy->exp - 6 - f; /* gamma / sigma brings 2^(-7+15), P's unit 2^(e-14): 2^(e-6) */
}
