/* test_igemm_emu.cc: the implicit-GEMM convolution kernel (cuda/igemm.cuh) and its three
 * ops (cuda/conv_igemm_ops.cuh), compiled as host C++ and run on the CPU under an
 * emulation of its eight helpers (warp-level instructions, paired stores), against the CPU backend's convolutions, bit
 * for bit. Where no GPU is, this is what checks the kernel's tiling, its shared-memory
 * layouts, the fragments it builds, its ring of stages and its epilogues.
 *
 * The emulation: each of a block's 128 threads is a fiber (ucontext), run until it waits
 * at a barrier; __syncthreads releases a block whose threads all wait there.
 * - cp.async: each copy is queued with its group and made only at the cp.async.wait_group
 *   that covers it, so a kernel that reads a stage before waiting for it, or overwrites
 *   one still being read, reads stale bytes and fails.
 * - mma.sync.m16n8k32: every lane hands in its registers; when the 32 lanes of a warp
 *   are there, the matrices are rebuilt from the registers by the PTX ISA's fragment
 *   layout for .s8 (written here independently of the kernel's loads: A row g for a0
 *   and a2, g + 8 for a1 and a3, columns 4t.. and 16 + 4t..; B column g, rows 4t.. and
 *   16 + 4t..; C rows g and g + 8, columns 2t, 2t + 1; g = lane / 4, t = lane % 4),
 *   multiplied in int64 (an int32 overflow would fail), and handed back.
 * - ldmatrix.x4: the same meeting; each lane's 4 registers are taken from the rows the
 *   lanes named, by the ISA's distribution (lane l: row l / 4 of each matrix, bytes
 *   4 (l % 4) on), written here independently of the kernel's fragment layout;
 * - the warp maximum of the epilogue: the same meeting of the 32 lanes.
 * A warp whose lanes meet at different instructions is reported as divergence.
 *
 * The wgmma kernel (cuda/igemm_wgmma.cuh) runs under the same fibers, with its
 * helpers emulated too (the compiler-only operand fence is nothing here):
 * - wgmma.mma_async.m64nNk32 .s8 (N 64, 128): each thread computes its own N / 2 sums from
 *   shared memory as the PTX ISA's descriptor says (start address, leading- and
 *   stride-dimension byte offsets, 16-byte units; no swizzling: element (row, k) at
 *   start + (row / 8) SBO + (k / 16) LBO + (row % 8) 16 + k % 16; written here from the
 *   ISA's text, not from the kernel's layout; or the 32-byte swizzle, below) and the
 *   accumulator layout (warp w: rows
 *   16w + g and + 8; register 4i + r: column 8i + 2t + (r & 1)). The sums are added to
 *   the registers only at the wgmma.wait_group that retires them, so a kernel reading
 *   its accumulators early fails;
 * - cp.async.bulk.tensor (B by the tensor map) and the mbarriers: a copy lands only at
 *   the first wait on its barrier's phase, as the tensor map says (zeros outside the
 *   matrix) in the 32-byte swizzle; a wait on a phase whose expected bytes are not all
 *   on the way, an uninitialized barrier, a second arrival in a phase fail;
 * - a wgmma that reads bytes with a copy (either kind) still in flight to them, when it
 *   is issued or until it is retired, fails (reading before the copy landed, or a stage
 *   reloaded under it); so does one issued while any thread's landed cp.async copies
 *   have not passed fence.proxy.async (the generic proxy's writes unseen by wgmma's).
 *
 * What it cannot check: the hardware's own timing and the PTX syntax (ptxas checks that
 * at build time); scripts/gpu-check.sh runs the kernels on a GPU. */
#define IG_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __align__(x)
#define __shared__
#define __grid_constant__

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <vector>

extern "C" {
#include <cmocka.h>
}

#include "backend.h"
#include "conv.h"
#include "tensor.h"

struct emu_dim3 {
    unsigned x, y, z;
};
static emu_dim3 threadIdx, blockIdx, gridDim, blockDim;
alignas(1024) int8_t ig_smem[64 * 1024];

static void __syncthreads();
static unsigned long long atomicMax(unsigned long long *p, unsigned long long v)
{
    unsigned long long o = *p;
    *p = v > o ? v : o;
    return o;
}
static unsigned long long atomicAdd(unsigned long long *p, unsigned long long v)
{
    unsigned long long o = *p;
    *p = o + v;
    return o;
}

/* ---- fibers ---- */

enum fiber_state { RUNNABLE, WAIT_BLOCK, WAIT_MMA, WAIT_MAX, WAIT_LDSM, DONE };

struct pending_copy {
    int8_t *dst;
    const int8_t *src; /* NULL: zeros */
    int group;
};

struct pending_wgmma {
    int32_t *d;
    int n;           /* accumulators: N / 2 */
    int64_t sum[64];
    uint32_t a_lo, a_hi, b_lo, b_hi; /* the shared bytes it reads: [lo, hi) */
    int group;
};

struct fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    fiber_state state;
    std::vector<pending_copy> copies;
    int open_group, groups; /* the group copies join now; groups committed so far */
    uint32_t a[4], b[2];
    int32_t *c;
    const int8_t *ldsm_row; /* this lane's row address for ldmatrix, and where its result goes */
    uint32_t *ldsm_out;
    unsigned long long max_in, max_out;
    bool unfenced;                      /* copies landed since this thread's fence.proxy.async */
    std::vector<struct pending_wgmma> wgmma;
    int wgmma_groups;                   /* wgmma groups committed so far */
};

enum { EMU_THREADS = 128, EMU_STACK = 256 * 1024 };
static fiber fibers[EMU_THREADS];
static fiber *cur;
static ucontext_t sched_ctx;
static std::function<void()> body;

static void yield_as(fiber_state st)
{
    cur->state = st;
    swapcontext(&cur->ctx, &sched_ctx);
}

static void __syncthreads() { yield_as(WAIT_BLOCK); }

static void trampoline()
{
    body();
    cur->state = DONE; /* uc_link returns to the scheduler */
}

/* ---- the eight helpers of igemm.cuh ---- */

static inline void ig_cp_async16(int8_t *dst, const int8_t *src, bool valid)
{
    cur->copies.push_back({dst, valid ? src : NULL, cur->groups});
}

static inline void ig_cp_async_commit() { cur->groups++; }

/* Make the copies of every group but the newest N. */
template <int N>
static inline void ig_cp_async_wait()
{
    std::vector<pending_copy> keep;
    for (const pending_copy &p : cur->copies) {
        if (p.group < cur->groups - N) {
            if (p.src) memcpy(p.dst, p.src, 16);
            else memset(p.dst, 0, 16);
            cur->unfenced = true;
        } else {
            keep.push_back(p);
        }
    }
    cur->copies.swap(keep);
}

static inline void ig_mma(int32_t c[4], const uint32_t a[4], const uint32_t b[2])
{
    memcpy(cur->a, a, sizeof(cur->a));
    memcpy(cur->b, b, sizeof(cur->b));
    cur->c = c;
    yield_as(WAIT_MMA);
}

static inline void ig_ldsm_x4(uint32_t r[4], const int8_t *row)
{
    cur->ldsm_row = row;
    cur->ldsm_out = r;
    yield_as(WAIT_LDSM);
}

static inline void ig_store_pair32(int32_t *p, int32_t a, int32_t b)
{
    if ((uintptr_t)p % 8 != 0) fail_msg("a pair of int32 stored at a misaligned address");
    p[0] = a, p[1] = b;
}
static inline void ig_store_pair64(int64_t *p, int64_t a, int64_t b)
{
    if ((uintptr_t)p % 16 != 0) fail_msg("a pair of int64 stored at a misaligned address");
    p[0] = a, p[1] = b;
}

static inline unsigned long long ig_warp_max(unsigned long long m)
{
    cur->max_in = m;
    yield_as(WAIT_MAX);
    return cur->max_out;
}

#include "conv_igemm_ops.cuh"

/* ---- the helpers of igemm_wgmma.cuh ---- */

static inline uint32_t igw_smem_addr(const void *p) { return (uint32_t)((const int8_t *)p - ig_smem); }
static inline void igw_fence_proxy_async() { cur->unfenced = false; }
static inline void igw_fence() {}
template <int R>
static inline void igw_fence_operands(int32_t (&)[R])
{
}
static inline void igw_commit() { cur->wgmma_groups++; }

/* The 32-byte swizzle of the tensor map and of descriptor mode 3: in a tile of 32-byte
 * rows starting on a 256-byte atom, the two 16-byte halves of a row swap where bit 7 of
 * the offset is set (rows 4..7 of each 8), i.e. offset bit 4 ^= bit 7. The hardware's
 * copy engine and tensor cores share whatever pattern it is; the emulation needs only
 * that its writer and its reader share this one. */
static uint32_t swizzle32(uint32_t off) { return off ^ (((off >> 7) & 1) << 4); }

/* B's tensor map: a [rows][k] int8 matrix, boxes of 32 x box_rows. */
struct igw_tmap {
    const int8_t *base;
    int64_t rows, k;
    int box_rows;
};

/* A tensor copy in flight: lands at the first wait on its barrier's phase. */
struct pending_tma {
    int8_t *dst;
    const igw_tmap *map;
    int k0, n0;
};

/* An mbarrier: phases completed, the bytes its current phase expects, its copies. */
struct emu_mbar {
    int completed, expected;
    bool armed;
    std::vector<pending_tma> copies;
};
static std::vector<std::pair<uint64_t *, emu_mbar>> mbars;

static emu_mbar &mbar_of(uint64_t *bar)
{
    for (auto &b : mbars)
        if (b.first == bar) return b.second;
    fail_msg("an mbarrier used before mbarrier.init");
    abort();
}

static void igw_mbar_init(uint64_t *bar)
{
    for (auto &b : mbars)
        if (b.first == bar) fail_msg("an mbarrier initialized twice");
    mbars.push_back({bar, emu_mbar{0, 0, false, {}}});
}

static void igw_mbar_expect(uint64_t *bar, uint32_t bytes)
{
    emu_mbar &b = mbar_of(bar);
    if (b.armed) fail_msg("mbarrier.arrive.expect_tx twice in one phase (one arrival expected)");
    b.armed = true;
    b.expected = (int)bytes;
}

static void igw_tma_load(int8_t *dst, const igw_tmap *map, int k0, int n0, uint64_t *bar)
{
    emu_mbar &b = mbar_of(bar);
    if (!b.armed) fail_msg("a tensor copy on an mbarrier that expects no bytes");
    if ((uint32_t)(dst - ig_smem) % 256 != 0) fail_msg("a swizzled tensor copy to a tile off its 256-byte atom");
    b.copies.push_back({dst, map, k0, n0});
}

/* Land a tensor copy: element (r, k) of the box, zero outside the matrix, at
 * swizzle32(r * 32 + k). */
static void land(const pending_tma &c)
{
    for (int r = 0; r < c.map->box_rows; r++)
        for (int k = 0; k < 32; k++) {
            int64_t gr = c.n0 + r, gk = c.k0 + k;
            int8_t v = gr < c.map->rows && gk < c.map->k ? c.map->base[gr * c.map->k + gk] : 0;
            c.dst[swizzle32((uint32_t)(r * 32 + k))] = v;
        }
}

/* try_wait.parity succeeds once the phase of that parity has completed: the current
 * phase (number `completed`) has the other parity. Waiting on the current phase lands
 * its copies and completes it, if they are all its bytes; else nothing ever would. */
static void igw_mbar_wait(uint64_t *bar, uint32_t parity)
{
    emu_mbar &b = mbar_of(bar);
    if ((uint32_t)(b.completed & 1) != parity) return;
    int bytes = 0;
    for (const pending_tma &c : b.copies) bytes += 32 * c.map->box_rows;
    if (!b.armed || bytes != b.expected)
        fail_msg("a wait on an mbarrier phase that will not complete (%d bytes of %d expected on the way)", bytes,
                 b.expected);
    for (const pending_tma &c : b.copies) land(c);
    b.copies.clear();
    b.armed = false;
    b.completed++;
}

/* The bytes [lo, hi) of shared memory that an operand of `rows` rows x 32 bytes at
 * desc reads, and the place of its element (row, k): without swizzling (mode 0) at
 * start + (row / 8) SBO + (k / 16) LBO + (row % 8) 16 + k % 16, the core matrices; with
 * the 32-byte swizzle (mode 3) at start + (row / 8) SBO + swizzle32((row % 8) 32 + k). */
struct desc_view {
    uint32_t start, lbo, sbo, mode;
    int rows;
    desc_view(uint64_t d, int r) : rows(r)
    {
        mode = (uint32_t)(d >> 62);
        if ((mode != 0 && mode != 3) || ((d >> 49) & 7) != 0)
            fail_msg("a descriptor with a swizzle other than none or 32 bytes, or a base offset");
        start = (uint32_t)(d & 0x3fff) << 4;
        lbo = (uint32_t)((d >> 16) & 0x3fff) << 4;
        sbo = (uint32_t)((d >> 32) & 0x3fff) << 4;
        if (mode == 3 && start % 256 != 0) fail_msg("a swizzled operand off its 256-byte atom");
    }
    uint32_t at(int row, int k) const
    {
        if (mode == 3) return start + (row / 8) * sbo + swizzle32((uint32_t)((row % 8) * 32 + k));
        return start + (row / 8) * sbo + (k / 16) * lbo + (row % 8) * 16 + k % 16;
    }
    uint32_t lo() const { return start; }
    uint32_t hi() const { return mode == 3 ? start + (rows / 8 - 1) * sbo + 256 : at(rows - 1, 31) + 1; }
};

/* Whether any thread has a copy in flight into [lo, hi), cp.async or tensor. */
static bool copy_in_flight(uint32_t lo, uint32_t hi)
{
    for (const fiber &f : fibers)
        for (const pending_copy &p : f.copies) {
            uint32_t a = (uint32_t)(p.dst - ig_smem);
            if (a < hi && a + 16 > lo) return true;
        }
    for (const auto &b : mbars)
        for (const pending_tma &c : b.second.copies) {
            uint32_t a = (uint32_t)(c.dst - ig_smem);
            if (a < hi && a + 32 * (uint32_t)c.map->box_rows > lo) return true;
        }
    return false;
}

static void check_operands(const pending_wgmma &w, const char *when)
{
    if (copy_in_flight(w.a_lo, w.a_hi) || copy_in_flight(w.b_lo, w.b_hi))
        fail_msg("a copy is in flight to the shared memory a wgmma reads, %s", when);
}

template <int N>
static void igw_mma(int32_t d[N / 2], uint64_t da, uint64_t db)
{
    static_assert(N == 64 || N == 128, "the shapes the kernel uses");
    for (const fiber &f : fibers)
        if (f.unfenced) fail_msg("a wgmma issued while copies that landed have not passed fence.proxy.async");
    desc_view A(da, 64), B(db, N);
    pending_wgmma w = {d, N / 2, {0}, A.lo(), A.hi(), B.lo(), B.hi(), cur->wgmma_groups};
    check_operands(w, "when it is issued");
    int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int r = 0; r < N / 2; r++) {
        int row = 16 * warp + g + (r % 4 >= 2 ? 8 : 0), col = 8 * (r / 4) + 2 * t + (r & 1);
        for (int k = 0; k < 32; k++) w.sum[r] += (int64_t)ig_smem[A.at(row, k)] * ig_smem[B.at(col, k)];
    }
    cur->wgmma.push_back(w);
}

/* Retire every wgmma group but the newest N: add their sums to the registers. */
template <int N>
static void igw_wait()
{
    std::vector<pending_wgmma> keep;
    for (const pending_wgmma &w : cur->wgmma) {
        if (w.group >= cur->wgmma_groups - N) {
            keep.push_back(w);
            continue;
        }
        check_operands(w, "before it is retired");
        for (int r = 0; r < w.n; r++) {
            int64_t v = (int64_t)w.d[r] + w.sum[r];
            if (v > INT32_MAX || v < INT32_MIN) fail_msg("an int32 accumulator overflowed");
            w.d[r] = (int32_t)v;
        }
    }
    cur->wgmma.swap(keep);
}

#include "igemm_wgmma.cuh"

/* byte e of register r */
static int8_t reg_byte(uint32_t r, int e) { return (int8_t)(uint8_t)(r >> (8 * e)); }

/* One m16n8k32 product of warp w from its lanes' registers (the PTX ISA's layout). */
static void resolve_mma(int w)
{
    int8_t A[16][32], B[32][8];
    int64_t C[16][8];
    for (int l = 0; l < 32; l++) {
        fiber &f = fibers[w * 32 + l];
        int g = l / 4, t = l % 4;
        for (int e = 0; e < 4; e++) {
            A[g][4 * t + e] = reg_byte(f.a[0], e);
            A[g + 8][4 * t + e] = reg_byte(f.a[1], e);
            A[g][16 + 4 * t + e] = reg_byte(f.a[2], e);
            A[g + 8][16 + 4 * t + e] = reg_byte(f.a[3], e);
            B[4 * t + e][g] = reg_byte(f.b[0], e);
            B[16 + 4 * t + e][g] = reg_byte(f.b[1], e);
        }
        C[g][2 * t] = f.c[0], C[g][2 * t + 1] = f.c[1], C[g + 8][2 * t] = f.c[2], C[g + 8][2 * t + 1] = f.c[3];
    }
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++) {
            for (int k = 0; k < 32; k++) C[i][j] += (int64_t)A[i][k] * B[k][j];
            if (C[i][j] > INT32_MAX || C[i][j] < INT32_MIN) fail_msg("an int32 accumulator overflowed");
        }
    for (int l = 0; l < 32; l++) {
        fiber &f = fibers[w * 32 + l];
        int g = l / 4, t = l % 4;
        f.c[0] = (int32_t)C[g][2 * t], f.c[1] = (int32_t)C[g][2 * t + 1];
        f.c[2] = (int32_t)C[g + 8][2 * t], f.c[3] = (int32_t)C[g + 8][2 * t + 1];
    }
}

/* One ldmatrix.x4 of warp w (PTX ISA): lanes 8i .. 8i + 7 name matrix i's rows (16
 * bytes each, in shared memory, 16-byte aligned); lane l gets in register i the bytes
 * 4 (l % 4) .. + 3 of matrix i's row l / 4. */
static void resolve_ldsm(int w)
{
    uint32_t out[32][4];
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 4; i++) {
            const int8_t *row = fibers[w * 32 + 8 * i + l / 4].ldsm_row;
            if (row < ig_smem || row + 16 > ig_smem + sizeof(ig_smem) || (row - ig_smem) % 16 != 0)
                fail_msg("ldmatrix: a row address outside shared memory or not 16-byte aligned");
            memcpy(&out[l][i], row + 4 * (l % 4), 4);
        }
    for (int l = 0; l < 32; l++) memcpy(fibers[w * 32 + l].ldsm_out, out[l], sizeof(out[l]));
}

/* Run one block: fibers until every thread is done, releasing the barriers. */
static void run_block(const std::function<void()> &kernel)
{
    body = kernel;
    mbars.clear();
    for (int t = 0; t < EMU_THREADS; t++) {
        fiber &f = fibers[t];
        f.stack.resize(EMU_STACK);
        f.copies.clear();
        f.groups = 0;
        f.unfenced = false;
        f.wgmma.clear();
        f.wgmma_groups = 0;
        f.state = RUNNABLE;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &sched_ctx;
        makecontext(&f.ctx, trampoline, 0);
    }
    for (;;) {
        for (int t = 0; t < EMU_THREADS; t++)
            if (fibers[t].state == RUNNABLE) {
                cur = &fibers[t];
                threadIdx = {(unsigned)t, 0, 0};
                swapcontext(&sched_ctx, &fibers[t].ctx);
            }
        int done = 0, at_block = 0;
        bool released = false;
        for (int w = 0; w < EMU_THREADS / 32; w++) {
            fiber_state s0 = fibers[w * 32].state;
            for (int l = 1; l < 32; l++)
                if (fibers[w * 32 + l].state != s0) fail_msg("warp %d diverged (lanes at different instructions)", w);
            if (s0 == WAIT_MMA) resolve_mma(w);
            if (s0 == WAIT_LDSM) resolve_ldsm(w);
            if (s0 == WAIT_MAX) {
                unsigned long long m = 0;
                for (int l = 0; l < 32; l++) m = fibers[w * 32 + l].max_in > m ? fibers[w * 32 + l].max_in : m;
                for (int l = 0; l < 32; l++) fibers[w * 32 + l].max_out = m;
            }
            if (s0 == WAIT_MMA || s0 == WAIT_MAX || s0 == WAIT_LDSM) {
                for (int l = 0; l < 32; l++) fibers[w * 32 + l].state = RUNNABLE;
                released = true;
            }
            done += s0 == DONE ? 32 : 0;
            at_block += s0 == WAIT_BLOCK ? 32 : 0;
        }
        if (done == EMU_THREADS) {
            for (const fiber &f : fibers)
                if (!f.wgmma.empty()) fail_msg("a wgmma still in flight when its thread ended");
            for (const auto &b : mbars)
                if (!b.second.copies.empty()) fail_msg("a tensor copy still in flight when the block ended");
            return;
        }
        if (at_block == EMU_THREADS) {
            for (int t = 0; t < EMU_THREADS; t++) fibers[t].state = RUNNABLE;
            released = true;
        }
        if (!released) fail_msg("deadlock: %d threads at the barrier, %d done", at_block, done);
    }
}

/* Every block of an op's grid, one after the other, on ig_kernel or (wgmma) igw_kernel. */
template <class Op>
static void run_grid(const Op &op, bool wgmma = false)
{
    int bn = IG_BN;
    if constexpr (Op::A_KMAJOR && Op::B_KMAJOR) bn = wgmma ? igw_bn<Op>() : IG_BN;
    gridDim = {(unsigned)((op.M + IG_BM - 1) / IG_BM), (unsigned)((op.N + bn - 1) / bn),
               (unsigned)((op.K + op.k_split - 1) / op.k_split)};
    blockDim = {IG_THREADS, 1, 1};
    static_assert(IG_THREADS == EMU_THREADS, "one fiber per thread");
    assert_true(ig_smem_bytes<Op>() <= (int)sizeof(ig_smem));
    assert_true(igw_smem_bytes<Op>() <= (int)sizeof(ig_smem));
    for (unsigned z = 0; z < gridDim.z; z++)
        for (unsigned y = 0; y < gridDim.y; y++)
            for (unsigned x = 0; x < gridDim.x; x++) {
                blockIdx = {x, y, z};
                if constexpr (Op::A_KMAJOR && Op::B_KMAJOR) {
                    if (wgmma) {
                        igw_tmap bmap = {op.b(), op.N, op.K, igw_bn<Op>()};
                        run_block([&] { igw_kernel<Op>(op, bmap); });
                        continue;
                    }
                }
                run_block([&] { ig_kernel<Op>(op); });
            }
}

/* ---- the test ---- */

static uint64_t rng_state = 0x5eed;
static int8_t rand_s8()
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (int8_t)((int)((rng_state >> 33) % 255) - 127);
}

static wg_tensor make(wg_backend *b, wg_dtype t, wg_layout lay, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int e,
                      bool fill)
{
    wg_tensor x;
    const int64_t shape[4] = {d0, d1, d2, d3};
    assert_true(wg_tensor_init(&x, b, t, lay, 4, shape, e));
    if (fill)
        for (int64_t i = 0; i < wg_tensor_numel(&x); i++) ((int8_t *)x.data)[i] = rand_s8();
    return x;
}

static void expect_equal_i64(const void *got, wg_dtype tg, const wg_tensor *want, const char *what)
{
    for (int64_t i = 0; i < wg_tensor_numel(want); i++) {
        int64_t a = wg_load_i64(got, tg, i), b = wg_load_i64(want->data, want->dtype, i);
        if (a != b) fail_msg("%s: element %lld: kernel %lld, CPU %lld", what, (long long)i, (long long)a, (long long)b);
    }
}

static void check_geometry(wg_backend *cpu, const int64_t q[9], int nparts)
{
    wg_conv_geom g;
    assert_true(wg_conv_geom_init(&g, q[0], q[1], q[2], q[3], q[4], q[5], q[6], (int)q[7], (int)q[8]));
    wg_tensor x = make(cpu, WG_I8, WG_LAYOUT_NHWC, g.n, g.h, g.w, g.c, -4, true);
    wg_tensor w = make(cpu, WG_I8, WG_LAYOUT_OHWI, g.o, g.kh, g.kw, g.c, -7, true);
    wg_tensor y = make(cpu, WG_I32, WG_LAYOUT_NHWC, g.n, g.oh, g.ow, g.o, 0, false);
    wg_tensor e[2] = {make(cpu, WG_I8, WG_LAYOUT_NHWC, g.n, g.oh, g.ow, g.o, -20, true),
                      make(cpu, WG_I8, WG_LAYOUT_NHWC, g.n, g.oh, g.ow, g.o, -13, true)};
    wg_tensor dx = make(cpu, WG_I64, WG_LAYOUT_NHWC, g.n, g.h, g.w, g.c, 0, false);
    wg_tensor dw = make(cpu, WG_I64, WG_LAYOUT_OHWI, g.o, g.kh, g.kw, g.c, 0, false);
    wg_conv_ws ws = {0};
    const wg_tensor *parts[2] = {&e[0], &e[1]};
    wg_conv_s8_forward(&g, &x, &w, &y, &ws);
    wg_conv_s8_backward(&g, &x, &w, parts, nparts, &dx, &dw, &ws);
    const int8_t *xd = (const int8_t *)x.data, *wd = (const int8_t *)w.data;
    const int8_t *ed[2] = {(const int8_t *)e[0].data, (const int8_t *)e[1].data};
    int shift[2] = {0, 7}; /* e_min = -20: part 1 sits 7 grids up */
    uint64_t ymax_want = 0, dmax_want = 0;
    for (int64_t i = 0; i < wg_tensor_numel(&y); i++) ymax_want = std::max(ymax_want, wg_abs_u64(((int32_t *)y.data)[i]));
    for (int64_t i = 0; i < wg_tensor_numel(&dx); i++)
        dmax_want = std::max(dmax_want, wg_abs_u64(((int64_t *)dx.data)[i]));

    for (int wgmma = 0; wgmma <= 1; wgmma++) {
        const char *kname = wgmma ? "wgmma" : "mma.sync";
        /* y one element into its buffer, with the mma.sync kernel: no pair is aligned, so
         * the epilogue's element-by-element stores are checked too */
        std::vector<int32_t> kybuf((size_t)wg_tensor_numel(&y) + 1, INT32_MIN);
        int32_t *ky = kybuf.data() + (wgmma ? 0 : 1);
        unsigned long long kmax = 0;
        ig_fwd_op fop = {g, g.rows, g.o, g.kdim, g.kdim, xd, wd, ky, &kmax};
        run_grid(fop, wgmma);
        expect_equal_i64(ky, WG_I32, &y, wgmma ? "forward y (wgmma)" : "forward y (mma.sync, misaligned)");
        if (kmax != ymax_want) fail_msg("%s forward: max |y| %llu, want %llu", kname, kmax, (unsigned long long)ymax_want);

        std::vector<int8_t> wt((size_t)(g.o * g.kdim));
        for (int64_t t = 0; t < g.o * g.kdim; t++) wt[(size_t)t] = wd[wg_igemm_wt_source(&g, t)];
        std::vector<int64_t> kdx((size_t)wg_tensor_numel(&dx), INT64_MIN);
        int64_t M = g.n * g.h * g.w, K = g.kh * g.kw * g.o;
        kmax = 0;
        if (nparts == 1) {
            ig_bwd_data_op<1> op = {g, M, g.c, K, K, {ed[0], ed[0]}, wt.data(), {0, 0}, kdx.data(), WG_I64, &kmax};
            run_grid(op, wgmma);
        } else {
            ig_bwd_data_op<2> op = {g, M, g.c, K, K, {ed[0], ed[1]}, wt.data(), {shift[0], shift[1]}, kdx.data(),
                                    WG_I64, &kmax};
            run_grid(op, wgmma);
        }
        expect_equal_i64(kdx.data(), WG_I64, &dx, wgmma ? "backward-data dx (wgmma)" : "backward-data dx (mma.sync)");
        if (nparts == 1) { /* one part's sums fit int32: dx as int32, paired stores of 8 bytes */
            std::vector<int32_t> kdx32((size_t)wg_tensor_numel(&dx), INT32_MIN);
            ig_bwd_data_op<1> op = {g, M, g.c, K, K, {ed[0], ed[0]}, wt.data(), {0, 0}, kdx32.data(), WG_I32, &kmax};
            run_grid(op, wgmma);
            expect_equal_i64(kdx32.data(), WG_I32, &dx, "backward-data dx as int32");
        }
        if (kmax != dmax_want)
            fail_msg("%s backward-data: max |dx| %llu, want %llu", kname, kmax, (unsigned long long)dmax_want);
    }

    std::vector<int64_t> kdw((size_t)wg_tensor_numel(&dw), 0);
    int64_t split = ig_dw_split(&g);
    if (nparts == 1) {
        ig_bwd_weight_op<1> op = {g, g.o, g.kdim, g.rows, split, {ed[0], ed[0]}, xd, {0, 0}, kdw.data()};
        run_grid(op);
    } else {
        ig_bwd_weight_op<2> op = {g, g.o, g.kdim, g.rows, split, {ed[0], ed[1]}, xd, {shift[0], shift[1]}, kdw.data()};
        run_grid(op);
    }
    expect_equal_i64(kdw.data(), WG_I64, &dw, "backward-weight dw");
    print_message("n %lld %lldx%lld c %lld o %lld k %lldx%lld s %d p %d, %d part%s: forward and backward-data "
                  "(mma.sync and wgmma) and backward-weight (split %lld) equal the CPU's\n",
                  (long long)g.n, (long long)g.h, (long long)g.w, (long long)g.c, (long long)g.o, (long long)g.kh,
                  (long long)g.kw, g.stride, g.pad, nparts, nparts > 1 ? "s" : "", (long long)split);
    wg_conv_ws_free(&ws);
    wg_tensor *ts[] = {&x, &w, &y, &e[0], &e[1], &dx, &dw};
    for (wg_tensor *t : ts) wg_tensor_free(t);
}

/* Several tiles along M and N with ragged edges (the wgmma kernel's 128 columns
 * included: 144 input channels for a one-part backward-data, 272 output channels), K
 * tails, long K rings (40 steps), strides 1 and 2, 1x1, 3x3 and 7x7 kernels, and a
 * backward-weight split over several blocks. */
static void test_igemm_emulated(void **state)
{
    (void)state;
    static const int64_t geoms[][9] = {{2, 9, 11, 16, 16, 3, 3, 1, 1},  {3, 12, 12, 32, 80, 3, 3, 2, 1},
                                       {1, 13, 13, 16, 144, 7, 7, 2, 3}, {4, 8, 8, 64, 32, 1, 1, 1, 0},
                                       {2, 10, 10, 48, 16, 1, 1, 2, 0},  {9, 20, 20, 16, 16, 3, 3, 1, 1},
                                       {2, 6, 7, 144, 32, 3, 3, 1, 1},   {1, 9, 9, 32, 272, 3, 3, 1, 1}};
    wg_backend *cpu = wg_backend_cpu_init();
    for (size_t k = 0; k < sizeof(geoms) / sizeof(geoms[0]); k++) check_geometry(cpu, geoms[k], 1 + (int)(k % 2));
    wg_backend_free(cpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_igemm_emulated)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
