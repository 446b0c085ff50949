/* test_intmath.c: the integer primitives of wg_intmath.h and the per-element steps
 * of wg_quant_elem.h against the independent references of test_ref.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "wg_intmath.h"
#include "wg_quant_elem.h"

#include "test_ref.h"

#define N_RANDOM 50000

/* Shifts worth visiting: 0, 1, word boundaries and beyond. */
static const int k_shifts[] = {0,  1,  2,  3,  5,  7,  8,  15, 16, 23, 24, 30,
                               31, 32, 33, 40, 47, 48, 62, 63, 64, 65, 70, 100};
#define N_SHIFTS ((int)(sizeof k_shifts / sizeof k_shifts[0]))

static const int64_t k_edges[] = {0, 1, -1, 2, -2, 3, -3, INT32_MAX, INT32_MIN, (int64_t)INT32_MAX + 1,
                                  (int64_t)INT32_MIN - 1, INT64_MAX, INT64_MIN, -INT64_MAX, INT64_MAX - 1,
                                  INT64_C(1) << 62, -(INT64_C(1) << 62), (INT64_C(1) << 62) + 1};
#define N_EDGES ((int)(sizeof k_edges / sizeof k_edges[0]))

/* The two references (value space and exact integers) must agree with each other and
 * with hand-derived values before they are trusted. */
static void test_references_selfcheck(void **state)
{
    (void)state;
    /* round-half-even of x / 2^s by hand: 3/2 = 1.5 -> 2, 5/2 = 2.5 -> 2, -3/2 -> -2,
     * -5/2 -> -2, 1/2 -> 0, 7/4 = 1.75 -> 2, 10/4 = 2.5 -> 2, 6/4 = 1.5 -> 2. */
    static const struct { int64_t x; int s; int64_t want; } hand[] = {
        {3, 1, 2}, {5, 1, 2}, {-3, 1, -2}, {-5, 1, -2}, {1, 1, 0},
        {-1, 1, 0}, {7, 2, 2}, {10, 2, 2}, {6, 2, 2}, {-6, 2, -2}};
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++) {
        TR_EXPECT_I64(hand[i].want, (int64_t)ref_rne_div_pow2(hand[i].x, hand[i].s),
                      "ref_rne_div_pow2(%" PRId64 ", %d)", hand[i].x, hand[i].s);
        TR_EXPECT_LD((long double)hand[i].want, ref_rne_scale(hand[i].x, -hand[i].s), "ref_rne_scale(%" PRId64 ", %d)",
                     hand[i].x, -hand[i].s);
    }
    /* floor(-7/2) = -4; Shift exponents by hand: 3^2 = 9 >= 8 -> 2, 5^2 = 25 < 32 -> 2, 6^2 = 36 >= 32 -> 3. */
    TR_EXPECT_I64(-4, (int64_t)ref_floor_div(-7, 2), "ref_floor_div(-7, 2)%s", "");
    TR_EXPECT_I64(2, ref_npow2(3), "ref_npow2(3)%s", "");
    TR_EXPECT_I64(2, ref_npow2(5), "ref_npow2(5)%s", "");
    TR_EXPECT_I64(3, ref_npow2(6), "ref_npow2(6)%s", "");
    TR_EXPECT_I64(1, (int64_t)ref_isqrt(3), "ref_isqrt(3)%s", "");
    TR_EXPECT_I64(4, (int64_t)ref_isqrt(16), "ref_isqrt(16)%s", "");
    TR_EXPECT_I64(127, ref_bound_bits(8), "ref_bound_bits(8)%s", "");
    tr_rng r = {1};
    for (int i = 0; i < N_RANDOM; i++) {
        int64_t x = tr_i64_any(&r);
        int s = (int)tr_range(&r, 0, 100);
        TR_EXPECT_LD((long double)ref_rne_div_pow2(x, s), ref_rne_scale(x, -s),
                     "references disagree: x %" PRId64 " s %d", x, s);
    }
}

static void test_rshift_rne_random(void **state)
{
    (void)state;
    tr_rng r = {2};
    for (int i = 0; i < N_RANDOM * 4; i++) {
        int64_t x = tr_i64_any(&r);
        int s = (i & 1) ? k_shifts[i / 2 % N_SHIFTS] : (int)tr_range(&r, 0, 66);
        TR_EXPECT_LD(ref_rne_scale(x, -s), (long double)wg_rshift_rne(x, s), "wg_rshift_rne(x %" PRId64 ", s %d)", x,
                     s);
    }
    for (int i = 0; i < N_EDGES; i++)
        for (int j = 0; j < N_SHIFTS; j++)
            TR_EXPECT_LD(ref_rne_scale(k_edges[i], -k_shifts[j]), (long double)wg_rshift_rne(k_edges[i], k_shifts[j]),
                         "wg_rshift_rne(x %" PRId64 ", s %d)", k_edges[i], k_shifts[j]);
}

/* Exact ties (2k+1) * 2^(s-1) / 2^s = k + 1/2 round to whichever of k, k+1 is even
 * (k = floor): 1.5 -> 2, 2.5 -> 2, -1.5 -> -2, -2.5 -> -2, 0.5 -> 0, -0.5 -> 0. */
static void test_rshift_rne_ties(void **state)
{
    (void)state;
    static const int64_t ks[] = {1, 2, -2, -3, 0, -1, 5, 6, -7, -8, 1000, 1001, -1000, -1001};
    for (int s = 1; s <= 63; s++) {
        for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++) {
            int64_t k = ks[j];
            i128 x128 = (i128)(2 * k + 1) * ((i128)1 << (s - 1));
            if (x128 > INT64_MAX || x128 < INT64_MIN) continue;
            int64_t x = (int64_t)x128, want = k % 2 == 0 ? k : k + 1;
            TR_EXPECT_I64(want, wg_rshift_rne(x, s), "tie: wg_rshift_rne(x %" PRId64 " = (2*%" PRId64 "+1)*2^%d, s %d)",
                          x, k, s - 1, s);
            TR_EXPECT_I64(want, wg_shift_rne(x, s), "tie: wg_shift_rne(x %" PRId64 ", s %d)", x, s);
        }
    }
    tr_rng r = {3};
    for (int i = 0; i < N_RANDOM; i++) { /* random ties */
        int s = (int)tr_range(&r, 1, 62);
        int64_t k = tr_i64_mag(&r, 62 - s);
        int64_t x = (int64_t)((2 * (i128)k + 1) * ((i128)1 << (s - 1)));
        TR_EXPECT_I64(k % 2 == 0 ? k : k + 1, wg_rshift_rne(x, s), "tie: wg_rshift_rne(x %" PRId64 ", s %d)", x, s);
    }
    /* Extremes by hand: INT64_MIN / 2^63 = -1 exactly; INT64_MAX / 2^63 = 1 - 2^-63 -> 1;
     * 2^62 / 2^63 = 0.5 -> 0; 3*2^61 / 2^63 = 0.75 -> 1; INT64_MIN / 2^64 = -0.5 -> 0. */
    TR_EXPECT_I64(-1, wg_rshift_rne(INT64_MIN, 63), "wg_rshift_rne(INT64_MIN, 63)%s", "");
    TR_EXPECT_I64(1, wg_rshift_rne(INT64_MAX, 63), "wg_rshift_rne(INT64_MAX, 63)%s", "");
    TR_EXPECT_I64(0, wg_rshift_rne(INT64_C(1) << 62, 63), "wg_rshift_rne(2^62, 63)%s", "");
    TR_EXPECT_I64(1, wg_rshift_rne(INT64_C(3) << 61, 63), "wg_rshift_rne(3*2^61, 63)%s", "");
    TR_EXPECT_I64(0, wg_rshift_rne(INT64_MIN, 64), "wg_rshift_rne(INT64_MIN, 64)%s", "");
    TR_EXPECT_I64(INT64_MIN, wg_rshift_rne(INT64_MIN, 0), "wg_rshift_rne(INT64_MIN, 0)%s", "");
}

/* The unsigned variant for max-abs values up to 2^64 - 1. */
static void test_rshift_rne_u64(void **state)
{
    (void)state;
    tr_rng r = {15};
    for (int i = 0; i < N_RANDOM * 2; i++) {
        uint64_t m = tr_next(&r) >> (tr_next(&r) % 64);
        if (i % 16 == 0) m = UINT64_C(1) << 63;
        if (i % 16 == 1) m = UINT64_MAX;
        int s = (i & 1) ? k_shifts[i / 2 % N_SHIFTS] : (int)tr_range(&r, 0, 66);
        TR_EXPECT_LD(rintl(ldexpl((long double)m, -s)), (long double)wg_rshift_rne_u64(m, s),
                     "wg_rshift_rne_u64(m %" PRIu64 ", s %d)", m, s);
    }
    /* By hand: 3 / 2 -> 2, 5 / 2 -> 2, 2^63 / 2^64 = 0.5 -> 0, (2^64 - 1) / 2^64 -> 1, 2^63 / 2^63 = 1. */
    TR_EXPECT_I64(2, wg_rshift_rne_u64(3, 1), "wg_rshift_rne_u64(3, 1)%s", "");
    TR_EXPECT_I64(2, wg_rshift_rne_u64(5, 1), "wg_rshift_rne_u64(5, 1)%s", "");
    TR_EXPECT_I64(0, wg_rshift_rne_u64(UINT64_C(1) << 63, 64), "wg_rshift_rne_u64(2^63, 64)%s", "");
    TR_EXPECT_I64(1, wg_rshift_rne_u64(UINT64_MAX, 64), "wg_rshift_rne_u64(2^64-1, 64)%s", "");
    TR_EXPECT_I64(1, wg_rshift_rne_u64(UINT64_C(1) << 63, 63), "wg_rshift_rne_u64(2^63, 63)%s", "");
}

static void test_shift_rne_and_shl_sat(void **state)
{
    (void)state;
    const long double lmax = (long double)INT64_MAX; /* exact in the 64-bit significand */
    tr_rng r = {4};
    for (int i = 0; i < N_RANDOM * 2; i++) {
        int64_t x = tr_i64_any(&r);
        int n = (int)tr_range(&r, 0, 70);
        TR_EXPECT_LD(ref_clampl(ldexpl(x, n), lmax), (long double)wg_shl_sat(x, n), "wg_shl_sat(x %" PRId64 ", n %d)",
                     x, n);
        int s = (int)tr_range(&r, -70, 70);
        long double want = s >= 0 ? ref_rne_scale(x, -s) : ref_clampl(ldexpl(x, -s), lmax);
        TR_EXPECT_LD(want, (long double)wg_shift_rne(x, s), "wg_shift_rne(x %" PRId64 ", s %d)", x, s);
    }
    static const int neg[] = {-1, -2, -31, -32, -33, -62, -63, -64, -100};
    for (int i = 0; i < N_EDGES; i++)
        for (size_t j = 0; j < sizeof neg / sizeof neg[0]; j++)
            TR_EXPECT_LD(ref_clampl(ldexpl(k_edges[i], -neg[j]), lmax), (long double)wg_shift_rne(k_edges[i], neg[j]),
                         "wg_shift_rne(x %" PRId64 ", s %d)", k_edges[i], neg[j]);
    /* At the saturation bound and one beyond: (INT64_MAX >> n) << n fits, +1 saturates;
     * INT64_MIN saturates to -INT64_MAX even for n = 0 (the containers are symmetric). */
    for (int n = 0; n <= 62; n++) {
        int64_t fit = INT64_MAX >> n;
        TR_EXPECT_I64(fit * (INT64_C(1) << n), wg_shl_sat(fit, n), "wg_shl_sat(%" PRId64 ", %d) at the bound", fit, n);
        TR_EXPECT_I64(-fit * (INT64_C(1) << n), wg_shl_sat(-fit, n), "wg_shl_sat(%" PRId64 ", %d) at the bound", -fit,
                      n);
        if (n == 0) continue; /* beyond INT64_MAX at n = 0 is INT64_MIN, below */
        TR_EXPECT_I64(INT64_MAX, wg_shl_sat(fit + 1, n), "wg_shl_sat(%" PRId64 ", %d) beyond", fit + 1, n);
        TR_EXPECT_I64(-INT64_MAX, wg_shl_sat(-fit - 1, n), "wg_shl_sat(%" PRId64 ", %d) beyond", -fit - 1, n);
    }
    TR_EXPECT_I64(-INT64_MAX, wg_shl_sat(INT64_MIN, 0), "wg_shl_sat(INT64_MIN, 0)%s", "");
    TR_EXPECT_I64(0, wg_shl_sat(0, 64), "wg_shl_sat(0, 64)%s", "");
    TR_EXPECT_I64(INT64_MAX, wg_shl_sat(1, 63), "wg_shl_sat(1, 63)%s", "");
}

static void test_clamp_and_bound(void **state)
{
    (void)state;
    for (int k = 2; k <= 64; k++) TR_EXPECT_I64(ref_bound_bits(k), wg_bound_bits(k), "wg_bound_bits(%d)", k);
    for (int i = 0; i < N_EDGES; i++) {
        int64_t x = k_edges[i];
        TR_FAIL_IF((u128)wg_abs_u64(x) != (u128)((i128)x < 0 ? -(i128)x : (i128)x), "wg_abs_u64(%" PRId64 ")", x);
    }
    static const int64_t bounds[] = {0, 1, 127, 32767, INT32_MAX, INT64_MAX};
    tr_rng r = {5};
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        int64_t B = bounds[b];
        int64_t probes[] = {B,         -B,       B == INT64_MAX ? B : B + 1, B == INT64_MAX ? INT64_MIN : -B - 1, 0,
                            INT64_MIN, INT64_MAX};
        for (size_t j = 0; j < sizeof probes / sizeof probes[0]; j++) {
            int64_t x = probes[j];
            TR_EXPECT_I64((int64_t)ref_clamp128(x, B), wg_clamp_sym(x, B), "wg_clamp_sym(%" PRId64 ", %" PRId64 ")", x,
                          B);
        }
        for (int i = 0; i < 2000; i++) {
            int64_t x = tr_i64_any(&r);
            TR_EXPECT_I64((int64_t)ref_clamp128(x, B), wg_clamp_sym(x, B), "wg_clamp_sym(%" PRId64 ", %" PRId64 ")", x,
                          B);
        }
    }
}

static void test_round_shift_clamp(void **state)
{
    (void)state;
    tr_rng r = {6};
    const int64_t bounds[] = {127, 32767, INT32_MAX, INT64_MAX, 1, 4095};
    for (int i = 0; i < N_RANDOM * 2; i++) {
        int64_t x = tr_i64_any(&r), B = bounds[i % 6];
        int s = (int)tr_range(&r, -66, 66);
        long double v = s >= 0 ? ref_rne_scale(x, -s) : ldexpl(x, -s);
        TR_EXPECT_LD(ref_clampl(v, (long double)B), (long double)wg_round_shift_clamp(x, s, B),
                     "wg_round_shift_clamp(x %" PRId64 ", s %d, bound %" PRId64 ")", x, s, B);
    }
    /* The bound and one beyond after rounding: 127.5 -> 128 (tie, even) -> 127; 126.5 -> 126. */
    TR_EXPECT_I64(127, wg_round_shift_clamp(255, 1, 127), "wg_round_shift_clamp(255, 1, 127)%s", "");
    TR_EXPECT_I64(126, wg_round_shift_clamp(253, 1, 127), "wg_round_shift_clamp(253, 1, 127)%s", "");
    TR_EXPECT_I64(-127, wg_round_shift_clamp(-255, 1, 127), "wg_round_shift_clamp(-255, 1, 127)%s", "");
}

static void test_rshift_sr(void **state)
{
    (void)state;
    tr_rng r = {7};
    const long double lmax = (long double)INT64_MAX;
    for (int i = 0; i < N_RANDOM * 4; i++) {
        int64_t x = tr_i64_any(&r);
        int s = (int)tr_range(&r, -8, 63);
        uint32_t u = (uint32_t)tr_next(&r);
        if (i % 8 == 0) u = 0;
        if (i % 8 == 1) u = UINT32_MAX;
        int64_t got = wg_rshift_sr(x, s, u);
        if (s <= 0) {
            TR_EXPECT_LD(ref_clampl(ldexpl(x, -s), lmax), (long double)got, "wg_rshift_sr(x %" PRId64 ", s %d, u %08x)",
                         x, s, u);
            continue;
        }
        TR_EXPECT_I64((int64_t)ref_sr_floor(x, s, u), got, "wg_rshift_sr(x %" PRId64 ", s %d, u %08x)", x, s, u);
        TR_EXPECT_I64((int64_t)ref_clamp128(ref_sr_floor(x, s, u), 127), wg_grad_elem(x, s, 127, u),
                      "wg_grad_elem(x %" PRId64 ", s %d, bound 127, u %08x)", x, s, u);
        i128 fl = ref_floor_div(x, (i128)1 << s);
        TR_FAIL_IF(got != fl && got != fl + 1, "wg_rshift_sr(x %" PRId64 ", s %d) = %" PRId64 " is no neighbour", x, s,
                   got);
    }
    for (int i = 0; i < N_EDGES; i++)
        for (int s = 1; s <= 63; s++) {
            int64_t x = k_edges[i];
            uint32_t us[] = {0, 1, 0x80000000u, UINT32_MAX};
            for (int j = 0; j < 4; j++)
                TR_EXPECT_I64((int64_t)ref_sr_floor(x, s, us[j]), wg_rshift_sr(x, s, us[j]),
                              "wg_rshift_sr(x %" PRId64 ", s %d, u %08x)", x, s, us[j]);
        }
    /* By hand: u = 0 is the floor, u = 2^32 - 1 with s <= 32 is the ceiling (r = 2^s - 1);
     * 5 / 2 -> 2 or 3; -5 / 2 -> -3 or -2; u = 2^31, s = 1: r = 1, (5 + 1) / 2 = 3. */
    TR_EXPECT_I64(2, wg_rshift_sr(5, 1, 0), "wg_rshift_sr(5, 1, 0)%s", "");
    TR_EXPECT_I64(3, wg_rshift_sr(5, 1, UINT32_MAX), "wg_rshift_sr(5, 1, max)%s", "");
    TR_EXPECT_I64(-3, wg_rshift_sr(-5, 1, 0), "wg_rshift_sr(-5, 1, 0)%s", "");
    TR_EXPECT_I64(-2, wg_rshift_sr(-5, 1, UINT32_MAX), "wg_rshift_sr(-5, 1, max)%s", "");
    TR_EXPECT_I64(3, wg_rshift_sr(5, 1, 0x80000000u), "wg_rshift_sr(5, 1, 2^31)%s", "");
    TR_EXPECT_I64(INT64_C(1) << 62, wg_rshift_sr(INT64_MAX, 1, UINT32_MAX), "wg_rshift_sr(INT64_MAX, 1, max)%s", "");
}

static void test_msb_and_mul_wide(void **state)
{
    (void)state;
    tr_rng r = {8};
    for (int p = 0; p <= 63; p++) {
        uint64_t lo = UINT64_C(1) << p, hi = lo | (lo - 1);
        TR_EXPECT_I64(p, wg_msb_u64(lo), "wg_msb_u64(2^%d)", p);
        TR_EXPECT_I64(p, wg_msb_u64(hi), "wg_msb_u64(2^%d|(2^%d-1))", p, p);
        uint64_t m = lo | (tr_next(&r) & (lo - 1));
        TR_EXPECT_I64(ref_floor_log2(m), wg_msb_u64(m), "wg_msb_u64(%" PRIu64 ")", m);
    }
    const uint64_t edge[] = {0, 1, 2, UINT32_MAX, UINT64_C(1) << 32, UINT64_MAX, UINT64_MAX - 1, UINT64_C(1) << 63};
    for (int i = 0; i < N_RANDOM + 64; i++) {
        uint64_t a = i < 64 ? edge[i % 8] : tr_next(&r) >> (tr_next(&r) % 64);
        uint64_t b = i < 64 ? edge[i / 8] : tr_next(&r) >> (tr_next(&r) % 64);
        uint64_t hi, lo;
        wg_mul_u64_wide(a, b, &hi, &lo);
        u128 want = (u128)a * b;
        TR_FAIL_IF(hi != (uint64_t)(want >> 64) || lo != (uint64_t)want,
                   "wg_mul_u64_wide(%" PRIu64 ", %" PRIu64 ") = (%" PRIu64 ", %" PRIu64 "), want (%" PRIu64 ", %" PRIu64
                   ")",
                   a, b, hi, lo, (uint64_t)(want >> 64), (uint64_t)want);
    }
}

static void test_npow2(void **state)
{
    (void)state;
    TR_EXPECT_I64(0, wg_npow2_exp(0), "wg_npow2_exp(0) (defined as 0)%s", "");
    /* By hand: 1 -> 0 (1 < 2); 2 -> 1 (4 < 8); 3 -> 2 (9 >= 8); 5 -> 2 (25 < 32); 6 -> 3
     * (36 >= 32); 11 -> 3 (121 < 128); 12 -> 4 (144 >= 128); 2^64-1 -> 64 (m^2 > 2^127). */
    static const struct {
        uint64_t m;
        int e;
    } hand[] = {{1, 0}, {2, 1}, {3, 2}, {5, 2}, {6, 3}, {11, 3}, {12, 4}, {UINT64_MAX, 64}};
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++)
        TR_EXPECT_I64(hand[i].e, wg_npow2_exp(hand[i].m), "wg_npow2_exp(%" PRIu64 ")", hand[i].m);
    for (int p = 0; p <= 63; p++) {
        uint64_t pw = UINT64_C(1) << p;
        TR_EXPECT_I64(p, wg_npow2_exp(pw), "wg_npow2_exp(2^%d)", p);
        /* t = floor(2^p * sqrt(2)) = isqrt(2^(2p+1)): t^2 < 2^(2p+1) <= (t+1)^2. */
        uint64_t t = ref_isqrt((u128)1 << (2 * p + 1));
        TR_FAIL_IF(
            !((u128)t * t < ((u128)1 << (2 * p + 1)) && ((u128)t + 1) * ((u128)t + 1) > ((u128)1 << (2 * p + 1))),
            "ref_isqrt broken at p %d", p);
        int pt = ref_floor_log2(t); /* p, except p = 0 where t = 1 */
        TR_EXPECT_I64(pt, wg_npow2_exp(t), "wg_npow2_exp(floor(2^%d*sqrt2) = %" PRIu64 ") (below the boundary)", p, t);
        TR_EXPECT_I64(p + 1, wg_npow2_exp(t + 1), "wg_npow2_exp(floor(2^%d*sqrt2)+1 = %" PRIu64 ") (above)", p, t + 1);
        if (p >= 1 && p < 63) /* msb p, (2^(p+1)-1)^2 >= 2^(2p+1) for p >= 1 */
            TR_EXPECT_I64(p + 1, wg_npow2_exp(2 * pw - 1), "wg_npow2_exp(2^%d - 1)", p + 1);
    }
    tr_rng r = {9};
    for (int i = 0; i < N_RANDOM * 2; i++) {
        uint64_t m = tr_next(&r) >> (tr_next(&r) % 64);
        TR_EXPECT_I64(ref_npow2(m), wg_npow2_exp(m), "wg_npow2_exp(%" PRIu64 ")", m);
    }
}

/* The smallest s >= s_min with round_half_even(m / 2^s) <= bound, in value space. */
static int ref_fit_shift(uint64_t m, int s_min, int64_t bound)
{
    int s = s_min;
    while (rintl(ldexpl((long double)m, -s)) > (long double)bound) s++;
    return s;
}

static void fit_shift_check(tr_rng *r, const int64_t *bounds, int nb, int iters)
{
    for (int i = 0; i < iters; i++) {
        uint64_t m = tr_next(r) >> tr_range(r, 1, 63); /* m <= INT64_MAX */
        if (i % 50 == 0) m = 0;
        if (i % 50 == 1) m = UINT64_C(1) << 63; /* |INT64_MIN| */
        int64_t B = bounds[i % nb];
        if (i % 50 == 2) m = (uint64_t)B;
        if (i % 50 == 3) m = (uint64_t)B + 1;
        int s_min = (int)tr_range(r, -40, 40);
        TR_EXPECT_I64(ref_fit_shift(m, s_min, B), wg_fit_shift(m, s_min, B),
                      "wg_fit_shift(m %" PRIu64 ", s_min %d, bound %" PRId64 ")", m, s_min, B);
    }
}

static void test_fit_shift(void **state)
{
    (void)state;
    const int64_t bounds[] = {127, 32767, INT32_MAX, 1, 4095, INT64_MAX / 2};
    tr_rng r = {10};
    fit_shift_check(&r, bounds, 6, N_RANDOM);
    /* By hand: m = 255, bound 127: 255 -> no, 127.5 -> 128 (even) -> no, 63.75 -> 64 -> s = 2. */
    TR_EXPECT_I64(2, wg_fit_shift(255, 0, 127), "wg_fit_shift(255, 0, 127)%s", "");
    TR_EXPECT_I64(1, wg_fit_shift(254, 0, 127), "wg_fit_shift(254, 0, 127)%s", "");
    TR_EXPECT_I64(-3, wg_fit_shift(0, -3, 127), "wg_fit_shift(0, -3, 127)%s", "");
    TR_EXPECT_I64(-1, wg_fit_shift(63, -1, 127), "wg_fit_shift(63, -1, 127)%s", ""); /* 126 fits */
    TR_EXPECT_I64(0, wg_fit_shift(64, -1, 127), "wg_fit_shift(64, -1, 127)%s", "");  /* 128 does not */
}

/* The int64 container's bound: s < 0 must still detect m * 2^-s > INT64_MAX. */
static void test_fit_shift_int64_bound(void **state)
{
    (void)state;
    const int64_t bounds[] = {INT64_MAX};
    tr_rng r = {11};
    /* By hand: 2^62 * 2 = 2^63 > INT64_MAX, so s_min = -1 does not fit: s = 0. */
    TR_EXPECT_I64(0, wg_fit_shift(UINT64_C(1) << 62, -1, INT64_MAX), "wg_fit_shift(2^62, -1, INT64_MAX)%s", "");
    fit_shift_check(&r, bounds, 1, 4000);
}

static void test_flag_split(void **state)
{
    (void)state;
    tr_rng r = {12};
    for (int i = 0; i < N_RANDOM * 2; i++) {
        int bits = (int)tr_range(&r, 2, 16);
        int sc = (int)tr_range(&r, -bits - 2, 66);
        int mag = (int)tr_range(&r, 0, 63);
        if (i % 2) mag = sc + bits - 1 + (int)tr_range(&r, -bits, 2); /* near the top: Shift(max) ~ 2^(sc+bits-1) */
        if (mag < 0) mag = 0;
        if (mag > 63) mag = 63;
        int64_t x = i % 97 == 0 ? INT64_MIN : tr_i64_mag(&r, mag);
        if (i % 13 == 0 && sc >= 1 && sc <= 62) x = ((INT64_C(1) << sc) - 1) * (i % 26 ? 1 : -1); /* |z| just below 1 */
        int64_t bound = ref_bound_bits(bits), want_c = 0, want_f = 0;
        long double z = ldexpl(x, -sc);
        if (fabsl(z) < 1) {
            long double f = rintl(ldexpl(z, bits - 1));
            if (fabsl(f) > (long double)bound) want_c = f > 0 ? 1 : -1; /* f = +-2^(bits-1): one coarse unit */
            else want_f = (int64_t)f;
        } else {
            want_c = (int64_t)ref_clampl(rintl(z), (long double)bound);
        }
        wg_flag_pair got = wg_flag_split(x, sc, bits);
        TR_FAIL_IF(got.coarse != want_c || got.fine != want_f,
                   "wg_flag_split(x %" PRId64 ", shift_coarse %d, bits %d) = (coarse %" PRId64 ", fine %" PRId64
                   "), want (%" PRId64 ", %" PRId64 ")",
                   x, sc, bits, got.coarse, got.fine, want_c, want_f);
    }
    /* By hand (bits 8, shift_coarse 20): x = 2^20 - 1 -> z = 1 - 2^-20, fine = round(128 - 2^-13)
     * = 128 = one coarse unit -> (1, 0); x = 2^20 -> (1, 0); x = 127.5 * 2^20 -> 128 -> clamp 127;
     * x = 3 * 2^12 -> z = 3 * 2^-8, fine = 1.5 -> 2; x = 5 * 2^12 -> fine 2.5 -> 2. */
    wg_flag_pair p = wg_flag_split((INT64_C(1) << 20) - 1, 20, 8);
    TR_FAIL_IF(p.coarse != 1 || p.fine != 0, "flag(2^20-1, 20, 8) = (%" PRId64 ", %" PRId64 ")", p.coarse, p.fine);
    p = wg_flag_split(-((INT64_C(1) << 20) - 1), 20, 8);
    TR_FAIL_IF(p.coarse != -1 || p.fine != 0, "flag(-(2^20-1), 20, 8) = (%" PRId64 ", %" PRId64 ")", p.coarse, p.fine);
    p = wg_flag_split(INT64_C(255) << 19, 20, 8);
    TR_FAIL_IF(p.coarse != 127 || p.fine != 0, "flag(127.5*2^20, 20, 8) = (%" PRId64 ", %" PRId64 ")", p.coarse,
               p.fine);
    p = wg_flag_split(INT64_C(3) << 12, 20, 8);
    TR_FAIL_IF(p.coarse != 0 || p.fine != 2, "flag(3*2^12, 20, 8) = (%" PRId64 ", %" PRId64 ")", p.coarse, p.fine);
    p = wg_flag_split(INT64_C(5) << 12, 20, 8);
    TR_FAIL_IF(p.coarse != 0 || p.fine != 2, "flag(5*2^12, 20, 8) = (%" PRId64 ", %" PRId64 ")", p.coarse, p.fine);
    p = wg_flag_split(0, 20, 8);
    TR_FAIL_IF(p.coarse != 0 || p.fine != 0, "flag(0) = (%" PRId64 ", %" PRId64 ")", p.coarse, p.fine);
}

/* An int64 with |x| * 2^up < 2^61 (so sums of two such terms cannot overflow). */
static int64_t small_for(tr_rng *r, int up) { return tr_i64_mag(r, (int)tr_range(r, 0, 61 - up)); }

static void test_momentum_elem(void **state)
{
    (void)state;
    tr_rng r = {13};
    const int64_t bounds[] = {32767, INT32_MAX, 4095, 127, INT64_MAX};
    for (int i = 0; i < N_RANDOM * 2; i++) {
        int m_up = (int)tr_range(&r, 0, 40), g_up = (int)tr_range(&r, 0, 40), down = (int)tr_range(&r, 0, 45);
        if (i % 3 == 0) m_up = 0;
        else if (i % 3 == 1) g_up = 0;
        int64_t m = small_for(&r, m_up), g = small_for(&r, g_up), B = bounds[i % 5];
        i128 t = (i128)m * ((i128)1 << m_up) + (i128)g * ((i128)1 << g_up);
        int64_t want = (int64_t)ref_clamp128(ref_rne_div_pow2(t, down), B);
        TR_EXPECT_I64(want, wg_momentum_elem(m, g, m_up, g_up, down, B),
                      "wg_momentum_elem(m %" PRId64 ", g %" PRId64 ", m_up %d, g_up %d, down %d, bound %" PRId64 ")", m,
                      g, m_up, g_up, down, B);
    }
    /* By hand: m = 6 (x 1/4 -> 1.5), g = 0: (6 + 0) / 4 = 1.5 -> 2; m = 10: 2.5 -> 2; m = -6: -2. */
    TR_EXPECT_I64(2, wg_momentum_elem(6, 0, 0, 0, 2, 4095), "wg_momentum_elem(6, 0, 0, 0, 2)%s", "");
    TR_EXPECT_I64(2, wg_momentum_elem(10, 0, 0, 0, 2, 4095), "wg_momentum_elem(10, 0, 0, 0, 2)%s", "");
    TR_EXPECT_I64(-2, wg_momentum_elem(-6, 0, 0, 0, 2, 4095), "wg_momentum_elem(-6, 0, 0, 0, 2)%s", "");
    TR_EXPECT_I64(4095, wg_momentum_elem(4095, 4095, 0, 0, 0, 4095), "saturation%s", "");
}

static void test_update_elem(void **state)
{
    (void)state;
    tr_rng r = {14};
    const int64_t bounds[] = {INT32_MAX, (INT64_C(1) << 23) - 1, INT64_MAX, 32767};
    for (int i = 0; i < N_RANDOM * 2; i++) {
        int w_up = (int)tr_range(&r, 0, 40), p_up = (int)tr_range(&r, 0, 40), down = (int)tr_range(&r, 0, 45);
        if (i % 2) w_up = 0;
        else p_up = 0;
        int64_t w = small_for(&r, w_up);
        int pbits = (int)tr_range(&r, 0, 61 - p_up); /* |lr_q * m| < 2^pbits */
        int lbits = (int)tr_range(&r, 0, pbits < 31 ? pbits : 31);
        int64_t lr_q = tr_i64_mag(&r, lbits), m = tr_i64_mag(&r, pbits - lbits), B = bounds[i % 4];
        i128 t = (i128)w * ((i128)1 << w_up) - (i128)lr_q * m * ((i128)1 << p_up);
        int64_t want = (int64_t)ref_clamp128(ref_rne_div_pow2(t, down), B);
        TR_EXPECT_I64(want, wg_update_elem(w, m, lr_q, w_up, p_up, down, B),
                      "wg_update_elem(w %" PRId64 ", m %" PRId64 ", lr_q %" PRId64
                      ", w_up %d, p_up %d, down %d, bound %" PRId64 ")",
                      w, m, lr_q, w_up, p_up, down, B);
    }
    /* By hand: w = 0, lr_q = 3, m = 1, down 1: -3/2 = -1.5 -> -2; lr_q = 5: -2.5 -> -2. */
    TR_EXPECT_I64(-2, wg_update_elem(0, 1, 3, 0, 0, 1, INT32_MAX), "wg_update_elem(0, 1, 3, .., 1)%s", "");
    TR_EXPECT_I64(-2, wg_update_elem(0, 1, 5, 0, 0, 1, INT32_MAX), "wg_update_elem(0, 1, 5, .., 1)%s", "");
    TR_EXPECT_I64(-INT32_MAX, wg_update_elem(-INT32_MAX, 1, 1, 0, 0, 0, INT32_MAX), "saturation%s", "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_references_selfcheck),
        cmocka_unit_test(test_rshift_rne_random),
        cmocka_unit_test(test_rshift_rne_ties),
        cmocka_unit_test(test_rshift_rne_u64),
        cmocka_unit_test(test_shift_rne_and_shl_sat),
        cmocka_unit_test(test_clamp_and_bound),
        cmocka_unit_test(test_round_shift_clamp),
        cmocka_unit_test(test_rshift_sr),
        cmocka_unit_test(test_msb_and_mul_wide),
        cmocka_unit_test(test_npow2),
        cmocka_unit_test(test_fit_shift),
        cmocka_unit_test(test_fit_shift_int64_bound),
        cmocka_unit_test(test_flag_split),
        cmocka_unit_test(test_momentum_elem),
        cmocka_unit_test(test_update_elem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
