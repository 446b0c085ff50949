/* wg_pool_elem.h: the per-element formulas of global average pooling and the windows of
 * max pooling (pool.h, docs/numerics.md 7.7), shared by the CPU loops (pool.c) and the
 * CUDA kernels (cuda/pool.cu): design principle 2, one formula, two launchers. */
#ifndef WG_POOL_ELEM_H
#define WG_POOL_ELEM_H

#include <stdint.h>

#include "wg_hd.h"
#include "wg_intmath.h"
#include "wg_rational.h"

#define WG_GAP_EXTRA_BITS 8

/* The backward spread of one pooled error d over hw positions: RNE(d 2^8 / hw) without
 * forming d 2^8: d = q hw + r (C division: r has d's sign, |r| < hw), so the result is
 * q 2^8 + RNE(r 2^8 / hw) exactly (|r| < hw keeps r 2^8 small). */
WG_HD int64_t wg_gap_spread_elem(int64_t d, int64_t hw)
{
    int64_t q = d / hw, r = d % hw;
    return wg_shl_sat(q, WG_GAP_EXTRA_BITS) + wg_div_rne(r * (1 << WG_GAP_EXTRA_BITS), hw);
}

/* Max pooling: the real positions of window o along a dimension of size n: [*lo, *hi),
 * never empty (pad < K). Walking the clipped rectangle row by row is the row-major
 * window order with the padded positions left out (pool.h's tie rule). */
WG_HD void wg_maxpool_span(int64_t o, int stride, int pad, int k, int64_t n, int64_t *lo, int64_t *hi)
{
    int64_t a = o * stride - pad, b = a + k;
    *lo = a < 0 ? 0 : a;
    *hi = b > n ? n : b;
}

#endif
