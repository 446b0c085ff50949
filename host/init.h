/* init.h: deterministic initialization of parameters.
 *
 * Weights: a normal variate with std 1/sqrt(fan_in), truncated at two standard
 * deviations (redrawn beyond), as the reference; in int8 mode put on the grid 2^-15
 * by round half to even (the reference) and stored on the master grid, in fp32 mode
 * kept as float. The variates come from Philox keyed by the run seed at counter
 * (element low, element high, parameter id, WG_INIT_STREAM + draw) — training steps never
 * reach that "step" word — through the Box-Muller transform in
 * double: initialization runs once on the host, so every backend starts from the same
 * bits. BN: gamma = 1, beta = 0. */
#ifndef WG_INIT_H
#define WG_INIT_H

#include <stdint.h>

#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WG_INIT_STREAM 0xC0FFEE01u /* the Philox "step" word reserved for initialization */
#define WG_INIT_GRID_BITS 15       /* initial weights on the grid 2^-15 */

void wg_init_weight(wg_param *p, int64_t fan_in, uint64_t seed);
void wg_init_constant(wg_param *p, double value);

#ifdef __cplusplus
}
#endif

#endif
