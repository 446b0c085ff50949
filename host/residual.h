/* residual.h: sums of fixed-point tensors on different grids (docs/numerics.md 7.4).
 *
 * Forward, the residual stream: out = a + b, formed exactly in int64 at the finer of
 * the two exponents, then stored in out's container by the fit rule with that exponent
 * as the floor (exact whenever it fits). Backward, error sums: acc += add, both int64,
 * at the finer exponent (exact unless a sum passes 2^63, which saturates). */
#ifndef WG_RESIDUAL_H
#define WG_RESIDUAL_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest exponent gap the aligned sums accept between two nonzero tensors (a
 * bigger one is a bug upstream); an all-zero tensor takes the other's exponent. */
#define WG_ALIGN_MAX_GAP 31

/* out (int32) = a + b; a, b: int32 (or any integer container) of the same size.
 * tmp: an int64 tensor of the same size (scratch). Returns max |out| (integers), or
 * WG_QUANT_MAX_UNKNOWN where the sum had to be narrowed to fit int32. */
uint64_t wg_residual_add(const wg_tensor *a, const wg_tensor *b, wg_tensor *out, wg_tensor *tmp);

/* acc (int64) += add (any integer container), re-gridding acc to the finer exponent.
 * Returns max |acc| afterwards, taken on the way (for E2, which quantizes it next). */
uint64_t wg_error_accumulate(wg_tensor *acc, const wg_tensor *add);

/* Its step over a block of len <= WG_ERROR_BLOCK elements of an int64 add, once the
 * exponents are aligned (sa, sb: the shifts up to the finer of the two grids, as
 * wg_error_accumulate finds them): t[i] = t[i] 2^sa + u[i] 2^sb, exact, saturated at
 * +-INT64_MAX. Returns max |t| over the block. For passes that make the add on their
 * way (BN's backward pass, bn.h). */
#define WG_ERROR_BLOCK 1024
uint64_t wg_error_accumulate_block(int64_t *t, const int64_t *u, int64_t len, int sa, int sb);

/* float32: out = a + b (out may be a or b); acc += add. */
void wg_add_f32(const wg_tensor *a, const wg_tensor *b, wg_tensor *out);

#ifdef __cplusplus
}
#endif

#endif
