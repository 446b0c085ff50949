/* im2col.cuh: what the int8 (conv.cu) and the float (conv_f32.cu) convolutions share:
 * the im2col kernel and the window walk of the gathering col2im kernels. */
#ifndef WG_IM2COL_CUH
#define WG_IM2COL_CUH

#include "conv.h"
#include "launch.cuh"

/* col[r][k] (rows of kp columns) for the output pixel r = (n, oy, ox) and the column
 * k = (i, j, ch) of the kernel window (k < kdim; zero past it and in the padding). */
template <typename T>
__global__ void im2col_kernel(const T *x, T *col, wg_conv_geom g, int64_t kp)
{
    WG_GRID_STRIDE_LOOP(t, g.rows * kp)
    {
        int64_t r = t / kp, k = t % kp;
        T v = 0;
        if (k < g.kdim) {
            int64_t ch = k % g.c, j = (k / g.c) % g.kw, i = k / (g.c * g.kw);
            int64_t ox = r % g.ow, oy = (r / g.ow) % g.oh, n = r / (g.ow * g.oh);
            int64_t iy = oy * g.stride - g.pad + i, ix = ox * g.stride - g.pad + j;
            if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) v = x[((n * g.h + iy) * g.w + ix) * g.c + ch];
        }
        col[t] = v;
    }
}

/* col2im's gather for the input element t = (n, iy, ix, ch): visit(r, k) for every
 * column-matrix entry [r][k] that the element fed, the windows in (i, j) order (r the
 * output pixel, k = (i, j, ch) its column). */
template <typename Visit>
static __device__ void col2im_terms(const wg_conv_geom &g, int64_t t, Visit visit)
{
    int64_t ch = t % g.c, ix = (t / g.c) % g.w, iy = (t / (g.c * g.w)) % g.h, n = t / (g.c * g.w * g.h);
    for (int64_t i = 0; i < g.kh; i++)
        for (int64_t j = 0; j < g.kw; j++) {
            int64_t ty = iy + g.pad - i, tx = ix + g.pad - j;
            if (ty < 0 || tx < 0 || ty % g.stride != 0 || tx % g.stride != 0) continue;
            int64_t oy = ty / g.stride, ox = tx / g.stride;
            if (oy >= g.oh || ox >= g.ow) continue;
            visit((n * g.oh + oy) * g.ow + ox, (i * g.kw + j) * g.c + ch);
        }
}

#endif
