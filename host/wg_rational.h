/* wg_rational.h: round-half-to-even of exact rationals (shared by CPU and CUDA).
 *
 * Every division by a number that is not a power of two (averages, softmax
 * normalization, the batch mean of a gradient) rounds the exact quotient half to
 * even, decided by comparing integers (docs/numerics.md section 2). */
#ifndef WG_RATIONAL_H
#define WG_RATIONAL_H

#include <stdint.h>

#include "wg_hd.h"
#include "wg_intmath.h"

/* round(a / b), ties to even, for b > 0. Exact for every int64 a. */
WG_HD int64_t wg_div_rne(int64_t a, int64_t b)
{
    if (b == 1) return a;
    uint64_t ua = wg_abs_u64(a), ub = (uint64_t)b;
    uint64_t q = ua / ub, r = ua % ub;
    /* compare 2r with b without overflow: r >= b - r */
    uint64_t rest = ub - r;
    if (r > rest || (r == rest && (q & 1))) q += 1;
    return a < 0 ? -(int64_t)q : (int64_t)q;
}

#endif
