/* igemm.cuh: the implicit-GEMM int8 tensor-core kernel that the three convolutions of
 * conv_igemm.cu instantiate (host/wg_conv_igemm.h: which GEMM each is, and where its
 * operands' pieces lie).
 *
 * C[M][N] = sum over k of A(m, k) B(n, k), int8 x int8 -> int32, with
 * mma.sync.m16n8k32.s32.s8.s8.s32 (sm_80 and later, Hopper included). A block of 4 warps
 * computes a 128 x 64 tile of C (each warp 64 x 32: 4 x 4 MMAs of 16 x 8), stepping over
 * its K range 32 at a time through a 3-stage ring of shared-memory tiles filled by
 * cp.async (16 bytes a copy, zero-filled where the operand has no piece: padding, past
 * the end), so the loads of the next two steps fly while the tensor cores work.
 *
 * An operand is stored in its tile one of two ways, as the op's pieces run:
 * - K-major ([row][k], rows IG_KROW = 48 bytes apart: the 16 bytes of padding put the
 *   8 rows that a matrix load touches in distinct banks): one ldmatrix.x4 a fragment
 *   of A, or two fragments of B;
 * - M-major ([k][row], k rows R + 16 bytes apart), for backward-weight, whose operands
 *   run along M and N with K (the output pixels) outermost: each fragment register
 *   gathers its 4 bytes from 4 k rows.
 * Up to two A operands (E2's two error parts) share the B tile: two sets of
 * accumulators, one pass over B.
 *
 * An op (conv_igemm_ops.cuh) is a struct with A_KMAJOR, B_KMAJOR, PARTS, the sizes M,
 * N, K, k_split (the K range of one blockIdx.z), a cursor type (where this thread's
 * pieces lie, worked out once by start(m0, n0, kbeg) and stepped one K step a tile by
 * next(cursor)), and the device members load_a(part, tile, cursor, m0, kend) and
 * load_b(tile, cursor, n0, kend) (each issues this thread's copies of the tile with the
 * helpers below), store2(m, n, acc0[2], acc1[2]) (columns n, n + 1 of row m, of each
 * part) -> a magnitude for the maximum, and finish(max). The accumulators are exact: the ops keep K (or k_split) within
 * WG_GEMM_S8_MAX_K products. */
#ifndef WG_IGEMM_CUH
#define WG_IGEMM_CUH

#include <stdint.h>

#include "wg_conv_igemm.h"

#define IG_BM 128
#define IG_BN 64
#define IG_BK 32
#define IG_STAGES 3
#define IG_WARPS_M 2
#define IG_WARPS_N 2
#define IG_THREADS (32 * IG_WARPS_M * IG_WARPS_N)
#define IG_WM (IG_BM / IG_WARPS_M) /* a warp's rows of C: 64 */
#define IG_WN (IG_BN / IG_WARPS_N) /* and columns: 32 */
#define IG_MT (IG_WM / 16)         /* its MMAs along M: 4 */
#define IG_NT (IG_WN / 8)          /* and along N: 4 */
#define IG_KROW 48                 /* bytes from row to row of a K-major tile */
#define IG_PIECES_PER_K (IG_BK / WG_IGEMM_PIECE)

static_assert(IG_BK == 32, "one m16n8k32 MMA per K step");
static_assert(IG_NT % 2 == 0, "B fragments are loaded two MMAs at a time");

/* Bytes of one operand's tile. */
#define IG_TILE_BYTES(kmajor, rows) ((kmajor) ? (rows) * IG_KROW : IG_BK * ((rows) + 16))

template <class Op>
__host__ __device__ constexpr int ig_stage_bytes()
{
    return Op::PARTS * IG_TILE_BYTES(Op::A_KMAJOR, IG_BM) + IG_TILE_BYTES(Op::B_KMAJOR, IG_BN);
}

template <class Op>
__host__ __device__ constexpr int ig_smem_bytes()
{
    return IG_STAGES * ig_stage_bytes<Op>();
}

/* The warp-level instructions: the hardware's, or (IG_EMULATION, defined by
 * tests/test_igemm_emu.cc with its own versions of these eight) an emulation on the
 * CPU that runs this kernel and its ops unchanged. */
#ifndef IG_EMULATION
#include <cuda_runtime.h>

/* One 16-byte copy global -> shared, or 16 zero bytes where valid is false (src-size 0:
 * nothing is read; src is then any address of the operand). */
static __device__ __forceinline__ void ig_cp_async16(int8_t *dst, const int8_t *src, bool valid)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0));
}

static __device__ __forceinline__ void ig_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
static __device__ __forceinline__ void ig_cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* c += a b for one 16 x 8 x 32 product: c0, c1 at row g, columns 2t, 2t + 1; c2, c3 at
 * row g + 8. */
static __device__ __forceinline__ void ig_mma(int32_t c[4], const uint32_t a[4], const uint32_t b[2])
{
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* Four 8 x 8 matrices of 16-bit elements from shared memory: lanes 8i .. 8i + 7 give
 * the addresses of matrix i's 8 rows (16 bytes each); lane l gets in r[i] matrix i's row
 * l / 4, bytes 4 (l % 4) .. + 3 (PTX ISA, ldmatrix). For s8 fragments, those 4 bytes
 * are exactly an m16n8k32 fragment register. */
static __device__ __forceinline__ void ig_ldsm_x4(uint32_t r[4], const int8_t *row)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

/* Two neighbouring outputs in one store (p aligned to the pair: 8 or 16 bytes). */
static __device__ __forceinline__ void ig_store_pair32(int32_t *p, int32_t a, int32_t b)
{
    *(int2 *)p = make_int2(a, b);
}
static __device__ __forceinline__ void ig_store_pair64(int64_t *p, int64_t a, int64_t b)
{
    *(longlong2 *)p = make_longlong2(a, b);
}

/* The largest of the warp's m, to lane 0. */
static __device__ __forceinline__ unsigned long long ig_warp_max(unsigned long long m)
{
    for (int off = 16; off > 0; off /= 2) {
        unsigned long long o = __shfl_down_sync(0xffffffffu, m, off);
        m = o > m ? o : m;
    }
    return m;
}

#endif /* IG_EMULATION */

/* Where byte q * 16 of row `row` of a K-major tile lies, for each kernel's tiles:
 * - ig_pad_layout (ig_kernel, mma.sync): rows IG_KROW apart, each fragment register one
 *   32-bit load;
 * - igw_core_layout (igw_kernel, wgmma, igemm_wgmma.cuh): the PTX ISA's K-major layout
 *   without swizzling, in "core matrices" of 8 rows x 16 bytes (128 contiguous bytes):
 *   the two halves of K (q = 0, 1) 128 bytes apart (the descriptor's leading-dimension
 *   offset), groups of 8 rows 256 bytes apart (its stride-dimension offset). */
struct ig_pad_layout {
    static __host__ __device__ constexpr int at(int row, int q) { return row * IG_KROW + q * WG_IGEMM_PIECE; }
};
struct igw_core_layout {
    static constexpr int LBO = 128, SBO = 256;
    static __host__ __device__ constexpr int at(int row, int q) { return (row / 8) * SBO + q * LBO + (row % 8) * 16; }
};

/* Which pieces of a tile this thread copies, the same at every K step (so an op can
 * work out each piece's row once per block: its cursor, conv_igemm_ops.cuh): iteration
 * it takes piece c = threadIdx.x + it * IG_THREADS of the tile.
 * - K-major, ROWS rows: row c / 2, half q = c % 2 of the K step;
 * - M-major, ROWS rows: k row c / (ROWS / 16), piece q = c % (ROWS / 16) along M.
 * q is the same for every it (IG_THREADS is a multiple of the pieces a row). */
template <int ROWS>
__host__ __device__ constexpr int ig_kmajor_iters()
{
    static_assert(ROWS * IG_PIECES_PER_K % IG_THREADS == 0, "whole iterations");
    return ROWS * IG_PIECES_PER_K / IG_THREADS;
}
static __device__ __forceinline__ int ig_kmajor_row(int it) { return (threadIdx.x + it * IG_THREADS) / IG_PIECES_PER_K; }
static __device__ __forceinline__ int ig_kmajor_q() { return threadIdx.x % IG_PIECES_PER_K; }

template <int ROWS>
__host__ __device__ constexpr int ig_mmajor_iters()
{
    static_assert(IG_BK * ROWS / WG_IGEMM_PIECE % IG_THREADS == 0 && IG_THREADS % (ROWS / WG_IGEMM_PIECE) == 0,
                  "whole iterations, one piece along M a thread");
    return IG_BK * ROWS / WG_IGEMM_PIECE / IG_THREADS;
}
template <int ROWS>
static __device__ __forceinline__ int ig_mmajor_k(int it)
{
    return (threadIdx.x + it * IG_THREADS) / (ROWS / WG_IGEMM_PIECE);
}
template <int ROWS>
static __device__ __forceinline__ int ig_mmajor_q()
{
    return threadIdx.x % (ROWS / WG_IGEMM_PIECE);
}

/* This thread's pieces of a K-major tile of ROWS rows, laid out by L: offset(it) gives
 * where iteration it's piece lies in base (-1: zeros). */
template <class L, int ROWS, class Offset>
static __device__ __forceinline__ void ig_load_kmajor(int8_t *tile, const int8_t *base, Offset offset)
{
#pragma unroll
    for (int it = 0; it < ig_kmajor_iters<ROWS>(); it++) {
        int64_t off = offset(it);
        ig_cp_async16(tile + L::at(ig_kmajor_row(it), ig_kmajor_q()), off >= 0 ? base + off : base, off >= 0);
    }
}

/* This thread's pieces of an M-major tile: IG_BK k rows of ROWS bytes, k rows ROWS + 16
 * bytes apart; offset(it) as above. */
template <int ROWS, class Offset>
static __device__ __forceinline__ void ig_load_mmajor(int8_t *tile, const int8_t *base, Offset offset)
{
#pragma unroll
    for (int it = 0; it < ig_mmajor_iters<ROWS>(); it++) {
        int64_t off = offset(it);
        ig_cp_async16(tile + ig_mmajor_k<ROWS>(it) * (ROWS + 16) + ig_mmajor_q<ROWS>() * WG_IGEMM_PIECE,
                      off >= 0 ? base + off : base, off >= 0);
    }
}

/* 4 bytes, lowest address in the lowest bits (the fragments' element order). */
static __device__ __forceinline__ uint32_t ig_pack4(const int8_t *p, int stride)
{
    return (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[stride] << 8 | (uint32_t)(uint8_t)p[2 * stride] << 16 |
           (uint32_t)(uint8_t)p[3 * stride] << 24;
}

/* The A fragment of an m16n8k32 MMA whose 16 rows start at row r0 of the tile (ROWS
 * rows): with g = lane / 4, t = lane % 4, a0 = row g, k 4t..4t+3; a1 = row g + 8; a2 and
 * a3 the same rows at k + 16 (PTX ISA, "Matrix Fragments for mma.m16n8k32", .s8).
 * K-major: one ldmatrix.x4, its matrices (rows 0-7, k 0-15), (8-15, 0-15), (0-7, 16-31),
 * (8-15, 16-31); the rows IG_KROW = 48 bytes apart put a matrix's 8 rows in distinct
 * banks. M-major: each register gathered from 4 k rows. */
template <bool KMAJOR, int ROWS>
static __device__ __forceinline__ void ig_frag_a(const int8_t *tile, int r0, int lane, uint32_t a[4])
{
    if (KMAJOR) {
        int i = lane / 8;
        ig_ldsm_x4(a, tile + (r0 + lane % 8 + 8 * (i & 1)) * IG_KROW + 16 * (i >> 1));
    } else {
        constexpr int LD = ROWS + 16;
        const int8_t *p = tile + 4 * (lane % 4) * LD + r0 + lane / 4;
        a[0] = ig_pack4(p, LD);
        a[1] = ig_pack4(p + 8, LD);
        a[2] = ig_pack4(p + 16 * LD, LD);
        a[3] = ig_pack4(p + 16 * LD + 8, LD);
    }
}

/* The B fragments (32 x 8, "col": b0 = column g, k 4t..4t+3; b1 the same at k + 16) of
 * two MMAs side by side, columns n0.. and n0 + 8... K-major: one ldmatrix.x4, its
 * matrices (columns 0-7, k 0-15), (0-7, 16-31), (8-15, 0-15), (8-15, 16-31). */
template <bool KMAJOR, int ROWS>
static __device__ __forceinline__ void ig_frag_b2(const int8_t *tile, int n0, int lane, uint32_t b0[2],
                                                  uint32_t b1[2])
{
    if (KMAJOR) {
        int i = lane / 8;
        uint32_t r[4];
        ig_ldsm_x4(r, tile + (n0 + lane % 8 + 8 * (i >> 1)) * IG_KROW + 16 * (i & 1));
        b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
    } else {
        constexpr int LD = ROWS + 16;
        uint32_t *b[2] = {b0, b1};
        for (int h = 0; h < 2; h++) {
            const int8_t *p = tile + 4 * (lane % 4) * LD + n0 + 8 * h + lane / 4;
            b[h][0] = ig_pack4(p, LD);
            b[h][1] = ig_pack4(p + 16 * LD, LD);
        }
    }
}

template <class Op>
__global__ void __launch_bounds__(IG_THREADS) ig_kernel(const Op op)
{
    extern __shared__ __align__(128) int8_t ig_smem[];
    constexpr int A_BYTES = IG_TILE_BYTES(Op::A_KMAJOR, IG_BM), STAGE = ig_stage_bytes<Op>();
    const int64_t m0 = (int64_t)blockIdx.x * IG_BM, n0 = (int64_t)blockIdx.y * IG_BN;
    const int64_t kbeg = (int64_t)blockIdx.z * op.k_split;
    const int64_t kend = op.K < kbeg + op.k_split ? op.K : kbeg + op.k_split;
    const int ntiles = kend > kbeg ? (int)((kend - kbeg + IG_BK - 1) / IG_BK) : 0;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int wm = warp / IG_WARPS_N, wn = warp % IG_WARPS_N;
    int32_t acc[Op::PARTS][IG_MT][IG_NT][4];
#pragma unroll
    for (int p = 0; p < Op::PARTS; p++)
#pragma unroll
        for (int mi = 0; mi < IG_MT; mi++)
#pragma unroll
            for (int ni = 0; ni < IG_NT; ni++)
#pragma unroll
                for (int r = 0; r < 4; r++) acc[p][mi][ni][r] = 0;

    /* the tiles are loaded in order, 0, 1, ...: the cursor steps one K step a tile */
    typename Op::cursor cur = op.start(m0, n0, kbeg);
    auto load = [&](int stage) {
        int8_t *s = ig_smem + stage * STAGE;
#pragma unroll
        for (int p = 0; p < Op::PARTS; p++) op.load_a(p, s + p * A_BYTES, cur, m0, kend);
        op.load_b(s + Op::PARTS * A_BYTES, cur, n0, kend);
        op.next(cur);
    };
    /* the ring: tiles 0 .. STAGES-2 first; then at step kt, wait for tile kt, start tile
     * kt + STAGES - 1 into the stage step kt - 1 read (every thread is past it: the
     * barrier), and multiply tile kt. One commit per step keeps the group count right. */
#pragma unroll
    for (int s = 0; s < IG_STAGES - 1; s++) {
        if (s < ntiles) load(s);
        ig_cp_async_commit();
    }
    for (int kt = 0; kt < ntiles; kt++) {
        ig_cp_async_wait<IG_STAGES - 2>();
        __syncthreads();
        int next = kt + IG_STAGES - 1;
        if (next < ntiles) load(next % IG_STAGES);
        ig_cp_async_commit();
        const int8_t *s = ig_smem + (kt % IG_STAGES) * STAGE;
        uint32_t b[IG_NT][2];
#pragma unroll
        for (int ni = 0; ni < IG_NT; ni += 2)
            ig_frag_b2<Op::B_KMAJOR, IG_BN>(s + Op::PARTS * A_BYTES, wn * IG_WN + ni * 8, lane, b[ni], b[ni + 1]);
#pragma unroll
        for (int p = 0; p < Op::PARTS; p++)
#pragma unroll
            for (int mi = 0; mi < IG_MT; mi++) {
                uint32_t a[4];
                ig_frag_a<Op::A_KMAJOR, IG_BM>(s + p * A_BYTES, wm * IG_WM + mi * 16, lane, a);
#pragma unroll
                for (int ni = 0; ni < IG_NT; ni++) ig_mma(acc[p][mi][ni], a, b[ni]);
            }
    }
    ig_cp_async_wait<0>(); /* no copy outlives the block */
    unsigned long long mx = 0;
#pragma unroll
    for (int mi = 0; mi < IG_MT; mi++)
#pragma unroll
        for (int ni = 0; ni < IG_NT; ni++)
#pragma unroll
            for (int r = 0; r < 4; r += 2) { /* columns 2t, 2t + 1 of rows g, then g + 8 */
                int64_t m = m0 + wm * IG_WM + mi * 16 + g + (r >= 2 ? 8 : 0);
                int64_t n = n0 + wn * IG_WN + ni * 8 + 2 * t;
                unsigned long long v = op.store2(m, n, &acc[0][mi][ni][r], &acc[Op::PARTS - 1][mi][ni][r]);
                mx = v > mx ? v : mx;
            }
    mx = ig_warp_max(mx);
    if (lane == 0) op.finish(mx);
}

#endif
