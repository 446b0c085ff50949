/* wg_dtype.h: tensor containers and the element load/store shared by all backends.
 *
 * A container is the integer (or, in the fp32 baseline mode, float) type that holds
 * each element. Integer containers are always used symmetrically: an int8 holds
 * [-127, 127], never -128 (docs/numerics.md, "Saturation"), so negation and
 * transposition never overflow. */
#ifndef WG_DTYPE_H
#define WG_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "wg_hd.h"

typedef enum wg_dtype {
    WG_I8 = 0,
    WG_I16,
    WG_I32,
    WG_I64,
    WG_F32, /* fp32 baseline mode only; never in the int8 data path */
    WG_DTYPE_COUNT
} wg_dtype;

WG_HD size_t wg_dtype_size(wg_dtype t)
{
    switch (t) {
    case WG_I8: return 1;
    case WG_I16: return 2;
    case WG_I32: return 4;
    case WG_I64: return 8;
    case WG_F32: return 4;
    default: return 0;
    }
}

WG_HD int wg_dtype_is_int(wg_dtype t) { return t == WG_I8 || t == WG_I16 || t == WG_I32 || t == WG_I64; }

/* Largest magnitude an integer container holds under the symmetric rule. */
WG_HD int64_t wg_dtype_bound(wg_dtype t)
{
    switch (t) {
    case WG_I8: return INT8_MAX;
    case WG_I16: return INT16_MAX;
    case WG_I32: return INT32_MAX;
    case WG_I64: return INT64_MAX;
    default: return 0;
    }
}

/* Element i of an integer container, widened to int64. */
WG_HD int64_t wg_load_i64(const void *p, wg_dtype t, int64_t i)
{
    switch (t) {
    case WG_I8: return ((const int8_t *)p)[i];
    case WG_I16: return ((const int16_t *)p)[i];
    case WG_I32: return ((const int32_t *)p)[i];
    default: return ((const int64_t *)p)[i];
    }
}

/* Store v, which the caller has already clamped to wg_dtype_bound(t). */
WG_HD void wg_store_i64(void *p, wg_dtype t, int64_t i, int64_t v)
{
    switch (t) {
    case WG_I8: ((int8_t *)p)[i] = (int8_t)v; break;
    case WG_I16: ((int16_t *)p)[i] = (int16_t)v; break;
    case WG_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    default: ((int64_t *)p)[i] = v; break;
    }
}

#endif
