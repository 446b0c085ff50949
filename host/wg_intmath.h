/* wg_intmath.h: the integer primitives every quantizer is built from.
 *
 * Shared by the CPU loops and the CUDA kernels (design principle 2), so they use
 * only integer operations that mean the same thing in C and in CUDA device code.
 * Values are fixed point: an integer q with a power-of-two exponent e stands for
 * q * 2^e (docs/numerics.md). Moving q from exponent e to exponent e + s is a
 * right shift by s: exact when s <= 0, rounded when s > 0.
 *
 * Rounding is round-half-to-even everywhere a result is deterministic (as the
 * reference's tf.round), and "add a uniform random in [0, 2^s), then floor" where it
 * is stochastic (wg_philox.h, wageubn.md's G). */
#ifndef WG_INTMATH_H
#define WG_INTMATH_H

#include <stdint.h>

#include "wg_hd.h"

/* 128-bit integers for exact intermediates (gcc, clang and nvcc device code have them). */
__extension__ typedef __int128 wg_i128;
__extension__ typedef unsigned __int128 wg_u128;

/* 2^(k-1) - 1: the largest magnitude of a k-bit symmetric integer (k in 2..64). */
WG_HD int64_t wg_bound_bits(int k) { return (int64_t)((UINT64_C(1) << (k - 1)) - 1); }

/* Clamp x to [-bound, bound] (bound >= 0): the symmetric saturating narrowing. */
WG_HD int64_t wg_clamp_sym(int64_t x, int64_t bound)
{
    x = x > bound ? bound : x; /* two independent selects: conditional moves, no branches */
    return x < -bound ? -bound : x;
}

/* |x| as an unsigned value; exact for INT64_MIN. */
WG_HD uint64_t wg_abs_u64(int64_t x) { return x < 0 ? UINT64_C(0) - (uint64_t)x : (uint64_t)x; }

/* x * 2^n for n >= 0, saturated to [-INT64_MAX, INT64_MAX]. */
WG_HD int64_t wg_shl_sat(int64_t x, int n)
{
    if (x == 0) return 0;
    if (n >= 63 || wg_abs_u64(x) > ((uint64_t)INT64_MAX >> n)) return x > 0 ? INT64_MAX : -INT64_MAX;
    return (int64_t)((uint64_t)x << n);
}

/* round(x / 2^s), ties to even, for s >= 0. Never overflows. */
WG_HD int64_t wg_rshift_rne(int64_t x, int s)
{
    if (s <= 0) return x;
    if (s >= 64) return 0; /* |x / 2^s| <= 1/2, and a tie rounds to the even 0 */
    int64_t fl = x >> s; /* floor: arithmetic shift */
    uint64_t rem = (uint64_t)x & ((UINT64_C(1) << s) - 1);
    uint64_t half = UINT64_C(1) << (s - 1);
    /* up when past the half, or at the half with an odd floor; branch-free */
    return fl + (int64_t)((rem > half) | ((rem == half) & ((uint64_t)fl & 1)));
}

/* x * 2^-s rounded half to even: a right shift for s > 0, an exact (saturating)
 * left shift for s <= 0. */
WG_HD int64_t wg_shift_rne(int64_t x, int s) { return s >= 0 ? wg_rshift_rne(x, s) : wg_shl_sat(x, -s); }

/* The one elementwise step of direct, fit and shift (E1) quantization: move to the
 * new exponent with round-half-to-even, then saturate symmetrically. */
WG_HD int64_t wg_round_shift_clamp(int64_t x, int s, int64_t bound)
{
    return wg_clamp_sym(wg_shift_rne(x, s), bound);
}

/* floor((x + r) / 2^s) for a uniform r in [0, 2^s), s >= 1, drawn from 32 random
 * bits u: r = u >> (32 - s) when s <= 32. For s > 32 only 32 random bits exist, so
 * r = u << (s - 32): the expectation is then exact to within 2^-32 of one output
 * unit (docs/numerics.md, "Stochastic rounding"). s <= 0 is an exact left shift.
 * Written as floor(x / 2^s) + carry so that x + r cannot overflow. */
WG_HD int64_t wg_rshift_sr(int64_t x, int s, uint32_t u)
{
    if (s <= 0) return wg_shl_sat(x, -s);
    if (s > 63) s = 63; /* unreachable for an int64 max-abs; keeps the shifts defined */
    uint64_t r = s <= 32 ? (uint64_t)(u >> (32 - s)) : (uint64_t)u << (s - 32);
    int64_t fl = x >> s;
    uint64_t rem = (uint64_t)x & ((UINT64_C(1) << s) - 1);
    return fl + ((rem + r) >> s ? 1 : 0);
}

/* floor(log2 m) for m > 0: the index of the highest set bit. */
WG_HD int wg_msb_u64(uint64_t m)
{
#if defined(__CUDA_ARCH__)
    return 63 - __clzll((long long)m);
#else
    return 63 - __builtin_clzll(m);
#endif
}

/* The full 128-bit product a * b as (hi, lo), from 32-bit halves so that C and
 * CUDA compute it the same way without a 128-bit type. */
WG_HD void wg_mul_u64_wide(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    *lo = (mid << 32) | (p00 & 0xffffffffu);
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* Exponent of Shift(m), the power of two nearest to m in the log domain
 * (wageubn.md): with p = floor(log2 m) it is p + 1 when m^2 >= 2^(2p+1), else p.
 * The test is exact (m^2 computed to 128 bits); equality never happens, since
 * 2^(2p+1) is not a square. Convention: m == 0 (an all-zero tensor) gives 0, i.e.
 * the max-abs is taken as one unit of the input grid. */
WG_HD int wg_npow2_exp(uint64_t m)
{
    if (m == 0) return 0;
    int p = wg_msb_u64(m);
    uint64_t hi, lo;
    wg_mul_u64_wide(m, m, &hi, &lo);
    int b = 2 * p + 1; /* compare (hi:lo) with 2^b, b in 1..127 */
    int ge = b >= 64 ? hi >= (UINT64_C(1) << (b - 64)) : (hi != 0 || lo >= (UINT64_C(1) << b));
    return ge ? p + 1 : p;
}

/* round(m / 2^s), ties to even, for an unsigned m (a max-abs, up to 2^63) and s >= 0. */
WG_HD uint64_t wg_rshift_rne_u64(uint64_t m, int s)
{
    if (s <= 0) return m;
    if (s > 64) return 0;
    uint64_t fl = s == 64 ? 0 : m >> s;
    uint64_t rem = s == 64 ? m : m & ((UINT64_C(1) << s) - 1);
    uint64_t half = UINT64_C(1) << (s - 1);
    return fl + ((rem > half) | ((rem == half) & (fl & 1)));
}

/* The smallest shift s >= s_min such that round-half-even(m / 2^s) <= bound
 * (negative s: m * 2^-s, exact): the finest grid, no finer than s_min, on which a
 * tensor whose max-abs is m fits its container without saturating. */
WG_HD int wg_fit_shift(uint64_t m, int s_min, int64_t bound)
{
    if (m != 0 && s_min < -62) s_min = -62; /* m * 2^63 never fits: start where it might */
    for (int s = s_min;; s++) {
        if (s >= 0 && wg_rshift_rne_u64(m, s) <= (uint64_t)bound) return s;
        /* a left shift fits when m <= bound / 2^-s; tested before shifting, since a
         * saturated product would be indistinguishable from a bound of INT64_MAX */
        if (s < 0 && (s <= -63 ? m == 0 : m <= ((uint64_t)bound >> -s))) return s;
    }
}

#endif
