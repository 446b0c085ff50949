/* bench_onednn.c: our int8 GEMMs (gemm.h) against oneDNN's s8 x s8 -> s32 matmul
 * (Debian libdnnl-dev), side by side in one run, and both against the VNNI peak of
 * this machine measured by a register-only vpdpbusd loop.
 *
 * Shapes: the convolutions as GEMMs (M x N x K, C = A B):
 * - ResNet-20 on 28x28 inputs, batch 128 (the default run): stages of 16, 32 and 64
 *   channels at 28x28, 14x14 and 7x7, 3x3 kernels. forward (nt: M = N*H*W rows,
 *   N = out channels, K = 9 in channels), backward-data (nn: M = rows, N = 9 in
 *   channels, K = out channels) and backward-weight (tn: M = out channels, N = 9 in
 *   channels, K = rows).
 * - ResNet-18 on 224x224 inputs, batch 32: the 3x3 convolutions of its four stages
 *   (56x56x64 .. 7x7x512), forward.
 * A holds random int8 in [-127, 127], B too. Every product is checked bit for bit
 * against oneDNN's before it is timed. Reported: GOP/s (2 M N K / s) of each, the
 * median of the repetitions, and ours / oneDNN; at 1 thread and at
 * omp_get_max_threads() (OMP_NUM_THREADS). Ours are the kernel set gemm.c picks, or
 * the one WG_GEMM_KERNELS names (vnni, avx2, scalar). Usage:
 *   bench_onednn [repetitions (default 5)] [only: a network or op name, e.g. resnet18, nt] */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <immintrin.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "bench_util.h"
#include "gemm.h"
#include "gemm_impl.h" /* wg_gemm_amx_available */

enum { MAX_REPS = 64, WARMUP_RUNS = 3 };
static const double WARMUP_S = 0.2;

#define DNNL_CHECK(call)                                                                                       \
    do {                                                                                                       \
        dnnl_status_t s_ = (call);                                                                             \
        if (s_ != dnnl_success) {                                                                              \
            fprintf(stderr, "bench_onednn: %s failed (status %d) at %s:%d\n", #call, (int)s_, __FILE__, __LINE__); \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_onednn: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static int8_t *rand_s8(int64_t n, uint64_t seed)
{
    int8_t *p = xmalloc((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        p[i] = (int8_t)((int)((seed >> 33) % 255) - 127);
    }
    return p;
}

/* ---- the VNNI peak: independent vpdpbusd chains on registers, on every thread ---------- */

/* 24 independent accumulators in registers, each vpdpbusd written out in inline
 * assembly: from intrinsics gcc either merged the chains (they start equal and take the
 * same operands: one chain, one instruction's latency per round, which an earlier
 * version of this loop reported as 24 instructions) or, given distinct starts, kept
 * them in memory. Twelve per statement: an asm takes at most 30 operands. */
#define WG_DP12(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11)                                              \
    __asm__ volatile("vpdpbusd %12, %13, %0\n\tvpdpbusd %12, %13, %1\n\tvpdpbusd %12, %13, %2\n\t"                \
                     "vpdpbusd %12, %13, %3\n\tvpdpbusd %12, %13, %4\n\tvpdpbusd %12, %13, %5\n\t"                \
                     "vpdpbusd %12, %13, %6\n\tvpdpbusd %12, %13, %7\n\tvpdpbusd %12, %13, %8\n\t"                \
                     "vpdpbusd %12, %13, %9\n\tvpdpbusd %12, %13, %10\n\tvpdpbusd %12, %13, %11"                   \
                     : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7), "+v"(c8), \
                       "+v"(c9), "+v"(c10), "+v"(c11)                                                           \
                     : "v"(b), "v"(a))
#define WG_ADD4(c, d, e, f) _mm512_add_epi32(_mm512_add_epi32(c, d), _mm512_add_epi32(e, f))

__attribute__((target("avx512f,avx512vnni"))) static double vnni_peak_gops(int threads)
{
    enum { ROUNDS = 4000000, CHAINS = 24 };
    double t0 = now_s();
    int32_t sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(2), z = _mm512_setzero_si512();
        __m512i c0 = z, c1 = z, c2 = z, c3 = z, c4 = z, c5 = z, c6 = z, c7 = z, c8 = z, c9 = z, c10 = z, c11 = z;
        __m512i c12 = z, c13 = z, c14 = z, c15 = z, c16 = z, c17 = z, c18 = z, c19 = z, c20 = z, c21 = z, c22 = z;
        __m512i c23 = z;
        for (int i = 0; i < ROUNDS; i++) {
            WG_DP12(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11);
            WG_DP12(c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23);
        }
        __m512i s = WG_ADD4(WG_ADD4(c0, c1, c2, c3), WG_ADD4(c4, c5, c6, c7), WG_ADD4(c8, c9, c10, c11),
                            WG_ADD4(c12, c13, c14, c15));
        sink += _mm512_reduce_add_epi32(WG_ADD4(s, WG_ADD4(c16, c17, c18, c19), WG_ADD4(c20, c21, c22, c23), z));
    }
    double dt = now_s() - t0;
    if (sink == 42) printf(" "); /* the sums are used: the loop stays */
    /* one vpdpbusd on zmm: 64 multiply-adds, 128 operations */
    return (double)threads * ROUNDS * CHAINS * 128.0 / dt * 1e-9;
}
#undef WG_ADD4
#undef WG_DP12

/* The AMX peak where the processor has it: tdpbssd on tiles only, tmm0..3 accumulating
 * tmm4..7 (16 x 16 x 64 multiply-adds each, 32768 operations), on every thread. */
__attribute__((target("amx-tile,amx-int8"))) static double amx_peak_gops(int threads)
{
    enum { ROUNDS = 1000000 };
    double t0 = now_s();
#pragma omp parallel num_threads(threads)
    {
        struct __attribute__((packed, aligned(64))) {
            uint8_t palette, start_row, reserved[14];
            uint16_t colsb[16];
            uint8_t rows[16];
        } cfg = {.palette = 1};
        for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
        __asm__ volatile("ldtilecfg %0" : : "m"(cfg)); /* _tile_loadconfig: gcc may drop the stores */
        _tile_zero(0); /* tile numbers are literals in the instructions */
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        _tile_zero(4);
        _tile_zero(5);
        _tile_zero(6);
        _tile_zero(7);
        for (int i = 0; i < ROUNDS; i++) {
            _tile_dpbssd(0, 4, 6);
            _tile_dpbssd(1, 4, 7);
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
        }
        _tile_release();
    }
    double dt = now_s() - t0;
    return (double)threads * ROUNDS * 4 * 32768.0 / dt * 1e-9;
}

/* ---- one case ------------------------------------------------------------------------ */

typedef enum { OP_NT, OP_NN, OP_TN } gemm_op;
static const char *const k_op_names[] = {"nt (forward)", "nn (backward-data)", "tn (backward-weight)"};

typedef struct gemm_case {
    const char *net;
    gemm_op op;
    int64_t M, N, K;
} gemm_case;

/* oneDNN's matmul for one case: A and B in our layouts (nt: A [M][K], B [N][K]; nn: A
 * [M][K], B [K][N]; tn: A [K][M], B [K][N]), C [M][N] int32. */
typedef struct onednn_mm {
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} onednn_mm;

static onednn_mm onednn_create(dnnl_engine_t eng, const gemm_case *g, int8_t *A, int8_t *B, int32_t *C)
{
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_dims_t ad = {g->M, g->K}, bd = {g->K, g->N}, cd = {g->M, g->N};
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dnnl_s8, g->op == OP_TN ? dnnl_ba : dnnl_ab));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&b_md, 2, bd, dnnl_s8, g->op == OP_NT ? dnnl_ba : dnnl_ab));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_s32, dnnl_ab));
    dnnl_matmul_desc_t md;
    DNNL_CHECK(dnnl_matmul_desc_init(&md, &a_md, &b_md, NULL, &c_md));
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    onednn_mm m;
    DNNL_CHECK(dnnl_primitive_create(&m.prim, pd));
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    DNNL_CHECK(dnnl_memory_create(&m.a, &a_md, eng, A));
    DNNL_CHECK(dnnl_memory_create(&m.b, &b_md, eng, B));
    DNNL_CHECK(dnnl_memory_create(&m.c, &c_md, eng, C));
    return m;
}

static void onednn_run(const onednn_mm *m, dnnl_stream_t s)
{
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, m->a}, {DNNL_ARG_WEIGHTS, m->b}, {DNNL_ARG_DST, m->c}};
    DNNL_CHECK(dnnl_primitive_execute(m->prim, s, 3, args));
    DNNL_CHECK(dnnl_stream_wait(s));
}

static void onednn_destroy(onednn_mm *m)
{
    dnnl_memory_destroy(m->a);
    dnnl_memory_destroy(m->b);
    dnnl_memory_destroy(m->c);
    dnnl_primitive_destroy(m->prim);
}

/* C = the product, as oneDNN's matmul writes it: nt and nn_overwrite overwrite C; tn
 * adds to it, so C is zeroed first (in the time: a small C, M x N filters). */
static void ours_run(const gemm_case *g, const int8_t *A, const int8_t *B, int32_t *C)
{
    if (g->op == OP_NT) wg_gemm_s8_nt(g->M, g->N, g->K, A, g->K, B, g->K, C, g->N);
    else if (g->op == OP_NN) wg_gemm_s8_nn_overwrite(g->M, g->N, g->K, A, g->K, B, g->N, C, g->N);
    else {
        memset(C, 0, (size_t)(g->M * g->N) * sizeof(int32_t));
        wg_gemm_s8_tn(g->M, g->N, g->K, A, g->M, B, g->N, C, g->N);
    }
}

/* GOP/s of ours and of oneDNN, medians of reps, after a bit-exact check. */
static void bench_case(dnnl_engine_t eng, dnnl_stream_t s, const gemm_case *g, int reps, double *ours, double *theirs)
{
    int64_t na = g->M * g->K, nb = g->K * g->N, nc = g->M * g->N;
    int8_t *A = rand_s8(na, 1 + (uint64_t)g->M), *B = rand_s8(nb, 2 + (uint64_t)g->N);
    int32_t *C1 = xmalloc((size_t)nc * 4), *C2 = xmalloc((size_t)nc * 4);
    onednn_mm m = onednn_create(eng, g, A, B, C2);
    ours_run(g, A, B, C1);
    onednn_run(&m, s);
    if (memcmp(C1, C2, (size_t)nc * 4) != 0) {
        fprintf(stderr, "bench_onednn: %s %s %lldx%lldx%lld: our product differs from oneDNN's\n", g->net,
                k_op_names[g->op], (long long)g->M, (long long)g->N, (long long)g->K);
        exit(1);
    }
    /* Warm up, alternating, for at least WARMUP_RUNS runs each and WARMUP_S seconds:
     * the first few milliseconds of a product on freshly allocated buffers run up to 1.6x
     * slower on this (virtual) machine, and the speed ramps up over ~30 ms; medians of
     * 5 taken on that ramp put resnet18's 100352x64x576 anywhere from 0.72x to 1.14x. */
    double t_warm = now_s();
    for (int w = 0; w < WARMUP_RUNS || (now_s() - t_warm < WARMUP_S && w < MAX_REPS); w++) {
        ours_run(g, A, B, C1);
        onednn_run(&m, s);
    }
    double t_ours[MAX_REPS], t_theirs[MAX_REPS];
    for (int r = 0; r < reps; r++) { /* alternate, so a drift of the machine hits both */
        double t0 = now_s();
        ours_run(g, A, B, C1);
        t_ours[r] = now_s() - t0;
        t0 = now_s();
        onednn_run(&m, s);
        t_theirs[r] = now_s() - t0;
    }
    qsort(t_ours, (size_t)reps, sizeof(double), cmp_double);
    qsort(t_theirs, (size_t)reps, sizeof(double), cmp_double);
    double ops = 2.0 * (double)g->M * (double)g->N * (double)g->K * 1e-9;
    *ours = ops / t_ours[reps / 2];
    *theirs = ops / t_theirs[reps / 2];
    onednn_destroy(&m);
    free(A), free(B), free(C1), free(C2);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: bench_onednn [repetitions 1..%d] [only: resnet20, resnet18, nt, nn or tn]\n",
                MAX_REPS);
        return 2;
    }
    const char *only = argc > 2 ? argv[2] : NULL;
    const gemm_case cases[] = {
        {"resnet20", OP_NT, 100352, 16, 144}, {"resnet20", OP_NT, 25088, 32, 288}, {"resnet20", OP_NT, 6272, 64, 576},
        {"resnet20", OP_NN, 100352, 144, 16}, {"resnet20", OP_NN, 25088, 288, 32}, {"resnet20", OP_NN, 6272, 576, 64},
        {"resnet20", OP_TN, 16, 144, 100352}, {"resnet20", OP_TN, 32, 288, 25088}, {"resnet20", OP_TN, 64, 576, 6272},
        {"resnet18", OP_NT, 100352, 64, 576}, {"resnet18", OP_NT, 25088, 128, 1152},
        {"resnet18", OP_NT, 6272, 256, 2304}, {"resnet18", OP_NT, 1568, 512, 4608},
    };
    int ncases = (int)(sizeof(cases) / sizeof(cases[0]));
    dnnl_engine_t eng;
    dnnl_stream_t s;
    DNNL_CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    DNNL_CHECK(dnnl_stream_create(&s, eng, dnnl_stream_default_flags));
    const dnnl_version_t *v = dnnl_version();
    int most = omp_get_max_threads(), counts[2] = {1, most};
    printf("bench_onednn: ours (%s kernels) against oneDNN %d.%d.%d (%s), median of %d, GOP/s = 2 M N K / s\n",
           wg_gemm_path_name(wg_gemm_path_current()), v->major, v->minor, v->patch,
           v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other runtime", reps);
    for (int ti = 0; ti < (most > 1 ? 2 : 1); ti++) {
        int threads = counts[ti];
        omp_set_num_threads(threads);
        vnni_peak_gops(threads); /* warm the cores up */
        double peak = vnni_peak_gops(threads);
        printf("\n%d thread%s: VNNI peak (register-only vpdpbusd zmm loop) %.0f GOP/s", threads,
               threads > 1 ? "s" : "", peak);
        if (wg_gemm_amx_available()) printf("; AMX peak (tiles-only tdpbssd loop) %.0f GOP/s", amx_peak_gops(threads));
        printf("\n");
        printf("%-9s %-21s %21s %9s %9s %7s %8s\n", "network", "op", "M x N x K", "ours", "oneDNN", "ratio",
               "of peak");
        for (int i = 0; i < ncases; i++) {
            bool op_match = only && strlen(only) == 2 && !strncmp(only, k_op_names[cases[i].op], 2);
            if (only && strcmp(only, cases[i].net) != 0 && !op_match) continue;
            double ours, theirs;
            bench_case(eng, s, &cases[i], reps, &ours, &theirs);
            char shape[48];
            snprintf(shape, sizeof(shape), "%lldx%lldx%lld", (long long)cases[i].M, (long long)cases[i].N,
                     (long long)cases[i].K);
            printf("%-9s %-21s %21s %9.0f %9.0f %6.2fx %7.0f%%\n", cases[i].net, k_op_names[cases[i].op], shape, ours,
                   theirs, ours / theirs, 100 * ours / peak);
            fflush(stdout);
        }
    }
    dnnl_stream_destroy(s);
    dnnl_engine_destroy(eng);
    return 0;
}
