/* bn_int.c: integer batch normalization on the CPU backend (bn.h; docs/numerics.md,
 * section 7.3): the saved and running state and the forward passes, with the tiles and
 * checks that the backward pass (bn_int_bwd.c) shares through bn_int_impl.h.
 *
 * Each step is one static function over plain arrays, and each maps one to one onto
 * a backend op of the CUDA implementation, which runs the same formulas
 * (wg_bn_elem.h):
 *
 *   forward   pass_sums (per channel S1, S2 and the extremes of x16; an int32 x is
 *             narrowed to int16 there, others by wg_quant_fit_exp first) -> bn_pass_stats
 *             (mu, sigma) -> bn_pass_running_update -> pass_xhat_chan (per-channel
 *             constants) -> pass_normalize (x-hat, and y or, in
 *             wg_bn_int_forward_train_act, A straight away; elementwise)
 *   eval      narrow -> bn_pass_running_stats -> pass_xhat_chan -> pass_normalize
 *
 * The elementwise pass uses the fast forms wg_bn_xhat32_elem (e_x >= -22, 32-bit lanes;
 * wg_bn_xhat_fast below that): the rational split once per channel, then per element
 * multiplies and compares, equal to wg_bn_xhat bit for bit (wg_bn_elem.h gives the
 * arguments).
 *
 * Loop shape: tiles of whole rows (bn_int_impl.h), x-hat and y in int32 lanes; the
 * 64-bit x-hat form widens into int64 buffers first.
 *
 * Integer sums and maxima do not depend on order, so a parallel reduction gives the
 * same integers. Dimension legend: M = count = N*H*W rows, C channels (innermost). */
#include "bn.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bn_int_impl.h"
#include "act.h"
#include "check.h"
#include "cpu_rne.h"
#include "wg_par.h"
#include "quant.h"
#include "wg_bn_elem.h"

void *bn_xmalloc(size_t nbytes)
{
    void *p = malloc(nbytes ? nbytes : 1);
    WG_ASSERT(p != NULL, "out of memory (%zu bytes) in batch norm", nbytes);
    return p;
}

/* ---- tiles ----------------------------------------------------------------------------- */

bn_tile bn_tile_alloc(int64_t c)
{
    bn_tile t;
    t.rows = tile_rows(c);
    t.n = t.rows * c;
    uint64_t *u = bn_xmalloc(12 * (size_t)t.n * sizeof *u);
    uint64_t **cols[7] = {&t.d, &t.qa, &t.qb, &t.qc, &t.ra, &t.rb, &t.rc};
    int64_t **icols[5] = {&t.pa, &t.pb, &t.pc, &t.gamma, &t.beta};
    for (int i = 0; i < 7; i++) *cols[i] = u + i * t.n;
    for (int i = 0; i < 5; i++) *icols[i] = (int64_t *)u + (7 + i) * t.n;
    return t;
}

void bn_tile_free(bn_tile *t) { free(t->d); }

/* Channel ch's constants, at every row of the tile. */
void bn_tile_set(bn_tile *t, int64_t c, int64_t ch, const wg_bn_lin *k, int64_t gamma, int64_t beta)
{
    for (int64_t l = ch; l < t->n; l += c) {
        t->d[l] = k->d, t->qa[l] = k->qa, t->qb[l] = k->qb, t->qc[l] = k->qc;
        t->ra[l] = k->ra, t->rb[l] = k->rb, t->rc[l] = k->rc;
        t->pa[l] = k->pa, t->pb[l] = k->pb, t->pc[l] = k->pc;
        t->gamma[l] = gamma, t->beta[l] = beta;
    }
}

/* The per-channel constants of the 32-bit x-hat form (wg_bn_xhat32), laid out like
 * bn_tile; beta is stored as beta * 2^7, y's term. */
typedef struct bn_tile32 {
    int64_t rows, n;
    int32_t *lo, *hi, *gamma, *beta128;
    uint32_t *d, *p, *k, *a, *c;
} bn_tile32;

static bn_tile32 tile32_alloc(int64_t c)
{
    bn_tile32 t;
    t.rows = tile_rows(c);
    t.n = t.rows * c;
    uint32_t *u = bn_xmalloc(9 * (size_t)t.n * sizeof *u);
    uint32_t **cols[5] = {&t.d, &t.p, &t.k, &t.a, &t.c};
    int32_t **icols[4] = {&t.lo, &t.hi, &t.gamma, &t.beta128};
    for (int i = 0; i < 5; i++) *cols[i] = u + i * t.n;
    for (int i = 0; i < 4; i++) *icols[i] = (int32_t *)u + (5 + i) * t.n;
    return t;
}

static void tile32_free(bn_tile32 *t) { free(t->d); }

static void tile32_set(bn_tile32 *t, int64_t c, int64_t ch, const wg_bn_xhat32 *k, int32_t gamma, int32_t beta)
{
    for (int64_t l = ch; l < t->n; l += c) {
        t->lo[l] = k->lo, t->hi[l] = k->hi, t->d[l] = k->d, t->p[l] = k->p, t->k[l] = k->k;
        t->a[l] = k->a, t->c[l] = k->c, t->gamma[l] = gamma, t->beta128[l] = beta * 128;
    }
}

/* Folds per-element tile accumulators (k arrays of n, channel ch at r * C + ch) into
 * per-channel sums (the first nsum arrays) and maxima (the rest). */
void bn_tile_fold(const int64_t *acc, int64_t n, int64_t c, int k, int nsum, int64_t *out)
{
    for (int j = 0; j < k; j++)
        for (int64_t l = 0; l < n; l++) {
            int64_t *o = out + j * c + l % c, v = acc[j * n + l];
            *o = j < nsum ? *o + v : (v > *o ? v : *o);
        }
}

/* ---- checks -------------------------------------------------------------------------- */

bool bn_on_cpu(const wg_tensor *t) { return wg_backend_is_cpu(t->backend); }

static void check_cpu(const wg_tensor *t, const char *what)
{
    WG_ASSERT(t->data != NULL, "%s is an empty tensor", what);
    WG_ASSERT(bn_on_cpu(t), "%s is on backend %s; bn_int.c runs on the CPU",
              what, wg_backend_name(t->backend));
}

void bn_check_vec(const wg_tensor *t, wg_dtype dt, int64_t c, const char *what)
{
    check_cpu(t, what);
    WG_ASSERT(t->dtype == dt, "%s is %s, expected %s", what, wg_dtype_name(t->dtype), wg_dtype_name(dt));
    WG_ASSERT(wg_tensor_numel(t) == c, "%s has %lld elements, expected C = %lld", what,
              (long long)wg_tensor_numel(t), (long long)c);
}

/* An activation-shaped tensor: NHWC, of shape like (when given) and container dt
 * (any integer container when dt < 0). Returns C; *count = N*H*W. */
int64_t bn_check_act(const wg_tensor *t, int dt, const wg_tensor *like, const char *what, int64_t *count)
{
    check_cpu(t, what);
    WG_ASSERT(t->layout == WG_LAYOUT_NHWC, "%s has layout %s, expected nhwc", what, wg_layout_name(t->layout));
    if (dt < 0) WG_ASSERT(wg_dtype_is_int(t->dtype), "%s must be an integer tensor, not %s", what,
                          wg_dtype_name(t->dtype));
    else WG_ASSERT(t->dtype == (wg_dtype)dt, "%s is %s, expected %s", what, wg_dtype_name(t->dtype),
                   wg_dtype_name((wg_dtype)dt));
    if (like) WG_ASSERT(wg_tensor_same_shape(t, like), "%s does not have the shape of the input", what);
    int64_t c = t->shape[3];
    *count = wg_tensor_numel(t) / c;
    WG_ASSERT(*count <= WG_BN_COUNT_MAX, "%s: %lld values per channel (at most 2^32 - 1)", what,
              (long long)*count);
    return c;
}

static void check_gamma_beta(const wg_tensor *gamma16, const wg_tensor *beta16, int64_t c)
{
    bn_check_vec(gamma16, WG_I16, c, "gamma16");
    bn_check_vec(beta16, WG_I16, c, "beta16");
    WG_ASSERT(gamma16->exp == WG_BN_XHAT_EXP && beta16->exp == WG_BN_XHAT_EXP,
              "gamma16 and beta16 must be at e = -7 (wg_quant_direct(., master, 8, false)), not %d and %d",
              gamma16->exp, beta16->exp);
}

/* The common checks of both forward passes; returns C. */
static int64_t check_forward(const wg_tensor *x, const wg_tensor *gamma16, const wg_tensor *beta16,
                             const wg_tensor *y, const wg_bn_int_saved *s, int64_t *count)
{
    int64_t c = bn_check_act(x, -1, NULL, "the BN input", count), n;
    bn_check_act(y, WG_I32, x, "the BN output", &n);
    bn_check_act(&s->xhat, WG_I16, x, "saved x-hat", &n);
    bn_check_vec(&s->mu, WG_I32, c, "saved mu");
    bn_check_vec(&s->sigma, WG_I32, c, "saved sigma");
    check_gamma_beta(gamma16, beta16, c);
    return c;
}

/* ---- allocation ---------------------------------------------------------------------- */

bool wg_bn_int_saved_init(wg_bn_int_saved *s, wg_backend *b, int64_t n, int64_t h, int64_t w, int64_t c)
{
    memset(s, 0, sizeof(*s));
    const int64_t shape_c[1] = {c};
    bool ok = wg_tensor_init_nhwc(&s->xhat, b, WG_I16, n, h, w, c, WG_BN_XHAT_EXP) &&
              wg_tensor_init(&s->mu, b, WG_I32, WG_LAYOUT_PLAIN, 1, shape_c, WG_BN_STAT_EXP) &&
              wg_tensor_init(&s->sigma, b, WG_I32, WG_LAYOUT_PLAIN, 1, shape_c, WG_BN_STAT_EXP);
    if (!ok) wg_bn_int_saved_free(s);
    return ok;
}

void wg_bn_int_saved_free(wg_bn_int_saved *s)
{
    wg_tensor_free(&s->xhat);
    wg_tensor_free(&s->mu);
    wg_tensor_free(&s->sigma);
    memset(s, 0, sizeof(*s));
}

bool wg_bn_running_init(wg_bn_running *r, wg_backend *b, int64_t c)
{
    memset(r, 0, sizeof(*r));
    const int64_t shape_c[1] = {c};
    bool ok = wg_tensor_init(&r->mean, b, WG_I64, WG_LAYOUT_PLAIN, 1, shape_c, WG_BN_RUNNING_EXP) &&
              wg_tensor_init(&r->sigma, b, WG_I64, WG_LAYOUT_PLAIN, 1, shape_c, WG_BN_RUNNING_EXP);
    if (!ok) {
        wg_bn_running_free(r);
        return false;
    }
    wg_tensor_zero(&r->mean);
    wg_tensor_zero(&r->sigma);
    return true;
}

void wg_bn_running_free(wg_bn_running *r)
{
    wg_tensor_free(&r->mean);
    wg_tensor_free(&r->sigma);
    memset(r, 0, sizeof(*r));
}

/* ---- forward passes ------------------------------------------------------------------ */

/* The extremes of x16 are kept as maxima of x16 + 2^15 and 2^15 - x16 (both >= 1), so
 * that they fold like the other per-element maxima (bn_tile_fold, zero-initialized). */
enum { WG_BN_X16_OFF = 32768 };

/* One tile of the sums pass: S1, S2 and the extremes of x16 into acc (4 arrays of n).
 * With src, x16 is first made from the int32 input (the fit rule's rounding, rne32 of
 * cpu_rne.h, as the backend's typed round_shift computes it) and stored. */
WG_BN_INLINE void sums_tile(const int32_t *restrict src, rne32_k k, int16_t *restrict x, int64_t len, int64_t n,
                            int64_t *restrict acc)
{
    int64_t *restrict a1 = acc, *restrict a2 = acc + n, *restrict hi = acc + 2 * n, *restrict lo = acc + 3 * n;
    for (int64_t l = 0; l < len; l++) {
        int32_t v = src ? clamp32(rne32(src[l], k), WG_BN_XHAT_BOUND) : x[l];
        if (src) x[l] = (int16_t)v;
        a1[l] += v;
        a2[l] += (int64_t)v * v;
        hi[l] = v + WG_BN_X16_OFF > hi[l] ? v + WG_BN_X16_OFF : hi[l];
        lo[l] = WG_BN_X16_OFF - v > lo[l] ? WG_BN_X16_OFF - v : lo[l];
    }
}

/* Per channel S1 = sum x16, S2 = sum x16^2, int64 and exact (count < 2^32), and the
 * least and greatest x16. With src (an int32 input whose narrowing shift is k's) the
 * same pass narrows the input into x16 first. Each thread sums its tiles element by
 * element, then the per-element sums are folded into the channels (integers: any split,
 * the same sums). */
static void pass_sums(const int32_t *src, rne32_k k, int16_t *x16, int64_t m, int64_t c, int64_t *s1, int64_t *s2,
                      int64_t *xmin, int64_t *xmax)
{
    int64_t rows = tile_rows(c), n = rows * c, ntiles = (m + rows - 1) / rows;
    int64_t *out = bn_xmalloc(4 * (size_t)c * sizeof *out);
    memset(out, 0, 4 * (size_t)c * sizeof *out);
#pragma omp parallel if (m * c >= WG_PAR_MIN)
    {
        int64_t *acc = bn_xmalloc(4 * (size_t)n * sizeof *acc), *mine = bn_xmalloc(4 * (size_t)c * sizeof *mine);
        memset(acc, 0, 4 * (size_t)n * sizeof *acc);
        memset(mine, 0, 4 * (size_t)c * sizeof *mine);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < ntiles; b++) {
            int64_t k0 = b * n, len = b == ntiles - 1 ? m * c - k0 : n;
            if (src) sums_tile(src + k0, k, x16 + k0, len, n, acc);
            else sums_tile(NULL, k, x16 + k0, len, n, acc);
        }
        bn_tile_fold(acc, n, c, 4, 2, mine);
#pragma omp critical(wg_bn_sums)
        for (int64_t j = 0; j < 4 * c; j++)
            out[j] = j < 2 * c ? out[j] + mine[j] : (mine[j] > out[j] ? mine[j] : out[j]);
        free(acc);
        free(mine);
    }
    for (int64_t ch = 0; ch < c; ch++) {
        s1[ch] = out[ch];
        s2[ch] = out[c + ch];
        xmax[ch] = out[2 * c + ch] - WG_BN_X16_OFF;
        xmin[ch] = WG_BN_X16_OFF - out[3 * c + ch];
    }
    free(out);
}

/* Per channel mu and sigma on the grid 2^-15. */
void bn_pass_stats(const int64_t *s1, const int64_t *s2, int64_t count, int64_t c, int e_x, int32_t *mu,
                   int32_t *sigma)
{
    for (int64_t ch = 0; ch < c; ch++) {
        mu[ch] = (int32_t)wg_bn_mean(s1[ch], (uint64_t)count, e_x);
        sigma[ch] = (int32_t)wg_bn_sigma(s1[ch], s2[ch], (uint64_t)count, e_x);
    }
}

/* The running averages take the batch mu and sigma, moved exactly onto 2^-31. */
void bn_pass_running_update(int64_t *rmean, int64_t *rsigma, const int32_t *mu, const int32_t *sigma, int64_t c,
                            bool initialized)
{
    const int up = WG_BN_STAT_EXP - WG_BN_RUNNING_EXP;
    for (int64_t ch = 0; ch < c; ch++) {
        int64_t bm = (int64_t)mu[ch] * ((int64_t)1 << up), bs = (int64_t)sigma[ch] * ((int64_t)1 << up);
        rmean[ch] = initialized ? wg_bn_running_step(rmean[ch], bm) : bm;
        rsigma[ch] = initialized ? wg_bn_running_step(rsigma[ch], bs) : bs;
    }
}

/* Evaluation statistics from the running averages. */
void bn_pass_running_stats(const int64_t *rmean, const int64_t *rsigma, int64_t c, int32_t *mu, int32_t *sigma)
{
    for (int64_t ch = 0; ch < c; ch++) {
        mu[ch] = (int32_t)wg_bn_running_to_stat(rmean[ch], -WG_BN_SIGMA_MAX);
        sigma[ch] = (int32_t)wg_bn_running_to_stat(rsigma[ch], 1);
    }
}

/* Per channel constants of x-hat (wg_bn_xhat_lin_init), with gamma and beta. */
static void pass_xhat_chan(const int32_t *mu, const int32_t *sigma, const int16_t *gamma, const int16_t *beta,
                           int64_t c, int e_x, bn_tile *t)
{
    for (int64_t ch = 0; ch < c; ch++) {
        wg_bn_lin k = wg_bn_xhat_lin_init(mu[ch], sigma[ch], e_x);
        bn_tile_set(t, c, ch, &k, gamma[ch], beta[ch]);
    }
}

/* The same for the 32-bit form (wg_bn_xhat32_init; e_x with wg_bn_xhat32_ok). */
static void pass_xhat32_chan(const int32_t *mu, const int32_t *sigma, const int16_t *gamma, const int16_t *beta,
                             int64_t c, int e_x, bn_tile32 *t)
{
    for (int64_t ch = 0; ch < c; ch++) {
        wg_bn_xhat32 k = wg_bn_xhat32_init(mu[ch], sigma[ch], e_x);
        tile32_set(t, c, ch, &k, gamma[ch], beta[ch]);
    }
}

/* x-hat and y of one tile of n elements, x-hat in place over x16 (wg_bn_xhat_fast);
 * buf: 3n int64. Returns its clamps; *ymax = max(*ymax, the tile's largest y). */
static int64_t normalize_tile(int16_t *restrict xh, int32_t *restrict y, int64_t n, const bn_tile *t,
                              int64_t *restrict buf, int32_t *ymax)
{
    int64_t *restrict u = buf, *restrict hb = buf + n, *restrict yb = buf + 2 * n;
    const int64_t *restrict gamma = t->gamma, *restrict beta = t->beta;
    int64_t clamps = 0;
    for (int64_t l = 0; l < n; l++) u[l] = xh[l];
    for (int64_t l = 0; l < n; l++) {
        const wg_bn_lin k = tile_at(t, l);
        int64_t clamped, h = wg_bn_xhat_fast(u[l], &k, &clamped);
        clamps += clamped;
        hb[l] = h;
        yb[l] = wg_bn_y(h, gamma[l], beta[l]);
    }
    int32_t ym = *ymax;
    for (int64_t l = 0; l < n; l++) {
        xh[l] = (int16_t)hb[l];
        y[l] = (int32_t)yb[l];
        ym = y[l] > ym ? y[l] : ym;
    }
    *ymax = ym;
    return clamps;
}

/* The same with the 32-bit form (wg_bn_xhat32_elem), in one loop of one integer width.
 * y = xhat gamma + beta 2^7 is wg_bn_y's integer in int32: |y| <= 32767^2 + 32767 2^7
 * < 2^31. */
static int64_t normalize_tile32(int16_t *restrict xh, int32_t *restrict y, int64_t n, const bn_tile32 *t,
                                int32_t *ymax)
{
    const int32_t *restrict lo = t->lo, *restrict hi = t->hi, *restrict gamma = t->gamma, *restrict b128 = t->beta128;
    const uint32_t *restrict d = t->d, *restrict p = t->p, *restrict kk = t->k, *restrict a = t->a,
                             *restrict c = t->c;
    int32_t clamps = 0, ym = *ymax; /* n < 2^31 */
    for (int64_t l = 0; l < n; l++) {
        const wg_bn_xhat32 k = {lo[l], hi[l], d[l], p[l], kk[l], a[l], c[l]};
        int32_t clamped, h = wg_bn_xhat32_elem(xh[l], &k, &clamped), v = h * gamma[l] + b128[l];
        clamps += clamped;
        xh[l] = (int16_t)h;
        y[l] = v;
        ym = v > ym ? v : ym;
    }
    *ymax = ym;
    return clamps;
}

/* The same, writing A instead of y: a = clamp(RNE(max(y, 0) / 2^shift)) with the
 * activation plan's shift (1..31) and bound (act.h, wg_act_plan). */
static int64_t normalize_tile32_act(int16_t *restrict xh, int8_t *restrict a, int64_t n, const bn_tile32 *t,
                                    rne32_k k, int32_t bound)
{
    const int32_t *restrict lo = t->lo, *restrict hi = t->hi, *restrict gamma = t->gamma, *restrict b128 = t->beta128;
    const uint32_t *restrict d = t->d, *restrict p = t->p, *restrict kk = t->k, *restrict ka = t->a,
                             *restrict c = t->c;
    int32_t clamps = 0; /* n < 2^31 */
    for (int64_t l = 0; l < n; l++) {
        const wg_bn_xhat32 e = {lo[l], hi[l], d[l], p[l], kk[l], ka[l], c[l]};
        int32_t clamped, h = wg_bn_xhat32_elem(xh[l], &e, &clamped), v = h * gamma[l] + b128[l];
        clamps += clamped;
        xh[l] = (int16_t)h;
        a[l] = (int8_t)clamp32(rne32(v > 0 ? v : 0, k), bound);
    }
    return clamps;
}

/* What the normalizing pass writes besides x-hat: y (int32), or A (int8, the 32-bit
 * form only) with the activation plan's shift and bound. */
typedef struct norm_out {
    int32_t *y;
    int8_t *a;
    rne32_k k;
    int32_t bound;
} norm_out;

/* Elementwise x-hat, in place over x16, and y or A, with t (the 64-bit form) or t32 (the
 * 32-bit form) when not NULL. Returns the number of clamped x-hat elements; *relu_max =
 * max(0, max y), the largest |ReLU(y)|, when y is written. */
static int64_t pass_normalize(int16_t *x16, int64_t m, int64_t c, const bn_tile *t, const bn_tile32 *t32,
                              const norm_out *o, uint64_t *relu_max)
{
    int64_t clamps = 0, rows = t32 ? t32->rows : t->rows, tn = rows * c, ntiles = (m + rows - 1) / rows;
    int32_t ymax = 0;
    /* tiles are independent, and the clamp count and the maximum are integer reductions:
     * any thread split gives the same bits */
#pragma omp parallel reduction(+ : clamps) reduction(max : ymax) if (m * c >= WG_PAR_MIN)
    {
        int64_t *buf = t32 ? NULL : bn_xmalloc(3 * (size_t)tn * sizeof *buf);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < ntiles; b++) {
            int64_t k0 = b * tn, len = b == ntiles - 1 ? m * c - k0 : tn;
            if (o->a) clamps += normalize_tile32_act(x16 + k0, o->a + k0, len, t32, o->k, o->bound);
            else if (t32) clamps += normalize_tile32(x16 + k0, o->y + k0, len, t32, &ymax);
            else clamps += normalize_tile(x16 + k0, o->y + k0, len, t, buf, &ymax);
        }
        free(buf);
    }
    *relu_max = (uint64_t)ymax;
    return clamps;
}

/* Narrow x into work->xhat (int16, the fit rule with x's grid as the floor); returns e_x.
 * x_max: max |x| or WG_QUANT_MAX_UNKNOWN. */
static void check_ex(int e_x)
{
    WG_ASSERT(e_x >= WG_BN_EX_MIN, "the narrowed BN input has exponent %d (at least %d supported)", e_x,
              WG_BN_EX_MIN);
}

static int narrow_input(const wg_tensor *x, uint64_t x_max, wg_bn_int_saved *work)
{
    wg_quant_fit_exp_max(&work->xhat, x, x->exp, x_max);
    check_ex(work->xhat.exp);
    return work->xhat.exp;
}

/* The exponents of the saved state once normalized. */
static void set_exps(wg_bn_int_saved *work, int e_x)
{
    work->e_x = e_x;
    work->xhat.exp = WG_BN_XHAT_EXP;
    work->mu.exp = WG_BN_STAT_EXP;
    work->sigma.exp = WG_BN_STAT_EXP;
}

/* x-hat and y from work->xhat (x16) and the statistics in work->mu, work->sigma; returns
 * max(0, max y). */
static uint64_t normalize(wg_bn_int_saved *work, int e_x, int64_t count, int64_t c, const wg_tensor *gamma16,
                          const wg_tensor *beta16, wg_tensor *y)
{
    uint64_t relu_max;
    norm_out o = {.y = y->data};
    if (wg_bn_xhat32_ok(e_x)) {
        bn_tile32 t = tile32_alloc(c);
        pass_xhat32_chan(work->mu.data, work->sigma.data, gamma16->data, beta16->data, c, e_x, &t);
        work->clamps = pass_normalize(work->xhat.data, count, c, NULL, &t, &o, &relu_max);
        tile32_free(&t);
    } else {
        bn_tile t = bn_tile_alloc(c);
        pass_xhat_chan(work->mu.data, work->sigma.data, gamma16->data, beta16->data, c, e_x, &t);
        work->clamps = pass_normalize(work->xhat.data, count, c, &t, NULL, &o, &relu_max);
        bn_tile_free(&t);
    }
    set_exps(work, e_x);
    y->exp = WG_BN_Y_EXP;
    return relu_max;
}

/* x-hat and A straight from x16 (no y), when the 32-bit form serves e_x and A's shift is
 * in 1..31; else false, nothing written. A's plan needs max(0, max y) first: per channel,
 * x-hat is monotone (non-decreasing) in x16 and y = xhat gamma + beta 2^7 monotone in
 * x-hat, so the channel's largest y is y at its least or its greatest x16 (xmin, xmax:
 * elements of the batch), computed with the same element formula. */
static bool normalize_act(wg_bn_int_saved *work, int e_x, int64_t count, int64_t c, const wg_tensor *gamma16,
                          const wg_tensor *beta16, const int64_t *xmin, const int64_t *xmax, wg_tensor *a, int bits,
                          wg_act_exponent rule)
{
    if (!wg_bn_xhat32_ok(e_x)) return false;
    const int32_t *mu = work->mu.data, *sigma = work->sigma.data;
    const int16_t *g = gamma16->data, *bt = beta16->data;
    int64_t ymax = 0;
    for (int64_t ch = 0; ch < c; ch++) {
        wg_bn_xhat32 k = wg_bn_xhat32_init(mu[ch], sigma[ch], e_x);
        const int64_t ends[2] = {xmin[ch], xmax[ch]};
        for (int i = 0; i < 2; i++) {
            int32_t clamped, h = wg_bn_xhat32_elem((int32_t)ends[i], &k, &clamped);
            int64_t y = wg_bn_y(h, g[ch], bt[ch]);
            ymax = y > ymax ? y : ymax;
        }
    }
    wg_quant_plan p = wg_act_plan(rule, bits, WG_BN_Y_EXP, (uint64_t)ymax);
    if (p.shift < 1 || p.shift > 31) return false;
    bn_tile32 t = tile32_alloc(c);
    pass_xhat32_chan(mu, sigma, g, bt, c, e_x, &t);
    norm_out o = {.a = a->data, .k = rne32_init(p.shift), .bound = (int32_t)p.bound};
    uint64_t unused;
    work->clamps = pass_normalize(work->xhat.data, count, c, NULL, &t, &o, &unused);
    tile32_free(&t);
    set_exps(work, e_x);
    a->exp = p.exp;
    return true;
}

/* The statistics of a training pass into saved (and running when not NULL): the
 * narrowing, in the sums pass itself for an int32 x whose shift is 0..31 (the fit rule
 * with x's grid as the floor: never a left shift), the sums, mu, sigma and the running
 * averages; xmin, xmax: per channel, the least and greatest x16. Returns e_x. */
static int train_stats(const wg_tensor *x, uint64_t x_max, wg_bn_int_saved *saved, wg_bn_running *running,
                       int64_t count, int64_t c, int64_t *xmin, int64_t *xmax)
{
    if (running) {
        bn_check_vec(&running->mean, WG_I64, c, "running mean");
        bn_check_vec(&running->sigma, WG_I64, c, "running sigma");
        WG_ASSERT(running->mean.exp == WG_BN_RUNNING_EXP && running->sigma.exp == WG_BN_RUNNING_EXP,
                  "running statistics at e = %d and %d, expected %d", running->mean.exp, running->sigma.exp,
                  WG_BN_RUNNING_EXP);
    }
    int64_t *s1 = bn_xmalloc(2 * (size_t)c * sizeof *s1), *s2 = s1 + c;
    int e_x;
    if (x->dtype == WG_I32) {
        if (x_max == WG_QUANT_MAX_UNKNOWN) x_max = x->backend->iface->max_abs(x->backend->ctx, x);
        wg_quant_plan p = wg_quant_fit_plan(x->exp, x->exp, wg_dtype_bound(saved->xhat.dtype), x_max);
        WG_ASSERT(p.shift >= 0 && p.shift <= 31, "BN narrowing: shift %d of an int32 input", p.shift);
        e_x = saved->xhat.exp = p.exp;
        check_ex(e_x);
        pass_sums(x->data, rne32_init(p.shift), saved->xhat.data, count, c, s1, s2, xmin, xmax);
    } else {
        e_x = narrow_input(x, x_max, saved);
        pass_sums(NULL, rne32_init(0), saved->xhat.data, count, c, s1, s2, xmin, xmax);
    }
    bn_pass_stats(s1, s2, count, c, e_x, saved->mu.data, saved->sigma.data);
    free(s1);
    if (running) {
        bn_pass_running_update(running->mean.data, running->sigma.data, saved->mu.data, saved->sigma.data, c,
                            running->initialized);
        running->initialized = true;
    }
    return e_x;
}

uint64_t wg_bn_int_forward_train(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16, const wg_tensor *beta16,
                                 wg_tensor *y, wg_bn_int_saved *saved, wg_bn_running *running)
{
    if (!bn_on_cpu(x)) return bn_generic_forward_train(x, x_max, gamma16, beta16, y, saved, running);
    int64_t count, c = check_forward(x, gamma16, beta16, y, saved, &count);
    int64_t *ext = bn_xmalloc(2 * (size_t)c * sizeof *ext);
    int e_x = train_stats(x, x_max, saved, running, count, c, ext, ext + c);
    free(ext);
    return normalize(saved, e_x, count, c, gamma16, beta16, y);
}

void wg_bn_int_forward_train_act(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16,
                                 const wg_tensor *beta16, wg_tensor *y, wg_tensor *a, int bits, wg_act_exponent rule,
                                 wg_bn_int_saved *saved, wg_bn_running *running)
{
    if (!bn_on_cpu(x)) {
        uint64_t relu_max = bn_generic_forward_train(x, x_max, gamma16, beta16, y, saved, running);
        wg_relu_quant_forward_max(y, a, bits, rule, relu_max);
        return;
    }
    int64_t n, count, c = check_forward(x, gamma16, beta16, y, saved, &count);
    bn_check_act(a, WG_I8, x, "the activation A", &n);
    int64_t *ext = bn_xmalloc(2 * (size_t)c * sizeof *ext);
    int e_x = train_stats(x, x_max, saved, running, count, c, ext, ext + c);
    if (!normalize_act(saved, e_x, count, c, gamma16, beta16, ext, ext + c, a, bits, rule)) {
        uint64_t relu_max = normalize(saved, e_x, count, c, gamma16, beta16, y);
        wg_relu_quant_forward_max(y, a, bits, rule, relu_max);
    }
    free(ext);
}

uint64_t wg_bn_int_forward_eval(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16, const wg_tensor *beta16,
                            const wg_bn_running *running, wg_tensor *y, wg_bn_int_saved *work)
{
    if (!bn_on_cpu(x)) return bn_generic_forward_eval(x, x_max, gamma16, beta16, running, y, work);
    int64_t count, c = check_forward(x, gamma16, beta16, y, work, &count);
    bn_check_vec(&running->mean, WG_I64, c, "running mean");
    bn_check_vec(&running->sigma, WG_I64, c, "running sigma");
    WG_ASSERT(running->initialized, "evaluation with running statistics that no training step has set%s", "");
    int e_x = narrow_input(x, x_max, work);
    bn_pass_running_stats(running->mean.data, running->sigma.data, c, work->mu.data, work->sigma.data);
    return normalize(work, e_x, count, c, gamma16, beta16, y);
}
