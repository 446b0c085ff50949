/* residual.c: aligned sums (see residual.h). */
#include "residual.h"

#include <stdbool.h>

#include "backend.h"
#include "check.h"
#include "quant.h"
#include "wg_par.h"

/* (Each maximum here is the whole batch's where it is split over ranks: the ranks take
 * the same branches.) */
static bool all_zero(const wg_tensor *t)
{
    return wg_backend_sync_max(t->backend, WG_BACKEND_OP(t, max_abs)(t->backend->ctx, t)) == 0;
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

uint64_t wg_residual_add(const wg_tensor *a, const wg_tensor *b, wg_tensor *out, wg_tensor *tmp)
{
    int64_t n = wg_tensor_numel(a);
    WG_ASSERT(wg_tensor_numel(b) == n && wg_tensor_numel(out) == n && wg_tensor_numel(tmp) == n && tmp->dtype == WG_I64,
              "residual add sizes");
    int ea, eb;
    align(a, b, &ea, &eb);
    int e = ea < eb ? ea : eb, sa = ea - e, sb = eb - e;
    tmp->exp = e;
    /* Straight into out when every sum fits its container: that is the fit rule's
     * shift 0, which leaves the sums as they are (out must then not be a or b, which
     * the other way still reads). Otherwise the exact sums in tmp, then the fit rule. */
    bool alias = out->data == a->data || out->data == b->data;
    uint64_t m = alias ? 0 : WG_BACKEND_OP(out, shift_sum)(out->backend->ctx, out, a, sa, b, sb);
    m = wg_backend_sync_max(out->backend, m);
    if (!alias && m <= (uint64_t)wg_dtype_bound(out->dtype)) {
        out->exp = e;
        return m;
    }
    m = wg_backend_sync_max(tmp->backend, WG_BACKEND_OP(tmp, shift_sum)(tmp->backend->ctx, tmp, a, sa, b, sb));
    wg_quant_fit_exp_max(out, tmp, e, m);
    return WG_QUANT_MAX_UNKNOWN;
}

uint64_t wg_error_accumulate(wg_tensor *acc, const wg_tensor *add)
{
    WG_ASSERT(acc->dtype == WG_I64 && wg_tensor_numel(add) == wg_tensor_numel(acc), "error sum sizes");
    int ea, eb;
    align(acc, add, &ea, &eb);
    int e = ea < eb ? ea : eb;
    uint64_t mx = WG_BACKEND_OP(acc, accumulate)(acc->backend->ctx, acc, ea - e, add, eb - e);
    acc->exp = e;
    return wg_backend_sync_max(acc->backend, mx);
}

void wg_add_f32(const wg_tensor *a, const wg_tensor *b, wg_tensor *out)
{
    int64_t n = wg_tensor_numel(a);
    WG_ASSERT(wg_tensor_numel(b) == n && wg_tensor_numel(out) == n, "float add sizes");
    WG_ASSERT(a->dtype == WG_F32 && b->dtype == WG_F32 && out->dtype == WG_F32, "float add of %s and %s into %s",
              wg_dtype_name(a->dtype), wg_dtype_name(b->dtype), wg_dtype_name(out->dtype));
    WG_BACKEND_OP(out, add_f32)(out->backend->ctx, a, b, out);
}
