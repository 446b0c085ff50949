/* wg_quant_elem.h: the per-element steps of the WAGEUBN quantizers and optimizer
 * that need more than one rounding shift (wageubn.md; docs/numerics.md).
 *
 * Shared by the CPU loops and the CUDA kernels. The per-tensor decisions (max-abs,
 * exponents, shifts) are made on the host by quant.c and arrive here as integers. */
#ifndef WG_QUANT_ELEM_H
#define WG_QUANT_ELEM_H

#include <stdint.h>

#include "wg_hd.h"
#include "wg_intmath.h"

/* One element of E2 ("flag" quantization), as its two int8 parts. */
typedef struct wg_flag_pair {
    int64_t coarse; /* on the grid 2^shift_coarse (units of the input) */
    int64_t fine;   /* on the grid 2^(shift_coarse - (bits - 1)) */
} wg_flag_pair;

/* E2 with z = x / 2^shift_coarse (shift_coarse = exponent of Shift(max-abs) minus
 * bits - 1): elements with |z| < 1 go to the fine grid, Q(z, bits); the others to
 * the coarse grid, round(z) clamped to +-(2^(bits-1) - 1). At most one part is
 * nonzero. A fine value that rounds up to 2^(bits-1) (|z| just under 1) is moved to
 * the coarse grid as +-1, which is the same value: nothing is lost or clamped. */
WG_HD wg_flag_pair wg_flag_split(int64_t x, int shift_coarse, int bits)
{
    wg_flag_pair r = {0, 0};
    int64_t bound = wg_bound_bits(bits);
    int below_one; /* |x| < 2^shift_coarse */
    if (shift_coarse < 0) below_one = x == 0;
    else if (shift_coarse >= 64) below_one = 1;
    else below_one = (wg_abs_u64(x) >> shift_coarse) == 0;
    if (below_one) {
        int64_t f = wg_shift_rne(x, shift_coarse - (bits - 1));
        if (f > bound || f < -bound) r.coarse = f > 0 ? 1 : -1;
        else r.fine = f;
    } else {
        r.coarse = wg_round_shift_clamp(x, shift_coarse, bound);
    }
    return r;
}

/* G: clamp(floor((x + r) / 2^shift), -bound, bound), r uniform in [0, 2^shift)
 * from the element's 32 random bits u (wg_rshift_sr). */
WG_HD int64_t wg_grad_elem(int64_t x, int shift, int64_t bound, uint32_t u)
{
    return wg_clamp_sym(wg_rshift_sr(x, shift, u), bound);
}

/* Momentum m' = Q(m * 2^-mshift + g, k_m), both terms first moved (exactly) to the
 * common finer exponent e_t, the sum then rounded half to even back to e_m. The
 * shifts are bounded by quant.c so the sum cannot overflow. */
WG_HD int64_t wg_momentum_elem(int64_t m, int64_t g, int m_up, int g_up, int out_down, int64_t bound)
{
    int64_t t = wg_shl_sat(m, m_up) + wg_shl_sat(g, g_up);
    return wg_clamp_sym(wg_rshift_rne(t, out_down), bound);
}

/* ReLU, then the activation quantizer's step: wg_round_shift_clamp(max(y, 0), shift, bound)
 * (act.h; shift 0 and the container's bound: ReLU alone). */
WG_HD int64_t wg_relu_round_shift_elem(int64_t y, int shift, int64_t bound)
{
    return wg_round_shift_clamp(y > 0 ? y : 0, shift, bound);
}

/* Weight decay into a raw gradient: g + RNE(w wd_q 2^-shift) (wd_q < 2^32 and |w| < 2^31:
 * the product fits int64; optim.c picks the shift onto g's grid). */
WG_HD int64_t wg_weight_decay_elem(int64_t g, int64_t w, int64_t wd_q, int shift)
{
    return g + wg_shift_rne(w * wd_q, shift);
}

/* Update w' = Q(w - lr * m, k_u) in the common exponent e_t, rounded back to e_w. */
WG_HD int64_t wg_update_elem(int64_t w, int64_t m, int64_t lr_q, int w_up, int p_up, int out_down,
                             int64_t bound)
{
    int64_t t = wg_shl_sat(w, w_up) - wg_shl_sat(lr_q * m, p_up);
    return wg_clamp_sym(wg_rshift_rne(t, out_down), bound);
}

#endif
