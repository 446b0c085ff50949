/* pool.cu: global average pooling and max pooling on the GPU (see pool.cuh). The int8
 * mode's sums are exact integers, so the order in which a thread adds its positions does
 * not matter, and each output is the shared formula: the CPU backend's result (pool.c),
 * bit for bit. The float sums of max pooling's backward go in the CPU's order. */
#include "check.h"
#include "cuda_check.cuh"
#include "launch.cuh"
#include "pool.cuh"
#include "wg_dtype.h"
#include "wg_pool_elem.h"
#include "wg_rational.h"

/* One thread per (image, channel): consecutive threads take consecutive channels, so
 * each position's loads are coalesced. */
__global__ void gap_s8_forward_kernel(const int8_t *x, int8_t *y, int64_t n, int64_t hw, int64_t c)
{
    WG_GRID_STRIDE_LOOP(i, n * c)
    {
        int64_t b = i / c, ch = i % c, s = 0;
        for (int64_t p = 0; p < hw; p++) s += x[(b * hw + p) * c + ch];
        y[i] = (int8_t)wg_div_rne(s, hw);
    }
}

void wg_gap_s8_forward_cuda(const wg_tensor *a, wg_tensor *out, cudaStream_t stream)
{
    int64_t n = a->shape[0], hw = a->shape[1] * a->shape[2], c = a->shape[3];
    WG_ASSERT(hw >= 1, "global average pooling over %lld positions", (long long)hw);
    if (n * c == 0) return;
    gap_s8_forward_kernel<<<wg_grid_for(n * c), WG_CUDA_BLOCK, 0, stream>>>((const int8_t *)a->data,
                                                                            (int8_t *)out->data, n, hw, c);
    WG_CUDA_CHECK_LAUNCH("gap_s8_forward_kernel");
}

/* One thread per element of da: element (b, p, ch) takes the spread of dout[b][ch]. */
__global__ void gap_s8_backward_kernel(const void *dout, wg_dtype td, int64_t *dx, int64_t n, int64_t hw, int64_t c)
{
    WG_GRID_STRIDE_LOOP(i, n * hw * c)
    {
        int64_t b = i / (hw * c), ch = i % c;
        dx[i] = wg_gap_spread_elem(wg_load_i64(dout, td, b * c + ch), hw);
    }
}

void wg_gap_s8_backward_cuda(const wg_tensor *dout, wg_tensor *da, cudaStream_t stream)
{
    int64_t n = da->shape[0], hw = da->shape[1] * da->shape[2], c = da->shape[3];
    WG_ASSERT(hw >= 1, "global average pooling over %lld positions", (long long)hw);
    if (n * hw * c == 0) return;
    gap_s8_backward_kernel<<<wg_grid_for(n * hw * c), WG_CUDA_BLOCK, 0, stream>>>(dout->data, dout->dtype,
                                                                                  (int64_t *)da->data, n, hw, c);
    WG_CUDA_CHECK_LAUNCH("gap_s8_backward_kernel");
}

/* ---- float32 global average pooling ---- */

/* As the CPU's loop: the positions summed in order, in double. */
__global__ void gap_f32_forward_kernel(const float *x, float *y, int64_t n, int64_t hw, int64_t c)
{
    WG_GRID_STRIDE_LOOP(i, n * c)
    {
        int64_t b = i / c, ch = i % c;
        double s = 0;
        for (int64_t p = 0; p < hw; p++) s += x[(b * hw + p) * c + ch];
        y[i] = (float)(s / (double)hw);
    }
}

__global__ void gap_f32_backward_kernel(const float *dout, float *dx, int64_t n, int64_t hw, int64_t c)
{
    WG_GRID_STRIDE_LOOP(i, n * hw * c)
    {
        int64_t b = i / (hw * c), ch = i % c;
        dx[i] = dout[b * c + ch] / (float)hw;
    }
}

void wg_gap_f32_forward_cuda(const wg_tensor *a, wg_tensor *out, cudaStream_t stream)
{
    int64_t n = a->shape[0], hw = a->shape[1] * a->shape[2], c = a->shape[3];
    if (n * c == 0) return;
    gap_f32_forward_kernel<<<wg_grid_for(n * c), WG_CUDA_BLOCK, 0, stream>>>((const float *)a->data,
                                                                             (float *)out->data, n, hw, c);
    WG_CUDA_CHECK_LAUNCH("gap_f32_forward_kernel");
}

void wg_gap_f32_backward_cuda(const wg_tensor *dout, wg_tensor *da, cudaStream_t stream)
{
    int64_t n = da->shape[0], hw = da->shape[1] * da->shape[2], c = da->shape[3];
    if (n * hw * c == 0) return;
    gap_f32_backward_kernel<<<wg_grid_for(n * hw * c), WG_CUDA_BLOCK, 0, stream>>>(
        (const float *)dout->data, (float *)da->data, n, hw, c);
    WG_CUDA_CHECK_LAUNCH("gap_f32_backward_kernel");
}

/* ---- max pooling ---- */

/* The arg-max (pixel index iy * W + ix in its image) of window (oy, ox) in channel ch
 * of the image at xb: the first of equal values in row-major window order, as pool.c's
 * strict '>' keeps it (pool.h's tie rule). */
template <typename T>
__device__ int64_t maxpool_argmax(const T *xb, const wg_maxpool_geom &g, int64_t oy, int64_t ox, int64_t ch)
{
    int64_t y0, y1, x0, x1;
    wg_maxpool_span(oy, g.stride, g.pad, g.k, g.h, &y0, &y1);
    wg_maxpool_span(ox, g.stride, g.pad, g.k, g.w, &x0, &x1);
    int64_t best_p = y0 * g.w + x0;
    T best = xb[best_p * g.c + ch];
    for (int64_t iy = y0; iy < y1; iy++)
        for (int64_t ix = x0; ix < x1; ix++) {
            int64_t p = iy * g.w + ix;
            T v = xb[p * g.c + ch];
            if (v > best) best = v, best_p = p;
        }
    return best_p;
}

/* One thread per output element (b, oy, ox, ch): the value at its window's arg-max. */
template <typename T>
__global__ void maxpool_forward_kernel(const T *x, T *y, wg_maxpool_geom g)
{
    WG_GRID_STRIDE_LOOP(t, g.n * g.oh * g.ow * g.c)
    {
        int64_t ch = t % g.c, ox = (t / g.c) % g.ow, oy = (t / (g.c * g.ow)) % g.oh, b = t / (g.c * g.ow * g.oh);
        const T *xb = x + b * g.h * g.w * g.c;
        y[t] = xb[maxpool_argmax(xb, g, oy, ox, ch) * g.c + ch];
    }
}

/* The output rows (or columns) whose windows hold input row i: [*lo, *hi). */
static __device__ void maxpool_cover(int64_t i, const wg_maxpool_geom &g, int64_t n_out, int64_t *lo, int64_t *hi)
{
    int64_t first = i + g.pad - g.k + 1; /* o * stride >= first */
    *lo = first <= 0 ? 0 : (first + g.stride - 1) / g.stride;
    int64_t last = (i + g.pad) / g.stride + 1;
    *hi = last < n_out ? last : n_out;
}

/* dx's element t from its gathered sum: a float as it is, an integer clamped once. */
static __device__ void maxpool_store(float sum, int64_t t, int64_t *dx_int, float *dx_f32)
{
    (void)dx_int;
    dx_f32[t] = sum;
}

static __device__ void maxpool_store(wg_i128 sum, int64_t t, int64_t *dx_int, float *dx_f32)
{
    (void)dx_f32;
    dx_int[t] = sum > (wg_i128)INT64_MAX ? INT64_MAX : sum < -(wg_i128)INT64_MAX ? -INT64_MAX : (int64_t)sum;
}

/* One thread per input element (b, iy, ix, ch): it gathers the errors of the windows
 * whose arg-max it is, in (oy, ox) order, with no atomics. Integers: an exact 128-bit
 * sum, clamped once (pool.c's wide path gives the same); floats: from 0 in pool.c's
 * order of additions. */
template <typename T, typename D, typename Acc>
__global__ void maxpool_backward_kernel(const T *x, const D *dy, wg_maxpool_geom g, int64_t *dx_int, float *dx_f32)
{
    WG_GRID_STRIDE_LOOP(t, g.n * g.h * g.w * g.c)
    {
        int64_t ch = t % g.c, ix = (t / g.c) % g.w, iy = (t / (g.c * g.w)) % g.h, b = t / (g.c * g.w * g.h);
        const T *xb = x + b * g.h * g.w * g.c;
        int64_t oy0, oy1, ox0, ox1, p = iy * g.w + ix;
        maxpool_cover(iy, g, g.oh, &oy0, &oy1);
        maxpool_cover(ix, g, g.ow, &ox0, &ox1);
        Acc sum = 0;
        for (int64_t oy = oy0; oy < oy1; oy++)
            for (int64_t ox = ox0; ox < ox1; ox++)
                if (maxpool_argmax(xb, g, oy, ox, ch) == p) sum += (Acc)dy[((b * g.oh + oy) * g.ow + ox) * g.c + ch];
        maxpool_store(sum, t, dx_int, dx_f32);
    }
}

template <typename T>
static void maxpool_forward_as(const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y, cudaStream_t stream)
{
    maxpool_forward_kernel<T><<<wg_grid_for(g->n * g->oh * g->ow * g->c), WG_CUDA_BLOCK, 0, stream>>>(
        (const T *)x->data, (T *)y->data, *g);
    WG_CUDA_CHECK_LAUNCH("maxpool_forward_kernel");
}

void wg_maxpool_forward_cuda(const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y, cudaStream_t stream)
{
    switch (x->dtype) {
    case WG_I8: maxpool_forward_as<int8_t>(g, x, y, stream); break;
    case WG_I16: maxpool_forward_as<int16_t>(g, x, y, stream); break;
    case WG_I32: maxpool_forward_as<int32_t>(g, x, y, stream); break;
    case WG_I64: maxpool_forward_as<int64_t>(g, x, y, stream); break;
    case WG_F32: maxpool_forward_as<float>(g, x, y, stream); break;
    default: WG_DIE("max pool of a %s tensor", wg_dtype_name(x->dtype));
    }
}

template <typename T, typename D>
static void maxpool_backward_as(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy, wg_tensor *dx,
                                cudaStream_t stream)
{
    unsigned grid = wg_grid_for(g->n * g->h * g->w * g->c);
    if (dx->dtype == WG_F32)
        maxpool_backward_kernel<T, D, float><<<grid, WG_CUDA_BLOCK, 0, stream>>>(
            (const T *)x->data, (const D *)dy->data, *g, NULL, (float *)dx->data);
    else
        maxpool_backward_kernel<T, D, wg_i128><<<grid, WG_CUDA_BLOCK, 0, stream>>>(
            (const T *)x->data, (const D *)dy->data, *g, (int64_t *)dx->data, NULL);
    WG_CUDA_CHECK_LAUNCH("maxpool_backward_kernel");
}

/* The input's container, then the error's (pool.h: any integer container for each). */
template <typename T>
static void maxpool_backward_x(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy, wg_tensor *dx,
                               cudaStream_t stream)
{
    switch (dy->dtype) {
    case WG_I8: maxpool_backward_as<T, int8_t>(g, x, dy, dx, stream); break;
    case WG_I16: maxpool_backward_as<T, int16_t>(g, x, dy, dx, stream); break;
    case WG_I32: maxpool_backward_as<T, int32_t>(g, x, dy, dx, stream); break;
    case WG_I64: maxpool_backward_as<T, int64_t>(g, x, dy, dx, stream); break;
    default: WG_DIE("max pool backward of a %s error", wg_dtype_name(dy->dtype));
    }
}

void wg_maxpool_backward_cuda(const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy, wg_tensor *dx,
                              cudaStream_t stream)
{
    switch (x->dtype) {
    case WG_I8: maxpool_backward_x<int8_t>(g, x, dy, dx, stream); break;
    case WG_I16: maxpool_backward_x<int16_t>(g, x, dy, dx, stream); break;
    case WG_I32: maxpool_backward_x<int32_t>(g, x, dy, dx, stream); break;
    case WG_I64: maxpool_backward_x<int64_t>(g, x, dy, dx, stream); break;
    case WG_F32: maxpool_backward_as<float, float>(g, x, dy, dx, stream); break;
    default: WG_DIE("max pool backward of a %s tensor", wg_dtype_name(x->dtype));
    }
}
