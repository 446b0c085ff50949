/* optim.h: parameters and the optimizers (wageubn.md "U"; docs/numerics.md 7.6).
 *
 * int8 mode, per step, for each parameter: the gradient (int64 sums from the layers)
 * plus weight decay in the integer gradient domain (conv/FC weights only), quantized
 * by G (weights) or Q(., 15) (BN gamma/beta); momentum m = Q(m/4 + G, 13); update
 * w = Q(w - lr m, 24); then the forward copies are re-quantized from the masters
 * (W: int8 clip(Q(w, 8)); gamma/beta: int16 Q(., 8)).
 * fp32 mode: SGD with momentum and L2 weight decay (v = mu v + g + wd w; w -= lr v).
 * A float parameter in an int8 run (the reference preset's first conv and last FC)
 * takes that float step with the int8 recipe's momentum 2^-momentum_shift and the
 * unquantized learning rate, as the reference leaves those layers unquantized. */
#ifndef WG_OPTIM_H
#define WG_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "quant.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wg_param_kind { WG_PARAM_WEIGHT = 0, WG_PARAM_BN } wg_param_kind;

typedef struct wg_param {
    char name[48];
    uint32_t id;         /* Philox tensor id of its G quantizer: stable across runs and resumes */
    wg_param_kind kind;
    wg_tensor master;    /* int8 mode: int32 at -(bits_u-1); fp32: float */
    wg_tensor momentum;  /* int8 mode: int32 at -(bits_momentum-1); fp32: float */
    wg_tensor grad;      /* int8 mode: int64 sums at the layer's exponent; fp32: float */
    wg_tensor fwd;       /* int8 mode: int8 W or int16 gamma/beta; fp32: unused */
    wg_tensor gq;        /* int8 mode: the quantized gradient (G: int8, or int16 when bits->g_scale_log2
                            at init is above 7; int32 BN grad) */
} wg_param;

typedef struct wg_optim_step_args {
    double lr;           /* this step's learning rate (the schedule's value) */
    int g_scale_log2;    /* this step's g_scale (int8 mode) */
    double momentum;     /* fp32 mode */
    double weight_decay;
    uint64_t seed;
    uint32_t step;
    const wg_quant_bits *bits;
} wg_optim_step_args;

/* Allocate a parameter's tensors. shape/ndim/layout as for wg_tensor_init. int8 mode
 * when int8 is true. The master starts at zero; fill it, then wg_param_refresh. */
bool wg_param_init(wg_param *p, wg_backend *b, const char *name, uint32_t id, wg_param_kind kind, bool int8,
                   const wg_quant_bits *bits, wg_layout layout, int ndim, const int64_t *shape);
void wg_param_free(wg_param *p);

/* Re-derive the forward copy from the master (int8 mode; no-op in fp32 mode). */
void wg_param_refresh(wg_param *p, const wg_quant_bits *bits);

/* One optimizer step on every parameter, then refresh. */
void wg_optim_step(wg_param *params, int n, const wg_optim_step_args *a);

/* Weight decay as an integer fraction wd_q * 2^-WG_WD_FRAC_BITS (wd = 1e-4 -> 109951163). */
#define WG_WD_FRAC_BITS 40
#define WG_WD_MAX 0.00390625 /* 2^-8: keeps w * wd_q inside int64 */
int64_t wg_weight_decay_q(double wd);

#ifdef __cplusplus
}
#endif

#endif
