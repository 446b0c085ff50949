/* softmax.h: softmax cross-entropy, integer and float32 (docs/numerics.md 7.7).
 *
 * Integer: logits z (int32 [N][K], exponent e_z: the last layer's accumulator).
 * p = softmax(z) in Q15 from the fixed-point exp of wg_softmax_elem.h, each p_i the
 * round-half-even of e_i * 2^15 / sum(e). The error dL/dz of the batch-mean loss is
 * dz_i = RNE((p_i - 2^15 [i = label]) * 2^WG_SOFTMAX_GRAD_EXTRA / N), int32 at
 * exponent -(15 + WG_SOFTMAX_GRAD_EXTRA). The loss itself is only reported to people,
 * so it is computed in double from the logits.
 * Float: the usual log-softmax, loss and (softmax - onehot) / N. */
#ifndef WG_SOFTMAX_H
#define WG_SOFTMAX_H

#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WG_SOFTMAX_GRAD_EXTRA 8

typedef struct wg_loss_stats {
    double loss_sum; /* sum over the batch of -log p(label) */
    int64_t correct; /* argmax == label (ties: the lowest index) */
    int64_t count;
    int64_t correct5; /* the label among the 5 largest logits (ties: lower indices first) */
} wg_loss_stats;

/* dz may be NULL (evaluation). labels: N class indices in [0, K). */
void wg_softmax_ce_s32(const wg_tensor *z, const int32_t *labels, wg_tensor *dz, wg_loss_stats *stats);
void wg_softmax_ce_f32(const wg_tensor *z, const int32_t *labels, wg_tensor *dz, wg_loss_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
