/* test_philox.c: Philox4x32-10 (wg_philox.h) and the stochastic rounding built on it
 * (wg_rshift_sr, wg_quant_grad). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "quant.h"
#include "tensor.h"
#include "wg_intmath.h"
#include "wg_philox.h"

#include "test_ref.h"

/* Published Random123 known-answer vectors (kat_vectors, philox4x32 10):
 * counter[4] key[2] -> out[4]. */
static void test_known_answers(void **state)
{
    (void)state;
    static const uint32_t kat[3][10] = {
        {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c,
         0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        wg_u32x4 c = {{kat[v][0], kat[v][1], kat[v][2], kat[v][3]}};
        wg_philox_key k = {{kat[v][4], kat[v][5]}};
        wg_u32x4 out = wg_philox4x32_10(c, k);
        for (int j = 0; j < 4; j++)
            TR_FAIL_IF(out.v[j] != kat[v][6 + j],
                       "KAT vector %d word %d: expected %08x, got %08x (out %08x %08x %08x %08x)", v, j, kat[v][6 + j],
                       out.v[j], out.v[0], out.v[1], out.v[2], out.v[3]);
    }
}

/* The documented layout: key = (seed low, seed high); counter = (i>>2 low, i>>2 high,
 * tensor id, step); element i takes word i & 3 of its block. */
static void test_element_bits_layout(void **state)
{
    (void)state;
    wg_philox_key k = wg_philox_key_from_seed(UINT64_C(0x0123456789abcdef));
    TR_FAIL_IF(k.k[0] != 0x89abcdefu || k.k[1] != 0x01234567u, "key_from_seed: (%08x, %08x)", k.k[0], k.k[1]);
    tr_rng r = {21};
    for (int i = 0; i < 20000; i++) {
        uint64_t seed = tr_next(&r), index = tr_next(&r) >> (tr_next(&r) % 64);
        uint32_t step = (uint32_t)tr_next(&r), tid = (uint32_t)tr_next(&r);
        if (i % 4 == 0) index = (uint64_t)i; /* small indices, every lane */
        uint64_t block = index / 4;
        wg_u32x4 c = {{(uint32_t)(block & 0xffffffffu), (uint32_t)(block >> 32), tid, step}};
        wg_philox_key key = {{(uint32_t)(seed & 0xffffffffu), (uint32_t)(seed >> 32)}};
        uint32_t want = wg_philox4x32_10(c, key).v[index % 4];
        uint32_t got = wg_philox_element_bits(wg_philox_key_from_seed(seed), step, tid, index);
        TR_FAIL_IF(got != want,
                   "element_bits(seed %016" PRIx64 ", step %u, tid %u, index %" PRIu64 "): expected %08x, got %08x",
                   seed, step, tid, index, want, got);
        TR_FAIL_IF(got != wg_philox_element_bits(wg_philox_key_from_seed(seed), step, tid, index),
                   "element_bits not reproducible at index %" PRIu64, index);
    }
}

/* How many of n words of two streams coincide (expected n / 2^32, i.e. 0). */
static int coincidences(uint64_t s1, uint32_t st1, uint32_t t1, uint64_t i1, uint64_t s2, uint32_t st2, uint32_t t2,
                        uint64_t i2, int n)
{
    int same = 0;
    for (int j = 0; j < n; j++)
        same += wg_philox_element_bits(wg_philox_key_from_seed(s1), st1, t1, i1 + (uint64_t)j) ==
                wg_philox_element_bits(wg_philox_key_from_seed(s2), st2, t2, i2 + (uint64_t)j);
    return same;
}

static void test_streams_differ(void **state)
{
    (void)state;
    const int n = 512;
    const uint64_t seed = UINT64_C(0x5eed5eed12345678);
    /* The same stream must coincide with itself (guards the counter below). */
    TR_EXPECT_I64(n, coincidences(seed, 7, 3, 0, seed, 7, 3, 0, n), "same stream%s", "");
    static const struct { const char *what; uint64_t s; uint32_t st, t; uint64_t i; } other[] = {
        {"step + 1", UINT64_C(0x5eed5eed12345678), 8, 3, 0},
        {"tensor id + 1", UINT64_C(0x5eed5eed12345678), 7, 4, 0},
        {"seed + 1 (low word)", UINT64_C(0x5eed5eed12345679), 7, 3, 0},
        {"seed high word", UINT64_C(0x5eed5eee12345678), 7, 3, 0},
        {"index + 1", UINT64_C(0x5eed5eed12345678), 7, 3, 1},
        {"index + 4", UINT64_C(0x5eed5eed12345678), 7, 3, 4},
        {"index + 2^34 (counter high word)", UINT64_C(0x5eed5eed12345678), 7, 3, UINT64_C(1) << 34},
        {"step and tensor id swapped", UINT64_C(0x5eed5eed12345678), 3, 7, 0},
    };
    for (size_t v = 0; v < sizeof other / sizeof other[0]; v++) {
        int same = coincidences(seed, 7, 3, 0, other[v].s, other[v].st, other[v].t, other[v].i, n);
        TR_FAIL_IF(same > 2, "%s: %d of %d words coincide with the original stream", other[v].what, same, n);
    }
    /* Within one stream, words of neighbouring elements differ too. */
    TR_FAIL_IF(coincidences(seed, 7, 3, 0, seed, 7, 3, 1, n) > 2, "element i and i+1 draw the same word%s", "");
}

/* 1e5 words: mean / 2^32 within 0.5 +- 0.005 (sd of the mean 0.0009); each bit set
 * with frequency 0.5 +- 0.008 (5 standard errors, 0.5 / sqrt(1e5) = 0.0016); the same
 * for the words of each lane. */
static void test_uniformity(void **state)
{
    (void)state;
    enum { N = 100000 };
    const wg_philox_key key = wg_philox_key_from_seed(42);
    long double sum = 0, lane_sum[4] = {0, 0, 0, 0};
    int bit_count[32] = {0};
    for (uint64_t i = 0; i < N; i++) {
        uint32_t u = wg_philox_element_bits(key, 1, 2, i);
        sum += u;
        lane_sum[i & 3] += u;
        for (int b = 0; b < 32; b++) bit_count[b] += (u >> b) & 1;
    }
    long double mean = sum / N / 4294967296.0L;
    TR_FAIL_IF(fabsl(mean - 0.5L) > 0.005L, "mean of %d words / 2^32 = %.6Lf", N, mean);
    for (int l = 0; l < 4; l++) {
        long double lm = lane_sum[l] / (N / 4) / 4294967296.0L; /* sd 0.0018: bound 5 sd */
        TR_FAIL_IF(fabsl(lm - 0.5L) > 0.0092L, "lane %d: mean / 2^32 = %.6Lf", l, lm);
    }
    for (int b = 0; b < 32; b++) {
        double f = (double)bit_count[b] / N;
        TR_FAIL_IF(fabs(f - 0.5) > 0.008, "bit %d set in %.5f of the words", b, f);
    }
}

/* wg_rshift_sr with element i's Philox word is unbiased: over N draws the mean of
 * floor((x + r) / 2^s) is x / 2^s within 5 standard errors (5 * 0.5 / sqrt(N)). */
static void test_sr_unbiased(void **state)
{
    (void)state;
    enum { N = 200000 };
    static const struct { int64_t x; int s; } cases[] = {
        {5, 3}, {-77, 4}, {1, 1}, {-1, 5}, {12345, 10}, {3, 2}, {-1000001, 17}, {(INT64_C(1) << 40) + 12345, 36},
        {-(INT64_C(1) << 50) - 999999, 45}, {INT64_MAX, 62}, {INT64_MIN + 1, 61}, {2147483647, 31}, {7, 32}, {-3, 33},
    };
    const long double bound = 5.0L * 0.5L / sqrtl((long double)N);
    const wg_philox_key key = wg_philox_key_from_seed(UINT64_C(0xfeedface));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t x = cases[c].x;
        int s = cases[c].s;
        long double exact = ldexpl((long double)x, -s), fl = floorl(exact), sum = 0;
        for (uint64_t i = 0; i < N; i++) {
            int64_t v = wg_rshift_sr(x, s, wg_philox_element_bits(key, 9, (uint32_t)c, i));
            TR_FAIL_IF(v != fl && v != fl + 1, "x %" PRId64 " s %d: draw %" PRId64 " is no neighbour of %.6Lf", x, s, v,
                       exact);
            sum += (long double)v - fl;
        }
        long double mean = fl + sum / N;
        TR_FAIL_IF(fabsl(mean - exact) > bound, "x %" PRId64 " s %d: mean %.8Lf, exact %.8Lf (bound %.5Lf)", x, s, mean,
                   exact, bound);
    }
}

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

/* A gradient tensor: element 0 is the max-abs m0, the others cycle through vals. */
static wg_tensor grad_src(wg_backend *b, wg_dtype dt, int64_t n, int64_t m0, const int64_t *vals, int nv, int exp)
{
    int64_t *q = malloc((size_t)n * sizeof *q);
    q[0] = m0;
    for (int64_t i = 1; i < n; i++) q[i] = vals[(i - 1) % nv];
    wg_tensor t = tr_tensor_from(b, NULL, dt, q, n, exp);
    free(q);
    return t;
}

/* wg_quant_grad is unbiased: for each value q (N >= 100000 elements each), the mean
 * of the outputs is q * g_scale / Shift(max) within 5 standard errors. */
static void test_grad_unbiased(void **state)
{
    wg_backend *b = *state;
    enum { PER = 100000 };
    static const struct { wg_dtype dt; int64_t m0; int g; int exp; int64_t vals[4]; } cases[] = {
        {WG_I32, 1000, 7, -20, {13, -13, 3, -101}},                  /* Shift 2^10, shift 3 */
        {WG_I16, 3, 1, 0, {1, -1, 2, -2}},                           /* Shift 2^2, g_scale 2: shift 1 */
        {WG_I32, 2000000000, 5, -31, {123456789, -987654321, 1, -77777}}, /* Shift 2^31, shift 26 */
        {WG_I64, (INT64_C(1) << 45) + 5, 7, -50, {(INT64_C(3) << 36) + 12345, -(INT64_C(5) << 35) - 7, 1 << 30, -99}},
    };
    const long double bound = 5.0L * 0.5L / sqrtl((long double)PER);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t n = 1 + 4 * (int64_t)PER;
        wg_tensor src = grad_src(b, cases[c].dt, n, cases[c].m0, cases[c].vals, 4, cases[c].exp);
        wg_tensor dst = tr_tensor_out(b, WG_I16, n);
        wg_grad_quant_args a = {.g_scale_log2 = cases[c].g, .gc = 15, .seed = 99, .step = 5, .tensor_id = (uint32_t)c};
        wg_quant_grad(&dst, &src, &a);
        int64_t *out = tr_tensor_get(&dst);
        int ps = ref_npow2((uint64_t)cases[c].m0);
        for (int j = 0; j < 4; j++) {
            long double y = ldexpl((long double)cases[c].vals[j], cases[c].g - ps), sum = 0;
            for (int64_t i = 1 + j; i < n; i += 4) sum += (long double)out[i];
            long double mean = sum / PER;
            TR_FAIL_IF(fabsl(mean - y) > bound, "case %zu value %" PRId64 ": mean %.8Lf, exact %.8Lf (bound %.5Lf)", c,
                       cases[c].vals[j], mean, y, bound);
        }
        free(out);
        wg_tensor_free(&src);
        wg_tensor_free(&dst);
    }
}

/* Same seed, step and tensor id: the same bits; another step, tensor id or seed: a
 * different draw for many elements (y = 1.625 differs with probability 2 * 0.625 * 0.375). */
static void test_grad_reproducible(void **state)
{
    wg_backend *b = *state;
    const int64_t n = 4001, vals[1] = {13};
    wg_tensor src = grad_src(b, WG_I32, n, 1000, vals, 1, -12);
    wg_grad_quant_args base = {.g_scale_log2 = 7, .gc = 15, .seed = 1234, .step = 10, .tensor_id = 2};
    wg_grad_quant_args vary[4] = {base, base, base, base};
    vary[1].step = 11;
    vary[2].tensor_id = 3;
    vary[3].seed = 1235;
    int64_t *out[4];
    for (int v = 0; v < 4; v++) {
        wg_tensor dst = tr_tensor_out(b, WG_I16, n);
        wg_quant_grad(&dst, &src, &vary[v]);
        out[v] = tr_tensor_get(&dst);
        wg_tensor_free(&dst);
    }
    wg_tensor dst = tr_tensor_out(b, WG_I16, n);
    wg_quant_grad(&dst, &src, &base);
    int64_t *again = tr_tensor_get(&dst);
    wg_tensor_free(&dst);
    for (int64_t i = 0; i < n; i++)
        TR_EXPECT_I64(out[0][i], again[i], "same arguments, element %" PRId64, i);
    static const char *const what[4] = {"", "step + 1", "tensor id + 1", "seed + 1"};
    for (int v = 1; v < 4; v++) {
        int64_t diff = 0;
        for (int64_t i = 1; i < n; i++) diff += out[v][i] != out[0][i];
        TR_FAIL_IF(diff < (n - 1) / 4, "%s changed only %" PRId64 " of %" PRId64 " draws (expect ~47%%)", what[v], diff,
                   n - 1);
    }
    for (int v = 0; v < 4; v++) free(out[v]);
    free(again);
    wg_tensor_free(&src);
}

/* The draw of element i uses exactly element i's Philox word at (seed, step, tensor
 * id), as quant.h and wg_rshift_sr document: the CPU and CUDA backends agree on it. */
static void test_grad_uses_element_stream(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {22};
    const wg_dtype ins[] = {WG_I8, WG_I16, WG_I32, WG_I64};
    for (int rep = 0; rep < 80; rep++) {
        tr_src c = tr_src_random(&r, ins, 4);
        int64_t n = c.n, *q = c.q;
        wg_tensor src = tr_src_tensor(b, &r, &c);
        wg_tensor dst = tr_tensor_out(b, WG_I16, n);
        wg_grad_quant_args a = {.g_scale_log2 = (int)tr_range(&r, 1, 7), .gc = 15, .seed = tr_next(&r),
                                .step = (uint32_t)tr_next(&r), .tensor_id = (uint32_t)tr_next(&r)};
        wg_quant_grad(&dst, &src, &a);
        int64_t *out = tr_tensor_get(&dst);
        uint64_t m = ref_max_abs(q, n);
        int sh = (m == 0 ? 0 : ref_npow2(m)) - a.g_scale_log2;
        int64_t gb = ref_bound_bits(a.g_scale_log2 + 1);
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = wg_philox_element_bits(wg_philox_key_from_seed(a.seed), a.step, a.tensor_id, (uint64_t)i);
            i128 want = sh <= 0 ? (i128)q[i] * ((i128)1 << -sh) : ref_sr_floor(q[i], sh, u);
            want = ref_clamp128(want, gb);
            TR_FAIL_IF(out[i] != (int64_t)want,
                       "G element %" PRId64 " (q %" PRId64 ", shift %d, u %08x): expected %" PRId64 ", got %" PRId64, i,
                       q[i], sh, u, (int64_t)want, out[i]);
        }
        free(out);
        tr_src_release(&src, &c, "grad");
        wg_tensor_free(&dst);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_element_bits_layout),
        cmocka_unit_test(test_streams_differ),
        cmocka_unit_test(test_uniformity),
        cmocka_unit_test(test_sr_unbiased),
        cmocka_unit_test(test_grad_unbiased),
        cmocka_unit_test(test_grad_reproducible),
        cmocka_unit_test(test_grad_uses_element_stream),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
