/* test_ref.h: shared helpers of the unit tests.
 *
 * - tr_rng: splitmix64, a small deterministic generator for test data (deliberately
 *   not the project's Philox, which is under test).
 * - ref_*: independent reference implementations. They never call the code under
 *   test: they compute either in value space with long double (on x86-64 the x87
 *   format has a 64-bit significand, so every int64 and every int64 * 2^k is exact,
 *   ldexpl is exact and rintl rounds half to even in the default rounding mode) or
 *   with exact 128-bit integer arithmetic using '/' and '%' (not shifts).
 * - TR_FAIL_IF / TR_EXPECT_*: checks that print the inputs before failing.
 * - tensor helpers (only when tensor.h was included before this header).
 *
 * Include <cmocka.h> (with its prerequisites) before this header. */
#ifndef TEST_REF_H
#define TEST_REF_H

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(LDBL_MANT_DIG >= 64, "the value-space references need a long double with >= 64 significand bits");

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

/* ---- test data ------------------------------------------------------------ */

typedef struct tr_rng {
    uint64_t s;
} tr_rng;

static inline uint64_t tr_next(tr_rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform integer in [lo, hi] (hi - lo < 2^64; the modulo bias is irrelevant here). */
static inline int64_t tr_range(tr_rng *r, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;
    uint64_t v = span == 0 ? tr_next(r) : tr_next(r) % span;
    return (int64_t)((uint64_t)lo + v);
}

/* An integer with |x| < 2^mag_bits (mag_bits in 0..63, drawn at random when < 0),
 * either sign: spreads the magnitudes so that every shift sees interesting inputs. */
static inline int64_t tr_i64_mag(tr_rng *r, int mag_bits)
{
    if (mag_bits < 0) mag_bits = (int)tr_range(r, 0, 63);
    uint64_t m = mag_bits == 0 ? 0 : tr_next(r) >> (64 - mag_bits);
    return (tr_next(r) & 1) ? -(int64_t)m : (int64_t)m;
}

/* Any int64, with the extremes and small values over-represented. */
static inline int64_t tr_i64_any(tr_rng *r)
{
    switch (tr_next(r) % 16) {
    case 0: return INT64_MIN;
    case 1: return INT64_MAX;
    case 2: return -INT64_MAX;
    case 3: return tr_range(r, -4, 4);
    default: return tr_i64_mag(r, -1);
    }
}

/* ---- references ----------------------------------------------------------- */

static inline long double ref_pow2(int k) { return ldexpl(1.0L, k); }

/* round_half_even(x * 2^k), in value space. */
static inline long double ref_rne_scale(long double x, int k) { return rintl(ldexpl(x, k)); }

static inline long double ref_clampl(long double x, long double bound)
{
    return x > bound ? bound : (x < -bound ? -bound : x);
}

/* Q(x, k) = round_half_even(x * 2^(k-1)) / 2^(k-1), wageubn.md. */
static inline long double ref_Q(long double x, int k) { return ldexpl(rintl(ldexpl(x, k - 1)), -(k - 1)); }

/* 2^(k-1) - 1. */
static inline int64_t ref_bound_bits(int k)
{
    if (k >= 64) return INT64_MAX;
    int64_t b = 1;
    for (int i = 0; i < k - 1; i++) b *= 2;
    return b - 1;
}

/* floor(n / d) for d > 0 with C's truncating division corrected. */
static inline i128 ref_floor_div(i128 n, i128 d)
{
    i128 q = n / d;
    if (n % d != 0 && n < 0) q -= 1;
    return q;
}

/* round_half_even(n / 2^d), d in 0..125, exact: floor division, then compare twice
 * the remainder with the divisor. */
static inline i128 ref_rne_div_pow2(i128 n, int d)
{
    i128 den = (i128)1 << d;
    i128 q = ref_floor_div(n, den);
    i128 twice_rem = 2 * (n - q * den); /* in [0, 2 den) */
    if (twice_rem > den || (twice_rem == den && q % 2 != 0)) q += 1;
    return q;
}

/* floor((x + r) / 2^s), s in 1..63, in exact integers, with r uniform in [0, 2^s)
 * drawn from 32 random bits u as documented in wg_intmath.h (wg_rshift_sr):
 * r = u >> (32 - s) for s <= 32, r = u * 2^(s - 32) beyond. */
static inline i128 ref_sr_floor(int64_t x, int s, uint32_t u)
{
    u128 r = s <= 32 ? (u128)(u >> (32 - s)) : (u128)u << (s - 32);
    return ref_floor_div((i128)x + (i128)r, (i128)1 << s);
}

static inline i128 ref_clamp128(i128 x, i128 bound) { return x > bound ? bound : (x < -bound ? -bound : x); }

/* floor(log2 m), m > 0, by comparison with powers of two. */
static inline int ref_floor_log2(u128 m)
{
    int p = 0;
    while (p < 127 && ((u128)1 << (p + 1)) <= m) p++;
    return p;
}

/* Exponent of Shift(m) = 2^round(log2 m) (wageubn.md): p = floor(log2 m), p + 1 iff
 * m^2 >= 2^(2p+1). m = 0 is defined as exponent 0 (one unit of the input grid). */
static inline int ref_npow2(uint64_t m)
{
    if (m == 0) return 0;
    int p = ref_floor_log2(m);
    u128 sq = (u128)m * m;
    return sq >= ((u128)1 << (2 * p + 1)) ? p + 1 : p;
}

/* floor(sqrt(n)) for n < 2^128, by bisection on the answer (fits in 64 bits). */
static inline uint64_t ref_isqrt(u128 n)
{
    uint64_t lo = 0, hi = UINT64_MAX;
    while (lo < hi) { /* invariant: lo^2 <= n, answer in [lo, hi] */
        uint64_t mid = lo + (hi - lo) / 2 + 1;
        if ((u128)mid * mid <= n) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* The symmetric bound of an integer container (the contract: int8 holds [-127, 127]). */
static inline int64_t ref_container_bound(int bytes)
{
    return bytes == 1 ? 127 : bytes == 2 ? 32767 : bytes == 4 ? INT64_C(2147483647) : INT64_MAX;
}

/* a + b in long double, and whether that sum is exact (TwoSum error term is zero). */
static inline long double ref_add_exact(long double a, long double b, int *exact)
{
    volatile long double s = a + b;
    long double bb = s - a, err = (a - (s - bb)) + (b - bb);
    *exact = err == 0;
    return s;
}

/* max |q| of an int64 array, exact for INT64_MIN. */
static inline uint64_t ref_max_abs(const int64_t *q, int64_t n)
{
    uint64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t a = q[i] < 0 ? (uint64_t)(-(q[i] + 1)) + 1 : (uint64_t)q[i];
        if (a > m) m = a;
    }
    return m;
}

/* ---- checks that explain themselves ---------------------------------------- */

/* Fail with the printed context when cond holds. */
#define TR_FAIL_IF(cond, ...)                                                   \
    do {                                                                        \
        if (cond) {                                                             \
            print_error("%s:%d: check failed: ", __FILE__, __LINE__);          \
            print_error(__VA_ARGS__);                                           \
            print_error("\n");                                                  \
            fail();                                                             \
        }                                                                       \
    } while (0)

#define TR_EXPECT_I64(expected, actual, ctxfmt, ...)                                                      \
    do {                                                                                                  \
        int64_t tr_e_ = (int64_t)(expected), tr_a_ = (int64_t)(actual);                                   \
        TR_FAIL_IF(tr_e_ != tr_a_, ctxfmt ": expected %" PRId64 ", got %" PRId64, __VA_ARGS__, tr_e_, tr_a_); \
    } while (0)

#define TR_EXPECT_LD(expected, actual, ctxfmt, ...)                                             \
    do {                                                                                        \
        long double tr_e_ = (expected), tr_a_ = (actual);                                       \
        TR_FAIL_IF(tr_e_ != tr_a_, ctxfmt ": expected %.21Lg (%La), got %.21Lg (%La)", __VA_ARGS__, \
                   tr_e_, tr_e_, tr_a_, tr_a_);                                                 \
    } while (0)

/* ---- tensors (only for the tests that link the host code) ------------------ */
#ifdef WG_TENSOR_H

/* A tensor of a random shape (rank 1..4, plain or NHWC) with exactly n elements
 * when n > 0 (the shape is a factorisation of n); n <= 0 picks n too. */
static inline int64_t tr_random_shape(tr_rng *r, int64_t n, int *ndim, int64_t shape[WG_MAX_DIMS])
{
    if (n <= 0) {
        static const int64_t small[] = {1, 2, 3, 5, 7, 17, 64, 127, 255, 1000, 4099};
        n = small[tr_next(r) % (sizeof small / sizeof small[0])];
        if (tr_next(r) % 3 == 0) n = tr_range(r, 1, 3000);
    }
    *ndim = (int)tr_range(r, 1, WG_MAX_DIMS);
    int64_t rest = n;
    for (int d = 0; d < *ndim - 1; d++) { /* peel small divisors off */
        int64_t f = 1;
        for (int64_t c = tr_range(r, 1, 7); c >= 1; c--)
            if (rest % c == 0) { f = c; break; }
        shape[d] = f;
        rest /= f;
    }
    shape[*ndim - 1] = rest;
    for (int d = *ndim; d < WG_MAX_DIMS; d++) shape[d] = 1;
    return n;
}

/* Make a tensor on b holding q[0..n) (values already in dtype's range) with exponent
 * exp, of a random shape (rng != NULL) or a 1-D shape. Fails the test on error. */
static inline wg_tensor tr_tensor_from(wg_backend *b, tr_rng *rng, wg_dtype dt, const int64_t *q, int64_t n,
                                       int exp)
{
    wg_tensor t;
    int ndim = 1;
    int64_t shape[WG_MAX_DIMS] = {n, 1, 1, 1};
    if (rng) tr_random_shape(rng, n, &ndim, shape);
    bool ok = wg_tensor_init(&t, b, dt, WG_LAYOUT_PLAIN, ndim, shape, exp);
    TR_FAIL_IF(!ok, "wg_tensor_init(dtype %d, n %" PRId64 ") failed", (int)dt, n);
    void *host = malloc((size_t)n * wg_dtype_size(dt) + 1);
    for (int64_t i = 0; i < n; i++) wg_store_i64(host, dt, i, q[i]);
    wg_tensor_upload(&t, host);
    free(host);
    return t;
}

/* An uninitialised output tensor of n elements (1-D). */
static inline wg_tensor tr_tensor_out(wg_backend *b, wg_dtype dt, int64_t n)
{
    wg_tensor t;
    int64_t shape[1] = {n};
    bool ok = wg_tensor_init(&t, b, dt, WG_LAYOUT_PLAIN, 1, shape, 12345);
    TR_FAIL_IF(!ok, "wg_tensor_init(dtype %d, n %" PRId64 ") failed", (int)dt, n);
    return t;
}

/* The elements of t, widened to int64 (caller frees). */
static inline int64_t *tr_tensor_get(const wg_tensor *t)
{
    int64_t n = wg_tensor_numel(t);
    void *host = malloc(wg_tensor_nbytes(t) + 1);
    int64_t *q = malloc((size_t)n * sizeof *q + 1);
    wg_tensor_download(t, host);
    for (int64_t i = 0; i < n; i++) q[i] = wg_load_i64(host, t->dtype, i);
    free(host);
    return q;
}

static inline const char *tr_dt(wg_dtype t)
{
    static const char *const names[] = {"i8", "i16", "i32", "i64", "f32"};
    return (unsigned)t < 5 ? names[t] : "?";
}

/* Random values for an integer container: |q| < 2^mag (mag drawn per tensor), within
 * the symmetric bound. */
static inline void tr_fill(tr_rng *r, int64_t *q, int64_t n, wg_dtype dt, int mag)
{
    int64_t bound = ref_container_bound((int)wg_dtype_size(dt));
    for (int64_t i = 0; i < n; i++) {
        int64_t v = tr_i64_mag(r, mag);
        if (v > bound) v = bound;
        if (v < -bound) v = -bound;
        q[i] = v;
    }
}

/* ---- inputs of the quantizer tests: values, container, exponent ---- */

typedef struct tr_src {
    wg_dtype dt;
    int64_t n;
    int exp;
    int64_t *q;
} tr_src;

static inline int64_t tr_cbound(wg_dtype dt) { return ref_container_bound((int)wg_dtype_size(dt)); }
static inline int tr_cbits(wg_dtype dt) { return 8 * (int)wg_dtype_size(dt); }

/* A random input: container from dts, random size, exponent -30..5, one magnitude per
 * tensor (so max-abs takes every exponent), an all-zero tensor now and then, container
 * extremes (INT32_MIN included) sprinkled in. */
static inline tr_src tr_src_random(tr_rng *r, const wg_dtype *dts, int ndt)
{
    tr_src c;
    int ndim;
    int64_t shape[WG_MAX_DIMS];
    c.dt = dts[tr_next(r) % (uint64_t)ndt];
    c.n = tr_random_shape(r, 0, &ndim, shape);
    c.exp = (int)tr_range(r, -30, 5);
    c.q = malloc((size_t)c.n * sizeof *c.q);
    tr_fill(r, c.q, c.n, c.dt, tr_next(r) % 32 == 0 ? 0 : (int)tr_range(r, 1, tr_cbits(c.dt) - 1));
    if (tr_next(r) % 4 == 0) c.q[tr_range(r, 0, c.n - 1)] = (tr_next(r) & 1) ? tr_cbound(c.dt) : -tr_cbound(c.dt);
    if (c.dt == WG_I32 && tr_next(r) % 6 == 0) c.q[tr_range(r, 0, c.n - 1)] = INT32_MIN;
    return c;
}

static inline tr_src tr_src_hand(wg_dtype dt, const int64_t *q, int64_t n, int exp)
{
    tr_src c = {dt, n, exp, malloc((size_t)n * sizeof(int64_t))};
    memcpy(c.q, q, (size_t)n * sizeof(int64_t));
    return c;
}

/* The input tensor, of a random shape; a quantizer must leave it as it was. */
static inline wg_tensor tr_src_tensor(wg_backend *b, tr_rng *r, const tr_src *c)
{
    return tr_tensor_from(b, r, c->dt, c->q, c->n, c->exp);
}

static inline void tr_src_release(wg_tensor *src, tr_src *c, const char *what)
{
    int64_t *now = tr_tensor_get(src);
    for (int64_t i = 0; i < c->n; i++) TR_EXPECT_I64(c->q[i], now[i], "%s modified its input at %" PRId64, what, i);
    TR_EXPECT_I64(c->exp, src->exp, "%s changed the input's exponent%s", what, "");
    free(now);
    wg_tensor_free(src);
    free(c->q);
    c->q = NULL;
}

/* Outputs equal to hand-derived integers on a hand-derived exponent. */
static inline void tr_expect_q(const wg_tensor *t, const int64_t *want, int64_t n, int want_exp, const char *what)
{
    int64_t *out = tr_tensor_get(t);
    TR_EXPECT_I64(want_exp, t->exp, "%s: exponent%s", what, "");
    for (int64_t i = 0; i < n; i++) TR_EXPECT_I64(want[i], out[i], "%s: element %" PRId64, what, i);
    free(out);
}

#endif /* WG_TENSOR_H */

/* fork() for a death test. libgomp's thread pool does not survive fork(): a child
 * that enters a parallel region with the parent's thread count waits for threads
 * that do not exist, so the child runs single-threaded. */
#if defined(_POSIX_C_SOURCE) /* the death tests define it for fork() */
#include <omp.h>
#include <sys/types.h>
#include <unistd.h>
static inline pid_t tr_fork_death_test(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) omp_set_num_threads(1);
    return pid;
}
#endif

#endif
