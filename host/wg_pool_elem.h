/* wg_pool_elem.h: the per-element formulas of global average pooling (pool.h,
 * docs/numerics.md 7.7), shared by the CPU loops (pool.c) and the CUDA kernels
 * (cuda/pool.cu): design principle 2, one formula, two launchers. */
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

#endif
