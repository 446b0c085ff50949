/* residual.c: aligned sums (see residual.h). */
#include "residual.h"

#include "check.h"
#include "wg_par.h"
#include "quant.h"
#include "wg_intmath.h"

static int finer(int ea, int eb)
{
    WG_ASSERT(ea - eb <= WG_ALIGN_MAX_GAP && eb - ea <= WG_ALIGN_MAX_GAP, "exponents %d and %d are too far apart", ea,
              eb);
    return ea < eb ? ea : eb;
}

void wg_residual_add(const wg_tensor *a, const wg_tensor *b, wg_tensor *out, wg_tensor *tmp)
{
    int64_t n = wg_tensor_numel(a);
    WG_ASSERT(wg_tensor_numel(b) == n && wg_tensor_numel(out) == n && wg_tensor_numel(tmp) == n && tmp->dtype == WG_I64,
              "residual add sizes");
    int e = finer(a->exp, b->exp), sa = a->exp - e, sb = b->exp - e;
    int64_t *t = tmp->data;
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        t[i] = wg_shl_sat(wg_load_i64(a->data, a->dtype, i), sa) + wg_shl_sat(wg_load_i64(b->data, b->dtype, i), sb);
    tmp->exp = e;
    wg_quant_fit_exp(out, tmp, e);
}

void wg_error_accumulate(wg_tensor *acc, const wg_tensor *add)
{
    int64_t n = wg_tensor_numel(acc);
    WG_ASSERT(acc->dtype == WG_I64 && wg_tensor_numel(add) == n, "error sum sizes");
    int e = finer(acc->exp, add->exp), sa = acc->exp - e, sb = add->exp - e;
    int64_t *t = acc->data;
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        /* exact in 128 bits (shifts <= 31), then saturated once */
        wg_i128 sum = (wg_i128)t[i] * ((wg_i128)1 << sa) + (wg_i128)wg_load_i64(add->data, add->dtype, i) * ((wg_i128)1 << sb);
        t[i] = sum > INT64_MAX ? INT64_MAX : sum < -INT64_MAX ? -INT64_MAX : (int64_t)sum;
    }
    acc->exp = e;
}

void wg_add_f32(const wg_tensor *a, const wg_tensor *b, wg_tensor *out)
{
    int64_t n = wg_tensor_numel(a);
    WG_ASSERT(wg_tensor_numel(b) == n && wg_tensor_numel(out) == n, "float add sizes");
    const float *x = a->data, *y = b->data;
    float *o = out->data;
    for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i];
}
