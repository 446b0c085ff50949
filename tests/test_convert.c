/* test_convert.c: the fixed-point <-> float32 crossings of the reference preset
 * (host/convert.h), against hand-derived values and long double references
 * (test_ref.h): to float, one rounding of q * 2^exp; from float, the grid
 * 2^(E - 30) for the largest magnitude m 2^E (m in [0.5, 1)) and round half to even. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "backend.h"
#include "check.h"
#include "convert.h"
#include "tensor.h"
#include "test_ref.h"

static int setup(void **state)
{
    *state = wg_backend_cpu_init();
    return 0;
}

static int teardown(void **state)
{
    wg_backend_free(*state);
    return 0;
}

static wg_tensor f32_tensor(wg_backend *b, const float *v, int64_t n)
{
    wg_tensor t;
    TR_FAIL_IF(!wg_tensor_init(&t, b, WG_F32, WG_LAYOUT_PLAIN, 1, &n, 0), "f32 tensor of %lld", (long long)n);
    if (v != NULL) wg_tensor_upload(&t, v);
    return t;
}

/* Every integer container, random magnitudes and exponents: (float)(q 2^exp) once. */
static void test_to_f32(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {11};
    const wg_dtype types[] = {WG_I8, WG_I16, WG_I32, WG_I64};
    enum { N = 70001 }; /* above the threading threshold, odd */
    int64_t *q = malloc(N * sizeof *q);
    float *got = malloc(N * sizeof *got);
    for (size_t k = 0; k < 4; k++) {
        tr_fill(&r, q, N, types[k], -1);
        int exp = (int)tr_range(&r, -40, 20);
        if (k == 3) { /* a tiny error's exponent: 2^-170 is no float, the values (~2^-108) are */
            exp = -170;
            for (int64_t i = 0; i < N; i++) q[i] = (q[i] < 0 ? -1 : 1) * ((INT64_C(1) << 61) + llabs(q[i]) / 4);
        }
        wg_tensor src = tr_tensor_from(b, &r, types[k], q, N, exp), dst = f32_tensor(b, NULL, N);
        wg_fixed_to_f32(&src, &dst);
        wg_tensor_download(&dst, got);
        for (int64_t i = 0; i < N; i++) {
            float want = (float)ldexpl((long double)q[i], exp); /* exact product, one rounding */
            TR_FAIL_IF(memcmp(&want, &got[i], sizeof want) != 0, "%s q %lld exp %d: got %a, want %a",
                       tr_dt(types[k]), (long long)q[i], exp, (double)got[i], (double)want);
        }
        wg_tensor_free(&src);
        wg_tensor_free(&dst);
    }
    free(q);
    free(got);
}

static void from_f32(wg_backend *b, const float *v, int64_t n, wg_dtype dt, int64_t *out, int *exp)
{
    wg_tensor src = f32_tensor(b, v, n), dst = tr_tensor_out(b, dt, n);
    wg_f32_to_fixed(&src, &dst, "test tensor");
    int64_t *q = tr_tensor_get(&dst);
    memcpy(out, q, (size_t)n * sizeof *q);
    *exp = dst.exp;
    free(q);
    wg_tensor_free(&src);
    wg_tensor_free(&dst);
}

/* By hand: max 3 = 0.75 2^2, so the grid is 2^-28; ties of both parities at 2^-30 units. */
static void test_from_f32_hand(void **state)
{
    wg_backend *b = *state;
    const float v[] = {3.0f, -1.5f, 0.25f, 0.0f, 0x1p-29f /* 0.5 unit -> 0 */, 0x1.8p-28f /* 1.5 -> 2 */,
                       -0x1.4p-27f /* -2.5 -> -2 */};
    const int64_t want[] = {805306368, -402653184, 67108864, 0, 0, 2, -2};
    int64_t got[7];
    int e;
    from_f32(b, v, 7, WG_I32, got, &e);
    assert_int_equal(e, -28);
    for (int i = 0; i < 7; i++) TR_EXPECT_I64(want[i], got[i], "element %d", i);
    const float zeros[3] = {0.0f, -0.0f, 0.0f};
    from_f32(b, zeros, 3, WG_I64, got, &e);
    assert_int_equal(e, -WG_F32_FIXED_BITS);
    for (int i = 0; i < 3; i++) TR_EXPECT_I64(0, got[i], "zero %d", i);
}

/* Random floats over many scales, both containers, against rintl(ldexpl(x, -e)). */
static void test_from_f32_random(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {12};
    enum { N = 50003 };
    float *v = malloc(N * sizeof *v);
    int64_t *got = malloc(N * sizeof *got);
    for (int round = 0; round < 8; round++) {
        int scale = (int)tr_range(&r, -60, 60);
        float amax = 0.0f;
        for (int64_t i = 0; i < N; i++) {
            double u = (double)(int64_t)(tr_next(&r) >> 11) * 0x1p-53 * 2.0 - 1.0;
            v[i] = (float)ldexp(u * (i % 7 == 0 ? 1e-6 : 1.0), scale);
            amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
        }
        int e;
        from_f32(b, v, N, round % 2 ? WG_I64 : WG_I32, got, &e);
        int big_e = ilogbf(amax) + 1; /* amax = m 2^big_e, m in [0.5, 1) */
        assert_int_equal(e, big_e - WG_F32_FIXED_BITS);
        int64_t qmax = 0;
        for (int64_t i = 0; i < N; i++) {
            long double want = rintl(ldexpl((long double)v[i], -e));
            TR_EXPECT_LD(want, (long double)got[i], "x %a, exp %d", (double)v[i], e);
            qmax = llabs(got[i]) > qmax ? llabs(got[i]) : qmax;
        }
        /* the largest magnitude lands in [2^29, 2^30] units */
        assert_true(qmax >= (INT64_C(1) << (WG_F32_FIXED_BITS - 1)) && qmax <= (INT64_C(1) << WG_F32_FIXED_BITS));
    }
    free(v);
    free(got);
}

/* A diverged float layer (inf or NaN) stops the run with exit status 3 and a message. */
static void test_from_f32_nonfinite(void **state)
{
    wg_backend *b = *state;
    const float v[3] = {1.0f, INFINITY, NAN};
    pid_t pid = tr_fork_death_test();
    TR_FAIL_IF(pid < 0, "fork failed%s", "");
    if (pid == 0) {
        int64_t out[3];
        int e;
        freopen("/dev/null", "w", stderr); /* the expected message */
        from_f32(b, v, 3, WG_I32, out, &e);
        _exit(0);
    }
    int st = 0;
    TR_FAIL_IF(waitpid(pid, &st, 0) != pid, "waitpid failed%s", "");
    TR_FAIL_IF(!(WIFEXITED(st) && WEXITSTATUS(st) == WG_EXIT_DIVERGED), "non-finite input: child status %d", st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_to_f32),
        cmocka_unit_test(test_from_f32_hand),
        cmocka_unit_test(test_from_f32_random),
        cmocka_unit_test(test_from_f32_nonfinite),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
