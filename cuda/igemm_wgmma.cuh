/* igemm_wgmma.cuh: the Hopper form of the implicit-GEMM kernel (igemm.cuh): the same
 * ops and K steps of 32, but the products are wgmma.mma_async (sm_90a), issued by the
 * block's 4 warps as one warpgroup and reading both operands straight from shared memory
 * through matrix descriptors, instead of mma.sync fed from registers by 4 warps each; B
 * (the weights, a plain [N][K] matrix) comes by the tensor memory accelerator; and the
 * products of one K step stay in flight while the next step's loads are issued.
 *
 * Tiles of C are 128 x 128 with one error part, 128 x 64 with two (igw_bn). Per K step
 * and per part, two m64nNk32 products (the two halves of the tile's 128 rows) against
 * the one B tile. s8 operands must be K-major, which is why only the forward and
 * backward-data ops (both K-major) have this form; backward-weight's operands run along
 * M and N and it stays on ig_kernel.
 *
 * Shared memory, a 4-stage ring loaded two steps ahead (the third stage is read by the
 * products in flight), each stage:
 * - A (one tile per part), gathered by cp.async as in ig_kernel, laid out K-major in the
 *   PTX ISA's core matrices without swizzling (igw_core_layout in igemm.cuh);
 * - B, one cp.async.bulk.tensor of a 32-byte x BN-row box of the [N][K] matrix (a 2-D
 *   tensor map, out-of-range rows and columns zero-filled), in the 32-byte swizzle that
 *   the tensor map and the B descriptor both name, completing on the stage's mbarrier.
 * Ordering, per K step: cp.async.wait_group (this thread's A copies of the step have
 * landed), fence.proxy.async (they were written by the generic proxy and wgmma reads
 * through the async proxy: HOPPER.md), the stage's mbarrier (B has landed),
 * __syncthreads (every thread's copies), then the loads of step + 2 into the stage two
 * steps back (its products retired at the previous step's wait), wgmma.fence, the
 * products, commit, wait_group 1.
 *
 * The accumulators of an m64nNk32 .s32 product, per thread (warp w of the warpgroup,
 * g = lane / 4, t = lane % 4): d[4i + r] is row 16w + g + 8 (r >= 2), column
 * 8i + 2t + (r & 1), for i = 0 .. N/8 - 1: the layout of mma.m16n8's C, repeated along N.
 *
 * Where the build has no sm_90a code (wg_conv_wgmma_available() false: the architectures
 * lack "90a", or the device is not compute capability 9.0) the launchers are not
 * called; the kernel body of other architectures traps. tests/test_igemm_emu.cc runs
 * this kernel on the CPU under an emulation of the helpers below. */
#ifndef WG_IGEMM_WGMMA_CUH
#define WG_IGEMM_WGMMA_CUH

#include <stdint.h>

#include "igemm.cuh"
#ifndef IG_EMULATION
#include <cuda.h> /* CUtensorMap (the type only: no driver call here) */
#include <stdio.h>
#endif

#define IGW_STAGES 4                           /* shared-memory stages */
#define IGW_AHEAD (IGW_STAGES - 2)             /* K steps loaded ahead: one more stage is read by the wgmma in flight */
#define IGW_A_BYTES (IG_BM * IG_BK)            /* one part's A tile: 128 rows of 32 bytes */
#define IGW_HALF_BYTES (IGW_A_BYTES / 2)       /* rows 64.. of an A tile: 8 groups of 8 rows on */

static_assert(IG_THREADS == 128, "the block is one warpgroup");
static_assert(igw_core_layout::at(64, 0) == IGW_HALF_BYTES, "the second half of A starts 64 rows on");
static_assert(igw_core_layout::at(IG_BM - 1, 1) + 16 == IGW_A_BYTES, "an A tile is dense");

/* The tile's columns: 128 (m64n128 products, 64 accumulators a thread per half) with one
 * error part; with E2's two, 64 (two sets of accumulators would not fit in registers). */
template <class Op>
__host__ __device__ constexpr int igw_bn()
{
    return Op::PARTS == 1 ? 128 : 64;
}

template <class Op>
__host__ __device__ constexpr int igw_stage_bytes()
{
    return Op::PARTS * IGW_A_BYTES + igw_bn<Op>() * IG_BK;
}

/* The stages (each a multiple of 1024 bytes, so every B tile starts on a swizzle atom),
 * then the stages' mbarriers; IGW_ALIGN more for aligning the dynamic shared memory. */
#define IGW_ALIGN 1024
template <class Op>
__host__ __device__ constexpr int igw_smem_bytes()
{
    return IGW_STAGES * igw_stage_bytes<Op>() + IGW_STAGES * 8 + IGW_ALIGN;
}
static_assert((2 * IGW_A_BYTES + 64 * IG_BK) % IGW_ALIGN == 0 && (IGW_A_BYTES + 128 * IG_BK) % IGW_ALIGN == 0,
              "stages of whole swizzle atoms");

/* The PTX ISA's shared-memory matrix descriptor (wgmma "Matrix Descriptor Format"): bits
 * 0-13 the start address, 16-29 the leading-dimension byte offset, 32-45 the
 * stride-dimension byte offset, each in units of 16 bytes; base offset 0 (bits 49-51:
 * the tiles start on whole swizzle atoms); bits 62-63 the swizzle mode. */
static __host__ __device__ __forceinline__ uint64_t igw_desc(uint32_t smem_addr, uint32_t lbo, uint32_t sbo,
                                                             uint64_t swizzle)
{
    return (uint64_t)((smem_addr >> 4) & 0x3fff) | (uint64_t)((lbo >> 4) & 0x3fff) << 16 |
           (uint64_t)((sbo >> 4) & 0x3fff) << 32 | swizzle << 62;
}

/* A: core matrices without swizzling (mode 0). */
static __host__ __device__ __forceinline__ uint64_t igw_desc_a(uint32_t smem_addr)
{
    return igw_desc(smem_addr, igw_core_layout::LBO, igw_core_layout::SBO, 0);
}

/* B as the tensor map's 32-byte swizzle writes it (mode 3): rows of 32 bytes, atoms of
 * 8 rows (256 bytes) one after the other; the leading offset is unused (1 by the ISA). */
#define IGW_SWIZZLE_32B 3
static __host__ __device__ __forceinline__ uint64_t igw_desc_b(uint32_t smem_addr)
{
    return igw_desc(smem_addr, 16, 8 * IG_BK, IGW_SWIZZLE_32B);
}

#ifndef IG_EMULATION
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define IGW_DEVICE_CODE 1
#endif

static __device__ __forceinline__ uint32_t igw_smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

typedef CUtensorMap igw_tmap; /* B's tensor map (conv_igemm.cu encodes it) */

#if defined(IGW_DEVICE_CODE)
/* The copies this thread made (generic proxy) become visible to wgmma (async proxy). */
static __device__ __forceinline__ void igw_fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* The stage's mbarrier: one arrival (thread 0's, with the bytes it expects) and the
 * tensor copy's bytes complete a phase. */
static __device__ __forceinline__ void igw_mbar_init(uint64_t *bar)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(igw_smem_addr(bar)) : "memory");
}

static __device__ __forceinline__ void igw_mbar_expect(uint64_t *bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(igw_smem_addr(bar)), "r"(bytes)
                 : "memory");
}

/* Until the phase of parity `parity` has completed. A copy that never lands (a bug)
 * traps after about 2^28 polls, seconds, instead of hanging the GPU: the launch is
 * then reported failed under the kernel's name. */
static __device__ __forceinline__ void igw_mbar_wait(uint64_t *bar, uint32_t parity)
{
    uint32_t done = 0;
    for (uint32_t polls = 0; !done; polls++) {
        if (polls == (1u << 28)) {
            printf("igw_kernel: block (%d, %d, %d): B's tensor copy never landed\n", (int)blockIdx.x, (int)blockIdx.y,
                   (int)blockIdx.z);
            __trap();
        }
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(igw_smem_addr(bar)), "r"(parity)
                     : "memory");
    }
}

/* The box at (k0, n0) of the tensor map into dst, completing on bar. */
static __device__ __forceinline__ void igw_tma_load(int8_t *dst, const igw_tmap *map, int k0, int n0, uint64_t *bar)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
                 "[%4];\n" ::"r"(igw_smem_addr(dst)),
                 "l"(map), "r"(k0), "r"(n0), "r"(igw_smem_addr(bar))
                 : "memory");
}

/* Orders the accumulators' register accesses before the next wgmma. */
static __device__ __forceinline__ void igw_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

static __device__ __forceinline__ void igw_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

template <int N>
static __device__ __forceinline__ void igw_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* The accumulators as read and written here: ties them to the wgmma instructions around
 * it, so the compiler neither reads one before the wait that makes it final nor moves
 * other code into a wgmma's span (ptxas would serialize the wgmmas: warning C7514). */
template <int R>
static __device__ __forceinline__ void igw_fence_operands(int32_t (&acc)[R])
{
#pragma unroll
    for (int r = 0; r < R; r++) asm volatile("" : "+r"(acc[r])::"memory");
}

/* d += A B^T for A 64 x 32 and B N x 32 (both K-major, s8) in shared memory; N / 2
 * accumulators a thread. p = 1: accumulate into d. */
#define IGW_R8(i) "+r"(d[i]), "+r"(d[i + 1]), "+r"(d[i + 2]), "+r"(d[i + 3]), "+r"(d[i + 4]), "+r"(d[i + 5]), \
                  "+r"(d[i + 6]), "+r"(d[i + 7])
#define IGW_S8(a, b, c, d, e, f, g, h) "%" #a ", %" #b ", %" #c ", %" #d ", %" #e ", %" #f ", %" #g ", %" #h

template <int N>
static __device__ __forceinline__ void igw_mma(int32_t d[N / 2], uint64_t da, uint64_t db)
{
    static_assert(N == 64 || N == 128, "m64n64k32 or m64n128k32");
    if constexpr (N == 64) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 {" IGW_S8(0, 1, 2, 3, 4, 5, 6, 7) ", "
                     IGW_S8(8, 9, 10, 11, 12, 13, 14, 15) ", " IGW_S8(16, 17, 18, 19, 20, 21, 22, 23) ", "
                     IGW_S8(24, 25, 26, 27, 28, 29, 30, 31) "}, %32, %33, p;\n}\n"
                     : IGW_R8(0), IGW_R8(8), IGW_R8(16), IGW_R8(24)
                     : "l"(da), "l"(db), "r"(1));
    } else {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {" IGW_S8(0, 1, 2, 3, 4, 5, 6, 7) ", "
                     IGW_S8(8, 9, 10, 11, 12, 13, 14, 15) ", " IGW_S8(16, 17, 18, 19, 20, 21, 22, 23) ", "
                     IGW_S8(24, 25, 26, 27, 28, 29, 30, 31) ", " IGW_S8(32, 33, 34, 35, 36, 37, 38, 39) ", "
                     IGW_S8(40, 41, 42, 43, 44, 45, 46, 47) ", " IGW_S8(48, 49, 50, 51, 52, 53, 54, 55) ", "
                     IGW_S8(56, 57, 58, 59, 60, 61, 62, 63) "}, %64, %65, p;\n}\n"
                     : IGW_R8(0), IGW_R8(8), IGW_R8(16), IGW_R8(24), IGW_R8(32), IGW_R8(40), IGW_R8(48), IGW_R8(56)
                     : "l"(da), "l"(db), "r"(1));
    }
}
#endif /* IGW_DEVICE_CODE */
#else
#define IGW_DEVICE_CODE 1 /* the emulation's helpers (tests/test_igemm_emu.cc) */
#endif /* IG_EMULATION */

template <class Op>
__global__ void __launch_bounds__(IG_THREADS) igw_kernel(const Op op, const __grid_constant__ igw_tmap bmap)
{
#if defined(IGW_DEVICE_CODE)
    static_assert(Op::A_KMAJOR && Op::B_KMAJOR, "wgmma takes K-major s8 operands only");
    constexpr int BN = igw_bn<Op>(), NREG = BN / 2, STAGE = igw_stage_bytes<Op>();
    extern __shared__ __align__(128) int8_t ig_smem[];
    int8_t *smem = ig_smem + ((IGW_ALIGN - igw_smem_addr(ig_smem) % IGW_ALIGN) % IGW_ALIGN);
    uint64_t *bars = (uint64_t *)(smem + IGW_STAGES * STAGE);
    const int64_t m0 = (int64_t)blockIdx.x * IG_BM, n0 = (int64_t)blockIdx.y * BN;
    const int64_t kbeg = (int64_t)blockIdx.z * op.k_split;
    const int64_t kend = op.K < kbeg + op.k_split ? op.K : kbeg + op.k_split;
    const int ntiles = kend > kbeg ? (int)((kend - kbeg + IG_BK - 1) / IG_BK) : 0;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int32_t acc[Op::PARTS][2][NREG];
#pragma unroll
    for (int p = 0; p < Op::PARTS; p++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int r = 0; r < NREG; r++) acc[p][h][r] = 0;
    if (threadIdx.x == 0)
        for (int s = 0; s < IGW_STAGES; s++) igw_mbar_init(&bars[s]);
    igw_fence_proxy_async(); /* the initialized barriers, seen by the tensor copies */
    __syncthreads();

    /* the tiles are loaded in order, 0, 1, ...: the cursor steps one K step a tile */
    typename Op::cursor cur = op.start(m0, n0, kbeg);
    auto load = [&](int tile) {
        int8_t *s = smem + (tile % IGW_STAGES) * STAGE;
#pragma unroll
        for (int p = 0; p < Op::PARTS; p++) op.template load_a<igw_core_layout>(p, s + p * IGW_A_BYTES, cur, m0, kend);
        if (threadIdx.x == 0) {
            uint64_t *bar = &bars[tile % IGW_STAGES];
            igw_mbar_expect(bar, BN * IG_BK);
            igw_tma_load(s + Op::PARTS * IGW_A_BYTES, &bmap, (int)cur.k0, (int)n0, bar);
        }
        op.next(cur);
    };
    /* The ring: tiles 0 .. AHEAD-1 first; then at step kt, wait for tile kt (A: this
     * thread's copies, fenced for wgmma; B: the stage's mbarrier, in its (kt / STAGES)-th
     * phase; the barrier: every thread's), start tile kt + AHEAD into the stage step
     * kt - 2 read (its products retired at step kt - 1's wait), issue tile kt's products
     * and retire all but them: one group stays in flight over the next step's loads. One
     * cp.async commit per step keeps the group count right. */
#pragma unroll
    for (int s = 0; s < IGW_AHEAD; s++) {
        if (s < ntiles) load(s);
        ig_cp_async_commit();
    }
    for (int kt = 0; kt < ntiles; kt++) {
        ig_cp_async_wait<IGW_AHEAD - 1>();
        igw_fence_proxy_async();
        igw_mbar_wait(&bars[kt % IGW_STAGES], (uint32_t)(kt / IGW_STAGES) & 1);
        __syncthreads();
        if (kt + IGW_AHEAD < ntiles) load(kt + IGW_AHEAD);
        ig_cp_async_commit();
        const int8_t *s = smem + (kt % IGW_STAGES) * STAGE;
        const uint64_t db = igw_desc_b(igw_smem_addr(s + Op::PARTS * IGW_A_BYTES));
        igw_fence();
#pragma unroll
        for (int p = 0; p < Op::PARTS; p++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                igw_fence_operands(acc[p][h]);
                igw_mma<BN>(acc[p][h], igw_desc_a(igw_smem_addr(s + p * IGW_A_BYTES + h * IGW_HALF_BYTES)), db);
                igw_fence_operands(acc[p][h]);
            }
        igw_commit();
        igw_wait<1>();
    }
    igw_wait<0>(); /* the accumulators are final */
#pragma unroll
    for (int p = 0; p < Op::PARTS; p++)
#pragma unroll
        for (int h = 0; h < 2; h++) igw_fence_operands(acc[p][h]);
    ig_cp_async_wait<0>(); /* no copy outlives the block */
    unsigned long long mx = 0;
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int r = 0; r < NREG; r += 2) { /* columns n, n + 1 */
            int64_t m = m0 + h * 64 + warp * 16 + g + ((r % 4) >= 2 ? 8 : 0);
            int64_t n = n0 + (r / 4) * 8 + 2 * t;
            unsigned long long v = op.store2(m, n, &acc[0][h][r], &acc[Op::PARTS - 1][h][r]);
            mx = v > mx ? v : mx;
        }
    mx = ig_warp_max(mx);
    if (lane == 0) op.finish(mx);
#else
    (void)op, (void)bmap;
    __trap(); /* no sm_90a code in this build for this device: wg_conv_wgmma_available() said no */
#endif
}

#endif
