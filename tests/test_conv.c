/* test_conv.c: 2-D convolution (conv.h) on the CPU backend.
 *
 * int8: the forward and both backward passes against the direct int64 references of
 * test_conv_ref.h, bit for bit, at the exponents of docs/numerics.md 7.4 (forward
 * e_x + e_w; backward-data e_w + e_min, backward-weight e_x + e_min, e_min the finest
 * error part), with one and with two error parts (value = sum of part * 2^exp), over
 * random geometries (N 1..3, H, W 1..9, C 1..7, O 1..9, kernels 1x1, 3x3, 1x3, 3x1,
 * 7x7, stride 1..3, pad 0..3) that include the pointwise path and fully connected
 * layers. Backward-weight is also run over more than WG_GEMM_S8_MAX_K rows with
 * values near 127, where an int32 sum over all rows would overflow; backward-data at the
 * bounds of its int32 sums; and larger geometries with three threads through each of
 * conv_bwd.c's block paths. Backward-weight's own paths (rows gathered from the input, 16
 * bytes apart or not; im2col rows for short runs; x itself without padding) run with
 * 1, 2 and 3 threads over batches that do not divide into its blocks, and its int32
 * sums up to the bound itself: a thread's sums over exactly WG_GEMM_S8_MAX_K rows of
 * +-127^2 products before they go to int64, and a block of more rows than that.
 * float32: the forward against a double direct convolution; the backward against
 * central finite differences in double. The inputs must come back unchanged; one
 * workspace serves all geometries of a test (grown and reused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <omp.h>

#include "backend.h"
#include "conv.h"
#include "gemm.h"
#include "quant.h"
#include "tensor.h"
#include "wg_par.h"

#include "test_ref.h"

#include "test_conv_ref.h"

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

#define GFMT "N %" PRId64 " H %" PRId64 " W %" PRId64 " C %" PRId64 " O %" PRId64 " k %" PRId64 "x%" PRId64 " s %d p %d"
#define GARGS(g) (g)->n, (g)->h, (g)->w, (g)->c, (g)->o, (g)->kh, (g)->kw, (g)->stride, (g)->pad

/* Geometry it of a sweep: hand-picked paths first, then random. wg_conv_geom_init
 * must agree with the reference's sizes. */
static tc_geom pick_geom(tr_rng *r, int it, wg_conv_geom *cg)
{
    tc_geom g;
    int64_t n = tr_range(r, 1, 3), h = tr_range(r, 1, 9), w = tr_range(r, 1, 9), c = tr_range(r, 1, 7),
            o = tr_range(r, 1, 9);
    switch (it) {
    case 0: g = tc_geom_make(n, 5, 7, c, o, 1, 1, 1, 0); break;  /* pointwise: x is the im2col matrix */
    case 1: g = tc_geom_make(n, 1, 1, 7, 9, 1, 1, 1, 0); break;  /* fully connected */
    case 2: g = tc_geom_make(3, 1, 1, 1, 1, 1, 1, 1, 0); break;  /* the smallest FC */
    case 3: g = tc_geom_make(n, 3, 4, c, o, 3, 4, 1, 0); break;  /* kernel = input: FC on im2col */
    case 4: g = tc_geom_make(n, h, w, c, o, 1, 1, 2, 0); break;  /* 1x1 subsampling */
    case 5: g = tc_geom_make(n, h, w, c, o, 1, 1, 1, 1); break;  /* 1x1 padded */
    case 6: g = tc_geom_make(n, 9, 8, c, o, 7, 7, 2, 3); break;  /* a ResNet stem */
    case 7: g = tc_geom_make(n, 2, 1, c, o, 7, 7, 1, 3); break;  /* kernel larger than the input */
    default: {
        static const int64_t ks[][2] = {{1, 1}, {3, 3}, {1, 3}, {3, 1}, {7, 7}};
        for (;;) {
            int ki = (int)(tr_next(r) % 5);
            int stride = (int)tr_range(r, 1, 3), pad = (int)tr_range(r, 0, 3);
            if (it % 5 == 0) ki = 0, stride = 1, pad = 0; /* the pointwise path, often */
            h = tr_range(r, 1, 9), w = tr_range(r, 1, 9);
            if (h + 2 * pad < ks[ki][0] || w + 2 * pad < ks[ki][1]) continue;
            g = tc_geom_make(n, h, w, c, o, ks[ki][0], ks[ki][1], stride, pad);
            break;
        }
    }
    }
    bool ok = wg_conv_geom_init(cg, g.n, g.h, g.w, g.c, g.o, g.kh, g.kw, g.stride, g.pad);
    TR_FAIL_IF(!ok, "wg_conv_geom_init refused " GFMT, GARGS(&g));
    TR_FAIL_IF(cg->oh != g.oh || cg->ow != g.ow || cg->rows != g.n * g.oh * g.ow || cg->kdim != g.kh * g.kw * g.c,
               "wg_conv_geom_init " GFMT ": oh %" PRId64 " ow %" PRId64 " rows %" PRId64 " kdim %" PRId64
               ", expected oh %" PRId64 " ow %" PRId64,
               GARGS(&g), cg->oh, cg->ow, cg->rows, cg->kdim, g.oh, g.ow);
    return g;
}

/* t (an integer tensor) still holds q at exponent exp. */
static void expect_q(const wg_tensor *t, const int64_t *q, int64_t n, int exp, const char *what, const tc_geom *g)
{
    int64_t *got = tr_tensor_get(t);
    TR_EXPECT_I64(exp, t->exp, "%s: exponent, " GFMT, what, GARGS(g));
    for (int64_t i = 0; i < n; i++) TR_EXPECT_I64(q[i], got[i], "%s[%" PRId64 "], " GFMT, what, i, GARGS(g));
    free(got);
}

static int64_t *rand_q(tr_rng *r, int64_t n, int zero_pct)
{
    int64_t *q = malloc((size_t)n * sizeof *q + 1);
    for (int64_t i = 0; i < n; i++) q[i] = tc_rand_s8(r, zero_pct);
    return q;
}

/* ---- geometry ------------------------------------------------------------------------- */

static void test_geom(void **state)
{
    (void)state;
    wg_conv_geom g;
    /* every size must be positive (stride >= 1, pad >= 0) */
    static const int64_t bad[][9] = {
        {0, 5, 5, 3, 4, 3, 3, 1, 1}, {1, 0, 5, 3, 4, 3, 3, 1, 1},  {1, 5, 0, 3, 4, 3, 3, 1, 1},
        {1, 5, 5, 0, 4, 3, 3, 1, 1}, {1, 5, 5, 3, 0, 3, 3, 1, 1},  {1, 5, 5, 3, 4, 0, 3, 1, 1},
        {1, 5, 5, 3, 4, 3, 0, 1, 1}, {1, 5, 5, 3, 4, 3, 3, 0, 1},  {1, 5, 5, 3, 4, 3, 3, 1, -1},
        {-1, 5, 5, 3, 4, 3, 3, 1, 1}, {1, 5, -5, 3, 4, 3, 3, 1, 1}, {1, 5, 5, 3, -4, 3, 3, 1, 1},
        {1, 5, 5, 3, 4, 3, 3, -2, 1},
        /* kernel larger than the padded input, in either direction */
        {1, 3, 9, 1, 1, 6, 3, 1, 1}, {1, 9, 3, 1, 1, 3, 6, 1, 1},  {1, 1, 1, 1, 1, 2, 1, 1, 0},
        {1, 1, 1, 1, 1, 1, 2, 1, 0}, {2, 4, 4, 2, 2, 7, 7, 2, 1},  {1, 1, 1, 1, 1, 4, 4, 1, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const int64_t *a = bad[i];
        bool ok = wg_conv_geom_init(&g, a[0], a[1], a[2], a[3], a[4], a[5], a[6], (int)a[7], (int)a[8]);
        TR_FAIL_IF(ok, "wg_conv_geom_init accepted invalid case %zu: %" PRId64 "x%" PRId64 "x%" PRId64 "x%" PRId64
                       ", O %" PRId64 ", k %" PRId64 "x%" PRId64 ", s %" PRId64 ", p %" PRId64,
                   i, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
    }
    /* a sweep: accepted exactly when the kernel fits, with the reference's sizes */
    tr_rng r = {0x9e0};
    for (int it = 0; it < 1000; it++) { /* about 1 in 8 is refused (with a message on stderr) */
        int64_t n = tr_range(&r, 1, 4), h = tr_range(&r, 1, 12), w = tr_range(&r, 1, 12), c = tr_range(&r, 1, 9),
                o = tr_range(&r, 1, 9), kh = tr_range(&r, 1, 7), kw = tr_range(&r, 1, 7);
        int s = (int)tr_range(&r, 1, 4), p = (int)tr_range(&r, 0, 4);
        tc_geom ref = tc_geom_make(n, h, w, c, o, kh, kw, s, p);
        bool fits = h + 2 * p >= kh && w + 2 * p >= kw;
        bool ok = wg_conv_geom_init(&g, n, h, w, c, o, kh, kw, s, p);
        TR_FAIL_IF(ok != fits, "wg_conv_geom_init " GFMT " returned %d", GARGS(&ref), (int)ok);
        if (!ok) continue;
        TR_FAIL_IF(g.n != n || g.h != h || g.w != w || g.c != c || g.o != o || g.kh != kh || g.kw != kw ||
                       g.stride != s || g.pad != p || g.oh != ref.oh || g.ow != ref.ow ||
                       g.rows != n * ref.oh * ref.ow || g.kdim != kh * kw * c,
                   "wg_conv_geom_init " GFMT ": oh %" PRId64 " ow %" PRId64 " rows %" PRId64 " kdim %" PRId64
                   ", expected oh %" PRId64 " ow %" PRId64,
                   GARGS(&ref), g.oh, g.ow, g.rows, g.kdim, ref.oh, ref.ow);
    }
}

/* ---- int8 forward --------------------------------------------------------------------- */

static void test_s8_forward(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xf0d};
    wg_conv_ws ws = {0};
    for (int it = 0; it < 300; it++) {
        wg_conv_geom cg;
        tc_geom g = pick_geom(&r, it, &cg);
        int ex = (int)tr_range(&r, -20, 5), ew = (int)tr_range(&r, -20, 5);
        int64_t *xq = rand_q(&r, tc_nx(&g), it % 3 == 0 ? 50 : 0), *wq = rand_q(&r, tc_nw(&g), 0);
        int64_t *yq = malloc((size_t)tc_ny(&g) * sizeof *yq);
        wg_tensor x = tc_tensor(b, WG_I8, WG_LAYOUT_NHWC, g.n, g.h, g.w, g.c, ex, xq, NULL);
        wg_tensor w = tc_tensor(b, WG_I8, WG_LAYOUT_OHWI, g.o, g.kh, g.kw, g.c, ew, wq, NULL);
        wg_tensor y = tc_tensor(b, WG_I32, WG_LAYOUT_NHWC, g.n, g.oh, g.ow, g.o, 99, NULL, NULL);
        uint64_t ymax = wg_conv_s8_forward(&cg, &x, &w, &y, &ws);
        tc_fwd_i64(&g, xq, wq, yq);
        expect_q(&y, yq, tc_ny(&g), ex + ew, "s8 forward y", &g);
        /* the max it hands to BN: exact, or unknown (a pointwise convolution's one GEMM) */
        uint64_t want_max = 0;
        for (int64_t i = 0; i < tc_ny(&g); i++) {
            uint64_t a = (uint64_t)llabs(yq[i]);
            want_max = a > want_max ? a : want_max;
        }
        bool pointwise = g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0;
        TR_EXPECT_I64((int64_t)(pointwise ? WG_QUANT_MAX_UNKNOWN : want_max), (int64_t)ymax, "s8 forward max |y|%s",
                      "");
        expect_q(&x, xq, tc_nx(&g), ex, "s8 forward modified x", &g);
        expect_q(&w, wq, tc_nw(&g), ew, "s8 forward modified w", &g);
        wg_tensor_free(&x);
        wg_tensor_free(&w);
        wg_tensor_free(&y);
        free(xq);
        free(wq);
        free(yq);
    }
    wg_conv_ws_free(&ws);
}

/* ---- int8 backward -------------------------------------------------------------------- */

/* Run wg_conv_s8_backward with the error parts eq[0..nparts) at exponents ee[] and
 * compare dx (unless !with_dx) and dw with the reference on the combined error
 * sum_p eq[p] * 2^(ee[p] - e_min), exact in int64. */
static void check_s8_backward(wg_backend *b, const tc_geom *g, wg_conv_ws *ws, const int64_t *xq, int ex,
                              const int64_t *wq, int ew, int64_t *const *eq, const int *ee, int nparts, bool with_dx)
{
    wg_conv_geom cg;
    TR_FAIL_IF(!wg_conv_geom_init(&cg, g->n, g->h, g->w, g->c, g->o, g->kh, g->kw, g->stride, g->pad),
               "wg_conv_geom_init refused " GFMT, GARGS(g));
    int64_t ny = tc_ny(g), nx = tc_nx(g), nw = tc_nw(g);
    int emin = ee[0];
    for (int p = 1; p < nparts; p++) emin = ee[p] < emin ? ee[p] : emin;
    int64_t *comb = calloc((size_t)ny, sizeof *comb), *dxq = malloc((size_t)nx * sizeof *dxq),
            *dwq = malloc((size_t)nw * sizeof *dwq);
    for (int p = 0; p < nparts; p++)
        for (int64_t i = 0; i < ny; i++) comb[i] += eq[p][i] * (INT64_C(1) << (ee[p] - emin));
    tc_bwd_i64(g, xq, wq, comb, with_dx ? dxq : NULL, dwq);

    wg_tensor x = tc_tensor(b, WG_I8, WG_LAYOUT_NHWC, g->n, g->h, g->w, g->c, ex, xq, NULL);
    wg_tensor w = tc_tensor(b, WG_I8, WG_LAYOUT_OHWI, g->o, g->kh, g->kw, g->c, ew, wq, NULL);
    wg_tensor e[2], dx = {0}, dw = tc_tensor(b, WG_I64, WG_LAYOUT_OHWI, g->o, g->kh, g->kw, g->c, 99, NULL, NULL);
    const wg_tensor *ep[2];
    for (int p = 0; p < nparts; p++) {
        e[p] = tc_tensor(b, WG_I8, WG_LAYOUT_NHWC, g->n, g->oh, g->ow, g->o, ee[p], eq[p], NULL);
        ep[p] = &e[p];
    }
    if (with_dx) dx = tc_tensor(b, WG_I64, WG_LAYOUT_NHWC, g->n, g->h, g->w, g->c, 99, NULL, NULL);
    wg_conv_s8_backward(&cg, &x, &w, ep, nparts, with_dx ? &dx : NULL, &dw, ws);

    char what[96];
    snprintf(what, sizeof what, "s8 backward (%d parts, exps %d/%d) dw", nparts, ee[0], nparts > 1 ? ee[1] : ee[0]);
    expect_q(&dw, dwq, nw, ex + emin, what, g);
    if (with_dx) {
        snprintf(what, sizeof what, "s8 backward (%d parts, exps %d/%d) dx", nparts, ee[0], nparts > 1 ? ee[1] : ee[0]);
        expect_q(&dx, dxq, nx, ew + emin, what, g);
    }
    int span = 0;
    for (int p = 0; p < nparts; p++) span = ee[p] - emin > span ? ee[p] - emin : span;
    if (with_dx && wg_conv_s8_dx_fits_s32(&cg, span)) { /* dx in int32: the same integers */
        wg_tensor dx32 = tc_tensor(b, WG_I32, WG_LAYOUT_NHWC, g->n, g->h, g->w, g->c, 99, NULL, NULL);
        uint64_t got_max = wg_conv_s8_backward(&cg, &x, &w, ep, nparts, &dx32, &dw, ws), want_max = 0;
        snprintf(what, sizeof what, "s8 backward (%d parts, exps %d/%d) int32 dx", nparts, ee[0],
                 nparts > 1 ? ee[1] : ee[0]);
        expect_q(&dx32, dxq, nx, ew + emin, what, g);
        for (int64_t i = 0; i < nx; i++)
            want_max = (uint64_t)llabs(dxq[i]) > want_max ? (uint64_t)llabs(dxq[i]) : want_max;
        TR_EXPECT_I64((int64_t)want_max, (int64_t)got_max, "%s: the returned max |dx|", what);
        wg_tensor_free(&dx32);
    }
    expect_q(&x, xq, nx, ex, "s8 backward modified x", g);
    expect_q(&w, wq, nw, ew, "s8 backward modified w", g);
    for (int p = 0; p < nparts; p++) {
        expect_q(&e[p], eq[p], ny, ee[p], "s8 backward modified an error part", g);
        wg_tensor_free(&e[p]);
    }
    wg_tensor_free(&x);
    wg_tensor_free(&w);
    wg_tensor_free(&dx);
    wg_tensor_free(&dw);
    free(comb);
    free(dxq);
    free(dwq);
}

static void run_s8_backward(wg_backend *b, int nparts, uint64_t seed)
{
    tr_rng r = {seed};
    wg_conv_ws ws = {0};
    for (int it = 0; it < 200; it++) {
        wg_conv_geom cg;
        tc_geom g = pick_geom(&r, it, &cg);
        int ex = (int)tr_range(&r, -20, 5), ew = (int)tr_range(&r, -20, 5), ee[2];
        ee[0] = (int)tr_range(&r, -30, 0);
        /* the second part 0..7 grids coarser or finer (E2: coarse = fine + 7) */
        ee[1] = ee[0] + (int)(tr_next(&r) % 2 ? 1 : -1) * (int)tr_range(&r, 0, 7);
        if (it % 4 == 1) ee[1] = ee[0] + 7;
        int64_t *xq = rand_q(&r, tc_nx(&g), 0), *wq = rand_q(&r, tc_nw(&g), 0), *eq[2];
        for (int p = 0; p < nparts; p++) eq[p] = rand_q(&r, tc_ny(&g), it % 2 ? 70 : 10); /* errors: mostly zeros */
        if (nparts == 2 && it % 3 == 0) { /* E2's flag split: at most one part of each element is nonzero */
            for (int64_t i = 0; i < tc_ny(&g); i++) {
                if (tr_next(&r) % 2) eq[0][i] = 0;
                else eq[1][i] = 0;
            }
        }
        check_s8_backward(b, &g, &ws, xq, ex, wq, ew, eq, ee, nparts, it % 5 != 4);
        for (int p = 0; p < nparts; p++) free(eq[p]);
        free(xq);
        free(wq);
    }
    wg_conv_ws_free(&ws);
}

static void test_s8_backward_one_part(void **state) { run_s8_backward(*state, 1, 0xb1); }

static void test_s8_backward_two_parts(void **state) { run_s8_backward(*state, 2, 0xb2); }

/* Backward-weight over rows = 3 * 256 * 256 = 196,608 > WG_GEMM_S8_MAX_K with every
 * product of one sign and magnitude >= 120^2 per dw element: the full sums (about
 * 2.8e9 to 3.2e9, times 129 with two parts) overflow int32, so only the chunked int64
 * sum gets them right. Values vary so that a wrong chunk offset shows. */
static void test_s8_backward_chunked(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xc4};
    wg_conv_ws ws = {0};
    const tc_geom geoms[2] = {
        tc_geom_make(3, 256, 256, 1, 1, 1, 1, 1, 0), /* pointwise */
        tc_geom_make(3, 256, 256, 2, 2, 3, 3, 1, 1), /* im2col; edge taps still see 195,840 rows */
    };
    for (int gi = 0; gi < 2; gi++)
        for (int nparts = 1; nparts <= 2; nparts++) {
            const tc_geom *g = &geoms[gi];
            TR_FAIL_IF(g->n * g->oh * g->ow <= WG_GEMM_S8_MAX_K, "test bug: rows %" PRId64, g->n * g->oh * g->ow);
            int64_t *xq = malloc((size_t)tc_nx(g) * sizeof *xq), *wq = rand_q(&r, tc_nw(g), 0), *eq[2];
            /* pointwise: x random sign, error = sign * s(o) * |.|; im2col: x > 0, error sign s(o) */
            for (int64_t i = 0; i < tc_nx(g); i++)
                xq[i] = (gi == 0 && tr_next(&r) % 2 ? -1 : 1) * tr_range(&r, 120, 127);
            for (int p = 0; p < nparts; p++) {
                eq[p] = malloc((size_t)tc_ny(g) * sizeof(int64_t));
                for (int64_t i = 0; i < tc_ny(g); i++) {
                    int64_t o = i % g->o, sign = (o % 2 ? -1 : 1) * (nparts == 1 ? -1 : 1);
                    if (gi == 0) sign *= xq[i] < 0 ? -1 : 1;
                    eq[p][i] = sign * tr_range(&r, 120, 127);
                }
            }
            const int ee[2] = {-12, -19};
            check_s8_backward(b, g, &ws, xq, -7, wq, -8, eq, ee, nparts, true);
            for (int p = 0; p < nparts; p++) free(eq[p]);
            free(xq);
            free(wq);
        }
    wg_conv_ws_free(&ws);
}

/* Backward-data at the bounds of its int32 sums: every error element and weight 127
 * (products of one sign), two parts 8 grids apart with both parts nonzero. Each part's
 * column sum, 64 * 127 * 127 * 257 with the coarse part scaled, still fits int32, but a
 * pixel read by 9 taps sums 2.4e9, which only int64 holds: through col2im (3x3 with pad
 * 3 > kernel - 1) and as a convolution (pad 1). */
static void test_s8_backward_extremes(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xe7};
    wg_conv_ws ws = {0};
    const tc_geom geoms[2] = {tc_geom_make(2, 6, 6, 3, 64, 3, 3, 1, 3), tc_geom_make(2, 6, 6, 3, 64, 3, 3, 1, 1)};
    for (int gi = 0; gi < 3; gi++) { /* the third: span 7, dx at int32's bound (576 127^2 129) */
        const tc_geom *g = &geoms[gi < 2 ? gi : 1];
        int64_t *xq = rand_q(&r, tc_nx(g), 0), *wq = malloc((size_t)tc_nw(g) * sizeof *wq), *eq[2];
        for (int64_t i = 0; i < tc_nw(g); i++) wq[i] = 127;
        for (int p = 0; p < 2; p++) {
            eq[p] = malloc((size_t)tc_ny(g) * sizeof(int64_t));
            for (int64_t i = 0; i < tc_ny(g); i++) eq[p][i] = 127;
        }
        wg_conv_geom cg; /* int32 dx: 3x3 stride 1 pad 1 with o = 64 up to span 7 (hand-derived bound) */
        TR_FAIL_IF(!wg_conv_geom_init(&cg, g->n, g->h, g->w, g->c, g->o, g->kh, g->kw, g->stride, g->pad), "geom%s",
                   "");
        TR_FAIL_IF(wg_conv_s8_dx_fits_s32(&cg, 7) != (gi > 0) || wg_conv_s8_dx_fits_s32(&cg, 8),
                   "wg_conv_s8_dx_fits_s32 for pad %d", g->pad);
        const int ee[2] = {-4, gi < 2 ? -12 : -11};
        check_s8_backward(b, g, &ws, xq, -7, wq, -7, eq, ee, 2, true);
        free(eq[0]), free(eq[1]), free(xq), free(wq);
    }
    wg_conv_ws_free(&ws);
}

/* ---- int8, the threaded paths ----------------------------------------------------------
 * Geometries large enough for threads (rows x kdim >= WG_PAR_MIN), run with three of
 * them over an odd number of images (blocks split unevenly), through each path of
 * conv.c and conv_bwd.c: forward blocks (im2col, pointwise); backward-data as a convolution (stride 1,
 * square kernels, pad < kernel: 3x3, 5x5, 1x1, the 3x3 stem on one channel) and by
 * column GEMM and col2im (stride 2, a 1x3 kernel, pad >= kernel), with one part and
 * with two whose columns share a buffer (span 7), do not (span 9), or share one whose
 * pixel sums need int64 (span 8 with o = 64). */
static void test_s8_threaded(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0x7d};
    wg_conv_ws ws = {0};
    int threads = omp_get_max_threads();
    omp_set_num_threads(3);
    const tc_geom geoms[] = {
        tc_geom_make(9, 11, 13, 16, 24, 3, 3, 1, 1),  /* as a convolution */
        tc_geom_make(4, 12, 12, 6, 12, 5, 5, 1, 2),   /* 5x5 as a convolution */
        tc_geom_make(13, 9, 9, 32, 16, 1, 1, 1, 0),   /* pointwise */
        tc_geom_make(6, 28, 28, 1, 16, 3, 3, 1, 1),   /* the stem: one input channel */
        tc_geom_make(7, 20, 18, 8, 64, 3, 3, 2, 1),   /* stride 2: col2im */
        tc_geom_make(12, 15, 15, 48, 20, 1, 1, 2, 0), /* 1x1 stride 2: pixels no tap reads */
        tc_geom_make(8, 10, 11, 12, 10, 1, 3, 1, 1),  /* 1x3: col2im */
        tc_geom_make(7, 9, 10, 40, 9, 1, 1, 1, 1),    /* 1x1 padded: col2im */
    };
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const tc_geom *g = &geoms[gi];
        wg_conv_geom cg;
        TR_FAIL_IF(!wg_conv_geom_init(&cg, g->n, g->h, g->w, g->c, g->o, g->kh, g->kw, g->stride, g->pad),
                   "wg_conv_geom_init refused " GFMT, GARGS(g));
        TR_FAIL_IF(cg.rows * cg.kdim < WG_PAR_MIN, "test bug: " GFMT " is below WG_PAR_MIN", GARGS(g));
        int64_t *xq = rand_q(&r, tc_nx(g), 20), *wq = rand_q(&r, tc_nw(g), 0);
        /* forward */
        int64_t *yq = malloc((size_t)tc_ny(g) * sizeof *yq);
        wg_tensor x = tc_tensor(b, WG_I8, WG_LAYOUT_NHWC, g->n, g->h, g->w, g->c, -7, xq, NULL);
        wg_tensor w = tc_tensor(b, WG_I8, WG_LAYOUT_OHWI, g->o, g->kh, g->kw, g->c, -6, wq, NULL);
        wg_tensor y = tc_tensor(b, WG_I32, WG_LAYOUT_NHWC, g->n, g->oh, g->ow, g->o, 99, NULL, NULL);
        wg_conv_s8_forward(&cg, &x, &w, &y, &ws);
        tc_fwd_i64(g, xq, wq, yq);
        expect_q(&y, yq, tc_ny(g), -13, "s8 forward (threaded) y", g);
        wg_tensor_free(&x), wg_tensor_free(&w), wg_tensor_free(&y);
        free(yq);
        /* backward: one part, then two parts 7, 9 and 8 grids apart */
        const int spans[4] = {0, 7, 9, 8};
        for (int k = 0; k < 4; k++) {
            int nparts = k == 0 ? 1 : 2, ee[2] = {-12 + spans[k], -12};
            int64_t *eq[2];
            for (int p = 0; p < nparts; p++) eq[p] = rand_q(&r, tc_ny(g), 60);
            if (nparts == 2)
                for (int64_t i = 0; i < tc_ny(g); i++) eq[tr_next(&r) % 2][i] = 0; /* E2: one part per element */
            check_s8_backward(b, g, &ws, xq, -7, wq, -6, eq, ee, nparts, true);
            for (int p = 0; p < nparts; p++) free(eq[p]);
        }
        free(xq), free(wq);
    }
    omp_set_num_threads(threads);
    wg_conv_ws_free(&ws);
}

/* ---- int8, backward-weight's paths ----------------------------------------------------
 * Each geometry through wg_conv_s8_backward with 1, 2 and 3 threads, one and two error
 * parts (E2's flag split, 7 grids apart), against the reference. Odd batches, so that
 * blocks of images split unevenly. */
static void test_s8_backward_weight_paths(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xd3};
    wg_conv_ws ws = {0};
    int threads = omp_get_max_threads();
    const tc_geom geoms[] = {
        tc_geom_make(5, 12, 12, 16, 16, 3, 3, 1, 1), /* 16 channels, stride 1: rows 16 bytes apart */
        tc_geom_make(7, 13, 13, 16, 8, 3, 3, 1, 1),  /* the same, groups of four rows across pixel rows */
        tc_geom_make(5, 9, 9, 32, 12, 3, 3, 1, 1),   /* 32 channels: 96-byte runs */
        tc_geom_make(7, 14, 14, 16, 32, 3, 3, 2, 1), /* stride 2 */
        tc_geom_make(7, 28, 28, 1, 16, 3, 3, 1, 1),  /* the stem: 3-byte runs, im2col rows */
        tc_geom_make(3, 5, 5, 6, 5, 3, 1, 1, 1),     /* 3x1 on 6 channels: im2col rows (too small for threads) */
        tc_geom_make(15, 24, 24, 16, 32, 1, 1, 2, 0), /* 1x1 stride 2: x itself, one run */
        tc_geom_make(25, 8, 8, 24, 10, 1, 1, 1, 0),  /* pointwise */
        tc_geom_make(7, 9, 11, 20, 6, 1, 3, 1, 1),   /* 1x3: one 60-byte run */
        tc_geom_make(3, 7, 7, 64, 64, 3, 3, 1, 1),   /* 64 channels, 7 x 7: the last ResNet stage */
    };
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const tc_geom *g = &geoms[gi];
        int64_t rows = g->n * g->oh * g->ow, kdim = g->kh * g->kw * g->c;
        TR_FAIL_IF((rows * kdim < WG_PAR_MIN) != (gi == 5), "test bug: " GFMT " is %s WG_PAR_MIN", GARGS(g),
                   gi == 5 ? "above" : "below");
        int64_t *xq = rand_q(&r, tc_nx(g), 20), *wq = rand_q(&r, tc_nw(g), 0);
        for (int nth = 1; nth <= 3; nth++) {
            omp_set_num_threads(nth);
            for (int nparts = 1; nparts <= 2; nparts++) {
                int ee[2] = {-5, -12};
                int64_t *eq[2];
                for (int p = 0; p < nparts; p++) eq[p] = rand_q(&r, tc_ny(g), 50);
                if (nparts == 2)
                    for (int64_t i = 0; i < tc_ny(g); i++) eq[tr_next(&r) % 2][i] = 0;
                check_s8_backward(b, g, &ws, xq, -7, wq, -6, eq, ee, nparts, nth == 2);
                for (int p = 0; p < nparts; p++) free(eq[p]);
            }
        }
        free(xq), free(wq);
    }
    omp_set_num_threads(threads);
    wg_conv_ws_free(&ws);
}

/* Backward-weight's int32 sums at their bound: x and both error parts all 127, so every
 * product is 127^2 and a thread's int32 sums reach 127^2 * WG_GEMM_S8_MAX_K =
 * 2,114,060,288 exactly before they go to int64 (one more row would overflow). On one
 * thread: three images of 65,536 rows (the sums go to int64 after two); one image of
 * 131,769 rows (a block longer than the bound, split inside); then the three images on
 * two threads. */
static void test_s8_backward_weight_bound(void **state)
{
    wg_backend *b = *state;
    wg_conv_ws ws = {0};
    int threads = omp_get_max_threads();
    const tc_geom geoms[2] = {tc_geom_make(3, 256, 256, 1, 1, 1, 1, 1, 0), tc_geom_make(1, 363, 363, 1, 1, 1, 1, 1, 0)};
    for (int run = 0; run < 3; run++) {
        const tc_geom *g = &geoms[run == 1];
        omp_set_num_threads(run == 2 ? 2 : 1);
        int64_t *xq = malloc((size_t)tc_nx(g) * sizeof *xq), *wq = malloc((size_t)tc_nw(g) * sizeof *wq), *eq[2];
        for (int64_t i = 0; i < tc_nx(g); i++) xq[i] = 127;
        for (int64_t i = 0; i < tc_nw(g); i++) wq[i] = 127;
        for (int p = 0; p < 2; p++) {
            eq[p] = malloc((size_t)tc_ny(g) * sizeof(int64_t));
            for (int64_t i = 0; i < tc_ny(g); i++) eq[p][i] = 127;
        }
        const int ee[2] = {-5, -12};
        check_s8_backward(b, g, &ws, xq, -7, wq, -7, eq, ee, 2, false);
        free(eq[0]), free(eq[1]), free(xq), free(wq);
    }
    omp_set_num_threads(threads);
    wg_conv_ws_free(&ws);
}

/* ---- float32 -------------------------------------------------------------------------- */

static float *rand_f(tr_rng *r, int64_t n)
{
    float *f = malloc((size_t)n * sizeof *f + 1);
    for (int64_t i = 0; i < n; i++) f[i] = (float)tc_rand_unit(r);
    return f;
}

static double *to_d(const float *f, int64_t n, bool absolute)
{
    double *d = malloc((size_t)n * sizeof *d + 1);
    for (int64_t i = 0; i < n; i++) d[i] = absolute ? fabs((double)f[i]) : (double)f[i];
    return d;
}

/* |got - want| <= 1e-5 * sqrt(K) * mag: mag = sum |terms| of that output (the
 * condition-free scale), K = its number of terms. Recursive float summation stays
 * within (K+1) * 2^-24 * mag, which is below this for every K < 27,000. */
static void expect_close(const float *got, const double *want, const double *mag, int64_t n, int64_t terms,
                         double extra, const char *what, const tc_geom *g)
{
    double tol_rel = 1e-5 * sqrt((double)terms);
    for (int64_t i = 0; i < n; i++) {
        double tol = tol_rel * mag[i] + extra;
        TR_FAIL_IF(!(fabs((double)got[i] - want[i]) <= tol),
                   "%s[%" PRId64 "] = %.9g, expected %.17g (tolerance %.3g), " GFMT, what, i, (double)got[i], want[i],
                   tol, GARGS(g));
    }
}

static void test_f32_forward(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xf32f};
    wg_conv_ws ws = {0};
    for (int it = 0; it < 200; it++) {
        wg_conv_geom cg;
        tc_geom g = pick_geom(&r, it, &cg);
        int64_t nx = tc_nx(&g), nw = tc_nw(&g), ny = tc_ny(&g);
        float *xf = rand_f(&r, nx), *wf = rand_f(&r, nw);
        double *xd = to_d(xf, nx, false), *wd = to_d(wf, nw, false), *xa = to_d(xf, nx, true),
               *wa = to_d(wf, nw, true), *yd = malloc((size_t)ny * sizeof *yd), *ya = malloc((size_t)ny * sizeof *ya);
        tc_fwd_f64(&g, xd, wd, yd);
        tc_fwd_f64(&g, xa, wa, ya);
        wg_tensor x = tc_tensor(b, WG_F32, WG_LAYOUT_NHWC, g.n, g.h, g.w, g.c, 0, NULL, xf);
        wg_tensor w = tc_tensor(b, WG_F32, WG_LAYOUT_OHWI, g.o, g.kh, g.kw, g.c, 0, NULL, wf);
        wg_tensor y = tc_tensor(b, WG_F32, WG_LAYOUT_NHWC, g.n, g.oh, g.ow, g.o, 0, NULL, NULL);
        wg_conv_f32_forward(&cg, &x, &w, &y, &ws);
        float *yf = tc_get_f32(&y), *x2 = tc_get_f32(&x), *w2 = tc_get_f32(&w);
        expect_close(yf, yd, ya, ny, cg.kdim, 0.0, "f32 forward y", &g);
        TR_FAIL_IF(memcmp(x2, xf, (size_t)nx * sizeof(float)) != 0 || memcmp(w2, wf, (size_t)nw * sizeof(float)) != 0,
                   "f32 forward modified its inputs, " GFMT, GARGS(&g));
        wg_tensor_free(&x);
        wg_tensor_free(&w);
        wg_tensor_free(&y);
        free(xf), free(wf), free(xd), free(wd), free(xa), free(wa), free(yd), free(ya), free(yf), free(x2), free(w2);
    }
    wg_conv_ws_free(&ws);
}

/* L(x, w) = sum_j r_j * conv(x, w)_j, in double. */
static double loss(const tc_geom *g, const double *x, const double *w, const double *rr, double *y)
{
    tc_fwd_f64(g, x, w, y);
    double l = 0;
    for (int64_t j = 0; j < tc_ny(g); j++) l += rr[j] * y[j];
    return l;
}

/* dL/dv_i by (L(v_i + h) - L(v_i - h)) / 2h, h = 2^-4 (v +- h exact in double: v is a
 * float in [-1, 1]). L is linear in each coordinate, so the quotient is the derivative
 * up to the rounding of L: at most n_L * 2^-53 * L_abs / h, n_L the number of terms
 * of L and L_abs = sum |r y| terms; that bound is added to the tolerance. */
static void check_fd(const tc_geom *g, tr_rng *r, double *x, double *w, const double *rr, const float *grad,
                     const double *gmag, int64_t terms, bool wrt_x, double l_abs, const char *what)
{
    const double h = 0x1p-4;
    int64_t n = wrt_x ? tc_nx(g) : tc_nw(g), n_l = tc_ny(g) * g->kh * g->kw * g->c;
    double *y = malloc((size_t)tc_ny(g) * sizeof *y), *v = wrt_x ? x : w;
    double noise = 4.0 * (double)(n_l + 1) * DBL_EPSILON * l_abs / (2 * h);
    for (int s = 0; s < 12; s++) {
        int64_t i = s == 0 ? 0 : s == 1 ? n - 1 : tr_range(r, 0, n - 1);
        double v0 = v[i];
        v[i] = v0 + h;
        double lp = loss(g, x, w, rr, y);
        v[i] = v0 - h;
        double lm = loss(g, x, w, rr, y);
        v[i] = v0;
        double fd = (lp - lm) / (2 * h);
        expect_close(&grad[i], &fd, &gmag[i], 1, terms, noise, what, g);
    }
    free(y);
}

static void test_f32_backward(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xbf32};
    wg_conv_ws ws = {0};
    for (int it = 0; it < 80; it++) {
        wg_conv_geom cg;
        tc_geom g = pick_geom(&r, it, &cg);
        int64_t nx = tc_nx(&g), nw = tc_nw(&g), ny = tc_ny(&g);
        bool with_dx = it % 6 != 5;
        float *xf = rand_f(&r, nx), *wf = rand_f(&r, nw), *rf = rand_f(&r, ny);
        double *xd = to_d(xf, nx, false), *wd = to_d(wf, nw, false), *rd = to_d(rf, ny, false);
        double *xa = to_d(xf, nx, true), *wa = to_d(wf, nw, true), *ra = to_d(rf, ny, true);
        double *dxa = malloc((size_t)nx * sizeof(double)), *dwa = malloc((size_t)nw * sizeof(double)),
               *ya = malloc((size_t)ny * sizeof(double));
        tc_bwd_f64(&g, xa, wa, ra, dxa, dwa); /* sum |terms| of each gradient element */
        double l_abs = loss(&g, xa, wa, ra, ya);
        wg_tensor x = tc_tensor(b, WG_F32, WG_LAYOUT_NHWC, g.n, g.h, g.w, g.c, 0, NULL, xf);
        wg_tensor w = tc_tensor(b, WG_F32, WG_LAYOUT_OHWI, g.o, g.kh, g.kw, g.c, 0, NULL, wf);
        wg_tensor dy = tc_tensor(b, WG_F32, WG_LAYOUT_NHWC, g.n, g.oh, g.ow, g.o, 0, NULL, rf);
        wg_tensor dw = tc_tensor(b, WG_F32, WG_LAYOUT_OHWI, g.o, g.kh, g.kw, g.c, 0, NULL, NULL), dx = {0};
        if (with_dx) dx = tc_tensor(b, WG_F32, WG_LAYOUT_NHWC, g.n, g.h, g.w, g.c, 0, NULL, NULL);
        wg_conv_f32_backward(&cg, &x, &w, &dy, with_dx ? &dx : NULL, &dw, &ws);
        float *dwf = tc_get_f32(&dw), *dxf = with_dx ? tc_get_f32(&dx) : NULL;
        if (with_dx) check_fd(&g, &r, xd, wd, rd, dxf, dxa, g.o * g.kh * g.kw, true, l_abs, "f32 backward dx");
        check_fd(&g, &r, xd, wd, rd, dwf, dwa, cg.rows, false, l_abs, "f32 backward dw");
        float *x2 = tc_get_f32(&x), *w2 = tc_get_f32(&w), *r2 = tc_get_f32(&dy);
        TR_FAIL_IF(memcmp(x2, xf, (size_t)nx * sizeof(float)) != 0 || memcmp(w2, wf, (size_t)nw * sizeof(float)) != 0 ||
                       memcmp(r2, rf, (size_t)ny * sizeof(float)) != 0,
                   "f32 backward modified its inputs, " GFMT, GARGS(&g));
        wg_tensor_free(&x), wg_tensor_free(&w), wg_tensor_free(&dy), wg_tensor_free(&dw), wg_tensor_free(&dx);
        free(xf), free(wf), free(rf), free(xd), free(wd), free(rd), free(xa), free(wa), free(ra);
        free(dxa), free(dwa), free(ya), free(dwf), free(dxf), free(x2), free(w2), free(r2);
    }
    wg_conv_ws_free(&ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geom),
        cmocka_unit_test(test_s8_forward),
        cmocka_unit_test(test_s8_backward_one_part),
        cmocka_unit_test(test_s8_backward_two_parts),
        cmocka_unit_test(test_s8_backward_chunked),
        cmocka_unit_test(test_s8_backward_extremes),
        cmocka_unit_test(test_s8_threaded),
        cmocka_unit_test(test_s8_backward_weight_paths),
        cmocka_unit_test(test_s8_backward_weight_bound),
        cmocka_unit_test(test_f32_forward),
        cmocka_unit_test(test_f32_backward),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
