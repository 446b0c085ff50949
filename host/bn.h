/* bn.h: batch normalization, integer (int8 mode) and float (fp32 baseline mode).
 *
 * Training-mode BN normalizes each channel over its N*H*W values (wageubn.md, "BN";
 * docs/numerics.md, sections 7.3 and 7.5 for the integer contract). Evaluation uses
 * running statistics. The CPU backend runs fused passes (bn_int.c, bn_int_bwd.c);
 * integer BN also runs on the other backends (bn_int_generic.c: elementwise passes of
 * the backend, the per-channel decisions on the host, the same bits). Float BN
 * (bn_f32.c) runs the backend's passes on every backend, the CPU's included.
 *
 * Dimension legend: x, y, dy, dx are NHWC [N][H][W][C] (channels innermost); per-
 * channel tensors are PLAIN [C]. count = N*H*W.
 *
 * Integer mode, who quantizes what (docs/numerics.md):
 *   gamma16, beta16  int16 [C] at e = -7: wg_quant_direct(., master (int32, e = -23), 8, false)
 *   dgamma, dbeta    int64 [C] sums out of wg_bn_int_backward; the caller applies
 *                    wg_quant_direct(int32 [C], ., 15, false) -> int32 at e = -14
 *   y                int32 at e = -14; ReLU and the A quantizer follow
 *   dy               E1 (int8) masked by ReLU; dx (int64) goes to E2 (wg_quant_flag) */
#ifndef WG_BN_H
#define WG_BN_H

#include <stdbool.h>
#include <stdint.h>

#include "act.h"
#include "tensor.h"
#include "wg_bn_elem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- integer BN ------------------------------------------------------------------ */

/* What the training forward pass leaves for the backward pass. In evaluation the
 * same struct is the work space (xhat holds the narrowed input, mu and sigma the
 * statistics derived from the running averages). */
typedef struct wg_bn_int_saved {
    wg_tensor xhat;  /* int16 NHWC, e = -7: Q((x - mu) / sigma, 8), clamped at +-32767. During the
                      * forward pass it first holds x16, the input narrowed to int16 (e = e_x). */
    wg_tensor mu;    /* int32 [C], e = -15: Q(mean, 16), saturated at +-(2^31 - 1) */
    wg_tensor sigma; /* int32 [C], e = -15: Q(std, 16) + 2^-15, in [1, 2^31 - 1] */
    int e_x;         /* exponent of the narrowed input of the last forward pass */
    int64_t clamps;  /* x-hat elements clamped at +-32767 in the last forward pass (an event to log) */
} wg_bn_int_saved;

/* Allocate the saved tensors for an input of shape [n][h][w][c]. */
bool wg_bn_int_saved_init(wg_bn_int_saved *s, wg_backend *b, int64_t n, int64_t h, int64_t w, int64_t c);
void wg_bn_int_saved_free(wg_bn_int_saved *s);

/* Running statistics for evaluation: running averages of the batch mu and sigma
 * (sigma includes the epsilon unit), int64 on the grid 2^-31 (docs/numerics.md 7.3,
 * item 7). Updated by r' = RNE((65339 r + 197 b) / 65536) with b = the batch value
 * shifted exactly onto 2^-31; the first update copies b (initialized = false). */
typedef struct wg_bn_running {
    wg_tensor mean;   /* int64 [C], e = -31 */
    wg_tensor sigma;  /* int64 [C], e = -31, >= 2^16 once initialized */
    bool initialized; /* false until the first training step */
} wg_bn_running;

bool wg_bn_running_init(wg_bn_running *r, wg_backend *b, int64_t c);
void wg_bn_running_free(wg_bn_running *r);

/* Training forward. x: any integer container (the int32 conv accumulator or residual
 * stream), NHWC, any exponent (the narrowed input needs e_x >= -54); x_max: max |x| when
 * x's producer computed it (wg_conv_s8_forward, wg_residual_add), else
 * WG_QUANT_MAX_UNKNOWN (quant.h): the narrowing then reads x for it. y: int32, x's
 * shape; its exponent is set to -14. saved: from wg_bn_int_saved_init with x's
 * shape; filled. running: updated when not NULL. Needs count < 2^32. Returns max(0,
 * max y), the largest |ReLU(y)|, for the A quantizer that follows (act.h). */
uint64_t wg_bn_int_forward_train(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16, const wg_tensor *beta16,
                             wg_tensor *y, wg_bn_int_saved *saved, wg_bn_running *running);

/* Training forward with ReLU and the A quantizer (act.h) inside it, the int8 network's
 * BN -> ReLU -> A: the same saved state, running averages and a (int8, x's shape, its
 * exponent set) as wg_bn_int_forward_train followed by wg_relu_quant_forward_max. An
 * int32 x is narrowed in the sums pass itself, and the normalizing pass writes A instead
 * of y: A's shift is known before it from the extremes of x16 per channel (x-hat and y
 * are monotone in x16). y: int32 scratch of x's shape, written (as the two calls leave
 * it) only when that path does not serve (x-hat's 64-bit form, a shift outside 1..31). */
void wg_bn_int_forward_train_act(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16,
                                 const wg_tensor *beta16, wg_tensor *y, wg_tensor *a, int bits, wg_act_exponent rule,
                                 wg_bn_int_saved *saved, wg_bn_running *running);
/* Evaluation forward: the same narrowing, x-hat and y, with mu = RNE(running mean /
 * 2^16) and sigma = RNE(running sigma / 2^16) on the grid 2^-15. running must be
 * initialized. work: as saved above (its contents are overwritten). Returns max(0, max y). */
uint64_t wg_bn_int_forward_eval(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16, const wg_tensor *beta16,
                            const wg_bn_running *running, wg_tensor *y, wg_bn_int_saved *work);

/* Backward (docs/numerics.md 7.5, "BN backward"). dy: integer NHWC, any exponent e,
 * |dy| <= 32767 (E1 is int8). saved: from the training forward pass of this step.
 * Outputs: dbeta int64 [C] at e (sum dy), dgamma int64 [C] at e - 7 (sum dy * xhat),
 * both exact; dx int64 NHWC at e - 6 - F with F in [0, 62] chosen per call so that
 * |dx| <= 2^62 (each element one RNE of the exact rational). Returns max |dx|, taken
 * on the way, for the E2 quantizer that follows (wg_quant_flag_max). */
uint64_t wg_bn_int_backward(const wg_tensor *dy, const wg_tensor *gamma16, const wg_bn_int_saved *saved,
                            wg_tensor *dx, wg_tensor *dgamma, wg_tensor *dbeta);

/* The backward pass from the error at the activation (forward: BN -> ReLU -> A), with
 * E1 and ReLU's mask run inside BN's sums pass, and E2 after it when asked: the same
 * bits as the chain wg_quant_shift_max (E1) -> ReLU's mask -> wg_bn_int_backward (->
 * wg_quant_flag_max or, with one part, wg_quant_shift_max), in fewer passes and bytes.
 *   err  the error at the activation (any integer container, NHWC); err_max its max
 *        |err| or WG_QUANT_MAX_UNKNOWN; E1 with e1_bits (2..8).
 *   dy   int8 NHWC, written with its exponent: E1(err) where y > 0, else 0 (ReLU's
 *        mask). y = xhat gamma16 + beta16 2^7 is the forward pass's BN output, found
 *        again from the saved x-hat: y itself need not be kept for this.
 *   e2   NULL: dx (int64) as wg_bn_int_backward leaves it. Otherwise the parts of E2 of
 *        dx (int8 NHWC; fine NULL: E1's rule into coarse alone) with e2->bits, their
 *        exponents set, and dx only a scratch buffer: it then holds dx in a compact
 *        int32 form (bn_int_bwd.c), half the bytes, when E2's grid allows.
 *   acc  NULL, or (without e2) an int64 error of dx's shape that dx is added into, as
 *        wg_error_accumulate(acc, dx) does (a residual stream's error): dx itself is then
 *        scratch, and mostly never stored. The result is then max |acc|.
 * dgamma, dbeta and the result (max |dx|) as wg_bn_int_backward; with e2 the result is
 * WG_QUANT_MAX_UNKNOWN (E2 has taken dx's scale already). */
typedef struct wg_bn_int_bwd_e2 {
    wg_tensor *coarse, *fine;
    int bits;
} wg_bn_int_bwd_e2;
uint64_t wg_bn_int_backward_act(const wg_tensor *err, uint64_t err_max, int e1_bits, const wg_tensor *gamma16,
                                const wg_tensor *beta16, const wg_bn_int_saved *saved, wg_tensor *dy, wg_tensor *dx,
                                const wg_bn_int_bwd_e2 *e2, wg_tensor *acc, wg_tensor *dgamma, wg_tensor *dbeta);

/* ---- fp32 BN (the baseline mode) ---------------------------------------------------- */

#define WG_BN_F32_EPS 1e-5f    /* added to the variance */
#define WG_BN_F32_DECAY 0.997f /* running = decay * running + (1 - decay) * batch (the reference's decay) */

typedef struct wg_bn_f32_saved {
    wg_tensor xhat;    /* f32 NHWC: (x - mean) / sqrt(var + eps) */
    wg_tensor inv_std; /* f32 [C]: 1 / sqrt(var + eps), biased batch variance */
} wg_bn_f32_saved;

bool wg_bn_f32_saved_init(wg_bn_f32_saved *s, wg_backend *b, int64_t n, int64_t h, int64_t w, int64_t c);
void wg_bn_f32_saved_free(wg_bn_f32_saved *s);

/* Running mean and variance (unbiased batch variance, as PyTorch); the first update
 * copies the batch values (initialized = false), later ones decay. */
typedef struct wg_bn_f32_running {
    wg_tensor mean; /* f32 [C] */
    wg_tensor var;  /* f32 [C] */
    bool initialized;
} wg_bn_f32_running;

bool wg_bn_f32_running_init(wg_bn_f32_running *r, wg_backend *b, int64_t c);
void wg_bn_f32_running_free(wg_bn_f32_running *r);

/* Training forward: y = gamma * xhat + beta with batch statistics (sums in double).
 * x, y: f32 NHWC; gamma, beta: f32 [C]. running: updated when not NULL. */
void wg_bn_f32_forward_train(const wg_tensor *x, const wg_tensor *gamma, const wg_tensor *beta, float eps,
                             wg_tensor *y, wg_bn_f32_saved *saved, wg_bn_f32_running *running, float decay);

/* Evaluation forward with the running statistics. */
void wg_bn_f32_forward_eval(const wg_tensor *x, const wg_tensor *gamma, const wg_tensor *beta, float eps,
                            const wg_bn_f32_running *running, wg_tensor *y);

/* Backward: dbeta = sum dy, dgamma = sum dy * xhat, dx = gamma * inv_std * (dy - dbeta/count -
 * xhat * dgamma/count). dx: f32 NHWC; dgamma, dbeta: f32 [C] (overwritten). */
void wg_bn_f32_backward(const wg_tensor *dy, const wg_tensor *gamma, const wg_bn_f32_saved *saved, wg_tensor *dx,
                        wg_tensor *dgamma, wg_tensor *dbeta);

#ifdef __cplusplus
}
#endif

#endif
