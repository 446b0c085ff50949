/* test_conv_tune.c: the table of per-shape convolution kernel choices (host/conv_tune.h)
 * that the CUDA backend's auto mode fills: a shape and pass is found again only by all
 * of its fields; the choice is the fastest candidate that ran and agreed with cuBLASLt,
 * never one that disagreed however fast; the modes parse and fall back down the list as
 * documented; the printed table shows every candidate's fate. Hand-made entries with
 * known answers. */
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conv_tune.h"

static wg_conv_geom geom(void)
{
    wg_conv_geom g;
    assert_true(wg_conv_geom_init(&g, 8, 14, 14, 64, 128, 3, 3, 2, 1));
    return g;
}

static wg_conv_tune_entry entry(wg_conv_tune_key key, const double ms[WG_KERNELS], const bool tried[WG_KERNELS],
                                const bool agreed[WG_KERNELS])
{
    wg_conv_tune_entry e;
    memset(&e, 0, sizeof(e));
    e.key = key;
    for (int k = 0; k < WG_KERNELS; k++) e.ms[k] = ms[k], e.tried[k] = tried[k], e.agreed[k] = agreed[k];
    e.kernel = -1; /* wg_conv_tune_add fills it */
    return e;
}

static void test_keys(void **state)
{
    (void)state;
    wg_conv_geom g = geom();
    wg_conv_tune t = {0};
    const double ms[WG_KERNELS] = {1, 2, 3};
    const bool yes[WG_KERNELS] = {true, true, true};
    wg_conv_tune_key base = wg_conv_tune_key_of(&g, WG_PASS_FORWARD, 1, 4);
    assert_int_equal(wg_conv_tune_add(&t, entry(base, ms, yes, yes)), WG_KERNEL_CUBLASLT);
    /* each field alone makes another shape */
    wg_conv_tune_key k[12];
    for (int i = 0; i < 12; i++) k[i] = base;
    k[0].n++, k[1].h++, k[2].w++, k[3].c += 16, k[4].o += 16, k[5].kh = 1, k[6].kw = 1, k[7].stride = 1, k[8].pad = 0;
    k[9].pass = WG_PASS_DATA, k[10].nparts = 2, k[11].out_bytes = 8;
    for (int i = 0; i < 12; i++) assert_null(wg_conv_tune_find(&t, &k[i]));
    const double fast_ig[WG_KERNELS] = {3, 1, 2};
    for (int i = 0; i < 12; i++) assert_int_equal(wg_conv_tune_add(&t, entry(k[i], fast_ig, yes, yes)), WG_KERNEL_MMA);
    assert_int_equal(t.n, 13);
    wg_conv_tune_key again = wg_conv_tune_key_of(&g, WG_PASS_FORWARD, 1, 4);
    const wg_conv_tune_entry *e = wg_conv_tune_find(&t, &again);
    assert_non_null(e);
    assert_int_equal(e->kernel, WG_KERNEL_CUBLASLT);
    assert_int_equal(wg_conv_tune_find(&t, &k[10])->kernel, WG_KERNEL_MMA);
    wg_conv_tune_free(&t);
    assert_int_equal(t.n, 0);
}

static void test_choice(void **state)
{
    (void)state;
    wg_conv_geom g = geom();
    wg_conv_tune t = {0};
    const bool all[WG_KERNELS] = {true, true, true}, no_wg[WG_KERNELS] = {true, true, false};
    const bool wg_differs[WG_KERNELS] = {true, true, false}, none_agree[WG_KERNELS] = {true, false, false};
    struct {
        double ms[WG_KERNELS];
        const bool *tried, *agreed;
        int want;
    } cases[] = {
        {{3.0, 2.0, 1.0}, all, all, WG_KERNEL_WGMMA},         /* the fastest */
        {{3.0, 1.0, 2.0}, all, all, WG_KERNEL_MMA},           /* the fastest */
        {{1.0, 2.0, 3.0}, all, all, WG_KERNEL_CUBLASLT},      /* ours slower: cuBLASLt */
        {{3.0, 2.0, 0.5}, no_wg, all, WG_KERNEL_MMA},         /* wgmma did not run: its time counts for nothing */
        {{3.0, 2.0, 0.5}, all, wg_differs, WG_KERNEL_MMA},    /* wgmma disagreed: never, however fast */
        {{3.0, 0.1, 0.5}, all, none_agree, WG_KERNEL_CUBLASLT},
        {{2.0, 2.0, 2.0}, all, all, WG_KERNEL_CUBLASLT},      /* a tie keeps the reference */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wg_conv_tune_key key = wg_conv_tune_key_of(&g, WG_PASS_DATA, 1 + (int)(i % 2), 4 + 4 * (int)(i / 2));
        key.n = (int64_t)i + 1;
        int got = wg_conv_tune_add(&t, entry(key, cases[i].ms, cases[i].tried, cases[i].agreed));
        if (got != cases[i].want)
            fail_msg("case %zu: chose %s, want %s", i, wg_conv_kernel_name(got), wg_conv_kernel_name(cases[i].want));
        assert_int_equal(wg_conv_tune_find(&t, &key)->kernel, cases[i].want);
    }
    /* the table: a line per entry, "-" for a candidate that did not run, DIFFERS for one
     * that disagreed, the choice last */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    wg_conv_tune_print(&t, f);
    fclose(f);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    assert_int_equal(lines, 1 + (int)(sizeof(cases) / sizeof(cases[0])));
    assert_non_null(strstr(buf, "DIFFERS"));
    assert_non_null(strstr(buf, "backward-data"));
    assert_non_null(strstr(buf, "1 14 14 64 -> 128, 3x3, s2, p1, 1 "));
    print_message("%s", buf);
    free(buf);
    wg_conv_tune_free(&t);
}

static void test_modes(void **state)
{
    (void)state;
    int m = 99;
    assert_true(wg_conv_mode_parse("auto", &m)), assert_int_equal(m, WG_CONV_AUTO);
    assert_true(wg_conv_mode_parse("cublaslt", &m)), assert_int_equal(m, WG_KERNEL_CUBLASLT);
    assert_true(wg_conv_mode_parse("igemm", &m)), assert_int_equal(m, WG_KERNEL_MMA);
    assert_true(wg_conv_mode_parse("wgmma", &m)), assert_int_equal(m, WG_KERNEL_WGMMA);
    assert_false(wg_conv_mode_parse("IGEMM", &m));
    assert_false(wg_conv_mode_parse("", &m));
    const bool all[WG_KERNELS] = {true, true, true}, ig[WG_KERNELS] = {true, true, false};
    const bool lt[WG_KERNELS] = {true, false, false};
    assert_int_equal(wg_conv_mode_kernel(WG_KERNEL_WGMMA, all), WG_KERNEL_WGMMA);
    assert_int_equal(wg_conv_mode_kernel(WG_KERNEL_WGMMA, ig), WG_KERNEL_MMA);
    assert_int_equal(wg_conv_mode_kernel(WG_KERNEL_WGMMA, lt), WG_KERNEL_CUBLASLT);
    assert_int_equal(wg_conv_mode_kernel(WG_KERNEL_MMA, all), WG_KERNEL_MMA);
    assert_int_equal(wg_conv_mode_kernel(WG_KERNEL_MMA, lt), WG_KERNEL_CUBLASLT);
    assert_int_equal(wg_conv_mode_kernel(WG_KERNEL_CUBLASLT, all), WG_KERNEL_CUBLASLT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_keys), cmocka_unit_test(test_choice),
                                       cmocka_unit_test(test_modes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
