/* test_layers_ref.h: helpers of the layer and optimizer tests (test_layers.c,
 * test_optim.c), on top of test_ref.h.
 *
 * - tl_div_rne: the exact rational n / d rounded half to even, in 128-bit integers
 *   with '/' and '%' (never wg_rational.h, which is under test).
 * - tl_shift_exact: n * 2^-s rounded half to even for any sign of s, exact.
 * - tensor builders with an explicit layout and shape (integer and float32), and a
 *   float32 download.
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

#endif
