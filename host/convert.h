/* convert.h: crossings between fixed-point and float32 tensors, for the reference
 * preset, whose first convolution and last fully connected layer (and the loss) stay
 * in float as in the reference code (wageubn.md; docs/numerics.md 7.7).
 *
 * To float: value q * 2^exp, rounded once to float (round half to even; exact when
 * |q| < 2^24). From float: a per-tensor exponent from the largest magnitude, chosen
 * so that it lands in [2^(WG_F32_FIXED_BITS-1), 2^WG_F32_FIXED_BITS] units, then
 * every element rounded half to even onto that grid: 30 significant bits, more than
 * float's 24, so the crossing adds no error beyond float's own except for elements
 * 2^-30 below the maximum, and what follows (BN's int16 narrowing, E1) is coarser
 * still. A non-finite float (a diverged float layer) stops the run (wg_run_failed). */
#ifndef WG_CONVERT_H
#define WG_CONVERT_H

#include <float.h>
#include <stdbool.h>

#include "tensor.h"
#include "wg_hd.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WG_F32_FIXED_BITS 30

/* Whether 2^e is a normal float: the conversion to float then multiplies by it (exact);
 * the far exponents of tiny errors (2^-127 and below) scale with ldexpf instead. */
WG_HD bool wg_f32_scale_is_normal(int e) { return e >= FLT_MIN_EXP - 1 && e < FLT_MAX_EXP; }

/* dst (f32) = src (any integer container) * 2^src->exp; same element count. */
void wg_fixed_to_f32(const wg_tensor *src, wg_tensor *dst);

/* dst (int32 or int64) = src (f32) on the grid chosen as above; sets dst->exp.
 * what names the tensor in the message for a non-finite value. */
void wg_f32_to_fixed(const wg_tensor *src, wg_tensor *dst, const char *what);

#ifdef __cplusplus
}
#endif

#endif
