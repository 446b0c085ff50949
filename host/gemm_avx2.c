/* gemm_avx2.c: the int8 kernel set of gemm_impl.h on AVX2 (wg_gemm_avx2), for x86-64
 * processors without AVX-512 VNNI; threaded with OpenMP. Compiled with -mavx2 -mfma
 * -mno-avx512f, so nothing here needs more than AVX2.
 *
 * Exactness: int8 is widened to int16 (vpmovsxbw) and multiplied with vpmaddwd, which
 * adds two adjacent int16 products into an int32 lane: |a b + a' b'| <= 2 * 128^2 = 2^15,
 * exact. The lanes accumulate with vpaddd, modulo 2^32, and so do the threads' partial
 * results in tn: every result is the exact sum modulo 2^32, the _ref's value (the exact
 * int32 within gemm.h's bound on K), for any order of the terms and any thread count.
 * vpmaddubsw is never used: it saturates its int16 sums.
 *
 * Layout: both operands hold int16 pairs of consecutive k, so that one ymm of B holds two
 * k of 8 columns and one 32-bit broadcast of the left operand, (a[m][k], a[m][k+1]),
 * multiplies it:
 *   packed B: [ceil(K/2)][np][2] int16, np = N rounded up to 8, zero padded;
 *   nt, nn: the tile's rows of A widened to int16 rows of even length (a zero past an odd
 *       K), so each broadcast is one plain load;
 *   tn: A^T packed like B, [ceil(kr/2)][mp][2], from chunks of kr <= TN_CHUNK rows of A
 *       and B. tn_gather is tn with the parts of A packed side by side (one operand whose
 *       rows of C are stacked by part) and B's rows packed run by run from where they lie.
 * A register tile keeps 6 rows x 2 ymm of C (12 accumulators). The last ymm of a ragged N
 * is loaded and stored with vpmaskmovd (no int32 of C past N is touched); rows past M
 * repeat the last row and are not stored; the last bytes of a row of A or B are copied,
 * not over-read.
 *
 * Threads: nt and nn split the rows of C (B is packed once and shared); tn splits K, each
 * thread adding into a partial C, added up at the end; tn_gather runs on the calling
 * thread (its caller splits K). */
#include "gemm_impl.h"

#if WG_GEMM_X86

#include <immintrin.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define WG_INLINE static inline __attribute__((always_inline))

enum {
    MR = 6,             /* rows of a tile */
    ROWS_PER_TASK = 96, /* nt, nn: rows of C per unit of work for the threads (a multiple of MR) */
    TN_CHUNK = 256      /* tn: rows of A and B packed at a time (even), and the threads' unit of work */
};


static int64_t round8(int64_t n) { return (n + 7) / 8 * 8; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- packing ------------------------------------------------------------------ */

/* Row a[0 .. K-1] -> d[0 .. K + K % 2 - 1] int16, the pad (odd K) zero. */
static void widen_row(const int8_t *a, int64_t K, int16_t *d)
{
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
        _mm256_storeu_si256((__m256i *)(d + k), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + k))));
    for (; k < K; k++) d[k] = a[k];
    if (K % 2) d[K] = 0;
}

/* 16 columns of two rows r0, r1 -> 16 (r0, r1) int16 pairs at d (two ymm). */
WG_INLINE void pair16(__m128i r0, __m128i r1, int16_t *d)
{
    _mm256_storeu_si256((__m256i *)d, _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(r0, r1)));
    _mm256_storeu_si256((__m256i *)(d + 16), _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(r0, r1)));
}

/* Columns n < ncols of rows r0 and r1 (NULL: zeros) -> d[n][2] int16 pairs. exact: exactly
 * ncols pairs are written (the last ones with vpmaskmovd, one lane per column); else whole
 * groups of 8, the pairs past ncols zero (the caller's padding, or the next piece's
 * columns, written after). */
static void pack_pair(const int8_t *r0, const int8_t *r1, int64_t ncols, int16_t *d, bool exact)
{
    int64_t n = 0;
    for (; n + 16 <= ncols; n += 16) {
        __m128i x0 = _mm_loadu_si128((const __m128i *)(r0 + n));
        __m128i x1 = r1 ? _mm_loadu_si128((const __m128i *)(r1 + n)) : _mm_setzero_si128();
        pair16(x0, x1, d + 2 * n);
    }
    int64_t rem = ncols - n;
    if (rem == 0) return;
    int8_t t0[16] = {0}, t1[16] = {0}; /* copied: nothing past a row is read */
    memcpy(t0, r0 + n, (size_t)rem);
    if (r1) memcpy(t1, r1 + n, (size_t)rem);
    int16_t tmp[32];
    pair16(_mm_loadu_si128((const __m128i *)t0), _mm_loadu_si128((const __m128i *)t1), tmp);
    int64_t whole = exact ? rem : round8(rem);
    memcpy(d + 2 * n, tmp, (size_t)whole / 8 * 8 * 4);
    if (whole % 8) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(whole % 8)), lane);
        _mm256_maskstore_epi32((int *)(d + 2 * n) + whole / 8 * 8, mask,
                               _mm256_loadu_si256((const __m256i *)(tmp + whole / 8 * 16)));
    }
}

/* nn, tn: rows k < kr of src[k][n] (n < ncols) -> dst[ceil(kr/2)][stride][2], whole groups of 8. */
static void pack_rows(const int8_t *src, int64_t ld, int64_t kr, int64_t ncols, int16_t *dst, int64_t stride)
{
    for (int64_t k = 0; k < kr; k += 2)
        pack_pair(src + k * ld, k + 1 < kr ? src + (k + 1) * ld : NULL, ncols, dst + k * stride, false);
}

/* nt: B[N][K] -> bp[ceil(K/2)][np][2], zero padded. Scalar: N K bytes against M N K products. */
static void pack_nt(const int8_t *B, int64_t ldb, int64_t N, int64_t K, int16_t *bp, int64_t np)
{
    memset(bp, 0, (size_t)((K + 1) / 2 * np) * 4);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) bp[(k / 2 * np + n) * 2 + k % 2] = B[n * ldb + k];
}

/* ---- the register tile -------------------------------------------------------- */

typedef struct tile_args {
    const int16_t *a;    /* left operand at the tile's row 0, pair 0 */
    int64_t ars, aps;    /* int16 between its rows, between its pairs of k */
    int64_t pairs;       /* pairs of k */
    const int16_t *b;    /* packed B at the tile's first column */
    int64_t bps;         /* int16 between pairs of packed B (2 np) */
    int32_t *c;          /* C at the tile's first row and column */
    int64_t ldc;
    int mr;              /* rows to store, 1..MR */
    bool ragged;         /* the last ymm has fewer than 8 columns in C: masked */
    __m256i last;        /* its columns, a lane mask */
    bool acc;            /* add to C (nn, tn) or overwrite it (nt) */
    int next;            /* rows of C below the tile's to prefetch (nn) */
} tile_args;

static int32_t load_pair(const int16_t *p)
{
    int32_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* MR = 6 rows x NY = 1 or 2 ymm of C: 12 accumulators, 2 loads of B and a broadcast in
 * the 16 ymm registers (measured faster than 4 x 3, for which gcc reloads the third ymm of
 * B for every row). The accumulators are named variables c<row>_<ymm> (gcc keeps an array
 * of them in memory): the macros expand every row and ymm, and the second ymm vanishes
 * when NY (a constant here) is 1. Each pair of k loads NY ymm of B, then row by row
 * broadcasts the row's pair into NY multiply-adds. */
#define WG_R6(F) F(0) F(1) F(2) F(3) F(4) F(5)
#define WG_Y2(F, r) F(r, 0) F(r, 1)
#define WG_MASKED(y) ((y) == NY - 1 && t->ragged)

WG_INLINE void tile(const int NY, const tile_args *t)
{
    const __m256i zero = _mm256_setzero_si256();
    const int mr = t->mr;
#define WG_INIT(r, y)                                                                                       \
    __m256i c##r##_##y = zero;                                                                              \
    if (t->acc && y < NY && r < mr) {                                                                       \
        int32_t *p = t->c + r * t->ldc + 8 * y;                                                             \
        c##r##_##y = WG_MASKED(y) ? _mm256_maskload_epi32(p, t->last) : _mm256_loadu_si256((__m256i *)p);  \
    }
#define WG_INIT_ROW(r)                                                                                      \
    const int16_t *a##r = t->a + (r < mr ? r : mr - 1) * t->ars;                                            \
    WG_Y2(WG_INIT, r)
    WG_R6(WG_INIT_ROW)
#undef WG_INIT_ROW
#undef WG_INIT
    const int16_t *b = t->b;
    int64_t off = 0;
    for (int64_t g = 0; g < t->pairs; g++, off += t->aps, b += t->bps) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)b);
        const __m256i b1 = NY > 1 ? _mm256_loadu_si256((const __m256i *)(b + 16)) : zero;
#define WG_MADD(r, y) \
    if (y < NY) c##r##_##y = _mm256_add_epi32(c##r##_##y, _mm256_madd_epi16(av, b##y));
#define WG_ROW(r)                                                                                           \
    {                                                                                                       \
        const __m256i av = _mm256_set1_epi32(load_pair(a##r + off));                                        \
        WG_Y2(WG_MADD, r)                                                                                   \
    }
        WG_R6(WG_ROW)
#undef WG_ROW
#undef WG_MADD
    }
#define WG_STORE(r, y)                                                                                      \
    if (y < NY && r < mr) {                                                                                 \
        int32_t *p = t->c + r * t->ldc + 8 * y;                                                             \
        if (WG_MASKED(y)) _mm256_maskstore_epi32(p, t->last, c##r##_##y);                                   \
        else _mm256_storeu_si256((__m256i *)p, c##r##_##y);                                                 \
    }
#define WG_STORE_ROW(r) WG_Y2(WG_STORE, r)
    WG_R6(WG_STORE_ROW)
#undef WG_STORE_ROW
#undef WG_STORE
}
#undef WG_MASKED
#undef WG_Y2
#undef WG_R6

typedef void tile_fn(const tile_args *t);
static void tile_6x1(const tile_args *t) { tile(1, t); }
static void tile_6x2(const tile_args *t) { tile(2, t); }
static tile_fn *const k_tiles[3] = {NULL, tile_6x1, tile_6x2}; /* by the ymm of a block of columns */

/* All N columns of one block of rows: t has a, c at the block's column 0, and b at packed B's. */
static void run_cols(const tile_args *t, int64_t N)
{
    tile_args u = *t;
    for (int64_t n0 = 0; n0 < N; n0 += 16) {
        int64_t nc = min64(N - n0, 16);
        u.b = t->b + 2 * n0;
        u.c = t->c + n0;
        u.ragged = nc % 8 != 0;
        u.last = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(nc % 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int r = 0; r < t->next; r++) _mm_prefetch((const char *)(u.c + (MR + r) * t->ldc), _MM_HINT_T0);
        k_tiles[(nc + 7) / 8](&u);
    }
}

/* nt, nn after packing B: rows of C split across threads (guided: large pieces first, small
 * ones at the end, so a thread the system delays is made up for). Each block of rows of A is
 * widened into the thread's buffer, then multiplies all of packed B. */
static void run_rows_threaded(const tile_args *proto, const int8_t *A, int64_t lda, int64_t M, int64_t N,
                              int64_t K, bool threads)
{
    int64_t kp = K + K % 2, tasks = (M + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    (void)threads; /* without OpenMP */
#pragma omp parallel if (threads && tasks > 1)
    {
        int16_t *abuf = wg_gemm_alloc64((size_t)(MR * kp) * sizeof(int16_t));
#pragma omp for schedule(guided)
        for (int64_t i = 0; i < tasks; i++) {
            int64_t m1 = min64(M, (i + 1) * ROWS_PER_TASK);
            for (int64_t m = i * ROWS_PER_TASK; m < m1; m += MR) {
                tile_args t = *proto;
                t.mr = (int)min64(m1 - m, MR);
                /* nn reads and writes all of a large C for few k: the next block's rows come
                 * in ahead (measured 20% faster), where the prefetchers would follow 6 streams */
                t.next = proto->acc ? (int)min64(M - m - MR, MR) : 0; /* <= 0: none */
                for (int r = 0; r < t.mr; r++) widen_row(A + (m + r) * lda, K, abuf + r * kp);
                t.a = abuf;
                t.ars = kp;
                t.aps = 2;
                t.c = proto->c + m * proto->ldc;
                run_cols(&t, N);
            }
        }
        free(abuf);
    }
}

/* ---- the products --------------------------------------------------------------- */

/* C (+)= A B with B packed from its nt layout (B[n][k]) or its nn one (B[k][n]). */
static void product(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                    int32_t *C, int64_t ldc, bool b_nt, bool acc)
{
    int64_t np = round8(N);
    int16_t *bp = wg_gemm_alloc64((size_t)((K + 1) / 2 * np) * 4);
    if (b_nt) pack_nt(B, ldb, N, K, bp, np);
    else pack_rows(B, ldb, K, N, bp, np);
    tile_args proto = {.pairs = (K + 1) / 2, .b = bp, .bps = 2 * np, .c = C, .ldc = ldc, .acc = acc};
    run_rows_threaded(&proto, A, lda, M, N, K, wg_gemm_worth_threads(M, N, K));
    free(bp);
}

static void nt(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb, int32_t *C,
               int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    product(M, N, K, A, lda, B, ldb, C, ldc, true, false);
}

static void nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb, int32_t *C,
               int64_t ldc, bool acc)
{
    product(M, N, K, A, lda, B, ldb, C, ldc, false, acc);
}

/* ---- tn ------------------------------------------------------------------------
 * C[M][N] += sum over k < K of A[k][m] B[k][n], in chunks of TN_CHUNK rows of A and B,
 * both packed, then the tiles. With nparts left operands A_p sharing B, part p is packed
 * at columns p M .. p M + M - 1 of packed A, in order (the zeros past part p's columns are
 * overwritten by part p + 1): one operand of nparts M columns, whose rows of C are stacked
 * by part, and B is packed once for all of them. */

/* Packing buffers for a chunk of up to TN_CHUNK rows. */
typedef struct tn_bufs {
    int16_t *ap, *bp; /* packed A [TN_CHUNK / 2][mp][2], packed B [TN_CHUNK / 2][np][2] */
    int64_t mp, np;
} tn_bufs;

/* Packed A's width: the last part's whole groups of 8 reach (nparts - 1) M + round8(M). */
static int64_t tn_mp(int64_t M, int nparts) { return round8((nparts - 1) * M + round8(M)); }

static size_t tn_scratch(int64_t M, int64_t N, int nparts)
{
    return (size_t)(TN_CHUNK / 2 * (tn_mp(M, nparts) + round8(N))) * 4;
}

static tn_bufs tn_bufs_at(void *buf, int64_t M, int64_t N, int nparts)
{
    tn_bufs b = {.ap = buf, .mp = tn_mp(M, nparts), .np = round8(N)};
    b.bp = b.ap + TN_CHUNK * b.mp; /* a multiple of 8 pairs: 32-byte aligned */
    return b;
}

/* The tiles of a packed chunk of kr rows: rows 0 .. mrows - 1 of C, all N columns. */
static void tn_tiles(int64_t mrows, int64_t N, int64_t kr, int32_t *C, int64_t ldc, const tn_bufs *b)
{
    tile_args t = {.ars = 2, .aps = 2 * b->mp, .pairs = (kr + 1) / 2, .b = b->bp, .bps = 2 * b->np, .ldc = ldc,
                   .acc = true};
    for (int64_t m = 0; m < mrows; m += MR) {
        t.a = b->ap + 2 * m;
        t.c = C + m * ldc;
        t.mr = (int)min64(mrows - m, MR);
        run_cols(&t, N);
    }
}

/* Threads take chunks one at a time as they come (batches of 8 left one of 2 threads idle
 * at the end: 1.3x slower); thread 0 adds into C, the others into zeroed partial copies
 * of C (M x np), added into C at the end, modulo 2^32 like everything here: which thread
 * took which chunk does not matter. */
static void tn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb, int32_t *C,
               int64_t ldc)
{
    if (M <= 0 || N <= 0 || K <= 0) return;
    int64_t np = round8(N), chunks = (K + TN_CHUNK - 1) / TN_CHUNK;
    size_t bb = (tn_scratch(M, N, 1) + 63) / 64 * 64, pb = (size_t)(M * np) * sizeof(int32_t), per;
    char *buf;
    int nth = wg_gemm_tn_scratch(M, N, K, chunks, np, bb, &per, &buf);

#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        int t = omp_get_thread_num();
        char *mine = buf + per * (size_t)t;
        tn_bufs bufs = tn_bufs_at(mine, M, N, 1);
        int32_t *part = (int32_t *)(mine + bb);
        if (t > 0) memset(part, 0, pb);
#pragma omp for schedule(dynamic) nowait
        for (int64_t ch = 0; ch < chunks; ch++) {
            int64_t k0 = ch * TN_CHUNK, kr = min64(K - k0, TN_CHUNK);
            pack_rows(A + k0 * lda, lda, kr, M, bufs.ap, bufs.mp);
            pack_rows(B + k0 * ldb, ldb, kr, N, bufs.bp, bufs.np);
            tn_tiles(M, N, kr, t == 0 ? C : part, t == 0 ? ldc : np, &bufs);
        }
        wg_gemm_add_partials(C, ldc, M, N, buf, per, bb, np);
    }
    free(buf);
}

static size_t tn_gather_scratch(int64_t M, int64_t N, int nparts) { return tn_scratch(M, N, nparts); }

/* On the calling thread, chunk by chunk: the parts packed side by side, B's gathered rows
 * packed run by run (exactly run columns each: runs need not be multiples of 8), then
 * the tiles over all nparts M rows of C. */
static void tn_gather(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                      const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C, int64_t ldc,
                      void *scratch)
{
    int64_t N = nruns * run;
    if (M <= 0 || N <= 0 || K <= 0 || nparts <= 0) return;
    void *own = scratch != NULL ? NULL : wg_gemm_alloc64(tn_scratch(M, N, nparts));
    tn_bufs b = tn_bufs_at(scratch != NULL ? scratch : own, M, N, nparts);
    if (b.np > N) /* B's padding columns, which the exact runs never write: zero, never stored */
        for (int64_t g = 0; g < TN_CHUNK / 2; g++) memset(b.bp + (g * b.np + N) * 2, 0, (size_t)(b.np - N) * 4);
    for (int64_t k0 = 0; k0 < K; k0 += TN_CHUNK) {
        int64_t kr = min64(K - k0, TN_CHUNK);
        for (int p = 0; p < nparts; p++) pack_rows(A[p] + k0 * lda, lda, kr, M, b.ap + 2 * p * M, b.mp);
        for (int64_t k = 0; k < kr; k += 2)
            for (int i = 0; i < nruns; i++)
                pack_pair(brow[k0 + k] + i * run_ld, k + 1 < kr ? brow[k0 + k + 1] + i * run_ld : NULL, run,
                          b.bp + k * b.np + 2 * i * run, true);
        tn_tiles(nparts * M, N, kr, C, ldc, &b);
    }
    free(own);
}

const wg_gemm_kernels wg_gemm_avx2 = {
    .nt = nt, .nn = nn, .tn = tn, .tn_gather_scratch = tn_gather_scratch, .tn_gather = tn_gather};

#else
typedef int unused; /* ISO C forbids an empty translation unit */
#endif
