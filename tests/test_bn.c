/* test_bn.c: batch normalization (bn.h) on the CPU backend.
 *
 * Integer BN against an independent scalar reference written here (exact rationals
 * in 128-bit integers with '/' and '%', never the formulas of wg_bn_elem.h): the
 * narrowing, mu, sigma, x-hat, y, the running statistics, the backward sums and every
 * dx element bit for bit, and the exponents docs/numerics.md (7.3, 7.5) prescribes.
 * The reference computes sigma the way the contract states it: r = isqrt(floor(V)),
 * then 4V against (2r+1)^2 from the remainder. Then the integer results against the
 * float formulas (sanity, with derived tolerances), and fp32 BN against central
 * finite differences of a double-precision re-implementation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "bn.h"
#include "tensor.h"

#include "test_ref.h"

#define SAT31 INT64_C(2147483647)

/* ---- exact reference -------------------------------------------------------------- */

/* round(n / d), ties to even, d > 0. */
static i128 rr_div(i128 n, i128 d)
{
    i128 q = ref_floor_div(n, d);
    i128 twice = 2 * (n - q * d);
    if (twice > d || (twice == d && q % 2 != 0)) q += 1;
    return q;
}

static i128 rr_clamp(i128 v, i128 lo, i128 hi) { return v < lo ? lo : (v > hi ? hi : v); }
static int rr_bitlen(u128 v) { return v == 0 ? 0 : ref_floor_log2(v) + 1; }
static u128 rr_abs(i128 v) { return v < 0 ? (u128)(-v) : (u128)v; }

/* The narrowing: the smallest s >= 0 with RNE(max / 2^s) <= 32767, then every x moves. */
static int ref_narrow(const int64_t *x, int64_t n, int e_in, int64_t *x16)
{
    uint64_t m = ref_max_abs(x, n);
    int s = 0;
    while (ref_rne_div_pow2((i128)m, s) > 32767) s++;
    for (int64_t i = 0; i < n; i++) x16[i] = (int64_t)ref_rne_div_pow2(x[i], s);
    return e_in + s;
}

/* mu = RNE(S1 2^(e_x+15) / count), saturated at int32. */
static int64_t ref_mean(i128 s1, i128 count, int e_x)
{
    int k = e_x + 15;
    if (s1 == 0) return 0;
    if (k > 70) return s1 > 0 ? SAT31 : -SAT31;
    TR_FAIL_IF(k < -80, "reference domain: e_x = %d", e_x);
    i128 q = k >= 0 ? rr_div(s1 * ((i128)1 << k), count) : rr_div(s1, count * ((i128)1 << -k));
    return (int64_t)rr_clamp(q, -SAT31, SAT31);
}

/* sigma = min(RNE(sqrt(V)), 2^31 - 2) + 1, V = (count S2 - S1^2) 2^(2e_x+30) / count^2. */
static int64_t ref_sigma(i128 s1, i128 s2, i128 count, int e_x)
{
    u128 dd = (u128)(count * s2 - s1 * s1), num, den;
    int c = 2 * e_x + 30;
    if (c >= 0) {
        if (dd != 0 && rr_bitlen(dd) + c > 126) return SAT31; /* V >= 2^126 / 2^64: sqrt > 2^31 */
        num = dd << c;
        den = (u128)(count * count);
    } else {
        TR_FAIL_IF(rr_bitlen((u128)(count * count)) - c > 124, "reference domain: count %lld, e_x %d",
                   (long long)count, e_x);
        num = dd;
        den = (u128)(count * count) << -c;
    }
    u128 fl = num / den, rem = num % den;
    if (fl >= ((u128)1 << 62)) return SAT31;
    i128 r = (i128)ref_isqrt(fl);
    i128 t = 4 * (i128)fl - (2 * r + 1) * (2 * r + 1); /* 4V - (2r+1)^2 = t + 4 rem / den */
    int sign;
    if (t >= 0) sign = (t == 0 && rem == 0) ? 0 : 1;
    else if (t <= -4) sign = -1;
    else sign = 4 * rem > (u128)(-t) * den ? 1 : (4 * rem == (u128)(-t) * den ? 0 : -1);
    i128 rounded = sign > 0 ? r + 1 : (sign == 0 ? r + (r % 2) : r);
    return (int64_t)rr_clamp(rounded, 0, SAT31 - 1) + 1;
}

/* x-hat = RNE((x16 2^(e_x+15) - mu) 2^7 / sigma), clamped at +-32767; *clamps counts. */
static int64_t ref_xhat(int64_t x16, int64_t mu, int64_t sigma, int e_x, int64_t *clamps)
{
    int m = e_x + 22;
    TR_FAIL_IF(m > 100 || m < -80, "reference domain: e_x = %d", e_x);
    i128 q = m >= 0 ? rr_div((i128)x16 * ((i128)1 << m) - (i128)mu * 128, sigma)
                    : rr_div((i128)x16 - (i128)mu * ((i128)1 << (7 - m)), (i128)sigma << -m);
    if (q > 32767 || q < -32767) *clamps += 1;
    return (int64_t)rr_clamp(q, -32767, 32767);
}

/* ---- test data and tensors --------------------------------------------------------- */

typedef struct bn_case {
    int64_t n, h, w, c, count;
    int e_in;
    int64_t *x, *gamma, *beta; /* x: int32 values, NHWC */
} bn_case;

typedef struct ref_fwd {
    int e_x;
    int64_t *x16, *mu, *sigma, *xhat, *y, clamps;
} ref_fwd;

static int64_t *alloc64(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t)); }

static void case_alloc(bn_case *k)
{
    k->count = k->n * k->h * k->w;
    k->x = alloc64(k->count * k->c);
    k->gamma = alloc64(k->c);
    k->beta = alloc64(k->c);
}

static void case_free(bn_case *k)
{
    free(k->x);
    free(k->gamma);
    free(k->beta);
}

static int64_t clamp31(int64_t v) { return v > SAT31 ? SAT31 : (v < -SAT31 ? -SAT31 : v); }

/* Channels of several kinds (constant, two values, offset plus noise, extremes), one
 * magnitude per tensor so that the narrowing shift takes every value 0..16. */
static void fill_x(tr_rng *r, bn_case *k, int mag)
{
    for (int64_t ch = 0; ch < k->c; ch++) {
        int kind = (int)(tr_next(r) % 8), spread = (int)tr_range(r, 0, mag);
        int64_t off = tr_i64_mag(r, mag), alt = tr_i64_mag(r, mag);
        for (int64_t i = 0; i < k->count; i++) {
            int64_t v = kind == 0 ? off : kind == 1 ? ((tr_next(r) & 1) ? off : alt) : off + tr_i64_mag(r, spread);
            if (kind == 2 && tr_next(r) % 64 == 0) v = (tr_next(r) & 1) ? SAT31 : -SAT31;
            k->x[i * k->c + ch] = clamp31(v);
        }
        k->gamma[ch] = tr_i64_mag(r, (int)tr_range(r, 0, 15));
        k->beta[ch] = tr_i64_mag(r, (int)tr_range(r, 0, 15));
        if (k->gamma[ch] < -32767) k->gamma[ch] = -32767;
        if (k->beta[ch] < -32767) k->beta[ch] = -32767;
    }
    if (tr_next(r) % 16 == 0) k->x[tr_range(r, 0, k->count * k->c - 1)] = INT32_MIN;
}

static bn_case random_case(tr_rng *r, int64_t max_elems, int e_lo, int e_hi)
{
    bn_case k;
    k.c = tr_next(r) % 4 == 0 ? tr_range(r, 1, 3) : tr_range(r, 1, 37);
    do {
        k.n = tr_range(r, 1, 8);
        k.h = tr_range(r, 1, 12);
        k.w = tr_range(r, 1, tr_next(r) % 3 == 0 ? 64 : 12);
    } while (k.n * k.h * k.w * k.c > max_elems);
    k.e_in = (int)tr_range(r, e_lo, e_hi);
    case_alloc(&k);
    fill_x(r, &k, (int)tr_range(r, 1, 31));
    return k;
}

static wg_tensor mk_nhwc(wg_backend *b, wg_dtype dt, const bn_case *k, const int64_t *q, int exp)
{
    wg_tensor t;
    bool ok = wg_tensor_init_nhwc(&t, b, dt, k->n, k->h, k->w, k->c, exp);
    TR_FAIL_IF(!ok, "wg_tensor_init_nhwc failed%s", "");
    if (q) {
        int64_t n = k->count * k->c;
        void *host = malloc((size_t)n * wg_dtype_size(dt) + 1);
        for (int64_t i = 0; i < n; i++) wg_store_i64(host, dt, i, q[i]);
        wg_tensor_upload(&t, host);
        free(host);
    }
    return t;
}

static wg_tensor mk_vec(wg_backend *b, wg_dtype dt, int64_t c, const int64_t *q, int exp)
{
    wg_tensor t = q ? tr_tensor_from(b, NULL, dt, q, c, exp) : tr_tensor_out(b, dt, c);
    t.exp = exp;
    return t;
}

/* Every element of t equals want, and t's exponent is want_exp. */
static void expect_tensor(const wg_tensor *t, const int64_t *want, int64_t n, int want_exp, const char *what, int id)
{
    TR_EXPECT_I64(want_exp, t->exp, "case %d: %s exponent", id, what);
    int64_t *got = tr_tensor_get(t);
    for (int64_t i = 0; i < n; i++) TR_EXPECT_I64(want[i], got[i], "case %d: %s[%" PRId64 "]", id, what, i);
    free(got);
}

/* The reference forward pass; with mu_in / sigma_in (evaluation) the statistics are given. */
static ref_fwd ref_forward(const bn_case *k, const int64_t *mu_in, const int64_t *sigma_in)
{
    ref_fwd r;
    int64_t n = k->count * k->c;
    r.x16 = alloc64(n);
    r.xhat = alloc64(n);
    r.y = alloc64(n);
    r.mu = alloc64(k->c);
    r.sigma = alloc64(k->c);
    r.clamps = 0;
    r.e_x = ref_narrow(k->x, n, k->e_in, r.x16);
    for (int64_t ch = 0; ch < k->c; ch++) {
        i128 s1 = 0, s2 = 0;
        for (int64_t i = 0; i < k->count; i++) {
            i128 v = r.x16[i * k->c + ch];
            s1 += v;
            s2 += v * v;
        }
        r.mu[ch] = mu_in ? mu_in[ch] : ref_mean(s1, k->count, r.e_x);
        r.sigma[ch] = sigma_in ? sigma_in[ch] : ref_sigma(s1, s2, k->count, r.e_x);
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t ch = i % k->c;
        r.xhat[i] = ref_xhat(r.x16[i], r.mu[ch], r.sigma[ch], r.e_x, &r.clamps);
        r.y[i] = r.xhat[i] * k->gamma[ch] + k->beta[ch] * 128;
    }
    return r;
}

static void ref_free(ref_fwd *r)
{
    free(r->x16);
    free(r->xhat);
    free(r->y);
    free(r->mu);
    free(r->sigma);
}

/* The library's forward pass on a case; the tensors stay alive for the backward pass. */
typedef struct run_fwd {
    wg_tensor x, gamma, beta, y;
    wg_bn_int_saved saved;
} run_fwd;

static run_fwd run_forward(wg_backend *b, const bn_case *k, wg_bn_running *running)
{
    run_fwd f;
    f.x = mk_nhwc(b, WG_I32, k, k->x, k->e_in);
    f.gamma = mk_vec(b, WG_I16, k->c, k->gamma, -7);
    f.beta = mk_vec(b, WG_I16, k->c, k->beta, -7);
    f.y = mk_nhwc(b, WG_I32, k, NULL, 0);
    TR_FAIL_IF(!wg_bn_int_saved_init(&f.saved, b, k->n, k->h, k->w, k->c), "saved_init failed%s", "");
    wg_bn_int_forward_train(&f.x, &f.gamma, &f.beta, &f.y, &f.saved, running);
    return f;
}

static void run_free(run_fwd *f)
{
    wg_tensor_free(&f->x);
    wg_tensor_free(&f->gamma);
    wg_tensor_free(&f->beta);
    wg_tensor_free(&f->y);
    wg_bn_int_saved_free(&f->saved);
}

static void expect_forward(const run_fwd *f, const bn_case *k, const ref_fwd *r, int id)
{
    int64_t n = k->count * k->c;
    TR_EXPECT_I64(r->e_x, f->saved.e_x, "case %d: e_x", id);
    expect_tensor(&f->saved.mu, r->mu, k->c, -15, "mu", id);
    expect_tensor(&f->saved.sigma, r->sigma, k->c, -15, "sigma", id);
    expect_tensor(&f->saved.xhat, r->xhat, n, -7, "xhat", id);
    expect_tensor(&f->y, r->y, n, -14, "y", id);
    TR_EXPECT_I64(r->clamps, f->saved.clamps, "case %d: x-hat clamps", id);
}

/* ---- backward reference ------------------------------------------------------------ */

typedef struct bwd_data {
    wg_dtype dt;
    int e;
    int64_t *dy;
} bwd_data;

static bwd_data random_dy(tr_rng *r, const bn_case *k)
{
    static const wg_dtype dts[] = {WG_I8, WG_I8, WG_I8, WG_I16, WG_I32};
    bwd_data d = {dts[tr_next(r) % 5], (int)tr_range(r, -30, 2), alloc64(k->count * k->c)};
    int64_t bound = d.dt == WG_I8 ? 127 : 32767;
    int mag = (int)tr_range(r, 1, d.dt == WG_I8 ? 7 : 15);
    for (int64_t i = 0; i < k->count * k->c; i++) {
        int64_t v = tr_next(r) % 3 == 0 ? 0 : tr_i64_mag(r, mag); /* zeros: the ReLU mask */
        d.dy[i] = v > bound ? bound : (v < -bound ? -bound : v);
    }
    return d;
}

/* Run the backward pass and check dbeta, dgamma, the dx exponent rule and every dx.
 * Returns floor(log2(max |dx|)) (-1 when dx is 0): how many bits dx has above its grid. */
static int check_backward(wg_backend *b, const bn_case *k, run_fwd *f, const ref_fwd *rf, const bwd_data *d, int id)
{
    int64_t n = k->count * k->c, C = k->c, cnt = k->count;
    bn_case shape = *k;
    wg_tensor dy = mk_nhwc(b, d->dt, &shape, d->dy, d->e), dx = mk_nhwc(b, WG_I64, &shape, NULL, 0);
    wg_tensor dg = mk_vec(b, WG_I64, C, NULL, 0), db = mk_vec(b, WG_I64, C, NULL, 0);
    wg_bn_int_backward(&dy, &f->gamma, &f->saved, &dx, &dg, &db);
    i128 *bs = calloc((size_t)C, sizeof *bs), *gs = calloc((size_t)C, sizeof *gs);
    int64_t *want_b = alloc64(C), *want_g = alloc64(C), *dmax = alloc64(C), *hmax = alloc64(C);
    for (int64_t i = 0; i < n; i++) {
        int64_t ch = i % C, dv = d->dy[i], hv = rf->xhat[i];
        bs[ch] += dv;
        gs[ch] += (i128)dv * hv;
        if (llabs(dv) > dmax[ch]) dmax[ch] = llabs(dv);
        if (llabs(hv) > hmax[ch]) hmax[ch] = llabs(hv);
    }
    int emax = -1000;
    for (int64_t ch = 0; ch < C; ch++) {
        want_b[ch] = (int64_t)bs[ch];
        want_g[ch] = (int64_t)gs[ch];
        u128 pb = (u128)cnt * (u128)dmax[ch] * 16384 + rr_abs(bs[ch]) * 16384 + (u128)hmax[ch] * rr_abs(gs[ch]);
        if (k->gamma[ch] != 0 && pb != 0) {
            int e = rr_bitlen(rr_abs(k->gamma[ch])) + rr_bitlen(pb) - rr_bitlen((u128)rf->sigma[ch] * (u128)cnt) + 1;
            if (e > emax) emax = e;
        }
    }
    int f_want = 62 - emax > 62 ? 62 : 62 - emax;
    expect_tensor(&db, want_b, C, d->e, "dbeta", id);
    expect_tensor(&dg, want_g, C, d->e - 7, "dgamma", id);
    TR_EXPECT_I64(d->e - 6 - f_want, dx.exp, "case %d: dx exponent (F = %d)", id, f_want);
    int64_t *got = tr_tensor_get(&dx);
    uint64_t maxdx = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t ch = i % C;
        i128 p = (i128)cnt * 16384 * d->dy[i] - bs[ch] * 16384 - (i128)rf->xhat[i] * gs[ch];
        i128 gp = p * k->gamma[ch];
        TR_FAIL_IF(rr_bitlen(rr_abs(gp)) + f_want > 125, "case %d: numerator of dx[%" PRId64 "] overflows", id, i);
        i128 want = rr_div(gp * ((i128)1 << f_want), (i128)rf->sigma[ch] * cnt);
        TR_FAIL_IF(rr_abs(want) > ((u128)1 << 62), "case %d: dx[%" PRId64 "] above 2^62", id, i);
        TR_EXPECT_I64((int64_t)want, got[i], "case %d: dx[%" PRId64 "] (dy %" PRId64 ", xhat %" PRId64 ")", id, i,
                      d->dy[i], rf->xhat[i]);
        if ((uint64_t)llabs(got[i]) > maxdx) maxdx = (uint64_t)llabs(got[i]);
    }
    free(got);
    free(bs);
    free(gs);
    free(want_b);
    free(want_g);
    free(dmax);
    free(hmax);
    wg_tensor_free(&dy);
    wg_tensor_free(&dx);
    wg_tensor_free(&dg);
    wg_tensor_free(&db);
    return maxdx == 0 ? -1 : ref_floor_log2(maxdx);
}

/* ---- integer forward and backward: bit-exact ------------------------------------------ */

static void test_int_random(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {101};
    int min_bits = 1000;
    for (int id = 0; id < 160; id++) {
        bn_case k = random_case(&r, 12000, -50, 4);
        ref_fwd rf = ref_forward(&k, NULL, NULL);
        run_fwd f = run_forward(b, &k, NULL);
        expect_forward(&f, &k, &rf, id);
        bwd_data d = random_dy(&r, &k);
        int bits = check_backward(b, &k, &f, &rf, &d, id);
        if (bits >= 0 && bits < min_bits) min_bits = bits;
        free(d.dy);
        run_free(&f);
        ref_free(&rf);
        case_free(&k);
    }
    /* dx keeps far more than the 16 bits below its max-abs that E2 needs */
    TR_FAIL_IF(min_bits < 40, "dx has only %d bits above its grid", min_bits);
}

/* One channel by hand: x (int32 at e_in) -> want mu, sigma, x-hat (gamma 128, beta 0). */
static void hand_case(wg_backend *b, const int64_t *x, int64_t count, int e_in, int e_x, int64_t mu, int64_t sigma,
                      const int64_t *xhat, int64_t clamps, int id)
{
    bn_case k = {1, 1, count, 1, 0, e_in, NULL, NULL, NULL};
    case_alloc(&k);
    memcpy(k.x, x, (size_t)count * sizeof *x);
    k.gamma[0] = 128;
    run_fwd f = run_forward(b, &k, NULL);
    ref_fwd rf = ref_forward(&k, NULL, NULL);
    expect_forward(&f, &k, &rf, id); /* the reference agrees with the library... */
    TR_EXPECT_I64(e_x, rf.e_x, "hand %d: e_x", id); /* ...and both with the hand-derived values */
    TR_EXPECT_I64(mu, rf.mu[0], "hand %d: mu", id);
    TR_EXPECT_I64(sigma, rf.sigma[0], "hand %d: sigma", id);
    TR_EXPECT_I64(clamps, rf.clamps, "hand %d: clamps", id);
    for (int64_t i = 0; xhat && i < count; i++) TR_EXPECT_I64(xhat[i], rf.xhat[i], "hand %d: xhat[%" PRId64 "]", id, i);
    run_free(&f);
    ref_free(&rf);
    case_free(&k);
}

static void test_int_edges(void **state)
{
    wg_backend *b = *state;
    /* sqrt ties: {0,1} at 2^-15 has mean 1/2 (-> the even 0) and std 1/2 unit (-> 0), sigma 1;
     * {0,3}: mean 1.5 -> 2, std 1.5 -> 2, sigma 3, x-hat RNE(-256/3) = -85 and RNE(128/3) = 43 */
    hand_case(b, (int64_t[]){0, 1}, 2, -15, -15, 0, 1, (int64_t[]){0, 128}, 0, 0);
    hand_case(b, (int64_t[]){0, 3}, 2, -15, -15, 2, 3, (int64_t[]){-85, 43}, 0, 1);
    /* a constant channel: var 0 -> sigma = 1 unit, x-hat 0 */
    hand_case(b, (int64_t[]){1000, 1000, 1000, 1000}, 4, -10, -10, 32000, 1, (int64_t[]){0, 0, 0, 0}, 0, 2);
    /* one value: 7 at 2^-20 = 7/32 unit of 2^-15 -> mu 0; x-hat = 7/32 / 2^-15 ... = 28 / 128 */
    hand_case(b, (int64_t[]){7}, 1, -20, -20, 0, 1, (int64_t[]){28}, 0, 3);
    /* int32 extremes: max 2^31 - 1 narrows by 17 bits to 16384 at 2^17 (2^31 in value), the
     * mean saturates at 2^31 - 1 units, the channel is constant, x-hat clamps everywhere */
    hand_case(b, (int64_t[]){SAT31, SAT31, SAT31}, 3, 0, 17, SAT31, 1, (int64_t[]){32767, 32767, 32767}, 3, 4);
    /* INT32_MIN narrows like 2^31: x16 = {-16384, 16384, -16384, 0} at 2^3, mean -4096 units
     * (-2^30 on the grid 2^-15), std 13,585 units = 108,679 > 2^16: sigma saturates */
    hand_case(b, (int64_t[]){-SAT31, SAT31, INT32_MIN, 0}, 4, -14, 3, -(INT64_C(1) << 30), SAT31, NULL, 0, 5);
}

/* A clamp of a natural kind: one outlier among 70,000 zeros has x-hat sqrt(69,999) = 264.6 > 256. */
static void test_int_clamp(void **state)
{
    wg_backend *b = *state;
    int64_t count = 70000;
    int64_t *x = alloc64(count);
    x[123] = 1000;
    bn_case k = {1, 7, 10000, 1, 0, -7, NULL, NULL, NULL};
    case_alloc(&k);
    memcpy(k.x, x, (size_t)count * sizeof *x);
    k.gamma[0] = 128;
    run_fwd f = run_forward(b, &k, NULL);
    ref_fwd rf = ref_forward(&k, NULL, NULL);
    expect_forward(&f, &k, &rf, 0);
    TR_EXPECT_I64(1, rf.clamps, "outlier clamps%s", "");
    TR_EXPECT_I64(32767, rf.xhat[123], "outlier x-hat%s", "");
    run_free(&f);
    ref_free(&rf);
    case_free(&k);
    free(x);
}
