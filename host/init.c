/* init.c: parameter initialization (see init.h). */
#include "init.h"

#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "wg_philox.h"

enum { WG_INIT_MAX_DRAWS = 64 }; /* P(64 draws all beyond 2 sigma) = 0.046^64: never */

/* A uniform in (0, 1) from 32 random bits: never 0, so log() is finite. */
static double unit_open(uint32_t u) { return ((double)u + 0.5) / 4294967296.0; }

/* Element i's truncated normal variate (Box-Muller, redrawn beyond +-2). */
static double truncated_normal(wg_philox_key key, uint32_t id, int64_t i)
{
    for (uint32_t draw = 0; draw < WG_INIT_MAX_DRAWS; draw++) {
        wg_u32x4 c = {{(uint32_t)i, (uint32_t)((uint64_t)i >> 32), id, WG_INIT_STREAM + draw}};
        wg_u32x4 r = wg_philox4x32_10(c, key);
        double z = sqrt(-2.0 * log(unit_open(r.v[0]))) * cos(6.283185307179586 * unit_open(r.v[1]));
        if (fabs(z) <= 2.0) return z;
    }
    return 0.0;
}

/* The master's values are made in a host buffer (wg_tensor_host_alloc) and uploaded:
 * the same bytes on every backend. */
static void upload(wg_param *p, void *h)
{
    wg_tensor_upload(&p->master, h);
    free(h);
}

void wg_init_weight(wg_param *p, int64_t fan_in, uint64_t seed)
{
    WG_ASSERT(fan_in > 0, "fan-in %lld", (long long)fan_in);
    int64_t n = wg_tensor_numel(&p->master);
    double std = 1.0 / sqrt((double)fan_in);
    wg_philox_key key = wg_philox_key_from_seed(seed);
    void *h = wg_tensor_host_alloc(&p->master);
    if (p->master.dtype == WG_F32) {
        float *w = h;
        for (int64_t i = 0; i < n; i++) w[i] = (float)(std * truncated_normal(key, p->id, i));
    } else {
        int32_t *w = h;
        int up = -p->master.exp - WG_INIT_GRID_BITS; /* from the 2^-15 grid to the master grid */
        WG_ASSERT(up >= 0, "master grid 2^%d is coarser than the initial grid", p->master.exp);
        for (int64_t i = 0; i < n; i++) {
            double q = nearbyint(ldexp(std * truncated_normal(key, p->id, i), WG_INIT_GRID_BITS));
            w[i] = (int32_t)q * (1 << up);
        }
    }
    upload(p, h);
}

void wg_init_constant(wg_param *p, double value)
{
    int64_t n = wg_tensor_numel(&p->master);
    void *h = wg_tensor_host_alloc(&p->master);
    if (p->master.dtype == WG_F32) {
        float *w = h;
        for (int64_t i = 0; i < n; i++) w[i] = (float)value;
    } else {
        int32_t *w = h;
        int32_t q = (int32_t)nearbyint(ldexp(value, -p->master.exp));
        for (int64_t i = 0; i < n; i++) w[i] = q;
    }
    upload(p, h);
}
