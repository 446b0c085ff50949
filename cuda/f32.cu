/* f32.cu: the float32 elementwise ops on the GPU (see f32.cuh). ReLU, the sum and the
 * conversions round as the CPU's loops (act.c, residual_cpu.c, convert.c) do, one IEEE
 * operation at a time: the same bits. The SGD step spells its multiplies and adds out
 * (__fmul_rn, __fadd_rn) so that nvcc does not fuse them into FMAs. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "convert.h"
#include "cuda_check.cuh"
#include "f32.cuh"
#include "launch.cuh"
#include "wg_dtype.h"

static void check_f32_pair(const char *op, const wg_tensor *a, const wg_tensor *b)
{
    WG_ASSERT(a->dtype == WG_F32 && b->dtype == WG_F32 && wg_tensor_numel(a) == wg_tensor_numel(b),
              "%s: %s and %s tensors of %lld and %lld elements", op, wg_dtype_name(a->dtype), wg_dtype_name(b->dtype),
              (long long)wg_tensor_numel(a), (long long)wg_tensor_numel(b));
}

__global__ void relu_f32_kernel(const float *y, const float *src, float *dst, int64_t n)
{
    WG_GRID_STRIDE_LOOP(i, n) { dst[i] = y[i] > 0.0f ? src[i] : 0.0f; }
}

void wg_relu_f32_cuda(const wg_tensor *y, const wg_tensor *src, wg_tensor *dst, cudaStream_t stream)
{
    check_f32_pair("relu_f32", y, src);
    check_f32_pair("relu_f32", y, dst);
    int64_t n = wg_tensor_numel(y);
    if (n == 0) return;
    relu_f32_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((const float *)y->data, (const float *)src->data,
                                                                  (float *)dst->data, n);
    WG_CUDA_CHECK_LAUNCH("relu_f32_kernel");
}

__global__ void add_f32_kernel(const float *a, const float *b, float *out, int64_t n)
{
    WG_GRID_STRIDE_LOOP(i, n) { out[i] = a[i] + b[i]; }
}

void wg_add_f32_cuda(const wg_tensor *a, const wg_tensor *b, wg_tensor *out, cudaStream_t stream)
{
    check_f32_pair("add_f32", a, b);
    check_f32_pair("add_f32", a, out);
    int64_t n = wg_tensor_numel(a);
    if (n == 0) return;
    add_f32_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((const float *)a->data, (const float *)b->data,
                                                                 (float *)out->data, n);
    WG_CUDA_CHECK_LAUNCH("add_f32_kernel");
}

/* v = mu v + g + wd w, then w -= lr v (optim.c's float step). */
__global__ void sgd_f32_step_kernel(float *w, float *v, const float *g, float mu, float lr, float wd, int64_t n)
{
    WG_GRID_STRIDE_LOOP(i, n)
    {
        float vi = __fadd_rn(__fadd_rn(__fmul_rn(mu, v[i]), g[i]), __fmul_rn(wd, w[i]));
        v[i] = vi;
        w[i] = __fsub_rn(w[i], __fmul_rn(lr, vi));
    }
}

void wg_sgd_f32_step_cuda(wg_tensor *w, wg_tensor *v, const wg_tensor *g, float mu, float lr, float wd,
                          cudaStream_t stream)
{
    check_f32_pair("sgd_f32_step", w, v);
    check_f32_pair("sgd_f32_step", w, g);
    int64_t n = wg_tensor_numel(w);
    if (n == 0) return;
    sgd_f32_step_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((float *)w->data, (float *)v->data,
                                                                      (const float *)g->data, mu, lr, wd, n);
    WG_CUDA_CHECK_LAUNCH("sgd_f32_step_kernel");
}

/* (float)q rounds once, half to even; times the normal float 2^e exactly (convert.c). */
__global__ void fixed_to_f32_kernel(const void *src, wg_dtype ts, float *dst, int64_t n, int e)
{
    bool normal = wg_f32_scale_is_normal(e);
    float scale = normal ? ldexpf(1.0f, e) : 0.0f;
    WG_GRID_STRIDE_LOOP(i, n)
    {
        float q = (float)wg_load_i64(src, ts, i);
        dst[i] = normal ? __fmul_rn(q, scale) : ldexpf(q, e);
    }
}

void wg_fixed_to_f32_cuda(const wg_tensor *src, wg_tensor *dst, cudaStream_t stream)
{
    wg_check_int_tensors("fixed_to_f32", src, NULL);
    WG_ASSERT(dst->dtype == WG_F32 && wg_tensor_numel(dst) == wg_tensor_numel(src), "fixed_to_f32 into %s",
              wg_dtype_name(dst->dtype));
    int64_t n = wg_tensor_numel(src);
    if (n == 0) return;
    fixed_to_f32_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(src->data, src->dtype, (float *)dst->data, n,
                                                                      src->exp);
    WG_CUDA_CHECK_LAUNCH("fixed_to_f32_kernel");
}

/* words[0] = the bits of the largest |x| that is not a NaN (the bits of non-negative
 * floats order as the floats do, so the integer maximum is the float maximum, in any
 * order); words[1] += the count of infinities and NaNs. */
__global__ void f32_max_abs_kernel(const float *x, int64_t n, unsigned long long *words)
{
    unsigned long long m = 0, bad = 0;
    WG_GRID_STRIDE_LOOP(i, n)
    {
        float a = fabsf(x[i]);
        bad += !isfinite(a);
        if (!isnan(a)) {
            unsigned long long bits = __float_as_uint(a);
            m = bits > m ? bits : m;
        }
    }
    if (bad > 0) atomicAdd(&words[1], bad);
    wg_block_max_to(&words[0], m);
}

float wg_f32_max_abs_cuda(const wg_tensor *x, int64_t *nonfinite, unsigned long long *d_words, cudaStream_t stream)
{
    WG_ASSERT(x->dtype == WG_F32, "f32_max_abs of a %s tensor", wg_dtype_name(x->dtype));
    int64_t n = wg_tensor_numel(x);
    unsigned long long h[2] = {0, 0};
    *nonfinite = 0;
    if (n == 0) return 0.0f;
    WG_CUDA_CHECK(cudaMemsetAsync(d_words, 0, sizeof(h), stream));
    f32_max_abs_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((const float *)x->data, n, d_words);
    WG_CUDA_CHECK_LAUNCH("f32_max_abs_kernel");
    WG_CUDA_CHECK(cudaMemcpyAsync(h, d_words, sizeof(h), cudaMemcpyDeviceToHost, stream));
    WG_CUDA_CHECK(cudaStreamSynchronize(stream));
    *nonfinite = (int64_t)h[1];
    unsigned bits = (unsigned)h[0];
    float m;
    memcpy(&m, &bits, sizeof(m));
    return m;
}

/* RNE(x 2^-e): x 2^-e is exact in double (a float times a power of two), rint rounds
 * it half to even as convert.c's nearbyint does. */
__global__ void f32_to_fixed_kernel(const float *src, void *dst, wg_dtype td, int64_t n, double scale)
{
    WG_GRID_STRIDE_LOOP(i, n) { wg_store_i64(dst, td, i, (int64_t)rint(__dmul_rn((double)src[i], scale))); }
}

void wg_f32_to_fixed_cuda(const wg_tensor *src, wg_tensor *dst, int e, cudaStream_t stream)
{
    WG_ASSERT(src->dtype == WG_F32 && (dst->dtype == WG_I32 || dst->dtype == WG_I64) &&
                  wg_tensor_numel(src) == wg_tensor_numel(dst),
              "f32_to_fixed: %s -> %s", wg_dtype_name(src->dtype), wg_dtype_name(dst->dtype));
    int64_t n = wg_tensor_numel(src);
    if (n == 0) return;
    f32_to_fixed_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((const float *)src->data, dst->data, dst->dtype,
                                                                      n, ldexp(1.0, -e));
    WG_CUDA_CHECK_LAUNCH("f32_to_fixed_kernel");
}
