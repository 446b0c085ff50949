/* igemm_wgmma.cuh: the Hopper form of the implicit-GEMM kernel (igemm.cuh): the same
 * ops, tiles of C (128 x 64), K steps of 32 and 3-stage cp.async ring, but the products
 * are wgmma.mma_async (sm_90a), issued by the block's 4 warps as one warpgroup and reading
 * both operands straight from shared memory through matrix descriptors, instead of
 * mma.sync fed from registers by 4 warps each.
 *
 * Per K step and per part, two m64n64k32 products (the two halves of the tile's 128
 * rows) against the one B tile. The tiles are laid out K-major in the PTX ISA's
 * "core matrices" without swizzling (igw_core_layout in igemm.cuh): s8 operands must be
 * K-major, which is why only the forward and backward-data ops (both K-major) have this
 * form; backward-weight's operands run along M and N and stay on ig_kernel.
 *
 * Ordering, per K step: cp.async.wait_group (this thread's copies of the step have
 * landed), fence.proxy.async (they were written by the generic proxy and wgmma reads
 * through the async proxy: HOPPER.md), __syncthreads (every thread's), then the loads of
 * a later step into the stage the previous step read (its wgmma finished at its
 * wait_group 0), wgmma.fence, the products, commit, wait_group 0.
 *
 * The accumulators of an m64nNk32 .s32 product, per thread (warp w of the warpgroup,
 * g = lane / 4, t = lane % 4): d[4i + r] is row 16w + g + 8 (r >= 2), column
 * 8i + 2t + (r & 1), for i = 0 .. N/8 - 1: the layout of mma.m16n8's C, repeated along N.
 *
 * Where the build has no sm_90a code (igw_available() false: the architectures lack
 * "90a", or the device is not compute capability 9.0) the launchers are not called; the
 * kernel body of other architectures traps. tests/test_igemm_emu.cc runs this kernel on
 * the CPU under an emulation of the six helpers below. */
#ifndef WG_IGEMM_WGMMA_CUH
#define WG_IGEMM_WGMMA_CUH

#include <stdint.h>

#include "igemm.cuh"

#define IGW_A_BYTES (IG_BM * IG_BK) /* one part's A tile: 128 rows of 32 bytes */
#define IGW_B_BYTES (IG_BN * IG_BK)
#define IGW_HALF_BYTES (IGW_A_BYTES / 2) /* rows 64.. of an A tile: 8 groups of 8 rows on */
#define IGW_NREG (IG_BN / 2)             /* accumulators per thread of an m64n64 product: 32 */

static_assert(IG_THREADS == 128, "the block is one warpgroup");
static_assert(igw_core_layout::at(64, 0) == IGW_HALF_BYTES, "the second half of A starts 64 rows on");
static_assert(igw_core_layout::at(IG_BM - 1, 1) + 16 == IGW_A_BYTES, "an A tile is dense");

template <class Op>
__host__ __device__ constexpr int igw_stage_bytes()
{
    return Op::PARTS * IGW_A_BYTES + IGW_B_BYTES;
}

template <class Op>
__host__ __device__ constexpr int igw_smem_bytes()
{
    return IG_STAGES * igw_stage_bytes<Op>();
}

/* The PTX ISA's shared-memory matrix descriptor (wgmma "Matrix Descriptor Format"): bits
 * 0-13 the start address, 16-29 the leading-dimension byte offset, 32-45 the
 * stride-dimension byte offset, each in units of 16 bytes; base offset 0 and swizzle mode
 * 0 (none) in bits 49-51 and 62-63. */
static __host__ __device__ __forceinline__ uint64_t igw_desc(uint32_t smem_addr)
{
    return (uint64_t)((smem_addr >> 4) & 0x3fff) | (uint64_t)((igw_core_layout::LBO >> 4) & 0x3fff) << 16 |
           (uint64_t)((igw_core_layout::SBO >> 4) & 0x3fff) << 32;
}

#ifndef IG_EMULATION
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define IGW_DEVICE_CODE 1
#endif

static __device__ __forceinline__ uint32_t igw_smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

#if defined(IGW_DEVICE_CODE)
/* The copies this thread made (generic proxy) become visible to wgmma (async proxy). */
static __device__ __forceinline__ void igw_fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* Orders the accumulators' register accesses before the next wgmma. */
static __device__ __forceinline__ void igw_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

static __device__ __forceinline__ void igw_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

template <int N>
static __device__ __forceinline__ void igw_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* d += A B^T for A 64 x 32 and B 64 x 32 (both K-major, s8) in shared memory. */
static __device__ __forceinline__ void igw_mma(int32_t d[IGW_NREG], uint64_t da, uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                 "%32, %33, p;\n}\n"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
                   "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]),
                   "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]),
                   "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]),
                   "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
                 : "l"(da), "l"(db), "r"(1)); /* p = 1: accumulate into d */
}
#endif /* IGW_DEVICE_CODE */
#else
#define IGW_DEVICE_CODE 1 /* the emulation's helpers (tests/test_igemm_emu.cc) */
#endif /* IG_EMULATION */

template <class Op>
__global__ void __launch_bounds__(IG_THREADS) igw_kernel(const Op op)
{
#if defined(IGW_DEVICE_CODE)
    static_assert(Op::A_KMAJOR && Op::B_KMAJOR, "wgmma takes K-major s8 operands only");
    extern __shared__ __align__(128) int8_t ig_smem[];
    constexpr int STAGE = igw_stage_bytes<Op>();
    const int64_t m0 = (int64_t)blockIdx.x * IG_BM, n0 = (int64_t)blockIdx.y * IG_BN;
    const int64_t kbeg = (int64_t)blockIdx.z * op.k_split;
    const int64_t kend = op.K < kbeg + op.k_split ? op.K : kbeg + op.k_split;
    const int ntiles = kend > kbeg ? (int)((kend - kbeg + IG_BK - 1) / IG_BK) : 0;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int32_t acc[Op::PARTS][2][IGW_NREG];
#pragma unroll
    for (int p = 0; p < Op::PARTS; p++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int r = 0; r < IGW_NREG; r++) acc[p][h][r] = 0;

    auto load = [&](int tile, int stage) {
        int8_t *s = ig_smem + stage * STAGE;
        int64_t k0 = kbeg + (int64_t)tile * IG_BK;
#pragma unroll
        for (int p = 0; p < Op::PARTS; p++) op.template load_a<igw_core_layout>(p, s + p * IGW_A_BYTES, m0, k0, kend);
        op.template load_b<igw_core_layout>(s + Op::PARTS * IGW_A_BYTES, n0, k0, kend);
    };
    /* the ring of ig_kernel (igemm.cuh) */
#pragma unroll
    for (int s = 0; s < IG_STAGES - 1; s++) {
        if (s < ntiles) load(s, s);
        ig_cp_async_commit();
    }
    for (int kt = 0; kt < ntiles; kt++) {
        ig_cp_async_wait<IG_STAGES - 2>();
        igw_fence_proxy_async();
        __syncthreads();
        int next = kt + IG_STAGES - 1;
        if (next < ntiles) load(next, next % IG_STAGES);
        ig_cp_async_commit();
        const int8_t *s = ig_smem + (kt % IG_STAGES) * STAGE;
        const uint64_t db = igw_desc(igw_smem_addr(s + Op::PARTS * IGW_A_BYTES));
        igw_fence();
#pragma unroll
        for (int p = 0; p < Op::PARTS; p++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                igw_mma(acc[p][h], igw_desc(igw_smem_addr(s + p * IGW_A_BYTES + h * IGW_HALF_BYTES)), db);
        igw_commit();
        igw_wait<0>(); /* the stage is free for the next step's loads, the accumulators readable */
    }
    ig_cp_async_wait<0>(); /* no copy outlives the block */
    unsigned long long mx = 0;
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int r = 0; r < IGW_NREG; r++) {
            int64_t m = m0 + h * 64 + warp * 16 + g + ((r % 4) >= 2 ? 8 : 0);
            int64_t n = n0 + (r / 4) * 8 + 2 * t + (r & 1);
            unsigned long long v = op.store(m, n, acc[0][h][r], acc[Op::PARTS - 1][h][r]);
            mx = v > mx ? v : mx;
        }
    mx = ig_warp_max(mx);
    if (lane == 0) op.finish(mx);
#else
    (void)op;
    __trap(); /* no sm_90a code in this build for this device: igw_available() said no */
#endif
}

#endif
