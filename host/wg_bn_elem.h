/* wg_bn_elem.h: the integer formulas of batch normalization (docs/numerics.md,
 * sections 7.3 and 7.5), one per element or per channel.
 *
 * Shared by the CPU loops (bn_int.c) and the CUDA kernels (design principle 2,
 * "one formula, two launchers"), so they use integer operations only. 128-bit
 * intermediates are `unsigned __int128` / `__int128`, which gcc and nvcc (device
 * code too) both provide. Every division by a number that is not a power of two is
 * the exact rational rounded half to even: the quotient and remainder come from an
 * exact division by a per-channel constant (Moller & Granlund, "Improved division
 * by invariant integers", 2011: a precomputed reciprocal, then at most two
 * corrections), and the remainder decides the rounding. The reciprocal only speeds
 * the division up: the quotient and remainder are exact whatever computes them. The
 * elementwise x-hat and dx also have fast forms (wg_bn_xhat_fast, wg_bn_dx_fast and, in
 * 32-bit lanes, wg_bn_xhat32_elem, at the end), which move the divisions into per-channel
 * constants and give the same integers; the formulas above stay the reference they are
 * tested against.
 *
 * Units: x16 on the grid 2^e_x (the narrowed input); mu, sigma on 2^-15; x-hat,
 * gamma, beta on 2^-7; y on 2^-14; running statistics on 2^-31. count = N*H*W, the
 * number of values of one channel. */
#ifndef WG_BN_ELEM_H
#define WG_BN_ELEM_H

#include <stdint.h>

#include "wg_hd.h"
#include "wg_intmath.h"


enum {
    WG_BN_STAT_EXP = -15,     /* mu and sigma: Q(., 16) */
    WG_BN_XHAT_EXP = -7,      /* x-hat, and gamma and beta in the forward pass: Q(., 8) */
    WG_BN_Y_EXP = -14,        /* y = xhat * gamma + beta */
    WG_BN_RUNNING_EXP = -31,  /* running mean and running sigma (int64) */
    WG_BN_XHAT_BOUND = 32767, /* x-hat saturates here (int16) */
    WG_BN_DECAY_NUM = 197,    /* 1 - decay = 197 / 2^16: decay 0.99699... (the reference's 0.997) */
    WG_BN_DECAY_SHIFT = 16,
    WG_BN_EX_MIN = -54,       /* smallest exponent of the narrowed input: keeps every divisor < 2^63 */
    WG_BN_DY_MAX = 32767,     /* backward: |dy| must not exceed this (E1 gives at most 127) */
    WG_BN_DX_BITS = 62,       /* backward: |dx| <= 2^62 on the grid the exponent rule picks */
    WG_BN_DX_NO_BOUND = -1000 /* wg_bn_dx_bound_exp of a channel whose dx is identically 0 */
};
#define WG_BN_SIGMA_MAX INT64_C(2147483647) /* sigma = min(r, 2^31 - 2) + 1 */
#define WG_BN_COUNT_MAX INT64_C(4294967295) /* count < 2^32: s * count and sigma * count fit 64 bits */

/* ---- 128-bit helpers, exact division by a per-channel constant ---------------- */

WG_HD int wg_bn_bitlen_u64(uint64_t x) { return x ? wg_msb_u64(x) + 1 : 0; }

WG_HD int wg_bn_bitlen_u128(wg_u128 x)
{
    uint64_t hi = (uint64_t)(x >> 64);
    return hi ? 64 + wg_bn_bitlen_u64(hi) : wg_bn_bitlen_u64((uint64_t)x);
}

/* A divisor d >= 1 with what the exact division needs: d normalized (shifted left
 * until its top bit is set) and its reciprocal v = floor((2^128 - 1) / dn) - 2^64. */
typedef struct wg_bn_div {
    uint64_t d;
    uint64_t dn;
    uint64_t v;
    int lz;
} wg_bn_div;

/* floor(((~dn) * 2^64 + 2^64 - 1) / dn) for a normalized dn, by restoring division
 * (once per channel, so speed does not matter; no 128-bit division needed). */
WG_HD uint64_t wg_bn_recip(uint64_t dn)
{
    uint64_t r = ~dn, q = 0; /* r < dn throughout */
    for (int i = 0; i < 64; i++) {
        uint64_t top = r >> 63;
        r = (r << 1) | 1; /* the next bit of the low word, all ones */
        q <<= 1;
        if (top || r >= dn) {
            r -= dn; /* the true value 2r + 1 - dn < dn fits even when 2r + 1 did not */
            q |= 1;
        }
    }
    return q;
}

WG_HD wg_bn_div wg_bn_div_init(uint64_t d)
{
    wg_bn_div r;
    r.d = d;
    r.lz = 63 - wg_msb_u64(d);
    r.dn = d << r.lz;
    r.v = wg_bn_recip(r.dn);
    return r;
}

/* floor(n / d) and the remainder, for n < d * 2^64 (the quotient fits 64 bits). */
WG_HD uint64_t wg_bn_divmod(wg_u128 n, const wg_bn_div *dv, uint64_t *rem)
{
    wg_u128 nn = n << dv->lz; /* < dn * 2^64: no bit is lost */
    uint64_t u1 = (uint64_t)(nn >> 64), u0 = (uint64_t)nn;
    wg_u128 p = (wg_u128)dv->v * u1 + nn; /* <= u1 * floor((2^128-1)/dn) + u0 < 2^128 */
    uint64_t q1 = (uint64_t)(p >> 64) + 1, q0 = (uint64_t)p;
    uint64_t r = u0 - q1 * dv->dn;
    if (r > q0) { /* rare (Moller & Granlund: the unlikely adjustment) */
        q1 -= 1;
        r += dv->dn;
    }
    uint64_t fix = r >= dv->dn; /* data-dependent: masks, not branches */
    q1 += fix;
    r -= dv->dn & (0 - fix);
    *rem = r >> dv->lz;
    return q1;
}

/* round(n / d), ties to even, for n < d * 2^64 with a quotient below 2^64 - 1. */
WG_HD uint64_t wg_bn_rne_div(wg_u128 n, const wg_bn_div *dv)
{
    uint64_t r, q = wg_bn_divmod(n, dv, &r);
    uint64_t rest = dv->d - r; /* compare 2r with d without overflow: r vs d - r */
    return q + (uint64_t)((r > rest) | ((r == rest) & (q & 1)));
}

/* ---- forward, per channel ------------------------------------------------------ */

/* mu = RNE(S1 * 2^(e_x+15) / count), saturated at +-(2^31 - 1). Needs
 * |S1| <= 32767 * count (x16 is int16) and 1 <= count < 2^32. */
WG_HD int64_t wg_bn_mean(int64_t s1, uint64_t count, int e_x)
{
    int k = e_x - WG_BN_STAT_EXP;
    uint64_t a = wg_abs_u64(s1), q;
    if (a == 0) return 0;
    if (k >= 0) {
        /* saturated when RNE(a 2^k / count) >= 2^31, i.e. 2 a 2^k >= (2^32 - 1) count
         * (a tie at 2^31 - 1/2 goes to the even 2^31); a >= 1 and k >= 64 give >= 2^32 */
        if (k >= 64) return s1 < 0 ? -WG_BN_SIGMA_MAX : WG_BN_SIGMA_MAX;
        wg_u128 n = (wg_u128)a << k; /* a < 2^47: < 2^111 */
        if (2 * n >= (wg_u128)UINT32_MAX * count) return s1 < 0 ? -WG_BN_SIGMA_MAX : WG_BN_SIGMA_MAX;
        wg_bn_div dv = wg_bn_div_init(count);
        q = wg_bn_rne_div(n, &dv);
    } else {
        /* |mean| < 2^15 units of 2^e_x, so for k <= -16 it is below 1/2 unit of 2^-15 */
        if (k <= -16) return 0;
        wg_bn_div dv = wg_bn_div_init(count << -k);
        q = wg_bn_rne_div(a, &dv);
    }
    return s1 < 0 ? -(int64_t)q : (int64_t)q;
}

/* Compare (s * count)^2 with dd * 2^j: -1, 0 or 1 (s * count < 2^64). */
WG_HD int wg_bn_cmp_sq(uint64_t s, uint64_t count, wg_u128 dd, int j)
{
    uint64_t sc = s * count;
    wg_u128 a = (wg_u128)sc * sc;
    if (j >= 0) {
        if (dd == 0) return a != 0;
        if (j >= 128 || dd > (~(wg_u128)0 >> j)) return -1; /* dd 2^j >= 2^128 > a */
        wg_u128 b = dd << j;
        return a < b ? -1 : (a > b);
    }
    int k = -j; /* a 2^k against dd: against floor(dd / 2^k), then the low bits */
    if (k >= 128) return a != 0 ? 1 : (dd != 0 ? -1 : 0);
    wg_u128 hi = dd >> k;
    if (a != hi) return a < hi ? -1 : 1;
    return (dd & ((((wg_u128)1) << k) - 1)) != 0 ? -1 : 0;
}

/* sigma = min(RNE(sqrt(V)), 2^31 - 2) + 1 with V = (count S2 - S1^2) 2^(2e_x+30) /
 * count^2, the variance in units of 2^-30, ties to even. With s2 = floor(2 sqrt(V))
 * (binary search on (s count)^2 <= 4 (count S2 - S1^2) 2^(2e_x+30), exact): an even
 * s2 = 2r means sqrt(V) < r + 1/2, so r; an odd s2 = 2r + 1 means r + 1, except at
 * the exact tie 4V = (2r+1)^2, which goes to the even of r and r + 1. Searching s2
 * up to 2^32 - 1 covers the saturation: s2 >= 2^32 - 2 gives sigma = 2^31 - 1. */
WG_HD int64_t wg_bn_sigma(int64_t s1, int64_t s2, uint64_t count, int e_x)
{
    uint64_t a = wg_abs_u64(s1);
    wg_u128 dd = (wg_u128)count * (uint64_t)s2 - (wg_u128)a * a; /* >= 0 (Cauchy-Schwarz), < 2^94 */
    if (dd == 0) return 1;
    int j = 2 * e_x + 32; /* 4 V count^2 = dd 2^j */
    uint64_t lo = 0, hi = UINT32_MAX;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if (wg_bn_cmp_sq(mid, count, dd, j) <= 0) lo = mid;
        else hi = mid - 1;
    }
    uint64_t r = lo >> 1;
    if ((lo & 1) && (wg_bn_cmp_sq(lo, count, dd, j) != 0 || (r & 1))) r += 1;
    if (r > (uint64_t)WG_BN_SIGMA_MAX - 1) r = (uint64_t)WG_BN_SIGMA_MAX - 1;
    return (int64_t)r + 1;
}

/* Per-channel constants of the x-hat element. */
typedef struct wg_bn_xhat_chan {
    int64_t mu;    /* grid 2^-15 */
    wg_bn_div div; /* d = sigma, or sigma * 2^-(e_x+22) when e_x + 22 < 0 (both sides of the
                    * rational are then scaled by that power of two); < 2^63 for e_x >= -54 */
    uint64_t recip; /* floor((2^64 - 1) / d): the quotient hint of the 64-bit path */
} wg_bn_xhat_chan;

WG_HD wg_bn_xhat_chan wg_bn_xhat_chan_init(int64_t mu, int64_t sigma, int e_x)
{
    int m = e_x - WG_BN_STAT_EXP - WG_BN_XHAT_EXP; /* e_x + 22 */
    wg_bn_xhat_chan k;
    k.mu = mu;
    k.div = wg_bn_div_init((uint64_t)sigma << (m < 0 ? -m : 0));
    k.recip = UINT64_MAX / k.div.d;
    return k;
}

/* round(n / d), ties to even, for n < 2^64, from the hint floor(n recip / 2^64), which is
 * floor(n / d) or one less (recip >= (2^64 - d) / d, so n recip / 2^64 > n / d - 1). */
WG_HD uint64_t wg_bn_rne_div64(uint64_t n, uint64_t d, uint64_t recip)
{
    uint64_t q = (uint64_t)(((wg_u128)n * recip) >> 64);
    uint64_t r = n - q * d;
    uint64_t fix = r >= d; /* data-dependent: masks, not branches (the compiler would branch on ?:) */
    q += fix;
    r -= d & (0 - fix);
    uint64_t rest = d - r;
    return q + (uint64_t)((r > rest) | ((r == rest) & (q & 1)));
}

/* ---- forward, per element ------------------------------------------------------ */

/* x-hat = RNE((x16 2^(e_x+22) - mu 2^7) / sigma), clamped to +-32767; *clamped is
 * set to 1 when the clamp acted (left alone otherwise). |num / d| >= 32767.5 rounds
 * to at least 32768 (the tie goes to the even 32768): clamped. With m = e_x + 22 in
 * [0, 47] the numerator fits int64 and d = sigma < 2^31 (the common path). With
 * m >= 48 and x16 != 0 the first term alone exceeds 32768 sigma by more than
 * |mu 2^7| (< 2^38): clamped. Below m = 0 the 128-bit path. */
WG_HD int64_t wg_bn_xhat(int64_t x16, int e_x, const wg_bn_xhat_chan *k, int *clamped)
{
    int m = e_x - WG_BN_STAT_EXP - WG_BN_XHAT_EXP;
    const int64_t bound = WG_BN_XHAT_BOUND;
    uint64_t d = k->div.d;
    if (m >= 0) {
        if (m >= 48 && x16 != 0) {
            *clamped = 1;
            return x16 > 0 ? bound : -bound;
        }
        int64_t num = (m >= 48 ? 0 : x16 * ((int64_t)1 << m)) - k->mu * 128; /* |.| < 2^62 + 2^38 */
        uint64_t sg = (uint64_t)(num >> 63);   /* the sign as a mask: the sign is data, so no branch */
        uint64_t mag = ((uint64_t)num ^ sg) - sg; /* |num| */
        if (2 * mag >= (uint64_t)(2 * bound + 1) * d) { /* d < 2^31: no overflow */
            *clamped = 1;
            return num < 0 ? -bound : bound;
        }
        return (int64_t)((wg_bn_rne_div64(mag, d, k->recip) ^ sg) - sg);
    }
    wg_i128 num = (wg_i128)x16 - (wg_i128)k->mu * ((wg_i128)1 << (7 - m)); /* 7 - m <= 39 */
    wg_u128 mag = num < 0 ? (wg_u128)(-num) : (wg_u128)num;
    if (2 * mag >= (wg_u128)(2 * bound + 1) * d) {
        *clamped = 1;
        return num < 0 ? -bound : bound;
    }
    int64_t q = (int64_t)wg_bn_rne_div(mag, &k->div); /* mag < 32768 d: the quotient fits */
    return num < 0 ? -q : q;
}

/* y = xhat * gamma + beta * 2^7 on the grid 2^-14: |y| <= 32767^2 + 32767 * 2^7 < 2^31. */
WG_HD int64_t wg_bn_y(int64_t xhat, int64_t gamma, int64_t beta) { return xhat * gamma + beta * 128; }

/* ---- running statistics (per channel) ------------------------------------------ */

/* r' = RNE((65339 r + 197 b) / 65536) = r + RNE(197 (b - r) / 2^16): decay 1 - 197/2^16.
 * r and b on the grid 2^-31 with |r|, |b| < 2^48, so 197 (b - r) < 2^57. */
WG_HD int64_t wg_bn_running_step(int64_t r, int64_t b)
{
    return r + wg_rshift_rne(WG_BN_DECAY_NUM * (b - r), WG_BN_DECAY_SHIFT);
}

/* A running statistic back on the grid 2^-15, RNE, clamped to [lo, 2^31 - 1]
 * (lo = -(2^31 - 1) for the mean, 1 for sigma). */
WG_HD int64_t wg_bn_running_to_stat(int64_t r, int64_t lo)
{
    int64_t q = wg_rshift_rne(r, WG_BN_STAT_EXP - WG_BN_RUNNING_EXP);
    return q < lo ? lo : (q > WG_BN_SIGMA_MAX ? WG_BN_SIGMA_MAX : q);
}

/* ---- backward -------------------------------------------------------------------- */

/* An exponent E with |dx| < 2^(E+F) on the grid 2^(e-6-F), for every element of the
 * channel: |gamma| < 2^bitlen(gamma), |P| <= pb = count 2^14 dmax + 2^14 |B| + hmax |G|
 * < 2^bitlen(pb), sigma count >= 2^(bitlen(sigma count) - 1). dmax, hmax: the
 * channel's max |dy| and max |xhat|. WG_BN_DX_NO_BOUND when dx is identically 0. */
WG_HD wg_u128 wg_bn_dx_pbound(uint64_t count, int64_t b, int64_t g, uint64_t dmax, uint64_t hmax)
{
    return (wg_u128)count * dmax * 16384 + (wg_u128)wg_abs_u64(b) * 16384 + (wg_u128)hmax * wg_abs_u64(g);
}

WG_HD int wg_bn_dx_bound_exp(int64_t gamma, int64_t sigma, uint64_t count, int64_t b, int64_t g, uint64_t dmax,
                             uint64_t hmax)
{
    wg_u128 pb = wg_bn_dx_pbound(count, b, g, dmax, hmax);
    if (gamma == 0 || pb == 0) return WG_BN_DX_NO_BOUND;
    return wg_bn_bitlen_u64(wg_abs_u64(gamma)) + wg_bn_bitlen_u128(pb) -
           wg_bn_bitlen_u64((uint64_t)sigma * count) + 1;
}

/* Per-channel constants of the dx element. */
typedef struct wg_bn_bwd_chan {
    int64_t gamma; /* gamma16, grid 2^-7 */
    int64_t b;     /* B = sum dy, grid 2^e */
    int64_t g;     /* G = sum dy * xhat, grid 2^(e-7) */
    int p64;       /* every P of the channel fits int64 (its bound pb < 2^63) */
    wg_bn_div den; /* sigma * count */
} wg_bn_bwd_chan;

WG_HD wg_bn_bwd_chan wg_bn_bwd_chan_init(int64_t gamma, int64_t sigma, uint64_t count, int64_t b, int64_t g,
                                         uint64_t dmax, uint64_t hmax)
{
    wg_bn_bwd_chan k;
    k.gamma = gamma;
    k.b = b;
    k.g = g;
    k.p64 = wg_bn_dx_pbound(count, b, g, dmax, hmax) < ((wg_u128)1 << 63);
    k.den = wg_bn_div_init((uint64_t)sigma * count);
    return k;
}

/* dx = RNE(gamma P 2^f / (sigma count)) on the grid 2^(e-6-f), with
 * P = 2^14 count dy - 2^14 B - xhat G: the exact gamma/sigma (dy - B/count -
 * xhat G / count) of section 7.5. f comes from the exponent rule, which keeps
 * |dx| <= 2^62 and the numerator below 2^125. When the channel's bound pb < 2^63,
 * every partial sum of P fits int64 (each term is at most pb). */
WG_HD int64_t wg_bn_dx(int64_t dy, int64_t xhat, uint64_t count, const wg_bn_bwd_chan *k, int f)
{
    wg_u128 pmag;
    uint64_t sg; /* the sign of gamma P as a mask: the sign is data, so no branch */
    if (k->p64) {
        int64_t p = (int64_t)count * 16384 * dy - k->b * 16384 - xhat * k->g;
        sg = (uint64_t)(p >> 63);
        pmag = ((uint64_t)p ^ sg) - sg;
    } else {
        wg_i128 p = (wg_i128)count * 16384 * dy - (wg_i128)k->b * 16384 - (wg_i128)xhat * k->g;
        sg = p < 0 ? UINT64_MAX : 0;
        pmag = p < 0 ? (wg_u128)(-p) : (wg_u128)p;
    }
    sg ^= (uint64_t)(k->gamma >> 63);
    uint64_t q = wg_bn_rne_div((pmag * wg_abs_u64(k->gamma)) << f, &k->den); /* 0 when gamma P = 0 */
    return (int64_t)((q ^ sg) - sg);
}

/* ---- the fast elementwise path: one rational split per channel ------------------ */

/* Both elementwise passes round a rational whose numerator is affine in one or two
 * small integers of the element and whose divisor D is a per-channel constant:
 *
 *   x-hat  RNE((x16 2^m - mu 2^7) / sigma)             u = x16           (m = e_x + 22 >= 0)
 *          RNE((x16 - mu 2^(7+j)) / (sigma 2^j))       u = x16           (j = -m > 0)
 *   dx     RNE((A dy + B' xhat + C) / (sigma count))   u = dy, v = xhat  (wg_bn_dx_lin_init)
 *
 * that is q = RNE(N / D) with N = A u + B v + C (here A, B, C name the coefficients, not
 * the backward sums). Per channel, each coefficient is split
 * exactly as A = qa D + ra with 0 <= ra < D (likewise B, C), so
 *
 *   N = D (qa u + qb v + qc) + (ra u + rb v + rc)    (an identity of integers),
 *
 * and floor(N / D) = I + floor(X), X = (ra u + rb v + rc) / D, with the same remainder.
 * X is small (|X| < |u| + |v| + 1), so a 31-bit fixed-point estimate finds floor(X) up to
 * one: with pa = floor(ra 2^31 / D) (so ra 2^31 / D - 1 < pa <= ra 2^31 / D; likewise pb,
 * and pc with a bias of 2^16 subtracted), a = pa u + pb v + pc satisfies, for |u|, |v| <= 2^15,
 *
 *   X 2^31 - (|u| + |v| + 1) - 2^16 < a <= X 2^31 + (|u| + |v|) - 2^16 <= X 2^31,
 *
 * so X - 1 < a / 2^31 <= X and q0 = floor(a / 2^31) is floor(X) or floor(X) - 1. The true
 * remainder N - (I + q0) D = D X - q0 D then lies in [0, 2D), below 2^64 since D < 2^63,
 * so computing it modulo 2^64 (wrapping unsigned products, which is all the element
 * does) gives it exactly; one compare moves q0 to floor(X), and the remainder decides the
 * rounding, ties to even, exactly as wg_bn_rne_div does. I + q0 is also computed modulo
 * 2^64, so it is exact whenever the result fits int64 (it always does: |x-hat| before
 * the clamp < 2^62 + 2^38, |dx| <= 2^62). RNE is odd-symmetric, so rounding the signed
 * rational from its floor gives the same integer as the reference formulas, which round
 * the magnitude and restore the sign: wg_bn_xhat_fast equals wg_bn_xhat and wg_bn_dx_fast
 * equals wg_bn_dx on every input of their domains (tests/test_bn.c checks both, element
 * by element). Per element: seven (x-hat: four) 64-bit multiplies, no division, no
 * branch, no 128-bit arithmetic, which vectorizes. The per-channel split costs three
 * exact 128-by-64-bit divisions (wg_bn_divmod) and three more for the fractions. */
enum {
    WG_BN_LIN_K = 31,         /* fraction bits of pa, pb, pc */
    WG_BN_LIN_BIAS = 1 << 16, /* >= |u| + |v| for |u|, |v| <= 2^15: the estimate never exceeds X */
    WG_BN_XHAT_M_MAX = 47     /* x-hat: a larger e_x + 22 gives the same results as 47 (see below) */
};

/* Per-channel constants of N / D, N = A u + B v + C. q* are the floor quotients modulo
 * 2^64 (two's complement), r* the remainders in [0, D). */
typedef struct wg_bn_lin {
    uint64_t d;          /* D, in [1, 2^63) */
    uint64_t qa, qb, qc; /* floor(A / D), floor(B / D), floor(C / D) */
    uint64_t ra, rb, rc; /* A - qa D, B - qb D, C - qc D */
    int64_t pa, pb;      /* floor(ra 2^31 / D), floor(rb 2^31 / D), in [0, 2^31) */
    int64_t pc;          /* floor(rc 2^31 / D) - 2^16 */
} wg_bn_lin;

/* Split the coefficient (neg ? -mag : mag) by dv->d: floor quotient, remainder, and the
 * remainder's 31-bit fraction. Needs mag < d 2^63 (the quotient then fits int64). */
WG_HD void wg_bn_lin_term(int neg, wg_u128 mag, const wg_bn_div *dv, uint64_t *q, uint64_t *r, int64_t *p)
{
    uint64_t rm, qm = wg_bn_divmod(mag, dv, &rm);
    uint64_t borrow = (uint64_t)(neg && rm != 0); /* floor(-n / d) = -ceil(n / d) */
    *q = neg ? 0 - qm - borrow : qm;
    *r = borrow ? dv->d - rm : rm;
    uint64_t pr;
    *p = (int64_t)wg_bn_divmod((wg_u128)*r << WG_BN_LIN_K, dv, &pr); /* r 2^31 < d 2^31 */
}

/* The constants of (A u + B v + C) / d; each coefficient as a sign and a magnitude below
 * d 2^63. */
WG_HD wg_bn_lin wg_bn_lin_init(uint64_t d, int na, wg_u128 ma, int nb, wg_u128 mb, int nc, wg_u128 mc)
{
    wg_bn_lin k;
    wg_bn_div dv = wg_bn_div_init(d);
    k.d = d;
    wg_bn_lin_term(na, ma, &dv, &k.qa, &k.ra, &k.pa);
    wg_bn_lin_term(nb, mb, &dv, &k.qb, &k.rb, &k.pb);
    wg_bn_lin_term(nc, mc, &dv, &k.qc, &k.rc, &k.pc);
    k.pc -= WG_BN_LIN_BIAS;
    return k;
}

/* RNE((A u + B v + C) / D) for |u|, |v| <= 2^15, when the result fits int64 (the
 * argument above). Wrapping unsigned arithmetic throughout; branch-free. */
WG_HD int64_t wg_bn_lin_rne(const wg_bn_lin *k, int64_t u, int64_t v)
{
    uint64_t i = k->qa * (uint64_t)u + k->qb * (uint64_t)v + k->qc;
    uint64_t x = k->ra * (uint64_t)u + k->rb * (uint64_t)v + k->rc; /* D X modulo 2^64 */
    /* |a| < 2^48; pa, pb < 2^31 and |u|, |v| <= 2^15 are int32, whose products the
     * vector units widen in one step (vpmuldq, not the 64-bit vpmullq) */
    int64_t a = (int64_t)(int32_t)k->pa * (int32_t)u + (int64_t)(int32_t)k->pb * (int32_t)v + k->pc;
    int64_t q0 = a >> WG_BN_LIN_K;                                  /* floor: arithmetic shift */
    uint64_t r = x - (uint64_t)q0 * k->d;                           /* in [0, 2D): exact */
    uint64_t ge = r >= k->d;
    uint64_t q = i + (uint64_t)q0 + ge; /* floor(N / D) */
    r -= k->d & (0 - ge);
    /* up when 2r > D, or 2r = D with q odd: that is 2r + (q & 1) > D, written r + (q & 1) >
     * D - r (no overflow: r < D); one compare, which vectorizes */
    return (int64_t)(q + (uint64_t)(r + (q & 1) > k->d - r));
}

/* The x-hat constants: D = sigma and A = 2^m, C = -mu 2^7 for m = e_x + 22 >= 0; D =
 * sigma 2^j, A = 1, C = -mu 2^(7+j) for j = -m > 0 (j <= 32 for e_x >= -54, so D < 2^63).
 * m is capped at 47: with m >= 48 the reference clamps every x16 != 0 to its sign, and at
 * m = 47 already |x16 2^47 - mu 2^7| >= 2^47 - 2^38 > 32767.5 (2^31 - 1) >= 32767.5 sigma
 * does the same, while x16 = 0 does not involve m. Quotient bounds: A / D <= 2^47,
 * |C| / D < 2^38. */
WG_HD wg_bn_lin wg_bn_xhat_lin_init(int64_t mu, int64_t sigma, int e_x)
{
    int m = e_x - WG_BN_STAT_EXP - WG_BN_XHAT_EXP;
    m = m > WG_BN_XHAT_M_MAX ? WG_BN_XHAT_M_MAX : m;
    int j = m < 0 ? -m : 0;
    return wg_bn_lin_init((uint64_t)sigma << j, 0, (wg_u128)1 << (m > 0 ? m : 0), 0, 0, mu > 0,
                          (wg_u128)wg_abs_u64(mu) << (7 + j));
}

/* x-hat as wg_bn_xhat computes it, from the constants of wg_bn_xhat_lin_init, for the
 * statistics of the forward pass (|mu| <= 2^31 - 1, 1 <= sigma <= 2^31 - 1), e_x >= -54
 * and |x16| <= 32767; *clamped is
 * set to 1 when the clamp acted and to 0 otherwise (wg_bn_xhat leaves it alone then; an
 * int64 here, so that a loop of this element holds one integer width). RNE(N / D) >= 32768
 * exactly when N / D >= 32767.5, wg_bn_xhat's clamp test. */
WG_HD int64_t wg_bn_xhat_fast(int64_t x16, const wg_bn_lin *k, int64_t *clamped)
{
    int64_t q = wg_bn_lin_rne(k, x16, 0);
    *clamped = (q > WG_BN_XHAT_BOUND) | (q < -WG_BN_XHAT_BOUND);
    return wg_clamp_sym(q, WG_BN_XHAT_BOUND);
}

/* The dx constants for the exponent f of the exponent rule: D = sigma count and, with
 * P = 2^14 count dy - 2^14 B - xhat G, N = gamma P 2^f = A dy + B' xhat + C:
 * A = gamma 2^(f+14) count, B' = -gamma 2^f G, C = -gamma 2^(f+14) B. A channel with a
 * nonzero coefficient has gamma != 0 and pb > 0 (|B| <= pb / 2^14, |G| <= pb / hmax with
 * hmax >= 1 when G != 0, count <= pb / (2^14 dmax)), so its bound exponent E exists and
 * E + f <= 62, which gives |A| dmax, |B'| hmax, |C| < 2^62 D: each term's quotient fits,
 * and each magnitude < 2^125 fits 128 bits. A is taken as 0 when dmax = 0 (dy is then 0
 * throughout the channel and the term vanishes; A itself would have no bound). */
WG_HD wg_bn_lin wg_bn_dx_lin_init(int64_t gamma, int64_t sigma, uint64_t count, int64_t b, int64_t g, uint64_t dmax,
                                  int f)
{
    uint64_t ag = wg_abs_u64(gamma);
    int ng = gamma < 0;
    wg_u128 ma = dmax ? ((wg_u128)ag * count) << (f + 14) : 0;
    wg_u128 mb = ((wg_u128)ag * wg_abs_u64(g)) << f;
    wg_u128 mc = ((wg_u128)ag * wg_abs_u64(b)) << (f + 14);
    return wg_bn_lin_init((uint64_t)sigma * count, ng, ma, ng == (g < 0), mb, ng == (b < 0), mc);
}

/* dx as wg_bn_dx computes it, from wg_bn_dx_lin_init's constants, for |dy| <= dmax and
 * |xhat| <= hmax (the channel's maxima, at most 32767, from which the exponent rule chose f). */
WG_HD int64_t wg_bn_dx_fast(int64_t dy, int64_t xhat, const wg_bn_lin *k) { return wg_bn_lin_rne(k, dy, xhat); }

/* ---- dx from an estimate, with an exact fallback ------------------------------------ */

/* dx = RNE(N / D) (wg_bn_dx_fast) also has a cheaper form that decides almost every
 * element and says when it cannot; the caller then uses wg_bn_dx_fast. Two targets:
 *
 *   dx itself (wg_bn_dxe):  dx = floor(X1),  X1 = N / D + 1/2 = (2N + D) / (2D),
 *     except at a tie (X1 an integer), where RNE may round down instead;
 *   cpu_rne.h's compact form p = 2 floor(dx / 2^33) + (dx mod 2^33 != 0) (wg_bn_dxc),
 *     for E2:  floor(dx / 2^33) = floor(X2),  X2 = X1 / 2^33 = (2N + D) / (2^34 D),
 *     since floor(RNE(y) / S) = floor(floor(y + 1/2) / S) for S = 2^33, also at a tie
 *     that rounds down to an even z - 1 from an odd z = floor(y + 1/2) (the two differ
 *     only if z is a multiple of S, which is even); and dx mod S = 0 happens only when
 *     frac(X2) S <= 1 (z mod S is 0, or 1 at such a tie), so frac(X2) > 2^-33 gives
 *     the sticky bit 1.
 *
 * Both X are affine in u = dy and v = x-hat: X = (Ka u + Kb v + Kc) / E with Ka = 2A,
 * Kb = 2B', Kc = 2C + D (wg_bn_dx_lin_init's A, B', C) and E = 2D or 2^34 D. Per channel,
 * each Fk = +-floor(|Kk| 2^31 / E), within 1 of Kk 2^31 / E, is split exactly into qk =
 * floor(Fk / 2^31) and pk = Fk mod 2^31 in [0, 2^31). Then
 *
 *   X 2^31 = (qa u + qb v + qc) 2^31 + a + err,  a = pa u + pb v + pc,  |err| < |u| + |v| + 1,
 *
 * and |err| < 2^16 = WG_BN_DX_MARGIN for |u|, |v| <= 32767. When f = a mod 2^31 lies in
 * (MARGIN, 2^31 - MARGIN), X 2^31 lies strictly between the same two multiples of 2^31 as
 * a, so floor(X) = qa u + qb v + qc + (a >> 31), and frac(X) 2^31 > f - MARGIN >= 1: X is
 * no integer (no tie) and frac(X2) > 2^-33 (the sticky bit is 1). floor(X) is computed
 * modulo 2^64 (dx: |dx| <= 2^62 fits) or 2^32 (floor(dx / 2^33) in [-2^29, 2^29] fits),
 * so exactly. About 2^-14 of the elements fall outside and take the fallback, and so do
 * all of a channel whose dx is 0 throughout in the compact form (X2 = 2^-34 there), which
 * its live flag answers instead. Per element: two 64-bit (compact: 32-bit) and two
 * 32x32->64-bit multiplies, against wg_bn_dx_fast's five and two. */
enum { WG_BN_DX_MARGIN = 1 << 16 };

/* The split of Fk = +-floor(mag 2^31 / E) (neg: -) for E = 2D (scale 30: Fk = mag 2^30 /
 * D) or 2^34 D (scale -3: mag / (8 D)), given mag / D < 2^63: floor(Fk / 2^31) modulo 2^64
 * into *q, Fk mod 2^31 into *p. */
WG_HD void wg_bn_dx_est_term(int neg, wg_u128 mag, const wg_bn_div *dv, int scale, uint64_t *q, int32_t *p)
{
    uint64_t r, qm = wg_bn_divmod(mag, dv, &r); /* mag = qm D + r */
    uint64_t hi, lo;                            /* floor(|Fk|) = hi 2^31 + lo */
    if (scale == 30) {
        hi = qm >> 1;
        lo = (qm & 1) << 30 | wg_bn_divmod((wg_u128)r << 30, dv, &r); /* + floor(r 2^30 / D) < 2^30 */
    } else {
        hi = (qm >> 3) >> 31;
        lo = (qm >> 3) & UINT64_C(0x7fffffff); /* floor(floor(mag / D) / 8) = floor(mag / (8 D)) */
    }
    if (neg) { /* -(hi 2^31 + lo) = (-hi - 1) 2^31 + (2^31 - lo) */
        hi = lo ? 0 - hi - 1 : 0 - hi;
        lo = lo ? (UINT64_C(1) << 31) - lo : 0;
    }
    *q = hi;
    *p = (int32_t)lo;
}

/* The coefficients Ka = 2A, Kb = 2B', Kc = 2C + D of both X, as signs and magnitudes, for
 * the same channel and f as wg_bn_dx_lin_init (whose bounds give |Kk| / D < 2^63). */
typedef struct wg_bn_dx_k {
    int neg[3];
    wg_u128 mag[3];
    wg_bn_div dv; /* D */
} wg_bn_dx_k;

WG_HD wg_bn_dx_k wg_bn_dx_k_init(int64_t gamma, int64_t sigma, uint64_t count, int64_t b, int64_t g, uint64_t dmax,
                                 int f)
{
    uint64_t ag = wg_abs_u64(gamma), d = (uint64_t)sigma * count;
    int ng = gamma < 0, nc = ng == (b < 0);
    wg_u128 mc = ((wg_u128)ag * wg_abs_u64(b)) << (f + 14);
    wg_bn_dx_k k;
    k.dv = wg_bn_div_init(d);
    k.neg[0] = ng;
    k.mag[0] = dmax ? ((wg_u128)ag * count) << (f + 15) : 0;
    k.neg[1] = ng == (g < 0);
    k.mag[1] = ((wg_u128)ag * wg_abs_u64(g)) << (f + 1);
    k.neg[2] = nc && 2 * mc > d; /* 2C + D with C = -+mc (|2C| < 2^126, D < 2^63) */
    k.mag[2] = nc ? (k.neg[2] ? 2 * mc - d : d - 2 * mc) : 2 * mc + d;
    return k;
}

/* dx itself: X1 = (2N + D) / (2D). */
typedef struct wg_bn_dxe {
    uint64_t qa, qb, qc; /* floor(Fk / 2^31) modulo 2^64 */
    int32_t pa, pb, pc;  /* Fk mod 2^31 */
} wg_bn_dxe;

WG_HD wg_bn_dxe wg_bn_dxe_init(int64_t gamma, int64_t sigma, uint64_t count, int64_t b, int64_t g, uint64_t dmax,
                               int f)
{
    wg_bn_dx_k c = wg_bn_dx_k_init(gamma, sigma, count, b, g, dmax, f);
    wg_bn_dxe k;
    wg_bn_dx_est_term(c.neg[0], c.mag[0], &c.dv, 30, &k.qa, &k.pa);
    wg_bn_dx_est_term(c.neg[1], c.mag[1], &c.dv, 30, &k.qb, &k.pb);
    wg_bn_dx_est_term(c.neg[2], c.mag[2], &c.dv, 30, &k.qc, &k.pc);
    return k;
}

/* wg_bn_dx_fast(u, v, .) for |u|, |v| <= 32767 when *ok comes back 1 (0: not decided,
 * the result is then not dx). */
WG_HD int64_t wg_bn_dxe_elem(int64_t u, int64_t v, const wg_bn_dxe *k, int64_t *ok)
{
    uint64_t i = k->qa * (uint64_t)u + k->qb * (uint64_t)v + k->qc;
    int64_t a = (int64_t)k->pa * (int32_t)u + (int64_t)k->pb * (int32_t)v + k->pc;
    uint64_t f = (uint64_t)a & UINT64_C(0x7fffffff);
    *ok = (f > WG_BN_DX_MARGIN) & (f < (UINT64_C(1) << 31) - WG_BN_DX_MARGIN);
    return (int64_t)(i + (uint64_t)(a >> 31));
}

/* The compact form: X2 = (2N + D) / (2^34 D). */
typedef struct wg_bn_dxc {
    uint32_t qa, qb, qc; /* floor(Fk / 2^31) modulo 2^32 */
    int32_t pa, pb, pc;  /* Fk mod 2^31 */
    int32_t live;        /* -1, or 0 when dx is 0 throughout the channel */
} wg_bn_dxc;

WG_HD wg_bn_dxc wg_bn_dxc_init(int64_t gamma, int64_t sigma, uint64_t count, int64_t b, int64_t g, uint64_t dmax,
                               int f)
{
    wg_bn_dx_k c = wg_bn_dx_k_init(gamma, sigma, count, b, g, dmax, f);
    wg_bn_dxc k;
    uint64_t q[3];
    wg_bn_dx_est_term(c.neg[0], c.mag[0], &c.dv, -3, &q[0], &k.pa);
    wg_bn_dx_est_term(c.neg[1], c.mag[1], &c.dv, -3, &q[1], &k.pb);
    wg_bn_dx_est_term(c.neg[2], c.mag[2], &c.dv, -3, &q[2], &k.pc);
    k.qa = (uint32_t)q[0], k.qb = (uint32_t)q[1], k.qc = (uint32_t)q[2];
    /* A = B' = C = 0 (Kc = D alone): dx = RNE(0) = 0 */
    k.live = (c.mag[0] | c.mag[1]) != 0 || c.mag[2] != c.dv.d || c.neg[2] ? -1 : 0;
    return k;
}

/* wg_compact(wg_bn_dx_fast(u, v, .)) for |u|, |v| <= 32767 when *ok comes back 1. */
WG_HD int32_t wg_bn_dxc_elem(int32_t u, int32_t v, const wg_bn_dxc *k, int32_t *ok)
{
    uint32_t i = k->qa * (uint32_t)u + k->qb * (uint32_t)v + k->qc;
    int64_t a = (int64_t)k->pa * u + (int64_t)k->pb * v + k->pc;
    uint32_t f = (uint32_t)a & UINT32_C(0x7fffffff);
    uint32_t fl = i + (uint32_t)(a >> 31); /* floor(X2) modulo 2^32 */
    *ok = ((f > WG_BN_DX_MARGIN) & (f < UINT32_C(0x80000000) - WG_BN_DX_MARGIN)) | (k->live == 0);
    return (int32_t)((2 * fl + 1) & (uint32_t)k->live);
}

/* ---- x-hat in 32-bit lanes, for e_x >= -22 ------------------------------------------- */

/* When m = e_x + 22 >= 0 (every narrowed input of a network whose grids are 2^-22 or
 * coarser), x-hat also has a form in 32-bit integers only, twice the lanes of the 64-bit
 * form. With m' = min(m, 47) (wg_bn_xhat_lin_init says why the cap changes nothing), D =
 * sigma in [1, 2^31), A = 2^m' and C = -mu 2^7, x-hat is RNE(N(u) / D) of N(u) = A u + C,
 * u = x16 in [-32767, 32767], clamped at +-32767.
 *
 * Clamps. N grows with u, so the unclamped u form one interval [lo, hi]: RNE(N / D) >=
 * -32767 exactly when 2N > -65535 D (N / D = -32767.5 rounds to the even -32768), so lo =
 * floor((-65535 D - 2C) / 2^(m'+1)) + 1, and likewise hi = ceil((65535 D - 2C) / 2^(m'+1))
 * - 1 (both exact arithmetic shifts; |65535 D| + |2C| < 2^48). Below lo x-hat is -32767,
 * above hi +32767, and both are clamps. lo <= hi + 1 always.
 *
 * Inside [lo, hi], with t = u - lo in [0, 65534] and E = N(lo) + 32768 D:
 * X = (A t + E) / D = N(u) / D + 32768 lies in [1/2, 65535.5], so q = floor(X) is in
 * [0, 65535] and has the parity of floor(N / D). With P = floor(A 2^16 / D) and Pe =
 * floor(E 2^16 / D) (so A 2^16 / D - 1 < P and E 2^16 / D - 1 < Pe), a = P t + Pe satisfies
 *
 *   X 2^16 - (t + 1) < a <= X 2^16 < 2^32,
 *
 * and t + 1 <= 2^16, so a >> 16 is q or q - 1. a is an integer in [0, 2^32), so it is what
 * P u + (Pe - P lo) gives modulo 2^32 (uint32 arithmetic, P itself reduced modulo 2^32);
 * the remainder A t + E - D (a >> 16) = N(u) + 32768 D - D (a >> 16) lies in [0, 2D) and
 * 2D < 2^32, so uint32 arithmetic gives it exactly too, from A and C + 32768 D reduced
 * modulo 2^32. One compare moves the quotient to q, and the remainder r in [0, D) decides
 * the rounding, ties to even: up when 2r + (q & 1) > D (2r + 1 < 2^32). x-hat = q + up -
 * 32768. Per element: three 32-bit multiplies, no 64-bit lane. */
typedef struct wg_bn_xhat32 {
    int32_t lo, hi; /* the unclamped x16: [lo, hi]; below -32767, above +32767 */
    uint32_t d;     /* D = sigma */
    uint32_t p;     /* P = floor(A 2^16 / D), modulo 2^32 */
    uint32_t k;     /* Pe - P lo, modulo 2^32 */
    uint32_t a;     /* A modulo 2^32 */
    uint32_t c;     /* C + 32768 D, modulo 2^32 */
} wg_bn_xhat32;

/* Whether the 32-bit form serves the narrowed input's exponent e_x. */
WG_HD int wg_bn_xhat32_ok(int e_x) { return e_x - WG_BN_STAT_EXP - WG_BN_XHAT_EXP >= 0; }

/* The constants for mu and sigma of the forward pass (|mu| <= 2^31 - 1, 1 <= sigma <=
 * 2^31 - 1) and an e_x with wg_bn_xhat32_ok. An empty interval (lo = hi + 1) leaves the
 * other constants 0: they are then never used. */
WG_HD wg_bn_xhat32 wg_bn_xhat32_init(int64_t mu, int64_t sigma, int e_x)
{
    int m = e_x - WG_BN_STAT_EXP - WG_BN_XHAT_EXP;
    m = m > WG_BN_XHAT_M_MAX ? WG_BN_XHAT_M_MAX : m;
    const int64_t bound2 = 2 * WG_BN_XHAT_BOUND + 1; /* 65535 */
    int64_t c = -mu * 128, d = sigma;
    int64_t lo = ((-bound2 * d - 2 * c) >> (m + 1)) + 1; /* |.| < 2^48: int64 */
    int64_t hi = -((2 * c - bound2 * d) >> (m + 1)) - 1;
    lo = lo < -WG_BN_XHAT_BOUND ? -WG_BN_XHAT_BOUND : (lo > WG_BN_XHAT_BOUND + 1 ? WG_BN_XHAT_BOUND + 1 : lo);
    hi = hi > WG_BN_XHAT_BOUND ? WG_BN_XHAT_BOUND : (hi < -WG_BN_XHAT_BOUND - 1 ? -WG_BN_XHAT_BOUND - 1 : hi);
    wg_bn_xhat32 k = {(int32_t)lo, (int32_t)hi, (uint32_t)d, 0, 0, 0, 0};
    if (lo > hi) return k;
    uint64_t a = UINT64_C(1) << m;
    /* E = A lo + C + 32768 D: in [D / 2, 65535.5 D] (lo is unclamped), below 2^47 */
    uint64_t e = (uint64_t)((int64_t)a * lo + c + (WG_BN_XHAT_BOUND + 1) * d);
    uint64_t p = (a << 16) / (uint64_t)d, pe = (e << 16) / (uint64_t)d; /* < 2^63 */
    k.p = (uint32_t)p;
    k.k = (uint32_t)pe - (uint32_t)p * (uint32_t)lo;
    k.a = (uint32_t)a;
    k.c = (uint32_t)c + (uint32_t)(WG_BN_XHAT_BOUND + 1) * (uint32_t)d;
    return k;
}

/* x-hat as wg_bn_xhat computes it, for |x16| <= 32767, from wg_bn_xhat32_init's
 * constants; *clamped is set to 1 when the clamp acted and to 0 otherwise. Unsigned
 * 32-bit arithmetic wraps by definition; the values of u outside [lo, hi] compute
 * discarded intermediates. */
WG_HD int32_t wg_bn_xhat32_elem(int32_t u, const wg_bn_xhat32 *k, int32_t *clamped)
{
    uint32_t q = (k->p * (uint32_t)u + k->k) >> 16;
    uint32_t r = k->a * (uint32_t)u + k->c - k->d * q;
    uint32_t ge = r >= k->d;
    q += ge;
    r -= k->d & (0u - ge);
    int32_t h = (int32_t)(q + (uint32_t)(r + r + (q & 1) > k->d)) - (WG_BN_XHAT_BOUND + 1);
    int32_t below = u < k->lo, above = u > k->hi;
    *clamped = below | above;
    return below ? -WG_BN_XHAT_BOUND : (above ? WG_BN_XHAT_BOUND : h);
}

#endif
