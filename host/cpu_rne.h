/* cpu_rne.h: the CPU's vectorizable forms of the rounding shift (wg_intmath.h), for
 * loops that apply one shift to many elements: the backend's typed paths
 * (backend_cpu.c) and BN's fused backward pass (bn_int_bwd.c). Each gives the shared
 * formula's integer; the comments say why, and tests/test_quant.c and tests/test_bn.c
 * check them against the shared formulas. */
#ifndef WG_CPU_RNE_H
#define WG_CPU_RNE_H

#include <stdint.h>

/* wg_rshift_rne(x, s) for one shift s in 0..63 over a whole loop: the constants hoisted
 * and the rounding test a single comparison (gcc vectorizes a compare-and-select, not
 * the shared formula's mix of boolean operations). With fl = floor(x / 2^s) and
 * rem = x mod 2^s, the shared formula rounds up iff rem > half, or rem == half and fl is
 * odd; rem + (fl & 1) > half is rem > half for an even fl and rem >= half for an odd one:
 * the same test. rem + 1 <= 2^s does not wrap, and fl + 1 does not overflow (fl < 2^62
 * when s >= 1). s = 0 has no remainder and never rounds up: half is then set beyond
 * every rem + 1. */
typedef struct rne64_k {
    int s;
    uint64_t mask, half;
} rne64_k;

static inline rne64_k rne64_init(int s)
{
    return (rne64_k){s, (UINT64_C(1) << s) - 1, s > 0 ? UINT64_C(1) << (s - 1) : UINT64_MAX};
}

static inline int64_t rne64(int64_t x, rne64_k k)
{
    int64_t fl = x >> k.s;
    uint64_t rem = (uint64_t)x & k.mask;
    return fl + (rem + ((uint64_t)fl & 1) > k.half ? 1 : 0);
}

/* The same for an int32 x and s in 0..31, in 32-bit arithmetic (twice the lanes): fl
 * and rem are the same integers as in 64 bits, rem + 1 <= 2^31 does not wrap a uint32,
 * and fl + 1 <= 2^30 when s >= 1. */
typedef struct rne32_k {
    int s;
    uint32_t mask, half;
} rne32_k;

static inline rne32_k rne32_init(int s)
{
    return (rne32_k){s, (UINT32_C(1) << s) - 1, s > 0 ? UINT32_C(1) << (s - 1) : UINT32_MAX};
}

static inline int32_t rne32(int32_t x, rne32_k k)
{
    int32_t fl = x >> k.s;
    uint32_t rem = (uint32_t)x & k.mask;
    return fl + (rem + ((uint32_t)fl & 1) > k.half ? 1 : 0);
}

static inline int64_t clamp64(int64_t x, int64_t bound)
{
    x = x > bound ? bound : x;
    return x < -bound ? -bound : x;
}

static inline int32_t clamp32(int32_t x, int32_t bound)
{
    x = x > bound ? bound : x;
    return x < -bound ? -bound : x;
}

/* A compact int32 form of an int64 x with |x| <= 2^62, for rounding shifts s = S + t
 * with t in 1..31 (S = WG_COMPACT_SHIFT): p = 2 floor(x / 2^S) + (x mod 2^S != 0), so
 * |floor(x / 2^S)| <= 2^29 and p fits. RNE(x / 2^s) from p is exact: fl = (p >> 1) >> t
 * is floor(x / 2^s); the remainder x mod 2^s is rem 2^S + low, rem = (p >> 1) mod 2^t,
 * low = x mod 2^S, whose only trace is the sticky bit p & 1. Against half = 2^(t-1) 2^S
 * it is greater iff rem > 2^(t-1), or rem = 2^(t-1) and low != 0, and equal iff rem =
 * 2^(t-1) and low = 0. RNE rounds up when greater, or equal with fl odd: rem + ((fl & 1)
 * | sticky) > 2^(t-1) says exactly that (rne32's test above with the sticky bit). */
enum { WG_COMPACT_SHIFT = 33 };

static inline int32_t wg_compact(int64_t x)
{
    int64_t fl = x >> WG_COMPACT_SHIFT; /* arithmetic: floor */
    uint64_t low = (uint64_t)x & ((UINT64_C(1) << WG_COMPACT_SHIFT) - 1);
    return (int32_t)(fl * 2 + (low != 0));
}

/* floor(|x| / 2^33) from p = wg_compact(x): q = floor(x / 2^33) when x >= 0, else
 * -q - 1 where x has bits below 2^33 (the sticky bit) and -q where it has none. */
static inline uint32_t wg_compact_floor_abs(int32_t p)
{
    int32_t q = p >> 1;
    return (uint32_t)(q >= 0 ? q : -q - (p & 1));
}

typedef struct wg_compact_k {
    int t;
    uint32_t mask, half;
} wg_compact_k;

/* For a shift s = WG_COMPACT_SHIFT + t, t in 1..31. */
static inline wg_compact_k wg_compact_k_init(int s)
{
    int t = s - WG_COMPACT_SHIFT;
    return (wg_compact_k){t, (UINT32_C(1) << t) - 1, UINT32_C(1) << (t - 1)};
}

/* wg_rshift_rne(x, s) from p = wg_compact(x). */
static inline int32_t wg_compact_rne(int32_t p, wg_compact_k k)
{
    int32_t q = p >> 1, fl = q >> k.t;
    uint32_t rem = (uint32_t)q & k.mask, up = ((uint32_t)fl & 1) | ((uint32_t)p & 1);
    return fl + (rem + up > k.half ? 1 : 0);
}

#endif
