/* test_conv_igemm.c: the index arithmetic of the implicit-GEMM int8 convolutions
 * (host/wg_conv_igemm.h, which cuda/conv_igemm.cu's loaders call), on the CPU.
 *
 * Each pass runs as the kernels form it, in scalar loops: for every row and column of
 * its GEMM, the sum over K in pieces of 16 bytes, each piece fetched from the offset the
 * header computes (-1: zeros), the backward-data weights first transposed by
 * wg_igemm_wt_source. The results must equal test_conv_ref.h's direct int64 references
 * (which share nothing with an im2col formulation), with two error parts at their
 * shifts as E2 gives them, over random geometries whose channel counts are multiples of
 * 16 (kernels 1x1, 3x3, 7x7, 1x3; strides 1 to 3; pads 0 to 3), and the eligibility
 * rules must accept exactly those. A wrong offset, a piece that crosses a kernel
 * position or a skipped stride position shows as a mismatch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "backend.h"
#include "conv.h"
#include "tensor.h"
#include "wg_conv_igemm.h"

#include "test_ref.h"

#include "test_conv_ref.h"

/* sum over e < 16 of piece(a)[e] * piece(b)[e], -1 a piece of zeros */
static int64_t piece_dot(const int8_t *a, int64_t oa, const int8_t *b, int64_t ob)
{
    if (oa < 0 || ob < 0) return 0;
    int64_t s = 0;
    for (int e = 0; e < WG_IGEMM_PIECE; e++) s += (int64_t)a[oa + e] * b[ob + e];
    return s;
}

static int8_t *random_s8(tr_rng *r, int64_t n)
{
    int8_t *p = malloc((size_t)(n > 0 ? n : 1));
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = (int8_t)tr_range(r, -127, 127);
    return p;
}

static int64_t *widen(const int8_t *p, int64_t n)
{
    int64_t *q = malloc((size_t)(n > 0 ? n : 1) * sizeof *q);
    assert_non_null(q);
    for (int64_t i = 0; i < n; i++) q[i] = p[i];
    return q;
}

static void check_geometry(tr_rng *r, const wg_conv_geom *g)
{
    tc_geom t = tc_geom_make(g->n, g->h, g->w, g->c, g->o, g->kh, g->kw, g->stride, g->pad);
    assert_int_equal(t.oh, g->oh);
    int64_t nx = tc_nx(&t), nw = tc_nw(&t), ny = tc_ny(&t);
    int8_t *x = random_s8(r, nx), *w = random_s8(r, nw), *e0 = random_s8(r, ny), *e1 = random_s8(r, ny);
    int64_t *x64 = widen(x, nx), *w64 = widen(w, nw), *e64 = malloc((size_t)ny * sizeof *e64);
    int64_t *yref = malloc((size_t)ny * sizeof *yref), *dxref = malloc((size_t)nx * sizeof *dxref);
    int64_t *dwref = malloc((size_t)nw * sizeof *dwref);
    assert_true(e64 && yref && dxref && dwref);
    const int s1 = 7; /* E2's fine part lies 7 grids below the coarse one */
    for (int64_t i = 0; i < ny; i++) e64[i] = (int64_t)e0[i] * (1 << s1) + e1[i];
    tc_fwd_i64(&t, x64, w64, yref);
    tc_bwd_i64(&t, x64, w64, e64, dxref, dwref);

    /* forward: M = rows, N = o, K = kdim */
    for (int64_t m = 0; m < g->rows; m++)
        for (int64_t n = 0; n < g->o; n++) {
            int64_t s = 0;
            for (int64_t k0 = 0; k0 < g->kdim; k0 += WG_IGEMM_PIECE)
                s += piece_dot(x, wg_igemm_fwd_a(g, m, k0), w, n * g->kdim + k0);
            if (s != yref[m * g->o + n]) fail_msg("forward y[%lld][%lld]: %lld, expected %lld", (long long)m,
                                                  (long long)n, (long long)s, (long long)yref[m * g->o + n]);
        }
    /* backward-data: M = input pixels, N = c, K = kh kw o, both parts */
    int64_t kt = g->kh * g->kw * g->o;
    int8_t *wt = malloc((size_t)nw);
    assert_non_null(wt);
    for (int64_t i = 0; i < nw; i++) wt[i] = w[wg_igemm_wt_source(g, i)];
    for (int64_t m = 0; m < g->n * g->h * g->w; m++)
        for (int64_t n = 0; n < g->c; n++) {
            int64_t s0 = 0, s = 0;
            for (int64_t k0 = 0; k0 < kt; k0 += WG_IGEMM_PIECE) {
                int64_t oa = wg_igemm_bwd_data_a(g, m, k0), ob = wg_igemm_bwd_data_b(g, n, k0);
                s0 += piece_dot(e0, oa, wt, ob);
                s += piece_dot(e1, oa, wt, ob);
            }
            s += s0 * (1 << s1);
            if (s != dxref[m * g->c + n]) fail_msg("backward-data dx[%lld][%lld]: %lld, expected %lld", (long long)m,
                                                   (long long)n, (long long)s, (long long)dxref[m * g->c + n]);
        }
    /* backward-weight: M = o, N = kdim, K = rows; pieces run along M (err) and N (x) */
    for (int64_t m0 = 0; m0 < g->o; m0 += WG_IGEMM_PIECE)
        for (int64_t n0 = 0; n0 < g->kdim; n0 += WG_IGEMM_PIECE)
            for (int64_t a = 0; a < WG_IGEMM_PIECE; a++)
                for (int64_t b = 0; b < WG_IGEMM_PIECE; b++) {
                    int64_t s0 = 0, s = 0;
                    for (int64_t k = 0; k < g->rows; k++) {
                        int64_t oa = wg_igemm_bwd_w_a(g, k, m0), ob = wg_igemm_bwd_w_b(g, k, n0);
                        if (ob < 0) continue;
                        s0 += (int64_t)e0[oa + a] * x[ob + b];
                        s += (int64_t)e1[oa + a] * x[ob + b];
                    }
                    s += s0 * (1 << s1);
                    int64_t want = dwref[(m0 + a) * g->kdim + n0 + b];
                    if (s != want) fail_msg("backward-weight dw[%lld][%lld]: %lld, expected %lld", (long long)(m0 + a),
                                            (long long)(n0 + b), (long long)s, (long long)want);
                }
    free(x), free(w), free(e0), free(e1), free(wt), free(x64), free(w64), free(e64);
    free(yref), free(dxref), free(dwref);
}

static void test_igemm_index(void **state)
{
    (void)state;
    tr_rng r = {0x1ce};
    static const int64_t kernels[][2] = {{1, 1}, {3, 3}, {7, 7}, {1, 3}};
    for (int trial = 0; trial < 40; trial++) {
        const int64_t *k = kernels[trial % 4];
        int stride = (int)tr_range(&r, 1, 3), pad = (int)tr_range(&r, 0, k[0] < 3 ? 0 : 3);
        int64_t h = tr_range(&r, k[0], 9), w = tr_range(&r, k[1], 9);
        int64_t c = 16 * tr_range(&r, 1, 2), o = 16 * tr_range(&r, 1, 2), n = tr_range(&r, 1, 2);
        wg_conv_geom g;
        assert_true(wg_conv_geom_init(&g, n, h, w, c, o, k[0], k[1], stride, pad));
        assert_true(wg_igemm_forward_ok(&g) && wg_igemm_backward_data_ok(&g) && wg_igemm_backward_weight_ok(&g));
        check_geometry(&r, &g);
    }
}

/* The kernels' cursors step by one K step (32) from where division put them: K
 * positions (i, j, ch) with 16 to 144 channels a position, and output pixels across
 * rows and images (rows as short as 1 pixel, so one step crosses several). At every step
 * the stepped state must equal division's. */
static void test_igemm_cursors(void **state)
{
    (void)state;
    tr_rng r = {0x5c1};
    for (int trial = 0; trial < 200; trial++) {
        int64_t chans = 16 * tr_range(&r, 1, 9), kw = tr_range(&r, 1, 7), kh = tr_range(&r, 1, 7);
        int64_t q = 16 * tr_range(&r, 0, 1), kdim = kh * kw * chans;
        wg_igemm_kpos p = wg_igemm_kpos_of(q, chans, kw);
        for (int64_t k = q; k < kdim; k += 32) {
            wg_igemm_kpos want = wg_igemm_kpos_of(k, chans, kw);
            if (p.i != want.i || p.j != want.j || p.ch != want.ch)
                fail_msg("K position %lld (%lld channels, kw %lld): stepped (%d, %d, %d), divided (%d, %d, %d)",
                         (long long)k, (long long)chans, (long long)kw, p.i, p.j, p.ch, want.i, want.j, want.ch);
            wg_igemm_kpos_step(&p, 32, (int32_t)chans, (int32_t)kw);
        }
        wg_conv_geom g;
        int64_t h = tr_range(&r, 1, 12), w = tr_range(&r, 1, 12);
        assert_true(wg_conv_geom_init(&g, tr_range(&r, 1, 4), h, w, 16, 16, 1, 1, (int)tr_range(&r, 1, 2), 0));
        int64_t r0 = tr_range(&r, 0, 31);
        wg_igemm_pix x = wg_igemm_pix_of(&g, r0);
        for (int64_t row = r0; row < g.rows + 64; row += 32) {
            wg_igemm_pix want = wg_igemm_pix_of(&g, row);
            if (x.n != want.n || x.oy != want.oy || x.ox != want.ox)
                fail_msg("output pixel %lld (%lldx%lld): stepped (%lld, %d, %d), divided (%lld, %d, %d)",
                         (long long)row, (long long)g.oh, (long long)g.ow, (long long)x.n, x.oy, x.ox,
                         (long long)want.n, want.oy, want.ox);
            wg_igemm_pix_step(&x, &g, 32);
        }
    }
}

/* Rows past the end have no pieces (the loaders zero them). */
static void test_igemm_rows_past_end(void **state)
{
    (void)state;
    wg_conv_geom g;
    assert_true(wg_conv_geom_init(&g, 2, 5, 5, 16, 32, 3, 3, 1, 1));
    wg_igemm_kpos p = wg_igemm_kpos_of(64, 16, 3); /* the centre, (1, 1): every last pixel has a piece there */
    wg_igemm_frow f = wg_igemm_fwd_row(&g, g.rows);
    wg_igemm_drow d = wg_igemm_bwd_data_row(&g, g.n * g.h * g.w);
    assert_int_equal(wg_igemm_fwd_a_at(&g, &f, &p), -1);
    assert_int_equal(wg_igemm_bwd_data_a_at(&g, &d, &p), -1);
    f = wg_igemm_fwd_row(&g, g.rows - 1);
    d = wg_igemm_bwd_data_row(&g, g.n * g.h * g.w - 1);
    assert_true(wg_igemm_fwd_a_at(&g, &f, &p) >= 0);
    assert_true(wg_igemm_bwd_data_a_at(&g, &d, &p) >= 0);
}

/* The layers the kernels refuse: a piece would cross a kernel position. */
static void test_igemm_eligibility(void **state)
{
    (void)state;
    wg_conv_geom stem, fc, mid;
    assert_true(wg_conv_geom_init(&stem, 2, 32, 32, 3, 64, 7, 7, 2, 3));
    assert_true(wg_conv_geom_init(&fc, 8, 1, 1, 512, 1000, 1, 1, 1, 0));
    assert_true(wg_conv_geom_init(&mid, 2, 8, 8, 64, 24, 3, 3, 1, 1));
    assert_false(wg_igemm_forward_ok(&stem));
    assert_true(wg_igemm_backward_data_ok(&stem)); /* its error has 64 channels */
    assert_false(wg_igemm_backward_weight_ok(&stem));
    assert_true(wg_igemm_forward_ok(&fc));
    assert_false(wg_igemm_backward_data_ok(&fc));
    assert_false(wg_igemm_backward_weight_ok(&fc));
    assert_true(wg_igemm_forward_ok(&mid));
    assert_false(wg_igemm_backward_data_ok(&mid));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_igemm_index),
        cmocka_unit_test(test_igemm_eligibility),
        cmocka_unit_test(test_igemm_cursors),
        cmocka_unit_test(test_igemm_rows_past_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
