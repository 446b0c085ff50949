/* conv_igemm_ops.cuh: the three convolutions as ops of the implicit-GEMM kernel
 * (igemm.cuh): where each GEMM's pieces come from (wg_conv_igemm.h) and what its
 * epilogue does with the exact int32 accumulators. conv_igemm.cu launches them on the
 * GPU; tests/test_igemm_emu.cc runs the same kernel and ops on the CPU under an
 * emulation of the warp instructions. */
#ifndef WG_CONV_IGEMM_OPS_CUH
#define WG_CONV_IGEMM_OPS_CUH

#include <stdint.h>

#include "igemm.cuh"
#include "wg_conv_igemm.h"
#include "wg_dtype.h"
#include "wg_intmath.h"

/* Rows of the output pixels one block of backward-weight sums (blockIdx.z splits the
 * rest): at most 2^16 products of int8 (each below 2^14 in magnitude) keep an int32 sum
 * below 2^30, so every block's accumulators are exact; the blocks add in int64. */
#define IG_DW_MAX_SPLIT 65536

/* The value of E2's parts' products: part p's exact int32 sum shifted up to the finest
 * part's grid (int64: exact, the shifts being at most E2's span). */
template <int P>
static __device__ __forceinline__ int64_t ig_parts_value(int32_t v0, int32_t v1, const int shift[2])
{
    int64_t v = (int64_t)v0 * ((int64_t)1 << shift[0]);
    if (P > 1) v += (int64_t)v1 * ((int64_t)1 << shift[1]);
    return v;
}

/* The cursor of a gathered K-major A (forward, backward-data): this thread's rows
 * (Row: each decomposed once, by row_of), its K position at k0 + 16 q (chans channels a
 * kernel position, kw positions a kernel row) and k0, stepped one K step a tile. */
template <class Row>
struct ig_gather_cursor {
    Row row[ig_kmajor_iters<IG_BM>()];
    wg_igemm_kpos ka;
    int64_t k0;

    template <class RowOf>
    __device__ void start(RowOf row_of, int64_t m0, int64_t kbeg, int64_t chans, int64_t kw)
    {
#pragma unroll
        for (int it = 0; it < ig_kmajor_iters<IG_BM>(); it++) row[it] = row_of(m0 + ig_kmajor_row(it));
        ka = wg_igemm_kpos_of(kbeg + ig_kmajor_q() * WG_IGEMM_PIECE, chans, kw);
        k0 = kbeg;
    }
    __device__ void next(int32_t chans, int32_t kw)
    {
        k0 += IG_BK;
        wg_igemm_kpos_step(&ka, IG_BK, chans, kw);
    }
    __device__ bool k_in(int64_t kend) const { return k0 + ig_kmajor_q() * WG_IGEMM_PIECE < kend; }
};

/* K-major B, a plain [N][K] matrix (the weights, or backward-data's transposed ones):
 * this thread's pieces at the cursor's K step (rows n0 + its rows, half q). */
template <class Cursor>
static __device__ __forceinline__ void ig_load_plain_b(int8_t *tile, const int8_t *b, const Cursor &c, int64_t n0,
                                                       int64_t N, int64_t K, int64_t kend)
{
    int64_t k = c.k0 + ig_kmajor_q() * WG_IGEMM_PIECE;
    ig_load_kmajor<ig_pad_layout, IG_BN>(tile, b, [&](int it) -> int64_t {
        int64_t n = n0 + ig_kmajor_row(it);
        return n < N && k < kend ? n * K + k : -1;
    });
}

/* Whether columns n, n + 1 of row m are both in the M x N output and p (element n's
 * place) is aligned for writing them as one vector of `bytes`. */
static __device__ __forceinline__ bool ig_pair_whole(int64_t m, int64_t n, int64_t M, int64_t N, const void *p,
                                                     int bytes)
{
    return m < M && n + 1 < N && (uintptr_t)p % (uintptr_t)bytes == 0;
}

static __device__ __forceinline__ unsigned long long ig_max2(unsigned long long a, unsigned long long b)
{
    return a > b ? a : b;
}

/* ---- forward: y = x (*) w, and max |y| ---- */

struct ig_fwd_op {
    static constexpr bool A_KMAJOR = true, B_KMAJOR = true;
    static constexpr int PARTS = 1;
    wg_conv_geom g;
    int64_t M, N, K, k_split;
    const int8_t *x, *w;
    int32_t *y;
    unsigned long long *ymax;

    /* this thread's A rows are output pixels; K runs (i, j, ch) */
    using cursor = ig_gather_cursor<wg_igemm_frow>;
    __device__ cursor start(int64_t m0, int64_t, int64_t kbeg) const
    {
        cursor c;
        c.start([&](int64_t m) { return wg_igemm_fwd_row(&g, m); }, m0, kbeg, g.c, g.kw);
        return c;
    }
    __device__ void next(cursor &c) const { c.next((int32_t)g.c, (int32_t)g.kw); }
    template <class L = ig_pad_layout>
    __device__ void load_a(int, int8_t *tile, const cursor &c, int64_t, int64_t kend) const
    {
        bool in = c.k_in(kend);
        ig_load_kmajor<L, IG_BM>(tile, x, [&](int it) -> int64_t {
            return in ? wg_igemm_fwd_a_at(&g, &c.row[it], &c.ka) : -1;
        });
    }
    __device__ void load_b(int8_t *tile, const cursor &c, int64_t n0, int64_t kend) const
    {
        ig_load_plain_b(tile, w, c, n0, N, K, kend);
    }
    const int8_t *b() const { return w; } /* B as a plain [N][K] matrix (igw_kernel's tensor map) */
    __device__ unsigned long long store2(int64_t m, int64_t n, const int32_t *v, const int32_t *) const
    {
        int32_t *p = y + m * N + n;
        bool in[2] = {m < M && n < N, m < M && n + 1 < N};
        if (ig_pair_whole(m, n, M, N, p, 8)) ig_store_pair32(p, v[0], v[1]);
        else
            for (int e = 0; e < 2; e++)
                if (in[e]) p[e] = v[e];
        return ig_max2(in[0] ? wg_abs_u64(v[0]) : 0, in[1] ? wg_abs_u64(v[1]) : 0);
    }
    __device__ void finish(unsigned long long mx) const { atomicMax(ymax, mx); }
};

/* ---- backward-data: dx = sum over the parts of (err_p (*) w^T) 2^shift_p, and max |dx| ---- */

template <int P>
struct ig_bwd_data_op {
    static constexpr bool A_KMAJOR = true, B_KMAJOR = true;
    static constexpr int PARTS = P;
    wg_conv_geom g;
    int64_t M, N, K, k_split;
    const int8_t *err[2], *wt;
    int shift[2];
    void *dx;
    wg_dtype t_dx;
    unsigned long long *dmax;

    /* this thread's A rows are input pixels; K runs (i, j, o) */
    using cursor = ig_gather_cursor<wg_igemm_drow>;
    __device__ cursor start(int64_t m0, int64_t, int64_t kbeg) const
    {
        cursor c;
        c.start([&](int64_t m) { return wg_igemm_bwd_data_row(&g, m); }, m0, kbeg, g.o, g.kw);
        return c;
    }
    __device__ void next(cursor &c) const { c.next((int32_t)g.o, (int32_t)g.kw); }
    template <class L = ig_pad_layout>
    __device__ void load_a(int p, int8_t *tile, const cursor &c, int64_t, int64_t kend) const
    {
        bool in = c.k_in(kend);
        ig_load_kmajor<L, IG_BM>(tile, err[p], [&](int it) -> int64_t {
            return in ? wg_igemm_bwd_data_a_at(&g, &c.row[it], &c.ka) : -1;
        });
    }
    __device__ void load_b(int8_t *tile, const cursor &c, int64_t n0, int64_t kend) const
    {
        ig_load_plain_b(tile, wt, c, n0, N, K, kend);
    }
    const int8_t *b() const { return wt; } /* B as a plain [N][K] matrix (igw_kernel's tensor map) */
    __device__ unsigned long long store2(int64_t m, int64_t n, const int32_t *v0, const int32_t *v1) const
    {
        int64_t v[2] = {ig_parts_value<P>(v0[0], v1[0], shift), ig_parts_value<P>(v0[1], v1[1], shift)};
        int64_t i = m * N + n;
        bool in[2] = {m < M && n < N, m < M && n + 1 < N};
        if (t_dx == WG_I32 && ig_pair_whole(m, n, M, N, (int32_t *)dx + i, 8))
            ig_store_pair32((int32_t *)dx + i, (int32_t)v[0], (int32_t)v[1]);
        else if (t_dx == WG_I64 && ig_pair_whole(m, n, M, N, (int64_t *)dx + i, 16))
            ig_store_pair64((int64_t *)dx + i, v[0], v[1]);
        else
            for (int e = 0; e < 2; e++)
                if (in[e]) wg_store_i64(dx, t_dx, i + e, v[e]);
        return ig_max2(in[0] ? wg_abs_u64(v[0]) : 0, in[1] ? wg_abs_u64(v[1]) : 0);
    }
    __device__ void finish(unsigned long long mx) const { atomicMax(dmax, mx); }
};

/* ---- backward-weight: dw (int64, zeroed first) += sum over the parts of (err_p^T x) 2^shift_p ---- */

template <int P>
struct ig_bwd_weight_op {
    static constexpr bool A_KMAJOR = false, B_KMAJOR = false;
    static constexpr int PARTS = P;
    wg_conv_geom g;
    int64_t M, N, K, k_split;
    const int8_t *err[2], *x;
    int shift[2];
    int64_t *dw;

    /* K is the output pixels. This thread's B column (n0 + 16 q: a kernel position and
     * channel, fixed), the output pixels of its B k rows (k0 + its k rows), and k0. */
    struct cursor {
        wg_igemm_kpos kb;
        bool b_in;
        wg_igemm_pix pix[ig_mmajor_iters<IG_BN>()];
        int64_t k0;
    };
    __device__ cursor start(int64_t, int64_t n0, int64_t kbeg) const
    {
        cursor c;
        int64_t n = n0 + ig_mmajor_q<IG_BN>() * WG_IGEMM_PIECE;
        c.b_in = n < N;
        c.kb = wg_igemm_kpos_of(c.b_in ? n : 0, g.c, g.kw);
#pragma unroll
        for (int it = 0; it < ig_mmajor_iters<IG_BN>(); it++) c.pix[it] = wg_igemm_pix_of(&g, kbeg + ig_mmajor_k<IG_BN>(it));
        c.k0 = kbeg;
        return c;
    }
    __device__ void next(cursor &c) const
    {
        c.k0 += IG_BK;
#pragma unroll
        for (int it = 0; it < ig_mmajor_iters<IG_BN>(); it++) wg_igemm_pix_step(&c.pix[it], &g, IG_BK);
    }
    __device__ void load_a(int p, int8_t *tile, const cursor &c, int64_t m0, int64_t kend) const
    {
        int64_t m = m0 + ig_mmajor_q<IG_BM>() * WG_IGEMM_PIECE;
        ig_load_mmajor<IG_BM>(tile, err[p], [&](int it) -> int64_t {
            int64_t k = c.k0 + ig_mmajor_k<IG_BM>(it);
            return k < kend && m < M ? wg_igemm_bwd_w_a(&g, k, m) : -1;
        });
    }
    __device__ void load_b(int8_t *tile, const cursor &c, int64_t, int64_t kend) const
    {
        ig_load_mmajor<IG_BN>(tile, x, [&](int it) -> int64_t {
            if (!c.b_in || c.k0 + ig_mmajor_k<IG_BN>(it) >= kend) return -1;
            wg_igemm_frow r = wg_igemm_frow_at(&g, &c.pix[it]);
            return wg_igemm_fwd_a_at(&g, &r, &c.kb);
        });
    }
    __device__ unsigned long long store2(int64_t m, int64_t n, const int32_t *v0, const int32_t *v1) const
    {
        for (int e = 0; e < 2; e++) {
            int64_t v = ig_parts_value<P>(v0[e], v1[e], shift);
            if (m < M && n + e < N && v != 0)
                atomicAdd((unsigned long long *)&dw[m * N + n + e], (unsigned long long)v); /* two's complement */
        }
        return 0;
    }
    __device__ void finish(unsigned long long) const {}
};

/* Rows of output pixels per block: enough blocks to fill the GPU (about 1024), at most
 * IG_DW_MAX_SPLIT (exactness), a whole number of K steps. */
static inline int64_t ig_dw_split(const wg_conv_geom *g)
{
    int64_t tiles = ((g->o + IG_BM - 1) / IG_BM) * ((g->kdim + IG_BN - 1) / IG_BN);
    int64_t want = 1024 / tiles > 1 ? 1024 / tiles : 1, split = (g->rows + want - 1) / want;
    split = (split + IG_BK - 1) / IG_BK * IG_BK;
    if (split < 8 * IG_BK) split = 8 * IG_BK;
    return split < IG_DW_MAX_SPLIT ? split : IG_DW_MAX_SPLIT;
}

#endif
