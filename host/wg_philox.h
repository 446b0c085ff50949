/* wg_philox.h: counter-based random numbers for stochastic rounding.
 *
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011): a keyed bijection of a 128-bit counter. Determinism is a
 * feature (design principle 3): the random bits used for element i of tensor t at
 * training step n depend only on (seed, n, t, i), never on a stream's state, the
 * thread that handles the element or the order of the loop, so the CPU and CUDA
 * backends draw the same bits.
 *
 * Counter layout (docs/numerics.md, "Random numbers"): key = (seed low 32 bits,
 * seed high 32 bits); counter = (i >> 2 low word, i >> 2 high word, t, n); element i
 * takes output word i & 3, so one Philox call serves four neighbouring elements. */
#ifndef WG_PHILOX_H
#define WG_PHILOX_H

#include <stdint.h>

#include "wg_hd.h"

typedef struct wg_u32x4 {
    uint32_t v[4];
} wg_u32x4;

typedef struct wg_philox_key {
    uint32_t k[2];
} wg_philox_key;

#define WG_PHILOX_M0 0xD2511F53u
#define WG_PHILOX_M1 0xCD9E8D57u
#define WG_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define WG_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */
#define WG_PHILOX_ROUNDS 10

WG_HD wg_philox_key wg_philox_key_from_seed(uint64_t seed)
{
    wg_philox_key key = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
    return key;
}

WG_HD wg_u32x4 wg_philox4x32_10(wg_u32x4 c, wg_philox_key key)
{
    uint32_t k0 = key.k[0], k1 = key.k[1];
    for (int r = 0; r < WG_PHILOX_ROUNDS; r++) {
        if (r > 0) { /* the key schedule: bump the key before every round but the first */
            k0 += WG_PHILOX_W0;
            k1 += WG_PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)WG_PHILOX_M0 * c.v[0];
        uint64_t p1 = (uint64_t)WG_PHILOX_M1 * c.v[2];
        wg_u32x4 n;
        n.v[0] = (uint32_t)(p1 >> 32) ^ c.v[1] ^ k0;
        n.v[1] = (uint32_t)p1;
        n.v[2] = (uint32_t)(p0 >> 32) ^ c.v[3] ^ k1;
        n.v[3] = (uint32_t)p0;
        c = n;
    }
    return c;
}

/* The counter of the Philox block that holds element `index`'s random word. */
WG_HD wg_u32x4 wg_philox_counter(uint32_t step, uint32_t tensor_id, uint64_t index)
{
    uint64_t block = index >> 2;
    wg_u32x4 c = {{(uint32_t)block, (uint32_t)(block >> 32), tensor_id, step}};
    return c;
}

/* The 32 random bits of one element (the block computed for this element alone;
 * loops over aligned groups of four can call wg_philox4x32_10 once instead). */
WG_HD uint32_t wg_philox_element_bits(wg_philox_key key, uint32_t step, uint32_t tensor_id, uint64_t index)
{
    return wg_philox4x32_10(wg_philox_counter(step, tensor_id, index), key).v[index & 3];
}

#endif
