/* act.c: ReLU + activation quantizer (see act.h). */
#include "act.h"

#include "check.h"
#include "cpu_rne.h"
#include "quant.h"
#include "wg_par.h"

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

/* The quantizer's pass in one loop over y when relu_max is given (wg_relu_quant_forward,
 * without it, rectifies y in place as its contract says): a = RNE(max(y, 0) / 2^shift)
 * clamped, for an int32 y, an int8 a and a shift in 1..31 (cpu_rne.h's rne32: the typed path of the
 * backend's round_shift, here on the rectified value). */
static bool relu_quant_fused(const wg_tensor *y, wg_tensor *a, int bits, wg_act_exponent rule, uint64_t relu_max)
{
    if (y->dtype != WG_I32 || a->dtype != WG_I8 || relu_max == WG_QUANT_MAX_UNKNOWN) return false;
    wg_quant_plan p = wg_act_plan(rule, bits, y->exp, relu_max);
    if (p.shift < 1 || p.shift > 31) return false;
    const int32_t *v = y->data;
    int8_t *q = a->data;
    int64_t n = wg_tensor_numel(y);
    rne32_k k = rne32_init(p.shift);
    int32_t bound = (int32_t)p.bound;
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) q[i] = (int8_t)clamp32(rne32(v[i] > 0 ? v[i] : 0, k), bound);
    a->exp = p.exp;
    return true;
}

void wg_relu_quant_forward_max(wg_tensor *y, wg_tensor *a, int bits, wg_act_exponent rule, uint64_t relu_max)
{
    WG_ASSERT(y->dtype == WG_I32 && a->dtype == WG_I8, "ReLU input %s, output %s", wg_dtype_name(y->dtype),
              wg_dtype_name(a->dtype));
    WG_ASSERT(wg_tensor_numel(y) == wg_tensor_numel(a), "ReLU: %lld inputs, %lld outputs",
              (long long)wg_tensor_numel(y), (long long)wg_tensor_numel(a));
    WG_ASSERT(bits >= 2 && bits <= 8, "activations into int8: %d bits (expected 2..8)", bits);
    if (relu_quant_fused(y, a, bits, rule, relu_max)) return;
    int32_t *v = y->data;
    int64_t n = wg_tensor_numel(y);
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) v[i] = v[i] > 0 ? v[i] : 0;
    if (rule == WG_ACT_FIT) wg_quant_fit_exp_max(a, y, -(bits - 1), relu_max);
    else wg_quant_direct(a, y, bits, false);
}

void wg_relu_backward_s8(const wg_tensor *y, wg_tensor *de)
{
    WG_ASSERT(y->dtype == WG_I32 && de->dtype == WG_I8 && wg_tensor_numel(y) == wg_tensor_numel(de), "ReLU backward");
    const int32_t *v = y->data;
    int8_t *d = de->data;
    int64_t n = wg_tensor_numel(y);
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) d[i] = v[i] > 0 ? d[i] : 0;
}

void wg_relu_f32_forward(const wg_tensor *y, wg_tensor *a)
{
    WG_ASSERT(y->dtype == WG_F32 && a->dtype == WG_F32 && wg_tensor_numel(y) == wg_tensor_numel(a), "ReLU");
    const float *v = y->data;
    float *o = a->data;
    int64_t n = wg_tensor_numel(y);
    for (int64_t i = 0; i < n; i++) o[i] = v[i] > 0.0f ? v[i] : 0.0f;
}

void wg_relu_f32_backward(const wg_tensor *y, wg_tensor *de)
{
    WG_ASSERT(y->dtype == WG_F32 && de->dtype == WG_F32 && wg_tensor_numel(y) == wg_tensor_numel(de), "ReLU backward");
    const float *v = y->data;
    float *d = de->data;
    int64_t n = wg_tensor_numel(y);
    for (int64_t i = 0; i < n; i++) d[i] = v[i] > 0.0f ? d[i] : 0.0f;
}
