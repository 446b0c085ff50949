/* residual_cpu.c: the CPU backend's loops of the aligned sums (backend.h's shift_sum
 * and accumulate; the formulas in wg_residual_elem.h). */
#include <string.h>

#include "backend_cpu_ops.h"
#include "check.h"
#include "residual.h"
#include "wg_dtype.h"
#include "wg_par.h"
#include "wg_residual_elem.h"

/* The int32 + int32 -> int32 sum of the forward residual stream, vectorized: each term
 * a 2^sa (sa <= 31) is below 2^62 in magnitude, so the plain int64 sum is
 * wg_shift_sum_elem's; its int32 copy is stored (modulo 2^32) while the maximum is taken. */
static uint64_t shift_sum_s32(int32_t *o, const int32_t *x, int sa, const int32_t *y, int sb, int64_t n)
{
    uint64_t m = 0;
#pragma omp parallel for reduction(max : m) schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) { /* shifts of the sign-extended words (no 64-bit multiply) */
        int64_t t = (int64_t)((uint64_t)(int64_t)x[i] << sa) + (int64_t)((uint64_t)(int64_t)y[i] << sb);
        uint64_t at = wg_abs_u64(t);
        o[i] = (int32_t)t;
        m = at > m ? at : m;
    }
    return m;
}

uint64_t wg_cpu_shift_sum(void *ctx, wg_tensor *dst, const wg_tensor *a, int sa, const wg_tensor *b, int sb)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(dst);
    WG_ASSERT(wg_dtype_is_int(dst->dtype) && wg_dtype_is_int(a->dtype) && wg_dtype_is_int(b->dtype) &&
                  wg_tensor_numel(a) == n && wg_tensor_numel(b) == n && sa >= 0 && sa <= 31 && sb >= 0 && sb <= 31,
              "shift_sum: %s = %s 2^%d + %s 2^%d", wg_dtype_name(dst->dtype), wg_dtype_name(a->dtype), sa,
              wg_dtype_name(b->dtype), sb);
    if (dst->dtype == WG_I32 && a->dtype == WG_I32 && b->dtype == WG_I32)
        return shift_sum_s32(dst->data, a->data, sa, b->data, sb, n);
    uint64_t m = 0;
#pragma omp parallel for reduction(max : m) schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        int64_t t = wg_shift_sum_elem(wg_load_i64(a->data, a->dtype, i), sa, wg_load_i64(b->data, b->dtype, i), sb);
        uint64_t at = wg_abs_u64(t);
        wg_store_i64(dst->data, dst->dtype, i, t);
        m = at > m ? at : m;
    }
    return m;
}

/* wg_accumulate_elem over a block of len <= WG_ERROR_BLOCK elements with an int64 add: first
 * in plain int64 lanes (vectorized), keeping the result only when no element needed
 * more. Why that is exact: x << s wrapped, then shifted back arithmetically, gives x
 * again iff x * 2^s fits int64; a sum of two fitting terms overflows iff both have one
 * sign and the wrapped sum the other ((vx ^ sum) & (vy ^ sum) negative); with neither,
 * the int64 sum is the exact one, and unless it is INT64_MIN it lies inside
 * +-INT64_MAX, so the clamp leaves it. Any other block is redone element by element in
 * 128 bits. Returns max |t| over the block. */
uint64_t wg_error_accumulate_block(int64_t *t, const int64_t *u, int64_t len, int sa, int sb)
{
    int64_t s[WG_ERROR_BLOCK];
    uint64_t lost = 0, mx = 0;
    int64_t sign = 0, lo = INT64_MAX;
    for (int64_t i = 0; i < len; i++) {
        int64_t vx = (int64_t)((uint64_t)t[i] << sa), vy = (int64_t)((uint64_t)u[i] << sb);
        int64_t sum = (int64_t)((uint64_t)vx + (uint64_t)vy);
        uint64_t a = wg_abs_u64(sum);
        lost |= (uint64_t)((vx >> sa) ^ t[i]) | (uint64_t)((vy >> sb) ^ u[i]);
        sign |= (vx ^ sum) & (vy ^ sum);
        lo = sum < lo ? sum : lo;
        mx = a > mx ? a : mx;
        s[i] = sum;
    }
    if (lost == 0 && sign >= 0 && lo != INT64_MIN) {
        memcpy(t, s, (size_t)len * sizeof(int64_t));
        return mx;
    }
    mx = 0;
    for (int64_t i = 0; i < len; i++) {
        t[i] = wg_accumulate_elem(t[i], sa, u[i], sb);
        mx = wg_abs_u64(t[i]) > mx ? wg_abs_u64(t[i]) : mx;
    }
    return mx;
}

uint64_t wg_cpu_accumulate(void *ctx, wg_tensor *acc, int sa, const wg_tensor *add, int sb)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(acc);
    WG_ASSERT(acc->dtype == WG_I64 && wg_dtype_is_int(add->dtype) && wg_tensor_numel(add) == n && sa >= 0 &&
                  sa <= 31 && sb >= 0 && sb <= 31,
              "accumulate: int64 += %s 2^%d (acc %s 2^%d)", wg_dtype_name(add->dtype), sb, wg_dtype_name(acc->dtype), sa);
    int64_t *t = acc->data;
    uint64_t mx = 0; /* an integer maximum: any split gives it */
    if (add->dtype == WG_I64) {
        const int64_t *u = add->data;
#pragma omp parallel for reduction(max : mx) schedule(static) if (n >= WG_PAR_MIN)
        for (int64_t i0 = 0; i0 < n; i0 += WG_ERROR_BLOCK) {
            int64_t len = n - i0 < WG_ERROR_BLOCK ? n - i0 : WG_ERROR_BLOCK;
            uint64_t m = wg_error_accumulate_block(t + i0, u + i0, len, sa, sb);
            mx = m > mx ? m : mx;
        }
    } else {
#pragma omp parallel for reduction(max : mx) schedule(static) if (n >= WG_PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            t[i] = wg_accumulate_elem(t[i], sa, wg_load_i64(add->data, add->dtype, i), sb);
            mx = wg_abs_u64(t[i]) > mx ? wg_abs_u64(t[i]) : mx;
        }
    }
    return mx;
}

void wg_cpu_add_f32(void *ctx, const wg_tensor *a, const wg_tensor *b, wg_tensor *out)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(a);
    const float *x = a->data, *y = b->data;
    float *o = out->data;
    for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i];
}
