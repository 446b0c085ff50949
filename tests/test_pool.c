/* test_pool.c: max pooling (pool.h) on the CPU backend.
 *
 * Every result against a scalar reference written here: for each output it walks the
 * full K x K window in row-major order, treats a position outside the input as
 * -infinity (never a winner) and keeps the first strict maximum; the forward is the
 * value there and the backward adds each output error at that position in 128-bit
 * integers, clamped once to +-INT64_MAX. int8 mode (every integer container of the
 * input and of the error): forward, backward and exponents bit for bit, on hand-made
 * cases (ties, negatives, padding at the borders, four windows summing into one
 * position past 2^63), the stem's 7x7 -> 4x4 and 112x112 -> 56x56, and random
 * geometries. float32: the forward bit for bit (a max is exact); the backward against
 * central finite differences of a double loss, on inputs without ties, within
 * TOL_F32_FD. Results with 1 and 2 threads are identical. Inputs come back unchanged,
 * and bad shapes or containers abort. */
#define _POSIX_C_SOURCE 200809L /* fork, waitpid: one test checks for an internal-error abort */

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "pool.h"
#include "tensor.h"

#include "test_ref.h"

#include "test_layers_ref.h"

/* |dx - fd| <= TOL_F32_FD * max(1, |fd|). The test's values make both sides exact
 * (inputs on 2^-6, steps 2^-10, errors on 2^-12: at most 4 of them add up in float),
 * so this only absorbs what a future change of the float path might introduce. */
#define TOL_F32_FD 1e-6

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

/* ---- the reference ---- */

typedef struct pg {
    int64_t n, h, w, c;
    int k, s, p;
    int64_t oh, ow;
} pg;

static pg pg_make(int64_t n, int64_t h, int64_t w, int64_t c, int k, int s, int p)
{
    pg g = {n, h, w, c, k, s, p, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1};
    return g;
}

static int64_t pg_nin(pg g) { return g.n * g.h * g.w * g.c; }
static int64_t pg_nout(pg g) { return g.n * g.oh * g.ow * g.c; }

static wg_maxpool_geom pg_geom(pg g)
{
    wg_maxpool_geom m;
    TR_FAIL_IF(!wg_maxpool_geom_init(&m, g.n, g.h, g.w, g.c, g.k, g.s, g.p),
               "geometry %" PRId64 "x%" PRId64 "x%" PRId64 "x%" PRId64 " k %d s %d p %d rejected", g.n, g.h, g.w, g.c,
               g.k, g.s, g.p);
    TR_EXPECT_I64(g.oh, m.oh, "output height of H %" PRId64 ", k %d, s %d, p %d", g.h, g.k, g.s, g.p);
    TR_EXPECT_I64(g.ow, m.ow, "output width of W %" PRId64 ", k %d, s %d, p %d", g.w, g.k, g.s, g.p);
    return m;
}

/* arg[o]: the flat input index (NHWC) of output o's winner; v: the input as long double
 * (exact for every int64 and float). */
static void ref_argmax(pg g, const long double *v, int64_t *arg)
{
    for (int64_t b = 0; b < g.n; b++)
        for (int64_t oy = 0; oy < g.oh; oy++)
            for (int64_t ox = 0; ox < g.ow; ox++)
                for (int64_t ch = 0; ch < g.c; ch++) {
                    bool have = false; /* nothing yet: -infinity */
                    long double best = 0;
                    int64_t at = -1;
                    for (int ky = 0; ky < g.k; ky++)
                        for (int kx = 0; kx < g.k; kx++) {
                            int64_t iy = oy * g.s - g.p + ky, ix = ox * g.s - g.p + kx;
                            if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue; /* padding */
                            int64_t i = ((b * g.h + iy) * g.w + ix) * g.c + ch;
                            if (!have || v[i] > best) have = true, best = v[i], at = i;
                        }
                    TR_FAIL_IF(!have, "reference: a window of padding only%s", "");
                    arg[((b * g.oh + oy) * g.ow + ox) * g.c + ch] = at;
                }
}

/* ---- int8 mode ---- */

/* Forward and backward of integer x (container xt, exponent ex) with errors dy
 * (container dt, exponent ed) against the reference, bit for bit. */
static void check_int(wg_backend *be, pg g, wg_dtype xt, const int64_t *x, int ex, wg_dtype dt, const int64_t *dy,
                      int ed, const char *what)
{
    wg_maxpool_geom m = pg_geom(g);
    int64_t nin = pg_nin(g), nout = pg_nout(g), *arg = malloc((size_t)nout * 8), *junk = malloc((size_t)nin * 8);
    long double *v = malloc((size_t)nin * sizeof *v);
    i128 *acc = calloc((size_t)nin, sizeof *acc);
    for (int64_t i = 0; i < nin; i++) v[i] = (long double)x[i], junk[i] = (i * 7919) % 1000 - 500;
    ref_argmax(g, v, arg);

    wg_tensor tx = tl_nhwc(be, xt, g.n, g.h, g.w, g.c, ex, x, NULL),
              ty = tl_nhwc(be, xt, g.n, g.oh, g.ow, g.c, 99, NULL, NULL),
              td = tl_nhwc(be, dt, g.n, g.oh, g.ow, g.c, ed, dy, NULL),
              tdx = tl_nhwc(be, WG_I64, g.n, g.h, g.w, g.c, 99, junk, NULL);
    wg_maxpool_int_forward(&m, &tx, &ty);
    TR_EXPECT_I64(ex, ty.exp, "%s: forward exponent (%s)", what, tr_dt(xt));
    int64_t *y = tr_tensor_get(&ty);
    for (int64_t o = 0; o < nout; o++)
        TR_EXPECT_I64(x[arg[o]], y[o],
                      "%s: forward %s, %" PRId64 "x%" PRId64 "x%" PRId64 "x%" PRId64 " k %d s %d p %d, output %" PRId64,
                      what, tr_dt(xt), g.n, g.h, g.w, g.c, g.k, g.s, g.p, o);

    wg_maxpool_int_backward(&m, &tx, &td, &tdx);
    TR_EXPECT_I64(ed, tdx.exp, "%s: backward exponent (%s errors)", what, tr_dt(dt));
    for (int64_t o = 0; o < nout; o++) acc[arg[o]] += dy[o];
    int64_t *dx = tr_tensor_get(&tdx);
    for (int64_t i = 0; i < nin; i++)
        TR_EXPECT_I64((int64_t)ref_clamp128(acc[i], INT64_MAX), dx[i],
                      "%s: backward %s x, %s errors, %" PRId64 "x%" PRId64 "x%" PRId64 "x%" PRId64
                      " k %d s %d p %d, input %" PRId64,
                      what, tr_dt(xt), tr_dt(dt), g.n, g.h, g.w, g.c, g.k, g.s, g.p, i);
    tl_expect_unchanged(&tx, x, ex, what);
    tl_expect_unchanged(&td, dy, ed, what);
    free(arg), free(junk), free(v), free(acc), free(y), free(dx);
    wg_tensor_free(&tx), wg_tensor_free(&ty), wg_tensor_free(&td), wg_tensor_free(&tdx);
}

static const wg_dtype int_dts[] = {WG_I8, WG_I16, WG_I32, WG_I64};

/* 4x4, two channels, the stem's 3x3 stride 2 pad 1 (2x2 outputs), worked by hand.
 * Channel 0 (row-major)       Channel 1 (all negative: zero padding would win)
 *    1  5  5  0                  -11 -15 -15 -10
 *   -3  2  5 -1                   -7 -12 -15  -9
 *    7  7  0  4                  -17 -17 -10 -14
 *   -2  7  6  4                   -8 -17 -16 -14
 * Windows: rows/columns 0-1 or 1-3. Channel 0: 5 at (0,1) twice (the second window ties
 * with (0,2) and (1,2): the first wins), 7 at (2,0) (ties (2,1), (3,1)), 7 at (2,1)
 * (ties (3,1)). Channel 1: -7 at (1,0) twice, -9 at (1,3) twice. */
static void test_maxpool_int_hand(void **state)
{
    wg_backend *be = *state;
    const int64_t c0[16] = {1, 5, 5, 0, -3, 2, 5, -1, 7, 7, 0, 4, -2, 7, 6, 4},
                  c1[16] = {-11, -15, -15, -10, -7, -12, -15, -9, -17, -17, -10, -14, -8, -17, -16, -14};
    const int64_t y0[4] = {5, 5, 7, 7}, y1[4] = {-7, -9, -7, -9};
    const int64_t d0[4] = {10, 20, 30, 40}, d1[4] = {1, 2, 3, -4};
    int64_t dx0[16] = {0}, dx1[16] = {0};
    dx0[1] = 10 + 20, dx0[8] = 30, dx0[9] = 40; /* (0,1), (2,0), (2,1) */
    dx1[4] = 1 + 3, dx1[7] = 2 - 4;             /* (1,0), (1,3) */
    int64_t x[32], dy[8], wy[8], wdx[32];
    for (int i = 0; i < 16; i++) x[2 * i] = c0[i], x[2 * i + 1] = c1[i], wdx[2 * i] = dx0[i], wdx[2 * i + 1] = dx1[i];
    for (int i = 0; i < 4; i++) dy[2 * i] = d0[i], dy[2 * i + 1] = d1[i], wy[2 * i] = y0[i], wy[2 * i + 1] = y1[i];
    pg g = pg_make(1, 4, 4, 2, 3, 2, 1);
    wg_maxpool_geom m = pg_geom(g);
    for (int a = 0; a < 4; a++)
        for (int d = 0; d < 4; d++) {
            wg_dtype xt = int_dts[a], dt = int_dts[d];
            wg_tensor tx = tl_nhwc(be, xt, 1, 4, 4, 2, -12, x, NULL), ty = tl_nhwc(be, xt, 1, 2, 2, 2, 0, NULL, NULL),
                      td = tl_nhwc(be, dt, 1, 2, 2, 2, -30, dy, NULL),
                      tdx = tl_nhwc(be, WG_I64, 1, 4, 4, 2, 0, NULL, NULL);
            wg_maxpool_int_forward(&m, &tx, &ty);
            tr_expect_q(&ty, wy, 8, -12, "hand forward");
            wg_maxpool_int_backward(&m, &tx, &td, &tdx);
            tr_expect_q(&tdx, wdx, 32, -30, "hand backward");
            wg_tensor_free(&tx), wg_tensor_free(&ty), wg_tensor_free(&td), wg_tensor_free(&tdx);
            check_int(be, g, xt, x, -12, dt, dy, -30, "hand case");
        }
}

/* All equal: every window's first real position wins (row max(0, 2 oy - 1), column
 * max(0, 2 ox - 1) for the stem's pool), checked by hand for 5x5. */
static void test_maxpool_int_all_ties(void **state)
{
    wg_backend *be = *state;
    pg g = pg_make(1, 5, 5, 1, 3, 2, 1); /* 3x3 outputs; windows start at 0, 1, 3 */
    int64_t x[25], dy[9], want[25] = {0};
    for (int i = 0; i < 25; i++) x[i] = -5;
    for (int i = 0; i < 9; i++) dy[i] = i + 1;
    const int start[3] = {0, 1, 3};
    for (int oy = 0; oy < 3; oy++)
        for (int ox = 0; ox < 3; ox++) want[start[oy] * 5 + start[ox]] += dy[oy * 3 + ox];
    wg_maxpool_geom m = pg_geom(g);
    wg_tensor tx = tl_nhwc(be, WG_I8, 1, 5, 5, 1, 0, x, NULL), td = tl_nhwc(be, WG_I32, 1, 3, 3, 1, 4, dy, NULL),
              tdx = tl_nhwc(be, WG_I64, 1, 5, 5, 1, 0, NULL, NULL);
    wg_maxpool_int_backward(&m, &tx, &td, &tdx);
    tr_expect_q(&tdx, want, 25, 4, "all ties backward");
    wg_tensor_free(&tx), wg_tensor_free(&td), wg_tensor_free(&tdx);
    for (int d = 0; d < 4; d++) check_int(be, g, WG_I8, x, 0, int_dts[d], dy, 4, "all ties");
}

/* Four windows with one winner at (1, 1): sums past 2^63 are exact, then clamped once
 * (MAX + MAX - MAX is MAX, not a saturated running sum's 0). */
static void test_maxpool_int_wide_sums(void **state)
{
    wg_backend *be = *state;
    pg g = pg_make(1, 4, 4, 1, 3, 2, 1);
    int64_t x[16] = {0};
    x[5] = 100;
    const int64_t M = INT64_MAX;
    const int64_t cases[][4] = {{M, M, -M, 5}, {M, M, -M, -M}, {M, -M, M, -5}, {M, M, M, M}, {-M, -M, -M, 7},
                                {INT64_MIN, 1, 0, 0}, {INT64_MIN, -1, 0, 0}, {M / 4, M / 4, M / 4, M / 4},
                                {M / 4 + 1, M / 4, M / 4, M / 4 + 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        i128 s = (i128)cases[i][0] + cases[i][1] + cases[i][2] + cases[i][3];
        int64_t want[16] = {0};
        want[5] = (int64_t)ref_clamp128(s, INT64_MAX);
        wg_maxpool_geom m = pg_geom(g);
        wg_tensor tx = tl_nhwc(be, WG_I32, 1, 4, 4, 1, 0, x, NULL),
                  td = tl_nhwc(be, WG_I64, 1, 2, 2, 1, -40, cases[i], NULL),
                  tdx = tl_nhwc(be, WG_I64, 1, 4, 4, 1, 0, NULL, NULL);
        wg_maxpool_int_backward(&m, &tx, &td, &tdx);
        tr_expect_q(&tdx, want, 16, -40, "sums past 2^63");
        wg_tensor_free(&tx), wg_tensor_free(&td), wg_tensor_free(&tdx);
        check_int(be, g, WG_I32, x, 0, WG_I64, cases[i], -40, "sums past 2^63");
    }
}

static void fill_x(tr_rng *r, int64_t *x, int64_t n, wg_dtype xt, int mode)
{
    int64_t bound = tr_cbound(xt);
    for (int64_t i = 0; i < n; i++) switch (mode) {
        case 0: x[i] = tr_range(r, -bound, bound); break;      /* anything in the container */
        case 1: x[i] = tr_range(r, -2, 2); break;              /* many ties */
        case 2: x[i] = tr_range(r, -bound, -bound + 3); break; /* all negative, near the bound */
        default: x[i] = bound; break;                          /* all equal */
        }
}

static void fill_dy(tr_rng *r, int64_t *dy, int64_t n, wg_dtype dt)
{
    int mag = (int)tr_range(r, 0, tr_cbits(dt) - 1);
    tr_fill(r, dy, n, dt, mag);
    if (dt == WG_I64 && tr_next(r) % 4 == 0) /* the 128-bit path, with the extremes */
        for (int64_t i = 0; i < n; i += 3) dy[i] = tr_i64_any(r);
}

/* The stem's shapes: 7x7 -> 4x4 and 112x112 -> 56x56 (a few channels; threads in use). */
static void test_maxpool_int_stem(void **state)
{
    wg_backend *be = *state;
    tr_rng r = {0x5731};
    const pg gs[] = {pg_make(2, 7, 7, 3, 3, 2, 1), pg_make(2, 112, 112, 3, 3, 2, 1), pg_make(1, 112, 112, 17, 3, 2, 1)};
    TR_FAIL_IF(gs[0].oh != 4 || gs[0].ow != 4 || gs[1].oh != 56 || gs[1].ow != 56, "stem sizes%s", "");
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++)
        for (int a = 0; a < 4; a++) {
            pg g = gs[gi];
            wg_dtype xt = int_dts[a], dt = int_dts[(a + gi) % 4];
            int64_t *x = malloc((size_t)pg_nin(g) * 8), *dy = malloc((size_t)pg_nout(g) * 8);
            fill_x(&r, x, pg_nin(g), xt, (int)((a + gi) % 3));
            fill_dy(&r, dy, pg_nout(g), dt);
            check_int(be, g, xt, x, (int)tr_range(&r, -30, 0), dt, dy, (int)tr_range(&r, -60, 0), "stem shape");
            free(x), free(dy);
        }
}

/* Random geometries (any K, stride, pad < K; channel counts across the 16-channel
 * blocks of the backward), containers and values. */
static void test_maxpool_int_random(void **state)
{
    wg_backend *be = *state;
    tr_rng r = {0x3a9001};
    for (int it = 0; it < 400; it++) {
        int k = (int)tr_range(&r, 1, 4), s = (int)tr_range(&r, 1, 3), p = (int)tr_range(&r, 0, k - 1);
        int64_t h = tr_range(&r, 1, 11), w = tr_range(&r, 1, 11);
        if (h + 2 * p < k || w + 2 * p < k) continue;
        pg g = pg_make(tr_range(&r, 1, 3), h, w, tr_range(&r, 1, 35), k, s, p);
        wg_dtype xt = int_dts[tr_next(&r) % 4], dt = int_dts[tr_next(&r) % 4];
        int64_t *x = malloc((size_t)pg_nin(g) * 8), *dy = malloc((size_t)pg_nout(g) * 8);
        fill_x(&r, x, pg_nin(g), xt, (int)(tr_next(&r) % 4));
        fill_dy(&r, dy, pg_nout(g), dt);
        check_int(be, g, xt, x, (int)tr_range(&r, -30, 5), dt, dy, (int)tr_range(&r, -60, 5), "random");
        free(x), free(dy);
    }
}

/* ---- float32 ---- */

/* L = sum_o r_o * maxpool(x)_o in double, by the reference. */
static double f32_loss(pg g, const long double *v, const float *rr, int64_t *arg)
{
    ref_argmax(g, v, arg);
    double l = 0;
    for (int64_t o = 0; o < pg_nout(g); o++) l += (double)rr[o] * (double)v[arg[o]];
    return l;
}

static void test_maxpool_f32(void **state)
{
    wg_backend *be = *state;
    tr_rng r = {0xf32f32};
    const double h = 1.0 / 1024; /* distinct inputs lie 2^-6 apart: no winner changes */
    for (int it = 0; it < 60; it++) {
        int k = it % 3 == 0 ? 3 : (int)tr_range(&r, 1, 4), s = it % 3 == 0 ? 2 : (int)tr_range(&r, 1, 3),
            p = it % 3 == 0 ? 1 : (int)tr_range(&r, 0, k - 1);
        int64_t hh = tr_range(&r, 1, 9), ww = tr_range(&r, 1, 9);
        if (hh + 2 * p < k || ww + 2 * p < k) continue;
        pg g = pg_make(tr_range(&r, 1, 2), hh, ww, tr_range(&r, 1, 4), k, s, p);
        int64_t nin = pg_nin(g), nout = pg_nout(g), *arg = malloc((size_t)nout * 8);
        float *x = malloc((size_t)nin * 4), *rr = malloc((size_t)nout * 4);
        long double *v = malloc((size_t)nin * sizeof *v);
        for (int64_t i = 0; i < nin; i++) x[i] = (float)i; /* a shuffle of distinct values */
        for (int64_t i = nin - 1; i > 0; i--) {
            int64_t j = tr_range(&r, 0, i);
            float t = x[i];
            x[i] = x[j], x[j] = t;
        }
        for (int64_t i = 0; i < nin; i++) x[i] = (x[i] - (float)(nin / 2)) / 64.0f, v[i] = x[i];
        for (int64_t i = 0; i < nout; i++) rr[i] = tl_rand_f(&r, 1.0);
        wg_maxpool_geom m = pg_geom(g);
        wg_tensor tx = tl_nhwc(be, WG_F32, g.n, g.h, g.w, g.c, 0, NULL, x),
                  ty = tl_nhwc(be, WG_F32, g.n, g.oh, g.ow, g.c, 0, NULL, NULL),
                  td = tl_nhwc(be, WG_F32, g.n, g.oh, g.ow, g.c, 0, NULL, rr),
                  tdx = tl_nhwc(be, WG_F32, g.n, g.h, g.w, g.c, 0, NULL, x); /* overwritten */
        wg_maxpool_f32_forward(&m, &tx, &ty);
        wg_maxpool_f32_backward(&m, &tx, &td, &tdx);
        float *y = tl_get_f32(&ty), *dx = tl_get_f32(&tdx), *x2 = tl_get_f32(&tx);
        ref_argmax(g, v, arg);
        for (int64_t o = 0; o < nout; o++)
            TR_FAIL_IF(y[o] != x[arg[o]], "f32 forward output %" PRId64 ": %g, max %g", o, (double)y[o],
                       (double)x[arg[o]]);
        for (int64_t i = 0; i < nin; i++) {
            long double keep = v[i];
            v[i] = keep + h;
            double lp = f32_loss(g, v, rr, arg);
            v[i] = keep - h;
            double fd = (lp - f32_loss(g, v, rr, arg)) / (2 * h);
            v[i] = keep;
            TR_FAIL_IF(fabs(dx[i] - fd) > TOL_F32_FD * (fabs(fd) > 1 ? fabs(fd) : 1),
                       "f32 backward at %" PRId64 " (k %d s %d p %d): %.9g, finite difference %.9g", i, k, s, p,
                       (double)dx[i], fd);
        }
        TR_FAIL_IF(memcmp(x2, x, (size_t)nin * 4) != 0, "f32 max pool modified its input%s", "");
        free(arg), free(x), free(rr), free(v), free(y), free(dx), free(x2);
        wg_tensor_free(&tx), wg_tensor_free(&ty), wg_tensor_free(&td), wg_tensor_free(&tdx);
    }
}

/* float32 ties and padding: the same winners as the integer path (first in row-major
 * order), so the error of a tied window lands where the integer backward puts it. */
static void test_maxpool_f32_ties(void **state)
{
    wg_backend *be = *state;
    tr_rng r = {0x71e5};
    pg g = pg_make(2, 9, 8, 5, 3, 2, 1);
    int64_t nin = pg_nin(g), nout = pg_nout(g), *arg = malloc((size_t)nout * 8);
    float *x = malloc((size_t)nin * 4), *rr = malloc((size_t)nout * 4);
    long double *v = malloc((size_t)nin * sizeof *v), *want = calloc((size_t)nin, sizeof *want);
    for (int64_t i = 0; i < nin; i++) x[i] = (float)tr_range(&r, -3, -1), v[i] = x[i]; /* negative, many ties */
    for (int64_t i = 0; i < nout; i++) rr[i] = tl_rand_f(&r, 1.0);
    ref_argmax(g, v, arg);
    for (int64_t o = 0; o < nout; o++) want[arg[o]] += rr[o];
    wg_maxpool_geom m = pg_geom(g);
    wg_tensor tx = tl_nhwc(be, WG_F32, g.n, g.h, g.w, g.c, 0, NULL, x),
              ty = tl_nhwc(be, WG_F32, g.n, g.oh, g.ow, g.c, 0, NULL, NULL),
              td = tl_nhwc(be, WG_F32, g.n, g.oh, g.ow, g.c, 0, NULL, rr),
              tdx = tl_nhwc(be, WG_F32, g.n, g.h, g.w, g.c, 0, NULL, NULL);
    wg_maxpool_f32_forward(&m, &tx, &ty);
    wg_maxpool_f32_backward(&m, &tx, &td, &tdx);
    float *y = tl_get_f32(&ty), *dx = tl_get_f32(&tdx);
    for (int64_t o = 0; o < nout; o++) TR_FAIL_IF(y[o] != x[arg[o]], "f32 tie forward at %" PRId64, o);
    /* sums of at most 4 values on 2^-12 in [-1, 1]: exact in float */
    for (int64_t i = 0; i < nin; i++)
        TR_FAIL_IF((long double)dx[i] != want[i], "f32 tie backward at %" PRId64 ": %g, want %Lg", i, (double)dx[i],
                   want[i]);
    free(arg), free(x), free(rr), free(v), free(want), free(y), free(dx);
    wg_tensor_free(&tx), wg_tensor_free(&ty), wg_tensor_free(&td), wg_tensor_free(&tdx);
}

/* ---- threads ---- */

typedef struct mp_out {
    int64_t *y, *dx;
    float *fy, *fdx;
} mp_out;

static mp_out run_all(wg_backend *be, pg g, const int64_t *x, const int64_t *dy, const float *fx, const float *fdy)
{
    wg_maxpool_geom m = pg_geom(g);
    wg_tensor tx = tl_nhwc(be, WG_I32, g.n, g.h, g.w, g.c, -9, x, NULL),
              ty = tl_nhwc(be, WG_I32, g.n, g.oh, g.ow, g.c, 0, NULL, NULL),
              td = tl_nhwc(be, WG_I64, g.n, g.oh, g.ow, g.c, -20, dy, NULL),
              tdx = tl_nhwc(be, WG_I64, g.n, g.h, g.w, g.c, 0, NULL, NULL),
              fx_ = tl_nhwc(be, WG_F32, g.n, g.h, g.w, g.c, 0, NULL, fx),
              fy_ = tl_nhwc(be, WG_F32, g.n, g.oh, g.ow, g.c, 0, NULL, NULL),
              fd_ = tl_nhwc(be, WG_F32, g.n, g.oh, g.ow, g.c, 0, NULL, fdy),
              fdx_ = tl_nhwc(be, WG_F32, g.n, g.h, g.w, g.c, 0, NULL, NULL);
    wg_maxpool_int_forward(&m, &tx, &ty);
    wg_maxpool_int_backward(&m, &tx, &td, &tdx);
    wg_maxpool_f32_forward(&m, &fx_, &fy_);
    wg_maxpool_f32_backward(&m, &fx_, &fd_, &fdx_);
    mp_out o = {tr_tensor_get(&ty), tr_tensor_get(&tdx), tl_get_f32(&fy_), tl_get_f32(&fdx_)};
    wg_tensor_free(&tx), wg_tensor_free(&ty), wg_tensor_free(&td), wg_tensor_free(&tdx);
    wg_tensor_free(&fx_), wg_tensor_free(&fy_), wg_tensor_free(&fd_), wg_tensor_free(&fdx_);
    return o;
}

/* 1 and 2 threads give the same bits (ties and overlapping windows included; 20
 * channels: a full and a partial block of the backward). */
static void test_maxpool_threads(void **state)
{
    wg_backend *be = *state;
    tr_rng r = {0x7417};
    const pg gs[] = {pg_make(3, 112, 112, 20, 3, 2, 1), pg_make(1, 112, 112, 64, 3, 2, 1)};
    int saved = omp_get_max_threads();
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++) {
        pg g = gs[gi];
        int64_t nin = pg_nin(g), nout = pg_nout(g), *x = malloc((size_t)nin * 8), *dy = malloc((size_t)nout * 8);
        float *fx = malloc((size_t)nin * 4), *fdy = malloc((size_t)nout * 4);
        for (int64_t i = 0; i < nin; i++) x[i] = tr_range(&r, -3, 3), fx[i] = (float)x[i];
        for (int64_t i = 0; i < nout; i++) dy[i] = tr_i64_mag(&r, 40), fdy[i] = tl_rand_f(&r, 1.0);
        omp_set_num_threads(1);
        mp_out a = run_all(be, g, x, dy, fx, fdy);
        omp_set_num_threads(2);
        mp_out b = run_all(be, g, x, dy, fx, fdy);
        omp_set_num_threads(saved);
        TR_FAIL_IF(memcmp(a.y, b.y, (size_t)nout * 8) != 0, "int forward differs with 2 threads%s", "");
        TR_FAIL_IF(memcmp(a.dx, b.dx, (size_t)nin * 8) != 0, "int backward differs with 2 threads%s", "");
        TR_FAIL_IF(memcmp(a.fy, b.fy, (size_t)nout * 4) != 0, "f32 forward differs with 2 threads%s", "");
        TR_FAIL_IF(memcmp(a.fdx, b.fdx, (size_t)nin * 4) != 0, "f32 backward differs with 2 threads%s", "");
        free(a.y), free(a.dx), free(a.fy), free(a.fdx), free(b.y), free(b.dx), free(b.fy), free(b.fdx);
        free(x), free(dy), free(fx), free(fdy);
    }
}

/* ---- geometry and bad input ---- */

static void test_maxpool_geom(void **state)
{
    (void)state;
    wg_maxpool_geom m;
    TR_FAIL_IF(!wg_maxpool_geom_init(&m, 64, 112, 112, 64, WG_MAXPOOL_STEM_K, WG_MAXPOOL_STEM_STRIDE,
                                     WG_MAXPOOL_STEM_PAD) ||
                   m.oh != 56 || m.ow != 56,
               "the ImageNet stem: 112x112 -> 56x56%s", "");
    TR_FAIL_IF(!wg_maxpool_geom_init(&m, 1, 7, 5, 1, 3, 2, 1) || m.oh != 4 || m.ow != 3, "7x5 -> 4x3%s", "");
    TR_FAIL_IF(!wg_maxpool_geom_init(&m, 1, 1, 1, 1, 3, 2, 1) || m.oh != 1 || m.ow != 1, "1x1 -> 1x1%s", "");
    TR_FAIL_IF(!wg_maxpool_geom_init(&m, 1, 2, 2, 1, 3, 1, 2) || m.oh != 4, "2x2, k 3 s 1 p 2 -> 4x4%s", "");
    const int bad[][7] = {{0, 4, 4, 1, 3, 2, 1}, {1, 0, 4, 1, 3, 2, 1}, {1, 4, 4, 0, 3, 2, 1}, {1, 4, 4, 1, 0, 2, 0},
                          {1, 4, 4, 1, 3, 0, 1}, {1, 4, 4, 1, 3, 2, -1}, {1, 4, 4, 1, 3, 2, 3}, {1, 1, 4, 1, 4, 1, 1}};
    fprintf(stderr, "(the next %d messages are expected)\n", (int)(sizeof bad / sizeof bad[0]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        TR_FAIL_IF(wg_maxpool_geom_init(&m, bad[i][0], bad[i][1], bad[i][2], bad[i][3], bad[i][4], bad[i][5],
                                        bad[i][6]),
                   "bad geometry %zu accepted", i);
}

/* Each case runs in a child, which must die by SIGABRT (WG_ASSERT). */
static void run_bad(wg_backend *be, int which)
{
    pg g = pg_make(1, 4, 4, 2, 3, 2, 1);
    wg_maxpool_geom m = pg_geom(g);
    wg_tensor x32 = tl_nhwc(be, WG_I32, 1, 4, 4, 2, 0, NULL, NULL),
              y32 = tl_nhwc(be, WG_I32, 1, 2, 2, 2, 0, NULL, NULL),
              y8 = tl_nhwc(be, WG_I8, 1, 2, 2, 2, 0, NULL, NULL), y33 = tl_nhwc(be, WG_I32, 1, 3, 2, 2, 0, NULL, NULL),
              d64 = tl_nhwc(be, WG_I64, 1, 2, 2, 2, 0, NULL, NULL),
              d3c = tl_nhwc(be, WG_I64, 1, 2, 2, 3, 0, NULL, NULL),
              dx64 = tl_nhwc(be, WG_I64, 1, 4, 4, 2, 0, NULL, NULL),
              dx32 = tl_nhwc(be, WG_I32, 1, 4, 4, 2, 0, NULL, NULL),
              xf = tl_nhwc(be, WG_F32, 1, 4, 4, 2, 0, NULL, NULL), yf = tl_nhwc(be, WG_F32, 1, 2, 2, 2, 0, NULL, NULL),
              dxf = tl_nhwc(be, WG_F32, 1, 4, 4, 2, 0, NULL, NULL);
    wg_tensor_zero(&x32), wg_tensor_zero(&xf), wg_tensor_zero(&d64);
    wg_tensor plain = x32;
    plain.layout = WG_LAYOUT_PLAIN;
    wg_maxpool_geom m2 = m;
    m2.oh = 3; /* not from wg_maxpool_geom_init */
    switch (which) {
    case 0: wg_maxpool_int_forward(&m, &x32, &y8); break;         /* containers differ */
    case 1: wg_maxpool_int_forward(&m, &x32, &y33); break;        /* output shape */
    case 2: wg_maxpool_int_backward(&m, &x32, &d64, &dx32); break; /* dx not int64 */
    case 3: wg_maxpool_int_backward(&m, &x32, &d3c, &dx64); break; /* error shape */
    case 4: wg_maxpool_f32_forward(&m, &x32, &y32); break;        /* f32 with integers */
    case 5: wg_maxpool_int_forward(&m, &plain, &y32); break;      /* not NHWC */
    case 6: wg_maxpool_int_forward(&m, &xf, &yf); break;          /* int8 mode with floats */
    case 7: wg_maxpool_int_forward(&m2, &x32, &y32); break;       /* geometry */
    case 8: wg_maxpool_f32_backward(&m, &xf, &d64, &dxf); break;  /* f32 with an int64 error */
    case 9: wg_maxpool_int_backward(&m, &x32, &d64, &dx64); break; /* valid: must not abort */
    default: break;
    }
}

static void test_maxpool_rejects(void **state)
{
    wg_backend *be = *state;
    for (int which = 0; which <= 9; which++) {
        pid_t pid = tr_fork_death_test();
        TR_FAIL_IF(pid < 0, "fork failed%s", "");
        if (pid == 0) {
            TR_FAIL_IF(freopen("/dev/null", "w", stderr) == NULL, "freopen%s", ""); /* the expected message */
            run_bad(be, which);
            _exit(0);
        }
        int st = 0;
        TR_FAIL_IF(waitpid(pid, &st, 0) != pid, "waitpid failed%s", "");
        if (which == 9)
            TR_FAIL_IF(!(WIFEXITED(st) && WEXITSTATUS(st) == 0), "the valid call aborted (child status %d)", st);
        else
            TR_FAIL_IF(!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT), "bad case %d was accepted (child status %d)",
                       which, st);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_geom),
        cmocka_unit_test(test_maxpool_int_hand),
        cmocka_unit_test(test_maxpool_int_all_ties),
        cmocka_unit_test(test_maxpool_int_wide_sums),
        cmocka_unit_test(test_maxpool_int_stem),
        cmocka_unit_test(test_maxpool_int_random),
        cmocka_unit_test(test_maxpool_f32),
        cmocka_unit_test(test_maxpool_f32_ties),
        cmocka_unit_test(test_maxpool_threads),
        cmocka_unit_test(test_maxpool_rejects),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
