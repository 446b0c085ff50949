/* act.c: ReLU + activation quantizer (see act.h). */
#include "act.h"

#include "backend.h"
#include "backend_cpu_ops.h"
#include "check.h"
#include "cpu_rne.h"
#include "quant.h"
#include "wg_dtype.h"
#include "wg_par.h"
#include "wg_quant_elem.h"

void wg_relu_quant_forward(wg_tensor *y, wg_tensor *a, int bits, wg_act_exponent rule)
{
    wg_relu_quant_forward_max(y, a, bits, rule, WG_QUANT_MAX_UNKNOWN);
}

wg_quant_plan wg_act_plan(wg_act_exponent rule, int bits, int y_exp, uint64_t relu_max)
{
    WG_ASSERT(bits >= 2 && bits <= 8, "activations into int8: %d bits (expected 2..8)", bits);
    int e = -(bits - 1);
    if (rule == WG_ACT_FIT) return wg_quant_fit_plan(y_exp, e, INT8_MAX, relu_max);
    return (wg_quant_plan){e - y_exp, INT8_MAX, e}; /* wg_quant_direct without clip: the container's bound */
}

void wg_relu_quant_forward_max(wg_tensor *y, wg_tensor *a, int bits, wg_act_exponent rule, uint64_t relu_max)
{
    WG_ASSERT(y->dtype == WG_I32 && a->dtype == WG_I8, "ReLU input %s, output %s", wg_dtype_name(y->dtype),
              wg_dtype_name(a->dtype));
    WG_ASSERT(wg_tensor_numel(y) == wg_tensor_numel(a), "ReLU: %lld inputs, %lld outputs",
              (long long)wg_tensor_numel(y), (long long)wg_tensor_numel(a));
    WG_ASSERT(bits >= 2 && bits <= 8, "activations into int8: %d bits (expected 2..8)", bits);
    if (relu_max != WG_QUANT_MAX_UNKNOWN) { /* the quantizer's step on the rectified y, in one pass */
        wg_quant_plan p = wg_act_plan(rule, bits, y->exp, relu_max);
        WG_BACKEND_OP(y, relu_round_shift)(y->backend->ctx, a, y, p.shift, p.bound);
        a->exp = p.exp;
        return;
    }
    WG_BACKEND_OP(y, relu_round_shift)(y->backend->ctx, y, y, 0, INT32_MAX); /* y rectified, as act.h says */
    if (rule == WG_ACT_FIT) wg_quant_fit_exp_max(a, y, -(bits - 1), relu_max);
    else wg_quant_direct(a, y, bits, false);
}

void wg_relu_backward_s8(const wg_tensor *y, wg_tensor *de)
{
    WG_ASSERT(y->dtype == WG_I32 && de->dtype == WG_I8 && wg_tensor_numel(y) == wg_tensor_numel(de), "ReLU backward");
    WG_BACKEND_OP(de, relu_mask)(de->backend->ctx, y, de);
}

/* The CPU backend's loops (backend.h's relu_round_shift and relu_mask). The int32 ->
 * int8 step with a shift in 1..31 is cpu_rne.h's rne32 on the rectified value, the
 * typed path of the backend's round_shift; other containers widen to int64. */
void wg_cpu_relu_round_shift(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound)
{
    (void)ctx;
    WG_ASSERT(wg_dtype_is_int(dst->dtype) && wg_dtype_is_int(src->dtype) &&
                  wg_tensor_numel(dst) == wg_tensor_numel(src) && shift >= -62 && shift <= 64,
              "relu_round_shift: %s from %s, shift %d", wg_dtype_name(dst->dtype), wg_dtype_name(src->dtype), shift);
    int64_t n = wg_tensor_numel(src);
    if (src->dtype == WG_I32 && dst->dtype == WG_I8 && shift >= 1 && shift <= 31) {
        const int32_t *v = src->data;
        int8_t *q = dst->data;
        rne32_k k = rne32_init(shift);
        int32_t b = bound < INT8_MAX ? (int32_t)bound : INT8_MAX; /* rne32 of a shift >= 1 is below 2^30 */
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
        for (int64_t i = 0; i < n; i++) q[i] = (int8_t)clamp32(rne32(v[i] > 0 ? v[i] : 0, k), b);
        return;
    }
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        wg_store_i64(dst->data, dst->dtype, i,
                     wg_relu_round_shift_elem(wg_load_i64(src->data, src->dtype, i), shift, bound));
}

void wg_cpu_relu_mask(void *ctx, const wg_tensor *y, wg_tensor *de)
{
    (void)ctx;
    const int32_t *v = y->data;
    int8_t *d = de->data;
    int64_t n = wg_tensor_numel(y);
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) d[i] = v[i] > 0 ? d[i] : 0;
}

void wg_relu_f32_forward(const wg_tensor *y, wg_tensor *a)
{
    WG_ASSERT(y->dtype == WG_F32 && a->dtype == WG_F32 && wg_tensor_numel(y) == wg_tensor_numel(a), "ReLU");
    WG_BACKEND_OP(y, relu_f32)(y->backend->ctx, y, y, a);
}

void wg_relu_f32_backward(const wg_tensor *y, wg_tensor *de)
{
    WG_ASSERT(y->dtype == WG_F32 && de->dtype == WG_F32 && wg_tensor_numel(y) == wg_tensor_numel(de), "ReLU backward");
    WG_BACKEND_OP(y, relu_f32)(y->backend->ctx, y, de, de);
}

void wg_cpu_relu_f32(void *ctx, const wg_tensor *y, const wg_tensor *src, wg_tensor *dst)
{
    (void)ctx;
    const float *v = y->data, *s = src->data;
    float *d = dst->data;
    int64_t n = wg_tensor_numel(y);
    for (int64_t i = 0; i < n; i++) d[i] = v[i] > 0.0f ? s[i] : 0.0f;
}
