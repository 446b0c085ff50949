/* act.h: ReLU followed by the activation quantizer, and what passes through it
 * backwards (docs/numerics.md 7.2).
 *
 * int8 forward: y (int32, the BN output at e = -14) is rectified and quantized into A
 * (int8) by the fit rule with floor -(bits-1) ([quant] act_exponent = fit) or at the
 * fixed exponent -(bits-1) with saturation (act_exponent = fixed). Backward: the
 * quantizer is a straight-through estimator and ReLU passes the error where y > 0
 * (the int8 network does that inside BN's backward pass, wg_bn_int_backward_act). */
#ifndef WG_ACT_H
#define WG_ACT_H

#include <stdbool.h>
#include <stdint.h>

#include "quant.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wg_act_exponent { WG_ACT_FIT = 0, WG_ACT_FIXED } wg_act_exponent;

void wg_relu_quant_forward(wg_tensor *y, wg_tensor *a, int bits, wg_act_exponent rule);
/* The same with relu_max = max(0, max y) from y's producer (wg_bn_int_forward_train
 * returns it), or WG_QUANT_MAX_UNKNOWN (then as above): the quantizer then runs in one
 * pass over y (no max-abs pass; y is left as it is, not rectified: the int8 backward pass
 * takes ReLU's mask from BN's x-hat). The same a and exponent. */
void wg_relu_quant_forward_max(wg_tensor *y, wg_tensor *a, int bits, wg_act_exponent rule, uint64_t relu_max);
/* The A quantizer's per-tensor decision for an int8 a from y on the grid 2^y_exp: each
 * element gets wg_round_shift_clamp(max(y, 0), shift, bound), a's exponent is exp (the
 * fit rule needs relu_max = max(0, max y) exactly; the fixed rule ignores it). For
 * passes that quantize on their way (wg_bn_int_forward_train_act). */
wg_quant_plan wg_act_plan(wg_act_exponent rule, int bits, int y_exp, uint64_t relu_max);
/* de (int8, the E1 error at A) masked where y <= 0, in place. */
void wg_relu_backward_s8(const wg_tensor *y, wg_tensor *de);

/* float32 baseline: a = max(y, 0); de masked where y <= 0, in place. */
void wg_relu_f32_forward(const wg_tensor *y, wg_tensor *a);
void wg_relu_f32_backward(const wg_tensor *y, wg_tensor *de);

#ifdef __cplusplus
}
#endif

#endif
