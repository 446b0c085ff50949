/* convert.c: fixed point <-> float32 at the reference preset's float layers (see convert.h). */
#include "convert.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_ops.h"
#include "check.h"
#include "wg_par.h"

void wg_fixed_to_f32(const wg_tensor *src, wg_tensor *dst)
{
    WG_ASSERT(wg_dtype_is_int(src->dtype) && dst->dtype == WG_F32 && wg_tensor_numel(src) == wg_tensor_numel(dst),
              "to float: %s -> %s", wg_dtype_name(src->dtype), wg_dtype_name(dst->dtype));
    WG_BACKEND_OP(src, fixed_to_f32)(src->backend->ctx, src, dst);
    dst->exp = 0;
}

void wg_f32_to_fixed(const wg_tensor *src, wg_tensor *dst, const char *what)
{
    WG_ASSERT(src->dtype == WG_F32 && (dst->dtype == WG_I32 || dst->dtype == WG_I64) &&
                  wg_tensor_numel(src) == wg_tensor_numel(dst),
              "from float: %s -> %s", wg_dtype_name(src->dtype), wg_dtype_name(dst->dtype));
    int64_t bad = 0;
    float amax = WG_BACKEND_OP(src, f32_max_abs)(src->backend->ctx, src, &bad);
    if (wg_backend_batch_ranks(src->backend) > 1) { /* the whole batch's: non-negative floats order as their bits */
        uint32_t bits;
        memcpy(&bits, &amax, sizeof bits);
        uint64_t m = wg_backend_sync_max(src->backend, bits);
        bits = (uint32_t)m;
        memcpy(&amax, &bits, sizeof amax);
        wg_backend_sync_sum_n(src->backend, &bad, 1);
    }
    if (bad > 0)
        wg_run_failed("%s has %lld non-finite float values (the float layer diverged: try a lower [train] lr)", what,
                      (long long)bad);
    /* amax = m 2^E with m in [0.5, 1): on the grid 2^(E - BITS) it is m 2^BITS units,
     * in [2^(BITS-1), 2^BITS], which fits int32 (an all-zero tensor keeps grid 2^-BITS) */
    int e = -WG_F32_FIXED_BITS;
    if (amax > 0.0f) {
        int big_e;
        frexpf(amax, &big_e);
        e = big_e - WG_F32_FIXED_BITS;
    }
    WG_BACKEND_OP(src, f32_to_fixed)(src->backend->ctx, src, dst, e);
    dst->exp = e;
}

/* ---- the CPU backend's loops (backend.h) ---- */

void wg_cpu_fixed_to_f32(void *ctx, const wg_tensor *src, wg_tensor *dst)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(src);
    float *out = dst->data;
    /* (float)q rounds once (half to even); scaling by a power of two is then exact
     * (unless the value leaves float's range). */
    int e = src->exp;
    if (wg_f32_scale_is_normal(e)) {
        float scale = ldexpf(1.0f, e);
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
        for (int64_t i = 0; i < n; i++) out[i] = (float)wg_load_i64(src->data, src->dtype, i) * scale;
    } else {
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
        for (int64_t i = 0; i < n; i++) out[i] = ldexpf((float)wg_load_i64(src->data, src->dtype, i), e);
    }
}

float wg_cpu_f32_max_abs(void *ctx, const wg_tensor *x, int64_t *nonfinite)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(x);
    const float *in = x->data;
    float amax = 0.0f;
    int64_t bad = 0;
#pragma omp parallel for reduction(max : amax) reduction(+ : bad) schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(in[i]);
        bad += !isfinite(a);
        amax = a > amax ? a : amax; /* a NaN compares false: left out */
    }
    *nonfinite = bad;
    return amax;
}

void wg_cpu_f32_to_fixed(void *ctx, const wg_tensor *src, wg_tensor *dst, int e)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(src);
    const float *in = src->data;
    double scale = ldexp(1.0, -e); /* x * scale is exact in double: a float times a power of two */
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) wg_store_i64(dst->data, dst->dtype, i, (int64_t)nearbyint((double)in[i] * scale));
}
