/* act.c: ReLU + activation quantizer (see act.h). */
#include "act.h"

#include "check.h"
#include "quant.h"
#include "wg_par.h"

void wg_relu_quant_forward(wg_tensor *y, wg_tensor *a, int bits, wg_act_exponent rule)
{
    WG_ASSERT(y->dtype == WG_I32 && a->dtype == WG_I8, "ReLU input %s, output %s", wg_dtype_name(y->dtype),
              wg_dtype_name(a->dtype));
    int32_t *v = y->data;
    int64_t n = wg_tensor_numel(y);
#pragma omp parallel for schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i = 0; i < n; i++) v[i] = v[i] > 0 ? v[i] : 0;
    if (rule == WG_ACT_FIT) wg_quant_fit(a, y, bits);
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
