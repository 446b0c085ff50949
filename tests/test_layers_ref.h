/* test_layers_ref.h: helpers of the layer and optimizer tests (test_layers.c,
 * test_optim.c), on top of test_ref.h.
 *
 * - tl_div_rne: the exact rational n / d rounded half to even, in 128-bit integers
 *   with '/' and '%' (never wg_rational.h, which is under test).
 * - tl_shift_exact: n * 2^-s rounded half to even for any sign of s, exact.
 * - tl_fit_exp: the fit rule's exponent, in value space.
 * - references of ReLU + A, global average pooling and the residual sum.
 * - tensor builders with an explicit layout and shape (integer and float32), and a
 *   float32 download.
 * - the error bound of the fixed-point exp (wg_softmax_elem.h), the long double
 *   softmax of a row of integer logits with the bound the exp error propagates to, and
 *   a long double cross-entropy.
 *
 * Include <cmocka.h>, tensor.h, backend.h and test_ref.h before this header. */
#ifndef TEST_LAYERS_REF_H
#define TEST_LAYERS_REF_H

#include <stdbool.h>

/* round_half_even(n / d) for d > 0, exact. */
static inline i128 tl_div_rne(i128 n, i128 d)
{
    i128 q = ref_floor_div(n, d);
    i128 twice_rem = 2 * (n - q * d); /* in [0, 2d) */
    if (twice_rem > d || (twice_rem == d && q % 2 != 0)) q += 1;
    return q;
}

/* round_half_even(n * 2^-s): a right shift rounded for s > 0, an exact left shift for
 * s <= 0 (the caller keeps |n| * 2^-s below 2^126). */
static inline i128 tl_shift_exact(i128 n, int s)
{
    if (s <= 0) return n * ((i128)1 << -s);
    if (s > 125) return 0; /* |n| < 2^126: |n / 2^s| < 1/2 */
    return ref_rne_div_pow2(n, s);
}

static inline i128 tl_abs128(i128 x) { return x < 0 ? -x : x; }

/* The fit rule in value space (docs/numerics.md, section 3): the smallest exponent
 * e >= e_min at which every RNE(v_i * 2^(e_in - e)) has magnitude <= bound. */
static inline int tl_fit_exp(const i128 *v, int64_t n, int e_in, int e_min, i128 bound)
{
    for (int e = e_min;; e++) {
        bool fits = true;
        for (int64_t i = 0; i < n && fits; i++) fits = tl_abs128(tl_shift_exact(v[i], e - e_in)) <= bound;
        if (fits) return e;
    }
}

/* ReLU, then A (int8) in value space: the exponent by the fit rule (floor -(bits-1)) or
 * fixed at -(bits-1); a[i] = clamp(RNE(max(y, 0) 2^(e_y - e_a)), 127). Returns e_a. */
static inline int tl_relu_quant_ref(const int64_t *y, int64_t n, int e_y, int bits, bool fit, int64_t *a)
{
    i128 *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = y[i] > 0 ? y[i] : 0;
    int e_a = fit ? tl_fit_exp(v, n, e_y, -(bits - 1), 127) : -(bits - 1);
    for (int64_t i = 0; i < n; i++)
        a[i] = (int64_t)ref_clampl(rintl(ldexpl(ldexpl((long double)v[i], e_y), -e_a)), 127);
    free(v);
    return e_a;
}

/* Global average pooling of q [N][HW][C]: mean[b][c] = RNE(exact sum / HW). */
static inline void tl_gap_ref(const int64_t *q, int64_t n, int64_t hw, int64_t c, int64_t *mean)
{
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            i128 s = 0;
            for (int64_t p = 0; p < hw; p++) s += q[(b * hw + p) * c + ch];
            mean[b * c + ch] = (int64_t)tl_div_rne(s, hw);
        }
}

/* a 2^ea + b 2^eb, exact at the finer exponent, then by the fit rule into int32 with that
 * exponent as the floor (RNE, in value space). Returns the output exponent. */
static inline int tl_residual_ref(const int64_t *qa, int ea, const int64_t *qb, int eb, int64_t n, int64_t *out)
{
    int e = ea < eb ? ea : eb;
    i128 *s = malloc((size_t)n * sizeof *s);
    for (int64_t i = 0; i < n; i++) s[i] = (i128)qa[i] * ((i128)1 << (ea - e)) + (i128)qb[i] * ((i128)1 << (eb - e));
    int e_out = tl_fit_exp(s, n, e, e, INT32_MAX);
    for (int64_t i = 0; i < n; i++)
        out[i] = (int64_t)rintl(ldexpl(ldexpl((long double)s[i], e), -e_out)); /* |s| < 2^63 */
    free(s);
    return e_out;
}

/* gcc 12 at -O3 reports q[] "maybe uninitialized" where callers pass q = NULL and the
 * loop cannot run: a known false positive of its inliner. */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

/* A tensor of the given layout and shape; q (widened integers) or f (float32) may be
 * NULL for an uninitialised output. Fails the test on error. */
static inline wg_tensor tl_tensor(wg_backend *b, wg_dtype dt, wg_layout layout, int ndim, const int64_t *shape,
                                  int exp, const int64_t *q, const float *f)
{
    wg_tensor t;
    bool ok = wg_tensor_init(&t, b, dt, layout, ndim, shape, exp);
    TR_FAIL_IF(!ok, "wg_tensor_init(dtype %d, rank %d) failed", (int)dt, ndim);
    int64_t n = wg_tensor_numel(&t);
    if (q != NULL) {
        void *host = malloc((size_t)n * wg_dtype_size(dt) + 1);
        for (int64_t i = 0; i < n; i++) wg_store_i64(host, dt, i, q[i]);
        wg_tensor_upload(&t, host);
        free(host);
    } else if (f != NULL) {
        wg_tensor_upload(&t, f);
    }
    return t;
}

static inline wg_tensor tl_nhwc(wg_backend *b, wg_dtype dt, int64_t n, int64_t h, int64_t w, int64_t c, int exp,
                                const int64_t *q, const float *f)
{
    const int64_t shape[4] = {n, h, w, c};
    return tl_tensor(b, dt, WG_LAYOUT_NHWC, 4, shape, exp, q, f);
}

static inline wg_tensor tl_vec(wg_backend *b, wg_dtype dt, int64_t n, int exp, const int64_t *q, const float *f)
{
    const int64_t shape[1] = {n};
    return tl_tensor(b, dt, WG_LAYOUT_PLAIN, 1, shape, exp, q, f);
}

/* The elements of a float32 tensor (caller frees). */
static inline float *tl_get_f32(const wg_tensor *t)
{
    float *f = malloc(wg_tensor_nbytes(t) + 1);
    wg_tensor_download(t, f);
    return f;
}

/* A float uniform in [-scale, scale] on the grid scale * 2^-12 (sums and FD steps of
 * such values stay exact in double). */
static inline float tl_rand_f(tr_rng *r, double scale)
{
    return (float)(scale * (double)tr_range(r, -4096, 4096) / 4096.0);
}

/* Same integers and exponent as recorded: the input of a layer must come back intact. */
static inline void tl_expect_unchanged(const wg_tensor *t, const int64_t *q, int exp, const char *what)
{
    int64_t *now = tr_tensor_get(t), n = wg_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) TR_EXPECT_I64(q[i], now[i], "%s modified its input at %" PRId64, what, i);
    TR_EXPECT_I64(exp, t->exp, "%s changed the input's exponent%s", what, "");
    free(now);
}

/* ---- softmax references ---- */

#define TL_EXP2_FRAC_BOUND 6e-9L /* wg_softmax_elem.h: |error| < 5.2e-9 relative to 2^f; checked with margin */

/* |log2(e) - RNE(log2(e) 2^30) / 2^30| in units of 2^-30 (0.32; test_layers.c checks that
 * WG_LOG2E_Q30 is that constant). */
static inline long double tl_log2e_err_units(void)
{
    long double v = ldexpl(1.0L / logl(2.0L), 30);
    return fabsl(rintl(v) - v);
}

/* Relative error bound of wg_exp_q30 at x <= 0 nats, besides the half unit of its final
 * rounding: the 2^f polynomial, plus ln 2 times the error of t = x log2(e) in Q30 (half a
 * unit of its rounding and |x| times the error of the Q30 constant). */
static inline long double tl_exp_rel_bound(long double x)
{
    return TL_EXP2_FRAC_BOUND + logl(2.0L) * (0.5L + fabsl(x) * tl_log2e_err_units()) / ldexpl(1, 30) * 1.001L;
}

/* The softmax of one row of integer logits z_j 2^e_z, in long double: p[j], the exact
 * probability in Q15 units, and eta[j], how far the implementation's unrounded
 * e_j 2^15 / sum e can be from it. With E_j = e^(x_j - max) 2^30 and e_j within
 * a E_j + b (a = tl_exp_rel_bound over the row's x >= -64, b = 1/2; below e^-64 the exp is
 * 0, within b), |e_j / S - E_j / sum E| <= (2 a E_j + b (1 + K p_j)) / S with S >= sum E (1 - a) - K b.
 * Returns -log softmax(label) in nats. */
static inline long double tl_softmax_row_ref(const int64_t *row, int64_t k, int e_z, int32_t label, long double *p,
                                             long double *eta)
{
    int64_t m = row[0];
    for (int64_t j = 1; j < k; j++) m = row[j] > m ? row[j] : m;
    long double se = 0, a = 0;
    for (int64_t j = 0; j < k; j++) {
        long double x = ldexpl(row[j] - m, e_z);
        p[j] = expl(x), se += p[j];
        if (x >= -64) a = fmaxl(a, tl_exp_rel_bound(x));
    }
    long double s30 = ldexpl(se, 30), s_lo = s30 * (1 - a) - 0.5L * k;
    for (int64_t j = 0; j < k; j++) {
        long double pe = p[j] / se;
        p[j] = ldexpl(pe, 15);
        eta[j] = ldexpl(2 * a * pe * s30 + 0.5L * (1 + k * pe), 15) / s_lo * 1.01L; /* 1%: second-order terms */
    }
    return logl(se) - ldexpl(row[label] - m, e_z);
}

/* Mean cross-entropy of float logits, in long double. */
static inline long double tl_ce_mean(const long double *z, const int32_t *lab, int64_t n, int64_t k)
{
    long double l = 0;
    for (int64_t bi = 0; bi < n; bi++) {
        long double m = z[bi * k], s = 0;
        for (int64_t j = 1; j < k; j++) m = fmaxl(m, z[bi * k + j]);
        for (int64_t j = 0; j < k; j++) s += expl(z[bi * k + j] - m);
        l += logl(s) - (z[bi * k + lab[bi]] - m);
    }
    return l / n;
}

#endif
