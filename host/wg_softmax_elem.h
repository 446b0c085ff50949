/* wg_softmax_elem.h: fixed-point exp for the integer softmax (shared by CPU and CUDA).
 *
 * e^x = 2^(x log2 e). The exponent is split into an integer part n <= 0 and a
 * fraction f in [0, 1) held in Q30; 2^f is a degree-10 Taylor polynomial of e^(f ln 2)
 * evaluated by Horner's rule in Q30 with round-half-to-even after each product.
 * Error bound (docs/numerics.md 7.7): truncation (ln 2)^11 / 11! < 4.5e-10, plus at
 * most one half unit of Q30 (4.7e-10) per Horner step, 10 steps: |error| < 5.2e-9
 * relative to 2^f, i.e. below 2^-27. */
#ifndef WG_SOFTMAX_ELEM_H
#define WG_SOFTMAX_ELEM_H

#include <stdint.h>

#include "wg_hd.h"
#include "wg_intmath.h"

#define WG_EXP_Q 30               /* fraction bits of the fixed-point exp */
#define WG_LOG2E_Q30 1549082005   /* RNE(log2(e) * 2^30) */
#define WG_SOFTMAX_PROB_BITS 15   /* probabilities in Q15 */
#define WG_SOFTMAX_LOG_FLOOR 64   /* x < -64 (in nats) gives e^x = 0 at Q30 */

/* 2^(f / 2^30) in Q30 for f in [0, 2^30): a result in [2^30, 2^31). The
 * coefficients are RNE((ln 2)^k / k! * 2^30), k = 0..10. */
WG_HD int64_t wg_exp2_frac_q30(int64_t f)
{
    const int64_t c[11] = {1073741824, 744261118, 257941248, 59597083, 10327387, 1431680,
                           165394,     16377,     1419,      109,      8};
    int64_t p = c[10];
    for (int k = 9; k >= 0; k--) p = c[k] + wg_rshift_rne(p * f, WG_EXP_Q);
    return p;
}

/* e^(d * 2^e_z) in Q30 for d <= 0 (a logit minus the row's max, exponent e_z in
 * [-26, 30]). Zero below e^-64. */
WG_HD int64_t wg_exp_q30(int64_t d, int e_z)
{
    /* floor: below it e^x < 2^-92, far under Q30's last unit */
    int64_t floor_units = e_z < 0 ? -((int64_t)WG_SOFTMAX_LOG_FLOOR << -e_z) : -((int64_t)WG_SOFTMAX_LOG_FLOOR >> e_z);
    if (d < floor_units) return 0;
    /* t = d * 2^e_z * log2(e) in Q30 (|d * LOG2E| < 2^(6 - e_z + 31) fits int64) */
    int64_t t = wg_shift_rne(d * WG_LOG2E_Q30, -e_z);
    int64_t n = t >> WG_EXP_Q;                 /* floor, <= 0 */
    int64_t f = t - n * ((int64_t)1 << WG_EXP_Q); /* in [0, 2^30) */
    return wg_rshift_rne(wg_exp2_frac_q30(f), (int)-n);
}

#endif
