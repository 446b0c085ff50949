/* test_optim.c: the optimizers (optim.h) and the initialization (init.h) on the CPU
 * backend.
 *
 * int8: one wg_optim_step on weights and BN parameters against wageubn.md's formulas
 * evaluated here in value space (long double and 128-bit integers, exact for every
 * value of these tests): weight decay RNE(w wd_q 2^(e_w - 40 - e_g)) with
 * wd_q = RNE(wd 2^40) added to the int64 gradient (weights only); G by constant
 * scaling and stochastic rounding, reproduced from the documented Philox bits
 * (docs/numerics.md, sections 2 and 4), and also checked to be floor or ceil of the
 * scaled gradient without them; Q(g, 15) for BN; m = Q(m/4 + G, 13);
 * w = Q(w - clip(Q(lr, 10), 10) m, 24); the forward copies clip(Q(w, 8)) (int8) and
 * Q(w, 8) (int16). fp32: v = mu v + g + wd w (no wd for BN), w -= lr v, against double
 * within stated float roundings.
 * init: determinism, the 2^-15 grid at the master exponent, the +-2 std truncation,
 * and the moments of 200k draws against the truncated normal's; constants. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "init.h"
#include "optim.h"
#include "quant.h"
#include "tensor.h"
#include "wg_philox.h"

#include "test_ref.h"

#include "test_layers_ref.h"

static int setup(void **state)
{
    *state = wg_backend_cpu_init();
    return *state == NULL;
}

static int teardown(void **state)
{
    wg_backend_free(*state);
    return 0;
}

static void upload_q(wg_tensor *t, const int64_t *q)
{
    int64_t n = wg_tensor_numel(t);
    void *host = malloc(wg_tensor_nbytes(t) + 1);
    for (int64_t i = 0; i < n; i++) wg_store_i64(host, t->dtype, i, q[i]);
    wg_tensor_upload(t, host);
    free(host);
}

static wg_param make_param(wg_backend *b, const char *name, uint32_t id, wg_param_kind kind, bool int8, int ndim,
                           const int64_t *shape)
{
    wg_quant_bits bits = wg_quant_bits_reference();
    wg_param p;
    wg_layout layout = ndim == 4 ? WG_LAYOUT_OHWI : WG_LAYOUT_PLAIN;
    TR_FAIL_IF(!wg_param_init(&p, b, name, id, kind, int8, &bits, layout, ndim, shape), "wg_param_init(%s) failed",
               name);
    return p;
}

static void test_param_init(void **state)
{
    wg_backend *b = *state;
    const int64_t shape[4] = {4, 3, 3, 5}, cshape[1] = {7};
    wg_param w = make_param(b, "conv", 11, WG_PARAM_WEIGHT, true, 4, shape),
             g = make_param(b, "bn", 12, WG_PARAM_BN, true, 1, cshape);
    TR_FAIL_IF(w.master.dtype != WG_I32 || w.master.exp != -23 || w.momentum.dtype != WG_I32 || w.momentum.exp != -12 ||
                   w.grad.dtype != WG_I64 || w.fwd.dtype != WG_I8 || w.gq.dtype != WG_I8 || w.id != 11 ||
                   strcmp(w.name, "conv") != 0,
               "weight parameter containers / exponents%s", "");
    TR_FAIL_IF(g.fwd.dtype != WG_I16 || g.gq.dtype != WG_I32 || g.master.exp != -23 || g.momentum.exp != -12,
               "BN parameter containers%s", "");
    wg_param *ps[2] = {&w, &g};
    for (int k = 0; k < 2; k++) {
        int64_t *m = tr_tensor_get(&ps[k]->master), *v = tr_tensor_get(&ps[k]->momentum),
                *gr = tr_tensor_get(&ps[k]->grad);
        for (int64_t i = 0; i < wg_tensor_numel(&ps[k]->master); i++)
            TR_FAIL_IF(m[i] || v[i] || gr[i], "param %d not zeroed at %" PRId64, k, i);
        free(m), free(v), free(gr);
    }
    TR_EXPECT_I64(109951163, wg_weight_decay_q(1e-4), "wd_q(1e-4)%s", "");
    TR_EXPECT_I64(0, wg_weight_decay_q(0), "wd_q(0)%s", "");
    wg_param_free(&w), wg_param_free(&g);
}

/* ---- int8 optimizer ---- */

/* The state of one parameter before a step, and its gradient. */
typedef struct opt_case {
    int64_t n, *w, *m, *g;
    int e_g;
} opt_case;

static void set_case(wg_param *p, const opt_case *c)
{
    upload_q(&p->master, c->w);
    upload_q(&p->momentum, c->m);
    upload_q(&p->grad, c->g);
    p->grad.exp = c->e_g;
}

/* One int8 step of p from state c against the value-space reference. */
static void check_int8_step(const wg_param *p, const opt_case *c, const wg_optim_step_args *a, const char *what)
{
    const wg_quant_bits *bits = a->bits;
    const int e_w = -(bits->u - 1), e_m = -(bits->momentum - 1), e_gq = -(bits->gc - 1), e_f = -(bits->w - 1);
    const bool weight = p->kind == WG_PARAM_WEIGHT;
    const int64_t n = c->n, gb = ((int64_t)1 << a->g_scale_log2) - 1;
    long double lr_q = fminl(rintl(ldexpl(a->lr, bits->lr - 1)), (long double)ref_bound_bits(bits->lr));
    long double lr = ldexpl(lr_q, -(bits->lr - 1)), wd_q = rintl(ldexpl(a->weight_decay, WG_WD_FRAC_BITS));
    i128 *gp = malloc((size_t)n * sizeof *gp);
    u128 mx = 0;
    for (int64_t i = 0; i < n; i++) { /* g + wd w, rounded onto g's grid */
        i128 dec = weight ? tl_shift_exact((i128)c->w[i] * (i128)wd_q, c->e_g - e_w + WG_WD_FRAC_BITS) : 0;
        gp[i] = (i128)c->g[i] + dec;
        mx = tl_abs128(gp[i]) > (i128)mx ? (u128)tl_abs128(gp[i]) : mx;
    }
    int s = weight ? ref_npow2((uint64_t)mx) - a->g_scale_log2 : 0;
    int64_t *gq = tr_tensor_get(&p->gq), *m1 = tr_tensor_get(&p->momentum), *w1 = tr_tensor_get(&p->master),
            *fw = tr_tensor_get(&p->fwd);
    TR_EXPECT_I64(weight ? e_gq : -(bits->bn_grad - 1), p->gq.exp, "%s: G exponent", what);
    TR_FAIL_IF(p->momentum.exp != e_m || p->master.exp != e_w || p->fwd.exp != e_f, "%s: exponents m %d, w %d, fwd %d",
               what, p->momentum.exp, p->master.exp, p->fwd.exp);
    wg_philox_key key = wg_philox_key_from_seed(a->seed);
    for (int64_t i = 0; i < n; i++) {
        int64_t want_g;
        if (weight) { /* x = g / Shift(max) * g_scale: floor or ceil, then the documented r */
            i128 x = gp[i];
            i128 fl = s <= 0 ? x * ((i128)1 << -s) : ref_floor_div(x, (i128)1 << s);
            i128 ce = s <= 0 ? fl : -ref_floor_div(-x, (i128)1 << s);
            TR_FAIL_IF(gq[i] < ref_clamp128(fl, gb) || gq[i] > ref_clamp128(ce, gb) || gq[i] < -gb || gq[i] > gb,
                       "%s: G[%" PRId64 "] = %" PRId64 " is not floor/ceil of g' = %" PRId64 " / 2^%d (bound %" PRId64
                       ")",
                       what, i, gq[i], (int64_t)x, s, gb);
            uint32_t u = wg_philox_element_bits(key, a->step, p->id, (uint64_t)i);
            want_g = (int64_t)ref_clamp128(s <= 0 ? fl : ref_sr_floor((int64_t)x, s, u), gb);
        } else { /* Q(g, 15) at -14, saturating only at int32 */
            want_g = (int64_t)ref_clampl(rintl(ldexpl(c->g[i], c->e_g + bits->bn_grad - 1)), INT32_MAX);
        }
        TR_EXPECT_I64(want_g, gq[i], "%s: G of g %" PRId64 " * 2^%d, w %" PRId64 " (element %" PRId64 ", shift %d)",
                      what, c->g[i], c->e_g, c->w[i], i, s);
        long double mv = ldexpl(c->m[i], e_m) / (1 << bits->momentum_shift) + ldexpl(gq[i], p->gq.exp);
        long double m_want = ldexpl(ref_clampl(rintl(ldexpl(mv, -e_m)), INT32_MAX), e_m);
        TR_EXPECT_LD(m_want, ldexpl(m1[i], e_m), "%s: momentum of m %" PRId64 ", G %" PRId64 " (element %" PRId64 ")",
                     what, c->m[i], gq[i], i);
        long double wv = ldexpl(c->w[i], e_w) - lr * m_want;
        long double w_want = ldexpl(ref_clampl(rintl(ldexpl(wv, -e_w)), INT32_MAX), e_w);
        TR_EXPECT_LD(w_want, ldexpl(w1[i], e_w),
                     "%s: update of w %" PRId64 " by lr %.17g (q %.0Lf), m %" PRId64 " (element %" PRId64 ")", what,
                     c->w[i], a->lr, lr_q, m1[i], i);
        long double f_want =
            ldexpl(ref_clampl(rintl(ldexpl(w_want, -e_f)), weight ? ref_bound_bits(bits->w) : 32767), e_f);
        TR_EXPECT_LD(f_want, ldexpl(fw[i], e_f), "%s: forward copy of w %" PRId64 " (element %" PRId64 ")", what, w1[i],
                     i);
    }
    free(gp), free(gq), free(m1), free(w1), free(fw);
}

/* Random state: masters around +-4 (the forward clip is active), momentum, gradients of
 * one magnitude per tensor with extremes and all-zero tensors now and then. */
static opt_case random_case(tr_rng *r, int64_t n, bool weight)
{
    opt_case c = {n, malloc((size_t)n * 8), malloc((size_t)n * 8), malloc((size_t)n * 8), (int)tr_range(r, -45, -5)};
    int gmag = tr_next(r) % 10 == 0 ? 0 : (int)tr_range(r, 1, 60), wmag = (int)tr_range(r, 10, 26);
    for (int64_t i = 0; i < n; i++) {
        c.w[i] = tr_i64_mag(r, wmag);
        c.m[i] = tr_i64_mag(r, weight ? 6 : (int)tr_range(r, 0, 24));
        c.g[i] = tr_i64_mag(r, gmag);
    }
    if (tr_next(r) % 6 == 0) c.w[tr_range(r, 0, n - 1)] = (tr_next(r) & 1) ? INT32_MAX : -INT32_MAX;
    return c;
}

static void free_case(opt_case *c) { free(c->w), free(c->m), free(c->g); }

static void test_int8_step(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0x0971};
    wg_quant_bits bits = wg_quant_bits_reference();
    static const double lrs[] = {0.05, 0.4, 1.0 / 1024, 0.0015, 1.0, 511.0 / 512, 3.0 / 1024, 0.1};
    static const double wds[] = {0, 1e-4, 5e-4, 1e-3, 3e-3};
    static const int gsl[] = {7, 5, 3, 1};
    for (int it = 0; it < 150; it++) {
        int64_t shape[4] = {tr_range(&r, 1, 8), tr_range(&r, 1, 3), tr_range(&r, 1, 3), tr_range(&r, 1, 9)},
                cshape[1] = {tr_range(&r, 1, 40)};
        wg_param ps[2] = {make_param(b, "w", (uint32_t)tr_next(&r), WG_PARAM_WEIGHT, true, 4, shape),
                          make_param(b, "bn", (uint32_t)tr_next(&r), WG_PARAM_BN, true, 1, cshape)};
        wg_optim_step_args a = {.lr = it % 3 ? lrs[tr_next(&r) % 8] : (double)tr_range(&r, 0, 1 << 20) / (1 << 20),
                                .g_scale_log2 = gsl[tr_next(&r) % 4],
                                .momentum = 0.9,
                                .weight_decay = wds[tr_next(&r) % 5],
                                .seed = tr_next(&r),
                                .bits = &bits};
        for (int step = 0; step < 2; step++) { /* the second step starts from the first's state */
            a.step = (uint32_t)tr_next(&r);
            opt_case c[2];
            for (int k = 0; k < 2; k++) {
                c[k] = random_case(&r, wg_tensor_numel(&ps[k].master), k == 0);
                if (step == 1) {
                    free(c[k].w), free(c[k].m);
                    c[k].w = tr_tensor_get(&ps[k].master), c[k].m = tr_tensor_get(&ps[k].momentum);
                    upload_q(&ps[k].grad, c[k].g), ps[k].grad.exp = c[k].e_g;
                } else {
                    set_case(&ps[k], &c[k]);
                }
            }
            wg_optim_step(ps, 2, &a);
            check_int8_step(&ps[0], &c[0], &a, "int8 step, weight");
            check_int8_step(&ps[1], &c[1], &a, "int8 step, BN");
            free_case(&c[0]), free_case(&c[1]);
        }
        wg_param_free(&ps[0]), wg_param_free(&ps[1]);
    }
}

/* docs/numerics.md 7.6: from zero momentum, G = +-1, +-2 give m = 0 and +-3 gives +-1; the
 * update at lr 0.05 (26/512) is exact. g_scale 2^7 with max |g| = 2^7: G = g (s = 0). */
static void test_int8_step_hand(void **state)
{
    wg_backend *b = *state;
    wg_quant_bits bits = wg_quant_bits_reference();
    const int64_t shape[1] = {7};
    wg_param p = make_param(b, "w", 5, WG_PARAM_WEIGHT, true, 1, shape);
    int64_t w[7] = {32768, 1 << 23, -(1 << 23), 98304, 8388608 + 32768, 0, 0}, m[7] = {0},
            g[7] = {1, 2, 3, -1, -2, -3, 128};
    opt_case c = {7, w, m, g, -20};
    set_case(&p, &c);
    wg_optim_step_args a = {.lr = 0.05, .g_scale_log2 = 7, .weight_decay = 0, .seed = 1, .step = 1, .bits = &bits};
    wg_optim_step(&p, 1, &a);
    const int64_t gq[7] = {1, 2, 3, -1, -2, -3, 127}, mm[7] = {0, 0, 1, 0, 0, -1, 32};
    /* w - 26/512 * m * 2^-12 on 2^-23: 104 m units; W = clamp(RNE(w / 2^16)): 0.5 -> 0,
     * 1.5 -> 2, 128.5 -> 128 -> 127 */
    const int64_t ww[7] = {32768, 1 << 23, -(1 << 23) - 104, 98304, 8388608 + 32768, 104, -(104 * 32)};
    const int64_t fw[7] = {0, 127, -127, 2, 127, 0, 0};
    tr_expect_q(&p.gq, gq, 7, -14, "hand G");
    tr_expect_q(&p.momentum, mm, 7, -12, "hand momentum");
    tr_expect_q(&p.master, ww, 7, -23, "hand update");
    tr_expect_q(&p.fwd, fw, 7, -7, "hand forward copy");
    check_int8_step(&p, &c, &a, "hand step");
    wg_param_free(&p);
}

/* Weight decay with w wd_q past 2^63 (wd admitted up to 1): the decay term itself
 * (|w| 2^-23 wd / 2^e_g) fits int64 easily. */
static void test_int8_weight_decay_large(void **state)
{
    wg_backend *b = *state;
    wg_quant_bits bits = wg_quant_bits_reference();
    const int64_t shape[1] = {4};
    wg_param p = make_param(b, "w", 6, WG_PARAM_WEIGHT, true, 1, shape);
    int64_t w[4] = {INT32_MAX, -INT32_MAX, 1 << 24, 3}, m[4] = {0}, g[4] = {0, 0, 0, 0};
    opt_case c = {4, w, m, g, -30};
    set_case(&p, &c);
    /* the largest decay the optimizer accepts (just below 2^-8) on int32-extreme masters */
    wg_optim_step_args a = {.lr = 0.05, .g_scale_log2 = 7, .weight_decay = 0.0039, .seed = 2, .step = 3, .bits = &bits};
    wg_optim_step(&p, 1, &a);
    check_int8_step(&p, &c, &a, "weight decay 0.0039");
    wg_param_free(&p);
}

/* ---- fp32 optimizer ---- */

static void test_f32_step(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xf32};
    for (int it = 0; it < 40; it++) {
        const int64_t shape[1] = {tr_range(&r, 1, 300)};
        wg_param_kind kind = it % 2 ? WG_PARAM_BN : WG_PARAM_WEIGHT;
        wg_param p = make_param(b, "p", 1, kind, false, 1, shape);
        int64_t n = shape[0];
        float *w = malloc((size_t)n * 4), *v = malloc((size_t)n * 4), *g = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) w[i] = tl_rand_f(&r, 2.0), v[i] = tl_rand_f(&r, 1.0), g[i] = tl_rand_f(&r, 0.5);
        wg_tensor_upload(&p.master, w), wg_tensor_upload(&p.momentum, v), wg_tensor_upload(&p.grad, g);
        wg_optim_step_args a = {
            .lr = 0.1 * (1 + it % 5), .momentum = it % 3 ? 0.9 : 0.0, .weight_decay = it % 4 ? 5e-4 : 0, .bits = NULL};
        wg_optim_step(&p, 1, &a);
        float *w1 = tl_get_f32(&p.master), *v1 = tl_get_f32(&p.momentum);
        double wd = kind == WG_PARAM_WEIGHT ? a.weight_decay : 0, u = ldexp(1, -24);
        for (int64_t i = 0; i < n; i++) {
            /* float rounding of mu, lr and of each operation: 4u times the terms' magnitudes */
            double vt = a.momentum * v[i] + g[i] + wd * w[i],
                   ev = 4 * u * (fabs(a.momentum * v[i]) + fabs(g[i]) + fabs(wd * w[i]));
            double wt = w[i] - a.lr * vt, ew = 4 * u * (fabs(w[i]) + fabs(a.lr * vt)) + a.lr * ev;
            TR_FAIL_IF(fabs(v1[i] - vt) > ev, "f32 momentum (kind %d): %.9g, double %.9g", (int)kind, (double)v1[i],
                       vt);
            TR_FAIL_IF(fabs(w1[i] - wt) > ew, "f32 update (kind %d): %.9g, double %.9g", (int)kind, (double)w1[i], wt);
        }
        free(w), free(v), free(g), free(w1), free(v1);
        wg_param_free(&p);
    }
}

/* ---- initialization ---- */

/* The std of N(0, 1) truncated at +-2 (0.8796...), and P(|z| < 1 | |z| <= 2). */
static long double trunc_std(void)
{
    long double phi2 = expl(-2.0L) / sqrtl(2 * acosl(-1.0L)), mass = erfl(2.0L / sqrtl(2.0L));
    return sqrtl(1 - 4 * phi2 / mass);
}

/* Sample moments of z = w / std: mean within 5 standard errors (0.01), std within
 * 0.007 of the truncated normal's, P(|z| < 1) within 0.005 of 0.7153, P(z > 0) within
 * 0.006 of 1/2, every |z| <= 2 (plus the grid's half step), and the tails reached. */
static void check_moments(const long double *z, int64_t n, long double slack, const char *what)
{
    long double s1 = 0, s2 = 0, inside = 0, pos = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        TR_FAIL_IF(fabsl(z[i]) > 2 + slack, "%s: |z| = %.9Lg beyond 2 std (element %" PRId64 ")", what, fabsl(z[i]), i);
        s1 += z[i], s2 += z[i] * z[i], inside += fabsl(z[i]) < 1, pos += z[i] > 0, mx = fmaxl(mx, fabsl(z[i]));
    }
    long double mean = s1 / n, sd = sqrtl(s2 / n - mean * mean),
                want_in = erfl(1 / sqrtl(2.0L)) / erfl(2 / sqrtl(2.0L));
    TR_FAIL_IF(fabsl(mean) > 0.01L, "%s: mean %.5Lf", what, mean);
    TR_FAIL_IF(fabsl(sd - trunc_std()) > 0.007L, "%s: std %.5Lf, truncated normal %.5Lf", what, sd, trunc_std());
    TR_FAIL_IF(fabsl(inside / n - want_in) > 0.005L, "%s: P(|z| < 1) = %.5Lf, expected %.5Lf", what, inside / n,
               want_in);
    TR_FAIL_IF(fabsl(pos / n - 0.5L) > 0.006L, "%s: P(z > 0) = %.5Lf", what, pos / n);
    TR_FAIL_IF(mx < 1.99L, "%s: max |z| %.5Lf: the tails are missing", what, mx);
}

static void test_init_int8(void **state)
{
    wg_backend *b = *state;
    const int64_t shape[4] = {16, 3, 3, 8}, fan_in = 72;
    wg_param p[4] = {
        make_param(b, "a", 7, WG_PARAM_WEIGHT, true, 4, shape), make_param(b, "b", 7, WG_PARAM_WEIGHT, true, 4, shape),
        make_param(b, "c", 7, WG_PARAM_WEIGHT, true, 4, shape), make_param(b, "d", 8, WG_PARAM_WEIGHT, true, 4, shape)};
    wg_init_weight(&p[0], fan_in, 42), wg_init_weight(&p[1], fan_in, 42), wg_init_weight(&p[2], fan_in, 43),
        wg_init_weight(&p[3], fan_in, 42);
    int64_t *q[4], n = wg_tensor_numel(&p[0].master);
    for (int k = 0; k < 4; k++) q[k] = tr_tensor_get(&p[k].master);
    int64_t same_seed = 0, same_id = 0, nz = 0;
    long double std = 1 / sqrtl((long double)fan_in);
    for (int64_t i = 0; i < n; i++) {
        TR_EXPECT_I64(q[0][i], q[1][i], "init is not deterministic at %" PRId64, i);
        TR_FAIL_IF(q[0][i] % 256 != 0, "init value %" PRId64 " (2^-23 units) is not on the grid 2^-15", q[0][i]);
        TR_FAIL_IF(fabsl(ldexpl(q[0][i], -23)) > 2 * std + ldexpl(1, -16), "init value %" PRId64 " beyond 2 std",
                   q[0][i]);
        same_seed += q[0][i] == q[2][i], same_id += q[0][i] == q[3][i], nz += q[0][i] != 0;
    }
    TR_EXPECT_I64(-23, p[0].master.exp, "init: master exponent%s", "");
    TR_FAIL_IF(same_seed > n / 100 || same_id > n / 100 || nz < n - n / 100,
               "init: %" PRId64 " equal across seeds, %" PRId64 " across ids, %" PRId64 " nonzero of %" PRId64,
               same_seed, same_id, nz, n);
    wg_quant_bits bits = wg_quant_bits_reference();
    wg_param_refresh(&p[0], &bits);
    int64_t *fw = tr_tensor_get(&p[0].fwd);
    for (int64_t i = 0; i < n; i++)
        TR_EXPECT_I64((int64_t)ref_clampl(rintl(ldexpl(q[0][i], -16)), 127), fw[i], "refresh after init at %" PRId64,
                      i);
    free(fw);
    for (int k = 0; k < 4; k++) free(q[k]), wg_param_free(&p[k]);
}

/* 200k draws (std 1) in both modes; the int8 values are the float ones on the 2^-15 grid. */
static void test_init_moments(void **state)
{
    wg_backend *b = *state;
    const int64_t shape[1] = {200000}, n = 200000;
    wg_param p8 = make_param(b, "w8", 99, WG_PARAM_WEIGHT, true, 1, shape),
             pf = make_param(b, "wf", 99, WG_PARAM_WEIGHT, false, 1, shape);
    wg_init_weight(&p8, 1, 0x5eed), wg_init_weight(&pf, 1, 0x5eed);
    int64_t *q = tr_tensor_get(&p8.master);
    float *f = tl_get_f32(&pf.master);
    long double *z8 = malloc((size_t)n * sizeof *z8), *zf = malloc((size_t)n * sizeof *zf);
    for (int64_t i = 0; i < n; i++) {
        z8[i] = ldexpl(q[i], -23), zf[i] = f[i];
        TR_FAIL_IF(fabsl(z8[i] - zf[i]) > ldexpl(1, -16) + ldexpl(fabsl(zf[i]), -24),
                   "int8 init %.9Lg vs fp32 %.9Lg (element %" PRId64 ")", z8[i], zf[i], i);
    }
    check_moments(z8, n, ldexpl(1, -16), "int8 init");
    check_moments(zf, n, ldexpl(2, -24), "fp32 init");
    /* std 1 / sqrt(fan_in): the same draws scaled (fp32, fan_in 4) */
    wg_init_weight(&pf, 4, 0x5eed);
    float *f4 = tl_get_f32(&pf.master);
    for (int64_t i = 0; i < n; i++)
        TR_FAIL_IF(fabsl(2.0L * f4[i] - zf[i]) > ldexpl(fabsl(zf[i]), -23), "fp32 init fan-in 4 at %" PRId64, i);
    free(q), free(f), free(f4), free(z8), free(zf);
    wg_param_free(&p8), wg_param_free(&pf);
}

static void test_init_constant(void **state)
{
    wg_backend *b = *state;
    wg_quant_bits bits = wg_quant_bits_reference();
    const int64_t shape[1] = {9};
    static const double vals[] = {1.0, 0.0, -0.3, 1.0 / 3, 0.5 + 1.0 / 16777216};
    for (int k = 0; k < 5; k++) {
        wg_param p = make_param(b, "bn", 3, WG_PARAM_BN, true, 1, shape),
                 pf = make_param(b, "bnf", 3, WG_PARAM_BN, false, 1, shape);
        wg_init_constant(&p, vals[k]), wg_init_constant(&pf, vals[k]);
        wg_param_refresh(&p, &bits);
        int64_t *q = tr_tensor_get(&p.master), *fw = tr_tensor_get(&p.fwd);
        float *f = tl_get_f32(&pf.master);
        long double want = rintl(ldexpl(vals[k], 23)); /* RNE onto 2^-23 (k = 4 is a tie to even) */
        for (int64_t i = 0; i < 9; i++) {
            TR_EXPECT_I64((int64_t)want, q[i], "init constant %.17g (int8) at %" PRId64, vals[k], i);
            TR_EXPECT_I64((int64_t)rintl(ldexpl(want, -16)), fw[i], "init constant %.17g: forward int16 at %" PRId64,
                          vals[k], i);
            TR_FAIL_IF(f[i] != (float)vals[k], "init constant %.17g (fp32): %a", vals[k], (double)f[i]);
        }
        TR_EXPECT_I64(-7, p.fwd.exp, "init constant: forward exponent%s", "");
        free(q), free(fw), free(f);
        wg_param_free(&p), wg_param_free(&pf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_init),
        cmocka_unit_test(test_int8_step_hand),
        cmocka_unit_test(test_int8_step),
        cmocka_unit_test(test_int8_weight_decay_large),
        cmocka_unit_test(test_f32_step),
        cmocka_unit_test(test_init_int8),
        cmocka_unit_test(test_init_moments),
        cmocka_unit_test(test_init_constant),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
