/* bench_quant.c: throughput of the WAGEUBN quantizers on the CPU backend.
 *
 * Each integer quantizer runs over the same random int32 tensor (a conv
 * accumulator-like distribution) side by side with the float32 simulation of the
 * same formula that float frameworks use (scale, rintf, clamp, rescale), in one run;
 * the report gives the median of several repetitions and the ratio. Usage:
 *   bench_quant [elements (default 16M)] [repetitions (default 7)] */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "bench_util.h"
#include "quant.h"

typedef struct bench_data {
    wg_tensor src32, dst8, fine8;
    float *srcf, *dstf;
    int64_t n;
} bench_data;

enum { WG_BENCH_MAX_REPS = 64 };

typedef void (*bench_fn)(bench_data *d);

static double median_time(bench_fn fn, bench_data *d, int reps)
{
    double t[WG_BENCH_MAX_REPS];
    fn(d); /* warm-up: first touches of the output pages are not the quantizer's cost */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        fn(d);
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    return t[reps / 2];
}

static void int_direct(bench_data *d) { wg_quant_direct(&d->dst8, &d->src32, 8, true); }
static void int_shift(bench_data *d) { wg_quant_shift(&d->dst8, &d->src32, 8); }
static void int_flag(bench_data *d) { wg_quant_flag(&d->dst8, &d->fine8, &d->src32, 8); }
static void int_grad(bench_data *d)
{
    wg_grad_quant_args a = {.g_scale_log2 = 7, .gc = 15, .seed = 1, .step = 2, .tensor_id = 3};
    wg_quant_grad(&d->dst8, &d->src32, &a);
}

/* The float simulation a float framework runs for the same quantizers. */
static float max_abs_f(const float *x, int64_t n)
{
    float m = 0;
    for (int64_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

static void float_direct(bench_data *d)
{
    for (int64_t i = 0; i < d->n; i++) d->dstf[i] = fminf(fmaxf(rintf(d->srcf[i] * 128.f), -127.f), 127.f) / 128.f;
}

static void float_shift(bench_data *d)
{
    float m = max_abs_f(d->srcf, d->n), s = exp2f(rintf(log2f(m)));
    for (int64_t i = 0; i < d->n; i++)
        d->dstf[i] = s * fminf(fmaxf(rintf(d->srcf[i] / s * 128.f), -127.f), 127.f) / 128.f;
}

static void float_grad(bench_data *d)
{
    float m = max_abs_f(d->srcf, d->n), s = exp2f(rintf(log2f(m)));
    uint32_t state = 12345;
    for (int64_t i = 0; i < d->n; i++) {
        state = state * 1664525u + 1013904223u; /* a cheap stand-in for the framework's RNG */
        float u = (float)(state >> 8) * (1.f / 16777216.f);
        d->dstf[i] = fminf(fmaxf(floorf(d->srcf[i] / s * 128.f + u), -127.f), 127.f) / 16384.f;
    }
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : (INT64_C(1) << 24);
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    if (n < 1 || reps < 1 || reps > WG_BENCH_MAX_REPS) {
        fprintf(stderr, "usage: bench_quant [elements >= 1] [repetitions 1..%d]\n", WG_BENCH_MAX_REPS);
        return 2;
    }
    wg_backend *cpu = wg_backend_cpu_init();
    bench_data d = {.n = n};
    if (!wg_tensor_init(&d.src32, cpu, WG_I32, WG_LAYOUT_PLAIN, 1, &n, -14) ||
        !wg_tensor_init(&d.dst8, cpu, WG_I8, WG_LAYOUT_PLAIN, 1, &n, 0) ||
        !wg_tensor_init(&d.fine8, cpu, WG_I8, WG_LAYOUT_PLAIN, 1, &n, 0))
        return 1;
    d.srcf = malloc((size_t)n * sizeof(float));
    d.dstf = malloc((size_t)n * sizeof(float));
    if (d.srcf == NULL || d.dstf == NULL) return 1;
    int32_t *q = d.src32.data;
    uint64_t s = 42;
    for (int64_t i = 0; i < n; i++) { /* a heavy-tailed accumulator: the product of two uniforms */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int32_t a = (int32_t)((s >> 33) & 0xffff) - 32768, b = (int32_t)((s >> 17) & 0x3ff) - 512;
        q[i] = a * b;
        d.srcf[i] = ldexpf((float)q[i], -14);
    }

    struct {
        const char *name;
        bench_fn ours, peer;
    } cases[] = {
        {"direct (W, clip)", int_direct, float_direct},
        {"shift (E1)", int_shift, float_shift},
        {"flag (E2)", int_flag, NULL},
        {"gradient (G, stochastic)", int_grad, float_grad},
    };
    printf("wageubn bench_quant: %lld elements, median of %d runs, 1 thread\n", (long long)n, reps);
    printf("%-26s %12s %12s %8s\n", "quantizer", "int Melem/s", "f32 Melem/s", "int/f32");
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        double ti = median_time(cases[c].ours, &d, reps);
        if (cases[c].peer != NULL) {
            double tf = median_time(cases[c].peer, &d, reps);
            printf("%-26s %12.1f %12.1f %8.2f\n", cases[c].name, 1e-6 * (double)n / ti, 1e-6 * (double)n / tf, tf / ti);
        } else {
            printf("%-26s %12.1f %12s %8s\n", cases[c].name, 1e-6 * (double)n / ti, "-", "-");
        }
    }
    wg_tensor_free(&d.src32);
    wg_tensor_free(&d.dst8);
    wg_tensor_free(&d.fine8);
    free(d.srcf);
    free(d.dstf);
    wg_backend_free(cpu);
    return 0;
}
