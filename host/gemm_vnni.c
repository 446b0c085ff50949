/* gemm_vnni.c: the int8 kernel set of gemm_impl.h on AVX-512 VNNI, threaded with
 * OpenMP (compiled for x86-64 with the AVX-512 flags of CMakeLists.txt; gemm.c runs it
 * where the processor has them).
 *
 * vpdpbusd multiplies unsigned bytes by signed bytes, four adjacent pairs summed into
 * each int32 lane. B is packed so that one zmm holds four consecutive k of 16 columns:
 *   packed B: [ceil(K/4)][np][4] int8, np = N rounded up to 16, zero padded,
 * and four bytes of a row of A, a[m][k..k+3], are broadcast to all lanes. One of the
 * two is made unsigned by u = x + 128 (x XOR 0x80), and the bias is taken back exactly:
 *   nt, nn: A unpacked, flipped as it is broadcast; sum_k u_k b_k = sum_k a_k b_k
 *       + 128 sum_k b_k, so each column of C starts from -128 sum_k b[k][n];
 *   tn: A^T and B both packed from chunks of rows, B flipped while packing; each row
 *       of C starts from -128 sum_k a[k][m]. tn_gather is tn with the parts of A packed
 *       side by side (one operand, C's rows stacked by part) and B's rows packed from
 *       where they lie (runs at pointers), once for all parts.
 * A register tile keeps MR rows x NZ zmm of C (up to 24 accumulators), so each load of
 * B serves MR rows and each broadcast NZ zmm; masked loads and stores cover a ragged
 * N, a masked load the last K % 4 bytes of a row of A (nothing past a row is read).
 *
 * Exactness: vpdpbusd does not saturate (its byte products fit in 16 bits), so
 * everything here, the bias, its correction and the sum of threads' partial results,
 * is arithmetic modulo 2^32 and gives the exact sum modulo 2^32: the exact int32 when
 * that fits (gemm.h's bound on K), and the _ref's value in any case. Integer sums do
 * not depend on their order, so the result is the same for every thread count.
 *
 * Threads: nt and nn split the rows of C (B is packed once and shared); tn splits K,
 * each thread adding its chunks into a partial C, and the partials are added at the
 * end; tn_gather runs on the calling thread (its caller splits K). Tiles: nt and tn
 * use 8 x 3 or 6 x 4 (C stays in cache or is written once); nn, which reads and writes
 * a large C for few k, walks C one row at a time (1 x up to 12 zmm) when its rows are
 * wider than a tile and packed B fits in L1: the hardware prefetchers follow one
 * stream well and the 6 or 8 of a taller tile badly, at half the bandwidth or less. */
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
    ROWS_PER_TASK = 96, /* nt, nn: rows of C per unit of work for the threads (a multiple of every MR) */
    TN_CHUNK = 256,     /* tn: rows of A and B packed at a time (a multiple of 4) */
    NN_ROW_WALK_MAX_B = 24 * 1024 /* nn: walk C by rows when packed B has at most this many bytes */
};


static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

static uint32_t load_u32(const int8_t *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* ---- packing ------------------------------------------------------------------ */

/* nt: B[N][K] -> bp[ceil(K/4)][np][4] (zero padded), colsum[n] = sum_k B[n][k]. */
static void pack_nt(const int8_t *B, int64_t ldb, int64_t N, int64_t K, int8_t *bp, int64_t np, int32_t *colsum)
{
    int64_t g4 = (K + 3) / 4;
    memset(bp, 0, (size_t)(g4 * np * 4));
    memset(colsum, 0, (size_t)np * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) {
        const int8_t *b = B + n * ldb;
        int32_t s = 0; /* modulo 2^32, like all of this */
        for (int64_t g = 0; g < g4; g++) {
            int64_t kr = K - 4 * g < 4 ? K - 4 * g : 4;
            int8_t *d = bp + (g * np + n) * 4;
            for (int64_t j = 0; j < kr; j++) {
                d[j] = b[4 * g + j];
                s = (int32_t)((uint32_t)s + (uint32_t)(int32_t)b[4 * g + j]);
            }
        }
        colsum[n] = s;
    }
}

/* Columns n0 .. n0 + min(rem, 64) - 1 (rem >= 1) of one group of four rows r[0..3]
 * (NULL: a row of zeros) -> v[q], q < the returned count: 16 columns each, the four
 * rows' bytes of a column side by side, zero past rem. 17..64 columns: four (masked)
 * loads, the 4 x 4 byte transpose in each 128-bit lane, then the 4 x 4 lane transpose;
 * 1..16 on 128-bit vectors. */
WG_INLINE int pack_piece(const int8_t *const r[4], int64_t n0, int64_t rem, __m512i v[4])
{
    if (rem > 16) {
        __mmask64 lm = rem >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << rem) - 1;
        __m512i x[4];
        for (int j = 0; j < 4; j++) x[j] = r[j] ? _mm512_maskz_loadu_epi8(lm, r[j] + n0) : _mm512_setzero_si512();
        /* within each 128-bit lane L: o_q holds columns 16L + 4q .. 16L + 4q + 3, 4 rows each */
        __m512i t0 = _mm512_unpacklo_epi8(x[0], x[1]), t1 = _mm512_unpackhi_epi8(x[0], x[1]);
        __m512i t2 = _mm512_unpacklo_epi8(x[2], x[3]), t3 = _mm512_unpackhi_epi8(x[2], x[3]);
        __m512i o0 = _mm512_unpacklo_epi16(t0, t2), o1 = _mm512_unpackhi_epi16(t0, t2);
        __m512i o2 = _mm512_unpacklo_epi16(t1, t3), o3 = _mm512_unpackhi_epi16(t1, t3);
        /* transpose the 4x4 lanes: v_L = [o0.L, o1.L, o2.L, o3.L] = columns 16L .. 16L + 15 */
        __m512i u0 = _mm512_shuffle_i32x4(o0, o1, 0x44), u1 = _mm512_shuffle_i32x4(o2, o3, 0x44);
        __m512i u2 = _mm512_shuffle_i32x4(o0, o1, 0xee), u3 = _mm512_shuffle_i32x4(o2, o3, 0xee);
        v[0] = _mm512_shuffle_i32x4(u0, u1, 0x88);
        v[1] = _mm512_shuffle_i32x4(u0, u1, 0xdd);
        v[2] = _mm512_shuffle_i32x4(u2, u3, 0x88);
        v[3] = _mm512_shuffle_i32x4(u2, u3, 0xdd);
        return rem >= 64 ? 4 : (int)((rem + 15) / 16);
    }
    __mmask16 lm = (__mmask16)(0xffffu >> (16 - rem));
    __m128i x[4];
    for (int j = 0; j < 4; j++) x[j] = r[j] ? _mm_maskz_loadu_epi8(lm, r[j] + n0) : _mm_setzero_si128();
    __m128i t0 = _mm_unpacklo_epi8(x[0], x[1]), t1 = _mm_unpackhi_epi8(x[0], x[1]);
    __m128i t2 = _mm_unpacklo_epi8(x[2], x[3]), t3 = _mm_unpackhi_epi8(x[2], x[3]);
    v[0] = _mm512_castsi128_si512(_mm_unpacklo_epi16(t0, t2));
    v[0] = _mm512_inserti32x4(v[0], _mm_unpackhi_epi16(t0, t2), 1);
    v[0] = _mm512_inserti32x4(v[0], _mm_unpacklo_epi16(t1, t3), 2);
    v[0] = _mm512_inserti32x4(v[0], _mm_unpackhi_epi16(t1, t3), 3);
    return 1;
}

/* Rows k < kr of src[k][n] (n < N) -> dst[ceil(kr/4)][stride][4], the columns up to N
 * rounded up to 16 (<= stride) zero padded; flipped (XOR 0x80, padding included) when
 * flip; colsum[n] += sum_k src[k][n] when colsum. Column blocks of 64 outside, groups
 * of four rows inside, so a block's column sums stay in registers. */
void wg_gemm_vnni_pack_rows(const int8_t *src, int64_t ld, int64_t kr, int64_t N, int8_t *dst, int64_t stride,
                            bool flip, int32_t *colsum)
{
    const __m512i ones = _mm512_set1_epi8(1), x80 = _mm512_set1_epi8((char)0x80);
    for (int64_t n0 = 0; n0 < N; n0 += 64) {
        /* the block's column sums, 16 columns each (named: gcc keeps an array in memory) */
        __m512i cs0 = _mm512_setzero_si512(), cs1 = cs0, cs2 = cs0, cs3 = cs0;
        int nv = 0;
        for (int64_t g = 0; 4 * g < kr; g++) {
            const int8_t *r[4];
            for (int j = 0; j < 4; j++) r[j] = 4 * g + j < kr ? src + (4 * g + j) * ld : NULL;
            __m512i v[4];
            nv = pack_piece(r, n0, N - n0, v);
            if (colsum) {
                cs0 = _mm512_dpbusd_epi32(cs0, ones, v[0]);
                if (nv > 1) cs1 = _mm512_dpbusd_epi32(cs1, ones, v[1]);
                if (nv > 2) cs2 = _mm512_dpbusd_epi32(cs2, ones, v[2]);
                if (nv > 3) cs3 = _mm512_dpbusd_epi32(cs3, ones, v[3]);
            }
            int8_t *d = dst + (g * stride + n0) * 4;
            for (int q = 0; q < 4; q++) /* a constant count, unrolled: v stays in registers */
                if (q < nv) _mm512_storeu_si512(d + 64 * q, flip ? _mm512_xor_si512(v[q], x80) : v[q]);
        }
        if (colsum) {
            const __m512i cs[4] = {cs0, cs1, cs2, cs3};
            for (int q = 0; q < nv; q++)
                _mm512_storeu_si512(colsum + n0 + 16 * q,
                                    _mm512_add_epi32(_mm512_loadu_si512(colsum + n0 + 16 * q), cs[q]));
        }
    }
}

/* The four rows r[0..3] (NULL: zeros) over columns n < N -> d[n][4], each byte XOR flip
 * (0x80: flipped to unsigned, 0: as they are): exactly N columns (the last 16 by a masked
 * store), the caller's next columns left alone. */
WG_INLINE void pack_group_exact(const int8_t *const r[4], int64_t N, int8_t *d, uint8_t flip)
{
    const __m512i x80 = _mm512_set1_epi8((char)flip);
    for (int64_t n0 = 0; n0 < N; n0 += 64) {
        __m512i v[4];
        int nv = pack_piece(r, n0, N - n0, v);
        for (int q = 0; q < 4; q++) { /* a constant count, unrolled: v stays in registers */
            int64_t c0 = n0 + 16 * q;
            if (q >= nv) break;
            __m512i u = _mm512_xor_si512(v[q], x80);
            if (N - c0 < 16) _mm512_mask_storeu_epi32(d + c0 * 4, (__mmask16)(0xffffu >> (16 - (N - c0))), u);
            else _mm512_storeu_si512(d + c0 * 4, u);
        }
    }
}

/* corr[n] = -128 * colsum[n], modulo 2^32 (n < np, a multiple of 16). */
static void make_corr(const int32_t *colsum, int32_t *corr, int64_t np)
{
    for (int64_t n = 0; n < np; n += 16) {
        __m512i cs = _mm512_loadu_si512(colsum + n);
        _mm512_storeu_si512(corr + n, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(cs, 7)));
    }
}

/* ---- the register tile -------------------------------------------------------- */

typedef struct tile_args {
    const int8_t *a;      /* left operand: row 0 of the tile, group 0 */
    int64_t ars, aks;     /* bytes between its rows, between its groups of four k */
    int64_t groups;       /* whole groups of four k */
    int kt;               /* 0..3 more k in a last partial group (rows of an unpacked A end there) */
    const int8_t *b;      /* packed B at the tile's first column */
    int64_t bks;          /* bytes between groups of packed B (4 np) */
    const int32_t *corr;  /* the correction: at the tile's first column (flip), or row (packed) */
    int32_t *c;           /* C at the tile's first row and column */
    int64_t ldc;
    int mr;               /* rows to compute, 1..MR (rows beyond repeat the last, unstored) */
    __mmask16 last;       /* columns of the last zmm */
    bool acc;             /* add to C (nn, tn) or overwrite it (nt) */
} tile_args;

/* MR rows x NZ zmm of C (MR * NZ <= 24 accumulators, MR <= 8, NZ <= 12). Two kinds:
 *   flip (nt, nn): A unpacked, its bytes broadcast as u = a XOR 0x80, packed B signed,
 *       corr per column (-128 sum_k b[k][n]);
 *   packed (tn): A packed and broadcast signed, packed B already flipped, corr per row
 *       (-128 sum_k a[k][m]).
 * The accumulators are named variables s<row>_<zmm> (gcc keeps an array of them in
 * memory): the macros expand every row and zmm, and those beyond MR and NZ (constants
 * here) vanish. Each group of four k loads NZ zmm of B, then row by row broadcasts the
 * row's four bytes into NZ dot products. */
#define WG_R8(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7)
#define WG_Z12(F, r) F(r, 0) F(r, 1) F(r, 2) F(r, 3) F(r, 4) F(r, 5) F(r, 6) F(r, 7) F(r, 8) F(r, 9) F(r, 10) F(r, 11)
#define WG_MASK(z) ((z) == NZ - 1 ? t->last : (__mmask16)0xffff)

WG_INLINE void tile(const int MR, const int NZ, const bool flip, const tile_args *t)
{
    const __m512i x80 = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
    const int mr = t->mr;
    const int8_t *b = t->b;
    int64_t off = 0;
#define WG_INIT(r, z)                                                                                       \
    __m512i s##r##_##z = zero;                                                                              \
    if (r < MR && z < NZ) {                                                                                 \
        s##r##_##z = flip ? _mm512_loadu_si512(t->corr + 16 * z)                                            \
                          : _mm512_set1_epi32(t->corr[r < mr ? r : mr - 1]);                                \
        if (t->acc && r < mr)                                                                               \
            s##r##_##z = _mm512_add_epi32(s##r##_##z,                                                       \
                                          _mm512_maskz_loadu_epi32(WG_MASK(z), t->c + r * t->ldc + 16 * z)); \
    }
#define WG_INIT_ROW(r)                                                                                      \
    const int8_t *a##r = t->a + (r < mr ? r : mr - 1) * t->ars;                                             \
    WG_Z12(WG_INIT, r)
    WG_R8(WG_INIT_ROW)
#undef WG_INIT_ROW
#undef WG_INIT
#define WG_LOAD_B(r, z) __m512i b##z = z < NZ ? _mm512_loadu_si512(b + 64 * z) : zero;
#define WG_DOT(r, z)                                                                                        \
    if (z < NZ)                                                                                             \
        s##r##_##z = flip ? _mm512_dpbusd_epi32(s##r##_##z, av, b##z) : _mm512_dpbusd_epi32(s##r##_##z, b##z, av);
#define WG_ROW(r)                                                                                           \
    if (r < MR) {                                                                                           \
        __m512i av = WG_GROUP_BCAST(r);                                                                     \
        if (flip) av = _mm512_xor_si512(av, x80);                                                           \
        WG_Z12(WG_DOT, r)                                                                                   \
    }
#define WG_GROUP WG_Z12(WG_LOAD_B, 0) WG_R8(WG_ROW)
    for (int64_t g = 0; g < t->groups; g++, off += t->aks, b += t->bks) {
#define WG_GROUP_BCAST(r) _mm512_set1_epi32((int)load_u32(a##r + off))
        WG_GROUP
#undef WG_GROUP_BCAST
    }
    if (t->kt) { /* the last k % 4 of a row: a masked load reads no byte past it */
        const __mmask16 kt = (__mmask16)((1u << t->kt) - 1);
#define WG_GROUP_BCAST(r) _mm512_broadcastd_epi32(_mm_maskz_loadu_epi8(kt, a##r + off))
        WG_GROUP
#undef WG_GROUP_BCAST
    }
#undef WG_GROUP
#undef WG_ROW
#undef WG_DOT
#undef WG_LOAD_B
#define WG_STORE(r, z)                                                                                      \
    if (r < MR && z < NZ && r < mr) _mm512_mask_storeu_epi32(t->c + r * t->ldc + 16 * z, WG_MASK(z), s##r##_##z);
#define WG_STORE_ROW(r) WG_Z12(WG_STORE, r)
    WG_R8(WG_STORE_ROW)
#undef WG_STORE_ROW
#undef WG_STORE
}
#undef WG_MASK
#undef WG_Z12
#undef WG_R8

typedef void tile_fn(const tile_args *t);
#define WG_TILE(MR, NZ, V, FLIP) \
    static void tile_##MR##x##NZ##_##V(const tile_args *t) { tile(MR, NZ, FLIP, t); }
/* nt (flip) and tn (packed): 8 rows up to 3 zmm, 6 rows x 4 zmm (24 accumulators) */
WG_TILE(8, 1, flip, true)
WG_TILE(8, 2, flip, true)
WG_TILE(8, 3, flip, true)
WG_TILE(6, 1, flip, true)
WG_TILE(6, 2, flip, true)
WG_TILE(6, 3, flip, true)
WG_TILE(6, 4, flip, true)
WG_TILE(8, 1, packed, false)
WG_TILE(8, 2, packed, false)
WG_TILE(8, 3, packed, false)
WG_TILE(6, 1, packed, false)
WG_TILE(6, 2, packed, false)
WG_TILE(6, 3, packed, false)
WG_TILE(6, 4, packed, false)
/* nn: one row, up to 12 zmm */
WG_TILE(1, 1, flip, true)
WG_TILE(1, 2, flip, true)
WG_TILE(1, 3, flip, true)
WG_TILE(1, 4, flip, true)
WG_TILE(1, 5, flip, true)
WG_TILE(1, 6, flip, true)
WG_TILE(1, 7, flip, true)
WG_TILE(1, 8, flip, true)
WG_TILE(1, 9, flip, true)
WG_TILE(1, 10, flip, true)
WG_TILE(1, 11, flip, true)
WG_TILE(1, 12, flip, true)
#undef WG_TILE

/* How a product walks C: blocks of mr rows, each across all column blocks of bz zmm
 * (16 bz columns; the last block may be narrower), with fns[nz] the tile nz zmm wide. */
typedef struct walk {
    int mr, bz;
    bool flip; /* the tiles' kind: corrections per column (flip) or per row (packed) */
    tile_fn *const *fns;
} walk;

static tile_fn *const k_rows8[2][4] = {{NULL, tile_8x1_packed, tile_8x2_packed, tile_8x3_packed},
                                       {NULL, tile_8x1_flip, tile_8x2_flip, tile_8x3_flip}};
static tile_fn *const k_rows6[2][5] = {{NULL, tile_6x1_packed, tile_6x2_packed, tile_6x3_packed, tile_6x4_packed},
                                       {NULL, tile_6x1_flip, tile_6x2_flip, tile_6x3_flip, tile_6x4_flip}};
static tile_fn *const k_row1[13] = {NULL,         tile_1x1_flip, tile_1x2_flip, tile_1x3_flip,  tile_1x4_flip,
                                    tile_1x5_flip, tile_1x6_flip, tile_1x7_flip, tile_1x8_flip,  tile_1x9_flip,
                                    tile_1x10_flip, tile_1x11_flip, tile_1x12_flip};

/* Register blocks, for products whose C stays in cache or is written once (nt, tn): each
 * load of B serves 6 or 8 rows. Blocks of 3 zmm when the zmm divide by 3 (N = 48, 144,
 * 288, 576), else of 4 (or all of them, when fewer). */
static walk walk_blocks(int64_t N, bool flip)
{
    int64_t nz = (N + 15) / 16;
    int bz = nz % 3 == 0 ? 3 : nz < 4 ? (int)nz : 4;
    return bz == 4 ? (walk){6, 4, flip, k_rows6[flip]} : (walk){8, bz, flip, k_rows8[flip]};
}

/* One row at a time, for nn, which reads and writes all of a large C for few k: memory
 * then streams C in order (a block of several rows fetches from as many places at once,
 * which the hardware prefetchers follow badly: half the bandwidth). Even blocks of up
 * to 12 zmm. */
static walk walk_row(int64_t N)
{
    int64_t nz = (N + 15) / 16, nb = (nz + 11) / 12;
    return (walk){1, (int)((nz + nb - 1) / nb), true, k_row1};
}

/* Rows m0 .. m1 - 1 of C. proto: a and c at row 0, column 0. */
static void run_rows(const tile_args *proto, walk w, int64_t N, int64_t m0, int64_t m1)
{
    for (int64_t m = m0; m < m1; m += w.mr) {
        tile_args t = *proto;
        t.a = proto->a + m * proto->ars;
        t.mr = (int)(m1 - m < w.mr ? m1 - m : w.mr);
        for (int64_t n0 = 0; n0 < N; n0 += 16 * w.bz) {
            int64_t nc = N - n0 < 16 * w.bz ? N - n0 : 16 * w.bz;
            int nz = (int)((nc + 15) / 16);
            t.b = proto->b + n0 * 4;
            t.corr = proto->corr + (w.flip ? n0 : m);
            t.c = proto->c + m * proto->ldc + n0;
            t.last = (__mmask16)(0xffffu >> (16 * nz - nc));
            w.fns[nz](&t);
        }
    }
}

/* nt and nn after packing: rows of C split across threads (guided: large pieces first,
 * small ones at the end, so a thread the system delays is made up for). */
static void run_rows_threaded(const tile_args *proto, walk w, int64_t M, int64_t N, bool threads)
{
    int64_t tasks = (M + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    (void)threads; /* without OpenMP */
#pragma omp parallel for schedule(guided) if (threads && tasks > 1)
    for (int64_t i = 0; i < tasks; i++) {
        int64_t m0 = i * ROWS_PER_TASK, m1 = m0 + ROWS_PER_TASK < M ? m0 + ROWS_PER_TASK : M;
        run_rows(proto, w, N, m0, m1);
    }
}

/* ---- the three products ----------------------------------------------------- */

static void nt(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                        int32_t *C, int64_t ldc)
{
    int64_t np = round16(N), groups = (K + 3) / 4;
    int8_t *bp = wg_gemm_alloc64((size_t)(groups * np * 4) + 2 * (size_t)np * sizeof(int32_t));
    int32_t *colsum = (int32_t *)(bp + groups * np * 4), *corr = colsum + np;
    pack_nt(B, ldb, N, K, bp, np, colsum);
    make_corr(colsum, corr, np);
    tile_args proto = {.a = A, .ars = lda, .aks = 4, .groups = K / 4, .kt = (int)(K % 4), .b = bp,
                       .bks = np * 4, .corr = corr, .c = C, .ldc = ldc, .acc = false};
    run_rows_threaded(&proto, walk_blocks(N, true), M, N, wg_gemm_worth_threads(M, N, K));
    free(bp);
}

static void nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
               int32_t *C, int64_t ldc, bool acc)
{
    int64_t np = round16(N), groups = (K + 3) / 4;
    int8_t *bp = wg_gemm_alloc64((size_t)(groups * np * 4) + 2 * (size_t)np * sizeof(int32_t));
    int32_t *colsum = (int32_t *)(bp + groups * np * 4), *corr = colsum + np;
    memset(colsum, 0, (size_t)np * sizeof(int32_t));
    wg_gemm_vnni_pack_rows(B, ldb, K, N, bp, np, false, colsum);
    make_corr(colsum, corr, np);
    tile_args proto = {.a = A, .ars = lda, .aks = 4, .groups = K / 4, .kt = (int)(K % 4), .b = bp,
                       .bks = np * 4, .corr = corr, .c = C, .ldc = ldc, .acc = acc};
    /* Register blocks (the 6 or 8 rows of a block share each load of B) when one block
     * spans the rows of C, which it then reads and writes in order, or when packed B
     * outgrows L1; else one row at a time. */
    walk w = walk_blocks(N, true);
    if (np > 16 * w.bz && groups * np * 4 <= NN_ROW_WALK_MAX_B) w = walk_row(N);
    run_rows_threaded(&proto, w, M, N, wg_gemm_worth_threads(M, N, K));
    free(bp);
}

/* ---- tn ------------------------------------------------------------------------
 * C[M][N] += sum over k < K of A[k][m] B[k][n], in chunks of TN_CHUNK rows of A and B:
 * both packed (B flipped to unsigned, with the correction -128 sum_k a[k][m] per row of
 * C), then the tiles. With several left operands A_p sharing B (E2's error parts), the
 * A_p are packed side by side, part p at columns p M .. p M + M - 1 of packed A, as one
 * operand of nparts M columns whose rows of C are stacked by part: B is packed once for
 * all of them. */

/* One worker's packing buffers for chunks of up to TN_CHUNK rows. */
typedef struct tn_bufs {
    int8_t *ap;           /* packed A [TN_CHUNK / 4][mp][4] */
    int8_t *bp;           /* packed, flipped B [TN_CHUNK / 4][np][4] */
    int32_t *asum, *corr; /* per column of packed A: sum_k a[k][m], and -128 times it */
    int64_t mp, np;
} tn_bufs;

/* Packed A's width: part p's 16-column stores reach p M + round16(M). */
static int64_t tn_mp(int64_t M, int nparts) { return round16((nparts - 1) * M + round16(M)); }

static size_t tn_bufs_bytes(int64_t M, int64_t N, int nparts)
{
    int64_t mp = tn_mp(M, nparts), np = round16(N);
    return (size_t)(TN_CHUNK * (mp + np)) + 2 * (size_t)mp * sizeof(int32_t);
}

static tn_bufs tn_bufs_at(void *buf, int64_t M, int64_t N, int nparts)
{
    tn_bufs b = {.ap = buf, .mp = tn_mp(M, nparts), .np = round16(N)};
    b.bp = b.ap + TN_CHUNK * b.mp;
    b.asum = (int32_t *)(b.bp + TN_CHUNK * b.np);
    b.corr = b.asum + b.mp;
    return b;
}

/* Pack rows k0 .. k0 + kr - 1 (kr <= TN_CHUNK) of the parts. They go in order: part
 * p's zero padding past its M columns is overwritten by part p + 1 (and adds zeros to
 * its column sums). */
static void tn_pack_a(int64_t M, int64_t k0, int64_t kr, int nparts, const int8_t *const *A, int64_t lda,
                      const tn_bufs *b)
{
    memset(b->asum, 0, (size_t)b->mp * sizeof(int32_t));
    for (int p = 0; p < nparts; p++)
        wg_gemm_vnni_pack_rows(A[p] + k0 * lda, lda, kr, M, b->ap + p * M * 4, b->mp, false, b->asum + p * M);
    make_corr(b->asum, b->corr, b->mp);
}

/* The tiles of a packed chunk of kr rows: C's rows 0 .. mrows - 1 (nparts M), all N columns. */
static void tn_tiles(int64_t mrows, int64_t N, int64_t kr, int32_t *C, int64_t ldc, walk w, const tn_bufs *b)
{
    tile_args proto = {.a = b->ap, .ars = 4, .aks = b->mp * 4, .groups = (kr + 3) / 4, .kt = 0, .b = b->bp,
                       .bks = b->np * 4, .corr = b->corr, .c = C, .ldc = ldc, .acc = true};
    run_rows(&proto, w, N, 0, mrows);
}

/* Threads take even shares of the chunks; thread 0 adds into C, the others into
 * zeroed partial copies of C (M x np), added to C at the end (modulo 2^32, as
 * everything here, so which thread took which chunk does not matter). */
void wg_gemm_vnni_tn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                        int32_t *C, int64_t ldc)
{
    int64_t np = round16(N), chunks = (K + TN_CHUNK - 1) / TN_CHUNK;
    size_t bb = (tn_bufs_bytes(M, N, 1) + 63) / 64 * 64, pb = (size_t)(M * np) * sizeof(int32_t), per;
    char *buf;
    int nth = wg_gemm_tn_scratch(M, N, K, chunks, np, bb, &per, &buf);
    walk w = walk_blocks(N, false);

#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        char *mine = buf + per * (size_t)t;
        tn_bufs bufs = tn_bufs_at(mine, M, N, 1);
        int32_t *part = (int32_t *)(mine + bb);
        int32_t *c = t == 0 ? C : part;
        int64_t ldcc = t == 0 ? ldc : np;
        if (t > 0) memset(part, 0, pb);
        /* an even share of the chunks, in one run: batches taken as they come left a
         * thread idle for up to a batch at the end (64x576x6272: 25 chunks, 16 to one) */
        int64_t c1 = chunks * (t + 1) / T;
        for (int64_t ch = chunks * t / T; ch < c1; ch++) {
            int64_t k0 = ch * TN_CHUNK, kr = K - k0 < TN_CHUNK ? K - k0 : TN_CHUNK;
            tn_pack_a(M, k0, kr, 1, &A, lda, &bufs);
            wg_gemm_vnni_pack_rows(B + k0 * ldb, ldb, kr, N, bufs.bp, bufs.np, true, NULL);
            if (ch + 1 < c1) /* the next chunk into L2 while this one computes */
                for (int64_t k = k0 + kr; k < k0 + kr + TN_CHUNK && k < K; k++) {
                    for (int64_t n = 0; n < N; n += 64) _mm_prefetch((const char *)(B + k * ldb + n), _MM_HINT_T1);
                    for (int64_t m = 0; m < M; m += 64) _mm_prefetch((const char *)(A + k * lda + m), _MM_HINT_T1);
                }
            tn_tiles(M, N, kr, c, ldcc, w, &bufs);
        }
        wg_gemm_add_partials(C, ldc, M, N, buf, per, bb, np);
    }
    free(buf);
}

size_t wg_gemm_vnni_tn_gather_scratch(int64_t M, int64_t N, int nparts) { return tn_bufs_bytes(M, N, nparts); }

/* One group of four gathered rows r0, r0 + 16, r0 + 32, r0 + 48 (four neighbouring
 * pixels of a stride-1 convolution on 16 channels), run by run, XOR flip, into d: one
 * 64-byte load holds 16 columns of all four rows, and one byte permutation (vpermb)
 * packs them. vpermb is AVX512_VBMI (Ice Lake, Zen 4 and later; not Cascade Lake): the
 * caller checks the processor has it. */
__attribute__((target("avx512vbmi"))) static void pack_group_spread16(const int8_t *r0, int nruns, int64_t run,
                                                                       int64_t run_ld, int8_t *d, uint8_t flip)
{
    /* byte 4q + j of the packed 16 columns is byte 16j + q of the load: column q of row j */
    static const int8_t k_spread16[64] = {0, 16, 32, 48, 1, 17, 33, 49, 2, 18, 34, 50, 3, 19, 35, 51,
                                          4, 20, 36, 52, 5, 21, 37, 53, 6, 22, 38, 54, 7, 23, 39, 55,
                                          8, 24, 40, 56, 9, 25, 41, 57, 10, 26, 42, 58, 11, 27, 43, 59,
                                          12, 28, 44, 60, 13, 29, 45, 61, 14, 30, 46, 62, 15, 31, 47, 63};
    const __m512i spread16 = _mm512_loadu_si512(k_spread16), x80 = _mm512_set1_epi8((char)flip);
    const int64_t whole16 = run / 16 * 16; /* columns the permutation packs; the rest (< 16) below */
    for (int i = 0; i < nruns; i++) {
        const int8_t *p = r0 + i * run_ld;
        int8_t *di = d + i * run * 4;
        /* the load ends at byte n + 15 of row 3's run: inside it */
        for (int64_t n = 0; n < whole16; n += 16) {
            __m512i v = _mm512_permutexvar_epi8(spread16, _mm512_loadu_si512(p + n));
            _mm512_storeu_si512(di + n * 4, _mm512_xor_si512(v, x80));
        }
        if (whole16 < run) {
            const int8_t *ri[4] = {p + whole16, p + 16 + whole16, p + 32 + whole16, p + 48 + whole16};
            pack_group_exact(ri, run - whole16, di + whole16 * 4, flip);
        }
    }
}

/* B's gathered rows brow[0 .. kr - 1], each byte XOR flip, into bp [ceil(kr / 4)][np][4]:
 * each group of four rows run by run, each run's columns written exactly (the columns
 * past nruns run, up to np, are the caller's). The last group's rows past kr repeat row
 * kr - 1: whatever B holds there meets the zeros of packed A. spread16: the processor
 * has vpermb for groups whose rows start 16 bytes apart. */
void wg_gemm_vnni_pack_gather(const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int64_t kr,
                              bool spread16, uint8_t flip, int8_t *bp, int64_t np)
{
    for (int64_t g = 0; 4 * g < kr; g++) {
        const int8_t *r[4], *ri[4];
        for (int j = 0; j < 4; j++) r[j] = brow[4 * g + j < kr ? 4 * g + j : kr - 1];
        int8_t *d = bp + g * np * 4;
        uintptr_t a0 = (uintptr_t)r[0];
        if (spread16 && (uintptr_t)r[1] == a0 + 16 && (uintptr_t)r[2] == a0 + 32 && (uintptr_t)r[3] == a0 + 48) {
            pack_group_spread16(r[0], nruns, run, run_ld, d, flip);
            continue;
        }
        for (int i = 0; i < nruns; i++) {
            for (int j = 0; j < 4; j++) ri[j] = r[j] + i * run_ld;
            pack_group_exact(ri, run, d + i * run * 4, flip);
        }
    }
}

/* On the calling thread, chunk by chunk: the parts packed side by side, B gathered
 * and packed once for all of them, then the tiles over all nparts M rows of C. */
void wg_gemm_vnni_tn_gather(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                            const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C, int64_t ldc,
                            void *scratch)
{
    __builtin_cpu_init();
    const bool spread16 = __builtin_cpu_supports("avx512vbmi");
    int64_t N = nruns * run;
    void *own = scratch != NULL ? NULL : wg_gemm_alloc64(tn_bufs_bytes(M, N, nparts));
    tn_bufs bufs = tn_bufs_at(scratch != NULL ? scratch : own, M, N, nparts);
    if (bufs.np > N) /* B's padding columns: what the tiles compute from them is never stored */
        for (int64_t g = 0; g < TN_CHUNK / 4; g++)
            memset(bufs.bp + (g * bufs.np + N) * 4, 0, (size_t)(bufs.np - N) * 4);
    walk w = walk_blocks(N, false);
    for (int64_t k0 = 0; k0 < K; k0 += TN_CHUNK) {
        int64_t kr = K - k0 < TN_CHUNK ? K - k0 : TN_CHUNK;
        tn_pack_a(M, k0, kr, nparts, A, lda, &bufs);
        wg_gemm_vnni_pack_gather(brow + k0, nruns, run, run_ld, kr, spread16, 0x80, bufs.bp, bufs.np);
        /* the parts' next chunk into L2 while this one computes (the parts stream from
         * memory; B, gathered from a block of images, is typically in cache already) */
        int64_t k1 = k0 + kr, kn = K - k1 < TN_CHUNK ? K - k1 : TN_CHUNK;
        for (int p = 0; p < nparts && kn > 0; p++) {
            const char *a = (const char *)(A[p] + k1 * lda);
            if (lda == M) /* rows side by side: one stream */
                for (int64_t i = 0; i < kn * M; i += 64) _mm_prefetch(a + i, _MM_HINT_T1);
            else
                for (int64_t k = 0; k < kn; k++)
                    for (int64_t m = 0; m < M; m += 64) _mm_prefetch(a + k * lda + m, _MM_HINT_T1);
        }
        tn_tiles(nparts * M, N, kr, C, ldc, w, &bufs);
    }
    free(own);
}

const wg_gemm_kernels wg_gemm_vnni = {
    .nt = nt,
    .nn = nn,
    .tn = wg_gemm_vnni_tn,
    .tn_gather_scratch = wg_gemm_vnni_tn_gather_scratch,
    .tn_gather = wg_gemm_vnni_tn_gather};

#else
typedef int wg_gemm_vnni_unused; /* ISO C forbids an empty translation unit */
#endif
