/* im2col.cuh: the im2col kernel that the int8 (conv.cu) and the float (conv_f32.cu)
 * convolutions share. */
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

#endif
