/* pool.h: global average pooling and max pooling, int8 mode and float32.
 *
 * Global average pooling (docs/numerics.md 7.7): the mean of A over H*W is the
 * round-half-even of the exact rational sum / (H*W), kept at A's exponent (it cannot
 * exceed A's max, so it fits int8). Backward spreads the error evenly: each position
 * gets RNE(err * 2^WG_GAP_EXTRA_BITS / (H*W)) at the error's exponent minus
 * WG_GAP_EXTRA_BITS, int64 (the E1 quantizer that follows rescales by the max).
 *
 * Max pooling (docs/numerics.md 7.7), the ImageNet stem's 3x3 stride-2 pad-1 pool:
 * output [N][OH][OW][C] with OH = floor((H + 2 pad - K) / stride) + 1 (OW alike);
 * padded positions never win (they are -infinity). The maximum of exact values is
 * exact: the output keeps the input's container (any integer container, typically the
 * stem conv's int32 accumulator) and exponent, and is not quantized (wageubn.md).
 * Backward: each window's error goes entirely to its arg-max; a tie goes to the first
 * position in row-major window order (smallest row, then smallest column), padded
 * positions excluded. Errors of overlapping windows add up: dx is int64 at the error's
 * exponent, the exact sum (clamped to +-INT64_MAX only if it passes 2^63). The arg-max
 * is recomputed from the forward input, so nothing is saved between the passes.
 *
 * Dimension legend: N batch, H/W input height/width, C channels, OH/OW output
 * height/width, K window size (K x K). */
#ifndef WG_POOL_H
#define WG_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"
#include "wg_pool_elem.h" /* WG_GAP_EXTRA_BITS */

#ifdef __cplusplus
extern "C" {
#endif

/* a: [N][H][W][C] int8 -> out: [N][C] int8 (any rank with N*C elements). */
void wg_gap_s8_forward(const wg_tensor *a, wg_tensor *out);
/* dout: N*C int64 (or int32) errors -> da: [N][H][W][C] int64. */
void wg_gap_s8_backward(const wg_tensor *dout, const wg_tensor *a, wg_tensor *da);

void wg_gap_f32_forward(const wg_tensor *a, wg_tensor *out);
void wg_gap_f32_backward(const wg_tensor *dout, const wg_tensor *a, wg_tensor *da);

/* The ImageNet stem's max pool. */
#define WG_MAXPOOL_STEM_K 3
#define WG_MAXPOOL_STEM_STRIDE 2
#define WG_MAXPOOL_STEM_PAD 1

typedef struct wg_maxpool_geom {
    int64_t n, h, w, c; /* input [N][H][W][C] */
    int k, stride, pad; /* K x K windows */
    int64_t oh, ow;     /* output [N][OH][OW][C] */
} wg_maxpool_geom;

/* Fill g; false (with a message) when a size is not positive, pad is not in [0, K)
 * (so that every window holds at least one real position) or the padded input is
 * smaller than the window. */
bool wg_maxpool_geom_init(wg_maxpool_geom *g, int64_t n, int64_t h, int64_t w, int64_t c, int k, int stride,
                          int pad);

/* int8 mode. x: [N][H][W][C], any integer container -> y: [N][OH][OW][C], the same
 * container; y->exp = x->exp. */
void wg_maxpool_int_forward(const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y);
/* dy: [N][OH][OW][C], any integer container, at exponent e; x: the forward input ->
 * dx: [N][H][W][C] int64 at e (overwritten). */
void wg_maxpool_int_backward(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy, wg_tensor *dx);

/* float32 baseline: the same shapes and the same tie rule. */
void wg_maxpool_f32_forward(const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y);
void wg_maxpool_f32_backward(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy, wg_tensor *dx);

#ifdef __cplusplus
}
#endif

#endif
