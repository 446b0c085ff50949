/* gemm_amx.c: the int8 kernel set of gemm_impl.h on Intel AMX (the tile unit of Sapphire
 * Rapids and later Xeons), with the VNNI set's packing and, for shapes the tiles do not
 * fit, the VNNI set's products (such processors run both).
 *
 * tdpbssd multiplies signed bytes by signed bytes, four adjacent pairs summed into each
 * int32 of a 16 x 16 tile of C, from a 16-row x 64-byte tile of A (16 rows, 64 k) and a
 * 16 x 64-byte tile of B packed four k per column ([16 groups of four k][16 columns][4]).
 * Signed x signed is exact as it stands: no bias, no correction. The products fit in 16
 * bits and the sums are modulo 2^32 (no saturation), so the result is the _ref's: the
 * exact int32 within gemm.h's bound on K, and the same value modulo 2^32 beyond it.
 *
 * Layout: every tile is 16 rows x 64 bytes (one configuration for all). B is packed
 * once per product, zero padded to K rounded up to 64 and N to 16:
 *   packed B: [kp / 4][np][4], kp = K rounded up to 64, np = N rounded up to an odd
 *   number of 16s (packed_columns),
 * so a B tile is 16 groups at stride 4 np, and A is read in place: a tile of A is 16 of
 * its rows at stride lda, 64 bytes each. Past K a row of A meets zeros of B, so what it
 * holds there does not matter, as long as it can be read: a block of rows whose tiles
 * would read past the last row's K bytes (the last block, typically) and a block of
 * fewer than 32 rows are copied into a zero-padded buffer first, and their C goes
 * through a buffer too (as do the columns past the last whole 16 of N).
 *
 * Register blocking: 2 x 2 tiles of C (32 rows x 32 columns) take tmm0..3, two tiles of
 * A tmm4..5 and two of B tmm6..7: each tile loaded serves two products. A last single
 * column of tiles uses 2 x 1. Threads: nt and nn split the rows of C within panels of
 * columns (B packed once, shared); tn splits K into partial products; tn_gather runs on
 * the calling thread. Each thread loads the tile configuration and releases the tiles
 * when done. Backward-weight (tn, tn_gather) is described at its code below.
 *
 * The kernel lets a process use the tile data only after it asks (arch_prctl
 * ARCH_REQ_XCOMP_PERM): wg_gemm_amx_available asks, once, and says whether it was granted
 * and the processor has AMX-INT8. */
#define _GNU_SOURCE /* syscall */
#include "gemm_impl.h"

#if WG_GEMM_X86

#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

#ifdef _OPENMP
#include <omp.h>
#endif

enum {
    TILE_K = 64,   /* bytes of k per tile of A, 16 groups of four in a tile of B */
    BLOCK_M = 32,  /* rows of C per register block (two tiles) */
    BLOCK_N = 32,  /* columns of C per register block */
    KC_STEPS = 8,  /* tiles of k per chunk: 32 rows x 512 bytes of A stay in L1 */
    ROWS_PER_TASK = 64, /* rows of C per unit of work for the threads (a multiple of BLOCK_M) */
    PANEL_BYTES = 1024 * 1024, /* packed B per panel of columns: stays in L2 with the task's A */
    STREAM_C_BYTES = 4 << 20, /* a C written once from this size on goes around the caches (nt, */
    STREAM_MAX_K = 32         /* and nn_overwrite up to this K: beyond, its work outweighs C's traffic) */
};

/* ---- may this process use AMX? ------------------------------------------------------- */

#define WG_ARCH_REQ_XCOMP_PERM 0x1023 /* linux/arch/x86/include/uapi/asm/prctl.h */
#define WG_XFEATURE_XTILEDATA 18

static bool g_amx_ok;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

static void probe_amx(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    bool tile = d & (1u << 24), int8 = d & (1u << 25), osxsave;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    osxsave = c & (1u << 27);
    if (!tile || !int8 || !osxsave) return;
    uint32_t lo, hi; /* XCR0: the operating system saves the tile state (bits 17, 18) */
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return;
    g_amx_ok = syscall(SYS_arch_prctl, WG_ARCH_REQ_XCOMP_PERM, WG_XFEATURE_XTILEDATA) == 0;
}

bool wg_gemm_amx_available(void)
{
    WG_ASSERT(pthread_once(&g_amx_once, probe_amx) == 0, "pthread_once failed");
    return g_amx_ok;
}

/* ---- tiles --------------------------------------------------------------------------- */

typedef struct __attribute__((packed, aligned(64))) tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Tiles of C (tmm0..3) 16 rows x 64 bytes; of A (tmm4, 5) 16 rows x tk bytes of k and of
 * B (tmm6, 7) tk / 4 groups of 64 bytes (tk a multiple of 4, at most 64). */
static void load_tile_config_k(int tk)
{
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    cfg.colsb[4] = cfg.colsb[5] = (uint16_t)tk;
    cfg.rows[6] = cfg.rows[7] = (uint8_t)(tk / 4);
    /* in assembly with a memory operand: gcc does not see that _tile_loadconfig reads the
     * configuration, and may drop the stores that fill it */
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

/* All eight tiles 16 rows x 64 bytes. */
static void load_tile_config(void) { load_tile_config_k(TILE_K); }

/* What a register block works on: A at its first row (lda apart), packed B at its first
 * column (bs bytes between groups), ksteps tiles of 64 k, C at its first row and column
 * (ldcb bytes apart), added to (acc) or overwritten. */
typedef struct block_args {
    const int8_t *a;
    int64_t lda;
    const int8_t *b;
    int64_t bs, ksteps;
    int32_t *c;
    int64_t ldcb;
    bool acc;
} block_args;

/* One step of k for rt (1, 2) x ct (1, 2) tiles of C: A's tiles at a (rows 0-15) and
 * a + a16 (rows 16-31), lda apart; B's at b (columns 0-15) and b + 64 (16-31), bs apart.
 * C tmm0 (rows 0-15, columns 0-15), tmm1 (0-15, 16-31), tmm2 (16-31, 0-15), tmm3 (16-31,
 * 16-31); A tmm4, tmm5; B tmm6, tmm7. Tile numbers are part of the instructions:
 * literals. Each load is followed by the products it allows, so that loads and products
 * overlap. */
static inline __attribute__((always_inline)) void tile_step(const int8_t *a, int64_t lda, int64_t a16,
                                                            const int8_t *b, int64_t bs, int rt, int ct)
{
    _tile_loadd(4, a, lda);
    _tile_loadd(6, b, bs);
    _tile_dpbssd(0, 4, 6);
    if (ct > 1) {
        _tile_loadd(7, b + 64, bs);
        _tile_dpbssd(1, 4, 7);
    }
    if (rt > 1) {
        _tile_loadd(5, a + a16, lda);
        _tile_dpbssd(2, 5, 6);
        if (ct > 1) _tile_dpbssd(3, 5, 7);
    }
}

/* 32 rows x 16 ct columns of C (ct 1 or 2, a constant in each inlined copy: tile
 * numbers must be literals) from A's rows and packed B (block_args); C in tmm0 and tmm2,
 * and tmm1 and tmm3 for the second 16 columns. */
static inline __attribute__((always_inline)) void block_2(const block_args *g, int ct)
{
    int32_t *c0 = g->c, *c2 = (int32_t *)((char *)g->c + 16 * g->ldcb);
    if (g->acc) {
        _tile_loadd(0, c0, g->ldcb);
        _tile_loadd(2, c2, g->ldcb);
        if (ct > 1) {
            _tile_loadd(1, c0 + 16, g->ldcb);
            _tile_loadd(3, c2 + 16, g->ldcb);
        }
    } else {
        _tile_zero(0);
        _tile_zero(2);
        if (ct > 1) {
            _tile_zero(1);
            _tile_zero(3);
        }
    }
    const int8_t *a = g->a, *b = g->b;
    for (int64_t s = 0; s < g->ksteps; s++, a += TILE_K, b += 16 * g->bs)
        tile_step(a, g->lda, 16 * g->lda, b, g->bs, 2, ct);
    _tile_stored(0, c0, g->ldcb);
    _tile_stored(2, c2, g->ldcb);
    if (ct > 1) {
        _tile_stored(1, c0 + 16, g->ldcb);
        _tile_stored(3, c2 + 16, g->ldcb);
    }
}

/* Columns [n0, n1) (multiples of 16) of one block of 32 rows: g at column 0. Panels
 * start at multiples of 32, so a 2 x 1 block comes only at the end of N. K goes in
 * chunks of KC_STEPS tiles, each across all the columns: the chunk's 32 rows of A (16
 * KiB) stay in L1 while B streams from L2 (each tile of B is used twice, each of A
 * once per pair of columns; loading both from L2 halves the speed). */
static void block_columns(block_args g, int64_t n0, int64_t n1)
{
    const int8_t *a = g.a, *b = g.b;
    int32_t *c = g.c;
    int64_t ksteps = g.ksteps;
    bool acc = g.acc;
    int64_t chunks = (ksteps + KC_STEPS - 1) / KC_STEPS, kc = (ksteps + chunks - 1) / chunks; /* even chunks */
    for (int64_t s0 = 0; s0 < ksteps; s0 += kc) {
        const int8_t *bk = b + s0 * 16 * g.bs;
        g.a = a + s0 * TILE_K;
        g.ksteps = ksteps - s0 < kc ? ksteps - s0 : kc;
        g.acc = acc || s0 > 0;
        int64_t n = n0;
        for (; n + BLOCK_N <= n1; n += BLOCK_N) {
            g.b = bk + n * 4, g.c = c + n;
            block_2(&g, 2);
        }
        if (n < n1) {
            g.b = bk + n * 4, g.c = c + n;
            block_2(&g, 1);
        }
    }
}

/* ---- the products -------------------------------------------------------------------- */

/* One product after packing: the rows of C split across threads. */
typedef struct product {
    int64_t M, N, K, lda, ldc, np, ksteps;
    const int8_t *A, *bp;
    int32_t *C;
    bool acc;
    bool stream; /* C (overwritten, larger than the caches) written around them */
} product;

/* n int32 from src to dst, 16 at a time in zmm moves (a libc call per short row cost 5%
 * of a training step in conv_s1), with non-temporal stores where stream and dst is
 * 64-byte aligned: C that is written once and is larger than the caches then goes to
 * memory without being read first (resnet18's 100352x64x576: 0.85x-0.95x oneDNN ->
 * 1.02x-1.08x). */
static inline void copy_row(int32_t *dst, const int32_t *src, int64_t n, bool stream)
{
    int64_t i = 0;
    if (stream && ((uintptr_t)dst & 63) == 0)
        for (; i + 16 <= n; i += 16) _mm512_stream_si512((void *)(dst + i), _mm512_loadu_si512(src + i));
    for (; i + 16 <= n; i += 16) _mm512_storeu_si512(dst + i, _mm512_loadu_si512(src + i));
    if (i < n) memcpy(dst + i, src + i, (size_t)(n - i) * sizeof(int32_t));
}

/* Rows m0 .. m0 + mr - 1 (mr <= 32) of C, columns n0 .. n1 - 1 (n0 a multiple of 16,
 * n1 <= N). Blocks whose tiles stay inside A and hold 32 rows run in place, but for the
 * columns past the last whole 16 of N; the others copy their rows of A into apad (32 x
 * 64 ksteps bytes, zero padded) and compute C in cpad (32 x np); a streamed C goes one
 * register block at a time through cpad, then out with non-temporal stores. */
static void row_block(const product *p, int64_t m0, int64_t n0, int64_t n1, int8_t *apad, int32_t *cpad)
{
    int64_t mr = p->M - m0 < BLOCK_M ? p->M - m0 : BLOCK_M, kp = p->ksteps * TILE_K;
    /* the last byte a tile reads, against the last of A's own bytes */
    bool inside = mr == BLOCK_M && (m0 + BLOCK_M - 1) * p->lda + kp <= (p->M - 1) * p->lda + p->K;
    int64_t nwhole = n1 / 16 * 16;
    block_args g = {.a = p->A + m0 * p->lda, .lda = p->lda, .b = p->bp, .bs = p->np * 4, .ksteps = p->ksteps,
                    .c = p->C + m0 * p->ldc, .ldcb = p->ldc * 4, .acc = p->acc};
    bool in_place = inside && !p->stream;
    if (in_place) block_columns(g, n0, nwhole);
    if (in_place && nwhole == n1) return;
    /* the rest through the buffers: all columns of a padded or streamed block, or the last < 16 */
    int64_t c0 = in_place ? nwhole : n0;
    if (!inside) {
        memset(apad, 0, (size_t)(BLOCK_M * kp));
        for (int64_t r = 0; r < mr; r++) memcpy(apad + r * kp, g.a + r * p->lda, (size_t)p->K);
        g.a = apad, g.lda = kp;
    }
    int32_t *c = g.c;
    if (p->stream) { /* one register block at a time through cpad (4 KiB, in L1), then out */
        g.ldcb = BLOCK_N * 4;
        for (int64_t n = c0; n < n1; n += BLOCK_N) {
            int64_t w = n1 - n < BLOCK_N ? n1 - n : BLOCK_N;
            g.b = p->bp + n * 4, g.c = cpad;
            block_columns(g, 0, (w + 15) / 16 * 16);
            for (int64_t r = 0; r < mr; r++) copy_row(c + r * p->ldc + n, cpad + r * BLOCK_N, w, true);
        }
        return;
    }
    size_t nbytes = (size_t)(n1 - c0) * sizeof(int32_t);
    if (p->acc)
        for (int64_t r = 0; r < mr; r++) memcpy(cpad + r * p->np + c0, c + r * p->ldc + c0, nbytes);
    g.c = cpad, g.ldcb = p->np * 4;
    block_columns(g, c0, (n1 + 15) / 16 * 16);
    for (int64_t r = 0; r < mr; r++) memcpy(c + r * p->ldc + c0, cpad + r * p->np + c0, nbytes);
}

/* The 32 rows of A from m (and of C, when the product adds to it) into L2 while the
 * block before them computes: tiles that miss the caches stall, and the hardware
 * prefetchers do not follow 16 or 32 streams. */
static void prefetch_rows(const product *p, int64_t m)
{
    int64_t m1 = m + BLOCK_M < p->M ? m + BLOCK_M : p->M;
    for (int64_t r = m; r < m1; r++) {
        for (int64_t k = 0; k < p->K; k += 64) _mm_prefetch((const char *)(p->A + r * p->lda + k), _MM_HINT_T1);
        if (p->acc) /* and the rows of C that the block reads */
            for (int64_t n = 0; n < p->N; n += 16) _mm_prefetch((const char *)(p->C + r * p->ldc + n), _MM_HINT_T1);
    }
}

/* Panels of columns whose packed B (kp x panel bytes) stays in L2 (PANEL_BYTES), one
 * after the other; in each, the threads take tasks of ROWS_PER_TASK rows, guided (large
 * pieces first: one at a time cost the narrow products a third of their speed).
 * A panel is then read from memory once per thread, and A once per panel (walking all
 * panels per task instead read the whole of B per task: resnet18's 1568x512x4608 lost
 * a fifth of its speed to it). */
static void run(const product *p)
{
    int64_t tasks = (p->M + ROWS_PER_TASK - 1) / ROWS_PER_TASK, kp = p->ksteps * TILE_K;
    int64_t panel = PANEL_BYTES / kp / (2 * BLOCK_N) * (2 * BLOCK_N); /* whole 2 x 2 blocks */
    if (panel < 2 * BLOCK_N) panel = 2 * BLOCK_N;
#pragma omp parallel if (wg_gemm_worth_threads(p->M, p->N, p->K) && tasks > 1)
    {
        load_tile_config();
        int8_t *apad = wg_gemm_alloc64((size_t)(BLOCK_M * kp));
        /* rows of np columns, or one register block of a streamed C (np may be 16) */
        int64_t cw = p->np > BLOCK_N ? p->np : BLOCK_N;
        int32_t *cpad = wg_gemm_alloc64((size_t)(BLOCK_M * cw) * sizeof(int32_t));
        for (int64_t n0 = 0; n0 < p->N; n0 += panel) {
            int64_t n1 = n0 + panel < p->N ? n0 + panel : p->N;
#pragma omp for schedule(guided) nowait
            for (int64_t t = 0; t < tasks; t++) {
                int64_t m1 = (t + 1) * ROWS_PER_TASK < p->M ? (t + 1) * ROWS_PER_TASK : p->M;
                for (int64_t m = t * ROWS_PER_TASK; m < m1; m += BLOCK_M) {
                    prefetch_rows(p, m + BLOCK_M);
                    row_block(p, m, n0, n1, apad, cpad);
                }
            }
        }
        if (p->stream) _mm_sfence(); /* the non-temporal stores done before the threads join */
        free(apad);
        free(cpad);
        _tile_release();
    }
}

/* Packed B's columns: N rounded up to 16, and then to an odd number of 16s: a tile's 16
 * rows 4 np bytes apart, at a multiple of 128 bytes, fall into few sets of the caches
 * (np = 512: 1000 GOP/s where 496 gives 1600). */
static int64_t packed_columns(int64_t N)
{
    int64_t np = (N + 15) / 16 * 16;
    return np / 16 % 2 ? np : np + 16;
}

/* kp / 4 groups x np columns x 4 bytes, every byte set. */
static int8_t *alloc_packed_b(int64_t kp, int64_t np)
{
    int8_t *bp = wg_gemm_alloc64((size_t)(kp * np));
    memset(bp, 0, (size_t)(kp * np));
    return bp;
}

/* nt's B[N][K] packed: column n's four k of group q, bytes 4q .. 4q + 3 of row n, lie
 * side by side already, so a group of 16 columns is one gather of 32-bit words from 16
 * rows (masked past N). The last group of a K that is not a multiple of 4 is copied
 * byte by byte, so no byte past a row is read; the rest stays zero. */
static void pack_nt(const int8_t *B, int64_t ldb, int64_t N, int64_t K, int8_t *bp, int64_t np)
{
    WG_ASSERT(16 * ldb <= INT32_MAX, "nt's B rows %lld bytes apart: too far for a gather", (long long)ldb);
    const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32((int)ldb));
    int64_t whole = K / 4;
    for (int64_t n0 = 0; n0 < N; n0 += 16) {
        __mmask16 live = N - n0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (N - n0)) - 1);
        const int8_t *b = B + n0 * ldb;
        for (int64_t q = 0; q < whole; q++) {
            __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rows, b + 4 * q, 1);
            _mm512_storeu_si512(bp + (q * np + n0) * 4, v);
        }
    }
    if (K % 4)
        for (int64_t n = 0; n < N; n++) memcpy(bp + (whole * np + n) * 4, B + n * ldb + 4 * whole, (size_t)(K % 4));
}

static void nt(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
               int32_t *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    product p = {.M = M, .N = N, .K = K, .lda = lda, .ldc = ldc, .np = packed_columns(N),
                 .ksteps = (K + TILE_K - 1) / TILE_K, .A = A, .C = C, .acc = false,
                 .stream = (double)M * (double)N * sizeof(int32_t) >= STREAM_C_BYTES};
    int8_t *bp = alloc_packed_b(p.ksteps * TILE_K, p.np);
    pack_nt(B, ldb, N, K, bp, p.np);
    p.bp = bp;
    if (K > 0) run(&p);
    else
        for (int64_t m = 0; m < M; m++) memset(C + m * ldc, 0, (size_t)N * sizeof(int32_t));
    free(bp);
}

/* nn: B[K][N]: the four rows of a group interleaved byte by byte (the VNNI set's packing). */
static void nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
               int32_t *C, int64_t ldc, bool acc)
{
    product p = {.M = M, .N = N, .K = K, .lda = lda, .ldc = ldc, .np = packed_columns(N),
                 .ksteps = (K + TILE_K - 1) / TILE_K, .A = A, .C = C, .acc = acc,
                 .stream = !acc && K <= STREAM_MAX_K && (double)M * (double)N * sizeof(int32_t) >= STREAM_C_BYTES};
    int8_t *bp = alloc_packed_b(p.ksteps * TILE_K, p.np);
    wg_gemm_vnni_pack_rows(B, ldb, K, N, bp, p.np, false, NULL);
    p.bp = bp;
    run(&p);
    free(bp);
}

/* ---- tn_gather: backward-weight ---------------------------------------------------
 * C[p M + m][n] += sum over k of A_p[k][m] B[k][n] for the parts p, B's rows gathered
 * (gemm.h). Chunk by chunk of TN_CHUNK k: the parts packed side by side as four k per
 * column ([k / 4][mp][4], the VNNI set's packing, not flipped), then turned into tile
 * rows at[m][k] by one 32-bit gather per 16 groups; B's rows gathered and packed
 * likewise ([k / 4][N][4], not flipped); then tiles of C in place, C loaded, the chunk's
 * k added, stored. Tiles need whole 16s of rows and columns: other shapes (the first
 * convolution's 9 columns, say) go to the VNNI set. On the calling thread; tn below
 * runs the same chunks on threads. */

enum { TN_CHUNK = 512 }; /* k per chunk: a multiple of 64 */

typedef struct tn_layout {
    int64_t mrows, mp, np; /* rows of C; packed parts' and packed B's columns */
    int8_t *ap, *at, *bp;  /* the parts packed, turned into tile rows, packed B */
} tn_layout;

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* The layout's sizes, and its three buffers at base (64-byte aligned offsets) unless base
 * is NULL; returns the bytes it takes. */
static size_t tn_layout_at(int64_t M, int64_t N, int nparts, char *base, tn_layout *l)
{
    l->mrows = nparts * M, l->mp = round16((nparts - 1) * M + round16(M)), l->np = N;
    size_t ap = (size_t)(TN_CHUNK * l->mp), at = (size_t)(l->mrows * TN_CHUNK), bp = (size_t)(TN_CHUNK * N);
    ap = (ap + 63) / 64 * 64, at = (at + 63) / 64 * 64;
    l->ap = l->at = l->bp = NULL;
    if (base != NULL) l->ap = (int8_t *)base, l->at = (int8_t *)base + ap, l->bp = (int8_t *)base + ap + at;
    return ap + at + bp;
}

static bool tn_tiles_fit(int64_t M, int64_t N, int nparts) { return (nparts * M) % 16 == 0 && N % 16 == 0; }

static size_t tn_gather_scratch(int64_t M, int64_t N, int nparts)
{
    tn_layout l;
    size_t ours = tn_tiles_fit(M, N, nparts) ? tn_layout_at(M, N, nparts, NULL, &l) : 0;
    size_t vnni = wg_gemm_vnni_tn_gather_scratch(M, N, nparts);
    return ours > vnni ? ours : vnni;
}

/* ap's groups g < gk (of four k, mp columns each) -> at[m][4 g .. 4 g + 3] for m < mrows,
 * kp bytes a row, zero past group gk. */
static void tn_transpose(const tn_layout *l, int64_t gk, int64_t kp)
{
    WG_ASSERT(16 * l->mp <= INT32_MAX / 4, "tn: %lld packed columns: too many for a gather", (long long)l->mp);
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32((int)l->mp));
    const int32_t *ap = (const int32_t *)l->ap;
    for (int64_t g0 = 0; g0 < kp / 4; g0 += 16) {
        __mmask16 live = gk - g0 >= 16 ? (__mmask16)0xffff : gk > g0 ? (__mmask16)((1u << (gk - g0)) - 1) : 0;
        for (int64_t m = 0; m < l->mrows; m++) {
            __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, ap + g0 * l->mp + m, 4);
            _mm512_storeu_si512(l->at + m * kp + 4 * g0, v);
        }
    }
}

/* C's rt (1, 2) x ct (1, 2) tiles at c (ldcb bytes apart) += at's rows (kp bytes apart)
 * times packed B's columns (bs bytes between groups), ksteps tiles of k. */
static void tn_block(const int8_t *at, int64_t kp, const int8_t *b, int64_t bs, int64_t ksteps, int32_t *c,
                     int64_t ldcb, int rt, int ct)
{
    int32_t *c2 = (int32_t *)((char *)c + 16 * ldcb);
    _tile_loadd(0, c, ldcb);
    if (ct > 1) _tile_loadd(1, c + 16, ldcb);
    if (rt > 1) _tile_loadd(2, c2, ldcb);
    if (rt > 1 && ct > 1) _tile_loadd(3, c2 + 16, ldcb);
    for (int64_t s = 0; s < ksteps; s++, at += TILE_K, b += 16 * bs) tile_step(at, kp, 16 * kp, b, bs, rt, ct);
    _tile_stored(0, c, ldcb);
    if (ct > 1) _tile_stored(1, c + 16, ldcb);
    if (rt > 1) _tile_stored(2, c2, ldcb);
    if (rt > 1 && ct > 1) _tile_stored(3, c2 + 16, ldcb);
}

/* The chunks of tn_gather, tiles configured, buffers laid out in l. */
static void tn_gather_chunks(const tn_layout *l, int64_t M, int64_t K, int nparts, const int8_t *const *A,
                             int64_t lda, const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C,
                             int64_t ldc, bool spread16)
{
    int64_t N = nruns * run;
    for (int64_t k0 = 0; k0 < K; k0 += TN_CHUNK) {
        int64_t kr = K - k0 < TN_CHUNK ? K - k0 : TN_CHUNK, kp = (kr + TILE_K - 1) / TILE_K * TILE_K;
        int64_t gk = (kr + 3) / 4;
        for (int p = 0; p < nparts; p++) /* in order: part p + 1 overwrites part p's padding */
            wg_gemm_vnni_pack_rows(A[p] + k0 * lda, lda, kr, M, l->ap + p * M * 4, l->mp, false, NULL);
        tn_transpose(l, gk, kp);
        wg_gemm_vnni_pack_gather(brow + k0, nruns, run, run_ld, kr, spread16, 0, l->bp, N);
        /* the groups past the chunk's meet zeros of at; set, so that nothing unset is read */
        memset(l->bp + gk * N * 4, 0, (size_t)((kp / 4 - gk) * N * 4));
        for (int64_t r0 = 0; r0 < l->mrows; r0 += 32)
            for (int64_t c0 = 0; c0 < N; c0 += 32)
                tn_block(l->at + r0 * kp, kp, l->bp + c0 * 4, N * 4, kp / TILE_K, C + r0 * ldc + c0, ldc * 4,
                         l->mrows - r0 >= 32 ? 2 : 1, N - c0 >= 32 ? 2 : 1);
    }
}

static bool has_vbmi(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi");
}

static void tn_gather(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                      const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C, int64_t ldc,
                      void *scratch)
{
    int64_t N = nruns * run;
    if (!tn_tiles_fit(M, N, nparts)) {
        wg_gemm_vnni_tn_gather(M, K, nparts, A, lda, brow, nruns, run, run_ld, C, ldc, scratch);
        return;
    }
    tn_layout l;
    void *own = scratch != NULL ? NULL : wg_gemm_alloc64(tn_layout_at(M, N, nparts, NULL, &l));
    tn_layout_at(M, N, nparts, scratch != NULL ? scratch : own, &l);
    load_tile_config();
    tn_gather_chunks(&l, M, K, nparts, A, lda, brow, nruns, run, run_ld, C, ldc, has_vbmi());
    _tile_release();
    free(own);
}

/* tn: tn_gather's chunks with B's rows where they lie (one run a row), the threads
 * taking even shares of K's chunks, each into its own partial C (thread 0 into C),
 * added up at the end (modulo 2^32: which thread took which chunk does not matter). */
static void tn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
               int32_t *C, int64_t ldc)
{
    if (!tn_tiles_fit(M, N, 1)) {
        wg_gemm_vnni_tn(M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
    int64_t chunks = (K + TN_CHUNK - 1) / TN_CHUNK;
    int nth = wg_gemm_worth_threads(M, N, K) ? omp_get_max_threads() : 1;
    if (nth > chunks) nth = (int)chunks;
    tn_layout l;
    size_t lb = (tn_layout_at(M, N, 1, NULL, &l) + 63) / 64 * 64, pb = (size_t)(M * N) * sizeof(int32_t);
    size_t per = lb + (pb + 63) / 64 * 64 + TN_CHUNK * sizeof(int8_t *);
    char *buf = wg_gemm_alloc64(per * (size_t)nth);
    const bool spread16 = has_vbmi();
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        char *mine = buf + per * (size_t)t;
        tn_layout lt;
        tn_layout_at(M, N, 1, mine, &lt);
        int32_t *part = (int32_t *)(mine + lb);
        const int8_t **brow = (const int8_t **)(mine + lb + (pb + 63) / 64 * 64);
        if (t > 0) memset(part, 0, pb);
        load_tile_config();
        int64_t c1 = chunks * (t + 1) / T;
        for (int64_t ch = chunks * t / T; ch < c1; ch++) {
            int64_t k0 = ch * TN_CHUNK, kr = K - k0 < TN_CHUNK ? K - k0 : TN_CHUNK;
            for (int64_t i = 0; i < kr; i++) brow[i] = B + (k0 + i) * ldb;
            const int8_t *a = A + k0 * lda;
            tn_gather_chunks(&lt, M, kr, 1, &a, lda, brow, 1, N, 0, t == 0 ? C : part, t == 0 ? ldc : N, spread16);
        }
        _tile_release();
        wg_gemm_add_partials(C, ldc, M, N, buf, per, lb, N);
    }
    free(buf);
}

/* ---- conv_s1: stride-1 convolution by implicit GEMM ---------------------------------
 * The im2col row of output pixel (oy, ox) is, kernel row by kernel row, kw c bytes that
 * lie side by side in the padded image: row oy + i, from pixel ox. On the padded
 * width's grid, q = oy wp + ox, those bytes start at (q + i wp) c for every q: a tile of
 * A is 16 consecutive q at stride c, tk bytes wide (tk = kw c when that is at most 64,
 * else 64 of its bytes at a time), read from the padded image itself. The q with ox >=
 * ow are computed and dropped (wp - ow of each wp: 2 of 30 for resnet20's 28 x 28).
 * Packed B is nt's (k = (i kw + j) c + ch), a tile of it tk / 4 groups. */

/* C tiles of 32 q x 16 ct output channels at cp (ldcb bytes apart) = the products of the
 * kh kernel rows: A from a (q0's pixel in kernel row 0), B's columns at b. */
static void conv_block(const int8_t *a, int64_t c, int64_t row_step, int64_t kh, int64_t spr, int64_t tk,
                       const int8_t *b, int64_t bs, int32_t *cp, int64_t ldcb, int ct)
{
    _tile_zero(0);
    _tile_zero(2);
    if (ct > 1) {
        _tile_zero(1);
        _tile_zero(3);
    }
    for (int64_t i = 0; i < kh; i++)
        for (int64_t s = 0; s < spr; s++)
            tile_step(a + i * row_step + s * tk, c, 16 * c, b + (i * spr + s) * (tk / 4) * bs, bs, 2, ct);
    int32_t *cp2 = (int32_t *)((char *)cp + 16 * ldcb);
    _tile_stored(0, cp, ldcb);
    _tile_stored(2, cp2, ldcb);
    if (ct > 1) {
        _tile_stored(1, cp + 16, ldcb);
        _tile_stored(3, cp2 + 16, ldcb);
    }
}


/* A row of the pair: dst[j] = a[j] 2^s + b[j] 2^s2 (the sums fit int32: gemm.h). */
static inline void pair_row(int32_t *dst, const int32_t *a, const int32_t *b, int64_t n, int s, int s2)
{
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512i u = _mm512_slli_epi32(_mm512_loadu_si512(a + j), (unsigned)s);
        __m512i v = _mm512_slli_epi32(_mm512_loadu_si512(b + j), (unsigned)s2);
        _mm512_storeu_si512(dst + j, _mm512_add_epi32(u, v));
    }
    for (; j < n; j++) dst[j] = (int32_t)(((uint32_t)a[j] << s) + ((uint32_t)b[j] << s2));
}

static bool conv_s1(int64_t nimg, int64_t h, int64_t w, int64_t c, int64_t o, int64_t kh, int64_t kw, int64_t pad,
                    const int8_t *x, const int8_t *x2, int s, int s2, const int8_t *wt, int32_t *y)
{
    int64_t seg = kw * c; /* one kernel row's bytes, in tiles of tk: all of it up to 64, else 64, 32 or 16 */
    int64_t tk = seg <= TILE_K ? seg : seg % 64 == 0 ? 64 : seg % 32 == 0 ? 32 : seg % 16 == 0 ? 16 : 0;
    if (c % 4 != 0 || tk == 0) return false;
    int64_t spr = seg / tk, kdim = kh * seg;
    int64_t hp = h + 2 * pad, wp = w + 2 * pad, oh = hp - kh + 1, ow = wp - kw + 1, nq = oh * wp;
    int64_t np = packed_columns(o), nb = (nq + BLOCK_M - 1) / BLOCK_M * BLOCK_M;
    /* the padded image, with room for what the last block of q reads past it */
    size_t img_bytes = (size_t)(hp * wp * c), buf_bytes = (size_t)((nb + (kh - 1) * wp) * c + seg);
    buf_bytes = buf_bytes > img_bytes ? buf_bytes : img_bytes;
    int nx = x2 ? 2 : 1; /* images: their padded copies and C blocks side by side */
    int8_t *xp = wg_gemm_alloc64(buf_bytes * (size_t)nx), *bp = alloc_packed_b(kdim, np);
    int32_t *cpad = wg_gemm_alloc64((size_t)(nx * BLOCK_M * np) * sizeof(int32_t));
    const int8_t *src[2] = {x, x2};
    memset(xp, 0, buf_bytes * (size_t)nx);
    pack_nt(wt, kdim, o, kdim, bp, np);
    load_tile_config_k((int)tk);
    for (int64_t img = 0; img < nimg; img++) {
        for (int i = 0; i < nx; i++)
            for (int64_t r = 0; r < h; r++) /* the interior; the border stays zero */
                memcpy(xp + buf_bytes * (size_t)i + ((r + pad) * wp + pad) * c, src[i] + (img * h + r) * w * c,
                       (size_t)(w * c));
        int32_t *yi = y + img * oh * ow * o;
        for (int64_t q0 = 0; q0 < nq; q0 += BLOCK_M) {
            for (int i = 0; i < nx; i++)
                for (int64_t n = 0; n < o; n += BLOCK_N)
                    conv_block(xp + buf_bytes * (size_t)i + q0 * c, c, wp * c, kh, spr, tk, bp + n * 4, np * 4,
                               cpad + i * BLOCK_M * np + n, np * 4, o - n > 16 ? 2 : 1);
            for (int64_t q = q0; q < q0 + BLOCK_M && q < nq; q++) {
                if (q % wp >= ow) continue;
                int32_t *dst = yi + (q / wp * ow + q % wp) * o, *c0 = cpad + (q - q0) * np;
                if (x2) pair_row(dst, c0, c0 + BLOCK_M * np, o, s, s2);
                else copy_row(dst, c0, o, false); /* not streamed: BN reads y next, much of it from the caches */
            }
        }
    }
    _tile_release();
    free(xp), free(bp), free(cpad);
    return true;
}

const wg_gemm_kernels wg_gemm_amx = {
    .nt = nt,
    .nn = nn,
    .tn = tn,
    .tn_gather_scratch = tn_gather_scratch,
    .tn_gather = tn_gather,
    .conv_s1 = conv_s1};

#else
typedef int wg_gemm_amx_unused; /* ISO C forbids an empty translation unit */
#endif
