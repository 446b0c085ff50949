/* gemm.c: int8 and float32 matrix products for the CPU backend (see gemm.h).
 *
 * int8: the kernel set of gemm_impl.h chosen once, at the first product: the one named
 * by WG_GEMM_KERNELS in the environment, else the best this processor runs (AMX, then
 * AVX-512 VNNI, then AVX2, then the portable loops). The _ref versions are the reference the
 * tests compare every set with, bit for bit.
 *
 * float32: oneDNN's sgemm where the build has it (WG_ONEDNN), else row updates with
 * OpenMP threads over rows of C; each element of C still sums its terms in the same
 * order, so the result does not depend on the thread count. */
#include "gemm_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void *wg_gemm_alloc64(size_t nbytes)
{
    void *p = aligned_alloc(64, (nbytes + 63) / 64 * 64 + 64);
    WG_ASSERT(p != NULL, "out of memory for %zu bytes of GEMM buffers", nbytes);
    return p;
}

void wg_gemm_add_partials(int32_t *C, int64_t ldc, int64_t M, int64_t N, const char *buf, size_t per, size_t off,
                          int64_t ldp)
{
    int t = 0, T = 1;
#ifdef _OPENMP
    t = omp_get_thread_num(), T = omp_get_num_threads();
#endif
    if (T == 1) return;
#pragma omp barrier
    int64_t m0 = M * t / T, m1 = M * (t + 1) / T;
    for (int u = 1; u < T; u++) {
        const int32_t *p = (const int32_t *)(buf + per * (size_t)u + off);
        for (int64_t m = m0; m < m1; m++)
            for (int64_t n = 0; n < N; n++)
                C[m * ldc + n] = (int32_t)((uint32_t)C[m * ldc + n] + (uint32_t)p[m * ldp + n]);
    }
}

/* ---- int8: which kernel set -------------------------------------------------- */

static const char *const k_path_names[WG_GEMM_NPATHS] = {"scalar", "avx2", "vnni", "amx"};

const char *wg_gemm_path_name(wg_gemm_path p) { return p >= 0 && p < WG_GEMM_NPATHS ? k_path_names[p] : "?"; }

static bool path_parse(const char *name, wg_gemm_path *p)
{
    for (int i = 0; i < WG_GEMM_NPATHS; i++)
        if (!strcmp(name, k_path_names[i])) {
            *p = (wg_gemm_path)i;
            return true;
        }
    return false;
}

static const wg_gemm_kernels *kernels_of(wg_gemm_path p)
{
    switch (p) {
#if WG_GEMM_X86
    case WG_GEMM_AMX: return &wg_gemm_amx;
    case WG_GEMM_VNNI: return &wg_gemm_vnni;
    case WG_GEMM_AVX2: return &wg_gemm_avx2;
#endif
    case WG_GEMM_SCALAR: return &wg_gemm_scalar;
    default: return NULL;
    }
}

bool wg_gemm_path_runs(wg_gemm_path p)
{
    if (kernels_of(p) == NULL) return false;
#if WG_GEMM_X86
    __builtin_cpu_init();
    if (p == WG_GEMM_AMX) return wg_gemm_path_runs(WG_GEMM_VNNI) && wg_gemm_amx_available();
    if (p == WG_GEMM_VNNI)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    if (p == WG_GEMM_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return true;
}

static wg_gemm_path path_best(void)
{
    for (int p = WG_GEMM_NPATHS - 1; p > 0; p--)
        if (wg_gemm_path_runs((wg_gemm_path)p)) return (wg_gemm_path)p;
    return WG_GEMM_SCALAR;
}

static wg_gemm_path g_path;
static const wg_gemm_kernels *g_kernels;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* The environment's choice, or the best set. A name that is not a set (exit status 2),
 * or a set this processor cannot run (77), stops the program: a test or benchmark that
 * asked for a set must not silently run another. */
static void choose_kernels(void)
{
    const char *env = getenv("WG_GEMM_KERNELS");
    wg_gemm_path p = path_best();
    if (env != NULL && *env != '\0' && strcmp(env, "auto") != 0) {
        if (!path_parse(env, &p)) {
            fprintf(stderr, "wageubn: WG_GEMM_KERNELS=%s: expected auto, amx, vnni, avx2 or scalar\n", env);
            exit(2);
        }
        if (!wg_gemm_path_runs(p)) { /* 77: ctest's "skipped", for the tests that force each set */
            fprintf(stderr, "wageubn: WG_GEMM_KERNELS=%s: this processor or build cannot run them (best: %s)\n",
                    env, wg_gemm_path_name(path_best()));
            exit(77);
        }
    }
    g_path = p;
    g_kernels = kernels_of(p);
}

static const wg_gemm_kernels *kernels(void)
{
    WG_ASSERT(pthread_once(&g_once, choose_kernels) == 0, "pthread_once failed");
    return g_kernels;
}

wg_gemm_path wg_gemm_path_current(void)
{
    kernels();
    return g_path;
}

bool wg_gemm_use(wg_gemm_path p)
{
    kernels(); /* the environment read first, so it cannot override this later */
    if (!wg_gemm_path_runs(p)) return false;
    g_path = p;
    g_kernels = kernels_of(p);
    return true;
}

/* ---- int8: the products, through the chosen set -------------------------------- */

void wg_gemm_s8_nt(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc)
{
    kernels()->nt(M, N, K, A, lda, B, ldb, C, ldc);
}

/* nn and nn_overwrite: the sets see M, N, K >= 1 (with K = 0, C or nothing is zeroed). */
static void nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
               int32_t *C, int64_t ldc, bool acc)
{
    if (M <= 0 || N <= 0) return;
    if (K > 0) kernels()->nn(M, N, K, A, lda, B, ldb, C, ldc, acc);
    else if (!acc)
        for (int64_t m = 0; m < M; m++) memset(C + m * ldc, 0, (size_t)N * sizeof(int32_t));
}

void wg_gemm_s8_nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc)
{
    nn(M, N, K, A, lda, B, ldb, C, ldc, true);
}

void wg_gemm_s8_nn_overwrite(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                             int64_t ldb, int32_t *C, int64_t ldc)
{
    nn(M, N, K, A, lda, B, ldb, C, ldc, false);
}

void wg_gemm_s8_tn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc)
{
    kernels()->tn(M, N, K, A, lda, B, ldb, C, ldc);
}

size_t wg_gemm_s8_tn_gather_scratch(int64_t M, int64_t N, int nparts)
{
    return kernels()->tn_gather_scratch(M, N, nparts);
}

void wg_gemm_s8_tn_gather(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                          const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C, int64_t ldc,
                          void *scratch)
{
    kernels()->tn_gather(M, K, nparts, A, lda, brow, nruns, run, run_ld, C, ldc, scratch);
}

bool wg_gemm_s8_conv_s1(int64_t nimg, int64_t h, int64_t w, int64_t c, int64_t o, int64_t kh, int64_t kw, int64_t pad,
                        const int8_t *x, const int8_t *wt, int32_t *y)
{
    wg_gemm_s8_conv_fn *f = kernels()->conv_s1;
    return f != NULL && f(nimg, h, w, c, o, kh, kw, pad, x, NULL, 0, 0, wt, y);
}

bool wg_gemm_s8_conv_s1_pair(int64_t nimg, int64_t h, int64_t w, int64_t c, int64_t o, int64_t kh, int64_t kw,
                             int64_t pad, const int8_t *x, int s, const int8_t *x2, int s2, const int8_t *wt,
                             int32_t *y)
{
    wg_gemm_s8_conv_fn *f = kernels()->conv_s1;
    return f != NULL && s >= 0 && s < 31 && s2 >= 0 && s2 < 31 && f(nimg, h, w, c, o, kh, kw, pad, x, x2, s, s2, wt, y);
}

/* ---- int8: the scalar references ------------------------------------------------ */

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

const char *wg_gemm_f32_kernels_name(void)
{
#ifdef WG_HAVE_ONEDNN
    return "onednn";
#else
    return "loops";
#endif
}

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
