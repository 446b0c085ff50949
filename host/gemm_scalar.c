/* gemm_scalar.c: the portable int8 kernel set (gemm_impl.h), for processors without
 * AVX2 and as the path the tests force to check the others against it. Plain C whose
 * innermost loop runs over contiguous memory, so the compiler vectorizes it:
 *   nt: a dot product over K for each (m, n), four columns of B at a time so each row
 *       of A is loaded once per four dot products;
 *   nn, tn: a row update C[m][:] += a * B[k][:], skipping a == 0 (the quantized errors
 *       E1/E2 are mostly zeros, so this skips most of the work).
 * Sums are taken in uint32 (modulo 2^32, like the _ref's cast of its int64 sum): the
 * exact int32 inside gemm.h's bound, and no signed overflow at its edge (-128 * -128
 * summed WG_GEMM_S8_MAX_K times is 2^31). OpenMP threads take rows of C; each element
 * sums its own terms, so the result does not depend on the thread count. */
#include "gemm_impl.h"

#include <string.h>

static uint32_t dot_s8(const int8_t *restrict a, const int8_t *restrict b, int64_t K)
{
    uint32_t s = 0;
    for (int64_t k = 0; k < K; k++) s += (uint32_t)((int32_t)a[k] * b[k]);
    return s;
}

static void nt(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
               int32_t *C, int64_t ldc)
{
#pragma omp parallel for schedule(static) if (wg_gemm_worth_threads(M, N, K) && M > 1)
    for (int64_t m = 0; m < M; m++) {
        const int8_t *restrict a = A + m * lda;
        int32_t *restrict c = C + m * ldc;
        int64_t n = 0;
        for (; n + 4 <= N; n += 4) {
            const int8_t *restrict b0 = B + n * ldb, *restrict b1 = b0 + ldb, *restrict b2 = b1 + ldb,
                                   *restrict b3 = b2 + ldb;
            uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int64_t k = 0; k < K; k++) {
                int32_t x = a[k];
                s0 += (uint32_t)(x * b0[k]);
                s1 += (uint32_t)(x * b1[k]);
                s2 += (uint32_t)(x * b2[k]);
                s3 += (uint32_t)(x * b3[k]);
            }
            c[n] = (int32_t)s0;
            c[n + 1] = (int32_t)s1;
            c[n + 2] = (int32_t)s2;
            c[n + 3] = (int32_t)s3;
        }
        for (; n < N; n++) c[n] = (int32_t)dot_s8(a, B + n * ldb, K);
    }
}

/* c[n] += a b[n], modulo 2^32. */
static void axpy_s8(int32_t *restrict c, int32_t a, const int8_t *restrict b, int64_t N)
{
    for (int64_t n = 0; n < N; n++) c[n] = (int32_t)((uint32_t)c[n] + (uint32_t)(a * b[n]));
}

static void nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
               int32_t *C, int64_t ldc, bool acc)
{
#pragma omp parallel for schedule(static) if (wg_gemm_worth_threads(M, N, K) && M > 1)
    for (int64_t m = 0; m < M; m++) {
        if (!acc) memset(C + m * ldc, 0, (size_t)N * sizeof(int32_t));
        for (int64_t k = 0; k < K; k++) {
            int32_t a = A[m * lda + k];
            if (a != 0) axpy_s8(C + m * ldc, a, B + k * ldb, N);
        }
    }
}

/* Threads take rows of C (columns of A), each the whole loop over k. */
static void tn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
               int32_t *C, int64_t ldc)
{
#pragma omp parallel for schedule(static) if (wg_gemm_worth_threads(M, N, K) && M > 1)
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            int32_t a = A[k * lda + m];
            if (a != 0) axpy_s8(C + m * ldc, a, B + k * ldb, N);
        }
}

static size_t tn_gather_scratch(int64_t M, int64_t N, int nparts)
{
    (void)M, (void)N, (void)nparts;
    return 0;
}

/* tn's row updates, run by run of each gathered row of B, on the calling thread. */
static void tn_gather(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                      const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C, int64_t ldc,
                      void *scratch)
{
    (void)scratch;
    for (int p = 0; p < nparts; p++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t m = 0; m < M; m++) {
                int32_t a = A[p][k * lda + m];
                if (a != 0)
                    for (int i = 0; i < nruns; i++)
                        axpy_s8(C + (p * M + m) * ldc + i * run, a, brow[k] + i * run_ld, run);
            }
}

const wg_gemm_kernels wg_gemm_scalar = {
    .nt = nt, .nn = nn, .tn = tn, .tn_gather_scratch = tn_gather_scratch, .tn_gather = tn_gather};
