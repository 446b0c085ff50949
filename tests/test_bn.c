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
#define _POSIX_C_SOURCE 200809L /* fork, waitpid: two tests check for an internal-error abort */

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "cpu_rne.h"
#include "quant.h"
#include "bn.h"
#include "residual.h"
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

/* ---- test data, tensors, the library's passes ------------------------------------ */

typedef struct bn_case {
    int64_t n, h, w, c, count;
    int e_in;
    int64_t *x, *gamma, *beta; /* x: int32 values, NHWC; gamma, beta: int16 at 2^-7 */
} bn_case;

typedef struct ref_fwd {
    int e_x;
    int64_t *x16, *mu, *sigma, *xhat, *y, clamps;
} ref_fwd;

static int64_t *alloc64(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t)); }
static int64_t clamp_to(int64_t v, int64_t b) { return v > b ? b : (v < -b ? -b : v); }

static bn_case case_make(int64_t n, int64_t h, int64_t w, int64_t c, int e_in)
{
    bn_case k = {n, h, w, c, n * h * w, e_in, NULL, NULL, NULL};
    k.x = alloc64(k.count * c);
    k.gamma = alloc64(c);
    k.beta = alloc64(c);
    return k;
}

static void case_free(bn_case *k) { free(k->x), free(k->gamma), free(k->beta); }

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
            k->x[i * k->c + ch] = clamp_to(v, SAT31);
        }
        k->gamma[ch] = clamp_to(tr_i64_mag(r, (int)tr_range(r, 0, 15)), 32767);
        k->beta[ch] = clamp_to(tr_i64_mag(r, (int)tr_range(r, 0, 15)), 32767);
    }
    if (tr_next(r) % 16 == 0) k->x[tr_range(r, 0, k->count * k->c - 1)] = INT32_MIN;
}

/* Ragged C, count from 1 to a few thousand, input exponent in [e_lo, e_hi]. */
static bn_case random_case(tr_rng *r, int64_t max_elems, int e_lo, int e_hi)
{
    int64_t c = tr_next(r) % 4 == 0 ? tr_range(r, 1, 3) : tr_range(r, 1, 37), n, h, w;
    do {
        n = tr_range(r, 1, 8);
        h = tr_range(r, 1, 12);
        w = tr_range(r, 1, tr_next(r) % 3 == 0 ? 64 : 12);
    } while (n * h * w * c > max_elems);
    bn_case k = case_make(n, h, w, c, (int)tr_range(r, e_lo, e_hi));
    fill_x(r, &k, (int)tr_range(r, 1, 31));
    return k;
}

static wg_tensor mk_nhwc(wg_backend *b, wg_dtype dt, const bn_case *k, const int64_t *q, int exp)
{
    wg_tensor t;
    TR_FAIL_IF(!wg_tensor_init_nhwc(&t, b, dt, k->n, k->h, k->w, k->c, exp), "tensor init failed%s", "");
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

/* The reference forward pass; with mu_in and sigma_in (evaluation) the statistics are given. */
static ref_fwd ref_forward(const bn_case *k, const int64_t *mu_in, const int64_t *sigma_in)
{
    int64_t n = k->count * k->c;
    ref_fwd r = {0, alloc64(n), alloc64(k->c), alloc64(k->c), alloc64(n), alloc64(n), 0};
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

static void ref_free(ref_fwd *r) { free(r->x16), free(r->mu), free(r->sigma), free(r->xhat), free(r->y); }

/* The library's tensors for one case; they stay alive for the backward pass. */
typedef struct bn_run {
    wg_tensor x, gamma, beta, y;
    wg_bn_int_saved saved;
} bn_run;

static void run_free(bn_run *f)
{
    wg_tensor_free(&f->x), wg_tensor_free(&f->gamma), wg_tensor_free(&f->beta), wg_tensor_free(&f->y);
    wg_bn_int_saved_free(&f->saved);
}

/* max |x| of a case, as the producer of a BN input hands it over (odd cases) or not
 * (even: WG_QUANT_MAX_UNKNOWN, the narrowing takes it itself): both must give the same. */
static uint64_t given_max(const int64_t *x, int64_t n, int id)
{
    if (id % 2 == 0) return WG_QUANT_MAX_UNKNOWN;
    uint64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t a = (uint64_t)(x[i] < 0 ? -x[i] : x[i]);
        m = a > m ? a : m;
    }
    return m;
}

/* Run the library's training forward pass (running may be NULL) or, when eval is set,
 * its evaluation pass, and compare everything with the reference, which is returned.
 * eval_mu, eval_sigma: the statistics the reference derives from the running averages.
 * keep: receives the library's tensors (else they are freed). */
static ref_fwd check_forward(wg_backend *b, const bn_case *k, wg_bn_running *running, const int64_t *eval_mu,
                             const int64_t *eval_sigma, bn_run *keep, int id)
{
    bn_run f = {.x = mk_nhwc(b, WG_I32, k, k->x, k->e_in), .gamma = mk_vec(b, WG_I16, k->c, k->gamma, -7),
                .beta = mk_vec(b, WG_I16, k->c, k->beta, -7), .y = mk_nhwc(b, WG_I32, k, NULL, 0)};
    TR_FAIL_IF(!wg_bn_int_saved_init(&f.saved, b, k->n, k->h, k->w, k->c), "saved_init failed%s", "");
    uint64_t x_max = given_max(k->x, k->count * k->c, id);
    uint64_t relu_max = eval_mu ? wg_bn_int_forward_eval(&f.x, x_max, &f.gamma, &f.beta, running, &f.y, &f.saved)
                                : wg_bn_int_forward_train(&f.x, x_max, &f.gamma, &f.beta, &f.y, &f.saved, running);
    ref_fwd r = ref_forward(k, eval_mu, eval_sigma);
    int64_t n = k->count * k->c, want_max = 0;
    for (int64_t i = 0; i < n; i++) want_max = r.y[i] > want_max ? r.y[i] : want_max;
    TR_EXPECT_I64(want_max, (int64_t)relu_max, "case %d: the returned max(0, max y)", id);
    TR_EXPECT_I64(r.e_x, f.saved.e_x, "case %d: e_x", id);
    expect_tensor(&f.saved.mu, r.mu, k->c, -15, "mu", id);
    expect_tensor(&f.saved.sigma, r.sigma, k->c, -15, "sigma", id);
    expect_tensor(&f.saved.xhat, r.xhat, n, -7, "xhat", id);
    expect_tensor(&f.y, r.y, n, -14, "y", id);
    TR_EXPECT_I64(r.clamps, f.saved.clamps, "case %d: x-hat clamps", id);
    if (keep) *keep = f;
    else run_free(&f);
    return r;
}

/* ---- backward reference ------------------------------------------------------------ */

typedef struct bwd_data {
    wg_dtype dt;
    int e;
    int64_t *dy;
} bwd_data;

/* E1-like errors with zeros (the ReLU mask); now and then int16 or int32 containers. */
static bwd_data random_dy(tr_rng *r, const bn_case *k)
{
    static const wg_dtype dts[] = {WG_I8, WG_I8, WG_I8, WG_I16, WG_I32};
    bwd_data d = {dts[tr_next(r) % 5], (int)tr_range(r, -30, 2), alloc64(k->count * k->c)};
    int mag = (int)tr_range(r, 1, d.dt == WG_I8 ? 7 : 15);
    for (int64_t i = 0; i < k->count * k->c; i++)
        d.dy[i] = tr_next(r) % 3 == 0 ? 0 : clamp_to(tr_i64_mag(r, mag), d.dt == WG_I8 ? 127 : 32767);
    return d;
}

/* Run the backward pass and check dbeta, dgamma, the dx exponent rule (section 7.5) and
 * every dx. Returns floor(log2(max |dx|)) (-1 when dx is 0): dx's bits above its grid. */
static int check_backward(wg_backend *b, const bn_case *k, bn_run *f, const ref_fwd *rf, const bwd_data *d, int id)
{
    int64_t n = k->count * k->c, C = k->c, cnt = k->count;
    wg_tensor dy = mk_nhwc(b, d->dt, k, d->dy, d->e), dx = mk_nhwc(b, WG_I64, k, NULL, 0);
    wg_tensor dg = mk_vec(b, WG_I64, C, NULL, 0), db = mk_vec(b, WG_I64, C, NULL, 0);
    uint64_t dx_max = wg_bn_int_backward(&dy, &f->gamma, &f->saved, &dx, &dg, &db);
    i128 *bs = calloc((size_t)C, sizeof *bs), *gs = calloc((size_t)C, sizeof *gs);
    int64_t *want = alloc64(3 * C), *dmax = alloc64(C), *hmax = alloc64(C);
    for (int64_t i = 0; i < n; i++) {
        int64_t ch = i % C, dv = d->dy[i], hv = rf->xhat[i];
        bs[ch] += dv;
        gs[ch] += (i128)dv * hv;
        dmax[ch] = llabs(dv) > dmax[ch] ? llabs(dv) : dmax[ch];
        hmax[ch] = llabs(hv) > hmax[ch] ? llabs(hv) : hmax[ch];
    }
    int emax = -1000;
    for (int64_t ch = 0; ch < C; ch++) {
        want[ch] = (int64_t)bs[ch];
        want[C + ch] = (int64_t)gs[ch];
        u128 pb = (u128)cnt * (u128)dmax[ch] * 16384 + rr_abs(bs[ch]) * 16384 + (u128)hmax[ch] * rr_abs(gs[ch]);
        int e = rr_bitlen(rr_abs(k->gamma[ch])) + rr_bitlen(pb) - rr_bitlen((u128)rf->sigma[ch] * (u128)cnt) + 1;
        if (k->gamma[ch] != 0 && pb != 0 && e > emax) emax = e;
    }
    int fw = 62 - emax > 62 ? 62 : 62 - emax;
    expect_tensor(&db, want, C, d->e, "dbeta", id);
    expect_tensor(&dg, want + C, C, d->e - 7, "dgamma", id);
    TR_EXPECT_I64(d->e - 6 - fw, dx.exp, "case %d: dx exponent (F = %d)", id, fw);
    int64_t *got = tr_tensor_get(&dx);
    uint64_t maxdx = 0;
    for (int64_t i = 0; i < n; i++) { /* gamma P 2^F / (sigma count), P = 2^14 count dy - 2^14 B - xhat G */
        int64_t ch = i % C;
        i128 gp = ((i128)cnt * 16384 * d->dy[i] - bs[ch] * 16384 - (i128)rf->xhat[i] * gs[ch]) * k->gamma[ch];
        TR_FAIL_IF(rr_bitlen(rr_abs(gp)) + fw > 125, "case %d: numerator of dx[%" PRId64 "] overflows", id, i);
        i128 q = rr_div(gp * ((i128)1 << fw), (i128)rf->sigma[ch] * cnt);
        TR_FAIL_IF(rr_abs(q) > ((u128)1 << 62), "case %d: dx[%" PRId64 "] above 2^62", id, i);
        TR_EXPECT_I64((int64_t)q, got[i], "case %d: dx[%" PRId64 "] (dy %" PRId64 ", xhat %" PRId64 ")", id, i,
                      d->dy[i], rf->xhat[i]);
        maxdx = (uint64_t)llabs(got[i]) > maxdx ? (uint64_t)llabs(got[i]) : maxdx;
    }
    TR_EXPECT_I64(maxdx, dx_max, "case %d: the returned max |dx|", id); /* <= 2^62 */
    free(got), free(bs), free(gs), free(want), free(dmax), free(hmax);
    wg_tensor_free(&dy), wg_tensor_free(&dx), wg_tensor_free(&dg), wg_tensor_free(&db);
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
        bn_run f;
        ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, &f, id);
        bwd_data d = random_dy(&r, &k);
        int bits = check_backward(b, &k, &f, &rf, &d, id);
        min_bits = bits >= 0 && bits < min_bits ? bits : min_bits;
        free(d.dy);
        run_free(&f);
        ref_free(&rf);
        case_free(&k);
    }
    /* dx keeps far more than the 16 bits below its max-abs that E2 needs */
    TR_FAIL_IF(min_bits < 40, "dx has only %d bits above its grid", min_bits);
}

/* Case id of the fused entries' tests: the first nrandom from random_case (input
 * exponents from e_lo), the rest network shapes large enough for threads, and channel
 * counts beyond a tile's 128 elements (a tile is then one row). */
static bn_case fused_case(tr_rng *r, int id, int nrandom, int e_lo)
{
    static const int64_t big[][4] = {{16, 7, 7, 64}, {8, 14, 14, 32}, {4, 28, 28, 16}, {3, 9, 11, 24},
                                     {2, 3, 5, 257},  {1, 4, 4, 520},  {4, 6, 6, 130},   {2, 7, 7, 2048}};
    if (id < nrandom) return random_case(r, 12000, e_lo, 4);
    const int64_t *sh = big[id % 8];
    bn_case k = case_make(sh[0], sh[1], sh[2], sh[3], (int)tr_range(r, -20, -8));
    fill_x(r, &k, (int)tr_range(r, 8, 31));
    return k;
}

/* ---- the fused forward entry (wg_bn_int_forward_train_act) ---------------------------- */

/* wg_bn_int_forward_train_act against the pair it fuses, wg_bn_int_forward_train then
 * wg_relu_quant_forward_max (each checked against references elsewhere): the same A and
 * exponent, saved state and running averages. x in an int32 container (the fused
 * narrowing) or now and then int64 (the backend's narrowing). */
static void check_forward_act(wg_backend *b, const bn_case *k, wg_dtype xdt, int bits, wg_act_exponent rule, int id)
{
    int64_t n = k->count * k->c;
    wg_tensor x = mk_nhwc(b, xdt, k, k->x, k->e_in), g = mk_vec(b, WG_I16, k->c, k->gamma, -7);
    wg_tensor be = mk_vec(b, WG_I16, k->c, k->beta, -7);
    wg_tensor y1 = mk_nhwc(b, WG_I32, k, NULL, 0), y2 = mk_nhwc(b, WG_I32, k, NULL, 0);
    wg_tensor a1 = mk_nhwc(b, WG_I8, k, NULL, 0), a2 = mk_nhwc(b, WG_I8, k, NULL, 0);
    wg_bn_int_saved s1, s2;
    wg_bn_running r1, r2;
    TR_FAIL_IF(!wg_bn_int_saved_init(&s1, b, k->n, k->h, k->w, k->c) ||
                   !wg_bn_int_saved_init(&s2, b, k->n, k->h, k->w, k->c) || !wg_bn_running_init(&r1, b, k->c) ||
                   !wg_bn_running_init(&r2, b, k->c),
               "init failed%s", "");
    uint64_t x_max = given_max(k->x, n, id);
    uint64_t relu_max = wg_bn_int_forward_train(&x, x_max, &g, &be, &y1, &s1, &r1);
    wg_relu_quant_forward_max(&y1, &a1, bits, rule, relu_max);
    wg_bn_int_forward_train_act(&x, x_max, &g, &be, &y2, &a2, bits, rule, &s2, &r2);
    int64_t *want = tr_tensor_get(&a1);
    expect_tensor(&a2, want, n, a1.exp, "fused A", id);
    free(want);
    const wg_tensor *pairs[][2] = {{&s1.xhat, &s2.xhat}, {&s1.mu, &s2.mu}, {&s1.sigma, &s2.sigma},
                                   {&r1.mean, &r2.mean}, {&r1.sigma, &r2.sigma}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        want = tr_tensor_get(pairs[i][0]);
        expect_tensor(pairs[i][1], want, wg_tensor_numel(pairs[i][0]), pairs[i][0]->exp, "fused saved state", id);
        free(want);
    }
    TR_EXPECT_I64(s1.e_x, s2.e_x, "case %d: fused e_x", id);
    TR_EXPECT_I64(s1.clamps, s2.clamps, "case %d: fused clamps", id);
    wg_tensor *ts[] = {&x, &g, &be, &y1, &y2, &a1, &a2};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) wg_tensor_free(ts[i]);
    wg_bn_int_saved_free(&s1), wg_bn_int_saved_free(&s2);
    wg_bn_running_free(&r1), wg_bn_running_free(&r2);
}

/* Random cases (ragged C; input exponents from -50, so x-hat's 64-bit form too) and
 * threaded sizes; both activation rules, 8 and 4 bits. */
static void test_int_forward_act(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {5151};
    for (int id = 0; id < 68; id++) {
        bn_case k = fused_case(&r, id, 52, -50);
        check_forward_act(b, &k, id % 5 == 4 ? WG_I64 : WG_I32, id % 3 == 2 ? 4 : 8,
                          id % 4 == 1 ? WG_ACT_FIXED : WG_ACT_FIT, 800 + id);
        case_free(&k);
    }
}

/* ---- the fused backward entry (wg_bn_int_backward_act) --------------------------------- */

/* One error at the activation: int64 (E1 inside the sums pass) unless dt says int32, of
 * magnitude 2^mag (a small one takes E1's left shifts: the backend's pass first). */
static wg_tensor act_err(wg_backend *b, tr_rng *r, const bn_case *k, wg_dtype dt, int mag, int e, int64_t **vals)
{
    int64_t n = k->count * k->c;
    int64_t *v = alloc64(n);
    for (int64_t i = 0; i < n; i++) /* mag < 0: all zero (dx is then 0: E2's fallback) */
        v[i] = mag < 0 || tr_next(r) % 5 == 0 ? 0 : tr_i64_mag(r, (int)tr_range(r, 0, mag));
    *vals = v;
    return mk_nhwc(b, dt, k, v, e);
}

/* wg_bn_int_backward_act against the chain it fuses, run from the library's parts: E1
 * (wg_quant_shift_max), ReLU's mask from the reference's y, wg_bn_int_backward, and E2
 * (wg_quant_flag_max, or wg_quant_shift_max for one part) or wg_error_accumulate. dy, dx
 * or E2's parts or the sum, dgamma, dbeta, their exponents and the returned maximum must
 * be the same. */
static void check_backward_act(wg_backend *b, tr_rng *r, const bn_case *k, bn_run *f, const ref_fwd *rf, int id)
{
    int64_t n = k->count * k->c, C = k->c;
    static const int mags[] = {62, 40, 31, 20, 9, 3};
    wg_dtype dt = id % 4 == 3 ? WG_I32 : WG_I64;
    int bits = id % 3 == 2 ? 5 : 8, mag = mags[id % 6] > 31 && dt == WG_I32 ? 31 : mags[id % 6];
    int64_t *ev;
    wg_tensor err = act_err(b, r, k, dt, id % 7 == 6 ? -1 : mag, (int)tr_range(r, -40, 0), &ev);
    uint64_t err_max = given_max(ev, n, id);
    /* the chain */
    wg_tensor e1 = mk_nhwc(b, WG_I8, k, NULL, 0), dx1 = mk_nhwc(b, WG_I64, k, NULL, 0);
    wg_tensor dg1 = mk_vec(b, WG_I64, C, NULL, 0), db1 = mk_vec(b, WG_I64, C, NULL, 0);
    wg_quant_shift_max(&e1, &err, bits, err_max);
    int64_t *masked = tr_tensor_get(&e1);
    for (int64_t i = 0; i < n; i++) masked[i] = rf->y[i] > 0 ? masked[i] : 0;
    wg_tensor e1m = mk_nhwc(b, WG_I8, k, masked, e1.exp);
    uint64_t max1 = wg_bn_int_backward(&e1m, &f->gamma, &f->saved, &dx1, &dg1, &db1);
    /* the fused entry: dx, or E2's two parts, or E1's rule as E2 ([quant] e2 = shift), or
     * dx added into a residual error (grids close, far apart, or far with that error 0) */
    int mode = id % 4, e2_bits = id % 5 == 4 ? 6 : 8;
    /* far apart only when one side is zero (else an internal error, residual.c) */
    int64_t *accv = alloc64(n);
    bool acc_zero = id % 8 == 7, far = acc_zero || id % 7 == 6;
    int acc_exp = dx1.exp + (far ? (id % 2 ? 40 : -45) : 0) + (int)tr_range(r, -20, 20);
    for (int64_t i = 0; i < n; i++) accv[i] = acc_zero ? 0 : tr_i64_mag(r, (int)tr_range(r, 0, 40));
    wg_tensor acc1 = mk_nhwc(b, WG_I64, k, accv, acc_exp), acc2 = mk_nhwc(b, WG_I64, k, accv, acc_exp);
    wg_tensor dy = mk_nhwc(b, WG_I8, k, NULL, 0), dx = mk_nhwc(b, WG_I64, k, NULL, 0);
    wg_tensor dg = mk_vec(b, WG_I64, C, NULL, 0), db = mk_vec(b, WG_I64, C, NULL, 0);
    wg_tensor pc = mk_nhwc(b, WG_I8, k, NULL, 0), pf = mk_nhwc(b, WG_I8, k, NULL, 0);
    wg_tensor pc1 = mk_nhwc(b, WG_I8, k, NULL, 0), pf1 = mk_nhwc(b, WG_I8, k, NULL, 0);
    wg_bn_int_bwd_e2 e2 = {&pc, mode == 1 ? &pf : NULL, e2_bits};
    uint64_t max2 = wg_bn_int_backward_act(&err, err_max, bits, &f->gamma, &f->beta, &f->saved, &dy, &dx,
                                           mode == 1 || mode == 2 ? &e2 : NULL, mode == 3 ? &acc2 : NULL, &dg, &db);
    expect_tensor(&dy, masked, n, e1.exp, "fused dy", id);
    int64_t *want = NULL;
    if (mode == 0) {
        want = tr_tensor_get(&dx1);
        expect_tensor(&dx, want, n, dx1.exp, "fused dx", id);
    } else if (mode == 3) {
        max1 = wg_error_accumulate(&acc1, &dx1);
        want = tr_tensor_get(&acc1);
        expect_tensor(&acc2, want, n, acc1.exp, "fused sum into the residual error", id);
    } else {
        if (mode == 1) wg_quant_flag_max(&pc1, &pf1, &dx1, e2_bits, max1);
        else wg_quant_shift_max(&pc1, &dx1, e2_bits, max1);
        want = tr_tensor_get(&pc1);
        expect_tensor(&pc, want, n, pc1.exp, "fused E2 coarse part", id);
        if (mode == 1) {
            free(want);
            want = tr_tensor_get(&pf1);
            expect_tensor(&pf, want, n, pf1.exp, "fused E2 fine part", id);
        }
    }
    free(want);
    want = tr_tensor_get(&dg1);
    expect_tensor(&dg, want, C, dg1.exp, "fused dgamma", id);
    free(want);
    want = tr_tensor_get(&db1);
    expect_tensor(&db, want, C, db1.exp, "fused dbeta", id);
    if (mode == 1 || mode == 2) max1 = WG_QUANT_MAX_UNKNOWN; /* E2 has used dx's scale */
    TR_EXPECT_I64((int64_t)max1, (int64_t)max2, "case %d: fused max |dx|", id);
    free(want), free(masked), free(ev);
    free(accv);
    wg_tensor *ts[] = {&err, &e1, &e1m, &dx1, &dg1, &db1, &dy, &dx, &dg, &db, &pc, &pf, &pc1, &pf1, &acc1, &acc2};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) wg_tensor_free(ts[i]);
}

/* Random cases (ragged C) and threaded sizes, every E1 path: int64 errors of large and
 * small magnitude (right and left shifts), int32 errors, 8 and 5 bits, the error's
 * maximum handed over or not; dx out, or E2's parts (8 and 6 bits) from the compact dx,
 * or from an int64 dx when dx is 0 (an all-zero error). */
static void test_int_backward_act(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {4242};
    for (int id = 0; id < 124; id++) {
        bn_case k = fused_case(&r, id, 100, -30);
        bn_run f;
        ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, &f, 700 + id);
        check_backward_act(b, &r, &k, &f, &rf, id);
        run_free(&f);
        ref_free(&rf);
        case_free(&k);
    }
}

/* One channel by hand: x (int32 at e_in) -> e_x, mu, sigma, x-hat, clamps (gamma 1). */
static void hand_case(wg_backend *b, const int64_t *x, int64_t count, int e_in, int e_x, int64_t mu, int64_t sigma,
                      const int64_t *xhat, int64_t clamps, int id)
{
    bn_case k = case_make(1, 1, count, 1, e_in);
    memcpy(k.x, x, (size_t)count * sizeof *x);
    k.gamma[0] = 128;
    ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, NULL, id); /* the library agrees with the reference... */
    TR_EXPECT_I64(e_x, rf.e_x, "hand %d: e_x", id); /* ...and both with the hand-derived values */
    TR_EXPECT_I64(mu, rf.mu[0], "hand %d: mu", id);
    TR_EXPECT_I64(sigma, rf.sigma[0], "hand %d: sigma", id);
    TR_EXPECT_I64(clamps, rf.clamps, "hand %d: clamps", id);
    for (int64_t i = 0; xhat && i < count; i++) TR_EXPECT_I64(xhat[i], rf.xhat[i], "hand %d: xhat[%" PRId64 "]", id, i);
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
    /* coarse grids: at e_x = 27 (e_x + 22 >= 48) every nonzero x16 clamps, and a zero gives
     * RNE(-mu 2^7 / sigma) = -128 with both statistics saturated (5 narrows to 0); at
     * e_x = 60 the mean's scaling 2^75 and the variance's 2^152 leave 128 bits: saturated */
    hand_case(b, (int64_t[]){SAT31, 0, 5}, 3, 10, 27, SAT31, SAT31, (int64_t[]){32767, -128, -128}, 1, 6);
    hand_case(b, (int64_t[]){1, 2, 3}, 3, 60, 60, SAT31, SAT31, (int64_t[]){32767, 32767, 32767}, 3, 7);
}

/* The exact division of wg_bn_elem.h (reciprocal, then corrections) against '/' and '%',
 * over divisors of every length and numerators up to d * 2^64 - 1. */
static void test_division(void **state)
{
    (void)state;
    tr_rng r = {99};
    for (int it = 0; it < 200000; it++) {
        int bits = (int)tr_range(&r, 1, 63);
        uint64_t d = tr_next(&r) >> (64 - bits);
        if (d == 0) d = 1;
        if (it % 7 == 0) d = (UINT64_C(1) << (bits - 1)) + (uint64_t)tr_range(&r, -1, 1) * (bits > 1);
        u128 lim = (u128)d << 64, n = ((u128)tr_next(&r) << 64 | tr_next(&r)) % lim;
        if (it % 5 == 0) n = lim - 1 - (u128)tr_range(&r, 0, 3) * d;
        if (it % 11 == 0) n = (u128)d * tr_next(&r) + (u128)tr_range(&r, 0, 1) * (d - 1);
        wg_bn_div dv = wg_bn_div_init(d);
        uint64_t rem, q = wg_bn_divmod(n, &dv, &rem);
        TR_FAIL_IF((u128)q != n / d || (u128)rem != n % d, "divmod(%#" PRIx64 ":%016" PRIx64 ", %" PRIu64 ")",
                   (uint64_t)(n >> 64), (uint64_t)n, d);
        if (n / d < UINT64_MAX) TR_EXPECT_I64((int64_t)rr_div((i128)n, (i128)d), (int64_t)wg_bn_rne_div(n, &dv),
                                              "rne_div(n, %" PRIu64 ")", d);
        /* the 64-bit path: its hint is one short when the remainder is a tiny fraction of d */
        uint64_t n64 = it % 3 == 0 ? (uint64_t)n : d * (tr_next(&r) >> (bits < 20 ? 20 : bits)) + tr_next(&r) % 4;
        if (it % 13 == 0) n64 = d * (tr_next(&r) >> bits) + d / 2 + (uint64_t)tr_range(&r, 0, 1); /* ties */
        TR_EXPECT_I64((int64_t)rr_div((i128)n64, (i128)d), (int64_t)wg_bn_rne_div64(n64, d, UINT64_MAX / d),
                      "rne_div64(%" PRIu64 ", %" PRIu64 ")", n64, d);
    }
}

/* ---- the fast elementwise forms against the reference formulas ------------------------ */

/* A magnitude-spread integer in [lo, hi]: extremes and small values over-represented. */
static int64_t spread(tr_rng *r, int64_t lo, int64_t hi)
{
    int64_t v = tr_i64_mag(r, (int)tr_range(r, 0, 63));
    v = lo >= 0 && v < 0 ? -v : v;
    switch (tr_next(r) % 8) {
    case 0: return lo;
    case 1: return hi;
    case 2: v = tr_range(r, -3, 3); break;
    default: break;
    }
    return v < lo ? lo : (v > hi ? hi : v);
}

/* wg_bn_xhat_fast (wg_bn_xhat_lin_init) against wg_bn_xhat (wg_bn_xhat_chan_init),
 * exhaustively over x16 in [-32767, 32767], for channels over the whole domain: e_x from
 * -54 to 60 (both 128-bit cases of the reference, m = e_x + 22 < 0 and m >= 48), sigma and
 * mu at their extremes, and channels built to put many elements on rounding ties (small
 * even sigma) and at the clamp (sigma near 2^m, where x16 = 32767 lands near x-hat
 * 32767.5). The clamp flag must agree too. */
static void test_fast_xhat(void **state)
{
    (void)state;
    tr_rng r = {707};
    int64_t ties = 0, clamps = 0, checked = 0;
    for (int it = 0; it < 260; it++) {
        static const int e_fixed[] = {WG_BN_EX_MIN, -40, -23, -22, -21, 25, 26, 27, 60};
        int e_x = it < 9 ? e_fixed[it] : it % 2 ? (int)tr_range(&r, -30, -5) : (int)tr_range(&r, WG_BN_EX_MIN, 60);
        int m = e_x + 22, mc = m < 0 ? 0 : (m > 30 ? 30 : m);
        int64_t sigma, mu = spread(&r, -SAT31, SAT31);
        switch (it % 4) {
        case 0: sigma = spread(&r, 1, SAT31); break;
        case 1: sigma = 2 * tr_range(&r, 1, 4); break;                                      /* ties */
        case 2: sigma = clamp_to((INT64_C(1) << mc) + tr_range(&r, -3, 3), SAT31); break; /* the clamp */
        default: sigma = tr_range(&r, 1, SAT31); break;
        }
        if (sigma < 1) sigma = 1;
        if (it % 4 != 0 && tr_next(&r) % 2) mu = tr_range(&r, -1000, 1000);
        wg_bn_xhat_chan ref = wg_bn_xhat_chan_init(mu, sigma, e_x);
        wg_bn_lin k = wg_bn_xhat_lin_init(mu, sigma, e_x);
        int j = m < 0 ? -m : 0;
        i128 d = (i128)sigma << j;
        for (int64_t x = -32767; x <= 32767; x++) {
            int c_ref = 0;
            int64_t c_fast = -1;
            int64_t want = wg_bn_xhat(x, e_x, &ref, &c_ref), got = wg_bn_xhat_fast(x, &k, &c_fast);
            if (want != got || c_ref != c_fast)
                TR_FAIL_IF(1, "x-hat(x16 %" PRId64 ", e_x %d, mu %" PRId64 ", sigma %" PRId64 "): %" PRId64
                           " (clamped %d), fast %" PRId64 " (clamped %" PRId64 ")", x, e_x, mu, sigma, want, c_ref,
                           got, c_fast);
            if (m < 48) {
                i128 num = m >= 0 ? (i128)x * ((i128)1 << m) - (i128)mu * 128
                                  : (i128)x - (i128)mu * ((i128)1 << (7 + j));
                ties += (2 * num) % d == 0 && num % d != 0 && !c_ref;
            }
            clamps += c_ref;
            checked++;
        }
    }
    TR_FAIL_IF(ties < 100000 || clamps < 1000000 || checked - clamps < 1000000,
               "the sweep met only %" PRId64 " ties and %" PRId64 " clamps", ties, clamps);
    TR_FAIL_IF(checked != 260 * INT64_C(65535), "checked %" PRId64 " elements", checked);
}

/* wg_bn_xhat32_elem (wg_bn_xhat32_init) against wg_bn_xhat, exhaustively over x16 in
 * [-32767, 32767], for channels over the 32-bit form's domain e_x >= -22 (m = e_x + 22 from 0
 * to 82: A modulo 2^32 nonzero and zero, the cap at 47), sigma and mu at their extremes
 * (sigma = 2^31 - 1: 2r + 1 near 2^32), channels with many ties (small even sigma), with the
 * clamp interval's ends inside the domain (sigma near 2^m), and with an empty interval. The
 * clamp flag must agree too; every channel's ends lo and hi are checked where they lie inside
 * [-32767, 32767]. */
static void test_fast_xhat32(void **state)
{
    (void)state;
    tr_rng r = {717};
    int64_t ties = 0, clamps = 0, checked = 0, ends = 0, empty = 0, wide_m = 0, big_sigma = 0;
    for (int it = 0; it < 300; it++) {
        static const int e_fixed[] = {-22, -21, -15, -14, 9, 10, 25, 26, 60};
        int e_x = it < 9 ? e_fixed[it] : it % 2 ? (int)tr_range(&r, -22, -5) : (int)tr_range(&r, -22, 60);
        int m = e_x + 22, mc = m > 30 ? 30 : m;
        int64_t sigma, mu = spread(&r, -SAT31, SAT31);
        switch (it % 5) {
        case 0: sigma = spread(&r, 1, SAT31); break;
        case 1: sigma = 2 * tr_range(&r, 1, 4); break;                                      /* ties */
        case 2: sigma = clamp_to((INT64_C(1) << mc) + tr_range(&r, -3, 3), SAT31); break; /* the clamp */
        case 3: sigma = SAT31 - tr_range(&r, 0, 3); break;
        default: sigma = tr_range(&r, 1, SAT31); break;
        }
        if (sigma < 1) sigma = 1;
        if (it % 5 != 0 && tr_next(&r) % 2) mu = tr_range(&r, -1000, 1000);
        TR_FAIL_IF(!wg_bn_xhat32_ok(e_x), "e_x %d", e_x);
        wg_bn_xhat_chan ref = wg_bn_xhat_chan_init(mu, sigma, e_x);
        wg_bn_xhat32 k = wg_bn_xhat32_init(mu, sigma, e_x);
        empty += k.lo > k.hi;
        wide_m += m >= 32;
        big_sigma += sigma >= (INT64_C(1) << 30);
        int prev_clamp_neg = 1;
        for (int64_t x = -32767; x <= 32767; x++) {
            int c_ref = 0;
            int32_t c_fast = -1;
            int64_t want = wg_bn_xhat(x, e_x, &ref, &c_ref), got = wg_bn_xhat32_elem((int32_t)x, &k, &c_fast);
            if (want != got || c_ref != c_fast)
                TR_FAIL_IF(1, "x-hat32(x16 %" PRId64 ", e_x %d, mu %" PRId64 ", sigma %" PRId64 "): %" PRId64
                           " (clamped %d), fast %" PRId64 " (clamped %d; lo %d, hi %d)", x, e_x, mu, sigma, want,
                           c_ref, got, (int)c_fast, (int)k.lo, (int)k.hi);
            if (m < 48) {
                i128 num = (i128)x * ((i128)1 << m) - (i128)mu * 128;
                ties += (2 * num) % sigma == 0 && num % sigma != 0 && !c_ref;
            }
            int clamp_neg = c_ref && want < 0;
            ends += (x == k.lo && prev_clamp_neg && !clamp_neg) + (x == k.hi && !c_ref && x < 32767);
            prev_clamp_neg = clamp_neg;
            clamps += c_ref;
            checked++;
        }
    }
    TR_FAIL_IF(ties < 50000 || clamps < 1000000 || checked - clamps < 1000000 || ends < 150 || empty < 10 ||
                   wide_m < 30 || big_sigma < 60,
               "the sweep met only %" PRId64 " ties, %" PRId64 " clamps, %" PRId64 " interval ends, %" PRId64
               " empty intervals, %" PRId64 " channels with m >= 32, %" PRId64 " with sigma >= 2^30",
               ties, clamps, ends, empty, wide_m, big_sigma);
}

/* wg_bn_dx_fast (wg_bn_dx_lin_init) against wg_bn_dx (wg_bn_bwd_chan_init), and the
 * estimates wg_bn_dxe_elem and wg_bn_dxc_elem against it (dx and wg_compact(dx)) wherever
 * they say they decided. A channel is
 * count, sigma, gamma, the maxima dmax, hmax and sums B, G within what they allow (|B| <=
 * dmax count, |G| <= dmax hmax count < 2^62), each at its extremes now and then; F is any
 * exponent the rule allows for it (<= 62 - E), mostly the largest. Every channel is checked
 * on a grid of (dy, xhat) with |dy| <= dmax, |xhat| <= hmax: the extremes, 0, +-1 and random
 * values (every dy when dmax <= 40). Some channels are built for ties (gamma = +-1, sigma
 * count = 2 or 6, F = 0, G odd: P odd, so P / 2 lands on halves). */
static void test_fast_dx(void **state)
{
    (void)state;
    tr_rng r = {808};
    int64_t ties = 0, checked = 0, fmax_hits = 0, wide = 0, tie_undecided = 0;
    int64_t typical = 0, undecided[2][2] = {{0}}; /* [typical][dx, compact] */
    for (int it = 0; it < 4000; it++) {
        bool tie = it % 8 == 7;
        uint64_t count = tie ? (uint64_t)tr_range(&r, 1, 3) : (uint64_t)spread(&r, 1, WG_BN_COUNT_MAX);
        int64_t sigma = tie ? (count == 3 ? 2 : 6 / (int64_t)count) : spread(&r, 1, SAT31);
        if (tie && count == 3) count = 1;
        int64_t gamma = tie ? ((tr_next(&r) & 1) ? 1 : -1) : spread(&r, -32768, 32767);
        int64_t dmax = tr_next(&r) % 6 == 0 ? 0 : spread(&r, 1, tr_next(&r) % 2 ? 127 : WG_BN_DY_MAX);
        int64_t hmax = tr_next(&r) % 8 == 0 ? 0 : spread(&r, 1, 32767);
        i128 bb = (i128)dmax * count, gb = (i128)dmax * hmax * count;
        if (gb >= ((i128)1 << 62)) gb = ((i128)1 << 62) - 1;
        int64_t b = bb == 0 ? 0 : spread(&r, -(int64_t)bb, (int64_t)bb);
        int64_t g = gb == 0 ? 0 : spread(&r, -(int64_t)gb, (int64_t)gb);
        if (tie && gb > 0) g |= 1;
        int e = wg_bn_dx_bound_exp(gamma, sigma, count, b, g, (uint64_t)dmax, (uint64_t)hmax);
        int fmax = e == WG_BN_DX_NO_BOUND ? 62 : (62 - e > 62 ? 62 : 62 - e);
        TR_FAIL_IF(fmax < 0, "bound exponent %d (gamma %" PRId64 ", sigma %" PRId64 ", count %" PRIu64 ")", e, gamma,
                   sigma, count);
        int f = tie ? 0 : tr_next(&r) % 3 ? fmax : (int)tr_range(&r, 0, fmax);
        fmax_hits += f == fmax;
        wg_bn_bwd_chan ref = wg_bn_bwd_chan_init(gamma, sigma, count, b, g, (uint64_t)dmax, (uint64_t)hmax);
        wg_bn_lin k = wg_bn_dx_lin_init(gamma, sigma, count, b, g, (uint64_t)dmax, f);
        wg_bn_dxe ke = wg_bn_dxe_init(gamma, sigma, count, b, g, (uint64_t)dmax, f);
        wg_bn_dxc kc = wg_bn_dxc_init(gamma, sigma, count, b, g, (uint64_t)dmax, f);
        wide += !ref.p64; /* the reference's 128-bit P */
        int64_t dys[96], hs[40];
        int nd = 0, nh = 0;
        if (dmax <= 40)
            for (int64_t v = -dmax; v <= dmax; v++) dys[nd++] = v;
        else {
            const int64_t fixed[] = {-dmax, -dmax + 1, -1, 0, 1, dmax - 1, dmax};
            for (int i = 0; i < 7; i++) dys[nd++] = fixed[i];
            while (nd < 48) dys[nd++] = tr_range(&r, -dmax, dmax);
        }
        const int64_t hfix[] = {-hmax, hmax, 0, hmax > 0 ? 1 : 0, hmax > 0 ? -1 : 0, hmax / 2};
        for (int i = 0; i < 6; i++) hs[nh++] = hfix[i];
        while (nh < 40) hs[nh++] = tr_range(&r, -hmax, hmax);
        for (int id = 0; id < nd; id++)
            for (int ih = 0; ih < nh; ih++) {
                int64_t dy = dys[id], h = hs[ih];
                int64_t want = wg_bn_dx(dy, h, count, &ref, f), got = wg_bn_dx_fast(dy, h, &k);
                if (want != got)
                    TR_FAIL_IF(1, "dx(dy %" PRId64 ", xhat %" PRId64 "; gamma %" PRId64 ", sigma %" PRId64 ", count %"
                               PRIu64 ", B %" PRId64 ", G %" PRId64 ", dmax %" PRId64 ", hmax %" PRId64 ", F %d): %"
                               PRId64 ", fast %" PRId64, dy, h, gamma, sigma, count, b, g, dmax, hmax, f, want, got);
                int64_t ok_e, est = wg_bn_dxe_elem(dy, h, &ke, &ok_e);
                int32_t ok_c, p = wg_bn_dxc_elem((int32_t)dy, (int32_t)h, &kc, &ok_c);
                if ((ok_e && est != want) || (ok_c && p != wg_compact(want)))
                    TR_FAIL_IF(1, "dx(dy %" PRId64 ", xhat %" PRId64 "; gamma %" PRId64 ", sigma %" PRId64 ", count %"
                               PRIu64 ", B %" PRId64 ", G %" PRId64 ", dmax %" PRId64 ", F %d) %" PRId64 ": estimate %"
                               PRId64 " (decided %d), compact %d for %d (decided %d)", dy, h, gamma, sigma, count, b, g,
                               dmax, f, want, est, (int)ok_e, p, wg_compact(want), ok_c);
                bool typ = !tie && f == fmax; /* as the exponent rule picks it */
                typical += typ;
                undecided[typ][0] += !ok_e;
                undecided[typ][1] += !ok_c;
                if (tie) {
                    i128 pp = (i128)count * 16384 * dy - (i128)b * 16384 - (i128)h * g, dd = (i128)sigma * count;
                    bool is_tie = (2 * pp * gamma) % dd == 0 && (pp * gamma) % dd != 0;
                    ties += is_tie;
                    tie_undecided += is_tie && !ok_e;
                }
                checked++;
            }
    }
    TR_FAIL_IF(ties < 100000 || fmax_hits < 2000 || wide < 100,
               "only %" PRId64 " ties, %" PRId64 " channels at the largest F, %" PRId64 " with a 128-bit P", ties,
               fmax_hits, wide);
    TR_FAIL_IF(checked < 4000000, "checked only %" PRId64 " elements", checked);
    /* every tie is left to the fallback (it needs the exact remainder); with F as the
     * exponent rule picks it, the estimates decide nearly all the rest: the fallback takes
     * f within 2^16 of a multiple of 2^31 (2^-14 of uniform fractions), and in the compact
     * form also the elements whose dx is near 0 (within ~2^33), which these channels, with
     * their sums at extremes and small values, make common */
    TR_FAIL_IF(tie_undecided != ties, "%" PRId64 " of %" PRId64 " ties decided by the estimate", ties - tie_undecided,
               ties);
    TR_FAIL_IF(undecided[1][0] > typical / 100 || undecided[1][1] > typical / 10,
               "undecided at the rule's F: %" PRId64 " (dx), %" PRId64 " (compact) of %" PRId64, undecided[1][0],
               undecided[1][1], typical);
    print_message("estimates undecided at the rule's F: %" PRId64 " (dx), %" PRId64 " (compact) of %" PRId64
                  "; elsewhere %" PRId64 ", %" PRId64 " of %" PRId64 " (%" PRId64 " ties)\n",
                  undecided[1][0], undecided[1][1], typical, undecided[0][0], undecided[0][1], checked - typical, ties);
}

/* The library's tiled loops (bn_int.c): channel counts that do not divide the tile of
 * 128 elements, wider than it (one row per tile), a last partial tile, and tensors large
 * enough for the threaded path; the forward and backward passes against the reference. */
static void test_int_tiles(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {909};
    static const int64_t shapes[][4] = {{2, 3, 5, 16}, {3, 7, 7, 48}, {1, 5, 3, 130}, {2, 4, 4, 257},
                                        {16, 7, 7, 64}, {5, 9, 11, 24}, {2, 10, 10, 200}, {1, 1, 1, 129}};
    for (int id = 0; id < 8; id++) {
        bn_case k = case_make(shapes[id][0], shapes[id][1], shapes[id][2], shapes[id][3], (int)tr_range(&r, -20, -8));
        fill_x(&r, &k, (int)tr_range(&r, 8, 31));
        bn_run f;
        ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, &f, 500 + id);
        bwd_data d = random_dy(&r, &k);
        check_backward(b, &k, &f, &rf, &d, 500 + id);
        free(d.dy);
        run_free(&f);
        ref_free(&rf);
        case_free(&k);
    }
}

/* The training pass on the same saved tensors again and again, as a network runs it: on
 * the same input, on inputs scaled up and down (narrowing shifts from 0 to 16, with
 * INT32_MIN among the inputs), and on the same values at other exponents; every result
 * against the reference, threaded sizes included. */
static void test_int_narrow_repeat(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {919};
    static const int64_t shapes[][4] = {{2, 3, 5, 16}, {16, 7, 7, 64}};
    for (int id = 0; id < 2; id++) {
        bn_case k = case_make(shapes[id][0], shapes[id][1], shapes[id][2], shapes[id][3], -14);
        fill_x(&r, &k, 20);
        bn_run f;
        ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, &f, 600 + id);
        ref_free(&rf);
        static const int scale[] = {0, 0, 4, -7, 0, 9, -31, 0};
        static const int dexp[] = {0, 0, 0, 0, 3, -5, 0, 2};
        int64_t n = k.count * k.c;
        for (int step = 0; step < 8; step++) {
            for (int64_t i = 0; i < n; i++) {
                int sc = scale[step];
                k.x[i] = clamp_to(sc >= 0 ? k.x[i] * (INT64_C(1) << sc) : k.x[i] >> -sc, SAT31);
            }
            if (step == 6) k.x[n / 2] = INT32_MIN;
            k.e_in += dexp[step];
            int64_t *q = k.x;
            wg_tensor_free(&f.x);
            f.x = mk_nhwc(b, WG_I32, &k, q, k.e_in);
            int cid = 610 + 10 * id + step;
            wg_bn_int_forward_train(&f.x, given_max(k.x, n, cid), &f.gamma, &f.beta, &f.y, &f.saved, NULL);
            ref_fwd want = ref_forward(&k, NULL, NULL);
            TR_EXPECT_I64(want.e_x, f.saved.e_x, "case %d: e_x", cid);
            expect_tensor(&f.saved.mu, want.mu, k.c, -15, "mu", cid);
            expect_tensor(&f.saved.sigma, want.sigma, k.c, -15, "sigma", cid);
            expect_tensor(&f.saved.xhat, want.xhat, n, -7, "xhat", cid);
            expect_tensor(&f.y, want.y, n, -14, "y", cid);
            ref_free(&want);
        }
        run_free(&f);
        case_free(&k);
    }
}

/* Ties and clamps at their boundaries. The mean: 2^18 values at 2^2 summing to 2^32 - 1
 * have the mean 2^31 - 1/2 units of 2^-15, which rounds to the even 2^31 and saturates at
 * 2^31 - 1 (one unit less: 2^31 - 1 exactly). x-hat through evaluation with set statistics:
 * at e_x = -22, x16 = 32767, mu = -256, sigma = 2 give 32767.5, which rounds to the even
 * 32768 and clamps (32766 gives 32767 exactly); at e_x = -23 (the 128-bit path, both sides
 * scaled by 2) mu = -128, sigma = 1 give the same. A natural clamp: one outlier among
 * 70,000 zeros has x-hat sqrt(69,999) = 264.6 > 256. */
static void test_int_ties_clamps(void **state)
{
    wg_backend *b = *state;
    for (int id = 0; id < 2; id++) {
        bn_case k = case_make(4, 256, 256, 1, 2);
        for (int64_t i = 0; i < k.count; i++) k.x[i] = 16384 - (i < 1 + id);
        ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, NULL, id);
        TR_EXPECT_I64(SAT31, rf.mu[0], "mean tie %d", id);
        ref_free(&rf);
        case_free(&k);
    }
    for (int id = 0; id < 2; id++) {
        bn_case k = case_make(1, 1, 1, 3, id == 0 ? -22 : -23);
        const int64_t x[3] = {32767, -32767, 32766}, want[3] = {32767, -32767, 32767};
        int64_t mu[3], sigma[3], rm[3], rs[3];
        for (int ch = 0; ch < 3; ch++) {
            mu[ch] = (ch == 1 ? 256 : -256) >> id;
            sigma[ch] = 2 >> id;
            rm[ch] = mu[ch] * 65536;
            rs[ch] = sigma[ch] * 65536;
            k.gamma[ch] = 1;
        }
        memcpy(k.x, x, sizeof x);
        wg_bn_running run;
        TR_FAIL_IF(!wg_bn_running_init(&run, b, 3), "running_init failed%s", "");
        wg_tensor_upload(&run.mean, rm);
        wg_tensor_upload(&run.sigma, rs);
        run.initialized = true;
        ref_fwd rf = check_forward(b, &k, &run, mu, sigma, NULL, 10 + id);
        for (int ch = 0; ch < 3; ch++) TR_EXPECT_I64(want[ch], rf.xhat[ch], "clamp tie %d: x-hat[%d]", id, ch);
        TR_EXPECT_I64(2, rf.clamps, "clamp tie %d: clamps", id);
        ref_free(&rf);
        case_free(&k);
        wg_bn_running_free(&run);
    }
    bn_case k = case_make(1, 7, 10000, 1, -7);
    k.x[123] = 1000;
    k.gamma[0] = 128;
    ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, NULL, 20);
    TR_EXPECT_I64(1, rf.clamps, "outlier clamps%s", "");
    TR_EXPECT_I64(32767, rf.xhat[123], "outlier x-hat%s", "");
    ref_free(&rf);
    case_free(&k);
}

/* An internal error aborts (checked in a child process): a narrowed input below
 * e_x = -54, and |dy| above 32767. */
static void expect_abort(wg_backend *b, int which)
{
    pid_t pid = tr_fork_death_test();
    TR_FAIL_IF(pid < 0, "fork failed%s", "");
    if (pid == 0) {
        TR_FAIL_IF(freopen("/dev/null", "w", stderr) == NULL, "freopen%s", ""); /* the expected message */
        bn_case k = case_make(1, 1, 4, 1, which == 0 ? -60 : -10);
        for (int i = 0; i < 4; i++) k.x[i] = i;
        bn_run f;
        ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, &f, 0);
        bwd_data d = {WG_I32, 0, alloc64(4)};
        d.dy[2] = 32768;
        check_backward(b, &k, &f, &rf, &d, 0);
        _exit(0);
    }
    int st = 0;
    TR_FAIL_IF(waitpid(pid, &st, 0) != pid, "waitpid failed%s", "");
    TR_FAIL_IF(!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT), "case %d was accepted (child status %d)", which, st);
}

static void test_int_rejects(void **state)
{
    expect_abort(*state, 0);
    expect_abort(*state, 1);
}

/* ---- integer BN against the float formulas (sanity: it approximates BN) ------------ */

/* x-hat against (x - mean) / std of the dequantized input, within the error the contract
 * allows: half a unit of x-hat (2^-8), plus, divided by sigma, the narrowing (half a unit
 * of 2^e_x on x, the mean and the std), the mean's rounding (2^-16), the std's (2^-16) and
 * epsilon (2^-15). dx against the exact gradient of the reference's forward pass (through
 * straight-through estimators) within TOL_DX of the channel's largest |dx|: the integer
 * formula uses the rounded x-hat and sigma (section 7.5). */
#define TOL_DX 0.02L

static void test_int_vs_float(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {202};
    int64_t checked = 0;
    for (int id = 0; id < 100; id++) {
        bn_case k = random_case(&r, 8000, -24, -10);
        bn_run f;
        ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, &f, id);
        int64_t n = k.count * k.c, *h = rf.xhat;
        bwd_data d = {WG_I8, (int)tr_range(&r, -20, 0), alloc64(n)};
        for (int64_t i = 0; i < n; i++) d.dy[i] = tr_next(&r) % 3 == 0 ? 0 : tr_range(&r, -127, 127);
        wg_tensor dy = mk_nhwc(b, WG_I8, &k, d.dy, d.e), dx = mk_nhwc(b, WG_I64, &k, NULL, 0);
        wg_tensor dg = mk_vec(b, WG_I64, k.c, NULL, 0), db = mk_vec(b, WG_I64, k.c, NULL, 0);
        wg_bn_int_backward(&dy, &f.gamma, &f.saved, &dx, &dg, &db);
        int64_t *dxq = tr_tensor_get(&dx);
        for (int64_t ch = 0; ch < k.c; ch++) {
            long double mean = 0, var = 0, dym = 0, dyx = 0, cnt = (long double)k.count, dxmax = 0, errmax = 0;
            for (int64_t i = 0; i < k.count; i++) mean += ldexpl(k.x[i * k.c + ch], k.e_in) / cnt;
            for (int64_t i = 0; i < k.count; i++) var += powl(ldexpl(k.x[i * k.c + ch], k.e_in) - mean, 2) / cnt;
            long double sd = sqrtl(var), sq = ldexpl(rf.sigma[ch], -15), seps = sd + 0x1p-15L;
            if (sd < 0x1p-7L || sd < ldexpl(1, rf.e_x + 7) || rf.sigma[ch] == SAT31 || llabs(rf.mu[ch]) == SAT31)
                continue;
            long double dn = ldexpl(1, rf.e_x) + 0x1p-16L, ds = 1.5L * 0x1p-15L + ldexpl(1, rf.e_x - 1);
            for (int64_t i = 0, j = ch; i < k.count; i++, j += k.c) {
                long double xt = (ldexpl(k.x[j], k.e_in) - mean) / sd, tol = 0x1p-8L + (dn + fabsl(xt) * ds) / sq;
                TR_FAIL_IF(llabs(h[j]) < 32767 && fabsl(ldexpl(h[j], -7) - xt) > tol,
                           "case %d: x-hat %Lg, float %Lg (tol %Lg)", id, ldexpl(h[j], -7), xt, tol);
                dym += ldexpl(d.dy[j], d.e) / cnt;
                dyx += ldexpl(d.dy[j], d.e) * (ldexpl(k.x[j], k.e_in) - mean) / seps / cnt;
            }
            for (int64_t i = 0, j = ch; i < k.count; i++, j += k.c) {
                long double xm = ldexpl(k.x[j], k.e_in) - mean;
                long double want = ldexpl(k.gamma[ch], -7) / seps * (ldexpl(d.dy[j], d.e) - dym - xm / sd * dyx);
                dxmax = fmaxl(dxmax, fabsl(want));
                errmax = fmaxl(errmax, fabsl(ldexpl(dxq[j], dx.exp) - want));
            }
            TR_FAIL_IF(errmax > TOL_DX * dxmax, "case %d channel %" PRId64 ": dx error %Lg, max %Lg", id, ch, errmax,
                       dxmax);
            checked += dxmax > 0;
        }
        free(dxq), free(d.dy);
        wg_tensor_free(&dy), wg_tensor_free(&dx), wg_tensor_free(&dg), wg_tensor_free(&db);
        run_free(&f);
        ref_free(&rf);
        case_free(&k);
    }
    TR_FAIL_IF(checked < 150, "only %" PRId64 " channels were compared", checked);
}

/* ---- running statistics and evaluation ------------------------------------------------ */

/* 300 training steps against the contract's RNE((65339 r + 197 b) / 65536), then
 * evaluation with mu = RNE(r_mean / 2^16) and sigma = RNE(r_sigma / 2^16). */
static void test_running_eval(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {303};
    enum { C = 5 };
    wg_bn_running run;
    TR_FAIL_IF(!wg_bn_running_init(&run, b, C), "running_init failed%s", "");
    int64_t rm[C], rs[C], mu[C], sigma[C];
    for (int step = 0; step < 300; step++) {
        bn_case k = case_make(2, 3, 4, C, (int)tr_range(&r, -20, -8));
        fill_x(&r, &k, (int)tr_range(&r, step < 150 ? 4 : 12, step < 150 ? 12 : 24));
        ref_fwd rf = check_forward(b, &k, &run, NULL, NULL, NULL, step);
        for (int ch = 0; ch < C; ch++) {
            i128 bm = (i128)rf.mu[ch] * 65536, bsg = (i128)rf.sigma[ch] * 65536;
            rm[ch] = (int64_t)(step == 0 ? bm : rr_div(65339 * (i128)rm[ch] + 197 * bm, 65536));
            rs[ch] = (int64_t)(step == 0 ? bsg : rr_div(65339 * (i128)rs[ch] + 197 * bsg, 65536));
        }
        expect_tensor(&run.mean, rm, C, -31, "running mean", step);
        expect_tensor(&run.sigma, rs, C, -31, "running sigma", step);
        TR_FAIL_IF(!run.initialized, "running statistics not marked initialized%s", "");
        ref_free(&rf);
        case_free(&k);
    }
    for (int ch = 0; ch < C; ch++) {
        mu[ch] = (int64_t)rr_clamp(rr_div(rm[ch], 65536), -SAT31, SAT31);
        sigma[ch] = (int64_t)rr_clamp(rr_div(rs[ch], 65536), 1, SAT31);
    }
    for (int id = 0; id < 20; id++) {
        bn_case k = case_make(3, 2, 5, C, (int)tr_range(&r, -30, 0));
        fill_x(&r, &k, (int)tr_range(&r, 1, 31));
        ref_fwd rf = check_forward(b, &k, &run, mu, sigma, NULL, 1000 + id);
        ref_free(&rf);
        case_free(&k);
    }
    wg_bn_running_free(&run);
}

/* ---- overflow scale: 2^20 values in one channel ----------------------------------------- */

/* id 0: +-2^26 (a 3x3x512 accumulator), narrowed by 12 bits; id 1: the int32 extremes,
 * x16 near +-32767, S2 near 2^50 and count * S2 near 2^70; id 2: 2^19 values of 2^31 - 1
 * at 2^0 (x-hat clamped at 32767 everywhere) with dy near 32767 (int16): G near 2^49, and
 * P = 2^14 count dy - 2^14 B - xhat G needs more than 64 bits; id 3: the same x-hat with
 * the int8 dy -128 everywhere, the worst case of the int32 accumulators of the backward
 * sums (each position sums 256 tiles of -128 * 32767 before they move to int64). */
static void test_int_overflow_scale(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {404};
    for (int id = 0; id < 4; id++) {
        bool clamped = id >= 2;
        bn_case k = case_make(clamped ? 8 : 16, 256, 256, 1, clamped ? 0 : -14);
        for (int64_t i = 0; i < k.count; i++) {
            int64_t v = id == 0 ? (INT64_C(1) << 26) - tr_range(&r, 0, 1 << 22) : SAT31 - tr_range(&r, 0, 1 << 24);
            k.x[i] = clamped ? SAT31 : (tr_next(&r) % 3 == 0) ? -v : v;
        }
        k.gamma[0] = 32767;
        k.beta[0] = -32767;
        bn_run f;
        ref_fwd rf = check_forward(b, &k, NULL, NULL, NULL, &f, id);
        bwd_data d = {id == 2 ? WG_I16 : WG_I8, -9, alloc64(k.count)};
        for (int64_t i = 0; i < k.count; i++)
            d.dy[i] = id == 3 ? -128 : id == 2 ? 32767 - (int64_t)(tr_next(&r) % 2) : (tr_next(&r) & 1) ? 127 : -127;
        check_backward(b, &k, &f, &rf, &d, id);
        free(d.dy);
        run_free(&f);
        ref_free(&rf);
        case_free(&k);
    }
}

/* ---- fp32 BN ---------------------------------------------------------------------------- */

/* Training-mode BN in double (biased variance); returns the loss sum w * y when w is given. */
static double dref_bn(const double *x, int64_t count, int64_t C, const double *g, const double *bt, double eps,
                      const double *w, double *y, double *mean, double *var)
{
    double loss = 0;
    for (int64_t ch = 0; ch < C; ch++) {
        double m = 0, v = 0;
        for (int64_t i = 0; i < count; i++) m += x[i * C + ch] / (double)count;
        for (int64_t i = 0; i < count; i++) v += (x[i * C + ch] - m) * (x[i * C + ch] - m) / (double)count;
        if (mean) mean[ch] = m, var[ch] = v;
        for (int64_t i = 0, j = ch; i < count; i++, j += C) {
            double yy = g[ch] * (x[j] - m) / sqrt(v + eps) + bt[ch];
            if (y) y[j] = yy;
            if (w) loss += w[j] * yy;
        }
    }
    return loss;
}

/* An f32 tensor (NHWC of k's shape, or [n]) holding v (when given). */
static wg_tensor mk_f32(wg_backend *b, const bn_case *k, int64_t n, const double *v)
{
    wg_tensor t;
    bool ok = k ? wg_tensor_init_nhwc(&t, b, WG_F32, k->n, k->h, k->w, k->c, 0)
                : wg_tensor_init(&t, b, WG_F32, WG_LAYOUT_PLAIN, 1, (int64_t[]){n}, 0);
    TR_FAIL_IF(!ok, "f32 tensor init failed%s", "");
    float *host = malloc((size_t)n * sizeof *host);
    for (int64_t i = 0; v && i < n; i++) host[i] = (float)v[i];
    if (v) wg_tensor_upload(&t, host);
    free(host);
    return t;
}

static double *get_f32(const wg_tensor *t)
{
    int64_t n = wg_tensor_numel(t);
    float *host = malloc((size_t)n * sizeof *host);
    double *v = malloc((size_t)n * sizeof *v);
    wg_tensor_download(t, host);
    for (int64_t i = 0; i < n; i++) v[i] = host[i];
    free(host);
    return v;
}

static double frand(tr_rng *r, double lo, double hi) { return lo + (hi - lo) * (double)(tr_next(r) >> 11) * 0x1p-53; }

/* |got - want| <= tol * scale for n values, scale = max |want| (rel) or 1 + |want| (per element). */
static void expect_close(const double *got, const double *want, int64_t n, double tol, bool rel, const char *what,
                         int id)
{
    double m = 1e-12;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(want[i]));
    for (int64_t i = 0; i < n; i++)
        TR_FAIL_IF(fabs(got[i] - want[i]) > tol * (rel ? m : 1 + fabs(want[i])), "f32 case %d: %s[%" PRId64
                   "] = %.9g, want %.9g", id, what, i, got[i], want[i]);
}

/* Forward against the double re-implementation (TOL_F32_Y of 1 + |y|); dx, dgamma, dbeta
 * against central differences of its loss sum w * y, steps 1e-4 of the channel's scale
 * (TOL_F32_GRAD of the largest |gradient|; the float results agree to about 1e-6). */
#define TOL_F32_Y 1e-5
#define TOL_F32_GRAD 1e-4

static void test_f32(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {505};
    const double eps = 1e-5;
    for (int id = 0; id < 25; id++) {
        bn_case k = {tr_range(&r, 1, 4), tr_range(&r, 1, 5), tr_range(&r, 1, 5), tr_range(&r, 1, 5), 0, 0, NULL, NULL,
                     NULL};
        k.count = k.n * k.h * k.w;
        int64_t n = k.count * k.c, C = k.c;
        double *x = malloc((size_t)n * sizeof *x), *w = malloc((size_t)n * sizeof *w), *y = malloc((size_t)n * sizeof *y);
        double *fd = malloc((size_t)n * sizeof *fd), g[5], bt[5], scale[5], off[5], fdg[5], fdb[5];
        for (int64_t ch = 0; ch < C; ch++) {
            scale[ch] = frand(&r, 0.1, 10);
            off[ch] = frand(&r, -5, 5);
            g[ch] = (float)frand(&r, -2, 2);
            bt[ch] = (float)frand(&r, -1, 1);
        }
        for (int64_t i = 0; i < n; i++) {
            x[i] = (float)(off[i % C] + scale[i % C] * frand(&r, -1, 1));
            w[i] = (float)frand(&r, -1, 1);
        }
        wg_tensor tx = mk_f32(b, &k, n, x), ty = mk_f32(b, &k, n, NULL), tw = mk_f32(b, &k, n, w);
        wg_tensor tdx = mk_f32(b, &k, n, NULL), tg = mk_f32(b, NULL, C, g), tb = mk_f32(b, NULL, C, bt);
        wg_tensor tdg = mk_f32(b, NULL, C, NULL), tdb = mk_f32(b, NULL, C, NULL);
        wg_bn_f32_saved sv;
        TR_FAIL_IF(!wg_bn_f32_saved_init(&sv, b, k.n, k.h, k.w, k.c), "f32 saved_init failed%s", "");
        wg_bn_f32_forward_train(&tx, &tg, &tb, (float)eps, &ty, &sv, NULL, WG_BN_F32_DECAY);
        wg_bn_f32_backward(&tw, &tg, &sv, &tdx, &tdg, &tdb);
        double *yo = get_f32(&ty), *dxo = get_f32(&tdx), *dgo = get_f32(&tdg), *dbo = get_f32(&tdb);
        dref_bn(x, k.count, C, g, bt, eps, NULL, y, NULL, NULL);
        expect_close(yo, y, n, TOL_F32_Y, false, "y", id);
        for (int64_t i = 0; i < n + 2 * C; i++) { /* x, then gamma, then beta */
            double *p = i < n ? &x[i] : i < n + C ? &g[i - n] : &bt[i - n - C], keep = *p;
            double h = i < n ? 1e-4 * scale[i % C] : 1e-4, lp, lm;
            *p = keep + h;
            lp = dref_bn(x, k.count, C, g, bt, eps, w, NULL, NULL, NULL);
            *p = keep - h;
            lm = dref_bn(x, k.count, C, g, bt, eps, w, NULL, NULL, NULL);
            *p = keep;
            *(i < n ? &fd[i] : i < n + C ? &fdg[i - n] : &fdb[i - n - C]) = (lp - lm) / (2 * h);
        }
        expect_close(dxo, fd, n, TOL_F32_GRAD, true, "dx", id);
        expect_close(dgo, fdg, C, TOL_F32_GRAD, true, "dgamma", id);
        expect_close(dbo, fdb, C, TOL_F32_GRAD, true, "dbeta", id);
        free(x), free(w), free(y), free(fd), free(yo), free(dxo), free(dgo), free(dbo);
        wg_tensor_free(&tx), wg_tensor_free(&ty), wg_tensor_free(&tw), wg_tensor_free(&tdx);
        wg_tensor_free(&tg), wg_tensor_free(&tb), wg_tensor_free(&tdg), wg_tensor_free(&tdb);
        wg_bn_f32_saved_free(&sv);
    }
}

/* Running mean and unbiased variance (the first step copies, then decay), and evaluation. */
static void test_f32_running_eval(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {606};
    bn_case k = {2, 3, 3, 4, 18, 0, NULL, NULL, NULL};
    enum { C = 4, N = 72 };
    const double eps = 1e-5, decay = (double)WG_BN_F32_DECAY;
    double g[C] = {1, -0.5, 2, 0.25}, bt[C] = {0, 0.5, -1, 2}, rmean[C], rvar[C], mean[C], var[C], x[N], y[N];
    wg_bn_f32_running run;
    wg_bn_f32_saved sv;
    TR_FAIL_IF(!wg_bn_f32_running_init(&run, b, C) || !wg_bn_f32_saved_init(&sv, b, k.n, k.h, k.w, k.c),
               "f32 init failed%s", "");
    wg_tensor tg = mk_f32(b, NULL, C, g), tb = mk_f32(b, NULL, C, bt), ty = mk_f32(b, &k, N, NULL);
    for (int step = 0; step < 6; step++) {
        for (int i = 0; i < N; i++) x[i] = (float)frand(&r, -3, 3) * (1 + i % C);
        wg_tensor tx = mk_f32(b, &k, N, x);
        wg_bn_f32_forward_train(&tx, &tg, &tb, (float)eps, &ty, &sv, &run, (float)decay);
        dref_bn(x, k.count, C, g, bt, eps, NULL, y, mean, var);
        double *rm = get_f32(&run.mean), *rv = get_f32(&run.var);
        for (int ch = 0; ch < C; ch++) {
            double unb = var[ch] * (double)k.count / (double)(k.count - 1);
            rmean[ch] = step == 0 ? mean[ch] : decay * rmean[ch] + (1 - decay) * mean[ch];
            rvar[ch] = step == 0 ? unb : decay * rvar[ch] + (1 - decay) * unb;
        }
        expect_close(rm, rmean, C, 1e-6, false, "running mean", step);
        expect_close(rv, rvar, C, 1e-6, true, "running var", step);
        memcpy(rmean, rm, sizeof rmean); /* continue from the library's float state */
        memcpy(rvar, rv, sizeof rvar);
        free(rm), free(rv);
        wg_tensor_free(&tx);
    }
    for (int i = 0; i < N; i++) x[i] = (float)frand(&r, -3, 3);
    for (int i = 0; i < N; i++) y[i] = g[i % C] * (x[i] - rmean[i % C]) / sqrt(rvar[i % C] + eps) + bt[i % C];
    wg_tensor tx = mk_f32(b, &k, N, x);
    wg_bn_f32_forward_eval(&tx, &tg, &tb, (float)eps, &run, &ty);
    double *yo = get_f32(&ty);
    expect_close(yo, y, N, TOL_F32_Y, false, "eval y", 0);
    free(yo);
    wg_tensor_free(&tx), wg_tensor_free(&tg), wg_tensor_free(&tb), wg_tensor_free(&ty);
    wg_bn_f32_saved_free(&sv);
    wg_bn_f32_running_free(&run);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_division),        cmocka_unit_test(test_fast_xhat),      cmocka_unit_test(test_fast_xhat32),
        cmocka_unit_test(test_fast_dx),         cmocka_unit_test(test_int_tiles),       cmocka_unit_test(test_int_narrow_repeat),
        cmocka_unit_test(test_int_random),      cmocka_unit_test(test_int_backward_act),
        cmocka_unit_test(test_int_forward_act),
        cmocka_unit_test(test_int_edges),       cmocka_unit_test(test_int_ties_clamps),
        cmocka_unit_test(test_int_rejects),     cmocka_unit_test(test_int_vs_float),
        cmocka_unit_test(test_running_eval),    cmocka_unit_test(test_int_overflow_scale),
        cmocka_unit_test(test_f32),             cmocka_unit_test(test_f32_running_eval),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
