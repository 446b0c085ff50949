/* gemm.c: int8 and float32 matrix products for the CPU backend (see gemm.h).
 *
 * int8: where the target has AVX-512 VNNI (WG_GEMM_HAVE_VNNI, e.g. -march=native on
 * Zen 4/5 or Ice Lake and later) the three products are the kernels of gemm_vnni.c
 * (vpdpbusd register tiles over packed operands, threaded with OpenMP). Elsewhere they
 * are the portable loops below, whose innermost loop runs over contiguous memory and
 * vectorizes (int8 widened to int32 multiply-adds):
 *   nt: a dot product over K for each (m, n), four columns of B at a time so each
 *       row of A is loaded once per four dot products;
 *   nn, tn: a row update C[m][:] += a * B[k][:], skipping a == 0 (the quantized
 *       errors E1/E2 are mostly zeros, so this skips most of the work).
 * The _ref versions are the reference the tests compare both with, bit for bit.
 *
 * float32: the row updates, with OpenMP threads over rows of C; each element of C still
 * sums its terms in the same order, so the result does not depend on the thread count. */
#include "gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- int8 ------------------------------------------------------------------------ */

#if WG_GEMM_HAVE_VNNI

void wg_gemm_s8_nt(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc)
{
    wg_gemm_s8_nt_vnni(M, N, K, A, lda, B, ldb, C, ldc);
}

void wg_gemm_s8_nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc)
{
    wg_gemm_s8_nn_vnni(M, N, K, A, lda, B, ldb, C, ldc);
}

void wg_gemm_s8_tn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc)
{
    wg_gemm_s8_tn_vnni(M, N, K, A, lda, B, ldb, C, ldc);
}

size_t wg_gemm_s8_tn_gather_scratch(int64_t M, int64_t N, int nparts)
{
    return wg_gemm_s8_tn_gather_scratch_vnni(M, N, nparts);
}

void wg_gemm_s8_tn_gather(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                          const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C, int64_t ldc,
                          void *scratch)
{
    wg_gemm_s8_tn_gather_vnni(M, K, nparts, A, lda, brow, nruns, run, run_ld, C, ldc, scratch);
}

#else /* the portable loops */

static int32_t dot_s8(const int8_t *restrict a, const int8_t *restrict b, int64_t K)
{
    int32_t s = 0;
    for (int64_t k = 0; k < K; k++) s += (int32_t)a[k] * (int32_t)b[k];
    return s;
}

void wg_gemm_s8_nt(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++) {
        const int8_t *restrict a = A + m * lda;
        int32_t *restrict c = C + m * ldc;
        int64_t n = 0;
        for (; n + 4 <= N; n += 4) {
            const int8_t *restrict b0 = B + n * ldb, *restrict b1 = b0 + ldb, *restrict b2 = b1 + ldb,
                                   *restrict b3 = b2 + ldb;
            int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int64_t k = 0; k < K; k++) {
                int32_t x = a[k];
                s0 += x * b0[k];
                s1 += x * b1[k];
                s2 += x * b2[k];
                s3 += x * b3[k];
            }
            c[n] = s0;
            c[n + 1] = s1;
            c[n + 2] = s2;
            c[n + 3] = s3;
        }
        for (; n < N; n++) c[n] = dot_s8(a, B + n * ldb, K);
    }
}

static void axpy_s8(int32_t *restrict c, int32_t a, const int8_t *restrict b, int64_t N)
{
    for (int64_t n = 0; n < N; n++) c[n] += a * (int32_t)b[n];
}

void wg_gemm_s8_nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            int32_t a = A[m * lda + k];
            if (a != 0) axpy_s8(C + m * ldc, a, B + k * ldb, N);
        }
}

void wg_gemm_s8_tn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc)
{
    for (int64_t k = 0; k < K; k++)
        for (int64_t m = 0; m < M; m++) {
            int32_t a = A[k * lda + m];
            if (a != 0) axpy_s8(C + m * ldc, a, B + k * ldb, N);
        }
}

size_t wg_gemm_s8_tn_gather_scratch(int64_t M, int64_t N, int nparts)
{
    (void)M, (void)N, (void)nparts;
    return 0;
}

/* tn's row updates, run by run of each gathered row of B. */
void wg_gemm_s8_tn_gather(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
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

#endif

void wg_gemm_s8_nt_ref(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                       int32_t *C, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t s = 0;
            for (int64_t k = 0; k < K; k++) s += (int64_t)A[m * lda + k] * B[n * ldb + k];
            C[m * ldc + n] = (int32_t)s;
        }
}

void wg_gemm_s8_nn_ref(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                       int32_t *C, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t s = C[m * ldc + n];
            for (int64_t k = 0; k < K; k++) s += (int64_t)A[m * lda + k] * B[k * ldb + n];
            C[m * ldc + n] = (int32_t)s;
        }
}

void wg_gemm_s8_tn_ref(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                       int32_t *C, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t s = C[m * ldc + n];
            for (int64_t k = 0; k < K; k++) s += (int64_t)A[k * lda + m] * B[k * ldb + n];
            C[m * ldc + n] = (int32_t)s;
        }
}

void wg_gemm_s8_tn_gather_ref(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                              const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C,
                              int64_t ldc)
{
    for (int p = 0; p < nparts; p++)
        for (int64_t m = 0; m < M; m++)
            for (int i = 0; i < nruns; i++)
                for (int64_t j = 0; j < run; j++) {
                    int64_t s = C[(p * M + m) * ldc + i * run + j];
                    for (int64_t k = 0; k < K; k++) s += (int64_t)A[p][k * lda + m] * brow[k][i * run_ld + j];
                    C[(p * M + m) * ldc + i * run + j] = (int32_t)s;
                }
}

/* ---- float32 (the baseline mode) ---------------------------------------------- */

#ifdef WG_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>

#include "check.h"

/* C += op(A) B, row-major, from oneDNN (Debian libdnnl-dev): its sgemm runs near the
 * float peak, where the loops below reach a fraction (docs/performance.md). */
static void onednn_sgemm(char transa, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                         int64_t ldb, float *C, int64_t ldc)
{
    dnnl_status_t st = dnnl_sgemm(transa, 'N', M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
    WG_ASSERT(st == dnnl_success, "dnnl_sgemm(%c, N, %lld, %lld, %lld) failed with status %d", transa, (long long)M,
              (long long)N, (long long)K, (int)st);
}
#endif

#ifndef WG_HAVE_ONEDNN
static void axpy_f32(float *restrict c, float a, const float *restrict b, int64_t N)
{
    for (int64_t n = 0; n < N; n++) c[n] += a * b[n];
}
#endif

/* Below this many multiply-adds, starting threads costs more than they save. */
#define WG_GEMM_F32_MIN_THREADED (INT64_C(1) << 20)

void wg_gemm_f32_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc)
{
#ifdef WG_HAVE_ONEDNN
    if (M > 0 && N > 0 && K > 0) onednn_sgemm('N', M, N, K, A, lda, B, ldb, C, ldc);
#else
#pragma omp parallel for schedule(static) if (M * N * K >= WG_GEMM_F32_MIN_THREADED && M > 1)
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            float a = A[m * lda + k];
            if (a != 0.0f) axpy_f32(C + m * ldc, a, B + k * ldb, N);
        }
#endif
}

/* Threads take contiguous rows of C (filters), each the whole loop over k. */
void wg_gemm_f32_tn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc)
{
#ifdef WG_HAVE_ONEDNN
    if (M > 0 && N > 0 && K > 0) onednn_sgemm('T', M, N, K, A, lda, B, ldb, C, ldc);
#else
#pragma omp parallel if (M * N * K >= WG_GEMM_F32_MIN_THREADED && M > 1)
    {
        int64_t t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        int64_t m0 = M * t / T, m1 = M * (t + 1) / T;
        for (int64_t k = 0; k < K; k++)
            for (int64_t m = m0; m < m1; m++) {
                float a = A[k * lda + m];
                if (a != 0.0f) axpy_f32(C + m * ldc, a, B + k * ldb, N);
            }
    }
#endif
}
