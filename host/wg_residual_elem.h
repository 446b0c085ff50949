/* wg_residual_elem.h: the per-element formulas of the aligned sums (residual.h,
 * docs/numerics.md 7.4), shared by the CPU loops (residual_cpu.c) and the CUDA kernels
 * (cuda/residual.cu): design principle 2, one formula, two launchers. */
#ifndef WG_RESIDUAL_ELEM_H
#define WG_RESIDUAL_ELEM_H

#include <stdint.h>

#include "wg_hd.h"
#include "wg_intmath.h"

/* The forward residual stream's sum of two terms moved up to a common grid: a 2^sa + b
 * 2^sb, each term saturated (wg_shl_sat) and the sum saturated at +-INT64_MAX. For the
 * int32 terms and shifts <= 31 of the network (|term| < 2^62) it is exact. */
WG_HD int64_t wg_shift_sum_elem(int64_t a, int sa, int64_t b, int sb)
{
    wg_i128 s = (wg_i128)wg_shl_sat(a, sa) + wg_shl_sat(b, sb);
    return s > INT64_MAX ? INT64_MAX : s < -INT64_MAX ? -INT64_MAX : (int64_t)s;
}

/* An error sum's step: acc 2^sa + add 2^sb, exact in 128 bits (shifts <= 31), then
 * saturated once at +-INT64_MAX. */
WG_HD int64_t wg_accumulate_elem(int64_t acc, int sa, int64_t add, int sb)
{
    wg_i128 sum = (wg_i128)acc * ((wg_i128)1 << sa) + (wg_i128)add * ((wg_i128)1 << sb);
    return sum > INT64_MAX ? INT64_MAX : sum < -INT64_MAX ? -INT64_MAX : (int64_t)sum;
}

#endif
