/* residual.c: aligned sums (see residual.h). */
#include "residual.h"

#include <stdbool.h>
#include <string.h>

#include "check.h"
#include "wg_par.h"
#include "quant.h"
#include "wg_intmath.h"

static bool all_zero(const wg_tensor *t)
{
    int64_t n = wg_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        if (wg_load_i64(t->data, t->dtype, i) != 0) return false;
    return true;
}

/* The exponents a and b are summed at (*ea, *eb; the sum's grid is the finer). The
 * exponent of an all-zero tensor says nothing, and it drifts freely (a layer whose
 * weights all rounded to 0 passes back a zero error whose exponent E1 and BN keep
 * moving): when the gap is beyond WG_ALIGN_MAX_GAP and one side is all zero, that side
 * takes the other's exponent. Two nonzero tensors that far apart are a bug upstream. */
static void align(const wg_tensor *a, const wg_tensor *b, int *ea, int *eb)
{
    *ea = a->exp;
    *eb = b->exp;
    if (*ea - *eb <= WG_ALIGN_MAX_GAP && *eb - *ea <= WG_ALIGN_MAX_GAP) return;
    if (all_zero(a)) *ea = *eb;
    else if (all_zero(b)) *eb = *ea;
    else WG_DIE("exponents %d and %d are too far apart", *ea, *eb);
}

/* out = a + b for int32 a, b and out (out distinct from both), in one pass when the
 * sum fits int32, which is the fit rule's shift 0. Each term a * 2^sa (sa <= 31) is
 * below 2^62 in magnitude, so wg_shl_sat does not saturate and the int64 sum is exact;
 * its int32 copy is stored (a wrapped value when it does not fit, overwritten below)
 * while the max-abs is taken. When the max-abs fits int32, wg_fit_shift(m, 0,
 * INT32_MAX) = 0 and the general path's RNE shift by 0 and clamp leave every sum as it
 * is: the stored copies are its result. Otherwise false: the general path. */
static bool residual_add_s32(const wg_tensor *a, const wg_tensor *b, wg_tensor *out, int sa, int sb,
                             uint64_t *out_max)
{
    if (a->dtype != WG_I32 || b->dtype != WG_I32 || out->dtype != WG_I32 || out->data == a->data ||
        out->data == b->data)
        return false;
    int64_t n = wg_tensor_numel(a);
    const int32_t *x = a->data, *y = b->data;
    int32_t *o = out->data;
    uint64_t m = 0;
#pragma omp parallel for reduction(max : m) schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) { /* shifts of the sign-extended words (no 64-bit multiply) */
        int64_t t = (int64_t)((uint64_t)(int64_t)x[i] << sa) + (int64_t)((uint64_t)(int64_t)y[i] << sb);
        uint64_t at = wg_abs_u64(t);
        o[i] = (int32_t)t;
        m = at > m ? at : m;
    }
    *out_max = m;
    return m <= (uint64_t)INT32_MAX;
}

uint64_t wg_residual_add(const wg_tensor *a, const wg_tensor *b, wg_tensor *out, wg_tensor *tmp)
{
    int64_t n = wg_tensor_numel(a);
    WG_ASSERT(wg_tensor_numel(b) == n && wg_tensor_numel(out) == n && wg_tensor_numel(tmp) == n && tmp->dtype == WG_I64,
              "residual add sizes");
    int ea, eb;
    align(a, b, &ea, &eb);
    int e = ea < eb ? ea : eb, sa = ea - e, sb = eb - e;
    tmp->exp = e;
    uint64_t m;
    if (residual_add_s32(a, b, out, sa, sb, &m)) {
        out->exp = e;
        return m;
    }
    int64_t *t = tmp->data;
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        t[i] = wg_shl_sat(wg_load_i64(a->data, a->dtype, i), sa) + wg_shl_sat(wg_load_i64(b->data, b->dtype, i), sb);
    wg_quant_fit_exp(out, tmp, e);
    return WG_QUANT_MAX_UNKNOWN;
}

/* acc += add, exact in 128 bits (shifts <= 31), then saturated once: the reference
 * formula of one element. */
static int64_t accumulate_elem(int64_t acc, int sa, int64_t add, int sb)
{
    wg_i128 sum = (wg_i128)acc * ((wg_i128)1 << sa) + (wg_i128)add * ((wg_i128)1 << sb);
    return sum > INT64_MAX ? INT64_MAX : sum < -INT64_MAX ? -INT64_MAX : (int64_t)sum;
}


/* accumulate_elem over a block of len <= WG_ERROR_BLOCK elements with an int64 add: first
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
        t[i] = accumulate_elem(t[i], sa, u[i], sb);
        mx = wg_abs_u64(t[i]) > mx ? wg_abs_u64(t[i]) : mx;
    }
    return mx;
}

uint64_t wg_error_accumulate(wg_tensor *acc, const wg_tensor *add)
{
    int64_t n = wg_tensor_numel(acc);
    WG_ASSERT(acc->dtype == WG_I64 && wg_tensor_numel(add) == n, "error sum sizes");
    int ea, eb;
    align(acc, add, &ea, &eb);
    int e = ea < eb ? ea : eb, sa = ea - e, sb = eb - e;
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
            t[i] = accumulate_elem(t[i], sa, wg_load_i64(add->data, add->dtype, i), sb);
            mx = wg_abs_u64(t[i]) > mx ? wg_abs_u64(t[i]) : mx;
        }
    }
    acc->exp = e;
    return mx;
}

void wg_add_f32(const wg_tensor *a, const wg_tensor *b, wg_tensor *out)
{
    int64_t n = wg_tensor_numel(a);
    WG_ASSERT(wg_tensor_numel(b) == n && wg_tensor_numel(out) == n, "float add sizes");
    const float *x = a->data, *y = b->data;
    float *o = out->data;
    for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i];
}
