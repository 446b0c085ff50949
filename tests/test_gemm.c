/* test_gemm.c: the matrix products of gemm.h (int8 nt/nn/tn, float32 nn/tn).
 *
 * int8: every product is compared bit for bit with its scalar _ref and with an
 * independent triple loop written here in int64, over random and hand-picked shapes
 * (ragged: M, N, K in 1..70, leading dimensions wider than the rows), values with the
 * extremes -128, -127, 127 and runs of zeros (the kernels skip a == 0), nn and tn
 * accumulating into a nonzero C, nt and nn_overwrite over junk in C that must vanish,
 * and K = 0 (nt and nn_overwrite zero C, nn and tn leave it). The bytes between rows (leading-dimension padding)
 * hold junk that must not leak into C, and C's padding must stay untouched. One test
 * runs K = WG_GEMM_S8_MAX_K at the extremes, up to the int32 bound itself.
 * tn_gather (backward-weight: one or two left operands sharing a B whose rows are
 * gathered as runs) against its _ref and the same independent loop, over hand-picked
 * and random shapes: runs of 1..100 bytes (below, at and across the 16- and 64-column
 * steps of the packing), K across the 256-row chunks and not a multiple of 4, rows
 * 16 bytes apart (the permuted path, whole and with a ragged last 16 columns) and not,
 * with and without the caller's scratch; and at K = WG_GEMM_S8_MAX_K up to the bound.
 *
 * float32: nn and tn against a double triple loop, within the stated bound below, and
 * bit-exact on integer-valued data (every partial sum is then an exact float). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gemm.h"

#include "test_ref.h"

/* OP_NN_SET: nn_overwrite, nn's operands without C's old values */
typedef enum { OP_NT, OP_NN, OP_TN, OP_NN_SET } gemm_op;
static const char *const k_op_names[] = {"nt", "nn", "tn", "nn_overwrite"};

static bool overwrites(gemm_op op) { return op == OP_NT || op == OP_NN_SET; }

typedef void gemm_s8_fn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                        int32_t *C, int64_t ldc);
/* nn_overwrite's reference: C's rows zeroed, then nn's */
static void nn_overwrite_ref(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                             int64_t ldb, int32_t *C, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++) memset(C + m * ldc, 0, (size_t)N * sizeof(int32_t));
    wg_gemm_s8_nn_ref(M, N, K, A, lda, B, ldb, C, ldc);
}

static gemm_s8_fn *const k_fast[] = {wg_gemm_s8_nt, wg_gemm_s8_nn, wg_gemm_s8_tn, wg_gemm_s8_nn_overwrite};
static gemm_s8_fn *const k_ref[] = {wg_gemm_s8_nt_ref, wg_gemm_s8_nn_ref, wg_gemm_s8_tn_ref, nn_overwrite_ref};

static const char *kernels_name(void) { return wg_gemm_path_name(wg_gemm_path_current()); }

/* ---- shapes ------------------------------------------------------------------------ */

typedef struct shape {
    int64_t M, N, K;
    int64_t lda, ldb, ldc;
    int64_t arows, brows; /* rows stored of A and B (ld elements each) */
} shape;

/* Hand-picked shapes first (single rows/columns, multiples of 4 and their neighbours
 * for the four-column blocks of nt; then shapes of more than 96 rows, which the
 * kernels split across threads, with ragged tails; whole 16s of rows and columns, which
 * AMX's tn runs on tiles, K across its 512-row chunks), then random ones in 1..70. */
static shape pick_shape(tr_rng *r, gemm_op op, int it)
{
    static const int64_t fixed[][3] = {{1, 1, 1},   {1, 70, 1},   {70, 1, 70},  {1, 1, 69},    {4, 4, 4},
                                       {3, 5, 7},   {8, 9, 3},    {5, 3, 2},    {67, 69, 71},  {2, 64, 33},
                                       {7, 12, 1},  {13, 4, 8},   {1000, 200, 300}, {517, 77, 45}, {97, 16, 144},
                                       {4099, 16, 9}, {32, 48, 1001}, {64, 144, 2050}, {16, 16, 5}};
    shape s;
    if (it < (int)(sizeof fixed / sizeof fixed[0])) {
        s.M = fixed[it][0], s.N = fixed[it][1], s.K = fixed[it][2];
    } else {
        s.M = tr_range(r, 1, 70), s.N = tr_range(r, 1, 70), s.K = tr_range(r, 1, 70);
    }
    int64_t acols = op == OP_TN ? s.M : s.K, bcols = op == OP_NT ? s.K : s.N;
    s.arows = op == OP_TN ? s.K : s.M;
    s.brows = op == OP_NT ? s.N : s.K;
    /* a third of the time tight (ld == row length), else 1..5 wider */
    s.lda = acols + (tr_next(r) % 3 == 0 ? 0 : tr_range(r, 1, 5));
    s.ldb = bcols + (tr_next(r) % 3 == 0 ? 0 : tr_range(r, 1, 5));
    s.ldc = s.N + (tr_next(r) % 3 == 0 ? 0 : tr_range(r, 1, 5));
    return s;
}

/* ---- int8 ---------------------------------------------------------------------------- */

/* zero_pct percent zeros, the extremes often, -128 included, else uniform. */
static int8_t rand_s8(tr_rng *r, int zero_pct)
{
    if ((int)(tr_next(r) % 100) < zero_pct) return 0;
    switch (tr_next(r) % 16) {
    case 0: return 127;
    case 1: return -127;
    case 2: return -128;
    default: return (int8_t)tr_range(r, -127, 127);
    }
}

/* rows x ld bytes, all random (the padding columns are junk the product must ignore). */
static int8_t *rand_mat_s8(tr_rng *r, int64_t rows, int64_t ld, int zero_pct)
{
    int8_t *m = malloc((size_t)(rows * ld));
    for (int64_t i = 0; i < rows * ld; i++) m[i] = rand_s8(r, zero_pct);
    return m;
}

/* The independent reference: C0 (or 0 for nt) plus the sum of products, in int64. */
static int64_t naive_s8(gemm_op op, const shape *s, const int8_t *A, const int8_t *B, const int32_t *C0, int64_t m,
                        int64_t n)
{
    int64_t acc = overwrites(op) ? 0 : C0[m * s->ldc + n];
    for (int64_t k = 0; k < s->K; k++) {
        int64_t a = op == OP_TN ? A[k * s->lda + m] : A[m * s->lda + k];
        int64_t b = op == OP_NT ? B[n * s->ldb + k] : B[k * s->ldb + n];
        acc += a * b;
    }
    return acc;
}

/* Run fast and _ref on copies of C0; check both against naive_s8 and the padding of C. */
static void check_s8(gemm_op op, const shape *s, const int8_t *A, const int8_t *B, const int32_t *C0, const char *what)
{
    size_t cbytes = (size_t)(s->M * s->ldc) * sizeof(int32_t);
    /* 64-byte aligned: whether a row of C starts on a cache line is then up to ldc */
    int32_t *cf = aligned_alloc(64, (cbytes + 63) / 64 * 64), *cr = malloc(cbytes);
    memcpy(cf, C0, cbytes);
    memcpy(cr, C0, cbytes);
    k_fast[op](s->M, s->N, s->K, A, s->lda, B, s->ldb, cf, s->ldc);
    k_ref[op](s->M, s->N, s->K, A, s->lda, B, s->ldb, cr, s->ldc);
    for (int64_t m = 0; m < s->M; m++)
        for (int64_t j = 0; j < s->ldc; j++) {
            int64_t i = m * s->ldc + j;
            int64_t want = j < s->N ? naive_s8(op, s, A, B, C0, m, j) : C0[i];
            TR_FAIL_IF(want < INT32_MIN || want > INT32_MAX, "test bug: %s overflows int32", what);
            TR_EXPECT_I64(want, cf[i],
                          "%s wg_gemm_s8_%s (%s kernels) M %" PRId64 " N %" PRId64 " K %" PRId64 " ld %" PRId64
                          "/%" PRId64 "/%" PRId64 ": C[%" PRId64 "][%" PRId64 "]%s",
                          what, k_op_names[op], kernels_name(), s->M, s->N, s->K, s->lda, s->ldb, s->ldc, m, j,
                          j < s->N ? "" : " (padding)");
            TR_EXPECT_I64(want, cr[i], "%s wg_gemm_s8_%s_ref M %" PRId64 " N %" PRId64 " K %" PRId64
                          ": C[%" PRId64 "][%" PRId64 "]",
                          what, k_op_names[op], s->M, s->N, s->K, m, j);
        }
    free(cf);
    free(cr);
}

static void run_s8_random(gemm_op op, uint64_t seed)
{
    tr_rng r = {seed};
    for (int it = 0; it < 300; it++) {
        shape s = pick_shape(&r, op, it);
        static const int zero_pcts[] = {0, 0, 30, 90};
        int zp = zero_pcts[tr_next(&r) % 4];
        int8_t *A = rand_mat_s8(&r, s.arows, s.lda, zp), *B = rand_mat_s8(&r, s.brows, s.ldb, zp / 3);
        int32_t *C0 = malloc((size_t)(s.M * s.ldc) * sizeof(int32_t));
        /* nt overwrites C (junk must vanish); nn and tn add to it: a nonzero C, zero now and then */
        bool zero_c = !overwrites(op) && it % 7 == 3;
        for (int64_t i = 0; i < s.M * s.ldc; i++)
            C0[i] = zero_c ? 0 : (int32_t)tr_range(&r, -(INT64_C(1) << 30), INT64_C(1) << 30);
        char what[32];
        snprintf(what, sizeof what, "iteration %d:", it);
        check_s8(op, &s, A, B, C0, what);
        free(A);
        free(B);
        free(C0);
    }
}

static void test_s8_nt(void **state)
{
    (void)state;
    run_s8_random(OP_NT, 0x6e74);
}

static void test_s8_nn(void **state)
{
    (void)state;
    run_s8_random(OP_NN, 0x6e6e);
}

static void test_s8_tn(void **state)
{
    (void)state;
    run_s8_random(OP_TN, 0x746e);
}

/* C of more than 4 MiB, which AMX writes around the caches (nt; nn_overwrite with a
 * short K): rows on cache lines (ldc 144) and not (ldc 131), a ragged N, and N = 16
 * (one tile wide). B is [K][N] for nn_overwrite, [N][K] for nt. */
static void check_large_c(gemm_op op, uint64_t seed)
{
    tr_rng r = {seed};
    const shape big[] = {{.M = 8300, .N = 131, .K = 20, .lda = 21, .ldc = 144},
                         {.M = 8300, .N = 131, .K = 31, .lda = 31, .ldc = 131},
                         {.M = 70000, .N = 16, .K = 16, .lda = 16, .ldc = 16}};
    for (int i = 0; i < 3; i++) {
        shape s = big[i];
        s.arows = s.M;
        s.brows = op == OP_NT ? s.N : s.K;
        s.ldb = (op == OP_NT ? s.K : s.N) + i % 2;
        int8_t *A = rand_mat_s8(&r, s.arows, s.lda, 20), *B = rand_mat_s8(&r, s.brows, s.ldb, 0);
        int32_t *C0 = malloc((size_t)(s.M * s.ldc) * sizeof(int32_t));
        for (int64_t j = 0; j < s.M * s.ldc; j++) C0[j] = (int32_t)tr_range(&r, -1000000, 1000000);
        check_s8(op, &s, A, B, C0, "large C:");
        free(A), free(B), free(C0);
    }
}

static void test_s8_nn_overwrite(void **state)
{
    (void)state;
    run_s8_random(OP_NN_SET, 0x6e30);
    check_large_c(OP_NN_SET, 0x6e31);
}

static void test_s8_nt_large_c(void **state)
{
    (void)state;
    check_large_c(OP_NT, 0x6e32);
}

/* K = 0: an empty sum, so C = 0 where the product overwrites and C unchanged where it adds. */
static void test_s8_k0(void **state)
{
    (void)state;
    const int8_t a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    for (int op = OP_NT; op <= OP_NN_SET; op++) {
        int32_t c[2 * 3] = {11, 12, 13, 14, 15, 16};
        k_fast[op](2, 2, 0, a, 2, b, 2, c, 3);
        for (int i = 0; i < 6; i++) {
            int32_t want = i % 3 == 2 || !overwrites((gemm_op)op) ? 11 + i : 0;
            TR_EXPECT_I64(want, c[i], "wg_gemm_s8_%s (%s kernels) with K = 0: C[%d][%d]", k_op_names[op],
                          kernels_name(), i / 3, i % 3);
        }
    }
}

/* K = WG_GEMM_S8_MAX_K, every product +-127^2 of one sign per output: the sums reach
 * +-2,114,060,288; nn and tn start from C0 = +-(2^31 - 1 - that), so they end exactly
 * at +-INT32_MAX without an intermediate overflow (the partial sums are monotonic). */
static void test_s8_max_k(void **state)
{
    (void)state;
    const int64_t K = WG_GEMM_S8_MAX_K, M = 2, N = 5;
    const int64_t full = INT64_C(127) * 127 * K;
    TR_FAIL_IF(full >= INT64_C(2147483648), "WG_GEMM_S8_MAX_K %" PRId64 " overflows int32", K);
    for (int op = OP_NT; op <= OP_NN_SET; op++) {
        shape s = {.M = M, .N = N, .K = K, .ldc = N + 1};
        s.arows = op == OP_TN ? K : M;
        s.brows = op == OP_NT ? N : K;
        s.lda = op == OP_TN ? M : K;
        s.ldb = op == OP_NT ? K : N;
        int8_t *A = malloc((size_t)(s.arows * s.lda)), *B = malloc((size_t)(s.brows * s.ldb));
        /* row m of A is (-1)^m * 127; column n of B is (-1)^n * 127 (n = 4 hits nt's tail) */
        for (int64_t i = 0; i < s.arows; i++)
            for (int64_t j = 0; j < s.lda; j++) {
                int64_t m = op == OP_TN ? j : i;
                A[i * s.lda + j] = (int8_t)(m % 2 ? -127 : 127);
            }
        for (int64_t i = 0; i < s.brows; i++)
            for (int64_t j = 0; j < s.ldb; j++) {
                int64_t n = op == OP_NT ? i : j;
                B[i * s.ldb + j] = (int8_t)(n % 2 ? -127 : 127);
            }
        int32_t C0[2 * 6];
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < s.ldc; n++) {
                int64_t sign = (m + n) % 2 ? -1 : 1;
                C0[m * s.ldc + n] = n == N                    ? 0x5a5a5a5a
                                    : overwrites((gemm_op)op) ? -77
                                                              : (int32_t)(sign * (INT32_MAX - full));
            }
        check_s8((gemm_op)op, &s, A, B, C0, "K = WG_GEMM_S8_MAX_K:");
        free(A);
        free(B);
    }
}

/* ---- tn_gather ----------------------------------------------------------------------- */

/* nparts parts A[p] (K rows, lda apart) and B's rows brow[k]: run i of row k at
 * brow[k] + i * run_ld, run bytes. C: nparts * M rows, ldc apart. */
typedef struct gather_case {
    int64_t M, K, lda, ldc, run, run_ld;
    int nparts, nruns;
} gather_case;

static int64_t gather_n(const gather_case *c) { return c->nruns * c->run; }

/* Run tn_gather (with the caller's scratch, filled with junk first, or NULL) and its
 * _ref on copies of C0; check both against the independent loop and C's padding. */
static void check_gather(const gather_case *c, const int8_t *const *A, const int8_t *const *brow, const int32_t *C0,
                         bool scratch, const char *what)
{
    int64_t N = gather_n(c), rows = c->nparts * c->M;
    size_t cbytes = (size_t)(rows * c->ldc) * sizeof(int32_t);
    int32_t *cf = malloc(cbytes), *cr = malloc(cbytes);
    memcpy(cf, C0, cbytes);
    memcpy(cr, C0, cbytes);
    size_t sb = (wg_gemm_s8_tn_gather_scratch(c->M, N, c->nparts) + 63) / 64 * 64;
    void *buf = scratch ? aligned_alloc(64, sb + 64) : NULL;
    if (buf) memset(buf, 0x5a, sb + 64);
    wg_gemm_s8_tn_gather(c->M, c->K, c->nparts, A, c->lda, brow, c->nruns, c->run, c->run_ld, cf, c->ldc, buf);
    wg_gemm_s8_tn_gather_ref(c->M, c->K, c->nparts, A, c->lda, brow, c->nruns, c->run, c->run_ld, cr, c->ldc);
    for (int64_t r = 0; r < rows; r++) {
        int64_t p = r / c->M, m = r % c->M;
        for (int64_t j = 0; j < c->ldc; j++) {
            int64_t i = r * c->ldc + j, want = C0[i];
            if (j < N)
                for (int64_t k = 0; k < c->K; k++)
                    want += (int64_t)A[p][k * c->lda + m] * brow[k][(j / c->run) * c->run_ld + j % c->run];
            TR_FAIL_IF(want < INT32_MIN || want > INT32_MAX, "test bug: %s overflows int32", what);
            TR_EXPECT_I64(want, cf[i],
                          "%s wg_gemm_s8_tn_gather (%s kernels) M %" PRId64 " K %" PRId64 " parts %d runs %d x %" PRId64
                          " (%" PRId64 " apart) lda %" PRId64 " ldc %" PRId64 " scratch %d: C[%" PRId64 "][%" PRId64
                          "]%s",
                          what, kernels_name(), c->M, c->K, c->nparts, c->nruns, c->run, c->run_ld, c->lda, c->ldc,
                          (int)scratch, r, j, j < N ? "" : " (padding)");
            TR_EXPECT_I64(want, cr[i],
                          "%s wg_gemm_s8_tn_gather_ref M %" PRId64 " K %" PRId64 ": C[%" PRId64 "][%" PRId64 "]", what,
                          c->M, c->K, r, j);
        }
    }
    free(buf);
    free(cf);
    free(cr);
}

/* How B's rows lie: each in a place of its own (shuffled), or 16 bytes apart like the
 * pixels of a 16-channel row (the permuted path), with a jump after every wrow rows like
 * the end of a row of pixels (groups of four that straddle one take the other path). */
typedef enum { ROWS_APART, ROWS_16 } rows_layout;

static void test_s8_tn_gather(void **state)
{
    (void)state;
    tr_rng r = {0x6761};
    static const int64_t fixed[][6] = {
        /* M, K, nparts, nruns, run, layout */
        {16, 1568, 2, 3, 48, ROWS_16}, /* the stride-1 16-channel convolution, 28 pixels a row */
        {16, 300, 2, 3, 40, ROWS_16},  /* 16 bytes apart, a ragged last 8 columns per run */
        {5, 1, 1, 1, 1, ROWS_APART},    {70, 257, 2, 2, 64, ROWS_APART}, {3, 300, 2, 4, 17, ROWS_APART},
        {64, 392, 2, 3, 192, ROWS_16},  {10, 513, 2, 1, 9, ROWS_APART},  {32, 259, 1, 3, 96, ROWS_16},
        {1, 7, 2, 3, 16, ROWS_16},      {17, 6, 1, 2, 100, ROWS_APART},
    };
    for (int it = 0; it < 300; it++) {
        gather_case c;
        rows_layout layout;
        int64_t wrow;
        if (it < (int)(sizeof fixed / sizeof fixed[0])) {
            c = (gather_case){.M = fixed[it][0], .K = fixed[it][1], .nparts = (int)fixed[it][2],
                              .nruns = (int)fixed[it][3], .run = fixed[it][4]};
            layout = (rows_layout)fixed[it][5];
            wrow = it == 0 ? 28 : 7;
        } else {
            c = (gather_case){.M = tr_range(&r, 1, 70), .K = tr_range(&r, 1, 600), .nparts = (int)tr_range(&r, 1, 2),
                              .nruns = (int)tr_range(&r, 1, 4), .run = tr_range(&r, 1, 100)};
            layout = tr_next(&r) % 2 ? ROWS_16 : ROWS_APART;
            wrow = tr_range(&r, 1, 30);
        }
        c.lda = c.M + (tr_next(&r) % 3 == 0 ? 0 : tr_range(&r, 1, 5));
        c.ldc = gather_n(&c) + (tr_next(&r) % 3 == 0 ? 0 : tr_range(&r, 1, 5));
        c.run_ld = c.run + tr_range(&r, 0, 40); /* the runs of a row: apart, or adjacent */
        int64_t span = (c.nruns - 1) * c.run_ld + c.run; /* bytes of one row, first run to last */
        static const int zero_pcts[] = {0, 0, 30, 90};
        int zp = zero_pcts[tr_next(&r) % 4];
        int8_t *A[2];
        for (int p = 0; p < c.nparts; p++) A[p] = rand_mat_s8(&r, c.K, c.lda, zp);
        int64_t pool_n = layout == ROWS_16 ? 16 * c.K + 64 * (c.K / wrow + 1) + span : c.K * span;
        int8_t *pool = rand_mat_s8(&r, 1, pool_n, zp / 3);
        const int8_t **brow = malloc((size_t)c.K * sizeof *brow);
        for (int64_t k = 0; k < c.K; k++) brow[k] = pool + (layout == ROWS_16 ? 16 * k + 64 * (k / wrow) : k * span);
        if (layout == ROWS_APART) /* shuffled */
            for (int64_t k = c.K - 1; k > 0; k--) {
                int64_t j = tr_range(&r, 0, k);
                const int8_t *t = brow[k];
                brow[k] = brow[j];
                brow[j] = t;
            }
        int64_t nc = c.nparts * c.M * c.ldc;
        int32_t *C0 = malloc((size_t)nc * sizeof(int32_t));
        for (int64_t i = 0; i < nc; i++)
            C0[i] = it % 7 == 3 ? 0 : (int32_t)tr_range(&r, -(INT64_C(1) << 30), INT64_C(1) << 30);
        char what[32];
        snprintf(what, sizeof what, "iteration %d:", it);
        check_gather(&c, (const int8_t *const *)A, brow, C0, it % 2 == 0, what);
        for (int p = 0; p < c.nparts; p++) free(A[p]);
        free(pool);
        free(brow);
        free(C0);
    }
}

/* K = WG_GEMM_S8_MAX_K rows, every product +-127^2 of one sign per output, two parts of
 * opposite signs and two runs: as test_s8_max_k, C0 = +-(2^31 - 1 - the sum), so every
 * output ends at +-INT32_MAX. One row of B serves all K (the rows may coincide). */
static void test_s8_tn_gather_max_k(void **state)
{
    (void)state;
    gather_case c = {.M = 3, .K = WG_GEMM_S8_MAX_K, .nparts = 2, .nruns = 2, .run = 5, .run_ld = 7};
    c.lda = c.M + 1;
    c.ldc = gather_n(&c) + 1;
    const int64_t full = INT64_C(127) * 127 * c.K;
    int8_t row[12], *A[2];
    for (int64_t j = 0; j < 12; j++) row[j] = (int8_t)((j % 7) % 2 ? -127 : 127); /* column n = i * 5 + j: sign of j */
    const int8_t **brow = malloc((size_t)c.K * sizeof *brow);
    for (int64_t k = 0; k < c.K; k++) brow[k] = row;
    for (int p = 0; p < 2; p++) {
        A[p] = malloc((size_t)(c.K * c.lda));
        for (int64_t k = 0; k < c.K; k++)
            for (int64_t m = 0; m < c.lda; m++) A[p][k * c.lda + m] = (int8_t)((m + p) % 2 ? -127 : 127);
    }
    int32_t C0[2 * 3 * 11];
    for (int64_t rr = 0; rr < 2 * c.M; rr++)
        for (int64_t n = 0; n < c.ldc; n++) {
            int64_t p = rr / c.M, m = rr % c.M, sign = ((m + p) % 2 ? -1 : 1) * ((n % 5) % 2 ? -1 : 1);
            C0[rr * c.ldc + n] = n == gather_n(&c) ? 0x5a5a5a5a : (int32_t)(sign * (INT32_MAX - full));
        }
    check_gather(&c, (const int8_t *const *)A, brow, C0, true, "K = WG_GEMM_S8_MAX_K:");
    free(A[0]);
    free(A[1]);
    free(brow);
}

/* ---- float32 ------------------------------------------------------------------------ */

typedef void gemm_f32_fn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                         float *C, int64_t ldc);

/* Tolerance: |C - C_exact| <= (K + 2) * FLT_EPSILON * (|C0| + sum_k |a_k b_k|), with
 * C_exact from a double triple loop (exact to ~1e-16 relative here). That is the
 * classical bound gamma_(K+1) of recursive float summation with or without FMA
 * (FLT_EPSILON = 2u), i.e. a relative tolerance of (K + 2) * 1.19e-7 on the
 * condition-free scale |C0| + sum |a b|; a wrong or missing term is ~0.1 of it. */
static void run_f32(gemm_op op, gemm_f32_fn *fn, uint64_t seed, bool integers)
{
    tr_rng r = {seed};
    for (int it = 0; it < 200; it++) {
        shape s = pick_shape(&r, op, it);
        int zp = (int)(tr_next(&r) % 3) * 40; /* 0, 40, 80 % zeros in A (the skipped a == 0) */
        float *A = malloc((size_t)(s.arows * s.lda) * sizeof(float));
        float *B = malloc((size_t)(s.brows * s.ldb) * sizeof(float));
        float *C = malloc((size_t)(s.M * s.ldc) * sizeof(float)), *C0 = malloc((size_t)(s.M * s.ldc) * sizeof(float));
        double scale = integers ? 1.0 : ldexp(1.0, (int)tr_range(&r, -8, 8));
        for (int64_t i = 0; i < s.arows * s.lda; i++)
            A[i] = (int)(tr_next(&r) % 100) < zp ? 0.0f
                   : integers ? (float)tr_range(&r, -127, 127)
                              : (float)(scale * ((double)tr_next(&r) / 0x1p64 * 2 - 1));
        for (int64_t i = 0; i < s.brows * s.ldb; i++)
            B[i] = integers ? (float)tr_range(&r, -127, 127) : (float)((double)tr_next(&r) / 0x1p64 * 2 - 1);
        for (int64_t i = 0; i < s.M * s.ldc; i++)
            C0[i] = integers ? (float)tr_range(&r, -(1 << 20), 1 << 20) : (float)(scale * ((double)tr_next(&r) / 0x1p64 - 0.5));
        memcpy(C, C0, (size_t)(s.M * s.ldc) * sizeof(float));
        fn(s.M, s.N, s.K, A, s.lda, B, s.ldb, C, s.ldc);
        for (int64_t m = 0; m < s.M; m++)
            for (int64_t n = 0; n < s.ldc; n++) {
                int64_t i = m * s.ldc + n;
                if (n >= s.N) {
                    TR_FAIL_IF(memcmp(&C[i], &C0[i], sizeof(float)) != 0,
                               "wg_gemm_f32_%s wrote C's padding [%" PRId64 "][%" PRId64 "]", k_op_names[op], m, n);
                    continue;
                }
                double want = C0[i], mag = fabs(C0[i]);
                for (int64_t k = 0; k < s.K; k++) {
                    double p = (double)(op == OP_TN ? A[k * s.lda + m] : A[m * s.lda + k]) * B[k * s.ldb + n];
                    want += p;
                    mag += fabs(p);
                }
                double tol = integers ? 0.0 : (double)(s.K + 2) * FLT_EPSILON * mag;
                TR_FAIL_IF(!(fabs(C[i] - want) <= tol),
                           "wg_gemm_f32_%s iteration %d M %" PRId64 " N %" PRId64 " K %" PRId64 ": C[%" PRId64
                           "][%" PRId64 "] = %.9g, want %.17g (tolerance %.3g)",
                           k_op_names[op], it, s.M, s.N, s.K, m, n, (double)C[i], want, tol);
            }
        free(A);
        free(B);
        free(C);
        free(C0);
    }
}

static void test_f32_nn(void **state)
{
    (void)state;
    run_f32(OP_NN, wg_gemm_f32_nn, 0xf32, false);
    run_f32(OP_NN, wg_gemm_f32_nn, 0xf33, true);
}

static void test_f32_tn(void **state)
{
    (void)state;
    run_f32(OP_TN, wg_gemm_f32_tn, 0xf34, false);
    run_f32(OP_TN, wg_gemm_f32_tn, 0xf35, true);
}

/* The int8 tests run once for each kernel set this processor runs (the set switched in
 * the group's setup); the float32 ones once. */
static int use_scalar(void **state) { return (void)state, wg_gemm_use(WG_GEMM_SCALAR) ? 0 : -1; }
static int use_avx2(void **state) { return (void)state, wg_gemm_use(WG_GEMM_AVX2) ? 0 : -1; }
static int use_vnni(void **state) { return (void)state, wg_gemm_use(WG_GEMM_VNNI) ? 0 : -1; }
static int use_amx(void **state) { return (void)state, wg_gemm_use(WG_GEMM_AMX) ? 0 : -1; }

int main(void)
{
    const struct CMUnitTest s8_tests[] = {
        cmocka_unit_test(test_s8_nt),    cmocka_unit_test(test_s8_nn),        cmocka_unit_test(test_s8_tn),
        cmocka_unit_test(test_s8_nn_overwrite), cmocka_unit_test(test_s8_nt_large_c), cmocka_unit_test(test_s8_k0),
        cmocka_unit_test(test_s8_max_k), cmocka_unit_test(test_s8_tn_gather), cmocka_unit_test(test_s8_tn_gather_max_k),
    };
    const struct CMUnitTest f32_tests[] = {cmocka_unit_test(test_f32_nn), cmocka_unit_test(test_f32_tn)};
    static const struct {
        wg_gemm_path path;
        const char *group;
        int (*setup)(void **);
    } sets[] = {{WG_GEMM_SCALAR, "int8 scalar kernels", use_scalar},
                {WG_GEMM_AVX2, "int8 avx2 kernels", use_avx2},
                {WG_GEMM_VNNI, "int8 vnni kernels", use_vnni},
                {WG_GEMM_AMX, "int8 amx kernels", use_amx}};
    int failed = 0;
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        if (!wg_gemm_path_runs(sets[i].path)) {
            printf("[  SKIPPED ] %s: this processor or build cannot run them\n", sets[i].group);
            continue;
        }
        failed += _cmocka_run_group_tests(sets[i].group, s8_tests, sizeof s8_tests / sizeof s8_tests[0], sets[i].setup,
                                          NULL);
    }
    failed += cmocka_run_group_tests_name("float32", f32_tests, NULL, NULL);
    return failed;
}
