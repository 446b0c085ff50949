/* bench_gemm.c: throughput of the int8 GEMMs of gemm.h on the convolution shapes.
 *
 * Each product runs side by side, in one run, with the portable loops it replaced (a
 * copy kept here as the baseline: nt four dot products at a time, nn and tn row
 * updates that skip a == 0), on the shapes of the ResNet stages at batch 128 on 28x28
 * inputs (rows 100352, 25088, 6272 with 16, 32, 64 channels, 3x3 kernels) and the 3x3
 * stem on one input channel:
 *   nt (forward)          M = rows, N = O,    K = kdim
 *   nn (backward-data)    M = rows, N = kdim, K = O,    A (errors) 75% zeros
 *   tn (backward-weight)  M = O,    N = kdim, K = rows, A (errors) 75% zeros
 * The new kernels run with 1 thread and with omp_get_max_threads() (set it with
 * OMP_NUM_THREADS); the baseline is single-threaded. Every result is first checked bit
 * for bit against the baseline's. The report gives the median of several repetitions in
 * GMAC/s (M*N*K multiply-adds, zeros included, per second) and the speedup. Usage:
 *   bench_gemm [repetitions (default 5)] */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm.h"

enum { MAX_REPS = 64 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void set_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

static int max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- the baseline: the loops gemm.c had before the VNNI kernels --------------------- */

static int32_t base_dot_s8(const int8_t *restrict a, const int8_t *restrict b, int64_t K)
{
    int32_t s = 0;
    for (int64_t k = 0; k < K; k++) s += (int32_t)a[k] * (int32_t)b[k];
    return s;
}

static void base_s8_nt(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
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
        for (; n < N; n++) c[n] = base_dot_s8(a, B + n * ldb, K);
    }
}

static void base_axpy_s8(int32_t *restrict c, int32_t a, const int8_t *restrict b, int64_t N)
{
    for (int64_t n = 0; n < N; n++) c[n] += a * (int32_t)b[n];
}

static void base_s8_nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                       int32_t *C, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            int32_t a = A[m * lda + k];
            if (a != 0) base_axpy_s8(C + m * ldc, a, B + k * ldb, N);
        }
}

static void base_s8_tn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                       int32_t *C, int64_t ldc)
{
    for (int64_t k = 0; k < K; k++)
        for (int64_t m = 0; m < M; m++) {
            int32_t a = A[k * lda + m];
            if (a != 0) base_axpy_s8(C + m * ldc, a, B + k * ldb, N);
        }
}

/* ---- the benchmark ------------------------------------------------------------------ */

typedef void gemm_fn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                     int32_t *C, int64_t ldc);

typedef struct bench_op {
    const char *name;
    gemm_fn *base, *fast;
    int a_zero_pct; /* zeros in A: the errors of nn and tn are mostly zeros */
} bench_op;

static uint64_t g_rng = 0x9e3779b97f4a7c15u;

static uint64_t next_u64(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static int8_t *rand_s8(int64_t n, int zero_pct)
{
    int8_t *p = malloc((size_t)n);
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = next_u64();
        p[i] = (int)(r % 100) < zero_pct ? 0 : (int8_t)((int)((r >> 8) % 255) - 127);
    }
    return p;
}

/* Median seconds of reps runs (C zeroed before each, untimed). */
static double time_median(gemm_fn *fn, int reps, int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda,
                          const int8_t *B, int64_t ldb, int32_t *C)
{
    double t[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        memset(C, 0, (size_t)(M * N) * sizeof(int32_t));
        double t0 = now_s();
        fn(M, N, K, A, lda, B, ldb, C, N);
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    return t[reps / 2];
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: bench_gemm [repetitions 1..%d]\n", MAX_REPS);
        return 2;
    }
    const bench_op ops[] = {{"nt", base_s8_nt, wg_gemm_s8_nt, 0},
                            {"nn", base_s8_nn, wg_gemm_s8_nn, 75},
                            {"tn", base_s8_tn, wg_gemm_s8_tn, 75}};
    /* rows, channels in (C), out (O), kernel side */
    static const int64_t layers[][4] = {{100352, 1, 16, 3}, {100352, 16, 16, 3}, {25088, 32, 32, 3}, {6272, 64, 64, 3}};
    int nth = max_threads();
    printf("int8 GEMM, GMAC/s (median of %d), VNNI kernels %s, baseline 1 thread, new 1 and %d threads\n", reps,
           WG_GEMM_HAVE_VNNI ? "compiled" : "NOT compiled (portable loops)", nth);
    printf("%-3s %7s %5s %7s %9s %9s %7s %9s %7s\n", "op", "M", "N", "K", "baseline", "new 1T", "x", "new", "x");
    int status = 0;
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
            int64_t rows = layers[l][0], kdim = layers[l][1] * layers[l][3] * layers[l][3], oc = layers[l][2];
            int64_t M, N, K, arows, acols, brows, bcols;
            if (o == 0) M = rows, N = oc, K = kdim, arows = M, acols = K, brows = N, bcols = K;
            else if (o == 1) M = rows, N = kdim, K = oc, arows = M, acols = K, brows = K, bcols = N;
            else M = oc, N = kdim, K = rows, arows = K, acols = M, brows = K, bcols = N;
            int8_t *A = rand_s8(arows * acols, ops[o].a_zero_pct), *B = rand_s8(brows * bcols, 0);
            int32_t *Cb = calloc((size_t)(M * N), sizeof(int32_t)), *Cf = calloc((size_t)(M * N), sizeof(int32_t));
            if (!Cb || !Cf) {
                fprintf(stderr, "bench_gemm: out of memory\n");
                return 1;
            }
            set_threads(nth);
            ops[o].base(M, N, K, A, acols, B, bcols, Cb, N);
            ops[o].fast(M, N, K, A, acols, B, bcols, Cf, N);
            if (memcmp(Cb, Cf, (size_t)(M * N) * sizeof(int32_t)) != 0) {
                fprintf(stderr, "bench_gemm: %s M %lld N %lld K %lld: the result differs from the baseline\n",
                        ops[o].name, (long long)M, (long long)N, (long long)K);
                status = 1;
            }
            double macs = (double)M * (double)N * (double)K * 1e-9;
            double tb = time_median(ops[o].base, reps, M, N, K, A, acols, B, bcols, Cb);
            set_threads(1);
            double t1 = time_median(ops[o].fast, reps, M, N, K, A, acols, B, bcols, Cf);
            set_threads(nth);
            double tn = time_median(ops[o].fast, reps, M, N, K, A, acols, B, bcols, Cf);
            printf("%-3s %7lld %5lld %7lld %9.1f %9.1f %7.1f %9.1f %7.1f\n", ops[o].name, (long long)M, (long long)N,
                   (long long)K, macs / tb, macs / t1, tb / t1, macs / tn, tb / tn);
            fflush(stdout);
            free(A);
            free(B);
            free(Cb);
            free(Cf);
        }
    return status;
}
