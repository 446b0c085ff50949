/* quant.h: the WAGEUBN quantizers over fixed-point tensors (wageubn.md,
 * docs/numerics.md).
 *
 * Each quantizer reads integer tensors with their exponents and writes integer
 * tensors, setting the output exponent by the rule of docs/numerics.md. The caller
 * allocates the outputs (same element count as the input) in the container the
 * contract names; a container too small for the requested bits is an internal error.
 * The per-tensor decisions (max-abs, exponents, shifts) are made here, once, on the
 * host; the elementwise work goes through the tensors' backend.
 *
 * Which quantizer serves which path (reference widths; docs/numerics.md, section 6):
 *   W, forward weights      wg_quant_direct(int8, master, 8, clip)
 *   U, master weights       on their grid by construction; wg_quant_update keeps them there
 *   A, activations          wg_quant_fit(int8, y, 8)   ([quant] act_exponent = fit)
 *   gamma/beta, forward     wg_quant_direct(int16, master, 8, no clip)
 *   BN input narrowing      wg_quant_fit_exp(int16, x, x->exp)
 *   E1                      wg_quant_shift(int8, e, 8)
 *   E2                      wg_quant_flag(int8 coarse, int8 fine, e, 8)
 *   G                       wg_quant_grad(int8, g, {g_scale 2^7, grid 2^-14, Philox stream})
 *   BN gradients            wg_quant_direct(int32, g, 15, no clip)
 *   momentum, update, lr    wg_quant_momentum, wg_quant_update, wg_quant_lr */
#ifndef WG_QUANT_H
#define WG_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bit widths of every quantized path. wg_quant_bits_reference() gives the
 * reference's values (wageubn.md's table). */
typedef struct wg_quant_bits {
    int w;              /* k_W = 8: forward weights, clip(Q(w, 8), 8) */
    int a;              /* k_A = 8: activations after BN-ReLU */
    int u;              /* k_U = 24: master weights */
    int e1;             /* k_E1 = 8: errors at activations (shift quantization) */
    int e2;             /* k_E2 = 8: errors at conv outputs (flag quantization) */
    int g_scale_log2;   /* g_scale = 2^7 = 128 (the schedule lowers it) */
    int gc;             /* k_GC = 15: G lands on the grid 2^-(gc-1) = 2^-14 */
    int bn_grad;        /* 15: gradients of BN gamma/beta */
    int bn_stat;        /* 16: BN mean and std */
    int xhat;           /* 8: BN x-hat */
    int gamma_beta;     /* 8: BN gamma and beta in the forward pass */
    int momentum;       /* k_M = 13 */
    int momentum_shift; /* 2: momentum 1/4 */
    int lr;             /* 10 */
} wg_quant_bits;

wg_quant_bits wg_quant_bits_reference(void);

/* How errors at conv outputs are quantized ([quant] e2): E2's flag format (two int8
 * parts, the reference) or E1's single-grid rule (one part: the ablation). */
typedef enum wg_e2_mode { WG_E2_FLAG = 0, WG_E2_SHIFT } wg_e2_mode;

/* Direct quantization Q(x, bits): dst on the grid 2^-(bits-1), rounded half to
 * even. clip = true also clamps to +-(1 - 2^-(bits-1)) (the reference's clip, used
 * for W); clip = false saturates only at dst's container (the reference is
 * unbounded: docs/numerics.md says which tensors can meet it). */
void wg_quant_direct(wg_tensor *dst, const wg_tensor *src, int bits, bool clip);

/* Direct quantization with a per-tensor exponent: the grid 2^-(bits-1) when the
 * tensor fits the container there, else the finest coarser power-of-two grid on
 * which its max-abs fits without saturation (activations: docs/numerics.md, "A"). */
void wg_quant_fit(wg_tensor *dst, const wg_tensor *src, int bits);
/* The same with any floor exponent: dst gets the smallest exponent >= e_min on which
 * src fits dst's container (e_min = src->exp: exact whenever it fits; the BN-input
 * narrowing and the residual stream of docs/numerics.md). */
void wg_quant_fit_exp(wg_tensor *dst, const wg_tensor *src, int e_min);

/* E1, shift quantization: s = Shift(max|x|), dst = s * clamp(Q(x / s, bits)), the
 * clamp at +-(2^(bits-1) - 1) units (the reference's +-1 is not representable). */
void wg_quant_shift(wg_tensor *dst, const wg_tensor *src, int bits);

/* E2, flag quantization into two parts: coarse (grid Shift(max) / 2^(bits-1)) and
 * fine (grid Shift(max) / 2^(2(bits-1))); each element nonzero in at most one. The
 * value is coarse + fine. */
void wg_quant_flag(wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int bits);

/* The same two, and fit_exp, with max|src| given by the caller, whose producer of src
 * computed it on the way (wg_bn_int_backward returns max |dx|, the convolution and the
 * residual sum max |y|): the same outputs and exponents, without
 * the max-abs pass. max_abs must be exactly max|src[i]|; WG_QUANT_MAX_UNKNOWN (never a
 * max-abs, which is at most 2^63) takes it from src as the plain entry points do. */
#define WG_QUANT_MAX_UNKNOWN UINT64_MAX
void wg_quant_shift_max(wg_tensor *dst, const wg_tensor *src, int bits, uint64_t max_abs);
void wg_quant_fit_exp_max(wg_tensor *dst, const wg_tensor *src, int e_min, uint64_t max_abs);
void wg_quant_flag_max(wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int bits, uint64_t max_abs);

/* The per-tensor decisions of E1, E2 and the fit rule (into a container of the given
 * bound), for a caller that runs the elementwise step inside a pass of its own
 * (bn.h's fused passes, wg_relu_quant_forward_max): each element then gets
 * wg_round_shift_clamp(x, shift, bound) (E1, fit) or wg_flag_split(x, shift, bits) (E2,
 * shift the coarse one), and the output's exponent is exp (E2: the coarse part's, the
 * fine part's being exp - (bits - 1)). max_abs = max |x|, exactly. */
typedef struct wg_quant_plan {
    int shift;
    int64_t bound;
    int exp;
} wg_quant_plan;
wg_quant_plan wg_quant_shift_plan(int src_exp, int bits, uint64_t max_abs);
wg_quant_plan wg_quant_fit_plan(int src_exp, int e_min, int64_t bound, uint64_t max_abs);
wg_quant_plan wg_quant_flag_plan(int src_exp, int bits, uint64_t max_abs);

/* G, constant-scaling stochastic quantization of a weight gradient:
 * n = SR(2^g_scale_log2 * x / Shift(max|x|)) clamped to +-(2^g_scale_log2 - 1),
 * dst = n on the grid 2^-(gc-1). The random bits come from Philox keyed by seed at
 * counter (step, tensor_id, element index). */
typedef struct wg_grad_quant_args {
    int g_scale_log2;
    int gc;
    uint64_t seed;
    uint32_t step;
    uint32_t tensor_id;
} wg_grad_quant_args;
void wg_quant_grad(wg_tensor *dst, const wg_tensor *src, const wg_grad_quant_args *args);

/* Quantized momentum, in place: m = Q(m * 2^-momentum_shift + g, bits), m on the grid
 * 2^-(bits-1). g is G (or a BN-gradient) with its own exponent. */
void wg_quant_momentum(wg_tensor *m, const wg_tensor *g, int bits, int momentum_shift);

/* A learning rate on its integer grid: clip(Q(lr, bits), bits) = q * 2^exp. */
typedef struct wg_lr {
    int32_t q;
    int exp;
} wg_lr;
wg_lr wg_quant_lr(double lr, int bits);

/* Update of master weights, in place: w = Q(w - lr * m, bits_u), w on the grid
 * 2^-(bits_u-1). */
void wg_quant_update(wg_tensor *w, const wg_tensor *m, wg_lr lr, int bits_u);

#ifdef __cplusplus
}
#endif

#endif
