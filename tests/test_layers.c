/* test_layers.c: ReLU + activation quantizer (act.h), global average pooling
 * (pool.h), aligned sums (residual.h) and the softmax cross-entropy (softmax.h,
 * wg_softmax_elem.h) on the CPU backend.
 *
 * int8: every result against a scalar reference written here (test_layers_ref.h),
 * in 128-bit integers or long double (exact for every value of these tests), bit for
 * bit where the contract is exact: A by the fit and fixed rules, the GAP mean and its
 * backward RNE(err * 2^8 / HW), the residual sum and the error accumulation. The
 * fixed-point exp and the integer softmax carry a stated error bound (below).
 * float32: forwards against double references, backwards against central finite
 * differences of a double loss. Inputs must come back unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <omp.h>

#include "act.h"
#include "backend.h"
#include "pool.h"
#include "quant.h"
#include "residual.h"
#include "softmax.h"
#include "tensor.h"
#include "wg_par.h"
#include "wg_softmax_elem.h"

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

/* ---- act: ReLU, then A by the fit rule (floor -(bits-1)) or the fixed rule ---- */

static void check_relu_quant(wg_backend *b, tr_rng *r, const int64_t *y, int64_t n, int e_y, int bits,
                             wg_act_exponent rule)
{
    wg_tensor ty = tr_tensor_from(b, r, WG_I32, y, n, e_y), ta = tr_tensor_out(b, WG_I8, n);
    wg_relu_quant_forward(&ty, &ta, bits, rule);
    int64_t *want = malloc((size_t)n * 8), *a = tr_tensor_get(&ta), *yy = tr_tensor_get(&ty);
    int e_a = tl_relu_quant_ref(y, n, e_y, bits, rule == WG_ACT_FIT, want);
    TR_EXPECT_I64(e_a, ta.exp, "relu_quant(rule %d, bits %d, e_y %d, n %" PRId64 "): exponent", (int)rule, bits, e_y,
                  n);
    for (int64_t i = 0; i < n; i++) {
        TR_EXPECT_I64(want[i], a[i], "relu_quant(rule %d, bits %d) of y = %" PRId64 " * 2^%d (element %" PRId64 ")",
                      (int)rule, bits, y[i], e_y, i);
        TR_EXPECT_I64(y[i] > 0 ? y[i] : 0, yy[i],
                      "relu_quant: y not rectified in place at %" PRId64 " (y was %" PRId64 ")", i, y[i]);
    }
    TR_EXPECT_I64(e_y, ty.exp, "relu_quant changed y's exponent%s", "");
    /* with max(0, max y) handed over (one fused pass for the fit rule): the same A */
    uint64_t relu_max = 0;
    for (int64_t i = 0; i < n; i++) relu_max = y[i] > 0 && (uint64_t)y[i] > relu_max ? (uint64_t)y[i] : relu_max;
    wg_tensor ty2 = tr_tensor_from(b, r, WG_I32, y, n, e_y), ta2 = tr_tensor_out(b, WG_I8, n);
    wg_relu_quant_forward_max(&ty2, &ta2, bits, rule, relu_max);
    int64_t *a2 = tr_tensor_get(&ta2);
    TR_EXPECT_I64(e_a, ta2.exp, "relu_quant with its max (rule %d, bits %d, e_y %d): exponent", (int)rule, bits, e_y);
    for (int64_t i = 0; i < n; i++)
        TR_EXPECT_I64(want[i], a2[i], "relu_quant with its max (rule %d, bits %d) of y = %" PRId64 " * 2^%d", (int)rule,
                      bits, y[i], e_y);
    free(want), free(a), free(yy), free(a2);
    wg_tensor_free(&ty), wg_tensor_free(&ta), wg_tensor_free(&ty2), wg_tensor_free(&ta2);
}

static void test_relu_quant_hand(void **state)
{
    wg_backend *b = *state;
    /* e_y = -14: max 16319 is 127.49 units of 2^-7 (fits at -7); 64, 192, 320 are the ties
     * 0.5, 1.5, 2.5 (to 0, 2, 2) */
    const int64_t y1[] = {16319, -5, 0, 64, 192, 320}, a1[] = {127, 0, 0, 0, 2, 2};
    /* 16320 is 127.5: a tie to the even 128, which does not fit: e = -6 (63.75 -> 64) */
    const int64_t y2[] = {16320, 1, 384}, a2[] = {64, 0, 2};
    const int64_t y3[] = {-100, -1, 0}, a3[] = {0, 0, 0}; /* all rectified: the floor */
    const int64_t y4[] = {16320, 20000, -3, 96}, a4[] = {127, 127, 0, 1}; /* fixed: saturates at 127 */
    struct { const int64_t *y, *a; int64_t n; wg_act_exponent rule; int e; } cases[] = {
        {y1, a1, 6, WG_ACT_FIT, -7}, {y2, a2, 3, WG_ACT_FIT, -6}, {y3, a3, 3, WG_ACT_FIT, -7},
        {y3, a3, 3, WG_ACT_FIXED, -7}, {y4, a4, 4, WG_ACT_FIXED, -7}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        wg_tensor ty = tr_tensor_from(b, NULL, WG_I32, cases[c].y, cases[c].n, -14),
                  ta = tr_tensor_out(b, WG_I8, cases[c].n);
        wg_relu_quant_forward(&ty, &ta, 8, cases[c].rule);
        tr_expect_q(&ta, cases[c].a, cases[c].n, cases[c].e, "relu_quant hand case");
        wg_tensor_free(&ty), wg_tensor_free(&ta);
        check_relu_quant(b, NULL, cases[c].y, cases[c].n, -14, 8, cases[c].rule);
    }
}

static void test_relu_quant_random(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xac7};
    for (int it = 0; it < 400; it++) {
        int ndim;
        int64_t shape[WG_MAX_DIMS], n = tr_random_shape(&r, 0, &ndim, shape);
        int64_t *y = malloc((size_t)n * sizeof *y);
        tr_fill(&r, y, n, WG_I32, (int)tr_range(&r, 0, 31));
        if (it % 5 == 0) y[tr_range(&r, 0, n - 1)] = INT32_MAX;
        int e_y = it % 3 ? -14 : (int)tr_range(&r, -24, 2), bits = it % 4 ? 8 : (int)tr_range(&r, 2, 8);
        check_relu_quant(b, &r, y, n, e_y, bits, it & 1 ? WG_ACT_FIXED : WG_ACT_FIT);
        free(y);
    }
}

static void test_relu_backward_s8(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xbac7};
    for (int it = 0; it < 100; it++) {
        int64_t n = tr_range(&r, 1, 2000), *y = malloc((size_t)n * 8), *de = malloc((size_t)n * 8);
        for (int64_t i = 0; i < n; i++) {
            y[i] = tr_next(&r) % 3 == 0 ? 0 : tr_i64_mag(&r, (int)tr_range(&r, 1, 31));
            de[i] = tr_range(&r, -127, 127);
        }
        int e_de = (int)tr_range(&r, -20, 0);
        wg_tensor ty = tr_tensor_from(b, &r, WG_I32, y, n, -14), td = tr_tensor_from(b, NULL, WG_I8, de, n, e_de);
        wg_relu_backward_s8(&ty, &td);
        int64_t *out = tr_tensor_get(&td);
        for (int64_t i = 0; i < n; i++)
            TR_EXPECT_I64(y[i] > 0 ? de[i] : 0, out[i],
                          "relu backward: y %" PRId64 ", de %" PRId64 " (element %" PRId64 ")", y[i], de[i], i);
        TR_EXPECT_I64(e_de, td.exp, "relu backward changed the error's exponent%s", "");
        tl_expect_unchanged(&ty, y, -14, "relu backward");
        free(y), free(de), free(out);
        wg_tensor_free(&ty), wg_tensor_free(&td);
    }
}

/* float32 ReLU: the forward is exact; the backward equals the central finite
 * difference of L = sum c_i relu(y_i) (double), to 1e-9, where |y_i| > 2h. */
static void test_relu_f32(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xf32ac7};
    const double h = 1.0 / 1024;
    for (int it = 0; it < 50; it++) {
        int64_t n = tr_range(&r, 1, 300);
        float *y = malloc((size_t)n * 4), *c = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++)
            y[i] = tr_next(&r) % 9 == 0 ? 0.0f : tl_rand_f(&r, 2.0), c[i] = tl_rand_f(&r, 1.0);
        wg_tensor ty = tl_vec(b, WG_F32, n, 0, NULL, y), ta = tl_vec(b, WG_F32, n, 0, NULL, NULL),
                  td = tl_vec(b, WG_F32, n, 0, NULL, c);
        wg_relu_f32_forward(&ty, &ta);
        wg_relu_f32_backward(&ty, &td);
        float *a = tl_get_f32(&ta), *d = tl_get_f32(&td), *y2 = tl_get_f32(&ty);
        for (int64_t i = 0; i < n; i++) {
            TR_FAIL_IF(a[i] != (y[i] > 0 ? y[i] : 0.0f), "relu f32 forward of %a gave %a", (double)y[i], (double)a[i]);
            TR_FAIL_IF(d[i] != (y[i] > 0 ? c[i] : 0.0f), "relu f32 backward at y = %a, de %a: %a", (double)y[i],
                       (double)c[i], (double)d[i]);
            TR_FAIL_IF(y2[i] != y[i], "relu f32 modified its input at %" PRId64, i);
            if (fabs(y[i]) <= 2 * h) continue;
            double yp = y[i] + h, ym = y[i] - h; /* L changes only through element i */
            double fd = (c[i] * (yp > 0 ? yp : 0) - c[i] * (ym > 0 ? ym : 0)) / (2 * h);
            TR_FAIL_IF(fabs(d[i] - fd) > 1e-9, "relu f32 backward at y = %g: %g, finite difference %g", (double)y[i],
                       (double)d[i], fd);
        }
        free(y), free(c), free(a), free(d), free(y2);
        wg_tensor_free(&ty), wg_tensor_free(&ta), wg_tensor_free(&td);
    }
}

/* ---- pool: global average pooling ---- */

typedef struct gap_geom { int64_t n, h, w, c; } gap_geom;

/* Forward of an int8 NHWC tensor q: RNE(sum / HW) at the input's exponent. */
static void check_gap_forward(wg_backend *b, gap_geom g, const int64_t *q, int e, const char *what)
{
    int64_t nc = g.n * g.c, *want = malloc((size_t)nc * 8);
    wg_tensor ta = tl_nhwc(b, WG_I8, g.n, g.h, g.w, g.c, e, q, NULL);
    const int64_t oshape[4] = {g.n, 1, 1, g.c};
    wg_tensor to = (nc % 2) ? tl_vec(b, WG_I8, nc, 99, NULL, NULL)
                            : tl_tensor(b, WG_I8, WG_LAYOUT_PLAIN, 4, oshape, 99, NULL, NULL);
    wg_gap_s8_forward(&ta, &to);
    TR_EXPECT_I64(e, to.exp, "%s: GAP forward exponent", what);
    int64_t *out = tr_tensor_get(&to);
    tl_gap_ref(q, g.n, g.h * g.w, g.c, want);
    for (int64_t i = 0; i < nc; i++)
        TR_EXPECT_I64(want[i], out[i],
                      "%s: GAP forward N %" PRId64 " H %" PRId64 " W %" PRId64 " C %" PRId64 " at %" PRId64, what, g.n,
                      g.h, g.w, g.c, i);
    tl_expect_unchanged(&ta, q, e, what);
    free(out), free(want);
    wg_tensor_free(&ta), wg_tensor_free(&to);
}

/* Backward of errors d (container dt): every position RNE(d * 2^8 / HW), int64, at e - 8. */
static void check_gap_backward(wg_backend *b, gap_geom g, wg_dtype dt, const int64_t *d, int e, const char *what)
{
    int64_t hw = g.h * g.w, nc = g.n * g.c;
    wg_tensor ta = tl_nhwc(b, WG_I8, g.n, g.h, g.w, g.c, 0, NULL, NULL), td = tl_vec(b, dt, nc, e, d, NULL),
              tx = tl_nhwc(b, WG_I64, g.n, g.h, g.w, g.c, 99, NULL, NULL);
    wg_tensor_zero(&ta);
    wg_gap_s8_backward(&td, &ta, &tx);
    TR_EXPECT_I64(e - WG_GAP_EXTRA_BITS, tx.exp, "%s: GAP backward exponent", what);
    int64_t *out = tr_tensor_get(&tx);
    for (int64_t bi = 0; bi < g.n; bi++)
        for (int64_t ch = 0; ch < g.c; ch++) {
            i128 want = ref_clamp128(tl_div_rne((i128)d[bi * g.c + ch] * 256, hw), INT64_MAX);
            for (int64_t p = 0; p < hw; p++)
                TR_EXPECT_I64((int64_t)want, out[(bi * hw + p) * g.c + ch],
                              "%s: GAP backward of %" PRId64 " over HW %" PRId64 " (b %" PRId64 ", c %" PRId64
                              ", position %" PRId64 ")",
                              what, d[bi * g.c + ch], hw, bi, ch, p);
        }
    tl_expect_unchanged(&td, d, e, what);
    free(out);
    wg_tensor_free(&ta), wg_tensor_free(&td), wg_tensor_free(&tx);
}

static void test_gap_s8_hand(void **state)
{
    wg_backend *b = *state;
    /* H 1, W 2: the sums 1, 3, 5, -1, -3, -5, 2, 254 are the ties and exact halves */
    const int64_t q[] = {1, 3, 5, -1, -3, -5, 2, 127, 0, 0, 0, 0, 0, 0, 0, 127};
    const int64_t want[] = {0, 2, 2, 0, -2, -2, 1, 127};
    wg_tensor ta = tl_nhwc(b, WG_I8, 1, 1, 2, 8, -5, q, NULL), to = tl_vec(b, WG_I8, 8, 0, NULL, NULL);
    wg_gap_s8_forward(&ta, &to);
    tr_expect_q(&to, want, 8, -5, "GAP forward ties");
    wg_tensor_free(&ta), wg_tensor_free(&to);
    check_gap_forward(b, (gap_geom){1, 1, 2, 8}, q, -5, "GAP forward ties");
    /* the backward's reference on hand-derived ties: HW 512 (d / 2) and 1024 (d / 4) */
    const int64_t d[] = {1, 3, -1, -3, 5, 2, 6, -6}, want2[] = {0, 2, 0, -2, 2, 1, 3, -3},
                  want4[] = {0, 1, 0, -1, 1, 0, 2, -2};
    for (int i = 0; i < 8; i++)
        TR_FAIL_IF(tl_div_rne(d[i] * 256, 512) != want2[i] || tl_div_rne(d[i] * 256, 1024) != want4[i],
                   "the RNE reference at %d", i);
    check_gap_backward(b, (gap_geom){1, 16, 32, 8}, WG_I32, d, -9, "GAP backward ties, HW 512");
    check_gap_backward(b, (gap_geom){2, 32, 32, 4}, WG_I32, d, -9, "GAP backward ties, HW 1024");
    const int64_t d3[] = {1, -1, 127, INT32_MAX, -INT32_MAX, INT32_MIN}; /* HW = 3, 7, 49 and int32 extremes */
    const gap_geom gs[] = {{1, 1, 3, 6}, {1, 7, 1, 6}, {1, 7, 7, 6}};
    for (int c = 0; c < 3; c++) check_gap_backward(b, gs[c], WG_I32, d3, 0, "GAP backward HW 3, 7, 49");
}

static void test_gap_s8_random(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0x9a9};
    for (int it = 0; it < 303; it++) { /* the last three large enough for the threads (pool.c) */
        gap_geom g = it < 300 ? (gap_geom){tr_range(&r, 1, 4), tr_range(&r, 1, 9), tr_range(&r, 1, 9), tr_range(&r, 1, 7)}
                              : (gap_geom){tr_range(&r, 60, 70), 8, 8, tr_range(&r, 10, 20)};
        int64_t na = g.n * g.h * g.w * g.c, nc = g.n * g.c, *q = malloc((size_t)na * 8), *d = malloc((size_t)nc * 8);
        int mode = (int)(tr_next(&r) % 4); /* random, all +127, all -127, small values (many ties) */
        for (int64_t i = 0; i < na; i++)
            q[i] = mode == 1 ? 127 : mode == 2 ? -127 : mode == 3 ? tr_range(&r, -2, 2) : tr_range(&r, -127, 127);
        check_gap_forward(b, g, q, (int)tr_range(&r, -10, 3), "GAP forward random");
        bool wide = it % 3 == 0; /* int64 errors: |d| * 2^8 stays inside int64 */
        for (int64_t i = 0; i < nc; i++)
            d[i] = wide ? tr_i64_mag(&r, (int)tr_range(&r, 0, 55)) : tr_i64_mag(&r, (int)tr_range(&r, 0, 31));
        check_gap_backward(b, g, wide ? WG_I64 : WG_I32, d, (int)tr_range(&r, -30, 0), "GAP backward random");
        free(q), free(d);
    }
}

/* int64 errors whose exact result RNE(d * 2^8 / HW) fits int64 even though d * 2^8 does
 * not (pool.h admits int64 errors; the result container is int64). */
static void test_gap_s8_backward_int64_wide(void **state)
{
    wg_backend *b = *state;
    const int64_t d[] = {INT64_C(1) << 60, -(INT64_C(1) << 58) - 3, INT64_C(1) << 56, 12345};
    check_gap_backward(b, (gap_geom){1, 8, 8, 4}, WG_I64, d, 0, "GAP backward, |d| >= 2^55");
}

/* The mean of channel ch of image bi, in double (exact sums for the values of these tests). */
static double gap_mean(const double *x, gap_geom g, int64_t bi, int64_t ch)
{
    double s = 0;
    for (int64_t p = 0; p < g.h * g.w; p++) s += x[(bi * g.h * g.w + p) * g.c + ch];
    return s / (double)(g.h * g.w);
}

/* float32 GAP: the forward within one float rounding of the exact mean; the backward
 * against central differences of L = sum r_bc mean_bc (double), to 2^-23 |fd| + 1e-12. */
static void test_gap_f32(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xf329a9};
    const double h = 1.0 / 256;
    for (int it = 0; it < 40; it++) {
        gap_geom g = {tr_range(&r, 1, 3), tr_range(&r, 1, 6), tr_range(&r, 1, 6), tr_range(&r, 1, 5)};
        int64_t hw = g.h * g.w, na = g.n * hw * g.c, nc = g.n * g.c;
        float *x = malloc((size_t)na * 4), *rr = malloc((size_t)nc * 4);
        for (int64_t i = 0; i < na; i++) x[i] = tl_rand_f(&r, 3.0);
        for (int64_t i = 0; i < nc; i++) rr[i] = tl_rand_f(&r, 1.0);
        wg_tensor ta = tl_nhwc(b, WG_F32, g.n, g.h, g.w, g.c, 0, NULL, x), to = tl_vec(b, WG_F32, nc, 0, NULL, NULL),
                  td = tl_vec(b, WG_F32, nc, 0, NULL, rr), tx = tl_nhwc(b, WG_F32, g.n, g.h, g.w, g.c, 0, NULL, NULL);
        wg_gap_f32_forward(&ta, &to);
        wg_gap_f32_backward(&td, &ta, &tx);
        float *o = tl_get_f32(&to), *dx = tl_get_f32(&tx);
        double *xd = malloc((size_t)na * 8);
        for (int64_t i = 0; i < na; i++) xd[i] = x[i];
        for (int64_t i = 0; i < na; i++) { /* L depends on x_i only through its own channel's mean */
            int64_t bi = i / (hw * g.c), ch = i % g.c, j = bi * g.c + ch;
            double mean = gap_mean(xd, g, bi, ch), keep = xd[i], lp, fd;
            TR_FAIL_IF(fabs(o[j] - mean) > ldexp(fabs(mean), -23), "GAP f32 forward: %g, mean %g", (double)o[j], mean);
            xd[i] = keep + h, lp = rr[j] * gap_mean(xd, g, bi, ch);
            xd[i] = keep - h, fd = (lp - rr[j] * gap_mean(xd, g, bi, ch)) / (2 * h);
            xd[i] = keep;
            TR_FAIL_IF(fabs(dx[i] - fd) > ldexp(fabs(fd), -23) + 1e-12,
                       "GAP f32 backward at %" PRId64 ": %g, finite difference %g", i, (double)dx[i], fd);
        }
        float *x2 = tl_get_f32(&ta);
        TR_FAIL_IF(memcmp(x2, x, (size_t)na * 4) != 0, "GAP f32 modified its input%s", "");
        free(x), free(rr), free(o), free(dx), free(xd), free(x2);
        wg_tensor_free(&ta), wg_tensor_free(&to), wg_tensor_free(&td), wg_tensor_free(&tx);
    }
}

/* ---- residual: aligned sums ---- */

/* out = a + b: the exact sum at the finer exponent, stored by the fit rule (int32). */
static void check_residual(wg_backend *b, tr_rng *r, wg_dtype da, const int64_t *qa, int ea, wg_dtype db,
                           const int64_t *qb, int eb, int64_t n)
{
    wg_tensor ta = tr_tensor_from(b, r, da, qa, n, ea), tb = tr_tensor_from(b, NULL, db, qb, n, eb),
              to = tr_tensor_out(b, WG_I32, n), tt = tr_tensor_out(b, WG_I64, n);
    uint64_t got_max = wg_residual_add(&ta, &tb, &to, &tt);
    int64_t *want = malloc((size_t)n * 8), *out = tr_tensor_get(&to);
    int e_out = tl_residual_ref(qa, ea, qb, eb, n, want);
    /* the max it hands to BN: max |out|, or unknown */
    uint64_t want_max = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t a = (uint64_t)llabs(want[i]);
        want_max = a > want_max ? a : want_max;
    }
    bool exact_sum = da == WG_I32 && db == WG_I32 && e_out == (ea < eb ? ea : eb); /* the int32 path */
    if (exact_sum || got_max != WG_QUANT_MAX_UNKNOWN)
        TR_EXPECT_I64((int64_t)want_max, (int64_t)got_max, "residual %s + %s (n %" PRId64 "): max |out|", tr_dt(da),
                      tr_dt(db), n);
    TR_EXPECT_I64(e_out, to.exp, "residual %s * 2^%d + %s * 2^%d (n %" PRId64 "): exponent", tr_dt(da), ea, tr_dt(db),
                  eb, n);
    for (int64_t i = 0; i < n; i++)
        TR_EXPECT_I64(want[i], out[i], "residual %" PRId64 " * 2^%d + %" PRId64 " * 2^%d (element %" PRId64 ")", qa[i],
                      ea, qb[i], eb, i);
    tl_expect_unchanged(&ta, qa, ea, "residual add");
    tl_expect_unchanged(&tb, qb, eb, "residual add");
    free(want), free(out);
    wg_tensor_free(&ta), wg_tensor_free(&tb), wg_tensor_free(&to), wg_tensor_free(&tt);
}

static void test_residual_add(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0x4e5};
    const int64_t ext[] = {INT32_MAX, INT32_MAX, -INT32_MAX, INT32_MIN, 1, -1, 0};
    for (int gap = 0; gap <= 31; gap++) /* int32 extremes at every gap, both orders */
        for (int order = 0; order < 2; order++) {
            int ea = order ? -gap - 3 : -3, eb = order ? -3 : -gap - 3;
            const int64_t rev[] = {INT32_MAX, -INT32_MAX, -INT32_MAX, INT32_MAX, -1, 1, 0};
            check_residual(b, NULL, WG_I32, ext, ea, WG_I32, ext, eb, 7);
            check_residual(b, NULL, WG_I32, ext, ea, WG_I32, rev, eb, 7);
        }
    const wg_dtype dts[] = {WG_I8, WG_I16, WG_I32};
    for (int it = 0; it < 600; it++) {
        int ndim;
        int64_t shape[WG_MAX_DIMS], n = tr_random_shape(&r, 0, &ndim, shape);
        wg_dtype da = dts[tr_next(&r) % 3], db = it % 2 ? WG_I32 : dts[tr_next(&r) % 3];
        int64_t *qa = malloc((size_t)n * 8), *qb = malloc((size_t)n * 8);
        tr_fill(&r, qa, n, da, (int)tr_range(&r, 0, tr_cbits(da) - 1));
        tr_fill(&r, qb, n, db, (int)tr_range(&r, 0, tr_cbits(db) - 1));
        if (it % 7 == 0) qa[0] = tr_cbound(da), qb[0] = tr_cbound(db);
        int ea = (int)tr_range(&r, -40, 10), gap = (int)tr_range(&r, 0, 31), eb = it % 4 < 2 ? ea + gap : ea - gap;
        check_residual(b, &r, da, qa, ea, db, qb, eb, n);
        free(qa), free(qb);
    }
}

/* acc (int64) += add: exact at the finer exponent, clamped to +-INT64_MAX when the true
 * sum passes it. */
static void check_accumulate(wg_backend *b, tr_rng *r, const int64_t *acc, int e_acc, wg_dtype dt, const int64_t *add,
                             int e_add, int64_t n, const char *what)
{
    wg_tensor tacc = tr_tensor_from(b, r, WG_I64, acc, n, e_acc), tadd = tr_tensor_from(b, NULL, dt, add, n, e_add);
    uint64_t got_max = wg_error_accumulate(&tacc, &tadd), want_max = 0;
    int e = e_acc < e_add ? e_acc : e_add;
    TR_EXPECT_I64(e, tacc.exp, "%s: accumulated exponent (acc 2^%d, add 2^%d)", what, e_acc, e_add);
    int64_t *out = tr_tensor_get(&tacc);
    for (int64_t i = 0; i < n; i++) {
        i128 s = (i128)acc[i] * ((i128)1 << (e_acc - e)) + (i128)add[i] * ((i128)1 << (e_add - e));
        int64_t want = (int64_t)ref_clamp128(s, INT64_MAX);
        TR_EXPECT_I64(want, out[i], "%s: %" PRId64 " * 2^%d + %" PRId64 " * 2^%d (%s, element %" PRId64 ")", what,
                      acc[i], e_acc, add[i], e_add, tr_dt(dt), i);
        uint64_t a = want < 0 ? (uint64_t)0 - (uint64_t)want : (uint64_t)want;
        want_max = a > want_max ? a : want_max;
    }
    TR_EXPECT_I64((int64_t)want_max, (int64_t)got_max, "%s: the returned max |acc|", what);
    tl_expect_unchanged(&tadd, add, e_add, what);
    free(out);
    wg_tensor_free(&tacc), wg_tensor_free(&tadd);
}

static void test_error_accumulate(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xacc};
    const wg_dtype dts[] = {WG_I8, WG_I16, WG_I32, WG_I64};
    for (int it = 0; it < 600; it++) {
        int64_t n = tr_range(&r, 1, 300), *acc = malloc((size_t)n * 8), *add = malloc((size_t)n * 8);
        wg_dtype dt = dts[tr_next(&r) % 4];
        int e_acc = (int)tr_range(&r, -40, 5), gap = (int)tr_range(&r, 0, 31),
            e_add = it % 2 ? e_acc + gap : e_acc - gap;
        /* each term, moved to the finer exponent, stays inside int64; their sum may not */
        int ma = 63 - (e_acc - (e_acc < e_add ? e_acc : e_add)), mb = 63 - (e_add - (e_acc < e_add ? e_acc : e_add));
        int cb = tr_cbits(dt) - 1 < mb ? tr_cbits(dt) - 1 : mb;
        for (int64_t i = 0; i < n; i++) {
            acc[i] = tr_i64_mag(&r, (int)tr_range(&r, 0, ma));
            add[i] = tr_i64_mag(&r, (int)tr_range(&r, 0, cb));
            if (add[i] > tr_cbound(dt)) add[i] = tr_cbound(dt);
            if (add[i] < -tr_cbound(dt)) add[i] = -tr_cbound(dt);
        }
        if (it % 5 == 0)
            acc[0] = ma == 63 ? INT64_MAX : (INT64_C(1) << ma) - 1,
            add[0] = cb == 63 ? INT64_MAX : (INT64_C(1) << cb) - 1;
        check_accumulate(b, &r, acc, e_acc, dt, add, e_add, n, "error accumulate");
        free(acc), free(add);
    }
    const int64_t a2[] = {INT64_MAX, -INT64_MAX, INT64_MAX, 5}, b2[] = {INT64_MAX, -INT64_MAX, -INT64_MAX, -5};
    check_accumulate(b, NULL, a2, 0, WG_I64, b2, 0, 4, "error accumulate saturation");
}

/* A term that alone passes int64 once moved to the finer exponent, while the true sum
 * fits (or saturates by less than that term): the result must be the clamped true sum. */
static void test_error_accumulate_saturated_term(void **state)
{
    wg_backend *b = *state;
    const int64_t acc[] = {INT64_C(1) << 62, INT64_C(1) << 62, -(INT64_C(1) << 62)},
                  add[] = {-1, -(INT64_C(1) << 62), 2};
    check_accumulate(b, NULL, acc, 1, WG_I64, add, 0, 3, "error accumulate, acc 2^62 at exponent 1");
}

/* An all-zero side far from the other's exponent (a zero error's exponent drifts):
 * the sums take the other side's grid and values; hand-derived. */
static void test_sums_zero_far_apart(void **state)
{
    wg_backend *b = *state;
    const int64_t v[] = {5, -7, 0, INT32_MAX}, z[] = {0, 0, 0, 0};
    enum { N = 4 };
    for (int zero_first = 0; zero_first < 2; zero_first++) {
        /* error sums: acc at -10, the zero term at -206 (or the other way round) */
        wg_tensor acc = tr_tensor_from(b, NULL, WG_I64, zero_first ? z : v, N, zero_first ? -206 : -10);
        wg_tensor add = tr_tensor_from(b, NULL, WG_I32, zero_first ? v : z, N, zero_first ? -10 : -206);
        wg_error_accumulate(&acc, &add);
        assert_int_equal(acc.exp, -10);
        int64_t *got = tr_tensor_get(&acc);
        for (int i = 0; i < N; i++) TR_EXPECT_I64(v[i], got[i], "accumulate, zero %s, element %d",
                                                  zero_first ? "acc" : "add", i);
        free(got);
        wg_tensor_free(&acc), wg_tensor_free(&add);
        /* the residual stream: int32 sums */
        wg_tensor x = tr_tensor_from(b, NULL, WG_I32, zero_first ? z : v, N, zero_first ? 100 : -10);
        wg_tensor y = tr_tensor_from(b, NULL, WG_I32, zero_first ? v : z, N, zero_first ? -10 : 100);
        wg_tensor out = tr_tensor_out(b, WG_I32, N), tmp = tr_tensor_out(b, WG_I64, N);
        wg_residual_add(&x, &y, &out, &tmp);
        assert_int_equal(out.exp, -10);
        got = tr_tensor_get(&out);
        for (int i = 0; i < N; i++) TR_EXPECT_I64(v[i], got[i], "residual, zero %s, element %d",
                                                  zero_first ? "a" : "b", i);
        free(got);
        wg_tensor_free(&x), wg_tensor_free(&y), wg_tensor_free(&out), wg_tensor_free(&tmp);
    }
}

static void test_add_f32(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xadd};
    for (int it = 0; it < 30; it++) {
        int64_t n = tr_range(&r, 1, 500);
        float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)ldexp((double)tr_i64_mag(&r, 24), (int)tr_range(&r, -40, 0)), y[i] = tl_rand_f(&r, 4.0);
        for (int alias = 0; alias < 3; alias++) { /* out separate, out = a, out = b */
            wg_tensor ta = tl_vec(b, WG_F32, n, 0, NULL, x), tb = tl_vec(b, WG_F32, n, 0, NULL, y),
                      to = tl_vec(b, WG_F32, n, 0, NULL, NULL);
            wg_add_f32(&ta, &tb, alias == 0 ? &to : alias == 1 ? &ta : &tb);
            float *o = tl_get_f32(alias == 0 ? &to : alias == 1 ? &ta : &tb);
            for (int64_t i = 0; i < n; i++) /* double holds the exact sum of two floats */
                TR_FAIL_IF(o[i] != (float)((double)x[i] + (double)y[i]), "add f32 (alias %d): %a + %a gave %a", alias,
                           (double)x[i], (double)y[i], (double)o[i]);
            free(o);
            wg_tensor_free(&ta), wg_tensor_free(&tb), wg_tensor_free(&to);
        }
        free(x), free(y);
    }
}

/* ---- softmax: fixed-point exp and the integer softmax cross-entropy ---- */

static void test_exp2_frac_q30(void **state)
{
    (void)state;
    tr_rng r = {0xe2};
    TR_EXPECT_I64(INT64_C(1) << 30, wg_exp2_frac_q30(0), "2^0 in Q30%s", "");
    for (int64_t k = 0; k < 600000; k++) {
        int64_t f = k < 31   ? (INT64_C(1) << k) - 1
                    : k < 62 ? (INT64_C(1) << 30) - (INT64_C(1) << (k - 31))
                             : tr_range(&r, 0, (INT64_C(1) << 30) - 1);
        if (k >= 62 && k < 100062) f = (INT64_C(1) << 30) - 1 - (k - 62); /* the top of the range, densely */
        long double want = ldexpl(exp2l(ldexpl(f, -30)), 30);
        int64_t got = wg_exp2_frac_q30(f);
        TR_FAIL_IF(got < (INT64_C(1) << 30) || got >= (INT64_C(1) << 31),
                   "exp2_frac(%" PRId64 ") = %" PRId64 " outside [2^30, 2^31)", f, got);
        TR_FAIL_IF(fabsl(got - want) > TL_EXP2_FRAC_BOUND * want,
                   "exp2_frac(%" PRId64 ") = %" PRId64 ", 2^f * 2^30 = %.3Lf (relative error %.3Le)", f, got, want,
                   fabsl(got - want) / want);
    }
}

static void test_exp_q30(void **state)
{
    (void)state;
    tr_rng r = {0xe30};
    TR_EXPECT_I64((int64_t)rintl(ldexpl(1.0L / logl(2.0L), 30)), WG_LOG2E_Q30, "WG_LOG2E_Q30 is RNE(log2(e) 2^30)%s",
                  "");
    for (int e_z = -26; e_z <= 30; e_z++) {
        int count = e_z <= 0 ? 4000 : 40;
        for (int k = 0; k < count; k++) {
            int64_t lim = e_z <= 0 ? (INT64_C(70) << -e_z) : 70 >> (e_z > 6 ? 6 : e_z),
                    fl = e_z <= 0 ? INT64_C(64) << -e_z : 64 >> (e_z > 6 ? 6 : e_z);
            int64_t d = k == 0 ? 0 : k == 1 ? -fl : k == 2 ? -fl - 1 : k == 3 ? -1 : -tr_range(&r, 0, lim);
            long double x = ldexpl(d, e_z), want = ldexpl(expl(x), 30);
            int64_t got = wg_exp_q30(d, e_z);
            if (x < -64) {
                TR_EXPECT_I64(0, got, "exp_q30(%" PRId64 ", e_z %d): below e^-64", d, e_z);
                continue;
            }
            TR_FAIL_IF(fabsl(got - want) > want * tl_exp_rel_bound(x) + 0.5L,
                       "exp_q30(%" PRId64 ", e_z %d) = %" PRId64 ", e^x * 2^30 = %.3Lf (x = %.6Lg)", d, e_z, got, want,
                       x);
        }
        TR_EXPECT_I64(INT64_C(1) << 30, wg_exp_q30(0, e_z), "exp_q30(0, e_z %d)", e_z);
    }
}

/* One batch through wg_softmax_ce_s32 against the long double softmax
 * (tl_softmax_row_ref): p_i (Q15) lies in [RNE(P - eta), RNE(P + eta)], and dz_i must be
 * RNE((p_i - 2^15 [label]) 2^8 / N) for such a p_i; for N dividing 2^8, p_i itself is
 * recovered exactly from dz_i and lies within 0.5 + eta of P. */
static void check_softmax_s32(wg_backend *b, const int64_t *z, const int32_t *lab, int64_t n, int64_t k, int e_z,
                              bool with_dz)
{
    const int64_t shape[2] = {n, k};
    wg_tensor tz = tl_tensor(b, WG_I32, WG_LAYOUT_PLAIN, 2, shape, e_z, z, NULL), td = {0};
    if (with_dz) td = tl_tensor(b, WG_I32, WG_LAYOUT_PLAIN, 2, shape, 99, NULL, NULL);
    wg_loss_stats st = {0};
    wg_softmax_ce_s32(&tz, lab, with_dz ? &td : NULL, &st);
    int64_t *dz = with_dz ? tr_tensor_get(&td) : NULL, correct = 0, correct5 = 0;
    if (with_dz) TR_EXPECT_I64(-(15 + WG_SOFTMAX_GRAD_EXTRA), td.exp, "softmax gradient exponent%s", "");
    long double loss = 0, tol = 0, *p = malloc((size_t)k * sizeof *p), *eta = malloc((size_t)k * sizeof *eta);
    for (int64_t bi = 0; bi < n; bi++) {
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++) best = z[bi * k + j] > z[bi * k + best] ? j : best;
        correct += best == lab[bi];
        /* top-5 by picking the largest remaining logit 5 times (ties: the lowest index) */
        bool taken[64] = {false}, in5 = false;
        for (int r = 0; r < 5 && r < k && k <= 64; r++) {
            int64_t m = -1;
            for (int64_t j = 0; j < k; j++)
                if (!taken[j] && (m < 0 || z[bi * k + j] > z[bi * k + m])) m = j;
            taken[m] = true;
            in5 |= m == lab[bi];
        }
        correct5 += k <= 64 ? in5 : 0;
        long double term = tl_softmax_row_ref(z + bi * k, k, e_z, lab[bi], p, eta), sum_dz = 0;
        loss += term, tol += 1e-13L * (k + fabsl(term));
        for (int64_t j = 0; with_dz && j < k; j++) {
            int64_t lo = (int64_t)rintl(p[j] - eta[j]), hi = (int64_t)rintl(p[j] + eta[j]), g = dz[bi * k + j],
                    oh = j == lab[bi] ? 32768 : 0;
            bool ok = false;
            for (int64_t c = lo; c <= hi; c++) ok |= g == (int64_t)tl_div_rne((i128)(c - oh) * 256, n);
            TR_FAIL_IF(!ok,
                       "softmax dz[%" PRId64 "][%" PRId64 "] = %" PRId64 ": p in [%" PRId64 ", %" PRId64
                       "] (P = %.6Lf Q15), label %d, N %" PRId64 " K %" PRId64 " e_z %d",
                       bi, j, g, lo, hi, p[j], (int)lab[bi], n, k, e_z);
            if (256 % n == 0) { /* exact: p - onehot = dz N / 2^8 */
                TR_FAIL_IF((g * n) % 256 != 0, "softmax dz %" PRId64 " is not a multiple of 256 / N (N %" PRId64 ")", g,
                           n);
                long double pq = (long double)(g * n / 256 + oh);
                TR_FAIL_IF(fabsl(pq - p[j]) > 0.5L + eta[j],
                           "softmax p = %.0Lf Q15, long double %.6Lf (bound 0.5 + %.3Lg)", pq, p[j], eta[j]);
            }
            sum_dz += g;
        }
        TR_FAIL_IF(fabsl(sum_dz) > k * (128.0L / n + 0.5L),
                   "softmax row %" PRId64 ": sum of dz %.0Lf (K %" PRId64 ", N %" PRId64 ")", bi, sum_dz, k, n);
    }
    TR_FAIL_IF(fabsl(st.loss_sum - loss) > tol, "softmax loss %.17g, long double %.17Lg", st.loss_sum, loss);
    TR_EXPECT_I64(correct, st.correct, "softmax correct (N %" PRId64 " K %" PRId64 ")", n, k);
    if (k <= 64) TR_EXPECT_I64(correct5, st.correct5, "softmax top-5 correct (N %" PRId64 " K %" PRId64 ")", n, k);
    TR_EXPECT_I64(n, st.count, "softmax count%s", "");
    tl_expect_unchanged(&tz, z, e_z, "softmax");
    free(p), free(eta), free(dz);
    wg_tensor_free(&tz), wg_tensor_free(&td);
}

static void test_softmax_s32(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0x50f7};
    for (int it = 0; it < 400; it++) {
        static const int64_t ns[] = {1, 2, 3, 4, 5, 7, 8, 16, 64, 256};
        int64_t n = ns[tr_next(&r) % 10], k = it == 0 ? 1 : it == 1 ? 1000 : tr_range(&r, 2, 12);
        if (n * k > 4000) n = 4;
        int e_z = it % 5 == 4 ? (int)tr_range(&r, 1, 30) : (int)tr_range(&r, -26, 0);
        long double spread = (long double[]){0.5L, 4, 20, 70}[tr_next(&r) % 4];
        int64_t *z = malloc((size_t)(n * k) * 8);
        int32_t *lab = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n * k; i++) {
            long double v = rintl(ldexpl(spread * ((long double)tr_range(&r, -1000000, 1000000) / 1000000), -e_z));
            z[i] = (int64_t)ref_clampl(v, INT32_MAX);
            if (it % 11 == 0 && i % 3 == 0) z[i] = i % 2 ? INT32_MAX : -INT32_MAX; /* extremes */
        }
        for (int64_t bi = 0; bi < n; bi++) {
            lab[bi] = (int32_t)tr_range(&r, 0, k - 1);
            if (k > 2 && bi % 2 == 0) { /* a tie for the max: only the lowest index counts as correct */
                int64_t m = z[bi * k];
                for (int64_t j = 1; j < k; j++) m = z[bi * k + j] > m ? z[bi * k + j] : m;
                z[bi * k + 1] = z[bi * k + 2] = m;
                lab[bi] = (int32_t)(1 + bi % 4 / 2); /* 1 (correct when 0 is below the max) or 2 (never) */
            }
        }
        check_softmax_s32(b, z, lab, n, k, e_z, true);
        if (it % 4 == 0) check_softmax_s32(b, z, lab, n, k, e_z, false);
        free(z), free(lab);
    }
}

/* float32: the loss within 1e-12 relative, the gradient of the mean loss against
 * central differences (h = 2^-14, long double) to 2^-22 |fd| + 1e-10. */
static void test_softmax_f32(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xf3250f};
    const long double h = ldexpl(1, -14);
    for (int it = 0; it < 60; it++) {
        int64_t n = tr_range(&r, 1, 6), k = it == 0 ? 1 : tr_range(&r, 2, 12), nk = n * k;
        float *zf = malloc((size_t)nk * 4);
        long double *zl = malloc((size_t)nk * sizeof *zl);
        int32_t *lab = malloc((size_t)n * 4);
        for (int64_t i = 0; i < nk; i++) zl[i] = zf[i] = tl_rand_f(&r, 6.0);
        int64_t correct = 0;
        for (int64_t bi = 0; bi < n; bi++) {
            lab[bi] = (int32_t)tr_range(&r, 0, k - 1);
            if (k > 2 && bi % 2)
                zl[bi * k + 2] = zf[bi * k + 2] = zf[bi * k + 1] = 7.0f, zl[bi * k + 1] = 7.0L; /* tied max */
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++) best = zf[bi * k + j] > zf[bi * k + best] ? j : best;
            correct += best == lab[bi];
        }
        const int64_t shape[2] = {n, k};
        wg_tensor tz = tl_tensor(b, WG_F32, WG_LAYOUT_PLAIN, 2, shape, 0, NULL, zf),
                  td = tl_tensor(b, WG_F32, WG_LAYOUT_PLAIN, 2, shape, 0, NULL, NULL);
        wg_loss_stats st = {0}, st2 = {0};
        wg_softmax_ce_f32(&tz, lab, &td, &st);
        wg_softmax_ce_f32(&tz, lab, NULL, &st2);
        long double want = tl_ce_mean(zl, lab, n, k) * n;
        TR_FAIL_IF(fabsl(st.loss_sum - want) > 1e-12L * (1 + want), "softmax f32 loss %.17g, long double %.17Lg",
                   st.loss_sum, want);
        TR_FAIL_IF(st2.loss_sum != st.loss_sum || st2.correct != st.correct || st2.count != n,
                   "softmax f32 without dz: other stats%s", "");
        TR_EXPECT_I64(correct, st.correct, "softmax f32 correct (N %" PRId64 ", K %" PRId64 ")", n, k);
        TR_EXPECT_I64(n, st.count, "softmax f32 count%s", "");
        float *g = tl_get_f32(&td);
        for (int64_t i = 0; i < nk; i++) {
            long double keep = zl[i], lp, fd;
            zl[i] = keep + h, lp = tl_ce_mean(zl, lab, n, k);
            zl[i] = keep - h, fd = (lp - tl_ce_mean(zl, lab, n, k)) / (2 * h);
            zl[i] = keep;
            TR_FAIL_IF(fabsl(g[i] - fd) > ldexpl(fabsl(fd), -22) + 1e-10L,
                       "softmax f32 dz[%" PRId64 "] = %.9g, finite difference %.9Lg", i, (double)g[i], fd);
        }
        free(zf), free(zl), free(lab), free(g);
        wg_tensor_free(&tz), wg_tensor_free(&td);
    }
}

/* ---- the threaded and vectorized paths: sizes above WG_PAR_MIN, three threads ---- */

static const int64_t big_sizes[] = {1023, 1025, WG_PAR_MIN + 17, 3 * WG_PAR_MIN + 1001};
#define N_BIG_SIZES ((int)(sizeof big_sizes / sizeof big_sizes[0]))

static void test_relu_threaded(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0x7e1};
    int threads = omp_get_max_threads();
    omp_set_num_threads(3);
    for (int si = 0; si < N_BIG_SIZES; si++) {
        int64_t n = big_sizes[si], *y = malloc((size_t)n * 8), *de = malloc((size_t)n * 8);
        tr_fill(&r, y, n, WG_I32, 24);
        for (int64_t i = 0; i < n; i++) de[i] = tr_range(&r, -127, 127);
        check_relu_quant(b, &r, y, n, -14, 8, si % 2 ? WG_ACT_FIXED : WG_ACT_FIT);
        wg_tensor ty = tr_tensor_from(b, NULL, WG_I32, y, n, -14), td = tr_tensor_from(b, NULL, WG_I8, de, n, -9);
        wg_relu_backward_s8(&ty, &td);
        int64_t *out = tr_tensor_get(&td);
        for (int64_t i = 0; i < n; i++)
            TR_EXPECT_I64(y[i] > 0 ? de[i] : 0, out[i], "relu backward (n %" PRId64 "), element %" PRId64, n, i);
        free(y), free(de), free(out);
        wg_tensor_free(&ty), wg_tensor_free(&td);
    }
    omp_set_num_threads(threads);
}

/* int32 addends (the one-pass path while the sum fits int32, the int64 path when it
 * does not), and other containers. */
static void test_residual_add_threaded(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0x4e6};
    int threads = omp_get_max_threads();
    omp_set_num_threads(3);
    for (int si = 0; si < N_BIG_SIZES; si++)
        for (int k = 0; k < 7; k++) {
            int64_t n = big_sizes[si], *qa = malloc((size_t)n * 8), *qb = malloc((size_t)n * 8);
            wg_dtype da = k == 5 ? WG_I16 : WG_I32;
            int gap = k == 2 ? 31 : (int)tr_range(&r, 0, 12), ea = -5, eb = k % 2 ? ea + gap : ea - gap;
            /* k 0, 1: sums that fit; 2: gap 31; 3: extremes at gap 0 (the sum passes int32
             * in one element only); 4: large everywhere; 5: int16 + int32; 6: one sum 2^31 */
            tr_fill(&r, qa, n, da, k == 4 ? 31 : k == 2 ? 8 : 14);
            tr_fill(&r, qb, n, WG_I32, k == 4 ? 31 : 14);
            if (k == 3) qa[n / 2] = INT32_MAX, qb[n / 2] = INT32_MAX, gap = 0, eb = ea;
            if (k == 6) qa[n - 1] = INT32_MAX, qb[n - 1] = 1, gap = 0, eb = ea; /* exactly 2^31: one past int32 */
            check_residual(b, &r, da, qa, ea, WG_I32, qb, eb, n);
            free(qa), free(qb);
        }
    omp_set_num_threads(threads);
}

/* int64 adds (blocks in int64 lanes, a block with an overflowing element redone in 128
 * bits) and int32 adds. */
static void test_error_accumulate_threaded(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xacd};
    int threads = omp_get_max_threads();
    omp_set_num_threads(3);
    for (int si = 0; si < N_BIG_SIZES; si++)
        for (int k = 0; k < 6; k++) {
            int64_t n = big_sizes[si], *acc = malloc((size_t)n * 8), *add = malloc((size_t)n * 8);
            wg_dtype dt = k == 4 ? WG_I32 : WG_I64;
            int e_acc = -20, gap = k == 5 ? 0 : (int)tr_range(&r, 0, 31), e_add = k % 2 ? e_acc + gap : e_acc - gap;
            for (int64_t i = 0; i < n; i++) {
                acc[i] = tr_i64_mag(&r, 30);
                add[i] = tr_i64_mag(&r, 30);
            }
            /* k >= 2: a term that alone passes int64 (k even), a saturating sum, and (gap 0 at
             * k = 5) a sum of exactly INT64_MIN, which saturates to -INT64_MAX; near the ends
             * and inside */
            if (k >= 2) {
                int64_t at[3] = {3, n / 2 + 1, n - 1};
                for (int j = 0; j < 3; j++) {
                    acc[at[j]] = j == 0 ? INT64_C(1) << 62 : j == 1 ? INT64_MAX : INT64_MIN + 1;
                    add[at[j]] = j == 0 ? -1 : j == 1 ? (dt == WG_I32 ? INT32_MAX : INT64_MAX) : -1;
                }
            }
            check_accumulate(b, &r, acc, e_acc, dt, add, e_add, n, "error accumulate (threaded)");
            free(acc), free(add);
        }
    omp_set_num_threads(threads);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu_quant_hand),
        cmocka_unit_test(test_relu_quant_random),
        cmocka_unit_test(test_relu_backward_s8),
        cmocka_unit_test(test_relu_f32),
        cmocka_unit_test(test_gap_s8_hand),
        cmocka_unit_test(test_gap_s8_random),
        cmocka_unit_test(test_gap_s8_backward_int64_wide),
        cmocka_unit_test(test_gap_f32),
        cmocka_unit_test(test_residual_add),
        cmocka_unit_test(test_error_accumulate),
        cmocka_unit_test(test_error_accumulate_saturated_term),
        cmocka_unit_test(test_sums_zero_far_apart),
        cmocka_unit_test(test_add_f32),
        cmocka_unit_test(test_exp2_frac_q30),
        cmocka_unit_test(test_exp_q30),
        cmocka_unit_test(test_softmax_s32),
        cmocka_unit_test(test_softmax_f32),
        cmocka_unit_test(test_relu_threaded),
        cmocka_unit_test(test_residual_add_threaded),
        cmocka_unit_test(test_error_accumulate_threaded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
