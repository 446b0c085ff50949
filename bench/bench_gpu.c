/* bench_gpu.c: the CUDA backend's speed (docs/performance.md, "GPU"): int8 GEMM TOPS
 * against the GPU's dense int8 peak, the forward and backward time of every
 * convolution of ResNet-18 and ResNet-50 at 224x224, and whole training steps
 * (synthetic data, int8 full preset) in images/s. bench/gpu.sh runs it beside PyTorch
 * (bench/gpu_torch.py) on the same GPU.
 *
 *   bench_gpu [--batch N] [--steps S] [--peak TOPS] [--models resnet18,resnet50] [--cpu]
 *
 * --cpu runs the same code on the CPU backend with the small GEMMs only: a check of the
 * benchmark itself where no GPU is (ctest runs it at batch 2), not a measurement.
 * Each figure is the median of several timed repetitions after a warm-up; the GPU work
 * is waited for (wg_backend_synchronize) before the clock stops. Lines starting with
 * "result" are the machine-readable summary (bench/gpu.sh collects them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cuda.h"
#include "bench_util.h"
#include "check.h"
#include "conv.h"
#include "net.h"
#include "quant.h"

enum { REPS = 5, MAX_CONVS = 128 };

typedef struct bench_opts {
    int64_t batch;
    int steps;
    double peak_tops; /* dense int8 peak of the GPU: H100/H200 SXM 1979 */
    bool cpu;
    char models[128];
} bench_opts;

/* The median of REPS runs of fn(arg) on backend b, in seconds. */
static double median_time(wg_backend *b, void (*fn)(void *), void *arg)
{
    double t[REPS];
    fn(arg); /* warm-up: the arena grows, cuBLASLt picks its kernels */
    wg_backend_synchronize(b);
    for (int r = 0; r < REPS; r++) {
        double t0 = now_s();
        fn(arg);
        wg_backend_synchronize(b);
        t[r] = now_s() - t0;
    }
    qsort(t, REPS, sizeof(double), cmp_double);
    return t[REPS / 2];
}

/* ---- int8 GEMM ---- */

typedef struct gemm_case {
    wg_backend *b;
    int64_t m, n, k;
    wg_tensor a, bt, c;
} gemm_case;

static void run_gemm(void *arg)
{
    gemm_case *g = arg;
    g->b->iface->gemm_s8_nt(g->b->ctx, g->m, g->n, g->k, g->a.data, g->k, g->bt.data, g->k, g->c.data, g->n);
}

static void bench_gemm(wg_backend *b, const bench_opts *o)
{
    static const int64_t sizes[][3] = {{4096, 4096, 4096}, {8192, 8192, 8192}, {16384, 16384, 16384},
                                       {401408, 64, 576}, {100352, 128, 1152}};
    printf("\nint8 GEMM C = A B^T (backend %s), median of %d\n%10s %8s %8s %10s %10s %8s\n", wg_backend_name(b), REPS,
           "M", "N", "K", "ms", "TOPS", "of peak");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        gemm_case g = {.b = b, .m = sizes[i][0], .n = sizes[i][1], .k = sizes[i][2]};
        if (o->cpu && g.m * g.n * g.k > ((int64_t)1 << 36)) continue;
        if (!wg_tensor_init(&g.a, b, WG_I8, WG_LAYOUT_PLAIN, 1, (int64_t[]){g.m * g.k}, 0) ||
            !wg_tensor_init(&g.bt, b, WG_I8, WG_LAYOUT_PLAIN, 1, (int64_t[]){g.n * g.k}, 0) ||
            !wg_tensor_init(&g.c, b, WG_I32, WG_LAYOUT_PLAIN, 1, (int64_t[]){g.m * g.n}, 0)) {
            printf("%10lld %8lld %8lld   out of GPU memory\n", (long long)g.m, (long long)g.n, (long long)g.k);
            continue;
        }
        wg_tensor_zero(&g.a), wg_tensor_zero(&g.bt);
        double t = median_time(b, run_gemm, &g), tops = 2.0 * (double)g.m * (double)g.n * (double)g.k / t / 1e12;
        printf("%10lld %8lld %8lld %10.3f %10.1f %7.1f%%\n", (long long)g.m, (long long)g.n, (long long)g.k, t * 1e3,
               tops, 100.0 * tops / o->peak_tops);
        printf("result gemm_%lldx%lldx%lld_tops %.1f\n", (long long)g.m, (long long)g.n, (long long)g.k, tops);
        wg_tensor_free(&g.a), wg_tensor_free(&g.bt), wg_tensor_free(&g.c);
    }
}

/* ---- the convolutions of a network, one at a time ---- */

typedef struct conv_case {
    const wg_conv_geom *g;
    bool stem; /* the network's first layer: no dx */
    wg_tensor x, w, y, e[2], dx, dw;
    wg_conv_ws ws;
} conv_case;

static void run_conv_forward(void *arg)
{
    conv_case *c = arg;
    wg_conv_s8_forward(c->g, &c->x, &c->w, &c->y, &c->ws);
}

/* Backward with E2's two error parts, as the full preset trains; dx in int64, none
 * for the stem (as the network). */
static void run_conv_backward(void *arg)
{
    conv_case *c = arg;
    const wg_tensor *parts[2] = {&c->e[0], &c->e[1]};
    wg_conv_s8_backward(c->g, &c->x, &c->w, parts, 2, c->stem ? NULL : &c->dx, &c->dw, &c->ws);
}

static bool conv_case_init(conv_case *c, wg_backend *b, const wg_conv_geom *g, bool stem)
{
    memset(c, 0, sizeof(*c));
    c->g = g;
    c->stem = stem;
    int64_t xs[4] = {g->n, g->h, g->w, g->c}, ws[4] = {g->o, g->kh, g->kw, g->c}, ys[4] = {g->n, g->oh, g->ow, g->o};
    bool ok = wg_tensor_init(&c->x, b, WG_I8, WG_LAYOUT_NHWC, 4, xs, -7) &&
              wg_tensor_init(&c->w, b, WG_I8, WG_LAYOUT_OHWI, 4, ws, -7) &&
              wg_tensor_init(&c->y, b, WG_I32, WG_LAYOUT_NHWC, 4, ys, 0) &&
              wg_tensor_init(&c->e[0], b, WG_I8, WG_LAYOUT_NHWC, 4, ys, -20) &&
              wg_tensor_init(&c->e[1], b, WG_I8, WG_LAYOUT_NHWC, 4, ys, -27) &&
              wg_tensor_init(&c->dx, b, WG_I64, WG_LAYOUT_NHWC, 4, xs, 0) &&
              wg_tensor_init(&c->dw, b, WG_I64, WG_LAYOUT_OHWI, 4, ws, 0);
    if (ok) wg_tensor_zero(&c->x), wg_tensor_zero(&c->w), wg_tensor_zero(&c->e[0]), wg_tensor_zero(&c->e[1]);
    return ok;
}

static void conv_case_free(conv_case *c)
{
    wg_tensor *ts[] = {&c->x, &c->w, &c->y, &c->e[0], &c->e[1], &c->dx, &c->dw};
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) wg_tensor_free(ts[i]);
    wg_conv_ws_free(&c->ws);
}

/* Per layer, then the sums; the time of the network's convolutions in one step. */
static void bench_layers(wg_backend *b, wg_net *net, const bench_opts *o)
{
    wg_net_conv convs[MAX_CONVS];
    int n = wg_net_convs(net, convs, MAX_CONVS);
    WG_ASSERT(n <= MAX_CONVS, "%d convolutions", n);
    printf("\n%s convolutions at batch %lld, median of %d (backward: E2's two parts, dx and dw)\n", wg_net_name(net),
           (long long)o->batch, REPS);
    printf("%-14s %5s %5s %5s %3s %2s %10s %10s %10s\n", "layer", "HxW", "C", "O", "k", "s", "fwd ms", "bwd ms",
           "fwd TOPS");
    double fwd = 0, bwd = 0, ops = 0;
    for (int i = 0; i < n; i++) {
        const wg_conv_geom *g = &convs[i].g;
        conv_case c;
        if (!conv_case_init(&c, b, g, i == 0)) {
            printf("%-14s out of GPU memory\n", convs[i].name);
            conv_case_free(&c);
            continue;
        }
        double tf = median_time(b, run_conv_forward, &c), tb = median_time(b, run_conv_backward, &c);
        double op = 2.0 * (double)g->rows * (double)g->o * (double)g->kdim;
        printf("%-14s %5lld %5lld %5lld %3lld %2d %10.3f %10.3f %10.1f\n", convs[i].name, (long long)g->h,
               (long long)g->c, (long long)g->o, (long long)g->kh, g->stride, tf * 1e3, tb * 1e3, op / tf / 1e12);
        fwd += tf, bwd += tb, ops += op;
        conv_case_free(&c);
    }
    printf("%-14s %30s %10.2f %10.2f %10.1f\n", "all", "", fwd * 1e3, bwd * 1e3, ops / fwd / 1e12);
    printf("result %s_conv_fwd_ms %.2f\nresult %s_conv_bwd_ms %.2f\nresult %s_conv_fwd_tops %.1f\n", wg_net_name(net),
           fwd * 1e3, wg_net_name(net), bwd * 1e3, wg_net_name(net), ops / fwd / 1e12);
}

/* ---- whole training steps ---- */

typedef struct train_case {
    wg_net *net;
    int64_t batch;
    int8_t *x;
    int32_t *labels;
    wg_param *params;
    int nparams;
    uint32_t step;
    wg_quant_bits bits;
} train_case;

static void run_step(void *arg)
{
    train_case *t = arg;
    wg_loss_stats st = {0};
    wg_net_forward(t->net, t->x, -7, t->batch, true);
    wg_net_loss(t->net, t->labels, true, &st);
    wg_optim_step_args a = {.lr = 0.1, .g_scale_log2 = 7, .momentum = 0.9, .weight_decay = 1e-4, .seed = 1,
                            .step = t->step++, .bits = &t->bits};
    wg_optim_step(t->params, t->nparams, &a);
}

static void bench_train(wg_backend *b, wg_net *net, const bench_opts *o)
{
    int64_t pix = o->batch * 224 * 224 * 3;
    train_case t = {.net = net, .batch = o->batch, .x = malloc((size_t)pix), .labels = malloc((size_t)o->batch * sizeof(int32_t)),
                    .bits = wg_quant_bits_reference()};
    WG_ASSERT(t.x != NULL && t.labels != NULL, "out of host memory for a batch");
    uint64_t s = 1;
    for (int64_t i = 0; i < pix; i++) t.x[i] = (int8_t)((s = s * 6364136223846793005ull + 1) >> 57) - 64;
    for (int64_t i = 0; i < o->batch; i++) t.labels[i] = (int32_t)(i * 37 % 1000);
    t.params = wg_net_params(net, &t.nparams);
    double times[64];
    int steps = o->steps < 64 ? o->steps : 64;
    run_step(&t); /* warm-up */
    wg_backend_synchronize(b);
    for (int i = 0; i < steps; i++) {
        double t0 = now_s();
        run_step(&t);
        wg_backend_synchronize(b);
        times[i] = now_s() - t0;
    }
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    double med = times[steps / 2];
    printf("\n%s training step (int8 full preset, batch %lld, 224x224, synthetic): %.1f ms, %.0f images/s "
           "(median of %d)\n",
           wg_net_name(net), (long long)o->batch, med * 1e3, (double)o->batch / med, steps);
    printf("result %s_train_img_per_s %.1f\n", wg_net_name(net), (double)o->batch / med);
    free(t.x), free(t.labels);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_gpu [--batch N] [--steps S] [--peak TOPS] [--models resnet18,resnet50] [--cpu]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bench_opts o = {.batch = 128, .steps = 10, .peak_tops = 1979};
    snprintf(o.models, sizeof(o.models), "resnet18,resnet50");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cpu")) {
            o.cpu = true;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--batch")) o.batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) o.steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--peak")) o.peak_tops = atof(argv[++i]);
        else if (!strcmp(argv[i], "--models")) snprintf(o.models, sizeof(o.models), "%s", argv[++i]);
        else usage();
    }
    if (o.batch < 1 || o.steps < 1 || o.peak_tops <= 0) usage();
    char err[512];
    wg_backend *b = o.cpu ? wg_backend_cpu_init() : wg_backend_cuda_init(0, err, sizeof(err));
    if (b == NULL) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        return 77; /* nothing to measure here */
    }
    if (o.cpu) printf("bench_gpu --cpu: the CPU backend, a check of this program, not a measurement\n");
    else wg_cuda_print_info(stdout);
    bench_gemm(b, &o);
    for (char *m = strtok(o.models, ","); m != NULL; m = strtok(NULL, ",")) {
        wg_net_opts no = {.model = m, .int8 = true, .bits = wg_quant_bits_reference(), .act = WG_ACT_FIT,
                          .e2 = WG_E2_FLAG, .batch = o.batch, .h = 224, .w = 224, .c = 3, .classes = 1000, .seed = 1};
        wg_net *net = wg_net_create(&no, b, err, sizeof(err));
        if (net == NULL) {
            printf("\n%s at batch %lld: %s\n", m, (long long)o.batch, err);
            continue;
        }
        bench_layers(b, net, &o);
        bench_train(b, net, &o);
        wg_net_free(net);
    }
    wg_backend_free(b);
    return 0;
}
