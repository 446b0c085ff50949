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
 * GMAC/s (M*N*K multiply-adds, zeros included, per second) and the speedup. A second
 * table times backward-weight with E2's two error parts on one thread, 2*M*N*K
 * multiply-adds: two tn products on the im2col matrix (the im2col not timed) against
 * one wg_gemm_s8_tn_gather that reads the rows from the zero-bordered images as conv_bwd.c
 * does (from the im2col matrix for the stem's 3-byte runs). Usage:
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

#include "bench_util.h"
#include "gemm.h"

enum { MAX_REPS = 64 };

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

/* ---- backward-weight with two error parts ------------------------------------------ */

/* A 3x3, stride-1, pad-1 convolution's backward-weight on n images of h x h x c: the
 * parts A[p] (K = n h h rows of M), the zero-bordered images, the im2col matrix B
 * (K x N) built from them, and B's rows as conv_bwd.c gathers them: kernel rows' runs of
 * 3 c bytes in the images (one run per row, from B, below 16 bytes). */
typedef struct dw_case {
    int64_t M, N, K, nruns, run, run_ld;
    const int8_t *A[2], *B;
    const int8_t **brow;
} dw_case;

static void dw_two_tn(const dw_case *d, int32_t *C)
{
    for (int p = 0; p < 2; p++) wg_gemm_s8_tn(d->M, d->N, d->K, d->A[p], d->M, d->B, d->N, C + p * d->M * d->N, d->N);
}

static void dw_gather(const dw_case *d, int32_t *C)
{
    wg_gemm_s8_tn_gather(d->M, d->K, 2, d->A, d->M, d->brow, (int)d->nruns, d->run, d->run_ld, C, d->N, NULL);
}

static double time_dw(void (*fn)(const dw_case *, int32_t *), int reps, const dw_case *d, int32_t *C)
{
    double t[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        memset(C, 0, (size_t)(2 * d->M * d->N) * sizeof(int32_t));
        double t0 = now_s();
        fn(d, C);
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    return t[reps / 2];
}

static void *xmalloc(size_t n)
{
    void *p = calloc(n, 1);
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    return p;
}

static int bench_dw(int reps, const int64_t (*layers)[4], size_t nlayers)
{
    int status = 0;
    printf("\nbackward-weight, two error parts, 1 thread, GMAC/s (median of %d)\n", reps);
    printf("%-3s %7s %5s %7s %9s %9s %7s\n", "op", "M", "N", "K", "2 x tn", "gather", "x");
    set_threads(1);
    for (size_t l = 0; l < nlayers; l++) {
        const int64_t n = 128, c = layers[l][1], k = layers[l][3], hp = 1;
        int64_t h = 1;
        while ((h + 1) * (h + 1) * n <= layers[l][0]) h++;
        dw_case d = {.M = layers[l][2], .N = k * k * c, .K = n * h * h};
        int64_t pw = h + 2 * hp, img = pw * pw * c;
        int8_t *A0 = rand_s8(d.K * d.M, 50), *A1 = rand_s8(d.K * d.M, 50), *x = rand_s8(n * h * h * c, 0);
        int8_t *padded = xmalloc((size_t)(n * img)), *B = xmalloc((size_t)(d.K * d.N));
        const int8_t **brow = xmalloc((size_t)d.K * sizeof *brow);
        int32_t *Cb = xmalloc((size_t)(2 * d.M * d.N) * sizeof(int32_t));
        int32_t *Cf = xmalloc((size_t)(2 * d.M * d.N) * sizeof(int32_t));
        for (int64_t im = 0; im < n; im++)
            for (int64_t ih = 0; ih < h; ih++)
                memcpy(padded + im * img + ((ih + hp) * pw + hp) * c, x + ((im * h + ih) * h) * c, (size_t)(h * c));
        for (int64_t r = 0; r < d.K; r++) {
            int64_t im = r / (h * h), oh = r / h % h, ow = r % h;
            const int8_t *p = padded + im * img + (oh * pw + ow) * c;
            for (int64_t i = 0; i < k; i++) memcpy(B + r * d.N + i * k * c, p + i * pw * c, (size_t)(k * c));
            brow[r] = k * c >= 16 ? p : B + r * d.N;
        }
        d.nruns = k * c >= 16 ? k : 1;
        d.run = d.N / d.nruns;
        d.run_ld = k * c >= 16 ? pw * c : d.N;
        d.A[0] = A0, d.A[1] = A1, d.B = B, d.brow = brow;
        double tb = time_dw(dw_two_tn, reps, &d, Cb), tf = time_dw(dw_gather, reps, &d, Cf);
        if (memcmp(Cb, Cf, (size_t)(2 * d.M * d.N) * sizeof(int32_t)) != 0) {
            fprintf(stderr, "bench_gemm: gather M %lld N %lld K %lld: the result differs from two tn\n",
                    (long long)d.M, (long long)d.N, (long long)d.K);
            status = 1;
        }
        double macs = 2.0 * (double)d.M * (double)d.N * (double)d.K * 1e-9;
        printf("%-3s %7lld %5lld %7lld %9.1f %9.1f %7.2f\n", "dw", (long long)d.M, (long long)d.N, (long long)d.K,
               macs / tb, macs / tf, tb / tf);
        fflush(stdout);
        free(A0), free(A1), free(x), free(padded), free(B), free(brow), free(Cb), free(Cf);
    }
    return status;
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
    printf("int8 GEMM, GMAC/s (median of %d), %s kernels (WG_GEMM_KERNELS picks others), baseline 1 thread, "
           "new 1 and %d threads\n", reps, wg_gemm_path_name(wg_gemm_path_current()), nth);
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
    status |= bench_dw(reps, layers, sizeof layers / sizeof layers[0]);
    return status;
}
