/* test_cuda.c: the CUDA backend against the CPU backend, bit for bit.
 *
 * Every quantizer runs on the same random integers (several containers, ragged
 * sizes, int32 and int64 extremes) on both backends; outputs and exponents must be
 * identical. Without a GPU every case is skipped and the program exits 77, which
 * ctest reports as "skipped" (SKIP_RETURN_CODE), never as passed or failed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h"
#include "backend_cuda.h"
#include "quant.h"

enum { WG_TEST_SKIPPED = 77 };

typedef struct gpu_fixture {
    wg_backend *cpu;
    wg_backend *gpu; /* NULL: no device, skip */
} gpu_fixture;

static const int64_t sizes[] = {1, 3, 4, 5, 1000, 4097, 65537, (1 << 20) + 3};
static const wg_dtype in_types[] = {WG_I8, WG_I16, WG_I32, WG_I64};

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Random elements of container t with random magnitudes (so every max-abs exponent
 * occurs), the container's extremes sprinkled in. */
static void *random_host(wg_dtype t, int64_t n, uint64_t seed)
{
    size_t sz = wg_dtype_size(t);
    void *h = malloc((size_t)n * sz);
    assert_non_null(h);
    uint64_t s = seed;
    int bits = (int)(sz * 8);
    int mag = 1 + (int)(splitmix64(&s) % (uint64_t)(bits - 1)); /* magnitude bits of this tensor */
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = splitmix64(&s);
        int64_t v = (int64_t)(r >> (64 - mag)) * ((r & 1) ? -1 : 1);
        if (i % 977 == 5) v = (int64_t)(-wg_dtype_bound(t) - 1); /* INT*_MIN */
        if (i % 977 == 6) v = wg_dtype_bound(t);
        wg_store_i64(h, t, i, v);
    }
    return h;
}

static void make_pair(gpu_fixture *f, wg_tensor *c, wg_tensor *g, wg_dtype t, int64_t n, int exp, const void *h)
{
    assert_true(wg_tensor_init(c, f->cpu, t, WG_LAYOUT_PLAIN, 1, &n, exp));
    assert_true(wg_tensor_init(g, f->gpu, t, WG_LAYOUT_PLAIN, 1, &n, exp));
    if (h != NULL) {
        wg_tensor_upload(c, h);
        wg_tensor_upload(g, h);
    } else {
        wg_tensor_zero(c);
        wg_tensor_zero(g);
    }
}

/* Same exponent, same bytes; frees both. */
static void expect_identical(wg_tensor *c, wg_tensor *g, const char *what)
{
    size_t nb = wg_tensor_nbytes(c);
    unsigned char *hc = malloc(nb), *hg = malloc(nb);
    assert_non_null(hc);
    assert_non_null(hg);
    wg_tensor_download(c, hc);
    wg_tensor_download(g, hg);
    if (c->exp != g->exp || memcmp(hc, hg, nb) != 0) {
        int64_t n = wg_tensor_numel(c), i = 0;
        while (i < n && wg_load_i64(hc, c->dtype, i) == wg_load_i64(hg, g->dtype, i)) i++;
        print_error("%s: cpu exp %d, gpu exp %d; first difference at %lld of %lld\n", what, c->exp, g->exp,
                    (long long)i, (long long)n);
        fail();
    }
    free(hc);
    free(hg);
    wg_tensor_free(c);
    wg_tensor_free(g);
}

static int setup(void **state)
{
    gpu_fixture *f = calloc(1, sizeof(*f));
    char err[256];
    f->cpu = wg_backend_cpu_init();
    f->gpu = wg_backend_cuda_init(0, err, sizeof(err));
    if (f->gpu == NULL) fprintf(stderr, "test_cuda: %s\n", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    gpu_fixture *f = *state;
    wg_backend_free(f->gpu);
    wg_backend_free(f->cpu);
    free(f);
    return 0;
}

#define REQUIRE_GPU(f) \
    do {               \
        if ((f)->gpu == NULL) skip(); \
    } while (0)

/* Run one single-output quantizer on both backends over every size and container. */
typedef void (*unary_quant)(wg_tensor *dst, const wg_tensor *src, int variant);

static void q_direct_clip(wg_tensor *d, const wg_tensor *s, int v) { (void)v; wg_quant_direct(d, s, 8, true); }
static void q_direct_noclip(wg_tensor *d, const wg_tensor *s, int v) { (void)v; wg_quant_direct(d, s, 8, false); }
static void q_fit(wg_tensor *d, const wg_tensor *s, int v) { (void)v; wg_quant_fit(d, s, 8); }
static void q_shift(wg_tensor *d, const wg_tensor *s, int v) { (void)v; wg_quant_shift(d, s, 8); }
static void q_grad(wg_tensor *d, const wg_tensor *s, int v)
{
    wg_grad_quant_args a = {.g_scale_log2 = 1 + v % 7, .gc = 15, .seed = 0x5eed0000u + (uint64_t)v, .step = (uint32_t)v,
                            .tensor_id = 3};
    wg_quant_grad(d, s, &a);
}

static void run_unary(gpu_fixture *f, unary_quant q, wg_dtype out, const char *what)
{
    int variant = 0;
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
        for (size_t ti = 0; ti < sizeof(in_types) / sizeof(in_types[0]); ti++, variant++) {
            int64_t n = sizes[si];
            void *h = random_host(in_types[ti], n, 1000 + (uint64_t)variant);
            wg_tensor sc, sg, dc, dg;
            make_pair(f, &sc, &sg, in_types[ti], n, -20 + variant % 23, h);
            make_pair(f, &dc, &dg, out, n, 0, NULL);
            q(&dc, &sc, variant);
            q(&dg, &sg, variant);
            expect_identical(&dc, &dg, what);
            wg_tensor_free(&sc);
            wg_tensor_free(&sg);
            free(h);
        }
}

static void test_direct(void **state)
{
    gpu_fixture *f = *state;
    REQUIRE_GPU(f);
    run_unary(f, q_direct_clip, WG_I8, "direct, clip");
    run_unary(f, q_direct_noclip, WG_I16, "direct, no clip");
}

static void test_fit(void **state)
{
    gpu_fixture *f = *state;
    REQUIRE_GPU(f);
    run_unary(f, q_fit, WG_I8, "fit");
}

static void test_shift_e1(void **state)
{
    gpu_fixture *f = *state;
    REQUIRE_GPU(f);
    run_unary(f, q_shift, WG_I8, "shift (E1)");
}

static void test_grad_g(void **state)
{
    gpu_fixture *f = *state;
    REQUIRE_GPU(f);
    run_unary(f, q_grad, WG_I8, "gradient (G)");
}

static void test_flag_e2(void **state)
{
    gpu_fixture *f = *state;
    REQUIRE_GPU(f);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
        for (size_t ti = 0; ti < sizeof(in_types) / sizeof(in_types[0]); ti++) {
            int64_t n = sizes[si];
            void *h = random_host(in_types[ti], n, 77 + si * 8 + ti);
            wg_tensor sc, sg, cc, cg, fc, fg;
            make_pair(f, &sc, &sg, in_types[ti], n, -14, h);
            make_pair(f, &cc, &cg, WG_I8, n, 0, NULL);
            make_pair(f, &fc, &fg, WG_I8, n, 0, NULL);
            wg_quant_flag(&cc, &fc, &sc, 8);
            wg_quant_flag(&cg, &fg, &sg, 8);
            expect_identical(&cc, &cg, "flag (E2), coarse");
            expect_identical(&fc, &fg, "flag (E2), fine");
            wg_tensor_free(&sc);
            wg_tensor_free(&sg);
            free(h);
        }
}

static void test_momentum_update(void **state)
{
    gpu_fixture *f = *state;
    REQUIRE_GPU(f);
    wg_quant_bits b = wg_quant_bits_reference();
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        int64_t n = sizes[si];
        int32_t *hm = random_host(WG_I32, n, 500 + si), *hw = random_host(WG_I32, n, 600 + si);
        int8_t *hg = random_host(WG_I8, n, 700 + si);
        wg_tensor mc, mg, gc, gg, wc, wgpu;
        make_pair(f, &mc, &mg, WG_I32, n, -(b.momentum - 1), hm);
        make_pair(f, &gc, &gg, WG_I8, n, -(b.gc - 1), hg);
        make_pair(f, &wc, &wgpu, WG_I32, n, -(b.u - 1), hw);
        wg_lr lr = wg_quant_lr(0.4, b.lr);
        wg_quant_momentum(&mc, &gc, b.momentum, b.momentum_shift);
        wg_quant_momentum(&mg, &gg, b.momentum, b.momentum_shift);
        wg_quant_update(&wc, &mc, lr, b.u);
        wg_quant_update(&wgpu, &mg, lr, b.u);
        expect_identical(&wc, &wgpu, "update");
        expect_identical(&mc, &mg, "momentum");
        wg_tensor_free(&gc);
        wg_tensor_free(&gg);
        free(hm);
        free(hw);
        free(hg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_direct),  cmocka_unit_test(test_fit),     cmocka_unit_test(test_shift_e1),
        cmocka_unit_test(test_flag_e2), cmocka_unit_test(test_grad_g), cmocka_unit_test(test_momentum_update),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    if (failed == 0 && wg_cuda_device_count() == 0) {
        fprintf(stderr, "test_cuda: no CUDA device on this machine: every GPU case was skipped\n");
        return WG_TEST_SKIPPED;
    }
    return failed;
}
