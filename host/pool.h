/* pool.h: global average pooling, int8 and float32.
 *
 * int8 (docs/numerics.md 7.7): the mean of A over H*W is the round-half-even of the
 * exact rational sum / (H*W), kept at A's exponent (it cannot exceed A's max, so it
 * fits int8). Backward spreads the error evenly: each position gets
 * RNE(err * 2^WG_GAP_EXTRA_BITS / (H*W)) at the error's exponent minus
 * WG_GAP_EXTRA_BITS, int64 (the E1 quantizer that follows rescales by the max). */
#ifndef WG_POOL_H
#define WG_POOL_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WG_GAP_EXTRA_BITS 8

/* a: [N][H][W][C] int8 -> out: [N][C] int8 (any rank with N*C elements). */
void wg_gap_s8_forward(const wg_tensor *a, wg_tensor *out);
/* dout: N*C int64 (or int32) errors -> da: [N][H][W][C] int64. */
void wg_gap_s8_backward(const wg_tensor *dout, const wg_tensor *a, wg_tensor *da);

void wg_gap_f32_forward(const wg_tensor *a, wg_tensor *out);
void wg_gap_f32_backward(const wg_tensor *dout, const wg_tensor *a, wg_tensor *da);

#ifdef __cplusplus
}
#endif

#endif
