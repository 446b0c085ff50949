/* pool.c: global average pooling (see pool.h). */
#include "pool.h"

#include "check.h"
#include "wg_intmath.h"
#include "wg_rational.h"

static void check_gap(const wg_tensor *a, const wg_tensor *pooled)
{
    WG_ASSERT(a->layout == WG_LAYOUT_NHWC, "global average pooling needs an NHWC input");
    WG_ASSERT(wg_tensor_numel(pooled) == a->shape[0] * a->shape[3], "pooled tensor has %lld elements, expected %lld",
              (long long)wg_tensor_numel(pooled), (long long)(a->shape[0] * a->shape[3]));
}

void wg_gap_s8_forward(const wg_tensor *a, wg_tensor *out)
{
    check_gap(a, out);
    WG_ASSERT(a->dtype == WG_I8 && out->dtype == WG_I8, "int8 pooling");
    int64_t n = a->shape[0], hw = a->shape[1] * a->shape[2], c = a->shape[3];
    const int8_t *x = a->data;
    int8_t *y = out->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            int64_t s = 0;
            for (int64_t p = 0; p < hw; p++) s += x[(b * hw + p) * c + ch];
            y[b * c + ch] = (int8_t)wg_div_rne(s, hw);
        }
    out->exp = a->exp;
}

void wg_gap_s8_backward(const wg_tensor *dout, const wg_tensor *a, wg_tensor *da)
{
    check_gap(a, dout);
    WG_ASSERT(wg_dtype_is_int(dout->dtype) && da->dtype == WG_I64 && wg_tensor_numel(da) == wg_tensor_numel(a),
              "int8 pooling backward");
    int64_t n = a->shape[0], hw = a->shape[1] * a->shape[2], c = a->shape[3];
    int64_t *dx = da->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            /* RNE(d * 2^8 / hw) without forming d * 2^8: d = q hw + r, so the result is
             * q 2^8 + RNE(r 2^8 / hw) exactly (r < hw keeps r 2^8 small) */
            int64_t d = wg_load_i64(dout->data, dout->dtype, b * c + ch), q = d / hw, r = d % hw;
            int64_t v = wg_shl_sat(q, WG_GAP_EXTRA_BITS) + wg_div_rne(r * (1 << WG_GAP_EXTRA_BITS), hw);
            for (int64_t p = 0; p < hw; p++) dx[(b * hw + p) * c + ch] = v;
        }
    da->exp = dout->exp - WG_GAP_EXTRA_BITS;
}

void wg_gap_f32_forward(const wg_tensor *a, wg_tensor *out)
{
    check_gap(a, out);
    int64_t n = a->shape[0], hw = a->shape[1] * a->shape[2], c = a->shape[3];
    const float *x = a->data;
    float *y = out->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            double s = 0;
            for (int64_t p = 0; p < hw; p++) s += x[(b * hw + p) * c + ch];
            y[b * c + ch] = (float)(s / (double)hw);
        }
}

void wg_gap_f32_backward(const wg_tensor *dout, const wg_tensor *a, wg_tensor *da)
{
    check_gap(a, dout);
    int64_t n = a->shape[0], hw = a->shape[1] * a->shape[2], c = a->shape[3];
    const float *d = dout->data;
    float *dx = da->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            float v = d[b * c + ch] / (float)hw;
            for (int64_t p = 0; p < hw; p++) dx[(b * hw + p) * c + ch] = v;
        }
}
